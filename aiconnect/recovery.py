# -*- test-case-name: tests.test_recovery,tests.test_recovery_group_commit,tests.integration.test_restart -*-
"""
Sessions that outlive their process: a node killed (C{kill -9}, a crash,
the OOM killer) leaves its recording sessions open at the SRC, at every SRS
and at the application. On the next start it ends them (SPEC s14: "A node
that restarts does the same for its own sessions (reason restart): no
session is left open at a peer or at the application").

Pieces:

    - L{DialogStore}: one SQLite table in the event outbox's database
      (C{[events] database}) holding every confirmed dialog of every live
      session: the inbound dialog (leg C{""}) and one row per answered
      forward (leg = the forward id).  On the shared, grouped
      L{aiconnect.webhooks.database.EventDatabase} its changes are
      committed with the turn's events, the last one per dialog.
    - L{DialogJournal}: the L{aiconnect.legs.SessionJournal} of every
      L{aiconnect.runner.CallRunner}: a row is written when a dialog is confirmed
      (inbound: on ACK; forward: on 2xx), rewritten when its CSeq or remote
      target changes, and deleted when the matching event is emitted
      (SIPRECFORWARDSTOPPED, SESSIONCOMPLETED). It never raises into the
      call.
    - L{SessionRecovery}: at start-up, for every session left in the store:
      BYE to the SRC and to each SRS (normal retransmission, nobody waits
      for the answers), C{SIPRECFORWARDSTOPPED} per forward and
      C{SESSIONCOMPLETED}, both with reason C{restart}, through the durable
      outbox (delivered in order after anything the previous run left), and
      the rows deleted (committed at once).  On a node of a cluster the
      same ends, reason C{nodeLost}, the sessions of a lost node
      (L{aiconnect.storage.nodeloss}); there the store is
      L{aiconnect.storage.dialogs.PgDialogStore}.

A stored dialog keeps: Call-ID, tags, From/To, remote target, route set,
local CSeq (plus L{CSEQ_MARGIN} on recovery), transport and peer address,
our Contact and the headers each request carries (a forward's C{X-}
headers); the session its tenant, id and start time; a forward its id,
C{uri}, target and C{sipRecForwardReferenceId}.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from twisted.logger import Logger

from aiconnect import events
from aiconnect.sip.dialog import Dialog
from aiconnect.sip.peer import Peer
from aiconnect.webhooks.database import DatabaseUser, EventDatabase

#: Added to a stored local CSeq before a recovered dialog sends BYE: a
#: request whose stored update was lost (the process died in between)
#: still leaves the BYE's CSeq higher (RFC 3261 s12.2.1.1).
CSEQ_MARGIN = 100
#: The leg name of the inbound dialog.
INBOUND = ""
#: The format of the stored JSON.
RECORD_VERSION = 1
#: Sessions whose dialog changes wait to be written again after failed
#: transactions, at most (more are dropped, logged).
MAX_PENDING = 100_000

#: Noted dialog-store changes: session id -> leg (L{None}: the whole
#: session, deleted before the legs' changes) -> (tenant, JSON record,
#: time) to store, or L{None} to delete.
_Changes = dict[str, dict[str | None, tuple[str, str, float] | None]]

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS live_dialogs (
        session_id TEXT NOT NULL,
        leg TEXT NOT NULL,
        tenant TEXT NOT NULL,
        data TEXT NOT NULL,
        updated REAL NOT NULL,
        PRIMARY KEY (session_id, leg)
    )
    """,
)


@dataclass(frozen=True, slots=True)
class StoredDialog:
    """
    One stored dialog.

    @ivar leg: C{""} for the inbound dialog, else the forward id.
    @ivar record: the JSON object (L{session_record}).
    """

    session_id: str
    leg: str
    tenant: str
    record: dict[str, Any]


@dataclass(slots=True)
class StoredSession:
    """
    The stored dialogs of one session.

    @ivar inbound: the inbound dialog, or C{None}.
    @ivar forwards: the answered forwards' dialogs, in forward id order.
    """

    session_id: str
    tenant: str
    inbound: StoredDialog | None = None
    forwards: list[StoredDialog] = field(default_factory=list)

    @property
    def started(self) -> float | None:
        """
        When the session started (Unix seconds), if stored.
        """
        for dialog in [self.inbound] + list(self.forwards):
            if dialog is not None and isinstance(dialog.record.get("started"), (int, float)):
                return float(dialog.record["started"])
        return None


