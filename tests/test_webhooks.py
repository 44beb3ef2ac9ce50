# -*- test-case-name: tests.test_webhooks -*-
"""
Tests for L{aiconnect.webhooks} and L{aiconnect.events}: signatures, the
SQLite outbox, ordered delivery with back-off on a L{Clock}, and the
C{newCall} client, all through L{StubTreq} over a recording resource.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any

from treq.testing import StubTreq
from twisted.internet import defer
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import RequestNotSent, RequestTransmissionFailed, ResponseNeverReceived
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from aiconnect import events, webhooks
from aiconnect.config import TenantConfig
from aiconnect.webhooks import (
    SCHEMA_VERSION,
    EventDeliverer,
    EventDeliveryService,
    EventOutbox,
    NewCallClient,
    NewCallResult,
    decode_secret,
    parse_retry_after,
    secret_digest,
    sign,
    verify,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DOMAIN = "customer.example.com"
OTHER = "other.example.com"
START = 1_700_000_000.0
DOCS = Path(__file__).parent.parent / "docs" / "events.md"


def independent_signature_ok(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """
    Check a request the way the Standard Webhooks specification describes
    it, without any of L{aiconnect.webhooks}: the key is the base64 text
    after C{whsec_}, decoded; the signed content is C{id.timestamp.body};
    the header holds space-separated C{v1,<base64 HMAC-SHA256>}.
    """
    key = base64.b64decode(secret[len("whsec_") :] + "=" * (-len(secret[len("whsec_") :]) % 4))
    content = headers["webhook-id"].encode() + b"." + headers["webhook-timestamp"].encode() + b"." + body
    expected = "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    return expected in headers["webhook-signature"].split(" ")


#: The tenant of L{tenant} with another signing secret.
ROTATED = TenantConfig(domain=DOMAIN, callback_url="http://app.example", signing_secret="whsec_" + "A" * 32)


@dataclass
class Recorded:
    """
    One request the recording resource saw.
    """

    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Recorder(Resource):
    """
    An application that records every POST and answers from a script:
    C{(status, headers, body)} per request, C{None} = never answer, then
    C{default}.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Recorded] = []
        self.script: deque[tuple[int, dict[str, str], bytes] | None] = deque()
        self.default: tuple[int, dict[str, str], bytes] = (200, {}, b"")
        self.hanging: list[Request] = []
        self.lost = 0

    def render_POST(self, request: Request) -> bytes | int:
        headers = {k.decode().lower(): v[0].decode() for k, v in request.requestHeaders.getAllRawHeaders()}
        self.requests.append(Recorded(request.path.decode(), headers, request.content.read()))
        answer = self.script.popleft() if self.script else self.default
        if answer is None:
            self.hanging.append(request)
            request.notifyFinish().addErrback(lambda _: setattr(self, "lost", self.lost + 1))
            return NOT_DONE_YET
        status, response_headers, body = answer
        request.setResponseCode(status)
        for name, value in response_headers.items():
            request.setHeader(name, value)
        return body

    def events(self) -> list[str]:
        return [r.json["event"] + ":" + r.json["sessionId"] for r in self.requests]


