# -*- test-case-name: tests.outputs.test_stream -*-
"""
Tests for L{aiconnect.outputs.stream}: a L{StreamLeg} against a real
WebSocket server on 127.0.0.1 (L{tests.outputs.wsserver}), fed with frames
of G.711 reference-table values, whose audio is compared sample by sample
(the protocols, tracks and formats), and whose failures are reported as
SPEC s8 says (C{HTTP 403}, C{TLS: ...}, C{connect: ...}, C{timeout}).
Flow control, reconnection and pause are in L{tests.outputs.test_stream_flow}.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from twisted.internet import reactor
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase

from aiconnect.config.records import StreamsConfig
from aiconnect.media.pcm import FRAME_SAMPLES, PcmFrame
from aiconnect.outputs.audio import Parties
from aiconnect.outputs.context import OutputContext
from aiconnect.outputs.orders import StreamOrder
from aiconnect.outputs.stream import StreamLeg, StreamState
from aiconnect.outputs.wsclient import StreamTarget
from tests.fakes import pause, wait_until
from tests.integration.helpers import Certificates
from tests.outputs.wsserver import (
    TABLES,
    FakeMedia,
    ObserverLog,
    WsServer,
    WsServerConnection,
    refused_port,
    silent_server,
    tls_creator,
    tone_frames,
)

STREAM_ID = "str_0123456789abcdef"
PARTICIPANTS = (
    {"participantId": "p1", "name": "Alice", "aor": "sip:alice@example.com", "role": "caller"},
    {"participantId": "p2", "name": "Bob", "aor": "sip:bob@example.com", "role": "callee"},
)
CONTEXT = OutputContext("sess_1", "tenant.example", "call-1@src", PARTICIPANTS, Parties(caller=0, callee=1))
FAST = StreamsConfig(max_buffer=0.2, reconnect_for=1.5, connect_timeout=1.0)


def no_tls(host: str) -> Any:
    """
    A C{tls_creator} for legs that must not use TLS.
    """
    raise AssertionError("no TLS expected for %s" % (host,))


def s16le(data: bytes) -> list[int]:
    """
    Little-endian signed 16-bit samples.
    """
    return list(struct.unpack("<%dh" % (len(data) // 2), data))


def caller_of(frames: list[PcmFrame]) -> list[int]:
    """
    The caller's samples (relay stream 0) of C{frames}, in order.
    """
    return [s for f in frames for s in f.streams[0]]


def callee_of(frames: list[PcmFrame]) -> list[int]:
    """
    The called party's samples (relay stream 1) of C{frames}, in order.
    """
    return [s for f in frames for s in f.streams[1]]


def clip(value: int) -> int:
    """
    C{value} clipped to 16 bits.
    """
    return max(-32768, min(32767, value))


def twilio_payload(messages: list[dict[str, Any]]) -> bytes:
    """
    The decoded payloads of Twilio C{media} messages, joined.
    """
    return b"".join(base64.b64decode(m["media"]["payload"]) for m in messages)


class StreamCase(TestCase):
    """
    Base: a server, and legs that are stopped and waited for after each
    test.
    """

    timeout = 30

    def setUp(self) -> None:
        self.server = WsServer()
        self.server.listen()
        self.addCleanup(self.server.close)

    def leg(
        self,
        url: str | None = None,
        config: StreamsConfig = FAST,
        creator: Any = no_tls,
        **order: Any,
    ) -> tuple[StreamLeg, FakeMedia, ObserverLog]:
        """
        A new, unstarted leg to C{url} (the server's by default), stopped
        and waited for at the end of the test.
        """
        media, observer = FakeMedia(), ObserverLog()
        stream_order = StreamOrder(url=url or self.server.url("/audio"), **order)
        leg = StreamLeg(reactor, observer, STREAM_ID, stream_order, CONTEXT, media, config, creator, close_timeout=0.5)

        async def cleanup() -> None:
            leg.stop("shutdown")
            await wait_until(lambda: leg.state in (StreamState.STOPPED, StreamState.FAILED), 5)

        self.addCleanup(cleanup)
        return leg, media, observer

    async def running(self, **order: Any) -> tuple[StreamLeg, FakeMedia, ObserverLog, WsServerConnection]:
        """
        A started leg and the server's side of its connection.
        """
        leg, media, observer = self.leg(**order)
        leg.start()
        await observer.wait("started")
        return leg, media, observer, await self.server.connection()

    async def stopped(self, leg: StreamLeg, observer: ObserverLog, connection: WsServerConnection) -> dict[str, Any]:
        """
        Stop C{leg} (C{api}) and return its stats once the server saw the
        connection close.
        """
        leg.stop("api")
        await connection.wait_closed()
        report = await observer.wait("stopped")
        self.assertEqual(report[:3], ("stopped", STREAM_ID, "api"))
        stats: dict[str, Any] = report[3]["stats"]
        return stats


class RawProtocolTests(StreamCase):
    """
    C{protocol: "raw"}: a start message, one binary message per frame, a
    stop message and close code 1000.
    """

    async def test_l16_8k_both(self) -> None:
        """
        L16 8 kHz C{both}: the start message names the stream, each binary
        frame is 160 stereo samples, caller left, equal to what was fed;
        stop sends the stop message, closes with 1000 and reports stats.
        """
        leg, media, observer, connection = await self.running(metadata={"agent": "4711"})
        self.assertEqual(observer.reports, [("started", STREAM_ID, {"url": self.server.url("/audio")})])
        self.assertEqual(media.sinks, [leg])
        frames = tone_frames(25)
        media.feed(frames)
        await connection.wait_messages(26)
        stats = await self.stopped(leg, observer, connection)
        self.assertEqual(
            connection.texts[0],
            {
                "event": "start",
                "sessionId": "sess_1",
                "streamId": STREAM_ID,
                "tenant": "tenant.example",
                "tracks": "both",
                "channels": 2,
                "format": "L16",
                "sampleRate": 8000,
                "frameMs": 20,
                "participants": list(PARTICIPANTS),
                "metadata": {"agent": "4711"},
            },
        )
        binaries = connection.binaries
        self.assertEqual(len(binaries), 25)
        self.assertEqual({len(b) for b in binaries}, {4 * FRAME_SAMPLES})
        samples = [s for b in binaries for s in s16le(b)]
        self.assertEqual(samples[0::2], caller_of(frames))
        self.assertEqual(samples[1::2], callee_of(frames))
        self.assertEqual(connection.texts[-1], {"event": "stop", "reason": "api"})
        self.assertIsInstance(connection.messages[-1], str)
        self.assertEqual(connection.close_codes, [1000])
        self.assertEqual(stats, {"frames": 25, "bytes": 25 * 640, "dropped": 0, "reconnects": 0})
        self.assertEqual(media.sinks, [])
        self.assertEqual(observer.kinds(), ["started", "stopped"])

    async def test_l16_16k_caller(self) -> None:
        """
        L16 16 kHz C{caller}: 320 mono samples per frame, each fed sample
        followed by the mean of it and the next.
        """
        leg, media, observer, connection = await self.running(tracks="caller", sample_rate=16000)
        frames = tone_frames(5)
        media.feed(frames)
        await connection.wait_messages(6)
        self.assertEqual(connection.texts[0]["channels"], 1)
        self.assertEqual(connection.texts[0]["sampleRate"], 16000)
        for frame, data in zip(frames, connection.binaries):
            fed = list(frame.streams[0])
            got = s16le(data)
            self.assertEqual(len(got), 2 * FRAME_SAMPLES)
            self.assertEqual(got[0::2], fed)
            self.assertEqual(got[1::2], [(a + b) >> 1 for a, b in zip(fed, fed[1:] + fed[-1:])])

    async def test_pcmu_caller(self) -> None:
        """
        PCMU C{caller}: 160 octets per frame which the reference table
        decodes to the fed samples.
        """
        leg, media, observer, connection = await self.running(tracks="caller", format="PCMU")
        frames = tone_frames(13)
        media.feed(frames)
        await connection.wait_messages(14)
        decoded = [TABLES["ulaw2linear16"][c] for b in connection.binaries for c in b]
        self.assertEqual({len(b) for b in connection.binaries}, {FRAME_SAMPLES})
        self.assertEqual(decoded, caller_of(frames))

    async def test_pcma_callee(self) -> None:
        """
        PCMA C{callee}: the called party's samples, decoded by the
        reference A-law table.
        """
        leg, media, observer, connection = await self.running(tracks="callee", format="PCMA")
        frames = tone_frames(13)
        media.feed(frames)
        await connection.wait_messages(14)
        decoded = [TABLES["alaw2linear16"][c] for b in connection.binaries for c in b]
        self.assertEqual(decoded, callee_of(frames))

    async def test_pcmu_both(self) -> None:
        """
        PCMU C{both}: interleaved octets, caller first.
        """
        leg, media, observer, connection = await self.running(format="PCMU")
        frames = tone_frames(4, callee="ulaw2linear16")
        media.feed(frames)
        await connection.wait_messages(5)
        codes = b"".join(connection.binaries)
        self.assertEqual([TABLES["ulaw2linear16"][c] for c in codes[0::2]], caller_of(frames))
        self.assertEqual([TABLES["ulaw2linear16"][c] for c in codes[1::2]], callee_of(frames))

    async def test_mixed(self) -> None:
        """
        L16 C{mixed}: one channel, the two parties summed with clipping.
        """
        leg, media, observer, connection = await self.running(tracks="mixed")
        frames = tone_frames(13, callee="ulaw2linear16", callee_offset=1)
        media.feed(frames)
        await connection.wait_messages(14)
        got = [s for b in connection.binaries for s in s16le(b)]
        self.assertEqual(got, [clip(a + b) for a, b in zip(caller_of(frames), callee_of(frames))])
        self.assertTrue(any(abs(a + b) > 32767 for a, b in zip(caller_of(frames), callee_of(frames))))


class TwilioProtocolTests(StreamCase):
    """
    C{protocol: "twilio"}: Twilio Media Streams messages.
    """

    async def test_both(self) -> None:
        """
        C{connected}, C{start} (stream, call and account ids, both tracks,
        custom parameters, mu-law 8 kHz), then per frame one C{inbound}
        (caller) and one C{outbound} (called party) C{media} message whose
        payloads decode to the fed samples, then C{stop}.
        """
        leg, media, observer, connection = await self.running(protocol="twilio", metadata={"agent": "4711"})
        frames = tone_frames(10, callee="ulaw2linear16")
        media.feed(frames)
        await connection.wait_messages(22)
        await self.stopped(leg, observer, connection)
        texts = connection.texts
        self.assertEqual(connection.binaries, [])
        self.assertEqual(texts[0], {"event": "connected", "protocol": "Call", "version": "1.0.0"})
        self.assertEqual(
            texts[1],
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": STREAM_ID,
                "start": {
                    "streamSid": STREAM_ID,
                    "accountSid": "tenant.example",
                    "callSid": "sess_1",
                    "tracks": ["inbound", "outbound"],
                    "customParameters": {"agent": "4711"},
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            },
        )
        media_messages = texts[2:-1]
        self.assertEqual(len(media_messages), 20)
        self.assertEqual([m["sequenceNumber"] for m in media_messages], [str(n) for n in range(2, 22)])
        self.assertEqual({m["event"] for m in media_messages}, {"media"})
        self.assertEqual({m["streamSid"] for m in media_messages}, {STREAM_ID})
        inbound = [m["media"] for m in media_messages if m["media"]["track"] == "inbound"]
        outbound = [m["media"] for m in media_messages if m["media"]["track"] == "outbound"]
        self.assertEqual([m["media"]["track"] for m in media_messages[:2]], ["inbound", "outbound"])
        for track in (inbound, outbound):
            self.assertEqual([m["chunk"] for m in track], [str(n) for n in range(1, 11)])
            self.assertEqual([m["timestamp"] for m in track], [str(20 * n) for n in range(10)])

        def decoded(track: list[dict[str, str]]) -> list[int]:
            return [TABLES["ulaw2linear16"][c] for m in track for c in base64.b64decode(m["payload"])]

        self.assertEqual(decoded(inbound), caller_of(frames))
        self.assertEqual(decoded(outbound), callee_of(frames))
        self.assertEqual(
            texts[-1],
            {
                "event": "stop",
                "sequenceNumber": "22",
                "streamSid": STREAM_ID,
                "stop": {"accountSid": "tenant.example", "callSid": "sess_1"},
            },
        )
        self.assertEqual(connection.close_codes, [1000])

    async def test_callee(self) -> None:
        """
        C{callee}: one C{outbound} message per frame, the called party's
        audio.
        """
        leg, media, observer, connection = await self.running(protocol="twilio", tracks="callee")
        frames = tone_frames(5, callee="ulaw2linear16")
        media.feed(frames)
        await connection.wait_messages(7)
        start, media_messages = connection.texts[1], connection.texts[2:]
        self.assertEqual((start["start"]["tracks"], start["start"]["customParameters"]), (["outbound"], {}))
        self.assertEqual({m["media"]["track"] for m in media_messages}, {"outbound"})
        self.assertEqual([TABLES["ulaw2linear16"][c] for c in twilio_payload(media_messages)], callee_of(frames))

    async def test_mixed(self) -> None:
        """
        C{mixed}: one C{inbound} message per frame holding the mix, mu-law
        encoded (each sample is the G.711 encoding of the clipped sum: its
        decoded value is the closest table value to it).
        """
        leg, media, observer, connection = await self.running(protocol="twilio", tracks="mixed")
        frames = tone_frames(3, callee="ulaw2linear16")
        media.feed(frames)
        await connection.wait_messages(5)
        start, media_messages = connection.texts[1], connection.texts[2:]
        self.assertEqual(start["start"]["tracks"], ["inbound"])
        self.assertEqual([m["media"]["track"] for m in media_messages], ["inbound"] * 3)
        table = TABLES["ulaw2linear16"]
        payload = twilio_payload(media_messages)
        mixed = [clip(a + b) for a, b in zip(caller_of(frames), callee_of(frames))]
        self.assertEqual(len(payload), len(mixed))
        for code, value in zip(payload, mixed):
            # G.711 quantises: no other code decodes nearer to the value.
            self.assertEqual(abs(table[code] - value), min(abs(v - value) for v in table))


class HandshakeTests(StreamCase):
    """
    The handshake: URL, extra headers, and nothing secret in logs or
    events.
    """

    async def test_headers_and_query(self) -> None:
        """
        The order's headers and the URL's query string reach the server;
        the started event's URL has neither query nor credentials, and no
        log line holds a header value, the query or the credentials.
        """
        url = self.server.url("/audio?lang=sv&token=q-secret").replace("ws://", "ws://user:pw-secret@")
        with capturedLogs() as events:
            leg, media, observer = self.leg(
                url=url, headers=(("Authorization", "Bearer h-secret"), ("X-Tenant", "acme"))
            )
            leg.start()
            await observer.wait("started")
            connection = await self.server.connection()
            await self.stopped(leg, observer, connection)
        self.assertEqual(connection.path, "/audio?lang=sv&token=q-secret")
        self.assertEqual(connection.header("authorization"), ["Bearer h-secret"])
        self.assertEqual(connection.header("x-tenant"), ["acme"])
        self.assertEqual(connection.header("host"), ["127.0.0.1:%d" % (self.server.port,)])
        self.assertEqual(observer.reports[0][2], {"url": self.server.url("/audio")})
        text = "\n".join(formatEvent(e) for e in events) + repr(observer.reports)
        self.assertIn(STREAM_ID, text)
        for secret in ("h-secret", "q-secret", "pw-secret", "acme", "lang=sv"):
            self.assertNotIn(secret, text)

    async def test_url_credentials(self) -> None:
        """
        Credentials in the URL are sent as Basic authorization when the
        order sets no C{Authorization} header.
        """
        leg, media, observer = self.leg(url=self.server.url("/a").replace("ws://", "ws://user:pw@"))
        leg.start()
        connection = await self.server.connection()
        self.assertEqual(connection.header("authorization"), ["Basic " + base64.b64encode(b"user:pw").decode()])

    async def test_http_status(self) -> None:
        """
        A handshake answered 403: C{output_failed} with C{HTTP 403}, the
        leg never attaches; a later stop reports nothing more.
        """
        self.server.refuse = 403
        leg, media, observer = self.leg()
        leg.start()
        self.assertEqual(await observer.wait("failed"), ("failed", STREAM_ID, "HTTP 403"))
        self.assertEqual(len(self.server.handshakes), 1)
        leg.stop("api")
        await pause(0.05)
        self.assertEqual(observer.kinds(), ["failed"])
        self.assertEqual(media.sinks, [])
        self.assertEqual(leg.stats()["state"], "failed")

    async def test_refused(self) -> None:
        """
        Nobody listening: C{connect: connection refused}.
        """
        leg, media, observer = self.leg(url="ws://127.0.0.1:%d/x" % (await refused_port(),))
        leg.start()
        self.assertEqual(await observer.wait("failed"), ("failed", STREAM_ID, "connect: connection refused"))

    async def test_timeout(self) -> None:
        """
        A server that accepts and never answers: C{timeout} after
        C{connect_timeout}, and the connection is closed.
        """
        port = silent_server()
        self.addCleanup(port.stopListening)
        leg, media, observer = self.leg(
            url="ws://127.0.0.1:%d/x" % (port.getHost().port,), config=StreamsConfig(connect_timeout=0.3)
        )
        start = reactor.seconds()
        leg.start()
        self.assertEqual(await observer.wait("failed"), ("failed", STREAM_ID, "timeout"))
        self.assertGreaterEqual(reactor.seconds() - start, 0.3)
        self.assertEqual(observer.kinds(), ["failed"])

    async def test_stop_before_handshake(self) -> None:
        """
        stop() while the handshake is pending cancels it and reports
        C{output_stopped} at once; the timeout never reports a failure.
        """
        port = silent_server()
        self.addCleanup(port.stopListening)
        leg, media, observer = self.leg(
            url="ws://127.0.0.1:%d/x" % (port.getHost().port,), config=StreamsConfig(connect_timeout=0.2)
        )
        leg.start()
        await pause(0.05)
        leg.stop("inboundBye")
        leg.stop("api")
        self.assertEqual(
            observer.reports,
            [("stopped", STREAM_ID, "inboundBye", {"stats": {"frames": 0, "bytes": 0, "dropped": 0, "reconnects": 0}})],
        )
        await pause(0.3)
        self.assertEqual(observer.kinds(), ["stopped"])

    async def test_stop_idempotent(self) -> None:
        """
        A second stop() does nothing: one stop message, one report.
        """
        leg, media, observer, connection = await self.running()
        leg.stop("api")
        leg.stop("shutdown")
        await connection.wait_closed()
        await observer.wait("stopped")
        await pause(0.05)
        self.assertEqual(observer.kinds(), ["started", "stopped"])
        self.assertEqual([t["event"] for t in connection.texts], ["start", "stop"])

    async def test_bad_url(self) -> None:
        """
        A URL that is not ws:// or wss:// fails at once with
        C{connect: ...}.
        """
        leg, media, observer = self.leg(url="http://127.0.0.1/x")
        leg.start()
        self.assertEqual(observer.reports, [("failed", STREAM_ID, "connect: not a ws:// or wss:// URL")])

    async def test_bad_header(self) -> None:
        """
        A header with a line break fails the stream, never the reactor.
        """
        leg, media, observer = self.leg(headers=(("X-Bad", "a\r\nInjected: 1"),))
        leg.start()
        self.assertEqual(observer.reports, [("failed", STREAM_ID, "connect: bad handshake header")])
        self.assertEqual(self.server.handshakes, [])


class TlsTests(TestCase):
    """
    C{wss://}: the certificate is verified as for trunks.
    """

    timeout = 30

    def setUp(self) -> None:
        self.trusted = Certificates(("127.0.0.1", "localhost"))

    async def start_leg(
        self, creator: Any, host: str = "127.0.0.1", certificates: Certificates | None = None
    ) -> tuple[StreamLeg, ObserverLog, WsServer]:
        server = WsServer(certificates or self.trusted)
        server.listen()
        self.addCleanup(server.close)
        media, observer = FakeMedia(), ObserverLog()
        order = StreamOrder(url=server.url("/tls", host=host))
        leg = StreamLeg(reactor, observer, STREAM_ID, order, CONTEXT, media, FAST, creator, close_timeout=0.5)
        leg.start()
        await wait_until(lambda: observer.reports, 5)
        return leg, observer, server

    async def test_trusted(self) -> None:
        """
        A certificate from the trusted CA: the stream runs, audio arrives.
        """
        leg, observer, server = await self.start_leg(tls_creator(self.trusted))
        self.assertEqual(observer.kinds(), ["started"])
        self.assertTrue(observer.reports[0][2]["url"].startswith("wss://127.0.0.1:"))
        connection = await server.connection()
        leg.pcm_frame(tone_frames(1)[0])
        await connection.wait_messages(2)
        leg.stop("api")
        await connection.wait_closed()
        await observer.wait("stopped")
        self.assertEqual(connection.close_codes, [1000])

    async def test_untrusted(self) -> None:
        """
        A certificate from another CA: C{TLS: ...}, naming the failed
        verification.
        """
        leg, observer, server = await self.start_leg(tls_creator(Certificates(("127.0.0.1",))))
        self.assertEqual(len(observer.reports), 1)
        kind, stream_id, reason = observer.reports[0]
        self.assertEqual(kind, "failed")
        self.assertTrue(reason.startswith("TLS: "), reason)
        self.assertIn("certificate verify failed", reason)
        self.assertEqual(server.connections, [])

    async def test_wrong_host(self) -> None:
        """
        A certificate from the trusted CA for another name: C{TLS: ...}.
        """
        other = Certificates(("other.example",))
        leg, observer, server = await self.start_leg(tls_creator(other), certificates=other)
        self.assertEqual(observer.reports, [("failed", STREAM_ID, "TLS: certificate does not match the host")])


class StreamTargetTests(SynchronousTestCase):
    """
    L{StreamTarget.parse}: the parts of a stream URL.
    """

    def test_public_url(self) -> None:
        """
        The public URL drops credentials, query and fragment; the resource
        keeps the query; the Host header names non-default ports only.
        """
        target = StreamTarget.parse("WSS://u:p@AI.example.com:8443/a/b?x=1#f")
        self.assertEqual(target.public, "wss://ai.example.com:8443/a/b")
        self.assertEqual(target.resource, "/a/b?x=1")
        self.assertEqual(target.host_header(), "ai.example.com:8443")
        self.assertEqual(target.authorization, "Basic " + base64.b64encode(b"u:p").decode())
        plain = StreamTarget.parse("ws://[::1]")
        self.assertEqual((plain.host, plain.port, plain.resource, plain.public), ("::1", 80, "/", "ws://[::1]/"))
        self.assertEqual(plain.host_header(), "[::1]")
        self.assertEqual(StreamTarget.parse("wss://h/").host_header(), "h")
        self.assertEqual(StreamTarget.parse("wss://bücher.example/").host, "xn--bcher-kva.example")

    def test_refused(self) -> None:
        """
        Other schemes, and URLs without a host, are refused.
        """
        for url in ("http://h/", "ws:///path", "wss:", "h:80", "ws://h:99999/", "ws://b\u00fccher..example/"):
            self.assertRaises(ValueError, StreamTarget.parse, url)
