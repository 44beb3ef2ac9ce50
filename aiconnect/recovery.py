# -*- test-case-name: tests.test_recovery,tests.integration.test_restart -*-
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
      forward (leg = the forward id).
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
      the rows deleted.

A stored dialog keeps: Call-ID, tags, From/To, remote target, route set,
local CSeq (plus L{CSEQ_MARGIN} on recovery), transport and peer address,
our Contact and the headers each request carries (a forward's C{X-}
headers); the session its tenant, id and start time; a forward its id,
C{uri}, target and C{sipRecForwardReferenceId}.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.logger import Logger

from aiconnect import events
from aiconnect.sip.dialog import Dialog
from aiconnect.sip.peer import Peer
from aiconnect.webhooks.outbox import MEMORY_DATABASE

#: Added to a stored local CSeq before a recovered dialog sends BYE: a
#: request whose stored update was lost (the process died in between)
#: still leaves the BYE's CSeq higher (RFC 3261 s12.2.1.1).
CSEQ_MARGIN = 100
#: The leg name of the inbound dialog.
INBOUND = ""
#: The format of the stored JSON.
RECORD_VERSION = 1

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


class DialogStore:
    """
    The C{live_dialogs} table (in the event outbox's SQLite file; WAL, one
    short transaction per write).
    """

    def __init__(self, path: str, *, clock: Callable[[], float], busy_timeout: float = 0.5) -> None:
        """
        @param path: the database file, or C{":memory:"} (tests).
        @param clock: the current Unix time (C{reactor.seconds}).
        @param busy_timeout: seconds a write waits for the outbox's lock.
        @raise sqlite3.Error: the database cannot be opened.
        """
        if path != MEMORY_DATABASE:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self._clock = clock
        self._db: sqlite3.Connection | None = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout)
        self._db.execute("PRAGMA journal_mode=WAL")
        for statement in _SCHEMA:
            self._db.execute(statement)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.ProgrammingError("the dialog store is closed")
        return self._db

    def put(self, session_id: str, leg: str, tenant: str, record: dict[str, Any]) -> None:
        """
        Store (or replace) one dialog.

        @raise sqlite3.Error: the write failed.
        """
        data = json.dumps(dict(record, v=RECORD_VERSION), separators=(",", ":"), sort_keys=True)
        self._conn().execute(
            "INSERT OR REPLACE INTO live_dialogs (session_id, leg, tenant, data, updated) VALUES (?, ?, ?, ?, ?)",
            (session_id, leg, tenant, data, self._clock()),
        )

    def delete(self, session_id: str, leg: str | None = None) -> None:
        """
        Forget one dialog, or every dialog of a session (C{leg=None}).

        @raise sqlite3.Error: the write failed.
        """
        if leg is None:
            self._conn().execute("DELETE FROM live_dialogs WHERE session_id = ?", (session_id,))
        else:
            self._conn().execute("DELETE FROM live_dialogs WHERE session_id = ? AND leg = ?", (session_id, leg))

    def load(self) -> list[StoredSession]:
        """
        Every stored session, oldest first. A row that is not JSON is
        returned as an empty record (its session is still ended).

        @raise sqlite3.Error: the read failed.
        """
        rows = self._conn().execute(
            "SELECT session_id, leg, tenant, data FROM live_dialogs ORDER BY updated, session_id, leg"
        ).fetchall()
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

    def count(self) -> int:
        """
        The number of stored dialogs.
        """
        return int(self._conn().execute("SELECT COUNT(*) FROM live_dialogs").fetchone()[0])

    def close(self) -> None:
        """
        Close the database.
        """
        if self._db is not None:
            self._db.close()
            self._db = None


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
    Ends, at start-up, the sessions a previous run of this node left open.

    @ivar stats: counters: C{sessions} (ended), C{byes} (BYEs sent),
        C{bad_records} (dialogs that could not be rebuilt: no BYE, the
        events are still sent) and C{errors} (the store failed).
    """

    log = Logger()

    def __init__(self, reactor: Any, store: DialogStore, ua: Any, sink: Any) -> None:
        """
        @param reactor: IReactorTime (event times).
        @param store: the L{DialogStore}.
        @param ua: the L{aiconnect.sip.ua.UserAgent} (listening already).
        @param sink: the event sink (the durable outbox).
        """
        self._reactor = reactor
        self.store = store
        self.ua = ua
        self.sink = sink
        self.stats: dict[str, int] = {"sessions": 0, "byes": 0, "bad_records": 0, "errors": 0}

    def recover(self) -> int:
        """
        End every stored session: BYE to the SRC and to each SRS,
        SIPRECFORWARDSTOPPED per forward and SESSIONCOMPLETED, reason
        C{restart}; then forget it.

        @return: how many sessions were ended.
        """
        try:
            sessions = self.store.load()
        except sqlite3.Error as e:
            self.stats["errors"] += 1
            self.log.error("cannot read the sessions left by the previous run: {reason}", reason=str(e))
            return 0
        for stored in sessions:
            self._end(stored)
        if sessions:
            self.log.info("ended {count} session(s) left open by the previous run", count=len(sessions))
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
                    stopped_by=events.STOPPED_BY_RESTART,
                    reason=events.STOPPED_BY_RESTART,
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
                reason=events.COMPLETED_RESTART,
                duration=max(0.0, now - started) if started is not None else 0.0,
                now=now,
            ),
        )
        self.stats["sessions"] += 1
        self.log.info(
            "session ended after restart session_id={session_id} forwards={forwards}",
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
    "session_record",
]