class FlakyClient:
    """
    A treq-shaped client whose first C{failures} POSTs fail with a refused
    connection; later ones go to C{inner}.
    """

    def __init__(self, inner: Any, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.refused = 0

    def post(self, url: str, **kwargs: Any) -> defer.Deferred[Any]:
        if self.refused < self.failures:
            self.refused += 1
            return defer.fail(ConnectionRefusedError("Connection refused"))
        return self.inner.post(url, **kwargs)


class StaleClient:
    """
    A treq-shaped client whose first POSTs fail as a closed pooled
    connection does (C{failures}: the exceptions, in order); later ones go
    to C{inner}.
    """

    def __init__(self, inner: Any, failures: list[Exception]) -> None:
        self.inner = inner
        self.failures = deque(failures)
        self.posts = 0

    def post(self, url: str, **kwargs: Any) -> defer.Deferred[Any]:
        self.posts += 1
        if self.failures:
            return defer.fail(self.failures.popleft())
        return self.inner.post(url, **kwargs)


def closed_before_answer() -> ResponseNeverReceived:
    """
    What the agent fails with when the server closed the connection before
    answering.
    """
    return ResponseNeverReceived([Failure(ConnectionDone("closed"))])


class RaisingClient:
    """
    A treq-shaped client whose C{post} raises synchronously.
    """

    def post(self, url: str, **kwargs: Any) -> defer.Deferred[Any]:
        raise RuntimeError("boom")


def tenant(domain: str = DOMAIN, url: str = "http://app.example") -> TenantConfig:
    return TenantConfig(domain=domain, callback_url=url, signing_secret=SECRET)


def started(session: str = "s1", **kwargs: Any) -> dict[str, Any]:
    return events.session_started(
        session,
        tenant=DOMAIN,
        call_id="c@src",
        from_uri="sip:a@src",
        to_uri="sip:b@srs",
        now=START,
        **kwargs,
    )


def completed(session: str = "s1") -> dict[str, Any]:
    return events.session_completed(session, tenant=DOMAIN, reason=events.COMPLETED_INBOUND_BYE, duration=1.5, now=START)


class _Base(SynchronousTestCase):
    """
    A L{Clock}, a recording application behind L{StubTreq}, and an outbox in
    a temporary directory.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.recorder = Recorder()
        self.stub = StubTreq(self.recorder)
        self.dir = tempfile.mkdtemp(prefix="aiconnect-webhooks-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = str(Path(self.dir) / "var" / "events.sqlite3")
        self.outbox = self.open_outbox()

    def open_outbox(self) -> EventOutbox:
        outbox = EventOutbox(self.path, clock=self.clock.seconds)
        self.addCleanup(outbox.close)
        return outbox

    def deliverer(self, outbox: EventOutbox | None = None, **kwargs: Any) -> EventDeliverer:
        kwargs.setdefault("http_client", self.stub)
        kwargs.setdefault("random", lambda: 0.0)
        kwargs.setdefault("tenants", {DOMAIN: tenant(), OTHER: tenant(OTHER, "http://other.example")})
        d = EventDeliverer(self.clock, outbox or self.outbox, **kwargs)
        self.addCleanup(d.stop)
        return d

    def pump(self) -> None:
        """
        Run every call due now (delivery always goes through callLater(0)).
        """
        for _ in range(1000):
            now = self.clock.seconds()
            if not any(c.getTime() <= now for c in self.clock.getDelayedCalls()):
                return
            self.clock.advance(0)
        self.fail("pump did not settle")

    def advance_to(self, t: float) -> None:
        """
        Move the clock to C{START + t}, stopping at every timer on the way
        (so timers scheduled meanwhile run at their own time).
        """
        target = START + t
        for _ in range(10000):
            self.pump()
            due = [c.getTime() for c in self.clock.getDelayedCalls() if c.getTime() <= target]
            if not due:
                break
            self.clock.advance(min(due) - self.clock.seconds())
        self.clock.advance(max(0.0, target - self.clock.seconds()))
        self.pump()

    def attempt_times(self) -> list[float]:
        return [round(t - START, 3) for t in self.times]


class SigningTests(SynchronousTestCase):
    """
    Standard Webhooks signatures.
    """

    def test_published_vector(self) -> None:
        """
        L{sign} reproduces the Standard Webhooks specification's published
        test vector.
        """
        headers = sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
        self.assertEqual(
            headers,
            {
                "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "webhook-timestamp": "1614265330",
                "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            },
        )

    def test_independent_verifier_accepts(self) -> None:
        """
        A signature made by L{sign} passes the test's own implementation of
        the specification.
        """
        body = json.dumps({"event": "SESSIONSTARTED", "x": "é"}, ensure_ascii=False).encode()
        headers = sign(SECRET, "evt_1", 1700000000, body)
        self.assertTrue(independent_signature_ok(SECRET, headers, body))
        self.assertFalse(independent_signature_ok(SECRET, headers, body + b" "))

    def test_verify(self) -> None:
        """
        L{verify} accepts a good signature among several, and rejects a
        changed body, another secret, a stale timestamp and missing headers.
        """
        body = b'{"a":1}'
        headers = sign(SECRET, "evt_1", 1000, body)
        other = "whsec_" + base64.b64encode(b"another key of some length").decode()
        self.assertTrue(verify(SECRET, headers, body, now=1000))
        several = dict(headers, **{"webhook-signature": "v1,AAAA " + headers["webhook-signature"]})
        self.assertTrue(verify(SECRET, several, body, now=1010))
        upper = {k.upper(): v for k, v in headers.items()}
        self.assertTrue(verify(SECRET, upper, body, now=1000))
        self.assertFalse(verify(SECRET, headers, b'{"a":2}', now=1000))
        self.assertFalse(verify(other, headers, body, now=1000))
        self.assertFalse(verify(SECRET, headers, body, now=1000 + 301))
        self.assertFalse(verify(SECRET, {}, body, now=1000))

    def test_decode_secret(self) -> None:
        """
        The key is the base64 after C{whsec_}, padding optional; other forms
        are rejected without echoing the secret.
        """
        self.assertEqual(decode_secret("whsec_" + base64.b64encode(b"key!").decode().rstrip("=")), b"key!")
        for bad in ("MfKQ9r8GKYqr", "whsec_", "whsec_***"):
            with self.assertRaises(ValueError) as caught:
                decode_secret(bad)
            if bad != "whsec_":
                self.assertNotIn(bad, str(caught.exception))

    def test_parse_retry_after(self) -> None:
        """
        C{Retry-After} is delay seconds or an HTTP date (RFC 9110 s10.2.3);
        garbage is ignored.
        """
        self.assertEqual(parse_retry_after("120", START), 120.0)
        self.assertEqual(parse_retry_after(formatdate(START + 90, usegmt=True), START), 90.0)
        self.assertEqual(parse_retry_after(formatdate(START - 90, usegmt=True), START), 0.0)
        self.assertIsNone(parse_retry_after(None, START))
        self.assertIsNone(parse_retry_after("soon", START))
        self.assertIsNone(parse_retry_after("-5", START))


class EventsTests(SynchronousTestCase):
    """
    The event payload builders of L{aiconnect.events}.
    """

    def test_common_keys(self) -> None:
        """
        Every event has C{event}, a unique C{evt_} C{eventId}, C{sessionId},
        C{tenant} and an ISO-8601 UTC C{timestamp} with milliseconds.
        """
        a = events.build_event(events.SESSIONSTARTED, "s1", DOMAIN, now=1700000000.5)
        b = events.build_event(events.SESSIONSTARTED, "s1", DOMAIN, now=1700000000.5)
        self.assertEqual(a["event"], "SESSIONSTARTED")
        self.assertEqual(a["sessionId"], "s1")
        self.assertEqual(a["tenant"], DOMAIN)
        self.assertEqual(a["timestamp"], "2023-11-14T22:13:20.500Z")
        self.assertRegex(a["eventId"], r"^evt_[0-9A-HJKMNP-TV-Z]{26}$")
        self.assertNotEqual(a["eventId"], b["eventId"])

    def test_ids_sort_by_time(self) -> None:
        """
        Ids made later sort after earlier ones (millisecond resolution).
        """
        ids = [events.new_id(now=START + i / 1000) for i in range(0, 50)]
        self.assertEqual(ids, sorted(ids))
        self.assertTrue(events.new_id("msg_").startswith("msg_"))

    def test_timestamp_rounding(self) -> None:
        """
        The timestamp keeps three decimals, carrying into the second.
        """
        self.assertEqual(events.format_timestamp(0.9996), "1970-01-01T00:00:01.000Z")
        self.assertEqual(events.format_timestamp(86400.042), "1970-01-02T00:00:00.042Z")

    def test_unknown_event(self) -> None:
        """
        An unknown event name or a field shadowing a common key is a
        programming error.
        """
        self.assertRaises(ValueError, events.build_event, "SESSIONPAUSED", "s1", DOMAIN)
        self.assertRaises(ValueError, events.build_event, events.SESSIONSTARTED, "s1", DOMAIN, {"eventId": "x"})

    def test_reference_echoed_unchanged(self) -> None:
        """
        C{sipRecForwardReferenceId} is copied as given, and later changes
        to the caller's object do not change the event.
        """
        reference = {"ticketId": 98765, "tags": ["a", {"b": None}]}
        payload = events.siprec_forward_started(
            "s1",
            tenant=DOMAIN,
            forward_id="f1",
            uri="sip:aiforward@customer.example.com",
            target="sip:192.0.2.7:5061;transport=tls",
            codec="PCMU",
            srtp=True,
            reference_id=reference,
        )
        self.assertEqual(payload["sipRecForwardReferenceId"], {"ticketId": 98765, "tags": ["a", {"b": None}]})
        reference["tags"].append("c")
        self.assertEqual(payload["sipRecForwardReferenceId"]["tags"], ["a", {"b": None}])

    def test_sip_text_decoded(self) -> None:
        """
        SIP text holding bytes that are not UTF-8 (surrogate-escaped) is
        decoded in every event: ISO-8859-1/Windows-1252 bytes become their
        characters, valid UTF-8 is kept.
        """
        event = events.session_started(
            "s1",
            tenant=DOMAIN,
            call_id="c@src",
            from_uri='"Jos\udce9" <sip:jose@pbx>;tag=1',
            to_uri="<sip:M\u00fcller@srs>",
            streams=["\udc80"],
            now=START,
        )
        self.assertEqual(event["from"], '"Jos\u00e9" <sip:jose@pbx>;tag=1')
        self.assertEqual(event["to"], "<sip:M\u00fcller@srs>")
        self.assertEqual(event["streams"], ["\u20ac"])

    def test_unreportable_reference_is_null(self) -> None:
        """
        A reference id that could not be echoed (lone surrogate, deeper than
        32 levels, over 4 KiB) is C{null} in the event; the event is built.
        """
        deep: dict[str, Any] = {}
        for _ in range(599):
            deep = {"a": deep}
        for reference in ({"n": "\ud800"}, deep, {"t": "x" * 5000}):
            event = events.siprec_forward_failed(
                "s1", tenant=DOMAIN, forward_id="f1", uri="sip:x@y", reason="invalid order", reference_id=reference
            )
            self.assertIsNone(event["sipRecForwardReferenceId"])

    def test_forward_failed_fields(self) -> None:
        """
        C{SIPRECFORWARDFAILED} carries the reason, the SIP status, the
        targets tried and the reference.
        """
        payload = events.siprec_forward_failed(
            "s1",
            tenant=DOMAIN,
            forward_id="f1",
            uri="sip:aiforward@customer.example.com",
            reason="Service Unavailable",
            status=503,
            target="sip:192.0.2.8:5061;transport=tls",
            targets_tried=["sip:192.0.2.7:5061;transport=tls", "sip:192.0.2.8:5061;transport=tls"],
        )
        self.assertEqual(payload["status"], 503)
        self.assertEqual(len(payload["targetsTried"]), 2)
        self.assertIsNone(payload["sipRecForwardReferenceId"])

    def test_docs_match_builders(self) -> None:
        """
        Every event's JSON example in C{docs/events.md} has exactly the keys
        the builder produces (plus C{sequence}, added by the outbox).
        """
        built = {
            events.SESSIONSTARTED: started(),
            events.SIPRECFORWARDSTARTED: events.siprec_forward_started(
                "s1", tenant=DOMAIN, forward_id="f", uri="u", target="t", codec="PCMA", srtp=False
            ),
            events.SIPRECFORWARDFAILED: events.siprec_forward_failed(
                "s1", tenant=DOMAIN, forward_id="f", uri="u", reason="r"
            ),
            events.SIPRECFORWARDSTOPPED: events.siprec_forward_stopped(
                "s1", tenant=DOMAIN, forward_id="f", uri="u", target="t", stopped_by=events.STOPPED_BY_API
            ),
            events.SESSIONCOMPLETED: completed(),
        }
        examples: dict[str, dict[str, Any]] = {}
        for block in re.findall(r"```json\n(.*?)```", DOCS.read_text(), re.S):
            data = json.loads(block)
            if isinstance(data, dict) and data.get("event") in built:
                examples[data["event"]] = data
        self.assertEqual(set(examples), set(built))
        for name, payload in built.items():
            self.assertEqual(set(examples[name]), set(payload) | {"sequence"}, name)


    def test_docs_verifier(self) -> None:
        """
        The receiver's verification example in C{docs/events.md} accepts our
        signature and rejects a changed body.
        """
        [code] = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
        namespace: dict[str, Any] = {}
        exec(code, namespace)
        body = b'{"event":"SESSIONSTARTED"}'
        headers = sign(SECRET, "evt_1", int(time.time()), body)
        self.assertTrue(namespace["verify"](SECRET, headers, body))
        self.assertFalse(namespace["verify"](SECRET, headers, body + b" "))


class OutboxTests(_Base):
    """
    L{EventOutbox}: the durable SQLite store.
    """

    def rows(self) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(self.path)
        self.addCleanup(db.close)
        return db.execute("SELECT tenant, session_id, seq, event_id, body, attempts FROM events ORDER BY id").fetchall()

    def test_emit_stores(self) -> None:
        """
        C{emit} commits one row per event, numbering each session's events
        1, 2, ... and adding C{sequence} to the stored body.
        """
        a = self.outbox.emit(DOMAIN, "s1", started("s1"))
        b = self.outbox.emit(DOMAIN, "s2", started("s2"))
        c = self.outbox.emit(DOMAIN, "s1", completed("s1"))
        rows = self.rows()
        self.assertEqual([(r[1], r[2], r[3]) for r in rows], [("s1", 1, a), ("s2", 1, b), ("s1", 2, c)])
        body = json.loads(rows[2][4])
        self.assertEqual(body["sequence"], 2)
        self.assertEqual(body["event"], "SESSIONCOMPLETED")
        self.assertEqual(self.outbox.stats["emitted"], 3)
        self.assertEqual(self.outbox.counts(), {"pending": 3, "delivered": 0, "dead": 0})

    def test_database_settings(self) -> None:
        """
        The parent directory is created; the journal is WAL; the schema is
        versioned with C{user_version}.
        """
        self.assertTrue(Path(self.path).exists())
        db = sqlite3.connect(self.path)
        self.addCleanup(db.close)
        self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        self.assertEqual(db.execute("PRAGMA user_version").fetchone()[0], SCHEMA_VERSION)
        self.assertEqual(self.outbox.schema_version, SCHEMA_VERSION)

    def test_newer_schema_refused(self) -> None:
        """
        A database written by a newer version is not touched.
        """
        self.outbox.close()
        db = sqlite3.connect(self.path)
        db.execute("PRAGMA user_version=%d" % (SCHEMA_VERSION + 1))
        db.close()
        self.assertRaises(sqlite3.DatabaseError, EventOutbox, self.path)

    def test_missing_ids_filled(self) -> None:
        """
        A payload without C{eventId} or C{sessionId} gets them.
        """
        event_id = self.outbox.emit(DOMAIN, "s9", {"event": "SESSIONSTARTED"})
        self.assertIsNotNone(event_id)
        body = json.loads(self.rows()[0][4])
        self.assertEqual((body["eventId"], body["sessionId"]), (event_id, "s9"))

    def test_not_json_rejected(self) -> None:
        """
        A payload that is not JSON is logged and counted, and C{emit}
        returns L{None} instead of raising.
        """
        with capturedLogs() as logged:
            result = self.outbox.emit(DOMAIN, "s1", {"event": "SESSIONSTARTED", "bad": object()})
        self.assertIsNone(result)
        self.assertEqual(self.outbox.stats["rejected"], 1)
        self.assertEqual(self.rows(), [])
        self.assertTrue(any(e.get("session_id") == "s1" and e["log_level"].name == "error" for e in logged))

    def test_lone_surrogate_never_drops(self) -> None:
        """
        An event payload still holding a lone surrogate (built without the
        builders) is stored and sent with U+FFFD instead: valid UTF-8 JSON.
        """
        event_id = self.outbox.emit(DOMAIN, "s1", {"event": "SESSIONSTARTED", "from": "Jos\udce9", "x": "\ud800"})
        self.assertIsNotNone(event_id)
        self.assertEqual(self.outbox.stats["rejected"], 0)
        [event] = self.outbox.pending()
        body = json.loads(event.body.decode("utf-8"))
        self.assertEqual((body["from"], body["x"]), ("Jos\ufffd", "\ufffd"))

    def test_duplicate_event_id(self) -> None:
        """
        The same event emitted twice is stored once.
        """
        payload = started()
        self.assertEqual(self.outbox.emit(DOMAIN, "s1", payload), payload["eventId"])
        self.assertEqual(self.outbox.emit(DOMAIN, "s1", payload), payload["eventId"])
        self.assertEqual(len(self.rows()), 1)

    def test_database_failure_never_raises(self) -> None:
        """
        When the database fails, C{emit} still returns the id, logs and
        counts it, and hands the event on in memory with the next sequence.
        """
        seen: list[Any] = []
        self.outbox.add_listener(seen.append)
        self.outbox.emit(DOMAIN, "s1", started())
        self.outbox.close()
        with capturedLogs() as logged:
            event_id = self.outbox.emit(DOMAIN, "s1", completed())
        self.assertIsNotNone(event_id)
        self.assertEqual(self.outbox.stats["memory_only"], 1)
        self.assertEqual([e.row_id is None for e in seen], [False, True])
        self.assertEqual(json.loads(seen[1].body)["sequence"], 1)
        self.assertTrue(any(e.get("event_id") == event_id for e in logged))

    def test_sequence_continues_after_reopen(self) -> None:
        """
        Sequence numbers continue across a reopen of the database.
        """
        self.outbox.emit(DOMAIN, "s1", started())
        self.outbox.close()
        again = self.open_outbox()
        again.emit(DOMAIN, "s1", completed())
        self.assertEqual([r[2] for r in self.rows()], [1, 2])

    def test_listener_errors_contained(self) -> None:
        """
        A failing listener does not make C{emit} raise.
        """

        def broken(event: Any) -> None:
            raise RuntimeError("listener")

        self.outbox.add_listener(broken)
        with capturedLogs():
            self.assertIsNotNone(self.outbox.emit(DOMAIN, "s1", started()))
        self.flushLoggedErrors(RuntimeError)


class DelivererTests(_Base):
    """
    L{EventDeliverer}: ordered, signed, retried delivery.
    """

    def setUp(self) -> None:
        super().setUp()
        self.times: list[float] = []
        original = self.recorder.render_POST

        def timed(request: Request) -> bytes | int:
            self.times.append(self.clock.seconds())
            return original(request)

        self.recorder.render_POST = timed  # type: ignore[method-assign]

    def test_delivers_signed_json(self) -> None:
        """
        An emitted event is POSTed to C{{callback_url}/events} as JSON with
        Standard Webhooks headers that an independent verifier accepts, and
        marked delivered.
        """
        d = self.deliverer()
        d.start()
        payload = started()
        self.outbox.emit(DOMAIN, "s1", payload)
        self.assertEqual(self.recorder.requests, [], "emit never sends synchronously")
        self.pump()
        [request] = self.recorder.requests
        self.assertEqual(request.path, "/events")
        self.assertEqual(request.json, dict(payload, sequence=1))
        self.assertTrue(request.headers["content-type"].startswith("application/json"))
        self.assertEqual(request.headers["webhook-id"], payload["eventId"])
        self.assertEqual(request.headers["webhook-timestamp"], str(int(START)))
        self.assertTrue(independent_signature_ok(SECRET, request.headers, request.body))
        self.assertEqual(d.stats["delivered"], 1)
        self.assertEqual(self.outbox.counts(), {"pending": 0, "delivered": 1, "dead": 0})
        self.assertEqual(d.pending, 0)

    def test_order_per_session(self) -> None:
        """
        An event is not sent before the previous one of its session was
        delivered; other sessions are not held up.
        """
        self.recorder.script.extend([(500, {}, b""), (200, {}, b"")])
        d = self.deliverer()
        d.start()
        self.outbox.emit(DOMAIN, "s1", started("s1"))
        self.outbox.emit(DOMAIN, "s1", completed("s1"))
        self.outbox.emit(DOMAIN, "s2", started("s2"))
        self.pump()
        self.assertEqual(self.recorder.events(), ["SESSIONSTARTED:s1", "SESSIONSTARTED:s2"])
        self.advance_to(1)
        self.assertEqual(
            self.recorder.events(),
            ["SESSIONSTARTED:s1", "SESSIONSTARTED:s2", "SESSIONSTARTED:s1", "SESSIONCOMPLETED:s1"],
        )
        self.assertEqual(d.stats["delivered"], 3)

    def test_backoff_doubles_to_cap(self) -> None:
        """
        Retries follow 1, 2, 4, 8 ... seconds, capped at C{backoff_max}.
        """
        self.recorder.default = (503, {}, b"")
        d = self.deliverer(backoff_max=10.0)
        d.start()
        self.outbox.emit(DOMAIN, "s1", started())
        for t in (0, 1, 3, 7, 15, 25, 35):
            self.advance_to(t)
        self.assertEqual(self.attempt_times(), [0, 1, 3, 7, 15, 25, 35])
        self.assertEqual(d.stats["retried"], 7)
        self.assertEqual(d.stats["delivered"], 0)

    def test_jitter_shortens(self) -> None:
        """
        Jitter shortens a delay by up to C{backoff_jitter} of it.
        """
        self.recorder.script.extend([(500, {}, b""), (500, {}, b"")])
        d = self.deliverer(random=lambda: 1.0, backoff_jitter=0.5)
        d.start()
        self.outbox.emit(DOMAIN, "s1", started())
        self.advance_to(0.5)
        self.advance_to(1.5)
        self.advance_to(5)
        self.assertEqual(self.attempt_times(), [0, 0.5, 1.5])

    def test_retry_after_seconds(self) -> None:
        """
        A C{Retry-After} in seconds replaces the back-off.
        """
        self.recorder.script.append((429, {"Retry-After": "30"}, b""))
        d = self.deliverer()
        d.start()
        self.outbox.emit(DOMAIN, "s1", started())
        self.advance_to(29.9)
        self.assertEqual(len(self.recorder.requests), 1)
        self.advance_to(30)
        self.assertEqual(self.attempt_times(), [0, 30])
        self.assertEqual(d.stats["delivered"], 1)

    def test_retry_after_date(self) -> None:
        """
        A C{Retry-After} HTTP date is honoured.
        """
        self.recorder.script.append((503, {"Retry-After": formatdate(START + 120, usegmt=True)}, b""))
        d = self.deliverer()
        d.start()
        self.outbox.emit(DOMAIN, "s1", started())
        self.advance_to(119)
        self.assertEqual(len(self.recorder.requests), 1)
        self.advance_to(120)
        self.assertEqual(self.attempt_times(), [0, 120])

    def test_retry_after_beyond_deadline(self) -> None:
        """
        A C{Retry-After} beyond C{retry_for} gives the event up at once.
        """
        self.recorder.script.append((503, {"Retry-After": "3600"}, b""))
        d = self.deliverer(retry_for=60.0)
        d.start()
        with capturedLogs():
            self.outbox.emit(DOMAIN, "s1", started())
            self.pump()
        self.assertEqual(d.stats["dead"], 1)

    def test_give_up_after_retry_for(self) -> None:
        """
        Failures until C{retry_for} after creation: the last try is at the
        deadline, then the event is marked dead, logged at error level and
        counted, and the session's next event is sent.
        """
        self.recorder.script.extend([(500, {}, b"")] * 5)
        d = self.deliverer(retry_for=10.0)
        d.start()
        first = started()
        self.outbox.emit(DOMAIN, "s1", first)
        self.outbox.emit(DOMAIN, "s1", completed())
        with capturedLogs() as logged:
            self.advance_to(10)
        self.assertEqual(self.attempt_times(), [0, 1, 3, 7, 10, 10])
        self.assertEqual(self.recorder.events()[-1], "SESSIONCOMPLETED:s1")
        self.assertEqual(d.stats["dead"], 1)
        self.assertEqual(d.stats["delivered"], 1)
        self.assertEqual(self.outbox.counts(), {"pending": 0, "delivered": 1, "dead": 1})
        [given_up] = [e for e in logged if e["log_level"].name == "error"]
        self.assertEqual(given_up["event_id"], first["eventId"])
        self.assertEqual(given_up["attempts"], 5)
        self.assertIn("HTTP 500", formatEvent(given_up))

    def test_old_event_gets_one_attempt(self) -> None:
        """
        An event found after a restart gets one attempt even if C{retry_for}
        has passed; if it fails, it is given up.
        """
        self.outbox.emit(DOMAIN, "s1", started())
        self.clock.advance(100)
        self.recorder.default = (500, {}, b"")
        d = self.deliverer(retry_for=10.0)
        with capturedLogs():
            d.start()
            self.pump()
        self.assertEqual(len(self.recorder.requests), 1)
        self.assertEqual(d.stats["dead"], 1)

    def test_gone_disables_endpoint(self) -> None:
        """
        410 disables the tenant's endpoint: events are kept, not sent, not
        given up; other tenants go on; a changed C{callback_url} enables it
        again.
        """
        self.recorder.script.append((410, {}, b""))
        d = self.deliverer(retry_for=10.0)
        d.start()
        with capturedLogs() as logged:
            self.outbox.emit(DOMAIN, "s1", started("s1"))
            self.pump()
            self.outbox.emit(DOMAIN, "s2", started("s2"))
            self.outbox.emit(OTHER, "s3", started("s3"))
            self.advance_to(1000)
        self.assertEqual(self.recorder.events(), ["SESSIONSTARTED:s1", "SESSIONSTARTED:s3"])
        self.assertEqual(d.stats["disabled"], 1)
        self.assertEqual(d.stats["dead"], 0)
        self.assertEqual(d.disabled(), {DOMAIN: "http://app.example"})
        self.assertTrue(any(e.get("status") == 410 for e in logged))
        self.assertEqual(self.successResultOf(d.drain(1)), True)
        d.update_tenants({DOMAIN: tenant(url="http://new.example"), OTHER: tenant(OTHER, "http://other.example")})
        self.pump()
        self.assertEqual(self.recorder.events()[2:], ["SESSIONSTARTED:s1", "SESSIONSTARTED:s2"])
        self.assertEqual(d.disabled(), {})

    def disabled_by_410(self) -> EventDeliverer:
        """
        @return: a started deliverer whose endpoint a 410 to its first
            event (C{s1}) disabled.
        """
        self.recorder.script.append((410, {}, b""))
        first = self.deliverer()
        first.start()
        with capturedLogs():
            self.outbox.emit(DOMAIN, "s1", started())
            self.pump()
        return first

    def test_disabled_survives_restart(self) -> None:
        """
        A 410 is remembered across a restart while the C{callback_url} is
        the same, and forgotten when it changed.
        """
        first = self.disabled_by_410()
        first.stop()
        second = self.deliverer()
        with capturedLogs():
            second.start()
            self.pump()
        self.assertEqual(len(self.recorder.requests), 1)
        second.stop()
        third = self.deliverer(tenants={DOMAIN: tenant(url="http://moved.example")})
        third.start()
        self.pump()
        self.assertEqual(len(self.recorder.requests), 2)
        self.assertEqual(third.stats["delivered"], 1)

    def test_disabled_state_visible_after_restart(self) -> None:
        """
        A restart with the same settings keeps the endpoint disabled, shows
        it in C{stats["endpoints_disabled"]} and logs one line naming the
        tenant; the secret is stored only as a digest.
        """
        first = self.disabled_by_410()
        self.assertEqual(first.stats["endpoints_disabled"], 1)
        first.stop()
        second = self.deliverer()
        self.assertEqual(second.stats["endpoints_disabled"], 0)
        with capturedLogs() as logged:
            second.start()
            self.pump()
        self.assertEqual(second.stats["endpoints_disabled"], 1)
        self.assertEqual(second.disabled(), {DOMAIN: "http://app.example"})
        lines = [formatEvent(e) for e in logged if e.get("tenant") == DOMAIN]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("customer.example.com is disabled", lines[0])
        self.assertEqual(len(self.recorder.requests), 1)
        rows = self.outbox._conn().execute("SELECT * FROM disabled_endpoints").fetchall()
        self.assertNotIn(SECRET[len("whsec_") :], repr(rows))
        self.assertEqual(self.outbox.disabled_endpoints(), {DOMAIN: ("http://app.example", secret_digest(SECRET))})

    def test_changed_secret_enables_after_restart(self) -> None:
        """
        A restart with another C{signing_secret} (same C{callback_url})
        enables the endpoint again and delivers the held events.
        """
        first = self.disabled_by_410()
        first.stop()
        rotated = ROTATED
        second = self.deliverer(tenants={DOMAIN: rotated})
        with capturedLogs() as logged:
            second.start()
            self.pump()
        self.assertEqual(second.stats["endpoints_disabled"], 0)
        self.assertEqual(second.stats["delivered"], 1)
        self.assertEqual(self.outbox.disabled_endpoints(), {})
        self.assertTrue(any("enabled again" in formatEvent(e) for e in logged))

    def test_changed_secret_enables_on_update(self) -> None:
        """
        L{EventDeliverer.update_tenants} with another C{signing_secret}
        enables the endpoint again; with the same settings it stays
        disabled.
        """
        self.recorder.script.append((410, {}, b""))
        d = self.deliverer()
        d.start()
        with capturedLogs():
            self.outbox.emit(DOMAIN, "s1", started())
            self.pump()
            d.update_tenants({DOMAIN: tenant()})
            self.pump()
        self.assertEqual(d.stats["endpoints_disabled"], 1)
        rotated = ROTATED
        with capturedLogs():
            d.update_tenants({DOMAIN: rotated})
            self.pump()
        self.assertEqual((d.stats["endpoints_disabled"], d.stats["delivered"]), (0, 1))

    def test_version_1_database(self) -> None:
        """
        A database of schema version 1 with a disabled endpoint is migrated;
        without a stored secret digest only the C{callback_url} is compared.
        """
        self.outbox.close()
        os.remove(self.path)
        db = sqlite3.connect(self.path)
        for statement in webhooks._SCHEMA[1]:
            db.execute(statement)
        db.execute("PRAGMA user_version=1")
        db.execute("INSERT INTO disabled_endpoints VALUES (?, ?, ?)", (DOMAIN, "http://app.example", START))
        db.commit()
        db.close()
        outbox = self.open_outbox()
        self.assertEqual(outbox.schema_version, 2)
        self.assertEqual(outbox.disabled_endpoints(), {DOMAIN: ("http://app.example", None)})
        d = self.deliverer(outbox)
        with capturedLogs():
            d.start()
        self.assertEqual(d.disabled(), {DOMAIN: "http://app.example"})

    def test_stale_connection_retried_at_once(self) -> None:
        """
        A request that failed because its pooled connection was closed
        (not sent; or closed before any answer byte) is sent again at once,
        once: delivered on its first scheduled attempt, nothing retried.
        """
        for failure in (
            RequestNotSent(),
            closed_before_answer(),
            RequestTransmissionFailed([Failure(ConnectionLost("reset"))]),
        ):
            with self.subTest(failure=type(failure).__name__):
                client = StaleClient(self.stub, [failure])
                d = self.deliverer(http_client=client)
                d.start()
                self.outbox.emit(DOMAIN, "s-" + type(failure).__name__, started())
                self.pump()
                d.stop()
                self.assertEqual(client.posts, 2)
                self.assertEqual(
                    (d.stats["delivered"], d.stats["attempts"], d.stats["retried"], d.stats["stale_connection_retries"]),
                    (1, 1, 0, 1),
                )

    def test_stale_connection_retried_once_only(self) -> None:
        """
        Two stale-connection failures in a row, or a connection closed by
        our own cancellation, take the ordinary back-off.
        """
        client = StaleClient(self.stub, [RequestNotSent(), closed_before_answer()])
        d = self.deliverer(http_client=client)
        d.start()
        with capturedLogs():
            self.outbox.emit(DOMAIN, "s1", started())
            self.pump()
        self.assertEqual((client.posts, d.stats["retried"], d.stats["delivered"]), (2, 1, 0))
        self.advance_to(1.0)
        self.assertEqual((client.posts, d.stats["delivered"]), (3, 1))
        cancelled = ResponseNeverReceived([Failure(defer.CancelledError()), Failure(ConnectionDone("closed"))])
        client = StaleClient(self.stub, [cancelled])
        other = self.deliverer(http_client=client)
        other.start()
        with capturedLogs():
            self.outbox.emit(DOMAIN, "s2", started())
            self.pump()
        self.assertEqual((client.posts, other.stats["retried"], other.stats["stale_connection_retries"]), (1, 1, 0))

    def test_connection_error_retried(self) -> None:
        """
        A refused connection is retried with back-off.
        """
        client = FlakyClient(self.stub, failures=2)
        d = self.deliverer(http_client=client)
        d.start()
        with capturedLogs() as logged:
            self.outbox.emit(DOMAIN, "s1", started())
            self.advance_to(3)
        self.assertEqual(client.refused, 2)
        self.assertEqual(d.stats["delivered"], 1)
        self.assertTrue(any("connection" in (e.get("reason") or "") for e in logged))

    def test_timeout_retried(self) -> None:
        """
        An application that never answers times out after
        C{request_timeout} (on the injected clock) and the event is retried.
        """
        self.recorder.script.append(None)
        d = self.deliverer(request_timeout=5.0)
        d.start()
        with capturedLogs() as logged:
            self.outbox.emit(DOMAIN, "s1", started())
            self.advance_to(4.9)
            self.assertEqual(d.stats["retried"], 0)
            self.advance_to(6)
        self.assertEqual(self.attempt_times(), [0, 6])
        self.assertEqual(d.stats["delivered"], 1)
        self.assertTrue(any(e.get("reason") == "timeout after 5 s" for e in logged))

    def test_redirect_not_followed(self) -> None:
        """
        A 3xx is a failed attempt, not followed.
        """
        self.recorder.script.append((302, {"Location": "http://elsewhere.example/"}, b""))
        d = self.deliverer()
        d.start()
        self.outbox.emit(DOMAIN, "s1", started())
        self.pump()
        self.assertEqual(len(self.recorder.requests), 1)
        self.assertEqual(d.stats["retried"], 1)

    def test_persisted_event_delivered_after_reopen(self) -> None:
        """
        An event emitted, then the outbox closed and reopened from the same
        file (a restart), is delivered by a deliverer on the new outbox.
        """
        payload = started()
        self.outbox.emit(DOMAIN, "s1", payload)
        self.outbox.close()
        reopened = self.open_outbox()
        d = self.deliverer(outbox=reopened)
        d.start()
        self.pump()
        [request] = self.recorder.requests
        self.assertEqual(request.json["eventId"], payload["eventId"])
        self.assertEqual(reopened.counts()["delivered"], 1)

    def test_backoff_state_survives_restart(self) -> None:
        """
        The attempt count and next attempt time are stored: after a restart
        the event waits for its next attempt.
        """
        self.recorder.script.extend([(500, {}, b""), (500, {}, b"")])
        first = self.deliverer()
        first.start()
        self.outbox.emit(DOMAIN, "s1", started())
        self.advance_to(1)
        first.stop()
        self.outbox.close()
        second = self.deliverer(outbox=self.open_outbox())
        second.start()
        self.advance_to(2.9)
        self.assertEqual(len(self.recorder.requests), 2)
        self.advance_to(3)
        self.assertEqual(self.attempt_times(), [0, 1, 3])
        self.assertEqual(second.stats["delivered"], 1)

    def test_stop_cancels_timers(self) -> None:
        """
        C{stop} leaves no timer on the reactor and no request in flight is
        acted upon.
        """
        self.recorder.script.extend([(500, {}, b""), None])
        d = self.deliverer()
        d.start()
        self.outbox.emit(DOMAIN, "s1", started())
        self.outbox.emit(DOMAIN, "s2", started("s2"))
        self.pump()
        d.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.outbox.emit(DOMAIN, "s3", started("s3"))
        self.pump()
        self.assertEqual(len(self.recorder.requests), 2)
        self.assertEqual(self.outbox.counts()["pending"], 3)

    def test_unknown_tenant_held(self) -> None:
        """
        Events of a tenant no longer configured are kept, not sent and not
        given up.
        """
        d = self.deliverer(tenants={}, retry_for=1.0)
        d.start()
        with capturedLogs():
            self.outbox.emit(DOMAIN, "s1", started())
            self.advance_to(100)
        self.assertEqual(self.recorder.requests, [])
        self.assertEqual(d.stats["dead"], 0)
        self.assertEqual(self.outbox.counts()["pending"], 1)

    def test_max_in_flight(self) -> None:
        """
        At most C{max_in_flight} requests are in flight; waiting sessions go
        when one finishes.
        """
        self.recorder.script.append(None)
        d = self.deliverer(max_in_flight=1, request_timeout=5.0)
        d.start()
        with capturedLogs():
            self.outbox.emit(DOMAIN, "s1", started("s1"))
            self.outbox.emit(DOMAIN, "s2", started("s2"))
            self.pump()
            self.assertEqual(len(self.recorder.requests), 1)
            self.advance_to(5)
        self.assertEqual(self.recorder.events(), ["SESSIONSTARTED:s1", "SESSIONSTARTED:s2"])

    def test_memory_only_event_delivered(self) -> None:
        """
        An event the database could not store is still delivered.
        """
        d = self.deliverer()
        d.start()
        self.outbox.close()
        with capturedLogs():
            self.outbox.emit(DOMAIN, "s1", started())
        self.pump()
        self.assertEqual(d.stats["delivered"], 1)

    def test_drain(self) -> None:
        """
        C{drain} fires C{True} once everything is delivered, C{False} when
        its timeout expires first.
        """
        d = self.deliverer()
        d.start()
        self.assertTrue(self.successResultOf(d.drain(1)))
        self.outbox.emit(DOMAIN, "s1", started())
        waiting = d.drain(1)
        self.assertNoResult(waiting)
        self.pump()
        self.assertTrue(self.successResultOf(waiting))
        self.recorder.script.append(None)
        self.outbox.emit(DOMAIN, "s2", started("s2"))
        self.pump()
        late = d.drain(1)
        self.clock.advance(1)
        self.assertFalse(self.successResultOf(late))

    def test_service(self) -> None:
        """
        The C{webhooks} service starts the deliverer and, on stop, drains,
        stops it and closes the outbox.
        """
        d = self.deliverer()
        svc = EventDeliveryService(d, self.outbox, drain_timeout=1.0)
        self.assertEqual(svc.name, "webhooks")
        svc.startService()
        self.assertTrue(d.running)
        self.outbox.emit(DOMAIN, "s1", started())
        stopping = svc.stopService()
        self.pump()
        self.successResultOf(stopping)
        self.assertFalse(d.running)
        self.assertEqual(len(self.recorder.requests), 1)

    def test_secret_never_logged(self) -> None:
        """
        No log event of a failing delivery contains the signing secret or
        its key.
        """
        self.recorder.default = (500, {}, b"")
        d = self.deliverer(retry_for=5.0)
        d.start()
        with capturedLogs() as logged:
            self.outbox.emit(DOMAIN, "s1", started())
            self.advance_to(10)
        self.assertTrue(logged)
        key_b64 = base64.b64encode(decode_secret(SECRET)).decode()
        for event in logged:
            text = formatEvent(event) + repr(event)
            self.assertNotIn(SECRET[len("whsec_") :], text)
            self.assertNotIn(key_b64, text)


class NewCallTests(_Base):
    """
    L{NewCallClient}: the signed C{newCall} request.
    """

    def call(self, timeout: float = 5.0, client: Any = None, payload: Any = None) -> defer.Deferred[NewCallResult]:
        self.client = NewCallClient(self.clock, client or self.stub)
        return self.client.post_new_call(tenant(), payload or {"sessionId": "s1", "callId": "c@src"}, timeout)

    def test_answer(self) -> None:
        """
        A 2xx JSON object is the answer; the request is a signed JSON POST
        to C{{callback_url}/newCall}.
        """
        self.recorder.script.append((200, {"Content-Type": "application/json"}, b'{"startSIPRecForward": {"uri": "sip:x@y"}}'))
        result = self.successResultOf(self.call())
        self.assertEqual(result, NewCallResult({"startSIPRecForward": {"uri": "sip:x@y"}}, None, 200))
        self.assertTrue(result.ok)
        [request] = self.recorder.requests
        self.assertEqual(request.path, "/newCall")
        self.assertEqual(request.json, {"sessionId": "s1", "callId": "c@src"})
        self.assertTrue(request.headers["webhook-id"].startswith("msg_"))
        self.assertTrue(independent_signature_ok(SECRET, request.headers, request.body))
        self.assertEqual(self.client.stats["answered"], 1)

    def test_empty_answer(self) -> None:
        """
        An empty 2xx body (e.g. 204) is an empty answer: nothing to start.
        """
        self.recorder.script.append((204, {}, b""))
        self.assertEqual(self.successResultOf(self.call()).answer, {})

    def test_timeout(self) -> None:
        """
        No answer within the timeout (on the injected clock) fires a result
        with no answer and the reason, and cancels the request.
        """
        self.recorder.script.append(None)
        with capturedLogs() as logged:
            d = self.call(timeout=2.0)
            self.clock.advance(1.9)
            self.assertNoResult(d)
            self.clock.advance(0.1)
            result = self.successResultOf(d)
        self.assertEqual((result.answer, result.error), (None, "timeout after 2 s"))
        self.assertFalse(result.ok)
        self.assertEqual(self.client.stats["timeout"], 1)
        self.assertTrue(any(e.get("reason") == "timeout after 2 s" and e.get("session_id") == "s1" for e in logged))
        self.stub.flush()
        self.assertEqual(self.recorder.lost, 1, "the request's connection was aborted")

    def test_stale_connection(self) -> None:
        """
        A newCall whose pooled connection turned out closed is sent again at
        once (same request) and answered.
        """
        self.recorder.script.append((200, {}, b'{"a": 1}'))
        result = self.successResultOf(self.call(client=StaleClient(self.stub, [closed_before_answer()])))
        self.assertEqual(result.answer, {"a": 1})
        self.assertEqual((self.client.stats["answered"], self.client.stats["stale_connection_retries"]), (1, 1))

    def test_lone_surrogate_in_request(self) -> None:
        """
        A newCall payload holding a lone surrogate is sent (with U+FFFD),
        not lost as an internal error.
        """
        self.recorder.script.append((200, {}, b"{}"))
        result = self.successResultOf(self.call(payload={"sessionId": "s1", "from": "Jos\udce9"}))
        self.assertTrue(result.ok)
        self.assertEqual(self.recorder.requests[0].json["from"], "Jos\ufffd")

    def test_deep_answer(self) -> None:
        """
        An answer nested too deeply for the JSON parser is "not JSON", not
        an internal error.
        """
        self.recorder.script.append((200, {}, b"[" * 100000 + b"]" * 100000))
        result = self.successResultOf(self.call())
        self.assertEqual(result.error, "body is not JSON: nested too deeply")

    def test_bad_answers(self) -> None:
        """
        Non-2xx, non-JSON, non-object and oversized answers give no answer
        and a reason.
        """
        cases = [
            ((500, {}, b"{}"), "HTTP 500"),
            ((200, {}, b"<html>"), "body is not JSON"),
            ((200, {}, b"[1, 2]"), "body is not a JSON object"),
            ((200, {}, b"\xff\xfe"), "body is not JSON"),
            ((200, {}, b"{" + b" " * (2 * 1024 * 1024) + b"}"), "body unreadable: body larger than 1048576 bytes"),
        ]
        for answer, reason in cases:
            self.recorder.script.append(answer)
            with capturedLogs():
                result = self.successResultOf(self.call())
            self.assertEqual((result.answer, result.error), (None, reason))

    def test_connection_failure(self) -> None:
        """
        A refused connection gives no answer and says so.
        """
        with capturedLogs():
            result = self.successResultOf(self.call(client=FlakyClient(self.stub, failures=1)))
        self.assertIsNone(result.answer)
        self.assertTrue(result.error.startswith("connection failed"), result.error)

    def test_never_raises(self) -> None:
        """
        A client that raises, or a payload that is not JSON, still gives a
        result, never an exception.
        """
        with capturedLogs():
            result = self.successResultOf(self.call(client=RaisingClient()))
            self.assertEqual(result.error, "RuntimeError: boom")
            result = self.successResultOf(self.call(payload={"sessionId": "s1", "x": object()}))
            self.assertEqual(result.error, "internal error: TypeError")
        self.flushLoggedErrors(TypeError)

    def test_cancel(self) -> None:
        """
        Cancelling the result (the session ended first) cancels the request.
        """
        self.recorder.script.append(None)
        with capturedLogs():
            d = self.call()
            d.cancel()
            result = self.successResultOf(d)
        self.assertEqual(result.error, "cancelled")
        self.assertEqual(self.clock.getDelayedCalls(), [])
