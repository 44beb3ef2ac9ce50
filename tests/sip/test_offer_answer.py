"""
Tests for L{aiconnect.sip.offer_answer}: the SRS answer and the SRC offer
(RFC 3264, RFC 7866 s7).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.errors import LocalSipError
from aiconnect.sip.offer_answer import (
    OfferStream,
    build_src_offer,
    build_srs_answer,
    next_session_version,
    rejection_reason,
    select_crypto,
)
from aiconnect.sip.sdes import Crypto
from aiconnect.sip.sdp_fields import Attribute, Connection, Origin, RtpMap, SdpError
from aiconnect.sip.sdp_model import SessionDescription, parse_sdp

SIPREC = Path(__file__).parent.parent / "data" / "siprec"
SDP = SIPREC.parent / "sdp"
KEY_A = bytes(range(30))
KEY_B = bytes(range(100, 130))


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _origin() -> Origin:
    return Origin.new("192.0.2.99", sess_id="4242")


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
