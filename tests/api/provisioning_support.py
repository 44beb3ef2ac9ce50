# -*- test-case-name: tests.api.test_provisioning,tests.test_openapi -*-
"""
What the tests of the provisioning routes (SPEC s11) share: the admin
token, a provisioned tenant's object with secrets of its own, the
documented answers those tests produce (so that L{tests.test_openapi} knows
where they are checked), and L{ProvisioningServer}: the two-tenant file
configuration of L{tests.api.helpers} with C{[api] admin_tokens}, in force
through a real L{LiveConfig}, a real SQLite L{SqliteTenantStore} in a
temporary file and a L{Provisioning}, behind an L{ApiServer} driven by
C{StubTreq}.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import os
from typing import Any

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.api import OPENAPI, ApiServer
from aiconnect.provisioning import LiveConfig, Provisioning, SqliteTenantStore
from tests.api.helpers import bearer, make_config, temporary_directory
from tests.openapi_support import conform, validator

ADMIN_TOKEN = "adm-0123456789abcdef"
API_DOMAIN = "api.example.net"
API_TOKEN = "tok-api-provisioned-1"
API_TOKEN_2 = "tok-api-provisioned-2"
API_SECRET = "whsec_" + base64.b64encode(b"api.example.net signing key").decode("ascii")
TRUNK_PASSWORD = "trunk-pw-s3cr3t"

#: The provisioning operations of the document.
PROVISIONING_PATHS = ("/admin/tenants", "/admin/tenants/{domain}", "/{domain}/trunks", "/{domain}/trunks/{match}")

#: Every documented answer of the provisioning routes: produced and checked
#: against the document by L{tests.api.test_provisioning}.
PROVISIONING_RESPONSES = {
    (path, method, status)
    for path in PROVISIONING_PATHS
    for method, operation in OPENAPI["paths"][path].items()
    for status in operation["responses"]
}

#: The 403 of every other tenant route (a valid credential of another
#: tenant): produced by L{tests.api.test_provisioning}.
FORBIDDEN_RESPONSES = {
    (path, method, "403")
    for path, item in OPENAPI["paths"].items()
    if path.startswith("/{domain}/") and path not in PROVISIONING_PATHS
    for method in item
}


def trunk_body(match: str, **extra: Any) -> dict[str, Any]:
    """
    @return: A trunk object with digest credentials.
    """
    return {
        "match": match,
        "target": "127.0.0.1:5090",
        "transport": "tcp",
        "username": "srs-user",
        "password": TRUNK_PASSWORD,
        **extra,
    }


def tenant_body(**extra: Any) -> dict[str, Any]:
    """
    @return: The object of the provisioned tenant L{API_DOMAIN}: two API
        tokens, its own signing secret, a trunk with a password and one
        without.
    """
    return {
        "domain": API_DOMAIN,
        "callback_url": "http://127.0.0.1:9100",
        "callback_timeout": 2.5,
        "api_tokens": [API_TOKEN, API_TOKEN_2],
        "signing_secret": API_SECRET,
        "allowed_sources": ["192.0.2.0/24"],
        "max_sessions": 10,
        "trunks": [trunk_body("srs"), {"match": "plain", "target": "srs.example.net", "transport": "tls"}],
        **extra,
    }


#: Every secret value the tests send: none may be logged or answered.
SECRETS = (API_TOKEN, API_TOKEN_2, API_SECRET, TRUNK_PASSWORD, ADMIN_TOKEN)


class ProvisioningServer:
    """
    An L{ApiServer} over a L{LiveConfig}, a SQLite store and a
    L{Provisioning} (see the module docstring), the answers it gives
    checked against the OpenAPI document.

    @ivar covered: (path template, method, status) of every answer checked.
    @ivar events: Every log event emitted while the test runs.
    """

    def __init__(self, test: SynchronousTestCase, admin_tokens: tuple[str, ...] = (ADMIN_TOKEN,)) -> None:
        self.test = test
        file = make_config(test, with_jwt=False)
        self.config = dataclasses.replace(file, api=dataclasses.replace(file.api, admin_tokens=admin_tokens))
        self.live = LiveConfig(self.config)
        self.database = os.path.join(temporary_directory(test), "events.sqlite3")
        self.store = SqliteTenantStore(self.database, clock=lambda: 1764676800.0, busy_timeout=0.05)
        test.addCleanup(self.store.close)
        self.provisioning = Provisioning(self.live, self.store)
        self.treq = StubTreq(ApiServer(self.live, provisioning=self.provisioning, reactor=Clock()).app.resource())
        self.bare = StubTreq(ApiServer(self.live, reactor=Clock()).app.resource())
        self.covered: set[tuple[str, str, str]] = set()
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        test.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def exchange(
        self,
        method: str,
        template: str,
        status: int,
        *,
        domain: str = API_DOMAIN,
        match: str = "srs",
        token: str | None = ADMIN_TOKEN,
        body: Any = None,
        data: bytes | None = None,
        bare: bool = False,
    ) -> Any:
        """
        Make a request for a documented operation and check its answer
        against the document (status, content type, headers, schema); a
        body answered 200 or 201 is checked against the request schema too.

        @param bare: Ask the server that has no provisioning.
        @return: The decoded JSON answer.
        """
        path = template.replace("{domain}", domain).replace("{match}", match)
        path = path.replace("{sessionId}", "ses_x").replace("{recordingId}", "rec_20261202_0123456789abcdef")
        client = self.bare if bare else self.treq
        headers = bearer(token) if token is not None else {}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            if status in (200, 201):
                schema = OPENAPI["paths"][template][method]["requestBody"]["content"]["application/json"]["schema"]
                errors = [e.message for e in validator(schema).iter_errors(body)]
                self.test.assertEqual(errors, [], f"request of {method.upper()} {template} does not match its schema")
        response = self.test.successResultOf(
            client.request(method.upper(), "http://api.example" + path, headers=headers, data=data)
        )
        raw = self.test.successResultOf(client.content(response))
        self.covered.add((template, method, str(status)))
        return conform(self.test, method, template, status, response, raw)

    def stored(self) -> dict[str, dict[str, Any]]:
        """
        @return: Domain -> tenant object, as the database holds them.
        """
        return {document["domain"]: document for document in self.test.successResultOf(self.store.load())}

    def snapshot(self) -> tuple[Any, ...]:
        """
        @return: What a refused or failed change must leave as it was: the
            configuration in force, the stored objects, what the admin GET
            shows and the change counts.
        """
        shown = self.exchange("get", "/admin/tenants", 200)["tenants"]
        return self.live.current, self.stored(), shown, copy.deepcopy(self.provisioning.changes)

    def change_lines(self) -> list[dict[str, Any]]:
        """
        @return: The log events of applied changes.
        """
        return [e for e in self.events if str(e.get("log_format", "")).startswith("Provisioning: ")]
