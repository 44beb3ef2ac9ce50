# -*- test-case-name: tests.sip.test_transaction,tests.sip.test_transaction_client,tests.sip.test_transaction_server -*-
"""
SIP transactions (RFC 3261 s17, updated by RFC 6026) as pure state machines.

The four machines -- INVITE client, non-INVITE client, INVITE server and
non-INVITE server -- are data tables keyed by C{(state, input)}. Each row
names the next state, the actions to take and the RFC section it comes from.
A machine turns one input (a message, a TU request, a timer or a transport
error, always with the current time C{now}) into a list of output actions:
L{SendRequest}, L{SendAck}, L{SendResponse}, L{PassResponse}, L{PassAck},
L{StrayResponse}, L{Timeout}, L{TransportError}, L{Absorbed} and
L{Terminated}. It never reads a clock: it reports its next deadline through
C{next_deadline()} and expects C{handle_timer(now)} once that time has come
(aioquic's C{get_timer}/C{handle_timer}).

An input the table has no row for raises L{LocalSipError}: every input the
network can produce has a row (absorbed where the RFC says so), so a missing
row means our own code fed the machine something it must not (a second final
response, a response after termination ...).

Timers follow RFC 3261 s17 Table 4 and RFC 6026, with T1/T2/T4 from
L{TimerConfig}. On a reliable transport (TCP, TLS) Timers A, E and G are not
used and D, I, J and K are zero: the machine fires them at once.

Also here: branch generation, the transaction keys used for matching
(s17.1.3, s17.2.3), and the ACK (s17.1.1.3) and CANCEL (s9.1) builders.

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, Mapping, Union

from aiconnect.errors import LocalSipError
from aiconnect.sip.branches import (
    BRANCH_MAGIC,
    client_key,
    has_magic_branch,
    make_ack,
    make_cancel,
    new_branch,
    server_key,
)
from aiconnect.sip.message import Request, Response, make_response

__all__ = [
    "BRANCH_MAGIC",
    "TimerConfig",
    "Timer",
    "State",
    "Input",
    "Do",
    "Arm",
    "Row",
    "SendRequest",
    "SendAck",
    "SendResponse",
    "PassResponse",
    "PassAck",
    "StrayResponse",
    "Timeout",
    "TransportError",
    "Absorbed",
    "Terminated",
    "Action",
    "INVITE_CLIENT_TABLE",
    "NON_INVITE_CLIENT_TABLE",
    "INVITE_SERVER_TABLE",
    "NON_INVITE_SERVER_TABLE",
    "InviteClientMachine",
    "NonInviteClientMachine",
    "InviteServerMachine",
    "NonInviteServerMachine",
    "client_machine_for",
    "server_machine_for",
    "new_branch",
    "has_magic_branch",
    "client_key",
    "server_key",
    "make_ack",
    "make_cancel",
]

#: RFC 3261 s17.1.1.2: Timer D is at least 32 s on unreliable transports.
TIMER_D_MIN = 32.0

#: Deadlines this close to C{now} count as due (float rounding in adapters).
TIMER_SLACK = 1e-6


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """
    The base SIP timer values (RFC 3261 s17.1.1.1, Table 4), in seconds:
    C{[sip.timers]} in the configuration file, which checks them (and
    C{t2 >= t1}) and re-exports this class as C{aiconnect.config.TimerConfig}.

    @ivar t1: the RTT estimate; A, E and G start at it, B/F/H/J/L/M are 64*T1.
    @ivar t2: the cap of the E and G back-off (and of non-INVITE retransmits).
    @ivar t4: how long a message may stay in the network; I and K.
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    def __post_init__(self) -> None:
        if not (self.t1 > 0 and self.t2 > 0 and self.t4 > 0):
            raise ValueError("timer values must be positive: %r" % (self,))

    def initial(self, timer: Timer, reliable: bool) -> float | None:
        """
        The first value of a timer (RFC 3261 Table 4, RFC 6026 s8.4, s8.7).

        @param timer: which timer.
        @param reliable: whether the transport is TCP/TLS.
        @return: seconds, C{0.0} for "fire at once", or C{None} when the
            timer is not used on this kind of transport.
        """
        t1, t4 = self.t1, self.t4
        if timer in (Timer.A, Timer.E, Timer.G):
            return None if reliable else t1
        if timer is Timer.D:
            return 0.0 if reliable else max(TIMER_D_MIN, 64 * t1)
        if timer in (Timer.I, Timer.K):
            return 0.0 if reliable else t4
        if timer is Timer.J:
            return 0.0 if reliable else 64 * t1
        # B, F, H, L, M and the CANCEL wait: 64*T1 on every transport.
        return 64 * t1


