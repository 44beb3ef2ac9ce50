# -*- test-case-name: tests.test_config,tests.test_config_mandatory -*-
"""
The sections of the file: for each, the keys it may hold (C{SIP_KEYS} ...)
and a reader (C{read_sip} ...) that turns its L{Table} into its record,
with the checks between keys of the same section (C{sip.tls_port} against
C{sip.tcp_port}, C{rtp.port_max} against C{rtp.port_min}, the trunks of
one tenant ...).

The checks across sections, and the top-level keys, are
L{aiconnect.config.loader}'s.
"""

from __future__ import annotations

import ipaddress
import os
import re

from aiconnect.config import values
from aiconnect.config.reader import Table
from aiconnect.config.records import (
    ApiConfig,
    DnsConfig,
    EventsConfig,
    IPNetwork,
    LimitsConfig,
    RecordingConfig,
    StreamsConfig,
    LogConfig,
    RtpConfig,
    SipConfig,
    TenantConfig,
    TlsConfig,
    TrunkConfig,
    normalize_domain,
)
from aiconnect.errors import ConfigError
from aiconnect.sip.peer import TRANSPORTS
from aiconnect.sip.transaction import TimerConfig
from aiconnect.sip.uri import is_hostname as _is_hostname
from aiconnect.sip.uri import is_ip_literal as _is_ip
from aiconnect.sip.uri import split_host_port
from aiconnect.webhooks.outbox import MEMORY_DATABASE
from aiconnect.webhooks.signing import decode_signing_secret
from aiconnect.config.records import NODE_ID, ClusterConfig, DatabaseConfig, NodeConfig
from aiconnect.storage.url import check_url, is_postgresql

#: The values the choice keys accept.
TLS_VERSIONS = ("1.2", "1.3")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
MISSING_METADATA_POLICIES = ("accept", "reject")
NON_SIPREC_POLICIES = ("reject", "accept")

# RFC 3261 s25.1: user = 1*( unreserved / escaped / user-unreserved )
_SIP_USER = re.compile(r"^(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+$")

