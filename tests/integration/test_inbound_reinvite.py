# -*- test-case-name: tests.integration.test_inbound_reinvite -*-
"""
re-INVITEs from the SRC end to end (issue 3): new media, codec change, a
new stream, hold, and hold pausing the media timeout; and the pure rule
that assigns the relay's ports to an offer's m-lines. The harness is
L{tests.integration.scenario}.
"""

from __future__ import annotations

from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.sip.sdp import SessionDescription, parse_sdp
from aiconnect.siprec import srs as srs_mod
from tests.fakes import listen_udp, pause, rtp_packet, wait_until
from tests.integration.scenario import (
    ScenarioCase,
    _status,
    answer_of,
    multipart,
    parse_response,
    request,
)
from tests.integration.siprec_peer import DATA, sdp_offer


def _origin_version(sdp: SessionDescription) -> int:
    """
    The session version of an SDP's o= line.
    """
    return int(sdp.origin.sess_version)


def _update_levels(logs: list) -> list:
    """
    The levels of the "session updated" lines among captured log events.
    """
    return [e["log_level"] for e in logs if str(e.get("log_format", "")).startswith("session updated")]


class ReInviteTests(ScenarioCase):
    """
    re-INVITEs from the SRC: new media, codec change, a new stream, hold.
    """

    rtp_base = 24200

    async def test_new_media_and_codec(self) -> None:
        """
        A re-INVITE moving stream 1 to another remote port with PCMU instead
        of PCMA is answered 200 recvonly on the same local ports with the
        o= version incremented; RTP from the new port is counted and from
        the old port dropped as foreign.
        """
        self.start()
        src = self.src()
        old_a, port_a = listen_udp(self)
        _, port_b = listen_udp(self)
        new_a, port_a2 = listen_udp(self)
        ok, session_id = await src.call(sdp_offer([("96", port_a, 8), ("98", port_b, 8)]))
        first = answer_of(ok)
        ports = [m.port for m in first.media]
        for i in range(3):
            old_a.transport.write(rtp_packet(10 + i, 160 * i, 0xA, 8, b"\xd5" * 160), ("127.0.0.1", ports[0]))
        await wait_until(lambda: self._packets_are(session_id, [(3, 0), (0, 0)]))

        offer2 = sdp_offer([("96", port_a2, 0), ("98", port_b, 8)], version=2890844527)
        with capturedLogs() as changed_logs:
            resp = await src.in_dialog("INVITE", multipart(("application/sdp", offer2)), "multipart/mixed;boundary=foobar")
        self.assertEqual(_status(resp), 200)
        self.assertEqual(_update_levels(changed_logs), [LogLevel.info])
        second = parse_response(resp)
        self.assertTrue(second.contacts[0].has_param("+sip.srs"))
        answer2 = parse_sdp(second.body)
        self.assertEqual([m.port for m in answer2.media], ports)
        self.assertEqual([m.direction for m in answer2.media], ["recvonly", "recvonly"])
        self.assertEqual([m.label for m in answer2.media], ["96", "98"])
        self.assertEqual(answer2.media[0].rtpmap[0].encoding, "PCMU")
        self.assertEqual(_origin_version(answer2), _origin_version(first) + 1)
        self.assertEqual(answer2.origin.sess_id, first.origin.sess_id)
        body = await self.session(session_id)
        self.assertEqual((body["streams"][0]["codec"], body["streams"][0]["remote"]), ("PCMU", "127.0.0.1:%d" % port_a2))

        for i in range(4):
            new_a.transport.write(rtp_packet(20 + i, 160 * i, 0xB, 0, b"\xff" * 160), ("127.0.0.1", ports[0]))
        for i in range(2):
            old_a.transport.write(rtp_packet(30 + i, 160 * i, 0xA, 8, b"\xd5" * 160), ("127.0.0.1", ports[0]))
        await wait_until(lambda: self._packets_are(session_id, [(7, 2), (0, 0)]))

        # The same offer again: same answer, same version (RFC 3264 s8);
        # a refresh like this is logged at debug only (no line per SIP
        # message at info).
        with capturedLogs() as refresh_logs:
            resp = await src.in_dialog("INVITE", offer2, "application/sdp")
        self.assertEqual(_origin_version(answer_of(resp)), _origin_version(answer2))
        self.assertEqual(_update_levels(refresh_logs), [LogLevel.debug])
        await src.bye()

    async def _packets_are(self, session_id: str, expected: list[tuple[int, int]]) -> bool:
        return await self.packets(session_id) == expected

    async def test_new_stream_beyond_first_offer(self) -> None:
        """
        A re-INVITE adding a third stream (RFC 7866 s7.1.1.1) gets it its own
        even port, after the first two, the two others unchanged; RTP sent
        to it is counted in the session's media stats.  An m-line added
        while another is disabled (port 0) in the same offer takes the
        disabled one's port.
        """
        self.start()
        src = self.src()
        _, pa = listen_udp(self)
        _, pb = listen_udp(self)
        rtp_c, pc = listen_udp(self)
        _, pd = listen_udp(self)
        ok, session_id = await src.call(sdp_offer([("96", pa, 8), ("98", pb, 8)]))
        ports = [m.port for m in answer_of(ok).media]

        offer = sdp_offer([("96", pa, 8), ("98", pb, 8), ("99", pc, 8)], version=2890844527)
        resp = await src.in_dialog("INVITE", multipart(("application/sdp", offer)), "multipart/mixed;boundary=foobar")
        self.assertEqual(_status(resp), 200)
        answer = answer_of(resp)
        third = answer.media[2].port
        self.assertEqual([m.port for m in answer.media], ports + [ports[1] + 2])
        self.assertEqual(third % 2, 0)
        self.assertEqual([m.label for m in answer.media], ["96", "98", "99"])
        self.assertEqual([m.direction for m in answer.media], ["recvonly"] * 3)
        for i in range(3):
            rtp_c.transport.write(rtp_packet(i, 160 * i, 0xC, 8, b"\xd5" * 160), ("127.0.0.1", third))
        await wait_until(lambda: self._packets_are(session_id, [(0, 0), (0, 0), (3, 0)]))
        body = await self.session(session_id)
        self.assertEqual(
            [(s["label"], s["localPort"]) for s in body["streams"]],
            [("96", ports[0]), ("98", ports[1]), ("99", third)],
        )

        # RFC 7866 s7.1.1.1: stream 98 removed (port 0), 100 added.
        offer = sdp_offer([("96", pa, 8), ("98", pb, 8), ("99", pc, 8), ("100", pd, 8)], version=2890844528)
        offer = offer.replace(b"m=audio %d " % pb, b"m=audio 0 ")
        resp = await src.in_dialog("INVITE", offer, "application/sdp")
        self.assertEqual(_status(resp), 200)
        answer = answer_of(resp)
        self.assertEqual([m.port for m in answer.media], [ports[0], 0, third, ports[1]])
        self.assertEqual([m.label for m in answer.media], ["96", "98", "99", "100"])
        body = await self.session(session_id)
        self.assertEqual(
            [(s["label"], s["localPort"]) for s in body["streams"]],
            [("96", ports[0]), ("99", third), ("100", ports[1])],
        )
        await src.bye()

    async def test_new_stream_ports_exhausted(self) -> None:
        """
        When the port range cannot hold every stream a re-INVITE adds, the
        first added streams get ports while they last, the rest port 0, and
        the re-INVITE still succeeds with the other streams unchanged.
        """
        self.start(rtp_pairs=3)
        src = self.src()
        socks = [listen_udp(self) for _ in range(4)]
        ok, session_id = await src.call(sdp_offer([("96", socks[0][1], 8), ("98", socks[1][1], 8)]))
        ports = [m.port for m in answer_of(ok).media]

        offer = sdp_offer([(label, sock[1], 8) for label, sock in zip(("96", "98", "99", "100"), socks)], version=2890844527)
        resp = await src.in_dialog("INVITE", offer, "application/sdp")
        self.assertEqual(_status(resp), 200)
        answer = answer_of(resp)
        self.assertEqual([m.port for m in answer.media], ports + [self.rtp_base + 4, 0])
        self.assertEqual([m.label for m in answer.media], ["96", "98", "99", "100"])

        # The range is full now: a fifth stream gets port 0 as well.
        offer = sdp_offer(
            [(label, sock[1], 8) for label, sock in zip(("96", "98", "99", "100"), socks)] + [("101", socks[3][1], 8)],
            version=2890844528,
        )
        resp = await src.in_dialog("INVITE", offer, "application/sdp")
        self.assertEqual(_status(resp), 200)
        self.assertEqual([m.port for m in answer_of(resp).media], ports + [self.rtp_base + 4, 0, 0])
        body = await self.session(session_id)
        self.assertEqual([s["label"] for s in body["streams"]], ["96", "98", "99"])
        self.assertEqual(len(body["media"]["streams"]), 3)
        await src.bye()

    async def test_hold(self) -> None:
        """
        A re-INVITE putting the streams on hold (C{a=inactive}, with and
        without C{c=0.0.0.0}) is answered C{a=inactive}; resuming with
        C{a=sendonly} is answered C{a=recvonly} again.
        """
        self.start()
        src = self.src()
        _, pa = listen_udp(self)
        _, pb = listen_udp(self)
        offer = sdp_offer([("96", pa, 8), ("98", pb, 8)])
        ok, session_id = await src.call(offer)
        ports = [m.port for m in answer_of(ok).media]
        version = _origin_version(answer_of(ok))

        held = offer.replace(b"a=sendonly", b"a=inactive").replace(b"2890844526 2890844526", b"2890844526 2890844527")
        resp = await src.in_dialog("INVITE", held, "application/sdp")
        self.assertEqual(_status(resp), 200)
        answer = answer_of(resp)
        self.assertEqual([m.direction for m in answer.media], ["inactive", "inactive"])
        self.assertEqual([m.port for m in answer.media], ports)
        self.assertEqual(_origin_version(answer), version + 1)

        old_style = held.replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 0.0.0.0").replace(b"2890844527", b"2890844528")
        resp = await src.in_dialog("INVITE", old_style, "application/sdp")
        self.assertEqual(_status(resp), 200)
        self.assertEqual([m.direction for m in answer_of(resp).media], ["inactive", "inactive"])
        body = await self.session(session_id)
        self.assertEqual([s["direction"] for s in body["streams"]], ["inactive", "inactive"])
        self.assertEqual([s["remote"] for s in body["streams"]], [None, None])
        self.assertEqual(body["state"], "active")

        resumed = offer.replace(b"2890844526 2890844526", b"2890844526 2890844529")
        resp = await src.in_dialog("INVITE", resumed, "application/sdp")
        self.assertEqual([m.direction for m in answer_of(resp).media], ["recvonly", "recvonly"])
        body = await self.session(session_id)
        self.assertEqual([s["remote"] for s in body["streams"]], ["127.0.0.1:%d" % pa, "127.0.0.1:%d" % pb])
        await src.bye()

    async def test_metadata_in_reinvite(self) -> None:
        """
        A re-INVITE carrying SDP and an RFC 8068 partial metadata update
        (Carol replaces Alice) updates the session's participants.
        """
        self.start()
        src = self.src()
        _, pa = listen_udp(self)
        _, pb = listen_udp(self)
        offer = sdp_offer([("96", pa, 8), ("98", pb, 8)])
        _, session_id = await src.call(offer)
        update = (DATA / "rfc8068-s3.2.3-1-metadata.xml").read_bytes()
        body = multipart(("application/sdp", offer), ("application/rs-metadata", update))
        resp = await src.in_dialog("INVITE", body, "multipart/mixed;boundary=foobar")
        self.assertEqual(_status(resp), 200)
        names = [p["name"] for p in (await self.session(session_id))["participants"]]
        self.assertEqual(names, ["Alice", "Bob", "Carol"])
        await src.bye()


