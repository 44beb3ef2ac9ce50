"""
Tests of L{aiconnect.storage.dialogs} on a real PostgreSQL database (the
L{tests.storage.pgserver} fixture; skipped, saying why, without it): the
write-behind dialog store and the claims that decide which node ends a
session (SPEC s14 node loss and restart).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.recovery import DialogJournal
from aiconnect.storage import dialogs
from aiconnect.storage.dialogs import PgDialogStore, claim_lost, take_left
from aiconnect.storage.nodes import SqlNodeLeases
from tests.fakes import pause
from tests.storage.pgserver import MigratedTestCase


def record(n: int) -> dict[str, Any]:
    return {"dialog": {"call_id": f"c{n}"}, "started": 1000.0 + n}


class StoreTests(MigratedTestCase):
    """
    L{PgDialogStore}: the rows other nodes see.
    """

    def setUp(self) -> Any:
        started = super().setUp()
        self.store = PgDialogStore("node-a", reactor)
        self.store.open(self.runner, [])
        self.addCleanup(self.store.close)
        return started

    def rows(self) -> list[tuple[Any, ...]]:
        return self.query("SELECT session_id, leg, owner_node, tenant, data FROM live_dialogs ORDER BY session_id, leg")

    async def test_one_batch_per_turn(self) -> None:
        """
        The changes of one turn are one transaction, the last per dialog;
        rows carry this node as owner; a leg and a whole session are
        forgotten.
        """
        for n in range(3):
            self.store.put(f"s{n}", "", "a.example.com", record(n))
        self.store.put("s0", "f1", "a.example.com", record(9))
        self.store.put("s1", "", "a.example.com", dict(record(1), started=5.0))
        await self.store.drained()
        self.assertEqual(self.store.stats, {"batches": 1, "failures": 0})
        rows = self.rows()
        self.assertEqual([r[:4] for r in rows], [
            ("s0", "", "node-a", "a.example.com"), ("s0", "f1", "node-a", "a.example.com"),
            ("s1", "", "node-a", "a.example.com"), ("s2", "", "node-a", "a.example.com"),
        ])
        self.assertEqual(json.loads(rows[2][4])["started"], 5.0)
        self.store.delete("s0", "f1")
        self.store.delete("s1")
        self.store.put("s3", "", "a.example.com", record(3))
        self.store.delete("s3")
        await self.store.drained()
        self.assertEqual([r[:2] for r in self.rows()], [("s0", ""), ("s2", "")])
        self.assertEqual(self.store.stats["batches"], 2)

    async def test_failed_batch_written_again(self) -> None:
        """
        A batch the database refuses is noted again, told to
        C{on_failure} (the journal counts it) and written after
        L{dialogs.RETRY_DELAY}; a change made meanwhile wins.
        """
        self.patch(dialogs, "RETRY_DELAY", 0.2)
        journal = DialogJournal(self.store)
        with self.server.connect(self.database) as connection:
            connection.execute("ALTER TABLE live_dialogs RENAME TO hidden")
        self.store.put("s1", "", "a.example.com", record(1))
        self.store.put("s2", "", "a.example.com", record(2))
        await self.store.drained()
        self.assertEqual(self.store.stats["failures"], 1)
        self.assertEqual(journal.stats["errors"], 1)
        with self.server.connect(self.database) as connection:
            connection.execute("ALTER TABLE hidden RENAME TO live_dialogs")
        self.store.delete("s2")
        await pause(0.4)
        await self.store.drained()
        self.assertEqual([r[:2] for r in self.rows()], [("s1", "")])
        self.assertEqual(self.store.stats["failures"], 1)


class ClaimTests(MigratedTestCase):
    """
    Who ends a session: exactly one node.
    """

    def setUp(self) -> Any:
        started = super().setUp()
        self.leases = SqlNodeLeases(self.runner, 10.0)
        return started

    async def store_sessions(self, node_id: str, count: int, forwards: int = 1) -> None:
        store = PgDialogStore(node_id, reactor)
        store.open(self.runner, [])
        for n in range(count):
            store.put(f"{node_id}-s{n}", "", "a.example.com", record(n))
            for f in range(forwards):
                store.put(f"{node_id}-s{n}", f"fwd{f}", "a.example.com", dict(record(n), uri="sip:x@y"))
            with self.server.connect(self.database) as connection:
                connection.execute(
                    "INSERT INTO session_directory (session_id, node_id, tenant, started) VALUES (%s, %s, 'a.example.com', 0)",
                    (f"{node_id}-s{n}", node_id),
                )
        await store.drained()
        store.close()

    async def test_racing_survivors(self) -> None:
        """
        Two survivors claiming the same lost node at once (two
        connections): every session goes whole to one of them; the lost
        node's directory rows are released; a live node is not touched.
        """
        await self.leases.renew("node-a", "http://a", 0.0)
        await self.leases.renew("node-d", "http://d", 100.0)
        await self.store_sessions("node-a", 30, forwards=2)
        await self.store_sessions("node-d", 2)
        other = self.make_pool()
        results = await gatherResults([
            self.runner.runInteraction(claim_lost, ["node-a", "node-d"], "node-b", 50.0),
            other.runInteraction(claim_lost, ["node-a", "node-d"], "node-c", 50.0),
        ])
        sessions = [s for result in results for lost in result.values() for s in lost]
        self.assertEqual(sorted(s.session_id for s in sessions), sorted(f"node-a-s{n}" for n in range(30)))
        for s in sessions:
            self.assertEqual((s.inbound is not None, [f.leg for f in s.forwards]), (True, ["fwd0", "fwd1"]))
        owners = dict(self.query("SELECT owner_node, count(*) FROM live_dialogs GROUP BY owner_node"))
        self.assertEqual(owners.get("node-d"), 4)
        self.assertEqual(sum(owners.values()), 94)
        self.assertEqual(self.query("SELECT DISTINCT node_id FROM session_directory"), [("node-d",)])
        # Claimed: nothing left for a second round.
        again = await self.runner.runInteraction(claim_lost, ["node-a"], "node-c", 60.0)
        self.assertEqual(again, {})

    async def test_many_rounds_race(self) -> None:
        """
        Many claimers at once, several lost nodes: each session is
        claimed once.
        """
        for node in ("node-a", "node-e"):
            await self.leases.renew(node, "http://x", 0.0)
            await self.store_sessions(node, 10)
        pools = [self.runner, self.make_pool(), self.make_pool()]
        results = await DeferredList([
            pools[i % 3].runInteraction(claim_lost, ["node-a", "node-e"], f"survivor-{i}", 50.0) for i in range(6)
        ], fireOnOneErrback=True)
        claimed = [s.session_id for _, result in results for lost in result.values() for s in lost]
        self.assertEqual(sorted(claimed), sorted(f"{n}-s{i}" for n in ("node-a", "node-e") for i in range(10)))

    async def test_restart_before_survivor(self) -> None:
        """
        A node starting again renews its lease and reads what its previous
        run left (L{take_left}); a survivor claiming after that finds the
        node live and takes nothing.
        """
        await self.leases.renew("node-a", "http://a", 0.0)
        await self.store_sessions("node-a", 2)
        await self.store_sessions("node-b", 1)
        left = await self.runner.runInteraction(take_left, "node-a", "http://a2", 50.0, 10.0)
        self.assertEqual([s.session_id for s in left], ["node-a-s0", "node-a-s1"])
        self.assertEqual([f.leg for f in left[0].forwards], ["fwd0"])
        self.assertEqual(await self.runner.runInteraction(claim_lost, ["node-a"], "node-b", 50.0), {})
        self.assertEqual(self.query("SELECT api_url, expires FROM node_leases WHERE node_id = 'node-a'"), [("http://a2", 60.0)])

    async def test_survivor_before_restart(self) -> None:
        """
        A survivor that claimed first leaves nothing for the restarting
        node to end.
        """
        await self.leases.renew("node-a", "http://a", 0.0)
        await self.store_sessions("node-a", 2)
        claimed = await self.runner.runInteraction(claim_lost, ["node-a"], "node-b", 50.0)
        self.assertEqual(sorted(s.session_id for s in claimed["node-a"]), ["node-a-s0", "node-a-s1"])
        left = await self.runner.runInteraction(take_left, "node-a", "http://a", 51.0, 10.0)
        self.assertEqual(left, [])


class _RecordingRunner:
    """
    A runner that records the interactions it is asked to run (not run).
    """

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def runInteraction(self, interaction: Any, *args: Any, **kw: Any) -> Deferred[Any]:
        self.calls.append(interaction)
        return Deferred()


class OrderTests(SynchronousTestCase):
    """
    The dialogs of a turn are written only after its events (the PostgreSQL
    outbox's flush is asynchronous).
    """

    def test_waits_for_the_events(self) -> None:
        """
        A batch of dialog changes starts once C{before_write}'s Deferred
        fired, not before.
        """
        from twisted.internet.task import Clock

        from aiconnect.storage.dialogs import PgDialogStore

        events_written: Deferred[None] = Deferred()
        clock = Clock()
        store = PgDialogStore("node-a", clock, before_write=lambda: events_written)
        runner = _RecordingRunner()
        store.open(runner, [])  # type: ignore[arg-type]
        store.delete("ses_1")
        clock.advance(1)
        self.assertEqual(runner.calls, [])
        events_written.callback(None)
        self.assertEqual(len(runner.calls), 1)
