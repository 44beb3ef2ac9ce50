# -*- test-case-name: tests.siprec.test_metadata_legacy -*-
"""
Tests for the pre-RFC metadata namespace in
L{aiconnect.siprec.metadata_parser} (SPEC s13): documents in
C{urn:ietf:params:xml:ns:recording}, as the drafts of RFC 7865 wrote them
and deployed SRCs (Acme Packet/Oracle, AudioCodes SmartTAP, jambonz,
Sonus) still send them, are read like RFC 7865 documents.
"""

from __future__ import annotations

from pathlib import Path

from twisted.trial import unittest

from aiconnect.siprec.metadata_forward import forward_metadata
from aiconnect.siprec.metadata_model import ParticipantSessionAssoc, ParticipantStreamAssoc
from aiconnect.siprec.metadata_parser import LEGACY_NAMESPACE, MetadataError, parse_metadata
from aiconnect.views import describe_participants

LEGACY = Path(__file__).parent.parent / "data" / "siprec" / "legacy"


def sample(name: str) -> bytes:
    """
    One of the pre-RFC samples of C{tests/data/siprec/legacy}.
    """
    return (LEGACY / name).read_bytes()


class LegacyNamespaceTests(unittest.SynchronousTestCase):
    """
    Pre-RFC documents give the participants, names, AORs, streams and
    associations an RFC 7865 document would.
    """

    def test_namespace(self) -> None:
        """
        The pre-RFC namespace is the draft one, without RFC 7865's C{:1}.
        """
        self.assertEqual(LEGACY_NAMESPACE, "urn:ietf:params:xml:ns:recording")

    def test_acme_draft(self) -> None:
        """
        C{id} attributes, C{<participant session>} and C{<send>} inside the
        participant (Acme Packet / Oracle SBC) become RFC 7865
        associations; the Acme extension data is kept as an extension.
        """
        md = parse_metadata(sample("acme-draft-metadata.xml"))
        self.assertEqual([s.session_id for s in md.sessions], ["Q2FsbFNlc3Npb24xMg=="])
        self.assertEqual(len(md.sessions[0].extensions), 2)
        self.assertIn("00FA080012AB34CD;encoding=hex", md.sessions[0].extensions[0])
        self.assertIn("callerOrig", md.sessions[0].extensions[1])
        self.assertEqual([(s.stream_id, s.session_id, s.label) for s in md.streams], [
            ("U3RyZWFtQTE=", "Q2FsbFNlc3Npb24xMg==", "96"),
            ("U3RyZWFtQjI=", "Q2FsbFNlc3Npb24xMg==", "98"),
        ])
        self.assertEqual(md.participant_session_assocs, (
            ParticipantSessionAssoc("UGFydGljaXBhbnRBMQ==", "Q2FsbFNlc3Npb24xMg=="),
            ParticipantSessionAssoc("UGFydGljaXBhbnRCMg==", "Q2FsbFNlc3Npb24xMg=="),
        ))
        self.assertEqual(md.participant_stream_assocs, (
            ParticipantStreamAssoc("UGFydGljaXBhbnRBMQ==", send=("U3RyZWFtQTE=",)),
            ParticipantStreamAssoc("UGFydGljaXBhbnRCMg==", send=("U3RyZWFtQjI=",)),
        ))
        self.assertEqual(describe_participants(md), [
            {"participantId": "UGFydGljaXBhbnRBMQ==", "name": "Alice Andersson", "aor": "sip:+4930123456@192.0.2.10",
             "send": ["96"], "recv": []},
            {"participantId": "UGFydGljaXBhbnRCMg==", "name": "Support IVR", "aor": "sip:2001@pbx.example.com",
             "send": ["98"], "recv": []},
        ])  # fmt: skip

    def test_audiocodes_smarttap(self) -> None:
        """
        AudioCodes SmartTAP metadata (also jambonz's): group and session
        C{id}s, AORs without a scheme read as C{sip:} URIs, C{<send>} and
        C{<recv>} inside the participant.
        """
        md = parse_metadata(sample("audiocodes-smarttap-metadata.xml"))
        self.assertEqual([g.group_id for g in md.groups], ["7d1c3a52-0f4e-4b8e-9a51-2f0c6f1b9e01"])
        self.assertEqual(md.sessions[0].group_ref, "7d1c3a52-0f4e-4b8e-9a51-2f0c6f1b9e01")
        self.assertEqual(describe_participants(md), [
            {"participantId": "c4f2e8a0-1b3d-4e5f-9a7b-8c6d5e4f3a2b", "name": None, "aor": "sip:+4930123456@198.51.100.7",
             "send": ["96"], "recv": ["98"]},
            {"participantId": "e1d2c3b4-a5f6-4e7d-8c9b-0a1f2e3d4c5b", "name": None, "aor": "sip:2001@198.51.100.20",
             "send": ["98"], "recv": ["96"]},
        ])  # fmt: skip

    def test_prefixed_sonus(self) -> None:
        """
        The pre-RFC namespace with a prefix and RFC 7865 names (Sonus /
        Ribbon) reads exactly like the same document in RFC 7865's
        namespace.
        """
        raw = sample("sonus-prefixed-metadata.xml")
        rfc = raw.replace(b"'urn:ietf:params:xml:ns:recording'", b"'urn:ietf:params:xml:ns:recording:1'")
        self.assertNotEqual(raw, rfc)
        self.assertEqual(parse_metadata(raw), parse_metadata(rfc))
        self.assertEqual([p["name"] for p in describe_participants(parse_metadata(raw))], ["Alice Andersson", "Support IVR"])

    def test_rfc_form_same_model(self) -> None:
        """
        The draft spellings give the model the RFC 7865 spellings of the
        same facts give.
        """
        draft = (
            b'<recording xmlns="urn:ietf:params:xml:ns:recording"><datamode>complete</datamode>'
            b'<session id="s1"/><participant id="p1" session="s1"><nameID aor="sip:a@example.com">'
            b"<name>A</name></nameID><send>st1</send><recv>st2</recv></participant>"
            b'<stream id="st1" session="s1"><label>1</label></stream>'
            b'<stream id="st2" session="s1"><label>2</label></stream></recording>'
        )
        rfc = (
            b'<recording xmlns="urn:ietf:params:xml:ns:recording:1"><datamode>complete</datamode>'
            b'<session session_id="s1"/><participant participant_id="p1"><nameID aor="sip:a@example.com">'
            b"<name>A</name></nameID></participant>"
            b'<stream stream_id="st1" session_id="s1"><label>1</label></stream>'
            b'<stream stream_id="st2" session_id="s1"><label>2</label></stream>'
            b'<participantsessionassoc participant_id="p1" session_id="s1"/>'
            b'<participantstreamassoc participant_id="p1"><send>st1</send><recv>st2</recv></participantstreamassoc>'
            b"</recording>"
        )
        self.assertEqual(parse_metadata(draft), parse_metadata(rfc))

    def test_rfc_association_wins(self) -> None:
        """
        A document stating a participant's streams both ways keeps the
        C{<participantstreamassoc>} only (no duplicate association).
        """
        doc = (
            b'<recording xmlns="urn:ietf:params:xml:ns:recording"><participant id="p1"><nameID aor="sip:a@h"/>'
            b"<send>x</send></participant>"
            b'<participantstreamassoc participant_id="p1"><send>y</send></participantstreamassoc></recording>'
        )
        self.assertEqual(parse_metadata(doc).participant_stream_assocs, (ParticipantStreamAssoc("p1", send=("y",)),))

    def test_forwarded_as_rfc7865(self) -> None:
        """
        Pre-RFC metadata forwarded (L{forward_metadata}) is RFC 7865: valid
        against the RFC's schema (the UUID ids of AudioCodes made
        base64Binary), in the C{:1} namespace, with the same participants.
        """
        from tests.siprec.test_metadata import schema

        for name in ("acme-draft-metadata.xml", "audiocodes-smarttap-metadata.xml", "sonus-prefixed-metadata.xml"):
            with self.subTest(name):
                md = parse_metadata(sample(name))
                written = forward_metadata(md, labels=["96", "98"]).metadata.to_bytes()
                schema().validate(written)
                self.assertIn(b"urn:ietf:params:xml:ns:recording:1", written)
                again = describe_participants(parse_metadata(written))
                before = describe_participants(md)
                self.assertEqual(
                    [(p["name"], p["aor"], p["send"], p["recv"]) for p in again],
                    [(p["name"], p["aor"], p["send"], p["recv"]) for p in before],
                )

    def test_other_namespace_refused(self) -> None:
        """
        Only the two recording namespaces (and none) are metadata: another
        root namespace is still refused.
        """
        with self.assertRaises(MetadataError):
            parse_metadata(b'<recording xmlns="urn:ietf:params:xml:ns:siprec"><datamode>complete</datamode></recording>')
