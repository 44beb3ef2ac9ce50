# -*- test-case-name: tests.media.test_mixer -*-
"""
Linear PCM for streaming and recording: decode G.711 payloads, mix parties.

Pure (no Twisted, no clock), and without numpy: a 20 ms frame is 160
samples, and plain Python over that is a few microseconds, which is cheap
enough once per frame per call (never per relayed packet in the relay's hot
path).

Samples are signed 16-bit values held in C{array("h")} in native byte order;
L{to_s16le} gives the little-endian bytes most consumers want.
"""

from __future__ import annotations

import operator
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from aiconnect.media.g711 import DECODE_TABLES
from aiconnect.media.g711 import decode as g711_decode

__all__ = [
    "MixedFrame",
    "Mixer",
    "decode",
    "interleave",
    "mix",
    "to_s16le",
]

def decode(payload: bytes, codec: str) -> array[int]:
    """
    Decode a G.711 payload to linear 16-bit samples.

    @param codec: C{"PCMU"} or C{"PCMA"}.
    @raise ValueError: for another codec.
    """
    try:
        tables = DECODE_TABLES[codec]
    except KeyError:
        raise ValueError(f"cannot decode {codec!r}") from None
    return g711_decode(payload, tables)


def _clip(value: int) -> int:
    if value > 32767:
        return 32767
    if value < -32768:
        return -32768
    return value


@cache
def _clip_table() -> array[int]:
    # The sum of two int16 samples is in [-65536, 65534]; index the table
    # with it directly (negative sums wrap to the upper half, as Python
    # indexing does), 256 KiB, built on first use.
    return array(
        "h", (_clip(i if i < 65536 else i - 131072) for i in range(131072))
    )


def mix(frames: Sequence[Sequence[int]], length: int | None = None) -> array[int]:
    """
    Sum frames sample by sample, clipping to the 16-bit range.

    @param frames: one sequence of samples per party; shorter ones are
        padded with silence, longer ones cut.
    @param length: the output length; default the longest frame.
    @return: the mixed mono frame.
    """
    if length is None:
        length = max((len(f) for f in frames), default=0)
    padded = []
    for frame in frames:
        frame = array("h", frame[:length])
        if len(frame) < length:
            frame.extend([0] * (length - len(frame)))
        padded.append(frame)
    if not padded:
        return array("h", [0] * length)
    if len(padded) == 1:
        return padded[0]
    sums = map(operator.add, padded[0], padded[1])
    if len(padded) == 2:
        return array("h", map(_clip_table().__getitem__, sums))
    for frame in padded[2:]:
        sums = map(operator.add, sums, frame)
    return array("h", map(_clip, sums))


def interleave(left: Sequence[int], right: Sequence[int]) -> array[int]:
    """
    Interleave two mono frames into one stereo frame (L R L R ...).

    @raise ValueError: when the frames differ in length.
    """
    if len(left) != len(right):
        raise ValueError("stereo channels differ in length")
    out = array("h", bytes(4 * len(left)))
    out[0::2] = array("h", left)
    out[1::2] = array("h", right)
    return out


def to_s16le(samples: array[int]) -> bytes:
    """
    Serialize samples as signed 16-bit little-endian PCM.
    """
    if sys.byteorder == "little":
        return samples.tobytes()
    swapped = array("h", samples)
    swapped.byteswap()
    return swapped.tobytes()


@dataclass(frozen=True, slots=True)
class MixedFrame:
    """
    One frame of every party, and the mixes.

    @ivar parties: one mono frame per party, in party order.
    @ivar mono: all parties summed with clipping.
    @ivar stereo: interleaved, party 0 on the left and the mix of the other
        parties on the right (for one party, the right is silence).
    """

    parties: tuple[array[int], ...]
    mono: array[int]
    stereo: array[int]


class Mixer:
    """
    Collects decoded audio per party and cuts it into aligned frames.

    The adapter that owns a clock decides when a frame is due: L{pull}
    returns a frame as soon as every party has one buffered, and
    C{pull(force=True)} pads the parties that fell behind with silence (a
    party that sent nothing for 20 ms).

    Each party's buffer is bounded to C{max_frames} frames; older audio is
    discarded first, so a party that runs ahead cannot grow memory.
    """

    def __init__(self, parties: int, frame_samples: int = 160, max_frames: int = 10) -> None:
        """
        @param parties: the number of parties (inbound streams).
        @param frame_samples: samples per frame (160 = 20 ms at 8 kHz).
        @param max_frames: the buffer bound per party, in frames.
        """
        if parties < 1:
            raise ValueError("a mixer needs at least one party")
        self.frame_samples = frame_samples
        self._limit = frame_samples * max_frames
        self._buffers = [array("h") for _ in range(parties)]
        self.dropped_samples = 0

    def push(self, party: int, payload: bytes, codec: str) -> None:
        """
        Append one G.711 payload to a party's buffer.

        @raise ValueError: for an unknown codec.
        @raise IndexError: for an unknown party.
        """
        buf = self._buffers[party]
        buf.extend(decode(payload, codec))
        excess = len(buf) - self._limit
        if excess > 0:
            del buf[:excess]
            self.dropped_samples += excess

    def pull(self, force: bool = False) -> MixedFrame | None:
        """
        Take the next frame.

        @param force: emit even when some parties are short, padding with
            silence; when no party has any audio, return C{None}.
        @return: the frame, or C{None} when not every party has a full frame
            buffered (and C{force} is false).
        """
        n = self.frame_samples
        lengths = [len(b) for b in self._buffers]
        if not force and min(lengths) < n:
            return None
        if force and max(lengths) == 0:
            return None
        silence = bytes(2 * n)
        frames = []
        for buf in self._buffers:
            frame = buf[:n]
            del buf[:n]
            if len(frame) < n:
                frame.frombytes(silence[: 2 * (n - len(frame))])
            frames.append(frame)
        mono = mix(frames, n)
        right = mix(frames[1:], n) if len(frames) > 1 else array("h", silence)
        return MixedFrame(tuple(frames), mono, interleave(frames[0], right))
