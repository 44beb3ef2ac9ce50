# -*- test-case-name: tests.integration.test_outputs -*-
"""
Streams, recordings and pause end to end on 127.0.0.1 (issue 10, SPEC
s8-s10): the real service, a test SRC sending known tones, a real HTTP
application, a scripted SRS, a real WebSocket server (Twisted's
C{WebSocketResource}) and the recording read back from disk.

RTP ranges: 25400-25999 (100 ports per test).
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
from tests.outputs.wsserver import WsServer, refused_port

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

    def send_tones(
        self, call: dict[str, Any], first: int, count: int, ssrc: tuple[int, int] = (0x1111, 0x2222), clock: int | None = None
    ) -> None:
        """
        Send frames C{first} .. C{first + count - 1} on both streams:
        caller PCMU (payload type 0) on the first, called party PCMA (8) on
        the second.

        @param clock: the RTP frame number of the first (its timestamp /
            160), when it is not C{first}: an SRC that was silent for a
            while sends a later timestamp.
        """
        base = first if clock is None else clock
        for i in range(first, first + count):
            for stream, (codes, pt) in enumerate(((CALLER_CODES, 0), (CALLEE_CODES, 8))):
                payload = codes[i % len(codes)]
                packet = rtp_packet(1000 + i, 160 * (base + i - first), ssrc[stream], pt, payload)
                call["rtp"][stream].transport.write(packet, ("127.0.0.1", call["ports"][stream]))

    async def play(self, call: dict[str, Any], first: int, count: int, clock: int | None = None) -> None:
        """
        Send frames C{first} .. C{first + count - 1} (L{send_tones}) paced
        on the reactor's clock, one every 20 ms as a real SRC does, then
        let 0.2 s pass for the last ones to be played out.
        """
        from twisted.internet import reactor

        t0 = reactor.seconds()
        for i in range(count):
            self.send_tones(call, first + i, 1, clock=None if clock is None else clock + i)
            await pause(max(0.0, t0 + 0.02 * (i + 1) - reactor.seconds()))
        await pause(0.2)

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


def find_run(samples: list[int], expected: list[int]) -> int:
    """
    Where C{expected} (a whole frame) first stands in C{samples}.

    @raise AssertionError: nowhere.
    """
    n = len(expected)
    for i in range(0, len(samples) - n + 1):
        if samples[i] == expected[0] and samples[i : i + n] == expected:
            return i
    raise AssertionError("the tone's first frame is not in the audio")


def check_tone(test: Any, samples: list[int], tone: Any, frames: int) -> None:
    """
    C{samples} hold C{frames} whole frames of C{tone} (frame k =
    C{tone(k)}), in order, from where its first frame stands.
    """
    start = find_run(samples, tone(0))
    test.assertGreaterEqual((len(samples) - start) // 160, frames)
    for k in range(frames):
        test.assertEqual(samples[start + 160 * k : start + 160 * (k + 1)], tone(k), "frame %d" % k)


def channels_of(data: bytes, channels: int) -> list[list[int]]:
    """
    Little-endian 16-bit interleaved PCM as one list of samples per
    channel.
    """
    samples = list(struct.unpack("<%dh" % (len(data) // 2), data))
    return [samples[c::channels] for c in range(channels)]


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


class PauseOutputsTests(OutputsTestBase):
    """
    SPEC s10 for streams and recordings: silence while paused, the interval
    listed in the recording's C{pauses}.
    """

    async def test_stream_and_recording_get_silence(self) -> None:
        """
        The caller's tone frames sent before the pause and after the resume
        reach the stream and the WAV in order; none sent while paused does
        (the frames keep coming, as silence); RECORDINGSTOPPED lists one
        pause about as long as it lasted.
        """
        server = WsServer()
        server.listen()
        self.addCleanup(server.close)
        answer = {
            "startStream": dict(STREAM_ORDER, url=server.url("/audio"), tracks="caller"),
            "startRecording": dict(RECORDING_ORDER, tracks="caller"),
        }
        self.setup_service("", answer, None, 25400)
        call = await self.start_call(codecs=(0, 8))
        await wait_until(lambda: len(self.app.event_names()) >= 3, 10, what=lambda: repr(self.app.event_names()))
        connection = await server.connection()

        from twisted.internet import reactor

        start = reactor.seconds()

        async def send(first: int, count: int) -> None:
            # Timestamps follow the wall clock, as a real SRC's do across
            # the silences between the bursts.
            await self.play(call, first, count, clock=round((reactor.seconds() - start) / 0.02))

        await send(0, 25)
        # The server pauses (and resumes) somewhere between the request
        # and its answer: the interval it records lies within these bounds
        # (a garbage collection in this process may delay an answer).
        pause_sent = reactor.seconds()
        code, body = await self.api_post("/customer.example.com/pause", {"sessionId": call["session_id"]})
        self.assertEqual((code, len(body["paused"]["streams"]), len(body["paused"]["recordings"])), (200, 1, 1))
        paused_at = reactor.seconds()
        await send(25, 25)
        resume_sent = reactor.seconds()
        code, _ = await self.api_post("/customer.example.com/resume", {"sessionId": call["session_id"]})
        self.assertEqual(code, 200)
        resumed_at = reactor.seconds()
        shortest, longest = resume_sent - paused_at, resumed_at - pause_sent
        await send(50, 25)
        await self.bye(call)
        await wait_until(lambda: self.app.event_names()[-1:] == ["SESSIONCOMPLETED"], 15, what=lambda: repr(self.app.event_names()))
        self.assertEqual(
            self.app.event_names()[3:], ["SESSIONPAUSED", "SESSIONRESUMED", "STREAMSTOPPED", "RECORDINGSTOPPED", "SESSIONCOMPLETED"]
        )
        stopped = [e for e in self.app.events if e["event"] == "RECORDINGSTOPPED"][0]
        with wave.open(stopped["file"], "rb") as w:
            (recorded,) = channels_of(w.readframes(w.getnframes()), 1)
        await connection.wait_closed(10)
        (streamed,) = channels_of(b"".join(connection.binaries), 1)

        for samples in (streamed, recorded):
            before = find_run(samples, caller_samples(0))
            # (the tone repeats every 50 frames: look after the first run)
            after = before + 160 * 25 + find_run(samples[before + 160 * 25 :], caller_samples(50))
            for k in range(25):
                self.assertEqual(samples[before + 160 * k : before + 160 * (k + 1)], caller_samples(k))
                self.assertEqual(samples[after + 160 * k : after + 160 * (k + 1)], caller_samples(50 + k))
            # Nothing of what the SRC sent while paused, and no gap: the
            # frames in between are silence, as many as the wall clock.
            gap = samples[before + 160 * 25 : after]
            self.assertEqual(set(gap), {0})
            self.assertGreaterEqual(len(gap) / 8000, 0.5)
        (interval,) = stopped["pauses"]
        # 20 ms frames: the recorded times are rounded to a frame.
        recorded_for = interval["end"] - interval["start"]
        self.assertTrue(shortest - 0.03 <= recorded_for <= longest + 0.03, (interval, shortest, longest))


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


STREAM_ORDER = {
    "url": "",
    "tracks": "both",
    "format": "L16",
    "sampleRate": 8000,
    "protocol": "raw",
    "headers": {"Authorization": "Bearer engine-secret"},
    "metadata": {"agent": "4711"},
    "streamReferenceId": {"ticketId": 98765},
}
RECORDING_ORDER = {"tracks": "both", "encoding": "L16", "recordingReferenceId": {"case": 17}}


class CoexistenceTests(OutputsTestBase):
    """
    SPEC s2, s8, s9: one call forwarded, streamed and recorded at once;
    the SRS's RTP, the stream's frames and the WAV file all carry the
    tones the SRC sent, checked sample by sample against the G.711 tables.
    """

    async def test_forward_stream_and_recording(self) -> None:
        """
        The newCall answer orders a forward (PCMU), a raw L16 stereo stream
        and an L16 stereo recording. The SRS gets the caller's PCMU as sent
        and the called party's PCMA transcoded; the WebSocket server gets
        the start message, 20 ms binary frames whose channels are the
        caller's and the called party's tones, the stop message and close
        1000; the WAV's channels are the same tones and its sha256 is the
        event's; at BYE the events come in SPEC order.
        """
        server = WsServer()
        server.listen()
        self.addCleanup(server.close)
        srs = self.srs("200")
        answer = {
            "startSIPRecForward": dict(ORDER, codec="PCMU"),
            "startStream": dict(STREAM_ORDER, url=server.url("/audio?lang=sv&token=query-secret")),
            "startRecording": RECORDING_ORDER,
        }
        self.setup_service(self.direct_trunk(srs), answer, None, 25600)
        call = await self.start_call(codecs=(0, 8))
        await wait_until(lambda: len(self.app.event_names()) >= 4, 10, what=lambda: repr(self.app.event_names()))
        self.assertEqual(
            sorted(self.app.event_names()), ["RECORDINGSTARTED", "SESSIONSTARTED", "SIPRECFORWARDSTARTED", "STREAMSTARTED"]
        )
        by_name = {e["event"]: e for e in self.app.events}
        self.assertEqual(by_name["STREAMSTARTED"]["url"], server.url("/audio"))
        self.assertEqual(by_name["STREAMSTARTED"]["streamReferenceId"], {"ticketId": 98765})
        wav_path = Path(by_name["RECORDINGSTARTED"]["file"])
        connection = await server.connection()
        self.assertEqual(connection.header("Authorization"), ["Bearer engine-secret"])
        self.assertEqual(connection.path, "/audio?lang=sv&token=query-secret")

        frames = 50
        await self.play(call, 0, frames)

        # The SRS: PCMU as sent, PCMA transcoded to PCMU.
        got0 = [await srs.rtp[0].next_message() for _ in range(frames)]
        got1 = [await srs.rtp[1].next_message() for _ in range(frames)]
        self.assertEqual([g[12:] for g in got0], [CALLER_CODES[i % 50] for i in range(frames)])
        self.assertEqual([g[12:] for g in got1], [CALLEE_CODES[i % 50].translate(g711.ALAW_TO_ULAW) for i in range(frames)])

        await self.bye(call)
        names = ["SIPRECFORWARDSTOPPED", "STREAMSTOPPED", "RECORDINGSTOPPED", "SESSIONCOMPLETED"]
        await wait_until(lambda: self.app.event_names()[4:] == names, 15, what=lambda: repr(self.app.event_names()))
        self.assertEqual(self.app.bad_signatures, 0)
        events = {e["event"]: e for e in self.app.events}
        self.assertNotIn("secret", json.dumps(self.app.events))

        # The stream: start, 20 ms frames, stop, close 1000.
        await connection.wait_closed(10)
        texts = connection.texts
        start, stop = texts[0], texts[-1]
        self.assertEqual(
            {k: start[k] for k in ("event", "sessionId", "tracks", "channels", "format", "sampleRate", "frameMs", "metadata")},
            {"event": "start", "sessionId": call["session_id"], "tracks": "both", "channels": 2, "format": "L16",
             "sampleRate": 8000, "frameMs": 20, "metadata": {"agent": "4711"}},
        )  # fmt: skip
        self.assertEqual(start["streamId"], events["STREAMSTOPPED"]["streamId"])
        self.assertEqual(stop["event"], "stop")
        self.assertEqual(connection.close_codes, [1000])
        binaries = connection.binaries
        self.assertEqual({len(b) for b in binaries}, {160 * 2 * 2})
        left, right = channels_of(b"".join(binaries), 2)
        check_tone(self, left, caller_samples, frames)
        check_tone(self, right, callee_samples, frames)
        self.assertEqual(events["STREAMSTOPPED"]["stats"]["frames"], len(binaries))
        self.assertEqual(events["STREAMSTOPPED"]["stoppedBy"], "inboundBye")

        # The recording: stereo, caller left, the file's sha256.
        stopped = events["RECORDINGSTOPPED"]
        data = wav_path.read_bytes()
        self.assertEqual(stopped["sha256"], hashlib.sha256(data).hexdigest())
        self.assertEqual((stopped["file"], stopped["channels"], stopped["bytes"]), (str(wav_path), 2, len(data)))
        with wave.open(str(wav_path), "rb") as w:
            self.assertEqual((w.getnchannels(), w.getsampwidth(), w.getframerate()), (2, 2, 8000))
            pcm = w.readframes(w.getnframes())
            self.assertAlmostEqual(stopped["duration"], w.getnframes() / 8000, places=2)
        left, right = channels_of(pcm, 2)
        check_tone(self, left, caller_samples, frames)
        check_tone(self, right, callee_samples, frames)

        # The file is the tenant's through the REST API, Range honoured.
        url = "http://127.0.0.1:%d/customer.example.com/recordings/%s" % (self.api_port, stopped["recordingId"])
        resp = await treq.get(url, headers={"Authorization": "Bearer t0ken", "Range": "bytes=0-43"}, persistent=False)
        self.assertEqual((resp.code, await resp.content()), (206, data[:44]))

    async def test_twilio_stream_started_over_rest(self) -> None:
        """
        A stream ordered mid-call over REST with C{protocol: twilio}:
        connected, start (mu-law 8 kHz, the metadata as customParameters),
        then media messages whose base64 payloads decode, by the mu-law
        table, to the caller's samples on track "inbound" and the called
        party's on "outbound"; stopped over REST: STREAMSTOPPED by api,
        and the call goes on.
        """
        server = WsServer()
        server.listen()
        self.addCleanup(server.close)
        self.setup_service("", {}, None, 25700)
        call = await self.start_call(codecs=(0, 8))
        await self.events(["SESSIONSTARTED"], settle=False)
        code, body = await self.api_post(
            "/customer.example.com/startstream",
            {"sessionId": call["session_id"], "url": server.url("/twilio"), "protocol": "twilio", "metadata": {"agent": "7"}},
        )
        self.assertEqual(code, 200, body)
        stream_id = body["streamId"]
        await self.events(["SESSIONSTARTED", "STREAMSTARTED"], settle=False)
        connection = await server.connection()

        frames = 30
        await self.play(call, 0, frames)
        code, body = await self.api_post("/customer.example.com/stopstream", {"sessionId": call["session_id"], "streamId": stream_id})
        self.assertEqual((code, body["stopped"]), (200, [stream_id]))
        await self.events(["SESSIONSTARTED", "STREAMSTARTED", "STREAMSTOPPED"], settle=False)
        self.assertEqual(self.app.events[2]["stoppedBy"], "api")
        await connection.wait_closed(10)
        texts = connection.texts
        self.assertEqual([t["event"] for t in texts[:2]], ["connected", "start"])
        start = texts[1]["start"]
        self.assertEqual(start["mediaFormat"], {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1})
        self.assertEqual(start["customParameters"], {"agent": "7"})
        self.assertEqual(texts[-1]["event"], "stop")
        import base64

        tracks: dict[str, list[int]] = {"inbound": [], "outbound": []}
        for t in texts:
            if t["event"] == "media":
                tracks[t["media"]["track"]] += [g711.ULAW_TO_LINEAR[c] for c in base64.b64decode(t["media"]["payload"])]
        check_tone(self, tracks["inbound"], caller_samples, frames)
        # The called party's A-law samples went through mu-law: compare
        # with the mu-law image of each reference sample.
        ulaw = [g711.ULAW_TO_LINEAR[g711.linear_to_ulaw(v)] for v in range(-32768, 32768)]

        def callee_via_ulaw(k: int) -> list[int]:
            return [ulaw[v + 32768] for v in callee_samples(k)]

        check_tone(self, tracks["outbound"], callee_via_ulaw, frames)
        # The session goes on without its stream.
        self.assertEqual((await self.session(call["session_id"]))["state"], "active")
        await self.bye(call)
        await self.events(["SESSIONSTARTED", "STREAMSTARTED", "STREAMSTOPPED", "SESSIONCOMPLETED"])


class FailureTests(OutputsTestBase):
    """
    A stream that cannot start fails alone; the call goes on.
    """

    async def test_refused_stream_fails_alone(self) -> None:
        """
        A stream URL whose port refuses: STREAMFAILED with reason
        "connect: ...", and the recording ordered with it still records;
        the session ends normally at BYE.
        """
        port = await refused_port()
        answer = {"startStream": dict(STREAM_ORDER, url="ws://127.0.0.1:%d/x" % port), "startRecording": RECORDING_ORDER}
        self.setup_service("", answer, None, 25800)
        call = await self.start_call(codecs=(0, 8))
        await wait_until(lambda: len(self.app.event_names()) >= 3, 10, what=lambda: repr(self.app.event_names()))
        self.assertEqual(sorted(self.app.event_names()), ["RECORDINGSTARTED", "SESSIONSTARTED", "STREAMFAILED"])
        failed = [e for e in self.app.events if e["event"] == "STREAMFAILED"][0]
        self.assertTrue(failed["reason"].startswith("connect: "), failed["reason"])
        self.send_tones(call, 0, 10)
        await self.bye(call)
        await wait_until(lambda: self.app.event_names()[-1:] == ["SESSIONCOMPLETED"], 10, what=lambda: repr(self.app.event_names()))
        self.assertEqual(self.app.event_names()[3:], ["RECORDINGSTOPPED", "SESSIONCOMPLETED"])
        self.assertEqual(self.app.events[-1]["reason"], "inboundBye")
