# -*- test-case-name: tests.webhooks.test_outbox,tests.webhooks.test_group_commit,tests.webhooks.test_delivery -*-
"""
The durable event outbox (STYLE example 10): the C{events} table of the
events database (L{aiconnect.webhooks.database}).

This module owns what is stored and how: the schema and its migrations
(L{SCHEMA_VERSION}), L{EventOutbox.emit} (the L{aiconnect.events.EventSink}
the session code writes to: one INSERT in this reactor turn's transaction,
then return; it never raises), each session's sequence numbers (1, 2, ...; continued
across restarts, and in memory if the database fails), the listeners told
of every new event (the deliverer), each event's delivery state (attempts,
next attempt, delivered, given up), the endpoints disabled by a 410 (with
a digest of the secret, never the secret) and the purge of old rows.

When to send, and sending, belong to L{aiconnect.webhooks.delivery}.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

from aiconnect.events import new_id
from aiconnect.webhooks.database import MEMORY_DATABASE, DatabaseUser, EventDatabase
from aiconnect.webhooks.signing import encode_body

__all__ = [
    "MEMORY_DATABASE",
    "SCHEMA_VERSION",
    "EventOutbox",
    "OutboxEvent",
]

SCHEMA_VERSION = 2

_SCHEMA: dict[int, tuple[str, ...]] = {
    # version -> the statements taking a database from version - 1 to it.
    1: (
        """
        CREATE TABLE events (
            id           INTEGER PRIMARY KEY AUTOINCREMENT,
            tenant       TEXT    NOT NULL,
            session_id   TEXT    NOT NULL,
            seq          INTEGER NOT NULL,
            event_id     TEXT    NOT NULL UNIQUE,
            event        TEXT    NOT NULL,
            body         TEXT    NOT NULL,
            created      REAL    NOT NULL,
            attempts     INTEGER NOT NULL DEFAULT 0,
            next_attempt REAL    NOT NULL,
            delivered    REAL,
            dead         REAL,
            last_error   TEXT,
            UNIQUE (tenant, session_id, seq)
        )
        """,
        "CREATE INDEX events_pending ON events (id) WHERE delivered IS NULL AND dead IS NULL",
        """
        CREATE TABLE disabled_endpoints (
            tenant       TEXT PRIMARY KEY,
            callback_url TEXT NOT NULL,
            since        REAL NOT NULL
        )
        """,
    ),
    # A changed signing_secret enables a disabled endpoint again: remember a
    # digest of the secret that was in use (never the secret; NULL for rows
    # written by version 1: only the callback_url is compared for those).
    2: ("ALTER TABLE disabled_endpoints ADD COLUMN secret_digest TEXT",),
}


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """
    One stored event and its delivery state.

    @ivar row_id: The database row, or L{None} for an event the database
        could not store (kept in memory only).
    @ivar tenant: The tenant's domain.
    @ivar session_id: The session.
    @ivar seq: Its place in the session, from 1.
    @ivar event_id: The C{eventId} (and C{webhook-id}).
    @ivar event: The event name (for logs).
    @ivar body: The exact JSON body sent.
    @ivar created: When it was emitted (Unix seconds); C{retry_for} counts
        from here.
    @ivar attempts: Delivery attempts so far.
    @ivar next_attempt: Not sent before this time (Unix seconds).
    """

    row_id: int | None
    tenant: str
    session_id: str
    seq: int
    event_id: str
    event: str
    body: bytes = field(repr=False)
    created: float
    attempts: int = 0
    next_attempt: float = 0.0

    @property
    def key(self) -> tuple[str, str]:
        """
        The ordering key: C{(tenant, session_id)}.
        """
        return (self.tenant, self.session_id)

_INSERT = (
    "INSERT INTO events (id, tenant, session_id, seq, event_id, event, body, created, next_attempt)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_MAX_SEQ = "SELECT COALESCE(MAX(seq), 0) FROM events WHERE tenant = ? AND session_id = ?"
_DELIVERED = "UPDATE events SET delivered = ?, attempts = ?, last_error = NULL WHERE id = ?"
_ATTEMPT = "UPDATE events SET attempts = ?, next_attempt = ?, last_error = ? WHERE id = ?"
_DEAD = "UPDATE events SET dead = ?, attempts = ?, last_error = ? WHERE id = ?"

#: Seconds (at most) an event's new delivery state waits, on a grouped
#: database, for a commit to ride on: a kill loses at most that much of
#: them (those events are sent again after the restart: at-least-once).
STATE_DELAY = 1.0

#: How many sessions' last sequence numbers L{EventOutbox} keeps in memory
#: (a session's events come close together; an older one costs a SELECT).
SEQ_CACHE = 4096


def remember_seq(cache: dict[tuple[str, str], int], key: tuple[str, str], seq: int, most: int) -> None:
    """
    Note a session's last sequence number in a cache of the C{most}
    (L{SEQ_CACHE}) most recently used sessions (the least recent dropped).
    """
    cache.pop(key, None)
    cache[key] = seq
    if len(cache) > most:
        del cache[next(iter(cache))]


class EventOutbox(DatabaseUser):
    """
    The durable outbox: the C{events} table of the events database
    (L{aiconnect.webhooks.database.EventDatabase}, WAL journal).

    Durability: on a grouped database every write of a reactor turn is part
    of one transaction, committed at the end of that turn; otherwise every
    L{emit} is committed on its own.  With the default C{synchronous=NORMAL}
    in WAL mode a committed event survives the process being killed (kill
    -9: the WAL is in the operating system's hands); a kill loses at most
    the events of the turn in progress; only an operating-system crash or
    power loss may lose the last committed transactions.
    C{synchronous="FULL"} survives those too, at the price of an fsync per
    commit on the reactor thread.  On a grouped database the delivery
    states (L{mark_delivered}, L{mark_attempt}, L{mark_dead}) wait up to
    L{STATE_DELAY} seconds for a commit to ride on, the last state per
    event winning: a kill loses at most that much of them, and those events
    are sent again after the restart (at-least-once).

    A transaction that fails after L{emit} returned (the commit, or a later
    statement that made SQLite roll the turn back) loses its events from
    the database: they are logged at error level, counted as
    C{memory_only} and delivered from memory while the process lives (as an
    event whose insert failed); the session's sequence numbers and the
    row ids go on from the ones handed out, never reused.

    @ivar stats: Counters: C{emitted} (stored), C{memory_only} (the database
        failed; delivered from memory while the process lives),
        C{rejected} (not JSON, or our bug: not delivered at all) and
        C{db_errors} (failed state updates).
    """

    log = Logger()
    closed_message = "the event outbox is closed"

    def __init__(
        self,
        path: str | EventDatabase,
        *,
        clock: Callable[[], float] = time.time,
        synchronous: str = "NORMAL",
        busy_timeout: float = 0.5,
    ) -> None:
        """
        Open (or create) the database, its parent directories and schema.

        @param path: The database file, or C{":memory:"} (tests only): a
            connection of its own, each write committed on its own; or the
            shared L{EventDatabase} (its settings apply; group commit if it
            has a reactor).
        @param clock: Returns the current Unix time (C{reactor.seconds}).
        @param synchronous: SQLite C{synchronous} mode, C{"NORMAL"} or
            C{"FULL"} (for a database of its own).
        @param busy_timeout: Seconds an insert waits for a lock held by
            another connection before falling back to memory (for a
            database of its own).
        @raise sqlite3.Error: If the database cannot be opened or has a
            newer schema than this code knows.
        @raise OSError: If the parent directory cannot be created.
        """
        self._clock = clock
        self._listeners: list[Callable[[OutboxEvent], None]] = []
        #: Sequence numbers of sessions whose events the database may lack
        #: (kept for the life of the process; only after failures).
        self._memory_seq: dict[tuple[str, str], int] = {}
        #: The last sequence number of recent sessions (at most
        #: L{SEQ_CACHE} of them, oldest dropped): saves a SELECT per event.
        self._last_seq: dict[tuple[str, str], int] = {}
        #: The sessions and sequence numbers inserted in the open turn.
        self._turn_seq: dict[tuple[str, str], int] = {}
        self._turn_inserts = 0
        #: Row id -> the delivery state to write (grouped database), and
        #: how many were written into the open turn.
        self._updates: dict[int, tuple[str, tuple[Any, ...]]] = {}
        self._turn_updates = 0
        self.stats = {"emitted": 0, "memory_only": 0, "rejected": 0, "db_errors": 0}
        self._next_row_id = 1
        self._join(path, self._set_up, synchronous, busy_timeout)

    def _set_up(self, database: EventDatabase) -> None:
        self._migrate()
        self._next_row_id = self._last_row_id() + 1

    def _migrate(self) -> None:
        database = self._events_db()
        version = database.connection().execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                "event outbox %s has schema version %d; this AI Connect knows up to %d"
                % (self.path, version, SCHEMA_VERSION)
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with database.transaction() as db:
                for statement in _SCHEMA[target]:
                    db.execute(statement)
                db.execute("PRAGMA user_version=%d" % (target,))

    def _last_row_id(self) -> int:
        # AUTOINCREMENT's high-water mark survives the purge of the last
        # rows; ids are handed out here so that a rolled-back turn's ids
        # (events still delivered from memory) are never given again.
        db = self._conn()
        top = db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
        mark = db.execute("SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'events'").fetchone()[0]
        return max(int(top), int(mark))

    @property
    def schema_version(self) -> int:
        """
        The database's schema version (C{PRAGMA user_version}).
        """
        return int(self._conn().execute("PRAGMA user_version").fetchone()[0])

    def _conn(self) -> sqlite3.Connection:
        # For reads: they see this turn's writes (one connection).
        return self._events_db().connection()

    def prepare(self) -> None:
        """
        Write the delivery states noted since the last commit, one
        C{executemany} per statement
        (L{aiconnect.webhooks.database.TurnParticipant}); a failure is
        logged and counted (those events are sent again after a restart).
        """
        if not self._updates:
            return
        updates, self._updates = self._updates, {}
        by_statement: dict[str, list[tuple[Any, ...]]] = {}
        for sql, args in updates.values():
            by_statement.setdefault(sql, []).append(args)
        try:
            database = self._events_db()
            for sql, rows in by_statement.items():
                database.write_many(sql, rows)
        except sqlite3.Error as e:
            self.stats["db_errors"] += 1
            self.log.error("Event outbox update failed: {reason}", reason=str(e))
            return
        self._turn_updates += len(updates)

    def turn_ended(self, committed: bool) -> None:
        """
        After a rolled-back turn, its events are memory-only: logged,
        counted, and their sessions' sequence numbers kept in memory.
        """
        inserts, self._turn_inserts = self._turn_inserts, 0
        numbered, self._turn_seq = self._turn_seq, {}
        updates, self._turn_updates = self._turn_updates, 0
        if committed:
            return
        if updates:
            self.stats["db_errors"] += 1
            self.log.error("Event outbox: {count} delivery state update(s) lost (the transaction failed)", count=updates)
        if not inserts:
            return
        for key, seq in numbered.items():
            self._memory_seq[key] = max(seq, self._memory_seq.get(key, 0))
        self.stats["memory_only"] += inserts
        self.log.error(
            "Event outbox: {count} event(s) of {sessions} session(s) were not stored (the transaction failed);"
            " they are kept in memory only and lost if the process stops before delivery",
            count=inserts,
            sessions=len(numbered),
        )

    def add_listener(self, listener: Callable[[OutboxEvent], None]) -> None:
        """
        Be told of every event emitted from now on (the deliverer).

        @param listener: Called synchronously inside L{emit}; must not raise
            and must not block (schedule work instead).
        """
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[OutboxEvent], None]) -> None:
        """
        Undo L{add_listener}; unknown listeners are ignored.
        """
        if listener in self._listeners:
            self._listeners.remove(listener)

    def emit(self, tenant: str, session_id: str, payload: Mapping[str, Any]) -> str | None:
        """
        Store an event for delivery; return at once, never raise.

        The stored body is C{payload} with C{sessionId} and C{eventId} filled
        in when missing and C{sequence} (1, 2, ... per session) added.

        @param tenant: The tenant's domain (the key of the deliverer's
            tenants).
        @param session_id: The session; its events are delivered in this
            order.
        @param payload: The event object (L{aiconnect.events} builders).
        @return: The C{eventId}; L{None} if the payload is not JSON (logged
            at error level and counted as C{rejected}).
        """
        try:
            return self._emit(tenant, session_id, payload)
        except Exception:
            self.log.failure(
                "Event outbox bug; event of session {session_id} not stored",
                tenant=tenant,
                session_id=session_id,
            )
            self.stats["rejected"] += 1
            return None

    def _emit(self, tenant: str, session_id: str, payload: Mapping[str, Any]) -> str | None:
        now = self._clock()
        data = dict(payload)
        data.setdefault("sessionId", session_id)
        event_id = data.get("eventId")
        if not isinstance(event_id, str) or not event_id:
            event_id = new_id("evt_", now)
            data["eventId"] = event_id
        name = str(data.get("event", ""))
        try:
            stored = self._store(tenant, session_id, event_id, name, data, now)
        except (TypeError, ValueError) as e:
            self.log.error(
                "Event {event_id} ({event}) of session {session_id} is not JSON, not stored: {reason}",
                tenant=tenant,
                session_id=session_id,
                event_id=event_id,
                event=name,
                reason=str(e),
            )
            self.stats["rejected"] += 1
            return None
        if stored is None:
            return event_id
        row_id, seq, body = stored
        event = OutboxEvent(
            row_id=row_id,
            tenant=tenant,
            session_id=session_id,
            seq=seq,
            event_id=event_id,
            event=name,
            body=body,
            created=now,
            attempts=0,
            next_attempt=now,
        )
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                self.log.failure("Event outbox listener failed", event_id=event_id)
        return event_id

    def _store(
        self, tenant: str, session_id: str, event_id: str, name: str, data: dict[str, Any], now: float
    ) -> tuple[int | None, int, bytes] | None:
        """
        Number, encode and insert one event (in memory if the database
        fails).

        @return: Its row id (L{None}: in memory only), sequence number and
            body; L{None} for a duplicate C{eventId}.
        @raise TypeError: If the payload is not JSON (nothing stored).
        @raise ValueError: Likewise.
        """
        key = (tenant, session_id)
        try:
            database = self._events_db()
            seq = self._stored_seq(key) + 1
            data["sequence"] = seq
            body = encode_body(data)
            row_id = self._next_row_id
            database.write(_INSERT, (row_id, tenant, session_id, seq, event_id, name, body.decode("utf-8"), now, now))
        except sqlite3.IntegrityError:
            # The same eventId emitted twice: the first one is delivered.
            self.log.warn(
                "Event {event_id} of session {session_id} emitted twice; ignored",
                tenant=tenant,
                session_id=session_id,
                event_id=event_id,
            )
            return None
        except sqlite3.Error as e:
            return self._in_memory(key, event_id, name, data, str(e))
        self._next_row_id = row_id + 1
        self._remember_seq(key, seq)
        if database.grouped:
            self._turn_seq[key] = seq
            self._turn_inserts += 1
        self.stats["emitted"] += 1
        return row_id, seq, body

    def _stored_seq(self, key: tuple[str, str]) -> int:
        last = self._last_seq.get(key)
        if last is None:
            row = self._conn().execute(_MAX_SEQ, key).fetchone()
            last = int(row[0])
        return max(last, self._memory_seq.get(key, 0))

    def _remember_seq(self, key: tuple[str, str], seq: int) -> None:
        remember_seq(self._last_seq, key, seq, SEQ_CACHE)
        if key in self._memory_seq:
            self._memory_seq[key] = seq

    def _in_memory(
        self, key: tuple[str, str], event_id: str, name: str, data: dict[str, Any], reason: str
    ) -> tuple[None, int, bytes]:
        try:
            last = self._stored_seq(key)
        except sqlite3.Error:
            last = self._memory_seq.get(key, 0)
        data["sequence"] = last + 1
        body = encode_body(data)
        self._memory_seq[key] = last + 1
        self._remember_seq(key, last + 1)
        self.stats["memory_only"] += 1
        self.log.error(
            "Event outbox write failed ({reason}); event {event_id} ({event}) of session "
            "{session_id} is kept in memory only and lost if the process stops before delivery",
            tenant=key[0],
            session_id=key[1],
            event_id=event_id,
            event=name,
            reason=reason,
        )
        return None, last + 1, body

    def pending(self) -> list[OutboxEvent]:
        """
        Every stored event neither delivered nor given up, oldest first.

        @return: The events; empty (and logged) if the database fails.
        """
        self.prepare()
        try:
            rows = self._conn().execute(
                "SELECT id, tenant, session_id, seq, event_id, event, body, created, attempts, next_attempt"
                " FROM events WHERE delivered IS NULL AND dead IS NULL ORDER BY id"
            ).fetchall()
        except sqlite3.Error:
            self.log.failure("Event outbox: cannot read pending events")
            self.stats["db_errors"] += 1
            return []
        return [
            OutboxEvent(
                row_id=r[0],
                tenant=r[1],
                session_id=r[2],
                seq=r[3],
                event_id=r[4],
                event=r[5],
                body=r[6].encode("utf-8"),
                created=r[7],
                attempts=r[8],
                next_attempt=r[9],
            )
            for r in rows
        ]

    def _write(self, sql: str, args: tuple[Any, ...]) -> int:
        try:
            return self._events_db().write(sql, args).rowcount
        except sqlite3.Error as e:
            self.stats["db_errors"] += 1
            self.log.error("Event outbox update failed: {reason}", reason=str(e))
            return 0

    def _update(self, event: OutboxEvent, sql: str, args: tuple[Any, ...]) -> None:
        if event.row_id is None:
            return
        database = self._database
        if database is None or not database.grouped:
            self._write(sql, args)
            return
        # The last state per event wins: it sets every column that state
        # reads (delivered/dead end the event; an attempt holds its time).
        self._updates[event.row_id] = (sql, args)
        database.schedule(STATE_DELAY)

    def mark_delivered(self, event: OutboxEvent, now: float) -> None:
        """
        Record a delivery.

        @param event: The event.
        @param now: When (Unix seconds).
        """
        self._update(event, _DELIVERED, (now, event.attempts, event.row_id))

    def mark_attempt(self, event: OutboxEvent, error: str) -> None:
        """
        Record a failed attempt and when the next one is due.

        @param event: The event, with its new C{attempts} and
            C{next_attempt}.
        @param error: What went wrong.
        """
        self._update(event, _ATTEMPT, (event.attempts, event.next_attempt, error, event.row_id))

    def mark_dead(self, event: OutboxEvent, now: float, error: str) -> None:
        """
        Record that an event was given up (kept in the database).

        @param event: The event.
        @param now: When (Unix seconds).
        @param error: The last failure.
        """
        self._update(event, _DEAD, (now, event.attempts, error, event.row_id))

    def disabled_endpoints(self) -> dict[str, tuple[str, str | None]]:
        """
        @return: Tenant domain -> (the C{callback_url} that answered 410,
            the L{aiconnect.webhooks.signing.secret_digest} of the signing
            secret then in use, or L{None} if not recorded).
        """
        try:
            rows = self._conn().execute(
                "SELECT tenant, callback_url, secret_digest FROM disabled_endpoints"
            ).fetchall()
        except sqlite3.Error:
            self.log.failure("Event outbox: cannot read disabled endpoints")
            self.stats["db_errors"] += 1
            return {}
        return {tenant: (url, digest) for tenant, url, digest in rows}

    def set_disabled(self, tenant: str, callback_url: str, now: float, secret_digest: str | None = None) -> None:
        """
        Remember that a tenant's endpoint answered 410.

        @param tenant: The tenant's domain.
        @param callback_url: Its C{callback_url} then.
        @param now: When (Unix seconds).
        @param secret_digest: The
            L{aiconnect.webhooks.signing.secret_digest} of its signing
            secret then.
        """
        self._write(
            "INSERT OR REPLACE INTO disabled_endpoints (tenant, callback_url, since, secret_digest)"
            " VALUES (?, ?, ?, ?)",
            (tenant, callback_url, now, secret_digest),
        )

    def clear_disabled(self, tenant: str) -> None:
        """
        Forget that a tenant's endpoint was disabled.
        """
        self._write("DELETE FROM disabled_endpoints WHERE tenant = ?", (tenant,))

    def purge(self, delivered_before: float, dead_before: float) -> int:
        """
        Delete delivered and given-up events older than the given times.

        @return: The number of rows deleted.
        """
        return self._write(
            "DELETE FROM events WHERE (delivered IS NOT NULL AND delivered < ?) OR (dead IS NOT NULL AND dead < ?)",
            (delivered_before, dead_before),
        )

    def counts(self) -> dict[str, int]:
        """
        @return: Stored events by state: C{pending}, C{delivered}, C{dead}
            (zeros if the database fails).
        """
        self.prepare()
        try:
            row = self._conn().execute(
                "SELECT SUM(delivered IS NULL AND dead IS NULL), SUM(delivered IS NOT NULL),"
                " SUM(dead IS NOT NULL) FROM events"
            ).fetchone()
        except sqlite3.Error:
            self.stats["db_errors"] += 1
            return {"pending": 0, "delivered": 0, "dead": 0}
        return {"pending": row[0] or 0, "delivered": row[1] or 0, "dead": row[2] or 0}

    def close(self) -> None:
        """
        Flush and release the database (closed when its last user closes
        it); later calls to L{emit} keep events in memory.
        """
        super().close()
        self._last_seq.clear()
