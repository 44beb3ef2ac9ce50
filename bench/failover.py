#!/usr/bin/env python3
"""
Failover soak (issue 11, SPEC s13): do forwarded recordings survive an
SRS that dies and comes back, again and again?

    .venv/bin/python bench/failover.py                  # 200 calls, about 75 s
    .venv/bin/python bench/failover.py --calls 50 --hold 20

It starts, all on 127.0.0.1:

  - AI Connect (C{twistd -n aiconnect}, L{abuse_server.start_server}) with
    one tenant whose trunk C{srs} names C{srs.bench.test} over TCP;
  - a DNS server (twisted.names, C{tests.integration.dnsserver}) whose
    zone gives that name two SRV targets of equal priority and weight, so
    new forwards spread over both recorders;
  - two recorders, C{bench/failover_srs.py}, each its own process;
  - in this process, the application (newCall -> one PCMU forward to
    C{sip:srs@customer.example.com}; events collected) and the SRC:
    C{--calls} SIPRec calls over UDP at C{--rate} calls/s, each with one
    PCMU stream of 20 ms packets for C{--hold} seconds, then BYE.

Every C{--kill-every} seconds one recorder (the two in turn) gets SIGKILL
and is started again C{--down} seconds later: its TCP connections reset,
and each forward it carried must be re-established to the other recorder
(C{SIPRECFORWARDRESUMED}).

It prints: calls answered and completed, recordings completed (the forward
ended with the inbound BYE), recordings lost (SIPRECFORWARDFAILED, or
stopped by anything but the inbound BYE), resumptions, the gap each
resumption reports (C{gapMs}, p50 / p99 / max), the gap the recorders saw
(per SSRC: first packet at the new recorder minus last packet at the old
one), the largest RTP sequence jump across a switch, and RTP sent /
received.  Goal: 0 lost and p99 gap < 2 s (exit 0, else 1; 2 when the
server did not start).

Every loop is bounded in count and time; every process is killed at the
end.  Not a test: run it by hand; README.rst records a run.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import HERE, free_port, machine, percentile, use_repository

use_repository()

from abuse_server import start_server, stop_process, wait_ready  # noqa: E402
from abuse_server import write_config as abuse_config  # noqa: E402
from abuse_sip import DOMAIN, SERVER, response_to, sip_request  # noqa: E402

SRS_NAME = "srs.bench.test"
T1 = 0.5
#: RTP payload: 20 ms of a PCMU pattern (the bytes do not matter here).
PAYLOAD = bytes((0x80 + i * 7) % 256 for i in range(160))


def write_config(directory: Path, sip_port: int, app_port: int, dns_port: int, rtp: tuple[int, int]) -> Path:
    """
    AI Connect's configuration: the abuse benchmark's loopback one (SIP on
    UDP+TCP C{sip_port}, one tenant calling back C{app_port}) plus the
    tenant's trunk C{srs} (TCP, keep-alive OPTIONS every 2 s, short ring
    timeout) and DNS from the bench's server.
    """
    path = abuse_config(directory, sip_port, app_port, rtp, "warn")
    with path.open("a") as f:
        f.write(
            f"""
  [[tenant.trunk]]
  match = "srs"
  target = "{SRS_NAME}"
  transport = "tcp"
  keepalive = 2
  ring_timeout = 2
  down_for = 5

