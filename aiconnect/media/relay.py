# -*- test-case-name: tests.media.test_relay,tests.media.test_relay_udp,tests.media.test_relay_reactor -*-
"""
The RTP relay: one C{DatagramProtocol} per port, fanning each inbound
stream out to every forward (SPEC s5).

API (what the SIP layer and the L{Call} use)
============================================

::

    relay = MediaRelay(reactor, host, port_min, port_max,
                       media_timeout=60.0, rtcp_interval=5.0)

    session = relay.allocate_session(n_streams, on_timeout=callable)
        # raises PortsExhausted; the streams get consecutive even ports
        # P, P+2, ... (RTCP on +1) where the range allows.
    session.streams[i].rtp_port / .rtcp_port      # for the SDP answer
    session.add_streams(n)                         # a re-INVITE added m-lines
        # raises PortsExhausted (nothing is kept then); the new streams
        # follow the last one's port where the range allows.
    session.set_inbound(i, remote=(host, port) | None, latch_host=None,
                        payload_map={0: "PCMU", 8: "PCMA",
                                     101: "telephone-event"},
                        srtp=SrtpParams | None, rtcp_remote=None)
        # again on every re-INVITE; the outbound streams stay continuous.

    forward = session.add_forward(forward_id, n_streams)
        # binds local ports for the SDP offer before the SRS answers;
        # raises PortsExhausted (nothing is kept then).
    forward.local_ports                            # RTP ports, stream order
    forward.add_streams(n)                         # the offer to the SRS grew
        # raises PortsExhausted (nothing is kept then); appended streams.
    forward.connect(i, remote=(host, port), codec="PCMA", payload_type=8,
                    dtmf_payload_type=101 | None, srtp_tx=SrtpParams | None,
                    srtp_rx=SrtpParams | None, rtcp_remote=None, source=None)
        # once the SRS answered; again for its re-INVITEs.
    stats = session.remove_forward(forward_id)     # final stats of that forward
    session.stats()                                # plain dicts, also after close
    session.close()                                # releases every port; idempotent

    relay.stats()                                  # totals for /metrics
    relay.close()                                  # shutdown: closes every session

C{on_timeout(session)} is called once when no RTP arrived on any inbound
stream for C{media_timeout} seconds (0 disables it); the relay does not end
the session itself, the L{Call} decides (reason C{mediaTimeout}).  While
another stream still carries RTP, a stream the SRC sends on
(C{session.set_expect_media(i, True)}, the default) silent that long is
closed alone: its ports are released, C{session.on_stream_timeout(session,
stream)} is called, and C{session.reopen_stream(i)} gives it fresh ports.

Datagrams over 2,048 octets are dropped whole (C{oversize}); running out of
file descriptors raises L{FileDescriptorsExhausted} (a L{PortsExhausted}).

Behaviour
=========

  - B{Symmetric RTP, no bleed.}  An inbound stream accepts RTP only from the
    negotiated C{remote}; with C{latch_host} (NATed SRCs) it latches the
    first source whose IP is the signalling peer's and then accepts only
    that.  Anything else is dropped and counted as C{foreign_source}.
  - B{Fan-out.}  Each accepted packet goes to every connected forward stream
    whose C{source} is this stream.  Per forward stream the SSRC is fresh
    and random, and sequence number and timestamp are offset so the
    outbound stream is continuous from its first packet: across inbound
    SSRC changes, sequence jumps over 3000 (RFC 3550 A.1's C{MAX_DROPOUT})
    and forwards that start mid-call.  At such a rebase the timestamp
    advances by the wall-clock gap rounded to 20 ms frames (at least one),
    and the marker bit is set.  The outbound header is the 12-octet fixed
    header: CSRCs, extensions and padding are not forwarded.
  - B{Codecs.}  PCMU and PCMA are translated with the G.711 direct tables
    (L{aiconnect.media.g711}) when the forward's codec differs;
    C{telephone-event} keeps its payload, with the forward's payload type
    (dropped as C{unsupported_payload} for a forward without one); C{CN}
    goes out as payload type 13.
  - B{SRTP.}  Inbound SRTP is authenticated and decrypted with the SRC's key
    (failures and replays counted as C{srtp_auth}, C{srtp_replay},
    C{srtp_error}); outbound packets are protected with the forward's key.
  - B{RTCP.}  Each forward stream that sent RTP since its last report sends
    a sender report (with an SDES CNAME) every C{rtcp_interval} seconds,
    randomized over [0.5, 1.5] of it (RFC 3550 s6.2); receiver reports from
    the SRS are parsed and kept (loss, jitter, round trip).  Inbound RTCP is
    counted and its sender reports kept; RTCP multiplexed on the RTP port
    (RFC 5761) is recognised.
  - B{Hot path.}  Per packet: one C{recvfrom}, a tuple comparison for the
    source, one C{struct} unpack and pack, C{bytes.translate} when
    transcoding, SRTP through libsrtp with a shared buffer, and C{send} on
    the forward's socket, connected to the SRS.  No Deferreds, no log
    lines, no allocation beyond the packet; every failure is a counter.
    The state a packet touches sits in C{__slots__}, so hundreds of
    streams taking turns cost few cache misses (docs/media.md has the
    measurements).

Counters: L{MediaSession.stats} returns plain dicts (per inbound stream and
per forward, with a per-forward total), ready for the REST API, C{/metrics}
and the final C{SIPRECFORWARDSTOPPED} event (L{MediaSession.remove_forward}
returns it).

The reactor is injected: it must provide C{IReactorTime} and
C{IReactorFDSet} (every POSIX reactor, and C{MemoryReactorClock} in tests);
a reactor without C{IReactorFDSet} falls back to C{listenUDP}.
L{RelayEPollReactor} is an optional epoll reactor that keeps Twisted's
per-event logging context off the relay's sockets (see docs/media.md).
"""

from __future__ import annotations

import errno
import secrets
import socket
import struct
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from twisted.internet import udp
from twisted.internet.interfaces import IDelayedCall, IReactorFDSet, IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from aiconnect.media.g711 import ALAW_TO_ULAW, ULAW_TO_ALAW
from aiconnect.media.ports import FileDescriptorsExhausted, PortPool, PortsExhausted
from aiconnect.media.rtp import (
    ReportBlock,
    RtcpReceiverReport,
    RtcpSenderReport,
    build_sdes_cname,
    ntp_middle32,
    ntp_timestamp,
    parse_rtcp,
    rtp_payload_bounds,
)
from aiconnect.media.srtp import SrtpContext, SrtpParams

__all__ = [
    "FileDescriptorsExhausted",
    "ForwardMedia",
    "InboundStream",
    "MediaRelay",
    "MediaSession",
    "OutboundStream",
    "PortsExhausted",
    "RelayEPollReactor",
]

Address = tuple[str, int]

#: Payload kinds an inbound payload map may name.
KINDS = frozenset({"PCMU", "PCMA", "telephone-event", "CN"})
#: Codecs a forward may use.
FORWARD_CODECS = frozenset({"PCMU", "PCMA"})
DEFAULT_PAYLOAD_MAP: Mapping[int, str] = {0: "PCMU", 8: "PCMA"}

_TRANSLATE = {("PCMU", "PCMA"): ULAW_TO_ALAW, ("PCMA", "PCMU"): ALAW_TO_ULAW}
_TAG_LENGTH = {
    "AES_CM_128_HMAC_SHA1_80": 10,
    "AES_CM_128_HMAC_SHA1_32": 4,
    "AEAD_AES_128_GCM": 16,
    "AEAD_AES_256_GCM": 16,
}

