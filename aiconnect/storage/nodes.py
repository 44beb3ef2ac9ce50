# -*- test-case-name: tests.storage.test_nodes -*-
"""
Node leases (SPEC s14): each node keeps a row C{(node_id, api_url,
expires)} renewed every C{lease / 3} seconds by its L{LeaseService}; a node
whose row expired is lost (or stopped: L{NodeLeases.release} expires it at
once), and a survivor takes over what it owned (a later step).

Times are Unix seconds passed in by the caller (C{reactor.seconds()}):
L{SqlNodeLeases} reads no clock, so the tests drive it with any C{now},
and the nodes' clocks must agree (NTP) to well within a lease.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from aiconnect.storage.sql import Cursor, Runner

__all__ = ["LeaseService", "NodeLease", "NodeLeases", "SqlNodeLeases"]


@dataclass(frozen=True, slots=True, order=True)
class NodeLease:
    """
    One node's lease.

    @ivar node_id: The node (C{[node] id}).
    @ivar api_url: Its REST API (C{[node] api_url}).
    @ivar expires: When it counts as lost unless renewed (Unix seconds).
    @ivar released: When it stopped cleanly (released its lease), or
        L{None}.
    """

    node_id: str
    api_url: str
    expires: float
    released: float | None = None


class NodeLeases(Protocol):
    """
    The nodes' leases.

    @ivar lease: Seconds a renewal holds.
    """

    lease: float

    def renew(self, node_id: str, api_url: str, now: float) -> Deferred[None]:
        """
        Hold C{node_id}'s lease until C{now + lease} (taken anew after a
        release).
        """

    def release(self, node_id: str, now: float) -> Deferred[None]:
        """
        End C{node_id}'s lease at C{now} (a clean stop): it counts as
        expired from then on.
        """

    def expired(self, now: float) -> Deferred[list[NodeLease]]:
        """
        @return: The leases with C{expires <= now}, by node id.
        """

    def live(self, now: float) -> Deferred[list[NodeLease]]:
        """
        @return: The leases with C{expires > now}, by node id.
        """


_COLUMNS = "SELECT node_id, api_url, expires, released FROM node_leases"


def _leases(cursor: Cursor, condition: str, now: float) -> list[NodeLease]:
    cursor.execute(f"{_COLUMNS} WHERE {condition}", (now,))
    rows = cursor.fetchall()
    # Sorted here: the databases' text orders differ (collations).
    return sorted(NodeLease(str(r[0]), str(r[1]), float(r[2]), None if r[3] is None else float(r[3])) for r in rows)


def _renew(cursor: Cursor, node_id: str, api_url: str, now: float, expires: float) -> None:
    cursor.execute(
        "INSERT INTO node_leases (node_id, api_url, renewed, expires, released) VALUES (%s, %s, %s, %s, NULL)"
        " ON CONFLICT (node_id) DO UPDATE SET api_url = excluded.api_url, renewed = excluded.renewed,"
        " expires = excluded.expires, released = NULL",
        (node_id, api_url, now, expires),
    )


def _release(cursor: Cursor, node_id: str, now: float) -> None:
    cursor.execute("UPDATE node_leases SET expires = %s, released = %s WHERE node_id = %s", (now, now, node_id))


class SqlNodeLeases:
    """
    L{NodeLeases} in the C{node_leases} table: of the shared PostgreSQL
    database (the pool as C{runner}), or of a single node's events database
    (an L{aiconnect.storage.sql.SqliteRunner}).
    """

    def __init__(self, runner: Runner, lease: float) -> None:
        """
        @param lease: C{[cluster] lease}.
        """
        self._runner = runner
        self.lease = lease

    def renew(self, node_id: str, api_url: str, now: float) -> Deferred[None]:
        return self._runner.runInteraction(_renew, node_id, api_url, now, now + self.lease)

    def release(self, node_id: str, now: float) -> Deferred[None]:
        return self._runner.runInteraction(_release, node_id, now)

    def expired(self, now: float) -> Deferred[list[NodeLease]]:
        return self._runner.runInteraction(_leases, "expires <= %s", now)

    def live(self, now: float) -> Deferred[list[NodeLease]]:
        return self._runner.runInteraction(_leases, "expires > %s", now)


class LeaseService(Service):
    """
    Keeps this node's lease: renews it at start and every C{lease / 3}
    seconds (a renewal still running delays the next one), and releases it
    at a clean stop.  A failed renewal is logged and counted; the next one
    comes as usual.

    @ivar valid_until: Until when the last successful renewal holds (Unix
        seconds; 0 before the first).
    @ivar failures: Failed renewals, in a row.
    """

    log = Logger()

    def __init__(self, leases: NodeLeases, node_id: str, api_url: str, clock: IReactorTime) -> None:
        self._leases = leases
        self.node_id = node_id
        self.api_url = api_url
        self._clock = clock
        self._loop: LoopingCall | None = None
        self._stopped: Deferred[Any] | None = None
        self.valid_until = 0.0
        self.failures = 0

    def startService(self) -> None:
        super().startService()
        loop = self._loop = LoopingCall(self._renew)
        loop.clock = self._clock
        self._stopped = loop.start(self._leases.lease / 3, now=True)

    def _renew(self) -> Deferred[None]:
        now = self._clock.seconds()
        renewed = self._leases.renew(self.node_id, self.api_url, now)
        renewed.addCallbacks(self._renewed, self._failed, callbackArgs=(now,))
        return renewed

    def _renewed(self, _: object, now: float) -> None:
        self.valid_until = now + self._leases.lease
        self.failures = 0

    def _failed(self, reason: Any) -> None:
        self.failures += 1
        self.log.error(
            "Node {node_id}: renewing the lease failed ({count} in a row): {reason}",
            node_id=self.node_id,
            count=self.failures,
            reason=reason.getErrorMessage(),
        )

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        loop, self._loop = self._loop, None
        stopped, self._stopped = self._stopped, None
        if loop is None or stopped is None:
            return None
        if loop.running:
            loop.stop()

        def release(_: object) -> Deferred[None]:
            return self._leases.release(self.node_id, self._clock.seconds())

        return stopped.addCallback(release).addErrback(self._failed)
