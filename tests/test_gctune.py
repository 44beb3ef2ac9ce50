"""
Tests for L{aiconnect.gctune}.
"""

from __future__ import annotations

import gc

from twisted.trial import unittest

from aiconnect import gctune


class TuneTests(unittest.TestCase):
    """
    L{gctune.tune} freezes what exists and raises the young threshold.
    """

    def setUp(self) -> None:
        self.before = gc.get_threshold()
        self.addCleanup(gc.set_threshold, *self.before)
        self.addCleanup(gc.unfreeze)

    def test_freezes_and_sets_thresholds(self) -> None:
        """
        After L{gctune.tune} the objects alive at the call are in the
        permanent generation, the thresholds are the ones asked for, and
        the previous thresholds are returned.
        """
        gc.unfreeze()
        alive = [object() for _ in range(10)] + [[]]
        previous = gctune.tune((12_345, 11, 9))
        self.assertEqual(previous, self.before)
        self.assertEqual(gc.get_threshold(), (12_345, 11, 9))
        self.assertGreater(gc.get_freeze_count(), len(alive))
        self.assertFalse(gc.is_tracked(alive[0]))  # plain objects are never tracked
        self.assertTrue(gc.is_tracked(alive[-1]))
        self.assertGreater(gctune.THRESHOLDS[0], 700)

    def test_service_tunes_only_its_own_process(self) -> None:
        """
        The service built for tests (C{handle_signals} false) leaves the
        collector alone; the twistd one tunes it on start.
        """
        from aiconnect.tap import AiconnectService
        from twisted.internet.task import Clock

        gc.unfreeze()
        quiet = AiconnectService(Clock())
        quiet.startService()
        self.assertEqual(gc.get_threshold(), self.before)
        self.assertEqual(gc.get_freeze_count(), 0)
