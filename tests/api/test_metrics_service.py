# -*- test-case-name: tests.api.test_metrics_service -*-
"""
C{/metrics} of the real service (real sockets on 127.0.0.1, a real HTTP
application, raw UDP SIPRec): one call answered and forwarded to a TCP
trunk nobody listens on, then ended.  The histograms of call setup time,
webhook latency and event backlog age and the counter of failed forwards
are observed where those things happen, with bounded labels; totals are
counters that never go down, current values gauges that do; the Grafana
dashboard of C{examples/grafana/} asks only for metric names the service
exports.

RTP range: 61600-61639.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import treq
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.helpers import free_port
from tests.integration.scenario import ScenarioCase
from tests.integration.siprec_peer import sdp_offer
from tests.integration.test_forward import ORDER

ROOT = Path(__file__).resolve().parent.parent.parent
DASHBOARD = ROOT / "examples" / "grafana" / "aiconnect-dashboard.json"

#: A one-stream offer; the SRC sends no RTP.
OFFER = sdp_offer([("96", 40000, 0)])

#: A metric name in the documentation (not a file name such as
#: C{aiconnect_plugin.py}); a trailing C{_} or C{*} makes it a prefix.
DOC_NAME = re.compile(r"\baiconnect_[a-z0-9_]*[a-z0-9_*](?![a-z0-9_.]*\.py)")

#: PromQL words that are not metric names: functions, aggregations,
#: keywords, label names.
PROMQL_WORDS = frozenset(
    "sum rate irate increase histogram_quantile by without le on ignoring group_left group_right "
    "max min avg count topk bottomk clamp_min abs delta deriv offset bool and or unless "
    "cause reason tenant transport kind provider state".split()
)


def scrape_names(text: str) -> dict[str, tuple[str, dict[str, float]]]:
    """
    The samples of an exposition: sample name -> (its family's type,
    labels-as-text -> value).
    """
    out: dict[str, tuple[str, dict[str, float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            entry = out.setdefault(sample.name, (family.type, {}))
            entry[1][json.dumps(sample.labels, sort_keys=True)] = sample.value
    return out


def dashboard_expressions(dashboard: dict[str, Any]) -> list[str]:
    """
    Every PromQL expression (C{targets[].expr}) of the dashboard's panels.
    """
    exprs = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            exprs.append(target["expr"])
    return exprs


def metric_names(expr: str) -> set[str]:
    """
    The metric names an expression selects: identifiers that are not
    PromQL words, label names (inside C{{}}) or strings.
    """
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {n for n in names if n not in PROMQL_WORDS}


class ServiceMetricsTests(ScenarioCase):
    """
    The service's /metrics after a real call.
    """

    rtp_base = 61600
    timeout = 30

    async def scrape(self) -> str:
        resp = await treq.get("http://127.0.0.1:%d/metrics" % (self.api_port,), persistent=False)
        self.assertEqual(resp.code, 200)
        return (await resp.content()).decode()

    async def call_with_failed_forward(self) -> tuple[str, str]:
        """
        Start the service (a TCP trunk to a closed port), place one call
        whose newCall answer orders a forward there, wait for the
        forward's failure; scrape during the call, end it, wait for
        SESSIONCOMPLETED.

        @return: The scrapes during and after the call.
        """
        dead = free_port()
        trunk = '\n  [[tenant.trunk]]\n  match = "aiforward"\n  target = "127.0.0.1:%d"\n  transport = "tcp"\n' % (dead,)
        app = self.start(tenant=trunk, rtp_pairs=20)
        app.answer = {"startSIPRecForward": ORDER}
        src = self.src()
        await src.call(OFFER)
        await app.wait_for("events", 2)
        self.assertIn("SIPRECFORWARDFAILED", app.event_names())
        during = await self.scrape()
        await src.bye()
        await app.wait_for("events", 3)
        self.assertEqual(app.event_names()[-1], "SESSIONCOMPLETED")
        return during, await self.scrape()

    async def test_observed_where_it_happens(self) -> None:
        """
        After one call over UDP: one setup time for the tenant over udp,
        one newCall round trip, an event round trip and a backlog age per
        delivered event, one failed forward with cause transport; the
        configured tenant is the only tenant label.
        """
        _, after = await self.call_with_failed_forward()
        samples = scrape_names(after)
        tenant = "customer.example.com"

        def value(name: str, **labels: str) -> float:
            return samples[name][1][json.dumps(labels, sort_keys=True)]

        self.assertEqual(value("aiconnect_call_setup_seconds_count", tenant=tenant, transport="udp"), 1.0)
        self.assertGreater(value("aiconnect_call_setup_seconds_sum", tenant=tenant, transport="udp"), 0.0)
        self.assertEqual(value("aiconnect_webhook_latency_seconds_count", kind="newCall", tenant=tenant), 1.0)
        delivered = value("aiconnect_events_delivery_delivered_total")
        self.assertGreaterEqual(delivered, 2.0)
        self.assertEqual(value("aiconnect_event_backlog_age_seconds_count", tenant=tenant), delivered)
        self.assertGreaterEqual(value("aiconnect_webhook_latency_seconds_count", kind="event", tenant=tenant), delivered)
        self.assertEqual(value("aiconnect_forward_failures_total", reason="transport", tenant=tenant), 1.0)
        tenants = {
            json.loads(labels).get("tenant")
            for _, by_labels in samples.values()
            for labels in by_labels
            if "tenant" in json.loads(labels)
        }
        self.assertEqual(tenants, {tenant})

    async def test_counters_and_gauges(self) -> None:
        """
        Totals are counters (_total) that never go down between a scrape
        during the call and one after it; the live session and its
        answered calls show as gauges while it runs and drop back after.
        """
        during, after = await self.call_with_failed_forward()
        first, second = scrape_names(during), scrape_names(after)
        for name, (kind, by_labels) in first.items():
            if kind == "counter" and name.endswith("_total"):
                for labels, number in by_labels.items():
                    self.assertGreaterEqual(second[name][1][labels], number, name)
        self.assertEqual(first["aiconnect_sessions_active"], ("gauge", {"{}": 1.0}))
        self.assertEqual(second["aiconnect_sessions_states_active"][1]["{}"], 0.0)
        self.assertEqual(first["aiconnect_rtp_sessions_active"][0], "gauge")
        self.assertEqual(first["aiconnect_srs_answered_total"], ("counter", {"{}": 1.0}))
        self.assertEqual(second["aiconnect_events_backlog"], ("gauge", {"{}": 0.0}))
        self.assertIn("aiconnect_live_forwards_active", second)

    async def test_dashboard_asks_for_exported_names(self) -> None:
        """
        examples/grafana/aiconnect-dashboard.json parses, has the panels
        an operator needs, and every PromQL expression in it selects only
        metric names a real service exports after a call.
        """
        dashboard = json.loads(DASHBOARD.read_text())
        titles = [p["title"] for p in dashboard["panels"]]
        for wanted in ("Calls/s", "Active sessions", "Call setup time", "Webhook latency", "Event backlog age",
                       "503s by cause", "Forward failures by reason", "RTP packets/s"):
            self.assertIn(wanted, titles)
        _, after = await self.call_with_failed_forward()
        exported = set(scrape_names(after))
        exprs = dashboard_expressions(dashboard)
        self.assertGreaterEqual(len(exprs), 8)
        for expr in exprs:
            names = metric_names(expr)
            self.assertTrue(names, expr)
            self.assertEqual(names - exported, set(), expr)

    async def test_documented_names_exported(self) -> None:
        """
        Every metric name docs/*.md and README.rst mention is exported by the service after a call (a name ending in _ or * as a prefix; a histogram by its _count).
        """
        _, after = await self.call_with_failed_forward()
        exported = set(scrape_names(after))
        texts = [p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))] + [(ROOT / "README.rst").read_text()]
        names = {name for text in texts for name in DOC_NAME.findall(text)}
        self.assertIn("aiconnect_call_setup_seconds", names)
        missing = []
        for name in sorted(names):
            if name.endswith(("_", "*")):
                if not any(e.startswith(name.rstrip("*")) for e in exported):
                    missing.append(name)
            elif name not in exported and name + "_count" not in exported:
                missing.append(name)
        self.assertEqual(missing, [])
