# -*- test-case-name: tests.integration.test_prack -*-
"""
RFC 3262 (C{100rel}, PRACK) on the inbound leg, on the wire: a raw UDP SRC
that requires C{100rel}, as a Cisco CUBE configured with C{rel1xx require
100rel} does, against the real service (SPEC s13).

RTP ports of these tests: 22200-22299.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.web.server import NOT_DONE_YET

from aiconnect.sip.message import Response
from tests.fakes import listen_udp, rtp_packet, wait_until
from tests.integration.scenario import (
    DOMAIN,
    ScenarioCase,
    _raw_header,
    _status,
    answer_of,
    final,
    parse_response,
    response,
)
from tests.integration.siprec_peer import AppServer, in_dialog, sdp_offer, siprec_invite

T1 = 0.2


class SlowApp(AppServer):
    """
    An application that answers newCall after C{delay} seconds.
    """

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.pending: list[tuple[Any, Any, bytes]] = []

    def render_POST(self, request: Any) -> Any:
        body = super().render_POST(request)
        if request.path != b"/newCall":
            return body
        self.pending.append((reactor.callLater(self.delay, self.respond_later, request, body), request, body))
        return NOT_DONE_YET

    def respond_later(self, request: Any, body: bytes) -> None:
        """
        Answer a newCall request now.
        """
        request.write(body)
        request.finish()

    def flush(self) -> None:
        """
        Answer every newCall request still held (at the end of a test).
        """
        for call, request, body in self.pending:
            if call.active():
                call.cancel()
                self.respond_later(request, body)
        self.pending.clear()


class PrackTests(ScenarioCase):
    """
    A 100rel INVITE is answered with a reliable 180 and recorded.
    """

    rtp_base = 22200

    async def test_cube_requires_100rel(self) -> None:
        """
        C{Require: 100rel} is not refused (no 420): the 180 carries
        C{Require: 100rel}, an RSeq and a +sip.srs Contact, and is sent
        again at T1, 2*T1, 4*T1 until PRACKed; a PRACK with a wrong RAck
        gets 481, the right one 200 and the retransmissions stop; the 200
        follows (Supported lists 100rel), and the call records RTP and ends
        with BYE.
        """
        self.start(SlowApp(delay=1.8), t1=T1, callback_timeout=5.0)
        src = self.src()
        rtp_a, port_a = listen_udp(self)
        _, port_b = listen_udp(self)
        invite, src.ids = siprec_invite(
            "udp", src.port, DOMAIN, sdp_offer([("96", port_a, 8), ("98", port_b, 8)]), self.metadata(),
            extra_headers="Require: 100rel\nSupported: timer, 100rel\nAllow: INVITE, ACK, BYE, CANCEL, PRACK, UPDATE",
        )
        src.send(invite)
        arrivals = []
        ringing = b""
        for _ in range(4):
            ringing = await src.take(response(180, "INVITE"))
            arrivals.append(reactor.seconds())
        ring = parse_response(ringing)
        self.assertEqual(ring.headers.tokens("Require"), ["100rel"])
        rseq = int(ring.headers.get("RSeq") or "0")
        self.assertTrue(1 <= rseq <= 2**31 - 1)
        self.assertTrue(ring.contacts[0].has_param("+sip.srs"))
        self.assertIsNotNone(ring.to_tag)
        gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
        for gap, expected in zip(gaps, (T1, 2 * T1, 4 * T1)):
            # Wall-clock bounds, loose for a loaded machine; the exact
            # schedule is tested on a Clock (tests.sip.test_prack).
            self.assertTrue(expected - 0.08 <= gap <= expected + 0.3, (gaps, expected))

        src.send(in_dialog("PRACK", "udp", src.port, ringing, src.ids, 102, DOMAIN, extra="RAck: %d 101 INVITE" % (rseq + 1)))
        wrong = await src.take(final("PRACK"))
        self.assertEqual(_status(wrong), 481)
        prack = in_dialog("PRACK", "udp", src.port, ringing, src.ids, 103, DOMAIN, extra="RAck: %d 101 INVITE" % rseq)
        src.send(prack)
        ok_prack = await src.take(final("PRACK"))
        self.assertEqual((_status(ok_prack), _raw_header(ok_prack, "CSeq")), (200, "103 PRACK"))
        src.send(prack)  # a retransmission: its transaction answers it again
        self.assertEqual(_status(await src.take(final("PRACK"))), 200)
        after_prack = len(src.matching(response(180)))

        ok = await src.take(final("INVITE"), timeout=10)
        self.assertEqual(_status(ok), 200)
        self.assertEqual(len(src.matching(response(180))), after_prack)
        self.assertIn("100rel", parse_response(ok).headers.tokens("Supported"))
        src.ok_raw = ok
        src.ack(101)
        session_id = await self.session_for(src.ids["call_id"])
        ports = [m.port for m in answer_of(ok).media]
        for i in range(3):
            rtp_a.transport.write(rtp_packet(i, 160 * i, 0xA, 8, b"\xd5" * 160), ("127.0.0.1", ports[0]))

        async def counted() -> bool:
            return await self.packets(session_id) == [(3, 0), (0, 0)]

        await wait_until(counted)
        src.cseq = 103
        await src.bye()
        events = await self.events_for(session_id, 2)
        self.assertEqual([e["event"] for e in events], ["SESSIONSTARTED", "SESSIONCOMPLETED"])
        self.assertEqual(events[1]["reason"], "inboundBye")

    async def test_no_prack(self) -> None:
        """
        An SRC that never PRACKs while the application is slow: after
        64*T1 the INVITE gets 500 and the session completes with an error.
        """
        app = SlowApp(delay=8.0)
        self.start(app, t1=0.05, callback_timeout=9.0)
        self.addCleanup(app.flush)
        src = self.src()
        _, port_a = listen_udp(self)
        final_response = await src.invite(sdp_offer([("96", port_a, 8)]), extra_headers="Require: 100rel")
        self.assertEqual(_status(final_response), 500)
        # 0, T1, 3*T1 ... 63*T1: 7 on time; the last may fall past 64*T1
        # on a loaded machine.
        self.assertIn(len(src.matching(response(180))), (6, 7))
        session_id = await self.session_for(src.ids["call_id"])
        events = await self.events_for(session_id, 1)
        self.assertEqual((events[0]["event"], events[0]["reason"]), ("SESSIONCOMPLETED", "error"))

    async def test_without_100rel_unchanged(self) -> None:
        """
        An INVITE without 100rel gets no 180 at all: 200 straight away, as
        before.
        """
        self.start(t1=T1)
        src = self.src()
        _, port_a = listen_udp(self)
        await src.call(sdp_offer([("96", port_a, 8)]))
        self.assertEqual(src.matching(response(180)), [])
        await src.bye()

    def metadata(self) -> bytes:
        """
        The scenario's RFC 8068 metadata.
        """
        from tests.integration.scenario import METADATA

        return METADATA


__all__ = ["PrackTests", "Response"]
