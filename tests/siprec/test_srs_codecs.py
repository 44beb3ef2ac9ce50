"""
Tests for the codec helpers of L{aiconnect.siprec.inbound}: what an offer's
stream hands the relay (its payload map: G.711, or the decoded G.722/Opus;
telephone-event, also on an undeclared payload type 101 as OpenSIPS and
rtpengine send it) and the codec newCall reports; then DTMF on an
undeclared 101 through the relay to an SRS that accepted telephone-event.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.media.rtp import RtpPacket
from aiconnect.siprec.inbound import _codec, _payload_map
from tests.fakes import UdpSocket, rtp_packet
from tests.media.test_relay import SRC, RelayTestMixin
from tests.sip.test_offer_answer_codecs import media

PORTS = {"port_min": 22600, "port_max": 22699}


class PayloadMapTests(SynchronousTestCase):
    """
    L{_payload_map} and L{_codec}.
    """

    def test_undeclared_101(self) -> None:
        """
        A stream that does not declare 101 gets 101 as telephone-event.
        """
        self.assertEqual(_payload_map(media("m=audio 5000 RTP/AVP 8 0")), {8: "PCMA", 0: "PCMU", 101: "telephone-event"})

    def test_101_declared_otherwise(self) -> None:
        """
        101 declared as another encoding is not DTMF (dropped as unknown).
        """
        pmap = _payload_map(media("m=audio 5000 RTP/AVP 8 101 96", "rtpmap:101 AMR/8000", "rtpmap:96 telephone-event/8000"))
        self.assertEqual(pmap, {8: "PCMA", 96: "telephone-event"})

    def test_decoded_codecs(self) -> None:
        """
        G.722 or Opus alone are mapped for decoding (Opus with its
        telephone-event at 48000); with G.711 offered too they are not.
        """
        self.assertEqual(_payload_map(media("m=audio 5000 RTP/AVP 9")), {9: "G722", 101: "telephone-event"})
        opus = media("m=audio 5000 RTP/AVP 111 110", "rtpmap:111 opus/48000/2", "rtpmap:110 telephone-event/48000")
        self.assertEqual(_payload_map(opus), {111: "opus", 110: "telephone-event", 101: "telephone-event"})
        both = media("m=audio 5000 RTP/AVP 111 0", "rtpmap:111 opus/48000/2")
        self.assertEqual(_payload_map(both), {0: "PCMU", 101: "telephone-event"})

    def test_codec_reported(self) -> None:
        """
        The codec newCall reports is the one answered, named as in CODECS.
        """
        self.assertEqual(_codec(media("m=audio 5000 RTP/AVP 9")), ("G722", 9))
        self.assertEqual(_codec(media("m=audio 5000 RTP/AVP 111", "rtpmap:111 OPUS/48000/2")), ("opus", 111))
        self.assertEqual(_codec(media("m=audio 5000 RTP/AVP 111 8", "rtpmap:111 opus/48000/2")), ("PCMA", 8))
        self.assertEqual(_codec(media("m=audio 5000 RTP/AVP 3")), (None, None))


class UndeclaredDtmfRelayTests(RelayTestMixin, SynchronousTestCase):
    """
    DTMF on an undeclared 101, through the relay configured from the offer.
    """

    def test_relayed_not_audio(self) -> None:
        """
        The event packets reach the SRS with its telephone-event payload
        type, our SSRC and the audio's rewritten numbering, payload
        untouched; the PCM tap does not take them as audio.
        """
        relay, _ = self.make_relay(**PORTS)
        session = relay.allocate_session(1)
        session.set_inbound(0, remote=SRC, payload_map=_payload_map(media("m=audio 5000 RTP/AVP 8")))
        session.attach_pcm(_Discard())
        sink = UdpSocket(self)
        session.add_forward("f", 1).connect(0, sink.address, codec="PCMA", payload_type=8, dtmf_payload_type=96)
        stream = session.streams[0]
        stream.datagramReceived(rtp_packet(10, 1600, 0x77, 8, b"\xd5" * 160), SRC)
        events = [bytes([5, 0x0A]) + (160 * n).to_bytes(2, "big") for n in (1, 2)] + [bytes([5, 0x8A, 1, 0xE0])]
        for n, event in enumerate(events):
            stream.datagramReceived(rtp_packet(11 + n, 1760, 0x77, 101, event, marker=n == 0), SRC)
        audio, *dtmf = [RtpPacket.parse(d) for d in sink.read()]
        self.assertEqual([p.payload for p in dtmf], events)
        self.assertEqual({p.payload_type for p in dtmf}, {96})
        self.assertEqual({p.ssrc for p in dtmf}, {audio.ssrc})
        self.assertEqual([(p.sequence_number - audio.sequence_number) & 0xFFFF for p in dtmf], [1, 2, 3])
        self.assertEqual({(p.timestamp - audio.timestamp) & 0xFFFFFFFF for p in dtmf}, {160})
        self.assertEqual([p.marker for p in dtmf], [True, False, False])
        self.assertEqual(session.pcm.stats()["packets"], 1)  # the audio only
        self.assertEqual(stream.drops()["unknown_payload_type"], 0)


class _Discard:
    """
    A PCM sink that drops every frame.
    """

    def pcm_frame(self, frame: object) -> None:
        """
        Drop C{frame}.
        """
