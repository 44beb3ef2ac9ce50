# -*- test-case-name: tests.test_fakes -*-
"""
The test toolbox: each helper the suite needs in more than one place,
written once.

  - Waiting on a reactor: L{wait_until} polls a condition with the
    reactor (never C{time.sleep}) until it holds or a bounded timeout
    fails the test with L{WaitTimeout}, naming what was awaited;
    L{pause} lets the reactor run for a while.
  - RTP: L{rtp_packet} builds an RTP packet by hand (RFC 3550 s5.1),
    independently of L{aiconnect.media.rtp}.
  - A fake SIP transport: L{FakeSipTransport} records what a transaction
    layer or UA core sends (L{aiconnect.sip.peer.SipTransportLike}).
  - Raw SIP peers on real sockets: L{UdpPeer} and L{StreamPeer} send
    bytes and collect what comes back (L{Inbox}); L{listen_udp} and
    L{connect_stream} open them for a test and close them after it;
    L{status_of} and L{raw_call_id} read raw messages.
  - L{UdpSocket}: a plain non-blocking loopback UDP socket for
    synchronous tests that drive a reactor (or a relay) by hand.
  - Call fakes (after the shared toolbox): L{ListSink} (an event sink),
    L{FakeLeg} and L{RecordingLegFactory} (forward legs), L{FakeTenant},
    L{FakeOrder} and L{make_runner} (a L{CallRunner} around a new Call).

Every helper that waits takes the reactor to wait with (C{clock} or
C{reactor}); the default is the global reactor, looked up only when
needed, so that unit tests can pass a L{twisted.internet.task.Clock}.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
import socket
import struct
from typing import Any, Awaitable, Callable, TypeVar

from twisted.internet import defer, task
from twisted.internet.task import Clock
from twisted.internet.endpoints import SSL4ClientEndpoint, TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.call import Call, CallLimits, ForwardStopped, InboundAcked, InboundAnswered
from aiconnect.runner import CallRunner
from aiconnect.sip.message import Message, Request, Response, StreamFramer
from aiconnect.sip.peer import Peer

T = TypeVar("T")


def _global_reactor() -> Any:
    """
    The global reactor, imported only when a helper is used without one.
    """
    from twisted.internet import reactor

    return reactor


# -- waiting on a reactor -----------------------------------------------------


class WaitTimeout(AssertionError):
    """
    L{wait_until}'s condition did not hold in time. An C{AssertionError},
    so that trial reports it as a failure of the test, not an error.
    """


def pause(seconds: float, clock: IReactorTime | None = None) -> defer.Deferred[None]:
    """
    Let the reactor run for C{seconds} (the test's own peers keep
    answering meanwhile).

    @param clock: The reactor to wait with; the global one by default.
    @return: A Deferred firing with C{None} after C{seconds}.
    """
    return task.deferLater(clock if clock is not None else _global_reactor(), seconds, lambda: None)


def _describe(check: Callable[..., object]) -> str:
    """
    The source line of C{check} (a lambda's whole line reads well in a
    failure), or its name when the source cannot be read.
    """
    try:
        line = inspect.getsource(check).strip().splitlines()[0]
    except (OSError, TypeError, IndexError):
        return getattr(check, "__qualname__", repr(check))
    return line if len(line) <= 200 else line[:197] + "..."


async def wait_until(
    check: Callable[[], T | Awaitable[T]],
    timeout: float = 5.0,
    *,
    interval: float = 0.02,
    what: str | Callable[[], str] | None = None,
    clock: IReactorTime | None = None,
) -> T:
    """
    Poll C{check} with the reactor until it returns a true value.

    C{check} runs once at once, then every C{interval} seconds of the
    reactor's time; it may return an awaitable (an C{async def} or a
    Deferred), which is awaited. An exception it raises ends the wait.

    @param timeout: Seconds, by the reactor's clock, before giving up.
    @param interval: Seconds between two calls of C{check}.
    @param what: What is awaited, for the failure message (or a function
        returning it, called only on failure, e.g. to show what arrived);
        the source line of C{check} by default.
    @param clock: The reactor to poll with; the global one by default.
    @return: The true value C{check} returned.
    @raise WaitTimeout: C{check} stayed false for C{timeout} seconds; the
        message names C{what} and the last value C{check} returned.
    """
    reactor = clock if clock is not None else _global_reactor()
    deadline = reactor.seconds() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if reactor.seconds() >= deadline:
            described = what() if callable(what) else what
            raise WaitTimeout(
                "not met within %g s: %s (last value: %r)" % (timeout, described or _describe(check), result)
            )
        await pause(max(0.0, min(interval, deadline - reactor.seconds())), reactor)


# -- RTP ----------------------------------------------------------------------

#: A 20 ms G.711 frame of 160 distinct-enough octets (0..159).
FRAME = bytes(range(160))


def rtp_packet(seq: int, ts: int, ssrc: int, pt: int, payload: bytes = FRAME, marker: bool = False) -> bytes:
    """
    An RTP packet built by hand per RFC 3550 s5.1: version 2, no padding,
    extension or CSRC; C{seq}, C{ts} and C{ssrc} wrap to their widths.

    @param pt: The payload type, 0-127.
    @raise ValueError: C{pt} does not fit in 7 bits.
    """
    if not 0 <= pt <= 127:
        raise ValueError("payload type %d is not 0-127" % (pt,))
    second = (0x80 if marker else 0) | pt
    return struct.pack("!BBHII", 0x80, second, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc & 0xFFFFFFFF) + payload


# -- a fake SIP transport -------------------------------------------------------


class FakeSipTransport:
    """
    A recording L{aiconnect.sip.peer.SipTransportLike} (plus the
    C{advertised} address a UA core asks for): each send is recorded,
    then succeeds, or fails with C{failure} when it is set.

    @ivar sent_by: The C{host:port} given as Via sent-by and as the
        advertised address.
    @ivar sent: Every C{(message, peer)} sent, requests and responses, in
        order.
    @ivar requests: The C{(request, peer)} pairs only.
    @ivar responses: The C{(response, source)} pairs only.
    @ivar failure: When set, what each later send fails with.
    """

    def __init__(self, sent_by: str = "192.0.2.1:5060") -> None:
        self.sent_by = sent_by
        self.sent: list[tuple[Message, Peer]] = []
        self.requests: list[tuple[Request, Peer]] = []
        self.responses: list[tuple[Response, Peer]] = []
        self.failure: Exception | None = None

    def _result(self) -> defer.Deferred[None]:
        if self.failure is not None:
            return defer.fail(self.failure)
        return defer.succeed(None)

    def send_request(self, request: Request, peer: Peer) -> defer.Deferred[None]:
        """
        Record C{request} to C{peer}.
        """
        self.sent.append((request, peer))
        self.requests.append((request, peer))
        return self._result()

    def send_response(self, response: Response, source: Peer) -> defer.Deferred[None]:
        """
        Record C{response} to C{source}.
        """
        self.sent.append((response, source))
        self.responses.append((response, source))
        return self._result()

    def local_via(self, peer: Peer) -> tuple[str, str]:
        """
        @return: C{peer}'s Via transport token and C{sent_by}.
        """
        return peer.via_transport, self.sent_by

    def advertised(self, transport: str, private: bool = False) -> str:
        """
        @return: C{sent_by}, whatever the transport.
        """
        return self.sent_by

    def methods(self) -> list[str]:
        """
        @return: The method of each request sent, in order.
        """
        return [r.method for r, _ in self.requests]

    def statuses(self) -> list[int]:
        """
        @return: The status of each response sent, in order.
        """
        return [r.status for r, _ in self.responses]

    def invites(self) -> list[tuple[Request, Peer]]:
        """
        @return: The C{(INVITE, peer)} pairs sent, in order.
        """
        return [(r, p) for r, p in self.requests if r.method == "INVITE"]


# -- raw SIP peers on real sockets -------------------------------------------------


def status_of(data: bytes) -> int:
    """
    The status code of a response in raw bytes (read from the status line
    only: an error response may echo a malformed header of the request).

    @raise AssertionError: C{data} is not a SIP/2.0 response.
    """
    version, code, _ = data.split(b"\r\n", 1)[0].split(b" ", 2)
    assert version == b"SIP/2.0", data[:40]
    return int(code)


def raw_call_id(data: bytes) -> str | None:
    """
    The Call-ID of a message in raw bytes (long or compact form), or
    C{None}.
    """
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() in (b"call-id", b"i"):
            return value.strip().decode("utf-8", "surrogateescape")
    return None


class Inbox:
    """
    Messages received, in order: read through a cursor (L{next_message},
    L{next_final}), or picked by predicate (L{take}).

    @ivar received: Every message, in arrival order.
    @ivar cursor: How many of them L{next_message} has handed out.
    """

    def _init_inbox(self, clock: IReactorTime | None) -> None:
        self.received: list[bytes] = []
        self.cursor = 0
        self._clock = clock
        self._waiter: defer.Deferred[bytes] | None = None
        self._taken: set[int] = set()

    def _reactor(self) -> IReactorTime:
        return self._clock if self._clock is not None else _global_reactor()

    def _arrived(self, data: bytes) -> None:
        self.received.append(data)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and self.cursor < len(self.received):
            d, self._waiter = self._waiter, None
            data = self.received[self.cursor]
            self.cursor += 1
            d.callback(data)

    def next_message(self, timeout: float = 5.0) -> defer.Deferred[bytes]:
        """
        Fire with the next unread message, now or when it comes.

        @raise defer.TimeoutError: (in the Deferred) nothing came within
            C{timeout} seconds.
        """
        d: defer.Deferred[bytes] = defer.Deferred(lambda _: setattr(self, "_waiter", None))
        self._waiter = d
        self._wake()
        d.addTimeout(timeout, self._reactor())
        return d

    def skip_all(self) -> None:
        """
        Mark everything received so far as read.
        """
        self.cursor = len(self.received)

    async def next_final(self, timeout: float = 5.0, call_id: str | None = None) -> bytes:
        """
        The next final response (1xx skipped), for C{call_id} if given;
        other messages are read past.
        """
        while True:
            data = await self.next_message(timeout)
            if data.startswith(b"SIP/2.0 1"):
                continue
            if call_id is not None and raw_call_id(data) != call_id:
                continue
            return data

    def matching(self, predicate: Callable[[bytes], bool]) -> list[bytes]:
        """
        Every message received so far that matches, taken or not.
        """
        return [m for m in self.received if predicate(m)]

    async def take(self, predicate: Callable[[bytes], bool], timeout: float = 5.0) -> bytes:
        """
        The first message not yet taken that matches C{predicate}, now or
        when it comes (independent of the cursor).

        @raise WaitTimeout: none came within C{timeout} seconds; the
            message shows the start of everything received.
        """

        def first() -> bytes | None:
            for i, m in enumerate(self.received):
                if i not in self._taken and predicate(m):
                    self._taken.add(i)
                    return m
            return None

        def seen() -> str:
            return "a message matching %s; got %r" % (_describe(predicate), [m[:40] for m in self.received])

        return await wait_until(first, timeout, interval=0.01, what=seen, clock=self._reactor())


class UdpPeer(DatagramProtocol, Inbox):
    """
    A raw UDP SIP (or RTP) peer collecting every datagram it receives.
    """

    def __init__(self, clock: IReactorTime | None = None) -> None:
        """
        @param clock: The reactor timing out waits; the global one by
            default.
        """
        self._init_inbox(clock)

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        """
        Keep C{data}.
        """
        self._arrived(data)

    def send(self, data: bytes, port: int, host: str = "127.0.0.1") -> None:
        """
        Send C{data} to C{host:port}.
        """
        self.transport.write(data, (host, port))  # type: ignore[union-attr]


class StreamPeer(Protocol, Inbox):
    """
    A raw TCP/TLS SIP peer framing what it receives by Content-Length
    (CRLF keep-alives are dropped).

    @ivar closed: Fires with C{None} when the connection is lost.
    """

    def __init__(self, clock: IReactorTime | None = None) -> None:
        """
        @param clock: The reactor timing out waits; the global one by
            default.
        """
        self._init_inbox(clock)
        self.framer = StreamFramer()
        self.closed: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        """
        Keep each whole message in C{data}.
        """
        for frame in self.framer.feed(data):
            if frame.strip():
                self._arrived(frame)

    def connectionLost(self, reason: Failure | None = None) -> None:
        """
        Fire C{closed}.
        """
        if not self.closed.called:
            self.closed.callback(None)

    def send(self, data: bytes) -> None:
        """
        Write C{data} on the connection.
        """
        self.transport.write(data)  # type: ignore[union-attr]


class StreamPeerFactory(Factory):
    """
    Builds a L{StreamPeer} per connection.
    """

    protocol = StreamPeer


def listen_udp(
    case: SynchronousTestCase, host: str = "127.0.0.1", port: int = 0, reactor: Any = None
) -> tuple[UdpPeer, int]:
    """
    A L{UdpPeer} listening on C{host:port}, stopped after the test.

    @param case: The test whose cleanup stops it.
    @param reactor: An C{IReactorUDP}; the global reactor by default.
    @return: The peer and its port.
    """
    reactor = reactor if reactor is not None else _global_reactor()
    peer = UdpPeer(reactor)
    listening = reactor.listenUDP(port, peer, interface=host)
    case.addCleanup(listening.stopListening)
    return peer, listening.getHost().port


async def connect_stream(
    case: SynchronousTestCase,
    port: int,
    host: str = "127.0.0.1",
    ca_pem: bytes | None = None,
    server_name: str = "127.0.0.1",
    reactor: Any = None,
) -> StreamPeer:
    """
    A L{StreamPeer} connected to C{host:port} over TCP, or over TLS when
    C{ca_pem} is given; aborted (if still open) after the test, which
    waits until it is closed.

    @param ca_pem: The CA certificate (PEM) the server's must chain to.
    @param server_name: The name the server's certificate must carry.
    @param reactor: The reactor to connect with; the global one by
        default.
    """
    reactor = reactor if reactor is not None else _global_reactor()
    endpoint: Any = TCP4ClientEndpoint(reactor, host, port)
    if ca_pem is not None:
        options = optionsForClientTLS(server_name, Certificate.loadPEM(ca_pem))
        endpoint = SSL4ClientEndpoint(reactor, host, port, options)
    peer = await connectProtocol(endpoint, StreamPeer(reactor))

    def close() -> defer.Deferred[None]:
        if not peer.closed.called:
            peer.transport.abortConnection()  # type: ignore[union-attr]
        return peer.closed

    case.addCleanup(close)
    return peer


# -- a plain UDP socket for synchronous tests ------------------------------------


class UdpSocket:
    """
    A non-blocking UDP socket bound to a free loopback port, without a
    reactor (for tests that drive a relay or a reactor by hand), closed
    after the test.

    @ivar sock: The socket.
    @ivar address: Its C{(host, port)}.
    """

    def __init__(self, case: SynchronousTestCase, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        case.addCleanup(self.sock.close)
        self.address: tuple[str, int] = self.sock.getsockname()[:2]

    def send(self, data: bytes, address: tuple[str, int]) -> None:
        """
        Send C{data} to C{address}.
        """
        self.sock.sendto(data, address)

    def read(self) -> list[bytes]:
        """
        Every datagram queued on the socket now, in order (none waits).
        """
        out = []
        while True:
            try:
                out.append(self.sock.recv(65536))
            except BlockingIOError:
                return out


# -- end of the shared toolbox --


# -- Call fakes ---------------------------------------------------------------


class ListSink:
    """
    An L{aiconnect.legs.EventSink} that keeps events in a list.
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, tenant: str, session_id: str, payload: Mapping[str, Any]) -> str:
        """
        Keep the event; return its id.
        """
        self.events.append(dict(payload))
        return str(payload.get("eventId"))

    def names(self) -> list[str]:
        """
        The event names in order.
        """
        return [e["event"] for e in self.events]


