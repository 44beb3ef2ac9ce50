# -*- test-case-name: tests.sip.test_transport_limits,tests.integration.test_sip_service,tests.integration.test_uac_uas,tests.sip.test_transport_connect,tests.sip.test_transport_lost -*-
"""
SIP transports (RFC 3261 s18): UDP, TCP and TLS listeners, stream framing by
Content-Length, C{received}/C{rport} (RFC 3581), response routing (s18.2.2),
outbound connections opened and reused, and stateless answers to malformed
requests (RFC 4475).

This is an adapter: it turns datagrams and stream bytes into parsed messages
for a L{MessageReceiver} (the transaction layer) and writes bytes out. It
holds no SIP policy beyond RFC 3261 s18.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.error import ConnectionDone, ConnectionLost, MessageLengthError
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from aiconnect.sip import trace
from aiconnect.sip.message import (
    DEFAULT_MAX_SIZE,
    KEEPALIVE,
    FramingError,
    Request,
    Response,
    SipParseError,
    StreamFramer,
    make_response,
    parse,
)
from aiconnect.sip.peer import DEFAULT_PORTS, ConnectionLimits, MessageReceiver, Peer
from aiconnect.sip.shed import DROP, Decision, stamp_via
from aiconnect.sip.uri import UriError, Via, format_host, host_for_socket

#: Seconds between two log lines of one kind of overload ("out of file
#: descriptors", "max_connections reached"); the counters count every case.
OVERLOAD_LOG_INTERVAL = 10.0


class _SipDatagramProtocol(DatagramProtocol):
    """
    One UDP socket; every datagram goes to the transport layer.
    """

    def __init__(self, layer: SipTransport) -> None:
        self._layer = layer

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self._layer.datagram_received(self, data, addr)


@implementer(IHandshakeListener)
class SipStreamProtocol(Protocol):
    """
    One TCP or TLS connection, inbound or outbound, framed by Content-Length.

    Three timers guard it (C{[limits]}, SPEC s12): C{idle_timeout} runs
    from the last complete message received or sent (partial messages and
    CRLF keep-alives do not reset it); C{header_timeout} runs from the
    first octet of a message until the message is complete (slow-loris
    protection); an inbound TLS connection must finish its handshake within
    C{tls_handshake_timeout}. Each expiry closes the connection and is
    counted in the transport's C{stats}.

    @ivar handshake: for TLS, fires when the handshake (with certificate
        verification) succeeded, fails if the connection closes first.
    @ivar refused: whether the connection was closed on arrival because
        C{max_connections} inbound connections were open.
    """

    log = Logger()

    def __init__(self, layer: SipTransport, transport_name: str, outbound: bool) -> None:
        self._layer = layer
        self.transport_name = transport_name
        self.outbound = outbound
        self.framer = StreamFramer(layer.max_size)
        self.peer: Peer | None = None
        self.connected_at: float | None = None
        self.refused = False
        #: We closed it (a timer, shutdown): not a peer's loss.
        self.closed_locally = False
        #: Why it closed, once it did.
        self.lost_reason: Failure | None = None
        self._lost = False
        self._idle: Any = None
        self._message_timer: Any = None
        self._handshake_timer: Any = None
        self.handshake: defer.Deferred[SipStreamProtocol] = defer.Deferred()
        if transport_name != "tls" or not outbound:
            # Only outbound TLS waits on the handshake (see SipTransport._connect).
            self.handshake.callback(self)

    def handshakeCompleted(self) -> None:
        self._handshake_timer = _cancel(self._handshake_timer)
        if not self.handshake.called:
            self.handshake.callback(self)

    def connectionMade(self) -> None:
        addr = self.transport.getPeer()
        self.peer = Peer(self.transport_name, addr.host, addr.port, connection=self)
        if not self._layer.connection_made(self):
            self.refused = True
            self.transport.abortConnection()
            return
        limits = self._layer.limits
        if self.transport_name == "tls" and not self.outbound:
            self._handshake_timer = self._layer.reactor.callLater(
                limits.tls_handshake_timeout, self._expired, "tls_handshake_timeouts", "TLS handshake"
            )
        self._touch()

    def _touch(self) -> None:
        """
        A complete message went in or out: restart the idle timer.
        """
        timeout = self._layer.limits.idle_timeout
        if self._idle is not None and self._idle.active():
            self._idle.reset(timeout)
        else:
            self._idle = self._layer.reactor.callLater(timeout, self._expired, "idle_timeouts", "idle")

    def _expired(self, counter: str, what: str) -> None:
        """
        A timer ran out: count it and close the connection.
        """
        self._idle = _cancel(self._idle)
        self._message_timer = _cancel(self._message_timer)
        self._handshake_timer = _cancel(self._handshake_timer)
        self.closed_locally = True
        self._layer.stats[counter] += 1
        self.log.info(
            "closing {transport} connection from {peer}: {what} timeout",
            transport=self.transport_name,
            peer=str(self.peer),
            what=what,
        )
        self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self.refused:
            return
        try:
            frames = self.framer.feed(data)
        except FramingError as e:
            self._layer.framing_error(self, e)
            self.transport.loseConnection()
            return
        messages = False
        for frame in frames:
            if frame is KEEPALIVE or frame == KEEPALIVE:
                # RFC 5626 s3.5.1: answer a CRLFCRLF ping with a CRLF pong.
                self.transport.write(b"\r\n")
                continue
            messages = True
            self._touch()
            assert self.peer is not None
            self._layer.data_received(frame, self.peer, datagram=False)
        self._watch_message(restart=messages)

    def _watch_message(self, restart: bool) -> None:
        """
        Run the C{header_timeout} deadline while a message is incomplete;
        a new message (after a complete one) gets a new deadline.
        """
        if not self.framer.buffered:
            self._message_timer = _cancel(self._message_timer)
            return
        if restart:
            self._message_timer = _cancel(self._message_timer)
        if self._message_timer is None and not self._lost:
            self._message_timer = self._layer.reactor.callLater(
                self._layer.limits.header_timeout, self._expired, "header_timeouts", "incomplete message"
            )

    def write_message(self, data: bytes) -> None:
        """
        Write one serialized message.
        """
        self._touch()
        self.transport.write(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self._lost = True
        self.lost_reason = reason
        self._idle = _cancel(self._idle)
        self._message_timer = _cancel(self._message_timer)
        self._handshake_timer = _cancel(self._handshake_timer)
        if not self.handshake.called:
            self.handshake.errback(reason)
        self._layer.connection_lost(self)


def _cancel(call: Any) -> None:
    """
    Cancel a delayed call if it is still pending.

    @return: C{None}, to clear the attribute holding it.
    """
    if call is not None and call.active():
        call.cancel()
    return None


class _StreamFactory(Factory):
    def __init__(self, layer: SipTransport, transport_name: str, outbound: bool) -> None:
        self._layer = layer
        self._name = transport_name
        self._outbound = outbound

    def buildProtocol(self, addr: Any) -> SipStreamProtocol:
        return SipStreamProtocol(self._layer, self._name, self._outbound)


class SipTransport:
    """
    The transport layer: listeners, connections, parsing and routing.

    @ivar stats: counters (C{received}, C{sent}, C{parse_errors},
        C{error_responses}, C{dropped_responses}, C{send_failures},
        C{responses_connection_gone}: responses not sent because the
        TCP/TLS connection of their request had closed;
        C{connections_refused}: inbound connections closed at once beyond
        C{max_connections}; C{tls_handshake_timeouts}, C{header_timeouts},
        C{idle_timeouts}: connections closed by those timers;
        C{accept_fd_exhausted}: accepts that failed for lack of file
        descriptors) and the gauge C{inbound_connections}.
    @ivar limits: the L{ConnectionLimits} in force (connections and their
        timers; C{[limits]} in the configuration).
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        receiver: MessageReceiver | None = None,
        host: str = "127.0.0.1",
        public_address: str = "127.0.0.1",
        private_address: str | None = None,
        max_size: int = DEFAULT_MAX_SIZE,
        tls_server_context: Any = None,
        tls_client_creator: Callable[[str], Any] | None = None,
        force_rport: bool = True,
        limits: ConnectionLimits | None = None,
    ) -> None:
        """
        @param reactor: provides IReactorUDP, IReactorTCP, IReactorSSL, IReactorTime.
        @param receiver: gets every well-formed message (settable later).
        @param host: the bind address.
        @param public_address: advertised in Via/Contact.
        @param private_address: advertised instead when asked for.
        @param max_size: the message size limit in octets.
        @param tls_server_context: a context factory for the TLS listener.
        @param tls_client_creator: C{server_name -> IOpenSSLClientConnectionCreator}
            for outbound TLS (verifies the peer certificate against the name).
        @param force_rport: answer UDP requests at their source port, as if
            each carried C{rport} (RFC 3581); C{False} for strict RFC 3261
            s18.2.2 (the Via sent-by port); the host is the request's
            source address either way.
        @param limits: C{max_connections}, C{tls_handshake_timeout},
            C{header_timeout} and C{idle_timeout} (defaults when C{None}).
        """
        self.reactor = reactor
        self.receiver = receiver
        self.host = host
        self.public_address = public_address
        self.private_address = private_address or public_address
        self.max_size = max_size
        self._tls_server_context = tls_server_context
        self._tls_client_creator = tls_client_creator
        self.force_rport = force_rport
        self.limits = limits if limits is not None else ConnectionLimits()
        self._inbound: set[SipStreamProtocol] = set()
        self._logged_at: dict[str, float] = {}
        self._udp: _SipDatagramProtocol | None = None
        self._udp_port: Any = None
        self._ports: dict[str, Any] = {}
        self._connections: dict[tuple[str, str, int], SipStreamProtocol] = {}
        self._connecting: dict[tuple[str, str, int], list[defer.Deferred[SipStreamProtocol]]] = {}
        self._all_connections: set[SipStreamProtocol] = set()
        #: Asked about each UDP datagram before it is parsed (after
        #: L{absorb_repeat}): L{None} to go on, else a
        #: L{aiconnect.sip.shed.Decision}: an answer to send statelessly, or
        #: L{aiconnect.sip.shed.DROP} (overload control, issue 12).
        self.shed: Callable[[bytes, Peer], Decision | None] | None = None
        #: Told C{(peer, reason)} when a TCP/TLS connection closes other
        #: than by us (the peer closed or reset it): the UA's dialogs over
        #: it learn their peer is gone (SPEC s13).
        self.on_connection_lost: list[Callable[[Peer, str], None]] = []
        self.stats: dict[str, int] = {
            "received": 0,
            "sent": 0,
            "parse_errors": 0,
            "error_responses": 0,
            "dropped_responses": 0,
            "send_failures": 0,
            "responses_connection_gone": 0,
            "connections_refused": 0,
            "inbound_connections": 0,
            "tls_handshake_timeouts": 0,
            "header_timeouts": 0,
            "idle_timeouts": 0,
            "accept_fd_exhausted": 0,
        }

    # -- listening -----------------------------------------------------

    def listen_udp(self, port: int) -> Any:
        """
        Bind the UDP socket requests are sent from and received on.
        """
        self._udp = _SipDatagramProtocol(self)
        self._udp_port = self.reactor.listenUDP(port, self._udp, interface=self.host, maxPacketSize=65535)
        self._ports["udp"] = self._udp_port
        return self._udp_port

    def listen_tcp(self, port: int) -> Any:
        """
        Listen for TCP connections.
        """
        p = self.reactor.listenTCP(port, _StreamFactory(self, "tcp", False), interface=self.host)
        self._watch_accept_errors(p, "tcp")
        self._ports["tcp"] = p
        return p

    def listen_tls(self, port: int) -> Any:
        """
        Listen for TLS connections (the server context requires TLS >= 1.2).
        """
        if self._tls_server_context is None:
            raise ValueError("TLS listener needs a server context")
        p = self.reactor.listenSSL(
            port, _StreamFactory(self, "tls", False), self._tls_server_context, interface=self.host
        )
        self._watch_accept_errors(p, "tls")
        self._ports["tls"] = p
        return p

    def _watch_accept_errors(self, port: Any, transport: str) -> None:
        """
        See the accept errors of a listening port: Twisted's C{tcp.Port}
        survives C{EMFILE} on C{accept()} (it closes the pending clients with
        a reserved descriptor) but only says so at info level in its own
        words. Its log events pass through L{accept_log_event} first, which
        says what happened in ours.
        """
        logger = getattr(port, "_logger", None)
        if logger is None:
            return  # not a twisted tcp.Port (a test double)
        forward = logger.observer

        def observe(event: dict[str, Any]) -> None:
            self.accept_log_event(event, transport)
            forward(event)

        port._logger = Logger(namespace=logger.namespace, source=port, observer=observe)

    def accept_log_event(self, event: dict[str, Any], transport: str) -> None:
        """
        One log event of a listening port: when it reports that C{accept()}
        failed for lack of file descriptors (C{EMFILE}, C{ENFILE}), count
        it and log an error naming the cause and the fix (at most every
        L{OVERLOAD_LOG_INTERVAL} seconds).
        """
        text = str(event.get("log_format") or "") + " " + str(event.get("acceptError") or "")
        if "EMFILE" not in text and "ENFILE" not in text:
            return
        if "Re-reserving" in text or "EMFILE recovery:" in text:
            return  # the follow-up lines of one EMFILE event
        self.stats["accept_fd_exhausted"] += 1
        if not self._may_log("emfile"):
            return
        self.log.error(
            "out of file descriptors: a SIP {transport} connection could not be accepted "
            "(EMFILE, {count} times so far, {open} inbound connections open); raise the "
            "process's file-descriptor limit (LimitNOFILE in the systemd unit, ulimit -n) "
            "or lower limits.max_connections ({max})",
            transport=transport,
            count=self.stats["accept_fd_exhausted"],
            open=len(self._inbound),
            max=self.limits.max_connections,
        )

    def _may_log(self, kind: str) -> bool:
        """
        Rate-limit the log lines of one kind of overload.

        @return: whether a line of C{kind} may be logged now (then the
            next one waits L{OVERLOAD_LOG_INTERVAL} seconds).
        """
        now = self.reactor.seconds()
        last = self._logged_at.get(kind)
        if last is not None and now - last < OVERLOAD_LOG_INTERVAL:
            return False
        self._logged_at[kind] = now
        return True

    def port(self, transport: str) -> int | None:
        """
        The bound port of a listener, or C{None} when it is off.
        """
        p = self._ports.get(transport)
        return None if p is None else p.getHost().port

    def stop(self) -> defer.Deferred[Any]:
        """
        Close listeners and connections.
        """
        ds = []
        for p in self._ports.values():
            d = p.stopListening()
            if d is not None:
                ds.append(d)
        self._ports.clear()
        self._udp = None
        for c in list(self._all_connections):
            c.closed_locally = True
            c.transport.abortConnection()
        return defer.gatherResults(ds, consumeErrors=True)

    # -- addresses -----------------------------------------------------

    def advertised(self, transport: str, private: bool = False) -> str:
        """
        C{host:port} to put in Via sent-by and Contact for a transport.
        """
        addr = self.private_address if private else self.public_address
        port = self.port(transport)
        if port is None:
            port = self.port("udp") if transport == "udp" else None
        if port is None:
            port = DEFAULT_PORTS[transport]
        return "%s:%d" % (format_host(addr), port)

    def local_via(self, peer: Peer) -> tuple[str, str]:
        """
        The Via transport token and sent-by towards C{peer}.
        """
        return peer.via_transport, self.advertised(peer.transport)

    def is_local_sent_by(self, via: Via) -> bool:
        """
        Whether a response's top Via names us (RFC 3261 s18.1.2).
        """
        host = host_for_socket(via.host)
        if host not in (self.public_address, self.private_address, self.host):
            return False
        t = via.transport.lower()
        port = via.port or DEFAULT_PORTS.get(t, 5060)
        ours = {self.port(name) for name in self._ports}
        ours.discard(None)
        return port in ours or not ours

    # -- receiving -----------------------------------------------------

    def datagram_received(self, proto: _SipDatagramProtocol, data: bytes, addr: Any) -> None:
        """
        One UDP datagram arrived.
        """
        if not data.strip(b"\r\n\x00 "):
            return  # keep-alive (RFC 5626 s4.4.1 uses STUN; bare CRLF seen in the field)
        peer = Peer("udp", addr[0], addr[1])
        # A retransmission of a request whose transaction lives is
        # answered by it without a parse (RFC 3261 s17.2.1, s17.2.2).
        absorb = getattr(self.receiver, "absorb_repeat", None)
        if absorb is not None:
            try:
                absorbed = absorb(data, peer)
            except Exception:
                self.log.failure("repeat handler failed for a datagram from {peer}", peer=str(peer))
                absorbed = True
            if absorbed:
                self.stats["received"] += 1
                return
        shed = self.shed
        if shed is not None:
            try:
                decision = shed(data, peer)
            except Exception:
                self.log.failure("shed handler failed for a datagram from {peer}", peer=str(peer))
                decision = None
            if decision is not None:
                # Answered (or dropped) statelessly, without a parse.
                self.stats["received"] += 1
                if decision is not DROP:
                    target = self._via_target(decision.via, source=peer)
                    self._send_udp(decision.data, target.host, target.port)
                return
        self.data_received(data, peer, datagram=True)

    def data_received(self, data: bytes, peer: Peer, datagram: bool) -> None:
        """
        Parse one datagram or stream frame from C{peer} and pass it up, or
        answer it statelessly if it is a malformed request.
        """
        self.stats["received"] += 1
        try:
            msg = parse(data, self.max_size, datagram=datagram)
        except SipParseError as e:
            self.stats["parse_errors"] += 1
            self._reject(e, peer)
            return
        except Exception:
            # A parser bug must never take the reactor down.
            self.stats["parse_errors"] += 1
            self.log.failure("parser failure from {peer}", peer=str(peer))
            return
        if isinstance(msg, Request):
            if datagram:
                msg.datagram = data
            try:
                self._stamp_via(msg, peer)
            except UriError as e:
                self.stats["parse_errors"] += 1
                self._reject(SipParseError(e.reason, e.status_hint, msg, True), peer)
                return
            self._trace("recv", msg, "from", peer)
        else:
            try:
                top = msg.top_via
            except (SipParseError, UriError):
                self.stats["dropped_responses"] += 1
                return
            if not self.is_local_sent_by(top):
                # RFC 3261 s18.1.2: a response whose top Via is not ours is discarded.
                self.stats["dropped_responses"] += 1
                return
            self._trace("recv", msg, "from", peer)
        if self.receiver is None:
            return
        try:
            self.receiver.message_received(msg, peer)
        except Exception:
            self.log.failure("message handler failed for call_id={call_id}", call_id=msg.call_id)

    def _trace(self, verb: str, message: Request | Response, direction: str, peer: Peer) -> None:
        """
        The per-message debug line ("recv INVITE sip:... call_id=... from
        PEER"), only built when L{trace.debug} says debug lines are written.
        """
        if not trace.debug:
            return
        fields: dict[str, object]
        if isinstance(message, Request):
            form = "{verb} {method} {uri} call_id={call_id} {direction} {peer}"
            fields = {"method": message.method, "uri": message.uri}
        else:
            form = "{verb} {status} call_id={call_id} {direction} {peer}"
            fields = {"status": message.status}
        self.log.debug(form, verb=verb, call_id=message.call_id, direction=direction, peer=str(peer), **fields)

    def _stamp_via(self, request: Request, peer: Peer) -> None:
        """
        RFC 3261 s18.2.1 (C{received}) and RFC 3581 s4 (C{rport}) on the top
        Via: C{received} is set to the source address on every request (RFC
        3261 only requires it when the sent-by host differs; it is always
        allowed), and an C{rport} gets the source port.
        """
        request.set_top_via(stamp_via(request.top_via, peer.host, peer.port))

    def _reject(self, error: SipParseError, peer: Peer) -> None:
        """
        Answer a malformed request statelessly; drop anything else
        (RFC 3261 s16.3/s18.1.2 for responses; never answer an ACK).
        """
        # A malformed response is only dropped: one info line (a stray or
        # broken response is the peer's problem, not an incident of ours).
        emit = self.log.info if error.is_request is False else self.log.warn
        emit(
            "malformed {kind} from {peer}: {status} {reason}",
            kind="response" if error.is_request is False else "message",
            peer=str(peer),
            status=error.status_hint,
            reason=error.reason,
        )
        partial = error.partial
        if not error.is_request or partial is None or partial.method == "ACK":
            if error.is_request is False:
                self.stats["dropped_responses"] += 1
            return
        response = make_response(partial, error.status_hint, error.reason if error.status_hint == 400 else "")
        self.stats["error_responses"] += 1
        self._write_to(response.to_bytes(), peer)

    def framing_error(self, conn: SipStreamProtocol, error: FramingError) -> None:
        """
        A stream lost framing: answer if possible; the caller closes it.
        """
        self.stats["parse_errors"] += 1
        if conn.peer is not None:
            self._reject(error, conn.peer)

    # -- connections ---------------------------------------------------

    def connection_made(self, conn: SipStreamProtocol) -> bool:
        """
        Register a connection for reuse (RFC 3261 s18.1.1, s18.2.2), or
        refuse an inbound one beyond C{limits.max_connections}.

        @return: whether the connection may stay.
        """
        assert conn.peer is not None
        if not conn.outbound:
            if len(self._inbound) >= self.limits.max_connections:
                self.stats["connections_refused"] += 1
                if self._may_log("max_connections"):
                    self.log.warn(
                        "refused {transport} connection from {peer}: limits.max_connections ({max}) "
                        "inbound connections open ({refused} refused so far)",
                        transport=conn.transport_name,
                        peer=str(conn.peer),
                        max=self.limits.max_connections,
                        refused=self.stats["connections_refused"],
                    )
                return False
            self._inbound.add(conn)
            self.stats["inbound_connections"] = len(self._inbound)
        self._all_connections.add(conn)
        self._connections.setdefault((conn.transport_name, conn.peer.host, conn.peer.port), conn)
        return True

    def connection_lost(self, conn: SipStreamProtocol) -> None:
        """
        Forget a closed connection.
        """
        self._all_connections.discard(conn)
        self._inbound.discard(conn)
        self.stats["inbound_connections"] = len(self._inbound)
        if conn.peer is not None:
            key = (conn.transport_name, conn.peer.host, conn.peer.port)
            if self._connections.get(key) is conn:
                del self._connections[key]
            if not conn.closed_locally and not conn.refused:
                self._tell_lost(conn.peer, conn.lost_reason)

    def _tell_lost(self, peer: Peer, reason: Failure | None) -> None:
        """
        Tell L{on_connection_lost} that the connection to C{peer} closed.
        """
        closed = reason is None or reason.check(ConnectionDone) is not None
        text = "connection closed" if closed else "connection lost"
        for watcher in list(self.on_connection_lost):
            try:
                watcher(peer, text)
            except Exception:
                self.log.failure("connection-lost watcher failed")

    def _connect(self, peer: Peer) -> defer.Deferred[SipStreamProtocol]:
        key = (peer.transport, peer.host, peer.port)
        existing = self._connections.get(key)
        if existing is not None and existing.transport is not None and existing.transport.connected:
            return defer.succeed(existing)
        d: defer.Deferred[SipStreamProtocol] = defer.Deferred()
        waiters = self._connecting.get(key)
        if waiters is not None:
            # Each caller gets its own Deferred: a caller's callbacks (which
            # return None) must not change what the next caller waiting for
            # the same connection receives.
            waiters.append(d)
            return d
        ep_class = TCP6ClientEndpoint if ":" in peer.host else TCP4ClientEndpoint
        endpoint: Any = ep_class(self.reactor, peer.host, peer.port, timeout=10)
        if peer.transport == "tls":
            if self._tls_client_creator is None:
                return defer.fail(ValueError("no TLS client configuration"))
            endpoint = wrapClientTLS(self._tls_client_creator(peer.server_name or peer.host), endpoint)
        waiters = self._connecting[key] = [d]
        connecting = endpoint.connect(_StreamFactory(self, peer.transport, True))
        if peer.transport == "tls":
            # Surface certificate verification failures to the callers: the
            # handshake completes (or fails) after the TCP connect.
            connecting.addCallback(self._await_handshake)

        def settle(result: Any) -> None:
            self._connecting.pop(key, None)
            for waiter in waiters:
                if isinstance(result, Failure):
                    waiter.errback(result)
                else:
                    waiter.callback(result)

        connecting.addBoth(settle)
        return d

    def _await_handshake(self, conn: SipStreamProtocol) -> defer.Deferred[SipStreamProtocol]:
        # The TLS layer calls handshakeCompleted() (IHandshakeListener) once
        # the peer's certificate verified; a failure closes the connection.
        return conn.handshake

    # -- sending -------------------------------------------------------

    def _write_to(self, data: bytes, peer: Peer) -> None:
        """
        Write bytes to where C{peer} came from: its connection, or UDP.
        """
        if peer.transport == "udp":
            self._send_udp(data, peer.host, peer.port)
        elif peer.connection is not None and peer.connection.transport is not None:
            peer.connection.write_message(data)

    def _send_udp(self, data: bytes, host: str, port: int) -> None:
        if self._udp is None or self._udp.transport is None:
            self.listen_udp(0)
        assert self._udp is not None
        try:
            self._udp.transport.write(data, (host, port))
            self.stats["sent"] += 1
        except (OSError, MessageLengthError) as e:
            # MessageLengthError: EMSGSIZE, a message over 65,507 octets.
            self.stats["send_failures"] += 1
            self.log.warn(
                "UDP send of {size} octets to {host}:{port} failed: {error}",
                size=len(data),
                host=host,
                port=port,
                error=str(e) or type(e).__name__,
            )

    def send_request(self, request: Request, peer: Peer) -> defer.Deferred[None]:
        """
        Send a request to C{peer}, opening or reusing a TCP/TLS connection.

        @return: fires when written; fails on connect or TLS failure.
        """
        data = request.to_bytes()
        self._trace("send", request, "to", peer)
        if peer.transport == "udp":
            self._send_udp(data, peer.host, peer.port)
            return defer.succeed(None)
        if peer.connection is not None and peer.connection.transport is not None and peer.connection.transport.connected:
            peer.connection.write_message(data)
            self.stats["sent"] += 1
            return defer.succeed(None)
        d = self._connect(peer)

        def write(conn: SipStreamProtocol) -> None:
            conn.write_message(data)
            self.stats["sent"] += 1

        def failed(f: Failure) -> Failure:
            self.stats["send_failures"] += 1
            return f

        d.addCallbacks(write, failed)
        return d

    def send_response(self, response: Response, source: Peer) -> defer.Deferred[None]:
        """
        Send a response per RFC 3261 s18.2.2 (and RFC 3581 s4), only ever to
        where the request came from: over TCP/TLS on the request's
        connection; over UDP to its source address.

        When the request's connection has closed, the response is not sent
        (counted in C{responses_connection_gone}, and the Deferred fails so
        the transaction reports a transport error, RFC 3261 s17.2.4): we
        never open a connection to an address the peer wrote in its Via (a
        reflection/SSRF vector); a client wanting the answer retransmits on
        a new connection.
        """
        data = response.to_bytes()
        self._trace("send", response, "to", source)
        if source.reliable:
            conn = source.connection
            if conn is not None and conn.transport is not None and conn.transport.connected:
                conn.write_message(data)
                self.stats["sent"] += 1
                return defer.succeed(None)
            self.stats["responses_connection_gone"] += 1
            self.log.info(
                "response {status} call_id={call_id} not sent: the {transport} connection from {peer} closed",
                status=response.status,
                call_id=response.call_id,
                transport=source.transport,
                peer=str(source),
            )
            return defer.fail(ConnectionLost("the request's connection closed before its response"))
        target = self._response_target(response, source)
        self._send_udp(data, target.host, target.port)
        return defer.succeed(None)

    def _response_target(self, response: Response, source: Peer) -> Peer:
        """
        Where a UDP response goes: the request's source address, at its
        source port with C{rport} (RFC 3581 s4) or C{force_rport}, else at
        the Via sent-by port (RFC 3261 s18.2.2). The Via's C{received},
        C{rport} value and host are never used: they are the peer's words.
        """
        try:
            via = response.top_via
        except (SipParseError, UriError):
            return source
        return self._via_target(via, source)

    def _via_target(self, via: Via, source: Peer) -> Peer:
        """
        Where a UDP response whose top Via is C{via} goes (see
        L{_response_target}).
        """
        if via.has_param("rport") or self.force_rport:
            port = source.port
        else:
            port = via.port or DEFAULT_PORTS.get(source.transport, 5060)
        return Peer(source.transport, source.host, port)

