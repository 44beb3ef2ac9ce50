# -*- test-case-name: tests.test_api,tests.test_openapi -*-
"""
The REST API (SPEC section 6) on a class-bound Klein app.

L{ApiServer} holds C{app = Klein()} as a class attribute: Klein binds the
routes to each instance, so handlers are methods that see the injected
collaborators (configuration, call registry, metrics registry, reactor).
C{ApiServer(...).app.resource()} mounts in any C{Site}, or in
C{treq.testing.StubTreq} for tests, with no port and no reactor.

Routes:

    - C{GET /health}, C{GET /metrics} (Prometheus), C{GET /openapi.json}:
      no credential;
    - C{GET /{domain}/sessions}, C{GET /{domain}/sessions/{sessionId}},
      C{POST /{domain}/startsiprecforward}, C{POST
      /{domain}/stopsiprecforward}, and C{POST /{domain}/startstream},
      C{/stopstream}, C{/startrecording}, C{/stoprecording} (501 until
      streaming and recording exist): a bearer credential of the tenant
      whose domain is in the path.

Every answer is JSON (except C{/metrics}); errors are
C{{"success": false, "error": <message>, "field": <name, when one is at
fault>}} with the status of the L{ApiRequestError}, 404 for an unknown path or
a C{KeyError}, 405 for a wrong method, and 500 (logged) for our own bugs.

The OpenAPI 3.1 document of all of it, callbacks included, is L{OPENAPI},
built here (the single source of truth), served on C{GET /openapi.json} and
copied to C{docs/openapi.json} (C{python -m aiconnect.api >
docs/openapi.json}; a test fails when the copy drifts).
"""

from __future__ import annotations

import hmac
import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from klein import Klein
from prometheus_client import CollectorRegistry, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException

from aiconnect import __version__, events
from aiconnect.call import CallState, OrderRefused
from aiconnect.config import Config, TenantConfig, normalize_domain
from aiconnect.errors import AiconnectError, ConfigError
from aiconnect.sip import abnf
from aiconnect.siprec import orders
from aiconnect.siprec.orders import OrderError, parse_forward_order
from aiconnect.text import clean_json, json_problem, replace_surrogates
from aiconnect.views import describe_session, summarize_session

__all__ = [
    "API_VERSION",
    "JSON_CONTENT_TYPE",
    "JWT_LEEWAY",
    "MAX_BODY",
    "MAX_STATS_PER_PROVIDER",
    "MAX_SESSION_ID",
    "OPENAPI",
    "ApiRequestError",
    "ApiServer",
    "StatsProvider",
]

JSON_CONTENT_TYPE = b"application/json; charset=utf-8"

#: Largest request body accepted, in bytes; larger ones are answered 413.
MAX_BODY = 64 * 1024

#: Longest C{sessionId} accepted in a request body.
MAX_SESSION_ID = 256

#: Longest bearer credential looked at (JWTs included).
MAX_CREDENTIAL = 8192

#: Seconds of clock skew allowed on a JWT's C{exp}, C{nbf} and C{iat}.
JWT_LEEWAY = 30

#: The version of the API contract (C{info.version} of L{OPENAPI}); not the
#: software version, which C{GET /health} reports.
API_VERSION = "1.0.0"

#: Most gauges one stats provider may publish (a guard against a provider
#: keyed by session or forward ids, which would explode the metric names).
MAX_STATS_PER_PROVIDER = 1000

#: A zero-argument callable returning a (possibly nested) mapping of numbers;
#: see L{ApiServer.add_stats_provider}.
StatsProvider = Callable[[], Any]

# RFC 6750 s2.1 asks for a b64token, but configured api_tokens may hold any
# character but whitespace and controls (config.py): accept those.
_CREDENTIAL = re.compile(rb"[^\x00-\x20\x7f]+\Z")
_PROVIDER_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")
_NOT_METRIC_CHAR = re.compile(r"[^a-z0-9_]+")
_REALM = 'Bearer realm="aiconnect"'
_STREAM_ROUTES = ("startstream", "stopstream", "startrecording", "stoprecording")


class ApiRequestError(AiconnectError):
    """
    A request the API refuses: answered with C{status} and a JSON error
    naming the C{field} at fault (SPEC s6: "Malformed input -> 400 with a JSON
    error naming the field").

    @ivar status: The HTTP status (400, 401, 403, 404, 409 ...).
    @ivar message: What is wrong, for the client.
    @ivar field: The JSON field (dotted for nested ones) at fault, or
        L{None}.
    @ivar headers: Extra response headers (C{WWW-Authenticate} of a 401).
    """

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """
        @param status: The HTTP status.
        @param message: What is wrong.
        @param field: The field at fault, if any.
        @param headers: Extra response headers, if any.
        """
        super().__init__(status, message, field)
        self.status = status
        self.message = message
        self.field = field
        self.headers = dict(headers or {})

    def __str__(self) -> str:
        """
        @return: C{"<status> [<field>: ]<message>"}.
        """
        where = f"{self.field}: " if self.field else ""
        return f"{self.status} {where}{self.message}"


class _DuplicateKey(ValueError):
    """
    A JSON object of a request body has the same key twice.

    @ivar key: The key.
    """

    def __init__(self, key: str) -> None:
        """
        @param key: The duplicated key.
        """
        super().__init__(key)
        self.key = key


