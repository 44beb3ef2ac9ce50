"""
Tests of L{aiconnect.provisioning.store}: provisioned tenants in the events
database, durable when a write returns.
"""

from __future__ import annotations

import os
import sqlite3

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.provisioning import SqliteTenantStore
from aiconnect.webhooks.database import EventDatabase
from aiconnect.webhooks.outbox import EventOutbox
from tests.api.helpers import temporary_directory
from tests.provisioning.support import done, tenant_object


class StoreTests(SynchronousTestCase):
    """
    L{SqliteTenantStore} on a real SQLite file.
    """

    def setUp(self) -> None:
        self.path = os.path.join(temporary_directory(self), "events.sqlite3")
        self.clock = Clock()

    def test_put_load_delete(self) -> None:
        """
        Objects come back in domain order; a put replaces; delete says
        whether there was one.
        """
        store = SqliteTenantStore(self.path, clock=self.clock.seconds)
        self.addCleanup(store.close)
        done(self, store.put("b.example.com", tenant_object("b.example.com")))
        done(self, store.put("a.example.com", tenant_object("a.example.com")))
        done(self, store.put("b.example.com", tenant_object("b.example.com", callback_timeout=2.0)))
        self.assertEqual([d["domain"] for d in done(self, store.load())], ["a.example.com", "b.example.com"])
        self.assertEqual(done(self, store.load())[1]["callback_timeout"], 2.0)
        self.assertTrue(done(self, store.delete("a.example.com")))
        self.assertFalse(done(self, store.delete("a.example.com")))
        self.assertEqual([d["domain"] for d in done(self, store.load())], ["b.example.com"])

    def test_committed_before_put_returns(self) -> None:
        """
        On the shared, grouped database (one commit per reactor turn), a
        put is committed at once: another connection sees it before the
        turn ends, so a kill right after the API answered loses nothing.
        """
        database = EventDatabase(self.path, reactor=self.clock)
        outbox = EventOutbox(database, clock=self.clock.seconds)
        store = SqliteTenantStore(database, clock=self.clock.seconds)
        self.addCleanup(outbox.close)
        self.addCleanup(store.close)
        done(self, store.put("a.example.com", tenant_object()))
        other = sqlite3.connect(self.path)
        self.addCleanup(other.close)
        rows = other.execute("SELECT domain FROM provisioned_tenants").fetchall()
        self.assertEqual(rows, [("a.example.com",)])

    def test_survives_reopening(self) -> None:
        """
        A new store on the same file (a restart) loads what was stored.
        """
        store = SqliteTenantStore(self.path, clock=self.clock.seconds)
        done(self, store.put("a.example.com", tenant_object()))
        store.close()
        again = SqliteTenantStore(self.path, clock=self.clock.seconds)
        self.addCleanup(again.close)
        self.assertEqual(done(self, again.load()), [tenant_object()])

    def test_closed(self) -> None:
        """
        A closed store raises instead of pretending to store.
        """
        store = SqliteTenantStore(self.path, clock=self.clock.seconds)
        store.close()
        self.failureResultOf(store.put("a.example.com", tenant_object()), sqlite3.ProgrammingError)
