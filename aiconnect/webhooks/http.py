# -*- test-case-name: tests.webhooks.test_http,tests.webhooks.test_client11,tests.webhooks.test_delivery,tests.webhooks.test_newcall -*-
"""
One callback request: a POST through the injected client (the
L{aiconnect.webhooks.client11.CallbackPool} of a
L{aiconnect.webhooks.agent.CallbackClient}, else treq-shaped), its answer
read up to a size limit, all within our own timeout on the
injected reactor (C{Deferred.addTimeout}, not treq's C{timeout=}).

This module owns the HTTP exchange shared by the event deliverer and the
C{newCall} client: L{WebhookTarget} (what a callback needs of a tenant),
L{post} (redirects are not followed; a request whose pooled connection
turned out closed is sent again at once, once), the L{Reply} it fires
with, L{describe_failure} (a short, secret-free reason for logs and
results) and L{parse_retry_after}.  Request headers are never logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectError, ConnectionClosed, DNSLookupError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol as _StreamProtocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import (
    PotentialDataLoss,
    RequestNotSent,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseNeverReceived,
    _WrapperException,
)

from aiconnect.webhooks.client11 import Answer, BodyTooLarge, StaleConnection

__all__ = [
    "Reply",
    "backoff",
    "WebhookTarget",
    "describe_failure",
    "parse_retry_after",
    "post",
]


def parse_retry_after(value: str | None, now: float) -> float | None:
    """
    Parse a C{Retry-After} header (RFC 9110 s10.2.3).

    @param value: The header: delay seconds or an HTTP date; L{None} if
        absent.
    @param now: The current Unix time, for an HTTP date.
    @return: The delay in seconds (0 for a date in the past), or L{None}
        if absent or unparseable.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, moment.timestamp() - now)


class WebhookTarget(Protocol):
    """
    What the callbacks need of a tenant (L{aiconnect.config.TenantConfig}
    provides it).
    """

    @property
    def callback_url(self) -> str:
        """
        Base URL, no trailing slash.
        """

    @property
    def signing_secret(self) -> str:
        """
        The C{whsec_<base64>} secret.
        """


@dataclass(frozen=True, slots=True)
class Reply:
    """
    An HTTP answer.

    @ivar status: The status code.
    @ivar retry_after: The C{Retry-After} header, if any.
    @ivar body: The body, or L{None} if it could not be read.
    @ivar body_error: Why it could not be read, or L{None}.
    """

    status: int
    retry_after: str | None
    body: bytes | None
    body_error: str | None


class _BodyReader(_StreamProtocol):
    """
    Collect a response body up to a size limit; cancelling (our timeout)
    aborts the connection.
    """

    def __init__(self, limit: int) -> None:
        """
        @param limit: Most bytes accepted.
        """
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self._done = False
        self.finished: Deferred[bytes] = Deferred(self._cancel)

    def dataReceived(self, data: bytes) -> None:
        if self._done:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._done = True
            self._abort()
            self.finished.errback(BodyTooLarge("body larger than %d bytes" % (self._limit,)))
            return
        self._parts.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._done:
            return
        self._done = True
        if reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(b"".join(self._parts))
        else:
            self.finished.errback(reason)

    def _cancel(self, d: Deferred[bytes]) -> None:
        if not self._done:
            self._done = True
            self._abort()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()


def _read_reply(response: Any, limit: int) -> Deferred[Reply]:
    status = int(response.code)
    values = response.headers.getRawHeaders(b"retry-after") or []
    retry_after = values[0].decode("latin-1") if values else None
    reader = _BodyReader(limit)
    response.deliverBody(reader)

    def read(body: bytes) -> Reply:
        return Reply(status, retry_after, body, None)

    def unreadable(failure: Failure) -> Reply | Failure:
        if failure.check(CancelledError):
            return failure  # our timeout: let addTimeout turn it into TimeoutError
        return Reply(status, retry_after, None, describe_failure(failure))

    return reader.finished.addCallbacks(read, unreadable)


def _stale_connection(failure: Failure) -> bool:
    """
    Whether a request failed because its pooled connection had been closed
    by the server (an HTTP/1.0 receiver closes after every answer, racing
    our reuse of the connection): not sent at all, or the connection was
    closed before any byte of an answer, and not by our own cancellation.
    """
    if failure.check(RequestNotSent):
        return True
    if not failure.check(ResponseNeverReceived, RequestTransmissionFailed):
        return False
    reasons = getattr(failure.value, "reasons", None) or []
    return bool(reasons) and all(
        isinstance(r, Failure) and r.check(ConnectionClosed) is not None and r.check(CancelledError) is None
        for r in reasons
    )


