# -*- test-case-name: tests.integration.test_hardening_events -*-
"""
Hardening of callbacks, events and orders over real loopback sockets:
non-UTF-8 SIP text reaching the application as JSON, orders that could not
be reported refused at the door, a 410-disabled endpoint visible after a
restart, and delivery to an HTTP/1.0 receiver.
"""

from __future__ import annotations

import http.server
import json
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import treq
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from aiconnect import config as config_mod
from aiconnect.sip.message import parse
from aiconnect.tap import build_service
from tests.fakes import listen_udp, pause, wait_until
from tests.integration.helpers import Certificates, free_port, status_of, write_config
from tests.integration.siprec_peer import AppServer, in_dialog, sdp_offer, siprec_invite
from tests.integration.test_forward import METADATA, ForwardTestBase
from tests.test_api import nested

DOMAIN = "customer.example.com"

#: A trunk whose target nobody answers (orders under test never get there).
QUIET_TRUNK = """
  [[tenant.trunk]]
  match = "aiforward"
  target = "127.0.0.1:%d"
  transport = "udp"
"""

#: The RTP range of this module's services (no other test module uses it).
RTP_BASE = 26400


class Latin1SipTextTests(ForwardTestBase):
    """
    Item 3: a PBX sending ISO-8859-1 in From and an X- header.
    """

    async def test_latin1_from_and_x_header(self) -> None:
        """
        A SIPRec INVITE over UDP with C{From: "Jos\\xe9"} and C{X-Agent:
        M\\xfcller} (raw Latin-1 bytes): the application receives newCall
        and SESSIONSTARTED as valid, signed JSON with C{José} and
        C{Müller}.
        """
        self.setup_service(QUIET_TRUNK % free_port(), {}, None, RTP_BASE)
        sig, local = listen_udp(self)
        offer = sdp_offer([("96", free_port(), 8), ("98", free_port(), 8)])
        invite, ids = siprec_invite("udp", local, DOMAIN, offer, METADATA)
        invite = invite.replace(
            b"From: <sip:2000@example.com>", b'From: "Jos\xe9" <sip:2000@example.com>', 1
        ).replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nX-Agent: M\xfcller\r\n", 1)
        sig.send(invite, self.sip_port)
        ok = await sig.next_final(call_id=ids["call_id"])
        self.assertEqual(status_of(ok), 200)
        sig.send(in_dialog("ACK", "udp", local, ok, ids, 101, DOMAIN), self.sip_port)
        await self.app.wait_for("newCall", 1, timeout=5)
        new_call = self.app.new_calls[0]
        self.assertEqual(new_call["from"], '"Jos\u00e9" <sip:2000@example.com>;tag=' + ids["from_tag"])
        self.assertEqual(new_call["xHeaders"]["X-Agent"], "M\u00fcller")
        await self.app.wait_for("events", 1, timeout=5)
        started = self.app.events[0]
        self.assertEqual(started["event"], "SESSIONSTARTED")
        self.assertEqual(started["from"], new_call["from"])
        self.assertEqual(self.app.bad_signatures, 0)
        self.assertEqual(self.service.outbox.stats["rejected"], 0)
        resp = await treq.get(
            "http://127.0.0.1:%d/%s/sessions/%s" % (self.api_port, DOMAIN, started["sessionId"]),
            headers={"Authorization": "Bearer t0ken"},
            persistent=False,
        )
        self.assertEqual(resp.code, 200)
        self.assertIn("Jos\u00e9", json.loads(await resp.content())["session"]["from"])
        sig.send(in_dialog("BYE", "udp", local, ok, ids, 102, DOMAIN), self.sip_port)
        bye = parse(await sig.next_final(call_id=ids["call_id"]))
        self.assertEqual(bye.status, 200)
        await self.app.wait_for("events", 2, timeout=5)
        self.assertEqual(self.app.event_names(), ["SESSIONSTARTED", "SESSIONCOMPLETED"])


FORWARD_URI = "sip:aiforward@customer.example.com"


