# -*- test-case-name: tests.sip.test_shed -*-
"""
L{aiconnect.sip.shed}: the raw header scan of an INVITE or ACK datagram,
the stateless answer (byte for byte what the full path sends), the To tags
and the table of answers sent; and the transport's C{shed} hook.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.sip.branches import server_key
from aiconnect.sip.message import Message, Request, Response, make_response, parse
from aiconnect.sip.peer import Peer
from aiconnect.sip.shed import DROP, Answer, Head, StatelessAnswers, answer, scan
from aiconnect.sip.transport import SipTransport, _SipDatagramProtocol
from aiconnect.sip.uri import parse_via

#: The source of the requests below.
SOURCE = Peer("udp", "192.0.2.7", 40123)
TOP = "SIP/2.0/UDP src.example.com:5070;branch=z9hG4bK74bf9;rport"
HEADERS = [
    "Via: " + TOP,
    "Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK2",
    "Max-Forwards: 70",
    "From: Alice <sip:alice@example.com>;tag=9fxced76sl",
    "To: <sip:recorder@example.com>",
    "Call-ID: 3848276298220188511@src.example.com",
    "CSeq: 1 INVITE",
    "Contact: <sip:alice@src.example.com:5070>;+sip.src",
    "Require: siprec",
    "Content-Type: application/sdp",
    "Content-Length: 4",
]
RETRY = [("Retry-After", "2"), ("Server", "aiconnect/test")]
REASON = "Service Unavailable (overload)"


def request(
    headers: list[str] = HEADERS, start: str = "INVITE sip:recorder@example.com SIP/2.0", eol: str = "\r\n"
) -> bytes:
    """
    A request datagram with these header lines and the body C{v=0\\n}.
    """
    return (eol.join([start] + headers) + eol + eol + "v=0\n").encode()


def edited(**changes: str | None) -> list[str]:
    """
    L{HEADERS} with the line of each named header (C{call_id} for
    Call-ID, C{from_} for From) replaced, or removed when L{None}.
    """
    changes = {name.rstrip("_"): line for name, line in changes.items()}
    out = []
    for line in HEADERS:
        name = line.split(":", 1)[0].lower().replace("-", "_")
        if name in changes:
            if changes[name] is not None:
                out.append(changes[name])  # type: ignore[arg-type]
        else:
            out.append(line)
    return out


def full_path(data: bytes, tag: str, source: Peer = SOURCE, force_rport: bool = True) -> bytes:
    """
    The 503 the full path sends for C{data}: parsed, its top Via stamped
    by the transport, answered by L{make_response} with our headers.
    """
    req = parse(data)
    assert isinstance(req, Request)
    SipTransport(Clock(), force_rport=force_rport)._stamp_via(req, source)
    return make_response(req, 503, REASON, to_tag=tag, headers=RETRY).to_bytes()


def shed_answer(data: bytes, tag: str = "t1", source: Peer = SOURCE) -> bytes:
    """
    The stateless answer to C{data} (which must scan).
    """
    head = scan(data, "INVITE")
    assert head is not None
    return answer(head, source.host, source.port, 503, REASON, tag, RETRY).data


class ScanTests(SynchronousTestCase):
    """
    L{scan} reads Via, From, To, Call-ID and CSeq of a plain request, and
    gives up (L{None}: the full path) on anything else.
    """

    def test_reads_the_headers(self) -> None:
        """
        The values are read as written, Via lines in order, the top Via
        parsed.
        """
        head = scan(request(), "INVITE")
        assert head is not None
        self.assertEqual(head.vias, (TOP, "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK2"))
        self.assertEqual(head.top, parse_via(TOP))
        self.assertEqual(head.branch, "z9hG4bK74bf9")
        self.assertEqual(head.from_, "Alice <sip:alice@example.com>;tag=9fxced76sl")
        self.assertEqual(head.to, "<sip:recorder@example.com>")
        self.assertIsNone(head.to_tag)
        self.assertEqual(head.call_id, "3848276298220188511@src.example.com")
        self.assertEqual((head.cseq, head.cseq_number), ("1 INVITE", 1))

    def test_compact_forms_and_case(self) -> None:
        """
        Header names match case-insensitively, compact forms (v, f, t, i)
        included: the same head as the long forms.
        """
        compact = edited(
            via=None,
            from_=None,
            to="t: <sip:recorder@example.com>",
            call_id="i: 3848276298220188511@src.example.com",
            cseq="CSEQ: 1 INVITE",
        )
        compact = ["v: " + TOP, "VIA: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK2"] + compact
        compact.append("f: Alice <sip:alice@example.com>;tag=9fxced76sl")
        self.assertEqual(scan(request(compact), "INVITE"), scan(request(), "INVITE"))

    def test_unfolds_continuation_lines(self) -> None:
        """
        A value folded over several lines is read unfolded, as the parser
        reads it.
        """
        folded = edited(from_="From: Alice\r\n  <sip:alice@example.com>\r\n\t;tag=9fxced76sl")
        head = scan(request(folded), "INVITE")
        assert head is not None
        self.assertEqual(head.from_, "Alice <sip:alice@example.com> ;tag=9fxced76sl")
        self.assertEqual(head.from_, parse(request(folded)).headers.get("From"))

    def test_bare_lf(self) -> None:
        """
        Bare LF line ends are read as CRLF ones.
        """
        self.assertEqual(scan(request(eol="\n"), "INVITE"), scan(request(), "INVITE"))

    def test_to_tag_is_not_new(self) -> None:
        """
        An INVITE whose To has a tag (a re-INVITE in a dialog) is never
        answered here; an ACK's To tag is read.
        """
        tagged = edited(to="To: <sip:recorder@example.com>;tag=abc")
        self.assertIsNone(scan(request(tagged), "INVITE"))
        self.assertIsNone(scan(request(edited(to="To: sip:recorder@example.com ; TAG = abc")), "INVITE"))
        ack = scan(request(tagged + [], start="ACK sip:recorder@example.com SIP/2.0").replace(b"1 INVITE", b"1 ACK"), "ACK")
        assert ack is not None
        self.assertEqual(ack.to_tag, "abc")

    def test_tag_inside_brackets_is_a_uri_parameter(self) -> None:
        """
        C{;tag=} inside C{<...>} (or inside a quoted display name) is not
        the To header's tag: the INVITE is new.
        """
        for to in ('To: <sip:recorder@example.com;tag=abc>', 'To: "x;tag=1" <sip:recorder@example.com>'):
            head = scan(request(edited(to=to)), "INVITE")
            assert head is not None, to
            self.assertIsNone(head.to_tag)

    def test_left_to_the_full_path(self) -> None:
        """
        Missing, repeated or malformed headers, another method, another
        version, an RFC 2543 branch, a truncated header section: L{None}.
        """
        cases = {
            "no Call-ID": request(edited(call_id=None)),
            "empty Call-ID": request(edited(call_id="Call-ID: ")),
            "no Via": request(edited(via=None)),
            "no From": request(edited(from_=None)),
            "two To": request(HEADERS + ["t: <sip:other@example.com>"]),
            "two CSeq": request(HEADERS + ["CSeq: 2 INVITE"]),
            "CSeq ACK": request(edited(cseq="CSeq: 1 ACK")),
            "bad CSeq": request(edited(cseq="CSeq: one INVITE")),
            "bad top Via": request(["Via: SIP/2.0/UDP"] + HEADERS[1:]),
            "bad To": request(edited(to="To: <sip:recorder@example.com")),
            "RFC 2543 branch": request(["Via: SIP/2.0/UDP src.example.com;branch=1"] + HEADERS[1:]),
            "no branch": request(["Via: SIP/2.0/UDP src.example.com"] + HEADERS[1:]),
            "OPTIONS": request(edited(cseq="CSeq: 1 OPTIONS"), start="OPTIONS sip:recorder@example.com SIP/2.0"),
            "SIP/3.0": request(start="INVITE sip:recorder@example.com SIP/3.0"),
            "two spaces": request(start="INVITE  sip:recorder@example.com SIP/2.0"),
            "leading fold": request(start="INVITE sip:recorder@example.com SIP/2.0\r\n continued"),
            "no blank line": request().split(b"\r\n\r\n")[0],
        }
        for what, data in cases.items():
            self.assertIsNone(scan(data, "INVITE"), what)

    def test_server_key(self) -> None:
        """
        L{Head.server_key} is the key the transaction layer files the
        request under (L{server_key}), for an INVITE and its ACK.
        """
        data = request()
        head = scan(data, "INVITE")
        assert head is not None
        self.assertEqual(head.server_key(), server_key(parse(data)))  # type: ignore[arg-type]
        ack = request(start="ACK sip:recorder@example.com SIP/2.0").replace(b"1 INVITE", b"1 ACK")
        ack_head = scan(ack, "ACK")
        assert ack_head is not None
        self.assertEqual(ack_head.server_key(), server_key(parse(ack)))  # type: ignore[arg-type]


class AnswerTests(SynchronousTestCase):
    """
    L{answer} is the full path's 503, octet for octet.
    """

    def test_same_as_the_full_path(self) -> None:
        """
        For plain, compact, folded and bare-LF INVITEs, with or without
        C{rport}, with a forged C{received}: the octets the full path
        sends.
        """
        cases = [
            request(),
            request(eol="\n"),
            request(["v: SIP/2.0/UDP src.example.com;branch=z9hG4bK1", "f: <sip:a@b>;tag=1", "t: <sip:c@d>", "i: x@y", "CSeq: 7 INVITE"]),
            request(edited(from_="From: Alice\r\n  <sip:alice@example.com>\r\n\t;tag=9fxced76sl")),
            request(["Via: SIP/2.0/UDP src.example.com:5070;received=203.0.113.9;rport=9;branch=z9hG4bK3"] + HEADERS[1:]),
            request(["Via: SIP/2.0/UDP src.example.com:5070;branch=z9hG4bK3"] + HEADERS[1:]),
            request(["Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK4, SIP/2.0/UDP 10.0.0.3;branch=z9hG4bK5"] + HEADERS),
            request(edited(to='To: "Rec" <sip:recorder@example.com;tag=x>')),
        ]
        for data in cases:
            self.assertEqual(shed_answer(data, "t1"), full_path(data, "t1"), data[:80])

    def test_vias_in_order_top_stamped(self) -> None:
        """
        Every Via value is copied in order, comma-joined ones included;
        only the top one is stamped: a forged C{received} and C{rport} value
        are replaced by the source's.
        """
        vias = [
            "Via: SIP/2.0/UDP src.example.com:5070;received=203.0.113.9;rport=9;branch=z9hG4bKa, SIP/2.0/TCP p1;branch=z9hG4bKb",
            "v: SIP/2.0/UDP p2:5062;branch=z9hG4bKc",
            "Via: SIP/2.0/UDP p3;branch=z9hG4bKd,SIP/2.0/UDP p4;branch=z9hG4bKe",
        ]
        resp = parse(shed_answer(request(vias + HEADERS[2:])))
        assert isinstance(resp, Response)
        self.assertEqual(
            [str(v) for v in resp.vias],
            [
                "SIP/2.0/UDP src.example.com:5070;branch=z9hG4bKa;received=192.0.2.7;rport=40123",
                "SIP/2.0/TCP p1;branch=z9hG4bKb",
                "SIP/2.0/UDP p2:5062;branch=z9hG4bKc",
                "SIP/2.0/UDP p3;branch=z9hG4bKd",
                "SIP/2.0/UDP p4;branch=z9hG4bKe",
            ],
        )

    def test_rport_only_when_asked(self) -> None:
        """
        Without C{rport} in the top Via, none is added; C{received} is.
        """
        resp = parse(shed_answer(request(["Via: SIP/2.0/UDP src.example.com;branch=z9hG4bK3"] + HEADERS[1:])))
        self.assertEqual(str(resp.top_via), "SIP/2.0/UDP src.example.com;branch=z9hG4bK3;received=192.0.2.7")

    def test_headers(self) -> None:
        """
        The answer reads back as a 503 with our To tag, the request's
        From, Call-ID and CSeq, the extra headers and no body.
        """
        resp = parse(shed_answer(request(), "mytag"))
        assert isinstance(resp, Response)
        self.assertEqual((resp.status, resp.reason), (503, REASON))
        self.assertEqual(resp.to_tag, "mytag")
        self.assertEqual(resp.from_tag, "9fxced76sl")
        self.assertEqual(resp.call_id, "3848276298220188511@src.example.com")
        self.assertEqual(str(resp.cseq), "1 INVITE")
        self.assertEqual(resp.headers.get("Retry-After"), "2")
        self.assertEqual(resp.headers.get("Server"), "aiconnect/test")
        self.assertEqual((resp.headers.get("Content-Length"), resp.body), ("0", b""))


def ack_for(data: bytes, response: bytes) -> bytes:
    """
    The ACK of a non-2xx answer (RFC 3261 s17.1.1.3): the INVITE's Via,
    From, Call-ID and CSeq number, the answer's To.
    """
    resp = parse(response)
    lines = [line for line in data.split(b"\r\n\r\n")[0].split(b"\r\n") if not line.startswith((b"To:", b"Content"))]
    lines[0] = lines[0].replace(b"INVITE ", b"ACK ", 1)
    lines = [line.replace(b"1 INVITE", b"1 ACK") for line in lines]
    lines.append(b"To: " + (resp.headers.get("To") or "").encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


class StatelessAnswersTests(SynchronousTestCase):
    """
    L{StatelessAnswers}: To tags whose ACK is recognised, and the answers
    sent, bounded.
    """

    def head(self, call_id: str = "c1", branch: str = "z9hG4bK1") -> Head:
        data = request(
            edited(call_id="Call-ID: " + call_id, via="Via: SIP/2.0/UDP src.example.com;branch=%s;rport" % (branch,))
        )
        head = scan(data, "INVITE")
        assert head is not None
        return head

    def test_tags(self) -> None:
        """
        A tag starts with the marker, is the same for the same Call-ID and
        branch, and differs when either differs or in another process.
        """
        answers = StatelessAnswers(marker="m4rk")
        tag = answers.tag(self.head())
        self.assertTrue(tag.startswith("m4rk"))
        self.assertEqual(tag, answers.tag(self.head()))
        self.assertNotEqual(tag, answers.tag(self.head(call_id="c2")))
        self.assertNotEqual(tag, answers.tag(self.head(branch="z9hG4bK2")))
        self.assertNotEqual(tag, StatelessAnswers().tag(self.head()))

    def test_ack_recognised(self) -> None:
        """
        The ACK of an answer is recognised; an ACK with another tag, or
        of another INVITE, is not.
        """
        answers = StatelessAnswers()
        data = request()
        head = scan(data, "INVITE")
        assert head is not None
        sent = answers.answer(head, SOURCE.host, SOURCE.port, 503, REASON, RETRY)
        ack = scan(ack_for(data, sent.data), "ACK")
        assert ack is not None
        self.assertTrue(answers.acknowledges(ack))
        other = scan(ack_for(data, sent.data).replace(b"tag=" + answers.marker.encode(), b"tag=x"), "ACK")
        assert other is not None
        self.assertFalse(answers.acknowledges(other))
        moved = scan(ack_for(data, sent.data).replace(b"Call-ID: 38", b"Call-ID: 39"), "ACK")
        assert moved is not None
        self.assertFalse(answers.acknowledges(moved))
        self.assertFalse(StatelessAnswers().acknowledges(ack))

    def test_sent_remembered_per_source(self) -> None:
        """
        The answer to an INVITE is found again for the same INVITE from
        the same source only.
        """
        answers = StatelessAnswers()
        head = self.head()
        sent = answers.answer(head, "192.0.2.7", 5060, 503, REASON, RETRY)
        self.assertIs(answers.sent(self.head(), "192.0.2.7", 5060), sent)
        self.assertIsNone(answers.sent(head, "192.0.2.7", 5061))
        self.assertIsNone(answers.sent(head, "192.0.2.8", 5060))
        self.assertIsNone(answers.sent(self.head(branch="z9hG4bK2"), "192.0.2.7", 5060))

    def test_bounded(self) -> None:
        """
        Beyond C{cap} answers, the oldest is forgotten first.
        """
        answers = StatelessAnswers(cap=2)
        heads = [self.head(call_id="c%d" % (i,)) for i in range(3)]
        for head in heads:
            answers.answer(head, "192.0.2.7", 5060, 503, REASON)
        self.assertEqual(len(answers), 2)
        self.assertIsNone(answers.sent(heads[0], "192.0.2.7", 5060))
        self.assertIsNotNone(answers.sent(heads[2], "192.0.2.7", 5060))


class _Receiver:
    """
    Records the messages the transport passes up.
    """

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def message_received(self, message: Message, source: Peer) -> None:
        self.messages.append(message)


class TransportHookTests(SynchronousTestCase):
    """
    L{SipTransport.shed}: asked about each datagram before its parse; an
    answer goes where RFC 3261 s18.2.2 / RFC 3581 s4 say, never where the
    peer wrote.
    """

    def setUp(self) -> None:
        self.receiver = _Receiver()
        self.decisions: list[Any] = []
        self.asked: list[tuple[bytes, Peer]] = []

    def transport(self, force_rport: bool = False) -> tuple[SipTransport, FakeDatagramTransport]:
        layer = SipTransport(Clock(), self.receiver, force_rport=force_rport)  # type: ignore[arg-type]
        proto = _SipDatagramProtocol(layer)
        fake = FakeDatagramTransport()
        proto.makeConnection(fake)  # type: ignore[arg-type]
        layer._udp = proto

        def shed(data: bytes, peer: Peer) -> Any:
            self.asked.append((data, peer))
            return self.decisions.pop(0)

        layer.shed = shed
        return layer, fake

    def deliver(self, layer: SipTransport, data: bytes = b"INVITE x") -> None:
        assert layer._udp is not None
        layer.datagram_received(layer._udp, data, ("192.0.2.7", 40123))

    def test_answer_sent_to_the_source(self) -> None:
        """
        An answer whose Via has C{rport} (or with C{force_rport}) goes to
        the source address and port; without, to the source address at
        the Via's port (5060 when it has none). It is counted as received
        and sent, and nothing is parsed.
        """
        cases = [
            ("SIP/2.0/UDP 203.0.113.9:7000;branch=z9hG4bK1;rport=40123;received=192.0.2.7", False, 40123),
            ("SIP/2.0/UDP 203.0.113.9:7000;branch=z9hG4bK1;received=192.0.2.7", True, 40123),
            ("SIP/2.0/UDP 203.0.113.9:7000;branch=z9hG4bK1;received=192.0.2.7", False, 7000),
            ("SIP/2.0/UDP 203.0.113.9;branch=z9hG4bK1;received=192.0.2.7", False, 5060),
        ]
        for via, force, port in cases:
            layer, fake = self.transport(force_rport=force)
            self.decisions.append(Answer(b"SIP/2.0 503 x\r\n\r\n", parse_via(via)))
            self.deliver(layer)
            self.assertEqual(fake.written, [(b"SIP/2.0 503 x\r\n\r\n", ("192.0.2.7", port))], via)
            self.assertEqual((layer.stats["received"], layer.stats["sent"]), (1, 1))
        self.assertEqual(self.asked[0], (b"INVITE x", Peer("udp", "192.0.2.7", 40123)))
        self.assertEqual(self.receiver.messages, [])

    def test_drop(self) -> None:
        """
        L{DROP}: nothing sent, nothing parsed, counted as received.
        """
        layer, fake = self.transport()
        self.decisions.append(DROP)
        self.deliver(layer)
        self.assertEqual((fake.written, self.receiver.messages), ([], []))
        self.assertEqual(layer.stats["received"], 1)

    def test_none_goes_on(self) -> None:
        """
        L{None}: the datagram takes the full path; without a hook it is
        not asked at all.
        """
        layer, fake = self.transport()
        self.decisions.append(None)
        self.deliver(layer, request())
        self.assertEqual([m.call_id for m in self.receiver.messages], ["3848276298220188511@src.example.com"])
        layer.shed = None
        self.deliver(layer, request())
        self.assertEqual(len(self.receiver.messages), 2)
        self.assertEqual(len(self.asked), 1)

    def test_failure_goes_on(self) -> None:
        """
        A hook that raises is logged and the datagram takes the full path.
        """
        layer, fake = self.transport()
        self.decisions.append(None)
        self.decisions.clear()  # pop() from an empty list: IndexError
        self.deliver(layer, request())
        self.assertEqual(len(self.flushLoggedErrors(IndexError)), 1)
        self.assertEqual(len(self.receiver.messages), 1)
