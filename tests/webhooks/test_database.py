# -*- test-case-name: tests.webhooks.test_database -*-
"""
Tests for L{aiconnect.webhooks.database}: group commit (one transaction
per reactor turn), what another connection sees meanwhile, and failures.
"""

from __future__ import annotations

import sqlite3

from twisted.logger import capturedLogs

from aiconnect.webhooks.database import EventDatabase
from tests.webhooks.dbhelpers import DatabaseTestCase, Participant, commits


class GroupCommitTests(DatabaseTestCase):
    """
    L{EventDatabase} with a reactor.
    """

    def setUp(self) -> None:
        super().setUp()
        self.database = self.grouped()
        with self.database.transaction() as db:
            db.execute("CREATE TABLE t (v INTEGER)")

    def test_one_transaction_per_turn(self) -> None:
        """
        The writes of one turn are one transaction, committed by the call
        the first of them armed; another connection sees none of them
        before and all of them after.
        """
        statements = self.trace(self.database)
        for v in (1, 2, 3):
            self.database.write("INSERT INTO t (v) VALUES (?)", (v,))
        self.database.write_many("INSERT INTO t (v) VALUES (?)", [(4,), (5,)])
        self.assertEqual([s for s in statements if s.startswith("BEGIN")], ["BEGIN IMMEDIATE"])
        self.assertEqual(commits(statements), 0)
        self.assertEqual(self.seen("SELECT v FROM t"), [])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0)
        self.assertEqual(commits(statements), 1)
        self.assertEqual(self.seen("SELECT v FROM t ORDER BY v"), [(1,), (2,), (3,), (4,), (5,)])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.database.stats, {"statements": 4, "commits": 1, "failed_commits": 0, "lost_writes": 0})

    def test_next_turn_next_transaction(self) -> None:
        """
        A write after the commit opens the next turn's transaction.
        """
        statements = self.trace(self.database)
        self.database.write("INSERT INTO t (v) VALUES (1)")
        self.clock.advance(0)
        self.database.write("INSERT INTO t (v) VALUES (2)")
        self.assertEqual(self.seen("SELECT v FROM t"), [(1,)])
        self.clock.advance(0)
        self.assertEqual(commits(statements), 2)
        self.assertEqual(self.seen("SELECT v FROM t ORDER BY v"), [(1,), (2,)])

    def test_delayed_flush_joins_a_turn(self) -> None:
        """
        A flush asked for within some seconds comes then, or at the end of
        an earlier turn that writes.
        """
        participant = Participant(self.database)
        self.database.attach(participant)
        participant.rows = [(1,)]
        self.database.schedule(5.0)
        self.clock.advance(4.9)
        self.assertEqual(self.seen("SELECT v FROM t"), [])
        self.clock.advance(0.1)
        self.assertEqual(self.seen("SELECT v FROM t"), [(1,)])
        participant.rows = [(2,)]
        self.database.schedule(5.0)
        self.database.write("INSERT INTO t (v) VALUES (3)")
        self.clock.advance(0)
        self.assertEqual(self.seen("SELECT v FROM t ORDER BY v"), [(1,), (2,), (3,)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_reads_see_the_turn(self) -> None:
        """
        A read on the connection sees the writes of the open turn.
        """
        self.database.write("INSERT INTO t (v) VALUES (7)")
        self.assertEqual(self.database.connection().execute("SELECT v FROM t").fetchall(), [(7,)])

    def test_close_flushes(self) -> None:
        """
        C{close} commits the open turn and cancels its pending flush.
        """
        self.database.write("INSERT INTO t (v) VALUES (1)")
        self.database.close()
        self.assertEqual(self.seen("SELECT v FROM t"), [(1,)])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertRaises(sqlite3.ProgrammingError, self.database.write, "INSERT INTO t (v) VALUES (2)")

    def test_last_user_closes(self) -> None:
        """
        The database closes when the last of its users detaches, and each
        detach flushes.
        """
        self.database.attach()
        self.database.attach()
        self.database.write("INSERT INTO t (v) VALUES (1)")
        self.database.detach()
        self.assertEqual(self.seen("SELECT v FROM t"), [(1,)])
        self.database.connection()
        self.database.detach()
        self.assertRaises(sqlite3.ProgrammingError, self.database.connection)

    def test_participant_writes_before_commit(self) -> None:
        """
        A participant's buffered writes go into the turn's transaction
        just before its commit, and it is told of the commit.
        """
        participant = Participant(self.database)
        self.database.attach(participant)
        statements = self.trace(self.database)
        participant.rows = [(1,), (2,)]
        self.database.schedule()
        self.assertEqual(self.seen("SELECT v FROM t"), [])
        self.clock.advance(0)
        self.assertEqual(self.seen("SELECT v FROM t ORDER BY v"), [(1,), (2,)])
        self.assertEqual(commits(statements), 1)
        self.assertEqual(participant.ended, [True])

    def test_commit_failure(self) -> None:
        """
        A COMMIT that fails is rolled back, logged at error level, counted
        and told to the participants; the next turn works.
        """
        participant = Participant(self.database)
        self.database.attach(participant)
        self.add_guard(self.database)
        self.database.write("INSERT INTO t (v) VALUES (1)")
        self.spoil_turn(self.database)
        with capturedLogs() as logged:
            self.assertFalse(self.database.flush())
        self.assertEqual(participant.ended, [False])
        self.assertEqual(self.database.stats["failed_commits"], 1)
        self.assertEqual(self.database.stats["lost_writes"], 2)
        self.assertTrue(any(e["log_level"].name == "error" and e.get("count") == 2 for e in logged))
        self.assertFalse(self.database.connection().in_transaction)
        self.database.write("INSERT INTO t (v) VALUES (3)")
        self.clock.advance(0)
        self.assertEqual(self.seen("SELECT v FROM t"), [(3,)])
        self.assertEqual(participant.ended, [False, True])

    def test_statement_failure_rolling_back_the_turn(self) -> None:
        """
        A write that makes SQLite roll the whole transaction back (the disk
        is full) raises, and the participants are told the turn is lost;
        the next write opens a new transaction.
        """
        participant = Participant(self.database)
        self.database.attach(participant)
        db = self.database.connection()
        db.execute("PRAGMA max_page_count=%d" % (db.execute("PRAGMA page_count").fetchone()[0] + 1,))
        self.database.write("INSERT INTO t (v) VALUES (1)")
        with capturedLogs():
            with self.assertRaises(sqlite3.OperationalError):
                for _ in range(100):
                    self.database.write("INSERT INTO t (v) VALUES (randomblob(2000))")
        self.assertEqual(participant.ended, [False])
        db.execute("PRAGMA max_page_count=1000000")
        self.database.write("INSERT INTO t (v) VALUES (2)")
        self.clock.advance(0)
        self.assertEqual(self.seen("SELECT v FROM t"), [(2,)])


class AutocommitTests(DatabaseTestCase):
    """
    L{EventDatabase} without a reactor.
    """

    def test_each_write_committed(self) -> None:
        """
        Every write is committed at once (no transaction is left open, no
        call is scheduled).
        """
        database = EventDatabase(self.path)
        self.addCleanup(database.close)
        database.write("CREATE TABLE t (v INTEGER)")
        database.write("INSERT INTO t (v) VALUES (1)")
        self.assertEqual(self.seen("SELECT v FROM t"), [(1,)])
        self.assertFalse(database.connection().in_transaction)
        self.assertFalse(database.grouped)

    def test_settings(self) -> None:
        """
        The journal is WAL, C{synchronous} is the one asked for, and only
        C{NORMAL} and C{FULL} are accepted.
        """
        database = EventDatabase(self.path, synchronous="FULL")
        self.addCleanup(database.close)
        db = database.connection()
        self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        self.assertEqual(db.execute("PRAGMA synchronous").fetchone()[0], 2)
        self.assertRaises(ValueError, EventDatabase, self.path, synchronous="OFF")
