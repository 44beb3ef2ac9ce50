# -*- test-case-name: tests.integration.test_inbound_cancel -*-
"""
The inbound SIPRec session driven by a L{Clock}, for tests other than the
session timer ones: the real L{SrsService}, L{UserAgent} and
L{TransactionLayer} on a recording transport, as
L{tests.siprec.test_srs_timers.SessionTimerClockTests} sets them up (its
set-up and SRC helpers are reused here, not copied), with a C{newCall}
client the test chooses.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.sip.message import Response, parse
from aiconnect.webhooks import NewCallResult
from tests.integration.siprec_peer import sdp_offer, siprec_invite
from tests.siprec import test_srs_timers
from tests.siprec.test_srs_timers import SRC, AnsweringApp, SessionTimerClockTests

__all__ = ["SRC", "AnsweringApp", "HoldingApp", "SrsClockCase"]


class HoldingApp:
    """
    A C{newCall} client whose application never answers: each request is
    held until the service abandons it (cancels its Deferred, which then
    fires with the error C{"cancelled"}, as L{aiconnect.webhooks} does).

    @ivar held: How many requests were made.
    @ivar abandoned: How many of them the service abandoned.
    """

    def __init__(self) -> None:
        self.held = 0
        self.abandoned = 0

    def post_new_call(self, tenant: Any, payload: Any, timeout: float) -> defer.Deferred[NewCallResult]:
        """
        A Deferred that fires only when cancelled.
        """
        self.held += 1

        def abandon(d: defer.Deferred[NewCallResult]) -> None:
            self.abandoned += 1
            d.callback(NewCallResult(None, "cancelled"))

        return defer.Deferred(abandon)


class SrsClockCase(SynchronousTestCase):
    """
    A test of the inbound session on a L{Clock}: C{self.clock},
    C{self.transport} (what the stack sent), C{self.sink} (the events),
    C{self.registry}, C{self.srs}, C{self.ua}, C{self.tx}, with the
    transaction timers' defaults (T1 = 0.5 s, T2 = 4 s).

    @cvar app_factory: Makes the C{newCall} client (an L{AnsweringApp} by
        default).
    """

    app_factory: Any = AnsweringApp

    def setUp(self) -> None:
        """
        Set up as L{SessionTimerClockTests} does, with C{app_factory}'s
        C{newCall} client (kept as C{self.app}).
        """
        self.app = self.app_factory()
        self.patch(test_srs_timers, "AnsweringApp", lambda: self.app)
        SessionTimerClockTests.setUp(self)  # type: ignore[arg-type]

    sent = SessionTimerClockTests.sent
    answer = SessionTimerClockTests.answer

    def receive(self, data: bytes) -> None:
        """
        The SRC sends C{data}.
        """
        self.tx.message_received(parse(data), SRC)

    def invite(self) -> bytes:
        """
        The SRC sends its RFC 7866 INVITE (one stream, no metadata).

        @return: The INVITE's bytes; its identifiers are C{self.ids}.
        """
        data, self.ids = siprec_invite("udp", SRC.port, "customer.example.com", sdp_offer([("96", 40000, 8)]), None)
        self.receive(data)
        return data

    def responses(self, status: int, method: str) -> list[Response]:
        """
        The responses with C{status} to C{method} we sent, retransmissions
        included.
        """
        return [m for m, _ in self.transport.sent if isinstance(m, Response) and m.status == status and m.cseq.method == method]
