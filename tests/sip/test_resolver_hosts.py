"""
Tests for the hosts file of L{aiconnect.sip.resolver}: its parser, its
reloading, how resolution consults it before DNS (with fakes), and one
class checking it against a real DNS server on 127.0.0.1.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import dns.resolver
from twisted.internet import defer, reactor
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase, TestCase

from aiconnect.sip.peer import Peer
from aiconnect.sip.resolver import HostsFile, Resolver, ResolveError, parse_hosts, resolve_with
from tests.integration.dnsserver import a, start_dns_server
from tests.sip.resolver_helpers import FakeDns, FakeReactor, Table, temp_path, write_hosts


class ParseHostsTests(SynchronousTestCase):
    """
    L{parse_hosts}: the hosts(5) format.
    """

    def test_format(self) -> None:
        """
        Comments, blank lines, aliases, case, trailing dots and IPv6 are
        understood; lines with a bad address or no name are skipped; each
        name's addresses come IPv4 first, in file order, without duplicates.
        """
        names = parse_hosts(
            "# a comment\n"
            "\n"
            "::1\tlocalhost ip6-localhost  # loopback\n"
            "127.0.0.1 localhost\n"
            "192.0.2.1 SRS.Test.Invalid. srs-alias\n"
            "not-an-address broken.invalid\n"
            "192.0.2.9\n"
            "192.0.2.2 srs.test.invalid\n"
            "192.0.2.1 srs.test.invalid\n"
            "   # 192.0.2.3 commented.invalid\n"
        )
        self.assertEqual(
            names,
            {
                "localhost": ("127.0.0.1", "::1"),
                "ip6-localhost": ("::1",),
                "srs.test.invalid": ("192.0.2.1", "192.0.2.2"),
                "srs-alias": ("192.0.2.1",),
            },
        )


class HostsFileTests(SynchronousTestCase):
    """
    L{HostsFile}: lookup, re-reading on change, the size bound and missing
    or unreadable files.
    """

    def test_lookup(self) -> None:
        """
        A name is found whatever its case and trailing dot; an unknown name
        has no addresses.
        """
        hosts = HostsFile(write_hosts(self, "127.0.0.1 srs.test.invalid\n"))
        self.assertEqual(hosts.lookup("SRS.test.invalid."), ("127.0.0.1",))
        self.assertEqual(hosts.lookup("other.invalid"), ())

    def test_reread_when_changed(self) -> None:
        """
        The file is read again only when its modification time (or size)
        changes: a same-size rewrite with the old mtime put back is not seen,
        a new mtime is.
        """
        path = write_hosts(self, "127.0.0.1 srs.test.invalid\n")
        before = os.stat(path)
        hosts = HostsFile(path)
        self.assertEqual(hosts.lookup("srs.test.invalid"), ("127.0.0.1",))
        write_hosts(self, "127.0.0.2 srs.test.invalid\n", path)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        self.assertEqual(hosts.lookup("srs.test.invalid"), ("127.0.0.1",))
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
        self.assertEqual(hosts.lookup("srs.test.invalid"), ("127.0.0.2",))
        write_hosts(self, "127.0.0.3 other.invalid\n127.0.0.4 srs.test.invalid\n", path)
        self.assertEqual(hosts.lookup("srs.test.invalid"), ("127.0.0.4",))

    def test_missing_file(self) -> None:
        """
        A missing file has no names and logs nothing; once created it is
        read.
        """
        path = temp_path(self)
        hosts = HostsFile(path)
        with capturedLogs() as events:
            self.assertEqual(hosts.lookup("srs.test.invalid"), ())
        self.assertEqual(list(events), [])
        write_hosts(self, "127.0.0.1 srs.test.invalid\n", path)
        self.assertEqual(hosts.lookup("srs.test.invalid"), ("127.0.0.1",))
        os.remove(path)
        self.assertEqual(hosts.lookup("srs.test.invalid"), ())

    def test_unreadable_file(self) -> None:
        """
        An unreadable hosts file (here a directory) has no names and is
        reported once, not on every lookup.
        """
        path = temp_path(self)
        os.mkdir(path)
        hosts = HostsFile(path)
        with capturedLogs() as events:
            self.assertEqual(hosts.lookup("srs.test.invalid"), ())
            self.assertEqual(hosts.lookup("srs.test.invalid"), ())
        warnings = [e for e in events if "cannot read hosts file" in e["log_format"]]
        self.assertEqual(len(warnings), 1)

    def test_size_bound(self) -> None:
        """
        At most C{max_bytes} are read; the line cut by the bound and the
        rest are ignored, with a warning.
        """
        first = "127.0.0.1 a.invalid\n"
        path = write_hosts(self, first + "127.0.0.2 b.invalid\n127.0.0.3 c.invalid\n")
        hosts = HostsFile(path, max_bytes=len(first) + 5)
        with capturedLogs() as events:
            self.assertEqual(hosts.lookup("a.invalid"), ("127.0.0.1",))
            self.assertEqual(hosts.lookup("b.invalid"), ())
            self.assertEqual(hosts.lookup("c.invalid"), ())
        warnings = [e for e in events if "larger than" in e["log_format"]]
        self.assertEqual(len(warnings), 1)


class ResolveStepsHostsTests(SynchronousTestCase):
    """
    L{resolve_steps} with a hosts file: a name found there is an A/AAAA
    result with the RFC 3263 default port, and no DNS query is asked.
    """

    def hosts(self, name: str) -> Sequence[str]:
        return {"srs.test.invalid": ("127.0.0.1", "::1")}.get(name, ())

    def test_default_port(self) -> None:
        """
        Without a port the transport's default port is used (5060, 5061 for
        TLS), IPv4 first; the TLS server name is the trunk's host name.
        """
        for transport, port in (("udp", 5060), ("tcp", 5060), ("tls", 5061)):
            table = Table({})
            peers = resolve_with("srs.test.invalid", transport, table, hosts=self.hosts)
            self.assertEqual(peers, [Peer(transport, "127.0.0.1", port), Peer(transport, "::1", port)])
            self.assertEqual([p.server_name for p in peers], ["srs.test.invalid"] * 2)
            self.assertEqual(table.asked, [])

    def test_explicit_port(self) -> None:
        """
        An explicit port is kept.
        """
        table = Table({})
        peers = resolve_with("srs.test.invalid.:5099", "udp", table, hosts=self.hosts)
        self.assertEqual(peers, [Peer("udp", "127.0.0.1", 5099), Peer("udp", "::1", 5099)])
        self.assertEqual(table.asked, [])

    def test_not_in_hosts_uses_dns(self) -> None:
        """
        A name absent from the hosts file is resolved through DNS as before.
        """
        table = Table({("srs.test", "A"): ["192.0.2.1"]})
        self.assertEqual(resolve_with("srs.test:5060", "udp", table, hosts=self.hosts), [Peer("udp", "192.0.2.1", 5060)])
        self.assertEqual(table.asked, [("srs.test", "A"), ("srs.test", "AAAA")])


def system_hosts_has_localhost() -> bool:
    """
    Whether /etc/hosts maps C{localhost} (read here independently of the
    code under test).
    """
    try:
        with open("/etc/hosts", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    return any("localhost" in line.split("#", 1)[0].split()[1:] for line in lines)


class ResolverHostsTests(SynchronousTestCase):
    """
    The adapter consults the hosts file before dnspython.
    """

    def nxdomain(self, *names: str) -> FakeDns:
        return FakeDns({}, raises={name: dns.resolver.NXDOMAIN() for name in names})

    def test_hosts_file_before_dns(self) -> None:
        """
        A trunk host named in the hosts file resolves to its address with
        the default port, without any DNS query (DNS would say NXDOMAIN).
        """
        fake = self.nxdomain("srs.test.invalid")
        reactor = FakeReactor()
        path = write_hosts(self, "127.0.0.1 srs.test.invalid\n")
        resolver = Resolver(reactor, dns_resolver=fake, hosts_file=path)
        peers = self.successResultOf(resolver.resolve("srs.test.invalid", "udp"))
        self.assertEqual(peers, [Peer("udp", "127.0.0.1", 5060)])
        self.assertEqual((fake.asked, reactor.pool.calls), ([], 0))

    def test_localhost_from_system_hosts_file(self) -> None:
        """
        By default the system hosts file is read: a C{localhost} trunk
        resolves to 127.0.0.1 although DNS knows no such name.
        """
        if not system_hosts_has_localhost():
            raise self.skipTest("/etc/hosts has no localhost entry")
        fake = self.nxdomain("localhost")
        resolver = Resolver(FakeReactor(), dns_resolver=fake)
        peers = self.successResultOf(resolver.resolve("localhost", "tcp"))
        self.assertIn(Peer("tcp", "127.0.0.1", 5060), peers)
        self.assertEqual(fake.asked, [])

    def test_no_hosts_file(self) -> None:
        """
        With C{hosts_file=None} only DNS is asked.
        """
        fake = self.nxdomain("localhost")
        resolver = Resolver(FakeReactor(), dns_resolver=fake, hosts_file=None)
        failure = self.failureResultOf(resolver.resolve("localhost", "udp"), ResolveError)
        self.assertEqual(failure.value.reason, "DNS: NXDOMAIN for localhost")


class ResolverHostsDnsServerTests(TestCase):
    """
    The hosts file against a real DNS server on 127.0.0.1
    (L{tests.integration.dnsserver}).
    """

    timeout = 20

    @defer.inlineCallbacks
    def test_hosts_file_wins_over_dns(self) -> Any:
        """
        A name in the hosts file is not asked to the DNS server (which has
        another address for it); a name that is not still is.
        """
        server = start_dns_server({"srs.test.invalid": [a("192.0.2.9")], "other.invalid": [a("127.0.0.5")]}, origin="invalid")
        self.addCleanup(server.stop)
        path = write_hosts(self, "127.0.0.1 srs.test.invalid\n")
        resolver = Resolver(reactor, nameservers=("127.0.0.1",), port=server.port, timeout=2.0, cache=False, hosts_file=path)
        peers = yield resolver.resolve("srs.test.invalid", "udp")
        self.assertEqual(peers, [Peer("udp", "127.0.0.1", 5060)])
        self.assertEqual(server.questions, [])
        peers = yield resolver.resolve("other.invalid:5070", "udp")
        self.assertEqual(peers, [Peer("udp", "127.0.0.5", 5070)])
        # A and AAAA may be asked in either order (lookups run in threads).
        self.assertEqual(sorted(server.questions), [("other.invalid", "A"), ("other.invalid", "AAAA")])
