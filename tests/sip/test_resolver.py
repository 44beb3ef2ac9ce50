"""
Tests for L{aiconnect.sip.resolver}: the pure RFC 3263 / RFC 2782 half,
and the dnspython adapter with a fake thread pool and a fake dnspython
resolver (no sockets, no threads, no real time). The hosts file is tested
in L{tests.sip.test_resolver_hosts}.
"""

from __future__ import annotations

import random
from typing import Any

import dns.exception
import dns.resolver
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.sip.peer import Peer
from aiconnect.sip.resolver import (
    Answer,
    Query,
    Resolver,
    ResolveError,
    order_srv,
    resolve_steps,
    resolve_with,
    select_naptr,
    srv_name,
)
from tests.sip.resolver_helpers import FakeDns, FakeReactor, SyncPool, Table, fixed, naptr_, srv_


class OrderSrvTests(SynchronousTestCase):
    """
    RFC 2782 ordering of SRV records.
    """

    def test_priority_ascending(self) -> None:
        """
        Records are ordered by priority, lowest first, whatever the input order.
        """
        records = [srv_(20, 0, 1, "c"), srv_(10, 0, 1, "a"), srv_(30, 0, 1, "d"), srv_(10, 0, 1, "b")]
        ordered = order_srv(records, fixed(0.0))
        self.assertEqual([r.target for r in ordered], ["a", "b", "c", "d"])

    def test_weighted_selection_fixed_rng(self) -> None:
        """
        Within a priority, a draw r in 0..sum(weights) selects the first record
        whose running weight sum reaches r, then the draw repeats on the rest.
        """
        records = [srv_(10, 10, 1, "a"), srv_(10, 20, 1, "b"), srv_(10, 70, 1, "c")]
        # Sum 100: 0.5 -> r=50 -> running 10, 30, 100 -> "c"; then a,b (sum 30):
        # 0.5 -> r=15 -> running 10, 30 -> "b"; then "a".
        self.assertEqual([r.target for r in order_srv(records, fixed(0.5))], ["c", "b", "a"])
        # 0.05 -> r=5 -> "a"; then b,c (sum 90): 0.05 -> r=4 -> "b"; then "c".
        self.assertEqual([r.target for r in order_srv(records, fixed(0.05))], ["a", "b", "c"])
        # The top of the range picks the last record.
        self.assertEqual([r.target for r in order_srv(records, fixed(0.999999))], ["c", "b", "a"])

    def test_rng_returning_one_is_clamped(self) -> None:
        """
        An rng returning 1.0 (outside [0, 1)) still selects a record.
        """
        records = [srv_(10, 1, 1, "a"), srv_(10, 1, 1, "b")]
        self.assertEqual([r.target for r in order_srv(records, fixed(1.0))], ["b", "a"])

    def test_zero_weights_in_input_order(self) -> None:
        """
        When every weight is zero the records keep their input order.
        """
        records = [srv_(10, 0, 1, "a"), srv_(10, 0, 1, "b"), srv_(10, 0, 1, "c")]
        self.assertEqual([r.target for r in order_srv(records, fixed(0.7))], ["a", "b", "c"])

    def test_zero_weight_small_chance(self) -> None:
        """
        A zero-weight record is placed first in the running sum, so it is
        chosen only when the draw is 0; otherwise it comes after the weighted
        ones (RFC 2782).
        """
        records = [srv_(10, 5, 1, "w"), srv_(10, 0, 1, "z")]
        self.assertEqual([r.target for r in order_srv(records, fixed(0.0))], ["z", "w"])
        self.assertEqual([r.target for r in order_srv(records, fixed(0.5))], ["w", "z"])

    def test_weights_distribution(self) -> None:
        """
        With a seeded random source, the first choice follows the weights
        (about 1 in 4 for weight 1 against weight 3).
        """
        rng = random.Random(3263).random
        records = [srv_(10, 1, 1, "light"), srv_(10, 3, 1, "heavy")]
        firsts = [order_srv(records, rng)[0].target for _ in range(4000)]
        share = firsts.count("light") / len(firsts)
        # r in 0..4: light for r in {0, 1} -> 2/5 of the draws.
        self.assertTrue(0.35 < share < 0.45, share)

    def test_no_records(self) -> None:
        """
        No records order to an empty list.
        """
        self.assertEqual(order_srv([], fixed(0.5)), [])