class HoldMediaTimeoutTests(ScenarioCase):
    """
    A held session is not ended by the media timeout; a silent one is.
    """

    rtp_base = 24800

    async def test_hold_pauses_media_timeout(self) -> None:
        """
        With C{media_timeout = 1}, a session on hold (C{a=inactive}) for 2.5 s
        stays up; after it resumes and the SRC stays silent, the service
        sends BYE and reports SESSIONCOMPLETED "mediaTimeout".
        """
        self.start(rtp="media_timeout = 1.0\n")
        src = self.src()
        rtp_a, pa = listen_udp(self)
        offer = sdp_offer([("96", pa, 8)])
        ok, session_id = await src.call(offer)
        port = answer_of(ok).media[0].port
        held = offer.replace(b"a=sendonly", b"a=inactive").replace(b"2890844526 2890844526", b"2890844526 2890844527")
        resp = await src.in_dialog("INVITE", held, "application/sdp")
        self.assertEqual([m.direction for m in answer_of(resp).media], ["inactive"])
        await pause(2.5)
        self.assertEqual((await self.session(session_id))["state"], "active")
        self.assertEqual(src.matching(request("BYE")), [])

        resumed = offer.replace(b"2890844526 2890844526", b"2890844526 2890844528")
        resp = await src.in_dialog("INVITE", resumed, "application/sdp")
        self.assertEqual([m.direction for m in answer_of(resp).media], ["recvonly"])
        rtp_a.transport.write(rtp_packet(1, 0, 0xC, 8, b"\xd5" * 160), ("127.0.0.1", port))
        self.assertEqual((await self.session(session_id))["state"], "active")
        bye = await src.take(request("BYE"), timeout=5)
        src.answer(bye)
        events = await self.events_for(session_id, 2)
        self.assertEqual([e["event"] for e in events], ["SESSIONSTARTED", "SESSIONCOMPLETED"])
        self.assertEqual(events[1]["reason"], "mediaTimeout")


