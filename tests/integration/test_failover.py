# -*- test-case-name: tests.integration.test_failover -*-
"""
Mid-call failover, the SRS's C{a=inactive} and the inbound hold (SPEC s13)
end to end on 127.0.0.1: the real service, a test SRC, a real HTTP
application, scripted SRS peers (L{tests.integration.failover_peer}) found
through a real DNS server serving a zone with two targets.
"""

from __future__ import annotations

from typing import Any

from aiconnect.media import g711
from aiconnect.sip.message import parse
from tests.fakes import pause
from tests.integration import test_forward as base
from tests.integration.dnsserver import two_srs_zone
from tests.integration.failover_peer import FailingSrs
from tests.integration.siprec_peer import in_dialog, rtp_packet, sdp_offer

DOMAIN = base.DOMAIN
ORDER = base.ORDER
#: The tests of this module run one after the other: they share the RTP
#: port range given to them (21500-21799) in three slices.
RTP = (21500, 21600, 21700)


def _trunk(transport: str, keepalive: float = 0.0) -> str:
    """
    The trunk of the forward's order, through DNS (C{srs.test}).
    """
    trunk = base.UDP_TRUNK.replace('transport = "udp"', 'transport = "%s"' % (transport,))
    if keepalive:
        trunk += "  keepalive = %s\n" % (keepalive,)
    return trunk


def _payload(i: int) -> bytes:
    """
    The A-law payload of the SRC's packet C{i}: distinct per packet.
    """
    return bytes((i * 37 + j) & 0xFF for j in range(160))


def _seq(packet: bytes) -> int:
    return int.from_bytes(packet[2:4], "big")


def _ssrc(packet: bytes) -> int:
    return int.from_bytes(packet[8:12], "big")


class FailoverTestBase(base.ForwardTestBase):
    """
    A forwarding test with L{FailingSrs} peers.
    """

    def failing_srs(self, transport: str = "udp", mode: str = "200") -> FailingSrs:
        """
        A L{FailingSrs} listening on C{transport}, stopped after the test.
        """
        peer = FailingSrs(mode, transport)
        if transport == "tcp":
            peer.listen_tcp()
        else:
            peer.listen_udp()
        self.addCleanup(peer.stop)
        return peer

    def two(self, transport: str, first: str = "200", second: str = "200") -> tuple[FailingSrs, FailingSrs, dict[str, Any]]:
        """
        Two SRS peers and a zone naming them in that order.
        """
        srs1 = self.failing_srs(transport, first)
        srs2 = self.failing_srs(transport, second)
        zone = two_srs_zone(
            srs1.port.getHost().port, srs2.port.getHost().port, services=("_sip._%s" % (transport,),), with_naptr=False
        )
        return srs1, srs2, zone

    def send_rtp(self, call: dict[str, Any], stream: int, seqs: range) -> None:
        """
        The SRC sends A-law packets C{seqs} on inbound stream C{stream}.
        """
        for i in seqs:
            packet = rtp_packet(500 + i, 160 * i, 0xABCD + stream, 8, _payload(i))
            call["rtp"][stream].transport.write(packet, ("127.0.0.1", call["ports"][stream]))

    async def receive(self, sink: Any, n: int) -> list[bytes]:
        """
        The next C{n} packets at an SRS's RTP socket.
        """
        return [await sink.next_message() for _ in range(n)]

    def target(self, srs: FailingSrs) -> str:
        return "127.0.0.1:%d;transport=%s" % (srs.port.getHost().port, srs.transport_name)

    async def src_reinvite(self, call: dict[str, Any], directions: list[str], cseq: int, version: int) -> None:
        """
        The SRC re-INVITEs with its streams in C{directions} and ACKs our 200.
        """
        offer = sdp_offer([("96", call["src_ports"][0], 8), ("98", call["src_ports"][1], 8)], version=version)
        for direction in directions:
            offer = offer.replace(b"a=sendonly\r\na=label", b"a=%s\r\nX=label" % direction.encode(), 1)
        offer = offer.replace(b"X=label", b"a=label")
        call["sig"].send(in_dialog("INVITE", "udp", call["local"], call["ok"], call["ids"], cseq, DOMAIN, body=offer, content_type="application/sdp"), self.sip_port)
        ok = parse(await call["sig"].next_final(call_id=call["ids"]["call_id"]))
        self.assertEqual((ok.status, ok.cseq.method), (200, "INVITE"))
        call["sig"].send(in_dialog("ACK", "udp", call["local"], call["ok"], call["ids"], cseq, DOMAIN), self.sip_port)

    async def end(self, call: dict[str, Any], cseq: int) -> None:
        """
        The SRC's BYE with CSeq C{cseq}, answered 200.
        """
        call["sig"].send(in_dialog("BYE", "udp", call["local"], call["ok"], call["ids"], cseq, DOMAIN), self.sip_port)
        resp = parse(await call["sig"].next_final(call_id=call["ids"]["call_id"]))
        self.assertEqual((resp.status, resp.cseq.method), (200, "BYE"))

    async def start(self) -> dict[str, Any]:
        """
        L{start_call}, keeping the SRC's RTP ports for re-offers.
        """
        call = await self.start_call()
        call["src_ports"] = [sink.transport.getHost().port for sink in call["rtp"]]
        return call


