"""
What the outbox and takeover tests share: a tenant's real HTTP events
endpoint (L{EventsApp}), a deliverer on a L{PostgresOutbox}, and a TCP
proxy in front of the PostgreSQL server that a test can cut and restore
(the database unreachable, for real).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.protocols.portforward import ProxyFactory
from twisted.trial.unittest import TestCase
from twisted.web import resource, server

from aiconnect.webhooks.delivery import EventDeliverer
from tests.integration.helpers import free_port
from tests.integration.provisioning_support import new_secret
from tests.integration.siprec_peer import verify_signature

TENANT = "tenant.example.net"


@dataclass(frozen=True)
class Target:
    """
    A tenant's callback settings (L{aiconnect.webhooks.http.WebhookTarget}).
    """

    domain: str
    callback_url: str
    signing_secret: str


class EventsApp(resource.Resource):
    """
    A tenant's application: records the events POSTed to C{/events} (a
    valid signature required), answering C{status}.

    @ivar events: The bodies received (answered 2xx), in arrival order.
    """

    isLeaf = True

    def __init__(self, status: int = 200) -> None:
        super().__init__()
        self.secret = new_secret()
        self.status = status
        self.events: list[dict[str, Any]] = []
        self.refused = 0
        self.port: Any = None

    def render_POST(self, request: Any) -> bytes:
        body = request.content.read()
        headers = {k.decode().lower(): v[0].decode() for k, v in request.requestHeaders.getAllRawHeaders()}
        if request.path != b"/events" or not verify_signature(self.secret, headers, body):
            request.setResponseCode(400)
            return b"bad"
        request.setResponseCode(self.status)
        if 200 <= self.status < 300:
            self.events.append(json.loads(body))
        else:
            self.refused += 1
        return b""

    def start(self, case: TestCase) -> EventsApp:
        self.port = reactor.listenTCP(0, server.Site(self), interface="127.0.0.1")
        case.addCleanup(self.port.stopListening)
        return self

    @property
    def target(self) -> Target:
        return Target(TENANT, f"http://127.0.0.1:{self.port.getHost().port}", self.secret)

    def by_session(self) -> dict[str, list[int]]:
        """
        @return: Session id -> the C{sequence} numbers received, in order.
        """
        sessions: dict[str, list[int]] = {}
        for event in self.events:
            sessions.setdefault(event["sessionId"], []).append(event["sequence"])
        return sessions


def deliverer(case: TestCase, outbox: Any, app: EventsApp) -> EventDeliverer:
    """
    A started L{EventDeliverer} on C{outbox} to C{app} (stopped at cleanup).
    """
    from aiconnect.webhooks.agent import pooled_client

    client = pooled_client(reactor)
    delivering = EventDeliverer(reactor, outbox, {TENANT: app.target}, http_client=client, backoff_base=0.05, backoff_max=0.2)
    delivering.start()
    case.addCleanup(client.pool.closeCachedConnections)
    case.addCleanup(delivering.stop)
    return delivering


class CutProxy:
    """
    A TCP proxy on 127.0.0.1 to the database's port: L{cut} closes it and
    every connection through it (the database unreachable), L{restore}
    listens again on the same port.
    """

    def __init__(self, case: TestCase, port: int) -> None:
        self._target = port
        self.port = free_port(both=False)
        self._listening: Any = None
        self._factory = ProxyFactory("127.0.0.1", port)
        self._protocols: list[Any] = []
        build = self._factory.buildProtocol

        def tracked(address: Any) -> Any:
            protocol = build(address)
            self._protocols.append(protocol)
            return protocol

        self._factory.buildProtocol = tracked  # type: ignore[method-assign]
        self.restore()
        case.addCleanup(self.cut)

    def restore(self) -> None:
        self._listening = reactor.listenTCP(self.port, self._factory, interface="127.0.0.1")

    def cut(self) -> Deferred[Any]:
        listening, self._listening = self._listening, None
        if listening is None:
            return DeferredList([])
        for protocol in self._protocols:
            if protocol.transport is not None:
                protocol.transport.abortConnection()
            peer = getattr(protocol, "peer", None)
            if peer is not None and peer.transport is not None:
                peer.transport.abortConnection()
        self._protocols = []
        return listening.stopListening() or DeferredList([])
