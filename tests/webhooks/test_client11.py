# -*- test-case-name: tests.webhooks.test_client11 -*-
"""
Tests for L{aiconnect.webhooks.client11}, the callbacks' lean HTTP/1.1
client, through L{aiconnect.webhooks.http.post} over real loopback sockets:
twisted.web applications, and raw TCP peers for servers that misbehave.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from typing import Any

from service_identity import VerificationError
from twisted.internet import defer, reactor, ssl
from twisted.internet.error import CannotListenError, ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import BrowserLikePolicyForHTTPS
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from aiconnect.webhooks.agent import pooled_client
from aiconnect.webhooks.client11 import MAX_HEAD, MAX_HEADERS, MAX_INFORMATIONAL, CallbackPool, Endpoints
from aiconnect.webhooks.http import Reply, post
from tests.fakes import wait_until
from tests.integration.helpers import Certificates
from tests.webhooks.helpers import Recorder

_HEADERS = {"Content-Type": "application/json", "webhook-id": "msg_1"}


class _CountingSite(Site):
    """
    A site counting the connections it accepted.
    """

    noisy = False
    connections = 0

    def buildProtocol(self, addr: Any) -> Any:
        self.connections += 1
        return super().buildProtocol(addr)


class _Chunked(Resource):
    """
    Answers in three writes without a length: chunked over HTTP/1.1.
    """

    isLeaf = True

    def render_POST(self, request: Request) -> int:
        request.write(b"one,")
        request.write(b"two,")
        reactor.callLater(0, lambda: (request.write(b"three"), request.finish()))
        return NOT_DONE_YET


class _Peer(Protocol):
    """
    A raw HTTP server connection: each complete request (head and
    C{Content-Length} body) is handed to its factory's C{answer}.
    """

    def connectionMade(self) -> None:
        self.buffer = b""
        self.served = 0
        self.factory.peers.append(self)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            found = re.search(rb"(?i)\r\ncontent-length: *(\d+)", self.buffer[:end])
            total = end + 4 + (int(found.group(1)) if found else 0)
            if len(self.buffer) < total:
                return
            self.factory.requests.append(self.buffer[:total])
            self.buffer = self.buffer[total:]
            self.served += 1
            self.factory.answer(self, self.served)

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:
        self.factory.closed += 1


class _PeerFactory(Factory):
    """
    A raw HTTP server: C{answer(peer, n)} answers the C{n}th request of a
    connection by writing to C{peer.transport}.
    """

    protocol = _Peer
    noisy = False

    def __init__(self, answer: Callable[[_Peer, int], None]) -> None:
        self.answer = answer
        self.peers: list[_Peer] = []
        self.requests: list[bytes] = []
        self.closed = 0


def _ok(peer: _Peer, body: bytes = b"ok") -> None:
    peer.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


class CallbackPoolTests(TestCase):
    """
    L{post} with a L{pooled_client} against servers on 127.0.0.1.
    """

    timeout = 30

    def setUp(self) -> None:
        self.client = pooled_client(reactor, per_host=4)
        self.addCleanup(self.client.pool.closeCachedConnections)
        self.pool = self.client.callbacks

    def serve(self, site: Any, interface: str = "127.0.0.1") -> str:
        """
        Listen with C{site} (a L{Site} or a L{_PeerFactory}) on
        C{interface}; return its base URL.
        """
        port = reactor.listenTCP(0, site, interface=interface)
        self.addCleanup(port.stopListening)
        host = "[%s]" % (interface,) if ":" in interface else interface
        return "http://%s:%d" % (host, port.getHost().port)

    def raw(self, answer: Callable[[_Peer, int], None]) -> tuple[_PeerFactory, str]:
        """
        A raw server answering with C{answer}, and its URL.
        """
        factory = _PeerFactory(answer)
        url = self.serve(factory) + "/events"

        def close() -> None:
            for peer in factory.peers:
                peer.transport.abortConnection()

        self.addCleanup(close)
        return factory, url

    def post(self, url: str, timeout: float = 5.0, limit: int = 1024, stats: dict[str, int] | None = None) -> Any:
        return defer.ensureDeferred(post(reactor, self.client, url, b'{"a": 1}', _HEADERS, timeout, limit, stats))

    async def test_keep_alive(self) -> None:
        """
        Sequential requests share one connection; concurrent ones open one
        each, of which at most C{per_host} (4) are kept idle.
        """
        recorder = Recorder()
        site = _CountingSite(recorder)
        url = self.serve(site) + "/events"
        for _ in range(10):
            reply = await self.post(url)
            self.assertEqual(reply, Reply(200, None, b"", None))
        self.assertEqual((site.connections, self.pool.stats), (1, {"connections": 1, "reused": 9}))
        self.assertEqual(self.pool.idle(), 1)
        recorder.script.extend([None] * 6)
        pending = [self.post(url) for _ in range(7)]  # one kept, six new
        await wait_until(lambda: len(recorder.hanging) == 6)
        for request in recorder.hanging:
            request.write(b"late")
            request.finish()
        replies = await defer.gatherResults(pending)
        self.assertEqual(sorted(r.body for r in replies), [b""] + [b"late"] * 6)
        self.assertEqual(site.connections, 7)
        self.assertEqual(self.pool.idle(), 4)
        self.assertEqual([r.headers["webhook-id"] for r in recorder.requests], ["msg_1"] * 17)
        self.assertEqual(recorder.requests[0].body, b'{"a": 1}')

    async def test_chunked(self) -> None:
        """
        A chunked answer is read whole, and its connection kept.
        """
        site = _CountingSite(_Chunked())
        url = self.serve(site) + "/events"
        for _ in range(2):
            reply = await self.post(url)
            self.assertEqual((reply.status, reply.body), (200, b"one,two,three"))
        self.assertEqual(site.connections, 1)

    async def test_chunked_over_limit(self) -> None:
        """
        A chunked answer longer than the limit is read no further: the
        body is unreadable, the connection dropped.
        """
        chunk = b"400\r\n" + b"x" * 1024 + b"\r\n"
        factory, url = self.raw(
            lambda peer, n: peer.transport.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk)
        )
        reply = await self.post(url, limit=1000)
        self.assertEqual((reply.status, reply.body, reply.body_error), (200, None, "body larger than 1000 bytes"))
        await wait_until(lambda: factory.closed == 1)
        self.assertEqual(self.pool.idle(), 0)

    async def test_content_length_over_limit(self) -> None:
        """
        A C{Content-Length} body over the limit: unreadable, the connection
        dropped; the next request opens another.
        """
        factory, url = self.raw(lambda peer, n: _ok(peer, b"y" * 2000))
        reply = await self.post(url, limit=1000)
        self.assertEqual(reply.body_error, "body larger than 1000 bytes")
        reply = await self.post(url, limit=4000)
        self.assertEqual(reply.body, b"y" * 2000)
        self.assertEqual(len(factory.peers), 2)

    async def test_http10_close_delimited(self) -> None:
        """
        An HTTP/1.0 answer without a length ends when the server closes:
        read whole, the connection not kept.
        """

        def answer(peer: _Peer, n: int) -> None:
            peer.transport.write(b"HTTP/1.0 200 OK\r\nRetry-After: 7\r\n\r\nclose-")
            peer.transport.write(b"delimited")
            peer.transport.loseConnection()

        factory, url = self.raw(answer)
        for _ in range(2):
            reply = await self.post(url)
            self.assertEqual(reply, Reply(200, "7", b"close-delimited", None))
        self.assertEqual((len(factory.peers), self.pool.idle()), (2, 0))

    async def test_connection_close(self) -> None:
        """
        An HTTP/1.1 answer with C{Connection: close}: its connection is not
        kept.
        """

        def answer(peer: _Peer, n: int) -> None:
            peer.transport.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")

        factory, url = self.raw(answer)
        reply = await self.post(url)
        self.assertEqual(reply.status, 204)
        await wait_until(lambda: factory.closed == 1)
        self.assertEqual(self.pool.idle(), 0)

    async def test_stale_connection_retried_once(self) -> None:
        """
        A kept connection that the server closes as the next request
        arrives: the request is sent again at once on a new connection and
        delivered, counted as a stale-connection retry.
        """

        def answer(peer: _Peer, n: int) -> None:
            if n == 1:
                _ok(peer)
            else:
                peer.transport.loseConnection()

        factory, url = self.raw(answer)
        stats: dict[str, int] = {}
        self.assertEqual((await self.post(url, stats=stats)).body, b"ok")
        reply = await self.post(url, stats=stats)
        self.assertEqual((reply.body, stats), (b"ok", {"stale_connection_retries": 1}))
        self.assertEqual((len(factory.peers), len(factory.requests)), (2, 3))

    async def test_new_connection_not_retried(self) -> None:
        """
        A new connection closed without an answer is a failure, not sent
        again.
        """
        factory, url = self.raw(lambda peer, n: peer.transport.loseConnection())
        stats: dict[str, int] = {}
        failure = await self.assertFailure(self.post(url, stats=stats), ConnectionDone)
        self.assertIsInstance(failure, ConnectionDone)
        self.assertEqual((len(factory.requests), stats), (1, {}))

    async def test_idle_connection_closed_by_server(self) -> None:
        """
        A kept connection that the server closes while idle leaves the
        pool; the next request opens a new one without any retry.
        """
        factory, url = self.raw(lambda peer, n: _ok(peer))
        stats: dict[str, int] = {}
        await self.post(url, stats=stats)
        self.assertEqual(self.pool.idle(), 1)
        factory.peers[0].transport.loseConnection()
        await wait_until(lambda: self.pool.idle() == 0)
        self.assertEqual((await self.post(url, stats=stats)).status, 200)
        self.assertEqual((len(factory.peers), stats), (2, {}))

    async def test_head_too_large(self) -> None:
        """
        An answer whose head is over L{MAX_HEAD} bytes, or has over
        L{MAX_HEADERS} fields, fails the request and its connection.
        """
        big = b"X-Pad: " + b"p" * MAX_HEAD + b"\r\n"
        many = b"".join(b"X-%d: v\r\n" % (i,) for i in range(MAX_HEADERS + 1))
        for extra in (big, many):
            head = b"HTTP/1.1 200 OK\r\n" + extra + b"Content-Length: 0\r\n\r\n"
            factory, url = self.raw(lambda peer, n: peer.transport.write(head))
            with self.assertRaises(Exception) as caught:
                await self.post(url)
            self.assertEqual(type(caught.exception).__name__, "RemoteProtocolError")
            await wait_until(lambda: factory.closed == 1)
        self.assertEqual(self.pool.idle(), 0)

    async def test_interim_answers(self) -> None:
        """
        Interim (1xx) answers before the final one are skipped, up to
        L{MAX_INFORMATIONAL}; more fail the request.
        """
        for count, works in ((MAX_INFORMATIONAL, True), (MAX_INFORMATIONAL + 1, False)):
            interim = b"HTTP/1.1 100 Continue\r\n\r\n" * count
            factory, url = self.raw(lambda peer, n: (peer.transport.write(interim), _ok(peer)))
            if works:
                self.assertEqual((await self.post(url)).body, b"ok")
            else:
                with self.assertRaises(Exception) as caught:
                    await self.post(url)
                self.assertIn("interim", str(caught.exception))

    async def test_timeout_drops_connection(self) -> None:
        """
        A server that does not answer in time: the request times out, its
        connection is closed and never reused.
        """
        factory, url = self.raw(lambda peer, n: None if len(factory.requests) == 1 else _ok(peer))
        await self.assertFailure(self.post(url, timeout=0.2), defer.TimeoutError)
        await wait_until(lambda: factory.closed == 1)
        self.assertEqual(self.pool.idle(), 0)
        self.assertEqual((await self.post(url)).status, 200)
        self.assertEqual(len(factory.peers), 2)

    async def test_redirect_not_followed(self) -> None:
        """
        A 3xx is the answer: its C{Location} is not requested.
        """
        recorder = Recorder()
        url = self.serve(_CountingSite(recorder))
        recorder.script.append((302, {"Location": url + "/elsewhere"}, b""))
        reply = await self.post(url + "/newCall")
        self.assertEqual(reply.status, 302)
        self.assertEqual([r.path for r in recorder.requests], ["/newCall"])

    async def test_ipv6_literal(self) -> None:
        """
        An IPv6 literal host (C{[::1]}) is reached, its C{Host} field in
        brackets.
        """
        factory = _PeerFactory(lambda peer, n: _ok(peer))
        try:
            url = self.serve(factory, "::1") + "/events?x=1"
        except CannotListenError as e:
            raise self.skipTest("no IPv6 loopback on this machine: %s" % (e,))
        self.addCleanup(lambda: [p.transport.abortConnection() for p in factory.peers])
        self.assertEqual((await self.post(url)).status, 200)
        port = url.split("]:")[1].split("/")[0]
        start = b"POST /events?x=1 HTTP/1.1\r\nHost: [::1]:%s\r\n" % (port.encode(),)
        self.assertTrue(factory.requests[0].startswith(start))

    async def test_header_injection_refused(self) -> None:
        """
        A header value holding CR or LF is never sent.
        """
        factory, url = self.raw(lambda peer, n: _ok(peer))
        d = post(reactor, self.client, url, b"{}", {"X-Bad": "a\r\nInjected: 1"}, 5.0, 1024)
        await self.assertFailure(d, ValueError)
        self.assertEqual(factory.requests, [])


class IdleTimeoutTests(TestCase):
    """
    The idle timeout of L{CallbackPool}, on a L{Clock}.
    """

    timeout = 30

    async def test_idle_expiry(self) -> None:
        """
        A connection idle for C{idle_timeout} seconds is closed; one used
        meanwhile is kept; closing the pool closes the idle ones, and a
        request answered afterwards keeps no connection.
        """
        clock = Clock()
        factory = _PeerFactory(lambda peer, n: _ok(peer))
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        url = "http://127.0.0.1:%d/" % (port.getHost().port,)
        pool = CallbackPool(clock, Endpoints(reactor), 4, 60.0)
        first = [pool.request(url, {}, b"", 100) for _ in range(2)]
        await defer.gatherResults(first)
        self.assertEqual(pool.idle(), 2)
        clock.advance(30)
        await pool.request(url, {}, b"", 100)
        clock.advance(30)
        self.assertEqual(pool.idle(), 1)
        await wait_until(lambda: factory.closed == 1)
        clock.advance(30)
        self.assertEqual(pool.idle(), 0)
        await wait_until(lambda: factory.closed == 2)
        await pool.request(url, {}, b"", 100)
        await pool.close()
        self.assertEqual((pool.idle(), clock.getDelayedCalls()), (0, []))
        await wait_until(lambda: factory.closed == 3)
        self.assertEqual((await pool.request(url, {}, b"", 100)).status, 200)
        self.assertEqual((pool.idle(), clock.getDelayedCalls()), (0, []))
        await wait_until(lambda: factory.closed == 4)


class TlsTests(TestCase):
    """
    C{https} callbacks: the server's certificate verified against the
    trust given, with its name.
    """

    timeout = 30

    def listen(self, certs: Certificates) -> str:
        self.addCleanup(shutil.rmtree, certs.dir, True)
        key = ssl.PrivateCertificate.loadPEM(certs.cert.read_bytes() + certs.key.read_bytes())
        recorder = Recorder()
        self.site = _CountingSite(recorder)
        port = reactor.listenSSL(0, self.site, key.options(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        trust = BrowserLikePolicyForHTTPS(trustRoot=ssl.Certificate.loadPEM(certs.ca_pem))
        self.client = pooled_client(reactor, tls=trust)
        self.addCleanup(self.client.pool.closeCachedConnections)
        return "https://127.0.0.1:%d/events" % (port.getHost().port,)

    async def test_trusted(self) -> None:
        """
        A server whose certificate the trust root signed for 127.0.0.1 is
        answered over TLS, its connection kept.
        """
        url = self.listen(Certificates())
        for _ in range(3):
            reply = await post(reactor, self.client, url, b"{}", _HEADERS, 5.0, 1024)
            self.assertEqual(reply.status, 200)
        self.assertEqual(self.site.connections, 1)

    async def test_wrong_name(self) -> None:
        """
        A certificate of the trusted authority for another name fails the
        request.
        """
        url = self.listen(Certificates(names=("other.example",)))
        with self.assertRaises(Exception) as caught:
            await post(reactor, self.client, url, b"{}", _HEADERS, 5.0, 1024)
        self.assertIsInstance(caught.exception, VerificationError)
        self.assertEqual(self.site.connections, 1)
