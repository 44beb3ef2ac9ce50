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
from aiconnect.outputs.wsmessages import RawMessages, TwilioMessages, messages_for
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
