#!/usr/bin/env python3
"""
Webhook delivery micro-benchmark: the cost per request of
L{aiconnect.webhooks.EventDeliverer} and its HTTP client, against a
receiver process on 127.0.0.1; prints a table.

The outbox is an in-memory stand-in (SQLite is not measured here: that is
L{aiconnect.webhooks.outbox}'s cost), so the figures are the deliverer's
scheduling, signing and HTTP exchange.  Three steps per run:

 - C{post}: L{aiconnect.webhooks.http.post} alone, 32 requests in flight
   (the client's own cost per callback, signing included);
 - C{burst}: S sessions x E events emitted at once (all lanes waiting,
   C{max_in_flight} requests in flight);
 - C{paced}: events emitted at R per second for T seconds, 5 per session
   (what 50 forwarded calls per second emit).

Columns: requests/s, CPU-µs per request of this (sender) process, the
connections the receiver accepted, and the timers (C{callLater}) the
sender scheduled per request.  Last, for code with the lean client: the
CPU-µs of one C{post} over a kept in-memory connection (the client alone:
no sockets, no signing).

    .venv/bin/python bench/webhooks.py [--label after]
    # the code of another checkout (e.g. an export of i12-base):
    .venv/bin/python bench/webhooks.py --repository /tmp/web-base --label before

Bounded: every step stops after 60 s; the receiver is killed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from typing import Any

from common import free_port, use_repository

RECEIVER = textwrap.dedent(
    """
    import json, sys
    from twisted.internet import reactor
    from twisted.web import resource, server

    counts = {"connections": 0, "requests": 0}

    class R(resource.Resource):
        isLeaf = True

        def render_POST(self, request):
            request.content.read()
            counts["requests"] += 1
            return b""

        def render_GET(self, request):
            return json.dumps(counts).encode()

    class S(server.Site):
        def buildProtocol(self, addr):
            counts["connections"] += 1
            return server.Site.buildProtocol(self, addr)

    site = S(R())
    site.noisy = False
    reactor.listenTCP(int(sys.argv[1]), site, interface="127.0.0.1")
    reactor.run()
    """
)

TENANT = "bench.example"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class MemoryOutbox:
    """
    The outbox interface L{EventDeliverer} uses, in memory, doing nothing
    with delivery state.
    """

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self._listeners: list[Any] = []
        self._seq: dict[str, int] = {}

    def pending(self) -> list[Any]:
        return []

    def add_listener(self, listener: Any) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Any) -> None:
        self._listeners.remove(listener)

    def emit(self, session: str, body: bytes) -> None:
        from aiconnect.webhooks.outbox import OutboxEvent

        seq = self._seq[session] = self._seq.get(session, 0) + 1
        now = self._clock()
        event = OutboxEvent(None, TENANT, session, seq, "evt_%s_%d" % (session, seq), "X", body, now, 0, now)
        for listener in self._listeners:
            listener(event)

    def disabled_endpoints(self) -> dict[str, Any]:
        return {}

    def mark_delivered(self, event: Any, now: float) -> None:
        pass

    def mark_attempt(self, event: Any, error: str) -> None:
        pass

    def mark_dead(self, event: Any, now: float, error: str) -> None:
        pass

    def purge(self, delivered_before: float, dead_before: float) -> int:
        return 0


def make_client(reactor: Any) -> tuple[Any, Any, str]:
    """
    The callbacks' client as C{tap.build_service} builds it in this
    checkout.
    """
    try:
        from aiconnect.webhooks.agent import pooled_client
    except ImportError:
        from treq.client import HTTPClient
        from twisted.web.client import Agent, HTTPConnectionPool

        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 4
        return HTTPClient(Agent(reactor, pool=pool)), pool, "treq, 4 kept per host"
    client = pooled_client(reactor)
    kind = "h11" if hasattr(client, "callbacks") else "agent"
    return client, client.pool, "%s, %d kept per host" % (kind, client.pool.maxPersistentPerHost)


def client_only(n: int) -> float | None:
    """
    CPU-µs per callback of L{aiconnect.webhooks.http.post} over the lean
    client alone: one kept connection on an in-memory transport, a canned
    twisted.web answer fed back (no sockets, no receiver); L{None} for
    code without L{aiconnect.webhooks.client11}.
    """
    try:
        from aiconnect.webhooks.client11 import _Connection
    except ImportError:
        return None
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    from aiconnect.webhooks.agent import pooled_client
    from aiconnect.webhooks.http import post
    from aiconnect.webhooks.signing import signed_headers

    clock = MemoryReactorClock()
    client = pooled_client(clock)
    connection = _Connection(client.callbacks, (b"http", b"127.0.0.1", 8080))
    transport = StringTransport()
    connection.makeConnection(transport)
    client.callbacks._release(connection)
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nDate: Wed, 02 Dec 2026 07:40:00 GMT\r\n"
        b"Server: TwistedWeb/25.5.0\r\nContent-Type: text/html\r\n\r\n"
    )
    body = b"x" * 400
    headers = signed_headers(SECRET, "msg_1", 1700000000, body)

    def one() -> None:
        post(clock, client, "http://127.0.0.1:8080/events", body, headers, 5.0, 65536)
        transport.clear()
        connection.dataReceived(answer)

    for _ in range(n // 10):
        one()
    cpu0 = time.process_time()
    for _ in range(n):
        one()
    return 1e6 * (time.process_time() - cpu0) / n


def receiver_counts(port: int) -> dict[str, int]:
    with urllib.request.urlopen("http://127.0.0.1:%d/stats" % (port,), timeout=5) as answer:
        return json.loads(answer.read())


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from twisted.internet import defer, reactor
    from twisted.internet.task import deferLater

    from aiconnect.config import load_string
    from aiconnect.webhooks import EventDeliverer, tenants_by_domain

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    rows: list[dict[str, Any]] = []
    try:
        for _ in range(100):
            try:
                receiver_counts(port)
                break
            except OSError:
                time.sleep(0.05)
        cfg = load_string(
            '[[tenant]]\ndomain = "%s"\ncallback_url = "http://127.0.0.1:%d"\nsigning_secret = "%s"\n'
            % (TENANT, port, SECRET)
        )
        client, pool, kind = make_client(reactor)
        outbox = MemoryOutbox(reactor.seconds)
        deliverer = EventDeliverer(reactor, outbox, tenants_by_domain(cfg.tenants), http_client=client)
        body = json.dumps({"event": "SESSIONCOMPLETED", "reason": "inboundBye", "duration": 1.5, "pad": "x" * 300})
        timers = [0]
        schedule = reactor.callLater

        def counting(*a: Any, **k: Any) -> Any:
            timers[0] += 1
            return schedule(*a, **k)

        reactor.callLater = counting  # type: ignore[method-assign]

        async def step(name: str, emit: Any, total: int) -> None:
            before = receiver_counts(port)
            delivered0 = deliverer.stats["delivered"]
            timers[0] = 0
            cpu0, t0 = time.process_time(), time.perf_counter()
            await emit()
            while deliverer.stats["delivered"] - delivered0 < total and time.perf_counter() - t0 < 60:
                await deferLater(reactor, 0.05, lambda: None)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
            after = receiver_counts(port)
            done = deliverer.stats["delivered"] - delivered0
            rows.append(
                {
                    "step": name,
                    "requests": done,
                    "per_s": done / wall,
                    "cpu_us": 1e6 * cpu / max(done, 1),
                    "connections": after["connections"] - before["connections"],
                    "timers": timers[0] / max(done, 1),
                }
            )

        async def burst() -> None:
            for e in range(args.events):
                for s in range(args.sessions):
                    outbox.emit("ses_b%d" % (s,), body.encode())

        async def paced() -> None:
            n = int(args.rate * args.seconds)
            start = time.perf_counter()
            for i in range(n):
                due = start + i / args.rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await deferLater(reactor, delay, lambda: None)
                outbox.emit("ses_p%d" % (i // 5,), body.encode())

        async def posts() -> None:
            # http.post alone (what each callback costs in the client), 32
            # in flight, as the deliverer sends them.
            from aiconnect.webhooks.http import post
            from aiconnect.webhooks.signing import signed_headers

            url = "http://127.0.0.1:%d/events" % (port,)
            payload = body.encode()
            n = args.posts
            before = receiver_counts(port)
            timers[0] = 0
            cpu0, t0 = time.process_time(), time.perf_counter()
            sent = 0

            async def lane() -> None:
                nonlocal sent
                while sent < n:
                    sent += 1
                    headers = signed_headers(SECRET, "msg_%d" % (sent,), 1700000000, payload)
                    await post(reactor, client, url, payload, headers, 5.0, 65536)

            await defer.gatherResults([defer.ensureDeferred(lane()) for _ in range(32)])
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
            after = receiver_counts(port)
            rows.append(
                {
                    "step": "post x%d" % (n,),
                    "requests": n,
                    "per_s": n / wall,
                    "cpu_us": 1e6 * cpu / n,
                    "connections": after["connections"] - before["connections"],
                    "timers": timers[0] / n,
                }
            )

        async def drive() -> None:
            await posts()
            deliverer.start()
            await step("burst %dx%d" % (args.sessions, args.events), burst, args.sessions * args.events)
            await step("paced %g/s" % (args.rate,), paced, int(args.rate * args.seconds))
            deliverer.stop()
            await pool.closeCachedConnections()

        d = defer.ensureDeferred(drive())
        failures: list[Any] = []
        d.addErrback(failures.append)
        d.addBoth(lambda _: reactor.stop())
        reactor.run()
        if failures:
            failures[0].raiseException()
        for row in rows:
            row["client"] = kind
    finally:
        proc.kill()
        proc.wait()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", help="take aiconnect from this checkout instead of this one")
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--events", type=int, default=5)
    parser.add_argument("--posts", type=int, default=3000, help="post step: requests")
    parser.add_argument("--rate", type=float, default=250.0, help="paced step: events per second")
    parser.add_argument("--seconds", type=float, default=4.0, help="paced step: seconds")
    args = parser.parse_args()
    if args.repository:
        sys.path.insert(0, os.path.abspath(args.repository))
    else:
        use_repository()
    import aiconnect

    rows = run(args)
    alone = client_only(20000)
    print("code: %s (%s)" % (args.label, os.path.dirname(os.path.dirname(aiconnect.__file__))))
    print("| step | client | requests | requests/s | CPU-µs/request | connections | timers/request |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            "| %s | %s | %d | %.0f | %.0f | %d | %.1f |"
            % (r["step"], r["client"], r["requests"], r["per_s"], r["cpu_us"], r["connections"], r["timers"])
        )
    if alone is not None:
        print("post() alone, in memory (no sockets, signing not included): %.0f CPU-µs per callback" % (alone,))


if __name__ == "__main__":
    main()
