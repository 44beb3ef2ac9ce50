# -*- test-case-name: tests.media.test_pcm -*-
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
from dataclasses import dataclass
from typing import Protocol

__all__ = ["FRAME_SAMPLES", "FRAME_SECONDS", "PcmFrame", "PcmSink"]

#: Samples per frame per stream (20 ms at 8 kHz).
FRAME_SAMPLES = 160
#: Seconds per frame.
FRAME_SECONDS = 0.02


@dataclass(frozen=True, slots=True)
class PcmFrame:
    """
    One 20 ms tick of a session's audio.

    @ivar index: the frame number since the tap started, consecutive
        (0, 1, 2 ...): a sink attached later sees its first frame at a
        later index.
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
