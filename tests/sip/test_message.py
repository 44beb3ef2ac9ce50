"""
Tests for L{aiconnect.sip.message} and L{aiconnect.sip.multipart}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.sip.message import (
    KEEPALIVE,
    FramingError,
    Headers,
    Request,
    Response,
    SipParseError,
    StreamFramer,
    make_response,
    parse,
)
from aiconnect.sip.multipart import Part, build_multipart, parse_multipart

# RFC 3261 s24.2 (F1), verbatim apart from CRLF line ends.
RFC3261_F1 = (
    b"INVITE sip:bob@biloxi.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.com>\r\n"
    b"From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 142\r\n"
    b"\r\n"
    + b"v=0\r\no=alice 2890844526 2890844526 IN IP4 pc33.atlanta.com\r\ns=-\r\n"
    + b"c=IN IP4 pc33.atlanta.com\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\n"
)


class ParseTests(SynchronousTestCase):
    """
    Parsing and serializing requests and responses.
    """

    def test_rfc3261_invite(self) -> None:
        """
        The RFC 3261 example INVITE parses into its parts.
        """
        body_len = len(RFC3261_F1.split(b"\r\n\r\n", 1)[1])
        data = RFC3261_F1.replace(b"Content-Length: 142", b"Content-Length: %d" % body_len)
        msg = parse(data)
        self.assertIsInstance(msg, Request)
        self.assertEqual(msg.method, "INVITE")
        self.assertEqual(msg.call_id, "a84b4c76e66710@pc33.atlanta.com")
        self.assertEqual(msg.cseq.number, 314159)
        self.assertEqual(msg.from_tag, "1928301774")
        self.assertIsNone(msg.to_tag)
        self.assertEqual(msg.top_via.branch, "z9hG4bK776asdhds")
        self.assertEqual(msg.top_via.port, None)
        self.assertEqual(msg.from_.display_name, "Alice")
        self.assertEqual(len(msg.body), body_len)

    def test_content_length_counts_octets(self) -> None:
        """
        A two-octet UTF-8 body with Content-Length 2 parses (where
        twisted.protocols.sip raises), and serialization counts octets.
        """
        data = (
            b"MESSAGE sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
            b"From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: x\r\n"
            b"CSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n\xc3\xa9"
        )
        msg = parse(data)
        self.assertEqual(msg.body, "\u00e9".encode("utf-8"))
        self.assertIn(b"Content-Length: 2\r\n", msg.to_bytes())

    def test_binary_body_round_trip(self) -> None:
        """
        Arbitrary octets in a body survive parse and serialize unchanged.
        """
        body = bytes(range(256))
        req = Request("INFO", "sip:a@example.com", [("Via", "SIP/2.0/UDP h;branch=z9hG4bK2"), ("From", "<sip:b@h>;tag=1"), ("To", "<sip:a@h>"), ("Call-ID", "y"), ("CSeq", "2 INFO")], body)
        again = parse(req.to_bytes())
        self.assertEqual(again.body, body)

    def test_compact_forms_and_folding(self) -> None:
        """
        Compact header names are expanded and folded lines joined.
        """
        data = (
            b"OPTIONS sip:a@example.com SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK3\r\n"
            b"f: <sip:b@example.com>;tag=1\r\nt: <sip:a@example.com>\r\ni: abc\r\n"
            b"CSeq: 1\r\n OPTIONS\r\nk: siprec,\r\n timer\r\nl: 0\r\n\r\n"
        )
        msg = parse(data)
        self.assertEqual(msg.call_id, "abc")
        self.assertEqual(msg.cseq.method, "OPTIONS")
        self.assertEqual(msg.headers.tokens("Supported"), ["siprec", "timer"])
        self.assertIn(b"Call-ID: abc", msg.to_bytes())

    def test_multi_valued_headers(self) -> None:
        """
        Comma-separated and repeated list headers are read in order.
        """
        h = Headers([("Via", "SIP/2.0/UDP a;branch=z9hG4bKa, SIP/2.0/TCP b:5070;branch=z9hG4bKb"), ("v", "SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bKc")])
        self.assertEqual(len(h.values("Via")), 3)
        msg = Response(200, headers=h)
        self.assertEqual([v.host for v in msg.vias], ["a", "b", "[2001:db8::1]"])
        self.assertEqual(msg.vias[2].port, 5061)

    def test_missing_required_header(self) -> None:
        """
        A request without a Call-ID gets 400 with the headers that were read.
        """
        data = b"OPTIONS sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK4\r\nFrom: <sip:b@h>;tag=1\r\nTo: <sip:a@h>\r\nCSeq: 1 OPTIONS\r\n\r\n"
        with self.assertRaises(SipParseError) as cm:
            parse(data)
        self.assertEqual(cm.exception.status_hint, 400)
        self.assertEqual(cm.exception.partial.headers.get("CSeq"), "1 OPTIONS")

    def test_garbage(self) -> None:
        """
        Garbage is rejected with a SipParseError, never another exception.
        """
        for data in [b"\x00\xff\xfe", b"HELLO\r\n\r\n", b"SIP/2.0\r\n\r\n", b"INVITE\r\n\r\n", b"\r\n\r\n", b"A B C\r\nx\r\n\r\n"]:
            with self.assertRaises(SipParseError):
                parse(data)

    def test_make_response(self) -> None:
        """
        Responses copy Via, From, Call-ID and CSeq, and add the To tag.
        """
        req = parse(RFC3261_F1.replace(b"Content-Length: 142", b"Content-Length: 0").split(b"\r\n\r\n")[0] + b"\r\n\r\n")
        resp = make_response(req, 180, to_tag="abc")
        self.assertEqual(resp.to_tag, "abc")
        self.assertEqual(resp.headers.get("Via"), req.headers.get("Via"))
        self.assertEqual(resp.reason, "Ringing")
        trying = make_response(req, 100, to_tag="abc")
        self.assertIsNone(trying.to_tag)
        again = parse(resp.to_bytes())
        self.assertEqual(again.status, 180)


class FramerTests(SynchronousTestCase):
    """
    Stream framing by Content-Length (RFC 3261 s18.3).
    """

    def test_two_messages_in_one_read(self) -> None:
        """
        Two back-to-back messages come out as two frames.
        """
        one = Request("OPTIONS", "sip:a@h", [("Via", "SIP/2.0/TCP h;branch=z9hG4bK5"), ("From", "<sip:b@h>;tag=1"), ("To", "<sip:a@h>"), ("Call-ID", "z"), ("CSeq", "1 OPTIONS")], b"hello").to_bytes()
        frames = StreamFramer().feed(one + one)
        self.assertEqual(frames, [one, one])

    def test_keepalive(self) -> None:
        """
        A CRLFCRLF ping yields the keep-alive marker.
        """
        self.assertEqual(StreamFramer().feed(b"\r\n\r\n"), [KEEPALIVE])

    def test_too_large(self) -> None:
        """
        A Content-Length beyond the size limit loses framing with 513.
        """
        f = StreamFramer(max_size=1000)
        with self.assertRaises(FramingError) as cm:
            f.feed(b"OPTIONS sip:a@h SIP/2.0\r\nContent-Length: 5000\r\n\r\n")
        self.assertEqual(cm.exception.status_hint, 513)

    def test_endless_headers(self) -> None:
        """
        A header section that never ends is cut off at the size limit.
        """
        f = StreamFramer(max_size=1000)
        with self.assertRaises(FramingError):
            for _ in range(100):
                f.feed(b"X-Junk: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n")


class MultipartTests(SynchronousTestCase):
    """
    multipart/mixed bodies.
    """

    def test_round_trip(self) -> None:
        """
        Built parts parse back to the same bytes.
        """
        parts = [
            Part((("Content-Type", "application/sdp"),), b"v=0\r\n"),
            Part((("Content-Type", "application/rs-metadata+xml"), ("Content-Disposition", "recording-session")), b"<x/>\r\n\r\nend"),
        ]
        body = build_multipart(parts, "b1")
        got = parse_multipart(body, "b1")
        self.assertEqual([p.body for p in got], [p.body for p in parts])
        self.assertEqual(got[1].disposition, "recording-session")

    def test_part_headers_without_space(self) -> None:
        """
        Part headers without a space after the colon are read (seen from SBCs).
        """
        body = b"--x\r\nContent-Type:application/sdp\r\n\r\nv=0\r\n\r\n--x\r\nContent-Type:application/rs-metadata\r\nContent-Disposition:recording-session\r\n\r\n<a/>\r\n--x--\r\n"
        got = parse_multipart(body, "x")
        self.assertEqual([p.content_type for p in got], ["application/sdp", "application/rs-metadata"])
        self.assertEqual(got[0].body, b"v=0\r\n")
