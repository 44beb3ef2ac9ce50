"""
Tests of L{aiconnect.storage.nodeloss} (SPEC s14: "a node that dies (kill
-9) has its sessions closed by a survivor (BYE to SRC and SRSs it can
reach, SESSIONCOMPLETED with reason nodeLost). A node that restarts does
the same for its own sessions (reason restart)").

On a real PostgreSQL database (L{tests.storage.pgserver}; skipped, saying
why, without it).  L{WatchTests}: two survivors' L{NodeLossWatch}es on
one reactor race for a lost node's sessions.  L{KillTests}: node A is a
real C{twistd} process, killed with SIGKILL during a call forwarded to an
SRS; node B runs in this process on the same database and ends the call
(the SRC, the SRS and the application are real peers over UDP and HTTP);
then A killed and started again ends its own call, reason C{restart}.

RTP ports 62800-62899: node A 62800-62849, node B 62850-62899.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.logger import globalLogPublisher

from aiconnect import config as config_mod
from aiconnect import events
from aiconnect.recovery import SessionRecovery
from aiconnect.sip.message import Request, Response, parse
from aiconnect.storage.dialogs import PgDialogStore
from aiconnect.storage.nodeloss import NodeLossWatch
from aiconnect.storage.nodes import SqlNodeLeases
from aiconnect.tap import build_service
from tests.fakes import ListSink, wait_until
from tests.integration.helpers import Certificates, free_port, write_config
from tests.integration.siprec_peer import DATA, AppServer, answered_call
from tests.integration.srs_peer import SrsPeer
from tests.integration.test_restart import ORDER, answer
from tests.integration.twistd import start_twistd, wait_ready
from tests.storage.pgserver import MigratedTestCase, PostgresTestCase

DOMAIN = "customer.example.com"
METADATA = (DATA / "rfc8068-s3.2.1-1-metadata.xml").read_bytes()
RTP = {"node-a": (62800, 62849), "node-b": (62850, 62899)}


class WatchTests(MigratedTestCase):
    """
    L{NodeLossWatch} on a real database, sessions stored by
    L{PgDialogStore}.
    """

    def setUp(self) -> Any:
        started = super().setUp()
        self.leases = SqlNodeLeases(self.runner, 3.0)
        return started

    async def store(self, node_id: str, sessions: int) -> None:
        store = PgDialogStore(node_id, reactor)
        store.open(self.runner, [])
        for n in range(sessions):
            # No "dialog": no BYE can be sent (counted as bad records), the
            # events still are.
            store.put(f"{node_id}-{n}", "", DOMAIN, {"started": reactor.seconds() - 5})
            store.put(f"{node_id}-{n}", "fwd1", DOMAIN, {"uri": "sip:srs@example.com", "reference_id": {"n": n}})
        await store.drained()
        store.close()

    def survivor(self, node_id: str) -> tuple[NodeLossWatch, ListSink, PgDialogStore]:
        store = PgDialogStore(node_id, reactor)
        store.open(self.runner, [])
        self.addCleanup(store.close)
        sink = ListSink()
        recovery = SessionRecovery(reactor, store, None, sink, events.COMPLETED_NODE_LOST)
        return NodeLossWatch(self.leases, self.runner, node_id, recovery, reactor), sink, store

    async def test_two_survivors_end_each_session_once(self) -> None:
        """
        Node A's lease expired: of two survivors' rounds at once, each of
        A's sessions is ended by one of them (SIPRECFORWARDSTOPPED and
        SESSIONCOMPLETED, reason nodeLost), then forgotten.  A live node's
        sessions and the survivors' own are left alone, and so is a node
        whose lease was released with nothing left.
        """
        now = reactor.seconds()
        await self.leases.renew("node-a", "http://a", now - 10)
        await self.leases.renew("node-l", "http://l", now)
        await self.leases.renew("node-r", "http://r", now - 10)
        await self.leases.release("node-r", now - 8)
        await self.leases.renew("node-b", "http://b", now)
        await self.store("node-a", 12)
        await self.store("node-l", 2)
        await self.store("node-b", 1)
        (wb, sb, store_b), (wc, sc, store_c) = self.survivor("node-b"), self.survivor("node-c")
        await gatherResults([wb.round(), wc.round()])
        completed = [e for e in sb.events + sc.events if e["event"] == events.SESSIONCOMPLETED]
        self.assertEqual(sorted(e["sessionId"] for e in completed), sorted(f"node-a-{n}" for n in range(12)))
        self.assertEqual({e["reason"] for e in completed}, {"nodeLost"})
        stopped = [e for e in sb.events + sc.events if e["event"] == events.SIPRECFORWARDSTOPPED]
        self.assertEqual(len(stopped), 12)
        self.assertEqual({(e["stoppedBy"], e["reason"], e["forwardId"]) for e in stopped}, {("nodeLost", "nodeLost", "fwd1")})
        self.assertTrue(all(e["duration"] >= 5 for e in completed), completed)
        self.assertEqual(wb.stats["sessions"] + wc.stats["sessions"], 12)
        self.assertEqual(wb.recovery.stats["bad_records"] + wc.recovery.stats["bad_records"], 24)
        await gatherResults([store_b.drained(), store_c.drained()])
        self.assertEqual(
            self.query("SELECT owner_node, count(*) FROM live_dialogs GROUP BY owner_node ORDER BY owner_node"),
            [("node-b", 2), ("node-l", 4)],
        )
        # Nothing more in a later round.
        await gatherResults([wb.round(), wc.round()])
        self.assertEqual(len(sb.events) + len(sc.events), 24)
        self.assertEqual(wb.stats["errors"] + wc.stats["errors"], 0)

    async def test_never_its_own(self) -> None:
        """
        A node whose own lease expired (a slow renewal) does not end its
        own sessions.
        """
        await self.leases.renew("node-b", "http://b", reactor.seconds() - 10)
        await self.store("node-b", 1)
        watch, sink, _ = self.survivor("node-b")
        await watch.round()
        self.assertEqual((sink.events, watch.stats["sessions"]), ([], 0))
        self.assertEqual(self.query("SELECT owner_node, count(*) FROM live_dialogs GROUP BY owner_node"), [("node-b", 2)])

    async def test_failure_logged_once(self) -> None:
        """
        A round whose database fails is logged once, counted, and never
        raises; the loop goes on.
        """
        from aiconnect.storage.pool import connect_pool

        pool = connect_pool(f"postgresql://nobody:pw@127.0.0.1:{free_port(both=False)}/none", reactor, connect_timeout=2)
        self.addCleanup(pool.close)
        errors: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            if "Node loss" in event.get("log_format", ""):
                errors.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        watch = NodeLossWatch(SqlNodeLeases(pool, 3.0), pool, "node-b", None, reactor)  # type: ignore[arg-type]
        await watch.round()
        await watch.round()
        self.assertEqual((watch.stats["errors"], len(errors)), (2, 1))
        self.assertNotIn("pw@", errors[0]["reason"])


def node_config(url: str, node_id: str, app_port: int, srs_port: int, lease: float) -> tuple[Path, int]:
    """
    A node's loopback configuration (L{write_config}: the tenant
    C{customer.example.com}, its application on C{app_port}, a trunk
    C{aiforward} to the SRS) on the database C{url}.

    @return: The file and its SIP port.
    """
    directory = Path(tempfile.mkdtemp(prefix=f"aiconnect-{node_id}-"))
    trunk = '\n  [[tenant.trunk]]\n  match = "aiforward"\n  target = "127.0.0.1:%d"\n  transport = "udp"\n' % srs_port
    sip = free_port()
    path = write_config(
        directory, Certificates(), sip, sip, 0, free_port(), extra="callback_timeout = 3.0\n" + trunk, app_port=app_port,
        rtp=RTP[node_id],
    )
    with path.open("a") as f:
        f.write(f'\n[database]\nurl = "{url}"\n\n[node]\nid = "{node_id}"\n\n[cluster]\nsecret = "nodeloss-secret-0123456789"\nlease = {lease}\n')
    return path, sip


class KillTests(PostgresTestCase):
    """
    Node A (twistd) killed with SIGKILL during a forwarded call; node B in
    this process.
    """

    timeout = 90
    #: Node A's lease in the survivor test (seconds).
    lease = 1.5

    def setUp(self) -> None:
        super().setUp()
        self.srs = SrsPeer("200")
        self.srs_port = self.srs.listen_udp()
        self.addCleanup(self.srs.stop)
        self.app = AppServer({"startSIPRecForward": ORDER})
        self.app_port = self.app.listen()
        self.addCleanup(self.app.port.stopListening)
        self.url = self.server.url(self.database)

    def start_b(self) -> Any:
        path, self.b_sip = node_config(self.url, "node-b", self.app_port, self.srs_port, self.lease)
        service = build_service(config_mod.load(path), reactor)
        service.startService()

        async def stop() -> None:
            if service.running:
                await service.stopService()

        self.addCleanup(stop)
        return service

    async def call_on_a(self, lease: float) -> tuple[Any, int, Any, bytes, dict[str, str]]:
        """
        Start node A and set up a call through it, forwarded to the SRS;
        wait until its two dialogs are stored.

        @return: A (L{Twistd}), its SIP port, the SRC, A's 200 and the
            INVITE's ids.
        """
        path, sip = node_config(self.url, "node-a", self.app_port, self.srs_port, lease)
        a = start_twistd(self, path)
        await wait_ready(self, a, sip)
        src, local, ok, ids = await answered_call(self, sip, DOMAIN, METADATA)
        await self.app.wait_for("events", 2, timeout=20)
        await self.srs.wait_for("ACK")
        self.assertEqual(self.app.event_names(), ["SESSIONSTARTED", "SIPRECFORWARDSTARTED"], a.output())
        await wait_until(
            lambda: self.query("SELECT owner_node, count(*) FROM live_dialogs GROUP BY owner_node") == [("node-a", 2)], 10,
            what=lambda: f"A's dialogs stored: {self.query('SELECT session_id, leg, owner_node FROM live_dialogs')}",
        )
        return a, sip, src, ok, ids

    async def check_byes(self, src: Any, ok: bytes, ids: dict[str, str], sip: int) -> None:
        """
        The SRC and the SRS each get a BYE in their dialog, from the node
        listening on C{sip}; the SRC answers it.
        """
        bye_raw = await src.take(lambda m: m.startswith(b"BYE "), 15)
        bye, ok_response = parse(bye_raw), parse(ok)
        assert isinstance(bye, Request) and isinstance(ok_response, Response)
        self.assertEqual((bye.call_id, bye.from_tag, bye.to_tag), (ids["call_id"], ok_response.to_tag, ids["from_tag"]))
        self.assertIn(f"127.0.0.1:{sip};", bye.headers.get("Via"))
        src.send(answer(bye_raw), sip)
        srs_invite = self.srs.dialog["invite"]
        await self.srs.wait_for("BYE", timeout=15)
        srs_bye = [r for r in self.srs.requests if r.method == "BYE"][0]
        self.assertEqual((srs_bye.call_id, srs_bye.from_tag, srs_bye.to_tag), (srs_invite.call_id, srs_invite.from_tag, self.srs.to_tag))
        self.assertGreater(srs_bye.cseq.number, srs_invite.cseq.number)
        self.assertEqual(srs_bye.headers.get("X-Correlation-Id"), "a3b47c1e")
        self.assertIn(f"127.0.0.1:{sip};", srs_bye.headers.get("Via"))

    async def check_events(self, reason: str) -> None:
        """
        The application gets SIPRECFORWARDSTOPPED and SESSIONCOMPLETED with
        C{reason}, signed; nothing is left in the database.
        """
        await wait_until(lambda: "SESSIONCOMPLETED" in self.app.event_names(), 20, interval=0.05)
        evs = list({e["eventId"]: e for e in self.app.events}.values())
        self.assertEqual(
            [e["event"] for e in evs], ["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"]
        )
        session_id, forward_id = evs[0]["sessionId"], evs[1]["forwardId"]
        stopped, completed = evs[2], evs[3]
        self.assertEqual({e["sessionId"] for e in evs}, {session_id})
        self.assertEqual(
            (stopped["forwardId"], stopped["stoppedBy"], stopped["reason"], stopped["sipRecForwardReferenceId"], stopped["uri"]),
            (forward_id, reason, reason, {"ticketId": 98765}, ORDER["uri"]),
        )
        self.assertEqual(completed["reason"], reason)
        self.assertEqual(self.app.bad_signatures, 0)
        await wait_until(lambda: self.query("SELECT count(*) FROM live_dialogs") == [(0,)], 10, what="the dialogs forgotten")
        self.assertEqual(self.query("SELECT session_id FROM session_directory WHERE session_id = %s", (session_id,)), [])

    async def test_survivor_ends_the_sessions(self) -> None:
        """
        kill -9 of node A: within its lease (plus one look) node B sends
        BYE to the SRC and the SRS in their dialogs, and the application
        gets SIPRECFORWARDSTOPPED and SESSIONCOMPLETED, reason nodeLost.
        """
        b = self.start_b()
        a, _a_sip, src, ok, ids = await self.call_on_a(self.lease)
        killed = reactor.seconds()
        a.kill()
        self.assertEqual(self.srs.count("BYE"), 0)
        await self.check_byes(src, ok, ids, self.b_sip)
        # The lease expires at most `lease` after the kill; B looks every
        # lease / 3 (slack for a loaded machine).
        self.assertLess(reactor.seconds() - killed, self.lease * 4 / 3 + 1.5)
        await self.check_events("nodeLost")
        cluster = b.namedServices["cluster"]
        self.assertEqual((cluster.node_loss.stats["sessions"], cluster.lost_recovery.stats["byes"]), (1, 2))

    async def test_restart_ends_its_own(self) -> None:
        """
        kill -9 of node A and a start again within its lease: A ends its
        own call (BYEs from A, reason restart); B, looking all along,
        takes nothing.
        """
        b = self.start_b()
        a, a_sip, src, ok, ids = await self.call_on_a(30.0)
        a.kill()
        a.start()
        await self.check_byes(src, ok, ids, a_sip)
        await self.check_events("restart")
        self.assertTrue(await a.wait_for_output("ended 1 session(s) left open by the previous run"), a.output())
        self.assertNotIn("nodeLost", str(self.app.events))
        self.assertEqual(b.namedServices["cluster"].node_loss.stats["sessions"], 0)

    async def test_clean_stop_leaves_nothing(self) -> None:
        """
        SIGTERM on node A: its drain ends the call (reason shutdown), its
        dialogs are forgotten before its lease is released, and node B,
        looking past the lease, ends nothing.
        """
        b = self.start_b()
        a, a_sip, src, _ok, _ids = await self.call_on_a(self.lease)
        a.signal(15)
        bye_raw = await src.take(lambda m: m.startswith(b"BYE "), 15)
        src.send(answer(bye_raw), a_sip)
        self.assertIn(await a.wait_exit(20), (0, -15), a.output())
        self.assertEqual(self.query("SELECT count(*) FROM live_dialogs"), [(0,)])
        self.assertEqual(self.query("SELECT released IS NOT NULL FROM node_leases WHERE node_id = 'node-a'"), [(True,)])
        await wait_until(lambda: "SESSIONCOMPLETED" in self.app.event_names(), 10, interval=0.05)
        watch = b.namedServices["cluster"].node_loss
        rounds = watch.stats["rounds"]
        await wait_until(lambda: watch.stats["rounds"] >= rounds + 2, 5, interval=0.05)
        self.assertEqual(watch.stats["sessions"], 0)
        completed = [e for e in self.app.events if e["event"] == "SESSIONCOMPLETED"]
        self.assertEqual({e["reason"] for e in completed}, {"shutdown"})
