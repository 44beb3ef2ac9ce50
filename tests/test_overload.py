"""
Tests for L{aiconnect.overload}: the detector driven by explicit times,
lag samples and CPU readings, and the sampling service on a L{Clock}.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from aiconnect import overload
from aiconnect.api.metrics import LabelledCounter
from aiconnect.overload import CONTROL_INTERVAL, MIN_RATE, SAMPLE_INTERVAL, OverloadDetector, OverloadService

#: Lag and CPU thresholds of these tests.
LAG = 0.1
CPU = 0.9


class Driver:
    """
    Feeds an L{OverloadDetector} interval by interval: a lag, a CPU
    fraction, call setups completed and INVITEs offered per interval.
    """

    def __init__(self, lag: float = LAG, cpu: float = CPU) -> None:
        self.now = 1000.0
        self.cpu_seconds = 50.0
        self.completed = 0
        self.detector = OverloadDetector(lag, cpu, self.now, self.cpu_seconds, self.completed)
        self.admitted = 0
        self.refused: list[str] = []

    def interval(self, lag: float, cpu: float, completed: int = 0, offered: int = 0, events_wait: float = 0.0) -> str | None:
        """
        One L{CONTROL_INTERVAL}: C{offered} INVITEs spread over it, lag
        samples all at C{lag}, then the tick.

        @return: the tick's state change.
        """
        for i in range(offered):
            verdict = self.detector.admit(self.now + CONTROL_INTERVAL * i / max(1, offered))
            if verdict is None:
                self.admitted += 1
            else:
                self.refused.append(verdict)
        for _ in range(int(CONTROL_INTERVAL / SAMPLE_INTERVAL)):
            self.detector.lag_sample(lag)
        self.now += CONTROL_INTERVAL
        self.cpu_seconds += cpu * CONTROL_INTERVAL
        self.completed += completed
        return self.detector.tick(self.now, self.cpu_seconds, self.completed, events_wait)


class DetectorTests(SynchronousTestCase):
    """
    L{OverloadDetector}: when it says overloaded, how much it admits, when
    it recovers.
    """

    def test_quiet_admits_everything(self) -> None:
        """
        Below both thresholds every INVITE is admitted and nothing changes.
        """
        d = Driver()
        for _ in range(10):
            self.assertIsNone(d.interval(lag=0.01, cpu=0.5, completed=50, offered=50))
        self.assertFalse(d.detector.overloaded)
        self.assertEqual((d.admitted, d.refused), (500, []))

    def test_one_stall_is_not_overload(self) -> None:
        """
        One hot interval (a single stall) does not start an overload; two in
        a row do.
        """
        d = Driver()
        self.assertIsNone(d.interval(lag=0.3, cpu=0.5))
        self.assertIsNone(d.interval(lag=0.0, cpu=0.5))
        self.assertIsNone(d.interval(lag=0.3, cpu=0.5))
        self.assertFalse(d.detector.overloaded)
        self.assertEqual(d.interval(lag=0.3, cpu=0.5, completed=40), "enter")
        self.assertTrue(d.detector.overloaded)
        self.assertEqual(d.detector.cause, "lag")

    def test_lag_over_threshold_limits_to_completion_rate(self) -> None:
        """
        Lag just over the threshold: the admission rate starts at DECREASE
        times the rate at which setups completed (20 per quarter second:
        80/s), and INVITEs beyond it are refused with the cause "lag",
        counted.
        """
        d = Driver()
        d.interval(lag=0.11, cpu=0.5, completed=20, offered=40)
        self.assertEqual(d.interval(lag=0.11, cpu=0.5, completed=20, offered=40), "enter")
        self.assertAlmostEqual(d.detector.rate or 0.0, overload.DECREASE * 80)
        d.admitted, d.refused = 0, []
        # Lag between the thresholds: the rate holds.
        for _ in range(8):
            d.interval(lag=0.07, cpu=0.5, completed=17, offered=40)
        self.assertAlmostEqual(d.detector.rate or 0.0, 68.0)
        # 2 s at 68/s (the bucket starts empty), the rest refused.
        self.assertGreaterEqual(d.admitted, 134)
        self.assertLessEqual(d.admitted, 136)
        self.assertEqual(len(d.refused), 320 - d.admitted)
        self.assertEqual(set(d.refused), {"lag"})
        self.assertEqual(d.detector.stats["rejected_lag"], len(d.refused))
        self.assertEqual(d.detector.stats["episodes"], 1)

    def test_far_over_cuts_deeper(self) -> None:
        """
        The further the lag is over its threshold, the deeper the cut:
        threshold / lag, at most down to DEEPEST.
        """
        d = Driver()
        d.interval(lag=0.125, cpu=0.5, completed=25)
        d.interval(lag=0.125, cpu=0.5, completed=25)
        self.assertLess(abs((d.detector.rate or 0.0) - 0.8 * 100), 1.0)
        far = Driver()
        far.interval(lag=1.0, cpu=0.5, completed=25)
        far.interval(lag=1.0, cpu=0.5, completed=25)
        self.assertAlmostEqual(far.detector.rate or 0.0, overload.DEEPEST * 100, places=3)

    def test_cpu_over_threshold(self) -> None:
        """
        A full CPU with the reactor half-way to the lag threshold starts an
        overload with the cause "cpu"; a full CPU with a prompt reactor does
        not (a busy process that keeps up); with the CPU threshold 0 it is
        not watched.
        """
        prompt = Driver()
        for _ in range(3 * overload.ENTER_TICKS):
            self.assertIsNone(prompt.interval(lag=0.0, cpu=1.0, completed=30))
        self.assertFalse(prompt.detector.overloaded)
        d = Driver()
        for _ in range(overload.ENTER_TICKS - 1):
            self.assertIsNone(d.interval(lag=LAG * 0.6, cpu=0.95, completed=30))
        self.assertEqual(d.interval(lag=LAG * 0.6, cpu=0.97, completed=30), "enter")
        self.assertEqual(d.detector.cause, "cpu")
        self.assertEqual(d.detector.admit(d.now + 1.0), None)
        self.assertAlmostEqual(d.detector.cpu, 0.97)
        # A quarter of the lag threshold is enough with a full core.
        quarter = Driver()
        for _ in range(overload.ENTER_TICKS):
            quarter.interval(lag=LAG * 0.35, cpu=0.97, completed=30)
        self.assertTrue(quarter.detector.overloaded)
        unwatched = Driver(cpu=0.0)
        for _ in range(4):
            self.assertIsNone(unwatched.interval(lag=LAG * 0.6, cpu=1.0, completed=30))
        self.assertFalse(unwatched.detector.overloaded)

    def test_cpu_steers_to_target(self) -> None:
        """
        Once overloaded, the rate moves toward the one that keeps the CPU
        at its target (threshold - TARGET_BAND): down by GAIN x the gap over
        the cost per setup (DEFAULT_COST before one is learnt) per interval
        while over it and warm (lag over CPU_LAG_SHARE of its threshold);
        up by PROBE of the rate while over it but prompt (the CPU overstates
        a lighter load), unless the last interval's CPU was SATURATED with
        the lag at SATURATED_LAG_SHARE of its threshold; up
        by the gap while under it and prompt; held while under it and
        warm.
        """
        d = Driver()
        for _ in range(overload.ENTER_TICKS - 1):
            d.interval(lag=LAG * 0.6, cpu=1.0, completed=10, offered=10)
        self.assertEqual(d.interval(lag=LAG * 0.6, cpu=1.0, completed=10, offered=10), "enter")
        start = d.detector.rate or 0.0
        target = d.detector.target
        self.assertAlmostEqual(target, CPU - overload.TARGET_BAND)
        warm = LAG * 0.3
        # Four warm intervals at full CPU (the window is all of them): each
        # lowers the rate by GAIN x (1 - target) / cost.
        for _ in range(4):
            d.interval(lag=warm, cpu=1.0, completed=10, offered=200)
        step = overload.GAIN * (1.0 - target) / overload.DEFAULT_COST
        self.assertAlmostEqual(d.detector.rate or 0.0, max(MIN_RATE, start - 4 * step), places=6)
        low = d.detector.rate or 0.0
        # Prompt over the target: probing upward; at SATURATED it is warm.
        saturated = d.detector.rate or 0.0
        d.interval(lag=LAG * overload.SATURATED_LAG_SHARE * 1.5, cpu=overload.SATURATED + 0.01, completed=10, offered=200)
        self.assertLess(d.detector.rate or 0.0, saturated)
        low = d.detector.rate or 0.0
        for _ in range(4):
            d.interval(lag=0.0, cpu=0.95, completed=10, offered=200)
        self.assertAlmostEqual(d.detector.rate or 0.0, low * (1 + overload.PROBE) ** 4, places=6)
        # A full core with a prompt reactor: still probing.
        d.interval(lag=0.0, cpu=0.99, completed=10, offered=200)
        self.assertGreater(d.detector.rate or 0.0, low * (1 + overload.PROBE) ** 4)
        probed = d.detector.rate or 0.0
        for _ in range(4):
            d.interval(lag=0.0, cpu=0.5, completed=10, offered=200)
        self.assertGreater(d.detector.rate or 0.0, probed * (1 + overload.PROBE) ** 4)
        raised = d.detector.rate or 0.0
        for _ in range(4):
            d.interval(lag=warm, cpu=0.5, completed=10, offered=200)
        self.assertAlmostEqual(d.detector.rate or 0.0, raised, places=6)

    def test_steady_state_pays_for_refusals(self) -> None:
        """
        Closed loop against a node model: each admitted call costs 5 ms of
        CPU (a third at once, the rest one second later: its BYE and
        events), each refusal 1 ms, work beyond the core waits for the
        next interval, and the lag grows as the core fills (a quarter of
        its threshold at 95 %). 400 INVITEs/s are offered, twice what the
        core carries. The rate settles between what keeps the CPU at its
        target and what fills it, refusals paid for ((CPU - 1 ms x 400) /
        4 ms: 112 to 150/s), not near the 200/s the call cost alone would
        give, and it does not oscillate out of that band over the last
        10 s.
        """
        d = Driver()
        for _ in range(8):
            d.interval(lag=0.0, cpu=0.5, completed=25, offered=25)
        offered = 100
        later = [0.0] * 4
        rates = []
        for tick in range(160):
            before, refused_before = d.admitted, len(d.refused)
            # The work of this interval: the refusals and the admitted
            # calls of the previous interval, plus the rest of the calls
            # admitted a second ago, plus what did not fit before.
            work = later[0]
            cpu = min(1.0, work / CONTROL_INTERVAL)
            backlog = work - cpu * CONTROL_INTERVAL
            lag = LAG * max(0.0, cpu - 0.9) * 5 + backlog
            d.interval(lag=lag, cpu=cpu, completed=d.admitted - before, offered=offered)
            admitted = d.admitted - before
            refused = len(d.refused) - refused_before
            later = later[1:] + [0.0]
            later[0] += backlog + admitted * 0.005 / 3 + refused * 0.001
            later[-1] += admitted * 0.005 * 2 / 3
            if tick >= 120:
                rates.append(d.detector.rate or 0.0)
        self.assertTrue(d.detector.overloaded)
        low = (d.detector.target - 0.001 * 400) / (0.005 - 0.001)
        high = (1.0 - 0.001 * 400) / (0.005 - 0.001)
        self.assertGreater(min(rates), low * 0.9)
        self.assertLess(max(rates), high * 1.1)

    def test_surge_enters_at_once(self) -> None:
        """
        A node that carried 80 setups/s promptly: new INVITEs offered at
        more than SURGE times that over the last second, with its core
        over the CPU threshold for ENTER_TICKS intervals, start an overload
        before the lag shows anything, admitting SURGE_ADMIT x what it
        carried. The same offer on a core with room (cheaper calls), busy
        only now and then, is no surge.
        """
        d = Driver()
        for _ in range(8):
            self.assertIsNone(d.interval(lag=0.0, cpu=0.8, completed=20, offered=20))
        self.assertAlmostEqual(d.detector.carried, 80.0)
        roomy = Driver()
        for _ in range(8):
            roomy.interval(lag=0.0, cpu=0.8, completed=20, offered=20)
        for tick in range(8):
            self.assertIsNone(roomy.interval(lag=0.0, cpu=(0.95, 0.7)[tick % 2], completed=60, offered=60))
        self.assertFalse(roomy.detector.overloaded)
        for tick in range(3):
            if d.interval(lag=0.0, cpu=0.95, completed=60, offered=60) == "enter":
                break
        self.assertTrue(d.detector.overloaded)
        self.assertLessEqual(tick, 1)
        self.assertAlmostEqual(d.detector.rate or 0.0, overload.SURGE_ADMIT * 80)
        self.assertEqual(d.detector.cause, "cpu")

    def test_surge_measured_against_what_was_carried(self) -> None:
        """
        What the node carried promptly follows its load as it grows step
        by step (each step under SURGE x the last): a node that carried
        112 setups/s is not in a surge at 140/s, though 140/s is more than
        SURGE x the 80/s it carried at first. Seconds at the start or the
        end of a burst (the last interval's pace far from the window's)
        teach nothing.
        """
        d = Driver()
        for per_tick in (20, 24, 28):
            for _ in range(8):
                self.assertIsNone(d.interval(lag=0.0, cpu=1.0, completed=per_tick, offered=per_tick))
        self.assertAlmostEqual(d.detector.carried, 112.0)
        self.assertGreater(140, overload.SURGE * 80)
        for _ in range(8):
            self.assertIsNone(d.interval(lag=0.0, cpu=1.0, completed=35, offered=35))
        self.assertFalse(d.detector.overloaded)
        tail = Driver()
        for _ in range(8):
            tail.interval(lag=0.0, cpu=0.5, completed=20, offered=20)
        cost = tail.detector.cost
        for _ in range(2):
            tail.interval(lag=0.0, cpu=0.5, completed=0, offered=0)
        for _ in range(8):
            tail.interval(lag=0.0, cpu=0.0)
        self.assertEqual(tail.detector.cost, cost)

    def test_events_late_on_a_busy_core(self) -> None:
        """
        Events due but waiting EVENTS_LATE for a request slot while the
        core is busy (over the CPU threshold less CPU_BAND), with the
        reactor prompt: overloaded with the cause "events", its refusals
        counted apart; while they stay late the rate is cut as for lag.
        The same wait on an idle core (a slow endpoint holding the slots)
        is not overload: refusing calls would not help it.
        """
        idle = Driver()
        for _ in range(12):
            self.assertIsNone(idle.interval(lag=0.0, cpu=0.3, completed=20, offered=20, events_wait=3.0))
        self.assertFalse(idle.detector.overloaded)
        d = Driver()
        for _ in range(8):
            d.interval(lag=0.0, cpu=0.8, completed=20, offered=20)
        self.assertIsNone(d.interval(lag=0.0, cpu=0.85, completed=20, offered=20, events_wait=overload.EVENTS_LATE))
        self.assertEqual(d.interval(lag=0.0, cpu=0.85, completed=20, offered=40, events_wait=0.8), "enter")
        self.assertEqual(d.detector.cause, "events")
        self.assertEqual(d.detector.snapshot()["events_wait_seconds"], 0.8)
        start = d.detector.rate or 0.0
        for _ in range(4):
            d.interval(lag=0.0, cpu=0.85, completed=20, offered=40, events_wait=1.0)
        self.assertLess(d.detector.rate or 0.0, start)
        self.assertEqual(set(d.refused), {"events"})
        self.assertEqual(d.detector.stats["rejected_events"], len(d.refused))

    def test_hot_decreases_at_most_once_a_second(self) -> None:
        """
        While it stays hot the rate is cut once per DECREASE_EVERY seconds
        (the time admitted calls take to show their cost), down to
        MIN_RATE at the least, when no capacity is known (here: the CPU is
        not watched, so no cost per setup is learnt).
        """
        d = Driver(cpu=0.0)
        d.interval(lag=0.5, cpu=1.0, completed=50, offered=100)
        d.interval(lag=0.5, cpu=1.0, completed=50, offered=100)
        rates = [d.detector.rate or 0.0]
        for _ in range(8):
            d.interval(lag=0.5, cpu=1.0, completed=50, offered=100)
            rates.append(d.detector.rate or 0.0)
        cuts = [i for i in range(1, len(rates)) if rates[i] < rates[i - 1]]
        self.assertEqual(cuts, [4, 8])
        self.assertAlmostEqual(rates[4], overload.DEEPEST * rates[0], places=6)
        for _ in range(100):
            d.interval(lag=0.5, cpu=1.0, completed=0, offered=100)
        self.assertEqual(d.detector.rate, MIN_RATE)

    def test_learnt_cost_bounds_the_rate(self) -> None:
        """
        While not overloaded the detector learns the CPU per setup from
        steady windows under the CPU threshold (here 10 ms: 20 setups per
        quarter second at 80 % of a core, still prompt); the capacity is
        then the CPU threshold over it (90/s). Windows with the CPU full
        (their setups' cost understated) and unsteady ones (a burst's
        start: admitted far above completed) teach nothing. Entering an
        overload at a completion rate far above it admits at most the
        capacity. Lag cuts have no floor from it (it may have been learnt
        from cheaper calls): a lasting lag takes the rate down to
        MIN_RATE.
        """
        d = Driver()
        for _ in range(8):
            self.assertIsNone(d.interval(lag=0.0, cpu=0.8, completed=20, offered=20))
        self.assertAlmostEqual(d.detector.cost or 0.0, 0.01)
        # At 5 ms a setup, four windows would take the cost to 6 ms.
        for _ in range(4):
            d.interval(lag=0.0, cpu=1.0, completed=50, offered=50)
        for _ in range(4):
            d.interval(lag=0.0, cpu=0.5, completed=10, offered=30)
        self.assertLess(abs((d.detector.cost or 0.0) - 0.01), 0.0005)
        capacity = d.detector.capacity or 0.0
        d.interval(lag=0.3, cpu=1.0, completed=100, offered=100)
        d.interval(lag=0.3, cpu=1.0, completed=100, offered=100)
        self.assertTrue(d.detector.overloaded)
        self.assertLessEqual(d.detector.rate or 0.0, capacity + 1e-9)
        for _ in range(80):
            d.interval(lag=0.5, cpu=1.0, completed=5, offered=100)
        self.assertEqual(d.detector.rate, MIN_RATE)

    def test_cool_increases_then_recovers(self) -> None:
        """
        Cool intervals raise the rate a little each; the overload ends once
        cool for LEAVE_AFTER seconds with no INVITE refused, and then every
        INVITE is admitted again.
        """
        d = Driver()
        d.interval(lag=0.5, cpu=1.0, completed=20, offered=100)
        d.interval(lag=0.5, cpu=1.0, completed=20, offered=100)
        start = d.detector.rate or 0.0
        for _ in range(4):
            d.interval(lag=0.0, cpu=0.7, completed=20, offered=100)
        self.assertGreater(d.detector.rate or 0.0, start)
        # Still refusing: no recovery however long it is cool.
        for _ in range(20):
            self.assertIsNone(d.interval(lag=0.0, cpu=0.7, completed=20, offered=100))
        self.assertTrue(d.detector.overloaded)
        self.assertLess(d.detector.rate or 0.0, 400)
        # The offered load falls under the rate: over after LEAVE_AFTER.
        changes = [d.interval(lag=0.0, cpu=0.3, completed=5, offered=5) for _ in range(20)]
        self.assertIn("leave", changes)
        left = changes.index("leave") + 1
        self.assertGreaterEqual(left * CONTROL_INTERVAL, overload.LEAVE_AFTER)
        self.assertLessEqual(left * CONTROL_INTERVAL, overload.LEAVE_AFTER + 2 * CONTROL_INTERVAL)
        self.assertFalse(d.detector.overloaded)
        d.refused = []
        d.interval(lag=0.0, cpu=0.3, offered=500)
        self.assertEqual(d.refused, [])

    def test_idle_cpu_recovers_fast(self) -> None:
        """
        After a deep cut, cool intervals with the CPU mostly idle raise the
        rate a quarter of the way to what the CPU would allow at the cost
        per admitted call just measured: from 50/s to over 150/s within two
        seconds (at 4 % a step it would take eight).
        """
        d = Driver()
        d.interval(lag=1.0, cpu=1.0, completed=25, offered=200)
        d.interval(lag=1.0, cpu=1.0, completed=25, offered=200)
        self.assertAlmostEqual(d.detector.rate or 0.0, overload.DEEPEST * 100, places=3)
        for _ in range(8):
            d.interval(lag=0.0, cpu=0.002 * (d.detector.rate or 0.0), completed=25, offered=200)
        self.assertGreater(d.detector.rate or 0.0, 150)
        self.assertTrue(d.detector.overloaded)

    def test_warm_does_not_recover(self) -> None:
        """
        Between half the lag threshold and the threshold the overload
        neither deepens nor ends (hysteresis).
        """
        d = Driver()
        d.interval(lag=0.5, cpu=1.0, completed=20)
        d.interval(lag=0.5, cpu=1.0, completed=20)
        rate = d.detector.rate
        for _ in range(40):
            self.assertIsNone(d.interval(lag=0.07, cpu=0.5))
        self.assertEqual(d.detector.rate, rate)
        self.assertTrue(d.detector.overloaded)

    def test_disabled(self) -> None:
        """
        Both thresholds 0: never overloaded, whatever the lag and CPU.
        """
        d = Driver(lag=0.0, cpu=0.0)
        self.assertFalse(d.detector.enabled)
        for _ in range(10):
            self.assertIsNone(d.interval(lag=5.0, cpu=1.0, offered=10))
        self.assertEqual(d.refused, [])

    def test_clock_back_ignored(self) -> None:
        """
        A tick at or before the previous one changes nothing.
        """
        d = Driver()
        self.assertIsNone(d.detector.tick(d.now - 1, d.cpu_seconds + 10, 0))
        self.assertEqual(d.detector.cpu, 0.0)

    def test_snapshot(self) -> None:
        """
        The snapshot for /metrics: overloaded, lag, CPU, the admission
        rate (0 when not limiting) and the counters.
        """
        d = Driver()
        d.interval(lag=0.0, cpu=0.25, offered=3)
        snap = d.detector.snapshot()
        self.assertEqual(snap["overloaded"], False)
        self.assertEqual(snap["admit_rate"], 0.0)
        self.assertEqual(snap["cpu"], 0.25)
        self.assertEqual(snap["admitted"], 3)
        self.assertEqual((snap["rejected_lag"], snap["rejected_cpu"], snap["episodes"]), (0, 0, 0))


class ServiceTests(SynchronousTestCase):
    """
    L{OverloadService} samples a L{Clock}: lateness of its timer is the lag.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(500.0)
        self.cpu_seconds = 10.0
        self.completed = 0
        self.service = OverloadService(
            self.clock, LAG, CPU, completed=lambda: self.completed, cpu_reader=lambda: self.cpu_seconds
        )
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def run_for(self, seconds: float, step: float, cpu: float = 0.3) -> None:
        """
        Advance the clock C{step} at a time (a reactor whose turns last
        C{step}) for C{seconds}, the process using C{cpu} of a core.
        """
        for _ in range(round(seconds / step)):
            self.cpu_seconds += cpu * step
            self.completed += 1
            self.clock.advance(step)

    def test_lagging_reactor_overloads_and_logs_once(self) -> None:
        """
        Turns of 0.25 s (the timer runs 0.225 s late each time) for 2 s:
        overloaded with the cause "lag", one log line; new INVITEs beyond
        the rate are refused. Then a prompt reactor for 10 s, nothing
        offered: recovered, one more log line, INVITEs admitted.
        """
        with capturedLogs() as logs:
            self.run_for(2.0, 0.25)
            self.assertTrue(self.service.detector.overloaded)
            self.assertGreater(self.service.detector.lag, LAG)
            verdicts = [self.service.admit() for _ in range(50)]
            self.assertIn("lag", verdicts)
            self.run_for(10.0, SAMPLE_INTERVAL)
        self.assertFalse(self.service.detector.overloaded)
        self.assertIsNone(self.service.admit())
        lines = [e["log_format"] for e in logs if e.get("log_namespace", "").startswith("aiconnect.overload")]
        self.assertEqual(len(lines), 2, lines)
        self.assertIn("overload ({cause})", lines[0])
        self.assertIn("overload over", lines[1])
        self.assertEqual(logs[-1]["rejected"], verdicts.count("lag"))

    def test_prompt_reactor_busy_cpu(self) -> None:
        """
        A prompt reactor whose process uses the whole core keeps up: not
        overloaded.  The same core with turns of 0.08 s (the sampling timer
        0.055 s late, over half the lag threshold, under the threshold):
        overloaded with the cause "cpu".
        """
        self.run_for(2.0, SAMPLE_INTERVAL, cpu=1.0)
        self.assertFalse(self.service.detector.overloaded)
        self.assertLess(self.service.detector.lag, 0.001)
        self.run_for(2.0, 0.08, cpu=1.0)
        self.assertTrue(self.service.detector.overloaded)
        self.assertEqual(self.service.detector.cause, "cpu")
        self.assertLess(self.service.detector.lag, LAG)

    def test_events_wait_read_each_tick(self) -> None:
        """
        The service reads the event deliverer's wait at each control
        interval: a busy, prompt core whose events wait a second for a
        slot is overloaded with the cause "events".
        """
        wait = [0.0]
        service = OverloadService(
            self.clock,
            LAG,
            CPU,
            completed=lambda: self.completed,
            cpu_reader=lambda: self.cpu_seconds,
            events_wait=lambda: wait[0],
        )
        service.startService()
        self.addCleanup(service.stopService)
        self.run_for(1.0, SAMPLE_INTERVAL, cpu=0.95)
        self.assertFalse(service.detector.overloaded)
        wait[0] = 1.0
        self.run_for(1.0, SAMPLE_INTERVAL, cpu=0.95)
        self.assertTrue(service.detector.overloaded)
        self.assertEqual(service.detector.cause, "events")

    def test_stop_cancels_timer(self) -> None:
        """
        Stopping leaves no timer behind; a disabled service never starts one.
        """
        self.service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        disabled = OverloadService(self.clock, 0.0, 0.0)
        disabled.startService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertIsNone(disabled.admit())
        disabled.stopService()


class LabelledCounterTests(SynchronousTestCase):
    """
    L{LabelledCounter}: the 503s by cause as one Prometheus counter.
    """

    def test_read_at_each_scrape(self) -> None:
        """
        Each scrape asks the reader: one C{_total} sample per label value,
        sorted.
        """
        counts = {"overload_lag": 3, "invite_rate": 1}
        registry = CollectorRegistry()
        registry.register(LabelledCounter("aiconnect_invites_refused", "refused", "cause", lambda: counts))
        text = generate_latest(registry).decode()
        self.assertIn("# TYPE aiconnect_invites_refused_total counter", text)
        self.assertIn('aiconnect_invites_refused_total{cause="invite_rate"} 1.0', text)
        self.assertIn('aiconnect_invites_refused_total{cause="overload_lag"} 3.0', text)
        counts["overload_lag"] = 7
        self.assertIn('aiconnect_invites_refused_total{cause="overload_lag"} 7.0', generate_latest(registry).decode())
