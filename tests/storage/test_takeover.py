"""
Tests of L{aiconnect.storage.takeover} with L{PostgresOutbox} on a real
PostgreSQL server: a node's undelivered events are taken over when its
lease expires (or at once when it was released), by one survivor, and
delivered to a real HTTP application in order per session and exactly
once, also with two survivors racing; a node restarting takes its own
events back and a survivor then takes none.  The rounds run on a
L{Clock}; the database calls and HTTP are real.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.internet.task import Clock

from aiconnect.storage.nodes import SqlNodeLeases
from aiconnect.storage.outbox import PostgresOutbox
from aiconnect.storage.takeover import TakeoverService
from tests.storage.outbox_support import TENANT, EventsApp, deliverer
from tests.storage.pgserver import MigratedTestCase, wait_until

LEASE = 3.0
START = 1000.0


class TakeoverTests(MigratedTestCase):
    """
    Nodes on one database, each with its own pool.
    """

    timeout = 30

    @inlineCallbacks
    def node(self, node_id: str, now: float = START) -> Any:
        """
        @return: A node's outbox on a pool of its own, its lease taken at
            C{now} (as at start).
        """
        pool = self.make_pool(connections=2)
        outbox = PostgresOutbox(node_id, reactor, state_delay=0.05)
        yield outbox.load(pool, now=now, api_url=f"http://{node_id}", lease=LEASE)
        outbox.attach(pool)
        self.addCleanup(outbox.drained)
        return outbox

    def takeover(self, outbox: PostgresOutbox, clock: Clock) -> TakeoverService:
        service = TakeoverService(SqlNodeLeases(self.runner, LEASE), outbox, clock)
        self.addCleanup(service.stopService)
        return service

    @inlineCallbacks
    def emitted_by_a(self, sessions: int = 4, per_session: int = 5) -> Any:
        """
        Node A emits events (stored, never delivered: no deliverer) and is
        lost: nothing more from it, its lease left to expire.
        """
        a = yield self.node("node-a")
        for n in range(per_session):
            for s in range(sessions):
                a.emit(TENANT, f"a{s}", {"event": "E", "n": n})
        yield wait_until(lambda: a.stats["emitted"] == sessions * per_session)
        yield a.drained()
        return a

    def owners(self) -> list[tuple[Any, ...]]:
        return self.query("SELECT owner_node, count(*) FROM events GROUP BY owner_node ORDER BY owner_node")

    @inlineCallbacks
    def test_lost_node_taken_over(self) -> Any:
        """
        While A's lease holds, B takes nothing; once expired, B's next
        round takes every undelivered event of A and its deliverer sends
        them to the application in order per session, each once; the rows
        are B's and marked delivered.
        """
        yield self.emitted_by_a()
        b = yield self.node("node-b")
        app = EventsApp().start(self)
        deliverer(self, b, app)
        clock = Clock()
        clock.advance(START + 1)
        service = self.takeover(b, clock)
        service.startService()
        yield wait_until(lambda: service.stats["rounds"] == 1)
        self.assertEqual(self.owners(), [("node-a", 20)])
        clock.advance(LEASE)
        yield wait_until(lambda: service.stats["rounds"] == 2)
        self.assertEqual((service.stats["taken"], service.stats["nodes"]), (20, 1))
        self.assertEqual(self.owners(), [("node-b", 20)])
        yield wait_until(lambda: len(app.events) == 20)
        self.assertEqual(app.by_session(), {f"a{s}": [1, 2, 3, 4, 5] for s in range(4)})
        yield wait_until(lambda: self.query("SELECT count(*) FROM events WHERE delivered IS NOT NULL") == [(20,)])
        clock.advance(LEASE / 3)
        yield wait_until(lambda: service.stats["rounds"] == 3)
        self.assertEqual(service.stats["taken"], 20)
        self.assertEqual(len(app.events), 20)

    @inlineCallbacks
    def test_two_survivors_race(self) -> Any:
        """
        Two survivors taking over at the same moment: every event of the
        lost nodes is taken by exactly one of them, all of a node's by the
        same one, and the application gets each event once, in order per
        session.
        """
        yield self.emitted_by_a()
        lost2 = yield self.node("node-c")
        for n in range(5):
            lost2.emit(TENANT, "c0", {"event": "E", "n": n})
        yield wait_until(lambda: lost2.stats["emitted"] == 5)
        yield lost2.drained()
        app = EventsApp().start(self)
        survivors = []
        for name in ("node-x", "node-y"):
            outbox = yield self.node(name, START + LEASE)
            deliverer(self, outbox, app)
            survivors.append(outbox)
        now = START + LEASE + 0.5
        results = yield DeferredList([s.take_over(["node-a", "node-c"], now) for s in survivors], fireOnOneErrback=True)
        taken = [r[1] for r in results]
        self.assertEqual(sorted(n for nodes, _ in taken for n in nodes), ["node-a", "node-c"])
        self.assertEqual(sum(count for _, count in taken), 25)
        yield wait_until(lambda: len(app.events) == 25)
        self.assertEqual(app.by_session(), {**{f"a{s}": [1, 2, 3, 4, 5] for s in range(4)}, "c0": [1, 2, 3, 4, 5]})
        self.assertEqual(len({e["eventId"] for e in app.events}), 25)
        owners = dict(self.owners())
        self.assertEqual(sum(owners.values()), 25)
        self.assertEqual(set(owners) <= {"node-x", "node-y"}, True)
        again = yield DeferredList([s.take_over(["node-a", "node-c"], now) for s in survivors])
        self.assertEqual([r[1][1] for r in again], [0, 0])

    @inlineCallbacks
    def test_node_being_taken_skipped(self) -> Any:
        """
        A lost node another survivor is taking over (its lease row locked
        in that survivor's transaction) is skipped, not waited for: none
        of its events are taken twice; once that transaction ended, its
        events (still there) are taken.
        """
        yield self.emitted_by_a(sessions=2, per_session=2)
        x = yield self.node("node-x", START + LEASE)
        other = self.server.connect(self.database, autocommit=False)
        self.addCleanup(other.close)
        other.execute("SELECT node_id FROM node_leases WHERE node_id = 'node-a' FOR UPDATE")
        self.assertEqual((yield x.take_over(["node-a"], START + LEASE)), ([], 0))
        other.rollback()
        self.assertEqual((yield x.take_over(["node-a"], START + LEASE)), (["node-a"], 4))

    @inlineCallbacks
    def test_released_taken_at_once(self) -> Any:
        """
        A node that stopped cleanly (lease released) with events left is
        taken over at the next round, without waiting for the lease time.
        """
        a = yield self.emitted_by_a(sessions=1, per_session=2)
        yield SqlNodeLeases(self.runner, LEASE).release(a.node_id, START + 0.5)
        b = yield self.node("node-b")
        app = EventsApp().start(self)
        deliverer(self, b, app)
        clock = Clock()
        clock.advance(START + 0.5)
        self.takeover(b, clock).startService()
        yield wait_until(lambda: len(app.events) == 2)
        self.assertEqual(app.by_session(), {"a0": [1, 2]})

    @inlineCallbacks
    def test_restarted_node_keeps_its_events(self) -> Any:
        """
        A node restarting after its lease expired takes its lease again and
        its own events in one transaction: a survivor's later round takes
        none.  Had the survivor come first, the restarted node finds none
        of them left.
        """
        yield self.emitted_by_a(sessions=1, per_session=3)
        back = PostgresOutbox("node-a", reactor)
        yield back.load(self.runner, now=START + 10, api_url="http://node-a", lease=LEASE)
        self.assertEqual([e.seq for e in back.pending()], [1, 2, 3])
        b = yield self.node("node-b", START + 10)
        self.assertEqual((yield b.take_over(["node-a"], START + 11)), ([], 0))
        self.assertEqual(self.owners(), [("node-a", 3)])
        self.assertEqual((yield b.take_over(["node-a"], START + 10 + LEASE)), (["node-a"], 3))
        late = PostgresOutbox("node-a", reactor)
        yield late.load(self.runner, now=START + 20, api_url="http://node-a", lease=LEASE)
        self.assertEqual(late.pending(), [])

    @inlineCallbacks
    def test_session_goes_on_after_takeover(self) -> Any:
        """
        An event the survivor emits for a session taken over (the end of a
        lost node's session) is numbered after the taken ones and delivered
        after them.
        """
        yield self.emitted_by_a(sessions=1, per_session=3)
        b = yield self.node("node-b", START + LEASE)
        app = EventsApp().start(self)
        deliverer(self, b, app)
        taken = b.take_over(["node-a"], START + LEASE)
        b.emit(TENANT, "a0", {"event": "SESSIONCOMPLETED", "reason": "nodeLost"})
        yield taken
        yield wait_until(lambda: len(app.events) == 4)
        self.assertEqual([(e["sequence"], e["event"]) for e in app.events], [(1, "E"), (2, "E"), (3, "E"), (4, "SESSIONCOMPLETED")])
