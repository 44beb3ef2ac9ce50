"""
Tests for the codec choice of L{aiconnect.sip.offer_answer}: G.711 first,
else G.722 or Opus (decoded by the relay), answered with their
C{a=rtpmap} and C{a=fmtp} (SPEC s5, docs/media.md "Codecs").
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.sip.offer_answer import build_srs_answer, rejection_reason, supported_codec
from aiconnect.sip.sdp_fields import Origin
from aiconnect.sip.sdp_model import MediaDescription, parse_sdp

#: What the SRS accepts (aiconnect.siprec.srs.CODECS).
ALL = ("PCMU", "PCMA", "G722", "opus")


def offer(m_line: str, *attributes: str) -> bytes:
    """
    A one-stream SIPRec offer with this C{m=} line and attributes.
    """
    lines = ["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", m_line]
    lines += [f"a={a}" for a in attributes] + ["a=sendonly", "a=label:1", ""]
    return "\r\n".join(lines).encode()


def media(m_line: str, *attributes: str) -> MediaDescription:
    """
    The media section of L{offer}.
    """
    return parse_sdp(offer(m_line, *attributes)).media[0]


def answer_lines(body: bytes) -> list[str]:
    """
    The answer's C{m=} and C{a=} lines for the offer C{body}.
    """
    answer = build_srs_answer(
        parse_sdp(body), origin=Origin.new("192.0.2.9", sess_id="7"), address="192.0.2.9", ports=[4000], codecs=ALL
    )
    return [line for line in answer.to_bytes().decode().split("\r\n") if line[:2] in ("m=", "a=")]


class CodecChoiceTests(SynchronousTestCase):
    """
    L{supported_codec} and L{rejection_reason} with the decoded codecs.
    """

    def test_g722_alone(self) -> None:
        """
        G.722 alone (static PT 9, no rtpmap needed) is accepted.
        """
        self.assertEqual(supported_codec(media("m=audio 5000 RTP/AVP 9 101"), ALL), 9)
        self.assertIsNone(rejection_reason(media("m=audio 5000 RTP/AVP 9"), ALL))

    def test_opus_alone(self) -> None:
        """
        Opus is accepted at 48000 Hz (opus/48000/2), not at another rate.
        """
        self.assertEqual(supported_codec(media("m=audio 5000 RTP/AVP 111", "rtpmap:111 opus/48000/2"), ALL), 111)
        self.assertIsNone(supported_codec(media("m=audio 5000 RTP/AVP 111", "rtpmap:111 opus/8000"), ALL))

    def test_g711_preferred(self) -> None:
        """
        G.711 wins over G.722 and Opus whatever the offer's order (no
        decoding); between the decoded ones, the offer's order.
        """
        both = media("m=audio 5000 RTP/AVP 111 9 8", "rtpmap:111 opus/48000/2")
        self.assertEqual(supported_codec(both, ALL), 8)
        decoded = media("m=audio 5000 RTP/AVP 111 9", "rtpmap:111 opus/48000/2")
        self.assertEqual(supported_codec(decoded, ALL), 111)

    def test_default_codecs_unchanged(self) -> None:
        """
        With the default codecs (G.711 only), a G.722-only stream is
        still rejected.
        """
        self.assertEqual(rejection_reason(media("m=audio 5000 RTP/AVP 9")), "no supported codec")


class AnswerTests(SynchronousTestCase):
    """
    The answer names the chosen codec with its rtpmap and fmtp.
    """

    def test_g722_answer(self) -> None:
        """
        G.722 is answered as 9 G722/8000, with telephone-event.
        """
        lines = answer_lines(offer("m=audio 5000 RTP/AVP 9 101", "rtpmap:101 telephone-event/8000"))
        self.assertEqual(
            lines,
            [
                "m=audio 4000 RTP/AVP 9 101",
                "a=rtpmap:9 G722/8000",
                "a=rtpmap:101 telephone-event/8000",
                "a=fmtp:101 0-15",
                "a=recvonly",
                "a=label:1",
            ],
        )

    def test_opus_answer(self) -> None:
        """
        Opus is answered as opus/48000/2 with our fmtp (8 kHz mono is all
        we decode to), and telephone-event at 48000 as offered.
        """
        lines = answer_lines(
            offer(
                "m=audio 5000 RTP/AVP 111 110",
                "rtpmap:111 opus/48000/2",
                "fmtp:111 minptime=10;useinbandfec=1",
                "rtpmap:110 telephone-event/48000",
                "fmtp:110 0-16",
            )
        )
        self.assertEqual(
            lines,
            [
                "m=audio 4000 RTP/AVP 111 110",
                "a=rtpmap:111 opus/48000/2",
                "a=fmtp:111 maxplaybackrate=8000;stereo=0",
                "a=rtpmap:110 telephone-event/48000",
                "a=fmtp:110 0-16",
                "a=recvonly",
                "a=label:1",
            ],
        )

    def test_g711_answer_when_both(self) -> None:
        """
        Offered Opus then PCMU: the answer is PCMU alone.
        """
        lines = answer_lines(offer("m=audio 5000 RTP/AVP 111 0", "rtpmap:111 opus/48000/2"))
        self.assertEqual(lines[:2], ["m=audio 4000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000"])
