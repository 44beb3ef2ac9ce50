# -*- test-case-name: tests.sip.test_transport_connect -*-
"""
Tests for outbound TCP connections of L{aiconnect.sip.transport.SipTransport}
on real sockets: several requests sent while one connection is being made
share it, and each is written.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from aiconnect.sip.message import Request, StreamFramer, parse
from aiconnect.sip.peer import Peer
from aiconnect.sip.transport import SipTransport
from tests.fakes import wait_until


def _options(n: int) -> Request:
    return Request(
        "OPTIONS",
        "sip:srs@127.0.0.1",
        [
            ("Via", "SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKconn%d" % n),
            ("Max-Forwards", "70"),
            ("From", "<sip:a@127.0.0.1>;tag=t%d" % n),
            ("To", "<sip:srs@127.0.0.1>"),
            ("Call-ID", "conn-%d" % n),
            ("CSeq", "1 OPTIONS"),
        ],
    )


class SharedConnectTests(TestCase):
    """
    Requests to one TCP peer before its connection is up (a forward's
    failover moving many dialogs to one recorder at once, SPEC s13).
    """

    async def test_concurrent_sends_share_one_connection(self) -> None:
        """
        Five requests sent in the same turn open one connection, and all
        five arrive: a caller's callbacks do not change what the next one
        waiting for that connection gets (it got C{None} before).
        """
        received: list[str] = []
        accepted: list[Any] = []

        class Peer_(Protocol):
            def connectionMade(self) -> None:
                accepted.append(self)
                self.framer = StreamFramer()

            def dataReceived(self, data: bytes) -> None:
                for frame in self.framer.feed(data):
                    if frame.strip():
                        received.append(parse(frame, datagram=False).call_id)

        port = reactor.listenTCP(0, Factory.forProtocol(Peer_), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        layer = SipTransport(reactor)
        self.addCleanup(layer.stop)
        peer = Peer("tcp", "127.0.0.1", port.getHost().port)
        sent = [layer.send_request(_options(n), peer) for n in range(5)]
        await defer.gatherResults(sent, consumeErrors=True)
        await wait_until(lambda: len(received) == 5, 5.0, what=lambda: "5 requests, got %r" % (received,))
        self.assertEqual(sorted(received), ["conn-%d" % n for n in range(5)])
        self.assertEqual(len(accepted), 1)