#: The largest datagram relayed; anything longer is dropped (C{oversize}).
_MAX_DATAGRAM = 2048
#: What a socket read asks for: one octet more than L{_MAX_DATAGRAM}, so a
#: datagram the kernel had to truncate is seen as too long, not relayed cut.
_RECV_SIZE = _MAX_DATAGRAM + 1
#: How often (seconds) the out-of-file-descriptors line is logged at most.
_FD_LOG_INTERVAL = 60.0
_CLOCK_RATE = 8000  # G.711, telephone-event and CN here all use 8 kHz
_FRAME = 160  # one 20 ms frame at 8 kHz
_MAX_DROPOUT = 3000  # RFC 3550 A.1
_MAX_MISORDER = 100
_BIND_ATTEMPTS = 8

# The 11 octets after the first: M/PT, sequence number, timestamp, SSRC.
_RTP_REST = struct.Struct("!xBHII")
_RTP_OUT = struct.Struct("!BBHII")

_READ_IGNORE = frozenset(
    {errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR, errno.ECONNREFUSED, errno.EHOSTUNREACH,
     errno.ENETUNREACH, errno.EMSGSIZE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNRESET}
)  # fmt: skip


def _normalize_address(address: Address | None) -> Address | None:
    # recvfrom reports IP literals in canonical form; compare like with like.
    if address is None:
        return None
    host, port = address
    if not 0 < port < 65536:
        raise ValueError(f"port out of range: {port}")
    return _normalize_host(host), port


def _normalize_host(host: str) -> str:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_ntop(family, socket.inet_pton(family, host))
        except OSError:
            continue
    raise ValueError(f"not an IP address literal: {host!r}")


# -- sockets ------------------------------------------------------------------


class _RelayPort(udp.Port):
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
            from twisted.internet.error import CannotListenError

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
            data, addr = self._recvfrom(_RECV_SIZE)  # > _MAX_DATAGRAM: oversize
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


class _Endpoint(DatagramProtocol):
    """
    Common base of the relay's protocols: the port and its counters.
    """

    noisy = False
    __slots__ = ("port", "read_errors", "internal_errors", "oversize", "_listening", "sendto", "send", "_peer")

    def __init__(self) -> None:
        self.port: int = 0
        self.read_errors = 0
        self.internal_errors = 0
        self.oversize = 0  # datagrams over _MAX_DATAGRAM, dropped
        self._listening: Any = None
        self.sendto: Callable[[bytes, Address], int] = _closed_sendto
        self.send: Callable[[bytes], int] = _closed_send
        self._peer: Address | None = None

    def _bound(self, listening: Any) -> None:
        self._listening = listening
        self.sendto = listening.socket.sendto

    def connect_peer(self, peer: Address) -> None:
        """
        Connect the socket to C{peer} and use C{send}: the kernel keeps the
        route, the hot path skips parsing an address per packet, and only
        C{peer}'s datagrams are delivered here.
        """
        if self._listening is None or peer == self._peer:
            return
        sock = self._listening.socket
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

    def _close(self) -> None:
        listening, self._listening = self._listening, None
        self.sendto = _closed_sendto
        self.send = _closed_send
        if listening is None:
            return
        if isinstance(listening, _RelayPort):
            listening.close_now()
        else:
            listening.stopListening()


def _closed_sendto(data: bytes, address: Address) -> int:
    raise OSError(errno.EBADF, "relay port closed")


def _closed_send(data: bytes) -> int:
    raise OSError(errno.EBADF, "relay port closed")


# -- inbound --------------------------------------------------------------------


