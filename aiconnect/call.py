# -*- test-case-name: tests.test_call,tests.test_call_limits,tests.integration.test_inbound -*-
"""
The L{Call}: one recording session as a pure state machine, the only owner
of session policy (STYLE s2 "The Call object", s5).

The SIP and media layers report facts as I{inputs} (frozen dataclasses that
carry the C{now} they happened at); L{Call.handle} looks the pair
C{(state, type(input))} up in L{CALL_TABLE} (forward facts in
L{FORWARD_TABLE}, by the forward's state), changes state and returns
I{actions} (L{StartForward}, L{StopForward}, L{UpdateForward},
L{ByeInbound}, L{CloseMedia}, L{Emit}, L{Finished}) that a thin adapter
(L{aiconnect.runner.CallRunner}) carries out.  Each table row names the
SPEC or RFC section it implements; a pair not in a table is an input the
state machine does not expect there, answered by L{_absorb} (kept as a
no-op, as a retransmission is) and listed in L{Call.absorbed}.

Nothing here does I/O, reads a clock or imports Twisted: tests drive it
with fixed C{now} values (C{tests/test_call.py}).

The states, state sets, inputs and actions are defined in
L{aiconnect.call_facts} and re-exported here.

Mandatory forwards (SPEC s13: the SRC's 200 OK waits for them, a failure
answers 503) are decided in L{aiconnect.call_mandatory}, rows here.

Reading the tables answers "what happens when": e.g. the SRS sends BYE
while the inbound is on hold (the hold is media-level; the Call is
C{ACTIVE}): C{FORWARD_TABLE[(ACTIVE, ForwardBye)]} stops that forward
alone (SIPRECFORWARDSTOPPED C{srsBye}), and the session goes on.
"""

from __future__ import annotations

import enum
from typing import Any

from aiconnect import call_mandatory as mandatory
from aiconnect import call_failover as failover
from aiconnect import call_outputs as outputs
from aiconnect import events
from aiconnect.call_facts import (
    BUSY_FORWARD_STATES,
    LIVE_FORWARD_STATES,
    REFUSED_ENDED,
    REFUSED_LIMIT,
    RUNNING_FORWARD_STATES,
    ByeInbound,
    CallLimits,
    CallState,
    CloseMedia,
    DrainExpired,
    Finished,
    ForwardAnswered,
    ForwardBye,
    ForwardClosed,
    ForwardFailed,
    ForwardInfo,
    ForwardInput,
    ForwardLost,
    ForwardOrdered,
    ForwardReconnecting,
    ForwardRejected,
    ForwardResumed,
    ForwardState,
    ForwardStopped,
    InboundAcked,
    InboundAnswered,
    InboundEnded,
    InboundUpdated,
    MediaClosed,
    MediaTimeout,
    OrderRefused,
    SessionTimerExpired,
    Shutdown,
    StartForward,
    StopForward,
    StopOrdered,
    UpdateForward,
    new_forward_id,
    new_session_id,
)
from aiconnect.legs import StreamInfo
from aiconnect.machine import Action, Emit, Input, Row

__all__ = [
    "BUSY_FORWARD_STATES",
    "CALL_TABLE",
    "FORWARD_TABLE",
    "LIVE_FORWARD_STATES",
    "REFUSED_ENDED",
    "REFUSED_LIMIT",
    "RUNNING_FORWARD_STATES",
    "Action",
    "ByeInbound",
    "Call",
    "CallLimits",
    "CallState",
    "CloseMedia",
    "DrainExpired",
    "Emit",
    "Finished",
    "ForwardAnswered",
    "ForwardBye",
    "ForwardClosed",
    "ForwardFailed",
    "ForwardInfo",
    "ForwardInput",
    "ForwardLost",
    "ForwardOrdered",
    "ForwardReconnecting",
    "ForwardRejected",
    "ForwardResumed",
    "ForwardState",
    "ForwardStopped",
    "InboundAcked",
    "InboundAnswered",
    "InboundEnded",
    "InboundUpdated",
    "Input",
    "MediaClosed",
    "MediaTimeout",
    "OrderRefused",
    "SessionTimerExpired",
    "Shutdown",
    "StartForward",
    "StopForward",
    "StopOrdered",
    "StreamInfo",
    "UpdateForward",
    "new_forward_id",
    "new_session_id",
]