class SelectNaptrTests(SynchronousTestCase):
    """
    NAPTR filtering per RFC 3263 s4.1.
    """

    records = [
        naptr_(20, 10, "SIP+D2U", "_sip._udp.example.net"),
        naptr_(10, 20, "SIPS+D2T", "_sips._tcp.example.net"),
        naptr_(10, 10, "SIP+D2T", "_sip._tcp.example.net"),
        naptr_(10, 5, "SIP+D2S", "_sip._sctp.example.net"),
        naptr_(5, 5, "E2U+sip", "!^.*$!sip:x@example.net!", flags="U"),
    ]

    def test_transport_selects_service(self) -> None:
        """
        Each transport keeps only its own service: SIP+D2U, SIP+D2T, SIPS+D2T.
        """
        self.assertEqual(select_naptr(self.records, "udp"), ["_sip._udp.example.net"])
        self.assertEqual(select_naptr(self.records, "tcp"), ["_sip._tcp.example.net"])
        self.assertEqual(select_naptr(self.records, "tls"), ["_sips._tcp.example.net"])

    def test_order_then_preference(self) -> None:
        """
        Matching records come out by order, then preference.
        """
        records = [
            naptr_(20, 1, "SIPS+D2T", "c.example.net"),
            naptr_(10, 50, "SIPS+D2T", "b.example.net"),
            naptr_(10, 10, "SIPS+D2T", "a.example.net"),
        ]
        self.assertEqual(select_naptr(records, "tls"), ["a.example.net", "b.example.net", "c.example.net"])

    def test_case_flags_and_empty_replacement(self) -> None:
        """
        Service and flag match case-insensitively; records without the S flag
        or with an empty replacement are dropped, as are duplicates.
        """
        records = [
            naptr_(10, 10, "sips+d2t", "a.example.net.", flags="s"),
            naptr_(10, 20, "SIPS+D2T", "A.example.net"),
            naptr_(10, 30, "SIPS+D2T", "b.example.net", flags="A"),
            naptr_(10, 40, "SIPS+D2T", "."),
        ]
        self.assertEqual(select_naptr(records, "tls"), ["a.example.net"])

    def test_srv_name(self) -> None:
        """
        The SRV owner name depends on the transport (RFC 3263 s4.1).
        """
        self.assertEqual(srv_name("srs.test", "udp"), "_sip._udp.srs.test")
        self.assertEqual(srv_name("srs.test", "tcp"), "_sip._tcp.srs.test")
        self.assertEqual(srv_name("srs.test", "tls"), "_sips._tcp.srs.test")


