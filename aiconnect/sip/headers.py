# -*- test-case-name: tests.sip.test_headers,tests.sip.test_message,tests.sip.test_torture -*-
"""
SIP header fields (RFC 3261 s7.3, s20): names (compact forms, canonical
case), L{Headers}, the ordered, case-insensitive multimap of a message's
header lines, with a cache of the values parsed from them, and the
header section cut from the octets (L{split_head}, L{header_lines}).

Header names come from the wire, so each spelling is canonicalised once
and remembered, up to L{NAME_CACHE_MAX} spellings (then computed each
time): an attacker sending many names costs CPU, not memory.

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, TypeVar

from aiconnect.sip import abnf
from aiconnect.sip.uri import UriError, split_list

T = TypeVar("T")

#: RFC 3261 s7.3.3 compact forms, plus later RFCs' (3515, 3841, 3903, 4028, 4474, 6665).
COMPACT_FORMS = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_CANONICAL = {
    n.lower(): n
    for n in (
        "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info",
        "Allow", "Allow-Events", "Authentication-Info", "Authorization", "Call-ID",
        "Call-Info", "Contact", "Content-Disposition", "Content-Encoding",
        "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date",
        "Error-Info", "Event", "Expires", "From", "Identity", "Identity-Info",
        "In-Reply-To", "Max-Forwards", "Min-Expires", "Min-SE", "MIME-Version",
        "Organization", "P-Asserted-Identity", "Path", "Priority", "Proxy-Authenticate",
        "Proxy-Authorization", "Proxy-Require", "Reason", "Record-Route", "Refer-To",
        "Referred-By", "Reject-Contact", "Reply-To", "Request-Disposition", "Require",
        "Retry-After", "Route", "RSeq", "RAck", "Server", "Service-Route",
        "Session-Expires", "Subject", "Supported", "Timestamp", "To", "Unsupported",
        "User-Agent", "Via", "Warning", "WWW-Authenticate",
    )
}

#: Headers whose value is a comma-separated list (RFC 3261 s7.3.1).
LIST_HEADERS = frozenset(
    n.lower()
    for n in (
        "Accept", "Accept-Encoding", "Accept-Language", "Allow", "Allow-Events",
        "Contact", "Content-Encoding", "Content-Language", "Proxy-Require",
        "Record-Route", "Require", "Route", "Supported", "Unsupported", "Via",
        "Path", "Service-Route", "In-Reply-To",
    )
)

#: Headers that must appear at most once (RFC 3261 s20, RFC 4475 s3.3.8).
SINGLE_HEADERS = frozenset(
    n.lower() for n in ("Call-ID", "To", "From", "CSeq", "Max-Forwards", "Content-Length", "Content-Type")
)

#: The header each value cached by the message accessors is parsed from
#: (L{Headers.cached} names).
CACHED_HEADER = {
    "vias": "Via",
    "top_via": "Via",
    "cseq": "CSeq",
    "from": "From",
    "to": "To",
    "contacts": "Contact",
    "call_id": "Call-ID",
}


#: Spellings seen -> (canonical name, lower-case key); bounded, since
#: header names come from the wire (L{NAME_CACHE_MAX}).
_NAMES: dict[str, tuple[str, str]] = {}
NAME_CACHE_MAX = 4096


def canonical_name(name: str) -> str:
    """
    Expand compact forms and normalise the case of known header names;
    unknown names keep their case.
    """
    return _name(name)[0]


def _name(name: str) -> tuple[str, str]:
    """
    The canonical name of C{name} and the key it is matched by (its lower
    case), computed once per spelling (up to L{NAME_CACHE_MAX} spellings,
    then every time).
    """
    known = _NAMES.get(name)
    if known is not None:
        return known
    lname = name.lower()
    if len(lname) == 1 and lname in COMPACT_FORMS:
        canonical = COMPACT_FORMS[lname]
    else:
        canonical = _CANONICAL.get(lname, name)
    known = (canonical, canonical.lower())
    if len(_NAMES) < NAME_CACHE_MAX:
        _NAMES[name] = known
    return known


def _key(name: str) -> str:
    """
    The lower-case canonical name headers are matched by.
    """
    known = _NAMES.get(name)
    return known[1] if known is not None else _name(name)[1]


def _seed() -> None:
    """
    Remember the usual spellings first (canonical, lower case, compact),
    so a flood of odd names cannot push them out.
    """
    for canonical in _CANONICAL.values():
        _name(canonical)
        _name(canonical.lower())
    for short in COMPACT_FORMS:
        _name(short)
        _name(short.upper())


_seed()


class Headers:
    """
    An ordered, case-insensitive multimap of header fields.

    Each entry is one header line as received (after unfolding); names are
    canonical (compact forms expanded).

    Values parsed from the lines (Via, CSeq, From, To...) are kept in
    L{cached} until the next change of the header fields, so a message's
    Via is parsed once however many layers read it.
    """

    __slots__ = ("_items", "_keys", "_parsed", "generation")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = []
        #: The match key of each item (its lower-case canonical name).
        self._keys: list[str] = []
        self._parsed: dict[str, object] | None = None
        #: Counts changes: a serialisation made at one generation is still valid.
        self.generation = 0
        for n, v in items:
            canonical, key = _name(n)
            self._items.append((canonical, v))
            self._keys.append(key)

    def copy(self) -> Headers:
        """
        A shallow copy.
        """
        h = Headers()
        h._items = list(self._items)
        h._keys = list(self._keys)
        if self._parsed:
            h._parsed = dict(self._parsed)
        return h

    def _changed(self) -> None:
        self._parsed = None
        self.generation += 1

    def cached(self, name: str, parser: Callable[[Headers], T]) -> T:
        """
        C{parser(self)}, computed once until the header fields change.

        @param name: what is cached (one name per parser).
        @param parser: reads these headers; may raise (nothing is cached then).
        """
        parsed = self._parsed
        if parsed is None:
            parsed = self._parsed = {}
        elif name in parsed:
            return parsed[name]  # type: ignore[return-value]
        value = parsed[name] = parser(self)
        return value

    def adopt_parsed(self, other: Headers, names: Iterable[str]) -> None:
        """
        Take over what C{other} has parsed from the headers C{names}, whose
        lines the caller copied here unchanged (a response copies its
        request's Via, From, Call-ID and CSeq, RFC 3261 s8.2.6.2).

        @param names: canonical header names.
        """
        parsed = other._parsed
        if not parsed:
            return
        names = frozenset(names)
        mine = self._parsed if self._parsed is not None else {}
        for key, value in parsed.items():
            if CACHED_HEADER[key] in names:
                mine[key] = value
        self._parsed = mine

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return _key(name) in self._keys

    def get(self, name: str, default: str | None = None) -> str | None:
        """
        The first value of a header, or C{default}.
        """
        key = _key(name)
        keys = self._keys
        if key not in keys:
            return default
        return self._items[keys.index(key)][1]

    def get_all(self, name: str) -> list[str]:
        """
        Every line of a header, in order, unsplit.
        """
        key = _key(name)
        keys = self._keys
        if key not in keys:
            return []
        return [item[1] for k, item in zip(keys, self._items) if k == key]

    def count(self, name: str) -> int:
        """
        How many lines of a header there are.
        """
        return self._keys.count(_key(name))

    def values(self, name: str) -> list[str]:
        """
        Every value of a header; list headers (RFC 3261 s7.3.1) are split at
        commas outside quotes and angle brackets.

        @raise UriError: on an empty list element.
        """
        lines = self.get_all(name)
        if _key(name) not in LIST_HEADERS:
            return lines
        out: list[str] = []
        for line in lines:
            if line.strip():
                out.extend(split_list(line))
        return out

    def tokens(self, name: str) -> list[str]:
        """
        The values of a token-list header (Require, Supported...), lower case.
        """
        try:
            return [v.strip().lower() for v in self.values(name)]
        except UriError:
            return []

    def add(self, name: str, value: str) -> None:
        """
        Append a header line.
        """
        canonical, key = _name(name)
        self._items.append((canonical, value))
        self._keys.append(key)
        self._changed()

    def add_first(self, name: str, value: str) -> None:
        """
        Insert a header line before all others (for Via, Route).
        """
        canonical, key = _name(name)
        self._items.insert(0, (canonical, value))
        self._keys.insert(0, key)
        self._changed()

    def set(self, name: str, value: str) -> None:
        """
        Replace every line of a header by one value, in the first one's place.
        """
        canonical, key = _name(name)
        keys = self._keys
        self._changed()
        if key not in keys:
            self._items.append((canonical, value))
            keys.append(key)
            return
        i = keys.index(key)
        self._items[i] = (canonical, value)
        tail = [(k, item) for k, item in zip(keys[i + 1 :], self._items[i + 1 :]) if k != key]
        self._items[i + 1 :] = [item for _, item in tail]
        keys[i + 1 :] = [k for k, _ in tail]

    def remove(self, name: str) -> None:
        """
        Remove every line of a header.
        """
        key = _key(name)
        if key not in self._keys:
            return
        kept = [(k, item) for k, item in zip(self._keys, self._items) if k != key]
        self._items = [item for _, item in kept]
        self._keys = [k for k, _ in kept]
        self._changed()

    def remove_first(self, name: str) -> None:
        """
        Remove the first value of a header (a list header loses one element).
        """
        key = _key(name)
        if key not in self._keys:
            return
        i = self._keys.index(key)
        n, v = self._items[i]
        parts = split_list(v) if key in LIST_HEADERS else [v]
        if len(parts) > 1:
            self._items[i] = (n, ", ".join(parts[1:]))
        else:
            del self._items[i]
            del self._keys[i]
        self._changed()

    def __repr__(self) -> str:
        return "Headers(%r)" % (self._items,)


#: Header names seen that are tokens (RFC 3261 s25.1); bounded like L{_NAMES}.
_TOKEN_NAMES: set[str] = set()


def is_token_name(name: str) -> bool:
    """
    Whether a header name is a token (RFC 3261 s25.1: C{field-name}),
    remembered for the next message.
    """
    if name in _TOKEN_NAMES:
        return True
    if not abnf.TOKEN_RE.match(name):
        return False
    if len(_TOKEN_NAMES) < NAME_CACHE_MAX:
        _TOKEN_NAMES.add(name)
    return True


def split_head(data: bytes, datagram: bool) -> tuple[bytes, bytes] | None:
    """
    Split at the empty line ending the header section; C{None} if absent.
    """
    i = data.find(b"\r\n\r\n")
    j = data.find(b"\n\n")
    if i >= 0 and (j < 0 or i < j):
        return data[:i], data[i + 4 :]
    if j >= 0:
        return data[:j], data[j + 2 :]
    if datagram and data.endswith(b"\n"):
        # Some senders (and RFC 5118's archive) omit the empty line when
        # there is no body: a datagram is complete anyway.
        return data.rstrip(b"\r\n"), b""
    return None


def header_lines(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    """
    Decode the start line and unfold header lines (RFC 3261 s7.3.1).
    """
    text = head.decode("utf-8", "surrogateescape")
    raw_lines = text.replace("\r\n", "\n").split("\n")
    start = raw_lines[0]
    headers: list[tuple[str, str]] = []
    current: list[str] | None = None
    bad: str | None = None
    for line in raw_lines[1:]:
        if line[:1] in (" ", "\t"):
            if current is None:
                bad = "continuation line before any header"
                continue
            current.append(line.strip(" \t"))
            continue
        if current is not None:
            headers.append(_unfolded(current))
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not name or not is_token_name(name):
            bad = "malformed header line %r" % (line[:40],)
            current = None
            continue
        current = [name, value.strip(" \t")]
    if current is not None:
        headers.append(_unfolded(current))
    if bad:
        raise HeaderSectionError(bad, start, headers)
    return start, headers


def _unfolded(current: list[str]) -> tuple[str, str]:
    """
    A header's name and its value with continuation lines joined by one SP.
    """
    if len(current) == 2:
        return current[0], current[1]
    return current[0], " ".join(p for p in current[1:] if p)


class HeaderSectionError(Exception):
    """
    A header section with a malformed line; carries what could be read.
    """

    def __init__(self, reason: str, start: str, headers: list[tuple[str, str]]) -> None:
        self.reason = reason
        self.start = start
        self.headers = headers