@dataclass
class FakeTenant:
    """
    The part of a L{aiconnect.config.TenantConfig} a L{Call} reads.
    """

    domain: str = "customer.example.com"


@dataclass
class FakeOrder:
    """
    The part of a forward order a L{Call} reads.
    """

    uri: str = "sip:aiforward@customer.example.com"
    reference_id: Any = None

    def describe(self) -> dict[str, Any]:
        """
        The order's JSON (as L{aiconnect.siprec.orders.ForwardOrder}).
        """
        return {"uri": self.uri, "sipRecForwardReferenceId": self.reference_id}


class FakeLeg:
    """
    An L{aiconnect.legs.ForwardLeg} that records what it is asked.  It
    stays trying until the test reports a fact for it; asked to stop, it
    reports L{ForwardStopped} at once (with C{awaiting_bye} when the test
    set it: then the SRS's answer to the BYE is the test's to report).
    """

    awaiting_bye = False

    def __init__(self, runner: CallRunner, forward_id: str, order: Any) -> None:
        self.runner = runner
        self.forward_id = forward_id
        self.order = order
        self.started = False
        self.stopped_by: str | None = None
        self.updates: list[tuple[bool, bool]] = []
        self.session: Any = None
        self.paused: list[bool] = []

    def start(self) -> None:
        self.started = True

    def set_paused(self, paused: bool) -> None:
        self.paused.append(paused)

    def stop(self, stopped_by: str) -> None:
        self.stopped_by = stopped_by
        self.runner.report(ForwardStopped, forward_id=self.forward_id, stopped_by=stopped_by, awaiting_bye=self.awaiting_bye)

    def inbound_updated(self, media_changed: bool, metadata_changed: bool) -> None:
        self.updates.append((media_changed, metadata_changed))

    def stats(self) -> dict[str, Any] | None:
        return None

    def dialog(self) -> Any:
        return self.session


