# -*- test-case-name: tests.test_text -*-
"""
Tests for L{aiconnect.text}: SIP text made valid Unicode, and JSON values
checked for what could not be echoed.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.text import REPLACEMENT, clean_json, decode_wire, json_problem, replace_surrogates


def wire(data: bytes) -> str:
    """
    @return: C{data} as L{aiconnect.sip.message} keeps header text.
    """
    return data.decode("utf-8", "surrogateescape")


class DecodeWireTests(SynchronousTestCase):
    """
    L{decode_wire}.
    """

    def test_latin1(self) -> None:
        """
        ISO-8859-1 bytes that are not UTF-8 become their characters.
        """
        self.assertEqual(decode_wire(wire(b'"Jos\xe9" <sip:jose@pbx>')), '"Jos\u00e9" <sip:jose@pbx>')
        self.assertEqual(decode_wire(wire(b"M\xfcller")), "M\u00fcller")

    def test_windows_1252(self) -> None:
        """
        C{0x80}-C{0x9F} are read as Windows-1252 (C{0x80} is the euro sign);
        the five bytes it leaves undefined become U+FFFD.
        """
        self.assertEqual(decode_wire(wire(b"\x80 \x93q\x94")), "\u20ac \u201cq\u201d")
        self.assertEqual(decode_wire(wire(b"\x81\x8d\x8f\x90\x9d")), REPLACEMENT * 5)

    def test_utf8_kept(self) -> None:
        """
        Valid UTF-8 is untouched, also next to a byte that is not.
        """
        text = "Jos\u00e9 \u6771\u4eac"
        self.assertIs(decode_wire(text), text)
        self.assertEqual(decode_wire(wire("\u00e9".encode() + b"\xe9")), "\u00e9\u00e9")

    def test_other_surrogates(self) -> None:
        """
        Lone surrogates that are not escaped bytes become U+FFFD.
        """
        self.assertEqual(decode_wire("a\ud800b\udfff"), "a\ufffdb\ufffd")

    def test_replace_surrogates(self) -> None:
        """
        L{replace_surrogates} guesses nothing: every lone surrogate is U+FFFD.
        """
        self.assertEqual(replace_surrogates("Jos\udce9\ud800"), "Jos\ufffd\ufffd")
        replace_surrogates("x\udce9").encode("utf-8")

    def test_clean_json(self) -> None:
        """
        L{clean_json} copies, decoding every string, keys included.
        """
        source: dict[str, Any] = {"k\udce9": ["\udcfc", ("t",), 1, None], "n": {"x": True}}
        copy = clean_json(source)
        self.assertEqual(copy, {"k\u00e9": ["\u00fc", ["t"], 1, None], "n": {"x": True}})
        self.assertIsNot(copy["n"], source["n"])


class JsonProblemTests(SynchronousTestCase):
    """
    L{json_problem}.
    """

    def test_fine(self) -> None:
        """
        Valid values have no problem.
        """
        self.assertIsNone(json_problem({"a": [1, "\u00e9", {"b": None}]}, max_depth=3, max_bytes=100))

    def test_surrogates(self) -> None:
        """
        A lone surrogate is named by its path: value, key, list item.
        """
        self.assertEqual(json_problem({"a": {"b": "\ud800"}}), ("a.b", "not valid Unicode (lone surrogate)"))
        self.assertEqual(json_problem({"a": [0, "\udce9"]}), ("a[1]", "not valid Unicode (lone surrogate)"))
        self.assertEqual(json_problem({"k\ud800": 1}), ("k\ufffd", "name is not valid Unicode (lone surrogate)"))
        self.assertEqual(json_problem("\ud800"), ("", "not valid Unicode (lone surrogate)"))

    def test_first_in_document_order(self) -> None:
        """
        The first problem in document order is the one reported.
        """
        self.assertEqual(json_problem({"a": "\ud800", "b\ud800": 1})[0], "a")
        self.assertEqual(json_problem([["\ud800"], "\ud801"])[0], "[0][0]")

    def test_depth(self) -> None:
        """
        Nesting beyond C{max_depth} is named at the first too-deep level,
        without recursion (100000 levels).
        """
        deep: Any = []
        for _ in range(100000):
            deep = [deep]
        path, reason = json_problem({"a": deep}, max_depth=3)
        self.assertEqual((path, reason), ("a[0][0]", "nested deeper than 3 levels"))
        self.assertIsNone(json_problem({"a": deep}))

    def test_size(self) -> None:
        """
        The compact UTF-8 JSON size is bounded by C{max_bytes}.
        """
        self.assertIsNone(json_problem({"a": "\u00e9"}, max_bytes=len('{"a":"\u00e9"}'.encode())))
        self.assertEqual(json_problem({"a": "\u00e9"}, max_bytes=9), ("", "larger than 9 bytes as JSON"))
