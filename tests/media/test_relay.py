"""
Tests for L{aiconnect.media.relay} driven by a fake clock.

The relay runs on C{MemoryReactorClock}: its sockets are real (bound on
127.0.0.1) but no reactor polls them, so each test feeds datagrams to the
protocols' C{datagramReceived} and reads what the relay sent from plain
non-blocking sockets (loopback delivers during C{send}).  Time moves only
when a test advances the clock.

The same relay over real sockets and the real reactor is in
L{tests.media.test_relay_udp}.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.media.g711 import ALAW_TO_ULAW, ULAW_TO_ALAW
from aiconnect.media.ports import PortsExhausted
from aiconnect.media.relay import MediaRelay, MediaSession
from aiconnect.media.rtp import (
    ReportBlock,
    RtcpReceiverReport,
    RtcpSenderReport,
    RtpPacket,
    parse_rtcp,
)
from aiconnect.media.srtp import SrtpContext, SrtpParams
from tests.fakes import UdpSocket, rtp_packet

SRC = ("127.0.0.1", 40000)
SRC2 = ("127.0.0.1", 40002)
PORTS = (62000, 62999)  # above the ephemeral range (32768-60999)


class RelayTestMixin:
    """
    A relay on a fake clock, closed after each test.
    """

    def make_relay(self, **kwargs: Any) -> tuple[MediaRelay, MemoryReactorClock]:
        clock = MemoryReactorClock()
        relay = MediaRelay(clock, "127.0.0.1", kwargs.pop("port_min", PORTS[0]), kwargs.pop("port_max", PORTS[1]), **kwargs)
        self.addCleanup(relay.close)  # type: ignore[attr-defined]
        return relay, clock

    def call(self, relay: MediaRelay, codec: str = "PCMA", **connect: Any) -> tuple[MediaSession, list[UdpSocket]]:
        """
        A 2-stream session from SRC/SRC2 (PCMU, PCMA, telephone-event 101)
        with one forward to two sinks.
        """
        session = relay.allocate_session(2)
        pmap = {0: "PCMU", 8: "PCMA", 101: "telephone-event", 13: "CN"}
        session.set_inbound(0, remote=SRC, payload_map=pmap)
        session.set_inbound(1, remote=SRC2, payload_map=pmap)
        forward = session.add_forward("f1", 2)
        sinks = [UdpSocket(self), UdpSocket(self)]  # type: ignore[arg-type]
        for i in range(2):
            forward.connect(i, sinks[i].address, codec=codec, payload_type=8 if codec == "PCMA" else 0, **connect)
        return session, sinks


class AddStreamsTests(RelayTestMixin, SynchronousTestCase):
    """
    L{MediaSession.add_streams}: inbound streams added to a live session
    (a re-INVITE with a new m-line, RFC 7866 s7.1.1.1).
    """

    def test_follows_last_port(self) -> None:
        """
        Added streams take the pairs right after the last stream's, bound
        (RTP and RTCP), with the next indices; close() releases them too.
        """
        relay, _ = self.make_relay()
        free = relay.pool.available
        session = relay.allocate_session(2)
        last = session.streams[-1].rtp_port
        added = session.add_streams(2)
        self.assertEqual([s.rtp_port for s in added], [last + 2, last + 4])
        self.assertEqual([s.index for s in added], [2, 3])
        self.assertIsInstance(session.streams, tuple)
        self.assertEqual(list(session.streams[2:]), added)
        self.assertEqual(len(session.stats()["streams"]), 4)
        self.assertEqual(relay.pool.available, free - 4)
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(probe.close)
        self.assertRaises(OSError, probe.bind, ("127.0.0.1", last + 5))
        session.close()
        self.assertEqual(relay.pool.available, free)
        probe.bind(("127.0.0.1", last + 5))

    def test_any_free_pair(self) -> None:
        """
        When the pair after the last stream is taken (by another session),
        an added stream gets any free pair.
        """
        relay, _ = self.make_relay(port_min=62300, port_max=62309)  # 5 pairs
        session = relay.allocate_session(1)
        other = relay.allocate_session(1)
        self.assertEqual(other.streams[0].rtp_port, session.streams[0].rtp_port + 2)
        (added,) = session.add_streams(1)
        self.assertNotIn(added.rtp_port, [session.streams[0].rtp_port, other.streams[0].rtp_port])
        self.assertEqual(added.rtp_port % 2, 0)
        other.close()
        session.close()
        self.assertEqual(relay.pool.available, 5)

    def test_exhausted_keeps_nothing(self) -> None:
        """
        When the pool is short, add_streams raises PortsExhausted and the
        session keeps its streams and nothing more; bad calls raise
        ValueError.
        """
        relay, _ = self.make_relay(port_min=62400, port_max=62405)  # 3 pairs
        session = relay.allocate_session(2)
        before = session.streams
        self.assertRaises(PortsExhausted, session.add_streams, 2)
        self.assertIs(session.streams, before)
        self.assertEqual(relay.pool.available, 1)
        self.assertRaises(ValueError, session.add_streams, 0)
        session.add_streams(1)
        self.assertRaises(PortsExhausted, session.add_streams, 1)
        self.assertEqual(len(session.streams), 3)
        session.close()
        self.assertEqual(relay.pool.available, 3)
        self.assertRaises(ValueError, session.add_streams, 1)

    def test_added_stream_relays_and_counts(self) -> None:
        """
        An added stream accepts RTP once configured, counts it (session and
        relay stats), feeds a forward through C{source=}, and keeps the
        session from timing out.
        """
        relay, clock = self.make_relay(media_timeout=10.0)
        calls: list[MediaSession] = []
        session = relay.allocate_session(1, on_timeout=calls.append)
        session.set_inbound(0, remote=SRC)
        (added,) = session.add_streams(1)
        src3 = ("127.0.0.1", 40004)
        session.set_inbound(1, remote=src3, payload_map={8: "PCMA"})
        forward = session.add_forward("f", 1)
        sink = UdpSocket(self)
        forward.connect(0, sink.address, codec="PCMA", payload_type=8, source=1)
        for i in range(3):
            clock.advance(6)
            added.datagramReceived(rtp_packet(10 + i, 160 * i, 0x33, 8), src3)
        added.datagramReceived(rtp_packet(20, 0, 0x44, 8), SRC)  # foreign source
        self.assertEqual(calls, [])
        stats = session.stats()["streams"]
        self.assertEqual([s["packets_in"] for s in stats], [0, 3])
        self.assertEqual(stats[1]["drops"]["foreign_source"], 1)
        self.assertEqual(relay.stats()["packets_in"], 3)
        self.assertEqual(len(sink.read()), 3)
        clock.advance(11)
        self.assertEqual(calls, [session])


class ForwardAddStreamsTests(RelayTestMixin, SynchronousTestCase):
    """
    L{ForwardMedia.add_streams}: outbound streams added to a live forward
    (the offer to the SRS grew after an inbound re-INVITE added a stream).
    """

    def test_appended_bound_and_released(self) -> None:
        """
        Added forward streams follow the last one's port, get the next
        indices and fresh SSRCs, show in C{local_ports} and stats, and
        remove_forward releases their ports.
        """
        relay, _ = self.make_relay()
        free = relay.pool.available
        session = relay.allocate_session(2)
        forward = session.add_forward("f1", 2)
        last = forward.local_ports[-1]
        added = forward.add_streams(1)
        self.assertEqual([s.rtp_port for s in added], [last + 2])
        self.assertEqual([s.index for s in added], [2])
        self.assertIsInstance(forward.streams, tuple)
        self.assertEqual(forward.local_ports, [s.rtp_port for s in forward.streams])
        self.assertEqual(len(forward.local_ports), 3)
        self.assertEqual(len({s.ssrc for s in forward.streams}), 3)
        self.assertEqual(len(forward.stats()["streams"]), 3)
        self.assertEqual(relay.pool.available, free - 5)
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(probe.close)
        self.assertRaises(OSError, probe.bind, ("127.0.0.1", last + 3))
        session.remove_forward("f1")
        self.assertEqual(relay.pool.available, free - 2)
        probe.bind(("127.0.0.1", last + 3))
        session.close()
        self.assertEqual(relay.pool.available, free)

    def test_close_releases(self) -> None:
        """
        Closing the session releases the added forward streams' ports.
        """
        relay, _ = self.make_relay()
        free = relay.pool.available
        session = relay.allocate_session(1)
        forward = session.add_forward("f1", 1)
        forward.add_streams(2)
        self.assertEqual(relay.pool.available, free - 4)
        session.close()
        self.assertEqual(relay.pool.available, free)

    def test_exhausted_keeps_nothing(self) -> None:
        """
        When the pool is short, add_streams raises PortsExhausted and the
        forward keeps its streams and nothing more; bad calls and a removed
        forward raise ValueError.
        """
        relay, _ = self.make_relay(port_min=62500, port_max=62507)  # 4 pairs
        session = relay.allocate_session(2)
        forward = session.add_forward("f1", 1)
        before = forward.streams
        self.assertRaises(PortsExhausted, forward.add_streams, 2)
        self.assertIs(forward.streams, before)
        self.assertEqual(relay.pool.available, 1)
        self.assertRaises(ValueError, forward.add_streams, 0)
        forward.add_streams(1)
        self.assertRaises(PortsExhausted, forward.add_streams, 1)
        self.assertEqual(len(forward.streams), 2)
        session.remove_forward("f1")
        self.assertEqual(relay.pool.available, 2)
        self.assertRaises(ValueError, forward.add_streams, 1)

    def test_added_stream_relays(self) -> None:
        """
        An added forward stream, connected to an added inbound stream,
        relays its RTP transcoded to the forward's codec with its own SSRC;
        the existing streams keep relaying.
        """
        relay, _ = self.make_relay()
        session, sinks = self.call(relay, codec="PCMA")
        forward = session.forwards["f1"]
        (inbound,) = session.add_streams(1)
        src3 = ("127.0.0.1", 40004)
        session.set_inbound(2, remote=src3, payload_map={0: "PCMU"})
        (added,) = forward.add_streams(1)
        sink3 = UdpSocket(self)
        forward.connect(2, sink3.address, codec="PCMA", payload_type=8)
        self.assertIs(added.source, inbound)
        payload = bytes(range(160))
        for k in range(3):
            inbound.datagramReceived(rtp_packet(10 + k, 160 * k, 0x33, 0, payload), src3)
        session.streams[0].datagramReceived(rtp_packet(1, 0, 0x11, 8, payload), SRC)
        out = [RtpPacket.parse(d) for d in sink3.read()]
        self.assertEqual([p.payload for p in out], [payload.translate(ULAW_TO_ALAW)] * 3)
        self.assertEqual({p.ssrc for p in out}, {added.ssrc})
        self.assertEqual({p.payload_type for p in out}, {8})
        self.assertEqual(len(sinks[0].read()), 1)
        self.assertEqual(forward.stats()["streams"][2]["packets_out"], 3)


class SessionLifecycleTests(RelayTestMixin, SynchronousTestCase):
    """
    Ports are booked, bound and released on every path.
    """

    def test_consecutive_ports(self) -> None:
        """
        A session's streams get consecutive even ports, RTCP on +1, and
        sockets bound on them.
        """
        relay, _ = self.make_relay()
        session = relay.allocate_session(3)
        ports = [s.rtp_port for s in session.streams]
        self.assertEqual(ports, [ports[0], ports[0] + 2, ports[0] + 4])
        self.assertEqual([s.rtcp_port for s in session.streams], [p + 1 for p in ports])
        self.assertEqual(ports[0] % 2, 0)
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(probe.close)
        self.assertRaises(OSError, probe.bind, ("127.0.0.1", ports[1] + 1))

    def test_close_releases(self) -> None:
        """
        close() releases every port (inbound and forwards), closes the
        sockets, and is idempotent; stats stay readable.
        """
        relay, _ = self.make_relay()
        free = relay.pool.available
        session = relay.allocate_session(2)
        forward = session.add_forward("a", 2)
        self.assertEqual(relay.pool.available, free - 4)
        port = forward.local_ports[0]
        session.close()
        session.close()
        self.assertEqual(relay.pool.available, free)
        self.assertEqual(relay.sessions, set())
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(probe.close)
        probe.bind(("127.0.0.1", port))
        stats = session.stats()
        self.assertTrue(stats["closed"])
        self.assertIn("a", stats["forwards"])
        self.assertRaises(ValueError, session.add_forward, "b", 1)
        self.assertRaises(ValueError, session.set_inbound, 0, SRC)

    def test_remove_forward(self) -> None:
        """
        remove_forward releases that forward's ports, stops its traffic and
        returns its final stats.
        """
        relay, _ = self.make_relay()
        session, sinks = self.call(relay)
        session.streams[0].datagramReceived(rtp_packet(1, 160, 7, 8), SRC)
        free = relay.pool.available
        stats = session.remove_forward("f1")
        self.assertEqual(stats["packets_out"], 1)
        self.assertEqual(relay.pool.available, free + 2)
        session.streams[0].datagramReceived(rtp_packet(2, 320, 7, 8), SRC)
        self.assertEqual(len(sinks[0].read()), 1)
        self.assertRaises(KeyError, session.remove_forward, "f1")
        self.assertEqual(session.stats()["forwards"]["f1"], stats)

    def test_exhausted_leaks_nothing(self) -> None:
        """
        When the pool is short, allocate_session and add_forward raise
        PortsExhausted and keep nothing; the existing call goes on.
        """
        relay, _ = self.make_relay(port_min=62100, port_max=62105)  # 3 pairs
        self.assertRaises(PortsExhausted, relay.allocate_session, 4)
        self.assertEqual(relay.pool.available, 3)
        session = relay.allocate_session(2)
        self.assertRaises(PortsExhausted, session.add_forward, "f", 2)
        self.assertEqual(relay.pool.available, 1)
        self.assertEqual(session.forwards, {})
        forward = session.add_forward("f", 1)
        self.assertEqual(relay.pool.available, 0)
        session.close()
        self.assertEqual(relay.pool.available, 3)
        del forward

    def test_port_taken_elsewhere(self) -> None:
        """
        A port some other socket holds is skipped, and not leaked.
        """
        squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(squatter.close)
        squatter.bind(("127.0.0.1", 62201))  # the RTCP port of the first pair
        relay, _ = self.make_relay(port_min=62200, port_max=62209)  # 5 pairs
        session = relay.allocate_session(2)
        self.assertNotIn(62200, [s.rtp_port for s in session.streams])
        self.assertEqual(relay.pool.available, 3)
        session.close()
        self.assertEqual(relay.pool.available, 5)

    def test_bad_arguments(self) -> None:
        """
        Bad addresses, payload maps, codecs and ids raise ValueError.
        """
        relay, _ = self.make_relay()
        session = relay.allocate_session(1)
        self.assertRaises(ValueError, session.set_inbound, 0, ("example.com", 5))
        self.assertRaises(ValueError, session.set_inbound, 0, ("127.0.0.1", 0))
        self.assertRaises(ValueError, session.set_inbound, 0, SRC, None, {0: "G729"})
        self.assertRaises(ValueError, session.set_inbound, 0, SRC, None, {128: "PCMU"})
        forward = session.add_forward("f", 1)
        self.assertRaises(ValueError, session.add_forward, "f", 1)
        self.assertRaises(ValueError, forward.connect, 0, SRC, codec="G722")
        self.assertRaises(ValueError, forward.connect, 0, SRC, payload_type=200)
        self.assertRaises(ValueError, relay.allocate_session, 0)


class FanOutTests(RelayTestMixin, SynchronousTestCase):
    """
    Rewriting, transcoding and payload type mapping.
    """

    def test_transcode_and_rewrite(self) -> None:
        """
        PCMU on one stream and PCMA on the other reach a PCMA forward with
        the direct-table payload, a fresh SSRC per stream, continuous
        sequence numbers and timestamps.
        """
        relay, _ = self.make_relay()
        session, sinks = self.call(relay, codec="PCMA")
        payload = bytes(range(256))[:160]
        for k in range(5):
            session.streams[0].datagramReceived(rtp_packet(65533 + k, 4294967000 + 160 * k, 0xAAAA, 0, payload), SRC)
            session.streams[1].datagramReceived(rtp_packet(100 + k, 1000 + 160 * k, 0xBBBB, 8, payload), SRC2)
        out = [[RtpPacket.parse(d) for d in sink.read()] for sink in sinks]
        self.assertEqual([p.payload for p in out[0]], [payload.translate(ULAW_TO_ALAW)] * 5)
        self.assertEqual([p.payload for p in out[1]], [payload] * 5)
        ssrcs = set()
        for packets in out:
            self.assertEqual({p.payload_type for p in packets}, {8})
            self.assertEqual(len({p.ssrc for p in packets}), 1)
            ssrcs.add(packets[0].ssrc)
            seq0, ts0 = packets[0].sequence_number, packets[0].timestamp
            self.assertEqual([p.sequence_number for p in packets], [(seq0 + k) & 0xFFFF for k in range(5)])
            self.assertEqual([p.timestamp for p in packets], [(ts0 + 160 * k) & 0xFFFFFFFF for k in range(5)])
            self.assertTrue(packets[0].marker)
            self.assertFalse(any(p.marker for p in packets[1:]))
        self.assertEqual(len(ssrcs), 2)
        self.assertNotIn(0xAAAA, ssrcs)

    def test_pcmu_forward(self) -> None:
        """
        A PCMU forward gets PCMA translated with ALAW_TO_ULAW and PCMU as is.
        """
        relay, _ = self.make_relay()
        session, sinks = self.call(relay, codec="PCMU")
        payload = bytes(range(96, 256))
        session.streams[0].datagramReceived(rtp_packet(1, 1, 1, 0, payload), SRC)
        session.streams[1].datagramReceived(rtp_packet(1, 1, 1, 8, payload), SRC2)
        (a,), (b,) = [[RtpPacket.parse(d) for d in s.read()] for s in sinks]
        self.assertEqual((a.payload_type, a.payload), (0, payload))
        self.assertEqual((b.payload_type, b.payload), (0, payload.translate(ALAW_TO_ULAW)))

    def test_ssrc_change_stays_continuous(self) -> None:
        """
        A new inbound SSRC with unrelated numbering (a re-INVITE) continues
        the outbound stream: next sequence number, timestamp advanced by the
        elapsed time in 20 ms frames, same SSRC, marker set.
        """
        relay, clock = self.make_relay()
        session, sinks = self.call(relay)
        stream = session.streams[0]
        for k in range(3):
            stream.datagramReceived(rtp_packet(500 + k, 9000 + 160 * k, 0x1111, 8), SRC)
            clock.advance(0.02)
        clock.advance(0.96)  # 0.98 s after the last packet
        session.set_inbound(0, remote=SRC, payload_map={8: "PCMA"})
        for k in range(3):
            stream.datagramReceived(rtp_packet(40000 + k, 123 + 160 * k, 0x2222, 8), SRC)
        packets = [RtpPacket.parse(d) for d in sinks[0].read()]
        seqs = [p.sequence_number for p in packets]
        self.assertEqual(seqs, [(seqs[0] + k) & 0xFFFF for k in range(6)])
        ts = [p.timestamp for p in packets]
        self.assertEqual([(b - a) & 0xFFFFFFFF for a, b in zip(ts, ts[1:])], [160, 160, 7840, 160, 160])
        self.assertEqual(len({p.ssrc for p in packets}), 1)
        self.assertEqual([p.marker for p in packets], [True, False, False, True, False, False])
        self.assertEqual(session.stats()["streams"][0]["ssrc_changes"], 1)

    def test_sequence_jump_stays_continuous(self) -> None:
        """
        A jump of more than 3000 in the inbound sequence (same SSRC) is a
        restart: the outbound stream still counts on by one.
        """
        relay, _ = self.make_relay()
        session, sinks = self.call(relay)
        stream = session.streams[0]
        for seq in (10, 11, 20000, 20001, 12):  # 12 is a jump back too
            stream.datagramReceived(rtp_packet(seq, seq * 160, 5, 8), SRC)
        seqs = [RtpPacket.parse(d).sequence_number for d in sinks[0].read()]
        self.assertEqual(seqs, [(seqs[0] + k) & 0xFFFF for k in range(5)])

    def test_loss_and_reorder_preserved(self) -> None:
        """
        Small gaps and reordering pass through as they are (offsets, not
        renumbering).
        """
        relay, _ = self.make_relay()
        session, sinks = self.call(relay)
        for seq in (1, 2, 5, 4, 6):
            session.streams[0].datagramReceived(rtp_packet(seq, seq * 160, 5, 8), SRC)
        seqs = [RtpPacket.parse(d).sequence_number for d in sinks[0].read()]
        self.assertEqual([(s - seqs[0]) & 0xFFFF for s in seqs], [0, 1, 4, 3, 5])

    def test_forward_mid_call(self) -> None:
        """
        A forward added mid-call starts its own continuous stream with its
        own SSRC; the first forward is unaffected.
        """
        relay, _ = self.make_relay()
        session, sinks = self.call(relay)
        stream = session.streams[0]
        for k in range(3):
            stream.datagramReceived(rtp_packet(k, 160 * k, 5, 8), SRC)
        late = session.add_forward("f2", 2)
        late_sink = UdpSocket(self)
        late.connect(0, late_sink.address, codec="PCMU", payload_type=0)
        for k in range(3, 6):
            stream.datagramReceived(rtp_packet(k, 160 * k, 5, 8), SRC)
        first = [RtpPacket.parse(d) for d in sinks[0].read()]
        second = [RtpPacket.parse(d) for d in late_sink.read()]
        self.assertEqual(len(first), 6)
        self.assertEqual(len(second), 3)
        self.assertNotEqual(first[0].ssrc, second[0].ssrc)
        seqs = [p.sequence_number for p in second]
        self.assertEqual(seqs, [(seqs[0] + k) & 0xFFFF for k in range(3)])
        self.assertTrue(second[0].marker)
        self.assertEqual(second[0].payload, bytes(range(160)).translate(ALAW_TO_ULAW))

    def test_telephone_event_and_cn(self) -> None:
        """
        telephone-event keeps its payload with the forward's payload type,
        is dropped (counted) for a forward without one; CN goes as PT 13.
        """
        relay, _ = self.make_relay()
        session, sinks = self.call(relay, dtmf_payload_type=96)
        event = bytes((5, 0x8A, 0x03, 0x20))
        session.streams[0].datagramReceived(rtp_packet(1, 160, 5, 101, event, marker=True), SRC)
        session.streams[0].datagramReceived(rtp_packet(2, 320, 5, 13, b"\x40"), SRC)
        dtmf, cn = [RtpPacket.parse(d) for d in sinks[0].read()]
        self.assertEqual((dtmf.payload_type, dtmf.payload, dtmf.marker), (96, event, True))
        self.assertEqual((cn.payload_type, cn.payload), (13, b"\x40"))
        session.forwards["f1"].connect(0, sinks[0].address, codec="PCMA", payload_type=8, dtmf_payload_type=None)
        session.streams[0].datagramReceived(rtp_packet(3, 480, 5, 101, event), SRC)
        self.assertEqual(sinks[0].read(), [])
        self.assertEqual(session.stats()["forwards"]["f1"]["drops"]["unsupported_payload"], 1)

    def test_codec_change_on_reconnect(self) -> None:
        """
        An SRS re-INVITE changing codec and payload type keeps the SSRC and
        the numbering.
        """
        relay, _ = self.make_relay()
        session, sinks = self.call(relay)
        session.streams[0].datagramReceived(rtp_packet(1, 160, 5, 0), SRC)
        session.forwards["f1"].connect(0, sinks[0].address, codec="PCMU", payload_type=0)
        session.streams[0].datagramReceived(rtp_packet(2, 320, 5, 0), SRC)
        a, b = [RtpPacket.parse(d) for d in sinks[0].read()]
        self.assertEqual((a.payload_type, b.payload_type), (8, 0))
        self.assertEqual(a.ssrc, b.ssrc)
        self.assertEqual((b.sequence_number - a.sequence_number) & 0xFFFF, 1)
        self.assertEqual(b.payload, bytes(range(160)))

    def test_extensions_stripped(self) -> None:
        """
        CSRCs, header extensions and padding are not forwarded.
        """
        relay, _ = self.make_relay()
        session, sinks = self.call(relay)
        from aiconnect.media.rtp import RtpExtension

        packet = RtpPacket(8, 1, 160, 5, b"\x01\x02\x03", csrcs=(9,), extension=RtpExtension(0xBEDE, b"abcd"), padding=3)
        session.streams[0].datagramReceived(packet.serialize(), SRC)
        (out,) = [RtpPacket.parse(d) for d in sinks[0].read()]
        self.assertEqual((out.payload, out.csrcs, out.extension, out.padding), (b"\x01\x02\x03", (), None, 0))


class DropTests(RelayTestMixin, SynchronousTestCase):
    """
    Every unwanted datagram is dropped and counted by cause.
    """

    def test_foreign_garbage_unknown(self) -> None:
        """
        Foreign sources, garbage, non-version-2 packets and unknown payload
        types are counted; the call goes on.
        """
        relay, _ = self.make_relay()
        session, sinks = self.call(relay)
        stream = session.streams[0]
        stream.datagramReceived(rtp_packet(1, 160, 5, 8), ("127.0.0.1", 40004))
        stream.datagramReceived(rtp_packet(1, 160, 5, 8), ("10.0.0.1", 40000))
        stream.datagramReceived(b"garbage", SRC)
        stream.datagramReceived(b"\x80\x08\x00", SRC)
        stream.datagramReceived(b"\x40" + rtp_packet(1, 160, 5, 8)[1:], SRC)
        stream.datagramReceived(b"\x90" + rtp_packet(1, 160, 5, 8)[1:13], SRC)  # extension truncated
        stream.datagramReceived(rtp_packet(1, 160, 5, 96), SRC)
        stream.datagramReceived(rtp_packet(2, 320, 5, 8), SRC)
        self.assertEqual(len(sinks[0].read()), 1)
        drops = session.stats()["streams"][0]["drops"]
        self.assertEqual(drops["foreign_source"], 2)
        self.assertEqual(drops["malformed"], 4)
        self.assertEqual(drops["unknown_payload_type"], 1)
        self.assertEqual(session.stats()["streams"][0]["packets_in"], 1)

    def test_latching(self) -> None:
        """
        With latch_host, the first source from that IP is latched, and then
        only it is accepted.
        """
        relay, _ = self.make_relay()
        session, sinks = self.call(relay)
        session.set_inbound(0, remote=("192.0.2.1", 5000), latch_host="127.0.0.1", payload_map={8: "PCMA"})
        stream = session.streams[0]
        stream.datagramReceived(rtp_packet(1, 160, 5, 8), ("10.1.1.1", 6000))
        stream.datagramReceived(rtp_packet(2, 320, 5, 8), ("127.0.0.1", 6000))
        stream.datagramReceived(rtp_packet(3, 480, 5, 8), ("127.0.0.1", 6002))
        stream.datagramReceived(rtp_packet(4, 640, 5, 8), ("127.0.0.1", 6000))
        self.assertEqual(len(sinks[0].read()), 2)
        stats = session.stats()["streams"][0]
        self.assertEqual(stats["remote"], "127.0.0.1:6000")
        self.assertEqual(stats["drops"]["foreign_source"], 2)

    def test_no_source_accepts_nothing(self) -> None:
        """
        A stream without a remote or latch (held, or not negotiated yet)
        accepts nothing.
        """
        relay, _ = self.make_relay()
        session = relay.allocate_session(1)
        session.streams[0].datagramReceived(rtp_packet(1, 1, 1, 0), SRC)
        self.assertEqual(session.stats()["streams"][0]["drops"]["foreign_source"], 1)

    def test_inbound_srtp_failures(self) -> None:
        """
        Inbound SRTP is decrypted; bad tags, replays and plain RTP are
        dropped and counted; the same key on a re-INVITE keeps the replay
        window.
        """
        relay, _ = self.make_relay()
        session, sinks = self.call(relay)
        key = SrtpParams.generate()
        session.set_inbound(0, remote=SRC, payload_map={8: "PCMA"}, srtp=key)
        src = SrtpContext(key, outbound=True)
        first = src.protect(rtp_packet(1, 160, 5, 8))
        second = src.protect(rtp_packet(2, 320, 5, 8))
        assert first is not None and second is not None
        stream = session.streams[0]
        stream.datagramReceived(first, SRC)
        stream.datagramReceived(first, SRC)  # replay
        stream.datagramReceived(second[:-1] + bytes([second[-1] ^ 0xFF]), SRC)  # bad tag
        stream.datagramReceived(rtp_packet(3, 480, 5, 8), SRC)  # plain RTP: no tag
        session.set_inbound(0, remote=SRC, payload_map={8: "PCMA"}, srtp=SrtpParams(key.suite, key.key))
        stream.datagramReceived(first, SRC)  # still a replay
        stream.datagramReceived(second, SRC)
        packets = [RtpPacket.parse(d) for d in sinks[0].read()]
        self.assertEqual([p.payload for p in packets], [bytes(range(160))] * 2)
        drops = session.stats()["streams"][0]["drops"]
        self.assertEqual(drops["srtp_replay"], 2)
        self.assertEqual(drops["srtp_auth"], 2)
        self.assertEqual(session.stats()["streams"][0]["srtp"], "AES_CM_128_HMAC_SHA1_80")


class TimerTests(RelayTestMixin, SynchronousTestCase):
    """
    Media timeout and RTCP reports, on the fake clock.
    """

    def test_media_timeout(self) -> None:
        """
        No RTP on any inbound stream for media_timeout seconds calls
        on_timeout once; RTP on either stream keeps the session alive.
        """
        relay, clock = self.make_relay(media_timeout=10.0)
        calls: list[MediaSession] = []
        session = relay.allocate_session(2, on_timeout=calls.append)
        session.set_inbound(0, remote=SRC)
        session.set_inbound(1, remote=SRC2)
        clock.advance(6)
        session.streams[1].datagramReceived(rtp_packet(1, 1, 1, 0), SRC2)
        clock.advance(9)
        self.assertEqual(calls, [])
        session.streams[0].datagramReceived(b"junk", SRC)  # not RTP: no activity
        clock.advance(1.5)
        self.assertEqual(calls, [session])
        clock.advance(30)
        self.assertEqual(calls, [session])
        self.assertTrue(session.stats()["timed_out"])
        session.close()
        self.assertEqual(relay.stats()["sessions_timed_out"], 1)

    def test_media_timeout_off(self) -> None:
        """
        media_timeout 0 never times out; set_media_timeout turns it on per
        session.
        """
        relay, clock = self.make_relay(media_timeout=0)
        calls: list[MediaSession] = []
        session = relay.allocate_session(1, on_timeout=calls.append)
        clock.advance(1000)
        self.assertEqual(calls, [])
        session.set_media_timeout(5)
        clock.advance(1)
        self.assertEqual(calls, [session])

    def test_timeout_callback_errors_contained(self) -> None:
        """
        A failing callback is logged; the relay's timer keeps running.
        """
        relay, clock = self.make_relay(media_timeout=1.0)

        def boom(session: MediaSession) -> None:
            raise RuntimeError("boom")

        relay.allocate_session(1, on_timeout=boom)
        clock.advance(2)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(len(clock.getDelayedCalls()), 1)

    def test_no_timer_without_sessions(self) -> None:
        """
        The relay's timer runs only while there are sessions.
        """
        relay, clock = self.make_relay()
        session = relay.allocate_session(1)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        session.close()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_report_timers_cancelled(self) -> None:
        """
        Each connected forward stream has one report timer; removing the
        forward or closing the session cancels them all.
        """
        relay, clock = self.make_relay()
        session, _ = self.call(relay)
        self.assertEqual(len(clock.getDelayedCalls()), 3)  # tick + 2 streams
        session.forwards["f1"].connect(0, ("127.0.0.1", 9), codec="PCMU", payload_type=0)
        self.assertEqual(len(clock.getDelayedCalls()), 3)  # reconnect: no new timer
        session.remove_forward("f1")
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        session.add_forward("f2", 1).connect(0, ("127.0.0.1", 9))
        session.close()
        self.assertEqual(clock.getDelayedCalls(), [])

    def _report(self, relay: MediaRelay, clock: MemoryReactorClock, srtp: SrtpParams | None) -> tuple[MediaSession, UdpSocket, list[Any]]:
        session = relay.allocate_session(1)
        session.set_inbound(0, remote=SRC)
        forward = session.add_forward("f", 1)
        rtp_sink, rtcp_sink = UdpSocket(self), UdpSocket(self)
        forward.connect(0, rtp_sink.address, codec="PCMU", payload_type=0, srtp_tx=srtp, rtcp_remote=rtcp_sink.address)
        for k in range(10):
            session.streams[0].datagramReceived(rtp_packet(k, 160 * k, 5, 0), SRC)
        clock.advance(0.5)
        self.assertEqual(rtcp_sink.read(), [])
        for _ in range(8):
            clock.advance(1)
        return session, rtcp_sink, rtp_sink.read()

    def test_sender_report(self) -> None:
        """
        A forward stream that sent RTP sends an SR with an SDES CNAME within
        1.5 rtcp_interval, with its SSRC and counts.
        """
        relay, clock = self.make_relay(rtcp_interval=5.0)
        session, rtcp_sink, sent = self._report(relay, clock, None)
        (report,) = rtcp_sink.read()
        sr, sdes = parse_rtcp(report)
        assert isinstance(sr, RtcpSenderReport)
        out = RtpPacket.parse(sent[-1])
        self.assertEqual(sr.ssrc, out.ssrc)
        self.assertEqual((sr.packet_count, sr.octet_count), (10, 1600))
        self.assertEqual(sdes.packet_type, 202)
        self.assertEqual(session.stats()["forwards"]["f"]["streams"][0]["rtcp_sent"], 1)
        # Nothing sent since: no further report.
        for _ in range(10):
            clock.advance(1)
        self.assertEqual(rtcp_sink.read(), [])

    def test_sender_report_srtcp(self) -> None:
        """
        With SRTP towards the SRS, the report is SRTCP under the same key.
        """
        relay, clock = self.make_relay(rtcp_interval=5.0)
        key = SrtpParams.generate()
        session, rtcp_sink, _ = self._report(relay, clock, key)
        (report,) = rtcp_sink.read()
        plain = SrtpContext(key, outbound=False).unprotect_rtcp(report)
        assert plain is not None
        self.assertIsInstance(parse_rtcp(plain)[0], RtcpSenderReport)

    def test_receiver_report_kept(self) -> None:
        """
        An RR from the SRS about our stream is kept: loss, jitter and the
        round trip from LSR/DLSR.
        """
        relay, clock = self.make_relay(rtcp_interval=5.0)
        session, rtcp_sink, _ = self._report(relay, clock, None)
        sr = parse_rtcp(rtcp_sink.read()[0])[0]
        assert isinstance(sr, RtcpSenderReport)
        stream = session.forwards["f"].streams[0]
        lsr = ((sr.ntp_msw & 0xFFFF) << 16) | (sr.ntp_lsw >> 16)
        sent_at = sr.ntp_msw - 2208988800 + sr.ntp_lsw / 2**32
        clock.advance(0.25)
        # The SRS held the SR for all but 0.1 s of the time since it went.
        dlsr = int((clock.seconds() - sent_at - 0.1) * 65536)
        rr = RtcpReceiverReport(0x5125, (ReportBlock(stream.ssrc, 64, 2, 12, 80, lsr, dlsr),))
        stream.rtcp.datagramReceived(rr.serialize(), rtcp_sink.address)
        stream.rtcp.datagramReceived(rr.serialize(), ("10.9.9.9", 1))  # foreign
        stream.rtcp.datagramReceived(b"\x80\xc9", rtcp_sink.address)  # malformed
        report = session.stats()["forwards"]["f"]["streams"][0]["receiver_report"]
        self.assertEqual(report["fraction_lost"], 0.25)
        self.assertEqual(report["cumulative_lost"], 2)
        self.assertEqual(report["jitter"], 80)
        self.assertEqual(report["jitter_ms"], 10.0)
        self.assertAlmostEqual(report["rtt"], 0.1, places=3)
        drops = session.stats()["forwards"]["f"]["drops"]
        self.assertEqual((drops["rtcp_foreign_source"], drops["rtcp_malformed"]), (1, 1))

    def test_inbound_rtcp(self) -> None:
        """
        RTCP from the SRC, on its RTCP port or multiplexed on the RTP port,
        is counted and its SR kept, never relayed.
        """
        relay, _ = self.make_relay()
        session, sinks = self.call(relay)
        sr = RtcpSenderReport(5, 1, 2, 3, 4, 5).serialize()
        session.streams[0].rtcp.datagramReceived(sr, (SRC[0], SRC[1] + 1))
        session.streams[0].datagramReceived(sr, SRC)
        session.streams[0].rtcp.datagramReceived(sr, ("127.0.0.1", 9))
        stats = session.stats()["streams"][0]
        self.assertEqual(stats["rtcp_in"], 2)
        self.assertEqual(stats["sender_report"]["packet_count"], 4)
        self.assertEqual(stats["drops"]["foreign_source"], 1)
        self.assertEqual(sinks[0].read(), [])


class StatsTests(RelayTestMixin, SynchronousTestCase):
    """
    Counters are plain dicts, per stream, per forward, and relay-wide.
    """

    def test_plain_and_summed(self) -> None:
        """
        Session stats serialize as JSON; relay totals include closed
        sessions.
        """
        relay, _ = self.make_relay()
        session, sinks = self.call(relay)
        for k in range(4):
            session.streams[0].datagramReceived(rtp_packet(k, 160 * k, 5, 8), SRC)
        session.streams[1].datagramReceived(rtp_packet(1, 160, 6, 0), SRC2)
        stats = session.stats()
        json.dumps(stats)
        forward = stats["forwards"]["f1"]
        self.assertEqual(forward["packets_out"], 5)
        self.assertEqual(forward["bytes_out"], 5 * 172)
        self.assertEqual([s["packets_out"] for s in forward["streams"]], [4, 1])
        self.assertEqual([s["packets_in"] for s in stats["streams"]], [4, 1])
        self.assertEqual(relay.stats()["packets_out"], 5)
        session.close()
        totals = relay.stats()
        json.dumps(totals)
        self.assertEqual((totals["packets_in"], totals["packets_out"]), (5, 5))
        self.assertEqual(totals["bytes_in"], 5 * 172)
        self.assertEqual(totals["sessions_active"], 0)
        self.assertEqual(totals["sessions_total"], 1)

    def test_srtp_bytes_include_tag(self) -> None:
        """
        bytes_out counts the SRTP tag.
        """
        relay, _ = self.make_relay()
        session, _ = self.call(relay, srtp_tx=SrtpParams.generate("AES_CM_128_HMAC_SHA1_32"))
        session.streams[0].datagramReceived(rtp_packet(1, 160, 5, 8), SRC)
        self.assertEqual(session.stats()["forwards"]["f1"]["bytes_out"], 172 + 4)


class Ipv6Tests(SynchronousTestCase):
    """
    The relay on an IPv6 address.
    """

    def test_ipv6(self) -> None:
        """
        Streams bind and relay on ::1; addresses are compared in canonical
        form.
        """
        try:
            probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            probe.bind(("::1", 0))
        except OSError:
            raise self.skipTest("no IPv6 loopback")
        self.addCleanup(probe.close)
        probe.setblocking(False)
        relay = MediaRelay(MemoryReactorClock(), "::1", 64100, 64199)
        self.addCleanup(relay.close)
        session = relay.allocate_session(1)
        session.set_inbound(0, remote=("0:0::1", 5000))
        session.add_forward("f", 1).connect(0, probe.getsockname()[:2], codec="PCMU", payload_type=0)
        session.streams[0].datagramReceived(rtp_packet(1, 160, 1, 0), ("::1", 5000))
        self.assertEqual(RtpPacket.parse(probe.recv(2048)).payload, bytes(range(160)))
        self.assertEqual(session.stats()["streams"][0]["remote"], "[::1]:5000")


class FreedWithoutCollectorTests(RelayTestMixin, SynchronousTestCase):
    """
    A closed session, its streams, RTCP ports and forward hold no reference
    cycle: once the relay and the test let go, reference counting alone
    frees them (the cyclic collector's passes over thousands of ended calls
    stalled the reactor, issue 12).
    """

    def test_closed_session_freed_by_refcount(self) -> None:
        """
        With the collector off, a session that relayed a packet, had its
        timeout callbacks set and was closed (its forward removed first, as
        a call's end does) is gone as soon as the last outside reference
        is dropped, and so are its inbound and forward streams.
        """
        import gc
        import weakref

        relay, _ = self.make_relay()
        session, sinks = self.call(relay, codec="PCMU")
        session.on_timeout = lambda s: None
        session.on_stream_timeout = session.check_timeout  # a bound method back to the session
        session.streams[0].datagramReceived(rtp_packet(1, 160, 1234, 0, b"\xff" * 160), SRC)
        forward = session.forwards["f1"]
        refs = [weakref.ref(session), weakref.ref(forward), weakref.ref(session.streams[0]), weakref.ref(forward.streams[0])]
        session.remove_forward("f1")
        session.close()
        gc.disable()
        self.addCleanup(gc.enable)
        del session, forward, sinks
        self.assertEqual([r() is None for r in refs], [True, True, True, True])