#: The keys each section (and sub-table) may hold.
SIP_KEYS = (
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
TLS_KEYS = ("certificate", "private_key", "ca_certificates", "verify_peer", "min_version")
RTP_KEYS = ("host", "port_min", "port_max", "media_timeout", "latch")
API_KEYS = ("host", "port", "keep_ended", "keep_ended_for", "admin_tokens")
DNS_KEYS = ("nameservers", "port")
EVENTS_KEYS = ("database", "retry_for", "retry_initial", "retry_max")
LOG_KEYS = ("format", "level")
STREAMS_KEYS = ("max_buffer", "reconnect_for", "connect_timeout")
RECORDING_KEYS = ("directory", "keep_after_upload", "upload_timeout")
LIMITS_KEYS = (
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
    "mandatory_wait",
    "overload_lag",
    "overload_cpu",
    "overload_retry_after",
)
TENANT_KEYS = (
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
#: The keys of a tenant object of the provisioning API (SPEC s11): the
#: file's, with its trunks as a list C{trunks}.
TENANT_DOCUMENT_KEYS = tuple("trunks" if k == "trunk" else k for k in TENANT_KEYS)
DATABASE_KEYS = ("url",)
NODE_KEYS = ("id", "api_url")
CLUSTER_KEYS = ("secret", "lease")
TRUNK_KEYS = _TRUNK_KEYS = ("match", "target", "transport", "username", "password", "keepalive", "session_expires", "ring_timeout", "down_for", "probe_interval")


def _timers(table: Table) -> TimerConfig:
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


def read_sip(table: Table) -> SipConfig:
    """
    @return: C{[sip]}.
    """
    d = SipConfig()
    config = SipConfig(
        host=values.bind_address(table, "host", d.host),
        public_address=values.advertised_address(table, "public_address", d.public_address),
        private_address=values.advertised_address(table, "private_address", d.private_address),
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


def read_tls(table: Table, sip: SipConfig) -> TlsConfig:
    """
    @return: C{[tls]}; C{sip} tells whether a certificate is needed.
    """
    d = TlsConfig()
    certificate = values.file_path(table, "certificate", d.certificate, must_exist=False)
    private_key = values.file_path(table, "private_key", d.private_key, must_exist=False)
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
        ca_certificates=values.file_path(table, "ca_certificates", d.ca_certificates, must_exist=True),
        verify_peer=table.boolean("verify_peer", d.verify_peer),
        min_version=table.choice("min_version", TLS_VERSIONS, d.min_version),
    )


def read_rtp(table: Table) -> RtpConfig:
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
        host=values.bind_address(table, "host", d.host),
        port_min=port_min,
        port_max=port_max,
        media_timeout=table.number("media_timeout", d.media_timeout, allow_zero=True),
        latch=table.boolean("latch", d.latch),
    )


def read_api(table: Table) -> ApiConfig:
    """
    @return: C{[api]}.
    """
    d = ApiConfig()
    return ApiConfig(
        host=values.bind_address(table, "host", d.host),
        port=table.port("port", d.port),
        keep_ended=table.integer("keep_ended", d.keep_ended, 0, 1_000_000),
        keep_ended_for=table.number("keep_ended_for", d.keep_ended_for, allow_zero=True),
        admin_tokens=tuple(_tokens(table, "admin_tokens")),
    )


def read_dns(table: Table) -> DnsConfig:
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


def read_events(table: Table) -> EventsConfig:
    """
    @return: C{[events]}.
    """
    d = EventsConfig()
    if table.string("database", d.database) == MEMORY_DATABASE:
        database = MEMORY_DATABASE
    else:
        database = values.file_path(table, "database", d.database, must_exist=False)
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


def read_log(table: Table) -> LogConfig:
    """
    @return: C{[log]}.
    """
    d = LogConfig()
    return LogConfig(
        format=table.choice("format", LOG_FORMATS, d.format),
        level=table.choice("level", LOG_LEVELS, d.level),
    )


def read_streams(table: Table) -> StreamsConfig:
    """
    @return: C{[streams]}.
    """
    d = StreamsConfig()
    max_buffer = table.number("max_buffer", d.max_buffer)
    if max_buffer > 60:
        raise ConfigError(table.key("max_buffer"), "must be at most 60 seconds")
    return StreamsConfig(
        max_buffer=max_buffer,
        reconnect_for=table.number("reconnect_for", d.reconnect_for, allow_zero=True),
        connect_timeout=table.number("connect_timeout", d.connect_timeout),
    )


def read_recording(table: Table) -> RecordingConfig:
    """
    @return: C{[recording]}.
    """
    d = RecordingConfig()
    directory = table.string("directory", d.directory)
    if not directory:
        raise ConfigError(table.key("directory"), "must not be empty")
    if "\x00" in directory:
        raise ConfigError(table.key("directory"), "path contains a NUL character")
    return RecordingConfig(
        directory=os.path.abspath(directory),
        keep_after_upload=table.boolean("keep_after_upload", d.keep_after_upload),
        upload_timeout=table.number("upload_timeout", d.upload_timeout),
    )


def read_limits(table: Table) -> LimitsConfig:
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
        mandatory_wait=table.number("mandatory_wait", d.mandatory_wait),
        overload_lag=table.number("overload_lag", d.overload_lag, allow_zero=True),
        overload_cpu=table.number("overload_cpu", d.overload_cpu, allow_zero=True),
        overload_retry_after=table.integer("overload_retry_after", d.overload_retry_after, 0, 3600),
    )


def _tokens(table: Table, name: str) -> list[str]:
    """
    @return: A list of bearer tokens (non-empty, no whitespace or controls).
    """
    tokens = []
    for key, token in table.strings(name):
        if not token or any(c.isspace() or ord(c) < 0x20 for c in token):
            raise ConfigError(key, "a token must be non-empty, without whitespace or control characters")
        tokens.append(token)
    return tokens


