"""
Protection limits of L{aiconnect.media.relay} (SPEC s12): the media timeout
per stream, oversize datagrams dropped whole, and running out of file
descriptors reported as such.

The relay's sockets are real (127.0.0.1); time is a fake clock, and the
reactor paths (Twisted's C{listenUDP}, L{RelayEPollReactor}'s direct
dispatch) are driven one iteration at a time, never run.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from twisted.internet.interfaces import IReactorTime, IReactorUDP
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from aiconnect.media import relay as relay_mod
from aiconnect.media.sockets import RelayPort
from aiconnect.media.ports import FileDescriptorsExhausted, PortsExhausted
from aiconnect.media.relay import InboundStream, MediaRelay, MediaSession, RelayEPollReactor
from aiconnect.siprec.srs import no_media_error
from tests.fakes import UdpSocket, rtp_packet

SRC = ("127.0.0.1", 40000)
SRC2 = ("127.0.0.1", 40002)
#: Above the ephemeral range; clear of the other media tests' 62000-64099.
PORTS = (64200, 64299)
#: The oversize tests' range (their listenUDP ports close a turn late).
OVERSIZE_PORTS = (64300, 64399)


def pcmu(seq: int, size: int = 172) -> bytes:
    """
    A PCMU packet of C{size} octets in all.
    """
    return rtp_packet(seq, 160 * seq, 7, 0, b"\x11" * (size - 12))


def feed_second_stream(session: MediaSession, clock: MemoryReactorClock, seconds: int, first: int = 0) -> None:
    """
    Keep C{session}'s second stream alive for C{seconds}: each second, one
    packet from L{SRC2} (sequence numbers from C{first}), then the clock
    moves one second.
    """
    for k in range(seconds):
        session.streams[1].datagramReceived(pcmu(first + k), SRC2)
        clock.advance(1)


def port_is_free(port: int) -> bool:
    """
    Whether a loopback UDP port can be bound (nobody holds it).
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        return False
    finally:
        s.close()
    return True


class PerStreamTimeoutTests(SynchronousTestCase):
    """
    A stream silent for the media timeout is closed and its ports released,
    while the session lives on as long as one stream carries media.
    """

    def make_relay(self, port_min: int = PORTS[0], port_max: int = PORTS[1]) -> tuple[MediaRelay, MemoryReactorClock]:
        clock = MemoryReactorClock()
        relay = MediaRelay(clock, "127.0.0.1", port_min, port_max, media_timeout=10.0)
        self.addCleanup(relay.close)
        return relay, clock

    def test_silent_stream_closed_alone(self) -> None:
        """
        With one stream alive, the silent one is closed after media_timeout:
        its ports are free (bindable, back in the pool), it is reported,
        counted and marked in the stats; the session times out only when
        the last stream falls silent too.
        """
        relay, clock = self.make_relay()
        timeouts: list[MediaSession] = []
        ended: list[InboundStream] = []
        session = relay.allocate_session(2, on_timeout=timeouts.append)
        session.on_stream_timeout = lambda _s, stream: ended.append(stream)
        session.set_inbound(0, remote=SRC)
        session.set_inbound(1, remote=SRC2)
        silent = session.streams[0]
        port = silent.rtp_port
        feed_second_stream(session, clock, 12)
        self.assertEqual(ended, [silent])
        self.assertEqual(timeouts, [])
        self.assertTrue(port_is_free(port) and port_is_free(port + 1))
        self.assertEqual(relay.pool.in_use(), [session.streams[1].rtp_port])
        self.assertTrue(session.stats()["streams"][0]["timed_out"])
        self.assertFalse(session.stats()["streams"][1]["timed_out"])
        self.assertEqual(relay.stats()["streams_timed_out"], 1)
        clock.advance(10)
        self.assertEqual(timeouts, [session])
        self.assertEqual(ended, [silent])

    def test_paused_stream_kept(self) -> None:
        """
        A stream the SRC does not send on (set_expect_media False: a=inactive
        or recvonly) is never closed alone; expected again, its silence
        counts from then.
        """
        relay, clock = self.make_relay()
        session = relay.allocate_session(2)
        session.set_inbound(0, remote=SRC)
        session.set_inbound(1, remote=SRC2)
        session.set_expect_media(0, False)
        feed_second_stream(session, clock, 30)
        self.assertFalse(session.streams[0].ended)
        session.set_expect_media(0, True)
        feed_second_stream(session, clock, 9, first=30)
        self.assertFalse(session.streams[0].ended)
        feed_second_stream(session, clock, 2, first=40)
        self.assertTrue(session.streams[0].ended)

    def test_released_port_not_released_twice(self) -> None:
        """
        A timed-out stream's pair, taken by another session meanwhile, stays
        that session's when the first session closes.
        """
        relay, clock = self.make_relay(PORTS[0], PORTS[0] + 5)  # 3 pairs
        first = relay.allocate_session(2)
        first.set_inbound(1, remote=SRC2)
        feed_second_stream(first, clock, 11)
        freed = first.streams[0].rtp_port
        self.assertTrue(first.streams[0].ended)
        second = relay.allocate_session(2)
        self.assertIn(freed, [s.rtp_port for s in second.streams])
        first.close()
        self.assertEqual(relay.pool.in_use(), sorted(s.rtp_port for s in second.streams))
        self.assertFalse(port_is_free(freed))

    def test_reopen_exhausted(self) -> None:
        """
        With no pair free, reopen_stream raises PortsExhausted and the
        stream stays closed, showing its last ports, holding none.
        """
        relay, clock = self.make_relay(PORTS[0], PORTS[0] + 3)  # 2 pairs
        session = relay.allocate_session(2)
        session.set_inbound(1, remote=SRC2)
        feed_second_stream(session, clock, 11)
        stream = session.streams[0]
        port = stream.rtp_port
        other = relay.allocate_session(1)
        self.assertRaises(PortsExhausted, session.reopen_stream, 0)
        self.assertTrue(stream.ended)
        self.assertEqual((stream.rtp_port, stream.rtcp_port), (port, port + 1))
        session.close()
        self.assertEqual(relay.pool.in_use(), [other.streams[0].rtp_port])

    def test_reopen(self) -> None:
        """
        reopen_stream binds fresh ports for a timed-out stream, which then
        relays to its forward again; a live stream is left as it is.
        """
        relay, clock = self.make_relay()
        session = relay.allocate_session(2)
        session.set_inbound(0, remote=SRC)
        session.set_inbound(1, remote=SRC2)
        sink = UdpSocket(self)
        session.add_forward("f", 2).connect(0, sink.address, codec="PCMU", payload_type=0)
        feed_second_stream(session, clock, 11)
        stream = session.streams[0]
        self.assertTrue(stream.ended)
        self.assertIs(session.reopen_stream(1), session.streams[1])
        self.assertIs(session.reopen_stream(0), stream)
        self.assertFalse(stream.ended)
        self.assertFalse(port_is_free(stream.rtp_port))
        self.assertFalse(port_is_free(stream.rtcp_port))
        stream.datagramReceived(pcmu(1), SRC)
        self.assertEqual(len(sink.read()), 1)
        in_use = relay.pool.in_use()
        self.assertEqual(len(in_use), 4)  # 2 inbound, 2 forward
        self.assertTrue({s.rtp_port for s in session.streams} <= set(in_use))
        session.close()
        self.assertEqual(relay.pool.in_use(), [])


