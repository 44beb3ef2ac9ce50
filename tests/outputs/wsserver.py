# -*- test-case-name: tests.outputs.test_stream,tests.outputs.test_stream_flow -*-
"""
A WebSocket server for tests, on a real 127.0.0.1 socket (port 0): Twisted's
own C{WebSocketResource} in a C{twisted.web} C{Site}, over TCP or TLS.

L{WsServer} records every handshake's headers and path and every message
of every connection (L{WsServerConnection}), and can refuse handshakes
with an HTTP status, stop reading (a consumer that does not keep up), or
drop connections.  L{silent_server} accepts TCP connections and never
answers; L{refused_port} is a port nobody listens on.

    server = WsServer()
    server.listen()
    ... connect to server.url("/audio?lang=sv") ...
    connection = await server.connection()
    await connection.wait_messages(3)

For the leg's side: L{FakeMedia} (the session's PCM tap, fed by hand),
L{ObserverLog} (what the leg reports) and L{tone_frames} (frames whose
samples are G.711 reference-table values, so that every encoding of them
can be checked exactly).
"""

from __future__ import annotations

import json
import os
from array import array
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.web.server import Request, Site
from twisted.web.websocket import WebSocketResource, WebSocketTransport
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import CloseConnection

from aiconnect import tlsutil
from aiconnect.config.records import TlsConfig
from aiconnect.media.pcm import FRAME_SAMPLES, PcmFrame, PcmSink
from tests.fakes import wait_until
from tests.integration.helpers import Certificates

__all__ = [
    "TABLES",
    "FakeMedia",
    "ObserverLog",
    "WsServer",
    "WsServerConnection",
    "refused_port",
    "silent_server",
    "tls_creator",
    "tone_frames",
]

with open(os.path.join(os.path.dirname(__file__), os.pardir, "data", "g711", "g711-tables.json")) as f:
    #: The G.711 reference tables (C{ulaw2linear16}, C{alaw2linear16} ...).
    TABLES: dict[str, Any] = json.load(f)


def _global_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class WsServerConnection:
    """
    One accepted WebSocket connection (a C{WebSocketProtocol}).

    @ivar path: the request's path and query string (C{/audio?lang=sv}).
    @ivar headers: the handshake's headers, (lower-case name, value) pairs.
    @ivar messages: every message, in order: C{str} for text, C{bytes} for
        binary.
    @ivar close_codes: the close codes of the Close frames the peer sent
        (read from the raw bytes by a parser of our own).
    @ivar closed: fires with C{None} when the connection is lost.
    @ivar close_reason: then, why (a failure).
    """

    def __init__(self, server: WsServer, request: Request) -> None:
        self._server = server
        self._request = request
        self.path = request.uri.decode("ascii")
        self.headers = _headers(request)
        self.messages: list[str | bytes] = []
        self.close_codes: list[int] = []
        self.closed: defer.Deferred[None] = defer.Deferred()
        self.close_reason: Failure | None = None
        self.transport: WebSocketTransport | None = None

    # -- WebSocketProtocol -----------------------------------------------------

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        """
        Keep the transport; watch the raw bytes for Close frames.
        """
        self.transport = transport
        channel = self._request.channel
        deliver = channel.dataReceived
        parser = Connection(ConnectionType.SERVER)

        def tee(data: bytes) -> None:
            parser.receive_data(data)
            for event in parser.events():
                if isinstance(event, CloseConnection):
                    self.close_codes.append(event.code)
            deliver(data)

        channel.dataReceived = tee
        if self._server.stop_reading:
            self.stop_reading()

    def negotiationFinished(self) -> None:
        """
        The handshake is done.
        """
        self._server.connections.append(self)

    def textMessageReceived(self, message: str) -> None:
        """
        Keep it.
        """
        self.messages.append(message)

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        """
        Keep it.
        """
        self.messages.append(bytes(data))

    def pongReceived(self, payload: bytes) -> None:
        """
        Ignored.
        """

    def connectionLost(self, reason: Failure) -> None:
        """
        Fire L{closed}.
        """
        if not self.closed.called:
            self.close_reason = reason
            self.closed.callback(None)

    # -- reading the messages --------------------------------------------------

    @property
    def texts(self) -> list[Any]:
        """
        The text messages, decoded from JSON.
        """
        return [json.loads(m) for m in self.messages if isinstance(m, str)]

    @property
    def binaries(self) -> list[bytes]:
        """
        The binary messages.
        """
        return [m for m in self.messages if isinstance(m, bytes)]

    def header(self, name: str) -> list[str]:
        """
        The values of the handshake header C{name}.
        """
        return [v for n, v in self.headers if n == name.lower()]

    async def wait_messages(self, count: int, timeout: float = 5.0) -> list[str | bytes]:
        """
        Wait until at least C{count} messages came.
        """
        await wait_until(lambda: len(self.messages) >= count, timeout, what=lambda: "%d messages, got %d" % (count, len(self.messages)))
        return self.messages

    async def wait_closed(self, timeout: float = 5.0) -> Failure:
        """
        Wait until the connection is lost; return why.
        """
        await wait_until(lambda: self.closed.called, timeout, what="the connection to close")
        assert self.close_reason is not None
        return self.close_reason

    # -- misbehaving -------------------------------------------------------------

    def _socket(self) -> Any:
        return self._request.channel.transport

    def stop_reading(self) -> None:
        """
        Read nothing more (the peer's sends back up).
        """
        self._socket().pauseProducing()

    def resume_reading(self) -> None:
        """
        Read again.
        """
        self._socket().resumeProducing()

    def drop(self) -> None:
        """
        Drop the connection: no Close frame, no TCP close handshake.
        """
        self._socket().abortConnection()


