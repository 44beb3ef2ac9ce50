"""
The late 2xx of an INVITE the UAC gave up on (RFC 3261 s13.2.2.4): the
bounded record L{aiconnect.sip.gaveup.GivenUpInvites}, and the UA core
ACKing and BYEing such a 2xx after the INVITE client transaction ended,
on a L{Clock} over a recording fake transport.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.sip.gaveup import GivenUpInvites
from aiconnect.sip.message import Request, parse
from aiconnect.sip.peer import Peer
from aiconnect.sip.ua import InviteFailed
from tests.integration.srs_peer import _response_lines
from tests.sip.uac_stack import UacStack

SRS = Peer("udp", "127.0.0.1", 5071)
CONTACT = ["Contact: <sip:srs@127.0.0.1:5071>"]


class RecordTests(SynchronousTestCase):
    """
    The record is bounded in number and in time.
    """

    def request(self, n: int) -> Request:
        raw = (
            "INVITE sip:a@h SIP/2.0\r\nFrom: <sip:b@h>;tag=f%d\r\nTo: <sip:a@h>\r\nCall-ID: c%d\r\n"
            "CSeq: 1 INVITE\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nContent-Length: 0\r\n\r\n" % (n, n)
        )
        message = parse(raw.encode())
        assert isinstance(message, Request)
        return message

    def ok(self, request: Request) -> object:
        return parse(_response_lines(request, 200, "OK", "t", CONTACT))

    def test_expires(self) -> None:
        """
        An entry is matched until keep seconds after it was given up, not after.
        """
        record = GivenUpInvites(keep=32)
        req = self.request(1)
        record.add(req, SRS, "<sip:me@h>", now=100)
        self.assertIsNotNone(record.match(self.ok(req), now=131.9))
        self.assertIsNone(record.match(self.ok(req), now=132))
        self.assertEqual(len(record), 0)

    def test_capped(self) -> None:
        """
        Beyond cap entries the oldest is forgotten.
        """
        record = GivenUpInvites(keep=32, cap=3)
        requests = [self.request(n) for n in range(4)]
        for req in requests:
            record.add(req, SRS, "<sip:me@h>", now=1)
        self.assertEqual(len(record), 3)
        self.assertIsNone(record.match(self.ok(requests[0]), now=2))
        self.assertIsNotNone(record.match(self.ok(requests[3]), now=2))


class UaLateAnswerTests(SynchronousTestCase):
    """
    The UA core ACKs and BYEs the 2xx of INVITEs it gave up on.
    """

    def setUp(self) -> None:
        self.stack = UacStack()
        self.clock, self.ua, self.tx = self.stack.clock, self.stack.ua, self.stack.tx

    def sent(self, method: str) -> list[Request]:
        return self.stack.sent(method)

    def respond(self, request: Request, status: int, tag: str = "t1") -> None:
        self.stack.respond(request, status, "X", SRS, tag, CONTACT if status < 300 else [])

    def test_2xx_after_timer_b(self) -> None:
        """
        An INVITE that timed out (Timer B): its 2xx, once the transaction is gone, is ACKed then BYEd.
        """
        invite = self.ua.invite("sip:srs@127.0.0.1:5071", SRS)
        self.clock.advance(32)
        self.failureResultOf(invite.deferred, InviteFailed)
        self.assertEqual(self.tx.client_transactions, {})
        self.respond(self.sent("INVITE")[0], 200)
        self.assertEqual(self.ua.stats["late_answers"], 1)
        self.assertEqual([len(self.sent("ACK")), len(self.sent("BYE"))], [1, 1])
        self.assertEqual(self.sent("BYE")[0].to_tag, "t1")

    def test_2xx_of_another_fork_after_a_failure(self) -> None:
        """
        After a 486, a 2xx from another fork is ACKed and BYEd; a second fork's 2xx too.
        """
        invite = self.ua.invite("sip:srs@127.0.0.1:5071", SRS)
        sent = self.sent("INVITE")[0]
        self.respond(sent, 486)
        self.failureResultOf(invite.deferred, InviteFailed)
        self.respond(sent, 200, "fork1")
        self.respond(sent, 200, "fork2")
        self.assertEqual(sorted(b.to_tag for b in self.sent("BYE")), ["fork1", "fork2"])

    def test_forgotten_after_64_t1(self) -> None:
        """
        64*T1 after the give-up, a 2xx matches nothing and is left alone.
        """
        invite = self.ua.invite("sip:srs@127.0.0.1:5071", SRS)
        self.clock.advance(32)  # Timer B: given up at 32 s
        self.failureResultOf(invite.deferred, InviteFailed)
        self.clock.advance(32)
        self.respond(self.sent("INVITE")[0], 200)
        self.assertEqual(self.sent("BYE"), [])
        self.assertEqual(self.ua.stats["late_answers"], 0)

    def test_answered_invite_not_byed(self) -> None:
        """
        A 2xx retransmission of an INVITE that succeeded is ACKed, never BYEd.
        """
        invite = self.ua.invite("sip:srs@127.0.0.1:5071", SRS)
        sent = self.sent("INVITE")[0]
        self.respond(sent, 200)
        self.successResultOf(invite.deferred)
        self.clock.advance(40)  # Timer M: the transaction ended
        self.respond(sent, 200)
        self.assertEqual((len(self.sent("ACK")), len(self.sent("BYE"))), (2, 0))

    def test_out_of_dialog_options(self) -> None:
        """
        UserAgent.request sends an OPTIONS outside any dialog and fires with its final response.
        """
        request, d = self.ua.request("OPTIONS", "sip:srs@127.0.0.1:5071", SRS)
        sent = self.sent("OPTIONS")[0]
        self.assertEqual((sent.call_id, sent.cseq.method), (request.call_id, "OPTIONS"))
        self.respond(sent, 404)
        self.assertEqual(self.successResultOf(d).status, 404)
        _, d = self.ua.request("OPTIONS", "sip:srs@127.0.0.1:5071", SRS, call_id="abc", cseq=7)
        self.assertEqual((self.sent("OPTIONS")[1].call_id, self.sent("OPTIONS")[1].cseq.number), ("abc", 7))
        self.clock.advance(32)
        self.assertEqual(self.failureResultOf(d, InviteFailed).value.status, 408)
