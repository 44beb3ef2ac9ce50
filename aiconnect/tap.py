# -*- test-case-name: tests.integration.test_sip_service,tests.test_tap,tests.integration.test_trunk_health -*-
"""
The composition root: C{twistd -n aiconnect --config etc/aiconnect.toml}.

Only this module reads the configuration file and touches the global
reactor; every component gets its typed sub-configuration and the reactor
as arguments.
"""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from twisted.application import service
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.server import Site

from aiconnect import __version__, gctune, logsetup
from aiconnect import config as config_mod
from aiconnect.errors import AiconnectError, ConfigError
from aiconnect.sip.transport import SipTransport
from aiconnect.sip.txlayer import TransactionLayer
from aiconnect.sip.ua import InviteHandler, UaConfig, UserAgent


class StartupError(AiconnectError):
    """
    The server cannot start (a port it must listen on is taken, a file it
    must write cannot be): one line, naming the configuration key.
    """


#: What a listener's C{errno} means, in an operator's words.
_LISTEN_ERRORS = {
    errno.EADDRINUSE: "address already in use",
    errno.EACCES: "permission denied (a port below 1024 needs root or CAP_NET_BIND_SERVICE)",
    errno.EADDRNOTAVAIL: "address not available on this host",
}


def listen(key: str, port: int, host: str, start: Callable[[int], Any]) -> Any:
    """
    Listen through C{start(port)}; a failure becomes one line naming the
    configuration key: C{sip.udp_port 5060: address already in use}.

    @param key: The dotted configuration key of the port.
    @param port: The configured port.
    @param host: The configured address, for the message.
    @param start: Binds the port and returns the listening port object.
    @return: What C{start} returned.
    @raise StartupError: If the port cannot be bound.
    """
    try:
        return start(port)
    except CannotListenError as e:
        error = e.socketError
        code = getattr(error, "errno", None)
        what = _LISTEN_ERRORS.get(code) or (getattr(error, "strerror", None) or str(error)).lower()
        raise StartupError(f"{key} {port}: {what} ({host})") from None


class Options(usage.Options):
    """
    Command-line options of the C{aiconnect} twistd plugin.

    An invalid configuration stops twistd with one line on standard error
    and status 1 (not twistd's usage text). Under twistd the plugin also
    hands twistd the log observer of the C{[log]} table (unless
    C{--logger} names one) and makes start-up errors one line
    (L{one_line_errors}).
    """

    optParameters = [
        ["config", "c", "etc/aiconnect.toml", "Path to the TOML configuration file."],
        [
            "check-config",
            None,
            None,
            "Validate FILE as start-up would (TLS files, JWT keys) without binding anything; "
            "print 'FILE: OK' and exit 0, or the error and exit 1.",
        ],
    ]

    def postOptions(self) -> None:
        if self["check-config"] is not None:
            ok, line = check_config(self["check-config"])
            (sys.stdout if ok else sys.stderr).write(line + "\n")
            raise SystemExit(0 if ok else 1)
        try:
            cfg = config_mod.load(self["config"])
        except ConfigError as e:
            # One line and status 1; a UsageError would make twistd print
            # its whole usage text first.
            raise SystemExit(str(e)) from None
        self["parsed_config"] = cfg
        server_options = getattr(self, "parent", None)
        if server_options is not None:
            self._adopt_twistd(server_options, cfg)

    def _adopt_twistd(self, server_options: Any, cfg: config_mod.Config) -> None:
        """
        Running under twistd (whose options are C{server_options}): the
        C{[log]} observer unless C{--logger} names one, one-line start-up
        errors.
        """
        if not server_options.get("logger"):
            try:
                server_options["logger"] = logsetup.for_twistd(
                    server_options, cfg.log.format, cfg.log.level, _call_from_thread
                )
            except ValueError as e:
                raise SystemExit(f"log: {e}") from None
        sys.excepthook = one_line_errors(sys.excepthook)


def _call_from_thread(f: Callable[[], Any]) -> None:
    """
    C{f} on the reactor twistd installed (looked up when called).
    """
    from twisted.internet import reactor

    reactor.callFromThread(f)


