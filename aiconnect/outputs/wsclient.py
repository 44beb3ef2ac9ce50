# -*- test-case-name: tests.outputs.test_stream,tests.outputs.test_stream_flow -*-
"""
One WebSocket client connection of a stream (SPEC s8), on Twisted's own
client (C{twisted.web.websocket}, built on wsproto): L{connect} opens it
(TCP, TLS verified as for trunks, the handshake with extra headers, all
within a timeout) and reports to its L{ConnectionOwner}; once open, the
L{WsClientConnection} sends messages and is the push producer of its
transport, so its owner knows when the send buffer is full.

Twisted's C{WebSocketClientEndpoint.connect} sends no extra handshake
headers, so L{WsClientConnection.open} drives Twisted's wire protocol
(C{_WebSocketWireProtocol}) itself, as that method does, with its own
handshake request; framing, the close handshake and pings stay Twisted's.

L{StreamTarget} takes a stream URL apart; L{failure_reason} names why a
connection could not open (C{HTTP 403}, C{TLS: ...}, C{connect: ...},
C{timeout}), without URL or headers.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import defer
from twisted.internet.error import (
    ConnectError,
    ConnectionClosed,
    ConnectionRefusedError,
    DNSLookupError,
    NoRouteError,
    TCPTimedOutError,
)
from twisted.internet.interfaces import IDelayedCall, IOpenSSLClientConnectionCreator, IPushProducer
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure
from twisted.web.client import URI
from twisted.web.iweb import IPolicyForHTTPS
from twisted.web.websocket import ConnectionRejected, WebSocketClientEndpoint, WebSocketTransport
from twisted.web._websocket_impl import _WebSocketWireProtocol
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import Request as WsRequest

from aiconnect.outputs.wsmessages import masked_binary_frame
from zope.interface import implementer

__all__ = [
    "MAX_INBOUND_MESSAGE",
    "ConnectionOwner",
    "StreamTarget",
    "WsClientConnection",
    "failure_reason",
]

#: The most a consumer may send us in one message (we read nothing it
#: sends, but Twisted gathers a fragmented message whole): beyond it the
#: connection is aborted.
MAX_INBOUND_MESSAGE = 64 * 1024


@dataclass(frozen=True, slots=True)
class StreamTarget:
    """
    A stream URL, taken apart.

    @ivar scheme: C{ws} or C{wss}.
    @ivar host: the host name (IDNA) or IP literal (IPv6 without brackets).
    @ivar port: the port (80 / 443 by default).
    @ivar resource: the path and query string sent in the handshake.
    @ivar public: the URL without query string or credentials (events,
        logs).
    @ivar authorization: a C{Basic} C{Authorization} value from the URL's
        credentials, or C{None}.
    """

    scheme: str
    host: str
    port: int
    resource: str
    public: str
    authorization: str | None = None

    @classmethod
    def parse(cls, url: str) -> StreamTarget:
        """
        @raise ValueError: not a C{ws://} or C{wss://} URL with a host.
        """
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError("not a ws:// or wss:// URL")
        try:
            # An internationalised name travels as its ASCII (IDNA) form.
            host = parts.hostname if parts.hostname.isascii() else parts.hostname.encode("idna").decode("ascii")
            port = parts.port or (443 if scheme == "wss" else 80)
        except UnicodeError:
            raise ValueError("bad host name") from None
        netloc = "[%s]" % (host,) if ":" in host else host
        if parts.port is not None:
            netloc += ":%d" % (port,)
        path = parts.path or "/"
        resource = path + ("?" + parts.query if parts.query else "")
        authorization = None
        if parts.username is not None:
            credentials = "%s:%s" % (parts.username, parts.password or "")
            authorization = "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")
        return cls(scheme, host, port, resource, "%s://%s%s" % (scheme, netloc, path), authorization)

    def host_header(self) -> str:
        """
        The C{Host} header: the host, and the port unless it is the
        scheme's default (RFC 6455 s4.1).
        """
        host = "[%s]" % (self.host,) if ":" in self.host else self.host
        if self.port != (443 if self.scheme == "wss" else 80):
            host += ":%d" % (self.port,)
        return host

    def uri(self) -> URI:
        """
        What Twisted's endpoint factory connects to.
        """
        host = self.host.encode("ascii")
        netloc = b"%s:%d" % (host, self.port)
        return URI(self.scheme.encode("ascii"), netloc, host, self.port, b"/", b"", b"", b"")


def _ssl_reason(error: SSL.Error) -> str:
    """
    The last reason OpenSSL gave (C{certificate verify failed}).
    """
    reasons = error.args[0] if error.args else None
    if isinstance(reasons, list) and reasons and isinstance(reasons[-1], tuple):
        return str(reasons[-1][-1]) or "handshake failed"
    return str(error) or "handshake failed"


def failure_reason(failure: Failure) -> str:
    """
    A C{STREAMFAILED} reason (SPEC s8) for why a connection could not be
    opened: C{HTTP 403}, C{TLS: ...}, C{connect: ...}, C{timeout}.  Short
    and free of secrets (no URL, no header).
    """
    if failure.check(ConnectionRejected):
        return "HTTP %d" % (failure.value.response.code,)
    if failure.check(SSL.Error):
        return "TLS: " + _ssl_reason(failure.value)
    if failure.check(VerificationError):
        return "TLS: certificate does not match the host"
    if failure.check(defer.TimeoutError, TCPTimedOutError, defer.CancelledError):
        return "timeout"
    if failure.check(ConnectionRefusedError):
        return "connect: connection refused"
    if failure.check(DNSLookupError):
        return "connect: DNS lookup failed"
    if failure.check(NoRouteError):
        return "connect: no route to host"
    if failure.check(ConnectionClosed):
        return "connect: connection closed during the handshake"
    if failure.check(ConnectError):
        return "connect: " + (failure.value.osError or type(failure.value).__name__)
    return "connect: " + type(failure.value).__name__


@implementer(IPolicyForHTTPS)
class _TlsPolicy:
    """
    Twisted's HTTPS policy seam, answered by the trunks' verified TLS
    client (C{tls_creator(host)}).
    """

    def __init__(self, tls_creator: Callable[[str], IOpenSSLClientConnectionCreator]) -> None:
        self._tls_creator = tls_creator

    def creatorForNetloc(self, hostname: bytes, port: int) -> IOpenSSLClientConnectionCreator:
        """
        The connection creator verifying C{hostname}.
        """
        return self._tls_creator(hostname.decode("idna"))


class _CappedWire(_WebSocketWireProtocol[Any]):
    """
    Twisted's WebSocket wire protocol, aborting a connection whose peer
    sends a message larger than L{MAX_INBOUND_MESSAGE}.
    """

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        if len(self._textBuffer.data) + len(self._bytesBuffer.data) > MAX_INBOUND_MESSAGE:
            self.transport.abortConnection()  # type: ignore[attr-defined]


def _handshake(target: StreamTarget, headers: tuple[tuple[str, str], ...]) -> Callable[[Any, Any], None]:
    """
    The wire protocol's bootstrap: write the handshake request, with the
    order's extra headers (and C{Authorization} from the URL's credentials
    unless the order sets one).

    @raise ValueError: a header h11 would refuse (tried once here, so that
        it never fails inside the connection).
    """
    try:
        extra = [(name.encode("ascii"), value.encode("utf-8")) for name, value in headers]
    except UnicodeError:
        raise ValueError("bad handshake header") from None
    names = {name.lower() for name, _ in headers}
    if target.authorization is not None and "authorization" not in names:
        extra.append((b"Authorization", target.authorization.encode("ascii")))

    def request() -> WsRequest:
        return WsRequest(target.host_header(), target.resource, extra_headers=extra)

    try:
        WSConnection(ConnectionType.CLIENT).send(request())
    except Exception:
        raise ValueError("bad handshake header") from None

    def bootstrap(connection: Any, transport: Any) -> None:
        transport.write(connection.send(request()))

    return bootstrap

class ConnectionOwner(Protocol):
    """
    What a L{WsClientConnection} reports to (the L{aiconnect.outputs.stream.StreamLeg}):
    once L{connection_opened} or L{connection_failed}; after an opening,
    L{connection_lost} once; L{connection_writable} whenever the send
    buffer has room again.
    """

    def connection_opened(self, connection: WsClientConnection) -> None:
        """
        The handshake is done.
        """

    def connection_failed(self, connection: WsClientConnection, reason: str) -> None:
        """
        It could not open (a L{failure_reason}, or C{timeout}).
        """

    def connection_lost(self, connection: WsClientConnection) -> None:
        """
        The open connection is gone.
        """

    def connection_writable(self, connection: WsClientConnection) -> None:
        """
        The transport takes data again.
        """


@implementer(IPushProducer)
class WsClientConnection:
    """
    One connection attempt and, once its handshake is done, the open
    connection: the L{twisted.web.websocket.WebSocketProtocol} Twisted
    reports to, and the push producer of its transport.

    @ivar paused: the transport asked us to stop writing (or the
        connection cannot take more).
    """

    def __init__(self, reactor: Any, owner: ConnectionOwner, timeout: float) -> None:
        """
        @param reactor: times the attempt out.
        @param owner: where the connection reports.
        @param timeout: seconds the attempt may take (TCP, TLS, handshake).
        """
        self._reactor = reactor
        self._owner = owner
        self._wire: WebSocketTransport | None = None
        #: The direct socket writer of the audio frames (L{direct_writer}).
        self._write: Callable[[bytes], None] | None = None
        self._settled = False
        self._open = False
        self.paused = False
        self._connecting: defer.Deferred[Any] | None = None
        self._timer: IDelayedCall | None = reactor.callLater(timeout, self._timed_out)

    def open(
        self,
        target: StreamTarget | None,
        headers: tuple[tuple[str, str], ...],
        tls_creator: Callable[[str], IOpenSSLClientConnectionCreator],
    ) -> None:
        """
        Connect to C{target} and run the handshake; the owner hears how it
        went (possibly at once: a bad URL or header).

        @param target: where to (L{None}: a URL L{StreamTarget.parse}
            refused).
        @param headers: extra handshake headers, (name, value) pairs.
        @param tls_creator: the verified TLS client for a host (C{wss://}).
        """
        if target is None:
            self._settle("connect: not a ws:// or wss:// URL")
            return
        try:
            bootstrap = _handshake(target, headers)
        except ValueError as e:
            self._settle("connect: %s" % (e,))
            return
        try:
            endpoint = WebSocketClientEndpoint.new(
                self._reactor, target.public, tlsPolicy=_TlsPolicy(tls_creator)
            ).endpointFactory.endpointForURI(target.uri())
        except Exception as e:
            # tls_creator could not load its trust store, say.
            self._settle(("TLS: " if target.scheme == "wss" else "connect: ") + type(e).__name__)
            return
        factory = Factory.forProtocol(lambda: _CappedWire(WSConnection(ConnectionType.CLIENT), bootstrap, self))
        self._connecting = endpoint.connect(factory)
        self._connecting.addCallbacks(self._connected, self._failed)

    # -- the attempt ---------------------------------------------------------

    def _connected(self, wire: _CappedWire) -> None:
        self._connecting = None
        done = getattr(wire, "_done", None)
        if done is not None:
            done.addErrback(self._failed)

    def _failed(self, failure: Failure) -> None:
        self._connecting = None
        if failure.check(ConnectionRejected):
            self._abort()
        self._settle(failure_reason(failure))

    def _timed_out(self) -> None:
        self._timer = None
        if not self._settled:
            self._settle("timeout")
            self.cancel()

    def _settle(self, reason: str) -> None:
        if self._settled:
            return
        self._settled = True
        self._cancel_timer()
        self._owner.connection_failed(self, reason)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def cancel(self) -> None:
        """
        Give the attempt up without reporting (a stop, or a timeout that
        was reported): cancel the TCP connect, or abort the connection.
        """
        self._settled = True
        self._cancel_timer()
        if self._connecting is not None:
            connecting, self._connecting = self._connecting, None
            connecting.cancel()
        self._abort()

    # -- WebSocketProtocol ---------------------------------------------------

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        """
        TCP (and TLS) is up; the handshake request is being sent.
        """
        self._wire = transport

    def negotiationFinished(self) -> None:
        """
        The handshake is done: the connection is open.
        """
        if self._settled:
            return
        self._settled = True
        self._open = True
        self._cancel_timer()
        assert self._wire is not None
        self._wire.attachProducer(self)
        self._write = direct_writer(getattr(self._wire, "transport", None))
        self._owner.connection_opened(self)

    def textMessageReceived(self, message: str) -> None:
        """
        Ignored: the consumer has nothing to tell us.
        """

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        """
        Ignored.
        """

    def pongReceived(self, payload: bytes) -> None:
        """
        Ignored.
        """

    def connectionLost(self, reason: Failure) -> None:
        """
        Before the handshake: the attempt failed (TLS, a closed
        connection); after: the connection is lost.
        """
        self.paused = True
        self._wire = None
        self._write = None
        if not self._settled:
            self._settle(failure_reason(reason))
        elif self._open:
            self._open = False
            self._owner.connection_lost(self)

    # -- IPushProducer -------------------------------------------------------

    def pauseProducing(self) -> None:
        """
        The transport's send buffer is full.
        """
        self.paused = True

    def resumeProducing(self) -> None:
        """
        The transport's send buffer has room again.
        """
        if self._wire is not None:
            self.paused = False
            self._owner.connection_writable(self)

    def stopProducing(self) -> None:
        """
        The transport is going away.
        """
        self.paused = True

    # -- sending -------------------------------------------------------------

    def send(self, message: str | bytes) -> bool:
        """
        Send one message.

        @return: C{False} when the connection cannot take it (it is
            closing): it is then aborted, and reported lost.
        """
        wire = self._wire
        if wire is None:
            return False
        try:
            if isinstance(message, str):
                wire.sendTextMessage(message)
            elif self._write is not None and wire._wsconn.state is ConnectionState.OPEN:  # type: ignore[attr-defined]
                # The audio frames: framed and masked here, written
                # straight to the socket when Twisted holds nothing for it.
                self._write(masked_binary_frame(message, os.urandom(4)))
            else:
                wire.sendBytesMessage(message)
        except Exception:
            # wsproto refuses to send once the peer's Close has arrived.
            self.paused = True
            self._abort()
            return False
        return True

    def close(self) -> None:
        """
        Close with code 1000 (RFC 6455 s7.4.1).
        """
        wire = self._wire
        if wire is None:
            return
        try:
            wire.loseConnection(1000)
        except Exception:
            self._abort()

    def _abort(self) -> None:
        wire = self._wire
        transport = getattr(wire, "transport", None) if wire is not None else None
        if transport is not None:
            transport.abortConnection()


def direct_writer(transport: Any) -> Callable[[bytes], None] | None:
    """
    A write function for a plain TCP transport that sends on its socket at
    once when Twisted has nothing buffered for it (the usual case: one
    frame per 20 ms), sparing the reactor a write-readiness round trip
    per frame; whatever the socket does not take goes through
    C{transport.write}, so ordering, buffering and the producer's
    back-pressure stay Twisted's.  L{None} for other transports (TLS):
    their messages go through wsproto and C{transport.write}.
    """
    from twisted.internet import tcp

    if not isinstance(transport, tcp.Connection):
        return None
    sock = transport.socket
    write = transport.write

    def send(data: bytes) -> None:
        if transport.dataBuffer or transport._tempDataBuffer or transport.disconnecting or not transport.connected:
            write(data)
            return
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            write(data)  # Twisted finds and reports the error
            return
        if sent < len(data):
            write(data[sent:])

    return send
