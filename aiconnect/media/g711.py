# -*- test-case-name: tests.media.test_g711 -*-
"""
G.711 (ITU-T G.711): μ-law ↔ A-law transcoding tables and linear PCM.

Pure, and without C{audioop} (deprecated in 3.11, removed in 3.13).

Codes are the octets as carried in RTP (payload type 0 PCMU and 8 PCMA),
i.e. with the usual bit inversions applied.  The transcoding tables are the
I{direct} tables of G.711 (the 128-entry C{_u2a}/C{_a2u} tables of Sun's
C{g711.c}, "copied from CCITT G.711", with the 1994 correction), not a decode
followed by a re-encode: the two differ on 32 μ-law and 32 A-law codes.

Use them as C{payload.translate(ULAW_TO_ALAW)}.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Iterable
from functools import cache

__all__ = [
    "DECODE_TABLES",
    "decode",
    "ALAW_TO_LINEAR",
    "ALAW_TO_ULAW",
    "ULAW_TO_ALAW",
    "ULAW_TO_LINEAR",
    "alaw_decode",
    "alaw_encode",
    "linear_to_alaw",
    "linear_to_ulaw",
    "transcode",
    "ulaw_decode",
    "ulaw_encode",
]

# Sun g711.c _u2a[] ("copy from CCITT G.711 specifications"), as corrected
# 1994-12-30 (_u2a[80] is 80, not 81).
_U2A = (
    1, 1, 2, 2, 3, 3, 4, 4,
    5, 5, 6, 6, 7, 7, 8, 8,
    9, 10, 11, 12, 13, 14, 15, 16,
    17, 18, 19, 20, 21, 22, 23, 24,
    25, 27, 29, 31, 33, 34, 35, 36,
    37, 38, 39, 40, 41, 42, 43, 44,
    46, 48, 49, 50, 51, 52, 53, 54,
    55, 56, 57, 58, 59, 60, 61, 62,
    64, 65, 66, 67, 68, 69, 70, 71,
    72, 73, 74, 75, 76, 77, 78, 79,
    80, 82, 83, 84, 85, 86, 87, 88,
    89, 90, 91, 92, 93, 94, 95, 96,
    97, 98, 99, 100, 101, 102, 103, 104,
    105, 106, 107, 108, 109, 110, 111, 112,
    113, 114, 115, 116, 117, 118, 119, 120,
    121, 122, 123, 124, 125, 126, 127, 128,
)  # fmt: skip

# Sun g711.c _a2u[], as corrected 1994-12-30 (_a2u[79] is 80, not 79).
_A2U = (
    1, 3, 5, 7, 9, 11, 13, 15,
    16, 17, 18, 19, 20, 21, 22, 23,
    24, 25, 26, 27, 28, 29, 30, 31,
    32, 32, 33, 33, 34, 34, 35, 35,
    36, 37, 38, 39, 40, 41, 42, 43,
    44, 45, 46, 47, 48, 48, 49, 49,
    50, 51, 52, 53, 54, 55, 56, 57,
    58, 59, 60, 61, 62, 63, 64, 64,
    65, 66, 67, 68, 69, 70, 71, 72,
    73, 74, 75, 76, 77, 78, 79, 80,
    80, 81, 82, 83, 84, 85, 86, 87,
    88, 89, 90, 91, 92, 93, 94, 95,
    96, 97, 98, 99, 100, 101, 102, 103,
    104, 105, 106, 107, 108, 109, 110, 111,
    112, 113, 114, 115, 116, 117, 118, 119,
    120, 121, 122, 123, 124, 125, 126, 127,
)  # fmt: skip


def _ulaw2alaw(u: int) -> int:
    # g711.c ulaw2alaw(): sign handling around the 128-entry table.
    if u & 0x80:
        return 0xD5 ^ (_U2A[0xFF ^ u] - 1)
    return 0x55 ^ (_U2A[0x7F ^ u] - 1)


def _alaw2ulaw(a: int) -> int:
    # g711.c alaw2ulaw().
    if a & 0x80:
        return 0xFF ^ _A2U[a ^ 0xD5]
    return 0x7F ^ _A2U[a ^ 0x55]


#: 256-octet C{bytes.translate} table: PCMU code -> PCMA code.
ULAW_TO_ALAW: bytes = bytes(_ulaw2alaw(c) for c in range(256))
#: 256-octet C{bytes.translate} table: PCMA code -> PCMU code.
ALAW_TO_ULAW: bytes = bytes(_alaw2ulaw(c) for c in range(256))


def _ulaw2linear(u: int) -> int:
    # g711.c ulaw2linear(), 16-bit scaling (range +-32124).
    u = ~u & 0xFF
    t = ((u & 0x0F) << 3) + 0x84
    t <<= (u & 0x70) >> 4
    return 0x84 - t if u & 0x80 else t - 0x84


def _alaw2linear(a: int) -> int:
    # g711.c alaw2linear(), 16-bit scaling (range +-32256).
    a ^= 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


#: PCMU code -> signed 16-bit linear sample.
ULAW_TO_LINEAR: tuple[int, ...] = tuple(_ulaw2linear(c) for c in range(256))
#: PCMA code -> signed 16-bit linear sample.
ALAW_TO_LINEAR: tuple[int, ...] = tuple(_alaw2linear(c) for c in range(256))

def _segment(value: int, table: tuple[int, ...]) -> int:
    for i, end in enumerate(table):
        if value <= end:
            return i
    return len(table)


def linear_to_ulaw(sample: int) -> int:
    """
    Encode one signed 16-bit sample as a PCMU code (g711.c linear2ulaw()).

    @param sample: clipped to [-32768, 32767] first.
    """
    sample = max(-32768, min(32767, sample)) >> 2  # 14-bit magnitude
    if sample < 0:
        sample = -sample
        mask = 0x7F
    else:
        mask = 0xFF
    sample = min(sample, 8159) + 0x21  # clip and bias (33 in 14-bit units)
    seg = _segment(sample, (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF))
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((sample >> (seg + 1)) & 0x0F)) ^ mask


def linear_to_alaw(sample: int) -> int:
    """
    Encode one signed 16-bit sample as a PCMA code (g711.c linear2alaw()).

    @param sample: clipped to [-32768, 32767] first.
    """
    sample = max(-32768, min(32767, sample)) >> 3  # 13-bit
    if sample >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        sample = -sample - 1
    seg = _segment(sample, (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF))
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    if seg < 2:
        aval |= (sample >> 1) & 0x0F
    else:
        aval |= (sample >> seg) & 0x0F
    return aval ^ mask


@cache
def _encode_table(encoder: Callable[[int], int]) -> bytes:
    # A 64 Ki-entry table indexed by the sample's two's complement
    # (sample & 0xFFFF): one lookup per sample instead of a segment search.
    # Built on first use (about 0.1 s), so importing the module stays cheap.
    return bytes(encoder(s - 65536 if s >= 32768 else s) for s in range(65536))


def _byte_tables(linear: tuple[int, ...]) -> tuple[bytes, bytes]:
    # The first and second octet, in native order, of each code's sample:
    # two bytes.translate calls and two slice assignments decode a payload
    # at C speed (about 10 times faster than a table lookup per sample).
    low = bytes(v & 0xFF for v in linear)
    high = bytes((v >> 8) & 0xFF for v in linear)
    return (low, high) if sys.byteorder == "little" else (high, low)


#: Codec -> the octet tables of L{decode}.
DECODE_TABLES = {"PCMU": _byte_tables(ULAW_TO_LINEAR), "PCMA": _byte_tables(ALAW_TO_LINEAR)}


def decode(payload: bytes, tables: tuple[bytes, bytes]) -> array[int]:
    """
    Decode a G.711 payload to signed 16-bit linear samples (native byte
    order) through the octet tables of its codec (L{DECODE_TABLES}).
    """
    first, second = tables
    raw = bytearray(2 * len(payload))
    raw[0::2] = payload.translate(first)
    raw[1::2] = payload.translate(second)
    samples = array("h")
    samples.frombytes(raw)
    return samples


def ulaw_decode(payload: bytes) -> array[int]:
    """
    Decode PCMU to signed 16-bit linear samples (native byte order).
    """
    return decode(payload, DECODE_TABLES["PCMU"])


def alaw_decode(payload: bytes) -> array[int]:
    """
    Decode PCMA to signed 16-bit linear samples (native byte order).
    """
    return decode(payload, DECODE_TABLES["PCMA"])


def ulaw_encode(samples: Iterable[int]) -> bytes:
    """
    Encode signed 16-bit samples (in range) as PCMU.
    """
    table = _encode_table(linear_to_ulaw)
    return bytes([table[s & 0xFFFF] for s in samples])


def alaw_encode(samples: Iterable[int]) -> bytes:
    """
    Encode signed 16-bit samples (in range) as PCMA.
    """
    table = _encode_table(linear_to_alaw)
    return bytes([table[s & 0xFFFF] for s in samples])


_TRANSCODE = {
    ("PCMU", "PCMA"): ULAW_TO_ALAW,
    ("PCMA", "PCMU"): ALAW_TO_ULAW,
}


def transcode(payload: bytes, source: str, target: str) -> bytes:
    """
    Convert a G.711 payload between C{"PCMU"} and C{"PCMA"} with the direct
    tables; the same codec returns the payload unchanged.

    @raise ValueError: for any other codec name.
    """
    if source == target and source in ("PCMU", "PCMA"):
        return payload
    try:
        return payload.translate(_TRANSCODE[source, target])
    except KeyError:
        raise ValueError(f"cannot transcode {source} to {target}") from None

