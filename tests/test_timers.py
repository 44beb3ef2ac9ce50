"""
Tests for L{aiconnect.timers}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial import unittest

from aiconnect.timers import rearm


class RearmTests(unittest.TestCase):
    """
    L{rearm} keeps a call that moves later and replaces one that moves
    sooner; the timer fires once, at the latest time asked.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.fired: list[float] = []

    def fire(self, tag: str) -> None:
        self.fired.append((tag, self.clock.seconds()))

    def test_new(self) -> None:
        """
        Without a current call a new one is made.
        """
        call = rearm(self.clock, None, 2.0, self.fire, "a")
        self.clock.advance(2.0)
        self.assertEqual(self.fired, [("a", 2.0)])
        self.assertFalse(call.active())

    def test_later_reuses(self) -> None:
        """
        Moving later keeps the same call, reset.
        """
        first = rearm(self.clock, None, 1.0, self.fire, "a")
        again = rearm(self.clock, first, 5.0, self.fire, "b")
        self.assertIs(again, first)
        self.clock.advance(4.9)
        self.assertEqual(self.fired, [])
        self.clock.advance(0.1)
        self.assertEqual(self.fired, [("a", 5.0)])

    def test_sooner_replaces_without_reset(self) -> None:
        """
        Moving sooner cancels the call and makes a new one; C{reset} (the
        reactor's linear path) is never used for it.
        """
        first = rearm(self.clock, None, 5.0, self.fire, "a")
        resets: list[float] = []
        self.patch(first, "reset", resets.append)
        again = rearm(self.clock, first, 1.0, self.fire, "b")
        self.assertIsNot(again, first)
        self.assertEqual(resets, [])
        self.assertFalse(first.active())
        self.clock.advance(1.0)
        self.assertEqual(self.fired, [("b", 1.0)])
        self.clock.advance(10.0)
        self.assertEqual(self.fired, [("b", 1.0)])

    def test_same_time_untouched(self) -> None:
        """
        The same due time changes nothing.
        """
        first = rearm(self.clock, None, 3.0, self.fire, "a")
        resets: list[float] = []
        self.patch(first, "reset", resets.append)
        self.assertIs(rearm(self.clock, first, 3.0, self.fire, "b"), first)
        self.assertEqual(resets, [])

    def test_inactive_replaced(self) -> None:
        """
        A call that already fired (or was cancelled) is replaced.
        """
        first = rearm(self.clock, None, 1.0, self.fire, "a")
        self.clock.advance(1.0)
        again = rearm(self.clock, first, 1.0, self.fire, "b")
        self.assertIsNot(again, first)
        self.clock.advance(1.0)
        self.assertEqual(self.fired, [("a", 1.0), ("b", 2.0)])
