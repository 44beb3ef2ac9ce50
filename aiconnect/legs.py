# -*- test-case-name: tests.test_call,tests.siprec.test_forward,tests.integration.test_inbound -*-
"""
The seams between the L{aiconnect.call.Call} and the code that talks to
the network: C{typing.Protocol}s for the legs, the media and the event and
journal sinks, and the value objects they share.

The L{aiconnect.runner.CallRunner} holds a Call and these collaborators: it
feeds facts to the Call and carries out its actions on them.  Production
implements them with SIP and the relay (L{aiconnect.siprec.srs},
L{aiconnect.siprec.forward}, L{aiconnect.media.relay},
L{aiconnect.webhooks}, L{aiconnect.recovery}); tests with small recording
fakes.

This module imports nothing from Twisted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "EventSink",
    "ForwardLeg",
    "InboundLeg",
    "LegFactory",
    "MediaSession",
    "OutputFactory",
    "OutputLeg",
    "OutputObserver",
    "SessionJournal",
    "StreamInfo",
]


@dataclass
class StreamInfo:
    """
    One inbound media stream as negotiated.

    @ivar index: the m-line index in the offer.
    @ivar label: the C{a=label} (RFC 4574), or C{None}.
    @ivar stream_id: the metadata stream id bound to the label, or C{None}.
    @ivar codec: the codec name the SRC sends (PCMU, PCMA), or C{None}.
    @ivar payload_type: its payload type.
    @ivar local_port: our RTP port, 0 for a rejected stream.
    @ivar remote: the SRC's (address, port) from the SDP, or C{None}.
    @ivar direction: the SRC's direction attribute.
    @ivar srtp: whether the stream is SRTP.
    @ivar participants: the metadata participants sending on this stream.
    @ivar relay_index: the relay stream (L{MediaSession} stream index)
        carrying it, or C{None} when unknown (then its position among the
        accepted streams is assumed).
    """

    index: int
    label: str | None
    codec: str | None
    payload_type: int | None
    local_port: int
    remote: tuple[str, int] | None
    direction: str
    srtp: bool = False
    stream_id: str | None = None
    participants: list[str] = field(default_factory=list)
    relay_index: int | None = None


class EventSink(Protocol):
    """
    Where events go: L{aiconnect.webhooks.EventOutbox} in production (the
    durable outbox), a small recording fake in tests.
    """

    def emit(self, tenant: str, session_id: str, payload: Mapping[str, Any]) -> str | None:
        """
        Store an event for delivery and return at once; never raise.

        @param tenant: The tenant's domain (selects C{callback_url}).
        @param session_id: The session; events of one session are delivered
            in emission order.
        @param payload: The event object (L{aiconnect.events.Event.to_json}).
        @return: The C{eventId}, or L{None} if the event could not be taken
            at all (logged and counted).
        """


class InboundLeg(Protocol):
    """
    The SRC's dialog (L{aiconnect.sip.ua.InviteSession}).
    """

    terminated: bool

    def bye(self) -> Any:
        """
        Send BYE; return a Deferred of the answer (or L{None}).
        """


class ForwardLeg(Protocol):
    """
    One outbound SIPRec session to an SRS (L{aiconnect.siprec.forward.ForwardLeg}).
    It reports its facts to the runner (C{ForwardAnswered}, C{ForwardFailed},
    C{ForwardBye}, C{ForwardLost}, C{ForwardStopped}, C{ForwardClosed}).
    """

    def start(self) -> None:
        """
        Bind ports, build the offer, resolve the trunk and send the INVITE.
        """

    def stop(self, stopped_by: str) -> None:
        """
        CANCEL before the answer, BYE after (SPEC s4).
        """

    def inbound_updated(self, media_changed: bool, metadata_changed: bool) -> Any:
        """
        Re-INVITE the SRS with the new media / metadata.
        """

    def stats(self) -> dict[str, Any] | None:
        """
        The forward's media counters, or L{None}.
        """

    def set_paused(self, paused: bool) -> None:
        """
        SPEC s10: hold (C{True}) or release the forward's RTP, and re-INVITE
        the SRS with C{a=inactive} / C{a=sendonly} streams (before the
        answer: the INVITE offers them so).
        """

    def dialog(self) -> Any:
        """
        The forward's confirmed dialog (an C{InviteSession}), or L{None}.
        """


class LegFactory(Protocol):
    """
    Makes the L{ForwardLeg} of a forward (L{aiconnect.siprec.forward.Forwarder}).
    """

    def __call__(self, runner: Any, forward_id: str, order: Any) -> ForwardLeg:
        """
        A new, unstarted leg reporting to C{runner}.
        """


class OutputObserver(Protocol):
    """
    What a stream or recording output reports to (the runner: each call
    becomes a fact for the Call).  Called on the reactor thread, at most
    once each in this order: started or failed; stopped; uploaded (a
    recording with an C{uploadUrl}).
    """

    def output_started(self, output_id: str, detail: Mapping[str, Any]) -> None:
        """
        The output runs: a stream's WebSocket handshake is done, a
        recording's file is open.

        @param detail: event fields: C{{"url": ...}} for a stream (without
            query string or credentials), C{{"file": ...}} for a recording.
        """

    def output_failed(self, output_id: str, reason: str) -> None:
        """
        It could not start (C{STREAMFAILED}: C{HTTP 403}, C{TLS: ...},
        C{connect: ...}, C{timeout}) or, for a recording, it failed while
        running (C{RECORDINGFAILED}: C{disk full} ...): it holds nothing
        any more.
        """

    def output_stopped(self, output_id: str, stopped_by: str, detail: Mapping[str, Any]) -> None:
        """
        It stopped after L{OutputLeg.stop}, or on its own after it started
        (a stream whose reconnection gave up: C{stopped_by="error"}).

        @param detail: event fields: C{{"stats": {...}}} for a stream; for
            a recording C{file}, C{duration}, C{bytes}, C{sha256},
            C{channels}, C{encoding}, C{pauses}.
        """

    def output_uploaded(self, output_id: str, url: str, status: int | str) -> None:
        """
        A recording's upload ended: C{url} without its query string, the
        HTTP status of the last attempt (or a reason string).
        """


class OutputLeg(Protocol):
    """
    One stream (L{aiconnect.outputs.stream}) or recording
    (L{aiconnect.outputs.recording}) of a session.
    """

    def start(self) -> None:
        """
        Connect / open the file, attach to the session's PCM tap; report
        C{output_started} or C{output_failed} (possibly at once).
        """

    def stop(self, stopped_by: str) -> None:
        """
        Detach, finish (stop message and close 1000 / final header and
        sha256) and report C{output_stopped}, possibly later.  Idempotent.
        """

    def set_paused(self, paused: bool) -> None:
        """
        SPEC s10: while paused, silence instead of the session's audio
        (a recording lists the interval in C{pauses}).
        """

    def stats(self) -> dict[str, Any]:
        """
        Counters for the REST API (frames, bytes, dropped ...).
        """


class OutputFactory(Protocol):
    """
    Makes the L{OutputLeg} of an order.
    """

    def __call__(self, runner: Any, kind: str, output_id: str, order: Any) -> OutputLeg:
        """
        A new, unstarted output of C{kind} (C{"stream"} or C{"recording"})
        reporting to C{runner} (an L{OutputObserver}).
        """


class MediaSession(Protocol):
    """
    The relay's session of a call (L{aiconnect.media.relay.MediaSession}).
    """

    def stats(self) -> dict[str, Any]:
        """
        Its counters.
        """

    def close(self) -> None:
        """
        Release every port.
        """

    def attach_pcm(self, sink: Any) -> None:
        """
        Start giving C{sink} (an L{aiconnect.media.pcm.PcmSink}) one frame
        per 20 ms of wall-clock time, from the next tick on.
        """

    def detach_pcm(self, sink: Any) -> None:
        """
        Stop giving C{sink} frames (no error if it was not attached).
        """


class SessionJournal(Protocol):
    """
    Keeps what a restarted node needs to end the sessions its previous run
    left open (SPEC s14): the confirmed dialogs of each live session.
    Implemented by L{aiconnect.recovery.DialogJournal}; never raises.  Each
    method is called after the event it matches is emitted: a node killed
    in between sends that event again on restart (at-least-once), never
    none.
    """

    def session_started(self, runner: Any) -> None:
        """
        SESSIONSTARTED: store the inbound dialog.
        """

    def forward_started(self, runner: Any, forward_id: str) -> None:
        """
        SIPRECFORWARDSTARTED: store the forward's dialog.
        """

    def forward_ended(self, runner: Any, forward_id: str) -> None:
        """
        SIPRECFORWARDSTOPPED: forget the forward's dialog.
        """

    def session_ended(self, runner: Any) -> None:
        """
        SESSIONCOMPLETED: forget every dialog of the session.
        """
