# -*- test-case-name: tests.media.test_rtp -*-
"""
RTP and RTCP packets (RFC 3550), parsed from and serialized to bytes.

Pure: no Twisted, no sockets, no clock reads.  Every parser raises
L{ValueError} on a truncated packet, a version other than 2 or inconsistent
lengths; the relay turns that into a counted drop.

Also here: the modular arithmetic RTP needs for 16-bit sequence numbers and
32-bit timestamps (RFC 3550 s5.1, serial number arithmetic as in RFC 1982),
and the NTP timestamp format of RTCP sender reports (RFC 3550 s4).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = [
    "RTP_HEADER",
    "RTP_VERSION",
    "RtcpOther",
    "RtcpPacket",
    "RtcpReceiverReport",
    "RtcpSenderReport",
    "ReportBlock",
    "RtpExtension",
    "RtpPacket",
    "build_sdes_cname",
    "is_rtcp",
    "ntp_middle32",
    "ntp_timestamp",
    "parse_rtcp",
    "rtp_payload_bounds",
    "serialize_rtcp",
    "u16_add",
    "u16_diff",
    "u16_gt",
    "u32_add",
    "u32_diff",
    "u32_gt",
]

RTP_VERSION = 2

#: V/P/X/CC, M/PT, sequence number, timestamp, SSRC (RFC 3550 s5.1).
RTP_HEADER = struct.Struct("!BBHII")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_EXT_HEADER = struct.Struct("!HH")
#: V/P/RC, PT, length (RFC 3550 s6.4.1).
RTCP_HEADER = struct.Struct("!BBH")
_SR_SENDER_INFO = struct.Struct("!IIIII")
_REPORT_BLOCK = struct.Struct("!IIIIII")

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204

#: Seconds between 1900-01-01 (NTP era 0) and 1970-01-01 (Unix epoch).
NTP_UNIX_OFFSET = 2208988800


# -- wraparound helpers (RFC 3550 s5.1, RFC 1982) ---------------------------


def u16_add(a: int, b: int) -> int:
    """
    Add modulo 2**16 (sequence numbers).

    @param a: a 16-bit value.
    @param b: any integer, may be negative.
    @return: C{(a + b) mod 2**16}.
    """
    return (a + b) & 0xFFFF


def u16_diff(a: int, b: int) -> int:
    """
    Signed distance from C{b} to C{a} modulo 2**16, in [-32768, 32767].

    @return: the C{d} with the smallest magnitude such that
        C{u16_add(b, d) == a}.
    """
    d = (a - b) & 0xFFFF
    return d - 0x10000 if d >= 0x8000 else d


def u16_gt(a: int, b: int) -> bool:
    """
    Whether sequence number C{a} is newer than C{b} (RFC 1982 s3.2).

    @return: C{True} when C{a} follows C{b} by less than half the space.
    """
    return 0 < ((a - b) & 0xFFFF) < 0x8000


def u32_add(a: int, b: int) -> int:
    """
    Add modulo 2**32 (timestamps).

    @return: C{(a + b) mod 2**32}.
    """
    return (a + b) & 0xFFFFFFFF


def u32_diff(a: int, b: int) -> int:
    """
    Signed distance from C{b} to C{a} modulo 2**32.

    @return: a value in [-2**31, 2**31 - 1].
    """
    d = (a - b) & 0xFFFFFFFF
    return d - 0x100000000 if d >= 0x80000000 else d


def u32_gt(a: int, b: int) -> bool:
    """
    Whether timestamp C{a} is later than C{b} (RFC 1982 s3.2).

    @return: C{True} when C{a} follows C{b} by less than half the space.
    """
    return 0 < ((a - b) & 0xFFFFFFFF) < 0x80000000


def ntp_timestamp(unix_seconds: float) -> tuple[int, int]:
    """
    Convert a Unix time to the 64-bit NTP format (RFC 3550 s4).

    @return: C{(msw, lsw)}: integer seconds since 1900 modulo 2**32 and the
        fraction in units of 2**-32 s.
    """
    seconds = int(unix_seconds)
    fraction = int((unix_seconds - seconds) * 4294967296.0) & 0xFFFFFFFF
    return (seconds + NTP_UNIX_OFFSET) & 0xFFFFFFFF, fraction


def ntp_middle32(msw: int, lsw: int) -> int:
    """
    The middle 32 bits of an NTP timestamp, as carried in the LSR field of a
    report block (RFC 3550 s6.4.1).
    """
    return ((msw & 0xFFFF) << 16) | (lsw >> 16)


# -- RTP --------------------------------------------------------------------


def rtp_payload_bounds(data: bytes) -> tuple[int, int]:
    """
    Validate an RTP packet's framing and locate its payload.

    This is the hot-path variant of L{RtpPacket.parse}: it allocates nothing.

    @param data: a datagram.
    @return: C{(start, end)} of the payload within C{data}, with the CSRC
        list, header extension and padding excluded.
    @raise ValueError: on a truncated packet, a version other than 2 or
        padding longer than the packet.
    """
    n = len(data)
    if n < 12:
        raise ValueError("RTP packet shorter than the fixed header")
    b0 = data[0]
    if b0 >> 6 != RTP_VERSION:
        raise ValueError("RTP version is not 2")
    start = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if n < start + 4:
            raise ValueError("RTP header extension truncated")
        start += 4 + 4 * _U16.unpack_from(data, start + 2)[0]
    end = n
    if b0 & 0x20:
        if n <= start:
            raise ValueError("RTP padding without payload")
        end -= data[n - 1]
        if data[n - 1] == 0:
            raise ValueError("RTP padding count is zero")
    if end < start:
        raise ValueError("RTP packet truncated")
    return start, end


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """
    An RTP header extension (RFC 3550 s5.3.1), kept opaque.

    @ivar profile: the 16-bit "defined by profile" field.
    @ivar data: the extension body, a multiple of 4 octets.
    """

    profile: int
    data: bytes


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """
    One RTP data packet (RFC 3550 s5.1).

    @ivar padding: the number of padding octets to append when serializing
        (including the final count octet), 0 for none.  Parsing records the
        padding found.
    """

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """
        Parse a datagram as RTP.

        @raise ValueError: see L{rtp_payload_bounds}.
        """
        start, end = rtp_payload_bounds(data)
        b0, b1, seq, ts, ssrc = RTP_HEADER.unpack_from(data)
        cc = b0 & 0x0F
        csrcs = struct.unpack_from("!%dI" % cc, data, 12) if cc else ()
        extension = None
        if b0 & 0x10:
            offset = 12 + 4 * cc
            profile, words = _EXT_HEADER.unpack_from(data, offset)
            extension = RtpExtension(
                profile, bytes(data[offset + 4 : offset + 4 + 4 * words])
            )
        return cls(
            payload_type=b1 & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=bytes(data[start:end]),
            marker=bool(b1 & 0x80),
            csrcs=tuple(csrcs),
            extension=extension,
            padding=len(data) - end,
        )

    def serialize(self) -> bytes:
        """
        Serialize to wire format.

        @raise ValueError: on out-of-range fields, more than 15 CSRCs, an
            extension not a multiple of 4 octets or padding over 255.
        """
        if not 0 <= self.payload_type <= 127:
            raise ValueError("payload type out of range")
        if len(self.csrcs) > 15:
            raise ValueError("more than 15 CSRCs")
        if not 0 <= self.padding <= 255:
            raise ValueError("padding out of range")
        b0 = (RTP_VERSION << 6) | len(self.csrcs)
        if self.padding:
            b0 |= 0x20
        if self.extension is not None:
            b0 |= 0x10
        parts = [
            RTP_HEADER.pack(
                b0,
                (0x80 if self.marker else 0) | self.payload_type,
                self.sequence_number & 0xFFFF,
                self.timestamp & 0xFFFFFFFF,
                self.ssrc & 0xFFFFFFFF,
            )
        ]
        if self.csrcs:
            parts.append(struct.pack("!%dI" % len(self.csrcs), *self.csrcs))
        if self.extension is not None:
            if len(self.extension.data) % 4:
                raise ValueError("extension length not a multiple of 4")
            parts.append(
                _EXT_HEADER.pack(self.extension.profile, len(self.extension.data) // 4)
            )
            parts.append(self.extension.data)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)


# -- RTCP -------------------------------------------------------------------


def is_rtcp(data: bytes) -> bool:
    """
    Whether a datagram on an RTP port is RTCP multiplexed onto it (RFC 5761
    s4: the second octet is an RTCP packet type 200..204 or so).

    @param data: at least two octets.
    """
    return 192 <= data[1] <= 223


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """
    One reception report block (RFC 3550 s6.4.1).

    @ivar fraction_lost: lost fraction since the last report, in 1/256.
    @ivar cumulative_lost: total lost packets (signed 24 bits).
    @ivar jitter: interarrival jitter in timestamp units.
    @ivar lsr: middle 32 bits of the last SR's NTP timestamp, 0 if none.
    @ivar dlsr: delay since that SR, in units of 1/65536 s.
    """

    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_sequence: int
    jitter: int
    lsr: int
    dlsr: int

    @classmethod
    def parse_from(cls, data: bytes, offset: int) -> ReportBlock:
        """
        Parse one 24-octet block at C{offset}.
        """
        ssrc, lost, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, offset)
        cumulative = lost & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        return cls(ssrc, lost >> 24, cumulative, highest, jitter, lsr, dlsr)

    def serialize(self) -> bytes:
        """
        Serialize to 24 octets.
        """
        return _REPORT_BLOCK.pack(
            self.ssrc,
            ((self.fraction_lost & 0xFF) << 24) | (self.cumulative_lost & 0xFFFFFF),
            self.highest_sequence,
            self.jitter,
            self.lsr,
            self.dlsr,
        )


@dataclass(frozen=True, slots=True)
class RtcpSenderReport:
    """
    SR: sender report (RFC 3550 s6.4.1).
    """

    ssrc: int
    ntp_msw: int
    ntp_lsw: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    packet_type = RTCP_SR

    def serialize(self) -> bytes:
        """
        Serialize as one RTCP packet (no padding).
        """
        body = _U32.pack(self.ssrc) + _SR_SENDER_INFO.pack(
            self.ntp_msw,
            self.ntp_lsw,
            self.rtp_timestamp & 0xFFFFFFFF,
            self.packet_count & 0xFFFFFFFF,
            self.octet_count & 0xFFFFFFFF,
        )
        return _rtcp_packet(RTCP_SR, self.reports, body)


@dataclass(frozen=True, slots=True)
class RtcpReceiverReport:
    """
    RR: receiver report (RFC 3550 s6.4.2).
    """

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    packet_type = RTCP_RR

    def serialize(self) -> bytes:
        """
        Serialize as one RTCP packet (no padding).
        """
        return _rtcp_packet(RTCP_RR, self.reports, _U32.pack(self.ssrc))


@dataclass(frozen=True, slots=True)
class RtcpOther:
    """
    Any other RTCP packet (SDES, BYE, APP, feedback, ...), kept opaque so it
    can be passed through unchanged.

    @ivar count: the 5-bit count / subtype field.
    @ivar body: everything after the 4-octet header, padding excluded.
    """

    packet_type: int
    count: int
    body: bytes = field(default=b"")

    def serialize(self) -> bytes:
        """
        Serialize as one RTCP packet (no padding).

        @raise ValueError: when the body is not a multiple of 4 octets.
        """
        if len(self.body) % 4:
            raise ValueError("RTCP body length not a multiple of 4")
        return (
            RTCP_HEADER.pack(
                (RTP_VERSION << 6) | (self.count & 0x1F),
                self.packet_type,
                len(self.body) // 4,
            )
            + self.body
        )


RtcpPacket = RtcpSenderReport | RtcpReceiverReport | RtcpOther


def _rtcp_packet(packet_type: int, reports: tuple[ReportBlock, ...], head: bytes) -> bytes:
    if len(reports) > 31:
        raise ValueError("more than 31 report blocks")
    body = head + b"".join(r.serialize() for r in reports)
    return (
        RTCP_HEADER.pack((RTP_VERSION << 6) | len(reports), packet_type, len(body) // 4)
        + body
    )


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """
    Parse a compound RTCP packet (RFC 3550 s6.1).

    SR and RR are decoded; every other type comes back as L{RtcpOther}.

    @raise ValueError: on a truncated packet, a version other than 2, a
        length field that overruns the datagram, padding anywhere but in the
        last packet, or an empty datagram.
    """
    n = len(data)
    if n < 4:
        raise ValueError("RTCP packet shorter than its header")
    out: list[RtcpPacket] = []
    offset = 0
    while offset < n:
        if n - offset < 4:
            raise ValueError("RTCP packet truncated")
        b0, pt, words = RTCP_HEADER.unpack_from(data, offset)
        if b0 >> 6 != RTP_VERSION:
            raise ValueError("RTCP version is not 2")
        end = offset + 4 + 4 * words
        if end > n:
            raise ValueError("RTCP length overruns the datagram")
        body_end = end
        if b0 & 0x20:
            if end != n:
                raise ValueError("RTCP padding before the last packet")
            pad = data[end - 1]
            if pad == 0 or pad > 4 * words:
                raise ValueError("RTCP padding count out of range")
            body_end = end - pad
        count = b0 & 0x1F
        start = offset + 4
        if pt == RTCP_SR or pt == RTCP_RR:
            head = 24 if pt == RTCP_SR else 4
            if body_end - start < head + 24 * count:
                raise ValueError("RTCP report truncated")
            ssrc = _U32.unpack_from(data, start)[0]
            reports = tuple(
                ReportBlock.parse_from(data, start + head + 24 * k) for k in range(count)
            )
            if pt == RTCP_SR:
                msw, lsw, ts, pc, oc = _SR_SENDER_INFO.unpack_from(data, start + 4)
                out.append(RtcpSenderReport(ssrc, msw, lsw, ts, pc, oc, reports))
            else:
                out.append(RtcpReceiverReport(ssrc, reports))
        else:
            out.append(RtcpOther(pt, count, bytes(data[start:body_end])))
        offset = end
    return out


def serialize_rtcp(packets: list[RtcpPacket] | tuple[RtcpPacket, ...]) -> bytes:
    """
    Serialize a compound RTCP packet.
    """
    return b"".join(p.serialize() for p in packets)


def build_sdes_cname(ssrc: int, cname: bytes) -> RtcpOther:
    """
    An SDES packet with one chunk carrying a CNAME item (RFC 3550 s6.5.1),
    as every compound RTCP packet needs.

    @param cname: at most 255 octets.
    @raise ValueError: when C{cname} is too long.
    """
    if len(cname) > 255:
        raise ValueError("CNAME longer than 255 octets")
    chunk = _U32.pack(ssrc) + bytes((1, len(cname))) + cname
    # Items end with at least one null octet, then pad to a 32-bit boundary.
    chunk += bytes(4 - len(chunk) % 4)
    return RtcpOther(RTCP_SDES, 1, chunk)
