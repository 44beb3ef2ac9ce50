"""
Tests for L{aiconnect.media.rtp}.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.media.rtp import (
    RTCP_BYE,
    RTCP_SDES,
    ReportBlock,
    RtcpOther,
    RtcpReceiverReport,
    RtcpSenderReport,
    RtpExtension,
    RtpPacket,
    build_sdes_cname,
    is_rtcp,
    ntp_middle32,
    ntp_timestamp,
    parse_rtcp,
    rtp_payload_bounds,
    serialize_rtcp,
    u16_add,
    u16_diff,
    u16_gt,
    u32_add,
    u32_diff,
    u32_gt,
)

CORPUS = os.path.join(os.path.dirname(__file__), os.pardir, "data", "rtp")


def _corpus() -> list[tuple[str, str, bytes]]:
    out = []
    with open(os.path.join(CORPUS, "index.tsv")) as index:
        for line in index:
            if line.startswith("#") or not line.strip():
                continue
            name, expect, _ = line.rstrip("\n").split("\t")
            with open(os.path.join(CORPUS, name), "rb") as f:
                out.append((name, expect, f.read()))
    return out


class WraparoundTests(SynchronousTestCase):
    """
    Modular arithmetic on sequence numbers and timestamps.
    """

    def test_u16(self) -> None:
        """
        16-bit add, signed difference and newer-than wrap at 2**16.
        """
        cases = [
            # a, b, a+b, diff(a, b), gt(a, b)
            (0, 1, 1, -1, False),
            (65535, 1, 0, -2, False),
            (0, 65535, 65535, 1, True),
            (100, 100, 200, 0, False),
            (32767, 0, 32767, 32767, True),
            (32768, 0, 32768, -32768, False),
            (5, 65530, 65535, 11, True),
        ]
        for a, b, total, diff, gt in cases:
            self.assertEqual(u16_add(a, b), total, (a, b))
            self.assertEqual(u16_diff(a, b), diff, (a, b))
            self.assertEqual(u16_gt(a, b), gt, (a, b))
        self.assertEqual(u16_add(0, -1), 65535)

    def test_u32(self) -> None:
        """
        32-bit add, signed difference and later-than wrap at 2**32.
        """
        top = 0xFFFFFFFF
        cases = [
            (0, 160, 160, -160, False),
            (top, 160, 159, -161, False),
            (159, top, 158, 160, True),
            (2**31, 0, 2**31, -(2**31), False),
            (2**31 - 1, 0, 2**31 - 1, 2**31 - 1, True),
        ]
        for a, b, total, diff, gt in cases:
            self.assertEqual(u32_add(a, b), total, (a, b))
            self.assertEqual(u32_diff(a, b), diff, (a, b))
            self.assertEqual(u32_gt(a, b), gt, (a, b))

    def test_diff_inverts_add(self) -> None:
        """
        u16_add(b, u16_diff(a, b)) == a across the wrap.
        """
        for a in (0, 1, 32767, 32768, 65535):
            for b in (0, 1, 32767, 32768, 65535):
                self.assertEqual(u16_add(b, u16_diff(a, b)), a)
                self.assertEqual(u32_add(b, u32_diff(a, b)), a)

    def test_ntp(self) -> None:
        """
        Unix time converts to NTP seconds since 1900 and a 2**-32 fraction;
        the LSR field is the middle 32 bits (RFC 3550 s4, s6.4.1).
        """
        self.assertEqual(ntp_timestamp(0.0), (2208988800, 0))
        msw, lsw = ntp_timestamp(1.5)
        self.assertEqual((msw, lsw), (2208988801, 0x80000000))
        self.assertEqual(ntp_middle32(0x12345678, 0x9ABCDEF0), 0x56789ABC)


class RtpPacketTests(SynchronousTestCase):
    """
    RTP parsing and serialization (RFC 3550 s5.1).
    """

    def test_corpus(self) -> None:
        """
        Every valid RTP file parses and serializes back to the same octets;
        every invalid one raises ValueError from both parsers.
        """
        seen = 0
        for name, expect, data in _corpus():
            if expect == "rtp":
                packet = RtpPacket.parse(data)
                self.assertEqual(packet.serialize(), data, name)
                start, end = rtp_payload_bounds(data)
                self.assertEqual(data[start:end], packet.payload, name)
                seen += 1
            elif expect == "bad-rtp":
                self.assertRaises(ValueError, RtpPacket.parse, data)
                self.assertRaises(ValueError, rtp_payload_bounds, data)
                seen += 1
        self.assertGreaterEqual(seen, 20)

    def test_fields(self) -> None:
        """
        CSRCs, the extension, padding and the marker are decoded.
        """
        with open(os.path.join(CORPUS, "rtp-all.bin"), "rb") as f:
            packet = RtpPacket.parse(f.read())
        self.assertEqual(
            packet,
            RtpPacket(
                payload_type=101,
                sequence_number=5,
                timestamp=800,
                ssrc=0xDECAFBAD,
                payload=b"\x01\x02",
                marker=True,
                csrcs=(33,),
                extension=RtpExtension(0x1000, b"abcd"),
                padding=2,
            ),
        )

    def test_minimal(self) -> None:
        """
        A plain packet keeps its payload; no padding, no extension.
        """
        with open(os.path.join(CORPUS, "rtp-minimal.bin"), "rb") as f:
            packet = RtpPacket.parse(f.read())
        self.assertEqual(
            (packet.payload_type, packet.sequence_number, packet.timestamp, packet.ssrc),
            (0, 1, 160, 0xDECAFBAD),
        )
        self.assertEqual(packet.payload, bytes(range(160)))
        self.assertIsNone(packet.extension)
        self.assertEqual(packet.padding, 0)

    def test_serialize_rejects(self) -> None:
        """
        Out-of-range fields are refused when serializing.
        """
        for bad in (
            RtpPacket(128, 0, 0, 0),
            RtpPacket(0, 0, 0, 0, csrcs=tuple(range(16))),
            RtpPacket(0, 0, 0, 0, padding=256),
            RtpPacket(0, 0, 0, 0, extension=RtpExtension(1, b"abc")),
        ):
            self.assertRaises(ValueError, bad.serialize)

    def test_wraps_fields(self) -> None:
        """
        Sequence numbers and timestamps are written modulo their width.
        """
        data = RtpPacket(0, 65536 + 7, 2**32 + 9, 1).serialize()
        packet = RtpPacket.parse(data)
        self.assertEqual((packet.sequence_number, packet.timestamp), (7, 9))

    def test_is_rtcp(self) -> None:
        """
        RTCP multiplexed on an RTP port is told apart by its packet type
        (RFC 5761 s4).
        """
        self.assertTrue(is_rtcp(b"\x80\xc8"))
        self.assertTrue(is_rtcp(b"\x81\xc9"))
        self.assertFalse(is_rtcp(b"\x80\x00"))
        self.assertFalse(is_rtcp(b"\x80\x88"))


class RtcpTests(SynchronousTestCase):
    """
    RTCP compound packets (RFC 3550 s6).
    """

    def test_corpus(self) -> None:
        """
        Every valid RTCP file parses and serializes back; every invalid one
        raises ValueError.
        """
        seen = 0
        for name, expect, data in _corpus():
            if expect == "rtcp":
                self.assertEqual(serialize_rtcp(parse_rtcp(data)), data, name)
                seen += 1
            elif expect == "bad-rtcp":
                self.assertRaises(ValueError, parse_rtcp, data)
                seen += 1
        self.assertGreaterEqual(seen, 12)

    def test_sender_report(self) -> None:
        """
        SR sender info and report blocks are decoded; SDES passes through.
        """
        with open(os.path.join(CORPUS, "rtcp-sr.bin"), "rb") as f:
            sr, sdes = parse_rtcp(f.read())
        assert isinstance(sr, RtcpSenderReport)
        self.assertEqual(
            (sr.ssrc, sr.ntp_msw, sr.ntp_lsw, sr.rtp_timestamp, sr.packet_count, sr.octet_count),
            (0xDECAFBAD, 0xE7A1B2C3, 0x80000000, 123456, 50, 8000),
        )
        self.assertEqual(
            sr.reports,
            (ReportBlock(0xCAFEBABE, 25, 3, 0x0001FFFF, 40, 0x12345678, 65536),),
        )
        assert isinstance(sdes, RtcpOther)
        self.assertEqual((sdes.packet_type, sdes.count), (RTCP_SDES, 1))

    def test_receiver_report(self) -> None:
        """
        RR blocks decode cumulative loss as a signed 24-bit number.
        """
        with open(os.path.join(CORPUS, "rtcp-rr.bin"), "rb") as f:
            (rr,) = parse_rtcp(f.read())
        assert isinstance(rr, RtcpReceiverReport)
        self.assertEqual(rr.ssrc, 0x11111111)
        self.assertEqual([b.cumulative_lost for b in rr.reports], [3, -1])
        self.assertEqual(rr.reports[0].fraction_lost, 25)

    def test_pass_through(self) -> None:
        """
        SDES, BYE and APP come back as opaque packets with their bodies.
        """
        with open(os.path.join(CORPUS, "rtcp-sr-sdes-bye.bin"), "rb") as f:
            packets = parse_rtcp(f.read())
        self.assertEqual([p.packet_type for p in packets], [200, RTCP_SDES, RTCP_BYE])
        bye = packets[2]
        assert isinstance(bye, RtcpOther)
        self.assertEqual(bye.body, bytes.fromhex("decafbad"))

    def test_round_trip_built(self) -> None:
        """
        Built SR + SDES CNAME compounds parse back to equal values.
        """
        sr = RtcpSenderReport(
            1, 2, 3, 4, 5, 6, (ReportBlock(9, 255, -5, 70000, 12, 13, 14),)
        )
        cname = build_sdes_cname(1, b"abc")
        data = serialize_rtcp([sr, cname])
        self.assertEqual(len(data) % 4, 0)
        self.assertEqual(parse_rtcp(data), [sr, cname])
        self.assertEqual(RtcpReceiverReport(7).serialize(), bytes.fromhex("80c9000100000007"))

    def test_sdes_cname_padding(self) -> None:
        """
        A CNAME chunk ends with a null octet and pads to 32 bits, for every
        length (RFC 3550 s6.5).
        """
        for n in range(0, 9):
            packet = build_sdes_cname(5, b"x" * n)
            self.assertEqual(len(packet.body) % 4, 0)
            self.assertEqual(packet.body[6 + n], 0)
        self.assertRaises(ValueError, build_sdes_cname, 5, b"x" * 256)
        self.assertRaises(ValueError, RtcpOther(204, 0, b"abc").serialize)
