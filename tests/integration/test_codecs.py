# -*- test-case-name: tests.integration.test_codecs -*-
"""
Codecs and DTMF end to end on 127.0.0.1 (issue 11, SPEC s5): the real
service answers an INVITE offering only G.722 (or only Opus) with that
codec, decodes it, and the SRS gets PCMA whose payloads are the A-law
encoding of the PCM PyAV decodes, octet for octet, while the recording
gets that PCM; DTMF on an undeclared payload type 101 reaches an SRS that
accepted telephone-event.

RTP ranges: 22700-22999 (100 ports per test).
"""

from __future__ import annotations

import wave
from array import array
from typing import Callable

from aiconnect.media.g711 import alaw_encode
from aiconnect.sip.message import parse
from aiconnect.sip.sdp import parse_sdp
from tests.fakes import pause, wait_until
from tests.integration import test_forward
from tests.integration.siprec_peer import rtp_packet
from tests.integration.test_outputs import RECORDING_ORDER, ORDER, OutputsTestBase, channels_of, find_run
from tests.media.codec_helpers import encode, reference_pcm

#: m= and a= lines per codec for the SRC's offer (the port goes in %d).
MEDIA = {
    "G722": ["m=audio %d RTP/AVP 9", "a=rtpmap:9 G722/8000"],
    "opus": ["m=audio %d RTP/AVP 111 110", "a=rtpmap:111 opus/48000/2", "a=fmtp:111 useinbandfec=1",
             "a=rtpmap:110 telephone-event/48000"],
    "PCMA": ["m=audio %d RTP/AVP 8", "a=rtpmap:8 PCMA/8000"],
}  # fmt: skip
#: The payload type and timestamp step (20 ms) each codec is sent with.
SENT = {"G722": (9, 160), "opus": (111, 960)}


def offer_builder(kind: str) -> Callable[..., bytes]:
    """
    A replacement for C{sdp_offer} of L{tests.integration.siprec_peer}
    offering only C{kind} (no telephone-event at 8000) on every stream.
    """

    def sdp_offer(streams: list[tuple[str, int, int]], version: int = 1) -> bytes:
        lines = ["v=0", "o=SRC %d %d IN IP4 127.0.0.1" % (version, version), "s=-", "c=IN IP4 127.0.0.1", "t=0 0"]
        for label, port, _ in streams:
            lines += [MEDIA[kind][0] % port] + MEDIA[kind][1:] + ["a=sendonly", "a=label:%s" % label]
        return ("\r\n".join(lines) + "\r\n").encode()

    return sdp_offer


class CodecCallTests(OutputsTestBase):
    """
    An INVITE offering only G.722 or only Opus, forwarded as PCMA and
    recorded.
    """

    async def decoded_call(self, kind: str, rtp_base: int) -> None:
        srs = self.srs("200")
        answer = {"startSIPRecForward": dict(ORDER, codec="PCMA"), "startRecording": dict(RECORDING_ORDER, tracks="caller")}
        self.setup_service(self.direct_trunk(srs), answer, None, rtp_base)
        self.patch(test_forward, "sdp_offer", offer_builder(kind))
        call = await self.start_call()
        answered = parse_sdp(parse(call["ok"]).body).media
        pt, step = SENT[kind]
        rtpmap = {"G722": "9 G722/8000", "opus": "111 opus/48000/2"}[kind]
        for media in answered:
            self.assertEqual(media.payload_types[0], pt)
            self.assertIn(rtpmap, media.attribute_values("rtpmap"))
        self.assertEqual([s["codec"] for s in self.app.new_calls[0]["streams"]], [kind, kind])
        await wait_until(lambda: len(self.app.event_names()) >= 3, 10, what=lambda: repr(self.app.event_names()))

        from twisted.internet import reactor

        payloads = encode(kind, 25)
        t0 = reactor.seconds()
        for n, payload in enumerate(payloads):
            call["rtp"][0].transport.write(rtp_packet(300 + n, step * n, 0x5151, pt, payload), ("127.0.0.1", call["ports"][0]))
            await pause(max(0.0, t0 + 0.02 * (n + 1) - reactor.seconds()))
        await pause(0.2)
        reference = reference_pcm(kind, payloads)
        frames = [reference[i : i + 160] for i in range(0, len(reference) - 159, 160)]
        got = [await srs.rtp[0].next_message() for _ in frames]
        self.assertEqual([g[1] & 0x7F for g in got], [8] * len(frames))
        self.assertEqual([g[12:] for g in got], [alaw_encode(f) for f in frames])
        stamps = [int.from_bytes(g[4:8], "big") for g in got]
        self.assertEqual({(b - a) & 0xFFFFFFFF for a, b in zip(stamps, stamps[1:])}, {160})

        session = await self.session(call["session_id"])
        self.assertEqual([s["codec"] for s in session["streams"]], [kind, kind])
        await self.bye(call)
        await wait_until(lambda: self.app.event_names()[-1:] == ["SESSIONCOMPLETED"], 15, what=lambda: repr(self.app.event_names()))
        stopped = [e for e in self.app.events if e["event"] == "RECORDINGSTOPPED"][0]
        with wave.open(stopped["file"], "rb") as w:
            (recorded,) = channels_of(w.readframes(w.getnframes()), 1)
        start = find_run(recorded, list(frames[0]))
        whole = array("h")
        for f in frames:
            whole.extend(f)
        self.assertEqual(recorded[start : start + len(whole)], list(whole))

    async def test_g722_only(self) -> None:
        """
        Only G.722 offered: 200 with 9 G722/8000, newCall and the session
        resource report G722, the
        SRS gets the A-law of the decoded PCM, the recording the PCM.
        """
        await self.decoded_call("G722", 22700)

    async def test_opus_only(self) -> None:
        """
        Only Opus offered: 200 with opus/48000/2, newCall and the session
        resource report opus, the
        SRS gets the A-law of the decoded PCM, the recording the PCM.
        """
        await self.decoded_call("opus", 22800)


class UndeclaredDtmfTests(OutputsTestBase):
    """
    DTMF on payload type 101 that the SRC's offer does not declare.
    """

    async def test_reaches_srs(self) -> None:
        """
        The SRS (which accepted telephone-event 101 in its answer) gets the
        event packets, payload untouched, after the audio in sequence.
        """
        srs = self.srs("200")
        self.setup_service(self.direct_trunk(srs), {"startSIPRecForward": dict(ORDER, codec="PCMA")}, None, 22900)
        self.patch(test_forward, "sdp_offer", offer_builder("PCMA"))
        call = await self.start_call()
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED"], settle=False)
        invite = [r for r in srs.requests if r.method == "INVITE"][0]
        self.assertEqual(srs.offer_of(invite).media[0].telephone_event, 101)
        target = ("127.0.0.1", call["ports"][0])
        call["rtp"][0].transport.write(rtp_packet(40, 6400, 0x4242, 8, b"\xd5" * 160), target)
        events = [bytes([7, 0x0A]) + (160 * n).to_bytes(2, "big") for n in (1, 2, 3)]
        for n, event in enumerate(events):
            call["rtp"][0].transport.write(rtp_packet(41 + n, 6560, 0x4242, 101, event), target)
        got = [await srs.rtp[0].next_message() for _ in range(4)]
        self.assertEqual([g[1] & 0x7F for g in got], [8, 101, 101, 101])
        self.assertEqual([g[12:] for g in got[1:]], events)
        seqs = [int.from_bytes(g[2:4], "big") for g in got]
        self.assertEqual([(s - seqs[0]) & 0xFFFF for s in seqs], [0, 1, 2, 3])
        await self.bye(call)


