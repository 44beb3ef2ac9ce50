# -*- test-case-name: tests.integration.test_inbound -*-
"""
Inbound SIPRec end to end on 127.0.0.1 (issue 3): the real service, a real
HTTP application, an SRC built from the RFC 7866 template with RFC 8068
metadata, over UDP and TLS.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import treq
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web import resource, server

from aiconnect.sip.message import parse
from aiconnect.sip.sdp import parse_sdp
from tests.fakes import connect_stream, listen_udp, wait_until
from tests.integration.helpers import Certificates, free_port, status_of, write_config
from tests.integration.scenario import start_service
from tests.integration.siprec_peer import DATA, AppServer, in_dialog, rtp_packet, sdp_offer, siprec_invite

DOMAIN = "customer.example.com"
METADATA = (DATA / "rfc8068-s3.2.1-1-metadata.xml").read_bytes()
# RFC 8068 s3.2.1: Alice sends on streams labelled 96/97, Bob on 98/99.
LABELS = ("96", "98")


class _Base(TestCase):
    """
    Starts the real service for one test.
    """

    timeout = 60

    def start(self, app_port: int, callback_timeout: float = 3.0, rtp_base: int = 21000) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="aiconnect-inb-"))
        self.certs = Certificates()
        self.sip_port = free_port()
        self.tls_port = free_port()
        self.api_port = free_port()
        extra = f"""
