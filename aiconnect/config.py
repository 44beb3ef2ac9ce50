# -*- test-case-name: tests.test_config -*-
"""
The configuration file: TOML (stdlib C{tomllib}) into frozen dataclasses.

C{load(path)} is the only way in: it reads the file once and returns a
L{Config}; components receive the typed sub-configurations (L{SipConfig},
L{TlsConfig} ...), never a dict.  The keys are part of the product contract
(SPEC section 7); the reference for every key, its type, default and meaning is
C{docs/configuration.md}.

Rules:

    - Unknown keys anywhere are errors, as are values of the wrong type or out
      of range.  Every error is a L{ConfigError} naming the dotted key, with
      array indices: C{tenant[0].trunk[1].transport}.
    - Defaults live in the dataclass fields; a missing section or key takes
      them.  The required keys are C{tenant[].domain},
      C{tenant[].callback_url}, C{tenant[].signing_secret},
      C{tenant[].trunk[].match} and C{tenant[].trunk[].target}.
    - Relative file paths (C{tls.certificate}, C{tls.private_key},
      C{tls.ca_certificates}, C{events.database},
      C{tenant[].jwt_public_key}) are resolved against the current working
      directory at load time and stored absolute.
    - Secrets (trunk passwords, API tokens, signing secrets) never appear in
      C{repr()}.

This module imports the standard library and the pure SIP cores only: the
values a SIP adapter takes are defined in the SIP layer and built or
re-exported here (L{TimerConfig} from L{aiconnect.sip.transaction},
L{LimitsConfig.connections} as an L{aiconnect.sip.peer.ConnectionLimits},
L{split_host_port} and the host checks from L{aiconnect.sip.uri}), so the
SIP layer never imports the configuration.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiconnect.errors import ConfigError
from aiconnect.sip.peer import TRANSPORTS, ConnectionLimits
from aiconnect.sip.transaction import TimerConfig
from aiconnect.sip.uri import is_hostname as _is_hostname
from aiconnect.sip.uri import is_ip_literal as _is_ip
from aiconnect.sip.uri import split_host_port
from aiconnect.webhooks.outbox import MEMORY_DATABASE
from aiconnect.webhooks.signing import decode_signing_secret

__all__ = [
    "ApiConfig",
    "Config",
    "DnsConfig",
    "EventsConfig",
    "LogConfig",
    "RtpConfig",
    "SipConfig",
    "TenantConfig",
    "TimerConfig",
    "TlsConfig",
    "TrunkConfig",
    "load",
    "load_string",
    "normalize_domain",
    "split_host_port",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

TLS_VERSIONS = ("1.2", "1.3")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
MISSING_METADATA_POLICIES = ("accept", "reject")
NON_SIPREC_POLICIES = ("reject", "accept")

# RFC 3261 s25.1: user = 1*( unreserved / escaped / user-unreserved )
_SIP_USER = re.compile(r"^(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+$")

_PEM_PUBLIC_KEY_MARKERS = (
    b"-----BEGIN PUBLIC KEY-----",
    b"-----BEGIN RSA PUBLIC KEY-----",
)


# --- value objects -----------------------------------------------------------


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
    """

    host: str = "127.0.0.1"
    port: int = 8080


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
class LogConfig:
    """
    Logging, C{[log]}.

    @ivar format: C{"text"} or C{"json"} (JSON lines).
    @ivar level: The lowest level emitted: C{debug}, C{info}, C{warn},
        C{error} or C{critical}.
    """

    format: str = "text"
    level: str = "info"


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
    """

    match: str
    target: str
    transport: str = "udp"
    username: str = ""
    password: str = field(default="", repr=False)
    keepalive: float = 0.0
    session_expires: int = 0

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
    @ivar tenants: The C{[[tenant]]} entries, in file order.
    """

    sip: SipConfig = field(default_factory=SipConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    rtp: RtpConfig = field(default_factory=RtpConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    tenants: tuple[TenantConfig, ...] = ()

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


# --- public helpers ----------------------------------------------------------


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


# --- loading -----------------------------------------------------------------


def load(path: str | os.PathLike[str]) -> Config:
    """
    Read and validate a configuration file.

    @param path: The TOML file.
    @return: The configuration.
    @raise ConfigError: If the file cannot be read, is not TOML, or any key
        is unknown or invalid.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError("", f"cannot read {os.fspath(path)}: {e.strerror}") from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError("", f"{os.fspath(path)} is not UTF-8: {e}") from e
    return load_string(text)


def load_string(text: str) -> Config:
    """
    Validate configuration text; what L{load} does after reading the file.

    @param text: TOML text.
    @return: The configuration.
    @raise ConfigError: If the text is not TOML, or any key is unknown or
        invalid.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("", f"invalid TOML: {e}") from e
    return _build(document)


# --- the reader --------------------------------------------------------------


class _Missing:
    """
    Marker type of a key without default.
    """


_MISSING = _Missing()


class _Table:
    """
    A TOML table being read: typed getters that name the dotted key in every
    error, and a check that every key present is known.

    @ivar path: The dotted path of the table (C{""} at the top).
    """

    def __init__(self, data: Mapping[str, Any], path: str, known: Sequence[str]) -> None:
        """
        @param data: The table's contents.
        @param path: Its dotted path.
        @param known: The keys it may hold.
        @raise ConfigError: Naming the first unknown key, if any.
        """
        self._data = data
        self.path = path
        for name in data:
            if name not in known:
                raise ConfigError(
                    self.key(name),
                    f"unknown key (known keys: {', '.join(known)})",
                )

    def key(self, name: str) -> str:
        """
        @param name: A key of this table.
        @return: Its dotted path.
        """
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        """
        @param name: A key of this table.
        @return: Whether the key is present.
        """
        return name in self._data

    def raw(self, name: str, default: Any = _MISSING) -> Any:
        """
        @param name: A key of this table.
        @param default: The value when absent; required if omitted.
        @return: The value as parsed by C{tomllib}.
        @raise ConfigError: If the key is absent and required.
        """
        if name in self._data:
            return self._data[name]
        if isinstance(default, _Missing):
            raise ConfigError(self.key(name), "required key is missing")
        return default

    def string(self, name: str, default: str | _Missing = _MISSING) -> str:
        """
        @return: A string value.
        """
        value = self.raw(name, default)
        if not isinstance(value, str):
            raise ConfigError(self.key(name), f"expected a string, got {_describe(value)}")
        return value

    def choice(self, name: str, choices: Sequence[str], default: str) -> str:
        """
        @return: A string value that is one of C{choices}.
        """
        value = self.string(name, default)
        if value not in choices:
            raise ConfigError(
                self.key(name),
                f"{value!r} is not one of {' | '.join(choices)}",
            )
        return value

    def boolean(self, name: str, default: bool) -> bool:
        """
        @return: A boolean value.
        """
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise ConfigError(self.key(name), f"expected true or false, got {_describe(value)}")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        """
        @return: An integer value in C{low..high}.
        """
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.key(name), f"expected an integer, got {_describe(value)}")
        if not low <= value <= high:
            raise ConfigError(self.key(name), f"{value} is not in {low}..{high}")
        return value

    def port(self, name: str, default: int, allow_zero: bool = True) -> int:
        """
        @return: A port number, 0..65535 (1..65535 unless C{allow_zero}).
        """
        return self.integer(name, default, 0 if allow_zero else 1, 65535)

    def number(
        self, name: str, default: float, allow_zero: bool = False
    ) -> float:
        """
        @return: A finite number (integer or float in the file), positive
            (or zero when C{allow_zero}), as a float.
        """
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(self.key(name), f"expected a number, got {_describe(value)}")
        number = float(value)
        if not math.isfinite(number):
            raise ConfigError(self.key(name), f"{value} is not a finite number")
        if number < 0 or (number == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise ConfigError(self.key(name), f"{value} must be {bound}")
        return number

    def strings(self, name: str) -> list[tuple[str, str]]:
        """
        @return: A list of strings (empty when absent), each with the dotted
            key of its element (C{name[i]}).
        """
        value = self.raw(name, [])
        if not isinstance(value, list):
            raise ConfigError(self.key(name), f"expected an array of strings, got {_describe(value)}")
        result = []
        for i, item in enumerate(value):
            key = f"{self.key(name)}[{i}]"
            if not isinstance(item, str):
                raise ConfigError(key, f"expected a string, got {_describe(item)}")
            result.append((key, item))
        return result

    def table(self, name: str, known: Sequence[str]) -> _Table:
        """
        @return: A sub-table (empty when absent).
        """
        value = self.raw(name, {})
        if not isinstance(value, dict):
            raise ConfigError(self.key(name), f"expected a table [{self.key(name)}], got {_describe(value)}")
        return _Table(value, self.key(name), known)

    def tables(self, name: str, known: Sequence[str]) -> list[_Table]:
        """
        @return: The elements of an array of tables (C{[[name]]}), empty
            when absent; element C{i} has the path C{name[i]}.
        """
        value = self.raw(name, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ConfigError(
                self.key(name),
                f"expected an array of tables [[{self.key(name)}]], got {_describe(value)}",
            )
        return [_Table(v, f"{self.key(name)}[{i}]", known) for i, v in enumerate(value)]


def _describe(value: object) -> str:
    """
    @return: The TOML type name of a parsed value, for error messages.
    """
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time"


# --- validators --------------------------------------------------------------


def _bind_address(table: _Table, name: str, default: str) -> str:
    """
    @return: A bind address: an IP literal.
    """
    value = table.string(name, default)
    if not _is_ip(value):
        raise ConfigError(
            table.key(name),
            f"{value!r} is not an IP address (use 0.0.0.0 or :: for all interfaces)",
        )
    return value


def _advertised_address(table: _Table, name: str, default: str) -> str:
    """
    @return: An advertised address: an IP literal or a host name.
    """
    value = table.string(name, default)
    if not (_is_ip(value) or _is_hostname(value)):
        raise ConfigError(table.key(name), f"{value!r} is neither an IP address nor a host name")
    return value


def _path(table: _Table, name: str, default: str, must_exist: bool) -> str:
    """
    @return: An absolute path resolved against the working directory, or
        C{""} when the value is empty.
    """
    value = table.string(name, default)
    if not value:
        return ""
    if "\x00" in value:
        raise ConfigError(table.key(name), "path contains a NUL character")
    resolved = os.path.abspath(value)
    if must_exist and not os.path.isfile(resolved):
        raise ConfigError(table.key(name), f"file {resolved} does not exist")
    return resolved


def _callback_url(table: _Table, name: str) -> str:
    """
    @return: An http(s) base URL without trailing slash, query, fragment or credentials.
    """
    value = table.string(name)
    key = table.key(name)
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as e:
        raise ConfigError(key, f"{value!r} is not a valid URL: {e}") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(key, f"{value!r} is not an http:// or https:// URL")
    host = parts.hostname or ""
    if not host or not (_is_ip(host) or _is_hostname(host)):
        raise ConfigError(key, f"{value!r} has no valid host")
    if port == 0:
        raise ConfigError(key, f"{value!r} has port 0")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            key,
            "credentials in the URL are not supported (requests are signed with signing_secret)",
        )
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ConfigError(
            key,
            f"{value!r} must not have a query or fragment ('/newCall' and '/events' are appended)",
        )
    if any(c.isspace() or ord(c) < 0x20 for c in value):
        raise ConfigError(key, f"{value!r} contains whitespace or control characters")
    return value.rstrip("/")


def _jwt_public_key(table: _Table, name: str) -> str:
    """
    @return: The absolute path of an existing PEM public key file, or C{""}.
    """
    path = _path(table, name, "", must_exist=True)
    if path:
        try:
            with open(path, "rb") as f:
                pem = f.read()
        except OSError as e:
            raise ConfigError(table.key(name), f"cannot read {path}: {e.strerror}") from None
        if not any(marker in pem for marker in _PEM_PUBLIC_KEY_MARKERS):
            raise ConfigError(table.key(name), f"{path} is not a PEM public key (BEGIN PUBLIC KEY)")
    return path


# --- sections ----------------------------------------------------------------

_TOP_KEYS = ("sip", "tls", "rtp", "api", "dns", "events", "log", "limits", "tenant")
_SIP_KEYS = (
    "host",
    "public_address",
    "private_address",
    "udp_port",
    "tcp_port",
    "tls_port",
    "max_message_size",
    "timers",
    "force_rport",
)
_TIMER_KEYS = ("t1", "t2", "t4")
_TLS_KEYS = ("certificate", "private_key", "ca_certificates", "verify_peer", "min_version")
_RTP_KEYS = ("host", "port_min", "port_max", "media_timeout", "latch")
_API_KEYS = ("host", "port")
_DNS_KEYS = ("nameservers", "port")
_EVENTS_KEYS = ("database", "retry_for", "retry_initial", "retry_max")
_LOG_KEYS = ("format", "level")
_LIMITS_KEYS = (
    "max_streams_per_call",
    "max_forwards_per_call",
    "max_outputs_per_call",
    "max_sessions",
    "invite_rate",
    "invite_rate_answers",
    "max_unconfirmed_per_source",
    "max_connections",
    "tls_handshake_timeout",
    "header_timeout",
    "idle_timeout",
)
_TENANT_KEYS = (
    "domain",
    "callback_url",
    "callback_timeout",
    "api_tokens",
    "jwt_public_key",
    "signing_secret",
    "allowed_sources",
    "missing_metadata",
    "non_siprec",
    "max_sessions",
    "trunk",
)
_TRUNK_KEYS = ("match", "target", "transport", "username", "password", "keepalive", "session_expires")


def _timers(table: _Table) -> TimerConfig:
    """
    @return: C{[sip.timers]}.
    """
    d = TimerConfig()
    t1 = table.number("t1", d.t1)
    t2 = table.number("t2", d.t2)
    t4 = table.number("t4", d.t4)
    if t2 < t1:
        raise ConfigError(table.key("t2"), f"{t2} is less than t1 ({t1})")
    return TimerConfig(t1=t1, t2=t2, t4=t4)


def _sip(table: _Table) -> SipConfig:
    """
    @return: C{[sip]}.
    """
    d = SipConfig()
    config = SipConfig(
        host=_bind_address(table, "host", d.host),
        public_address=_advertised_address(table, "public_address", d.public_address),
        private_address=_advertised_address(table, "private_address", d.private_address),
        udp_port=table.port("udp_port", d.udp_port),
        tcp_port=table.port("tcp_port", d.tcp_port),
        tls_port=table.port("tls_port", d.tls_port),
        max_message_size=table.integer("max_message_size", d.max_message_size, 1024, 16 * 1024 * 1024),
        timers=_timers(table.table("timers", _TIMER_KEYS)),
        force_rport=table.boolean("force_rport", d.force_rport),
    )
    if config.tls_port and config.tls_port == config.tcp_port:
        raise ConfigError(table.key("tls_port"), f"{config.tls_port} is also sip.tcp_port")
    return config


def _tls(table: _Table, sip: SipConfig) -> TlsConfig:
    """
    @return: C{[tls]}; C{sip} tells whether a certificate is needed.
    """
    d = TlsConfig()
    certificate = _path(table, "certificate", d.certificate, must_exist=False)
    private_key = _path(table, "private_key", d.private_key, must_exist=False)
    if bool(certificate) != bool(private_key):
        missing = "private_key" if certificate else "certificate"
        raise ConfigError(table.key(missing), "must be set together with tls.certificate/tls.private_key")
    if not certificate and sip.tls_port:
        raise ConfigError(table.key("certificate"), "must be set when sip.tls_port is not 0")
    if certificate:
        cert_exists = os.path.exists(certificate)
        key_exists = os.path.exists(private_key)
        # Both missing: a self-signed pair is created at start-up
        # (aiconnect.tlsutil.ensure_self_signed); one missing is a mistake.
        if cert_exists and not key_exists:
            raise ConfigError(
                table.key("private_key"),
                f"file {private_key} does not exist but {certificate} does",
            )
        if key_exists and not cert_exists:
            raise ConfigError(
                table.key("certificate"),
                f"file {certificate} does not exist but {private_key} does",
            )
    return TlsConfig(
        certificate=certificate,
        private_key=private_key,
        ca_certificates=_path(table, "ca_certificates", d.ca_certificates, must_exist=True),
        verify_peer=table.boolean("verify_peer", d.verify_peer),
        min_version=table.choice("min_version", TLS_VERSIONS, d.min_version),
    )


def _rtp(table: _Table) -> RtpConfig:
    """
    @return: C{[rtp]}.
    """
    d = RtpConfig()
    port_min = table.port("port_min", d.port_min, allow_zero=False)
    port_max = table.port("port_max", d.port_max, allow_zero=False)
    if port_min % 2:
        raise ConfigError(
            table.key("port_min"),
            f"{port_min} is odd (RTP uses even ports, RTCP the odd port above)",
        )
    if port_max < port_min + 1:
        raise ConfigError(
            table.key("port_max"),
            f"{port_max} leaves no RTP/RTCP port pair above port_min ({port_min})",
        )
    return RtpConfig(
        host=_bind_address(table, "host", d.host),
        port_min=port_min,
        port_max=port_max,
        media_timeout=table.number("media_timeout", d.media_timeout, allow_zero=True),
        latch=table.boolean("latch", d.latch),
    )


def _api(table: _Table) -> ApiConfig:
    """
    @return: C{[api]}.
    """
    d = ApiConfig()
    return ApiConfig(
        host=_bind_address(table, "host", d.host),
        port=table.port("port", d.port),
    )


def _dns(table: _Table) -> DnsConfig:
    """
    @return: C{[dns]}.
    """
    d = DnsConfig()
    nameservers = []
    for key, value in table.strings("nameservers"):
        if not _is_ip(value):
            raise ConfigError(key, f"{value!r} is not an IP address")
        nameservers.append(value)
    return DnsConfig(nameservers=tuple(nameservers), port=table.port("port", d.port, allow_zero=False))


def _events(table: _Table) -> EventsConfig:
    """
    @return: C{[events]}.
    """
    d = EventsConfig()
    if table.string("database", d.database) == MEMORY_DATABASE:
        database = MEMORY_DATABASE
    else:
        database = _path(table, "database", d.database, must_exist=False)
        if not database:
            raise ConfigError(table.key("database"), "must not be empty")
    retry_initial = table.number("retry_initial", d.retry_initial)
    retry_max = table.number("retry_max", d.retry_max)
    if retry_initial <= 0:
        raise ConfigError(table.key("retry_initial"), "must be positive")
    if retry_max < retry_initial:
        raise ConfigError(table.key("retry_max"), "must be at least events.retry_initial")
    return EventsConfig(
        database=database,
        retry_for=table.number("retry_for", d.retry_for),
        retry_initial=retry_initial,
        retry_max=retry_max,
    )


def _log(table: _Table) -> LogConfig:
    """
    @return: C{[log]}.
    """
    d = LogConfig()
    return LogConfig(
        format=table.choice("format", LOG_FORMATS, d.format),
        level=table.choice("level", LOG_LEVELS, d.level),
    )


def _limits(table: _Table) -> LimitsConfig:
    """
    @return: C{[limits]}.
    """
    d = LimitsConfig()
    max_forwards = table.integer("max_forwards_per_call", d.max_forwards_per_call, 0, 1000)
    max_outputs = table.integer("max_outputs_per_call", d.max_outputs_per_call, 0, 1000)
    return LimitsConfig(
        max_streams_per_call=table.integer("max_streams_per_call", d.max_streams_per_call, 1, 64),
        max_forwards_per_call=max_forwards,
        max_outputs_per_call=max_outputs,
        max_sessions=table.integer("max_sessions", d.max_sessions, 0, 10_000_000),
        invite_rate=table.number("invite_rate", d.invite_rate, allow_zero=True),
        invite_rate_answers=table.integer("invite_rate_answers", d.invite_rate_answers, 0, 10_000),
        max_unconfirmed_per_source=table.integer(
            "max_unconfirmed_per_source", d.max_unconfirmed_per_source, 0, 10_000_000
        ),
        max_connections=table.integer("max_connections", d.max_connections, 1, 10_000_000),
        tls_handshake_timeout=table.number("tls_handshake_timeout", d.tls_handshake_timeout),
        header_timeout=table.number("header_timeout", d.header_timeout),
        idle_timeout=table.number("idle_timeout", d.idle_timeout),
    )


def _trunk(table: _Table) -> TrunkConfig:
    """
    @return: One C{[[tenant.trunk]]}.
    """
    match = table.string("match")
    if not _SIP_USER.match(match):
        raise ConfigError(table.key("match"), f"{match!r} is not a SIP user part (RFC 3261 s25.1)")
    target = table.string("target")
    try:
        split_host_port(target)
    except ValueError as e:
        raise ConfigError(table.key("target"), f"{target!r}: {e}") from None
    username = table.string("username", "")
    password = table.string("password", "")
    if password and not username:
        raise ConfigError(table.key("username"), "a password is set without a username")
    for name, value in (("username", username), ("password", password)):
        if any(ord(c) < 0x20 or c == "\x7f" for c in value):
            raise ConfigError(table.key(name), "contains control characters")
    keepalive = table.number("keepalive", 0.0, allow_zero=True)
    session_expires = table.integer("session_expires", 0, 0, 86400)
    if session_expires and session_expires < 90:
        raise ConfigError(table.key("session_expires"), "must be 0 or at least 90 (RFC 4028 Min-SE)")
    return TrunkConfig(
        match=match,
        target=target,
        transport=table.choice("transport", TRANSPORTS, "udp"),
        username=username,
        password=password,
        keepalive=keepalive,
        session_expires=session_expires,
    )


def _tenant(table: _Table) -> TenantConfig:
    """
    @return: One C{[[tenant]]} with its trunks.
    """
    domain = table.string("domain")
    if not (_is_ip(domain.strip("[]")) or _is_hostname(domain)):
        raise ConfigError(table.key("domain"), f"{domain!r} is neither a domain name nor an IP address")
    callback_url = _callback_url(table, "callback_url")
    secret = table.string("signing_secret")
    try:
        decode_signing_secret(secret)
    except ValueError as e:
        # Never echo the secret itself.
        raise ConfigError(table.key("signing_secret"), str(e)) from None
    tokens = []
    for key, token in table.strings("api_tokens"):
        if not token or any(c.isspace() or ord(c) < 0x20 for c in token):
            raise ConfigError(key, "a token must be non-empty, without whitespace or control characters")
        tokens.append(token)
    networks: list[IPNetwork] = []
    for key, text in table.strings("allowed_sources"):
        try:
            networks.append(ipaddress.ip_network(text, strict=True))
        except ValueError as e:
            raise ConfigError(key, f"{text!r} is not a CIDR network: {e}") from None
    trunks = [_trunk(t) for t in table.tables("trunk", _TRUNK_KEYS)]
    seen: dict[str, int] = {}
    for i, trunk in enumerate(trunks):
        if trunk.match in seen:
            raise ConfigError(
                f"{table.key('trunk')}[{i}].match",
                f"{trunk.match!r} is already the match of {table.key('trunk')}[{seen[trunk.match]}]",
            )
        seen[trunk.match] = i
    defaults = TenantConfig(domain="", callback_url="", signing_secret="")
    return TenantConfig(
        domain=normalize_domain(domain),
        callback_url=callback_url,
        signing_secret=secret,
        callback_timeout=table.number("callback_timeout", defaults.callback_timeout),
        api_tokens=tuple(tokens),
        jwt_public_key=_jwt_public_key(table, "jwt_public_key"),
        allowed_sources=tuple(networks),
        trunks=tuple(trunks),
        missing_metadata=table.choice(
            "missing_metadata", MISSING_METADATA_POLICIES, defaults.missing_metadata
        ),
        non_siprec=table.choice("non_siprec", NON_SIPREC_POLICIES, defaults.non_siprec),
        max_sessions=(
            table.integer("max_sessions", 0, 0, 10_000_000) if table.has("max_sessions") else None
        ),
    )


def _overlaps(a: str, b: str) -> bool:
    """
    @return: Whether sockets bound to C{a} and C{b} would share a port space.
    """
    wildcard = ("0.0.0.0", "::")
    return a in wildcard or b in wildcard or normalize_domain(a) == normalize_domain(b)


def _build(document: Mapping[str, Any]) -> Config:
    """
    @return: The whole configuration, with the cross-section checks.
    """
    top = _Table(document, "", _TOP_KEYS)
    sip = _sip(top.table("sip", _SIP_KEYS))
    rtp = _rtp(top.table("rtp", _RTP_KEYS))
    api = _api(top.table("api", _API_KEYS))
    if sip.udp_port and _overlaps(sip.host, rtp.host) and rtp.port_min <= sip.udp_port <= rtp.port_max:
        raise ConfigError(
            "rtp.port_min",
            f"the RTP range {rtp.port_min}..{rtp.port_max} contains sip.udp_port {sip.udp_port}",
        )
    if api.port and _overlaps(sip.host, api.host):
        for name in ("tcp_port", "tls_port"):
            if api.port == getattr(sip, name):
                raise ConfigError("api.port", f"{api.port} is also sip.{name}")
    tenant_tables = top.tables("tenant", _TENANT_KEYS)
    tenants = [_tenant(t) for t in tenant_tables]
    domains: dict[str, int] = {}
    token_owner: dict[str, int] = {}
    for i, tenant in enumerate(tenants):
        if tenant.domain in domains:
            raise ConfigError(
                f"tenant[{i}].domain",
                f"{tenant.domain!r} is already the domain of tenant[{domains[tenant.domain]}]",
            )
        domains[tenant.domain] = i
        for j, token in enumerate(tenant.api_tokens):
            owner = token_owner.setdefault(token, i)
            if owner != i:
                # Never echo the token itself.
                raise ConfigError(
                    f"tenant[{i}].api_tokens[{j}]",
                    f"the same token is an API token of tenant[{owner}]; tokens must not be shared",
                )
    return Config(
        sip=sip,
        tls=_tls(top.table("tls", _TLS_KEYS), sip),
        rtp=rtp,
        api=api,
        dns=_dns(top.table("dns", _DNS_KEYS)),
        events=_events(top.table("events", _EVENTS_KEYS)),
        log=_log(top.table("log", _LOG_KEYS)),
        limits=_limits(top.table("limits", _LIMITS_KEYS)),
        tenants=tuple(tenants),
    )
