"""
Tests for L{aiconnect.siprec.forward_rules}: which streams of a forward
get RTP, our answer to the SRS's own offer, and stable metadata ids
(SPEC s13).  Pure.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.legs import StreamInfo
from aiconnect.sip.sdp import Origin, OfferStream, build_src_offer, parse_sdp
from aiconnect.siprec.forward_rules import StableIds, answer_directions, held_streams, inbound_sending

THEIRS = (
    b"v=0\r\no=SRS 0 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 7000 RTP/AVP 8\r\na=%s\r\nm=audio 7002 RTP/AVP 8\r\na=%s\r\n"
)


class RulesTests(SynchronousTestCase):
    """
    The pure rules behind SPEC s13's directions and failover.
    """

    def test_inbound_sending(self) -> None:
        """
        A forwarded stream is sent when its inbound stream has a port and
        the SRC sends it (sendonly, sendrecv); a hold (inactive, recvonly)
        or a gone stream is not.
        """
        streams = [
            StreamInfo(0, "1", "PCMA", 8, 20000, None, "sendonly", relay_index=0),
            StreamInfo(1, "2", "PCMA", 8, 20002, None, "inactive", relay_index=1),
            StreamInfo(2, "3", "PCMA", 8, 20004, None, "recvonly", relay_index=2),
            StreamInfo(3, "4", "PCMA", 8, 0, None, "sendonly", relay_index=3),
            StreamInfo(4, "5", "PCMA", 8, 20008, None, "sendrecv"),
        ]
        self.assertEqual(inbound_sending(streams, [0, 1, 2, 3, 4, 9]), [True, False, False, False, True, False])

    def test_held_streams(self) -> None:
        """
        All streams are held while the SRS is lost; else those offered
        inactive and those the SRS will not receive.
        """
        self.assertEqual(held_streams(3, True, [True] * 3, {}), {0, 1, 2})
        self.assertEqual(held_streams(3, False, [True, False], {2: False, 0: True}), {1, 2})
        self.assertEqual(held_streams(2, False, [], {}), set())

    def test_answer_directions(self) -> None:
        """
        RFC 3264 s6.1: to an SRS offering recvonly we answer sendonly; to
        inactive (or sendonly: it will not receive), inactive; a paused
        forward or a held inbound stream answers inactive.
        """
        ours = build_src_offer(
            [OfferStream("1", 30000, (), "sendonly"), OfferStream("2", 30002, (), "sendonly")],
            origin=Origin.new("127.0.0.1"),
            address="127.0.0.1",
        )
        theirs = parse_sdp(THEIRS % (b"recvonly", b"inactive"))
        receives = {0: True, 1: False}
        got = answer_directions(ours, theirs, receives, [True, True], paused=False)
        self.assertEqual([m.direction for m in got.media], ["sendonly", "inactive"])
        self.assertEqual([m.port for m in got.media], [30000, 30002])
        got = answer_directions(ours, theirs, {0: True, 1: True}, [False, True], paused=False)
        self.assertEqual([m.direction for m in got.media], ["inactive", "sendonly"])
        got = answer_directions(ours, theirs, {0: True, 1: True}, [True, True], paused=True)
        self.assertEqual([m.direction for m in got.media], ["inactive", "inactive"])

    def test_stable_ids(self) -> None:
        """
        Each build gets the ids of the first build in the same order, and
        fresh ones beyond.
        """
        made = iter("abcdef")
        ids = StableIds(lambda: next(made))
        first = ids.factory()
        self.assertEqual([first(), first()], ["a", "b"])
        second = ids.factory()
        self.assertEqual([second(), second(), second()], ["a", "b", "c"])
