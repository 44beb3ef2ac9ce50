# -*- test-case-name: tests.webhooks.test_delivery -*-
"""
Tests for L{aiconnect.webhooks.delivery}: ordered, signed delivery with
back-off on a L{Clock}, 410 handling, stale connections and the service,
through L{StubTreq} over a recording application.
"""

from __future__ import annotations

import base64
import os
import sqlite3
from email.utils import formatdate

from twisted.internet import defer
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.web.client import RequestNotSent, RequestTransmissionFailed, ResponseNeverReceived
from twisted.web.server import Request

from aiconnect.webhooks import EventDeliverer, EventDeliveryService, decode_secret, secret_digest
from aiconnect.webhooks import outbox as outbox_module
from tests.webhooks.helpers import (
    DOMAIN,
    OTHER,
    ROTATED,
    SECRET,
    START,
    FlakyClient,
    StaleClient,
    WebhooksTestCase,
    closed_before_answer,
    completed,
    independent_signature_ok,
    started,
    tenant,
)


class DelivererTests(WebhooksTestCase):
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

    def attempt_times(self) -> list[float]:
        """
        @return: When each request reached the application, in seconds
            after C{START}.
        """
        return [round(t - START, 3) for t in self.times]

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
        for statement in outbox_module._SCHEMA[1]:
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

    def test_ready_wait(self) -> None:
        """
        C{ready_wait} is how long the session first in line has waited
        for a request slot (overload control reads it): 0 while a slot is
        free, growing while every slot is busy, 0 again once it is sent.
        Sessions waiting for a retry are not in line.
        """
        self.recorder.script.append(None)
        d = self.deliverer(max_in_flight=1, request_timeout=5.0)
        d.start()
        with capturedLogs():
            self.outbox.emit(DOMAIN, "s1", started("s1"))
            self.pump()
            self.assertEqual(d.ready_wait(), 0.0)
            self.outbox.emit(DOMAIN, "s2", started("s2"))
            self.clock.advance(3)
            self.assertAlmostEqual(d.ready_wait(), 3.0)
            self.advance_to(5)
        self.assertEqual(self.recorder.events(), ["SESSIONSTARTED:s1", "SESSIONSTARTED:s2"])
        self.assertEqual(d.ready_wait(), 0.0)

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
