# -*- test-case-name: tests.outputs.test_orders -*-
"""
Tests for L{aiconnect.outputs.orders}: the C{startStream} and
C{startRecording} parsers (every rule, each error naming its field) and
L{orders_from_answer}.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.outputs.orders import (
    MAX_HEADER_VALUE,
    MAX_HEADERS,
    MAX_STREAM_URL,
    MAX_UPLOAD_URL,
    RecordingOrder,
    StreamOrder,
    orders_from_answer,
    parse_recording_order,
    parse_stream_order,
)
from aiconnect.siprec.orders import OrderError, forward_orders_from_answer
from tests.api.helpers import BAD_RECORDING_FIELDS, BAD_STREAM_FIELDS, STREAM_URL, UPLOAD_URL, nested


class StreamOrderTests(SynchronousTestCase):
    """
    Tests for L{parse_stream_order}.
    """

    def refused(self, fields: dict[str, Any], prefix: str = "") -> OrderError:
        """
        @return: The error C{fields} are refused with (always encodable).
        """
        with self.assertRaises(OrderError) as caught:
            parse_stream_order(fields, prefix)
        str(caught.exception).encode("utf-8")
        return caught.exception

    def test_defaults(self) -> None:
        """
        Only C{url} is required: both tracks, L16 at 8000 Hz, raw, no headers, no metadata.
        """
        self.assertEqual(parse_stream_order({"url": "ws://127.0.0.1:9000/"}), StreamOrder(url="ws://127.0.0.1:9000/"))

    def test_spec_example(self) -> None:
        """
        The SPEC s8 example is accepted with every field kept.
        """
        order = parse_stream_order(
            {
                "url": STREAM_URL,
                "tracks": "both",
                "format": "L16",
                "sampleRate": 8000,
                "protocol": "raw",
                "headers": {"Authorization": "Bearer abc"},
                "metadata": {"agent": "4711"},
                "streamReferenceId": {"ticketId": 98765},
            }
        )
        self.assertEqual(
            order,
            StreamOrder(
                url=STREAM_URL,
                headers=(("Authorization", "Bearer abc"),),
                metadata={"agent": "4711"},
                reference_id={"ticketId": 98765},
            ),
        )

    def test_every_choice(self) -> None:
        """
        Each tracks value, each format (any case, stored upper-case) and 16 kHz L16 are accepted.
        """
        for tracks in ("both", "mixed", "caller", "callee"):
            self.assertEqual(parse_stream_order({"url": STREAM_URL, "tracks": tracks}).tracks, tracks)
        for given, stored in (("l16", "L16"), ("pcmu", "PCMU"), ("Pcma", "PCMA"), ("PCMU", "PCMU")):
            self.assertEqual(parse_stream_order({"url": STREAM_URL, "format": given}).format, stored)
        order = parse_stream_order({"url": STREAM_URL, "format": "L16", "sampleRate": 16000})
        self.assertEqual((order.format, order.sample_rate), ("L16", 16000))
        self.assertEqual(parse_stream_order({"url": STREAM_URL, "sampleRate": 16000}).sample_rate, 16000)

    def test_nulls_are_defaults(self) -> None:
        """
        A null optional field means its default.
        """
        fields = {"tracks": None, "format": None, "sampleRate": None, "protocol": None, "headers": None}
        self.assertEqual(parse_stream_order({"url": STREAM_URL, **fields}), StreamOrder(url=STREAM_URL))

    def test_twilio(self) -> None:
        """
        A twilio stream is PCMU at 8000 Hz: PCMU by default, and PCMU / 8000 may be given.
        """
        order = parse_stream_order({"url": STREAM_URL, "protocol": "twilio"})
        self.assertEqual((order.protocol, order.format, order.sample_rate), ("twilio", "PCMU", 8000))
        order = parse_stream_order({"url": STREAM_URL, "protocol": "twilio", "format": "pcmu", "sampleRate": 8000})
        self.assertEqual((order.format, order.sample_rate), ("PCMU", 8000))

    def test_urls(self) -> None:
        """
        ws and wss URLs with a host name, IPv4 or IPv6 address, a port and a query string are accepted as given.
        """
        for url in ("ws://localhost/", "WSS://AI.Example.COM:8443/a?b=c&d=e", "ws://[2001:db8::1]:9000/x", "ws://192.0.2.1"):
            self.assertEqual(parse_stream_order({"url": url}).url, url)
        longest = "wss://ai.example.com/" + "a" * (MAX_STREAM_URL - 21)
        self.assertEqual(len(longest), MAX_STREAM_URL)
        self.assertEqual(parse_stream_order({"url": longest}).url, longest)

    def test_headers(self) -> None:
        """
        Up to 16 headers with token names (RFC 7230: also # $ & ^ |) and values of up to 1024 bytes, kept in order.
        """
        many = {f"X-H{i}": "v" for i in range(MAX_HEADERS)}
        self.assertEqual(len(parse_stream_order({"url": STREAM_URL, "headers": many}).headers), MAX_HEADERS)
        big = "\u00e9" * (MAX_HEADER_VALUE // 2)
        headers = {"Authorization": "Bearer x", "X-a#$&^|": " tab\there ", "X-Big": big}
        order = parse_stream_order({"url": STREAM_URL, "headers": headers})
        self.assertEqual(order.headers, (("Authorization", "Bearer x"), ("X-a#$&^|", "tab\there"), ("X-Big", big)))

    def test_header_limits_in_bytes(self) -> None:
        """
        A header value is measured in UTF-8 bytes: 513 two-byte characters are too many.
        """
        error = self.refused({"url": STREAM_URL, "headers": {"X-A": "\u00e9" * 513}})
        self.assertEqual(error.field, "headers.X-A")

    def test_duplicate_header(self) -> None:
        """
        The same header name twice (in another case) is refused.
        """
        error = self.refused({"url": STREAM_URL, "headers": {"X-A": "1", "x-a": "2"}})
        self.assertEqual(error.field, "headers.x-a")

    def test_bad_fields(self) -> None:
        """
        Each invalid field is refused naming that field.
        """
        for why, fields, field in BAD_STREAM_FIELDS:
            with self.subTest(why):
                self.assertEqual(self.refused(fields).field, field)

    def test_prefix(self) -> None:
        """
        Errors are named under the prefix given (a newCall answer's list entry).
        """
        self.assertEqual(self.refused({"url": STREAM_URL, "tracks": "x"}, "startStream[1]").field, "startStream[1].tracks")
        self.assertEqual(self.refused([], "startStream").field, "startStream")

    def test_not_an_object(self) -> None:
        """
        Anything but a JSON object is refused.
        """
        for value in (None, "wss://x", [STREAM_URL], 1):
            with self.subTest(value=value):
                self.assertEqual(self.refused(value).field, "")  # type: ignore[arg-type]

    def test_url_not_quoted(self) -> None:
        """
        The error for a bad URL does not quote it (its query string may be a secret).
        """
        error = self.refused({"url": "https://ai.example.com/?token=s3cret"})
        self.assertNotIn("s3cret", str(error))

    def test_metadata_and_reference_bounds(self) -> None:
        """
        metadata and streamReferenceId are bounded like sipRecForwardReferenceId: 32 levels, 4096 bytes, valid Unicode.
        """
        for key in ("metadata", "streamReferenceId"):
            with self.subTest(key):
                order = parse_stream_order({"url": STREAM_URL, key: nested(32)})
                self.assertEqual(order.metadata if key == "metadata" else order.reference_id, nested(32))
                self.assertEqual(self.refused({"url": STREAM_URL, key: nested(33)}).field, key + ".a" * 32)
                self.assertEqual(self.refused({"url": STREAM_URL, key: {"t": "x" * 4096}}).field, key)
                self.assertEqual(self.refused({"url": STREAM_URL, key: {"t": "\ud800"}}).field, key + ".t")

    def test_lone_surrogates(self) -> None:
        """
        A lone surrogate in a header value or name, or in a field name, is refused with an encodable field.
        """
        self.assertEqual(self.refused({"url": STREAM_URL, "headers": {"X-A": "M\udcfcller"}}).field, "headers.X-A")
        self.assertEqual(self.refused({"url": STREAM_URL, "headers": {"X-\ud800": "v"}}).field, "headers.X-\ufffd")
        self.assertEqual(self.refused({"url": STREAM_URL, "\ud800": 1}).field, "\ufffd")


class RecordingOrderTests(SynchronousTestCase):
    """
    Tests for L{parse_recording_order}.
    """

    def test_defaults(self) -> None:
        """
        An empty object is a stereo L16 WAV recording without upload.
        """
        self.assertEqual(parse_recording_order({}), RecordingOrder())

    def test_spec_example(self) -> None:
        """
        The SPEC s9 example is accepted with every field kept.
        """
        order = parse_recording_order(
            {"tracks": "mixed", "format": "wav", "encoding": "pcma", "uploadUrl": UPLOAD_URL, "recordingReferenceId": {"case": 17}}
        )
        self.assertEqual(order, RecordingOrder(tracks="mixed", encoding="PCMA", upload_url=UPLOAD_URL, reference_id={"case": 17}))

    def test_upload_urls(self) -> None:
        """
        http and https upload URLs up to 4096 characters are accepted as given.
        """
        for url in ("http://127.0.0.1:8080/put", "https://[::1]/x?sig=1"):
            self.assertEqual(parse_recording_order({"uploadUrl": url}).upload_url, url)
        longest = "https://bucket.example.com/" + "a" * (MAX_UPLOAD_URL - 27)
        self.assertEqual(parse_recording_order({"uploadUrl": longest}).upload_url, longest)
        self.assertIsNone(parse_recording_order({"uploadUrl": None}).upload_url)

    def test_bad_fields(self) -> None:
        """
        Each invalid field is refused naming that field, under the prefix given.
        """
        for why, fields, field in BAD_RECORDING_FIELDS:
            with self.subTest(why):
                with self.assertRaises(OrderError) as caught:
                    parse_recording_order(fields, "startRecording")
                self.assertEqual(caught.exception.field, "startRecording." + field)
        with self.assertRaises(OrderError) as caught:
            parse_recording_order("wav", "startRecording")
        self.assertEqual(caught.exception.field, "startRecording")

    def test_reference_bounds(self) -> None:
        """
        recordingReferenceId is bounded like sipRecForwardReferenceId.
        """
        too_big = {"t": "x" * 4096}
        self.assertLess(4096, len(json.dumps(too_big)))
        with self.assertRaises(OrderError) as caught:
            parse_recording_order({"recordingReferenceId": too_big})
        self.assertEqual(caught.exception.field, "recordingReferenceId")


class OrdersFromAnswerTests(SynchronousTestCase):
    """
    Tests for L{orders_from_answer} and the forward wrapper built on it.
    """

    def test_absent(self) -> None:
        """
        No value, no orders.
        """
        self.assertEqual(orders_from_answer(None, "startStream"), [])

    def test_one(self) -> None:
        """
        One object is one order named by the key.
        """
        self.assertEqual(orders_from_answer({"url": "x"}, "startStream"), [("startStream", {"url": "x"})])

    def test_list(self) -> None:
        """
        A list gives one order per entry, named with its index (even entries that are not objects).
        """
        self.assertEqual(
            orders_from_answer([{}, "x"], "startRecording"), [("startRecording[0]", {}), ("startRecording[1]", "x")]
        )

    def test_forwards(self) -> None:
        """
        forward_orders_from_answer is orders_from_answer under startSIPRecForward.
        """
        self.assertEqual(forward_orders_from_answer([{"uri": "a"}]), [("startSIPRecForward[0]", {"uri": "a"})])
        self.assertEqual(forward_orders_from_answer({"uri": "a"}), [("startSIPRecForward", {"uri": "a"})])
        self.assertEqual(forward_orders_from_answer(None), [])
