# -*- test-case-name: tests.test_config -*-
"""
The shapes of the configuration: one frozen dataclass per section
(L{SipConfig}, L{TlsConfig}, L{RtpConfig}, L{ApiConfig}, L{DnsConfig},
L{EventsConfig}, L{LogConfig}, L{LimitsConfig}), per tenant
(L{TenantConfig}) and per trunk (L{TrunkConfig}), and the whole
L{Config}, with their defaults and the questions components ask of them
(L{TenantConfig.allows_source}, L{Config.tenant_for_domain} ...).

Nothing here reads TOML or checks a value: the defaults live in the
dataclass fields, and L{aiconnect.config.sections} builds the instances from
the file.  L{normalize_domain} lives here because L{Config} compares domains
with it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field

from aiconnect.sip.peer import ConnectionLimits
from aiconnect.sip.transaction import TimerConfig
from aiconnect.sip.uri import split_host_port
from aiconnect.webhooks.signing import decode_signing_secret

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class SipConfig:
    """
    SIP listeners and advertised addresses, C{[sip]}.

    @ivar host: Bind address (an IP literal; C{0.0.0.0} or C{::} for all).
    @ivar public_address: Address (IP or host name) advertised in Via,
        Contact and SDP.
    @ivar private_address: Address advertised instead when a forward asks for
        C{usePrivateIp}.
    @ivar udp_port: UDP listening port; 0 = no UDP listener.
    @ivar tcp_port: TCP listening port; 0 = no TCP listener.
    @ivar tls_port: TLS listening port; 0 = no TLS listener.
    @ivar max_message_size: Largest SIP message accepted, in bytes; larger
        stream messages are answered 513 and the connection closed, larger
        datagrams dropped.
    @ivar timers: The transaction timers, C{[sip.timers]}.
    @ivar force_rport: Answer UDP requests at their source port as if each
        carried C{rport} (RFC 3581), the NAT-safe choice next to SBCs;
        C{False} for strict RFC 3261 s18.2.2 routing to the Via port.
    """

    host: str = "127.0.0.1"
    public_address: str = "127.0.0.1"
    private_address: str = "127.0.0.1"
    udp_port: int = 5060
    tcp_port: int = 5060
    tls_port: int = 5061
    max_message_size: int = 65536
    timers: TimerConfig = field(default_factory=TimerConfig)
    force_rport: bool = True


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """
    TLS for the SIP TLS listener and outbound TLS trunks, C{[tls]}.

    @ivar certificate: Absolute path of the PEM certificate (chain: leaf
        first) presented by the TLS listener, and to servers that ask for a
        client certificate.  When neither it nor C{private_key} exists,
        start-up creates a self-signed loopback pair
        (L{aiconnect.tlsutil.ensure_self_signed}).  C{""} (only with
        C{sip.tls_port = 0}) = no certificate.
    @ivar private_key: Absolute path of its PEM private key.
    @ivar ca_certificates: Absolute path of a PEM bundle trusted for outbound
        TLS; C{""} = the platform trust store.
    @ivar verify_peer: Verify outbound peers' certificates and host names.
        C{False} is insecure (anyone can impersonate the SRS) and meant for
        lab use only.
    @ivar min_version: The lowest TLS version accepted, C{"1.2"} or C{"1.3"}.
    """

    certificate: str = "etc/tls/server.crt"
    private_key: str = "etc/tls/server.key"
    ca_certificates: str = ""
    verify_peer: bool = True
    min_version: str = "1.2"


@dataclass(frozen=True, slots=True)
class RtpConfig:
    """
    The RTP relay, C{[rtp]}.

    @ivar host: Bind address of RTP sockets (an IP literal).
    @ivar port_min: Lowest RTP port, even (RTP even, RTCP the odd port above).
    @ivar port_max: Highest port of the range (inclusive).
    @ivar media_timeout: Seconds without RTP on every stream of a session
        before it is ended; 0 = never.
    @ivar latch: Accept RTP from the first source seen from the signalling
        peer's IP instead of only from the address the SDP names (for NATed
        SRCs, SPEC s5).
    """

    host: str = "127.0.0.1"
    port_min: int = 20000
    port_max: int = 29999
    media_timeout: float = 60.0
    latch: bool = False


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """
    The REST API listener, C{[api]}.

    @ivar host: Bind address (an IP literal).
    @ivar port: TCP port; 0 = no API listener.
    @ivar keep_ended: The most ended sessions kept for C{GET
        /{domain}/sessions/{id}} (the oldest is dropped first); 0 = none.
    @ivar keep_ended_for: Seconds an ended session is kept; 0 = none.
    @ivar admin_tokens: Bearer tokens of the provisioning API's
        C{/admin} routes (SPEC s11; never in C{repr()}); empty = no admin
        API.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    keep_ended: int = 1000
    keep_ended_for: float = 3600.0
    admin_tokens: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True)
