# -*- test-case-name: tests.storage.test_dialogs,tests.storage.test_nodeloss -*-
"""
The dialogs of live sessions in PostgreSQL (SPEC s14, docs/storage.md
"Node loss"): the C{live_dialogs} table (schema version 2), one row per
confirmed dialog as in the single node's SQLite table
(L{aiconnect.recovery.DialogStore}), plus C{owner_node}, the node that
ends the session if its owner is gone.

L{PgDialogStore} is what L{aiconnect.recovery.DialogJournal} writes to and
L{aiconnect.recovery.SessionRecovery} reads from on a node of a cluster:
write-behind, one transaction per reactor turn in the adbapi pool (the call
never waits), one batch in flight at a time (so the changes are written in
order); a failed batch is noted again (older than anything noted since)
and retried after L{RETRY_DELAY}.

Claims (who ends which sessions) are serialised by the lost node's lease
row: L{claim_lost} locks it (C{FOR UPDATE SKIP LOCKED}, only while it is
still expired) before it moves that node's dialogs to the claimer, and a
starting node renews its own lease (L{take_left}) before it reads the
dialogs its previous run left.  So every dialog, and every session whole,
goes to exactly one node.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from aiconnect.recovery import (
    RECORD_VERSION,
    StoredSession,
    _Changes,
    note_again,
    split_changes,
    stored_sessions,
)
from aiconnect.storage.nodes import _renew
from aiconnect.storage.sql import Cursor, Runner

__all__ = ["RETRY_DELAY", "PgDialogStore", "claim_lost", "take_left"]

#: Seconds before a failed batch is written again.
RETRY_DELAY = 1.0

_COLUMNS = "session_id, leg, tenant, data"


def _apply(cursor: Any, changes: _Changes, node_id: str) -> None:
    sessions, legs, rows = split_changes(changes)
    if sessions:
        cursor.execute("DELETE FROM live_dialogs WHERE session_id = ANY(%s)", ([s for (s,) in sessions],))
    if legs:
        cursor.executemany("DELETE FROM live_dialogs WHERE session_id = %s AND leg = %s", legs)
    if rows:
        # The owner stays: a row a survivor claimed is not taken back.
        cursor.executemany(
            "INSERT INTO live_dialogs (session_id, leg, tenant, data, updated, owner_node)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (session_id, leg) DO UPDATE"
            " SET tenant = excluded.tenant, data = excluded.data, updated = excluded.updated",
            [row + (node_id,) for row in rows],
        )


def take_left(cursor: Cursor, node_id: str, api_url: str, now: float, lease: float) -> list[StoredSession]:
    """
    At start (before anything listens): renew this node's lease, then read
    the dialogs its previous run left (every row it owns now).  The lease
    row's lock waits for a survivor claiming them (L{claim_lost}) and,
    once committed, keeps every later claimer away.

    @return: The sessions to end (reason C{restart}), oldest first.
    """
    _renew(cursor, node_id, api_url, now, now + lease)
    cursor.execute(f"SELECT {_COLUMNS} FROM live_dialogs WHERE owner_node = %s ORDER BY updated, session_id, leg", (node_id,))
    return stored_sessions(cursor.fetchall())


def claim_lost(cursor: Cursor, lost: list[str], node_id: str, now: float) -> dict[str, list[StoredSession]]:
    """
    Take over the sessions of lost nodes, in one transaction: lock each
    lost node's lease row while it is still expired (skipped if another
    survivor holds it: that one is claiming), move its dialogs to
    C{node_id} and release its directory rows.

    @param lost: The lost nodes (from L{aiconnect.storage.nodes.NodeLeases.expired}).
    @return: Lost node -> its sessions (for the nodes that had any).
    """
    claimed: dict[str, list[StoredSession]] = {}
    for lost_id in lost:
        cursor.execute(
            "SELECT node_id FROM node_leases WHERE node_id = %s AND expires <= %s FOR UPDATE SKIP LOCKED", (lost_id, now)
        )
        if cursor.fetchone() is None:
            continue
        cursor.execute(
            f"UPDATE live_dialogs SET owner_node = %s WHERE owner_node = %s RETURNING {_COLUMNS}, updated", (node_id, lost_id)
        )
        rows = sorted(cursor.fetchall(), key=lambda r: (r[4], r[0], r[1]))
        cursor.execute("DELETE FROM session_directory WHERE node_id = %s", (lost_id,))
        if rows:
            claimed[lost_id] = stored_sessions(r[:4] for r in rows)
    return claimed


class PgDialogStore:
    """
    The dialog store of a node of a cluster (module docstring): the
    interface of L{aiconnect.recovery.DialogStore} (C{put}, C{delete},
    C{load}, C{flush}, C{close}, C{on_failure}) on the pool.

    Its writes wait for L{open}; L{load} gives, once, the sessions the
    previous run left (read at start by L{take_left}).

    @ivar on_failure: Called with the reason when a batch failed (it is
        written again), or L{None}.
    @ivar stats: C{batches} (written), C{failures} (failed batches).
    """

    log = Logger()

    def __init__(self, node_id: str, reactor: Any, *, before_write: Callable[[], object] | None = None) -> None:
        """
        @param node_id: This node (C{owner_node} of its rows).
        @param reactor: IReactorTime (write times, the batches' turns).
        @param before_write: Called before each batch starts (the outbox's
            flush: the events of a turn are committed before its dialogs
            are forgotten), or L{None}.
        """
        self.node_id = node_id
        self._reactor = reactor
        self._before_write = before_write
        self._runner: Runner | None = None
        self._pending: _Changes = {}
        self._call: IDelayedCall | None = None
        self._writing: Deferred[None] | None = None
        self._idle: list[Deferred[None]] = []
        self._left: list[StoredSession] = []
        self.on_failure: Callable[[str], None] | None = None
        self.stats = {"batches": 0, "failures": 0}

    def open(self, runner: Runner, left: list[StoredSession]) -> None:
        """
        Start writing through C{runner} (the pool).

        @param left: What L{take_left} read at start.
        """
        self._runner = runner
        self._left = left
        self._schedule()

    def close(self) -> None:
        """
        Stop writing (after L{drained}); what is still noted is dropped.
        """
        self._runner = None
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def put(self, session_id: str, leg: str, tenant: str, record: dict[str, Any]) -> None:
        """
        Note one dialog to store (or replace).

        @raise TypeError: The record is not JSON.
        """
        data = json.dumps(dict(record, v=RECORD_VERSION), separators=(",", ":"), sort_keys=True)
        self._pending.setdefault(session_id, {})[leg] = (tenant, data, self._reactor.seconds())
        self._schedule()

    def delete(self, session_id: str, leg: str | None = None) -> None:
        """
        Note one dialog, or every dialog of a session (C{leg=None}), to
        forget.
        """
        if leg is None:
            self._pending[session_id] = {None: None}
        else:
            self._pending.setdefault(session_id, {})[leg] = None
        self._schedule()

    def load(self) -> list[StoredSession]:
        """
        @return: The sessions the previous run left (once; then none).
        """
        left, self._left = self._left, []
        return left

    def flush(self) -> bool:
        """
        Start writing what is noted now (not at the end of the turn).
        """
        self._write()
        return True

    def drained(self) -> Deferred[None]:
        """
        @return: Fires once everything noted so far is written (or failed
            with the store closed).
        """
        self._write()
        if self._writing is None and (not self._pending or self._runner is None):
            return succeed(None)
        waiting: Deferred[None] = Deferred()
        self._idle.append(waiting)
        return waiting

    def _schedule(self, delay: float = 0.0) -> None:
        if self._call is None and self._writing is None and self._pending and self._runner is not None:
            self._call = self._reactor.callLater(delay, self._write)

    def _write(self) -> None:
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None
        runner = self._runner
        if self._writing is not None or not self._pending or runner is None:
            return
        changes, self._pending = self._pending, {}
        # The events of the turn first (they may be asynchronous: the
        # PostgreSQL outbox), then the dialogs.
        before = maybeDeferred(self._before_write) if self._before_write is not None else succeed(None)
        writing = self._writing = before.addCallback(lambda _: runner.runInteraction(_apply, changes, self.node_id))
        writing.addCallbacks(self._written, self._failed, errbackArgs=(changes,))

    def _written(self, _: object) -> None:
        self._writing = None
        self.stats["batches"] += 1
        self._settled(0.0)

    def _failed(self, reason: Failure, changes: _Changes) -> None:
        self._writing = None
        self.stats["failures"] += 1
        note_again(self._pending, changes, self.log)
        message = reason.getErrorMessage()
        if self.on_failure is not None:
            self.on_failure(message)
        else:
            self.log.error("dialog store write failed: {reason}; written again in {delay:g} s", reason=message, delay=RETRY_DELAY)
        self._settled(RETRY_DELAY)

    def _settled(self, delay: float) -> None:
        if self._pending and self._runner is not None:
            if delay == 0.0 or not self._idle:
                self._schedule(delay)
                return
        idle, self._idle = self._idle, []
        for waiting in idle:
            waiting.callback(None)
        self._schedule(delay)