class UnreportableOrderTests(ForwardTestBase):
    """
    Item 8: orders that would be accepted and then never reported.
    """

    async def get_session(self, session_id: str) -> tuple[int, Any]:
        resp = await treq.get(
            "http://127.0.0.1:%d/%s/sessions/%s" % (self.api_port, DOMAIN, session_id),
            headers={"Authorization": "Bearer t0ken"},
            persistent=False,
        )
        return resp.code, json.loads(await resp.content())

    async def test_rest_orders_refused(self) -> None:
        """
        Through the REST API of a running service: a lone surrogate in the
        reference id or an X- header value, a reference id 600 levels deep
        and equal caller/called labels each answer 400 naming the field;
        nothing is started, the session stays readable (200) and its events
        are only SESSIONSTARTED and SESSIONCOMPLETED.
        """
        self.setup_service(QUIET_TRUNK % free_port(), {}, None, RTP_BASE + 100)
        call = await self.start_call()
        session_id = call["session_id"]
        cases = [
            ({"sipRecForwardReferenceId": {"note": "\ud800"}}, "sipRecForwardReferenceId.note"),
            ({"sipRecForwardReferenceId": nested(600)}, "sipRecForwardReferenceId" + ".a" * 32),
            ({"sipRecForwardReferenceId": {"t": "x" * 5000}}, "sipRecForwardReferenceId"),
            ({"xHeaders": {"X-Agent": "M\udcfcller"}}, "xHeaders.X-Agent"),
            ({"caller": {"label": "L1"}, "calledParty": {"label": "L1"}}, "calledParty.label"),
        ]
        for fields, field in cases:
            code, body = await self.api_post(
                "/%s/startsiprecforward" % DOMAIN, {"sessionId": session_id, "uri": FORWARD_URI, **fields}
            )
            self.assertEqual((code, body.get("field")), (400, field), body)
        code, body = await self.get_session(session_id)
        self.assertEqual(code, 200, body)
        self.assertEqual(body["session"]["forwards"], [])
        await self.bye(call)
        await self.events(["SESSIONSTARTED", "SESSIONCOMPLETED"])

    async def test_new_call_orders_refused(self) -> None:
        """
        The same orders in a newCall answer are each refused with a
        SIPRECFORWARDFAILED naming the field (reference id C{null}); every
        event is valid JSON and the session stays readable.
        """
        base = {"uri": FORWARD_URI}
        answer = {
            "startSIPRecForward": [
                {**base, "sipRecForwardReferenceId": nested(600)},
                {**base, "sipRecForwardReferenceId": {"note": "\ud800"}},
                {**base, "caller": {"label": "L1"}, "calledParty": {"label": "L1"}},
            ]
        }
        self.setup_service(QUIET_TRUNK % free_port(), answer, None, RTP_BASE + 200)
        call = await self.start_call()
        await self.events(["SESSIONSTARTED"] + ["SIPRECFORWARDFAILED"] * 3, timeout=5)
        failed = self.app.events[1:]
        self.assertEqual(
            [f["reason"].split(":")[1].strip() for f in failed],
            [
                "startSIPRecForward[0].sipRecForwardReferenceId" + ".a" * 32,
                "startSIPRecForward[1].sipRecForwardReferenceId.note",
                "startSIPRecForward[2].calledParty.label",
            ],
        )
        self.assertEqual([f["sipRecForwardReferenceId"] for f in failed], [None, None, None])
        code, body = await self.get_session(call["session_id"])
        self.assertEqual(code, 200, body)
        self.assertEqual([f["state"] for f in body["session"]["forwards"]], ["failed"] * 3)
        await self.bye(call)