class InboundStream(_Endpoint):
    """
    One inbound stream: the protocol on its RTP port, the fan-out and the
    counters.  Created by L{MediaRelay.allocate_session} or
    L{MediaSession.add_streams}; configure it
    through L{MediaSession.set_inbound}.

    @ivar index: the stream's position in the session.
    @ivar rtp_port: the local RTP port (even).
    @ivar rtcp_port: the local RTCP port (C{rtp_port + 1}).
    @ivar remote: the accepted source, C{None} before it is known.
    """

    # What the hot path touches lives in slots, in the object itself: with
    # hundreds of streams taking turns, every separate object is a cache
    # miss per packet.
    __slots__ = (
        "remote", "srtp", "payload_map", "targets", "ssrc", "last_seq", "last_ts",
        "last_rx", "packets_in", "bytes_in", "malformed", "unknown_pt", "foreign",
        "latched", "latch_host", "rtcp", "_seconds",
    )  # fmt: skip

    def __init__(self, session: MediaSession, index: int, rtp_port: int) -> None:
        super().__init__()
        self.session = session
        self.index = index
        self.rtp_port = rtp_port
        self.rtcp_port = rtp_port + 1
        self.port = rtp_port
        self.remote: Address | None = None
        self.latch_host: str | None = None
        self.payload_map: dict[int, str] = dict(DEFAULT_PAYLOAD_MAP)
        self.srtp: SrtpContext | None = None
        self.srtp_params: SrtpParams | None = None
        self.targets: list[OutboundStream] = []
        self.rtcp = _InboundRtcp(self)
        self._seconds = session._seconds
        # Hot-path state.
        self.ssrc: int | None = None
        self.last_seq = 0
        self.last_ts = 0
        self.last_rx = self._seconds()
        # Counters.
        self.packets_in = 0
        self.bytes_in = 0
        self.foreign = 0
        self.malformed = 0
        self.unknown_pt = 0
        self.ssrc_changes = 0
        self.latched = 0
        # Per-stream media timeout: only a stream the SRC sends on can time
        # out; one that did is closed (its ports released) until reopened.
        self.expect_media = True
        self.ended = False

    def configure(
        self,
        remote: Address | None,
        latch_host: str | None,
        payload_map: Mapping[int, str] | None,
        srtp: SrtpParams | None,
        rtcp_remote: Address | None,
    ) -> None:
        """
        Apply an (re-)negotiated inbound description.  See
        L{MediaSession.set_inbound}.
        """
        pmap = dict(DEFAULT_PAYLOAD_MAP if payload_map is None else payload_map)
        for pt, kind in pmap.items():
            if not 0 <= pt <= 127 or kind not in KINDS:
                raise ValueError(f"bad payload map entry {pt}: {kind!r}")
        remote = _normalize_address(remote)
        latch_host = _normalize_host(latch_host) if latch_host is not None else None
        if srtp != self.srtp_params:
            # A new key (or none): a new context.  The same key again (a
            # re-INVITE repeating its a=crypto) keeps the context, and with
            # it the rollover counter and the replay window.
            if self.srtp is not None:
                retired = self.session._retired_srtp.setdefault(self.index, {})
                for cause, count in self.srtp.failures.items():
                    retired[cause] = retired.get(cause, 0) + count
            self.srtp = SrtpContext(srtp, outbound=False) if srtp is not None else None
            self.srtp_params = srtp
        # Latching: ignore the SDP's address and take the first source from
        # the signalling peer's IP.
        self.latch_host = latch_host
        self.latched = 0
        self.remote = None if latch_host is not None else remote
        self.payload_map = pmap
        self.rtcp.configure(remote, rtcp_remote, latch_host)
        for target in self.targets:
            target.rebuild_map()

    def _accept(self, addr: Address) -> bool:
        # Not the expected source: latch it, or drop it.
        latch = self.latch_host
        if latch is not None and addr[0] == latch and self.latched == 0:
            self.remote = addr
            self.latched = 1
            return True
        self.foreign += 1
        return False

    def datagramReceived(self, data: bytes, addr: Address) -> None:  # noqa: C901
        """
        The hot path: check the source, unprotect, parse, fan out.
        """
        if addr != self.remote and not self._accept(addr):
            return
        n = len(data)
        if not 12 <= n <= _MAX_DATAGRAM:
            if n < 12:
                self.malformed += 1
            else:  # read with one octet to spare: it was cut, drop it whole
                self.oversize += 1
            return
        b0 = data[0]
        if b0 & 0xC0 != 0x80:
            self.malformed += 1
            return
        if 192 <= data[1] <= 223:  # RTCP multiplexed on the RTP port (RFC 5761)
            self.rtcp.handle(data)
            return
        srtp = self.srtp
        if srtp is not None:  # the header stays in clear: b0 is still valid
            data = srtp.unprotect(data)
            if data is None:
                return
        if b0 & 0x3F:  # CSRCs, extension or padding
            try:
                start, end = rtp_payload_bounds(data)
            except ValueError:
                self.malformed += 1
                return
        else:
            start = 12
            end = len(data)
        b1, seq, ts, ssrc = _RTP_REST.unpack_from(data)
        pt = b1 & 0x7F
        if pt not in self.payload_map:
            self.unknown_pt += 1
            return
        now = self._seconds()
        self.packets_in += 1
        self.bytes_in += n  # on the wire, SRTP tag included
        if ssrc != self.ssrc or _MAX_DROPOUT < ((seq - self.last_seq) & 0xFFFF) < (
            0x10000 - _MAX_MISORDER
        ):
            self._rebase(ssrc, seq, ts, now)
        self.last_seq = seq
        self.last_ts = ts
        self.last_rx = now
        targets = self.targets
        if not targets:
            return
        payload = data[start:end]
        marker = b1 & 0x80
        pack = _RTP_OUT.pack
        for t in targets:
            if pt == t.main_pt:  # the audio codec: no dict, no tuple
                out_pt = t.main_out
                table = t.main_table
            else:
                m = t.pt_map.get(pt)
                if m is None:
                    t.unsupported += 1
                    continue
                out_pt, table = m
            if t.src_ssrc != ssrc:
                t.start(ssrc, seq, ts)
            if t.marker:
                out_pt |= 0x80
                t.marker = 0
            pkt = pack(
                0x80,
                out_pt | marker,
                (seq + t.seq_off) & 0xFFFF,
                (ts + t.ts_off) & 0xFFFFFFFF,
                t.ssrc,
            ) + (payload.translate(table) if table is not None else payload)
            protect = t.protect
            if protect is not None:
                pkt = protect(pkt)
                if pkt is None:
                    continue
            try:
                t.send(pkt)
            except OSError:
                t.send_errors += 1
                continue
            t.packets += 1
            t.octets += end - start

    def _rebase(self, ssrc: int, seq: int, ts: int, now: float) -> None:
        # A new SSRC or a sequence jump: keep every started outbound stream
        # continuous (next sequence number, timestamp advanced by the gap).
        if self.ssrc is not None:
            if ssrc != self.ssrc:
                self.ssrc_changes += 1
            frames = max(1, int((now - self.last_rx) * (_CLOCK_RATE / _FRAME) + 0.5))
            for t in self.targets:
                if t.src_ssrc is None:
                    continue
                out_seq = (self.last_seq + t.seq_off + 1) & 0xFFFF
                out_ts = (self.last_ts + t.ts_off + frames * _FRAME) & 0xFFFFFFFF
                t.seq_off = (out_seq - seq) & 0xFFFF
                t.ts_off = (out_ts - ts) & 0xFFFFFFFF
                t.src_ssrc = ssrc
                t.marker = 0x80
        self.ssrc = ssrc

    def _close(self) -> None:
        super()._close()
        self.rtcp._close()

    def drops(self) -> dict[str, int]:
        """
        Drop counts by cause.
        """
        out = {
            "foreign_source": self.foreign + self.rtcp.foreign,
            "malformed": self.malformed + self.rtcp.malformed,
            "oversize": self.oversize + self.rtcp.oversize,
            "unknown_payload_type": self.unknown_pt,
            "srtp_auth": 0,
            "srtp_replay": 0,
            "srtp_error": 0,
        }
        for source in (
            self.srtp.failures if self.srtp is not None else {},
            self.session._retired_srtp.get(self.index, {}),
        ):
            for cause, count in source.items():
                out[cause] += count
        return out

    def stats(self) -> dict[str, Any]:
        """
        Counters and state as a plain dict.
        """
        return {
            "index": self.index,
            "rtp_port": self.rtp_port,
            "rtcp_port": self.rtcp_port,
            "remote": _format_address(self.remote),
            "srtp": self.srtp.suite if self.srtp is not None else None,
            "ssrc": self.ssrc,
            "ssrc_changes": self.ssrc_changes,
            "timed_out": self.ended,
            "packets_in": self.packets_in,
            "bytes_in": self.bytes_in,
            "rtcp_in": self.rtcp.packets_in,
            "drops": self.drops(),
            "sender_report": dict(self.rtcp.last_sr) if self.rtcp.last_sr else None,
        }


class _InboundRtcp(_Endpoint):
    """
    The inbound stream's RTCP port: source check, unprotect, parse, keep
    the SRC's last sender report.  Nothing is forwarded.
    """

    def __init__(self, stream: InboundStream) -> None:
        super().__init__()
        self.stream = stream
        self.port = stream.rtcp_port
        self.remote: Address | None = None
        self.latch_host: str | None = None
        self.latched = 0
        self.packets_in = 0
        self.foreign = 0
        self.malformed = 0
        self.last_sr: dict[str, int] | None = None

    def configure(
        self, rtp_remote: Address | None, rtcp_remote: Address | None, latch_host: str | None
    ) -> None:
        rtcp_remote = _normalize_address(rtcp_remote)
        if rtcp_remote is None and rtp_remote is not None:
            rtcp_remote = (rtp_remote[0], rtp_remote[1] + 1)
        self.latch_host = latch_host
        self.latched = 0
        self.remote = None if latch_host is not None else rtcp_remote

    def datagramReceived(self, data: bytes, addr: Address) -> None:
        if addr != self.remote:
            if self.latch_host is not None and addr[0] == self.latch_host and not self.latched:
                self.remote = addr
                self.latched = 1
            else:
                self.foreign += 1
                return
        if len(data) > _MAX_DATAGRAM:
            self.oversize += 1
            return
        self.handle(data)

    def handle(self, data: bytes) -> None:
        """
        Process one (S)RTCP packet from the SRC.
        """
        srtp = self.stream.srtp
        if srtp is not None:
            data = srtp.unprotect_rtcp(data)
            if data is None:
                return
        try:
            packets = parse_rtcp(data)
        except ValueError:
            self.malformed += 1
            return
        self.packets_in += 1
        for p in packets:
            if isinstance(p, RtcpSenderReport):
                self.last_sr = {
                    "ssrc": p.ssrc,
                    "ntp_msw": p.ntp_msw,
                    "ntp_lsw": p.ntp_lsw,
                    "rtp_timestamp": p.rtp_timestamp,
                    "packet_count": p.packet_count,
                    "octet_count": p.octet_count,
                }


# -- outbound -------------------------------------------------------------------


