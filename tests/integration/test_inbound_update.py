# -*- test-case-name: tests.integration.test_inbound_update -*-
"""
Metadata-only UPDATEs from the SRC end to end (RFC 7866 s9.1, RFC 3311).
The harness is L{tests.integration.scenario}.
"""

from __future__ import annotations

from tests.fakes import listen_udp
from tests.integration.scenario import ScenarioCase, _status, multipart, parse_response
from tests.integration.siprec_peer import DATA, sdp_offer


class UpdateTests(ScenarioCase):
    """
    Metadata-only UPDATEs (RFC 7866 s9.1, RFC 3311).
    """

    rtp_base = 24300

    async def _participants(self, session_id: str) -> list[tuple[str, str | None]]:
        return [(p["name"], p["aor"]) for p in (await self.session(session_id))["participants"]]

    async def test_lone_metadata_update(self) -> None:
        """
        An UPDATE whose only body is C{application/rs-metadata} (the RFC 7865
        s8.2 partial update) is answered 200 without SDP and renames the
        participant in C{GET /sessions/{id}}.
        """
        self.start()
        src = self.src()
        _, pa = listen_udp(self)
        _, pb = listen_udp(self)
        _, session_id = await src.call(sdp_offer([("96", pa, 8), ("98", pb, 8)]))
        self.assertEqual(
            await self._participants(session_id),
            [("Alice", "sip:alice@atlanta.com"), ("Bob", "sip:bob@biloxy.com")],
        )
        partial = (DATA / "rfc7865-s8.2-partial-update.xml").read_bytes()
        resp = await src.in_dialog("UPDATE", partial, "application/rs-metadata", extra="Content-Disposition: recording-session")
        self.assertEqual(_status(resp), 200)
        self.assertEqual(parse_response(resp).body, b"")
        self.assertEqual(
            await self._participants(session_id),
            [("Bob", "sip:bob@biloxi.com"), ("Bob", "sip:bob@biloxy.com")],
        )
        body = await self.session(session_id)
        self.assertIsNone(body["metadataError"])
        await src.bye()

    async def test_multipart_metadata_update(self) -> None:
        """
        An UPDATE with a C{multipart/mixed} body holding only the metadata
        part (RFC 8068 s3.2.3 transfer: Carol joins, Alice leaves) is
        answered 200 and the session gains Carol.
        """
        self.start()
        src = self.src()
        _, pa = listen_udp(self)
        _, pb = listen_udp(self)
        _, session_id = await src.call(sdp_offer([("96", pa, 8), ("98", pb, 8)]))
        update = (DATA / "rfc8068-s3.2.3-1-metadata.xml").read_bytes()
        resp = await src.in_dialog("UPDATE", multipart(("application/rs-metadata+xml", update)), "multipart/mixed;boundary=foobar")
        self.assertEqual(_status(resp), 200)
        participants = (await self.session(session_id))["participants"]
        self.assertEqual([p["name"] for p in participants], ["Alice", "Bob", "Carol"])
        carol = participants[2]
        self.assertEqual(carol["aor"], "sip:carol@example.com")
        bob = participants[1]
        self.assertEqual(bob["send"], ["98", "99"])
        await src.bye()

    async def test_bad_metadata_update(self) -> None:
        """
        An UPDATE with metadata that does not parse is still answered 200;
        the session keeps its participants and reports the error.
        """
        self.start()
        src = self.src()
        _, pa = listen_udp(self)
        _, session_id = await src.call(sdp_offer([("96", pa, 8)]))
        resp = await src.in_dialog("UPDATE", b"<recording><oops", "application/rs-metadata")
        self.assertEqual(_status(resp), 200)
        body = await self.session(session_id)
        self.assertEqual(len(body["participants"]), 2)
        self.assertIsNotNone(body["metadataError"])
        await src.bye()
