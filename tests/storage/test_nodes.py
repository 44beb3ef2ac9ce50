"""
Tests of L{aiconnect.storage.nodes}: the same lease contract on PostgreSQL
(a real server) and on a single node's SQLite events database, with
C{now} passed in; L{LeaseService} renewing on a L{Clock}, with the real
database calls in between.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from aiconnect.storage.nodes import LeaseService, NodeLease, SqlNodeLeases
from aiconnect.storage.schema import SQLITE_SHARED_STATE
from aiconnect.storage.sql import Runner, SqliteRunner
from tests.storage.pgserver import MigratedTestCase, wait_until

LEASE = 9.0
A = "http://127.0.0.2:8080"
B = "http://127.0.0.3:8080"


class LeasesContract:
    """
    What L{SqlNodeLeases} does on either database; the subclasses give
    C{runner}.
    """

    runner: Runner

    @inlineCallbacks
    def test_renew_and_expire(self) -> Any:
        """
        A renewal holds for C{lease} seconds from the C{now} given; a
        later renewal extends it; a node not renewed in time is expired.
        """
        leases = SqlNodeLeases(self.runner, LEASE)
        yield leases.renew("node-a", A, 100.0)
        yield leases.renew("node-b", B, 100.0)
        self.assertEqual((yield leases.live(100.0)), [NodeLease("node-a", A, 109.0), NodeLease("node-b", B, 109.0)])
        self.assertEqual((yield leases.expired(108.9)), [])
        yield leases.renew("node-a", A, 103.0)
        self.assertEqual((yield leases.expired(109.0)), [NodeLease("node-b", B, 109.0)])
        self.assertEqual((yield leases.live(109.0)), [NodeLease("node-a", A, 112.0)])

    @inlineCallbacks
    def test_release(self) -> Any:
        """
        A released lease is expired at once, marked as released; renewing
        takes it anew (after a restart) with a new API URL.
        """
        leases = SqlNodeLeases(self.runner, LEASE)
        yield leases.renew("node-a", A, 100.0)
        yield leases.release("node-a", 101.0)
        self.assertEqual((yield leases.expired(101.0)), [NodeLease("node-a", A, 101.0, released=101.0)])
        yield leases.renew("node-a", B, 102.0)
        self.assertEqual((yield leases.live(102.0)), [NodeLease("node-a", B, 111.0)])
        self.assertEqual((yield leases.expired(110.0)), [])

    @inlineCallbacks
    def test_service(self) -> Any:
        """
        L{LeaseService} renews at start and every C{lease / 3} seconds of
        its clock, each time from that clock's C{now}, and releases the
        lease when it stops.
        """
        clock = Clock()
        clock.advance(1000.0)
        leases = SqlNodeLeases(self.runner, LEASE)
        service = LeaseService(leases, "node-a", A, clock)
        service.startService()
        yield wait_until(lambda: service.valid_until == 1009.0)
        self.assertEqual((yield leases.live(1008.0)), [NodeLease("node-a", A, 1009.0)])
        clock.advance(LEASE / 3 - 0.5)
        self.assertEqual((yield leases.live(1002.5)), [NodeLease("node-a", A, 1009.0)])
        clock.advance(0.5)
        yield wait_until(lambda: service.valid_until == 1012.0)
        self.assertEqual((yield leases.expired(1011.0)), [])
        clock.advance(1.0)
        yield service.stopService()
        self.assertEqual((yield leases.expired(1004.0)), [NodeLease("node-a", A, 1004.0, released=1004.0)])
        self.assertEqual(clock.getDelayedCalls(), [])


class PostgresLeasesTests(LeasesContract, MigratedTestCase):
    """
    Node leases in PostgreSQL.
    """

    @inlineCallbacks
    def test_seen_by_other_nodes(self) -> Any:
        """
        One node's renewal is what another node's pool reads.
        """
        yield SqlNodeLeases(self.runner, LEASE).renew("node-a", A, 50.0)
        other = SqlNodeLeases(self.make_pool(), LEASE)
        self.assertEqual((yield other.expired(59.0)), [NodeLease("node-a", A, 59.0)])


class SqliteLeasesTests(LeasesContract, TestCase):
    """
    Node leases in a single node's events database.
    """

    def setUp(self) -> None:
        runner = SqliteRunner(os.path.join(self.mktemp(), "events.sqlite3"), SQLITE_SHARED_STATE)
        self.addCleanup(runner.close)
        self.runner = runner

    def test_failed_renewal(self) -> None:
        """
        A renewal that fails is counted and logged; the next one still
        comes, and succeeds once the database is back.
        """
        path = os.path.join(self.mktemp(), "other.sqlite3")
        runner = SqliteRunner(path, SQLITE_SHARED_STATE)
        leases = SqlNodeLeases(runner, LEASE)
        clock = Clock()
        service = LeaseService(leases, "node-a", A, clock)
        runner.close()
        service.startService()
        self.assertEqual((service.failures, service.valid_until), (1, 0.0))
        clock.advance(LEASE / 3)
        self.assertEqual(service.failures, 2)
        leases._runner = SqliteRunner(path, SQLITE_SHARED_STATE)
        self.addCleanup(leases._runner.close)  # type: ignore[attr-defined]
        clock.advance(LEASE / 3)
        self.assertEqual((service.failures, service.valid_until), (0, 2 * LEASE / 3 + LEASE))
        self.successResultOf(service.stopService())
