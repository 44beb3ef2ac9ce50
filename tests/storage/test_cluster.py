"""
Tests of L{aiconnect.storage.cluster}: the running server with
C{[database] url = "postgresql://..."} (SPEC s14, issue 15).

Two nodes (two L{build_service} trees on this reactor, their own SIP and
API ports on 127.0.0.1, one PostgreSQL database of the L{pgserver}
fixture): a tenant provisioned through one node's REST API (real HTTP)
is in force on the other and admits a real SIPRec INVITE there; both
leases are live and a stopped node's is released; the session directory
names a session's owner during the call and not after.  A database that
cannot be reached stops start-up with one line.

RTP ports 61900-61999: node A 61900-61949, node B 61950-61999.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from aiconnect import config as config_mod
from aiconnect.provisioning import LiveConfig
from aiconnect.storage.cluster import DatabaseUnavailable, SessionClaims, SharedTenantStore, TenantWatch
from aiconnect.storage.directory import SqlSessionDirectory
from aiconnect.storage.pool import connect_pool
from aiconnect.storage.tenants import PostgresTenantStore
from aiconnect.tap import build_service
from tests.fakes import pause, wait_until
from tests.integration.helpers import free_port
from tests.provisioning.support import file_config
from tests.provisioning.support import tenant_object as stored_tenant
from tests.integration.provisioning_support import ADMIN, Caller, TenantApp, api, provisioning_config, tenant_object
from tests.integration.siprec_peer import AppServer
from tests.integration.test_startup import run_twistd
from tests.storage.pgserver import MigratedTestCase, PostgresTestCase

DOMAIN = "tenant-b.example.net"
TOKEN = "b-t0ken"
SECRET = "cluster-secret-0123456789"
#: Each node's RTP ports.
RTP = {"node-a": (61900, 61949), "node-b": (61950, 61999)}


def cluster_config(url: str, node_id: str, rtp: tuple[int, int], app_port: int, lease: float = 3.0) -> tuple[Path, int, int]:
    """
    A node's configuration (L{provisioning_config}, in a new directory) on
    the database C{url}.

    @return: The file, its SIP port and its API port.
    """
    sip, api_port = free_port(), free_port()
    directory = Path(tempfile.mkdtemp(prefix=f"aiconnect-{node_id}-"))
    path = provisioning_config(directory, sip, api_port, app_port, rtp)
    with path.open("a") as f:
        f.write(
            f'\n[database]\nurl = "{url}"\n\n[node]\nid = "{node_id}"\n\n[cluster]\nsecret = "{SECRET}"\nlease = {lease}\n'
        )
    return path, sip, api_port


class Node:
    """
    One node: its service tree and ports.
    """

    def __init__(self, node_id: str, path: Path, sip_port: int, api_port: int) -> None:
        self.id = node_id
        self.sip_port = sip_port
        self.api_port = api_port
        self.service = build_service(config_mod.load(path), reactor)

    def api(self, method: str, path: str, body: Any = None) -> Any:
        return api(self.api_port, method, path, ADMIN, body)


class TwoNodesTests(PostgresTestCase):
    """
    Two nodes on one PostgreSQL database.
    """

    timeout = 60

    def setUp(self) -> None:
        super().setUp()
        self.file_app = AppServer({})
        self.app_port = self.file_app.listen()
        self.addCleanup(self.file_app.port.stopListening)
        self.nodes = {name: self.start_node(name) for name in ("node-a", "node-b")}

    def start_node(self, node_id: str) -> Node:
        path, sip, api_port = cluster_config(self.server.url(self.database), node_id, RTP[node_id], self.app_port)
        node = Node(node_id, path, sip, api_port)
        node.service.startService()
        self.addCleanup(self._stop, node.service)
        return node

    async def _stop(self, service: Any) -> None:
        if service.running:
            await service.stopService()

    def leases(self) -> dict[str, tuple[bool, bool]]:
        """
        @return: Node id -> (live now, released), as another client reads
            C{node_leases}.
        """
        now = reactor.seconds()
        rows = self.query("SELECT node_id, expires, released FROM node_leases")
        return {node: (expires > now, released is not None) for node, expires, released in rows}

    def directory(self) -> list[tuple[str, str, str]]:
        return self.query("SELECT session_id, node_id, tenant FROM session_directory ORDER BY session_id")

    async def shown_on(self, node: Node, domain: str) -> int:
        code, _ = await node.api("GET", "/admin/tenants/" + domain)
        return int(code)

    async def test_provisioned_on_a_admits_on_b(self) -> None:
        """
        A tenant PUT through node A's API is listed by node B (source
        C{api}) within seconds, without restart, and B admits an INVITE for
        it (200, newCall to the tenant's application); B owns the session
        in the directory during the call and nobody after it.  A DELETE
        through B reaches A.
        """
        a, b = self.nodes["node-a"], self.nodes["node-b"]
        applied: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            if "changed on another node" in event.get("log_format", ""):
                applied.append(event["what"])

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        app = TenantApp({}).start(self)
        self.assertEqual(await self.shown_on(b, DOMAIN), 404)
        code, body = await a.api("PUT", "/admin/tenants/" + DOMAIN, tenant_object(DOMAIN, app, TOKEN))
        self.assertEqual(code, 201, body)

        async def listed() -> bool:
            code, body = await b.api("GET", "/admin/tenants")
            return code == 200 and [(t["domain"], t["source"]) for t in body["tenants"] if t["domain"] == DOMAIN] == [(DOMAIN, "api")]

        await wait_until(listed, 5, interval=0.1, what="the tenant listed by node B")

        self.sip_port = b.sip_port
        caller = Caller(self)
        self.assertEqual(await caller.start(DOMAIN), 200)
        await app.wait_for("newCall", 1)
        session_id = app.new_calls[0]["sessionId"]
        self.assertEqual(app.new_calls[0]["tenant"], DOMAIN)
        await wait_until(lambda: self.directory() == [(session_id, "node-b", DOMAIN)], 5, what=lambda: f"directory {self.directory()}")
        await caller.bye()
        await wait_until(lambda: self.directory() == [], 5, what=lambda: f"directory {self.directory()}")
        self.assertEqual(app.bad_signatures, 0)

        code, _ = await b.api("DELETE", "/admin/tenants/" + DOMAIN)
        self.assertEqual(code, 200)

        async def gone_on_a() -> bool:
            return await self.shown_on(a, DOMAIN) == 404

        await wait_until(gone_on_a, 5, interval=0.1, what="the tenant gone from node A")
        # Once per change, by the node that did not make it (polls of
        # the node that made it find the tenants it already applied).
        await pause(1.5)
        self.assertEqual(applied, [f"added: {DOMAIN}", f"removed: {DOMAIN}"])

    async def test_leases(self) -> None:
        """
        Both nodes hold a live lease; a node stopped cleanly releases its
        own, the other keeps its.
        """
        await wait_until(lambda: self.leases() == {"node-a": (True, False), "node-b": (True, False)}, 5,
                         what=lambda: f"leases {self.leases()}")
        await self.nodes["node-a"].service.stopService()
        self.assertEqual(self.leases(), {"node-a": (False, True), "node-b": (True, False)})

    async def test_restart(self) -> None:
        """
        A node started again takes its lease anew and forgets the sessions
        its previous run left in the directory (killed: no release); the
        other node's stay.
        """
        await self.nodes["node-a"].service.stopService()
        with self.server.connect(self.database) as connection:
            for session, node in (("left-a", "node-a"), ("live-b", "node-b")):
                connection.execute(
                    "INSERT INTO session_directory (session_id, node_id, tenant, started) VALUES (%s, %s, 'x', 0)", (session, node)
                )
        self.start_node("node-a")
        self.assertEqual(self.directory(), [("live-b", "node-b", "x")])
        await wait_until(lambda: self.leases()["node-a"] == (True, False), 5, what=lambda: f"leases {self.leases()}")


class SessionClaimsTests(MigratedTestCase):
    """
    L{SessionClaims} on a real database.
    """

    async def test_release_after_claim(self) -> None:
        """
        A session that ends at once is released after its claim: nothing
        stays; a live one is recorded with its tenant.
        """
        claims = SessionClaims(SqlSessionDirectory(self.runner), "node-a", reactor)
        for n in range(5):
            claims.session_started(f"short{n}", "a.example.com")
            claims.session_ended(f"short{n}")
        claims.session_started("long", "a.example.com")
        await claims.drained()
        self.assertEqual(self.query("SELECT session_id, node_id, tenant FROM session_directory"), [("long", "node-a", "a.example.com")])
        self.assertEqual(claims.failures, 0)

    async def test_failure_logged_once(self) -> None:
        """
        With the database unreachable, claims and releases fail without
        raising; the first failure is logged (once), each is counted.
        """
        pool = connect_pool(f"postgresql://nobody:pw@127.0.0.1:{free_port(both=False)}/none", reactor, connect_timeout=2)
        self.addCleanup(pool.close)
        errors: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_level") == LogLevel.error and "Session directory" in event.get("log_format", ""):
                errors.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        claims = SessionClaims(SqlSessionDirectory(pool), "node-a", reactor)
        claims.session_started("s1", "a.example.com")
        claims.session_ended("s1")
        claims.session_started("s2", "a.example.com")
        await claims.drained()
        self.assertEqual((claims.failures, len(errors)), (3, 1))
        self.assertNotIn("pw", errors[0]["reason"])


class TenantWatchTests(MigratedTestCase):
    """
    L{TenantWatch}: what another node stored is put in force; a read that
    may predate a change of this node's is not.
    """

    def setUp(self) -> Any:
        started = super().setUp()
        self.live = LiveConfig(file_config())
        self.other = PostgresTenantStore(self.runner, clock=reactor.seconds)
        self.ours = SharedTenantStore()
        self.ours.store = PostgresTenantStore(self.runner, clock=reactor.seconds)
        self.watch = TenantWatch(self.runner, self.ours, self.live, reactor)
        return started

    async def test_other_node_changes(self) -> None:
        """
        A put and a delete of another node's are in force after the next
        poll; a poll without change changes nothing.
        """
        await self.other.put("a.example.com", stored_tenant("a.example.com"))
        await self.watch.poll()
        self.assertEqual(list(self.live.provisioned), ["a.example.com"])
        self.assertEqual(self.live.source("a.example.com"), "api")
        before = self.live.current
        await self.watch.poll()
        self.assertIs(self.live.current, before)
        await self.other.put("a.example.com", stored_tenant("a.example.com", callback_url="http://127.0.0.1:9200"))
        await self.watch.poll()
        self.assertEqual(self.live.provisioned["a.example.com"].callback_url, "http://127.0.0.1:9200")
        await self.other.delete("a.example.com")
        await self.watch.poll()
        self.assertEqual(self.live.provisioned, {})

    async def test_read_during_own_write_dropped(self) -> None:
        """
        A poll that starts while a change of this node's is being stored
        is dropped (it may be older than that change, which the
        provisioning service applies itself); the next one applies.
        """
        await self.other.put("b.example.com", stored_tenant("b.example.com"))
        writing = self.ours.put("a.example.com", stored_tenant("a.example.com"))
        await self.watch.poll()
        await writing
        self.assertEqual(self.live.provisioned, {})
        await self.watch.poll()
        self.assertEqual(sorted(self.live.provisioned), ["a.example.com", "b.example.com"])

    def test_not_open(self) -> None:
        """
        Before the pool is open a change is refused (the provisioning API
        answers 503, nothing changed).
        """
        self.failureResultOf(SharedTenantStore().put("a.example.com", stored_tenant("a.example.com")))
        self.failureResultOf(SharedTenantStore().delete("a.example.com"))


class StartupTests(PostgresTestCase):
    """
    A shared database that cannot be used stops start-up with one line.
    """

    def start(self, url: str) -> str:
        path, _, _ = cluster_config(url, "node-a", RTP["node-a"], free_port())
        service = build_service(config_mod.load(path), reactor)
        with self.assertRaises(DatabaseUnavailable) as raised:
            service.startService()
        self.assertNotIn("cluster", [s.name for s in service if s.running])
        return str(raised.exception)

    def test_unreachable(self) -> None:
        """
        Nothing listens there: the key, the URL without its password, the
        driver's first line.
        """
        port = free_port(both=False)
        message = self.start(f"postgresql://aiconnect:pa55word@127.0.0.1:{port}/aiconnect")
        self.assertEqual(message.splitlines(), [message])
        self.assertTrue(message.startswith(f"database.url postgresql://aiconnect:***@127.0.0.1:{port}/aiconnect: "), message)
        self.assertNotIn("pa55word", message)

    def test_wrong_password(self) -> None:
        """
        The real server refuses the password: one line, no password.
        """
        url = self.server.url(self.database).replace("@127.0.0.1", "x@127.0.0.1")
        message = self.start(url)
        self.assertEqual(message.splitlines(), [message])
        self.assertIn("password authentication failed", message)
        self.assertNotIn(self.server.password, message)


class TwistdStartupTests(SynchronousTestCase):
    """
    Under twistd: one line on standard error, status 1, no traceback.
    """

    def test_unreachable(self) -> None:
        port = free_port(both=False)
        path, _, _ = cluster_config(f"postgresql://aiconnect:pa55word@127.0.0.1:{port}/aiconnect", "node-a", RTP["node-a"], free_port())
        result = run_twistd(["--config", str(path)], path.parent)
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertTrue(lines[0].startswith(f"database.url postgresql://aiconnect:***@127.0.0.1:{port}/aiconnect: "), lines[0])
        for noise in ("Traceback", "pa55word"):
            self.assertNotIn(noise, result.stdout + result.stderr)


class SingleNodeTests(SynchronousTestCase):
    """
    Without C{[database] url}: no cluster service, no directory writes.
    """

    def test_sqlite(self) -> None:
        directory = Path(tempfile.mkdtemp(prefix="aiconnect-single-"))
        service = build_service(config_mod.load(provisioning_config(directory, free_port(), free_port(), free_port(), RTP["node-a"])), reactor)
        self.assertNotIn("cluster", service.namedServices)
        self.assertIsNone(service.registry.directory)
