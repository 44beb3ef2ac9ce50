# -*- test-case-name: tests.storage.test_outbox,tests.storage.test_takeover -*-
"""
The event outbox on PostgreSQL (SPEC s2 and s14; docs/storage.md, "Event
outbox"): the C{events} table of the shared database, each row owned by
the node that delivers it (C{owner_node}).

L{PostgresOutbox} has the interface of the SQLite
L{aiconnect.webhooks.outbox.EventOutbox}, so that
L{aiconnect.webhooks.delivery.EventDeliverer} and the session code use it
unchanged, with the same rule: an event is durable before it is sent.

    - L{PostgresOutbox.emit} numbers and encodes the event on the reactor
      thread, keeps it in memory and returns; the events of a reactor turn
      are written in B{one} transaction of the pool (one C{executemany}),
      and the listeners (the deliverer) are told of them only once it
      committed.  One batch runs at a time; the events emitted meanwhile
      make the next one.
    - The delivery states (C{mark_delivered}, C{mark_attempt},
      C{mark_dead}) are written behind, the last state per event winning,
      with the next batch or at most L{STATE_DELAY} seconds later.
    - The database unreachable: the events stay in memory (at most
      C{max_buffered}; more are dropped, counted and logged), the batch is
      tried again every C{retry_delay} seconds, nothing waits (the
      reactor, the call); one error line per outage, one line when it
      works again.
    - A session's sequence numbers go on from the database: the first
      event of a session this process does not know is numbered in its
      batch, from C{MAX(seq)} (a session of a previous run, or of a node
      whose events were taken over).
    - L{PostgresOutbox.take_over}: the undelivered events of lost nodes
      become this node's (L{aiconnect.storage.takeover} asks for them),
      in the same queue as the batches, so a session's events reach the
      deliverer in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from aiconnect.events import new_id
from aiconnect.storage.nodes import _renew
from aiconnect.storage.sql import Cursor, Runner
from aiconnect.timers import rearm
from aiconnect.webhooks.outbox import SEQ_CACHE, STATE_DELAY, OutboxEvent, remember_seq
from aiconnect.webhooks.signing import encode_body

__all__ = ["MAX_BUFFERED", "RETRY_DELAY", "PostgresOutbox"]

#: Events kept in memory at most while the database cannot be reached.
MAX_BUFFERED = 100_000
#: Seconds between two tries of a batch that failed.
RETRY_DELAY = 1.0

_COLUMNS = "id, tenant, session_id, seq, event_id, event, body, created, attempts, next_attempt"
_INSERT = (
    "INSERT INTO events (owner_node, tenant, session_id, seq, event_id, event, body, created, next_attempt)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING id"
)
_MAX_SEQ = (
    "SELECT tenant, session_id, MAX(seq) FROM events"
    " WHERE (tenant, session_id) IN (SELECT * FROM unnest(%s::text[], %s::text[])) GROUP BY tenant, session_id"
)
#: A retried batch whose first try committed unseen: its rows, by eventId.
_STORED = f"SELECT {_COLUMNS} FROM events WHERE event_id = ANY(%s) AND delivered IS NULL AND dead IS NULL"
_DELIVERED = "UPDATE events SET delivered = %s, attempts = %s, last_error = NULL WHERE id = %s"
_ATTEMPT = "UPDATE events SET attempts = %s, next_attempt = %s, last_error = %s WHERE id = %s"
_DEAD = "UPDATE events SET dead = %s, attempts = %s, last_error = %s WHERE id = %s"
_PENDING_OF = f"SELECT {_COLUMNS} FROM events WHERE owner_node = %s AND delivered IS NULL AND dead IS NULL ORDER BY id"
#: The lost nodes' leases are locked (skipped if another survivor holds
#: them: one survivor takes a node's events, all of them, so a session is
#: never split), checked expired again, and their events moved.
_LOCK_LOST = (
    "SELECT node_id FROM node_leases WHERE node_id = ANY(%s) AND node_id <> %s AND expires <= %s"
    " FOR UPDATE SKIP LOCKED"
)
_TAKE = (
    "WITH taken AS (SELECT id, owner_node FROM events WHERE owner_node = ANY(%s) AND delivered IS NULL AND dead IS NULL"
    " FOR UPDATE SKIP LOCKED)"
    " UPDATE events e SET owner_node = %s FROM taken WHERE e.id = taken.id RETURNING taken.owner_node, "
    + ", ".join("e." + column for column in _COLUMNS.split(", "))
)


@dataclass(slots=True)
class _Emitted:
    """
    An event emitted and not yet stored.

    @ivar resolved: Whether C{seq} is final (else it counts from the
        session's last stored number, learnt in the batch).
    """

    tenant: str
    session_id: str
    event_id: str
    event: str
    data: dict[str, Any] = field(repr=False)
    body: bytes = field(repr=False)
    seq: int
    created: float
    resolved: bool

    @property
    def key(self) -> tuple[str, str]:
        return (self.tenant, self.session_id)


def _event(row: Sequence[Any]) -> OutboxEvent:
    return OutboxEvent(
        row_id=int(row[0]),
        tenant=row[1],
        session_id=row[2],
        seq=int(row[3]),
        event_id=row[4],
        event=row[5],
        body=row[6].encode("utf-8"),
        created=float(row[7]),
        attempts=int(row[8]),
        next_attempt=float(row[9]),
    )


@dataclass(slots=True)
class _Batch:
    """
    What one transaction writes, and what it found.
    """

    events: list[_Emitted]
    updates: dict[int, tuple[str, tuple[Any, ...]]]
    others: list[tuple[str, tuple[Any, ...]]]
    #: Per event: its row (L{None}: not stored, a duplicate eventId).
    stored: list[OutboxEvent | None] = field(default_factory=list)
    #: The last stored number of each session numbered in the batch.
    bases: dict[tuple[str, str], int] = field(default_factory=dict)


def _write_batch(cursor: Cursor, node_id: str, batch: _Batch) -> _Batch:
    """
    The interaction of a batch (in a pool thread): number the sessions
    first seen, insert the events (one C{executemany}), write the
    delivery states and the other changes.
    """
    unresolved = {e.key for e in batch.events if not e.resolved}
    if unresolved:
        keys = sorted(unresolved)
        cursor.execute(_MAX_SEQ, ([k[0] for k in keys], [k[1] for k in keys]))
        bases = batch.bases = {(r[0], r[1]): int(r[2]) for r in cursor.fetchall()}
        # A session the cache forgot (L{SEQ_CACHE}) while some of its
        # events were not stored yet: those are earlier in this batch.
        for e in batch.events:
            if e.resolved and e.key in unresolved:
                bases[e.key] = max(bases.get(e.key, 0), e.seq)
    rows = []
    final: list[tuple[int, bytes]] = []
    for e in batch.events:
        seq, body = e.seq, e.body
        base = 0 if e.resolved else batch.bases.get(e.key, 0)
        if base:
            seq += base
            body = encode_body({**e.data, "sequence": seq})
        final.append((seq, body))
        rows.append((node_id, e.tenant, e.session_id, seq, e.event_id, e.event, body.decode("utf-8"), e.created, e.created))
    if rows:
        ids: list[int | None] = []
        if len(rows) == 1:
            # Cheaper than a pipeline of one (a quiet node's turn).
            cursor.execute(_INSERT, rows[0])
            row = cursor.fetchone()
            ids.append(None if row is None else int(row[0]))
        else:
            cursor.executemany(_INSERT, rows, returning=True)  # type: ignore[call-arg]
            while True:
                row = cursor.fetchone()
                ids.append(None if row is None else int(row[0]))
                if not cursor.nextset():  # type: ignore[attr-defined]
                    break
        missing = [e.event_id for e, i in zip(batch.events, ids) if i is None]
        found: dict[str, OutboxEvent] = {}
        if missing:
            cursor.execute(_STORED, (missing,))
            found = {event.event_id: event for event in map(_event, cursor.fetchall())}
        for e, row_id, (seq, body) in zip(batch.events, ids, final):
            if row_id is None:
                batch.stored.append(found.get(e.event_id))
                continue
            batch.stored.append(
                OutboxEvent(row_id, e.tenant, e.session_id, seq, e.event_id, e.event, body, e.created, 0, e.created)
            )
    by_statement: dict[str, list[tuple[Any, ...]]] = {}
    for sql, args in batch.updates.values():
        by_statement.setdefault(sql, []).append(args)
    for sql, many in by_statement.items():
        cursor.executemany(sql, many)  # type: ignore[attr-defined]
    for sql, args in batch.others:
        cursor.execute(sql, args)
    return batch


_Loaded = tuple[list[OutboxEvent], dict[str, tuple[str, str | None]]]


def _load(cursor: Cursor, node_id: str, api_url: str, now: float, lease: float) -> _Loaded:
    # The lease is taken first, in the same transaction: a survivor taking
    # over this node's events either finished before (they are its own
    # now) or finds the lease live (it skips them).
    _renew(cursor, node_id, api_url, now, now + lease)
    cursor.execute(_PENDING_OF, (node_id,))
    pending = [_event(r) for r in cursor.fetchall()]
    cursor.execute("SELECT tenant, callback_url, secret_digest FROM disabled_endpoints")
    return pending, {r[0]: (r[1], r[2]) for r in cursor.fetchall()}


def _take_over(cursor: Cursor, node_id: str, nodes: list[str], now: float) -> tuple[list[str], list[OutboxEvent]]:
    cursor.execute(_LOCK_LOST, (nodes, node_id, now))
    locked = [str(r[0]) for r in cursor.fetchall()]
    if not locked:
        return [], []
    cursor.execute(_TAKE, (locked, node_id))
    rows = cursor.fetchall()
    return sorted({str(r[0]) for r in rows}), sorted((_event(r[1:]) for r in rows), key=lambda e: e.row_id or 0)


class PostgresOutbox:
    """
    The event outbox of a node on PostgreSQL (module docstring).

    @ivar node_id: This node (C{owner_node} of its rows).
    @ivar stats: Counters: C{emitted} (stored), C{batches} (transactions
        written), C{buffered} (events in memory, not stored yet: a gauge),
        C{dropped} (beyond C{max_buffered}, never stored nor sent),
        C{rejected} (not JSON, or our bug), C{db_errors} (failed
        transactions), C{taken_over} (events of lost nodes made ours).
    """

    log = Logger()

    def __init__(
        self,
        node_id: str,
        reactor: IReactorTime,
        *,
        max_buffered: int = MAX_BUFFERED,
        retry_delay: float = RETRY_DELAY,
        state_delay: float = STATE_DELAY,
    ) -> None:
        """
        @param node_id: C{[node] id}.
        @param reactor: Its clock stamps the events; its timers run the
            batches.
        @param max_buffered: Events kept in memory at most while they
            cannot be stored.
        @param retry_delay: Seconds before a failed batch is tried again.
        @param state_delay: Seconds a delivery state waits for a batch to
            ride on.
        """
        self.node_id = node_id
        self._reactor = reactor
        self._max_buffered = max_buffered
        self._retry_delay = retry_delay
        self._state_delay = state_delay
        self._runner: Runner | None = None
        self._listeners: list[Callable[[OutboxEvent], None]] = []
        self._lock = DeferredLock()
        self._buffer: list[_Emitted] = []
        self._in_flight = 0
        self._updates: dict[int, tuple[str, tuple[Any, ...]]] = {}
        self._others: list[tuple[str, tuple[Any, ...]]] = []
        self._flush_call: IDelayedCall | None = None
        self._flush_queued = False
        #: Last stored number of recent sessions; sessions first seen, and
        #: how many of their events were numbered so far.
        self._last_seq: dict[tuple[str, str], int] = {}
        self._unresolved: dict[tuple[str, str], int] = {}
        self._loaded: list[OutboxEvent] = []
        self._disabled: dict[str, tuple[str, str | None]] = {}
        self._failing = False
        self._dropping = False
        self.stats = {
            "emitted": 0, "batches": 0, "buffered": 0, "dropped": 0, "rejected": 0, "db_errors": 0, "taken_over": 0,
        }

    # -- start and stop --

    def load(self, runner: Runner, *, now: float, api_url: str, lease: float) -> Deferred[None]:
        """
        At start (on the blocking start-up connection of
        L{aiconnect.storage.cluster}): take this node's lease and read its
        undelivered events (a previous run's; L{pending} returns them) and
        the disabled endpoints.
        """

        def loaded(result: _Loaded) -> None:
            # The deliverer says how many it found (at its start).
            self._loaded, self._disabled = result

        return runner.runInteraction(_load, self.node_id, api_url, now, lease).addCallback(loaded)

    def attach(self, runner: Runner) -> None:
        """
        Write through C{runner} (the pool) from now on; what was emitted
        before is written at once.
        """
        self._runner = runner
        if self._buffer or self._updates or self._others:
            self._schedule(0)

    def drained(self) -> Deferred[None]:
        """
        Write what is left (one try), then stop writing: for the stop,
        before the pool closes.  Events not written are logged.

        @return: Fires when done.
        """
        if self._runner is None:
            return succeed(None)
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        done = self._lock.run(self._flush_now, False)

        def detach(_: object) -> None:
            self._runner = None
            if self._buffer:
                self.log.error(
                    "Event outbox: {count} event(s) could not be stored before the stop and are lost",
                    count=len(self._buffer),
                )

        return done.addBoth(detach)

    def close(self) -> None:
        """
        The deliverer stopped: write what is left soon (the pool is closed
        after L{drained}).
        """
        if self._runner is not None:
            self._schedule(0)

    # -- the EventOutbox interface --

    def add_listener(self, listener: Callable[[OutboxEvent], None]) -> None:
        """
        Be told of every event once stored (and of events taken over).
        """
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[OutboxEvent], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def pending(self) -> list[OutboxEvent]:
        """
        @return: Once, the undelivered events found by L{load}; later events
            reach the listeners.
        """
        loaded, self._loaded = self._loaded, []
        return loaded

    def emit(self, tenant: str, session_id: str, payload: Mapping[str, Any]) -> str | None:
        """
        Keep an event for the turn's batch; return at once, never raise
        (see L{aiconnect.webhooks.outbox.EventOutbox.emit}).

        @return: The C{eventId}; L{None} if the payload is not JSON.
        """
        try:
            return self._emit(tenant, session_id, payload)
        except Exception:
            self.log.failure(
                "Event outbox bug; event of session {session_id} not stored", tenant=tenant, session_id=session_id
            )
            self.stats["rejected"] += 1
            return None

    def _emit(self, tenant: str, session_id: str, payload: Mapping[str, Any]) -> str | None:
        now = self._reactor.seconds()
        data = dict(payload)
        data.setdefault("sessionId", session_id)
        event_id = data.get("eventId")
        if not isinstance(event_id, str) or not event_id:
            event_id = data["eventId"] = new_id("evt_", now)
        name = str(data.get("event", ""))
        if len(self._buffer) + self._in_flight >= self._max_buffered:
            self.stats["dropped"] += 1
            if not self._dropping:
                self._dropping = True
                self.log.error(
                    "Event outbox: {count} events wait for the database; event {event_id} ({event}) of session"
                    " {session_id} and the next ones are dropped until they are stored",
                    count=self._max_buffered, event_id=event_id, event=name, session_id=session_id,
                )
            return event_id
        key = (tenant, session_id)
        last = self._last_seq.get(key)
        resolved = last is not None
        seq = (last if last is not None else self._unresolved.get(key, 0)) + 1
        data["sequence"] = seq
        try:
            body = encode_body(data)
        except (TypeError, ValueError) as e:
            self.log.error(
                "Event {event_id} ({event}) of session {session_id} is not JSON, not stored: {reason}",
                tenant=tenant, session_id=session_id, event_id=event_id, event=name, reason=str(e),
            )
            self.stats["rejected"] += 1
            return None
        if resolved:
            self._remember_seq(key, seq)
        else:
            self._unresolved[key] = seq
        self._buffer.append(_Emitted(tenant, session_id, event_id, name, data, body, seq, now, resolved))
        self.stats["buffered"] = len(self._buffer) + self._in_flight
        self._schedule(0)
        return event_id

    def _remember_seq(self, key: tuple[str, str], seq: int) -> None:
        remember_seq(self._last_seq, key, seq, SEQ_CACHE)

    def _update(self, event: OutboxEvent, sql: str, args: tuple[Any, ...]) -> None:
        if event.row_id is None:
            return
        self._updates[event.row_id] = (sql, args)
        self._schedule(self._state_delay)

    def mark_delivered(self, event: OutboxEvent, now: float) -> None:
        """
        Record a delivery (written behind).
        """
        self._update(event, _DELIVERED, (now, event.attempts, event.row_id))

    def mark_attempt(self, event: OutboxEvent, error: str) -> None:
        """
        Record a failed attempt and its next time (written behind).
        """
        self._update(event, _ATTEMPT, (event.attempts, event.next_attempt, error, event.row_id))

    def mark_dead(self, event: OutboxEvent, now: float, error: str) -> None:
        """
        Record that an event was given up (written behind).
        """
        self._update(event, _DEAD, (now, event.attempts, error, event.row_id))

    def _other(self, sql: str, args: tuple[Any, ...]) -> None:
        self._others.append((sql, args))
        self._schedule(self._state_delay)

    def disabled_endpoints(self) -> dict[str, tuple[str, str | None]]:
        """
        @return: As L{aiconnect.webhooks.outbox.EventOutbox.disabled_endpoints}
            (read at start, kept up to date by this node).
        """
        return dict(self._disabled)

    def set_disabled(self, tenant: str, callback_url: str, now: float, secret_digest: str | None = None) -> None:
        self._disabled[tenant] = (callback_url, secret_digest)
        self._other(
            "INSERT INTO disabled_endpoints (tenant, callback_url, since, secret_digest) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (tenant) DO UPDATE SET callback_url = excluded.callback_url, since = excluded.since,"
            " secret_digest = excluded.secret_digest",
            (tenant, callback_url, now, secret_digest),
        )

    def clear_disabled(self, tenant: str) -> None:
        self._disabled.pop(tenant, None)
        self._other("DELETE FROM disabled_endpoints WHERE tenant = %s", (tenant,))

    def purge(self, delivered_before: float, dead_before: float) -> int:
        """
        Delete delivered and given-up events older than the given times
        (written behind).

        @return: 0 (the count is not known yet).
        """
        self._other(
            "DELETE FROM events WHERE (delivered IS NOT NULL AND delivered < %s) OR (dead IS NOT NULL AND dead < %s)",
            (delivered_before, dead_before),
        )
        return 0

    def counts(self) -> Deferred[dict[str, int]]:
        """
        @return: This node's stored events by state: C{pending},
            C{delivered}, C{dead} (a L{Deferred}, unlike the SQLite
            outbox's).
        """
        if self._runner is None:
            return succeed({"pending": 0, "delivered": 0, "dead": 0})

        def count(cursor: Cursor) -> dict[str, int]:
            cursor.execute(
                "SELECT count(*) FILTER (WHERE delivered IS NULL AND dead IS NULL),"
                " count(delivered), count(dead) FROM events WHERE owner_node = %s",
                (self.node_id,),
            )
            row = cursor.fetchone()
            return {"pending": int(row[0]), "delivered": int(row[1]), "dead": int(row[2])}

        return self._runner.runInteraction(count)

    # -- batches --

    def _schedule(self, delay: float) -> None:
        """
        Run a batch C{delay} seconds from now (or sooner, as already
        planned); while the database fails, not before C{retry_delay}.
        """
        if self._runner is None or self._flush_queued:
            return
        if self._failing:
            delay = max(delay, self._retry_delay)
        call = self._flush_call
        if call is not None and call.active() and call.getTime() <= self._reactor.seconds() + delay:
            return
        self._flush_call = rearm(self._reactor, call, delay, self._flush)

    def flush(self) -> Deferred[None]:
        """
        Write everything emitted and noted so far now, after any batch in
        flight (the dialog store calls it before it forgets the dialogs of
        a turn: their events are committed first).

        @return: Fires once that batch was written, or failed (it is then
            tried again later).
        """
        if self._runner is None:
            return succeed(None)
        return self._lock.run(self._flush_now, True)

    def _flush(self) -> None:
        self._flush_call = None
        if self._runner is None or self._flush_queued:
            return
        self._flush_queued = True
        self._lock.run(self._flush_now, True)

    def _flush_now(self, again: bool) -> Deferred[None]:
        """
        Write one batch: everything emitted and noted so far.

        @param again: Whether a failure is tried again later.
        """
        self._flush_queued = False
        runner = self._runner
        if runner is None or not (self._buffer or self._updates or self._others):
            return succeed(None)
        batch = _Batch(self._buffer, self._updates, self._others)
        self._buffer, self._updates, self._others = [], {}, []
        self._in_flight = len(batch.events)
        written: Deferred[_Batch] = runner.runInteraction(_write_batch, self.node_id, batch)
        return written.addCallbacks(self._written, self._not_written, errbackArgs=(batch, again))

    def _written(self, batch: _Batch) -> None:
        self._in_flight = 0
        self.stats["batches"] += 1
        if self._failing:
            self._failing = False
            self.log.info("Event outbox: the database works again; events are stored")
        self._dropping = False
        for key in {e.key for e in batch.events if not e.resolved}:
            self._resolve(key, batch.bases.get(key, 0))
        ready = []
        for emitted, event in zip(batch.events, batch.stored):
            if event is None:
                self.log.warn(
                    "Event {event_id} of session {session_id} emitted twice; ignored",
                    tenant=emitted.tenant, session_id=emitted.session_id, event_id=emitted.event_id,
                )
                continue
            ready.append(event)
        self.stats["emitted"] += len(ready)
        self._tell(ready)
        self._after()

    def _resolve(self, key: tuple[str, str], base: int) -> None:
        """
        A session first seen got its last stored number: number its events
        still in memory from it.
        """
        count = self._unresolved.pop(key, None)
        if count is None:
            return
        self._remember_seq(key, base + count)
        for e in self._buffer:
            if e.key == key and not e.resolved:
                e.resolved = True
                if base:
                    e.seq += base
                    e.data["sequence"] = e.seq
                    e.body = encode_body(e.data)

    def _not_written(self, reason: Failure, batch: _Batch, again: bool) -> None:
        self._in_flight = 0
        self.stats["db_errors"] += 1
        self._buffer[:0] = batch.events
        for row_id, state in batch.updates.items():
            self._updates.setdefault(row_id, state)
        self._others[:0] = batch.others
        if not self._failing:
            self._failing = True
            self.log.error(
                "Event outbox: writing to the database failed ({reason}); events are kept in memory (at most"
                " {limit}) and stored when it works again",
                reason=reason.getErrorMessage(), limit=self._max_buffered,
            )
        if again:
            self._after()

    def _after(self) -> None:
        self.stats["buffered"] = len(self._buffer)
        if self._buffer:
            self._schedule(0)
        elif self._updates or self._others:
            self._schedule(self._state_delay)

    def _tell(self, events: Iterable[OutboxEvent]) -> None:
        for event in events:
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:
                    self.log.failure("Event outbox listener failed", event_id=event.event_id)

    # -- takeover --

    def take_over(self, nodes: list[str], now: float) -> Deferred[tuple[list[str], int]]:
        """
        Make the undelivered events of lost nodes this node's and hand them
        to the listeners, in order; in the queue of the batches.

        @param nodes: Nodes whose lease expired (this node is left out).
        @param now: Now: a lease is checked expired again, locked.
        @return: The nodes whose events were taken (a node locked by
            another survivor is skipped: it takes them) and how many
            events.
        """

        def take() -> Deferred[tuple[list[str], int]]:
            if self._runner is None:
                return succeed(([], 0))
            taken: Deferred[Any] = self._runner.runInteraction(_take_over, self.node_id, nodes, now)
            return taken.addCallback(self._taken)

        return self._lock.run(take)

    def _taken(self, result: tuple[list[str], list[OutboxEvent]]) -> tuple[list[str], int]:
        lost, events = result
        if events:
            self.stats["taken_over"] += len(events)
            self.log.info(
                "Event outbox: took over {count} undelivered event(s) of {sessions} session(s) of node(s) {nodes}",
                count=len(events), sessions=len({e.key for e in events}), nodes=", ".join(lost),
            )
            self._tell(events)
        return lost, len(events)
