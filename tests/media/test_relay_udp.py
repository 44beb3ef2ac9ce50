"""
The relay end to end over real UDP sockets on 127.0.0.1 and the real
reactor: a test SRC sends RTP, a test SRS receives what the relay forwards,
and the test checks it byte for byte.
"""

from __future__ import annotations

from typing import Any

import pylibsrtp
from twisted.internet import defer, reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import TestCase

from aiconnect.media.g711 import ALAW_TO_ULAW, ULAW_TO_ALAW
from aiconnect.media.relay import MediaRelay, MediaSession
from aiconnect.media.rtp import RtpPacket
from aiconnect.media.srtp import SrtpParams, decode_key_param, format_crypto, parse_crypto

PAYLOAD = bytes(range(256))[48:208]  # 160 octets, codes on both sides of the table diffs
COUNT = 40


class Endpoint(DatagramProtocol):
    """
    A test SRC or SRS socket: records what arrives, fires when enough did.
    """

    noisy = False

    def __init__(self, expected: int = 0) -> None:
        self.packets: list[bytes] = []
        self.expected = expected
        self.done: defer.Deferred[list[bytes]] = defer.Deferred()

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.packets.append(data)
        if len(self.packets) == self.expected:
            self.done.callback(self.packets)

    @property
    def address(self) -> tuple[str, int]:
        host = self.transport.getHost()  # type: ignore[union-attr]
        return (host.host, host.port)

    def send(self, data: bytes, port: int) -> None:
        self.transport.write(data, ("127.0.0.1", port))  # type: ignore[union-attr]


class SrtpPeer:
    """
    The test's own libsrtp session (pylibsrtp directly, not the relay's
    wrapper), from the key as it appears in SDP.
    """

    def __init__(self, crypto_line: str, outbound: bool) -> None:
        attr = parse_crypto(crypto_line)
        key, _, _, _ = decode_key_param(crypto_line.split()[2])
        profile = {
            "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
            "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
        }[attr.suite]
        ssrc_type = pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
        self.session = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=ssrc_type, srtp_profile=profile))


