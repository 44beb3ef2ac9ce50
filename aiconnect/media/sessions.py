# -*- test-case-name: tests.media.test_sessions,tests.media.test_relay,tests.media.test_relay_limits,tests.media.test_relay_pcm,tests.media.test_relay_codecs -*-
"""
The relay's sessions: what the SIP layer and the L{Call} hold.

  - L{MediaSession}: one recording session's media: the inbound streams
    from the SRC (L{InboundStream}) and the forwards to the SRSs; the
    session's media timeout and each stream's own.
  - L{ForwardMedia}: one forward (one downstream SRS): its outbound streams
    (L{OutboundStream}), connected once the SRS answered.

Ports, timers and the relay-wide totals belong to the L{MediaRelay}; a
session asks it through its public methods (C{bind_pairs}, C{release},
C{schedule_report}, ...).  See L{aiconnect.media.relay} for the API.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.python.failure import Failure

from aiconnect.media.pcm import PcmSink, PcmTap
from aiconnect.media.ports import PortsExhausted
from aiconnect.media.sockets import Address, normalize_address
from aiconnect.media.srtp import SrtpParams
from aiconnect.media.streams import FORWARD_CODECS, InboundStream, OutboundStream

if TYPE_CHECKING:
    from aiconnect.media.relay import MediaRelay

__all__ = ["ForwardMedia", "MediaSession"]

_Stream = TypeVar("_Stream", InboundStream, OutboundStream)


def _append_streams(
    relay: MediaRelay,
    streams: tuple[_Stream, ...],
    n: int,
    make: Callable[[int, int], _Stream],
) -> list[_Stream]:
    # Book and bind n streams to follow `streams` (indices and ports after
    # the last one's); make(index, rtp_port) builds one.
    if n < 1:
        raise ValueError("add at least one stream")
    base = len(streams)

    def build(ports: list[int]) -> list[_Stream]:
        return [make(base + i, port) for i, port in enumerate(ports)]

    return relay.bind_pairs(n, build, after=streams[-1].rtp_port)


class ForwardMedia:
    """
    The media of one forward (one downstream SRS): one outbound stream per
    stream offered to it.  Created by L{MediaSession.add_forward}.

    @ivar forward_id: the caller's identifier for the forward.
    @ivar streams: the outbound streams, in SDP order.
    @ivar cname: the RTCP CNAME used on this forward's streams (random, RFC
        7022).
    @ivar session: the session it belongs to.
    @ivar relay: the session's relay (ports, sender-report timers).
    @ivar seconds: the clock.
    @ivar paused_at: when L{pause} stopped it, C{None} while it sends.
    """

    def __init__(self, session: MediaSession, forward_id: str, ports: list[int]) -> None:
        self.session = session
        self.relay = session.relay
        self.seconds = session.seconds
        self.forward_id = forward_id
        self.cname = secrets.token_urlsafe(12).encode("ascii")
        self.streams: tuple[OutboundStream, ...] = tuple(
            OutboundStream(self, i, port) for i, port in enumerate(ports)
        )
        self.paused_at: float | None = None
        #: Streams held apart from the pause (L{hold}).
        self.held: set[int] = set()
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
    def closed(self) -> bool:
        """
        Whether this forward was removed from its session (or never was in
        it): it no longer connects, grows or sends reports.
        """
        return self.session.closed or self.session.forwards.get(self.forward_id) is not self

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
        if self.closed:
            raise ValueError("forward is closed")
        if codec not in FORWARD_CODECS:
            raise ValueError(f"unsupported forward codec {codec!r}")
        for pt in (payload_type, dtmf_payload_type):
            if pt is not None and not 0 <= pt <= 127:
                raise ValueError(f"payload type out of range: {pt}")
        stream = self.streams[index]
        source_stream = self.session.streams[index if source is None else source]
        remote_n = normalize_address(remote)
        if remote_n is None:
            raise ValueError("a forward needs a remote address")
        rtcp_n = normalize_address(rtcp_remote)
        if rtcp_n is None and not rtcp_mux:
            rtcp_n = (remote_n[0], remote_n[1] + 1)
        stream.configure(
            source_stream, remote_n, rtcp_n, codec, payload_type, dtmf_payload_type, srtp_tx, srtp_rx
        )
        if stream.report_call is None:
            self.relay.schedule_report(stream)

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
        if self.closed:
            raise ValueError("forward is closed")
        added = _append_streams(self.relay, self.streams, n, lambda i, port: OutboundStream(self, i, port))
        self.streams = self.streams + tuple(added)
        self._fresh_ssrcs(added)
        if self.paused_at is not None:
            for stream in added:
                stream.pause(self.paused_at)
        return added

    @property
    def paused(self) -> bool:
        """
        Whether L{pause} stopped this forward's RTP.
        """
        return self.paused_at is not None

    def pause(self, now: float) -> None:
        """
        Stop sending RTP on every stream of this forward (SPEC s10: the
        session is paused; the SIP layer re-INVITEs the SRS with
        C{a=inactive}).  The streams leave their sources' targets, so the
        hot path pays nothing for them; streams connected or added while
        paused stay silent too.  Idempotent.

        @param now: the time of the pause (the relay's clock).
        """
        if self.paused_at is not None or self.closed:
            return
        self.paused_at = now
        for stream in self.streams:
            stream.pause(now)

    def resume(self, now: float) -> None:
        """
        Send RTP again after L{pause}: each stream goes on with the next
        sequence number, its SSRC, the marker bit set, and its timestamp
        advanced by the paused time (whole 20 ms frames at 8000 Hz).
        Idempotent.

        @param now: the time of the resume (the relay's clock).
        """
        if self.paused_at is None or self.closed:
            return
        self.paused_at = None
        for stream in self.streams:
            if stream.index not in self.held:
                stream.resume(now)

    def hold(self, index: int, held: bool, now: float) -> None:
        """
        Stop (C{held}) or restart one stream's RTP, apart from the pause:
        the SRS answered it C{a=inactive}, or the SRS is lost and the
        forward re-established elsewhere (SPEC s13).  A held stream keeps
        its SSRC and where its numbering stands, like a paused one: its
        next packet has the next sequence number (towards whichever SRS it
        is connected to by then), the timestamp advanced by the time held.
        A stream released while the forward is paused stays silent until
        L{resume}.  Idempotent.

        @param index: the forward's stream.
        """
        if self.closed:
            return
        stream = self.streams[index]
        if held:
            self.held.add(index)
            stream.pause(now)
            return
        self.held.discard(index)
        if self.paused_at is None:
            stream.resume(now)

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
            "paused": self.paused_at is not None,
            "packets_out": sum(s["packets_out"] for s in streams),
            "bytes_out": sum(s["bytes_out"] for s in streams),
            "drops": drops,
            "streams": streams,
        }

    def detach(self) -> None:
        """
        Stop relaying to every stream and close their sockets (the session
        releases the ports).
        """
        for stream in self.streams:
            stream.close()
            stream.forward = None  # the streams' way back to us: no cycle left


class MediaSession:
    """
    The media of one recording session: the inbound streams from the SRC
    and the forwards to the SRSs.  Created by L{MediaRelay.allocate_session}.

    @ivar streams: the inbound streams (a tuple, replaced when
        L{add_streams} appends), by index; the SIP layer maps m-lines to
        them.
    @ivar forwards: forward id -> L{ForwardMedia}.
    @ivar timed_out: whether the media timeout was reported.
    @ivar relay: the relay it belongs to.
    @ivar seconds: the clock (the relay's reactor's C{seconds}).
    @ivar pcm: the L{PcmTap} while PCM sinks are attached, else C{None}.
    """

    def __init__(
        self,
        relay: MediaRelay,
        ports: list[int],
        on_timeout: Callable[[MediaSession], object] | None,
    ) -> None:
        self.relay = relay
        self.seconds = relay.seconds
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
            InboundStream(i, port, self.seconds) for i, port in enumerate(ports)
        )
        self.pcm: PcmTap | None = None

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
            C{"telephone-event"} or C{"CN"}, or one decoded codec,
            C{"G722"} or C{"opus"}, without G.711 (the stream then has a
            L{aiconnect.media.decoders.PcmDecoder}); default C{{0: "PCMU",
            8: "PCMA"}}.  Other payload types are dropped and counted.
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
        added = _append_streams(self.relay, self.streams, n, lambda i, port: InboundStream(i, port, self.seconds))
        self.streams = self.streams + tuple(added)
        tap = self.pcm
        if tap is not None:
            tap.grow(len(self.streams))
            for stream in added:
                stream.pcm = tap
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
        now = self.seconds()
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
            stream.last_rx = max(stream.last_rx, self.seconds())
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
            stream.move_to(ports[0])
            return [stream]

        old_port = stream.rtp_port
        try:
            self.relay.bind_pairs(1, build, after=self.streams[-1].rtp_port)
        except PortsExhausted:
            stream.move_to(old_port)  # the stats keep showing the last ports it had
            raise
        stream.reopened(self.seconds())
        stream.pcm = self.pcm
        return stream

    def attach_pcm(self, sink: PcmSink) -> None:
        """
        Give C{sink} one L{aiconnect.media.pcm.PcmFrame} per 20 ms of
        wall-clock time, from the next tick on (L{aiconnect.legs.MediaSession}).
        The first sink creates the session's L{PcmTap}, started now, and
        hands it to every inbound stream (and to streams added or reopened
        later) and to the relay's frame timer.

        @raise ValueError: on a closed session.
        """
        if self.closed:
            raise ValueError("session is closed")
        tap = self.pcm
        if tap is None:
            tap = self.pcm = PcmTap(self.seconds(), len(self.streams), on_sink_error=self._pcm_sink_failed)
            for stream in self.streams:
                stream.pcm = tap
            self.relay.add_pcm_tap(tap)
        tap.add_sink(sink)

    def detach_pcm(self, sink: PcmSink) -> None:
        """
        Stop giving C{sink} frames (no error if it was not attached).  The
        last sink removes the tap: the hot path is back to one attribute
        test per packet.
        """
        tap = self.pcm
        if tap is None:
            return
        tap.remove_sink(sink)
        if not tap.sinks:
            self._drop_pcm()

    def _drop_pcm(self) -> None:
        tap, self.pcm = self.pcm, None
        if tap is None:
            return
        for stream in self.streams:
            stream.pcm = None
        self.relay.remove_pcm_tap(tap)

    def _pcm_sink_failed(self, sink: PcmSink, error: Exception) -> None:
        # The tap removed a sink that raised: log our bug, and drop the tap
        # if it was the last sink.
        self.relay.log.failure(
            "PCM sink {sink} raised and was detached",
            Failure(error, type(error), error.__traceback__),
            sink=type(sink).__name__,  # its name only: a repr might show a URL
        )
        tap = self.pcm
        if tap is not None and not tap.sinks:
            self._drop_pcm()

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
        streams = self.relay.bind_pairs(n_streams, lambda p: ForwardMedia(self, forward_id, p).streams)
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
        forward.detach()
        self.relay.release([s.rtp_port for s in forward.streams])
        self.relay.forward_removed(stats)
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
        out = {
            "closed": self.closed,
            "timed_out": self.timed_out,
            "streams": [s.stats() for s in self.streams],
            "forwards": forwards,
        }
        if self.pcm is not None:
            out["pcm"] = self.pcm.stats()
        return out

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
        self._drop_pcm()
        for stream in self.streams:
            stream.targets = []
            stream.close()
        # The callbacks lead back to the call: dropped, so that the call is
        # freed by reference counting (no cycle through this session).
        self.on_timeout = self.on_stream_timeout = None
        self.relay.session_closed(self, final)

    def check_timeout(self, now: float) -> None:
        """
        The relay's tick: when every stream was silent for the media
        timeout, the session timed out (C{on_timeout}, once: the L{Call}
        ends it); else each expected stream silent that long is closed on
        its own (C{on_stream_timeout}).
        """
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
        stream.end()
        self.relay.stream_timed_out(stream)
        if self.on_stream_timeout is not None:
            try:
                self.on_stream_timeout(self, stream)
            except Exception:
                self.relay.log.failure("stream timeout callback failed")
