# -*- test-case-name: tests.integration.test_outputs -*-
"""
Streams, recordings and pause end to end on 127.0.0.1 (issue 10, SPEC
s8-s10): the real service, a test SRC sending known tones, a real HTTP
application, a scripted SRS, a real WebSocket server (Twisted's
C{WebSocketResource}) and the recording read back from disk.

RTP ranges: 25500-25999 (one class per 100 ports).
"""

from __future__ import annotations

import json
import struct
import wave
from array import array
from pathlib import Path
from typing import Any

import treq

from aiconnect.media import g711
from aiconnect.sip.sdp import parse_sdp
from tests.fakes import pause
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


class KillTests(OutputsTestBase):
    """
    SPEC s9: a C{kill -9} mid-recording leaves a playable WAV missing at
    most the last second.
    """

    timeout = 90

    async def test_kill_9_leaves_a_playable_wav(self) -> None:
        """
        The server runs as twistd in a subprocess; the application orders a
        mono PCMU-in L16 recording of the caller; the SRC sends 3 s of
        tones; SIGKILL; the file opens with C{wave} and holds at least the
        audio up to one second before the kill, sample for sample.
        """
        import tempfile

        from tests.fakes import listen_udp
        from tests.integration.helpers import Certificates, free_port, status_of, write_config
        from tests.integration.siprec_peer import AppServer, in_dialog, sdp_offer, siprec_invite
        from tests.integration.test_forward import METADATA
        from tests.integration.twistd import start_twistd, wait_ready

        directory = Path(tempfile.mkdtemp(prefix="aiconnect-kill-rec-"))
        app = AppServer({"startRecording": {"tracks": "caller", "encoding": "L16"}})
        app_port = app.listen()
        self.addCleanup(app.port.stopListening)
        sip, api = free_port(), free_port()
        path = write_config(directory, Certificates(), sip, sip, 0, api, extra="callback_timeout = 3.0\n", app_port=app_port, rtp=(25900, 25999))
        server = start_twistd(self, path)
        await wait_ready(self, server, sip)
        src, local = listen_udp(self)
        rtp, rtp_port = listen_udp(self)
        invite, ids = siprec_invite("udp", local, "customer.example.com", sdp_offer([("96", rtp_port, 0), ("98", rtp_port + 2, 8)]), METADATA)
        src.send(invite, sip)
        ok = await src.next_final(timeout=10, call_id=ids["call_id"])
        self.assertEqual(status_of(ok), 200, ok)
        src.send(in_dialog("ACK", "udp", local, ok, ids, 101, "customer.example.com"), sip)
        await app.wait_for("events", 2, timeout=20)
        self.assertEqual(app.event_names(), ["SESSIONSTARTED", "RECORDINGSTARTED"], server.output())
        wav_path = Path(app.events[1]["file"])
        ours = parse_sdp(_sdp_of(ok)).media[0].port
        from twisted.internet import reactor

        t0 = reactor.seconds()
        for i in range(150):  # 3 s, paced on the clock like a real SRC
            rtp.transport.write(rtp_packet(1000 + i, 160 * i, 0x1111, 0, CALLER_CODES[i % 50]), ("127.0.0.1", ours))
            await pause(max(0.0, t0 + 0.02 * (i + 1) - reactor.seconds()))
        await pause(0.1)
        server.kill()
        with wave.open(str(wav_path), "rb") as w:
            self.assertEqual((w.getnchannels(), w.getsampwidth(), w.getframerate()), (1, 2, 8000))
            frames = w.readframes(w.getnframes())
        n = len(frames) // 2
        self.assertGreaterEqual(n, 8000 * 2 - 160 * 10, "more than a second missing: %d samples" % n)
        samples = array("h", frames)
        if struct.pack("=h", 1) != struct.pack("<h", 1):
            samples.byteswap()
        # The recording starts on a frame boundary of the wall clock: find
        # the first frame of the tone and compare every whole frame after it.
        first = CALLER_CODES[0]
        expected = [g711.ULAW_TO_LINEAR[c] for c in first]
        start = next(i for i in range(0, n - 160) if list(samples[i : i + 160]) == expected)
        whole = (n - start) // 160
        self.assertGreater(whole, 50)
        for k in range(whole):
            got = list(samples[start + 160 * k : start + 160 * (k + 1)])
            self.assertEqual(got, caller_samples(k), "frame %d" % k)


def _sdp_of(raw: bytes) -> bytes:
    """
    The SDP of a 200 OK (bare SDP).
    """
    return raw.split(b"\r\n\r\n", 1)[1]
