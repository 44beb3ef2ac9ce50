# -*- test-case-name: tests.webhooks.test_database,tests.webhooks.test_group_commit,tests.test_recovery_group_commit -*-
"""
Test helpers for the events database (L{aiconnect.webhooks.database}): a
grouped database on a L{Clock} in a temporary directory, what it says to
SQLite, what a second connection (a restarted process) sees, and a real
commit-time failure.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.webhooks.database import EventDatabase

#: A table whose deferred foreign key fails the COMMIT of a turn that wrote
#: an orphan row into it (SQLite checks deferred keys at COMMIT).
_GUARD = (
    "CREATE TABLE IF NOT EXISTS guard_parent (id INTEGER PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS guard_child (parent INTEGER REFERENCES guard_parent (id) DEFERRABLE INITIALLY DEFERRED)",
)


class Participant:
    """
    A recording L{aiconnect.webhooks.database.TurnParticipant}, writing
    C{rows} into table C{t} when prepared.
    """

    def __init__(self, database: EventDatabase) -> None:
        self.database = database
        self.rows: list[tuple[Any, ...]] = []
        self.ended: list[bool] = []

    def prepare(self) -> None:
        rows, self.rows = self.rows, []
        self.database.write_many("INSERT INTO t (v) VALUES (?)", rows)

    def turn_ended(self, committed: bool) -> None:
        self.ended.append(committed)


class DatabaseTestCase(SynchronousTestCase):
    """
    A L{Clock} and a temporary directory for events databases.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1700000000)
        directory = tempfile.mkdtemp(prefix="aiconnect-db-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.path = str(Path(directory) / "var" / "events.sqlite3")

    def grouped(self, **kwargs: Any) -> EventDatabase:
        """
        @return: A database committing once per turn of L{clock}, closed on
            cleanup.
        """
        database = EventDatabase(self.path, reactor=self.clock, **kwargs)
        self.addCleanup(database.close)
        return database

    def trace(self, database: EventDatabase) -> list[str]:
        """
        @return: The statements the database executes from now on (the
            SQLite boundary).
        """
        statements: list[str] = []
        database.connection().set_trace_callback(statements.append)
        return statements

    def seen(self, sql: str) -> list[tuple[Any, ...]]:
        """
        @return: What a second connection (another process) reads now.
        """
        other = sqlite3.connect(self.path)
        try:
            return other.execute(sql).fetchall()
        except sqlite3.OperationalError:
            # The table itself is not committed yet.
            return []
        finally:
            other.close()

    def add_guard(self, database: EventDatabase) -> None:
        """
        Create the L{_GUARD} tables and enforce foreign keys.
        """
        with database.transaction() as db:
            for statement in _GUARD:
                db.execute(statement)
        database.connection().execute("PRAGMA foreign_keys=ON")

    def spoil_turn(self, database: EventDatabase) -> None:
        """
        Make this turn's COMMIT fail (an orphan row under a deferred
        foreign key): a real SQLite failure at commit time.
        """
        database.write("INSERT INTO guard_child (parent) VALUES (42)")


def commits(statements: list[str]) -> int:
    """
    @return: How many COMMITs a trace holds.
    """
    return sum(1 for s in statements if s.strip().upper() == "COMMIT")
