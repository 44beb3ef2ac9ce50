# -*- test-case-name: tests.integration.test_forward -*-
"""
SIPRec forwarding end to end on 127.0.0.1 (issue 5): the real service, a
test SRC, a real HTTP application, scripted SRS peers found through a real
DNS server (twisted.names) serving a test zone.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import treq
import xmlschema
from twisted.trial.unittest import TestCase

from aiconnect import tlsutil
from aiconnect.config import TlsConfig
from aiconnect.media import g711
from aiconnect.sip.message import parse
from tests.fakes import listen_udp, pause, wait_until
from tests.integration.dnsserver import start_dns_server, two_srs_zone
from tests.integration.helpers import Certificates, free_port, status_of, write_config
from tests.integration.scenario import start_service
from tests.integration.siprec_peer import DATA, AppServer, in_dialog, rtp_packet, sdp_offer, siprec_invite
from tests.integration.srs_peer import SrsPeer
from tests.integration.test_restart import answer

DOMAIN = "customer.example.com"
METADATA = (DATA / "rfc8068-s3.2.1-1-metadata.xml").read_bytes()
XSD = DATA / "recording-metadata.xsd"

ORDER = {
    "uri": "sip:aiforward@customer.example.com",
    "codec": "PCMU",
    "srtp": False,
    "caller": {"name": "Alice Andersson", "user": "alice", "label": "labelA"},
    "calledParty": {"name": "Support IVR", "user": "support", "label": "labelB"},
    "xHeaders": {"X-Correlation-Id": "a3b47c1e", "X-Tenant": "acme-cc"},
    "sipRecForwardReferenceId": {"ticketId": 98765},
    "usePrivateIp": False,
}


def _sdp_part(body: bytes) -> bytes:
    """
    The SDP of a bare or multipart/mixed body.
    """
    if not body.startswith(b"--"):
        return body
    part = body.split(b"Content-Type: application/sdp", 1)[1]
    return part.split(b"\r\n\r\n", 1)[1].split(b"\r\n--", 1)[0]


def _schema() -> xmlschema.XMLSchema10:
    from tests.siprec.test_metadata import schema

    return schema()


class ForwardTestBase(TestCase):
    """
    Starts the real service, its application, SRS peers and a DNS server
    for one forwarding test.
    """

    timeout = 60

    def setUp(self) -> None:
        self.certs = Certificates()

    def setup_service(
        self,
        trunks: str,
        answer: dict[str, Any] | None,
        dns_zone: dict[str, Any] | None,
        rtp_base: int,
        srs_tls: bool = False,
        t1: float | None = None,
    ) -> AppServer:
        """
        Start the application (answering newCall with C{answer}), a DNS
        server for C{dns_zone} when given, and the service with C{trunks}.

        @param t1: The service's T1 in seconds, when not 0.05.
        """
        self.dir = Path(tempfile.mkdtemp(prefix="aiconnect-fwd-"))
        self.sip_port = free_port()
        self.tls_port = free_port()
        self.api_port = free_port()
        app = AppServer(answer)
        app_port = app.listen()
        self.addCleanup(app.port.stopListening)
        self.app = app
        extra = "callback_timeout = 3.0\n" + trunks
        if dns_zone is not None:
            dns = start_dns_server(dns_zone)
            self.addCleanup(dns.stop)
            extra += "\n[dns]\nnameservers = [\"127.0.0.1\"]\nport = %d\n" % dns.port
        path = write_config(
            self.dir, self.certs, self.sip_port, self.sip_port, self.tls_port, self.api_port,
            extra=extra, app_port=app_port, rtp=(rtp_base, rtp_base + 99),
        )
        self.cfg, self.service = start_service(self, path, t1)
        return app

    def srs(self, mode: str, transport: str = "udp", names: tuple[str, ...] = ("srs1.srs.test", "srs2.srs.test", "srs.test")) -> SrsPeer:
        peer = SrsPeer(mode, transport)
        if transport == "udp":
            peer.listen_udp()
        else:
            leaf = tlsutil.generate_certificate(self.certs.authority, list(names))
            d = Path(tempfile.mkdtemp(prefix="aiconnect-srs-"))
            (d / "c.pem").write_bytes(leaf.certificate)
            (d / "k.pem").write_bytes(leaf.private_key)
            ctx = tlsutil.server_context_factory(TlsConfig(certificate=str(d / "c.pem"), private_key=str(d / "k.pem")))
            peer.listen_tls(ctx)
        self.addCleanup(peer.stop)
        return peer

    async def start_call(self, codecs: tuple[int, int] = (8, 8)) -> dict[str, Any]:
        """
        Run the SRC side up to ACK; return what later steps need.
        """
        sig, local = listen_udp(self)
        rtp = []
        ports = []
        for _ in range(2):
            sink, port = listen_udp(self)
            rtp.append(sink)
            ports.append(port)
        offer = sdp_offer([("96", ports[0], codecs[0]), ("98", ports[1], codecs[1])])
        invite, ids = siprec_invite("udp", local, DOMAIN, offer, METADATA)
        sig.send(invite, self.sip_port)
        ok_raw = await sig.next_final(call_id=ids["call_id"])
        self.assertEqual(status_of(ok_raw), 200)
        sig.send(in_dialog("ACK", "udp", local, ok_raw, ids, 101, DOMAIN), self.sip_port)
        answer = parse(ok_raw).body
        from aiconnect.sip.sdp import parse_sdp

        our_ports = [m.port for m in parse_sdp(answer).media]
        await self.app.wait_for("newCall", 1)
        return {"sig": sig, "local": local, "ok": ok_raw, "ids": ids, "rtp": rtp, "ports": our_ports, "session_id": self.app.new_calls[0]["sessionId"]}

    async def bye(self, call: dict[str, Any]) -> None:
        call["sig"].send(in_dialog("BYE", "udp", call["local"], call["ok"], call["ids"], 102, DOMAIN), self.sip_port)
        resp = parse(await call["sig"].next_final(call_id=call["ids"]["call_id"]))
        self.assertEqual((resp.status, resp.cseq.method), (200, "BYE"))

    async def api_post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        resp = await treq.post(
            "http://127.0.0.1:%d%s" % (self.api_port, path),
            json=body,
            headers={"Authorization": "Bearer t0ken"},
            persistent=False,
        )
        return resp.code, json.loads(await resp.content())

    async def events(self, names: list[str], timeout: float = 15.0, settle: bool = True) -> None:
        """
        Wait until the application got exactly the events C{names}, signed.

        @param settle: Then check that no other event follows within 0.2 s.
            A check followed by another in the same test needs no settling:
            an extra event shows in the later check's list.
        """

        def got() -> str:
            return "events %r; got %r" % (names, self.app.event_names())

        await wait_until(lambda: self.app.event_names() == names, timeout, what=got)
        if settle:
            await pause(0.2)
            self.assertEqual(self.app.event_names(), names)
        self.assertEqual(self.app.bad_signatures, 0)


UDP_TRUNK = """
  [[tenant.trunk]]
  match = "aiforward"
  target = "srs.test"
  transport = "udp"