#: How the inbound dialog ended (L{InboundEnded.reason}) -> the
#: SESSIONCOMPLETED reason.
_INBOUND_END_REASONS = {
    "bye": events.COMPLETED_INBOUND_BYE,
    "cancel": events.COMPLETED_CANCEL,
    "ack-timeout": events.COMPLETED_ERROR,
    "remote-gone": events.COMPLETED_ERROR,
    "local": events.COMPLETED_ERROR,
}


class Call:
    """
    One recording session (see the module docstring).

    @ivar session_id: our id, used by the API and events.
    @ivar tenant: the L{aiconnect.config.TenantConfig} (its C{domain} is
        read).
    @ivar state: the L{CallState}.
    @ivar answered: whether we sent 200 OK to the SRC.
    @ivar streams: the inbound L{StreamInfo}s (the SRS adapter keeps them
        current).
    @ivar metadata: the current RFC 7865 metadata (or L{None}).
    @ivar forwards: forward id -> L{ForwardInfo}.
    @ivar final_stats: the relay's counters once the media is closed.
    @ivar counters: process-wide counters this call adds to
        (C{forwards_refused_limit}).
    @ivar absorbed_total: how many inputs had no row for their state (the
        runner logs each at debug level).
    @ivar absorbed: the first of them, as (state, input) names
        (kept for tests and debugging; bounded).
    """

    def __init__(
        self,
        tenant: Any,
        call_id: str,
        from_header: str,
        to_header: str,
        source: str,
        now: float,
        session_id: str | None = None,
        limits: CallLimits | None = None,
        counters: dict[str, int] | None = None,
    ) -> None:
        self.session_id = session_id or new_session_id()
        self.tenant = tenant
        self.call_id = call_id
        self.from_header = from_header
        self.to_header = to_header
        self.source = source
        self.limits = limits if limits is not None else CallLimits()
        self.counters = counters if counters is not None else {}
        self.state = CallState.NEGOTIATING
        self.answered = False
        self.created = now
        self.started: float | None = None
        self.ended: float | None = None
        self.end_reason: str | None = None
        self.streams: list[StreamInfo] = []
        self.metadata: Any = None
        self.metadata_error: str | None = None
        self.x_headers: list[tuple[str, str]] = []
        #: SPEC s13: the inbound INVITE's correlation headers (name as
        #: received -> value), L{aiconnect.siprec.correlation}.
        self.correlation: dict[str, str] = {}
        self.new_call_error: str | None = None
        self.forwards: dict[str, ForwardInfo] = {}
        #: Streams and recordings (L{aiconnect.call_outputs}), by id.
        self.outputs: dict[str, outputs.OutputInfo] = {}
        #: The whole session is paused (SPEC s10): new outputs start paused.
        self.paused = False
        #: Who stops the outputs of an ending session (recordings stop
        #: after the streams), or L{None} while it is not ending.
        self.outputs_stopped_by: str | None = None
        self.final_stats: dict[str, Any] | None = None
        #: CloseMedia was asked for (once), MediaClosed is awaited.
        self.media_closing = False
        #: SPEC s13: the SRC's 200 OK waits for the mandatory forwards.
        self.answer_held = False
        #: Forward events that happened before the session was answered,
        #: emitted after SESSIONSTARTED (SPEC s2; L{aiconnect.call_mandatory}).
        self.held_events: list[Emit] = []
        self.absorbed: list[tuple[str, str]] = []
        self.absorbed_total = 0

    # -- the one entry point ---------------------------------------------------

    def handle(self, fact: Input) -> list[Action]:
        """
        Take one input: change state and return the actions to carry out,
        in order.

        @raise OrderRefused: for a L{ForwardOrdered} the session cannot take.
        @raise KeyError: for a L{StopOrdered} naming an unknown forward, or
            a forward fact about a forward this call never had.
        """
        if isinstance(fact, ForwardInput):
            info = self.forwards.get(fact.forward_id)
            if info is None:
                raise KeyError(fact.forward_id)
            row = FORWARD_TABLE.get((info.state, type(fact)))
            if row is None:
                return self._absorb(info.state, fact)
            actions = row.handler(self, info, fact)
            if self.state is CallState.NEGOTIATING:
                # SPEC s13: a mandatory forward, before the SRC is answered.
                actions = mandatory.early_forward_fact(self, actions, fact.now)
            return actions + self._maybe_complete()
        if isinstance(fact, outputs.OutputInput):
            output = self.outputs.get(fact.output_id)
            if output is None:
                raise KeyError(fact.output_id)
            row = outputs.OUTPUT_TABLE.get((output.state, type(fact)))
            if row is None:
                return self._absorb(output.state, fact)
            return row.handler(self, output, fact) + self._maybe_complete()
        row = CALL_TABLE.get((self.state, type(fact)))
        if row is None:
            return self._absorb(self.state, fact)
        return row.handler(self, fact)

    def _absorb(self, state: enum.Enum, fact: Input) -> list[Action]:
        self.absorbed_total += 1
        if len(self.absorbed) < 64:
            self.absorbed.append((state.name, type(fact).__name__))
        return []

    def _envelope(self, now: float) -> dict[str, Any]:
        """
        The fields every event of this session shares (L{events.Event}).
        """
        return {"session_id": self.session_id, "tenant": self.tenant.domain, "now": now}

    # -- queries ---------------------------------------------------------------

    @property
    def is_active(self) -> bool:
        """
        Whether the session is answered and ACKed (outputs start now).
        """
        return self.state is CallState.ACTIVE

    def live_outputs(self) -> dict[str, int]:
        """
        The outputs of this session that are ordered and not yet stopped or
        failed, by kind: the one count behind C{max_forwards_per_call} and
        C{max_outputs_per_call} (SPEC s12).
        """
        live = {"forward": sum(1 for info in self.forwards.values() if info.holds_slot)}
        for kind in outputs.KINDS:
            live[kind] = sum(1 for info in self.outputs.values() if info.kind == kind and info.holds_slot)
        return live

    def order_refusal(self, kind: str) -> OrderRefused | None:
        """
        Whether a new output of C{kind} may be ordered now: the one place
        deciding it, for the REST API and the newCall answer alike.

        @param kind: C{"forward"}, C{"stream"} or C{"recording"}.
        @return: L{None} when allowed, else the L{OrderRefused} to report.
        """
        if self.state in (CallState.TERMINATING, CallState.ENDED):
            return OrderRefused(REFUSED_ENDED, "session is %s: no new %s" % (self.state.value, kind))
        live = self.live_outputs()
        checks = [("max_outputs_per_call", sum(live.values()), self.limits.max_outputs_per_call)]
        if kind == "forward":
            checks.insert(0, ("max_forwards_per_call", live["forward"], self.limits.max_forwards_per_call))
        for key, count, cap in checks:
            if count >= cap:
                return OrderRefused(REFUSED_LIMIT, "%s (%d) reached: no new %s" % (key, cap, kind), key)
        return None

    # -- the session -------------------------------------------------------------

    def _answered(self, fact: InboundAnswered) -> list[Action]:
        self.answered = True
        return []

    def _acked(self, fact: InboundAcked) -> list[Action]:
        self.state = CallState.ACTIVE
        self.started = fact.now
        actions: list[Action] = [
            Emit(
                events.SessionStarted(
                    **self._envelope(fact.now),
                    call_id=self.call_id,
                    from_uri=self.from_header,
                    to_uri=self.to_header,
                    streams=tuple(s.label or str(s.index) for s in self.streams),
                    new_call_error=self.new_call_error,
                )
            )
        ]
        # Mandatory forwards answered before the SRC's ACK (SPEC s13).
        actions += mandatory.release_held(self)
        for info in list(self.forwards.values()):
            if info.state is ForwardState.PENDING:
                actions += self._launch(info, fact.now)
        for output in list(self.outputs.values()):
            if output.state is outputs.OutputState.PENDING:
                actions += outputs.launch(self, output, fact.now)
        return actions

    def _inbound_ended(self, fact: InboundEnded) -> list[Action]:
        return self._terminate(_INBOUND_END_REASONS.get(fact.reason, fact.reason), fact.now, bye=False)

    def _media_timeout(self, fact: MediaTimeout) -> list[Action]:
        return self._terminate(events.COMPLETED_MEDIA_TIMEOUT, fact.now, bye=True)

    def _session_timer(self, fact: SessionTimerExpired) -> list[Action]:
        return self._terminate(events.COMPLETED_SESSION_TIMER, fact.now, bye=True)

    def _shutdown(self, fact: Shutdown) -> list[Action]:
        return self._terminate(events.COMPLETED_SHUTDOWN, fact.now, bye=True)

    def _updated(self, fact: InboundUpdated) -> list[Action]:
        return [
            UpdateForward(info.forward_id, fact.media_changed, fact.metadata_changed)
            for info in self.forwards.values()
            if info.state in (ForwardState.ACTIVE, ForwardState.RECONNECTING)
        ]

    def _terminate(self, reason: str, now: float, bye: bool) -> list[Action]:
        """
        End the session: BYE the SRC if asked, stop every forward (their
        BYEs and events first), then close the media and SESSIONCOMPLETED
        once every forward has stopped (SPEC s2 order).
        """
        self.state = CallState.TERMINATING
        self.end_reason = reason
        actions = mandatory.ending(self)
        if bye and self.answered:
            actions.append(ByeInbound())
        if reason == events.COMPLETED_INBOUND_BYE:
            stopped_by = events.STOPPED_BY_INBOUND_BYE
        elif reason == events.COMPLETED_SHUTDOWN:
            stopped_by = events.STOPPED_BY_SHUTDOWN
        else:
            stopped_by = events.STOPPED_BY_ERROR
        for info in list(self.forwards.values()):
            if info.state in LIVE_FORWARD_STATES:
                actions += self._stop(info, stopped_by, now)
        actions += outputs.stop_all(self, stopped_by)
        return actions + self._maybe_complete()

    def _maybe_complete(self) -> list[Action]:
        if self.state is not CallState.TERMINATING or self.media_closing:
            return []
        stopping = outputs.stop_recordings_when_streams_done(self)
        if stopping:
            return stopping
        if any(info.state in BUSY_FORWARD_STATES for info in self.forwards.values()):
            return []
        if any(output.state in outputs.BUSY_OUTPUT_STATES for output in self.outputs.values()):
            return []
        self.media_closing = True
        return [CloseMedia()]

    def _media_closed(self, fact: MediaClosed) -> list[Action]:
        self.state = CallState.ENDED
        self.ended = fact.now
        self.final_stats = fact.stats
        return [
            Emit(
                events.SessionCompleted(
                    **self._envelope(fact.now),
                    reason=self.end_reason or events.COMPLETED_ERROR,
                    duration=round(fact.now - (self.started or self.created), 3),
                    stats=fact.stats,
                )
            ),
            Finished(),
        ]

    def _drain_expired(self, fact: DrainExpired) -> list[Action]:
        for info in self.forwards.values():
            if info.state is ForwardState.STOPPING:
                info.state = ForwardState.STOPPED
        return self._maybe_complete()

    # -- orders ------------------------------------------------------------------

    def _ordered(self, fact: ForwardOrdered) -> list[Action]:
        refusal = self.order_refusal("forward")
        if refusal is not None:
            if refusal.reason == REFUSED_LIMIT:
                self.counters["forwards_refused_limit"] = self.counters.get("forwards_refused_limit", 0) + 1
            raise refusal
        info = ForwardInfo(fact.forward_id, fact.order, mandatory=getattr(fact.order, "mandatory", False) is True)
        self.forwards[info.forward_id] = info
        if self.state is CallState.ACTIVE:
            return self._launch(info, fact.now)
        return []

    def _refused_when_ending(self, fact: ForwardOrdered) -> list[Action]:
        refusal = self.order_refusal("forward")
        assert refusal is not None
        raise refusal

    def _rejected(self, fact: ForwardRejected) -> list[Action]:
        # Reported once the session is active (_acked launches it), never
        # outside SESSIONSTARTED ... SESSIONCOMPLETED.
        info = ForwardInfo(fact.forward_id, fact.order, error=fact.reason, raw=fact.raw, mandatory=fact.mandatory)
        self.forwards[info.forward_id] = info
        if self.state is CallState.ACTIVE:
            return self._launch(info, fact.now)
        return []

    def _launch(self, info: ForwardInfo, now: float) -> list[Action]:
        if info.error is None:
            info.state = ForwardState.TRYING
            info.paused = self.paused
            return [StartForward(info.forward_id, info.order, info.paused)]
        raw = info.raw if isinstance(info.raw, dict) else {}
        uri = raw.get("uri") if isinstance(raw.get("uri"), str) else ""
        ref = raw.get("sipRecForwardReferenceId") if isinstance(raw.get("sipRecForwardReferenceId"), dict) else None
        return self._failed(info, ForwardFailed(now=now, forward_id=info.forward_id, reason=info.error, uri=uri, reference_id=ref))

    def _give_up_forward(self, info: ForwardInfo, reason: str, now: float) -> list[Action]:
        """
        SPEC s13 C{mandatory_wait}: a forward still trying fails, its leg
        is stopped (CANCEL; what it reports after is absorbed).
        """
        failed = self._failed(info, ForwardFailed(now=now, forward_id=info.forward_id, reason=reason))
        return failed + [StopForward(info.forward_id, events.STOPPED_BY_ERROR)]

    def _stop_ordered(self, fact: StopOrdered) -> list[Action]:
        if fact.forward_id is not None:
            targets = [self.forwards[fact.forward_id]]
        else:
            targets = list(self.forwards.values())
        actions: list[Action] = []
        for info in targets:
            if info.state in LIVE_FORWARD_STATES:
                actions += self._stop(info, fact.stopped_by, fact.now)
        return actions + self._maybe_complete()

    def _stop(self, info: ForwardInfo, stopped_by: str, now: float) -> list[Action]:
        if info.state is ForwardState.PENDING:
            # Never started: nothing on the wire, nothing to report.
            info.state = ForwardState.STOPPED
            info.stopped_by = stopped_by
            return []
        return [StopForward(info.forward_id, stopped_by)]

    # -- forwards (FORWARD_TABLE handlers: info, fact) ------------------------------

    def _fwd_answered(self, info: ForwardInfo, fact: ForwardAnswered) -> list[Action]:
        info.state = ForwardState.ACTIVE
        info.target = fact.target
        return [
            Emit(
                events.SiprecForwardStarted(
                    **self._envelope(fact.now),
                    forward_id=info.forward_id,
                    uri=info.uri,
                    target=fact.target,
                    codec=fact.codec,
                    srtp=fact.srtp,
                    reference_id=info.reference_id,
                )
            )
        ]

    def _failed(self, info: ForwardInfo, fact: ForwardFailed) -> list[Action]:
        info.state = ForwardState.FAILED
        if fact.target is not None:
            # The session API shows the target it last tried.
            info.target = fact.target
        return [
            Emit(
                events.SiprecForwardFailed(
                    **self._envelope(fact.now),
                    forward_id=info.forward_id,
                    uri=fact.uri or info.uri,
                    reason=fact.reason,
                    status=fact.status,
                    target=fact.target,
                    targets_tried=tuple(fact.targets_tried),
                    reference_id=fact.reference_id if fact.reference_id is not None else info.reference_id,
                )
            )
        ]

    def _stopped_event(self, info: ForwardInfo, stopped_by: str, stats: dict[str, Any] | None, now: float) -> Emit:
        info.stopped_by = stopped_by
        return Emit(
            events.SiprecForwardStopped(
                **self._envelope(now),
                forward_id=info.forward_id,
                uri=info.uri,
                target=info.target or "",
                stopped_by=stopped_by,
                reason=stopped_by,
                stats=stats,
                reference_id=info.reference_id,
            )
        )

    def _fwd_bye(self, info: ForwardInfo, fact: ForwardBye) -> list[Action]:
        info.state = ForwardState.STOPPED
        stopped_by = events.STOPPED_BY_SRS_BYE if fact.reason == "bye" else events.STOPPED_BY_ERROR
        return [self._stopped_event(info, stopped_by, fact.stats, fact.now)]

    def _fwd_lost(self, info: ForwardInfo, fact: ForwardLost) -> list[Action]:
        info.state = ForwardState.STOPPED
        return [self._stopped_event(info, events.STOPPED_BY_ERROR, fact.stats, fact.now)]

    def _fwd_stopped(self, info: ForwardInfo, fact: ForwardStopped) -> list[Action]:
        info.state = ForwardState.STOPPING if fact.awaiting_bye else ForwardState.STOPPED
        return [self._stopped_event(info, fact.stopped_by, fact.stats, fact.now)]

    def _fwd_closed(self, info: ForwardInfo, fact: ForwardClosed) -> list[Action]:
        info.state = ForwardState.STOPPED
        return []

    def _fwd_ignore(self, info: ForwardInfo, fact: ForwardInput) -> list[Action]:
        return []


