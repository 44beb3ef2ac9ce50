"""
Tests for L{aiconnect.metrics_recorder} (the seam, the causes of failed
forwards) and L{aiconnect.api.metrics} (L{PrometheusMetrics}: histograms
and bounded labels; totals as counters): observations made by the
webhook clients and the runner on a L{Clock}.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.api import ApiServer
from aiconnect.api.metrics import MAX_TENANT_LABELS, OTHER_TENANT, TOTALS, UNKNOWN_TENANT, PrometheusMetrics
from aiconnect.config import Config
from aiconnect.metrics_recorder import FORWARD_FAILURE_CAUSES, NULL_METRICS, forward_failure_cause
from aiconnect.webhooks import NewCallClient
from tests.api.helpers import ApiClient
from tests.fakes import make_runner
from tests.webhooks.helpers import DOMAIN, START, WebhooksTestCase, started, tenant


class RecordingMetrics:
    """
    A L{aiconnect.metrics_recorder.MetricsRecorder} that keeps every
    observation as a tuple.
    """

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def observe_setup(self, seconds: float, tenant: str, transport: str) -> None:
        self.seen.append(("setup", seconds, tenant, transport))

    def observe_webhook(self, seconds: float, kind: str, tenant: str) -> None:
        self.seen.append(("webhook", seconds, kind, tenant))

    def observe_event_age(self, seconds: float, tenant: str) -> None:
        self.seen.append(("age", seconds, tenant))

    def count_forward_failure(self, reason: str, status: int | None, tenant: str) -> None:
        self.seen.append(("forward", reason, status, tenant))


class CauseTests(SynchronousTestCase):
    """
    L{forward_failure_cause}: a fixed set of causes from free reason texts.
    """

    def test_causes(self) -> None:
        """
        Each reason text the forwarding code writes maps to its cause; a SIP status wins over the text, except for refused orders and lost SRSs.
        """
        table = [
            ("SIP 503 Service Unavailable", 503, "sip_5xx"),
            ("SIP 486 Busy Here", 486, "sip_4xx"),
            ("SIP 603 Decline", 603, "sip_6xx"),
            ("timeout", 408, "sip_4xx"),
            ("timeout", None, "timeout"),
            ("ring timeout: no answer in 10 s", None, "ring_timeout"),
            ("transport: Connection was refused by other side", None, "transport"),
            ("DNS: no target for srs.example.net", None, "dns"),
            ("TLS: certificate verify failed", None, "tls"),
            ("limit", None, "limit"),
            ("invalid order: uri: unknown trunk", None, "invalid_order"),
            ("SRS lost (transport: reset), no target answered: SIP 503 x", 503, "srs_lost"),
            ("no RTP ports left", None, "media"),
            ("media: bad stream", None, "media"),
            ("timeout: no answer within [limits] mandatory_wait", None, "timeout"),
            ("something new\nwith user text", None, "other"),
            ("", None, "other"),
        ]
        for reason, status, cause in table:
            self.assertEqual(forward_failure_cause(reason, status), cause, reason)
            self.assertIn(cause, FORWARD_FAILURE_CAUSES)

    def test_null_metrics(self) -> None:
        """
        The default recorder takes every observation and keeps nothing.
        """
        NULL_METRICS.observe_setup(0.1, "t", "udp")
        NULL_METRICS.observe_webhook(0.1, "event", "t")
        NULL_METRICS.observe_event_age(0.1, "t")
        NULL_METRICS.count_forward_failure("x", None, "t")


class PrometheusMetricsTests(SynchronousTestCase):
    """
    L{PrometheusMetrics}: histograms and a counter with bounded labels.
    """

    def setUp(self) -> None:
        self.registry = CollectorRegistry()
        self.known = {"a.example", "b.example"}
        self.metrics = PrometheusMetrics(self.registry, self.known.__contains__, max_tenants=1)

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def test_setup_histogram(self) -> None:
        """
        Setup times land in C{aiconnect_call_setup_seconds} by tenant and transport, in their buckets.
        """
        self.metrics.observe_setup(0.02, "A.example", "udp")
        self.metrics.observe_setup(0.3, "a.example", "udp")
        labels = {"tenant": "a.example", "transport": "udp"}
        self.assertEqual(self.value("aiconnect_call_setup_seconds_count", **labels), 2.0)
        self.assertAlmostEqual(self.value("aiconnect_call_setup_seconds_sum", **labels) or 0, 0.32)
        self.assertEqual(self.value("aiconnect_call_setup_seconds_bucket", le="0.025", **labels), 1.0)
        self.assertEqual(self.value("aiconnect_call_setup_seconds_bucket", le="0.5", **labels), 2.0)

    def test_bounded_labels(self) -> None:
        """
        Unknown domains share one tenant label, configured tenants beyond the cap another; transports, kinds and causes come from fixed sets.
        """
        for domain in ("evil-%d.example" % i for i in range(50)):
            self.metrics.observe_webhook(0.1, "event", domain)
        self.metrics.observe_webhook(0.1, "newCall", "a.example")
        self.metrics.observe_webhook(0.1, "nonsense", "b.example")
        self.metrics.observe_setup(0.1, "a.example", "sctp")
        self.metrics.count_forward_failure("user text " * 10, None, "a.example")
        self.metrics.observe_event_age(3.0, "b.example")
        self.assertEqual(self.value("aiconnect_webhook_latency_seconds_count", kind="event", tenant=UNKNOWN_TENANT), 50.0)
        self.assertEqual(self.value("aiconnect_webhook_latency_seconds_count", kind="newCall", tenant="a.example"), 1.0)
        self.assertEqual(self.value("aiconnect_webhook_latency_seconds_count", kind="other", tenant=OTHER_TENANT), 1.0)
        self.assertEqual(self.value("aiconnect_call_setup_seconds_count", tenant="a.example", transport="other"), 1.0)
        self.assertEqual(self.value("aiconnect_forward_failures_total", reason="other", tenant="a.example"), 1.0)
        self.assertEqual(self.value("aiconnect_event_backlog_age_seconds_count", tenant=OTHER_TENANT), 1.0)
        text = generate_latest(self.registry).decode()
        self.assertNotIn("evil", text)
        self.assertNotIn("user text", text)
        self.assertGreater(MAX_TENANT_LABELS, 1)

    def test_one_per_registry(self) -> None:
        """
        A second recorder on the same registry is refused (its names are taken).
        """
        self.assertRaises(ValueError, PrometheusMetrics, self.registry, self.known.__contains__)


class TotalsTests(SynchronousTestCase):
    """
    Stats providers of L{TOTALS} are counters but for their current values.
    """

    def test_counters_and_gauges(self) -> None:
        """
        A provider named in TOTALS gives counters (_total) and gauges for the keys listed; another provider gives gauges.
        """
        self.assertIn("inbound_connections", TOTALS["sip_transport"])
        server = ApiServer(
            Config(),
            stats_providers={
                "sip_transport": lambda: {"received": 7, "inboundConnections": 2},
                "events": lambda: {"delivery": {"delivered": 3, "endpoints_disabled": 1}, "backlog": 4},
                "sessions": lambda: {"active": 5},
            },
        )
        _, body = ApiClient(self, server).request("GET", "/metrics")
        text = body.decode()
        for line in (
            "# TYPE aiconnect_sip_transport_received_total counter",
            "aiconnect_sip_transport_received_total 7.0",
            "# TYPE aiconnect_sip_transport_inbound_connections gauge",
            "aiconnect_sip_transport_inbound_connections 2.0",
            "aiconnect_events_delivery_delivered_total 3.0",
            "aiconnect_events_delivery_endpoints_disabled 1.0",
            "aiconnect_events_backlog 4.0",
            "# TYPE aiconnect_sessions_active gauge",
            "aiconnect_sessions_active 5.0",
        ):
            self.assertIn(line + "\n", text)


class WebhookObservationTests(WebhooksTestCase):
    """
    The webhook clients observe their round trips and the age of delivered events.
    """

    def test_new_call_round_trip(self) -> None:
        """
        A newCall that times out after 2 s is observed as a 2 s newCall round trip of its tenant; an answered one too; a cancelled one is not.
        """
        client = NewCallClient(self.clock, self.stub)
        client.metrics = recorder = RecordingMetrics()
        self.recorder.script.extend([None, (200, {}, b"{}"), None])
        d = client.post_new_call(tenant(), {"sessionId": "s1"}, 2.0)
        self.clock.advance(2.0)
        self.successResultOf(d)
        self.successResultOf(client.post_new_call(tenant(), {"sessionId": "s2"}, 2.0))
        cancelled = client.post_new_call(tenant(), {"sessionId": "s3"}, 2.0)
        self.clock.advance(0.5)
        cancelled.cancel()
        self.assertEqual(recorder.seen, [("webhook", 2.0, "newCall", DOMAIN), ("webhook", 0.0, "newCall", DOMAIN)])

    def test_event_age_and_round_trip(self) -> None:
        """
        An event emitted while the deliverer is stopped and delivered 5 s later is observed with age 5 s, with its round trip; a failed attempt gives a round trip but no age.
        """
        self.recorder.script.append((500, {}, b""))
        deliverer = self.deliverer(backoff_base=1.0)
        deliverer.metrics = recorder = RecordingMetrics()
        self.outbox.emit(DOMAIN, "s1", started())
        self.clock.advance(5.0)
        deliverer.start()
        self.pump()
        self.assertEqual(recorder.seen, [("webhook", 0.0, "event", DOMAIN)])
        self.advance_to(6.0)
        self.assertEqual(
            recorder.seen, [("webhook", 0.0, "event", DOMAIN), ("webhook", 0.0, "event", DOMAIN), ("age", 6.0, DOMAIN)]
        )
        self.assertEqual(self.clock.seconds(), START + 6.0)


class RunnerObservationTests(SynchronousTestCase):
    """
    The runner counts each SIPRECFORWARDFAILED it emits.
    """

    def test_forward_failure_counted(self) -> None:
        """
        A refused order's SIPRECFORWARDFAILED is counted once with its reason and tenant.
        """
        runner = make_runner(acked=True)
        recorder = RecordingMetrics()
        runner.metrics = recorder
        runner.reject_order("invalid order: uri: required", raw={"codec": "PCMU"})
        self.assertEqual(recorder.seen, [("forward", "invalid order: uri: required", None, runner.call.tenant.domain)])
