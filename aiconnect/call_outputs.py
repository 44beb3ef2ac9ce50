# -*- test-case-name: tests.test_call_outputs,tests.test_call -*-
"""
The streams (SPEC s8) and recordings (SPEC s9) of a L{aiconnect.call.Call},
and pause/resume (SPEC s10): their states, inputs, actions and transition
table.  Pure, like the Call: the handlers here take the Call and change it.

An output (a stream or a recording) is ordered (C{PENDING} until the
session is active), C{STARTING} (connecting / opening its file), C{ACTIVE},
C{STOPPING} (stop asked, the adapter finishing: close handshake, sha256),
then C{STOPPED} or C{FAILED}.  The adapter (L{aiconnect.legs.OutputLeg})
reports L{OutputStarted}, L{OutputFailed}, L{OutputStopped} and, for a
recording with an C{uploadUrl}, L{OutputUploaded} (which may come after
the session ended: uploads start when the recording is complete).

Pause: L{PauseOrdered} with no ids pauses the I{session} (every output,
and outputs started later start paused); with ids, only those outputs.
L{ResumeOrdered} with no ids resumes the session and every output; with
ids, only those.  While paused no audio of the session leaves the process
(forwards: re-INVITE C{a=inactive}, no RTP; streams and recordings:
silence).
"""

from __future__ import annotations

import datetime
import enum
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiconnect import events
from aiconnect.machine import Action, Emit, Input, Row
from aiconnect.text import public_url

if TYPE_CHECKING:
    from aiconnect.call import Call

__all__ = [
    "KINDS",
    "OUTPUT_TABLE",
    "OutputFailed",
    "OutputInfo",
    "OutputInput",
    "OutputOrdered",
    "OutputRejected",
    "OutputStarted",
    "OutputState",
    "OutputStopOrdered",
    "OutputStopped",
    "OutputUploaded",
    "PauseOrdered",
    "PauseOutput",
    "ResumeOrdered",
    "StartOutput",
    "StopOutput",
    "new_recording_id",
    "new_stream_id",
]

#: The output kinds (the C{kind} of orders, inputs and actions).
STREAM = "stream"
RECORDING = "recording"
KINDS = (STREAM, RECORDING)
#: Pause targets: the output kinds and forwards.
FORWARD = "forward"
PAUSE_KINDS = (FORWARD, STREAM, RECORDING)


def new_stream_id() -> str:
    """
    A fresh stream id: C{str_} and 16 hex digits.
    """
    return "str_" + secrets.token_hex(8)


def new_recording_id(now: float) -> str:
    """
    A fresh recording id: C{rec_}, the UTC date of C{now} as C{YYYYMMDD},
    C{_} and 16 hex digits (C{rec_20261202_0123456789abcdef}); the date
    names the recording's directory (SPEC s9).
    """
    day = datetime.datetime.fromtimestamp(now, tz=datetime.timezone.utc).strftime("%Y%m%d")
    return "rec_%s_%s" % (day, secrets.token_hex(8))


def new_output_id(kind: str, now: float) -> str:
    """
    A fresh id for an output of C{kind}.
    """
    return new_stream_id() if kind == STREAM else new_recording_id(now)


class OutputState(enum.Enum):
    """
    One stream or recording (see the module docstring).  The values are the
    C{state} of the REST API's objects.
    """

    PENDING = "pending"
    STARTING = "starting"
    ACTIVE = "active"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


#: States that hold an output slot (SPEC s12).
LIVE_OUTPUT_STATES = frozenset((OutputState.PENDING, OutputState.STARTING, OutputState.ACTIVE))
#: States the session waits for before it completes.
BUSY_OUTPUT_STATES = frozenset((OutputState.STARTING, OutputState.ACTIVE, OutputState.STOPPING))


