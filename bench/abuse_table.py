"""
The abuse benchmark's report: the results of a run as a Markdown table
(measure | value | goal), then notes and whether the goal was met.
"""

from __future__ import annotations

import argparse
import signal
from typing import Any

#: The goal (SPEC s12 and the issue): every legitimate call answered, and this OPTIONS p99.
GOAL_P99_MS = 50.0


def _ms(v: float) -> str:
    """
    Milliseconds with one decimal; C{n/a} for NaN, C{lost} for infinity.
    """
    if v != v:
        return "n/a"
    return "lost" if v == float("inf") else "%.1f" % v


def _pct(part: int, whole: int) -> str:
    """
    C{part} as a percentage of C{whole}; C{n/a} when C{whole} is 0.
    """
    return "%.1f %%" % (100.0 * part / whole) if whole else "n/a"


def print_table(args: argparse.Namespace, r: dict[str, Any], status: int) -> None:
    """
    The results as a Markdown table, then the notes.
    """
    rows: list[tuple[str, str, str]] = []
    na = "n/a"
    legit = r.get("legit", {})
    if "error" in legit or not legit:
        rows.append(("legitimate calls", "n/a (%s)" % legit.get("error", "no report"), "100 % answered"))
    else:
        rows.append(
            (
                "legitimate calls attempted / answered / completed (BYE 200)",
                "%d / %d / %d (%s answered)" % (legit["calls"], legit["answered"], legit["completed"], _pct(legit["answered"], legit["calls"])),
                "100 % answered",
            )
        )
        rows.append(("legitimate call setup (INVITE -> 200) p50 / max ms", "%s / %s" % (_ms(legit["setup_p50_ms"]), _ms(legit["setup_max_ms"])), ""))
        if legit["failures"]:
            rows.append(("legitimate call failures", ", ".join("%s x%d" % kv for kv in sorted(legit["failures"].items())), "none"))
        others = {k: v for k, v in legit["ping_statuses"].items() if k != 200}
        rows.append(
            (
                "OPTIONS sent / answered in time / lost",
                "%d / %d / %d%s" % (legit["pings"], legit["ping_answered"], legit["ping_lost"], " (non-200: %s)" % others if others else ""),
                "",
            )
        )
        rows.append(("OPTIONS latency p50 / p99 / max ms", "%s / %s / %s" % (_ms(legit["p50"]), _ms(legit["p99"]), _ms(legit["max"])), "p99 < %.0f" % GOAL_P99_MS))
    flood = r.get("flood", {})
    if "error" in flood or not flood:
        rows.append(("flood INVITEs", "n/a (%s)" % flood.get("error", "no report"), ""))
    else:
        rows.append(
            (
                "flood INVITEs sent / answered 503 / answered 2xx / other final / unanswered",
                "%d / %d / %d / %d / %d" % (flood["sent"], flood["answered_503"], flood["answered_2xx"], flood["answered_other"], flood["unanswered"]),
                "",
            )
        )
        if flood["other_statuses"] or flood["provisional_only"] or flood["send_errors"]:
            rows.append(
                (
                    "flood details",
                    "other finals %s; 1xx only %d; send errors %d"
                    % (flood["other_statuses"] or "{}", flood["provisional_only"], flood["send_errors"]),
                    "",
                )
            )
    idle = r.get("idle", {})
    if "error" in idle or not idle:
        rows.append(("idle TCP connections", "n/a (%s)" % idle.get("error", "no report"), ""))
    else:
        held = r.get("server_idle_held")
        rows.append(
            (
                "idle TCP connections requested / connected / held at end (client view; accepted by server)",
                "%d / %d / %d; %s" % (idle["requested"], idle["connected"], idle["held_at_end"], na if held is None else held),
                "",
            )
        )
        if idle["closed_by_server"] or idle["open_errors"]:
            first = idle["first_close_s"]
            rows.append(
                (
                    "idle TCP: closed by server (first at s) / open errors",
                    "%d (%s) / %s" % (idle["closed_by_server"], "%.1f" % first if first is not None else na, idle["open_errors"] or "{}"),
                    "",
                )
            )
    if "cpu_s" in r and r.get("rss_kib"):
        rows.append(("server CPU s over the %g s load / RSS MiB at end / peak" % args.duration,
                     "%.1f (%.0f %%) / %.0f / %.0f" % (r["cpu_s"], 100 * r["cpu_s"] / args.duration, r["rss_kib"] / 1024, r["hwm_kib"] / 1024), ""))  # fmt: skip
    elif "cpu_s" in r:
        rows.append(("server CPU s until it died / RSS", "%.1f / n/a" % r["cpu_s"], ""))
    else:
        rows.append(("server CPU / RSS", na, ""))
    app = r.get("app", {})
    rows.append(("app server newCall / events received", "%d / %d" % (app.get("newCall", 0), app.get("events", 0)), ""))
    rejections = r.get("log_rejections") or {}
    if rejections:
        top = sorted(rejections.items(), key=lambda kv: -kv[1])[:4]
        rows.append(("server log: INVITEs rejected (status, reason)", ", ".join("%s %s x%d" % (st, why, n) for (st, why), n in top), ""))
    code = r.get("server_exit", na)
    if code == -signal.SIGTERM and r.get("log_shut_down"):
        code = "stopped by SIGTERM, clean"  # twistd re-raises the signal after a clean stop
    rows.append(("server alive at end / exit / log tracebacks", "%s / %s / %s" % (r.get("server_alive", na), code, r.get("log_tracebacks", na)), ""))
    print()
    print("| measure | value | goal |")
    print("|---|---|---|")
    for name, value, goal in rows:
        print("| %s | %s | %s |" % (name, value, goal))
    print()
    if r.get("server_error"):
        print("server error: %s" % r["server_error"])
        for line in r.get("log_tail", []):
            print("  log: %s" % line)
    if r.get("not_ready"):
        print("workers not ready in time: %s" % ", ".join(r["not_ready"]))
    print("goal (100 %% of legitimate calls answered, OPTIONS p99 < %.0f ms): %s"
          % (GOAL_P99_MS, {0: "MET", 1: "NOT MET", 2: "not measured"}[status]))  # fmt: skip
    if args.keep:
        print("kept: %s (server.log, aiconnect.toml)" % r.get("directory"))
