# -*- test-case-name: tests.webhooks.test_signing -*-
"""
Tests for L{aiconnect.webhooks.signing}: Standard Webhooks signatures and
the signing secret.
"""

from __future__ import annotations

import base64
import json

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.webhooks import decode_secret, sign, verify
from tests.webhooks.helpers import SECRET, independent_signature_ok


class SigningTests(SynchronousTestCase):
    """
    Standard Webhooks signatures.
    """

    def test_published_vector(self) -> None:
        """
        L{sign} reproduces the Standard Webhooks specification's published
        test vector.
        """
        headers = sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
        self.assertEqual(
            headers,
            {
                "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "webhook-timestamp": "1614265330",
                "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            },
        )

    def test_independent_verifier_accepts(self) -> None:
        """
        A signature made by L{sign} passes the test's own implementation of
        the specification.
        """
        body = json.dumps({"event": "SESSIONSTARTED", "x": "é"}, ensure_ascii=False).encode()
        headers = sign(SECRET, "evt_1", 1700000000, body)
        self.assertTrue(independent_signature_ok(SECRET, headers, body))
        self.assertFalse(independent_signature_ok(SECRET, headers, body + b" "))

    def test_verify(self) -> None:
        """
        L{verify} accepts a good signature among several, and rejects a
        changed body, another secret, a stale timestamp and missing headers.
        """
        body = b'{"a":1}'
        headers = sign(SECRET, "evt_1", 1000, body)
        other = "whsec_" + base64.b64encode(b"another key of some length").decode()
        self.assertTrue(verify(SECRET, headers, body, now=1000))
        several = dict(headers, **{"webhook-signature": "v1,AAAA " + headers["webhook-signature"]})
        self.assertTrue(verify(SECRET, several, body, now=1010))
        upper = {k.upper(): v for k, v in headers.items()}
        self.assertTrue(verify(SECRET, upper, body, now=1000))
        self.assertFalse(verify(SECRET, headers, b'{"a":2}', now=1000))
        self.assertFalse(verify(other, headers, body, now=1000))
        self.assertFalse(verify(SECRET, headers, body, now=1000 + 301))
        self.assertFalse(verify(SECRET, {}, body, now=1000))

    def test_decode_secret(self) -> None:
        """
        The key is the base64 after C{whsec_}, padding optional; other forms
        are rejected without echoing the secret.
        """
        self.assertEqual(decode_secret("whsec_" + base64.b64encode(b"key!").decode().rstrip("=")), b"key!")
        for bad in ("MfKQ9r8GKYqr", "whsec_", "whsec_***"):
            with self.assertRaises(ValueError) as caught:
                decode_secret(bad)
            if bad != "whsec_":
                self.assertNotIn(bad, str(caught.exception))
