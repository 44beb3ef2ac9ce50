# -*- test-case-name: tests.integration.test_media_service -*-
"""
The media plane through the running service (issue 4): inbound SRTP from
the SRC decrypted and relayed, both streams transcoded into the forward's
codec byte for byte, foreign / garbage / bad-tag / replayed packets dropped
and counted while the call goes on, and the media timeout.
"""

from __future__ import annotations

import base64
import json
import secrets

import pylibsrtp
import treq
from twisted.internet import reactor

from aiconnect.media import g711
from aiconnect.sip.message import parse
from aiconnect.sip.sdp import parse_sdp
from tests.fakes import listen_udp, rtp_packet, status_of, wait_until
from tests.integration.siprec_peer import in_dialog, siprec_invite
from tests.integration.test_forward import DOMAIN, METADATA, ORDER, UDP_TRUNK, ForwardTestBase


def _srtp_offer(streams: list[tuple[str, int, int, bytes]]) -> bytes:
    lines = ["v=0", "o=SRC 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0"]
    for label, port, pt, key in streams:
        name = {0: "PCMU", 8: "PCMA"}[pt]
        lines += [
            "m=audio %d RTP/SAVP %d" % (port, pt),
            "a=rtpmap:%d %s/8000" % (pt, name),
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:%s" % base64.b64encode(key).decode(),
            "a=sendonly",
            "a=label:%s" % label,
        ]
    return ("\r\n".join(lines) + "\r\n").encode()


