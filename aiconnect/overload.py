# -*- test-case-name: tests.test_overload,tests.integration.test_overload -*-
"""
Overload control (issue 12): when the reactor lags or the process uses its
whole core, new dialog-creating INVITEs are answered C{503 Service
Unavailable} with C{Retry-After} (RFC 3261 s21.5.4) before any work is
spent on them, so that the calls already admitted, their forwards and the
event delivery keep their latency.

Three signals, sampled by L{OverloadService}:

  - the reactor's lag: a timer asks to run every L{SAMPLE_INTERVAL}
    seconds and measures how late it ran (the time the reactor spent on
    the previous turn's I/O), smoothed (L{LAG_WEIGHT});
  - the process's CPU (user + system, all threads) over each
    L{CONTROL_INTERVAL}, as a fraction of one core;
  - how long the oldest event ready to send has waited for one of the
    event deliverer's request slots.

Every L{CONTROL_INTERVAL}, L{OverloadDetector.tick} classifies the
interval: I{hot} (lag >= C{lag}; events waiting L{EVENTS_LATE} on a busy
core; or CPU >= C{cpu} with the lag at L{CPU_LAG_SHARE} of C{lag}),
I{cool} (lag < C{lag}/2, CPU < C{cpu} - L{CPU_BAND}, events prompt) or in
between. After L{ENTER_TICKS} hot intervals in a row, or at once on a surge (L{SURGE} x the rate the
node has carried promptly, its core full), the node is I{overloaded}: new
INVITEs are admitted at a rate (token bucket) instead of all or none,
starting at L{DECREASE} x the rate at which calls completed their setup
over the last L{RATE_WINDOW}, less when the lag is far over its threshold
(C{lag} / lag, down to L{DEEPEST}). While the lag or the events are late
the rate is cut that way again, at most once per L{DECREASE_EVERY}
seconds (the time admitted calls take to show their cost). Otherwise it is
steered on the CPU toward C{cpu} - L{TARGET_BAND} (L{OverloadDetector._steer}):
lowered only while the node is warm, raised only while it is prompt, and
probing upward while prompt over its target (the CPU overstates a lighter
load). So at twice its capacity a node settles near its capacity and
answers the rest 503, rather than oscillating between taking everything
and refusing everything. The overload ends after L{LEAVE_AFTER} seconds
cool without a refused INVITE.

L{OverloadDetector} is pure (time and CPU are passed in);
L{OverloadService} samples the reactor.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.application import service
from twisted.logger import Logger

#: Seconds between two lag samples.
SAMPLE_INTERVAL = 0.025
#: Weight of a new lag sample in the smoothed lag (exponential average).
LAG_WEIGHT = 0.25
#: Seconds between two decisions (and the CPU window).
CONTROL_INTERVAL = 0.25
#: Hot intervals in a row that start an overload (a single stall does
#: not), whatever made them hot: a full core with the lag at
#: L{CPU_LAG_SHARE} of its threshold is more than a burst already (four
#: intervals for the CPU alone, the value before, let a node twice over
#: its capacity admit about 300 calls too many before the overload
#: started).
ENTER_TICKS = 2
#: A full core counts as hot once the lag is this share of its threshold.
CPU_LAG_SHARE = 0.25
#: Below the CPU threshold by this much (fraction of a core) is cool.
CPU_BAND = 0.1
#: Factor of the admission rate on a hot interval: C{lag threshold /
#: lag} (the further over, the deeper the cut), within these bounds.
DECREASE = 0.85
#: The deepest cut of one decrease.
DEEPEST = 0.5
#: Seconds between two decreases at most.
DECREASE_EVERY = 1.0
#: Seconds over which the completion and admission rates are measured.
RATE_WINDOW = 1.0
#: Relative increase of the admission rate on a cool interval.
INCREASE = 0.04
#: Smallest increase (calls/s) on a cool interval.
MIN_STEP = 0.5
#: The admission rate never goes below this (calls/s): the node keeps
#: probing whether it recovered.
MIN_RATE = 5.0
#: Seconds of admissions the token bucket holds (at least one INVITE).
BURST = 0.2
#: Seconds cool without a refused INVITE that end an overload.
LEAVE_AFTER = 5.0
#: Setups a window needs before its CPU per setup is learnt.
COST_MIN_CALLS = 20
#: Weight of a new window in the learnt CPU seconds per setup.
COST_WEIGHT = 0.2
#: New INVITEs offered over the last L{RATE_WINDOW} at this many times the
#: highest rate the node carried promptly, with its core over the CPU
#: threshold, for L{ENTER_TICKS} intervals, start an overload at once
#: (a surge), admitted at L{SURGE_ADMIT} x that rate (at
#: most the learnt capacity).
SURGE = 1.3
SURGE_ADMIT = 0.8
#: Seconds an event ready to send may wait for a request slot, while the
#: CPU is over its threshold less L{CPU_BAND}, before the interval is hot.
EVENTS_LATE = 0.5
#: Seconds a node must stay prompt after a window before it learns from it.
CONFIRM = 1.0
#: A window is steady when its INVITEs admitted and setups completed are
#: within this factor of each other.
STEADY = 1.25
#: While overloaded with a CPU threshold, the CPU share the admission rate
#: is steered to: this much under the threshold (the room a burst, a
#: garbage collection or the backlog of the calls just admitted needs).
TARGET_BAND = 0.05
#: Share of the gap between the CPU and its target closed per control
#: interval (an integral controller: the rate moves by GAIN x gap / cost
#: per setup). Admitted calls show part of their cost a second or more
#: later (BYE, events), so a larger gain overshoots.
GAIN = 0.15
#: The same for raising the rate near the target: slower, since what it
#: admits shows its whole cost only a second or more later.
GAIN_UP = 0.05
#: The CPU share of one interval that leaves no headroom: a node steered
#: on the CPU counts as warm at it, once its lag is at least
#: L{SATURATED_LAG_SHARE} of the threshold (a full core with an idle
#: reactor queue is a light load in small turns, not saturation).
SATURATED = 0.98
SATURATED_LAG_SHARE = 0.1
#: Share of the rate cut per interval, at least, while warm at SATURATED.
WARM_CUT = 0.03
#: Share of the rate a prompt node over its CPU target raises it by per
#: control interval (probing: the CPU overstates a lighter load).
PROBE = 0.015
#: CPU seconds per setup assumed before one is learnt.
DEFAULT_COST = 0.005
#: While overloaded the rate is not raised beyond this many times the
#: INVITEs offered (+ L{MIN_STEP}).
OFFER_HEADROOM = 1.1


class OverloadDetector:
    """
    The overload state and the admission rate (pure: every input carries
    the time).

    @ivar lag: The smoothed reactor lag, seconds.
    @ivar cpu: The CPU fraction of the last interval.
    @ivar rate: The admission rate (calls/s) while overloaded, else
        L{None}.
    @ivar cause: C{"lag"}, C{"events"} or C{"cpu"}: what made the last hot
        interval hot.
    @ivar events_wait: The last tick's wait of the oldest event ready to
        send, seconds.
    @ivar stats: Counters: C{episodes}, C{rejected_lag}, C{rejected_cpu},
        C{rejected_events},
        C{admitted}.
    """

    def __init__(self, lag: float, cpu: float, now: float, cpu_seconds: float, completed: int = 0) -> None:
        """
        @param lag: The lag threshold in seconds; 0 = lag not watched.
        @param cpu: The CPU threshold (fraction of one core); 0 = CPU not
            watched.
        @param now: The current time.
        @param cpu_seconds: The process's CPU seconds used so far.
        @param completed: Call setups completed so far (a counter).
        """
        self.lag_threshold = lag
        self.cpu_threshold = cpu
        self.lag = 0.0
        self.cpu = 0.0
        self.rate: float | None = None
        self.cause = "lag"
        self.stats: dict[str, int] = {
            "episodes": 0,
            "rejected_lag": 0,
            "rejected_cpu": 0,
            "rejected_events": 0,
            "admitted": 0,
        }
        self.events_wait = 0.0
        self._last = (now, cpu_seconds)
        #: (time, completed, admitted, CPU seconds, refused) of the ticks
        #: of the last L{RATE_WINDOW} seconds, oldest first.
        self._history: deque[tuple[float, int, int, float, int]] = deque([(now, completed, 0, cpu_seconds, 0)])
        self._hot_ticks = 0
        self._surge_ticks = 0
        self._decreased_at = now
        self._calm_since = now
        self._tokens = 0.0
        self._stamp = now
        self._admitted = 0
        self._refused = 0
        self._rejected_at: float | None = None
        #: The highest rate of setups (per second) carried over a steady
        #: window while prompt.
        self.carried = 0.0
        #: (time, setups/s, CPU seconds per setup or None) of the steady
        #: windows not yet confirmed (L{CONFIRM}).
        self._samples: deque[tuple[float, float, float | None]] = deque()
        #: CPU seconds per completed setup, learnt while not overloaded
        #: (everything a call costs, its events and BYE included, once the
        #: load is steady), or L{None} before enough calls.
        self.cost: float | None = None

    def restart_window(self, now: float, cpu_seconds: float, completed: int) -> None:
        """
        Start the next interval now (the sampling starts).

        @param now: The current time.
        @param cpu_seconds: The process's CPU seconds used so far.
        @param completed: Call setups completed so far.
        """
        self._last = (now, cpu_seconds)
        self._history = deque([(now, completed, self._admitted, cpu_seconds, self._refused)])
        self._calm_since = now

    @property
    def enabled(self) -> bool:
        """
        Whether either signal is watched.
        """
        return self.lag_threshold > 0 or self.cpu_threshold > 0

    @property
    def overloaded(self) -> bool:
        """
        Whether new INVITEs are being rate-limited.
        """
        return self.rate is not None

    def lag_sample(self, lateness: float) -> None:
        """
        One lag sample: how late the sampling timer ran.

        @param lateness: Seconds (negative values count as 0).
        """
        self.lag += LAG_WEIGHT * (max(0.0, lateness) - self.lag)

    def tick(self, now: float, cpu_seconds: float, completed: int, events_wait: float = 0.0) -> str | None:
        """
        One control step, every L{CONTROL_INTERVAL}.

        @param now: The current time.
        @param cpu_seconds: The process's CPU seconds used so far.
        @param completed: Call setups completed so far (a counter).
        @param events_wait: How long the oldest event ready to send has
            waited for a request slot, seconds.
        @return: C{"enter"} or C{"leave"} when the overload state changed,
            else L{None}.
        """
        then, cpu_then = self._last
        elapsed = now - then
        if elapsed <= 0:
            return None
        self._last = (now, cpu_seconds)
        self.cpu = max(0.0, cpu_seconds - cpu_then) / elapsed
        history = self._history
        history.append((now, completed, self._admitted, cpu_seconds, self._refused))
        while len(history) > 2 and now - history[1][0] >= RATE_WINDOW - 1e-9:
            history.popleft()
        if self.rate is None and (self.lag_threshold <= 0 or self.lag < self.lag_threshold / 2):
            # A prompt node: what it carries, and its cost per setup (a
            # lagging one's is inflated by its backlog).
            self._learn(now, completed, cpu_seconds)
        else:
            self._samples.clear()
        lag_hot = self.lag_threshold > 0 and self.lag >= self.lag_threshold
        # A full core counts once the reactor starts to fall behind too
        # (CPU_LAG_SHARE of the lag threshold): a process that is busy but
        # prompt (a test run, a burst of work) is keeping up, not
        # overloaded.
        cpu_hot = (
            self.cpu_threshold > 0
            and self.cpu >= self.cpu_threshold
            and (self.lag_threshold <= 0 or self.lag >= self.lag_threshold * CPU_LAG_SHARE)
        )
        # Events due but waiting for a request slot while the core is
        # busy: the node takes calls faster than it reports them (the
        # reactor can stay prompt meanwhile). A slow endpoint with an idle
        # core is not overload: shedding calls would not help it.
        events_hot = (
            self.cpu_threshold > 0 and events_wait >= EVENTS_LATE and self.cpu >= self.cpu_threshold - CPU_BAND
        )
        self.events_wait = events_wait
        late = lag_hot or events_hot
        hot = late or cpu_hot
        if hot:
            self.cause = "lag" if lag_hot else "events" if events_hot else "cpu"
            self._hot_ticks += 1
            self._calm_since = now
        else:
            self._hot_ticks = 0
        first = history[0]
        span = now - first[0]
        completion_rate = max(0, completed - first[1]) / span
        if self.rate is None:
            offered = (self._admitted - first[2]) / span
            surging = (
                self.carried > 0
                and self.cpu_threshold > 0
                and self.cpu >= self.cpu_threshold
                and span >= RATE_WINDOW / 2
                and offered > SURGE * self.carried
            )
            self._surge_ticks = self._surge_ticks + 1 if surging else 0
            if self._surge_ticks >= ENTER_TICKS:
                # Far more new INVITEs than the node has ever carried
                # promptly, and its core already busy: shed now, before
                # the calls admitted in the meantime build a backlog that
                # the lag and the CPU would only show later.
                self.cause = "cpu"
                self._set_rate(self._bounded(SURGE_ADMIT * self.carried), now)
            elif not hot or self._hot_ticks < ENTER_TICKS:
                return None
            else:
                self._set_rate(self._bounded(self._cut() * completion_rate), now)
            self._decreased_at = now
            self._surge_ticks = 0
            self.stats["episodes"] += 1
            return "enter"
        if late:
            if now - self._decreased_at >= DECREASE_EVERY - 1e-9:
                # A reactor or the event delivery falling behind: cut,
                # whatever the CPU says (it is full while a backlog is
                # worked off, so it is not steered on meanwhile).
                admitted_rate = (self._admitted - first[2]) / span
                # No floor from the learnt capacity: it may come from
                # cheaper calls than today's (inbound only, then forwards).
                # A node cut too deep has CPU to spare once it is no longer
                # late, and steering raises the rate back within seconds.
                cut = self._cut() * min(self.rate, max(admitted_rate, completion_rate))
                self._set_rate(min(self.rate, cut), now)
                self._decreased_at = now
        elif self.cpu_threshold > 0:
            self._steer(now, cpu_seconds)
        cool = (
            (self.lag_threshold <= 0 or self.lag < self.lag_threshold / 2)
            and (self.cpu_threshold <= 0 or self.cpu < self.cpu_threshold - CPU_BAND)
            and events_wait < EVENTS_LATE / 2
        )
        if not cool:
            self._calm_since = now
            return None
        quiet = self._rejected_at is None or now - self._rejected_at >= LEAVE_AFTER
        if quiet and now - self._calm_since >= LEAVE_AFTER - 1e-9:
            self.rate = None
            return "leave"
        if self.cpu_threshold <= 0:
            # Lag alone: a cool interval raises the rate.
            self._set_rate(self.rate + max(MIN_STEP, self.rate * INCREASE), now)
        return None

    @property
    def target(self) -> float:
        """
        The CPU share the admission rate is steered to while overloaded.
        """
        return self.cpu_threshold - TARGET_BAND

    def _steer(self, now: float, cpu_seconds: float) -> None:
        """
        Move the admission rate toward the one that keeps the CPU at its
        L{target} (an integral controller): by L{GAIN} (L{GAIN_UP} when
        raising with less than 2 x L{CPU_BAND} to go) x the gap between
        the target and the CPU of the last L{RATE_WINDOW}, over the cost
        per setup. Refusals cost CPU too: steering on the whole process's
        CPU counts them, so at twice the capacity the node admits what
        the core carries once the refusals are paid for.

        The CPU alone is a weak sign, though: a process that takes fewer
        calls does its work in smaller reactor turns, each with its fixed
        cost, so its CPU falls much less than its load. So the rate is
        lowered on the CPU only while the node is I{warm} (the lag over
        L{CPU_LAG_SHARE} of its threshold, events waiting that share of
        L{EVENTS_LATE} for a slot, or the last interval's CPU at
        L{SATURATED} with the lag starting to grow: no headroom left), and
        raised on it only while not, by L{PROBE} of the rate at least; a
        prompt node over its CPU target probes upward by L{PROBE} of the
        rate (a node that entered an overload at its capacity gets back
        to it instead of staying at the CPU target's rate). Never raised
        beyond L{OFFER_HEADROOM} x the INVITEs offered over the window.
        """
        assert self.rate is not None
        first = self._history[0]
        span = now - first[0]
        cpu = max(0.0, cpu_seconds - first[3]) / span
        offered = (self._admitted - first[2] + self._refused - first[4]) / span
        warm = (
            (self.lag_threshold > 0 and self.lag >= self.lag_threshold * CPU_LAG_SHARE)
            or self.events_wait >= EVENTS_LATE * CPU_LAG_SHARE
            or (self.cpu >= SATURATED and self.lag >= self.lag_threshold * SATURATED_LAG_SHARE)
        )
        gap = self.target - cpu
        if gap < 0 and warm:
            step = GAIN * gap / (self.cost or DEFAULT_COST)
            if self.cpu >= SATURATED:
                # No headroom and falling behind: at least WARM_CUT of the
                # rate each interval (the CPU's gap is capped at 100 %).
                step = min(step, -WARM_CUT * self.rate)
        elif gap < 0:
            step = PROBE * self.rate
        elif warm:
            step = 0.0
        else:
            step = (GAIN_UP if gap < 2 * CPU_BAND else GAIN) * gap / (self.cost or DEFAULT_COST)
            step = max(step, PROBE * self.rate)
        if step > 0:
            # Not beyond the offer: no credit piles up while the offer is
            # low that a sudden burst could then spend.
            step = min(step, max(0.0, OFFER_HEADROOM * offered + MIN_STEP - self.rate))
        self._set_rate(self.rate + step, now)

    @property
    def capacity(self) -> float | None:
        """
        The setups per second the CPU threshold allows at the learnt cost
        per setup, or L{None} before it is learnt (or without a CPU
        threshold).
        """
        if self.cost is None or self.cpu_threshold <= 0:
            return None
        return self.cpu_threshold / self.cost

    def _learn(self, now: float, completed: int, cpu_seconds: float) -> None:
        """
        Learn from the last window, when it had enough setups and was
        steady (as many INVITEs admitted as setups completed, within
        L{STEADY}: not the start of a burst, whose setups complete before
        the rest of their cost comes, nor the end of one, when the backlog
        is worked off): the rate carried (L{carried}) and, when the CPU
        was under its threshold (a saturated core's cost is understated),
        the CPU per setup (L{cost}). A window counts once the node has
        stayed prompt for L{CONFIRM} seconds after it (a surge's first
        window is steady and prompt too: its cost shows later).
        """
        samples = self._samples
        while samples and now - samples[0][0] >= CONFIRM - 1e-9:
            _, carried, cost = samples.popleft()
            self.carried = max(self.carried, carried)
            if cost is not None:
                self.cost = cost if self.cost is None else self.cost + COST_WEIGHT * (cost - self.cost)
        first = self._history[0]
        calls = completed - first[1]
        span = now - first[0]
        admitted = self._admitted - first[2]
        if calls < COST_MIN_CALLS or span < RATE_WINDOW / 2 or not calls / STEADY <= admitted <= calls * STEADY:
            return
        # The last interval's admissions at the window's pace too (not the
        # ramp of a burst, nor its tail, whose BYEs and events come with
        # no new setup).
        last = self._history[-2]
        pace = (self._admitted - last[2]) / (now - last[0])
        if not admitted / span / STEADY <= pace <= admitted / span * STEADY:
            return
        cpu = max(0.0, cpu_seconds - first[3]) / span
        saturated = self.cpu_threshold > 0 and cpu >= self.cpu_threshold
        samples.append((now, calls / span, None if saturated else cpu * span / calls))

    def _bounded(self, rate: float) -> float:
        """
        C{rate}, at most the L{capacity} (when known): a node entering an
        overload has just admitted more than it can carry (a setup is
        cheap, its forward, BYE and events come later), so the rate of
        completed setups overstates what it can take.
        """
        capacity = self.capacity
        return rate if capacity is None else min(rate, capacity)

    def _cut(self) -> float:
        """
        The factor of a decrease: L{DECREASE}, or less when the lag is
        well over its threshold, or the events have waited well over
        L{EVENTS_LATE} (down to L{DEEPEST}).
        """
        factor = DECREASE
        if self.lag_threshold > 0 and self.lag > 0:
            factor = min(factor, self.lag_threshold / self.lag)
        if self.events_wait > EVENTS_LATE:
            factor = min(factor, EVENTS_LATE / self.events_wait)
        return max(DEEPEST, factor)

    def _set_rate(self, rate: float, now: float) -> None:
        self._refill(now)
        self.rate = max(MIN_RATE, rate)
        self._tokens = min(self._tokens, self._burst())

    def _burst(self) -> float:
        return max(1.0, (self.rate or 0.0) * BURST)

    def _refill(self, now: float) -> None:
        if self.rate is not None:
            self._tokens = min(self._burst(), self._tokens + max(0.0, now - self._stamp) * self.rate)
        self._stamp = max(self._stamp, now)

    def admit(self, now: float) -> str | None:
        """
        A new dialog-creating INVITE arrived: admit it or not (only those,
        never retransmissions or in-dialog requests).

        @param now: The current time.
        @return: L{None} to admit it, else the cause to refuse it with
            (C{"lag"} or C{"cpu"}), counted.
        """
        if self.rate is not None:
            self._refill(now)
            if self._tokens < 1.0 - 1e-9:
                self.stats["rejected_" + self.cause] += 1
                self._refused += 1
                self._rejected_at = now
                return self.cause
            self._tokens -= 1.0
        self._admitted += 1
        self.stats["admitted"] += 1
        return None

    def snapshot(self) -> dict[str, Any]:
        """
        The state for C{/metrics}: C{overloaded} (0/1), C{lag_seconds},
        C{cpu}, C{admit_rate} (0 when not limiting), C{events_wait_seconds},
        the counters.
        """
        return {
            "overloaded": self.overloaded,
            "lag_seconds": round(self.lag, 6),
            "cpu": round(self.cpu, 4),
            "admit_rate": round(self.rate or 0.0, 3),
            "events_wait_seconds": round(self.events_wait, 3),
            **self.stats,
        }


class OverloadService(service.Service):
    """
    Samples the reactor's lag and the process's CPU into an
    L{OverloadDetector}, and logs one line when an overload starts and one
    when it ends.

    @ivar detector: The L{OverloadDetector}.
    """

    log = Logger()
    name = "overload"

    def __init__(
        self,
        reactor: Any,
        lag: float,
        cpu: float,
        completed: Callable[[], int] = lambda: 0,
        cpu_reader: Callable[[], float] = time.process_time,
        events_wait: Callable[[], float] = lambda: 0.0,
    ) -> None:
        """
        @param reactor: IReactorTime.
        @param lag: The lag threshold in seconds (0 = not watched).
        @param cpu: The CPU threshold, fraction of one core (0 = not
            watched).
        @param completed: Reads the counter of completed call setups.
        @param cpu_reader: The process's CPU seconds used so far.
        @param events_wait: Reads how long the oldest event ready to send
            has waited for a request slot (seconds).
        """
        self._reactor = reactor
        self._events_wait = events_wait
        self._completed = completed
        self._cpu_reader = cpu_reader
        self.detector = OverloadDetector(lag, cpu, reactor.seconds(), cpu_reader(), completed())
        self._call: Any = None
        self._due = 0.0
        self._next_tick = 0.0
        self._entered_at = 0.0
        self._rejected_before = 0

    def admit(self) -> str | None:
        """
        L{OverloadDetector.admit} now.
        """
        return self.detector.admit(self._reactor.seconds())

    def startService(self) -> None:
        service.Service.startService(self)
        if not self.detector.enabled:
            return
        now = self._reactor.seconds()
        self.detector.restart_window(now, self._cpu_reader(), self._completed())
        self._next_tick = now + CONTROL_INTERVAL
        self._schedule(now)

    def stopService(self) -> None:
        service.Service.stopService(self)
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _schedule(self, now: float) -> None:
        self._due = now + SAMPLE_INTERVAL
        self._call = self._reactor.callLater(SAMPLE_INTERVAL, self._sample)

    def _sample(self) -> None:
        now = self._reactor.seconds()
        detector = self.detector
        detector.lag_sample(now - self._due)
        if now >= self._next_tick:
            self._next_tick = now + CONTROL_INTERVAL
            change = detector.tick(now, self._cpu_reader(), self._completed(), self._events_wait())
            if change is not None:
                self._log_change(change, now)
        self._schedule(now)

    def _rejected(self) -> int:
        stats = self.detector.stats
        return stats["rejected_lag"] + stats["rejected_cpu"] + stats["rejected_events"]

    def _log_change(self, change: str, now: float) -> None:
        detector = self.detector
        if change == "enter":
            self._entered_at = now
            self._rejected_before = self._rejected()
            self.log.warn(
                "overload ({cause}): lag={lag:.3f}s cpu={cpu:.2f}; new INVITEs admitted at {rate:.1f}/s, "
                "the others answered 503",
                cause=detector.cause,
                lag=detector.lag,
                cpu=detector.cpu,
                rate=detector.rate,
            )
        else:
            self.log.warn(
                "overload over after {duration:.1f}s: {rejected} new INVITEs answered 503",
                duration=now - self._entered_at,
                rejected=self._rejected() - self._rejected_before,
            )
