"""
Tests of L{aiconnect.provisioning.service}: changes validated, stored, put
in force, logged and counted; the file reloaded (SIGHUP).
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.config import load
from aiconnect.provisioning import LiveConfig, Provisioning, SqliteTenantStore
from aiconnect.provisioning.service import restart_keys
from tests.api.helpers import temporary_directory
from tests.provisioning.support import FILE_TOML, OTHER_SECRET, SECRET, done, file_config, refused, tenant_object


def _lines(logs: list[Any]) -> list[str]:
    return [formatEvent(e) for e in logs]


class ServiceTestCase(SynchronousTestCase):
    """
    A L{Provisioning} on a real SQLite file and a real configuration file.
    """

    def setUp(self) -> None:
        directory = temporary_directory(self)
        self.config_path = os.path.join(directory, "aiconnect.toml")
        self.write(FILE_TOML)
        self.db_path = os.path.join(directory, "events.sqlite3")
        self.store = SqliteTenantStore(self.db_path, clock=Clock().seconds)
        self.addCleanup(self.store.close)
        self.live = LiveConfig(load(self.config_path))
        self.service = Provisioning(self.live, self.store, path=self.config_path)

    def call(self, method: Any, *args: Any) -> Any:
        """
        @return: What a change gave (it must be done: SQLite answers at once).
        """
        return done(self, method(*args))

    def write(self, text: str) -> None:
        with open(self.config_path, "w") as f:
            f.write(text)


class ChangeTests(ServiceTestCase):
    """
    Tenants and trunks changed through L{Provisioning}.
    """

    def test_tenant_created_stored_and_logged(self) -> None:
        """
        A new tenant is stored, in force, counted, and logged once with who
        and the field names, never a secret.
        """
        with capturedLogs() as logs:
            created, shown = self.call(self.service.put_tenant, "api.example.com", tenant_object(), "admin from 127.0.0.1")
        self.assertTrue(created)
        self.assertEqual(shown["source"], "api")
        self.assertEqual(shown["signing_secret"], "***")
        self.assertEqual([d["domain"] for d in done(self, self.store.load())], ["api.example.com"])
        self.assertIsNotNone(self.live.tenant_for_domain("api.example.com"))
        self.assertEqual(self.service.changes, {"admin": 1, "tenant": 0, "reload": 0})
        (line,) = _lines(logs)
        self.assertIn("tenant api.example.com created", line)
        self.assertIn("admin from 127.0.0.1", line)
        self.assertIn("signing_secret", line)
        for secret in (OTHER_SECRET, "pw-1", "tok-api.example.com"):
            self.assertNotIn(secret, line)

    def test_replace_names_changed_fields(self) -> None:
        """
        A replaced tenant answers created=False and its log line names only
        the fields that changed.
        """
        self.call(self.service.put_tenant, "api.example.com", tenant_object(), "admin")
        with capturedLogs() as logs:
            created, _ = self.call(self.service.put_tenant, "api.example.com", tenant_object(callback_timeout=2.0), "admin")
        self.assertFalse(created)
        (line,) = _lines(logs)
        self.assertIn("updated (callback_timeout)", line)

    def test_file_tenant_read_only(self) -> None:
        """
        A tenant of the file: 409 for PUT and DELETE, of itself and of its
        trunks; nothing stored.
        """
        tenant = self.live.tenant_for_domain("file.example.com")
        for attempt in (
            lambda: self.service.put_tenant("file.example.com", tenant_object("file.example.com"), "admin"),
            lambda: self.service.delete_tenant("file.example.com", "admin"),
            lambda: self.service.put_trunk(tenant, "new", {"target": "127.0.0.1"}, "tenant"),
            lambda: self.service.delete_trunk(tenant, "rec", "tenant"),
        ):
            e = refused(self, attempt())
            self.assertEqual(e.status, 409)
        self.assertEqual(done(self, self.store.load()), [])

    def test_trunk_replaced_in_place(self) -> None:
        """
        A trunk PUT replaces the one with its match in its position, keeps
        a password sent as C{***}, and the tenant's other trunks.
        """
        self.call(self.service.put_tenant, 
            "api.example.com",
            tenant_object(trunks=[{"match": "a", "target": "h1", "username": "u", "password": "pw-a"}, {"match": "b", "target": "h2"}]),
            "admin",
        )
        tenant = self.live.tenant_for_domain("api.example.com")
        created, shown = self.call(self.service.put_trunk, tenant, "a", {"target": "h3", "username": "u", "password": "***"}, "tenant api")
        self.assertFalse(created)
        self.assertEqual(shown["password"], "***")
        now = self.live.tenant_for_domain("api.example.com")
        self.assertEqual([(t.match, t.target, t.password) for t in now.trunks], [("a", "h3", "pw-a"), ("b", "h2", "")])
        self.assertEqual(tenant.trunk_for("a").target, "h1", "the object a live call holds is unchanged")
        created, _ = self.call(self.service.put_trunk, now, "c", {"target": "h4"}, "tenant api")
        self.assertTrue(created)
        self.assertEqual(self.service.changes["tenant"], 2)
        e = refused(self, self.service.put_trunk(now, "c", {"match": "d", "target": "h"}, "t"))
        self.assertEqual((e.status, e.field), (400, "match"))

    def test_refused_changes_nothing(self) -> None:
        """
        A refused change (bad field, token of another tenant) leaves the
        store and the configuration in force as they were.
        """
        before = self.live.current
        for body, field in ((tenant_object(callback_url="ftp://x"), "callback_url"), (tenant_object(api_tokens=["tok-file"]), "api_tokens[0]")):
            e = refused(self, self.service.put_tenant("api.example.com", body, "admin"))
            self.assertEqual((e.status, e.field), (400, field))
        self.assertIs(self.live.current, before)
        self.assertEqual(done(self, self.store.load()), [])
        self.assertEqual(self.service.changes["admin"], 0)

    def test_store_failure(self) -> None:
        """
        A store that cannot write: 503, nothing in force changes.
        """
        before = self.live.current
        self.store.close()
        e = refused(self, self.service.put_tenant("api.example.com", tenant_object(), "admin"))
        self.assertEqual(e.status, 503)
        self.assertIs(self.live.current, before)

    def test_stored_tenants_at_start(self) -> None:
        """
        At start the stored tenants are put in force; one that no longer
        validates or conflicts with the file is logged and left out.
        """
        done(self, self.store.put("a.example.com", tenant_object("a.example.com")))
        done(self, self.store.put("b.example.com", tenant_object("b.example.com", api_tokens=["tok-file"])))
        done(self, self.store.put("c.example.com", tenant_object("c.example.com", jwt_public_key="/nonexistent.pem")))
        with capturedLogs() as logs:
            tenants = Provisioning.stored_tenants(done(self, self.store.load()), file_config())
        self.assertEqual([t.domain for t in tenants], ["a.example.com"])
        text = "\n".join(_lines(logs))
        self.assertIn("b.example.com left out", text)
        self.assertIn("c.example.com left out: jwt_public_key", text)
        self.assertNotIn("tok-file", text)


class ReloadTests(ServiceTestCase):
    """
    L{Provisioning.reload}: what SIGHUP does.
    """

    def test_no_change(self) -> None:
        """
        The same file: one line, nothing applied or counted.
        """
        before = self.live.current
        with capturedLogs() as logs:
            self.assertTrue(self.service.reload())
        self.assertEqual(len(logs), 1)
        self.assertIn("reloaded: no change", _lines(logs)[0])
        self.assertIs(self.live.current, before)
        self.assertEqual(self.service.changes["reload"], 0)

    def test_tenants_limits_applied_sockets_not(self) -> None:
        """
        Tenants, trunks and limits are applied; a changed SIP port is named
        as needing a restart and the running value stays; one line.
        """
        new_tenant = f"""
