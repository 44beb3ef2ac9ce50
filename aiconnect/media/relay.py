# -*- test-case-name: tests.media.test_relay,tests.media.test_relay_limits,tests.media.test_relay_udp,tests.media.test_relay_reactor,tests.media.test_relay_pcm -*-
"""
The RTP relay: one C{DatagramProtocol} per port, fanning each inbound
stream out to every forward (SPEC s5).

This module holds L{MediaRelay} (allocation, the timers for media
timeouts, RTCP sender reports and the PCM taps' frames, the totals) and
re-exports the rest of the media
plane, which lives in three rooms:

  - L{aiconnect.media.sockets}: the UDP port class, the protocols' base,
    binding port pairs, L{RelayEPollReactor};
  - L{aiconnect.media.streams}: L{InboundStream} and L{OutboundStream},
    the per-packet hot path, and their RTCP ports;
  - L{aiconnect.media.sessions}: L{MediaSession} and L{ForwardMedia}.

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
    forward.pause(now) / forward.resume(now)       # SPEC s10: no RTP while paused;
        # after resume: next seq, same SSRC, marker, ts advanced by the pause.
    session.attach_pcm(sink) / detach_pcm(sink)    # PcmFrames every 20 ms (pcm.py)
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

import secrets
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from aiconnect.media.pcm import FRAME_SECONDS, PcmTap

#: The PCM taps' groups: one tick every 20 ms / PCM_PHASES serves one.
PCM_PHASES = 4
_PCM_STEP = FRAME_SECONDS / PCM_PHASES
from aiconnect.media.ports import FileDescriptorsExhausted, PortPool, PortsExhausted
from aiconnect.media.sessions import ForwardMedia, MediaSession
from aiconnect.media.sockets import PortBinder, PortPair, RelayEPollReactor
from aiconnect.media.streams import InboundStream, OutboundStream

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

#: How often (seconds) the out-of-file-descriptors line is logged at most.
_FD_LOG_INTERVAL = 60.0

_Pair = TypeVar("_Pair", bound=PortPair)


class MediaRelay:
    """
    The media plane: the port pool, the sessions, one timer for media
    timeouts, one for the PCM taps' frames.

    The public methods after L{close} (L{bind_pairs}, L{release},
    L{schedule_report}, L{forward_removed}, L{stream_timed_out},
    L{session_closed}) are for the relay's own sessions and forwards.

    @ivar host: the local IP the relay binds (and advertises in SDP).
    @ivar pool: the RTP/RTCP port pairs.
    @ivar media_timeout: the default media timeout in seconds (0 = off).
    @ivar rtcp_interval: the mean interval between sender reports.
    @ivar seconds: the clock (the reactor's C{seconds}).
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
        self.seconds: Callable[[], float] = reactor.seconds
        self.host = host
        self.pool = PortPool(port_min, port_max)
        self._binder = PortBinder(reactor, host, self.pool, self._fd_exhausted)
        self.media_timeout = media_timeout
        self.rtcp_interval = rtcp_interval
        self.sessions: set[MediaSession] = set()
        self._tick_call: IDelayedCall | None = None
        self.pcm_taps: list[PcmTap] = []
        #: The taps by tick group (L{add_pcm_tap}).
        self._pcm_groups: list[list[PcmTap]] = [[] for _ in range(PCM_PHASES)]
        self._pcm_phase = 0
        #: When the next tick is due on the grid (its call may run later).
        self._pcm_at = 0.0
        self._pcm_call: IDelayedCall | None = None
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

        self.bind_pairs(n_streams, build)
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
        for tap in tuple(self.pcm_taps):
            self.remove_pcm_tap(tap)

    # -- for the sessions and forwards --------------------------------------------

    def bind_pairs(
        self, n: int, build: Callable[[list[int]], Iterable[_Pair]], after: int | None = None
    ) -> list[_Pair]:
        """
        Book and bind C{n} RTP/RTCP port pairs for the streams C{build}
        makes from the booked RTP ports (L{PortBinder.bind_pairs}); running
        out of file descriptors is counted and logged.

        @raise PortsExhausted: nothing is kept then.
        """
        return self._binder.bind_pairs(n, build, after)

    def release(self, ports: list[int]) -> None:
        """
        Give port pairs (by RTP port) whose sockets are closed back to the
        pool.
        """
        self.pool.release(ports)

    def stream_timed_out(self, stream: InboundStream) -> None:
        """
        An inbound stream timed out alone and closed its sockets: release
        its ports and count it.
        """
        self.release([stream.rtp_port])
        self._totals["streams_timed_out"] += 1

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
                session.check_timeout(now)
            except Exception:
                self.log.failure("media relay timer failed")
        self._arm()

    def add_pcm_tap(self, tap: PcmTap) -> None:
        """
        Drive C{tap}'s frame clock.  One timer drives every session's tap
        (armed while a tap exists); it ticks every 5 ms, each tick serving
        one of L{PCM_PHASES} groups of taps, so a tick holds the reactor
        for a quarter of the frame work and the RTP relayed meanwhile
        waits less.  A new tap joins the smallest group, and its start
        moves back (by less than 20 ms) so its frames fall due midway
        between two ticks of its group: a tick that runs a little early or
        late still hands out exactly one frame, and the frames leave every
        20 ms instead of in pairs.
        """
        if tap in self.pcm_taps:
            return
        if self._pcm_call is None:
            self._pcm_phase = 0
            self._pcm_at = self._reactor.seconds() + _PCM_STEP
            self._pcm_call = self._reactor.callLater(_PCM_STEP, self._pcm_tick)
        phase = min(range(PCM_PHASES), key=lambda p: len(self._pcm_groups[p]))
        tick = self._pcm_at + ((phase - self._pcm_phase) % PCM_PHASES) * _PCM_STEP
        tap.start -= (tap.start - (tick - FRAME_SECONDS / 2)) % FRAME_SECONDS
        self._pcm_groups[phase].append(tap)
        self.pcm_taps.append(tap)

    def remove_pcm_tap(self, tap: PcmTap) -> None:
        """
        Stop driving C{tap}; the timer stops with the last tap.
        """
        if tap in self.pcm_taps:
            self.pcm_taps.remove(tap)
            for group in self._pcm_groups:
                if tap in group:
                    group.remove(tap)
        if not self.pcm_taps and self._pcm_call is not None:
            if self._pcm_call.active():
                self._pcm_call.cancel()
            self._pcm_call = None

    def _pcm_tick(self) -> None:
        # One group's taps hand out the frames due.  The next tick is 5 ms
        # after this one was due, counted from after the work (so the ticks
        # do not drift by their own run time); when the reactor lagged, the
        # groups left behind run at once, in order, and a lag of a whole
        # frame or more moves the grid on (the taps catch up themselves).
        self._pcm_call = None
        phase = self._pcm_phase
        now = self._reactor.seconds()
        for tap in tuple(self._pcm_groups[phase]):
            try:
                tap.due(now)
            except Exception:
                self.log.failure("PCM frame tick failed")
        if self.pcm_taps and self._pcm_call is None:
            now = self._reactor.seconds()
            due = self._pcm_at + _PCM_STEP
            if now - due >= FRAME_SECONDS:
                due += (now - due) // FRAME_SECONDS * FRAME_SECONDS
            self._pcm_at = due
            self._pcm_phase = (phase + 1) % PCM_PHASES
            self._pcm_call = self._reactor.callLater(max(0.0, due - now), self._pcm_tick)

    def schedule_report(self, stream: OutboundStream) -> None:
        """
        Send C{stream}'s next RTCP sender report in about C{rtcp_interval}
        seconds (randomized over [0.5, 1.5] of it, RFC 3550 s6.2), and keep
        doing so while its forward lives; the pending call is
        C{stream.report_call}.
        """
        delay = self.rtcp_interval * (0.5 + secrets.randbelow(1001) / 1000.0)
        stream.report_call = self._reactor.callLater(delay, self._report, stream)

    def _report(self, stream: OutboundStream) -> None:
        stream.report_call = None
        try:
            stream.send_report(self._reactor.seconds())
        except Exception:
            self.log.failure("RTCP sender report failed")
        if not stream.forward.closed:
            self.schedule_report(stream)

    # -- bookkeeping -------------------------------------------------------------

    def session_closed(self, session: MediaSession, final: dict[str, Any]) -> None:
        """
        C{session} closed: release its ports (those of streams that timed
        out alone are released already) and add its final counters
        (L{MediaSession.stats}) to the totals.
        """
        self.sessions.discard(session)
        # A stream that timed out released its ports already (maybe reused).
        self.release([s.rtp_port for s in session.streams if not s.ended])
        self._totals["sessions_timed_out"] += 1 if session.timed_out else 0
        drops = self._totals["drops"]
        for stream in final["streams"]:
            self._totals["packets_in"] += stream["packets_in"]
            self._totals["bytes_in"] += stream["bytes_in"]
            for cause, count in stream["drops"].items():
                drops[cause] = drops.get(cause, 0) + count
        if not self.sessions:
            self._disarm()

    def forward_removed(self, forward_stats: dict[str, Any]) -> None:
        """
        A forward was removed (its ports released): its final counters
        (L{ForwardMedia.stats}) join the totals.
        """
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