class RecordingLegFactory:
    """
    An L{aiconnect.legs.LegFactory} making L{FakeLeg}s.

    @ivar legs: the legs made, in order.
    """

    def __init__(self) -> None:
        self.legs: list[FakeLeg] = []

    def __call__(self, runner: CallRunner, forward_id: str, order: Any) -> FakeLeg:
        leg = FakeLeg(runner, forward_id, order)
        self.legs.append(leg)
        return leg

    @property
    def started(self) -> list[str]:
        """
        The forward ids of the legs started, in order.
        """
        return [leg.forward_id for leg in self.legs if leg.started]


class FakeOutputLeg:
    """
    An L{aiconnect.legs.OutputLeg} that records what it is asked.  It stays
    starting until the test reports for it (C{runner.output_started} ...);
    asked to stop, it reports C{output_stopped} at once unless C{hold_stop}
    (then the test reports it).
    """

    hold_stop = False

    def __init__(self, runner: CallRunner, kind: str, output_id: str, order: Any) -> None:
        self.runner = runner
        self.kind = kind
        self.output_id = output_id
        self.order = order
        self.started = False
        self.stopped_by: str | None = None
        self.paused: list[bool] = []

    def start(self) -> None:
        self.started = True

    def stop(self, stopped_by: str) -> None:
        self.stopped_by = stopped_by
        if not self.hold_stop:
            self.runner.output_stopped(self.output_id, stopped_by, {"stats": {"frames": 0}})

    def set_paused(self, paused: bool) -> None:
        self.paused.append(paused)

    def stats(self) -> dict[str, Any]:
        return {"paused": bool(self.paused and self.paused[-1])}


