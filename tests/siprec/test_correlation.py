# -*- test-case-name: tests.siprec.test_correlation -*-
"""
Tests for L{aiconnect.siprec.correlation}: vendor correlation headers
(SPEC s13).
"""

from __future__ import annotations

from twisted.trial import unittest

from aiconnect.siprec import correlation


class CorrelationHeadersTests(unittest.TestCase):
    """
    L{correlation.correlation_headers} keeps the vendors' headers, by the
    name as received, bounded.
    """

    def test_vendor_headers_kept(self) -> None:
        """
        Session-ID, User-to-User, Cisco-Guid and X- headers are kept with
        their names as received; other headers are not.
        """
        headers = [
            ("Via", "SIP/2.0/UDP 127.0.0.1"),
            ("Session-ID", "ab30317f1a784dc48ff824d0d3715d86;remote=00000000000000000000000000000000"),
            ("User-to-User", "56a390f3d2b7310023a2;encoding=hex"),
            ("Cisco-Guid", "1234567890-0987654321"),
            ("X-Genesys-CallUUID", "0PUG5V3"),
            ("From", "<sip:a@b>"),
        ]
        self.assertEqual(
            correlation.correlation_headers(headers),
            {
                "Session-ID": headers[1][1],
                "User-to-User": headers[2][1],
                "Cisco-Guid": headers[3][1],
                "X-Genesys-CallUUID": "0PUG5V3",
            },
        )

    def test_bounded(self) -> None:
        """
        At most MAX_HEADERS names are kept (the first ones), and over-long
        values are dropped.
        """
        headers = [("X-H%d" % i, "v") for i in range(correlation.MAX_HEADERS + 10)]
        headers.insert(0, ("X-Long", "a" * (correlation.MAX_VALUE + 1)))
        headers.append(("X-Long", "short"))
        out = correlation.correlation_headers(headers)
        self.assertEqual(list(out), ["X-H%d" % i for i in range(correlation.MAX_HEADERS)])
        self.assertNotIn("X-Long", out)

    def test_repeated_names_joined(self) -> None:
        """
        Lines of one name (any case) are one comma-separated value under
        the first line's spelling (RFC 3261 s7.3.1), bounded by MAX_VALUE.
        """
        half = "b" * (correlation.MAX_VALUE // 2)
        headers = [
            ("User-to-User", "56a390f3d2b7310023a2;encoding=hex"),
            ("X-Genesys-CallUUID", "0PUG5V3"),
            ("user-to-user", "0011;encoding=hex;purpose=isdn-uui"),
            ("X-Big", half),
            ("X-Big", half),
            ("X-Big", "c"),
        ]
        out = correlation.correlation_headers(headers)
        self.assertEqual(
            out,
            {
                "User-to-User": "56a390f3d2b7310023a2;encoding=hex, 0011;encoding=hex;purpose=isdn-uui",
                "X-Genesys-CallUUID": "0PUG5V3",
                "X-Big": half + ", c",
            },
        )

    def test_copied_headers(self) -> None:
        """
        copyHeaders names are matched case-insensitively and keep the
        order's spelling; names the call lacks are left out.
        """
        out = correlation.copied_headers(["session-id", "Cisco-Guid", "X-Absent"], {"Session-ID": "abc", "Cisco-Guid": "g"})
        self.assertEqual(out, [("session-id", "abc"), ("Cisco-Guid", "g")])