class OutboundStream(_Endpoint):
    """
    One stream of a forward: its local RTP port (the protocol here receives
    and counts whatever the SRS sends there), the rewrite state and the
    counters.  The relay's hot path writes through C{send}, on this
    port's socket connected to the SRS.

    @ivar ssrc: the fresh random SSRC of this outbound stream.
    """

    __slots__ = (
        "pt_map", "main_pt", "main_out", "main_table", "src_ssrc", "seq_off", "ts_off",
        "marker", "ssrc", "protect", "packets", "octets", "unsupported", "send_errors",
    )  # fmt: skip

    def __init__(self, forward: ForwardMedia, index: int, rtp_port: int) -> None:
        super().__init__()
        self.forward = forward
        self.index = index
        self.rtp_port = rtp_port
        self.rtcp_port = rtp_port + 1
        self.port = rtp_port
        self.rtcp = _OutboundRtcp(self)
        self.source: InboundStream | None = None
        self.remote: Address | None = None
        self.rtcp_remote: Address | None = None
        self.codec = "PCMA"
        self.payload_type = 8
        self.dtmf_payload_type: int | None = None
        self.srtp_tx: SrtpContext | None = None
        self.srtp_rx: SrtpContext | None = None
        self.srtp_tx_params: SrtpParams | None = None
        self.srtp_rx_params: SrtpParams | None = None
        self.retired: dict[str, int] = {}
        self.protect: Callable[[bytes], bytes | None] | None = None
        self.pt_map: dict[int, tuple[int, bytes | None]] = {}
        # The first audio payload type of the source, copied out of pt_map.
        self.main_pt = -1
        self.main_out = 0
        self.main_table: bytes | None = None
        # Rewrite state (RFC 3550 s5.1: random initial values; below 2**15
        # for the sequence number so an SRTP receiver's first ROC guess is
        # safe, RFC 3711 s3.3.1).
        self.ssrc = secrets.randbits(32)
        self.first_seq = secrets.randbelow(0x8000)
        self.first_ts = secrets.randbits(32)
        self.src_ssrc: int | None = None
        self.seq_off = 0
        self.ts_off = 0
        self.marker = 0
        # Counters.
        self.packets = 0
        self.octets = 0
        self.unsupported = 0
        self.send_errors = 0
        self.received = 0
        # RTCP sender-report state.
        self.report_call: IDelayedCall | None = None
        self.reported_packets = 0
        self.reports_sent = 0
        self.last_sr_mid = 0
        self.last_sr_time = 0.0
        self.receiver_report: dict[str, Any] | None = None

    def datagramReceived(self, data: bytes, addr: Address) -> None:
        # The SRS is a recorder (recvonly): RTP from it is counted, not
        # relayed; RTCP multiplexed here is handled.
        if len(data) > _MAX_DATAGRAM:
            self.oversize += 1
            return
        if len(data) >= 2 and 192 <= data[1] <= 223 and self.remote is not None:
            if addr[0] == self.remote[0]:
                self.rtcp.handle(data)
                return
        self.received += 1

    def start(self, ssrc: int, seq: int, ts: int) -> None:
        """
        The first packet for this outbound stream: map it to the random
        initial sequence number and timestamp.
        """
        self.seq_off = (self.first_seq - seq) & 0xFFFF
        self.ts_off = (self.first_ts - ts) & 0xFFFFFFFF
        self.src_ssrc = ssrc
        self.marker = 0x80

    def rebuild_map(self) -> None:
        """
        Recompute inbound payload type -> (outbound payload type, translate
        table) from the source's payload map and this stream's codec.
        """
        pt_map: dict[int, tuple[int, bytes | None]] = {}
        if self.source is not None:
            for pt, kind in self.source.payload_map.items():
                if kind in FORWARD_CODECS:
                    table = None if kind == self.codec else _TRANSLATE[kind, self.codec]
                    pt_map[pt] = (self.payload_type, table)
                elif kind == "telephone-event":
                    if self.dtmf_payload_type is not None:
                        pt_map[pt] = (self.dtmf_payload_type, None)
                elif kind == "CN":
                    pt_map[pt] = (13, None)
        self.pt_map = pt_map
        self.main_pt = -1
        for pt, (out_pt, table) in pt_map.items():
            if out_pt == self.payload_type:
                self.main_pt, self.main_out, self.main_table = pt, out_pt, table
                break

    def _close(self) -> None:
        super()._close()
        self.rtcp._close()
        call, self.report_call = self.report_call, None
        if call is not None and call.active():
            call.cancel()

    def retire_failures(self, context: SrtpContext, prefix: str = "") -> None:
        """
        Keep a replaced SRTP context's failure counts.
        """
        for cause, count in context.failures.items():
            key = "srtp_protect" if not prefix else prefix + cause
            self.retired[key] = self.retired.get(key, 0) + count

    def drops(self) -> dict[str, int]:
        """
        Drop counts by cause.
        """
        out = {
            "unsupported_payload": self.unsupported,
            "send_error": self.send_errors,
            "srtp_protect": sum(self.srtp_tx.failures.values()) if self.srtp_tx else 0,
            "rtcp_foreign_source": self.rtcp.foreign,
            "rtcp_malformed": self.rtcp.malformed,
            "oversize": self.oversize + self.rtcp.oversize,
        }
        if self.srtp_rx is not None:
            for cause, count in self.srtp_rx.failures.items():
                out["rtcp_" + cause] = count
        for cause, count in self.retired.items():
            out[cause] = out.get(cause, 0) + count
        return out

    def bytes_out(self) -> int:
        """
        Octets sent on the wire for RTP (headers and SRTP tags included).
        """
        tag = _TAG_LENGTH.get(self.srtp_tx.suite, 0) if self.srtp_tx is not None else 0
        return self.octets + self.packets * (12 + tag)

    def stats(self) -> dict[str, Any]:
        """
        Counters and state as a plain dict.
        """
        return {
            "index": self.index,
            "source": self.source.index if self.source is not None else None,
            "rtp_port": self.rtp_port,
            "rtcp_port": self.rtcp_port,
            "remote": _format_address(self.remote),
            "codec": self.codec,
            "payload_type": self.payload_type,
            "srtp": self.srtp_tx.suite if self.srtp_tx is not None else None,
            "ssrc": self.ssrc,
            "packets_out": self.packets,
            "bytes_out": self.bytes_out(),
            "octets_out": self.octets,
            "rtcp_sent": self.reports_sent,
            "rtcp_in": self.rtcp.packets_in,
            "packets_from_srs": self.received,
            "drops": self.drops(),
            "receiver_report": dict(self.receiver_report) if self.receiver_report else None,
        }

    def send_report(self, now: float) -> None:
        """
        Send an SR + SDES CNAME compound (RFC 3550 s6.4.1) if RTP went out
        since the last one.
        """
        source = self.source
        if (
            source is None
            or self.remote is None
            or self.src_ssrc is None
            or self.packets == self.reported_packets
        ):
            return
        msw, lsw = ntp_timestamp(now)
        rtp_ts = (
            source.last_ts + self.ts_off + int((now - source.last_rx) * _CLOCK_RATE)
        ) & 0xFFFFFFFF
        sr = RtcpSenderReport(self.ssrc, msw, lsw, rtp_ts, self.packets, self.octets)
        data = sr.serialize() + build_sdes_cname(self.ssrc, self.forward.cname).serialize()
        if self.srtp_tx is not None:
            data = self.srtp_tx.protect_rtcp(data)
            if data is None:
                return
        try:
            if self.rtcp_remote is None:  # rtcp-mux
                self.send(data)
            else:
                self.rtcp.send(data)
        except OSError:
            self.send_errors += 1
            return
        self.reported_packets = self.packets
        self.reports_sent += 1
        self.last_sr_mid = ntp_middle32(msw, lsw)
        self.last_sr_time = now

    def receiver_report_received(self, block: ReportBlock, now: float) -> None:
        """
        Keep the SRS's view of this stream (RFC 3550 s6.4.1); the round trip
        from LSR/DLSR when it refers to our last SR.
        """
        rtt = None
        if block.lsr and block.lsr == self.last_sr_mid:
            rtt = round(max(0.0, now - self.last_sr_time - block.dlsr / 65536.0), 6)
        self.receiver_report = {
            "fraction_lost": block.fraction_lost / 256.0,
            "cumulative_lost": block.cumulative_lost,
            "highest_sequence": block.highest_sequence,
            "jitter": block.jitter,
            "jitter_ms": block.jitter * 1000.0 / _CLOCK_RATE,
            "rtt": rtt,
        }