class AssignRelayStreamsTests(SynchronousTestCase):
    """
    L{srs_mod.assign_relay_streams}: which of our ports each m-line of an
    offer gets (the pure rule behind L{ReInviteTests}).
    """

    def test_first_offer(self) -> None:
        """
        A first offer takes the relay streams in order, rejected m-lines none.
        """
        self.assertEqual(srs_mod.assign_relay_streams([True, False, True], [], 2), [0, None, 1])

    def test_kept(self) -> None:
        """
        A re-offer keeps each m-line on its relay stream; new m-lines beyond
        them get the next indices, relay streams the caller adds.
        """
        self.assertEqual(srs_mod.assign_relay_streams([True, True, True], [0, 1], 2), [0, 1, 2])
        self.assertEqual(srs_mod.assign_relay_streams([True, False, True, True], [0, 1], 2), [0, None, 1, 2])

    def test_disabled_stream_frees_its_port(self) -> None:
        """
        An m-line disabled in the same offer frees its relay stream for an
        added m-line, even when the added one comes first.
        """
        self.assertEqual(srs_mod.assign_relay_streams([True, False, True], [0, 1], 2), [0, None, 1])
        self.assertEqual(srs_mod.assign_relay_streams([False, True, True], [None, 0, 1], 3), [None, 0, 1])
        self.assertEqual(srs_mod.assign_relay_streams([True, True, False], [None, 0, 1], 2), [1, 0, None])
        self.assertEqual(srs_mod.assign_relay_streams([True, False, True, True], [0, 1, 2], 3), [0, None, 2, 1])
