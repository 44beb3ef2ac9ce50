"""
Tests for L{aiconnect.sip.repeats}, L{aiconnect.sip.trace} and the
absorption of UDP retransmissions without a parse: a real
L{SipTransport} on 127.0.0.1 under a L{TransactionLayer} whose timers run
on a L{task.Clock}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

from aiconnect.sip import trace
from aiconnect.sip import transport as transport_module
from aiconnect.sip.message import Message, Request, make_response, parse
from aiconnect.sip.peer import Peer
from aiconnect.sip.repeats import RepeatTable
from aiconnect.sip.transport import SipTransport
from aiconnect.sip.txlayer import ServerTransaction, TransactionLayer

REQUEST = (
    b"METHOD sip:srs@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-NAME\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:src@127.0.0.1>;tag=src1\r\n"
    b"To: <sip:srs@127.0.0.1>\r\n"
    b"Call-ID: NAME@127.0.0.1\r\n"
    b"CSeq: 1 METHOD\r\n"
    b"Contact: <sip:src@127.0.0.1:5070>\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def invite(name: str, method: bytes = b"INVITE") -> bytes:
    """
    An INVITE (or another C{method}) whose branch and Call-ID carry C{name}.
    """
    return REQUEST.replace(b"NAME", name.encode()).replace(b"METHOD", method)


class RepeatTableTests(SynchronousTestCase):
    """
    L{RepeatTable} maps octets to their owner, within a cap.
    """

    def test_get_and_discard(self) -> None:
        """
        An entry is found by its exact octets and forgotten by its owner only.
        """
        table: RepeatTable[str] = RepeatTable(4)
        table.add(b"a", "tx1")
        self.assertEqual(table.get(b"a"), "tx1")
        self.assertIsNone(table.get(b"a "))
        table.discard(b"a", "tx2")
        self.assertEqual(table.get(b"a"), "tx1")
        table.discard(b"a", "tx1")
        self.assertIsNone(table.get(b"a"))
        self.assertEqual(len(table), 0)

    def test_first_owner_kept(self) -> None:
        """
        The same octets added again keep their first owner.
        """
        table: RepeatTable[str] = RepeatTable(4)
        table.add(b"a", "tx1")
        table.add(b"a", "tx2")
        self.assertEqual(table.get(b"a"), "tx1")

    def test_cap_evicts_oldest(self) -> None:
        """
        Beyond the cap the oldest entry is forgotten and counted.
        """
        table: RepeatTable[int] = RepeatTable(3)
        for i in range(10):
            table.add(b"%d" % i, i)
        self.assertEqual(len(table), 3)
        self.assertEqual(table.evicted, 7)
        self.assertEqual([table.get(b"%d" % i) for i in range(10)], [None] * 7 + [7, 8, 9])

    def test_cap_zero(self) -> None:
        """
        A cap of 0 keeps nothing.
        """
        table: RepeatTable[int] = RepeatTable(0)
        table.add(b"a", 1)
        self.assertEqual(len(table), 0)


class TraceTests(SynchronousTestCase):
    """
    L{trace.set_level} turns the per-message debug lines on at debug only.
    """

    def test_levels(self) -> None:
        """
        Only C{debug} (a name in any case, or a constant named so) enables them.
        """
        from twisted.logger import LogLevel

        self.addCleanup(setattr, trace, "debug", trace.debug)
        for level, expected in (
            ("info", False), ("DEBUG", True), (LogLevel.warn, False), (LogLevel.debug, True), ("warning", False)
        ):
            trace.set_level(level)
            self.assertIs(trace.debug, expected, level)


class _Answering:
    """
    A transaction user answering INVITE with C{status} (with a To tag)
    and any other request with 200.
    """

    def __init__(self, status: int) -> None:
        self.status = status
        self.requests: list[Request] = []

    def request_received(self, tx: ServerTransaction, request: Request) -> None:
        self.requests.append(request)
        status = self.status if request.method == "INVITE" else 200
        tx.respond(make_response(request, status, to_tag="uas1"))

    def cancel_received(self, tx: ServerTransaction, cancel: Request) -> None:
        pass

    def ack_received(self, ack: Request, source: Peer) -> None:
        pass

    def stray_response(self, response: Any, source: Peer) -> None:
        pass


class _Client(DatagramProtocol):
    """
    A UDP peer keeping every datagram it receives.
    """

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self._waiting: list[tuple[int, defer.Deferred[list[bytes]]]] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.received.append(data)
        for n, d in list(self._waiting):
            if len(self.received) >= n:
                self._waiting.remove((n, d))
                d.callback(self.received)

    def wait_for(self, n: int) -> defer.Deferred[list[bytes]]:
        """
        Fires once C{n} datagrams in all have arrived.
        """
        if len(self.received) >= n:
            return defer.succeed(self.received)
        d: defer.Deferred[list[bytes]] = defer.Deferred()
        self._waiting.append((n, d))
        return d


class AbsorbTests(TestCase):
    """
    A datagram identical to the request of a live UDP server transaction,
    from the same source, is answered by that transaction without being
    parsed (RFC 3261 s17.2.1, s17.2.2); anything else takes the full path.
    """

    timeout = 10

    def setUp(self) -> None:
        """
        A transport on 127.0.0.1 (real UDP) under a layer on a clock, a
        counter of parses, and a client socket.
        """
        self.parses: list[bytes] = []
        real_parse = transport_module.parse

        def counting(data: bytes, *args: Any, **kwargs: Any) -> Message:
            self.parses.append(data)
            return real_parse(data, *args, **kwargs)

        self.patch(transport_module, "parse", counting)
        self.clock = task.Clock()
        self.tu = _Answering(486)
        self.transport = SipTransport(reactor)
        self.layer = self.make_layer()
        port = self.transport.listen_udp(0)
        self.addCleanup(port.stopListening)
        self.address = ("127.0.0.1", port.getHost().port)
        self.client = _Client()
        client_port = reactor.listenUDP(0, self.client, interface="127.0.0.1")
        self.addCleanup(client_port.stopListening)
        self.client_address = ("127.0.0.1", client_port.getHost().port)

    def make_layer(self, cap: int = 100) -> TransactionLayer:
        """
        A layer with a repeat table of C{cap} entries, receiving from the transport.
        """
        layer = TransactionLayer(self.clock, self.transport, self.tu, repeat_cap=cap)
        self.transport.receiver = layer
        return layer

    def send(self, data: bytes) -> None:
        """
        Send C{data} from the client socket to the transport.
        """
        self.client.transport.write(data, self.address)

    @defer.inlineCallbacks
    def test_retransmission_not_parsed(self) -> Any:
        """
        A retransmitted INVITE (answered 486: Completed) gets the same
        response octets again, and is not parsed.
        """
        data = invite("a")
        self.send(data)
        received = yield self.client.wait_for(2)  # 100 Trying, 486
        self.assertEqual(len(self.parses), 1)
        self.send(data)
        received = yield self.client.wait_for(3)
        self.assertEqual(received[2], received[1])
        self.assertEqual(parse(received[2]).status, 486)
        self.assertEqual(len(self.parses), 1)
        self.assertEqual(self.layer.stats["repeats_unparsed"], 1)
        self.assertEqual(len(self.tu.requests), 1)

    @defer.inlineCallbacks
    def test_modified_retransmission_parsed(self) -> Any:
        """
        A retransmission whose octets differ (one header more) takes the
        full path: it is parsed, then matched to the transaction, which
        answers it the same.
        """
        data = invite("b")
        self.send(data)
        received = yield self.client.wait_for(2)
        self.send(data.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nSubject: again\r\n"))
        received = yield self.client.wait_for(3)
        self.assertEqual(received[2], received[1])
        self.assertEqual(len(self.parses), 2)
        self.assertEqual(self.layer.stats["repeats_unparsed"], 0)
        self.assertEqual(len(self.tu.requests), 1)

    @defer.inlineCallbacks
    def test_entry_ends_with_transaction(self) -> Any:
        """
        When the transaction ends, its octets are forgotten: the same
        datagram is then parsed and starts a new transaction (an OPTIONS:
        its Completed state sends nothing by itself until Timer J).
        """
        data = invite("c", b"OPTIONS")
        self.send(data)
        received = yield self.client.wait_for(1)
        self.send(data)
        received = yield self.client.wait_for(2)
        self.assertEqual(received[1], received[0])
        self.assertEqual(len(self.parses), 1)
        self.assertEqual(len(self.layer.repeats), 1)
        self.clock.advance(32)  # Timer J
        self.assertEqual(len(self.layer.repeats), 0)
        self.assertEqual(dict(self.layer.server_transactions), {})
        self.send(data)
        yield self.client.wait_for(3)
        self.assertEqual(len(self.parses), 2)
        self.assertEqual(len(self.tu.requests), 2)

    @defer.inlineCallbacks
    def test_other_source_parsed(self) -> Any:
        """
        The same octets from another address are not taken for a
        retransmission by the table: they are parsed.
        """
        data = invite("d")
        self.send(data)
        yield self.client.wait_for(2)
        other = _Client()
        other_port = reactor.listenUDP(0, other, interface="127.0.0.1")
        self.addCleanup(other_port.stopListening)
        other.transport.write(data, self.address)
        yield other.wait_for(1)
        self.assertEqual(len(self.parses), 2)
        self.assertEqual(self.layer.stats["repeats_unparsed"], 0)

    @defer.inlineCallbacks
    def test_cap_holds(self) -> Any:
        """
        With a cap of 2, three live transactions leave two entries; the
        evicted one's retransmission is parsed and still answered.
        """
        self.layer = self.make_layer(cap=2)
        for i, name in enumerate(("e1", "e2", "e3")):
            self.send(invite(name))
            yield self.client.wait_for(2 * (i + 1))
        self.assertEqual(len(self.layer.repeats), 2)
        self.assertEqual(self.layer.repeats.evicted, 1)
        self.assertEqual(len(self.parses), 3)
        self.send(invite("e1"))
        received = yield self.client.wait_for(7)
        self.assertEqual(parse(received[6]).call_id, "e1@127.0.0.1")
        self.assertEqual(len(self.parses), 4)
        self.send(invite("e3"))
        yield self.client.wait_for(8)
        self.assertEqual(len(self.parses), 4)
        self.assertEqual(len(self.tu.requests), 3)