class _OutboundRtcp(_Endpoint):
    """
    A forward stream's RTCP port: sends our SRs, parses the SRS's RRs.
    """

    def __init__(self, stream: OutboundStream) -> None:
        super().__init__()
        self.stream = stream
        self.port = stream.rtcp_port
        self.packets_in = 0
        self.foreign = 0
        self.malformed = 0

    def datagramReceived(self, data: bytes, addr: Address) -> None:
        remote = self.stream.remote
        if remote is None or addr[0] != remote[0]:
            self.foreign += 1
            return
        if len(data) > _MAX_DATAGRAM:
            self.oversize += 1
            return
        self.handle(data)

    def handle(self, data: bytes) -> None:
        """
        Process one (S)RTCP packet from the SRS.
        """
        stream = self.stream
        if stream.srtp_tx is not None:
            if stream.srtp_rx is None:
                self.malformed += 1  # SRTCP without the SRS's key
                return
            data = stream.srtp_rx.unprotect_rtcp(data)
            if data is None:
                return
        try:
            packets = parse_rtcp(data)
        except ValueError:
            self.malformed += 1
            return
        self.packets_in += 1
        now = stream.forward.session._seconds()
        for p in packets:
            if isinstance(p, (RtcpReceiverReport, RtcpSenderReport)):
                for block in p.reports:
                    if block.ssrc == stream.ssrc:
                        stream.receiver_report_received(block, now)


# -- forwards and sessions -----------------------------------------------------------


class ForwardMedia:
    """
    The media of one forward (one downstream SRS): one outbound stream per
    stream offered to it.  Created by L{MediaSession.add_forward}.

    @ivar forward_id: the caller's identifier for the forward.
    @ivar streams: the outbound streams, in SDP order.
    @ivar cname: the RTCP CNAME used on this forward's streams (random, RFC
        7022).
    """

    def __init__(self, session: MediaSession, forward_id: str, ports: list[int]) -> None:
        self.session = session
        self.forward_id = forward_id
        self.cname = secrets.token_urlsafe(12).encode("ascii")
        self.streams: tuple[OutboundStream, ...] = tuple(
            OutboundStream(self, i, port) for i, port in enumerate(ports)
        )
        self._fresh_ssrcs(self.streams)

    def _fresh_ssrcs(self, streams: Iterable[OutboundStream]) -> None:
        used = {
            t.ssrc
            for f in self.session.forwards.values()
            if f is not self
            for t in f.streams
        }
        used.update(t.ssrc for t in self.streams if t not in streams)
        for stream in streams:
            while stream.ssrc in used:  # a 2**-32 collision: draw again
                stream.ssrc = secrets.randbits(32)
            used.add(stream.ssrc)

    @property
    def local_ports(self) -> list[int]:
        """
        The local RTP ports for the SDP offer, in stream order (RTCP is each
        + 1).
        """
        return [s.rtp_port for s in self.streams]

    def connect(
        self,
        index: int,
        remote: Address,
        codec: str = "PCMA",
        payload_type: int = 8,
        dtmf_payload_type: int | None = 101,
        srtp_tx: SrtpParams | None = None,
        srtp_rx: SrtpParams | None = None,
        rtcp_remote: Address | None = None,
        rtcp_mux: bool = False,
        source: int | None = None,
    ) -> None:
        """
        Start (or update, on the SRS's re-INVITE) sending one stream to the
        SRS.  The outbound stream keeps its SSRC and stays continuous.

        @param index: the forward's stream.
        @param remote: the SRS's RTP address from its answer (an IP literal).
        @param codec: C{"PCMU"} or C{"PCMA"}: what the SRS gets.
        @param payload_type: the payload type for that codec in the answer.
        @param dtmf_payload_type: the SRS's C{telephone-event} payload type,
            C{None} when it accepted none (DTMF is then dropped).
        @param srtp_tx: our key (from our offer) to protect towards the SRS.
        @param srtp_rx: the SRS's key (from its answer), to read its SRTCP.
        @param rtcp_remote: the SRS's RTCP address, default RTP port + 1.
        @param rtcp_mux: send RTCP to the RTP address (RFC 5761).
        @param source: the inbound stream to relay, default C{index}.
        @raise ValueError: on a bad argument.
        """
        if self.session.closed or self.session.forwards.get(self.forward_id) is not self:
            raise ValueError("forward is closed")
        if codec not in FORWARD_CODECS:
            raise ValueError(f"unsupported forward codec {codec!r}")
        for pt in (payload_type, dtmf_payload_type):
            if pt is not None and not 0 <= pt <= 127:
                raise ValueError(f"payload type out of range: {pt}")
        stream = self.streams[index]
        source_stream = self.session.streams[index if source is None else source]
        remote_n = _normalize_address(remote)
        if remote_n is None:
            raise ValueError("a forward needs a remote address")
        rtcp_n = _normalize_address(rtcp_remote)
        if rtcp_n is None and not rtcp_mux:
            rtcp_n = (remote_n[0], remote_n[1] + 1)
        if srtp_tx != stream.srtp_tx_params:
            tx = SrtpContext(srtp_tx, outbound=True, ssrc=stream.ssrc) if srtp_tx is not None else None
            if stream.srtp_tx is not None:
                stream.retire_failures(stream.srtp_tx)
            stream.srtp_tx = tx
            stream.srtp_tx_params = srtp_tx
            stream.protect = tx.protect if tx is not None else None
        if srtp_rx != stream.srtp_rx_params:
            if stream.srtp_rx is not None:
                stream.retire_failures(stream.srtp_rx, "rtcp_")
            stream.srtp_rx = SrtpContext(srtp_rx, outbound=False) if srtp_rx is not None else None
            stream.srtp_rx_params = srtp_rx

        old_source = stream.source
        if old_source is not None and old_source is not source_stream:
            old_source.targets.remove(stream)
            if stream.src_ssrc is not None:
                # Continue the outbound numbering on the new source.
                stream.first_seq = (old_source.last_seq + stream.seq_off + 1) & 0xFFFF
                stream.first_ts = (old_source.last_ts + stream.ts_off + _FRAME) & 0xFFFFFFFF
                stream.src_ssrc = None
        stream.codec = codec
        stream.payload_type = payload_type
        stream.dtmf_payload_type = dtmf_payload_type
        stream.remote = remote_n
        stream.rtcp_remote = rtcp_n
        stream.connect_peer(remote_n)
        if rtcp_n is not None:
            stream.rtcp.connect_peer(rtcp_n)
        stream.source = source_stream
        stream.rebuild_map()
        if stream.report_call is None:
            self.session.relay._schedule_report(stream)
        if stream not in source_stream.targets:
            source_stream.targets.append(stream)

    def add_streams(self, n: int) -> list[OutboundStream]:
        """
        Book and bind C{n} more outbound streams, for m-lines added to the
        offer to the SRS (an inbound re-INVITE added a recorded stream, RFC
        7866 s7.1.1.1).  Their ports follow the last stream's where the
        range allows; they are appended to L{streams} (and so to
        L{local_ports}), each with a fresh SSRC, and released with the
        others by L{MediaSession.remove_forward} or L{MediaSession.close}.
        Start them with L{connect} once the SRS answered.

        @return: the new streams.
        @raise PortsExhausted: when the pool is short; nothing is kept.
        @raise ValueError: for a bad count or a closed forward.
        """
        if self.session.closed or self.session.forwards.get(self.forward_id) is not self:
            raise ValueError("forward is closed")
        if n < 1:
            raise ValueError("add at least one stream")
        base = len(self.streams)

        def build(ports: list[int]) -> list[OutboundStream]:
            return [OutboundStream(self, base + i, port) for i, port in enumerate(ports)]

        added: list[OutboundStream] = self.session.relay._bind_pairs(
            n, build, after=self.streams[-1].rtp_port
        )
        self.streams = self.streams + tuple(added)
        self._fresh_ssrcs(added)
        return added

    def stats(self) -> dict[str, Any]:
        """
        Per-stream counters and the forward's totals, as plain dicts.
        """
        streams = [s.stats() for s in self.streams]
        drops: dict[str, int] = {}
        for s in streams:
            for cause, count in s["drops"].items():
                drops[cause] = drops.get(cause, 0) + count
        return {
            "forward_id": self.forward_id,
            "packets_out": sum(s["packets_out"] for s in streams),
            "bytes_out": sum(s["bytes_out"] for s in streams),
            "drops": drops,
            "streams": streams,
        }

    def _detach(self) -> None:
        for stream in self.streams:
            if stream.source is not None and stream in stream.source.targets:
                stream.source.targets.remove(stream)
            stream._close()


