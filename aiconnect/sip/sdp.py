# -*- test-case-name: tests.sip.test_sdp -*-
"""
Session descriptions: SDP (RFC 4566) with the offer/answer model (RFC
3264), SDES keys (C{a=crypto}, RFC 4568), stream labels (C{a=label}, RFC
4574) and the direction attributes, as SIPRec uses them (RFC 7866 s7).

Parsing is tolerant of what real SRCs send: bare LF line ends, trailing
white space, blank lines, unknown line types and attributes (all kept and
written back), IPv6 connection addresses, port-0 and C{a=inactive} streams,
static payload types without C{a=rtpmap}.  Only what cannot be understood at
all (no C{v=0}, a malformed C{o=}, C{c=}, C{t=} or C{m=} line, a line that is
not C{<type>=<value>}) raises L{SdpError}, a L{RemoteSipError} whose status
hint is 488 (RFC 3261 s21.4.26).

The model is made of frozen value objects.  The attributes of a session or
media section are kept as written, in order, and the convenient views
(L{MediaDescription.rtpmap}, L{MediaDescription.label},
L{MediaDescription.direction}, L{MediaDescription.crypto} ...) are computed
from them, so C{parse -> to_bytes -> parse} gives an equal object.  Lines
other than C{a=} that have no field of their own (C{i=}, C{u=}, C{b=},
C{k=}, C{r=}, unknown types ...) are kept in C{extra_lines}, stably sorted
into the order RFC 4566 s5 prescribes.

Builders produce what AI Connect sends:

    - L{build_srs_answer}: our answer as SRS to an SRC's offer (RFC 3264 s6,
      RFC 7866 s7.2): every offered m-line in order, rejected ones with port
      0, C{a=recvonly} on the accepted ones, C{a=label} echoed, one codec
      plus C{telephone-event} with the offer's payload types, and our own
      SDES key with the offer's tag and suite on RTP/SAVP streams;
    - L{build_src_offer}: our offer as SRC to a downstream SRS (RFC 7866
      s7.1.1): one C{a=sendonly} m-line per stream with its C{a=label}.

Keys are never generated here: the SRTP module makes them and hands them in
as L{Crypto} values (L{Crypto.from_key}).  A key never appears in a C{repr}.

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass, field, replace
from typing import Iterable, NamedTuple, Sequence

from aiconnect.errors import LocalSipError, RemoteSipError
from aiconnect.sip import abnf

__all__ = [
    "ACCEPTED_PROTOS",
    "Attribute",
    "Connection",
    "Crypto",
    "DIRECTIONS",
    "KeyParam",
    "MediaDescription",
    "OfferStream",
    "Origin",
    "RtpMap",
    "STATIC_PAYLOAD_TYPES",
    "SUPPORTED_SUITES",
    "SdpError",
    "SessionDescription",
    "Timing",
    "build_srs_answer",
    "build_src_offer",
    "next_session_version",
    "parse_sdp",
    "rejection_reason",
    "select_crypto",
]


class SdpError(RemoteSipError):
    """
    A session description we cannot understand or cannot accept (status
    hint 488 Not Acceptable Here, RFC 3261 s21.4.26).
    """

    default_status_hint = 488

    def __init__(self, reason: str, status_hint: int = 488) -> None:
        """
        @param reason: What is wrong, without quoting key material.
        @param status_hint: The SIP status to answer with (488).
        """
        super().__init__(reason, status_hint)


#: The direction attributes (RFC 4566 s6, RFC 3264 s5.1); C{sendrecv} is
#: the default when none is given at media or session level.
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")

#: Static RTP payload types (RFC 3551 s6, Table 4 and 5): pt -> (encoding,
#: clock rate, channels or C{None}).
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int, int | None]] = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1),
    7: ("LPC", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),
    10: ("L16", 44100, 2),
    11: ("L16", 44100, 1),
    12: ("QCELP", 8000, 1),
    13: ("CN", 8000, 1),
    14: ("MPA", 90000, None),
    15: ("G728", 8000, 1),
    16: ("DVI4", 11025, 1),
    17: ("DVI4", 22050, 1),
    18: ("G729", 8000, 1),
    25: ("CelB", 90000, None),
    26: ("JPEG", 90000, None),
    28: ("nv", 90000, None),
    31: ("H261", 90000, None),
    32: ("MPV", 90000, None),
    33: ("MP2T", 90000, None),
    34: ("H263", 90000, None),
}

#: The static payload type of each codec we offer (RFC 3551 Table 4).
_CODEC_PT = {"PCMU": 0, "PCMA": 8}

#: SDES crypto suites the SRTP module implements (RFC 4568 s6.2, RFC 7714
#: s14.2), in our order of preference.
SUPPORTED_SUITES = (
    "AES_CM_128_HMAC_SHA1_80",
    "AES_CM_128_HMAC_SHA1_32",
    "AEAD_AES_128_GCM",
    "AEAD_AES_256_GCM",
)

#: The transport protocols we answer (RFC 3551, RFC 3711, RFC 4585, RFC
#: 5124); RFC 7866 s8.1.2 recommends the feedback profiles and requires the
#: plain ones to work.
ACCEPTED_PROTOS = ("RTP/AVP", "RTP/SAVP", "RTP/AVPF", "RTP/SAVPF")

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
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+\Z")


def _is_ip6(address: str) -> bool:
    return ":" in address


# --------------------------------------------------------------------------
# Value objects


@dataclass(frozen=True, slots=True)
class Origin:
    """
    The C{o=} line (RFC 4566 s5.2).

    @ivar username: the originator's login, C{-} when none.
    @ivar sess_id: the numeric session id, as written (it may exceed 64
        bits).
    @ivar sess_version: the version, incremented by each modified offer
        (RFC 3264 s8).
    @ivar nettype: C{IN}.
    @ivar addrtype: C{IP4} or C{IP6}.
    @ivar address: the originating host's address or name.
    """

    username: str
    sess_id: str
    sess_version: int
    nettype: str
    addrtype: str
    address: str

    @classmethod
    def new(
        cls,
        address: str,
        username: str = "aiconnect",
        sess_id: str | None = None,
        sess_version: int = 1,
    ) -> Origin:
        """
        An origin for a new session of ours.

        @param address: the address we advertise (IPv4 or IPv6).
        @param username: C{o=} user name (no white space).
        @param sess_id: the session id; a random 62-bit number if omitted.
        @param sess_version: the first version.
        """
        if sess_id is None:
            sess_id = str(secrets.randbelow(2**62) + 1)
        return cls(username, sess_id, sess_version, "IN", "IP6" if _is_ip6(address) else "IP4", address)

    def next_version(self) -> Origin:
        """
        The same origin with C{sess_version} incremented (RFC 3264 s8).
        """
        return replace(self, sess_version=self.sess_version + 1)

    def value(self) -> str:
        """
        The line's value (without C{o=}).
        """
        return " ".join(
            (self.username, self.sess_id, str(self.sess_version), self.nettype, self.addrtype, self.address)
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """
    A C{c=} line (RFC 4566 s5.7).

    @ivar nettype: C{IN}.
    @ivar addrtype: C{IP4} or C{IP6}.
    @ivar address: the connection address as written, including a multicast
        C{/ttl} or C{/count} suffix.
    """

    nettype: str
    addrtype: str
    address: str

    @classmethod
    def for_address(cls, address: str) -> Connection:
        """
        C{IN IP4 address} or C{IN IP6 address}, by the address's form.
        """
        return cls("IN", "IP6" if _is_ip6(address) else "IP4", address)

    @property
    def host(self) -> str:
        """
        The address without any C{/ttl} or C{/count} suffix.
        """
        return self.address.split("/", 1)[0]

    def value(self) -> str:
        """
        The line's value (without C{c=}).
        """
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True, slots=True)
class Timing:
    """
    The C{t=} line (RFC 4566 s5.9); C{0 0} is an unbounded session.
    """

    start: int = 0
    stop: int = 0

    def value(self) -> str:
        """
        The line's value (without C{t=}).
        """
        return f"{self.start} {self.stop}"


@dataclass(frozen=True, slots=True)
class Attribute:
    """
    One C{a=} line (RFC 4566 s5.13): C{a=name:value}, or a flag C{a=name}
    (C{value} is C{None}).  The C{repr} of an C{a=crypto} line hides its
    value.
    """

    name: str
    value: str | None = None

    def __repr__(self) -> str:
        # SDES keys (RFC 4568) stay out of logs and tracebacks.
        if self.name.lower() == "crypto" and self.value is not None:
            return f"Attribute(name={self.name!r}, value=<hidden>)"
        return f"Attribute(name={self.name!r}, value={self.value!r})"

    __str__ = __repr__

    def text(self) -> str:
        """
        The line's value (without C{a=}).
        """
        return self.name if self.value is None else f"{self.name}:{self.value}"


class RtpMap(NamedTuple):
    """
    A payload type's encoding (C{a=rtpmap}, RFC 4566 s6).

    @ivar encoding: the encoding name as written (C{PCMU}, C{telephone-event}).
    @ivar clock_rate: the RTP clock rate in Hz.
    @ivar channels: the encoding parameters (audio channels), C{None} when
        not written.
    """

    encoding: str
    clock_rate: int
    channels: int | None = None


# RFC 4568 s9.1: key-info for the "inline" method:
#   key-salt ["|" lifetime] ["|" mki ":" mki-length]
_LIFETIME = re.compile(r"(?:2\^)?[0-9]+\Z")
_MKI = re.compile(r"([0-9]{1,128}):([0-9]{1,3})\Z")


@dataclass(frozen=True, slots=True)
class KeyParam:
    """
    One SDES key parameter (RFC 4568 s6.1, s9.1):
    C{inline:<key||salt base64>[|lifetime][|MKI:length]}.

    The key never appears in a C{repr}.

    @ivar key_salt: the concatenated master key and master salt.
    @ivar lifetime: the lifetime as written (C{2^20}, C{1048576}), or C{None}.
    @ivar mki: the master key identifier value, or C{None}.
    @ivar mki_length: its length in octets on the wire, or C{None}.
    """

    key_salt: bytes = field(repr=False)
    lifetime: str | None = None
    mki: int | None = None
    mki_length: int | None = None

    def __repr__(self) -> str:
        return f"KeyParam(key_salt=<{len(self.key_salt)} octets>, lifetime={self.lifetime!r}, mki={self.mki!r})"

    __str__ = __repr__

    @classmethod
    def parse(cls, text: str) -> KeyParam:
        """
        Parse one key parameter: the one SDES key parser (the SRTP module
        reads keys through it).

        The key method is case-insensitive (RFC 5234 s2.3).  The base64
        padding is optional: a key written without any C{=} is padded
        before decoding (some SRCs strip it); a key that carries padding
        must carry the right amount, and only the base64 alphabet is
        accepted (no white space).

        @raise SdpError: for another key method than C{inline}, bad base64,
            an empty key or a bad lifetime or MKI; the message never quotes
            the key.
        """
        method, sep, info = text.strip().partition(":")
        if not sep or method.lower() != "inline":
            raise SdpError("unsupported SDES key method")
        fields = info.split("|")
        encoded = fields[0]
        if "=" not in encoded:
            # Tolerate SRCs that strip the base64 padding.
            encoded += "=" * (-len(encoded) % 4)
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise SdpError("SDES key is not valid base64") from None
        if not key:
            raise SdpError("empty SDES key")
        lifetime: str | None = None
        mki: int | None = None
        mki_length: int | None = None
        rest = fields[1:]
        if len(rest) > 2:
            raise SdpError("malformed SDES key parameter")
        for item in rest:
            m = _MKI.match(item)
            if m is not None and mki is None:
                mki, mki_length = int(m[1]), int(m[2])
            elif _LIFETIME.match(item) and lifetime is None and mki is None:
                lifetime = item
            else:
                raise SdpError("malformed SDES key parameter")
        return cls(key, lifetime, mki, mki_length)

    def text(self) -> str:
        """
        The key parameter as written in an C{a=crypto} line.
        """
        out = "inline:" + base64.b64encode(self.key_salt).decode("ascii")
        if self.lifetime is not None:
            out += "|" + self.lifetime
        if self.mki is not None:
            out += f"|{self.mki}:{self.mki_length}"
        return out


# RFC 4568 s9.1: "a=crypto:" tag 1*WSP crypto-suite 1*WSP key-params
#   *(1*WSP session-param); key-params = key-param *(";" key-param)
_CRYPTO = re.compile(r"([0-9]{1,9})[ \t]+([A-Za-z0-9_]+)[ \t]+(\S+)((?:[ \t]+\S+)*)[ \t]*\Z")


@dataclass(frozen=True, slots=True)
class Crypto:
    """
    One C{a=crypto} attribute (RFC 4568 s9.1).

    The keys never appear in a C{repr}.

    @ivar tag: the decimal tag the answer echoes (RFC 4568 s6.1).
    @ivar suite: the crypto suite, as written (C{AES_CM_128_HMAC_SHA1_80}).
    @ivar keys: one or more key parameters.
    @ivar session_params: session parameters as written
        (C{FEC_ORDER=FEC_SRTP}, C{UNENCRYPTED_SRTCP} ...).
    """

    tag: int
    suite: str
    keys: tuple[KeyParam, ...]
    session_params: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (
            f"Crypto(tag={self.tag!r}, suite={self.suite!r}, keys=<{len(self.keys)}>, "
            f"session_params={self.session_params!r})"
        )

    __str__ = __repr__

    @classmethod
    def parse(cls, value: str) -> Crypto:
        """
        Parse an C{a=crypto} value (with or without the C{crypto:} prefix):
        C{1 AES_CM_128_HMAC_SHA1_80 inline:...|2^20|1:32 [session params]}.

        @raise SdpError: on bad syntax; the message never quotes the key.
        """
        text = value.strip()
        if text.lower().startswith("a=crypto:"):
            text = text[9:]
        elif text.lower().startswith("crypto:"):
            text = text[7:]
        m = _CRYPTO.match(text)
        if m is None:
            raise SdpError("malformed a=crypto attribute")
        keys = tuple(KeyParam.parse(k) for k in m[3].split(";"))
        return cls(int(m[1]), m[2], keys, tuple(m[4].split()))

    @classmethod
    def from_key(cls, tag: int, suite: str, key_salt: bytes, lifetime: str | None = None) -> Crypto:
        """
        An attribute carrying one key of ours (no MKI, no session
        parameters), for an offer or an answer.

        @param tag: the tag (an answer echoes the offer's).
        @param suite: the crypto suite.
        @param key_salt: master key || master salt, from the SRTP module.
        @param lifetime: an optional lifetime to advertise.
        """
        return cls(tag, suite, (KeyParam(key_salt, lifetime),))

    @property
    def key(self) -> bytes:
        """
        The first key's master key || master salt.
        """
        return self.keys[0].key_salt

    @property
    def usable(self) -> bool:
        """
        Whether the SRTP module can use this line: one of
        L{SUPPORTED_SUITES}, a single key without MKI, no session parameters
        (C{pylibsrtp} supports none of these).
        """
        return (
            self.suite in SUPPORTED_SUITES
            and len(self.keys) == 1
            and self.keys[0].mki is None
            and not self.session_params
        )

    def value(self) -> str:
        """
        The attribute value (without C{a=crypto:}).
        """
        words = [str(self.tag), self.suite, ";".join(k.text() for k in self.keys)]
        words.extend(self.session_params)
        return " ".join(words)

    def attribute(self) -> Attribute:
        """
        This value as an L{Attribute}.
        """
        return Attribute("crypto", self.value())


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
        found = None
        for a in self.attributes:
            if a.value is None and a.name.lower() in DIRECTIONS:
                found = a.name.lower()
        return found

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
            m = re.match(r"\s*([0-9]{1,3})\s+([^/\s]+)/([0-9]+)(?:/([0-9]+))?\s*\Z", value)
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
        found = None
        for a in self.attributes:
            if a.value is None and a.name.lower() in DIRECTIONS:
                found = a.name.lower()
        return found

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


# --------------------------------------------------------------------------
# Offer / answer


def _supported_codec(media: MediaDescription, codecs: Sequence[str]) -> int | None:
    """
    The first payload type of the offer (offerer's preference, RFC 3264
    s6.1) whose encoding is one of C{codecs} at 8000 Hz.
    """
    wanted = {c.lower() for c in codecs}
    rtpmap = media.rtpmap
    for pt in media.payload_types:
        entry = rtpmap.get(pt)
        if entry and entry.encoding.lower() in wanted and entry.clock_rate == 8000:
            return pt
    return None


def select_crypto(media: MediaDescription, suites: Sequence[str] = SUPPORTED_SUITES) -> Crypto | None:
    """
    The offered C{a=crypto} line we answer (RFC 4568 s7.1.1): the first, in
    the offerer's order, that is L{Crypto.usable} and whose suite is in
    C{suites}; C{None} if there is none.

    The SRS makes a key of that line's suite and answers with
    C{Crypto.from_key(offered.tag, offered.suite, key)}.
    """
    allowed = set(suites)
    for c in media.crypto:
        if c.usable and c.suite in allowed:
            return c
    return None


def rejection_reason(
    media: MediaDescription,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    suites: Sequence[str] = SUPPORTED_SUITES,
) -> str | None:
    """
    Why we would reject an offered stream, or C{None} if we can accept it.

    A stream is accepted when it is enabled (port not 0), C{audio}, over
    one of L{ACCEPTED_PROTOS}, offers one of C{codecs} at 8000 Hz, and, for
    an SRTP profile, offers a usable C{a=crypto} line (L{select_crypto}).
    Callers allocate ports only for accepted streams.
    """
    if media.port == 0:
        return "disabled in the offer"
    if media.media.lower() != "audio":
        return f"media {media.media} not supported"
    if media.proto.upper() not in ACCEPTED_PROTOS:
        return f"transport {media.proto} not supported"
    if _supported_codec(media, codecs) is None:
        return "no supported codec"
    if media.is_secure and select_crypto(media, suites) is None:
        return "no supported crypto suite"
    return None


# RFC 3264 s6.1: the answer's direction for each offered direction, for an
# answerer that only receives.
_ANSWER_DIRECTION = {
    "sendonly": "recvonly",
    "sendrecv": "recvonly",
    "recvonly": "inactive",
    "inactive": "inactive",
}


def _rejected(offered: MediaDescription) -> MediaDescription:
    # RFC 3264 s6: port 0, same media and transport, at least one format.
    attrs = (Attribute("label", offered.label),) if offered.label is not None else ()
    return MediaDescription(
        media=offered.media,
        port=0,
        proto=offered.proto,
        formats=offered.formats or ("0",),
        attributes=attrs,
    )


def build_srs_answer(
    offer: SessionDescription,
    *,
    origin: Origin,
    address: str,
    ports: Sequence[int],
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    crypto: Sequence[Crypto | None] = (),
    suites: Sequence[str] = SUPPORTED_SUITES,
    inactive: bool = False,
) -> SessionDescription:
    """
    Our answer, as SRS, to an SRC's offer (RFC 3264 s6, RFC 7866 s7.2).

    The answer has one media section per offered one, in order (RFC 3264
    s6).  A stream is rejected (port 0, label kept) when C{ports} gives it
    0 or L{rejection_reason} finds a reason.  An accepted stream gets:

        - our port and, at session level, C{c=} with C{address};
        - the codec chosen by L{rejection_reason}'s rule (the offer's first
          payload type among C{codecs}), and C{telephone-event/8000} when
          offered, both with the offer's payload types and C{a=rtpmap},
          the offer's C{a=fmtp} for telephone-event (C{0-15} if none) and
          its C{a=ptime};
        - the direction: C{recvonly} for an offered C{sendonly} or
          C{sendrecv}, C{inactive} for C{recvonly} or C{inactive} (RFC 3264
          s6.1), or C{inactive} for all when C{inactive} is true (an SRS not
          ready yet, RFC 7866 s7.2);
        - the offer's C{a=label} (RFC 7866 s7.1.1);
        - on an SRTP profile, C{crypto[i]}: our key with the tag and suite
          of one of the offered lines (L{select_crypto}).

    @param offer: the SRC's offer.
    @param origin: our C{o=} line (L{Origin.new} for the first answer; the
        previous one for a re-answer, see L{next_session_version}).
    @param address: the address of our RTP ports.
    @param ports: one port per offered media section (0 = reject).
    @param codecs: encodings we accept, any order (the offer's order wins).
    @param crypto: our key per offered media section (C{None} for RTP/AVP
        or rejected ones); may be shorter than the offer when no stream is
        secure.
    @param suites: the crypto suites we accept.
    @param inactive: answer every accepted stream C{a=inactive}.
    @return: the answer.
    @raise LocalSipError: when C{ports} does not match the offer, or an
        accepted SRTP stream has no key, or a key does not answer an
        offered tag and suite (our bug, not the peer's).
    @raise SdpError: (488) when the offer has no media section at all.
    """
    if not offer.media:
        raise SdpError("offer has no media stream")
    if len(ports) != len(offer.media):
        raise LocalSipError(f"{len(ports)} ports for {len(offer.media)} offered streams")
    if len(crypto) > len(offer.media):
        raise LocalSipError("more keys than offered streams")
    out: list[MediaDescription] = []
    for index, offered in enumerate(offer.media):
        port = ports[index]
        if port == 0 or rejection_reason(offered, codecs, suites) is not None:
            out.append(_rejected(offered))
            continue
        if not 0 < port < 65536:
            raise LocalSipError(f"bad port {port}")
        pt = _supported_codec(offered, codecs)
        assert pt is not None
        rtpmap = offered.rtpmap
        formats = [str(pt)]
        attrs = [Attribute("rtpmap", f"{pt} {rtpmap[pt].encoding}/{rtpmap[pt].clock_rate}")]
        te = offered.telephone_event
        if te is not None:
            formats.append(str(te))
            attrs.append(Attribute("rtpmap", f"{te} {rtpmap[te].encoding}/8000"))
            attrs.append(Attribute("fmtp", f"{te} {offered.fmtp.get(te) or '0-15'}"))
        if offered.ptime is not None:
            attrs.append(Attribute("ptime", str(offered.ptime)))
        direction = "inactive" if inactive else _ANSWER_DIRECTION[offered.direction]
        attrs.append(Attribute(direction))
        if offered.label is not None:
            attrs.append(Attribute("label", offered.label))
        if offered.is_secure:
            ours = crypto[index] if index < len(crypto) else None
            if ours is None:
                raise LocalSipError(f"no SRTP key for offered stream {index}")
            if not any(c.tag == ours.tag and c.suite == ours.suite for c in offered.crypto):
                raise LocalSipError(f"key for stream {index} answers no offered crypto tag and suite")
            attrs.append(ours.attribute())
        out.append(
            MediaDescription(
                media=offered.media,
                port=port,
                proto=offered.proto,
                formats=tuple(formats),
                attributes=tuple(attrs),
            )
        )
    return SessionDescription(
        origin=origin,
        connection=Connection.for_address(address),
        media=tuple(out),
    )


@dataclass(frozen=True, slots=True)
class OfferStream:
    """
    One stream of an offer we make as SRC (RFC 7866 s7.1.1).

    @ivar label: the C{a=label} value, which the metadata's stream label
        repeats (RFC 7866 s7.1.1).
    @ivar port: our RTP port; 0 removes the stream (RFC 7866 s7.1.1.1).
    @ivar crypto: our keys, one C{a=crypto} line each; the stream is
        RTP/SAVP when there is at least one, RTP/AVP otherwise.
    @ivar direction: C{sendonly}, or C{inactive} to pause (RFC 7866
        s7.1.1.1).
    """

    label: str
    port: int
    crypto: tuple[Crypto, ...] = ()
    direction: str = "sendonly"


def build_src_offer(
    streams: Iterable[OfferStream],
    *,
    origin: Origin,
    address: str,
    codec: str = "PCMA",
    telephone_event: int | None = 101,
    ptime: int | None = 20,
) -> SessionDescription:
    """
    Our offer, as SRC, to a downstream SRS (RFC 7866 s7.1.1): one
    C{m=audio} section per stream, in order, each with the codec's static
    payload type, C{telephone-event/8000} (RFC 4733, events C{0-15}) when
    C{telephone_event} is not C{None}, C{a=ptime}, the stream's direction,
    its C{a=label}, and its C{a=crypto} lines on RTP/SAVP.

    @param streams: the streams, in m-line order.
    @param origin: our C{o=} line; for a re-offer, see
        L{next_session_version}.
    @param address: the address of our RTP ports (session-level C{c=}).
    @param codec: C{PCMA} or C{PCMU}.
    @param telephone_event: the dynamic payload type for telephone-event.
    @param ptime: the packet time to advertise, or C{None}.
    @raise LocalSipError: for an unknown codec, a bad port, direction or
        label, or a repeated label.
    """
    pt = _CODEC_PT.get(codec.upper())
    if pt is None:
        raise LocalSipError(f"unsupported codec {codec!r}")
    out: list[MediaDescription] = []
    seen: set[str] = set()
    for stream in streams:
        if not 0 <= stream.port < 65536:
            raise LocalSipError(f"bad port {stream.port}")
        if stream.direction not in DIRECTIONS:
            raise LocalSipError(f"unknown SDP direction {stream.direction!r}")
        if not stream.label or not _TOKEN.match(stream.label):
            raise LocalSipError(f"bad stream label {stream.label!r}")
        if stream.label in seen:
            raise LocalSipError(f"repeated stream label {stream.label!r}")
        seen.add(stream.label)
        formats = [str(pt)]
        attrs = [Attribute("rtpmap", f"{pt} {codec.upper()}/8000")]
        if telephone_event is not None:
            formats.append(str(telephone_event))
            attrs.append(Attribute("rtpmap", f"{telephone_event} telephone-event/8000"))
            attrs.append(Attribute("fmtp", f"{telephone_event} 0-15"))
        if ptime is not None:
            attrs.append(Attribute("ptime", str(ptime)))
        attrs.append(Attribute(stream.direction))
        attrs.append(Attribute("label", stream.label))
        attrs.extend(c.attribute() for c in stream.crypto)
        out.append(
            MediaDescription(
                media="audio",
                port=stream.port,
                proto="RTP/SAVP" if stream.crypto else "RTP/AVP",
                formats=tuple(formats),
                attributes=tuple(attrs),
            )
        )
    return SessionDescription(
        origin=origin,
        connection=Connection.for_address(address),
        media=tuple(out),
    )


def next_session_version(previous: SessionDescription, new: SessionDescription) -> SessionDescription:
    """
    C{new}, carrying C{previous}'s origin: unchanged when C{new} describes
    the same session, with the version incremented when anything differs
    (RFC 3264 s8: "the version in the origin field MUST increment by one
    from the previous SDP" for a modified description, and stay the same
    for an identical one).

    @param previous: the last description we sent in this session.
    @param new: the next one, whatever its origin.
    """
    same = replace(new, origin=previous.origin)
    if same.to_bytes() == previous.to_bytes():
        return same
    return replace(new, origin=previous.origin.next_version())
