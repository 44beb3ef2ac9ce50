"""
Tests for L{aiconnect.sip.sdp}.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.errors import LocalSipError, RemoteSipError
from aiconnect.sip.sdp import (
    Attribute,
    Connection,
    Crypto,
    KeyParam,
    MediaDescription,
    OfferStream,
    Origin,
    RtpMap,
    SdpError,
    SessionDescription,
    Timing,
    build_src_offer,
    build_srs_answer,
    next_session_version,
    parse_sdp,
    rejection_reason,
    select_crypto,
)

DATA = Path(__file__).parent.parent / "data"
SIPREC = DATA / "siprec"
SDP = DATA / "sdp"
KEY_A = bytes(range(30))
KEY_B = bytes(range(100, 130))


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


class CryptoTests(SynchronousTestCase):
    """
    SDES a=crypto attributes (RFC 4568).
    """

    def test_rfc4568_examples(self) -> None:
        """
        Every RFC 4568 example parses to its documented keys, lifetimes and
        MKIs, and writes back to the same text.
        """
        corpus = json.loads((DATA / "srtp" / "rfc4568-crypto-examples.json").read_text())
        self.assertEqual(len(corpus["examples"]), 8)
        for example in corpus["examples"]:
            text = example["unfolded"]
            if text.startswith("a=crypto:"):
                crypto = Crypto.parse(text)
                keys = crypto.keys
                self.assertEqual("a=crypto:" + crypto.value(), text)
            else:
                keys = (KeyParam.parse(text),)
                self.assertEqual(keys[0].text(), text)
            self.assertEqual(len(keys), len(example["keys"]), text)
            for key, expected in zip(keys, example["keys"]):
                self.assertEqual(key.key_salt[:16].hex(), expected["master_key"])
                self.assertEqual(key.key_salt[16:].hex(), expected["master_salt"])
                self.assertEqual(key.lifetime, expected["lifetime"])
                self.assertEqual(key.mki, expected["mki"])
                self.assertEqual(key.mki_length, expected["mki_length"])

    def test_session_params(self) -> None:
        """
        Session parameters after the key parameters are kept.
        """
        crypto = Crypto.parse(
            "crypto:1 AES_CM_128_HMAC_SHA1_80 "
            "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4 FEC_ORDER=FEC_SRTP"
        )
        self.assertEqual(crypto.session_params, ("FEC_ORDER=FEC_SRTP",))
        self.assertFalse(crypto.usable)

    def test_usable(self) -> None:
        """
        One key of a supported suite without MKI or session parameters is
        usable; an MKI, two keys or an unknown suite are not.
        """
        self.assertTrue(Crypto.from_key(1, "AES_CM_128_HMAC_SHA1_80", KEY_A).usable)
        self.assertTrue(Crypto.from_key(1, "AES_CM_128_HMAC_SHA1_32", KEY_A).usable)
        self.assertFalse(Crypto(1, "AES_CM_128_HMAC_SHA1_80", (KeyParam(KEY_A, None, 1, 4),)).usable)
        self.assertFalse(Crypto(1, "AES_CM_128_HMAC_SHA1_80", (KeyParam(KEY_A), KeyParam(KEY_B))).usable)
        self.assertFalse(Crypto.from_key(1, "F8_128_HMAC_SHA1_80", KEY_A).usable)

    def test_malformed(self) -> None:
        """
        Malformed crypto values raise L{SdpError}; a malformed line in a
        media section is skipped by L{MediaDescription.crypto}.
        """
        for bad in (
            "1 AES_CM_128_HMAC_SHA1_80",
            "x AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
            "1 AES_CM_128_HMAC_SHA1_80 inline:not*base64",
            "1 AES_CM_128_HMAC_SHA1_80 uri:http://example.com/key",
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|x",
        ):
            self.assertRaises(SdpError, Crypto.parse, bad)
        m = MediaDescription(
            "audio",
            4000,
            "RTP/SAVP",
            ("0",),
            attributes=(
                Attribute("crypto", "garbage"),
                Crypto.from_key(3, "AES_CM_128_HMAC_SHA1_80", KEY_A).attribute(),
            ),
        )
        self.assertEqual([c.tag for c in m.crypto], [3])

    def test_unpadded_key(self) -> None:
        """
        A key whose base64 padding was stripped is still decoded.
        """
        key = bytes(range(46))  # AES-256 key and salt: 64 characters with "=="
        crypto = Crypto.from_key(1, "AES_CM_256_HMAC_SHA1_80", key)
        stripped = crypto.value().replace("=", "")
        self.assertEqual(Crypto.parse(stripped).key, key)

    def test_key_not_in_repr(self) -> None:
        """
        No repr shows a key: not a key parameter's, a crypto value's, nor
        that of a media section or session holding an a=crypto line.
        """
        crypto = Crypto.from_key(1, "AES_CM_128_HMAC_SHA1_80", KEY_A)
        encoded = crypto.keys[0].text().split(":", 1)[1]
        self.assertNotIn(encoded, repr(crypto))
        self.assertNotIn(encoded, repr(crypto.keys[0]))
        self.assertNotIn(encoded, str(crypto))
        media = MediaDescription("audio", 1, "RTP/SAVP", ("0",), attributes=(crypto.attribute(),))
        self.assertNotIn(encoded, repr(media))
        self.assertNotIn(encoded, repr(SessionDescription(_origin(), media=(media,))))
        self.assertIn(encoded, SessionDescription(_origin(), media=(media,)).to_bytes().decode())

    def test_srtp_module_reads_our_lines(self) -> None:
        """
        The SRTP module parses the crypto value we write to the same key.
        """
        from aiconnect.media.srtp import parse_crypto

        crypto = Crypto.from_key(5, "AES_CM_128_HMAC_SHA1_80", KEY_A, lifetime="2^31")
        parsed = parse_crypto(crypto.value())
        self.assertEqual((parsed.tag, parsed.suite, parsed.keys[0].key), (5, "AES_CM_128_HMAC_SHA1_80", KEY_A))


class AnswerTests(SynchronousTestCase):
    """
    The SRS answer (RFC 3264 s6, RFC 7866 s7.2).
    """

    def test_rfc7866_offer(self) -> None:
        """
        The answer to the RFC 7866 offer keeps the four m-lines in order
        with their labels, answers each audio stream recvonly with PCMU (the
        offer's first supported codec) on our ports, and rejects the video
        streams with port 0.
        """
        offer = parse_sdp(_read(SIPREC / "rfc7866-fig5-src-offer.sdp"))
        answer = build_srs_answer(
            offer, origin=_origin(), address="192.0.2.99", ports=[20000, 20002, 20004, 20006]
        )
        self.assertEqual(answer.labels, ["1", "2", "3", "4"])
        self.assertEqual([m.media for m in answer.media], ["audio", "video", "audio", "video"])
        self.assertEqual([m.port for m in answer.media], [20000, 0, 20004, 0])
        self.assertEqual(answer.media[0].direction, "recvonly")
        self.assertEqual(answer.media[2].direction, "recvonly")
        self.assertEqual(answer.media[0].formats, ("0",))
        self.assertEqual(answer.media[0].address, "192.0.2.99")
        self.assertEqual(answer.origin, _origin())
        again = parse_sdp(answer.to_bytes())
        self.assertEqual(again, answer)
        self.assertEqual([m.label for m in again.media if m.direction == "recvonly"], ["1", "3"])

    def test_recvonly_per_label(self) -> None:
        """
        Every accepted stream of every SRC fixture is answered recvonly (or
        inactive when offered inactive) with its own label.
        """
        for name in ("src-lf-only.sdp", "src-one-stream.sdp", "src-three-streams.sdp"):
            offer = parse_sdp(_read(SDP / name))
            ports = [20000 + 2 * i for i in range(len(offer.media))]
            answer = build_srs_answer(offer, origin=_origin(), address="192.0.2.99", ports=ports)
            self.assertEqual(answer.labels, offer.labels, name)
            self.assertEqual([m.port for m in answer.media], ports, name)
            self.assertEqual({m.direction for m in answer.media}, {"recvonly"}, name)

    def test_inactive_offer(self) -> None:
        """
        An inactive first INVITE is answered inactive; an SRS that is not
        ready answers inactive whatever was offered.
        """
        offer = parse_sdp(_read(SDP / "src-inactive-first-invite.sdp"))
        answer = build_srs_answer(offer, origin=_origin(), address="192.0.2.99", ports=[20000, 20002])
        self.assertEqual([m.direction for m in answer.media], ["inactive", "inactive"])
        live = parse_sdp(_read(SDP / "src-lf-only.sdp"))
        held = build_srs_answer(live, origin=_origin(), address="192.0.2.99", ports=[20000, 20002], inactive=True)
        self.assertEqual([m.direction for m in held.media], ["inactive", "inactive"])

    def test_direction_mapping(self) -> None:
        """
        sendrecv is answered recvonly and recvonly inactive (RFC 3264 s6.1).
        """
        offer = parse_sdp(
            b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
            b"m=audio 4000 RTP/AVP 0\r\nm=audio 4002 RTP/AVP 0\r\na=recvonly\r\n"
        )
        answer = build_srs_answer(offer, origin=_origin(), address="192.0.2.99", ports=[1000, 1002])
        self.assertEqual([m.direction for m in answer.media], ["recvonly", "inactive"])

    def test_codec_and_telephone_event(self) -> None:
        """
        The offer's first supported codec and its telephone-event payload
        type are answered with rtpmap, fmtp and ptime.
        """
        offer = parse_sdp(_read(SDP / "src-inactive-first-invite.sdp"))
        answer = build_srs_answer(offer, origin=_origin(), address="192.0.2.99", ports=[20000, 20002])
        m = answer.media[0]
        self.assertEqual(m.formats, ("8", "101"))
        self.assertEqual(m.rtpmap, {8: RtpMap("PCMA", 8000), 101: RtpMap("telephone-event", 8000)})
        self.assertEqual(m.fmtp, {101: "0-15"})
        only_pcmu = build_srs_answer(
            offer, origin=_origin(), address="192.0.2.99", ports=[20000, 20002], codecs=["PCMU"]
        )
        self.assertEqual(only_pcmu.media[0].formats, ("0", "101"))
        three = parse_sdp(_read(SDP / "src-three-streams.sdp"))
        answer = build_srs_answer(three, origin=_origin(), address="192.0.2.99", ports=[1, 3, 5])
        self.assertEqual([m.formats for m in answer.media], [("0", "101")] * 3)
        lf = build_srs_answer(
            parse_sdp(_read(SDP / "src-lf-only.sdp")), origin=_origin(), address="192.0.2.99", ports=[1, 3]
        )
        self.assertEqual(lf.media[0].ptime, 20)

    def test_rejections(self) -> None:
        """
        Streams that are disabled, not audio, without a common codec, over
        an unknown transport or port 0 by our choice are rejected with port
        0 and their label.
        """
        offer = parse_sdp(
            b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
            b"m=audio 0 RTP/AVP 0\r\na=label:a\r\n"
            b"m=audio 4000 RTP/AVP 18\r\na=label:b\r\n"
            b"m=audio 4002 UDP/TLS/RTP/SAVP 0\r\na=label:c\r\n"
            b"m=audio 4004 RTP/SAVP 0\r\na=label:d\r\n"
            b"m=audio 4006 RTP/AVP 0\r\na=label:e\r\n"
            b"m=audio 4008 RTP/AVP 0\r\na=label:f\r\n"
        )
        reasons = [rejection_reason(m) for m in offer.media]
        self.assertEqual(
            reasons,
            [
                "disabled in the offer",
                "no supported codec",
                "transport UDP/TLS/RTP/SAVP not supported",
                "no supported crypto suite",
                None,
                None,
            ],
        )
        answer = build_srs_answer(offer, origin=_origin(), address="192.0.2.99", ports=[1, 2, 3, 4, 5, 0])
        self.assertEqual([m.port for m in answer.media], [0, 0, 0, 0, 5, 0])
        self.assertEqual(answer.labels, ["a", "b", "c", "d", "e", "f"])
        self.assertEqual(answer.media[2].proto, "UDP/TLS/RTP/SAVP")
        self.assertEqual(answer.media[1].formats, ("18",))

    def test_srtp_answer(self) -> None:
        """
        An RTP/SAVP stream is answered RTP/SAVP with our key under the tag
        and suite chosen from the offer.
        """
        offer = parse_sdp(_read(SDP / "src-srtp-ipv6.sdp"))
        chosen = [select_crypto(m) for m in offer.media]
        self.assertEqual(
            [(c.tag, c.suite) if c else None for c in chosen],
            [(1, "AES_CM_128_HMAC_SHA1_80"), (7, "AES_CM_128_HMAC_SHA1_80"), None],
        )
        self.assertEqual(select_crypto(offer.media[0], ["AES_CM_128_HMAC_SHA1_32"]).tag, 2)
        ours = [
            Crypto.from_key(chosen[0].tag, chosen[0].suite, KEY_A),
            Crypto.from_key(chosen[1].tag, chosen[1].suite, KEY_B),
            None,
        ]
        answer = build_srs_answer(
            offer,
            origin=Origin.new("2001:db8::99", sess_id="9"),
            address="2001:db8::99",
            ports=[20000, 20002, 20004],
            crypto=ours,
        )
        self.assertEqual(answer.connection, Connection("IN", "IP6", "2001:db8::99"))
        self.assertEqual(answer.origin.addrtype, "IP6")
        first, second, video = parse_sdp(answer.to_bytes()).media
        self.assertEqual((first.proto, first.crypto), ("RTP/SAVP", (ours[0],)))
        self.assertEqual(second.crypto, (ours[1],))
        self.assertEqual(video.port, 0)
        self.assertEqual(first.crypto[0].key, KEY_A)

    def test_srtp_answer_errors(self) -> None:
        """
        A secure stream without our key, or with a key for a tag that was
        not offered, is our bug (L{LocalSipError}); so are mismatched ports.
        """
        offer = parse_sdp(_read(SDP / "src-srtp-ipv6.sdp"))
        kwargs = dict(origin=_origin(), address="192.0.2.99", ports=[1, 3, 5])
        self.assertRaises(LocalSipError, build_srs_answer, offer, **kwargs)
        wrong = [
            Crypto.from_key(9, "AES_CM_128_HMAC_SHA1_80", KEY_A),
            Crypto.from_key(7, "AES_CM_128_HMAC_SHA1_80", KEY_B),
        ]
        self.assertRaises(LocalSipError, build_srs_answer, offer, crypto=wrong, **kwargs)
        self.assertRaises(
            LocalSipError, build_srs_answer, offer, origin=_origin(), address="192.0.2.99", ports=[1]
        )

    def test_no_media(self) -> None:
        """
        An offer without any media section is refused with 488.
        """
        offer = parse_sdp(b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n")
        err = self.assertRaises(SdpError, build_srs_answer, offer, origin=_origin(), address="192.0.2.9", ports=[])
        self.assertEqual(err.status_hint, 488)


class OfferTests(SynchronousTestCase):
    """
    The SRC offer (RFC 7866 s7.1.1) and re-offers (RFC 3264 s8).
    """

    def test_plain_offer(self) -> None:
        """
        One sendonly RTP/AVP m-line per stream with its label, PCMA and
        telephone-event 101.
        """
        offer = build_src_offer(
            [OfferStream("labelA", 30000), OfferStream("labelB", 30002)],
            origin=_origin(),
            address="192.0.2.99",
        )
        self.assertEqual(
            offer.to_bytes(),
            b"v=0\r\no=aiconnect 4242 1 IN IP4 192.0.2.99\r\ns=-\r\nc=IN IP4 192.0.2.99\r\nt=0 0\r\n"
            b"m=audio 30000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
            b"a=fmtp:101 0-15\r\na=ptime:20\r\na=sendonly\r\na=label:labelA\r\n"
            b"m=audio 30002 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
            b"a=fmtp:101 0-15\r\na=ptime:20\r\na=sendonly\r\na=label:labelB\r\n",
        )
        self.assertEqual(parse_sdp(offer.to_bytes()), offer)

    def test_srtp_pcmu_offer(self) -> None:
        """
        With keys, streams are RTP/SAVP with one a=crypto per key; PCMU uses
        payload type 0.
        """
        offer = build_src_offer(
            [
                OfferStream("1", 30000, (Crypto.from_key(1, "AES_CM_128_HMAC_SHA1_80", KEY_A),)),
                OfferStream("2", 30002, (Crypto.from_key(1, "AES_CM_128_HMAC_SHA1_80", KEY_B),)),
            ],
            origin=_origin(),
            address="2001:db8::1",
            codec="PCMU",
        )
        again = parse_sdp(offer.to_bytes())
        self.assertEqual(again.connection, Connection("IN", "IP6", "2001:db8::1"))
        self.assertEqual([m.proto for m in again.media], ["RTP/SAVP", "RTP/SAVP"])
        self.assertEqual([m.crypto[0].key for m in again.media], [KEY_A, KEY_B])
        self.assertEqual(again.media[0].formats, ("0", "101"))
        self.assertEqual({m.direction for m in again.media}, {"sendonly"})

    def test_our_answer_to_our_offer(self) -> None:
        """
        Our SRS answer to our own SRC offer accepts every stream.
        """
        offer = build_src_offer(
            [OfferStream("a", 30000, (Crypto.from_key(4, "AES_CM_128_HMAC_SHA1_32", KEY_A),)), OfferStream("b", 30002)],
            origin=_origin(),
            address="192.0.2.99",
        )
        offered = parse_sdp(offer.to_bytes())
        key = select_crypto(offered.media[0])
        answer = build_srs_answer(
            offered,
            origin=_origin(),
            address="192.0.2.98",
            ports=[40000, 40002],
            crypto=[Crypto.from_key(key.tag, key.suite, KEY_B)],
        )
        self.assertEqual([m.port for m in answer.media], [40000, 40002])
        self.assertEqual(answer.media[0].crypto[0].tag, 4)

    def test_paused_and_removed(self) -> None:
        """
        A stream can be offered inactive (paused) or with port 0 (removed).
        """
        offer = build_src_offer(
            [OfferStream("a", 30000, direction="inactive"), OfferStream("b", 0)],
            origin=_origin(),
            address="192.0.2.99",
            telephone_event=None,
            ptime=None,
        )
        self.assertEqual([m.direction for m in offer.media], ["inactive", "sendonly"])
        self.assertEqual(offer.media[1].port, 0)
        self.assertEqual(offer.media[0].formats, ("8",))
        self.assertIsNone(offer.media[0].ptime)

    def test_bad_offer_arguments(self) -> None:
        """
        An unknown codec, a repeated or malformed label, a bad port or
        direction is our bug.
        """
        o = _origin()
        self.assertRaises(LocalSipError, build_src_offer, [OfferStream("a", 1)], origin=o, address="h", codec="G729")
        twice = [OfferStream("a", 1), OfferStream("a", 3)]
        self.assertRaises(LocalSipError, build_src_offer, twice, origin=o, address="h")
        self.assertRaises(LocalSipError, build_src_offer, [OfferStream("a b", 1)], origin=o, address="h")
        self.assertRaises(LocalSipError, build_src_offer, [OfferStream("a", 70000)], origin=o, address="h")
        self.assertRaises(LocalSipError, build_src_offer, [OfferStream("a", 1, direction="up")], origin=o, address="h")

    def test_session_version(self) -> None:
        """
        A re-offer keeps the origin's version when nothing changed and
        increments it by one when anything did (RFC 3264 s8).
        """
        streams = [OfferStream("a", 30000), OfferStream("b", 30002)]
        first = build_src_offer(streams, origin=_origin(), address="192.0.2.99")
        same = next_session_version(first, build_src_offer(streams, origin=Origin.new("x"), address="192.0.2.99"))
        self.assertEqual(same.origin, first.origin)
        changed = next_session_version(
            first, build_src_offer(streams[:1], origin=_origin(), address="192.0.2.99")
        )
        self.assertEqual(changed.origin.sess_version, first.origin.sess_version + 1)
        self.assertEqual(changed.origin.sess_id, first.origin.sess_id)
        self.assertEqual(first.next_version().origin.sess_version, 2)

    def test_with_direction(self) -> None:
        """
        with_direction replaces the direction attribute in place.
        """
        m = build_src_offer([OfferStream("a", 1)], origin=_origin(), address="h").media[0]
        paused = m.with_direction("inactive")
        self.assertEqual(paused.direction, "inactive")
        expected = ["inactive" if a.name == "sendonly" else a.name for a in m.attributes]
        self.assertEqual([a.name for a in paused.attributes], expected)
        bare = replace(m, attributes=())
        self.assertEqual(bare.with_direction("recvonly").attributes, (Attribute("recvonly"),))
        self.assertRaises(LocalSipError, m.with_direction, "up")

    def test_origin_new(self) -> None:
        """
        A new origin has a random numeric session id and the address type
        of its address.
        """
        a, b = Origin.new("192.0.2.1"), Origin.new("2001:db8::1")
        self.assertTrue(a.sess_id.isdigit())
        self.assertNotEqual(a.sess_id, b.sess_id)
        self.assertEqual((a.addrtype, b.addrtype), ("IP4", "IP6"))
        self.assertEqual(SessionDescription(a).to_bytes().count(b"\r\n"), 4)
