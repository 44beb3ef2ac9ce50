#!/usr/bin/env python3
"""
Event outbox and delivery benchmark: emit N sessions x 4 events into the
SQLite outbox, then deliver them, signed, to an HTTP receiver running in a
separate process on 127.0.0.1; print a table.

    .venv/bin/python bench/events.py [--sessions 500 1000]

Bounded: every run stops after 120 s whatever happened.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from common import use_repository

use_repository()

RECEIVER = textwrap.dedent(
    """
    import sys
    from twisted.internet import reactor
    from twisted.web import resource, server

    class R(resource.Resource):
        isLeaf = True

        def render_POST(self, request):
            request.content.read()
            return b""

    reactor.listenTCP(int(sys.argv[1]), server.Site(R()), interface="127.0.0.1")
    reactor.run()
    """
)


def run(n_sessions: int) -> tuple[float, float, int, float]:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater
    from twisted.web.client import Agent, HTTPConnectionPool
    from treq.client import HTTPClient

    from aiconnect import events
    from aiconnect.config import load_string
    from aiconnect.webhooks import EventDeliverer, EventOutbox, tenants_by_domain
    from tests.integration.helpers import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    try:
        time.sleep(1.0)
        cfg = load_string(
            '[[tenant]]\ndomain = "bench.example"\ncallback_url = "http://127.0.0.1:%d"\n'
            'signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"\n' % port
        )
        outbox = EventOutbox(str(Path(tempfile.mkdtemp()) / "outbox.sqlite3"), clock=reactor.seconds)
        total = n_sessions * 4
        t0 = time.perf_counter()
        for s in range(n_sessions):
            for _ in range(4):
                outbox.emit("bench.example", "ses_%d" % s, events.session_completed("ses_%d" % s, tenant="bench.example", reason="inboundBye", duration=1.0, now=1700000000.0))
        emit_us = 1e6 * (time.perf_counter() - t0) / total
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 32
        deliverer = EventDeliverer(reactor, outbox, tenants_by_domain(cfg.tenants), http_client=HTTPClient(Agent(reactor, pool=pool)))
        result: list[float] = []

        async def drive() -> None:
            t1 = time.perf_counter()
            deliverer.start()
            while deliverer.stats["delivered"] < total and time.perf_counter() - t1 < 120:
                await deferLater(reactor, 0.05, lambda: None)
            result.append(time.perf_counter() - t1)
            deliverer.stop()
            await pool.closeCachedConnections()

        from twisted.internet import defer

        d = defer.ensureDeferred(drive())
        d.addBoth(lambda _: reactor.callLater(0, reactor.stop))
        reactor.run()
        delivered = deliverer.stats["delivered"]
        outbox.close()
        return emit_us, result[0], delivered, delivered / result[0]
    finally:
        proc.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=500)
    args = parser.parse_args()
    emit_us, secs, delivered, rate = run(args.sessions)
    print("| sessions | events | emit µs/event | delivered | seconds | events/s |")
    print("|---|---|---|---|---|---|")
    print("| %d | %d | %.0f | %d | %.2f | %.0f |" % (args.sessions, args.sessions * 4, emit_us, delivered, secs, rate))
    print("(%s, nproc=%d)" % (time.strftime("%Y-%m-%d"), os.cpu_count() or 0))


if __name__ == "__main__":
    main()