class RecordingOutputFactory:
    """
    An L{aiconnect.legs.OutputFactory} making L{FakeOutputLeg}s.

    @ivar legs: the legs made, in order.
    """

    def __init__(self) -> None:
        self.legs: list[FakeOutputLeg] = []

    def __call__(self, runner: CallRunner, kind: str, output_id: str, order: Any) -> FakeOutputLeg:
        leg = FakeOutputLeg(runner, kind, output_id, order)
        self.legs.append(leg)
        return leg


def make_runner(
    tenant: Any = None,
    sink: Any = None,
    clock: Any = None,
    leg_factory: Any = None,
    limits: CallLimits | None = None,
    counters: dict[str, int] | None = None,
    acked: bool = False,
    call_id: str = "cid",
    from_header: str = "<sip:a@x>;tag=1",
    to_header: str = "<sip:b@y>",
    source: str = "127.0.0.1",
    session_id: str | None = None,
    output_factory: Any = None,
) -> CallRunner:
    """
    A L{CallRunner} around a new L{Call}, events into a L{ListSink} unless
    C{sink} is given; answered and ACKed when C{acked}.
    """
    clock = clock if clock is not None else Clock()
    call = Call(
        tenant if tenant is not None else FakeTenant(),
        call_id,
        from_header,
        to_header,
        source,
        now=clock.seconds(),
        session_id=session_id,
        limits=limits,
        counters=counters,
    )
    runner = CallRunner(
        call, clock, sink if sink is not None else ListSink(), leg_factory=leg_factory, output_factory=output_factory
    )
    if acked:
        runner.report(InboundAnswered)
        runner.report(InboundAcked)
    return runner
