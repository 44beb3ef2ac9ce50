#!/usr/bin/env python3
"""
CPU cost per event of the event outbox: SQLite (the single node's,
group commit) against PostgreSQL (L{aiconnect.storage.outbox}, a server of
its own started like the tests' fixture on 127.0.0.1).

Each run emits N events in turns of K events (K sessions, each emitting
one event per turn: a busy node's turn), every event is "delivered" as
soon as the outbox tells its listener (C{mark_delivered}), and the run
ends when the database holds every event marked delivered.  It prints the
process CPU (every thread: the reactor and, for PostgreSQL, the pool's)
and the reactor thread's CPU, per event, and the transactions per event.
The PostgreSQL server's own CPU (another process) is not counted.

    .venv/bin/python bench/outbox_pg.py [--events 20000] [--per-turn 1 10 50] [--interval 0.002]

With turns back to back (the default), a PostgreSQL batch still in flight
collects the next turns' events (one batch at a time); C{--interval}
spaces the turns so that each is a batch of its own (the worst case).

Bounded: each run stops after 120 s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

from common import use_repository

use_repository()

LIMIT = 120.0


def drive(outbox: Any, events: int, per_turn: int, done: Any, transactions: Any, interval: float) -> tuple[float, float, float]:
    """
    Emit and deliver; run the reactor until C{done()}.

    @return: Process CPU and reactor-thread CPU per event (ms), and
        transactions per event.
    """
    from twisted.internet import reactor

    outbox.add_listener(lambda event: outbox.mark_delivered(event, reactor.seconds()))
    sent = [0]
    start: list[float] = []

    def turn() -> None:
        if not start:
            start.extend((time.process_time(), time.thread_time(), transactions()))
        for n in range(min(per_turn, events - sent[0])):
            outbox.emit("t.example", f"s{n}", {"event": "SESSIONSTARTED", "timestamp": "2026-01-01T00:00:00Z"})
        sent[0] += per_turn
        if sent[0] < events:
            reactor.callLater(interval, turn)
        else:
            reactor.callLater(0, check)

    deadline = time.monotonic() + LIMIT
    result: list[tuple[float, float, float]] = []

    def check() -> None:
        if done() or time.monotonic() > deadline:
            process, thread, count = time.process_time() - start[0], time.thread_time() - start[1], transactions() - start[2]
            result.append((process * 1000 / events, thread * 1000 / events, count / events))
            reactor.stop()
            return
        reactor.callLater(0.01, check)

    reactor.callLater(0, turn)
    reactor.run()
    return result[0]


def sqlite(events: int, per_turn: int, interval: float) -> tuple[float, float, float]:
    from twisted.internet import reactor

    from aiconnect.webhooks.database import EventDatabase
    from aiconnect.webhooks.outbox import EventOutbox

    database = EventDatabase(tempfile.mkdtemp(prefix="aiconnect-bench-") + "/events.sqlite", reactor=reactor)
    outbox = EventOutbox(database, clock=reactor.seconds)

    def done() -> bool:
        outbox.prepare()
        return outbox.counts()["delivered"] == events

    return drive(outbox, events, per_turn, done, lambda: database.stats["commits"], interval)


def postgresql(events: int, per_turn: int, url: str, interval: float) -> tuple[float, float, float]:
    import psycopg
    from twisted.internet import reactor

    from aiconnect.storage.outbox import PostgresOutbox
    from aiconnect.storage.pool import connect_pool

    pool = connect_pool(url, reactor)
    outbox = PostgresOutbox("bench", reactor)
    outbox.attach(pool)
    check = psycopg.connect(url, autocommit=True)
    last = [0.0]

    def done() -> bool:
        now = time.monotonic()
        if now - last[0] < 0.1:
            return False
        last[0] = now
        return check.execute("SELECT count(delivered) FROM events").fetchone()[0] == events

    try:
        return drive(outbox, events, per_turn, done, lambda: outbox.stats["batches"], interval)
    finally:
        # The pool closed with the reactor.
        check.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--per-turn", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--interval", type=float, default=0.0, help="seconds between two turns (0: back to back)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.backend:
        # One run per process (the reactor runs once).
        per_turn = args.per_turn[0]
        figures = (
            sqlite(args.events, per_turn, args.interval)
            if args.backend == "sqlite"
            else postgresql(args.events, per_turn, args.url, args.interval)
        )
        print(*figures)
        return
    import subprocess
    import sys

    from aiconnect.storage.schema import migrate
    from tests.storage.pgserver import shared_server
    from aiconnect.storage.cluster import _Blocking, _result

    server = shared_server()
    print(
        f"{args.events} events, turns {args.interval * 1000:g} ms apart, delivered as soon as stored;"
        " CPU per event in ms (this process: every thread, and the reactor thread)"
    )
    print(f"{'backend':<11} {'per turn':>8} {'process':>8} {'reactor':>8} {'tx/event':>9}")
    for per_turn in args.per_turn:
        for backend in ("sqlite", "postgresql"):
            url = ""
            if backend == "postgresql":
                name = server.create_database()
                url = server.url(name)
                with server.connect(name) as connection:
                    _result(migrate(_Blocking(connection), now=0.0, node_id="bench"))  # type: ignore[arg-type]
            done = subprocess.run(
                [sys.executable, __file__, "--backend", backend, "--events", str(args.events), "--per-turn", str(per_turn),
                 "--url", url, "--interval", str(args.interval)], capture_output=True, text=True, timeout=LIMIT + 30, check=False,
            )
            if done.returncode:
                raise SystemExit(f"{backend} run failed: {done.stderr[-2000:]}")
            out = done.stdout.split()
            process, reactor_ms, tx = map(float, out[-3:])
            print(f"{backend:<11} {per_turn:>8} {process:>8.3f} {reactor_ms:>8.3f} {tx:>9.3f}")


if __name__ == "__main__":
    main()
