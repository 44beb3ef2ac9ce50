"""
Tests for L{aiconnect.siprec.metadata}.
"""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from itertools import count
from pathlib import Path
from typing import Callable

import xmlschema
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.errors import LocalSipError, RemoteSipError
from aiconnect.siprec.metadata import (
    ANONYMOUS_AOR,
    COMPLETE,
    CONTENT_TYPES,
    DEFAULT_MAX_SIZE,
    NAMESPACE,
    PARTIAL,
    Group,
    MetadataError,
    NameID,
    Participant,
    ParticipantSessionAssoc,
    ParticipantStreamAssoc,
    PartyOverride,
    Reason,
    RecordingMetadata,
    RequestSnapshot,
    Session,
    SessionRecordingAssoc,
    Stream,
    apply_update,
    caller_and_called,
    forward_metadata,
    is_metadata_content_type,
    metadata_from_labels,
    new_id,
    parse_document,
    parse_metadata,
    replace_aor_user,
)

SIPREC = Path(__file__).parent.parent / "data" / "siprec"
XSD = SIPREC / "recording-metadata.xsd"

_schema: xmlschema.XMLSchema10 | None = None


def _load_schema() -> xmlschema.XMLSchema10:
    """
    Load the RFC 7865 schema offline: C{allow="local"} forbids fetching the
    C{xml.xsd} import from w3.org, and xmlschema's meta-schema already
    provides the XML namespace (C{xml:lang}) from its bundled copy.

    Once any code has asked zope.interface about an instance of a
    C{collections.abc.Sequence} subclass (other tests do, through Twisted),
    zope.interface caches a C{ClassProvides} descriptor as C{__provides__}
    on C{Sequence} and its bases; that descriptor raises C{AttributeError}
    when read through a subclass, and xmlschema 4's
    C{XsdValidator._cached_properties} (C{getattr} over C{dir(cls)}) trips
    over it while building its meta-schema.  The caches are set aside while
    the schema is built, then put back.
    """
    try:
        return xmlschema.XMLSchema10(str(XSD), allow="local")
    except AttributeError:
        pass
    saved = [
        (klass, vars(klass)["__provides__"])
        for klass in xmlschema.XMLSchema10.__mro__
        if "__provides__" in vars(klass)
    ]
    try:
        for klass, _ in saved:
            delattr(klass, "__provides__")
        return xmlschema.XMLSchema10(str(XSD), allow="local")
    finally:
        for klass, value in saved:
            setattr(klass, "__provides__", value)


def schema() -> xmlschema.XMLSchema10:
    """
    The RFC 7865 schema, loaded once (see L{_load_schema}).
    """
    global _schema
    if _schema is None:
        _schema = _load_schema()
    return _schema


def _read(name: str) -> bytes:
    return (SIPREC / name).read_bytes()


def _ids() -> Callable[[], str]:
    """
    A deterministic id factory: base64 of 16 repeated octets 1, 2, 3 ...
    """
    counter = count(1)
    return lambda: base64.b64encode(bytes([next(counter)]) * 16).decode("ascii")


RFC7865_COMPLETE = "rfc7865-s8.1-complete-metadata.xml"
BOB, PAUL = "srfBElmCRp2QB23b7Mpk0w==", "zSfPoSvdSDCmU3A3TRDxAw=="
SESSION = "hVpd7YQgRW2nD22h7q60JQ=="


class ValidatingMixin:
    """
    Schema assertions.
    """

    def assert_valid(self, data: bytes) -> None:
        """
        C{data} validates against the RFC 7865 schema.
        """
        errors = list(schema().iter_errors(data.decode("utf-8")))
        if errors:
            raise self.failureException("invalid metadata: %s\n%s" % (errors[0].reason, data.decode()))


