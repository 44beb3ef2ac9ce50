# -*- test-case-name: tests.test_api -*-
"""
The REST API (SPEC section 6) on a class-bound Klein app.

L{ApiServer} holds C{app = Klein()} as a class attribute: Klein binds the
routes to each instance, so handlers are methods that see the injected
collaborators (configuration, call registry, metrics registry, reactor).
C{ApiServer(...).app.resource()} mounts in any C{Site}, or in
C{treq.testing.StubTreq} for tests, with no port and no reactor.

Implemented: C{GET /health} and C{GET /metrics}.  The tenant routes
(C{POST /{domain}/startsiprecforward} ...) come later; see the comment block
I{Tenant routes} in L{ApiServer} for where and how they plug in.

Every answer is JSON (except C{/metrics}); errors are
C{{"success": false, "error": <message>, "field": <name, when one is at
fault>}} with the status of the L{ApiRequestError}, 404 for an unknown path or
a C{KeyError} (unknown session, tenant ...), 405 for a wrong method, and 500
(logged) for our own bugs.
"""

from __future__ import annotations

import json
from typing import Any

from klein import Klein
from prometheus_client import CollectorRegistry, Info
from prometheus_client.exposition import choose_encoder
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException

from aiconnect import __version__
from aiconnect.config import Config
from aiconnect.errors import AiconnectError

__all__ = ["ApiRequestError", "ApiServer", "JSON_CONTENT_TYPE"]

JSON_CONTENT_TYPE = b"application/json; charset=utf-8"


class ApiRequestError(AiconnectError):
    """
    A request the API refuses: answered with C{status} and a JSON error
    naming the C{field} at fault (SPEC s6: "Malformed input -> 400 with a JSON
    error naming the field").

    @ivar status: The HTTP status (400, 401, 403, 404, 409 ...).
    @ivar message: What is wrong, for the client.
    @ivar field: The JSON field (dotted for nested ones) at fault, or
        L{None}.
    """

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        """
        @param status: The HTTP status.
        @param message: What is wrong.
        @param field: The field at fault, if any.
        """
        super().__init__(status, message, field)
        self.status = status
        self.message = message
        self.field = field

    def __str__(self) -> str:
        """
        @return: C{"<status> [<field>: ]<message>"}.
        """
        where = f"{self.field}: " if self.field else ""
        return f"{self.status} {where}{self.message}"


def _json(request: IRequest, status: int, payload: dict[str, Any]) -> bytes:
    """
    Set the status and content type of a JSON answer.

    @param request: The request being answered.
    @param status: The HTTP status.
    @param payload: The JSON object.
    @return: The encoded body.
    """
    request.setResponseCode(status)
    request.setHeader(b"content-type", JSON_CONTENT_TYPE)
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _error(request: IRequest, status: int, message: str, field: str | None = None) -> bytes:
    """
    @return: The encoded JSON error body, with the status set.
    """
    payload: dict[str, Any] = {"success": False, "error": message}
    if field is not None:
        payload["field"] = field
    return _json(request, status, payload)


