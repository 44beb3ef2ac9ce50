# -*- test-case-name: tests.provisioning.test_live -*-
"""
L{LiveConfig}: the configuration in force, which provisioning and reload
replace while the process runs (SPEC s11).

It reads like a L{Config} (every attribute is the current one's:
C{live.limits}, C{live.tenant_for_domain(...)}), so the code paths that
read tenants, trunks and limits (SIP admission, newCall, REST auth,
forwarding, signing) see a change with their next session or request, and
a call keeps the L{TenantConfig} it started with: each change builds a new
frozen L{Config}, never edits one.

The tenants in force are the file's (C{[[tenant]]}, read-only through the
API) followed by the provisioned ones whose domain the file does not
define.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from twisted.logger import Logger

from aiconnect.config import Config, TenantConfig, normalize_domain
from aiconnect.config.loader import check_tenants

__all__ = ["LiveConfig", "compose"]

#: Called after each change with (old, new).
Listener = Callable[[Config, Config], None]


def compose(file: Config, provisioned: Mapping[str, TenantConfig], new: TenantConfig | None = None) -> Config:
    """
    The configuration in force for a file configuration and provisioned
    tenants, checked across tenants (domains and API tokens unique).

    @param file: The file's configuration.
    @param provisioned: Domain -> provisioned tenant.
    @param new: A tenant an API request sends (placed last, so that a
        conflict names its field alone: C{api_tokens[0]}), or L{None}.
    @return: The configuration.
    @raise ConfigError: If two tenants share an API token.
    """
    file_domains = {tenant.domain for tenant in file.tenants}
    extra = [t for d, t in sorted(provisioned.items()) if d not in file_domains and (new is None or d != new.domain)]
    names = [f"tenant[{i}]" for i in range(len(file.tenants))]
    names += [f"provisioned tenant {t.domain!r}" for t in extra]
    tenants = list(file.tenants) + extra
    if new is not None:
        tenants.append(new)
        names.append("")
    check_tenants(tenants, names)
    return dataclasses.replace(file, tenants=tuple(tenants))


class LiveConfig:
    """
    The configuration in force (see the module docstring).

    @ivar file: The file's configuration as applied (sections that need a
        restart keep their start-up values).
    @ivar provisioned: Domain -> provisioned tenant (those the file
        shadows included).
    @ivar current: The L{Config} in force.
    """

    log = Logger()

    def __init__(self, file: Config, provisioned: Iterable[TenantConfig] = ()) -> None:
        """
        @raise ConfigError: If the tenants conflict (L{compose}).
        """
        self.file = file
        self.provisioned = {tenant.domain: tenant for tenant in provisioned}
        self.current = compose(file, self.provisioned)
        self._by_domain = {tenant.domain: tenant for tenant in self.current.tenants}
        self._listeners: list[Listener] = []

    def __getattr__(self, name: str) -> Any:
        # Only names this object does not have: the current Config's.
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.current, name)

    def tenant_for_domain(self, domain: str) -> TenantConfig | None:
        """
        L{Config.tenant_for_domain} through an index: one lookup per INVITE
        or request however many tenants are provisioned.
        """
        return self._by_domain.get(normalize_domain(domain))

    def listen(self, listener: Listener) -> None:
        """
        Call C{listener(old, new)} after each change.
        """
        self._listeners.append(listener)

    def source(self, domain: str) -> str | None:
        """
        @param domain: A normalized tenant domain.
        @return: C{"file"}, C{"api"} or L{None} (no such tenant in force).
        """
        if any(t.domain == domain for t in self.file.tenants):
            return "file"
        return "api" if domain in self.provisioned else None

    def apply(self, file: Config | None = None, provisioned: Mapping[str, TenantConfig] | None = None) -> Config:
        """
        Put a new file configuration and/or provisioned tenants in force.

        @return: The new configuration.
        @raise ConfigError: If its tenants conflict (nothing changed).
        """
        file = self.file if file is None else file
        tenants = self.provisioned if provisioned is None else dict(provisioned)
        new = compose(file, tenants)
        old, self.file, self.provisioned, self.current = self.current, file, tenants, new
        self._by_domain = {tenant.domain: tenant for tenant in new.tenants}
        for listener in list(self._listeners):
            try:
                listener(old, new)
            except Exception:
                self.log.failure("A component failed to take the new configuration")
        return new
