"""
Tests for L{aiconnect.media.sessions}: a forward's life in its session.

Same setting as L{tests.media.test_relay}, which covers the sessions' ports,
streams and stats.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.media.test_relay import SRC, RelayTestMixin


class ForwardClosedTests(RelayTestMixin, SynchronousTestCase):
    """
    L{ForwardMedia.closed}: a removed forward is done for good.
    """

    def test_removed(self) -> None:
        """
        Once removed, a forward is closed: it can neither connect nor grow,
        even when a new forward takes its id.
        """
        relay, _ = self.make_relay()
        session = relay.allocate_session(1)
        forward = session.add_forward("f", 1)
        self.assertFalse(forward.closed)
        session.remove_forward("f")
        again = session.add_forward("f", 1)
        self.assertTrue(forward.closed)
        self.assertFalse(again.closed)
        self.assertRaises(ValueError, forward.connect, 0, SRC)
        self.assertRaises(ValueError, forward.add_streams, 1)
        again.connect(0, SRC)

    def test_session_closed(self) -> None:
        """
        Closing the session closes its forwards; their report timers go.
        """
        relay, clock = self.make_relay()
        session = relay.allocate_session(1)
        forward = session.add_forward("f", 1)
        forward.connect(0, SRC)
        self.assertIsNotNone(forward.streams[0].report_call)
        session.close()
        self.assertTrue(forward.closed)
        self.assertIsNone(forward.streams[0].report_call)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertRaises(ValueError, forward.connect, 0, SRC)
