# -*- test-case-name: tests.integration.test_ipv6 -*-
"""
IPv6 on loopback (RFC 5118): SIP over UDP on [::1], SDP with IN IP6, Via
and Contact with IPv6 references, RTP over IPv6 counted.
"""

from __future__ import annotations

import json
import socket
import tempfile
from pathlib import Path

import treq
from twisted.internet import reactor
from twisted.trial.unittest import SkipTest, TestCase

from aiconnect import config as config_mod
from aiconnect.sip.message import parse
from aiconnect.sip.sdp import parse_sdp
from aiconnect.tap import build_service
from tests.fakes import listen_udp, rtp_packet, wait_until
from tests.integration.helpers import Certificates, free_port, write_config
from tests.integration.siprec_peer import DATA, AppServer, in_dialog, sdp_offer, siprec_invite

DOMAIN = "customer.example.com"


def _have_ipv6() -> bool:
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


class Ipv6Tests(TestCase):
    """
    A SIPRec session entirely over IPv6 loopback.
    """

    timeout = 60

    async def test_siprec_over_ipv6(self) -> None:
        """
        INVITE over UDP to [::1]: 200 with Contact [::1] and IN IP6 SDP,
        received= on the Via, ACK, RTP over IPv6 counted, BYE.
        """
        if not _have_ipv6():
            raise SkipTest("no IPv6 loopback")
        app = AppServer()
        app_port = app.listen()
        self.addCleanup(app.port.stopListening)
        d = Path(tempfile.mkdtemp(prefix="aiconnect-v6-"))
        sip_port, api_port = free_port(), free_port()
        path = write_config(d, Certificates(), sip_port, sip_port, 0, api_port, app_port=app_port, rtp=(21000, 21099))
        text = path.read_text().replace(
            'host = "127.0.0.1"\npublic_address = "127.0.0.1"\nprivate_address = "127.0.0.1"',
            'host = "::1"\npublic_address = "::1"\nprivate_address = "::1"',
        ).replace('[rtp]\nhost = "127.0.0.1"', '[rtp]\nhost = "::1"')
        path.write_text(text)
        cfg = config_mod.load(path)
        self.assertEqual(cfg.sip.host, "::1")
        service = build_service(cfg, reactor)
        service.startService()
        self.addCleanup(service.stopService)

        sig, local = listen_udp(self, "::1")
        rtp, rtp_port = listen_udp(self, "::1")
        offer = sdp_offer([("96", rtp_port, 8), ("98", rtp_port + 2, 0)]).replace(b"IN IP4 127.0.0.1", b"IN IP6 ::1")
        invite, ids = siprec_invite("udp", local, DOMAIN, offer, (DATA / "rfc8068-s3.2.1-1-metadata.xml").read_bytes())
        invite = invite.replace(b"127.0.0.1:%d" % local, b"[::1]:%d" % local)

        def send(data: bytes) -> None:
            sig.send(data, sip_port, "::1")

        send(invite)
        ok_raw = await sig.next_final(call_id=ids["call_id"])
        ok = parse(ok_raw)
        self.assertEqual(ok.status, 200)
        self.assertEqual(ok.contacts[0].uri.host, "[::1]")
        self.assertEqual(ok.top_via.param("received"), "::1")
        answer = parse_sdp(ok.body)
        self.assertEqual((answer.connection.addrtype, answer.connection.address), ("IP6", "::1"))
        ports = [m.port for m in answer.media]
        ack = in_dialog("ACK", "udp", local, ok_raw, ids, 101, DOMAIN).replace(b"127.0.0.1:%d" % local, b"[::1]:%d" % local)
        send(ack)
        await app.wait_for("events", 1)
        session_id = app.events[0]["sessionId"]
        for i in range(3):
            rtp.send(rtp_packet(i, 160 * i, 0x66, 8, b"\xd5" * 160), ports[0], "::1")

        async def counted() -> bool:
            resp = await treq.get(
                "http://127.0.0.1:%d/%s/sessions/%s" % (api_port, DOMAIN, session_id),
                headers={"Authorization": "Bearer t0ken"},
                persistent=False,
            )
            return json.loads(await resp.content())["session"]["media"]["streams"][0]["packets_in"] == 3

        await wait_until(counted, 3.0, interval=0.05, what="3 RTP packets counted on stream 0")
        bye = in_dialog("BYE", "udp", local, ok_raw, ids, 102, DOMAIN).replace(b"127.0.0.1:%d" % local, b"[::1]:%d" % local)
        send(bye)
        bye_ok = parse(await sig.next_final(call_id=ids["call_id"]))
        self.assertEqual((bye_ok.status, bye_ok.cseq.method), (200, "BYE"))
        await app.wait_for("events", 2)
        self.assertEqual(app.event_names(), ["SESSIONSTARTED", "SESSIONCOMPLETED"])
