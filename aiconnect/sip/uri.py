# -*- test-case-name: tests.sip.test_uri -*-
"""
SIP and SIPS URIs, name-addr / addr-spec values and Via values (RFC 3261
s19.1, s20.10, s20.42, s25.1), IPv6-safe (RFC 5118).

Unlike C{twisted.protocols.sip.parseURL}, C{sips:} and IPv6 references are
understood, flag parameters (C{;lr}) are kept, and a port-less sent-by is
serialized without a port.

The syntax checks of a host (IP literals, RFC 1123 host names) and
L{split_host_port} live in L{aiconnect.sip.hosts} and are re-exported here.

Every parse function raises L{UriError} (a L{RemoteSipError} with status hint
400) on malformed input.

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Iterator, Union

from aiconnect.errors import RemoteSipError
from aiconnect.sip import abnf
from aiconnect.sip.hosts import (  # noqa: F401 (re-exported)
    format_host,
    host_for_socket,
    is_hostname,
    is_ip_address,
    is_ip_literal,
    is_ipv6_literal,
    split_host_port,
)


class UriError(RemoteSipError):
    """
    A URI, name-addr or Via value does not follow RFC 3261's grammar.
    """

    def __init__(self, reason: str, status_hint: int = 400) -> None:
        super().__init__(reason, status_hint)


Params = tuple[tuple[str, "str | None"], ...]


def _param_get(params: Params, name: str) -> str | None:
    lname = name.lower()
    for k, v in params:
        if k.lower() == lname:
            return v if v is not None else ""
    return None


def _param_has(params: Params, name: str) -> bool:
    lname = name.lower()
    return any(k.lower() == lname for k, _ in params)


def _format_params(params: Params) -> str:
    return "".join(";" + k if v is None else ";" + k + "=" + v for k, v in params)


def _with_param(params: Params, name: str, value: str | None) -> Params:
    lname = name.lower()
    out = [(k, v) for k, v in params if k.lower() != lname]
    out.append((name, value))
    return tuple(out)


def _without_param(params: Params, name: str) -> Params:
    lname = name.lower()
    return tuple((k, v) for k, v in params if k.lower() != lname)


def parse_host(text: str) -> str:
    """
    Check a host (RFC 3261 s25.1 C{host}) and return it; IPv6 references keep
    their brackets.

    @raise UriError: if it is not a hostname, IPv4 address or IPv6 reference.
    """
    if not text:
        raise UriError("empty host")
    if text.startswith("["):
        m = abnf.IPV6_REF_RE.match(text)
        if not m:
            raise UriError("bad IPv6 reference %r" % (text,))
        inner = m.group(1)
        if inner.count(":") < 2:
            raise UriError("bad IPv6 reference %r" % (text,))
        return text
    m = abnf.IPV4_RE.match(text)
    if m:
        if max(map(int, m.groups())) > 255:
            raise UriError("bad IPv4 address %r" % (text,))
        return text
    if abnf.HOSTNAME_RE.match(text):
        return text
    raise UriError("bad host %r" % (text,))


def split_hostport(text: str) -> tuple[str, int | None]:
    """
    Split C{hostport} (RFC 3261 s25.1) into a checked host and optional port.

    C{[2001:db8::10:5070]} is a host with no port (RFC 5118 s4.3);
    C{[2001:db8::10]:5070} has port 5070 (s4.4).
    """
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise UriError("unterminated IPv6 reference %r" % (text,))
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise UriError("junk after IPv6 reference %r" % (text,))
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text = text.partition(":")
        if not sep:
            port_text = None
    port: int | None = None
    if port_text is not None:
        if not abnf.is_digits(port_text, 5) or int(port_text) > 65535:
            raise UriError("bad port in %r" % (text,))
        port = int(port_text)
    return parse_host(host), port


def _unescape(text: str) -> str:
    """
    Decode C{%HH} escapes once (RFC 3261 s19.1.4: no recursive unescape).
    """
    if "%" not in text:
        return text
    out = []
    i = 0
    raw = bytearray()
    while i < len(text):
        c = text[i]
        if c == "%" and i + 2 < len(text) + 0 and _is_hex(text[i + 1 : i + 3]):
            raw.append(int(text[i + 1 : i + 3], 16))
            i += 3
            continue
        if raw:
            out.append(raw.decode("utf-8", "surrogateescape"))
            raw = bytearray()
        out.append(c)
        i += 1
    if raw:
        out.append(raw.decode("utf-8", "surrogateescape"))
    return "".join(out)


def _is_hex(s: str) -> bool:
    return len(s) == 2 and all(c in "0123456789abcdefABCDEF" for c in s)


@dataclass(frozen=True, slots=True)
class SipUri:
    """
    A C{sip:} or C{sips:} URI (RFC 3261 s19.1.1).

    @ivar scheme: C{"sip"} or C{"sips"}, lower case.
    @ivar user: the user part as written (escapes kept), or C{None}.
    @ivar password: the password as written, or C{None}.
    @ivar host: the host; IPv6 references keep their brackets.
    @ivar port: the port, or C{None} when absent.
    @ivar params: uri-parameters in order; flag parameters have value C{None}.
    @ivar headers: the C{?h=v&...} part as written, or C{None}.
    """

    scheme: str
    user: str | None
    host: str
    port: int | None = None
    params: Params = ()
    headers: str | None = None
    password: str | None = None

    def param(self, name: str) -> str | None:
        """
        The value of a uri-parameter (C{""} for a flag), or C{None}.
        """
        return _param_get(self.params, name)

    def has_param(self, name: str) -> bool:
        """
        Whether the URI carries the parameter (flag or valued).
        """
        return _param_has(self.params, name)

    def with_param(self, name: str, value: str | None = None) -> SipUri:
        """
        A copy with the parameter set (replacing any of the same name).
        """
        return replace(self, params=_with_param(self.params, name, value))

    def without_param(self, name: str) -> SipUri:
        """
        A copy without the parameter.
        """
        return replace(self, params=_without_param(self.params, name))

    @property
    def secure(self) -> bool:
        """
        C{True} for C{sips:}.
        """
        return self.scheme == "sips"

    @property
    def transport(self) -> str | None:
        """
        The C{transport} parameter, lower case, or C{None}.
        """
        t = self.param("transport")
        return t.lower() if t else None

    @property
    def user_unescaped(self) -> str | None:
        """
        The user part with C{%HH} escapes decoded once.
        """
        return None if self.user is None else _unescape(self.user)

    @property
    def hostport(self) -> str:
        """
        C{host[:port]} as written in a URI.
        """
        return self.host if self.port is None else "%s:%d" % (self.host, self.port)

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(self.hostport)
        out.append(_format_params(self.params))
        if self.headers is not None:
            out.append("?" + self.headers)
        return "".join(out)

    def equivalent(self, other: object) -> bool:
        """
        URI comparison per RFC 3261 s19.1.4 (escapes decoded, host and scheme
        case-insensitive, user case-sensitive, C{user/ttl/method/maddr/transport}
        must match when present in either).
        """
        if not isinstance(other, SipUri):
            return False
        if self.scheme != other.scheme:
            return False
        if self.user_unescaped != other.user_unescaped:
            return False
        if self.password != other.password:
            return False
        if self.host.lower() != other.host.lower() or self.port != other.port:
            return False
        mine = {k.lower(): _unescape(v or "").lower() for k, v in self.params}
        theirs = {k.lower(): _unescape(v or "").lower() for k, v in other.params}
        for special in ("user", "ttl", "method", "maddr", "transport"):
            if (special in mine or special in theirs) and mine.get(special) != theirs.get(special):
                return False
        for k in mine.keys() & theirs.keys():
            if mine[k] != theirs[k]:
                return False
        return True


@dataclass(frozen=True, slots=True)
class AbsoluteUri:
    """
    A URI of a scheme other than sip/sips (RFC 3261 s25.1 C{absoluteURI}),
    kept opaque: C{tel:}, C{http:}, C{urn:}...
    """

    scheme: str
    opaque: str

    def __str__(self) -> str:
        return self.scheme + ":" + self.opaque

    def equivalent(self, other: object) -> bool:
        """
        Opaque URIs compare as strings (scheme case-insensitive).
        """
        return isinstance(other, AbsoluteUri) and str(self).lower() == str(other).lower()


Uri = Union[SipUri, AbsoluteUri]


#: Characters a URI written in a header or Request-Line cannot hold.
_URI_ILLEGAL_RE = re.compile('[ \t\r\n<>"]')


def parse_uri(text: str) -> Uri:
    """
    Parse a URI: C{sip:}/C{sips:} fully (RFC 3261 s19.1.1), others opaquely.

    @raise UriError: if it is not a URI.
    """
    m = abnf.SCHEME_RE.match(text)
    if not m:
        raise UriError("not a URI: %r" % (text,))
    if _URI_ILLEGAL_RE.search(text):
        raise UriError("illegal character in URI %r" % (text,))
    scheme = m.group(1).lower()
    rest = text[m.end() :]
    if scheme not in ("sip", "sips"):
        if not rest:
            raise UriError("empty URI %r" % (text,))
        return AbsoluteUri(scheme, rest)
    return _parse_sip_uri(scheme, rest)


def parse_sip_uri(text: str) -> SipUri:
    """
    Parse a URI that must be C{sip:} or C{sips:}.

    @raise UriError: otherwise (status hint 416 for another scheme).
    """
    uri = parse_uri(text)
    if not isinstance(uri, SipUri):
        raise UriError("unsupported URI scheme %r" % (uri.scheme,), 416)
    return uri


def _parse_sip_uri(scheme: str, rest: str) -> SipUri:
    user = password = None
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, sep, pw = userinfo.partition(":")
        if sep:
            password = pw
            if not abnf.PASSWORD_RE.match(pw):
                raise UriError("bad password in URI")
        if not user or not abnf.USER_RE.match(user):
            raise UriError("bad user part %r" % (user,))
    headers = None
    rest, qsep, hpart = rest.partition("?")
    if qsep:
        if not hpart:
            raise UriError("empty URI headers")
        for hv in hpart.split("&"):
            hname, eq, hval = hv.partition("=")
            if not hname or not eq or not abnf.HEADER_CHARS_RE.match(hname + hval):
                raise UriError("bad URI header %r" % (hv,))
        headers = hpart
    # The host may be an IPv6 reference holding ':'; params start after it.
    if rest.startswith("["):
        end = rest.find("]")
        semi = rest.find(";", end if end >= 0 else 0)
    else:
        semi = rest.find(";")
    hostport, ptext = (rest, "") if semi < 0 else (rest[:semi], rest[semi:])
    host, port = split_hostport(hostport)
    params: list[tuple[str, str | None]] = []
    if ptext:
        for p in ptext[1:].split(";"):
            name, eq, value = p.partition("=")
            if not name or not abnf.PARAM_RE.match(name):
                raise UriError("bad URI parameter %r" % (p,))
            if eq:
                if not value or not abnf.PARAM_RE.match(value):
                    raise UriError("bad URI parameter value %r" % (p,))
                params.append((name, value))
            else:
                params.append((name, None))
    return SipUri(scheme, user, host, port, tuple(params), headers, password)


# ---------------------------------------------------------------------------
# Header value scanning helpers (quoted strings, comma lists, parameters)


def split_list(value: str) -> list[str]:
    """
    Split a comma-separated header value (RFC 3261 s7.3.1) outside quoted
    strings and angle brackets; elements are stripped of LWS.

    @raise UriError: on an empty element or an unterminated quoted string.
    """
    if '"' not in value and "<" not in value:
        # No quoted string or URI can hide a comma: split at every one.
        out = [e.strip(" \t") for e in value.split(",")]
        if not all(out):
            raise UriError("empty element in list %r" % (value,))
        return out
    out = []
    start = 0
    i = 0
    n = len(value)
    angle = False
    while i < n:
        c = value[i]
        if c == '"':
            i = _skip_quoted(value, i)
            continue
        if c == "<":
            angle = True
        elif c == ">":
            angle = False
        elif c == "," and not angle:
            out.append(value[start:i].strip(" \t"))
            start = i + 1
        i += 1
    out.append(value[start:].strip(" \t"))
    if any(not e for e in out):
        raise UriError("empty element in list %r" % (value,))
    return out


def _skip_quoted(value: str, i: int) -> int:
    """
    Return the index just past the quoted string starting at C{value[i]}.
    """
    j = i + 1
    n = len(value)
    while j < n:
        c = value[j]
        if c == "\\":
            if j + 1 >= n:
                break
            j += 2
            continue
        if c == '"':
            return j + 1
        if c in "\r\n":
            break
        j += 1
    raise UriError("unterminated quoted string in %r" % (value,))


def _iter_params(text: str) -> Iterator[tuple[str, str | None]]:
    """
    Parse C{*( SEMI generic-param )} (RFC 3261 s25.1), LWS-tolerant.

    @raise UriError: on an empty or malformed parameter.
    """
    i = 0
    n = len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            return
        if text[i] != ";":
            raise UriError("expected ';' in %r" % (text,))
        i += 1
        while i < n and text[i] in " \t":
            i += 1
        j = i
        while j < n and text[j] not in "=; \t":
            j += 1
        name = text[i:j]
        if not name or not abnf.TOKEN_RE.match(name):
            raise UriError("bad parameter name in %r" % (text,))
        i = j
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == "=":
            i += 1
            while i < n and text[i] in " \t":
                i += 1
            if i < n and text[i] == '"':
                j = _skip_quoted(text, i)
                yield name, text[i:j]
                i = j
                continue
            j = i
            while j < n and text[j] not in "; \t":
                j += 1
            value = text[i:j]
            if not value or not abnf.GEN_VALUE_RE.match(value):
                raise UriError("bad parameter value in %r" % (text,))
            yield name, value
            i = j
        else:
            yield name, None


def parse_params(text: str) -> Params:
    """
    Parse header parameters C{;a=b;c} into a tuple of pairs.
    """
    if not text:
        return ()
    if text[0] != ";" or '"' in text or " " in text or "\t" in text:
        return tuple(_iter_params(text))
    # No LWS and no quoted value: each parameter is what lies between ';'.
    out: list[tuple[str, str | None]] = []
    for p in text[1:].split(";"):
        name, eq, value = p.partition("=")
        if not name or not abnf.TOKEN_RE.match(name):
            raise UriError("bad parameter name in %r" % (text,))
        if not eq:
            out.append((name, None))
        elif not value or not abnf.GEN_VALUE_RE.match(value):
            raise UriError("bad parameter value in %r" % (text,))
        else:
            out.append((name, value))
    return tuple(out)


def unquote(text: str) -> str:
    """
    Decode a quoted-string (RFC 3261 s25.1), or return a token unchanged.
    """
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        out = []
        i = 0
        while i < len(inner):
            if inner[i] == "\\" and i + 1 < len(inner):
                out.append(inner[i + 1])
                i += 2
            else:
                out.append(inner[i])
                i += 1
        return "".join(out)
    return text


def quote(text: str) -> str:
    """
    Encode text as a quoted-string.
    """
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class NameAddr:
    """
    A C{name-addr} or C{addr-spec} with header parameters (From, To, Contact,
    Route, Record-Route...; RFC 3261 s20).

    @ivar display_name: decoded display name, or C{None}.
    @ivar uri: the URI.
    @ivar params: header parameters (C{tag}, C{expires}, feature tags...);
        quoted values keep their quotes.
    @ivar wildcard: C{True} for C{Contact: *}.
    """

    uri: Uri
    display_name: str | None = None
    params: Params = ()
    wildcard: bool = False

    def param(self, name: str) -> str | None:
        """
        The value of a header parameter (C{""} for a flag), or C{None}.
        """
        return _param_get(self.params, name)

    def has_param(self, name: str) -> bool:
        """
        Whether the header parameter is present.
        """
        return _param_has(self.params, name)

    @property
    def tag(self) -> str | None:
        """
        The C{tag} parameter (RFC 3261 s19.3), or C{None}.
        """
        return self.param("tag") or None

    def with_param(self, name: str, value: str | None = None) -> NameAddr:
        """
        A copy with the header parameter set.
        """
        return replace(self, params=_with_param(self.params, name, value))

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        out = ""
        if self.display_name:
            out = quote(self.display_name) + " "
        return out + "<" + str(self.uri) + ">" + _format_params(self.params)


def parse_name_addr(value: str) -> NameAddr:
    """
    Parse one C{(name-addr / addr-spec) *( SEMI param )} value (RFC 3261
    s20.10, s20.20, s20.39).

    An addr-spec without angle brackets may not contain C{,}, C{;} or C{?}
    in the URI (s20): its C{;} parameters are header parameters.

    @raise UriError: on any syntax error (RFC 4475 s3.1.2.6, s3.1.2.13-15).
    """
    v = value.strip(" \t")
    if v == "*":
        return NameAddr(uri=AbsoluteUri("*", ""), wildcard=True)
    display: str | None = None
    if v.startswith('"'):
        end = _skip_quoted(v, 0)
        display = unquote(v[:end])
        rest = v[end:].lstrip(" \t")
        if not rest.startswith("<"):
            raise UriError("quoted display name without <URI> in %r" % (value,))
    else:
        lt = v.find("<")
        if lt >= 0:
            tokens = v[:lt].split()
            for t in tokens:
                if not abnf.TOKEN_RE.match(t):
                    raise UriError("display name is not tokens: %r" % (v[:lt],))
            display = " ".join(tokens) or None
            rest = v[lt:]
        else:
            rest = v
    if rest.startswith("<"):
        gt = rest.find(">")
        if gt < 0:
            raise UriError("unterminated <URI> in %r" % (value,))
        inner = rest[1:gt]
        if inner != inner.strip() or not inner:
            raise UriError("whitespace inside <URI> in %r" % (value,))
        uri = parse_uri(inner)
        ptext = rest[gt + 1 :]
    else:
        semi = rest.find(";")
        utext, ptext = (rest, "") if semi < 0 else (rest[:semi], rest[semi:])
        utext = utext.strip(" \t")
        if any(c in utext for c in ",?"):
            raise UriError("addr-spec with ',' or '?' must be in <>: %r" % (value,))
        if any(c in utext for c in " \t"):
            raise UriError("whitespace in addr-spec %r" % (value,))
        uri = parse_uri(utext)
    return NameAddr(uri=uri, display_name=display, params=parse_params(ptext))


def parse_name_addr_list(value: str) -> list[NameAddr]:
    """
    Parse a comma-separated list of name-addr values (Contact, Route...).
    """
    return [parse_name_addr(v) for v in split_list(value)]


@dataclass(frozen=True, slots=True)
class Via:
    """
    One Via value (RFC 3261 s20.42).

    @ivar transport: the transport token, upper case (C{UDP}, C{TCP}, C{TLS}...).
    @ivar host: the sent-by host; IPv6 references keep their brackets.
    @ivar port: the sent-by port, or C{None} when absent (not defaulted).
    @ivar params: via-params in order (C{branch}, C{received}, C{rport}...).
    @ivar protocol: C{"SIP/2.0"} normally.
    """

    transport: str
    host: str
    port: int | None = None
    params: Params = field(default=())
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        """
        The C{branch} parameter (RFC 3261 s8.1.1.7), or C{None}.
        """
        b = self.param("branch")
        return b if b else None

    @property
    def rport(self) -> int | None:
        """
        The C{rport} value (RFC 3581) as an int when filled in, else C{None}.
        """
        r = self.param("rport")
        return int(r) if abnf.is_digits(r, 5) else None

    def param(self, name: str) -> str | None:
        """
        The value of a via-param (C{""} for a flag), or C{None}.
        """
        return _param_get(self.params, name)

    def has_param(self, name: str) -> bool:
        """
        Whether the via-param is present.
        """
        return _param_has(self.params, name)

    def with_param(self, name: str, value: str | None = None) -> Via:
        """
        A copy with the via-param set (replacing any of the same name).
        """
        return replace(self, params=_with_param(self.params, name, value))

    @property
    def sent_by(self) -> str:
        """
        C{host[:port]} as written.
        """
        return self.host if self.port is None else "%s:%d" % (self.host, self.port)

    def __str__(self) -> str:
        return "%s/%s %s%s" % (self.protocol, self.transport, self.sent_by, _format_params(self.params))


def parse_via(value: str) -> Via:
    """
    Parse one Via value: C{sent-protocol LWS sent-by *( SEMI via-params )},
    with LWS tolerated around C{/} (RFC 4475 s3.1.1.1).

    @raise UriError: on a syntax error (RFC 4475 s3.1.2.1).
    """
    v = value.strip(" \t")
    parts = []
    i = 0
    for _ in range(3):
        j = i
        while j < len(v) and v[j] not in "/ \t;":
            j += 1
        tok = v[i:j]
        if not tok or not abnf.TOKEN_RE.match(tok):
            raise UriError("bad sent-protocol in Via %r" % (value,))
        parts.append(tok)
        while j < len(v) and v[j] in " \t":
            j += 1
        if len(parts) < 3:
            if j >= len(v) or v[j] != "/":
                raise UriError("bad sent-protocol in Via %r" % (value,))
            j += 1
            while j < len(v) and v[j] in " \t":
                j += 1
        i = j
    name, version, transport = parts
    rest = v[i:]
    semi = rest.find(";")
    sent_by, ptext = (rest, "") if semi < 0 else (rest[:semi], rest[semi:])
    sent_by = sent_by.strip(" \t")
    if not sent_by or any(c in sent_by for c in " \t"):
        raise UriError("bad sent-by in Via %r" % (value,))
    host, port = split_hostport(sent_by)
    params = parse_params(ptext)
    for k, val in params:
        if k.lower() == "branch" and not val:
            raise UriError("empty branch in Via %r" % (value,))
    return Via(transport.upper(), host, port, params, "%s/%s" % (name.upper(), version))


def parse_via_list(value: str) -> list[Via]:
    """
    Parse a comma-separated Via header value.
    """
    return [parse_via(v) for v in split_list(value)]


__all__ = [
    "AbsoluteUri",
    "format_host",
    "host_for_socket",
    "is_hostname",
    "is_ip_address",
    "is_ip_literal",
    "is_ipv6_literal",
    "NameAddr",
    "Params",
    "parse_host",
    "parse_name_addr",
    "parse_name_addr_list",
    "parse_params",
    "parse_sip_uri",
    "parse_uri",
    "parse_via",
    "parse_via_list",
    "quote",
    "SipUri",
    "split_host_port",
    "split_hostport",
    "split_list",
    "unquote",
    "Uri",
    "UriError",
    "Via",
]