class _SingletonEnum(enum.Enum):
    """
    An enum hashed by identity (in C) rather than by name (in Python): its
    members key the transition tables looked up on every message.
    """

    __hash__ = object.__hash__


class Timer(_SingletonEnum):
    """
    The transaction timers of RFC 3261 Table 4 and RFC 6026, plus the s9.1
    wait for a final response after sending a CANCEL.
    """

    A = "A"  # INVITE request retransmit, unreliable only (s17.1.1.2)
    B = "B"  # INVITE transaction timeout (s17.1.1.2)
    D = "D"  # wait for response retransmits (s17.1.1.2)
    E = "E"  # non-INVITE request retransmit, unreliable only (s17.1.2.2)
    F = "F"  # non-INVITE transaction timeout (s17.1.2.2)
    G = "G"  # INVITE response retransmit, unreliable only (s17.2.1)
    H = "H"  # wait for ACK receipt (s17.2.1)
    I = "I"  # noqa: E741 -- wait for ACK retransmits (s17.2.1)
    J = "J"  # wait for non-INVITE request retransmits (s17.2.2)
    K = "K"  # wait for non-INVITE response retransmits (s17.1.2.2)
    L = "L"  # wait for INVITE retransmits after a 2xx (RFC 6026 s8.7)
    M = "M"  # wait for 2xx retransmits (RFC 6026 s8.4)
    CANCEL = "CANCEL"  # no final 64*T1 after CANCEL: give up (s9.1)


#: Retransmission timers fire after terminating timers due at the same time.
_RETRANSMIT_TIMERS = frozenset((Timer.A, Timer.E, Timer.G))


class State(_SingletonEnum):
    """
    Transaction states (RFC 3261 s17 Figures 5-8, RFC 6026 Figures 5-6).
    """

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    ACCEPTED = "Accepted"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class Input(_SingletonEnum):
    """
    What can happen to a transaction.
    """

    START = "start"  # the TU created it: client sends, server may send 100
    PROVISIONAL = "1xx"  # a 1xx response was received (client)
    SUCCESS = "2xx"  # a 2xx response was received (client)
    FAILURE = "300-699"  # a 300-699 response was received (client)
    REQUEST = "request"  # a retransmission of the request was received (server)
    ACK = "ACK"  # an ACK matching the INVITE was received (server)
    TU_PROVISIONAL = "TU 1xx"  # the TU sends a 1xx (server)
    TU_SUCCESS = "TU 2xx"  # the TU sends a 2xx (server)
    TU_FAILURE = "TU 300-699"  # the TU sends a 300-699 (server)
    CANCEL_SENT = "CANCEL sent"  # the layer sent a CANCEL for this INVITE (s9.1)
    TRANSPORT_ERROR = "transport error"  # a send failed (s17.1.4, s17.2.4)
    TIMER_A = "Timer A"
    TIMER_B = "Timer B"
    TIMER_D = "Timer D"
    TIMER_E = "Timer E"
    TIMER_F = "Timer F"
    TIMER_G = "Timer G"
    TIMER_H = "Timer H"
    TIMER_I = "Timer I"
    TIMER_J = "Timer J"
    TIMER_K = "Timer K"
    TIMER_L = "Timer L"
    TIMER_M = "Timer M"
    TIMER_CANCEL = "CANCEL wait"


_TIMER_INPUT = {t: Input["TIMER_" + t.name] for t in Timer}
_INPUT_TIMER = {i: t for t, i in _TIMER_INPUT.items()}


class Do(enum.Enum):
    """
    The table-level actions; a machine turns each into an output action.
    """

    SEND_REQUEST = "send the request"
    RESEND_REQUEST = "retransmit the request"
    SEND_ACK = "build and send the ACK for the non-2xx final"
    RESEND_ACK = "send the ACK again"
    SEND_TRYING = "send 100 Trying"
    SEND_RESPONSE = "send the TU's response"
    RESEND_RESPONSE = "send the last response again"
    PASS_RESPONSE = "pass the response to the TU"
    PASS_ACK = "pass the ACK to the TU"
    STRAY = "hand the response on as a stray"
    REPORT_TIMEOUT = "tell the TU the transaction timed out"
    REPORT_TRANSPORT_ERROR = "tell the TU the transport failed"
    ABSORB = "absorb the input"


class Backoff(enum.Enum):
    """
    How L{Arm} computes a timer's next interval.
    """

    START = "initial value"
    DOUBLE = "double the last interval (E and G capped at T2)"
    T2 = "T2"


@dataclass(frozen=True, slots=True)
class Arm:
    """
    Table action: (re)start a timer.
    """

    timer: Timer
    backoff: Backoff = Backoff.START


@dataclass(frozen=True, slots=True)
class Row:
    """
    One transition: the next state, what to do, and where the RFC says so.
    """

    target: State
    actions: tuple[Do | Arm, ...]
    rfc: str


