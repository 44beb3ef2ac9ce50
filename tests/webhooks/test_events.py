# -*- test-case-name: tests.webhooks.test_events -*-
"""
Tests for L{aiconnect.events}: the event payload builders, and the event
reference C{docs/events.md} (its examples and its verifier).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from aiconnect import events
from aiconnect.webhooks import sign
from tests.webhooks.helpers import DOMAIN, SECRET, START, completed, started

DOCS = Path(__file__).parent.parent.parent / "docs" / "events.md"


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
        ids = [events.new_id("evt_", now=START + i / 1000) for i in range(0, 50)]
        self.assertEqual(ids, sorted(ids))
        self.assertTrue(events.new_id("msg_", now=1700000000.0).startswith("msg_"))

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
        self.assertRaises(ValueError, events.build_event, "SESSIONEXPLODED", "s1", DOMAIN, now=1700000000.0)
        self.assertRaises(ValueError, events.build_event, events.SESSIONSTARTED, "s1", DOMAIN, {"eventId": "x"}, now=1700000000.0)

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
        now=1700000000.0,)
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
            , now=1700000000.0)
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
        now=1700000000.0,)
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
            , now=1700000000.0),
            events.SIPRECFORWARDFAILED: events.siprec_forward_failed(
                "s1", tenant=DOMAIN, forward_id="f", uri="u", reason="r"
            , now=1700000000.0),
            events.SIPRECFORWARDSTOPPED: events.siprec_forward_stopped(
                "s1", tenant=DOMAIN, forward_id="f", uri="u", target="t", stopped_by=events.STOPPED_BY_API
            , now=1700000000.0),
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