@dataclass
class OutputInfo:
    """
    What the Call knows of one stream or recording.

    @ivar kind: L{STREAM} or L{RECORDING}.
    @ivar order: the parsed order (L{aiconnect.outputs.orders.StreamOrder}
        / C{RecordingOrder}), or L{None} for an invalid newCall order.
    @ivar error: why an order refused before it started will fail (reported
        once the session is active).
    @ivar raw: the order as the application wrote it (for an invalid one).
    @ivar paused: whether it gets silence (SPEC s10).
    @ivar detail: what the adapter said when it started (C{url}, C{file}).
    @ivar result: the stop details (a recording's C{sha256} ...).
    @ivar upload: C{{"url", "status"}} once uploaded.
    """

    kind: str
    output_id: str
    order: Any
    state: OutputState = OutputState.PENDING
    error: str | None = None
    raw: Any = None
    paused: bool = False
    stopped_by: str | None = None
    reason: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    upload: dict[str, Any] | None = None

    @property
    def holds_slot(self) -> bool:
        """
        Whether it counts towards C{max_outputs_per_call} (SPEC s12).
        """
        return self.error is None and self.state in LIVE_OUTPUT_STATES

    @property
    def running(self) -> bool:
        """
        Whether its leg is started and not stopping (a pause reaches it).
        """
        return self.state in (OutputState.STARTING, OutputState.ACTIVE)

    @property
    def reference_id(self) -> Any:
        """
        C{streamReferenceId} / C{recordingReferenceId}, or L{None}.
        """
        if self.order is not None:
            return self.order.reference_id
        raw = self.raw if isinstance(self.raw, dict) else {}
        return raw.get("streamReferenceId" if self.kind == STREAM else "recordingReferenceId")

    @property
    def url(self) -> str:
        """
        A stream's URL as reported: without query string or credentials.
        """
        if self.order is not None:
            return public_url(self.order.url)
        raw = self.raw if isinstance(self.raw, dict) else {}
        return public_url(raw["url"]) if isinstance(raw.get("url"), str) else ""


# -- inputs ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputOrdered(Input):
    """
    The application ordered a stream or recording (REST or newCall).
    """

    kind: str
    output_id: str
    order: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputRejected(Input):
    """
    A newCall order that will not start (invalid, or over a limit):
    C{STREAMFAILED} / C{RECORDINGFAILED} once the session is active.
    """

    kind: str
    output_id: str
    reason: str
    order: Any = None
    raw: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputStopOrdered(Input):
    """
    C{stopstream} / C{stoprecording}: one output (C{output_id}) or every
    output of C{kind} (L{None}).
    """

    kind: str
    output_id: str | None
    stopped_by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PauseOrdered(Input):
    """
    C{POST /{domain}/pause} (SPEC s10).

    @ivar targets: kind (C{forward}, C{stream}, C{recording}) -> ids; L{None}
        = the whole session.
    """

    targets: Mapping[str, tuple[str, ...]] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeOrdered(Input):
    """
    C{POST /{domain}/resume} (SPEC s10); C{targets} as for L{PauseOrdered}.
    """

    targets: Mapping[str, tuple[str, ...]] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputInput(Input):
    """
    A fact about one output, looked up in L{OUTPUT_TABLE} by its state.
    """

    output_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputStarted(OutputInput):
    """
    The stream's handshake is done / the recording's file is open.
    """

    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputFailed(OutputInput):
    """
    It could not start, or a recording stopped writing (disk full).
    """

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputStopped(OutputInput):
    """
    It stopped (after a stop, or a stream whose reconnection gave up).
    """

    stopped_by: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputUploaded(OutputInput):
    """
    A recording's upload ended (C{url} without query string, C{status}).
    """

    url: str
    status: Any


# -- actions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartOutput(Action):
    """
    Create the output's leg and start it (paused if the session is).
    """

    kind: str
    output_id: str
    order: Any
    paused: bool = False


@dataclass(frozen=True, slots=True)
class StopOutput(Action):
    """
    Stop the output's leg (it reports L{OutputStopped}).
    """

    kind: str
    output_id: str
    stopped_by: str


@dataclass(frozen=True, slots=True)
class PauseOutput(Action):
    """
    Pause (C{paused=True}) or resume an output or a forward (C{kind}
    L{FORWARD}: re-INVITE C{a=inactive} / C{a=sendonly}, RTP held).
    """

    kind: str
    output_id: str
    paused: bool


# -- handlers (CALL_TABLE rows) -----------------------------------------------------------


def ordered(call: Call, fact: OutputOrdered) -> list[Action]:
    """
    A new stream or recording: refused over a limit or when ending
    (L{aiconnect.call.OrderRefused}), started at once when the session is
    active.
    """
    refusal = call.order_refusal(fact.kind)
    if refusal is not None:
        raise refusal
    info = OutputInfo(fact.kind, fact.output_id, fact.order, paused=call.paused)
    call.outputs[info.output_id] = info
    if call.is_active:
        return launch(call, info, fact.now)
    return []


def rejected(call: Call, fact: OutputRejected) -> list[Action]:
    """
    A newCall order that will not start: its FAILED event once active.
    """
    info = OutputInfo(fact.kind, fact.output_id, fact.order, error=fact.reason, raw=fact.raw)
    call.outputs[info.output_id] = info
    if call.is_active:
        return launch(call, info, fact.now)
    return []