# ---------------------------------------------------------------------------
# Output actions


@dataclass(frozen=True, slots=True)
class SendRequest:
    """
    Pass the request to the transport (first send or a retransmission).
    """

    request: Request
    retransmission: bool = False


@dataclass(frozen=True, slots=True)
class SendAck:
    """
    Send the ACK for a non-2xx final response (RFC 3261 s17.1.1.3).
    """

    ack: Request
    retransmission: bool = False


@dataclass(frozen=True, slots=True)
class SendResponse:
    """
    Pass a response to the transport (from the TU, or again).
    """

    response: Response
    retransmission: bool = False


@dataclass(frozen=True, slots=True)
class PassResponse:
    """
    Give a received response to the TU.
    """

    response: Response


@dataclass(frozen=True, slots=True)
class PassAck:
    """
    Give an ACK received in the Accepted state to the TU (RFC 6026 s7.1).
    """

    ack: Request


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """
    A response this transaction cannot take (a 2xx after a non-2xx final,
    from another fork): handle it as if it had matched no transaction.
    """

    response: Response


@dataclass(frozen=True, slots=True)
class Timeout:
    """
    Tell the TU the transaction failed for lack of an answer.
    """

    timer: Timer


@dataclass(frozen=True, slots=True)
class TransportError:
    """
    Tell the TU a send failed.
    """

    reason: str


@dataclass(frozen=True, slots=True)
class Absorbed:
    """
    An input was absorbed without effect (a retransmission, a late message).
    """

    input: Input


@dataclass(frozen=True, slots=True)
class Terminated:
    """
    The machine reached the Terminated state: forget the transaction.
    """


Action = Union[
    SendRequest,
    SendAck,
    SendResponse,
    PassResponse,
    PassAck,
    StrayResponse,
    Timeout,
    TransportError,
    Absorbed,
    Terminated,
]


# ---------------------------------------------------------------------------
# The tables

_S = State
_I = Input
_D = Do
_T = Timer

#: INVITE client transaction: RFC 3261 s17.1.1.2 Figure 5, with RFC 6026's
#: Accepted state (s8.4). Timer B does not run in Proceeding (the TU cancels a
#: call that rings too long); Timer CANCEL bounds the wait after a CANCEL.
INVITE_CLIENT_TABLE: Mapping[tuple[State, Input], Row] = {
    (_S.CALLING, _I.START): Row(_S.CALLING, (_D.SEND_REQUEST, Arm(_T.A), Arm(_T.B)), "RFC 3261 s17.1.1.2"),
    (_S.CALLING, _I.TIMER_A): Row(_S.CALLING, (_D.RESEND_REQUEST, Arm(_T.A, Backoff.DOUBLE)), "RFC 3261 s17.1.1.2"),
    (_S.CALLING, _I.TIMER_B): Row(_S.TERMINATED, (_D.REPORT_TIMEOUT,), "RFC 3261 s17.1.1.2"),
    (_S.CALLING, _I.TRANSPORT_ERROR): Row(_S.TERMINATED, (_D.REPORT_TRANSPORT_ERROR,), "RFC 3261 s17.1.4"),
    (_S.CALLING, _I.PROVISIONAL): Row(_S.PROCEEDING, (_D.PASS_RESPONSE,), "RFC 3261 s17.1.1.2"),
    (_S.CALLING, _I.SUCCESS): Row(_S.ACCEPTED, (_D.PASS_RESPONSE, Arm(_T.M)), "RFC 6026 s8.4"),
    (_S.CALLING, _I.FAILURE): Row(_S.COMPLETED, (_D.PASS_RESPONSE, _D.SEND_ACK, Arm(_T.D)), "RFC 3261 s17.1.1.2"),
    (_S.PROCEEDING, _I.PROVISIONAL): Row(_S.PROCEEDING, (_D.PASS_RESPONSE,), "RFC 3261 s17.1.1.2"),
    (_S.PROCEEDING, _I.SUCCESS): Row(_S.ACCEPTED, (_D.PASS_RESPONSE, Arm(_T.M)), "RFC 6026 s8.4"),
    (_S.PROCEEDING, _I.FAILURE): Row(_S.COMPLETED, (_D.PASS_RESPONSE, _D.SEND_ACK, Arm(_T.D)), "RFC 3261 s17.1.1.2"),
    (_S.PROCEEDING, _I.CANCEL_SENT): Row(_S.PROCEEDING, (Arm(_T.CANCEL),), "RFC 3261 s9.1"),
    (_S.PROCEEDING, _I.TIMER_CANCEL): Row(_S.TERMINATED, (_D.REPORT_TIMEOUT,), "RFC 3261 s9.1"),
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): Row(_S.TERMINATED, (_D.REPORT_TRANSPORT_ERROR,), "RFC 3261 s17.1.4"),
    (_S.ACCEPTED, _I.SUCCESS): Row(_S.ACCEPTED, (_D.PASS_RESPONSE,), "RFC 6026 s8.4"),
    (_S.ACCEPTED, _I.PROVISIONAL): Row(_S.ACCEPTED, (_D.ABSORB,), "RFC 6026 s8.4: only 2xx go up"),
    (_S.ACCEPTED, _I.FAILURE): Row(_S.ACCEPTED, (_D.ABSORB,), "RFC 6026 s8.4: only 2xx go up"),
    (_S.ACCEPTED, _I.TRANSPORT_ERROR): Row(_S.ACCEPTED, (_D.ABSORB,), "RFC 6026 s8.4: the TU has its 2xx"),
    (_S.ACCEPTED, _I.TIMER_M): Row(_S.TERMINATED, (), "RFC 6026 s8.4"),
    (_S.COMPLETED, _I.FAILURE): Row(_S.COMPLETED, (_D.RESEND_ACK,), "RFC 3261 s17.1.1.2"),
    (_S.COMPLETED, _I.PROVISIONAL): Row(_S.COMPLETED, (_D.ABSORB,), "RFC 3261 s17.1.1.2"),
    (_S.COMPLETED, _I.SUCCESS): Row(_S.COMPLETED, (_D.STRAY,), "RFC 3261 s13.2.2.4: 2xx from another fork"),
    (_S.COMPLETED, _I.TRANSPORT_ERROR): Row(_S.COMPLETED, (_D.ABSORB,), "RFC 3261 s17.1.1.2: the TU has its final"),
    (_S.COMPLETED, _I.TIMER_D): Row(_S.TERMINATED, (), "RFC 3261 s17.1.1.2"),
}

