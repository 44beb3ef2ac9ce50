#!/usr/bin/env python3
"""
Abuse benchmark: does AI Connect keep serving legitimate SIPRec traffic
while it is flooded with INVITEs and held open by idle TCP connections?

    .venv/bin/python bench/abuse.py                   # 60 s, the defaults below
    .venv/bin/python bench/abuse.py --duration 10 --flood-rate 100 --idle 200

It starts AI Connect in a subprocess (C{twistd -n aiconnect --config FILE},
a temporary configuration on 127.0.0.1 with the C{[limits]} defaults and one
tenant whose C{callback_url} points at a tiny application server in this
process answering newCall with C{{}}), then, at once and for C{--duration}
seconds:

  - B{flood} (its own process, UDP from 127.0.0.2): C{--flood-rate}
    SIPRec INVITEs/s (2 m-lines + metadata), each with a fresh Call-ID,
    never ACKed, never retransmitted; the responses are counted;
  - B{idle} (its own process, TCP from 127.0.0.3): C{--idle} connections to
    the SIP TCP port, opened at C{--idle-rate}/s and left silent (bounded by
    RLIMIT_NOFILE, which the bench raises to its hard limit); "held" is
    counted both on our side and on the server's (its accepted sockets in
    /proc: a connection still in the listen queue looks open to us only);
  - B{legitimate} (its own process, UDP from 127.0.0.1): C{--call-rate}
    calls/s, each SIPRec INVITE -> 200 -> ACK -> BYE -> 200 with RFC 3261
    retransmissions, within C{--call-timeout} s per transaction; and an
    OPTIONS ping every C{--ping-interval} s, its latency taken from the
    send time to the kernel's receive time stamp (C{SO_TIMESTAMPNS}), so
    the bench's own scheduling does not count; a ping unanswered within
    C{--ping-timeout} s counts as lost (an infinite latency).

Then it prints a table: legitimate calls attempted / answered / completed,
OPTIONS latency p50/p99/max, flood INVITEs sent / answered 503 / other /
unanswered, idle connections held at the end, the server's CPU seconds over
the load window and its RSS.  The goal (SPEC s12 and the issue): every
legitimate call answered and OPTIONS p99 < 50 ms.

Only loopback addresses are used.  Every loop is bounded in count and time,
every wait has a timeout, and the server and the worker processes are killed
if they do not stop: the bench finishes and prints even when the server
misbehaves (a worker that reported nothing shows as C{n/a}).  Exit status:
0 when the goal is met, 1 when it is not, 2 when the server did not start.

Not a test: run it by hand (it takes C{--duration} + about 15 s).

The pieces: L{abuse_sip} (addresses, SIP messages), L{abuse_attackers}
(the flood and idle workers), L{abuse_legit} (the legitimate worker),
L{abuse_server} (the application server and AI Connect's subprocess),
L{abuse_table} (the report), L{common} (what all benchmarks share); this
module runs them (L{run}) and holds the command line (L{main}).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from abuse_attackers import flood_main, idle_main
from abuse_legit import legit_main
from abuse_server import AppServer, server_connections, start_server, stop_process, wait_ready, write_config
from abuse_sip import FLOOD_SOURCE, IDLE_SOURCE, LEGIT_SOURCE
from abuse_table import GOAL_P99_MS, print_table
from common import machine, proc_status, raise_nofile, sleep_until, use_repository

use_repository()

#: File descriptors kept free for everything but the idle connections.
FD_RESERVE = 128


# -- the controller --------------------------------------------------------------------


def receive(conns: dict[str, Connection], deadline: float, kind: type) -> dict[str, Any]:
    """
    The first message of type C{kind} from each worker (others are
    skipped), waiting at most until C{deadline} in all.
    """
    out: dict[str, Any] = {}
    for name, c in conns.items():
        for _ in range(10):
            try:
                if not c.poll(max(0.0, deadline - time.monotonic())):
                    break
                message = c.recv()
            except (EOFError, OSError):
                break
            if isinstance(message, kind):
                out[name] = message
                break
    return out


#: The server's log line for a rejected INVITE (aiconnect.siprec.srs).
REJECTED_RE = re.compile(r"INVITE rejected .*?status=(\d+) reason=([^\n]*)")


def run(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    """
    The whole run; returns the results and the exit status.
    """
    results: dict[str, Any] = {"nofile": raise_nofile()}
    idle = min(args.idle, max(0, results["nofile"] - FD_RESERVE))
    results["idle_requested"] = idle
    directory = Path(tempfile.mkdtemp(prefix="aiconnect-abuse-"))
    results["directory"] = str(directory)
    app = AppServer()
    proc: subprocess.Popen[bytes] | None = None
    workers: list[Any] = []
    status = 0
    try:
        from tests.integration.helpers import free_port

        sip_port = free_port()
        lo, _, hi = args.rtp_ports.partition("-")
        config = write_config(directory, sip_port, app.port, (int(lo), int(hi)), args.log_level)
        proc = start_server(directory, config, args.reactor)
        if not wait_ready(proc, sip_port, args.startup_timeout):
            code = proc.poll()
            if code is None:
                results["server_error"] = "did not answer OPTIONS and TCP within %.0f s" % (args.startup_timeout,)
            else:
                results["server_error"] = "exited with status %s before answering" % (code,)
            return results, 2
        ctx = mp.get_context("spawn")
        conns: dict[str, Connection] = {}
        t0 = time.monotonic() + 5.0  # the workers start in 1-2 s; all begin together at t0
        drain = 3.0
        specs = {
            "flood": (flood_main, (sip_port, args.flood_rate, t0, args.duration, drain)),
            "idle": (idle_main, (sip_port, idle, args.idle_rate, t0, args.duration)),
            "legit": (
                legit_main,
                (sip_port, t0, args.duration, args.call_rate, args.ping_interval, args.call_timeout, args.hold, args.ping_timeout),
            ),
        }
        for name, (target, wargs) in specs.items():
            parent, child = ctx.Pipe()
            p = ctx.Process(target=target, args=(child, *wargs), daemon=True)
            p.start()
            workers.append(p)
            conns[name] = parent
        ready = receive(conns, t0, str)
        results["not_ready"] = sorted(set(conns) - set(ready))
        sleep_until(t0)
        before = proc_status(proc.pid)
        sleep_until(t0 + args.duration)
        after = proc_status(proc.pid)
        hz = os.sysconf("SC_CLK_TCK")
        if before and after:
            results["cpu_s"] = (after["ticks"] - before["ticks"]) / hz
            results["rss_kib"] = after.get("VmRSS", 0)
            results["hwm_kib"] = after.get("VmHWM", 0)
        results["server_alive"] = proc.poll() is None
        if results["server_alive"]:
            results["server_idle_held"] = server_connections(proc.pid, sip_port, IDLE_SOURCE)
        finish = t0 + args.duration + drain + args.hold + 2 * args.call_timeout + 10.0
        results.update(receive(conns, finish, dict))
        for c in conns.values():
            try:
                c.send("done")  # the idle worker may now close its connections
            except OSError:
                pass
        results["app"] = dict(app.counts)
    finally:
        for p in workers:
            if p.is_alive():
                p.kill()
            p.join(5)
        if proc is not None:
            results["server_exit"] = stop_process(proc, 15.0)
        app.stop()
        log = directory / "server.log"
        if log.exists():
            text = log.read_text(errors="replace")
            results["log_tracebacks"] = text.count("Traceback (most recent call last)")
            results["log_rejections"] = Counter((st, why.strip()) for st, why in REJECTED_RE.findall(text))
            results["log_shut_down"] = "Server Shut Down" in text
            results["log_tail"] = text.splitlines()[-5:]
            results["log_lines"] = text.count("\n")
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    legit = results.get("legit", {})
    ok = bool(legit) and "error" not in legit and legit["calls"] > 0 and legit["answered"] == legit["calls"]
    ok = ok and legit["p99"] < GOAL_P99_MS
    if status == 0 and not ok:
        status = 1
    return results, status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--flood-rate", type=float, default=200.0, help="flood INVITEs per second from 127.0.0.2")
    parser.add_argument("--idle", type=int, default=500, help="idle TCP connections from 127.0.0.3 (bounded by RLIMIT_NOFILE)")
    parser.add_argument("--idle-rate", type=float, default=1000.0, help="idle connections opened per second")
    parser.add_argument("--call-rate", type=float, default=1.0, help="legitimate calls per second from 127.0.0.1")
    parser.add_argument("--ping-interval", type=float, default=0.1, help="seconds between OPTIONS pings")
    parser.add_argument("--call-timeout", type=float, default=5.0, help="seconds a legitimate INVITE or BYE may take")
    parser.add_argument("--hold", type=float, default=0.5, help="seconds between a legitimate call's ACK and its BYE")
    parser.add_argument("--ping-timeout", type=float, default=2.0, help="seconds after which a ping counts as lost")
    parser.add_argument("--rtp-ports", default="28000-32767", help="the server's RTP port range (outside the tests' 20000-27999)")
    parser.add_argument("--reactor", default="aiconnect-epoll", help="twistd --reactor ('default': twistd's own)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warn", "error"), help="the server's [log] level")
    parser.add_argument("--startup-timeout", type=float, default=30.0, help="seconds for the server to answer")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (config, server.log)")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 600:
        parser.error("--duration must be within 1..600 s")
    if args.flood_rate < 0 or args.flood_rate > 5000 or args.call_rate < 0 or args.call_rate > 50:
        parser.error("--flood-rate must be within 0..5000 and --call-rate within 0..50")
    if not 1 <= args.idle_rate <= 10000:
        parser.error("--idle-rate must be within 1..10000")
    if args.idle < 0 or args.ping_interval < 0.01 and args.ping_interval != 0:
        parser.error("--idle must be >= 0 and --ping-interval >= 0.01 s (0 = no pings)")
    lo, sep, hi = args.rtp_ports.partition("-")
    if not (sep and lo.isdigit() and hi.isdigit() and 1024 <= int(lo) < int(hi) <= 65535):
        parser.error("--rtp-ports must look like 28000-32767")
    print("# %s UTC, %s" % (datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"), machine()))
    print("# %g s: flood %g INVITE/s from %s, %d idle TCP from %s, %g call/s + OPTIONS every %g s from %s; [limits] defaults"
          % (args.duration, args.flood_rate, FLOOD_SOURCE, args.idle, IDLE_SOURCE, args.call_rate, args.ping_interval, LEGIT_SOURCE))  # fmt: skip
    sys.stdout.flush()
    results, status = run(args)
    if results.get("idle_requested", args.idle) < args.idle:
        print("# idle connections capped at %d by RLIMIT_NOFILE %d" % (results["idle_requested"], results["nofile"]))
    print_table(args, results, status)
    return status


if __name__ == "__main__":
    sys.exit(main())