def launch(call: Call, info: OutputInfo, now: float) -> list[Action]:
    """
    Start a pending output (or report why it cannot).
    """
    if info.error is None:
        info.state = OutputState.STARTING
        return [StartOutput(info.kind, info.output_id, info.order, info.paused)]
    return failed(call, info, OutputFailed(now=now, output_id=info.output_id, reason=info.error))


def stop_ordered(call: Call, fact: OutputStopOrdered) -> list[Action]:
    """
    Stop one output or every output of a kind (idempotent).
    """
    if fact.output_id is not None:
        targets = [call.outputs[fact.output_id]]
    else:
        targets = [info for info in call.outputs.values() if info.kind == fact.kind]
    actions: list[Action] = []
    for info in targets:
        actions += stop(info, fact.stopped_by)
    return actions


def stop(info: OutputInfo, stopped_by: str) -> list[Action]:
    """
    Stop one output: a pending one silently, a started one through its leg.
    """
    if info.state is OutputState.PENDING:
        info.state = OutputState.STOPPED
        info.stopped_by = stopped_by
        return []
    if info.state in (OutputState.STARTING, OutputState.ACTIVE):
        info.state = OutputState.STOPPING
        info.stopped_by = stopped_by
        return [StopOutput(info.kind, info.output_id, stopped_by)]
    return []


def stop_all(call: Call, stopped_by: str) -> list[Action]:
    """
    The session ends: stop every stream; every recording once the streams
    reported (L{stop_recordings_when_streams_done}), so the recordings hold
    all the audio the streams got and the events come in one order:
    STREAMSTOPPED, then RECORDINGSTOPPED.
    """
    call.outputs_stopped_by = stopped_by
    actions: list[Action] = []
    for info in list(call.outputs.values()):
        if info.kind == STREAM:
            actions += stop(info, stopped_by)
    return actions + stop_recordings_when_streams_done(call)


def stop_recordings_when_streams_done(call: Call) -> list[Action]:
    """
    While the session ends: once no stream is busy, stop the recordings.
    """
    stopped_by = call.outputs_stopped_by
    if stopped_by is None:
        return []
    if any(info.kind == STREAM and info.state in BUSY_OUTPUT_STATES for info in call.outputs.values()):
        return []
    actions: list[Action] = []
    for info in list(call.outputs.values()):
        if info.kind == RECORDING:
            actions += stop(info, stopped_by)
    return actions


def _chosen(call: Call, targets: Mapping[str, tuple[str, ...]] | None) -> list[tuple[str, Any]]:
    """
    The (kind, info) a pause or resume names: every live output and forward
    for L{None}.

    @raise KeyError: C{(kind, id)} for an id the session does not have.
    """
    chosen: list[tuple[str, Any]] = []
    for kind in PAUSE_KINDS:
        table: Mapping[str, Any] = call.forwards if kind == FORWARD else {
            k: v for k, v in call.outputs.items() if v.kind == kind
        }
        if targets is None:
            ids = tuple(table)
        else:
            ids = tuple(targets.get(kind, ()))
            for output_id in ids:
                if output_id not in table:
                    raise KeyError((kind, output_id))
        for output_id in ids:
            info = table[output_id]
            if info.holds_slot:  # ordered and not yet stopped or failed
                chosen.append((kind, info))
    return chosen


def _set_paused(call: Call, fact: PauseOrdered | ResumeOrdered, paused: bool) -> list[Action]:
    chosen = _chosen(call, fact.targets)
    if fact.targets is None:
        call.paused = paused
    actions: list[Action] = []
    changed: dict[str, list[str]] = {kind: [] for kind in PAUSE_KINDS}
    for kind, info in chosen:
        if info.paused == paused:
            continue
        info.paused = paused
        changed[kind].append(info.forward_id if kind == FORWARD else info.output_id)
        if info.running:  # a pending one starts paused (StartOutput.paused)
            actions.append(PauseOutput(kind, changed[kind][-1], paused))
    event = events.SessionPaused if paused else events.SessionResumed
    actions.append(
        Emit(
            event(
                **call._envelope(fact.now),
                forward_ids=tuple(changed[FORWARD]),
                stream_ids=tuple(changed[STREAM]),
                recording_ids=tuple(changed[RECORDING]),
                session=call.paused,
            )
        )
    )
    return actions


def refuse_pause(call: Call, fact: PauseOrdered | ResumeOrdered) -> list[Action]:
    """
    The session is ending or ended: nothing to pause (REST 409).
    """
    refusal = call.order_refusal("pause")
    assert refusal is not None
    raise refusal


def pause(call: Call, fact: PauseOrdered) -> list[Action]:
    """
    SPEC s10: pause the session or the outputs named.
    """
    return _set_paused(call, fact, True)


