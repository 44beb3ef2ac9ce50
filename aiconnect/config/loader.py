# -*- test-case-name: tests.test_config -*-
"""
Loading: L{load} reads the file, L{load_string} parses the TOML, and the
whole document is built section by section into a L{Config}, with the
checks across sections (the RTP range against C{sip.udp_port}, C{api.port}
against the SIP stream ports, tenant domains and API tokens unique).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

from aiconnect.config import sections
from aiconnect.config.reader import Table
from aiconnect.config.records import Config, TenantConfig, normalize_domain
from aiconnect.errors import ConfigError

#: The top-level keys: the sections of the file.
TOP_KEYS = ("sip", "tls", "rtp", "api", "dns", "events", "log", "limits", "streams", "recording", "tenant")
#: The sections of SPEC s14 (several nodes, shared storage).
TOP_KEYS += ("database", "node", "cluster")

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


def _overlaps(a: str, b: str) -> bool:
    """
    @return: Whether sockets bound to C{a} and C{b} would share a port space.
    """
    wildcard = ("0.0.0.0", "::")
    return a in wildcard or b in wildcard or normalize_domain(a) == normalize_domain(b)


def check_tenants(tenants: Sequence[TenantConfig], names: Sequence[str]) -> None:
    """
    The checks across tenants: domains and API tokens unique.

    @param tenants: Every tenant in force (the file's and the provisioned
        ones).
    @param names: The key of each tenant in errors: C{tenant[2]} in the
        file; C{""} for the tenant object an API request sends (its fields
        are then named alone: C{api_tokens[0]}).
    @raise ConfigError: Naming the later of two tenants that share a domain
        or a token (never the token itself).
    """

    def key(i: int, name: str) -> str:
        return f"{names[i]}.{name}" if names[i] else name

    def who(i: int) -> str:
        return names[i] or f"tenant {tenants[i].domain!r}"

    domains: dict[str, int] = {}
    token_owner: dict[str, int] = {}
    for i, tenant in enumerate(tenants):
        if tenant.domain in domains:
            raise ConfigError(key(i, "domain"), f"{tenant.domain!r} is already the domain of {who(domains[tenant.domain])}")
        domains[tenant.domain] = i
        for j, token in enumerate(tenant.api_tokens):
            owner = token_owner.setdefault(token, i)
            if owner != i:
                # Never echo the token itself.
                raise ConfigError(
                    key(i, f"api_tokens[{j}]"),
                    f"the same token is an API token of {who(owner)}; tokens must not be shared",
                )


def _build(document: Mapping[str, Any]) -> Config:
    """
    @return: The whole configuration, with the cross-section checks.
    """
    top = Table(document, "", TOP_KEYS)
    sip = sections.read_sip(top.table("sip", sections.SIP_KEYS))
    rtp = sections.read_rtp(top.table("rtp", sections.RTP_KEYS))
    api = sections.read_api(top.table("api", sections.API_KEYS))
    if sip.udp_port and _overlaps(sip.host, rtp.host) and rtp.port_min <= sip.udp_port <= rtp.port_max:
        raise ConfigError(
            "rtp.port_min",
            f"the RTP range {rtp.port_min}..{rtp.port_max} contains sip.udp_port {sip.udp_port}",
        )
    if api.port and _overlaps(sip.host, api.host):
        for name in ("tcp_port", "tls_port"):
            if api.port == getattr(sip, name):
                raise ConfigError("api.port", f"{api.port} is also sip.{name}")
    tenant_tables = top.tables("tenant", sections.TENANT_KEYS)
    tenants = [sections.read_tenant(t) for t in tenant_tables]
    check_tenants(tenants, [f"tenant[{i}]" for i in range(len(tenants))])
    database = sections.read_database(top.table("database", sections.DATABASE_KEYS))
    return Config(
        sip=sip,
        tls=sections.read_tls(top.table("tls", sections.TLS_KEYS), sip),
        rtp=rtp,
        api=api,
        dns=sections.read_dns(top.table("dns", sections.DNS_KEYS)),
        events=sections.read_events(top.table("events", sections.EVENTS_KEYS)),
        log=sections.read_log(top.table("log", sections.LOG_KEYS)),
        limits=sections.read_limits(top.table("limits", sections.LIMITS_KEYS)),
        streams=sections.read_streams(top.table("streams", sections.STREAMS_KEYS)),
        recording=sections.read_recording(top.table("recording", sections.RECORDING_KEYS)),
        tenants=tuple(tenants),
        database=database,
        node=sections.read_node(top.table("node", sections.NODE_KEYS), api, database),
        cluster=sections.read_cluster(top.table("cluster", sections.CLUSTER_KEYS), database),
    )
