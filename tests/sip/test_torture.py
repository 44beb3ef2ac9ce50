"""
The RFC 4475 and RFC 5118 torture messages through the bytes-level parser,
as a datagram and as a stream, table-driven from the RFCs' expectations.
"""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.sip.message import Request, Response, SipParseError, StreamFramer, parse

DATA = Path(__file__).parent.parent / "data"

#: name -> expected parser outcome: "request", "response", an int status
#: hint (request rejected with that status), or "drop" (response discarded).
#: Application-level answers (416, 420, 501...) are checked in test_ua.
PARSER_TABLE: dict[str, object] = {
    "wsinv": "request",
    "intmeth": "request",
    "esc01": "request",
    "escnull": "request",
    "esc02": "request",
    "lwsdisp": "request",
    "longreq": "request",
    "dblreq": "request",
    "semiuri": "request",
    "transports": "request",
    "mpart01": "request",
    "unreason": "response",
    "noreason": "response",
    "badinv01": 400,
    "clerr": 400,
    "ncl": 400,
    "scalar02": 400,
    "scalarlg": "drop",
    "quotbal": 400,
    "ltgtruri": 400,
    "lwsruri": 400,
    "lwsstart": 400,
    "trws": 400,
    "escruri": 400,
    "baddate": "request",
    "regbadct": 400,
    "badaspec": 400,
    "baddn": 400,
    "badvers": 505,
    "mismatch01": 400,
    "mismatch02": 501,
    "bigcode": "drop",
    "badbranch": "request",
    "insuf": 400,
    "unkscm": "request",
    "novelsc": "request",
    "unksm2": "request",
    "bext01": "request",
    "invut": "request",
    "regaut01": "request",
    "multi01": 400,
    "mcl01": 400,
    "bcast": "response",
    "zeromf": "request",
    "cparam01": "request",
    "cparam02": "request",
    "regescrt": "request",
    "sdp01": "request",
    "inv2543": "request",
}

#: Messages that cannot be framed on a stream the same way: clerr waits for
#: more data, ncl/mcl01 lose framing, inv2543 has no Content-Length.
STREAM_SPECIAL = {"clerr": "wait", "ncl": "framing", "mcl01": "framing", "inv2543": "headers-only", "baddn": "wait"}


def _load(name: str) -> bytes:
    return (DATA / "rfc4475" / (name + ".sip")).read_bytes()


class TortureParserTests(SynchronousTestCase):
    """
    Every RFC 4475 message gets the outcome the RFC names.
    """

    def _check(self, name: str, data: bytes, expected: object, datagram: bool) -> None:
        if expected in ("request", "response"):
            msg = parse(data, datagram=datagram)
            kind = Request if expected == "request" else Response
            self.assertIsInstance(msg, kind, name)
            # Serialize and parse again: the message survives byte-exact bodies.
            again = parse(msg.to_bytes(), datagram=datagram)
            self.assertEqual(again.body, msg.body, name)
            self.assertEqual(again.call_id, msg.call_id, name)
            return
        with self.assertRaises(SipParseError, msg=name) as cm:
            parse(data, datagram=datagram)
        err = cm.exception
        if expected == "drop":
            self.assertFalse(err.is_request, name)
        else:
            self.assertEqual(err.status_hint, expected, name)
            self.assertTrue(err.is_request, name)
            self.assertIsNotNone(err.partial, name)

    def test_table_covers_corpus(self) -> None:
        """
        The table names every referenced message of the archive (test.sip is unreferenced).
        """
        names = {p.stem for p in (DATA / "rfc4475").glob("*.sip")}
        self.assertEqual(names - {"test"}, set(PARSER_TABLE))
        self.assertEqual(len(PARSER_TABLE), 49)

    def test_datagrams(self) -> None:
        """
        Each message as one datagram parses or fails with the RFC's status.
        """
        for name, expected in PARSER_TABLE.items():
            self._check(name, _load(name), expected, datagram=True)

    def test_streams(self) -> None:
        """
        Each message fed byte by byte through the stream framer yields the
        same outcome, except the framing tests which wait or lose framing.
        """
        from aiconnect.sip.message import FramingError

        for name, expected in PARSER_TABLE.items():
            data = _load(name)
            framer = StreamFramer()
            special = STREAM_SPECIAL.get(name)
            if special == "framing":
                with self.assertRaises(FramingError, msg=name) as cm:
                    framer.feed(data)
                self.assertEqual(cm.exception.status_hint, 400)
                continue
            frames: list[bytes] = []
            for i in range(len(data)):
                frames.extend(framer.feed(data[i : i + 1]))
            if special == "wait":
                self.assertEqual(frames, [], name)
                self.assertEqual(framer.buffered, len(data), name)
                continue
            self.assertGreaterEqual(len(frames), 1, name)
            if special == "headers-only":
                # No Content-Length on a stream: the body is not framed.
                self.assertEqual(parse(frames[0], datagram=False).body, b"")
                continue
            if name == "dblreq":
                # The trailing INVITE octets are framed as a second message
                # on a stream; the REGISTER itself is intact.
                self.assertEqual(parse(frames[0], datagram=False).method, "REGISTER")
                continue
            self.assertEqual(len(frames), 1, name)
            self._check(name, frames[0], expected, datagram=False)

    def test_baddn_terminated_variant(self) -> None:
        """
        The terminated variant of baddn gets 400 on a stream too.
        """
        data = (DATA / "rfc4475" / "variants" / "baddn.terminated.sip").read_bytes()
        frames = StreamFramer().feed(data)
        self.assertEqual(len(frames), 1)
        with self.assertRaises(SipParseError) as cm:
            parse(frames[0], datagram=False)
        self.assertEqual(cm.exception.status_hint, 400)

    def test_mpart01_binary_body_exact(self) -> None:
        """
        mpart01's binary multipart body is kept byte for byte (553 octets).
        """
        msg = parse(_load("mpart01"))
        self.assertEqual(len(msg.body), 553)
        self.assertIn(b"\x00", msg.body)

    def test_dblreq_trailing_octets_ignored(self) -> None:
        """
        Octets after Content-Length in a datagram are not part of the message.
        """
        msg = parse(_load("dblreq"))
        self.assertEqual(msg.body, b"")
        self.assertNotIn(b"INVITE", msg.to_bytes())

    def test_size_limit(self) -> None:
        """
        A request larger than the limit gets 513; a response is dropped.
        """
        data = _load("wsinv")
        with self.assertRaises(SipParseError) as cm:
            parse(data, max_size=len(data) - 1)
        self.assertEqual(cm.exception.status_hint, 513)
        with self.assertRaises(SipParseError) as cm:
            parse(_load("unreason"), max_size=100)
        self.assertFalse(cm.exception.is_request)