callback_timeout = {callback_timeout}
"""
        path = write_config(
            self.dir, self.certs, self.sip_port, self.sip_port, self.tls_port, self.api_port,
            extra=extra, app_port=app_port, rtp=(rtp_base, rtp_base + 99),
        )
        self.cfg, self.service = start_service(self, path)

    async def signalling(self, transport: str) -> tuple[Any, int, Any]:
        """
        A signalling peer (L{listen_udp} or L{connect_stream} over TLS):
        (peer, its local port, send function).
        """
        if transport == "udp":
            udp, port = listen_udp(self)
            return udp, port, lambda data: udp.send(data, self.sip_port)
        peer = await connect_stream(self, self.tls_port, ca_pem=self.certs.ca_pem)
        return peer, peer.transport.getHost().port, peer.send

    async def api_get(self, path: str, token: str = "t0ken") -> tuple[int, Any]:
        resp = await treq.get("http://127.0.0.1:%d%s" % (self.api_port, path), headers={"Authorization": "Bearer " + token}, persistent=False)
        body = await resp.content()
        return resp.code, json.loads(body) if body else None


class InboundTests(_Base):
    """
    A SIPRec session from INVITE to BYE, with newCall, signed events and RTP
    counted by the REST API.
    """

    async def _call(self, transport: str) -> None:
        app = AppServer()
        app_port = app.listen()
        self.addCleanup(app.port.stopListening)
        self.start(app_port)
        peer, local_port, send = await self.signalling(transport)
        rtp_a, port_a = listen_udp(self)
        rtp_b, port_b = listen_udp(self)
        offer = sdp_offer([(LABELS[0], port_a, 8), (LABELS[1], port_b, 0)])
        invite, ids = siprec_invite(transport, local_port, DOMAIN, offer, METADATA, extra_headers="X-Correlation: abc-123")
        send(invite)
        first = await peer.next_message()
        self.assertEqual(status_of(first), 100)

        await app.wait_for("newCall", 1)
        nc = app.new_calls[0]
        self.assertEqual(nc["tenant"], DOMAIN)
        self.assertEqual(nc["callId"], ids["call_id"])
        self.assertEqual(sorted(p["name"] for p in nc["participants"]), ["Alice", "Bob"])
        alice = [p for p in nc["participants"] if p["name"] == "Alice"][0]
        self.assertIn("96", alice["send"])
        self.assertEqual([s["label"] for s in nc["streams"]], list(LABELS))
        self.assertEqual(nc["xHeaders"], {"X-Correlation": "abc-123"})
        session_id = nc["sessionId"]

        ok_raw = await peer.next_final(call_id=ids["call_id"])
        ok = parse(ok_raw, datagram=False)
        self.assertEqual(ok.status, 200)
        self.assertTrue(ok.contacts[0].has_param("+sip.srs"))
        answer = parse_sdp(ok.body)
        self.assertEqual([m.label for m in answer.media], list(LABELS))
        self.assertEqual([m.direction for m in answer.media], ["recvonly", "recvonly"])
        ports = [m.port for m in answer.media]
        self.assertTrue(all(p % 2 == 0 for p in ports))

        send(in_dialog("ACK", transport, local_port, ok_raw, ids, 101, DOMAIN))
        await app.wait_for("events", 1)
        self.assertEqual(app.events[0]["event"], "SESSIONSTARTED")
        self.assertEqual(app.events[0]["sessionId"], session_id)

        for i in range(5):
            rtp_a.transport.write(rtp_packet(1000 + i, 160 * i, 0x1111, 8, b"\xd5" * 160), ("127.0.0.1", ports[0]))
        for i in range(3):
            rtp_b.transport.write(rtp_packet(2000 + i, 160 * i, 0x2222, 0, b"\xff" * 160), ("127.0.0.1", ports[1]))

        async def all_counted() -> bool:
            code, body = await self.api_get("/%s/sessions/%s" % (DOMAIN, session_id))
            self.assertEqual(code, 200)
            return [s["packets_in"] for s in body["session"]["media"]["streams"]] == [5, 3]

        await wait_until(all_counted, interval=0.05)

        send(in_dialog("BYE", transport, local_port, ok_raw, ids, 102, DOMAIN))
        bye_ok = parse(await peer.next_final(call_id=ids["call_id"]), datagram=False)
        self.assertEqual((bye_ok.status, bye_ok.cseq.method), (200, "BYE"))
        await app.wait_for("events", 2)
        self.assertEqual(app.event_names(), ["SESSIONSTARTED", "SESSIONCOMPLETED"])
        self.assertEqual(app.events[1]["reason"], "inboundBye")
        self.assertEqual(app.bad_signatures, 0)

    async def test_udp(self) -> None:
        """
        The whole session over UDP.
        """
        await self._call("udp")

    async def test_tls(self) -> None:
        """
        The whole session over TLS.
        """
        await self._call("tls")


class _Silent(resource.Resource):
    """
    An application that accepts the connection and never answers newCall
    (events are taken, so that stopping the service does not wait for
    their delivery).
    """

    isLeaf = True

    def render_POST(self, request: Any) -> Any:
        if request.path == b"/newCall":
            return server.NOT_DONE_YET
        return b""


class ApplicationFailureTests(_Base):
    """
    A failing or slow application never loses the inbound recording.
    """

    async def _setup_call(self, ids_holder: list[Any]) -> tuple[Any, int, Any, bytes, dict[str, str]]:
        peer, local_port, send = await self.signalling("udp")
        _, port_a = listen_udp(self)
        _, port_b = listen_udp(self)
        invite, ids = siprec_invite("udp", local_port, DOMAIN, sdp_offer([(LABELS[0], port_a, 8), (LABELS[1], port_b, 8)]), METADATA)
        send(invite)
        return peer, local_port, send, invite, ids

    async def test_application_down_then_up(self) -> None:
        """
        With the application down the call is answered anyway; both events
        are delivered, in order, once the application is back.
        """
        app_port = free_port()
        self.start(app_port, callback_timeout=1.0, rtp_base=22000)
        peer, local_port, send, _, ids = await self._setup_call([])
        ok_raw = await peer.next_final(call_id=ids["call_id"])
        self.assertEqual(status_of(ok_raw), 200)
        send(in_dialog("ACK", "udp", local_port, ok_raw, ids, 101, DOMAIN))
        code, body = await self.api_get("/%s/sessions" % DOMAIN)
        self.assertEqual(code, 200)
        self.assertEqual(len(body["sessions"]), 1)
        send(in_dialog("BYE", "udp", local_port, ok_raw, ids, 102, DOMAIN))
        self.assertEqual(status_of(await peer.next_final(call_id=ids["call_id"])), 200)
        # Deliveries failed meanwhile, and are retried.
        await wait_until(lambda: self.service.deliverer.stats["retried"] >= 2)
        app = AppServer()
        app.listen(app_port)
        self.addCleanup(app.port.stopListening)
        await app.wait_for("events", 2, timeout=15)
        self.assertEqual(app.event_names(), ["SESSIONSTARTED", "SESSIONCOMPLETED"])
        self.assertIsNotNone(app.events[0]["newCallError"])
        self.assertEqual(app.events[0]["sessionId"], app.events[1]["sessionId"])
        self.assertEqual(app.bad_signatures, 0)

    async def test_slow_application_answered_after_timeout(self) -> None:
        """
        An application that never answers: 200 OK after callback_timeout.
        """
        port = reactor.listenTCP(0, server.Site(_Silent()), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.start(port.getHost().port, callback_timeout=0.5, rtp_base=22100)
        started = time.monotonic()
        peer, local_port, send, _, ids = await self._setup_call([])
        ok_raw = await peer.next_final(call_id=ids["call_id"])
        self.assertEqual(status_of(ok_raw), 200)
        self.assertGreaterEqual(time.monotonic() - started, 0.45)
        send(in_dialog("BYE", "udp", local_port, ok_raw, ids, 102, DOMAIN))
        self.assertEqual(status_of(await peer.next_final(call_id=ids["call_id"])), 200)