def one_line_errors(fallback: Callable[..., Any]) -> Callable[..., Any]:
    """
    A C{sys.excepthook} writing an L{AiconnectError} (an invalid
    configuration found while building the service, a port already in use)
    as its one line on the process's real standard error (twistd redirected
    C{sys.stderr} into the log by then), instead of a traceback; any other
    exception goes to C{fallback}. twistd exits with status 1 either way.

    @param fallback: The previous hook.
    @return: The hook.
    """

    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if not isinstance(value, AiconnectError):
            fallback(kind, value, tb)
            return
        stream = sys.__stderr__ or sys.stderr
        stream.write(str(value).splitlines()[0] + "\n")
        stream.flush()

    return hook


def check_config(path: str) -> tuple[bool, str]:
    """
    Validate a configuration file as start-up would, binding nothing and
    writing nothing (C{twistd aiconnect --check-config FILE},
    C{python -m aiconnect check FILE}; like C{kamailio -c}): the TOML and
    every key, the TLS certificate and key (when SIP TLS is on and they
    exist; when neither exists start-up creates a self-signed pair), the
    CA bundle for outbound TLS, and every tenant's JWT public key.

    @param path: The file.
    @return: C{(True, "FILE: OK ...")} or C{(False, "FILE: <error>")}.
    """
    from aiconnect import tlsutil
    from aiconnect.api.auth import load_jwt_keys

    note = ""
    try:
        cfg = config_mod.load(path)
        tls = cfg.tls
        if cfg.sip.tls_port:
            present = [os.path.exists(tls.certificate), os.path.exists(tls.private_key)]
            if all(present):
                tlsutil.server_context_factory(tls)
            elif any(present):
                have, lack = (tls.certificate, tls.private_key) if present[0] else (tls.private_key, tls.certificate)
                raise ConfigError("tls.certificate", f"{have} exists but {lack} does not")
            else:
                note = f" (start-up will create a self-signed certificate {tls.certificate})"
        # The outbound trust store (tls.ca_certificates), as a forward
        # to a TLS trunk would load it.
        tlsutil.client_context_factory("localhost", tls)
        load_jwt_keys(cfg)
    except AiconnectError as e:
        return False, f"{path}: {e}"
    return True, f"{path}: OK{note}"


class SipService(service.Service):
    """
    The SIP stack: transport listeners, transaction layer and UA core.

    @ivar transport: the L{SipTransport}.
    @ivar txlayer: the L{TransactionLayer}.
    @ivar ua: the L{UserAgent}.
    """

    log = Logger()

    def __init__(self, cfg: config_mod.Config, reactor: Any, invite_handler: InviteHandler | None = None) -> None:
        self.name = "sip"
        self._cfg = cfg
        self._reactor = reactor
        sip = cfg.sip
        from aiconnect import tlsutil

        server_ctx = None
        # Outbound TLS (forwards to TLS trunks) is possible whether or not we
        # listen for TLS ourselves.
        client_creator = lambda name: tlsutil.client_context_factory(name, cfg.tls)  # noqa: E731
        #: Whether start-up created a self-signed certificate (reported by
        #: L{StartupLog}).
        self.created_certificate = False
        if sip.tls_port:
            self.created_certificate = tlsutil.ensure_self_signed(
                cfg.tls.certificate, cfg.tls.private_key, _loopback_names(sip)
            )
            server_ctx = tlsutil.server_context_factory(cfg.tls)
        self.transport = SipTransport(
            reactor,
            host=sip.host,
            public_address=sip.public_address,
            private_address=sip.private_address,
            max_size=sip.max_message_size,
            tls_server_context=server_ctx,
            tls_client_creator=client_creator,
            force_rport=sip.force_rport,
            limits=cfg.limits.connections,
        )
        timers = sip.timers
        self.ua = UserAgent(
            reactor,
            self.transport,
            invite_handler=invite_handler,
            config=UaConfig(user_agent="aiconnect/" + __version__, t1=timers.t1, t2=timers.t2),
        )
        self.txlayer = TransactionLayer(reactor, self.transport, self.ua, timers)
        self.ua.txlayer = self.txlayer
        self.transport.receiver = self.txlayer

    def startService(self) -> None:
        service.Service.startService(self)
        sip = self._cfg.sip
        if sip.udp_port:
            listen("sip.udp_port", sip.udp_port, sip.host, self.transport.listen_udp)
        if sip.tcp_port:
            listen("sip.tcp_port", sip.tcp_port, sip.host, self.transport.listen_tcp)
        if sip.tls_port:
            listen("sip.tls_port", sip.tls_port, sip.host, self.transport.listen_tls)

    def stopService(self) -> Any:
        service.Service.stopService(self)
        for session in self.ua.sessions:
            try:
                session.bye()
            except Exception:
                self.log.failure("BYE on shutdown failed")
        self.ua.stop()
        self.txlayer.stop()
        return self.transport.stop()


