#!/usr/bin/env python3
"""
Signalling speed and overload benchmark (issue 12): how many forwarded
SIPRec call setups per second does one core carry, and what happens beyond?

    .venv/bin/python bench/signalling.py                       # both modes, default rates
    .venv/bin/python bench/signalling.py --rates 100 200 --seconds 10
    .venv/bin/python bench/signalling.py --profile /tmp/prof   # server under cProfile

It starts, all on 127.0.0.1:

  - AI Connect (C{twistd -n aiconnect}, on the C{aiconnect-epoll} reactor,
    pinned to CPU 0) with two tenants: C{in.bench.test}, whose application
    answers newCall with no order (inbound only), and C{fwd.bench.test},
    whose application answers one C{startSIPRecForward} to its trunk
    C{srs} (UDP, the SRS below);
  - the application (C{bench/signalling_app.py}, its own process);
  - SIPp as the SRS (C{bench/sipp/signalling_srs.xml}) and, per step, SIPp
    as the SRC (C{bench/sipp/signalling_src.xml}): C{--seconds} x rate
    SIPRec calls at that rate over UDP, each held C{--hold} ms (no RTP),
    then BYE.  SIPp and the application run on CPU 1.

Without C{sipp} on PATH (or with C{--peers python}) the project's own
peers, C{bench/signalling_peers.py}, play the SRC and the SRS.

Per step (first the inbound-only rates, then the forwarded ones, in the
same run) it prints: offered and completed calls/s, the server's CPU-ms
per completed call (user + system, /proc), setup time INVITE -> 200 p50 /
p99 (SIPp C{-trace_rtt}), SIPp's failed calls that were not 503, 503s
received, the SRC's retransmissions, SRS failures (C{SIPRECFORWARDFAILED}),
events missing, and event delay p99 / max (arrival at the application
minus the event's C{timestamp}).  Then the largest forwarded rate that
holds the goal: no failure, no 503, every event delivered within 1 s.

Every loop is bounded in count and time; every process is killed at the
end.  Not a test: run it by hand; README.rst records a run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import HERE, cpu_ticks, free_port, machine, percentile, use_repository

use_repository()

from abuse_server import start_server, stop_process, wait_ready  # noqa: E402
from abuse_server import write_config as abuse_config  # noqa: E402
from abuse_sip import SECRET  # noqa: E402

SERVER = "127.0.0.1"
SRC_XML = os.path.join(HERE, "sipp", "signalling_src.xml")
SRS_XML = os.path.join(HERE, "sipp", "signalling_srs.xml")
#: Events per completed call: SESSIONSTARTED + SESSIONCOMPLETED, and the
#: forward's STARTED + STOPPED.
EVENTS_PER_CALL = {"in": 2, "fwd": 4}
#: The goal's bound on event delay when not overloaded (issue 12).
EVENT_GOAL = 1.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def write_config(directory: Path, sip_port: int, app_port: int, srs_port: int, rtp: tuple[int, int], extra: str, log_level: str = "warn", api_port: int = 0) -> Path:
    """
    Two tenants calling back C{app_port} (C{/in}, C{/fwd}); limits raised
    so that one source may offer every call of the bench; C{extra} is
    appended to C{[limits]} (overload settings under test).
    """
    tenants = ""
    for name in ("in", "fwd"):
        tenants += f"""
[[tenant]]
domain = "{name}.bench.test"
callback_url = "http://{SERVER}:{app_port}/{name}"
callback_timeout = 5.0
api_tokens = ["signalling-bench-{name}"]
signing_secret = "{SECRET}"

  [[tenant.trunk]]
  match = "srs"
  target = "{SERVER}:{srs_port}"
  transport = "udp"
