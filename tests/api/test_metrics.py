"""
Tests for L{aiconnect.api.metrics}: C{GET /metrics}, the registries and
the stats providers.
"""

from __future__ import annotations


from prometheus_client import REGISTRY, CollectorRegistry, Counter
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from aiconnect import __version__
from aiconnect.api import MAX_STATS_PER_PROVIDER, ApiServer
from aiconnect.config import Config
from aiconnect.registry import CallRegistry
from tests.api.helpers import ApiClient, make_call, make_config


class MetricsTests(SynchronousTestCase):
    """
    Tests for C{GET /metrics}.
    """

    def test_text_exposition(self) -> None:
        """
        C{GET /metrics} answers the Prometheus text format with the build information.
        """
        response, body = ApiClient(self, ApiServer(Config())).request("GET", "/metrics")
        self.assertEqual(response.code, 200)
        self.assertTrue(response.headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain"))
        self.assertIn(f'aiconnect_build_info{{version="{__version__}"}} 1.0'.encode(), body)

    def test_openmetrics(self) -> None:
        """
        A client asking for OpenMetrics gets that format.
        """
        response, body = ApiClient(self, ApiServer(Config())).request(
            "GET", "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        self.assertTrue(
            response.headers.getRawHeaders(b"content-type")[0].startswith(b"application/openmetrics-text")
        )
        self.assertTrue(body.endswith(b"# EOF\n"))

    def test_injected_registry(self) -> None:
        """
        Metrics registered on the injected registry are served.
        """
        registry = CollectorRegistry()
        calls = Counter("aiconnect_test_calls", "Calls", registry=registry)
        calls.inc(3)
        server = ApiServer(Config(), metrics_registry=registry)
        self.assertIs(server.metrics_registry, registry)
        _, body = ApiClient(self, server).request("GET", "/metrics")
        self.assertIn(b"aiconnect_test_calls_total 3.0", body)

    def test_isolated_registries(self) -> None:
        """
        Each server without an injected registry has its own, and none touches the global default registry.
        """
        first = ApiServer(Config())
        second = ApiServer(Config())
        Counter("aiconnect_only_first", "First only", registry=first.metrics_registry).inc()
        _, body = ApiClient(self, second).request("GET", "/metrics")
        self.assertNotIn(b"aiconnect_only_first", body)
        self.assertIsNot(first.metrics_registry, REGISTRY)
        self.assertIsNone(REGISTRY.get_sample_value("aiconnect_build_info", {"version": __version__}))

    def test_shared_registry(self) -> None:
        """
        Two servers may share one registry.
        """
        registry = CollectorRegistry()
        ApiServer(Config(), metrics_registry=registry)
        ApiServer(Config(), metrics_registry=registry)
        self.assertEqual(registry.get_sample_value("aiconnect_build_info", {"version": __version__}), 1.0)


class StatsProviderTests(SynchronousTestCase):
    """
    Tests for the stats providers published on C{/metrics}.
    """

    def test_gauges(self) -> None:
        """
        A provider's nested numbers become gauges aiconnect_<name>_<key>, camelCase keys in snake_case.
        """
        registry = CallRegistry()
        config = make_config(self, with_jwt=False)
        registry.add(make_call(config))
        server = ApiServer(
            config,
            registry,
            stats_providers={
                "registry": registry.counts,
                "relay": lambda: {"packetsSent": 12, "srtp": {"authFailures": 2}, "up": True, "name": "x",
                                  "ports": [1, 2], "missing": None, "ratio": 0.5},
            },
        )
        _, body = ApiClient(self, server).request("GET", "/metrics")
        text = body.decode()
        for line in (
            "aiconnect_registry_active 1.0",
            "aiconnect_registry_states_active 1.0",
            "aiconnect_registry_states_ended 0.0",
            "aiconnect_relay_packets_sent 12.0",
            "aiconnect_relay_srtp_auth_failures 2.0",
            "aiconnect_relay_up 1.0",
            "aiconnect_relay_ratio 0.5",
            'aiconnect_stats_provider_up{provider="relay"} 1.0',
        ):
            self.assertIn(line + "\n", text)
        self.assertNotIn("aiconnect_relay_name", text)
        self.assertNotIn("aiconnect_relay_ports", text)
        self.assertNotIn("aiconnect_relay_missing", text)

    def test_read_at_each_scrape(self) -> None:
        """
        Providers are called at each scrape, and can be added after construction.
        """
        counter = {"n": 0}

        def provider() -> dict[str, int]:
            counter["n"] += 1
            return {"calls": counter["n"]}

        server = ApiServer(Config())
        server.add_stats_provider("sip", provider)
        client = ApiClient(self, server)
        client.request("GET", "/metrics")
        _, body = client.request("GET", "/metrics")
        self.assertIn(b"aiconnect_sip_calls 2.0\n", body)
        self.assertEqual(set(server.stats_providers), {"sip"})
        server.remove_stats_provider("sip")
        _, body = client.request("GET", "/metrics")
        self.assertNotIn(b"aiconnect_sip_calls", body)

    def test_openmetrics(self) -> None:
        """
        The gauges are served in OpenMetrics too.
        """
        server = ApiServer(Config(), stats_providers={"outbox": lambda: {"emitted": 3}})
        _, body = ApiClient(self, server).request(
            "GET", "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        self.assertIn(b"aiconnect_outbox_emitted 3.0\n", body)

    def test_failing_provider(self) -> None:
        """
        A provider that raises is logged and reported down; the others and the rest of /metrics are served.
        """

        def broken() -> dict[str, int]:
            raise ZeroDivisionError("boom")

        server = ApiServer(Config(), stats_providers={"broken": broken, "fine": lambda: {"x": 1}})
        response, body = ApiClient(self, server).request("GET", "/metrics")
        self.assertEqual(response.code, 200)
        self.assertIn(b'aiconnect_stats_provider_up{provider="broken"} 0.0\n', body)
        self.assertIn(b"aiconnect_fine_x 1.0\n", body)
        self.assertIn(b"aiconnect_build_info", body)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_bad_names(self) -> None:
        """
        Provider names must be lower-case identifiers, unique, and providers callable.
        """
        server = ApiServer(Config(), stats_providers={"ok": dict})
        for name in ("", "Bad", "1x", "a-b", "a b"):
            self.assertRaises(ValueError, server.add_stats_provider, name, dict)
        self.assertRaises(ValueError, server.add_stats_provider, "ok", dict)
        self.assertRaises(ValueError, server.add_stats_provider, "nope", 5)
        self.assertRaises(ValueError, ApiServer, Config(), stats_providers={"Bad": dict})

    def test_number_provider(self) -> None:
        """
        A provider returning a bare number gives the gauge aiconnect_<name>.
        """
        server = ApiServer(Config(), stats_providers={"sessions": lambda: 4})
        _, body = ApiClient(self, server).request("GET", "/metrics")
        self.assertIn(b"aiconnect_sessions 4.0\n", body)

    def test_too_many_numbers(self) -> None:
        """
        A provider publishing more than MAX_STATS_PER_PROVIDER numbers is cut there, with one warning.
        """
        server = ApiServer(Config(), stats_providers={"big": lambda: {f"k{i}": i for i in range(1500)}})
        client = ApiClient(self, server)
        with capturedLogs() as logged:
            client.request("GET", "/metrics")
            _, body = client.request("GET", "/metrics")
        self.assertEqual(body.count(b"\naiconnect_big_k"), MAX_STATS_PER_PROVIDER)
        self.assertEqual(len([e for e in logged if "only the first" in formatEvent(e)]), 1)