def post(
    reactor: IReactorTime,
    http_client: Any,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,
    limit: int,
    stats: dict[str, int] | None = None,
) -> Deferred[Reply]:
    """
    POST C{body}, read the answer, all within C{timeout} seconds on
    C{reactor}.  Redirects are not followed (a 3xx is an answer).  A request
    that fails because its kept connection turned out closed (see
    L{StaleConnection}, L{_stale_connection}) is sent again at once, once
    (on a new connection), within the same timeout: that is no failure of
    the application.

    @param reactor: For the timeout.
    @param http_client: A L{CallbackClient} (its C{callbacks} are used), or
        treq-shaped (C{post(url, data=, headers=, allow_redirects=)}).
    @param url: Where to.
    @param body: The exact body (signed in C{headers}).
    @param headers: The request headers.
    @param timeout: Seconds for the whole exchange (connect, send, answer).
    @param limit: Most bytes of the answer read.
    @param stats: Where C{stale_connection_retries} is counted, if given.
    @return: A L{Deferred} firing with the L{Reply}, or failing with the
        connection error or L{defer.TimeoutError}.
    """

    callbacks = getattr(http_client, "callbacks", None)
    if callbacks is not None:
        # A CallbackClient: the lean client; a kept connection found closed
        # by the server is replaced by a new one, once.
        def stale(failure: Failure) -> Deferred[Answer] | Failure:
            if not failure.check(StaleConnection):
                return failure
            _count_retry(stats)
            return callbacks.request(url, headers, body, limit, fresh=True)

        d = callbacks.request(url, headers, body, limit)
        d.addErrback(stale)
        d.addCallback(_reply)
        d.addTimeout(timeout, reactor, onTimeoutCancel=_timed_out)
        return d

    def attempt() -> Deferred[Any]:
        return defer.maybeDeferred(
            http_client.post,
            url,
            data=body,
            headers=dict(headers),
            allow_redirects=False,
        )

    def again(failure: Failure) -> Deferred[Any] | Failure:
        if not _stale_connection(failure):
            return failure
        _count_retry(stats)
        return attempt()

    d = attempt()
    d.addErrback(again)
    d.addCallback(_read_reply, limit)
    d.addTimeout(timeout, reactor, onTimeoutCancel=_timed_out)
    return d


def _count_retry(stats: dict[str, int] | None) -> None:
    if stats is not None:
        stats["stale_connection_retries"] = stats.get("stale_connection_retries", 0) + 1


def _reply(answer: Answer) -> Reply:
    """
    The L{Reply} of an L{Answer}.
    """
    failure = answer.body_failure
    return Reply(answer.status, answer.retry_after, answer.body, None if failure is None else describe_failure(failure))


def _timed_out(result: Any, timeout: float) -> Any:
    """
    Whatever a cancelled request failed with (the agent wraps the
    cancellation in C{ResponseNeverReceived}), a timeout is a timeout.
    """
    if isinstance(result, Failure):
        return Failure(defer.TimeoutError("no answer within %g s" % (timeout,)))
    return result


def describe_failure(failure: Failure, timeout: float | None = None) -> str:
    """
    A short, secret-free description of a request failure.

    @param failure: What the request failed with.
    @param timeout: The timeout, named in a timeout's description.
    @return: E.g. C{"timeout after 5 s"}, C{"connection failed: ..."}.
    """
    if failure.check(defer.TimeoutError):
        return "timeout after %g s" % (timeout,) if timeout is not None else "timeout"
    if failure.check(CancelledError):
        return "cancelled"
    if failure.check(BodyTooLarge):
        return str(failure.value)
    if failure.check(_WrapperException):
        reasons = getattr(failure.value, "reasons", None) or []
        if reasons and isinstance(reasons[0], Failure):
            return describe_failure(reasons[0], timeout)
    if failure.check(DNSLookupError):
        return "DNS lookup failed: " + failure.getErrorMessage()
    if failure.check(ConnectError):
        return "connection failed: " + failure.getErrorMessage()
    return "%s: %s" % (failure.type.__name__, failure.getErrorMessage())


def backoff(attempts: int, initial: float, maximum: float) -> float:
    """
    The delay after failed attempt number C{attempts} (1, 2, ...):
    C{initial} doubling each time, at most C{maximum} (events and
    recording uploads retry alike).
    """
    exponent = min(max(attempts - 1, 0), 60)
    return min(maximum, initial * (2.0**exponent))
