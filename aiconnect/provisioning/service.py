# -*- test-case-name: tests.provisioning.test_service,tests.api.test_provisioning -*-
"""
L{Provisioning}: what the provisioning API and C{SIGHUP} change (SPEC s11).

- Tenants (the admin) and a tenant's trunks (the tenant itself) are
  validated by the file's own code (L{aiconnect.config.documents}), checked
  against every other tenant, stored (L{TenantStore}) and only then put in
  force (L{LiveConfig}): a refused or failed change leaves both as they
  were.  Tenants of the file are read-only here (409).  Changes are
  coroutines (the store is asynchronous) and run one at a time, each
  validated against the state the previous one left.
- L{Provisioning.reload} re-reads the file: tenants, trunks, limits and
  C{[api] admin_tokens} are applied; other changed keys need new sockets or
  a restart and are named in the log line, not applied.
- Every change is logged once (who, what, the names of the fields that
  changed: never a value of a secret) and counted in L{changes}.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import DeferredLock
from twisted.logger import Logger

from aiconnect.config import Config, TenantConfig, load, normalize_domain
from aiconnect.config.documents import (
    keep_hidden,
    redacted,
    tenant_document,
    tenant_from_document,
    trunk_document,
    trunk_from_document,
)
from aiconnect.errors import AiconnectError, ConfigError
from aiconnect.provisioning.live import LiveConfig, compose
from aiconnect.provisioning.store import TenantStore

__all__ = ["MAX_TENANTS", "Provisioning", "ProvisioningError", "changed_keys", "restart_keys"]

#: The most tenants the API may provision.
MAX_TENANTS = 10_000

#: Sections of the file that a reload applies; the others need a restart.
_APPLIED_SECTIONS = ("tenants", "limits")


class ProvisioningError(AiconnectError):
    """
    A change refused: the HTTP status, a message and the field at fault.
    """

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(status, message, field)
        self.status = status
        self.message = message
        self.field = field


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """
    @return: The names of the keys whose values differ, sorted.
    """
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def restart_keys(old: Config, new: Config) -> list[str]:
    """
    @return: The dotted keys a reload cannot apply (they need new sockets or
        a restart): every changed key outside C{[[tenant]]}, C{[limits]} and
        C{[api] admin_tokens}.
    """
    keys = []
    for section in dataclasses.fields(Config):
        name = section.name
        if name in _APPLIED_SECTIONS:
            continue
        before, after = getattr(old, name), getattr(new, name)
        for item in dataclasses.fields(before):
            if item.name != "admin_tokens" and getattr(before, item.name) != getattr(after, item.name):
                keys.append(f"{name}.{item.name}")
    return keys


def _tenant_change(old: TenantConfig, new: TenantConfig) -> str:
    """
    @return: The tenant's domain and the names of what changed (never a
        value): C{example.com (callback_url, trunk aiforward)}.
    """
    before, after = tenant_document(old), tenant_document(new)
    names = [k for k in changed_keys(before, after) if k != "trunks"]
    trunks = changed_keys({t["match"]: t for t in before["trunks"]}, {t["match"]: t for t in after["trunks"]})
    names += ["trunk " + match for match in trunks]
    return f"{new.domain} ({', '.join(names)})"


def _bad(e: ConfigError, prefix: str = "") -> ProvisioningError:
    field = prefix + e.key if e.key else (prefix.rstrip(".") or None)
    return ProvisioningError(400, e.message, field)


class Provisioning:
    """
    Tenants and trunks at run time (see the module docstring).

    @ivar changes: Applied changes by who made them: C{admin}, C{tenant},
        C{reload} (C{aiconnect_config_changes_total}).
    """

    log = Logger()

    def __init__(self, live: LiveConfig, store: TenantStore, path: str | None = None,
                 loader: Callable[[str], Config] = load) -> None:
        """
        @param live: The configuration in force.
        @param store: Where provisioned tenants are kept.
        @param path: The configuration file (L{reload}); L{None} = none.
        @param loader: Reads the file (L{aiconnect.config.load}).
        """
        self.live = live
        self.store = store
        self.path = path
        self._loader = loader
        self.changes = {"admin": 0, "tenant": 0, "reload": 0}
        self._lock = DeferredLock()

    # -- start-up -------------------------------------------------------------

    @classmethod
    def stored_tenants(cls, documents: list[dict[str, Any]], file: Config) -> list[TenantConfig]:
        """
        The stored tenants that can be put in force with C{file}: one that
        no longer validates (a key file gone ...) or that conflicts with
        the file is logged and left out (it stays stored).

        @param documents: What L{TenantStore.load} gave.
        """
        accepted: dict[str, TenantConfig] = {}
        file_domains = {t.domain for t in file.tenants}
        # Every token in force so far: one pass over the stored tenants
        # (not a check of all tenants per stored tenant).
        taken = {token for t in file.tenants for token in t.api_tokens}
        for document in documents:
            domain = document.get("domain")
            try:
                tenant = tenant_from_document(document)
                if tenant.domain in accepted:
                    raise ConfigError("domain", f"{tenant.domain!r} is stored twice")
                if tenant.domain not in file_domains:
                    for j, token in enumerate(tenant.api_tokens):
                        if token in taken:
                            # Never echo the token itself.
                            raise ConfigError(
                                f"api_tokens[{j}]", "the same token is an API token of another tenant; tokens must not be shared"
                            )
            except ConfigError as e:
                cls.log.error(
                    "Provisioning: stored tenant {domain} left out: {key}: {problem}",
                    domain=domain, key=e.key, problem=e.message,
                )
                continue
            accepted[tenant.domain] = tenant
            if tenant.domain in file_domains:
                cls.log.warn(
                    "Provisioning: tenant {domain} of the configuration file shadows the provisioned one",
                    domain=tenant.domain,
                )
            else:
                taken.update(tenant.api_tokens)
        return list(accepted.values())

    # -- reads ------------------------------------------------------------------

    def tenants(self) -> list[dict[str, Any]]:
        """
        @return: Every tenant in force, redacted, each with its C{source}.
        """
        return [self._shown(t) for t in self.live.current.tenants]

    def _shown(self, tenant: TenantConfig) -> dict[str, Any]:
        return dict(redacted(tenant_document(tenant)), source=self.live.source(tenant.domain))

    def tenant(self, domain: str) -> dict[str, Any]:
        """
        @return: One tenant in force, redacted, with its C{source}.
        @raise ProvisioningError: 404 for an unknown domain.
        """
        return self._shown(self._in_force(domain))

    def _in_force(self, domain: str) -> TenantConfig:
        tenant = self.live.current.tenant_for_domain(domain)
        if tenant is None:
            raise ProvisioningError(404, "unknown tenant", "domain")
        return tenant

    # -- tenants (admin) --------------------------------------------------------

    def _writable(self, domain: str) -> None:
        if self.live.source(domain) == "file":
            raise ProvisioningError(
                409, "this tenant is defined in the configuration file: change it there (read-only through the API)", "domain"
            )

    async def put_tenant(self, domain: str, body: Mapping[str, Any], who: str) -> tuple[bool, dict[str, Any]]:
        """
        Create or replace a provisioned tenant.

        @param domain: The domain of the path.
        @param body: The tenant object (C{domain} optional: the path's;
            C{source}, which a GET shows, is ignored).
        @param who: Who asks, for the log (C{admin from 127.0.0.1}).
        @return: (created, the tenant as shown).
        @raise ProvisioningError: 400 naming the field, 409 for a tenant of
            the file or a domain that differs from the path's, 503 when it
            could not be stored.
        """
        async with self._lock:
            return await self._put_tenant(domain, body, who)

    async def _put_tenant(self, domain: str, body: Mapping[str, Any], who: str) -> tuple[bool, dict[str, Any]]:
        sent = dict(body)
        # Read-only (what a GET shows): a GET's object can be sent back.
        sent.pop("source", None)
        sent.setdefault("domain", domain)
        stored = self.live.provisioned.get(normalize_domain(domain))
        try:
            tenant = tenant_from_document(keep_hidden(sent, None if stored is None else tenant_document(stored)))
        except ConfigError as e:
            raise _bad(e) from None
        if tenant.domain != normalize_domain(domain):
            raise ProvisioningError(400, "the domain differs from the path's", "domain")
        self._writable(tenant.domain)
        old = self.live.provisioned.get(tenant.domain)
        if old is None and len(self.live.provisioned) >= MAX_TENANTS:
            raise ProvisioningError(409, f"at most {MAX_TENANTS} provisioned tenants", "domain")
        return old is None, await self._commit(tenant, old, "admin", who)

    async def delete_tenant(self, domain: str, who: str) -> None:
        """
        Delete a provisioned tenant (live calls keep it until they end).

        @raise ProvisioningError: 404 unknown, 409 a tenant of the file,
            503 when it could not be stored.
        """
        async with self._lock:
            tenant = self._in_force(domain)
            self._writable(tenant.domain)
            await self._store(lambda: self.store.delete(tenant.domain))
            provisioned = dict(self.live.provisioned)
            del provisioned[tenant.domain]
            self.live.apply(provisioned=provisioned)
            self._changed("admin", who, "tenant {domain} deleted", domain=tenant.domain)

    # -- trunks (the tenant) ----------------------------------------------------

    def trunk(self, tenant: TenantConfig, match: str) -> dict[str, Any]:
        """
        @return: One trunk of the tenant, redacted.
        @raise ProvisioningError: 404 for an unknown trunk.
        """
        found = self._in_force(tenant.domain).trunk_for(match)
        if found is None:
            raise ProvisioningError(404, "unknown trunk %r" % (match[:64],), "match")
        return redacted(trunk_document(found))

    def trunks(self, tenant: TenantConfig) -> list[dict[str, Any]]:
        """
        @return: The tenant's trunks, redacted.
        """
        current = self._in_force(tenant.domain)
        return [redacted(trunk_document(t)) for t in current.trunks]

    async def put_trunk(self, tenant: TenantConfig, match: str, body: Mapping[str, Any], who: str) -> tuple[bool, dict[str, Any]]:
        """
        Create or replace one trunk of a provisioned tenant.

        @return: (created, the trunk as shown).
        @raise ProvisioningError: 400 naming the field, 409 for a tenant of
            the file, 503 when it could not be stored.
        """
        async with self._lock:
            return await self._put_trunk(tenant, match, body, who)

    async def _put_trunk(self, tenant: TenantConfig, match: str, body: Mapping[str, Any], who: str) -> tuple[bool, dict[str, Any]]:
        current = self._in_force(tenant.domain)
        self._writable(current.domain)
        sent = dict(body)
        sent.setdefault("match", match)
        if sent["match"] != match:
            raise ProvisioningError(400, "the match differs from the path's", "match")
        old_trunk = current.trunk_for(match)
        try:
            trunk = trunk_from_document(keep_hidden(sent, None if old_trunk is None else trunk_document(old_trunk)))
        except ConfigError as e:
            raise _bad(e) from None
        trunks = [t for t in current.trunks if t.match != match]
        if old_trunk is None:
            trunks.append(trunk)
        else:
            trunks.insert(list(current.trunks).index(old_trunk), trunk)
        document = tenant_document(current)
        document["trunks"] = [trunk_document(t) for t in trunks]
        try:
            new = tenant_from_document(document)
        except ConfigError as e:
            raise _bad(e) from None
        await self._commit(new, current, "tenant", who, trunk=match)
        return old_trunk is None, redacted(trunk_document(trunk))

    async def delete_trunk(self, tenant: TenantConfig, match: str, who: str) -> None:
        """
        Delete one trunk of a provisioned tenant (forwards already placed on
        it are not touched).

        @raise ProvisioningError: 404 unknown, 409 a tenant of the file.
        """
        async with self._lock:
            current = self._in_force(tenant.domain)
            if current.trunk_for(match) is None:
                raise ProvisioningError(404, "unknown trunk %r" % (match[:64],), "match")
            self._writable(current.domain)
            new = dataclasses.replace(current, trunks=tuple(t for t in current.trunks if t.match != match))
            await self._commit(new, current, "tenant", who, trunk=match, deleted=True)

    # -- applying ---------------------------------------------------------------

    async def _store(self, write: Callable[[], Any]) -> None:
        try:
            await write()
        except Exception as e:
            self.log.error("Provisioning: the change could not be stored: {reason}", reason=str(e) or type(e).__name__)
            raise ProvisioningError(503, "the change could not be stored; nothing changed") from None

    async def _commit(self, tenant: TenantConfig, old: TenantConfig | None, kind: str, who: str,
                trunk: str | None = None, deleted: bool = False) -> dict[str, Any]:
        try:
            compose(self.live.file, self.live.provisioned, tenant)
        except ConfigError as e:
            raise _bad(e) from None
        document = tenant_document(tenant)
        await self._store(lambda: self.store.put(tenant.domain, document))
        self.live.apply(provisioned={**self.live.provisioned, tenant.domain: tenant})
        if trunk is not None:
            before = {t["match"]: t for t in tenant_document(old)["trunks"]} if old is not None else {}
            after = {t["match"]: t for t in document["trunks"]}
            if deleted:
                self._changed(kind, who, "trunk {match} of {domain} deleted", match=trunk, domain=tenant.domain)
            else:
                fields = changed_keys(before.get(trunk, {}), after[trunk])
                self._changed(
                    kind, who, "trunk {match} of {domain} " + ("updated" if trunk in before else "created") + " ({fields})",
                    match=trunk, domain=tenant.domain, fields=", ".join(fields) or "no change",
                )
        else:
            fields = changed_keys(tenant_document(old) if old is not None else {}, document)
            self._changed(
                kind, who, "tenant {domain} " + ("updated" if old is not None else "created") + " ({fields})",
                domain=tenant.domain, fields=", ".join(fields) or "no change",
            )
        return self._shown(tenant)

    def _changed(self, kind: str, who: str, what: str, **fields: Any) -> None:
        self.changes[kind] += 1
        self.log.info("Provisioning: " + what + " by {who}", who=who, **fields)

    # -- reload (SIGHUP) --------------------------------------------------------

    def reload(self) -> bool:
        """
        Re-read the configuration file and apply what can be applied (see
        the module docstring); one log line either way.

        @return: Whether the file was valid (and applied).
        """
        if self.path is None:
            self.log.warn("SIGHUP: no configuration file to reload")
            return False
        try:
            new = self._loader(self.path)
            compose(new, self.live.provisioned)
        except ConfigError as e:
            self.log.error(
                "SIGHUP: {path} refused, the running configuration stays: {error}", path=self.path, error=str(e)
            )
            return False
        old = self.live.file
        restart = restart_keys(old, new)
        applied = dataclasses.replace(
            old, tenants=new.tenants, limits=new.limits, api=dataclasses.replace(old.api, admin_tokens=new.api.admin_tokens)
        )
        before = {t.domain: t for t in old.tenants}
        after = {t.domain: t for t in new.tenants}
        parts = []
        for label, names in (
            ("tenants added", sorted(set(after) - set(before))),
            ("tenants removed", sorted(set(before) - set(after))),
            ("tenants changed", [_tenant_change(before[d], after[d]) for d in sorted(set(before) & set(after)) if before[d] != after[d]]),
            ("limits changed", changed_keys(dataclasses.asdict(old.limits), dataclasses.asdict(new.limits))),
        ):
            if names:
                parts.append(f"{label}: {', '.join(names)}")
        if old.api.admin_tokens != new.api.admin_tokens:
            parts.append("api.admin_tokens changed")
        if restart:
            parts.append("need a restart (not applied): " + ", ".join(restart))
        if parts[: len(parts) - bool(restart)]:
            self.live.apply(file=applied)
            self.changes["reload"] += 1
        self.log.info(
            "SIGHUP: {path} reloaded: {what}", path=self.path, what="; ".join(parts) if parts else "no change"
        )
        return True
