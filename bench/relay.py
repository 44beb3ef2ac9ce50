"""
Relay capacity benchmark: how many calls one core relays within budget.

    python bench/relay.py                       # the whole sweep, < 5 min
    python bench/relay.py --modes srtp --start 400 --quick

Three processes on 127.0.0.1, started with the C{spawn} method:

  - B{relay}: the real L{aiconnect.media.relay.MediaRelay} on
    L{aiconnect.media.relay.RelayEPollReactor} (C{--reactor epoll}: Twisted's
    stock C{EPollReactor}), pinned to CPU 0 (C{os.sched_setaffinity} where the
    OS has it).  N calls, each an inbound session of 2 streams (latching on
    127.0.0.1) with one forward of 2 streams to the sink; media timeout off,
    RTCP sender reports every 5 s as in production.
  - B{generator}, pinned to CPU 1: one 172-octet PCMU packet per stream
    every 20 ms (100 * N packets/s in, as many out), spread evenly over the
    20 ms and sent in 1 ms batches.  The send time (C{CLOCK_REALTIME}, read
    just before C{sendto}) is coded into the payload as 16 hex digits, each
    a μ-law code whose A-law image maps back exactly, so it survives
    transcoding.
  - B{sink}, also on CPU 1: receives the forwards, decrypts SRTP with the
    keys the controller gave the relay (every 4th packet: decrypting all
    would make the sink the bottleneck), and takes the receive time from
    the kernel (C{SO_TIMESTAMPNS}), so the sink's own scheduling does not
    count.  Latency = kernel receive time at the sink - send time: both
    loopback hops included, an upper bound on what the relay adds.  Loss =
    1 - received / sent over the whole run.

Two choices keep the machine's other load out of the numbers; both can be
turned off:

  - C{--priority rt} (default): relay and generator run C{SCHED_FIFO} where
    allowed (else nice -10).  Without it, any other process that lands on
    CPU 0 stalls the relay for milliseconds and the p99 measures that.
    Production can do the same (C{chrt -f 10 twistd ...}).
  - C{--sink spin} (default): the sink polls its sockets in a sleep loop
    instead of sleeping in epoll, so the relay's C{send} does not have to
    wake it (a cross-CPU wake-up, expensive in a VM, that sending to a
    remote SRS would not cost the relay).

Modes: C{plain} (PCMU -> PCMU), C{transcode} (PCMU -> PCMA), C{srtp}
(PCMU -> PCMA, SRTP AES_CM_128_HMAC_SHA1_80 towards the sink, one key per
stream).

For each mode it searches the largest N (a multiple of C{--step}) with loss
< 0.1 % and p99 latency < 5 ms: doubling from C{--start}, then bisecting; a
failed trial in which the generator fell behind by over 20 ms is run once
more.  Every trial is bounded (setup, warm-up, measurement and drain, each
with a timeout), at most 12 trials per mode, and the sweep stops at
C{--budget} seconds.

Debugging aids (environment variables): C{BENCH_PROFILE=file} runs the
relay under cProfile; C{BENCH_PERF=file} attaches C{perf record} to it for
4 s; C{BENCH_GC_LOG=1} prints the relay's garbage collections and timer
ticks.

Not a test: it prints a table, and docs/media.md records one run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import select
import socket
import struct
import sys
import time
from datetime import datetime, timezone
from multiprocessing.connection import Connection

from common import SO_TIMESTAMPNS, cpu_ticks, machine, percentile, raise_nofile, rss_kib, use_repository

use_repository()

RELAY_CPU = 0
LOAD_CPU = 1
FRAME_NS = 20_000_000
PAYLOAD = 160
SINK_SOCKETS = 8
GEN_SOCKETS = 8
MODES = ("plain", "transcode", "srtp")
MAX_LOSS = 0.001
MAX_P99_MS = 5.0
LAG_LIMIT_MS = 20.0


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        try:
            cpus = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {cpu} if cpu in cpus else cpus)
        except OSError:
            pass


def _prioritize() -> str:
    # Keep other load on the machine from preempting the process: realtime
    # FIFO where allowed, else a negative nice, else nothing.  Both relay
    # and generator sleep between packets, so neither hogs its CPU (and the
    # kernel keeps 5 % for everyone else anyway).
    if os.environ.get("BENCH_PRIORITY", "rt") != "rt":
        return "normal"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        return "SCHED_FIFO"
    except (AttributeError, OSError):
        pass
    try:
        os.nice(-10)
        return "nice -10"
    except OSError:
        return "normal"


def _codecs() -> tuple[bytes, bytes, bytes]:
    # The send time travels as 16 hex digits, each mapped to a PCMU code
    # whose PCMA image maps back exactly (G.711 direct tables), so the sink
    # can read it after transcoding: ENCODE (ASCII hex -> PCMU), and DECODE
    # tables for PCMU and PCMA back to ASCII hex.
    from aiconnect.media.g711 import ALAW_TO_ULAW, ULAW_TO_ALAW

    codes = [c for c in range(256) if ALAW_TO_ULAW[ULAW_TO_ALAW[c]] == c][:16]
    digits = b"0123456789abcdef"
    encode = bytearray(range(256))
    dec_u = bytearray(b"?" * 256)
    dec_a = bytearray(b"?" * 256)
    for d, c in zip(digits, codes):
        encode[d] = c
        dec_u[c] = d
        dec_a[ULAW_TO_ALAW[c]] = d
    return bytes(encode), bytes(dec_u), bytes(dec_a)


# -- relay process --------------------------------------------------------------


def relay_main(conn: Connection, mode: str, n: int, sinks: list, keys: list, reactor_name: str,
               lifetime: float) -> None:  # fmt: skip
    _pin(RELAY_CPU)
    raise_nofile()
    _prioritize()
    if reactor_name == "relay":
        from aiconnect.media.relay import RelayEPollReactor
        from twisted.internet.main import installReactor

        installReactor(RelayEPollReactor())
    else:
        from twisted.internet import epollreactor

        epollreactor.install()
    from twisted.internet import reactor

    from aiconnect.media.relay import MediaRelay
    from aiconnect.media.srtp import SrtpParams

    rss0 = rss_kib()
    relay = MediaRelay(reactor, "127.0.0.1", 20000, 59999, media_timeout=0, rtcp_interval=5.0)
    codec, pt = ("PCMU", 0) if mode == "plain" else ("PCMA", 8)
    inbound, forward = [], []
    for c in range(n):
        session = relay.allocate_session(2)
        fw = session.add_forward("srs", 2)
        for i in range(2):
            k = 2 * c + i
            session.set_inbound(i, latch_host="127.0.0.1", payload_map={0: "PCMU"})
            key = SrtpParams("AES_CM_128_HMAC_SHA1_80", keys[k]) if mode == "srtp" else None
            fw.connect(i, tuple(sinks[k % len(sinks)]), codec=codec, payload_type=pt, srtp_tx=key)
            inbound.append(session.streams[i].rtp_port)
            forward.append(fw.streams[i].rtp_port)
    gc_log: list[tuple[int, float]] = []
    if os.environ.get("BENCH_GC_LOG"):
        import gc

        started: list[float] = [0.0]

        def on_gc(phase: str, info: dict) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                gc_log.append((info["generation"], time.perf_counter() - started[0]))

        gc.callbacks.append(on_gc)
        tick = relay._tick

        def timed_tick() -> None:
            t = time.perf_counter()
            tick()
            gc_log.append((-1, time.perf_counter() - t))

        relay._tick = timed_tick  # type: ignore[method-assign]
    conn.send({"inbound": inbound, "forward": forward, "rss0": rss0, "pid": os.getpid()})
    if os.environ.get("BENCH_PERF"):
        import subprocess

        subprocess.Popen(["perf", "record", "-g", "-o", os.environ["BENCH_PERF"], "-p", str(os.getpid()),
                          "--", "sleep", "4"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip

    def done() -> None:
        totals = relay.stats()
        if gc_log:
            for gen in (-1, 0, 1, 2):
                times = [t for g, t in gc_log if g == gen]
                if times:
                    print(f"relay: gen{gen} collections {len(times)}, max {max(times) * 1e3:.2f} ms, "
                          f"total {sum(times) * 1e3:.1f} ms", file=sys.stderr)  # fmt: skip
        relay.close()
        reactor.stop()
        del totals

    reactor.callLater(lifetime, done)

    def stop_requested() -> None:
        # The controller's "stop" on the pipe ends the run early.
        if conn.poll():
            done()
        else:
            reactor.callLater(0.5, stop_requested)

    reactor.callLater(0.5, stop_requested)
    if os.environ.get("BENCH_PROFILE"):
        import cProfile

        cProfile.runctx("reactor.run()", globals(), {"reactor": reactor},
                        os.environ["BENCH_PROFILE"])  # fmt: skip
    else:
        reactor.run()


# -- generator process ----------------------------------------------------------


def generator_main(conn: Connection, targets: list[int], t0_ns: int, t_end_ns: int) -> None:
    _pin(LOAD_CPU)
    raise_nofile()
    _prioritize()
    encode, _, _ = _codecs()
    socks = []
    for _ in range(GEN_SOCKETS):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        s.bind(("127.0.0.1", 0))
        socks.append(s.sendto)
    streams = len(targets)
    step = FRAME_NS / streams
    pack = struct.Struct("!BBHII").pack
    filler = encode[48:49] * (PAYLOAD - 16)
    addrs = [("127.0.0.1", p) for p in targets]
    sent = 0
    errors = 0
    e = 0
    max_lag_ns = 0
    monotonic_ns = time.monotonic_ns
    time_ns = time.time_ns
    conn.send(os.getpid())
    while True:
        now = monotonic_ns()
        if now >= t_end_ns:
            break
        due = int((now - t0_ns) / step)
        if due - e > streams:  # a whole frame behind
            max_lag_ns = max(max_lag_ns, int((due - e) * step))
        while e <= due:
            k = e % streams
            cycle = e // streams
            stamp = b"%016x" % time_ns()
            pkt = pack(0x80, 0, cycle & 0xFFFF, (cycle * 160) & 0xFFFFFFFF, 0x1000 + k)
            try:
                socks[k % GEN_SOCKETS](pkt + stamp.translate(encode) + filler, addrs[k])
                sent += 1
            except OSError:
                errors += 1
            e += 1
        # Sleep to the next millisecond: packets go out in 1 ms batches, so
        # the generator does not spin on the CPU it shares with the sink.
        wait = (t0_ns + e * step - monotonic_ns()) / 1e9
        time.sleep(min(max(wait, 0.0005), 0.001))
    conn.send({"sent": sent, "errors": errors, "max_lag_ms": max_lag_ns / 1e6})


# -- sink process -----------------------------------------------------------------


def sink_main(conn: Connection, mode: str, spin: bool) -> None:
    _pin(LOAD_CPU)
    raise_nofile()
    from aiconnect.media.srtp import SrtpContext, SrtpParams

    _, dec_u, dec_a = _codecs()
    decode = dec_a if mode != "plain" else dec_u
    socks = []
    for _ in range(SINK_SOCKETS):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        socks.append(s)
    conn.send([s.getsockname() for s in socks])
    setup = conn.recv()  # {"keys": {relay_port: key}, "window": (t0, t1), "end": t}
    contexts = {}
    if mode == "srtp":
        for port, key in setup["keys"].items():
            contexts[port] = SrtpContext(SrtpParams("AES_CM_128_HMAC_SHA1_80", key), False)
    w0, w1 = setup["window"]
    t_end_ns = setup["end"]
    poller = select.epoll()
    by_fd = {}
    for s in socks:
        poller.register(s.fileno(), select.EPOLLIN)
        by_fd[s.fileno()] = s.recvmsg
    samples: list[tuple[bytes, bytes]] = []
    received = 0
    bad = 0
    monotonic_ns = time.monotonic_ns
    # Receive only; decode afterwards.  The receive time is the kernel's
    # (SO_TIMESTAMPNS, CLOCK_REALTIME like the generator's stamp), so the
    # sink's own scheduling delay (it shares a CPU with the generator) is
    # not counted.  SRTP packets are sampled (every 4th sequence number):
    # decrypting all of them would make the sink the bottleneck.
    recvmsgs = list(by_fd.values())
    while True:
        now = monotonic_ns()
        if now >= t_end_ns:
            break
        if spin:
            # Poll without sleeping on the sockets (time.sleep between
            # rounds): the relay's send then finds no reader to wake, a
            # cross-CPU wake-up (costly in a VM) that sending to a remote SRS
            # would not cost it either.  The latency is the kernel's receive
            # time, so polling late does not inflate it.
            ready = recvmsgs
        else:
            ready = [by_fd[fd] for fd, _ in poller.poll(0.02)]
        got = received
        for recvmsg in ready:
            while True:
                try:
                    data, anc, _flags, addr = recvmsg(2048, 64)
                except BlockingIOError:
                    break
                received += 1
                if w0 <= now < w1 + 50_000_000:
                    if contexts:
                        if data[3] & 3:
                            continue
                        data = contexts[addr[1]].unprotect(data)
                        if data is None:
                            bad += 1
                            continue
                    samples.append((anc[0][2] if anc else b"", data[12:28]))
        if spin and got == received:
            time.sleep(0.0003)
    latencies = []
    real_w0 = setup["real_window"][0]
    real_w1 = setup["real_window"][1]
    for rx, stamp in samples:
        try:
            t_tx = int(stamp.translate(decode), 16)
        except ValueError:
            bad += 1
            continue
        if len(rx) < 16:
            bad += 1
            continue
        sec, nsec = struct.unpack("qq", rx[:16])
        if real_w0 <= t_tx < real_w1:
            latencies.append(sec * 1_000_000_000 + nsec - t_tx)
    latencies.sort()
    n = len(latencies)

    def pct(q: float) -> float:
        return percentile(latencies, q) / 1e6

    conn.send({"received": received, "samples": n, "bad": bad,
               "p50": pct(0.50), "p99": pct(0.99), "max": pct(1.0)})  # fmt: skip


# -- controller -------------------------------------------------------------------


def _pct(t0: tuple[int, int], t1: tuple[int, int], hz: int, seconds: float) -> float:
    return (sum(t1) - sum(t0)) / hz / seconds * 100.0


def trial(mode: str, n: int, warmup: float, measure: float, reactor_name: str,
          spin: bool = True) -> dict:  # fmt: skip
    ctx = mp.get_context("spawn")
    keys = [os.urandom(30) for _ in range(2 * n)]
    sink_parent, sink_child = ctx.Pipe()
    relay_parent, relay_child = ctx.Pipe()
    gen_parent, gen_child = ctx.Pipe()
    procs = []
    try:
        sink = ctx.Process(target=sink_main, args=(sink_child, mode, spin))
        sink.start()
        procs.append(sink)
        if not sink_parent.poll(30):
            raise RuntimeError("sink did not start")
        sinks = sink_parent.recv()
        relay_lifetime = 60.0 + warmup + measure
        relay = ctx.Process(target=relay_main,
                            args=(relay_child, mode, n, sinks, keys, reactor_name, relay_lifetime))  # fmt: skip
        relay.start()
        procs.append(relay)
        if not relay_parent.poll(60):
            raise RuntimeError("relay did not start")
        info = relay_parent.recv()
        t0 = time.monotonic_ns() + 300_000_000
        w0 = t0 + int(warmup * 1e9)
        w1 = w0 + int(measure * 1e9)
        offset = time.time_ns() - time.monotonic_ns()
        sink_parent.send({"keys": dict(zip(info["forward"], keys)), "window": (w0, w1),
                          "real_window": (w0 + offset, w1 + offset),
                          "end": w1 + 500_000_000})  # fmt: skip
        gen = ctx.Process(target=generator_main, args=(gen_child, info["inbound"], t0, w1))
        gen.start()
        procs.append(gen)
        if not gen_parent.poll(30):
            raise RuntimeError("generator did not start")
        gen_pid = gen_parent.recv()
        pids = (info["pid"], gen_pid, sink.pid)
        # CPU over the measurement window, from /proc.
        time.sleep(max(0.0, (w0 - time.monotonic_ns()) / 1e9))
        ticks0, c0 = [cpu_ticks(p) for p in pids], time.monotonic()
        time.sleep(max(0.0, (w1 - time.monotonic_ns()) / 1e9))
        ticks1, c1 = [cpu_ticks(p) for p in pids], time.monotonic()
        rss1 = rss_kib(info["pid"])
        if not gen_parent.poll(30):
            raise RuntimeError("generator did not finish")
        g = gen_parent.recv()
        if not sink_parent.poll(30):
            raise RuntimeError("sink did not finish")
        k = sink_parent.recv()
        relay_parent.send("stop")
        relay.join(20)
        hz = os.sysconf("SC_CLK_TCK")
        return {
            "mode": mode,
            "n": n,
            "cpu": _pct(ticks0[0], ticks1[0], hz, c1 - c0),
            "cpu_user": (ticks1[0][0] - ticks0[0][0]) / hz / (c1 - c0) * 100.0,
            "cpu_gen": _pct(ticks0[1], ticks1[1], hz, c1 - c0),
            "cpu_sink": _pct(ticks0[2], ticks1[2], hz, c1 - c0),
            "rss_per_call_kib": (rss1 - info["rss0"]) / n,
            "sent": g["sent"],
            "gen_lag_ms": g["max_lag_ms"],
            "received": k["received"],
            "samples": k["samples"],
            "loss": max(0.0, 1.0 - k["received"] / g["sent"]) if g["sent"] else 1.0,
            "p50": k["p50"],
            "p99": k["p99"],
            "max": k["max"],
            "bad": k["bad"],
        }
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join(5)


def passes(r: dict) -> bool:
    """
    The capacity criterion: loss < 0.1 % and p99 latency < 5 ms.
    """
    return r["loss"] < MAX_LOSS and r["p99"] < MAX_P99_MS and r["bad"] == 0


def _line(r: dict) -> str:
    return (
        f"{r['mode']:>9} {r['n']:>5} calls: {'pass' if passes(r) else 'FAIL'}  "
        f"relay cpu {r['cpu']:5.1f}% (user {r['cpu_user']:4.1f}%)  "
        f"p50 {r['p50']:6.2f} ms  p99 {r['p99']:7.2f} ms  loss {r['loss'] * 100:6.3f}%  "
        f"rss/call {r['rss_per_call_kib']:5.1f} KiB  load cpu {r['cpu_gen'] + r['cpu_sink']:5.1f}%"
        + ("  GENERATOR LAGGED" if r["gen_lag_ms"] > LAG_LIMIT_MS else "")
    )


def search(mode: str, args: argparse.Namespace, deadline: float) -> dict | None:
    """
    Largest passing N (multiple of --step): double from --start until a
    failure, then bisect.  Bounded by --max-calls, the trial count and the
    deadline.
    """
    best: dict | None = None
    low, high = 0, None
    n = args.start
    for _ in range(12):
        if time.monotonic() > deadline:
            print(f"{mode:>9}: time budget spent, stopping the search")
            break
        r = trial(mode, n, args.warmup, args.measure, args.reactor, args.sink == "spin")
        print(_line(r), flush=True)
        if not passes(r) and r["gen_lag_ms"] > LAG_LIMIT_MS and time.monotonic() < deadline:
            # The load generator fell behind (something else had its CPU):
            # that trial says nothing about the relay; run it once more.
            r = trial(mode, n, args.warmup, args.measure, args.reactor, args.sink == "spin")
            print(_line(r) + "  (rerun)", flush=True)
        if passes(r):
            low, best = n, r
        else:
            high = n
        if args.quick:
            break
        if high is None:
            if n >= args.max_calls:
                break
            n = min(args.max_calls, n * 2)
        else:
            if high - low <= args.step:
                break
            n = (low + high) // 2 // args.step * args.step
            if n <= low:
                break
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: plain,transcode,srtp")
    parser.add_argument("--start", type=int, default=200, help="first N tried")
    parser.add_argument("--step", type=int, default=50, help="granularity of N")
    parser.add_argument("--max-calls", type=int, default=1600)
    parser.add_argument("--warmup", type=float, default=1.5, help="seconds before measuring")
    parser.add_argument("--measure", type=float, default=4.0, help="seconds measured")
    parser.add_argument("--budget", type=float, default=280.0, help="seconds for the whole sweep")
    parser.add_argument("--reactor", choices=("relay", "epoll"), default="relay",
                        help="relay: RelayEPollReactor (default); epoll: stock EPollReactor")  # fmt: skip
    parser.add_argument("--sink", choices=("spin", "epoll"), default="spin",
                        help="spin: the sink polls its sockets in a sleep loop (default); "
                             "epoll: it sleeps in epoll, and each relayed packet wakes it")  # fmt: skip
    parser.add_argument("--priority", choices=("rt", "normal"), default="rt",
                        help="rt: relay and generator run SCHED_FIFO where allowed (default)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="one trial per mode at --start")
    args = parser.parse_args(argv)
    os.environ["BENCH_PRIORITY"] = args.priority  # inherited by the spawned processes
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            parser.error(f"unknown mode {m!r}")
    started = time.monotonic()
    deadline = started + args.budget
    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine(with_model=True)}")
    print(f"# relay pinned to CPU {RELAY_CPU}, load to CPU {LOAD_CPU}; "
          f"reactor: {args.reactor}, sink: {args.sink}, priority: {args.priority}")  # fmt: skip
    results = {}
    for i, mode in enumerate(modes):
        # Share what is left of the budget among the remaining modes.
        share = (deadline - time.monotonic()) / (len(modes) - i)
        results[mode] = search(mode, args, time.monotonic() + share)
    print()
    print("| mode | max calls | relay CPU % | p50 ms | p99 ms | loss % | RSS/call KiB |")
    print("|---|---|---|---|---|---|---|")
    for mode in modes:
        r = results[mode]
        if r is None:
            print(f"| {mode} | < {args.start} | | | | | |")
            continue
        print(f"| {mode} | {r['n']} | {r['cpu']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} "
              f"| {r['loss'] * 100:.3f} | {r['rss_per_call_kib']:.1f} |")  # fmt: skip
    print(f"\n# sweep took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
