# -*- test-case-name: tests.outputs.test_stream,tests.outputs.test_stream_flow -*-
"""
A session's live audio to an AI engine over WebSocket (SPEC s8):
L{StreamLeg}, the L{aiconnect.legs.OutputLeg} of a C{startStream} order.

The leg connects with Twisted's own WebSocket client
(C{twisted.web.websocket}, on wsproto) to the order's C{ws://} or
C{wss://} URL (certificates verified as for trunks), sends its extra
handshake headers, and once the handshake is done takes the session's
20 ms frames (L{aiconnect.media.pcm.PcmSink}) and sends each one at once in
the order's C{protocol} (L{aiconnect.outputs.wsmessages}).

Flow control: the leg is a push producer of the connection.  While the
transport's send buffer is full (a consumer that does not keep up), and
while a dropped connection is being re-established (back-off from 0.5 s,
doubling, at most 4 s, for C{[streams] reconnect_for} seconds), frames wait
in a buffer of at most C{[streams] max_buffer} seconds; beyond it the
oldest are dropped and counted.  So a slow consumer never blocks the
reactor and memory stays bounded: the buffer, plus one send buffer of the
transport.

Twisted's C{WebSocketClientEndpoint.connect} sends no extra handshake
headers, so L{StreamLeg} drives the same wire protocol
(C{_WebSocketWireProtocol}) itself, as that method does, with its own
handshake request (L{_handshake}); the rest (framing, the close handshake,
pings) is Twisted's.  It never logs header values, query strings or
credentials.
"""

from __future__ import annotations

import base64
import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
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
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import URI
from twisted.web.iweb import IPolicyForHTTPS
from twisted.web.websocket import ConnectionRejected, WebSocketClientEndpoint, WebSocketTransport
from twisted.web._websocket_impl import _WebSocketWireProtocol
from wsproto import ConnectionType, WSConnection
from wsproto.events import Request as WsRequest
from zope.interface import implementer

from aiconnect.config.records import StreamsConfig
from aiconnect.legs import MediaSession, OutputObserver
from aiconnect.media.pcm import FRAME_SECONDS, PcmFrame
from aiconnect.outputs.context import OutputContext
from aiconnect.outputs.orders import StreamOrder
from aiconnect.outputs.wsmessages import FRAME_MS, StreamMessages, messages_for

__all__ = ["StreamLeg", "StreamState", "StreamTarget", "failure_reason"]

#: Back-off between reconnection attempts: first delay, and the most.
RETRY_INITIAL = 0.5
RETRY_MAX = 4.0
#: Seconds the close handshake may take before the connection is aborted.
CLOSE_TIMEOUT = 2.0
#: The most a consumer may send us in one message (we read nothing it
#: sends, but Twisted gathers a fragmented message whole): beyond it the
#: connection is aborted.
MAX_INBOUND_MESSAGE = 64 * 1024


