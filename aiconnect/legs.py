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
