"""
Tests for G.722 and Opus through the relay (L{aiconnect.media.streams}
with L{aiconnect.media.decoders}): what the SRS gets is the G.711
encoding (by L{aiconnect.media.g711}) of the PCM PyAV decodes, octet for
octet, 160 samples per packet with continuous numbering; the PCM tap gets
the same samples.  Same setting as L{tests.media.test_relay}: a fake
clock, real loopback sockets, datagrams fed to C{datagramReceived}.
"""

from __future__ import annotations

from array import array

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.media.decoders import FRAME
from aiconnect.media.g711 import alaw_encode, ulaw_encode
from aiconnect.media.pcm import FRAME_SECONDS
from aiconnect.media.relay import MediaSession
from aiconnect.media.rtp import RtpPacket
from tests.fakes import UdpSocket, rtp_packet
from tests.media.codec_helpers import encode, reference_pcm
from tests.media.test_relay import SRC, RelayTestMixin
from tests.media.test_relay_pcm import FrameList

PORTS = {"port_min": 22600, "port_max": 22699}
G722_PT = 9
OPUS_PT = 111


def frames_of(samples: array[int]) -> list[array[int]]:
    """
    C{samples} cut into whole 160-sample frames.
    """
    return [samples[i : i + FRAME] for i in range(0, len(samples) - FRAME + 1, FRAME)]


class DecodedRelayTests(RelayTestMixin, SynchronousTestCase):
    """
    An inbound G.722 or Opus stream relayed to PCMA and PCMU forwards.
    """

    def session(self, kind: str, pt: int) -> tuple[MediaSession, list[UdpSocket]]:
        relay, self.clock = self.make_relay(**PORTS)
        session = relay.allocate_session(1)
        session.set_inbound(0, remote=SRC, payload_map={pt: kind, 101: "telephone-event"})
        sinks = [UdpSocket(self), UdpSocket(self)]
        for forward_id, sink, codec, out_pt in (("a", sinks[0], "PCMA", 8), ("u", sinks[1], "PCMU", 0)):
            forward = session.add_forward(forward_id, 1)
            forward.connect(0, sink.address, codec=codec, payload_type=out_pt, dtmf_payload_type=96)
        return session, sinks

    def send(self, session: MediaSession, payloads: list[bytes], pt: int, step: int, ts: int = 5000) -> None:
        for n, payload in enumerate(payloads):
            session.streams[0].datagramReceived(rtp_packet(100 + n, ts + n * step, 0x1234, pt, payload), SRC)
            self.clock.advance(FRAME_SECONDS)

    def check_forwarded(self, sinks: list[UdpSocket], reference: array[int]) -> None:
        expected = frames_of(reference)
        for sink, out_pt, encoder in ((sinks[0], 8, alaw_encode), (sinks[1], 0, ulaw_encode)):
            packets = [RtpPacket.parse(d) for d in sink.read()]
            self.assertEqual([p.payload for p in packets], [encoder(f) for f in expected])
            self.assertEqual({p.payload_type for p in packets}, {out_pt})
            seqs = [p.sequence_number for p in packets]
            self.assertEqual([(b - a) & 0xFFFF for a, b in zip(seqs, seqs[1:])], [1] * (len(seqs) - 1))
            stamps = [p.timestamp for p in packets]
            self.assertEqual([(b - a) & 0xFFFFFFFF for a, b in zip(stamps, stamps[1:])], [FRAME] * (len(stamps) - 1))
            self.assertTrue(packets[0].marker)

    def test_g722_to_g711(self) -> None:
        """
        G.722 packets reach a PCMA and a PCMU forward as the A-law and
        mu-law encodings of the decoded PCM, 20 ms per packet.
        """
        session, sinks = self.session("G722", G722_PT)
        payloads = encode("G722", 8)
        self.send(session, payloads, G722_PT, 160)
        self.check_forwarded(sinks, reference_pcm("G722", payloads))
        self.assertEqual(session.stats()["streams"][0]["decoder"]["frames"], 7)

    def test_opus_60ms_to_g711(self) -> None:
        """
        Opus packets of 60 ms become three 20 ms G.711 packets each, with
        continuous sequence numbers and 8 kHz timestamps.
        """
        session, sinks = self.session("opus", OPUS_PT)
        payloads = encode("opus", 4, 60)
        self.send(session, payloads, OPUS_PT, 2880)
        self.check_forwarded(sinks, reference_pcm("opus", payloads))

    def test_events_in_numbering(self) -> None:
        """
        A telephone-event packet between G.722 packets reaches the forward
        with its DTMF payload type, untouched, next in the sequence and at
        the same timestamp as the audio it interrupts.
        """
        session, sinks = self.session("G722", G722_PT)
        payloads = encode("G722", 3)
        self.send(session, payloads[:2], G722_PT, 160)
        event = bytes([1, 0x0A, 0, 160])
        session.streams[0].datagramReceived(rtp_packet(102, 5320, 0x1234, 101, event, marker=True), SRC)
        packets = [RtpPacket.parse(d) for d in sinks[0].read()]
        audio, dtmf = packets[0], packets[-1]
        self.assertEqual((dtmf.payload_type, dtmf.payload, dtmf.marker), (96, event, True))
        self.assertEqual((dtmf.sequence_number - audio.sequence_number) & 0xFFFF, len(packets) - 1)
        self.assertEqual((dtmf.timestamp - audio.timestamp) & 0xFFFFFFFF, 320)
        self.assertEqual(dtmf.ssrc, audio.ssrc)

    def test_pcm_tap(self) -> None:
        """
        The PCM tap gets the decoded samples, the same PyAV gives.
        """
        session, _ = self.session("opus", OPUS_PT)
        sink = FrameList()
        session.attach_pcm(sink)
        payloads = encode("opus", 10, 20)
        self.send(session, payloads, OPUS_PT, 960)
        for _ in range(10):
            self.clock.advance(FRAME_SECONDS)
        heard = array("h")
        for frame in sink.frames:
            heard.extend(frame.streams[0])
        expected = array("h")
        for f in frames_of(reference_pcm("opus", payloads)):
            expected.extend(f)
        self.assertIn(expected.tobytes(), heard.tobytes())
        self.assertEqual(session.pcm.stats()["packets"], 9)

    def test_garbage_counted(self) -> None:
        """
        Garbage on a G.722/Opus stream never raises: it is counted in the
        stream's decoder stats, and nothing is forwarded.
        """
        session, sinks = self.session("opus", OPUS_PT)
        self.send(session, [b"\x7b\x82\xff", b"\xff\xff\xfe" * 10, b""], OPUS_PT, 960)
        decoder = session.stats()["streams"][0]["decoder"]
        self.assertEqual((decoder["decode_errors"], decoder["oversize"]), (2, 1))
        self.assertEqual(sinks[0].read(), [])


