#!/usr/bin/env python3
"""
Cluster benchmark (issue 15, SPEC s14): forwarded SIPRec call setups per
second through Kamailio to one AI Connect node, then to two nodes (one per
core), and the ratio.

    .venv/bin/python bench/cluster.py
    .venv/bin/python bench/cluster.py --rates-1 100 200 --rates-2 200 400 --seconds 10

It reuses the signalling benchmark's machinery (C{bench/signalling.py}):
the same node configuration (tenant C{fwd.bench.test}, whose application
answers one C{startSIPRecForward} to the SRS), the same application
process (C{bench/signalling_app.py}), SIPp as the SRS and, per step, SIPp
as the SRC -- but the SRC sends its INVITEs to Kamailio
(C{etc/kamailio/kamailio.cfg}, round robin over the nodes), and ACK and
BYE go straight to the node that answered.  Node I is pinned to CPU I
(C{sched_setaffinity}, what C{taskset} does); Kamailio, SIPp and the
application are not pinned (the SRC SIPp runs on CPU 1, as in the
signalling bench), so with two nodes on a two-core machine everything
shares the two cores.

Per step it prints the signalling bench's columns plus the nodes' and
Kamailio's CPU-ms per completed call; then, per node count, the largest
rate holding the goal (every call completed, no failure, every event
within 1 s), the capacity the nodes' CPU-ms per call gives (nodes x 1000 /
CPU-ms, each node on a core of its own), and the 2-node / 1-node ratios.

With C{--database postgresql} the nodes share a throw-away PostgreSQL
server (C{tests/storage/pgserver.py}'s: initdb in a temporary directory,
127.0.0.1, fsync and synchronous_commit off), a new database per node
count, with C{[node] id} and C{[cluster] secret} (SPEC s14).  Before and after each step (and over
C{--idle} seconds without calls, the nodes' background writes) it reads
PostgreSQL's own counters -- C{pg_stat_database} (commits, rows inserted,
updated, deleted), C{pg_stat_user_tables} (per table), C{pg_stat_wal} (WAL
bytes) -- and the CPU of the postmaster and its children (/proc), and
prints them per second and per completed call.  Backends publish their
counters at most once a second, so each reading waits L{STATS_SETTLE} s.

    .venv/bin/python bench/cluster.py --database postgresql

Requires C{sipp} and C{kamailio} (and, for C{--database postgresql}, the
PostgreSQL server binaries and psycopg).  Every loop is bounded; every process is
stopped at the end.  Not a test: run it by hand; docs/cluster.md records
a run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import cpu_ticks, free_port, machine, use_repository

use_repository()

from abuse_server import start_server, stop_process, wait_ready  # noqa: E402
from signalling import (  # noqa: E402
    CLK_TCK,
    SERVER,
    Step,
    app_stats,
    collect_events,
    fmt_ms,
    pin,
    read_sipp,
    sipp_src,
    src_wait,
    start_peers,
    step_options,
    stop_peers,
    tidy,
    write_config,
)

from tests.integration.cluster_nodes import Kamailio, find_binary, parse_states  # noqa: E402


def process_tree(pid: int) -> list[int]:
    """
    C{pid} and its direct children (Kamailio's workers), from /proc.
    """
    pids = [pid]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            pids.append(int(entry))
    return pids


def ticks(pids: list[int]) -> int:
    """
    The CPU ticks (user + system) of C{pids}; a process gone counts 0.
    """
    total = 0
    for pid in pids:
        try:
            total += sum(cpu_ticks(pid))
        except (OSError, IndexError, ValueError):
            pass
    return total


#: Seconds to wait before reading PostgreSQL's counters: each backend
#: publishes its counters at most once a second (PostgreSQL 15).
STATS_SETTLE = 3.0


class PostgresCounters:
    """
    PostgreSQL's own counters for one database (C{pg_stat_database},
    C{pg_stat_user_tables}, C{pg_stat_wal}) and the server's CPU (the
    postmaster and its children, from /proc), read before and after a step.
    """

    def __init__(self, server: Any, database: str) -> None:
        self.server = server
        self.database = database
        with open(os.path.join(server.directory, "data", "postmaster.pid")) as f:
            self.postmaster = int(f.readline())

    def snapshot(self) -> dict[str, float]:
        """
        The counters now (after L{STATS_SETTLE} s), as C{name: value};
        per table C{ins:TABLE}, C{upd:TABLE}, C{del:TABLE}.
        """
        time.sleep(STATS_SETTLE)
        values: dict[str, float] = {}
        with self.server.connect(self.database) as connection:
            row = connection.execute(
                "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()
            values.update(zip(("commits", "rollbacks", "inserted", "updated", "deleted"), map(float, row)))
            for name, ins, upd, dele in connection.execute("SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"):
                values["ins:" + name], values["upd:" + name], values["del:" + name] = float(ins), float(upd), float(dele)
            records, size = connection.execute("SELECT wal_records, wal_bytes FROM pg_stat_wal").fetchone()
            values["wal_records"], values["wal_bytes"] = float(records), float(size)
        # The backends alive now (the nodes' pools keep theirs for the run).
        values["cpu_s"] = ticks(process_tree(self.postmaster)) / CLK_TCK
        values["seconds"] = time.monotonic()
        return values


def idle_step(count: int, counters: PostgresCounters, seconds: float) -> "ClusterStep":
    """
    The nodes' writes without calls (lease renewals, the outbox's and the
    takeover's polls) over C{seconds}: a step of rate 0.
    """
    step = ClusterStep("idle", 0, 0)
    step.nodes = count
    before = counters.snapshot()
    time.sleep(seconds)
    step.database = difference(counters.snapshot(), before)
    step.elapsed = step.database["seconds"]
    return step


def difference(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


def database_config(url: str, node_id: str, api_port: int) -> str:
    """
    The lines that put a node on PostgreSQL (SPEC s14): C{[database] url},
    C{[node] id} and C{api_url} (the nodes' REST API is off; nothing is
    forwarded to it in this bench), C{[cluster] secret}.
    """
    return (
        f'\n[database]\nurl = "{url}"\n\n[node]\nid = "{node_id}"\napi_url = "http://{SERVER}:{api_port}"\n\n'
        f'[cluster]\nsecret = "cluster-bench-{os.getpid()}-secret-0123456789"\n'
    )


class ClusterStep(Step):
    """
    A signalling step through Kamailio: C{cpu_s} is the nodes' CPU, and
    C{kamailio_s} Kamailio's.
    """

    nodes: int = 1
    kamailio_s: float = 0.0
    #: PostgreSQL's counters over the step (L{PostgresCounters}), if any.
    database: dict[str, float] | None = None

    @property
    def kamailio_ms(self) -> float:
        return 1000 * self.kamailio_s / self.successful if self.successful else float("nan")


def wait_active(kam: Kamailio, count: int, timeout: float) -> bool:
    """
    Whether Kamailio shows C{count} nodes active (they answered its OPTIONS
    probe) within C{timeout} s.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and kam.alive():
        out = subprocess.run(kam.list_command(), capture_output=True, text=True, timeout=10).stdout
        if sum(1 for flags in parse_states(out).values() if flags.startswith("A")) == count:
            return True
        time.sleep(0.3)
    return False


