# -*- test-case-name: tests.media.test_relay_pcm -*-
"""
The relay's PCM tap and forward pause: L{MediaSession.attach_pcm} /
L{MediaSession.detach_pcm}, the relay's one frame timer,
L{ForwardMedia.pause} / L{ForwardMedia.resume}.

The first tests run the relay on C{MemoryReactorClock} with real sockets
bound on 127.0.0.1, feeding the inbound protocols by hand and reading the
forwards from plain sockets (as L{tests.media.test_relay}); the last ones
run it on the real reactor, with test SRC and SRS sockets.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import LoopingCall
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from aiconnect.media.pcm import FRAME_SAMPLES, FRAME_SECONDS, PcmFrame, PcmTap
from aiconnect.media.relay import PCM_PHASES, MediaRelay, MediaSession
from aiconnect.media.rtp import RtpPacket
from tests.fakes import UdpSocket, listen_udp, pause, rtp_packet, wait_until

with open(os.path.join(os.path.dirname(__file__), os.pardir, "data", "g711", "g711-tables.json")) as f:
    _TABLES = json.load(f)
LINEAR = {"PCMU": _TABLES["ulaw2linear16"], "PCMA": _TABLES["alaw2linear16"]}
SILENT = [0] * FRAME_SAMPLES
SRC = ("127.0.0.1", 40000)
SRC2 = ("127.0.0.1", 40002)
PORTS = (64500, 64599)
UDP_PORTS = (64600, 64699)
PMAP = {0: "PCMU", 8: "PCMA", 101: "telephone-event"}


def payload(k: int) -> bytes:
    """
    Packet C{k}'s 160 codes (every code once per 256).
    """
    return bytes((k * FRAME_SAMPLES + i) % 256 for i in range(FRAME_SAMPLES))


def reference(codec: str, data: bytes) -> list[int]:
    """
    C{data} decoded with the reference G.711 table.
    """
    return [LINEAR[codec][c] for c in data]


class FrameList:
    """
    A PCM sink keeping every frame (optionally raising after keeping it).
    """

    def __init__(self, fail: bool = False) -> None:
        self.frames: list[PcmFrame] = []
        self.fail = fail

    def pcm_frame(self, frame: PcmFrame) -> None:
        """
        Keep C{frame}; raise if told to.
        """
        self.frames.append(frame)
        if self.fail:
            raise RuntimeError("sink bug")

    def audio(self, index: int) -> list[list[int]]:
        """
        Stream C{index}'s frames that are not silence, in order.
        """
        return [list(f.streams[index]) for f in self.frames if any(f.streams[index])]


class FakeClockMixin:
    """
    A relay on a fake clock with real sockets, closed after the test.
    """

    def make_relay(self) -> tuple[MediaRelay, MemoryReactorClock]:
        clock = MemoryReactorClock()
        relay = MediaRelay(clock, "127.0.0.1", *PORTS)
        self.addCleanup(relay.close)  # type: ignore[attr-defined]
        return relay, clock

    def session(self, relay: MediaRelay) -> MediaSession:
        session = relay.allocate_session(2)
        session.set_inbound(0, remote=SRC, payload_map=PMAP)
        session.set_inbound(1, remote=SRC2, payload_map=PMAP)
        return session

    def pcm_calls(self, clock: MemoryReactorClock, relay: MediaRelay) -> list[Any]:
        """
        The relay's pending frame ticks.
        """
        return [c for c in clock.getDelayedCalls() if c.func == relay._pcm_tick]


class AttachTests(FakeClockMixin, SynchronousTestCase):
    """
    attach_pcm / detach_pcm and the relay's frame timer.
    """

    def test_no_sink_no_tap(self) -> None:
        """
        A session with no sink has no tap: its streams' pcm slot is None
        (the hot path pays one attribute test) and no frame timer runs.
        """
        relay, clock = self.make_relay()
        session = self.session(relay)
        session.add_streams(1)
        self.assertEqual([s.pcm for s in session.streams], [None] * 3)
        self.assertIsNone(session.pcm)
        self.assertNotIn("pcm", session.stats())
        self.assertEqual(self.pcm_calls(clock, relay), [])
        session.detach_pcm(FrameList())  # no error

    def test_attach_detach(self) -> None:
        """
        The first sink creates the tap and sets it on every stream (also
        added and reopened ones) and arms the timer; the last detach takes
        it off every stream and disarms the timer.
        """
        relay, clock = self.make_relay()
        session = self.session(relay)
        first, second = FrameList(), FrameList()
        session.attach_pcm(first)
        tap = session.pcm
        self.assertIsInstance(tap, PcmTap)
        session.attach_pcm(second)
        self.assertIs(session.pcm, tap)
        self.assertEqual([s.pcm for s in session.streams], [tap, tap])
        self.assertEqual(len(self.pcm_calls(clock, relay)), 1)
        (added,) = session.add_streams(1)
        self.assertIs(added.pcm, tap)
        self.assertEqual(tap.streams, 3)
        self.assertEqual(session.stats()["pcm"]["sinks"], 2)
        session.detach_pcm(first)
        self.assertIs(session.pcm, tap)
        session.detach_pcm(second)
        self.assertIsNone(session.pcm)
        self.assertEqual([s.pcm for s in session.streams], [None] * 3)
        self.assertEqual(relay.pcm_taps, [])
        self.assertEqual(self.pcm_calls(clock, relay), [])
        self.assertNotIn("pcm", session.stats())

    def test_reopened_stream(self) -> None:
        """
        A stream that timed out alone and is reopened is fed to the tap.
        """
        relay, clock = self.make_relay()
        session = self.session(relay)
        session.set_media_timeout(5.0)
        sink = FrameList()
        session.attach_pcm(sink)
        for t in range(6):
            session.streams[0].datagramReceived(rtp_packet(t, 8000 * t, 1, 0, payload(t)), SRC)
            clock.advance(1.0)
        session.check_timeout(clock.seconds())
        self.assertTrue(session.streams[1].ended)
        stream = session.reopen_stream(1)
        self.assertIs(stream.pcm, session.pcm)
        frames = len(sink.frames)
        stream.datagramReceived(rtp_packet(1, 0, 2, 8, payload(3)), SRC2)
        for _ in range(10):
            clock.advance(FRAME_SECONDS)
        self.assertEqual(sink.audio(1), [reference("PCMA", payload(3))])
        self.assertGreater(len(sink.frames), frames)

    def test_close_detaches(self) -> None:
        """
        close() drops the tap and disarms the timer; the final stats keep
        the PCM counters.
        """
        relay, clock = self.make_relay()
        session = self.session(relay)
        session.attach_pcm(FrameList())
        session.close()
        self.assertIsNone(session.pcm)
        self.assertEqual([s.pcm for s in session.streams], [None, None])
        self.assertEqual(self.pcm_calls(clock, relay), [])
        self.assertEqual(session.stats()["pcm"]["sinks"], 1)
        self.assertRaises(ValueError, session.attach_pcm, FrameList())

    def test_one_timer(self) -> None:
        """
        One timer drives every session's tap, ticking every 5 ms for one
        group of taps in turn (two sessions: two groups); it stays armed
        while any tap exists; each tap's frames fall due midway between two
        ticks of its group.
        """
        relay, clock = self.make_relay()
        one, two = self.session(relay), self.session(relay)
        sinks = [FrameList(), FrameList()]
        one.attach_pcm(sinks[0])
        two.attach_pcm(sinks[1])
        self.assertEqual([len(g) for g in relay._pcm_groups], [1, 1, 0, 0])
        self.assertEqual(len(self.pcm_calls(clock, relay)), 1)
        ticks = []
        for _ in range(40):
            clock.advance(FRAME_SECONDS / PCM_PHASES)
            (call,) = self.pcm_calls(clock, relay)
            ticks.append(call.getTime())
        self.assertEqual([round(t, 4) for t in ticks[:3]], [0.01, 0.015, 0.02])
        # 0.2 s: 10 frames due, less 3 of playout delay, less the half frame
        # each start moved back by and the tick the last one waits for.
        self.assertEqual([len(s.frames) for s in sinks], [6, 6])
        for group, session in enumerate((one, two)):
            tick = FRAME_SECONDS / PCM_PHASES * (group + 1)
            self.assertAlmostEqual((tick - session.pcm.start) % FRAME_SECONDS, FRAME_SECONDS / 2)
        one.detach_pcm(sinks[0])
        self.assertEqual(len(self.pcm_calls(clock, relay)), 1)
        two.close()
        self.assertEqual(self.pcm_calls(clock, relay), [])

    def test_lagging_reactor(self) -> None:
        """
        After a stall the groups left behind run at once, the grid moves on
        by whole frames (no burst beyond one round of groups), and the tap
        catches up within its bound.
        """
        relay, clock = self.make_relay()
        session = self.session(relay)
        sink = FrameList()
        session.attach_pcm(sink)
        clock.advance(0.5 + 0.001)  # one late tick
        (call,) = self.pcm_calls(clock, relay)
        self.assertLess(call.getTime() - clock.seconds(), FRAME_SECONDS)
        self.assertEqual([f.index for f in sink.frames][-1:], [21])  # 22 due
        self.assertEqual(len(sink.frames), 10)  # 10 at most
        self.assertEqual(session.stats()["pcm"]["skipped_frames"], 12)

    def test_raising_sink(self) -> None:
        """
        A sink that raises is detached and logged; the others go on; when
        it was the last, the tap goes too.
        """
        relay, clock = self.make_relay()
        session = self.session(relay)
        bad, good = FrameList(fail=True), FrameList()
        session.attach_pcm(bad)
        session.attach_pcm(good)
        for _ in range(6):
            clock.advance(FRAME_SECONDS)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual((len(bad.frames), len(good.frames)), (1, 3))
        self.assertEqual(session.stats()["pcm"]["sink_errors"], 1)
        session.detach_pcm(good)
        last = FrameList(fail=True)
        session.attach_pcm(last)
        for _ in range(6):
            clock.advance(FRAME_SECONDS)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertIsNone(session.pcm)
        self.assertEqual(session.streams[0].pcm, None)
        self.assertEqual(self.pcm_calls(clock, relay), [])


class HotPathTests(FakeClockMixin, SynchronousTestCase):
    """
    The inbound hot path feeds the tap.
    """

    def test_without_forwards(self) -> None:
        """
        With no forward, PCMU and PCMA packets reach the tap decoded exactly
        (G.711 reference tables), each stream in its own array; DTMF and
        dropped packets do not.
        """
        relay, clock = self.make_relay()
        session = self.session(relay)
        sink = FrameList()
        session.attach_pcm(sink)
        for k in range(6):
            clock.advance(FRAME_SECONDS)
            session.streams[0].datagramReceived(rtp_packet(k, 160 * k, 0xA, 0, payload(k)), SRC)
            session.streams[1].datagramReceived(rtp_packet(k, 160 * k, 0xB, 8, payload(k + 9)), SRC2)
            session.streams[1].datagramReceived(rtp_packet(k, 160 * k, 0xB, 101, b"\x01\x0a\x00\xa0"), SRC2)
            session.streams[0].datagramReceived(rtp_packet(k, 160 * k, 0xC, 0, payload(30)), SRC2)  # foreign
            session.streams[0].datagramReceived(rtp_packet(k, 160 * k, 0xC, 9, payload(31)), SRC)  # unknown pt
        for _ in range(6):
            clock.advance(FRAME_SECONDS)
        self.assertEqual([f.index for f in sink.frames], list(range(9)))
        self.assertEqual(sink.audio(0), [reference("PCMU", payload(k)) for k in range(6)])
        self.assertEqual(sink.audio(1), [reference("PCMA", payload(k + 9)) for k in range(6)])
        # The packets land in consecutive frames: no gaps.  (The tap's
        # frames are set midway between the relay's ticks, so the first
        # packet, arriving on a tick, lands in the next frame.)
        first = [i for i, f in enumerate(sink.frames) if any(f.streams[0])][0]
        self.assertLessEqual(first, 1)
        self.assertEqual([list(f.streams[0]) for f in sink.frames[first : first + 6]], sink.audio(0))
        self.assertEqual(session.stats()["pcm"]["packets"], 12)

    def test_with_forward(self) -> None:
        """
        With a forward, the SRS still gets every packet and the tap too.
        """
        relay, clock = self.make_relay()
        session = self.session(relay)
        srs = UdpSocket(self)
        session.add_forward("f", 1).connect(0, srs.address, codec="PCMA", payload_type=8)
        sink = FrameList()
        session.attach_pcm(sink)
        for k in range(4):
            clock.advance(FRAME_SECONDS)
            session.streams[0].datagramReceived(rtp_packet(k, 160 * k, 0xA, 0, payload(k)), SRC)
        for _ in range(6):
            clock.advance(FRAME_SECONDS)
        self.assertEqual(len(srs.read()), 4)
        self.assertEqual(sink.audio(0), [reference("PCMU", payload(k)) for k in range(4)])


class PauseTests(FakeClockMixin, SynchronousTestCase):
    """
    ForwardMedia.pause / resume on a fake clock (exact timestamps).
    """

    def forward(self, relay: MediaRelay) -> tuple[MediaSession, Any, UdpSocket]:
        session = self.session(relay)
        srs = UdpSocket(self)
        forward = session.add_forward("f", 1)
        forward.connect(0, srs.address, codec="PCMU", payload_type=0)
        return session, forward, srs

    def test_pause_resume(self) -> None:
        """
        While paused nothing reaches the SRS and the stream is out of the
        hot path; after resume: next sequence number, timestamp advanced by
        the pause in whole frames, marker bit, same SSRC.
        """
        relay, clock = self.make_relay()
        session, forward, srs = self.forward(relay)
        inbound = session.streams[0]
        for k in range(5):
            inbound.datagramReceived(rtp_packet(100 + k, 5000 + 160 * k, 0xA, 0, payload(k)), SRC)
        before = [RtpPacket.parse(d) for d in srs.read()]
        forward.pause(10.0)
        forward.pause(10.5)  # idempotent: the first time counts
        self.assertTrue(forward.paused)
        self.assertTrue(forward.stats()["paused"])
        self.assertEqual(inbound.targets, [])
        for k in range(5, 30):
            inbound.datagramReceived(rtp_packet(100 + k, 5000 + 160 * k, 0xA, 0, payload(k)), SRC)
        self.assertEqual(srs.read(), [])
        forward.resume(10.999)  # 0.999 s: 50 frames
        forward.resume(12.0)
        self.assertFalse(forward.stats()["paused"])
        for k in range(30, 33):
            inbound.datagramReceived(rtp_packet(100 + k, 5000 + 160 * k, 0xA, 0, payload(k)), SRC)
        after = [RtpPacket.parse(d) for d in srs.read()]
        last, first = before[-1], after[0]
        self.assertEqual(first.sequence_number, (last.sequence_number + 1) & 0xFFFF)
        self.assertEqual(first.timestamp, (last.timestamp + 160 + 50 * 160) & 0xFFFFFFFF)
        self.assertTrue(first.marker)
        self.assertEqual(first.ssrc, last.ssrc)
        self.assertEqual([p.marker for p in after[1:]], [False, False])
        self.assertEqual([p.sequence_number for p in after], [(first.sequence_number + i) & 0xFFFF for i in range(3)])
        self.assertEqual([p.timestamp for p in after], [(first.timestamp + 160 * i) & 0xFFFFFFFF for i in range(3)])
        self.assertEqual([p.payload for p in after], [payload(k) for k in range(30, 33)])

    def test_connect_while_paused(self) -> None:
        """
        A re-answer (connect) or added streams while paused send nothing;
        a forward paused before its first packet starts fresh on resume;
        a removed forward does not come back.
        """
        relay, clock = self.make_relay()
        session, forward, srs = self.forward(relay)
        forward.pause(1.0)
        forward.connect(0, srs.address, codec="PCMA", payload_type=8)
        (extra,) = forward.add_streams(1)
        forward.connect(1, srs.address, codec="PCMA", payload_type=8, source=1)
        self.assertEqual(extra.paused_at, 1.0)
        session.streams[0].datagramReceived(rtp_packet(1, 160, 0xA, 0, payload(1)), SRC)
        session.streams[1].datagramReceived(rtp_packet(1, 160, 0xB, 0, payload(1)), SRC2)
        self.assertEqual(srs.read(), [])
        forward.resume(2.0)
        session.streams[0].datagramReceived(rtp_packet(2, 320, 0xA, 0, payload(2)), SRC)
        session.streams[1].datagramReceived(rtp_packet(2, 320, 0xB, 0, payload(2)), SRC2)
        out = [RtpPacket.parse(d) for d in srs.read()]
        self.assertEqual(len(out), 2)
        self.assertEqual({p.ssrc for p in out}, {s.ssrc for s in forward.streams})
        self.assertEqual({p.payload_type for p in out}, {8})
        self.assertEqual([p.marker for p in out], [True, True])
        # A re-answer moving stream 1 to another source while paused: still
        # silent, and it follows the new source on resume.
        forward.pause(3.0)
        forward.connect(1, srs.address, codec="PCMA", payload_type=8, source=0)
        self.assertEqual(session.streams[0].targets, [])
        self.assertEqual(session.streams[1].targets, [])
        session.streams[0].datagramReceived(rtp_packet(3, 480, 0xA, 0, payload(3)), SRC)
        self.assertEqual(srs.read(), [])
        forward.resume(3.1)
        session.streams[0].datagramReceived(rtp_packet(4, 640, 0xA, 0, payload(4)), SRC)
        moved = [RtpPacket.parse(d) for d in srs.read()]
        self.assertEqual(sorted(p.ssrc for p in moved), sorted(s.ssrc for s in forward.streams))
        forward.pause(3.2)
        session.remove_forward("f")
        forward.resume(4.0)
        self.assertEqual([s.targets for s in session.streams], [[], []])


class OverUdpTests(TestCase):
    """
    The real reactor and real sockets: PCM from test SRCs, and a paused
    forward seen by a test SRS.
    """

    timeout = 15

    def setUp(self) -> None:
        self.relay = MediaRelay(reactor, "127.0.0.1", *UDP_PORTS)
        self.addCleanup(self.relay.close)

    async def test_pcm_over_udp(self) -> None:
        """
        Two SRCs send PCMU and PCMA over UDP; the sink gets exactly the
        reference samples, each stream in its own array, in order, with no
        gap, and the timer stops with the last sink.
        """
        session = self.relay.allocate_session(2)
        src_u, _ = listen_udp(self)
        src_a, _ = listen_udp(self)
        for i, src in enumerate((src_u, src_a)):
            host = src.transport.getHost()  # type: ignore[attr-defined]
            session.set_inbound(i, remote=(host.host, host.port), payload_map=PMAP)
        sink = FrameList()
        session.attach_pcm(sink)
        # One burst: every packet is in the buffer before its frame is due,
        # so a busy machine cannot make one late.
        for k in range(20):
            src_u.send(rtp_packet(k, 160 * k, 1, 0, payload(k)), session.streams[0].rtp_port)
            src_a.send(rtp_packet(k, 160 * k, 2, 8, payload(k + 20)), session.streams[1].rtp_port)
        await wait_until(lambda: len(sink.audio(0)) == 20 and len(sink.audio(1)) == 20, what="40 frames of audio")
        await pause(FRAME_SECONDS * 2)
        self.assertEqual(sink.audio(0), [reference("PCMU", payload(k)) for k in range(20)])
        self.assertEqual(sink.audio(1), [reference("PCMA", payload(k + 20)) for k in range(20)])
        first = next(i for i, f in enumerate(sink.frames) if any(f.streams[0]))
        self.assertEqual([list(f.streams[0]) for f in sink.frames[first : first + 20]], sink.audio(0))
        self.assertEqual([f.index for f in sink.frames], list(range(sink.frames[0].index, sink.frames[-1].index + 1)))
        session.detach_pcm(sink)
        self.assertEqual(self.relay.pcm_taps, [])
        self.assertEqual([c for c in reactor.getDelayedCalls() if c.func == self.relay._pcm_tick], [])
        self.assertEqual([s.pcm for s in session.streams], [None, None])

    async def test_pause_over_udp(self) -> None:
        """
        A paced SRC: while the forward is paused the SRS receives no RTP;
        after resume the stream goes on with the next sequence number, the
        timestamp advanced by the pause, the marker bit and the same SSRC.
        """
        session = self.relay.allocate_session(1)
        src, _ = listen_udp(self)
        host = src.transport.getHost()  # type: ignore[attr-defined]
        session.set_inbound(0, remote=(host.host, host.port), payload_map=PMAP)
        srs, srs_port = listen_udp(self)
        forward = session.add_forward("f", 1)
        forward.connect(0, ("127.0.0.1", srs_port), codec="PCMA", payload_type=8)
        sent = [0]

        def send() -> None:
            k = sent[0]
            src.send(rtp_packet(k, 160 * k, 0x5, 0, payload(k)), session.streams[0].rtp_port)
            sent[0] += 1

        pacer = LoopingCall(send)
        pacer.start(FRAME_SECONDS)
        self.addCleanup(lambda: pacer.stop() if pacer.running else None)
        await wait_until(lambda: len(srs.received) >= 5, what="5 packets before the pause")
        paused_at = reactor.seconds()
        forward.pause(paused_at)
        out_at_pause = forward.stats()["packets_out"]
        in_at_pause = session.stats()["streams"][0]["packets_in"]
        await pause(0.3)
        self.assertGreater(session.stats()["streams"][0]["packets_in"], in_at_pause + 5)
        self.assertEqual(forward.stats()["packets_out"], out_at_pause)
        self.assertEqual(len(srs.received), out_at_pause)  # none while paused
        resumed_at = reactor.seconds()
        forward.resume(resumed_at)
        await wait_until(lambda: len(srs.received) >= out_at_pause + 3, what="3 packets after the resume")
        pacer.stop()
        packets = [RtpPacket.parse(d) for d in srs.received]
        last, first = packets[out_at_pause - 1], packets[out_at_pause]
        frames = int((resumed_at - paused_at) / FRAME_SECONDS + 0.5)
        self.assertEqual(first.sequence_number, (last.sequence_number + 1) & 0xFFFF)
        self.assertEqual(first.timestamp, (last.timestamp + 160 * (frames + 1)) & 0xFFFFFFFF)
        self.assertGreaterEqual(frames, 15)
        self.assertTrue(first.marker)
        self.assertEqual(first.ssrc, last.ssrc)
        self.assertEqual([p.marker for p in packets[:out_at_pause]], [True] + [False] * (out_at_pause - 1))
