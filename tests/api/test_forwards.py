"""
Tests for the forwarding routes of L{aiconnect.api.routes}
(C{startSIPRecForward}, C{stopSIPRecForward}), the JSON bodies they read
(L{aiconnect.api.jsonio}) and the order validation they share with
newCall answers (L{aiconnect.siprec.orders}).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from aiconnect import events
from aiconnect.api import MAX_BODY
from aiconnect.call import CallState, ForwardAnswered, InboundAcked, InboundEnded
from aiconnect.siprec.orders import OrderError, parse_forward_order
from tests.api.helpers import (
    BAD_ORDER_FIELDS,
    DOMAIN,
    TOKEN,
    UNREPORTABLE_ORDER_FIELDS,
    RecordingForwarder,
    TenantTestCase,
    bearer,
    make_call,
    make_config,
    nested,
)


class StartForwardTests(TenantTestCase):
    """
    Tests for C{POST /{domain}/startsiprecforward}.
    """

    URI = f"sip:aiforward@{DOMAIN}"

    def start(self, token: str = TOKEN, **fields: Any) -> tuple[int, Any, Any]:
        """
        Post a start for C{ses_test1} with C{fields}.
        """
        body = {"sessionId": "ses_test1", **fields}
        return self.client.call("POST", f"/{DOMAIN}/startsiprecforward", token=token, body=body)

    def test_started(self) -> None:
        """
        A valid order answers 200 with a forward id, and the session starts that forward.
        """
        forwarder = RecordingForwarder()
        self.call.leg_factory = forwarder
        code, body, _ = self.start(uri=self.URI, codec="PCMU", sipRecForwardReferenceId={"ticketId": 1})
        self.assertEqual(code, 200)
        self.assertEqual(set(body), {"success", "forwardId"})
        self.assertIs(body["success"], True)
        self.assertEqual([info.forward_id for info in forwarder.started], [body["forwardId"]])
        order = forwarder.started[0].order
        self.assertEqual((order.uri, order.codec, order.reference_id), (self.URI, "PCMU", {"ticketId": 1}))

    def test_full_order(self) -> None:
        """
        The SPEC s3 example (on the TLS trunk) is accepted with every field.
        """
        forwarder = RecordingForwarder()
        self.call.leg_factory = forwarder
        code, body, _ = self.start(
            uri=f"sip:secure@{DOMAIN}",
            codec="PCMU",
            srtp=True,
            caller={"name": "Alice Andersson", "user": "alice", "label": "labelA"},
            calledParty={"name": "Support IVR", "user": "support", "label": "labelB"},
            xHeaders={"X-Correlation-Id": "a3b47c1e", "X-Tenant": "acme-cc"},
            sipRecForwardReferenceId={"ticketId": 98765},
            usePrivateIp=False,
        )
        self.assertEqual(code, 200, body)
        order = forwarder.started[0].order
        self.assertTrue(order.srtp)
        self.assertEqual(order.caller.label, "labelA")
        self.assertEqual(order.called.user, "support")
        self.assertEqual(order.x_headers, (("X-Correlation-Id", "a3b47c1e"), ("X-Tenant", "acme-cc")))

    def test_negotiating_session(self) -> None:
        """
        A session not yet ACKed accepts the order; the forward waits for it.
        """
        call = make_call(self.config, session_id="ses_early", acked=False)
        forwarder = RecordingForwarder()
        call.leg_factory = forwarder
        self.registry.add(call)
        code, body, _ = self.client.call(
            "POST", f"/{DOMAIN}/startsiprecforward", body={"sessionId": "ses_early", "uri": self.URI}
        )
        self.assertEqual(code, 200)
        self.assertEqual(forwarder.started, [])
        self.assertEqual(call.call.forwards[body["forwardId"]].state.value, "pending")
        call.report(InboundAcked)
        self.assertEqual([i.forward_id for i in forwarder.started], [body["forwardId"]])

    def test_without_forwarding(self) -> None:
        """
        Until forwarding exists, the order is accepted and reported as SIPRECFORWARDFAILED.
        """
        code, body, _ = self.start(uri=self.URI)
        self.assertEqual(code, 200)
        failed = self.call.sink.events[-1]
        self.assertEqual(
            (failed["event"], failed["forwardId"], failed["reason"]),
            (events.SIPRECFORWARDFAILED, body["forwardId"], "not implemented"),
        )

    def test_bad_fields(self) -> None:
        """
        Each invalid field of the order answers 400 naming that field.
        """
        for why, fields, field in BAD_ORDER_FIELDS:
            with self.subTest(why):
                self.assertError(self.start(**fields), 400, field)
        self.assertEqual(self.call.call.forwards, {})

    def test_unreportable_orders(self) -> None:
        """
        An order that could not be reported back (a lone surrogate, a
        reference id deeper than 32 levels or over 4 KiB) or that would fail
        later (equal labels) answers 400 naming the field, not 200 or 500.
        """
        for why, fields, field in UNREPORTABLE_ORDER_FIELDS:
            with self.subTest(why):
                self.assertError(self.start(**fields), 400, field)
        self.assertEqual(self.call.call.forwards, {})

    def test_bad_session_id(self) -> None:
        """
        A missing, null, non-string, empty or overlong sessionId answers 400 naming sessionId.
        """
        for value in (None, 5, "", "s" * 257, ["ses_test1"]):
            body: dict[str, Any] = {"uri": self.URI}
            if value is not None:
                body["sessionId"] = value
            with self.subTest(value=value):
                self.assertError(
                    self.client.call("POST", f"/{DOMAIN}/startsiprecforward", body=body), 400, "sessionId"
                )

    def test_bad_body(self) -> None:
        """
        A body that is empty, not JSON, not UTF-8, not an object, or has NaN answers 400 naming body.
        """
        for data in (b"", b"  ", b"{", b"sessionId=ses_test1", b"\xff\xfe{}", b"[]", b'"x"', b"null",
                     b'{"sessionId": NaN}', b"[" * 5000 + b"]" * 5000):
            with self.subTest(data=data[:20]):
                self.assertError(
                    self.client.call("POST", f"/{DOMAIN}/startsiprecforward", data=data), 400, "body"
                )

    def test_duplicate_key(self) -> None:
        """
        A JSON object with a key twice answers 400 naming the key.
        """
        data = b'{"sessionId": "ses_test1", "uri": "sip:a@b", "uri": "sip:aiforward@customer.example.com"}'
        self.assertError(self.client.call("POST", f"/{DOMAIN}/startsiprecforward", data=data), 400, "uri")

    def test_any_content_type(self) -> None:
        """
        The Content-Type is not checked: JSON sent as text/plain works.
        """
        response, body = self.client.request(
            "POST",
            f"/{DOMAIN}/startsiprecforward",
            headers={**bearer(TOKEN), "Content-Type": "text/plain"},
            data=json.dumps({"sessionId": "ses_test1", "uri": self.URI}).encode(),
        )
        self.assertEqual(response.code, 200, body)

    def test_too_large(self) -> None:
        """
        A body larger than 64 KiB answers 413.
        """
        data = json.dumps({"sessionId": "ses_test1", "uri": self.URI, "pad": "x" * MAX_BODY}).encode()
        self.assertError(self.client.call("POST", f"/{DOMAIN}/startsiprecforward", data=data), 413, "body")
        self.assertEqual(self.call.call.forwards, {})

    def test_at_limit(self) -> None:
        """
        A body of exactly 64 KiB is read (and judged on its content).
        """
        body = {"sessionId": "ses_test1", "uri": self.URI, "xHeaders": {"X-A": ""}}
        data = json.dumps(body).encode()
        data = data[:-1] + b" " * (MAX_BODY - len(data)) + b"}"
        self.assertEqual(len(data), MAX_BODY)
        self.assertEqual(self.client.call("POST", f"/{DOMAIN}/startsiprecforward", data=data)[0], 200)

    def test_unknown_session(self) -> None:
        """
        A valid order for an unknown session answers 404 naming sessionId.
        """
        body = {"sessionId": "ses_nope", "uri": self.URI}
        self.assertError(self.client.call("POST", f"/{DOMAIN}/startsiprecforward", body=body), 404, "sessionId")

    def test_other_tenants_session(self) -> None:
        """
        A tenant cannot order a forward of another tenant's session: 404, and nothing is started.
        """
        body = {"sessionId": "ses_other", "uri": self.URI}
        self.assertError(self.client.call("POST", f"/{DOMAIN}/startsiprecforward", body=body), 404, "sessionId")
        self.assertEqual(self.other_call.call.forwards, {})

    def test_ended_session(self) -> None:
        """
        A session that has ended answers 409 and gets no forward.
        """
        self.call.report(InboundEnded, reason="bye")
        self.assertIs(self.call.state, CallState.ENDED)
        self.assertError(self.start(uri=self.URI), 409, "sessionId")
        self.assertEqual(self.call.call.forwards, {})

    def test_terminating_session(self) -> None:
        """
        A session that is ending (waiting for forwards to close) answers 409.
        """
        self.call.call.state = CallState.TERMINATING
        self.assertError(self.start(uri=self.URI), 409, "sessionId")


class StopForwardTests(TenantTestCase):
    """
    Tests for C{POST /{domain}/stopsiprecforward}.
    """

    URI = f"sip:aiforward@{DOMAIN}"

    def setUp(self) -> None:
        """
        Let the session's forwards stay trying.
        """
        super().setUp()
        self.forwarder = RecordingForwarder()
        self.call.leg_factory = self.forwarder

    def start(self) -> str:
        """
        @return: The id of a newly started forward.
        """
        code, body, _ = self.client.call(
            "POST", f"/{DOMAIN}/startsiprecforward", body={"sessionId": "ses_test1", "uri": self.URI}
        )
        self.assertEqual(code, 200)
        forward_id: str = body["forwardId"]
        return forward_id

    def stop(self, **fields: Any) -> tuple[int, Any, Any]:
        """
        Post a stop for C{ses_test1}.
        """
        return self.client.call(
            "POST", f"/{DOMAIN}/stopsiprecforward", body={"sessionId": "ses_test1", **fields}
        )

    def test_start_then_stop_one(self) -> None:
        """
        Stopping an established forward by id returns its id and emits SIPRECFORWARDSTOPPED by the API.
        """
        first, second = self.start(), self.start()
        self.call.report(ForwardAnswered, forward_id=first, target="sip:127.0.0.1:5070;transport=udp", codec="PCMA", srtp=False)
        code, body, _ = self.stop(forwardId=first)
        self.assertEqual((code, body), (200, {"success": True, "stopped": [first]}))
        stopped = self.call.sink.events[-1]
        self.assertEqual(
            (stopped["event"], stopped["forwardId"], stopped["stoppedBy"]),
            (events.SIPRECFORWARDSTOPPED, first, events.STOPPED_BY_API),
        )
        self.assertEqual(self.call.call.forwards[second].state.value, "trying")

    def test_stop_all(self) -> None:
        """
        Without forwardId every running forward is stopped and listed; a second stop lists none.
        """
        ids = [self.start(), self.start()]
        code, body, _ = self.stop()
        self.assertEqual((code, sorted(body["stopped"])), (200, sorted(ids)))
        self.assertEqual(self.stop(forwardId=None)[1], {"success": True, "stopped": []})

    def test_unknown_forward(self) -> None:
        """
        An unknown forwardId answers 404 naming forwardId.
        """
        self.start()
        self.assertError(self.stop(forwardId="fwd_nope"), 404, "forwardId")

    def test_other_sessions_forward(self) -> None:
        """
        A forward of another session of the same tenant is unknown to this one.
        """
        call = make_call(self.config, session_id="ses_two")
        call.leg_factory = RecordingForwarder()
        self.registry.add(call)
        code, body, _ = self.client.call(
            "POST", f"/{DOMAIN}/startsiprecforward", body={"sessionId": "ses_two", "uri": self.URI}
        )
        self.assertError(self.stop(forwardId=body["forwardId"]), 404, "forwardId")

    def test_bad_input(self) -> None:
        """
        A bad forwardId, an unknown field or a missing sessionId answers 400 naming it.
        """
        self.assertError(self.stop(forwardId=5), 400, "forwardId")
        self.assertError(self.stop(forwardId=""), 400, "forwardId")
        self.assertError(self.stop(all=True), 400, "all")
        self.assertError(
            self.client.call("POST", f"/{DOMAIN}/stopsiprecforward", body={"forwardId": "x"}), 400, "sessionId"
        )

    def test_lone_surrogates(self) -> None:
        """
        A C{"\\ud800"} escape anywhere in a body (a key, a value, a
        duplicated key) answers 400 with an encodable field, never 500.
        """
        self.assertError(self.stop(**{"\ud800": 1}), 400, "\ufffd")
        self.assertError(self.stop(forwardId="\udce9"), 400, "forwardId")
        data = b'{"sessionId": "ses_test1", "\\udce9": 1, "\\udce9": 2}'
        self.assertError(self.client.call("POST", f"/{DOMAIN}/stopsiprecforward", data=data), 400, "\ufffd")

    def test_unknown_session(self) -> None:
        """
        An unknown or foreign session answers 404 naming sessionId.
        """
        for session_id in ("ses_nope", "ses_other"):
            self.assertError(
                self.client.call("POST", f"/{DOMAIN}/stopsiprecforward", body={"sessionId": session_id}),
                404,
                "sessionId",
            )


class OrderValidationTests(SynchronousTestCase):
    """
    L{parse_forward_order} (shared by the REST API and newCall answers)
    refuses what could not be reported back as JSON.
    """

    URI = f"sip:aiforward@{DOMAIN}"

    def setUp(self) -> None:
        """
        The first tenant of the test configuration.
        """
        self.tenant = make_config(self, with_jwt=False).tenant_for_domain(DOMAIN)

    def refused(self, fields: dict[str, Any], prefix: str = "") -> OrderError:
        """
        @return: The error C{fields} are refused with.
        """
        with self.assertRaises(OrderError) as caught:
            parse_forward_order({"uri": self.URI, **fields}, self.tenant, prefix=prefix)
        error = caught.exception
        str(error).encode("utf-8")  # always reportable
        return error

    def test_reference_depth(self) -> None:
        """
        A reference id of 32 levels is accepted and echoed as given; 33 levels
        (or 600) is refused naming the too-deep place.
        """
        order = parse_forward_order({"uri": self.URI, "sipRecForwardReferenceId": nested(32)}, self.tenant)
        self.assertEqual(order.reference_id, nested(32))
        self.assertEqual(events.reportable_reference(order.reference_id), nested(32))
        for depth in (33, 600):
            with self.subTest(depth=depth):
                error = self.refused({"sipRecForwardReferenceId": nested(depth)}, prefix="startSIPRecForward[1]")
                self.assertEqual(error.field, "startSIPRecForward[1].sipRecForwardReferenceId" + ".a" * 32)
                self.assertIn("deeper than 32", error.message)
                self.assertIsNone(events.reportable_reference(nested(depth)))

    def test_reference_size(self) -> None:
        """
        A reference id of 4096 bytes of compact UTF-8 JSON is accepted; one
        byte more is refused.
        """
        at_limit = {"t": "\u00e9" * ((4096 - len('{"t":""}')) // 2)}
        self.assertEqual(len(json.dumps(at_limit, separators=(",", ":"), ensure_ascii=False).encode()), 4096)
        parse_forward_order({"uri": self.URI, "sipRecForwardReferenceId": at_limit}, self.tenant)
        over = {"t": at_limit["t"] + "x"}
        error = self.refused({"sipRecForwardReferenceId": over})
        self.assertEqual(error.field, "sipRecForwardReferenceId")
        self.assertIn("4096 bytes", error.message)

    def test_lone_surrogates(self) -> None:
        """
        A lone surrogate in the reference id (value, key, inside a list), an
        X- header value or a party name is refused naming the place; a
        surrogate in a field name is shown as U+FFFD.
        """
        cases = [
            ({"sipRecForwardReferenceId": {"a": ["ok", "\ud800"]}}, "sipRecForwardReferenceId.a[1]"),
            ({"sipRecForwardReferenceId": {"k\udcff": 1}}, "sipRecForwardReferenceId.k\ufffd"),
            ({"xHeaders": {"X-Agent": "M\udcfcller"}}, "xHeaders.X-Agent"),
            ({"calledParty": {"name": "Jos\udce9"}}, "calledParty.name"),
            ({"x\ud800": 1}, "x\ufffd"),
            ({"xHeaders": {"X-\ud800": "v"}}, "xHeaders.X-\ufffd"),
        ]
        for fields, field in cases:
            with self.subTest(field=field):
                self.assertEqual(self.refused(fields).field, field)

    def test_duplicate_labels(self) -> None:
        """
        The calling and the called party cannot be given the same label;
        different labels, or one label only, are fine.
        """
        error = self.refused({"caller": {"label": "L"}, "calledParty": {"label": "L"}})
        self.assertEqual(error.field, "calledParty.label")
        parse_forward_order({"uri": self.URI, "caller": {"label": "L"}, "callee": {"label": "M"}}, self.tenant)
        parse_forward_order({"uri": self.URI, "caller": {"label": "L"}, "callee": {"name": "N"}}, self.tenant)