#: Non-INVITE client transaction: RFC 3261 s17.1.2.2 Figure 6.
NON_INVITE_CLIENT_TABLE: Mapping[tuple[State, Input], Row] = {
    (_S.TRYING, _I.START): Row(_S.TRYING, (_D.SEND_REQUEST, Arm(_T.E), Arm(_T.F)), "RFC 3261 s17.1.2.2"),
    (_S.TRYING, _I.TIMER_E): Row(_S.TRYING, (_D.RESEND_REQUEST, Arm(_T.E, Backoff.DOUBLE)), "RFC 3261 s17.1.2.2"),
    (_S.TRYING, _I.TIMER_F): Row(_S.TERMINATED, (_D.REPORT_TIMEOUT,), "RFC 3261 s17.1.2.2"),
    (_S.TRYING, _I.TRANSPORT_ERROR): Row(_S.TERMINATED, (_D.REPORT_TRANSPORT_ERROR,), "RFC 3261 s17.1.4"),
    (_S.TRYING, _I.PROVISIONAL): Row(_S.PROCEEDING, (_D.PASS_RESPONSE,), "RFC 3261 s17.1.2.2"),
    (_S.TRYING, _I.SUCCESS): Row(_S.COMPLETED, (_D.PASS_RESPONSE, Arm(_T.K)), "RFC 3261 s17.1.2.2"),
    (_S.TRYING, _I.FAILURE): Row(_S.COMPLETED, (_D.PASS_RESPONSE, Arm(_T.K)), "RFC 3261 s17.1.2.2"),
    (_S.PROCEEDING, _I.TIMER_E): Row(_S.PROCEEDING, (_D.RESEND_REQUEST, Arm(_T.E, Backoff.T2)), "RFC 3261 s17.1.2.2"),
    (_S.PROCEEDING, _I.TIMER_F): Row(_S.TERMINATED, (_D.REPORT_TIMEOUT,), "RFC 3261 s17.1.2.2"),
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): Row(_S.TERMINATED, (_D.REPORT_TRANSPORT_ERROR,), "RFC 3261 s17.1.4"),
    (_S.PROCEEDING, _I.PROVISIONAL): Row(_S.PROCEEDING, (_D.PASS_RESPONSE,), "RFC 3261 s17.1.2.2"),
    (_S.PROCEEDING, _I.SUCCESS): Row(_S.COMPLETED, (_D.PASS_RESPONSE, Arm(_T.K)), "RFC 3261 s17.1.2.2"),
    (_S.PROCEEDING, _I.FAILURE): Row(_S.COMPLETED, (_D.PASS_RESPONSE, Arm(_T.K)), "RFC 3261 s17.1.2.2"),
    (_S.COMPLETED, _I.PROVISIONAL): Row(_S.COMPLETED, (_D.ABSORB,), "RFC 3261 s17.1.2.2"),
    (_S.COMPLETED, _I.SUCCESS): Row(_S.COMPLETED, (_D.ABSORB,), "RFC 3261 s17.1.2.2"),
    (_S.COMPLETED, _I.FAILURE): Row(_S.COMPLETED, (_D.ABSORB,), "RFC 3261 s17.1.2.2"),
    (_S.COMPLETED, _I.TRANSPORT_ERROR): Row(_S.COMPLETED, (_D.ABSORB,), "RFC 3261 s17.1.2.2: the TU has its final"),
    (_S.COMPLETED, _I.TIMER_K): Row(_S.TERMINATED, (), "RFC 3261 s17.1.2.2"),
}

