# -*- test-case-name: tests.integration.test_webhooks_http -*-
"""
Event delivery over real loopback HTTP with real treq: an application that
is down and comes back, and an outbox written by a process killed with
SIGKILL before delivering.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from aiconnect import events
from aiconnect.config import TenantConfig
from aiconnect.webhooks import EventDeliverer, EventOutbox
from tests.fakes import wait_until
from tests.webhooks.helpers import SECRET, independent_signature_ok

ROOT = Path(__file__).parent.parent.parent
DOMAIN = "customer.example.com"


class Application(Resource):
    """
    The customer's application: records every event POSTed to C{/events}
    and answers 200.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.received: list[tuple[dict[str, str], bytes]] = []

    def render_POST(self, request: Request) -> bytes:
        headers = {k.decode().lower(): v[0].decode() for k, v in request.requestHeaders.getAllRawHeaders()}
        self.received.append((headers, request.content.read()))
        request.setResponseCode(200 if request.path == b"/events" else 404)
        return b""

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]


class WebhooksHttpTests(TestCase):
    """
    L{EventDeliverer} against a real twisted.web server on 127.0.0.1.
    """

    timeout = 20

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="aiconnect-webhooks-http-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, "events.sqlite3")
        self.app = Application()
        self.site = Site(self.app)
        self.site.noisy = False
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.http = HTTPClient(Agent(reactor, pool=pool))

    def listen(self, port: int = 0) -> int:
        listening = reactor.listenTCP(port, self.site, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        return listening.getHost().port

    def deliverer(self, port: int) -> tuple[EventOutbox, EventDeliverer]:
        outbox = EventOutbox(self.path, clock=reactor.seconds)
        self.addCleanup(outbox.close)
        tenant = TenantConfig(domain=DOMAIN, callback_url="http://127.0.0.1:%d" % (port,), signing_secret=SECRET)
        deliverer = EventDeliverer(
            reactor,
            outbox,
            {DOMAIN: tenant},
            http_client=self.http,
            retry_for=60.0,
            backoff_base=0.05,
            backoff_max=0.2,
            request_timeout=2.0,
        )
        self.addCleanup(deliverer.stop)
        return outbox, deliverer

    def check_signed(self) -> None:
        for headers, body in self.app.received:
            self.assertTrue(independent_signature_ok(SECRET, headers, body))
            self.assertEqual(headers["webhook-id"], json.loads(body)["eventId"])

    async def test_application_down_then_up(self) -> None:
        """
        Events emitted while the application refuses connections are retried
        and, once it listens, delivered in order per session, signed.
        """
        closed = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        port = closed.getHost().port
        await closed.stopListening()
        outbox, deliverer = self.deliverer(port)
        deliverer.start()
        ids = [
            outbox.emit(DOMAIN, "s1", events.session_started(
                "s1", tenant=DOMAIN, call_id="c1", from_uri="sip:a@x", to_uri="sip:b@y", now=1700000000.0)),
            outbox.emit(DOMAIN, "s2", events.session_started(
                "s2", tenant=DOMAIN, call_id="c2", from_uri="sip:a@x", to_uri="sip:b@y", now=1700000000.0)),
            outbox.emit(DOMAIN, "s1", events.siprec_forward_failed(
                "s1", tenant=DOMAIN, forward_id="f1", uri="sip:aiforward@" + DOMAIN, reason="not implemented", now=1700000000.0)),
            outbox.emit(DOMAIN, "s1", events.session_completed(
                "s1", tenant=DOMAIN, reason=events.COMPLETED_INBOUND_BYE, duration=1.0, now=1700000000.0)),
        ]
        await wait_until(lambda: deliverer.stats["retried"] >= 4, 8.0)
        self.assertEqual(self.app.received, [])
        self.listen(port)
        await wait_until(lambda: len(self.app.received) >= 4, 8.0)
        s1 = [b for b in self.app.bodies() if b["sessionId"] == "s1"]
        self.assertEqual([b["eventId"] for b in s1], [ids[0], ids[2], ids[3]])
        self.assertEqual([b["sequence"] for b in s1], [1, 2, 3])
        self.check_signed()
        await wait_until(lambda: outbox.counts()["delivered"] == 4, 8.0)
        self.assertEqual(deliverer.stats["dead"], 0)

    async def test_kill_9_durability(self) -> None:
        """
        Three events emitted by a process killed with SIGKILL before any
        delivery are delivered, in order, by a deliverer started afterwards
        on the same database.
        """
        child = textwrap.dedent(
            """
            import json, signal, sys
            from aiconnect import events
            from aiconnect.webhooks import EventOutbox
            outbox = EventOutbox(sys.argv[1])
            ids = [
                outbox.emit("%(domain)s", "k1", events.session_started(
                    "k1", tenant="%(domain)s", call_id="c", from_uri="sip:a@x", to_uri="sip:b@y", now=1.0)),
                outbox.emit("%(domain)s", "k1", events.siprec_forward_failed(
                    "k1", tenant="%(domain)s", forward_id="f", uri="sip:x@y", reason="not implemented", now=2.0)),
                outbox.emit("%(domain)s", "k1", events.session_completed(
                    "k1", tenant="%(domain)s", reason="INBOUND_BYE", duration=2.0, now=3.0)),
            ]
            print(json.dumps(ids), flush=True)
            signal.pause()
            """
            % {"domain": DOMAIN}
        )
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        proc = subprocess.Popen(
            [sys.executable, "-c", child, self.path], cwd=str(ROOT), env=env, stdout=subprocess.PIPE
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        self.assertEqual(proc.returncode, -signal.SIGKILL)
        ids = json.loads(line)
        self.assertEqual(len(ids), 3)
        port = self.listen()
        outbox, deliverer = self.deliverer(port)
        deliverer.start()
        await wait_until(lambda: len(self.app.received) >= 3, 8.0)
        self.assertEqual([b["eventId"] for b in self.app.bodies()], ids)
        self.assertEqual(
            [b["event"] for b in self.app.bodies()],
            ["SESSIONSTARTED", "SIPRECFORWARDFAILED", "SESSIONCOMPLETED"],
        )
        self.check_signed()
        await wait_until(lambda: outbox.counts() == {"pending": 0, "delivered": 3, "dead": 0}, 8.0)
