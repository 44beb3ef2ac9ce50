"""
L{aiconnect.siprec.forward} driven by a L{Clock}: the real UA core and
transaction layer over a recording fake transport, a fake relay session,
and a L{Call} with a list sink.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.call import InboundAcked, InboundEnded, InboundUpdated, StreamInfo
from aiconnect.config import load_string
from aiconnect.media.ports import PortsExhausted
from aiconnect.sip.sdp import parse_sdp
from aiconnect.sip.message import Request, parse
from aiconnect.sip.peer import Peer
from aiconnect.sip.transaction import TimerConfig
from aiconnect.sip.txlayer import TransactionLayer
from aiconnect.sip.ua import UaConfig, UserAgent
from aiconnect.siprec.forward import Forwarder
from aiconnect.siprec.orders import parse_forward_order
from tests.fakes import FakeSipTransport, ListSink, make_runner

CONFIG = """
[[tenant]]
domain = "customer.example.com"
callback_url = "http://127.0.0.1:9"
signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
  [[tenant.trunk]]
  match = "aiforward"
  target = "srs.test"
  transport = "udp"
"""


class FakeForwardMedia:
    def __init__(self, n: int) -> None:
        self.local_ports = [30000 + 2 * i for i in range(n)]
        self.connected: list[dict[str, Any]] = []

        self.exhausted = False

    def connect(self, i: int, **kw: Any) -> None:
        self.connected.append(dict(kw, index=i))

    #: (stream, held) per call of hold (SPEC s13), and the pause state.
    holds: list[tuple[int, bool]]
    paused = False

    def hold(self, i: int, held: bool, now: float) -> None:
        self.holds = getattr(self, "holds", []) + [(i, held)]

    def pause(self, now: float) -> None:
        self.paused = True

    def resume(self, now: float) -> None:
        self.paused = False

    def add_streams(self, n: int) -> list[int]:
        if self.exhausted:
            raise PortsExhausted("no ports")
        base = len(self.local_ports)
        added = [30000 + 2 * (base + i) for i in range(n)]
        self.local_ports = self.local_ports + added
        return added


class FakeMediaSession:
    def __init__(self) -> None:
        self.forwards: dict[str, FakeForwardMedia] = {}
        self.removed: list[str] = []

    def add_forward(self, forward_id: str, n: int) -> FakeForwardMedia:
        self.forwards[forward_id] = FakeForwardMedia(n)
        return self.forwards[forward_id]

    def remove_forward(self, forward_id: str) -> dict[str, Any]:
        self.removed.append(forward_id)
        return {"packets_out": 0}

    def stats(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


class TwoTargets:
    """
    A resolver giving two targets in SRV order.
    """

    def resolve(self, target: str, transport: str) -> defer.Deferred[list[Peer]]:
        return defer.succeed([Peer("udp", "127.0.0.1", 5071), Peer("udp", "127.0.0.1", 5072)])


def _ok(invite: Request) -> bytes:
    """
    The SRS's 200 OK to the first INVITE: two labelled recvonly PCMA
    streams on 31000 and 31002.
    """
    return _ok_sdp(invite, [31000, 31002], sdp_version=1, labelled=True, to_tag="srs1", contact_port=5072)


class ForwardClockTests(SynchronousTestCase):
    """
    Failover and stopping, with time driven by a Clock.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.cfg = load_string(CONFIG)
        self.transport = FakeSipTransport("127.0.0.1:5060")
        self.ua = UserAgent(self.clock, self.transport, config=UaConfig())
        self.tx = TransactionLayer(self.clock, self.transport, self.ua, TimerConfig())
        self.ua.txlayer = self.tx
        self.forwarder = Forwarder(self.clock, self.ua, TwoTargets(), self.cfg)
        tenant = self.cfg.tenants[0]
        self.sink = ListSink()
        self.call = make_runner(tenant, self.sink, self.clock, leg_factory=self.forwarder)
        self.call.media = FakeMediaSession()
        self.call.call.streams = [StreamInfo(0, "1", "PCMA", 8, 20000, None, "sendonly"), StreamInfo(1, "2", "PCMA", 8, 20002, None, "sendonly")]
        self.order = parse_forward_order({"uri": "sip:aiforward@customer.example.com", "xHeaders": {"X-A": "1"}}, tenant)
        self.call.report(InboundAcked)

    def test_timeout_then_failover(self) -> None:
        """
        An SRS that never answers: after 64*T1 (Timer B) the INVITE goes to
        the next target, whose 200 starts the forward.
        """
        fid = self.call.order_forward(self.order)
        invites = self.transport.invites()
        self.assertEqual([p.port for _, p in invites], [5071])
        self.clock.advance(0.5)
        self.assertEqual(len(self.transport.invites()), 2)  # Timer A retransmission
        self.clock.advance(32)
        self.assertEqual({p.port for _, p in self.transport.invites()}, {5071, 5072})
        second = [m for m, p in self.transport.invites() if p.port == 5072][0]
        self.assertEqual(second.headers.get("X-A"), "1")
        self.tx.message_received(parse(_ok(second)), Peer("udp", "127.0.0.1", 5072))
        self.assertEqual(self.sink.names(), ["SESSIONSTARTED", "SIPRECFORWARDSTARTED"])
        self.assertEqual(self.sink.events[1]["target"], "127.0.0.1:5072;transport=udp")
        media = self.call.media.forwards[fid]
        self.assertEqual([c["remote"] for c in media.connected], [("127.0.0.1", 31000), ("127.0.0.1", 31002)])
        acks = [m for m, _ in self.transport.sent if isinstance(m, Request) and m.method == "ACK"]
        self.assertEqual(len(acks), 1)
        self.assertEqual(acks[0].headers.get("X-A"), "1")

    def test_all_targets_time_out(self) -> None:
        """
        When both targets time out, SIPRECFORWARDFAILED names 408 and both
        targets, and the ports are released.
        """
        fid = self.call.order_forward(self.order)
        self.clock.advance(33)
        self.clock.advance(33)
        self.assertEqual(self.sink.names(), ["SESSIONSTARTED", "SIPRECFORWARDFAILED"])
        failed = self.sink.events[1]
        self.assertEqual(failed["status"], 408)
        self.assertEqual(len(failed["targetsTried"]), 2)
        self.assertEqual(self.call.media.removed, [fid])

    def test_inbound_bye_order(self) -> None:
        """
        Inbound BYE: BYE to the SRS, SIPRECFORWARDSTOPPED at once, and
        SESSIONCOMPLETED only after the SRS answers the BYE.
        """
        self.call.order_forward(self.order)
        invite = self.transport.invites()[0][0]
        self.tx.message_received(parse(_ok(invite)), Peer("udp", "127.0.0.1", 5071))
        self.call.report(InboundEnded, reason="bye")
        byes = [m for m, _ in self.transport.sent if isinstance(m, Request) and m.method == "BYE"]
        self.assertEqual(len(byes), 1)
        self.assertEqual(self.sink.names(), ["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED"])
        bye = byes[0]
        resp = "SIP/2.0 200 OK\r\nVia: %s\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %s\r\nContent-Length: 0\r\n\r\n" % (
            bye.headers.get("Via"), bye.headers.get("From"), bye.headers.get("To"), bye.call_id, bye.headers.get("CSeq"))
        self.tx.message_received(parse(resp.encode()), Peer("udp", "127.0.0.1", 5071))
        self.assertEqual(self.sink.names(), ["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"])
        self.assertEqual(self.sink.events[2]["stoppedBy"], "inboundBye")


