# -*- test-case-name: tests.sip.test_transport_limits,tests.sip.test_resolver,tests.test_config -*-
"""
Where a SIP message came from or goes to, and the seams between the
transport layer, the transaction layer and the transaction user: L{Peer},
the default port of each transport, the limits of stream connections
(L{ConnectionLimits}) and the L{SipTransportLike} / L{MessageReceiver}
protocols.

Pure module: no Twisted imports beyond typing, no sockets, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from aiconnect.sip.message import Message, Request, Response

#: Transports we speak; C{reliable} ones have no retransmission timers
#: (RFC 3261 s17.1.1.2).
TRANSPORTS = ("udp", "tcp", "tls")

#: The port used when neither a URI, a Via nor an SRV record gives one
#: (RFC 3261 s19.1.2, s18.2.2).
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """
    How many inbound TCP/TLS connections the transport keeps, and how long
    each may stay quiet.  The configuration's C{[limits]} carries the same
    keys (SPEC s12) and builds one of these; the defaults are those of the
    configuration file.

    @ivar max_connections: the most inbound TCP and TLS connections open at
        once; a new one beyond it is closed.
    @ivar tls_handshake_timeout: the seconds from accept to a finished TLS
        handshake.
    @ivar header_timeout: the seconds from the first octet of a stream
        message to its last one.
    @ivar idle_timeout: the seconds a connection may carry no complete
        message, either way.
    """

    max_connections: int = 2000
    tls_handshake_timeout: float = 10.0
    header_timeout: float = 30.0
    idle_timeout: float = 300.0


@dataclass(frozen=True, slots=True)
class Peer:
    """
    A remote transport address.

    @ivar transport: C{"udp"}, C{"tcp"} or C{"tls"}.
    @ivar host: an IP address literal, without brackets.
    @ivar port: the port.
    @ivar server_name: for outbound TLS, the name the certificate must carry
        (RFC 5922); C{None} means C{host}.
    @ivar connection: for a message received over TCP/TLS, the connection it
        arrived on (responses go back on it, RFC 3261 s18.2.2); not compared.
    """

    transport: str
    host: str
    port: int
    server_name: str | None = field(default=None, compare=False)
    connection: Any = field(default=None, compare=False, repr=False)

    @property
    def reliable(self) -> bool:
        """
        Whether the transport is reliable (TCP, TLS).
        """
        return self.transport != "udp"

    @property
    def via_transport(self) -> str:
        """
        The Via transport token (C{UDP}, C{TCP}, C{TLS}).
        """
        return self.transport.upper()

    def __str__(self) -> str:
        host = "[%s]" % (self.host,) if ":" in self.host else self.host
        return "%s:%d;transport=%s" % (host, self.port, self.transport)


class SipTransportLike(Protocol):
    """
    What the transaction layer needs from the transport layer.
    """

    def send_request(self, request: Request, peer: Peer) -> Deferred[None]:
        """
        Send a request to C{peer}, opening or reusing a connection for TCP/TLS.
        The Deferred fails on a connect/TLS failure.
        """

    def send_response(self, response: Response, source: Peer) -> Deferred[None]:
        """
        Send a response, routed per RFC 3261 s18.2.2 from the top Via and the
        request's C{source}.
        """

    def local_via(self, peer: Peer) -> tuple[str, str]:
        """
        The Via transport token and sent-by (C{host:port}) to use towards
        C{peer}.
        """


class MessageReceiver(Protocol):
    """
    What the transport layer calls with each well-formed message.

    A receiver may also offer C{absorb_repeat(data, source) -> bool} (the
    transaction layer does): the transport calls it with each UDP datagram
    before parsing it, and parses only when it returns C{False} (a
    retransmission it recognised is handled without a parse).
    """

    def message_received(self, message: Message, source: Peer) -> None:
        """
        A parsed message arrived from C{source}.
        """
