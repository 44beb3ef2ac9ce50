# -*- test-case-name: tests.storage.test_cluster -*-
"""
A node of a cluster (SPEC s14): what the running server does with
C{[database] url = "postgresql://..."} (docs/storage.md, "The running
server").

L{ClusterStorage} is the first child of the service tree.  Its start is
synchronous, like opening the SQLite events database: it connects, runs
the migrations and loads the provisioned tenants before the SIP and API
listeners start (a node never answers an INVITE with only the file's
tenants), and a database that cannot be reached stops start-up with one
line (L{aiconnect.tap.StartupError}).  Then, in the pool's threads:

    - the provisioning API stores tenants in PostgreSQL
      (L{SharedTenantStore});
    - a change made on another node is applied here within about a second:
      L{TenantWatch} polls a fingerprint of C{provisioned_tenants} and
      re-reads them when it changes;
    - this node's lease is renewed (L{aiconnect.storage.nodes.LeaseService})
      and released at a clean stop;
    - each session is claimed in the session directory at its start and
      released at its end (L{SessionClaims}), never delaying the call;
    - the dialogs of live sessions are kept in C{live_dialogs}
      (L{aiconnect.storage.dialogs}); those a previous run of this node
      left are read at start (its lease renewed first) and ended, reason
      C{restart}; those of a lost node are claimed and ended, reason
      C{nodeLost} (L{aiconnect.storage.nodeloss}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.enterprise.adbapi import ConnectionPool
from twisted.internet.defer import Deferred, DeferredList, fail, maybeDeferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from aiconnect.config import Config
from aiconnect.errors import AiconnectError
from aiconnect.provisioning import LiveConfig, Provisioning
from aiconnect.recovery import SessionRecovery, StoredSession
from aiconnect.storage.dialogs import PgDialogStore, take_left
from aiconnect.storage.directory import SqlSessionDirectory
from aiconnect.storage.nodeloss import NodeLossWatch
from aiconnect.storage.nodes import LeaseService, SqlNodeLeases
from aiconnect.storage.outbox import PostgresOutbox
from aiconnect.storage.pool import connect_pool
from aiconnect.storage.schema import migrate
from aiconnect.storage.sql import Cursor, Runner
from aiconnect.storage.takeover import TakeoverService
from aiconnect.storage.tenants import PostgresTenantStore
from aiconnect.storage.tenants import _load as load_tenants
from aiconnect.storage.url import redact_url

__all__ = ["POLL_INTERVAL", "ClusterStorage", "DatabaseUnavailable", "SessionClaims", "SharedTenantStore", "TenantWatch"]

#: Seconds between two looks at the provisioned tenants of the other nodes.
POLL_INTERVAL = 1.0
#: Seconds the start-up connection may take to open, and one statement.
CONNECT_TIMEOUT = 5
STATEMENT_TIMEOUT = 30.0


class DatabaseUnavailable(AiconnectError):
    """
    The shared database could not be opened at start: one line naming the
    key and the redacted URL.
    """


class _NotOpen(Exception):
    def __str__(self) -> str:
        return "the shared database is not open"


class _Blocking:
    """
    A L{Runner} on one blocking psycopg connection, for start-up only (the
    reactor does nothing else yet): each interaction is one transaction,
    and its L{Deferred} has fired when C{runInteraction} returns.
    """

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def runInteraction(self, interaction: Callable[..., Any], *args: Any, **kw: Any) -> Deferred[Any]:
        def run() -> Any:
            with self._connection.transaction(), self._connection.cursor() as cursor:
                return interaction(cursor, *args, **kw)

        return maybeDeferred(run)


def _result(deferred: Deferred[Any]) -> Any:
    """
    @return: The result of a fired L{Deferred} (its exception raised).
    """
    box: list[Any] = []
    deferred.addBoth(box.append)
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]


def _first_line(error: BaseException, secret: str | None) -> str:
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if secret:
        text = text.replace(secret, "***")
    return text


def _forget_sessions(cursor: Cursor, node_id: str) -> None:
    cursor.execute("DELETE FROM session_directory WHERE node_id = %s", (node_id,))


def open_database(
    url: str,
    node_id: str,
    now: float,
    at_start: Callable[[Runner], None] | None = None,
    loads: tuple[Callable[[Runner], Deferred[Any]], ...] = (),
) -> list[dict[str, Any]]:
    """
    Start-up (blocking, bounded by C{CONNECT_TIMEOUT} and
    C{STATEMENT_TIMEOUT}): connect, migrate, read the provisioned tenants,
    forget the sessions a previous run of this node left in the directory
    (a starting node owns none; L{aiconnect.recovery} ends them).

    @param at_start: Called with the blocking runner after the other reads
        (its interactions have run when C{runInteraction} returns).
    @param loads: More start-up reads, each given the connection's runner
        (the event outbox: L{PostgresOutbox.load}).
    @return: The stored tenant objects.
    @raise DatabaseUnavailable: One line, without the password.
    """
    where = f"database.url {redact_url(url)}"
    password = None
    try:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        password = conninfo_to_dict(url).get("password")
        with psycopg.connect(
            url,
            connect_timeout=CONNECT_TIMEOUT,
            application_name=f"aiconnect/{node_id}",
            options=f"-c statement_timeout={int(STATEMENT_TIMEOUT * 1000)}",
        ) as connection:
            runner = _Blocking(connection)
            _result(migrate(runner, now=now, node_id=node_id))  # type: ignore[arg-type]
            documents: list[dict[str, Any]] = _result(PostgresTenantStore(runner, clock=lambda: now).load())
            _result(runner.runInteraction(_forget_sessions, node_id))
            for load in loads:
                _result(load(runner))  # type: ignore[arg-type]
            if at_start is not None:
                at_start(runner)  # type: ignore[arg-type]
    except Exception as e:
        raise DatabaseUnavailable(f"{where}: {_first_line(e, password and str(password))}") from None
    return documents


class SharedTenantStore:
    """
    The provisioning store of a node (an L{AsyncTenantStore
    <aiconnect.storage.tenants.AsyncTenantStore>}): L{PostgresTenantStore}
    once the pool is open (a change before, or after the stop, answers
    503, "not stored").  It counts the writes in
    flight so that L{TenantWatch} never puts in force a read older than
    a change this node just made.

    @ivar generation: Writes started so far.
    @ivar in_flight: Writes not finished yet.
    """

    def __init__(self) -> None:
        self.store: PostgresTenantStore | None = None
        self.generation = 0
        self.in_flight = 0

    def _write(self, call: Callable[[PostgresTenantStore], Deferred[Any]]) -> Deferred[Any]:
        if self.store is None:
            return fail(_NotOpen())
        self.generation += 1
        self.in_flight += 1

        def done(result: Any) -> Any:
            self.in_flight -= 1
            return result

        return call(self.store).addBoth(done)

    def load(self) -> Deferred[list[dict[str, Any]]]:
        return fail(_NotOpen()) if self.store is None else self.store.load()

    def put(self, domain: str, document: dict[str, Any]) -> Deferred[None]:
        return self._write(lambda store: store.put(domain, document))

    def delete(self, domain: str) -> Deferred[bool]:
        return self._write(lambda store: store.delete(domain))


def _fingerprint(cursor: Cursor) -> str:
    # xmin changes with every insert or update of a row (a new row
    # version), a delete removes its domain: any change shows, whatever
    # the nodes' clocks say.
    cursor.execute(
        "SELECT md5(COALESCE(string_agg(domain || ' ' || xmin::text, ',' ORDER BY domain COLLATE \"C\"), ''))"
        " FROM provisioned_tenants"
    )
    return str(cursor.fetchone()[0])


def _changed_tenants(cursor: Cursor, seen: str | None) -> tuple[str, list[dict[str, Any]] | None]:
    """
    @return: The fingerprint, and the tenant objects if it is not C{seen}.
    """
    fingerprint = _fingerprint(cursor)
    if fingerprint == seen:
        return fingerprint, None
    return fingerprint, load_tenants(cursor)


class TenantWatch:
    """
    Puts in force the tenants other nodes provision: every
    L{POLL_INTERVAL} seconds one cheap query (a fingerprint of the
    domains and row versions); when it changed, the tenants are read and,
    if they differ from those in force, applied and logged once.

    Polling rather than C{LISTEN/NOTIFY}: no dedicated connection to keep
    and re-establish (notifications sent while it is down are lost, so a
    full read would be needed on each reconnection anyway), it heals by
    itself after a database outage, and its cost is bounded (one scan of
    at most 10,000 short rows a second); a change reaches every node
    within about a second, which provisioning can wait.
    """

    log = Logger()

    def __init__(self, runner: Runner, store: SharedTenantStore, live: LiveConfig, clock: Any) -> None:
        self._runner = runner
        self._store = store
        self._live = live
        self._clock = clock
        self._seen: str | None = None
        self._failing = False
        self._loop: LoopingCall | None = None
        self._stopped: Deferred[Any] | None = None

    def start(self, interval: float = POLL_INTERVAL) -> None:
        loop = self._loop = LoopingCall(self.poll)
        loop.clock = self._clock
        self._stopped = loop.start(interval, now=False)

    def stop(self) -> Deferred[Any]:
        """
        @return: Fires once the poll in progress, if any, finished.
        """
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()
        stopped, self._stopped = self._stopped, None
        return succeed(None) if stopped is None else stopped

    def poll(self) -> Deferred[None]:
        """
        One look (never fails: a failure is logged once per outage).
        """
        generation = None if self._store.in_flight else self._store.generation
        polled = self._runner.runInteraction(_changed_tenants, self._seen)
        return polled.addCallback(self._polled, generation).addErrback(self._failed)

    def _failed(self, reason: Failure) -> None:
        if not self._failing:
            self._failing = True
            self.log.error(
                "Provisioning: reading the shared tenants failed (retried every {interval:g} s): {reason}",
                interval=POLL_INTERVAL, reason=reason.getErrorMessage(),
            )

    def _polled(self, result: tuple[str, list[dict[str, Any]] | None], generation: int | None) -> None:
        if self._failing:
            self._failing = False
            self.log.info("Provisioning: reading the shared tenants works again")
        fingerprint, documents = result
        if documents is None:
            return
        if generation is None or generation != self._store.generation:
            # A change of ours started during the read: it may be older
            # than that change; the next poll reads again.
            return
        self._seen = fingerprint
        live = self._live
        tenants = {t.domain: t for t in Provisioning.stored_tenants(documents, live.file)}
        old = live.provisioned
        if tenants == old:
            return
        live.apply(provisioned=tenants)
        parts = [
            f"{label}: {', '.join(names)}"
            for label, names in (
                ("added", sorted(set(tenants) - set(old))),
                ("removed", sorted(set(old) - set(tenants))),
                ("changed", sorted(d for d in set(old) & set(tenants) if old[d] != tenants[d])),
            )
            if names
        ]
        self.log.info("Provisioning: tenants changed on another node, applied ({what})", what="; ".join(parts))


class SessionClaims:
    """
    The registry's directory hook (L{aiconnect.registry.CallRegistry}
    C{directory}): claims each session in the session directory when it
    starts and releases it when it ends, in the pool's threads; the call
    never waits.  A session's release runs after its claim.  A failure is
    logged (the first of a run, then when it works again) and counted.

    @ivar failures: Failed claims and releases.
    """

    log = Logger()

    def __init__(self, directory: SqlSessionDirectory, node_id: str, clock: Any) -> None:
        self._directory = directory
        self._node_id = node_id
        self._clock = clock
        self._claims: dict[str, Deferred[Any]] = {}
        self._pending: set[Deferred[Any]] = set()
        self._failing = False
        self.failures = 0

    def _track(self, deferred: Deferred[Any], what: str, session_id: str) -> Deferred[Any]:
        deferred.addCallbacks(self._worked, self._failed, errbackArgs=(what, session_id))
        self._pending.add(deferred)
        deferred.addBoth(lambda _: self._pending.discard(deferred))
        return deferred

    def _worked(self, _: object) -> None:
        if self._failing:
            self._failing = False
            self.log.info("Session directory: writes work again ({count} failed)", count=self.failures)

    def _failed(self, reason: Failure, what: str, session_id: str) -> None:
        self.failures += 1
        if not self._failing:
            self._failing = True
            self.log.error(
                "Session directory: {what} of session {session_id} failed (the call goes on): {reason}",
                what=what, session_id=session_id, reason=reason.getErrorMessage(),
            )

    def session_started(self, session_id: str, tenant: str) -> None:
        claimed = self._directory.claim(session_id, self._node_id, tenant, self._clock.seconds())
        self._claims[session_id] = self._track(claimed, "claim", session_id)

        def settled(_: object) -> None:
            if self._claims.get(session_id) is claimed:
                del self._claims[session_id]

        claimed.addBoth(settled)

    def session_ended(self, session_id: str) -> None:
        claim = self._claims.pop(session_id, None)
        if claim is None:
            self._track(self._directory.release(session_id), "release", session_id)
            return
        released: Deferred[Any] = Deferred()
        claim.addBoth(lambda _: self._directory.release(session_id).chainDeferred(released))
        self._track(released, "release", session_id)

    def drained(self) -> Deferred[Any]:
        """
        @return: Fires once every claim and release issued so far finished.
        """
        return DeferredList(list(self._pending))


class ClusterStorage(Service):
    """
    The C{cluster} service (see the module docstring): started first,
    stopped after the drain (L{aiconnect.tap.AiconnectService}).

    @ivar tenant_store: The provisioning store (L{SharedTenantStore}).
    @ivar pool: The connection pool while running.
    @ivar leases: The L{LeaseService} while running.
    @ivar claims: The L{SessionClaims} while running.
    @ivar dialogs: The dialog store (L{PgDialogStore}), set by
        L{aiconnect.tap.build_service}, or L{None}: written through the
        pool while running; at start it gets the dialogs the previous run
        left (read after this node's lease is renewed).
    @ivar lost_recovery: Ends the sessions of lost nodes
        (L{aiconnect.recovery.SessionRecovery}, reason C{nodeLost}), set
        by L{aiconnect.tap.build_service}, or L{None}.
    @ivar node_loss: The L{NodeLossWatch} while running.
    """

    name = "cluster"
    log = Logger()

    def __init__(self, cfg: Config, reactor: Any, live: LiveConfig, registry: Any) -> None:
        self._cfg = cfg
        self._reactor = reactor
        self._live = live
        self._registry = registry
        self.tenant_store = SharedTenantStore()
        self.pool: ConnectionPool | None = None
        self.leases: LeaseService | None = None
        self.claims: SessionClaims | None = None
        self.watch: TenantWatch | None = None
        self.dialogs: PgDialogStore | None = None
        self.lost_recovery: SessionRecovery | None = None
        self.node_loss: NodeLossWatch | None = None
        #: The event outbox (L{aiconnect.tap} sets it) and the takeover of
        #: lost nodes' events.
        self.outbox: PostgresOutbox | None = None
        self.takeover: TakeoverService | None = None

    def startService(self) -> None:
        cfg, reactor = self._cfg, self._reactor
        url, node_id = cfg.database.url, cfg.node.id
        left: list[StoredSession] = []

        def take(runner: Runner) -> None:
            # This node's lease renewed, then what its previous run left.
            left.extend(_result(runner.runInteraction(take_left, node_id, cfg.node.api_url, reactor.seconds(), cfg.cluster.lease)))

        now, outbox = reactor.seconds(), self.outbox
        loads = () if outbox is None else (
            lambda runner: outbox.load(runner, now=now, api_url=cfg.node.api_url, lease=cfg.cluster.lease),
        )
        documents = open_database(url, node_id, now, None if self.dialogs is None else take, loads)
        self._live.apply(provisioned={t.domain: t for t in Provisioning.stored_tenants(documents, self._live.file)})
        super().startService()
        pool = self.pool = connect_pool(
            url, reactor, application_name=f"aiconnect/{node_id}", connect_timeout=CONNECT_TIMEOUT,
            statement_timeout=STATEMENT_TIMEOUT,
        )
        self.tenant_store.store = PostgresTenantStore(pool, clock=reactor.seconds)
        self.watch = TenantWatch(pool, self.tenant_store, self._live, reactor)
        self.watch.start()
        self.claims = SessionClaims(SqlSessionDirectory(pool), node_id, reactor)
        self._registry.directory = self.claims
        self.leases = LeaseService(SqlNodeLeases(pool, cfg.cluster.lease), node_id, cfg.node.api_url, reactor)
        self.leases.startService()
        if self.dialogs is not None:
            self.dialogs.open(pool, left)
        if outbox is not None:
            outbox.attach(pool)
            self.takeover = TakeoverService(SqlNodeLeases(pool, cfg.cluster.lease), outbox, reactor)
            self.takeover.startService()
        if self.lost_recovery is not None:
            # A lost node's events are taken over before its sessions end.
            self.node_loss = NodeLossWatch(
                SqlNodeLeases(pool, cfg.cluster.lease), pool, node_id, self.lost_recovery, reactor,
                None if outbox is None else outbox.take_over,
            )
            self.node_loss.start()
        self.log.info(
            "Cluster: node {node_id} on {url}, {count} provisioned tenants loaded",
            node_id=node_id, url=redact_url(url), count=len(documents),
        )

    async def _stop(self) -> None:
        if self.watch is not None:
            await self.watch.stop()
        if self.node_loss is not None:
            await self.node_loss.stop()
        if self.dialogs is not None:
            # Written before the lease is released: a released lease
            # leaves nothing for a survivor to end.
            await self.dialogs.drained()
        if self.takeover is not None:
            await maybeDeferred(self.takeover.stopService)
        if self.outbox is not None:
            await self.outbox.drained()
        if self.leases is not None:
            await maybeDeferred(self.leases.stopService)
        if self.claims is not None:
            await self.claims.drained()
        if self.dialogs is not None:
            self.dialogs.close()
        self.tenant_store.store = None
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.close()

    def stopService(self) -> Deferred[None]:
        """
        Stop polling, release the lease, wait for the directory writes,
        close the pool.
        """
        super().stopService()
        return Deferred.fromCoroutine(self._stop())