def run_step(
    args: argparse.Namespace, step: ClusterStep, nodes: list[subprocess.Popen[bytes]], kam: Kamailio, app_port: int, base: Path,
    counters: PostgresCounters | None = None,
) -> ClusterStep:
    directory = base / ("n%d-%d" % (step.nodes, step.rate))
    directory.mkdir()
    assert kam.proc is not None
    kam_pids = process_tree(kam.proc.pid)
    node_pids = [p.pid for p in nodes]
    before = app_stats(app_port, 0)["total"]
    database0 = counters.snapshot() if counters is not None else {}
    nodes0, kam0 = ticks(node_pids), ticks(kam_pids)
    started = time.monotonic()
    src = sipp_src(args, step, kam.port, directory)
    src_wait(src, step.calls / step.rate + args.hold / 1000 + 90)
    step.elapsed = max(time.monotonic() - started - args.hold / 1000, 1e-3)
    read_sipp(step, directory)
    collect_events(args, step, app_port, before)
    step.cpu_s = (ticks(node_pids) - nodes0) / CLK_TCK
    step.kamailio_s = (ticks(kam_pids) - kam0) / CLK_TCK
    if counters is not None:
        # After the events were collected: the writes of the step's calls
        # (the outbox's delivery marks included) are done.
        step.database = difference(counters.snapshot(), database0)
    return step


