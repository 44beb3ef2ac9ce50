"""
What the benchmarks share: the repository on C{sys.path}, the file
descriptor limit, a process's CPU and memory from /proc, percentiles,
kernel receive time stamps, bounded waits and a one-line machine summary.

The benchmarks run as scripts (C{python bench/NAME.py}), so C{bench/} is
first on C{sys.path} and this module imports as C{common}; each script
calls L{use_repository} so that C{aiconnect} and C{tests} import from this
checkout (C{spawn}ed workers inherit the parent's C{sys.path}).
"""

from __future__ import annotations

import os
import platform
import resource
import select
import socket
import struct
import sys
import time
from collections.abc import Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def use_repository() -> str:
    """
    Put the repository root first on C{sys.path} unless it is there.

    @return: The repository root.
    """
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    return ROOT


def raise_nofile() -> int:
    """
    Raise the soft RLIMIT_NOFILE to the hard one where allowed.

    @return: The soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def cpu_ticks(pid: int) -> tuple[int, int]:
    """
    The user and system CPU ticks of a process, from C{/proc/PID/stat}.

    @raise OSError: The process is gone.
    """
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])  # utime, stime


def status_kib(pid: int | str, names: tuple[str, ...]) -> dict[str, int]:
    """
    The fields C{names} (C{"VmRSS"}, C{"VmHWM"}, ...; KiB) of
    C{/proc/PID/status} that it has.

    @raise OSError: The process is gone.
    """
    prefixes = tuple(name + ":" for name in names)
    out: dict[str, int] = {}
    with open("/proc/%s/status" % (pid,)) as f:
        for line in f:
            if line.startswith(prefixes):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def rss_kib(pid: int | str = "self") -> int:
    """
    The resident set size of a process in KiB (0 when /proc does not say).

    @raise OSError: The process is gone.
    """
    return status_kib(pid, ("VmRSS",)).get("VmRSS", 0)


def proc_status(pid: int) -> dict[str, int]:
    """
    CPU ticks (user + system) and VmRSS/VmHWM (KiB) of a process, from
    /proc; empty when it is gone.
    """
    try:
        out = {"ticks": sum(cpu_ticks(pid))}
        out.update(status_kib(pid, ("VmRSS", "VmHWM")))
    except (OSError, IndexError, ValueError):
        return {}
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """
    The C{q} quantile (nearest rank) of sorted C{values}; NaN when empty.
    """
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def kernel_time_ns(ancillary: list[tuple[int, int, bytes]]) -> int:
    """
    The SO_TIMESTAMPNS receive time (CLOCK_REALTIME ns), or now.
    """
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return sec * 1_000_000_000 + nsec
    return time.time_ns()


def sleep_until(t: float) -> None:
    """
    Sleep until C{time.monotonic()} reaches C{t} (not at all if it has).
    """
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def wait_readable(sock: socket.socket, timeout: float) -> None:
    """
    Wait at most C{timeout} s for C{sock} to be readable.
    """
    if timeout > 0:
        select.select([sock], [], [], timeout)


def cpu_model() -> str:
    """
    The CPU's model name from /proc/cpuinfo, else what L{platform} says.
    """
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return model


def machine(with_model: bool = False) -> str:
    """
    One line for a run's header: the CPU count (and, if C{with_model}, the
    CPU model), the OS and the Python version.
    """
    cpus = "%d CPUs" % (os.cpu_count() or 0)
    if with_model:
        cpus += " (%s)" % (cpu_model(),)
    return "%s, %s %s, Python %s" % (cpus, platform.system(), platform.release(), platform.python_version())


def free_port() -> int:
    """
    A TCP and UDP port free now on 127.0.0.1.
    """
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