[[tenant]]
domain = "new.example.com"
callback_url = "http://127.0.0.1:9"
signing_secret = "{SECRET}"
"""
        text = FILE_TOML.replace('target = "127.0.0.1:5999"', 'target = "127.0.0.1:6000"').replace("udp_port = 0", "udp_port = 5999")
        self.write(text + "\n[limits]\ninvite_rate = 7.0\n" + new_tenant)
        tenant_before = self.live.tenant_for_domain("file.example.com")
        with capturedLogs() as logs:
            self.assertTrue(self.service.reload())
        (line,) = _lines(logs)
        self.assertIn("tenants added: new.example.com", line)
        self.assertIn("tenants changed: file.example.com", line)
        self.assertIn("limits changed: invite_rate", line)
        self.assertIn("need a restart (not applied): sip.udp_port", line)
        self.assertEqual(self.live.limits.invite_rate, 7.0)
        self.assertEqual(self.live.sip.udp_port, 0)
        self.assertEqual(self.live.tenant_for_domain("file.example.com").trunks[0].target, "127.0.0.1:6000")
        self.assertEqual(tenant_before.trunks[0].target, "127.0.0.1:5999")
        self.assertEqual(self.service.changes["reload"], 1)

    def test_invalid_file_refused(self) -> None:
        """
        An invalid file: one error line naming the key; the running
        configuration stays.
        """
        self.write(FILE_TOML.replace('target = "127.0.0.1:5999"', 'target = "127.0.0.1:5999"\n  transport = "carrier-pigeon"'))
        before = self.live.current
        with capturedLogs() as logs:
            self.assertFalse(self.service.reload())
        (line,) = _lines(logs)
        self.assertIn("refused, the running configuration stays", line)
        self.assertIn("tenant[0].trunk[0].transport", line)
        self.assertIs(self.live.current, before)

    def test_conflict_with_provisioned_refused(self) -> None:
        """
        A file whose tenant takes a provisioned tenant's token is refused.
        """
        self.call(self.service.put_tenant, "api.example.com", tenant_object(), "admin")
        self.write(FILE_TOML.replace('api_tokens = ["tok-file"]', 'api_tokens = ["tok-api.example.com"]'))
        with capturedLogs() as logs:
            self.assertFalse(self.service.reload())
        self.assertIn("provisioned tenant 'api.example.com'.api_tokens[0]", _lines(logs)[0])
        self.assertIn("is an API token of tenant[0]", _lines(logs)[0])
        self.assertNotIn("tok-api", _lines(logs)[0])

    def test_restart_keys(self) -> None:
        """
        Only keys outside tenants, limits and admin_tokens need a restart.
        """
        old = file_config()
        new = file_config("\n[rtp]\nport_min = 40000\nport_max = 40099\n[limits]\nmax_sessions = 3\n")
        self.assertEqual(restart_keys(old, new), ["rtp.port_min", "rtp.port_max"])