class DecoderLifecycleTests(RelayTestMixin, SynchronousTestCase):
    """
    One decoder per inbound stream, from its payload map.
    """

    def test_created_kept_replaced_released(self) -> None:
        """
        The decoder appears with a G.722/Opus map, stays across a re-INVITE
        with the same codec, is replaced when the codec changes, goes with
        a G.711 map and when the session closes.
        """
        relay, _ = self.make_relay(**PORTS)
        session = relay.allocate_session(1)
        stream = session.streams[0]
        self.assertIsNone(stream.decoder)
        session.set_inbound(0, remote=SRC, payload_map={9: "G722"})
        first = stream.decoder
        self.assertEqual(first.kind, "G722")
        session.set_inbound(0, remote=SRC, payload_map={9: "G722", 101: "telephone-event"})
        self.assertIs(stream.decoder, first)
        session.set_inbound(0, remote=SRC, payload_map={111: "opus"})
        self.assertEqual(stream.decoder.kind, "opus")
        session.set_inbound(0, remote=SRC, payload_map={8: "PCMA"})
        self.assertIsNone(stream.decoder)
        session.set_inbound(0, remote=SRC, payload_map={9: "G722"})
        session.close()
        self.assertIsNone(stream.decoder)

    def test_codec_change_continuous(self) -> None:
        """
        A re-INVITE switching the stream from PCMA to G.722 and back: the
        forward's numbering goes on (next sequence number, timestamp
        advanced by the wall-clock gap in frames, marker bit), as on an
        SSRC change, which is not counted as one.
        """
        relay, clock = self.make_relay(**PORTS)
        session = relay.allocate_session(1)
        session.set_inbound(0, remote=SRC, payload_map={8: "PCMA"})
        sink = UdpSocket(self)
        session.add_forward("f", 1).connect(0, sink.address, codec="PCMA", payload_type=8)
        stream = session.streams[0]
        stream.datagramReceived(rtp_packet(7000, 90000, 0x42, 8, bytes(160)), SRC)
        clock.advance(FRAME_SECONDS)
        session.set_inbound(0, remote=SRC, payload_map={9: "G722"})
        for n, payload in enumerate(encode("G722", 3)):
            stream.datagramReceived(rtp_packet(7001 + n, 90160 + 160 * n, 0x42, 9, payload), SRC)
            clock.advance(FRAME_SECONDS)
        session.set_inbound(0, remote=SRC, payload_map={8: "PCMA"})
        stream.datagramReceived(rtp_packet(7004, 90640, 0x42, 8, bytes(160)), SRC)
        packets = [RtpPacket.parse(d) for d in sink.read()]
        self.assertEqual(len(packets), 4)  # 1 PCMA, 2 frames of G.722, 1 PCMA
        seqs = [p.sequence_number for p in packets]
        self.assertEqual([(s - seqs[0]) & 0xFFFF for s in seqs], [0, 1, 2, 3])
        stamps = [(p.timestamp - packets[0].timestamp) & 0xFFFFFFFF for p in packets]
        self.assertEqual(stamps, [0, 320, 480, 640])  # the first frame needs two packets
        self.assertEqual([p.marker for p in packets], [True, True, False, True])
        self.assertEqual(stream.ssrc_changes, 0)

    def test_one_decoded_codec_alone(self) -> None:
        """
        A payload map naming two decoded codecs, or one with G.711, is
        refused (the SDP layer answers one codec).
        """
        relay, _ = self.make_relay(**PORTS)
        session = relay.allocate_session(1)
        self.assertRaises(ValueError, session.set_inbound, 0, remote=SRC, payload_map={9: "G722", 111: "opus"})
        self.assertRaises(ValueError, session.set_inbound, 0, remote=SRC, payload_map={9: "G722", 8: "PCMA"})
