# -*- test-case-name: tests.integration.test_interop -*-
"""
Vendor interop end to end (SPEC s13): correlation headers of a Cisco CUBE
/ Genesys INVITE reach newCall's C{correlation}; an order's C{copyHeaders}
puts them on the forward's INVITE; pre-RFC metadata (Acme Packet,
AudioCodes SmartTAP) reaches newCall like RFC 7865 metadata.

RTP ports of these tests: 22300-22399.
"""

from __future__ import annotations

import json
from typing import Any

import treq

from tests.integration.scenario import DOMAIN, TOKEN, ScenarioCase
from tests.integration.siprec_peer import AppServer, sdp_offer
from tests.integration.srs_peer import SrsPeer
from tests.fakes import listen_udp
from tests.siprec.test_metadata_legacy import sample

#: What a Cisco CUBE in front of Genesys puts in its SIPRec INVITE: RFC 7989
#: Session-ID, its GUID, the ISDN UUI (RFC 7433, twice) and Genesys' ids.
CUBE_HEADERS = "\n".join(
    [
        "Session-ID: ab30317f1a784dc48ff824d0d3715d86;remote=00000000000000000000000000000000",
        "Cisco-Guid: 2873211264-1032455661-2155746376-3892052513",
        "User-to-User: 00FA080019001038F7A2B4;encoding=hex",
        "X-Genesys-CallUUID: 0PUG5V3KEL2UR5AMO4G8SAI9N4000019",
        "P-Asserted-Identity: <sip:+4930123456@192.0.2.10>",
        "user-to-user: 0011;encoding=hex;purpose=isdn-uui",
    ]
)
CORRELATION = {
    "Session-ID": "ab30317f1a784dc48ff824d0d3715d86;remote=00000000000000000000000000000000",
    "Cisco-Guid": "2873211264-1032455661-2155746376-3892052513",
    "User-to-User": "00FA080019001038F7A2B4;encoding=hex, 0011;encoding=hex;purpose=isdn-uui",
    "X-Genesys-CallUUID": "0PUG5V3KEL2UR5AMO4G8SAI9N4000019",
}
ORDER = {
    "uri": "sip:aiforward@%s" % (DOMAIN,),
    "codec": "PCMU",
    "xHeaders": {"X-Tenant": "acme-cc"},
    "copyHeaders": ["Session-ID", "Cisco-Guid", "X-Genesys-CallUUID", "user-to-user"],
}