class MidCallFailoverTests(FailoverTestBase):
    """
    SPEC s13: an answered forward whose SRS is lost is re-established to
    the next target, SIPRECFORWARDRESUMED names it, and the RTP continues.
    """

    async def test_tcp_reset_resumes_on_second_target(self) -> None:
        """
        The first SRS resets its TCP connection mid-call: the forward is
        re-established to the second target with the same labels and
        metadata, SIPRECFORWARDRESUMED names both targets with the gap, and
        the second SRS's RTP continues the first one's: same SSRC, the next
        sequence number, the G.711 of what the SRC sent.
        """
        srs1, srs2, zone = self.two("tcp")
        self.setup_service(_trunk("tcp"), {"startSIPRecForward": ORDER}, zone, RTP[0])
        call = await self.start()
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED"], settle=False)
        self.assertEqual(self.app.events[1]["target"], self.target(srs1))
        self.send_rtp(call, 0, range(4))
        before = await self.receive(srs1.rtp[0], 4)
        srs1.reset()
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDRESUMED"], settle=False)
        resumed = self.app.events[2]
        self.assertEqual((resumed["target"], resumed["previousTarget"]), (self.target(srs2), self.target(srs1)))
        self.assertEqual(resumed["reason"], "transport: connection lost")
        self.assertIsInstance(resumed["gapMs"], int)
        self.assertTrue(0 <= resumed["gapMs"] < 5000, resumed["gapMs"])
        self.assertEqual(resumed["sipRecForwardReferenceId"], {"ticketId": 98765})
        [first] = [r for r in srs1.requests if r.method == "INVITE"]
        [second] = [r for r in srs2.requests if r.method == "INVITE"]
        self.assertEqual([m.label for m in srs2.offer_of(second).media], ["labelA", "labelB"])
        self.assertEqual([m.direction for m in srs2.offer_of(second).media], ["sendonly", "sendonly"])
        self.assertEqual(srs2.metadata_of(second), srs1.metadata_of(first))

        self.send_rtp(call, 0, range(4, 8))
        after = await self.receive(srs2.rtp[0], 4)
        self.assertEqual({_ssrc(p) for p in before + after}, {_ssrc(before[0])})
        seqs = [_seq(p) for p in before + after]
        self.assertEqual([(s - seqs[0]) & 0xFFFF for s in seqs], list(range(8)))
        self.assertEqual([p[12:] for p in before + after], [_payload(i).translate(g711.ALAW_TO_ULAW) for i in range(8)])
        self.assertEqual(len(srs1.rtp[0].received), 4)

        await self.bye(call)
        await srs2.wait_for("BYE")
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDRESUMED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"])
        self.assertEqual(self.app.events[3]["target"], self.target(srs2))

    async def test_dead_srs_keepalive_timeout(self) -> None:
        """
        An SRS that dies mid-call (UDP, answers nothing): the keep-alive
        OPTIONS times out and the forward resumes on the second target,
        whose RTP continues the sequence.
        """
        srs1, srs2, zone = self.two("udp")
        self.setup_service(_trunk("udp", keepalive=1), {"startSIPRecForward": ORDER}, zone, RTP[1], t1=0.01)
        call = await self.start()
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED"], settle=False)
        self.send_rtp(call, 1, range(2))
        before = await self.receive(srs1.rtp[1], 2)
        srs1.dead = True
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDRESUMED"], timeout=20, settle=False)
        resumed = self.app.events[2]
        self.assertEqual((resumed["target"], resumed["reason"]), (self.target(srs2), "OPTIONS: timeout"))
        self.send_rtp(call, 1, range(2, 4))
        after = await self.receive(srs2.rtp[1], 2)
        self.assertEqual([_seq(p) - _seq(before[0]) for p in before + after], [0, 1, 2, 3])
        await self.bye(call)
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDRESUMED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"])

    async def test_481_to_reinvite_while_pausing(self) -> None:
        """
        The SRS answers 481 to the re-INVITE of a pause: the forward resumes
        on the second target, offered paused (a=inactive); the resume then
        re-INVITEs it a=sendonly.
        """
        srs1, srs2, zone = self.two("udp")
        srs1.reinvite_status = 481
        self.setup_service(_trunk("udp"), {"startSIPRecForward": ORDER}, zone, RTP[2])
        call = await self.start()
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED"], settle=False)
        code, body = await self.api_post("/%s/pause" % DOMAIN, {"sessionId": call["session_id"]})
        self.assertEqual(code, 200, body)
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SESSIONPAUSED", "SIPRECFORWARDRESUMED"], settle=False)
        resumed = self.app.events[3]
        self.assertEqual((resumed["target"], resumed["reason"]), (self.target(srs2), "re-INVITE answered 481"))
        [invite] = [r for r in srs2.requests if r.method == "INVITE"]
        self.assertEqual([m.direction for m in srs2.offer_of(invite).media], ["inactive", "inactive"])
        code, body = await self.api_post("/%s/resume" % DOMAIN, {"sessionId": call["session_id"]})
        self.assertEqual(code, 200, body)
        await srs2.wait_for("INVITE", 2)
        reinvite = [r for r in srs2.requests if r.method == "INVITE"][1]
        self.assertEqual([m.direction for m in srs2.offer_of(reinvite).media], ["sendonly", "sendonly"])
        self.send_rtp(call, 0, range(2))
        await self.receive(srs2.rtp[0], 2)
        await self.bye(call)
        await self.events(
            ["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SESSIONPAUSED", "SIPRECFORWARDRESUMED", "SESSIONRESUMED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"]
        )

    async def test_every_target_dead(self) -> None:
        """
        The SRS dies and the other target refuses (503): SIPRECFORWARDFAILED
        names both, the lost one last; the inbound session goes on.
        """
        srs1, srs2, zone = self.two("udp", second="503")
        # Only the first target answers the first INVITE.
        srs2.mode = "silent"
        self.setup_service(_trunk("udp", keepalive=1), {"startSIPRecForward": ORDER}, zone, RTP[0], t1=0.01)
        call = await self.start()
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED"], timeout=20, settle=False)
        self.assertEqual(self.app.events[1]["target"], self.target(srs1))
        srs2.mode = "503"
        srs1.dead = True
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDFAILED"], timeout=20, settle=False)
        failed = self.app.events[2]
        self.assertEqual(failed["targetsTried"], [self.target(srs2), self.target(srs1)])
        self.assertIn("OPTIONS: timeout", failed["reason"])
        await pause(0.2)
        await self.bye(call)
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDFAILED", "SESSIONCOMPLETED"])


