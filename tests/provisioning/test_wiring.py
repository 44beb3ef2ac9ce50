"""
The provisioning service as C{aiconnect.tap.build_service} wires it: every
component that reads tenants, trunks and limits sees a change at once, and
C{aiconnect_config_changes_total} counts it.
"""

from __future__ import annotations

import os

from prometheus_client import generate_latest
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aiconnect import tap
from aiconnect.config import load
from tests.api.helpers import temporary_directory
from tests.provisioning.support import FILE_TOML, done, tenant_object


class WiringTests(SynchronousTestCase):
    """
    A service tree built (not started) on a real configuration file and
    database.
    """

    def setUp(self) -> None:
        directory = temporary_directory(self)
        self.path = os.path.join(directory, "aiconnect.toml")
        database = os.path.join(directory, "events.sqlite3")
        with open(self.path, "w") as f:
            f.write(FILE_TOML.replace('":memory:"', repr(database).replace("'", '"')) + "\n[limits]\nmax_connections = 77\n")
        self.top = tap.build_service(load(self.path), Clock(), http_client=object(), config_path=self.path)
        self.addCleanup(self.top.dialog_store.close)
        self.addCleanup(self.top.outbox.close)

    def metric(self, source: str) -> str:
        text = generate_latest(self.top.api.metrics_registry).decode()
        prefix = f'aiconnect_config_changes_total{{source="{source}"}} '
        return next(line[len(prefix):] for line in text.splitlines() if line.startswith(prefix))

    def test_change_reaches_every_reader(self) -> None:
        """
        A provisioned tenant is seen by SIP admission, the deliverer and the
        prober's trunk list; deleted, the deliverer still knows it (its
        undelivered events go out) but SIP admission does not.
        """
        provisioning = self.top.provisioning
        self.assertIsNone(self.top.srs.config.tenant_for_domain("api.example.com"))
        done(self, provisioning.put_tenant("api.example.com", tenant_object(), "admin"))
        self.assertIsNotNone(self.top.srs.config.tenant_for_domain("api.example.com"))
        self.assertIn("api.example.com", self.top.deliverer._tenants)
        self.assertIn("aiforward", [t.match for t in self.top.prober._trunks()])
        self.assertEqual(self.metric("admin"), "1.0")
        done(self, provisioning.delete_tenant("api.example.com", "admin"))
        self.assertIsNone(self.top.srs.config.tenant_for_domain("api.example.com"))
        self.assertIn("api.example.com", self.top.deliverer._tenants)
        self.assertEqual(self.metric("admin"), "2.0")

    def test_sighup_reloads_limits_into_the_transport(self) -> None:
        """
        C{sighup()} re-reads the file: a new connection limit reaches the
        SIP transport, and the reload is counted.
        """
        self.assertEqual(self.top.sip.transport.limits.max_connections, 77)
        with open(self.path, "a") as f:
            f.write("\n")
        text = open(self.path).read().replace("max_connections = 77", "max_connections = 88")
        with open(self.path, "w") as f:
            f.write(text)
        self.top.sighup()
        self.assertEqual(self.top.sip.transport.limits.max_connections, 88)
        self.assertEqual(self.metric("reload"), "1.0")
