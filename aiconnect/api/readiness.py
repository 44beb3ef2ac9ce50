# -*- test-case-name: tests.api.test_ready -*-
"""
The checks of C{GET /ready}: each is a zero-argument callable returning
L{None} when its part is ready, else a short text saying what is not.
L{service_checks} builds the service's: the SIP listeners, the API
listener, the events database (a real write, rolled back) and whether new
calls are taken (not draining).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["ReadinessCheck", "database_writable", "run_checks", "service_checks"]

#: A check: L{None} = ready, else what is not.
ReadinessCheck = Callable[[], "str | None"]

#: The table written (and rolled back: it never exists) by
#: L{database_writable}.
_PROBE_TABLE = "aiconnect_ready_probe"


def database_writable(connection: Callable[[], sqlite3.Connection]) -> str | None:
    """
    Whether the events database takes a write now: a table is created in
    a transaction (C{BEGIN IMMEDIATE}: the write lock; in a savepoint of
    the turn's transaction when one is open) and rolled back, so nothing
    stays.  A read-only file or directory, a lock held by another process
    or a closed database fail it.

    @param connection: Returns the database's connection
        (L{aiconnect.webhooks.database.EventDatabase.connection}).
    @return: L{None}, or the error.
    """
    try:
        db = connection()
        if db.in_transaction:
            db.execute("SAVEPOINT aiconnect_ready")
            try:
                db.execute("CREATE TABLE %s (x)" % (_PROBE_TABLE,))
            finally:
                db.execute("ROLLBACK TO aiconnect_ready")
                db.execute("RELEASE aiconnect_ready")
        else:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("CREATE TABLE %s (x)" % (_PROBE_TABLE,))
            finally:
                db.execute("ROLLBACK")
    except sqlite3.Error as e:
        return "not writable: %s" % (e,)
    return None


def run_checks(checks: Mapping[str, ReadinessCheck]) -> dict[str, str]:
    """
    Run every check.

    @return: Name -> C{"ok"} or what is not ready (a check that raises is
        not ready: C{"check failed: <exception>"}).
    """
    out: dict[str, str] = {}
    for name, check in checks.items():
        try:
            problem = check()
        except Exception as e:
            problem = "check failed: %s" % (type(e).__name__,)
        out[name] = "ok" if problem is None else problem
    return out


def service_checks(sip_config: Any, sip: Any, api_listener: Any, database: Any, srs: Any) -> dict[str, ReadinessCheck]:
    """
    The checks of the service (L{aiconnect.tap.build_service}).

    @param sip_config: The C{[sip]} section: each transport with a port
        there must be listening.
    @param sip: The L{aiconnect.tap.SipService} (running, its transport's
        bound ports).
    @param api_listener: The API's listener service (its C{port}), or
        L{None} when the API has no port of its own.
    @param database: The L{aiconnect.webhooks.database.EventDatabase}.
    @param srs: The L{aiconnect.siprec.srs.SrsService}: not draining.
    @return: C{sip}, C{api}, C{database}, C{calls} -> check.
    """

    def sip_ready() -> str | None:
        wanted = {"udp": sip_config.udp_port, "tcp": sip_config.tcp_port, "tls": sip_config.tls_port}
        down = [t for t, port in wanted.items() if port and sip.transport.port(t) is None]
        if not sip.running or down:
            return "not listening: %s" % (", ".join(down or ["udp", "tcp", "tls"]),)
        return None

    def api_ready() -> str | None:
        if api_listener is not None and api_listener.port is None:
            return "not listening"
        return None

    def calls_ready() -> str | None:
        return "draining: new INVITEs get 503" if srs.draining else None

    return {
        "sip": sip_ready,
        "api": api_ready,
        "database": lambda: database_writable(database.connection),
        "calls": calls_ready,
    }
