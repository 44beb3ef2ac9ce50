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