class ResolveStepsTests(SynchronousTestCase):
    """
    The RFC 3263 s4 algorithm over in-memory answers.
    """

    def zone(self) -> Table:
        return Table(
            {
                ("srs.test", "NAPTR"): [
                    naptr_(10, 10, "SIPS+D2T", "_sips._tcp.srs.test"),
                    naptr_(10, 20, "SIP+D2U", "_sip._udp.srs.test"),
                ],
                ("_sips._tcp.srs.test", "SRV"): [srv_(20, 0, 5081, "b.srs.test"), srv_(10, 0, 5071, "a.srs.test")],
                ("_sip._udp.srs.test", "SRV"): [srv_(10, 0, 5070, "a.srs.test")],
                ("a.srs.test", "A"): ["192.0.2.1"],
                ("a.srs.test", "AAAA"): ["2001:db8::1"],
                ("b.srs.test", "A"): ["192.0.2.2"],
            }
        )

    def test_ip_literal(self) -> None:
        """
        An IP literal is used as is, with the default port of the transport
        and itself as TLS server name; no query is asked.
        """
        table = Table({})
        self.assertEqual(resolve_with("192.0.2.7", "udp", table), [Peer("udp", "192.0.2.7", 5060)])
        self.assertEqual(resolve_with("192.0.2.7", "tcp", table), [Peer("tcp", "192.0.2.7", 5060)])
        [peer] = resolve_with("192.0.2.7", "tls", table)
        self.assertEqual((peer.port, peer.server_name), (5061, "192.0.2.7"))
        self.assertEqual(table.asked, [])

    def test_ip_literal_with_port_and_ipv6(self) -> None:
        """
        An explicit port is kept; IPv6 literals come bracketed or bare.
        """
        table = Table({})
        self.assertEqual(resolve_with("192.0.2.7:5099", "udp", table), [Peer("udp", "192.0.2.7", 5099)])
        self.assertEqual(resolve_with("[2001:db8::5]:5062", "tls", table), [Peer("tls", "2001:db8::5", 5062)])
        self.assertEqual(resolve_with("2001:db8::5", "tcp", table), [Peer("tcp", "2001:db8::5", 5060)])
        self.assertEqual(table.asked, [])

    def test_naptr_srv_address(self) -> None:
        """
        NAPTR selects the SRV name of the transport; its targets are expanded
        in priority order, IPv4 before IPv6, with the trunk's host as server
        name.
        """
        table = self.zone()
        peers = resolve_with("srs.test", "tls", table, fixed(0.0))
        self.assertEqual(
            peers,
            [Peer("tls", "192.0.2.1", 5071), Peer("tls", "2001:db8::1", 5071), Peer("tls", "192.0.2.2", 5081)],
        )
        self.assertEqual({p.server_name for p in peers}, {"srs.test"})
        self.assertEqual(table.asked[:2], [("srs.test", "NAPTR"), ("_sips._tcp.srs.test", "SRV")])

    def test_naptr_udp(self) -> None:
        """
        The same domain resolves to the SIP+D2U service for a UDP trunk.
        """
        table = self.zone()
        self.assertEqual(
            resolve_with("srs.test", "udp", table, fixed(0.0)),
            [Peer("udp", "192.0.2.1", 5070), Peer("udp", "2001:db8::1", 5070)],
        )

    def test_no_matching_naptr_falls_back_to_srv(self) -> None:
        """
        NAPTR records for other transports only: the transport's SRV name is
        asked directly.
        """
        table = self.zone()
        table.records[("_sip._tcp.srs.test", "SRV")] = [srv_(10, 0, 5072, "b.srs.test")]
        self.assertEqual(resolve_with("srs.test", "tcp", table), [Peer("tcp", "192.0.2.2", 5072)])
        self.assertIn(("_sip._tcp.srs.test", "SRV"), table.asked)

    def test_naptr_replacement_without_srv(self) -> None:
        """
        A NAPTR replacement with no SRV records moves on to the next one, then
        to the transport's own SRV name.
        """
        table = Table(
            {
                ("srs.test", "NAPTR"): [
                    naptr_(10, 10, "SIPS+D2T", "_sips._tcp.gone.test"),
                    naptr_(10, 20, "SIPS+D2T", "_sips._tcp.empty.test"),
                ],
                ("_sips._tcp.empty.test", "A"): ["192.0.2.9"],
                ("_sips._tcp.srs.test", "SRV"): [srv_(10, 0, 5071, "a.srs.test")],
                ("a.srs.test", "A"): ["192.0.2.1"],
            }
        )
        self.assertEqual(resolve_with("srs.test", "tls", table), [Peer("tls", "192.0.2.1", 5071)])
        self.assertEqual(
            [q for q in table.asked if q[1] == "SRV"],
            [("_sips._tcp.gone.test", "SRV"), ("_sips._tcp.empty.test", "SRV"), ("_sips._tcp.srs.test", "SRV")],
        )

    def test_srv_only(self) -> None:
        """
        Without NAPTR records the SRV name of the transport is used.
        """
        table = Table(
            {
                ("srs.test", "TXT"): ["exists"],
                ("_sip._udp.srs.test", "SRV"): [srv_(20, 0, 5080, "b.srs.test"), srv_(10, 0, 5070, "a.srs.test")],
                ("a.srs.test", "A"): ["192.0.2.1"],
                ("b.srs.test", "A"): ["192.0.2.2"],
            }
        )
        self.assertEqual(
            resolve_with("srs.test", "udp", table), [Peer("udp", "192.0.2.1", 5070), Peer("udp", "192.0.2.2", 5080)]
        )

    def test_address_fallback_default_port(self) -> None:
        """
        Without NAPTR and SRV records, the host's own addresses are used with
        the default port of the transport (5061 for TLS).
        """
        table = Table({("srs.test", "A"): ["192.0.2.1"], ("srs.test", "AAAA"): ["2001:db8::1"]})
        self.assertEqual(
            resolve_with("srs.test", "tls", table),
            [Peer("tls", "192.0.2.1", 5061), Peer("tls", "2001:db8::1", 5061)],
        )
        self.assertEqual(
            table.asked,
            [("srs.test", "NAPTR"), ("_sips._tcp.srs.test", "SRV"), ("srs.test", "A"), ("srs.test", "AAAA")],
        )

    def test_explicit_port_skips_naptr_and_srv(self) -> None:
        """
        An FQDN with a port is looked up with A/AAAA only (RFC 3263 s4.2).
        """
        table = self.zone()
        table.records[("srs.test", "A")] = ["192.0.2.3"]
        peers = resolve_with("srs.test:5099", "tls", table)
        self.assertEqual(peers, [Peer("tls", "192.0.2.3", 5099)])
        self.assertEqual(peers[0].server_name, "srs.test")
        self.assertEqual(table.asked, [("srs.test", "A"), ("srs.test", "AAAA")])

    def test_nxdomain(self) -> None:
        """
        An NXDOMAIN for the NAPTR query ends the resolution at once with a
        clear reason.
        """
        table = Table({})
        e = self.assertRaises(ResolveError, resolve_with, "srs.example.net", "udp", table)
        self.assertEqual(e.reason, "DNS: NXDOMAIN for srs.example.net")
        self.assertEqual(str(e), e.reason)
        self.assertEqual(table.asked, [("srs.example.net", "NAPTR")])

    def test_nxdomain_explicit_port(self) -> None:
        """
        NXDOMAIN for both address queries of a host with a port is reported as
        NXDOMAIN.
        """
        e = self.assertRaises(ResolveError, resolve_with, "srs.example.net:5060", "udp", Table({}))
        self.assertEqual(e.reason, "DNS: NXDOMAIN for srs.example.net")

    def test_no_records_at_all(self) -> None:
        """
        A name with none of the records needed fails naming the host.
        """
        table = Table({("srs.test", "TXT"): ["x"]})
        e = self.assertRaises(ResolveError, resolve_with, "srs.test", "udp", table)
        self.assertEqual(e.reason, "DNS: no A/AAAA records for srs.test")

    def test_srv_dot_target(self) -> None:
        """
        A single SRV record with target "." means the service is not offered.
        """
        table = Table({("srs.test", "TXT"): ["x"], ("_sip._udp.srs.test", "SRV"): [srv_(0, 0, 0, ".")]})
        e = self.assertRaises(ResolveError, resolve_with, "srs.test", "udp", table)
        self.assertIn("not available", e.reason)
        self.assertTrue(e.reason.startswith("DNS: "))

    def test_srv_target_without_address_skipped(self) -> None:
        """
        An SRV target without addresses is skipped; the others remain.
        """
        table = Table(
            {
                ("srs.test", "TXT"): ["x"],
                ("_sip._udp.srs.test", "SRV"): [srv_(10, 0, 5070, "gone.srs.test"), srv_(20, 0, 5080, "b.srs.test")],
                ("b.srs.test", "A"): ["192.0.2.2"],
            }
        )
        self.assertEqual(resolve_with("srs.test", "udp", table), [Peer("udp", "192.0.2.2", 5080)])

    def test_srv_targets_all_without_address(self) -> None:
        """
        When no SRV target has an address, the error names the SRV name and
        each target's problem.
        """
        table = Table(
            {
                ("srs.test", "TXT"): ["x"],
                ("_sip._udp.srs.test", "SRV"): [srv_(10, 0, 5070, "gone.srs.test")],
            }
        )
        e = self.assertRaises(ResolveError, resolve_with, "srs.test", "udp", table)
        self.assertEqual(
            e.reason, "DNS: no address for the SRV targets of _sip._udp.srs.test (DNS: NXDOMAIN for gone.srs.test)"
        )

    def test_duplicate_addresses_dropped(self) -> None:
        """
        Two SRV targets with the same address and port give one peer.
        """
        table = Table(
            {
                ("srs.test", "TXT"): ["x"],
                ("_sip._udp.srs.test", "SRV"): [srv_(10, 0, 5070, "a.srs.test"), srv_(20, 0, 5070, "b.srs.test")],
                ("a.srs.test", "A"): ["192.0.2.1"],
                ("b.srs.test", "A"): ["192.0.2.1"],
            }
        )
        self.assertEqual(resolve_with("srs.test", "udp", table), [Peer("udp", "192.0.2.1", 5070)])

    def test_address_batch_asked_together(self) -> None:
        """
        The A and AAAA queries of all SRV targets form one batch (asked
        concurrently by the adapter).
        """
        steps = resolve_steps("srs.test", "tls", fixed(0.0))
        self.assertEqual(next(steps), [Query("srs.test", "NAPTR")])
        self.assertEqual(steps.send([Answer()]), [Query("_sips._tcp.srs.test", "SRV")])
        batch = steps.send([Answer(records=(srv_(10, 0, 1, "a.test"), srv_(20, 0, 2, "b.test")))])
        self.assertEqual(
            batch,
            [Query("a.test", "A"), Query("a.test", "AAAA"), Query("b.test", "A"), Query("b.test", "AAAA")],
        )

    def test_query_error_is_reported(self) -> None:
        """
        A failed query (timeout) ends the resolution with its reason.
        """
        table = Table({}, errors={("srs.test", "NAPTR"): "DNS: timeout querying NAPTR srs.test"})
        e = self.assertRaises(ResolveError, resolve_with, "srs.test", "udp", table)
        self.assertEqual(e.reason, "DNS: timeout querying NAPTR srs.test")

    def test_address_error_reported_when_nothing_found(self) -> None:
        """
        A failed AAAA query does not matter when A gave addresses, and is the
        reason when nothing was found.
        """
        errors = {("srs.test", "AAAA"): "DNS: timeout querying AAAA srs.test"}
        table = Table({("srs.test", "A"): ["192.0.2.1"]}, errors=errors)
        self.assertEqual(resolve_with("srs.test:5060", "udp", table), [Peer("udp", "192.0.2.1", 5060)])
        table = Table({("srs.test", "TXT"): ["x"]}, errors=errors)
        e = self.assertRaises(ResolveError, resolve_with, "srs.test:5060", "udp", table)
        self.assertEqual(e.reason, "DNS: timeout querying AAAA srs.test")

    def test_invalid_target_and_transport(self) -> None:
        """
        An invalid target or an unknown transport fails with a reason, before
        any query.
        """
        table = Table({})
        e = self.assertRaises(ResolveError, resolve_with, "bad_host!:5060", "udp", table)
        self.assertTrue(e.reason.startswith("DNS: invalid target 'bad_host!:5060'"), e.reason)
        e = self.assertRaises(ResolveError, resolve_with, "srs.test", "sctp", table)
        self.assertEqual(e.reason, "DNS: unsupported transport 'sctp'")
        self.assertEqual(table.asked, [])


