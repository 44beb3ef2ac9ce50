"""
Tests for L{aiconnect.media.streams}: what an inbound or outbound stream
keeps across a renegotiation.

Same setting as L{tests.media.test_relay} (a fake clock, real loopback
sockets, datagrams fed to C{datagramReceived}), whose fan-out and drop
tests cover the per-packet path.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.media.rtp import RtpPacket
from aiconnect.media.srtp import SrtpContext, SrtpParams
from tests.fakes import rtp_packet
from tests.media.test_relay import SRC, SRC2, RelayTestMixin


class SourceSwitchTests(RelayTestMixin, SynchronousTestCase):
    """
    An SRS re-INVITE moving a forward stream to another inbound stream
    (C{connect(..., source=)}).
    """

    def test_numbering_continues(self) -> None:
        """
        The outbound stream keeps its SSRC, its next sequence number follows
        the last one and its timestamp advances by one frame, with the
        marker bit; it stops relaying the old source.
        """
        relay, _ = self.make_relay()
        session, sinks = self.call(relay)
        inbound = session.streams
        inbound[0].datagramReceived(rtp_packet(1, 160, 5, 8), SRC)
        inbound[0].datagramReceived(rtp_packet(2, 320, 5, 8), SRC)
        session.forwards["f1"].connect(0, sinks[0].address, codec="PCMA", payload_type=8, source=1)
        outbound = session.forwards["f1"].streams[0]
        self.assertNotIn(outbound, inbound[0].targets)
        self.assertIn(outbound, inbound[1].targets)
        inbound[0].datagramReceived(rtp_packet(3, 480, 5, 8), SRC)  # not relayed on sink 0 any more
        inbound[1].datagramReceived(rtp_packet(700, 90000, 0x99, 8), SRC2)
        a, b, c = [RtpPacket.parse(d) for d in sinks[0].read()]
        self.assertEqual({a.ssrc, b.ssrc, c.ssrc}, {outbound.ssrc})
        self.assertEqual((c.sequence_number - b.sequence_number) & 0xFFFF, 1)
        self.assertEqual((c.timestamp - b.timestamp) & 0xFFFFFFFF, 160)
        self.assertTrue(c.marker)
        self.assertEqual(len(sinks[1].read()), 1)  # forward stream 1 still has source 1


class InboundKeyChangeTests(RelayTestMixin, SynchronousTestCase):
    """
    A re-INVITE with a new inbound SRTP key.
    """

    def test_failures_kept(self) -> None:
        """
        The replaced context's failure counts stay in the stream's drops,
        and the new context's add to them.
        """
        relay, _ = self.make_relay()
        session, _ = self.call(relay)
        old, new = SrtpParams.generate(), SrtpParams.generate()
        session.set_inbound(0, remote=SRC, payload_map={8: "PCMA"}, srtp=old)
        packet = SrtpContext(old, outbound=True).protect(rtp_packet(1, 160, 5, 8))
        assert packet is not None
        forged = packet[:-1] + bytes([packet[-1] ^ 0xFF])
        stream = session.streams[0]
        stream.datagramReceived(forged, SRC)
        session.set_inbound(0, remote=SRC, payload_map={8: "PCMA"}, srtp=new)
        self.assertEqual(stream.drops()["srtp_auth"], 1)
        stream.datagramReceived(packet, SRC)  # the old key's packet: fails now
        self.assertEqual(session.stats()["streams"][0]["drops"]["srtp_auth"], 2)
        self.assertEqual(relay.stats()["drops"]["srtp_auth"], 2)
