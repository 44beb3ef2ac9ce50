#!/usr/bin/env python3
"""
SQLite work per forwarded call (issue 12): the event outbox and the
restart-recovery dialog store, driven the way one forwarded call drives
them, reactor turn by reactor turn; print a table.

    .venv/bin/python bench/store.py [--calls 2000]

One forwarded call writes, turn by turn (what the server does; with
concurrent calls a turn may hold more than one call's writes, which only
helps group commit):

    1. ACK from the SRC: SESSIONSTARTED, the inbound dialog stored;
    2. 2xx from the SRS: SIPRECFORWARDSTARTED, the forward's dialog stored;
    3. BYE from the SRC: the BYE to the SRS raises the forward's CSeq
       (its dialog stored again);
    4. 200 from the SRS: SIPRECFORWARDSTOPPED and SESSIONCOMPLETED, the
       forward's dialog and the session's dialogs deleted;
    5-8. each event's HTTP answer, one per turn: marked delivered.

It counts, at the SQLite boundary (the connections' trace callbacks), the
statements executed and the transactions committed per call, and times
the calls (perf_counter, µs per call and per event).  It runs whichever
code its repository holds: on code before the events database existed
(tag C{i12-base}) the outbox and the dialog store each have their own
connection and commit each statement; copy this file into such a
checkout's C{bench/} to measure it (its C{common.py} puts that checkout
first on C{sys.path}).  A turn's end is a L{Clock} advance (the flush's
C{callLater(0)}).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from common import use_repository

use_repository()

TENANT = "bench.example"


class Counter:
    """
    Statements and transactions seen by the trace callbacks of one or more
    connections (a write outside an explicit transaction is one).
    """

    def __init__(self) -> None:
        self.statements = 0
        self.transactions = 0
        self._open: set[int] = set()

    def watch(self, db: sqlite3.Connection) -> None:
        key = id(db)

        def traced(sql: str) -> None:
            verb = sql.lstrip().split(None, 1)[0].upper()
            if verb == "BEGIN":
                self._open.add(key)
            elif verb in ("COMMIT", "END"):
                self._open.discard(key)
                self.transactions += 1
            elif verb == "ROLLBACK":
                self._open.discard(key)
            else:
                self.statements += 1
                if verb != "SELECT" and key not in self._open:
                    self.transactions += 1

        db.set_trace_callback(traced)


def open_stores(path: str, clock: Any) -> tuple[Any, Any, list[sqlite3.Connection], str]:
    """
    @return: The outbox, the dialog store, their connections and which
        code this is.
    """
    from aiconnect.recovery import DialogStore
    from aiconnect.webhooks import EventOutbox

    try:
        from aiconnect.webhooks.database import EventDatabase
    except ImportError:
        outbox = EventOutbox(path, clock=clock.seconds)
        store = DialogStore(path, clock=clock.seconds)
        return outbox, store, [outbox._db, store._db], "per statement (i12-base)"
    database = EventDatabase(path, reactor=clock)
    outbox = EventOutbox(database, clock=clock.seconds)
    store = DialogStore(database, clock=clock.seconds)
    return outbox, store, [database.connection()], "group commit"


def dialog_record(call_id: str, seq: int) -> dict[str, Any]:
    """
    @return: A stored dialog the size of a real one.
    """
    return {
        "dialog": {
            "call_id": call_id,
            "local_tag": "as8f7a6sd",
            "remote_tag": "98s7df6",
            "local_header": "<sip:recorder@customer.example.com>;tag=as8f7a6sd",
            "remote_header": "<sip:2000@example.com>;tag=98s7df6",
            "remote_target": "sip:2000@192.0.2.10:5060",
            "route_set": [],
            "local_seq": seq,
            "secure": False,
            "invite_cseq": 101,
        },
        "role": "uas",
        "contact": "<sip:127.0.0.1:5060>",
        "transport": "udp",
        "host": "192.0.2.10",
        "port": 5060,
        "server_name": None,
        "extra_headers": [["X-Correlation-Id", "a3b47c1e"]],
        "started": 1700000000.0,
    }


def one_call(n: int, outbox: Any, store: Any, clock: Any) -> float:
    """
    Drive one call's writes; @return: the seconds spent in emit.
    """
    from aiconnect import events

    sid = "ses_%d" % n
    fwd = "fwd_%d" % n
    now = 1700000000.0
    delivered: list[Any] = []
    outbox.add_listener(delivered.append)
    t0 = time.perf_counter()
    outbox.emit(TENANT, sid, events.session_started(sid, tenant=TENANT, call_id="c%d" % n, from_uri="sip:a@src", to_uri="sip:b@srs", now=now))
    emit = time.perf_counter() - t0
    store.put(sid, "", TENANT, dialog_record("c%d" % n, 1))
    clock.advance(0)
    t0 = time.perf_counter()
    outbox.emit(TENANT, sid, events.siprec_forward_started(sid, tenant=TENANT, forward_id=fwd, uri="sip:ai@x", target="198.51.100.7:5080", codec="PCMU", srtp=False, now=now))
    emit += time.perf_counter() - t0
    store.put(sid, fwd, TENANT, dialog_record("f%d" % n, 300))
    clock.advance(0)
    store.put(sid, fwd, TENANT, dialog_record("f%d" % n, 301))
    clock.advance(0)
    t0 = time.perf_counter()
    outbox.emit(TENANT, sid, events.siprec_forward_stopped(sid, tenant=TENANT, forward_id=fwd, uri="sip:ai@x", target="198.51.100.7:5080", stopped_by="inboundBye", reason="inboundBye", now=now))
    store.delete(sid, fwd)
    outbox.emit(TENANT, sid, events.session_completed(sid, tenant=TENANT, reason="inboundBye", duration=1.0, now=now))
    emit += time.perf_counter() - t0
    store.delete(sid)
    clock.advance(0)
    outbox.remove_listener(delivered.append)
    for event in delivered:
        outbox.mark_delivered(event, now)
        clock.advance(0)
    return emit


def run(calls: int) -> tuple[str, float, float, float, float, float]:
    from twisted.internet.task import Clock

    directory = tempfile.mkdtemp(prefix="aiconnect-bench-store-", dir=os.path.dirname(os.path.abspath(__file__)))
    try:
        clock = Clock()
        outbox, store, connections, mode = open_stores(str(Path(directory) / "events.sqlite3"), clock)
        counter = Counter()
        for db in connections:
            counter.watch(db)
        for n in range(50):
            one_call(-n - 1, outbox, store, clock)
        counter.statements = counter.transactions = 0
        emit = 0.0
        t0, c0 = time.perf_counter(), time.process_time()
        for n in range(calls):
            emit += one_call(n, outbox, store, clock)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
        outbox.close()
        store.close()
        per_call = (counter.statements / calls, counter.transactions / calls, 1e6 * total / calls, 1e6 * cpu / calls)
        return (mode,) + per_call + (1e6 * emit / (4 * calls),)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    mode, statements, transactions, us_call, cpu_call, us_emit = run(args.calls)
    print("| commits | calls | statements/call | transactions/call | µs/call | CPU-µs/call | µs/emit |")
    print("|---|---|---|---|---|---|---|")
    print("| %s | %d | %.1f | %.1f | %.0f | %.0f | %.0f |" % (mode, args.calls, statements, transactions, us_call, cpu_call, us_emit))
    print("(%s, nproc=%d; the database on %s)" % (time.strftime("%Y-%m-%d"), os.cpu_count() or 0, os.path.dirname(os.path.abspath(__file__))))


if __name__ == "__main__":
    main()
