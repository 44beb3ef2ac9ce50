# -*- test-case-name: tests.storage.test_tenants -*-
"""
Provisioned tenants behind an asynchronous interface, L{AsyncTenantStore}
(SPEC s11, s14): L{PostgresTenantStore} shares them between nodes;
L{SyncTenantStoreAdapter} puts the single node's
L{aiconnect.provisioning.store.SqliteTenantStore} behind the same
interface.  The documents are the tenant objects of the provisioning API,
as the SQLite store keeps them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred, maybeDeferred

from aiconnect.provisioning.store import TenantStore
from aiconnect.storage.sql import Cursor, Runner

__all__ = ["AsyncTenantStore", "PostgresTenantStore", "SyncTenantStoreAdapter"]


class AsyncTenantStore(Protocol):
    """
    The storage interface of provisioned tenants, asynchronous: each call
    returns a L{Deferred} that fires once the change is durable.
    """

    def load(self) -> Deferred[list[dict[str, Any]]]:
        """
        @return: Every stored tenant object, in domain order (bytewise).
        """

    def put(self, domain: str, document: dict[str, Any]) -> Deferred[None]:
        """
        Store (or replace) one tenant object.

        @return: Fires once it is durable; fails if it could not be stored
            (nothing changed).
        """

    def delete(self, domain: str) -> Deferred[bool]:
        """
        Forget one tenant.

        @return: Whether it was stored, once the deletion is durable.
        """


class SyncTenantStoreAdapter:
    """
    L{AsyncTenantStore} over a synchronous L{TenantStore}: each call runs
    at once on the calling (reactor) thread, as the SQLite store needs,
    and its result or exception comes back as a fired L{Deferred}.
    """

    def __init__(self, store: TenantStore) -> None:
        self.store = store

    def load(self) -> Deferred[list[dict[str, Any]]]:
        return maybeDeferred(self.store.load)

    def put(self, domain: str, document: dict[str, Any]) -> Deferred[None]:
        return maybeDeferred(self.store.put, domain, document)

    def delete(self, domain: str) -> Deferred[bool]:
        return maybeDeferred(self.store.delete, domain)


def _load(cursor: Cursor) -> list[dict[str, Any]]:
    cursor.execute('SELECT document::text FROM provisioned_tenants ORDER BY domain COLLATE "C"')
    return [json.loads(row[0]) for row in cursor.fetchall()]


def _delete(cursor: Cursor, domain: str) -> bool:
    cursor.execute("DELETE FROM provisioned_tenants WHERE domain = %s", (domain,))
    return cursor.rowcount > 0


class PostgresTenantStore:
    """
    L{AsyncTenantStore} in the C{provisioned_tenants} table of the shared
    PostgreSQL database (C{document} as C{jsonb}); each call is one
    transaction in the pool, committed before its L{Deferred} fires.
    """

    def __init__(self, pool: Runner, *, clock: Callable[[], float]) -> None:
        """
        @param pool: The L{aiconnect.storage.pool.connect_pool} pool.
        @param clock: The current Unix time (C{updated}).
        """
        self._pool = pool
        self._clock = clock

    def load(self) -> Deferred[list[dict[str, Any]]]:
        return self._pool.runInteraction(_load)

    def put(self, domain: str, document: dict[str, Any]) -> Deferred[None]:
        data = json.dumps(document, separators=(",", ":"), sort_keys=True)
        return self._pool.runInteraction(self._put, domain, data, self._clock())

    @staticmethod
    def _put(cursor: Cursor, domain: str, data: str, now: float) -> None:
        cursor.execute(
            "INSERT INTO provisioned_tenants (domain, document, updated) VALUES (%s, %s::jsonb, %s)"
            " ON CONFLICT (domain) DO UPDATE SET document = excluded.document, updated = excluded.updated",
            (domain, data, now),
        )

    def delete(self, domain: str) -> Deferred[bool]:
        return self._pool.runInteraction(_delete, domain)
