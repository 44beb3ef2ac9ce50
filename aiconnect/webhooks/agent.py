# -*- test-case-name: tests.webhooks.test_agent,tests.webhooks.test_client11,tests.webhooks.test_delivery,tests.webhooks.test_newcall -*-
"""
The callbacks' HTTP client as the service builds it: the lean HTTP/1.1
client of L{aiconnect.webhooks.client11} for the callbacks (used by
L{aiconnect.webhooks.http.post}), and treq over a persistent
L{twisted.web.client.Agent} for the other users (the recording upload),
both reaching an origin through the same kept endpoints.

This module owns L{CallbackClient}, L{pooled_client} (as many idle
connections kept per origin as requests may be in flight) and the
constants of that pool.
"""

from __future__ import annotations

from typing import Any

from treq.client import HTTPClient
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.web.client import Agent, HTTPConnectionPool

from aiconnect.webhooks.client11 import CallbackPool, Endpoints, request_uri

__all__ = [
    "IDLE_TIMEOUT",
    "MAX_IN_FLIGHT",
    "CallbackClient",
    "Pools",
    "pooled_client",
    "request_uri",
]

#: Event requests in flight at most (L{aiconnect.webhooks.EventDeliverer}'s
#: default), and so idle connections worth keeping per host.  A request
#: takes at least a reactor turn to be answered, and a busy node's turns
#: last 20-60 ms: at 32 in flight the delivery of 200 forwarded calls/s (800
#: events/s) fell behind on a node whose SIP side kept up (issue 12,
#: bench/signalling.py --trace: 2,600 events waiting after 10 s).
MAX_IN_FLIGHT = 96

#: Seconds an idle pooled connection is kept.  Most servers close idle
#: connections sooner (a request racing such a close is sent again at once
#: on a new connection, see L{aiconnect.webhooks.http.post}); under load
#: none is idle that long.
IDLE_TIMEOUT = 60.0


class Pools:
    """
    The connections of a L{CallbackClient}: the callbacks' and treq's.

    @ivar callbacks: The callbacks' L{CallbackPool}.
    @ivar agent_pool: treq's L{HTTPConnectionPool}.
    """

    def __init__(self, callbacks: CallbackPool, agent_pool: HTTPConnectionPool) -> None:
        self.callbacks = callbacks
        self.agent_pool = agent_pool
        self.maxPersistentPerHost = agent_pool.maxPersistentPerHost

    def closeCachedConnections(self) -> Deferred[None]:
        """
        Close every idle connection of both (on stop).

        @return: Fires once they are closed.
        """
        return defer.gatherResults([self.callbacks.close(), self.agent_pool.closeCachedConnections()]).addCallback(
            lambda _: None
        )


class CallbackClient(HTTPClient):
    """
    treq's client over an L{Agent} (for the recording upload) with the
    callbacks' own L{CallbackPool} (C{callbacks}, which
    L{aiconnect.webhooks.http.post} uses).

    @ivar agent: The agent.
    @ivar callbacks: The callbacks' client.
    @ivar pool: Both pools (closed on stop by its owner).
    """

    def __init__(self, agent: Agent, pool: HTTPConnectionPool, callbacks: CallbackPool) -> None:
        """
        @param agent: The agent, over C{pool}.
        @param pool: The agent's connection pool.
        @param callbacks: The callbacks' client.
        """
        super().__init__(agent)
        self.agent = agent
        self.callbacks = callbacks
        self.pool = Pools(callbacks, pool)


def pooled_client(
    reactor: Any, *, per_host: int = 2 * MAX_IN_FLIGHT, idle_timeout: float = IDLE_TIMEOUT, tls: Any = None
) -> CallbackClient:
    """
    The callbacks' client: up to C{per_host} idle connections kept per
    origin (the event requests in flight and as many C{newCall}s by
    default) for C{idle_timeout} seconds, by the callbacks' client and by
    the agent alike.

    @param reactor: The reactor.
    @param per_host: Idle connections kept per origin.
    @param idle_timeout: Seconds an idle connection is kept.
    @param tls: The trust of C{https} origins, an
        L{twisted.web.iweb.IPolicyForHTTPS}; by default
        L{twisted.web.client.BrowserLikePolicyForHTTPS} (the platform's
        trust store, host name verified).
    @return: The client; its C{pool} is to be closed on stop.
    """
    endpoints = Endpoints(reactor, tls)
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = per_host
    pool.cachedConnectionTimeout = idle_timeout
    agent = Agent.usingEndpointFactory(reactor, endpoints, pool=pool)
    return CallbackClient(agent, pool, CallbackPool(reactor, endpoints, per_host, idle_timeout))
