# -*- test-case-name: tests.test_config_documents -*-
"""
Tenant and trunk objects of the provisioning API (SPEC s11): the keys of the
file's C{[[tenant]]} and C{[[tenant.trunk]]} in the same spelling, a
tenant's trunks as a list C{trunks}.

Validation is the file's own code (L{sections.read_tenant},
L{sections.read_trunk}): an API client gets the same checks and the same
messages, with the key named as the JSON field (C{trunks[1].transport}).

Secrets are write-only: L{redacted} replaces every password, API token and
signing secret with L{HIDDEN}, and L{keep_hidden} puts the stored value
back where a client sent L{HIDDEN} unchanged (so a GET, edited and PUT
back, keeps them).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from aiconnect.config import sections
from aiconnect.config.reader import Table
from aiconnect.config.records import TenantConfig, TrunkConfig
from aiconnect.errors import ConfigError

__all__ = [
    "HIDDEN",
    "MAX_LIST",
    "MAX_TRUNKS",
    "keep_hidden",
    "redacted",
    "tenant_document",
    "tenant_from_document",
    "trunk_document",
    "trunk_from_document",
]

#: What a GET shows in place of a secret.
HIDDEN = "***"

#: The most trunks one tenant may have through the API.
MAX_TRUNKS = 64
#: The most API tokens and allowed source networks of a tenant object
#: (each request compares every token; each INVITE every network).
MAX_LIST = {"api_tokens": 32, "allowed_sources": 256}


def _present(document: Mapping[str, Any]) -> dict[str, Any]:
    """
    @return: The object without its C{null} keys (C{null} = the default).
    """
    return {k: v for k, v in document.items() if v is not None}


def trunk_from_document(document: Mapping[str, Any]) -> TrunkConfig:
    """
    @param document: A trunk object.
    @return: The trunk.
    @raise ConfigError: Naming the field at fault.
    """
    return sections.read_trunk(Table(_present(document), "", sections.TRUNK_KEYS))


def tenant_from_document(document: Mapping[str, Any]) -> TenantConfig:
    """
    @param document: A tenant object (C{trunks}: a list of trunk objects).
    @return: The tenant.
    @raise ConfigError: Naming the field at fault (C{trunks[1].target}).
    """
    data = _present(document)
    for key, most in MAX_LIST.items():
        value = data.get(key)
        if isinstance(value, list) and len(value) > most:
            raise ConfigError(key, f"at most {most} entries")
    trunks = data.get("trunks")
    if isinstance(trunks, list):
        if len(trunks) > MAX_TRUNKS:
            raise ConfigError("trunks", f"at most {MAX_TRUNKS} trunks per tenant")
        data["trunks"] = [_present(t) if isinstance(t, dict) else t for t in trunks]
    return sections.read_tenant(Table(data, "", sections.TENANT_DOCUMENT_KEYS), trunks_key="trunks")


def trunk_document(trunk: TrunkConfig) -> dict[str, Any]:
    """
    @return: The trunk as an object of the API, secrets included.
    """
    return {
        "match": trunk.match,
        "target": trunk.target,
        "transport": trunk.transport,
        "username": trunk.username,
        "password": trunk.password,
        "keepalive": trunk.keepalive,
        "session_expires": trunk.session_expires,
        "ring_timeout": trunk.ring_timeout,
        "down_for": trunk.down_for,
        "probe_interval": trunk.probe_interval,
    }


def tenant_document(tenant: TenantConfig) -> dict[str, Any]:
    """
    @return: The tenant as an object of the API, secrets included (what the
        database stores; L{redacted} for a GET).
    """
    return {
        "domain": tenant.domain,
        "callback_url": tenant.callback_url,
        "callback_timeout": tenant.callback_timeout,
        "api_tokens": list(tenant.api_tokens),
        "jwt_public_key": tenant.jwt_public_key,
        "signing_secret": tenant.signing_secret,
        "allowed_sources": [str(network) for network in tenant.allowed_sources],
        "missing_metadata": tenant.missing_metadata,
        "non_siprec": tenant.non_siprec,
        "max_sessions": tenant.max_sessions,
        "trunks": [trunk_document(trunk) for trunk in tenant.trunks],
    }


def _hide_trunk(trunk: dict[str, Any]) -> dict[str, Any]:
    if trunk.get("password"):
        trunk["password"] = HIDDEN
    return trunk


def redacted(document: Mapping[str, Any]) -> dict[str, Any]:
    """
    @param document: A tenant object (L{tenant_document}) or a trunk
        object (L{trunk_document}).
    @return: A copy with every secret shown as L{HIDDEN}.
    """
    shown = copy.deepcopy(dict(document))
    if "match" in shown:
        return _hide_trunk(shown)
    shown["signing_secret"] = HIDDEN
    shown["api_tokens"] = [HIDDEN for _ in shown.get("api_tokens", ())]
    shown["trunks"] = [_hide_trunk(t) for t in shown.get("trunks", ())]
    return shown


def _keep_trunk_password(sent: dict[str, Any], stored: Mapping[str, Any] | None, where: str) -> None:
    if sent.get("password") != HIDDEN:
        return
    if stored is None or not stored.get("password"):
        raise ConfigError(where + "password", f"{HIDDEN!r} keeps a stored password, and there is none")
    sent["password"] = stored["password"]


def keep_hidden(sent: Mapping[str, Any], stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """
    Put the stored secrets back where a client sent L{HIDDEN}.

    @param sent: A tenant or trunk object from a client.
    @param stored: The stored object it replaces (L{tenant_document} or
        L{trunk_document}), or L{None}.
    @return: A copy of C{sent} with the secrets it kept.
    @raise ConfigError: If L{HIDDEN} stands for a secret nothing stores,
        or C{api_tokens} mixes L{HIDDEN} with new tokens (only the whole
        list can be kept).
    """
    result = copy.deepcopy(dict(sent))
    if "signing_secret" not in result and "api_tokens" not in result and "trunks" not in result:
        _keep_trunk_password(result, stored, "")
        return result
    if result.get("signing_secret") == HIDDEN:
        if stored is None:
            raise ConfigError("signing_secret", f"{HIDDEN!r} keeps a stored secret, and there is none")
        result["signing_secret"] = stored["signing_secret"]
    tokens = result.get("api_tokens")
    if isinstance(tokens, list) and HIDDEN in tokens:
        if stored is None or tokens != [HIDDEN] * len(stored["api_tokens"]):
            raise ConfigError("api_tokens", f"send new tokens, or the list of {HIDDEN!r} a GET shows to keep them")
        result["api_tokens"] = list(stored["api_tokens"])
    trunks = result.get("trunks")
    if isinstance(trunks, list):
        old = {t["match"]: t for t in (stored or {}).get("trunks", ())}
        for i, trunk in enumerate(trunks):
            if isinstance(trunk, dict):
                _keep_trunk_password(trunk, old.get(trunk.get("match")), f"trunks[{i}].")
    return result
