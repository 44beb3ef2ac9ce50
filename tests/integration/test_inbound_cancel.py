# -*- test-case-name: tests.integration.test_inbound_cancel -*-
"""
Calls that end before they are set up (RFC 3261 s9.2, s13.3.1.4): a CANCEL
before the answer, and a 2xx never ACKed.

Each case is proved twice: on a L{Clock} with the real SIP stack and SRS on
a recording transport (L{tests.siprec.srs_harness}: the RFC timing, with
the default T1 = 0.5 s), and end to end on real sockets
(L{tests.integration.scenario}: the same bytes over UDP, the real
application abandoned and told).
"""

from __future__ import annotations

from typing import Any

from twisted.web import server

from tests.fakes import listen_udp, pause, wait_until
from tests.integration.scenario import (
    DOMAIN,
    METADATA,
    ScenarioCase,
    _raw_header,
    _status,
    ack_of_failure,
    answer_of,
    cancel_of,
    final,
    request,
    response,
)
from tests.integration.siprec_peer import AppServer, sdp_offer, siprec_invite
from tests.siprec.srs_harness import HoldingApp, SrsClockCase


class CancelClockTests(SrsClockCase):
    """
    CANCEL while newCall is pending, on a L{Clock}.
    """

    app_factory = HoldingApp

    def test_cancel_before_answer(self) -> None:
        """
        The CANCEL gets 200 and the INVITE 487, retransmitted (Timer G)
        until the SRC ACKs it, never a 200; the newCall request is
        abandoned, the media released, and the only event is
        SESSIONCOMPLETED "cancel".
        """
        invite = self.invite()
        self.assertEqual(self.app.held, 1)
        self.assertEqual(self.responses(200, "INVITE"), [])
        self.receive(cancel_of(invite))
        self.assertEqual(len(self.responses(200, "CANCEL")), 1)
        [first] = self.responses(487, "INVITE")
        self.assertEqual(self.app.abandoned, 1)
        self.assertTrue(self.srs.relay.sessions[0].closed)
        self.assertEqual(self.registry.live_count("customer.example.com"), 0)
        self.clock.advance(0.5)  # T1
        self.assertEqual(len(self.responses(487, "INVITE")), 2)
        self.receive(ack_of_failure(invite, first.headers.get("To")))
        self.clock.advance(64 * 0.5)
        self.assertEqual(len(self.responses(487, "INVITE")), 2)
        self.assertEqual(self.responses(200, "INVITE"), [])
        self.assertEqual(self.sink.names(), ["SESSIONCOMPLETED"])
        self.assertEqual(self.sink.events[0]["reason"], "cancel")


class RetransmissionClockTests(SrsClockCase):
    """
    2xx retransmission until the ACK (RFC 3261 s13.3.1.4), on a L{Clock}.
    """

    def test_unacked_2xx(self) -> None:
        """
        A 200 never ACKed is retransmitted at T1, 2*T1, 4*T1, ... capped at
        T2; after 64*T1 the retransmissions stop, the service sends BYE,
        and the only event is SESSIONCOMPLETED "error".
        """
        self.invite()
        counts = []
        for step in (0.49, 0.02, 0.98, 0.02, 1.98, 0.02, 3.98, 0.02, 3.98, 0.02):
            counts.append(len(self.responses(200, "INVITE")))
            self.clock.advance(step)
        # The 200 at 0, then at 0.5, 1.5, 3.5, 7.5 (doubling) and 11.5 (T2).
        self.assertEqual(counts, [1, 1, 2, 2, 3, 3, 4, 4, 5, 5])
        self.assertEqual(len(self.responses(200, "INVITE")), 6)
        oks = self.responses(200, "INVITE")
        self.assertEqual({ok.to_bytes() for ok in oks}, {oks[0].to_bytes()})
        self.clock.advance(32 - 11.52 - 0.05)
        self.assertEqual(self.sent("BYE"), [])
        self.assertEqual(self.sink.names(), [])
        self.clock.advance(0.1)
        [bye] = self.sent("BYE")
        self.answer(bye)
        n = len(self.responses(200, "INVITE"))
        self.clock.advance(64 * 0.5)
        self.assertEqual(len(self.responses(200, "INVITE")), n)
        self.assertEqual(self.sink.names(), ["SESSIONCOMPLETED"])
        self.assertEqual(self.sink.events[0]["reason"], "error")
        self.assertTrue(self.srs.relay.sessions[0].closed)


