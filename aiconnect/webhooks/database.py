# -*- test-case-name: tests.webhooks.test_database,tests.webhooks.test_group_commit,tests.webhooks.test_outbox,tests.test_recovery_group_commit,tests.test_recovery -*-
"""
The events database (C{[events] database}): one SQLite connection (WAL
journal) shared by the event outbox (L{aiconnect.webhooks.outbox}) and the
dialog store of restart recovery (L{aiconnect.recovery}), with group commit.

Group commit (with a reactor): the first write of a reactor turn opens a
transaction (C{BEGIN IMMEDIATE}) and arms C{reactor.callLater(0, flush)};
every later write of the turn, from either user, joins it; L{flush
<EventDatabase.flush>} commits it.  Twisted runs the delayed calls that are
due before it waits for I/O again, so a transaction lasts one reactor
iteration: one commit per turn instead of one per statement, and a turn's
events and its dialog-store changes are stored together or not at all.
Reads on the connection see the open transaction's writes.  Without a
reactor every write is committed on its own (SQLite's autocommit).

Durability: a committed turn survives the process being killed (WAL, with
C{synchronous=NORMAL} or C{FULL}); a C{kill -9} loses at most the open
turn's writes.  A failed transaction (disk full, I/O error, a lock held
too long by another process) is rolled back and logged at error level;
each user is told (L{TurnParticipant.turn_ended}) and keeps its state in
memory (see L{aiconnect.webhooks.outbox} and L{aiconnect.recovery}).

Use one L{EventDatabase} per file per process: two grouped connections to
one file would each hold the write lock for a turn and wait on each other.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from aiconnect.timers import rearm

__all__ = ["MEMORY_DATABASE", "DatabaseUser", "EventDatabase", "TurnParticipant"]

#: The C{[events] database} value that keeps the database in memory (tests).
MEMORY_DATABASE = ":memory:"


class TurnParticipant(Protocol):
    """
    A user of an L{EventDatabase} that takes part in its turns.
    """

    def prepare(self) -> None:
        """
        Write what was buffered (called before each commit); may raise
        L{sqlite3.Error} after keeping what it could not write.
        """

    def turn_ended(self, committed: bool) -> None:
        """
        The open transaction was committed (C{True}) or rolled back
        (C{False}: its writes are not in the database).
        """


class EventDatabase:
    """
    One SQLite connection with group commit (module docstring).

    @ivar path: The file, or L{MEMORY_DATABASE}.
    @ivar stats: Counters: C{statements} (executed writes), C{commits},
        C{failed_commits} (transactions rolled back by a failure) and
        C{lost_writes} (the statements they held).
    """

    log = Logger()

    def __init__(
        self,
        path: str,
        *,
        reactor: IReactorTime | None = None,
        synchronous: str = "NORMAL",
        busy_timeout: float = 0.5,
    ) -> None:
        """
        Open (or create) the database and its parent directories.

        @param path: The database file, or L{MEMORY_DATABASE} (tests only).
        @param reactor: Commits once per reactor turn; L{None} commits each
            write on its own.
        @param synchronous: SQLite C{synchronous} mode, C{"NORMAL"} or
            C{"FULL"}.
        @param busy_timeout: Seconds a write waits for a lock held by
            another connection before it fails.
        @raise ValueError: For another C{synchronous} mode.
        @raise sqlite3.Error: If the database cannot be opened.
        @raise OSError: If the parent directory cannot be created.
        """
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be NORMAL or FULL")
        if path != MEMORY_DATABASE:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self._reactor = reactor
        self._db: sqlite3.Connection | None = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=" + synchronous)
        self._flush_call: IDelayedCall | None = None
        #: Whether we opened the transaction in progress, and its writes.
        self._in_turn = False
        self._turn_writes = 0
        self._participants: list[TurnParticipant] = []
        self._users = 0
        self.stats = {"statements": 0, "commits": 0, "failed_commits": 0, "lost_writes": 0}

    @property
    def grouped(self) -> bool:
        """
        Whether writes are committed once per reactor turn.
        """
        return self._reactor is not None

    def connection(self) -> sqlite3.Connection:
        """
        @return: The connection (for reads).
        @raise sqlite3.ProgrammingError: If the database is closed.
        """
        if self._db is None:
            raise sqlite3.ProgrammingError("the events database is closed")
        return self._db

    def attach(self, participant: TurnParticipant | None = None) -> None:
        """
        Count a user (the database closes when the last one L{detach}es);
        a participant takes part in every turn.
        """
        self._users += 1
        if participant is not None:
            self._participants.append(participant)

    def detach(self, participant: TurnParticipant | None = None) -> None:
        """
        Undo L{attach}: flush, and close the database if no user is left.
        """
        self.flush()
        if participant is not None and participant in self._participants:
            self._participants.remove(participant)
        self._users -= 1
        if self._users <= 0:
            self.close()

    def schedule(self, delay: float = 0.0) -> None:
        """
        Make sure a L{flush} comes within C{delay} seconds (a participant
        buffered a write): C{0}, at the end of this turn.
        """
        reactor = self._reactor
        if reactor is None or self._db is None:
            return
        call = self._flush_call
        if call is None or not call.active() or call.getTime() > reactor.seconds() + delay:
            # Only ever sooner (aiconnect.timers: a linear reset avoided).
            self._flush_call = rearm(reactor, call, delay, self._end_turn)

    def _begin(self, db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")
        self._in_turn = True
        self._turn_writes = 0
        self.schedule()

    def _run(self, method: str, sql: str, args: Any) -> sqlite3.Cursor:
        db = self.connection()
        if self._reactor is not None and not self._in_turn:
            self._begin(db)
        try:
            cursor: sqlite3.Cursor = getattr(db, method)(sql, args)
        except sqlite3.Error as e:
            if self._in_turn and not db.in_transaction:
                # SQLite rolled the whole transaction back (SQLITE_FULL,
                # SQLITE_IOERR, SQLITE_BUSY ...), not just this statement.
                self._lost(str(e))
            raise
        self.stats["statements"] += 1
        self._turn_writes += 1
        return cursor

    def write(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Cursor:
        """
        Execute one write statement in this turn's transaction.

        @return: The cursor (C{rowcount}).
        @raise sqlite3.Error: If it fails (the transaction may be lost:
            the participants are told first).
        """
        return self._run("execute", sql, tuple(args))

    def write_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """
        Execute one write statement for each row (C{executemany}).

        @raise sqlite3.Error: As L{write}.
        """
        if rows:
            self._run("executemany", sql, rows)

    def _end_turn(self) -> None:
        self._flush_call = None
        self.flush()

    def flush(self) -> bool:
        """
        Commit the open turn now (the participants write what they buffered
        first).  A failure is logged, rolled back and told to the
        participants.

        @return: C{False} if the transaction failed.
        """
        if self._flush_call is not None:
            if self._flush_call.active():
                self._flush_call.cancel()
            self._flush_call = None
        db = self._db
        if db is None:
            return True
        failures = self.stats["failed_commits"]
        for participant in list(self._participants):
            try:
                participant.prepare()
            except sqlite3.Error as e:
                self.log.error("Events database: a buffered write failed: {reason}", reason=str(e))
            except Exception:
                self.log.failure("Events database: a participant failed to write")
        if not self._in_turn:
            return self.stats["failed_commits"] == failures
        try:
            db.execute("COMMIT")
        except sqlite3.Error as e:
            try:
                if db.in_transaction:
                    db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._lost(str(e))
            return False
        self._in_turn = False
        self.stats["commits"] += 1
        for participant in list(self._participants):
            participant.turn_ended(True)
        return True

    def _lost(self, reason: str) -> None:
        self._in_turn = False
        self.stats["failed_commits"] += 1
        self.stats["lost_writes"] += self._turn_writes
        self.log.error(
            "Events database: transaction failed ({reason}); the {count} write(s) of this reactor turn are rolled back",
            reason=reason,
            count=self._turn_writes,
        )
        for participant in list(self._participants):
            participant.turn_ended(False)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """
        An explicit transaction committed at once (schema changes), after
        the open turn is flushed.

        @raise sqlite3.Error: If it fails (rolled back).
        """
        self.flush()
        db = self.connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise

    def close(self) -> None:
        """
        Flush and close the connection.
        """
        if self._db is None:
            return
        self.flush()
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        db, self._db = self._db, None
        db.close()


class DatabaseUser:
    """
    Base of the events database's users (the outbox, the dialog store): it
    joins a shared L{EventDatabase} or opens one of its own, sets it up,
    flushes it and releases it; a L{TurnParticipant} doing nothing, which
    subclasses override.

    @ivar path: The database file, or L{MEMORY_DATABASE}.
    """

    #: What L{sqlite3.ProgrammingError} says once closed.
    closed_message = "the events database is closed"
    _database: EventDatabase | None = None

    def _join(
        self,
        database: str | EventDatabase,
        setup: Callable[[EventDatabase], None],
        synchronous: str,
        busy_timeout: float,
    ) -> None:
        """
        Take part in C{database} (a file: a connection of its own, each
        write committed on its own) and run C{setup} on it; on failure,
        release it and raise.
        """
        if isinstance(database, str):
            database = EventDatabase(database, synchronous=synchronous, busy_timeout=busy_timeout)
        self.path = database.path
        database.attach(self)
        self._database = database
        try:
            setup(database)
        except BaseException:
            self._database = None
            database.detach(self)
            raise

    def prepare(self) -> None:
        """
        Nothing buffered (L{TurnParticipant}).
        """

    def turn_ended(self, committed: bool) -> None:
        """
        Nothing to do (L{TurnParticipant}).
        """

    def _events_db(self) -> EventDatabase:
        if self._database is None:
            raise sqlite3.ProgrammingError(self.closed_message)
        return self._database

    def flush(self) -> bool:
        """
        Commit what this turn wrote now (L{EventDatabase.flush}).

        @return: C{False} if the transaction failed (logged).
        """
        return self._database is None or self._database.flush()

    def close(self) -> None:
        """
        Flush and release the database (closed when its last user closes
        it).
        """
        if self._database is not None:
            # Detached first: the flush it makes still writes our changes.
            self._database.detach(self)
            self._database = None
