"""
Tests for L{aiconnect.siprec.metadata_forward}: caller and called party,
forwarded metadata, AOR rewriting and metadata made from SDP labels.
"""

from __future__ import annotations

import base64
from dataclasses import replace

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.errors import LocalSipError
from aiconnect.siprec.metadata_forward import (
    ANONYMOUS_AOR,
    PartyOverride,
    caller_and_called,
    forward_metadata,
    metadata_from_labels,
    new_id,
    replace_aor_user,
)
from aiconnect.siprec.metadata_model import (
    NameID,
    Participant,
    ParticipantSessionAssoc,
    ParticipantStreamAssoc,
    RecordingMetadata,
    Session,
    Stream,
)
from aiconnect.siprec.metadata_parser import parse_metadata
from tests.siprec.test_metadata import (
    BOB,
    PAUL,
    RFC7865_COMPLETE,
    SESSION,
    ValidatingMixin,
    counting_ids,
    read_sample,
)


class CallerCalledTests(SynchronousTestCase):
    """
    Telling the caller from the called party.
    """

    def test_first_stream_sender(self) -> None:
        """
        The caller is the only sender of the first stream and the called
        party the sender of the next stream the caller does not send on.
        """
        md = parse_metadata(read_sample(RFC7865_COMPLETE))
        caller, called = caller_and_called(md)
        self.assertEqual((caller.name, called.name), ("Bob", "Paul"))

    def test_sdp_label_order(self) -> None:
        """
        With the SDP's labels, the first m-line's stream decides.
        """
        md = parse_metadata(read_sample(RFC7865_COMPLETE))
        caller, called = caller_and_called(md, ["98", "96", "97", "99"])
        self.assertEqual((caller.name, called.name), ("Paul", "Bob"))

    def test_mixed_stream(self) -> None:
        """
        When everybody sends on the first stream (a mixed stream), document
        order decides.
        """
        md = parse_metadata(read_sample("rfc8068-s3.3.1-1-metadata.xml"))
        caller, called = caller_and_called(md)
        self.assertEqual((caller.name, called.name), ("Alice", "Bob"))

    def test_no_association(self) -> None:
        """
        Without stream associations, document order decides; with fewer
        than two participants the missing ones are C{None}.
        """
        md = RecordingMetadata(
            participants=(Participant("AQ==", (NameID("sip:a@x"),)), Participant("Ag==", (NameID("sip:b@x"),)))
        )
        caller, called = caller_and_called(md)
        self.assertEqual((caller.participant_id, called.participant_id), ("AQ==", "Ag=="))
        self.assertEqual(caller_and_called(replace(md, participants=md.participants[:1]))[1], None)
        self.assertEqual(caller_and_called(RecordingMetadata()), (None, None))