class CorpusTests(ValidatingMixin, SynchronousTestCase):
    """
    Every RFC 7865 / RFC 7866 / RFC 8068 example.
    """

    def test_every_example_parses(self) -> None:
        """
        Every XML example parses (requestsnapshot documents as
        L{RequestSnapshot}), and rebuilding it gives a document that
        validates and parses back to the same model.
        """
        files = sorted(SIPREC.glob("*.xml"))
        self.assertEqual(len(files), 18)
        for path in files:
            doc = parse_document(path.read_bytes())
            expected = RequestSnapshot if "requestsnapshot" in path.name else RecordingMetadata
            self.assertIsInstance(doc, expected, path.name)
            self.assert_valid(doc.to_bytes())
            self.assertEqual(parse_document(doc.to_bytes()), doc, path.name)

    def test_examples_are_valid(self) -> None:
        """
        The corpus itself validates (so the schema loads offline and the
        test above compares like with like).
        """
        for path in sorted(SIPREC.glob("*.xml")):
            self.assertTrue(schema().is_valid(str(path)), path.name)

    def test_rfc8068_snippets(self) -> None:
        """
        The metadata embedded in each RFC 8068 message snippet (their SDP is
        elided, so only the metadata is complete) parses to the same model
        as the corresponding example file.
        """
        snippets = sorted((SIPREC / "rfc8068-snippets").glob("*.snippet.txt"))
        self.assertEqual(len(snippets), 14)
        for path in snippets:
            text = path.read_text()
            xml = re.search(r"<\?xml.*?</recording>", text, re.S)
            assert xml is not None, path.name
            stem = re.sub(r"-(invite|bye)\.snippet\.txt$", "", path.name)
            self.assertEqual(
                parse_metadata(xml.group(0)), parse_metadata(_read(stem + "-metadata.xml")), path.name
            )

    def test_rfc7865_complete_model(self) -> None:
        """
        The RFC 7865 s8.1 example gives the expected model: datamode,
        group, session (folded Session-ID joined), participants with
        names and languages, labelled streams and all associations.
        """
        md = parse_metadata(_read(RFC7865_COMPLETE))
        self.assertEqual(md.datamode, COMPLETE)
        self.assertFalse(md.is_partial)
        self.assertEqual([g.group_id for g in md.groups], ["7+OTCyoxTmqmqyA/1weDAg=="])
        self.assertEqual(md.groups[0].associate_time, "2010-12-16T23:41:07Z")
        self.assertEqual(len(md.groups[0].extensions), 2)
        self.assertIn("urn:ietf:params:xml:ns:callcenter", md.groups[0].extensions[0])
        (session,) = md.sessions
        self.assertEqual(session.session_id, SESSION)
        self.assertEqual(
            session.sip_session_ids, ("ab30317f1a784dc48ff824d0d3715d86;remote=47755a9de7794ba387653f2099600ef2",)
        )
        self.assertEqual(session.group_ref, "7+OTCyoxTmqmqyA/1weDAg==")
        bob = md.participant(BOB)
        self.assertEqual(bob.name_ids, (NameID("sip:bob@biloxi.com", "Bob", "it"),))
        self.assertEqual(
            (bob.name, bob.aor, bob.names, bob.aors),
            ("Bob", "sip:bob@biloxi.com", (("Bob", "it"),), ("sip:bob@biloxi.com",)),
        )
        self.assertEqual([s.label for s in md.streams], ["96", "97", "98", "99"])
        self.assertEqual(md.stream_by_label("98").stream_id, "8zc6e0lYTlWIINA6GR+3ag==")
        self.assertEqual(md.stream("UAAMm5GRQKSCMVvLyl4rFw==").session_id, SESSION)
        self.assertEqual(md.session_recording_assocs, (SessionRecordingAssoc(SESSION, "2010-12-16T23:41:07Z"),))
        self.assertEqual(len(md.participant_session_assocs), 2)
        self.assertEqual(
            md.stream_assoc(BOB),
            ParticipantStreamAssoc(
                BOB,
                send=("i1Pz3to5hGk8fuXl+PbwCw==", "UAAMm5GRQKSCMVvLyl4rFw=="),
                recv=("8zc6e0lYTlWIINA6GR+3ag==", "EiXGlc+4TruqqoDaNE76ag=="),
            ),
        )
        self.assertEqual([p.name for p in md.senders("8zc6e0lYTlWIINA6GR+3ag==")], ["Paul"])
        self.assertIsNone(md.participant("nope"))
        self.assertIsNone(md.session("nope"))

    def test_request_snapshot(self) -> None:
        """
        A requestsnapshot parses with its reason and language, builds back,
        and is refused by L{parse_metadata}.
        """
        doc = parse_document(_read("rfc7866-fig13-requestsnapshot.xml"))
        self.assertEqual(doc, RequestSnapshot("SRS internal error", "it"))
        self.assert_valid(RequestSnapshot().to_bytes())
        self.assert_valid(RequestSnapshot("a < b", "en").to_bytes())
        self.assertRaises(MetadataError, parse_metadata, _read("rfc7866-fig13-requestsnapshot.xml"))

    def test_missing_namespace(self) -> None:
        """
        A document without the RFC 7865 namespace (as some SRCs send) is
        read like a namespaced one.
        """
        plain = re.sub(rb"xmlns='urn:ietf:params:xml:ns:recording:1'", b"", _read("rfc8068-s3.3.1-1-metadata.xml"))
        self.assertNotIn(NAMESPACE.encode(), plain)
        self.assertEqual(parse_metadata(plain), parse_metadata(_read("rfc8068-s3.3.1-1-metadata.xml")))

    def test_tolerated_content(self) -> None:
        """
        A missing datamode means complete; unknown elements of our
        namespace, a nameID without aor and a reason with a bad cause are
        ignored; a str document is accepted.
        """
        md = parse_metadata(
            '<recording xmlns="urn:ietf:params:xml:ns:recording:1">'
            '<future-element/><session session_id="AA=="><reason cause="x">bad</reason>'
            '<reason cause="487" protocol="SIP">Cancelled</reason></session>'
            '<participant participant_id="AQ=="><nameID/><nameID aor="sip:a@b"/></participant>'
            "</recording>"
        )
        self.assertEqual(md.datamode, COMPLETE)
        self.assertEqual(md.sessions[0].reasons, (Reason("Cancelled", 487, "SIP"),))
        self.assertEqual(md.participants[0].name_ids, (NameID("sip:a@b"),))
        self.assert_valid(md.to_bytes())


