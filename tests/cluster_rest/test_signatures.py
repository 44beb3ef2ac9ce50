"""
Tests of L{aiconnect.api.cluster.sign} and L{NodeSignatures}: the
node-to-node signature (docs/api.md "Several nodes"), its time window on a
L{Clock}.
"""

from __future__ import annotations

import hashlib
import hmac
from io import BytesIO

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from aiconnect.api.cluster import MAX_SKEW, NODE_HEADER, SIGNATURE_HEADER, TIME_HEADER, NodeSignatures, sign
from aiconnect.api.jsonio import ApiRequestError

SECRET = "node-secret-0123456789abcdef"


def received(method: bytes, uri: bytes, body: bytes, headers: dict[bytes, bytes]) -> DummyRequest:
    """
    @return: A request as the receiving node's resource sees it.
    """
    request = DummyRequest(uri.lstrip(b"/").split(b"/"))
    request.method, request.uri, request.path = method, uri, uri.split(b"?")[0]
    request.content = BytesIO(body)
    for name, value in headers.items():
        request.requestHeaders.setRawHeaders(name, [value])
    return request


class SignTests(SynchronousTestCase):
    def test_layout(self) -> None:
        """
        The signature is HMAC-SHA256 over the documented lines: a version
        tag, method, path, SHA-256 of the body, time, node id.
        """
        body = b'{"sessionId":"s1"}'
        lines = [b"aiconnect-node-v1", b"POST", b"/d/pause", hashlib.sha256(body).hexdigest().encode(), b"100.000", b"node-a"]
        expected = b"v1=" + hmac.new(SECRET.encode(), b"\n".join(lines), hashlib.sha256).hexdigest().encode()
        self.assertEqual(sign(SECRET, b"POST", b"/d/pause", body, b"100.000", b"node-a"), expected)
        # Every field counts.
        others = {
            sign(SECRET, b"GET", b"/d/pause", body, b"100.000", b"node-a"),
            sign(SECRET, b"POST", b"/d/resume", body, b"100.000", b"node-a"),
            sign(SECRET, b"POST", b"/d/pause", body + b" ", b"100.000", b"node-a"),
            sign(SECRET, b"POST", b"/d/pause", body, b"100.001", b"node-a"),
            sign(SECRET, b"POST", b"/d/pause", body, b"100.000", b"node-b"),
            sign(SECRET + "x", b"POST", b"/d/pause", body, b"100.000", b"node-a"),
        }
        self.assertEqual(len(others), 6)
        self.assertNotIn(expected, others)


class NodeSignaturesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.sender = NodeSignatures(SECRET, "node-a", self.clock)
        self.receiver = NodeSignatures(SECRET, "node-b", self.clock)

    def test_round_trip(self) -> None:
        """
        What one node signs the other accepts; a request without node
        headers is a client's.
        """
        headers = self.sender.headers(b"POST", b"/d/pause", b"{}")
        self.assertEqual(headers[NODE_HEADER], b"node-a")
        self.assertTrue(self.receiver.check(received(b"POST", b"/d/pause", b"{}", headers)))
        self.assertFalse(self.receiver.check(received(b"POST", b"/d/pause", b"{}", {})))
        self.assertEqual(self.receiver.refused, 0)

    def test_window(self) -> None:
        """
        A signature is good for L{MAX_SKEW} seconds either way of the
        receiver's clock, not beyond.
        """
        headers = self.sender.headers(b"GET", b"/d/sessions", b"")
        for step, good in ((MAX_SKEW, True), (0.001, False)):
            self.clock.advance(step)
            request = received(b"GET", b"/d/sessions", b"", headers)
            if good:
                self.assertTrue(self.receiver.check(request))
            else:
                error = self.assertRaises(ApiRequestError, self.receiver.check, request)
                self.assertEqual(error.status, 403)
        early = NodeSignatures(SECRET, "node-a", Clock())
        early_headers = early.headers(b"GET", b"/d/sessions", b"")
        self.assertRaises(ApiRequestError, self.receiver.check, received(b"GET", b"/d/sessions", b"", early_headers))
        self.assertEqual(self.receiver.refused, 2)

    def test_malformed(self) -> None:
        """
        Missing, oversized or non-numeric node headers are refused with 403
        naming the problem.
        """
        good = self.sender.headers(b"GET", b"/d/sessions", b"")
        cases = {
            "missing x-aiconnect-node-time, x-aiconnect-node-signature": {NODE_HEADER: b"node-a"},
            "missing x-aiconnect-node": {TIME_HEADER: good[TIME_HEADER], SIGNATURE_HEADER: good[SIGNATURE_HEADER]},
            "malformed time": {**good, TIME_HEADER: b"soon"},
            "malformed node headers": {**good, NODE_HEADER: b"n" * 65},
            "time more than 30 s away from this node's clock": {**good, TIME_HEADER: b"nan"},
            "bad signature": {**good, SIGNATURE_HEADER: good[SIGNATURE_HEADER][:-1] + b"x"},
        }
        for problem, headers in cases.items():
            error = self.assertRaises(ApiRequestError, self.receiver.check, received(b"GET", b"/d/sessions", b"", headers))
            self.assertEqual((error.status, error.message), (403, "node-to-node request refused: " + problem))
