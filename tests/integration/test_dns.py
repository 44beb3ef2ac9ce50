"""
L{aiconnect.sip.resolver.Resolver} against a real DNS server
(C{twisted.names}, L{tests.integration.dnsserver}) on 127.0.0.1: NAPTR ->
SRV -> A/AAAA, SRV only, A only, explicit port, IP literal, NXDOMAIN and a
nameserver that never answers.  Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import socket
from typing import Any

import dns.message
import dns.query
from twisted.internet import defer, reactor, threads
from twisted.trial.unittest import TestCase

from aiconnect.sip.peer import Peer
from aiconnect.sip.resolver import Resolver, ResolveError
from tests.integration.dnsserver import (
    DnsServer,
    ZoneResolver,
    a,
    aaaa,
    naptr,
    srv,
    start_dns_server,
    start_silent_server,
    two_srs_zone,
)


def first(*_: Any) -> float:
    """
    A fixed rng (zero weights make it irrelevant for the zones below).
    """
    return 0.0


class DnsIntegrationTests(TestCase):
    """
    RFC 3263 resolution over real UDP DNS on 127.0.0.1.
    """

    timeout = 20

    def serve(self, zone: dict[str, list[Any]]) -> tuple[DnsServer, Resolver]:
        server = start_dns_server(zone)
        self.addCleanup(server.stop)
        resolver = Resolver(reactor, nameservers=("127.0.0.1",), port=server.port, timeout=2.0, rng=first)
        return server, resolver

    @defer.inlineCallbacks
    def test_naptr_srv_a_tls(self) -> Any:
        """
        A TLS trunk FQDN resolves through NAPTR (SIPS+D2T) to the SRV records,
        priority 10 first, each target's A record, server name the FQDN.
        """
        server, resolver = self.serve(two_srs_zone(5071, 5081))
        peers = yield resolver.resolve("srs.test", "tls")
        self.assertEqual(peers, [Peer("tls", "127.0.0.1", 5071), Peer("tls", "127.0.0.1", 5081)])
        self.assertEqual([p.server_name for p in peers], ["srs.test", "srs.test"])
        self.assertEqual(server.questions[:2], [("srs.test", "NAPTR"), ("_sips._tcp.srs.test", "SRV")])
        self.assertEqual(
            sorted(server.questions[2:]),
            [("srs1.srs.test", "A"), ("srs1.srs.test", "AAAA"), ("srs2.srs.test", "A"), ("srs2.srs.test", "AAAA")],
        )

    @defer.inlineCallbacks
    def test_naptr_srv_a_udp(self) -> Any:
        """
        The same zone gives the SIP+D2U service's SRV records to a UDP trunk.
        """
        server, resolver = self.serve(two_srs_zone(5070, 5080))
        peers = yield resolver.resolve("srs.test", "udp")
        self.assertEqual(peers, [Peer("udp", "127.0.0.1", 5070), Peer("udp", "127.0.0.1", 5080)])
        self.assertIn(("_sip._udp.srs.test", "SRV"), server.questions)

    @defer.inlineCallbacks
    def test_naptr_replacement_elsewhere(self) -> Any:
        """
        The NAPTR replacement is followed even when it is not the
        conventional SRV name.
        """
        zone = {
            "srs.test": [naptr(10, 10, "SIP+D2T", "_sip._tcp.pool.test"), naptr(10, 20, "SIP+D2U", "_sip._udp.x.test")],
            "_sip._tcp.pool.test": [srv(10, 0, 5090, "node.pool.test")],
            "node.pool.test": [a(), aaaa("::1")],
        }
        server, resolver = self.serve(zone)
        peers = yield resolver.resolve("srs.test", "tcp")
        self.assertEqual(peers, [Peer("tcp", "127.0.0.1", 5090), Peer("tcp", "::1", 5090)])
        self.assertNotIn(("_sip._tcp.srs.test", "SRV"), server.questions)

    @defer.inlineCallbacks
    def test_srv_only(self) -> Any:
        """
        Without NAPTR records the transport's SRV name is asked directly.
        """
        server, resolver = self.serve(two_srs_zone(5071, 5081, with_naptr=False))
        peers = yield resolver.resolve("srs.test", "tls")
        self.assertEqual(peers, [Peer("tls", "127.0.0.1", 5071), Peer("tls", "127.0.0.1", 5081)])
        self.assertEqual(server.questions[:2], [("srs.test", "NAPTR"), ("_sips._tcp.srs.test", "SRV")])

    @defer.inlineCallbacks
    def test_a_only(self) -> Any:
        """
        Without NAPTR and SRV the host's A/AAAA records are used with the
        transport's default port, IPv4 first.
        """
        server, resolver = self.serve({"plain.test": [aaaa("::1"), a()]})
        peers = yield resolver.resolve("plain.test", "tls")
        self.assertEqual(peers, [Peer("tls", "127.0.0.1", 5061), Peer("tls", "::1", 5061)])
        peers = yield resolver.resolve("plain.test", "udp")
        self.assertEqual(peers, [Peer("udp", "127.0.0.1", 5060), Peer("udp", "::1", 5060)])

    @defer.inlineCallbacks
    def test_explicit_port(self) -> Any:
        """
        An FQDN with a port is resolved with A/AAAA only: no NAPTR, no SRV.
        """
        zone = two_srs_zone(5071, 5081)
        zone["srs.test"].append(a())
        server, resolver = self.serve(zone)
        peers = yield resolver.resolve("srs.test:5099", "tls")
        self.assertEqual(peers, [Peer("tls", "127.0.0.1", 5099)])
        self.assertEqual(peers[0].server_name, "srs.test")
        self.assertEqual(sorted(server.questions), [("srs.test", "A"), ("srs.test", "AAAA")])

    @defer.inlineCallbacks
    def test_ip_literal(self) -> Any:
        """
        An IP literal needs no DNS at all.
        """
        server, resolver = self.serve({})
        peers = yield resolver.resolve("127.0.0.1:5072", "tcp")
        self.assertEqual(peers, [Peer("tcp", "127.0.0.1", 5072)])
        self.assertEqual(server.questions, [])

    @defer.inlineCallbacks
    def test_nxdomain(self) -> Any:
        """
        An unknown name fails with "DNS: NXDOMAIN for <name>".
        """
        server, resolver = self.serve(two_srs_zone(5071, 5081))
        with self.assertRaises(ResolveError) as ctx:
            yield resolver.resolve("nothere.test", "tls")
        self.assertEqual(ctx.exception.reason, "DNS: NXDOMAIN for nothere.test")
        self.assertEqual(server.questions, [("nothere.test", "NAPTR")])

    @defer.inlineCallbacks
    def test_cached_second_resolution(self) -> Any:
        """
        A second resolution within the TTL asks the server nothing new.
        """
        server, resolver = self.serve(two_srs_zone(5071, 5081))
        first_peers = yield resolver.resolve("srs.test", "tls")
        asked = len(server.questions)
        again = yield resolver.resolve("srs.test", "tls")
        self.assertEqual(again, first_peers)
        # Only the empty AAAA answers (not cached) are asked again.
        self.assertEqual(sorted(server.questions[asked:]), [("srs1.srs.test", "AAAA"), ("srs2.srs.test", "AAAA")])

    @defer.inlineCallbacks
    def test_unreachable_nameserver_times_out(self) -> Any:
        """
        A nameserver that never answers gives "DNS: timeout ..." after the
        configured timeout.
        """
        port, close = start_silent_server()
        self.addCleanup(close)
        resolver = Resolver(reactor, nameservers=("127.0.0.1",), port=port, timeout=0.3)
        started = reactor.seconds()
        with self.assertRaises(ResolveError) as ctx:
            yield resolver.resolve("srs.test", "udp")
        self.assertEqual(ctx.exception.reason, "DNS: timeout querying NAPTR srs.test")
        self.assertLess(reactor.seconds() - started, 5)

    @defer.inlineCallbacks
    def test_closed_port_times_out(self) -> Any:
        """
        A nameserver port nobody listens on also ends in a timeout reason.
        """
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        resolver = Resolver(reactor, nameservers=("127.0.0.1",), port=port, timeout=0.3)
        with self.assertRaises(ResolveError) as ctx:
            yield resolver.resolve("srs.test:5060", "udp")
        self.assertTrue(ctx.exception.reason.startswith("DNS: timeout querying"), ctx.exception.reason)


class DnsServerHelperTests(TestCase):
    """
    The test DNS server helper serves UDP and TCP, and its in-memory twin
    agrees with it.
    """

    timeout = 20

    @defer.inlineCallbacks
    def test_tcp_and_udp(self) -> Any:
        """
        The same zone is served over UDP and over TCP on the same port.
        """
        server = start_dns_server(two_srs_zone(5071, 5081))
        self.addCleanup(server.stop)
        query = dns.message.make_query("_sips._tcp.srs.test.", "SRV")

        def ask(via: Any) -> list[str]:
            response = via(query, "127.0.0.1", port=server.port, timeout=2.0)
            return sorted(rdata.to_text() for rrset in response.answer for rdata in rrset)

        expected = ["10 0 5071 srs1.srs.test.", "20 0 5081 srs2.srs.test."]
        self.assertEqual((yield threads.deferToThread(ask, dns.query.udp)), expected)
        self.assertEqual((yield threads.deferToThread(ask, dns.query.tcp)), expected)
        self.assertEqual(server.tcp_questions, [("_sips._tcp.srs.test", "SRV")])

    @defer.inlineCallbacks
    def test_zone_resolver_agrees(self) -> Any:
        """
        L{ZoneResolver} gives the same peers as the real server for the same
        zone, synchronously.
        """
        zone = two_srs_zone(5071, 5081)
        server = start_dns_server(zone)
        self.addCleanup(server.stop)
        resolver = Resolver(reactor, nameservers=("127.0.0.1",), port=server.port, rng=first)
        fake = ZoneResolver(zone, rng=first)
        for target, transport in (("srs.test", "tls"), ("srs.test", "udp"), ("srs1.srs.test:5000", "tcp")):
            real = yield resolver.resolve(target, transport)
            self.assertEqual(self.successResultOf(fake.resolve(target, transport)), real)
        self.failureResultOf(fake.resolve("nothere.test", "udp"), ResolveError)
        self.assertEqual(fake.resolved[-1], ("nothere.test", "udp"))
