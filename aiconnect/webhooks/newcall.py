# -*- test-case-name: tests.webhooks.test_newcall -*-
"""
The C{newCall} callback (SPEC section 2): the signed C{POST
{callback_url}/newCall} whose answer decides what to do with a new
session.

This module owns that one request and the reading of its answer:
L{NewCallClient.post_new_call} always fires with a L{NewCallResult} (the
JSON object answered, or why there is none), never with an error, and
counts answers, timeouts and failures.  The request itself goes through
L{aiconnect.webhooks.http.post}; its timeout runs on the injected reactor.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from aiconnect.events import new_id
from aiconnect.metrics_recorder import NULL_METRICS, WEBHOOK_NEW_CALL, MetricsRecorder
from aiconnect.webhooks.http import Reply, WebhookTarget, describe_failure, post
from aiconnect.webhooks.signing import encode_body, signed_headers

__all__ = [
    "NewCallClient",
    "NewCallResult",
]

# The application's answer to newCall is parsed, up to this size.
_NEW_CALL_REPLY_MAX = 1024 * 1024


@dataclass(frozen=True, slots=True)
class NewCallResult:
    """
    The outcome of a C{newCall} request.

    @ivar answer: The JSON object the application answered (C{{}} for an
        empty 2xx body), or L{None} on any failure.
    @ivar error: Why there is no answer (C{"timeout after 5 s"},
        C{"HTTP 500"}, C{"connection failed: ..."}, C{"body is not JSON"},
        C{"body is not a JSON object"} ...), or L{None}.
    @ivar status: The HTTP status, or L{None} if none was received.
    """

    answer: dict[str, Any] | None
    error: str | None = None
    status: int | None = None

    @property
    def ok(self) -> bool:
        """
        Whether the application answered with a usable object.
        """
        return self.error is None and self.answer is not None


class NewCallClient:
    """
    Ask the application what to do with a new session: a signed C{POST
    {callback_url}/newCall}.

    @ivar stats: Counters: C{answered}, C{timeout}, C{failed},
        C{stale_connection_retries} (requests repeated at once because a
        pooled connection turned out closed).
    """

    log = Logger()

    def __init__(self, reactor: IReactorTime, http_client: Any = None, *, max_body: int = _NEW_CALL_REPLY_MAX) -> None:
        """
        @param reactor: For the timeout.
        @param http_client: treq-shaped; the C{treq} module when L{None}.
        @param max_body: Largest answer read, in bytes.
        """
        if http_client is None:
            import treq as http_client
        self._reactor = reactor
        self._http = http_client
        self._max_body = max_body
        self.stats = {"answered": 0, "timeout": 0, "failed": 0, "stale_connection_retries": 0}
        #: Where each request's round trip is observed (injected by the tap).
        self.metrics: MetricsRecorder = NULL_METRICS

    def post_new_call(self, tenant: WebhookTarget, payload: Mapping[str, Any], timeout: float) -> Deferred[NewCallResult]:
        """
        POST C{payload} (JSON) to C{{callback_url}/newCall}, signed
        (C{webhook-id} is a fresh C{msg_...} id).

        @param tenant: The tenant (C{callback_url}, C{signing_secret}).
        @param payload: The request object.
        @param timeout: Seconds for the whole exchange; the request is
            cancelled when it expires.
        @return: Fires with a L{NewCallResult}, never fails.  Cancelling it
            cancels the request (result: error C{"cancelled"}).
        """
        session_id = payload.get("sessionId") if isinstance(payload, Mapping) else None
        url = getattr(tenant, "callback_url", "?") + "/newCall"
        try:
            body = encode_body(payload)
            now = self._reactor.seconds()
            headers = signed_headers(tenant.signing_secret, new_id("msg_", now), int(now), body)
            d = post(self._reactor, self._http, url, body, headers, timeout, self._max_body, self.stats)
        except Exception as e:
            self.log.failure("newCall request could not be built", session_id=session_id)
            return defer.succeed(self._result(url, session_id, NewCallResult(None, "internal error: %s" % (type(e).__name__,))))

        def answered(reply: Reply) -> NewCallResult:
            self.metrics.observe_webhook(self._reactor.seconds() - now, WEBHOOK_NEW_CALL, getattr(tenant, "domain", ""))
            return self._result(url, session_id, self._parse(reply))

        def failed(failure: Failure) -> NewCallResult:
            error = describe_failure(failure, timeout)
            if error != "cancelled":
                self.metrics.observe_webhook(self._reactor.seconds() - now, WEBHOOK_NEW_CALL, getattr(tenant, "domain", ""))
            return self._result(url, session_id, NewCallResult(None, error), failure)

        def bug(failure: Failure) -> NewCallResult:
            self.log.failure("newCall handling bug", failure, session_id=session_id)
            return NewCallResult(None, "internal error")

        return d.addCallbacks(answered, failed).addErrback(bug)

    def _parse(self, reply: Reply) -> NewCallResult:
        if not 200 <= reply.status < 300:
            return NewCallResult(None, "HTTP %d" % (reply.status,), reply.status)
        if reply.body is None:
            return NewCallResult(None, "body unreadable: %s" % (reply.body_error,), reply.status)
        if not reply.body.strip():
            return NewCallResult({}, None, reply.status)
        try:
            answer = json.loads(reply.body)
        except (ValueError, UnicodeDecodeError):
            return NewCallResult(None, "body is not JSON", reply.status)
        except RecursionError:
            return NewCallResult(None, "body is not JSON: nested too deeply", reply.status)
        if not isinstance(answer, dict):
            return NewCallResult(None, "body is not a JSON object", reply.status)
        return NewCallResult(answer, None, reply.status)

    def _result(self, url: str, session_id: Any, result: NewCallResult, failure: Failure | None = None) -> NewCallResult:
        if result.error is None:
            self.stats["answered"] += 1
            self.log.debug("newCall answered for session {session_id}", session_id=session_id, status=result.status)
        else:
            if failure is not None and failure.check(defer.TimeoutError):
                self.stats["timeout"] += 1
            else:
                self.stats["failed"] += 1
            self.log.warn(
                "newCall to {url} for session {session_id} failed: {reason}",
                url=url,
                session_id=session_id,
                reason=result.error,
                status=result.status,
            )
        return result
