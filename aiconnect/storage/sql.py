# -*- test-case-name: tests.storage.test_nodes,tests.storage.test_directory -*-
"""
One shape for both databases: code that keeps shared state (node leases,
the session directory) is written once, as an I{interaction} (a function of
a DB-API cursor) with C{%s} placeholders and SQL that PostgreSQL and SQLite
both speak (C{INSERT ... ON CONFLICT}, C{double precision}, C{LEFT JOIN}),
and handed to a L{Runner}:

    - PostgreSQL: L{twisted.enterprise.adbapi.ConnectionPool} itself (its
      C{runInteraction} runs the function in a pool thread, in one
      transaction committed before the L{Deferred} fires).
    - SQLite: L{SqliteRunner}, on the events database's connection on the
      reactor thread (one node: nothing is shared); its writes join the
      reactor turn's group commit (L{aiconnect.webhooks.database}).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred

from aiconnect.webhooks.database import DatabaseUser, EventDatabase

__all__ = ["Cursor", "Runner", "SqliteRunner"]

T = TypeVar("T")


class Cursor(Protocol):
    """
    What an interaction may do with its cursor (DB-API 2.0, C{%s}
    placeholders).
    """

    rowcount: int

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """
        Run one statement.
        """

    def fetchone(self) -> Any:
        """
        @return: The next row of the last query, or L{None}.
        """

    def fetchall(self) -> list[Any]:
        """
        @return: The remaining rows of the last query.
        """


class Runner(Protocol):
    """
    Runs interactions without blocking the reactor
    (L{twisted.enterprise.adbapi.ConnectionPool} is one).
    """

    def runInteraction(self, interaction: Callable[..., T], *args: Any, **kw: Any) -> Deferred[T]:
        """
        Call C{interaction(cursor, *args, **kw)} in one transaction.

        @return: Its result, once committed; its exception, once rolled
            back.
        """


class _QmarkCursor:
    """
    A L{Cursor} on an L{EventDatabase}: C{%s} becomes SQLite's C{?};
    writes go through L{EventDatabase.write} (this turn's transaction),
    queries straight to the connection (they see this turn's writes).
    """

    def __init__(self, database: EventDatabase) -> None:
        self._database = database
        self._rows: list[Any] = []
        self.rowcount = -1

    def execute(self, sql: str, args: Sequence[Any] = ()) -> None:
        sql = sql.replace("%s", "?")
        if sql.lstrip()[:6].upper() == "SELECT":
            self._rows = self._database.connection().execute(sql, tuple(args)).fetchall()
            self.rowcount = len(self._rows)
        else:
            self._rows = []
            self.rowcount = self._database.write(sql, args).rowcount

    def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows


class SqliteRunner(DatabaseUser):
    """
    L{Runner} on the events database (one node).  An interaction runs at
    once on the reactor thread; on a grouped database its writes are
    committed with the reactor turn (a kill loses at most that turn, as
    for the events), otherwise each on its own.
    """

    closed_message = "the shared-state tables are closed"

    def __init__(self, path: str | EventDatabase, schema: Iterable[str], *, busy_timeout: float = 0.5) -> None:
        """
        @param path: The database file (a connection of its own), or the
            shared L{EventDatabase}.
        @param schema: C{CREATE ... IF NOT EXISTS} statements run once.
        @raise sqlite3.Error: If the database cannot be opened.
        """
        statements = tuple(schema)

        def set_up(database: EventDatabase) -> None:
            with database.transaction() as db:
                for statement in statements:
                    db.execute(statement)

        self._join(path, set_up, "NORMAL", busy_timeout)

    def runInteraction(self, interaction: Callable[..., T], *args: Any, **kw: Any) -> Deferred[T]:
        return maybeDeferred(lambda: interaction(_QmarkCursor(self._events_db()), *args, **kw))
