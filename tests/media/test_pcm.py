# -*- test-case-name: tests.media.test_pcm -*-
"""
Tests for L{aiconnect.media.pcm}: the L{PcmTap} on a L{Clock}.

Packets are pushed at the times a test schedules on the clock, and the
frame clock is called every 20 ms as the relay's timer does; the samples
are compared with the ITU-T G.711 reference tables in
C{tests/data/g711/g711-tables.json}.
"""

from __future__ import annotations

import json
import os
from array import array
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.media.pcm import (
    FRAME_SAMPLES,
    FRAME_SECONDS,
    MAX_AHEAD,
    PLAYOUT_DELAY,
    PcmFrame,
    PcmSink,
    PcmTap,
)

with open(os.path.join(os.path.dirname(__file__), os.pardir, "data", "g711", "g711-tables.json")) as f:
    _TABLES = json.load(f)
#: The reference decode tables, by codec.
LINEAR = {"PCMU": _TABLES["ulaw2linear16"], "PCMA": _TABLES["alaw2linear16"]}
SILENT = [0] * FRAME_SAMPLES


def payload(k: int, n: int = FRAME_SAMPLES) -> bytes:
    """
    Packet C{k}'s payload: C{n} codes, every code once per 256.
    """
    return bytes((k * n + i) % 256 for i in range(n))


def reference(codec: str, data: bytes) -> list[int]:
    """
    C{data} decoded with the reference table.
    """
    return [LINEAR[codec][c] for c in data]


class FrameList:
    """
    A L{PcmSink} keeping every frame.
    """

    def __init__(self) -> None:
        self.frames: list[PcmFrame] = []

    def pcm_frame(self, frame: PcmFrame) -> None:
        """
        Keep C{frame}.
        """
        self.frames.append(frame)

    def stream(self, index: int) -> list[list[int]]:
        """
        Stream C{index}'s samples, frame by frame.
        """
        return [list(f.streams[index]) for f in self.frames]


class Raising:
    """
    A L{PcmSink} that raises on every frame.
    """

    def __init__(self) -> None:
        self.calls = 0

    def pcm_frame(self, frame: PcmFrame) -> None:
        """
        Count, then fail.
        """
        self.calls += 1
        raise RuntimeError("sink bug")


class TapTestMixin:
    """
    A tap started at 0 on a L{Clock}, its frame clock called every 20 ms
    (on the 20 ms grid, as the relay's timer does).
    """

    def make_tap(self, streams: int = 2, **kwargs: Any) -> tuple[PcmTap, Clock, FrameList]:
        clock = Clock()
        tap = PcmTap(clock.seconds(), streams, **kwargs)
        sink = FrameList()
        tap.add_sink(sink)
        return tap, clock, sink

    def send(
        self,
        tap: PcmTap,
        clock: Clock,
        at: float,
        k: int,
        codec: str = "PCMU",
        index: int = 0,
        ssrc: int = 0x1234,
        n: int = FRAME_SAMPLES,
        ts_base: int = 1000,
        seq_base: int = 7,
        data: bytes | None = None,
    ) -> None:
        """
        Schedule packet C{k} of C{n} samples (timestamp C{ts_base + k * n})
        to arrive at C{at}.
        """
        data = payload(k, n) if data is None else data
        ts = (ts_base + k * n) & 0xFFFFFFFF
        clock.callLater(at, tap.push, index, codec, ssrc, (seq_base + k) & 0xFFFF, ts, data, at)

    def play(self, tap: PcmTap, clock: Clock, until: float) -> None:
        """
        Call the frame clock every 20 ms up to C{until} (pushes due at a
        tick's time go first).
        """
        ticks = int(round(until / FRAME_SECONDS))
        for i in range(1, ticks + 1):
            clock.callLater(i * FRAME_SECONDS, lambda: tap.due(clock.seconds()))
        clock.pump([0.001] * int(round(until * 1000)))


