# -*- test-case-name: tests.test_call,tests.test_call_limits,tests.test_call_failover -*-
"""
The facts of a L{aiconnect.call.Call}: its states and its forwards'
states (L{CallState}, L{ForwardState}), the state sets, the per-call
limits (L{CallLimits}) and the refusal of an order (L{OrderRefused}), what
the Call knows of one forward (L{ForwardInfo}), and the vocabulary of its
tables: the I{inputs} (frozen dataclasses that carry the C{now} they
happened at) and the I{actions} a thin adapter carries out
(L{aiconnect.runner.CallRunner}).

Data only, no policy: the transitions are L{aiconnect.call.CALL_TABLE} and
L{aiconnect.call.FORWARD_TABLE}.  L{aiconnect.call} re-exports every name
here, so C{from aiconnect.call import X} works; L{aiconnect.call_failover}
and L{aiconnect.call_mandatory} import from here (L{aiconnect.call}
imports them, so they cannot import it but for types).  Nothing here does
I/O, reads a clock or imports Twisted.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from typing import Any

from aiconnect.errors import AiconnectError
from aiconnect.machine import Action, Input

__all__ = [
    "BUSY_FORWARD_STATES",
    "LIVE_FORWARD_STATES",
    "REFUSED_ENDED",
    "REFUSED_LIMIT",
    "RUNNING_FORWARD_STATES",
    "ByeInbound",
    "CallLimits",
    "CallState",
    "CloseMedia",
    "DrainExpired",
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
    "MediaClosed",
    "MediaTimeout",
    "OrderRefused",
    "SessionTimerExpired",
    "Shutdown",
    "StartForward",
    "StopForward",
    "StopOrdered",
    "UpdateForward",
    "new_forward_id",
    "new_session_id",
]


class CallState(enum.Enum):
    """
    NEGOTIATING -> ACTIVE -> TERMINATING -> ENDED (STYLE s2).  The values
    are the C{state} of the REST API's session objects.
    """

    NEGOTIATING = "negotiating"
    ACTIVE = "active"
    TERMINATING = "terminating"
    ENDED = "ended"


class ForwardState(enum.Enum):
    """
    One forward (SPEC s3-s4): ordered (C{PENDING}, until the session is
    active), C{TRYING} (INVITE out), C{ACTIVE} (answered), C{RECONNECTING}
    (its SRS was lost mid-call, the next target is being dialled: SPEC
    s13), C{STOPPING} (our BYE unanswered), C{STOPPED}, C{FAILED}.  The
    values are the C{state} of the REST API's forward objects.
    """

    PENDING = "pending"
    TRYING = "trying"
    ACTIVE = "active"
    RECONNECTING = "reconnecting"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


#: Forward states that hold an output slot: ordered and not yet stopped or
#: failed (SPEC s12).  C{STOPPING} already had its SIPRECFORWARDSTOPPED.
LIVE_FORWARD_STATES = frozenset(
    (ForwardState.PENDING, ForwardState.TRYING, ForwardState.ACTIVE, ForwardState.RECONNECTING)
)
#: Forward states the session waits for before it completes (SPEC s2 order).
BUSY_FORWARD_STATES = frozenset(
    (ForwardState.TRYING, ForwardState.ACTIVE, ForwardState.RECONNECTING, ForwardState.STOPPING)
)
#: Forward states whose leg runs: a pause and an inbound update reach it
#: (a leg re-establishing its SRS applies them on the answer, SPEC s13).
RUNNING_FORWARD_STATES = frozenset((ForwardState.TRYING, ForwardState.ACTIVE, ForwardState.RECONNECTING))

#: L{OrderRefused.reason} when the session is ending or ended.
REFUSED_ENDED = "session ended"
#: L{OrderRefused.reason} when a per-call limit is reached (SPEC s12); also
#: the C{reason} of the C{SIPRECFORWARDFAILED} of a newCall order refused so.
REFUSED_LIMIT = "limit"

def new_session_id() -> str:
    """
    A fresh, unguessable session id.
    """
    return "ses_" + secrets.token_hex(12)


def new_forward_id() -> str:
    """
    A fresh forward id.
    """
    return "fwd_" + secrets.token_hex(8)


class OrderRefused(AiconnectError):
    """
    The L{Call} refuses a new output order: the session is ending or ended,
    or a per-call limit is reached (SPEC s12). The REST API answers 409
    with C{message}; a newCall order is reported as C{SIPRECFORWARDFAILED}
    with C{reason}.

    @ivar reason: L{REFUSED_ENDED} or L{REFUSED_LIMIT}.
    @ivar message: one line for the client, naming the limit.
    @ivar limit: the C{[limits]} key reached, or L{None}.
    """

    def __init__(self, reason: str, message: str, limit: str | None = None) -> None:
        super().__init__(reason, message, limit)
        self.reason = reason
        self.message = message
        self.limit = limit

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class CallLimits:
    """
    The per-call caps the Call enforces (the C{[limits]} keys of the same
    names, SPEC s12); built by the adapter from the configuration.
    """

    max_forwards_per_call: int = 4
    max_outputs_per_call: int = 8


@dataclass
class ForwardInfo:
    """
    What the Call knows of one forward.

    @ivar order: the parsed order (L{aiconnect.siprec.orders.ForwardOrder}),
        or L{None} for an invalid newCall order.
    @ivar error: the SIPRECFORWARDFAILED reason of an order refused before
        it started (invalid, or over a limit), reported once the session is
        active.
    @ivar raw: the order as the application wrote it (for an invalid one).
    @ivar mandatory: SPEC s13: the SRC's 200 OK waits for this forward
        (L{aiconnect.call_mandatory}).
    @ivar lost_at: when its SRS was last lost (SPEC s13), L{None} while
        none was.
    @ivar lost_reason: why.
    @ivar previous_target: the target lost.
    @ivar reconnects: how many times it was re-established (or tried).
    """

    forward_id: str
    order: Any
    state: ForwardState = ForwardState.PENDING
    target: str | None = None
    stopped_by: str | None = None
    error: str | None = None
    raw: Any = None
    paused: bool = False
    mandatory: bool = False
    lost_at: float | None = None
    lost_reason: str = ""
    previous_target: str | None = None
    reconnects: int = 0

    @property
    def holds_slot(self) -> bool:
        """
        Whether this forward counts towards the per-call limits: ordered
        (and accepted) and not yet stopped or failed (SPEC s12).
        """
        return self.error is None and self.state in LIVE_FORWARD_STATES

    @property
    def running(self) -> bool:
        """
        Whether its leg is started and not stopping (a pause reaches it).
        """
        return self.state in RUNNING_FORWARD_STATES

    @property
    def answered(self) -> bool:
        """
        Whether the SRS answered and the forward runs (SIPRECFORWARDSTARTED).
        """
        return self.state is ForwardState.ACTIVE

    @property
    def uri(self) -> str:
        """
        The order's C{uri} (C{""} without an order).
        """
        return self.order.uri if self.order is not None else ""

    @property
    def reference_id(self) -> Any:
        """
        The order's C{sipRecForwardReferenceId}, or L{None}.
        """
        return self.order.reference_id if self.order is not None else None


# -- inputs: facts, each with the moment it happened ---------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundAnswered(Input):
    """
    We sent 200 OK to the SRC.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundAcked(Input):
    """
    The SRC ACKed our 200 OK.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundEnded(Input):
    """
    The inbound dialog ended without us: C{reason} C{bye} (the SRC's BYE),
    C{cancel}, C{ack-timeout}, C{remote-gone}, C{local} (we could not
    answer).
    """

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundUpdated(Input):
    """
    The SRC sent new media and/or metadata in the dialog (re-INVITE/UPDATE).
    """

    media_changed: bool
    metadata_changed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaTimeout(Input):
    """
    The relay saw no RTP on any inbound stream for C{[rtp] media_timeout}.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionTimerExpired(Input):
    """
    The inbound session timer ran out, or our refresh failed (RFC 4028 s10).
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class Shutdown(Input):
    """
    The node is draining (SPEC s7): end the session with BYE.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class DrainExpired(Input):
    """
    The drain's time is up: BYEs to SRSs still unanswered count as answered.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaClosed(Input):
    """
    The adapter closed the relay session (after L{CloseMedia}).

    @ivar stats: the relay's final counters, or L{None}.
    """

    stats: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardOrdered(Input):
    """
    The application ordered a forward (newCall answer or REST).

    @ivar forward_id: the id to give it (L{new_forward_id}).
    """

    order: Any
    forward_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardRejected(Input):
    """
    The newCall answer held an order that will not start: invalid
    (C{reason} C{"invalid order: ..."}), or refused by L{Call.order_refusal}
    (C{reason} C{limit}); reported as SIPRECFORWARDFAILED once the session
    is active.
    """

    forward_id: str
    reason: str
    order: Any = None
    raw: Any = None
    #: The order said C{"mandatory": true} (SPEC s13: the INVITE gets 503).
    mandatory: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StopOrdered(Input):
    """
    Stop one forward (C{forward_id}) or all (L{None}): REST
    C{stopsiprecforward}.
    """

    forward_id: str | None
    stopped_by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardInput(Input):
    """
    A fact about one forward (looked up in L{FORWARD_TABLE}).
    """

    forward_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardAnswered(ForwardInput):
    """
    The SRS answered 200 and we ACKed.
    """

    target: str
    codec: str
    srtp: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardFailed(ForwardInput):
    """
    The forward could not be set up (every target failed, DNS, no ports...).
    """

    reason: str
    status: int | None = None
    target: str | None = None
    targets_tried: tuple[str, ...] = ()
    uri: str | None = None
    reference_id: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardBye(ForwardInput):
    """
    The SRS ended the forward's dialog (C{reason} C{bye}: its BYE; else the
    dialog failed).
    """

    reason: str = "bye"
    stats: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardLost(ForwardInput):
    """
    The SRS stopped answering in the dialog (keep-alive or session refresh
    failed); the leg sent BYE.
    """

    stats: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardReconnecting(ForwardInput):
    """
    SPEC s13: the answered forward's SRS is lost (C{reason}: transport
    error, 408/481 or timeout to an in-dialog request, keep-alive
    timeout); the leg stopped its RTP, ended that dialog and dials the
    trunk's targets again (the lost one last).

    @ivar previous_target: the target lost.
    """

    reason: str
    previous_target: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardResumed(ForwardInput):
    """
    SPEC s13: a target answered the re-established forward (same metadata
    and labels, the RTP continues); C{target} is the new one.
    """

    target: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardStopped(ForwardInput):
    """
    The leg carried out a L{StopForward}: CANCELled or never sent
    (C{awaiting_bye} false), or BYE sent and not yet answered.
    """

    stopped_by: str
    stats: dict[str, Any] | None = None
    awaiting_bye: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardClosed(ForwardInput):
    """
    The SRS answered our BYE (or it timed out).
    """


# -- actions: what the adapter does -----------------------------------------------


@dataclass(frozen=True, slots=True)
class StartForward(Action):
    """
    Create the forward's leg and send its INVITE (SPEC s4), with
    C{a=inactive} streams when the session is paused (SPEC s10).
    """

    forward_id: str
    order: Any
    paused: bool = False


@dataclass(frozen=True, slots=True)
class StopForward(Action):
    """
    Stop the forward's leg: CANCEL before the answer, BYE after (SPEC s4).
    """

    forward_id: str
    stopped_by: str


@dataclass(frozen=True, slots=True)
class UpdateForward(Action):
    """
    Re-INVITE the forward's SRS with the new media / metadata (SPEC s4).
    """

    forward_id: str
    media_changed: bool
    metadata_changed: bool


@dataclass(frozen=True, slots=True)
class ByeInbound(Action):
    """
    Send BYE to the SRC (when its dialog is still up).
    """


@dataclass(frozen=True, slots=True)
class CloseMedia(Action):
    """
    Close the relay session and report L{MediaClosed} with its counters.
    """


@dataclass(frozen=True, slots=True)
class Finished(Action):
    """
    The session ended: release what the adapters hold for it.
    """