[dns]
nameservers = ["{SERVER}"]
port = {dns_port}
"""
        )
    return path


class Recorder:
    """
    One C{bench/failover_srs.py} process on a fixed port; each start
    writes its own report file.
    """

    def __init__(self, directory: Path, port: int, lifetime: float) -> None:
        self.directory = directory
        self.port = port
        self.lifetime = lifetime
        self.proc: subprocess.Popen[bytes] | None = None
        self.reports: list[Path] = []
        self.kills = 0

    def start(self) -> None:
        report = self.directory / ("srs-%d-%d.json" % (self.port, len(self.reports)))
        self.reports.append(report)
        argv = [sys.executable, os.path.join(HERE, "failover_srs.py"), str(self.port), str(report), str(self.lifetime)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(self.directory / ("srs-%d.log" % self.port), "ab"))

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
            self.kills += 1

    def segments(self) -> dict[int, list[list[float]]]:
        """
        SSRC -> [first arrival, last arrival, count, first seq, last seq]
        per start of this recorder.
        """
        out: dict[int, list[list[float]]] = {}
        for report in self.reports:
            try:
                table = json.loads(report.read_text())
            except (OSError, ValueError):
                continue
            for ssrc, entry in table.items():
                out.setdefault(int(ssrc), []).append(entry)
        return out


class Call:
    """
    One SRC call: INVITE (retransmitted at T1), ACK, RTP, BYE.
    """

    def __init__(self, index: int, rtp_port: Any, sip: Any) -> None:
        self.index = index
        self.rtp_port = rtp_port
        self.sip = sip
        self.call_id = "fo-%d-%s" % (index, secrets.token_hex(4))
        self.from_tag = secrets.token_hex(4)
        self.to_header = ""
        self.remote: tuple[str, int] | None = None
        self.state = "inviting"
        self.seq = secrets.randbelow(30000)
        self.ts = secrets.randbelow(1 << 30)
        self.ssrc = secrets.randbits(32)
        self.sent = 0
        self.tries = 0
        self.pending: bytes = b""

    def invite(self) -> bytes:
        from aiconnect.sip.multipart import Part, build_multipart, new_boundary
        from aiconnect.sip.sdp import OfferStream, Origin, build_src_offer
        from aiconnect.siprec.metadata import metadata_from_labels

        offer = build_src_offer([OfferStream("1", self.rtp_port.getHost().port)], origin=Origin.new(SERVER), address=SERVER, codec="PCMU")
        md = metadata_from_labels(["1"], caller_aor="sip:alice@example.com", called_aor="sip:bob@example.com")
        boundary = new_boundary()
        body = build_multipart(
            [
                Part((("Content-Type", "application/sdp"),), offer.to_bytes()),
                Part((("Content-Type", "application/rs-metadata+xml"), ("Content-Disposition", "recording-session")), md.to_bytes()),
            ],
            boundary,
        )
        return sip_request(
            "INVITE",
            "sip:recorder@%s" % DOMAIN,
            self.sip.local,
            self.call_id,
            self.from_tag,
            1,
            body=body,
            content_type="multipart/mixed;boundary=" + boundary,
            extra=(("Require", "siprec"),),
        ).to_bytes()

    def rtp(self) -> None:
        if self.state != "up" or self.remote is None:
            return
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + 160) & 0xFFFFFFFF
        header = struct.pack("!BBHII", 0x80, 0, self.seq, self.ts, self.ssrc)
        self.rtp_port.write(header + PAYLOAD, self.remote)
        self.sent += 1


def run(args: argparse.Namespace) -> int:
    from twisted.internet import reactor, task
    from twisted.internet.protocol import DatagramProtocol
    from twisted.web import resource, server

    from aiconnect.sip.message import Request, Response, parse
    from aiconnect.sip.sdp import parse_sdp
    from aiconnect.siprec.body import split_body
    from tests.integration.dnsserver import a, srv, start_dns_server

    directory = Path(tempfile.mkdtemp(prefix="aiconnect-failover-"))
    sip_port, app_port, srs_ports = free_port(), free_port(), (free_port(), free_port())
    duration_cap = args.calls / args.rate + args.hold + 30.0
    recorders = [Recorder(directory, port, duration_cap + 10) for port in srs_ports]
    for r in recorders:
        r.start()
    zone = {
        "_sip._tcp." + SRS_NAME: [srv(10, 50, srs_ports[0], "srs1." + SRS_NAME), srv(10, 50, srs_ports[1], "srs2." + SRS_NAME)],
        SRS_NAME: [a()],  # the name exists (NAPTR: no data, then SRV)
        "srs1." + SRS_NAME: [a()],
        "srs2." + SRS_NAME: [a()],
    }
    dns = start_dns_server(zone, origin="bench.test")
    config = write_config(directory, sip_port, app_port, dns.port, (args.rtp_min, args.rtp_min + 4 * args.calls + 99))
    events: list[dict[str, Any]] = []
    order = {"startSIPRecForward": {"uri": "sip:srs@%s" % DOMAIN, "codec": "PCMU"}}

    class App(resource.Resource):
        isLeaf = True

        def render_POST(self, request: Any) -> bytes:
            body = request.content.read()
            request.setHeader(b"content-type", b"application/json")
            if request.path.endswith(b"/newCall"):
                return json.dumps(order).encode()
            try:
                events.append(json.loads(body))
            except ValueError:
                pass
            return b"{}"

    reactor.listenTCP(app_port, server.Site(App()), interface=SERVER)
    proc = start_server(directory, config, "default")
    if not wait_ready(proc, sip_port, 30):
        print("AI Connect did not start; see", directory / "server.log")
        stop_process(proc, 5)
        for r in recorders:
            r.kill()
        return 2

    calls: dict[str, Call] = {}

    class Sip(DatagramProtocol):
        local: tuple[str, int] = (SERVER, 0)

        def datagramReceived(self, data: bytes, addr: Any) -> None:
            try:
                msg = parse(data, datagram=True)
            except Exception:
                return
            call = calls.get(msg.call_id)
            if isinstance(msg, Request):
                # A request from the server (BYE on its side): answer 200.
                self.transport.write(response_to(msg, 200), addr)
                if call is not None and msg.method == "BYE":
                    call.state = "ended-by-server"
                return
            if call is None or not isinstance(msg, Response) or msg.status < 200:
                return
            method = msg.cseq.method
            if method == "INVITE" and call.state == "inviting":
                if msg.status != 200:
                    call.state = "rejected %d" % msg.status
                    return
                sdp = parse_sdp(split_body(msg).sdp or b"")
                call.remote = (SERVER, sdp.media[0].port)
                call.to_header = msg.headers.get("To") or ""
                ack = sip_request("ACK", "sip:recorder@%s" % DOMAIN, self.local, call.call_id, call.from_tag, 1, to=call.to_header)
                self.transport.write(ack.to_bytes(), (SERVER, sip_port))
                call.state = "up"
                reactor.callLater(args.hold, hang_up, call)
            elif method == "BYE" and call.state == "byeing":
                call.state = "done"

    sip = Sip()
    sip_listener = reactor.listenUDP(0, sip, interface=SERVER)
    sip.local = (SERVER, sip_listener.getHost().port)

    def retransmit(call: Call, state: str) -> None:
        if call.state != state or call.tries >= 6:
            if call.state == state:
                call.state = "timeout in " + state
            return
        call.tries += 1
        sip.transport.write(call.pending, (SERVER, sip_port))
        reactor.callLater(min(T1 * 2**call.tries, 4.0), retransmit, call, state)

    def place(index: int) -> None:
        call = Call(index, reactor.listenUDP(0, DatagramProtocol(), interface=SERVER), sip)
        calls[call.call_id] = call
        call.pending = call.invite()
        call.tries = 0
        retransmit(call, "inviting")

    def hang_up(call: Call) -> None:
        if call.state != "up":
            return
        call.state = "byeing"
        call.pending = sip_request("BYE", "sip:recorder@%s" % DOMAIN, sip.local, call.call_id, call.from_tag, 2, to=call.to_header).to_bytes()
        call.tries = 0
        retransmit(call, "byeing")

    def tick() -> None:
        for call in calls.values():
            call.rtp()

    kill_log: list[tuple[float, int]] = []

    def kill_one(n: int) -> None:
        recorder = recorders[n % 2]
        recorder.kill()
        kill_log.append((time.time(), recorder.port))
        reactor.callLater(args.down, recorder.start)

    t0 = time.time()
    for i in range(args.calls):
        reactor.callLater(i / args.rate, place, i)
    n_kills = int((args.calls / args.rate + args.hold) // args.kill_every)
    for n in range(n_kills):
        reactor.callLater(args.kill_every * (n + 1), kill_one, n)
    pump = task.LoopingCall(tick)
    pump.start(0.02)

    def finished() -> bool:
        return all(c.state not in ("inviting", "up", "byeing") for c in calls.values()) and len(calls) == args.calls

    def watch() -> None:
        if finished() or time.time() - t0 > duration_cap:
            reactor.callLater(3.0, reactor.stop)  # the last events
            return
        reactor.callLater(0.5, watch)

    reactor.callLater(1.0, watch)
    reactor.run()
    elapsed = time.time() - t0
    stop_process(proc, 10)
    time.sleep(0.3)  # the recorders' last report
    segments: dict[int, list[list[float]]] = {}
    for r in recorders:
        for ssrc, entries in r.segments().items():
            segments.setdefault(ssrc, []).extend(entries)
        r.kill()
    dns.stop()
    report(args, calls, events, segments, kill_log, elapsed, directory)
    lost = lost_recordings(calls, events)
    gaps = sorted(float(e.get("gapMs", 0)) for e in events if e.get("event") == "SIPRECFORWARDRESUMED")
    ok = not lost and (not gaps or percentile(gaps, 0.99) < 2000)
    if not args.keep:
        shutil.rmtree(directory, ignore_errors=True)
    return 0 if ok else 1


def by_forward(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """
    Each forward's events, in arrival order.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if e.get("forwardId"):
            out.setdefault(e["forwardId"], []).append(e)
    return out


