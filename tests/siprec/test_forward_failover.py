"""
Tests for the mid-call failover of L{aiconnect.siprec.forward.ForwardLeg}
(SPEC s13) on a Clock, through the real UA and transaction layer over a
recording transport (the harness of L{tests.siprec.test_forward}).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.sip.message import Request, parse
from aiconnect.sip.peer import Peer
from aiconnect.siprec.forward import MAX_RECONNECTS
from aiconnect.siprec.health import TargetHealth
from tests.siprec import test_forward as harness


class LegFailoverTests(SynchronousTestCase):
    """
    A forward answered by 127.0.0.1:5071, with OPTIONS keep-alive every
    10 s, loses its SRS.
    """

    _sent = harness.KeepaliveTests._sent
    _answer = harness.KeepaliveTests._answer

    def setUp(self) -> None:
        saved, harness.CONFIG = harness.CONFIG, harness.KEEPALIVE_CONFIG
        try:
            harness.ForwardClockTests.setUp(self)  # type: ignore[arg-type]
        finally:
            harness.CONFIG = saved

    def respond(self, request: Request, status: int, port: int) -> None:
        """
        Answer C{request} with a bodiless C{status} from 127.0.0.1:C{port}.
        """
        resp = "SIP/2.0 %d X\r\nVia: %s\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %s\r\nContent-Length: 0\r\n\r\n" % (
            status, request.headers.get("Via"), request.headers.get("From"), request.headers.get("To"),
            request.call_id, request.headers.get("CSeq"))  # fmt: skip
        self.tx.message_received(parse(resp.encode()), Peer("udp", "127.0.0.1", port))

    def new_invites(self) -> list[Request]:
        """
        The dialog-creating INVITEs sent, retransmissions once.
        """
        out: dict[str, Request] = {}
        for m, _ in self.transport.invites():
            out.setdefault(m.call_id, m)
        return list(out.values())

    def lose_by_481(self, port: int) -> Request:
        """
        Let the keep-alive go out and answer it 481 from C{port}; return
        the INVITE that follows.
        """
        before = len(self.new_invites())
        self.clock.advance(10)
        self.respond(self._sent("OPTIONS")[-1], 481, port)
        invites = self.new_invites()
        self.assertEqual(len(invites), before + 1)
        return invites[-1]

    def test_481_to_options(self) -> None:
        """
        A 481 to the keep-alive is a loss: the target is marked failed in
        the trunk's health for C{down_for}; the dialog is gone (no BYE in
        it, RFC 3261 s12.2.1.2), the INVITE goes to the other target,
        SIPRECFORWARDRESUMED has the reason.
        """
        health = TargetHealth(self.clock)
        self.forwarder.health = health  # type: ignore[attr-defined]
        self._answer()
        invite = self.lose_by_481(5071)
        lost = Peer("udp", "127.0.0.1", 5071)
        self.assertTrue(health.is_down(lost))
        self.assertEqual(health.describe(lost)["lastError"], "OPTIONS answered 481")
        self.assertEqual(self._sent("BYE"), [])
        self.assertEqual(self.transport.invites()[-1][1].port, 5072)
        self.tx.message_received(parse(harness._ok(invite)), Peer("udp", "127.0.0.1", 5072))
        self.assertEqual(self.sink.names(), ["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDRESUMED"])
        self.assertEqual((self.sink.events[2]["reason"], self.sink.events[2]["gapMs"]), ("OPTIONS answered 481", 0))

    def test_stop_while_reconnecting(self) -> None:
        """
        A stop while the next target rings cancels that INVITE and ends
        with SIPRECFORWARDSTOPPED; no SIPRECFORWARDRESUMED follows.
        """
        self._answer()
        invite = self.lose_by_481(5071)
        ringing = harness._ok(invite).replace(b"SIP/2.0 200 OK", b"SIP/2.0 180 Ringing", 1)
        self.tx.message_received(parse(ringing), Peer("udp", "127.0.0.1", 5072))
        [fid] = self.call.call.forwards
        self.assertEqual(self.call.stop_forwards(fid, "api"), [fid])
        self.assertEqual(len(self._sent("CANCEL")), 1)
        self.respond(invite, 487, 5072)
        self.assertEqual(self.sink.names(), ["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED"])
        self.assertEqual(self.sink.events[2]["stoppedBy"], "api")
        self.assertEqual(self.call.call.forwards[fid].state.value, "stopped")

    def test_reconnect_cap(self) -> None:
        """
        A forward is re-established at most MAX_RECONNECTS times; the next
        loss fails it (SIPRECFORWARDFAILED naming the count), and its ports
        are released.
        """
        self._answer()
        port = 5071
        for _ in range(MAX_RECONNECTS):
            invite = self.lose_by_481(port)
            port = self.transport.invites()[-1][1].port
            self.tx.message_received(parse(harness._ok(invite)), Peer("udp", "127.0.0.1", port))
        self.assertEqual(self.sink.names()[2:], ["SIPRECFORWARDRESUMED"] * MAX_RECONNECTS)
        before = len(self.new_invites())
        self.clock.advance(10)
        self.respond(self._sent("OPTIONS")[-1], 481, port)
        self.assertEqual(len(self.new_invites()), before)
        self.assertEqual(self.sink.names()[-1], "SIPRECFORWARDFAILED")
        self.assertEqual(self.sink.events[-1]["reason"], "SRS lost %d times: OPTIONS answered 481" % (MAX_RECONNECTS + 1,))
        [fid] = self.call.call.forwards
        self.assertEqual(self.call.media.removed, [fid])
