"""
Tests for L{aiconnect.media.g711}, against the ITU-T G.711 tables in
tests/data/g711/g711-tables.json.
"""

from __future__ import annotations

import json
import os

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.media import g711

with open(os.path.join(os.path.dirname(__file__), os.pardir, "data", "g711", "g711-tables.json")) as f:
    TABLES = json.load(f)


class TranscodeTableTests(SynchronousTestCase):
    """
    The μ-law ↔ A-law translate tables are G.711's direct tables.
    """

    def test_ulaw_to_alaw(self) -> None:
        """
        ULAW_TO_ALAW equals the direct table on all 256 codes.
        """
        self.assertEqual(len(g711.ULAW_TO_ALAW), 256)
        self.assertEqual(list(g711.ULAW_TO_ALAW), TABLES["ulaw2alaw"])

    def test_alaw_to_ulaw(self) -> None:
        """
        ALAW_TO_ULAW equals the direct table on all 256 codes.
        """
        self.assertEqual(len(g711.ALAW_TO_ULAW), 256)
        self.assertEqual(list(g711.ALAW_TO_ULAW), TABLES["alaw2ulaw"])

    def test_not_via_linear(self) -> None:
        """
        The direct tables differ from decode-then-encode exactly where the
        reference says, so the relay cannot have taken the shortcut.
        """
        via_linear = [g711.linear_to_alaw(x) for x in g711.ULAW_TO_LINEAR]
        diffs = [[c, g711.ULAW_TO_ALAW[c], via_linear[c]] for c in range(256) if via_linear[c] != g711.ULAW_TO_ALAW[c]]
        self.assertEqual(diffs, TABLES["ulaw2alaw_via_linear_diffs"])
        via_linear = [g711.linear_to_ulaw(x) for x in g711.ALAW_TO_LINEAR]
        diffs = [[c, g711.ALAW_TO_ULAW[c], via_linear[c]] for c in range(256) if via_linear[c] != g711.ALAW_TO_ULAW[c]]
        self.assertEqual(diffs, TABLES["alaw2ulaw_via_linear_diffs"])

    def test_round_trip_count(self) -> None:
        """
        240 codes survive μ-law -> A-law -> μ-law (and the reverse).
        """
        props = TABLES["properties"]
        u = sum(g711.ALAW_TO_ULAW[g711.ULAW_TO_ALAW[c]] == c for c in range(256))
        a = sum(g711.ULAW_TO_ALAW[g711.ALAW_TO_ULAW[c]] == c for c in range(256))
        self.assertEqual(u, props["ulaw2alaw_then_alaw2ulaw_identity_count"])
        self.assertEqual(a, props["alaw2ulaw_then_ulaw2alaw_identity_count"])

    def test_translate(self) -> None:
        """
        bytes.translate with the tables and transcode() agree code by code.
        """
        every = bytes(range(256))
        self.assertEqual(list(every.translate(g711.ULAW_TO_ALAW)), TABLES["ulaw2alaw"])
        self.assertEqual(g711.transcode(every, "PCMA", "PCMU"), every.translate(g711.ALAW_TO_ULAW))
        self.assertEqual(g711.transcode(every, "PCMU", "PCMU"), every)
        self.assertRaises(ValueError, g711.transcode, every, "PCMU", "G722")


class LinearTests(SynchronousTestCase):
    """
    Decoding to and encoding from 16-bit linear PCM.
    """

    def test_decode_tables(self) -> None:
        """
        The decode tables equal the reference for all 256 codes.
        """
        self.assertEqual(list(g711.ULAW_TO_LINEAR), TABLES["ulaw2linear16"])
        self.assertEqual(list(g711.ALAW_TO_LINEAR), TABLES["alaw2linear16"])
        self.assertEqual(list(g711.ulaw_decode(bytes(range(256)))), TABLES["ulaw2linear16"])
        self.assertEqual(list(g711.alaw_decode(bytes(range(256)))), TABLES["alaw2linear16"])

    def test_encode_matches_reference(self) -> None:
        """
        Encoding a decoded code from the other law reproduces the
        reference's via-linear tables.
        """
        self.assertEqual(
            [g711.linear_to_alaw(x) for x in TABLES["ulaw2linear16"]], TABLES["ulaw2alaw_via_linear"]
        )
        self.assertEqual(
            [g711.linear_to_ulaw(x) for x in TABLES["alaw2linear16"]], TABLES["alaw2ulaw_via_linear"]
        )

    def test_encode_decode_identity(self) -> None:
        """
        Every code survives decode then encode, except μ-law's negative
        zero (127), which encodes as positive zero (255).
        """
        codes = bytes(range(256))
        expected_u = bytes(255 if c == 127 else c for c in range(256))
        self.assertEqual(g711.ulaw_encode(g711.ulaw_decode(codes)), expected_u)
        self.assertEqual(g711.alaw_encode(g711.alaw_decode(codes)), codes)

    def test_encode_clips(self) -> None:
        """
        Out-of-range samples clip to the largest codes.
        """
        self.assertEqual(g711.linear_to_ulaw(10**6), g711.linear_to_ulaw(32767))
        self.assertEqual(g711.linear_to_alaw(-(10**6)), g711.linear_to_alaw(-32768))
        self.assertEqual(g711.ulaw_encode([32767, -32768]), bytes([0x80, 0x00]))
        self.assertEqual(g711.alaw_encode([32767, -32768]), bytes([0xAA, 0x2A]))

    def test_encode_monotonic(self) -> None:
        """
        Larger samples never decode smaller after encoding.
        """
        last_u = last_a = -(10**9)
        for s in range(-32768, 32768, 7):
            u = g711.ULAW_TO_LINEAR[g711.linear_to_ulaw(s)]
            a = g711.ALAW_TO_LINEAR[g711.linear_to_alaw(s)]
            self.assertGreaterEqual(u, last_u)
            self.assertGreaterEqual(a, last_a)
            last_u, last_a = u, a