class MediaSession:
    """
    The media of one recording session: the inbound streams from the SRC
    and the forwards to the SRSs.  Created by L{MediaRelay.allocate_session}.

    @ivar streams: the inbound streams (a tuple, replaced when
        L{add_streams} appends), by index; the SIP layer maps m-lines to
        them.
    @ivar forwards: forward id -> L{ForwardMedia}.
    @ivar timed_out: whether the media timeout was reported.
    """

    def __init__(
        self,
        relay: MediaRelay,
        ports: list[int],
        on_timeout: Callable[[MediaSession], object] | None,
    ) -> None:
        self.relay = relay
        self._seconds = relay._reactor.seconds
        self._retired_srtp: dict[int, dict[str, int]] = {}
        self.forwards: dict[str, ForwardMedia] = {}
        self.on_timeout = on_timeout
        #: Called with (session, stream) when one stream timed out alone.
        self.on_stream_timeout: Callable[[MediaSession, InboundStream], object] | None = None
        self.media_timeout = relay.media_timeout
        self.timed_out = False
        self.closed = False
        self._final: dict[str, Any] | None = None
        self._removed: dict[str, dict[str, Any]] = {}
        self.streams: tuple[InboundStream, ...] = tuple(
            InboundStream(self, i, port) for i, port in enumerate(ports)
        )

    def set_inbound(
        self,
        index: int,
        remote: Address | None = None,
        latch_host: str | None = None,
        payload_map: Mapping[int, str] | None = None,
        srtp: SrtpParams | None = None,
        rtcp_remote: Address | None = None,
    ) -> None:
        """
        Describe what the SRC sends on one stream (from its offer; again on
        each re-INVITE).

        @param remote: the SRC's RTP address from its SDP (an IP literal);
            only packets from it are accepted.  C{None} with no
            C{latch_host}: nothing is accepted (e.g. a held stream).
        @param latch_host: the signalling peer's IP: accept the first source
            from this IP (any port), then only that one; for NATed SRCs.
        @param payload_map: payload type -> C{"PCMU"}, C{"PCMA"},
            C{"telephone-event"} or C{"CN"}; default C{{0: "PCMU", 8:
            "PCMA"}}.  Other payload types are dropped and counted.
        @param srtp: the SRC's key (its offer's C{a=crypto}) when it sends
            SRTP.
        @param rtcp_remote: the SRC's RTCP address (C{a=rtcp}), default RTP
            port + 1.
        @raise ValueError: on a bad argument, or on a closed session.
        """
        if self.closed:
            raise ValueError("session is closed")
        self.streams[index].configure(remote, latch_host, payload_map, srtp, rtcp_remote)

    def add_streams(self, n: int) -> list[InboundStream]:
        """
        Book and bind C{n} more inbound streams, for m-lines a re-INVITE
        added (RFC 7866 s7.1.1.1).  Their ports follow the last stream's
        (P+2, P+4, ...) where the range allows, else any free pairs; they
        are appended to L{streams} (indices C{len(streams)} onwards, so the
        existing indices, and the forwards' sources, are unchanged) and
        released by L{close} like the others.  Configure them with
        L{set_inbound}.

        An added stream counts its media silence from now, as the streams of
        a new session do.

        @return: the new streams.
        @raise PortsExhausted: when the pool is short; nothing is kept.
        @raise ValueError: for a bad count or a closed session.
        """
        if self.closed:
            raise ValueError("session is closed")
        if n < 1:
            raise ValueError("add at least one stream")
        base = len(self.streams)

        def build(ports: list[int]) -> list[InboundStream]:
            return [InboundStream(self, base + i, port) for i, port in enumerate(ports)]

        added: list[InboundStream] = self.relay._bind_pairs(n, build, after=self.streams[-1].rtp_port)
        self.streams = self.streams + tuple(added)
        return added

    def set_media_timeout(self, seconds: float) -> None:
        """
        Change this session's media timeout (0 = off), e.g. while the SRC
        holds the call; the silence so far still counts.
        """
        self.media_timeout = seconds

    def resume_media_timeout(self, seconds: float) -> None:
        """
        Turn the media timeout back on after a hold (L{set_media_timeout}
        0), with the silence counted from now: the hold does not count.
        """
        now = self._seconds()
        for stream in self.streams:
            # Silence is measured from the last packet received.
            stream.last_rx = max(stream.last_rx, now)
        self.media_timeout = seconds

    def set_expect_media(self, index: int, expected: bool) -> None:
        """
        Say whether the SRC sends on one stream (its m-line is C{sendonly}
        or C{sendrecv} with an address): only such a stream is closed alone
        when it is silent for the media timeout.  A stream becoming
        expected again counts its silence from now.  Default: expected.
        """
        stream = self.streams[index]
        if expected and not stream.expect_media:
            stream.last_rx = max(stream.last_rx, self._seconds())
        stream.expect_media = expected

    def reopen_stream(self, index: int) -> InboundStream:
        """
        Bind fresh ports for a stream that timed out (its old ones were
        released), e.g. when a re-INVITE offers it again; the stream keeps
        its index, configuration, counters and forwards, and counts its
        silence from now.  Nothing happens to a stream that did not time out.

        @return: the stream (new C{rtp_port}/C{rtcp_port} for the answer).
        @raise PortsExhausted: when the pool is short (the stream stays
            closed).
        @raise ValueError: on a closed session.
        """
        if self.closed:
            raise ValueError("session is closed")
        stream = self.streams[index]
        if not stream.ended:
            return stream

        def build(ports: list[int]) -> list[InboundStream]:
            stream.rtp_port = stream.port = ports[0]
            stream.rtcp_port = stream.rtcp.port = ports[0] + 1
            return [stream]

        old_port = stream.rtp_port
        try:
            self.relay._bind_pairs(1, build, after=self.streams[-1].rtp_port)
        except PortsExhausted:
            build([old_port])  # the stats keep showing the last ports it had
            raise
        stream.ended = False
        stream.latched = stream.rtcp.latched = 0  # the new port may latch again
        stream.last_rx = self._seconds()
        return stream

    def add_forward(self, forward_id: str, n_streams: int) -> ForwardMedia:
        """
        Book and bind local ports for a new forward (for its SDP offer).

        @raise PortsExhausted: when the pool is short; nothing is kept.
        @raise ValueError: for a duplicate id, a bad count or a closed
            session.
        """
        if self.closed:
            raise ValueError("session is closed")
        if forward_id in self.forwards:
            raise ValueError(f"forward {forward_id!r} exists")
        if not 1 <= n_streams:
            raise ValueError("a forward needs at least one stream")
        streams = self.relay._bind_pairs(
            n_streams, lambda p: ForwardMedia(self, forward_id, p).streams
        )
        forward = streams[0].forward
        self.forwards[forward_id] = forward
        return forward

    def remove_forward(self, forward_id: str) -> dict[str, Any]:
        """
        Stop a forward and release its ports.

        @return: the forward's final stats (for C{SIPRECFORWARDSTOPPED}).
        @raise KeyError: for an unknown id.
        """
        forward = self.forwards.pop(forward_id)
        stats = forward.stats()
        forward._detach()
        self.relay._release([s.rtp_port for s in forward.streams])
        self.relay._fold(stats)
        self._removed[forward_id] = stats
        return stats

    def stats(self) -> dict[str, Any]:
        """
        All counters as plain dicts: C{streams} (inbound) and C{forwards}
        (by id, including removed forwards' final stats).  Valid after
        L{close}.
        """
        if self._final is not None:
            return self._final
        forwards = dict(self._removed)
        for fid, forward in self.forwards.items():
            forwards[fid] = forward.stats()
        return {
            "closed": self.closed,
            "timed_out": self.timed_out,
            "streams": [s.stats() for s in self.streams],
            "forwards": forwards,
        }

    def close(self) -> None:
        """
        Stop everything and release every port.  Idempotent.
        """
        if self.closed:
            return
        for forward_id in list(self.forwards):
            self.remove_forward(forward_id)
        final = self.stats()
        self.closed = True
        final["closed"] = True
        self._final = final
        for stream in self.streams:
            stream.targets = []
            stream._close()
        self.relay._session_closed(self, final)

    def _check_timeout(self, now: float) -> None:
        # Every stream silent: the session timed out (the Call ends it).
        # Else each expected stream silent that long is closed on its own.
        timeout = self.media_timeout
        if not timeout or self.timed_out or self.closed:
            return
        last = max(s.last_rx for s in self.streams)
        if now - last >= timeout:
            self.timed_out = True
            if self.on_timeout is not None:
                try:
                    self.on_timeout(self)
                except Exception:
                    self.relay.log.failure("media timeout callback failed")
            return
        for stream in self.streams:
            if stream.expect_media and not stream.ended and now - stream.last_rx >= timeout:
                self._end_stream(stream)

    def _end_stream(self, stream: InboundStream) -> None:
        # A stream timed out alone: close its sockets, free its ports.
        stream.ended = True
        stream._close()
        self.relay._release([stream.rtp_port])
        self.relay._totals["streams_timed_out"] += 1
        if self.on_stream_timeout is not None:
            try:
                self.on_stream_timeout(self, stream)
            except Exception:
                self.relay.log.failure("stream timeout callback failed")