class DnsConfig:
    """
    DNS for RFC 3263 target resolution, C{[dns]}.

    @ivar nameservers: IP addresses of the nameservers to ask; empty = the
        system resolver configuration.
    @ivar port: Port of those nameservers.
    """

    nameservers: tuple[str, ...] = ()
    port: int = 53


@dataclass(frozen=True, slots=True)
class EventsConfig:
    """
    The durable event outbox, C{[events]}.

    @ivar database: Absolute path of the SQLite database (created with its
        parent directories when missing); C{":memory:"} keeps the outbox in
        memory (tests only: events do not survive a restart).
    @ivar retry_for: Seconds an undelivered event is retried before it is
        given up (logged and counted).
    @ivar retry_initial: The first back-off delay in seconds (doubling).
    @ivar retry_max: The longest back-off delay in seconds.
    """

    database: str = "var/aiconnect.sqlite3"
    retry_for: float = 86400.0
    retry_initial: float = 1.0
    retry_max: float = 300.0


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    """
    Where the state the nodes share lives, C{[database]} (SPEC s14).

    @ivar url: C{""} = SQLite at C{[events] database} (one node); or a
        C{postgresql://user:password@host:port/dbname} URI (never in
        C{repr()}; L{aiconnect.storage.url.redact_url} for logs).
    """

    url: str = field(default="", repr=False)


#: What a node id may be made of (SPEC s14 C{[node] id}).
NODE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")


def default_node_id() -> str:
    """
    @return: The host name, as a node id: characters outside
        C{[A-Za-z0-9._-]} become C{-}, at most 64 of them.
    """
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:64]
    return name or "node"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """
    This process as a node of a cluster, C{[node]} (SPEC s14).

    @ivar id: Unique in the cluster, C{[A-Za-z0-9._-]{1,64}}; default: the
        host name.
    @ivar api_url: How the other nodes reach this node's REST API
        (C{http(s)://host:port}); C{""} in the file = derived from
        C{[api] host} and C{port}.
    """

    id: str = field(default_factory=default_node_id)
    api_url: str = ""


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """
    The nodes together, C{[cluster]} (SPEC s14).

    @ivar secret: Node-to-node authentication (never in C{repr()});
        required when C{[database] url} is PostgreSQL.
    @ivar lease: Seconds without renewal before a node counts as lost (it
        renews every C{lease / 3}).
    """

    secret: str = field(default="", repr=False)
    lease: float = 10.0


@dataclass(frozen=True, slots=True)
class LogConfig:
    """
    Logging, C{[log]}.

    @ivar format: C{"text"} or C{"json"} (JSON lines).
    @ivar level: The lowest level emitted: C{debug}, C{info}, C{warn},
        C{error} or C{critical}.
    """

    format: str = "text"
    level: str = "info"


