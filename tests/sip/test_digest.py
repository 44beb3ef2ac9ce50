"""
Tests for L{aiconnect.sip.digest}: the RFC 2617 and RFC 7616 examples byte
for byte, and SIP-shaped challenges.
"""

from __future__ import annotations

import hashlib
import re

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.sip.digest import (
    Challenge,
    DigestClient,
    DigestError,
    authorize,
    build_authorization,
    header_names,
    make_cnonce,
    parse_challenge,
    parse_challenges,
    select_challenge,
)

# RFC 2617 s3.5.
RFC2617_CHALLENGE = (
    'Digest realm="testrealm@host.com", qop="auth,auth-int", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
RFC2617_AUTHORIZATION = (
    'Digest username="Mufasa", realm="testrealm@host.com", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, '
    'nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", '
    'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)

# RFC 7616 s3.9.1: the server offers SHA-256 first, then MD5.
RFC7616_CHALLENGES = [
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"',
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"',
]
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_SHA256 = (
    'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
    "algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", nc=00000001, "
    'cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, '
    'response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_MD5_RESPONSE = "8ca523f5e9506fed4657c9700eebdbec"

SECRET = "s3cr3t-Pa55word"


def params(value: str) -> dict[str, str]:
    """
    The parameters of a credentials header value, unquoted, for comparison.
    """
    assert value.startswith("Digest ")
    found = re.findall(r'([a-z]+)=("(?:[^"\\]|\\.)*"|[^,\s]+)', value[len("Digest ") :])
    return {k: re.sub(r"\\(.)", r"\1", v[1:-1]) if v.startswith('"') else v for k, v in found}


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


class RfcExampleTests(SynchronousTestCase):
    """
    The worked examples of the RFCs.
    """

    def test_rfc2617_example(self) -> None:
        """
        The RFC 2617 s3.5 example (MD5, qop=auth, fixed cnonce) is reproduced
        byte for byte.
        """
        value = authorize(RFC2617_CHALLENGE, "GET", "/dir/index.html", "Mufasa", "Circle Of Life", cnonce="0a4f113b")
        self.assertEqual(value, RFC2617_AUTHORIZATION)

    def test_rfc7616_sha256_example(self) -> None:
        """
        The RFC 7616 s3.9.1 example: SHA-256 is chosen over MD5 and every
        parameter, including the response, matches the RFC.
        """
        value = authorize(RFC7616_CHALLENGES, "GET", "/dir/index.html", "Mufasa", "Circle of Life", cnonce=RFC7616_CNONCE)
        self.assertEqual(params(value), params(RFC7616_SHA256))
        self.assertEqual(
            params(value)["response"], "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        )

    def test_rfc7616_md5_example(self) -> None:
        """
        The MD5 challenge of the RFC 7616 s3.9.1 example gives the RFC's MD5
        response.
        """
        value = authorize(RFC7616_CHALLENGES[1], "GET", "/dir/index.html", "Mufasa", "Circle of Life", cnonce=RFC7616_CNONCE)
        self.assertEqual(params(value)["response"], RFC7616_MD5_RESPONSE)
        self.assertEqual(params(value)["algorithm"], "MD5")

    def test_rfc2069_compatibility(self) -> None:
        """
        Without qop the RFC 2069 form is used (no cnonce, no nc), giving the
        corrected RFC 2069 example response.
        """
        challenge = 'Digest realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093"'
        value = authorize(challenge, "GET", "/dir/index.html", "Mufasa", "CircleOfLife")
        p = params(value)
        self.assertEqual(p["response"], "1949323746fe6a43ef61f9606e7febea")
        self.assertNotIn("cnonce", p)
        self.assertNotIn("nc", p)
        self.assertNotIn("qop", p)


class ParseTests(SynchronousTestCase):
    """
    Parsing WWW-Authenticate / Proxy-Authenticate values.
    """

    def test_fields(self) -> None:
        """
        realm, nonce, opaque, algorithm, qop, stale and domain are read;
        names and algorithm case do not matter.
        """
        c = parse_challenge(
            'Digest REALM="atlanta.com", Domain="sip:boxesbybob.com", qop="auth, AUTH-INT", '
            'Nonce="f84f1cec41e6cbe5aea9c8e88d359", opaque="", stale=TRUE, algorithm=sha-256-sess'
        )
        self.assertEqual(
            c,
            Challenge(
                realm="atlanta.com",
                nonce="f84f1cec41e6cbe5aea9c8e88d359",
                algorithm="sha-256-sess",
                opaque="",
                qop=("auth", "auth-int"),
                stale=True,
                domain="sip:boxesbybob.com",
            ),
        )
        self.assertEqual(c.algorithm_name, "SHA-256-SESS")
        self.assertTrue(c.session)
        self.assertTrue(c.supported)

    def test_defaults(self) -> None:
        """
        Without algorithm the challenge is MD5; stale defaults to false.
        """
        c = parse_challenge('Digest realm="r", nonce="n"')
        self.assertEqual((c.algorithm, c.algorithm_name, c.stale, c.qop, c.opaque), (None, "MD5", False, (), None))

    def test_quoted_algorithm_and_escapes(self) -> None:
        """
        A quoted algorithm is accepted, and quoted-pairs are unescaped;
        commas inside quotes do not split.
        """
        c = parse_challenge(r'Digest realm="a \"b\", c", nonce="n\\1", algorithm="SHA-256"')
        self.assertEqual((c.realm, c.nonce, c.algorithm_name), ('a "b", c', "n\\1", "SHA-256"))

    def test_several_challenges_in_one_value(self) -> None:
        """
        One header value may carry several challenges, other schemes
        included; only the Digest ones are returned, in order.
        """
        value = (
            'Basic realm="x", Digest realm="r1", nonce="n1", algorithm=MD5, '
            "Negotiate YIIabc==, Digest realm=r2,nonce=n2,algorithm=SHA-256"
        )
        challenges = parse_challenges(value)
        self.assertEqual([(c.realm, c.nonce, c.algorithm) for c in challenges], [("r1", "n1", "MD5"), ("r2", "n2", "SHA-256")])

    def test_malformed(self) -> None:
        """
        Garbage, a bad parameter or a Digest challenge without nonce is a
        DigestError.
        """
        self.assertRaises(DigestError, parse_challenges, '"quoted first"')
        self.assertRaises(DigestError, parse_challenges, 'Digest realm="r" nonce="n"')
        self.assertRaises(DigestError, parse_challenges, 'Digest realm="r"')
        self.assertRaises(DigestError, parse_challenge, 'Basic realm="r"')

    def test_header_names(self) -> None:
        """
        401 pairs WWW-Authenticate with Authorization, 407 Proxy-Authenticate
        with Proxy-Authorization (RFC 3261 s22.2, s22.3).
        """
        self.assertEqual(header_names(401), ("WWW-Authenticate", "Authorization"))
        self.assertEqual(header_names(407), ("Proxy-Authenticate", "Proxy-Authorization"))
        self.assertRaises(DigestError, header_names, 403)


class SelectTests(SynchronousTestCase):
    """
    Choosing among several challenges.
    """

    def test_strongest_wins(self) -> None:
        """
        SHA-512-256 beats SHA-256, which beats MD5, whatever the order offered.
        """
        md5_ = Challenge("r", "n1", "MD5")
        sha256 = Challenge("r", "n2", "SHA-256")
        sha512 = Challenge("r", "n3", "SHA-512-256")
        self.assertIs(select_challenge([md5_, sha256]), sha256)
        self.assertIs(select_challenge([sha256, md5_]), sha256)
        self.assertIs(select_challenge([md5_, sha512, sha256]), sha512)

    def test_first_among_equals(self) -> None:
        """
        Among equally strong challenges the first offered is used.
        """
        first, second = Challenge("r", "n1", "SHA-256"), Challenge("r", "n2", "SHA-256-sess")
        self.assertIs(select_challenge([first, second]), first)

    def test_unknown_skipped(self) -> None:
        """
        Unknown algorithms and challenges offering only unknown qops are
        skipped.
        """
        weird = Challenge("r", "n1", "SHA-1")
        odd_qop = Challenge("r", "n2", "SHA-256", qop=("auth-conf",))
        md5_ = Challenge("r", "n3", "MD5", qop=("auth-conf", "auth"))
        self.assertIs(select_challenge([weird, odd_qop, md5_]), md5_)

    def test_nothing_usable(self) -> None:
        """
        With no usable challenge the error lists what was offered.
        """
        e = self.assertRaises(DigestError, select_challenge, [Challenge("r", "n", "SHA-1")])
        self.assertIn("SHA-1", str(e))
        self.assertRaises(DigestError, authorize, ['Basic realm="x"'], "INVITE", "sip:a@b", "u", SECRET)


class SipTests(SynchronousTestCase):
    """
    SIP-shaped challenges and credentials.
    """

    uri = "sip:recorder@srs.example.net;transport=tls"

    def test_invite_md5_auth(self) -> None:
        """
        A 401 to an INVITE with MD5 and qop=auth gives credentials computed
        over the method and the Request-URI (RFC 3261 s22.4).
        """
        value = authorize(
            ['Digest realm="srs.example.net", nonce="abc123", qop="auth", algorithm=MD5'],
            "INVITE",
            self.uri,
            "aiconnect",
            SECRET,
            cnonce="c0ffee",
        )
        ha1 = md5("aiconnect:srs.example.net:" + SECRET)
        ha2 = md5("INVITE:" + self.uri)
        expected = md5("%s:abc123:00000001:c0ffee:auth:%s" % (ha1, ha2))
        self.assertEqual(
            value,
            'Digest username="aiconnect", realm="srs.example.net", nonce="abc123", '
            'uri="sip:recorder@srs.example.net;transport=tls", algorithm=MD5, qop=auth, '
            'nc=00000001, cnonce="c0ffee", response="%s"' % (expected,),
        )

    def test_auth_int_hashes_body(self) -> None:
        """
        With only auth-int offered, the body is part of HA2.
        """
        body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"
        c = Challenge("srs", "n", qop=("auth-int",))
        value = build_authorization(c, "INVITE", self.uri, "u", SECRET, body=body, cnonce="cn")
        ha1 = md5("u:srs:" + SECRET)
        ha2 = md5("INVITE:%s:%s" % (self.uri, hashlib.md5(body).hexdigest()))
        self.assertEqual(params(value)["response"], md5("%s:n:00000001:cn:auth-int:%s" % (ha1, ha2)))
        self.assertEqual(params(value)["qop"], "auth-int")
        other = build_authorization(c, "INVITE", self.uri, "u", SECRET, body=body + b"x", cnonce="cn")
        self.assertNotEqual(params(other)["response"], params(value)["response"])

    def test_auth_preferred_unless_forced(self) -> None:
        """
        When both are offered, auth is used unless auth-int is asked for; a qop
        that was not offered cannot be forced.
        """
        c = Challenge("srs", "n", qop=("auth-int", "auth"))
        self.assertEqual(params(build_authorization(c, "INVITE", self.uri, "u", SECRET))["qop"], "auth")
        forced = build_authorization(c, "INVITE", self.uri, "u", SECRET, qop="auth-int", body=b"x")
        self.assertEqual(params(forced)["qop"], "auth-int")
        self.assertRaises(DigestError, build_authorization, Challenge("srs", "n", qop=("auth",)), "INVITE", self.uri, "u", SECRET, qop="auth-int")

    def test_md5_sess(self) -> None:
        """
        MD5-sess folds the nonce and cnonce into HA1 (RFC 2617 s3.2.2.2).
        """
        c = Challenge("srs", "n", "MD5-sess", qop=("auth",))
        value = build_authorization(c, "BYE", self.uri, "u", SECRET, cnonce="cn", nc=3)
        ha1 = md5("%s:n:cn" % (md5("u:srs:" + SECRET),))
        ha2 = md5("BYE:" + self.uri)
        self.assertEqual(params(value)["response"], md5("%s:n:00000003:cn:auth:%s" % (ha1, ha2)))
        self.assertEqual((params(value)["algorithm"], params(value)["nc"]), ("MD5-sess", "00000003"))

    def test_sha512_256(self) -> None:
        """
        SHA-512-256 (RFC 8760) uses SHA-512/256 for every hash.
        """
        def h(text: str) -> str:
            return hashlib.new("sha512_256", text.encode()).hexdigest()

        c = Challenge("srs", "n", "SHA-512-256", qop=("auth",))
        value = build_authorization(c, "INVITE", self.uri, "u", SECRET, cnonce="cn")
        expected = h("%s:n:00000001:cn:auth:%s" % (h("u:srs:" + SECRET), h("INVITE:" + self.uri)))
        self.assertEqual(params(value)["response"], expected)
        self.assertEqual(len(expected), 64)

    def test_opaque_echoed_and_quoting(self) -> None:
        """
        opaque is echoed, even empty; quotes and backslashes in values are
        escaped.
        """
        c = Challenge('re"alm', "n", opaque="")
        value = build_authorization(c, "INVITE", self.uri, 'a"b\\c', SECRET)
        self.assertIn('username="a\\"b\\\\c"', value)
        self.assertIn('realm="re\\"alm"', value)
        self.assertTrue(value.endswith(', opaque=""'))
        self.assertEqual(params(value)["username"], 'a"b\\c')

    def test_uri_object(self) -> None:
        """
        A URI object is written with str().
        """

        class Uri:
            def __str__(self) -> str:
                return "sip:srs@192.0.2.1"

        value = build_authorization(Challenge("r", "n"), "INVITE", Uri(), "u", SECRET)  # type: ignore[arg-type]
        self.assertEqual(params(value)["uri"], "sip:srs@192.0.2.1")

    def test_nonce_count_range(self) -> None:
        """
        nc is eight hex digits and must be in 1..2**32-1.
        """
        c = Challenge("r", "n", qop=("auth",))
        self.assertEqual(params(build_authorization(c, "INVITE", self.uri, "u", SECRET, nc=255))["nc"], "000000ff")
        self.assertRaises(DigestError, build_authorization, c, "INVITE", self.uri, "u", SECRET, nc=0)

    def test_fresh_cnonce(self) -> None:
        """
        By default every answer carries a new random cnonce of 128 bits.
        """
        c = Challenge("r", "n", qop=("auth",))
        first = params(build_authorization(c, "INVITE", self.uri, "u", SECRET))["cnonce"]
        second = params(build_authorization(c, "INVITE", self.uri, "u", SECRET))["cnonce"]
        self.assertNotEqual(first, second)
        self.assertRegex(make_cnonce(), "^[0-9a-f]{32}$")


class DigestClientTests(SynchronousTestCase):
    """
    The stateful client: nonce counts and secrecy.
    """

    def client(self) -> DigestClient:
        return DigestClient("aiconnect", SECRET, cnonce_factory=lambda: "cn")

    def test_nonce_count_increases(self) -> None:
        """
        Requests reusing a nonce count up; a new nonce starts again at 1.
        """
        client = self.client()
        challenge = 'Digest realm="srs", nonce="n1", qop="auth"'
        self.assertEqual(params(client.authorize([challenge], "INVITE", "sip:a@b"))["nc"], "00000001")
        self.assertEqual(params(client.reauthorize("srs", "BYE", "sip:a@b"))["nc"], "00000002")
        self.assertEqual(params(client.authorize(challenge, "INVITE", "sip:a@b"))["nc"], "00000003")
        fresh = 'Digest realm="srs", nonce="n2", qop="auth", stale=true'
        self.assertEqual(params(client.authorize([fresh], "INVITE", "sip:a@b"))["nc"], "00000001")

    def test_reauthorize_unknown_realm(self) -> None:
        """
        Reauthorizing before any challenge of that realm fails.
        """
        self.assertRaises(DigestError, self.client().reauthorize, "srs", "BYE", "sip:a@b")

    def test_password_never_shown(self) -> None:
        """
        The password appears in no repr and no error message.
        """
        client = self.client()
        self.assertNotIn(SECRET, repr(client))
        self.assertIn("aiconnect", repr(client))
        for call in (
            lambda: client.authorize(['Digest realm="r", nonce="n", algorithm=SHA-1'], "INVITE", "sip:a@b"),
            lambda: client.authorize(['Digest realm="r", nonce="n", qop="auth-conf"'], "INVITE", "sip:a@b"),
            lambda: client.authorize(['Digest realm="r"'], "INVITE", "sip:a@b"),
            lambda: client.reauthorize("other", "INVITE", "sip:a@b"),
            lambda: authorize(['Digest realm="r", nonce="n", qop="auth"'], "INVITE", "sip:a@b", "u", SECRET, qop="auth-int"),
        ):
            e = self.assertRaises(DigestError, call)
            self.assertNotIn(SECRET, str(e))
            self.assertNotIn(SECRET, repr(e))
