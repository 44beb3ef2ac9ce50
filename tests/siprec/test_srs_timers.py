"""
Session timers (RFC 4028) of the inbound SIPRec session, driven by a
L{Clock}: the real L{SrsService}, L{UserAgent} and L{TransactionLayer} on a
recording transport, with RFC 4028's real 90 s minimum (no real waits, no
lowered Min-SE).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.config import load_string
from aiconnect.registry import CallRegistry
from aiconnect.sip.message import Request, Response, parse
from aiconnect.sip.peer import Peer
from aiconnect.sip.transaction import TimerConfig
from aiconnect.sip.txlayer import TransactionLayer
from aiconnect.sip.ua import UaConfig, UserAgent
from aiconnect.siprec.srs import SrsService
from aiconnect.webhooks import NewCallResult
from tests.fakes import FakeSipTransport, ListSink
from tests.integration.siprec_peer import sdp_offer, siprec_invite
from tests.siprec.test_forward import CONFIG

SRC = Peer("udp", "127.0.0.1", 5070)


class FakeStream:
    """
    A relay stream as the SRS sees it.
    """

    def __init__(self, port: int) -> None:
        self.rtp_port = port
        self.ended = False
        self.last_rx = 0.0


class FakeMediaSession:
    """
    The relay's session of a call: ports, and what the SRS configured.
    """

    media_timeout = 30.0

    def __init__(self, n: int) -> None:
        self.streams = [FakeStream(20000 + 2 * i) for i in range(n)]
        self.closed = False
        self.on_stream_timeout: Any = None

    def set_inbound(self, index: int, **kw: Any) -> None:
        pass

    def set_expect_media(self, index: int, expected: bool) -> None:
        pass

    def set_media_timeout(self, seconds: float) -> None:
        self.media_timeout = seconds

    def resume_media_timeout(self, seconds: float) -> None:
        self.media_timeout = seconds

    def stats(self) -> dict[str, Any]:
        return {"streams": len(self.streams)}

    def close(self) -> None:
        self.closed = True


class FakeRelay:
    """
    Allocates L{FakeMediaSession}s.
    """

    def __init__(self) -> None:
        self.sessions: list[FakeMediaSession] = []

    def allocate_session(self, n: int, on_timeout: Any) -> FakeMediaSession:
        session = FakeMediaSession(n)
        self.sessions.append(session)
        return session

    def count_rejected_streams(self, n: int) -> None:
        pass


class AnsweringApp:
    """
    A C{newCall} client whose application answers C{{}} at once.
    """

    def post_new_call(self, tenant: Any, payload: Any, timeout: float) -> defer.Deferred[NewCallResult]:
        return defer.succeed(NewCallResult({}, status=200))


def _answer(request: Request, status: int = 200, extra: str = "") -> bytes:
    """
    The SRC's answer to a request we sent.
    """
    head = "SIP/2.0 %d OK\r\n" % (status,)
    for v in request.headers.get_all("Via"):
        head += "Via: %s\r\n" % v
    head += "From: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %s\r\n%sContent-Length: 0\r\n\r\n" % (
        request.headers.get("From"), request.headers.get("To"), request.call_id, request.headers.get("CSeq"), extra)
    return head.encode()


class SessionTimerClockTests(SynchronousTestCase):
    """
    RFC 4028 s10 on the inbound leg: BYE before the interval ends without a
    refresh; as refresher, UPDATE at half the interval.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.cfg = load_string(CONFIG)
        self.transport = FakeSipTransport("127.0.0.1:5060")
        self.sink = ListSink()
        self.registry = CallRegistry()
        self.srs = SrsService(self.clock, self.cfg, self.registry, self.sink, AnsweringApp(), FakeRelay())
        self.ua = UserAgent(self.clock, self.transport, config=UaConfig(), invite_handler=self.srs)
        self.tx = TransactionLayer(self.clock, self.transport, self.ua, TimerConfig())
        self.ua.txlayer = self.tx
        self.cseq = 1

    def sent(self, method: str) -> list[Request]:
        """
        The requests of C{method} we sent, retransmissions included.
        """
        return [m for m, _ in self.transport.sent if isinstance(m, Request) and m.method == method]

    def call(self, session_expires: str) -> Response:
        """
        Send the SRC's INVITE and ACK our 200.

        @return: our 200.
        """
        data, self.ids = siprec_invite(
            "udp", SRC.port, "customer.example.com", sdp_offer([("96", 40000, 8)]), None,
            extra_headers="Session-Expires: %s\nSupported: timer" % (session_expires,),
        )
        self.tx.message_received(parse(data), SRC)
        [ok] = [m for m, _ in self.transport.sent if isinstance(m, Response) and m.status == 200]
        self.ok = ok
        self.cseq = ok.cseq.number
        self.in_dialog("ACK", cseq=self.cseq)
        return ok

    def in_dialog(self, method: str, extra: str = "", cseq: int | None = None) -> None:
        """
        Send an in-dialog request from the SRC.
        """
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        ok = self.ok
        text = (
            "%s sip:srs@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK%s%d\r\n"
            "Max-Forwards: 70\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d %s\r\n%sContent-Length: 0\r\n\r\n"
        ) % (method, method.lower(), cseq, ok.headers.get("From"), ok.headers.get("To"), ok.call_id, cseq, method, extra)
        self.tx.message_received(parse(text.encode()), SRC)

    def answer(self, request: Request) -> None:
        """
        The SRC answers one of our requests 200.
        """
        self.tx.message_received(parse(_answer(request)), SRC)

    def test_expiry_without_refresh(self) -> None:
        """
        The SRC refreshes once (UPDATE, answered 200 with Session-Expires)
        and then stops: BYE comes min(32, 90/3) = 30 s before the renewed
        interval ends, not the first, and SESSIONCOMPLETED says
        "sessionTimer".
        """
        ok = self.call("90;refresher=uac")
        self.assertEqual(ok.headers.get("Session-Expires"), "90;refresher=uac")
        self.assertIn("timer", ok.headers.tokens("Require"))
        self.clock.advance(45)
        self.in_dialog("UPDATE", "Session-Expires: 90;refresher=uac\r\nSupported: timer\r\n")
        [update_ok] = [m for m, _ in self.transport.sent if isinstance(m, Response) and m.cseq.method == "UPDATE"]
        self.assertEqual((update_ok.status, update_ok.headers.get("Session-Expires")), (200, "90;refresher=uac"))
        self.clock.advance(59.9)  # the first interval's BYE would have been at 60
        self.assertEqual(self.sent("BYE"), [])
        self.clock.advance(0.2)
        [bye] = self.sent("BYE")
        self.answer(bye)
        self.assertEqual(self.sink.names(), ["SESSIONSTARTED", "SESSIONCOMPLETED"])
        self.assertEqual(self.sink.events[1]["reason"], "sessionTimer")
        self.assertEqual(self.registry.live_count("customer.example.com"), 0)

    def test_expiry_src_gone(self) -> None:
        """
        An SRC that answers neither refreshes nor our BYE: the session
        completes with "sessionTimer" at once, the BYE is retransmitted
        until its transaction times out, and that timeout is no error.
        """
        self.call("90;refresher=uac")
        self.clock.advance(60)
        self.assertEqual(len(self.sent("BYE")), 1)
        self.assertEqual(self.sink.names(), ["SESSIONSTARTED", "SESSIONCOMPLETED"])
        self.assertEqual(self.sink.events[1]["reason"], "sessionTimer")
        for _ in range(70):
            self.clock.advance(0.5)
        self.assertGreaterEqual(len(self.sent("BYE")), 2)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_uas_refresher(self) -> None:
        """
        With C{refresher=uas} we refresh with UPDATE at half the interval;
        when the SRC stops answering, the failed refresh ends the session
        with BYE and SESSIONCOMPLETED "sessionTimer".
        """
        ok = self.call("90;refresher=uas")
        self.assertEqual(ok.headers.get("Session-Expires"), "90;refresher=uas")
        self.clock.advance(44.9)
        self.assertEqual(self.sent("UPDATE"), [])
        self.clock.advance(0.2)
        [update] = self.sent("UPDATE")
        self.assertEqual(update.headers.get("Session-Expires"), "90;refresher=uas")
        self.answer(update)
        self.clock.advance(45)
        self.assertEqual(len({m.cseq.number for m in self.sent("UPDATE")}), 2)  # left unanswered
        self.assertEqual(self.sent("BYE"), [])
        for _ in range(70):  # Timer E/F: the UPDATE times out after 64*T1
            self.clock.advance(0.5)
        [bye, *_] = self.sent("BYE")
        self.answer(bye)
        self.assertEqual(self.sink.names(), ["SESSIONSTARTED", "SESSIONCOMPLETED"])
        self.assertEqual(self.sink.events[1]["reason"], "sessionTimer")
