# -*- test-case-name: tests.webhooks.test_signing,tests.webhooks.test_outbox,tests.webhooks.test_delivery,tests.webhooks.test_newcall,tests.integration.test_webhooks_http -*-
"""
What the tests of L{aiconnect.webhooks} share: a tenant and its secret, an
independent signature check, a recording application behind L{StubTreq},
treq-shaped clients that fail on purpose, event payloads, and
L{WebhooksTestCase} (a L{Clock}, that application and an outbox in a
temporary directory).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from treq.testing import StubTreq
from twisted.internet import defer
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseNeverReceived
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from aiconnect import events
from aiconnect.config import TenantConfig
from aiconnect.webhooks import EventDeliverer, EventOutbox

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DOMAIN = "customer.example.com"
OTHER = "other.example.com"
START = 1_700_000_000.0




def independent_signature_ok(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """
    Check a request the way the Standard Webhooks specification describes
    it, without any of L{aiconnect.webhooks}: the key is the base64 text
    after C{whsec_}, decoded; the signed content is C{id.timestamp.body};
    the header holds space-separated C{v1,<base64 HMAC-SHA256>}.
    """
    key = base64.b64decode(secret[len("whsec_") :] + "=" * (-len(secret[len("whsec_") :]) % 4))
    content = headers["webhook-id"].encode() + b"." + headers["webhook-timestamp"].encode() + b"." + body
    expected = "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    return expected in headers["webhook-signature"].split(" ")


#: The tenant of L{tenant} with another signing secret.
ROTATED = TenantConfig(domain=DOMAIN, callback_url="http://app.example", signing_secret="whsec_" + "A" * 32)


@dataclass
class Recorded:
    """
    One request the recording resource saw.
    """

    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Recorder(Resource):
    """
    An application that records every POST and answers from a script:
    C{(status, headers, body)} per request, C{None} = never answer, then
    C{default}.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Recorded] = []
        self.script: deque[tuple[int, dict[str, str], bytes] | None] = deque()
        self.default: tuple[int, dict[str, str], bytes] = (200, {}, b"")
        self.hanging: list[Request] = []
        self.lost = 0

    def render_POST(self, request: Request) -> bytes | int:
        headers = {k.decode().lower(): v[0].decode() for k, v in request.requestHeaders.getAllRawHeaders()}
        self.requests.append(Recorded(request.path.decode(), headers, request.content.read()))
        answer = self.script.popleft() if self.script else self.default
        if answer is None:
            self.hanging.append(request)
            request.notifyFinish().addErrback(lambda _: setattr(self, "lost", self.lost + 1))
            return NOT_DONE_YET
        status, response_headers, body = answer
        request.setResponseCode(status)
        for name, value in response_headers.items():
            request.setHeader(name, value)
        return body

    def events(self) -> list[str]:
        return [r.json["event"] + ":" + r.json["sessionId"] for r in self.requests]


class FlakyClient:
    """
    A treq-shaped client whose first C{failures} POSTs fail with a refused
    connection; later ones go to C{inner}.
    """

    def __init__(self, inner: Any, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.refused = 0

    def post(self, url: str, **kwargs: Any) -> defer.Deferred[Any]:
        if self.refused < self.failures:
            self.refused += 1
            return defer.fail(ConnectionRefusedError("Connection refused"))
        return self.inner.post(url, **kwargs)


class StaleClient:
    """
    A treq-shaped client whose first POSTs fail as a closed pooled
    connection does (C{failures}: the exceptions, in order); later ones go
    to C{inner}.
    """

    def __init__(self, inner: Any, failures: list[Exception]) -> None:
        self.inner = inner
        self.failures = deque(failures)
        self.posts = 0

    def post(self, url: str, **kwargs: Any) -> defer.Deferred[Any]:
        self.posts += 1
        if self.failures:
            return defer.fail(self.failures.popleft())
        return self.inner.post(url, **kwargs)


def closed_before_answer() -> ResponseNeverReceived:
    """
    What the agent fails with when the server closed the connection before
    answering.
    """
    return ResponseNeverReceived([Failure(ConnectionDone("closed"))])


class RaisingClient:
    """
    A treq-shaped client whose C{post} raises synchronously.
    """

    def post(self, url: str, **kwargs: Any) -> defer.Deferred[Any]:
        raise RuntimeError("boom")


def tenant(domain: str = DOMAIN, url: str = "http://app.example") -> TenantConfig:
    """
    @return: A tenant signing with L{SECRET}.
    """
    return TenantConfig(domain=domain, callback_url=url, signing_secret=SECRET)


def started(session: str = "s1", **kwargs: Any) -> dict[str, Any]:
    """
    @return: A C{SESSIONSTARTED} event of C{session} at L{START}.
    """
    return events.session_started(
        session,
        tenant=DOMAIN,
        call_id="c@src",
        from_uri="sip:a@src",
        to_uri="sip:b@srs",
        now=START,
        **kwargs,
    )


def completed(session: str = "s1") -> dict[str, Any]:
    """
    @return: A C{SESSIONCOMPLETED} event of C{session} at L{START}.
    """
    return events.session_completed(session, tenant=DOMAIN, reason=events.COMPLETED_INBOUND_BYE, duration=1.5, now=START)



class WebhooksTestCase(SynchronousTestCase):
    """
    A L{Clock}, a recording application behind L{StubTreq}, and an outbox in
    a temporary directory.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.recorder = Recorder()
        self.stub = StubTreq(self.recorder)
        self.dir = tempfile.mkdtemp(prefix="aiconnect-webhooks-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = str(Path(self.dir) / "var" / "events.sqlite3")
        self.outbox = self.open_outbox()

    def open_outbox(self) -> EventOutbox:
        outbox = EventOutbox(self.path, clock=self.clock.seconds)
        self.addCleanup(outbox.close)
        return outbox

    def deliverer(self, outbox: EventOutbox | None = None, **kwargs: Any) -> EventDeliverer:
        kwargs.setdefault("http_client", self.stub)
        kwargs.setdefault("random", lambda: 0.0)
        kwargs.setdefault("tenants", {DOMAIN: tenant(), OTHER: tenant(OTHER, "http://other.example")})
        d = EventDeliverer(self.clock, outbox or self.outbox, **kwargs)
        self.addCleanup(d.stop)
        return d

    def pump(self) -> None:
        """
        Run every call due now (delivery always goes through callLater(0)).
        """
        for _ in range(1000):
            now = self.clock.seconds()
            if not any(c.getTime() <= now for c in self.clock.getDelayedCalls()):
                return
            self.clock.advance(0)
        self.fail("pump did not settle")

    def advance_to(self, t: float) -> None:
        """
        Move the clock to C{START + t}, stopping at every timer on the way
        (so timers scheduled meanwhile run at their own time).
        """
        target = START + t
        for _ in range(10000):
            self.pump()
            due = [c.getTime() for c in self.clock.getDelayedCalls() if c.getTime() <= target]
            if not due:
                break
            self.clock.advance(min(due) - self.clock.seconds())
        self.clock.advance(max(0.0, target - self.clock.seconds()))
        self.pump()

