"""
Tests for L{aiconnect.sip.ua}: the INVITEs waiting for our answer.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.sip.message import Request, Response, parse
from aiconnect.sip.peer import Peer
from aiconnect.sip.ua import ServerInvite, UserAgent

SOURCE = Peer("udp", "192.0.2.10", 5060)


def invite(call_id: str) -> Request:
    """
    @return: an out-of-dialog INVITE without a body.
    """
    data = (
        "INVITE sip:srs@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-%s\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:src@192.0.2.10>;tag=f-%s\r\n"
        "To: <sip:srs@127.0.0.1>\r\n"
        "Call-ID: %s\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:src@192.0.2.10>\r\n"
        "Content-Length: 0\r\n\r\n" % (call_id, call_id, call_id)
    ).encode()
    message = parse(data)
    assert isinstance(message, Request)
    return message


class FakeServerTransaction:
    """
    A server transaction that records the responses it is given.
    """

    source = SOURCE

    def __init__(self) -> None:
        self.responses: list[Response] = []

    def respond(self, response: Response) -> None:
        self.responses.append(response)

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.responses]


class RecordingHandler:
    """
    Keeps every INVITE it receives, unanswered.
    """

    def __init__(self) -> None:
        self.invites: list[ServerInvite] = []

    def invite_received(self, invite: ServerInvite) -> None:
        self.invites.append(invite)


class PendingInviteTests(SynchronousTestCase):
    """
    An INVITE is pending from its arrival to its final answer; the UA
    keeps that list itself (L{UserAgent.invite_answered}).
    """

    def setUp(self) -> None:
        self.handler = RecordingHandler()
        self.ua = UserAgent(Clock(), transport=None, invite_handler=self.handler)
        self.txs = [FakeServerTransaction(), FakeServerTransaction()]
        for n, tx in enumerate(self.txs):
            self.ua.request_received(tx, invite("call-%d" % (n,)))

    def test_reject_pending_skips_answered(self) -> None:
        """
        An INVITE answered by the application is not answered again by
        L{UserAgent.reject_pending}; the one still waiting gets its 503.
        """
        self.handler.invites[0].reject(486)
        self.assertEqual(self.ua.reject_pending(503), 1)
        self.assertEqual(self.txs[0].statuses, [486])
        self.assertEqual(self.txs[1].statuses, [503])
        self.assertEqual(self.ua.reject_pending(503), 0)

    def test_cancel_after_answer(self) -> None:
        """
        A CANCEL that arrives after our final answer changes nothing; one
        that arrives before it is answered 487 and reported.
        """
        cancelled: list[int] = []
        self.handler.invites[1].on_cancel = lambda: cancelled.append(1)
        self.handler.invites[0].reject(486)
        self.ua.cancel_received(self.txs[0], invite("call-0"))
        self.ua.cancel_received(self.txs[1], invite("call-1"))
        self.assertEqual(self.txs[0].statuses, [486])
        self.assertEqual(self.txs[1].statuses, [487])
        self.assertEqual(cancelled, [1])
        self.assertFalse(self.handler.invites[0].cancelled)
        self.assertTrue(self.handler.invites[1].cancelled)

    def test_invite_answered(self) -> None:
        """
        L{UserAgent.invite_answered} takes an INVITE off the pending list.
        """
        self.ua.invite_answered(self.handler.invites[1])
        self.assertEqual(self.ua.reject_pending(500), 1)
        self.assertEqual((self.txs[0].statuses, self.txs[1].statuses), ([500], []))