class MediaThroughServiceTests(ForwardTestBase):
    """
    RTP from a test SRC through the service to a test SRS.
    """

    async def _stats(self, session_id: str) -> dict:
        resp = await treq.get(
            "http://127.0.0.1:%d/%s/sessions/%s" % (self.api_port, DOMAIN, session_id),
            headers={"Authorization": "Bearer t0ken"},
            persistent=False,
        )
        return json.loads(await resp.content())["session"]["media"]

    async def test_inbound_srtp_transcoded_and_drops_counted(self) -> None:
        """
        The SRC sends SRTP (PCMA on one stream, PCMU on the other); the SRS
        receives plain RTP in PCMU, byte for byte the direct-table
        transcoding, with continuous sequence numbers and a fresh SSRC per
        stream; a foreign source, garbage, a bad tag and a replay are
        dropped and counted and the call goes on.
        """
        srs = self.srs("200")
        trunk = UDP_TRUNK.replace('target = "srs.test"', 'target = "127.0.0.1:%d"' % srs.port.getHost().port)
        self.setup_service(trunk, {"startSIPRecForward": dict(ORDER, codec="PCMU")}, None, 25000)
        sig, local = listen_udp(self)
        rtp, ports, keys = [], [], []
        for _ in range(2):
            sink, port = listen_udp(self)
            rtp.append(sink)
            ports.append(port)
            keys.append(secrets.token_bytes(30))
        offer = _srtp_offer([("96", ports[0], 8, keys[0]), ("98", ports[1], 0, keys[1])])
        invite, ids = siprec_invite("udp", local, DOMAIN, offer, METADATA)
        sig.send(invite, self.sip_port)
        ok_raw = await sig.next_final(call_id=ids["call_id"])
        self.assertEqual(status_of(ok_raw), 200)
        answer = parse_sdp(parse(ok_raw).body)
        self.assertEqual([m.proto for m in answer.media], ["RTP/SAVP", "RTP/SAVP"])
        self.assertEqual([m.crypto[0].tag for m in answer.media], [1, 1])
        our_ports = [m.port for m in answer.media]
        sig.send(in_dialog("ACK", "udp", local, ok_raw, ids, 101, DOMAIN), self.sip_port)
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED"])
        session_id = self.app.events[0]["sessionId"]

        senders = [
            pylibsrtp.Session(pylibsrtp.Policy(key=k, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80))
            for k in keys
        ]
        payloads = [bytes((i * 3 + j) & 0xFF for j in range(160)) for i in range(3)]
        sent = {0: [], 1: []}
        for stream, pt in ((0, 8), (1, 0)):
            for i, payload in enumerate(payloads):
                packet = senders[stream].protect(rtp_packet(100 + i, 160 * i, 0x77 + stream, pt, payload))
                sent[stream].append(packet)
                rtp[stream].send(packet, our_ports[stream])
        got = {s: [await srs.rtp[s].next_message() for _ in range(3)] for s in (0, 1)}
        self.assertEqual([g[12:] for g in got[0]], [pl.translate(g711.ALAW_TO_ULAW) for pl in payloads])
        self.assertEqual([g[12:] for g in got[1]], payloads)  # PCMU in, PCMU out
        for s in (0, 1):
            seqs = [int.from_bytes(g[2:4], "big") for g in got[s]]
            self.assertEqual([x - seqs[0] for x in seqs], [0, 1, 2])
            self.assertEqual({g[8:12] for g in got[s]}.__len__(), 1)
        self.assertNotEqual(got[0][0][8:12], got[1][0][8:12])
        self.assertNotIn(got[0][0][8:12], (b"\x00\x00\x00\x77",))

        # Garbage, a bad tag, a replay, and a foreign source.
        good = senders[0].protect(rtp_packet(103, 480, 0x77, 8, payloads[1]))
        rtp[0].send(b"\x00garbage", our_ports[0])
        bad_tag = bytearray(senders[0].protect(rtp_packet(104, 640, 0x77, 8, payloads[0])))
        bad_tag[-1] ^= 0xFF
        rtp[0].send(bytes(bad_tag), our_ports[0])
        rtp[0].send(sent[0][0], our_ports[0])  # replay
        stranger, _ = listen_udp(self)
        stranger.send(senders[0].protect(rtp_packet(105, 800, 0x77, 8, payloads[0])), our_ports[0])
        # The call goes on: a good packet still gets through.
        rtp[0].send(good, our_ports[0])
        late = await srs.rtp[0].next_message()
        self.assertEqual(late[12:], payloads[1].translate(g711.ALAW_TO_ULAW))
        stats = await self._stats(session_id)
        drops = stats["streams"][0]["drops"]
        self.assertEqual(stats["streams"][0]["packets_in"], 4)
        self.assertGreaterEqual(sum(drops.values()), 4, drops)
        self.assertGreaterEqual(drops.get("foreign_source", 0), 1, drops)
        self.assertGreaterEqual(drops.get("srtp_auth", 0) + drops.get("srtp_error", 0), 1, drops)
        self.assertGreaterEqual(drops.get("srtp_replay", 0), 1, drops)

        sig.send(in_dialog("BYE", "udp", local, ok_raw, ids, 102, DOMAIN), self.sip_port)
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"])
        stopped = self.app.events[2]
        self.assertGreaterEqual(stopped["stats"]["packets_out"], 7)

    async def test_media_timeout(self) -> None:
        """
        No RTP for rtp.media_timeout seconds ends the session: BYE to the SRC
        and SESSIONCOMPLETED with reason mediaTimeout.
        """
        self.setup_service("", {}, None, 25100)
        text = self.cfg  # the timeout is read at build time: rebuild with a short one
        await self.service.stopService()
        from pathlib import Path

        from aiconnect import config as config_mod
        from aiconnect.tap import build_service

        path = Path(self.dir) / "aiconnect.toml"
        path.write_text(path.read_text().replace('host = "127.0.0.1"\nport_min', 'host = "127.0.0.1"\nmedia_timeout = 0.5\nport_min', 1))
        self.cfg = config_mod.load(path)
        self.assertEqual(self.cfg.rtp.media_timeout, 0.5)
        self.service = build_service(self.cfg, reactor)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        call = await self.start_call()
        await wait_until(lambda: call["sig"].matching(lambda m: m.startswith(b"BYE ")), 4.0, interval=0.1)
        await self.events(["SESSIONSTARTED", "SESSIONCOMPLETED"])
        self.assertEqual(self.app.events[1]["reason"], "mediaTimeout")
        del text
