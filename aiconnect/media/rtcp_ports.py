# -*- test-case-name: tests.media.test_relay,tests.media.test_relay_limits,tests.media.test_streams -*-
"""
The streams' RTCP ports (L{aiconnect.media.streams}).

  - L{_InboundRtcp}: the inbound stream's RTCP port: the SRC's sender
    reports are parsed and the last one kept.
  - L{_OutboundRtcp}: a forward stream's RTCP port: it sends our sender
    reports and parses the SRS's receiver reports into its stream.

Nothing is forwarded.  Each port is one C{DatagramProtocol}
(L{aiconnect.media.sockets.Endpoint}); RTCP multiplexed on the RTP port
reaches the same C{handle}.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiconnect.media.rtp import RtcpReceiverReport, RtcpSenderReport, parse_rtcp
from aiconnect.media.sockets import MAX_DATAGRAM, Address, Endpoint, normalize_address

if TYPE_CHECKING:
    from aiconnect.media.streams import InboundStream, OutboundStream


class _RtcpPort(Endpoint):
    """
    A stream's RTCP port: what both directions share.  A subclass checks
    the source in C{datagramReceived}, then calls L{_sized}; its C{handle}
    (also called for RTCP multiplexed on the RTP port) unprotects and calls
    L{_parse}.
    """

    def __init__(self, rtcp_port: int) -> None:
        super().__init__()
        self.port = rtcp_port
        self.packets_in = 0
        self.foreign = 0
        self.malformed = 0

    def _sized(self, data: bytes) -> None:
        # From the expected source: drop it whole if too long, else handle.
        if len(data) > MAX_DATAGRAM:
            self.oversize += 1
            return
        self.handle(data)

    def handle(self, data: bytes) -> None:
        """
        Process one (S)RTCP packet from the peer.
        """
        raise NotImplementedError

    def _parse(self, data: bytes) -> list[Any] | None:
        # The compound packet, counted; None (counted as malformed) if bad.
        try:
            packets = parse_rtcp(data)
        except ValueError:
            self.malformed += 1
            return None
        self.packets_in += 1
        return packets


class _InboundRtcp(_RtcpPort):
    """
    The inbound stream's RTCP port: source check, unprotect, parse, keep
    the SRC's last sender report.  Nothing is forwarded.
    """

    def __init__(self, stream: InboundStream) -> None:
        super().__init__(stream.rtcp_port)
        # A proxy: the stream owns this port, no reference cycle (a
        # finished call is freed without the cyclic collector).
        self.stream = weakref.proxy(stream)
        self.remote: Address | None = None
        self.latch_host: str | None = None
        self.latched = 0
        self.last_sr: dict[str, int] | None = None

    def configure(
        self, rtp_remote: Address | None, rtcp_remote: Address | None, latch_host: str | None
    ) -> None:
        rtcp_remote = normalize_address(rtcp_remote)
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
        self._sized(data)

    def handle(self, data: bytes) -> None:
        """
        Process one (S)RTCP packet from the SRC.
        """
        srtp = self.stream.srtp
        if srtp is not None:
            data = srtp.unprotect_rtcp(data)
            if data is None:
                return
        packets = self._parse(data)
        if packets is None:
            return
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


class _OutboundRtcp(_RtcpPort):
    """
    A forward stream's RTCP port: sends our SRs, parses the SRS's RRs.
    """

    def __init__(self, stream: OutboundStream, seconds: Callable[[], float]) -> None:
        super().__init__(stream.rtcp_port)
        # A proxy: the stream owns this port, no reference cycle (a
        # finished call is freed without the cyclic collector).
        self.stream = weakref.proxy(stream)
        self._seconds = seconds

    def datagramReceived(self, data: bytes, addr: Address) -> None:
        remote = self.stream.remote
        if remote is None or addr[0] != remote[0]:
            self.foreign += 1
            return
        self._sized(data)

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
        packets = self._parse(data)
        if packets is None:
            return
        now = self._seconds()
        for p in packets:
            if isinstance(p, (RtcpReceiverReport, RtcpSenderReport)):
                for block in p.reports:
                    if block.ssrc == stream.ssrc:
                        stream.receiver_report_received(block, now)
