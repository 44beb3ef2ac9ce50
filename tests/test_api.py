# -*- test-case-name: tests.test_api -*-
"""
Tests for L{aiconnect.api}.
"""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter
from treq.testing import StubTreq
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from aiconnect import __version__
from aiconnect.api import JSON_CONTENT_TYPE, ApiRequestError, ApiServer
from aiconnect.config import Config


class _Client:
    """
    Drive an L{ApiServer} through L{StubTreq} synchronously.
    """

    def __init__(self, test: SynchronousTestCase, server: ApiServer) -> None:
        """
        @param test: The test whose C{successResultOf} is used.
        @param server: The server to drive.
        """
        self._test = test
        self._treq = StubTreq(server.app.resource())

    def request(self, method: str, path: str, **kwargs: Any) -> tuple[Any, bytes]:
        """
        @return: The response and its body.
        """
        response = self._test.successResultOf(
            self._treq.request(method, "http://api.example" + path, **kwargs)
        )
        body = self._test.successResultOf(self._treq.content(response))
        return response, body


class HealthTests(SynchronousTestCase):
    """
    Tests for C{GET /health}.
    """

    def test_health(self) -> None:
        """
        C{GET /health} answers 200 with JSON status ok and the version.
        """
        response, body = _Client(self, ApiServer(Config())).request("GET", "/health")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [JSON_CONTENT_TYPE])
        self.assertEqual(json.loads(body), {"status": "ok", "version": __version__})

    def test_wrong_method(self) -> None:
        """
        C{POST /health} answers 405 with a JSON error and an Allow header.
        """
        response, body = _Client(self, ApiServer(Config())).request("POST", "/health")
        self.assertEqual(response.code, 405)
        self.assertEqual(json.loads(body)["success"], False)
        self.assertIn(b"GET", response.headers.getRawHeaders(b"allow")[0])

    def test_unknown_path(self) -> None:
        """
        An unknown path answers 404 with a JSON error.
        """
        response, body = _Client(self, ApiServer(Config())).request("GET", "/no/such/thing")
        self.assertEqual(response.code, 404)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [JSON_CONTENT_TYPE])
        self.assertEqual(json.loads(body), {"success": False, "error": "not found"})


class MetricsTests(SynchronousTestCase):
    """
    Tests for C{GET /metrics}.
    """

    def test_text_exposition(self) -> None:
        """
        C{GET /metrics} answers the Prometheus text format with the build information.
        """
        response, body = _Client(self, ApiServer(Config())).request("GET", "/metrics")
        self.assertEqual(response.code, 200)
        self.assertTrue(response.headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain"))
        self.assertIn(f'aiconnect_build_info{{version="{__version__}"}} 1.0'.encode(), body)

    def test_openmetrics(self) -> None:
        """
        A client asking for OpenMetrics gets that format.
        """
        response, body = _Client(self, ApiServer(Config())).request(
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
        _, body = _Client(self, server).request("GET", "/metrics")
        self.assertIn(b"aiconnect_test_calls_total 3.0", body)

    def test_isolated_registries(self) -> None:
        """
        Each server without an injected registry has its own, and none touches the global default registry.
        """
        first = ApiServer(Config())
        second = ApiServer(Config())
        Counter("aiconnect_only_first", "First only", registry=first.metrics_registry).inc()
        _, body = _Client(self, second).request("GET", "/metrics")
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


class ErrorMappingTests(SynchronousTestCase):
    """
    Tests for the error handlers the tenant routes will rely on.
    """

    def _body(self, request: DummyRequest, result: bytes) -> dict[str, Any]:
        """
        @return: The decoded JSON body, after checking the content type.
        """
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"), [JSON_CONTENT_TYPE])
        decoded: dict[str, Any] = json.loads(result)
        return decoded

    def test_request_error(self) -> None:
        """
        An L{ApiRequestError} is answered with its status and a JSON error naming the field.
        """
        request = DummyRequest([b"customer.example.com", b"startsiprecforward"])
        result = ApiServer(Config())._request_error(
            request, Failure(ApiRequestError(400, "must be PCMA or PCMU", field="codec"))
        )
        self.assertEqual(request.responseCode, 400)
        self.assertEqual(
            self._body(request, result),
            {"success": False, "error": "must be PCMA or PCMU", "field": "codec"},
        )

    def test_key_error(self) -> None:
        """
        A C{KeyError} (unknown tenant or session) is answered 404.
        """
        request = DummyRequest([b"x"])
        result = ApiServer(Config())._not_found(request, Failure(KeyError("s-1")))
        self.assertEqual(request.responseCode, 404)
        self.assertEqual(self._body(request, result), {"success": False, "error": "not found"})

    def test_internal_error(self) -> None:
        """
        An unexpected exception is logged and answered 500 without details.
        """
        request = DummyRequest([b"x"])
        result = ApiServer(Config())._internal_error(request, Failure(ZeroDivisionError("secret detail")))
        self.assertEqual(request.responseCode, 500)
        self.assertEqual(self._body(request, result), {"success": False, "error": "internal error"})
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_request_error_str(self) -> None:
        """
        C{str()} of an L{ApiRequestError} shows status, field and message.
        """
        self.assertEqual(str(ApiRequestError(400, "required", field="sessionId")), "400 sessionId: required")
