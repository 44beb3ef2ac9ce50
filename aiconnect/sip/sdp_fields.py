# -*- test-case-name: tests.sip.test_sdp -*-
"""
The line-level values of a session description (RFC 4566 s5): the C{o=},
C{c=}, C{t=} and C{a=} lines, C{a=rtpmap} entries, the static payload types
(RFC 3551) and the direction attributes, and L{SdpError}, the error every
SDP module raises.

The media and session sections that hold these values, and the parser, live
in L{aiconnect.sip.sdp_model}; L{aiconnect.sip.sdp} is the public face.

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from typing import NamedTuple

from aiconnect.errors import RemoteSipError

__all__ = [
    "Attribute",
    "Connection",
    "DIRECTIONS",
    "Origin",
    "RtpMap",
    "STATIC_PAYLOAD_TYPES",
    "SdpError",
    "Timing",
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
