"""
Tests for L{aiconnect.siprec.metadata_parser},
L{aiconnect.siprec.metadata_model} and L{aiconnect.siprec.metadata_writer}
(through the public face L{aiconnect.siprec.metadata}): the RFC 7865
corpus, safe parsing, building and partial updates.
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

from aiconnect.errors import RemoteSipError
from aiconnect.siprec.metadata import (
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
    Reason,
    RecordingMetadata,
    RequestSnapshot,
    Session,
    SessionRecordingAssoc,
    Stream,
    apply_update,
    is_metadata_content_type,
    parse_document,
    parse_metadata,
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


def read_sample(name: str) -> bytes:
    return (SIPREC / name).read_bytes()


def counting_ids() -> Callable[[], str]:
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
                parse_metadata(xml.group(0)), parse_metadata(read_sample(stem + "-metadata.xml")), path.name
            )

    def test_rfc7865_complete_model(self) -> None:
        """
        The RFC 7865 s8.1 example gives the expected model: datamode,
        group, session (folded Session-ID joined), participants with
        names and languages, labelled streams and all associations.
        """
        md = parse_metadata(read_sample(RFC7865_COMPLETE))
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
        doc = parse_document(read_sample("rfc7866-fig13-requestsnapshot.xml"))
        self.assertEqual(doc, RequestSnapshot("SRS internal error", "it"))
        self.assert_valid(RequestSnapshot().to_bytes())
        self.assert_valid(RequestSnapshot("a < b", "en").to_bytes())
        self.assertRaises(MetadataError, parse_metadata, read_sample("rfc7866-fig13-requestsnapshot.xml"))

    def test_missing_namespace(self) -> None:
        """
        A document without the RFC 7865 namespace (as some SRCs send) is
        read like a namespaced one.
        """
        plain = re.sub(
            rb"xmlns='urn:ietf:params:xml:ns:recording:1'", b"", read_sample("rfc8068-s3.3.1-1-metadata.xml")
        )
        self.assertNotIn(NAMESPACE.encode(), plain)
        self.assertEqual(parse_metadata(plain), parse_metadata(read_sample("rfc8068-s3.3.1-1-metadata.xml")))

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
        small = read_sample(RFC7865_COMPLETE)
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
        snapshot = parse_metadata(read_sample(RFC7865_COMPLETE))
        update = parse_metadata(read_sample("rfc7865-s8.2-partial-update.xml"))
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
        start = parse_metadata(read_sample("rfc8068-s3.2.1-1-metadata.xml"))
        held = start.apply(parse_metadata(read_sample("rfc8068-s3.2.2-1-metadata.xml")))
        alice = held.stream_assoc("srfBElmCRp2QB23b7Mpk0w==")
        self.assertEqual((alice.send, alice.recv), ((), ("8zc6e0lYTlWIINA6GR+3ag==", "EiXGlc+4TruqqoDaNE76ag==")))
        resumed = held.apply(parse_metadata(read_sample("rfc8068-s3.2.2-2-metadata.xml")))
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
        start = parse_metadata(read_sample("rfc8068-s3.2.1-1-metadata.xml"))
        after = start.apply(parse_metadata(read_sample("rfc8068-s3.2.3-1-metadata.xml")))
        self.assertEqual([p.name for p in after.participants], ["Alice", "Bob", "Carol"])
        self.assertEqual(
            after.sessions[0].sip_session_ids,
            ("3363127f0d084c10876dddd4f8e5eeb9;remote=2272bb7e70fe41dba0025ae9a26d54cf",),
        )
        self.assertEqual(after.sessions[0].group_ref, start.sessions[0].group_ref)
        carol = after.stream_assoc("Atnm1ZRnOC6Pm5MApkrDzQ==")
        self.assertEqual(carol.associate_time, "2013-12-16T23:42:07Z")
        stopped = after.apply(parse_metadata(read_sample("rfc8068-s3.2.3-2-metadata.xml")))
        self.assertEqual(stopped.sessions[0].stop_time, "2010-12-16T23:41:07Z")
        self.assertEqual(stopped.sessions[0].sip_session_ids, after.sessions[0].sip_session_ids)
        self.assert_valid(stopped.to_bytes())

    def test_session_ids_replaced(self) -> None:
        """
        RFC 8068 s3.3.3: a partial session's sipSessionID list replaces the
        old one (a third party joins, then one leaves).
        """
        start = parse_metadata(read_sample("rfc8068-s3.3.1-1-metadata.xml"))
        joined = start.apply(parse_metadata(read_sample("rfc8068-s3.3.3-1-metadata.xml")))
        self.assertEqual(len(joined.sessions[0].sip_session_ids), 3)
        self.assertEqual(joined.sessions[0].start_time, "2010-12-16T23:41:07Z")
        left = joined.apply(parse_metadata(read_sample("rfc8068-s3.3.3-2-metadata.xml")))
        self.assertEqual(len(left.sessions[0].sip_session_ids), 2)
        self.assertEqual(len(left.participants), 3)

    def test_complete_replaces(self) -> None:
        """
        A complete update replaces the snapshot; a partial one without a
        snapshot is applied onto an empty document.
        """
        a = parse_metadata(read_sample(RFC7865_COMPLETE))
        b = parse_metadata(read_sample("rfc8068-s3.5-1-metadata.xml"))
        self.assertEqual(apply_update(a, b), b)
        partial = parse_metadata(read_sample("rfc7865-s8.2-partial-update.xml"))
        alone = apply_update(None, partial)
        self.assertEqual(alone.datamode, COMPLETE)
        self.assertEqual(alone.participants, partial.participants)
