"""
Tests for the hardening of L{aiconnect.sip.transport} and the stream framer
of L{aiconnect.sip.message}: C{received}/C{rport} and response routing
(no reflection through the Via), the connection limits and timers of
C{[limits]} on a L{task.Clock}, one header parse per stream message, and
numeric fields too long for C{int()}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.error import MessageLengthError
from twisted.internet.testing import FakeDatagramTransport, MemoryReactorClock, StringTransportWithDisconnection
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.sip import message
from aiconnect.sip.message import Message, Request, SipParseError, StreamFramer, make_response, parse, parse_cseq
from aiconnect.sip.peer import ConnectionLimits, Peer
from aiconnect.sip.transport import SipStreamProtocol, SipTransport, _SipDatagramProtocol

OPTIONS = (
    "OPTIONS sip:srs@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/{transport} {via}\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:src@127.0.0.1>;tag=f1\r\n"
    "To: <sip:srs@127.0.0.1>\r\n"
    "Call-ID: {call_id}\r\n"
    "CSeq: {cseq} OPTIONS\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
)


def options(
    via: str = "127.0.0.1:5999;branch=z9hG4bKa1", transport: str = "UDP", call_id: str = "c1", cseq: str = "1"
) -> bytes:
    """
    @return: An OPTIONS request with the given top Via (after the transport).
    """
    return OPTIONS.format(via=via, transport=transport, call_id=call_id, cseq=cseq).encode()


class Recorder:
    """
    A L{MessageReceiver} keeping what it gets.
    """

    def __init__(self) -> None:
        """
        Start empty.
        """
        self.messages: list[tuple[Message, Peer]] = []

    def message_received(self, msg: Message, source: Peer) -> None:
        """
        Keep C{msg} and C{source}.
        """
        self.messages.append((msg, source))


class FramerWorkTests(SynchronousTestCase):
    """
    L{StreamFramer} parses each message's header once, however it is cut.
    """

    def _spy(self, name: str) -> list[int]:
        """
        Count the calls of C{message.<name>}.
        """
        calls: list[int] = []
        real = getattr(message, name)

        def spy(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            return real(*args, **kwargs)

        self.patch(message, name, spy)
        return calls

    def test_header_parsed_once(self) -> None:
        """
        A 60 KB header fed in 1 KB pieces, then a 10 KB body fed one octet at
        a time, give one frame with one header parse and one Content-Length
        parse (the issue measured 1.1 ms per body octet re-parsing it).
        """
        header_calls = self._spy("header_lines")
        clen_calls = self._spy("content_length")
        pad = "".join("X-Pad-%d: %s\r\n" % (i, "p" * 50) for i in range(1000))
        body = b"b" * 10000
        msg = options().replace(b"Content-Length: 0\r\n\r\n", b"") + pad.encode()
        msg += b"Content-Length: 10000\r\n\r\n" + body
        head_len = msg.index(b"\r\n\r\n") + 4
        self.assertGreater(head_len, 60000)
        framer = StreamFramer(max_size=128 * 1024)
        frames: list[bytes] = []
        for i in range(0, head_len, 1024):
            frames += framer.feed(msg[i : min(i + 1024, head_len)])
        for i in range(head_len, len(msg)):
            frames += framer.feed(msg[i : i + 1])
        self.assertEqual(frames, [msg])
        self.assertEqual(len(header_calls), 1)
        self.assertEqual(len(clen_calls), 1)
        self.assertEqual(framer.buffered, 0)

    def test_end_of_header_split_across_reads(self) -> None:
        """
        The resumed search finds a CRLFCRLF (or a bare-LF empty line) cut in
        every possible place between two reads.
        """
        for msg in (options(), options().replace(b"\r\n", b"\n")):
            end = msg.index(b"\n\n") if b"\r" not in msg else msg.index(b"\r\n\r\n")
            for cut in range(end - 2, end + 4):
                framer = StreamFramer()
                frames = framer.feed(msg[:cut]) + framer.feed(msg[cut:] + msg)
                self.assertEqual(frames, [msg, msg], (cut, msg[:12]))

    def test_keepalive_then_message_in_pieces(self) -> None:
        """
        A CRLFCRLF ping, then a message with a body dripped in, then
        another message in the same read.
        """
        framer = StreamFramer()
        with_body = options().replace(b"Content-Length: 0", b"Content-Length: 3") + b"abc"
        out = framer.feed(b"\r\n\r\n" + with_body[:20])
        self.assertEqual(out, [message.KEEPALIVE])
        out = framer.feed(with_body[20:-1])
        self.assertEqual(out, [])
        out = framer.feed(with_body[-1:] + options()[:5])
        self.assertEqual(out, [with_body])
        self.assertEqual(framer.feed(options()[5:]), [options()])


class NumberLimitTests(SynchronousTestCase):
    """
    Numeric header fields longer than Python's C{int()} digit limit (4300)
    or written with non-ASCII digits are a clean 400, not a C{ValueError}.
    """

    def test_cseq_4301_digits(self) -> None:
        """
        A CSeq number of 4,301 digits is 400 "CSeq out of range", with the
        partial request kept for the stateless answer.
        """
        error = self.assertRaises(SipParseError, parse, options(cseq="1" * 4301))
        self.assertEqual(error.status_hint, 400)
        self.assertIsNotNone(error.partial)
        self.assertTrue(error.is_request)

    def test_cseq_leading_zeros(self) -> None:
        """
        Leading zeros do not count against the length (1*DIGIT allows them):
        5,000 zeros then 7 is CSeq 7.
        """
        self.assertEqual(parse_cseq("0" * 5000 + "7 INVITE").number, 7)

    def test_non_ascii_digits(self) -> None:
        """
        A superscript digit passes C{str.isdigit} but not C{int()}: 400 in
        CSeq and in Max-Forwards.
        """
        error = self.assertRaises(SipParseError, parse, options(cseq="\u00b2"))
        self.assertEqual(error.status_hint, 400)
        bad_mf = options().replace(b"Max-Forwards: 70", "Max-Forwards: \u00b2".encode())
        error = self.assertRaises(SipParseError, parse, bad_mf)
        self.assertEqual(error.status_hint, 400)

    def test_non_ascii_port(self) -> None:
        """
        A port of non-ASCII digits (in the Via, the Request-URI or From,
        where the URI parser calls C{int()}) is a 400 with the partial
        request, and in a response a dropped response.
        """
        for old, new in (
            (b"127.0.0.1:5999;", "127.0.0.1:\u00b2;".encode()),
            (b"sip:srs@127.0.0.1 ", "sip:srs@127.0.0.1:\u00b2 ".encode()),
            (b"<sip:src@127.0.0.1>", "<sip:src@127.0.0.1:\u00b2>".encode()),
        ):
            error = self.assertRaises(SipParseError, parse, options().replace(old, new, 1))
            self.assertEqual(error.status_hint, 400, old)
            self.assertIsNotNone(error.partial)
        response = make_response(parse(options()), 200).to_bytes()
        error = self.assertRaises(SipParseError, parse, response.replace(b"127.0.0.1:5999;", "127.0.0.1:\u00b2;".encode()))
        self.assertIs(error.is_request, False)

    def test_response_with_bad_from_dropped(self) -> None:
        """
        A response whose From or To cannot be read is a parse error of a
        response (dropped by the transport), not a message for the TU.
        """
        response = make_response(parse(options()), 200).to_bytes()
        for bad in (
            response.replace(b"From: <sip:src@127.0.0.1>", b"From: garbage<<"),
            response.replace(b"To: <sip:srs@127.0.0.1>", b"To: garbage<<"),
        ):
            error = self.assertRaises(SipParseError, parse, bad)
            self.assertIs(error.is_request, False)


class _Layer(SynchronousTestCase):
    """
    A L{SipTransport} on a L{MemoryReactorClock} with small limits.
    """

    def setUp(self) -> None:
        """
        Build the transport and a recording receiver.
        """
        self.reactor = MemoryReactorClock()
        self.receiver = Recorder()
        self.layer = self.make_layer()

    def make_layer(self, **limits: Any) -> SipTransport:
        """
        @return: A transport with C{limits} over small test defaults.
        """
        values: dict[str, Any] = {
            "max_connections": 3,
            "tls_handshake_timeout": 0.3,
            "header_timeout": 2.0,
            "idle_timeout": 10.0,
        }
        values.update(limits)
        return SipTransport(self.reactor, self.receiver, limits=ConnectionLimits(**values))

    def connect(
        self, transport_name: str = "tcp", port: int = 40000, outbound: bool = False, layer: SipTransport | None = None
    ) -> tuple[SipStreamProtocol, StringTransportWithDisconnection]:
        """
        @return: A stream protocol connected to a fake transport from 127.0.0.1:C{port}.
        """
        proto = SipStreamProtocol(layer or self.layer, transport_name, outbound)
        transport = StringTransportWithDisconnection(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        transport.protocol = proto
        proto.makeConnection(transport)
        return proto, transport

    def udp(self) -> FakeDatagramTransport:
        """
        Give the transport a fake UDP socket.

        @return: The fake, recording what is written.
        """
        proto = _SipDatagramProtocol(self.layer)
        fake = FakeDatagramTransport()
        proto.makeConnection(fake)  # type: ignore[arg-type]
        self.layer._udp = proto
        return fake


class StreamTimerTests(_Layer):
    """
    The C{idle_timeout}, C{header_timeout} and C{tls_handshake_timeout}
    timers of L{SipStreamProtocol}, and C{max_connections}.
    """

    def test_idle_not_reset_by_partial_bytes(self) -> None:
        """
        Octets of a message that never completes do not keep a connection
        alive: it is closed C{idle_timeout} after the last complete message
        (here: its opening), even when they keep arriving.
        """
        layer = self.make_layer(header_timeout=100.0)
        proto, transport = self.connect(layer=layer)
        data = options()
        for i in range(9):
            self.reactor.advance(1.0)
            proto.dataReceived(data[i : i + 1])
        self.assertTrue(transport.connected)
        self.reactor.advance(1.0)
        self.assertFalse(transport.connected)
        self.assertEqual(layer.stats["idle_timeouts"], 1)

    def test_idle_not_reset_by_keepalives(self) -> None:
        """
        CRLFCRLF pings are answered but do not reset the idle timer.
        """
        proto, transport = self.connect()
        for _ in range(3):
            self.reactor.advance(3.0)
            proto.dataReceived(b"\r\n\r\n")
        self.assertEqual(transport.value(), b"\r\n" * 3)
        self.assertTrue(transport.connected)
        self.reactor.advance(1.0)
        self.assertFalse(transport.connected)
        self.assertEqual(self.layer.stats["idle_timeouts"], 1)

    def test_idle_reset_by_messages(self) -> None:
        """
        A complete message received, or one sent, restarts the idle timer.
        """
        proto, transport = self.connect()
        self.reactor.advance(6.0)
        proto.dataReceived(options(transport="TCP"))
        self.assertEqual(len(self.receiver.messages), 1)
        self.reactor.advance(6.0)
        proto.write_message(b"OPTIONS ...")
        self.reactor.advance(9.0)
        self.assertTrue(transport.connected)
        self.reactor.advance(1.0)
        self.assertFalse(transport.connected)

    def test_header_timeout(self) -> None:
        """
        A message dripped in slower than C{header_timeout} closes the
        connection when the deadline passes, counted in C{header_timeouts}.
        """
        proto, transport = self.connect()
        data = options(transport="TCP")
        for i in range(4):
            proto.dataReceived(data[i : i + 1])
            self.reactor.advance(0.45)
        self.assertTrue(transport.connected)
        self.reactor.advance(0.2)
        self.assertFalse(transport.connected)
        self.assertTrue(transport.disconnected)
        self.assertEqual(self.layer.stats["header_timeouts"], 1)
        self.assertEqual(self.receiver.messages, [])

    def test_header_timeout_per_message(self) -> None:
        """
        The deadline covers one message: completing it stops the timer, and
        the next message (started in the same read) gets a deadline of its own.
        """
        proto, transport = self.connect()
        first = options(transport="TCP")
        second = options(transport="TCP", call_id="c2")
        proto.dataReceived(first[:10])
        self.reactor.advance(1.5)
        proto.dataReceived(first[10:] + second[:10])
        self.reactor.advance(1.5)
        self.assertTrue(transport.connected)
        proto.dataReceived(second[10:])
        self.reactor.advance(5.0)
        self.assertTrue(transport.connected)
        self.assertEqual(len(self.receiver.messages), 2)
        self.assertEqual(self.layer.stats["header_timeouts"], 0)

    def test_tls_handshake_timeout(self) -> None:
        """
        An inbound TLS connection that has not completed its handshake
        after C{tls_handshake_timeout} is closed and counted.
        """
        _, transport = self.connect("tls")
        self.reactor.advance(0.29)
        self.assertTrue(transport.connected)
        self.reactor.advance(0.02)
        self.assertFalse(transport.connected)
        self.assertEqual(self.layer.stats["tls_handshake_timeouts"], 1)

    def test_tls_handshake_in_time(self) -> None:
        """
        A handshake completed in time stops that timer.
        """
        proto, transport = self.connect("tls")
        self.reactor.advance(0.1)
        proto.handshakeCompleted()
        self.reactor.advance(1.0)
        self.assertTrue(transport.connected)
        self.assertEqual(self.layer.stats["tls_handshake_timeouts"], 0)

    def test_max_connections(self) -> None:
        """
        Beyond C{max_connections} inbound TCP+TLS connections, a new one is
        closed at once and counted; outbound ones do not count; a closed
        connection frees its place.
        """
        first = [self.connect("tcp", 40001), self.connect("tls", 40002), self.connect("tcp", 40003)]
        _, out_transport = self.connect("tcp", 5060, outbound=True)
        proto, extra = self.connect("tcp", 40004)
        self.assertTrue(extra.disconnected)
        self.assertTrue(proto.refused)
        self.assertEqual([t.connected for _, t in first], [True, True, True])
        self.assertTrue(out_transport.connected)
        self.assertEqual(self.layer.stats["connections_refused"], 1)
        self.assertEqual(self.layer.stats["inbound_connections"], 3)
        first[0][1].loseConnection()
        _, again = self.connect("tcp", 40005)
        self.assertTrue(again.connected)
        self.assertEqual(self.layer.stats["connections_refused"], 1)

    def test_refusals_logged_rate_limited(self) -> None:
        """
        Refusals are logged at warn level naming C{limits.max_connections},
        at most one line per 10 s; the counter counts each.
        """
        self.layer = self.make_layer(idle_timeout=100.0)
        for port in (40001, 40002, 40003):
            self.connect("tcp", port)
        with capturedLogs() as events:
            for port in (40004, 40005):
                self.connect("tcp", port)
            self.reactor.advance(10.0)
            self.connect("tcp", 40006)
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 2)
        self.assertIn("limits.max_connections", warnings[0]["log_format"])
        self.assertEqual(self.layer.stats["connections_refused"], 3)

    def test_refused_connection_reads_nothing(self) -> None:
        """
        Octets arriving on a refused connection (before the close takes
        effect) are not parsed.
        """
        for port in (40001, 40002, 40003):
            self.connect("tcp", port)
        proto, _ = self.connect("tcp", 40004)
        proto.dataReceived(options(transport="TCP"))
        self.assertEqual(self.receiver.messages, [])


class ReceivedTests(_Layer):
    """
    C{received} and C{rport} are the packet's source, and responses go only
    there (no reflection to an address the client wrote).
    """

    def make_layer(self, **limits: Any) -> SipTransport:
        """
        @return: A transport with the default limits.
        """
        return SipTransport(self.reactor, self.receiver)

    def test_client_received_overwritten(self) -> None:
        """
        A C{received} written by the client is replaced by the source
        address even when the Via host is that address.
        """
        self.layer.data_received(
            options(via="127.0.0.1:5999;received=127.0.0.9;branch=z9hG4bKa1"),
            Peer("udp", "127.0.0.1", 5999),
            datagram=True,
        )
        [(msg, _)] = self.receiver.messages
        self.assertEqual(msg.top_via.param("received"), "127.0.0.1")

    def test_rport_value_overwritten(self) -> None:
        """
        An C{rport} value written by the client is replaced by the source port.
        """
        self.layer.data_received(
            options(via="127.0.0.1:5999;rport=7777;branch=z9hG4bKa1"), Peer("udp", "127.0.0.1", 6000), datagram=True
        )
        [(msg, _)] = self.receiver.messages
        self.assertEqual(msg.top_via.param("rport"), "6000")

    def _respond(self, via: str, source: Peer, force_rport: bool = True) -> list[Any]:
        """
        Answer a request carrying C{via} from C{source}.

        @return: The datagrams written, as C{(data, addr)}.
        """
        self.layer.force_rport = force_rport
        fake = self.udp()
        request = parse(options(via=via))
        assert isinstance(request, Request)
        self.successResultOf(self.layer.send_response(make_response(request, 200), source))
        return fake.written

    def test_udp_response_to_source_not_received(self) -> None:
        """
        A response never goes to the C{received}/C{rport} of the Via: only
        to the packet's source.
        """
        written = self._respond(
            "127.0.0.1:5999;received=127.0.0.9;rport=7777;branch=z9hG4bKa1", Peer("udp", "127.0.0.1", 5999)
        )
        self.assertEqual([addr for _, addr in written], [("127.0.0.1", 5999)])

    def test_udp_response_not_to_via_host(self) -> None:
        """
        Without C{received}, the Via host is not trusted either.
        """
        written = self._respond("192.0.2.50:5070;branch=z9hG4bKa1", Peer("udp", "127.0.0.1", 5999), force_rport=False)
        self.assertEqual([addr for _, addr in written], [("127.0.0.1", 5070)])

    def test_sent_by_port_without_rport(self) -> None:
        """
        With C{force_rport = false} and no C{rport}, the Via sent-by port is
        used (RFC 3261 s18.2.2), still at the source host; with C{rport} the
        source port.
        """
        source = Peer("udp", "127.0.0.1", 5999)
        written = self._respond("127.0.0.1:5070;received=127.0.0.9;branch=z9hG4bKa1", source, force_rport=False)
        self.assertEqual([addr for _, addr in written], [("127.0.0.1", 5070)])
        written = self._respond("127.0.0.1:5070;rport;branch=z9hG4bKa1", source, force_rport=False)
        self.assertEqual(written[-1][1], ("127.0.0.1", 5999))

    def test_tcp_connection_gone_no_connect(self) -> None:
        """
        Over TCP, when the request's connection has closed, the response is
        dropped and counted: no connection is opened to the Via (nor to
        anywhere else), and the Deferred fails for the transaction layer.
        """
        proto, transport = self.connect("tcp", 40001)
        source = proto.peer
        assert source is not None
        transport.loseConnection()
        request = parse(options(via="127.0.0.9:5060;received=127.0.0.9;branch=z9hG4bKa1", transport="TCP"))
        assert isinstance(request, Request)
        failure = self.failureResultOf(self.layer.send_response(make_response(request, 200), source))
        self.assertIn("closed", failure.getErrorMessage())
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertEqual(self.layer.stats["responses_connection_gone"], 1)

    def test_tcp_response_on_connection(self) -> None:
        """
        Over an open connection the response goes back on it.
        """
        proto, transport = self.connect("tcp", 40001)
        assert proto.peer is not None
        request = parse(options(via="127.0.0.9:5060;received=127.0.0.9;branch=z9hG4bKa1", transport="TCP"))
        assert isinstance(request, Request)
        self.successResultOf(self.layer.send_response(make_response(request, 200), proto.peer))
        self.assertTrue(transport.value().startswith(b"SIP/2.0 200"))


class SendFailureTests(_Layer):
    """
    Failures to send are counted and logged, never raised into the reactor.
    """

    def make_layer(self, **limits: Any) -> SipTransport:
        """
        @return: A transport with the default limits.
        """
        return SipTransport(self.reactor, self.receiver)

    def test_datagram_too_long(self) -> None:
        """
        Twisted raises L{MessageLengthError} (not an C{OSError}) for a
        datagram over 65,507 octets: counted in C{send_failures}.
        """
        fake = self.udp()

        def write(packet: bytes, addr: Any = None) -> None:
            raise MessageLengthError("message too long")

        fake.write = write  # type: ignore[method-assign]
        with capturedLogs() as events:
            self.layer._send_udp(b"x" * 70000, "127.0.0.1", 5999)
        self.assertEqual(self.layer.stats["send_failures"], 1)
        self.assertEqual([e["log_level"] for e in events], [LogLevel.warn])


class AcceptErrorTests(SynchronousTestCase):
    """
    C{EMFILE} on C{accept()} is reported as what it is.
    """

    def test_emfile_logged_and_counted(self) -> None:
        """
        Twisted's "EMFILE encountered" event of a listening port becomes an
        error naming the file-descriptor limit (C{LimitNOFILE}), counted in
        C{accept_fd_exhausted}, logged at most every 10 s.
        """
        clock = task.Clock()
        layer = SipTransport(clock)
        with capturedLogs() as events:
            for _ in range(3):
                layer.accept_log_event({"log_format": "EMFILE encountered; releasing reserved file descriptor."}, "tcp")
                layer.accept_log_event({"log_format": "EMFILE recovery: Closed socket from {address}"}, "tcp")
            clock.advance(11)
            layer.accept_log_event({"log_format": "Could not accept new connection ({acceptError})", "acceptError": "EMFILE"}, "tls")
            layer.accept_log_event({"log_format": "Could not accept new connection ({acceptError})", "acceptError": "ENOBUFS"}, "tls")
        self.assertEqual(layer.stats["accept_fd_exhausted"], 4)
        errors = [e for e in events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 2)
        self.assertIn("LimitNOFILE", errors[0]["log_format"])
        self.assertIn("out of file descriptors", errors[0]["log_format"])
