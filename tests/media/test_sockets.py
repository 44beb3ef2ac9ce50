"""
Tests for L{aiconnect.media.sockets}: binding one relay port, the protocol
base's close, and address normalization.

The sockets are real (127.0.0.1); the reactor is a C{MemoryReactorClock},
never run.  Binding whole pairs through the relay, and running out of file
descriptors, are in L{tests.media.test_relay} and
L{tests.media.test_relay_limits}.
"""

from __future__ import annotations

import errno
import socket

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.media.ports import PortPool
from aiconnect.media.sockets import Endpoint, PortBindError, PortBinder, RelayPort, normalize_address

#: Clear of the other media tests' ranges.
PORTS = (64400, 64409)


def squat(case: SynchronousTestCase, port: int) -> None:
    """
    Hold a loopback UDP port until the test ends.
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    case.addCleanup(s.close)
    s.bind(("127.0.0.1", port))


class PortBinderTests(SynchronousTestCase):
    """
    L{PortBinder.listen} binds one socket for an endpoint.
    """

    def setUp(self) -> None:
        self.exhausted: list[None] = []
        self.binder = PortBinder(MemoryReactorClock(), "127.0.0.1", PortPool(*PORTS), lambda: self.exhausted.append(None))

    def test_taken_port_named(self) -> None:
        """
        A port another socket holds raises L{PortBindError} (an C{OSError},
        C{EADDRINUSE}) carrying that port, so the binder can set its pair
        aside; the endpoint stays unbound.
        """
        squat(self, PORTS[0] + 1)
        endpoint = Endpoint()
        with self.assertRaises(PortBindError) as caught:
            self.binder.listen(endpoint, PORTS[0] + 1)
        self.assertEqual(caught.exception.port, PORTS[0] + 1)
        self.assertEqual(caught.exception.errno, errno.EADDRINUSE)
        self.assertIsNone(endpoint.listening)
        self.assertEqual(self.exhausted, [])

    def test_listen_attaches(self) -> None:
        """
        A free port is bound with a L{RelayPort} (the reactor provides
        C{IReactorFDSet}) and attached to the endpoint.
        """
        endpoint = Endpoint()
        self.binder.listen(endpoint, PORTS[0])
        self.addCleanup(endpoint.close)
        self.assertIsInstance(endpoint.listening, RelayPort)
        self.assertEqual(endpoint.listening.getHost().port, PORTS[0])


class EndpointCloseTests(SynchronousTestCase):
    """
    L{Endpoint.close} frees the port at once and makes writes fail.
    """

    def test_close(self) -> None:
        """
        After close() the port can be bound by someone else, C{send} and
        C{sendto} raise C{EBADF}, and a second close() does nothing.
        """
        binder = PortBinder(MemoryReactorClock(), "127.0.0.1", PortPool(*PORTS), lambda: None)
        endpoint = Endpoint()
        binder.listen(endpoint, PORTS[0] + 2)
        endpoint.connect_peer(("127.0.0.1", 9))
        endpoint.close()
        endpoint.close()
        self.assertIsNone(endpoint.listening)
        squat(self, PORTS[0] + 2)
        for write in (lambda: endpoint.send(b"x"), lambda: endpoint.sendto(b"x", ("127.0.0.1", 9))):
            with self.assertRaises(OSError) as caught:
                write()
            self.assertEqual(caught.exception.errno, errno.EBADF)


class NormalizeAddressTests(SynchronousTestCase):
    """
    L{normalize_address} gives addresses in the form C{recvfrom} reports.
    """

    def test_canonical(self) -> None:
        """
        IPv6 literals are canonical; IPv4 stays as it is; C{None} passes.
        """
        self.assertEqual(normalize_address(("2001:DB8:0::0001", 5004)), ("2001:db8::1", 5004))
        self.assertEqual(normalize_address(("127.0.0.1", 5004)), ("127.0.0.1", 5004))
        self.assertIsNone(normalize_address(None))

    def test_rejected(self) -> None:
        """
        A host name or a port out of range raises C{ValueError}.
        """
        self.assertRaises(ValueError, normalize_address, ("example.com", 5004))
        self.assertRaises(ValueError, normalize_address, ("127.0.0.1", 0))
        self.assertRaises(ValueError, normalize_address, ("127.0.0.1", 65536))