KEEPALIVE_CONFIG = CONFIG.replace('  transport = "udp"\n', '  transport = "udp"\n  keepalive = 10\n  session_expires = 90\n')


def _ok_sdp(
    request: Request,
    ports: list[int],
    sdp_version: int = 2,
    labelled: bool = False,
    to_tag: str | None = None,
    contact_port: int = 5071,
) -> bytes:
    """
    The SRS's 200 OK to C{request} (a re-INVITE by default): one recvonly
    PCMA stream on each of C{ports}, labelled 1, 2, ... when C{labelled}.

    @param sdp_version: The answer's o= session version.
    @param to_tag: A tag to add to the request's To (for a first INVITE).
    @param contact_port: The port of the SRS's Contact.
    """
    sdp = b"v=0\r\no=SRS 1 %d IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" % sdp_version
    for label, port in enumerate(ports, 1):
        sdp += b"m=audio %d RTP/AVP 8\r\na=recvonly\r\n" % port
        if labelled:
            sdp += b"a=label:%d\r\n" % label
    head = "SIP/2.0 200 OK\r\n"
    for v in request.headers.get_all("Via"):
        head += "Via: %s\r\n" % v
    to = request.headers.get("To") + ("" if to_tag is None else ";tag=" + to_tag)
    head += "From: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %s\r\n" % (
        request.headers.get("From"), to, request.call_id, request.headers.get("CSeq"))
    head += "Contact: <sip:srs@127.0.0.1:%d>;+sip.srs\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n" % (
        contact_port, len(sdp))
    return head.encode() + sdp