#: INVITE server transaction: RFC 3261 s17.2.1 Figure 7, with RFC 6026's
#: Accepted state (s7.1, s8.7). A transport error informs the TU and leaves
#: the state alone (RFC 6026 s8.8), so retransmitted INVITEs stay absorbed.
INVITE_SERVER_TABLE: Mapping[tuple[State, Input], Row] = {
    (_S.PROCEEDING, _I.START): Row(_S.PROCEEDING, (_D.SEND_TRYING,), "RFC 3261 s17.2.1"),
    (_S.PROCEEDING, _I.REQUEST): Row(_S.PROCEEDING, (_D.RESEND_RESPONSE,), "RFC 3261 s17.2.1"),
    (_S.PROCEEDING, _I.ACK): Row(_S.PROCEEDING, (_D.ABSORB,), "RFC 3261 s17.2.1: no final to acknowledge"),
    (_S.PROCEEDING, _I.TU_PROVISIONAL): Row(_S.PROCEEDING, (_D.SEND_RESPONSE,), "RFC 3261 s17.2.1"),
    (_S.PROCEEDING, _I.TU_SUCCESS): Row(_S.ACCEPTED, (_D.SEND_RESPONSE, Arm(_T.L)), "RFC 6026 s8.7"),
    (_S.PROCEEDING, _I.TU_FAILURE): Row(
        _S.COMPLETED, (_D.SEND_RESPONSE, Arm(_T.G), Arm(_T.H)), "RFC 3261 s17.2.1"
    ),
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): Row(_S.PROCEEDING, (_D.REPORT_TRANSPORT_ERROR,), "RFC 6026 s8.8"),
    (_S.ACCEPTED, _I.REQUEST): Row(_S.ACCEPTED, (_D.ABSORB,), "RFC 6026 s8.7"),
    (_S.ACCEPTED, _I.ACK): Row(_S.ACCEPTED, (_D.PASS_ACK,), "RFC 6026 s7.1"),
    (_S.ACCEPTED, _I.TU_SUCCESS): Row(_S.ACCEPTED, (_D.SEND_RESPONSE,), "RFC 6026 s8.7"),
    (_S.ACCEPTED, _I.TRANSPORT_ERROR): Row(_S.ACCEPTED, (_D.REPORT_TRANSPORT_ERROR,), "RFC 6026 s8.8"),
    (_S.ACCEPTED, _I.TIMER_L): Row(_S.TERMINATED, (), "RFC 6026 s8.7"),
    (_S.COMPLETED, _I.REQUEST): Row(_S.COMPLETED, (_D.RESEND_RESPONSE,), "RFC 3261 s17.2.1"),
    (_S.COMPLETED, _I.ACK): Row(_S.CONFIRMED, (Arm(_T.I),), "RFC 3261 s17.2.1"),
    (_S.COMPLETED, _I.TIMER_G): Row(_S.COMPLETED, (_D.RESEND_RESPONSE, Arm(_T.G, Backoff.DOUBLE)), "RFC 3261 s17.2.1"),
    (_S.COMPLETED, _I.TIMER_H): Row(_S.TERMINATED, (_D.REPORT_TIMEOUT,), "RFC 3261 s17.2.1"),
    (_S.COMPLETED, _I.TRANSPORT_ERROR): Row(_S.COMPLETED, (_D.REPORT_TRANSPORT_ERROR,), "RFC 6026 s8.8"),
    (_S.CONFIRMED, _I.ACK): Row(_S.CONFIRMED, (_D.ABSORB,), "RFC 3261 s17.2.1"),
    (_S.CONFIRMED, _I.REQUEST): Row(_S.CONFIRMED, (_D.ABSORB,), "RFC 3261 s17.2.1: the ACK came, the INVITE is late"),
    (_S.CONFIRMED, _I.TRANSPORT_ERROR): Row(_S.CONFIRMED, (_D.ABSORB,), "RFC 3261 s17.2.1: the ACK came"),
    (_S.CONFIRMED, _I.TIMER_I): Row(_S.TERMINATED, (), "RFC 3261 s17.2.1"),
}

