# -*- test-case-name: tests.sip.test_message -*-
"""
C{multipart/mixed} bodies (RFC 2046 s5.1, RFC 5621), as SIPRec uses them
for SDP + recording metadata (RFC 7866 s9).

Parts are bytes; part headers are parsed leniently (real SRCs send
C{Content-Type:application/sdp} without a space after the colon).

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Iterable

from aiconnect.errors import RemoteSipError


class MultipartError(RemoteSipError):
    """
    A multipart body that cannot be split (status hint 400).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason, 400)


@dataclass(frozen=True, slots=True)
class Part:
    """
    One body part.

    @ivar headers: part headers in order, names as written.
    @ivar body: the part's octets.
    """

    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """
        A part header's value (case-insensitive name), or C{None}.
        """
        lname = name.lower()
        for n, v in self.headers:
            if n.lower() == lname:
                return v
        return None

    @property
    def content_type(self) -> str:
        """
        The media type, lower case, without parameters (default C{text/plain}).
        """
        ct = self.header("Content-Type") or "text/plain"
        return ct.split(";", 1)[0].strip().lower()

    @property
    def disposition(self) -> str | None:
        """
        The Content-Disposition type, lower case, or C{None}.
        """
        cd = self.header("Content-Disposition")
        return cd.split(";", 1)[0].strip().lower() if cd else None


def parse_multipart(body: bytes, boundary: str) -> list[Part]:
    """
    Split a multipart body at C{--boundary} lines (RFC 2046 s5.1.1); the
    preamble and epilogue are ignored; CRLF or bare LF line ends accepted.

    @raise MultipartError: if no part or no closing delimiter is found.
    """
    if not boundary or len(boundary) > 70:
        raise MultipartError("bad multipart boundary")
    delim = b"--" + boundary.encode("ascii", "replace")
    parts: list[Part] = []
    # Find delimiter lines: at the start or after a line end.
    pos = 0
    starts: list[tuple[int, int, bool]] = []  # (line start, after line, closing)
    while True:
        i = body.find(delim, pos)
        if i < 0:
            break
        if i == 0 or body[i - 1 : i] == b"\n":
            after = i + len(delim)
            closing = body[after : after + 2] == b"--"
            eol = body.find(b"\n", after)
            line_end = len(body) if eol < 0 else eol + 1
            starts.append((i, line_end, closing))
            if closing:
                break
            pos = line_end
        else:
            pos = i + len(delim)
    if len(starts) < 2:
        raise MultipartError("multipart body without parts or closing delimiter")
    for (s1, content_start, closing), (s2, _, _) in zip(starts, starts[1:]):
        if closing:
            break
        end = s2
        # The CRLF before a delimiter belongs to the delimiter (RFC 2046).
        if body[end - 2 : end] == b"\r\n":
            end -= 2
        elif body[end - 1 : end] == b"\n":
            end -= 1
        parts.append(_parse_part(body[content_start:end]))
    if not parts:
        raise MultipartError("multipart body without parts")
    return parts


def _parse_part(raw: bytes) -> Part:
    if raw.startswith(b"\r\n"):
        return Part((), raw[2:])
    if raw.startswith(b"\n"):
        return Part((), raw[1:])
    i = raw.find(b"\r\n\r\n")
    j = raw.find(b"\n\n")
    if i >= 0 and (j < 0 or i < j):
        head, body = raw[:i], raw[i + 4 :]
    elif j >= 0:
        head, body = raw[:j], raw[j + 2 :]
    else:
        head, body = raw, b""
    headers: list[tuple[str, str]] = []
    for line in head.decode("utf-8", "replace").replace("\r\n", "\n").split("\n"):
        if line[:1] in (" ", "\t") and headers:
            n, v = headers[-1]
            headers[-1] = (n, v + " " + line.strip())
            continue
        name, colon, value = line.partition(":")
        if colon and name.strip():
            headers.append((name.strip(), value.strip()))
    return Part(tuple(headers), body)


def new_boundary() -> str:
    """
    A fresh boundary that will not occur in SDP or XML.
    """
    return "aiconnect-" + secrets.token_hex(12)


def build_multipart(parts: Iterable[Part], boundary: str) -> bytes:
    """
    Serialize parts (CRLF line ends, closing delimiter).
    """
    out = bytearray()
    for p in parts:
        out += b"--" + boundary.encode("ascii") + b"\r\n"
        for n, v in p.headers:
            out += ("%s: %s\r\n" % (n, v)).encode("utf-8")
        out += b"\r\n" + p.body + b"\r\n"
    out += b"--" + boundary.encode("ascii") + b"--\r\n"
    return bytes(out)