"""
    limits = "invite_rate = 0\nmax_unconfirmed_per_source = 0\n" + extra
    return abuse_config(directory, sip_port, app_port, rtp, log_level, limits, tenants, api_port)


def pin(pid: int, cpu: int) -> None:
    """
    Run C{pid} on CPU C{cpu} only, when the machine has it.
    """
    if (os.cpu_count() or 1) > cpu:
        try:
            os.sched_setaffinity(pid, {cpu})
        except OSError:
            pass


def app_stats(port: int, since: int) -> dict[str, Any]:
    with urllib.request.urlopen("http://%s:%d/stats?since=%d" % (SERVER, port, since), timeout=10) as r:
        return json.loads(r.read())


@dataclass
class Step:
    mode: str
    rate: int
    calls: int
    elapsed: float = 0.0
    successful: int = 0
    #: Calls that failed otherwise than by a 503.
    failed: int = 0
    #: Calls answered 503.
    rejected: int = 0
    retransmissions: int = 0
    cpu_s: float = 0.0
    setup: list[float] | None = None
    delays: list[float] | None = None
    srs_failures: int = 0
    missing: int = 0
    names: dict[str, int] | None = None

    @property
    def completed_rate(self) -> float:
        return self.successful / self.elapsed if self.elapsed else 0.0

    @property
    def cpu_share(self) -> float:
        """
        The server's CPU over the step, as a fraction of one core.
        """
        return self.cpu_s / self.elapsed if self.elapsed else 0.0

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu_s / self.successful if self.successful else float("nan")

    @property
    def holds_overload_goal(self) -> bool:
        """
        Issue 12's goal beyond capacity: no admitted call fails, admitted
        setups p99 < 500 ms, event delay p99 < 2 s, the rest answered 503.
        """
        return (
            self.successful + self.rejected == self.calls
            and not self.srs_failures
            and not self.missing
            and bool(self.setup)
            and percentile(self.setup or [], 0.99) < 500
            and bool(self.delays)
            and percentile(self.delays or [], 0.99) < 2.0
        )

    @property
    def goal(self) -> str:
        if self.holds_goal:
            return "yes"
        return "shed" if self.rejected and self.holds_overload_goal else "no"

    @property
    def holds_goal(self) -> bool:
        return (
            self.successful == self.calls
            and not self.srs_failures
            and not self.missing
            and bool(self.delays)
            and max(self.delays or [0]) <= EVENT_GOAL
        )


def sipp_csv(directory: Path, suffix: str) -> list[dict[str, str]]:
    """
    The rows of SIPp's C{*_suffix.csv} trace in C{directory}.
    """
    rows: list[dict[str, str]] = []
    for path in directory.glob("*_%s.csv" % suffix):
        with path.open() as f:
            rows += list(csv.DictReader(f, delimiter=";"))
    return rows


def sipp_src(args: argparse.Namespace, step: Step, sip_port: int, directory: Path) -> subprocess.Popen[bytes]:
    """
    SIPp as the SRC of one step, its traces in C{directory}.
    """
    argv = [
        args.sipp, "%s:%d" % (SERVER, sip_port),
        "-sf", SRC_XML, "-key", "domain", "%s.bench.test" % step.mode,
        "-i", SERVER, "-p", str(free_port()), "-mp", str(free_port()),
        "-r", str(step.rate), "-m", str(step.calls), "-d", str(args.hold), "-l", str(args.max_calls),
        "-nostdin", "-timeout", "%ds" % (step.calls / step.rate + args.hold / 1000 + 60), "-timeout_error",
        "-max_recv_loops", "10000", "-max_sched_loops", "10000",
        "-trace_rtt", "-rtt_freq", "1", "-trace_stat", "-fd", "1", "-trace_counts",
    ]  # fmt: skip
    return subprocess.Popen(argv, cwd=directory, stdout=subprocess.DEVNULL, stderr=open(directory / "sipp.err", "wb"))


def python_src(args: argparse.Namespace, step: Step, sip_port: int, directory: Path) -> subprocess.Popen[bytes]:
    """
    The project's own SRC (L{signalling_peers}) for one step; it writes
    C{src.json} in C{directory}.
    """
    argv = [
        sys.executable, os.path.join(HERE, "signalling_peers.py"), "src", str(sip_port), "%s.bench.test" % step.mode,
        str(step.rate), str(step.calls), str(args.hold), str(directory / "src.json"),
    ]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(directory / "src.err", "wb"))


def src_wait(src: subprocess.Popen[bytes], timeout: float) -> None:
    pin(src.pid, 1)
    try:
        src.wait(timeout)
    except subprocess.TimeoutExpired:
        src.kill()
        src.wait(5)


def read_sipp(step: Step, directory: Path) -> None:
    """
    The step's calls from SIPp's statistics, message counts and RTT traces.
    """
    counts = sipp_csv(directory, "counts")  # cumulative: the last row holds the totals
    step.rejected = sum(int(v) for k, v in counts[-1].items() if k and k.endswith("_503_Recv")) if counts else 0
    stats_rows = [r for r in sipp_csv(directory, "") if "SuccessfulCall(C)" in r]
    if stats_rows:
        stat = stats_rows[-1]
        # The scenario ends a 503'd call with stop_call, which SIPp counts
        # as successful.
        step.successful = int(stat["SuccessfulCall(C)"]) - step.rejected
        step.failed = int(stat["FailedCall(C)"])
        step.retransmissions = int(stat["Retransmissions(C)"])
    step.setup = sorted(float(r["response_time_ms"]) for r in sipp_csv(directory, "rtt") if r.get("response_time_ms"))


def read_python(step: Step, directory: Path) -> None:
    """
    The step's calls from the project's SRC's report.
    """
    try:
        report = json.loads((directory / "src.json").read_text())
    except (OSError, ValueError):
        return
    step.successful, step.failed, step.rejected = report["successful"], report["failed"], report["rejected"]
    step.retransmissions, step.setup = report["retransmissions"], sorted(report["setup_ms"])


def run_step(args: argparse.Namespace, step: Step, server: subprocess.Popen[bytes], sip_port: int, app_port: int, base: Path) -> Step:
    directory = base / ("%s-%d" % (step.mode, step.rate))
    directory.mkdir()
    before = app_stats(app_port, 0)["total"]
    ticks0 = sum(cpu_ticks(server.pid))
    started = time.monotonic()
    src = sipp_src(args, step, sip_port, directory) if args.sipp else python_src(args, step, sip_port, directory)
    src_wait(src, step.calls / step.rate + args.hold / 1000 + 90)
    step.elapsed = max(time.monotonic() - started - args.hold / 1000, 1e-3)
    if args.sipp:
        read_sipp(step, directory)
    else:
        read_python(step, directory)
    collect_events(args, step, app_port, before)
    step.cpu_s = (sum(cpu_ticks(server.pid)) - ticks0) / CLK_TCK
    return step


def collect_events(args: argparse.Namespace, step: Step, app_port: int, before: int) -> None:
    """
    Wait (bounded) for the events of every completed call of C{step}
    (those after the C{before}th at the application), then note their
    delays, names, SRS failures and how many are missing.
    """
    want = before + EVENTS_PER_CALL[step.mode] * step.successful
    deadline = time.monotonic() + args.event_wait
    got = before
    while time.monotonic() < deadline:
        got = app_stats(app_port, 0)["total"]
        if got >= want:
            break
        time.sleep(0.2)
    events = app_stats(app_port, before)["events"]
    step.delays = sorted(delay for _name, delay in events)
    step.names = dict(Counter(name for name, _delay in events))
    step.srs_failures = sum(1 for name, _delay in events if name == "SIPRECFORWARDFAILED")
    step.missing = max(0, want - got)


def fmt_ms(values: list[float] | None, q: float, scale: float = 1.0) -> str:
    return "%.0f" % (percentile(values, q) * scale) if values else "-"


def print_table(steps: list[Step]) -> None:
    head = (
        "mode  offered/s  completed/s  CPU  CPU-ms/call  setup p50/p99 ms  failed  503s  retrans  "
        "SRS-fail  ev-missing  event p99/max ms  goal"
    )
    print(head)
    print("-" * len(head))
    for s in steps:
        print(
            "%-4s  %9d  %11.1f  %3.0f%%  %11.2f  %16s  %6d  %4d  %7d  %8d  %10d  %16s  %s"
            % (
                s.mode, s.rate, s.completed_rate, 100 * s.cpu_share, s.cpu_ms,
                "%s / %s" % (fmt_ms(s.setup, 0.5), fmt_ms(s.setup, 0.99)),
                s.failed, s.rejected, s.retransmissions, s.srs_failures, s.missing,
                "%s / %s" % (fmt_ms(s.delays, 0.99, 1000), fmt_ms(s.delays, 1.0, 1000)),
                s.goal,
            )
        )  # fmt: skip
    held = [s.rate for s in steps if s.mode == "fwd" and s.holds_goal]
    print("largest forwarded rate holding the goal: %s calls/s" % (max(held) if held else "none"))
    print(
        "goal: yes = every call completed, no failure, every event within %.0f s; "
        "shed = over capacity, the rest answered 503, admitted calls: no failure, setup p99 < 500 ms, "
        "event delay p99 < 2 s" % EVENT_GOAL
    )


def print_profile(path: str, top: int) -> None:
    print("\nserver profile, top %d by own time:" % top)
    stats = pstats.Stats(path)
    stats.sort_stats("tottime").print_stats(top)


def run(args: argparse.Namespace) -> int:
    base = Path(tempfile.mkdtemp(prefix="aiconnect-signalling-"))
    sip_port, app_port, srs_port = free_port(), free_port(), free_port()
    api_port = free_port() if args.trace else 0
    config = write_config(base, sip_port, app_port, srs_port, (args.rtp_min, args.rtp_min + 3999), "\n".join(args.limit), args.log_level, api_port)
    planned = (len(args.rates) + len(args.inbound_rates)) * (args.seconds + args.hold / 1000 + args.event_wait + args.pause + 100)
    app, srs = start_peers(args, base, app_port, srs_port, planned)
    extra = ["--profile=" + args.profile, "--profiler=cprofile", "--savestats"] if args.profile else []
    server = start_server(base, config, args.reactor, extra)
    steps: list[Step] = []
    tracer = OverloadTrace(api_port, base / "overload.csv", planned) if args.trace else None
    try:
        for proc in (app, srs):
            pin(proc.pid, 1)
        pin(server.pid, 0)
        if not wait_ready(server, sip_port, 30):
            print("the server did not start; see %s" % (base / "server.log"), file=sys.stderr)
            return 2
        print("# %s; peers %s; reactor %s; %d calls per step, hold %d ms" % (machine(True), args.sipp or "signalling_peers.py", args.reactor, args.seconds, args.hold))
        plan = [("in", r) for r in args.inbound_rates] + [("fwd", r) for r in args.rates]
        if tracer is not None:
            tracer.start()
        for mode, rate in plan:
            if tracer is not None:
                tracer.mark("%s %d/s" % (mode, rate))
            step = run_step(args, Step(mode, rate, int(rate * args.seconds)), server, sip_port, app_port, base)
            steps.append(step)
            print("  step %s %d/s: %d completed, %.2f CPU-ms/call, events %s" % (mode, rate, step.successful, step.cpu_ms, step.names), file=sys.stderr)
            time.sleep(args.pause)
        print_table(steps)
    finally:
        if tracer is not None:
            tracer.stop()
        stop_peers((srs, app))
        stop_process(server, 30)
    if args.profile and os.path.exists(args.profile):
        print_profile(args.profile, args.top)
    tidy(base, args.keep)
    return 0


class OverloadTrace(threading.Thread):
    """
    Scrapes the server's C{/metrics} every L{PERIOD} seconds (at most
    C{planned} seconds) and writes the overload detector's state, the
    event backlog and the INVITEs refused, one row per scrape, to a CSV
    file.
    """

    PERIOD = 0.5
    NAMES = (
        "aiconnect_overload_overloaded", "aiconnect_overload_lag_seconds", "aiconnect_overload_cpu",
        "aiconnect_overload_admit_rate", "aiconnect_overload_admitted_total", "aiconnect_overload_rejected_lag_total", "aiconnect_overload_rejected_events_total", "aiconnect_overload_events_wait_seconds",
        "aiconnect_overload_rejected_cpu_total", "aiconnect_events_backlog",
    )  # fmt: skip

    def __init__(self, api_port: int, path: Path, planned: float) -> None:
        threading.Thread.__init__(self, daemon=True)
        self.url = "http://%s:%d/metrics" % (SERVER, api_port)
        self.path = path
        self.planned = planned
        self.done = threading.Event()
        self.started = time.monotonic()
        self.marks: list[str] = []

    def mark(self, label: str) -> None:
        """
        Note in the file that a step starts now.
        """
        self.marks.append("# %.2f %s\n" % (time.monotonic() - self.started, label))

    def run(self) -> None:
        started = self.started = time.monotonic()
        with self.path.open("w") as out:
            out.write("t;" + ";".join(n[len("aiconnect_"):] for n in self.NAMES) + "\n")
            while not self.done.wait(self.PERIOD) and time.monotonic() - started < self.planned:
                try:
                    with urllib.request.urlopen(self.url, timeout=2) as r:
                        text = r.read().decode()
                except OSError:
                    continue
                while self.marks:
                    out.write(self.marks.pop(0))
                values = dict.fromkeys(self.NAMES, "")
                for line in text.splitlines():
                    name, _, value = line.partition(" ")
                    if name in values:
                        values[name] = value
                out.write("%.2f;" % (time.monotonic() - started) + ";".join(values[n] for n in self.NAMES) + "\n")
                out.flush()

    def stop(self) -> None:
        self.done.set()
        self.join(5)


def start_peers(args: argparse.Namespace, base: Path, app_port: int, srs_port: int, planned: float) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """
    The application (C{signalling_app.py}) on C{app_port} and the SRS on
    C{srs_port}: SIPp when C{args.sipp}, else C{signalling_peers.py}
    (running at most C{planned} s); their logs in C{base}.
    """
    app = subprocess.Popen([sys.executable, os.path.join(HERE, "signalling_app.py"), str(app_port)], stderr=open(base / "app.log", "wb"))
    if args.sipp:
        srs_argv = [args.sipp, "-sf", SRS_XML, "-i", SERVER, "-p", str(srs_port), "-mp", str(free_port()), "-nostdin", "-max_recv_loops", "10000", "-max_sched_loops", "10000"]
    else:
        srs_argv = [sys.executable, os.path.join(HERE, "signalling_peers.py"), "srs", str(srs_port), str(planned)]
    srs = subprocess.Popen(srs_argv, cwd=base, stdout=subprocess.DEVNULL, stderr=open(base / "srs.err", "wb"))
    return app, srs


def stop_peers(peers: tuple[subprocess.Popen[bytes], ...]) -> None:
    for proc in peers:
        proc.kill()
        proc.wait(5)


def tidy(base: Path, keep: bool) -> None:
    """
    Remove the run's directory, or say where it is kept.
    """
    if not keep:
        shutil.rmtree(base, ignore_errors=True)
    else:
        print("files kept in %s" % base)


def step_options(parser: argparse.ArgumentParser, seconds: float = 10.0, hold: int = 1000) -> None:
    """
    The options of a run of steps (shared with C{bench/cluster.py}).
    """
    parser.add_argument("--seconds", type=float, default=seconds, help="seconds of calls per step")
    parser.add_argument("--hold", type=int, default=hold, help="ms between ACK and BYE")
    parser.add_argument("--pause", type=float, default=3.0, help="seconds between steps")
    parser.add_argument("--max-calls", type=int, default=5000, help="SIPp -l: calls open at once")
    parser.add_argument("--event-wait", type=float, default=30.0, help="seconds to wait for a step's events")
    parser.add_argument("--reactor", default="aiconnect-epoll")
    parser.add_argument("--log-level", default="warn", help="the server's [log] level")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (SIPp traces, logs)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=int, nargs="*", default=[50, 100, 150, 200, 250, 300], help="forwarded calls/s per step")
    parser.add_argument("--inbound-rates", type=int, nargs="*", default=[100, 200, 300], help="inbound-only calls/s per step")
    step_options(parser)
    parser.add_argument("--rtp-min", type=int, default=28000, help="first of the 4000 RTP ports of the server")
    parser.add_argument("--peers", choices=("auto", "sipp", "python"), default="auto", help="SIPp (auto: when on PATH) or bench/signalling_peers.py")
    parser.add_argument("--limit", action="append", default=[], help="a [limits] line to add, e.g. 'overload_lag = 0.1'")
    parser.add_argument("--trace", action="store_true", help="scrape the server's overload state every 0.5 s into overload.csv (with --keep)")
    parser.add_argument("--profile", default="", help="write the server's cProfile stats here and print the top")
    parser.add_argument("--top", type=int, default=30, help="profile entries printed")
    args = parser.parse_args()
    args.sipp = shutil.which("sipp") if args.peers in ("auto", "sipp") else None
    if args.peers == "sipp" and args.sipp is None:
        print("sipp is not on PATH (Debian: apt-get install sip-tester)", file=sys.stderr)
        return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
