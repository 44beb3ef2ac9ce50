# -*- test-case-name: tests.siprec.test_correlation -*-
"""
Vendor correlation headers (SPEC s13): what an SBC or PBX sends to tie a
recording to its call (RFC 7989 C{Session-ID}, RFC 7433 C{User-to-User},
Cisco's C{Cisco-Guid}, Genesys' C{X-Genesys-*} and every C{X-} header),
collected from the inbound INVITE for newCall's C{correlation}, and copied
onto a forward's requests by its order's C{copyHeaders}.

Pure: no I/O.  Names and values come from the wire, so both are bounded.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["NAMED", "MAX_HEADERS", "MAX_VALUE", "correlation_headers", "is_correlation_name", "copied_headers"]

#: The correlation headers other than C{X-} ones, as vendors spell them.
NAMED = ("Session-ID", "User-to-User", "Cisco-Guid")
_NAMED_LOWER = {n.lower() for n in NAMED}
#: At most this many headers are kept per call (the first ones).
MAX_HEADERS = 32
#: A value longer than this (in characters) is not kept.
MAX_VALUE = 1024


def is_correlation_name(name: str) -> bool:
    """
    Whether C{name} is a correlation header (case-insensitive).
    """
    lower = name.lower()
    return lower in _NAMED_LOWER or lower.startswith("x-")


def correlation_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """
    The correlation headers of a request: header name as received ->
    value.

    A name is matched case-insensitively and keeps the spelling of its
    first line.  Lines of a repeated name are one comma-separated value,
    as RFC 3261 s7.3.1 makes them equivalent to (C{User-to-User} may
    repeat, RFC 7433 s4.1): C{"a, b"}.  Bounds: the first L{MAX_HEADERS}
    names; a value stays within L{MAX_VALUE} characters (a first line
    longer than that drops the name, a later line that would make it
    longer is left out).

    @param headers: (name, decoded value) pairs in wire order.
    """
    out: dict[str, str] = {}
    #: lower-case name -> the name as first received (None: dropped).
    first: dict[str, str | None] = {}
    for name, value in headers:
        if not is_correlation_name(name):
            continue
        lower = name.lower()
        if lower not in first:
            keep = len(out) < MAX_HEADERS and len(value) <= MAX_VALUE
            first[lower] = name if keep else None
            if keep:
                out[name] = value
            continue
        kept = first[lower]
        if kept is not None and len(out[kept]) + 2 + len(value) <= MAX_VALUE:
            out[kept] = out[kept] + ", " + value
    return out


def copied_headers(names: Iterable[str], correlation: dict[str, str]) -> list[tuple[str, str]]:
    """
    The headers a forward carries for its order's C{copyHeaders}: each
    name found (case-insensitively) in the call's C{correlation}, with the
    name as the order wrote it.
    """
    by_lower = {k.lower(): v for k, v in correlation.items()}
    out = []
    for name in names:
        value = by_lower.get(name.lower())
        if value is not None:
            out.append((name, value))
    return out
