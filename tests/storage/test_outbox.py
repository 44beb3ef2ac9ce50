"""
Tests of L{aiconnect.storage.outbox.PostgresOutbox} on a real PostgreSQL
server (L{tests.storage.pgserver}): a turn's events are written in one
transaction (one C{executemany}) and the listeners are told only once it
committed (another connection sees the rows then); the delivery states
are written behind, in batches; sequence numbers go on from the
database; an unreachable database (a real TCP proxy cut) buffers the
events, bounded, and they are stored and told once it comes back; the
deliverer works on it unchanged.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from twisted.enterprise.adbapi import ConnectionLost
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher

from aiconnect.storage import outbox as outbox_module
from aiconnect.storage.outbox import PostgresOutbox
from aiconnect.storage.pool import connect_pool
from aiconnect.webhooks.outbox import OutboxEvent
from tests.storage.outbox_support import TENANT, CutProxy, EventsApp, deliverer
from tests.storage.pgserver import MigratedTestCase, wait_until

ME = "node-a"


class CountingRunner:
    """
    The pool, counting its transactions and statements (what reaches the
    database).
    """

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self.transactions = 0
        self.statements: list[str] = []

    def runInteraction(self, interaction: Any, *args: Any, **kw: Any) -> Any:
        self.transactions += 1
        runner = self

        class Counted:
            def __init__(self, cursor: Any) -> None:
                self._cursor = cursor

            def execute(self, sql: str, args: Any = ()) -> Any:
                runner.statements.append(sql.split()[0] + " " + sql.split()[2])
                return self._cursor.execute(sql, args)

            def executemany(self, sql: str, rows: Any, **options: Any) -> Any:
                runner.statements.append("many " + sql.split()[0] + " " + sql.split()[2])
                return self._cursor.executemany(sql, rows, **options)

            def __getattr__(self, name: str) -> Any:
                return getattr(self._cursor, name)

        return self._pool.runInteraction(lambda cursor, *a, **k: interaction(Counted(cursor), *a, **k), *args, **kw)


class SlowRunner:
    """
    The pool, each transaction started C{delay} seconds late (a slow
    database).
    """

    def __init__(self, pool: Any, delay: float) -> None:
        self._pool = pool
        self._delay = delay

    def runInteraction(self, interaction: Any, *args: Any, **kw: Any) -> Any:
        return deferLater(reactor, self._delay, lambda: None).addCallback(
            lambda _: self._pool.runInteraction(interaction, *args, **kw)
        )


def payload(name: str, n: int = 0) -> dict[str, Any]:
    return {"event": name, "n": n, "timestamp": "2026-01-01T00:00:00Z"}


class OutboxTests(MigratedTestCase):
    """
    One node's outbox on its pool.
    """

    timeout = 30

    def outbox(self, runner: Any = None, **options: Any) -> PostgresOutbox:
        outbox = PostgresOutbox(ME, reactor, **options)
        outbox.attach(runner if runner is not None else self.runner)
        self.addCleanup(outbox.drained)
        return outbox

    def rows(self) -> list[tuple[Any, ...]]:
        return self.query(
            "SELECT owner_node, session_id, seq, event, attempts, delivered IS NOT NULL, dead IS NOT NULL, last_error"
            " FROM events ORDER BY id"
        )

    @inlineCallbacks
    def test_durable_before_told(self) -> Any:
        """
        The listeners are told of an event only once its row is committed:
        another connection sees it when the listener runs; the body holds
        the sequence number and the ids; the row is this node's.
        """
        outbox = self.outbox()
        seen: list[tuple[OutboxEvent, list[Any]]] = []
        outbox.add_listener(lambda e: seen.append((e, self.query("SELECT seq FROM events WHERE event_id = %s", (e.event_id,)))))
        ids = [outbox.emit(TENANT, "s1", payload("SESSIONSTARTED", n)) for n in range(3)]
        self.assertEqual(seen, [])
        yield wait_until(lambda: len(seen) == 3)
        self.assertEqual([(e.event_id, e.seq, rows) for e, rows in seen], [(ids[n], n + 1, [(n + 1,)]) for n in range(3)])
        first = seen[0][0]
        self.assertIn(b'"sequence":1', first.body)
        self.assertIn(b'"sessionId":"s1"', first.body)
        self.assertIsNotNone(first.row_id)
        self.assertEqual([r[:3] for r in self.rows()], [(ME, "s1", 1), (ME, "s1", 2), (ME, "s1", 3)])
        self.assertEqual(outbox.stats["emitted"], 3)

    @inlineCallbacks
    def test_one_batch_per_turn(self) -> Any:
        """
        Fifty events of ten sessions emitted in one reactor turn are one
        transaction: one C{executemany} of inserts (and one look-up of the
        sessions first seen); a later turn's events of known sessions are
        one more transaction, with the inserts alone.
        """
        runner = CountingRunner(self.runner)
        outbox = self.outbox(runner)
        told: list[OutboxEvent] = []
        outbox.add_listener(told.append)
        for n in range(50):
            outbox.emit(TENANT, f"s{n % 10}", payload("E", n))
        yield wait_until(lambda: len(told) == 50)
        self.assertEqual((runner.transactions, runner.statements), (1, ["SELECT session_id,", "many INSERT events"]))
        for n in range(20):
            outbox.emit(TENANT, f"s{n % 10}", payload("E", n))
        yield wait_until(lambda: len(told) == 70)
        self.assertEqual(runner.transactions, 2)
        self.assertEqual(runner.statements[2:], ["many INSERT events"])
        self.assertEqual(self.query("SELECT count(*), count(DISTINCT (session_id, seq)), max(seq) FROM events"), [(70, 70, 7)])
        self.assertEqual(outbox.stats["batches"], 2)

    @inlineCallbacks
    def test_marks_written_behind(self) -> Any:
        """
        Delivered, attempt and dead are written within C{state_delay}, all
        in one transaction, the last state of an event winning.
        """
        runner = CountingRunner(self.runner)
        outbox = self.outbox(runner, state_delay=0.1)
        told: list[OutboxEvent] = []
        outbox.add_listener(told.append)
        for n in range(3):
            outbox.emit(TENANT, "s1", payload("E", n))
        yield wait_until(lambda: len(told) == 3)
        one, two, three = (replace(e, attempts=1) for e in told)
        outbox.mark_attempt(replace(two, next_attempt=5.0), "HTTP 503")
        outbox.mark_delivered(one, 100.0)
        outbox.mark_attempt(replace(three, attempts=1, next_attempt=7.0), "HTTP 500")
        outbox.mark_dead(replace(three, attempts=2), 101.0, "gone")
        self.assertEqual(runner.transactions, 1)
        yield wait_until(lambda: runner.transactions == 2)
        yield wait_until(lambda: self.rows()[0][5])
        self.assertEqual(
            [r[3:] for r in self.rows()],
            [("E", 1, True, False, None), ("E", 1, False, False, "HTTP 503"), ("E", 2, False, True, "gone")],
        )
        self.assertEqual(runner.statements[2:], ["many UPDATE SET"] * 3)

    @inlineCallbacks
    def test_sequence_goes_on(self) -> Any:
        """
        A session with stored events (a previous run, another node) goes on
        from its last number, also for events emitted while its first
        batch is being written; the bodies say so.
        """
        with self.server.connect(self.database) as connection:
            for seq in (1, 2, 3):
                connection.execute(
                    "INSERT INTO events (owner_node, tenant, session_id, seq, event_id, event, body, created, next_attempt,"
                    " delivered) VALUES ('node-x', %s, 'old', %s, %s, 'E', '{}', 0, 0, 1)",
                    (TENANT, seq, f"evt_old{seq}"),
                )
        outbox = self.outbox()
        told: list[OutboxEvent] = []
        outbox.add_listener(told.append)
        outbox.emit(TENANT, "old", payload("E"))
        outbox.emit(TENANT, "new", payload("E"))
        reactor.callLater(0, lambda: [outbox.emit(TENANT, s, payload("F")) for s in ("old", "new")])
        yield wait_until(lambda: len(told) == 4)
        self.assertEqual(sorted((e.session_id, e.seq, e.event) for e in told), [("new", 1, "E"), ("new", 2, "F"), ("old", 4, "E"), ("old", 5, "F")])
        self.assertTrue(all(b'"sequence":%d' % e.seq in e.body for e in told))
        self.assertEqual(self.query("SELECT seq FROM events WHERE session_id = 'old' ORDER BY seq"), [(1,), (2,), (3,), (4,), (5,)])

    @inlineCallbacks
    def test_session_forgotten_while_unstored(self) -> Any:
        """
        A session whose last number the cache dropped (more sessions than
        L{SEQ_CACHE}) while one of its events was not stored yet goes on
        after that event, not after the database's last.
        """
        self.patch(outbox_module, "SEQ_CACHE", 2)
        outbox = self.outbox(SlowRunner(self.runner, 0.2))
        told: list[OutboxEvent] = []
        outbox.add_listener(told.append)
        outbox.emit(TENANT, "s1", payload("E", 1))
        yield wait_until(lambda: len(told) == 1)
        # s2 and s3 are numbered in a slow batch; meanwhile s1 emits (seq
        # 2); the batch's end pushes s1 out of the cache, and s3's listener
        # emits for s1 again, in the same batch as its seq 2.
        outbox.emit(TENANT, "s2", payload("E", 1))
        outbox.emit(TENANT, "s3", payload("E", 1))
        reactor.callLater(0.05, outbox.emit, TENANT, "s1", payload("E", 2))
        outbox.add_listener(lambda e: outbox.emit(TENANT, "s1", payload("E", 3)) if e.session_id == "s3" else None)
        yield wait_until(lambda: len(told) == 5)
        self.assertEqual(self.query("SELECT seq FROM events WHERE session_id = 's1' ORDER BY seq"), [(1,), (2,), (3,)])
        self.assertEqual([e.seq for e in told if e.session_id == "s1"], [1, 2, 3])

    @inlineCallbacks
    def test_deliverer_unchanged(self) -> Any:
        """
        L{EventDeliverer} delivers from it to a real HTTP application, in
        order, and the deliveries are recorded.
        """
        app = EventsApp().start(self)
        outbox = self.outbox(state_delay=0.05)
        deliverer(self, outbox, app)
        for n in range(4):
            outbox.emit(TENANT, "s1", payload("E", n))
            outbox.emit(TENANT, "s2", payload("E", n))
        yield wait_until(lambda: len(app.events) == 8)
        self.assertEqual(app.by_session(), {"s1": [1, 2, 3, 4], "s2": [1, 2, 3, 4]})
        yield wait_until(lambda: self.query("SELECT count(*) FROM events WHERE delivered IS NOT NULL") == [(8,)])

    @inlineCallbacks
    def test_unreachable(self) -> Any:
        """
        The database cut off: emit returns at once, the events wait in
        memory (one error line), beyond C{max_buffered} they are dropped
        and counted; once it is reachable again they are stored, then told,
        in order, with one line.
        """
        import psycopg

        # adbapi logs the rollbacks of the connections cut off.
        self.addCleanup(self.flushLoggedErrors, psycopg.OperationalError, ConnectionLost)
        proxy = CutProxy(self, self.server.port)
        url = self.server.url(self.database).replace(f":{self.server.port}/", f":{proxy.port}/")
        pool = connect_pool(url, reactor, connect_timeout=2)
        self.addCleanup(pool.close)
        outbox = self.outbox(pool, max_buffered=6, retry_delay=0.1)
        told: list[OutboxEvent] = []
        outbox.add_listener(told.append)
        logged: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_namespace", "").startswith("aiconnect.storage.outbox"):
                logged.append(event["log_format"].split(";")[0][:40])

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        outbox.emit(TENANT, "s1", payload("E", 0))
        yield wait_until(lambda: len(told) == 1)
        yield proxy.cut()
        for n in range(1, 9):
            self.assertIsNotNone(outbox.emit(TENANT, "s1", payload("E", n)))
        yield wait_until(lambda: outbox.stats["db_errors"] >= 2)
        self.assertEqual((len(told), outbox.stats["buffered"], outbox.stats["dropped"]), (1, 6, 2))
        proxy.restore()
        yield wait_until(lambda: len(told) == 7)
        self.assertEqual([e.seq for e in told], list(range(1, 8)))
        self.assertEqual(self.query("SELECT count(*) FROM events"), [(7,)])
        self.assertEqual(outbox.stats["buffered"], 0)
        self.assertEqual(
            logged,
            ["Event outbox: {count} events wait for th", "Event outbox: writing to the database fa", "Event outbox: the database works again"],
        )

    @inlineCallbacks
    def test_load_pending_and_disabled(self) -> Any:
        """
        At start, this node's undelivered events of a previous run and the
        disabled endpoints are read (L{pending} returns the events once);
        another node's events are not.
        """
        first = self.outbox()
        first.emit(TENANT, "s1", payload("E", 1))
        first.set_disabled("t2.example", "http://t2", 5.0, "digest")
        yield first.drained()
        with self.server.connect(self.database) as connection:
            connection.execute("UPDATE events SET owner_node = 'node-b' WHERE false")
        second = PostgresOutbox(ME, reactor)
        yield second.load(self.runner, now=10.0, api_url="http://a", lease=3.0)
        self.assertEqual([(e.session_id, e.seq) for e in second.pending()], [("s1", 1)])
        self.assertEqual(second.pending(), [])
        self.assertEqual(second.disabled_endpoints(), {"t2.example": ("http://t2", "digest")})
        other = PostgresOutbox("node-b", reactor)
        yield other.load(self.runner, now=10.0, api_url="http://b", lease=3.0)
        self.assertEqual(other.pending(), [])
        self.assertEqual(self.query("SELECT node_id, expires FROM node_leases ORDER BY node_id"), [(ME, 13.0), ("node-b", 13.0)])