@dataclass(frozen=True, slots=True)
class StreamsConfig:
    """
    WebSocket audio streams, C{[streams]} (SPEC s8).

    @ivar max_buffer: Seconds of audio held for a consumer that does not
        keep up (or while reconnecting); older frames beyond it are dropped
        and counted.
    @ivar reconnect_for: Seconds a dropped connection is retried (back-off
        from 0.5 s, doubling, at most 4 s) before the stream stops with
        C{stoppedBy: error}.
    @ivar connect_timeout: Seconds the TCP connect, the TLS handshake and
        the WebSocket handshake together may take (C{STREAMFAILED} reason
        C{timeout}).
    """

    max_buffer: float = 2.0
    reconnect_for: float = 10.0
    connect_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class RecordingConfig:
    """
    WAV recordings, C{[recording]} (SPEC s9).

    @ivar directory: Absolute path under which recordings are written as
        C{{tenant}/{YYYY-MM-DD}/{recordingId}.wav} (created when missing).
    @ivar keep_after_upload: Whether the local file stays after a
        successful C{uploadUrl} PUT.
    @ivar upload_timeout: Seconds one PUT attempt may take.
    """

    directory: str = "var/recordings"
    keep_after_upload: bool = True
    upload_timeout: float = 60.0


#: The connection limits' defaults are the SIP transport's.
_CONNECTIONS = ConnectionLimits()


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """
    Protection limits, C{[limits]} (SPEC s12). Each breach is answered the
    way a SIP engineer expects and counted in C{/metrics}.

    @ivar max_streams_per_call: Media streams recorded per session; more
        offered m-lines (initial or re-INVITE) are answered with port 0.
    @ivar max_forwards_per_call: SIPRec forwards of one session that are
        ordered and not yet stopped or failed; beyond: REST 409, newCall
        order -> C{SIPRECFORWARDFAILED} reason C{limit}.
    @ivar max_outputs_per_call: Forwards + streams + recordings of one
        session that are ordered and not yet stopped or failed.
    @ivar max_sessions: Default per-tenant cap on live inbound sessions
        (0 = unlimited); beyond: 503 with C{Retry-After}. A tenant's own
        C{max_sessions} overrides it.
    @ivar invite_rate: New INVITEs per second accepted from one source IP
        (token bucket, burst of one second); above: 503 C{Retry-After: 10},
        at most C{invite_rate_answers} such answers per second per source,
        the rest dropped silently. 0 = no limit.
    @ivar invite_rate_answers: See C{invite_rate}.
    @ivar max_unconfirmed_per_source: Sessions one source IP may hold that
        are not confirmed yet (waiting for the application's answer or for
        the ACK); beyond: 503 C{Retry-After: 10}. 0 = no limit.
    @ivar max_connections: Open inbound TCP + TLS connections; more are
        closed at once.
    @ivar tls_handshake_timeout: Seconds an inbound TLS connection has to
        finish its handshake.
    @ivar header_timeout: Seconds a stream connection has to complete a
        message it started (header and body).
    @ivar idle_timeout: Seconds a TCP/TLS connection is kept without a
        complete message in either direction.
    @ivar mandatory_wait: Seconds the SRC's 200 OK may wait for the
        mandatory forwards of a newCall answer (SPEC s13); then the INVITE
        gets 503 as when one fails.
    @ivar overload_lag: Smoothed reactor lag (seconds) that means overload
        (docs/overload.md): new INVITEs beyond the admission rate get 503;
        0 = lag not watched.
    @ivar overload_cpu: Process CPU (fraction of one core) that means
        overload once the reactor lag is half of C{overload_lag}; 0 = CPU
        not watched (both 0: no overload control).
    @ivar overload_retry_after: C{Retry-After} seconds of those 503s.
    """

    max_streams_per_call: int = 4
    max_forwards_per_call: int = 4
    max_outputs_per_call: int = 8
    max_sessions: int = 0
    invite_rate: float = 50.0
    invite_rate_answers: int = 10
    max_unconfirmed_per_source: int = 250
    max_connections: int = _CONNECTIONS.max_connections
    tls_handshake_timeout: float = _CONNECTIONS.tls_handshake_timeout
    header_timeout: float = _CONNECTIONS.header_timeout
    idle_timeout: float = _CONNECTIONS.idle_timeout
    mandatory_wait: float = 32.0
    overload_lag: float = 0.1
    overload_cpu: float = 0.9
    overload_retry_after: int = 2

    @property
    def connections(self) -> ConnectionLimits:
        """
        The four connection keys, as the SIP transport takes them.
        """
        return ConnectionLimits(
            max_connections=self.max_connections,
            tls_handshake_timeout=self.tls_handshake_timeout,
            header_timeout=self.header_timeout,
            idle_timeout=self.idle_timeout,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkConfig:
    """
    One forwarding trunk of a tenant, C{[[tenant.trunk]]}.

    @ivar match: The user part of C{startSIPRecForward.uri} selecting this
        trunk (compared case-sensitively, RFC 3261 s19.1.4).
    @ivar target: FQDN (resolved per RFC 3263) or IP literal, with an
        optional C{:port} (IPv6 as C{[addr]:port}).
    @ivar transport: C{"udp"}, C{"tcp"} or C{"tls"}.
    @ivar username: Digest user name; C{""} = no credentials.
    @ivar password: Digest password (never in C{repr()}).
    @ivar keepalive: Seconds between in-dialog OPTIONS keep-alives to the
        SRS; 0 = none. No answer (or 408/481) ends the forward.
    @ivar session_expires: RFC 4028 session interval requested from the SRS
        (we refresh); 0 = no session timer requested.
    @ivar ring_timeout: Seconds a target may take to answer 2xx after our
        INVITE; then CANCEL and the next target (SPEC s13).
    @ivar down_for: Seconds a target that failed (timeout, 5xx, transport)
        is skipped by new forwards, unless every target is down (SPEC s13).
    @ivar probe_interval: Seconds between OPTIONS probes of each target;
        0 = no probing (SPEC s13).
    """

    match: str
    target: str
    transport: str = "udp"
    username: str = ""
    password: str = field(default="", repr=False)
    keepalive: float = 0.0
    session_expires: int = 0
    ring_timeout: float = 10.0
    down_for: float = 30.0
    probe_interval: float = 0.0

    @property
    def host(self) -> str:
        """
        The host part of C{target} (IPv6 without brackets).
        """
        return split_host_port(self.target)[0]

    @property
    def port(self) -> int | None:
        """
        The explicit port of C{target}, or L{None} (RFC 3263 decides).
        """
        return split_host_port(self.target)[1]


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantConfig:
    """
    One tenant, C{[[tenant]]}, selected by the Request-URI domain.

    @ivar domain: The tenant's SIP domain, normalized by
        L{normalize_domain}.
    @ivar callback_url: Base URL of the application (http or https, no
        trailing slash): C{POST {callback_url}/newCall} and
        C{POST {callback_url}/events}.
    @ivar callback_timeout: Seconds to wait for the C{newCall} answer before
        answering the SRC anyway.
    @ivar api_tokens: Static bearer tokens for the REST API (never in
        C{repr()}).
    @ivar jwt_public_key: Absolute path of a PEM RSA public key; RS256 JWTs
        it verifies are accepted as bearer tokens too.  C{""} = none.
    @ivar signing_secret: The Standard Webhooks secret, C{whsec_<base64>}
        (never in C{repr()}); see L{signing_key}.
    @ivar allowed_sources: Networks allowed to send inbound SIPRec; empty =
        any source.
    @ivar trunks: The tenant's forwarding trunks.
    @ivar missing_metadata: A SIPRec INVITE without
        C{application/rs-metadata+xml}: C{"accept"} (recorded with the SDP's
        streams, no participants) or C{"reject"} (488).
    @ivar non_siprec: An INVITE that is not SIPRec at all (no C{siprec}
        option tag and no metadata): C{"reject"} (488) or C{"accept"}
        (recorded like a SIPRec session without metadata).
    @ivar max_sessions: Live inbound sessions of this tenant (0 =
        unlimited); L{None} = C{[limits] max_sessions}.
    """

    domain: str
    callback_url: str
    signing_secret: str = field(repr=False)
    callback_timeout: float = 5.0
    api_tokens: tuple[str, ...] = field(default=(), repr=False)
    jwt_public_key: str = ""
    allowed_sources: tuple[IPNetwork, ...] = ()
    trunks: tuple[TrunkConfig, ...] = ()
    missing_metadata: str = "accept"
    non_siprec: str = "reject"
    max_sessions: int | None = None

    @property
    def signing_key(self) -> bytes:
        """
        The HMAC key of the Standard Webhooks signature: the base64 part of
        C{signing_secret}, decoded.
        """
        return decode_signing_secret(self.signing_secret)

    def trunk_for(self, match: str) -> TrunkConfig | None:
        """
        Find the trunk a forward URI's user part selects.

        @param match: The user part of C{startSIPRecForward.uri}.
        @return: The trunk, or L{None} if none matches.
        """
        for trunk in self.trunks:
            if trunk.match == match:
                return trunk
        return None

    def allows_source(self, address: str) -> bool:
        """
        Whether an inbound SIPRec INVITE from C{address} is allowed.

        @param address: The source IP address of the request (IPv4-mapped
            IPv6 addresses are matched as IPv4).
        @return: C{True} if C{allowed_sources} is empty or one of its
            networks contains the address; C{False} otherwise, also for a
            value that is not an IP address.
        """
        if not self.allowed_sources:
            return True
        try:
            ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.allowed_sources)


