"""
Tests for L{aiconnect.media.relay.RelayEPollReactor}, driven one iteration
at a time (the reactor is built, never installed or run).
"""

from __future__ import annotations


from twisted.trial.unittest import SynchronousTestCase

from aiconnect.media.relay import MediaRelay, RelayEPollReactor
from aiconnect.media.rtp import RtpPacket
from tests.fakes import UdpSocket, rtp_packet


class RelayEPollReactorTests(SynchronousTestCase):
    """
    The direct dispatch for relay sockets.
    """

    def setUp(self) -> None:
        if RelayEPollReactor is None:
            raise self.skipTest("no epoll here")
        self.reactor = RelayEPollReactor()
        self.addCleanup(self.reactor._poller.close)
        self.relay = MediaRelay(self.reactor, "127.0.0.1", 64000, 64099)
        self.addCleanup(self.relay.close)

    def pump(self, sink: UdpSocket, want: int) -> list[bytes]:
        got: list[bytes] = []
        for _ in range(100):
            self.reactor.doIteration(0.05)
            got += sink.read()
            if len(got) >= want:
                break
        return got

    def test_relays(self) -> None:
        """
        A datagram on a relay port is read and relayed by doIteration.
        """
        src, sink = UdpSocket(self), UdpSocket(self)
        session = self.relay.allocate_session(1)
        session.set_inbound(0, remote=src.address)
        session.add_forward("f", 1).connect(0, sink.address, codec="PCMU", payload_type=0)
        for k in range(3):
            src.send(rtp_packet(k, 160 * k, 1, 0, b"\x11" * 160), ("127.0.0.1", session.streams[0].rtp_port))
        got = self.pump(sink, 3)
        self.assertEqual([RtpPacket.parse(d).payload for d in got], [b"\x11" * 160] * 3)

    def test_socket_error_keeps_port(self) -> None:
        """
        An ICMP error on a forward's connected socket is collected by a read
        and the port stays registered.
        """
        src, sink = UdpSocket(self), UdpSocket(self)
        gone = UdpSocket(self)
        gone_address = gone.address
        gone.sock.close()
        session = self.relay.allocate_session(1)
        session.set_inbound(0, remote=src.address)
        session.add_forward("gone", 1).connect(0, gone_address, codec="PCMU", payload_type=0)
        session.add_forward("live", 1).connect(0, sink.address, codec="PCMU", payload_type=0)
        for k in range(4):
            src.send(rtp_packet(k, 160 * k, 1, 0, b"\x22" * 160), ("127.0.0.1", session.streams[0].rtp_port))
        self.assertEqual(len(self.pump(sink, 4)), 4)
        for _ in range(3):
            self.reactor.doIteration(0.01)
        port = session.forwards["gone"].streams[0].listening
        self.assertIn(port.fileno(), self.reactor._selectables)
        self.assertIn(port, self.reactor.getReaders())
