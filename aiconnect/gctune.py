# -*- test-case-name: tests.test_gctune -*-
"""
The garbage collector's settings for a long-running server process.

CPython's cyclic collector runs a young collection every 700 net
allocations and, every so often, a full one that walks every tracked object
of the process.  A server that holds thousands of live sessions (and the
ended ones kept for the API) spends a large share of its CPU in those walks:
measured on the signalling benchmark (issue 12), 14 % of the busy time of a
forwarded call went to C{gc_collect_main}, charged to whichever function
happened to allocate (JSON encoding, metadata parsing, stream set-up).

L{tune} therefore, once the service is built and started:

  - collects once and C{gc.freeze()}s what exists (modules, configuration,
    listeners: objects that live as long as the process), so that no later
    collection walks them again;
  - raises the young-generation threshold (L{THRESHOLDS}), so collections
    are fewer and each one finds more garbage.  Sessions are freed by
    reference counting as they end; the collector is only the safety net for
    cycles, and stays enabled.

It is called only by the twistd service (C{makeService}), never by the
tests, which keep the interpreter's defaults.
"""

from __future__ import annotations

import gc

__all__ = ["THRESHOLDS", "tune"]

#: (young, middle, old) thresholds: a young collection every 50,000 net
#: allocations instead of 700; the older generations as CPython's defaults.
THRESHOLDS = (50_000, 10, 10)


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
