#!/usr/bin/env python3
"""
CPU per INVITE refused by overload control (issue 12): the full path
(parse, server transaction, 503 through it) against the stateless one
(L{aiconnect.sip.shed}: a raw header scan and a 503 built from it).

    .venv/bin/python bench/shed.py                 # 2000 INVITEs, best of 3
    .venv/bin/python bench/shed.py --number 5000 --rounds 5

The real service (L{aiconnect.tap.build_service}, a loopback configuration
with C{invite_rate = 0}, on a L{MemoryReactorClock}: nothing listens, no
time passes) with its SRS overloaded and no admission left (an
L{OverloadService} on a clock driven into overload by lag samples). Each
round feeds C{--number} distinct SIPRec INVITEs (two m-lines and
metadata, a fresh Call-ID and branch each, never ACKed: their server
transactions stay, as for 32 s in a real overload) through
L{SipTransport.datagram_received} with a fake UDP socket (no syscalls),
timed with C{time.process_time}, garbage collection included; C{full}
runs without the transport's C{shed} hook, C{stateless} with it. Every
INVITE must be answered one 503. Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import use_repository

use_repository()

from abuse_server import write_config  # noqa: E402
from abuse_sip import siprec_body, siprec_invite  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402
from twisted.internet.testing import FakeDatagramTransport, MemoryReactorClock  # noqa: E402
from twisted.logger import globalLogBeginner  # noqa: E402

from aiconnect import config as config_mod  # noqa: E402
from aiconnect.logsetup import make_observer  # noqa: E402
from aiconnect.overload import OverloadService  # noqa: E402
from aiconnect.sip.transport import _SipDatagramProtocol  # noqa: E402
from aiconnect.tap import build_service  # noqa: E402

SOURCE = ("127.0.0.2", 5060)


def overloaded() -> OverloadService:
    """
    An overload service on its own clock, overloaded, its bucket empty
    (the clock never moves again).
    """
    clock = Clock()
    service = OverloadService(clock, lag=0.1, cpu=0)
    for _ in range(40):
        if service.detector.overloaded:
            return service
        clock.advance(0.25)
        service.detector.lag_sample(1.0)
        service.detector.tick(clock.seconds(), 0.0, 0)
    raise SystemExit("the detector never entered an overload")


def one_round(config_path: Path, invites: list[bytes], stateless: bool) -> tuple[float, int]:
    """
    Refuse C{invites} through a fresh service.

    @return: CPU seconds, and the 503s written.
    """
    cfg = config_mod.load(config_path)
    top = build_service(cfg, MemoryReactorClock())
    top.srs.overload = overloaded()
    transport = top.sip.transport
    if not stateless:
        transport.shed = None
    proto = _SipDatagramProtocol(transport)
    fake = FakeDatagramTransport()
    proto.makeConnection(fake)  # type: ignore[arg-type]
    transport._udp = proto
    receive = transport.datagram_received
    start = time.process_time()
    for data in invites:
        receive(proto, data, SOURCE)
    cpu = time.process_time() - start
    refused = sum(1 for data, _addr in fake.written if data.startswith(b"SIP/2.0 503 "))
    return cpu, refused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=2000, help="INVITEs per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per path (best kept)")
    args = parser.parse_args()
    # Warnings and errors only (Twisted says "Starting protocol" at info).
    globalLogBeginner.beginLoggingTo([make_observer("text", "warn", sys.stderr)], redirectStandardIO=False)
    directory = Path(tempfile.mkdtemp(prefix="aiconnect-bench-shed-"))
    config_path = write_config(directory, 5060, 9, (61000, 61019), "info", limits="invite_rate = 0")
    body, content_type = siprec_body()
    invites = [
        siprec_invite(SOURCE, "shed-%d@127.0.0.2" % (i,), "ft%d" % (i,), body, content_type).to_bytes()
        for i in range(args.number)
    ]
    print("%d INVITEs of %d octets, each refused 503; best of %d rounds" % (len(invites), len(invites[0]), args.rounds))
    results = {}
    for name, stateless in (("full", False), ("stateless", True)):
        best = None
        for _ in range(args.rounds):
            cpu, refused = one_round(config_path, invites, stateless)
            if refused != len(invites):
                raise SystemExit("%s: %d 503s for %d INVITEs" % (name, refused, len(invites)))
            best = cpu if best is None else min(best, cpu)
        assert best is not None
        results[name] = best
        print("  %-10s %7.1f us CPU per refused INVITE" % (name, best / len(invites) * 1e6))
    print("  stateless / full: %.2f" % (results["stateless"] / results["full"],))


if __name__ == "__main__":
    main()