def _loopback_names(sip: Any) -> list[str]:
    names = ["localhost", "127.0.0.1", "::1"]
    for a in (sip.host, sip.public_address, sip.private_address):
        if a and a not in names and a not in ("0.0.0.0", "::"):
            names.append(a)
    return names


#: Seconds SIGTERM waits for active sessions to close cleanly and for
#: the SIP transactions they started (BYE retransmissions) to finish.
DRAIN_TIMEOUT = 5.0
#: The line logged on SIGHUP by a service with nothing to reload.
SIGHUP_IGNORED = "SIGHUP received: no configuration to reload; ignoring"


class AiconnectService(service.MultiService):
    """
    The top service.

    Starting: the children start (SIP listening, RTP, events, API), then
    the sessions a previous run left open are ended
    (L{aiconnect.recovery.SessionRecovery}, reason C{restart}). With
    C{handle_signals} (twistd), SIGHUP reloads the configuration file
    instead of killing the process (SPEC s11).

    Stopping drains in order (SPEC s7): new INVITEs get 503 and INVITEs
    still waiting for their answer too, active sessions are ended cleanly
    (BYEs sent, events written); the SIP listeners and the transaction
    layer keep running until every session completed and no SIP
    transaction waits for an answer (so an unanswered BYE is
    retransmitted), at most C{drain_timeout} seconds; then the SIP
    listeners close, the event deliverer gets a few seconds to deliver, and
    the RTP ports and the API close.

    @ivar sip: the L{SipService}.
    @ivar srs: the L{SrsService}.
    @ivar registry: the L{CallRegistry}.
    @ivar relay: the L{MediaRelay}.
    @ivar outbox: the L{EventOutbox}.
    @ivar api: the L{ApiServer}.
    @ivar recovery: the L{aiconnect.recovery.SessionRecovery} run on start,
        or C{None}.
    @ivar dialog_store: the L{aiconnect.recovery.DialogStore} closed on stop,
        or C{None}.
    @ivar drain_timeout: seconds the drain waits at most.
    """

    log = Logger()

    def __init__(self, reactor: Any, drain_timeout: float = DRAIN_TIMEOUT, handle_signals: bool = False) -> None:
        service.MultiService.__init__(self)
        self._reactor = reactor
        self.drain_timeout = drain_timeout
        self.handle_signals = handle_signals
        self.recovery: Any = None
        self.dialog_store: Any = None
        #: Set by L{build_service}.
        self.sip: Any = None
        self.srs: Any = None
        self.registry: Any = None
        self.relay: Any = None
        self.outbox: Any = None
        self.deliverer: Any = None
        self.api: Any = None
        #: The trunk target health registry and its OPTIONS prober (SPEC
        #: s13), started after the children and stopped first.
        self.health: Any = None
        self.prober: Any = None
        #: The L{aiconnect.overload.OverloadService}, started after the
        #: children and stopped first, or C{None}.
        self.overload: Any = None
        #: Our HTTP connection pool, closed on stop, or C{None}.
        self.pool: Any = None
        #: The L{aiconnect.gctune.CollectorService} of a twistd process, or
        #: C{None}.
        self.collector: Any = None
        #: The L{aiconnect.provisioning.Provisioning} (SIGHUP reloads
        #: through it), or C{None}.
        self.provisioning: Any = None
        #: The L{aiconnect.api.cluster.ClusterRest} of a node of a cluster,
        #: or C{None}.
        self.rest_cluster: Any = None
        self._previous_sighup: Any = None

    def startService(self) -> None:
        service.MultiService.startService(self)
        if self.handle_signals:
            self._install_sighup()
            # The process is ours (twistd): no automatic full collection
            # passes, one of ours every few minutes (aiconnect.gctune).
            self.collector = gctune.CollectorService(self._reactor)
            self.collector.startService()
        if self.recovery is not None:
            self.recovery.recover()
        if self.prober is not None:
            self.prober.startService()
        if self.overload is not None:
            self.overload.startService()

    # -- SIGHUP ------------------------------------------------------------

    def _install_sighup(self) -> None:
        """
        Replace SIGHUP's default action (terminate at once: no BYE, no
        event, no log line) by a reload of the configuration.
        """
        if not hasattr(signal, "SIGHUP"):
            return
        try:
            self._previous_sighup = signal.signal(signal.SIGHUP, self._sighup_received)
        except ValueError:
            # Not the main thread: leave signals alone.
            self.log.warn("cannot install the SIGHUP handler outside the main thread")

    def _restore_sighup(self) -> None:
        if self._previous_sighup is not None:
            signal.signal(signal.SIGHUP, self._previous_sighup)
            self._previous_sighup = None

    def _sighup_received(self, signum: int, frame: Any) -> None:
        # A signal handler may run between any two bytecodes: hand the work
        # to the reactor, as Twisted does for SIGTERM.
        self._reactor.callFromThread(self.sighup)

    def sighup(self) -> None:
        """
        SIGHUP: re-read the configuration file (SPEC s11,
        L{aiconnect.provisioning.Provisioning.reload}); no call ends.
        """
        if self.provisioning is None:
            self.log.warn(SIGHUP_IGNORED)
            return
        self.provisioning.reload()

    # -- drain ---------------------------------------------------------------

    def _sip_busy(self) -> bool:
        """
        Whether a SIP transaction still waits for its final response (a BYE
        being retransmitted, a CANCEL, an INVITE not answered yet).
        """
        from aiconnect.sip.transaction import State

        txlayer = self.sip.txlayer
        waiting = (State.CALLING, State.TRYING, State.PROCEEDING)
        if any(tx.state in waiting for tx in txlayer.client_transactions.values()):
            return True
        return any(tx.state in (State.TRYING, State.PROCEEDING) for tx in txlayer.server_transactions.values())

    def stopService(self) -> Any:
        from twisted.internet import defer, task

        from aiconnect.call import DrainExpired, Shutdown

        self.running = 0
        self._restore_sighup()
        if self.prober is not None and self.prober.running:
            self.prober.stopService()
        if self.overload is not None and self.overload.running:
            self.overload.stopService()
        if self.collector is not None and self.collector.running:
            self.collector.stopService()
        self.srs.draining = True
        self.sip.ua.reject_pending(503, "Shutting down", [("Retry-After", "30")])
        for runner in list(self.registry):
            runner.feed(Shutdown(now=self._reactor.seconds()))
        for session in self.sip.ua.sessions:
            # Dialogs no call owns (anything left): BYE them now, while
            # their BYEs can still be retransmitted.
            try:
                session.bye()
            except Exception:
                self.log.failure("BYE on shutdown failed")

        async def drain() -> None:
            # Give BYEs to SRCs and SRSs up to drain_timeout to be answered
            # (each call completes once its SRSs answered, SPEC s2 order),
            # with the SIP stack up so that they are retransmitted, and
            # new INVITEs answered 503.
            deadline = self._reactor.seconds() + self.drain_timeout
            while (len(self.registry) or self._sip_busy()) and self._reactor.seconds() < deadline:
                await task.deferLater(self._reactor, 0.05, lambda: None)
            for runner in list(self.registry):
                # SRSs that did not answer our BYE in time: the Call
                # counts them as answered and completes.
                runner.feed(DrainExpired(now=self._reactor.seconds()))
            for name in ("sip", "webhooks", "rtp", "api", "cluster"):
                child = self.namedServices.get(name)
                if child is not None and child.running:
                    await defer.maybeDeferred(child.stopService)
            if self.dialog_store is not None:
                self.dialog_store.close()
            if self.pool is not None:
                await self.pool.closeCachedConnections()

        return defer.ensureDeferred(drain())