class AddedStreamTests(SynchronousTestCase):
    """
    An inbound stream added by re-INVITE (RFC 7866 s7.1.1.1) is forwarded:
    one more sendonly m-line in the re-offer to the SRS, connected after
    its answer; without ports it is left out and the forward goes on.
    """

    setUp = ForwardClockTests.setUp

    def _reinvites(self) -> list[Request]:
        out: dict[int, Request] = {}
        for m, _ in self.transport.sent:
            if isinstance(m, Request) and m.method == "INVITE" and m.to_tag is not None:
                out.setdefault(m.cseq.number, m)
        return list(out.values())

    def _offer(self, request: Request) -> Any:
        from aiconnect.siprec.body import split_body

        return parse_sdp(split_body(request).sdp)

    def test_added_stream_reoffered_and_connected(self) -> None:
        """
        Ports exhausted: the re-offer keeps the two m-lines and nothing
        breaks.  With ports: a third m-line (the inbound label, a new port)
        is offered after the two unchanged ones, and the SRS's answer
        connects it to the added relay stream.
        """
        fid = self.call.order_forward(self.order)
        invite = self.transport.invites()[0][0]
        self.tx.message_received(parse(_ok(invite)), Peer("udp", "127.0.0.1", 5071))
        media = self.call.media.forwards[fid]
        self.assertEqual(len(media.connected), 2)
        self.call.call.streams = self.call.call.streams + [StreamInfo(2, "7", "PCMA", 8, 20004, None, "sendonly", relay_index=2)]

        media.exhausted = True
        self.call.report(InboundUpdated, media_changed=True, metadata_changed=False)
        first = self._reinvites()
        self.assertEqual(len(first), 1)
        self.assertEqual([m.label for m in self._offer(first[0]).media], ["1", "2"])
        self.assertEqual(len(media.local_ports), 2)
        self.tx.message_received(parse(_ok_sdp(first[0], [31000, 31002])), Peer("udp", "127.0.0.1", 5071))
        self.assertEqual([c["index"] for c in media.connected[2:]], [0, 1])

        media.exhausted = False
        self.call.report(InboundUpdated, media_changed=True, metadata_changed=False)
        second = self._reinvites()
        self.assertEqual(len(second), 2)
        offer = self._offer(second[1])
        self.assertEqual([m.label for m in offer.media], ["1", "2", "7"])
        self.assertEqual([m.port for m in offer.media], [30000, 30002, 30004])
        self.assertEqual([m.direction for m in offer.media], ["sendonly"] * 3)
        self.tx.message_received(parse(_ok_sdp(second[1], [31000, 31002, 31004])), Peer("udp", "127.0.0.1", 5071))
        self.assertEqual(
            [(c["index"], c["source"], c["remote"]) for c in media.connected[4:]],
            [(0, 0, ("127.0.0.1", 31000)), (1, 1, ("127.0.0.1", 31002)), (2, 2, ("127.0.0.1", 31004))],
        )
        self.assertEqual(self.sink.names(), ["SESSIONSTARTED", "SIPRECFORWARDSTARTED"])


class RemovedStreamTests(SynchronousTestCase):
    """
    A stream the SRC stops sending is paused towards the SRS; SRTP keys
    stay the same across re-offers.
    """

    setUp = ForwardClockTests.setUp
    _reinvites = AddedStreamTests._reinvites
    _offer = AddedStreamTests._offer

    def test_removed_stream_inactive_keys_kept(self) -> None:
        """
        When inbound stream 2 is rejected in a re-offer, the forward's
        re-INVITE offers that m-line a=inactive (same port, same label), and
        the SRTP keys of an SRTP forward do not change.
        """
        tenant = self.cfg.tenants[0]
        self.cfg = load_string(CONFIG.replace('transport = "udp"', 'transport = "tls"'))
        self.forwarder.config = self.cfg
        order = parse_forward_order({"uri": "sip:aiforward@customer.example.com", "srtp": True}, self.cfg.tenants[0])
        del tenant
        fid = self.call.order_forward(order)
        invite = self.transport.invites()[0][0]
        first_keys = [m.crypto[0].key for m in self._offer(invite).media]
        ok = _ok(invite).replace(b"RTP/AVP 8", b"RTP/SAVP 8")
        ok = ok.replace(b"a=label:1\r\n", b"a=label:1\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n")
        ok = ok.replace(b"a=label:2\r\n", b"a=label:2\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n")
        ok = ok.replace(b"Content-Length: %d" % (len(_ok(invite).split(b"\r\n\r\n", 1)[1]),), b"Content-Length: %d" % (len(ok.split(b"\r\n\r\n", 1)[1]),))
        self.tx.message_received(parse(ok), Peer("tls", "127.0.0.1", 5071))
        self.assertEqual(self.sink.names(), ["SESSIONSTARTED", "SIPRECFORWARDSTARTED"])
        self.call.call.streams = [self.call.call.streams[0], StreamInfo(1, "2", None, None, 0, None, "sendonly")]
        self.call.report(InboundUpdated, media_changed=True, metadata_changed=False)
        offer = self._offer(self._reinvites()[0])
        self.assertEqual([m.direction for m in offer.media], ["sendonly", "inactive"])
        self.assertEqual([m.label for m in offer.media], ["1", "2"])
        self.assertEqual([m.crypto[0].key for m in offer.media], first_keys)
        self.assertIn(fid, self.call.call.forwards)


