# -*- test-case-name: tests.sip.test_headers,tests.sip.test_repeats -*-
"""
Whether the SIP stack writes its per-message debug lines ("recv INVITE
... from ...", "send 200 ...").

C{twisted.logger}'s C{Logger.debug} builds the whole event (and
C{Logger.__get__} a new logger) before the observer's level filter drops
it: a few microseconds per line, several lines per message. The lines
are therefore written only while L{debug} is true:

    if trace.debug:
        self.log.debug("recv {method} ...", ...)

L{debug} is C{True} until the log level is known; whoever sets the
level (C{aiconnect.logsetup}) calls L{set_level}, so C{[log] level =
"debug"} shows every message and any higher level costs one attribute
read per line.

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

#: Whether per-message debug lines are written.
debug = True


def set_level(level: object) -> None:
    """
    Follow the lowest level written: per-message lines only at C{debug}.

    @param level: a C{twisted.logger.LogLevel} constant or its name, in
        any case.
    """
    global debug
    name = getattr(level, "name", level)
    debug = str(name).strip().lower() == "debug"
