#!/usr/bin/env python3
"""
The overload figures of a kept C{bench/signalling.py} run (issue 12), read
from its files: C{.venv/bin/python bench/signalling.py --rates 150 200
--inbound-rates --keep [--limit ...]}, then

    .venv/bin/python bench/overload_report.py /tmp/aiconnect-signalling-XXXX [--series]

Per step, from SIPp's traces (the last, cumulative row of C{*_counts.csv};
C{*_rtt.csv}, which times only the INVITEs answered 200) and the server's
outbox (C{events.sqlite3}: C{delivered - created} per event, the events
created between the step's start and the next step's): INVITEs offered,
admitted (200) and refused (503) per second, admitted calls that did not
complete (no 200 to their BYE), setup p50/p99 of the admitted calls, the
SRC's retransmissions, events undelivered, C{SIPRECFORWARDFAILED}s and
event delay p99/max.  C{--series} adds, per second, the INVITEs answered
200 and 503.

It exists because C{bench/signalling.py}'s own table counts SIPp's
C{stop_call} after a 503 as a successful call, sums the cumulative rows of
the counts trace and takes percentiles of unsorted lists; this reads the
same files without those errors.
"""

from __future__ import annotations

import argparse
import csv
import sqlite3
import sys
from pathlib import Path


def rows(path: Path) -> list[dict[str, str]]:
    """
    The rows of a SIPp CSV trace (C{;}-separated).
    """
    with path.open() as f:
        return list(csv.DictReader(f, delimiter=";"))


def stamp(row: dict[str, str]) -> float:
    """
    The epoch time of a counts row (C{CurrentTime} is "date<TAB>time<TAB>epoch").
    """
    return float(row["CurrentTime"].split("\t")[-1])


def count(row: dict[str, str], suffix: str) -> int:
    """
    The one column of C{row} ending in C{suffix} (e.g. C{_503_Recv}),
    first match in scenario order.
    """
    for key, value in row.items():
        if key and key.endswith(suffix) and value.strip().isdigit():
            return int(value)
    return 0


def quantile(values: list[float], q: float) -> float:
    """
    The nearest-rank C{q} quantile of C{values} (sorted here).
    """
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(base: Path, series: bool) -> None:
    steps = sorted((d for d in base.iterdir() if d.is_dir() and "-" in d.name), key=lambda d: d.stat().st_mtime)
    db = sqlite3.connect(base / "events.sqlite3")
    starts = []
    for d in steps:
        counts = rows(next(d.glob("*_counts.csv")))
        starts.append(stamp(counts[0]))
    print("step     offered/s  admitted/s  503/s  not-completed  setup p50/p99 ms  retrans  ev-undelivered  SRS-fail  event p99/max ms")
    for i, d in enumerate(steps):
        counts = rows(next(d.glob("*_counts.csv")))
        last = counts[-1]
        seconds = max(1e-3, stamp(last) - stamp(counts[0]))
        invites = count(last, "_INVITE_Sent")
        refused = count(last, "_503_Recv")
        # The first 200 column is the INVITE's, the second the BYE's.
        oks = [int(v) for k, v in last.items() if k and k.endswith("_200_Recv")]
        admitted, byes = oks[0], oks[1]
        retrans = sum(int(v) for k, v in last.items() if k and k.endswith("_Retrans") and v.strip().isdigit())
        setup = [float(r["response_time_ms"]) for p in d.glob("*_rtt.csv") for r in rows(p) if r.get("response_time_ms")]
        end = starts[i + 1] if i + 1 < len(starts) else float("inf")
        events = db.execute(
            "SELECT event, created, delivered FROM events WHERE created >= ? AND created < ?", (starts[i], end)
        ).fetchall()
        delays = [delivered - created for _e, created, delivered in events if delivered is not None]
        undelivered = sum(1 for _e, _c, delivered in events if delivered is None)
        failed = sum(1 for e, _c, _d in events if e == "SIPRECFORWARDFAILED")
        # Offered over the sending time (rate x calls), admitted and 503 likewise.
        sending = invites / float(d.name.split("-")[1])
        print(
            "%-7s  %9.0f  %10.1f  %5.1f  %13d  %16s  %7d  %14d  %8d  %16s"
            % (
                d.name, invites / sending, admitted / sending, refused / sending, admitted - byes,
                "%.0f / %.0f" % (quantile(setup, 0.5), quantile(setup, 0.99)), retrans, undelivered, failed,
                "%.0f / %.0f" % (1000 * quantile(delays, 0.99), 1000 * max(delays or [float("nan")])),
            )
        )  # fmt: skip
        if series:
            previous = counts[0]
            for row in counts[1:]:
                print(
                    "    t=%5.1fs  200 %4d  503 %4d"
                    % (stamp(row) - stamp(counts[0]), oks_of(row)[0] - oks_of(previous)[0], count(row, "_503_Recv") - count(previous, "_503_Recv"))
                )
                previous = row
    print("(%.0f s measured in %s)" % (seconds, base))


def oks_of(row: dict[str, str]) -> list[int]:
    """
    The C{_200_Recv} columns of a counts row, in scenario order.
    """
    return [int(v) for k, v in row.items() if k and k.endswith("_200_Recv")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="the run's kept directory")
    parser.add_argument("--series", action="store_true", help="per second: INVITEs answered 200 and 503")
    args = parser.parse_args()
    report(args.directory, args.series)
    return 0


if __name__ == "__main__":
    sys.exit(main())
