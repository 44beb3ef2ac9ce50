# -*- test-case-name: tests.api.test_metrics,tests.api.test_metrics_recorder,tests.api.test_metrics_service,tests.test_overload -*-
"""
The Prometheus side of C{GET /metrics}.

Stats providers: a component hands L{StatsCollector} a zero-argument
callable, and every number it returns at a scrape is served as
C{aiconnect_<provider>_<key>}, without this package knowing the
component's counters.  The providers of L{TOTALS} count monotonic totals:
their numbers are counters (C{aiconnect_srs_answered_total}), except the
keys listed there, which are current values (gauges, such as
C{aiconnect_rtp_sessions_active}); every number of any other provider is
a gauge (C{aiconnect_sessions_active}).  L{LabelledCounter} serves one
counter split by a label the same way.

Observations: L{PrometheusMetrics} is the
L{aiconnect.metrics_recorder.MetricsRecorder} the composition root gives
the SRS, the runner and the webhook clients; it keeps the histograms of
call setup time, webhook latency and event backlog age and the counter of
failed forwards, with bounded labels (a tenant label only for configured
tenants, at most L{MAX_TENANT_LABELS} of them; transports, kinds and causes
from fixed sets).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from twisted.logger import Logger

from aiconnect import __version__
from aiconnect.metrics_recorder import WEBHOOK_EVENT, WEBHOOK_NEW_CALL, forward_failure_cause

#: Most gauges one stats provider may publish (a guard against a provider
#: keyed by session or forward ids, which would explode the metric names).
MAX_STATS_PER_PROVIDER = 1000

#: A zero-argument callable returning a (possibly nested) mapping of numbers;
#: see L{aiconnect.api.ApiServer.add_stats_provider}.
StatsProvider = Callable[[], Any]

#: The providers of the service (L{aiconnect.tap}) that count monotonic
#: totals: each of their numbers is served as a counter, except the keys
#: named here (the metric name's part after C{aiconnect_<provider>_}),
#: which are current values served as gauges.  The numbers of a provider
#: not named here are all gauges (C{sessions}: the registry's live counts;
#: C{live}: forwards, streams and recordings by state).
TOTALS: Mapping[str, frozenset[str]] = {
    "sip_transport": frozenset({"inbound_connections"}),
    "sip_transactions": frozenset(),
    "sip_ua": frozenset(),
    "srs": frozenset(),
    "overload": frozenset({"overloaded", "lag_seconds", "cpu", "admit_rate", "events_wait_seconds"}),
    "forward": frozenset(),
    "trunk_health": frozenset({"targets"}),
    "outputs": frozenset(),
    "rtp": frozenset({"sessions_active", "port_pairs_free", "port_pairs_total"}),
    "events": frozenset({"delivery_endpoints_disabled", "backlog"}),
    "newcall": frozenset(),
    "recovery": frozenset(),
}

#: Most distinct tenant label values L{PrometheusMetrics} uses; tenants
#: beyond them (only ever configured ones) share L{OTHER_TENANT}.
MAX_TENANT_LABELS = 200
#: The tenant label of an observation whose domain is no configured tenant.
UNKNOWN_TENANT = "unknown"
#: The tenant label of configured tenants beyond L{MAX_TENANT_LABELS}.
OTHER_TENANT = "other"
#: The transport label values (anything else is C{other}).
TRANSPORTS = ("udp", "tcp", "tls")

#: Histogram buckets (seconds).  Call setup includes the application's
#: newCall answer (its C{callback_timeout}, 5 s by default) and mandatory
#: forwards; events may wait for an unreachable endpoint up to
#: C{retry_for} (a day by default).
SETUP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
EVENT_AGE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0)

_PROVIDER_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")
_NOT_METRIC_CHAR = re.compile(r"[^a-z0-9_]+")


def register_build_info(registry: CollectorRegistry) -> None:
    """
    Publish C{aiconnect_build_info{version=...}} on C{registry}, once (a
    second L{aiconnect.api.ApiServer} on the same registry finds it there).

    @param registry: The Prometheus registry.
    """
    build = Info("aiconnect_build", "AI Connect build information", registry=None)
    build.info({"version": __version__})
    try:
        registry.register(build)
    except ValueError:
        # Already registered by another ApiServer on the same registry.
        pass


def _metric_part(key: Any) -> str:
    """
    A stats key as a metric name part: camelCase to snake_case, lower case,
    anything but C{[a-z0-9_]} to C{_}.

    @param key: A key of a stats mapping.
    @return: The part (possibly empty).
    """
    text = _CAMEL.sub(r"_\1", str(key)).lower()
    return _NOT_METRIC_CHAR.sub("_", text).strip("_")


def _flatten(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], float]]:
    """
    The numbers of a nested stats mapping with their key paths.  Booleans
    count as 0/1; strings, lists, L{None} and other values are skipped.

    @param value: A number or a mapping of them (nested).
    @param path: The keys above C{value}.
    @return: (key path, number) pairs.
    """
    if isinstance(value, bool):
        yield path, float(value)
    elif isinstance(value, (int, float)):
        yield path, float(value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _flatten(item, path + (str(key),))


class StatsCollector:
    """
    A Prometheus custom collector turning L{StatsProvider}s into gauges
    and counters (L{TOTALS}), read at each scrape: provider C{name}
    returning C{{"a": {"bB": 1}}} gives C{aiconnect_<name>_a_b_b 1.0}
    (C{aiconnect_<name>_a_b_b_total 1.0} when C{name} counts totals).  C{aiconnect_stats_provider_up}
    says per provider whether it answered (0 when it raised).

    @ivar providers: Name -> provider, the live dict (changes show at the
        next scrape).
    """

    log = Logger()

    def __init__(self) -> None:
        """
        Start without providers.
        """
        self.providers: dict[str, StatsProvider] = {}
        self._truncated: set[str] = set()

    def add(self, name: str, provider: StatsProvider) -> None:
        """
        Publish a provider from the next scrape on.

        @param name: The provider's name: C{[a-z][a-z0-9_]*}.
        @param provider: The zero-argument callable.
        @raise ValueError: If the name is invalid or already taken, or the
            provider is not callable.
        """
        if not _PROVIDER_NAME.match(name):
            raise ValueError(f"stats provider name {name!r} is not [a-z][a-z0-9_]*")
        if name in self.providers:
            raise ValueError(f"stats provider {name!r} is already registered")
        if not callable(provider):
            raise ValueError(f"stats provider {name!r} is not callable")
        self.providers[name] = provider

    def describe(self) -> list[Metric]:
        """
        No fixed names: the registry must not call L{collect} at
        registration to learn them (the providers may not be ready yet).

        @return: An empty list.
        """
        return []

    def collect(self) -> Iterator[Metric]:
        """
        Ask every provider and yield one gauge per number.

        @return: The metric families.
        """
        up = GaugeMetricFamily(
            "aiconnect_stats_provider_up",
            "Whether a stats provider answered at the last scrape (1) or raised (0)",
            labels=["provider"],
        )
        seen: set[str] = set()
        for name, provider in sorted(self.providers.items()):
            try:
                stats = provider()
                numbers = list(_flatten(stats))
            except Exception:
                self.log.failure("Stats provider {provider} failed", provider=name)
                up.add_metric([name], 0.0)
                continue
            up.add_metric([name], 1.0)
            if len(numbers) > MAX_STATS_PER_PROVIDER:
                if name not in self._truncated:
                    self._truncated.add(name)
                    self.log.warn(
                        "Stats provider {provider} returned {count} numbers; only the first {limit} are served",
                        provider=name,
                        count=len(numbers),
                        limit=MAX_STATS_PER_PROVIDER,
                    )
                numbers = numbers[:MAX_STATS_PER_PROVIDER]
            current = TOTALS.get(name)
            for path, number in numbers:
                parts = [p for p in (_metric_part(k) for k in path) if p]
                metric = "_".join(["aiconnect", name] + parts)
                dotted = ".".join((name,) + path)
                if current is None or "_".join(parts) in current:
                    family: Metric = GaugeMetricFamily(metric, f"Stats provider value {dotted}", value=number)
                else:
                    family = CounterMetricFamily(metric, f"Stats provider total {dotted}", value=number)
                exposed = family.name + "_total" if family.type == "counter" else family.name
                if exposed in seen:
                    continue
                seen.add(exposed)
                yield family
        if self.providers:
            yield up


class LabelledCounter:
    """
    A Prometheus custom collector serving one counter with one label, read
    at each scrape from a zero-argument callable returning label value ->
    count: e.g. C{aiconnect_invites_refused_total{cause="overload_lag"}}
    (docs/overload.md), which a Prometheus rule can sum or split by cause
    where the stats gauges would need one rule per name.
    """

    def __init__(self, name: str, documentation: str, label: str, reader: Callable[[], Mapping[str, int]]) -> None:
        """
        @param name: The metric's name, without C{_total}.
        @param documentation: Its help text.
        @param label: The label's name.
        @param reader: Label value -> count, asked at each scrape.
        """
        self._name = name
        self._documentation = documentation
        self._label = label
        self._reader = reader

    def describe(self) -> list[Metric]:
        """
        @return: No fixed samples (the reader may not be ready yet).
        """
        return []

    def collect(self) -> Iterator[Metric]:
        """
        @return: The counter family, one sample per label value.
        """
        family = CounterMetricFamily(self._name, self._documentation, labels=[self._label])
        for value, count in sorted(self._reader().items()):
            family.add_metric([value], float(count))
        yield family


class PrometheusMetrics:
    """
    The L{aiconnect.metrics_recorder.MetricsRecorder} of the service: the
    histograms C{aiconnect_call_setup_seconds{tenant,transport}},
    C{aiconnect_webhook_latency_seconds{kind,tenant}} and
    C{aiconnect_event_backlog_age_seconds{tenant}}, and the counter
    C{aiconnect_forward_failures_total{reason,tenant}}, on one registry.

    Labels are bounded: C{tenant} is the domain of a configured tenant
    (C{is_tenant}), else L{UNKNOWN_TENANT}, and L{OTHER_TENANT} for
    tenants beyond the first L{MAX_TENANT_LABELS} seen; C{transport} one
    of L{TRANSPORTS} or C{other}; C{kind} C{newCall}, C{event} or
    C{other}; C{reason} one of
    L{FORWARD_FAILURE_CAUSES<aiconnect.metrics_recorder.FORWARD_FAILURE_CAUSES>}.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        is_tenant: Callable[[str], bool],
        max_tenants: int = MAX_TENANT_LABELS,
    ) -> None:
        """
        @param registry: Where the metrics are registered (once per
            registry).
        @param is_tenant: Whether a domain is a configured tenant's, asked
            for a domain not labelled yet (so tenants added at run time
            get their label).
        @param max_tenants: Most distinct tenant labels.
        @raise ValueError: If the registry has these metrics already.
        """
        self._is_tenant = is_tenant
        self._max_tenants = max_tenants
        self._tenants: set[str] = set()
        self.setup = Histogram(
            "aiconnect_call_setup_seconds",
            "Inbound INVITE received to 200 OK sent, seconds (newCall answer and mandatory forwards included)",
            ["tenant", "transport"],
            buckets=SETUP_BUCKETS,
            registry=registry,
        )
        self.webhook = Histogram(
            "aiconnect_webhook_latency_seconds",
            "Round trip of a newCall or event POST to the application, seconds (failures and timeouts included)",
            ["kind", "tenant"],
            buckets=WEBHOOK_BUCKETS,
            registry=registry,
        )
        self.event_age = Histogram(
            "aiconnect_event_backlog_age_seconds",
            "Age of an event when the application accepted it (2xx), seconds since it was emitted",
            ["tenant"],
            buckets=EVENT_AGE_BUCKETS,
            registry=registry,
        )
        self.forward_failures = Counter(
            "aiconnect_forward_failures",
            "Forwards that failed (SIPRECFORWARDFAILED), by cause",
            ["reason", "tenant"],
            registry=registry,
        )

    def tenant_label(self, domain: str) -> str:
        """
        The C{tenant} label of a domain (bounded: see the class).
        """
        domain = domain.lower()
        if domain in self._tenants:
            return domain
        if not self._is_tenant(domain):
            return UNKNOWN_TENANT
        if len(self._tenants) >= self._max_tenants:
            return OTHER_TENANT
        self._tenants.add(domain)
        return domain

    def observe_setup(self, seconds: float, tenant: str, transport: str) -> None:
        """
        An inbound call answered: L{MetricsRecorder.observe_setup<aiconnect.metrics_recorder.MetricsRecorder.observe_setup>}.
        """
        label = transport.lower() if transport.lower() in TRANSPORTS else "other"
        self.setup.labels(self.tenant_label(tenant), label).observe(max(0.0, seconds))

    def observe_webhook(self, seconds: float, kind: str, tenant: str) -> None:
        """
        A webhook round trip ended: L{MetricsRecorder.observe_webhook<aiconnect.metrics_recorder.MetricsRecorder.observe_webhook>}.
        """
        label = kind if kind in (WEBHOOK_NEW_CALL, WEBHOOK_EVENT) else "other"
        self.webhook.labels(label, self.tenant_label(tenant)).observe(max(0.0, seconds))

    def observe_event_age(self, seconds: float, tenant: str) -> None:
        """
        An event delivered: L{MetricsRecorder.observe_event_age<aiconnect.metrics_recorder.MetricsRecorder.observe_event_age>}.
        """
        self.event_age.labels(self.tenant_label(tenant)).observe(max(0.0, seconds))

    def count_forward_failure(self, reason: str, status: int | None, tenant: str) -> None:
        """
        A forward failed: L{MetricsRecorder.count_forward_failure<aiconnect.metrics_recorder.MetricsRecorder.count_forward_failure>}.
        """
        self.forward_failures.labels(forward_failure_cause(reason, status), self.tenant_label(tenant)).inc()
