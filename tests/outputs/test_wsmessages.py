# -*- test-case-name: tests.outputs.test_wsmessages -*-
"""
Tests for L{aiconnect.outputs.wsmessages}: the messages of the C{raw} and
C{twilio} stream protocols, built without a connection.
"""

from __future__ import annotations

import base64
import itertools
import json

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.outputs.audio import ENCODINGS, TRACKS
from aiconnect.outputs.context import OutputContext
from aiconnect.outputs.orders import StreamOrder
from aiconnect.outputs.wsmessages import RawMessages, TwilioMessages, masked_binary_frame, messages_for
from tests.outputs.wsserver import TABLES, tone_frames

CONTEXT = OutputContext("sess_9", "t.example", "c@h", ({"participantId": "p1"},))


class RawMessagesTests(SynchronousTestCase):
    """
    L{RawMessages}: start, binary frames, stop.
    """

    def test_opening(self) -> None:
        """
        The start message lists the stream's shape; C{metadata} is C{{}}
        when the order has none; a resumed one adds C{resumed} and
        C{gapMs}.
        """
        messages = RawMessages("str_1", StreamOrder(url="ws://h/", tracks="callee", format="PCMA"), CONTEXT)
        (start,) = messages.opening()
        self.assertEqual(
            json.loads(start),
            {
                "event": "start",
                "sessionId": "sess_9",
                "streamId": "str_1",
                "tenant": "t.example",
                "tracks": "callee",
                "channels": 1,
                "format": "PCMA",
                "sampleRate": 8000,
                "frameMs": 20,
                "participants": [{"participantId": "p1"}],
                "metadata": {},
            },
        )
        (resumed,) = messages.opening(resumed=True, gap_ms=60)
        self.assertEqual({k: v for k, v in json.loads(resumed).items() if k in ("resumed", "gapMs")}, {"resumed": True, "gapMs": 60})
        self.assertEqual(messages.closing("inboundBye"), ['{"event":"stop","reason":"inboundBye"}'])

    def test_sizes(self) -> None:
        """
        For every C{tracks} and format, a frame is one binary message of
        160 x channels x sample width x rate/8000 octets, and silence has
        the same size.
        """
        frame = tone_frames(1)[0]
        for tracks, encoding in itertools.product(TRACKS, ENCODINGS):
            for rate in (8000, 16000) if encoding == "L16" else (8000,):
                messages = RawMessages("s", StreamOrder(url="ws://h/", tracks=tracks, format=encoding, sample_rate=rate), CONTEXT)
                width = 2 if encoding == "L16" else 1
                size = 160 * (2 if tracks == "both" else 1) * width * rate // 8000
                (payload,) = messages.encode(frame)
                self.assertEqual(len(payload), size, (tracks, encoding, rate))
                self.assertEqual([len(p) for p in messages.silence()], [size])
                self.assertEqual(messages.media(0, (payload,)), [payload])

    def test_pcmu_exact(self) -> None:
        """
        PCMU C{caller}: the reference table decodes the payload to the
        frame's samples.
        """
        frame = tone_frames(1, first=3)[0]
        messages = RawMessages("s", StreamOrder(url="ws://h/", tracks="caller", format="PCMU"), CONTEXT)
        (payload,) = messages.encode(frame)
        self.assertEqual([TABLES["ulaw2linear16"][c] for c in payload], list(frame.streams[0]))


class TwilioMessagesTests(SynchronousTestCase):
    """
    L{TwilioMessages}: Twilio Media Streams messages.
    """

    def test_numbering(self) -> None:
        """
        C{sequenceNumber} counts every message after C{connected} from 1,
        C{chunk} each track's messages from 1; C{timestamp} is the given
        position; a new opening starts both over.
        """
        messages = TwilioMessages("str_2", StreamOrder(url="ws://h/", protocol="twilio"), CONTEXT)
        connected, start = (json.loads(m) for m in messages.opening())
        self.assertNotIn("sequenceNumber", connected)
        self.assertEqual(start["sequenceNumber"], "1")
        frames = tone_frames(2, callee="ulaw2linear16")
        sent = [json.loads(m) for i, f in enumerate(frames) for m in messages.media(20 * i, messages.encode(f))]
        self.assertEqual([m["sequenceNumber"] for m in sent], ["2", "3", "4", "5"])
        self.assertEqual([(m["media"]["track"], m["media"]["chunk"], m["media"]["timestamp"]) for m in sent], [
            ("inbound", "1", "0"), ("outbound", "1", "0"), ("inbound", "2", "20"), ("outbound", "2", "20"),
        ])  # fmt: skip
        payload = base64.b64decode(sent[3]["media"]["payload"])
        self.assertEqual([TABLES["ulaw2linear16"][c] for c in payload], list(frames[1].streams[1]))
        self.assertEqual(json.loads(messages.closing("api")[0])["sequenceNumber"], "6")
        _, again = (json.loads(m) for m in messages.opening(resumed=True, gap_ms=20))
        self.assertEqual((again["sequenceNumber"], again["start"]["resumed"], again["start"]["gapMs"]), ("1", True, 20))
        (first,) = messages.media(80, messages.silence()[:1])
        self.assertEqual((json.loads(first)["sequenceNumber"], json.loads(first)["media"]["chunk"]), ("2", "1"))

    def test_format_ignored(self) -> None:
        """
        Twilio streams are mu-law 8 kHz whatever the order's C{format}:
        160 octets per track.
        """
        order = StreamOrder(url="ws://h/", protocol="twilio", tracks="mixed", format="L16", sample_rate=16000)
        messages = messages_for("s", order, CONTEXT)
        self.assertEqual([len(p) for p in messages.encode(tone_frames(1)[0])], [160])
        self.assertEqual(messages.silence(), (b"\xff" * 160,))

    def test_unknown_protocol(self) -> None:
        """
        Another protocol is refused.
        """
        self.assertRaises(ValueError, messages_for, "s", StreamOrder(url="ws://h/", protocol="sip"), CONTEXT)


class MaskedFrameTests(SynchronousTestCase):
    """
    L{masked_binary_frame} against wsproto's own frame parser (the server
    side of RFC 6455).
    """

    def test_parsed_by_wsproto(self) -> None:
        """
        Frames of every length class (7, 16 and 64 bit lengths, empty)
        parse as one finished binary frame carrying the payload exactly.
        """
        import os

        from wsproto.frame_protocol import FrameProtocol, Opcode

        parser = FrameProtocol(client=False, extensions=[])
        for n in (0, 5, 125, 126, 640, 65535, 65536, 70000):
            with self.subTest(n=n):
                payload = os.urandom(n)
                parser.receive_bytes(masked_binary_frame(payload, os.urandom(4)))
                (frame,) = list(parser.received_frames())
                self.assertEqual((frame.opcode, frame.frame_finished, bytes(frame.payload)), (Opcode.BINARY, True, payload))

    def test_masked(self) -> None:
        """
        The payload is masked with the key (RFC 6455 s5.3): the key follows
        the header, and octet i is XORed with key[i % 4].
        """
        frame = masked_binary_frame(b"\x00\x00\x00\x00\xff", b"\x01\x02\x03\x04")
        self.assertEqual(frame, b"\x82\x85\x01\x02\x03\x04\x01\x02\x03\x04\xfe")
