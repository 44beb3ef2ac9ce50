# -*- test-case-name: tests.test_logsetup -*-
"""
Tests for L{aiconnect.logsetup}.
"""

from __future__ import annotations

import io
import json
import os
import sys

from twisted.logger import ILogObserver, Logger, LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from aiconnect import logsetup
from aiconnect.sip import trace
from aiconnect.logsetup import event_as_json, level_predicate, make_observer, observer, parse_level


def _emit(obs: ILogObserver, level: LogLevel, fmt: str, **fields: object) -> None:
    """
    Log one event to C{obs} through a L{Logger}.
    """
    Logger(namespace="aiconnect.test", observer=obs).emit(level, fmt, **fields)


class MakeObserverTests(SynchronousTestCase):
    """
    Tests for L{make_observer}.
    """

    def test_text(self) -> None:
        """
        The text observer writes the formatted message with namespace and level.
        """
        stream = io.StringIO()
        _emit(make_observer("text", "info", stream), LogLevel.info, "call {call_id} started", call_id="c-1")
        line = stream.getvalue()
        self.assertIn("[aiconnect.test#info] call c-1 started", line)
        self.assertTrue(line.endswith("\n"))

    def test_json_lines(self) -> None:
        """
        The JSON observer writes one JSON object per line with time, level, namespace, message and the structured fields.
        """
        stream = io.StringIO()
        obs = make_observer("json", "debug", stream)
        _emit(obs, LogLevel.warn, "leg {leg} failed: {reason}", leg="srs-1", reason=503, call_id="c-2")
        _emit(obs, LogLevel.debug, "second")
        lines = stream.getvalue().splitlines()
        self.assertEqual(len(lines), 2)
        record = json.loads(lines[0])
        self.assertEqual(record["level"], "warn")
        self.assertEqual(record["namespace"], "aiconnect.test")
        self.assertEqual(record["message"], "leg srs-1 failed: 503")
        self.assertEqual((record["leg"], record["reason"], record["call_id"]), ("srs-1", 503, "c-2"))
        self.assertTrue(record["time"].endswith("+00:00"))
        self.assertNotIn("log_format", record)

    def test_json_unserializable_field(self) -> None:
        """
        A field JSON cannot encode is written as its C{str()}.
        """
        stream = io.StringIO()
        _emit(make_observer("json", "info", stream), LogLevel.info, "x", peer=("192.0.2.1", {1, 2}))
        self.assertIsInstance(json.loads(stream.getvalue())["peer"], str)

    def test_json_wire_bytes(self) -> None:
        """
        SIP text holding a byte that is not UTF-8 (a lone surrogate after
        C{surrogateescape}) is written decoded, as UTF-8-encodable JSON.
        """
        stream = io.StringIO()
        _emit(make_observer("json", "info", stream), LogLevel.info, "from {who}", who='"Jos\udce9"')
        line = stream.getvalue()
        line.encode("utf-8")
        self.assertEqual(json.loads(line)["who"], '"Jos\u00e9"')

    def test_json_failure(self) -> None:
        """
        A logged failure carries its traceback in the C{failure} field.
        """
        stream = io.StringIO()
        log = Logger(namespace="aiconnect.test", observer=make_observer("json", "info", stream))
        try:
            1 / 0
        except ZeroDivisionError:
            log.failure("boom")
        record = json.loads(stream.getvalue())
        self.assertEqual(record["level"], "critical")
        self.assertIn("ZeroDivisionError", record["failure"])

    def test_level_filter(self) -> None:
        """
        Events below the configured level are dropped.
        """
        stream = io.StringIO()
        obs = make_observer("text", "warn", stream)
        _emit(obs, LogLevel.info, "quiet")
        _emit(obs, LogLevel.error, "loud")
        self.assertNotIn("quiet", stream.getvalue())
        self.assertIn("loud", stream.getvalue())

    def test_bad_format(self) -> None:
        """
        An unknown format is a L{ValueError}.
        """
        self.assertRaises(ValueError, make_observer, "xml", "info", io.StringIO())

    def test_parse_level(self) -> None:
        """
        Level names are case-insensitive, accept C{warning}, and unknown names raise L{ValueError}.
        """
        self.assertIs(parse_level("DEBUG"), LogLevel.debug)
        self.assertIs(parse_level("warning"), LogLevel.warn)
        self.assertIs(parse_level(LogLevel.error), LogLevel.error)
        self.assertRaises(ValueError, parse_level, "loud")

    def test_level_predicate(self) -> None:
        """
        L{level_predicate} sets the default level of a level filter.
        """
        self.assertIs(level_predicate("error").logLevelForNamespace("anything"), LogLevel.error)

    def test_event_as_json_minimal(self) -> None:
        """
        An event without time or level still renders as JSON.
        """
        record = json.loads(event_as_json({"log_format": "hello {who}", "who": "you"}))
        self.assertEqual((record["message"], record["who"], record["time"]), ("hello you", "you", None))


