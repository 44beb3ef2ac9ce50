"""
The abuse benchmark's server side: the customer's application server
(L{AppServer}, in the controller's process on a reactor thread), and AI
Connect itself in a subprocess (L{write_config}, L{start_server},
L{wait_ready}, L{stop_process}), with the TCP connections it holds as
/proc shows them (L{server_connections}).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from abuse_sip import DOMAIN, LEGIT_SOURCE, SECRET, SERVER, sip_request
from common import ROOT

# -- the application server (in this process, on a reactor thread) --------------------


class AppServer:
    """
    The customer's application: C{POST /newCall} -> C{{}}, C{POST /events}
    -> 200; counts both.  Runs Twisted's reactor on a daemon thread.
    """

    def __init__(self) -> None:
        from twisted.internet import reactor
        from twisted.web import resource, server

        self.counts: Counter[str] = Counter()
        counts = self.counts

        class App(resource.Resource):
            isLeaf = True

            def render_POST(self, request: Any) -> bytes:
                request.content.read()
                if request.path.endswith(b"/newCall"):
                    counts["newCall"] += 1
                    request.setHeader(b"content-type", b"application/json")
                    return b"{}"
                counts["events"] += 1
                return b""

        self._reactor = reactor
        self._port = reactor.listenTCP(0, server.Site(App()), interface=SERVER)
        self.port = self._port.getHost().port
        self._thread = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """
        Stop the reactor and wait (at most 5 s) for its thread.
        """
        self._reactor.callFromThread(self._reactor.stop)
        self._thread.join(5)


# -- AI Connect in a subprocess ---------------------------------------------------------


def write_config(
    directory: Path,
    sip_port: int,
    app_port: int,
    rtp: tuple[int, int],
    log_level: str,
    limits: str = "",
    tenants: str | None = None,
    api_port: int = 0,
) -> Path:
    """
    A loopback configuration: SIP UDP+TCP on C{sip_port}, no TLS, the REST
    API on C{api_port} (0: none), C{[limits]} at their defaults plus the lines C{limits}, and the
    C{[[tenant]]} tables C{tenants} (default: one tenant calling back
    C{app_port}).
    """
    path = directory / "aiconnect.toml"
    if tenants is None:
        tenants = f"""
[[tenant]]
domain = "{DOMAIN}"
callback_url = "http://{SERVER}:{app_port}"
callback_timeout = 5.0
api_tokens = ["abuse-bench"]
signing_secret = "{SECRET}"
"""
    path.write_text(
        f"""
[sip]
host = "{SERVER}"
public_address = "{SERVER}"
private_address = "{SERVER}"
udp_port = {sip_port}
tcp_port = {sip_port}
tls_port = 0

[tls]
certificate = "{directory / 'tls.crt'}"
private_key = "{directory / 'tls.key'}"

[rtp]
host = "{SERVER}"
port_min = {rtp[0]}
port_max = {rtp[1]}

[api]
host = "{SERVER}"
port = {api_port}

[events]
database = "{directory / 'events.sqlite3'}"

[log]
level = "{log_level}"

[limits]
{limits}
{tenants}"""
    )
    return path


def start_server(directory: Path, config: Path, reactor_name: str, twistd_options: list[str] | None = None) -> subprocess.Popen[bytes]:
    """
    C{twistd -n aiconnect --config FILE} in C{directory}, its output in
    C{server.log} there; C{twistd_options} go before C{-n} (C{--profile}...).  The repository is put first on C{PYTHONPATH} so
    that twistd finds the plugin even with an editable install.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    argv = [
        sys.executable,
        "-c",
        "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()",
        "--pidfile=",
        "--logger=aiconnect.logsetup.observer",
    ]
    if reactor_name != "default":
        argv.append("--reactor=" + reactor_name)
    argv += twistd_options or []
    argv += ["-n", "aiconnect", "--config", str(config)]
    log = open(directory / "server.log", "wb")
    try:
        return subprocess.Popen(argv, cwd=str(directory), env=env, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


def wait_ready(proc: subprocess.Popen[bytes], sip_port: int, timeout: float) -> bool:
    """
    Whether the server answers OPTIONS over UDP and accepts TCP within
    C{timeout} s.
    """
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LEGIT_SOURCE, 0))
        s.settimeout(0.5)
        local = s.getsockname()
        msg = sip_request("OPTIONS", "sip:%s" % DOMAIN, local, "ready-" + secrets.token_hex(4), "r", 1, to="<sip:%s>" % DOMAIN).to_bytes()
        while time.monotonic() < deadline and proc.poll() is None:
            s.sendto(msg, (SERVER, sip_port))
            try:
                if s.recv(65535).startswith(b"SIP/2.0 200"):
                    break
            except OSError:
                continue
        else:
            return False
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection((SERVER, sip_port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


def stop_process(proc: subprocess.Popen[bytes], grace: float) -> int | None:
    """
    SIGTERM, then SIGKILL after C{grace} s; the exit status (None if it
    would not die).
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                return None
    return proc.returncode


def server_connections(pid: int, port: int, source: str) -> int | None:
    """
    How many TCP connections from C{source} to C{port} the process C{pid}
    holds (accepted, so an open file descriptor), from /proc: what the
    server sees, unlike the client, which also counts connections still in
    the listen queue.  L{None} when /proc cannot tell.
    """
    try:
        inodes = set()
        for fd in os.listdir("/proc/%d/fd" % pid)[:100_000]:
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        local_end = ":%04X" % port
        remote = "%08X" % struct.unpack("<I", socket.inet_aton(source))[0]
        held = 0
        with open("/proc/net/tcp") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 9 and fields[3] == "01" and fields[1].endswith(local_end) and fields[2].startswith(remote + ":") and fields[9] in inodes:
                    held += 1
        return held
    except (OSError, ValueError, struct.error):
        return None
