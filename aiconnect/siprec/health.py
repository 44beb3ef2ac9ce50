# -*- test-case-name: tests.siprec.test_health,tests.integration.test_trunk_health -*-
"""
Per-target trunk health (SPEC s13), shared by every call of the process.

A target (transport, host, port) that failed (timeout, 5xx, transport or
TLS failure) is I{down} for the trunk's C{down_for} seconds: new dials
skip it (L{TargetHealth.order}) unless every target is down.  Any answer
that shows it alive (2xx, 3xx, 4xx including 401/407, 6xx) marks it
I{up}.  The OPTIONS prober (L{aiconnect.siprec.probe}) reports the same
way and records its own last result.

The states change by one table, L{HEALTH_TABLE}, as the other machines of
the project; time comes from the injected clock (C{IReactorTime}), so the
tests drive it with C{Clock}.  The registry is bounded: at most C{cap}
targets, the least recently touched forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Sequence

from aiconnect.events import format_timestamp
from aiconnect.sip.peer import Peer
from aiconnect.siprec.dialer import peer_text

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

__all__ = ["HEALTH_TABLE", "MAX_TARGETS", "HealthInput", "HealthState", "TargetHealth", "TargetRecord", "target_key"]

#: At most this many targets are remembered (the oldest touched go first).
MAX_TARGETS = 4096

#: Longest C{lastError} kept (a reason comes from a peer's reason phrase).
MAX_ERROR = 200


class HealthState(Enum):
    """
    What we know of a target.
    """

    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


class HealthInput(Enum):
    """
    What happened to a target.
    """

    FAILED = "failed"  # timeout, 5xx, transport or TLS failure, with down_for > 0
    ANSWERED = "answered"  # any answer showing it alive
    EXPIRED = "expired"  # down_for has passed


_S, _I = HealthState, HealthInput

#: (state, input) -> next state; each row cites SPEC s13.
HEALTH_TABLE: dict[tuple[HealthState, HealthInput], HealthState] = {
    (_S.UNKNOWN, _I.FAILED): _S.DOWN,  # SPEC s13: skipped for down_for
    (_S.UNKNOWN, _I.ANSWERED): _S.UP,  # SPEC s13: marked up
    (_S.UP, _I.FAILED): _S.DOWN,  # SPEC s13
    (_S.UP, _I.ANSWERED): _S.UP,  # SPEC s13
    (_S.DOWN, _I.FAILED): _S.DOWN,  # SPEC s13: down_for counts from the last failure
    (_S.DOWN, _I.ANSWERED): _S.UP,  # SPEC s13: a probe or a call found it alive
    (_S.DOWN, _I.EXPIRED): _S.UNKNOWN,  # SPEC s13: tried again after down_for
}


def target_key(peer: Peer) -> tuple[str, str, int]:
    """
    @return: The registry key of a target: C{(transport, host, port)}.
    """
    return (peer.transport, peer.host, peer.port)


@dataclass(slots=True)
class TargetRecord:
    """
    What the registry knows of one target.

    @ivar target: the target as events name it (L{peer_text}).
    @ivar state: the state (L{HealthState.DOWN} only until C{down_until}).
    @ivar since: when the state was entered.
    @ivar down_until: when a down target is tried again.
    @ivar last_error: the last failure's reason.
    @ivar last_probe: when the last OPTIONS probe ended.
    @ivar probe_status: its result (C{"200 OK"}, C{"timeout"} ...).
    @ivar probe_ms: its duration in milliseconds.
    """

    target: str
    state: HealthState = HealthState.UNKNOWN
    since: float | None = None
    down_until: float | None = None
    last_error: str | None = None
    last_probe: float | None = None
    probe_status: str | None = None
    probe_ms: int | None = None


def _time(value: float | None) -> str | None:
    return None if value is None else format_timestamp(value)


class TargetHealth:
    """
    The registry (see the module docstring).

    @ivar stats: counters: C{failed}, C{answered}, C{evicted}.
    """

    def __init__(self, clock: IReactorTime, cap: int = MAX_TARGETS) -> None:
        """
        @param clock: gives the time (C{seconds()}).
        @param cap: at most this many targets are kept.
        """
        self._clock = clock
        self._cap = cap
        self._targets: OrderedDict[tuple[str, str, int], TargetRecord] = OrderedDict()
        self.stats: dict[str, int] = {"failed": 0, "answered": 0, "evicted": 0}

    def __len__(self) -> int:
        return len(self._targets)

    # -- inputs ----------------------------------------------------------------

    def _record(self, peer: Peer) -> TargetRecord:
        key = target_key(peer)
        record = self._targets.get(key)
        if record is None:
            record = TargetRecord(peer_text(peer))
            self._targets[key] = record
            while len(self._targets) > self._cap:
                self._targets.popitem(last=False)
                self.stats["evicted"] += 1
        else:
            self._targets.move_to_end(key)
        return record

    def _current(self, record: TargetRecord, now: float) -> HealthState:
        if record.state is HealthState.DOWN and record.down_until is not None and now >= record.down_until:
            self._feed(record, HealthInput.EXPIRED, record.down_until)
        return record.state

    def _feed(self, record: TargetRecord, what: HealthInput, now: float) -> None:
        state = HEALTH_TABLE.get((record.state, what))
        if state is None:
            return
        if state is not record.state:
            record.since = now
        record.state = state
        if state is not HealthState.DOWN:
            record.down_until = None

    def target_failed(self, peer: Peer, reason: str, down_for: float) -> None:
        """
        A target failed (timeout, 5xx, transport, TLS): down for
        C{down_for} seconds from now (SPEC s13).

        @param reason: why, kept as C{lastError}.
        @param down_for: the trunk's C{down_for}; 0 = never down (the
            error is kept, the state does not change).
        """
        now = self._clock.seconds()
        record = self._record(peer)
        self.stats["failed"] += 1
        record.last_error = reason[:MAX_ERROR]
        self._current(record, now)
        if down_for <= 0:
            return
        self._feed(record, HealthInput.FAILED, now)
        record.down_until = now + down_for

    def target_answered(self, peer: Peer) -> None:
        """
        A target answered in a way that shows it alive: up.
        """
        now = self._clock.seconds()
        record = self._record(peer)
        self.stats["answered"] += 1
        self._current(record, now)
        self._feed(record, HealthInput.ANSWERED, now)

    def probed(self, peer: Peer, status: str, ms: int) -> None:
        """
        Record an OPTIONS probe's result (its up/down verdict goes through
        L{target_failed} / L{target_answered}).

        @param status: C{"200 OK"}, C{"timeout"}, C{"transport: ..."}.
        @param ms: how long it took.
        """
        record = self._record(peer)
        record.last_probe = self._clock.seconds()
        record.probe_status = status[:MAX_ERROR]
        record.probe_ms = ms

    # -- queries -------------------------------------------------------------------

    def state(self, peer: Peer) -> HealthState:
        """
        @return: the target's state now.
        """
        record = self._targets.get(target_key(peer))
        if record is None:
            return HealthState.UNKNOWN
        return self._current(record, self._clock.seconds())

    def is_down(self, peer: Peer) -> bool:
        """
        @return: whether new dials skip the target now.
        """
        return self.state(peer) is HealthState.DOWN

    def order(self, peers: Sequence[Peer]) -> list[Peer]:
        """
        The targets to try, in the given order, without the down ones
        unless every one is down (SPEC s13: then all, in order).
        """
        alive = [p for p in peers if not self.is_down(p)]
        return alive if alive else list(peers)

    def describe(self, peer: Peer) -> dict[str, Any]:
        """
        The target's health as the REST API shows it.

        @return: C{{"target", "transport", "host", "port", "state",
            "since", "downUntil", "lastError", "lastProbe", "probeStatus",
            "probeMs"}}; times ISO-8601 UTC or C{null}.
        """
        record = self._targets.get(target_key(peer))
        if record is None:
            record = TargetRecord(peer_text(peer))
        else:
            self._current(record, self._clock.seconds())
        return {
            "target": record.target,
            "transport": peer.transport,
            "host": peer.host,
            "port": peer.port,
            "state": record.state.value,
            "since": _time(record.since),
            "downUntil": _time(record.down_until),
            "lastError": record.last_error,
            "lastProbe": _time(record.last_probe),
            "probeStatus": record.probe_status,
            "probeMs": record.probe_ms,
        }
