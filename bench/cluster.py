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

Requires C{sipp} and C{kamailio}.  Every loop is bounded; every process is
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


class ClusterStep(Step):
    """
    A signalling step through Kamailio: C{cpu_s} is the nodes' CPU, and
    C{kamailio_s} Kamailio's.
    """

    nodes: int = 1
    kamailio_s: float = 0.0

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


def run_step(args: argparse.Namespace, step: ClusterStep, nodes: list[subprocess.Popen[bytes]], kam: Kamailio, app_port: int, base: Path) -> ClusterStep:
    directory = base / ("n%d-%d" % (step.nodes, step.rate))
    directory.mkdir()
    assert kam.proc is not None
    kam_pids = process_tree(kam.proc.pid)
    node_pids = [p.pid for p in nodes]
    before = app_stats(app_port, 0)["total"]
    nodes0, kam0 = ticks(node_pids), ticks(kam_pids)
    started = time.monotonic()
    src = sipp_src(args, step, kam.port, directory)
    src_wait(src, step.calls / step.rate + args.hold / 1000 + 90)
    step.elapsed = max(time.monotonic() - started - args.hold / 1000, 1e-3)
    read_sipp(step, directory)
    collect_events(args, step, app_port, before)
    step.cpu_s = (ticks(node_pids) - nodes0) / CLK_TCK
    step.kamailio_s = (ticks(kam_pids) - kam0) / CLK_TCK
    return step


def run_nodes(args: argparse.Namespace, count: int, rates: list[int], base: Path, app_port: int, srs_port: int) -> list[ClusterStep]:
    """
    C{count} nodes (node I on CPU I) behind one Kamailio; one step per rate.
    """
    nodes: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    share = args.rtp_ports // count
    kam: Kamailio | None = None
    steps: list[ClusterStep] = []
    try:
        for i in range(count):
            directory = base / ("n%d-node%d" % (count, i))
            directory.mkdir()
            port = free_port()
            rtp = (args.rtp_min + i * share, args.rtp_min + (i + 1) * share - 1)
            config = write_config(directory, port, app_port, srs_port, rtp, "", args.log_level)
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
        for rate in rates:
            step = ClusterStep("fwd", rate, int(rate * args.seconds))
            step.nodes = count
            steps.append(run_step(args, step, nodes, kam, app_port, base))
            print("  %d node(s) %d/s: %d completed, %.2f node CPU-ms/call, events %s" % (count, rate, step.successful, step.cpu_ms, step.names), file=sys.stderr)
            time.sleep(args.pause)
    finally:
        if kam is not None:
            kam.stop()
            tidy(kam.dir, args.keep)
        for proc in nodes:
            stop_process(proc, 30)
    return steps


def print_table(steps: list[ClusterStep]) -> None:
    head = (
        "nodes  offered/s  completed/s  node CPU-ms/call  Kamailio CPU-ms/call  setup p50/p99 ms  "
        "failed  503s  retrans  SRS-fail  ev-missing  event p99/max ms  goal"
    )
    print(head)
    print("-" * len(head))
    for s in steps:
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
        mine = [s for s in steps if s.nodes == n]
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
    base = Path(tempfile.mkdtemp(prefix="aiconnect-cluster-"))
    app_port, srs_port = free_port(), free_port()
    app, srs = start_peers(args, base, app_port, srs_port, 0)
    steps: list[ClusterStep] = []
    try:
        time.sleep(1.0)
        print("# %s; load average %s; %d s of calls per step, hold %d ms" % (machine(True), " ".join("%.2f" % x for x in os.getloadavg()), args.seconds, args.hold))
        steps += run_nodes(args, 1, args.rates_1, base, app_port, srs_port)
        steps += run_nodes(args, 2, args.rates_2, base, app_port, srs_port)
        print_table(steps)
        summary(steps)
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
    args = parser.parse_args()
    args.sipp = shutil.which("sipp")
    args.kamailio, args.kamcmd = find_binary("kamailio"), find_binary("kamcmd")
    if args.sipp is None or args.kamailio is None or args.kamcmd is None:
        print("needs sipp and kamailio (Debian: apt-get install sip-tester kamailio)", file=sys.stderr)
        return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
