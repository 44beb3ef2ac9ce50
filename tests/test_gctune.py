"""
Tests for L{aiconnect.gctune}.
"""

from __future__ import annotations

import gc

from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial import unittest

from aiconnect import gctune


class TuneTests(unittest.TestCase):
    """
    L{gctune.tune} freezes what exists and sets the thresholds;
    L{gctune.CollectorService} runs the full collections itself.
    """

    def setUp(self) -> None:
        self.before = gc.get_threshold()
        self.addCleanup(gc.set_threshold, *self.before)
        self.addCleanup(gc.unfreeze)

    def test_freezes_and_sets_thresholds(self) -> None:
        """
        After L{gctune.tune} the objects alive at the call are in the
        permanent generation, the thresholds are the ones asked for, and
        the previous thresholds are returned.  The default stops automatic
        full passes and keeps the young ones.
        """
        gc.unfreeze()
        alive = [[] for _ in range(10)]
        previous = gctune.tune((12_345, 11, 9))
        self.assertEqual(previous, self.before)
        self.assertEqual(gc.get_threshold(), (12_345, 11, 9))
        self.assertGreater(gc.get_freeze_count(), len(alive))
        self.assertEqual(gctune.THRESHOLDS[0], 700)
        self.assertGreaterEqual(gctune.THRESHOLDS[2], 100_000)

    def test_service_collects_every_interval(self) -> None:
        """
        The service tunes on start, runs a full collection each interval
        (a cycle made in between is freed by it, logged at debug level),
        stops its timer and puts the thresholds back on stop.
        """
        clock = Clock()
        collector = gctune.CollectorService(clock, every=60.0)
        collector.startService()
        self.assertEqual(gc.get_threshold(), gctune.THRESHOLDS)
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        clock.advance(59.0)
        self.assertEqual(collector.collections, 0)
        with capturedLogs() as events:
            clock.advance(1.0)
        self.assertEqual(collector.collections, 1)
        lines = [e for e in events if "full garbage collection" in e.get("log_format", "")]
        self.assertEqual(len(lines), 1)
        self.assertEqual(lines[0]["log_level"], LogLevel.debug)
        self.assertGreaterEqual(lines[0]["freed"], 1)
        collector.stopService()
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(gc.get_threshold(), self.before)

    def test_service_only_in_its_own_process(self) -> None:
        """
        The service built for tests (C{handle_signals} false) leaves the
        collector alone.
        """
        from aiconnect.tap import AiconnectService

        gc.unfreeze()
        quiet = AiconnectService(Clock())
        quiet.startService()
        self.assertIsNone(quiet.collector)
        self.assertEqual(gc.get_threshold(), self.before)
        self.assertEqual(gc.get_freeze_count(), 0)