class RelayService(service.Service):
    """
    The C{rtp} service: closes every RTP port on stop.
    """

    def __init__(self, relay: Any) -> None:
        self.name = "rtp"
        self.relay = relay

    def stopService(self) -> None:
        service.Service.stopService(self)
        self.relay.close()


def _probed(cfg: config_mod.Config) -> list[Any]:
    """
    @return: The trunks the OPTIONS prober probes (C{probe_interval} set).
    """
    return [trunk for tenant in cfg.tenants for trunk in tenant.trunks if trunk.probe_interval > 0]


def build_service(
    cfg: config_mod.Config,
    reactor: Any = None,
    http_client: Any = None,
    handle_signals: bool = False,
    config_path: str | None = None,
) -> AiconnectService:
    """
    Build the whole service tree for a configuration.

    @param cfg: the parsed configuration.
    @param config_path: the file it was read from (SIGHUP reloads it), or
        C{None}.
    @param reactor: the reactor (the global one when C{None}).
    @param http_client: treq-like client for callbacks (treq by default).
    @param handle_signals: install the SIGHUP handler on start (twistd).
    @return: an L{AiconnectService} with named children C{sip}, C{rtp},
        C{webhooks} and C{api}.
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    from aiconnect.api import ApiServer
    from aiconnect.media.relay import MediaRelay
    from aiconnect.registry import CallRegistry
    from aiconnect.siprec.srs import SrsService
    from aiconnect.webhooks import (
        EventDeliverer,
        EventDeliveryService,
        EventOutbox,
        NewCallClient,
        tenants_by_domain,
    )
    from aiconnect.webhooks.database import EventDatabase

    top = AiconnectService(reactor, handle_signals=handle_signals)
    registry = CallRegistry(reactor, cfg.api.keep_ended, cfg.api.keep_ended_for)
    relay = MediaRelay(
        reactor, cfg.rtp.host, cfg.rtp.port_min, cfg.rtp.port_max, media_timeout=cfg.rtp.media_timeout
    )
    pool = None
    if http_client is None:
        # Our own connection pool, closed on stop (treq's global one would
        # keep connections open after the service stopped); as many idle
        # connections kept per host as callbacks may be in flight.
        from aiconnect.webhooks.agent import pooled_client

        http_client = pooled_client(reactor)
        pool = http_client.pool
    # One connection for the outbox and the dialog store: one transaction
    # per reactor turn (group commit, aiconnect.webhooks.database).
    database = EventDatabase(cfg.events.database, reactor=reactor)
    outbox: Any
    if cfg.database.url:
        # SPEC s14: the events in PostgreSQL, owned by this node
        # (docs/storage.md, "Event outbox").
        from aiconnect.storage.outbox import PostgresOutbox

        outbox = PostgresOutbox(cfg.node.id, reactor)
    else:
        outbox = EventOutbox(database, clock=reactor.seconds)
    from aiconnect.provisioning import LiveConfig, Provisioning, SqliteTenantStore

    # SPEC s11: the configuration in force (the file's tenants and the
    # provisioned ones) is what every path that reads tenants, trunks and
    # limits is given; the file's sockets, ports and paths stay as read.
    live = LiveConfig(cfg)
    tenant_store: Any
    rest_cluster = None
    if cfg.database.url:
        # SPEC s14: tenants, leases and the session directory in PostgreSQL
        # (docs/storage.md); the first child, so that the stored tenants
        # are in force before anything listens.
        from aiconnect.storage.cluster import ClusterStorage

        cluster = ClusterStorage(cfg, reactor, live, registry)
        cluster.outbox = outbox
        cluster.setServiceParent(top)
        tenant_store = cluster.tenant_store
        # SPEC s14: the REST API answers for the sessions of every node.
        from twisted.web.client import Agent

        from aiconnect.api.cluster import ClusterRest, NodeSignatures

        rest_cluster = ClusterRest(
            NodeSignatures(cfg.cluster.secret, cfg.node.id, reactor),
            lambda: cluster.pool,
            cfg.cluster.lease,
            # The agent of our own client (its pool closed on stop); a
            # client given by the caller may have none.
            getattr(http_client, "agent", None) or Agent(reactor),
            reactor,
        )
    else:
        tenant_store = SqliteTenantStore(database, clock=reactor.seconds)
        # SQLite answers at once.
        tenant_store.load().addCallback(
            lambda documents: live.apply(provisioned={t.domain: t for t in Provisioning.stored_tenants(documents, cfg)})
        ).addErrback(lambda f: top.log.failure("Provisioning: the stored tenants could not be loaded", f))
    provisioning = Provisioning(live, tenant_store, path=config_path)
    deliverer = EventDeliverer(
        reactor,
        outbox,
        tenants_by_domain(live.tenants),
        http_client=http_client,
        retry_for=cfg.events.retry_for,
        backoff_base=cfg.events.retry_initial,
        backoff_max=cfg.events.retry_max,
    )
    new_call = NewCallClient(reactor, http_client)
    srs = SrsService(reactor, live, registry, outbox, new_call, relay)
    sip = SipService(cfg, reactor, invite_handler=srs)
    # Flood protection before any transaction (SPEC s12 invite_rate), then
    # overload control (docs/overload.md).
    sip.txlayer.screen = srs.screen_invite
    from aiconnect.overload import OverloadService

    overload = OverloadService(
        reactor,
        cfg.limits.overload_lag,
        cfg.limits.overload_cpu,
        completed=lambda: srs.stats["answered"],
        events_wait=deliverer.ready_wait,
    )
    srs.overload = overload
    # While overloaded, refused INVITEs are answered before their parse,
    # statelessly (docs/overload.md).
    srs.txlayer, srs.server_header = sip.txlayer, sip.ua.config.user_agent
    sip.transport.shed = srs.shed_datagram
    top.overload = overload
    sip.setServiceParent(top)
    from aiconnect.sip.resolver import Resolver
    from aiconnect.siprec.forward import Forwarder

    from aiconnect import tlsutil
    from aiconnect.api.trunks import TrunkRoutes
    from aiconnect.siprec.health import TargetHealth
    from aiconnect.siprec.probe import TrunkProber
    from aiconnect.siprec.trunktest import TrunkTester

    resolver = Resolver(reactor, nameservers=cfg.dns.nameservers, port=cfg.dns.port)
    # SPEC s13: one health registry for every call of the process.
    health = TargetHealth(reactor)
    forwarder = Forwarder(reactor, sip.ua, resolver, cfg, health=health)
    srs.forwarder = forwarder
    prober = TrunkProber(reactor, sip.ua, resolver, health, lambda: [t for tenant in live.tenants for t in tenant.trunks])
    tester = TrunkTester(reactor, sip.ua, resolver, lambda host: tlsutil.client_context_factory(host, cfg.tls))
    trunk_routes = TrunkRoutes(reactor, resolver, health, tester)
    from aiconnect.outputs.factory import OutputMaker
    from aiconnect.outputs.upload import Uploader

    uploader = Uploader(
        reactor,
        http_client,
        retry_initial=cfg.events.retry_initial,
        retry_max=cfg.events.retry_max,
        retry_for=cfg.events.retry_for,
        timeout=cfg.recording.upload_timeout,
    )
    outputs = OutputMaker(reactor, cfg, lambda host: tlsutil.client_context_factory(host, cfg.tls), uploader)
    srs.output_factory = outputs
    from aiconnect.recovery import DialogJournal, DialogStore, SessionRecovery

    # The dialogs of live sessions, in the outbox's database: a restarted
    # node ends the sessions its previous run left open (SPEC s14).
    dialog_store: Any
    recovery_stats: dict[str, Any] = {}
    if cfg.database.url:
        # SPEC s14: in PostgreSQL, owned by this node; a survivor ends a
        # lost node's sessions, reason nodeLost (docs/storage.md).
        from aiconnect import events
        from aiconnect.storage.dialogs import PgDialogStore

        dialog_store = cluster.dialogs = PgDialogStore(cfg.node.id, reactor, before_write=outbox.flush)
        lost = cluster.lost_recovery = SessionRecovery(reactor, dialog_store, sip.ua, outbox, events.COMPLETED_NODE_LOST)
        recovery_stats = {"nodeLost": lost.stats, "store": dialog_store.stats}
    else:
        dialog_store = DialogStore(database, clock=reactor.seconds)
    journal = DialogJournal(dialog_store)
    srs.journal = journal
    recovery = SessionRecovery(reactor, dialog_store, sip.ua, outbox)
    top.recovery = recovery
    top.dialog_store = dialog_store
    RelayService(relay).setServiceParent(top)
    EventDeliveryService(deliverer, outbox).setServiceParent(top)
    from aiconnect.views import count_live_outputs

    stats = {
        "sip_transport": lambda: sip.transport.stats,
        "sip_transactions": lambda: sip.txlayer.stats,
        "sip_ua": lambda: sip.ua.stats,
        "srs": lambda: srs.stats,
        "overload": overload.detector.snapshot,
        "forward": lambda: forwarder.stats,
        "trunk_health": lambda: {"targets": len(health), **health.stats, "probe": prober.stats},
        "outputs": lambda: outputs.stats,
        "sessions": registry.counts,
        "live": lambda: count_live_outputs(registry),
        "rtp": relay.stats,
        "events": lambda: {
            "outbox": outbox.stats,
            "delivery": deliverer.stats,
            "database": database.stats,
            "backlog": deliverer.pending,
        },
        "newcall": lambda: new_call.stats,
        "recovery": lambda: {"journal": journal.stats, "restart": recovery.stats, **recovery_stats},
    }
    api = ApiServer(
        live, registry=registry, reactor=reactor, stats_providers=stats, trunks=trunk_routes, provisioning=provisioning,
        cluster=rest_cluster,
    )
    if rest_cluster is not None:
        api.add_stats_provider("cluster_rest", rest_cluster.stats)
    # Deleted tenants stay known to the deliverer: their undelivered
    # events still go out.
    webhook_targets = tenants_by_domain(live.tenants)

    def configuration_changed(old: config_mod.Config, new: config_mod.Config) -> None:
        webhook_targets.update(tenants_by_domain(new.tenants))
        deliverer.update_tenants(webhook_targets)
        sip.transport.limits = new.limits.connections
        overload.detector.lag_threshold = new.limits.overload_lag
        overload.detector.cpu_threshold = new.limits.overload_cpu
        # The prober schedules the trunks it finds when it starts: start
        # it again when the probed trunks change (SPEC s13 with s11).
        if prober.running and _probed(old) != _probed(new):
            prober.stopService()
            prober.startService()

    live.listen(configuration_changed)
    from aiconnect.api.metrics import LabelledCounter, PrometheusMetrics

    # Histograms and labelled counters, observed where things happen.
    metrics = PrometheusMetrics(api.metrics_registry, lambda domain: srs.config.tenant_for_domain(domain) is not None)
    srs.metrics = new_call.metrics = deliverer.metrics = metrics

    # The 503s sent to new INVITEs, by cause (docs/overload.md).
    api.metrics_registry.register(
        LabelledCounter(
            "aiconnect_invites_refused",
            "New INVITEs answered 503 before any work, by cause",
            "cause",
            lambda: {
                "overload_lag": overload.detector.stats["rejected_lag"],
                "overload_cpu": overload.detector.stats["rejected_cpu"],
                "overload_events": overload.detector.stats["rejected_events"],
                "invite_rate": srs.stats["rate_limited_answered"],
                "tenant_full": srs.stats["tenant_full"],
                "unconfirmed": srs.stats["unconfirmed_full"],
            },
        )
    )
    # SPEC s11: every applied change, by who made it.
    api.metrics_registry.register(
        LabelledCounter(
            "aiconnect_config_changes",
            "Configuration changes applied: provisioning API (admin, tenant) and SIGHUP reloads",
            "source",
            lambda: dict(provisioning.changes),
        )
    )
    site = Site(api.app.resource())
    site.displayTracebacks = False
    if cfg.api.port:
        api_service = TcpListenerService("api", reactor, cfg.api.port, site, cfg.api.host)
        api_service.setServiceParent(top)
    from aiconnect.api.readiness import service_checks

    api.readiness = service_checks(cfg.sip, sip, api_service if cfg.api.port else None, database, srs)
    top.sip = sip
    top.srs = srs
    top.registry = registry
    top.relay = relay
    top.outbox = outbox
    top.deliverer = deliverer
    top.api = api
    top.health = health
    top.prober = prober
    top.pool = pool
    top.provisioning = provisioning
    top.rest_cluster = rest_cluster
    return top


class TcpListenerService(service.Service):
    """
    Listen on a TCP port while running; C{port} is the bound port object.
    """

    def __init__(self, name: str, reactor: Any, port: int, factory: Any, interface: str) -> None:
        self.name = name
        self._reactor = reactor
        self._port_number = port
        self._factory = factory
        self._interface = interface
        self.port: Any = None

    def startService(self) -> None:
        service.Service.startService(self)
        self.port = listen(
            f"{self.name}.port",
            self._port_number,
            self._interface,
            lambda port: self._reactor.listenTCP(port, self._factory, interface=self._interface),
        )

    def stopService(self) -> Any:
        service.Service.stopService(self)
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None


def _url(url: str) -> str:
    """
    @return: C{url} without user and password, for a log line.
    """
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _address(host: str, port: int) -> str:
    """
    @return: C{host:port}, brackets around an IPv6 host.
    """
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def startup_lines(cfg: config_mod.Config, top: AiconnectService, config_path: str) -> list[str]:
    """
    What a started server says about itself, one line each: version and
    configuration file, SIP listeners, API URL, each tenant with its
    trunks, RTP range, event database, log level, and the self-signed
    certificate when start-up created one. No secret: no token, password
    or signing secret, and URLs without their user and password.

    @param cfg: The configuration.
    @param top: The started service tree.
    @param config_path: The configuration file.
    @return: The lines.
    """
    lines = [f"AI Connect {__version__} started, configuration {os.path.abspath(config_path)}"]
    sip = cfg.sip
    listeners = [
        f"{name} {_address(sip.host, port)}"
        for name in ("udp", "tcp", "tls")
        for port in [top.sip.transport.port(name)]
        if port is not None
    ]
    lines.append("SIP listening on " + (", ".join(listeners) or "nothing (every sip port is 0)"))
    api = top.namedServices.get("api")
    if api is not None and api.port is not None:
        lines.append(f"REST API on http://{_address(cfg.api.host, api.port.getHost().port)}/")
    else:
        lines.append("REST API off (api.port = 0)")
    for tenant in cfg.tenants:
        trunks = ", ".join(f"{t.match} -> {t.target} ({t.transport})" for t in tenant.trunks) or "none"
        lines.append(
            f"tenant {tenant.domain}: application {_url(tenant.callback_url)}, trunks: {trunks}"
        )
    if not cfg.tenants:
        lines.append("no tenant configured: every INVITE is answered 404")
    lines.append(f"RTP ports {cfg.rtp.port_min}-{cfg.rtp.port_max} on {cfg.rtp.host}")
    lines.append(f"event database {cfg.events.database}")
    level = logsetup.settings(cfg.log.format, cfg.log.level)[1]
    lines.append(f"log level {level} (debug adds every SIP message)")
    if getattr(top.sip, "created_certificate", False):
        lines.append(
            f"TLS: created a self-signed certificate {cfg.tls.certificate} (key {cfg.tls.private_key}) "
            "for loopback; peers will not trust it: configure your own for production"
        )
    return lines


class StartupLog(service.Service):
    """
    Logs L{startup_lines} once every other service started (it is the last
    child of the tree L{makeService} returns).
    """

    name = "startup"
    log = Logger()

    def __init__(self, cfg: config_mod.Config, top: AiconnectService, config_path: str) -> None:
        self._cfg = cfg
        self._top = top
        self._config_path = config_path

    def startService(self) -> None:
        service.Service.startService(self)
        # The tenants in force: the file's and the provisioned ones (SPEC s11).
        provisioning = self._top.provisioning
        cfg = self._cfg if provisioning is None else provisioning.live.current
        for line in startup_lines(cfg, self._top, self._config_path):
            self.log.info("{line}", line=line)


def makeService(options: Options) -> service.MultiService:
    """
    twistd entry point (L{twisted.application.service.IServiceMaker}).

    A configuration problem found while building (a TLS file, a JWT key)
    or a file that cannot be written stops twistd with one line
    (L{one_line_errors}).
    """
    cfg = options.get("parsed_config")
    if cfg is None:
        try:
            cfg = config_mod.load(options["config"])
        except ConfigError as e:
            raise SystemExit(str(e)) from None
    try:
        top = build_service(cfg, handle_signals=True, config_path=options["config"])
    except OSError as e:
        raise StartupError(f"cannot start: {e}") from e
    except sqlite3.Error as e:
        raise StartupError(f"events.database {cfg.events.database}: {e}") from e
    StartupLog(cfg, top, options["config"]).setServiceParent(top)
    return top
