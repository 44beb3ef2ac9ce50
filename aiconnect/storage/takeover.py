# -*- test-case-name: tests.storage.test_takeover -*-
"""
Events delivered once per failure domain (SPEC s14): every C{lease / 3}
seconds a node asks for the expired leases (a node lost, or stopped: a
released lease is expired at once) and takes over their undelivered
events (L{PostgresOutbox.take_over
<aiconnect.storage.outbox.PostgresOutbox.take_over>}), which its deliverer
then sends, in order per session.

In one transaction the survivor locks the lost node's lease row
(C{FOR UPDATE SKIP LOCKED}, checked expired again), then its pending
events (C{FOR UPDATE SKIP LOCKED}) and sets their C{owner_node} to
itself: two survivors never take the same rows, and one takes all of a
node's, so a session's events are never split between two deliverers.  A
node restarting takes its lease in the transaction that reads its own
events (L{PostgresOutbox.load <aiconnect.storage.outbox.PostgresOutbox.load>}),
so it and a survivor never both deliver them.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from aiconnect.storage.nodes import NodeLease, NodeLeases
from aiconnect.storage.outbox import PostgresOutbox

__all__ = ["TakeoverService"]


class TakeoverService(Service):
    """
    Takes over the events of lost nodes (module docstring), at start and
    every C{lease / 3} seconds (a round still running delays the next).  A
    failed round is logged (the first of an outage, then a line when it
    works again) and counted.

    @ivar stats: C{rounds}, C{failures}, C{taken} (events), C{nodes}
        (lost nodes whose events were taken, at least one event).
    """

    log = Logger()

    def __init__(self, leases: NodeLeases, outbox: PostgresOutbox, clock: IReactorTime) -> None:
        self._leases = leases
        self._outbox = outbox
        self._clock = clock
        self._loop: LoopingCall | None = None
        self._stopped: Deferred[Any] | None = None
        self._failing = False
        self.stats = {"rounds": 0, "failures": 0, "taken": 0, "nodes": 0}

    def startService(self) -> None:
        super().startService()
        loop = self._loop = LoopingCall(self.round)
        loop.clock = self._clock
        self._stopped = loop.start(self._leases.lease / 3, now=True)

    def round(self) -> Deferred[int]:
        """
        One look at the leases.

        @return: How many events were taken (0 after a failure).
        """
        now = self._clock.seconds()
        me = self._outbox.node_id

        def lost(leases: list[NodeLease]) -> Deferred[tuple[list[str], int]] | tuple[list[str], int]:
            nodes = [lease.node_id for lease in leases if lease.node_id != me]
            if not nodes:
                return [], 0
            return self._outbox.take_over(nodes, now)

        d: Deferred[Any] = self._leases.expired(now).addCallback(lost)
        return d.addCallbacks(self._done, self._failed)

    def _done(self, result: tuple[list[str], int]) -> int:
        nodes, count = result
        self.stats["rounds"] += 1
        if count:
            self.stats["taken"] += count
            self.stats["nodes"] += len(nodes)
        if self._failing:
            self._failing = False
            self.log.info("Event takeover works again ({count} failed round(s))", count=self.stats["failures"])
        return count

    def _failed(self, reason: Failure) -> int:
        self.stats["failures"] += 1
        if not self._failing:
            self._failing = True
            self.log.error("Event takeover: looking for lost nodes failed: {reason}", reason=reason.getErrorMessage())
        return 0

    def stopService(self) -> Deferred[Any] | None:
        """
        Stop looking; fires once a round in progress finished.
        """
        super().stopService()
        loop, self._loop = self._loop, None
        stopped, self._stopped = self._stopped, None
        if loop is not None and loop.running:
            loop.stop()
        return stopped