_N, _A, _T, _E = CallState.NEGOTIATING, CallState.ACTIVE, CallState.TERMINATING, CallState.ENDED
_LIVE_CALL = (_N, _A)

#: (CallState, input type) -> L{Row}.  Pairs not listed are absorbed (a
#: late or repeated fact: ACK retransmitted, BYE after the end ...).
CALL_TABLE: dict[tuple[CallState, type[Input]], Row] = {
    (_N, InboundAnswered): Row(Call._answered, _N, "RFC 3261 s13.3.1.4: 200 OK sent, the SRC's ACK awaited"),
    (_N, InboundAcked): Row(Call._acked, _A, "SPEC s2: SESSIONSTARTED, then the ordered forwards start (SPEC s4)"),
    (_N, mandatory.NewCallDone): Row(mandatory.new_call_done, None, "SPEC s2: 200 OK to the SRC; SPEC s13: first the mandatory forwards start and answer"),
    (_N, mandatory.MandatoryWaitExpired): Row(mandatory.wait_expired, None, "SPEC s13: a mandatory forward unanswered within [limits] mandatory_wait: 503"),
    **{
        (s, InboundEnded): Row(Call._inbound_ended, _T, "RFC 3261 s15.1.2 BYE / s9.2 CANCEL / s13.3.1.4 no ACK: forwards stop, SESSIONCOMPLETED (SPEC s2)")
        for s in _LIVE_CALL
    },
    (_A, InboundUpdated): Row(Call._updated, _A, "RFC 7866 s7.1.1.1, SPEC s4: each answered forward re-INVITEs its SRS"),
    **{
        (s, MediaTimeout): Row(Call._media_timeout, _T, "SPEC s5 [rtp] media_timeout: BYE the SRC, reason mediaTimeout")
        for s in _LIVE_CALL
    },
    **{
        (s, SessionTimerExpired): Row(Call._session_timer, _T, "RFC 4028 s10: BYE before the session interval ends")
        for s in _LIVE_CALL
    },
    **{(s, Shutdown): Row(Call._shutdown, _T, "SPEC s7 drain: BYE every dialog, reason shutdown") for s in _LIVE_CALL},
    **{(s, ForwardOrdered): Row(Call._ordered, None, "SPEC s3, s12: ordered; starts once ACTIVE (mandatory: SPEC s13); 409 over a limit") for s in _LIVE_CALL},
    **{(s, ForwardOrdered): Row(Call._refused_when_ending, None, "SPEC s6: 409, the session is ending or ended") for s in (_T, _E)},
    **{(s, ForwardRejected): Row(Call._rejected, None, "SPEC s3, s12: SIPRECFORWARDFAILED once the session is active") for s in _LIVE_CALL},
    **{(s, StopOrdered): Row(Call._stop_ordered, None, "SPEC s6 stopsiprecforward: CANCEL or BYE (SPEC s4)") for s in CallState},
    **{(s, outputs.OutputOrdered): Row(outputs.ordered, None, "SPEC s8, s9, s12: ordered; starts once ACTIVE; 409 over a limit") for s in _LIVE_CALL},
    **{(s, outputs.OutputOrdered): Row(outputs.ordered, None, "SPEC s6: 409, the session is ending or ended") for s in (_T, _E)},
    **{(s, outputs.OutputRejected): Row(outputs.rejected, None, "SPEC s8, s9, s12: STREAMFAILED / RECORDINGFAILED once active") for s in _LIVE_CALL},
    **{(s, outputs.OutputStopOrdered): Row(outputs.stop_ordered, None, "SPEC s8 stopstream / s9 stoprecording") for s in CallState},
    **{(s, outputs.PauseOrdered): Row(outputs.pause, None, "SPEC s10: no audio leaves while paused, SESSIONPAUSED") for s in _LIVE_CALL},
    **{(s, outputs.ResumeOrdered): Row(outputs.resume, None, "SPEC s10: audio again, SESSIONRESUMED") for s in _LIVE_CALL},
    **{
        (s, fact): Row(outputs.refuse_pause, None, "SPEC s6, s10: 409, the session is ending or ended")
        for s in (_T, _E)
        for fact in (outputs.PauseOrdered, outputs.ResumeOrdered)
    },
    (_T, MediaClosed): Row(Call._media_closed, _E, "SPEC s2: SESSIONCOMPLETED is the last event"),
    (_T, DrainExpired): Row(Call._drain_expired, None, "SPEC s7: drain_timeout is up, unanswered BYEs count as answered"),
}

