# -*- test-case-name: tests.media.test_pcm,tests.media.test_relay_pcm,tests.media.test_relay_codecs -*-
"""
Linear PCM out of the relay, for streams and recordings (SPEC s5, s8, s9).

A session's L{PcmTap} takes the payloads its inbound streams receive
(decoded once per packet), absorbs jitter, and every 20 ms of wall-clock
time hands each attached L{PcmSink} one L{PcmFrame}: 160 samples per relay
stream, silence where a stream sent nothing.  Sessions without sinks have no
tap, and their hot path pays one attribute test per packet.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from aiconnect.media.g711 import DECODE_TABLES, decode

__all__ = [
    "FRAME_SAMPLES",
    "FRAME_SECONDS",
    "LATE_RUN",
    "MAX_AHEAD",
    "MAX_CATCH_UP",
    "PLAYOUT_DELAY",
    "PcmFrame",
    "PcmSink",
    "PcmTap",
]

#: Samples per frame per stream (20 ms at 8 kHz).
FRAME_SAMPLES = 160
#: Seconds per frame.
FRAME_SECONDS = 0.02


@dataclass(frozen=True, slots=True)
class PcmFrame:
    """
    One 20 ms tick of a session's audio.

    @ivar index: the frame number since the tap started (0, 1, 2 ...):
        a sink attached later sees its first frame at a later index, and
        after a stall longer than the catch-up bound the index jumps by
        the frames skipped (counted in the tap's C{skipped_frames}).
    @ivar streams: one C{array("h")} of L{FRAME_SAMPLES} signed 16-bit
        samples (native byte order, 8 kHz) per relay stream, by relay
        stream index; silence where nothing arrived.  Shared by every sink:
        never modify them.
    """

    index: int
    streams: tuple[array[int], ...]


class PcmSink(Protocol):
    """
    Takes a session's frames (a stream or recording output).
    """

    def pcm_frame(self, frame: PcmFrame) -> None:
        """
        One frame, on the reactor thread; must be quick and never raise.
        """


#: The playout delay (seconds): how late a packet may arrive and still be
#: played in place (SPEC s8: "packets reordered within 60 ms").
PLAYOUT_DELAY = 0.06
#: The most frames one L{PcmTap.due} call hands out; a reactor that lagged
#: longer skips the oldest (counted).
MAX_CATCH_UP = 10
#: How far ahead of the play point (frames) a stream's buffer reaches; a
#: packet beyond it re-anchors the stream (a timestamp jump forward).
MAX_AHEAD = 25
#: Consecutive wholly late packets that re-anchor a stream (a timestamp
#: jump backward, or a sender whose clock runs slow).
LATE_RUN = 3

_RATE = 8000
_SILENCE = bytes(2 * FRAME_SAMPLES)
#: The samples of a frame nothing arrived for, shared by every such frame
#: (frames are never modified).
_SILENT_FRAME = array("h", _SILENCE)
_JUMP_BACK = _RATE  # a packet a second or more before the play point: a jump
# What a stream's buffer holds at most, from the next frame to hand out on
# (samples): the frames ahead, and as many again for a frame clock that lags.
_LIMIT = 2 * MAX_AHEAD * FRAME_SAMPLES


class _Buffer:
    """
    One relay stream's jitter buffer: frame index -> samples, and the
    mapping from its RTP timestamps to sample positions on the tap's
    timeline (C{position = ref_pos + (ts - ref_ts)}, 32-bit wrap aware).
    """

    __slots__ = ("frames", "ssrc", "ref_ts", "ref_pos", "high_seq", "late_run")

    def __init__(self) -> None:
        self.frames: dict[int, array[int]] = {}
        self.ssrc: int | None = None
        self.ref_ts = 0
        self.ref_pos = 0
        self.high_seq = 0
        self.late_run = 0


class PcmTap:
    """
    The PCM of one media session: a jitter buffer per relay stream and a
    frame clock.

    Placement: each packet is decoded once and placed by its RTP timestamp,
    sample-accurate (10, 20, 30 ms packets alike), on a timeline of samples
    since the tap's start.  A stream's first packet (and any after a
    re-anchor) is anchored so that it ends at its arrival time, rounded up
    to a frame boundary; its successors follow by timestamp.  A packet
    arriving up to L{PLAYOUT_DELAY} after its place lands in place; a later
    one is dropped (C{late_packets}), in part when only its head was played
    already.  A new SSRC, a packet beyond the buffer (L{MAX_AHEAD} frames
    past the play point), one a second or more behind it, or L{LATE_RUN}
    wholly late packets in a row re-anchor the stream (C{reanchors}).  A
    stream's buffer never holds more than 2 * L{MAX_AHEAD} frames: when the
    frame clock lags that much, packets are dropped (C{dropped_packets})
    until it catches up.

    Frame clock: frame C{n} is due at C{start + (n + 1) * FRAME_SECONDS +
    delay}; L{due} hands out every frame due since its last call, each to
    every sink, one C{array("h")} per relay stream, silence where nothing
    arrived.  At most C{max_catch_up} frames go out per call: after a
    longer stall the oldest are skipped (C{skipped_frames}), so the indices
    jump by the frames skipped.

    Pure: no Twisted, no clock; C{now} is passed in.

    @ivar start: the tap's start time (seconds, the relay's clock).
    @ivar on_sink_error: called with a sink and the exception it raised,
        after the sink was removed.
    """

    def __init__(
        self,
        start: float,
        streams: int,
        delay: float = PLAYOUT_DELAY,
        max_catch_up: int = MAX_CATCH_UP,
        on_sink_error: Callable[[PcmSink, Exception], object] | None = None,
    ) -> None:
        """
        @param start: the time frame 0 starts at.
        @param streams: the relay streams (see L{grow}).
        @param delay: the playout delay in seconds.
        @param max_catch_up: the most frames one L{due} call hands out.
        """
        if streams < 0 or delay < 0 or max_catch_up < 1:
            raise ValueError("bad PCM tap parameters")
        self.start = start
        self.on_sink_error = on_sink_error
        self._delay = int(round(delay * _RATE))
        self._max_catch_up = max_catch_up
        self._buffers: list[_Buffer] = []
        self._sinks: list[PcmSink] = []
        self._next = 0  # the next frame to hand out
        self.frames = 0
        self.skipped_frames = 0
        self.packets = 0
        self.late_packets = 0
        self.reordered_packets = 0
        self.dropped_packets = 0
        self.reanchors = 0
        self.sink_errors = 0
        self.grow(streams)

    @property
    def streams(self) -> int:
        """
        The number of relay streams each frame carries.
        """
        return len(self._buffers)

    @property
    def sinks(self) -> tuple[PcmSink, ...]:
        """
        The attached sinks, in attach order.
        """
        return tuple(self._sinks)

    def grow(self, streams: int) -> None:
        """
        Carry C{streams} relay streams from the next frame on (a re-INVITE
        added some); never shrinks.
        """
        while len(self._buffers) < streams:
            self._buffers.append(_Buffer())

    def add_sink(self, sink: PcmSink) -> None:
        """
        Give C{sink} every frame from the next L{due} call on (once, even if
        added twice).
        """
        if sink not in self._sinks:
            self._sinks.append(sink)

    def remove_sink(self, sink: PcmSink) -> None:
        """
        Stop giving C{sink} frames; no error if it was not added.
        """
        if sink in self._sinks:
            self._sinks.remove(sink)

    # -- the hot path ----------------------------------------------------------

    def push(self, index: int, kind: str, ssrc: int, seq: int, ts: int, payload: bytes, now: float) -> None:
        """
        One accepted RTP packet of relay stream C{index}: decode it (PCMU
        and PCMA; other kinds give silence) and place it by timestamp.

        @param now: its arrival time.
        """
        tables = DECODE_TABLES.get(kind)
        if tables is None or not payload:
            return
        self.push_samples(index, ssrc, seq, ts, decode(payload, tables), now)

    def push_samples(self, index: int, ssrc: int, seq: int, ts: int, samples: array[int], now: float) -> None:
        """
        Place 8 kHz samples of relay stream C{index} by their timestamp (8
        kHz units), as L{push} places a decoded G.711 payload: the frames of
        a G.722 or Opus stream (L{aiconnect.media.decoders}).

        @param now: the arrival time of the packet they came from.
        """
        self.packets += 1
        n = len(samples)
        buf = self._buffers[index]
        if ((seq - buf.high_seq) & 0xFFFF) >= 0x8000 and buf.ssrc == ssrc:
            self.reordered_packets += 1
        else:
            buf.high_seq = seq
        arrived = int((now - self.start) * _RATE + 1e-3)
        played = self._next * FRAME_SAMPLES  # handed out already
        # The play point by the clock (the timer may be a little late).
        point = max(played, (arrived - self._delay) // FRAME_SAMPLES * FRAME_SAMPLES)
        if buf.ssrc != ssrc:
            pos = self._anchor(buf, ssrc, seq, ts, n, arrived, played)
        else:
            pos = buf.ref_pos + (((ts - buf.ref_ts) + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            if pos + n > point + MAX_AHEAD * FRAME_SAMPLES or pos < point - _JUMP_BACK:
                pos = self._anchor(buf, ssrc, seq, ts, n, arrived, played)
            elif pos + n <= played:
                buf.late_run += 1
                if buf.late_run < LATE_RUN:
                    self.late_packets += 1
                    return
                pos = self._anchor(buf, ssrc, seq, ts, n, arrived, played)
        buf.late_run = 0
        if pos + n > played + _LIMIT:
            # The frame clock lags by more than the buffer holds (L{due}
            # not called for a while): it skips ahead on its next call.
            self.dropped_packets += 1
            return
        if pos > buf.ref_pos:
            buf.ref_ts = ts
            buf.ref_pos = pos
        if pos < played:  # its head was played already
            self.late_packets += 1
            samples = samples[played - pos :]
            n = len(samples)
            pos = played
        self._place(buf.frames, pos, samples, n)

    def _anchor(self, buf: _Buffer, ssrc: int, seq: int, ts: int, n: int, arrived: int, played: int) -> int:
        # Place this packet so that it ends at its arrival time, rounded up
        # to a frame boundary (never before what was handed out), and map
        # the stream's timestamps from there.
        if buf.ssrc is not None:
            self.reanchors += 1
        pos = max(played, -((n - arrived) // FRAME_SAMPLES) * FRAME_SAMPLES)  # ceil to a frame
        buf.ssrc = ssrc
        buf.ref_ts = ts
        buf.ref_pos = pos
        buf.high_seq = seq
        buf.late_run = 0
        return pos

    @staticmethod
    def _place(frames: dict[int, array[int]], pos: int, samples: array[int], n: int) -> None:
        # Write the samples into the frames they cover (silence elsewhere).
        index, offset = divmod(pos, FRAME_SAMPLES)
        if offset == 0 and n == FRAME_SAMPLES:  # a 20 ms packet in place
            frames[index] = samples
            return
        done = 0
        while done < n:
            frame = frames.get(index)
            if frame is None:
                frame = frames[index] = array("h", _SILENCE)
            take = min(FRAME_SAMPLES - offset, n - done)
            frame[offset : offset + take] = samples[done : done + take]
            done += take
            index += 1
            offset = 0

    # -- the frame clock ---------------------------------------------------------

    def due(self, now: float) -> list[PcmFrame]:
        """
        Hand out every frame due by C{now} since the last call (at most
        C{max_catch_up}; older ones are skipped and counted), each to every
        sink.  A sink that raises is removed and counted
        (C{on_sink_error}); the others still get the frame.

        @return: the frames handed out, in order.
        """
        total = int(((now - self.start) * _RATE - self._delay + 1e-3) // FRAME_SAMPLES)
        first = self._next
        if total <= first:
            return []
        if total - first > self._max_catch_up:
            first = total - self._max_catch_up
            self.skipped_frames += first - self._next
            for buf in self._buffers:
                for stale in [i for i in buf.frames if i < first]:
                    del buf.frames[stale]
        out = []
        for index in range(first, total):
            self._next = index + 1
            streams = []
            for buf in self._buffers:
                samples = buf.frames.pop(index, None)
                streams.append(samples if samples is not None else _SILENT_FRAME)
            frame = PcmFrame(index, tuple(streams))
            self.frames += 1
            for sink in tuple(self._sinks):
                try:
                    sink.pcm_frame(frame)
                except Exception as error:
                    self._sink_failed(sink, error)
            out.append(frame)
        return out

    def _sink_failed(self, sink: PcmSink, error: Exception) -> None:
        self.remove_sink(sink)
        self.sink_errors += 1
        if self.on_sink_error is not None:
            self.on_sink_error(sink, error)

    def stats(self) -> dict[str, int]:
        """
        Counters as a plain dict: C{frames} handed out, C{skipped_frames},
        audio C{packets} placed or dropped, C{late_packets} (dropped, wholly
        or in part, for arriving after their frame went out),
        C{reordered_packets} (arrived after a later one),
        C{dropped_packets} (beyond the buffer: the frame clock lagged),
        C{reanchors},
        C{sink_errors}, and now: C{streams}, C{sinks}, C{buffered_frames}.
        """
        return {
            "streams": len(self._buffers),
            "sinks": len(self._sinks),
            "frames": self.frames,
            "skipped_frames": self.skipped_frames,
            "packets": self.packets,
            "late_packets": self.late_packets,
            "reordered_packets": self.reordered_packets,
            "dropped_packets": self.dropped_packets,
            "reanchors": self.reanchors,
            "sink_errors": self.sink_errors,
            "buffered_frames": sum(len(buf.frames) for buf in self._buffers),
        }
