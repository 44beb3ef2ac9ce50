# -*- test-case-name: tests.integration.test_dns -*-
"""
A real authoritative DNS server on 127.0.0.1 for tests, built with
C{twisted.names}, serving a small in-memory zone over UDP and TCP on the
same (free) port; plus an in-memory L{ZoneResolver} answering from the same
zone without sockets or threads.

A zone is a mapping from owner name (C{str}, no trailing dot) to a list of
C{twisted.names.dns.Record_*} objects; L{naptr}, L{srv}, L{a} and L{aaaa}
build the records.  Every name must be inside the zone's origin (C{"test"}
by default); a name of the zone with no entry answers NXDOMAIN.

Typical use::

    server = start_dns_server(two_srs_zone(port1, port2))
    self.addCleanup(server.stop)
    resolver = Resolver(reactor, nameservers=("127.0.0.1",), port=server.port)
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.names import authority, common, dns, server

from aiconnect.sip.peer import Peer
from aiconnect.sip.resolver import (
    Answer,
    NaptrRecord,
    Query,
    ResolveError,
    SrvRecord,
    resolve_with,
)

__all__ = [
    "DnsServer",
    "Zone",
    "ZoneResolver",
    "a",
    "aaaa",
    "naptr",
    "srv",
    "start_dns_server",
    "start_silent_server",
    "two_srs_zone",
]

Zone = Mapping[str, Sequence[Any]]

#: The TTL of records built by the helpers below.
TTL = 60


def naptr(order: int, preference: int, service: str, replacement: str, flags: str = "S") -> dns.Record_NAPTR:
    """
    A NAPTR record, e.g. C{naptr(10, 50, "SIPS+D2T", "_sips._tcp.srs.test")}.
    """
    return dns.Record_NAPTR(
        order, preference, flags.encode(), service.encode(), b"", replacement.encode(), ttl=TTL
    )


def srv(priority: int, weight: int, port: int, target: str) -> dns.Record_SRV:
    """
    An SRV record, e.g. C{srv(10, 0, 5070, "srs1.srs.test")}.
    """
    return dns.Record_SRV(priority, weight, port, target.encode(), ttl=TTL)


def a(address: str = "127.0.0.1") -> dns.Record_A:
    """
    An A record.
    """
    return dns.Record_A(address, ttl=TTL)


def aaaa(address: str = "::1") -> dns.Record_AAAA:
    """
    An AAAA record.
    """
    return dns.Record_AAAA(address, ttl=TTL)


def two_srs_zone(
    first_port: int,
    second_port: int,
    domain: str = "srs.test",
    services: Sequence[str] = ("_sip._udp", "_sip._tcp", "_sips._tcp"),
    with_naptr: bool = True,
) -> dict[str, list[Any]]:
    """
    A zone with two recorders behind C{domain}: for each SRV service, the
    record of priority 10 points at C{srs1.<domain>:first_port} and the one
    of priority 20 at C{srs2.<domain>:second_port}; both hosts have the A
    record 127.0.0.1.  With C{with_naptr}, C{domain} also has one NAPTR
    record per service (C{SIP+D2U}, C{SIP+D2T}, C{SIPS+D2T}) pointing at the
    SRV names.

    @param first_port: The port of the first (preferred) recorder.
    @param second_port: The port of the second recorder.
    @param domain: The trunk's domain, inside the C{test} zone.
    @param services: The SRV prefixes to publish.
    @param with_naptr: Whether to publish NAPTR records.
    @return: A zone for L{start_dns_server} or L{ZoneResolver}.
    """
    first, second = "srs1.%s" % (domain,), "srs2.%s" % (domain,)
    zone: dict[str, list[Any]] = {first: [a()], second: [a()]}
    naptr_services = {"_sip._udp": "SIP+D2U", "_sip._tcp": "SIP+D2T", "_sips._tcp": "SIPS+D2T"}
    naptrs = []
    for i, prefix in enumerate(services):
        name = "%s.%s" % (prefix, domain)
        zone[name] = [srv(10, 0, first_port, first), srv(20, 0, second_port, second)]
        naptrs.append(naptr(10, 10 * (i + 1), naptr_services[prefix], name))
    # Without NAPTR the domain still exists (a TXT record), so that the
    # NAPTR query answers "no records" rather than NXDOMAIN.
    zone[domain] = naptrs if with_naptr else [dns.Record_TXT(b"no NAPTR here", ttl=TTL)]
    return zone


class _ZoneAuthority(authority.FileAuthority):
    """
    A L{authority.FileAuthority} whose records are given, not read from a
    file (as in Twisted's own tests).
    """

    def __init__(self, origin: str, records: Zone) -> None:
        common.ResolverBase.__init__(self)
        self._cache = {}
        soa = dns.Record_SOA(
            mname=b"ns." + origin.encode(),
            rname=b"hostmaster." + origin.encode(),
            serial=1,
            refresh=60,
            retry=60,
            expire=60,
            minimum=0,
            ttl=TTL,
        )
        self.soa = (origin.encode(), soa)
        self.records = {name.lower().rstrip(".").encode(): list(recs) for name, recs in records.items()}
        self.records.setdefault(origin.encode(), []).append(soa)


class _RecordingFactory(server.DNSServerFactory):
    """
    A L{server.DNSServerFactory} remembering every question it was asked.
    """

    def __init__(self, authorities: list[Any]) -> None:
        server.DNSServerFactory.__init__(self, authorities=authorities)
        self.questions: list[tuple[str, str]] = []
        self.tcp_questions: list[tuple[str, str]] = []

    def handleQuery(self, message: dns.Message, protocol: Any, address: Any) -> Any:
        for q in message.queries:
            question = (q.name.name.decode(), dns.QUERY_TYPES.get(q.type, str(q.type)))
            self.questions.append(question)
            if isinstance(protocol, dns.DNSProtocol):
                self.tcp_questions.append(question)
        return server.DNSServerFactory.handleQuery(self, message, protocol, address)


class DnsServer:
    """
    A running test DNS server; see L{start_dns_server}.

    @ivar port: The UDP and TCP port on 127.0.0.1.
    @ivar questions: C{(name, type)} of every query received (UDP or TCP),
        in order, e.g. C{("_sips._tcp.srs.test", "SRV")}.
    @ivar tcp_questions: Those received over TCP.
    """

    def __init__(self, port: int, factory: _RecordingFactory, listeners: list[Any]) -> None:
        self.port = port
        self._factory = factory
        self._listeners = listeners

    @property
    def questions(self) -> list[tuple[str, str]]:
        return self._factory.questions

    @property
    def tcp_questions(self) -> list[tuple[str, str]]:
        return self._factory.tcp_questions

    def stop(self) -> defer.Deferred[Any]:
        """
        Close both listeners.
        """
        listeners, self._listeners = self._listeners, []
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in listeners])


def start_dns_server(records: Zone, origin: str = "test", reactor: Any = None) -> DnsServer:
    """
    Serve C{records} on 127.0.0.1, UDP and TCP, on one free port.

    @param records: The zone (see the module docstring).
    @param origin: The zone's origin; every name must be at or below it.
    @param reactor: The reactor to listen with; the global one by default.
    @return: The running server; call C{stop()} (e.g. with C{addCleanup}).
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    factory = _RecordingFactory([_ZoneAuthority(origin, records)])
    for _ in range(20):
        udp = reactor.listenUDP(0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
        port = udp.getHost().port
        try:
            tcp = reactor.listenTCP(port, factory, interface="127.0.0.1")
        except CannotListenError:
            udp.stopListening()
            continue
        return DnsServer(port, factory, [udp, tcp])
    raise RuntimeError("no free port for the test DNS server")


class _Silent(DatagramProtocol):
    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        pass


def start_silent_server(reactor: Any = None) -> tuple[int, Callable[[], Any]]:
    """
    A UDP port on 127.0.0.1 that reads queries and never answers (a
    nameserver that has gone away without an ICMP error).

    @return: The port and a function closing it.
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    udp = reactor.listenUDP(0, _Silent(), interface="127.0.0.1")
    return udp.getHost().port, udp.stopListening


def _pure(record: Any) -> Any:
    if isinstance(record, dns.Record_NAPTR):
        return NaptrRecord(
            record.order,
            record.preference,
            record.flags.string.decode(),
            record.service.string.decode(),
            record.regexp.string.decode(),
            record.replacement.name.decode() or ".",
        )
    if isinstance(record, dns.Record_SRV):
        return SrvRecord(record.priority, record.weight, record.port, record.target.name.decode() or ".")
    if isinstance(record, dns.Record_A):
        return record.dottedQuad()
    if isinstance(record, dns.Record_AAAA):
        return socket.inet_ntop(socket.AF_INET6, record.address)
    return None


class ZoneResolver:
    """
    A resolver with L{aiconnect.sip.resolver.Resolver}'s interface that
    answers from an in-memory zone, synchronously (no sockets, no threads):
    for unit tests driven by a C{Clock}.

    @ivar questions: C{(name, type)} of every query, in order.
    @ivar resolved: C{(target, transport)} of every C{resolve} call.
    """

    _TYPES = {"NAPTR": dns.Record_NAPTR, "SRV": dns.Record_SRV, "A": dns.Record_A, "AAAA": dns.Record_AAAA}

    def __init__(self, records: Zone, rng: Callable[[], float] = random.random) -> None:
        self._records = {name.lower().rstrip("."): list(recs) for name, recs in records.items()}
        self._rng = rng
        self.questions: list[tuple[str, str]] = []
        self.resolved: list[tuple[str, str]] = []

    def _answer(self, query: Query) -> Answer:
        self.questions.append((query.name, query.rdtype))
        records = self._records.get(query.name.lower())
        if records is None:
            return Answer(nxdomain=True)
        kind = self._TYPES[query.rdtype]
        return Answer(records=tuple(_pure(r) for r in records if isinstance(r, kind)))

    def resolve(self, target: str, transport: str) -> defer.Deferred[list[Peer]]:
        """
        As L{aiconnect.sip.resolver.Resolver.resolve}, already fired.
        """
        self.resolved.append((target, transport))
        try:
            return defer.succeed(resolve_with(target, transport, self._answer, self._rng))
        except ResolveError:
            return defer.fail()
