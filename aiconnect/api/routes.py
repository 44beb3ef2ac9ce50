# -*- test-case-name: tests.api.test_routes,tests.api.test_forwards,tests.api.test_outputs,tests.api.test_auth,tests.api.test_trunks,tests.api.test_forwards_mandatory,tests.test_openapi,tests.test_openapi_outputs -*-
"""
L{ApiServer}: the routes of the REST API (SPEC section 6) on a class-level
Klein app, and the mapping of errors to JSON answers.  Bodies are read and
answers written by L{aiconnect.api.jsonio}, credentials checked by
L{aiconnect.api.auth}, sessions shaped by L{aiconnect.views}, output
orders validated by L{aiconnect.siprec.orders} and
L{aiconnect.outputs.orders} (ids and pause lists by
L{aiconnect.api.outputs}); orders, stops, pauses and resumes go to the
session's runner (L{aiconnect.runner.CallRunner}), recording files are
found and deleted by L{aiconnect.outputs.files}.  The routes are those of
the OpenAPI document (L{aiconnect.api.openapi}), which a test checks both
ways.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType, ModuleType
from typing import Any

from klein import Klein
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from werkzeug.exceptions import HTTPException

from aiconnect import __version__, events
from aiconnect.api.auth import BearerAuthenticator
from aiconnect.api.cluster import SessionElsewhere
from aiconnect.api.jsonio import ApiRequestError, error_answer, json_answer, read_json_object, read_session_id
from aiconnect.api.metrics import StatsCollector, StatsProvider, register_build_info
from aiconnect.api.openapi import OPENAPI
from aiconnect.api.provisioning import ProvisioningRoutes
from aiconnect.api.readiness import ReadinessCheck, run_checks
from aiconnect.api.outputs import (
    KINDS,
    check_fields,
    describe_affected,
    read_output_id,
    read_targets,
    target_field,
)
from aiconnect.call import OrderRefused
from aiconnect.config import Config, TenantConfig
from aiconnect.siprec.orders import OrderError, parse_forward_order
from aiconnect.views import describe_session, summarize_session


def rest_forward_order(fields: dict[str, Any], tenant: TenantConfig) -> Any:
    """
    A C{startsiprecforward} body as a forward order: C{"mandatory": true}
    is refused, since the session it names is already answered (SPEC s13:
    only a newCall answer can make the SRC's 200 OK wait).

    @raise OrderError: naming the field at fault.
    """
    order = parse_forward_order(fields, tenant)
    if order.mandatory:
        raise OrderError("mandatory", "only in a newCall answer")
    return order


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
        recording_files: ModuleType | Any = None,
        trunks: Any = None,
        provisioning: Any = None,
        cluster: Any = None,
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
        @param recording_files: What finds and deletes recording files
            (C{recording_path}, C{recording_resource}, C{delete_recording},
            C{RecordingBusy}); L{None} = L{aiconnect.outputs.files},
            imported when a recording route is first used.  The files are
            under C{config.recording.directory}.
        @param trunks: The L{aiconnect.api.trunks.TrunkRoutes} answering
            the trunk routes; L{None} = they answer 503.
        @param provisioning: The L{aiconnect.provisioning.Provisioning}
            behind the provisioning routes (SPEC s11); L{None} = they answer
            503.
        @param cluster: The L{aiconnect.api.cluster.ClusterRest} of a node
            of a cluster (SPEC s14: sessions of other nodes); L{None} on a
            single node.
        @raise ConfigError: If a tenant's C{jwt_public_key} is not a
            readable PEM RSA public key.
        @raise ValueError: If a stats provider name is invalid.
        """
        self._config = config
        self._registry = registry
        self._reactor = reactor
        self._recording_files = recording_files
        self._trunks = trunks
        self._cluster = cluster
        self._auth = BearerAuthenticator(config)
        self._provisioning = ProvisioningRoutes(provisioning, self._auth)
        if metrics_registry is None:
            metrics_registry = CollectorRegistry(auto_describe=True)
        self.metrics_registry = metrics_registry
        register_build_info(metrics_registry)
        self._stats = StatsCollector()
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
        skipped, and at most
        L{MAX_STATS_PER_PROVIDER<aiconnect.api.metrics.MAX_STATS_PER_PROVIDER>}
        gauges are served per provider.  A provider that raises is logged and reported as
        C{aiconnect_stats_provider_up{provider=name} 0}; the others are
        still served.  When two keys map to the same metric name, the first
        wins.

        @param name: The provider's name: C{[a-z][a-z0-9_]*}
            (C{"transport"}, C{"relay"}, C{"outbox"} ...).
        @param provider: The zero-argument callable; it runs on the reactor
            thread and must be quick.
        @raise ValueError: If the name is invalid or already taken, or the
            provider is not callable.
        """
        self._stats.add(name, provider)

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
        return json_answer(request, 200, {"status": "ok", "version": __version__})

    #: Name -> check of C{/ready} (L{aiconnect.api.readiness}); the
    #: service sets its own (L{aiconnect.tap}); none = ready.
    readiness: Mapping[str, ReadinessCheck] = MappingProxyType({})

    @app.route("/ready", methods=["GET"])
    def ready(self, request: IRequest) -> bytes:
        """
        C{GET /ready}: readiness (load balancers, orchestrators).

        @param request: The request.
        @return: 200 C{{"ready": true, "checks": {name: "ok"}, "version"}}
            when every check passes, else 503 with C{"ready": false},
            C{"notReady"} (the failing checks' names) and each check's
            text.
        """
        checks = run_checks(self.readiness)
        failing = [name for name, text in checks.items() if text != "ok"]
        body: dict[str, Any] = {"ready": not failing, "checks": checks, "version": __version__}
        if failing:
            body["notReady"] = failing
        return json_answer(request, 503 if failing else 200, body)

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
        return json_answer(request, 200, OPENAPI)

    # --- tenant routes (SPEC s6) ---------------------------------------------

    @app.route("/<string:domain>/sessions", methods=["GET"])
    def list_sessions(self, request: IRequest, domain: str) -> bytes:
        """
        C{GET /{domain}/sessions}: the tenant's live sessions.

        @param request: The request.
        @param domain: The tenant's domain.
        @return: 200 C{{"success": true, "sessions": [<summary>, ...]}}
            (on a node of a cluster: every live node's, plus
            C{"incomplete": true} when one did not answer).
        """
        tenant = self._tenant(request, domain)
        calls = [] if self._registry is None else self._registry.active(tenant.domain)
        sessions = [summarize_session(c) for c in calls]
        if self._cluster is not None and not self._cluster.from_node(request):
            return self._cluster.merged_list(request, sessions)
        return json_answer(request, 200, {"success": True, "sessions": sessions})

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
        tenant = self._tenant(request, domain)
        call = self._call(tenant, session_id, request)
        return json_answer(request, 200, {"success": True, "session": describe_session(call)})

    @app.route("/<string:domain>/startsiprecforward", methods=["POST"])
    def start_siprec_forward(self, request: IRequest, domain: str) -> bytes:
        """
        C{POST /{domain}/startsiprecforward}: order a forward of a live
        session (SPEC s3 object plus C{sessionId}).  Answered at once; the
        outcome follows as C{SIPRECFORWARDSTARTED} or C{SIPRECFORWARDFAILED}.

        @param request: The request.
        @param domain: The tenant's domain.
        @return: 200 C{{"success": true, "forwardId": <id>}}.
        @raise ApiRequestError: 400 naming the field at fault (also
            C{mandatory}: only a newCall order may hold the SRC's answer,
            SPEC s13), 404 for an unknown session, 409 for a session that is
            ending or ended or that has reached C{max_forwards_per_call} /
            C{max_outputs_per_call} (the error names the limit).
        """
        return self._order(
            request,
            domain,
            "forward",
            "forwardId",
            rest_forward_order,
            lambda runner, order: runner.order_forward(order),
        )

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
        return self._stop(
            request,
            domain,
            "forward",
            "forwardId",
            lambda runner, forward_id: runner.stop_forwards(forward_id, events.STOPPED_BY_API),
        )

    @app.route("/<string:domain>/startstream", methods=["POST"])
    def start_stream(self, request: IRequest, domain: str) -> bytes:
        """
        C{POST /{domain}/startstream}: order a WebSocket stream of a live
        session (SPEC s8 object plus C{sessionId}).  Answered at once; the
        outcome follows as C{STREAMSTARTED} or C{STREAMFAILED}.

        @param request: The request.
        @param domain: The tenant's domain.
        @return: 200 C{{"success": true, "streamId": <id>}}.
        @raise ApiRequestError: 400 naming the field at fault, 404 for an
            unknown session, 409 for a session that is ending or ended or
            that has reached C{max_outputs_per_call}.
        """
        return self._order_output(request, domain, "stream")

    @app.route("/<string:domain>/stopstream", methods=["POST"])
    def stop_stream(self, request: IRequest, domain: str) -> bytes:
        """
        C{POST /{domain}/stopstream}: stop one stream of a session
        (C{streamId}) or all of them (no C{streamId}); idempotent.

        @param request: The request.
        @param domain: The tenant's domain.
        @return: 200 C{{"success": true, "stopped": [<streamId>, ...]}}.
        @raise ApiRequestError: 400 naming the field at fault, 404 for an
            unknown session or stream.
        """
        return self._stop_outputs(request, domain, "stream")

    @app.route("/<string:domain>/startrecording", methods=["POST"])
    def start_recording(self, request: IRequest, domain: str) -> bytes:
        """
        C{POST /{domain}/startrecording}: order a WAV recording of a live
        session (SPEC s9 object plus C{sessionId}); the outcome follows as
        C{RECORDINGSTARTED} or C{RECORDINGFAILED}.

        @param request: The request.
        @param domain: The tenant's domain.
        @return: 200 C{{"success": true, "recordingId": <id>}}.
        @raise ApiRequestError: As L{start_stream}.
        """
        return self._order_output(request, domain, "recording")

    @app.route("/<string:domain>/stoprecording", methods=["POST"])
    def stop_recording(self, request: IRequest, domain: str) -> bytes:
        """
        C{POST /{domain}/stoprecording}: stop one recording of a session
        (C{recordingId}) or all of them; idempotent.

        @param request: The request.
        @param domain: The tenant's domain.
        @return: 200 C{{"success": true, "stopped": [<recordingId>, ...]}}.
        @raise ApiRequestError: As L{stop_stream}.
        """
        return self._stop_outputs(request, domain, "recording")

    @app.route("/<string:domain>/pause", methods=["POST"])
    def pause(self, request: IRequest, domain: str) -> bytes:
        """
        C{POST /{domain}/pause} (SPEC s10): pause the outputs the body names
        (C{forwardIds}, C{streamIds}, C{recordingIds}), or all of the
        session's outputs when it names none.

        @param request: The request.
        @param domain: The tenant's domain.
        @return: 200 C{{"success": true, "paused": {"forwards": [...],
            "streams": [...], "recordings": [...]}}}.
        @raise ApiRequestError: 400 naming the field at fault, 404 for an
            unknown session or a listed id unknown to it.
        """
        return self._pause_or_resume(request, domain, "paused")

    @app.route("/<string:domain>/resume", methods=["POST"])
    def resume(self, request: IRequest, domain: str) -> bytes:
        """
        C{POST /{domain}/resume} (SPEC s10): resume outputs, as L{pause}
        pauses them.

        @param request: The request.
        @param domain: The tenant's domain.
        @return: 200 C{{"success": true, "resumed": {...}}}.
        @raise ApiRequestError: As L{pause}.
        """
        return self._pause_or_resume(request, domain, "resumed")

    @app.route("/<string:domain>/recordings/<string:recording_id>", methods=["GET"])
    def get_recording(self, request: IRequest, domain: str, recording_id: str) -> IResource:
        """
        C{GET /{domain}/recordings/{recordingId}}: the WAV file (C{audio/wav},
        Range requests honoured), also while it is being written.

        @param request: The request.
        @param domain: The tenant's domain.
        @param recording_id: The recording id.
        @return: The file's resource.
        @raise ApiRequestError: 404 for an unknown recording or another
            tenant's.
        """
        tenant = self._auth.authenticate(request, domain)
        files = self._files()
        # Ids not in the recording id format are refused there, before any
        # file system access.
        resource = files.recording_resource(self._config.recording.directory, tenant.domain, recording_id)
        if resource is None:
            raise ApiRequestError(404, "unknown recording", "recordingId")
        request.setHeader(b"cache-control", b"no-store")
        return resource

    @app.route("/<string:domain>/recordings/<string:recording_id>", methods=["DELETE"])
    def delete_recording(self, request: IRequest, domain: str, recording_id: str) -> bytes:
        """
        C{DELETE /{domain}/recordings/{recordingId}}: remove the file.

        @param request: The request.
        @param domain: The tenant's domain.
        @param recording_id: The recording id.
        @return: 200 C{{"success": true, "deleted": <recordingId>}}.
        @raise ApiRequestError: 404 for an unknown recording or another
            tenant's, 409 for a recording still being written (stop it
            first).
        """
        tenant = self._auth.authenticate(request, domain)
        files = self._files()
        try:
            deleted = files.delete_recording(self._config.recording.directory, tenant.domain, recording_id)
        except files.RecordingBusy:
            raise ApiRequestError(409, "the recording is still being written: stop it first", "recordingId") from None
        if not deleted:
            raise ApiRequestError(404, "unknown recording", "recordingId")
        self.log.info(
            "API: recording {recording_id} deleted", tenant=tenant.domain, recording_id=recording_id
        )
        return json_answer(request, 200, {"success": True, "deleted": recording_id})

    # --- provisioning (SPEC s11, aiconnect.api.provisioning) ------------------

    @app.route("/admin/tenants", methods=["GET"])
    def admin_tenants(self, request: IRequest) -> bytes:
        """
        C{GET /admin/tenants}: every tenant in force, secrets shown as
        C{"***"}, each with its C{source} (C{file} or C{api}).
        """
        return self._provisioning.list_tenants(request)

    @app.route("/admin/tenants/<string:domain>", methods=["GET"])
    def admin_tenant(self, request: IRequest, domain: str) -> bytes:
        """
        C{GET /admin/tenants/{domain}}: one tenant (404 unknown).
        """
        return self._provisioning.get_tenant(request, domain)

    @app.route("/admin/tenants/<string:domain>", methods=["PUT"])
    def admin_put_tenant(self, request: IRequest, domain: str) -> bytes:
        """
        C{PUT /admin/tenants/{domain}}: create (201) or replace (200) a
        provisioned tenant; 400 naming the field, 409 for a tenant of the
        file.
        """
        return self._provisioning.put_tenant(request, domain)

    @app.route("/admin/tenants/<string:domain>", methods=["DELETE"])
    def admin_delete_tenant(self, request: IRequest, domain: str) -> bytes:
        """
        C{DELETE /admin/tenants/{domain}}: delete a provisioned tenant.
        """
        return self._provisioning.delete_tenant(request, domain)

    @app.route("/<string:domain>/trunks", methods=["GET"])
    def list_trunks(self, request: IRequest, domain: str) -> bytes:
        """
        C{GET /{domain}/trunks}: the tenant's trunks (passwords C{"***"}).
        """
        return self._provisioning.list_trunks(request, domain)

    @app.route("/<string:domain>/trunks/<string:match>", methods=["GET"])
    def get_trunk(self, request: IRequest, domain: str, match: str) -> bytes:
        """
        C{GET /{domain}/trunks/{match}}: one trunk (404 unknown).
        """
        return self._provisioning.get_trunk(request, domain, match)

    @app.route("/<string:domain>/trunks/<string:match>", methods=["PUT"])
    def put_trunk(self, request: IRequest, domain: str, match: str) -> bytes:
        """
        C{PUT /{domain}/trunks/{match}}: create (201) or replace (200) one
        trunk of a provisioned tenant; the next forward uses it.
        """
        return self._provisioning.put_trunk(request, domain, match)

    @app.route("/<string:domain>/trunks/<string:match>", methods=["DELETE"])
    def delete_trunk(self, request: IRequest, domain: str, match: str) -> bytes:
        """
        C{DELETE /{domain}/trunks/{match}}: delete one trunk.
        """
        return self._provisioning.delete_trunk(request, domain, match)

    @app.route("/<string:domain>/trunks/<string:match>/health", methods=["GET"])
    def trunk_health(self, request: IRequest, domain: str, match: str) -> Any:
        """
        C{GET /{domain}/trunks/{match}/health} (SPEC s13): the trunk and its
        targets as resolved now, with their health.

        @return: A Deferred of the 200 answer (L{aiconnect.api.trunks}).
        @raise ApiRequestError: 404 for an unknown trunk.
        """
        tenant = self._auth.authenticate(request, domain)
        return self._trunk_answer(request, lambda routes: routes.health(tenant, match))

    @app.route("/<string:domain>/trunks/<string:match>/test", methods=["POST"])
    def trunk_test(self, request: IRequest, domain: str, match: str) -> Any:
        """
        C{POST /{domain}/trunks/{match}/test} (SPEC s13): DNS, connect, TLS,
        OPTIONS and digest against every target, each step reported.

        @return: A Deferred of the 200 answer (L{aiconnect.api.trunks}).
        @raise ApiRequestError: 404 for an unknown trunk, 429 beyond the
            tenant's concurrent tests.
        """
        tenant = self._auth.authenticate(request, domain)
        return self._trunk_answer(request, lambda routes: routes.test(tenant, match))

    def _trunk_answer(self, request: IRequest, work: Callable[[Any], Any]) -> Any:
        """
        Run a trunk route's coroutine and answer its result as JSON.

        @raise ApiRequestError: 503 when this server has no trunk routes.
        """
        from twisted.internet import defer

        if self._trunks is None:
            raise ApiRequestError(503, "trunk health is not available on this server")
        d = defer.ensureDeferred(work(self._trunks))
        return d.addCallback(lambda payload: json_answer(request, 200, payload))

    # --- output helpers -------------------------------------------------------

    def _order(
        self,
        request: IRequest,
        domain: str,
        kind: str,
        id_field: str,
        parse: Callable[[dict[str, Any], TenantConfig], Any],
        place: Callable[[Any, Any], str],
    ) -> bytes:
        """
        Order an output: the body is C{sessionId} plus the order's fields.

        @param request: The request.
        @param domain: The tenant's domain.
        @param kind: What is ordered (C{forward}, C{stream}, C{recording}),
            for the log.
        @param id_field: The answer's key for the new id.
        @param parse: C{(fields, tenant) -> order}, raising L{OrderError}.
        @param place: C{(runner, order) -> id}, raising L{OrderRefused}.
        @return: 200 C{{"success": true, <id_field>: <id>}}.
        @raise ApiRequestError: 400 naming the field at fault, 404 for an
            unknown session, 409 when the session refuses (ending or ended:
            field C{sessionId}; a C{[limits]} cap: no field, the message
            names it).
        """
        tenant = self._tenant(request, domain)
        body = read_json_object(request)
        session_id = read_session_id(body)
        try:
            order = parse({k: v for k, v in body.items() if k != "sessionId"}, tenant)
        except OrderError as e:
            raise ApiRequestError(400, e.message, e.field or "body") from None
        runner = self._call(tenant, session_id, request)
        try:
            output_id = place(runner, order)
        except OrderRefused as e:
            raise ApiRequestError(409, e.message, None if e.limit else "sessionId") from None
        self.log.info(
            "API: {kind} {output_id} ordered for session {session_id}",
            tenant=tenant.domain,
            session_id=session_id,
            kind=kind,
            output_id=output_id,
        )
        return json_answer(request, 200, {"success": True, id_field: output_id})

    def _order_output(self, request: IRequest, domain: str, kind: str) -> bytes:
        """
        Order a stream or a recording (L{_order} with the kind's parser).

        @param request: The request.
        @param domain: The tenant's domain.
        @param kind: C{stream} or C{recording}.
        @return: 200 C{{"success": true, <idField>: <id>}}.
        """
        output = KINDS[kind]
        return self._order(
            request,
            domain,
            kind,
            output.id_field,
            lambda fields, tenant: output.parse(fields, ""),
            lambda runner, order: runner.order_output(kind, order),
        )

    def _stop(
        self,
        request: IRequest,
        domain: str,
        kind: str,
        id_field: str,
        stop: Callable[[Any, str | None], list[str]],
    ) -> bytes:
        """
        Stop one output of a kind (its id given) or all of the kind;
        idempotent: those already stopped or failed are not listed.

        @param request: The request.
        @param domain: The tenant's domain.
        @param kind: C{forward}, C{stream} or C{recording}.
        @param id_field: The body's optional id field.
        @param stop: C{(runner, id or None) -> ids stopped}, raising
            C{KeyError} for an unknown id.
        @return: 200 C{{"success": true, "stopped": [...]}}.
        @raise ApiRequestError: 400 naming the field at fault, 404 for an
            unknown session or id.
        """
        tenant = self._tenant(request, domain)
        body = read_json_object(request)
        session_id = read_session_id(body)
        check_fields(body, ("sessionId", id_field))
        output_id = read_output_id(body, id_field)
        runner = self._call(tenant, session_id, request)
        try:
            stopped = stop(runner, output_id)
        except KeyError:
            raise ApiRequestError(404, f"unknown {kind} of this session", id_field) from None
        self.log.info(
            "API: {kind}s {stopped} of session {session_id} stopped",
            tenant=tenant.domain,
            session_id=session_id,
            kind=kind,
            stopped=stopped,
        )
        return json_answer(request, 200, {"success": True, "stopped": list(stopped)})

    def _stop_outputs(self, request: IRequest, domain: str, kind: str) -> bytes:
        """
        Stop streams or recordings (L{_stop} through the runner's
        C{stop_outputs}).

        @param request: The request.
        @param domain: The tenant's domain.
        @param kind: C{stream} or C{recording}.
        @return: 200 C{{"success": true, "stopped": [...]}}.
        """
        return self._stop(
            request,
            domain,
            kind,
            KINDS[kind].id_field,
            lambda runner, output_id: runner.stop_outputs(kind, output_id, events.STOPPED_BY_API),
        )

    def _pause_or_resume(self, request: IRequest, domain: str, answer: str) -> bytes:
        """
        Pause (C{answer} C{paused}) or resume (C{resumed}) outputs.

        @param request: The request.
        @param domain: The tenant's domain.
        @param answer: C{paused} or C{resumed}: the answer's key, and which
            runner method is called.
        @return: 200 C{{"success": true, <answer>: {...}}}.
        """
        tenant = self._tenant(request, domain)
        body = read_json_object(request)
        session_id = read_session_id(body)
        targets = read_targets(body)
        runner = self._call(tenant, session_id, request)
        act = runner.pause if answer == "paused" else runner.resume
        try:
            affected = act(targets)
        except KeyError as e:
            # The runner names the unknown output: KeyError((kind, id)).
            kind = e.args[0][0] if e.args and isinstance(e.args[0], tuple) and e.args[0] else None
            raise ApiRequestError(404, f"unknown {kind or 'output'} of this session", target_field(kind)) from None
        except OrderRefused as e:
            # The session is ending or ended: nothing to pause or resume.
            raise ApiRequestError(409, e.message, "sessionId") from None
        described = describe_affected(affected)
        self.log.info(
            "API: session {session_id} {answer}: {outputs}",
            tenant=tenant.domain,
            session_id=session_id,
            answer=answer,
            outputs=described,
        )
        return json_answer(request, 200, {"success": True, answer: described})

    def _files(self) -> Any:
        """
        @return: The recording files module (L{aiconnect.outputs.files}
            unless another was given), imported on first use.
        """
        if self._recording_files is None:
            from aiconnect.outputs import files

            self._recording_files = files
        return self._recording_files

    # --- helpers --------------------------------------------------------------

    def _tenant(self, request: IRequest, domain: str) -> TenantConfig:
        """
        The tenant of a route naming sessions, its credential checked (and,
        on a node of a cluster, the node signature of a request of another
        node, L{aiconnect.api.cluster}).

        @raise ApiRequestError: 401/403.
        """
        if self._cluster is not None:
            self._cluster.from_node(request)
        return self._auth.authenticate(request, domain)

    def _call(self, tenant: TenantConfig, session_id: str, request: IRequest) -> Any:
        """
        @param tenant: The authenticated tenant.
        @param session_id: The session id.
        @param request: The request (on a node of a cluster, passed to the
            session's owner when it is not here).
        @return: The tenant's L{aiconnect.call.Call} (live or recently
            ended).
        @raise ApiRequestError: 404 (field C{sessionId}) for an unknown
            session or another tenant's.
        @raise SessionElsewhere: On a node of a cluster, for a client's
            request about a session this node does not hold.
        """
        if self._registry is not None:
            try:
                return self._registry.get(tenant.domain, session_id)
            except KeyError:
                pass
        if self._cluster is not None and not self._cluster.from_node(request):
            raise SessionElsewhere(session_id)
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
        return error_answer(request, error.status, error.message, error.field)

    @app.handle_errors(SessionElsewhere)
    def _elsewhere(self, request: IRequest, failure: Failure) -> Any:
        """
        Answer a request about a session of another node with that node's
        answer (L{aiconnect.api.cluster.ClusterRest.pass_on}).
        """
        error = failure.value
        assert isinstance(error, SessionElsewhere)
        return self._cluster.pass_on(request, error.session_id)

    @app.handle_errors(KeyError)
    def _not_found(self, request: IRequest, failure: Failure) -> bytes:
        """
        Answer a C{KeyError} (unknown tenant, session, forward ...) with 404.
        """
        return error_answer(request, 404, "not found")

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
        return error_answer(request, status, error.name.lower() if error.name else "error")

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
        return error_answer(request, 500, "internal error")