def read_trunk(table: Table) -> TrunkConfig:
    """
    @return: One C{[[tenant.trunk]]} (or a trunk object of the API).
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
    ring_timeout = table.number("ring_timeout", 10.0)
    down_for = table.number("down_for", 30.0, allow_zero=True)
    probe_interval = table.number("probe_interval", 0.0, allow_zero=True)
    return TrunkConfig(
        match=match,
        target=target,
        transport=table.choice("transport", TRANSPORTS, "udp"),
        username=username,
        password=password,
        keepalive=keepalive,
        session_expires=session_expires,
        ring_timeout=ring_timeout,
        down_for=down_for,
        probe_interval=probe_interval,
    )


def read_tenant(table: Table, trunks_key: str = "trunk") -> TenantConfig:
    """
    @param trunks_key: The key of its trunks: C{trunk} in the file,
        C{trunks} in a tenant object of the API.
    @return: One C{[[tenant]]} with its trunks.
    """
    domain = table.string("domain")
    if not (_is_ip(domain.strip("[]")) or _is_hostname(domain)):
        raise ConfigError(table.key("domain"), f"{domain!r} is neither a domain name nor an IP address")
    callback_url = values.callback_url(table, "callback_url")
    secret = table.string("signing_secret")
    try:
        decode_signing_secret(secret)
    except ValueError as e:
        # Never echo the secret itself.
        raise ConfigError(table.key("signing_secret"), str(e)) from None
    tokens = _tokens(table, "api_tokens")
    networks: list[IPNetwork] = []
    for key, text in table.strings("allowed_sources"):
        try:
            networks.append(ipaddress.ip_network(text, strict=True))
        except ValueError as e:
            raise ConfigError(key, f"{text!r} is not a CIDR network: {e}") from None
    trunks = [read_trunk(t) for t in table.tables(trunks_key, _TRUNK_KEYS)]
    seen: dict[str, int] = {}
    for i, trunk in enumerate(trunks):
        if trunk.match in seen:
            raise ConfigError(
                f"{table.key(trunks_key)}[{i}].match",
                f"{trunk.match!r} is already the match of {table.key(trunks_key)}[{seen[trunk.match]}]",
            )
        seen[trunk.match] = i
    defaults = TenantConfig(domain="", callback_url="", signing_secret="")
    return TenantConfig(
        domain=normalize_domain(domain),
        callback_url=callback_url,
        signing_secret=secret,
        callback_timeout=table.number("callback_timeout", defaults.callback_timeout),
        api_tokens=tuple(tokens),
        jwt_public_key=values.jwt_public_key(table, "jwt_public_key"),
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



def read_database(table: Table) -> DatabaseConfig:
    """
    @return: C{[database]}.
    """
    url = table.string("url", DatabaseConfig().url)
    try:
        check_url(url)
    except ValueError as e:
        # Never echo the URL: it holds the password.
        raise ConfigError(table.key("url"), str(e)) from None
    return DatabaseConfig(url=url)


def read_node(table: Table, api: ApiConfig, database: DatabaseConfig) -> NodeConfig:
    """
    @return: C{[node]}; an empty C{api_url} is derived from C{api}
        (required when C{database} is PostgreSQL and C{api} cannot say).
    """
    node_id = table.string("id", NodeConfig().id)
    if not NODE_ID.match(node_id):
        raise ConfigError(table.key("id"), f"{node_id!r} is not 1 to 64 of A-Z a-z 0-9 . _ -")
    api_url = values.callback_url(table, "api_url") if table.string("api_url", "") else ""
    if not api_url and api.port and api.host not in ("0.0.0.0", "::"):
        host = f"[{api.host}]" if ":" in api.host else api.host
        api_url = f"http://{host}:{api.port}"
    if not api_url and is_postgresql(database.url):
        raise ConfigError(
            table.key("api_url"), "required when database.url is PostgreSQL and api.host is a wildcard or api.port 0"
        )
    return NodeConfig(id=node_id, api_url=api_url)


def read_cluster(table: Table, database: DatabaseConfig) -> ClusterConfig:
    """
    @return: C{[cluster]}; C{secret} is required when C{database} is
        PostgreSQL.
    """
    secret = table.string("secret", "")
    if secret and (len(secret) < 16 or any(c.isspace() or ord(c) < 0x20 or c == "\x7f" for c in secret)):
        # Never echo the secret itself.
        raise ConfigError(table.key("secret"), "must be at least 16 characters, without whitespace or control characters")
    if not secret and is_postgresql(database.url):
        raise ConfigError(table.key("secret"), "required when database.url is PostgreSQL")
    lease = table.number("lease", ClusterConfig().lease)
    if not 1 <= lease <= 3600:
        raise ConfigError(table.key("lease"), f"{lease:g} is not in 1..3600 seconds")
    return ClusterConfig(secret=secret, lease=lease)
