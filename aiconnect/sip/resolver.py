# -*- test-case-name: tests.sip.test_resolver,tests.integration.test_dns,tests.sip.test_resolver_hosts -*-
"""
RFC 3263 target selection for an outbound trunk: NAPTR -> SRV -> A/AAAA.

The module has two halves.

The B{pure half} decides, from records already fetched, which queries to ask
and in which order the resulting transport addresses are tried:

    - L{select_naptr} keeps the NAPTR records whose service matches the trunk
      transport (C{SIP+D2U}, C{SIP+D2T}, C{SIPS+D2T}) and returns their
      replacements (SRV owner names) in order/preference order;
    - L{order_srv} orders SRV records per RFC 2782 (priority ascending,
      weighted random selection within a priority, with an injected C{rng});
    - L{resolve_steps} is the whole RFC 3263 s4 algorithm as a generator:
      it yields batches of L{Query} and receives one L{Answer} per query
      (errors and NXDOMAIN are data), and returns the ordered list of
      L{Peer}s or raises L{ResolveError};
    - L{resolve_with} drives L{resolve_steps} synchronously with a callable
      (for tests and in-memory zones).

The B{adapter}, L{Resolver}, drives L{resolve_steps} with dnspython.
dnspython is blocking, so every query runs in the reactor's thread pool
(C{deferToThreadPool}); the reactor thread only runs the pure half and the
hosts file lookup (L{HostsFile}: one C{stat} per resolution, a bounded read
when the file changed).

Rules (RFC 3263 s4):

    - an IP literal target is used as is (port: the explicit one, or 5060,
      5061 for TLS);
    - a target named in the hosts file (C{/etc/hosts}, hosts(5)) is
      consulted first, as the system resolvers do (dnspython does not): a
      hosts-file name has no NAPTR or SRV records, so its addresses are an
      A/AAAA result with the explicit or the default port, and no DNS query
      is asked;
    - an FQDN with an explicit port is looked up with A/AAAA only (s4.2);
    - an FQDN without a port: NAPTR; the matching records' replacements are
      looked up as SRV in NAPTR order; if none yields SRV records, the SRV
      name of the transport (C{_sip._udp.}, C{_sip._tcp.}, C{_sips._tcp.});
      if that has none either, A/AAAA with the default port.  An NXDOMAIN
      for the NAPTR query ends the resolution at once (RFC 8020: nothing
      exists at or below that name);
    - every SRV target is expanded to its addresses, B{IPv4 first, then
      IPv6}, each address one L{Peer}; targets without addresses are
      skipped; duplicates are dropped;
    - an SRV set made of the single target C{.} means "no such service"
      (RFC 2782) and is an error.

The TLS server name (L{Peer.server_name}) is the host of the trunk target,
i.e. the domain that was looked up, never the SRV or NAPTR target: RFC 5922
s4 has the client match the certificate against the domain of the URI it
wanted to reach, because the SRV/NAPTR answers are not authenticated
(without DNSSEC) and a forged SRV target must not be able to choose the name
checked.  For an IP literal target the server name is the IP itself.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import random
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from aiconnect.errors import AiconnectError
from aiconnect.sip.peer import DEFAULT_PORTS, Peer
from aiconnect.sip.uri import is_ip_literal, split_host_port

if TYPE_CHECKING:
    from twisted.python.threadpool import ThreadPool

__all__ = [
    "DEFAULT_PORTS",
    "HOSTS_FILE",
    "NAPTR_SERVICES",
    "SRV_PREFIXES",
    "Answer",
    "HostsFile",
    "NaptrRecord",
    "Query",
    "ResolveError",
    "Resolver",
    "ResolverLike",
    "SrvRecord",
    "order_srv",
    "parse_hosts",
    "resolve_steps",
    "resolve_with",
    "select_naptr",
    "service_unavailable",
    "srv_name",
]

#: NAPTR service field per trunk transport (RFC 3263 s4.1, RFC 3263 s9).
NAPTR_SERVICES = {"udp": "SIP+D2U", "tcp": "SIP+D2T", "tls": "SIPS+D2T"}

#: SRV owner-name prefix per trunk transport (RFC 3263 s4.1).
SRV_PREFIXES = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}

#: The hosts file consulted before DNS (hosts(5)).
HOSTS_FILE = "/etc/hosts"


class ResolveError(AiconnectError):
    """
    The target could not be resolved to any transport address.

    @ivar reason: One line for the C{SIPRECFORWARDFAILED} event, always
        starting with C{"DNS: "}, e.g. C{"DNS: NXDOMAIN for srs.example.net"}
        or C{"DNS: timeout querying NAPTR srs.example.net"}.
    """

    def __init__(self, reason: str) -> None:
        """
        @param reason: The reason, starting with C{"DNS: "}.
        """
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


# --- records and the query/answer vocabulary ---------------------------------


@dataclass(frozen=True, slots=True)
class NaptrRecord:
    """
    A NAPTR record (RFC 3403 s4.1).

    @ivar order: Lower is tried first.
    @ivar preference: Lower is tried first among equal C{order}.
    @ivar flags: C{"S"} for SIP (the replacement is an SRV owner name).
    @ivar service: E.g. C{"SIPS+D2T"}.
    @ivar regexp: Unused by SIP (empty).
    @ivar replacement: The next name to look up, without the trailing dot
        (C{"."} or C{""} for none).
    """

    order: int
    preference: int
    flags: str
    service: str
    regexp: str
    replacement: str


@dataclass(frozen=True, slots=True)
class SrvRecord:
    """
    An SRV record (RFC 2782).

    @ivar priority: Lower is tried first.
    @ivar weight: Relative share among records of equal priority.
    @ivar port: The port of the service on C{target}.
    @ivar target: The host name, without the trailing dot (C{"."} means "no
        such service").
    """

    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class Query:
    """
    One DNS question asked by L{resolve_steps}.

    @ivar name: The owner name, without the trailing dot; always absolute
        (no search list applies).
    @ivar rdtype: C{"NAPTR"}, C{"SRV"}, C{"A"} or C{"AAAA"}.
    """

    name: str
    rdtype: str


@dataclass(frozen=True, slots=True)
class Answer:
    """
    The outcome of one L{Query}.

    @ivar records: L{NaptrRecord}s, L{SrvRecord}s or address strings,
        according to the query type; empty for "no records of that type".
    @ivar nxdomain: The name does not exist.
    @ivar error: Why the query failed (C{"DNS: timeout querying ..."}), or
        L{None}; a failed answer has no records.
    """

    records: tuple[Any, ...] = ()
    nxdomain: bool = False
    error: str | None = None


# --- the pure half -----------------------------------------------------------


def srv_name(host: str, transport: str) -> str:
    """
    The SRV owner name for C{host} and a trunk transport (RFC 3263 s4.1).

    @param host: A domain name, without trailing dot.
    @param transport: C{"udp"}, C{"tcp"} or C{"tls"}.
    @return: E.g. C{"_sips._tcp.srs.example.net"}.
    """
    return "%s.%s" % (SRV_PREFIXES[transport], host)


def select_naptr(records: Iterable[NaptrRecord], transport: str) -> list[str]:
    """
    The SRV owner names to try, from the NAPTR records of a domain (RFC 3263
    s4.1).

    Only records with the C{S} flag, the service of C{transport} (C{SIP+D2U}
    for UDP, C{SIP+D2T} for TCP, C{SIPS+D2T} for TLS; compared
    case-insensitively) and a replacement are kept.  They are sorted by
    C{order}, then C{preference} (RFC 3403 s4.1), keeping the input order
    among equals.  All matching records are returned, not only those of the
    lowest C{order}, so that the caller can fall through to the next one
    when a replacement has no SRV records.

    @param records: The NAPTR records of the domain.
    @param transport: C{"udp"}, C{"tcp"} or C{"tls"}.
    @return: The replacements, without duplicates.
    """
    service = NAPTR_SERVICES[transport]
    usable = [
        r
        for r in records
        if r.flags.lower() == "s"
        and r.service.upper() == service
        and r.replacement not in ("", ".")
    ]
    usable.sort(key=lambda r: (r.order, r.preference))
    names: list[str] = []
    for r in usable:
        name = r.replacement.rstrip(".")
        if name.lower() not in (n.lower() for n in names):
            names.append(name)
    return names


def service_unavailable(records: Sequence[SrvRecord]) -> bool:
    """
    Whether an SRV set says "decidedly not available": a single record whose
    target is C{.} (RFC 2782).

    @param records: The SRV records of one name.
    """
    return len(records) == 1 and records[0].target in ("", ".")


def order_srv(records: Iterable[SrvRecord], rng: Callable[[], float] = random.random) -> list[SrvRecord]:
    """
    Order SRV records per RFC 2782.

    Records are grouped by priority, lowest first.  Within a priority the
    RFC's selection is repeated until the group is empty: the remaining
    records are arranged with the zero-weight ones first, a uniform random
    integer C{r} in C{0..sum(weights)} (inclusive) is drawn, and the first
    record whose running weight sum is C{>= r} is taken.  Zero-weight records
    therefore come out only when C{r} is 0 (a small chance) or when only
    zero weights remain, in their input order.

    @param records: The SRV records of one name (not the C{.} target).
    @param rng: Returns a float in C{[0, 1)}, like L{random.random}; injected
        so that tests are deterministic.
    @return: The records in the order to try them.
    """
    groups: dict[int, list[SrvRecord]] = {}
    for record in records:
        groups.setdefault(record.priority, []).append(record)
    ordered: list[SrvRecord] = []
    for priority in sorted(groups):
        # Stable: zero weights first, otherwise the input order.
        group = sorted(groups[priority], key=lambda r: r.weight != 0)
        while group:
            total = sum(r.weight for r in group)
            pick = min(int(rng() * (total + 1)), total)
            running = 0
            index = len(group) - 1
            for i, record in enumerate(group):
                running += record.weight
                if running >= pick:
                    index = i
                    break
            ordered.append(group.pop(index))
    return ordered


def _address_queries(hosts: Sequence[str]) -> list[Query]:
    queries = []
    for host in hosts:
        queries.append(Query(host, "A"))
        queries.append(Query(host, "AAAA"))
    return queries


def _addresses(host: str, queries: Sequence[Query], answers: Sequence[Answer]) -> tuple[list[str], list[Answer]]:
    """
    The addresses found for C{host} in an A/AAAA batch, IPv4 first, and the
    answers for C{host}.
    """
    found: list[str] = []
    mine: list[Answer] = []
    for family in ("A", "AAAA"):
        for query, answer in zip(queries, answers):
            if query.name == host and query.rdtype == family:
                mine.append(answer)
                found.extend(answer.records)
    return found, mine


def _no_address_reason(host: str, answers: Sequence[Answer]) -> str:
    for answer in answers:
        if answer.error is not None:
            return answer.error
    if answers and all(a.nxdomain for a in answers):
        return "DNS: NXDOMAIN for %s" % (host,)
    return "DNS: no A/AAAA records for %s" % (host,)


def parse_hosts(text: str) -> dict[str, tuple[str, ...]]:
    """
    The names of a hosts file (hosts(5)) and their addresses.

    Each line is an IP address followed by a canonical name and aliases,
    separated by blanks; C{#} starts a comment.  Lines whose first field is
    not an IP address, or that have no name, are skipped (as the C library
    does).  Names are compared case-insensitively and without a trailing
    dot.

    @param text: The file's content.
    @return: Lowercase name -> its addresses, IPv4 first, then IPv6, each
        family in file order, without duplicates.
    """
    found: dict[str, list[ipaddress.IPv4Address | ipaddress.IPv6Address]] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            address = ipaddress.ip_address(fields[0])
        except ValueError:
            continue
        for name in fields[1:]:
            key = name.rstrip(".").lower()
            if not key:
                continue
            addresses = found.setdefault(key, [])
            if address not in addresses:
                addresses.append(address)
    return {
        name: tuple(str(a) for a in sorted(addresses, key=lambda a: a.version))
        for name, addresses in found.items()
    }


class HostsFile:
    """
    The hosts file, read on first use and read again whenever it changes
    (its modification time, size or inode differ from the last read).

    The file is read synchronously, on the caller's thread: it is a small
    local file, and an unchanged file costs one C{stat}.  At most
    C{max_bytes} are read; the lines beyond (and a trailing partial line)
    are ignored with a warning.  A missing file has no names; an unreadable
    one has none either and is reported once per change.

    @ivar path: The file.
    @ivar max_bytes: The read bound.
    @ivar log: The logger.
    """

    log = Logger()

    #: The default read bound: far beyond any real hosts file.
    MAX_BYTES = 1 << 20

    def __init__(self, path: str = HOSTS_FILE, max_bytes: int = MAX_BYTES) -> None:
        """
        @param path: The hosts file; injectable for tests.
        @param max_bytes: Read at most this many bytes of it.
        """
        self.path = path
        self.max_bytes = max_bytes
        self._state: tuple[Any, ...] | None = None
        self._names: dict[str, tuple[str, ...]] = {}

    def lookup(self, name: str) -> tuple[str, ...]:
        """
        The addresses of a name in the hosts file, IPv4 first.

        @param name: A host name, with or without trailing dot, any case.
        @return: The addresses, empty when the name is not in the file (or
            there is no readable file).  Never raises.
        """
        self._refresh()
        return self._names.get(name.rstrip(".").lower(), ())

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError as e:
            self._failed(("error", e.errno), e)
            return
        if self._state == (st.st_mtime_ns, st.st_size, st.st_ino):
            return
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                data = f.read(self.max_bytes + 1)
        except OSError as e:
            self._failed(("error", e.errno), e)
            return
        self._state = (st.st_mtime_ns, st.st_size, st.st_ino)
        if len(data) > self.max_bytes:
            data = data[: self.max_bytes]
            data = data[: data.rfind(b"\n") + 1]
            self.log.warn(
                "hosts file {path} is larger than {limit} bytes; the rest is ignored",
                path=self.path,
                limit=self.max_bytes,
            )
        self._names = parse_hosts(data.decode("utf-8", "replace"))

    def _failed(self, state: tuple[Any, ...], error: OSError) -> None:
        if self._state != state:
            if error.errno != errno.ENOENT:
                self.log.warn("cannot read hosts file {path}: {error}", path=self.path, error=error.strerror)
            self._state = state
        self._names = {}


def resolve_steps(
    target: str,
    transport: str,
    rng: Callable[[], float] = random.random,
    hosts: Callable[[str], Sequence[str]] | None = None,
) -> Generator[list[Query], list[Answer], list[Peer]]:
    """
    The RFC 3263 s4 algorithm for one trunk target, as a generator.

    Each C{yield} is a batch of L{Query}s that may be asked concurrently;
    the driver sends back one L{Answer} per query, in the same order.  The
    generator returns (C{StopIteration.value}) the L{Peer}s in the order to
    try them, never empty.

    @param target: FQDN or IP literal with an optional C{:port} (IPv6 in
        brackets), as in C{TrunkConfig.target}.
    @param transport: C{"udp"}, C{"tcp"} or C{"tls"}.
    @param rng: Random source for the SRV weights (L{order_srv}).
    @param hosts: Looks a name up in the hosts file (L{HostsFile.lookup});
        L{None} = no hosts file.  Consulted for the target only: a name
        found there is an A/AAAA result and no query is asked.
    @raise ResolveError: From the generator, if the target is invalid or no
        address can be found; the reason names the name and the failure.
    """
    if transport not in DEFAULT_PORTS:
        raise ResolveError("DNS: unsupported transport %r" % (transport,))
    try:
        host, port = split_host_port(target.strip())
    except ValueError as e:
        raise ResolveError("DNS: invalid target %r: %s" % (target, e)) from None
    if is_ip_literal(host):
        return [Peer(transport, host, port or DEFAULT_PORTS[transport], server_name=host)]
    host = host.rstrip(".")
    if hosts is not None:
        local = hosts(host)
        if local:
            return [Peer(transport, a, port or DEFAULT_PORTS[transport], server_name=host) for a in local]

    def peers(hosts_ports: Sequence[tuple[str, int]], batch: Sequence[Query], answers: Sequence[Answer]) -> tuple[list[Peer], list[str]]:
        out: list[Peer] = []
        failures: list[str] = []
        seen: set[tuple[str, int]] = set()
        for name, p in hosts_ports:
            if is_ip_literal(name):
                addresses, mine = [name], []
            else:
                addresses, mine = _addresses(name, batch, answers)
            if not addresses:
                failures.append(_no_address_reason(name, mine))
            for address in addresses:
                if (address, p) not in seen:
                    seen.add((address, p))
                    out.append(Peer(transport, address, p, server_name=host))
        return out, failures

    if port is None:
        (naptr,) = yield [Query(host, "NAPTR")]
        if naptr.error is not None:
            raise ResolveError(naptr.error)
        if naptr.nxdomain:
            raise ResolveError("DNS: NXDOMAIN for %s" % (host,))
        candidates = select_naptr(naptr.records, transport) + [srv_name(host, transport)]
        tried: set[str] = set()
        for name in candidates:
            if name.lower() in tried:
                continue
            tried.add(name.lower())
            (srv,) = yield [Query(name, "SRV")]
            if srv.error is not None:
                raise ResolveError(srv.error)
            if not srv.records:
                continue
            if service_unavailable(srv.records):
                raise ResolveError("DNS: %s says the service is not available (SRV target '.')" % (name,))
            ordered = [r for r in order_srv(srv.records, rng) if r.target not in ("", ".")]
            targets: list[str] = []
            for r in ordered:
                t = r.target.rstrip(".")
                if not is_ip_literal(t) and t not in targets:
                    targets.append(t)
            batch = _address_queries(targets)
            answers = yield batch
            found, failures = peers([(r.target.rstrip("."), r.port) for r in ordered], batch, answers)
            if not found:
                raise ResolveError(
                    "DNS: no address for the SRV targets of %s (%s)" % (name, "; ".join(failures))
                )
            return found
        port = DEFAULT_PORTS[transport]

    batch = _address_queries([host])
    answers = yield batch
    found, failures = peers([(host, port)], batch, answers)
    if not found:
        raise ResolveError(failures[0])
    return found


def resolve_with(
    target: str,
    transport: str,
    answer: Callable[[Query], Answer],
    rng: Callable[[], float] = random.random,
    hosts: Callable[[str], Sequence[str]] | None = None,
) -> list[Peer]:
    """
    Run L{resolve_steps} synchronously, answering each query with C{answer}.

    @param target: As for L{resolve_steps}.
    @param transport: As for L{resolve_steps}.
    @param answer: Answers one query (an in-memory zone, a test table).
    @param rng: As for L{order_srv}.
    @param hosts: As for L{resolve_steps}.
    @return: The ordered peers.
    @raise ResolveError: As for L{resolve_steps}.
    """
    steps = resolve_steps(target, transport, rng, hosts)
    answers: list[Answer] | None = None
    while True:
        try:
            batch = steps.send(answers)  # type: ignore[arg-type]
        except StopIteration as stop:
            peers: list[Peer] = stop.value
            return peers
        answers = [answer(q) for q in batch]


# --- the adapter -------------------------------------------------------------


class ResolverLike(Protocol):
    """
    What the forwarder needs from a resolver (L{Resolver} or a test fake).
    """

    def resolve(self, target: str, transport: str) -> Deferred[list[Peer]]:
        """
        The transport addresses of a trunk target, in the order to try them;
        fails with L{ResolveError}.
        """


def _text(value: bytes | str) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value


def _name(name: dns.name.Name) -> str:
    if name == dns.name.root:
        return "."
    return name.to_text(omit_final_dot=True)


def _convert(rdtype: str, rdata: Any) -> Any:
    if rdtype == "NAPTR":
        return NaptrRecord(
            rdata.order,
            rdata.preference,
            _text(rdata.flags),
            _text(rdata.service),
            _text(rdata.regexp),
            _name(rdata.replacement),
        )
    if rdtype == "SRV":
        return SrvRecord(rdata.priority, rdata.weight, rdata.port, _name(rdata.target))
    return str(rdata.address)


class Resolver:
    """
    RFC 3263 resolution with dnspython, off the reactor thread.

    Each query of L{resolve_steps} runs as one blocking dnspython query in
    the reactor's thread pool; the queries of one batch (the A and AAAA
    lookups of all SRV targets) run concurrently.  Positive answers are
    cached for their TTL, measured on the injected reactor's clock.  The
    hosts file is consulted first (L{HostsFile}, re-read when it changes,
    never cached beyond that).

    @ivar log: The logger.
    """

    log = Logger()

    #: At most this many cached answers; the cache is emptied when full.
    CACHE_SIZE = 1024

    def __init__(
        self,
        reactor: Any,
        nameservers: Sequence[str] = (),
        port: int = 53,
        timeout: float = 2.0,
        rng: Callable[[], float] = random.random,
        thread_pool: ThreadPool | None = None,
        cache: bool = True,
        dns_resolver: Any = None,
        hosts_file: str | None = HOSTS_FILE,
    ) -> None:
        """
        @param reactor: Provides L{IReactorThreads} (C{callFromThread},
            C{getThreadPool}) and L{IReactorTime}.
        @param nameservers: IP addresses of the nameservers; empty = the
            system configuration (C{/etc/resolv.conf}).
        @param port: The nameservers' port (applies to C{nameservers} only).
        @param timeout: Seconds one query may take, all retries included.
        @param rng: The random source for SRV weights (L{order_srv}).
        @param thread_pool: Where the blocking queries run; L{None} = the
            reactor's thread pool.
        @param cache: Whether positive answers are cached for their TTL.
        @param dns_resolver: A configured C{dns.resolver.Resolver} (or an
            object with its C{resolve} method) to use instead of one built
            from C{nameservers}, C{port} and C{timeout}; for tests.
        @param hosts_file: The hosts file consulted before DNS; L{None} =
            none.
        """
        self._reactor = reactor
        self._rng = rng
        self._timeout = timeout
        self._thread_pool = thread_pool
        self._cache_enabled = cache
        self._cache: dict[tuple[str, str], tuple[float, Answer]] = {}
        self._setup_error: str | None = None
        self._hosts = HostsFile(hosts_file) if hosts_file is not None else None
        if dns_resolver is not None:
            self._dns = dns_resolver
            return
        try:
            resolver = dns.resolver.Resolver(configure=not nameservers)
        except dns.exception.DNSException as e:
            self._setup_error = "DNS: no resolver configuration (%s)" % (e,)
            resolver = dns.resolver.Resolver(configure=False)
        if nameservers:
            resolver.port = port
            resolver.nameservers = list(nameservers)
        resolver.timeout = timeout
        resolver.lifetime = timeout
        self._dns = resolver

    def resolve(self, target: str, transport: str) -> Deferred[list[Peer]]:
        """
        Resolve a trunk target per RFC 3263 (see L{resolve_steps}).

        @param target: FQDN or IP literal with optional C{:port}.
        @param transport: C{"udp"}, C{"tcp"} or C{"tls"}.
        @return: A Deferred firing with the ordered, non-empty list of
            L{Peer}s, or failing with L{ResolveError}.
        """
        hosts = self._hosts.lookup if self._hosts is not None else None
        d = self._run(resolve_steps(target, transport, self._rng, hosts))

        def done(peers: list[Peer]) -> list[Peer]:
            self.log.debug(
                "resolved {target} transport={transport}: {peers}",
                target=target,
                transport=transport,
                peers=", ".join(str(p) for p in peers),
            )
            return peers

        def failed(failure: Any) -> Any:
            if failure.check(ResolveError):
                # The caller reports it (SIPRECFORWARDFAILED); debug only.
                self.log.debug(
                    "resolution failed for {target} transport={transport}: {reason}",
                    target=target,
                    transport=transport,
                    reason=failure.value.reason,
                )
            return failure

        d.addCallbacks(done, failed)
        return d

    @inlineCallbacks
    def _run(self, steps: Generator[list[Query], list[Answer], list[Peer]]) -> Generator[Deferred[Any], Any, list[Peer]]:
        answers: list[Answer] | None = None
        while True:
            try:
                batch = steps.send(answers)  # type: ignore[arg-type]
            except StopIteration as stop:
                peers: list[Peer] = stop.value
                return peers
            answers = yield gatherResults([self._query(q) for q in batch], consumeErrors=True)

    def _query(self, query: Query) -> Deferred[Answer]:
        key = (query.name.lower(), query.rdtype)
        cached = self._cache.get(key)
        if cached is not None:
            if cached[0] > self._reactor.seconds():
                return succeed(cached[1])
            del self._cache[key]
        pool = self._thread_pool if self._thread_pool is not None else self._reactor.getThreadPool()
        d: Deferred[tuple[Answer, int]] = deferToThreadPool(self._reactor, pool, self._blocking_query, query)

        def store(result: tuple[Answer, int]) -> Answer:
            answer, ttl = result
            if self._cache_enabled and answer.records and ttl > 0:
                if len(self._cache) >= self.CACHE_SIZE:
                    self._cache.clear()
                self._cache[key] = (self._reactor.seconds() + ttl, answer)
            return answer

        return d.addCallback(store)

    def _blocking_query(self, query: Query) -> tuple[Answer, int]:
        """
        Ask one question with dnspython.  Runs in a pool thread; never call
        it on the reactor thread.

        @return: The answer and its TTL (0 when not cacheable).
        """
        what = "%s %s" % (query.rdtype, query.name)
        if self._setup_error is not None:
            return Answer(error=self._setup_error), 0
        try:
            name = dns.name.from_text(query.name, origin=dns.name.root)
            result = self._dns.resolve(
                name,
                dns.rdatatype.from_text(query.rdtype),
                search=False,
                raise_on_no_answer=False,
                lifetime=self._timeout,
            )
        except dns.resolver.NXDOMAIN:
            return Answer(nxdomain=True), 0
        except dns.exception.Timeout:
            return Answer(error="DNS: timeout querying %s" % (what,)), 0
        except dns.resolver.NoNameservers:
            return Answer(error="DNS: no nameserver answered %s (SERVFAIL, refused or unreachable)" % (what,)), 0
        except dns.exception.DNSException as e:
            return Answer(error="DNS: %s failed: %s" % (what, e.__class__.__name__)), 0
        rrset = result.rrset
        if rrset is None:
            return Answer(), 0
        records = tuple(_convert(query.rdtype, rdata) for rdata in rrset)
        return Answer(records=records), rrset.ttl

