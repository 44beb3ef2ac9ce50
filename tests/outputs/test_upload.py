# -*- test-case-name: tests.outputs.test_upload -*-
"""
Tests for L{aiconnect.outputs.upload}: a PUT streamed from disk, retried
with back-off and C{Retry-After}, given up after C{retry_for}, and URLs
that never show their query string.
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import Any

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.iweb import UNKNOWN_LENGTH
from twisted.web.server import Site

from aiconnect.outputs.upload import Uploader
from aiconnect.text import public_url
from aiconnect.webhooks.http import backoff

SECRET = "X-Amz-Signature=deadbeefcafe"


class _Bucket(Resource):
    """
    An object store taking PUTs: answers the statuses of C{script} in turn
    (with C{Retry-After} where given), then 200; records every request.
    """

    isLeaf = True

    def __init__(self, script: list[tuple[int, str | None]], clock: Any) -> None:
        super().__init__()
        self.script = list(script)
        self.clock = clock
        self.requests: list[dict[str, Any]] = []
        self.stored: bytes | None = None

    def render_PUT(self, request: Any) -> bytes:
        body = request.content.read()
        self.requests.append(
            {
                "at": self.clock.seconds(),
                "path": request.uri,
                "type": request.getHeader(b"content-type"),
                "length": request.getHeader(b"content-length"),
                "body": body,
            }
        )
        if self.script:
            status, retry_after = self.script.pop(0)
            request.setResponseCode(status)
            if retry_after is not None:
                request.setHeader(b"retry-after", retry_after.encode())
            return b"try later"
        self.stored = body
        return b""


class _Body(Protocol):
    """
    Collects what a body producer writes (an C{IConsumer}).
    """

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass


class _Answer:
    """
    An HTTP answer as treq gives it (C{code}, C{headers}, C{deliverBody}).
    """

    length = UNKNOWN_LENGTH

    def __init__(self, code: int, headers: Headers) -> None:
        self.code = code
        self.headers = headers

    def deliverBody(self, protocol: Any) -> None:
        protocol.dataReceived(b"ignored")
        protocol.connectionLost(Failure(ResponseDone()))


class _StubClient:
    """
    A treq-shaped client in front of L{_Bucket} for tests on a L{Clock}:
    C{put} runs the body producer (on the uploader's cooperator, driven by
    the clock) and answers what the bucket says.  (treq's C{StubTreq}
    takes bytes bodies only.)
    """

    def __init__(self, bucket: _Bucket) -> None:
        self.bucket = bucket

    def put(self, url: str, data: Any, headers: dict[str, str], allow_redirects: bool) -> Deferred[_Answer]:
        body = _Body()
        done = data.startProducing(body)

        def answer(_: object) -> _Answer:
            request = _PutRequest(url, headers, b"".join(body.parts), data.length)
            text = self.bucket.render_PUT(request)
            assert isinstance(text, bytes)
            return _Answer(request.code, request.response_headers)

        return done.addCallback(answer)


class _PutRequest:
    """
    The little of C{twisted.web.server.Request} L{_Bucket} uses.
    """

    def __init__(self, url: str, headers: dict[str, str], body: bytes, length: int) -> None:
        self.uri = url.encode()
        self.content = io.BytesIO(body)
        self._headers = {k.lower().encode(): v.encode() for k, v in headers.items()}
        self._headers[b"content-length"] = str(length).encode()
        self.code = 200
        self.response_headers = Headers()

    def getHeader(self, name: bytes) -> bytes | None:
        return self._headers.get(name)

    def setResponseCode(self, code: int) -> None:
        self.code = code

    def setHeader(self, name: bytes, value: bytes) -> None:
        self.response_headers.setRawHeaders(name, [value])


def _file(size: int) -> tuple[str, bytes]:
    data = bytes((i * 13 + 5) % 256 for i in range(size))
    path = os.path.join(tempfile.mkdtemp(), "r.wav")
    with open(path, "wb") as f:
        f.write(data)
    return path, data


def _client() -> HTTPClient:
    """
    A treq client without a connection pool (nothing left open after a
    test).
    """
    return HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


class PublicUrlTests(SynchronousTestCase):
    """
    L{public_url} drops what may carry credentials.
    """

    def test_strips(self) -> None:
        """
        Query string, fragment and user info are removed; host, port and
        path stay.
        """
        self.assertEqual(
            public_url("https://u:p@bucket.example.com:8443/a/b.wav?" + SECRET + "#f"),
            "https://bucket.example.com:8443/a/b.wav",
        )
        self.assertEqual(public_url("http://[2001:db8::1]/x?y=1"), "http://[2001:db8::1]/x")
        self.assertEqual(public_url("http://[bad/x"), "")

    def test_backoff(self) -> None:
        """
        Delays double from C{initial} up to C{maximum}.
        """
        self.assertEqual([backoff(n, 1.0, 5.0) for n in (1, 2, 3, 4, 100)], [1.0, 2.0, 4.0, 5.0, 5.0])


class RetryTests(SynchronousTestCase):
    """
    Retries on the injected clock, through a stub HTTP client.
    """

    def test_backoff_then_give_up(self) -> None:
        """
        500 answers are retried after 1, 2, 4 s ...; at C{retry_for} the
        last status is the result.
        """
        clock = Clock()
        bucket = _Bucket([(500, None)] * 100, clock)
        path, _ = _file(100)
        uploader = Uploader(clock, _StubClient(bucket), retry_initial=1.0, retry_max=4.0, retry_for=10.0, timeout=5.0)
        d = uploader.upload(path, "http://bucket.example.com/r.wav?" + SECRET)
        clock.advance(0)
        for _ in range(20):
            clock.advance(0.5)
        self.assertEqual(self.successResultOf(d), 500)
        self.assertEqual([r["at"] for r in bucket.requests], [0.0, 1.0, 3.0, 7.0, 10.0])

    def test_retry_after(self) -> None:
        """
        C{Retry-After} replaces the back-off; beyond C{retry_for} it ends
        the upload with that answer's status.
        """
        clock = Clock()
        bucket = _Bucket([(503, "3"), (503, "3600")], clock)
        path, _ = _file(100)
        uploader = Uploader(clock, _StubClient(bucket), retry_initial=1.0, retry_max=4.0, retry_for=60.0)
        d = uploader.upload(path, "http://bucket.example.com/r.wav")
        clock.advance(0)
        clock.advance(2.9)
        self.assertEqual(len(bucket.requests), 1)
        clock.advance(0.1)
        clock.advance(0)
        self.assertEqual(self.successResultOf(d), 503)
        self.assertEqual([r["at"] for r in bucket.requests], [0.0, 3.0])

    def test_gone_is_final(self) -> None:
        """
        410 is not retried, as for events.
        """
        clock = Clock()
        bucket = _Bucket([(410, None)], clock)
        path, _ = _file(10)
        d = Uploader(clock, _StubClient(bucket)).upload(path, "http://bucket.example.com/r.wav")
        clock.advance(0)
        self.assertEqual(self.successResultOf(d), 410)
        self.assertEqual(len(bucket.requests), 1)

    def test_missing_file(self) -> None:
        """
        A file that cannot be read ends the upload with a reason.
        """
        clock = Clock()
        d = Uploader(clock, _StubClient(_Bucket([], clock))).upload("/nonexistent/r.wav", "http://b.example.com/r")
        self.assertEqual(self.successResultOf(d), "cannot read file: No such file or directory")

    def test_cancel(self) -> None:
        """
        Cancelling the result stops the retries.
        """
        clock = Clock()
        bucket = _Bucket([(500, None)] * 10, clock)
        path, _ = _file(10)
        d = Uploader(clock, _StubClient(bucket)).upload(path, "http://bucket.example.com/r.wav")
        clock.advance(0)
        d.cancel()
        self.failureResultOf(d)
        clock.advance(1000)
        self.assertEqual(len(bucket.requests), 1)


class RealServerTests(TestCase):
    """
    A PUT to a real twisted.web server on 127.0.0.1.
    """

    timeout = 30

    async def test_fails_once_then_takes_it(self) -> None:
        """
        A 503 with C{Retry-After: 1} is retried after 1 s; the second PUT
        stores the exact bytes, with C{Content-Type: audio/wav} and its
        C{Content-Length}; the logs never show the query string.
        """
        bucket = _Bucket([(503, "1")], reactor)
        port = reactor.listenTCP(0, Site(bucket), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        logged: list[LogEvent] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        path, data = _file(300_000)
        url = "http://127.0.0.1:%d/bucket/r.wav?%s" % (port.getHost().port, SECRET)
        uploader = Uploader(reactor, _client(), retry_initial=0.1, retry_max=1.0, retry_for=30.0, timeout=10.0)
        status = await uploader.upload(path, url)
        self.assertEqual(status, 200)
        self.assertEqual(bucket.stored, data)
        self.assertEqual(len(bucket.requests), 2)
        self.assertGreaterEqual(bucket.requests[1]["at"] - bucket.requests[0]["at"], 1.0)
        for request in bucket.requests:
            self.assertEqual(request["type"], b"audio/wav")
            self.assertEqual(request["length"], str(len(data)).encode())
            self.assertEqual(request["path"], b"/bucket/r.wav?" + SECRET.encode())
        ours = [e for e in logged if e.get("log_namespace", "").startswith("aiconnect")]
        self.assertTrue(ours)
        text = " ".join(formatEvent(e) + repr(e) for e in ours)
        self.assertIn("/bucket/r.wav", text)
        self.assertNotIn("deadbeef", text)

    async def test_refused(self) -> None:
        """
        A port nobody listens on gives a connection reason once
        C{retry_for} is over.
        """
        probe = reactor.listenTCP(0, Site(Resource()), interface="127.0.0.1")  # type: ignore[attr-defined]
        closed = probe.getHost().port
        await probe.stopListening()
        path, _ = _file(10)
        uploader = Uploader(reactor, _client(), retry_initial=0.05, retry_max=0.1, retry_for=0.3, timeout=5.0)
        status = await uploader.upload(path, "http://127.0.0.1:%d/r.wav" % (closed,))
        self.assertIsInstance(status, str)
        self.assertTrue(str(status).startswith("connection failed: "), status)
