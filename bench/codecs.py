"""
Decode cost benchmark: microseconds of one core per 20 ms of inbound audio
for G.722 and Opus (decoded with PyAV, resampled to 8 kHz, encoded to
A-law for a forward), against G.711 (translated, or decoded for the PCM
tap).

    python bench/codecs.py                # about 10 s
    python bench/codecs.py --packets 500  # quicker

In one process, no sockets: each row runs the per-packet work of
L{aiconnect.media.decoders.PcmDecoder} (what L{InboundStream} calls for a
G.722 or Opus stream) and L{aiconnect.media.g711} on payloads the PyAV
encoders made from a 1 kHz tone, C{--packets} packets per run (cycling
through 50 distinct ones, timestamps running on), C{--runs} runs; it
prints the best and the median run, per 20 ms of audio.

Not a test: it prints a table, and docs/media.md records one run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from array import array
from collections.abc import Callable

from common import machine, use_repository

use_repository()

import av  # noqa: E402

from aiconnect.media import g711  # noqa: E402
from aiconnect.media.decoders import PcmDecoder  # noqa: E402
from tests.media.codec_helpers import encode, tone  # noqa: E402


def encode_tone() -> array[int]:
    """
    20 ms of the test tone at 8 kHz.
    """
    return tone(8000, 160)


def g711_rows(payloads: list[bytes]) -> dict[str, Callable[[int], None]]:
    """
    The G.711 baselines: PCMU -> PCMA by table, PCMU -> PCM for the tap.
    """
    table = g711.ULAW_TO_ALAW
    tables = g711.DECODE_TABLES["PCMU"]

    def translate(n: int) -> None:
        for i in range(n):
            payloads[i % 50].translate(table)

    def decode(n: int) -> None:
        for i in range(n):
            g711.decode(payloads[i % 50], tables)

    return {"G.711 PCMU -> PCMA (translate)": translate, "G.711 PCMU -> PCM (tap decode)": decode}


def decoded_row(kind: str, frame_ms: int, encode_alaw: bool) -> Callable[[int], None]:
    """
    One decoded codec: C{n} packets of C{frame_ms} through a fresh
    L{PcmDecoder}, each frame also encoded to A-law when C{encode_alaw}.
    """
    payloads = encode(kind, 50, frame_ms)
    step = frame_ms * (8 if kind == "G722" else 48)

    def run(n: int) -> None:
        decoder = PcmDecoder(kind)
        ts = 0
        for i in range(n):
            for frame in decoder.packet(kind, 1, ts, payloads[i % 50], 0):
                if encode_alaw:
                    g711.alaw_encode(frame.samples)
            ts += step

    return run


def alaw_row() -> Callable[[int], None]:
    """
    The encode step alone: 160 samples of the tone to A-law.
    """
    samples = encode_tone()

    def run(n: int) -> None:
        for _ in range(n):
            g711.alaw_encode(samples)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=2000, help="packets per run (at most 100000)")
    parser.add_argument("--runs", type=int, default=5, help="runs per row (at most 50)")
    args = parser.parse_args()
    packets = max(50, min(args.packets, 100000))
    runs = max(1, min(args.runs, 50))
    pcmu = [bytes((i * 7 + k) % 256 for k in range(160)) for i in range(50)]
    rows: list[tuple[str, Callable[[int], None], int]] = [(name, f, 20) for name, f in g711_rows(pcmu).items()]
    rows += [
        ("G.722 decode + resample", decoded_row("G722", 20, False), 20),
        ("G.722 decode + resample + A-law", decoded_row("G722", 20, True), 20),
        ("Opus 20 ms decode + resample + A-law", decoded_row("opus", 20, True), 20),
        ("Opus 60 ms decode + resample + A-law", decoded_row("opus", 60, True), 60),
        ("A-law encode alone (160 samples)", alaw_row(), 20),
    ]
    print(machine(with_model=True), "PyAV", av.__version__)
    print(f"{packets} packets per run, {runs} runs; microseconds per 20 ms of audio")
    print(f"| {'path':<38} | best µs | median µs |")
    print(f"|{'-' * 40}|---------|-----------|")
    for name, run, ms in rows:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            run(packets)
            times.append((time.perf_counter() - start) / (packets * ms / 20) * 1e6)
        print(f"| {name:<38} | {min(times):7.1f} | {statistics.median(times):9.1f} |")


if __name__ == "__main__":
    main()
