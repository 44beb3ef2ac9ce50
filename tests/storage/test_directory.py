"""
Tests of L{aiconnect.storage.directory}: the same session directory
contract on PostgreSQL (a real server) and on a single node's SQLite events
database; on PostgreSQL, two nodes claiming one session at once.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial.unittest import TestCase

from aiconnect.storage.directory import SessionOwner, SqlSessionDirectory
from aiconnect.storage.nodes import SqlNodeLeases
from aiconnect.storage.schema import SQLITE_SHARED_STATE
from aiconnect.storage.sql import Runner, SqliteRunner
from tests.storage.pgserver import MigratedTestCase

A = "http://127.0.0.2:8080"


class DirectoryContract:
    """
    What L{SqlSessionDirectory} does on either database; the subclasses
    give C{runner}.
    """

    runner: Runner

    @inlineCallbacks
    def test_claim_owner_release(self) -> Any:
        """
        A claimed session is owned by its node, with the API URL of the
        node's lease; a second claim by another node changes nothing; a
        released session has no owner.
        """
        yield SqlNodeLeases(self.runner, 10.0).renew("node-a", A, 0.0)
        directory = SqlSessionDirectory(self.runner)
        self.assertIsNone((yield directory.owner("s-1")))
        self.assertTrue((yield directory.claim("s-1", "node-a", "a.example.com", 5.0)))
        self.assertTrue((yield directory.claim("s-1", "node-a", "a.example.com", 5.0)))
        self.assertFalse((yield directory.claim("s-1", "node-b", "a.example.com", 6.0)))
        self.assertEqual((yield directory.owner("s-1")), SessionOwner("node-a", A))
        self.assertTrue((yield directory.release("s-1")))
        self.assertFalse((yield directory.release("s-1")))
        self.assertIsNone((yield directory.owner("s-1")))

    @inlineCallbacks
    def test_sessions_of(self) -> Any:
        """
        The sessions of one node, in id order; a node without a lease owns
        sessions too (its API URL is unknown).
        """
        directory = SqlSessionDirectory(self.runner)
        for session, node in (("s-3", "node-a"), ("s-1", "node-a"), ("s-2", "node-b")):
            yield directory.claim(session, node, "a.example.com", 1.0)
        self.assertEqual((yield directory.sessions_of("node-a")), ["s-1", "s-3"])
        self.assertEqual((yield directory.sessions_of("node-c")), [])
        self.assertEqual((yield directory.owner("s-2")), SessionOwner("node-b", ""))


class PostgresDirectoryTests(DirectoryContract, MigratedTestCase):
    """
    The session directory in PostgreSQL.
    """

    @inlineCallbacks
    def test_concurrent_claims(self) -> Any:
        """
        Two nodes claiming the same sessions at once (pools of their own):
        each session gets exactly one owner, the one its claim says.
        """
        directories = {"node-a": SqlSessionDirectory(self.runner), "node-b": SqlSessionDirectory(self.make_pool())}
        sessions = [f"s-{i}" for i in range(20)]
        claims = [(node, session, d.claim(session, node, "t", 1.0)) for session in sessions for node, d in directories.items()]
        won = yield gatherResults([c[2] for c in claims])
        winners = {session: node for (node, session, _), ok in zip(claims, won) if ok}
        self.assertEqual(sorted(winners), sorted(sessions))
        self.assertEqual(sum(won), len(sessions))
        rows = dict(self.query("SELECT session_id, node_id FROM session_directory"))
        self.assertEqual(rows, winners)


class SqliteDirectoryTests(DirectoryContract, TestCase):
    """
    The session directory in a single node's events database.
    """

    def setUp(self) -> None:
        runner = SqliteRunner(os.path.join(self.mktemp(), "events.sqlite3"), SQLITE_SHARED_STATE)
        self.addCleanup(runner.close)
        self.runner = runner