@implementer(IReactorTime, IReactorUDP)
class _UdpOnlyReactor:
    """
    A reactor without C{IReactorFDSet}: the relay falls back to
    C{listenUDP} (Twisted's own C{udp.Port} reads the datagrams).
    """

    def __init__(self, real: Any) -> None:
        self.real = real

    def seconds(self) -> float:
        return float(self.real.seconds())

    def callLater(self, *args: Any, **kwargs: Any) -> Any:
        return self.real.callLater(*args, **kwargs)

    def getDelayedCalls(self) -> Any:
        return self.real.getDelayedCalls()

    def listenUDP(self, *args: Any, **kwargs: Any) -> Any:
        return self.real.listenUDP(*args, **kwargs)


class OversizeTests(SynchronousTestCase):
    """
    A datagram longer than 2,048 octets is dropped whole and counted as
    C{oversize}, on every read path; a normal packet after it passes.
    """

    def setUp(self) -> None:
        if RelayEPollReactor is None:
            raise self.skipTest("no epoll here")
        self.reactor = RelayEPollReactor()
        self.addCleanup(self.reactor._poller.close)
        # listenUDP ports close on a later reactor turn: give it those turns.
        self.addCleanup(lambda: [self.reactor.doIteration(0) for _ in range(3)])

    def check(self, relay: MediaRelay, pump: Any) -> None:
        self.addCleanup(relay.close)
        src, sink = UdpSocket(self), UdpSocket(self)
        session = relay.allocate_session(1)
        session.set_inbound(0, remote=src.address, rtcp_remote=src.address)
        session.add_forward("f", 1).connect(0, sink.address, codec="PCMU", payload_type=0)
        stream = session.streams[0]
        src.send(pcmu(1, size=3000), ("127.0.0.1", stream.rtp_port))
        src.send(pcmu(2, size=2049), ("127.0.0.1", stream.rtp_port))
        src.send(b"\x81\xc8" + bytes(2998), ("127.0.0.1", stream.rtcp_port))
        src.send(pcmu(3, size=2048), ("127.0.0.1", stream.rtp_port))
        got = pump(sink)
        self.assertEqual([len(d) for d in got], [2048])  # only the last one
        stats = session.stats()["streams"][0]
        self.assertEqual(stats["drops"]["oversize"], 3)
        self.assertEqual(stats["drops"]["malformed"], 0)
        self.assertEqual(stats["packets_in"], 1)
        self.assertEqual(relay.stats()["drops"]["oversize"], 3)

    def _pump(self, sink: UdpSocket) -> list[bytes]:
        got: list[bytes] = []
        for _ in range(20):
            self.reactor.doIteration(0.02)
            got += sink.read()
        return got

    def test_direct_dispatch(self) -> None:
        """
        L{RelayEPollReactor} reading the relay's own ports.
        """
        self.check(MediaRelay(self.reactor, "127.0.0.1", *OVERSIZE_PORTS), self._pump)

    def test_listen_udp(self) -> None:
        """
        A reactor without C{IReactorFDSet}: C{listenUDP} ports.
        """
        self.check(MediaRelay(_UdpOnlyReactor(self.reactor), "127.0.0.1", *OVERSIZE_PORTS), self._pump)

    def test_forward_ports(self) -> None:
        """
        An oversize datagram from the SRS to a forward port is dropped and
        counted too.
        """
        relay = MediaRelay(self.reactor, "127.0.0.1", *OVERSIZE_PORTS)
        self.addCleanup(relay.close)
        srs = UdpSocket(self)
        session = relay.allocate_session(1)
        forward = session.add_forward("f", 1)
        forward.connect(0, srs.address, codec="PCMU", payload_type=0)
        srs.send(bytes(3000), ("127.0.0.1", forward.streams[0].rtp_port))
        srs.send(bytes(100), ("127.0.0.1", forward.streams[0].rtp_port))
        self._pump(srs)
        stats = session.stats()["forwards"]["f"]["streams"][0]
        self.assertEqual((stats["drops"]["oversize"], stats["packets_from_srs"]), (1, 1))


