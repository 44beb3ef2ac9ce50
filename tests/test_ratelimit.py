"""
Tests for L{aiconnect.ratelimit}: per-source INVITE token buckets with
explicit C{now} values (SPEC s12 C{invite_rate}).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.ratelimit import Admission, InviteRateLimiter, UnconfirmedTable, refill

A = Admission.ACCEPT
R = Admission.ANSWER
D = Admission.DROP


class RefillTests(SynchronousTestCase):
    """
    L{refill} adds C{rate} tokens per second up to the bucket's size.
    """

    def test_refill_capped(self) -> None:
        """
        Tokens grow with elapsed time and stop at one second of burst.
        """
        self.assertAlmostEqual(refill(0.0, 10.0, 10.2, 5.0), 1.0)
        self.assertEqual(refill(0.0, 10.0, 20.0, 5.0), 5.0)

    def test_small_rate_holds_one(self) -> None:
        """
        A rate below one per second still holds one token, or nothing would
        ever pass.
        """
        self.assertEqual(refill(0.0, 0.0, 100.0, 0.5), 1.0)

    def test_clock_back(self) -> None:
        """
        A clock stepping back refills nothing (and takes nothing).
        """
        self.assertEqual(refill(0.5, 10.0, 5.0, 5.0), 0.5)


class InviteRateLimiterTests(SynchronousTestCase):
    """
    L{InviteRateLimiter.check} accepts, answers or drops.
    """

    def test_burst(self) -> None:
        """
        A burst of 20 INVITEs at rate 5/s with 10 answers/s: 5 accepted,
        the next 10 answered, the last 5 dropped.
        """
        limiter = InviteRateLimiter()
        got = [limiter.check("192.0.2.1", 100.0, 5.0, 10) for _ in range(20)]
        self.assertEqual(got, [A] * 5 + [R] * 10 + [D] * 5)

    def test_refills_at_rate(self) -> None:
        """
        An empty bucket admits one more INVITE per 1/rate seconds.
        """
        limiter = InviteRateLimiter()
        for _ in range(5):
            limiter.check("192.0.2.1", 100.0, 5.0, 10)
        self.assertEqual(limiter.check("192.0.2.1", 100.1, 5.0, 10), R)
        # 0.2 s at 5/s is one token, even though 100.2 - 100.0 is not
        # exactly 0.2 in floating point.
        self.assertEqual(limiter.check("192.0.2.1", 100.2, 5.0, 10), A)
        self.assertEqual(limiter.check("192.0.2.1", 100.2, 5.0, 10), R)

    def test_answers_refill(self) -> None:
        """
        The answers allowance refills at C{answers} per second: after a
        drop, a 503 is allowed again a tenth of a second later (10/s).
        """
        limiter = InviteRateLimiter()
        for _ in range(12):
            limiter.check("192.0.2.1", 100.0, 1.0, 10)
        self.assertEqual(limiter.check("192.0.2.1", 100.0, 1.0, 10), D)
        self.assertEqual(limiter.check("192.0.2.1", 100.15, 1.0, 10), R)
        self.assertEqual(limiter.check("192.0.2.1", 100.15, 1.0, 10), D)

    def test_sources_independent(self) -> None:
        """
        One source over its rate does not limit another.
        """
        limiter = InviteRateLimiter()
        for _ in range(30):
            limiter.check("192.0.2.1", 100.0, 5.0, 10)
        self.assertEqual(limiter.check("192.0.2.2", 100.0, 5.0, 10), A)

    def test_no_limit(self) -> None:
        """
        Rate 0 means no limit, and nothing is tracked.
        """
        limiter = InviteRateLimiter()
        self.assertEqual({limiter.check("192.0.2.1", 100.0, 0.0, 10) for _ in range(1000)}, {A})
        self.assertEqual(len(limiter), 0)

    def test_no_answers(self) -> None:
        """
        With no answers allowed, every INVITE over the rate is dropped.
        """
        limiter = InviteRateLimiter()
        got = [limiter.check("192.0.2.1", 100.0, 2.0, 0) for _ in range(5)]
        self.assertEqual(got, [A, A, D, D, D])

    def test_idle_sources_forgotten(self) -> None:
        """
        A source idle for a full second (both buckets full again) is
        forgotten when another source is checked.
        """
        limiter = InviteRateLimiter()
        limiter.check("192.0.2.1", 100.0, 5.0, 10)
        limiter.check("192.0.2.2", 100.5, 5.0, 10)
        self.assertEqual(len(limiter), 2)
        limiter.check("192.0.2.3", 101.0, 5.0, 10)
        self.assertEqual(len(limiter), 2)
        limiter.check("192.0.2.3", 102.0, 5.0, 10)
        self.assertEqual(len(limiter), 1)

    def test_slow_rate_kept_longer(self) -> None:
        """
        At 0.5 INVITE/s a source's bucket needs 2 s to refill: it is kept
        (and limited) until then.
        """
        limiter = InviteRateLimiter()
        self.assertEqual(limiter.check("192.0.2.1", 100.0, 0.5, 10), A)
        limiter.check("192.0.2.2", 101.5, 0.5, 10)
        self.assertEqual(len(limiter), 2)
        self.assertEqual(limiter.check("192.0.2.1", 101.5, 0.5, 10), R)
        self.assertEqual(limiter.check("192.0.2.1", 103.5, 0.5, 10), A)

    def test_table_bounded(self) -> None:
        """
        At most C{max_sources} sources are tracked; the least recently seen
        is forgotten first (and starts afresh).
        """
        limiter = InviteRateLimiter(max_sources=3)
        for source in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
            for _ in range(3):
                limiter.check(source, 100.0, 1.0, 1)
        self.assertEqual(limiter.check("192.0.2.2", 100.0, 1.0, 1), D)
        limiter.check("192.0.2.4", 100.0, 1.0, 1)
        self.assertEqual(len(limiter), 3)
        # 192.0.2.1 was the least recently seen: forgotten, so full again.
        self.assertEqual(limiter.check("192.0.2.1", 100.0, 1.0, 1), A)
        self.assertEqual(len(limiter), 3)
        # ... which pushed out 192.0.2.3; 192.0.2.2 is still limited.
        self.assertEqual(limiter.check("192.0.2.2", 100.0, 1.0, 1), D)

    def test_many_sources_bounded(self) -> None:
        """
        A flood from 100,000 distinct sources within one second keeps the
        table at its cap.
        """
        limiter = InviteRateLimiter(max_sources=1000)
        for i in range(100_000):
            limiter.check("10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255), 100.0 + i / 100_000, 50.0, 10)
        self.assertEqual(len(limiter), 1000)


class UnconfirmedTableTests(SynchronousTestCase):
    """
    Tests for L{UnconfirmedTable}.
    """

    def test_cap_per_source(self) -> None:
        """
        A source is full at the limit; confirming one session frees a
        place; other sources are counted apart; 0 means no cap.
        """
        table = UnconfirmedTable()
        a1 = table.open("192.0.2.1")
        table.open("192.0.2.1")
        self.assertTrue(table.full("192.0.2.1", 2))
        self.assertFalse(table.full("192.0.2.2", 2))
        self.assertFalse(table.full("192.0.2.1", 0))
        a1.confirm()
        self.assertEqual(table.count("192.0.2.1"), 1)
        self.assertFalse(table.full("192.0.2.1", 2))

    def test_confirm_idempotent_and_forgets(self) -> None:
        """
        Confirming twice (ACK, then the session's end) counts once, and a
        source with no unconfirmed session is not kept.
        """
        table = UnconfirmedTable()
        handle = table.open("192.0.2.1")
        handle.confirm(object())
        handle.confirm()
        self.assertEqual(table.count("192.0.2.1"), 0)
        self.assertEqual(table._counts, {})
