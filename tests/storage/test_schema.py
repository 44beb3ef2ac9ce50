"""
Tests of L{aiconnect.storage.schema} and L{aiconnect.storage.pool} on a
real PostgreSQL server: the migrations are applied once, are safe when two
nodes start together, and refuse a newer schema; the pool refuses a bad
URL and never shows the password.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks

from aiconnect.storage.pool import connect_pool, start_pool
from aiconnect.storage.schema import LOCK_KEY, SCHEMA_VERSION, SchemaTooNew, migrate
from tests.storage.pgserver import PostgresTestCase, wait_until

#: The tables of the schema.
TABLES = ["disabled_endpoints", "events", "live_dialogs", "node_leases", "provisioned_tenants", "schema_version", "session_directory"]


class MigrationTests(PostgresTestCase):
    """
    L{migrate} on a database of its own.
    """

    def tables(self) -> list[str]:
        rows = self.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
        return [row[0] for row in rows]

    @inlineCallbacks
    def test_applied_once(self) -> Any:
        """
        The first start creates every table and records each step once; a
        second start finds the work done and changes nothing.
        """
        pool = self.make_pool()
        self.assertEqual(self.tables(), [])
        result = yield migrate(pool, now=1000.0, node_id="node-a")
        self.assertEqual(result, (0, SCHEMA_VERSION))
        self.assertEqual(self.tables(), TABLES)
        again = yield migrate(pool, now=2000.0, node_id="node-b")
        self.assertEqual(again, (SCHEMA_VERSION, SCHEMA_VERSION))
        rows = self.query("SELECT version, applied, node_id FROM schema_version ORDER BY version")
        self.assertEqual(rows, [(v, 1000.0, "node-a") for v in range(1, SCHEMA_VERSION + 1)])

    @inlineCallbacks
    def test_concurrent_start(self) -> Any:
        """
        Two nodes migrating at once queue on the advisory lock: while
        another session holds it both wait; once it is released one applies
        the steps and the other finds them applied, and neither fails.
        """
        pools = [self.make_pool(), self.make_pool()]
        blocker = self.server.connect(self.database)
        self.addCleanup(blocker.close)
        blocker.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        runs = [migrate(pool, now=float(i), node_id=f"node-{i}") for i, pool in enumerate(pools)]

        def waiting() -> int:
            rows = self.query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            return int(rows[0][0])

        yield wait_until(lambda: waiting() == 2)
        for run in runs:
            self.assertNoResult(run)
        blocker.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        results = yield gatherResults(runs)
        self.assertEqual(sorted(results), [(0, SCHEMA_VERSION), (SCHEMA_VERSION, SCHEMA_VERSION)])
        self.assertEqual(self.query("SELECT count(*) FROM schema_version"), [(SCHEMA_VERSION,)])
        self.assertEqual(self.tables(), TABLES)

    @inlineCallbacks
    def test_newer_schema_refused(self) -> Any:
        """
        A database migrated by newer code is refused, and nothing is
        applied.
        """
        pool = self.make_pool()
        yield migrate(pool, now=1.0, node_id="new")
        self.query("INSERT INTO schema_version VALUES (%s, 2.0, 'newer') RETURNING version", (SCHEMA_VERSION + 1,))
        failure = yield self.assertFailure(migrate(pool, now=3.0, node_id="old"), SchemaTooNew)
        self.assertIn(f"version {SCHEMA_VERSION + 1}", str(failure))
        self.assertEqual(self.query("SELECT count(*) FROM schema_version"), [(SCHEMA_VERSION + 1,)])

    @inlineCallbacks
    def test_start_pool(self) -> Any:
        """
        L{start_pool} returns the pool once migrated; its connections carry
        the node's application name.
        """
        pool = yield start_pool(self.server.url(self.database), reactor, node_id="node-a", now=5.0)
        self.addCleanup(pool.close)
        rows = yield pool.runQuery("SELECT current_setting('application_name'), current_setting('statement_timeout')")
        self.assertEqual(rows, [("aiconnect/node-a", "30s")])
        self.assertEqual(self.query("SELECT max(version) FROM schema_version"), [(SCHEMA_VERSION,)])

    @inlineCallbacks
    def test_wrong_password(self) -> Any:
        """
        A refused connection fails the start (the pool is closed); neither
        the error nor the pool's repr holds the password.
        """
        url = self.server.url(self.database).replace(self.server.url(self.database).split(":")[2].split("@")[0], "wrong-pw-123")
        failure = yield self.assertFailure(start_pool(url, reactor, node_id="a", now=0.0), Exception)
        self.assertNotIn("wrong-pw-123", str(failure))
        self.assertIn("password authentication failed", str(failure))


class PoolTests(PostgresTestCase):
    """
    L{connect_pool}'s checks (no database needed beyond the server).
    """

    def test_bad_url(self) -> None:
        """
        A URL that is not PostgreSQL, or malformed, is refused before any
        connection, without echoing the password.
        """
        for url in ("", "mysql://u:pw-secret@h/db", "postgresql://u:pw-secret@h:0/db"):
            with self.assertRaises(ValueError) as caught:
                connect_pool(url, reactor)
            self.assertNotIn("pw-secret", str(caught.exception))
