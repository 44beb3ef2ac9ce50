# -*- test-case-name: tests.integration.test_inbound_quirks -*-
"""
What real SRCs send, end to end (issue 3): part headers without a space,
inactive first offers, one to three streams, odd labels, missing metadata,
bare LF line ends. The harness is L{tests.integration.scenario}.
"""

from __future__ import annotations

from typing import Any

from tests.fakes import listen_udp, rtp_packet, wait_until
from tests.integration.scenario import (
    METADATA,
    ScenarioCase,
    Src,
    _status,
    answer_of,
    parse_response,
    relabel,
)
from tests.integration.siprec_peer import sdp_offer


class QuirkTests(ScenarioCase):
    """
    What real SRCs send.
    """

    rtp_base = 24600

    async def _answered(self, offer: bytes, labels: list[str], **kw: Any) -> tuple[bytes, str, Src]:
        src = self.src()
        ok, session_id = await src.call(offer, **kw)
        answer = answer_of(ok)
        self.assertEqual([m.label for m in answer.media], labels)
        self.assertTrue(parse_response(ok).contacts[0].has_param("+sip.srs"))
        return ok, session_id, src

    async def test_part_headers_without_space(self) -> None:
        """
        MIME part headers written C{Content-Type:application/SDP} (no space
        after the colon, upper-case subtype as in RFC 8068's examples) are
        understood: SDP answered, metadata parsed.
        """
        self.start()
        _, pa = listen_udp(self)
        _, pb = listen_udp(self)

        def squeeze(invite: bytes) -> bytes:
            head, _, body = invite.partition(b"\r\n\r\n")
            body = body.replace(b"Content-Type: ", b"Content-Type:").replace(b"Content-Disposition: ", b"Content-Disposition:")
            body = body.replace(b"Content-Type:application/sdp", b"Content-Type:application/SDP")
            assert b"Content-Type:application/SDP\r\n" in body and b": " not in body.split(b"<?xml")[0]
            return head + b"\r\n\r\n" + body

        ok, session_id, src = await self._answered(sdp_offer([("96", pa, 8), ("98", pb, 0)]), ["96", "98"], edit=squeeze)
        self.assertEqual([m.direction for m in answer_of(ok).media], ["recvonly", "recvonly"])
        self.assertEqual(sorted(p["name"] for p in self.app.new_calls[0]["participants"]), ["Alice", "Bob"])
        self.assertIsNone(self.app.new_calls[0]["metadataError"])
        await src.bye()

    async def test_inactive_first_invite(self) -> None:
        """
        An initial offer with C{a=inactive} is answered C{a=inactive} (RFC 3264
        s6.1) and the session is created.
        """
        self.start()
        _, pa = listen_udp(self)
        _, pb = listen_udp(self)
        offer = sdp_offer([("96", pa, 8), ("98", pb, 8)]).replace(b"a=sendonly", b"a=inactive")
        ok, session_id, src = await self._answered(offer, ["96", "98"])
        self.assertEqual([m.direction for m in answer_of(ok).media], ["inactive", "inactive"])
        body = await self.session(session_id)
        self.assertEqual(body["state"], "active")
        self.assertEqual([s["direction"] for s in body["streams"]], ["inactive", "inactive"])
        await src.bye()

    async def test_one_stream(self) -> None:
        """
        A single mixed stream is answered and its RTP counted.
        """
        self.start()
        rtp, pa = listen_udp(self)
        ok, session_id, src = await self._answered(sdp_offer([("96", pa, 0)]), ["96"])
        port = answer_of(ok).media[0].port
        for i in range(3):
            rtp.transport.write(rtp_packet(i, 160 * i, 0x1, 0, b"\xff" * 160), ("127.0.0.1", port))
        await wait_until(lambda: self._counted(session_id, [3]))
        await src.bye()

    async def _counted(self, session_id: str, expected: list[int]) -> bool:
        return [p for p, _ in await self.packets(session_id)] == expected

    async def test_three_streams(self) -> None:
        """
        Three streams get three distinct even ports, each recvonly, each
        counting its own RTP.
        """
        self.start()
        socks = [listen_udp(self) for _ in range(3)]
        offer = sdp_offer([("96", socks[0][1], 8), ("97", socks[1][1], 8), ("98", socks[2][1], 0)])
        ok, session_id, src = await self._answered(offer, ["96", "97", "98"])
        answer = answer_of(ok)
        ports = [m.port for m in answer.media]
        self.assertEqual(len(set(ports)), 3)
        self.assertTrue(all(p % 2 == 0 for p in ports))
        self.assertEqual([m.direction for m in answer.media], ["recvonly"] * 3)
        for n, ((sock, _), port, pt) in enumerate(zip(socks, ports, (8, 8, 0))):
            for i in range(n + 1):
                sock.transport.write(rtp_packet(i, 160 * i, 0x10 + n, pt, b"\xd5" * 160), ("127.0.0.1", port))
        await wait_until(lambda: self._counted(session_id, [1, 2, 3]))
        await src.bye()

    async def test_labels_other_than_numbers(self) -> None:
        """
        Labels "leg-a" and "42" are kept in the answer and bound to the
        metadata streams of the same labels.
        """
        self.start()
        _, pa = listen_udp(self)
        _, pb = listen_udp(self)
        metadata = relabel(METADATA, {"96": "leg-a", "98": "42"})
        ok, session_id, src = await self._answered(sdp_offer([("leg-a", pa, 8), ("42", pb, 8)]), ["leg-a", "42"], metadata=metadata)
        nc = self.app.new_calls[0]
        self.assertEqual([s["label"] for s in nc["streams"]], ["leg-a", "42"])
        self.assertEqual([s["participants"] for s in nc["streams"]], [["Alice"], ["Bob"]])
        alice = [p for p in nc["participants"] if p["name"] == "Alice"][0]
        self.assertIn("leg-a", alice["send"])
        await src.bye()

    async def test_missing_metadata(self) -> None:
        """
        A SIPRec INVITE without metadata is answered (tenant default
        C{missing_metadata = "accept"}) and newCall reports
        C{metadataError: "missing"}.
        """
        self.start()
        _, pa = listen_udp(self)
        ok, session_id, src = await self._answered(sdp_offer([("96", pa, 8)]), ["96"], metadata=None)
        self.assertEqual(self.app.new_calls[0]["metadataError"], "missing")
        self.assertEqual(self.app.new_calls[0]["participants"], [])
        self.assertEqual((await self.session(session_id))["metadataError"], "missing")
        await src.bye()

    async def test_missing_metadata_rejected_when_configured(self) -> None:
        """
        With C{missing_metadata = "reject"} the same INVITE gets 488.
        """
        self.start(tenant='missing_metadata = "reject"\n')
        src = self.src()
        _, pa = listen_udp(self)
        resp = await src.invite(sdp_offer([("96", pa, 8)]), metadata=None)
        self.assertEqual(_status(resp), 488)

    async def test_lf_only_sdp(self) -> None:
        """
        An SDP part with bare LF line ends inside the multipart is answered.
        """
        self.start()
        _, pa = listen_udp(self)
        _, pb = listen_udp(self)
        offer = sdp_offer([("96", pa, 8), ("98", pb, 8)]).replace(b"\r\n", b"\n")
        ok, session_id, src = await self._answered(offer, ["96", "98"])
        body = await self.session(session_id)
        self.assertEqual([s["remote"] for s in body["streams"]], ["127.0.0.1:%d" % pa, "127.0.0.1:%d" % pb])
        self.assertEqual(len(body["participants"]), 2)
        await src.bye()
