# -*- test-case-name: tests.outputs.test_stream,tests.outputs.test_stream_flow -*-
"""
A session's live audio to an AI engine over WebSocket (SPEC s8):
L{StreamLeg}, the L{aiconnect.legs.OutputLeg} of a C{startStream} order.

The leg connects (L{aiconnect.outputs.wsclient}: Twisted's own WebSocket
client, TLS verified as for trunks, the order's extra handshake headers)
and once the handshake is done takes the session's 20 ms frames
(L{aiconnect.media.pcm.PcmSink}) and sends each one at once in the order's
C{protocol} (L{aiconnect.outputs.wsmessages}).

Flow control: while the connection's send buffer is full (a consumer that
does not keep up: the connection is a push producer of its transport), and
while a dropped connection is being re-established (back-off from 0.5 s,
doubling, at most 4 s, for C{[streams] reconnect_for} seconds), frames wait
in a buffer of at most C{[streams] max_buffer} seconds; beyond it the
oldest are dropped and counted.  So a slow consumer never blocks the
reactor and memory stays bounded: that buffer, plus one send buffer of the
transport.  Nothing here logs header values, query strings or credentials.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IOpenSSLClientConnectionCreator
from twisted.logger import Logger

from aiconnect.config.records import StreamsConfig
from aiconnect.legs import MediaSession, OutputObserver
from aiconnect.media.pcm import FRAME_SECONDS, PcmFrame
from aiconnect.outputs.context import OutputContext
from aiconnect.outputs.orders import StreamOrder
from aiconnect.outputs.wsclient import StreamTarget, WsClientConnection
from aiconnect.outputs.wsmessages import FRAME_MS, StreamMessages, messages_for

__all__ = ["StreamLeg", "StreamState", "StreamStats"]

#: Back-off between reconnection attempts: first delay, and the most.
RETRY_INITIAL = 0.5
RETRY_MAX = 4.0
#: Seconds the close handshake may take before the connection is aborted.
CLOSE_TIMEOUT = 2.0


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


@dataclass(slots=True)
class StreamStats:
    """
    A stream's counters (C{STREAMSTOPPED}'s C{stats}).

    @ivar frames: frames sent.
    @ivar bytes: audio bytes sent (before any base64).
    @ivar dropped: frames dropped (a slow consumer, a long reconnection).
    @ivar reconnects: successful reconnections.
    """

    frames: int = 0
    bytes: int = 0
    dropped: int = 0
    reconnects: int = 0


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
        self._connection: WsClientConnection | None = None
        self._timer: IDelayedCall | None = None
        self._attached = False
        self._paused = False
        self._first_index: int | None = None
        self._stopped_by = ""
        self._stats = StreamStats()
        self._dropped_at_start = 0
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
        counters = asdict(self._stats)
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
                self._stats.dropped += 1
            self._buffer.append((frame.index, payloads))
            self._flush()
        except Exception:
            self.log.failure("stream {stream_id}: frame not sent", stream_id=self._stream_id)

    # -- connecting ------------------------------------------------------------

    def _connect(self, timeout: float) -> None:
        connection = WsClientConnection(self._reactor, self, timeout)
        self._connection = connection
        connection.open(self._target, self._order.headers, self._tls_creator)

    def _log(self, level: str, text: str, **fields: Any) -> None:
        """
        Log C{text} with the stream's id and public URL.
        """
        emit = getattr(self.log, level)
        emit("stream {stream_id} ({url}): " + text, stream_id=self._stream_id, url=self._public_url, **fields)

    # -- ConnectionOwner -------------------------------------------------------

    def connection_opened(self, connection: WsClientConnection) -> None:
        """
        The handshake is done: send the start, attach (the first time) or
        send what waited (a reconnection).
        """
        if connection is not self._connection:
            connection.cancel()
            return
        resumed = self._state is StreamState.RECONNECTING
        self._state = StreamState.RUNNING
        # Every drop is told once: in the next connection's start message.
        gap_ms = (self._stats.dropped - self._dropped_at_start) * FRAME_MS
        self._dropped_at_start = self._stats.dropped
        for message in self._messages.opening(resumed, gap_ms):
            connection.send(message)
        if resumed:
            self._stats.reconnects += 1
            self._log("info", "reconnected (gap {gap_ms} ms)", gap_ms=gap_ms)
            self._flush()
            return
        self._log("info", "started")
        self._media.attach_pcm(self)
        self._attached = True
        self._observer.output_started(self._stream_id, {"url": self._public_url})

    def connection_failed(self, connection: WsClientConnection, reason: str) -> None:
        """
        The first attempt failed: C{output_failed}; a reconnection attempt
        failed: try again later, or give up.
        """
        if connection is not self._connection:
            return
        self._connection = None
        if self._state is StreamState.CONNECTING:
            self._state = StreamState.FAILED
            self._log("warn", "failed: {reason}", reason=reason)
            self._observer.output_failed(self._stream_id, reason)
        elif self._state is StreamState.RECONNECTING:
            self._log("info", "reconnecting failed: {reason}", reason=reason)
            self._schedule_retry()

    def connection_lost(self, connection: WsClientConnection) -> None:
        """
        Closing: the stream is stopped; running: reconnect.
        """
        if connection is not self._connection:
            return
        self._connection = None
        if self._state is StreamState.CLOSING:
            self._finish(self._stopped_by)
            return
        if self._state is not StreamState.RUNNING:
            return
        self._log("warn", "connection lost")
        self._state = StreamState.RECONNECTING
        self._retry_deadline = self._reactor.seconds() + self._config.reconnect_for
        self._retry_delay = RETRY_INITIAL
        self._schedule_retry()

    def connection_writable(self, connection: WsClientConnection) -> None:
        """
        The transport takes data again: send what waited.
        """
        if connection is self._connection:
            self._flush()

    # -- reconnecting ----------------------------------------------------------

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
        self._log("warn", "gave up reconnecting after {seconds} s", seconds=self._config.reconnect_for)
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

    def _send_frame(self, connection: WsClientConnection, item: tuple[int, tuple[bytes, ...]]) -> bool:
        index, payloads = item
        position = (index - (self._first_index or 0)) * FRAME_MS
        for message in self._messages.media(position, payloads):
            if not connection.send(message):
                return False
        self._stats.frames += 1
        self._stats.bytes += sum(map(len, payloads))
        return True

    # -- ending ----------------------------------------------------------------

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
        stats = asdict(self._stats)
        self._log("info", "stopped ({stopped_by}): {stats}", stopped_by=stopped_by, stats=stats)
        self._observer.output_stopped(self._stream_id, stopped_by, {"stats": stats})
