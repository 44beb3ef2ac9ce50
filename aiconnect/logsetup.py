# -*- test-case-name: tests.test_logsetup -*-
"""
Log output for C{twisted.logger}: human-readable text or JSON lines, filtered
by level.

    - C{twistd --logger=aiconnect.logsetup.observer ...} calls L{observer}
      with no arguments, before the configuration file is read, so it takes
      its settings from the environment: C{AICONNECT_LOG_FORMAT} (C{text}, the
      default, or C{json}) and C{AICONNECT_LOG_LEVEL} (C{debug}, C{info}, the
      default, C{warn}, C{error}, C{critical}).
    - L{make_observer} builds the same observers from explicit values (the
      C{[log]} section), for C{aiconnect.tap} and tests.
    - L{for_twistd} is what C{aiconnect.tap} hands twistd when no
      C{--logger} is given: twistd's own destination (standard output with
      C{-n}, C{--logfile}, C{twistd.log} when daemonized, C{--syslog}) with
      the C{[log]} format and level, so C{[log] level} works without extra
      flags.

A JSON line holds C{time} (ISO 8601, UTC), C{level}, C{namespace},
C{message} (the formatted text), C{failure} (the traceback, when there is
one), and every structured field of the event whose name does not start with
C{log_} (C{call_id}, C{leg}, C{reason} ...), converted with C{str()} when it
is not JSON-serializable.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import sys
from collections.abc import Callable, Mapping
from typing import IO, Any

from constantly import NamedConstant
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    InvalidLogLevelError,
    LegacyLogObserverWrapper,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    textFileLogObserver,
)
from zope.interface import implementer

from aiconnect.sip import trace
from aiconnect.text import decode_wire

__all__ = [
    "ENV_FORMAT",
    "ENV_LEVEL",
    "JsonLinesObserver",
    "event_as_json",
    "for_twistd",
    "twistd_observer",
    "level_predicate",
    "make_observer",
    "observer",
    "parse_level",
]

ENV_FORMAT = "AICONNECT_LOG_FORMAT"
ENV_LEVEL = "AICONNECT_LOG_LEVEL"

FORMATS = ("text", "json")


def parse_level(level: str | NamedConstant) -> NamedConstant:
    """
    @param level: A L{LogLevel} or its name (C{debug}, C{info}, C{warn},
        C{error}, C{critical}; C{warning} is accepted for C{warn}), in any
        case.
    @return: The level.
    @raise ValueError: For an unknown name.
    """
    if not isinstance(level, str):
        # LogLevel's members are NamedConstants, not LogLevel instances.
        return level
    name = level.strip().lower()
    if name == "warning":
        name = "warn"
    try:
        return LogLevel.levelWithName(name)
    except InvalidLogLevelError:
        raise ValueError(f"unknown log level {level!r}") from None


#: Twisted's own info lines per connection (a client factory starts and
#: stops with each outbound connection: callbacks, TCP/TLS forwards):
#: written at debug only.
CHATTER = frozenset({"Starting factory {factory!r}", "Stopping factory {factory!r}"})


class _LevelPredicate(LogLevelFilterPredicate):
    """
    L{LogLevelFilterPredicate} counting L{CHATTER} as debug.
    """

    def __call__(self, event: LogEvent) -> NamedConstant:
        if event.get("log_format") in CHATTER and event.get("log_level") is LogLevel.info:
            event = dict(event, log_level=LogLevel.debug)
        return super().__call__(event)


def level_predicate(level: str | NamedConstant) -> LogLevelFilterPredicate:
    """
    A filter predicate letting through events at C{level} or above
    (Twisted's factory start and stop lines, L{CHATTER}, count as debug).

    @param level: The lowest level emitted.
    @return: The predicate, for a L{FilteringLogObserver}.
    """
    return _LevelPredicate(defaultLogLevel=parse_level(level))


def _json_value(value: Any) -> Any:
    """
    @return: C{value} if JSON can encode it, else C{str(value)}.
    """
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


def event_as_json(event: Mapping[str, Any]) -> str:
    """
    Render one event as one line of JSON (no newline).

    @param event: A C{twisted.logger} event.
    @return: The JSON text.
    """
    level = event.get("log_level")
    timestamp = event.get("log_time")
    record: dict[str, Any] = {
        "time": (
            datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat()
            if isinstance(timestamp, (int, float))
            else None
        ),
        "level": getattr(level, "name", None),
        "namespace": event.get("log_namespace"),
        "message": formatEvent(event),
    }
    failure = event.get("log_failure")
    if failure is not None:
        try:
            record["failure"] = failure.getTraceback()
        except Exception:
            record["failure"] = repr(failure)
    for key, value in event.items():
        if key.startswith("log_") or key in record:
            continue
        record[key] = _json_value(value)
    # SIP text from the wire may hold undecodable bytes (lone surrogates):
    # a log line must never fail to be written because of them.
    return decode_wire(json.dumps(record, separators=(",", ":"), ensure_ascii=False))


@implementer(ILogObserver)
class JsonLinesObserver:
    """
    Write each event as one line of JSON (L{event_as_json}) and flush.
    """

    def __init__(self, stream: IO[str]) -> None:
        """
        @param stream: The text stream to write to.
        """
        self._stream = stream

    def __call__(self, event: LogEvent) -> None:
        """
        Write C{event}.

        @param event: The event.
        """
        self._stream.write(event_as_json(event) + "\n")
        self._stream.flush()


def make_observer(
    fmt: str = "text",
    level: str | NamedConstant = "info",
    stream: IO[str] | None = None,
) -> ILogObserver:
    """
    Build an observer writing text or JSON lines, dropping events below
    C{level}.

    @param fmt: C{"text"} or C{"json"}.
    @param level: The lowest level emitted (a L{LogLevel} or its name).
    @param stream: Where to write; C{sys.stdout} (as it is now) if omitted.
    @return: The observer.
    @raise ValueError: For an unknown format or level.
    """
    if stream is None:
        stream = sys.stdout
    if fmt == "text":
        inner: ILogObserver = textFileLogObserver(stream)
    elif fmt == "json":
        inner = JsonLinesObserver(stream)
    else:
        raise ValueError(f"unknown log format {fmt!r} (text | json)")
    return FilteringLogObserver(inner, [level_predicate(level)])


def observer() -> ILogObserver:
    """
    The observer factory for C{twistd --logger=aiconnect.logsetup.observer}:
    L{make_observer} with the format and level of the configuration's
    C{[log]} table (found through C{--config} on the command line), which
    C{AICONNECT_LOG_FORMAT} and C{AICONNECT_LOG_LEVEL} override; writing to
    standard output.

    @return: The observer.
    @raise ValueError: If either variable holds an unknown value.
    """
    fmt, level = settings(*_config_log(sys.argv))
    built = make_observer(fmt, level, sys.stdout)
    # The process's level is known: the SIP stack builds its per-message
    # debug lines only at debug (aiconnect.sip.trace).
    trace.set_level(level)
    return built


def settings(fmt: str, level: str) -> tuple[str, str]:
    """
    The format and level in effect: the configuration's, unless
    C{AICONNECT_LOG_FORMAT} or C{AICONNECT_LOG_LEVEL} override them.

    @param fmt: The C{[log] format}.
    @param level: The C{[log] level}.
    @return: C{(format, level)}, both checked.
    @raise ValueError: For an unknown format or level (one line, naming the
        variable when it came from one).
    """
    env_fmt = os.environ.get(ENV_FORMAT, "").strip().lower()
    env_level = os.environ.get(ENV_LEVEL, "").strip()
    fmt = env_fmt or fmt
    level = env_level or level
    if fmt not in FORMATS:
        where = f"{ENV_FORMAT}: " if env_fmt else ""
        raise ValueError(f"{where}unknown log format {fmt!r} (text | json)")
    try:
        parse_level(level)
    except ValueError as e:
        raise ValueError(f"{ENV_LEVEL}: {e}" if env_level else str(e)) from None
    return fmt, level


#: The factory L{twistd_observer} calls (set by L{for_twistd}).
_twistd_factory: Callable[[], ILogObserver] | None = None


def for_twistd(
    options: Mapping[str, Any], fmt: str, level: str, call_from_thread: Callable[[Callable[[], Any]], Any]
) -> str:
    """
    Make L{twistd_observer} the observer factory twistd uses when the
    command line names no C{--logger} (C{aiconnect.tap} puts the returned
    name in twistd's options, which twistd imports): the destination
    twistd itself would choose, in the C{[log]} format, at the C{[log]}
    level (L{settings}).

    The destination, as twistd's own: C{--syslog} (text, with
    C{--prefix}); standard output with C{-n} and no C{--logfile} or
    C{--logfile=-}; else C{--logfile} or C{twistd.log}, rotated by size
    and on C{SIGUSR1}.

    @param options: twistd's C{ServerOptions}.
    @param fmt: The C{[log] format}.
    @param level: The C{[log] level}.
    @param call_from_thread: The reactor's C{callFromThread} (looked up
        when called: twistd installs the reactor after this): the log file
        is rotated there, not in the signal handler.
    @return: The dotted name of L{twistd_observer}, for C{--logger}.
    @raise ValueError: For an unknown format or level.
    """
    global _twistd_factory
    fmt, level = settings(fmt, level)

    def factory() -> ILogObserver:
        # The SIP stack builds its per-message lines only at debug.
        trace.set_level(level)
        if options.get("syslog"):
            from twisted.python.syslog import SyslogObserver

            syslog = LegacyLogObserverWrapper(SyslogObserver(options.get("prefix") or "aiconnect").emit)
            return FilteringLogObserver(syslog, [level_predicate(level)])
        return make_observer(fmt, level, _twistd_stream(options, call_from_thread))

    _twistd_factory = factory
    return f"{__name__}.twistd_observer"


def twistd_observer() -> ILogObserver:
    """
    The observer factory L{for_twistd} named; L{observer} when
    L{for_twistd} was not called.

    @return: The observer.
    """
    if _twistd_factory is None:
        return observer()
    return _twistd_factory()


def _twistd_stream(options: Mapping[str, Any], call_from_thread: Callable[[Callable[[], Any]], Any]) -> IO[str]:
    """
    The stream twistd would log to (C{twisted.scripts._twistd_unix}'s
    choice, without its private class).
    """
    name = options.get("logfile") or ""
    if name == "-" or (not name and options.get("nodaemon")):
        return sys.stdout
    from twisted.python.logfile import LogFile

    log_file = LogFile.fromFullPath(name or "twistd.log")
    if hasattr(signal, "SIGUSR1") and not signal.getsignal(signal.SIGUSR1):

        def rotate(signum: int, frame: Any) -> None:
            call_from_thread(log_file.rotate)

        signal.signal(signal.SIGUSR1, rotate)
    return log_file  # type: ignore[return-value]


def _config_log(argv: list[str]) -> tuple[str, str]:
    """
    The C{[log]} settings of the configuration file named by C{--config} on
    twistd's command line (the observer is made before the plugin reads the
    file); the defaults when there is none or it cannot be read (start-up
    then reports the problem itself).
    """
    path = None
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
    if path is None:
        return "text", "info"
    try:
        from aiconnect.config import load

        cfg = load(path)
    except Exception:
        return "text", "info"
    return cfg.log.format, cfg.log.level