class OutOfDescriptorsTests(SynchronousTestCase):
    """
    EMFILE/ENFILE while creating a relay socket is not "no ports left".
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.relay = MediaRelay(self.clock, "127.0.0.1", *PORTS)
        self.addCleanup(self.relay.close)
        self.logged: list[dict[str, Any]] = []
        self.relay.log = relay_mod.Logger(observer=self.logged.append)
        self.attempts = 0

    def fail_with(self, code: int) -> None:
        def create(port: Any) -> socket.socket:
            self.attempts += 1
            raise OSError(code, "Too many open files")

        self.patch(RelayPort, "createInternetSocket", create)

    def test_emfile(self) -> None:
        """
        allocate_session raises L{FileDescriptorsExhausted} (a
        L{PortsExhausted}) at once, without trying other ports, keeps no
        port, counts it, and logs one line naming LimitNOFILE.
        """
        self.fail_with(errno.EMFILE)
        with self.assertRaises(FileDescriptorsExhausted):
            self.relay.allocate_session(2)
        self.assertEqual(self.attempts, 1)
        self.assertEqual(self.relay.pool.available, self.relay.pool.capacity)
        self.assertEqual(self.relay.stats()["fd_exhausted"], 1)
        self.assertEqual(len(self.logged), 1)
        self.assertEqual(self.logged[0]["log_level"].name, "error")
        self.assertIn("LimitNOFILE", self.logged[0]["log_format"])

    def test_enfile_logged_once_a_minute(self) -> None:
        """
        ENFILE too; repeated failures are all counted, logged once a minute.
        """
        self.fail_with(errno.ENFILE)
        for _ in range(3):
            self.assertRaises(FileDescriptorsExhausted, self.relay.allocate_session, 1)
        self.clock.advance(61)
        self.assertRaises(PortsExhausted, self.relay.allocate_session, 1)
        self.assertEqual(self.relay.stats()["fd_exhausted"], 4)
        self.assertEqual(len(self.logged), 2)

    def test_forward_and_added_streams(self) -> None:
        """
        Adding a forward or streams fails the same way, keeping nothing.
        """
        session = self.relay.allocate_session(1)
        self.fail_with(errno.EMFILE)
        self.assertRaises(FileDescriptorsExhausted, session.add_forward, "f", 2)
        self.assertRaises(FileDescriptorsExhausted, session.add_streams, 2)
        self.assertEqual(self.relay.pool.in_use(), [session.streams[0].rtp_port])
        self.assertEqual(self.relay.stats()["fd_exhausted"], 2)

    def test_sip_answer(self) -> None:
        """
        The SRS answers 503 "Out of file descriptors" for it, "No RTP ports
        left" for a full range, both with Retry-After.
        """
        for exc, reason in ((FileDescriptorsExhausted("x"), "Out of file descriptors"), (PortsExhausted("x"), "No RTP ports left")):
            e = no_media_error(exc)
            self.assertEqual((e.status_hint, e.reason), (503, reason))
            self.assertEqual(e.headers, [("Retry-After", "5")])  # type: ignore[attr-defined]
