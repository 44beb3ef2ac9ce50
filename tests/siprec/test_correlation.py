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
        At most MAX_HEADERS headers are kept, repeated names keep the first
        value, and over-long values are dropped.
        """
        headers = [("X-H%d" % i, "v") for i in range(correlation.MAX_HEADERS + 10)]
        headers.insert(0, ("x-h0", "first"))
        headers.insert(1, ("X-Long", "a" * (correlation.MAX_VALUE + 1)))
        out = correlation.correlation_headers(headers)
        self.assertEqual(len(out), correlation.MAX_HEADERS)
        self.assertEqual(out["x-h0"], "first")
        self.assertNotIn("X-Long", out)

    def test_copied_headers(self) -> None:
        """
        copyHeaders names are matched case-insensitively and keep the
        order's spelling; names the call lacks are left out.
        """
        out = correlation.copied_headers(["session-id", "Cisco-Guid", "X-Absent"], {"Session-ID": "abc", "Cisco-Guid": "g"})
        self.assertEqual(out, [("session-id", "abc"), ("Cisco-Guid", "g")])