class _HoldingApp(AppServer):
    """
    An application that holds each newCall request open (no answer) while
    C{hold} is true, and notes when the service abandons one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.hold = True
        self.held: list[Any] = []
        self.abandoned = 0

    def render_POST(self, request: Any) -> Any:
        if request.path != b"/newCall" or not self.hold:
            return super().render_POST(request)
        super().render_POST(request)  # records it, checks the signature
        self.held.append(request)

        def gone(_: Any) -> None:
            self.abandoned += 1

        request.notifyFinish().addErrback(gone)
        return server.NOT_DONE_YET


class CancelTests(ScenarioCase):
    """
    CANCEL before the answer (RFC 3261 s9.2), end to end.
    """

    rtp_base = 24100

    async def test_cancel_before_answer(self) -> None:
        """
        A CANCEL while newCall is pending gets 200, the INVITE 487 (which the
        SRC ACKs), never a 200; the ports are released, the newCall request
        is abandoned, and the application gets only SESSIONCOMPLETED
        "cancel".
        """
        app = _HoldingApp()
        self.start(app, rtp_pairs=1, callback_timeout=10.0)
        src = self.src()
        _, port = listen_udp(self)
        invite, src.ids = siprec_invite("udp", src.port, DOMAIN, sdp_offer([("96", port, 8)]), METADATA)
        src.send(invite)
        await src.take(response(100, "INVITE"))
        session_id = await self.session_for(src.ids["call_id"])
        self.assertEqual((await self.session(session_id))["state"], "negotiating")

        src.send(cancel_of(invite))
        self.assertEqual(_status(await src.take(final("CANCEL"))), 200)
        resp487 = await src.take(final("INVITE"))
        self.assertEqual(_status(resp487), 487)
        to = _raw_header(resp487, "To")
        assert to is not None
        src.send(ack_of_failure(invite, to))

        events = await self.events_for(session_id, 1)
        self.assertEqual([e["event"] for e in events], ["SESSIONCOMPLETED"])
        self.assertEqual(events[0]["reason"], "cancel")
        await wait_until(lambda: app.abandoned == 1)
        body = await self.session(session_id)
        self.assertEqual((body["state"], body["endReason"]), ("ended", "cancel"))

        # No 200 ever, and the 487 is no longer retransmitted once ACKed
        # (a retransmission is due within T2 = 0.4 s while it is not).
        await pause(0.2)
        n487 = len(src.matching(response(487, "INVITE")))
        await pause(0.5)
        self.assertEqual(len(src.matching(response(487, "INVITE"))), n487)
        self.assertEqual(src.matching(response(200, "INVITE")), [])
        self.assertEqual([e["event"] for e in self.events_of(session_id)], ["SESSIONCOMPLETED"])

        # The only port pair is free again: a new call is answered.
        app.hold = False
        other = self.src()
        ok, _ = await other.call(sdp_offer([("96", port, 8)]))
        self.assertEqual([m.port for m in answer_of(ok).media], [self.rtp_base])
        await other.bye()


class RetransmissionTests(ScenarioCase):
    """
    2xx retransmission until the ACK (RFC 3261 s13.3.1.4), end to end with
    T1 = 0.01 s (64*T1 = 0.64 s; the timing itself is
    L{RetransmissionClockTests}').
    """

    rtp_base = 24700

    async def test_unacked_2xx(self) -> None:
        """
        A 200 never ACKed is retransmitted over UDP, byte for byte (at least
        twice before the BYE); after 64*T1 the service sends BYE and
        reports SESSIONCOMPLETED "error", with no SESSIONSTARTED, and the
        200 is no longer retransmitted.
        """
        self.start(t1=0.01)
        src = self.src()
        _, pa = listen_udp(self)
        await src.invite(sdp_offer([("96", pa, 8)]))
        session_id = await self.session_for(src.ids["call_id"])
        await wait_until(lambda: len(src.matching(response(200, "INVITE"))) >= 3)
        self.assertEqual(src.matching(request("BYE")), [])
        bye = await src.take(request("BYE"), timeout=4)
        oks = src.matching(response(200, "INVITE"))
        self.assertGreaterEqual(len(oks), 3)
        self.assertEqual(len(set(oks)), 1)
        src.answer(bye)
        await self.events_for(session_id, 1)
        # Nothing more comes: no second event, no further 200.
        await pause(0.5)
        events = self.events_of(session_id)
        self.assertEqual([e["event"] for e in events], ["SESSIONCOMPLETED"])
        self.assertEqual(events[0]["reason"], "error")
        self.assertEqual(len(src.matching(response(200, "INVITE"))), len(oks))
