"""
Tests for L{aiconnect.media.ports}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.media.ports import PortPool, PortsExhausted


class PortPoolTests(SynchronousTestCase):
    """
    Even RTP ports, RTCP on +1, consecutive where possible.
    """

    def test_range(self) -> None:
        """
        An odd lower bound rounds up; a pair needs its RTCP port in range.
        """
        pool = PortPool(10001, 10010)
        self.assertEqual(pool.capacity, 4)  # 10002 .. 10008 (+1 = 10009)
        self.assertEqual(pool.allocate(4), [10002, 10004, 10006, 10008])
        self.assertRaises(ValueError, PortPool, 10000, 10000)
        self.assertRaises(ValueError, PortPool, 0, 10)
        self.assertRaises(ValueError, PortPool, 60000, 70000)

    def test_consecutive(self) -> None:
        """
        A request gets consecutive pairs P, P+2, ...
        """
        pool = PortPool(20000, 20099)
        first = pool.allocate(2)
        second = pool.allocate(3)
        self.assertEqual(first, [20000, 20002])
        self.assertEqual(second, [20004, 20006, 20008])
        self.assertEqual(pool.in_use(), first + second)

    def test_round_robin(self) -> None:
        """
        Released ports are not handed out again at once.
        """
        pool = PortPool(20000, 20011)  # 6 pairs
        a = pool.allocate(2)
        pool.release(a)
        self.assertEqual(pool.allocate(2), [20004, 20006])
        self.assertEqual(pool.allocate(2), [20008, 20010])
        self.assertEqual(pool.allocate(2), [20000, 20002])

    def test_fragmented_falls_back(self) -> None:
        """
        Without a free run, any free pairs do, in ascending order.
        """
        pool = PortPool(20000, 20011)
        ports = pool.allocate(6)
        pool.release([ports[1], ports[3], ports[5]])
        self.assertEqual(pool.allocate(3), [20002, 20006, 20010])

    def test_exhausted(self) -> None:
        """
        Asking for more than is free raises and books nothing.
        """
        pool = PortPool(20000, 20007)
        pool.allocate(3)
        self.assertRaises(PortsExhausted, pool.allocate, 2)
        self.assertEqual(pool.available, 1)
        self.assertEqual(pool.allocate(1), [20006])
        self.assertRaises(PortsExhausted, pool.allocate, 1)
        self.assertRaises(ValueError, pool.allocate, 0)

    def test_release_is_forgiving(self) -> None:
        """
        Releasing twice, odd ports or ports outside the range changes
        nothing.
        """
        pool = PortPool(20000, 20007)
        ports = pool.allocate(2)
        pool.release(ports)
        pool.release(ports)
        pool.release([20001, 19998, 30000])
        self.assertEqual(pool.available, 4)

    def test_run_does_not_wrap(self) -> None:
        """
        A consecutive run never wraps from the top of the range to the
        bottom.
        """
        pool = PortPool(20000, 20011)
        pool.allocate(4)
        pool.release([20000, 20002])
        # Free: 20000, 20002 (bottom) and 20008, 20010 (top); the cursor is
        # at 20008: 20008+20010 is a run.
        self.assertEqual(pool.allocate(2), [20008, 20010])
        self.assertEqual(pool.allocate(2), [20000, 20002])

    def test_after(self) -> None:
        """
        C{after} books the pairs right after a held port when they are free,
        even behind the round-robin cursor; otherwise the usual rule applies.
        """
        pool = PortPool(20000, 20019)  # 10 pairs
        first = pool.allocate(2)  # 20000, 20002
        pool.allocate(2)  # 20004, 20006: the cursor is past them
        pool.release([20004, 20006])
        self.assertEqual(pool.allocate(2, after=first[-1]), [20004, 20006])
        pool.allocate(1, after=20016)  # 20018, the top pair
        self.assertEqual(pool.in_use(), [20000, 20002, 20004, 20006, 20018])
        # 20008 is free but 20010 is taken: no run of two after 20006.
        pool.allocate(1, after=20008)  # 20010
        self.assertEqual(pool.allocate(2, after=20006), [20012, 20014])
        # At the top of the range: falls back to the usual search.
        self.assertEqual(pool.allocate(1, after=20018), [20016])
        # A foreign or odd port as C{after} is ignored.
        self.assertEqual(pool.allocate(1, after=30001), [20008])
        self.assertEqual(pool.available, 0)