class MediaRelay:
    """
    The media plane: the port pool, the sessions, one timer for RTCP and
    media timeouts.

    @ivar host: the local IP the relay binds (and advertises in SDP).
    @ivar media_timeout: the default media timeout in seconds (0 = off).
    @ivar rtcp_interval: the mean interval between sender reports.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        host: str,
        port_min: int,
        port_max: int,
        media_timeout: float = 60.0,
        rtcp_interval: float = 5.0,
    ) -> None:
        """
        @param reactor: provides C{IReactorTime} and, for the fast path,
            C{IReactorFDSet} (else C{IReactorUDP}).
        @param host: the IP literal to bind.
        @param port_min: the lowest RTP port.
        @param port_max: the highest port (RTCP included).
        """
        if not IReactorTime.providedBy(reactor):
            raise TypeError("the relay's reactor must provide IReactorTime")
        if media_timeout < 0 or rtcp_interval <= 0:
            raise ValueError("media_timeout must be >= 0 and rtcp_interval > 0")
        self._reactor = reactor
        self._fdset = IReactorFDSet.providedBy(reactor)
        self.host = host
        self.pool = PortPool(port_min, port_max)
        self.media_timeout = media_timeout
        self.rtcp_interval = rtcp_interval
        self.sessions: set[MediaSession] = set()
        self._tick_call: IDelayedCall | None = None
        self._fd_logged: float | None = None
        self._totals: dict[str, Any] = {
            "sessions_total": 0,
            "sessions_timed_out": 0,
            "streams_timed_out": 0,
            "streams_rejected_limit": 0,
            "fd_exhausted": 0,
            "packets_in": 0,
            "bytes_in": 0,
            "packets_out": 0,
            "bytes_out": 0,
            "drops": {},
        }

    # -- the API ---------------------------------------------------------------

    def allocate_session(
        self,
        n_streams: int,
        on_timeout: Callable[[MediaSession], object] | None = None,
    ) -> MediaSession:
        """
        Book and bind C{n_streams} RTP/RTCP port pairs for an inbound
        session (consecutive where the range allows).

        @param on_timeout: called with the session, once, on a media timeout.
        @raise PortsExhausted: when the pool is short (answer 503); nothing
            is kept.
        """
        if n_streams < 1:
            raise ValueError("a session needs at least one stream")
        holder: list[MediaSession] = []

        def build(ports: list[int]) -> tuple[InboundStream, ...]:
            holder[:] = [MediaSession(self, ports, on_timeout)]
            return holder[0].streams

        self._bind_pairs(n_streams, build)
        session = holder[0]
        self.sessions.add(session)
        self._totals["sessions_total"] += 1
        self._arm()
        return session

    def stats(self) -> dict[str, Any]:
        """
        Relay-wide totals for C{/metrics}: live sessions, ports, and the
        counters of every session so far (closed ones included).
        """
        totals = dict(self._totals)
        drops = dict(totals["drops"])
        for session in self.sessions:
            self._accumulate(totals, drops, session)
        totals["drops"] = drops
        totals["sessions_active"] = len(self.sessions)
        totals["port_pairs_free"] = self.pool.available
        totals["port_pairs_total"] = self.pool.capacity
        return totals

    def count_rejected_streams(self, n: int) -> None:
        """
        Count offered streams the SIP layer answered with port 0 because of
        its per-session stream limit (C{streams_rejected_limit}, for
        C{/metrics}); they got no ports.
        """
        self._totals["streams_rejected_limit"] += n

    def close(self) -> None:
        """
        Shutdown: close every session (their ports are released).
        """
        for session in list(self.sessions):
            session.close()
        self._disarm()

    # -- ports -----------------------------------------------------------------

    def _bind_pairs(
        self, n: int, build: Callable[[list[int]], Iterable[Any]], after: int | None = None
    ) -> list[Any]:
        # Book n pairs, build the protocols, bind RTP and RTCP for each.  A
        # port some other process holds is kept aside and another tried;
        # whatever happens, every booked port not in use is released.
        held: list[int] = []
        last_error: OSError | None = None
        try:
            for _attempt in range(_BIND_ATTEMPTS):
                ports = self.pool.allocate(n, after=after)
                endpoints = list(build(ports))
                bound: list[_Endpoint] = []
                try:
                    for endpoint in endpoints:
                        self._listen(endpoint, endpoint.rtp_port)
                        bound.append(endpoint)
                        self._listen(endpoint.rtcp, endpoint.rtcp_port)
                        bound.append(endpoint.rtcp)
                except FileDescriptorsExhausted:
                    # Another port would fail the same way: give up now.
                    for b in bound:
                        b._close()
                    self.pool.release(ports)
                    self._fd_exhausted()
                    raise
                except OSError as e:
                    last_error = e
                    for b in bound:
                        b._close()
                    failed = getattr(e, "port", None) or endpoints[len(bound) // 2].rtp_port
                    failed -= failed & 1
                    held.append(failed)
                    self.pool.release([p for p in ports if p != failed])
                    continue
                return endpoints
            raise PortsExhausted(f"could not bind {n} RTP port pairs on {self.host}: {last_error}")
        finally:
            self.pool.release(held)

    def _listen(self, endpoint: _Endpoint, port: int) -> None:
        from twisted.internet.error import CannotListenError

        try:
            if self._fdset:
                listening: Any = _RelayPort(port, endpoint, self.host, _RECV_SIZE, self._reactor)
                listening.startListening()
            else:
                listening = self._reactor.listenUDP(
                    port, endpoint, interface=self.host, maxPacketSize=_RECV_SIZE
                )
        except CannotListenError as e:
            err = OSError(errno.EADDRINUSE, str(e))
            err.port = port  # type: ignore[attr-defined]
            if getattr(e.socketError, "errno", None) in (errno.EMFILE, errno.ENFILE):
                raise FileDescriptorsExhausted(
                    f"no socket for RTP port {port}: {e.socketError}"
                ) from None
            raise err from None
        endpoint._bound(listening)

    def _fd_exhausted(self) -> None:
        # Count, and say once a minute at most what to do about it.
        self._totals["fd_exhausted"] += 1
        now = self._reactor.seconds()
        if self._fd_logged is None or now - self._fd_logged >= _FD_LOG_INTERVAL:
            self._fd_logged = now
            self.log.error(
                "out of file descriptors binding RTP ports (EMFILE/ENFILE, {count} failure(s)"
                " so far): raise LimitNOFILE in the systemd unit (or ulimit -n); each RTP"
                " stream needs 2 sockets",
                count=self._totals["fd_exhausted"],
            )

    def _release(self, ports: list[int]) -> None:
        self.pool.release(ports)

    # -- timers ----------------------------------------------------------------

    def _tick_interval(self) -> float:
        return min(1.0, self.rtcp_interval / 2.0)

    def _arm(self) -> None:
        if self._tick_call is None and self.sessions:
            self._tick_call = self._reactor.callLater(self._tick_interval(), self._tick)

    def _disarm(self) -> None:
        if self._tick_call is not None:
            if self._tick_call.active():
                self._tick_call.cancel()
            self._tick_call = None

    def _tick(self) -> None:
        # Media timeouts: one pass over the sessions per tick (a few µs per
        # session).  Sender reports have a timer per stream, so they spread
        # out instead of stalling the relay in one burst.
        self._tick_call = None
        now = self._reactor.seconds()
        for session in list(self.sessions):
            try:
                session._check_timeout(now)
            except Exception:
                self.log.failure("media relay timer failed")
        self._arm()

    def _schedule_report(self, stream: OutboundStream) -> None:
        # RFC 3550 s6.2: randomize over [0.5, 1.5] of the interval.
        delay = self.rtcp_interval * (0.5 + secrets.randbelow(1001) / 1000.0)
        stream.report_call = self._reactor.callLater(delay, self._report, stream)

    def _report(self, stream: OutboundStream) -> None:
        stream.report_call = None
        try:
            stream.send_report(self._reactor.seconds())
        except Exception:
            self.log.failure("RTCP sender report failed")
        if stream.forward.session.forwards.get(stream.forward.forward_id) is stream.forward:
            self._schedule_report(stream)

    # -- bookkeeping -------------------------------------------------------------

    def _session_closed(self, session: MediaSession, final: dict[str, Any]) -> None:
        self.sessions.discard(session)
        # A stream that timed out released its ports already (maybe reused).
        self.pool.release([s.rtp_port for s in session.streams if not s.ended])
        self._totals["sessions_timed_out"] += 1 if session.timed_out else 0
        drops = self._totals["drops"]
        for stream in final["streams"]:
            self._totals["packets_in"] += stream["packets_in"]
            self._totals["bytes_in"] += stream["bytes_in"]
            for cause, count in stream["drops"].items():
                drops[cause] = drops.get(cause, 0) + count
        if not self.sessions:
            self._disarm()

    def _fold(self, forward_stats: dict[str, Any]) -> None:
        # A removed forward's counters join the totals.
        self._totals["packets_out"] += forward_stats["packets_out"]
        self._totals["bytes_out"] += forward_stats["bytes_out"]
        drops = self._totals["drops"]
        for cause, count in forward_stats["drops"].items():
            drops[cause] = drops.get(cause, 0) + count

    @staticmethod
    def _accumulate(totals: dict[str, Any], drops: dict[str, int], session: MediaSession) -> None:
        # A live session's inbound streams and live forwards (removed
        # forwards are already in the totals).
        for stream in session.streams:
            totals["packets_in"] += stream.packets_in
            totals["bytes_in"] += stream.bytes_in
            for cause, count in stream.drops().items():
                drops[cause] = drops.get(cause, 0) + count
        for forward in session.forwards.values():
            stats = forward.stats()
            totals["packets_out"] += stats["packets_out"]
            totals["bytes_out"] += stats["bytes_out"]
            for cause, count in stats["drops"].items():
                drops[cause] = drops.get(cause, 0) + count


def _make_relay_reactor() -> Any:
    try:
        from twisted.internet.epollreactor import EPollReactor
    except ImportError:  # not Linux
        return None
    from twisted.python import log as legacy_log

    class RelayEPollReactor(EPollReactor):
        """
        The epoll reactor with the relay's sockets dispatched directly.

        For any event on a L{_RelayPort}, C{doPoll} calls its C{doRead}
        straight away instead of going through C{log.callWithLogger} and
        C{_doReadOrWrite} (a logging context, a C{fileno} check and
        exception plumbing per packet, which C{_RelayPort.doRead} does not
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
                if type(selectable) is _RelayPort:
                    selectable.doRead()
                else:
                    legacy_log.callWithLogger(selectable, drdw, selectable, fd, event)

        doIteration = doPoll

    return RelayEPollReactor


#: L{EPollReactor} with a direct dispatch for the relay's ports, or C{None}
#: where epoll is missing.
RelayEPollReactor = _make_relay_reactor()


def _format_address(address: Address | None) -> str | None:
    if address is None:
        return None
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
