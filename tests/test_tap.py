"""
The twistd plugin and the composition root: the plugin is found, the
shipped configuration builds the service tree, and twistd runs it and stops
cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import treq
from twisted.application.service import IServiceMaker
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase, TestCase

from aiconnect import tap
from tests.integration.helpers import Certificates, free_port, write_config
from tests.integration.twistd import Twistd, options, sleep, start_twistd, wait_ready

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
        self.assertEqual(sorted(s.name for s in svc), ["api", "rtp", "sip", "startup", "webhooks"])
        svc.outbox.close()
        svc.dialog_store.close()

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
        An invalid file stops option parsing with one line naming the key
        (a SystemExit: a UsageError would make twistd print its usage).
        """
        path = Path(tempfile.mkdtemp()) / "bad.toml"
        path.write_text("[sip]\nudp_port = 70000\n")

        with self.assertRaises(SystemExit) as cm:
            tap.Options().parseOptions(["--config", str(path)])
        self.assertIn("sip.udp_port", str(cm.exception.code))
        self.assertNotIn("\n", str(cm.exception.code))


class TwistdTests(TestCase):
    """
    twistd as a subprocess.
    """

    timeout = 60

    def start(self) -> tuple[Twistd, int, int]:
        d = Path(tempfile.mkdtemp(prefix="aiconnect-twistd-"))
        sip, api = free_port(), free_port()
        path = write_config(d, Certificates(), sip, sip, free_port(), api)
        return start_twistd(self, path), sip, api

    async def test_twistd_runs_and_stops_on_sigterm(self) -> None:
        """
        `twistd -n aiconnect --config FILE` (with the aiconnect-epoll reactor
        plugin) answers OPTIONS over UDP and stops cleanly on SIGTERM.
        """
        server, sip, _ = self.start()
        await wait_ready(self, server, sip)
        rc = await server.stop()
        out = server.output()
        # twistd re-raises the terminating signal once the reactor has
        # stopped cleanly (Twisted >= 22.8), so the status is -SIGTERM.
        self.assertIn(rc, (0, -signal.SIGTERM), out)
        self.assertIn("Main loop terminated", out)
        self.assertNotIn("Traceback", out)
        self.assertIn("RelayEPollReactor", out)

    async def test_sighup_reloads(self) -> None:
        """
        SIGHUP (an operator's `kill -HUP` or `systemctl reload`) does not
        kill the server: it re-reads the unchanged file (one log line:
        "no change"), and SIP and the REST API still answer afterwards.
        """
        server, sip, api = self.start()
        await wait_ready(self, server, sip)
        server.signal(signal.SIGHUP)
        reloaded = "reloaded: no change"
        self.assertTrue(await server.wait_for_output(reloaded), server.output())
        self.assertTrue(server.alive(), server.output())
        self.assertEqual(await options(sip), 200)
        response = await treq.get("http://127.0.0.1:%d/health" % (api,), persistent=False)
        await response.content()
        self.assertEqual(response.code, 200)
        rc = await server.stop()
        self.assertIn(rc, (0, -signal.SIGTERM), server.output())
        self.assertEqual(server.output().count(reloaded), 1)


class SignalTests(SynchronousTestCase):
    """
    The SIGHUP handler of the service tree, without sending signals.
    """

    def test_installed_on_start_restored_on_stop(self) -> None:
        """
        With handle_signals (twistd), starting installs a SIGHUP handler and
        stopping puts the previous one back; without it, SIGHUP is left
        alone (in-process tests).
        """
        before = signal.getsignal(signal.SIGHUP)
        svc = tap.AiconnectService(Clock(), handle_signals=True)
        self.addCleanup(svc._restore_sighup)
        svc.startService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), svc._sighup_received)
        svc._restore_sighup()
        self.assertEqual(signal.getsignal(signal.SIGHUP), before)
        tap.AiconnectService(Clock()).startService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), before)

    def test_sighup_logs_one_line(self) -> None:
        """
        The handler hands over to the reactor, which logs the line.
        """
        reactor = Clock()
        calls: list[Any] = []
        reactor.callFromThread = lambda f, *a: calls.append(f)  # type: ignore[attr-defined]
        svc = tap.AiconnectService(reactor)
        svc._sighup_received(signal.SIGHUP, None)
        with capturedLogs() as logs:
            for f in calls:
                f()
        self.assertEqual([e["log_format"] for e in logs], [tap.SIGHUP_IGNORED])