"""


class ForwardFailoverTests(ForwardTestBase):
    """
    The SPEC example order through DNS: the first SRS answers 503, the
    second 200.
    """

    async def test_failover_and_full_order(self) -> None:
        """
        Events arrive in order naming the second target; the SRS's INVITE
        carries Require: siprec, +sip.src, the X- headers, the ordered labels
        and codec, and metadata that validates against the RFC 7865 XSD with
        the overridden names; inbound BYE gives BYE at the SRS, then
        SIPRECFORWARDSTOPPED and SESSIONCOMPLETED.
        """
        srs1 = self.srs("503")
        srs2 = self.srs("200")
        zone = two_srs_zone(srs1.port.getHost().port, srs2.port.getHost().port, services=("_sip._udp",))
        self.setup_service(UDP_TRUNK, {"startSIPRecForward": ORDER}, zone, 23000)
        call = await self.start_call()
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED"], settle=False)
        started = self.app.events[1]
        self.assertEqual(started["target"], "127.0.0.1:%d;transport=udp" % srs2.port.getHost().port)
        self.assertEqual(started["sipRecForwardReferenceId"], {"ticketId": 98765})
        self.assertEqual(started["codec"], "PCMU")
        self.assertEqual(srs1.count("INVITE"), 1)
        invite = [r for r in srs2.requests if r.method == "INVITE"][0]
        self.assertIn("siprec", invite.headers.tokens("Require"))
        self.assertTrue(invite.contacts[0].has_param("+sip.src"))
        self.assertEqual(invite.headers.get("X-Correlation-Id"), "a3b47c1e")
        self.assertEqual(invite.headers.get("X-Tenant"), "acme-cc")
        offer = srs2.offer_of(invite)
        self.assertEqual([m.label for m in offer.media], ["labelA", "labelB"])
        self.assertEqual([m.direction for m in offer.media], ["sendonly", "sendonly"])
        self.assertEqual([m.payload_types[0] for m in offer.media], [0, 0])
        md = srs2.metadata_of(invite)
        schema = _schema()
        schema.validate(md.decode())
        text = md.decode()
        for expected in ("Alice Andersson", "Support IVR", "sip:alice@", "sip:support@", "<label>labelA</label>", "<label>labelB</label>"):
            self.assertIn(expected, text)

        # Audio: PCMA in, PCMU out, direct G.711 table, continuous numbering.
        payload = bytes(range(160))
        for i in range(4):
            call["rtp"][0].transport.write(rtp_packet(500 + i, 160 * i, 0xABCD, 8, payload), ("127.0.0.1", call["ports"][0]))
        got = [await srs2.rtp[0].next_message() for _ in range(4)]
        self.assertEqual([g[1] & 0x7F for g in got], [0, 0, 0, 0])
        self.assertEqual([g[12:] for g in got], [payload.translate(g711.ALAW_TO_ULAW)] * 4)
        seqs = [int.from_bytes(g[2:4], "big") for g in got]
        self.assertEqual([s - seqs[0] for s in seqs], [0, 1, 2, 3])

        await self.bye(call)
        await srs2.wait_for("BYE")
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"])
        self.assertEqual(self.app.events[2]["stoppedBy"], "inboundBye")
        self.assertEqual(srs2.requests[-1].headers.get("X-Tenant"), "acme-cc")

    async def test_srs_never_answers(self) -> None:
        """
        An SRS that never answers: Timer B ends the INVITE (after 64*T1,
        T1 = 0.01 s here) and the next target answers.
        """
        srs1 = self.srs("silent")
        srs2 = self.srs("200")
        zone = two_srs_zone(srs1.port.getHost().port, srs2.port.getHost().port, services=("_sip._udp",), with_naptr=False)
        self.setup_service(UDP_TRUNK, {"startSIPRecForward": dict(ORDER, codec="PCMA")}, zone, 23100, t1=0.01)
        call = await self.start_call()
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED"], timeout=20, settle=False)
        self.assertGreater(srs1.count("INVITE"), 1)  # retransmitted, never answered
        self.assertEqual(self.app.events[1]["target"], "127.0.0.1:%d;transport=udp" % srs2.port.getHost().port)
        await self.bye(call)
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"])

    async def test_all_targets_fail(self) -> None:
        """
        When every target answers 503, SIPRECFORWARDFAILED names the status
        and the targets tried, and the inbound session goes on.
        """
        srs1 = self.srs("503")
        srs2 = self.srs("503")
        zone = two_srs_zone(srs1.port.getHost().port, srs2.port.getHost().port, services=("_sip._udp",))
        self.setup_service(UDP_TRUNK, {"startSIPRecForward": ORDER}, zone, 23200)
        call = await self.start_call()
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDFAILED"], settle=False)
        failed = self.app.events[1]
        self.assertEqual(failed["status"], 503)
        self.assertEqual(len(failed["targetsTried"]), 2)
        await self.bye(call)
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDFAILED", "SESSIONCOMPLETED"])


class ForwardVariantsTests(ForwardTestBase):
    """
    Digest authentication, REST start/stop, two forwards, SRS BYE,
    invalid orders.
    """

    async def test_digest_authentication(self) -> None:
        """
        401 is answered once with the trunk's digest credentials.
        """
        srs = self.srs("auth")
        trunk = UDP_TRUNK.replace('target = "srs.test"', 'target = "127.0.0.1:%d"' % srs.port.getHost().port) + '  username = "rec"\n  password = "s3cret"\n'
        self.setup_service(trunk, {"startSIPRecForward": ORDER}, None, 23300)
        call = await self.start_call()
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED"])
        self.assertTrue(srs.auth_ok)
        invites = [r for r in srs.requests if r.method == "INVITE"]
        self.assertEqual(len(invites), 2)
        self.assertEqual(invites[0].call_id, invites[1].call_id)
        self.assertEqual(invites[1].cseq.number, invites[0].cseq.number + 1)
        await self.bye(call)

    async def test_rest_start_and_stop(self) -> None:
        """
        A forward started and stopped through the REST API mid-call.
        """
        srs = self.srs("200")
        trunk = UDP_TRUNK.replace('target = "srs.test"', 'target = "127.0.0.1:%d"' % srs.port.getHost().port)
        self.setup_service(trunk, {}, None, 23400)
        call = await self.start_call()
        await self.events(["SESSIONSTARTED"], settle=False)
        code, body = await self.api_post("/%s/startsiprecforward" % DOMAIN, dict(ORDER, sessionId=call["session_id"]))
        self.assertEqual(code, 200, body)
        forward_id = body["forwardId"]
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED"], settle=False)
        self.assertEqual(self.app.events[1]["forwardId"], forward_id)
        code, body = await self.api_post("/%s/stopsiprecforward" % DOMAIN, {"sessionId": call["session_id"], "forwardId": forward_id})
        self.assertEqual((code, body["stopped"]), (200, [forward_id]))
        await srs.wait_for("BYE")
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED"], settle=False)
        self.assertEqual(self.app.events[2]["stoppedBy"], "api")
        self.assertEqual(srs.requests[-1].headers.get("X-Correlation-Id"), "a3b47c1e")
        await self.bye(call)
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"])

    async def test_two_forwards_and_srs_bye(self) -> None:
        """
        Two forwards at once, each with its own id and codec; a BYE from one
        SRS ends only that forward.
        """
        srs1 = self.srs("200")
        srs2 = self.srs("200")
        trunks = (
            UDP_TRUNK.replace('target = "srs.test"', 'target = "127.0.0.1:%d"' % srs1.port.getHost().port)
            + UDP_TRUNK.replace('match = "aiforward"', 'match = "second"').replace('target = "srs.test"', 'target = "127.0.0.1:%d"' % srs2.port.getHost().port)
        )
        orders = [dict(ORDER, codec="PCMA"), dict(ORDER, uri="sip:second@customer.example.com", codec="PCMU", xHeaders={"X-Leg": "2"})]
        self.setup_service(trunks, {"startSIPRecForward": orders}, None, 23500)
        call = await self.start_call()
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTARTED"], settle=False)
        ids = {e["forwardId"] for e in self.app.events[1:]}
        self.assertEqual(len(ids), 2)
        self.assertEqual(srs1.offer_of(srs1.requests[0]).media[0].payload_types[0], 8)
        self.assertEqual(srs2.offer_of(srs2.requests[0]).media[0].payload_types[0], 0)
        srs1.send_bye()
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED"], settle=False)
        self.assertEqual(self.app.events[3]["stoppedBy"], "srsBye")
        # The inbound session and the other forward go on.
        payload = b"\xd5" * 160
        call["rtp"][0].transport.write(rtp_packet(1, 0, 0x1, 8, payload), ("127.0.0.1", call["ports"][0]))
        got = await srs2.rtp[0].next_message()
        self.assertEqual(got[12:], payload.translate(g711.ALAW_TO_ULAW))
        await self.bye(call)
        await srs2.wait_for("BYE")
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"])

    async def test_invalid_order_reported(self) -> None:
        """
        An invalid order in the newCall answer never reaches the wire: it is
        reported as SIPRECFORWARDFAILED naming the field.
        """
        srs = self.srs("200")
        trunk = UDP_TRUNK.replace('target = "srs.test"', 'target = "127.0.0.1:%d"' % srs.port.getHost().port)
        bad = dict(ORDER, xHeaders={"X-Bad": "line\r\nInjected: yes"})
        self.setup_service(trunk, {"startSIPRecForward": bad}, None, 23600)
        call = await self.start_call()
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDFAILED"])
        self.assertIn("xHeaders.X-Bad", self.app.events[1]["reason"])
        self.assertEqual(self.app.events[1]["sipRecForwardReferenceId"], {"ticketId": 98765})
        self.assertEqual(srs.requests, [])
        await self.bye(call)


TLS_TRUNK = """
  [[tenant.trunk]]
  match = "aiforward"
  target = "srs.test"
  transport = "tls"