class ApiServer:
    """
    The REST API: C{ApiServer(config, ...).app.resource()}.

    @cvar app: The class-level Klein app; each instance sees its own routes
        bound to itself.
    @ivar metrics_registry: The Prometheus registry served on C{/metrics};
        other components register their counters on it.
    """

    app = Klein()
    log = Logger()

    def __init__(
        self,
        config: Config,
        registry: Any = None,
        metrics_registry: CollectorRegistry | None = None,
        reactor: IReactorTime | None = None,
    ) -> None:
        """
        @param config: The configuration (tenants, for the tenant routes).
        @param registry: The C{CallRegistry} (C{aiconnect.registry}) the
            tenant routes read sessions from; L{None} until they exist.
        @param metrics_registry: The Prometheus registry to serve; a fresh
            private one if omitted (never the process-global default, so
            instances and tests stay isolated).
        @param reactor: The reactor, for time-dependent handlers (injected,
            never imported: C{tap.makeService} passes the global one).
        """
        self._config = config
        self._registry = registry
        self._reactor = reactor
        if metrics_registry is None:
            metrics_registry = CollectorRegistry(auto_describe=True)
        self.metrics_registry = metrics_registry
        build = Info("aiconnect_build", "AI Connect build information", registry=None)
        build.info({"version": __version__})
        try:
            metrics_registry.register(build)
        except ValueError:
            # Already registered by another ApiServer on the same registry.
            pass

    # --- operations ---------------------------------------------------------

    @app.route("/health", methods=["GET"])
    def health(self, request: IRequest) -> bytes:
        """
        C{GET /health}: liveness.

        @param request: The request.
        @return: 200 C{{"status": "ok", "version": <version>}}.
        """
        return _json(request, 200, {"status": "ok", "version": __version__})

    @app.route("/metrics", methods=["GET"])
    def metrics(self, request: IRequest) -> bytes:
        """
        C{GET /metrics}: the Prometheus exposition of L{metrics_registry},
        text format 0.0.4 or OpenMetrics as the C{Accept} header asks.

        @param request: The request.
        @return: The exposition.
        """
        accept = request.getHeader(b"accept")
        encoder, content_type = choose_encoder(accept.decode("latin-1") if accept else "")
        request.setResponseCode(200)
        request.setHeader(b"content-type", content_type.encode("latin-1"))
        request.setHeader(b"cache-control", b"no-store")
        return bytes(encoder(self.metrics_registry))

    # --- Tenant routes (SPEC s6), to come -------------------------------------
    #
    # Add them here as methods, e.g.
    #
    #     @app.route("/<string:domain>/startsiprecforward", methods=["POST"])
    #     def start_siprec_forward(self, request, domain): ...
    #
    # Conventions:
    #   - resolve the tenant with self._config.tenant_for_domain(domain)
    #     (None -> raise KeyError, answered 404) and authenticate the bearer
    #     credential against that tenant only (api_tokens / jwt_public_key);
    #   - read sessions from self._registry; a missing session raises KeyError
    #     (-> 404);
    #   - reject malformed input with ApiRequestError(400, message, field=...);
    #   - answer with _json(request, status, {"success": True, ...}).
    # Routes literally named health/metrics take precedence over <domain>.

    # --- error mapping -------------------------------------------------------

    @app.handle_errors(ApiRequestError)
    def _request_error(self, request: IRequest, failure: Failure) -> bytes:
        """
        Answer an L{ApiRequestError} with its status and a JSON error.
        """
        error = failure.value
        assert isinstance(error, ApiRequestError)
        return _error(request, error.status, error.message, error.field)

    @app.handle_errors(KeyError)
    def _not_found(self, request: IRequest, failure: Failure) -> bytes:
        """
        Answer a C{KeyError} (unknown tenant, session, forward ...) with 404.
        """
        return _error(request, 404, "not found")

    @app.handle_errors(HTTPException)
    def _http_error(self, request: IRequest, failure: Failure) -> bytes:
        """
        Answer routing errors (unknown path 404, wrong method 405 ...) in
        JSON, keeping their headers (C{Allow}).
        """
        error = failure.value
        assert isinstance(error, HTTPException)
        status = error.code or 500
        response = error.get_response({})
        for name, value in response.headers:
            if name.lower() not in ("content-type", "content-length"):
                request.setHeader(name.encode("latin-1"), value.encode("latin-1"))
        return _error(request, status, error.name.lower() if error.name else "error")

    @app.handle_errors(Exception)
    def _internal_error(self, request: IRequest, failure: Failure) -> bytes:
        """
        Log an unexpected exception (our bug) and answer 500.
        """
        self.log.failure(
            "Unhandled error in API request {method} {uri}",
            failure,
            method=request.method,
            uri=request.uri,
        )
        return _error(request, 500, "internal error")
