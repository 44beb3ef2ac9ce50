# -*- test-case-name: tests.test_gctune -*-
"""
The garbage collector's settings for a long-running server process.

CPython's cyclic collector is generational but not incremental: a pass over
a generation walks every object in it while the reactor waits.  A server
carrying thousands of calls keeps hundreds of thousands of objects alive
(the live calls, and the SIP transactions that linger 32 s after each
exchange to absorb retransmissions), so with the interpreter's defaults a
full pass came every few seconds and stalled the reactor 250-450 ms:
measured on the signalling benchmark (issue 12), it made the setup p99
600-1000 ms and retransmissions at 150 calls/s, with 14 % of the CPU in the
collector.

A finished call is freed by reference counting (its runner, media session
and dialog break their cycles when the call ends: L{aiconnect.runner},
L{aiconnect.media.sessions}), so there is little left for the collector to
find.  L{CollectorService} therefore, in the twistd process only:

  - collects once and C{gc.freeze()}s what exists at start (modules,
    configuration, listeners: objects that live as long as the process);
  - keeps the young generations' passes (they are short: a few thousand
    objects) but stops the automatic full passes (L{THRESHOLDS}), and runs
    one itself every L{FULL_EVERY} seconds instead, logged at debug level
    with its duration and what it freed: the rare cycle that escapes is
    still collected, with one predictable pause every few minutes instead
    of one every few seconds.

The tests keep the interpreter's defaults (the service is not started by
L{aiconnect.tap.build_service} unless it owns the process).
"""

from __future__ import annotations

import gc
import time
from typing import Any

from twisted.application import service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

__all__ = ["FULL_EVERY", "THRESHOLDS", "CollectorService", "tune"]

#: (young, middle, old) thresholds: CPython's young ones; the old one so
#: high that full passes come only from L{CollectorService}.
THRESHOLDS = (700, 10, 1_000_000)
#: Seconds between two full collections.
FULL_EVERY = 600.0


def tune(thresholds: tuple[int, int, int] = THRESHOLDS) -> tuple[int, int, int]:
    """
    Freeze the objects that exist now and set the collector's thresholds.

    @param thresholds: The C{gc.set_threshold} arguments.
    @return: The thresholds in force before.
    """
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    return before


class CollectorService(service.Service):
    """
    L{tune} on start, a full collection every C{every} seconds, the
    previous thresholds back on stop.

    @ivar collections: Full collections run.
    @ivar last_pause: Seconds the last one took.
    """

    log = Logger()

    def __init__(self, reactor: Any, every: float = FULL_EVERY) -> None:
        self._every = every
        self._loop = LoopingCall(self.collect)
        self._loop.clock = reactor
        self._before: tuple[int, int, int] | None = None
        self.collections = 0
        self.last_pause = 0.0

    def startService(self) -> None:
        service.Service.startService(self)
        self._before = tune()
        self._loop.start(self._every, now=False)

    def stopService(self) -> None:
        service.Service.stopService(self)
        if self._loop.running:
            self._loop.stop()
        if self._before is not None:
            gc.set_threshold(*self._before)
            self._before = None

    def collect(self) -> int:
        """
        One full collection, timed and logged.

        @return: The objects it freed.
        """
        started = time.perf_counter()
        freed = gc.collect()
        self.last_pause = time.perf_counter() - started
        self.collections += 1
        self.log.debug(
            "full garbage collection: {freed} objects freed in {ms:.1f} ms", freed=freed, ms=self.last_pause * 1000
        )
        return freed