class _Http10Handler(http.server.BaseHTTPRequestHandler):
    """
    A stdlib HTTP/1.0 receiver: reads the body, answers 200 with a
    C{Content-Length} (so the client may pool the connection), then closes
    the connection, as HTTP/1.0 servers do.
    """

    protocol_version = "HTTP/1.0"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:  # type: ignore[attr-defined]
            self.server.received.append((self.path, body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def start_http10_server(test: TestCase) -> http.server.ThreadingHTTPServer:
    """
    Start an L{_Http10Handler} server on 127.0.0.1 in a thread, stopped at
    the end of C{test}; C{server.received} lists (path, body).
    """
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Http10Handler)
    srv.daemon_threads = True
    srv.received = []  # type: ignore[attr-defined]
    srv.lock = threading.Lock()  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()

    def stop() -> None:
        srv.shutdown()
        srv.server_close()
        thread.join(5)

    test.addCleanup(stop)
    return srv


def pooled_client(test: TestCase) -> Any:
    """
    The callbacks' HTTP client as C{tap.build_service} builds it: treq over
    a persistent L{HTTPConnectionPool}, closed at the end of C{test}.
    """
    from treq.client import HTTPClient
    from twisted.web.client import Agent, HTTPConnectionPool

    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 4
    test.addCleanup(pool.closeCachedConnections)
    return HTTPClient(Agent(reactor, pool=pool))


class Http10ReceiverTests(TestCase):
    """
    Item 12 (b): a receiver that closes each connection after answering.
    """

    timeout = 30

    async def test_twenty_events_first_attempt(self) -> None:
        """
        Twenty events of one session (sent one after the other) to a stdlib
        HTTP/1.0 server, through a persistent connection pool: every event
        is delivered on its first scheduled attempt, none is retried with
        back-off or given up.
        """
        from aiconnect import events
        from aiconnect.config import TenantConfig
        from aiconnect.webhooks import EventDeliverer, EventOutbox
        from tests.integration.siprec_peer import SECRET

        srv = start_http10_server(self)
        directory = tempfile.mkdtemp(prefix="aiconnect-http10-")
        self.addCleanup(shutil.rmtree, directory, True)
        outbox = EventOutbox(str(Path(directory) / "events.sqlite3"), clock=reactor.seconds)
        self.addCleanup(outbox.close)
        url = "http://127.0.0.1:%d" % (srv.server_address[1],)
        tenant = TenantConfig(domain=DOMAIN, callback_url=url, signing_secret=SECRET)
        deliverer = EventDeliverer(
            reactor, outbox, {DOMAIN: tenant}, http_client=pooled_client(self),
            backoff_base=5.0, backoff_max=5.0, request_timeout=5.0,
        )
        deliverer.start()
        self.addCleanup(deliverer.stop)
        for i in range(20):
            outbox.emit(DOMAIN, "ses_http10", events.session_completed(
                "ses_http10", tenant=DOMAIN, reason=events.COMPLETED_INBOUND_BYE, duration=float(i), now=1700000000.0))
        await wait_until(
            lambda: deliverer.stats["delivered"] >= 20 or deliverer.stats["retried"] or deliverer.stats["dead"],
            10,
            interval=0.05,
        )
        stats = dict(deliverer.stats)
        self.assertEqual((stats["delivered"], stats["retried"], stats["dead"]), (20, 0, 0), stats)
        self.assertEqual(stats["attempts"], 20, stats)
        self.assertEqual([json.loads(b)["duration"] for _, b in srv.received], [float(i) for i in range(20)])


class _EventsApp(AppServer):
    """
    An application answering C{status} to every event (after checking its
    signature, as L{AppServer} does).
    """

    def __init__(self, status: int) -> None:
        super().__init__()
        self.status = status

    def render_POST(self, request: Any) -> bytes:
        body = super().render_POST(request)
        if request.code == 200:
            request.setResponseCode(self.status)
        return body


class DisabledEndpointRestartTests(TestCase):
    """
    Item 12 (a): a 410 survives restarts visibly, and a configuration
    change enables the endpoint again.
    """

    timeout = 30

    def setUp(self) -> None:
        self.certs = Certificates()
        self.dir = Path(tempfile.mkdtemp(prefix="aiconnect-gone-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.ports = [free_port() for _ in range(3)]
        self.api_port = free_port()

    async def run_service(self, app_port: int) -> Any:
        """
        Build and start the service from a configuration whose tenant calls
        back C{app_port} (the outbox is the same SQLite file every time).
        """
        udp, tcp, tls = self.ports
        path = write_config(
            self.dir, self.certs, udp, tcp, tls, self.api_port, app_port=app_port, rtp=(RTP_BASE + 300, RTP_BASE + 399)
        )
        service = build_service(config_mod.load(path), reactor)
        service.startService()
        self.addCleanup(lambda: service.stopService() if service.running else None)
        return service

    async def metric(self, name: str) -> float:
        resp = await treq.get("http://127.0.0.1:%d/metrics" % (self.api_port,), persistent=False)
        text = (await resp.content()).decode()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        self.fail("%s not in /metrics" % (name,))

    async def test_disabled_across_restarts(self) -> None:
        """
        An endpoint answering 410 is disabled; after a restart with the same
        configuration /metrics shows it (and nothing is sent); after a
        restart with another callback_url it is enabled and the held events
        are delivered.
        """
        from aiconnect import events

        gone = _EventsApp(410)
        gone_port = gone.listen()
        self.addCleanup(gone.port.stopListening)
        gauge = "aiconnect_events_delivery_endpoints_disabled"

        service = await self.run_service(gone_port)
        for session in ("ses_a", "ses_b"):
            service.outbox.emit(DOMAIN, session, events.session_completed(
                session, tenant=DOMAIN, reason=events.COMPLETED_INBOUND_BYE, duration=1.0, now=1700000000.0))
        await wait_until(lambda: len(gone.events) == 2)
        self.assertEqual(await self.metric(gauge), 1.0)
        await service.stopService()

        service = await self.run_service(gone_port)
        self.assertEqual(await self.metric(gauge), 1.0)
        await pause(0.5)  # nothing is sent meanwhile
        self.assertEqual(len(gone.events), 2)
        await service.stopService()

        moved = _EventsApp(200)
        moved_port = moved.listen()
        self.addCleanup(moved.port.stopListening)
        service = await self.run_service(moved_port)
        await moved.wait_for("events", 2, timeout=5)
        self.assertEqual(sorted(e["sessionId"] for e in moved.events), ["ses_a", "ses_b"])
        self.assertEqual(await self.metric(gauge), 0.0)
        self.assertEqual(moved.bad_signatures, 0)
