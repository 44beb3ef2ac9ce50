"""
Regression test of L{aiconnect.storage.nodeloss}: a survivor ending a lost
node's session takes that node's undelivered events over first, so that
the session's events reach its deliverer in sequence (SPEC s5: "Order
per session is kept").  Found by L{tests.integration.test_cluster_whole}:
the events ending a lost node's session (emitted by the survivor) were
delivered before the events the lost node still owed for it (taken over
by the survivor's separate takeover round a moment later).

On a real PostgreSQL database (L{tests.storage.pgserver}).
"""

from __future__ import annotations

from twisted.internet import reactor

from aiconnect import events
from aiconnect.recovery import SessionRecovery
from aiconnect.storage.dialogs import PgDialogStore
from aiconnect.storage.nodeloss import NodeLossWatch
from aiconnect.storage.nodes import SqlNodeLeases
from aiconnect.storage.outbox import PostgresOutbox
from tests.storage.pgserver import MigratedTestCase, wait_until

DOMAIN = "customer.example.com"
LEASE = 3.0


class TakenOverFirstTests(MigratedTestCase):
    """
    Node A lost with an undelivered event of a live session; node B's
    L{NodeLossWatch} ends the session.
    """

    timeout = 30

    async def outbox(self, node_id: str, now: float) -> PostgresOutbox:
        pool = self.make_pool(connections=2)
        outbox = PostgresOutbox(node_id, reactor, state_delay=0.05)
        await outbox.load(pool, now=now, api_url=f"http://{node_id}", lease=LEASE)
        outbox.attach(pool)
        self.addCleanup(outbox.drained)
        return outbox

    async def test_owed_events_first(self) -> None:
        """
        The event A owed for its session reaches B's deliverer before the
        SIPRECFORWARDSTOPPED and SESSIONCOMPLETED B emits to end it, numbered
        1, 2, 3.
        """
        # A: its lease taken 10 s ago (expired), one event stored and not
        # delivered, the session's dialogs stored.
        a = await self.outbox("node-a", reactor.seconds() - 10)
        a.emit(DOMAIN, "s1", {"event": "SESSIONPAUSED"})
        await wait_until(lambda: a.stats["emitted"] == 1)
        await a.drained()
        store_a = PgDialogStore("node-a", reactor)
        store_a.open(self.runner, [])
        store_a.put("s1", "", DOMAIN, {"started": reactor.seconds() - 5})
        store_a.put("s1", "fwd1", DOMAIN, {"uri": "sip:srs@example.com", "reference_id": {}})
        await store_a.drained()
        store_a.close()

        b = await self.outbox("node-b", reactor.seconds())
        told: list[tuple[str, int]] = []
        b.add_listener(lambda e: told.append((e.event, e.seq)))
        store_b = PgDialogStore("node-b", reactor)
        store_b.open(self.runner, [])
        self.addCleanup(store_b.close)
        recovery = SessionRecovery(reactor, store_b, None, b, events.COMPLETED_NODE_LOST)
        watch = NodeLossWatch(SqlNodeLeases(self.runner, LEASE), self.runner, "node-b", recovery, reactor, b.take_over)
        await watch.round()
        await wait_until(lambda: len(told) == 3)
        self.assertEqual(told, [("SESSIONPAUSED", 1), ("SIPRECFORWARDSTOPPED", 2), ("SESSIONCOMPLETED", 3)])
        self.assertEqual(watch.stats["sessions"], 1)
        self.assertEqual(self.query("SELECT owner_node, seq FROM events ORDER BY seq"), [("node-b", 1), ("node-b", 2), ("node-b", 3)])