_P, _TR, _AC = ForwardState.PENDING, ForwardState.TRYING, ForwardState.ACTIVE
_RC = ForwardState.RECONNECTING
_SG, _SD, _F = ForwardState.STOPPING, ForwardState.STOPPED, ForwardState.FAILED


def _entering(state: ForwardState, handler: Any) -> Any:
    """
    A handler of another module (L{aiconnect.call_failover}) run once the
    forward is in C{state}.
    """

    def run(call: Call, info: ForwardInfo, fact: ForwardInput) -> list[Action]:
        info.state = state
        result: list[Action] = handler(call, info, fact)
        return result

    return run


#: (ForwardState, input type) -> L{Row}; handlers take (call, forward, fact).
#: After each, the session completes if it was waiting for this forward.
FORWARD_TABLE: dict[tuple[ForwardState, type[ForwardInput]], Row] = {
    (_TR, ForwardAnswered): Row(Call._fwd_answered, _AC, "SPEC s4: 200 and ACK, SIPRECFORWARDSTARTED"),
    (_TR, ForwardFailed): Row(Call._failed, _F, "SPEC s4, RFC 3263 s4.3: every target failed, SIPRECFORWARDFAILED"),
    (_AC, ForwardFailed): Row(Call._failed, _F, "SPEC s4: the answer was not usable"),
    (_AC, ForwardBye): Row(Call._fwd_bye, _SD, "SPEC s4: the SRS's BYE ends this forward only, stoppedBy srsBye"),
    (_AC, ForwardLost): Row(Call._fwd_lost, _SD, "RFC 4028 s10, SPEC s4 keepalive: the SRS is gone, stoppedBy error"),
    (_TR, ForwardStopped): Row(Call._fwd_stopped, _SD, "RFC 3261 s9.1: CANCELled (or BYE to a late 200)"),
    (_AC, ForwardStopped): Row(Call._fwd_stopped, _SG, "SPEC s2: BYE sent, SIPRECFORWARDSTOPPED before the SRS's 200"),
    (_AC, ForwardReconnecting): Row(_entering(_RC, failover.lost), _RC, "SPEC s13: the SRS is lost mid-call, the next target is dialled"),
    (_RC, ForwardResumed): Row(_entering(_AC, failover.resumed), _AC, "SPEC s13: re-established, SIPRECFORWARDRESUMED with the gap"),
    (_RC, ForwardFailed): Row(Call._failed, _F, "SPEC s13: every target failed (or too many losses), SIPRECFORWARDFAILED"),
    (_RC, ForwardStopped): Row(Call._fwd_stopped, _SD, "SPEC s13, RFC 3261 s9.1: stopped while re-establishing, the dial cancelled"),
    (_SG, ForwardClosed): Row(Call._fwd_closed, _SD, "SPEC s2: the SRS answered BYE (or it timed out)"),
    (_SG, ForwardBye): Row(Call._fwd_ignore, _SG, "RFC 3261 s15: BYEs crossed; ours ends it"),
    **{(s, ForwardClosed): Row(Call._fwd_ignore, None, "RFC 3261 s15.1.1: a late answer to our BYE, nothing left to do") for s in (_SD, _F)},
}