class InteropTests(ScenarioCase):
    """
    Correlation headers, copyHeaders and pre-RFC metadata through the real
    service.
    """

    rtp_base = 22300

    def start_with_srs(self, answer: dict[str, Any]) -> SrsPeer:
        """
        Start an SRS that answers 200, and the service with a trunk
        C{aiforward} to it and an application answering C{answer}.
        """
        srs = SrsPeer("200")
        srs.listen_udp()
        self.addCleanup(srs.stop)
        trunk = '\n  [[tenant.trunk]]\n  match = "aiforward"\n  target = "127.0.0.1:%d"\n  transport = "udp"\n' % (
            srs.port.getHost().port,
        )
        self.start(AppServer(answer), tenant=trunk)
        return srs

    async def test_correlation_in_new_call(self) -> None:
        """
        newCall's C{correlation} holds Session-ID, Cisco-Guid, the two
        User-to-User lines joined, and the Genesys X- header, by the names
        as received; P-Asserted-Identity is no correlation header.
        """
        self.start()
        src = self.src()
        _, port = listen_udp(self)
        await src.call(sdp_offer([("96", port, 8)]), extra_headers=CUBE_HEADERS)
        new_call = self.app.new_calls[0]
        self.assertEqual(new_call["correlation"], CORRELATION)
        self.assertEqual(new_call["xHeaders"], {"X-Genesys-CallUUID": "0PUG5V3KEL2UR5AMO4G8SAI9N4000019"})
        await src.bye()

    async def test_copy_headers_to_srs(self) -> None:
        """
        An order with copyHeaders: the SRS's INVITE carries exactly those
        headers, spelled as the order does, with the inbound values (the
        two User-to-User lines as one), beside the order's xHeaders, and no
        other correlation header; all of them are on the BYE too.
        """
        srs = self.start_with_srs({"startSIPRecForward": ORDER})
        src = self.src()
        _, port = listen_udp(self)
        await src.call(sdp_offer([("96", port, 8), ("98", port + 2, 8)]), extra_headers=CUBE_HEADERS)
        await srs.wait_for("INVITE")
        invite = srs.requests[0]
        copied = [(n, v) for n, v in invite.headers if n.lower() in {c.lower() for c in CORRELATION}]
        self.assertEqual(
            copied,
            [
                ("Session-ID", CORRELATION["Session-ID"]),
                ("Cisco-Guid", CORRELATION["Cisco-Guid"]),
                ("X-Genesys-CallUUID", CORRELATION["X-Genesys-CallUUID"]),
                ("user-to-user", CORRELATION["User-to-User"]),
            ],
        )
        self.assertEqual(invite.headers.get_all("X-Tenant"), ["acme-cc"])
        self.assertEqual(invite.headers.get_all("P-Asserted-Identity"), [])
        await src.bye()
        await srs.wait_for("BYE")
        bye = [r for r in srs.requests if r.method == "BYE"][0]
        self.assertEqual(bye.headers.get_all("X-Genesys-CallUUID"), [CORRELATION["X-Genesys-CallUUID"]])
        self.assertEqual(bye.headers.get_all("X-Tenant"), ["acme-cc"])
        self.assertEqual(bye.headers.get_all("Session-ID"), [CORRELATION["Session-ID"]])
        self.assertEqual(bye.headers.get_all("Cisco-Guid"), [CORRELATION["Cisco-Guid"]])

    async def test_rest_bad_copy_headers(self) -> None:
        """
        POST startsiprecforward with a copyHeaders entry that is no
        correlation header gets 400 naming C{copyHeaders[1]}.
        """
        self.start_with_srs({})
        src = self.src()
        _, port = listen_udp(self)
        _, session_id = await src.call(sdp_offer([("96", port, 8)]))
        body = dict(ORDER, sessionId=session_id, copyHeaders=["Session-ID", "Via"])
        resp = await treq.post(
            "http://127.0.0.1:%d/%s/startsiprecforward" % (self.api_port, DOMAIN),
            json=body,
            headers={"Authorization": "Bearer " + TOKEN},
            persistent=False,
        )
        answer = json.loads(await resp.content())
        self.assertEqual((resp.code, answer["success"], answer["field"]), (400, False, "copyHeaders[1]"))
        await src.bye()

    async def test_legacy_metadata_in_new_call(self) -> None:
        """
        INVITEs with pre-RFC metadata (Acme Packet, AudioCodes SmartTAP)
        give newCall the participants, names, AORs and stream labels, and
        no metadataError.
        """
        self.start()
        expected = {
            "acme-draft-metadata.xml": [
                ("Alice Andersson", "sip:+4930123456@192.0.2.10", ["96"], []),
                ("Support IVR", "sip:2001@pbx.example.com", ["98"], []),
            ],
            "audiocodes-smarttap-metadata.xml": [
                (None, "sip:+4930123456@198.51.100.7", ["96"], ["98"]),
                (None, "sip:2001@198.51.100.20", ["98"], ["96"]),
            ],
        }
        for n, (name, participants) in enumerate(expected.items()):
            src = self.src()
            _, port = listen_udp(self)
            await src.call(sdp_offer([("96", port, 8), ("98", port + 2, 8)]), metadata=sample(name))
            new_call = self.app.new_calls[n]
            self.assertIsNone(new_call["metadataError"], name)
            got = [(p["name"], p["aor"], p["send"], p["recv"]) for p in new_call["participants"]]
            self.assertEqual(got, participants, name)
            self.assertEqual([s["label"] for s in new_call["streams"]], ["96", "98"])
            await src.bye()