def lost_recordings(calls: dict[str, Call], events: list[dict[str, Any]]) -> list[str]:
    """
    Forwards of answered calls that did not end with the inbound BYE.
    """
    lost = []
    for forward_id, evs in by_forward(events).items():
        names = [e["event"] for e in evs]
        stopped = [e for e in evs if e["event"] == "SIPRECFORWARDSTOPPED"]
        if "SIPRECFORWARDFAILED" in names or not stopped or stopped[-1].get("stoppedBy") != "inboundBye":
            lost.append(forward_id)
    return lost


def switch_gaps(segments: dict[int, list[list[float]]]) -> tuple[list[float], int]:
    """
    The gaps the recorders saw (ms) between one recorder's last packet of
    an SSRC and the next recorder's first, and the largest sequence jump
    across such a switch.
    """
    gaps: list[float] = []
    jump = 0
    for parts in segments.values():
        parts = sorted(parts, key=lambda p: p[0])
        for old, new in zip(parts, parts[1:]):
            gaps.append(max(0.0, (new[0] - old[1]) * 1000))
            jump = max(jump, (int(new[3]) - int(old[4])) % 65536)
    return gaps, jump


def report(args: argparse.Namespace, calls: dict[str, Call], events: list[dict[str, Any]], segments: dict[int, list[list[float]]], kills: list[tuple[float, int]], elapsed: float, directory: Path) -> None:
    """
    Print the table.
    """
    states: dict[str, int] = {}
    for c in calls.values():
        states[c.state] = states.get(c.state, 0) + 1
    names = [e.get("event") for e in events]
    lost = lost_recordings(calls, events)
    gaps = [float(e.get("gapMs", 0)) for e in events if e.get("event") == "SIPRECFORWARDRESUMED"]
    seen_gaps, jump = switch_gaps(segments)
    sent = sum(c.sent for c in calls.values())
    received = sum(int(p[2]) for parts in segments.values() for p in parts)

    def pct(values: list[float]) -> str:
        if not values:
            return "n/a"
        values = sorted(values)
        return "%.0f / %.0f / %.0f" % (percentile(values, 0.5), percentile(values, 0.99), max(values))

    rows = [
        ("machine", machine()),
        ("calls placed / completed (BYE 200)", "%d / %d" % (len(calls), states.get("done", 0))),
        ("call outcomes", ", ".join("%s %d" % kv for kv in sorted(states.items()))),
        ("SRS kills (SIGKILL, back after %g s)" % args.down, str(len(kills))),
        ("forwards started", str(names.count("SIPRECFORWARDSTARTED"))),
        ("recordings completed", str(len(by_forward(events)) - len(lost))),
        ("recordings lost", str(len(lost))),
        ("resumptions (SIPRECFORWARDRESUMED)", str(len(gaps))),
        ("gap reported, ms p50 / p99 / max", pct(gaps)),
        ("gap at the recorders, ms p50 / p99 / max", pct(seen_gaps)),
        ("largest RTP sequence jump at a switch", str(jump)),
        ("RTP sent / received by recorders", "%d / %d" % (sent, received)),
        ("elapsed, s", "%.1f" % elapsed),
    ]
    width = max(len(k) for k, _ in rows)
    print("\nFailover soak: %d calls, %g calls/s, hold %g s, one SRS killed every %g s" % (args.calls, args.rate, args.hold, args.kill_every))
    for k, v in rows:
        print("  %-*s  %s" % (width, k, v))
    print("  goal: 0 lost, p99 gap < 2000 ms ->", "met" if not lost and (not gaps or percentile(sorted(gaps), 0.99) < 2000) else "NOT met")
    forwards = by_forward(events)
    for forward_id in lost[:5]:
        trail = ["%s(%s)" % (e["event"], e.get("stoppedBy") or e.get("reason") or e.get("target") or "") for e in forwards[forward_id]]
        print("  lost %s: %s" % (forward_id, " ".join(trail)))
    if args.keep:
        print("  files kept in", directory)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rate", type=float, default=5.0, help="calls started per second")
    parser.add_argument("--hold", type=float, default=35.0, help="seconds each call lasts")
    parser.add_argument("--kill-every", type=float, default=10.0)
    parser.add_argument("--down", type=float, default=3.0, help="seconds a killed SRS stays down")
    parser.add_argument("--rtp-min", type=int, default=30000, help="AI Connect's RTP range start")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    args.calls = max(1, min(args.calls, 1000))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
