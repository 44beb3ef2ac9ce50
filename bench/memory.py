#!/usr/bin/env python3
"""
Memory benchmark (issue 12): the server's RSS per concurrent forwarded
SIPRec session, and whether RSS comes back once the sessions ended.

    .venv/bin/python bench/memory.py                        # 1000 concurrent, two waves
    .venv/bin/python bench/memory.py --sessions 200 --rate 100
    .venv/bin/python bench/memory.py --tracemalloc 1        # + top allocation sites

It starts what C{bench/signalling.py} starts (its helpers, imported): AI
Connect (C{twistd -n aiconnect}, C{aiconnect-epoll} reactor, CPU 0) with
its REST API on (for C{/metrics}), the application
(C{bench/signalling_app.py}, answering one C{startSIPRecForward}) and SIPp
as the SRS (C{bench/sipp/signalling_srs.xml}).  Then, with SIPp as the SRC
(C{bench/sipp/signalling_src.xml}; no RTP is sent, so C{[rtp]
media_timeout} is set to 0):

  1. a warm-up of C{--warmup} forwarded calls; when they ended and their
     kept copies expired, the baseline RSS (VmRSS of /proc);
  2. C{--waves} times: C{--sessions} forwarded calls at C{--rate} per
     second, each held long enough (C{-d}) that all are up at once (SIPp
     C{-l} = C{--sessions}); when C{/metrics} shows them all active and
     every forward answered, the RSS "at N"; when all ended, their events
     were delivered and C{--linger} seconds passed (the SIP transactions
     of their last requests hold them for 64*T1 = 32 s), the RSS with the
     ended sessions kept for the API ("kept"); once C{[api]
     keep_ended_for} (C{--keep-for}) has expired them all, the RSS
     "after".

Printed per wave: baseline, RSS at N, KiB per session ((at N - baseline) /
N), the ended sessions kept and the RSS then, the RSS after expiry and its
difference to the baseline, VmHWM.

How "back to baseline" is judged: CPython's allocator keeps freed memory
for reuse (a 1 MiB arena goes back to the OS only when every object in it
is freed, and a few long-lived objects made during a wave pin many of
them; glibc's malloc keeps freed pages too), so the RSS after the first
wave does not fall to the baseline.  What must hold is that a second
wave of N sessions reuses that memory: its peak RSS and its RSS after do
not exceed the first wave's by more than 5 % of one wave's growth (a leak
of what a session holds would add about KiB/session x N per wave).  The
table's last line says whether they did.  With C{--tracemalloc}, the
growth of the live Python objects from the first baseline to after the
last wave is printed too: the memory that did not come back at all.

C{--tracemalloc FRAMES} runs the server with C{PYTHONTRACEMALLOC=FRAMES}
(RSS numbers are then inflated by tracemalloc's own bookkeeping, and the
server is slower) and a C{sitecustomize} (written to the run's directory)
that dumps a snapshot on SIGUSR2; the bench prints, by file and by line,
the growth from the baseline to N concurrent per session, what one kept
ended session holds (kept - after, per kept session), and the growth from
the first baseline to after the last wave.

Every wait is bounded; every process is killed at the end.  Not a test:
run it by hand; README.rst records a run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common import HERE, free_port, machine, raise_nofile, status_kib, use_repository

use_repository()

from abuse_server import start_server, stop_process, wait_ready  # noqa: E402
from signalling import SERVER, SRC_XML, SRS_XML, app_stats, pin, write_config  # noqa: E402

#: Ports per forwarded session: 2 streams x (inbound + forward leg) x
#: (RTP + RTCP).
PORTS_PER_SESSION = 8
#: The RTP port range starts here (below the Linux ephemeral range and
#: below bench/signalling.py's 28000-31999).
RTP_FIRST = 10000
#: Events per forwarded call: SESSIONSTARTED, SIPRECFORWARDSTARTED,
#: SIPRECFORWARDSTOPPED, SESSIONCOMPLETED.
EVENTS_PER_CALL = 4

SITECUSTOMIZE = '''
"""Written by bench/memory.py: SIGUSR2 dumps a tracemalloc snapshot."""
import os, signal, tracemalloc

def _dump(signum, frame):
    directory = os.environ["AICONNECT_BENCH_SNAPSHOTS"]
    count = len([n for n in os.listdir(directory) if n.endswith(".snap")])
    path = os.path.join(directory, "%03d.snap" % count)
    tracemalloc.take_snapshot().dump(path + ".tmp")
    os.rename(path + ".tmp", path)

if os.environ.get("AICONNECT_BENCH_SNAPSHOTS"):
    signal.signal(signal.SIGUSR2, _dump)
'''


def set_keys(text: str, section: str, keys: dict[str, str]) -> str:
    """
    C{text} (TOML) with C{keys} (name -> TOML value) set in C{[section]}:
    an existing line of the key is replaced, else the key is added.

    @raise ValueError: C{text} has no C{[section]}.
    """
    start = text.index("\n[%s]\n" % section) + len(section) + 4
    end = text.find("\n[", start)
    end = len(text) if end < 0 else end
    body = text[start:end]
    for name, value in keys.items():
        line = "%s = %s" % (name, value)
        body, found = re.subn(r"(?m)^%s\s*=.*$" % re.escape(name), line, body)
        if not found:
            body = line + "\n" + body
    return text[:start] + body + text[end:]


def metrics(port: int) -> dict[str, float]:
    """
    The server's C{/metrics} gauges (name -> value, labels dropped); empty
    when it does not answer within 10 s (busy).
    """
    out: dict[str, float] = {}
    try:
        with urllib.request.urlopen("http://%s:%d/metrics" % (SERVER, port), timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _sep, value = line.rpartition(" ")
            try:
                out[name.split("{")[0]] = float(value)
            except ValueError:
                continue
    return out


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> bool:
    """
    Poll C{check} every 0.2 s for at most C{timeout} s; say so on stderr if
    it never held.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    print("  timed out waiting for %s" % what, file=sys.stderr)
    return False


