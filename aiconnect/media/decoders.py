# -*- test-case-name: tests.media.test_decoders,tests.media.test_relay_codecs -*-
"""
Inbound G.722 and Opus: RTP payloads decoded to 8 kHz linear PCM in 20 ms
frames (SPEC s5, docs/media.md "Codecs").

An inbound stream whose SRC sends G.722 (RFC 3551 s4.5.2: sampled at
16 kHz, RTP clock 8000) or Opus (RFC 7587: RTP clock 48000, 2.5 to 120 ms
per packet) has one L{PcmDecoder}.  It decodes each packet with FFmpeg's
decoders through PyAV (C{av}), resamples to 8 kHz mono with
C{av.AudioResampler} (libswresample), and cuts the result into 160-sample
frames with timestamps in 8 kHz units: the PCM tap and the forwards (which
encode each frame to their G.711) see an 8 kHz stream as if the SRC had sent
20 ms G.711 packets.  A packet's timestamp maps to 8 kHz units from the last
audio packet's (so also C{telephone-event} and C{CN} packets of the stream
land in the same numbering, an Opus stream's event durations converted
too); each frame and relayed packet gets the next
sequence number of the stream's own numbering.

The decoders are stateful: one per inbound stream, replaced when the
stream's codec changes.  Untrusted input: a payload over L{MAX_PAYLOAD}
octets, an Opus packet over 120 ms (its TOC octet, RFC 6716 s3.1) or one the
decoder rejects is dropped and counted, never raised.  A packet that is
late (its timestamp before the next expected one) is dropped: a stateful
decoder cannot take it back.  After a gap (lost packets, a timestamp jump)
the partial frame goes out completed with silence, and the frames go on
from the new timestamp.

Pure core: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

from array import array
from typing import Any, NamedTuple

import av

__all__ = [
    "DECODED_KINDS",
    "FRAME",
    "MAX_OPUS_SAMPLES",
    "MAX_PAYLOAD",
    "DecodedPacket",
    "PcmDecoder",
    "opus_samples",
]

#: Kind -> (FFmpeg decoder, RTP clock rate, the decoder's sample rate).
DECODED_KINDS: dict[str, tuple[str, int, int]] = {
    "G722": ("g722", 8000, 16000),
    "opus": ("opus", 48000, 48000),
}
#: Samples per frame handed on (20 ms at 8 kHz).
FRAME = 160
#: The largest payload decoded (octets): 120 ms of 64 kbit/s G.722 is 960;
#: an Opus packet of that size is 64 kbit/s for 120 ms too.
MAX_PAYLOAD = 1000
#: The longest Opus packet (RFC 6716 s3.2.5: 120 ms), in 48 kHz samples.
MAX_OPUS_SAMPLES = 5760
_RATE = 8000
_LATE_JUMP = 8000  # a timestamp a second or more behind: a jump, not a late packet
_MASK = 0xFFFFFFFF

# Opus TOC configuration (RFC 6716 s3.1, Table 2) -> frame size in 48 kHz
# samples: SILK 10/20/40/60 ms, hybrid 10/20 ms, CELT 2.5/5/10/20 ms.
_OPUS_FRAME = (
    (480, 960, 1920, 2880) * 3 + (480, 960) * 2 + (120, 240, 480, 960) * 4
)


def opus_samples(payload: bytes) -> int | None:
    """
    The duration of an Opus packet in 48 kHz samples from its TOC octet and
    frame count (RFC 6716 s3.1, s3.2.5), or C{None} when it is malformed.
    """
    if not payload:
        return None
    toc = payload[0]
    frame = _OPUS_FRAME[toc >> 3]
    code = toc & 0x03
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    else:
        if len(payload) < 2:
            return None
        count = payload[1] & 0x3F
        if count == 0:
            return None
    return frame * count


class DecodedPacket(NamedTuple):
    """
    What one inbound packet becomes: a 20 ms audio frame or a relayed
    packet, in the stream's 8 kHz numbering.

    @ivar seq: the sequence number in the stream's own numbering.
    @ivar ts: the timestamp in 8 kHz units.
    @ivar kind: C{"L16"} for an audio frame, else the relayed packet's kind
        (C{telephone-event}, C{CN}).
    @ivar payload: the relayed packet's payload (C{b""} for a frame).
    @ivar samples: the frame's 160 samples, C{None} for a relayed packet.
    @ivar marker: the RTP marker bit (0 or 0x80).
    """

    seq: int
    ts: int
    kind: str
    payload: bytes
    samples: array[int] | None
    marker: int


class PcmDecoder:
    """
    One inbound stream's decoder: RTP payloads of one codec to 20 ms frames
    of 8 kHz PCM, with that stream's 8 kHz numbering.

    @ivar kind: C{"G722"} or C{"opus"}.
    @ivar frames: frames handed on.
    @ivar decode_errors: packets the decoder rejected (dropped).
    @ivar oversize: packets over L{MAX_PAYLOAD} octets or 120 ms (dropped).
    @ivar late: packets before the next expected timestamp (dropped).
    @ivar gaps: timestamp jumps forward (lost packets): the partial frame
        went out completed with silence and the frames start again at the
        new timestamp.
    """

    def __init__(self, kind: str) -> None:
        """
        @param kind: a key of L{DECODED_KINDS}.
        @raise ValueError: for another kind.
        """
        if kind not in DECODED_KINDS:
            raise ValueError(f"no decoder for {kind!r}")
        name, clock, rate = DECODED_KINDS[kind]
        self.kind = kind
        self._ratio = clock // _RATE
        self._rate = rate
        self._codec: Any = av.CodecContext.create(name, "r")
        self._codec.sample_rate = rate
        self._resampler: Any = av.AudioResampler(format="s16", layout="mono", rate=_RATE)
        self._ssrc: int | None = None
        self._base_in = 0  # the last audio packet's timestamp (its clock)
        self._base8 = 0  # ... in 8 kHz units
        self._expected = 0  # the next audio timestamp expected (8 kHz units)
        self._pending = array("h")  # decoded samples not yet in a frame
        self._pending_ts = 0  # the 8 kHz timestamp of _pending[0]
        self._seq = 0  # the last sequence number handed out
        self.frames = 0
        self.decode_errors = 0
        self.oversize = 0
        self.late = 0
        self.gaps = 0

    def to_8k(self, ts: int) -> int:
        """
        An RTP timestamp of this stream in 8 kHz units (from the last audio
        packet's; within 2**31 of it).
        """
        delta = ((ts - self._base_in + 0x80000000) & _MASK) - 0x80000000
        return (self._base8 + delta // self._ratio) & _MASK

    def packet(self, kind: str, ssrc: int, ts: int, payload: bytes, marker: int) -> list[DecodedPacket]:
        """
        One accepted inbound packet: an audio packet becomes the frames it
        completes (none, one or several), any other kind one relayed
        packet.  Never raises on what the wire carries.

        @param kind: the packet's kind in the stream's payload map.
        @param marker: its RTP marker bit (0 or 0x80).
        """
        if ssrc != self._ssrc:
            # A new source: its own numbering from here, no partial frame.
            self._ssrc = ssrc
            self._base_in = ts
            self._base8 = self._expected = self._pending_ts = ts // self._ratio
            del self._pending[:]
        if kind != self.kind:
            self._seq = (self._seq + 1) & 0xFFFF
            if kind == "telephone-event" and self._ratio != 1 and len(payload) >= 4:
                # RFC 4733 s2.5.1.5: the duration is in the stream's clock.
                duration = int.from_bytes(payload[2:4], "big") // self._ratio
                payload = payload[:2] + duration.to_bytes(2, "big") + payload[4:]
            return [DecodedPacket(self._seq, self.to_8k(ts), kind, payload, None, marker)]
        ts8 = self.to_8k(ts)
        ahead = (ts8 - self._expected) & _MASK
        if ahead >= 0x80000000 and 0x100000000 - ahead < _LATE_JUMP:
            self.late += 1
            return []
        samples = self._decode(payload)
        if samples is None:
            return []
        self._base_in, self._base8 = ts, ts8
        pending = self._pending
        out = []
        if ahead:  # lost packets, or a jump: start the frames again here
            self.gaps += 1
            start = ts8
            if pending:  # the audio before the gap, completed with silence
                pending.frombytes(bytes(2 * (FRAME - len(pending))))
                out.append(self._frame(0))
                if (ts8 - self._pending_ts) & _MASK >= 0x80000000:
                    start = self._pending_ts  # never back over that frame
            self._pending_ts = start
        self._expected = (ts8 + samples[1]) & _MASK
        pending.extend(samples[0])
        while len(pending) >= FRAME:
            out.append(self._frame(marker))
            marker = 0
        self.frames += len(out)
        return out

    def _frame(self, marker: int) -> DecodedPacket:
        # The next frame out of the pending samples.
        pending = self._pending
        self._seq = (self._seq + 1) & 0xFFFF
        frame = DecodedPacket(self._seq, self._pending_ts, "L16", b"", pending[:FRAME], marker)
        del pending[:FRAME]
        self._pending_ts = (self._pending_ts + FRAME) & _MASK
        return frame

    def _decode(self, payload: bytes) -> tuple[array[int], int] | None:
        # Decode and resample one payload: (8 kHz samples, its duration in
        # 8 kHz units), or None (counted) when it is refused.
        if len(payload) > MAX_PAYLOAD:
            self.oversize += 1
            return None
        if self.kind == "opus":
            duration = opus_samples(payload)
            if duration is None:
                self.decode_errors += 1
                return None
            if duration > MAX_OPUS_SAMPLES:
                self.oversize += 1
                return None
        out = array("h")
        duration8 = 0
        try:
            for frame in self._codec.decode(av.Packet(payload)):
                duration8 += frame.samples * _RATE // frame.sample_rate
                for resampled in self._resampler.resample(frame):
                    out.frombytes(bytes(resampled.planes[0])[: 2 * resampled.samples])
        except (av.FFmpegError, ValueError, MemoryError):
            self.decode_errors += 1
            return None
        if not duration8:
            self.decode_errors += 1
            return None
        return out, duration8

    def stats(self) -> dict[str, int | str]:
        """
        The decoder's counters as a plain dict.
        """
        return {
            "codec": self.kind,
            "frames": self.frames,
            "decode_errors": self.decode_errors,
            "oversize": self.oversize,
            "late": self.late,
            "gaps": self.gaps,
        }
