# -*- test-case-name: tests.api.test_auth -*-
"""
Bearer credentials of the tenant routes (RFC 6750): one of the tenant's
C{api_tokens}, or an RS256 JWT verified with its C{jwt_public_key}; and
of the provisioning API's admin routes: one of C{[api] admin_tokens}.

The configuration may change while the process runs (SPEC s11,
L{aiconnect.provisioning.LiveConfig}): every request is checked against the
tenants in force, and the JWT keys are loaded again when they change.
"""

from __future__ import annotations

import hashlib
import hmac
import re

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from aiconnect.api.jsonio import ApiRequestError
from aiconnect.config import Config, TenantConfig, normalize_domain
from aiconnect.errors import ConfigError

#: Longest bearer credential looked at (JWTs included).
MAX_CREDENTIAL = 8192

#: Seconds of clock skew allowed on a JWT's C{exp}, C{nbf} and C{iat}.
JWT_LEEWAY = 30

# RFC 6750 s2.1 asks for a b64token, but configured api_tokens may hold any
# character but whitespace and controls (config.py): accept those.
_CREDENTIAL = re.compile(rb"[^\x00-\x20\x7f]+\Z")
_REALM = 'Bearer realm="aiconnect"'


class BearerAuthenticator:
    """
    Checks the credential of a tenant route against the configuration.
    """

    log = Logger()

    def __init__(self, config: Config) -> None:
        """
        @param config: The configuration (tenants: domains, API tokens, JWT
            public keys).
        @raise ConfigError: If a tenant's C{jwt_public_key} is not a
            readable PEM RSA public key.
        """
        self._config = config
        self._jwt_keys = load_jwt_keys(config)
        self._keys_of = config.tenants
        self._owners: dict[bytes, TenantConfig] = {}
        self._owners_of: object = None

    def _keys(self) -> dict[str, RSAPublicKey]:
        """
        @return: Tenant domain -> JWT key, for the tenants in force.
        """
        tenants = self._config.tenants
        if tenants is not self._keys_of:
            try:
                self._jwt_keys = load_jwt_keys(self._config)
            except ConfigError as e:
                # Checked when the change was made; a key file that went
                # bad since keeps the keys loaded before.
                self.log.error("API: JWT keys not reloaded: {error}", error=str(e))
            self._keys_of = tenants
        return self._jwt_keys

    def authenticate_admin(self, request: IRequest) -> str:
        """
        Check the bearer credential of an admin route: one of C{[api]
        admin_tokens} (constant-time comparison).

        @return: Who asks, for the change log (C{admin from <address>}).
        @raise ApiRequestError: 401 with C{WWW-Authenticate: Bearer}.
        """
        header = request.getHeader(b"authorization") or b""
        scheme, _, credential = header.strip().partition(b" ")
        credential = credential.strip()
        matched = False
        if scheme.lower() == b"bearer" and 0 < len(credential) <= MAX_CREDENTIAL:
            for token in self._config.api.admin_tokens:
                matched |= hmac.compare_digest(credential, token.encode("utf-8"))
        peer = peer_of(request)
        if not matched:
            self.log.info("API: admin authentication failed from {peer}", peer=peer)
            raise ApiRequestError(
                401, "invalid admin credential", headers={"WWW-Authenticate": _REALM + ', error="invalid_token"'}
            )
        return "admin from " + peer

    def authenticate(self, request: IRequest, domain: str) -> TenantConfig:
        """
        Check the bearer credential of a tenant route (RFC 6750): one of the
        tenant's C{api_tokens} (constant-time comparison), or an RS256 JWT
        its C{jwt_public_key} verifies (C{exp}, C{nbf}, C{iat} honoured when
        present, L{JWT_LEEWAY} seconds of skew; an C{aud} claim, when
        present, must name the tenant's domain).  An unknown domain is
        refused like a wrong credential, so the answer never tells which
        domains exist.  The credential is never logged.

        @param request: The request.
        @param domain: The domain of the path.
        @return: The tenant.
        @raise ApiRequestError: 401 with C{WWW-Authenticate: Bearer}.
        """
        header = request.getHeader(b"authorization")
        tenant = self._config.tenant_for_domain(domain)
        peer = peer_of(request)
        if header is None:
            self.log.debug("API: no credential for {domain} from {peer}", domain=domain, peer=peer)
            raise ApiRequestError(401, "missing bearer credential", headers={"WWW-Authenticate": _REALM})
        scheme, _, credential = header.strip().partition(b" ")
        credential = credential.strip()
        why: str | None = None
        if scheme.lower() != b"bearer" or not credential:
            why = "not a Bearer credential"
        elif len(credential) > MAX_CREDENTIAL or not _CREDENTIAL.match(credential):
            why = "malformed credential"
        elif tenant is None:
            why = "unknown domain"
        elif not self._credential_valid(tenant, credential):
            why = "credential refused"
        if why in ("unknown domain", "credential refused") and self._owner(credential) is not None:
            # A valid credential of another tenant: forbidden, whichever
            # domain the path names (nothing said about it).
            self.log.info(
                "API: a credential of another tenant was sent for {domain} from {peer}", domain=domain, peer=peer
            )
            raise ApiRequestError(403, "this credential is not valid for this tenant")
        if why is not None or tenant is None:
            self.log.info(
                "API: authentication failed for {domain} from {peer}: {reason}",
                domain=domain,
                peer=peer,
                reason=why,
            )
            raise ApiRequestError(
                401,
                "invalid bearer credential",
                headers={"WWW-Authenticate": _REALM + ', error="invalid_token"'},
            )
        return tenant

    def _owner(self, credential: bytes) -> TenantConfig | None:
        """
        @return: The tenant one of whose static tokens C{credential} is.

        One lookup of the credential's SHA-256 in an index of every token's
        (rebuilt when the tenants change), not a comparison with every
        token of every tenant: a refused request costs the same with ten
        thousand tenants as with one, and the lookup's timing tells nothing
        of a token (only of a digest).
        """
        tenants = self._config.tenants
        if tenants is not self._owners_of:
            self._owners = {
                hashlib.sha256(token.encode("utf-8")).digest(): tenant for tenant in tenants for token in tenant.api_tokens
            }
            self._owners_of = tenants
        return self._owners.get(hashlib.sha256(credential).digest())

    @staticmethod
    def _token_matches(tenant: TenantConfig, credential: bytes) -> bool:
        matched = False
        for token in tenant.api_tokens:
            # Compare against every token: the time taken says nothing.
            matched |= hmac.compare_digest(credential, token.encode("utf-8"))
        return matched

    def _credential_valid(self, tenant: TenantConfig, credential: bytes) -> bool:
        """
        @param tenant: The tenant of the path.
        @param credential: The bearer credential (no whitespace or controls).
        @return: Whether it is one of the tenant's tokens or a JWT its key
            verifies.
        """
        if self._token_matches(tenant, credential):
            return True
        key = self._keys().get(tenant.domain)
        if key is None or credential.count(b".") != 2:
            return False
        try:
            claims = jwt.decode(
                credential.decode("ascii"),
                key,
                algorithms=["RS256"],
                leeway=JWT_LEEWAY,
                options={"verify_aud": False},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as e:
            self.log.debug("API: JWT refused for {domain}: {reason}", domain=tenant.domain, reason=str(e))
            return False
        audience = claims.get("aud")
        if audience is None:
            return True
        names = [audience] if isinstance(audience, str) else audience
        if not isinstance(names, list):
            return False
        return any(isinstance(n, str) and normalize_domain(n) == tenant.domain for n in names)


def peer_of(request: IRequest) -> str:
    """
    @return: The client's address, for logs.
    """
    address = request.getClientAddress()
    host = getattr(address, "host", None)
    return str(host) if host is not None else str(address)


def load_jwt_keys(config: Config) -> dict[str, RSAPublicKey]:
    """
    Load every tenant's C{jwt_public_key}.

    @param config: The configuration.
    @return: Tenant domain -> RSA public key.
    @raise ConfigError: Naming C{tenant[i].jwt_public_key} if a file cannot
        be read or holds no RSA public key.
    """
    keys: dict[str, RSAPublicKey] = {}
    for i, tenant in enumerate(config.tenants):
        if not tenant.jwt_public_key:
            continue
        where = f"tenant[{i}].jwt_public_key"
        try:
            with open(tenant.jwt_public_key, "rb") as f:
                pem = f.read()
        except OSError as e:
            raise ConfigError(where, f"cannot read {tenant.jwt_public_key}: {e.strerror}") from None
        try:
            key = load_pem_public_key(pem)
        except (ValueError, TypeError) as e:
            raise ConfigError(where, f"{tenant.jwt_public_key} is not a PEM public key: {e}") from None
        if not isinstance(key, RSAPublicKey):
            raise ConfigError(where, f"{tenant.jwt_public_key} is not an RSA key (RS256 needs one)")
        keys[tenant.domain] = key
    return keys