def run_nodes(
    args: argparse.Namespace, count: int, rates: list[int], base: Path, app_port: int, srs_port: int, server: Any = None,
) -> list[ClusterStep]:
    """
    C{count} nodes (node I on CPU I) behind one Kamailio; one step per rate.
    With C{server} (a L{PostgresServer}), the nodes share a new database
    of it, whose counters each step reads.
    """
    nodes: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    share = args.rtp_ports // count
    kam: Kamailio | None = None
    steps: list[ClusterStep] = []
    counters: PostgresCounters | None = None
    database = server.create_database() if server is not None else ""
    try:
        for i in range(count):
            directory = base / ("n%d-node%d" % (count, i))
            directory.mkdir()
            port = free_port()
            rtp = (args.rtp_min + i * share, args.rtp_min + (i + 1) * share - 1)
            config = write_config(directory, port, app_port, srs_port, rtp, "", args.log_level)
            if server is not None:
                with open(config, "a") as f:
                    f.write(database_config(server.url(database), "bench-%d" % i, free_port()))
            nodes.append(start_server(directory, config, args.reactor))
            ports.append(port)
            pin(nodes[-1].pid, i)
        for proc, port in zip(nodes, ports):
            if not wait_ready(proc, port, 60):
                print("a node did not start; see %s" % base, file=sys.stderr)
                return steps
        kam = Kamailio(args.kamailio, args.kamcmd, [(SERVER, p) for p in ports], children=args.kamailio_children)
        kam.start()
        if not wait_active(kam, count, 30):
            print("kamailio did not see the nodes; its log:\n%s" % kam.output()[-3000:], file=sys.stderr)
            return steps
        if server is not None:
            counters = PostgresCounters(server, database)
            steps.append(idle_step(count, counters, args.idle))
        for rate in rates:
            step = ClusterStep("fwd", rate, int(rate * args.seconds))
            step.nodes = count
            steps.append(run_step(args, step, nodes, kam, app_port, base, counters))
            print("  %d node(s) %d/s: %d completed, %.2f node CPU-ms/call, events %s" % (count, rate, step.successful, step.cpu_ms, step.names), file=sys.stderr)
            time.sleep(args.pause)
    finally:
        if kam is not None:
            kam.stop()
            tidy(kam.dir, args.keep)
        for proc in nodes:
            stop_process(proc, 30)
    return steps


def print_database(steps: list[ClusterStep]) -> None:
    """
    PostgreSQL's side of each step: per second of the step's window (from
    one counter reading to the next) and per completed call; then the rows
    written per call, per table.
    """
    measured = [s for s in steps if s.database is not None]
    if not measured:
        return
    print()
    head = (
        "nodes  offered/s  window s  commits/s  rows/s  commits/call  rows/call  ins/upd/del per call  "
        "WAL kB/call  PG CPU-ms/call  PG CPU %"
    )
    print(head)
    print("-" * len(head))
    tables: set[str] = set()
    for s in measured:
        d = s.database or {}
        tables.update(key[4:] for key in d if key.startswith("ins:") and any(d[p + key[3:]] for p in ("ins", "upd", "del")))
        rows = d["inserted"] + d["updated"] + d["deleted"]
        calls = s.successful or float("nan")
        print(
            "%5d  %9s  %8.1f  %9.1f  %6.0f  %12.2f  %9.2f  %20s  %11.2f  %14.3f  %8.0f"
            % (
                s.nodes, s.rate or "idle", d["seconds"], d["commits"] / d["seconds"], rows / d["seconds"],
                d["commits"] / calls, rows / calls,
                "%.2f/%.2f/%.2f" % (d["inserted"] / calls, d["updated"] / calls, d["deleted"] / calls),
                d["wal_bytes"] / 1024 / calls, 1000 * d["cpu_s"] / calls, 100 * d["cpu_s"] / d["seconds"],
            )
        )  # fmt: skip
    print()
    names = sorted(tables)
    print("rows written per completed call (insert+update+delete), per table")
    print("nodes  offered/s  " + "  ".join(names))
    for s in measured:
        if not s.successful:
            continue
        d = s.database or {}
        cells = ("%.2f+%.2f+%.2f" % tuple(d.get("%s:%s" % (p, n), 0.0) / s.successful for p in ("ins", "upd", "del")) for n in names)
        print("%5d  %9d  " % (s.nodes, s.rate) + "  ".join("%*s" % (len(n), c) for n, c in zip(names, cells)))