@dataclass(frozen=True, slots=True)
class Config:
    """
    The whole configuration.

    @ivar sip: C{[sip]} (with C{[sip.timers]}).
    @ivar tls: C{[tls]}.
    @ivar rtp: C{[rtp]}.
    @ivar api: C{[api]}.
    @ivar dns: C{[dns]}.
    @ivar events: C{[events]}.
    @ivar log: C{[log]}.
    @ivar limits: C{[limits]}.
    @ivar streams: C{[streams]}.
    @ivar recording: C{[recording]}.
    @ivar tenants: The C{[[tenant]]} entries, in file order.
    @ivar database: C{[database]}.
    @ivar node: C{[node]}.
    @ivar cluster: C{[cluster]}.
    """

    sip: SipConfig = field(default_factory=SipConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    rtp: RtpConfig = field(default_factory=RtpConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    streams: StreamsConfig = field(default_factory=StreamsConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    tenants: tuple[TenantConfig, ...] = ()
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    node: NodeConfig = field(default_factory=NodeConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def max_sessions_for(self, tenant: TenantConfig) -> int:
        """
        @return: The live-session cap of C{tenant} (0 = unlimited).
        """
        if tenant.max_sessions is not None:
            return tenant.max_sessions
        return self.limits.max_sessions

    def tenant_for_domain(self, domain: str) -> TenantConfig | None:
        """
        Find the tenant a Request-URI (or API path) domain selects.

        @param domain: The domain, in any case, with or without a trailing
            dot; IPv6 literals with or without brackets.
        @return: The tenant, or L{None} for an unknown domain.
        """
        wanted = normalize_domain(domain)
        for tenant in self.tenants:
            if tenant.domain == wanted:
                return tenant
        return None


def normalize_domain(domain: str) -> str:
    """
    Normalize a domain for comparison: lower case, no trailing dot, IP
    literals in their compressed form without brackets.

    @param domain: A host name or IP literal.
    @return: The normalized form.
    """
    text = domain.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        pass
    return text.rstrip(".").lower()

