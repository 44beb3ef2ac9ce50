"""
Tests of L{aiconnect.storage.tenants}: the same contract for
L{PostgresTenantStore} (a real PostgreSQL server) and for the SQLite store
behind L{SyncTenantStoreAdapter}; each change is visible to another
connection once its L{Deferred} fired, and the PostgreSQL store never
blocks the reactor.
"""

from __future__ import annotations

import json
import os
import sqlite3
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import TestCase

from aiconnect.provisioning.store import SqliteTenantStore
from aiconnect.storage.tenants import AsyncTenantStore, PostgresTenantStore, SyncTenantStoreAdapter
from tests.provisioning.support import tenant_object
from tests.storage.pgserver import MigratedTestCase


class TenantStoreContract:
    """
    What every L{AsyncTenantStore} does; the subclasses say which.
    """

    store: AsyncTenantStore

    def stored(self) -> list[tuple[str, str]]:
        """
        @return: C{(domain, callback_url)} of each stored tenant, read on
            another connection.
        """
        raise NotImplementedError

    @inlineCallbacks
    def test_put_load_delete(self) -> Any:
        """
        Objects come back whole, in domain order; a put replaces; delete
        says whether there was one.
        """
        b = tenant_object("b.example.com")
        yield self.store.put("b.example.com", b)
        yield self.store.put("a.example.com", tenant_object("a.example.com"))
        yield self.store.put("b.example.com", tenant_object("b.example.com", callback_timeout=2.0))
        loaded = yield self.store.load()
        self.assertEqual([d["domain"] for d in loaded], ["a.example.com", "b.example.com"])
        self.assertEqual(loaded[0], tenant_object("a.example.com"))
        self.assertEqual(loaded[1], dict(b, callback_timeout=2.0))
        self.assertTrue((yield self.store.delete("a.example.com")))
        self.assertFalse((yield self.store.delete("a.example.com")))
        loaded = yield self.store.load()
        self.assertEqual([d["domain"] for d in loaded], ["b.example.com"])

    @inlineCallbacks
    def test_durable_when_fired(self) -> Any:
        """
        Once a put or delete fired, another connection sees it.
        """
        document = tenant_object("a.example.com", callback_url="http://127.0.0.1:9001")
        yield self.store.put("a.example.com", document)
        self.assertEqual(self.stored(), [("a.example.com", "http://127.0.0.1:9001")])
        yield self.store.delete("a.example.com")
        self.assertEqual(self.stored(), [])


class PostgresTenantStoreTests(TenantStoreContract, MigratedTestCase):
    """
    L{PostgresTenantStore} on a real PostgreSQL database.
    """

    @inlineCallbacks
    def setUp(self) -> Any:
        yield super().setUp()
        self.clock = Clock()
        self.clock.advance(1700000000)
        self.store = PostgresTenantStore(self.runner, clock=self.clock.seconds)

    def stored(self) -> list[tuple[str, str]]:
        return self.query("SELECT domain, document->>'callback_url' FROM provisioned_tenants ORDER BY domain")

    @inlineCallbacks
    def test_updated(self) -> Any:
        """
        Each row records when it was last written (the clock given).
        """
        yield self.store.put("a.example.com", tenant_object("a.example.com"))
        self.assertEqual(self.query("SELECT updated FROM provisioned_tenants"), [(1700000000.0,)])

    @inlineCallbacks
    def test_never_blocks_the_reactor(self) -> Any:
        """
        While another client holds the row's lock, a put waits in a pool
        thread: the reactor goes on (a delayed call runs) and the put's
        L{Deferred} fires once the lock is released.  (A put on the
        reactor thread would block it until the other client's transaction
        is killed by its idle timeout.)
        """
        yield self.store.put("a.example.com", tenant_object("a.example.com"))
        other = self.server.connect(self.database, autocommit=False)
        self.addCleanup(other.close)
        other.execute("SET idle_in_transaction_session_timeout = '5s'")
        other.execute("SELECT 1 FROM provisioned_tenants WHERE domain = 'a.example.com' FOR UPDATE")
        put = self.store.put("a.example.com", tenant_object("a.example.com", callback_url="http://127.0.0.1:9002"))
        yield deferLater(reactor, 0.2, lambda: None)
        self.assertNoResult(put)
        other.rollback()
        yield put
        self.assertEqual(self.stored(), [("a.example.com", "http://127.0.0.1:9002")])

    @inlineCallbacks
    def test_failure_changes_nothing(self) -> Any:
        """
        A put that fails (the table is gone) fails its L{Deferred}; the
        store keeps working for the next call.
        """
        with self.server.connect(self.database) as admin:
            admin.execute("ALTER TABLE provisioned_tenants RENAME TO moved")
        yield self.assertFailure(self.store.put("a.example.com", tenant_object("a.example.com")), Exception)
        with self.server.connect(self.database) as admin:
            admin.execute("ALTER TABLE moved RENAME TO provisioned_tenants")
        yield self.store.put("a.example.com", tenant_object("a.example.com"))
        self.assertEqual(self.stored(), [("a.example.com", tenant_object()["callback_url"])])


class SqliteAdapterTests(TenantStoreContract, TestCase):
    """
    The SQLite store of a single node behind L{SyncTenantStoreAdapter}.
    """

    def setUp(self) -> None:
        self.path = os.path.join(self.mktemp(), "events.sqlite3")
        sqlite_store = SqliteTenantStore(self.path, clock=Clock().seconds)
        self.addCleanup(sqlite_store.close)
        self.store = SyncTenantStoreAdapter(sqlite_store)

    def stored(self) -> list[tuple[str, str]]:
        other = sqlite3.connect(self.path)
        try:
            rows = other.execute("SELECT domain, document FROM provisioned_tenants ORDER BY domain").fetchall()
        finally:
            other.close()
        return [(domain, json.loads(document)["callback_url"]) for domain, document in rows]

    def test_failure_is_a_failed_deferred(self) -> None:
        """
        An exception of the synchronous store comes back as a failed
        L{Deferred}, not raised.
        """
        self.store.store.close()  # type: ignore[attr-defined]
        self.failureResultOf(self.store.put("a.example.com", tenant_object()), sqlite3.ProgrammingError)
