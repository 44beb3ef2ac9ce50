"""
Tests for L{aiconnect.sip.sdp_model}, L{aiconnect.sip.sdp_fields} and the
public face L{aiconnect.sip.sdp}: parsing and writing session descriptions.
"""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.errors import RemoteSipError
from aiconnect.sip.sdp import (
    Attribute,
    Connection,
    MediaDescription,
    Origin,
    RtpMap,
    SdpError,
    Timing,
    build_srs_answer,
    parse_sdp,
)

DATA = Path(__file__).parent.parent / "data"
SIPREC = DATA / "siprec"
SDP = DATA / "sdp"


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _origin() -> Origin:
    return Origin.new("192.0.2.99", sess_id="4242")


class ParseTests(SynchronousTestCase):
    """
    Parsing session descriptions (RFC 4566).
    """

    def test_rfc7866_offer(self) -> None:
        """
        The RFC 7866 Figure 5 offer parses into four sendonly streams with
        labels 1 to 4 and the session-level connection address.
        """
        sdp = parse_sdp(_read(SIPREC / "rfc7866-fig5-src-offer.sdp"))
        self.assertEqual(sdp.origin, Origin("SRC", "2890844526", 2890844526, "IN", "IP4", "198.51.100.1"))
        self.assertEqual(sdp.session_name, "-")
        self.assertEqual(sdp.timing, Timing(0, 0))
        self.assertEqual(sdp.labels, ["1", "2", "3", "4"])
        self.assertEqual([m.media for m in sdp.media], ["audio", "video", "audio", "video"])
        self.assertEqual({m.direction for m in sdp.media}, {"sendonly"})
        self.assertEqual({m.address for m in sdp.media}, {"198.51.100.1"})
        audio = sdp.media[0]
        self.assertEqual((audio.port, audio.proto, audio.formats), (12240, "RTP/AVP", ("0", "4", "8")))
        video = sdp.media[1]
        self.assertEqual(video.rtpmap, {98: RtpMap("H264", 90000, None)})
        self.assertEqual(
            video.fmtp[98], "profile-level-id=42A01E;sprop-parameter-sets=Z0IACpZTBYmI,aMljiA=="
        )

    def test_rfc7866_answer(self) -> None:
        """
        The RFC 7866 Figure 6 answer parses into four recvonly streams with
        the same labels.
        """
        sdp = parse_sdp(_read(SIPREC / "rfc7866-fig6-srs-answer.sdp"))
        self.assertEqual(sdp.labels, ["1", "2", "3", "4"])
        self.assertEqual([m.direction for m in sdp.media], ["recvonly"] * 4)
        self.assertEqual([m.port for m in sdp.media], [10000, 10002, 10004, 10006])

    def test_rfc7866_invite_template(self) -> None:
        """
        The SDP part of the RFC 7866 Figure 12 INVITE (one audio stream,
        label 1) parses and is answered recvonly.
        """
        text = _read(SIPREC / "rfc7866-fig12-invite.sip.tmpl")
        body = text.split(b"Content-Type: application/sdp\r\n\r\n", 1)[1].split(b"--foobar", 1)[0]
        offer = parse_sdp(body)
        self.assertEqual(offer.labels, ["1"])
        answer = build_srs_answer(offer, origin=_origin(), address="192.0.2.99", ports=[20000])
        self.assertEqual([(m.label, m.direction) for m in answer.media], [("1", "recvonly")])

    def test_hostile_numbers(self) -> None:
        """
        Numbers a peer writes in other scripts' digits (which C{str.isdigit}
        accepts and C{int()} may refuse) or with thousands of digits (past
        C{int()}'s 4,300-digit limit) are malformed SDP, never a
        C{ValueError}; non-numeric formats and C{a=rtcp} are ignored.
        """
        base = (
            b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n"
            b"t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
        )
        huge = b"9" * 5000
        for old, new in (
            (b"o=- 1 1", b"o=- 1 \xc2\xb2"),
            (b"o=- 1 1", b"o=- 1 " + huge),
            (b"t=0 0", b"t=0 " + huge),
            (b"m=audio 4000", b"m=audio \xc2\xb2"),
            (b"m=audio 4000", b"m=audio 4000/" + huge),
        ):
            self.assertRaises(SdpError, parse_sdp, base.replace(old, new, 1))
        odd = parse_sdp(
            base.replace(b"RTP/AVP 0", b"RTP/AVP 0 \xc2\xb2 " + huge)
            + b"a=rtcp:\xc2\xb2\r\na=fmtp:" + huge + b" x\r\n"
        )
        media = odd.media[0]
        self.assertEqual(media.payload_types, [0])
        self.assertIsNone(media.rtcp)

    def test_rfc_files_serialize_verbatim(self) -> None:
        """
        The RFC 7866 offer and answer, which are in canonical form with
        CRLF, serialize back to the same octets.
        """
        for name in ("rfc7866-fig5-src-offer.sdp", "rfc7866-fig6-srs-answer.sdp"):
            data = _read(SIPREC / name)
            self.assertEqual(parse_sdp(data).to_bytes(), data, name)

    def test_static_payload_types(self) -> None:
        """
        Static payload types without a=rtpmap get their RFC 3551 encoding.
        """
        sdp = parse_sdp(_read(SDP / "src-three-streams.sdp"))
        rtpmap = sdp.media[0].rtpmap
        self.assertEqual(rtpmap[18], RtpMap("G729", 8000, 1))
        self.assertEqual(rtpmap[0], RtpMap("PCMU", 8000, 1))
        self.assertEqual(rtpmap[8], RtpMap("PCMA", 8000, 1))
        self.assertEqual(rtpmap[9], RtpMap("G722", 8000, 1))
        self.assertEqual(rtpmap[101], RtpMap("telephone-event", 8000, None))
        self.assertEqual(sdp.media[0].payload_types, [18, 0, 8, 9, 101])

    def test_telephone_event(self) -> None:
        """
        telephone-event/8000 is found with its fmtp 0-15.
        """
        m = parse_sdp(_read(SDP / "src-lf-only.sdp")).media[0]
        self.assertEqual(m.telephone_event, 101)
        self.assertEqual(m.fmtp, {101: "0-15"})
        self.assertEqual(m.ptime, 20)

    def test_lf_only_and_trailing_whitespace(self) -> None:
        """
        Bare LF line ends and trailing white space are tolerated, and the
        values come out stripped.
        """
        sdp = parse_sdp(_read(SDP / "src-lf-only.sdp"))
        self.assertEqual(sdp.labels, ["1", "2"])
        self.assertEqual(sdp.session_name, "SIPREC")
        self.assertEqual(sdp.origin.address, "10.0.0.5")
        self.assertTrue(sdp.to_bytes().endswith(b"a=label:2\r\n"))
        self.assertNotIn(b"\n", sdp.to_bytes().replace(b"\r\n", b""))

    def test_inactive_first_invite(self) -> None:
        """
        A session-level a=inactive applies to a stream without its own
        direction, and a media-level one to its stream.
        """
        sdp = parse_sdp(_read(SDP / "src-inactive-first-invite.sdp"))
        self.assertEqual(sdp.direction, "inactive")
        self.assertEqual([m.direction for m in sdp.media], ["inactive", "inactive"])
        self.assertIsNone(sdp.media[0].own_direction)
        self.assertEqual(sdp.media[1].own_direction, "inactive")

    def test_media_direction_overrides_session(self) -> None:
        """
        A media-level direction wins over the session-level one, and
        sendrecv is the default.
        """
        text = (
            b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\na=sendonly\r\n"
            b"m=audio 4000 RTP/AVP 0\r\na=recvonly\r\nm=audio 4002 RTP/AVP 0\r\n"
        )
        sdp = parse_sdp(text)
        self.assertEqual([m.direction for m in sdp.media], ["recvonly", "sendonly"])
        plain = parse_sdp(b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")
        self.assertEqual(plain.media[0].direction, "sendrecv")

    def test_one_stream(self) -> None:
        """
        A single mixed stream with a label other than 1 or 2 parses.
        """
        sdp = parse_sdp(_read(SDP / "src-one-stream.sdp"))
        self.assertEqual(sdp.labels, ["mixed-0"])
        self.assertEqual(sdp.media[0].fmtp, {101: "0-16"})

    def test_three_streams(self) -> None:
        """
        Three streams with free-form labels parse in order.
        """
        sdp = parse_sdp(_read(SDP / "src-three-streams.sdp"))
        self.assertEqual(sdp.labels, ["inbound-leg", "outbound-leg", "conference"])
        self.assertEqual(sdp.media_by_label("conference"), sdp.media[2])
        self.assertIsNone(sdp.media_by_label("nope"))

    def test_srtp_ipv6_unknown_lines(self) -> None:
        """
        IPv6 connections (media-level overriding session-level), several
        crypto lines, a=rtcp, b=/i= lines, unknown attributes and a port-0
        stream are all understood and kept.
        """
        sdp = parse_sdp(_read(SDP / "src-srtp-ipv6.sdp"))
        self.assertEqual(sdp.connection, Connection("IN", "IP6", "2001:db8::10"))
        first, second, video = sdp.media
        self.assertEqual(first.address, "2001:db8::20")
        self.assertEqual(second.address, "2001:db8::10")
        self.assertTrue(first.is_secure)
        self.assertEqual(
            [(c.tag, c.suite) for c in first.crypto],
            [(1, "AES_CM_128_HMAC_SHA1_80"), (2, "AES_CM_128_HMAC_SHA1_32")],
        )
        self.assertEqual(first.crypto[0].keys[0].lifetime, "2^31")
        self.assertEqual((first.rtcp, first.rtcp_address), (17011, "2001:db8::20"))
        self.assertIsNone(second.rtcp)
        self.assertTrue(first.has_attribute("X-unknown-flag"))
        self.assertEqual(first.attribute("X-unknown-flag"), "")
        self.assertEqual(sdp.attributes, (Attribute("X-vendor-session", "abc"),))
        self.assertEqual(first.extra_lines, (("b", "AS:64"),))
        self.assertEqual(sdp.extra_lines, (("i", "recording session"), ("b", "AS:128")))
        self.assertEqual((video.port, video.label), (0, "13"))
        out = sdp.to_bytes()
        self.assertIn(b"a=X-unknown-flag\r\n", out)
        self.assertIn(b"s=SIP Call\r\ni=recording session\r\nc=IN IP6 2001:db8::10\r\nb=AS:128\r\nt=0 0\r\n", out)
        self.assertIn(b"m=audio 17000 RTP/SAVP 0 101\r\nc=IN IP6 2001:db8::20\r\nb=AS:64\r\n", out)

    def test_round_trips(self) -> None:
        """
        parse -> serialize -> parse gives an equal description, and a second
        serialization gives the same octets, for every valid fixture.
        """
        files = sorted(SDP.glob("src-*.sdp")) + sorted(SIPREC.glob("*.sdp"))
        self.assertGreaterEqual(len(files), 7)
        for path in files:
            first = parse_sdp(_read(path))
            again = parse_sdp(first.to_bytes())
            self.assertEqual(again, first, path.name)
            self.assertEqual(again.to_bytes(), first.to_bytes(), path.name)

    def test_extra_lines_sorted(self) -> None:
        """
        Lines out of RFC 4566 order are kept and written in that order, so
        the round trip is stable.
        """
        text = (
            b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nb=AS:1\r\nc=IN IP4 192.0.2.1\r\n"
            b"u=http://example.com/\r\nm=audio 4000/2 RTP/AVP 0\r\na=sendonly\r\nb=AS:2\r\n"
            b"y=unknown\r\n"
        )
        sdp = parse_sdp(text)
        self.assertEqual(sdp.media[0].port_count, 2)
        out = sdp.to_bytes()
        self.assertEqual(
            out,
            b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nu=http://example.com/\r\nc=IN IP4 192.0.2.1\r\n"
            b"b=AS:1\r\nt=0 0\r\nm=audio 4000/2 RTP/AVP 0\r\nb=AS:2\r\ny=unknown\r\na=sendonly\r\n",
        )
        self.assertEqual(parse_sdp(out), sdp)

    def test_tolerated_omissions(self) -> None:
        """
        A missing s= or t=, blank lines and empty a= lines are tolerated.
        """
        sdp = parse_sdp(b"v=0\n\no=- 1 1 IN IP4 192.0.2.1\na=\nm=audio 4000 RTP/AVP 8\n")
        self.assertEqual((sdp.session_name, sdp.timing), ("-", Timing(0, 0)))
        self.assertEqual(sdp.media[0].rtpmap[8].encoding, "PCMA")
        self.assertIsNone(sdp.media[0].address)

    def test_invalid(self) -> None:
        """
        Each invalid fixture raises L{SdpError}, a L{RemoteSipError} with
        status hint 488.
        """
        files = sorted(SDP.glob("invalid-*.sdp"))
        self.assertGreaterEqual(len(files), 6)
        for path in files:
            err = self.assertRaises(SdpError, parse_sdp, _read(path))
            self.assertIsInstance(err, RemoteSipError)
            self.assertEqual(err.status_hint, 488, path.name)
        self.assertRaises(SdpError, parse_sdp, b"")
        self.assertRaises(SdpError, parse_sdp, b"v=0\r\nv=0\r\n")

    def test_invalid_utf8_replaced(self) -> None:
        """
        Octets that are not UTF-8 do not stop parsing.
        """
        sdp = parse_sdp(b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=caf\xe9\r\nt=0 0\r\n")
        self.assertEqual(sdp.session_name, "caf\ufffd")

    def test_session_context_not_compared(self) -> None:
        """
        A media section equals its copy outside the session: the inherited
        connection and direction are not part of equality.
        """
        sdp = parse_sdp(_read(SDP / "src-inactive-first-invite.sdp"))
        bare = MediaDescription(
            media="audio",
            port=30000,
            proto="RTP/AVP",
            formats=("8", "0", "101"),
            attributes=sdp.media[0].attributes,
        )
        self.assertEqual(bare, sdp.media[0])
        self.assertEqual(bare.direction, "sendrecv")