class StreamState(enum.Enum):
    """
    Where a L{StreamLeg} is.
    """

    IDLE = "idle"
    CONNECTING = "connecting"
    RUNNING = "running"
    RECONNECTING = "reconnecting"
    CLOSING = "closing"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class StreamTarget:
    """
    A stream URL, taken apart.

    @ivar scheme: C{ws} or C{wss}.
    @ivar host: the host name or IP literal (IPv6 without brackets).
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
        host = parts.hostname
        port = parts.port or (443 if scheme == "wss" else 80)
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
        host = self.host.encode("idna") if not self.host.isascii() else self.host.encode("ascii")
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


@implementer(IPushProducer)
class _Connection:
    """
    One connection attempt and, once its handshake is done, the open
    connection: the L{twisted.web.websocket.WebSocketProtocol} Twisted
    reports to, and the push producer of its transport.  It reports to its
    leg once: L{StreamLeg._opened} or L{StreamLeg._not_opened}; after an
    opening, L{StreamLeg._lost}.

    @ivar paused: the transport asked us to stop writing (or the
        connection cannot take more).
    """

    def __init__(self, leg: StreamLeg, timeout: float) -> None:
        self._leg = leg
        self._reactor = leg._reactor
        self._wire: WebSocketTransport | None = None
        self._settled = False
        self._open = False
        self.paused = False
        self._connecting: defer.Deferred[Any] | None = None
        self._timer: IDelayedCall | None = self._reactor.callLater(timeout, self._timed_out)

    def connect(self, endpoint: Any, bootstrap: Callable[[Any, Any], None]) -> None:
        """
        Connect C{endpoint} and run the handshake.
        """
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
        self._leg._not_opened(self, reason)

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
        self._leg._opened(self)

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
        if not self._settled:
            self._settle(failure_reason(reason))
        elif self._open:
            self._open = False
            self._leg._lost(self)

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
            self._leg._flush()

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


class StreamLeg:
    """
    One C{startStream} order's WebSocket stream (SPEC s8): an
    L{aiconnect.legs.OutputLeg} and an L{aiconnect.media.pcm.PcmSink}.

    It reports to its observer: C{output_started} when the handshake is
    done (then it takes frames), or C{output_failed} (C{HTTP 403},
    C{TLS: ...}, C{connect: ...}, C{timeout}); C{output_stopped} after
    L{stop} (also before the handshake: never both failed and stopped), or
    on its own with C{stopped_by="error"} when reconnecting gave up.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        observer: OutputObserver,
        stream_id: str,
        order: StreamOrder,
        context: OutputContext,
        media: MediaSession,
        config: StreamsConfig,
        tls_creator: Callable[[str], IOpenSSLClientConnectionCreator],
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        """
        @param reactor: TCP, time and name resolution.
        @param observer: where the leg reports (the runner).
        @param stream_id: the stream's id.
        @param order: the C{startStream} order (its URL is not checked
            again: a bad one fails the stream with C{connect: ...}).
        @param context: the session.
        @param media: the session's relay (C{attach_pcm} / C{detach_pcm}).
        @param config: C{[streams]}.
        @param tls_creator: the verified TLS client for a host (as for
            trunks: L{aiconnect.tlsutil.client_context_factory}).
        @param close_timeout: seconds the close handshake may take.
        """
        self._reactor = reactor
        self._observer = observer
        self._stream_id = stream_id
        self._order = order
        self._media = media
        self._config = config
        self._tls_creator = tls_creator
        self._close_timeout = close_timeout
        self._messages: StreamMessages = messages_for(stream_id, order, context)
        self._target: StreamTarget | None
        try:
            self._target = StreamTarget.parse(order.url)
            self._public_url = self._target.public
        except ValueError:
            self._target = None
            self._public_url = ""
        self._max_frames = max(1, round(config.max_buffer / FRAME_SECONDS))
        self._buffer: deque[tuple[int, tuple[bytes, ...]]] = deque()
        self._state = StreamState.IDLE
        self._connection: _Connection | None = None
        self._timer: IDelayedCall | None = None
        self._attached = False
        self._paused = False
        self._first_index: int | None = None
        self._stopped_by = ""
        self._frames = 0
        self._bytes = 0
        self._dropped = 0
        self._reconnects = 0
        self._dropped_at_loss = 0
        self._retry_deadline = 0.0
        self._retry_delay = RETRY_INITIAL

    # -- OutputLeg -----------------------------------------------------------

    @property
    def state(self) -> StreamState:
        """
        Where the stream is.
        """
        return self._state

    def start(self) -> None:
        """
        Connect and run the handshake within C{[streams] connect_timeout}.
        """
        if self._state is not StreamState.IDLE:
            return
        self._state = StreamState.CONNECTING
        self._connect(self._config.connect_timeout)

    def stop(self, stopped_by: str) -> None:
        """
        Stop: detach; when connected, send what is buffered, the stop
        message and close with code 1000 (aborted after C{close_timeout});
        then report C{output_stopped}.  Before the handshake, the attempt is
        cancelled and C{output_stopped} reported at once.  Idempotent.
        """
        state = self._state
        if state in (StreamState.CLOSING, StreamState.STOPPED, StreamState.FAILED):
            return
        self._stopped_by = stopped_by
        self._detach()
        self._cancel_timer()
        connection = self._connection
        if state is StreamState.RUNNING and connection is not None:
            self._state = StreamState.CLOSING
            while self._buffer:
                self._send_frame(connection, self._buffer.popleft())
            for message in self._messages.closing(stopped_by):
                connection.send(message)
            connection.close()
            self._timer = self._reactor.callLater(self._close_timeout, connection.cancel)
            return
        if connection is not None:
            self._connection = None
            connection.cancel()
        self._finish(stopped_by)

    def set_paused(self, paused: bool) -> None:
        """
        SPEC s10: while paused, each frame is sent as silence (same count
        and size).
        """
        self._paused = bool(paused)

    def stats(self) -> dict[str, Any]:
        """
        C{frames} and audio C{bytes} sent, frames C{dropped}, successful
        C{reconnects}, frames C{buffered}, C{state}, C{paused}.
        """
        counters = self._counters()
        counters.update(state=self._state.value, paused=self._paused, buffered=len(self._buffer))
        return counters

    # -- PcmSink -------------------------------------------------------------

    def pcm_frame(self, frame: PcmFrame) -> None:
        """
        Encode C{frame} and send it at once, or buffer it (bounded) while
        the connection cannot take it.
        """
        if self._state is not StreamState.RUNNING and self._state is not StreamState.RECONNECTING:
            return
        try:
            if self._first_index is None:
                self._first_index = frame.index
            payloads = self._messages.silence() if self._paused else self._messages.encode(frame)
            if len(self._buffer) >= self._max_frames:
                self._buffer.popleft()
                self._dropped += 1
            self._buffer.append((frame.index, payloads))
            self._flush()
        except Exception:
            self.log.failure("stream {stream_id}: frame not sent", stream_id=self._stream_id)

    # -- connecting ------------------------------------------------------------

    def _connect(self, timeout: float) -> None:
        connection = _Connection(self, timeout)
        self._connection = connection
        if self._target is None:
            connection._settle("connect: not a ws:// or wss:// URL")
            return
        try:
            bootstrap = _handshake(self._target, self._order.headers)
        except ValueError as e:
            connection._settle("connect: %s" % (e,))
            return
        try:
            endpoint = WebSocketClientEndpoint.new(
                self._reactor, self._public_url, tlsPolicy=_TlsPolicy(self._tls_creator)
            ).endpointFactory.endpointForURI(self._target.uri())
        except Exception as e:
            # tls_creator could not load its trust store, say.
            connection._settle(("TLS: " if self._target.scheme == "wss" else "connect: ") + type(e).__name__)
            return
        connection.connect(endpoint, bootstrap)

    def _opened(self, connection: _Connection) -> None:
        if connection is not self._connection:
            connection.cancel()
            return
        resumed = self._state is StreamState.RECONNECTING
        self._state = StreamState.RUNNING
        gap_ms = (self._dropped - self._dropped_at_loss) * FRAME_MS
        for message in self._messages.opening(resumed, gap_ms):
            connection.send(message)
        if resumed:
            self._reconnects += 1
            self.log.info(
                "stream {stream_id} reconnected to {url} (gap {gap_ms} ms)",
                stream_id=self._stream_id,
                url=self._public_url,
                gap_ms=gap_ms,
            )
            self._flush()
            return
        self.log.info("stream {stream_id} started to {url}", stream_id=self._stream_id, url=self._public_url)
        self._media.attach_pcm(self)
        self._attached = True
        self._observer.output_started(self._stream_id, {"url": self._public_url})

    def _not_opened(self, connection: _Connection, reason: str) -> None:
        if connection is not self._connection:
            return
        self._connection = None
        if self._state is StreamState.CONNECTING:
            self._state = StreamState.FAILED
            self.log.warn(
                "stream {stream_id} to {url} failed: {reason}",
                stream_id=self._stream_id,
                url=self._public_url,
                reason=reason,
            )
            self._observer.output_failed(self._stream_id, reason)
        elif self._state is StreamState.RECONNECTING:
            self.log.info(
                "stream {stream_id}: reconnecting to {url} failed: {reason}",
                stream_id=self._stream_id,
                url=self._public_url,
                reason=reason,
            )
            self._schedule_retry()

    def _lost(self, connection: _Connection) -> None:
        if connection is not self._connection:
            return
        self._connection = None
        if self._state is StreamState.CLOSING:
            self._finish(self._stopped_by)
            return
        if self._state is not StreamState.RUNNING:
            return
        self.log.warn("stream {stream_id}: connection to {url} lost", stream_id=self._stream_id, url=self._public_url)
        self._state = StreamState.RECONNECTING
        self._dropped_at_loss = self._dropped
        self._retry_deadline = self._reactor.seconds() + self._config.reconnect_for
        self._retry_delay = RETRY_INITIAL
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        remaining = self._retry_deadline - self._reactor.seconds()
        if remaining <= 0:
            self._give_up()
            return
        self._timer = self._reactor.callLater(min(self._retry_delay, remaining), self._reconnect)
        self._retry_delay = min(self._retry_delay * 2, RETRY_MAX)

    def _reconnect(self) -> None:
        self._timer = None
        remaining = self._retry_deadline - self._reactor.seconds()
        if remaining <= 0:
            self._give_up()
            return
        self._connect(min(self._config.connect_timeout, remaining))

    def _give_up(self) -> None:
        self.log.warn(
            "stream {stream_id}: gave up reconnecting to {url} after {seconds} s",
            stream_id=self._stream_id,
            url=self._public_url,
            seconds=self._config.reconnect_for,
        )
        self._detach()
        self._finish("error")

    # -- sending ---------------------------------------------------------------

    def _flush(self) -> None:
        """
        Send buffered frames while the connection takes them.
        """
        connection = self._connection
        if self._state is not StreamState.RUNNING or connection is None:
            return
        buffer = self._buffer
        while buffer and not connection.paused:
            if not self._send_frame(connection, buffer[0]):
                return
            buffer.popleft()

    def _send_frame(self, connection: _Connection, item: tuple[int, tuple[bytes, ...]]) -> bool:
        index, payloads = item
        position = (index - (self._first_index or 0)) * FRAME_MS
        for message in self._messages.media(position, payloads):
            if not connection.send(message):
                return False
        self._frames += 1
        self._bytes += sum(map(len, payloads))
        return True

    # -- ending ----------------------------------------------------------------

    def _counters(self) -> dict[str, Any]:
        return {"frames": self._frames, "bytes": self._bytes, "dropped": self._dropped, "reconnects": self._reconnects}

    def _detach(self) -> None:
        if self._attached:
            self._attached = False
            self._media.detach_pcm(self)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _finish(self, stopped_by: str) -> None:
        self._cancel_timer()
        self._state = StreamState.STOPPED
        self._buffer.clear()
        stats = self._counters()
        self.log.info(
            "stream {stream_id} stopped ({stopped_by}): {frames} frames, {dropped} dropped, {reconnects} reconnects",
            stream_id=self._stream_id,
            stopped_by=stopped_by,
            **stats,
        )
        self._observer.output_stopped(self._stream_id, stopped_by, {"stats": stats})
