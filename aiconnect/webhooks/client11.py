# -*- test-case-name: tests.webhooks.test_client11,tests.webhooks.test_agent,tests.webhooks.test_http -*-
"""
A lean HTTP/1.1 client for the callbacks: one Twisted protocol per
connection driving an L{h11.Connection}, one request at a time per
connection (no pipelining), idle keep-alive connections kept per origin.

What a callback needs and nothing else: a C{POST} whose head is built from
bytes encoded once per URL, the answer's status, its C{Retry-After} and its
body read up to a size limit.  Everything the server controls has a cap:
the answer's head (L{MAX_HEAD} bytes, L{MAX_HEADERS} fields, at most
L{MAX_INFORMATIONAL} interim answers) and its body (the caller's limit; an
answer over it is read no further and its connection dropped).  Redirects
are not followed (a 3xx is an answer).  h11 parses the answers (chunked,
C{Content-Length} or close-delimited bodies, HTTP/1.0 and C{Connection:
close} servers) and tells whether the connection may carry another request.

This module owns L{CallbackPool} (the per-origin idle connections, their
idle timeout, the request), L{Endpoints} (the endpoint of each origin, made
once: an IP-literal host connected to directly, a host name through
L{HostnameEndpoint}, C{https} wrapped in TLS by the trust policy given),
L{request_uri}, L{Answer}, L{BodyTooLarge} and L{StaleConnection}.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import h11
import hyperlink
from twisted.internet import defer
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import URI, BrowserLikePolicyForHTTPS
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

__all__ = [
    "MAX_HEAD",
    "MAX_HEADERS",
    "MAX_INFORMATIONAL",
    "Answer",
    "BodyTooLarge",
    "CallbackPool",
    "Endpoints",
    "StaleConnection",
    "request_uri",
]

#: Most bytes of an answer's head (status line and header fields).
MAX_HEAD = 16 * 1024

#: Most header fields of an answer.
MAX_HEADERS = 100

#: Most interim (1xx) answers before the final one.
MAX_INFORMATIONAL = 8

# Callback URLs and origins whose parsed forms are kept: they come from the
# configuration, so this is a safety cap, not a working limit.
_MAX_ORIGINS = 1024

# A request's own header fields, as one text: names are tokens, values hold
# no CR, LF or NUL (a value that does is never sent).
_FIELDS = re.compile(r"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+: [^\r\n\x00]*\r\n)*")

# What h11 is told was sent: h11 tracks the exchange (and so how to read
# the answer to a POST) while the request's bytes are ours, built from
# bytes encoded once per URL (building and checking an h11 request's
# fields each time is most of h11's cost).  Events are immutable: one for
# every request.
_SENT = h11.Request(method=b"POST", target=b"/", headers=[(b"Host", b"callback"), (b"Content-Length", b"0")])
_END = h11.EndOfMessage()


class BodyTooLarge(Exception):
    """
    The application's answer exceeded the size we read.
    """


class StaleConnection(Exception):
    """
    A request met a kept connection that the server had closed: nothing
    of an answer arrived, and it was not our cancellation.  Sending it
    again on a new connection is no failure of the application.
    """


@lru_cache(maxsize=_MAX_ORIGINS)
def request_uri(url: str) -> bytes:
    """
    A callback URL in ASCII: an internationalized host name in IDNA form,
    other non-ASCII text percent-encoded (what treq sends for the same
    URL).  Computed once per URL.

    @param url: An absolute C{http} or C{https} URL.
    @return: Its ASCII form.
    """
    if url.isascii():
        return url.encode("ascii")
    return hyperlink.URL.from_text(url).to_uri().to_text().encode("ascii")


@lru_cache(maxsize=_MAX_ORIGINS)
def _target(url: str) -> tuple[tuple[bytes, bytes, int], bytes]:
    """
    A callback URL's origin (scheme, host, port) and the start of its
    request head (request line and C{Host} field), encoded once per URL.

    @raise SchemeNotSupported: Neither C{http} nor C{https}.
    """
    parts = urlsplit(request_uri(url).decode("ascii"))
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise SchemeNotSupported("unsupported scheme: %r" % (scheme.encode("ascii"),))
    host = parts.hostname or ""
    default = 443 if scheme == "https" else 80
    port = parts.port or default
    shown = "[%s]" % (host,) if ":" in host else host
    authority = shown if port == default else "%s:%d" % (shown, port)
    path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    head = "POST %s HTTP/1.1\r\nHost: %s\r\n" % (path, authority)
    return (scheme.encode("ascii"), host.encode("ascii"), port), head.encode("ascii")


@implementer(IAgentEndpointFactory)
class Endpoints:
    """
    The endpoint of each origin, made once and kept.  An IP-literal host
    gets a plain TCP endpoint (no name resolution in a thread), a host name
    a L{HostnameEndpoint} (the reactor's resolver); C{https} is wrapped in
    TLS with the trust and host name verification of C{tls} (by default
    L{BrowserLikePolicyForHTTPS}: the platform's trust store).  Also an
    L{IAgentEndpointFactory}, for an L{twisted.web.client.Agent}.
    """

    def __init__(self, reactor: Any, tls: Any = None) -> None:
        """
        @param reactor: The reactor to connect with.
        @param tls: An L{twisted.web.iweb.IPolicyForHTTPS}.
        """
        self._reactor = reactor
        self._tls = tls if tls is not None else BrowserLikePolicyForHTTPS()
        self._endpoints: dict[tuple[bytes, bytes, int], IStreamClientEndpoint] = {}

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        return self.endpoint((uri.scheme, uri.host, uri.port))

    def endpoint(self, origin: tuple[bytes, bytes, int]) -> IStreamClientEndpoint:
        """
        @param origin: Scheme, host and port.
        @return: Its endpoint.
        @raise SchemeNotSupported: Neither C{http} nor C{https}.
        """
        endpoint = self._endpoints.get(origin)
        if endpoint is None:
            if len(self._endpoints) >= _MAX_ORIGINS:
                self._endpoints.clear()
            endpoint = self._endpoints[origin] = self._make(*origin)
        return endpoint

    def _make(self, scheme: bytes, host: bytes, port: int) -> IStreamClientEndpoint:
        if scheme not in (b"http", b"https"):
            raise SchemeNotSupported("unsupported scheme: %r" % (scheme,))
        text = host.decode("ascii")
        endpoint: IStreamClientEndpoint
        if isIPAddress(text):
            endpoint = TCP4ClientEndpoint(self._reactor, text, port)
        elif isIPv6Address(text):
            endpoint = TCP6ClientEndpoint(self._reactor, text, port)
        else:
            endpoint = HostnameEndpoint(self._reactor, host, port)
        if scheme == b"https":
            endpoint = wrapClientTLS(self._tls.creatorForNetloc(host, port), endpoint)
        return endpoint


class Answer:
    """
    An HTTP answer as read.

    @ivar status: The status code.
    @ivar retry_after: The C{Retry-After} field, if any.
    @ivar body: The body, or L{None} if it could not be read.
    @ivar body_failure: Why it could not be read, or L{None}.
    """

    __slots__ = ("status", "retry_after", "body", "body_failure")

    def __init__(self, status: int, retry_after: str | None, body: bytes | None, body_failure: Failure | None) -> None:
        self.status = status
        self.retry_after = retry_after
        self.body = body
        self.body_failure = body_failure


class _Connection(Protocol):
    """
    One connection: an h11 client state machine, at most one exchange at a
    time.  Kept by its L{CallbackPool} while idle.
    """

    def __init__(self, pool: CallbackPool, origin: tuple[bytes, bytes, int]) -> None:
        self._pool = pool
        self.origin = origin
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        self._waiting: Deferred[Answer] | None = None
        self._limit = 0
        self._status = 0
        self._retry_after: str | None = None
        self._parts: list[bytes] = []
        self._size = 0
        self._interim = 0
        self._reused = False
        self._received = False
        self.idle_since = 0.0
        self.closed = False
        self.when_lost: Deferred[None] | None = None

    def exchange(self, request: bytes, limit: int, reused: bool) -> Deferred[Answer]:
        """
        Send one request (head and body, ready bytes) and read its answer.

        @param request: The bytes of the request.
        @param limit: Most bytes of the body read.
        @param reused: Whether the connection carried a request before.
        @return: Fires with the L{Answer} (once its body is read or found
            unreadable); fails with what the connection failed with, or
            L{StaleConnection}.  Cancelling it drops the connection.
        """
        self._waiting = d = Deferred(self._cancel)
        self._limit = limit
        self._status = 0
        self._retry_after = None
        self._parts = []
        self._size = 0
        self._interim = 0
        self._reused = reused
        self._received = False
        self._h11.send(_SENT)
        self._h11.send(_END)
        self.transport.write(request)
        return d

    def dataReceived(self, data: bytes) -> None:
        if self._waiting is None:
            # An idle connection has nothing to say: drop it.
            self._drop()
            return
        self._received = True
        self._h11.receive_data(data)
        self._read()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed = True
        self._pool._lost(self)
        if self.when_lost is not None:
            self.when_lost.callback(None)
        if self._waiting is None:
            return
        if self._status and self._h11.their_state is h11.SEND_BODY:
            # Perhaps a close-delimited body (HTTP/1.0): h11 decides.
            self._h11.receive_data(b"")
            self._read(reason)
            if self._waiting is None:
                return
        if self._status:
            self._finish(None, reason)
        elif self._reused and not self._received:
            self._fail(Failure(StaleConnection("connection closed by the server: " + reason.getErrorMessage())))
        else:
            self._fail(reason)

    def _read(self, lost: Failure | None = None) -> None:
        conn = self._h11
        while self._waiting is not None:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as e:
                self._broken(Failure(e) if lost is None else lost)
                return
            kind = type(event)
            if kind is h11.Data:
                self._size += len(event.data)
                if self._size > self._limit:
                    self._too_large()
                    return
                self._parts.append(event.data)
            elif kind is h11.Response:
                if not self._head(event):
                    return
            elif kind is h11.EndOfMessage:
                self._complete()
                return
            elif kind is h11.InformationalResponse:
                self._interim += 1
                if self._interim > MAX_INFORMATIONAL:
                    too_many = h11.RemoteProtocolError("more than %d interim answers" % (MAX_INFORMATIONAL,))
                    self._broken(Failure(too_many))
                    return
            elif event is h11.NEED_DATA or event is h11.PAUSED:
                return
            else:  # ConnectionClosed before the end of the answer
                self._broken(lost or Failure(h11.RemoteProtocolError("connection closed")))
                return

    def _head(self, response: h11.Response) -> bool:
        if len(response.headers) > MAX_HEADERS:
            self._broken(Failure(h11.RemoteProtocolError("more than %d header fields" % (MAX_HEADERS,))))
            return False
        # h11 bounds a head that arrives in parts; one read whole may be
        # larger.
        size = len(response.reason)
        for name, value in response.headers:
            size += len(name) + len(value) + 4
            if name == b"retry-after" and self._retry_after is None:
                self._retry_after = value.decode("latin-1")
        if size > MAX_HEAD:
            self._broken(Failure(h11.RemoteProtocolError("answer head larger than %d bytes" % (MAX_HEAD,))))
            return False
        self._status = response.status_code
        return True

    def _complete(self) -> None:
        conn = self._h11
        body = b"".join(self._parts)
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE and not conn.trailing_data[0]:
            conn.start_next_cycle()
            d, self._waiting = self._waiting, None
            self._pool._release(self)
        else:
            d, self._waiting = self._waiting, None
            if not self.closed:
                self.closed = True
                self.transport.loseConnection()
        assert d is not None
        d.callback(Answer(self._status, self._retry_after, body, None))

    def _too_large(self) -> None:
        self._drop()
        self._finish(None, Failure(BodyTooLarge("body larger than %d bytes" % (self._limit,))))

    def _broken(self, failure: Failure) -> None:
        self._drop()
        if self._status:
            self._finish(None, failure)
        else:
            self._fail(failure)

    def _finish(self, body: bytes | None, failure: Failure | None) -> None:
        d, self._waiting = self._waiting, None
        if d is not None:
            d.callback(Answer(self._status, self._retry_after, body, failure))

    def _fail(self, failure: Failure) -> None:
        d, self._waiting = self._waiting, None
        if d is not None:
            d.errback(failure)

    def _cancel(self, d: Deferred[Answer]) -> None:
        # The caller's timeout: the connection is dropped, never kept.
        self._waiting = None
        self._drop()

    def _drop(self) -> None:
        self._pool._lost(self)
        if not self.closed:
            self.closed = True
            self.transport.abortConnection()


class CallbackPool:
    """
    The callbacks' connections: up to C{per_origin} idle keep-alive
    connections kept per origin (the most recently used one taken first),
    each for at most C{idle_timeout} seconds (one timer for the pool).

    @ivar stats: C{connections} opened, C{reused}.
    """

    def __init__(self, reactor: Any, endpoints: Endpoints, per_origin: int, idle_timeout: float) -> None:
        """
        @param reactor: For the idle timeout.
        @param endpoints: How to reach an origin.
        @param per_origin: Idle connections kept per origin.
        @param idle_timeout: Seconds an idle connection is kept.
        """
        self._reactor = reactor
        self._endpoints = endpoints
        self._per_origin = per_origin
        self._idle_timeout = idle_timeout
        self._idle: dict[tuple[bytes, bytes, int], list[_Connection]] = {}
        self._sweep: Any = None
        self._closed = False
        self.stats = {"connections": 0, "reused": 0}

    def request(
        self, url: str, headers: Mapping[str, str], body: bytes, limit: int, fresh: bool = False
    ) -> Deferred[Answer]:
        """
        C{POST} C{body} to C{url} and read the answer.

        @param url: An absolute C{http} or C{https} URL.
        @param headers: The request's own header fields (not C{Host} nor
            C{Content-Length}); a value holding CR, LF or NUL is refused.
        @param body: The exact body.
        @param limit: Most bytes of the answer's body read.
        @param fresh: On a new connection (not a kept one).
        @return: Fires with the L{Answer}; fails with the connection's
            error, or L{StaleConnection} (a kept connection found closed).
            Cancelling it drops the connection.
        """
        try:
            origin, start = _target(url)
            fields = "".join([name + ": " + value + "\r\n" for name, value in headers.items()])
            if _FIELDS.fullmatch(fields) is None or fields.count("\n") != len(headers):
                raise ValueError("invalid request header field")
            request = b"%s%sContent-Length: %d\r\n\r\n%s" % (start, fields.encode("latin-1"), len(body), body)
        except Exception:
            return defer.fail()
        idle = None if fresh else self._idle.get(origin)
        if idle:
            connection = idle.pop()
            self.stats["reused"] += 1
            return connection.exchange(request, limit, True)
        return self._connect(origin, request, limit)

    def _connect(self, origin: tuple[bytes, bytes, int], request: bytes, limit: int) -> Deferred[Answer]:
        try:
            endpoint = self._endpoints.endpoint(origin)
        except Exception:
            return defer.fail()
        self.stats["connections"] += 1
        connecting = connectProtocol(endpoint, _Connection(self, origin))
        exchange: list[Deferred[Answer]] = []

        def cancel(d: Deferred[Answer]) -> None:
            if exchange:
                exchange[0].cancel()
            else:
                connecting.cancel()

        result: Deferred[Answer] = Deferred(cancel)

        def connected(connection: _Connection) -> None:
            if result.called:  # cancelled meanwhile
                connection._drop()
                return
            d = connection.exchange(request, limit, False)
            exchange.append(d)
            d.chainDeferred(result)

        def failed(failure: Failure) -> None:
            if not result.called:
                result.errback(failure)

        connecting.addCallbacks(connected, failed)
        return result

    def _release(self, connection: _Connection) -> None:
        if connection.closed:
            return
        idle = self._idle.setdefault(connection.origin, [])
        if len(idle) >= self._per_origin or self._closed:
            connection.closed = True
            connection.transport.loseConnection()
            return
        connection.idle_since = self._reactor.seconds()
        idle.append(connection)
        if self._sweep is None:
            self._sweep = self._reactor.callLater(self._idle_timeout, self._expire)

    def _lost(self, connection: _Connection) -> None:
        idle = self._idle.get(connection.origin)
        if idle is not None and connection in idle:
            idle.remove(connection)
            if not idle:
                del self._idle[connection.origin]

    def _expire(self) -> None:
        self._sweep = None
        deadline = self._reactor.seconds() - self._idle_timeout
        oldest = None
        for idle in list(self._idle.values()):
            for connection in [c for c in idle if c.idle_since <= deadline]:
                connection._drop()
            for connection in idle:
                oldest = connection.idle_since if oldest is None else min(oldest, connection.idle_since)
        if oldest is not None:
            self._sweep = self._reactor.callLater(oldest - deadline, self._expire)

    def idle(self) -> int:
        """
        @return: The idle connections kept.
        """
        return sum(len(idle) for idle in self._idle.values())

    def close(self) -> Deferred[None]:
        """
        Close every idle connection, and keep none from now on
        (connections carrying a request are closed after their answer, or
        by their caller's timeout).

        @return: Fires once they are closed.
        """
        self._closed = True
        if self._sweep is not None and self._sweep.active():
            self._sweep.cancel()
        self._sweep = None
        closing = []
        for idle in list(self._idle.values()):
            for connection in list(idle):
                connection.when_lost = Deferred()
                closing.append(connection.when_lost)
                connection.closed = True
                connection.transport.loseConnection()
        self._idle.clear()
        return defer.gatherResults(closing).addCallback(lambda _: None)