def print_table(steps: list[ClusterStep]) -> None:
    head = (
        "nodes  offered/s  completed/s  node CPU-ms/call  Kamailio CPU-ms/call  setup p50/p99 ms  "
        "failed  503s  retrans  SRS-fail  ev-missing  event p99/max ms  goal"
    )
    print(head)
    print("-" * len(head))
    for s in steps:
        if not s.rate:
            continue
        print(
            "%5d  %9d  %11.1f  %16.2f  %20.2f  %16s  %6d  %4d  %7d  %8d  %10d  %16s  %s"
            % (
                s.nodes, s.rate, s.completed_rate, s.cpu_ms, s.kamailio_ms,
                "%s / %s" % (fmt_ms(s.setup, 0.5), fmt_ms(s.setup, 0.99)),
                s.failed, s.rejected, s.retransmissions, s.srs_failures, s.missing,
                "%s / %s" % (fmt_ms(s.delays, 0.99, 1000), fmt_ms(s.delays, 1.0, 1000)),
                "yes" if s.holds_goal else "no",
            )
        )  # fmt: skip


def summary(steps: list[ClusterStep]) -> None:
    """
    Per node count: the largest rate holding the goal, and the capacity
    the nodes' CPU per call gives; then the 2-node / 1-node ratios.
    """
    held: dict[int, float] = {}
    capacity: dict[int, float] = {}
    for n in sorted({s.nodes for s in steps}):
        mine = [s for s in steps if s.nodes == n and s.rate]
        if not mine:
            continue
        good = [s for s in mine if s.holds_goal]
        held[n] = max((s.completed_rate for s in good), default=0.0)
        # CPU-ms per call at the highest load that held the goal (the least
        # idle overhead per call), else the lowest measured.
        loaded = max(good, key=lambda s: s.completed_rate, default=None)
        costs = [s.cpu_ms for s in mine if s.successful]
        cost = loaded.cpu_ms if loaded is not None else min(costs, default=float("nan"))
        capacity[n] = n * 1000 / cost if costs else 0.0
        print("%d node(s): largest completed rate holding the goal %.0f calls/s; CPU capacity %.0f calls/s (%d x 1000 / %.2f CPU-ms)" % (n, held[n], capacity[n], n, n * 1000 / capacity[n] if capacity[n] else float("nan")))
    if held.get(1) and 2 in held:
        print("ratio 2 nodes / 1 node: measured %.2fx, CPU capacity %.2fx (goal >= 1.8x)" % (held[2] / held[1], capacity[2] / capacity[1] if capacity.get(1) else float("nan")))


def run(args: argparse.Namespace) -> int:
    server = None
    if args.database == "postgresql":
        from tests.storage.pgserver import shared_server

        # Stopped (its directory removed) at exit.
        server = shared_server()
    base = Path(tempfile.mkdtemp(prefix="aiconnect-cluster-"))
    app_port, srs_port = free_port(), free_port()
    app, srs = start_peers(args, base, app_port, srs_port, 0)
    steps: list[ClusterStep] = []
    try:
        time.sleep(1.0)
        print("# %s; load average %s; %d s of calls per step, hold %d ms" % (machine(True), " ".join("%.2f" % x for x in os.getloadavg()), args.seconds, args.hold))
        for count, rates in ((1, args.rates_1), (2, args.rates_2)):
            if rates:
                steps += run_nodes(args, count, rates, base, app_port, srs_port, server)
        print_table(steps)
        summary(steps)
        print_database(steps)
    finally:
        stop_peers((srs, app))
    tidy(base, args.keep)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates-1", type=int, nargs="*", default=[100, 150, 200], help="forwarded calls/s per step, one node")
    parser.add_argument("--rates-2", type=int, nargs="*", default=[200, 300, 400], help="forwarded calls/s per step, two nodes")
    step_options(parser, seconds=8.0, hold=500)
    parser.add_argument("--rtp-min", type=int, default=28000, help="first RTP port; the nodes share --rtp-ports ports")
    parser.add_argument("--rtp-ports", type=int, default=4000)
    parser.add_argument("--kamailio-children", type=int, default=4, help="Kamailio's UDP worker processes")
    parser.add_argument(
        "--database", choices=("sqlite", "postgresql"), default="sqlite",
        help="postgresql: the nodes share a throw-away PostgreSQL server (as the tests', tests/storage/pgserver.py) and each step prints its writes",
    )
    parser.add_argument("--idle", type=float, default=5.0, help="seconds without calls measured first (PostgreSQL: the nodes' background writes)")
    args = parser.parse_args()
    args.sipp = shutil.which("sipp")
    args.kamailio, args.kamcmd = find_binary("kamailio"), find_binary("kamcmd")
    if args.sipp is None or args.kamailio is None or args.kamcmd is None:
        print("needs sipp and kamailio (Debian: apt-get install sip-tester kamailio)", file=sys.stderr)
        return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
