# -*- test-case-name: tests.sip.test_headers,tests.sip.test_message,tests.sip.test_torture -*-
"""
SIP messages at the byte level (RFC 3261 s7, s18.3, s20).

C{twisted.protocols.sip.MessagesParser} counts body length in characters and
decodes bodies as text; here the body is C{bytes}, C{Content-Length} is
checked in octets, messages have a size limit, and malformed input raises
L{SipParseError} carrying the RFC's status hint and whatever headers could be
read, so the transport can answer (or drop) per RFC 3261 / RFC 4475.

Header values are kept as C{str} decoded from UTF-8 with C{surrogateescape}, so
arbitrary octets survive a parse/serialize round trip unchanged.

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Union

from aiconnect.errors import RemoteSipError
from aiconnect.sip import abnf
from aiconnect.sip.headers import (
    SINGLE_HEADERS,
    Headers,
    HeaderSectionError,
    canonical_name,
    header_lines,
    split_head,
)
from aiconnect.sip.uri import (
    NameAddr,
    Uri,
    UriError,
    Via,
    parse_name_addr,
    parse_name_addr_list,
    parse_uri,
    parse_via_list,
    split_list,
)

DEFAULT_MAX_SIZE = 65536
MAX_CSEQ = 2**31 - 1  # RFC 3261 s8.1.1.5: MUST be < 2**31 when chosen; we accept < 2**32
UINT32_MAX = 2**32 - 1

#: Methods this stack knows (RFC 3261, 3262, 3311, 3428, 3515, 3903, 6086, 6665).
KNOWN_METHODS = frozenset(
    (
        "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "UPDATE",
        "INFO", "MESSAGE", "REFER", "SUBSCRIBE", "NOTIFY", "PUBLISH",
    )
)


@dataclass(frozen=True, slots=True)
class CSeq:
    """
    The CSeq header (RFC 3261 s20.16).
    """

    number: int
    method: str

    def __str__(self) -> str:
        return "%d %s" % (self.number, self.method)


def parse_cseq(value: str) -> CSeq:
    """
    Parse C{CSeq: 1*DIGIT LWS Method}; the number must fit 32 bits (RFC 4475 s3.1.2.4).

    @raise SipParseError: if malformed.
    """
    parts = value.split()
    if len(parts) != 2 or not abnf.is_digits(parts[0], abnf.ANY_LENGTH) or not abnf.METHOD_RE.match(parts[1]):
        raise SipParseError(400, "Bad CSeq")
    # Length first: int() refuses more than 4300 digits (ValueError).
    digits = parts[0].lstrip("0") or "0"
    if len(digits) > 10 or int(digits) > UINT32_MAX:
        raise SipParseError(400, "CSeq out of range")
    return CSeq(int(digits), parts[1])


def _parse_call_id(headers: Headers) -> str:
    return (headers.get("Call-ID") or "").strip()


def _parse_vias(headers: Headers) -> list[Via]:
    return parse_via_list(", ".join(headers.get_all("Via")))


def _parse_top_via(headers: Headers) -> Via:
    vias = headers._parsed.get("vias") if headers._parsed else None
    if vias:
        return vias[0]  # type: ignore[index]
    first = headers.get("Via")
    if not first:
        raise SipParseError(400, "Missing Via")
    return parse_via_list(first)[0]


def _parse_cseq(headers: Headers) -> CSeq:
    return parse_cseq(headers.get("CSeq") or "")


def _parse_from(headers: Headers) -> NameAddr:
    return parse_name_addr(headers.get("From") or "")


def _parse_to(headers: Headers) -> NameAddr:
    return parse_name_addr(headers.get("To") or "")


def _parse_contacts(headers: Headers) -> list[NameAddr]:
    return [parse_name_addr(v) for v in headers.values("Contact")]


class _MessageBase:
    """
    Shared accessors of requests and responses.

    Parsed header values are cached in the L{Headers} (until they change);
    the serialisation is cached until the headers, start line or body
    change, so a retransmission is the same octets, made once.
    """

    headers: Headers
    body: bytes
    _wire: tuple[Headers, int, str, bytes, bytes] | None

    @property
    def call_id(self) -> str:
        """
        The Call-ID header value.
        """
        return self.headers.cached("call_id", _parse_call_id)

    @property
    def cseq(self) -> CSeq:
        """
        The parsed CSeq header.
        """
        return self.headers.cached("cseq", _parse_cseq)

    @property
    def vias(self) -> list[Via]:
        """
        Every Via value, topmost first.
        """
        return list(self.headers.cached("vias", _parse_vias))

    @property
    def top_via(self) -> Via:
        """
        The topmost Via value.
        """
        return self.headers.cached("top_via", _parse_top_via)

    def set_top_via(self, top: Via) -> None:
        """
        Replace the topmost Via value (the transport's C{received} and
        C{rport}, RFC 3261 s18.2.1, RFC 3581 s4): the first Via line is
        written anew from its parsed values, the other lines keep their
        text, and the Via lines come first. C{top} is cached as the top
        Via (a Via written out parses back equal), and what else was
        parsed stays cached.

        @raise UriError: if the Via header cannot be parsed.
        """
        headers = self.headers
        vias = headers.cached("vias", _parse_vias)
        lines = headers.get_all("Via")
        first = [top] + vias[1 : len(split_list(lines[0]))]
        kept = dict(headers._parsed or {})
        kept["vias"] = [top] + vias[1:]
        kept["top_via"] = top
        headers.remove("Via")
        for line in reversed([", ".join(str(v) for v in first)] + lines[1:]):
            headers.add_first("Via", line)
        headers._parsed = kept

    @property
    def from_(self) -> NameAddr:
        """
        The parsed From header.
        """
        return self.headers.cached("from", _parse_from)

    @property
    def to(self) -> NameAddr:
        """
        The parsed To header.
        """
        return self.headers.cached("to", _parse_to)

    @property
    def from_tag(self) -> str | None:
        """
        The From tag, or C{None}.
        """
        return self.from_.tag

    @property
    def to_tag(self) -> str | None:
        """
        The To tag, or C{None}.
        """
        return self.to.tag

    @property
    def contacts(self) -> list[NameAddr]:
        """
        Every Contact value.
        """
        return list(self.headers.cached("contacts", _parse_contacts))

    @property
    def content_type(self) -> str | None:
        """
        The media type of the body, lower case, without parameters.
        """
        ct = self.headers.get("Content-Type")
        if ct is None:
            return None
        return ct.split(";", 1)[0].strip().lower()

    def content_type_param(self, name: str) -> str | None:
        """
        A parameter of the Content-Type header (C{boundary}...), unquoted.
        """
        ct = self.headers.get("Content-Type") or ""
        for part in ct.split(";")[1:]:
            k, _, v = part.partition("=")
            if k.strip().lower() == name.lower():
                v = v.strip()
                if len(v) >= 2 and v[0] == v[-1] == '"':
                    v = v[1:-1]
                return v
        return None

    def _serialize(self, start_line: str) -> bytes:
        headers = self.headers
        body = self.body
        wire = self._wire
        if (
            wire is not None
            and wire[0] is headers
            and wire[1] == headers.generation
            and wire[2] == start_line
            and wire[3] is body
        ):
            return wire[4]
        lines = [start_line]
        for n, v in headers:
            if n == "Content-Length":
                continue
            lines.append("%s: %s" % (n, v))
        lines.append("Content-Length: %d" % (len(body),))
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
        data = head + body
        self._wire = (headers, headers.generation, start_line, body, data)
        return data


class Request(_MessageBase):
    """
    A SIP request (RFC 3261 s7.1).

    @ivar method: the method token, case-sensitive.
    @ivar uri: the Request-URI as written.
    @ivar headers: the header fields.
    @ivar body: the body octets.
    """

    __slots__ = ("method", "uri", "headers", "body", "version", "datagram", "_wire", "_request_uri")

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Headers | Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        self.method = method
        self.uri = str(uri)
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body = body
        self.version = version
        #: The octets this request arrived as, when it came in one UDP
        #: datagram: set by the transport, taken (and cleared) by the
        #: transaction layer, which recognises retransmissions by them.
        self.datagram: bytes | None = None
        self._wire = None
        self._request_uri: tuple[str, Uri] | None = None

    @property
    def request_uri(self) -> Uri:
        """
        The parsed Request-URI (parsed once per value of C{uri}).
        """
        cached = self._request_uri
        if cached is not None and cached[0] == self.uri:
            return cached[1]
        uri = parse_uri(self.uri)
        self._request_uri = (self.uri, uri)
        return uri

    def to_bytes(self) -> bytes:
        """
        Serialize; C{Content-Length} is set to the body's octet count.
        """
        return self._serialize("%s %s %s" % (self.method, self.uri, self.version))

    def copy(self) -> Request:
        """
        A copy with its own header list.
        """
        return Request(self.method, self.uri, self.headers.copy(), self.body, self.version)

    def __repr__(self) -> str:
        return "<Request %s %s call-id=%r>" % (self.method, self.uri, self.call_id)


class Response(_MessageBase):
    """
    A SIP response (RFC 3261 s7.2).
    """

    __slots__ = ("status", "reason", "headers", "body", "version", "_wire")

    def __init__(
        self,
        status: int,
        reason: str = "",
        headers: Headers | Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        self.status = status
        self.reason = reason if reason else REASONS.get(status, "")
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body = body
        self.version = version
        self._wire = None

    def to_bytes(self) -> bytes:
        """
        Serialize; C{Content-Length} is set to the body's octet count.
        """
        return self._serialize("%s %d %s" % (self.version, self.status, self.reason))

    def copy(self) -> Response:
        """
        A copy with its own header list.
        """
        return Response(self.status, self.reason, self.headers.copy(), self.body, self.version)

    def __repr__(self) -> str:
        return "<Response %d %s call-id=%r>" % (self.status, self.reason, self.call_id)


Message = Union[Request, Response]

REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Moved Temporarily", 305: "Use Proxy",
    380: "Alternative Service", 400: "Bad Request", 401: "Unauthorized",
    402: "Payment Required", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small",
    423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    489: "Bad Event", 491: "Request Pending", 493: "Undecipherable",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 600: "Busy Everywhere", 603: "Decline",
    604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}


class SipParseError(RemoteSipError):
    """
    A message that cannot be accepted.

    @ivar status_hint: the status a request deserves (400, 505, 513...).
    @ivar partial: a L{Request} with the headers that could be read (for
        building the error response), or C{None}.
    @ivar is_request: C{True} for a request, C{False} for a response (which
        is dropped), C{None} when not even the start line was readable.
    """

    def __init__(
        self,
        status_hint: int,
        reason: str,
        partial: Request | None = None,
        is_request: bool | None = None,
    ) -> None:
        super().__init__(reason, status_hint)
        self.partial = partial
        self.is_request = is_request


class FramingError(SipParseError):
    """
    A stream can no longer be framed (RFC 3261 s18.3): close the connection
    after answering.
    """


def _partial(start: str, headers: list[tuple[str, str]]) -> Request | None:
    parts = start.split(" ")
    if len(parts) >= 1 and parts[0] and not parts[0].upper().startswith("SIP/"):
        return Request(parts[0], parts[1] if len(parts) > 1 else "", Headers(headers))
    return None


def content_length(headers: Headers) -> int | None:
    """
    The Content-Length, checked: one value, digits only (RFC 4475 s3.1.2.3,
    s3.3.9); C{None} when absent.

    @raise SipParseError: 400 on a bad or conflicting value.
    """
    values = headers.get_all("Content-Length")
    if not values:
        return None
    lens = set()
    for v in values:
        v = v.strip()
        if not abnf.is_digits(v, 10):
            raise SipParseError(400, "Bad Content-Length")
        lens.add(int(v))
    if len(lens) != 1 or len(values) != 1:
        raise SipParseError(400, "Multiple Content-Length values")
    return lens.pop()


def parse(data: bytes, max_size: int = DEFAULT_MAX_SIZE, datagram: bool = True) -> Message:
    """
    Parse one SIP message.

    For a datagram, a missing Content-Length means the body is the rest of
    the datagram, octets after Content-Length are ignored (RFC 3261 s18.3,
    RFC 4475 s3.1.1.8) and a Content-Length larger than the datagram is an
    error (s3.1.2.2). For a stream frame (from L{StreamFramer}), the body is
    exactly what the framer cut.

    @param data: the octets.
    @param max_size: requests larger than this get 513 (RFC 3261 s21.5.14).
    @param datagram: whether C{data} is a whole datagram.
    @raise SipParseError: with the status hint the RFCs name.
    """
    stripped = data.lstrip(b"\r\n")
    split = split_head(stripped, datagram)
    if split is None:
        raise SipParseError(400, "No end of header section", is_request=None)
    head, rest = split
    try:
        start, items = header_lines(head)
    except HeaderSectionError as e:
        partial = _partial(e.start, e.headers)
        raise SipParseError(400, e.reason, partial, partial is not None)
    headers = Headers(items)
    if start.upper().startswith("SIP/"):
        if len(data) > max_size:
            raise SipParseError(513, "Message Too Large", None, False)
        try:
            return _parse_response(start, headers, rest, datagram)
        except ValueError:
            raise SipParseError(400, "Malformed number", None, False) from None
    # On an error, the request as far as it could be read (built only then).
    try:
        if len(data) > max_size:
            raise SipParseError(513, "Message Too Large")
        return _parse_request(start, headers, rest, datagram)
    except UriError as e:
        raise SipParseError(e.status_hint, e.reason, _partial(start, items), True)
    except SipParseError as e:
        e.partial = _partial(start, items)
        e.is_request = True
        raise
    except ValueError:
        # An int() deeper down (a port of non-ASCII digits passes
        # str.isdigit but not int()): the peer's error, answered 400.
        raise SipParseError(400, "Malformed number", _partial(start, items), True) from None


def _body(headers: Headers, rest: bytes, datagram: bool) -> bytes:
    clen = content_length(headers)
    if clen is None:
        return rest if datagram else b""
    if clen > len(rest):
        raise SipParseError(400, "Content-Length larger than message")
    return rest[:clen]


def _parse_request(start: str, headers: Headers, rest: bytes, datagram: bool) -> Request:
    # RFC 3261 s25.1: Request-Line = Method SP Request-URI SP SIP-Version CRLF
    # RFC 4475 s3.1.2.7-10: extra or trailing SP, LWS or <> in it -> 400.
    parts = start.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError(400, "Malformed Request-Line")
    method, uri_text, version = parts
    if not abnf.METHOD_RE.match(method):
        raise SipParseError(400, "Bad method")
    m = abnf.SIP_VERSION_RE.match(version)
    if not m:
        raise SipParseError(400, "Bad SIP-Version")
    if (m.group(1), m.group(2)) != ("2", "0"):
        raise SipParseError(505, "Version Not Supported")
    uri = parse_uri(uri_text)
    if getattr(uri, "headers", None) is not None:
        raise SipParseError(400, "Headers in Request-URI")
    # RFC 3261 s8.1.1: mandatory headers; RFC 4475 s3.3.1.
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        if name not in headers:
            raise SipParseError(400, "Missing %s" % (name,))
    _check_single(headers)
    cseq = headers.cached("cseq", _parse_cseq)
    if cseq.method != method:
        raise SipParseError(400 if method in KNOWN_METHODS else 501, "CSeq method does not match")
    call_id = (headers.get("Call-ID") or "").strip()
    if not call_id or any(c in call_id for c in " \t"):
        raise SipParseError(400, "Bad Call-ID")
    mf = headers.get("Max-Forwards")
    if mf is not None:
        mf = mf.strip()
        if not abnf.is_digits(mf, abnf.ANY_LENGTH) or len(mf.lstrip("0")) > 3 or int(mf.lstrip("0") or "0") > 255:
            raise SipParseError(400, "Bad Max-Forwards")
    # Parsed once here: what the layers above read comes from the cache.
    headers.cached("vias", _parse_vias)
    headers.cached("from", _parse_from)
    headers.cached("to", _parse_to)
    headers.cached("contacts", _validate_contacts)
    body = _body(headers, rest, datagram)
    request = Request(method, uri_text, headers, body, version)
    request._request_uri = (uri_text, uri)
    return request


def _check_single(headers: Headers) -> None:
    """
    Headers that must appear at most once do (RFC 4475 s3.3.8).

    @raise SipParseError: 400 otherwise.
    """
    seen: set[str] = set()
    for key in headers._keys:
        if key in SINGLE_HEADERS:
            if key in seen:
                raise SipParseError(400, "Multiple %s values" % (canonical_name(key),))
            seen.add(key)


def _validate_contacts(headers: Headers) -> list[NameAddr]:
    """
    Every Contact line parsed, an empty one being an error (unlike
    L{Headers.values}, which skips it); for a valid message the same list
    as L{_parse_contacts}.
    """
    out: list[NameAddr] = []
    for line in headers.get_all("Contact"):
        out.extend(parse_name_addr_list(line))
    return out


def _parse_response(start: str, headers: Headers, rest: bytes, datagram: bool) -> Response:
    # RFC 3261 s25.1: Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF
    try:
        fields = start.split(" ", 2)
        if len(fields) < 2:
            raise SipParseError(400, "Malformed Status-Line")
        version, code, *reason = fields
        m = abnf.SIP_VERSION_RE.match(version)
        if not m or (m.group(1), m.group(2)) != ("2", "0"):
            raise SipParseError(400, "Bad SIP-Version")
        if not abnf.STATUS_CODE_RE.match(code) or not 100 <= int(code) <= 699:
            raise SipParseError(400, "Bad Status-Code")
        for name in ("Via", "From", "To", "Call-ID", "CSeq"):
            if name not in headers:
                raise SipParseError(400, "Missing %s" % (name,))
        _check_single(headers)
        headers.cached("cseq", _parse_cseq)
        headers.cached("vias", _parse_vias)
        # The UA keys dialogs on the From/To tags: a response it cannot
        # read is discarded here (RFC 3261 s18.1.2), not deeper up.
        headers.cached("from", _parse_from)
        headers.cached("to", _parse_to)
        body = _body(headers, rest, datagram)
    except UriError as e:
        raise SipParseError(e.status_hint, e.reason, None, False)
    except SipParseError as e:
        e.is_request = False
        raise
    return Response(int(code), reason[0] if reason else "", headers, body, version)


KEEPALIVE = b"\r\n\r\n"


class StreamFramer:
    """
    Cut SIP messages out of a byte stream by Content-Length (RFC 3261 s18.3).

    L{feed} returns complete frames (each parsed by L{parse} with
    C{datagram=False}) and the keep-alive marker L{KEEPALIVE} for a
    C{CRLFCRLF} ping (RFC 5626 s3.5.1). Unrecoverable framing raises
    L{FramingError}: the caller answers if it can, then closes.

    Each message costs one pass: the search for the end of the header
    section resumes where the previous read stopped, and the header is
    parsed (for Content-Length) once, when it is complete; then only the
    body's length is awaited. A header dripped byte by byte therefore costs
    linear, not quadratic, time.
    """

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self._buf = bytearray()
        self._max = max_size
        # Octets of the current message already searched for its end of
        # header (no separator ends before this offset).
        self._scanned = 0
        # The current message's total length once its header is complete.
        self._total: int | None = None

    @property
    def buffered(self) -> int:
        """
        Octets held waiting for the rest of a message.
        """
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """
        Add octets; return the complete frames now available.

        @raise FramingError: on a bad Content-Length or an oversized message.
        """
        self._buf += data
        out: list[bytes] = []
        while True:
            if self._total is None:
                if self._scanned == 0 and not self._skip_line_ends(out):
                    return out
                if not self._find_header_end():
                    return out
            assert self._total is not None
            if len(self._buf) < self._total:
                return out
            out.append(bytes(self._buf[: self._total]))
            del self._buf[: self._total]
            self._total = None
            self._scanned = 0

    def _skip_line_ends(self, out: list[bytes]) -> bool:
        """
        Drop line ends before a message: a CRLFCRLF is a keep-alive ping
        (two CRLF), single ones are stray.

        @return: whether octets of a message follow.
        """
        i = 0
        n = len(self._buf)
        while i < n and self._buf[i] in (13, 10):
            i += 1
        if i:
            ends = bytes(self._buf[:i])
            if ends.count(b"\r\n") >= 2 or ends.count(b"\n") >= 2:
                out.append(KEEPALIVE)
            del self._buf[:i]
        return bool(self._buf)

    def _find_header_end(self) -> bool:
        """
        Search the octets not searched yet for the empty line ending the
        header; when found, parse the header once and set C{_total}.

        @return: whether the header is complete.
        @raise FramingError: as L{feed}.
        """
        # A separator may straddle the previous read: back up 3 octets.
        start = max(0, self._scanned - 3)
        crlf = self._buf.find(b"\r\n\r\n", start)
        lf = self._buf.find(b"\n\n", start)
        if crlf < 0 and lf < 0:
            self._scanned = len(self._buf)
            if len(self._buf) > self._max:
                raise FramingError(513, "Header section too large")
            return False
        # The earliest separator, as L{parse} splits (bare-LF senders).
        if crlf >= 0 and (lf < 0 or crlf < lf):
            end, sep = crlf, 4
        else:
            end, sep = lf, 2
        head = bytes(self._buf[:end])
        try:
            start_line, items = header_lines(head)
        except HeaderSectionError as e:
            start_line, items = e.start, e.headers
        headers = Headers(items)
        try:
            clen = content_length(headers)
        except SipParseError as e:
            partial = _partial(start_line, items)
            raise FramingError(e.status_hint, e.reason, partial, partial is not None)
        total = end + sep + (clen or 0)
        if total > self._max:
            partial = _partial(start_line, items)
            raise FramingError(513, "Message Too Large", partial, partial is not None)
        self._total = total
        return True


def make_response(
    request: Request,
    status: int,
    reason: str = "",
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """
    Build a response to a request per RFC 3261 s8.2.6.2: Via (all values, in
    order), From, Call-ID and CSeq copied; To copied, with C{to_tag} added if
    it has none and the status is not 100.

    Works on a partial request (from L{SipParseError.partial}): headers it
    lacks are simply absent.
    """
    h = Headers()
    for v in request.headers.get_all("Via"):
        h.add("Via", v)
    copied = ["Via", "From", "To", "Call-ID", "CSeq"]
    for name in ("From", "To", "Call-ID", "CSeq"):
        v = request.headers.get(name)
        if v is None:
            continue
        if name == "To" and to_tag and status != 100:
            try:
                has_tag = request.to.tag is not None
            except UriError:
                has_tag = True
            if not has_tag:
                v = v + ";tag=" + to_tag
                copied.remove("To")
        h.add(name, v)
    if status == 100 and request.headers.get("Timestamp") is not None:
        h.add("Timestamp", request.headers.get("Timestamp") or "")
    for n, v in headers:
        h.add(n, v)
        if canonical_name(n) in copied:
            copied.remove(canonical_name(n))
    # What the request parsed from the lines copied unchanged holds here too.
    h.adopt_parsed(request.headers, copied)
    return Response(status, reason, h, body)