def _headers(request: Request) -> list[tuple[str, str]]:
    return [
        (name.decode("latin-1").lower(), value.decode("latin-1"))
        for name, values in request.requestHeaders.getAllRawHeaders()
        for value in values
    ]


class _Resource(WebSocketResource):
    """
    Twisted's WebSocket resource on every path, recording each handshake
    and refusing it when the server says so; it is its own factory.
    """

    isLeaf = True

    def __init__(self, server: WsServer) -> None:
        super().__init__(self)
        self._server = server

    def buildProtocol(self, request: Request) -> WsServerConnection:
        return WsServerConnection(self._server, request)

    def render_GET(self, request: Request) -> bytes | int:
        self._server.handshakes.append((request.uri.decode("ascii"), _headers(request)))
        self._server.handshake_times.append(self._server.seconds())
        if self._server.refuse is not None:
            request.setResponseCode(self._server.refuse)
            return b"refused\n"
        return super().render_GET(request)


class WsServer:
    """
    A WebSocket server on 127.0.0.1 (TCP, or TLS with L{Certificates}).

    @ivar refuse: when set, each handshake is answered with this HTTP
        status instead.
    @ivar stop_reading: when set, each new connection stops reading right
        after its handshake.
    @ivar handshakes: each handshake request, refused or not: (path,
        headers).
    @ivar handshake_times: when each came (the reactor's seconds).
    @ivar connections: each accepted connection, in order.
    """

    def __init__(self, certificates: Certificates | None = None, reactor: Any = None) -> None:
        self._reactor = reactor if reactor is not None else _global_reactor()
        self._certificates = certificates
        self.refuse: int | None = None
        self.stop_reading = False
        self.handshakes: list[tuple[str, list[tuple[str, str]]]] = []
        self.handshake_times: list[float] = []
        self.connections: list[WsServerConnection] = []
        self._port: IListeningPort | None = None

    def listen(self, port: int = 0) -> int:
        """
        Listen on 127.0.0.1 (C{port} 0: a free one).

        @return: the port.
        """
        site = Site(_Resource(self))
        if self._certificates is None:
            self._port = self._reactor.listenTCP(port, site, interface="127.0.0.1")
        else:
            certs = self._certificates
            tls = TlsConfig(certificate=str(certs.cert), private_key=str(certs.key), ca_certificates=str(certs.ca))
            self._port = self._reactor.listenSSL(port, site, tlsutil.server_context_factory(tls), interface="127.0.0.1")
        return self.port

    def seconds(self) -> float:
        """
        The reactor's time.
        """
        return float(self._reactor.seconds())

    @property
    def port(self) -> int:
        """
        The listening port.
        """
        assert self._port is not None
        return self._port.getHost().port

    def url(self, resource: str = "/audio", host: str = "127.0.0.1") -> str:
        """
        The C{ws://} (or C{wss://}) URL of C{resource}.
        """
        scheme = "ws" if self._certificates is None else "wss"
        return "%s://%s:%d%s" % (scheme, host, self.port, resource)

    async def connection(self, index: int = 0, timeout: float = 5.0) -> WsServerConnection:
        """
        The C{index}th connection, once it is accepted.
        """
        await wait_until(lambda: len(self.connections) > index, timeout, what="connection #%d" % (index,))
        return self.connections[index]

    def drop_all(self) -> None:
        """
        Drop every connection.
        """
        for connection in self.connections:
            if not connection.closed.called:
                connection.drop()

    async def close(self) -> None:
        """
        Stop listening and drop every connection.
        """
        self.drop_all()
        if self._port is not None:
            port, self._port = self._port, None
            await port.stopListening()


