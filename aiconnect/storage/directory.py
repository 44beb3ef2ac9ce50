# -*- test-case-name: tests.storage.test_directory -*-
"""
The session directory (SPEC s14): which node owns each live session, so
that a REST request reaching any node can be passed to the owner (a later
step), and a survivor knows the sessions of a lost node.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from twisted.internet.defer import Deferred

from aiconnect.storage.sql import Cursor, Runner

__all__ = ["SessionDirectory", "SessionOwner", "SqlSessionDirectory"]


class SessionOwner(NamedTuple):
    """
    The node owning a session.

    @ivar node_id: Its id.
    @ivar api_url: Its REST API, from its lease (C{""} if it has none).
    """

    node_id: str
    api_url: str


class SessionDirectory(Protocol):
    """
    Session id -> owning node.
    """

    def claim(self, session_id: str, node_id: str, tenant: str, now: float) -> Deferred[bool]:
        """
        Record C{node_id} as the owner of a new session.

        @return: Whether C{node_id} owns it (C{False}: another node did
            already; nothing changed).
        """

    def release(self, session_id: str) -> Deferred[bool]:
        """
        Forget a session (it ended).

        @return: Whether it was recorded.
        """

    def owner(self, session_id: str) -> Deferred[SessionOwner | None]:
        """
        @return: The owner, or L{None} for a session not recorded.
        """

    def sessions_of(self, node_id: str) -> Deferred[list[str]]:
        """
        @return: The sessions C{node_id} owns, in id order.
        """


def _claim(cursor: Cursor, session_id: str, node_id: str, tenant: str, now: float) -> bool:
    cursor.execute(
        "INSERT INTO session_directory (session_id, node_id, tenant, started) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (session_id) DO NOTHING",
        (session_id, node_id, tenant, now),
    )
    cursor.execute("SELECT node_id FROM session_directory WHERE session_id = %s", (session_id,))
    row = cursor.fetchone()
    return row is not None and row[0] == node_id


def _release(cursor: Cursor, session_id: str) -> bool:
    cursor.execute("DELETE FROM session_directory WHERE session_id = %s", (session_id,))
    return cursor.rowcount > 0


def _owner(cursor: Cursor, session_id: str) -> SessionOwner | None:
    cursor.execute(
        "SELECT s.node_id, COALESCE(n.api_url, '') FROM session_directory s"
        " LEFT JOIN node_leases n ON n.node_id = s.node_id WHERE s.session_id = %s",
        (session_id,),
    )
    row = cursor.fetchone()
    return None if row is None else SessionOwner(str(row[0]), str(row[1]))


def _sessions_of(cursor: Cursor, node_id: str) -> list[str]:
    cursor.execute("SELECT session_id FROM session_directory WHERE node_id = %s", (node_id,))
    # Sorted here: the databases' text orders differ (collations).
    return sorted(str(row[0]) for row in cursor.fetchall())


class SqlSessionDirectory:
    """
    L{SessionDirectory} in the C{session_directory} table: of the shared
    PostgreSQL database (the pool as C{runner}), or of a single node's
    events database (an L{aiconnect.storage.sql.SqliteRunner}).
    """

    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    def claim(self, session_id: str, node_id: str, tenant: str, now: float) -> Deferred[bool]:
        return self._runner.runInteraction(_claim, session_id, node_id, tenant, now)

    def release(self, session_id: str) -> Deferred[bool]:
        return self._runner.runInteraction(_release, session_id)

    def owner(self, session_id: str) -> Deferred[SessionOwner | None]:
        return self._runner.runInteraction(_owner, session_id)

    def sessions_of(self, node_id: str) -> Deferred[list[str]]:
        return self._runner.runInteraction(_sessions_of, node_id)