class SafetyTests(SynchronousTestCase):
    """
    Hostile documents are refused with a clear L{MetadataError}.
    """

    def assert_refused(self, data: bytes | str, words: str, **kwargs: int) -> None:
        """
        Parsing C{data} raises L{MetadataError} (status hint 400) whose
        reason contains C{words}.
        """
        err = self.assertRaises(MetadataError, parse_metadata, data, **kwargs)
        self.assertIsInstance(err, RemoteSipError)
        self.assertEqual(err.status_hint, 400)
        self.assertIn(words, err.reason)

    def test_billion_laughs(self) -> None:
        """
        The billion laughs entity expansion is refused before parsing.
        """
        lol = (
            '<?xml version="1.0"?>\n<!DOCTYPE recording [\n <!ENTITY lol "lol">\n'
            + "".join(
                ' <!ENTITY lol%d "%s">\n' % (i, ("&lol%s;" % (i - 1 if i > 1 else "")) * 10)
                for i in range(1, 10)
            )
            + ']>\n<recording xmlns="urn:ietf:params:xml:ns:recording:1"><datamode>&lol9;</datamode></recording>'
        )
        self.assert_refused(lol.encode(), "DOCTYPE")

    def test_external_entity(self) -> None:
        """
        An external entity (XXE) is refused.
        """
        xxe = (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            b'<recording xmlns="urn:ietf:params:xml:ns:recording:1"><datamode>&xxe;</datamode></recording>'
        )
        self.assert_refused(xxe, "DOCTYPE")

    def test_external_dtd(self) -> None:
        """
        A DOCTYPE naming an external DTD is refused.
        """
        self.assert_refused(
            b'<!DOCTYPE recording SYSTEM "http://example.com/evil.dtd"><recording/>', "DOCTYPE"
        )

    def test_doctype_in_other_encoding(self) -> None:
        """
        A DOCTYPE that the octet check cannot see (UTF-16) is refused by
        the parser itself.
        """
        doc = (
            '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY a "b">]>'
            '<recording xmlns="urn:ietf:params:xml:ns:recording:1"><datamode>&a;</datamode></recording>'
        ).encode("utf-16")
        self.assertNotIn(b"<!DOCTYPE", doc)
        self.assert_refused(doc, "DOCTYPE")

    def test_undeclared_entity(self) -> None:
        """
        A reference to an undeclared entity is not well-formed.
        """
        self.assert_refused(b"<recording>&foo;</recording>", "not well-formed")

    def test_oversized(self) -> None:
        """
        Documents over 64 KiB (or the given bound) are refused unparsed.
        """
        self.assertEqual(DEFAULT_MAX_SIZE, 65536)
        big = b"<recording>" + b" " * DEFAULT_MAX_SIZE + b"</recording>"
        self.assert_refused(big, "larger than 65536 octets")
        small = _read(RFC7865_COMPLETE)
        self.assert_refused(small, "larger than 100 octets", max_size=100)
        parse_metadata(small, max_size=len(small))

    def test_deep_nesting(self) -> None:
        """
        Deeply nested extension elements are refused.
        """
        deep = (
            b'<recording xmlns="urn:ietf:params:xml:ns:recording:1">'
            + b'<x:a xmlns:x="urn:x">' * 200
            + b"</x:a>" * 200
            + b"</recording>"
        )
        self.assert_refused(deep, "nested deeper")

    def test_malformed(self) -> None:
        """
        Malformed or foreign documents are refused, each with its reason.
        """
        self.assert_refused(b"", "not well-formed")
        self.assert_refused(b"<recording>", "not well-formed")
        self.assert_refused(b"<recording></participant>", "not well-formed")
        self.assert_refused(b"<html/>", "unexpected root element")
        self.assert_refused(b'<recording xmlns="urn:other"/>', "namespace")
        self.assert_refused(b"<recording><datamode>sometimes</datamode></recording>", "datamode")
        self.assert_refused(b"<recording><participant/></recording>", "participant_id")
        self.assert_refused(b"<recording><stream/></recording>", "stream_id")
        self.assert_refused(b'<recording><participantsessionassoc participant_id="AA=="/></recording>', "session_id")


