# -*- test-case-name: tests.api.test_metrics,tests.test_overload -*-
"""
Stats providers as Prometheus gauges: a component hands L{StatsCollector}
a zero-argument callable, and every number it returns at a scrape is served
on C{GET /metrics} as C{aiconnect_<provider>_<key>}, without this package
knowing the component's counters; L{LabelledCounter} serves one counter
split by a label the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from twisted.logger import Logger

from aiconnect import __version__

#: Most gauges one stats provider may publish (a guard against a provider
#: keyed by session or forward ids, which would explode the metric names).
MAX_STATS_PER_PROVIDER = 1000

#: A zero-argument callable returning a (possibly nested) mapping of numbers;
#: see L{aiconnect.api.ApiServer.add_stats_provider}.
StatsProvider = Callable[[], Any]

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
    A Prometheus custom collector turning L{StatsProvider}s into gauges,
    read at each scrape: provider C{name} returning C{{"a": {"bB": 1}}}
    gives C{aiconnect_<name>_a_b_b 1.0}.  C{aiconnect_stats_provider_up}
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
            for path, number in numbers:
                parts = [p for p in (_metric_part(k) for k in path) if p]
                metric = "_".join(["aiconnect", name] + parts)
                if metric in seen:
                    continue
                seen.add(metric)
                dotted = ".".join((name,) + path)
                yield GaugeMetricFamily(metric, f"Stats provider value {dotted}", value=number)
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
