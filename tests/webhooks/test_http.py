# -*- test-case-name: tests.webhooks.test_http -*-
"""
Tests for L{aiconnect.webhooks.http}: the parts of one callback request
that are not exercised through the deliverer and the C{newCall} client
(see L{tests.webhooks.test_delivery} and L{tests.webhooks.test_newcall}).
"""

from __future__ import annotations

from email.utils import formatdate

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.webhooks import parse_retry_after
from tests.webhooks.helpers import START


class RetryAfterTests(SynchronousTestCase):
    """
    L{parse_retry_after}: the C{Retry-After} header.
    """

    def test_parse_retry_after(self) -> None:
        """
        C{Retry-After} is delay seconds or an HTTP date (RFC 9110 s10.2.3);
        garbage is ignored.
        """
        self.assertEqual(parse_retry_after("120", START), 120.0)
        self.assertEqual(parse_retry_after(formatdate(START + 90, usegmt=True), START), 90.0)
        self.assertEqual(parse_retry_after(formatdate(START - 90, usegmt=True), START), 0.0)
        self.assertIsNone(parse_retry_after(None, START))
        self.assertIsNone(parse_retry_after("soon", START))
        self.assertIsNone(parse_retry_after("-5", START))
