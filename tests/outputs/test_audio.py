# -*- test-case-name: tests.outputs.test_audio -*-
"""
Tests for L{aiconnect.outputs.audio}: channel selection and sample formats,
checked against the G.711 reference tables in C{tests/data/g711}.
"""

from __future__ import annotations

import struct
from array import array

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.media.g711 import ALAW_TO_LINEAR, ULAW_TO_LINEAR
from aiconnect.media.pcm import FRAME_SAMPLES, PcmFrame
from aiconnect.outputs.audio import SILENCE, Parties, channel_count, encode, select, upsample2


def _frame(*values: int) -> PcmFrame:
    return PcmFrame(0, tuple(array("h", [v] * FRAME_SAMPLES) for v in values))


class SelectTests(SynchronousTestCase):
    """
    L{select} picks the parties C{tracks} names.
    """

    def test_both(self) -> None:
        """
        C{both}: caller first, then the called party, by the relay streams
        L{Parties} names (here swapped).
        """
        frame = _frame(100, 200)
        left, right = select(frame, Parties(caller=1, callee=0), "both")
        self.assertEqual((left[0], right[0]), (200, 100))
        self.assertEqual(channel_count("both"), 2)

    def test_mixed_clips(self) -> None:
        """
        C{mixed} sums both parties and clips to 16 bits.
        """
        (mono,) = select(_frame(30000, 10000), Parties(), "mixed")
        self.assertEqual(set(mono), {32767})
        (mono,) = select(_frame(-5, 7), Parties(), "mixed")
        self.assertEqual(set(mono), {2})

    def test_single_and_missing(self) -> None:
        """
        C{caller} / C{callee} give one channel; a party no stream carries is
        silence.
        """
        frame = _frame(5)
        self.assertEqual(select(frame, Parties(), "caller")[0][0], 5)
        self.assertEqual(select(frame, Parties(), "callee"), [SILENCE])
        self.assertEqual(select(frame, Parties(caller=None), "caller"), [SILENCE])
        self.assertRaises(ValueError, select, frame, Parties(), "left")


class EncodeTests(SynchronousTestCase):
    """
    L{encode} writes interleaved little-endian L16 or G.711.
    """

    def test_l16_stereo(self) -> None:
        """
        Two channels interleave, little-endian.
        """
        data = encode([array("h", [1, -2]), array("h", [3, 4])], "L16")
        self.assertEqual(struct.unpack("<4h", data), (1, 3, -2, 4))

    def test_l16_16k(self) -> None:
        """
        16 kHz doubles the samples: each one, then the mean with the next.
        """
        self.assertEqual(list(upsample2(array("h", [0, 100, 50]))), [0, 50, 100, 75, 50, 50])
        data = encode([array("h", [0, 100])], "L16", 16000)
        self.assertEqual(struct.unpack("<4h", data), (0, 50, 100, 100))

    def test_g711_round_trip(self) -> None:
        """
        Every G.711 code decoded by the reference table encodes back to a
        code that decodes to the same sample (PCMU and PCMA).
        """
        for table, name in ((ULAW_TO_LINEAR, "PCMU"), (ALAW_TO_LINEAR, "PCMA")):
            samples = array("h", table)
            codes = encode([samples], name)
            self.assertEqual([table[c] for c in codes], list(samples))

    def test_bad_arguments(self) -> None:
        """
        16 kHz is L16 only; unknown encodings and rates are refused.
        """
        one = [array("h", [0])]
        self.assertRaises(ValueError, encode, one, "PCMU", 16000)
        self.assertRaises(ValueError, encode, one, "G722")
        self.assertRaises(ValueError, encode, one, "L16", 11025)
        self.assertRaises(ValueError, encode, [], "L16")

    def test_same_frame_encoded_once(self) -> None:
        """
        The same arrays in the same format as the previous call (a stream
        and a recording of one call taking one frame) give the same bytes
        object; other arrays or another format are encoded anew.
        """
        left, right = array("h", [1, 2]), array("h", [3, 4])
        first = encode([left, right], "L16")
        self.assertIs(encode([left, right], "L16"), first)
        self.assertEqual(encode([array("h", [1, 2]), right], "L16"), first)
        self.assertIsNot(encode([array("h", [1, 2]), right], "L16"), first)
        self.assertEqual(encode([left, right], "PCMU"), encode([array("h", [1, 2]), right], "PCMU"))
