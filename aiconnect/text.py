# -*- test-case-name: tests.test_text -*-
"""
Text at the boundaries: SIP header text in, JSON out.

SIP header values are kept as C{str} decoded from UTF-8 with
C{surrogateescape} (L{aiconnect.sip.message}), so a byte that is not UTF-8
(a PBX sending the display name C{"Jos\\xe9"} in ISO-8859-1 or Windows-1252)
survives as a lone surrogate (U+DC80..U+DCFF).  Such a string cannot be
encoded as UTF-8, hence not sent as JSON.  Where the product turns SIP values
into JSON (the C{newCall} request, the events) it calls L{decode_wire}:

    - valid UTF-8 stays as it is (RFC 3261 s25.1: SIP text is UTF-8);
    - every other byte is read as Windows-1252 (the superset of ISO-8859-1
      that PBXs and softphones actually send: C{0xE9} is C{é}, C{0xFC} is
      C{ü}, C{0x80} is C{€}); the five bytes Windows-1252 leaves undefined
      (C{0x81 0x8D 0x8F 0x90 0x9D}) become U+FFFD;
    - any other lone surrogate (from a JSON C{"\\ud800"} escape, say)
      becomes U+FFFD.

So C{From: "Jos\\xe9" <sip:jose@pbx>} reaches the application as
C{"Jos\\u00e9"}, i.e. C{José}.

L{json_problem} checks that a decoded JSON value can be echoed back as JSON
(no lone surrogate, bounded nesting, bounded size) and names the offending
place.

Pure module: standard library only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["REPLACEMENT", "clean_json", "decode_wire", "json_problem", "public_url", "replace_surrogates"]

#: U+FFFD REPLACEMENT CHARACTER.
REPLACEMENT = "\ufffd"

_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def _decode_one(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:
        try:
            return bytes((code - 0xDC00,)).decode("cp1252")
        except UnicodeDecodeError:
            return REPLACEMENT
    return REPLACEMENT


def decode_wire(text: str) -> str:
    """
    Text from the wire (decoded as UTF-8 with C{surrogateescape}) made
    valid Unicode: each escaped byte read as Windows-1252, any other lone
    surrogate replaced by U+FFFD.

    @param text: The text.
    @return: Text without lone surrogates (C{text} itself if it had none).
    """
    if text.isascii() or _SURROGATE_RE.search(text) is None:
        return text
    return _SURROGATE_RE.sub(_decode_one, text)


def replace_surrogates(text: str) -> str:
    """
    Replace every lone surrogate by U+FFFD (the last resort before UTF-8
    encoding; no guess about what the byte meant).

    @param text: The text.
    @return: Text encodable as UTF-8.
    """
    return _SURROGATE_RE.sub(REPLACEMENT, text)


#: Values L{clean_json} keeps as they are, by exact type.
_JSON_SCALARS = frozenset((int, float, bool, type(None)))


def clean_json(value: Any) -> Any:
    """
    A copy of a JSON-shaped value with L{decode_wire} applied to every
    string, keys included (mappings become C{dict}s, tuples and lists
    become lists; other values are kept as they are).

    @param value: The value (e.g. a C{newCall} request being built).
    @return: The copy.
    """
    kind = type(value)
    if kind in _JSON_SCALARS:
        # The common case first (counters, flags): no ABC check.
        return value
    if isinstance(value, str):
        return decode_wire(value)
    if isinstance(value, Mapping):
        return {(decode_wire(k) if isinstance(k, str) else k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


def _key_path(path: str, key: Any) -> str:
    name = replace_surrogates(key) if isinstance(key, str) else str(key)
    return path + "." + name if path else name


def json_problem(value: Any, *, max_depth: int | None = None, max_bytes: int | None = None) -> tuple[str, str] | None:
    """
    Why a decoded JSON value could not be sent back as UTF-8 JSON, if it
    could not.  The walk is iterative (no recursion limit to hit).

    @param value: The value (from C{json.loads}).
    @param max_depth: Most nested objects/arrays (C{{}} is 1, C{{"a": []}}
        is 2); L{None} for no bound.
    @param max_bytes: Largest compact UTF-8 JSON encoding; L{None} for no
        bound.
    @return: L{None} if fine, else the path of the offending place
        relative to C{value} (dotted keys, C{[i]} indexes, C{""} for the
        value itself; always encodable) and what is wrong.
    """
    # (is a key, item, path, depth); popped in document order.
    stack: list[tuple[bool, Any, str, int]] = [(False, value, "", 0)]
    while stack:
        is_key, item, path, depth = stack.pop()
        if is_key:
            if _SURROGATE_RE.search(item) is not None:
                return path, "name is not valid Unicode (lone surrogate)"
        elif isinstance(item, str):
            if _SURROGATE_RE.search(item) is not None:
                return path, "not valid Unicode (lone surrogate)"
        elif isinstance(item, (dict, list)):
            depth += 1
            if max_depth is not None and depth > max_depth:
                return path, "nested deeper than %d levels" % (max_depth,)
            if isinstance(item, dict):
                for key, sub in reversed(list(item.items())):
                    sub_path = _key_path(path, key)
                    stack.append((False, sub, sub_path, depth))
                    if isinstance(key, str):
                        stack.append((True, key, sub_path, depth))
            else:
                for index in range(len(item) - 1, -1, -1):
                    stack.append((False, item[index], "%s[%d]" % (path, index), depth))
    if max_bytes is not None:
        try:
            size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        except (TypeError, ValueError, RecursionError) as e:
            return "", "not JSON (%s)" % (type(e).__name__,)
        if size > max_bytes:
            return "", "larger than %d bytes as JSON" % (max_bytes,)
    return None


def public_url(url: str) -> str:
    """
    A URL as it may be logged or reported: without credentials, query
    string or fragment (pre-signed upload URLs and stream URLs carry tokens
    there).

    @param url: any URL.
    @return: C{scheme://host[:port]/path}; C{""} for text that is not a URL.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return ""
    if ":" in host:
        host = "[%s]" % (host,)
    netloc = host if port is None else "%s:%d" % (host, port)
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