@dataclass
class Wave:
    """
    One wave's measures (KiB).
    """

    sessions: int
    baseline: int
    at_n: int = 0
    active: int = 0
    forwarding: int = 0
    kept: int = 0
    ended_kept: int = 0
    after: int = 0
    hwm: int = 0
    snapshots: list[Path] = field(default_factory=list)

    @property
    def per_session(self) -> float:
        return (self.at_n - self.baseline) / self.sessions

    @property
    def peak(self) -> int:
        return max(self.at_n, self.kept, self.after)


class Bench:
    """
    The processes of one run and the steps it takes.
    """

    def __init__(self, args: argparse.Namespace, base: Path) -> None:
        self.args = args
        self.base = base
        self.sip_port, self.app_port, self.srs_port, self.api_port = free_port(), free_port(), free_port(), free_port()
        self.server: subprocess.Popen[bytes] | None = None
        self.snapshots = base / "snapshots"
        self.processes: list[subprocess.Popen[bytes]] = []

    def config(self) -> Path:
        """
        bench/signalling.py's configuration with the REST API on, no media
        timeout (no RTP is sent), an RTP range for every session's ports,
        and a short C{keep_ended_for}.
        """
        ports = PORTS_PER_SESSION * self.args.sessions + 200
        rtp = (RTP_FIRST, RTP_FIRST + ports - 1)
        path = write_config(self.base, self.sip_port, self.app_port, self.srs_port, rtp, "")
        text = path.read_text()
        api = {"port": str(self.api_port)}
        if self.args.keep_for > 0:
            api["keep_ended_for"] = repr(float(self.args.keep_for))
        text = set_keys(text, "api", api)
        text = set_keys(text, "rtp", {"media_timeout": "0"})
        path.write_text(text)
        return path

    def start(self) -> bool:
        """
        Start the application, the SRS and the server; whether the server
        answers.
        """
        args = self.args
        app = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "signalling_app.py"), str(self.app_port)],
            stderr=open(self.base / "app.log", "wb"),
        )
        srs = subprocess.Popen(
            [args.sipp, "-sf", SRS_XML, "-i", SERVER, "-p", str(self.srs_port), "-mp", str(free_port()), "-nostdin",
             "-max_recv_loops", "10000", "-max_sched_loops", "10000"],
            cwd=self.base, stdout=subprocess.DEVNULL, stderr=open(self.base / "srs.err", "wb"),
        )  # fmt: skip
        self.processes += [app, srs]
        for proc in (app, srs):
            pin(proc.pid, 1)
        config = self.config()
        saved = dict(os.environ)
        if args.tracemalloc:
            probe = self.base / "probe"
            probe.mkdir()
            (probe / "sitecustomize.py").write_text(SITECUSTOMIZE)
            self.snapshots.mkdir()
            os.environ["PYTHONPATH"] = str(probe) + os.pathsep + os.environ.get("PYTHONPATH", "")
            os.environ["PYTHONTRACEMALLOC"] = str(args.tracemalloc)
            os.environ["AICONNECT_BENCH_SNAPSHOTS"] = str(self.snapshots)
        try:
            self.server = start_server(self.base, config, args.reactor)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        pin(self.server.pid, 0)
        return wait_ready(self.server, self.sip_port, 30)

    def stop(self) -> None:
        """
        Kill what was started.
        """
        for proc in self.processes:
            proc.kill()
            proc.wait(5)
        if self.server is not None:
            stop_process(self.server, 30)

    def rss(self) -> dict[str, int]:
        """
        The server's VmRSS and VmHWM (KiB).
        """
        assert self.server is not None
        return status_kib(self.server.pid, ("VmRSS", "VmHWM"))

    def snapshot(self) -> Path | None:
        """
        Ask the server for a tracemalloc snapshot (with C{--tracemalloc});
        its file once written.
        """
        if not self.args.tracemalloc or self.server is None:
            return None
        before = len(list(self.snapshots.glob("*.snap")))
        self.server.send_signal(signal.SIGUSR2)
        path = self.snapshots / ("%03d.snap" % before)
        return path if wait_for("a snapshot", path.exists, 120) else None

    def calls(self, count: int, hold_ms: int, name: str) -> subprocess.Popen[bytes]:
        """
        SIPp as the SRC: C{count} forwarded calls at C{--rate}, at most
        C{count} open, each held C{hold_ms}.
        """
        args = self.args
        directory = self.base / name
        directory.mkdir()
        argv = [
            args.sipp, "%s:%d" % (SERVER, self.sip_port),
            "-sf", SRC_XML, "-key", "domain", "fwd.bench.test",
            "-i", SERVER, "-p", str(free_port()), "-mp", str(free_port()),
            "-r", str(args.rate), "-m", str(count), "-d", str(hold_ms), "-l", str(count),
            "-nostdin", "-timeout", "%ds" % (count / args.rate + hold_ms / 1000 + 120), "-timeout_error",
            "-max_recv_loops", "10000", "-max_sched_loops", "10000",
        ]  # fmt: skip
        sipp = subprocess.Popen(argv, cwd=directory, stdout=subprocess.DEVNULL, stderr=open(directory / "sipp.err", "wb"))
        pin(sipp.pid, 1)
        return sipp

    def settle(self, sipp: subprocess.Popen[bytes], events_before: int, count: int, timeout: float) -> None:
        """
        Wait for SIPp to end, no session to be live and the events of the
        calls to be delivered; then C{--settle} seconds.
        """
        try:
            sipp.wait(timeout)
        except subprocess.TimeoutExpired:
            print("  SIPp still running: killed", file=sys.stderr)
            sipp.kill()
            sipp.wait(5)
        want = events_before + EVENTS_PER_CALL * count
        wait_for("the sessions to end", lambda: metrics(self.api_port).get("aiconnect_sessions_active", 1) == 0, 120)
        wait_for("the events", lambda: app_stats(self.app_port, 0)["total"] >= want, 120)
        time.sleep(self.args.settle)

    def expire(self) -> None:
        """
        Wait until no ended session is kept (C{keep_ended_for}), then
        C{--settle} seconds; at once with C{--keep-for 0} (the server's
        own retention).
        """
        if self.args.keep_for <= 0:
            return
        wait_for("the ended sessions to expire", lambda: metrics(self.api_port).get("aiconnect_sessions_ended_kept", 1) == 0, self.args.keep_for + 60)
        time.sleep(self.args.settle)

    def warm_up(self) -> int:
        """
        C{--warmup} calls; the baseline RSS (KiB) once they ended and
        expired.
        """
        events = app_stats(self.app_port, 0)["total"]
        sipp = self.calls(self.args.warmup, 1000, "warmup")
        self.settle(sipp, events, self.args.warmup, self.args.warmup / self.args.rate + 60)
        self.expire()
        return self.rss()["VmRSS"]

    def wave(self, index: int, baseline: int) -> Wave:
        """
        One wave of C{--sessions} concurrent forwarded sessions.
        """
        args = self.args
        n = args.sessions
        wave = Wave(n, baseline)
        snap = self.snapshot()
        wave.snapshots += [snap] if snap else []
        events = app_stats(self.app_port, 0)["total"]
        answered = metrics(self.api_port).get("aiconnect_forward_answered", 0)
        ramp = n / args.rate
        hold_ms = int(1000 * (ramp + args.plateau))
        started = time.monotonic()
        sipp = self.calls(n, hold_ms, "wave%d" % index)

        def all_up() -> bool:
            m = metrics(self.api_port)
            wave.active = int(m.get("aiconnect_sessions_active", 0))
            wave.forwarding = int(m.get("aiconnect_forward_answered", 0) - answered)
            return wave.active >= n and wave.forwarding >= n

        wait_for("%d sessions up" % n, all_up, ramp + args.plateau)
        wave.at_n = self.rss()["VmRSS"]
        print("  wave %d: %d active, %d forwarding after %.1f s; RSS %d KiB" % (index, wave.active, wave.forwarding, time.monotonic() - started, wave.at_n), file=sys.stderr)
        snap = self.snapshot()
        wave.snapshots += [snap] if snap else []
        self.settle(sipp, events, n, ramp + hold_ms / 1000 + 150)
        # The SIP transactions of the calls' last requests hold their
        # dialogs for 64*T1 = 32 s (Timers J, K, M): wait until they let go.
        time.sleep(args.linger)
        m = metrics(self.api_port)
        wave.kept, wave.ended_kept = self.rss()["VmRSS"], int(m.get("aiconnect_sessions_ended_kept", 0))
        snap = self.snapshot()
        wave.snapshots += [snap] if snap else []
        self.expire()
        status = self.rss()
        wave.after, wave.hwm = status["VmRSS"], status["VmHWM"]
        snap = self.snapshot()
        wave.snapshots += [snap] if snap else []
        return wave


