"""
Tests for L{aiconnect.media.mixer}.
"""

from __future__ import annotations

import sys
from array import array

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.media import mixer
from aiconnect.media.g711 import ALAW_TO_LINEAR, ULAW_TO_LINEAR


class DecodeMixTests(SynchronousTestCase):
    """
    Decoding and summing frames.
    """

    def test_decode(self) -> None:
        """
        Payloads decode through the G.711 linear tables.
        """
        codes = bytes(range(256))
        self.assertEqual(list(mixer.decode(codes, "PCMU")), list(ULAW_TO_LINEAR))
        self.assertEqual(list(mixer.decode(codes, "PCMA")), list(ALAW_TO_LINEAR))
        self.assertRaises(ValueError, mixer.decode, codes, "G729")

    def test_mix_table(self) -> None:
        """
        Sums clip at the 16-bit limits, for two and for more frames.
        """
        cases = [
            ([[1, 2, 3], [10, 20, 30]], [11, 22, 33]),
            ([[30000, -30000], [30000, -30000]], [32767, -32768]),
            ([[32767], [1], [1]], [32767]),
            ([[-32768], [-1], [5]], [-32764]),
            ([[20000], [20000], [-30000]], [10000]),
            ([[5, 6]], [5, 6]),
        ]
        for frames, expected in cases:
            self.assertEqual(list(mixer.mix(frames)), expected, frames)

    def test_mix_pads_and_cuts(self) -> None:
        """
        Short frames are padded with silence; the length can be forced.
        """
        self.assertEqual(list(mixer.mix([[1, 1, 1], [1]])), [2, 1, 1])
        self.assertEqual(list(mixer.mix([[1, 1, 1]], 2)), [1, 1])
        self.assertEqual(list(mixer.mix([[1]], 3)), [1, 0, 0])
        self.assertEqual(list(mixer.mix([], 2)), [0, 0])

    def test_mix_exhaustive_pairs(self) -> None:
        """
        The two-frame fast path equals clip(a + b) on the extremes.
        """
        values = [-32768, -32767, -16384, -1, 0, 1, 16383, 32766, 32767]
        left = array("h", [a for a in values for _ in values])
        right = array("h", [b for _ in values for b in values])
        expected = [max(-32768, min(32767, a + b)) for a, b in zip(left, right)]
        self.assertEqual(list(mixer.mix([left, right])), expected)

    def test_interleave(self) -> None:
        """
        Stereo interleaves L R L R; channels must match in length.
        """
        self.assertEqual(list(mixer.interleave([1, 2], [3, 4])), [1, 3, 2, 4])
        self.assertRaises(ValueError, mixer.interleave, [1], [1, 2])

    def test_s16le(self) -> None:
        """
        Samples serialize as little-endian whatever the host order.
        """
        self.assertEqual(mixer.to_s16le(array("h", [1, -2])), b"\x01\x00\xfe\xff")
        self.assertIn(sys.byteorder, ("little", "big"))


class MixerTests(SynchronousTestCase):
    """
    The per-party frame buffer.
    """

    def test_frame_when_all_parties_ready(self) -> None:
        """
        A frame comes out once every party has a full one buffered.
        """
        m = mixer.Mixer(2, frame_samples=4)
        m.push(0, bytes([0xFF] * 4), "PCMU")  # μ-law 0xFF = 0
        self.assertIsNone(m.pull())
        m.push(1, bytes([0xD5] * 4), "PCMA")  # A-law 0xD5 = +8
        frame = m.pull()
        assert frame is not None
        self.assertEqual(list(frame.parties[0]), [0] * 4)
        self.assertEqual(list(frame.parties[1]), [8] * 4)
        self.assertEqual(list(frame.mono), [8] * 4)
        self.assertEqual(list(frame.stereo), [0, 8] * 4)
        self.assertIsNone(m.pull())

    def test_force_pads_with_silence(self) -> None:
        """
        pull(force=True) pads a silent party; with no audio at all it
        returns None.
        """
        m = mixer.Mixer(2, frame_samples=3)
        self.assertIsNone(m.pull(force=True))
        m.push(1, bytes([0x80, 0x80]), "PCMU")  # two samples of +32124
        frame = m.pull(force=True)
        assert frame is not None
        self.assertEqual(list(frame.parties[0]), [0, 0, 0])
        self.assertEqual(list(frame.parties[1]), [32124, 32124, 0])
        self.assertEqual(list(frame.stereo), [0, 32124, 0, 32124, 0, 0])

    def test_bounded(self) -> None:
        """
        A party running ahead keeps only max_frames frames; the rest is
        counted as dropped.
        """
        m = mixer.Mixer(1, frame_samples=2, max_frames=2)
        m.push(0, bytes([0xFF] * 10), "PCMU")
        self.assertEqual(m.dropped_samples, 6)
        self.assertIsNotNone(m.pull())
        self.assertIsNotNone(m.pull())
        self.assertIsNone(m.pull())

    def test_single_party_stereo(self) -> None:
        """
        With one party the right channel is silence.
        """
        m = mixer.Mixer(1, frame_samples=2)
        m.push(0, bytes([0x80, 0x80]), "PCMU")
        frame = m.pull()
        assert frame is not None
        self.assertEqual(list(frame.stereo), [32124, 0, 32124, 0])
        self.assertRaises(ValueError, mixer.Mixer, 0)
