# -*- test-case-name: tests.test_ops_logs -*-
"""
The pieces of issue 14's logs and start-up errors that need no process:
L{aiconnect.logsetup.for_twistd} (twistd's destination, the C{[log]}
level and format, the environment's override), Twisted's factory chatter
at debug, L{aiconnect.tap.listen} and L{aiconnect.tap.one_line_errors},
and the secrets start-up lines leave out.
"""

from __future__ import annotations

import io
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol, Factory
from twisted.logger import Logger, LogLevel
from twisted.trial.unittest import SynchronousTestCase

from aiconnect import logsetup, tap
from aiconnect.errors import ConfigError
from aiconnect.sip import trace


def _emit(observer: Any, level: LogLevel, fmt: str, **fields: Any) -> None:
    Logger(namespace="aiconnect.test", observer=observer).emit(level, fmt, **fields)


class ForTwistdTests(SynchronousTestCase):
    """
    L{logsetup.for_twistd} and L{logsetup.twistd_observer}.
    """

    def setUp(self) -> None:
        for name in (logsetup.ENV_FORMAT, logsetup.ENV_LEVEL):
            old = os.environ.pop(name, None)
            if old is not None:
                self.addCleanup(os.environ.__setitem__, name, old)
            self.addCleanup(os.environ.pop, name, None)
        self.addCleanup(setattr, logsetup, "_twistd_factory", logsetup._twistd_factory)
        self.addCleanup(trace.set_level, "debug" if trace.debug else "info")

    def test_logfile_at_level(self) -> None:
        """
        With C{--logfile}, the observer writes there, dropping lines below
        the C{[log]} level, and tells the SIP stack the level.
        """
        path = Path(tempfile.mkdtemp()) / "server.log"
        name = logsetup.for_twistd({"logfile": str(path), "nodaemon": True}, "text", "warn", lambda f: None)
        self.assertEqual(name, "aiconnect.logsetup.twistd_observer")
        trace.set_level("debug")
        observer = logsetup.twistd_observer()
        self.assertFalse(trace.debug)
        _emit(observer, LogLevel.info, "quiet")
        _emit(observer, LogLevel.warn, "loud {x}", x=1)
        text = path.read_text()
        self.assertIn("loud 1", text)
        self.assertNotIn("quiet", text)

    def test_stdout_json(self) -> None:
        """
        With C{-n} and no C{--logfile}, JSON lines go to standard output.
        """
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        logsetup.for_twistd({"logfile": None, "nodaemon": True}, "json", "debug", lambda f: None)
        observer = logsetup.twistd_observer()
        self.assertTrue(trace.debug)
        _emit(observer, LogLevel.debug, "line {n}", n=2)
        self.assertIn('"message":"line 2"', out.getvalue())

    def test_environment_overrides(self) -> None:
        """
        C{AICONNECT_LOG_LEVEL} overrides the file's level; an unknown value
        is a one-line L{ValueError} naming the variable.
        """
        os.environ[logsetup.ENV_LEVEL] = "error"
        self.assertEqual(logsetup.settings("text", "debug"), ("text", "error"))
        os.environ[logsetup.ENV_LEVEL] = "loud"
        with self.assertRaises(ValueError) as cm:
            logsetup.settings("text", "info")
        self.assertTrue(str(cm.exception).startswith("AICONNECT_LOG_LEVEL: "), cm.exception)

    def test_factory_chatter_is_debug(self) -> None:
        """
        Twisted's "Starting factory" / "Stopping factory" lines (one pair
        per outbound connection) are written at debug only.
        """
        out = io.StringIO()
        info = logsetup.make_observer("text", "info", out)
        factory = Factory()
        Logger(namespace="twisted", observer=info).info("Starting factory {factory!r}", factory=factory)
        Logger(namespace="twisted", observer=info).info("something else")
        self.assertNotIn("Starting factory", out.getvalue())
        self.assertIn("something else", out.getvalue())
        out = io.StringIO()
        debug = logsetup.make_observer("text", "debug", out)
        Logger(namespace="twisted", observer=debug).info("Starting factory {factory!r}", factory=factory)
        self.assertIn("Starting factory", out.getvalue())