"""


class ForwardTlsTests(ForwardTestBase):
    """
    Forwarding over TLS with SRTP, and certificate verification.
    """

    async def test_tls_srtp(self) -> None:
        """
        Over TLS with srtp: RTP/SAVP with a fresh a=crypto per stream; the
        SRS decrypts our SRTP with libsrtp using the keys from our SDP.
        """
        import pylibsrtp

        srs1 = self.srs("200", "tls")
        srs2 = self.srs("200", "tls")
        zone = two_srs_zone(srs1.port.getHost().port, srs2.port.getHost().port, services=("_sips._tcp",))
        self.setup_service(TLS_TRUNK, {"startSIPRecForward": dict(ORDER, srtp=True)}, zone, 23700)
        call = await self.start_call()
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED"], settle=False)
        self.assertTrue(self.app.events[1]["srtp"])
        offer = srs1.offer_of(srs1.requests[0])
        self.assertEqual([m.proto for m in offer.media], ["RTP/SAVP", "RTP/SAVP"])
        keys = [m.crypto[0].key for m in offer.media]
        self.assertNotEqual(keys[0], keys[1])
        payload = bytes(range(100, 260)) if False else bytes((i * 7) & 0xFF for i in range(160))
        call["rtp"][1].transport.write(rtp_packet(77, 1234, 0x5, 8, payload), ("127.0.0.1", call["ports"][1]))
        protected = await srs1.rtp[1].next_message()
        policy = pylibsrtp.Policy(key=keys[1], ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
        plain = pylibsrtp.Session(policy=policy).unprotect(protected)
        self.assertEqual(plain[12:], payload.translate(g711.ALAW_TO_ULAW))
        await self.bye(call)
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"])

    async def test_tls_wrong_host(self) -> None:
        """
        A certificate for another host name: SIPRECFORWARDFAILED with a TLS
        reason, after trying both targets.
        """
        srs1 = self.srs("200", "tls", names=("elsewhere.test",))
        srs2 = self.srs("200", "tls", names=("elsewhere.test",))
        zone = two_srs_zone(srs1.port.getHost().port, srs2.port.getHost().port, services=("_sips._tcp",))
        self.setup_service(TLS_TRUNK, {"startSIPRecForward": dict(ORDER, srtp=True)}, zone, 23800)
        call = await self.start_call()
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDFAILED"])
        failed = self.app.events[1]
        self.assertIn("transport", failed["reason"])
        self.assertRegex(failed["reason"].lower(), "tls|certificate|ssl|verif")
        self.assertEqual(len(failed["targetsTried"]), 2)
        await self.bye(call)


class ShutdownTests(ForwardTestBase):
    """
    SIGTERM drains (SPEC s7): no new sessions, active ones closed cleanly
    with their events delivered.
    """

    async def test_stop_drains_active_session(self) -> None:
        """
        Stopping the service BYEs the SRC and the SRS and delivers
        SIPRECFORWARDSTOPPED and SESSIONCOMPLETED (reason shutdown) before
        it finishes.
        """
        srs = self.srs("200")
        trunk = UDP_TRUNK.replace('target = "srs.test"', 'target = "127.0.0.1:%d"' % srs.port.getHost().port)
        self.setup_service(trunk, {"startSIPRecForward": ORDER}, None, 23900)
        call = await self.start_call()
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED"])
        stopping = self.service.stopService()
        # The SRC answers our BYE (the drain waits for an unanswered one:
        # tests.integration.test_drain).
        bye = await call["sig"].take(lambda m: m.startswith(b"BYE "))
        call["sig"].send(answer(bye), self.sip_port)
        await stopping
        self.assertEqual(
            self.app.event_names(), ["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"]
        )
        self.assertEqual(self.app.events[2]["stoppedBy"], "shutdown")
        self.assertEqual(self.app.events[3]["reason"], "shutdown")
        self.assertEqual(srs.count("BYE"), 1)
        self.assertTrue(any(m.startswith(b"BYE ") for m in call["sig"].received))


class ReofferTests(ForwardTestBase):
    """
    Inbound changes reach the SRS; a stop before the answer CANCELs.
    """

    async def test_inbound_metadata_update_reinvites_srs(self) -> None:
        """
        An inbound re-INVITE with new metadata gives a re-INVITE to the SRS
        with the new metadata and the X- headers.
        """
        srs = self.srs("200")
        trunk = UDP_TRUNK.replace('target = "srs.test"', 'target = "127.0.0.1:%d"' % srs.port.getHost().port)
        self.setup_service(trunk, {"startSIPRecForward": ORDER}, None, 24900)
        call = await self.start_call()
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED"], settle=False)
        from tests.integration.siprec_peer import sdp_offer

        new_md = METADATA.replace(b"ab30317f1a784dc48ff824d0d3715d86", b"0123456789abcdef0123456789abcdef")
        self.assertNotEqual(new_md, METADATA)
        offer = sdp_offer([("96", 40000, 8), ("98", 40002, 8)], version=2890844527)
        boundary = b"foobar"
        body = (
            b"--foobar\r\nContent-Type: application/sdp\r\n\r\n" + offer + b"\r\n"
            b"--foobar\r\nContent-Type: application/rs-metadata\r\nContent-Disposition: recording-session\r\n\r\n" + new_md + b"\r\n--foobar--\r\n"
        )
        reinvite = in_dialog("INVITE", "udp", call["local"], call["ok"], call["ids"], 102, DOMAIN, body=body, content_type="multipart/mixed;boundary=" + boundary.decode(), extra="Require: siprec")
        call["sig"].send(reinvite, self.sip_port)
        ok2 = parse(await call["sig"].next_final(call_id=call["ids"]["call_id"]))
        self.assertEqual((ok2.status, ok2.cseq.method), (200, "INVITE"))
        await srs.wait_for("INVITE", 2)
        re_inv = [r for r in srs.requests if r.method == "INVITE"][1]
        self.assertIsNotNone(re_inv.to_tag)
        self.assertIn(b"0123456789abcdef0123456789abcdef", srs.metadata_of(re_inv))
        self.assertIn(b"Support IVR", srs.metadata_of(re_inv))
        self.assertEqual(re_inv.headers.get("X-Correlation-Id"), "a3b47c1e")
        self.assertEqual([m.label for m in srs.offer_of(re_inv).media], ["labelA", "labelB"])
        call["sig"].send(in_dialog("ACK", "udp", call["local"], call["ok"], call["ids"], 102, DOMAIN), self.sip_port)
        call["ids"] = dict(call["ids"])
        call["sig"].send(in_dialog("BYE", "udp", call["local"], call["ok"], call["ids"], 103, DOMAIN), self.sip_port)
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"])

    async def test_inbound_added_stream_forwarded(self) -> None:
        """
        An inbound re-INVITE adding a third m-line (RFC 7866 s7.1.1.1,
        label 99, which the metadata has) gives a re-INVITE to the SRS with
        three sendonly m-lines, the first two unchanged in order and port;
        RTP the SRC sends on the third stream reaches the SRS's third RTP
        socket transcoded to the order's codec, and the first stream still
        flows.
        """
        srs = self.srs("200")
        trunk = UDP_TRUNK.replace('target = "srs.test"', 'target = "127.0.0.1:%d"' % srs.port.getHost().port)
        self.setup_service(trunk, {"startSIPRecForward": ORDER}, None, 27200)
        call = await self.start_call()
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED"], settle=False)
        first = srs.offer_of([r for r in srs.requests if r.method == "INVITE"][0])
        from aiconnect.sip.sdp import parse_sdp
        from tests.integration.siprec_peer import sdp_offer

        src_ports = [sink.transport.getHost().port for sink in call["rtp"]]
        third, third_port = listen_udp(self)
        offer = sdp_offer(
            [("96", src_ports[0], 8), ("98", src_ports[1], 8), ("99", third_port, 8)], version=2890844527
        )
        body = (
            b"--foobar\r\nContent-Type: application/sdp\r\n\r\n" + offer + b"\r\n"
            b"--foobar\r\nContent-Type: application/rs-metadata\r\nContent-Disposition: recording-session\r\n\r\n" + METADATA + b"\r\n--foobar--\r\n"
        )
        reinvite = in_dialog("INVITE", "udp", call["local"], call["ok"], call["ids"], 102, DOMAIN, body=body, content_type="multipart/mixed;boundary=foobar", extra="Require: siprec")
        call["sig"].send(reinvite, self.sip_port)
        ok2 = parse(await call["sig"].next_final(call_id=call["ids"]["call_id"]))
        self.assertEqual((ok2.status, ok2.cseq.method), (200, "INVITE"))
        call["sig"].send(in_dialog("ACK", "udp", call["local"], call["ok"], call["ids"], 102, DOMAIN), self.sip_port)
        inbound_third = parse_sdp(_sdp_part(ok2.body)).media[2].port
        self.assertNotEqual(inbound_third, 0)

        await srs.wait_for("INVITE", 2)
        re_inv = [r for r in srs.requests if r.method == "INVITE"][1]
        self.assertIsNotNone(re_inv.to_tag)
        re_offer = srs.offer_of(re_inv)
        self.assertEqual([m.label for m in re_offer.media], ["labelA", "labelB", "99"])
        self.assertEqual([m.direction for m in re_offer.media], ["sendonly"] * 3)
        self.assertEqual([m.port for m in re_offer.media[:2]], [m.port for m in first.media])
        self.assertNotIn(re_offer.media[2].port, [0] + [m.port for m in first.media])
        self.assertEqual([m.payload_types[0] for m in re_offer.media], [0, 0, 0])
        md = srs.metadata_of(re_inv)
        self.assertIn(b"<label>99</label>", md)
        _schema().validate(md.decode())
        self.assertEqual(len(srs.rtp), 3)
        await srs.wait_for("ACK", 2)

        # PCMA in on the added stream, PCMU out at the SRS's third socket.
        payload = bytes(range(160))
        for i in range(3):
            third.transport.write(rtp_packet(700 + i, 160 * i, 0x9999, 8, payload), ("127.0.0.1", inbound_third))
        got = [await srs.rtp[2].next_message() for _ in range(3)]
        self.assertEqual([g[1] & 0x7F for g in got], [0, 0, 0])
        self.assertEqual([g[12:] for g in got], [payload.translate(g711.ALAW_TO_ULAW)] * 3)
        seqs = [int.from_bytes(g[2:4], "big") for g in got]
        self.assertEqual([s - seqs[0] for s in seqs], [0, 1, 2])
        self.assertNotEqual(int.from_bytes(got[0][8:12], "big"), 0x9999)
        # The streams forwarded before still flow.
        call["rtp"][0].transport.write(rtp_packet(1, 0, 0xABCD, 8, payload), ("127.0.0.1", call["ports"][0]))
        got0 = await srs.rtp[0].next_message()
        self.assertEqual(got0[12:], payload.translate(g711.ALAW_TO_ULAW))

        call["sig"].send(in_dialog("BYE", "udp", call["local"], call["ok"], call["ids"], 103, DOMAIN), self.sip_port)
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"])

    async def test_stop_before_answer_cancels(self) -> None:
        """
        A REST stop while the SRS has only answered 100: CANCEL (with the
        X- headers), then SIPRECFORWARDSTOPPED with reason api.
        """
        srs = self.srs("silent")
        trunk = UDP_TRUNK.replace('target = "srs.test"', 'target = "127.0.0.1:%d"' % srs.port.getHost().port)
        self.setup_service(trunk, {}, None, 24800)
        call = await self.start_call()
        await self.events(["SESSIONSTARTED"], settle=False)
        # The silent SRS never answers; make it send 100 so CANCEL may go.
        srs.mode = "ringing"
        code, body = await self.api_post("/%s/startsiprecforward" % DOMAIN, dict(ORDER, sessionId=call["session_id"]))
        self.assertEqual(code, 200)
        await srs.wait_for("INVITE")
        await pause(0.2)  # the SRS's 100 reaches the forward leg: CANCEL may go
        code, _ = await self.api_post("/%s/stopsiprecforward" % DOMAIN, {"sessionId": call["session_id"]})
        self.assertEqual(code, 200)
        await srs.wait_for("CANCEL")
        cancel = [r for r in srs.requests if r.method == "CANCEL"][0]
        self.assertEqual(cancel.headers.get("X-Tenant"), "acme-cc")
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTOPPED"], settle=False)
        self.assertEqual(self.app.events[1]["stoppedBy"], "api")
        await self.bye(call)
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"])


class SrsRequestsTests(ForwardTestBase):
    """
    Requests from the SRS inside the recording session are answered.
    """

    async def test_srs_options_info_update_reinvite(self) -> None:
        """
        OPTIONS, INFO, UPDATE (session refresh) and a re-INVITE from the SRS
        all get 200 (the re-INVITE with our SDP, sendonly), and the forward
        goes on.
        """
        srs = self.srs("200")
        trunk = UDP_TRUNK.replace('target = "srs.test"', 'target = "127.0.0.1:%d"' % srs.port.getHost().port)
        self.setup_service(trunk, {"startSIPRecForward": ORDER}, None, 27000)
        call = await self.start_call()
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED"], settle=False)
        for n, method in enumerate(("OPTIONS", "INFO", "UPDATE"), start=1):
            srs.send_in_dialog(method, extra=["Session-Expires: 1800;refresher=uas"] if method == "UPDATE" else None)
            await srs.wait_for("200", n)
            self.assertEqual(srs.responses[-1].cseq.method, method)
        offer = b"v=0\r\no=SRS 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\na=recvonly\r\nm=audio 7002 RTP/AVP 0\r\na=recvonly\r\n"
        cseq = srs.send_in_dialog("INVITE", body=offer)
        await srs.wait_for("200", 4)
        ok = srs.responses[-1]
        self.assertEqual((ok.status, ok.cseq.method), (200, "INVITE"))
        self.assertIn(b"a=sendonly", ok.body)
        srs.send_in_dialog("ACK", cseq=cseq)
        await self.bye(call)
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"])
        self.assertEqual(self.app.events[2]["stoppedBy"], "inboundBye")