class DecodeTests(TapTestMixin, SynchronousTestCase):
    """
    Each packet is decoded once with the G.711 tables and lands in its
    frame, sample for sample.
    """

    def check_codec(self, codec: str) -> None:
        tap, clock, sink = self.make_tap()
        for k in range(10):
            self.send(tap, clock, FRAME_SECONDS * (k + 1), k, codec)
        self.play(tap, clock, 0.3)
        self.assertEqual([f.index for f in sink.frames], list(range(len(sink.frames))))
        self.assertGreaterEqual(len(sink.frames), 12)
        for k in range(10):
            self.assertEqual(sink.stream(0)[k], reference(codec, payload(k)), k)
        for samples in sink.stream(0)[10:]:
            self.assertEqual(samples, SILENT)
        for samples in sink.stream(1):
            self.assertEqual(samples, SILENT)
        for frame in sink.frames:
            for samples in frame.streams:
                self.assertIsInstance(samples, array)
                self.assertEqual(samples.typecode, "h")
        self.assertEqual(tap.stats()["packets"], 10)

    def test_pcmu(self) -> None:
        """
        PCMU payloads come out as the reference μ-law table's samples, in
        consecutive frames; the silent second stream gives zeros.
        """
        self.check_codec("PCMU")

    def test_pcma(self) -> None:
        """
        PCMA payloads come out as the reference A-law table's samples.
        """
        self.check_codec("PCMA")

    def test_not_audio(self) -> None:
        """
        telephone-event and CN packets are not audio: silence, not counted.
        """
        tap, clock, sink = self.make_tap(1)
        self.send(tap, clock, 0.02, 0, "telephone-event")
        self.send(tap, clock, 0.04, 1, "CN")
        self.play(tap, clock, 0.2)
        self.assertEqual(sink.stream(0), [SILENT] * len(sink.frames))
        self.assertEqual(tap.stats()["packets"], 0)

    def test_two_streams(self) -> None:
        """
        Two streams with different codecs each land in their own array.
        """
        tap, clock, sink = self.make_tap()
        for k in range(5):
            self.send(tap, clock, FRAME_SECONDS * (k + 1), k, "PCMU", index=0)
            self.send(tap, clock, FRAME_SECONDS * (k + 1) + 0.005, k + 50, "PCMA", index=1, ssrc=99)
        self.play(tap, clock, 0.2)
        # The second stream's first packet ends 5 ms into frame 1: it is
        # anchored at the end of that frame (a whole frame later).
        self.assertEqual(sink.stream(1)[0], SILENT)
        for k in range(5):
            self.assertEqual(sink.stream(0)[k], reference("PCMU", payload(k)))
            self.assertEqual(sink.stream(1)[k + 1], reference("PCMA", payload(k + 50)))


class ClockTests(TapTestMixin, SynchronousTestCase):
    """
    Frames follow wall-clock time.
    """

    def test_due_times(self) -> None:
        """
        Frame n is due at start + (n + 1) * 20 ms + the playout delay, and
        due() hands out every frame due since its last call.
        """
        tap, clock, sink = self.make_tap(1)
        clock.advance(FRAME_SECONDS + PLAYOUT_DELAY - 0.001)
        self.assertEqual(tap.due(clock.seconds()), [])
        clock.advance(0.001)
        self.assertEqual([f.index for f in tap.due(clock.seconds())], [0])
        self.assertEqual(tap.due(clock.seconds()), [])
        clock.advance(3 * FRAME_SECONDS)
        frames = tap.due(clock.seconds())
        self.assertEqual([f.index for f in frames], [1, 2, 3])
        self.assertEqual(sink.frames, [sink.frames[0]] + frames)
        self.assertEqual(tap.stats()["frames"], 4)

    def test_catch_up_bound(self) -> None:
        """
        After a long stall one call hands out at most max_catch_up frames,
        the latest; the ones before are skipped and counted, and the next
        call goes on from there.
        """
        tap, clock, sink = self.make_tap(1, max_catch_up=5)
        for k in range(60):
            self.send(tap, clock, FRAME_SECONDS * (k + 1), k)
        clock.advance(1.0 + PLAYOUT_DELAY)  # 50 frames due, none handed out
        frames = tap.due(clock.seconds())
        self.assertEqual([f.index for f in frames], [45, 46, 47, 48, 49])
        self.assertEqual(tap.stats()["skipped_frames"], 45)
        self.assertEqual(tap.stats()["dropped_packets"], 3)  # 50-52: beyond 2 * MAX_AHEAD frames
        self.assertEqual([list(f.streams[0]) for f in frames], [reference("PCMU", payload(k)) for k in range(45, 50)])
        self.assertLessEqual(tap.stats()["buffered_frames"], MAX_AHEAD + 1)
        clock.advance(FRAME_SECONDS)
        self.assertEqual([f.index for f in tap.due(clock.seconds())], [50])
        self.assertEqual(len(sink.frames), 6)

    def test_grow(self) -> None:
        """
        Streams added later (a re-INVITE) are carried from the next frame
        on: every frame has one array per stream.
        """
        tap, clock, sink = self.make_tap(1)
        self.send(tap, clock, 0.02, 0)
        self.play(tap, clock, 0.1)
        tap.grow(3)
        self.send(tap, clock, 0.12, 5, index=2, ssrc=5)
        self.play(tap, clock, 0.2)
        self.assertEqual({len(f.streams) for f in sink.frames[:2]}, {1})
        self.assertEqual({len(f.streams) for f in sink.frames[2:]}, {3})
        self.assertIn(reference("PCMU", payload(5)), [list(f.streams[2]) for f in sink.frames[2:]])
        self.assertEqual(tap.streams, 3)


