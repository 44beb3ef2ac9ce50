"""
Output capacity benchmark: how many calls one core carries with streams
and recordings (issue 10).

    python bench/outputs.py                         # both modes, < 5 min
    python bench/outputs.py --modes outputs --start 300 --quick

The process layout of C{bench/relay.py} (whose generator, RTP sink, pinning
and priority this reuses), plus a WebSocket consumer:

  - B{relay}, pinned to CPU 0: the real L{aiconnect.media.relay.MediaRelay}
    on the relay reactor; N calls of 2 inbound PCMU streams, each with one
    PCMU forward of 2 streams to the RTP sink (C{bench/relay.py}'s C{plain}
    mode).  In mode C{outputs} each call also has, built as in
    C{tests/outputs/}, a L{aiconnect.outputs.stream.StreamLeg} (C{raw},
    L16 8 kHz, tracks C{both}: 640-octet binary messages every 20 ms) to
    the consumer and a L{aiconnect.outputs.recording.RecordingLeg} (L16
    stereo) into a temporary directory, removed afterwards.  Both take the
    session's frames from its PCM tap (C{MediaSession.attach_pcm}).
  - B{generator} and B{RTP sink} (C{bench/relay.py}), pinned to CPU 1.
  - B{consumer} (C{bench/outputs_ws.py}), pinned to CPU 1: a minimal
    WebSocket reader on raw sockets that notes the kernel receive time of
    every binary message.

Modes: C{forward} (forwarding only: C{bench/relay.py}'s C{plain}, the
figure to compare with) and C{outputs} (forward + stream + recording).  A
trial passes with RTP loss < 0.1 % and, for C{forward}, RTP p99 latency <
5 ms as in C{bench/relay.py}; for C{outputs}, frame loss < 0.1 %, p99
frame lateness < 20 ms (the issue's bound) and RTP p99 < 20 ms (the frame
timer holds the reactor for a while every 20 ms), and no output failed.

Frame lateness: see C{bench/outputs_ws.py} (arrival of frame k minus the
connection's frame grid, i.e. jitter of frame delivery).  Frame loss:
frames due in the measured window (N x window / 20 ms) minus those
received, plus the frames the streams dropped and the PCM taps skipped
meanwhile (their counters read 0.1 s before and after the window).

The search (double from C{--start}, then bisect; a trial whose generator
lagged is run once more; at most 12 trials per mode; C{--budget}) and the
debugging aid C{BENCH_PROFILE=file} (cProfile of the relay process, read
with C{python -m pstats}) are C{bench/relay.py}'s.

Not a test: it prints a table; README.rst and docs/media.md record a run.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from multiprocessing.connection import Connection
from typing import Any

from common import cpu_ticks, machine, raise_nofile, rss_kib, use_repository
from outputs_ws import FRAME_NS, ws_server_main
from relay import LAG_LIMIT_MS, LOAD_CPU, MAX_LOSS, RELAY_CPU, _pct, _pin, _prioritize, generator_main, passes, sink_main

use_repository()

MODES = ("forward", "outputs")
MAX_LATENESS_MS = 20.0
TENANT = "bench.example.com"


# -- relay process --------------------------------------------------------------


class _Observer:
    """
    An L{aiconnect.legs.OutputObserver} that counts (and keeps the first
    failure reasons and the recordings' reports).
    """

    def __init__(self) -> None:
        self.started = 0
        self.stopped = 0
        self.failures: list[str] = []
        self.recordings: list[dict[str, Any]] = []

    def output_started(self, output_id: str, detail: Any) -> None:
        self.started += 1

    def output_failed(self, output_id: str, reason: str) -> None:
        self.failures.append("%s: %s" % (output_id[:3], reason))

    def output_stopped(self, output_id: str, stopped_by: str, detail: Any) -> None:
        self.stopped += 1
        if output_id.startswith("rec_"):
            self.recordings.append(dict(detail))

    def output_uploaded(self, output_id: str, url: str, status: int | str) -> None:
        pass


def _no_tls(host: str) -> Any:
    raise AssertionError("the benchmark streams over ws://")


def _outputs(reactor: Any, sessions: list, ws_port: int, directory: str, observer: _Observer) -> tuple[list, list]:
    """
    Start a stream and a recording on every session (through the real
    classes, as C{tests/outputs/} builds them).
    """
    from aiconnect.call_outputs import new_recording_id, new_stream_id
    from aiconnect.config.records import RecordingConfig, StreamsConfig
    from aiconnect.outputs.audio import Parties
    from aiconnect.outputs.context import OutputContext
    from aiconnect.outputs.orders import RecordingOrder, StreamOrder
    from aiconnect.outputs.recording import RecordingLeg
    from aiconnect.outputs.stream import StreamLeg

    order = StreamOrder(url="ws://127.0.0.1:%d/audio" % ws_port, tracks="both", format="L16", protocol="raw")
    recording_order = RecordingOrder(tracks="both", encoding="L16")
    streams_config, recording_config = StreamsConfig(), RecordingConfig(directory=directory)
    streams, recordings = [], []
    for c, session in enumerate(sessions):
        context = OutputContext("sess_%d" % c, TENANT, "call-%d@bench" % c, (), Parties(0, 1))
        stream = StreamLeg(reactor, observer, new_stream_id(), order, context, session, streams_config, _no_tls)
        recording = RecordingLeg(reactor, observer, new_recording_id(time.time()), recording_order, context,
                                 session, recording_config, None)  # fmt: skip
        recording.start()
        stream.start()
        streams.append(stream)
        recordings.append(recording)
    return streams, recordings


def _counters(sessions: list, streams: list, recordings: list) -> dict[str, int]:
    """
    The PCM taps', streams' and recordings' counters, summed.
    """
    out = dict.fromkeys(("tap_frames", "skipped", "late_packets", "sent", "dropped", "recorded"), 0)
    for session in sessions:
        tap = session.pcm
        if tap is not None:
            out["tap_frames"] += tap.frames
            out["skipped"] += tap.skipped_frames
            out["late_packets"] += tap.late_packets
    for stream in streams:
        stats = stream.stats()
        out["sent"] += stats["frames"]
        out["dropped"] += stats["dropped"]
    for recording in recordings:
        out["recorded"] += recording.stats()["frames"]
    return out


def relay_main(conn: Connection, n: int, sinks: list, ws_port: int, directory: str, lifetime: float) -> None:
    """
    The relay process: N forwarded calls (and, with C{ws_port}, their
    outputs); sends its ports once every output started, then takes the
    window (counters read around it) and "stop".
    """
    _pin(RELAY_CPU)
    raise_nofile()
    _prioritize()
    from twisted.internet.main import installReactor

    from aiconnect.media.relay import MediaRelay, RelayEPollReactor

    installReactor(RelayEPollReactor())
    from twisted.internet import reactor

    import aiconnect.outputs.recording
    import aiconnect.outputs.stream  # noqa: F401  (their memory is not the calls')

    rss0 = rss_kib()
    relay = MediaRelay(reactor, "127.0.0.1", 20000, 59999, media_timeout=0, rtcp_interval=5.0)
    inbound, forward, sessions = [], [], []
    for c in range(n):
        session = relay.allocate_session(2)
        fw = session.add_forward("srs", 2)
        for i in range(2):
            session.set_inbound(i, latch_host="127.0.0.1", payload_map={0: "PCMU"})
            fw.connect(i, tuple(sinks[(2 * c + i) % len(sinks)]), codec="PCMU", payload_type=0)
            inbound.append(session.streams[i].rtp_port)
            forward.append(fw.streams[i].rtp_port)
        sessions.append(session)
    observer = _Observer()
    streams: list = []
    recordings: list = []
    if ws_port:
        streams, recordings = _outputs(reactor, sessions, ws_port, directory, observer)
    report: dict[str, Any] = {}
    waited = [0]

    def ready() -> None:
        # Every output started (or failed), or 30 s: the controller may go.
        if observer.started + len(observer.failures) < 2 * len(streams) and waited[0] < 600:
            waited[0] += 1
            reactor.callLater(0.05, ready)
            return
        conn.send({"inbound": inbound, "forward": forward, "rss0": rss0, "pid": os.getpid(),
                   "started": observer.started, "failures": observer.failures[:3]})  # fmt: skip
        reactor.callLater(0.05, orders)

    def orders() -> None:
        if not conn.poll():
            reactor.callLater(0.05, orders)
            return
        order = conn.recv()
        if order == "stop":
            for leg in streams + recordings:
                leg.stop("shutdown")
            finish(time.monotonic() + 15.0)
            return
        for key, at in (("before", order[0] - 100_000_000), ("after", order[1] + 100_000_000)):
            delay = max(0.0, (at - time.monotonic_ns()) / 1e9)
            reactor.callLater(delay, lambda key=key: report.update({key: _counters(sessions, streams, recordings)}))
        reactor.callLater(0.05, orders)

    def finish(deadline: float) -> None:
        # Wait (bounded) for every output's stop report, then check the
        # files against what the recordings said they wrote.
        if observer.stopped + len(observer.failures) < 2 * len(streams) and time.monotonic() < deadline:
            reactor.callLater(0.05, finish, deadline)
            return
        files_ok = 0
        for detail in observer.recordings:
            if os.path.getsize(detail["file"]) == detail["bytes"]:
                files_ok += 1
        report.update(stopped=observer.stopped, failures=observer.failures[:3], files_ok=files_ok,
                      failed=len(observer.failures), recorded_bytes=sum(d["bytes"] for d in observer.recordings))  # fmt: skip
        conn.send(report)
        relay.close()
        reactor.stop()

    reactor.callWhenRunning(ready)
    reactor.callLater(lifetime, reactor.stop)
    if os.environ.get("BENCH_PROFILE"):
        import cProfile

        cProfile.runctx("reactor.run()", globals(), {"reactor": reactor}, os.environ["BENCH_PROFILE"])
    else:
        reactor.run()


# -- controller -------------------------------------------------------------------


def _recv(conn: Connection, timeout: float, what: str) -> Any:
    if not conn.poll(timeout):
        raise RuntimeError(what)
    return conn.recv()


def trial(mode: str, n: int, warmup: float, measure: float, spin: bool = True) -> dict:
    """
    One trial of C{n} calls; the numbers of L{_line}.
    """
    ctx = mp.get_context("spawn")
    directory = tempfile.mkdtemp(prefix="aiconnect-bench-")
    sink_parent, sink_child = ctx.Pipe()
    relay_parent, relay_child = ctx.Pipe()
    gen_parent, gen_child = ctx.Pipe()
    ws_parent, ws_child = ctx.Pipe()
    procs = []
    measure = round(measure * 50) / 50  # whole frames
    try:
        sink = ctx.Process(target=sink_main, args=(sink_child, "plain", spin))
        sink.start()
        procs.append(sink)
        sinks = _recv(sink_parent, 30, "sink did not start")
        ws_port = 0
        if mode == "outputs":
            ws = ctx.Process(target=ws_server_main, args=(ws_child, functools.partial(_pin, LOAD_CPU), spin))
            ws.start()
            procs.append(ws)
            ws_port = _recv(ws_parent, 30, "consumer did not start")
        relay = ctx.Process(target=relay_main,
                            args=(relay_child, n, sinks, ws_port, directory, 120.0 + warmup + measure))  # fmt: skip
        relay.start()
        procs.append(relay)
        info = _recv(relay_parent, 90, "relay did not start")
        t0 = time.monotonic_ns() + 300_000_000
        w0 = t0 + int(warmup * 1e9)
        w1 = w0 + int(measure * 1e9)
        offset = time.time_ns() - time.monotonic_ns()
        real = (w0 + offset, w1 + offset)
        sink_parent.send({"keys": {}, "window": (w0, w1), "real_window": real, "end": w1 + 500_000_000})
        relay_parent.send((w0, w1))
        if ws_port:
            ws_parent.send({"real_window": real, "end": w1 + 500_000_000})
        gen = ctx.Process(target=generator_main, args=(gen_child, info["inbound"], t0, w1))
        gen.start()
        procs.append(gen)
        pids = (info["pid"], _recv(gen_parent, 30, "generator did not start"), sink.pid)
        time.sleep(max(0.0, (w0 - time.monotonic_ns()) / 1e9))
        ticks0, c0 = [cpu_ticks(p) for p in pids], time.monotonic()
        time.sleep(max(0.0, (w1 - time.monotonic_ns()) / 1e9))
        ticks1, c1 = [cpu_ticks(p) for p in pids], time.monotonic()
        rss1 = rss_kib(info["pid"])
        g = _recv(gen_parent, 30, "generator did not finish")
        k = _recv(sink_parent, 30, "sink did not finish")
        w = _recv(ws_parent, 30, "consumer did not finish") if ws_port else {}
        time.sleep(0.15)  # the counters after the window
        relay_parent.send("stop")
        report = _recv(relay_parent, 30, "relay did not stop")
        relay.join(20)  # BENCH_PROFILE writes its file on the way out
        if ws_port:
            ws_parent.send("quit")
        hz = os.sysconf("SC_CLK_TCK")
        r = {
            "mode": mode,
            "n": n,
            "cpu": _pct(ticks0[0], ticks1[0], hz, c1 - c0),
            "cpu_user": (ticks1[0][0] - ticks0[0][0]) / hz / (c1 - c0) * 100.0,
            "cpu_load": _pct(ticks0[1], ticks1[1], hz, c1 - c0) + _pct(ticks0[2], ticks1[2], hz, c1 - c0),
            "rss_per_call_kib": (rss1 - info["rss0"]) / n,
            "gen_lag_ms": g["max_lag_ms"],
            "loss": max(0.0, 1.0 - k["received"] / g["sent"]) if g["sent"] else 1.0,
            "p50": k["p50"],
            "p99": k["p99"],
            "bad": k["bad"],
            "failed": report["failed"] + 2 * n - info["started"] if ws_port else 0,
            "failures": report["failures"] or info["failures"],
        }
        if ws_port:
            before, after = report["before"], report["after"]
            expected = n * int(round(measure * 1e9 / FRAME_NS))
            lost = max(0, expected - w["received"]) + (after["dropped"] - before["dropped"]) \
                + (after["skipped"] - before["skipped"])  # fmt: skip
            r.update(frame_loss=lost / expected, f50=w["f50"], f99=w["f99"], fmax=w["fmax"],
                     connections=w["connections"], files_ok=report["files_ok"], late_packets=after["late_packets"] - before["late_packets"])  # fmt: skip
        return r
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join(5)
        shutil.rmtree(directory, ignore_errors=True)


def passes_outputs(r: dict) -> bool:
    """
    The capacity criterion of a mode (see the module's docstring).
    """
    if r["mode"] == "forward":
        return passes(r)
    return (
        r["loss"] < MAX_LOSS
        and r["p99"] < MAX_LATENESS_MS
        and r["bad"] == 0
        and r["failed"] == 0
        and r["frame_loss"] < MAX_LOSS
        and r["f99"] < MAX_LATENESS_MS
    )


def _line(r: dict) -> str:
    text = (
        f"{r['mode']:>7} {r['n']:>5} calls: {'pass' if passes_outputs(r) else 'FAIL'}  relay cpu {r['cpu']:5.1f}% (user {r['cpu_user']:4.1f}%)  "
        f"rtp p50 {r['p50']:5.2f} p99 {r['p99']:6.2f} ms loss {r['loss'] * 100:5.3f}%  "
        f"rss/call {r['rss_per_call_kib']:5.1f} KiB  load cpu {r['cpu_load']:5.1f}%"
    )
    if "f99" in r:
        text += (
            f"  frames p50 {r['f50']:5.2f} p99 {r['f99']:6.2f} max {r['fmax']:6.1f} ms loss {r['frame_loss'] * 100:5.3f}%"
            f"  ws {r['connections']} wav ok {r['files_ok']} late pkts {r['late_packets']}"
        )
    if r["failed"]:
        text += f"  {r['failed']} outputs failed: {r['failures']}"
    return text + ("  GENERATOR LAGGED" if r["gen_lag_ms"] > LAG_LIMIT_MS else "")


def search(mode: str, args: argparse.Namespace, deadline: float) -> tuple[dict | None, int]:
    """
    Largest passing N (multiple of --step): double from --start, then
    bisect; bounded by --max-calls, 12 trials and the deadline.

    @return: the best trial (or C{None}) and the smallest N tried.
    """
    best: dict | None = None
    low, high = 0, None
    n = smallest = args.start
    for _ in range(12):
        if time.monotonic() > deadline:
            print(f"{mode:>7}: time budget spent, stopping the search")
            break
        smallest = min(smallest, n)
        r = trial(mode, n, args.warmup, args.measure, args.sink == "spin")
        print(_line(r), flush=True)
        if not passes_outputs(r) and r["gen_lag_ms"] > LAG_LIMIT_MS and time.monotonic() < deadline:
            r = trial(mode, n, args.warmup, args.measure, args.sink == "spin")
            print(_line(r) + "  (rerun)", flush=True)
        if passes_outputs(r):
            low, best = n, r
        else:
            high = n
        if args.quick or (high is None and n >= args.max_calls):
            break
        n = min(args.max_calls, n * 2) if high is None else (low + high) // 2 // args.step * args.step
        if high is not None and n <= low:
            break
    return best, smallest


def _row(mode: str, r: dict | None, smallest: int) -> str:
    """
    A mode's row of the summary table (Markdown).
    """
    if r is None:
        return f"| {mode} | < {smallest} |" + " |" * 8
    cells = [str(r["n"]), f"{r['cpu']:.0f}", f"{r['p50']:.2f}", f"{r['p99']:.2f}", f"{r['loss'] * 100:.3f}"]
    if "f99" in r:
        cells += [f"{r['f50']:.2f}", f"{r['f99']:.2f}", f"{r['frame_loss'] * 100:.3f}"]
    else:
        cells += ["-"] * 3
    return "| " + " | ".join([mode, *cells, f"{r['rss_per_call_kib']:.1f}"]) + " |"


#: The search's options (as C{bench/relay.py}'s): flag, type, default, help.
_SEARCH_OPTIONS = (
    ("--start", int, 200, "first N tried"),
    ("--step", int, 50, "granularity of N"),
    ("--max-calls", int, 1600, "the largest N tried"),
    ("--warmup", float, 1.5, "seconds before measuring"),
    ("--measure", float, 4.0, "seconds measured"),
    ("--budget", float, 280.0, "seconds for the whole sweep"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: forward,outputs")
    for flag, kind, default, text in _SEARCH_OPTIONS:
        parser.add_argument(flag, type=kind, default=default, help=text)
    parser.add_argument("--sink", choices=("spin", "epoll"), default="spin",
                        help="spin: the RTP sink and the consumer poll in a sleep loop (default)")  # fmt: skip
    parser.add_argument("--priority", choices=("rt", "normal"), default="rt",
                        help="rt: relay and generator run SCHED_FIFO where allowed (default)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="one trial per mode at --start")
    args = parser.parse_args(argv)
    os.environ["BENCH_PRIORITY"] = args.priority
    modes = [m for m in args.modes.split(",") if m]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown mode {unknown[0]!r}")
    started = time.monotonic()
    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine(with_model=True)}\n"
          f"# relay pinned to CPU {RELAY_CPU}, load and consumer to CPU {LOAD_CPU}; sink: {args.sink}, "
          f"priority: {args.priority}")
    results = {}
    for i, mode in enumerate(modes):  # each mode gets its share of what is left
        end = time.monotonic() + (started + args.budget - time.monotonic()) / (len(modes) - i)
        results[mode] = search(mode, args, end)
    print()
    print("| mode | max calls | relay CPU % | RTP p50 ms | RTP p99 ms | RTP loss % "
          "| frame p50 ms | frame p99 ms | frame loss % | RSS/call KiB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(_row(mode, *results[mode]) for mode in modes))
    print(f"\n# sweep took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
