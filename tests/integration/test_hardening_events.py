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
from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from aiconnect import config as config_mod
from aiconnect.sip.message import parse
from aiconnect.tap import build_service
from tests.integration.helpers import Certificates, UdpPeer, free_port, status_of, write_config
from tests.integration.siprec_peer import AppServer, in_dialog, sdp_offer, siprec_invite
from tests.integration.test_forward import METADATA, ForwardTestBase

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
        sig = UdpPeer()
        port = reactor.listenUDP(0, sig, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        local = port.getHost().port
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
        sig.send(in_dialog("BYE", "udp", local, ok, ids, 102, DOMAIN), self.sip_port)
        bye = parse(await sig.next_final(call_id=ids["call_id"]))
        self.assertEqual(bye.status, 200)
        await self.app.wait_for("events", 2, timeout=5)
        self.assertEqual(self.app.event_names(), ["SESSIONSTARTED", "SESSIONCOMPLETED"])


def nested(depth: int) -> dict[str, Any]:
    """
    @return: C{{"a": {"a": ... {}}}}, C{depth} objects deep.
    """
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


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
