# -*- test-case-name: tests.test_fakes -*-
"""
Tests for L{tests.fakes}, the shared test toolbox: the waits on a
L{Clock}, the RTP builder against the project's parser, the fake SIP
transport, the raw peers on fake transports and on real loopback sockets.
"""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport, StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from aiconnect import tlsutil
from aiconnect.config import TlsConfig
from aiconnect.media.rtp import RtpPacket
from aiconnect.sip.message import Request, Response, parse
from aiconnect.sip.peer import Peer
from tests.fakes import (
    FRAME,
    FakeSipTransport,
    StreamPeer,
    StreamPeerFactory,
    UdpPeer,
    UdpSocket,
    WaitTimeout,
    connect_stream,
    listen_udp,
    pause,
    raw_call_id,
    rtp_packet,
    status_of,
    wait_until,
)

OPTIONS = (
    b"OPTIONS sip:a@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bKfakes1\r\n"
    b"Max-Forwards: 70\r\nTo: <sip:a@example.com>\r\nFrom: <sip:b@example.com>;tag=1\r\n"
    b"Call-ID: fakes-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)
OK = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bKfakes1\r\n"
    b"To: <sip:a@example.com>;tag=2\r\nFrom: <sip:b@example.com>;tag=1\r\n"
    b"Call-ID: fakes-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


def response(status: int, call_id: str = "fakes-1") -> bytes:
    """
    L{OK} with another status line and Call-ID.
    """
    return OK.replace(b"200 OK", b"%d X" % status).replace(b"fakes-1", call_id.encode())


class WaitUntilTests(SynchronousTestCase):
    """
    L{wait_until} and L{pause} on a L{Clock}.
    """

    def test_true_at_once(self) -> None:
        """
        A check already true returns its value without waiting.
        """
        clock = Clock()
        d = defer.ensureDeferred(wait_until(lambda: [1], clock=clock))
        self.assertEqual(self.successResultOf(d), [1])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_polls_with_the_reactor(self) -> None:
        """
        A false check is called again every C{interval} of the reactor's
        time (a delayed call is pending meanwhile), and the first true value
        is returned.
        """
        clock = Clock()
        calls: list[float] = []

        def check() -> int:
            calls.append(clock.seconds())
            return 7 if len(calls) == 3 else 0

        d = defer.ensureDeferred(wait_until(check, 1.0, interval=0.1, clock=clock))
        self.assertNoResult(d)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.pump([0.1, 0.1])
        self.assertEqual(self.successResultOf(d), 7)
        self.assertEqual(calls, [0.0, 0.1, 0.2])

    def test_timeout_fails_with_what(self) -> None:
        """
        A check still false after C{timeout} fails with L{WaitTimeout} (an
        C{AssertionError}) naming C{what} and the last value; the last
        call happens at the deadline.
        """
        clock = Clock()
        calls: list[float] = []

        def check() -> list[int]:
            calls.append(clock.seconds())
            return []

        d = defer.ensureDeferred(wait_until(check, 0.25, interval=0.1, what="the answer", clock=clock))
        clock.pump([0.1, 0.1])
        self.assertNoResult(d)
        clock.advance(0.05)
        failure = self.failureResultOf(d, WaitTimeout)
        self.assertIsInstance(failure.value, AssertionError)
        self.assertEqual(str(failure.value), "not met within 0.25 s: the answer (last value: [])")
        self.assertEqual(calls, [0.0, 0.1, 0.2, 0.25])

    def test_timeout_message_from_source(self) -> None:
        """
        Without C{what}, the message quotes the check's source line; a
        callable C{what} is called only on failure.
        """
        clock = Clock()
        d = defer.ensureDeferred(wait_until(lambda: 1 > 2, 0.1, clock=clock))
        clock.pump([0.1] * 6)
        self.assertIn("lambda: 1 > 2", str(self.failureResultOf(d, WaitTimeout).value))
        asked: list[int] = []

        def what() -> str:
            asked.append(1)
            return "seen %d" % (len(asked),)

        d = defer.ensureDeferred(wait_until(lambda: True, 0.1, what=what, clock=clock))
        self.successResultOf(d)
        self.assertEqual(asked, [])
        d = defer.ensureDeferred(wait_until(lambda: 0, 0.1, what=what, clock=clock))
        clock.pump([0.1] * 6)
        self.assertIn("seen 1", str(self.failureResultOf(d, WaitTimeout).value))

    def test_awaitable_check(self) -> None:
        """
        A check returning a Deferred or a coroutine is awaited: the wait
        ends when the awaited value is true.
        """
        clock = Clock()
        pending: defer.Deferred[str] = defer.Deferred()
        d = defer.ensureDeferred(wait_until(lambda: pending, 1.0, clock=clock))
        self.assertNoResult(d)
        pending.callback("yes")
        self.assertEqual(self.successResultOf(d), "yes")

        async def coroutine() -> str:
            return "done"

        self.assertEqual(self.successResultOf(defer.ensureDeferred(wait_until(coroutine, clock=clock))), "done")

    def test_pending_awaitable_then_true(self) -> None:
        """
        When the awaited answer fires false, the wait goes on to the next
        call.
        """
        clock = Clock()
        first: defer.Deferred[bool] = defer.Deferred()
        answers = [first, defer.succeed(True)]
        d = defer.ensureDeferred(wait_until(lambda: answers.pop(0), 1.0, interval=0.1, clock=clock))
        first.callback(False)
        self.assertNoResult(d)
        clock.advance(0.1)
        self.assertIs(self.successResultOf(d), True)

    def test_check_raises(self) -> None:
        """
        An exception raised by the check ends the wait with it.
        """
        clock = Clock()
        d = defer.ensureDeferred(wait_until(lambda: 1 // 0, clock=clock))
        self.failureResultOf(d, ZeroDivisionError)

    def test_pause(self) -> None:
        """
        L{pause} fires after C{seconds} of the reactor's time, not before.
        """
        clock = Clock()
        d = pause(0.5, clock)
        clock.advance(0.49)
        self.assertNoResult(d)
        clock.advance(0.01)
        self.assertIsNone(self.successResultOf(d))


class RtpPacketTests(SynchronousTestCase):
    """
    L{rtp_packet} against L{aiconnect.media.rtp.RtpPacket}.
    """

    def test_fields(self) -> None:
        """
        The parser reads back every field; seq, ts and ssrc wrap.
        """
        data = rtp_packet(65537, 2**32 + 5, 2**32 + 9, 8, b"\xd5" * 160, marker=True)
        packet = RtpPacket.parse(data)
        self.assertEqual(
            (packet.payload_type, packet.sequence_number, packet.timestamp, packet.ssrc, packet.payload, packet.marker),
            (8, 1, 5, 9, b"\xd5" * 160, True),
        )
        self.assertEqual(data[:2], b"\x80\x88")

    def test_same_as_serializer(self) -> None:
        """
        The octets are those L{RtpPacket.serialize} writes, the default
        payload being L{FRAME}.
        """
        self.assertEqual(rtp_packet(7, 1120, 99, 0), RtpPacket(0, 7, 1120, 99, FRAME).serialize())
        self.assertEqual(len(FRAME), 160)

    def test_payload_type_range(self) -> None:
        """
        A payload type over 127 is refused.
        """
        self.assertRaises(ValueError, rtp_packet, 1, 1, 1, 128, b"")


class FakeSipTransportTests(SynchronousTestCase):
    """
    L{FakeSipTransport} records and answers as told.
    """

    def test_records(self) -> None:
        """
        Requests and responses are recorded in order, together and apart.
        """
        transport = FakeSipTransport()
        request, resp = parse(OPTIONS), parse(OK)
        assert isinstance(request, Request) and isinstance(resp, Response)
        peer = Peer("udp", "192.0.2.3", 5060)
        self.successResultOf(transport.send_request(request, peer))
        self.successResultOf(transport.send_response(resp, peer))
        self.assertEqual(transport.sent, [(request, peer), (resp, peer)])
        self.assertEqual(transport.requests, [(request, peer)])
        self.assertEqual(transport.responses, [(resp, peer)])
        self.assertEqual(transport.methods(), ["OPTIONS"])
        self.assertEqual(transport.statuses(), [200])
        self.assertEqual(transport.invites(), [])

    def test_invites(self) -> None:
        """
        L{FakeSipTransport.invites} lists the INVITEs only.
        """
        transport = FakeSipTransport()
        invite = parse(OPTIONS.replace(b"OPTIONS", b"INVITE"))
        assert isinstance(invite, Request)
        peer = Peer("tcp", "192.0.2.3", 5060)
        transport.send_request(parse(OPTIONS), peer)  # type: ignore[arg-type]
        transport.send_request(invite, peer)
        self.assertEqual(transport.invites(), [(invite, peer)])

    def test_failure(self) -> None:
        """
        With C{failure} set, sends are still recorded and fail with it.
        """
        transport = FakeSipTransport()
        transport.failure = ConnectionRefusedError("no")
        request = parse(OPTIONS)
        assert isinstance(request, Request)
        self.failureResultOf(transport.send_request(request, Peer("tcp", "192.0.2.3", 5060)), ConnectionRefusedError)
        self.assertEqual(transport.methods(), ["OPTIONS"])

    def test_addresses(self) -> None:
        """
        Via and advertised addresses are C{sent_by}, with the peer's
        transport token.
        """
        transport = FakeSipTransport("127.0.0.1:5060")
        self.assertEqual(transport.local_via(Peer("tls", "192.0.2.3", 5061)), ("TLS", "127.0.0.1:5060"))
        self.assertEqual(transport.advertised("udp", private=True), "127.0.0.1:5060")
        self.assertEqual(FakeSipTransport().local_via(Peer("udp", "192.0.2.3", 5060)), ("UDP", "192.0.2.1:5060"))


class RawMessageTests(SynchronousTestCase):
    """
    L{status_of} and L{raw_call_id}.
    """

    def test_status_of(self) -> None:
        """
        The status comes from the status line; a request is refused.
        """
        self.assertEqual(status_of(response(487)), 487)
        self.assertRaises(AssertionError, status_of, OPTIONS)

    def test_raw_call_id(self) -> None:
        """
        The Call-ID in long or compact form, C{None} without one; a body
        line is not read.
        """
        self.assertEqual(raw_call_id(OPTIONS), "fakes-1")
        self.assertEqual(raw_call_id(OPTIONS.replace(b"Call-ID:", b"i:")), "fakes-1")
        self.assertIsNone(raw_call_id(b"SIP/2.0 200 OK\r\n\r\nCall-ID: body\r\n"))


class PeerTests(SynchronousTestCase):
    """
    L{UdpPeer} and L{StreamPeer} on fake transports, timed by a L{Clock}.
    """

    def udp(self) -> tuple[UdpPeer, FakeDatagramTransport, Clock]:
        clock = Clock()
        peer = UdpPeer(clock)
        transport = FakeDatagramTransport()
        peer.makeConnection(transport)
        return peer, transport, clock

    def test_udp_send(self) -> None:
        """
        L{UdpPeer.send} writes to 127.0.0.1 or the host given.
        """
        peer, transport, _ = self.udp()
        peer.send(b"a", 5060)
        peer.send(b"b", 5062, "::1")
        self.assertEqual(transport.written, [(b"a", ("127.0.0.1", 5060)), (b"b", ("::1", 5062))])

    def test_next_message(self) -> None:
        """
        Messages are handed out in order, before or after they arrive;
        L{skip_all} passes over what came.
        """
        peer, _, _ = self.udp()
        peer.datagramReceived(b"one", ("127.0.0.1", 1))
        self.assertEqual(self.successResultOf(peer.next_message()), b"one")
        d = peer.next_message()
        self.assertNoResult(d)
        peer.datagramReceived(b"two", ("127.0.0.1", 1))
        self.assertEqual(self.successResultOf(d), b"two")
        peer.datagramReceived(b"three", ("127.0.0.1", 1))
        peer.skip_all()
        self.assertNoResult(peer.next_message())
        self.assertEqual(peer.received, [b"one", b"two", b"three"])

    def test_next_message_timeout(self) -> None:
        """
        Nothing within the timeout (on the peer's clock): C{TimeoutError}.
        """
        peer, _, clock = self.udp()
        d = peer.next_message(1.0)
        clock.advance(1.0)
        self.failureResultOf(d, defer.TimeoutError)
        peer.datagramReceived(b"late", ("127.0.0.1", 1))
        self.assertEqual(self.successResultOf(peer.next_message()), b"late")

    def test_next_final(self) -> None:
        """
        L{next_final} skips provisional responses and other Call-IDs.
        """
        peer, _, _ = self.udp()
        d = defer.ensureDeferred(peer.next_final(call_id="fakes-1"))
        for data in (response(100), response(200, "other"), response(486)):
            peer.datagramReceived(data, ("127.0.0.1", 1))
        self.assertEqual(status_of(self.successResultOf(d)), 486)

    def test_take(self) -> None:
        """
        L{take} returns each matching message once, whatever the cursor;
        L{matching} lists them all.
        """
        peer, _, clock = self.udp()
        is_final = lambda m: not m.startswith(b"SIP/2.0 1")  # noqa: E731
        d = defer.ensureDeferred(peer.take(is_final))
        peer.datagramReceived(response(180), ("127.0.0.1", 1))
        peer.datagramReceived(response(200), ("127.0.0.1", 1))
        clock.advance(0.01)
        self.assertEqual(status_of(self.successResultOf(d)), 200)
        second = defer.ensureDeferred(peer.take(is_final, timeout=0.05))
        clock.pump([0.01] * 6)
        failure = self.failureResultOf(second, WaitTimeout)
        self.assertIn("SIP/2.0 180 X", str(failure.value))
        self.assertEqual([status_of(m) for m in peer.matching(is_final)], [200])
        self.assertEqual(self.successResultOf(peer.next_message()), response(180))

    def test_stream(self) -> None:
        """
        L{StreamPeer} frames by Content-Length across chunks, drops CRLF
        keep-alives, writes what it sends and fires C{closed} once.
        """
        clock = Clock()
        peer = StreamPeer(clock)
        transport = StringTransport()
        peer.makeConnection(transport)
        data = OPTIONS + b"\r\n\r\n" + OK
        for i in range(0, len(data), 7):
            peer.dataReceived(data[i : i + 7])
        self.assertEqual(peer.received, [OPTIONS, OK])
        peer.send(b"x")
        self.assertEqual(transport.value(), b"x")
        self.assertNoResult(peer.closed)
        peer.connectionLost(None)
        peer.connectionLost(None)
        self.assertIsNone(self.successResultOf(peer.closed))
        self.assertIsInstance(StreamPeerFactory().buildProtocol(None), StreamPeer)


class UdpSocketTests(SynchronousTestCase):
    """
    L{UdpSocket}: a loopback socket without a reactor.
    """

    def test_send_read(self) -> None:
        """
        Datagrams sent to it are read back in order; nothing waits.
        """
        a, b = UdpSocket(self), UdpSocket(self)
        self.assertEqual(a.read(), [])
        a.send(b"1", b.address)
        a.send(b"2" * 3000, b.address)
        got: list[bytes] = []
        for _ in range(1000):
            got += b.read()
            if len(got) == 2:
                break
        self.assertEqual(got, [b"1", b"2" * 3000])
        self.assertEqual(a.address[0], "127.0.0.1")


class _Accepting(Factory):
    """
    A listener keeping the L{StreamPeer} of each accepted connection.
    """

    def __init__(self) -> None:
        self.peers: list[StreamPeer] = []

    def buildProtocol(self, addr: object) -> StreamPeer:
        """
        A new L{StreamPeer}, remembered.
        """
        peer = StreamPeer()
        self.peers.append(peer)
        return peer


class RealSocketTests(TestCase):
    """
    L{listen_udp} and L{connect_stream} on the real reactor.
    """

    timeout = 10

    async def test_listen_udp(self) -> None:
        """
        Two listening peers exchange a datagram; both stop after the test.
        """
        a, _ = listen_udp(self)
        b, port_b = listen_udp(self)
        a.send(OPTIONS, port_b)
        self.assertEqual(await b.next_message(), OPTIONS)

    async def test_connect_tcp(self) -> None:
        """
        A stream peer connects over TCP and receives framed messages.
        """
        server = _Accepting()
        accepted = server.peers
        port = reactor.listenTCP(0, server, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = await connect_stream(self, port.getHost().port)
        client.send(OPTIONS)
        await wait_until(lambda: accepted and accepted[0].received)
        accepted[0].send(OK)
        self.assertEqual(await client.next_message(), OK)
        accepted[0].transport.loseConnection()  # type: ignore[union-attr]
        await client.closed

    async def test_connect_tls(self) -> None:
        """
        With C{ca_pem}, the peer connects over TLS, checking the server's
        certificate.
        """
        from tests.integration.helpers import Certificates

        certs = Certificates()
        context = tlsutil.server_context_factory(
            TlsConfig(certificate=str(certs.cert), private_key=str(certs.key), ca_certificates=str(certs.ca))
        )
        server = _Accepting()
        accepted = server.peers
        port = reactor.listenSSL(0, server, context, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = await connect_stream(self, port.getHost().port, ca_pem=certs.ca_pem)
        client.send(OPTIONS)
        await wait_until(lambda: accepted and accepted[0].received)
        self.assertEqual(accepted[0].received, [OPTIONS])
        accepted[0].send(OK)
        self.assertEqual(await client.next_message(), OK)
        accepted[0].transport.abortConnection()  # type: ignore[union-attr]
        await accepted[0].closed
        await client.closed