class RelayOverUdpTests(TestCase):
    """
    Real sockets, real reactor.
    """

    timeout = 15

    def setUp(self) -> None:
        self.relay = MediaRelay(reactor, "127.0.0.1", 63000, 63999)
        self.addCleanup(self.relay.close)

    def listen(self, expected: int = 0) -> Endpoint:
        endpoint = Endpoint(expected)
        port = reactor.listenUDP(0, endpoint, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return endpoint

    def inbound(self, srtp: list[SrtpParams | None] | None = None) -> tuple[MediaSession, list[Endpoint]]:
        """
        A session whose stream 0 carries PCMA and stream 1 PCMU from two
        test SRC sockets.
        """
        session = self.relay.allocate_session(2)
        srcs = [self.listen(), self.listen()]
        for i, src in enumerate(srcs):
            session.set_inbound(
                i,
                remote=src.address,
                payload_map={8: "PCMA", 0: "PCMU", 101: "telephone-event"},
                srtp=srtp[i] if srtp else None,
            )
        return session, srcs

    def send_streams(self, session: MediaSession, srcs: list[Endpoint], protect: list[Any] | None = None) -> None:
        for k in range(COUNT):
            for i, (pt, ssrc) in enumerate(((8, 0x0A0A0A0A), (0, 0x0B0B0B0B))):
                data = RtpPacket(pt, (65520 + k) & 0xFFFF, 4294960000 + 160 * k, ssrc, PAYLOAD).serialize()
                if protect:
                    data = protect[i].session.protect(data)
                srcs[i].send(data, session.streams[i].rtp_port)

    def check_stream(self, packets: list[bytes], payload: bytes, pt: int) -> int:
        parsed = [RtpPacket.parse(p) for p in packets]
        self.assertEqual([p.payload for p in parsed], [payload] * COUNT)
        self.assertEqual({p.payload_type for p in parsed}, {pt})
        seq0, ts0 = parsed[0].sequence_number, parsed[0].timestamp
        self.assertEqual([p.sequence_number for p in parsed], [(seq0 + k) & 0xFFFF for k in range(COUNT)])
        self.assertEqual([p.timestamp for p in parsed], [(ts0 + 160 * k) & 0xFFFFFFFF for k in range(COUNT)])
        self.assertEqual(len({p.ssrc for p in parsed}), 1)
        self.assertNotIn(parsed[0].ssrc, (0x0A0A0A0A, 0x0B0B0B0B))
        return parsed[0].ssrc

    @defer.inlineCallbacks
    def test_transcoding(self) -> Any:
        """
        PCMA on one stream and PCMU on the other reach a PCMA forward and a
        PCMU forward in their codecs, per the direct tables, continuous,
        each outbound stream with a fresh SSRC.
        """
        session, srcs = self.inbound()
        srs = {codec: [self.listen(COUNT), self.listen(COUNT)] for codec in ("PCMA", "PCMU")}
        for codec, pt in (("PCMA", 8), ("PCMU", 0)):
            forward = session.add_forward(codec, 2)
            for i in range(2):
                forward.connect(i, srs[codec][i].address, codec=codec, payload_type=pt)
        self.send_streams(session, srcs)
        yield defer.gatherResults([e.done for pair in srs.values() for e in pair])
        ssrcs = {
            self.check_stream(srs["PCMA"][0].packets, PAYLOAD, 8),
            self.check_stream(srs["PCMA"][1].packets, PAYLOAD.translate(ULAW_TO_ALAW), 8),
            self.check_stream(srs["PCMU"][0].packets, PAYLOAD.translate(ALAW_TO_ULAW), 0),
            self.check_stream(srs["PCMU"][1].packets, PAYLOAD, 0),
        }
        self.assertEqual(len(ssrcs), 4)
        stats = session.stats()
        self.assertEqual([s["packets_in"] for s in stats["streams"]], [COUNT, COUNT])
        self.assertEqual(stats["forwards"]["PCMA"]["packets_out"], 2 * COUNT)

    @defer.inlineCallbacks
    def test_srtp_towards_srs(self) -> Any:
        """
        With SDES keys on the forward, the SRS decrypts (with libsrtp and
        the keys from our offer) exactly the direct-table transcoding.
        """
        session, srcs = self.inbound()
        srs = [self.listen(COUNT), self.listen(COUNT)]
        forward = session.add_forward("srs", 2)
        offer = []
        for i, suite in enumerate(("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")):
            key = SrtpParams.generate(suite)  # one fresh key per stream
            offer.append("a=crypto:1 " + format_crypto(1, key).split(" ", 1)[1])
            forward.connect(i, srs[i].address, codec="PCMU", payload_type=0, srtp_tx=key)
        self.send_streams(session, srcs)
        yield defer.gatherResults([e.done for e in srs])
        for i, expected in enumerate((PAYLOAD.translate(ALAW_TO_ULAW), PAYLOAD)):
            peer = SrtpPeer(offer[i], outbound=False)
            self.assertNotIn(expected, srs[i].packets[0])
            plain = [peer.session.unprotect(p) for p in srs[i].packets]
            self.check_stream(plain, expected, 0)

    @defer.inlineCallbacks
    def test_inbound_srtp(self) -> Any:
        """
        SRTP from the SRC, with the keys from its offer, is decrypted and
        relayed (here to a plain forward).
        """
        keys = [SrtpParams.generate(), SrtpParams.generate("AES_CM_128_HMAC_SHA1_32")]
        lines = ["a=crypto:1 " + format_crypto(1, k).split(" ", 1)[1] for k in keys]
        session, srcs = self.inbound(srtp=[parse_crypto(line).keys[0] for line in lines])
        srs = [self.listen(COUNT), self.listen(COUNT)]
        forward = session.add_forward("srs", 2)
        for i in range(2):
            forward.connect(i, srs[i].address, codec="PCMA", payload_type=8)
        self.send_streams(session, srcs, protect=[SrtpPeer(line, outbound=True) for line in lines])
        yield defer.gatherResults([e.done for e in srs])
        self.check_stream(srs[0].packets, PAYLOAD, 8)
        self.check_stream(srs[1].packets, PAYLOAD.translate(ULAW_TO_ALAW), 8)

    @defer.inlineCallbacks
    def test_drops_counted_call_goes_on(self) -> Any:
        """
        Foreign-source packets, garbage, bad SRTP tags and replayed SRTP are
        dropped and counted, and the good packets after them still arrive.
        """
        key = SrtpParams.generate()
        line = format_crypto(1, key)
        session, srcs = self.inbound(srtp=[key, None])
        srs = [self.listen(6), self.listen(2)]
        forward = session.add_forward("srs", 2)
        for i in range(2):
            forward.connect(i, srs[i].address, codec="PCMA", payload_type=8)
        intruder = self.listen()
        sender = SrtpPeer("a=crypto:" + line, outbound=True)
        port0, port1 = session.streams[0].rtp_port, session.streams[1].rtp_port
        good = [sender.session.protect(RtpPacket(8, k, 160 * k, 77, PAYLOAD).serialize()) for k in range(8)]

        srcs[0].send(good[0], port0)
        srcs[0].send(good[1], port0)
        srcs[0].send(good[1], port0)  # replay
        srcs[0].send(good[0], port0)  # replay
        srcs[0].send(good[2][:-1] + bytes([good[2][-1] ^ 0x55]), port0)  # bad tag
        srcs[0].send(good[3][:20] + bytes(len(good[3]) - 20), port0)  # bad tag, zeroed payload
        srcs[0].send(b"\x00" * 40, port0)  # garbage: not version 2
        srcs[0].send(b"hello", port0)  # garbage
        intruder.send(good[4], port0)  # foreign source
        intruder.send(RtpPacket(0, 1, 160, 9, PAYLOAD).serialize(), port1)  # foreign source
        srcs[1].send(b"\xff" * 30, port1)  # garbage: not version 2
        srcs[1].send(b"\x80", port1)  # garbage: runt
        for k in range(2, 6):
            srcs[0].send(good[k], port0)
        for k in range(2):
            srcs[1].send(RtpPacket(0, k, 160 * k, 9, PAYLOAD).serialize(), port1)

        yield defer.gatherResults([e.done for e in srs])
        self.assertEqual(
            [RtpPacket.parse(p).payload for p in srs[0].packets], [PAYLOAD] * 6
        )
        drops = [s["drops"] for s in session.stats()["streams"]]
        self.assertEqual(drops[0]["srtp_replay"], 2)
        self.assertEqual(drops[0]["srtp_auth"], 2)
        self.assertEqual(drops[0]["malformed"], 2)
        self.assertEqual(drops[0]["foreign_source"], 1)
        self.assertEqual(drops[1]["foreign_source"], 1)
        self.assertEqual(drops[1]["malformed"], 2)
        self.assertEqual(session.stats()["streams"][0]["packets_in"], 6)

    @defer.inlineCallbacks
    def test_srs_port_closed(self) -> Any:
        """
        An SRS port that is closed for a while (ICMP port unreachable on the
        connected forward socket) costs only the packets sent meanwhile:
        the forward's socket stays open and delivers once the port is back.
        """
        session, srcs = self.inbound()
        live = self.listen(5)
        dead = reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")
        dead_port = dead.getHost().port
        yield dead.stopListening()
        session.add_forward("live", 1).connect(0, live.address, codec="PCMA", payload_type=8)
        session.add_forward("dead", 1).connect(0, ("127.0.0.1", dead_port), codec="PCMA", payload_type=8)
        for k in range(5):
            srcs[0].send(RtpPacket(8, k, 160 * k, 5, PAYLOAD).serialize(), session.streams[0].rtp_port)
        yield live.done
        back = Endpoint(1)
        port = reactor.listenUDP(dead_port, back, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        for k in range(5, 10):
            srcs[0].send(RtpPacket(8, k, 160 * k, 5, PAYLOAD).serialize(), session.streams[0].rtp_port)
        yield back.done
        self.assertEqual(RtpPacket.parse(back.packets[0]).payload, PAYLOAD)
        self.assertIsNotNone(session.forwards["dead"].streams[0].listening)

    @defer.inlineCallbacks
    def test_added_stream(self) -> Any:
        """
        A stream added to a live session (a re-INVITE's new m-line) listens
        on the pair after the session's last one, receives RTP from its SRC
        over real UDP, counts it and relays it to a forward.
        """
        session, _srcs = self.inbound()
        (added,) = session.add_streams(1)
        self.assertEqual(added.rtp_port, session.streams[1].rtp_port + 2)
        src = self.listen()
        session.set_inbound(2, remote=src.address, payload_map={8: "PCMA"})
        srs = self.listen(COUNT)
        session.add_forward("f", 1).connect(0, srs.address, codec="PCMA", payload_type=8, source=2)
        for k in range(COUNT):
            src.send(RtpPacket(8, k, 160 * k, 0x0C0C0C0C, PAYLOAD).serialize(), added.rtp_port)
        yield srs.done
        self.check_stream(srs.packets, PAYLOAD, 8)
        self.assertEqual([s["packets_in"] for s in session.stats()["streams"]], [0, 0, COUNT])
        session.close()
        self.assertEqual(self.relay.pool.available, self.relay.pool.capacity)
