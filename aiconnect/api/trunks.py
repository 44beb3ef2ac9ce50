# -*- test-case-name: tests.api.test_trunks,tests.integration.test_trunk_health -*-
"""
The trunk routes of the REST API (SPEC s13):

- C{GET /{domain}/trunks/{match}/health}: the trunk and its targets as
  resolved now, each with its health (L{aiconnect.siprec.health});
- C{POST /{domain}/trunks/{match}/test}: DNS, connect, TLS, OPTIONS and
  digest against every target (L{aiconnect.siprec.trunktest}); at most
  L{MAX_TESTS_PER_TENANT} tests of a tenant run at once (429 beyond).

L{TrunkRoutes} does the work; L{aiconnect.api.routes.ApiServer} routes to
it after the tenant's bearer credential was checked.  The trunk's
password never appears: C{credentials} only says whether it has some.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from aiconnect.api.jsonio import ApiRequestError
from aiconnect.config import TenantConfig
from aiconnect.siprec.trunktest import STEP_TIMEOUT, bounded

__all__ = ["MAX_TESTS_PER_TENANT", "TrunkRoutes", "describe_trunk", "find_trunk"]

#: At most this many trunk tests of one tenant run at once.
MAX_TESTS_PER_TENANT = 2

#: Seconds a client is asked to wait after a 429.
RETRY_AFTER = 5


def find_trunk(tenant: TenantConfig, match: str) -> Any:
    """
    @return: The tenant's trunk whose C{match} is C{match}.
    @raise ApiRequestError: 404 naming it (field C{match}).
    """
    trunk = tenant.trunk_for(match)
    if trunk is None:
        raise ApiRequestError(404, "unknown trunk %r" % (match[:64],), "match")
    return trunk


def describe_trunk(trunk: Any) -> dict[str, Any]:
    """
    A trunk as the trunk routes show it (never its password).
    """
    return {
        "match": trunk.match,
        "target": trunk.target,
        "transport": trunk.transport,
        "probeInterval": trunk.probe_interval,
        "downFor": trunk.down_for,
        "ringTimeout": trunk.ring_timeout,
        "credentials": bool(trunk.username),
    }


class TrunkRoutes:
    """
    What the trunk routes answer (see the module docstring).

    @ivar running: tenant domain -> tests running.
    """

    log = Logger()

    def __init__(self, reactor: Any, resolver: Any, health: Any, tester: Any, max_tests: int = MAX_TESTS_PER_TENANT) -> None:
        """
        @param reactor: IReactorTime.
        @param resolver: C{resolve(target, transport)}.
        @param health: the L{aiconnect.siprec.health.TargetHealth}.
        @param tester: the L{aiconnect.siprec.trunktest.TrunkTester}.
        @param max_tests: tests of one tenant at once.
        """
        self._reactor = reactor
        self._resolver = resolver
        self._health = health
        self._tester = tester
        self._max_tests = max_tests
        self.running: dict[str, int] = {}

    async def health(self, tenant: TenantConfig, match: str) -> dict[str, Any]:
        """
        C{GET /{domain}/trunks/{match}/health}.

        @return: C{{"success": true, "trunk": {...}, "dnsError": <text or
            null>, "targets": [<target health>, ...]}}.
        """
        trunk = find_trunk(tenant, match)
        error = None
        peers: list[Any] = []
        try:
            peers = await bounded(self._reactor, self._resolver.resolve(trunk.target, trunk.transport), STEP_TIMEOUT)
        except Exception as e:
            error = getattr(e, "reason", None) or str(e) or type(e).__name__
        return {
            "success": True,
            "trunk": describe_trunk(trunk),
            "dnsError": error,
            "targets": [self._health.describe(peer) for peer in peers],
        }

    async def test(self, tenant: TenantConfig, match: str) -> dict[str, Any]:
        """
        C{POST /{domain}/trunks/{match}/test}.

        @return: C{{"success": true, "trunk": {...}, "ok", "steps": [dns],
            "targets": [{"target", "ok", "steps"}]}}.
        @raise ApiRequestError: 404 for an unknown trunk, 429 when the
            tenant already runs L{MAX_TESTS_PER_TENANT} tests.
        """
        trunk = find_trunk(tenant, match)
        domain = tenant.domain
        if self.running.get(domain, 0) >= self._max_tests:
            raise ApiRequestError(
                429,
                "at most %d trunk tests of a tenant run at once" % (self._max_tests,),
                headers={"Retry-After": str(RETRY_AFTER)},
            )
        self.running[domain] = self.running.get(domain, 0) + 1
        try:
            result = await self._tester.run(trunk)
        finally:
            self.running[domain] -= 1
            if not self.running[domain]:
                del self.running[domain]
        self.log.info("API: trunk {match} tested: ok={ok}", tenant=domain, match=trunk.match, ok=result["ok"])
        return {"success": True, "trunk": describe_trunk(trunk), **result}