class ResolverAdapterTests(SynchronousTestCase):
    """
    The dnspython adapter: thread pool use, record conversion, error mapping
    and the TTL cache.
    """

    def resolver(self, fake: FakeDns, **kw: Any) -> tuple[Resolver, FakeReactor]:
        reactor = FakeReactor()
        return Resolver(reactor, dns_resolver=fake, rng=fixed(0.0), **kw), reactor

    def zone(self) -> FakeDns:
        return FakeDns(
            {
                ("srs.test", "NAPTR"): ['10 10 "S" "SIPS+D2T" "" _sips._tcp.srs.test.'],
                ("_sips._tcp.srs.test", "SRV"): ["20 0 5081 b.srs.test.", "10 0 5071 a.srs.test."],
                ("a.srs.test", "A"): ["192.0.2.1"],
                ("a.srs.test", "AAAA"): ["2001:db8::1"],
                ("b.srs.test", "A"): ["192.0.2.2"],
            }
        )

    def test_queries_run_in_thread_pool(self) -> None:
        """
        Every query goes through the reactor's thread pool, and dnspython
        records are converted into ordered peers.
        """
        fake = self.zone()
        resolver, reactor = self.resolver(fake)
        peers = self.successResultOf(resolver.resolve("srs.test", "tls"))
        self.assertEqual(
            peers,
            [Peer("tls", "192.0.2.1", 5071), Peer("tls", "2001:db8::1", 5071), Peer("tls", "192.0.2.2", 5081)],
        )
        self.assertEqual(reactor.pool.calls, len(fake.asked))
        self.assertEqual(fake.asked[0], ("srs.test", "NAPTR"))

    def test_given_thread_pool(self) -> None:
        """
        An explicit thread pool is used instead of the reactor's.
        """
        pool = SyncPool()
        reactor = FakeReactor()
        resolver = Resolver(reactor, dns_resolver=self.zone(), thread_pool=pool)
        self.successResultOf(resolver.resolve("a.srs.test:5060", "udp"))
        self.assertEqual((pool.calls, reactor.pool.calls), (2, 0))

    def test_srv_root_target(self) -> None:
        """
        An SRV record with the root target "." means "no service".
        """
        fake = FakeDns({("srs.test", "TXT"): ["x"], ("_sip._udp.srs.test", "SRV"): ["0 0 0 ."]})
        resolver, _ = self.resolver(fake)
        failure = self.failureResultOf(resolver.resolve("srs.test", "udp"), ResolveError)
        self.assertIn("not available", failure.value.reason)

    def test_nxdomain(self) -> None:
        """
        dnspython's NXDOMAIN becomes "DNS: NXDOMAIN for <name>".
        """
        fake = FakeDns({}, raises={"srs.example.net": dns.resolver.NXDOMAIN()})
        resolver, _ = self.resolver(fake)
        failure = self.failureResultOf(resolver.resolve("srs.example.net", "udp"), ResolveError)
        self.assertEqual(failure.value.reason, "DNS: NXDOMAIN for srs.example.net")

    def test_timeout(self) -> None:
        """
        A dnspython timeout becomes "DNS: timeout querying <type> <name>".
        """
        fake = FakeDns({}, raises={"srs.test": dns.resolver.LifetimeTimeout(timeout=2.0, errors=[])})
        resolver, _ = self.resolver(fake)
        failure = self.failureResultOf(resolver.resolve("srs.test", "tls"), ResolveError)
        self.assertEqual(failure.value.reason, "DNS: timeout querying NAPTR srs.test")

    def test_no_nameservers(self) -> None:
        """
        SERVFAIL or REFUSED from every server (NoNameservers) is reported as
        such.
        """
        fake = FakeDns({}, raises={"srs.test": dns.resolver.NoNameservers()})
        resolver, _ = self.resolver(fake)
        failure = self.failureResultOf(resolver.resolve("srs.test", "udp"), ResolveError)
        self.assertTrue(failure.value.reason.startswith("DNS: no nameserver answered NAPTR srs.test"))

    def test_other_dns_error(self) -> None:
        """
        Any other dnspython error is reported with its class name.
        """
        fake = FakeDns({}, raises={"srs.test": dns.exception.SyntaxError()})
        resolver, _ = self.resolver(fake)
        failure = self.failureResultOf(resolver.resolve("srs.test:5060", "udp"), ResolveError)
        self.assertEqual(failure.value.reason, "DNS: A srs.test failed: SyntaxError")

    def test_cache_honours_ttl(self) -> None:
        """
        Positive answers are reused until their TTL has passed on the
        reactor's clock.
        """
        fake = FakeDns({("srs.test", "A"): ["192.0.2.1"]}, ttl=30)
        resolver, reactor = self.resolver(fake)
        self.successResultOf(resolver.resolve("srs.test:5060", "udp"))
        self.assertEqual(fake.asked, [("srs.test", "A"), ("srs.test", "AAAA")])
        reactor.advance(29)
        self.successResultOf(resolver.resolve("srs.test:5060", "udp"))
        # A cached; the empty AAAA answer is not.
        self.assertEqual(fake.asked[2:], [("srs.test", "AAAA")])
        reactor.advance(2)
        self.successResultOf(resolver.resolve("srs.test:5060", "udp"))
        self.assertEqual(fake.asked[3:], [("srs.test", "A"), ("srs.test", "AAAA")])

    def test_cache_disabled(self) -> None:
        """
        With the cache off every resolution asks again.
        """
        fake = FakeDns({("srs.test", "A"): ["192.0.2.1"]})
        resolver, _ = self.resolver(fake, cache=False)
        self.successResultOf(resolver.resolve("srs.test:5060", "udp"))
        self.successResultOf(resolver.resolve("srs.test:5060", "udp"))
        self.assertEqual(len(fake.asked), 4)

    def test_ip_literal_no_query(self) -> None:
        """
        An IP literal resolves at once without touching the thread pool.
        """
        fake = FakeDns({})
        resolver, reactor = self.resolver(fake)
        self.assertEqual(self.successResultOf(resolver.resolve("[::1]:5070", "tcp")), [Peer("tcp", "::1", 5070)])
        self.assertEqual(reactor.pool.calls, 0)

    def test_dnspython_configuration(self) -> None:
        """
        Configured nameservers, port and timeout reach the dnspython resolver;
        the system configuration is not read.
        """
        resolver = Resolver(FakeReactor(), nameservers=("127.0.0.1",), port=5353, timeout=0.5)
        dns_resolver = resolver._dns
        self.assertEqual([str(ns) for ns in dns_resolver.nameservers], ["127.0.0.1"])
        self.assertEqual(dns_resolver.port, 5353)
        self.assertEqual((dns_resolver.timeout, dns_resolver.lifetime), (0.5, 0.5))