class ForwardTests(ValidatingMixin, SynchronousTestCase):
    """
    Metadata for a forwarded recording session.
    """

    def test_overrides(self) -> None:
        """
        The order's name, user and label replace the caller's and the called
        party's; the session gets a new id everywhere; participants and
        streams keep theirs; the result validates.
        """
        inbound = parse_metadata(read_sample(RFC7865_COMPLETE))
        out = forward_metadata(
            inbound,
            caller=PartyOverride(name="Alice Andersson", user="alice", label="labelA"),
            called=PartyOverride(name="Support IVR", user="support", label="labelB"),
            id_factory=counting_ids(),
        )
        md = out.metadata
        self.assert_valid(md.to_bytes())
        new_session = base64.b64encode(b"\x01" * 16).decode()
        self.assertEqual([s.session_id for s in md.sessions], [new_session])
        self.assertEqual({s.session_id for s in md.streams}, {new_session})
        self.assertEqual({a.session_id for a in md.participant_session_assocs}, {new_session})
        self.assertEqual(md.session_recording_assocs[0].session_id, new_session)
        self.assertNotIn(SESSION.encode(), md.to_bytes())
        self.assertEqual((out.caller_id, out.called_id), (BOB, PAUL))
        bob, paul = md.participant(BOB), md.participant(PAUL)
        self.assertEqual(bob.name_ids, (NameID("sip:alice@biloxi.com", "Alice Andersson"),))
        self.assertEqual(paul.name_ids, (NameID("sip:support@biloxi.com", "Support IVR"),))
        self.assertEqual([s.label for s in md.streams], ["labelA", "97", "labelB", "99"])
        self.assertEqual(out.labels, {"96": "labelA", "97": "97", "98": "labelB", "99": "99"})
        self.assertEqual([s.stream_id for s in md.streams], [s.stream_id for s in inbound.streams])
        self.assertEqual(md.participant_stream_assocs, inbound.participant_stream_assocs)

    def test_no_overrides(self) -> None:
        """
        Without overrides only the session ids change.
        """
        inbound = parse_metadata(read_sample("rfc8068-s3.5-1-metadata.xml"))
        out = forward_metadata(inbound, id_factory=counting_ids())
        self.assert_valid(out.metadata.to_bytes())
        self.assertEqual(out.metadata.participants, inbound.participants)
        self.assertEqual(out.labels, {"96": "96"})
        self.assertEqual(len({s.session_id for s in out.metadata.sessions}), 2)
        self.assertFalse({s.session_id for s in out.metadata.sessions} & {s.session_id for s in inbound.sessions})
        self.assertEqual(out.metadata.groups, inbound.groups)

    def test_partial_overrides(self) -> None:
        """
        Only the given fields change; a called-party label on a mixed single
        stream already taken by the caller is not applied.
        """
        inbound = parse_metadata(read_sample("rfc8068-s3.3.1-1-metadata.xml"))
        out = forward_metadata(
            inbound,
            caller=PartyOverride(label="mix"),
            called=PartyOverride(user="bobby", label="ignored"),
            id_factory=counting_ids(),
        )
        self.assertEqual([s.label for s in out.metadata.streams], ["mix"])
        self.assertEqual(out.metadata.participants[0], inbound.participants[0])
        self.assertEqual(out.metadata.participants[1].name_ids, (NameID("sip:bobby@biloxy.com", "Bob", "it"),))

    def test_label_fallback_by_position(self) -> None:
        """
        Without stream associations the caller's stream is the first and
        the called party's the second, in SDP label order when given.
        """
        md = metadata_from_labels(["1", "2"], caller_aor="sip:a@x", called_aor="sip:b@x", id_factory=counting_ids())
        md = replace(md, participant_stream_assocs=())
        out = forward_metadata(
            md,
            caller=PartyOverride(label="A"),
            called=PartyOverride(label="B"),
            labels=["2", "1"],
            id_factory=counting_ids(),
        )
        self.assertEqual(out.labels, {"1": "B", "2": "A"})

    def test_label_conflict(self) -> None:
        """
        An overridden label that another stream keeps is refused.
        """
        inbound = parse_metadata(read_sample(RFC7865_COMPLETE))
        self.assertRaises(LocalSipError, forward_metadata, inbound, caller=PartyOverride(label="97"))

    def test_sanitized(self) -> None:
        """
        Ids that are not base64 get fresh ones (references follow), bad
        times are dropped, a participant without AOR gets the anonymous
        one, so the output validates.
        """
        inbound = RecordingMetadata(
            sessions=(Session("not base64!", start_time="yesterday"),),
            participants=(Participant("p-1"), Participant("p-2", (NameID("sip:b@x"),))),
            streams=(Stream("s 1", "not base64!", "1"),),
            participant_session_assocs=(ParticipantSessionAssoc("p-1", "not base64!", "2024-13-01T00:00:00Z"),),
            participant_stream_assocs=(ParticipantStreamAssoc("p-1", send=("s 1",)),),
        )
        out = forward_metadata(inbound, caller=PartyOverride(user="alice"), id_factory=counting_ids())
        md = out.metadata
        self.assert_valid(md.to_bytes())
        pid = md.participants[0].participant_id
        self.assertEqual(md.participant_stream_assocs[0], ParticipantStreamAssoc(pid, send=(md.streams[0].stream_id,)))
        self.assertEqual(md.participant_session_assocs[0].participant_id, pid)
        self.assertIsNone(md.participant_session_assocs[0].associate_time)
        self.assertIsNone(md.sessions[0].start_time)
        self.assertEqual(md.participants[0].aors, ("sip:alice@anonymous.invalid",))
        self.assertEqual(out.caller_id, pid)
        self.assertEqual(ANONYMOUS_AOR, "sip:anonymous@anonymous.invalid")

    def test_new_id(self) -> None:
        """
        Fresh ids are distinct base64 encodings of 16 octets.
        """
        a, b = new_id(), new_id()
        self.assertNotEqual(a, b)
        self.assertEqual(len(base64.b64decode(a, validate=True)), 16)


