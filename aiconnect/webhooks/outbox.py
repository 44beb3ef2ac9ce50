# -*- test-case-name: tests.webhooks.test_outbox,tests.webhooks.test_delivery -*-
"""
The durable event outbox (STYLE example 10): one SQLite database.

This module owns what is stored and how: the schema and its migrations
(L{SCHEMA_VERSION}), L{EventOutbox.emit} (the L{aiconnect.events.EventSink}
the session code writes to: one short committed transaction, then return;
it never raises), each session's sequence numbers (1, 2, ...; continued
across restarts, and in memory if the database fails), the listeners told
of every new event (the deliverer), each event's delivery state (attempts,
next attempt, delivered, given up), the endpoints disabled by a 410 (with
a digest of the secret, never the secret) and the purge of old rows.

When to send, and sending, belong to L{aiconnect.webhooks.delivery}.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

from aiconnect.events import new_id
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

#: The C{[events] database} / dialog store value that keeps the database in
#: memory (tests).
MEMORY_DATABASE = ":memory:"


class EventOutbox:
    """
    The durable outbox: one SQLite database (WAL journal).

    Durability: every L{emit} is one committed transaction.  With the default
    C{synchronous=NORMAL} in WAL mode a committed event survives the process
    being killed (kill -9: the WAL is in the operating system's hands); only
    an operating-system crash or power loss may lose the last transactions.
    C{synchronous="FULL"} survives those too, at the price of an fsync per
    event on the reactor thread.

    @ivar stats: Counters: C{emitted} (stored), C{memory_only} (the database
        failed; delivered from memory while the process lives),
        C{rejected} (not JSON, or our bug: not delivered at all) and
        C{db_errors} (failed state updates).
    """

    log = Logger()

    def __init__(
        self,
        path: str,
        *,
        clock: Callable[[], float] = time.time,
        synchronous: str = "NORMAL",
        busy_timeout: float = 0.5,
    ) -> None:
        """
        Open (or create) the database, its parent directories and schema.

        @param path: The database file, or C{":memory:"} (tests only).
        @param clock: Returns the current Unix time (C{reactor.seconds}).
        @param synchronous: SQLite C{synchronous} mode, C{"NORMAL"} or
            C{"FULL"}.
        @param busy_timeout: Seconds an insert waits for a lock held by
            another connection before falling back to memory.
        @raise sqlite3.Error: If the database cannot be opened or has a
            newer schema than this code knows.
        @raise OSError: If the parent directory cannot be created.
        """
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be NORMAL or FULL")
        if path != MEMORY_DATABASE:
            parent = os.path.dirname(os.path.abspath(path))
            os.makedirs(parent, exist_ok=True)
        self.path = path
        self._clock = clock
        self._db: sqlite3.Connection | None = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=" + synchronous)
        self._migrate()
        self._listeners: list[Callable[[OutboxEvent], None]] = []
        self._memory_seq: dict[tuple[str, str], int] = {}
        self.stats = {"emitted": 0, "memory_only": 0, "rejected": 0, "db_errors": 0}

    def _migrate(self) -> None:
        assert self._db is not None
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            self._db.close()
            self._db = None
            raise sqlite3.DatabaseError(
                "event outbox %s has schema version %d; this AI Connect knows up to %d"
                % (self.path, version, SCHEMA_VERSION)
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA[target]:
                    self._db.execute(statement)
                self._db.execute("PRAGMA user_version=%d" % (target,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        """
        The database's schema version (C{PRAGMA user_version}).
        """
        return int(self._conn().execute("PRAGMA user_version").fetchone()[0])

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.ProgrammingError("the event outbox is closed")
        return self._db

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
            encode_body(data)
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
        key = (tenant, session_id)
        row_id: int | None
        try:
            row_id, seq, body = self._insert(tenant, session_id, event_id, name, data, now)
            self.stats["emitted"] += 1
        except sqlite3.IntegrityError:
            # The same eventId emitted twice: the first one is delivered.
            self.log.warn(
                "Event {event_id} of session {session_id} emitted twice; ignored",
                tenant=tenant,
                session_id=session_id,
                event_id=event_id,
            )
            return event_id
        except sqlite3.Error as e:
            seq = self._fallback_seq(key)
            data["sequence"] = seq
            body = encode_body(data)
            row_id = None
            self.stats["memory_only"] += 1
            self.log.error(
                "Event outbox write failed ({reason}); event {event_id} ({event}) of session "
                "{session_id} is kept in memory only and lost if the process stops before delivery",
                tenant=tenant,
                session_id=session_id,
                event_id=event_id,
                event=name,
                reason=str(e),
            )
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

    def _insert(
        self, tenant: str, session_id: str, event_id: str, name: str, data: dict[str, Any], now: float
    ) -> tuple[int, int, bytes]:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE tenant = ? AND session_id = ?",
                (tenant, session_id),
            ).fetchone()
            seq = max(int(row[0]), self._memory_seq.get((tenant, session_id), 0)) + 1
            data["sequence"] = seq
            body = encode_body(data)
            cursor = db.execute(
                "INSERT INTO events (tenant, session_id, seq, event_id, event, body, created, next_attempt)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (tenant, session_id, seq, event_id, name, body.decode("utf-8"), now, now),
            )
            db.execute("COMMIT")
        except BaseException:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        if (tenant, session_id) in self._memory_seq:
            self._memory_seq[(tenant, session_id)] = seq
        assert cursor.lastrowid is not None
        return cursor.lastrowid, seq, body

    def _fallback_seq(self, key: tuple[str, str]) -> int:
        last = self._memory_seq.get(key)
        if last is None:
            last = 0
            try:
                row = self._conn().execute(
                    "SELECT COALESCE(MAX(seq), 0) FROM events WHERE tenant = ? AND session_id = ?", key
                ).fetchone()
                last = int(row[0])
            except sqlite3.Error:
                pass
        self._memory_seq[key] = last + 1
        return last + 1

    def pending(self) -> list[OutboxEvent]:
        """
        Every stored event neither delivered nor given up, oldest first.

        @return: The events; empty (and logged) if the database fails.
        """
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
            return self._conn().execute(sql, args).rowcount
        except sqlite3.Error as e:
            self.stats["db_errors"] += 1
            self.log.error("Event outbox update failed: {reason}", reason=str(e))
            return 0

    def mark_delivered(self, event: OutboxEvent, now: float) -> None:
        """
        Record a delivery.

        @param event: The event.
        @param now: When (Unix seconds).
        """
        if event.row_id is not None:
            self._write(
                "UPDATE events SET delivered = ?, attempts = ?, last_error = NULL WHERE id = ?",
                (now, event.attempts, event.row_id),
            )

    def mark_attempt(self, event: OutboxEvent, error: str) -> None:
        """
        Record a failed attempt and when the next one is due.

        @param event: The event, with its new C{attempts} and
            C{next_attempt}.
        @param error: What went wrong.
        """
        if event.row_id is not None:
            self._write(
                "UPDATE events SET attempts = ?, next_attempt = ?, last_error = ? WHERE id = ?",
                (event.attempts, event.next_attempt, error, event.row_id),
            )

    def mark_dead(self, event: OutboxEvent, now: float, error: str) -> None:
        """
        Record that an event was given up (kept in the database).

        @param event: The event.
        @param now: When (Unix seconds).
        @param error: The last failure.
        """
        if event.row_id is not None:
            self._write(
                "UPDATE events SET dead = ?, attempts = ?, last_error = ? WHERE id = ?",
                (now, event.attempts, error, event.row_id),
            )

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
        Close the database; later calls to L{emit} keep events in memory.
        """
        if self._db is not None:
            self._db.close()
