"""
Tests for L{aiconnect.sip.session_timer}: RFC 4028 parsing, the UAS
negotiation and when each side's timer fires (pure, no clock).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.errors import RemoteSipError
from aiconnect.sip.session_timer import (
    MIN_SE,
    SessionExpires,
    SessionTimer,
    TimerAction,
    format_session_expires,
    negotiate_uas,
    parse_session_expires,
)


class ParseTests(SynchronousTestCase):
    """
    C{Session-Expires} values.
    """

    def test_values(self) -> None:
        """
        The interval and the refresher (any case, spaces around); an
        unknown refresher counts as absent.
        """
        self.assertEqual(parse_session_expires("1800"), SessionExpires(1800, None))
        self.assertEqual(parse_session_expires("90 ; Refresher = UAS"), SessionExpires(90, "uas"))
        self.assertEqual(parse_session_expires("90;refresher=proxy;x=1"), SessionExpires(90, None))
        self.assertEqual(format_session_expires(90, "uac"), "90;refresher=uac")

    def test_hostile(self) -> None:
        """
        Non-ASCII digits, 5,000 digits or no number are a 400, never a
        crash of int().
        """
        for value in ("\u00b2\u00b3", "9" * 5000, "", ";refresher=uac"):
            with self.subTest(value=value[:10]):
                e = self.assertRaises(RemoteSipError, parse_session_expires, value)
                self.assertEqual(e.status_hint, 400)


class NegotiateTests(SynchronousTestCase):
    """
    The UAS side (RFC 4028 s9).
    """

    def test_none(self) -> None:
        """
        Without Session-Expires there is no timer.
        """
        self.assertIsNone(negotiate_uas(None, True))

    def test_too_small(self) -> None:
        """
        Below Min-SE: 422 with our Min-SE.
        """
        e = self.assertRaises(RemoteSipError, negotiate_uas, "60;refresher=uac", True)
        self.assertEqual((e.status_hint, e.headers), (422, [("Min-SE", str(MIN_SE))]))

    def test_refresher_choice(self) -> None:
        """
        The UAC's choice stands when it supports timers; a UAC without
        timer support cannot refresh; without a choice the supporting UAC
        refreshes.  Require: timer only when it supports them.
        """
        agreed = negotiate_uas("90;refresher=uac", True)
        assert agreed is not None
        self.assertEqual((agreed.refresher, agreed.headers), ("uac", (("Session-Expires", "90;refresher=uac"), ("Require", "timer"))))
        agreed = negotiate_uas("90;refresher=uac", False)
        assert agreed is not None
        self.assertEqual((agreed.refresher, agreed.headers), ("uas", (("Session-Expires", "90;refresher=uas"),)))
        agreed = negotiate_uas("120", True)
        assert agreed is not None
        self.assertEqual((agreed.interval, agreed.refresher), (120, "uac"))


class SessionTimerTests(SynchronousTestCase):
    """
    When the timer fires (RFC 4028 s10).
    """

    def test_refresher_at_half(self) -> None:
        """
        The refresher refreshes at half the interval.
        """
        timer = SessionTimer(90, we_refresh=True)
        self.assertEqual((timer.delay, timer.deadline(100.0), timer.action), (45.0, 145.0, TimerAction.REFRESH))

    def test_expiry_before_the_end(self) -> None:
        """
        The other side ends the session min(32, interval/3) before the
        interval ends.
        """
        self.assertEqual(SessionTimer(90, we_refresh=False).delay, 60.0)
        self.assertEqual(SessionTimer(1800, we_refresh=False).delay, 1768.0)
        self.assertIs(SessionTimer(90, we_refresh=False).action, TimerAction.EXPIRE)
