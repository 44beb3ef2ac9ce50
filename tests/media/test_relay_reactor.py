"""
Tests for L{aiconnect.media.relay.RelayEPollReactor}, driven one iteration
at a time (the reactor is built, never installed or run).
"""

from __future__ import annotations

import socket

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.media.relay import MediaRelay, RelayEPollReactor
from aiconnect.media.rtp import RtpPacket


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

    def sock(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        self.addCleanup(s.close)
        return s

    def pump(self, sink: socket.socket, want: int) -> list[bytes]:
        got: list[bytes] = []
        for _ in range(100):
            self.reactor.doIteration(0.05)
            while True:
                try:
                    got.append(sink.recv(4096))
                except BlockingIOError:
                    break
            if len(got) >= want:
                break
        return got

    def test_relays(self) -> None:
        """
        A datagram on a relay port is read and relayed by doIteration.
        """
        src, sink = self.sock(), self.sock()
        session = self.relay.allocate_session(1)
        session.set_inbound(0, remote=src.getsockname())
        session.add_forward("f", 1).connect(0, sink.getsockname(), codec="PCMU", payload_type=0)
        for k in range(3):
            src.sendto(RtpPacket(0, k, 160 * k, 1, b"\x11" * 160).serialize(), ("127.0.0.1", session.streams[0].rtp_port))
        got = self.pump(sink, 3)
        self.assertEqual([RtpPacket.parse(d).payload for d in got], [b"\x11" * 160] * 3)

    def test_socket_error_keeps_port(self) -> None:
        """
        An ICMP error on a forward's connected socket is collected by a read
        and the port stays registered.
        """
        src, sink = self.sock(), self.sock()
        gone = self.sock()
        gone_address = gone.getsockname()
        gone.close()
        session = self.relay.allocate_session(1)
        session.set_inbound(0, remote=src.getsockname())
        session.add_forward("gone", 1).connect(0, gone_address, codec="PCMU", payload_type=0)
        session.add_forward("live", 1).connect(0, sink.getsockname(), codec="PCMU", payload_type=0)
        for k in range(4):
            src.sendto(RtpPacket(0, k, 160 * k, 1, b"\x22" * 160).serialize(), ("127.0.0.1", session.streams[0].rtp_port))
        self.assertEqual(len(self.pump(sink, 4)), 4)
        for _ in range(3):
            self.reactor.doIteration(0.01)
        port = session.forwards["gone"].streams[0].listening
        self.assertIn(port.fileno(), self.reactor._selectables)
        self.assertIn(port, self.reactor.getReaders())
