"""
The twistd plugin and the composition root: the plugin is found, the
shipped configuration builds the service tree, and twistd runs it and stops
cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase, TestCase

from aiconnect import tap
from tests.integration.helpers import Certificates, free_port, write_config

ROOT = Path(__file__).parent.parent


class PluginTests(SynchronousTestCase):
    """
    The plugin pointer and makeService.
    """

    def test_plugin_listed(self) -> None:
        """
        getPlugins(IServiceMaker) includes the aiconnect plugin pointing at aiconnect.tap.
        """
        import twisted.plugins

        makers = {p.tapname: p for p in getPlugins(IServiceMaker, twisted.plugins)}
        self.assertIn("aiconnect", makers)
        self.assertEqual(makers["aiconnect"].module, "aiconnect.tap")

    def test_shipped_config_builds_named_children(self) -> None:
        """
        makeService on etc/aiconnect.toml returns the service tree with its
        named children, without starting anything.
        """
        cwd = os.getcwd()
        tmp = tempfile.mkdtemp()
        os.chdir(tmp)  # relative paths (var/, etc/tls) land in a scratch dir
        try:
            opts = tap.Options()
            opts.parseOptions(["--config", str(ROOT / "etc" / "aiconnect.toml")])
            svc = tap.makeService(opts)
        finally:
            os.chdir(cwd)
        self.assertEqual(sorted(s.name for s in svc), ["api", "rtp", "sip", "webhooks"])
        svc.outbox.close()

    def test_reactor_plugin_listed(self) -> None:
        """
        The aiconnect-epoll reactor plugin is found and names an installable module.
        """
        import twisted.plugins
        from twisted.application.reactors import IReactorInstaller

        names = {r.shortName: r for r in getPlugins(IReactorInstaller, twisted.plugins)}
        self.assertIn("aiconnect-epoll", names)
        self.assertEqual(names["aiconnect-epoll"].moduleName, "aiconnect.relayreactor")

    def test_bad_config_is_one_line(self) -> None:
        """
        An invalid file stops option parsing with one line naming the key.
        """
        path = Path(tempfile.mkdtemp()) / "bad.toml"
        path.write_text("[sip]\nudp_port = 70000\n")
        from twisted.python.usage import UsageError

        with self.assertRaises(UsageError) as cm:
            tap.Options().parseOptions(["--config", str(path)])
        self.assertIn("sip.udp_port", str(cm.exception))
        self.assertNotIn("\n", str(cm.exception))


class TwistdTests(TestCase):
    """
    twistd as a subprocess.
    """

    timeout = 60

    def test_twistd_runs_and_stops_on_sigterm(self) -> None:
        """
        `twistd -n aiconnect --config FILE` (with the aiconnect-epoll reactor
        plugin) answers OPTIONS over UDP and stops cleanly on SIGTERM.
        """
        import socket

        d = Path(tempfile.mkdtemp(prefix="aiconnect-twistd-"))
        certs = Certificates()
        sip = free_port()
        path = write_config(d, certs, sip, sip, free_port(), free_port())
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()",
                "--reactor=aiconnect-epoll",
                "-n",
                "--pidfile=",
                "aiconnect",
                "--config",
                str(path),
            ],
            cwd=str(d),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.settimeout(0.5)
            msg = (
                "OPTIONS sip:customer.example.com SIP/2.0\r\n"
                "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKtw1;rport\r\n"
                "Max-Forwards: 70\r\nTo: <sip:customer.example.com>\r\n"
                "From: <sip:probe@127.0.0.1>;tag=tw1\r\nCall-ID: twistd-probe\r\n"
                "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n" % s.getsockname()[1]
            ).encode()
            answer = b""
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not answer:
                s.sendto(msg, ("127.0.0.1", sip))
                try:
                    answer = s.recv(65535)
                except socket.timeout:
                    if proc.poll() is not None:
                        break
            s.close()
            self.assertTrue(answer.startswith(b"SIP/2.0 200"), proc.stdout.read() if proc.poll() is not None else answer)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = None
        out = proc.stdout.read().decode(errors="replace")
        # twistd re-raises the terminating signal once the reactor has
        # stopped cleanly (Twisted >= 22.8), so the status is -SIGTERM.
        self.assertIn(rc, (0, -signal.SIGTERM), out)
        self.assertIn("Main loop terminated", out)
        self.assertNotIn("Traceback", out)
        self.assertIn("RelayEPollReactor", out)