def print_table(waves: list[Wave]) -> None:
    """
    The measures of each wave, and the verdict on returning to baseline.
    """
    head = (
        "wave  sessions  baseline KiB  RSS at N KiB  KiB/session  ended kept  RSS kept KiB  "
        "RSS after KiB  after-baseline KiB  VmHWM KiB"
    )
    print(head)
    print("-" * len(head))
    for i, w in enumerate(waves, 1):
        print(
            "%4d  %8d  %12d  %12d  %11.1f  %10d  %12d  %13d  %18d  %9d"
            % (i, w.sessions, w.baseline, w.at_n, w.per_session, w.ended_kept, w.kept,
               w.after, w.after - w.baseline, w.hwm)
        )  # fmt: skip
    if len(waves) > 1:
        first, last = waves[0], waves[-1]
        # A leak of what a session holds would grow every wave by about
        # per_session x N; allow 5 % of one wave's growth for allocator noise.
        slack = 0.05 * max(first.at_n - first.baseline, 0)
        grew = last.peak - first.peak
        print(
            "wave %d vs wave 1: peak RSS %+d KiB, RSS after %+d KiB (allowed: %d): %s"
            % (len(waves), grew, last.after - first.after, slack,
               "memory reused, no growth" if max(grew, last.after - first.after) <= slack else "GREW (leak?)")
        )  # fmt: skip


