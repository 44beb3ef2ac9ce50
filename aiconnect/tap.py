# -*- test-case-name: tests.integration.test_sip_service,tests.test_tap -*-
"""
The composition root: C{twistd -n aiconnect --config etc/aiconnect.toml}.

Only this module reads the configuration file and touches the global
reactor; every component gets its typed sub-configuration and the reactor
as arguments.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.application import service
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.server import Site

from aiconnect import __version__, config as config_mod
from aiconnect.errors import ConfigError
from aiconnect.sip.transaction import TimerConfig
from aiconnect.sip.transport import SipTransport
from aiconnect.sip.txlayer import TransactionLayer
from aiconnect.sip.ua import InviteHandler, UaConfig, UserAgent


class Options(usage.Options):
    """
    Command-line options of the C{aiconnect} twistd plugin.
    """

    optParameters = [
        ["config", "c", "etc/aiconnect.toml", "Path to the TOML configuration file."],
    ]

    def postOptions(self) -> None:
        try:
            self["parsed_config"] = config_mod.load(self["config"])
        except ConfigError as e:
            raise usage.UsageError(str(e))


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
        server_ctx = None
        client_creator = None
        if sip.tls_port or True:
            from aiconnect import tlsutil

            client_creator = lambda name: tlsutil.client_context_factory(name, cfg.tls)  # noqa: E731
            if sip.tls_port:
                tlsutil.ensure_self_signed(cfg.tls.certificate, cfg.tls.private_key, _loopback_names(sip))
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
        )
        timers = TimerConfig(t1=sip.timers.t1, t2=sip.timers.t2, t4=sip.timers.t4)
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
            self.transport.listen_udp(sip.udp_port)
        if sip.tcp_port:
            self.transport.listen_tcp(sip.tcp_port)
        if sip.tls_port:
            self.transport.listen_tls(sip.tls_port)
        self.log.info(
            "SIP listening udp={udp} tcp={tcp} tls={tls}",
            udp=self.transport.port("udp"),
            tcp=self.transport.port("tcp"),
            tls=self.transport.port("tls"),
        )

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


def build_service(cfg: config_mod.Config, reactor: Any = None) -> service.MultiService:
    """
    Build the whole service tree for a configuration.

    @param cfg: the parsed configuration.
    @param reactor: the reactor (the global one when C{None}).
    @return: a C{MultiService} with named children C{sip} and C{api}.
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    from aiconnect.api import ApiServer

    top = service.MultiService()
    sip = SipService(cfg, reactor)
    sip.setServiceParent(top)
    api = ApiServer(cfg, reactor=reactor)
    site = Site(api.app.resource())
    site.displayTracebacks = False
    if cfg.api.port:
        api_service = TcpListenerService("api", reactor, cfg.api.port, site, cfg.api.host)
        api_service.setServiceParent(top)
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
        self.port = self._reactor.listenTCP(self._port_number, self._factory, interface=self._interface)

    def stopService(self) -> Any:
        service.Service.stopService(self)
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None


def makeService(options: Options) -> service.MultiService:
    """
    twistd entry point (L{twisted.application.service.IServiceMaker}).
    """
    cfg = options.get("parsed_config")
    if cfg is None:
        try:
            cfg = config_mod.load(options["config"])
        except ConfigError as e:
            sys.stderr.write(str(e) + "\n")
            raise SystemExit(1)
    return build_service(cfg)
