# -*- test-case-name: tests.test_openapi_outputs -*-
"""
Tests that check the output routes of L{aiconnect.api} (streams SPEC s8,
recordings SPEC s9, pause and resume SPEC s10) against the OpenAPI
document, beside L{tests.test_openapi}: the limits, enumerations and
patterns the document states are those of L{aiconnect.outputs.orders} and
L{aiconnect.api.outputs}, the request schemas are as strict as the parsers
where a schema can be, the file downloads (over a real socket) and the
events of streams, recordings and pauses match their schemas.
"""

from __future__ import annotations

import re
from typing import Any

import treq
from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.server import Site

from aiconnect import events
from aiconnect.api import OPENAPI, ApiServer
from aiconnect.api.outputs import MAX_OUTPUT_ID, MAX_TARGET_IDS
from aiconnect.outputs import orders as output_orders
from tests.api.helpers import (
    BAD_RECORDING_FIELDS,
    BAD_STREAM_FIELDS,
    DOMAIN,
    STREAM_URL,
    TOKEN,
    FakeRecordingFiles,
    FakeRunnerRegistry,
    bearer,
    make_config,
)
from tests.openapi_support import (
    NO_CONTROL,
    SCHEMAS,
    Where,
    anchored,
    at,
    check_prose,
    check_values,
    component,
    conform,
    validator,
)
from tests.test_openapi import OUTPUT_EVENT_SCHEMAS, REC_ID, SOCKET_RESPONSES

#: BAD_STREAM_FIELDS and BAD_RECORDING_FIELDS the server refuses but the
#: schema cannot: host names, port numbers and byte counts.
SEMANTIC_ONLY_OUTPUTS = {"url bad host", "url bad port", "url port 0", "headers value size"}

#: Where the document lists who stops a stream or a recording: a subset of
#: the C{STOPPED_BY_} values (an SRS BYE stops forwards only).
OUTPUT_STOPPED_BY: tuple[Where, ...] = (
    SCHEMAS + ("StreamStopped", "allOf", 1, "properties", "stoppedBy", "enum"),
    SCHEMAS + ("RecordingStopped", "allOf", 1, "properties", "stoppedBy", "enum"),
)


def case_insensitive(word: str) -> str:
    """
    @return: A regex matching C{word} in any case (C{[Hh][Oo]...}).
    """
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


#: L{output_orders.RESERVED_HEADERS} and C{Sec-WebSocket-*}, as the
#: document refuses them (JSON Schema patterns have no flags).
RESERVED_HEADERS = (
    "^(?:"
    + "|".join(case_insensitive(name) for name in output_orders.RESERVED_HEADERS)
    + "|"
    + case_insensitive("sec-websocket-")
    + ".*)$"
)


def code_values() -> list[tuple[Where, Any]]:
    """
    The values of the document's output schemas that restate a constant of
    the code.

    @return: (where in the document, the value the code has) pairs.
    """
    rows: list[tuple[Where, Any]] = []
    rows += [
        (SCHEMAS + ("StopStreamRequest", "properties", "streamId", "maxLength"), MAX_OUTPUT_ID),
        (SCHEMAS + ("StopRecordingRequest", "properties", "recordingId", "maxLength"), MAX_OUTPUT_ID),
        (SCHEMAS + ("RecordingStopped", "allOf", 1, "properties", "encoding", "enum"), list(output_orders.ENCODINGS)),
    ]
    for field in ("forwardIds", "streamIds", "recordingIds"):
        where = SCHEMAS + ("PauseRequest", "properties", field)
        rows += [(where + ("maxItems",), MAX_TARGET_IDS), (where + ("items", "maxLength"), MAX_OUTPUT_ID)]
    for name in ("StreamOrder", "StartStreamRequest"):
        properties = SCHEMAS + (name, "properties")
        rows += [
            (properties + ("url", "maxLength"), output_orders.MAX_STREAM_URL),
            (properties + ("tracks", "enum"), list(output_orders.TRACKS)),
            (properties + ("format", "enum"), list(output_orders.FORMATS)),
            (properties + ("sampleRate", "enum"), list(output_orders.SAMPLE_RATES)),
            (properties + ("protocol", "enum"), list(output_orders.PROTOCOLS)),
            (properties + ("headers", "maxProperties"), output_orders.MAX_HEADERS),
            (properties + ("headers", "propertyNames", "pattern"), anchored(output_orders.HEADER_NAME_RE)),
            (properties + ("headers", "propertyNames", "not", "pattern"), RESERVED_HEADERS),
            (properties + ("headers", "additionalProperties", "maxLength"), output_orders.MAX_HEADER_VALUE),
            (properties + ("headers", "additionalProperties", "pattern"), NO_CONTROL),
        ]
    for name in ("RecordingOrder", "StartRecordingRequest"):
        properties = SCHEMAS + (name, "properties")
        rows += [
            (properties + ("tracks", "enum"), list(output_orders.TRACKS)),
            (properties + ("format", "enum"), list(output_orders.RECORDING_FORMATS)),
            (properties + ("encoding", "enum"), list(output_orders.ENCODINGS)),
            (properties + ("uploadUrl", "maxLength"), output_orders.MAX_UPLOAD_URL),
        ]
    return rows