def silent_server(reactor: Any = None) -> IListeningPort:
    """
    A TCP server on 127.0.0.1 that accepts connections and never answers.
    """
    reactor = reactor if reactor is not None else _global_reactor()
    return reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")


async def refused_port(reactor: Any = None) -> int:
    """
    A 127.0.0.1 port nobody listens on (it listened a moment ago).
    """
    port = silent_server(reactor)
    number: int = port.getHost().port
    await port.stopListening()
    return number


def tls_creator(certificates: Certificates) -> Any:
    """
    The verified TLS client trusting C{certificates}' CA: what a leg gets as
    C{tls_creator}.
    """
    tls = TlsConfig(certificate="", private_key="", ca_certificates=str(certificates.ca))
    return lambda host: tlsutil.client_context_factory(host, tls)


# -- the leg's side ---------------------------------------------------------------


def _tone(table: str, index: int, offset: int) -> array[int]:
    values = TABLES[table]
    start = index * FRAME_SAMPLES + offset
    return array("h", [values[(start + k) % 256] for k in range(FRAME_SAMPLES)])


def tone_frames(
    count: int,
    first: int = 0,
    caller: str = "ulaw2linear16",
    callee: str = "alaw2linear16",
    callee_offset: int = 128,
) -> list[PcmFrame]:
    """
    C{count} frames from index C{first}: relay stream 0 (the caller) walks
    through the C{caller} reference table, stream 1 (the called party)
    through C{callee}'s from code C{callee_offset} on, so that each frame
    differs and every sample is a G.711 code's exact value.
    """
    return [
        PcmFrame(i, (_tone(caller, i, 0), _tone(callee, i, callee_offset))) for i in range(first, first + count)
    ]


class FakeMedia:
    """
    A session's PCM tap fed by hand (L{aiconnect.legs.MediaSession}'s
    C{attach_pcm} / C{detach_pcm}).

    @ivar sinks: the attached sinks.
    @ivar fed: how many frames L{feed} gave.
    """

    def __init__(self) -> None:
        self.sinks: list[PcmSink] = []
        self.fed = 0

    def attach_pcm(self, sink: PcmSink) -> None:
        """
        Attach C{sink}.
        """
        self.sinks.append(sink)

    def detach_pcm(self, sink: PcmSink) -> None:
        """
        Detach C{sink} (no error if it was not attached).
        """
        if sink in self.sinks:
            self.sinks.remove(sink)

    def feed(self, frames: list[PcmFrame]) -> None:
        """
        Give each frame to each attached sink.
        """
        for frame in frames:
            self.fed += 1
            for sink in list(self.sinks):
                sink.pcm_frame(frame)


class ObserverLog:
    """
    An L{aiconnect.legs.OutputObserver} keeping each report as a tuple:
    C{("started", id, detail)}, C{("failed", id, reason)},
    C{("stopped", id, stopped_by, detail)}.
    """

    def __init__(self) -> None:
        self.reports: list[tuple[Any, ...]] = []

    def output_started(self, output_id: str, detail: Any) -> None:
        """
        Keep a C{started} report.
        """
        self.reports.append(("started", output_id, dict(detail)))

    def output_failed(self, output_id: str, reason: str) -> None:
        """
        Keep a C{failed} report.
        """
        self.reports.append(("failed", output_id, reason))

    def output_stopped(self, output_id: str, stopped_by: str, detail: Any) -> None:
        """
        Keep a C{stopped} report.
        """
        self.reports.append(("stopped", output_id, stopped_by, dict(detail)))

    def output_uploaded(self, output_id: str, url: str, status: int | str) -> None:
        """
        Keep an C{uploaded} report.
        """
        self.reports.append(("uploaded", output_id, url, status))

    def kinds(self) -> list[str]:
        """
        The kind of each report, in order.
        """
        return [r[0] for r in self.reports]

    async def wait(self, kind: str, timeout: float = 5.0) -> tuple[Any, ...]:
        """
        The first report of C{kind}, once it came.
        """

        def first() -> tuple[Any, ...] | None:
            return next((r for r in self.reports if r[0] == kind), None)

        return await wait_until(first, timeout, what=lambda: "a %r report; got %r" % (kind, self.reports))
