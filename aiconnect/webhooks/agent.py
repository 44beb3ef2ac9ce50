# -*- test-case-name: tests.webhooks.test_agent,tests.webhooks.test_delivery,tests.webhooks.test_newcall -*-
"""
The callbacks' HTTP client: one persistent connection pool and a
L{twisted.web.client.Agent} used directly, so that a callback costs no URL
parsing, no IDNA check, no name resolution and, most of the time, no new
connection.

This module owns L{CallbackClient} (treq's client, which the recording
upload uses, that also exposes its C{agent} for
L{aiconnect.webhooks.http.post}), L{pooled_client} (the pool: as many idle
connections kept per host as requests may be in flight), the endpoint of
each callback origin (made once and kept; an IP-literal host is connected
to directly, never through the resolver's thread pool), L{request_uri}
(a callback URL's request bytes, computed once per URL) and
L{BytesProducer} (a request body written at once, no cooperator).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import hyperlink
from treq.client import HTTPClient
from twisted.internet import defer
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IConsumer, IStreamClientEndpoint
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool, URI
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

__all__ = [
    "IDLE_TIMEOUT",
    "MAX_IN_FLIGHT",
    "BytesProducer",
    "CallbackClient",
    "pooled_client",
    "request_uri",
]

#: Event requests in flight at most (L{aiconnect.webhooks.EventDeliverer}'s
#: default), and so idle connections worth keeping per host.
MAX_IN_FLIGHT = 32

#: Seconds an idle pooled connection is kept.  Most servers close idle
#: connections sooner (a request racing such a close is sent again at once,
#: see L{aiconnect.webhooks.http.post}); under load none is idle that long.
IDLE_TIMEOUT = 60.0

# Callback origins whose endpoints are kept: they come from the
# configuration, so this is a safety cap, not a working limit.
_MAX_ENDPOINTS = 1024


@lru_cache(maxsize=_MAX_ENDPOINTS)
def request_uri(url: str) -> bytes:
    """
    The bytes an L{Agent} takes for a callback URL: an internationalized
    host name in IDNA form, other non-ASCII text percent-encoded (what treq
    sends for the same URL).  Computed once per URL.

    @param url: An absolute C{http} or C{https} URL.
    @return: Its ASCII form.
    """
    if url.isascii():
        return url.encode("ascii")
    return hyperlink.URL.from_text(url).to_uri().to_text().encode("ascii")


@implementer(IBodyProducer)
class BytesProducer:
    """
    A request body that is already in memory: written at once when the
    request starts (treq's producer for bytes runs through a cooperator,
    one timer per request).
    """

    def __init__(self, body: bytes) -> None:
        """
        @param body: The exact body.
        """
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self._body)
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@implementer(IAgentEndpointFactory)
class _Endpoints:
    """
    The endpoint of each callback origin, made once and kept: the agent
    otherwise builds one per request (checking the host name with IDNA
    each time, and for C{https} building a TLS context).  An IP-literal
    host gets a plain TCP endpoint: no name resolution in a thread.
    """

    def __init__(self, reactor: Any) -> None:
        """
        @param reactor: The reactor to connect with.
        """
        self._reactor = reactor
        self._tls = BrowserLikePolicyForHTTPS()
        self._endpoints: dict[tuple[bytes, bytes, int], IStreamClientEndpoint] = {}

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        key = (uri.scheme, uri.host, uri.port)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            if len(self._endpoints) >= _MAX_ENDPOINTS:
                self._endpoints.clear()
            endpoint = self._endpoints[key] = self._make(uri)
        return endpoint

    def _make(self, uri: URI) -> IStreamClientEndpoint:
        if uri.scheme not in (b"http", b"https"):
            raise SchemeNotSupported("unsupported scheme: %r" % (uri.scheme,))
        host = uri.host.decode("ascii")
        endpoint: IStreamClientEndpoint
        if isIPAddress(host):
            endpoint = TCP4ClientEndpoint(self._reactor, host, uri.port)
        elif isIPv6Address(host):
            endpoint = TCP6ClientEndpoint(self._reactor, host, uri.port)
        else:
            endpoint = HostnameEndpoint(self._reactor, uri.host, uri.port)
        if uri.scheme == b"https":
            endpoint = wrapClientTLS(self._tls.creatorForNetloc(uri.host, uri.port), endpoint)
        return endpoint


class CallbackClient(HTTPClient):
    """
    treq's client over an L{Agent} and its L{HTTPConnectionPool}; the
    callbacks use C{agent} directly (L{aiconnect.webhooks.http.post}),
    other users (the recording upload) use the treq methods.

    @ivar agent: The agent.
    @ivar pool: Its connection pool (closed on stop by its owner).
    """

    def __init__(self, agent: Agent, pool: HTTPConnectionPool) -> None:
        """
        @param agent: The agent, over C{pool}.
        @param pool: The connection pool.
        """
        super().__init__(agent)
        self.agent = agent
        self.pool = pool


def pooled_client(
    reactor: Any, *, per_host: int = 2 * MAX_IN_FLIGHT, idle_timeout: float = IDLE_TIMEOUT
) -> CallbackClient:
    """
    The callbacks' client: a persistent pool keeping up to C{per_host} idle
    connections per origin (the event requests in flight and as many
    C{newCall}s by default) for C{idle_timeout} seconds.

    @param reactor: The reactor.
    @param per_host: Idle connections kept per origin.
    @param idle_timeout: Seconds an idle connection is kept.
    @return: The client; its C{pool} is to be closed on stop.
    """
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = per_host
    pool.cachedConnectionTimeout = idle_timeout
    agent = Agent.usingEndpointFactory(reactor, _Endpoints(reactor), pool=pool)
    return CallbackClient(agent, pool)
