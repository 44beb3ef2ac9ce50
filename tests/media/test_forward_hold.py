"""
Tests for L{aiconnect.media.sessions.ForwardMedia.hold}: a stream held
apart from the pause (the SRS's C{a=inactive}, a lost SRS: SPEC s13) keeps
its SSRC and numbering, also when it is reconnected to another SRS.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.media.rtp import RtpPacket
from tests.fakes import UdpSocket, rtp_packet
from tests.media.test_relay import SRC, SRC2, RelayTestMixin

PMAP = {0: "PCMU", 8: "PCMA"}


def payload(k: int) -> bytes:
    """
    Packet C{k}'s 160 codes.
    """
    return bytes((k * 160 + i) % 256 for i in range(160))


class HoldTests(RelayTestMixin, SynchronousTestCase):
    """
    L{ForwardMedia.hold}.
    """

    def setUp(self) -> None:
        relay, _ = self.make_relay()
        self.session = relay.allocate_session(2)
        self.session.set_inbound(0, remote=SRC, payload_map=PMAP)
        self.session.set_inbound(1, remote=SRC2, payload_map=PMAP)
        self.forward = self.session.add_forward("f", 2)
        self.srs = [UdpSocket(self), UdpSocket(self)]
        for i in range(2):
            self.forward.connect(i, self.srs[i].address, codec="PCMU", payload_type=0)

    def send(self, stream: int, ks: range) -> None:
        inbound = self.session.streams[stream]
        for k in ks:
            inbound.datagramReceived(rtp_packet(100 + k, 5000 + 160 * k, 0xA + stream, 0, payload(k)), (SRC, SRC2)[stream])

    def test_held_stream_silent_other_flows(self) -> None:
        """
        A held stream sends nothing while the forward's other stream goes
        on; released, it goes on with the next sequence number, the same
        SSRC, the timestamp advanced by the time held.
        """
        self.send(0, range(3))
        before = [RtpPacket.parse(d) for d in self.srs[0].read()]
        self.forward.hold(0, True, 10.0)
        self.send(0, range(3, 10))
        self.send(1, range(2))
        self.assertEqual(self.srs[0].read(), [])
        self.assertEqual(len(self.srs[1].read()), 2)
        self.forward.hold(0, False, 11.0)  # 50 frames
        self.send(0, range(10, 12))
        after = [RtpPacket.parse(d) for d in self.srs[0].read()]
        self.assertEqual([p.sequence_number for p in after], [before[-1].sequence_number + 1 + i for i in range(2)])
        self.assertEqual({p.ssrc for p in before + after}, {before[0].ssrc})
        self.assertEqual(after[0].timestamp, (before[-1].timestamp + 160 + 50 * 160) & 0xFFFFFFFF)
        self.assertEqual([p.payload for p in after], [payload(10), payload(11)])

    def test_reconnected_while_held(self) -> None:
        """
        Held, reconnected to another SRS, released: the new SRS gets the
        next sequence number of the old one's stream, same SSRC.
        """
        self.send(0, range(3))
        before = [RtpPacket.parse(d) for d in self.srs[0].read()]
        self.forward.hold(0, True, 10.0)
        other = UdpSocket(self)
        self.forward.connect(0, other.address, codec="PCMU", payload_type=0)
        self.send(0, range(3, 5))
        self.assertEqual(other.read(), [])
        self.forward.hold(0, False, 10.0)
        self.send(0, range(5, 7))
        after = [RtpPacket.parse(d) for d in other.read()]
        self.assertEqual([p.sequence_number for p in after], [before[-1].sequence_number + 1, before[-1].sequence_number + 2])
        self.assertEqual(after[0].ssrc, before[0].ssrc)
        self.assertEqual(self.srs[0].read(), [])

    def test_resume_keeps_held_streams_silent(self) -> None:
        """
        A pause and resume of the forward does not release a held stream;
        releasing it while paused sends nothing until the resume.
        """
        self.forward.hold(0, True, 1.0)
        self.forward.pause(2.0)
        self.forward.resume(3.0)
        self.send(0, range(2))
        self.assertEqual(self.srs[0].read(), [])
        self.forward.pause(4.0)
        self.forward.hold(0, False, 5.0)
        self.send(0, range(2, 4))
        self.assertEqual(self.srs[0].read(), [])
        self.forward.resume(6.0)
        self.send(0, range(4, 6))
        self.assertEqual(len(self.srs[0].read()), 2)