def split_changes(
    changes: _Changes,
) -> tuple[list[tuple[str]], list[tuple[str, str]], list[tuple[str, str, str, str, float]]]:
    """
    Noted changes as statement rows.

    @return: C{(session_id,)} of the sessions deleted whole, C{(session_id,
        leg)} of the dialogs deleted, C{(session_id, leg, tenant, data,
        updated)} of the dialogs stored.
    """
    sessions: list[tuple[str]] = []
    legs: list[tuple[str, str]] = []
    rows: list[tuple[str, str, str, str, float]] = []
    for session_id, by_leg in changes.items():
        for leg, change in by_leg.items():
            if leg is None:
                sessions.append((session_id,))
            elif change is None:
                legs.append((session_id, leg))
            else:
                rows.append((session_id, leg) + change)
    return sessions, legs, rows


def note_again(pending: _Changes, changes: _Changes, log: Logger) -> None:
    """
    Note again the C{changes} of a failed write in C{pending}, as older than
    everything pending: a newer change of the same dialog, or a newer delete
    of the whole session, wins (at most L{MAX_PENDING} sessions; more are
    dropped, logged).
    """
    for session_id, by_leg in changes.items():
        newer = pending.get(session_id)
        if newer is None:
            if len(pending) >= MAX_PENDING:
                log.error(
                    "dialog store: too many unwritten changes; session_id={session_id} dropped",
                    session_id=session_id,
                )
                continue
            pending[session_id] = dict(by_leg)
        elif None not in newer:
            for leg, change in by_leg.items():
                newer.setdefault(leg, change)


def stored_sessions(rows: Iterable[tuple[str, str, str, str]]) -> list[StoredSession]:
    """
    Stored dialogs grouped by session, in the order of their first row.

    @param rows: C{(session_id, leg, tenant, data)}; data that is not a
        JSON object is an empty record (its session is still ended).
    """
    sessions: dict[str, StoredSession] = {}
    for session_id, leg, tenant, data in rows:
        try:
            record = json.loads(data)
        except ValueError:
            record = {}
        if not isinstance(record, dict):
            record = {}
        stored = sessions.setdefault(session_id, StoredSession(session_id, tenant))
        dialog = StoredDialog(session_id, leg, tenant, record)
        if leg == INBOUND:
            stored.inbound = dialog
        else:
            stored.forwards.append(dialog)
    for stored in sessions.values():
        stored.forwards.sort(key=lambda d: d.leg)
    return list(sessions.values())


