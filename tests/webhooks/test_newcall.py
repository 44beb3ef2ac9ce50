# -*- test-case-name: tests.webhooks.test_newcall -*-
"""
Tests for L{aiconnect.webhooks.newcall}: the signed C{newCall} request and
the reading of its answer, through L{StubTreq} over a recording
application, with timeouts on a L{Clock}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.logger import capturedLogs

from aiconnect.webhooks import NewCallClient, NewCallResult
from tests.webhooks.helpers import (
    SECRET,
    FlakyClient,
    RaisingClient,
    StaleClient,
    WebhooksTestCase,
    closed_before_answer,
    independent_signature_ok,
    tenant,
)


class NewCallTests(WebhooksTestCase):
    """
    L{NewCallClient}: the signed C{newCall} request.
    """

    def call(self, timeout: float = 5.0, client: Any = None, payload: Any = None) -> defer.Deferred[NewCallResult]:
        self.client = NewCallClient(self.clock, client or self.stub)
        return self.client.post_new_call(tenant(), payload or {"sessionId": "s1", "callId": "c@src"}, timeout)

    def test_answer(self) -> None:
        """
        A 2xx JSON object is the answer; the request is a signed JSON POST
        to C{{callback_url}/newCall}.
        """
        self.recorder.script.append((200, {"Content-Type": "application/json"}, b'{"startSIPRecForward": {"uri": "sip:x@y"}}'))
        result = self.successResultOf(self.call())
        self.assertEqual(result, NewCallResult({"startSIPRecForward": {"uri": "sip:x@y"}}, None, 200))
        self.assertTrue(result.ok)
        [request] = self.recorder.requests
        self.assertEqual(request.path, "/newCall")
        self.assertEqual(request.json, {"sessionId": "s1", "callId": "c@src"})
        self.assertTrue(request.headers["webhook-id"].startswith("msg_"))
        self.assertTrue(independent_signature_ok(SECRET, request.headers, request.body))
        self.assertEqual(self.client.stats["answered"], 1)

    def test_empty_answer(self) -> None:
        """
        An empty 2xx body (e.g. 204) is an empty answer: nothing to start.
        """
        self.recorder.script.append((204, {}, b""))
        self.assertEqual(self.successResultOf(self.call()).answer, {})

    def test_timeout(self) -> None:
        """
        No answer within the timeout (on the injected clock) fires a result
        with no answer and the reason, and cancels the request.
        """
        self.recorder.script.append(None)
        with capturedLogs() as logged:
            d = self.call(timeout=2.0)
            self.clock.advance(1.9)
            self.assertNoResult(d)
            self.clock.advance(0.1)
            result = self.successResultOf(d)
        self.assertEqual((result.answer, result.error), (None, "timeout after 2 s"))
        self.assertFalse(result.ok)
        self.assertEqual(self.client.stats["timeout"], 1)
        self.assertTrue(any(e.get("reason") == "timeout after 2 s" and e.get("session_id") == "s1" for e in logged))
        self.stub.flush()
        self.assertEqual(self.recorder.lost, 1, "the request's connection was aborted")

    def test_stale_connection(self) -> None:
        """
        A newCall whose pooled connection turned out closed is sent again at
        once (same request) and answered.
        """
        self.recorder.script.append((200, {}, b'{"a": 1}'))
        result = self.successResultOf(self.call(client=StaleClient(self.stub, [closed_before_answer()])))
        self.assertEqual(result.answer, {"a": 1})
        self.assertEqual((self.client.stats["answered"], self.client.stats["stale_connection_retries"]), (1, 1))

    def test_lone_surrogate_in_request(self) -> None:
        """
        A newCall payload holding a lone surrogate is sent (with U+FFFD),
        not lost as an internal error.
        """
        self.recorder.script.append((200, {}, b"{}"))
        result = self.successResultOf(self.call(payload={"sessionId": "s1", "from": "Jos\udce9"}))
        self.assertTrue(result.ok)
        self.assertEqual(self.recorder.requests[0].json["from"], "Jos\ufffd")

    def test_deep_answer(self) -> None:
        """
        An answer nested too deeply for the JSON parser is "not JSON", not
        an internal error.
        """
        self.recorder.script.append((200, {}, b"[" * 100000 + b"]" * 100000))
        result = self.successResultOf(self.call())
        self.assertEqual(result.error, "body is not JSON: nested too deeply")

    def test_bad_answers(self) -> None:
        """
        Non-2xx, non-JSON, non-object and oversized answers give no answer
        and a reason.
        """
        cases = [
            ((500, {}, b"{}"), "HTTP 500"),
            ((200, {}, b"<html>"), "body is not JSON"),
            ((200, {}, b"[1, 2]"), "body is not a JSON object"),
            ((200, {}, b"\xff\xfe"), "body is not JSON"),
            ((200, {}, b"{" + b" " * (2 * 1024 * 1024) + b"}"), "body unreadable: body larger than 1048576 bytes"),
        ]
        for answer, reason in cases:
            self.recorder.script.append(answer)
            with capturedLogs():
                result = self.successResultOf(self.call())
            self.assertEqual((result.answer, result.error), (None, reason))

    def test_connection_failure(self) -> None:
        """
        A refused connection gives no answer and says so.
        """
        with capturedLogs():
            result = self.successResultOf(self.call(client=FlakyClient(self.stub, failures=1)))
        self.assertIsNone(result.answer)
        self.assertTrue(result.error.startswith("connection failed"), result.error)

    def test_never_raises(self) -> None:
        """
        A client that raises, or a payload that is not JSON, still gives a
        result, never an exception.
        """
        with capturedLogs():
            result = self.successResultOf(self.call(client=RaisingClient()))
            self.assertEqual(result.error, "RuntimeError: boom")
            result = self.successResultOf(self.call(payload={"sessionId": "s1", "x": object()}))
            self.assertEqual(result.error, "internal error: TypeError")
        self.flushLoggedErrors(TypeError)

    def test_cancel(self) -> None:
        """
        Cancelling the result (the session ended first) cancels the request.
        """
        self.recorder.script.append(None)
        with capturedLogs():
            d = self.call()
            d.cancel()
            result = self.successResultOf(d)
        self.assertEqual(result.error, "cancelled")
        self.assertEqual(self.clock.getDelayedCalls(), [])