#: Non-INVITE server transaction: RFC 3261 s17.2.2 Figure 8.
NON_INVITE_SERVER_TABLE: Mapping[tuple[State, Input], Row] = {
    (_S.TRYING, _I.START): Row(_S.TRYING, (), "RFC 3261 s17.2.2"),
    (_S.TRYING, _I.REQUEST): Row(_S.TRYING, (_D.ABSORB,), "RFC 3261 s17.2.2"),
    (_S.TRYING, _I.TU_PROVISIONAL): Row(_S.PROCEEDING, (_D.SEND_RESPONSE,), "RFC 3261 s17.2.2"),
    (_S.TRYING, _I.TU_SUCCESS): Row(_S.COMPLETED, (_D.SEND_RESPONSE, Arm(_T.J)), "RFC 3261 s17.2.2"),
    (_S.TRYING, _I.TU_FAILURE): Row(_S.COMPLETED, (_D.SEND_RESPONSE, Arm(_T.J)), "RFC 3261 s17.2.2"),
    (_S.PROCEEDING, _I.REQUEST): Row(_S.PROCEEDING, (_D.RESEND_RESPONSE,), "RFC 3261 s17.2.2"),
    (_S.PROCEEDING, _I.TU_PROVISIONAL): Row(_S.PROCEEDING, (_D.SEND_RESPONSE,), "RFC 3261 s17.2.2"),
    (_S.PROCEEDING, _I.TU_SUCCESS): Row(_S.COMPLETED, (_D.SEND_RESPONSE, Arm(_T.J)), "RFC 3261 s17.2.2"),
    (_S.PROCEEDING, _I.TU_FAILURE): Row(_S.COMPLETED, (_D.SEND_RESPONSE, Arm(_T.J)), "RFC 3261 s17.2.2"),
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): Row(_S.PROCEEDING, (_D.REPORT_TRANSPORT_ERROR,), "RFC 6026 s8.8"),
    (_S.COMPLETED, _I.REQUEST): Row(_S.COMPLETED, (_D.RESEND_RESPONSE,), "RFC 3261 s17.2.2"),
    (_S.COMPLETED, _I.TRANSPORT_ERROR): Row(_S.COMPLETED, (_D.REPORT_TRANSPORT_ERROR,), "RFC 6026 s8.8"),
    (_S.COMPLETED, _I.TIMER_J): Row(_S.TERMINATED, (), "RFC 3261 s17.2.2"),
}


# ---------------------------------------------------------------------------
# The machines


