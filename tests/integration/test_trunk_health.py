# -*- test-case-name: tests.integration.test_trunk_health -*-
"""
Trunk resilience end to end on 127.0.0.1 (SPEC s13, issue 11): the real
service, a test SRC and application, scripted SRS peers
(L{tests.integration.health_peers.HealthPeer}) found through a real DNS
server: ring timeout with CANCEL and the next target, the late 2xx ACKed
and BYEd after the INVITE transaction ended, dead targets skipped for
C{down_for}, OPTIONS probing seen through C{GET .../health}, and
C{POST .../test} against TLS targets.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import treq
from twisted.names import dns

from aiconnect import tlsutil
from aiconnect.config import TlsConfig
from tests.fakes import pause, wait_until
from tests.integration.dnsserver import a, srv, two_srs_zone
from tests.integration.health_peers import HealthPeer
from tests.integration.test_forward import DOMAIN, ORDER, UDP_TRUNK, ForwardTestBase

TLS_TRUNK = """
  [[tenant.trunk]]
  match = "aiforward"
  target = "srs.test"
  transport = "tls"
  username = "rec"
  password = "s3cret"
"""


def _literal(port: int, extra: str) -> str:
    return UDP_TRUNK.replace('target = "srs.test"', 'target = "127.0.0.1:%d"' % port) + extra


class TrunkHealthTestBase(ForwardTestBase):
    """
    L{ForwardTestBase} with L{HealthPeer}s and the trunk routes.
    """

    def peer(self, mode: str, transport: str = "udp", names: tuple[str, ...] = ("srs1.srs.test", "srs.test")) -> HealthPeer:
        peer = HealthPeer(mode, transport)
        if transport == "udp":
            peer.listen_udp()
        else:
            leaf = tlsutil.generate_certificate(self.certs.authority, list(names))
            folder = Path(tempfile.mkdtemp(prefix="aiconnect-health-"))
            (folder / "c.pem").write_bytes(leaf.certificate)
            (folder / "k.pem").write_bytes(leaf.private_key)
            cfg = TlsConfig(certificate=str(folder / "c.pem"), private_key=str(folder / "k.pem"))
            peer.listen_tls(tlsutil.server_context_factory(cfg))
        self.addCleanup(peer.stop)
        return peer

    async def api(self, method: str, path: str) -> tuple[int, Any, str]:
        resp = await treq.request(
            method, "http://127.0.0.1:%d/%s%s" % (self.api_port, DOMAIN, path), headers={"Authorization": "Bearer t0ken"}, persistent=False
        )
        text = (await resp.content()).decode()
        return resp.code, json.loads(text), text

    async def count_events(self, name: str, n: int, timeout: float = 15.0) -> None:
        await wait_until(lambda: self.app.event_names().count(name) >= n, timeout, what=lambda: repr(self.app.event_names()))


class RingTimeoutTests(TrunkHealthTestBase):
    """
    SPEC s13 ring_timeout, and the late 2xx (RFC 3261 s13.2.2.4).
    """

    async def test_ringing_target_cancelled_second_answers(self) -> None:
        """
        The first target rings and never answers: CANCEL after about 1 s,
        the second target gets the INVITE, answers, and is named by
        SIPRECFORWARDSTARTED.
        """
        srs1 = self.peer("ringing")
        srs2 = self.peer("200")
        zone = two_srs_zone(srs1.port.getHost().port, srs2.port.getHost().port, services=("_sip._udp",), with_naptr=False)
        self.setup_service(UDP_TRUNK + "  ring_timeout = 1\n", {"startSIPRecForward": ORDER}, zone, 21200)
        call = await self.start_call()
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED"], settle=False)
        self.assertEqual(self.app.events[1]["target"], "127.0.0.1:%d;transport=udp" % srs2.port.getHost().port)
        waited = srs1.first("CANCEL") - srs1.first("INVITE")
        self.assertTrue(0.9 <= waited < 3.0, waited)
        self.assertGreaterEqual(srs2.first("INVITE"), srs1.first("CANCEL") - 0.05)
        await srs1.wait_for("ACK")  # the ACK of the 487
        self.assertEqual(self.service.srs.forwarder.stats["ring_timeouts"], 1)
        await self.bye(call)
        await srs2.wait_for("BYE")

    async def test_late_200_acked_and_byed(self) -> None:
        """
        A target that answers 200 well after our CANCEL (the INVITE
        transaction has ended): SIPRECFORWARDFAILED says ring timeout, and
        the late 200 gets ACK then BYE.
        """
        srs = self.peer("late")
        srs.late_after = 1.0
        trunk = _literal(srs.port.getHost().port, "  ring_timeout = 1\n")
        self.setup_service(trunk, {"startSIPRecForward": ORDER}, None, 21300, t1=0.01)
        call = await self.start_call()
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDFAILED"], settle=False)
        self.assertEqual(self.app.events[1]["reason"], "ring timeout: no answer in 1 s")
        await srs.wait_for("BYE")
        self.assertEqual([m for m, _ in srs.times], ["INVITE", "CANCEL", "ACK", "BYE"])
        invite = srs.dialog["invite"]
        bye = srs.requests[-1]
        self.assertEqual((bye.call_id, bye.to_tag), (invite.call_id, srs.to_tag))
        sip = self.service.sip
        self.assertEqual(sip.ua.stats["late_answers"], 1)
        self.assertGreaterEqual(sip.txlayer.stats["stray_responses"], 1)
        await self.bye(call)


class DownForTests(TrunkHealthTestBase):
    """
    SPEC s13 down_for: a failed target is skipped by the next calls.
    """

    async def test_dead_target_skipped_then_retried(self) -> None:
        """
        After the first target answered 503, the next call's INVITE goes
        straight to the second target; after down_for the first is tried
        again.
        """
        srs1 = self.peer("503")
        srs2 = self.peer("200")
        zone = two_srs_zone(srs1.port.getHost().port, srs2.port.getHost().port, services=("_sip._udp",), with_naptr=False)
        self.setup_service(UDP_TRUNK + "  down_for = 3\n", {"startSIPRecForward": ORDER}, zone, 21400)
        calls = [await self.start_call()]
        await self.count_events("SIPRECFORWARDSTARTED", 1)
        failed_at = srs1.first("INVITE")
        calls.append(await self.start_call())
        await self.count_events("SIPRECFORWARDSTARTED", 2)
        self.assertEqual((srs1.count("INVITE"), srs2.count("INVITE")), (1, 2))
        code, health, _ = await self.api("GET", "/trunks/aiforward/health")
        self.assertEqual(code, 200)
        self.assertEqual([t["state"] for t in health["targets"]], ["down", "up"])
        from twisted.internet import reactor

        await pause(max(0.0, failed_at + 3.1 - reactor.seconds()))
        calls.append(await self.start_call())
        await self.count_events("SIPRECFORWARDSTARTED", 3)
        self.assertEqual((srs1.count("INVITE"), srs2.count("INVITE")), (2, 3))
        for call in calls:
            await self.bye(call)


class ProbeTests(TrunkHealthTestBase):
    """
    SPEC s13 probe_interval, seen through GET /{domain}/trunks/{match}/health.
    """

    async def test_probe_marks_down_then_up(self) -> None:
        """
        OPTIONS answered 503 marks the target down; answered 200 later, up again.
        """
        srs = self.peer("200")
        srs.options_status = 503
        trunk = _literal(srs.port.getHost().port, "  probe_interval = 0.2\n  down_for = 30\n")
        self.setup_service(trunk, {}, None, 21400)
        states: list[dict[str, Any]] = []

        async def state_is(wanted: str) -> None:
            async def check() -> bool:
                code, body, _ = await self.api("GET", "/trunks/aiforward/health")
                self.assertEqual(code, 200)
                states.append(body["targets"][0])
                return body["targets"][0]["state"] == wanted

            for _ in range(50):
                if await check():
                    return
                await pause(0.1)
            self.fail("never %s: %r" % (wanted, states[-1]))

        await state_is("down")
        self.assertEqual(states[-1]["probeStatus"], "503 Service Unavailable")
        self.assertEqual(states[-1]["lastError"], "OPTIONS: 503 Service Unavailable")
        srs.options_status = 200
        await state_is("up")
        self.assertEqual(states[-1]["probeStatus"], "200 OK")
        self.assertGreaterEqual(srs.count("OPTIONS"), 2)


def _one_tls_target(port: int) -> dict[str, Any]:
    """
    C{srs.test} with one SIPS SRV record: C{srs1.srs.test:port} on 127.0.0.1.
    """
    return {
        "_sips._tcp.srs.test": [srv(10, 0, port, "srs1.srs.test")],
        "srs1.srs.test": [a()],
        "srs.test": [dns.Record_TXT(b"no NAPTR here", ttl=60)],
    }


class TrunkTestRouteTests(TrunkHealthTestBase):
    """
    POST /{domain}/trunks/{match}/test against TLS targets.
    """

    async def test_tls_target_all_steps(self) -> None:
        """
        A TLS target with a certificate for the trunk's host, that
        challenges OPTIONS: dns, connect, tls, options and digest are all
        ok; the password is nowhere in the answer.
        """
        srs = self.peer("200", "tls")
        srs.options_auth = True
        self.setup_service(TLS_TRUNK, {}, _one_tls_target(srs.port.getHost().port), 21400)
        code, body, text = await self.api("POST", "/trunks/aiforward/test")
        self.assertEqual(code, 200, text)
        self.assertEqual(body["steps"][0]["step"], "dns")
        self.assertTrue(body["steps"][0]["ok"], body)
        target = body["targets"][0]
        self.assertEqual(target["target"], "127.0.0.1:%d;transport=tls" % srs.port.getHost().port)
        self.assertEqual([(s["step"], s["ok"]) for s in target["steps"]], [
            ("connect", True), ("tls", True), ("options", True), ("digest", True),
        ], body)
        self.assertIn("401", target["steps"][2]["detail"])
        self.assertEqual(target["steps"][3]["detail"], "credentials accepted: 200 OK")
        self.assertTrue(srs.options_auth_ok)
        self.assertTrue(body["ok"])
        self.assertNotIn("s3cret", text)
        self.assertNotIn("response=", text)

    async def test_tls_wrong_name(self) -> None:
        """
        A certificate for another name: the tls step fails and says why.
        """
        srs = self.peer("200", "tls", names=("elsewhere.test",))
        self.setup_service(TLS_TRUNK, {}, _one_tls_target(srs.port.getHost().port), 21400)
        code, body, text = await self.api("POST", "/trunks/aiforward/test")
        self.assertEqual(code, 200, text)
        steps = {s["step"]: s for s in body["targets"][0]["steps"]}
        self.assertTrue(steps["connect"]["ok"])
        self.assertFalse(steps["tls"]["ok"])
        self.assertRegex(steps["tls"]["detail"], "certificate verification failed.*srs.test")
        self.assertFalse(steps["options"]["ok"])
        self.assertFalse(body["ok"])