class DirectionTests(FailoverTestBase):
    """
    SPEC s13: the SRS's own a=inactive is honoured, and an inbound hold is
    mirrored to the SRS.
    """

    def one(self) -> FailingSrs:
        srs = self.failing_srs("udp")
        trunk = base.UDP_TRUNK.replace('target = "srs.test"', 'target = "127.0.0.1:%d"' % srs.port.getHost().port)
        self.setup_service(trunk, {"startSIPRecForward": ORDER}, None, RTP[1])
        return srs

    async def test_srs_inactive_honoured(self) -> None:
        """
        An SRS answering stream 1 a=inactive gets no RTP there while stream
        2's flows; its own re-INVITE making it recvonly is answered
        a=sendonly and the RTP starts, continuing the numbering; a later
        one making stream 2 inactive is answered a=inactive and stops it.
        """
        srs = self.one()
        srs.answer_directions = ["inactive", "recvonly"]
        call = await self.start()
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED"], settle=False)
        self.send_rtp(call, 0, range(3))
        self.send_rtp(call, 1, range(3))
        await self.receive(srs.rtp[1], 3)
        await pause(0.2)
        self.assertEqual(srs.rtp[0].received, [])

        cseq = srs.reinvite(["recvonly", "recvonly"], version=1)
        ours = await srs.ack_reinvite(cseq, srs.count("200") + 1)
        self.assertEqual([m.direction for m in ours.media], ["sendonly", "sendonly"])
        self.send_rtp(call, 0, range(3, 5))
        got = await self.receive(srs.rtp[0], 2)
        self.assertEqual([p[12:] for p in got], [_payload(i).translate(g711.ALAW_TO_ULAW) for i in (3, 4)])

        cseq = srs.reinvite(["recvonly", "inactive"], version=2)
        ours = await srs.ack_reinvite(cseq, srs.count("200") + 1)
        self.assertEqual([m.direction for m in ours.media], ["sendonly", "inactive"])
        srs.rtp[1].skip_all()
        count = len(srs.rtp[1].received)
        self.send_rtp(call, 1, range(3, 6))
        self.send_rtp(call, 0, range(5, 6))
        await self.receive(srs.rtp[0], 1)
        await pause(0.2)
        self.assertEqual(len(srs.rtp[1].received), count)
        await self.bye(call)

    async def test_inbound_hold_mirrored(self) -> None:
        """
        The SRC re-INVITEs stream 1 a=inactive: the SRS gets a re-INVITE
        with it a=inactive and no RTP on it (even if the SRC sends); the SRC
        back to sendonly: a=sendonly and RTP again.
        """
        srs = self.one()
        call = await self.start()
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED"], settle=False)
        await self.src_reinvite(call, ["inactive"], 102, version=2890844527)
        await srs.wait_for("INVITE", 2)
        held = [r for r in srs.requests if r.method == "INVITE"][1]
        self.assertEqual([m.direction for m in srs.offer_of(held).media], ["inactive", "sendonly"])
        self.send_rtp(call, 0, range(2))
        self.send_rtp(call, 1, range(2))
        await self.receive(srs.rtp[1], 2)
        await pause(0.2)
        self.assertEqual(srs.rtp[0].received, [])

        await self.src_reinvite(call, [], 103, version=2890844528)
        await srs.wait_for("INVITE", 3)
        back = [r for r in srs.requests if r.method == "INVITE"][2]
        self.assertEqual([m.direction for m in srs.offer_of(back).media], ["sendonly", "sendonly"])
        self.send_rtp(call, 0, range(2, 4))
        got = await self.receive(srs.rtp[0], 2)
        self.assertEqual([p[12:] for p in got], [_payload(i).translate(g711.ALAW_TO_ULAW) for i in (2, 3)])
        await self.end(call, 104)

