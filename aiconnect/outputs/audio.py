# -*- test-case-name: tests.outputs.test_audio -*-
"""
From a session's L{PcmFrame} to the bytes an output writes: the channels a
C{tracks} value selects (SPEC s8: C{both} = 2 channels, caller first;
C{mixed}; C{caller}; C{callee}) and the sample format (C{L16} little-endian
at 8 or 16 kHz, C{PCMU}, C{PCMA}).  Streams and recordings share it.

Pure: no Twisted, no clock.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from aiconnect.media.g711 import alaw_encode, ulaw_encode
from aiconnect.media.mixer import interleave, mix, to_s16le
from aiconnect.media.pcm import FRAME_SAMPLES, PcmFrame

__all__ = [
    "ENCODINGS",
    "SILENCE",
    "TRACKS",
    "Parties",
    "channel_count",
    "encode",
    "select",
    "upsample2",
]

#: The C{tracks} values.
TRACKS = ("both", "mixed", "caller", "callee")
#: The sample formats (C{format} of a stream, C{encoding} of a recording).
ENCODINGS = ("L16", "PCMU", "PCMA")
#: One frame of silence (never modify it).
SILENCE: array[int] = array("h", bytes(2 * FRAME_SAMPLES))


@dataclass(frozen=True, slots=True)
class Parties:
    """
    Which relay streams carry the caller and the called party (as they are
    identified for forwarding: L{aiconnect.siprec.metadata.caller_and_called}
    and the stream labels), C{None} for a party no stream carries.
    """

    caller: int | None = 0
    callee: int | None = 1


def channel_count(tracks: str) -> int:
    """
    @return: 2 for C{both}, else 1.
    """
    return 2 if tracks == "both" else 1


def _party(frame: PcmFrame, index: int | None) -> array[int]:
    if index is None or not 0 <= index < len(frame.streams):
        return SILENCE
    return frame.streams[index]


def select(frame: PcmFrame, parties: Parties, tracks: str) -> list[array[int]]:
    """
    The channels C{tracks} asks for, each L{FRAME_SAMPLES} long.

    @param tracks: one of L{TRACKS}.
    @return: C{[caller, callee]} for C{both}, C{[mix]} for C{mixed} (both
        parties summed with clipping), C{[caller]} or C{[callee]}.
    @raise ValueError: for another C{tracks}.
    """
    if tracks == "both":
        return [_party(frame, parties.caller), _party(frame, parties.callee)]
    if tracks == "mixed":
        return [mix([_party(frame, parties.caller), _party(frame, parties.callee)], FRAME_SAMPLES)]
    if tracks == "caller":
        return [_party(frame, parties.caller)]
    if tracks == "callee":
        return [_party(frame, parties.callee)]
    raise ValueError("unknown tracks %r" % (tracks,))


def upsample2(samples: Sequence[int]) -> array[int]:
    """
    8 kHz to 16 kHz: each sample, then the mean of it and the next (the
    last sample is repeated at the frame's end).
    """
    n = len(samples)
    out = array("h", bytes(4 * n))
    out[0::2] = array("h", samples)
    if n:
        nxt = list(samples[1:]) + [samples[-1]]
        out[1::2] = array("h", [(a + b) >> 1 for a, b in zip(samples, nxt)])
    return out


# The last frame encoded: its channels (kept, so that their ids cannot be
# reused), encoding and rate, and its bytes.  A session's stream and
# recording encode the same frame's arrays in a row; frames are never
# modified (L{PcmFrame}), so the second gets the first's bytes.
_last: tuple[tuple[array[int], ...], str, int, bytes] = ((), "", 0, b"")


def encode(channels: Sequence[array[int]], encoding: str, rate: int = 8000) -> bytes:
    """
    One frame's bytes: channels interleaved (channel 0 first), in
    C{encoding}.  The same arrays (by identity; never modified, as frames
    are not) in the same format as the previous call give its bytes again.

    @param channels: one or two channels of equal length.
    @param encoding: one of L{ENCODINGS}.
    @param rate: 8000, or 16000 (L16 only).
    @raise ValueError: for another encoding, rate, or channel count.
    """
    global _last
    kept, kept_encoding, kept_rate, data = _last
    if (
        encoding == kept_encoding
        and rate == kept_rate
        and len(channels) == len(kept)
        and all(a is b for a, b in zip(channels, kept))
    ):
        return data
    data = _encode(channels, encoding, rate)
    _last = (tuple(channels), encoding, rate, data)
    return data


def _encode(channels: Sequence[array[int]], encoding: str, rate: int) -> bytes:
    if rate == 16000:
        if encoding != "L16":
            raise ValueError("16 kHz is L16 only")
        channels = [upsample2(c) for c in channels]
    elif rate != 8000:
        raise ValueError("sample rate must be 8000 or 16000")
    if len(channels) == 2:
        samples = interleave(channels[0], channels[1])
    elif len(channels) == 1:
        samples = channels[0]
    else:
        raise ValueError("one or two channels")
    if encoding == "L16":
        return to_s16le(samples)
    if encoding == "PCMU":
        return ulaw_encode(samples)
    if encoding == "PCMA":
        return alaw_encode(samples)
    raise ValueError("unknown encoding %r" % (encoding,))