class AorTests(SynchronousTestCase):
    """
    Replacing the user part of an AOR.
    """

    def test_replace(self) -> None:
        """
        The user part is replaced (added when absent, escaped when needed),
        a password dropped, and a tel: number replaced.
        """
        cases = [
            ("sip:bob@biloxi.com", "alice", "sip:alice@biloxi.com"),
            ("sips:bob:secret@biloxi.com;transport=tls", "alice", "sips:alice@biloxi.com;transport=tls"),
            ("sip:biloxi.com", "alice", "sip:alice@biloxi.com"),
            ("sip:biloxi.com?x=a@b", "alice", "sip:alice@biloxi.com?x=a@b"),
            ("tel:+15551234;phone-context=example.com", "+15559999", "tel:+15559999;phone-context=example.com"),
            ("sip:bob@x", "a b@c", "sip:a%20b%40c@x"),
            ("biloxi.com", "alice", "sip:alice@biloxi.com"),
        ]
        for aor, user, expected in cases:
            self.assertEqual(replace_aor_user(aor, user), expected, aor)


class FromLabelsTests(ValidatingMixin, SynchronousTestCase):
    """
    Metadata made up for a session whose SRC sent none.
    """

    def test_two_streams(self) -> None:
        """
        The caller sends on the first stream and the called party on the
        second; the result validates and the rule finds them again.
        """
        md = metadata_from_labels(
            ["1", "2"],
            caller_aor="sip:alice@example.com",
            called_aor="sip:bob@example.com",
            caller_name="Alice",
            sip_session_ids=["abc;remote=def"],
            start_time="2024-01-01T10:00:00Z",
            id_factory=counting_ids(),
        )
        self.assert_valid(md.to_bytes())
        caller, called = caller_and_called(md)
        self.assertEqual((caller.name, called.aor), ("Alice", "sip:bob@example.com"))
        self.assertEqual([s.label for s in md.streams], ["1", "2"])
        self.assertEqual(md.sessions[0].start_time, "2024-01-01T10:00:00Z")

    def test_one_and_three_streams(self) -> None:
        """
        One stream is mixed (both send on it); a third stream has no
        association; no stream at all still validates.
        """
        one = metadata_from_labels(["m"], caller_aor="sip:a@x", called_aor="sip:b@x")
        self.assertEqual([a.send for a in one.participant_stream_assocs], [(one.streams[0].stream_id,)] * 2)
        three = metadata_from_labels(["a", "b", "c"], caller_aor="sip:a@x", called_aor="", id_factory=counting_ids())
        self.assertEqual(len(three.streams), 3)
        self.assertEqual(three.participants[1].aor, ANONYMOUS_AOR)
        none = metadata_from_labels([], caller_aor="sip:a@x", called_aor="sip:b@x")
        for md in (one, three, none):
            self.assert_valid(md.to_bytes())