class DialogStore(DatabaseUser):
    """
    The C{live_dialogs} table, in the events database
    (L{aiconnect.webhooks.database.EventDatabase}).

    On a grouped database, L{put} and L{delete} only note the change; the
    turn's changes are written just before its commit, the last one per
    dialog (a dialog stored and rewritten in one turn is written once; a
    rewrite followed by the session's end only deletes), with one
    C{executemany} per statement.  Reads (L{load}, L{count}) write the
    noted changes into the open transaction first.  The changes of a
    failed transaction are noted again (older than any change made since)
    and written with the next turn: deletes and rewrites are idempotent.
    Without a grouped database every change is written (and committed) at
    once.

    @ivar on_failure: Called with the reason when noted changes could not
        be written (they are written with the next turn), or L{None}.
    """

    log = Logger()
    closed_message = "the dialog store is closed"

    def __init__(
        self, path: str | EventDatabase, *, clock: Callable[[], float], busy_timeout: float = 0.5
    ) -> None:
        """
        @param path: the database file, or C{":memory:"} (tests): a
            connection of its own, every change committed at once; or the
            shared L{EventDatabase} (its settings apply).
        @param clock: the current Unix time (C{reactor.seconds}).
        @param busy_timeout: seconds a write waits for the outbox's lock
            (for a database of its own).
        @raise sqlite3.Error: the database cannot be opened.
        """
        self._clock = clock
        #: The changes not yet written.
        self._pending: _Changes = {}
        #: What was written into the open transaction, oldest first.
        self._written: list[_Changes] = []
        self.on_failure: Callable[[str], None] | None = None
        self._join(path, self._set_up, "FULL", busy_timeout)

    def _set_up(self, database: EventDatabase) -> None:
        with database.transaction() as db:
            for statement in _SCHEMA:
                db.execute(statement)

    def _changed(self, database: EventDatabase) -> None:
        if database.grouped:
            database.schedule()
        else:
            self.prepare()

    def put(self, session_id: str, leg: str, tenant: str, record: dict[str, Any]) -> None:
        """
        Store (or replace) one dialog.

        @raise sqlite3.Error: the write failed (or the store is closed).
        @raise TypeError: the record is not JSON.
        """
        database = self._events_db()
        data = json.dumps(dict(record, v=RECORD_VERSION), separators=(",", ":"), sort_keys=True)
        self._pending.setdefault(session_id, {})[leg] = (tenant, data, self._clock())
        self._changed(database)

    def delete(self, session_id: str, leg: str | None = None) -> None:
        """
        Forget one dialog, or every dialog of a session (C{leg=None}).

        @raise sqlite3.Error: the write failed (or the store is closed).
        """
        database = self._events_db()
        if leg is None:
            self._pending[session_id] = {None: None}
        else:
            self._pending.setdefault(session_id, {})[leg] = None
        self._changed(database)

    def prepare(self) -> None:
        """
        Write the noted changes into the open transaction
        (L{aiconnect.webhooks.database.TurnParticipant}).

        @raise sqlite3.Error: the write failed; on a grouped database the
            changes are noted again.
        """
        if not self._pending:
            return
        database = self._events_db()
        changes, self._pending = self._pending, {}
        sessions, legs, rows = split_changes(changes)
        if database.grouped:
            self._written.append(changes)
        try:
            database.write_many("DELETE FROM live_dialogs WHERE session_id = ?", sessions)
            database.write_many("DELETE FROM live_dialogs WHERE session_id = ? AND leg = ?", legs)
            database.write_many(
                "INSERT OR REPLACE INTO live_dialogs (session_id, leg, tenant, data, updated) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
        except sqlite3.Error as e:
            if self._written and self._written[-1] is changes:
                # The transaction lives on (a lost one was told through
                # turn_ended): write these again with the next turn.
                self._written.pop()
                self._note_again(changes)
                if self.on_failure is not None:
                    self.on_failure(str(e))
            raise

    def turn_ended(self, committed: bool) -> None:
        """
        After a rolled-back turn, note its changes again
        (L{aiconnect.webhooks.database.TurnParticipant}).
        """
        written, self._written = self._written, []
        if committed:
            return
        for changes in written:
            self._note_again(changes)
        if written and self.on_failure is not None:
            self.on_failure("transaction rolled back")

    def _note_again(self, changes: _Changes) -> None:
        note_again(self._pending, changes, self.log)

    def load(self) -> list[StoredSession]:
        """
        Every stored session, oldest first. A row that is not JSON is
        returned as an empty record (its session is still ended).

        @raise sqlite3.Error: the read failed.
        """
        self.prepare()
        rows = self._events_db().connection().execute(
            "SELECT session_id, leg, tenant, data FROM live_dialogs ORDER BY updated, session_id, leg"
        ).fetchall()
        return stored_sessions(rows)

    def count(self) -> int:
        """
        The number of stored dialogs.
        """
        self.prepare()
        return int(self._events_db().connection().execute("SELECT COUNT(*) FROM live_dialogs").fetchone()[0])


def session_record(session: Any) -> dict[str, Any]:
    """
    What ending an L{aiconnect.sip.ua.InviteSession} later needs: its
    dialog, where requests go, its role, our Contact and the headers each
    request carries.
    """
    peer: Peer = session.peer
    return {
        "dialog": session.dialog.to_record(),
        "role": session.role,
        "contact": session.contact,
        "transport": peer.transport,
        "host": peer.host,
        "port": peer.port,
        "server_name": peer.server_name,
        "extra_headers": [[n, v] for n, v in session.extra_headers],
    }


class DialogJournal:
    """
    The L{aiconnect.legs.SessionJournal} backed by a L{DialogStore}.

    @ivar stats: counters: C{stored} (rows written on confirmation),
        C{updated} (rewritten on a CSeq or target change), C{removed}
        (dialogs forgotten) and C{errors} (failed database writes, logged).
    """

    log = Logger()

    def __init__(self, store: DialogStore) -> None:
        self.store = store
        #: session id -> leg (C{inbound} or a forward id) -> its dialog
        #: (an C{InviteSession}), for the legs stored.
        self._live: dict[str, dict[str, Any]] = {}
        self.stats: dict[str, int] = {"stored": 0, "updated": 0, "removed": 0, "errors": 0}
        store.on_failure = self._store_failed

    def _store_failed(self, reason: str) -> None:
        self.stats["errors"] += 1
        self.log.error(
            "dialog store write failed: {reason}; the changes are written again with the next turn that writes",
            reason=reason,
        )

    def _write(self, what: str, fn: Callable[..., None], *args: Any) -> bool:
        try:
            fn(*args)
        except sqlite3.Error as e:
            self.stats["errors"] += 1
            self.log.error(
                "dialog store {what} failed session_id={session_id}: {reason}",
                what=what,
                session_id=args[0],
                reason=str(e),
            )
            return False
        return True

    def _is_live(self, session_id: str, leg: str) -> bool:
        return leg in self._live.get(session_id, {})

    def _track(self, runner: Any, leg: str, session: Any, extra: dict[str, Any]) -> None:
        session_id = runner.session_id
        tenant = runner.tenant.domain

        def save(counter: str) -> None:
            if not self._is_live(session_id, leg):
                return
            record = dict(session_record(session), **extra)
            if self._write("write", self.store.put, session_id, leg, tenant, record):
                self.stats[counter] += 1

        self._live.setdefault(session_id, {})[leg] = session
        save("stored")
        session.on_dialog_change = lambda _s: save("updated")

    def _untrack(self, session_id: str, leg: str) -> None:
        legs = self._live.get(session_id)
        if legs is None:
            return
        session = legs.pop(leg, None)
        if not legs:
            del self._live[session_id]
        if session is not None:
            session.on_dialog_change = None

    def session_started(self, runner: Any) -> None:
        """
        Store the inbound dialog (the SRC ACKed our 200).
        """
        inbound = runner.inbound
        if inbound is None or inbound.dialog is None:
            return
        call = runner.call
        extra = {"started": call.started, "call_id": call.call_id}
        self._track(runner, INBOUND, inbound, extra)

    def forward_started(self, runner: Any, forward_id: str) -> None:
        """
        Store an answered forward's dialog.
        """
        leg = runner.legs.get(forward_id)
        session = None if leg is None else leg.dialog()
        if session is None:
            return
        call = runner.call
        info = call.forwards[forward_id]
        extra = {
            "started": call.started,
            "forward_id": forward_id,
            "uri": info.uri,
            "target": info.target,
            "reference_id": info.reference_id,
        }
        self._track(runner, forward_id, session, extra)

    def forward_ended(self, runner: Any, forward_id: str) -> None:
        """
        Forget a forward's dialog (its SIPRECFORWARDSTOPPED is emitted).
        """
        session_id = runner.session_id
        if not self._is_live(session_id, forward_id):
            return
        self._untrack(session_id, forward_id)
        if self._write("delete", self.store.delete, session_id, forward_id):
            self.stats["removed"] += 1

    def session_ended(self, runner: Any) -> None:
        """
        Forget every dialog of the session (its SESSIONCOMPLETED is emitted).
        """
        session_id = runner.session_id
        legs = sorted(self._live.get(session_id, {}))
        if not legs:
            return
        for leg in legs:
            self._untrack(session_id, leg)
        if self._write("delete", self.store.delete, session_id, None):
            self.stats["removed"] += len(legs)


class SessionRecovery:
    """
    Ends sessions whose node is gone: at start-up those a previous run of
    this node left open (reason C{restart}), or, on PostgreSQL, those of a
    lost node this node claimed (reason C{nodeLost},
    L{aiconnect.storage.nodeloss}).

    @ivar reason: The C{SESSIONCOMPLETED} reason, also the C{stoppedBy} and
        C{reason} of each C{SIPRECFORWARDSTOPPED}.
    @ivar stats: counters: C{sessions} (ended), C{byes} (BYEs sent),
        C{bad_records} (dialogs that could not be rebuilt: no BYE, the
        events are still sent) and C{errors} (the store failed).
    """

    log = Logger()

    def __init__(self, reactor: Any, store: Any, ua: Any, sink: Any, reason: str = events.COMPLETED_RESTART) -> None:
        """
        @param reactor: IReactorTime (event times).
        @param store: the L{DialogStore}, or another store with its
            C{load}, C{delete} and C{flush}
            (L{aiconnect.storage.dialogs.PgDialogStore}).
        @param ua: the L{aiconnect.sip.ua.UserAgent} (listening already).
        @param sink: the event sink (the durable outbox).
        @param reason: C{restart} or C{nodeLost}.
        """
        self._reactor = reactor
        self.store = store
        self.ua = ua
        self.sink = sink
        self.reason = reason
        self.stats: dict[str, int] = {"sessions": 0, "byes": 0, "bad_records": 0, "errors": 0}

    def recover(self) -> int:
        """
        End every session the store's L{load} gives (L{end}).

        @return: how many sessions were ended.
        """
        try:
            sessions = self.store.load()
        except sqlite3.Error as e:
            self.stats["errors"] += 1
            self.log.error("cannot read the sessions left by the previous run: {reason}", reason=str(e))
            return 0
        return self.end(sessions, "left open by the previous run")

    def end(self, sessions: list[StoredSession], whose: str) -> int:
        """
        End stored sessions: BYE to the SRC and to each SRS,
        SIPRECFORWARDSTOPPED per forward and SESSIONCOMPLETED, with
        L{reason}; then forget them.

        @param whose: Said in the log line (C{"left open by the previous
            run"}).
        @return: how many sessions were ended.
        """
        for stored in sessions:
            self._end(stored)
        if sessions:
            # The events and the deletes now, not at the end of the turn:
            # the reactor may not be running yet.
            self.store.flush()
            self.log.info("ended {count} session(s) {whose}", count=len(sessions), whose=whose)
        return len(sessions)

    def _end(self, stored: StoredSession) -> None:
        now = self._reactor.seconds()
        sid, tenant = stored.session_id, stored.tenant
        if stored.inbound is not None:
            self._bye(stored.inbound)
        for fwd in stored.forwards:
            self._bye(fwd)
            record = fwd.record
            self.sink.emit(
                tenant,
                sid,
                events.siprec_forward_stopped(
                    sid,
                    tenant=tenant,
                    forward_id=fwd.leg,
                    uri=str(record.get("uri") or ""),
                    target=record.get("target") if isinstance(record.get("target"), str) else None,
                    stopped_by=self.reason,
                    reason=self.reason,
                    reference_id=record.get("reference_id"),
                    now=now,
                ),
            )
        started = stored.started
        self.sink.emit(
            tenant,
            sid,
            events.session_completed(
                sid,
                tenant=tenant,
                reason=self.reason,
                duration=max(0.0, now - started) if started is not None else 0.0,
                now=now,
            ),
        )
        self.stats["sessions"] += 1
        self.log.info(
            "session ended ({reason}) session_id={session_id} forwards={forwards}",
            reason=self.reason,
            session_id=sid,
            forwards=len(stored.forwards),
        )
        try:
            self.store.delete(sid)
        except sqlite3.Error as e:
            self.stats["errors"] += 1
            self.log.error("cannot forget recovered session_id={session_id}: {reason}", session_id=sid, reason=str(e))

    def _bye(self, stored: StoredDialog) -> None:
        record = stored.record
        try:
            dialog = Dialog.from_record(record["dialog"], cseq_margin=CSEQ_MARGIN)
            peer = Peer(
                str(record["transport"]),
                str(record["host"]),
                int(record["port"]),
                server_name=record.get("server_name"),
            )
            extra = [(str(n), str(v)) for n, v in record.get("extra_headers", [])]
            session = self.ua.restore_session(dialog, peer, str(record["role"]), str(record.get("contact") or ""), extra)
        except (KeyError, TypeError, ValueError) as e:
            self.stats["bad_records"] += 1
            self.log.error(
                "stored dialog not usable session_id={session_id} leg={leg}: {reason}; no BYE sent",
                session_id=stored.session_id,
                leg=stored.leg or "inbound",
                reason=repr(e),
            )
            return
        session.bye()
        self.stats["byes"] += 1


__all__ = [
    "CSEQ_MARGIN",
    "DialogJournal",
    "DialogStore",
    "SessionRecovery",
    "StoredDialog",
    "StoredSession",
    "note_again",
    "session_record",
    "split_changes",
    "stored_sessions",
]
