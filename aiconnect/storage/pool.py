# -*- test-case-name: tests.storage.test_schema -*-
"""
The PostgreSQL connection pool: psycopg 3 behind
L{twisted.enterprise.adbapi.ConnectionPool} (docs/storage.md, "Driver").

Every statement runs in one of the pool's threads on a connection of that
thread; the reactor thread only receives the L{Deferred}.  Each
C{runInteraction} is one transaction (committed before its L{Deferred}
fires, rolled back on an exception); a broken connection is dropped and
the next call opens a new one (C{cp_reconnect}).  Statements are bounded by
C{statement_timeout}, so that no pool thread waits forever and stopping the
pool (which joins its threads) is bounded too.
"""

from __future__ import annotations

from typing import Any

from twisted.enterprise.adbapi import ConnectionPool
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorCore

from aiconnect.storage.schema import migrate
from aiconnect.storage.url import check_url, is_postgresql

__all__ = ["connect_pool", "start_pool"]


def connect_pool(
    url: str,
    reactor: IReactorCore,
    *,
    application_name: str = "aiconnect",
    connections: int = 4,
    connect_timeout: int = 5,
    statement_timeout: float = 30.0,
) -> ConnectionPool:
    """
    A pool for a C{[database] url}; no connection is opened before the
    first call.

    @param url: A C{postgresql://} URI.
    @param reactor: The reactor the pool's L{Deferred}s fire on (its
        threads start when it runs, and stop when it shuts down).
    @param application_name: Shown in C{pg_stat_activity} (the node id).
    @param connections: The most connections (and threads) at once.
    @param connect_timeout: Seconds a connection attempt may take.
    @param statement_timeout: Seconds one statement may take.
    @raise ValueError: If C{url} is not a valid PostgreSQL URI (the
        message never holds the password).
    """
    check_url(url)
    if not is_postgresql(url):
        raise ValueError("not a PostgreSQL URI")
    milliseconds = int(statement_timeout * 1000)

    def on_connect(connection: Any) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, false)", (str(milliseconds),))
        connection.commit()

    pool = ConnectionPool(
        "psycopg",
        url,
        application_name=application_name,
        connect_timeout=connect_timeout,
        cp_reactor=reactor,
        cp_min=1,
        cp_max=connections,
        cp_reconnect=True,
        cp_noisy=False,
        cp_openfun=on_connect,
    )
    return pool


def start_pool(url: str, reactor: IReactorCore, *, node_id: str, now: float, **options: Any) -> Deferred[ConnectionPool]:
    """
    L{connect_pool}, then the schema migrations (L{migrate}).

    @param options: For L{connect_pool}.
    @return: The pool, once its database has this code's schema; on
        failure the pool is closed and the error passed on.
    @raise ValueError: As L{connect_pool}.
    """
    pool = connect_pool(url, reactor, application_name=f"aiconnect/{node_id}", **options)

    def failed(reason: Any) -> Any:
        pool.close()
        return reason

    started: Deferred[Any] = migrate(pool, now=now, node_id=node_id)
    return started.addCallbacks(lambda _: pool, failed)