def resume(call: Call, fact: ResumeOrdered) -> list[Action]:
    """
    SPEC s10: resume the session or the outputs named.
    """
    return _set_paused(call, fact, False)


# -- handlers (OUTPUT_TABLE rows: call, info, fact) ------------------------------------------


def _event(call: Call, info: OutputInfo, now: float, cls: type[events.Event], **fields: Any) -> Emit:
    if info.kind == STREAM:
        return Emit(cls(**call._envelope(now), stream_id=info.output_id, url=info.url, reference_id=info.reference_id, **fields))
    return Emit(cls(**call._envelope(now), recording_id=info.output_id, details=fields or None, reference_id=info.reference_id))


def started(call: Call, info: OutputInfo, fact: OutputStarted) -> list[Action]:
    """
    STREAMSTARTED / RECORDINGSTARTED.
    """
    info.state = OutputState.ACTIVE
    info.detail = dict(fact.detail)
    if info.kind == STREAM:
        return [_event(call, info, fact.now, events.StreamStarted)]
    order = info.order
    return [
        _event(
            call,
            info,
            fact.now,
            events.RecordingStarted,
            file=info.detail.get("file"),
            tracks=order.tracks,
            encoding=order.encoding,
        )
    ]


def failed(call: Call, info: OutputInfo, fact: OutputFailed) -> list[Action]:
    """
    STREAMFAILED / RECORDINGFAILED: it holds nothing any more.
    """
    info.state = OutputState.FAILED
    info.reason = fact.reason
    cls = events.StreamFailed if info.kind == STREAM else events.RecordingFailed
    return [_event(call, info, fact.now, cls, reason=fact.reason)]


def stopped(call: Call, info: OutputInfo, fact: OutputStopped) -> list[Action]:
    """
    STREAMSTOPPED / RECORDINGSTOPPED.
    """
    info.state = OutputState.STOPPED
    info.stopped_by = fact.stopped_by
    info.result = dict(fact.detail)
    if info.kind == STREAM:
        return [_event(call, info, fact.now, events.StreamStopped, stopped_by=fact.stopped_by, stats=info.result.get("stats"))]
    return [_event(call, info, fact.now, events.RecordingStopped, stoppedBy=fact.stopped_by, **info.result)]


def stop_cancelled(call: Call, info: OutputInfo, fact: OutputFailed) -> list[Action]:
    """
    A stop crossed the failure of an output that never started: it failed
    (STREAMFAILED), nothing more.
    """
    return failed(call, info, fact)


def uploaded(call: Call, info: OutputInfo, fact: OutputUploaded) -> list[Action]:
    """
    RECORDINGUPLOADED (also after SESSIONCOMPLETED).
    """
    info.upload = {"url": fact.url, "status": fact.status}
    return [_event(call, info, fact.now, events.RecordingUploaded, url=fact.url, status=fact.status)]


def ignore(call: Call, info: OutputInfo, fact: OutputInput) -> list[Action]:
    """
    Nothing to do.
    """
    return []


_P, _S, _A = OutputState.PENDING, OutputState.STARTING, OutputState.ACTIVE
_SG, _SD, _F = OutputState.STOPPING, OutputState.STOPPED, OutputState.FAILED

#: (OutputState, input type) -> L{Row}; handlers take (call, output, fact).
#: After each, the session completes if it was waiting for this output.
OUTPUT_TABLE: dict[tuple[OutputState, type[OutputInput]], Row] = {
    (_S, OutputStarted): Row(started, _A, "SPEC s8 STREAMSTARTED (handshake done) / s9 RECORDINGSTARTED (file open)"),
    (_S, OutputFailed): Row(failed, _F, "SPEC s8 STREAMFAILED (HTTP, TLS, connect, timeout) / s9 RECORDINGFAILED"),
    (_A, OutputFailed): Row(failed, _F, "SPEC s9: RECORDINGFAILED (disk full): the call and its other outputs go on"),
    (_A, OutputStopped): Row(stopped, _SD, "SPEC s8: a stream whose reconnection gave up stops, stoppedBy error"),
    (_SG, OutputStopped): Row(stopped, _SD, "SPEC s8 STREAMSTOPPED / s9 RECORDINGSTOPPED (sha256, duration, pauses)"),
    (_SG, OutputFailed): Row(stop_cancelled, _F, "SPEC s8: stopped while failing to start, or the file failed at close"),
    (_SG, OutputStarted): Row(ignore, _SG, "a start crossed our stop: the stop's report follows"),
    (_SD, OutputUploaded): Row(uploaded, _SD, "SPEC s9: RECORDINGUPLOADED after the recording ended"),
}