def code_values_in_prose() -> list[tuple[Where, str]]:
    """
    The descriptions of the output schemas that quote a constant of the
    code.

    @return: (where in the document, the words that must be there) pairs.
    """
    rows: list[tuple[Where, str]] = []
    bounds = f"at most {events.MAX_REFERENCE_DEPTH} levels deep and {events.MAX_REFERENCE_BYTES} bytes"
    for name in ("StreamOrder", "StartStreamRequest"):
        properties = SCHEMAS + (name, "properties")
        rows += [
            (properties + ("url", "description"), f"at most {output_orders.MAX_STREAM_URL} characters"),
            (properties + ("headers", "description"), f"at most {output_orders.MAX_HEADERS}, values"),
            (properties + ("headers", "description"), f"at most {output_orders.MAX_HEADER_VALUE} bytes"),
            (properties + ("metadata", "description"), bounds),
            (properties + ("streamReferenceId", "description"), bounds),
        ]
    for name in ("RecordingOrder", "StartRecordingRequest"):
        properties = SCHEMAS + (name, "properties")
        rows += [
            (properties + ("uploadUrl", "description"), f"at most {output_orders.MAX_UPLOAD_URL} characters"),
            (properties + ("recordingReferenceId", "description"), bounds),
        ]
    rows.append((SCHEMAS + ("PauseRequest", "description"), f"at most {MAX_TARGET_IDS} distinct ids"))
    return rows


class OutputCodeValuesTests(SynchronousTestCase):
    """
    What the document states about the output routes' limits, patterns and
    enumerations is what the code does.
    """

    def test_values(self) -> None:
        """
        Each limit, pattern and enumeration of the output schemas equals the code's constant.
        """
        check_values(self, code_values())

    def test_prose(self) -> None:
        """
        Each description quoting a limit of the code quotes its current value.
        """
        check_prose(self, code_values_in_prose())

    def test_stopped_by(self) -> None:
        """
        Who stops a stream or a recording is one of the code's values, and never an SRS BYE.
        """
        sent = {value for name, value in vars(events).items() if name.startswith("STOPPED_BY_")}
        for where in OUTPUT_STOPPED_BY:
            with self.subTest("/".join(map(str, where))):
                self.assertEqual(set(at(where)) - sent, set())
                self.assertNotIn(events.STOPPED_BY_SRS_BYE, at(where))

    def test_header_patterns(self) -> None:
        """
        The documented header name patterns accept and refuse what the parser does, on samples of each side.
        """
        headers = at(SCHEMAS + ("StreamOrder", "properties", "headers", "propertyNames"))
        checks = [
            (headers["pattern"], lambda text: output_orders.HEADER_NAME_RE.match(text) is not None),
            (
                headers["not"]["pattern"],
                lambda text: text.lower() in output_orders.RESERVED_HEADERS or text.lower().startswith("sec-websocket-"),
            ),
        ]
        samples = ["Host", "hOST", "Hosts", "Upgrade", "connection", "Sec-WebSocket-Key", "sec-websocket-", "Sec-Web",
                   "Content-Length", "TRANSFER-ENCODING", "a#$&^|", "X-Token", "a b", "é", ""]
        for pattern, accepted in checks:
            for text in samples:
                with self.subTest(f"{pattern} {text!r}"):
                    self.assertEqual(re.search(pattern, text) is not None, accepted(text))


