# -*- test-case-name: tests.media.test_streams,tests.media.test_relay,tests.media.test_relay_udp,tests.media.test_relay_pcm,tests.media.test_relay_codecs -*-
"""
The relay's streams: the per-packet hot path.

  - L{InboundStream}: the protocol on an inbound RTP port.  Per packet: a
    tuple comparison for the source, SRTP unprotect, one C{struct} unpack,
    then for each L{OutboundStream} it feeds one C{struct} pack, a
    C{bytes.translate} when transcoding, SRTP protect, and C{send} on the
    forward's socket, connected to the SRS.  No Deferreds, no log lines,
    no allocation beyond the packet; every failure is a counter.  The
    state a packet touches sits in C{__slots__}, so hundreds of streams
    taking turns cost few cache misses (docs/media.md).
  - L{OutboundStream}: one stream towards an SRS: the rewrite state (fresh
    SSRC, sequence and timestamp offsets), the codec map, its SRTP
    contexts, its RTCP sender reports.
  - Their RTCP ports (L{aiconnect.media.rtcp_ports}): the SRC's sender
    reports and the SRS's receiver reports are parsed and kept; nothing
    is forwarded.

A stream knows its own state and the streams it feeds or is fed by; it
reaches into neither its session nor the relay: the clock is given at
construction, and the relay schedules the sender reports.
L{aiconnect.media.sessions} creates and configures the streams.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IDelayedCall

from aiconnect.media.decoders import DECODED_KINDS, PcmDecoder
from aiconnect.media.g711 import ALAW_TO_ULAW, ULAW_TO_ALAW, alaw_encode, ulaw_encode
from aiconnect.media.rtcp_ports import _InboundRtcp, _OutboundRtcp
from aiconnect.media.rtp import (
    ReportBlock,
    RtcpSenderReport,
    build_sdes_cname,
    ntp_middle32,
    ntp_timestamp,
    rtp_payload_bounds,
)
from aiconnect.media.sockets import MAX_DATAGRAM, Address, Endpoint, normalize_address, normalize_host
from aiconnect.media.srtp import SrtpContext, SrtpParams

if TYPE_CHECKING:
    from array import array

    from aiconnect.media.pcm import PcmTap
    from aiconnect.media.sessions import ForwardMedia

__all__ = [
    "DEFAULT_PAYLOAD_MAP",
    "FORWARD_CODECS",
    "KINDS",
    "InboundStream",
    "OutboundStream",
]

#: Payload kinds an inbound payload map may name: G.711 and the relayed
#: kinds, and the decoded ones (L{aiconnect.media.decoders}).
KINDS = frozenset({"PCMU", "PCMA", "telephone-event", "CN", *DECODED_KINDS})
#: Codecs a forward may use.
FORWARD_CODECS = frozenset({"PCMU", "PCMA"})
DEFAULT_PAYLOAD_MAP: Mapping[int, str] = {0: "PCMU", 8: "PCMA"}
_ENCODE = {"PCMU": ulaw_encode, "PCMA": alaw_encode}

_TRANSLATE = {("PCMU", "PCMA"): ULAW_TO_ALAW, ("PCMA", "PCMU"): ALAW_TO_ULAW}
_TAG_LENGTH = {
    "AES_CM_128_HMAC_SHA1_80": 10,
    "AES_CM_128_HMAC_SHA1_32": 4,
    "AEAD_AES_128_GCM": 16,
    "AEAD_AES_256_GCM": 16,
}
_CLOCK_RATE = 8000  # G.711, telephone-event and CN here all use 8 kHz
_FRAME = 160  # one 20 ms frame at 8 kHz
_MAX_DROPOUT = 3000  # RFC 3550 A.1
_RENUMBERED = -1  # in place of the SSRC: the next packet rebases (a codec change)
_MAX_MISORDER = 100

# The 11 octets after the first: M/PT, sequence number, timestamp, SSRC.
_RTP_REST = struct.Struct("!xBHII")
_RTP_OUT = struct.Struct("!BBHII")


# -- inbound --------------------------------------------------------------------


class InboundStream(Endpoint):
    """
    One inbound stream: the protocol on its RTP port, the fan-out and the
    counters.  Created by L{MediaRelay.allocate_session} or
    L{MediaSession.add_streams}; configure it
    through L{MediaSession.set_inbound}.

    @ivar index: the stream's position in the session.
    @ivar rtp_port: the local RTP port (even).
    @ivar rtcp_port: the local RTCP port (C{rtp_port + 1}).
    @ivar remote: the accepted source, C{None} before it is known.
    @ivar targets: the outbound streams this one feeds.
    @ivar pcm: the session's L{PcmTap} while it has PCM outputs, else
        C{None}; each accepted packet is pushed to it (after the source
        check, SRTP and the payload type check), with or without targets.
    @ivar retired: SRTP failure counts of the contexts a new key replaced.
    @ivar expect_media: whether the SRC sends on this stream (only such a
        stream times out alone).
    @ivar ended: whether it timed out alone (its ports are released).
    @ivar decoder: the L{PcmDecoder} while the payload map names G.722 or
        Opus, else C{None}: the stream then hands on 20 ms frames of 8 kHz
        PCM in its own numbering (L{aiconnect.media.decoders}).
    """

    # What the hot path touches lives in slots, in the object itself: with
    # hundreds of streams taking turns, every separate object is a cache
    # miss per packet.
    __slots__ = (
        "remote", "srtp", "payload_map", "targets", "ssrc", "last_seq", "last_ts",
        "last_rx", "packets_in", "bytes_in", "malformed", "unknown_pt", "foreign",
        "latched", "latch_host", "rtcp", "_seconds", "pcm", "decoder",
    )  # fmt: skip

    def __init__(self, index: int, rtp_port: int, seconds: Callable[[], float]) -> None:
        """
        @param index: the stream's position in its session.
        @param rtp_port: the local RTP port (bound later, by the relay).
        @param seconds: the clock (the reactor's C{seconds}).
        """
        super().__init__()
        self.index = index
        self.rtp_port = rtp_port
        self.rtcp_port = rtp_port + 1
        self.port = rtp_port
        self.remote: Address | None = None
        self.latch_host: str | None = None
        self.payload_map: dict[int, str] = dict(DEFAULT_PAYLOAD_MAP)
        self.srtp: SrtpContext | None = None
        self.srtp_params: SrtpParams | None = None
        self.retired: dict[str, int] = {}
        self.targets: list[OutboundStream] = []
        self.pcm: PcmTap | None = None
        self.decoder: PcmDecoder | None = None
        self.rtcp = _InboundRtcp(self)
        self._seconds = seconds
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
        decoded = {kind for kind in pmap.values() if kind in DECODED_KINDS}
        if len(decoded) > 1 or (decoded and any(kind in FORWARD_CODECS for kind in pmap.values())):
            raise ValueError("a payload map names one decoded codec, and no G.711 with it")
        remote = normalize_address(remote)
        latch_host = normalize_host(latch_host) if latch_host is not None else None
        if srtp != self.srtp_params:
            # A new key (or none): a new context.  The same key again (a
            # re-INVITE repeating its a=crypto) keeps the context, and with
            # it the rollover counter and the replay window.
            if self.srtp is not None:
                retired = self.retired
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
        self._update_decoder()
        self.rtcp.configure(remote, rtcp_remote, latch_host)
        for target in self.targets:
            target.rebuild_map()

    def _update_decoder(self) -> None:
        # One decoder while the map names G.722 or Opus: kept while the
        # codec stays (its state is the stream's), replaced when it changes.
        kind = next((k for k in self.payload_map.values() if k in DECODED_KINDS), None)
        old = self.decoder
        if kind is None:
            self.decoder = None
        elif old is None or old.kind != kind:
            self.decoder = PcmDecoder(kind)
        if self.decoder is not old and self.ssrc is not None:
            # The numbering changes (the decoder's own, or the SRC's): the
            # next packet rebases the forwards, which stay continuous.
            self.ssrc = _RENUMBERED

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
        if not 12 <= n <= MAX_DATAGRAM:
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
        kind = self.payload_map.get(pt)
        if kind is None:
            self.unknown_pt += 1
            return
        now = self._seconds()
        self.packets_in += 1
        self.bytes_in += n  # on the wire, SRTP tag included
        decoder = self.decoder
        if decoder is None:
            self.emit(b1, ssrc, seq, ts, kind, data[start:end], None, now)
            return
        # G.722 or Opus: 20 ms frames of 8 kHz PCM in the stream's own
        # numbering (and its other packets renumbered alike).
        for p in decoder.packet(kind, ssrc, ts, data[start:end], b1 & 0x80):
            self.emit(p.marker | pt, ssrc, p.seq, p.ts, p.kind, p.payload, p.samples, now)

    def emit(
        self, b1: int, ssrc: int, seq: int, ts: int, kind: str, payload: bytes, samples: array[int] | None, now: float
    ) -> None:
        """
        Hand one packet on: to the PCM tap and to every target, rewritten.

        @param b1: the RTP header's second octet (marker bit and payload
            type).
        @param kind: the payload's kind (L{KINDS}, or C{"L16"}).
        @param samples: 8 kHz samples of a decoded frame (then encoded to
            each target's G.711), or C{None} for a relayed payload.
        """
        pt = b1 & 0x7F
        if ssrc != self.ssrc or _MAX_DROPOUT < ((seq - self.last_seq) & 0xFFFF) < (
            0x10000 - _MAX_MISORDER
        ):
            self._rebase(ssrc, seq, ts, now)
        self.last_seq = seq
        self.last_ts = ts
        self.last_rx = now
        pcm = self.pcm
        if pcm is not None:  # the one test a call without PCM outputs pays
            if samples is None:
                pcm.push(self.index, kind, ssrc, seq, ts, payload, now)
            else:
                pcm.push_samples(self.index, ssrc, seq, ts, samples, now)
        targets = self.targets
        if not targets:
            return
        marker = b1 & 0x80
        pack = _RTP_OUT.pack
        encoded: dict[str, bytes] | None = None  # a decoded frame's G.711, per codec
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
            if samples is not None:  # a decoded frame: this target's G.711
                if encoded is None:
                    encoded = {}
                body = encoded.get(t.codec)
                if body is None:
                    body = encoded[t.codec] = _ENCODE[t.codec](samples)
            else:
                body = payload.translate(table) if table is not None else payload
            pkt = pack(
                0x80,
                out_pt | marker,
                (seq + t.seq_off) & 0xFFFF,
                (ts + t.ts_off) & 0xFFFFFFFF,
                t.ssrc,
            ) + body
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
            t.octets += len(body)

    def _rebase(self, ssrc: int, seq: int, ts: int, now: float) -> None:
        # A new SSRC or a sequence jump: keep every started outbound stream
        # continuous (next sequence number, timestamp advanced by the gap).
        if self.ssrc is not None:
            if ssrc != self.ssrc and self.ssrc != _RENUMBERED:
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

    def close(self) -> None:
        """
        Close the RTP and RTCP sockets (idempotent); the configuration, the
        counters and the targets stay.
        """
        super().close()
        self.rtcp.close()
        self.decoder = None  # its codec state goes with the stream

    def end(self) -> None:
        """
        The stream timed out alone: close its sockets and mark it ended (its
        session releases the ports).
        """
        self.ended = True
        self.close()

    def move_to(self, rtp_port: int) -> None:
        """
        Take another pair of ports (RTCP on C{rtp_port + 1}), before they
        are bound; see L{reopened}.
        """
        self.rtp_port = self.port = rtp_port
        self.rtcp_port = self.rtcp.port = rtp_port + 1

    def reopened(self, now: float) -> None:
        """
        Bound again on the ports of L{move_to} after L{end}: the new ports
        may latch again, and the silence counts from C{now}.
        """
        self.ended = False
        self.latched = self.rtcp.latched = 0
        self.last_rx = now
        self._update_decoder()

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
        for source in (self.srtp.failures if self.srtp is not None else {}, self.retired):
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
            "ssrc": self.ssrc if self.ssrc != _RENUMBERED else None,
            "ssrc_changes": self.ssrc_changes,
            "timed_out": self.ended,
            "packets_in": self.packets_in,
            "bytes_in": self.bytes_in,
            "rtcp_in": self.rtcp.packets_in,
            "drops": self.drops(),
            "sender_report": dict(self.rtcp.last_sr) if self.rtcp.last_sr else None,
            "decoder": self.decoder.stats() if self.decoder is not None else None,
        }


# -- outbound -------------------------------------------------------------------


class OutboundStream(Endpoint):
    """
    One stream of a forward: its local RTP port (the protocol here receives
    and counts whatever the SRS sends there), the rewrite state and the
    counters.  The relay's hot path writes through C{send}, on this
    port's socket connected to the SRS.  Created by L{ForwardMedia};
    configured by L{ForwardMedia.connect}.

    @ivar forward: the forward this stream belongs to (L{None} once the
        forward is detached).
    @ivar source: the inbound stream it relays, C{None} before L{configure}.
    @ivar ssrc: the fresh random SSRC of this outbound stream.
    @ivar report_call: the pending RTCP sender report (the relay schedules
        it), C{None} when none is.
    @ivar paused_at: when L{pause} stopped it, C{None} while it sends.
    """

    __slots__ = (
        "pt_map", "main_pt", "main_out", "main_table", "src_ssrc", "seq_off", "ts_off",
        "marker", "ssrc", "protect", "packets", "octets", "unsupported", "send_errors",
        # Not the hot path's: slots keep the instance dict under CPython's
        # 30 shared keys (past them each dict costs ~800 octets more).
        "paused_at", "resume_ts",
    )  # fmt: skip

    def __init__(self, forward: ForwardMedia, index: int, rtp_port: int) -> None:
        """
        @param forward: its forward (the RTCP CNAME and the clock come from
            there).
        @param index: the stream's position in the forward.
        @param rtp_port: the local RTP port (bound later, by the relay).
        """
        super().__init__()
        self.forward = forward
        self.index = index
        self.rtp_port = rtp_port
        self.rtcp_port = rtp_port + 1
        self.port = rtp_port
        self.rtcp = _OutboundRtcp(self, forward.seconds)
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
        # Pause (SPEC s10): since when, and whether first_ts continues a
        # numbering the pause must advance.
        self.paused_at: float | None = None
        self.resume_ts = False
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
        if len(data) > MAX_DATAGRAM:
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
                elif kind in DECODED_KINDS:  # frames encoded for this stream
                    pt_map[pt] = (self.payload_type, None)
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

    def configure(
        self,
        source: InboundStream,
        remote: Address,
        rtcp_remote: Address | None,
        codec: str,
        payload_type: int,
        dtmf_payload_type: int | None,
        srtp_tx: SrtpParams | None,
        srtp_rx: SrtpParams | None,
    ) -> None:
        """
        Apply the SRS's (re-)negotiated answer, the addresses already
        normalized.  See L{ForwardMedia.connect}.  The stream keeps its SSRC
        and stays continuous, also when its source changes.
        """
        if srtp_tx != self.srtp_tx_params:
            tx = SrtpContext(srtp_tx, outbound=True, ssrc=self.ssrc) if srtp_tx is not None else None
            if self.srtp_tx is not None:
                self.retire_failures(self.srtp_tx)
            self.srtp_tx = tx
            self.srtp_tx_params = srtp_tx
            self.protect = tx.protect if tx is not None else None
        if srtp_rx != self.srtp_rx_params:
            if self.srtp_rx is not None:
                self.retire_failures(self.srtp_rx, "rtcp_")
            self.srtp_rx = SrtpContext(srtp_rx, outbound=False) if srtp_rx is not None else None
            self.srtp_rx_params = srtp_rx

        old_source = self.source
        if old_source is not None and old_source is not source:
            if self in old_source.targets:  # not while paused
                old_source.targets.remove(self)
            if self.src_ssrc is not None:
                # Continue the outbound numbering on the new source.
                self.first_seq = (old_source.last_seq + self.seq_off + 1) & 0xFFFF
                self.first_ts = (old_source.last_ts + self.ts_off + _FRAME) & 0xFFFFFFFF
                self.src_ssrc = None
        self.codec = codec
        self.payload_type = payload_type
        self.dtmf_payload_type = dtmf_payload_type
        self.remote = remote
        self.rtcp_remote = rtcp_remote
        self.connect_peer(remote)
        if rtcp_remote is not None:
            self.rtcp.connect_peer(rtcp_remote)
        self.source = source
        self.rebuild_map()
        if self.paused_at is None and self not in source.targets:
            source.targets.append(self)

    def pause(self, now: float) -> None:
        """
        Send no more RTP (SPEC s10): leave the source's targets, so the hot
        path does not see this stream at all, and keep where the outbound
        numbering stands.  Idempotent; see L{resume}.
        """
        if self.paused_at is not None:
            return
        self.paused_at = now
        source = self.source
        if source is not None and self in source.targets:
            source.targets.remove(self)
        if source is not None and self.src_ssrc is not None:
            # Continue from the last packet sent, as on a change of source.
            self.first_seq = (source.last_seq + self.seq_off + 1) & 0xFFFF
            self.first_ts = (source.last_ts + self.ts_off + _FRAME) & 0xFFFFFFFF
            self.src_ssrc = None
            self.resume_ts = True

    def resume(self, now: float) -> None:
        """
        Send RTP again after L{pause}: the next packet has the next sequence
        number, the same SSRC, the marker bit, and a timestamp advanced by
        the paused wall-clock time in whole 20 ms frames.  Idempotent.
        """
        paused_at = self.paused_at
        if paused_at is None:
            return
        self.paused_at = None
        if self.resume_ts:
            frames = max(0, int((now - paused_at) * (_CLOCK_RATE / _FRAME) + 0.5))
            self.first_ts = (self.first_ts + frames * _FRAME) & 0xFFFFFFFF
            self.resume_ts = False
        source = self.source
        if source is not None and self.remote is not None and self not in source.targets:
            source.targets.append(self)

    def close(self) -> None:
        """
        Stop: leave the source's targets, close the RTP and RTCP sockets,
        cancel the pending sender report.  Idempotent.
        """
        source = self.source
        if source is not None and self in source.targets:
            source.targets.remove(self)
        super().close()
        self.rtcp.close()
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


def _format_address(address: Address | None) -> str | None:
    if address is None:
        return None
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