RFC5118_TABLE = {
    "ipv6-good": "request",
    "ipv6-bad": 400,
    "port-ambiguous": "request",
    "port-unambiguous": "request",
    "via-received-param-with-delim": "request",
    "via-received-param-no-delim": "request",
    "ipv6-in-sdp": "request",
    "mult-ip-in-header": "request",
    "mult-ip-in-sdp": "request",
    "ipv4-mapped-ipv6": "request",
    "ipv6-bug-abnf-3-colons": "request",
    "ipv6-correct-abnf-2-colons": "request",
}


def _fix_length(data: bytes) -> bytes:
    """
    RFC 5118's printed Content-Length values do not always match the CRLF
    body (see tests/data/rfc5118/index.tsv): recompute them.
    """
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = [
        b"Content-Length: %d" % len(body) if line.lower().startswith(b"content-length") else line
        for line in head.split(b"\r\n")
    ]
    return b"\r\n".join(lines) + sep + body


class Rfc5118Tests(SynchronousTestCase):
    """
    The RFC 5118 IPv6 torture messages.
    """

    def test_table(self) -> None:
        """
        Every message parses (or gets 400 for the unbracketed IPv6 R-URI).
        """
        for name, expected in RFC5118_TABLE.items():
            data = _fix_length((DATA / "rfc5118" / (name + ".sip")).read_bytes())
            if expected == "request":
                msg = parse(data)
                self.assertIsInstance(msg, Request, name)
                msg.vias  # every Via value parses
                msg.request_uri
            else:
                with self.assertRaises(SipParseError, msg=name) as cm:
                    parse(data)
                self.assertEqual(cm.exception.status_hint, expected)

    def test_port_ambiguity(self) -> None:
        """
        [2001:db8::10:5070] has no port; [2001:db8::10]:5070 has port 5070.
        """
        amb = parse(_fix_length((DATA / "rfc5118" / "port-ambiguous.sip").read_bytes()))
        unamb = parse(_fix_length((DATA / "rfc5118" / "port-unambiguous.sip").read_bytes()))
        self.assertIsNone(amb.request_uri.port)
        self.assertEqual(amb.request_uri.host, "[2001:db8::10:5070]")
        self.assertEqual(unamb.request_uri.port, 5070)
        self.assertEqual(unamb.request_uri.host, "[2001:db8::10]")

    def test_received_both_forms(self) -> None:
        """
        received= with and without brackets both parse (RFC 5118 s4.5).
        """
        for name in ("via-received-param-with-delim", "via-received-param-no-delim"):
            msg = parse(_fix_length((DATA / "rfc5118" / (name + ".sip")).read_bytes()))
            self.assertIn("2001:db8::9:255", msg.top_via.param("received"))
