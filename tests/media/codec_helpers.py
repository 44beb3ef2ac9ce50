"""
Test material for G.722 and Opus: a known tone encoded with PyAV's
encoders, and the reference PCM that PyAV's own decoder and resampler give
for the same packets (what L{aiconnect.media.decoders} must reproduce).
"""

from __future__ import annotations

import math
from array import array
from fractions import Fraction

import av

#: The test tone (Hz) and its amplitude.
TONE = 1000
AMPLITUDE = 8000


def tone(rate: int, n: int, start: int = 0) -> array[int]:
    """
    C{n} samples at C{rate} Hz of the L{TONE} sine, from sample C{start}.
    """
    return array("h", [int(AMPLITUDE * math.sin(2 * math.pi * TONE * (start + i) / rate)) for i in range(n)])


def encode(kind: str, packets: int, frame_ms: int = 20, layout: str = "mono") -> list[bytes]:
    """
    C{packets} RTP payloads of the tone: G.722 (16 kHz, 20 ms) or Opus
    (48 kHz, libopus, C{frame_ms} per packet; C{layout} C{"stereo"}: the
    tone on both channels).
    """
    if kind == "G722":
        name, rate, options = "g722", 16000, {}
    else:
        name, rate, options = "libopus", 48000, {"frame_duration": str(frame_ms)}
    frame = rate * frame_ms // 1000
    ctx = av.CodecContext.create(name, "w")
    ctx.sample_rate = rate
    ctx.layout = layout
    ctx.format = "s16"
    ctx.options = options
    if name == "libopus":
        ctx.bit_rate = 32000
    out: list[bytes] = []
    k = 0
    while len(out) < packets:
        samples = av.AudioFrame(format="s16", layout=layout, samples=frame)
        mono = tone(rate, frame, k * frame)
        if layout == "stereo":
            both = array("h", bytes(4 * frame))
            both[0::2] = both[1::2] = mono
            mono = both
        samples.planes[0].update(mono.tobytes())
        samples.sample_rate = rate
        samples.pts = k * frame
        samples.time_base = Fraction(1, rate)
        out.extend(bytes(p) for p in ctx.encode(samples))
        k += 1
    return out[:packets]


def reference_pcm(kind: str, payloads: list[bytes]) -> array[int]:
    """
    The 8 kHz samples PyAV's decoder and resampler give for C{payloads},
    decoded in order by a fresh decoder.
    """
    name, rate = ("g722", 16000) if kind == "G722" else ("opus", 48000)
    ctx = av.CodecContext.create(name, "r")
    ctx.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=8000)
    out = array("h")
    for payload in payloads:
        for frame in ctx.decode(av.Packet(payload)):
            for resampled in resampler.resample(frame):
                out.frombytes(bytes(resampled.planes[0])[: 2 * resampled.samples])
    return out


def zero_crossings(samples: array[int]) -> int:
    """
    Sign changes in C{samples} (a 1 kHz tone at 8 kHz: 2 per 8 samples).
    """
    return sum(1 for a, b in zip(samples, samples[1:]) if (a < 0) != (b < 0))