class KeepaliveTests(ForwardClockTests):
    """
    OPTIONS keep-alive and RFC 4028 refresh towards the SRS, on a Clock.
    """

    def setUp(self) -> None:
        global CONFIG
        saved, CONFIG = CONFIG, KEEPALIVE_CONFIG
        try:
            super().setUp()
        finally:
            CONFIG = saved

    def _answer(self) -> Request:
        self.call.order_forward(self.order)
        invite = self.transport.invites()[0][0]
        ok = _ok(invite).replace(b"Content-Type: application/sdp", b"Session-Expires: 90;refresher=uac\r\nContent-Type: application/sdp")
        self.tx.message_received(parse(ok), Peer("udp", "127.0.0.1", 5071))
        return invite

    def _sent(self, method: str) -> list[Request]:
        """
        Requests sent, retransmissions (same CSeq) counted once.
        """
        out: dict[int, Request] = {}
        for m, _ in self.transport.sent:
            if isinstance(m, Request) and m.method == method:
                out.setdefault(m.cseq.number, m)
        return list(out.values())

    def _answer_last(self, method: str) -> None:
        req = self._sent(method)[-1]
        resp = "SIP/2.0 200 OK\r\nVia: %s\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %s\r\nContent-Length: 0\r\n\r\n" % (
            req.headers.get("Via"), req.headers.get("From"), req.headers.get("To"), req.call_id, req.headers.get("CSeq"))
        self.tx.message_received(parse(resp.encode()), Peer("udp", "127.0.0.1", 5071))

    def test_session_timer_requested_and_refreshed(self) -> None:
        """
        The INVITE asks for Session-Expires: 90;refresher=uac and an UPDATE
        refreshes the session at half the interval.
        """
        invite = self._answer()
        self.assertEqual(invite.headers.get("Session-Expires"), "90;refresher=uac")
        for _ in range(4):
            self.clock.advance(10)
            self._answer_last("OPTIONS")  # keep the keep-alive happy
        self.clock.advance(5)
        updates = self._sent("UPDATE")
        self.assertEqual(len(updates), 1)
        self.assertEqual(updates[0].headers.get("Session-Expires"), "90;refresher=uac")
        self.assertEqual(updates[0].headers.get("X-A"), "1")

    def test_keepalive_then_srs_lost(self) -> None:
        """
        OPTIONS every 10 s while answered; unanswered, the SRS is lost (SPEC
        s13): BYE to it, its RTP held, and the INVITE goes to the other
        target first; its answer resumes the forward (SIPRECFORWARDRESUMED
        with the gap), the session goes on.
        """
        self._answer()
        self.clock.advance(10)
        self.assertEqual(len(self._sent("OPTIONS")), 1)
        self._answer_last("OPTIONS")
        self.clock.advance(10)
        self.assertEqual(len(self._sent("OPTIONS")), 2)
        for _ in range(40):
            self.clock.advance(1)  # no answer: Timer F after 32 s
        self.assertEqual(self.sink.names(), ["SESSIONSTARTED", "SIPRECFORWARDSTARTED"])
        self.assertEqual(len(self._sent("BYE")), 1)
        [fid] = self.call.call.forwards
        self.assertEqual(self.call.call.forwards[fid].state.value, "reconnecting")
        media = self.call.media.forwards[fid]
        self.assertEqual(media.holds, [(0, True), (1, True)])
        self.assertEqual(sorted({p.port for _, p in self.transport.invites()}), [5071, 5072])
        self.assertEqual(self.transport.invites()[1][1].port, 5072)  # the lost target last
        second = self.transport.invites()[1][0]
        self.clock.advance(0.25)
        self.tx.message_received(parse(_ok(second)), Peer("udp", "127.0.0.1", 5072))
        self.assertEqual(self.sink.names(), ["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDRESUMED"])
        resumed = self.sink.events[2]
        self.assertEqual((resumed["target"], resumed["previousTarget"]), ("127.0.0.1:5072;transport=udp", "127.0.0.1:5071;transport=udp"))
        self.assertEqual((resumed["reason"], resumed["gapMs"]), ("OPTIONS: timeout", 8250))
        self.assertEqual(media.holds[2:], [(0, False), (1, False)])
        self.assertEqual(self.call.state.value, "active")
