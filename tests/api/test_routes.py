"""
Tests for L{aiconnect.api.routes} outside the forwarding routes:
C{GET /health}, unknown paths and methods, the error handlers, the
session routes and the routes not implemented yet.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from aiconnect import __version__
from aiconnect.api import JSON_CONTENT_TYPE, ApiRequestError, ApiServer
from aiconnect.views import describe_session, summarize_session
from aiconnect.call import InboundEnded
from aiconnect.config import Config
from tests.api.helpers import DOMAIN, OTHER_DOMAIN, OTHER_TOKEN, ApiClient, TenantTestCase


class HealthTests(SynchronousTestCase):
    """
    Tests for C{GET /health}.
    """

    def test_health(self) -> None:
        """
        C{GET /health} answers 200 with JSON status ok and the version.
        """
        response, body = ApiClient(self, ApiServer(Config())).request("GET", "/health")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [JSON_CONTENT_TYPE])
        self.assertEqual(json.loads(body), {"status": "ok", "version": __version__})

    def test_wrong_method(self) -> None:
        """
        C{POST /health} answers 405 with a JSON error and an Allow header.
        """
        response, body = ApiClient(self, ApiServer(Config())).request("POST", "/health")
        self.assertEqual(response.code, 405)
        self.assertEqual(json.loads(body)["success"], False)
        self.assertIn(b"GET", response.headers.getRawHeaders(b"allow")[0])

    def test_unknown_path(self) -> None:
        """
        An unknown path answers 404 with a JSON error.
        """
        response, body = ApiClient(self, ApiServer(Config())).request("GET", "/no/such/thing")
        self.assertEqual(response.code, 404)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [JSON_CONTENT_TYPE])
        self.assertEqual(json.loads(body), {"success": False, "error": "not found"})


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


class SessionRouteTests(TenantTestCase):
    """
    Tests for C{GET /{domain}/sessions[/{id}]}.
    """

    def test_list(self) -> None:
        """
        The list holds the summaries of the tenant's live sessions only.
        """
        code, body, _ = self.client.call("GET", f"/{DOMAIN}/sessions")
        self.assertEqual(code, 200)
        self.assertEqual(body, {"success": True, "sessions": [summarize_session(self.call)]})
        code, body, _ = self.client.call("GET", f"/{OTHER_DOMAIN}/sessions", token=OTHER_TOKEN)
        self.assertEqual([s["sessionId"] for s in body["sessions"]], ["ses_other"])

    def test_list_without_registry(self) -> None:
        """
        A server without a registry lists no sessions.
        """
        client = ApiClient(self, ApiServer(self.config))
        self.assertEqual(client.call("GET", f"/{DOMAIN}/sessions")[1], {"success": True, "sessions": []})

    def test_get(self) -> None:
        """
        One session is described in full.
        """
        code, body, _ = self.client.call("GET", f"/{DOMAIN}/sessions/ses_test1")
        self.assertEqual(code, 200)
        self.assertEqual(body, {"success": True, "session": json.loads(json.dumps(describe_session(self.call)))})
        self.assertEqual(body["session"]["state"], "active")

    def test_get_unknown(self) -> None:
        """
        An unknown session id answers 404.
        """
        self.assertError(self.client.call("GET", f"/{DOMAIN}/sessions/ses_nope"), 404, "sessionId")

    def test_get_other_tenants_session(self) -> None:
        """
        Another tenant's session answers 404 with the tenant's own valid token, as an unknown one does.
        """
        other = self.client.call("GET", f"/{DOMAIN}/sessions/ses_other")
        unknown = self.client.call("GET", f"/{DOMAIN}/sessions/ses_nope")
        self.assertError(other, 404, "sessionId")
        self.assertEqual(other[1], unknown[1])

    def test_ended_session(self) -> None:
        """
        An ended session is no longer listed but can still be read.
        """
        self.call.report(InboundEnded, reason="bye")
        self.assertEqual(self.client.call("GET", f"/{DOMAIN}/sessions")[1]["sessions"], [])
        code, body, _ = self.client.call("GET", f"/{DOMAIN}/sessions/ses_test1")
        self.assertEqual((code, body["session"]["state"]), (200, "ended"))
