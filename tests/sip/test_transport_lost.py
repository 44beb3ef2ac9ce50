"""
Tests for the TCP/TLS connection-loss hook (SPEC s13): the transport tells
L{SipTransport.on_connection_lost} when a connection closes other than by
us, and the UA tells the handler of each dialog over it
(C{session_transport_lost}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import MemoryReactorClock, StringTransportWithDisconnection
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.sip.dialog import Dialog
from aiconnect.sip.peer import ConnectionLimits, Peer
from aiconnect.sip.transport import SipStreamProtocol, SipTransport
from aiconnect.sip.ua import InviteSession, UserAgent


class Handler:
    """
    A session handler recording transport losses.
    """

    def __init__(self) -> None:
        self.lost: list[tuple[InviteSession, str]] = []

    def session_request(self, session: InviteSession, tx: Any, request: Any) -> bool:
        return False

    def session_terminated(self, session: InviteSession, reason: str) -> None:
        pass

    def session_transport_lost(self, session: InviteSession, reason: str) -> None:
        self.lost.append((session, reason))


def _dialog(call_id: str) -> Dialog:
    return Dialog(
        call_id=call_id,
        local_tag="a",
        remote_tag="b",
        local_header="<sip:aiconnect@example.com>;tag=a",
        remote_header="<sip:srs@example.com>;tag=b",
        remote_target="sip:127.0.0.1:5070;transport=tcp",
        route_set=[],
        local_seq=1,
        invite_cseq=1,
    )


class ConnectionLostTests(SynchronousTestCase):
    """
    From a closed connection to the dialogs that used it.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.layer = SipTransport(self.reactor, limits=ConnectionLimits(idle_timeout=10.0))
        self.ua = UserAgent(self.reactor, self.layer)
        self.handler = Handler()

    def session(self, call_id: str, peer: Peer, handler: Any = None) -> InviteSession:
        session = self.ua.restore_session(_dialog(call_id), peer, "uac", "<sip:127.0.0.1:5060;transport=tcp>")
        session.handler = handler if handler is not None else self.handler
        return session

    def connect(self, port: int = 5070) -> tuple[SipStreamProtocol, StringTransportWithDisconnection]:
        proto = SipStreamProtocol(self.layer, "tcp", True)
        transport = StringTransportWithDisconnection(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        transport.protocol = proto
        proto.makeConnection(transport)
        return proto, transport

    def test_reset_reaches_the_dialogs_over_it(self) -> None:
        """
        A reset connection to 127.0.0.1:5070 is reported to the handler of
        the TCP dialog with that peer, not to a UDP one, nor to one with
        another port, nor to a handler without the hook.
        """
        over = self.session("c1", Peer("tcp", "127.0.0.1", 5070))
        self.session("c2", Peer("udp", "127.0.0.1", 5070))
        self.session("c3", Peer("tcp", "127.0.0.1", 5072))
        self.session("c4", Peer("tcp", "127.0.0.1", 5070), handler=object())
        proto, _ = self.connect()
        proto.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(self.handler.lost, [(over, "connection lost")])

    def test_peer_close(self) -> None:
        """
        A connection the peer closed (FIN) is reported as closed.
        """
        over = self.session("c1", Peer("tcp", "127.0.0.1", 5070))
        _, transport = self.connect()
        transport.loseConnection()
        self.assertEqual(self.handler.lost, [(over, "connection closed")])

    def test_local_close_not_reported(self) -> None:
        """
        A connection we closed (the idle timer, shutdown) is no loss of
        the peer.
        """
        self.session("c1", Peer("tcp", "127.0.0.1", 5070))
        idle, _ = self.connect()
        self.reactor.advance(10.0)  # idle_timeout
        stopped, _ = self.connect(5070)
        self.layer.stop()
        self.assertIsNotNone(idle.lost_reason)
        self.assertIsNotNone(stopped.lost_reason)
        self.assertEqual(self.handler.lost, [])
