# -*- test-case-name: tests.test_registry,tests.api.test_routes,tests.test_call_limits,tests.integration.test_hardening_admission -*-
"""
The L{CallRegistry}: session id -> L{CallRunner}, per tenant; ended calls are kept
a while so the application can still read their final state: at most
C{keep_ended} of them, each for at most C{keep_ended_for} seconds after it
ended (C{[api]} of the configuration).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Iterator

from twisted.internet.interfaces import IReactorTime

from aiconnect.call import CallState
from aiconnect.runner import CallRunner

#: Ended calls kept for GET /{domain}/sessions/{id}: at most this many ...
KEEP_ENDED = 1000
#: ... each for at most this many seconds after it ended.
KEEP_ENDED_FOR = 3600.0


def _final(stats: Callable[[str], dict[str, Any] | None], leg_id: str) -> dict[str, Any] | None:
    """
    A leg's final counters; L{None} if reading them fails (a broken leg
    must not keep its ended session from being kept).
    """
    try:
        return stats(leg_id)
    except Exception:
        return None


class EndedRunner(CallRunner):
    """
    What the registry keeps of an ended session for the API: its L{Call}
    and the final counters of its relay session and legs, without the
    legs themselves, the relay session, the dialogs, the pending INVITE or
    the factories (an ended session holds a few KiB, not the tens of KiB of
    a live one).  Orders and stops reach the ended Call as before (it
    refuses or absorbs them); its events, if any, go to the same sink.
    """

    def __init__(self, runner: CallRunner) -> None:
        """
        @param runner: the session that ended.
        """
        super().__init__(runner.call, runner.clock, runner.sink, journal=runner.journal)
        self._media_stats = runner.media_stats()
        self._forward_stats = {f: _final(runner.forward_stats, f) for f in runner.legs}
        self._output_stats = {o: runner.output_stats(o) for o in runner.output_legs}

    def media_stats(self) -> dict[str, Any] | None:
        """
        The relay's final counters.
        """
        return self._media_stats

    def forward_stats(self, forward_id: str) -> dict[str, Any] | None:
        """
        A forward's final media counters, or L{None} when it had no leg.
        """
        return self._forward_stats.get(forward_id)

    def output_stats(self, output_id: str) -> dict[str, Any] | None:
        """
        A stream's or recording's final counters, or L{None} without a leg.
        """
        return self._output_stats.get(output_id)


class CallRegistry:
    """
    All calls of this process.

    Ended calls are kept in the order they ended, with the time they did:
    the oldest is dropped first, whether for the count (when one more
    ends) or for its age (checked when a call is added or ends, and when
    the ended ones are read: by the API or by C{/metrics}), so each check
    costs O(1) amortised and needs no timer.
    """

    def __init__(
        self,
        clock: IReactorTime | None = None,
        keep_ended: int = KEEP_ENDED,
        keep_ended_for: float = KEEP_ENDED_FOR,
    ) -> None:
        """
        @param clock: the reactor's clock; L{None}: ended calls are dropped
            by count only.
        @param keep_ended: the most ended calls kept (0: none).
        @param keep_ended_for: seconds an ended call is kept.
        """
        self._calls: dict[str, CallRunner] = {}
        #: Lower-case tenant domain -> its live calls (SPEC s12 max_sessions).
        self._live: dict[str, int] = {}
        #: Ended calls, oldest first: session id -> (when it ended, runner).
        self._ended: OrderedDict[str, tuple[float, EndedRunner]] = OrderedDict()
        self._clock = clock
        self._keep = keep_ended
        self._keep_for = keep_ended_for
        #: Told of each session's start and end (the session directory of
        #: a cluster, L{aiconnect.storage.cluster.SessionClaims}), or
        #: L{None} (one node: nothing to tell).
        self.directory: Any = None

    def _now(self) -> float:
        return 0.0 if self._clock is None else self._clock.seconds()

    def _expire(self, now: float) -> None:
        """
        Drop the ended calls that ended C{keep_ended_for} or more before
        C{now}, oldest first (they are in the order they ended).
        """
        if self._clock is None:
            return
        ended = self._ended
        horizon = now - self._keep_for
        while ended:
            first = next(iter(ended.values()))
            if first[0] > horizon:
                return
            ended.popitem(last=False)

    def add(self, call: CallRunner) -> None:
        """
        Register a new call; it moves to the ended list when it ends
        (L{session_finished}).
        """
        self._expire(self._now())
        if call.session_id in self._calls:
            return
        self._calls[call.session_id] = call
        tenant = call.tenant.domain.lower()
        self._live[tenant] = self._live.get(tenant, 0) + 1
        call.finishers.append(self)
        if self.directory is not None:
            self.directory.session_started(call.session_id, tenant)

    def session_finished(self, call: CallRunner) -> None:
        """
        A call ended: what the API reads of it (an L{EndedRunner}) moves
        to the ended list, if any is kept.
        """
        if self._calls.pop(call.session_id, None) is None:
            return
        tenant = call.tenant.domain.lower()
        left = self._live.get(tenant, 0) - 1
        if left > 0:
            self._live[tenant] = left
        else:
            self._live.pop(tenant, None)
        if self.directory is not None:
            self.directory.session_ended(call.session_id)
        now = self._now()
        self._expire(now)
        if self._keep <= 0 or (self._clock is not None and self._keep_for <= 0):
            return
        self._ended[call.session_id] = (now, EndedRunner(call))
        while len(self._ended) > self._keep:
            self._ended.popitem(last=False)

    def get(self, tenant_domain: str, session_id: str) -> CallRunner:
        """
        A call of a tenant: live, or what is kept of a recently ended one
        (an L{EndedRunner}).

        @raise KeyError: unknown, expired, or another tenant's.
        """
        call = self._calls.get(session_id)
        if call is None:
            self._expire(self._now())
            kept = self._ended.get(session_id)
            call = None if kept is None else kept[1]
        if call is None or call.tenant.domain.lower() != tenant_domain.lower():
            raise KeyError(session_id)
        return call

    def active(self, tenant_domain: str | None = None) -> list[CallRunner]:
        """
        The live calls (of one tenant when given).
        """
        return [
            c
            for c in self._calls.values()
            if tenant_domain is None or c.tenant.domain.lower() == tenant_domain.lower()
        ]

    def live_count(self, tenant_domain: str) -> int:
        """
        The number of live calls of a tenant (negotiating, active or
        terminating), in constant time: checked for every new INVITE
        (SPEC s12 C{max_sessions}).

        @param tenant_domain: the tenant's domain (any case).
        """
        return self._live.get(tenant_domain.lower(), 0)

    def __iter__(self) -> Iterator[CallRunner]:
        return iter(list(self._calls.values()))

    def __len__(self) -> int:
        return len(self._calls)

    def counts(self) -> dict[str, Any]:
        """
        Gauges for /metrics.
        """
        self._expire(self._now())
        states: dict[str, int] = {s.value: 0 for s in CallState}
        for c in self._calls.values():
            states[c.state.value] += 1
        return {"active": len(self._calls), "ended_kept": len(self._ended), "states": states}
