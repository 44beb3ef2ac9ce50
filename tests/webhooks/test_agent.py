# -*- test-case-name: tests.webhooks.test_agent -*-
"""
Tests for L{aiconnect.webhooks.agent}, the callbacks' client, over real
loopback sockets: persistent connections reused by events and C{newCall},
signed requests, redirects not followed, the answer size cap, the timeout,
an HTTP/1.0 receiver, and IP-literal hosts connected to without name
resolution.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.error import SchemeNotSupported
from twisted.web.server import Site

from aiconnect import events
from aiconnect.config import TenantConfig
from aiconnect.webhooks import EventDeliverer, EventOutbox, NewCallClient
from aiconnect.webhooks.agent import MAX_IN_FLIGHT, CallbackClient, pooled_client, request_uri
from tests.fakes import wait_until
from tests.integration.test_hardening_events import start_http10_server
from tests.webhooks.helpers import DOMAIN, SECRET, Recorder, independent_signature_ok


class _CountingSite(Site):
    """
    A site that counts the connections it accepted.
    """

    connections = 0

    def buildProtocol(self, addr: Any) -> Any:
        self.connections += 1
        return super().buildProtocol(addr)


class PooledClientTests(TestCase):
    """
    L{pooled_client} against a twisted.web application on 127.0.0.1.
    """

    timeout = 30

    def setUp(self) -> None:
        self.recorder = Recorder()
        self.site = _CountingSite(self.recorder)
        self.site.noisy = False
        listening = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        self.url = "http://127.0.0.1:%d" % (listening.getHost().port,)
        self.client = pooled_client(reactor)
        self.addCleanup(self.client.pool.closeCachedConnections)
        directory = tempfile.mkdtemp(prefix="aiconnect-agent-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.path = str(Path(directory) / "events.sqlite3")

    def deliverer(self, url: str, **kwargs: Any) -> tuple[EventOutbox, EventDeliverer]:
        outbox = EventOutbox(self.path, clock=reactor.seconds)
        self.addCleanup(outbox.close)
        tenant = TenantConfig(domain=DOMAIN, callback_url=url, signing_secret=SECRET)
        kwargs.setdefault("request_timeout", 5.0)
        deliverer = EventDeliverer(reactor, outbox, {DOMAIN: tenant}, http_client=self.client, **kwargs)
        self.addCleanup(deliverer.stop)
        deliverer.start()
        return outbox, deliverer

    @staticmethod
    def emit(outbox: EventOutbox, session: str, i: int) -> None:
        outbox.emit(
            DOMAIN,
            session,
            events.session_completed(
                session, tenant=DOMAIN, reason=events.COMPLETED_INBOUND_BYE, duration=float(i), now=1700000000.0
            ),
        )

    async def test_connections_reused(self) -> None:
        """
        Two hundred events of forty sessions emitted at once, then twenty of
        one session one after the other: all delivered signed, in order per
        session, over at most C{MAX_IN_FLIGHT} connections, the sequential
        ones over connections already open.
        """
        outbox, deliverer = self.deliverer(self.url)
        for i in range(5):
            for s in range(40):
                self.emit(outbox, "ses_%02d" % (s,), i)
        await wait_until(lambda: deliverer.stats["delivered"] >= 200 or deliverer.stats["retried"], 20)
        concurrent = self.site.connections
        for i in range(20):
            self.emit(outbox, "ses_seq", i)
            await wait_until(lambda: deliverer.stats["delivered"] >= 201 + i or deliverer.stats["retried"], 5)
        stats = dict(deliverer.stats)
        self.assertEqual((stats["delivered"], stats["retried"], stats["attempts"]), (220, 0, 220), stats)
        self.assertLessEqual(concurrent, MAX_IN_FLIGHT)
        self.assertEqual(self.site.connections, concurrent, "sequential events opened no connection")
        for request in self.recorder.requests:
            self.assertEqual(request.path, "/events")
            self.assertEqual(request.headers["content-type"], "application/json")
            self.assertTrue(request.headers["user-agent"].startswith("aiconnect/"))
            self.assertEqual(request.headers["webhook-id"], request.json["eventId"])
            self.assertTrue(independent_signature_ok(SECRET, request.headers, request.body))
        for s in ["ses_%02d" % (s,) for s in range(40)] + ["ses_seq"]:
            durations = [r.json["duration"] for r in self.recorder.requests if r.json["sessionId"] == s]
            self.assertEqual(durations, sorted(durations))

    async def test_new_call_shares_connections(self) -> None:
        """
        Sequential C{newCall}s reuse one connection; a redirect is an
        answer (not followed), an answer over the size cap is unreadable,
        and a request not answered in time is a timeout.
        """
        tenant = TenantConfig(domain=DOMAIN, callback_url=self.url, signing_secret=SECRET)
        client = NewCallClient(reactor, self.client, max_body=1024)
        self.recorder.default = (200, {}, b'{"action": "reject"}')
        for _ in range(10):
            result = await client.post_new_call(tenant, {"sessionId": "s1"}, 5.0)
            self.assertEqual(result.answer, {"action": "reject"})
        self.assertEqual(self.site.connections, 1)
        self.recorder.script.extend(
            [(302, {"Location": self.url + "/elsewhere"}, b""), (200, {}, b"x" * 4096), None]
        )
        with capturedLogs():
            redirected = await client.post_new_call(tenant, {"sessionId": "s2"}, 5.0)
            large = await client.post_new_call(tenant, {"sessionId": "s3"}, 5.0)
            late = await client.post_new_call(tenant, {"sessionId": "s4"}, 0.3)
        self.assertEqual((redirected.error, redirected.status), ("HTTP 302", 302))
        self.assertEqual(large.error, "body unreadable: body larger than 1024 bytes")
        self.assertEqual(late.error, "timeout after 0.3 s")
        self.assertEqual([r.path for r in self.recorder.requests][-3:], ["/newCall"] * 3)
        self.assertEqual(len(self.recorder.requests), 13)
        self.assertTrue(all(independent_signature_ok(SECRET, r.headers, r.body) for r in self.recorder.requests))

    async def test_http10_receiver(self) -> None:
        """
        A receiver that closes every connection after its answer: each
        event is delivered on its first attempt (a request that met a
        closed pooled connection is sent again at once).
        """
        srv = start_http10_server(self)
        outbox, deliverer = self.deliverer("http://127.0.0.1:%d" % (srv.server_address[1],), backoff_base=5.0)
        for i in range(20):
            self.emit(outbox, "ses_http10", i)
        await wait_until(lambda: deliverer.stats["delivered"] >= 20 or deliverer.stats["retried"], 10)
        self.assertEqual((deliverer.stats["delivered"], deliverer.stats["retried"]), (20, 0))


class EndpointTests(SynchronousTestCase):
    """
    How L{pooled_client}'s callbacks client connects.
    """

    def request(self, client: CallbackClient, url: bytes) -> Any:
        return client.callbacks.request(url.decode("ascii"), {}, b"{}", 1024)

    def test_ip_literal_connects_at_once(self) -> None:
        """
        An IPv4 or IPv6 literal host is connected to at once, without asking
        the reactor's name resolver (which runs in a thread pool).
        """
        memory = MemoryReactorClock()
        asked: list[str] = []
        memory.nameResolver = type("Resolver", (), {"resolveHostName": lambda *a, **k: asked.append(a[2])})()
        client = pooled_client(memory)
        self.request(client, b"http://127.0.0.1:8080/events")
        self.request(client, b"http://[::1]:8081/events")
        self.assertEqual([(host, port) for host, port, *_ in memory.tcpClients], [("127.0.0.1", 8080), ("::1", 8081)])
        self.request(client, b"http://app.example:8082/events")
        self.assertEqual(asked, ["app.example"])

    def test_unsupported_scheme(self) -> None:
        """
        A scheme other than C{http} or C{https} fails the request.
        """
        client = pooled_client(MemoryReactorClock())
        self.failureResultOf(self.request(client, b"ftp://127.0.0.1/events"), SchemeNotSupported)

    def test_request_uri(self) -> None:
        """
        A callback URL's request bytes: ASCII as is, an internationalized
        host in IDNA form, other text percent-encoded.
        """
        self.assertEqual(request_uri("http://127.0.0.1:8080/events"), b"http://127.0.0.1:8080/events")
        self.assertEqual(request_uri("https://b\u00fccher.example/h\u00e9/events"), b"https://xn--bcher-kva.example/h%C3%A9/events")
