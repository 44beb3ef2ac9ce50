"""
Tests for L{aiconnect.api.auth}: the bearer credentials (static tokens
and RS256 JWTs) of the tenant routes.
"""

from __future__ import annotations

import json
import os
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from twisted.logger import capturedLogs, formatEvent

from aiconnect.api import ApiServer
from aiconnect.config import load_string
from aiconnect.errors import ConfigError
from tests.api.helpers import (
    CONFIG_TEMPLATE,
    DOMAIN,
    OTHER_DOMAIN,
    OTHER_TOKEN,
    SECRET,
    TOKEN,
    ApiClient,
    TenantTestCase,
    hs256_with_public_key,
    make_config,
    public_pem,
    rs256,
    temporary_directory,
    unsigned,
)


class AuthenticationTests(TenantTestCase):
    """
    Tests for the bearer credentials of the tenant routes.
    """

    def assertUnauthorized(self, result: tuple[int, Any, Any], challenge: bytes) -> None:
        """
        Assert a 401 JSON answer with the given C{WWW-Authenticate}.
        """
        self.assertError(result, 401)
        self.assertEqual(result[2].headers.getRawHeaders(b"www-authenticate"), [challenge])

    def test_no_credential(self) -> None:
        """
        A tenant route without an Authorization header answers 401 with a Bearer challenge.
        """
        self.assertUnauthorized(
            self.client.call("GET", f"/{DOMAIN}/sessions", token=None), b'Bearer realm="aiconnect"'
        )

    def test_wrong_token(self) -> None:
        """
        A token that is not one of the tenant's answers 401 with error="invalid_token".
        """
        self.assertUnauthorized(
            self.client.call("GET", f"/{DOMAIN}/sessions", token="tok-wrong"),
            b'Bearer realm="aiconnect", error="invalid_token"',
        )

    def test_token_prefix(self) -> None:
        """
        A prefix of a valid token is refused.
        """
        self.assertError(self.client.call("GET", f"/{DOMAIN}/sessions", token=TOKEN[:-1]), 401)

    def test_not_bearer(self) -> None:
        """
        A Basic credential carrying the token is refused.
        """
        response, body = self.client.request(
            "GET", f"/{DOMAIN}/sessions", headers={"Authorization": "Basic " + TOKEN}
        )
        self.assertEqual(response.code, 401)
        self.assertEqual(json.loads(body)["success"], False)

    def test_scheme_case_insensitive(self) -> None:
        """
        The auth scheme is case-insensitive (RFC 7235 s2.1).
        """
        response, _ = self.client.request(
            "GET", f"/{DOMAIN}/sessions", headers={"Authorization": "bearer " + TOKEN}
        )
        self.assertEqual(response.code, 200)

    def test_static_token(self) -> None:
        """
        One of the tenant's api_tokens is accepted.
        """
        code, body, _ = self.client.call("GET", f"/{DOMAIN}/sessions")
        self.assertEqual(code, 200)
        self.assertIs(body["success"], True)

    def test_token_characters(self) -> None:
        """
        A configured token with characters outside RFC 6750's b64token (any but whitespace and controls) works.
        """
        token = "p@ss!w0rd#%\u00e9"
        config = load_string(
            CONFIG_TEMPLATE.format(secret=SECRET, token=token, other_token=OTHER_TOKEN, jwt_key="")
        )
        client = ApiClient(self, ApiServer(config, self.registry))
        response, _ = client.request(
            "GET", f"/{DOMAIN}/sessions", headers={b"Authorization": b"Bearer " + token.encode("utf-8")}
        )
        self.assertEqual(response.code, 200)
        self.assertError(client.call("GET", f"/{DOMAIN}/sessions", token="p@ss!w0rd#%"), 401)

    def test_domain_case(self) -> None:
        """
        The domain of the path is matched in any case.
        """
        code, _, _ = self.client.call("GET", f"/{DOMAIN.upper()}/sessions")
        self.assertEqual(code, 200)

    def test_other_tenants_token(self) -> None:
        """
        A token of another tenant is refused with 403 (SPEC s11: a tenant
        can never see or touch another's), on an unknown domain as on an
        existing one: the answer never tells which domains exist.
        """
        other = self.client.call("GET", f"/{DOMAIN}/sessions", token=OTHER_TOKEN)
        unknown = self.client.call("GET", "/nowhere.example.com/sessions", token=OTHER_TOKEN)
        self.assertError(other, 403)
        self.assertEqual(other[1], unknown[1])

    def test_unknown_domain(self) -> None:
        """
        An unknown domain answers exactly like a wrong token: 401, not 404.
        """
        unknown = self.client.call("GET", "/nowhere.example.com/sessions", token="tok-wrong")
        wrong = self.client.call("GET", f"/{DOMAIN}/sessions", token="tok-wrong")
        self.assertError(unknown, 401)
        self.assertEqual(unknown[1], wrong[1])
        self.assertEqual(
            unknown[2].headers.getRawHeaders(b"www-authenticate"),
            wrong[2].headers.getRawHeaders(b"www-authenticate"),
        )

    def test_post_routes_authenticated(self) -> None:
        """
        Every POST route answers 401 without a credential, before looking at the body.
        """
        for action in (
            "startsiprecforward",
            "stopsiprecforward",
            "startstream",
            "stopstream",
            "startrecording",
            "stoprecording",
            "pause",
            "resume",
        ):
            self.assertError(self.client.call("POST", f"/{DOMAIN}/{action}", token=None, data=b"{"), 401)

    def test_jwt_accepted(self) -> None:
        """
        An RS256 JWT signed with the tenant's key is accepted.
        """
        token = rs256({"sub": "app", "exp": 4102444800})
        code, body, _ = self.client.call("GET", f"/{DOMAIN}/sessions", token=token)
        self.assertEqual(code, 200)
        self.assertEqual([s["sessionId"] for s in body["sessions"]], ["ses_test1"])

    def test_jwt_without_claims(self) -> None:
        """
        An RS256 JWT without exp/nbf/aud is accepted (they are checked only when present).
        """
        self.assertEqual(self.client.call("GET", f"/{DOMAIN}/sessions", token=rs256({"sub": "app"}))[0], 200)

    def test_jwt_audience(self) -> None:
        """
        An aud claim must name the tenant's domain when present.
        """
        good = rs256({"aud": [DOMAIN, "x"]})
        bad = rs256({"aud": OTHER_DOMAIN})
        self.assertEqual(self.client.call("GET", f"/{DOMAIN}/sessions", token=good)[0], 200)
        self.assertError(self.client.call("GET", f"/{DOMAIN}/sessions", token=bad), 401)

    def test_jwt_refused(self) -> None:
        """
        Expired, not-yet-valid, unsigned (alg none), HS256 (key confusion) and foreign-key JWTs are refused.
        """
        refused = {
            "expired": rs256({"sub": "app", "exp": 1000}),
            "not yet valid": rs256({"sub": "app", "nbf": 4102444800}),
            "issued in the future": rs256({"sub": "app", "iat": 4102444800}),
            "alg none": unsigned({"sub": "app"}),
            "HS256 with the public key": hs256_with_public_key({"sub": "app"}),
            "another RSA key": rs256({"sub": "app"}, which=1),
            "tampered": rs256({"sub": "app"})[:-4] + "AAAA",
        }
        for why, token in refused.items():
            with self.subTest(why):
                self.assertError(self.client.call("GET", f"/{DOMAIN}/sessions", token=token), 401)

    def test_jwt_other_tenant(self) -> None:
        """
        A JWT signed with the first tenant's key does not open the second tenant (which has no key).
        """
        token = rs256({"sub": "app"})
        self.assertError(self.client.call("GET", f"/{OTHER_DOMAIN}/sessions", token=token), 401)

    def test_jwt_without_key(self) -> None:
        """
        A tenant without jwt_public_key accepts no JWT at all.
        """
        server = ApiServer(make_config(self, with_jwt=False), self.registry)
        client = ApiClient(self, server)
        self.assertError(client.call("GET", f"/{DOMAIN}/sessions", token=rs256({"sub": "app"})), 401)
        self.assertEqual(client.call("GET", f"/{DOMAIN}/sessions")[0], 200)

    def test_credentials_never_logged(self) -> None:
        """
        Neither a refused token nor a refused JWT appears in the log events.
        """
        token = rs256({"sub": "app", "exp": 1000})
        with capturedLogs() as logged:
            self.client.call("GET", f"/{DOMAIN}/sessions", token="tok-secret-guess")
            self.client.call("GET", f"/{DOMAIN}/sessions", token=token)
            self.client.call("GET", f"/{DOMAIN}/sessions")
        self.assertTrue(logged)
        text = repr(logged) + "".join(formatEvent(e) for e in logged)
        for secret in ("tok-secret-guess", token, token.split(".")[2], TOKEN):
            self.assertNotIn(secret, text)

    def test_non_rsa_key(self) -> None:
        """
        A jwt_public_key that is not an RSA key stops construction with a ConfigError naming the key.
        """
        path = os.path.join(temporary_directory(self), "ec.pem")
        key = ec.generate_private_key(ec.SECP256R1())
        with open(path, "wb") as f:
            f.write(public_pem(key))
        config = load_string(
            CONFIG_TEMPLATE.format(secret=SECRET, token=TOKEN, other_token=OTHER_TOKEN, jwt_key=path)
        )
        error = self.assertRaises(ConfigError, ApiServer, config)
        self.assertIn("tenant[0].jwt_public_key", str(error))
