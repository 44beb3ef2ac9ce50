# -*- test-case-name: tests.api.test_routes,tests.test_call_limits,tests.integration.test_hardening_admission -*-
"""
The L{CallRegistry}: session id -> L{CallRunner}, per tenant; ended calls are kept
a while so the application can still read their final state.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterator

from aiconnect.call import CallState
from aiconnect.runner import CallRunner

#: Ended calls kept for GET /{domain}/sessions/{id}.
KEEP_ENDED = 1000


class CallRegistry:
    """
    All calls of this process.
    """

    def __init__(self, keep_ended: int = KEEP_ENDED) -> None:
        self._calls: dict[str, CallRunner] = {}
        #: Lower-case tenant domain -> its live calls (SPEC s12 max_sessions).
        self._live: dict[str, int] = {}
        self._ended: OrderedDict[str, CallRunner] = OrderedDict()
        self._keep = keep_ended

    def add(self, call: CallRunner) -> None:
        """
        Register a new call; it moves to the ended list when it ends
        (L{session_finished}).
        """
        if call.session_id in self._calls:
            return
        self._calls[call.session_id] = call
        tenant = call.tenant.domain.lower()
        self._live[tenant] = self._live.get(tenant, 0) + 1
        call.finishers.append(self)

    def session_finished(self, call: CallRunner) -> None:
        """
        A call ended: it moves to the ended list.
        """
        if self._calls.pop(call.session_id, None) is None:
            return
        tenant = call.tenant.domain.lower()
        left = self._live.get(tenant, 0) - 1
        if left > 0:
            self._live[tenant] = left
        else:
            self._live.pop(tenant, None)
        self._ended[call.session_id] = call
        while len(self._ended) > self._keep:
            self._ended.popitem(last=False)

    def get(self, tenant_domain: str, session_id: str) -> CallRunner:
        """
        A call of a tenant (live or recently ended).

        @raise KeyError: unknown, or another tenant's.
        """
        call = self._calls.get(session_id) or self._ended.get(session_id)
        if call is None or call.tenant.domain.lower() != tenant_domain.lower():
            raise KeyError(session_id)
        return call

    def active(self, tenant_domain: str | None = None) -> list[CallRunner]:
        """
        The live calls (of one tenant when given).
        """
        return [
            c
            for c in self._calls.values()
            if tenant_domain is None or c.tenant.domain.lower() == tenant_domain.lower()
        ]

    def live_count(self, tenant_domain: str) -> int:
        """
        The number of live calls of a tenant (negotiating, active or
        terminating), in constant time: checked for every new INVITE
        (SPEC s12 C{max_sessions}).

        @param tenant_domain: the tenant's domain (any case).
        """
        return self._live.get(tenant_domain.lower(), 0)

    def __iter__(self) -> Iterator[CallRunner]:
        return iter(list(self._calls.values()))

    def __len__(self) -> int:
        return len(self._calls)

    def counts(self) -> dict[str, Any]:
        """
        Gauges for /metrics.
        """
        states: dict[str, int] = {s.value: 0 for s in CallState}
        for c in self._calls.values():
            states[c.state.value] += 1
        return {"active": len(self._calls), "ended_kept": len(self._ended), "states": states}