class RecordingFileResponseTests(TestCase):
    """
    The file answers of C{GET /{domain}/recordings/{recordingId}}
    (L{SOCKET_RESPONSES}) over a real socket: the file resource writes
    through a producer, which needs a running reactor.
    """

    async def test_responses(self) -> None:
        """
        The whole file (200) and a byte range (206) match their documented responses.
        """
        config = make_config(self, with_jwt=False)
        files = FakeRecordingFiles(self)
        files.add(DOMAIN, REC_ID, b"RIFF....WAVEfmt ")
        server = ApiServer(config, FakeRunnerRegistry(), recording_files=files)
        port = reactor.listenTCP(0, Site(server.app.resource()), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        template = "/{domain}/recordings/{recordingId}"
        url = f"http://127.0.0.1:{port.getHost().port}/{DOMAIN}/recordings/{REC_ID}"
        covered = set()
        for status, extra in ((200, {}), (206, {"Range": "bytes=8-11"})):
            response = await treq.get(url, headers={**bearer(TOKEN), **extra}, persistent=False)
            raw = await treq.content(response)
            text = conform(self, "get", template, status, response, raw)
            self.assertEqual(text, "WAVE" if status == 206 else "RIFF....WAVEfmt ")
            covered.add((template, "get", str(status)))
        self.assertEqual(covered, SOCKET_RESPONSES)


class OutputRequestSchemaTests(SynchronousTestCase):
    """
    The documented request schemas of the output routes are as strict as
    the parsers where a schema can be.
    """

    def test_bad_output_orders_refused(self) -> None:
        """
        Every invalid stream or recording order the server refuses (but host names, ports and byte counts) fails the schemas.
        """
        for name, table in (("StartStreamRequest", BAD_STREAM_FIELDS), ("StartRecordingRequest", BAD_RECORDING_FIELDS)):
            schema = component(name)
            for why, fields, _ in table:
                if why in SEMANTIC_ONLY_OUTPUTS:
                    continue
                with self.subTest(f"{name}: {why}"):
                    self.assertFalse(schema.is_valid({"sessionId": "ses_test1", **fields}))

    def test_good_output_orders_accepted(self) -> None:
        """
        The examples, and orders the parsers accept, validate; what the schema accepts the parsers accept.
        """
        streams = [
            {"url": STREAM_URL},
            {"url": "ws://127.0.0.1:9000/x", "protocol": "twilio", "format": "PCMU", "sampleRate": 8000},
            {"url": "wss://[2001:db8::1]/a?b=c", "format": "L16", "sampleRate": 16000, "tracks": "mixed"},
            {"url": STREAM_URL, "headers": {"X-a#$&^|": "v", "Authorization": "Bearer x"}, "metadata": None},
        ]
        recordings = [{}, {"tracks": "callee", "encoding": "PCMU", "uploadUrl": "http://127.0.0.1:8080/put?sig=1"}]
        for name, parse, orders_ in (
            ("StartStreamRequest", output_orders.parse_stream_order, streams),
            ("StartRecordingRequest", output_orders.parse_recording_order, recordings),
        ):
            schema = component(name)
            examples = OPENAPI["components"]["schemas"][name]["examples"]
            for order in [{k: v for k, v in e.items() if k != "sessionId"} for e in examples] + orders_:
                with self.subTest(f"{name}: {order}"):
                    parse(order)
                    self.assertEqual([e.message for e in schema.iter_errors({"sessionId": "s", **order})], [])
        schema = component("PauseRequest")
        for example in OPENAPI["components"]["schemas"]["PauseRequest"]["examples"]:
            self.assertEqual([e.message for e in schema.iter_errors(example)], [])

    def test_pause_request(self) -> None:
        """
        The pause schema refuses what the server refuses: not a list, too many, empty or duplicate ids, unknown fields.
        """
        schema = component("PauseRequest")
        too_many = [f"str_{i}" for i in range(MAX_TARGET_IDS + 1)]
        for bad in (
            {"streamIds": "str_1"},
            {"streamIds": too_many},
            {"streamIds": [""]},
            {"streamIds": ["x" * (MAX_OUTPUT_ID + 1)]},
            {"forwardIds": ["a", "a"]},
            {"recordingIds": [1]},
            {"all": True},
        ):
            with self.subTest(bad):
                self.assertFalse(schema.is_valid({"sessionId": "s", **bad}))
        self.assertTrue(schema.is_valid({"sessionId": "s", "streamIds": too_many[:MAX_TARGET_IDS], "forwardIds": None}))

    def test_new_call_answer_outputs(self) -> None:
        """
        A newCall answer may hold one startStream / startRecording object or a list; an invalid one fails.
        """
        schema = component("NewCallAnswer")
        stream = dict(OPENAPI["components"]["schemas"]["StreamOrder"]["examples"][0])
        recording = dict(OPENAPI["components"]["schemas"]["RecordingOrder"]["examples"][0])
        for answer in (
            {"startStream": stream, "startRecording": recording},
            {"startStream": [stream, {"url": "ws://127.0.0.1/"}], "startRecording": [recording, {}]},
        ):
            self.assertEqual([e.message for e in schema.iter_errors(answer)], [])
        self.assertFalse(schema.is_valid({"startStream": {"format": "L16"}}))
        self.assertFalse(schema.is_valid({"startRecording": [{"format": "mp3"}]}))


class OutputEventSchemaTests(SynchronousTestCase):
    """
    The events of streams, recordings and pauses match the C{events}
    webhook.
    """

    def event_schema(self) -> Any:
        """
        @return: A validator for the C{events} webhook request body.
        """
        post = OPENAPI["webhooks"]["events"]["post"]
        return validator(post["requestBody"]["content"]["application/json"]["schema"])

    def test_output_events(self) -> None:
        """
        Events of streams, recordings and pauses, shaped as SPEC s8-s10 state, match the schema; one missing a field of its kind fails.
        """
        schema = self.event_schema()
        common = {"eventId": "evt_01HW3K9Q0Z8Y7X6W5V4T3S2R1Q", "sessionId": "ses_1", "tenant": DOMAIN,
                  "timestamp": "2026-12-02T05:00:00.000Z", "sequence": 3}
        stream = {"streamId": "str_0123456789abcdef", "url": "wss://ai.example.com/audio", "streamReferenceId": {"t": 1}}
        recording = {"recordingId": REC_ID, "recordingReferenceId": None}
        ids = {"forwardIds": ["fwd_1"], "streamIds": [], "recordingIds": [REC_ID]}
        built = {
            "STREAMSTARTED": stream,
            "STREAMFAILED": {**stream, "reason": "HTTP 403"},
            "STREAMSTOPPED": {**stream, "stoppedBy": "api", "stats": {"frames": 50, "bytes": 16000, "dropped": 0, "reconnects": 0}},
            "RECORDINGSTARTED": recording,
            "RECORDINGSTOPPED": {**recording, "file": f"{DOMAIN}/2026-12-02/{REC_ID}.wav", "duration": 1.0, "bytes": 32044,
                                 "sha256": "0" * 64, "channels": 2, "encoding": "L16", "pauses": [], "stoppedBy": "inboundBye"},
            "RECORDINGFAILED": {**recording, "reason": "disk full"},
            "RECORDINGUPLOADED": {**recording, "url": "https://bucket.s3.example.com/rec.wav", "status": 200},
            "SESSIONPAUSED": {**ids, "sessionPaused": True},
            "SESSIONRESUMED": {**ids, "sessionPaused": False},
        }
        self.assertEqual(set(built), {name for _, name in OUTPUT_EVENT_SCHEMAS})
        for name, fields in built.items():
            event = {"event": name, **common, **fields}
            with self.subTest(name):
                self.assertEqual([e.message for e in schema.iter_errors(event)], [])
                first = sorted(fields)[0]
                self.assertFalse(schema.is_valid({k: v for k, v in event.items() if k != first}))