class JitterTests(TapTestMixin, SynchronousTestCase):
    """
    The jitter buffer places packets by RTP timestamp.
    """

    def test_reordered_within_delay(self) -> None:
        """
        Packets reordered (and delayed) within 60 ms land in place.
        """
        tap, clock, sink = self.make_tap(1)
        arrival = {k: FRAME_SECONDS * (k + 1) for k in range(10)}
        arrival[3] += 0.058  # after packets 4, 5 and 6
        arrival[7], arrival[8] = arrival[8], arrival[7] + 0.001
        for k in sorted(arrival, key=arrival.__getitem__):
            self.send(tap, clock, arrival[k], k)
        self.play(tap, clock, 0.3)
        for k in range(10):
            self.assertEqual(sink.stream(0)[k], reference("PCMU", payload(k)), k)
        stats = tap.stats()
        self.assertEqual((stats["reordered_packets"], stats["late_packets"]), (2, 0))

    def test_too_late(self) -> None:
        """
        A packet arriving after its frame went out is dropped and counted;
        the frame is silence and the others are untouched.
        """
        tap, clock, sink = self.make_tap(1)
        for k in range(8):
            self.send(tap, clock, FRAME_SECONDS * (k + 1) + (0.065 if k == 2 else 0), k)
        self.play(tap, clock, 0.3)
        self.assertEqual(sink.stream(0)[2], SILENT)
        for k in (0, 1, 3, 4, 5, 6, 7):
            self.assertEqual(sink.stream(0)[k], reference("PCMU", payload(k)), k)
        self.assertEqual(tap.stats()["late_packets"], 1)

    def test_lost_packet(self) -> None:
        """
        A lost packet gives exactly 160 zero samples at its index.
        """
        tap, clock, sink = self.make_tap(1)
        for k in range(8):
            if k != 4:
                self.send(tap, clock, FRAME_SECONDS * (k + 1), k)
        self.play(tap, clock, 0.3)
        samples = sum(sink.stream(0)[:8], [])
        expected = sum((reference("PCMU", payload(k)) if k != 4 else SILENT for k in range(8)), [])
        self.assertEqual(samples, expected)
        self.assertEqual(samples[4 * FRAME_SAMPLES : 5 * FRAME_SAMPLES], SILENT)

    def check_packet_size(self, n: int, count: int) -> None:
        tap, clock, sink = self.make_tap(1)
        for k in range(count):
            self.send(tap, clock, n / 8000 * (k + 1), k, n=n)
        self.play(tap, clock, 0.4)
        sent = sum((reference("PCMU", payload(k, n)) for k in range(count)), [])
        received = sum(sink.stream(0), [])
        self.assertEqual(received[: len(sent)], sent)
        self.assertEqual(set(received[len(sent) :]), {0})

    def test_30ms_packets(self) -> None:
        """
        30 ms packets (240 samples, across frame boundaries) come out
        sample-continuous.
        """
        self.check_packet_size(240, 8)

    def test_10ms_packets(self) -> None:
        """
        10 ms packets (80 samples, two per frame) come out
        sample-continuous.
        """
        self.check_packet_size(80, 20)

    def test_ssrc_change(self) -> None:
        """
        A new SSRC (other timestamps and sequence numbers) re-anchors the
        stream at its arrival: its packets follow in the next frames.
        """
        tap, clock, sink = self.make_tap(1)
        for k in range(5):
            self.send(tap, clock, FRAME_SECONDS * (k + 1), k)
        for k in range(5, 10):
            self.send(tap, clock, FRAME_SECONDS * (k + 1), k, ssrc=0xBEEF, ts_base=0x7FFFFF00, seq_base=40000)
        self.play(tap, clock, 0.3)
        for k in range(10):
            self.assertEqual(sink.stream(0)[k], reference("PCMU", payload(k)), k)
        self.assertEqual(tap.stats()["reanchors"], 1)

    def test_timestamp_jump(self) -> None:
        """
        A timestamp jump forward beyond the buffer re-anchors the stream
        (same SSRC), and so does one of a second or more backwards.
        """
        tap, clock, sink = self.make_tap(1)
        for k in range(4):
            self.send(tap, clock, FRAME_SECONDS * (k + 1), k)
        for k in range(4, 8):
            self.send(tap, clock, FRAME_SECONDS * (k + 1), k, ts_base=1000 + 80000)
        for k in range(8, 12):
            self.send(tap, clock, FRAME_SECONDS * (k + 1), k, ts_base=1000 - 8000)
        self.play(tap, clock, 0.4)
        for k in range(12):
            self.assertEqual(sink.stream(0)[k], reference("PCMU", payload(k)), k)
        self.assertEqual(tap.stats()["reanchors"], 2)

    def test_late_run_reanchors(self) -> None:
        """
        A small jump backwards (every packet too late) re-anchors after
        three late packets in a row; the first two are dropped.
        """
        tap, clock, sink = self.make_tap(1)
        for k in range(5):
            self.send(tap, clock, FRAME_SECONDS * (k + 1), k)
        for k in range(5, 10):
            self.send(tap, clock, FRAME_SECONDS * (k + 1), k, ts_base=1000 - 1600)
        self.play(tap, clock, 0.3)
        stats = tap.stats()
        self.assertEqual((stats["late_packets"], stats["reanchors"]), (2, 1))
        self.assertEqual(sink.stream(0)[5:7], [SILENT, SILENT])
        for k in (0, 1, 2, 3, 4, 7, 8, 9):
            self.assertEqual(sink.stream(0)[k], reference("PCMU", payload(k)), k)

    def test_timestamp_wrap(self) -> None:
        """
        The 32-bit timestamp wraps without a re-anchor.
        """
        tap, clock, sink = self.make_tap(1)
        for k in range(8):  # the timestamp passes 2**32 at k = 3
            self.send(tap, clock, FRAME_SECONDS * (k + 1), k, ts_base=0xFFFFFFFF - 400, seq_base=0xFFFD)
        self.play(tap, clock, 0.3)
        for k in range(8):
            self.assertEqual(sink.stream(0)[k], reference("PCMU", payload(k)), k)
        self.assertEqual(tap.stats()["reanchors"], 0)

    def test_bounded(self) -> None:
        """
        Packets with random timestamps (an SRC gone mad) never make the
        buffer hold more than MAX_AHEAD frames ahead of the play point.
        """
        tap, clock, sink = self.make_tap(1)
        ts = 12345
        for k in range(300):
            ts = (ts * 1103515245 + 12345) & 0xFFFFFFFF
            clock.callLater(0.001 * k, tap.push, 0, "PCMA", 1, k, ts, payload(k, 1000), 0.001 * k)
        biggest = 0

        def tick() -> None:
            nonlocal biggest
            tap.due(clock.seconds())
            biggest = max(biggest, tap.stats()["buffered_frames"])

        for i in range(1, 20):
            clock.callLater(i * FRAME_SECONDS, tick)
        clock.pump([0.001] * 400)
        self.assertLessEqual(biggest, MAX_AHEAD + 1)
        self.assertGreater(tap.stats()["reanchors"], 10)