def print_growth(title: str, snap: tracemalloc.Snapshot, base: tracemalloc.Snapshot, per: int, top: int) -> None:
    """
    The allocation sites (and files) that grew most from C{base} to
    C{snap}, divided by C{per}.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + "/"
    for key, count in (("filename", 12), ("lineno", top)):
        stats = snap.compare_to(base, key)
        if key == "filename":
            total = sum(s.size_diff for s in stats)
            print("\ntracemalloc, growth %s: %.1f KiB" % (title, total / per / 1024))
        print("  bytes  blocks  %s" % ("file" if key == "filename" else "line"))
        for s in stats[:count]:
            frame = s.traceback[0]
            where = frame.filename.replace(root, "") + ("" if key == "filename" else ":%d" % frame.lineno)
            print("%7.0f  %6.1f  %s" % (s.size_diff / per, s.count_diff / per, where))


def print_sites(waves: list[Wave], top: int) -> None:
    """
    From the first wave's snapshots (baseline, at N, ended kept, after):
    the growth per live session and per kept ended session; and what the
    last wave left above the first baseline.
    """
    first, last = waves[0], waves[-1]
    if len(first.snapshots) < 4 or len(last.snapshots) < 4:
        return
    base, at_n, kept, after = (tracemalloc.Snapshot.load(str(p)) for p in first.snapshots)
    print_growth("from the baseline to N concurrent, per session", at_n, base, first.sessions, top)
    if first.ended_kept:
        print_growth("of the ended sessions kept, per kept session", kept, after, first.ended_kept, top)
    print_growth("from the first baseline to after the last wave, total", tracemalloc.Snapshot.load(str(last.snapshots[3])), base, 1, top)


def run(args: argparse.Namespace) -> int:
    base = Path(tempfile.mkdtemp(prefix="aiconnect-memory-"))
    bench = Bench(args, base)
    waves: list[Wave] = []
    try:
        if not bench.start():
            print("the server did not start; see %s" % (base / "server.log"), file=sys.stderr)
            return 2
        print(
            "# %s; SIPp %s; reactor %s; %d sessions at %d/s, %d waves, keep_ended_for %g s%s"
            % (machine(True), args.sipp, args.reactor, args.sessions, args.rate, args.waves, args.keep_for,
               ", PYTHONTRACEMALLOC=%d (RSS inflated)" % args.tracemalloc if args.tracemalloc else "")
        )  # fmt: skip
        baseline = bench.warm_up()
        print("  baseline after %d warm-up calls: %d KiB" % (args.warmup, baseline), file=sys.stderr)
        for index in range(1, args.waves + 1):
            waves.append(bench.wave(index, baseline))
        print_table(waves)
        if args.tracemalloc:
            print_sites(waves, args.top)
        print("server: " + json.dumps({k: v for k, v in metrics(bench.api_port).items() if "sessions" in k or "rtp_ports" in k}))
    finally:
        bench.stop()
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    else:
        print("files kept in %s" % base)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000, help="concurrent forwarded sessions per wave")
    parser.add_argument("--rate", type=int, default=50, help="new calls per second")
    parser.add_argument("--waves", type=int, default=2, help="waves of --sessions (2+: is memory reused?)")
    parser.add_argument("--warmup", type=int, default=20, help="calls before the baseline")
    parser.add_argument("--plateau", type=float, default=15.0, help="seconds all sessions are up at once (at most)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds waited before reading RSS after an end")
    parser.add_argument("--linger", type=float, default=40.0, help="seconds waited after the sessions ended before 'RSS kept' (> 64*T1)")
    parser.add_argument("--keep-for", type=float, default=None, help="[api] keep_ended_for of the server, seconds (default: long enough to read 'RSS kept'); 0 = not set (the server's own, e.g. before the key existed)")
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES", help="trace the server's allocations")
    parser.add_argument("--top", type=int, default=25, help="allocation sites printed with --tracemalloc")
    parser.add_argument("--reactor", default="aiconnect-epoll")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (logs, SIPp files)")
    args = parser.parse_args()
    if args.keep_for is None:
        args.keep_for = args.sessions / args.rate + args.linger + args.settle + 30
    args.sipp = shutil.which("sipp")
    if args.sipp is None:
        print("sipp is not on PATH (Debian: apt-get install sip-tester)", file=sys.stderr)
        return 2
    if raise_nofile() < PORTS_PER_SESSION * args.sessions + 1000:
        print("the file descriptor limit is too low for %d sessions" % args.sessions, file=sys.stderr)
        return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
