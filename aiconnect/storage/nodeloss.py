# -*- test-case-name: tests.storage.test_nodeloss -*-
"""
Node loss (SPEC s14): "a node that dies (kill -9) has its sessions closed
by a survivor (BYE to SRC and SRSs it can reach, SESSIONCOMPLETED with
reason nodeLost)".

Every node runs a L{NodeLossWatch}: every C{lease / 3} seconds it asks
for the expired leases (L{aiconnect.storage.nodes.NodeLeases.expired});
if another node's is among them, it claims that node's dialogs in one
transaction (L{aiconnect.storage.dialogs.claim_lost}: two survivors never
both get a session) and ends each claimed session with
L{aiconnect.recovery.SessionRecovery} (reason C{nodeLost}): BYE to the SRC
and each SRS, C{SIPRECFORWARDSTOPPED} and C{SESSIONCOMPLETED} through this
node's outbox, the rows forgotten.  Before it claims them it takes the
lost node's undelivered events over (L{PostgresOutbox.take_over}, in the
outbox's queue), so that a session's events owed by the lost node reach
the application before the ones ending it here (SPEC s5: "Order per
session is kept").  A node stopped cleanly released its
lease after its sessions ended and their dialogs were forgotten: it is not
looked at.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from aiconnect.recovery import SessionRecovery, StoredSession
from aiconnect.storage.dialogs import claim_lost
from aiconnect.storage.nodes import NodeLease, NodeLeases
from aiconnect.storage.sql import Runner

__all__ = ["NodeLossWatch"]


class NodeLossWatch:
    """
    Ends the sessions of lost nodes (module docstring).  A round still
    running delays the next; a failed round is logged (once per outage) and
    counted, the next one comes as usual.

    @ivar stats: C{rounds}, C{nodes} (lost nodes whose sessions this node
        claimed), C{sessions} (claimed and ended), C{errors} (failed
        rounds).
    """

    log = Logger()

    def __init__(
        self, leases: NodeLeases, runner: Runner, node_id: str, recovery: SessionRecovery, clock: Any,
        take_over: Callable[[list[str], float], Deferred[Any]] | None = None,
    ) -> None:
        """
        @param leases: The nodes' leases (their C{lease} sets the period).
        @param runner: The pool (the claims).
        @param node_id: This node (never lost to itself).
        @param recovery: Ends the claimed sessions (reason C{nodeLost}).
        @param clock: IReactorTime.
        @param take_over: Takes the lost nodes' undelivered events over
            into this node's outbox (C{PostgresOutbox.take_over}), first.
        """
        self._leases = leases
        self._runner = runner
        self.node_id = node_id
        self.recovery = recovery
        self._clock = clock
        self._take_over = take_over
        self._loop: LoopingCall | None = None
        self._stopped: Deferred[Any] | None = None
        self._failing = False
        self.stats = {"rounds": 0, "nodes": 0, "sessions": 0, "errors": 0}

    def start(self) -> None:
        """
        A round now, then every C{lease / 3} seconds.
        """
        loop = self._loop = LoopingCall(self.round)
        loop.clock = self._clock
        self._stopped = loop.start(self._leases.lease / 3, now=True)

    def stop(self) -> Deferred[Any]:
        """
        @return: Fires once the round in progress, if any, finished.
        """
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()
        stopped, self._stopped = self._stopped, None
        return succeed(None) if stopped is None else stopped

    def round(self) -> Deferred[None]:
        """
        One look at the leases; claim and end what lost nodes left (never
        fails).
        """
        now = self._clock.seconds()
        self.stats["rounds"] += 1
        looked: Deferred[Any] = self._leases.expired(now)
        looked.addCallback(self._claim, now)
        looked.addCallback(self._end)
        return looked.addErrback(self._failed)

    def _claim(self, expired: list[NodeLease], now: float) -> Deferred[dict[str, list[StoredSession]]] | dict[str, Any]:
        # A released lease is a clean stop: its sessions were ended then.
        lost = [lease.node_id for lease in expired if lease.node_id != self.node_id and lease.released is None]
        if not lost:
            return {}
        if self._take_over is None:
            return self._runner.runInteraction(claim_lost, lost, self.node_id, now)
        taken: Deferred[Any] = self._take_over(lost, now)
        return taken.addCallback(lambda _: self._runner.runInteraction(claim_lost, lost, self.node_id, now))

    def _end(self, claimed: dict[str, list[StoredSession]]) -> None:
        if self._failing:
            self._failing = False
            self.log.info("Node loss: looking for lost nodes works again")
        for lost_id, sessions in sorted(claimed.items()):
            self.stats["nodes"] += 1
            self.stats["sessions"] += len(sessions)
            self.log.warn(
                "Node loss: node {lost} is lost (its lease expired); ending its {count} session(s) here",
                lost=lost_id, count=len(sessions),
            )
            self.recovery.end(sessions, f"of lost node {lost_id}")

    def _failed(self, reason: Failure) -> None:
        self.stats["errors"] += 1
        if not self._failing:
            self._failing = True
            self.log.error(
                "Node loss: looking for lost nodes failed (tried again every {interval:g} s): {reason}",
                interval=self._leases.lease / 3, reason=reason.getErrorMessage(),
            )
