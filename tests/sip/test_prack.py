# -*- test-case-name: tests.sip.test_prack -*-
"""
Tests for RFC 3262 (C{100rel}, PRACK) on the UAS side: L{aiconnect.sip.ua}
with L{aiconnect.sip.reliable}, on a L{Clock}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.errors import RemoteSipError
from aiconnect.sip.message import Request, Response, parse
from aiconnect.sip.peer import Peer
from aiconnect.sip.reliable import MAX_RSEQ, ReliableProvisional, Retransmission, parse_rack
from aiconnect.sip.ua import ServerInvite, UaConfig, UserAgent

UDP = Peer("udp", "192.0.2.10", 5060)
TCP = Peer("tcp", "192.0.2.10", 5060)
T1 = 0.5


def request(method: str, cseq: int, option: str = "", to_tag: str = "", extra: str = "", branch: str = "") -> Request:
    """
    A request of the SRC's call C{c1}: the INVITE (with C{option} as
    C{Require}/C{Supported} lines) or a PRACK in its early dialog.
    """
    data = (
        "%s sip:srs@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-%s\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:src@192.0.2.10>;tag=f1\r\n"
        "To: <sip:srs@127.0.0.1>%s\r\n"
        "Call-ID: c1\r\n"
        "CSeq: %d %s\r\n"
        "Contact: <sip:src@192.0.2.10>\r\n"
        "%s%s"
        "Content-Length: 0\r\n\r\n"
        % (method, branch or "%s-%d" % (method, cseq), ";tag=" + to_tag if to_tag else "", cseq, method, option, extra)
    ).encode()
    message = parse(data)
    assert isinstance(message, Request)
    return message


class Transaction:
    """
    A server transaction recording the responses it is given.
    """

    def __init__(self, source: Peer = UDP, clock: Clock | None = None) -> None:
        self.source = source
        self.clock = clock
        self.responses: list[Response] = []
        self.times: list[float] = []

    def respond(self, response: Response) -> None:
        self.responses.append(response)
        if self.clock is not None:
            self.times.append(self.clock.seconds())

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.responses]


class Transport:
    """
    What the UA asks of its transport here: our address for Contact, and
    the 2xx retransmissions it sends itself (recorded).
    """

    def __init__(self) -> None:
        self.sent: list[Response] = []

    def send_response(self, response: Response, peer: Peer) -> None:
        self.sent.append(response)

    def advertised(self, transport: str, private: bool = False) -> str:
        return "198.51.100.1:5060"


class Handler:
    """
    Keeps every INVITE, unanswered (the application is thinking).
    """

    def __init__(self) -> None:
        self.invites: list[ServerInvite] = []

    def invite_received(self, invite: ServerInvite) -> None:
        self.invites.append(invite)


class PrackTests(SynchronousTestCase):
    """
    An INVITE asking for C{100rel} gets a reliable 180, retransmitted until
    its PRACK; PRACKs are matched by RAck.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.handler = Handler()
        self.transport = Transport()
        self.ua = UserAgent(self.clock, self.transport, invite_handler=self.handler, config=UaConfig(t1=T1, t2=4.0))

    def receive(self, option: str = "Require: 100rel\r\n", source: Peer = UDP) -> tuple[Transaction, ServerInvite]:
        """
        The INVITE arrives; return its transaction and L{ServerInvite}.
        """
        tx = Transaction(source, self.clock)
        self.ua.request_received(tx, request("INVITE", 1, option))
        return tx, self.handler.invites[-1]

    def prack(self, invite: ServerInvite, rack: str, cseq: int = 2) -> Transaction:
        """
        Send a PRACK with C{rack} in the INVITE's early dialog.
        """
        tx = Transaction()
        self.ua.request_received(tx, request("PRACK", cseq, to_tag=invite.local_tag, extra="RAck: %s\r\n" % rack))
        return tx

    def test_reliable_180(self) -> None:
        """
        C{Require: 100rel} is accepted (no 420) and answered by a 180 with
        C{Require: 100rel}, an RSeq in 1..2**31-1, a Contact and our tag.
        """
        tx, invite = self.receive()
        self.assertEqual(tx.statuses, [180])
        ringing = tx.responses[0]
        self.assertEqual(ringing.headers.tokens("Require"), ["100rel"])
        rseq = int(ringing.headers.get("RSeq") or "0")
        self.assertTrue(1 <= rseq <= 2**31 - 1)
        self.assertEqual(ringing.headers.get("Contact"), "<sip:198.51.100.1:5060>")
        self.assertEqual(ringing.to_tag, invite.local_tag)
        self.assertIn("PRACK", ringing.headers.get("Allow") or "")

    def test_supported_only(self) -> None:
        """
        C{Supported: 100rel} alone also gets the reliable 180 (RFC 3262 s3
        MAY); an INVITE without 100rel gets no 180 at all, as before.
        """
        tx, _ = self.receive("Supported: timer, 100rel\r\n")
        self.assertEqual(tx.statuses, [180])
        self.assertIsNotNone(tx.responses[0].headers.get("RSeq"))
        plain, _ = self.receive("")
        self.assertEqual(plain.statuses, [])

    def test_retransmission_timing(self) -> None:
        """
        Without PRACK the 180 is sent again at T1, 2*T1, 4*T1 ... (doubling
        past T2: RFC 3262 s3 has no cap), and after 64*T1 the INVITE gets
        500 and its owner is told.
        """
        tx, invite = self.receive()
        failed: list[str] = []
        invite.on_failed = failed.append
        self.clock.pump([T1 / 2] * 200)
        self.assertEqual(tx.times, [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5, 64 * T1])
        self.assertEqual(tx.statuses, [180] * 7 + [500])
        self.assertEqual(failed, ["prack-timeout"])
        self.assertEqual(self.ua.stats["prack_timeouts"], 1)
        self.assertEqual(self.prack(invite, "%d 1 INVITE" % invite.reliable.rseq).statuses, [481])

    def test_prack_matches(self) -> None:
        """
        A PRACK whose RAck names the 180 gets 200 and stops the
        retransmissions; a second PRACK (new transaction) for it gets 481.
        """
        tx, invite = self.receive()
        rseq = invite.reliable.rseq
        self.assertEqual(self.prack(invite, "%d 1 INVITE" % rseq).statuses, [200])
        self.clock.advance(64 * T1)
        self.assertEqual(tx.statuses, [180])
        self.assertEqual(self.prack(invite, "%d 1 INVITE" % rseq, cseq=3).statuses, [481])
        self.assertEqual(self.ua.stats["pracks"], 1)

    def test_prack_mismatch(self) -> None:
        """
        A wrong RSeq, CSeq number or method gets 481 and the 180 goes on
        being retransmitted; a malformed RAck gets 400; a PRACK outside any
        early dialog gets 481.
        """
        tx, invite = self.receive()
        rseq = invite.reliable.rseq
        for rack in ("%d 1 INVITE" % (rseq + 1), "%d 2 INVITE" % rseq, "%d 1 UPDATE" % rseq):
            self.assertEqual(self.prack(invite, rack).statuses, [481], rack)
        self.assertEqual(self.prack(invite, "one 1 INVITE").statuses, [400])
        stray = Transaction()
        self.ua.request_received(stray, request("PRACK", 2, to_tag="nope", extra="RAck: %d 1 INVITE\r\n" % rseq))
        self.assertEqual(stray.statuses, [481])
        self.clock.advance(T1)
        self.assertEqual(tx.statuses, [180, 180])

    def test_one_outstanding(self) -> None:
        """
        While the 180 is unacknowledged no other provisional is sent; once
        PRACKed, the next one carries RSeq + 1.
        """
        tx, invite = self.receive()
        rseq = invite.reliable.rseq
        invite.provisional(183)
        self.assertEqual(tx.statuses, [180])
        self.assertEqual(self.ua.stats["provisionals_withheld"], 1)
        self.prack(invite, "%d 1 INVITE" % rseq)
        invite.provisional(183)
        self.assertEqual(tx.statuses, [180, 183])
        self.assertEqual(tx.responses[1].headers.get("RSeq"), str(rseq + 1))

    def test_answer_before_prack(self) -> None:
        """
        Our 180 has no SDP, so the 200 need not wait for the PRACK (RFC
        3262 s3); the 180 is no longer sent, and its late PRACK still gets
        200.
        """
        tx, invite = self.receive()
        invite.accept(b"")
        self.assertEqual(tx.statuses, [180, 200])
        self.assertIn("100rel", tx.responses[1].headers.tokens("Supported"))
        self.clock.pump([T1] * 4)
        self.assertEqual(tx.statuses, [180, 200])
        self.assertEqual([r.status for r in self.transport.sent], [200, 200])
        self.assertEqual(self.prack(invite, "%d 1 INVITE" % invite.reliable.rseq).statuses, [200])

    def test_rejected_ends_early_dialog(self) -> None:
        """
        After a non-2xx final response (here a CANCEL's 487) the 180 is not
        sent again and a PRACK gets 481.
        """
        tx, invite = self.receive()
        self.ua.cancel_received(tx, request("CANCEL", 1))
        self.clock.advance(64 * T1)
        self.assertEqual(tx.statuses, [180, 487])
        self.assertEqual(self.prack(invite, "%d 1 INVITE" % invite.reliable.rseq).statuses, [481])

    def test_reliable_transport(self) -> None:
        """
        Over TCP the 180 is not retransmitted (the transport is reliable),
        and without PRACK the INVITE still gets 500 after 64*T1.
        """
        tx, _ = self.receive(source=TCP)
        self.clock.advance(64 * T1 - 0.01)
        self.assertEqual(tx.statuses, [180])
        self.clock.advance(0.01)
        self.assertEqual(tx.statuses, [180, 500])

    def test_stop(self) -> None:
        """
        Stopping the UA stops the retransmissions.
        """
        tx, _ = self.receive()
        self.ua.stop()
        self.clock.advance(64 * T1)
        self.assertEqual(tx.statuses, [180])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class ReliableTests(SynchronousTestCase):
    """
    The pure parts of L{aiconnect.sip.reliable}.
    """

    def test_parse_rack(self) -> None:
        """
        RAck is response-num, CSeq-num and method (RFC 3262 s7.2); anything
        else is a 400.
        """
        self.assertEqual(parse_rack(" 776656 1 INVITE "), (776656, 1, "INVITE"))
        for bad in (None, "", "1 INVITE", "1 2", "a 1 INVITE", "1 1 IN VITE", "%d 1 INVITE" % (MAX_RSEQ + 1)):
            with self.subTest(bad):
                with self.assertRaises(RemoteSipError) as caught:
                    parse_rack(bad)
                self.assertEqual(caught.exception.status_hint, 400)

    def test_rseq_sequence(self) -> None:
        """
        The first RSeq is random in 1..2**31-1; each next one adds one.
        """
        first = ReliableProvisional.after(None, 7)
        assert first is not None
        self.assertTrue(1 <= first.rseq <= 2**31 - 1)
        self.assertIsNone(ReliableProvisional.after(first, 7))
        self.assertTrue(first.acknowledge((first.rseq, 7, "INVITE")))
        self.assertEqual(ReliableProvisional.after(first, 7).rseq, first.rseq + 1)  # type: ignore[union-attr]

    def test_retransmission_cap(self) -> None:
        """
        With a cap (2xx: T2) the interval stops doubling there.
        """
        clock = Clock()
        sent: list[float] = []
        expired: list[Any] = []
        Retransmission(clock, lambda: sent.append(clock.seconds()), 0.5, 32.0, lambda: expired.append(1), cap=4.0)
        clock.pump([0.25] * 200)
        self.assertEqual(sent[:6], [0.5, 1.5, 3.5, 7.5, 11.5, 15.5])
        self.assertEqual(expired, [1])
