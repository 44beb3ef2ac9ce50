# -*- test-case-name: tests.integration.test_outputs -*-
"""
Streams, recordings and pause end to end on 127.0.0.1 (issue 10, SPEC
s8-s10): the real service, a test SRC sending known tones, a real HTTP
application, a scripted SRS, a real WebSocket server (Twisted's
C{WebSocketResource}) and the recording read back from disk.

RTP ranges: 25500-25999 (one class per 100 ports).
"""

from __future__ import annotations

import hashlib
import json
import struct
import wave
from array import array
from pathlib import Path
from typing import Any

import treq

from aiconnect.media import g711
from aiconnect.sip.sdp import parse_sdp
from tests.fakes import pause, wait_until
from tests.integration.siprec_peer import rtp_packet
from tests.integration.test_forward import ORDER, UDP_TRUNK, ForwardTestBase

DATA = Path(__file__).resolve().parent.parent / "data" / "g711"

#: 20 ms frames of two different tones: the caller sends PCMU codes, the
#: called party PCMA codes (every code value, so every table entry counts).
CALLER_CODES = [bytes((i * 7 + k) % 256 for k in range(160)) for i in range(50)]
CALLEE_CODES = [bytes((i * 11 + 3 * k) % 256 for k in range(160)) for i in range(50)]


def caller_samples(frame: int) -> list[int]:
    """
    The linear samples of the caller's frame, by the G.711 tables.
    """
    return [g711.ULAW_TO_LINEAR[c] for c in CALLER_CODES[frame % len(CALLER_CODES)]]


def callee_samples(frame: int) -> list[int]:
    """
    The linear samples of the called party's frame.
    """
    return [g711.ALAW_TO_LINEAR[c] for c in CALLEE_CODES[frame % len(CALLEE_CODES)]]


class OutputsTestBase(ForwardTestBase):
    """
    A forwarding test base with an SRC that sends tones on both streams and
    an API helper for the output routes.
    """

    def direct_trunk(self, srs: Any) -> str:
        """
        A trunk to the SRS peer by address (no DNS).
        """
        return UDP_TRUNK.replace('target = "srs.test"', 'target = "127.0.0.1:%d"' % srs.port.getHost().port)

    def send_tones(self, call: dict[str, Any], first: int, count: int, ssrc: tuple[int, int] = (0x1111, 0x2222)) -> None:
        """
        Send frames C{first} .. C{first + count - 1} on both streams:
        caller PCMU (payload type 0) on the first, called party PCMA (8) on
        the second.
        """
        for i in range(first, first + count):
            for stream, (codes, pt) in enumerate(((CALLER_CODES, 0), (CALLEE_CODES, 8))):
                payload = codes[i % len(codes)]
                packet = rtp_packet(1000 + i, 160 * i, ssrc[stream], pt, payload)
                call["rtp"][stream].transport.write(packet, ("127.0.0.1", call["ports"][stream]))

    async def session(self, session_id: str) -> dict[str, Any]:
        """
        C{GET /{domain}/sessions/{id}}.
        """
        resp = await treq.get(
            "http://127.0.0.1:%d/customer.example.com/sessions/%s" % (self.api_port, session_id),
            headers={"Authorization": "Bearer t0ken"},
            persistent=False,
        )
        return json.loads(await resp.content())["session"]


class PauseTests(OutputsTestBase):
    """
    SPEC s10 with a forward: a capture at the SRS shows no RTP between pause
    and resume, re-INVITEs say a=inactive then a=sendonly, and the RTP
    after the resume continues the sequence.
    """

    async def test_pause_and_resume_forward(self) -> None:
        """
        Pause: SESSIONPAUSED naming the forward, a re-INVITE with
        a=inactive, then no RTP at the SRS while the SRC keeps sending;
        resume: a re-INVITE with a=sendonly, SESSIONRESUMED, RTP again with
        the next sequence number, a marker bit and a timestamp advanced by
        at least the pause.
        """
        srs = self.srs("200")
        self.setup_service(self.direct_trunk(srs), {"startSIPRecForward": dict(ORDER, codec="PCMU")}, None, 25500)
        call = await self.start_call(codecs=(0, 8))
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED"], settle=False)
        forward_id = self.app.events[1]["forwardId"]
        self.send_tones(call, 0, 5)
        before = [await srs.rtp[0].next_message() for _ in range(5)]

        code, body = await self.api_post("/customer.example.com/pause", {"sessionId": call["session_id"]})
        self.assertEqual((code, body["paused"]["forwards"]), (200, [forward_id]))
        await srs.wait_for("INVITE", 2)
        reinvite = [r for r in srs.requests if r.method == "INVITE"][1]
        self.assertEqual({m.direction for m in srs.offer_of(reinvite).media}, {"inactive"})
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SESSIONPAUSED"], settle=False)
        received = len(srs.rtp[0].received) + len(srs.rtp[1].received)
        self.send_tones(call, 5, 10)
        await pause(0.3)
        self.assertEqual(len(srs.rtp[0].received) + len(srs.rtp[1].received), received)

        code, body = await self.api_post("/customer.example.com/resume", {"sessionId": call["session_id"]})
        self.assertEqual((code, body["resumed"]["forwards"]), (200, [forward_id]))
        await srs.wait_for("INVITE", 3)
        third = [r for r in srs.requests if r.method == "INVITE"][2]
        self.assertEqual({m.direction for m in srs.offer_of(third).media}, {"sendonly"})
        self.send_tones(call, 15, 2)
        after = await srs.rtp[0].next_message()
        last_seq = int.from_bytes(before[-1][2:4], "big")
        last_ts = int.from_bytes(before[-1][4:8], "big")
        self.assertEqual(int.from_bytes(after[2:4], "big"), (last_seq + 1) & 0xFFFF)
        self.assertTrue(after[1] & 0x80, "marker bit after the resume")
        self.assertGreaterEqual((int.from_bytes(after[4:8], "big") - last_ts) & 0xFFFFFFFF, 8000 * 0.3)
        self.assertEqual(after[8:12], before[-1][8:12])
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SESSIONPAUSED", "SESSIONRESUMED"], settle=False)
        resumed = self.app.events[3]
        self.assertEqual((resumed["forwardIds"], resumed["sessionPaused"]), ([forward_id], False))
        await self.bye(call)
        await self.events(
            ["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SESSIONPAUSED", "SESSIONRESUMED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"]
        )
