"""
Tests for C{GET /ready} (L{aiconnect.api.readiness}): the database probe on
real SQLite files, the route's answers, and the real service on loopback
(ready once started; not ready while another process holds the events
database's write lock, or when the SIP listeners are down).

RTP range: 61700-61799.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path

import treq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from aiconnect.api import ApiServer
from aiconnect.api.readiness import database_writable, run_checks
from aiconnect.config import Config
from aiconnect.webhooks.database import EventDatabase
from tests.api.helpers import ApiClient
from tests.integration.helpers import Certificates, free_port, write_config
from tests.integration.scenario import start_service


class DatabaseProbeTests(SynchronousTestCase):
    """
    L{database_writable}: a real write, rolled back.
    """

    def setUp(self) -> None:
        self.path = str(Path(tempfile.mkdtemp(prefix="aiconnect-ready-")) / "events.sqlite3")
        self.database = EventDatabase(self.path, reactor=Clock())
        self.addCleanup(self.database.close)
        self.database.write("CREATE TABLE t (x)")
        self.database.flush()

    def tables(self) -> list[str]:
        other = sqlite3.connect(self.path)
        try:
            return [row[0] for row in other.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        finally:
            other.close()

    def test_writable_leaves_nothing(self) -> None:
        """
        A writable database passes, and the probe's table never exists.
        """
        self.assertIsNone(database_writable(self.database.connection))
        self.assertEqual(self.tables(), ["t"])

    def test_inside_open_turn(self) -> None:
        """
        While a turn's transaction is open the probe runs in a savepoint: the turn's writes stay and are committed.
        """
        self.database.write("INSERT INTO t VALUES (1)")
        self.assertTrue(self.database.connection().in_transaction)
        self.assertIsNone(database_writable(self.database.connection))
        self.assertTrue(self.database.flush())
        other = sqlite3.connect(self.path)
        self.addCleanup(other.close)
        self.assertEqual(other.execute("SELECT x FROM t").fetchall(), [(1,)])
        self.assertEqual(self.tables(), ["t"])

    def test_read_only(self) -> None:
        """
        A database that can only be read fails, saying why.
        """
        read_only = sqlite3.connect("file:%s?mode=ro" % (self.path,), uri=True)
        self.addCleanup(read_only.close)
        problem = database_writable(lambda: read_only)
        self.assertIsNotNone(problem)
        assert problem is not None
        self.assertTrue(problem.startswith("not writable: "), problem)
        self.assertIn("readonly", problem)

    def test_locked_by_another_process(self) -> None:
        """
        A write lock held elsewhere (another process's open transaction) fails the probe.
        """
        holder = sqlite3.connect(self.path, isolation_level=None)
        self.addCleanup(holder.close)
        holder.execute("BEGIN IMMEDIATE")
        probe = sqlite3.connect(self.path, isolation_level=None, timeout=0.05)
        self.addCleanup(probe.close)
        self.assertEqual(database_writable(lambda: probe), "not writable: database is locked")
        holder.execute("ROLLBACK")
        self.assertIsNone(database_writable(lambda: probe))

    def test_closed(self) -> None:
        """
        A closed database is not writable.
        """
        self.database.close()
        self.assertEqual(database_writable(self.database.connection), "not writable: the events database is closed")


class ReadyRouteTests(SynchronousTestCase):
    """
    C{GET /ready} on an L{ApiServer}.
    """

    def test_ready_and_not(self) -> None:
        """
        200 with every check ok; 503 naming the failing checks (a check that raises fails), with no credential.
        """
        server = ApiServer(Config())
        client = ApiClient(self, server)
        response, body = client.request("GET", "/ready")
        self.assertEqual((response.code, json.loads(body)["ready"], json.loads(body)["checks"]), (200, True, {}))
        server.readiness = {"sip": lambda: None, "database": lambda: "not writable: disk I/O error", "calls": lambda: 1 / 0}
        response, body = client.request("GET", "/ready")
        answer = json.loads(body)
        self.assertEqual(response.code, 503)
        self.assertEqual(answer["ready"], False)
        self.assertEqual(answer["notReady"], ["database", "calls"])
        self.assertEqual(
            answer["checks"],
            {"sip": "ok", "database": "not writable: disk I/O error", "calls": "check failed: ZeroDivisionError"},
        )
        self.assertEqual(run_checks({}), {})


class ServiceReadyTests(TestCase):
    """
    The real service's C{/ready}.
    """

    timeout = 20

    async def ready(self, port: int) -> tuple[int, dict[str, object]]:
        resp = await treq.get("http://127.0.0.1:%d/ready" % (port,), persistent=False)
        return resp.code, json.loads(await resp.content())

    async def test_service(self) -> None:
        """
        Ready once started (SIP on UDP, TCP and TLS, the API, a writable database, not draining); 503 naming the database while another connection holds its write lock; 503 naming SIP once its listeners are closed.
        """
        directory = Path(tempfile.mkdtemp(prefix="aiconnect-ready-"))
        sip, tls, api = free_port(), free_port(), free_port()
        path = write_config(directory, Certificates(), sip, sip, tls, api, rtp=(61700, 61799))
        cfg, service = start_service(self, path)
        code, answer = await self.ready(api)
        self.assertEqual((code, answer["ready"]), (200, True), answer)
        self.assertEqual(answer["checks"], {"sip": "ok", "api": "ok", "database": "ok", "calls": "ok"})

        holder = sqlite3.connect(cfg.events.database, isolation_level=None)
        self.addCleanup(holder.close)
        holder.execute("BEGIN IMMEDIATE")
        code, answer = await self.ready(api)
        holder.execute("ROLLBACK")
        self.assertEqual((code, answer["notReady"]), (503, ["database"]), answer)
        self.assertEqual(answer["checks"]["database"], "not writable: database is locked")  # type: ignore[index]

        await service.getServiceNamed("sip").stopService()
        code, answer = await self.ready(api)
        self.assertEqual((code, answer["notReady"]), (503, ["sip"]), answer)
        self.assertEqual(answer["checks"]["sip"], "not listening: udp, tcp, tls")  # type: ignore[index]

