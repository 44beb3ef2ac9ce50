# -*- test-case-name: tests.sip.test_sdp,tests.sip.test_fuzz -*-
"""
The session description model (RFC 4566): media sections
(L{MediaDescription}) and whole descriptions (L{SessionDescription}), their
serializer (L{SessionDescription.to_bytes}) and the parser (L{parse_sdp}).

The model is made of frozen value objects.  The attributes of a session or
media section are kept as written, in order, and the convenient views
(L{MediaDescription.rtpmap}, L{MediaDescription.label},
L{MediaDescription.direction}, L{MediaDescription.crypto} ...) are computed
from them, so C{parse -> to_bytes -> parse} gives an equal object.  Lines
other than C{a=} that have no field of their own (C{i=}, C{u=}, C{b=},
C{k=}, C{r=}, unknown types ...) are kept in C{extra_lines}, stably sorted
into the order RFC 4566 s5 prescribes.

The line-level values (C{o=}, C{c=}, C{t=}, C{a=}) live in
L{aiconnect.sip.sdp_fields}, SDES keys in L{aiconnect.sip.sdes}, the
offer/answer builders in L{aiconnect.sip.offer_answer}; L{aiconnect.sip.sdp}
is the public face.

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from aiconnect.errors import LocalSipError
from aiconnect.sip import abnf
from aiconnect.sip.sdes import Crypto
from aiconnect.sip.sdp_fields import (
    DIRECTIONS,
    STATIC_PAYLOAD_TYPES,
    Attribute,
    Connection,
    Origin,
    RtpMap,
    SdpError,
    Timing,
)

__all__ = ["MediaDescription", "SessionDescription", "parse_sdp"]

# RFC 4566 s5: the order of the line types of a session and a media section.
# Types with a field of their own (v o s c t m a) are placed by the
# serializer; the others ("extra lines") are sorted by this rank.
_SESSION_RANK = {"i": 1, "u": 2, "e": 3, "p": 4, "b": 6, "t": 7, "r": 7, "z": 8, "k": 9}
_SESSION_RANK_UNKNOWN = 10
_SESSION_RANK_BEFORE_C = 5  # i u e p come before c=, the rest after it
_MEDIA_RANK = {"i": 1, "b": 3, "k": 4}
_MEDIA_RANK_UNKNOWN = 5
_MEDIA_RANK_BEFORE_C = 2

# RFC 4566 s9: <type>=<value>; we accept any single letter (unknown types
# are kept) and tolerate white space around the line.
_LINE = re.compile(r"([A-Za-z])=(.*)\Z", re.S)


def _last_direction(attributes: tuple[Attribute, ...]) -> str | None:
    """
    The last direction attribute (RFC 3264 s5.1) among C{attributes}, or
    C{None}.
    """
    found = None
    for a in attributes:
        if a.value is None and a.name.lower() in DIRECTIONS:
            found = a.name.lower()
    return found


#: An C{a=rtpmap} value (RFC 4566 s6): payload type, encoding name, clock
#: rate and optional channels.
_RTPMAP_RE = re.compile(r"\s*([0-9]{1,3})\s+([^/\s]+)/([0-9]+)(?:/([0-9]+))?\s*\Z")


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """
    One media section (RFC 4566 s5.14): the C{m=} line and what follows it.

    @ivar media: C{audio}, C{video} ...
    @ivar port: the transport port; C{0} marks a disabled or rejected
        stream (RFC 3264 s5.1, s6).
    @ivar proto: C{RTP/AVP}, C{RTP/SAVP} ...
    @ivar formats: the payload types (or other formats) as written, in
        preference order.
    @ivar port_count: the C{/<number of ports>} of the C{m=} line, or C{None}.
    @ivar connection: this section's own C{c=} line, or C{None} (then the
        session's applies: see L{effective_connection}).
    @ivar attributes: the C{a=} lines in order.
    @ivar extra_lines: other lines as C{(type, value)} (C{i=}, C{b=}, C{k=},
        unknown types), in RFC 4566 order.
    @ivar session_connection: the session-level C{c=} line, filled in by the
        L{SessionDescription} holding this section; not serialized, not
        compared.
    @ivar session_direction: the session-level direction attribute, filled in
        likewise.
    """

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    connection: Connection | None = None
    attributes: tuple[Attribute, ...] = ()
    extra_lines: tuple[tuple[str, str], ...] = ()
    session_connection: Connection | None = field(default=None, compare=False, repr=False)
    session_direction: str | None = field(default=None, compare=False, repr=False)

    # -- attribute access ---------------------------------------------------

    def attribute_values(self, name: str) -> list[str | None]:
        """
        The values of every attribute named C{name} (case-insensitive), in
        order; C{None} for a flag.
        """
        lname = name.lower()
        return [a.value for a in self.attributes if a.name.lower() == lname]

    def attribute(self, name: str) -> str | None:
        """
        The value of the first attribute named C{name}, C{""} for a flag,
        C{None} when absent.
        """
        values = self.attribute_values(name)
        if not values:
            return None
        return values[0] if values[0] is not None else ""

    def has_attribute(self, name: str) -> bool:
        """
        Whether an attribute named C{name} is present.
        """
        return bool(self.attribute_values(name))

    # -- views ----------------------------------------------------------------

    @property
    def effective_connection(self) -> Connection | None:
        """
        The C{c=} line that applies: this section's, else the session's
        (RFC 4566 s5.7).
        """
        return self.connection if self.connection is not None else self.session_connection

    @property
    def address(self) -> str | None:
        """
        The host the stream's media is sent to (the applicable C{c=}
        address without C{/ttl}), or C{None} when no C{c=} applies.
        """
        conn = self.effective_connection
        return conn.host if conn is not None else None

    @property
    def own_direction(self) -> str | None:
        """
        The last direction attribute of this section, or C{None}.
        """
        return _last_direction(self.attributes)

    @property
    def direction(self) -> str:
        """
        The direction that applies: this section's attribute, else the
        session-level one, else C{sendrecv} (RFC 3264 s5.1).
        """
        return self.own_direction or self.session_direction or "sendrecv"

    @property
    def label(self) -> str | None:
        """
        The C{a=label} value (RFC 4574), or C{None}.
        """
        value = self.attribute("label")
        return value.strip() if value is not None else None

    @property
    def is_rtp(self) -> bool:
        """
        Whether the transport is an RTP profile (so payload types apply).
        """
        return "RTP" in self.proto.upper()

    @property
    def is_secure(self) -> bool:
        """
        Whether the transport is an SRTP profile (C{RTP/SAVP}, C{RTP/SAVPF}).
        """
        return self.proto.upper() in ("RTP/SAVP", "RTP/SAVPF")

    @property
    def payload_types(self) -> list[int]:
        """
        The formats that are RTP payload types (0..127), in order.
        """
        if not self.is_rtp:
            return []
        out = []
        for f in self.formats:
            if abnf.is_digits(f, 3) and int(f) < 128:
                out.append(int(f))
        return out

    @property
    def rtpmap(self) -> dict[int, RtpMap]:
        """
        Payload type -> encoding: the C{a=rtpmap} lines, completed with the
        static payload types (RFC 3551) listed in the C{m=} line without
        one.  Malformed C{a=rtpmap} lines are skipped.
        """
        out: dict[int, RtpMap] = {}
        for value in self.attribute_values("rtpmap"):
            if value is None:
                continue
            m = _RTPMAP_RE.match(value)
            if m is None:
                continue
            out.setdefault(int(m[1]), RtpMap(m[2], int(m[3]), int(m[4]) if m[4] else None))
        for pt in self.payload_types:
            if pt not in out and pt in STATIC_PAYLOAD_TYPES:
                out[pt] = RtpMap(*STATIC_PAYLOAD_TYPES[pt])
        return out

    @property
    def fmtp(self) -> dict[int, str]:
        """
        Payload type -> format parameters (C{a=fmtp}).
        """
        out: dict[int, str] = {}
        for value in self.attribute_values("fmtp"):
            if value is None:
                continue
            pt, _, params = value.strip().partition(" ")
            if abnf.is_digits(pt, 3):
                out.setdefault(int(pt), params.strip())
        return out

    def payload_type_for(self, encoding: str, clock_rate: int = 8000) -> int | None:
        """
        The first payload type (in C{m=} order) with this encoding name
        (case-insensitive) and clock rate, or C{None}.
        """
        rtpmap = self.rtpmap
        for pt in self.payload_types:
            entry = rtpmap.get(pt)
            if entry and entry.encoding.lower() == encoding.lower() and entry.clock_rate == clock_rate:
                return pt
        return None

    @property
    def telephone_event(self) -> int | None:
        """
        The payload type of C{telephone-event/8000} (RFC 4733), or C{None}.
        """
        return self.payload_type_for("telephone-event", 8000)

    @property
    def crypto(self) -> tuple[Crypto, ...]:
        """
        The C{a=crypto} lines (RFC 4568) in order; malformed ones are
        skipped (an offer whose lines are all unusable is rejected by
        L{rejection_reason}).
        """
        out = []
        for value in self.attribute_values("crypto"):
            if value is None:
                continue
            try:
                out.append(Crypto.parse(value))
            except SdpError:
                continue
        return tuple(out)

    @property
    def rtcp(self) -> int | None:
        """
        The RTCP port of C{a=rtcp} (RFC 3605), or C{None} (then RTCP uses
        port + 1).
        """
        value = self.attribute("rtcp")
        if not value:
            return None
        port = value.split()[0]
        return int(port) if abnf.is_digits(port, 5) and int(port) < 65536 else None

    @property
    def rtcp_address(self) -> str | None:
        """
        The address of C{a=rtcp:<port> IN IP4 <address>}, or C{None}.
        """
        value = self.attribute("rtcp")
        words = value.split() if value else []
        return words[3] if len(words) >= 4 else None

    @property
    def rtcp_mux(self) -> bool:
        """
        Whether C{a=rtcp-mux} (RFC 5761) is present.
        """
        return self.has_attribute("rtcp-mux")

    @property
    def ptime(self) -> int | None:
        """
        The C{a=ptime} packet time in milliseconds, or C{None}.
        """
        value = self.attribute("ptime")
        if not value:
            return None
        try:
            return int(float(value.strip()))
        except ValueError:
            return None

    # -- building -------------------------------------------------------------

    def with_direction(self, direction: str) -> MediaDescription:
        """
        A copy whose direction attributes are replaced by C{direction},
        placed where the first one was (else at the end).
        """
        if direction not in DIRECTIONS:
            raise LocalSipError(f"unknown SDP direction {direction!r}")
        attrs: list[Attribute] = []
        placed = False
        for a in self.attributes:
            if a.value is None and a.name.lower() in DIRECTIONS:
                if not placed:
                    attrs.append(Attribute(direction))
                    placed = True
                continue
            attrs.append(a)
        if not placed:
            attrs.append(Attribute(direction))
        return replace(self, attributes=tuple(attrs))

    def lines(self) -> list[str]:
        """
        This section's lines, without line ends.
        """
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        m = " ".join([self.media, port, self.proto, *self.formats])
        out = ["m=" + m]
        out.extend(f"{t}={v}" for t, v in self.extra_lines if _media_rank(t) < _MEDIA_RANK_BEFORE_C)
        if self.connection is not None:
            out.append("c=" + self.connection.value())
        out.extend(f"{t}={v}" for t, v in self.extra_lines if _media_rank(t) > _MEDIA_RANK_BEFORE_C)
        out.extend("a=" + a.text() for a in self.attributes)
        return out


def _media_rank(kind: str) -> int:
    return _MEDIA_RANK.get(kind, _MEDIA_RANK_UNKNOWN)


def _session_rank(kind: str) -> int:
    return _SESSION_RANK.get(kind, _SESSION_RANK_UNKNOWN)


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """
    A whole session description (RFC 4566 s5).

    @ivar origin: the C{o=} line.
    @ivar session_name: the C{s=} value (C{-} when none was given).
    @ivar connection: the session-level C{c=} line, or C{None}.
    @ivar timing: the first C{t=} line.
    @ivar attributes: the session-level C{a=} lines in order.
    @ivar media: the media sections in order.
    @ivar extra_lines: other session-level lines as C{(type, value)}
        (C{i=}, C{u=}, C{e=}, C{p=}, C{b=}, further C{t=}, C{r=}, C{z=},
        C{k=}, unknown types), in RFC 4566 order.
    @ivar version: the C{v=} value (0).
    """

    origin: Origin
    session_name: str = "-"
    connection: Connection | None = None
    timing: Timing = Timing()
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = ()
    extra_lines: tuple[tuple[str, str], ...] = ()
    version: int = 0

    def __post_init__(self) -> None:
        direction = self.direction_attribute
        media = tuple(
            m
            if m.session_connection == self.connection and m.session_direction == direction
            else replace(m, session_connection=self.connection, session_direction=direction)
            for m in self.media
        )
        object.__setattr__(self, "media", media)

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        """
        Parse a session description; see L{parse_sdp}.
        """
        return parse_sdp(data)

    @property
    def direction_attribute(self) -> str | None:
        """
        The session-level direction attribute, or C{None}.
        """
        return _last_direction(self.attributes)

    @property
    def direction(self) -> str:
        """
        The session-level direction, C{sendrecv} by default (RFC 3264 s5.1).
        """
        return self.direction_attribute or "sendrecv"

    @property
    def labels(self) -> list[str | None]:
        """
        The C{a=label} of each media section, in order (C{None} where
        absent).
        """
        return [m.label for m in self.media]

    def media_by_label(self, label: str) -> MediaDescription | None:
        """
        The first media section labelled C{label}, or C{None}.
        """
        for m in self.media:
            if m.label == label:
                return m
        return None

    def next_version(self) -> SessionDescription:
        """
        A copy with the origin's version incremented (RFC 3264 s8), for a
        modified offer.
        """
        return replace(self, origin=self.origin.next_version())

    def lines(self) -> list[str]:
        """
        The description's lines, without line ends.
        """
        out = [f"v={self.version}", "o=" + self.origin.value(), "s=" + (self.session_name or "-")]
        extra = self.extra_lines
        out.extend(f"{t}={v}" for t, v in extra if _session_rank(t) < _SESSION_RANK_BEFORE_C)
        if self.connection is not None:
            out.append("c=" + self.connection.value())
        out.extend(f"{t}={v}" for t, v in extra if _session_rank(t) == _SESSION_RANK["b"])
        out.append("t=" + self.timing.value())
        out.extend(f"{t}={v}" for t, v in extra if _session_rank(t) > _SESSION_RANK["b"])
        out.extend("a=" + a.text() for a in self.attributes)
        for m in self.media:
            out.extend(m.lines())
        return out

    def to_bytes(self) -> bytes:
        """
        The description as bytes, CRLF line ends (RFC 4566 s5), UTF-8.
        """
        return ("\r\n".join(self.lines()) + "\r\n").encode("utf-8")


# --------------------------------------------------------------------------
# Parsing


def _parse_origin(value: str) -> Origin:
    words = value.split()
    if len(words) != 6:
        raise SdpError("malformed o= line")
    username, sess_id, version, nettype, addrtype, address = words
    if not abnf.is_digits(version):
        raise SdpError("malformed o= session version")
    return Origin(username, sess_id, int(version), nettype, addrtype, address)


def _parse_connection(value: str) -> Connection:
    words = value.split()
    if len(words) != 3:
        raise SdpError("malformed c= line")
    return Connection(words[0], words[1], words[2])


def _parse_timing(value: str) -> Timing:
    words = value.split()
    if len(words) != 2 or not all(abnf.is_digits(w) for w in words):
        raise SdpError("malformed t= line")
    return Timing(int(words[0]), int(words[1]))


def _parse_attribute(value: str) -> Attribute:
    name, sep, rest = value.partition(":")
    name = name.strip()
    if not name:
        raise SdpError("malformed a= line")
    return Attribute(name, rest.strip() if sep else None)


def _parse_m(value: str) -> MediaDescription:
    words = value.split()
    if len(words) < 3:
        raise SdpError("malformed m= line")
    media, port_text, proto = words[0], words[1], words[2]
    port_str, slash, count_str = port_text.partition("/")
    if not abnf.is_digits(port_str, 5) or int(port_str) > 65535 or (slash and not abnf.is_digits(count_str, 5)):
        raise SdpError("malformed m= port")
    return MediaDescription(
        media=media,
        port=int(port_str),
        proto=proto,
        formats=tuple(words[3:]),
        port_count=int(count_str) if slash else None,
    )


def parse_sdp(data: bytes | str) -> SessionDescription:
    """
    Parse a session description (RFC 4566).

    Tolerated: CRLF or bare LF line ends, white space around lines, blank
    lines, a missing C{s=} or C{t=}, unknown line types and attributes
    (kept), several direction attributes (the last wins), octets that are
    not UTF-8 (replaced).

    @param data: the C{application/sdp} body.
    @return: the parsed description.
    @raise SdpError: (status hint 488) when the first line is not C{v=0}, or
        an C{o=}, C{c=}, C{t=} or C{m=} line is malformed, C{o=} is missing,
        or a line is not C{<type>=<value>}.
    """
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    raw_lines = [line.strip() for line in text.split("\n")]
    lines = [line for line in raw_lines if line]
    if not lines:
        raise SdpError("empty session description")
    version_seen = False
    origin: Origin | None = None
    session_name = "-"
    connection: Connection | None = None
    timing: Timing | None = None
    attributes: list[Attribute] = []
    extra: list[tuple[str, str]] = []
    media: list[MediaDescription] = []
    current: dict | None = None  # the media section being read

    def close_media() -> None:
        if current is not None:
            media.append(
                replace(
                    current["m"],
                    connection=current["c"],
                    attributes=tuple(current["a"]),
                    extra_lines=tuple(sorted(current["x"], key=lambda tv: _media_rank(tv[0]))),
                )
            )

    for index, line in enumerate(lines):
        m = _LINE.match(line)
        if m is None:
            raise SdpError("malformed SDP line %d" % (index + 1,))
        kind, value = m[1], m[2].strip()
        if kind == "a" and not value:
            continue  # an empty attribute line carries nothing
        if index == 0:
            if kind != "v" or value != "0":
                raise SdpError("SDP does not start with v=0")
            version_seen = True
            continue
        if kind == "m":
            close_media()
            current = {"m": _parse_m(value), "c": None, "a": [], "x": []}
            continue
        if current is not None:
            if kind == "a":
                current["a"].append(_parse_attribute(value))
            elif kind == "c":
                if current["c"] is None:
                    current["c"] = _parse_connection(value)
                else:
                    current["x"].append(("c", value))
            else:
                current["x"].append((kind, value))
            continue
        if kind == "v":
            raise SdpError("repeated v= line")
        if kind == "o":
            if origin is not None:
                raise SdpError("repeated o= line")
            origin = _parse_origin(value)
        elif kind == "s":
            session_name = value or "-"
        elif kind == "c" and connection is None:
            connection = _parse_connection(value)
        elif kind == "t" and timing is None:
            timing = _parse_timing(value)
        elif kind == "a":
            attributes.append(_parse_attribute(value))
        else:
            extra.append((kind, value))
    close_media()
    if not version_seen:
        raise SdpError("SDP does not start with v=0")
    if origin is None:
        raise SdpError("SDP has no o= line")
    return SessionDescription(
        origin=origin,
        session_name=session_name,
        connection=connection,
        timing=timing or Timing(),
        attributes=tuple(attributes),
        media=tuple(media),
        extra_lines=tuple(sorted(extra, key=lambda tv: _session_rank(tv[0]))),
    )