class OptionsTests(SynchronousTestCase):
    """
    L{tap.Options} under twistd.
    """

    def test_logger_set_unless_given(self) -> None:
        """
        Parsed as twistd's subcommand, the options name the C{[log]}
        observer as twistd's C{logger}, unless C{--logger} named one.
        """
        from twisted.scripts.twistd import ServerOptions

        self.addCleanup(setattr, sys, "excepthook", sys.excepthook)
        self.addCleanup(setattr, logsetup, "_twistd_factory", logsetup._twistd_factory)
        shipped = str(Path(__file__).parent.parent / "etc" / "aiconnect.toml")
        server = ServerOptions()
        server.parseOptions(["-n", "aiconnect", "--config", shipped])
        self.assertIs(server["logger"], logsetup.twistd_observer)
        server = ServerOptions()
        server.parseOptions(["-n", "--logger", "aiconnect.logsetup.observer", "aiconnect", "--config", shipped])
        self.assertIs(server["logger"], logsetup.observer)


class ListenTests(SynchronousTestCase):
    """
    L{tap.listen} on real sockets.
    """

    def test_address_in_use(self) -> None:
        """
        A taken UDP port: one line with the key, the port and the address.
        """
        taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with self.assertRaises(tap.StartupError) as cm:
            tap.listen(
                "sip.udp_port", port, "127.0.0.1",
                lambda p: reactor.listenUDP(p, DatagramProtocol(), interface="127.0.0.1"),
            )
        self.assertEqual(str(cm.exception), f"sip.udp_port {port}: address already in use (127.0.0.1)")

    def test_free_port(self) -> None:
        """
        A free port is bound and returned.
        """
        bound = tap.listen(
            "sip.udp_port", 0, "127.0.0.1", lambda p: reactor.listenUDP(p, DatagramProtocol(), interface="127.0.0.1")
        )
        self.addCleanup(bound.stopListening)
        self.assertGreater(bound.getHost().port, 0)


class OneLineErrorsTests(SynchronousTestCase):
    """
    L{tap.one_line_errors}.
    """

    def test_ours_one_line_others_passed_on(self) -> None:
        """
        An L{AiconnectError} is its one line on the real standard error;
        anything else goes to the previous hook.
        """
        err = io.StringIO()
        self.patch(sys, "__stderr__", err)
        passed: list[Any] = []
        hook = tap.one_line_errors(lambda *a: passed.append(a))
        hook(ConfigError, ConfigError("api.port", "bad"), None)
        self.assertEqual(err.getvalue(), "config: api.port: bad\n")
        boom = RuntimeError("x")
        hook(RuntimeError, boom, None)
        self.assertEqual(passed, [(RuntimeError, boom, None)])


class UrlTests(SynchronousTestCase):
    """
    Start-up lines show URLs without credentials.
    """

    def test_credentials_removed(self) -> None:
        """
        User and password are dropped, host, port and path kept.
        """
        self.assertEqual(tap._url("https://user:secret@app.example.com:8443/hook"), "https://app.example.com:8443/hook")
        self.assertEqual(tap._url("http://[::1]:9000/x"), "http://[::1]:9000/x")
        self.assertEqual(tap._url("http://u:p@[::1]/x"), "http://[::1]/x")


class CallLineTests(SynchronousTestCase):
    """
    The runner's info lines for forward failures, on a Clock (the started,
    stopped and session lines are checked through twistd in
    L{tests.integration.test_startup}).
    """

    def test_forward_failed_line(self) -> None:
        """
        A forward that fails gives one info line with its id, the order's
        URI (no target was reached), the status and the reason; the JSON
        fields are the line's.
        """
        from twisted.logger import capturedLogs, formatEvent

        from aiconnect.call import ForwardFailed
        from tests.fakes import FakeOrder, RecordingLegFactory, make_runner

        runner = make_runner(leg_factory=RecordingLegFactory(), acked=True, call_id="cid-7")
        forward_id = runner.order_forward(FakeOrder())
        with capturedLogs() as events:
            runner.feed(ForwardFailed(now=runner.now(), forward_id=forward_id, reason="busy here", status=486))
        lines = [formatEvent(e) for e in events if e["log_level"] is LogLevel.info]
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith(f"forward failed forward_id={forward_id} target="), lines[0])
        self.assertIn(" status=486 reason=busy here session_id=", lines[0])
        record = [e for e in events if e["log_level"] is LogLevel.info][0]
        self.assertEqual((record["status"], record["call_id"], record["src"]), (486, "cid-7", "127.0.0.1"))
        self.assertNotIn("gap_ms", record)
