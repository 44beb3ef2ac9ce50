"""
What the OpenAPI conformance test (L{tests.test_openapi}) leaves to the
tests of several nodes (L{tests.cluster_rest.test_rest_any_node}).
"""

from __future__ import annotations

from aiconnect.api.openapi import OPENAPI

__all__ = ["CLUSTER_RESPONSES"]

#: The 503 of the routes naming a session (its owner not reachable), which
#: only a node of a cluster answers: produced and checked against the
#: document by L{tests.cluster_rest.test_rest_any_node}.
CLUSTER_RESPONSES = {
    (path, method, status)
    for path, item in OPENAPI["paths"].items()
    for method, operation in item.items()
    for status, response in operation.get("responses", {}).items()
    if response == {"$ref": "#/components/responses/NodeUnreachable"}
}