class ObserverFactoryTests(SynchronousTestCase):
    """
    Tests for L{observer}, the C{twistd --logger} factory.
    """

    def setUp(self) -> None:
        """
        Capture standard output and isolate the environment variables.
        """
        self.stdout = io.StringIO()
        self.patch(sys, "stdout", self.stdout)
        for name in (logsetup.ENV_FORMAT, logsetup.ENV_LEVEL):
            old = os.environ.pop(name, None)
            if old is not None:
                self.addCleanup(os.environ.__setitem__, name, old)
            self.addCleanup(os.environ.pop, name, None)
        self.patch(trace, "debug", trace.debug)

    def test_sip_trace_follows_level(self) -> None:
        """
        The factory tells the SIP stack whether to build its per-message
        debug lines: not at info (the default), yes at debug.
        """
        observer()
        self.assertFalse(trace.debug)
        os.environ[logsetup.ENV_LEVEL] = "debug"
        observer()
        self.assertTrue(trace.debug)

    def test_text_by_default(self) -> None:
        """
        Without environment variables the factory writes text to standard output at info level.
        """
        obs = observer()
        _emit(obs, LogLevel.debug, "hidden")
        _emit(obs, LogLevel.info, "shown")
        self.assertNotIn("hidden", self.stdout.getvalue())
        self.assertIn("[aiconnect.test#info] shown", self.stdout.getvalue())

    def test_json_from_environment(self) -> None:
        """
        C{AICONNECT_LOG_FORMAT=json} and C{AICONNECT_LOG_LEVEL=debug} select JSON lines at debug level.
        """
        os.environ[logsetup.ENV_FORMAT] = "json"
        os.environ[logsetup.ENV_LEVEL] = "debug"
        _emit(observer(), LogLevel.debug, "shown")
        self.assertEqual(json.loads(self.stdout.getvalue())["message"], "shown")

    def test_provides_interface(self) -> None:
        """
        The factory's result is a new-style L{ILogObserver}, as twistd expects.
        """
        self.assertTrue(ILogObserver.providedBy(observer()))


class FailureImportTests(SynchronousTestCase):
    """
    Guard against regressions in the failure rendering helper.
    """

    def test_failure_object(self) -> None:
        """
        A L{Failure} passed as C{log_failure} is rendered through its traceback.
        """
        record = json.loads(
            event_as_json({"log_format": "x", "log_failure": Failure(ValueError("v")), "log_level": LogLevel.error})
        )
        self.assertIn("ValueError", record["failure"])


class ConfigLogTests(SynchronousTestCase):
    """
    The observer takes [log] from the file named by --config.
    """

    def test_reads_log_table(self) -> None:
        """
        --config FILE with [log] format = "json" and level = "warn" is read.
        """
        import tempfile
        from pathlib import Path

        from aiconnect.logsetup import _config_log

        path = Path(tempfile.mkdtemp()) / "c.toml"
        path.write_text('[log]\nformat = "json"\nlevel = "warn"\n')
        self.assertEqual(_config_log(["twistd", "-n", "aiconnect", "--config", str(path)]), ("json", "warn"))
        self.assertEqual(_config_log(["twistd", "--config=%s" % path]), ("json", "warn"))
        self.assertEqual(_config_log(["twistd"]), ("text", "info"))
        self.assertEqual(_config_log(["twistd", "--config", str(path) + ".missing"]), ("text", "info"))
