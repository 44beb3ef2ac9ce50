# -*- test-case-name: tests.api.test_provisioning,tests.integration.test_provisioning -*-
"""
The provisioning routes of the REST API (SPEC s11):

- C{GET /admin/tenants}, C{GET|PUT|DELETE /admin/tenants/{domain}}: the
  tenant objects, with a token of C{[api] admin_tokens};
- C{GET /{domain}/trunks}, C{GET|PUT|DELETE /{domain}/trunks/{match}}: a
  tenant's own trunks, with the tenant's own credential.

L{ProvisioningRoutes} turns requests into L{aiconnect.provisioning.Provisioning}
calls and its answers into JSON; L{aiconnect.api.routes.ApiServer} routes
to it.  Secrets are shown as C{"***"}; C{"***"} sent back keeps them.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.web.iweb import IRequest

from aiconnect.api.auth import peer_of
from aiconnect.api.jsonio import ApiRequestError, json_answer, read_json_object

__all__ = ["ProvisioningRoutes"]

T = TypeVar("T")


def _refused(work: Callable[[], T]) -> T:
    """
    @return: What C{work()} returns.
    @raise ApiRequestError: For a L{ProvisioningError} it raised.
    """
    from aiconnect.provisioning import ProvisioningError

    try:
        return work()
    except ProvisioningError as e:
        raise ApiRequestError(e.status, e.message, e.field) from None


def _changed(
    request: IRequest, change: Coroutine[Any, Any, Any], answer: Callable[[Any], tuple[int, dict[str, Any]]]
) -> Deferred[bytes]:
    """
    Run a change (a coroutine of L{Provisioning}) and answer what
    C{answer(result)} gives; a L{ProvisioningError} becomes the
    L{ApiRequestError} the error handlers answer.
    """
    from aiconnect.provisioning import ProvisioningError

    def refused(failure: Any) -> Any:
        error = failure.trap(ProvisioningError) and failure.value
        raise ApiRequestError(error.status, error.message, error.field)

    def answered(result: Any) -> bytes:
        status, payload = answer(result)
        return json_answer(request, status, payload)

    return defer.ensureDeferred(change).addCallbacks(answered, refused)


class ProvisioningRoutes:
    """
    What the provisioning routes answer (see the module docstring).
    """

    def __init__(self, provisioning: Any, auth: Any) -> None:
        """
        @param provisioning: The L{aiconnect.provisioning.Provisioning}, or
            L{None}: every route answers 503.
        @param auth: The L{aiconnect.api.auth.BearerAuthenticator}.
        """
        self._provisioning = provisioning
        self._auth = auth

    def _service(self) -> Any:
        if self._provisioning is None:
            raise ApiRequestError(503, "provisioning is not available on this server")
        return self._provisioning

    # -- admin ----------------------------------------------------------------

    def list_tenants(self, request: IRequest) -> bytes:
        self._auth.authenticate_admin(request)
        return json_answer(request, 200, {"success": True, "tenants": self._service().tenants()})

    def get_tenant(self, request: IRequest, domain: str) -> bytes:
        self._auth.authenticate_admin(request)
        service = self._service()
        return json_answer(request, 200, {"success": True, "tenant": _refused(lambda: service.tenant(domain))})

    def put_tenant(self, request: IRequest, domain: str) -> Deferred[bytes]:
        who = self._auth.authenticate_admin(request)
        service = self._service()
        body = read_json_object(request)
        return _changed(
            request,
            service.put_tenant(domain, body, who),
            lambda result: (201 if result[0] else 200, {"success": True, "tenant": result[1]}),
        )

    def delete_tenant(self, request: IRequest, domain: str) -> Deferred[bytes]:
        who = self._auth.authenticate_admin(request)
        service = self._service()
        return _changed(request, service.delete_tenant(domain, who), lambda _: (200, {"success": True, "deleted": domain}))

    # -- a tenant's trunks ------------------------------------------------------

    def _tenant(self, request: IRequest, domain: str) -> tuple[Any, str]:
        tenant = self._auth.authenticate(request, domain)
        return tenant, f"tenant {tenant.domain} from {peer_of(request)}"

    def list_trunks(self, request: IRequest, domain: str) -> bytes:
        tenant, _ = self._tenant(request, domain)
        service = self._service()
        return json_answer(request, 200, {"success": True, "trunks": _refused(lambda: service.trunks(tenant))})

    def get_trunk(self, request: IRequest, domain: str, match: str) -> bytes:
        tenant, _ = self._tenant(request, domain)
        service = self._service()
        return json_answer(request, 200, {"success": True, "trunk": _refused(lambda: service.trunk(tenant, match))})

    def put_trunk(self, request: IRequest, domain: str, match: str) -> Deferred[bytes]:
        tenant, who = self._tenant(request, domain)
        service = self._service()
        body = read_json_object(request)
        return _changed(
            request,
            service.put_trunk(tenant, match, body, who),
            lambda result: (201 if result[0] else 200, {"success": True, "trunk": result[1]}),
        )

    def delete_trunk(self, request: IRequest, domain: str, match: str) -> Deferred[bytes]:
        tenant, who = self._tenant(request, domain)
        service = self._service()
        return _changed(request, service.delete_trunk(tenant, match, who), lambda _: (200, {"success": True, "deleted": match}))

