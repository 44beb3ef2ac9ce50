# -*- test-case-name: tests.integration.test_mandatory -*-
"""
Mandatory forwards end to end on 127.0.0.1 (SPEC s13, "record or
reject"): the real service, a raw SIP SRC over UDP, a real HTTP
application answering newCall with C{"mandatory": true} orders, and
scripted SRS peers (L{tests.integration.mandatory_peers}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor

from aiconnect.media import g711
from aiconnect.sip.message import parse
from aiconnect.sip.sdp import parse_sdp
from tests.fakes import listen_udp, pause, wait_until
from tests.integration.mandatory_peers import GatedSrsPeer, LoggedUdpPeer, WireLog
from tests.integration.scenario import ack_of_failure, cancel_of
from tests.integration.siprec_peer import in_dialog, rtp_packet, sdp_offer, siprec_invite
from tests.integration.test_forward import DOMAIN, METADATA, ORDER, ForwardTestBase

REASON = 'SIP;cause=503;text="mandatory forward failed"'
MANDATORY = dict(ORDER, mandatory=True)


def trunk(match: str, srs: GatedSrsPeer) -> str:
    """
    A UDP trunk C{match} whose one target is C{srs}.
    """
    return '\n  [[tenant.trunk]]\n  match = "%s"\n  target = "127.0.0.1:%d"\n  transport = "udp"\n' % (
        match,
        srs.port.getHost().port,
    )


class MandatoryTestBase(ForwardTestBase):
    """
    The service, its application and gated SRS peers sharing one wire log.
    """

    def setUp(self) -> None:
        """
        A fresh wire log.
        """
        super().setUp()
        self.wire = WireLog()

    def gated_srs(self, mode: str, name: str = "srs") -> GatedSrsPeer:
        """
        A L{GatedSrsPeer} on UDP, stopped after the test.
        """
        peer = GatedSrsPeer(mode, self.wire, name)
        peer.listen_udp()
        self.addCleanup(peer.stop)
        return peer

    def invite(self) -> dict[str, Any]:
        """
        The SRC sends its INVITE (two PCMA streams); nothing is awaited.
        """
        sig = LoggedUdpPeer(self.wire)
        port = reactor.listenUDP(0, sig, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        local = port.getHost().port
        rtp, ports = [], []
        for _ in range(2):
            sink, rtp_port = listen_udp(self)
            rtp.append(sink)
            ports.append(rtp_port)
        invite, ids = siprec_invite("udp", local, DOMAIN, sdp_offer([("96", ports[0], 8), ("98", ports[1], 8)]), METADATA)
        sig.send(invite, self.sip_port)
        return {"sig": sig, "local": local, "ids": ids, "rtp": rtp, "invite": invite}

    async def rejected(self, call: dict[str, Any]) -> None:
        """
        The SRC's INVITE gets 503 with exactly the SPEC s13 Reason, never a
        200; the SRC ACKs it.
        """
        raw = await call["sig"].next_final(call_id=call["ids"]["call_id"])
        resp = parse(raw)
        self.assertEqual((resp.status, resp.reason), (503, "Service Unavailable"))
        self.assertEqual(resp.headers.get_all("Reason"), [REASON])
        call["sig"].send(ack_of_failure(call["invite"], resp.headers.get("To")), self.sip_port)
        await pause(0.2)
        self.assertEqual([r.status for r in call["sig"].finals()], [503] * len(call["sig"].finals()))

    async def ports_released(self) -> None:
        """
        Every RTP port pair is free again.
        """

        def in_use() -> int:
            stats = self.service.relay.stats()
            return int(stats["port_pairs_total"] - stats["port_pairs_free"])

        await wait_until(lambda: in_use() == 0, 5, what=lambda: "%d port pairs still in use" % in_use())


class AnsweredTests(MandatoryTestBase):
    """
    The SRC's 200 OK waits for the mandatory forward's SRS.
    """

    async def test_answer_after_the_srs(self) -> None:
        """
        The SRS gets its INVITE while the SRC has no final answer; only
        after the SRS's 200 does the SRC get 200; events SESSIONSTARTED
        then SIPRECFORWARDSTARTED; audio reaches the SRS.
        """
        srs = self.gated_srs("ringing")
        self.setup_service(trunk("aiforward", srs), {"startSIPRecForward": MANDATORY}, None, 21800)
        call = self.invite()
        await srs.wait_for("INVITE")
        await pause(0.3)
        self.assertEqual(call["sig"].finals(), [])
        self.assertEqual(self.app.event_names(), [])
        srs.release(200)
        ok_raw = await call["sig"].next_final(call_id=call["ids"]["call_id"])
        self.assertEqual(parse(ok_raw).status, 200)
        wire = self.wire
        self.assertLess(wire.position("srs got INVITE"), wire.position("srs sent 200"))
        self.assertLess(wire.position("srs sent 200"), wire.position("src got 200"))
        call["sig"].send(in_dialog("ACK", "udp", call["local"], ok_raw, call["ids"], 101, DOMAIN), self.sip_port)
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED"], settle=False)
        self.assertEqual(self.app.events[1]["sipRecForwardReferenceId"], {"ticketId": 98765})

        ports = [m.port for m in parse_sdp(parse(ok_raw).body).media]
        payload = bytes(range(160))
        for i in range(3):
            call["rtp"][0].transport.write(rtp_packet(700 + i, 160 * i, 0xBEEF, 8, payload), ("127.0.0.1", ports[0]))
        got = [await srs.rtp[0].next_message() for _ in range(3)]
        self.assertEqual([g[12:] for g in got], [payload.translate(g711.ALAW_TO_ULAW)] * 3)

        call["ok"] = ok_raw
        await self.bye(call)
        await srs.wait_for("BYE")
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"])


class RejectedTests(MandatoryTestBase):
    """
    503 with Reason when the mandatory forward fails.
    """

    async def test_srs_503(self) -> None:
        """
        The only target answers 503: the SRC gets 503 with the Reason,
        SIPRECFORWARDFAILED (status 503) then SESSIONCOMPLETED reason
        mandatoryForwardFailed, and every RTP port is released.
        """
        srs = self.gated_srs("503")
        self.setup_service(trunk("aiforward", srs), {"startSIPRecForward": MANDATORY}, None, 21900)
        call = self.invite()
        await self.rejected(call)
        await self.events(["SIPRECFORWARDFAILED", "SESSIONCOMPLETED"])
        self.assertEqual(self.app.events[0]["status"], 503)
        self.assertEqual(self.app.events[1]["reason"], "mandatoryForwardFailed")
        self.assertLess(self.wire.position("srs got INVITE"), self.wire.position("src got 503"))
        await self.ports_released()

    async def test_nothing_left_running(self) -> None:
        """
        Two mandatory forwards, a non-mandatory one and a recording; the
        first mandatory SRS answers, the second then fails: 503 to the SRC,
        BYE to the first SRS, the non-mandatory SRS never gets an INVITE,
        no recording file; events tell the whole story, ports are released.
        """
        answering = self.gated_srs("200", "srs1")
        failing = self.gated_srs("ringing", "srs2")
        optional = self.gated_srs("200", "srs3")
        trunks = trunk("aiforward", answering) + trunk("second", failing) + trunk("third", optional)
        answer = {
            "startSIPRecForward": [
                MANDATORY,
                dict(MANDATORY, uri="sip:second@%s" % DOMAIN),
                dict(ORDER, uri="sip:third@%s" % DOMAIN),
            ],
            "startRecording": {"tracks": "both", "encoding": "L16"},
        }
        self.setup_service(trunks, answer, None, 21800)
        call = self.invite()
        await answering.wait_for("ACK")
        await failing.wait_for("INVITE")
        await pause(0.2)
        self.assertEqual(call["sig"].finals(), [])
        failing.release(503)
        await self.rejected(call)
        await answering.wait_for("BYE")
        await self.events(["SIPRECFORWARDSTARTED", "SIPRECFORWARDFAILED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"])
        self.assertEqual(self.app.events[2]["stoppedBy"], "error")
        self.assertEqual(self.app.events[0]["forwardId"], self.app.events[2]["forwardId"])
        self.assertEqual(optional.count("INVITE"), 0)
        recordings = self.dir / "recordings"
        self.assertEqual(list(recordings.rglob("*")) if recordings.exists() else [], [])
        await self.ports_released()


class CancelTests(MandatoryTestBase):
    """
    The SRC gives up while the 200 OK waits.
    """

    async def test_cancel_while_waiting(self) -> None:
        """
        CANCEL while the mandatory SRS rings: 487 to the INVITE, CANCEL to
        the SRS, SIPRECFORWARDSTOPPED then SESSIONCOMPLETED reason cancel,
        ports released, never a 200.
        """
        srs = self.gated_srs("ringing")
        self.setup_service(trunk("aiforward", srs), {"startSIPRecForward": MANDATORY}, None, 21900)
        call = self.invite()
        await srs.wait_for("INVITE")
        await pause(0.2)  # the SRS's 100/180 reached the forward: CANCEL may go
        call["sig"].send(cancel_of(call["invite"]), self.sip_port)
        raw = await call["sig"].next_final(call_id=call["ids"]["call_id"])
        resp = parse(raw)
        if resp.cseq.method == "CANCEL":
            raw = await call["sig"].next_final(call_id=call["ids"]["call_id"])
            resp = parse(raw)
        self.assertEqual((resp.status, resp.cseq.method), (487, "INVITE"))
        call["sig"].send(ack_of_failure(call["invite"], resp.headers.get("To")), self.sip_port)
        await srs.wait_for("CANCEL")
        await self.events(["SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"])
        self.assertEqual(self.app.events[1]["reason"], "cancel")
        self.assertNotIn(200, [r.status for r in call["sig"].finals() if r.cseq.method == "INVITE"])
        await self.ports_released()