class _Machine:
    """
    Runs one transaction table.

    @cvar table: the transition table.
    @cvar live_timers: per state, the timers that survive entering it; the
        others are cancelled ("Timers A and B are cancelled" in the RFC's
        prose).
    @cvar initial_state: the state the machine starts in.
    @ivar request: the request that created the transaction.
    @ivar reliable: whether the transport is TCP/TLS.
    @ivar timers: the timer configuration.
    @ivar state: the current L{State}.
    @ivar final_response: the first final response passed up (client) or
        sent (server), or C{None}.
    @ivar last_response: the last response sent (server) or C{None}.
    """

    table: ClassVar[Mapping[tuple[State, Input], Row]]
    live_timers: ClassVar[Mapping[State, frozenset[Timer]]]
    initial_state: ClassVar[State]
    name: ClassVar[str]

    def __init__(self, request: Request, reliable: bool = False, timers: TimerConfig = TimerConfig()) -> None:
        """
        @param request: the request that creates the transaction.
        @param reliable: C{True} for TCP/TLS.
        @param timers: T1, T2 and T4.
        """
        self.request = request
        self.reliable = reliable
        self.timers = timers
        self.state = self.initial_state
        self.final_response: Response | None = None
        self.last_response: Response | None = None
        self._ack: Request | None = None
        self._started = False
        self._deadlines: dict[Timer, float] = {}
        self._intervals: dict[Timer, float] = {}

    def __repr__(self) -> str:
        return "<%s %s %s>" % (type(self).__name__, self.request.method, self.state.value)

    def next_deadline(self) -> float | None:
        """
        When L{handle_timer} must next be called, or C{None} if no timer runs.
        """
        return min(self._deadlines.values()) if self._deadlines else None

    def handle_timer(self, now: float) -> list[Action]:
        """
        Fire every timer due at C{now}, earliest first.

        @param now: the current time, on the same clock as earlier inputs.
        @return: the actions to carry out; empty if nothing was due.
        """
        out: list[Action] = []
        while self.state is not State.TERMINATED:
            due = [
                (deadline, t in _RETRANSMIT_TIMERS, t.value, t)
                for t, deadline in self._deadlines.items()
                if deadline <= now + TIMER_SLACK
            ]
            if not due:
                break
            timer = min(due)[3]
            del self._deadlines[timer]
            out.extend(self._feed(_TIMER_INPUT[timer], now))
        return out

    def start(self, now: float) -> list[Action]:
        """
        Start the transaction: a client sends its request, an INVITE server
        sends 100 Trying.

        @raise LocalSipError: if already started.
        """
        if self._started:
            raise LocalSipError("%s started twice" % (self.name,))
        self._started = True
        return self._feed(Input.START, now)

    def transport_error(self, reason: str, now: float) -> list[Action]:
        """
        A send for this transaction failed (RFC 3261 s17.1.4, s17.2.4).

        @param reason: a short description, passed on to the TU.
        """
        return self._feed(Input.TRANSPORT_ERROR, now, reason=reason)

    def _feed(
        self,
        inp: Input,
        now: float,
        message: Request | Response | None = None,
        reason: str = "",
    ) -> list[Action]:
        if not self._started:
            raise LocalSipError("%s: %s before start" % (self.name, inp.value))
        row = self.table.get((self.state, inp))
        if row is None:
            raise LocalSipError("%s: no transition for %s in %s" % (self.name, inp.value, self.state.value))
        out: list[Action] = []
        if row.target is not self.state:
            live = self.live_timers.get(row.target, frozenset())
            for t in [t for t in self._deadlines if t not in live]:
                del self._deadlines[t]
        self.state = row.target
        immediate: list[Timer] = []
        for act in row.actions:
            if isinstance(act, Arm):
                if self._arm(act, now):
                    immediate.append(act.timer)
            else:
                self._do(act, inp, message, reason, out)
        if self.state is State.TERMINATED:
            self._deadlines.clear()
            out.append(Terminated())
        for t in immediate:
            # A zero timer (D, I, J, K on TCP/TLS) fires at once.
            if self._deadlines.pop(t, None) is not None:
                out.extend(self._feed(_TIMER_INPUT[t], now))
        return out

    def _arm(self, arm: Arm, now: float) -> bool:
        """
        Start a timer; return whether it is due at once.
        """
        timer = arm.timer
        base = self.timers.initial(timer, self.reliable)
        if base is None:
            return False
        if arm.backoff is Backoff.START:
            interval = base
        elif arm.backoff is Backoff.T2:
            interval = self.timers.t2
        else:
            interval = 2 * self._intervals.get(timer, base)
            if timer in (Timer.E, Timer.G):
                interval = min(interval, self.timers.t2)
        self._intervals[timer] = interval
        self._deadlines[timer] = now + interval
        return interval == 0

    def _do(
        self,
        act: Do,
        inp: Input,
        message: Request | Response | None,
        reason: str,
        out: list[Action],
    ) -> None:
        if act is Do.SEND_REQUEST:
            out.append(SendRequest(self.request))
        elif act is Do.RESEND_REQUEST:
            out.append(SendRequest(self.request, retransmission=True))
        elif act is Do.SEND_ACK:
            assert isinstance(message, Response)
            self._ack = make_ack(self.request, message)
            out.append(SendAck(self._ack))
        elif act is Do.RESEND_ACK:
            assert self._ack is not None
            out.append(SendAck(self._ack, retransmission=True))
        elif act is Do.SEND_TRYING:
            trying = _make_trying(self.request)
            self.last_response = trying
            out.append(SendResponse(trying))
        elif act is Do.SEND_RESPONSE:
            assert isinstance(message, Response)
            self.last_response = message
            if message.status >= 200 and self.final_response is None:
                self.final_response = message
            out.append(SendResponse(message))
        elif act is Do.RESEND_RESPONSE:
            if self.last_response is None:
                out.append(Absorbed(inp))
            else:
                out.append(SendResponse(self.last_response, retransmission=True))
        elif act is Do.PASS_RESPONSE:
            assert isinstance(message, Response)
            if message.status >= 200 and self.final_response is None:
                self.final_response = message
            out.append(PassResponse(message))
        elif act is Do.PASS_ACK:
            assert isinstance(message, Request)
            out.append(PassAck(message))
        elif act is Do.STRAY:
            assert isinstance(message, Response)
            out.append(StrayResponse(message))
        elif act is Do.REPORT_TIMEOUT:
            out.append(Timeout(_INPUT_TIMER[inp]))
        elif act is Do.REPORT_TRANSPORT_ERROR:
            out.append(TransportError(reason))
        elif act is Do.ABSORB:
            out.append(Absorbed(inp))
        else:  # pragma: no cover - every Do member is handled above
            raise LocalSipError("unknown table action %r" % (act,))


class _ClientMachine(_Machine):
    """
    A client transaction: sends the request, receives responses.
    """

    def receive_response(self, response: Response, now: float) -> list[Action]:
        """
        A response matching this transaction (RFC 3261 s17.1.3) arrived.
        """
        if response.status < 200:
            inp = Input.PROVISIONAL
        elif response.status < 300:
            inp = Input.SUCCESS
        else:
            inp = Input.FAILURE
        return self._feed(inp, now, message=response)


