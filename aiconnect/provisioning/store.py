# -*- test-case-name: tests.provisioning.test_store -*-
"""
Where provisioned tenants live (SPEC s11): behind L{TenantStore}, one small
interface, so that another database can take the place of SQLite (the
scale-out issue puts PostgreSQL there) without the rest knowing.

L{SqliteTenantStore} keeps them in the events database (C{[events]
database}), one row per tenant holding its tenant object as JSON (secrets
included: the database file is as private as the configuration file).
Every write is its own transaction, committed before its Deferred fires:
an API answer of 200 means the change survives a restart, and a failed
write changes nothing.  The interface is asynchronous (each method returns
a Deferred) so that a networked database fits behind it without blocking
the reactor; SQLite answers at once (an already-fired Deferred).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.defer import Deferred

from aiconnect.webhooks.database import DatabaseUser, EventDatabase

__all__ = ["SqliteTenantStore", "TenantStore"]

_SCHEMA = """
    CREATE TABLE IF NOT EXISTS provisioned_tenants (
        domain TEXT PRIMARY KEY,
        document TEXT NOT NULL,
        updated REAL NOT NULL
    )
"""


class TenantStore(Protocol):
    """
    The storage interface of provisioned tenants.
    """

    def load(self) -> Deferred[list[dict[str, Any]]]:
        """
        @return: Every stored tenant object, in domain order.
        """

    def put(self, domain: str, document: dict[str, Any]) -> Deferred[None]:
        """
        Store (or replace) one tenant object, durably, before firing.

        @return: Fails if it could not be stored (nothing changed).
        """

    def delete(self, domain: str) -> Deferred[bool]:
        """
        Forget one tenant, durably, before firing.

        @return: Whether it was stored.
        """


class SqliteTenantStore(DatabaseUser):
    """
    L{TenantStore} on the events database's SQLite connection.
    """

    closed_message = "the tenant store is closed"

    def __init__(
        self, path: str | EventDatabase, *, clock: Callable[[], float], busy_timeout: float = 0.5
    ) -> None:
        """
        @param path: The database file (a connection of its own), or the
            shared L{EventDatabase}.
        @param clock: The current Unix time.
        @raise sqlite3.Error: If the database cannot be opened.
        """
        self._clock = clock
        self._join(path, self._set_up, "FULL", busy_timeout)

    def _set_up(self, database: EventDatabase) -> None:
        with database.transaction() as db:
            db.execute(_SCHEMA)

    def load(self) -> Deferred[list[dict[str, Any]]]:
        return defer.maybeDeferred(self._load)

    def put(self, domain: str, document: dict[str, Any]) -> Deferred[None]:
        return defer.maybeDeferred(self._put, domain, document)

    def delete(self, domain: str) -> Deferred[bool]:
        return defer.maybeDeferred(self._delete, domain)

    def _load(self) -> list[dict[str, Any]]:
        database = self._events_db()
        database.flush()
        rows = database.connection().execute("SELECT document FROM provisioned_tenants ORDER BY domain").fetchall()
        return [json.loads(row[0]) for row in rows]

    def _put(self, domain: str, document: dict[str, Any]) -> None:
        data = json.dumps(document, separators=(",", ":"), sort_keys=True)
        with self._events_db().transaction() as db:
            db.execute(
                "INSERT INTO provisioned_tenants (domain, document, updated) VALUES (?, ?, ?)"
                " ON CONFLICT (domain) DO UPDATE SET document = excluded.document, updated = excluded.updated",
                (domain, data, self._clock()),
            )

    def _delete(self, domain: str) -> bool:
        with self._events_db().transaction() as db:
            cursor = db.execute("DELETE FROM provisioned_tenants WHERE domain = ?", (domain,))
        return bool(cursor.rowcount)
