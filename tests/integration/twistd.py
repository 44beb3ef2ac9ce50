# -*- test-case-name: tests.integration.test_restart,tests.integration.test_drain,tests.test_tap -*-
"""
The server as operators run it: C{twistd -n aiconnect --config FILE} in a
subprocess (the aiconnect-epoll reactor), its output in a file, probed
with SIP OPTIONS over UDP, signalled, killed and started again on the same
configuration and database.

Waiting is done on the test's reactor (never blocking it): the test's own
peers (SRC, SRS, application) keep answering while the subprocess works.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tests.fakes import UdpPeer, WaitTimeout, pause, status_of, wait_until
from tests.integration.helpers import options_request

ROOT = Path(__file__).parent.parent.parent

#: The twistd command line: the installed console script may not see the
#: plugin in an editable install, so twistd is run from its module.
TWISTD = [
    sys.executable,
    "-c",
    "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()",
    "--reactor=aiconnect-epoll",
    "-n",
    "--pidfile=",
    "aiconnect",
]


#: Let the test's reactor run for C{seconds} (L{tests.fakes.pause}).
sleep = pause


class Twistd:
    """
    One server process at a time on one configuration; every run appends
    to the same output file.

    @ivar proc: the current C{subprocess.Popen}, or C{None}.
    """

    def __init__(self, config: Path, cwd: Path | None = None) -> None:
        self.config = config
        self.cwd = cwd or config.parent
        self.log_path = Path(tempfile.mkdtemp(prefix="aiconnect-twistd-log-")) / "twistd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """
        Start the server (a new process).
        """
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                TWISTD + ["--config", str(self.config)],
                cwd=str(self.cwd),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        """
        Everything every run printed so far.
        """
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        """
        Whether the current process is running.
        """
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        """
        Send a signal to the current process.
        """
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill(self) -> None:
        """
        C{kill -9} the current process and reap it.
        """
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    async def wait_exit(self, timeout: float) -> int | None:
        """
        The exit status once the process ended, or C{None} after
        C{timeout} seconds.
        """
        proc = self.proc
        assert proc is not None
        try:
            await wait_until(lambda: proc.poll() is not None, timeout, interval=0.05)
        except WaitTimeout:
            pass
        return proc.poll()

    async def stop(self, timeout: float = 20.0) -> int | None:
        """
        SIGTERM (the drain), then wait; killed if it outlives C{timeout}.

        @return: the exit status, C{None} if it had to be killed.
        """
        self.signal(signal.SIGTERM)
        rc = await self.wait_exit(timeout)
        if rc is None:
            self.kill()
        return rc

    async def wait_for_output(self, text: str, timeout: float = 10.0) -> bool:
        """
        Whether C{text} appears in the output within C{timeout} seconds.
        """
        try:
            return await wait_until(lambda: text in self.output(), timeout, interval=0.05)
        except WaitTimeout:
            return False


async def options(sip_port: int, timeout: float = 0.5) -> int | None:
    """
    Send one OPTIONS over UDP; the status of the answer, or C{None}.
    """
    peer = UdpPeer()
    port = reactor.listenUDP(0, peer, interface="127.0.0.1")
    try:
        local = port.getHost().port
        peer.send(options_request("UDP", local, "probe-" + secrets.token_hex(4), secrets.token_hex(4)), sip_port)
        try:
            return status_of(await peer.next_message(timeout))
        except Exception:
            return None
    finally:
        await port.stopListening()


async def wait_ready(test: TestCase, server: Twistd, sip_port: int, timeout: float = 30.0) -> None:
    """
    Wait until the server answers OPTIONS with 200; fail the test with its
    output if it exits or does not answer in time.
    """

    async def answered() -> bool:
        if not server.alive():
            test.fail("twistd exited:\n" + server.output())
        return await options(sip_port) == 200

    await wait_until(answered, timeout, interval=0.05, what=lambda: "twistd answering OPTIONS; its output:\n" + server.output())


def start_twistd(test: TestCase, config: Path, cwd: Path | None = None) -> Twistd:
    """
    A started L{Twistd}, killed at the end of the test if still running.
    """
    server = Twistd(config, cwd)
    server.start()
    test.addCleanup(server.kill)
    return server


__all__ = ["Twistd", "options", "sleep", "start_twistd", "wait_ready"]
