# -*- test-case-name: tests.provisioning -*-
"""
Provisioning and reload (SPEC s11): tenants and trunks changed while the
process runs, without touching live calls.

The package's rooms: L{store} (L{TenantStore}: where provisioned tenants are
kept; SQLite in the events database), L{live} (L{LiveConfig}: the
configuration in force, read like a L{aiconnect.config.Config}) and
L{service} (L{Provisioning}: validate, store, apply, log and count each
change; C{SIGHUP} reload).  The REST routes are in
L{aiconnect.api.provisioning}.
"""

from __future__ import annotations

from aiconnect.provisioning.live import LiveConfig, compose
from aiconnect.provisioning.service import MAX_TENANTS, Provisioning, ProvisioningError
from aiconnect.provisioning.store import SqliteTenantStore, TenantStore

__all__ = ["MAX_TENANTS", "LiveConfig", "Provisioning", "ProvisioningError", "SqliteTenantStore", "TenantStore", "compose"]