class ContentTypeTests(SynchronousTestCase):
    """
    The metadata media types.
    """

    def test_both_types(self) -> None:
        """
        Both registered spellings are accepted, with parameters and in any
        case; others are not.
        """
        self.assertEqual(CONTENT_TYPES, ("application/rs-metadata+xml", "application/rs-metadata"))
        for value in (
            "application/rs-metadata+xml",
            "Application/RS-Metadata",
            "application/rs-metadata+xml; charset=UTF-8",
        ):
            self.assertTrue(is_metadata_content_type(value), value)
        for value in ("application/sdp", "", None, "application/rs-metadata-request"):
            self.assertFalse(is_metadata_content_type(value), value)


class BuildTests(ValidatingMixin, SynchronousTestCase):
    """
    Building documents that validate (RFC 7865 s9).
    """

    def full(self) -> RecordingMetadata:
        """
        Metadata using every element and attribute of the schema.
        """
        return RecordingMetadata(
            datamode=COMPLETE,
            groups=(Group("Zw==", "2024-01-01T10:00:00Z", "2024-01-01T11:00:00Z"),),
            sessions=(
                Session(
                    "cw==",
                    ("abc;remote=def",),
                    (Reason("Normal", 16, "Q.850"), Reason("OK", 200)),
                    "Zw==",
                    "2024-01-01T10:00:00Z",
                    "2024-01-01T10:30:00.5+01:00",
                ),
            ),
            participants=(
                Participant("cA==", (NameID("sip:a@example.com", 'A & <B> "quoted"', "en"), NameID("tel:+15551234"))),
            ),
            streams=(Stream("c3Q=", "cw==", "1"), Stream("c3U=")),
            session_recording_assocs=(SessionRecordingAssoc("cw==", "2024-01-01T10:00:00Z"),),
            participant_session_assocs=(
                ParticipantSessionAssoc("cA==", "cw==", "2024-01-01T10:00:00Z", None, (("role", "agent"),)),
            ),
            participant_stream_assocs=(
                ParticipantStreamAssoc("cA==", ("c3Q=",), ("c3U=",), "2024-01-01T10:00:00Z", "2024-01-01T10:01:00Z"),
            ),
            extensions=('<x:ext xmlns:x="urn:example:ext">data</x:ext>',),
        )

    def test_every_element_validates(self) -> None:
        """
        A document with every element validates, declares the namespace as
        the default one, and round-trips.
        """
        md = self.full()
        data = md.to_bytes()
        self.assert_valid(data)
        self.assertIn(b'<recording xmlns="urn:ietf:params:xml:ns:recording:1">', data)
        self.assertTrue(data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>'))
        parsed = parse_metadata(data)
        # Extensions come back as ElementTree writes them (prefix ns0).
        self.assertEqual(parsed.extensions, ('<ns0:ext xmlns:ns0="urn:example:ext">data</ns0:ext>',))
        self.assertEqual(replace(parsed, extensions=md.extensions), md)
        self.assertEqual(parse_metadata(parsed.to_bytes()), parsed)

    def test_escaping(self) -> None:
        """
        Markup characters are escaped and characters XML forbids are
        dropped, so any name gives a valid document.
        """
        evil = NameID('sip:x@y?a="1"&b', "Ev\x00il\x1b <x>&amp;")
        md = RecordingMetadata(participants=(Participant("cA==", (evil,)),))
        data = md.to_bytes()
        self.assert_valid(data)
        parsed = parse_metadata(data)
        self.assertEqual(parsed.participants[0].name, "Evil <x>&amp;")
        self.assertEqual(parsed.participants[0].aor, 'sip:x@y?a="1"&b')

    def test_partial_datamode(self) -> None:
        """
        A partial document is written with datamode partial.
        """
        stopped = Session("cw==", stop_time="2024-01-01T10:00:00Z")
        data = RecordingMetadata(datamode=PARTIAL, sessions=(stopped,)).to_bytes()
        self.assert_valid(data)
        self.assertIn(b"<datamode>partial</datamode>", data)
        self.assertTrue(parse_metadata(data).is_partial)


class PartialUpdateTests(ValidatingMixin, SynchronousTestCase):
    """
    Partial updates applied to a snapshot (RFC 7865 s5.1.2, RFC 8068).
    """

    def test_rfc7865_partial(self) -> None:
        """
        The RFC 7865 s8.2 update sets Bob's disassociate-time and keeps his
        associate-time and everything else.
        """
        snapshot = parse_metadata(_read(RFC7865_COMPLETE))
        update = parse_metadata(_read("rfc7865-s8.2-partial-update.xml"))
        self.assertTrue(update.is_partial)
        merged = apply_update(snapshot, update)
        self.assertEqual(merged.datamode, COMPLETE)
        self.assertEqual(
            merged.participant_session_assocs[0],
            ParticipantSessionAssoc(BOB, SESSION, "2010-12-16T23:41:07Z", "2010-12-16T23:41:07Z"),
        )
        self.assertEqual(merged.participant(BOB), snapshot.participant(BOB))
        self.assertEqual(merged.streams, snapshot.streams)
        self.assertEqual(merged.participant(BOB).extensions, snapshot.participant(BOB).extensions)
        self.assert_valid(merged.to_bytes())

    def test_hold_and_resume(self) -> None:
        """
        RFC 8068 s3.2.2: on hold Alice only receives; on resume she sends
        again, and the snapshot equals the original (up to the order the
        update lists the streams in).
        """
        start = parse_metadata(_read("rfc8068-s3.2.1-1-metadata.xml"))
        held = start.apply(parse_metadata(_read("rfc8068-s3.2.2-1-metadata.xml")))
        alice = held.stream_assoc("srfBElmCRp2QB23b7Mpk0w==")
        self.assertEqual((alice.send, alice.recv), ((), ("8zc6e0lYTlWIINA6GR+3ag==", "EiXGlc+4TruqqoDaNE76ag==")))
        resumed = held.apply(parse_metadata(_read("rfc8068-s3.2.2-2-metadata.xml")))
        self.assertEqual(replace(resumed, participant_stream_assocs=()), replace(start, participant_stream_assocs=()))
        self.assertEqual(
            [(a.participant_id, set(a.send), set(a.recv)) for a in resumed.participant_stream_assocs],
            [(a.participant_id, set(a.send), set(a.recv)) for a in start.participant_stream_assocs],
        )

    def test_transfer_and_stop(self) -> None:
        """
        RFC 8068 s3.2.3: Carol joins (added at the end), the session's
        Session-ID is replaced, Alice leaves; then s3.2.3-2 stops the
        session.  The result validates.
        """
        start = parse_metadata(_read("rfc8068-s3.2.1-1-metadata.xml"))
        after = start.apply(parse_metadata(_read("rfc8068-s3.2.3-1-metadata.xml")))
        self.assertEqual([p.name for p in after.participants], ["Alice", "Bob", "Carol"])
        self.assertEqual(
            after.sessions[0].sip_session_ids,
            ("3363127f0d084c10876dddd4f8e5eeb9;remote=2272bb7e70fe41dba0025ae9a26d54cf",),
        )
        self.assertEqual(after.sessions[0].group_ref, start.sessions[0].group_ref)
        carol = after.stream_assoc("Atnm1ZRnOC6Pm5MApkrDzQ==")
        self.assertEqual(carol.associate_time, "2013-12-16T23:42:07Z")
        stopped = after.apply(parse_metadata(_read("rfc8068-s3.2.3-2-metadata.xml")))
        self.assertEqual(stopped.sessions[0].stop_time, "2010-12-16T23:41:07Z")
        self.assertEqual(stopped.sessions[0].sip_session_ids, after.sessions[0].sip_session_ids)
        self.assert_valid(stopped.to_bytes())

    def test_session_ids_replaced(self) -> None:
        """
        RFC 8068 s3.3.3: a partial session's sipSessionID list replaces the
        old one (a third party joins, then one leaves).
        """
        start = parse_metadata(_read("rfc8068-s3.3.1-1-metadata.xml"))
        joined = start.apply(parse_metadata(_read("rfc8068-s3.3.3-1-metadata.xml")))
        self.assertEqual(len(joined.sessions[0].sip_session_ids), 3)
        self.assertEqual(joined.sessions[0].start_time, "2010-12-16T23:41:07Z")
        left = joined.apply(parse_metadata(_read("rfc8068-s3.3.3-2-metadata.xml")))
        self.assertEqual(len(left.sessions[0].sip_session_ids), 2)
        self.assertEqual(len(left.participants), 3)

    def test_complete_replaces(self) -> None:
        """
        A complete update replaces the snapshot; a partial one without a
        snapshot is applied onto an empty document.
        """
        a = parse_metadata(_read(RFC7865_COMPLETE))
        b = parse_metadata(_read("rfc8068-s3.5-1-metadata.xml"))
        self.assertEqual(apply_update(a, b), b)
        partial = parse_metadata(_read("rfc7865-s8.2-partial-update.xml"))
        alone = apply_update(None, partial)
        self.assertEqual(alone.datamode, COMPLETE)
        self.assertEqual(alone.participants, partial.participants)


class CallerCalledTests(SynchronousTestCase):
    """
    Telling the caller from the called party.
    """

    def test_first_stream_sender(self) -> None:
        """
        The caller is the only sender of the first stream and the called
        party the sender of the next stream the caller does not send on.
        """
        md = parse_metadata(_read(RFC7865_COMPLETE))
        caller, called = caller_and_called(md)
        self.assertEqual((caller.name, called.name), ("Bob", "Paul"))

    def test_sdp_label_order(self) -> None:
        """
        With the SDP's labels, the first m-line's stream decides.
        """
        md = parse_metadata(_read(RFC7865_COMPLETE))
        caller, called = caller_and_called(md, ["98", "96", "97", "99"])
        self.assertEqual((caller.name, called.name), ("Paul", "Bob"))

    def test_mixed_stream(self) -> None:
        """
        When everybody sends on the first stream (a mixed stream), document
        order decides.
        """
        md = parse_metadata(_read("rfc8068-s3.3.1-1-metadata.xml"))
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
        inbound = parse_metadata(_read(RFC7865_COMPLETE))
        out = forward_metadata(
            inbound,
            caller=PartyOverride(name="Alice Andersson", user="alice", label="labelA"),
            called=PartyOverride(name="Support IVR", user="support", label="labelB"),
            id_factory=_ids(),
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
        inbound = parse_metadata(_read("rfc8068-s3.5-1-metadata.xml"))
        out = forward_metadata(inbound, id_factory=_ids())
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
        inbound = parse_metadata(_read("rfc8068-s3.3.1-1-metadata.xml"))
        out = forward_metadata(
            inbound,
            caller=PartyOverride(label="mix"),
            called=PartyOverride(user="bobby", label="ignored"),
            id_factory=_ids(),
        )
        self.assertEqual([s.label for s in out.metadata.streams], ["mix"])
        self.assertEqual(out.metadata.participants[0], inbound.participants[0])
        self.assertEqual(out.metadata.participants[1].name_ids, (NameID("sip:bobby@biloxy.com", "Bob", "it"),))

    def test_label_fallback_by_position(self) -> None:
        """
        Without stream associations the caller's stream is the first and
        the called party's the second, in SDP label order when given.
        """
        md = metadata_from_labels(["1", "2"], caller_aor="sip:a@x", called_aor="sip:b@x", id_factory=_ids())
        md = replace(md, participant_stream_assocs=())
        out = forward_metadata(
            md, caller=PartyOverride(label="A"), called=PartyOverride(label="B"), labels=["2", "1"], id_factory=_ids()
        )
        self.assertEqual(out.labels, {"1": "B", "2": "A"})

    def test_label_conflict(self) -> None:
        """
        An overridden label that another stream keeps is refused.
        """
        inbound = parse_metadata(_read(RFC7865_COMPLETE))
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
        out = forward_metadata(inbound, caller=PartyOverride(user="alice"), id_factory=_ids())
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
            id_factory=_ids(),
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
        three = metadata_from_labels(["a", "b", "c"], caller_aor="sip:a@x", called_aor="", id_factory=_ids())
        self.assertEqual(len(three.streams), 3)
        self.assertEqual(three.participants[1].aor, ANONYMOUS_AOR)
        none = metadata_from_labels([], caller_aor="sip:a@x", called_aor="sip:b@x")
        for md in (one, three, none):
            self.assert_valid(md.to_bytes())
