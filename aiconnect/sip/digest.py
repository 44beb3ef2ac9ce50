# -*- test-case-name: tests.sip.test_digest -*-
"""
HTTP Digest authentication for a SIP UAC (RFC 3261 s22, RFC 2617, RFC 7616,
RFC 8760).

Pure module: standard library only (C{hashlib}, C{secrets}), no I/O.

    - L{parse_challenges} reads one C{WWW-Authenticate} or
      C{Proxy-Authenticate} header value (it may hold several challenges,
      including non-Digest ones, which are skipped) into L{Challenge}s.
    - L{select_challenge} picks the strongest usable challenge:
      SHA-512-256 > SHA-256 > MD5 (each with its C{-sess} variant), the
      first offered among equals.  Unknown algorithms, and challenges whose
      C{qop} offers nothing we know, are ignored (RFC 7616 s3.7).
    - L{build_authorization} computes the C{Authorization} or
      C{Proxy-Authorization} value for one request.
    - L{authorize} chains the three; L{DigestClient} adds the per-nonce
      C{nc} counter for credentials reused across requests.
    - L{header_names} maps 401/407 to the challenge and answer header names.

Choices:

    - C{qop}: C{auth} when offered, else C{auth-int} (the body is hashed:
      RFC 2617 s3.2.2.3), else the RFC 2069 form without C{qop}, C{cnonce}
      and C{nc}.  C{auth} is preferred because SIP proxies may legitimately
      rewrite bodies; pass C{qop="auth-int"} to force it.
    - The C{algorithm} parameter is echoed only when the challenge carried
      one (absent means MD5, RFC 2617 s3.2.1); C{userhash} (RFC 7616) is not
      used.
    - Strings are hashed as UTF-8 (RFC 7616 s3.4.4 with C{charset=UTF-8};
      byte-identical to RFC 2617 for ASCII).
    - The password is never stored in a C{repr()} and never formatted into
      an exception.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from aiconnect.errors import AiconnectError

__all__ = [
    "ALGORITHMS",
    "Challenge",
    "DigestClient",
    "DigestError",
    "authorize",
    "build_authorization",
    "compute_response",
    "header_names",
    "make_cnonce",
    "parse_challenge",
    "parse_challenges",
    "select_challenge",
]

#: Supported algorithms (upper-case) -> hashlib name (RFC 7616 s6.1, RFC 8760
#: s2.2).
ALGORITHMS = {
    "MD5": "md5",
    "MD5-SESS": "md5",
    "SHA-256": "sha256",
    "SHA-256-SESS": "sha256",
    "SHA-512-256": "sha512_256",
    "SHA-512-256-SESS": "sha512_256",
}

#: Higher is stronger.
_STRENGTH = {"md5": 1, "sha256": 2, "sha512_256": 3}

#: The qop values we can answer, in order of preference.
_QOPS = ("auth", "auth-int")

# RFC 7230 s3.2.6: token = 1*tchar; quoted-string with quoted-pair.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_PARAM = re.compile(r"\s*(%s)\s*=\s*(%s|%s)\s*" % (_TOKEN, _QUOTED, _TOKEN), re.S)
_SCHEME = re.compile(r"\s*(%s)(?:\s+|$|(?=,))" % (_TOKEN,))
# RFC 7235 s2.1: token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_TOKEN68 = re.compile(r"\s*[A-Za-z0-9\-._~+/]+=*\s*(?=,|$)")


class DigestError(AiconnectError):
    """
    A challenge cannot be parsed or answered.  The message names the problem
    and never contains the password.
    """


@dataclass(frozen=True, slots=True)
class Challenge:
    """
    One Digest challenge (RFC 2617 s3.2.1, RFC 7616 s3.3).

    @ivar realm: The protection space.
    @ivar nonce: The server nonce.
    @ivar algorithm: The C{algorithm} parameter as sent, or L{None} when
        absent (which means MD5).
    @ivar opaque: To be echoed unchanged, or L{None}.
    @ivar qop: The offered qop values, lower-case (empty: RFC 2069 mode).
    @ivar stale: The previous request's nonce was stale, not its credentials
        wrong (retrying with the new nonce is right even after a failure).
    @ivar domain: The C{domain} parameter, or L{None}.
    """

    realm: str
    nonce: str
    algorithm: str | None = None
    opaque: str | None = None
    qop: tuple[str, ...] = ()
    stale: bool = False
    domain: str | None = None

    @property
    def algorithm_name(self) -> str:
        """
        The algorithm, upper-case, C{"MD5"} when absent.
        """
        return (self.algorithm or "MD5").upper()

    @property
    def supported(self) -> bool:
        """
        Whether we know the algorithm and at least one offered qop (or none
        is offered).
        """
        return self.algorithm_name in ALGORITHMS and (
            not self.qop or any(q in _QOPS for q in self.qop)
        )

    @property
    def session(self) -> bool:
        """
        Whether the algorithm is a C{-sess} variant (HA1 includes the nonces).
        """
        return self.algorithm_name.endswith("-SESS")


def header_names(status: int) -> tuple[str, str]:
    """
    The challenge and credentials header names for a 401 or 407 (RFC 3261
    s22.2, s22.3).

    @param status: 401 or 407.
    @return: C{("WWW-Authenticate", "Authorization")} or
        C{("Proxy-Authenticate", "Proxy-Authorization")}.
    @raise DigestError: For another status.
    """
    if status == 401:
        return ("WWW-Authenticate", "Authorization")
    if status == 407:
        return ("Proxy-Authenticate", "Proxy-Authorization")
    raise DigestError("status %d carries no authentication challenge" % (status,))


def _unquote(value: str) -> str:
    if value.startswith('"'):
        return re.sub(r"\\(.)", r"\1", value[1:-1], flags=re.S)
    return value


def _quote(value: str) -> str:
    return '"%s"' % (value.replace("\\", "\\\\").replace('"', '\\"'),)


def _skip(value: str, pos: int, chars: str = " \t\r\n,") -> int:
    while pos < len(value) and value[pos] in chars:
        pos += 1
    return pos


def _split(value: str) -> list[tuple[str, dict[str, str]]]:
    """
    Split a header value into (scheme, params) pairs (RFC 7235 s4.1:
    C{1#challenge}, each C{auth-scheme [ 1*SP ( token68 / #auth-param ) ]}).

    After a comma, C{name=value} continues the current challenge; anything
    else starts the next one.  Parameter names are lower-cased; the first of
    duplicate parameters wins.
    """
    out: list[tuple[str, dict[str, str]]] = []
    pos = _skip(value, 0)
    while pos < len(value):
        m = _SCHEME.match(value, pos)
        if m is None:
            raise DigestError("malformed authentication challenge at offset %d" % (pos,))
        scheme, pos = m.group(1), m.end()
        params: dict[str, str] = {}
        if _PARAM.match(value, pos) is None:
            t68 = _TOKEN68.match(value, pos)
            if t68 is not None:
                pos = t68.end()
        else:
            while True:
                p = _PARAM.match(value, pos)
                if p is None:
                    break
                params.setdefault(p.group(1).lower(), _unquote(p.group(2)))
                pos = p.end()
                if pos < len(value) and value[pos] != ",":
                    raise DigestError("malformed authentication parameter at offset %d" % (pos,))
                pos = _skip(value, pos)
        out.append((scheme, params))
        pos = _skip(value, pos)
    return out


def parse_challenges(value: str) -> list[Challenge]:
    """
    The Digest challenges in one C{WWW-Authenticate} / C{Proxy-Authenticate}
    header value, in order; other schemes are skipped.

    @param value: The header value.
    @return: The challenges (possibly empty).
    @raise DigestError: If the value is malformed or a Digest challenge
        lacks C{realm} or C{nonce} (RFC 3261 s25.1 C{digest-cln}).
    """
    challenges = []
    for scheme, params in _split(value):
        if scheme.lower() != "digest":
            continue
        if "realm" not in params or "nonce" not in params:
            raise DigestError("Digest challenge without realm or nonce")
        qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
        challenges.append(
            Challenge(
                realm=params["realm"],
                nonce=params["nonce"],
                algorithm=params.get("algorithm"),
                opaque=params.get("opaque"),
                qop=qop,
                stale=params.get("stale", "").lower() == "true",
                domain=params.get("domain"),
            )
        )
    return challenges


def parse_challenge(value: str) -> Challenge:
    """
    The single Digest challenge of a header value.

    @param value: The header value.
    @raise DigestError: If there is not exactly one Digest challenge, or it is
        malformed.
    """
    challenges = parse_challenges(value)
    if len(challenges) != 1:
        raise DigestError("expected one Digest challenge, found %d" % (len(challenges),))
    return challenges[0]


def select_challenge(challenges: Iterable[Challenge]) -> Challenge:
    """
    The strongest challenge we can answer (RFC 8760 s2.4: a UAS may offer
    several algorithms); the first offered among equally strong ones.

    @param challenges: Challenges, in the order they were received.
    @raise DigestError: If none is usable; the message lists the algorithms
        offered.
    """
    offered = list(challenges)
    usable = [c for c in offered if c.supported]
    if not usable:
        raise DigestError(
            "no usable Digest challenge (offered: %s)"
            % (", ".join("%s qop=%s" % (c.algorithm_name, ",".join(c.qop) or "-") for c in offered) or "none",)
        )
    return max(usable, key=lambda c: _STRENGTH[ALGORITHMS[c.algorithm_name]])


def make_cnonce() -> str:
    """
    A fresh client nonce: 128 random bits from L{secrets}, as hex.
    """
    return secrets.token_hex(16)


def _choose_qop(challenge: Challenge, qop: str | None) -> str | None:
    if qop is not None:
        if qop not in challenge.qop:
            raise DigestError("qop %r was not offered" % (qop,))
        return qop
    for candidate in _QOPS:
        if candidate in challenge.qop:
            return candidate
    if challenge.qop:
        raise DigestError("no supported qop offered (%s)" % (",".join(challenge.qop),))
    return None


def compute_response(
    challenge: Challenge,
    method: str,
    uri: str,
    username: str,
    password: str,
    *,
    qop: str | None,
    cnonce: str,
    nc: int,
    body: bytes = b"",
) -> str:
    """
    The C{response} value (RFC 2617 s3.2.2.1, RFC 7616 s3.4.1).

        - C{HA1 = H(username ":" realm ":" password)}, and for C{-sess}
          C{H(H(username ":" realm ":" password) ":" nonce ":" cnonce)};
        - C{HA2 = H(method ":" uri)}, or C{H(method ":" uri ":" H(body))} for
          C{auth-int};
        - C{response = H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" HA2)},
          or C{H(HA1 ":" nonce ":" HA2)} without qop.

    @param challenge: The challenge answered.
    @param method: The request method (C{"INVITE"}).
    @param uri: The C{uri} parameter: the Request-URI as written.
    @param username: The user name.
    @param password: The password.
    @param qop: C{"auth"}, C{"auth-int"} or L{None}.
    @param cnonce: The client nonce (used with a qop or a C{-sess} algorithm).
    @param nc: The nonce count (1 for the first request with this nonce).
    @param body: The message body, for C{auth-int}.
    @return: The lower-case hex digest.
    @raise DigestError: If the algorithm is not supported.
    """
    try:
        hash_name = ALGORITHMS[challenge.algorithm_name]
    except KeyError:
        raise DigestError("unsupported Digest algorithm %r" % (challenge.algorithm,)) from None

    def h(data: bytes) -> str:
        return hashlib.new(hash_name, data).hexdigest()

    def kd(*parts: str) -> str:
        return h(":".join(parts).encode("utf-8"))

    ha1 = kd(username, challenge.realm, password)
    if challenge.session:
        ha1 = kd(ha1, challenge.nonce, cnonce)
    if qop == "auth-int":
        ha2 = kd(method, uri, h(body))
    else:
        ha2 = kd(method, uri)
    if qop is None:
        return kd(ha1, challenge.nonce, ha2)
    return kd(ha1, challenge.nonce, "%08x" % (nc,), cnonce, qop, ha2)


def build_authorization(
    challenge: Challenge,
    method: str,
    uri: str,
    username: str,
    password: str,
    *,
    body: bytes = b"",
    cnonce: str | None = None,
    nc: int = 1,
    qop: str | None = None,
) -> str:
    """
    The C{Authorization} / C{Proxy-Authorization} value answering
    C{challenge} (RFC 3261 s22.4, s25.1 C{digest-response}).

    Parameters are written in the order of the RFC 2617 s3.5 example:
    C{username, realm, nonce, uri, [algorithm,] [qop, nc, cnonce,]
    response[, opaque]}; C{algorithm}, C{qop} and C{nc} unquoted, the rest
    quoted.

    @param challenge: The challenge answered.
    @param method: The method of the request being authorized.
    @param uri: Its Request-URI, as written (C{str()} is applied).
    @param username: The user name.
    @param password: The password.
    @param body: The request body (hashed for C{auth-int}).
    @param cnonce: The client nonce; a fresh L{make_cnonce} by default.
    @param nc: The nonce count: 1 for the first use of this nonce.
    @param qop: Force a qop (it must be offered); by default C{auth} is
        preferred to C{auth-int}.
    @return: The header value, starting with C{"Digest "}.
    @raise DigestError: If the challenge cannot be answered.
    """
    if not 1 <= nc <= 0xFFFFFFFF:
        raise DigestError("nonce count %d out of range" % (nc,))
    uri = str(uri)
    chosen = _choose_qop(challenge, qop)
    if cnonce is None:
        cnonce = make_cnonce()
    response = compute_response(
        challenge, method, uri, username, password, qop=chosen, cnonce=cnonce, nc=nc, body=body
    )
    parts = [
        "username=" + _quote(username),
        "realm=" + _quote(challenge.realm),
        "nonce=" + _quote(challenge.nonce),
        "uri=" + _quote(uri),
    ]
    if challenge.algorithm is not None:
        parts.append("algorithm=" + challenge.algorithm)
    if chosen is not None:
        parts += ["qop=" + chosen, "nc=%08x" % (nc,), "cnonce=" + _quote(cnonce)]
    elif challenge.session:
        parts.append("cnonce=" + _quote(cnonce))
    parts.append("response=" + _quote(response))
    if challenge.opaque is not None:
        parts.append("opaque=" + _quote(challenge.opaque))
    return "Digest " + ", ".join(parts)


def _challenges(values: str | Iterable[str]) -> list[Challenge]:
    if isinstance(values, str):
        values = [values]
    out: list[Challenge] = []
    for value in values:
        out.extend(parse_challenges(value))
    return out


def authorize(
    challenges: str | Iterable[str],
    method: str,
    uri: str,
    username: str,
    password: str,
    body: bytes = b"",
    *,
    nc: int = 1,
    cnonce: str | None = None,
    qop: str | None = None,
) -> str:
    """
    Answer the strongest Digest challenge of a 401/407.

    @param challenges: The C{WWW-Authenticate} (401) or C{Proxy-Authenticate}
        (407) header values, in order (or one value).
    @param method: The method of the request being retried.
    @param uri: Its Request-URI.
    @param username: The user name.
    @param password: The password.
    @param body: Its body (for C{auth-int}).
    @param nc: The nonce count.
    @param cnonce: The client nonce; fresh by default.
    @param qop: Force a qop (see L{build_authorization}).
    @return: The C{Authorization} / C{Proxy-Authorization} value.
    @raise DigestError: If no challenge can be answered.
    """
    challenge = select_challenge(_challenges(challenges))
    return build_authorization(
        challenge, method, uri, username, password, body=body, cnonce=cnonce, nc=nc, qop=qop
    )


class DigestClient:
    """
    A user's credentials, answering challenges and counting each nonce's
    uses (RFC 2617 s3.2.2: C{nc} increases with every request sent with the
    same nonce).

    @ivar username: The user name.
    """

    def __init__(
        self,
        username: str,
        password: str,
        cnonce_factory: Callable[[], str] = make_cnonce,
    ) -> None:
        """
        @param username: The user name.
        @param password: The password (kept out of C{repr()}).
        @param cnonce_factory: Makes client nonces (injected for tests).
        """
        self.username = username
        self._password = password
        self._cnonce_factory = cnonce_factory
        self._counts: dict[tuple[str, str], int] = {}
        self._last: dict[str, Challenge] = {}

    def __repr__(self) -> str:
        return "<DigestClient username=%r>" % (self.username,)

    def authorize(
        self,
        challenges: str | Sequence[str],
        method: str,
        uri: str,
        body: bytes = b"",
        qop: str | None = None,
    ) -> str:
        """
        Answer the strongest challenge of a 401/407 and remember it for
        L{reauthorize}.

        @param challenges: The challenge header values.
        @param method: The request method.
        @param uri: The Request-URI.
        @param body: The body (for C{auth-int}).
        @param qop: Force a qop.
        @return: The credentials header value.
        @raise DigestError: If no challenge can be answered.
        """
        challenge = select_challenge(_challenges(challenges))
        self._last[challenge.realm] = challenge
        return self._answer(challenge, method, uri, body, qop)

    def reauthorize(self, realm: str, method: str, uri: str, body: bytes = b"", qop: str | None = None) -> str:
        """
        Credentials for a further request in C{realm} with the last nonce
        received (the next C{nc}), without a new challenge.

        @raise DigestError: If no challenge of C{realm} was answered yet.
        """
        try:
            challenge = self._last[realm]
        except KeyError:
            raise DigestError("no challenge received for realm %r" % (realm,)) from None
        return self._answer(challenge, method, uri, body, qop)

    def _answer(self, challenge: Challenge, method: str, uri: str, body: bytes, qop: str | None) -> str:
        key = (challenge.realm, challenge.nonce)
        nc = self._counts.get(key, 0) + 1
        self._counts[key] = nc
        return build_authorization(
            challenge,
            method,
            uri,
            self.username,
            self._password,
            body=body,
            cnonce=self._cnonce_factory(),
            nc=nc,
            qop=qop,
        )
