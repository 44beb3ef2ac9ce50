# -*- test-case-name: tests.api.test_routes,tests.test_openapi -*-
"""
The REST API (SPEC section 6) on a class-bound Klein app.

L{ApiServer} holds C{app = Klein()} as a class attribute: Klein binds the
routes to each instance, so handlers are methods that see the injected
collaborators (configuration, call registry, metrics registry, reactor).
C{ApiServer(...).app.resource()} mounts in any C{Site}, or in
C{treq.testing.StubTreq} for tests, with no port and no reactor.

Routes:

    - C{GET /health}, C{GET /ready} (L{readiness}), C{GET /metrics}
      (Prometheus), C{GET /openapi.json}: no credential;
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

The package's rooms: L{routes} (L{ApiServer}: the routes and the error
mapping), L{jsonio} (request bodies in, JSON answers out), L{auth} (bearer
credentials), L{metrics} (stats providers as Prometheus counters and gauges, the
histograms of L{PrometheusMetrics<metrics.PrometheusMetrics>}),
L{readiness} (the checks of C{/ready}) and
L{openapi} (the OpenAPI 3.1 document, L{OPENAPI}, the reviewed file
C{openapi.json} shipped with the package; C{python -m aiconnect.api}
prints it).  The JSON shapes of sessions are in L{aiconnect.views}.
"""

from __future__ import annotations

from aiconnect.api.auth import JWT_LEEWAY, MAX_CREDENTIAL
from aiconnect.api.jsonio import JSON_CONTENT_TYPE, MAX_BODY, MAX_SESSION_ID, ApiRequestError
from aiconnect.api.metrics import MAX_STATS_PER_PROVIDER, StatsProvider
from aiconnect.api.openapi import API_VERSION, OPENAPI, main
from aiconnect.api.routes import ApiServer

__all__ = [
    "API_VERSION",
    "JSON_CONTENT_TYPE",
    "JWT_LEEWAY",
    "MAX_BODY",
    "MAX_CREDENTIAL",
    "MAX_STATS_PER_PROVIDER",
    "MAX_SESSION_ID",
    "OPENAPI",
    "ApiRequestError",
    "ApiServer",
    "StatsProvider",
    "main",
]
