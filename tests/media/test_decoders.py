"""
Tests for L{aiconnect.media.decoders}: G.722 and Opus payloads (made by
PyAV's encoders from a known tone) decoded to 20 ms frames of 8 kHz PCM,
sample for sample what PyAV's decoder and resampler give, in the stream's
own 8 kHz numbering; what the wire may carry never raises.
"""

from __future__ import annotations

from array import array

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.media.decoders import FRAME, MAX_PAYLOAD, PcmDecoder, opus_samples
from tests.media.codec_helpers import encode, reference_pcm, zero_crossings


def decode_all(decoder: PcmDecoder, payloads: list[bytes], step: int, ts: int = 1000) -> list:
    """
    Feed C{payloads} (timestamps C{step} apart from C{ts}, SSRC 5) and
    return every packet handed on.
    """
    out = []
    for payload in payloads:
        out.extend(decoder.packet(decoder.kind, 5, ts, payload, 0))
        ts += step
    return out


def joined(frames: list) -> array[int]:
    """
    The samples of C{frames}, end to end.
    """
    out = array("h")
    for frame in frames:
        out.extend(frame.samples)
    return out


class DecodeTests(SynchronousTestCase):
    """
    Decoding and framing of valid packets.
    """

    def check(self, kind: str, frame_ms: int, step: int, packets: int) -> None:
        payloads = encode(kind, packets, frame_ms)
        frames = decode_all(PcmDecoder(kind), payloads, step)
        reference = reference_pcm(kind, payloads)
        whole = len(reference) // FRAME * FRAME
        self.assertEqual(joined(frames), reference[:whole])
        self.assertEqual({len(f.samples) for f in frames}, {FRAME})
        self.assertEqual([f.seq for f in frames], list(range(1, len(frames) + 1)))
        first = 1000 * 8000 // (48000 if kind == "opus" else 8000)
        self.assertEqual([f.ts for f in frames], [first + FRAME * i for i in range(len(frames))])
        self.assertEqual({f.kind for f in frames}, {"L16"})
        # The tone survives: 1 kHz at 8 kHz crosses zero twice per 8 samples.
        steady = joined(frames)[FRAME:]
        self.assertTrue(abs(zero_crossings(steady) / len(steady) - 0.25) < 0.01)

    def test_g722(self) -> None:
        """
        G.722 (16 kHz, RTP clock 8000): 20 ms packets become 160-sample
        frames equal to PyAV's decode+resample; timestamps count on.
        """
        self.check("G722", 20, 160, 10)

    def test_opus_20ms(self) -> None:
        """
        Opus 20 ms packets (RTP clock 48000): one frame each, timestamps in
        8 kHz units.
        """
        self.check("opus", 20, 960, 10)

    def test_opus_other_durations(self) -> None:
        """
        Opus packets of 10, 40 and 60 ms are buffered into 20 ms frames with
        continuous 8 kHz timestamps.
        """
        for ms in (10, 40, 60):
            self.check("opus", ms, 48 * ms, 8)

    def test_opus_stereo(self) -> None:
        """
        Stereo Opus is down-mixed to mono as PyAV's resampler does, also
        when the sender switches between mono and stereo mid-stream.
        """
        payloads = encode("opus", 4) + encode("opus", 4, layout="stereo") + encode("opus", 4)
        frames = decode_all(PcmDecoder("opus"), payloads, 960)
        reference = reference_pcm("opus", payloads)
        self.assertEqual(joined(frames), reference[: len(reference) // FRAME * FRAME])
        self.assertEqual(len(frames), 11)

    def test_gap_restarts_frames(self) -> None:
        """
        A lost packet (a timestamp jump): the partial frame goes out
        completed with silence, and the frames go on at the new timestamp;
        a late packet is dropped.
        """
        payloads = encode("G722", 6)
        reference = reference_pcm("G722", payloads[:3] + payloads[4:5])
        decoder = PcmDecoder("G722")
        frames = decode_all(decoder, payloads[:3], 160, ts=0)
        self.assertEqual([f.ts for f in frames], [0, 160])
        lost = decoder.packet("G722", 5, 4 * 160, payloads[4], 0)  # payload 3 lost
        self.assertEqual(decoder.gaps, 1)
        self.assertEqual([f.ts for f in lost], [320, 640])
        tail = reference[320:464]  # what the third packet left pending (144 samples)
        self.assertEqual(lost[0].samples, tail + array("h", bytes(2 * (FRAME - len(tail)))))
        self.assertEqual(lost[1].samples, reference[464:624])
        self.assertEqual([f.seq for f in frames + lost], [1, 2, 3, 4])
        self.assertEqual(decoder.packet("G722", 5, 3 * 160, payloads[3], 0), [])
        self.assertEqual(decoder.late, 1)

    def test_events_renumbered(self) -> None:
        """
        A telephone-event packet of the stream gets the next sequence number
        and its timestamp in 8 kHz units; on Opus its duration is converted
        from 48 kHz units too.
        """
        decoder = PcmDecoder("opus")
        frames = decode_all(decoder, encode("opus", 2), 960, ts=48000)
        event = bytes([5, 0x0A]) + (960).to_bytes(2, "big")
        (relayed,) = decoder.packet("telephone-event", 5, 48000 + 960, event, 0x80)
        self.assertEqual(relayed.seq, len(frames) + 1)
        self.assertEqual(relayed.ts, 8000 + 160)
        self.assertEqual(relayed.payload, bytes([5, 0x0A, 0, 160]))
        self.assertEqual(relayed.marker, 0x80)
        self.assertIsNone(relayed.samples)


class HostilePayloadTests(SynchronousTestCase):
    """
    Garbage from the wire is dropped and counted, never raised.
    """

    def test_garbage_opus(self) -> None:
        """
        Undecodable Opus packets (empty, a cut TOC, a frame FFmpeg refuses)
        are counted as decode errors; 63 frames (over 120 ms) as oversize.
        """
        decoder = PcmDecoder("opus")
        for n, payload in enumerate([b"", b"\xff", b"\x7b\x82\xff", b"\xff\xff\xfe" * 10]):
            self.assertEqual(decoder.packet("opus", 5, n * 960, payload, 0), [])
        self.assertEqual((decoder.decode_errors, decoder.oversize), (3, 1))
        self.assertEqual(decoder.frames, 0)

    def test_caps(self) -> None:
        """
        A payload over MAX_PAYLOAD, and an Opus packet over 120 ms (code 3,
        48 frames of 20 ms), are refused before decoding.
        """
        self.assertEqual(opus_samples(bytes([0x08 | 3, 48])), 48 * 960)
        self.assertEqual(opus_samples(bytes([0x78])), 960)
        self.assertIsNone(opus_samples(bytes([0x03])))
        decoder = PcmDecoder("opus")
        self.assertEqual(decoder.packet("opus", 5, 0, bytes([0x08 | 3, 48]) + bytes(100), 0), [])
        g722 = PcmDecoder("G722")
        self.assertEqual(g722.packet("G722", 5, 0, bytes(MAX_PAYLOAD + 1), 0), [])
        self.assertEqual((decoder.oversize, g722.oversize), (1, 1))

    def test_unknown_kind(self) -> None:
        """
        Only G.722 and Opus have decoders.
        """
        self.assertRaises(ValueError, PcmDecoder, "PCMA")