class _ServerMachine(_Machine):
    """
    A server transaction: receives the request (and its retransmissions, and
    for INVITE the ACK), sends the TU's responses.
    """

    def receive_request(self, request: Request, now: float) -> list[Action]:
        """
        A request matching this transaction (RFC 3261 s17.2.3) arrived: a
        retransmission of the original, or (INVITE) its ACK.

        @raise LocalSipError: for any other method (a matching bug).
        """
        if request.method == "ACK" and self.request.method == "INVITE":
            return self._feed(Input.ACK, now, message=request)
        if request.method != self.request.method:
            raise LocalSipError("%s: %s does not belong here" % (self.name, request.method))
        return self._feed(Input.REQUEST, now, message=request)

    def send_response(self, response: Response, now: float) -> list[Action]:
        """
        The TU sends a response through this transaction.

        @raise LocalSipError: if the state does not allow it (a second final
            response, a 1xx after the final, anything after termination).
        """
        if response.status < 200:
            inp = Input.TU_PROVISIONAL
        elif response.status < 300:
            inp = Input.TU_SUCCESS
        else:
            inp = Input.TU_FAILURE
        return self._feed(inp, now, message=response)


class InviteClientMachine(_ClientMachine):
    """
    The INVITE client transaction (RFC 3261 s17.1.1, RFC 6026 s8.4).
    """

    name = "INVITE client transaction"
    table = INVITE_CLIENT_TABLE
    initial_state = State.CALLING
    live_timers = {
        State.CALLING: frozenset((Timer.A, Timer.B)),
        State.PROCEEDING: frozenset((Timer.CANCEL,)),
        State.ACCEPTED: frozenset((Timer.M,)),
        State.COMPLETED: frozenset((Timer.D,)),
    }

    def cancel_sent(self, now: float) -> list[Action]:
        """
        The layer sent a CANCEL for this INVITE: give up if no final response
        comes within 64*T1 (RFC 3261 s9.1).

        @raise LocalSipError: outside the Proceeding state (s9.1 forbids it).
        """
        return self._feed(Input.CANCEL_SENT, now)


class NonInviteClientMachine(_ClientMachine):
    """
    The non-INVITE client transaction (RFC 3261 s17.1.2).
    """

    name = "non-INVITE client transaction"
    table = NON_INVITE_CLIENT_TABLE
    initial_state = State.TRYING
    live_timers = {
        State.TRYING: frozenset((Timer.E, Timer.F)),
        State.PROCEEDING: frozenset((Timer.E, Timer.F)),
        State.COMPLETED: frozenset((Timer.K,)),
    }


class InviteServerMachine(_ServerMachine):
    """
    The INVITE server transaction (RFC 3261 s17.2.1, RFC 6026 s7.1, s8.7).
    """

    name = "INVITE server transaction"
    table = INVITE_SERVER_TABLE
    initial_state = State.PROCEEDING
    live_timers = {
        State.ACCEPTED: frozenset((Timer.L,)),
        State.COMPLETED: frozenset((Timer.G, Timer.H)),
        State.CONFIRMED: frozenset((Timer.I,)),
    }


class NonInviteServerMachine(_ServerMachine):
    """
    The non-INVITE server transaction (RFC 3261 s17.2.2).
    """

    name = "non-INVITE server transaction"
    table = NON_INVITE_SERVER_TABLE
    initial_state = State.TRYING
    live_timers = {
        State.COMPLETED: frozenset((Timer.J,)),
    }


def client_machine_for(
    request: Request, reliable: bool = False, timers: TimerConfig = TimerConfig()
) -> InviteClientMachine | NonInviteClientMachine:
    """
    The client machine for a request (ACK never makes one, s17.1).

    @raise LocalSipError: for an ACK.
    """
    if request.method == "ACK":
        raise LocalSipError("an ACK makes no client transaction (RFC 3261 s17.1)")
    if request.method == "INVITE":
        return InviteClientMachine(request, reliable, timers)
    return NonInviteClientMachine(request, reliable, timers)


def server_machine_for(
    request: Request, reliable: bool = False, timers: TimerConfig = TimerConfig()
) -> InviteServerMachine | NonInviteServerMachine:
    """
    The server machine for a request (ACK never makes one, s17.2.3).

    @raise LocalSipError: for an ACK.
    """
    if request.method == "ACK":
        raise LocalSipError("an ACK makes no server transaction (RFC 3261 s17.2.3)")
    if request.method == "INVITE":
        return InviteServerMachine(request, reliable, timers)
    return NonInviteServerMachine(request, reliable, timers)


def _make_trying(request: Request) -> Response:
    """
    The 100 Trying of an INVITE server transaction (RFC 3261 s17.2.1, s8.2.6.1).
    """
    return make_response(request, 100)