def _json(request: IRequest, status: int, payload: Mapping[str, Any]) -> bytes:
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
    try:
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate that slipped past the boundary must not turn an
        # answer into a 500 (the values are decoded where they enter).
        return json.dumps(clean_json(payload), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _error(request: IRequest, status: int, message: str, field: str | None = None) -> bytes:
    """
    @return: The encoded JSON error body, with the status set.
    """
    payload: dict[str, Any] = {"success": False, "error": message}
    if field is not None:
        payload["field"] = field
    return _json(request, status, payload)


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """
    C{object_pairs_hook} refusing duplicate keys (RFC 8259 s4: their meaning
    is unpredictable, so we do not guess).

    @param pairs: The members of one JSON object.
    @return: The object.
    @raise _DuplicateKey: If a key appears twice.
    """
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    """
    C{parse_constant} refusing C{NaN} and C{Infinity} (not JSON, RFC 8259 s6).

    @raise ValueError: Always.
    """
    raise ValueError(f"{name} is not a JSON value")


def _read_json_object(request: IRequest) -> dict[str, Any]:
    """
    Read a request body that must be a JSON object of at most L{MAX_BODY}
    bytes.  The C{Content-Type} is not checked (clients that send JSON as
    C{text/plain} or C{application/x-www-form-urlencoded} work too).

    @param request: The request.
    @return: The object.
    @raise ApiRequestError: 413 for a body over L{MAX_BODY}; 400 (field
        C{body}, the duplicated key, or the path of the string) for an
        empty body, a body that is not UTF-8 JSON, has a duplicate key, is
        not an object, or holds a C{"\ud800"}-style escape that is not
        valid Unicode (a lone surrogate: it could never be echoed as
        JSON).
    """
    too_large = ApiRequestError(413, f"request body larger than {MAX_BODY} bytes", "body")
    length = request.getHeader(b"content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            declared = 0
        if declared > MAX_BODY:
            raise too_large
    content = request.content
    if content is None:
        data = b""
    else:
        content.seek(0)
        data = content.read(MAX_BODY + 1)
    if len(data) > MAX_BODY:
        raise too_large
    if not data.strip():
        raise ApiRequestError(400, "required: a JSON object", "body")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApiRequestError(400, "not UTF-8", "body") from None
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_constant=_no_constant)
    except _DuplicateKey as e:
        raise ApiRequestError(400, f"duplicate key {e.key!r}", replace_surrogates(e.key)) from None
    except RecursionError:
        raise ApiRequestError(400, "not valid JSON: nested too deeply", "body") from None
    except ValueError as e:
        raise ApiRequestError(400, f"not valid JSON: {e}", "body") from None
    if not isinstance(value, dict):
        raise ApiRequestError(400, "must be a JSON object", "body")
    problem = json_problem(value)
    if problem is not None:
        raise ApiRequestError(400, problem[1], problem[0])
    return value


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


class _StatsCollector:
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


class ApiServer:
    """
    The REST API: C{ApiServer(config, ...).app.resource()}.

    @cvar app: The class-level Klein app; each instance sees its own routes
        bound to itself.
    @ivar metrics_registry: The Prometheus registry served on C{/metrics};
        other components register their counters on it, or publish through
        L{add_stats_provider}.
    """

    app = Klein()
    log = Logger()

    def __init__(
        self,
        config: Config,
        registry: Any = None,
        metrics_registry: CollectorRegistry | None = None,
        reactor: IReactorTime | None = None,
        stats_providers: Mapping[str, StatsProvider] | None = None,
    ) -> None:
        """
        @param config: The configuration (tenants: domains, API tokens, JWT
            public keys, trunks).
        @param registry: The L{aiconnect.registry.CallRegistry} the tenant
            routes read sessions from; L{None} = no sessions at all.
        @param metrics_registry: The Prometheus registry to serve; a fresh
            private one if omitted (never the process-global default, so
            instances and tests stay isolated).
        @param reactor: The reactor, for time-dependent handlers (injected,
            never imported: C{tap.makeService} passes the global one).
        @param stats_providers: Name -> zero-argument callable returning a
            (possibly nested) mapping of numbers, published on C{/metrics};
            see L{add_stats_provider}.
        @raise ConfigError: If a tenant's C{jwt_public_key} is not a
            readable PEM RSA public key.
        @raise ValueError: If a stats provider name is invalid.
        """
        self._config = config
        self._registry = registry
        self._reactor = reactor
        self._jwt_keys = _load_jwt_keys(config)
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
        self._stats = _StatsCollector()
        metrics_registry.register(self._stats)
        for name, provider in (stats_providers or {}).items():
            self.add_stats_provider(name, provider)

    # --- stats providers ---------------------------------------------------

    def add_stats_provider(self, name: str, provider: StatsProvider) -> None:
        """
        Publish a component's counters on C{/metrics} without this module
        knowing them.  At each scrape C{provider()} is called; every number
        in what it returns (booleans as 0/1, nested mappings flattened,
        other values skipped) becomes a gauge
        C{aiconnect_<name>_<key>[_<subkey>...]}, keys in snake_case
        (C{packetsSent} -> C{packets_sent}).  Keys must be a fixed set
        (never session or forward ids: each key is a metric name); lists are
        skipped, and at most L{MAX_STATS_PER_PROVIDER} gauges are served per
        provider.  A provider that raises is logged and reported as
        C{aiconnect_stats_provider_up{provider=name} 0}; the others are
        still served.  When two keys map to the same metric name, the first
        wins.

        @param name: The provider's name: C{[a-z][a-z0-9_]*}
            (C{"transport"}, C{"relay"}, C{"outbox"} ...).
        @param provider: The zero-argument callable; it runs on the reactor
            thread and must be quick.
        @raise ValueError: If the name is invalid or already taken.
        """
        if not _PROVIDER_NAME.match(name):
            raise ValueError(f"stats provider name {name!r} is not [a-z][a-z0-9_]*")
        if name in self._stats.providers:
            raise ValueError(f"stats provider {name!r} is already registered")
        if not callable(provider):
            raise ValueError(f"stats provider {name!r} is not callable")
        self._stats.providers[name] = provider

    def remove_stats_provider(self, name: str) -> None:
        """
        Stop publishing a provider (no error if it is not there).

        @param name: The name given to L{add_stats_provider}.
        """
        self._stats.providers.pop(name, None)

    @property
    def stats_providers(self) -> dict[str, StatsProvider]:
        """
        A copy of the registered providers, name -> callable.
        """
        return dict(self._stats.providers)

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

    @app.route("/openapi.json", methods=["GET"])
    def openapi(self, request: IRequest) -> bytes:
        """
        C{GET /openapi.json}: the OpenAPI 3.1 document, L{OPENAPI}.

        @param request: The request.
        @return: The document.
        """
        return _json(request, 200, OPENAPI)

    # --- tenant routes (SPEC s6) ---------------------------------------------

    @app.route("/<string:domain>/sessions", methods=["GET"])
    def list_sessions(self, request: IRequest, domain: str) -> bytes:
        """
        C{GET /{domain}/sessions}: the tenant's live sessions.

        @param request: The request.
        @param domain: The tenant's domain.
        @return: 200 C{{"success": true, "sessions": [<summary>, ...]}}.
        """
        tenant = self._authenticate(request, domain)
        calls = [] if self._registry is None else self._registry.active(tenant.domain)
        return _json(request, 200, {"success": True, "sessions": [summarize_session(c) for c in calls]})

    @app.route("/<string:domain>/sessions/<string:session_id>", methods=["GET"])
    def get_session(self, request: IRequest, domain: str, session_id: str) -> bytes:
        """
        C{GET /{domain}/sessions/{sessionId}}: one session of the tenant,
        live or recently ended.

        @param request: The request.
        @param domain: The tenant's domain.
        @param session_id: The session id.
        @return: 200 C{{"success": true, "session": <description>}}.
        @raise ApiRequestError: 404 for an unknown session or another
            tenant's.
        """
        tenant = self._authenticate(request, domain)
        call = self._call(tenant, session_id)
        return _json(request, 200, {"success": True, "session": describe_session(call)})

    @app.route("/<string:domain>/startsiprecforward", methods=["POST"])
    def start_siprec_forward(self, request: IRequest, domain: str) -> bytes:
        """
        C{POST /{domain}/startsiprecforward}: order a forward of a live
        session (SPEC s3 object plus C{sessionId}).  Answered at once; the
        outcome follows as C{SIPRECFORWARDSTARTED} or C{SIPRECFORWARDFAILED}.

        @param request: The request.
        @param domain: The tenant's domain.
        @return: 200 C{{"success": true, "forwardId": <id>}}.
        @raise ApiRequestError: 400 naming the field at fault, 404 for an
            unknown session, 409 for a session that is ending or ended or
            that has reached C{max_forwards_per_call} /
            C{max_outputs_per_call} (the error names the limit).
        """
        tenant = self._authenticate(request, domain)
        body = _read_json_object(request)
        session_id = _session_id(body)
        fields = {k: v for k, v in body.items() if k != "sessionId"}
        try:
            order = parse_forward_order(fields, tenant)
        except OrderError as e:
            raise ApiRequestError(400, e.message, e.field or "body") from None
        call = self._call(tenant, session_id)
        try:
            forward_id = call.order_forward(order)
        except OrderRefused as e:
            # The Call decides (ending/ended, or a [limits] cap reached).
            raise ApiRequestError(409, e.message, None if e.limit else "sessionId") from None
        self.log.info(
            "API: forward {forward_id} to {uri} ordered for session {session_id}",
            tenant=tenant.domain,
            session_id=session_id,
            forward_id=forward_id,
            uri=order.uri,
        )
        return _json(request, 200, {"success": True, "forwardId": forward_id})

    @app.route("/<string:domain>/stopsiprecforward", methods=["POST"])
    def stop_siprec_forward(self, request: IRequest, domain: str) -> bytes:
        """
        C{POST /{domain}/stopsiprecforward}: stop one forward of a session
        (C{forwardId}) or all of them (no C{forwardId}).  Stopping is
        idempotent: forwards already stopped or failed are not listed.

        @param request: The request.
        @param domain: The tenant's domain.
        @return: 200 C{{"success": true, "stopped": [<forwardId>, ...]}}.
        @raise ApiRequestError: 400 naming the field at fault, 404 for an
            unknown session or forward.
        """
        tenant = self._authenticate(request, domain)
        body = _read_json_object(request)
        session_id = _session_id(body)
        for key in sorted(body):
            if key not in ("sessionId", "forwardId"):
                raise ApiRequestError(400, "unknown field", key)
        forward_id = body.get("forwardId")
        if forward_id is not None and (not isinstance(forward_id, str) or not forward_id):
            raise ApiRequestError(400, "must be a non-empty string (or absent: all forwards)", "forwardId")
        call = self._call(tenant, session_id)
        try:
            stopped = call.stop_forwards(forward_id, events.STOPPED_BY_API)
        except KeyError:
            raise ApiRequestError(404, "unknown forward of this session", "forwardId") from None
        self.log.info(
            "API: forwards {stopped} of session {session_id} stopped",
            tenant=tenant.domain,
            session_id=session_id,
            stopped=stopped,
        )
        return _json(request, 200, {"success": True, "stopped": stopped})

    @app.route("/<string:domain>/<any(" + ",".join(_STREAM_ROUTES) + "):action>", methods=["POST"])
    def stream_or_recording(self, request: IRequest, domain: str, action: str) -> bytes:
        """
        C{POST /{domain}/startstream}, C{/stopstream}, C{/startrecording},
        C{/stoprecording}: authenticated and checked for C{sessionId}, then
        501 until WebSocket streaming and recording exist.

        @param request: The request.
        @param domain: The tenant's domain.
        @param action: Which of the four.
        @return: 501 C{{"success": false, "error": "not implemented yet"}}.
        @raise ApiRequestError: 400 for a missing C{sessionId}, 404 for an
            unknown session.
        """
        tenant = self._authenticate(request, domain)
        body = _read_json_object(request)
        self._call(tenant, _session_id(body))
        return _error(request, 501, "not implemented yet")

    # --- helpers --------------------------------------------------------------

    def _authenticate(self, request: IRequest, domain: str) -> TenantConfig:
        """
        Check the bearer credential of a tenant route (RFC 6750): one of the
        tenant's C{api_tokens} (constant-time comparison), or an RS256 JWT
        its C{jwt_public_key} verifies (C{exp}, C{nbf}, C{iat} honoured when
        present, L{JWT_LEEWAY} seconds of skew; an C{aud} claim, when
        present, must name the tenant's domain).  An unknown domain is
        refused like a wrong credential, so the answer never tells which
        domains exist.  The credential is never logged.

        @param request: The request.
        @param domain: The domain of the path.
        @return: The tenant.
        @raise ApiRequestError: 401 with C{WWW-Authenticate: Bearer}.
        """
        header = request.getHeader(b"authorization")
        tenant = self._config.tenant_for_domain(domain)
        peer = _peer(request)
        if header is None:
            self.log.debug("API: no credential for {domain} from {peer}", domain=domain, peer=peer)
            raise ApiRequestError(401, "missing bearer credential", headers={"WWW-Authenticate": _REALM})
        scheme, _, credential = header.strip().partition(b" ")
        credential = credential.strip()
        why: str | None = None
        if scheme.lower() != b"bearer" or not credential:
            why = "not a Bearer credential"
        elif len(credential) > MAX_CREDENTIAL or not _CREDENTIAL.match(credential):
            why = "malformed credential"
        elif tenant is None:
            why = "unknown domain"
        elif not self._credential_valid(tenant, credential):
            why = "credential refused"
        if why is not None or tenant is None:
            self.log.info(
                "API: authentication failed for {domain} from {peer}: {reason}",
                domain=domain,
                peer=peer,
                reason=why,
            )
            raise ApiRequestError(
                401,
                "invalid bearer credential",
                headers={"WWW-Authenticate": _REALM + ', error="invalid_token"'},
            )
        return tenant

    def _credential_valid(self, tenant: TenantConfig, credential: bytes) -> bool:
        """
        @param tenant: The tenant of the path.
        @param credential: The bearer credential (no whitespace or controls).
        @return: Whether it is one of the tenant's tokens or a JWT its key
            verifies.
        """
        matched = False
        for token in tenant.api_tokens:
            # Compare against every token: the time taken says nothing.
            matched |= hmac.compare_digest(credential, token.encode("utf-8"))
        if matched:
            return True
        key = self._jwt_keys.get(tenant.domain)
        if key is None or credential.count(b".") != 2:
            return False
        try:
            claims = jwt.decode(
                credential.decode("ascii"),
                key,
                algorithms=["RS256"],
                leeway=JWT_LEEWAY,
                options={"verify_aud": False},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as e:
            self.log.debug("API: JWT refused for {domain}: {reason}", domain=tenant.domain, reason=str(e))
            return False
        audience = claims.get("aud")
        if audience is None:
            return True
        names = [audience] if isinstance(audience, str) else audience
        if not isinstance(names, list):
            return False
        return any(isinstance(n, str) and normalize_domain(n) == tenant.domain for n in names)

    def _call(self, tenant: TenantConfig, session_id: str) -> Any:
        """
        @param tenant: The authenticated tenant.
        @param session_id: The session id.
        @return: The tenant's L{aiconnect.call.Call} (live or recently
            ended).
        @raise ApiRequestError: 404 (field C{sessionId}) for an unknown
            session or another tenant's.
        """
        if self._registry is not None:
            try:
                return self._registry.get(tenant.domain, session_id)
            except KeyError:
                pass
        raise ApiRequestError(404, "unknown session", "sessionId")

    # --- error mapping -------------------------------------------------------

    @app.handle_errors(ApiRequestError)
    def _request_error(self, request: IRequest, failure: Failure) -> bytes:
        """
        Answer an L{ApiRequestError} with its status, headers and a JSON
        error.
        """
        error = failure.value
        assert isinstance(error, ApiRequestError)
        for name, value in error.headers.items():
            request.setHeader(name.encode("latin-1"), value.encode("latin-1"))
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


def _session_id(body: Mapping[str, Any]) -> str:
    """
    @param body: A request body.
    @return: Its C{sessionId}.
    @raise ApiRequestError: 400 (field C{sessionId}) if it is missing or
        not a non-empty string of at most L{MAX_SESSION_ID} characters.
    """
    value = body.get("sessionId")
    if value is None:
        raise ApiRequestError(400, "required", "sessionId")
    if not isinstance(value, str) or not value or len(value) > MAX_SESSION_ID:
        raise ApiRequestError(
            400, f"must be a non-empty string of at most {MAX_SESSION_ID} characters", "sessionId"
        )
    return value


def _peer(request: IRequest) -> str:
    """
    @return: The client's address, for logs.
    """
    address = request.getClientAddress()
    host = getattr(address, "host", None)
    return str(host) if host is not None else str(address)


def _load_jwt_keys(config: Config) -> dict[str, RSAPublicKey]:
    """
    Load every tenant's C{jwt_public_key}.

    @param config: The configuration.
    @return: Tenant domain -> RSA public key.
    @raise ConfigError: Naming C{tenant[i].jwt_public_key} if a file cannot
        be read or holds no RSA public key.
    """
    keys: dict[str, RSAPublicKey] = {}
    for i, tenant in enumerate(config.tenants):
        if not tenant.jwt_public_key:
            continue
        where = f"tenant[{i}].jwt_public_key"
        try:
            with open(tenant.jwt_public_key, "rb") as f:
                pem = f.read()
        except OSError as e:
            raise ConfigError(where, f"cannot read {tenant.jwt_public_key}: {e.strerror}") from None
        try:
            key = load_pem_public_key(pem)
        except (ValueError, TypeError) as e:
            raise ConfigError(where, f"{tenant.jwt_public_key} is not a PEM public key: {e}") from None
        if not isinstance(key, RSAPublicKey):
            raise ConfigError(where, f"{tenant.jwt_public_key} is not an RSA key (RS256 needs one)")
        keys[tenant.domain] = key
    return keys


# --- the OpenAPI document ---------------------------------------------------------


def _ref(name: str) -> dict[str, Any]:
    """
    @return: A reference to C{#/components/schemas/<name>}.
    """
    return {"$ref": "#/components/schemas/" + name}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """
    @return: C{schema} or C{null} (OpenAPI 3.1 / JSON Schema 2020-12).
    """
    if "type" in schema and isinstance(schema["type"], str):
        return {**schema, "type": [schema["type"], "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def _pattern(regex: re.Pattern[str]) -> str:
    """
    An anchored JSON Schema pattern from one of our C{...\\Z} regexes.
    """
    text = regex.pattern
    if text.endswith("\\Z"):
        text = text[:-2]
    return "^" + text + "$"


def _described(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """
    @return: C{schema} with a description (a C{$ref} wrapped in C{allOf}).
    """
    if "$ref" in schema:
        return {"allOf": [schema], "description": description}
    return {**schema, "description": description}


def _event_schema(name: str, description: str, fields: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """
    @return: The schema of one event: the common fields and its own.
    """
    return {
        "description": description,
        "allOf": [
            _ref("EventCommon"),
            {
                "type": "object",
                "required": ["event"] + required,
                "properties": {"event": {"const": name}, **fields},
            },
        ],
    }


def _json_body(schema: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    """
    @return: A request body or response C{content} for JSON.
    """
    out: dict[str, Any] = {"content": {"application/json": {"schema": schema}}}
    if description is not None:
        out["description"] = description
    return out


def _success(schema_name: str, description: str) -> dict[str, Any]:
    """
    @return: A 200 response with a JSON schema.
    """
    return {"description": description, **_json_body(_ref(schema_name))}


def _errors(*statuses: int) -> dict[str, Any]:
    """
    @return: The error responses of an operation, by status.
    """
    names = {
        400: "BadRequest",
        401: "Unauthorized",
        404: "NotFound",
        409: "Conflict",
        413: "PayloadTooLarge",
        501: "NotImplemented",
    }
    return {str(s): {"$ref": "#/components/responses/" + names[s]} for s in statuses}


# orders.CONTROL_RE negated: no control character (HTAB allowed).
_NO_CONTROL = "^" + orders.CONTROL_RE.pattern.replace("[", "[^", 1) + "*$"
_DOMAIN_PARAMETER = {"$ref": "#/components/parameters/domain"}
_TENANT_SECURITY = [{"apiToken": []}, {"jwt": []}]


def _forward_order_properties() -> dict[str, Any]:
    """
    @return: The properties of the C{startSIPRecForward} object (SPEC s3),
        from the validation constants of L{aiconnect.siprec.orders}.
    """
    party_or_null = {"anyOf": [_ref("Party"), {"type": "null"}]}
    return {
        "uri": {
            "type": "string",
            "description": "Required. A sip: or sips: URI whose user part is the `match` of one of the "
            "tenant's trunks and whose domain is the tenant's domain; the trunk gives the real target "
            "(FQDN resolved per RFC 3263, or IP, optional port), the transport and digest credentials.",
            "examples": ["sip:aiforward@customer.example.com"],
        },
        "codec": {
            "type": "string",
            "enum": list(orders.CODECS),
            "default": "PCMA",
            "description": "Codec towards the SRS (case-insensitive); transcoded when the inbound "
            "stream differs.",
        },
        "srtp": {
            "type": "boolean",
            "default": False,
            "description": "SDES-keyed SRTP towards the SRS, fresh keys per forward and stream; only "
            "with a TLS trunk (else 400).",
        },
        "caller": _described(party_or_null, "The calling party's overrides. Alias: `callingParty`."),
        "callingParty": _described(party_or_null, "Alias of `caller`; giving both is an error."),
        "calledParty": _described(party_or_null, "The called party's overrides. Alias: `callee`."),
        "callee": _described(party_or_null, "Alias of `calledParty`; giving both is an error."),
        "xHeaders": {
            "type": ["object", "null"],
            "description": f"SIP headers added to every outbound request of the forward (INVITE, ACK, "
            f"BYE, re-INVITE, UPDATE, CANCEL): `X-` token names, at most {orders.MAX_X_HEADERS}, "
            f"values without CR, LF or other control characters, at most "
            f"{orders.MAX_X_HEADER_VALUE} bytes (UTF-8) each.",
            "maxProperties": orders.MAX_X_HEADERS,
            "propertyNames": {"pattern": _pattern(orders.X_HEADER_RE)},
            "additionalProperties": {
                "type": "string",
                "maxLength": orders.MAX_X_HEADER_VALUE,
                "pattern": _NO_CONTROL,
            },
            "examples": [{"X-Correlation-Id": "a3b47c1e", "X-Tenant": "acme-cc"}],
        },
        "sipRecForwardReferenceId": {
            "type": ["object", "null"],
            "description": "Any JSON object, echoed unchanged in this forward's events.",
            "examples": [{"ticketId": 98765}],
        },
        "usePrivateIp": {
            "type": "boolean",
            "default": False,
            "description": "Advertise `sip.private_address` instead of `sip.public_address` in SDP, "
            "Via and Contact.",
        },
    }


_ALIAS_CONFLICTS = {
    "not": {
        "anyOf": [
            {
                "required": ["caller", "callingParty"],
                "properties": {"caller": {"type": "object"}, "callingParty": {"type": "object"}},
            },
            {
                "required": ["calledParty", "callee"],
                "properties": {"calledParty": {"type": "object"}, "callee": {"type": "object"}},
            },
        ]
    }
}


def _build_openapi() -> dict[str, Any]:
    """
    Build the OpenAPI 3.1 document of the REST API and of the callbacks
    (C{webhooks}: C{newCall} and C{events}).

    @return: The document (JSON values only).
    """
    order_properties = _forward_order_properties()
    session_id_property = {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_SESSION_ID,
        "description": "The inbound session's id (from `newCall`, the events or `GET /{domain}/sessions`).",
    }
    iso_time = {"type": "string", "format": "date-time", "examples": ["2024-05-01T12:34:56.789Z"]}
    stats = {"type": "object", "additionalProperties": True, "description": "Counters (numbers)."}
    reference = {
        "description": "The order's `sipRecForwardReferenceId`, echoed unchanged (`null` if none).",
    }
    webhook_headers = [
        {
            "name": "webhook-id",
            "in": "header",
            "required": True,
            "description": "The message id: the `eventId` for events, a fresh `msg_…` id for newCall; "
            "the same on every retry.",
            "schema": {"type": "string"},
        },
        {
            "name": "webhook-timestamp",
            "in": "header",
            "required": True,
            "description": "The attempt's time, Unix seconds.",
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        },
        {
            "name": "webhook-signature",
            "in": "header",
            "required": True,
            "description": "Standard Webhooks signature: `v1,` + base64(HMAC-SHA256(key, "
            '"{webhook-id}.{webhook-timestamp}.{body}")), the key being the tenant\'s `signing_secret` '
            "after `whsec_`, base64-decoded. See docs/events.md.",
            "schema": {"type": "string"},
        },
    ]
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "description": "Every error answer.",
            "required": ["success", "error"],
            "properties": {
                "success": {"const": False},
                "error": {"type": "string", "description": "What is wrong, one line."},
                "field": {
                    "type": "string",
                    "description": "The request field at fault, dotted for nested ones "
                    "(`caller.label`, `xHeaders.X-Foo`), `body` for the body as a whole.",
                },
            },
            "additionalProperties": False,
        },
        "Health": {
            "type": "object",
            "required": ["status", "version"],
            "properties": {"status": {"const": "ok"}, "version": {"type": "string"}},
            "additionalProperties": False,
        },
        "Party": {
            "type": "object",
            "description": "Overrides for one party in the forwarded metadata and SDP; absent fields keep "
            "the inbound values.",
            "properties": {
                "name": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": orders.MAX_NAME,
                    "pattern": _NO_CONTROL,
                    "description": "Replaces the participant's `<name>` (not blank, no control characters).",
                },
                "user": {
                    "type": "string",
                    "maxLength": orders.MAX_NAME,
                    "pattern": _pattern(abnf.USER_RE),
                    "description": "Replaces the user part of the participant's AOR (RFC 3261 user).",
                },
                "label": {
                    "type": "string",
                    "pattern": _pattern(orders.LABEL_RE),
                    "description": "Replaces the `a=label` and metadata stream label of the party's stream.",
                },
            },
            "additionalProperties": False,
        },
        "StartSIPRecForward": {
            "type": "object",
            "description": "The startSIPRecForward object (SPEC s3): in the newCall answer, one object or a "
            "list of them.",
            "required": ["uri"],
            "properties": order_properties,
            "additionalProperties": False,
            **_ALIAS_CONFLICTS,
        },
        "StartSIPRecForwardRequest": {
            "type": "object",
            "description": "`sessionId` and the startSIPRecForward fields.",
            "required": ["sessionId", "uri"],
            "properties": {"sessionId": session_id_property, **order_properties},
            "additionalProperties": False,
            **_ALIAS_CONFLICTS,
            "examples": [
                {
                    "sessionId": "ses_4f1c2b7e9a0d3c5b8e6f1a2d",
                    "uri": "sip:aiforward@customer.example.com",
                    "codec": "PCMU",
                    "srtp": True,
                    "caller": {"name": "Alice Andersson", "user": "alice", "label": "labelA"},
                    "calledParty": {"name": "Support IVR", "user": "support", "label": "labelB"},
                    "xHeaders": {"X-Correlation-Id": "a3b47c1e", "X-Tenant": "acme-cc"},
                    "sipRecForwardReferenceId": {"ticketId": 98765},
                    "usePrivateIp": False,
                }
            ],
        },
        "StartSIPRecForwardResponse": {
            "type": "object",
            "required": ["success", "forwardId"],
            "properties": {
                "success": {"const": True},
                "forwardId": {"type": "string", "description": "The new forward's id, as in its events."},
            },
            "additionalProperties": False,
        },
        "StopSIPRecForwardRequest": {
            "type": "object",
            "required": ["sessionId"],
            "properties": {
                "sessionId": session_id_property,
                "forwardId": {
                    "type": ["string", "null"],
                    "minLength": 1,
                    "description": "The forward to stop; absent or `null`: every forward of the session.",
                },
            },
            "additionalProperties": False,
        },
        "StopSIPRecForwardResponse": {
            "type": "object",
            "required": ["success", "stopped"],
            "properties": {
                "success": {"const": True},
                "stopped": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "The forwards being stopped (each ends with SIPRECFORWARDSTOPPED when it "
                    "was established); forwards already stopped or failed are not listed.",
                },
            },
            "additionalProperties": False,
        },
        "SessionRequest": {
            "type": "object",
            "required": ["sessionId"],
            "properties": {"sessionId": session_id_property},
            "additionalProperties": True,
            "description": "`sessionId`; the other fields come with streaming and recording.",
        },
        "SessionState": {
            "type": "string",
            "enum": [s.value for s in CallState],
            "description": "negotiating (INVITE received, not yet ACKed) → active → terminating → ended.",
        },
        "SessionSummary": {
            "type": "object",
            "required": ["sessionId", "callId", "state", "created", "streams", "forwards"],
            "properties": {
                "sessionId": {"type": "string"},
                "callId": {"type": "string", "description": "Call-ID of the inbound INVITE."},
                "state": _ref("SessionState"),
                "created": iso_time,
                "streams": {"type": "integer", "minimum": 0, "description": "Number of inbound streams."},
                "forwards": {"type": "integer", "minimum": 0, "description": "Number of forwards ordered."},
            },
        },
        "Stream": {
            "type": "object",
            "description": "One inbound media stream as negotiated.",
            "required": ["index", "label", "codec", "localPort", "direction", "srtp"],
            "properties": {
                "index": {"type": "integer", "minimum": 0, "description": "The m-line index in the offer."},
                "label": {"type": ["string", "null"], "description": "Its `a=label` (RFC 4574)."},
                "streamId": {"type": ["string", "null"], "description": "The metadata stream id of the label."},
                "codec": {"type": ["string", "null"], "examples": ["PCMU"]},
                "payloadType": {"type": ["integer", "null"]},
                "localPort": {"type": "integer", "description": "Our RTP port; 0 for a rejected stream."},
                "remote": {"type": ["string", "null"], "description": "The SRC's address:port from the SDP."},
                "direction": {"type": "string", "examples": ["sendonly"]},
                "srtp": {"type": "boolean"},
                "participants": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "The metadata participants sending on it.",
                },
            },
        },
        "Participant": {
            "type": "object",
            "description": "One participant of the RFC 7865 metadata (names, AORs, the streams it sends).",
            "additionalProperties": True,
        },
        "Forward": {
            "type": "object",
            "required": ["forwardId", "state", "target"],
            "properties": {
                "forwardId": {"type": "string"},
                "state": {
                    "type": "string",
                    "enum": ["pending", "trying", "active", "stopping", "stopped", "failed"],
                    "description": "pending (session not yet active), trying, active, stopping (BYE sent), "
                    "stopped, failed.",
                },
                "target": {"type": ["string", "null"], "description": "The target in use, once answered."},
                "uri": {"type": "string"},
                "codec": {"type": "string", "enum": list(orders.CODECS)},
                "srtp": {"type": "boolean"},
                "usePrivateIp": {"type": "boolean"},
                "sipRecForwardReferenceId": {"type": "object"},
                "stats": stats,
            },
        },
        "Session": {
            "type": "object",
            "required": [
                "sessionId",
                "tenant",
                "callId",
                "from",
                "to",
                "source",
                "state",
                "created",
                "started",
                "ended",
                "endReason",
                "streams",
                "participants",
                "metadataError",
                "forwards",
                "media",
            ],
            "properties": {
                "sessionId": {"type": "string"},
                "tenant": {"type": "string", "description": "The tenant's domain."},
                "callId": {"type": "string"},
                "from": {"type": "string", "description": "From of the inbound INVITE."},
                "to": {"type": "string", "description": "To of the inbound INVITE."},
                "source": {"type": "string", "description": "The SRC's address."},
                "state": _ref("SessionState"),
                "created": iso_time,
                "started": _nullable(iso_time),
                "ended": _nullable(iso_time),
                "endReason": {
                    "type": ["string", "null"],
                    "description": "As SESSIONCOMPLETED.reason, once ending.",
                },
                "streams": {"type": "array", "items": _ref("Stream")},
                "participants": {"type": "array", "items": _ref("Participant")},
                "metadataError": {
                    "type": ["string", "null"],
                    "description": "Why the metadata could not be used, if so.",
                },
                "forwards": {"type": "array", "items": _ref("Forward")},
                "media": _nullable({**stats, "description": "Media counters of the relay."}),
            },
        },
        "SessionListResponse": {
            "type": "object",
            "required": ["success", "sessions"],
            "properties": {"success": {"const": True}, "sessions": {"type": "array", "items": _ref("SessionSummary")}},
            "additionalProperties": False,
        },
        "SessionResponse": {
            "type": "object",
            "required": ["success", "session"],
            "properties": {"success": {"const": True}, "session": _ref("Session")},
            "additionalProperties": False,
        },
        "NewCallParticipant": {
            "type": "object",
            "description": "A participant of the inbound RFC 7865 metadata.",
            "required": ["participantId", "name", "aor", "send", "recv"],
            "properties": {
                "participantId": {"type": "string", "description": "Its metadata id."},
                "name": {"type": ["string", "null"], "description": "Its `<name>`."},
                "aor": {"type": ["string", "null"], "description": "Its address of record.", "examples": ["sip:alice@example.com"]},
                "send": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Labels of the streams it sends (metadata stream ids when unlabelled).",
                },
                "recv": {"type": "array", "items": {"type": "string"}, "description": "Labels of the streams it receives."},
            },
        },
        "NewCall": {
            "type": "object",
            "description": "The newCall request: a new inbound SIPRec session (see docs/events.md).",
            "required": [
                "sessionId",
                "tenant",
                "callId",
                "from",
                "to",
                "source",
                "participants",
                "streams",
                "metadataError",
                "xHeaders",
            ],
            "properties": {
                "sessionId": {"type": "string", "description": "The id the REST API and the events use."},
                "tenant": {"type": "string", "description": "The tenant's domain."},
                "callId": {"type": "string", "description": "Call-ID of the inbound INVITE."},
                "from": {"type": "string", "description": "From of the inbound INVITE."},
                "to": {"type": "string", "description": "To of the inbound INVITE."},
                "source": {"type": "string", "description": "The SRC's address."},
                "participants": {"type": "array", "items": _ref("NewCallParticipant")},
                "streams": {"type": "array", "items": _ref("Stream")},
                "metadataError": {
                    "type": ["string", "null"],
                    "description": "Why the metadata is missing or unusable (the call is recorded anyway).",
                },
                "xHeaders": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": "The inbound INVITE's X- headers.",
                },
            },
        },
        "NewCallAnswer": {
            "type": "object",
            "description": "The application's decision; every key optional, unknown keys ignored. An empty "
            "2xx body means nothing to start.",
            "properties": {
                "startSIPRecForward": {
                    "oneOf": [
                        _ref("StartSIPRecForward"),
                        {"type": "array", "items": _ref("StartSIPRecForward")},
                    ],
                    "description": "One forward, or a list for several SRS. An invalid one is reported as "
                    "SIPRECFORWARDFAILED with the reason.",
                },
                "startStream": {"type": "object", "description": "WebSocket streaming (to come)."},
                "startRecording": {"type": "object", "description": "File recording (to come)."},
            },
            "additionalProperties": True,
        },
        "EventCommon": {
            "type": "object",
            "required": ["event", "eventId", "sessionId", "tenant", "timestamp", "sequence"],
            "properties": {
                "event": {"type": "string", "enum": list(events.EVENT_NAMES)},
                "eventId": {
                    "type": "string",
                    "pattern": "^evt_[0-9A-HJKMNP-TV-Z]{26}$",
                    "description": "Unique; the `webhook-id` header. De-duplicate on it.",
                },
                "sessionId": {"type": "string"},
                "tenant": {"type": "string"},
                "timestamp": iso_time,
                "sequence": {"type": "integer", "minimum": 1, "description": "1, 2, 3 … per session."},
            },
        },
        "SessionStarted": _event_schema(
            events.SESSIONSTARTED,
            "The inbound session was answered and ACKed.",
            {
                "callId": {"type": "string"},
                "from": {"type": "string"},
                "to": {"type": "string"},
                "streams": {"type": "array", "items": {"type": "string"}, "description": "Labels, SDP order."},
                "newCallError": {
                    "type": ["string", "null"],
                    "description": "`null` if newCall was answered, else why not (the call was answered anyway).",
                },
            },
            ["callId", "from", "to", "streams", "newCallError"],
        ),
        "SipRecForwardStarted": _event_schema(
            events.SIPRECFORWARDSTARTED,
            "A forward is established: the SRS answered 200 and was ACKed.",
            {
                "forwardId": {"type": "string"},
                "uri": {"type": "string"},
                "target": {"type": "string", "description": "`sip:host:port;transport=udp|tcp|tls` used."},
                "codec": {"type": "string", "enum": list(orders.CODECS)},
                "srtp": {"type": "boolean"},
                "sipRecForwardReferenceId": reference,
            },
            ["forwardId", "uri", "target", "codec", "srtp", "sipRecForwardReferenceId"],
        ),
        "SipRecForwardFailed": _event_schema(
            events.SIPRECFORWARDFAILED,
            "A forward could not be established (every target tried), or its order was invalid.",
            {
                "forwardId": {"type": "string"},
                "uri": {"type": "string"},
                "reason": {"type": "string", "description": "SIP reason phrase, or the transport/DNS/TLS cause."},
                "status": {"type": ["integer", "null"], "description": "Final SIP status of the last target."},
                "target": {"type": ["string", "null"], "description": "The last target tried."},
                "targetsTried": {"type": "array", "items": {"type": "string"}},
                "sipRecForwardReferenceId": reference,
            },
            ["forwardId", "uri", "reason", "status", "target", "targetsTried", "sipRecForwardReferenceId"],
        ),
        "SipRecForwardStopped": _event_schema(
            events.SIPRECFORWARDSTOPPED,
            "An established forward ended.",
            {
                "forwardId": {"type": "string"},
                "uri": {"type": "string"},
                "target": {"type": ["string", "null"]},
                "stoppedBy": {
                    "type": "string",
                    "enum": [
                        events.STOPPED_BY_API,
                        events.STOPPED_BY_INBOUND_BYE,
                        events.STOPPED_BY_SRS_BYE,
                        events.STOPPED_BY_ERROR,
                        events.STOPPED_BY_SHUTDOWN,
                    ],
                },
                "reason": {"type": ["string", "null"]},
                "stats": stats,
                "sipRecForwardReferenceId": reference,
            },
            ["forwardId", "uri", "target", "stoppedBy", "reason", "stats", "sipRecForwardReferenceId"],
        ),
        "SessionCompleted": _event_schema(
            events.SESSIONCOMPLETED,
            "The inbound session and all its forwards ended; the last event of a session.",
            {
                "reason": {
                    "type": "string",
                    "enum": [
                        events.COMPLETED_INBOUND_BYE,
                        events.COMPLETED_CANCEL,
                        events.COMPLETED_MEDIA_TIMEOUT,
                        events.COMPLETED_SESSION_TIMER,
                        events.COMPLETED_SHUTDOWN,
                        events.COMPLETED_ERROR,
                    ],
                },
                "duration": {"type": "number", "minimum": 0},
                "stats": stats,
            },
            ["reason", "duration", "stats"],
        ),
        "Event": {
            "oneOf": [
                _ref("SessionStarted"),
                _ref("SipRecForwardStarted"),
                _ref("SipRecForwardFailed"),
                _ref("SipRecForwardStopped"),
                _ref("SessionCompleted"),
            ],
            "discriminator": {
                "propertyName": "event",
                "mapping": {
                    events.SESSIONSTARTED: "#/components/schemas/SessionStarted",
                    events.SIPRECFORWARDSTARTED: "#/components/schemas/SipRecForwardStarted",
                    events.SIPRECFORWARDFAILED: "#/components/schemas/SipRecForwardFailed",
                    events.SIPRECFORWARDSTOPPED: "#/components/schemas/SipRecForwardStopped",
                    events.SESSIONCOMPLETED: "#/components/schemas/SessionCompleted",
                },
            },
        },
    }

    def error_response(description: str, **extra: Any) -> dict[str, Any]:
        return {"description": description, **extra, **_json_body(_ref("Error"))}

    responses = {
        "BadRequest": error_response(
            "Malformed input: the body is not a JSON object, or a field is missing or invalid; `field` names it."
        ),
        "Unauthorized": error_response(
            "No bearer credential, or not one of this tenant's (unknown domains are answered the same way).",
            headers={
                "WWW-Authenticate": {
                    "description": 'RFC 6750 challenge: `Bearer realm="aiconnect"`, with '
                    '`error="invalid_token"` for a refused credential.',
                    "schema": {"type": "string"},
                }
            },
        ),
        "NotFound": error_response(
            "Unknown session (or another tenant's), or unknown forward; `field` names which."
        ),
        "Conflict": error_response(
            "The session is ending or ended (`field`: `sessionId`), or has reached `max_forwards_per_call` "
            "or `max_outputs_per_call` (no `field`; `error` names the limit): no new forward."
        ),
        "PayloadTooLarge": error_response(f"The request body is larger than {MAX_BODY} bytes."),
        "NotImplemented": error_response("Authenticated and valid, but not implemented yet."),
    }

    def tenant_post(
        operation_id: str, summary: str, description: str, request: str, ok: dict[str, Any] | None, *errors: int
    ) -> dict[str, Any]:
        answers: dict[str, Any] = {}
        if ok is not None:
            answers["200"] = ok
        answers.update(_errors(*errors))
        return {
            "post": {
                "operationId": operation_id,
                "summary": summary,
                "description": description,
                "tags": ["sessions"],
                "security": _TENANT_SECURITY,
                "parameters": [_DOMAIN_PARAMETER],
                "requestBody": {"required": True, **_json_body(_ref(request))},
                "responses": answers,
            }
        }

    paths: dict[str, Any] = {
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Liveness",
                "tags": ["operations"],
                "security": [],
                "responses": {"200": _success("Health", "The server runs.")},
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "description": "Text format 0.0.4, or OpenMetrics when the `Accept` header asks for it. "
                "Components publish gauges `aiconnect_<provider>_<key>`.",
                "tags": ["operations"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "The exposition.",
                        "content": {
                            "text/plain": {"schema": {"type": "string"}},
                            "application/openmetrics-text": {"schema": {"type": "string"}},
                        },
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "tags": ["operations"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3.1 document.",
                        **_json_body({"type": "object"}),
                    }
                },
            }
        },
        "/{domain}/sessions": {
            "get": {
                "operationId": "listSessions",
                "summary": "The tenant's live sessions",
                "tags": ["sessions"],
                "security": _TENANT_SECURITY,
                "parameters": [_DOMAIN_PARAMETER],
                "responses": {
                    "200": _success("SessionListResponse", "The live sessions (ended ones are not listed)."),
                    **_errors(401),
                },
            }
        },
        "/{domain}/sessions/{sessionId}": {
            "get": {
                "operationId": "getSession",
                "summary": "One session",
                "description": "Live or recently ended (the last 1000 ended sessions are kept).",
                "tags": ["sessions"],
                "security": _TENANT_SECURITY,
                "parameters": [
                    _DOMAIN_PARAMETER,
                    {
                        "name": "sessionId",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "The session id.",
                    },
                ],
                "responses": {
                    "200": _success("SessionResponse", "The session."),
                    **_errors(401, 404),
                },
            }
        },
        "/{domain}/startsiprecforward": tenant_post(
            "startSipRecForward",
            "Start forwarding a session to an external SRS",
            "Validates the order (400 naming the field) and answers at once; the outcome follows as "
            "SIPRECFORWARDSTARTED or SIPRECFORWARDFAILED. A session still negotiating starts the forward "
            "once it is active.",
            "StartSIPRecForwardRequest",
            _success("StartSIPRecForwardResponse", "The forward is ordered."),
            400,
            401,
            404,
            409,
            413,
        ),
        "/{domain}/stopsiprecforward": tenant_post(
            "stopSipRecForward",
            "Stop one forward, or all forwards of a session",
            "BYE (or CANCEL before the answer) to the SRS; SIPRECFORWARDSTOPPED with `stoppedBy: api` follows "
            "for each established forward. Idempotent.",
            "StopSIPRecForwardRequest",
            _success("StopSIPRecForwardResponse", "The forwards being stopped."),
            400,
            401,
            404,
            413,
        ),
    }
    for action, what in (
        ("startstream", "Start WebSocket audio streaming"),
        ("stopstream", "Stop WebSocket audio streaming"),
        ("startrecording", "Start file recording"),
        ("stoprecording", "Stop file recording"),
    ):
        paths["/{domain}/" + action] = tenant_post(
            action,
            what + " (not implemented yet)",
            "Authenticated and checked for `sessionId`, then answered 501 until this feature exists.",
            "SessionRequest",
            None,
            400,
            401,
            404,
            413,
            501,
        )

    webhooks = {
        "newCall": {
            "post": {
                "operationId": "newCall",
                "summary": "POST {callback_url}/newCall: a new inbound session",
                "description": "Sent when a SIPRec INVITE arrives; AI Connect answers the SRC after the "
                "application's answer or after the tenant's `callback_timeout`. Not retried.",
                "parameters": webhook_headers,
                "requestBody": {"required": True, **_json_body(_ref("NewCall"))},
                "responses": {
                    "200": {
                        "description": "The application's decision.",
                        **_json_body(_ref("NewCallAnswer")),
                    },
                    "204": {"description": "Nothing to start."},
                },
            }
        },
        "events": {
            "post": {
                "operationId": "events",
                "summary": "POST {callback_url}/events: a lifecycle event",
                "description": "Durable, at-least-once, in order per session, retried with back-off "
                "(`Retry-After` honoured) until `events.retry_for`. See docs/events.md.",
                "parameters": webhook_headers,
                "requestBody": {"required": True, **_json_body(_ref("Event"))},
                "responses": {
                    "2XX": {"description": "Delivered; the body is ignored."},
                    "410": {"description": "Disables event delivery to this tenant until its callback_url changes."},
                },
            }
        },
    }

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "AI Connect",
            "version": API_VERSION,
            "summary": "SIPRec recording server and forwarder: REST API and application callbacks.",
            "description": "JSON in and out. Tenant routes take `Authorization: Bearer <credential>`: one of "
            "the tenant's `api_tokens`, or an RS256 JWT signed with the key whose public half is the "
            "tenant's `jwt_public_key` (`exp`/`nbf`/`iat` honoured when present with "
            f"{JWT_LEEWAY} s of skew; an `aud` claim, when present, must be the tenant's domain). A "
            "credential reaches only its own tenant's sessions. Errors are "
            '`{"success": false, "error": "…", "field": "…"}`; an unknown path is 404 and a wrong method '
            f"405 in the same form. Request bodies are at most {MAX_BODY} bytes of UTF-8 JSON (any "
            "Content-Type). The `webhooks` are the requests AI Connect sends to the application.",
        },
        "tags": [
            {"name": "sessions", "description": "A tenant's sessions and forwards."},
            {"name": "operations", "description": "Health, metrics, this document; no credential."},
        ],
        "paths": paths,
        "webhooks": webhooks,
        "components": {
            "schemas": schemas,
            "responses": responses,
            "parameters": {
                "domain": {
                    "name": "domain",
                    "in": "path",
                    "required": True,
                    "description": "The tenant's domain (as in `[[tenant]] domain`, any case).",
                    "schema": {"type": "string"},
                    "example": "customer.example.com",
                }
            },
            "securitySchemes": {
                "apiToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One of the tenant's static `api_tokens`.",
                },
                "jwt": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An RS256 JWT verified with the tenant's `jwt_public_key`; other algorithms "
                    "(`none`, HS256 …) are refused.",
                },
            },
        },
    }


#: The OpenAPI 3.1 document: served on C{GET /openapi.json}, copied to
#: C{docs/openapi.json}.  Treat as read-only.
OPENAPI: dict[str, Any] = _build_openapi()


def main() -> None:
    """
    Write L{OPENAPI} to standard output as indented JSON:
    C{python -m aiconnect.api > docs/openapi.json}.
    """
    sys.stdout.write(json.dumps(OPENAPI, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
