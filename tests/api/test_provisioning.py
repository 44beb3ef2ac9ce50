"""
The provisioning routes (SPEC s11) through C{StubTreq}: C{/admin/tenants}
with an admin token, C{/{domain}/trunks} with the tenant's own credential,
over a real L{LiveConfig}, SQLite store and L{Provisioning}
(L{tests.api.provisioning_support}).  Every answer is checked against the
OpenAPI document, every documented answer of these routes is produced, and
so is the 403 of every other tenant route.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path
from typing import Any

from twisted.logger import formatEvent
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.api import MAX_BODY, OPENAPI
from aiconnect.config import sections
from aiconnect.config.documents import HIDDEN, MAX_TRUNKS, tenant_document, trunk_document
from aiconnect.config.records import TenantConfig, TrunkConfig
from aiconnect.provisioning import service
from aiconnect.sip.peer import TRANSPORTS
from tests.api.helpers import DOMAIN, OTHER_DOMAIN, OTHER_TOKEN, SECRET, TOKEN, public_pem, rs256, rsa_key, temporary_directory
from tests.api.provisioning_support import (
    ADMIN_TOKEN,
    API_DOMAIN,
    API_SECRET,
    API_TOKEN,
    API_TOKEN_2,
    FORBIDDEN_RESPONSES,
    PROVISIONING_PATHS,
    PROVISIONING_RESPONSES,
    SECRETS,
    TRUNK_PASSWORD,
    ProvisioningServer,
    tenant_body,
    trunk_body,
)
from tests.openapi_support import component

TENANTS, TENANT, TRUNKS, TRUNK = PROVISIONING_PATHS
API_DOC = Path(__file__).resolve().parent.parent.parent / "docs" / "api.md"
#: A key of an example object, and the schema an example with it follows.
EXAMPLE_SCHEMAS = (("error", "Error"), ("tenant", "TenantResponse"), ("trunk", "TenantTrunkResponse"))
SCHEMAS = OPENAPI["components"]["schemas"]

#: Invalid tenant objects: (why, body or raw bytes, the field the 400
#: names, whether the request schema refuses it too).
BAD_TENANTS: list[tuple[str, Any, str, bool]] = [
    ("callback_url missing", {k: v for k, v in tenant_body().items() if k != "callback_url"}, "callback_url", True),
    (
        "bad transport in trunks[1]",
        tenant_body(trunks=[trunk_body("srs"), trunk_body("two", transport="sctp")]),
        "trunks[1].transport",
        True,
    ),
    ("duplicate match", tenant_body(trunks=[trunk_body("srs"), trunk_body("srs")]), "trunks[1].match", False),
    ("token of a file tenant", tenant_body(api_tokens=[TOKEN]), "api_tokens[0]", False),
    ("token of another provisioned tenant", tenant_body(api_tokens=["tok-new", "tok-second-1"]), "api_tokens[1]", False),
    ("*** for a trunk password nothing stores", tenant_body(trunks=[trunk_body("new", password=HIDDEN)]), "trunks[0].password", False),
    ("*** mixed with new tokens", tenant_body(api_tokens=[HIDDEN, "tok-new"]), "api_tokens", False),
    ("domain in the body is not the path's", tenant_body(domain="elsewhere.example.net"), "domain", False),
    ("not an object", [tenant_body()], "body", True),
    ("not JSON", b'{"domain": ', "body", True),
    ("too many trunks", tenant_body(trunks=[{"match": f"t{i}", "target": "srs.example.net"} for i in range(MAX_TRUNKS + 1)]), "trunks", True),
    ("unknown key", tenant_body(nickname="x"), "nickname", True),
    ("bad signing secret", tenant_body(signing_secret="secret"), "signing_secret", False),
    ("bad allowed source", tenant_body(allowed_sources=["192.0.2.1/24"]), "allowed_sources[0]", False),
]

#: Invalid trunk objects for C{PUT /{domain}/trunks/srs}: (why, body, field,
#: whether the request schema refuses it too).
BAD_TRUNKS: list[tuple[str, Any, str, bool]] = [
    ("bad transport", trunk_body("srs", transport="sctp"), "transport", True),
    ("match in the body is not the path's", trunk_body("other"), "match", False),
    ("target missing", {"transport": "udp"}, "target", True),
    ("password without username", {"target": "srs.example.net", "password": "pw"}, "username", False),
    ("session_expires under 90", trunk_body("srs", session_expires=30), "session_expires", False),
    ("not an object", ["srs"], "body", True),
]


class ProvisioningRouteTests(SynchronousTestCase):
    """
    The provisioning routes, answer by answer.
    """

    def setUp(self) -> None:
        self.api = ProvisioningServer(self)
        self.exchange = self.api.exchange

    def create(self, **extra: Any) -> dict[str, Any]:
        """
        Provision L{API_DOMAIN} (201).

        @return: The tenant as answered.
        """
        return self.exchange("put", TENANT, 201, body=tenant_body(**extra))["tenant"]

    def assertNoSecret(self, text: str) -> None:
        """
        No secret value the tests send is in C{text}.
        """
        for secret in SECRETS + (SECRET,):
            self.assertNotIn(secret, text)

    def assertUnchanged(self, before: tuple[Any, ...]) -> None:
        """
        Nothing in force, stored or shown changed, nothing was counted.
        """
        self.assertIs(self.api.live.current, before[0])
        self.assertEqual(self.api.snapshot()[1:], before[1:])

    # -- the admin routes ---------------------------------------------------------

    def test_tenant_lifecycle(self) -> None:
        """
        PUT creates (201) and replaces (200), GET and the list show it with its source, DELETE removes it; each in force at once.
        """
        created = self.create()
        self.assertEqual(
            {k: created[k] for k in ("domain", "callback_url", "callback_timeout", "max_sessions", "source")},
            {"domain": API_DOMAIN, "callback_url": "http://127.0.0.1:9100", "callback_timeout": 2.5, "max_sessions": 10, "source": "api"},
        )
        self.assertEqual(self.exchange("get", TENANT, 200)["tenant"], created)
        in_force = self.api.live.tenant_for_domain(API_DOMAIN)
        self.assertEqual((in_force.callback_url, in_force.api_tokens), ("http://127.0.0.1:9100", (API_TOKEN, API_TOKEN_2)))
        listed = self.exchange("get", TENANTS, 200)["tenants"]
        self.assertEqual([(t["domain"], t["source"]) for t in listed], [(DOMAIN, "file"), (OTHER_DOMAIN, "file"), (API_DOMAIN, "api")])
        self.assertEqual(listed[2], created)

        replaced = self.exchange("put", TENANT, 200, body=tenant_body(callback_url="https://app.example.net/hooks", trunks=[]))
        self.assertEqual((replaced["tenant"]["callback_url"], replaced["tenant"]["trunks"]), ("https://app.example.net/hooks", []))
        self.assertEqual(self.api.live.tenant_for_domain(API_DOMAIN).callback_url, "https://app.example.net/hooks")
        self.assertEqual(self.api.stored()[API_DOMAIN]["callback_url"], "https://app.example.net/hooks")

        # The path's domain in any case, the body's domain optional.
        body = tenant_body()
        del body["domain"]
        self.exchange("put", TENANT, 200, domain=API_DOMAIN.upper(), body=body)

        self.assertEqual(self.exchange("delete", TENANT, 200), {"success": True, "deleted": API_DOMAIN})
        self.assertIsNone(self.api.live.tenant_for_domain(API_DOMAIN))
        self.assertEqual(self.api.stored(), {})
        self.assertEqual(self.exchange("get", TENANT, 404)["field"], "domain")
        self.exchange("delete", TENANT, 404)
        self.assertEqual(self.api.provisioning.changes, {"admin": 4, "tenant": 0, "reload": 0})

    def test_secrets_shown_hidden(self) -> None:
        """
        A GET shows *** for the signing secret, each API token and a trunk password ("" when there is none); the database keeps them.
        """
        self.create()
        for answer in (self.exchange("get", TENANT, 200)["tenant"], self.exchange("get", TENANTS, 200)["tenants"][-1]):
            self.assertEqual(answer["signing_secret"], HIDDEN)
            self.assertEqual(answer["api_tokens"], [HIDDEN, HIDDEN])
            self.assertEqual([t["password"] for t in answer["trunks"]], [HIDDEN, ""])
            self.assertEqual(answer["trunks"][0]["username"], "srs-user")
        for file_tenant in self.exchange("get", TENANTS, 200)["tenants"][:2]:
            self.assertEqual((file_tenant["signing_secret"], file_tenant["api_tokens"]), (HIDDEN, [HIDDEN]))
        for path in (TRUNKS, TRUNK):
            self.assertNoSecret(json.dumps(self.exchange("get", path, 200, token=API_TOKEN)))
        stored = self.api.stored()[API_DOMAIN]
        self.assertEqual((stored["signing_secret"], stored["api_tokens"]), (API_SECRET, [API_TOKEN, API_TOKEN_2]))
        self.assertEqual(stored["trunks"][0]["password"], TRUNK_PASSWORD)

    def test_get_put_back_keeps_secrets(self) -> None:
        """
        A GET's object, edited and PUT back (source and *** included), keeps every secret.
        """
        self.create()
        shown = self.exchange("get", TENANT, 200)["tenant"]
        shown["callback_timeout"] = 7.0
        shown["trunks"][0]["target"] = "127.0.0.1:5099"
        answer = self.exchange("put", TENANT, 200, body=shown)["tenant"]
        self.assertEqual(answer, {**shown, "source": "api"})
        tenant = self.api.live.tenant_for_domain(API_DOMAIN)
        self.assertEqual(
            (tenant.signing_secret, tenant.api_tokens, tenant.trunks[0].password, tenant.trunks[0].target),
            (API_SECRET, (API_TOKEN, API_TOKEN_2), TRUNK_PASSWORD, "127.0.0.1:5099"),
        )
        self.assertEqual(self.api.stored()[API_DOMAIN], tenant_document(tenant))
        # The tenant's tokens still open its routes.
        self.exchange("get", TRUNKS, 200, token=API_TOKEN_2)
        # New secrets replace the stored ones.
        self.exchange("put", TENANT, 200, body={**shown, "api_tokens": ["tok-rotated"], "signing_secret": SECRET})
        self.assertEqual(self.api.live.tenant_for_domain(API_DOMAIN).api_tokens, ("tok-rotated",))
        self.exchange("get", TRUNKS, 401, token=API_TOKEN)

    def test_bad_tenant_refused_naming_the_field(self) -> None:
        """
        Each kind of bad tenant object is a 400 naming its field; nothing is stored, in force, shown or counted half-way.
        """
        self.create()
        self.exchange("put", TENANT, 201, domain="second.example.net",
                      body=tenant_body(domain="second.example.net", api_tokens=["tok-second-1"], trunks=[]))
        request_schema = component("TenantRequest")
        for why, body, field, schema_refuses in BAD_TENANTS:
            with self.subTest(why):
                before = self.api.snapshot()
                logged = len(self.api.change_lines())
                if isinstance(body, bytes):
                    answer = self.exchange("put", TENANT, 400, data=body)
                else:
                    answer = self.exchange("put", TENANT, 400, body=body)
                    self.assertEqual(request_schema.is_valid(body), not schema_refuses)
                self.assertEqual(answer["field"], field, answer)
                self.assertUnchanged(before)
                self.assertEqual(len(self.api.change_lines()), logged)
                self.assertNoSecret(answer["error"])
        # A new tenant: *** stands for no stored secret.
        for field, body in (
            ("signing_secret", tenant_body(domain="new.example.net", api_tokens=["tok-n"], signing_secret=HIDDEN)),
            ("api_tokens", tenant_body(domain="new.example.net", api_tokens=[HIDDEN])),
        ):
            before = self.api.snapshot()
            answer = self.exchange("put", TENANT, 400, domain="new.example.net", body=body)
            self.assertEqual(answer["field"], field)
            self.assertUnchanged(before)
        self.assertNotIn("new.example.net", self.api.stored())

    def test_file_tenant_read_only(self) -> None:
        """
        A tenant of the configuration file: readable, but PUT and DELETE (tenant or trunk) are 409 and change nothing.
        """
        before = self.api.snapshot()
        shown = self.exchange("get", TENANT, 200, domain=DOMAIN)["tenant"]
        self.assertEqual(shown["source"], "file")
        body = {**tenant_body(domain=DOMAIN), "api_tokens": ["tok-other-owner"]}
        self.assertEqual(self.exchange("put", TENANT, 409, domain=DOMAIN, body=body)["field"], "domain")
        self.exchange("delete", TENANT, 409, domain=DOMAIN)
        trunks = self.exchange("get", TRUNKS, 200, domain=DOMAIN, token=TOKEN)["trunks"]
        self.assertEqual([t["match"] for t in trunks], ["aiforward", "secure"])
        self.exchange("get", TRUNK, 200, domain=DOMAIN, match="aiforward", token=TOKEN)
        self.exchange("put", TRUNK, 409, domain=DOMAIN, match="aiforward", token=TOKEN, body=trunk_body("aiforward"))
        self.exchange("put", TRUNK, 409, domain=DOMAIN, match="fresh", token=TOKEN, body=trunk_body("fresh"))
        self.exchange("delete", TRUNK, 409, domain=DOMAIN, match="aiforward", token=TOKEN)
        self.assertUnchanged(before)

    def test_limits(self) -> None:
        """
        A new tenant beyond the most the API provisions is a 409 (a replaced one is not); a trunk beyond the most a tenant has is a 400 naming trunks.
        """
        most = service.MAX_TENANTS
        service.MAX_TENANTS = 1
        try:  # restored at once: test_every_documented_answer runs this test among others
            self.create(trunks=[{"match": f"t{i}", "target": "srs.example.net"} for i in range(MAX_TRUNKS)])
            before = self.api.snapshot()
            second = tenant_body(domain="second.example.net", api_tokens=["tok-second-1"])
            self.assertEqual(self.exchange("put", TENANT, 409, domain="second.example.net", body=second)["field"], "domain")
            self.assertEqual(self.exchange("put", TRUNK, 400, match="one-more", token=API_TOKEN, body={"target": "h"})["field"], "trunks")
            self.assertUnchanged(before)
            self.exchange("put", TRUNK, 200, match="t0", token=API_TOKEN, body={"target": "srs2.example.net"})
            self.exchange("put", TENANT, 200, body=tenant_body())
        finally:
            service.MAX_TENANTS = most

    def test_admin_credential(self) -> None:
        """
        The admin routes want one of [api] admin_tokens: none, a wrong one or a tenant's token is a 401 with a challenge.
        """
        self.create()
        before = self.api.snapshot()
        for token in (None, "adm-wrong", TOKEN, API_TOKEN, ADMIN_TOKEN + "x"):
            with self.subTest(token=token):
                self.exchange("get", TENANTS, 401, token=token)
                self.exchange("get", TENANT, 401, token=token)
                self.exchange("put", TENANT, 401, token=token, body=tenant_body())
                self.exchange("delete", TENANT, 401, token=token)
        self.assertUnchanged(before)
        # No admin_tokens configured: the admin routes are closed.
        closed = ProvisioningServer(self, admin_tokens=())
        closed.exchange("get", TENANTS, 401, token=ADMIN_TOKEN)
        closed.exchange("get", TENANTS, 401, token="")

    # -- a tenant's own trunks -------------------------------------------------------

    def test_trunks_with_own_credential(self) -> None:
        """
        A provisioned tenant creates, replaces, reads and deletes its trunks with its own token, each in force at once.
        """
        self.create()
        self.assertEqual([t["match"] for t in self.exchange("get", TRUNKS, 200, token=API_TOKEN)["trunks"]], ["srs", "plain"])
        created = self.exchange("put", TRUNK, 201, match="fresh", token=API_TOKEN, body={"target": "srs2.example.net", "transport": "tls"})
        self.assertEqual(created["trunk"], {
            "match": "fresh", "target": "srs2.example.net", "transport": "tls", "username": "", "password": "",
            "keepalive": 0.0, "session_expires": 0, "ring_timeout": 10.0, "down_for": 30.0, "probe_interval": 0.0,
        })
        self.assertEqual(self.api.live.tenant_for_domain(API_DOMAIN).trunk_for("fresh").target, "srs2.example.net")
        # Replaced in place, keeping its password through ***.
        replaced = self.exchange("put", TRUNK, 200, token=API_TOKEN_2,
                                 body={"match": "srs", "target": "127.0.0.1:5091", "username": "srs-user", "password": HIDDEN, "ring_timeout": 4})
        self.assertEqual((replaced["trunk"]["password"], replaced["trunk"]["ring_timeout"]), (HIDDEN, 4.0))
        tenant = self.api.live.tenant_for_domain(API_DOMAIN)
        self.assertEqual([t.match for t in tenant.trunks], ["srs", "plain", "fresh"])
        self.assertEqual((tenant.trunks[0].target, tenant.trunks[0].password), ("127.0.0.1:5091", TRUNK_PASSWORD))
        self.assertEqual(self.exchange("get", TRUNK, 200, token=API_TOKEN)["trunk"], replaced["trunk"])
        self.assertEqual(self.api.stored()[API_DOMAIN], tenant_document(tenant))
        self.assertEqual(self.exchange("delete", TRUNK, 200, match="fresh", token=API_TOKEN), {"success": True, "deleted": "fresh"})
        self.assertIsNone(self.api.live.tenant_for_domain(API_DOMAIN).trunk_for("fresh"))
        missing = self.exchange("get", TRUNK, 404, match="fresh", token=API_TOKEN)
        self.assertEqual(missing["field"], "match")
        self.assertIn("'fresh'", missing["error"])
        self.exchange("delete", TRUNK, 404, match="fresh", token=API_TOKEN)
        self.assertEqual(self.api.provisioning.changes, {"admin": 1, "tenant": 3, "reload": 0})

    def test_credentials_follow_changes(self) -> None:
        """
        The REST credentials in force change with the tenant: a JWT key given through the API opens the tenant's routes at once, removed it no longer does, and a deleted tenant's token is refused.
        """
        key = os.path.join(temporary_directory(self), "tenant-jwt.pem")
        with open(key, "wb") as f:
            f.write(public_pem(rsa_key(1)))
        self.exchange("get", TRUNKS, 401, token=API_TOKEN)
        self.create(jwt_public_key=key)
        token = rs256({"aud": API_DOMAIN}, which=1)
        self.exchange("get", TRUNKS, 200, token=token)
        self.exchange("get", TRUNKS, 200, token=API_TOKEN)
        self.exchange("put", TENANT, 200, body=tenant_body(jwt_public_key=""))
        self.exchange("get", TRUNKS, 401, token=token)
        self.assertEqual(self.exchange("put", TENANT, 400, body=tenant_body(jwt_public_key=key + ".gone"))["field"], "jwt_public_key")
        self.exchange("delete", TENANT, 200)
        self.exchange("get", TRUNKS, 401, token=API_TOKEN)

    def test_bad_trunk_refused_naming_the_field(self) -> None:
        """
        Each kind of bad trunk object is a 400 naming its field, and changes nothing.
        """
        self.create()
        schema = component("TenantTrunkRequest")
        for why, body, field, schema_refuses in BAD_TRUNKS:
            with self.subTest(why):
                before = self.api.snapshot()
                answer = self.exchange("put", TRUNK, 400, token=API_TOKEN, body=body)
                self.assertEqual(answer["field"], field, answer)
                self.assertEqual(schema.is_valid(body), not schema_refuses)
                self.assertUnchanged(before)
        before = self.api.snapshot()
        answer = self.exchange("put", TRUNK, 400, match="fresh", token=API_TOKEN, body=trunk_body("fresh", password=HIDDEN))
        self.assertEqual(answer["field"], "password")
        self.assertUnchanged(before)

    def test_cross_tenant(self) -> None:
        """
        Another tenant's valid token on a tenant's trunk routes is 403 and changes nothing; no or a wrong token is 401; the admin token is no tenant credential.
        """
        self.create()
        before = self.api.snapshot()
        cases = [(API_DOMAIN, OTHER_TOKEN, 403), (API_DOMAIN, TOKEN, 403), (DOMAIN, API_TOKEN, 403),
                 ("unknown.example.net", API_TOKEN, 403), (API_DOMAIN, None, 401), (API_DOMAIN, "tok-wrong", 401),
                 (API_DOMAIN, ADMIN_TOKEN, 401), ("unknown.example.net", "tok-wrong", 401)]
        for domain, token, status in cases:
            with self.subTest(domain=domain, token=token):
                self.exchange("get", TRUNKS, status, domain=domain, token=token)
                self.exchange("get", TRUNK, status, domain=domain, token=token)
                self.exchange("put", TRUNK, status, domain=domain, token=token, body=trunk_body("srs", target="evil.example.net"))
                answer = self.exchange("delete", TRUNK, status, domain=domain, token=token)
                self.assertNoSecret(json.dumps(answer))
        self.assertUnchanged(before)

    def test_forbidden_on_every_tenant_route(self) -> None:
        """
        Every documented tenant route answers a valid credential of another tenant with its documented 403.
        """
        for path, item in OPENAPI["paths"].items():
            if path.startswith("/{domain}/"):
                for method in item:
                    with self.subTest(f"{method.upper()} {path}"):
                        answer = self.exchange(method, path, 403, domain=DOMAIN, match="aiforward", token=OTHER_TOKEN)
                        self.assertNotIn("field", answer)

    # -- failures -----------------------------------------------------------------

    def test_store_failure(self) -> None:
        """
        When the database fails every change is a 503 and nothing in force, shown or counted changes; the log names no secret.
        """
        self.create()
        self.api.store.close()
        before = self.api.live.current, self.exchange("get", TENANTS, 200), dict(self.api.provisioning.changes)
        self.exchange("put", TENANT, 503, body=tenant_body(callback_url="http://127.0.0.1:9200"))
        self.exchange("put", TENANT, 503, domain="new.example.net",
                      body=tenant_body(domain="new.example.net", api_tokens=["tok-n"]))
        self.exchange("delete", TENANT, 503)
        self.exchange("put", TRUNK, 503, token=API_TOKEN, body=trunk_body("srs", target="127.0.0.1:5095"))
        self.exchange("put", TRUNK, 503, match="fresh", token=API_TOKEN, body=trunk_body("fresh"))
        self.exchange("delete", TRUNK, 503, token=API_TOKEN)
        self.assertIs(self.api.live.current, before[0])
        self.assertEqual((self.exchange("get", TENANTS, 200), self.api.provisioning.changes), before[1:])
        failures = [formatEvent(e) for e in self.api.events if "could not be stored" in str(e.get("log_format"))]
        self.assertEqual(len(failures), 6)
        for line in failures:
            self.assertNoSecret(line)

    def test_database_locked(self) -> None:
        """
        A database another connection holds locked (sqlite3.OperationalError) is a 503 that changes nothing; once free, the same PUT is applied.
        """
        before = self.api.snapshot()
        other = sqlite3.connect(self.api.database, isolation_level=None)
        self.addCleanup(other.close)
        other.execute("BEGIN EXCLUSIVE")
        answer = self.exchange("put", TENANT, 503, body=tenant_body())
        self.assertNotIn("field", answer)
        other.execute("ROLLBACK")
        self.assertUnchanged(before)
        self.assertIsNone(self.api.live.tenant_for_domain(API_DOMAIN))
        self.create()
        self.assertEqual(list(self.api.stored()), [API_DOMAIN])

    def test_unavailable(self) -> None:
        """
        A server without provisioning answers every provisioning route 503 (after checking the credential).
        """
        self.exchange("get", TENANTS, 503, bare=True)
        self.exchange("get", TENANT, 503, bare=True)
        self.exchange("put", TENANT, 503, body=tenant_body(), bare=True)
        self.exchange("delete", TENANT, 503, bare=True)
        self.exchange("get", TENANTS, 401, token=None, bare=True)
        self.exchange("get", TRUNKS, 503, domain=DOMAIN, token=TOKEN, bare=True)
        self.exchange("get", TRUNK, 503, domain=DOMAIN, token=TOKEN, bare=True)
        self.exchange("put", TRUNK, 503, domain=DOMAIN, token=TOKEN, body=trunk_body("srs"), bare=True)
        self.exchange("delete", TRUNK, 503, domain=DOMAIN, token=TOKEN, bare=True)
        self.exchange("get", TRUNKS, 403, domain=DOMAIN, token=OTHER_TOKEN, bare=True)

    def test_too_large(self) -> None:
        """
        A body over the limit is a 413, for a tenant and for a trunk.
        """
        self.create()
        before = self.api.snapshot()
        padding = json.dumps({**tenant_body(), "pad": "x" * MAX_BODY}).encode()
        self.assertEqual(self.exchange("put", TENANT, 413, data=padding)["field"], "body")
        self.exchange("put", TRUNK, 413, token=API_TOKEN, data=padding)
        self.assertUnchanged(before)

    # -- the change log -------------------------------------------------------------

    def test_change_log(self) -> None:
        """
        Each applied change is one log line naming who and the changed fields, never a secret's value; refused ones log no change.
        """
        self.create()
        shown = self.exchange("get", TENANT, 200)["tenant"]
        self.exchange("put", TENANT, 200, body={**shown, "callback_url": "http://127.0.0.1:9300", "api_tokens": ["tok-rotated-1"]})
        self.exchange("put", TRUNK, 200, token="tok-rotated-1", body=trunk_body("srs", password="new-trunk-pw"))
        self.exchange("put", TRUNK, 201, match="fresh", token="tok-rotated-1", body={"target": "srs.example.net"})
        self.exchange("delete", TRUNK, 200, match="fresh", token="tok-rotated-1")
        self.exchange("put", TENANT, 400, body=tenant_body(trunks=[trunk_body("a", transport="sctp")]))
        self.exchange("delete", TENANT, 200)
        lines = [formatEvent(e) for e in self.api.change_lines()]
        self.assertEqual(len(lines), 6, lines)
        created, updated, trunk, added, removed, deleted = lines
        for line in lines[:2] + lines[-1:]:
            self.assertRegex(line, r"by admin from \S+$")
        for line in lines[2:5]:
            self.assertRegex(line, rf"by tenant {API_DOMAIN} from \S+$")
        self.assertIn(f"tenant {API_DOMAIN} created (", created)
        for key in ("api_tokens", "callback_url", "signing_secret", "trunks"):
            self.assertIn(key, created)
        self.assertIn(f"tenant {API_DOMAIN} updated (api_tokens, callback_url)", updated)
        self.assertIn(f"trunk srs of {API_DOMAIN} updated (password)", trunk)
        self.assertIn(f"trunk fresh of {API_DOMAIN} created (", added)
        self.assertIn(f"trunk fresh of {API_DOMAIN} deleted", removed)
        self.assertIn(f"tenant {API_DOMAIN} deleted", deleted)
        everything = repr(self.api.events) + "\n".join(formatEvent(e) for e in self.api.events)
        for secret in SECRETS + ("tok-rotated-1", "new-trunk-pw"):
            self.assertNotIn(secret, everything)
        self.assertEqual(self.api.provisioning.changes, {"admin": 3, "tenant": 3, "reload": 0})

    # -- the document -----------------------------------------------------------------

    def test_document_states_the_objects(self) -> None:
        """
        The documented tenant and trunk objects have the keys of tenant_document and trunk_document, and the code's limits and choices.
        """
        trunk = trunk_document(TrunkConfig(match="m", target="h"))
        tenant = tenant_document(TenantConfig(domain="d", callback_url="http://h", signing_secret="s"))
        self.assertEqual(list(SCHEMAS["TenantTrunkRequest"]["properties"]), list(trunk))
        self.assertEqual(SCHEMAS["TenantTrunk"]["required"], list(trunk))
        self.assertEqual(list(SCHEMAS["TenantRequest"]["properties"]), list(tenant) + ["source"])
        self.assertEqual(SCHEMAS["Tenant"]["required"], list(tenant) + ["source"])
        self.assertEqual(list(tenant), list(sections.TENANT_DOCUMENT_KEYS))
        self.assertEqual(list(trunk), list(sections.TRUNK_KEYS))
        properties = SCHEMAS["TenantRequest"]["properties"]
        self.assertEqual(properties["trunks"]["maxItems"], MAX_TRUNKS)
        self.assertEqual(properties["missing_metadata"]["enum"], [*sections.MISSING_METADATA_POLICIES, None])
        self.assertEqual(properties["non_siprec"]["enum"], [*sections.NON_SIPREC_POLICIES, None])
        self.assertEqual(SCHEMAS["TenantTrunkRequest"]["properties"]["transport"]["enum"], [*TRANSPORTS, None])
        # A tenant as the code shows it validates; the full example object too.
        self.assertEqual([e.message for e in component("TenantRequest").iter_errors(tenant_body())], [])
        for path in PROVISIONING_PATHS[:2]:
            for operation in OPENAPI["paths"][path].values():
                self.assertEqual(operation["security"], [{"adminToken": []}])

    def test_documented_examples(self) -> None:
        """
        The JSON examples of docs/api.md's provisioning section parse and match the document's schemas, each answer and request kind shown.
        """
        text = API_DOC.read_text(encoding="utf-8")
        section = text[text.index("## Provisioning (SPEC §11)\n"):]
        section = section[: section.index("\n## ", 1)]
        shown = set()
        for block in re.findall(r"```json\n(.*?)```", section, re.S):
            example = json.loads(block)
            name = next(n for key, n in EXAMPLE_SCHEMAS if key in example)
            shown.add(name)
            with self.subTest(name):
                self.assertEqual([e.message for e in component(name).iter_errors(example)], [])
        self.assertEqual(shown, {"TenantResponse", "TenantTrunkResponse", "Error"})
        # The limits it states are the code's.
        for words in (f"at most {MAX_TRUNKS}, each", f"`trunks` (more than {MAX_TRUNKS})", f"beyond the {service.MAX_TENANTS} the API"):
            self.assertIn(words, section)
        # The anchor docs/configuration.md links to.
        self.assertIn("api.md#provisioning-spec-11", (API_DOC.parent / "configuration.md").read_text(encoding="utf-8"))

    # -- coverage ---------------------------------------------------------------------

    def test_every_documented_answer(self) -> None:
        """
        Every documented answer of the provisioning routes, and the 403 of every tenant route, is produced by the tests of this class.
        """
        covered: set[tuple[str, str, str]] = set()
        for name in sorted(dir(self)):
            if name.startswith("test_") and name != "test_every_documented_answer":
                self.setUp()
                getattr(self, name)()
                covered |= self.api.covered
        self.assertEqual((PROVISIONING_RESPONSES | FORBIDDEN_RESPONSES) - covered, set())
        self.assertTrue(FORBIDDEN_RESPONSES)