class SinkTests(TapTestMixin, SynchronousTestCase):
    """
    Sinks come and go; one that raises breaks no other.
    """

    def test_raising_sink(self) -> None:
        """
        A sink that raises is removed and counted, on_sink_error is told,
        and the other sinks still get every frame.
        """
        failed: list[tuple[PcmSink, Exception]] = []
        tap, clock, first = self.make_tap(1, on_sink_error=lambda s, e: failed.append((s, e)))
        bad = Raising()
        last = FrameList()
        tap.add_sink(bad)
        tap.add_sink(last)
        self.play(tap, clock, 0.2)
        self.assertEqual(bad.calls, 1)
        self.assertEqual(tap.sinks, (first, last))
        self.assertEqual(len(failed), 1)
        self.assertIs(failed[0][0], bad)
        self.assertIsInstance(failed[0][1], RuntimeError)
        self.assertEqual(tap.stats()["sink_errors"], 1)
        self.assertEqual(len(first.frames), 7)
        self.assertEqual(last.frames, first.frames)

    def test_add_remove(self) -> None:
        """
        A sink added later sees frames from the next call on (a later
        index); a removed one sees no more; adding twice delivers once.
        """
        tap, clock, first = self.make_tap(1)
        self.play(tap, clock, 0.12)
        late = FrameList()
        tap.add_sink(late)
        tap.add_sink(late)
        tap.remove_sink(first)
        tap.remove_sink(first)
        clock.advance(0.04)
        tap.due(clock.seconds())
        self.assertEqual([f.index for f in first.frames], [0, 1, 2])
        self.assertEqual([f.index for f in late.frames], [3, 4])
        self.assertEqual(tap.stats()["sinks"], 1)

    def test_bad_parameters(self) -> None:
        """
        Negative counts and delays are refused.
        """
        self.assertRaises(ValueError, PcmTap, 0.0, -1)
        self.assertRaises(ValueError, PcmTap, 0.0, 1, delay=-0.1)
        self.assertRaises(ValueError, PcmTap, 0.0, 1, max_catch_up=0)
