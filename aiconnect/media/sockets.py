# -*- test-case-name: tests.media.test_sockets,tests.media.test_relay_limits,tests.media.test_relay_reactor -*-
"""
The relay's sockets: the UDP port class its hot path reads through, the
protocol base every relay port shares, binding RTP/RTCP port pairs, and the
epoll reactor that dispatches the relay's ports directly.

  - L{RelayPort}: a C{udp.Port} that reads one datagram per readiness
    event and hands it straight to the protocol (STYLE s4).
  - L{Endpoint}: the protocol base (the port, its counters, C{send} and
    C{sendto}); the streams of L{aiconnect.media.streams} derive from it.
  - L{PortBinder}: books pairs from the L{PortPool}, builds the protocols
    and binds RTP and RTCP for each; a port another process holds is set
    aside (L{PortBindError} names it), running out of file descriptors
    raises L{FileDescriptorsExhausted} at once.
  - L{RelayEPollReactor}: Twisted's epoll reactor with the relay's ports
    dispatched without the per-event logging context.

Nothing here knows about RTP: the streams do.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from twisted.internet import udp
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorFDSet
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from aiconnect.media.ports import FileDescriptorsExhausted, PortPool, PortsExhausted

__all__ = [
    "MAX_DATAGRAM",
    "RECV_SIZE",
    "Address",
    "Endpoint",
    "PortBindError",
    "PortBinder",
    "PortPair",
    "RelayEPollReactor",
    "RelayPort",
    "normalize_address",
    "normalize_host",
]

Address = tuple[str, int]

#: The largest datagram relayed; anything longer is dropped (C{oversize}).
MAX_DATAGRAM = 2048
#: What a socket read asks for: one octet more than L{MAX_DATAGRAM}, so a
#: datagram the kernel had to truncate is seen as too long, not relayed cut.
RECV_SIZE = MAX_DATAGRAM + 1
#: How many sets of pairs L{PortBinder.bind_pairs} tries before giving up.
_BIND_ATTEMPTS = 8

_READ_IGNORE = frozenset(
    {errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR, errno.ECONNREFUSED, errno.EHOSTUNREACH,
     errno.ENETUNREACH, errno.EMSGSIZE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNRESET}
)  # fmt: skip


def normalize_address(address: Address | None) -> Address | None:
    """
    An address in the form C{recvfrom} reports (IP literals are canonical),
    so the hot path compares like with like.

    @raise ValueError: for a port out of range or a host that is not an IP
        literal.
    """
    if address is None:
        return None
    host, port = address
    if not 0 < port < 65536:
        raise ValueError(f"port out of range: {port}")
    return normalize_host(host), port


def normalize_host(host: str) -> str:
    """
    The canonical form of an IPv4 or IPv6 literal.

    @raise ValueError: for anything else (a host name).
    """
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_ntop(family, socket.inet_pton(family, host))
        except OSError:
            continue
    raise ValueError(f"not an IP address literal: {host!r}")


class PortBindError(OSError):
    """
    A relay port could not be bound (another process holds it, most often).

    @ivar port: the port that failed, so the binder sets its pair aside.
    """

    def __init__(self, port: int, message: str) -> None:
        super().__init__(errno.EADDRINUSE, message)
        self.port = port


class RelayPort(udp.Port):
    """
    A UDP port for the relay's hot path (STYLE s4): one C{recvfrom} per
    readiness event (an RTP socket gets one packet per 20 ms), delivery
    straight to the protocol's C{datagramReceived}, no log lines when
    binding, and a synchronous L{close_now} so a released port number is
    really free.

    Writing does not go through this class at all: the relay keeps the
    socket's C{send} (connected towards an SRS) or C{sendto} and calls it
    directly.

    A connected UDP socket that gets an ICMP error (the SRS's port is
    closed) reports it as C{EPOLLERR}, which a stock reactor takes for a
    disconnection; L{connectionLost} clears the error and keeps the port.
    """

    log = Logger()
    _v6 = False
    _deliver: Callable[[bytes, Address], None]
    _recvfrom: Callable[[int], tuple[bytes, Any]]

    def _bindSocket(self) -> None:
        try:
            skt = self.createInternetSocket()
            skt.bind((self.interface, self.port))
        except OSError as e:
            raise CannotListenError(self.interface, self.port, e)
        self._realPortNumber = skt.getsockname()[1]
        self.connected = 1
        self.socket = skt
        self.fileno = skt.fileno
        self._v6 = self.addressFamily == socket.AF_INET6
        self._recvfrom = skt.recvfrom

    def _connectToProtocol(self) -> None:
        self._deliver = self.protocol.datagramReceived
        super()._connectToProtocol()

    def doRead(self) -> None:
        """
        Read one datagram and hand it to the protocol; never raise.
        """
        try:
            data, addr = self._recvfrom(RECV_SIZE)  # > MAX_DATAGRAM: oversize
        except OSError as e:
            if e.errno not in _READ_IGNORE:
                self.protocol.read_errors += 1
            return None
        if self._v6:
            addr = addr[:2]
        try:
            self._deliver(data, addr)
        except Exception:
            # A bug in the relay; count it, log the first, keep the port.
            self.protocol.internal_errors += 1
            if self.protocol.internal_errors == 1:
                self.log.failure("RTP relay failed on a packet for port {port}", port=self.port)
        return None

    def connectionLost(self, reason: Any = None) -> None:
        """
        Only the reactor calls this (L{close_now} does not): a socket error
        it mistook for a disconnection.  Clear it and keep reading.
        """
        if not self.connected:
            return
        try:
            self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError:
            pass
        self.startReading()

    def close_now(self) -> None:
        """
        Stop reading and close the socket now (not on the next reactor
        turn, as C{stopListening} would).
        """
        if not self.connected:
            return
        self.stopReading()
        self.connected = 0
        self.disconnected = 1
        self._realPortNumber = None
        self.socket.close()
        self.protocol.doStop()


class Endpoint(DatagramProtocol):
    """
    Common base of the relay's protocols: the port and its counters.

    @ivar port: the local port number.
    @ivar listening: the listening port (a L{RelayPort}, or what
        C{listenUDP} returned), C{None} before L{attach} and after
        L{close}.
    @ivar send: send on the socket connected by L{connect_peer}.
    @ivar sendto: send to an address.
    """

    noisy = False
    __slots__ = ("port", "read_errors", "internal_errors", "oversize", "listening", "sendto", "send", "_peer")

    def __init__(self) -> None:
        self.port: int = 0
        self.read_errors = 0
        self.internal_errors = 0
        self.oversize = 0  # datagrams over MAX_DATAGRAM, dropped
        self.listening: Any = None
        self.sendto: Callable[[bytes, Address], int] = _closed_sendto
        self.send: Callable[[bytes], int] = _closed_send
        self._peer: Address | None = None

    def attach(self, listening: Any) -> None:
        """
        The socket is bound: keep its port and write through its C{sendto}.
        """
        self.listening = listening
        self.sendto = listening.socket.sendto

    def connect_peer(self, peer: Address) -> None:
        """
        Connect the socket to C{peer} and use C{send}: the kernel keeps the
        route, the hot path skips parsing an address per packet, and only
        C{peer}'s datagrams are delivered here.
        """
        if self.listening is None or peer == self._peer:
            return
        sock = self.listening.socket
        self._peer = peer
        try:
            sock.connect(peer)
        except OSError:
            # No route, another address family...: send unconnected, and
            # let every packet fail (and be counted) on its own.
            sendto = sock.sendto
            self.send = lambda data: sendto(data, peer)
            return
        self.send = sock.send

    def close(self) -> None:
        """
        Close the socket now (its port number is free when this returns);
        idempotent.  Writes fail with C{EBADF} from then on.
        """
        listening, self.listening = self.listening, None
        self.sendto = _closed_sendto
        self.send = _closed_send
        if listening is None:
            return
        if isinstance(listening, RelayPort):
            listening.close_now()
        else:
            listening.stopListening()


def _closed_sendto(data: bytes, address: Address) -> int:
    raise OSError(errno.EBADF, "relay port closed")


def _closed_send(data: bytes) -> int:
    raise OSError(errno.EBADF, "relay port closed")


class PortPair(Protocol):
    """
    What L{PortBinder.bind_pairs} binds: an RTP endpoint with its RTCP
    endpoint (an inbound or an outbound stream).
    """

    rtp_port: int
    rtcp_port: int
    rtcp: Endpoint

    def attach(self, listening: Any) -> None:
        """
        The RTP socket is bound.
        """

    def close(self) -> None:
        """
        Close the RTP and RTCP sockets.
        """


_Pair = TypeVar("_Pair", bound=PortPair)


class PortBinder:
    """
    Books RTP/RTCP port pairs from a pool and binds their sockets.

    The reactor must provide C{IReactorFDSet} for the fast path
    (L{RelayPort}); otherwise the ports come from C{listenUDP}.
    """

    def __init__(
        self,
        reactor: Any,
        host: str,
        pool: PortPool,
        on_fd_exhausted: Callable[[], None],
    ) -> None:
        """
        @param reactor: provides C{IReactorFDSet} (else C{IReactorUDP}).
        @param host: the IP literal to bind.
        @param pool: where the port numbers come from and go back to.
        @param on_fd_exhausted: called when a socket could not be created
            for lack of file descriptors, before L{FileDescriptorsExhausted}
            is raised.
        """
        self._reactor = reactor
        self._fdset = IReactorFDSet.providedBy(reactor)
        self.host = host
        self.pool = pool
        self._on_fd_exhausted = on_fd_exhausted

    def bind_pairs(
        self, n: int, build: Callable[[list[int]], Iterable[_Pair]], after: int | None = None
    ) -> list[_Pair]:
        """
        Book C{n} pairs, build the protocols, bind RTP and RTCP for each.

        A port some other process holds is kept aside and other pairs
        tried; whatever happens, every booked port not in use is released.

        @param build: makes one L{PortPair} per booked RTP port (called again
            for every attempt).
        @param after: book after this port where the range allows.
        @return: what C{build} made, every socket bound.
        @raise FileDescriptorsExhausted: out of file descriptors (at once:
            another port would fail the same way).
        @raise PortsExhausted: the pool is short, or binding kept failing.
        """
        held: list[int] = []
        last_error: OSError | None = None
        try:
            for _attempt in range(_BIND_ATTEMPTS):
                ports = self.pool.allocate(n, after=after)
                endpoints = list(build(ports))
                bound: list[Any] = []
                try:
                    for endpoint in endpoints:
                        self.listen(endpoint, endpoint.rtp_port)
                        bound.append(endpoint)
                        self.listen(endpoint.rtcp, endpoint.rtcp_port)
                        bound.append(endpoint.rtcp)
                except FileDescriptorsExhausted:
                    for b in bound:
                        b.close()
                    self.pool.release(ports)
                    self._on_fd_exhausted()
                    raise
                except OSError as e:
                    last_error = e
                    for b in bound:
                        b.close()
                    if isinstance(e, PortBindError):
                        failed = e.port
                    else:
                        failed = endpoints[len(bound) // 2].rtp_port
                    failed -= failed & 1
                    held.append(failed)
                    self.pool.release([p for p in ports if p != failed])
                    continue
                return endpoints
            raise PortsExhausted(f"could not bind {n} RTP port pairs on {self.host}: {last_error}")
        finally:
            self.pool.release(held)

    def listen(self, endpoint: Endpoint | PortPair, port: int) -> None:
        """
        Bind one socket for C{endpoint} on C{port}.

        @raise FileDescriptorsExhausted: out of file descriptors.
        @raise PortBindError: any other failure to bind.
        """
        try:
            if self._fdset:
                listening: Any = RelayPort(port, endpoint, self.host, RECV_SIZE, self._reactor)
                listening.startListening()
            else:
                listening = self._reactor.listenUDP(port, endpoint, interface=self.host, maxPacketSize=RECV_SIZE)
        except CannotListenError as e:
            if isinstance(e.socketError, OSError) and e.socketError.errno in (errno.EMFILE, errno.ENFILE):
                raise FileDescriptorsExhausted(f"no socket for RTP port {port}: {e.socketError}") from None
            raise PortBindError(port, str(e)) from None
        endpoint.attach(listening)


def _make_relay_reactor() -> Any:
    try:
        from twisted.internet.epollreactor import EPollReactor
    except ImportError:  # not Linux
        return None
    from twisted.python import log as legacy_log

    class RelayEPollReactor(EPollReactor):
        """
        The epoll reactor with the relay's sockets dispatched directly.

        For any event on a L{RelayPort}, C{doPoll} calls its C{doRead}
        straight away instead of going through C{log.callWithLogger} and
        C{_doReadOrWrite} (a logging context, a C{fileno} check and
        exception plumbing per packet, which C{RelayPort.doRead} does not
        need: it never raises, and its C{recvfrom} also collects a pending
        socket error).  Every other selectable is handled exactly as by
        L{EPollReactor}.

        Install it in place of the default reactor (the composition root
        decides; library code never installs a reactor)::

            from twisted.internet.main import installReactor
            installReactor(RelayEPollReactor())
        """

        def doPoll(self, timeout: float | None) -> None:
            if timeout is None:
                timeout = -1
            try:
                events = self._poller.poll(timeout, 256)
            except OSError as err:
                if err.errno == errno.EINTR:
                    return
                raise
            selectables = self._selectables
            drdw = self._doReadOrWrite
            for fd, event in events:
                selectable = selectables.get(fd)
                if selectable is None:
                    continue
                if type(selectable) is RelayPort:
                    selectable.doRead()
                else:
                    legacy_log.callWithLogger(selectable, drdw, selectable, fd, event)

        doIteration = doPoll

    return RelayEPollReactor


#: L{EPollReactor} with a direct dispatch for the relay's ports, or C{None}
#: where epoll is missing.
RelayEPollReactor = _make_relay_reactor()
