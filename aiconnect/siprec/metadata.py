# -*- test-case-name: tests.siprec.test_metadata -*-
"""
SIPRec recording metadata (RFC 7865, used as RFC 7866 s9 and RFC 8068
describe): safe parsing, the model, partial updates, building, and the
rewrite for forwarding a session to another SRS.

Parsing (L{parse_metadata}, L{parse_document}) is safe by construction:

    - documents larger than C{max_size} octets (64 KiB by default) are
      refused before parsing;
    - any document type declaration is refused, so there are no entities
      to expand (billion laughs, quadratic blow-up) and no external
      entities or DTDs to fetch (XXE): the raw octets are checked for
      C{<!DOCTYPE} and C{<!ENTITY}, and the expat parser refuses a DOCTYPE,
      an entity declaration or an external entity reference in any
      encoding;
    - the tree is built by L{xml.etree.ElementTree.TreeBuilder} from expat
      events, so nothing but elements, attributes and text survives.

Every failure raises L{MetadataError}, a L{RemoteSipError} with status hint
400.  Documents in the RFC 7865 namespace are read, and so are documents
without any namespace (some SRCs send them); elements in other namespaces
are extensions (RFC 7865 s6.12), kept as serialized XML.  Values are
normalized: identifiers lose their white space, times and labels are
stripped, a folded C{sipSessionID} is joined again (C{"a;\\n remote=b"} ->
C{"a;remote=b"}).

The model (L{RecordingMetadata} and its parts) is made of frozen value
objects.  L{RecordingMetadata.to_bytes} writes the elements in the order of
the RFC 7865 s9 schema, with C{xmlns="urn:ietf:params:xml:ns:recording:1"}
on the root (RFC 7865 s5.1), so what we build validates against it.

Partial updates (RFC 7865 s5.1.2, RFC 8068 examples) are applied onto a
complete snapshot by L{apply_update}; see there for the merge rules.

Caller and called party: RFC 7865 does not name them.  L{caller_and_called}
applies this rule, which matches what SRCs send (the first stream is the
calling party's, and the caller is listed first):

    1. order the streams by the SDP's labels when they are given (m-line
       order), else by document order;
    2. the caller is the only participant that sends on the first stream;
       when that stream has no single sender (a mixed stream, or no
       association), the caller is the first participant in document order;
    3. the called party is the first participant that is the only sender
       of a later stream (in that order) the caller does not send on;
       failing that, the first other participant in document order.

Participants that have left (a C{disassociate-time}) are not treated
differently.

L{forward_metadata} builds the metadata for an outbound recording session
(RFC 7866 s9.1) from the inbound one with the order's caller / called
overrides (name, AOR user part, stream label), new session ids, and
every identifier and time made valid for the schema.

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

import base64
import re
import secrets
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Sequence
from xml.parsers import expat

from aiconnect.errors import LocalSipError, RemoteSipError

__all__ = [
    "ANONYMOUS_AOR",
    "COMPLETE",
    "CONTENT_TYPES",
    "DEFAULT_MAX_SIZE",
    "MAX_DEPTH",
    "ForwardedMetadata",
    "Group",
    "MetadataError",
    "NAMESPACE",
    "NameID",
    "PARTIAL",
    "Participant",
    "ParticipantSessionAssoc",
    "ParticipantStreamAssoc",
    "PartyOverride",
    "Reason",
    "RecordingMetadata",
    "RequestSnapshot",
    "Session",
    "SessionRecordingAssoc",
    "Stream",
    "apply_update",
    "caller_and_called",
    "forward_metadata",
    "is_metadata_content_type",
    "metadata_from_labels",
    "new_id",
    "parse_document",
    "parse_metadata",
    "replace_aor_user",
]

#: The RFC 7865 namespace (s5.1, s11.1).
NAMESPACE = "urn:ietf:params:xml:ns:recording:1"
XML_NAMESPACE = "http://www.w3.org/XML/1998/namespace"
_XML_LANG = "{%s}lang" % (XML_NAMESPACE,)

#: The metadata body's media types: RFC 7865 s5 / s11.2 registers
#: C{application/rs-metadata+xml}; RFC 7866 and RFC 8068 examples write
#: C{application/rs-metadata}.  Both are accepted; we send the first.
CONTENT_TYPES = ("application/rs-metadata+xml", "application/rs-metadata")

#: The largest metadata document we parse, in octets.
DEFAULT_MAX_SIZE = 64 * 1024

#: The deepest element nesting we parse (RFC 7865 documents need 4; the
#: bound keeps extension elements from exhausting the stack).
MAX_DEPTH = 64

#: C{<datamode>} values (RFC 7865 s5.1.2).
COMPLETE = "complete"
PARTIAL = "partial"

#: The AOR given to a participant that has none (RFC 3323 s4.1.1.3
#: convention), since the schema requires one.
ANONYMOUS_AOR = "sip:anonymous@anonymous.invalid"


class MetadataError(RemoteSipError):
    """
    A metadata document we refuse: too large, not well-formed, with a
    DOCTYPE or entity declaration, or not RFC 7865 metadata (status hint
    400).
    """

    default_status_hint = 400


def is_metadata_content_type(value: str | None) -> bool:
    """
    Whether a C{Content-Type} value is one of L{CONTENT_TYPES}
    (case-insensitive, parameters ignored).
    """
    if not value:
        return False
    return value.split(";", 1)[0].strip().lower() in CONTENT_TYPES


# --------------------------------------------------------------------------
# The model


@dataclass(frozen=True, slots=True)
class Group:
    """
    C{<group>} (RFC 7865 s6.2): related communication sessions.

    @ivar extensions: child elements of other namespaces, as XML text.
    """

    group_id: str
    associate_time: str | None = None
    disassociate_time: str | None = None
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Reason:
    """
    C{<reason>} of a session (RFC 7865 s6.3): why it ended.

    @ivar cause: the protocol's cause code (an C{xs:short}).
    @ivar protocol: C{SIP} by default.
    """

    text: str
    cause: int
    protocol: str | None = None


@dataclass(frozen=True, slots=True)
class Session:
    """
    C{<session>} (RFC 7865 s6.3): one communication session.

    @ivar sip_session_ids: the C{<sipSessionID>} values (RFC 7989
        Session-ID), white space removed around C{;}.
    @ivar group_ref: the C{group_id} of its group, or C{None}.
    """

    session_id: str
    sip_session_ids: tuple[str, ...] = ()
    reasons: tuple[Reason, ...] = ()
    group_ref: str | None = None
    start_time: str | None = None
    stop_time: str | None = None
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NameID:
    """
    C{<nameID>} (RFC 7865 s6.5): an address of record and its display name.

    @ivar aor: the AOR URI.
    @ivar name: the display name, or C{None}.
    @ivar lang: the name's C{xml:lang}, or C{None}.
    """

    aor: str
    name: str | None = None
    lang: str | None = None


@dataclass(frozen=True, slots=True)
class Participant:
    """
    C{<participant>} (RFC 7865 s6.5).

    @ivar name_ids: its AORs with their names (the schema requires one).
    """

    participant_id: str
    name_ids: tuple[NameID, ...] = ()
    extensions: tuple[str, ...] = ()

    @property
    def aors(self) -> tuple[str, ...]:
        """
        Every AOR, in order.
        """
        return tuple(n.aor for n in self.name_ids)

    @property
    def aor(self) -> str | None:
        """
        The first AOR, or C{None}.
        """
        return self.name_ids[0].aor if self.name_ids else None

    @property
    def names(self) -> tuple[tuple[str, str | None], ...]:
        """
        Every display name with its language, in order.
        """
        return tuple((n.name, n.lang) for n in self.name_ids if n.name is not None)

    @property
    def name(self) -> str | None:
        """
        The first display name, or C{None}.
        """
        for n in self.name_ids:
            if n.name is not None:
                return n.name
        return None


@dataclass(frozen=True, slots=True)
class Stream:
    """
    C{<stream>} (RFC 7865 s6.6): one media stream of a session.

    @ivar session_id: the session it belongs to, or C{None}.
    @ivar label: the SDP C{a=label} of the recording session's stream (RFC
        7866 s7.1.1), or C{None}.
    """

    stream_id: str
    session_id: str | None = None
    label: str | None = None
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionRecordingAssoc:
    """
    C{<sessionrecordingassoc>} (RFC 7865 s6.4): a session being recorded.
    """

    session_id: str
    associate_time: str | None = None
    disassociate_time: str | None = None
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ParticipantSessionAssoc:
    """
    C{<participantsessionassoc>} (RFC 7865 s6.7): a participant joining or
    leaving a session.

    @ivar params: the C{<param pname pval>} pairs.
    """

    participant_id: str
    session_id: str
    associate_time: str | None = None
    disassociate_time: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ParticipantStreamAssoc:
    """
    C{<participantstreamassoc>} (RFC 7865 s6.8): the streams a participant
    sends and receives.

    @ivar send: the stream ids it sends on.
    @ivar recv: the stream ids it receives.
    """

    participant_id: str
    send: tuple[str, ...] = ()
    recv: tuple[str, ...] = ()
    associate_time: str | None = None
    disassociate_time: str | None = None
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RecordingMetadata:
    """
    One C{<recording>} document (RFC 7865 s6.1).

    @ivar datamode: L{COMPLETE} or L{PARTIAL} (a document without
        C{<datamode>} is taken as complete).
    @ivar extensions: root-level children of other namespaces, as XML text.
    """

    datamode: str = COMPLETE
    groups: tuple[Group, ...] = ()
    sessions: tuple[Session, ...] = ()
    participants: tuple[Participant, ...] = ()
    streams: tuple[Stream, ...] = ()
    session_recording_assocs: tuple[SessionRecordingAssoc, ...] = ()
    participant_session_assocs: tuple[ParticipantSessionAssoc, ...] = ()
    participant_stream_assocs: tuple[ParticipantStreamAssoc, ...] = ()
    extensions: tuple[str, ...] = ()

    @property
    def is_partial(self) -> bool:
        """
        Whether this is a partial update (RFC 7865 s5.1.2).
        """
        return self.datamode == PARTIAL

    def participant(self, participant_id: str) -> Participant | None:
        """
        The participant with this id, or C{None}.
        """
        for p in self.participants:
            if p.participant_id == participant_id:
                return p
        return None

    def session(self, session_id: str) -> Session | None:
        """
        The session with this id, or C{None}.
        """
        for s in self.sessions:
            if s.session_id == session_id:
                return s
        return None

    def stream(self, stream_id: str) -> Stream | None:
        """
        The stream with this id, or C{None}.
        """
        for s in self.streams:
            if s.stream_id == stream_id:
                return s
        return None

    def stream_by_label(self, label: str) -> Stream | None:
        """
        The first stream labelled C{label}, or C{None}.
        """
        for s in self.streams:
            if s.label == label:
                return s
        return None

    def stream_assoc(self, participant_id: str) -> ParticipantStreamAssoc | None:
        """
        The participant's C{<participantstreamassoc>}, or C{None}.
        """
        for a in self.participant_stream_assocs:
            if a.participant_id == participant_id:
                return a
        return None

    def senders(self, stream_id: str) -> tuple[Participant, ...]:
        """
        The participants sending on a stream, in document order.
        """
        ids = {a.participant_id for a in self.participant_stream_assocs if stream_id in a.send}
        return tuple(p for p in self.participants if p.participant_id in ids)

    def apply(self, update: RecordingMetadata) -> RecordingMetadata:
        """
        This snapshot with C{update} applied; see L{apply_update}.
        """
        return apply_update(self, update)

    def to_bytes(self) -> bytes:
        """
        The document, UTF-8, elements in the schema's order (RFC 7865 s9).
        """
        return _build(self).encode("utf-8")


@dataclass(frozen=True, slots=True)
class RequestSnapshot:
    """
    C{<requestsnapshot>} (RFC 7865 s7, RFC 7866 s9.2): an SRS asking the
    SRC for a complete snapshot.

    @ivar reason: the C{<requestreason>} text, or C{None}.
    @ivar lang: its C{xml:lang}, or C{None}.
    """

    reason: str | None = None
    lang: str | None = None
    extensions: tuple[str, ...] = ()

    def to_bytes(self) -> bytes:
        """
        The document, UTF-8.
        """
        out = ['<?xml version="1.0" encoding="UTF-8"?>', f'<requestsnapshot xmlns="{NAMESPACE}">']
        if self.reason is not None:
            out.append("  " + _text_element("requestreason", self.reason, self.lang))
        out.extend("  " + x for x in self.extensions)
        out.append("</requestsnapshot>")
        return ("\n".join(out) + "\n").encode("utf-8")


# --------------------------------------------------------------------------
# Safe parsing


def _refuse_doctype(*args: object) -> None:
    raise MetadataError("metadata must not contain a DOCTYPE declaration")


def _refuse_entity(*args: object) -> None:
    raise MetadataError("metadata must not declare entities")


def _refuse_external(*args: object) -> int:
    raise MetadataError("metadata must not reference external entities")


def _qname(name: str) -> str:
    # expat with namespace_separator="}" gives "uri}local".
    return "{" + name if "}" in name else name


def _safe_tree(data: bytes | str, max_size: int) -> ET.Element:
    """
    Parse C{data} into an element tree, refusing DTDs and entities.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > max_size:
        raise MetadataError(f"metadata larger than {max_size} octets")
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        raise MetadataError("metadata must not contain DOCTYPE or ENTITY declarations")
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_entity
    parser.UnparsedEntityDeclHandler = _refuse_entity
    parser.ExternalEntityRefHandler = _refuse_external

    depth = [0]

    def start(name: str, attrs: dict[str, str]) -> None:
        depth[0] += 1
        if depth[0] > MAX_DEPTH:
            raise MetadataError(f"metadata nested deeper than {MAX_DEPTH} elements")
        builder.start(_qname(name), {_qname(k): v for k, v in attrs.items()})

    def end(name: str) -> None:
        depth[0] -= 1
        builder.end(_qname(name))

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(raw, True)
    except expat.ExpatError as e:
        raise MetadataError(f"metadata is not well-formed XML: {expat.ErrorString(e.code)}") from None
    except (LookupError, ValueError, UnicodeError) as e:
        # An unknown encoding in the XML declaration (found by fuzzing:
        # expat raises LookupError for encoding="UTFt8").
        raise MetadataError(f"metadata cannot be decoded: {type(e).__name__}") from None
    try:
        return builder.close()
    except (AssertionError, IndexError):  # pragma: no cover (expat checks balance)
        raise MetadataError("metadata is not well-formed XML") from None


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def _ours(elem: ET.Element) -> str | None:
    """
    The local name of a recording-namespace (or no-namespace) element, or
    C{None} for an extension.
    """
    ns, local = _split(elem.tag)
    return local if ns in (NAMESPACE, "") else None


def _extension(elem: ET.Element) -> str | None:
    ns, _ = _split(elem.tag)
    if ns in (NAMESPACE, ""):
        return None
    elem.tail = None
    return ET.tostring(elem, encoding="unicode")


def _text(elem: ET.Element) -> str:
    return (elem.text or "").strip()


def _id(value: str | None) -> str:
    return "".join((value or "").split())


def _sip_session_id(value: str) -> str:
    return re.sub(r"\s*;\s*", ";", " ".join(value.split()))


def _children(elem: ET.Element) -> Iterable[tuple[str | None, ET.Element]]:
    for child in elem:
        yield _ours(child), child


def _attr(elem: ET.Element, name: str) -> str | None:
    value = elem.get(name)
    if value is None:
        # Tolerate an attribute written in the recording namespace.
        value = elem.get("{%s}%s" % (NAMESPACE, name))
    return value


def _required_id(elem: ET.Element, name: str, what: str) -> str:
    value = _id(_attr(elem, name))
    if not value:
        raise MetadataError(f"<{what}> without {name}")
    return value


def _times(elem: ET.Element) -> dict[str, str]:
    out = {}
    for local, child in _children(elem):
        if local == "associate-time":
            out["associate_time"] = _text(child)
        elif local == "disassociate-time":
            out["disassociate_time"] = _text(child)
    return out


def _extensions(elem: ET.Element) -> tuple[str, ...]:
    return tuple(x for x in (_extension(c) for c in elem) if x is not None)


def _parse_group(elem: ET.Element) -> Group:
    return Group(_required_id(elem, "group_id", "group"), extensions=_extensions(elem), **_times(elem))


def _parse_session(elem: ET.Element) -> Session:
    sip_ids: list[str] = []
    reasons: list[Reason] = []
    values: dict[str, str] = {}
    for local, child in _children(elem):
        if local == "sipSessionID":
            sip_ids.append(_sip_session_id(child.text or ""))
        elif local == "reason":
            try:
                cause = int((_attr(child, "cause") or "").strip())
            except ValueError:
                continue
            if -32768 <= cause <= 32767:
                reasons.append(Reason(_text(child), cause, _attr(child, "protocol")))
        elif local == "group-ref":
            values["group_ref"] = _id(child.text)
        elif local == "start-time":
            values["start_time"] = _text(child)
        elif local == "stop-time":
            values["stop_time"] = _text(child)
    return Session(
        _required_id(elem, "session_id", "session"),
        sip_session_ids=tuple(sip_ids),
        reasons=tuple(reasons),
        extensions=_extensions(elem),
        **values,
    )


def _parse_participant(elem: ET.Element) -> Participant:
    name_ids: list[NameID] = []
    for local, child in _children(elem):
        if local != "nameID":
            continue
        aor = (_attr(child, "aor") or "").strip()
        name: str | None = None
        lang: str | None = None
        for clocal, grand in _children(child):
            if clocal == "name" and name is None:
                name = _text(grand)
                lang = grand.get(_XML_LANG)
        if aor:
            name_ids.append(NameID(aor, name, lang))
    return Participant(
        _required_id(elem, "participant_id", "participant"),
        name_ids=tuple(name_ids),
        extensions=_extensions(elem),
    )


def _parse_stream(elem: ET.Element) -> Stream:
    label: str | None = None
    for local, child in _children(elem):
        if local == "label":
            label = _text(child)
    session_id = _id(_attr(elem, "session_id")) or None
    return Stream(
        _required_id(elem, "stream_id", "stream"),
        session_id=session_id,
        label=label,
        extensions=_extensions(elem),
    )


def _parse_sra(elem: ET.Element) -> SessionRecordingAssoc:
    return SessionRecordingAssoc(
        _required_id(elem, "session_id", "sessionrecordingassoc"),
        extensions=_extensions(elem),
        **_times(elem),
    )


def _parse_psa(elem: ET.Element) -> ParticipantSessionAssoc:
    params = tuple(
        ((_attr(child, "pname") or ""), (_attr(child, "pval") or ""))
        for local, child in _children(elem)
        if local == "param"
    )
    return ParticipantSessionAssoc(
        _required_id(elem, "participant_id", "participantsessionassoc"),
        _required_id(elem, "session_id", "participantsessionassoc"),
        params=params,
        extensions=_extensions(elem),
        **_times(elem),
    )


def _parse_pstra(elem: ET.Element) -> ParticipantStreamAssoc:
    send = tuple(_id(c.text) for local, c in _children(elem) if local == "send")
    recv = tuple(_id(c.text) for local, c in _children(elem) if local == "recv")
    return ParticipantStreamAssoc(
        _required_id(elem, "participant_id", "participantstreamassoc"),
        send=tuple(s for s in send if s),
        recv=tuple(r for r in recv if r),
        extensions=_extensions(elem),
        **_times(elem),
    )


def _parse_recording(root: ET.Element) -> RecordingMetadata:
    datamode = COMPLETE
    lists: dict[str, list] = {
        "group": [],
        "session": [],
        "participant": [],
        "stream": [],
        "sessionrecordingassoc": [],
        "participantsessionassoc": [],
        "participantstreamassoc": [],
    }
    parsers: dict[str, Callable[[ET.Element], object]] = {
        "group": _parse_group,
        "session": _parse_session,
        "participant": _parse_participant,
        "stream": _parse_stream,
        "sessionrecordingassoc": _parse_sra,
        "participantsessionassoc": _parse_psa,
        "participantstreamassoc": _parse_pstra,
    }
    extensions: list[str] = []
    for local, child in _children(root):
        if local is None:
            ext = _extension(child)
            if ext is not None:
                extensions.append(ext)
        elif local == "datamode":
            value = _text(child).lower()
            if value not in (COMPLETE, PARTIAL):
                raise MetadataError(f"unknown datamode {value[:20]!r}")
            datamode = value
        elif local in parsers:
            lists[local].append(parsers[local](child))
        # Unknown elements of our namespace (a later revision) are ignored.
    return RecordingMetadata(
        datamode=datamode,
        groups=tuple(lists["group"]),
        sessions=tuple(lists["session"]),
        participants=tuple(lists["participant"]),
        streams=tuple(lists["stream"]),
        session_recording_assocs=tuple(lists["sessionrecordingassoc"]),
        participant_session_assocs=tuple(lists["participantsessionassoc"]),
        participant_stream_assocs=tuple(lists["participantstreamassoc"]),
        extensions=tuple(extensions),
    )


def _parse_request_snapshot(root: ET.Element) -> RequestSnapshot:
    reason: str | None = None
    lang: str | None = None
    for local, child in _children(root):
        if local == "requestreason":
            reason = _text(child)
            lang = child.get(_XML_LANG)
    return RequestSnapshot(reason, lang, _extensions(root))


def parse_document(
    data: bytes | str, max_size: int = DEFAULT_MAX_SIZE
) -> RecordingMetadata | RequestSnapshot:
    """
    Parse a C{<recording>} or C{<requestsnapshot>} document (RFC 7865 s6,
    s7), safely (see the module docstring).

    @param data: the body of the metadata part.
    @param max_size: the largest document accepted, in octets.
    @raise MetadataError: when the document is refused.
    """
    root = _safe_tree(data, max_size)
    ns, local = _split(root.tag)
    if ns not in (NAMESPACE, ""):
        raise MetadataError("root element is not in the RFC 7865 namespace")
    if local == "recording":
        return _parse_recording(root)
    if local == "requestsnapshot":
        return _parse_request_snapshot(root)
    raise MetadataError(f"unexpected root element <{local[:40]}>")


def parse_metadata(data: bytes | str, max_size: int = DEFAULT_MAX_SIZE) -> RecordingMetadata:
    """
    Parse a C{<recording>} document (RFC 7865 s6), safely (see the module
    docstring).

    @param data: the body of the C{application/rs-metadata+xml} part.
    @param max_size: the largest document accepted, in octets.
    @raise MetadataError: when the document is refused, or is a
        C{<requestsnapshot>}.
    """
    doc = parse_document(data, max_size)
    if not isinstance(doc, RecordingMetadata):
        raise MetadataError("a <requestsnapshot> is not recording metadata")
    return doc


# --------------------------------------------------------------------------
# Building


# XML 1.0 s2.2: characters allowed in a document.
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _escape(text: str) -> str:
    text = _NOT_XML_CHAR.sub("", text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_attr(text: str) -> str:
    return (
        _escape(text)
        .replace('"', "&quot;")
        .replace("\t", "&#9;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
    )


def _text_element(name: str, text: str, lang: str | None = None) -> str:
    lang_attr = f' xml:lang="{_escape_attr(lang)}"' if lang else ""
    return f"<{name}{lang_attr}>{_escape(text)}</{name}>"


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def line(self, depth: int, text: str) -> None:
        self.lines.append("  " * depth + text)

    def element(self, depth: int, name: str, attrs: Sequence[tuple[str, str | None]], body: list[str]) -> None:
        attr_text = "".join(f' {k}="{_escape_attr(v)}"' for k, v in attrs if v is not None)
        if not body:
            self.line(depth, f"<{name}{attr_text}/>")
            return
        self.line(depth, f"<{name}{attr_text}>")
        for b in body:
            self.line(depth + 1, b)
        self.line(depth, f"</{name}>")


def _time_lines(associate: str | None, disassociate: str | None) -> list[str]:
    out = []
    if associate is not None:
        out.append(_text_element("associate-time", associate))
    if disassociate is not None:
        out.append(_text_element("disassociate-time", disassociate))
    return out


def _build(md: RecordingMetadata) -> str:
    w = _Writer()
    w.line(0, '<?xml version="1.0" encoding="UTF-8"?>')
    w.line(0, f'<recording xmlns="{NAMESPACE}">')
    w.line(1, _text_element("datamode", md.datamode))
    for g in md.groups:
        w.element(
            1,
            "group",
            [("group_id", g.group_id)],
            _time_lines(g.associate_time, g.disassociate_time) + list(g.extensions),
        )
    for s in md.sessions:
        body = [_text_element("sipSessionID", v) for v in s.sip_session_ids]
        for r in s.reasons:
            proto = f' protocol="{_escape_attr(r.protocol)}"' if r.protocol is not None else ""
            body.append(f'<reason cause="{r.cause}"{proto}>{_escape(r.text)}</reason>')
        if s.group_ref is not None:
            body.append(_text_element("group-ref", s.group_ref))
        if s.start_time is not None:
            body.append(_text_element("start-time", s.start_time))
        if s.stop_time is not None:
            body.append(_text_element("stop-time", s.stop_time))
        w.element(1, "session", [("session_id", s.session_id)], body + list(s.extensions))
    for p in md.participants:
        w.line(1, f'<participant participant_id="{_escape_attr(p.participant_id)}">')
        for n in p.name_ids:
            if n.name is None:
                w.line(2, f'<nameID aor="{_escape_attr(n.aor)}"/>')
            else:
                w.line(2, f'<nameID aor="{_escape_attr(n.aor)}">')
                w.line(3, _text_element("name", n.name, n.lang))
                w.line(2, "</nameID>")
        for x in p.extensions:
            w.line(2, x)
        w.line(1, "</participant>")
    for st in md.streams:
        body = [_text_element("label", st.label)] if st.label is not None else []
        w.element(
            1,
            "stream",
            [("stream_id", st.stream_id), ("session_id", st.session_id)],
            body + list(st.extensions),
        )
    for sra in md.session_recording_assocs:
        w.element(
            1,
            "sessionrecordingassoc",
            [("session_id", sra.session_id)],
            _time_lines(sra.associate_time, sra.disassociate_time) + list(sra.extensions),
        )
    for psa in md.participant_session_assocs:
        body = _time_lines(psa.associate_time, psa.disassociate_time)
        body += [f'<param pname="{_escape_attr(k)}" pval="{_escape_attr(v)}"/>' for k, v in psa.params]
        w.element(
            1,
            "participantsessionassoc",
            [("participant_id", psa.participant_id), ("session_id", psa.session_id)],
            body + list(psa.extensions),
        )
    for pst in md.participant_stream_assocs:
        body = [_text_element("send", s) for s in pst.send]
        body += [_text_element("recv", r) for r in pst.recv]
        body += _time_lines(pst.associate_time, pst.disassociate_time)
        w.element(
            1,
            "participantstreamassoc",
            [("participant_id", pst.participant_id)],
            body + list(pst.extensions),
        )
    for x in md.extensions:
        w.line(1, x)
    w.line(0, "</recording>")
    return "\n".join(w.lines) + "\n"


# --------------------------------------------------------------------------
# Partial updates


def _merge_keyed(old: Sequence, new: Sequence, key: Callable, merge: Callable) -> tuple:
    out = list(old)
    index = {key(x): i for i, x in enumerate(out)}
    for item in new:
        k = key(item)
        if k in index:
            out[index[k]] = merge(out[index[k]], item)
        else:
            index[k] = len(out)
            out.append(item)
    return tuple(out)


def _pick(new: object, old: object) -> object:
    return new if new is not None else old


def _merge_times(old, new) -> dict:
    return {
        "associate_time": _pick(new.associate_time, old.associate_time),
        "disassociate_time": _pick(new.disassociate_time, old.disassociate_time),
        "extensions": new.extensions or old.extensions,
    }


def _merge_group(old: Group, new: Group) -> Group:
    return replace(old, **_merge_times(old, new))


def _merge_session(old: Session, new: Session) -> Session:
    return replace(
        old,
        sip_session_ids=new.sip_session_ids or old.sip_session_ids,
        reasons=new.reasons or old.reasons,
        group_ref=_pick(new.group_ref, old.group_ref),
        start_time=_pick(new.start_time, old.start_time),
        stop_time=_pick(new.stop_time, old.stop_time),
        extensions=new.extensions or old.extensions,
    )


def _merge_participant(old: Participant, new: Participant) -> Participant:
    return replace(
        old,
        name_ids=new.name_ids or old.name_ids,
        extensions=new.extensions or old.extensions,
    )


def _merge_stream(old: Stream, new: Stream) -> Stream:
    return replace(
        old,
        session_id=_pick(new.session_id, old.session_id),
        label=_pick(new.label, old.label),
        extensions=new.extensions or old.extensions,
    )


def _merge_sra(old: SessionRecordingAssoc, new: SessionRecordingAssoc) -> SessionRecordingAssoc:
    return replace(old, **_merge_times(old, new))


def _merge_psa(old: ParticipantSessionAssoc, new: ParticipantSessionAssoc) -> ParticipantSessionAssoc:
    return replace(old, params=new.params or old.params, **_merge_times(old, new))


def _merge_pstra(old: ParticipantStreamAssoc, new: ParticipantStreamAssoc) -> ParticipantStreamAssoc:
    lists = {"send": new.send, "recv": new.recv} if (new.send or new.recv) else {}
    return replace(old, **lists, **_merge_times(old, new))


def apply_update(snapshot: RecordingMetadata | None, update: RecordingMetadata) -> RecordingMetadata:
    """
    The complete metadata after C{update} (RFC 7865 s5.1.2, RFC 7866 s9.1).

    A complete C{update} replaces the snapshot.  A partial one is merged
    element by element, matched by id (C{participantsessionassoc} by
    participant and session, C{participantstreamassoc} by participant):

        - an element with an unknown id is added at the end of its list;
        - a known element takes every child value the update carries and
          keeps the others (a session's C{<stop-time>} alone sets the stop
          time; C{<sipSessionID>}s, C{<reason>}s, a participant's
          C{<nameID>}s, extensions: when present, they replace the old
          list);
        - a C{participantstreamassoc} that carries any C{<send>} or
          C{<recv>} replaces both lists (RFC 8068 s3.2.2: a participant on
          hold is sent with C{<recv>} only and stops sending);
        - nothing is ever removed: RFC 7865 ends associations with
          C{disassociate-time} and sessions with C{stop-time}.

    A partial update without a snapshot (one that RFC 7866 s9.1 forbids) is
    applied onto an empty document.

    @return: the merged metadata, with C{datamode} complete.
    """
    if not update.is_partial:
        return update
    base = snapshot if snapshot is not None else RecordingMetadata()
    return RecordingMetadata(
        datamode=COMPLETE,
        groups=_merge_keyed(base.groups, update.groups, lambda g: g.group_id, _merge_group),
        sessions=_merge_keyed(base.sessions, update.sessions, lambda s: s.session_id, _merge_session),
        participants=_merge_keyed(
            base.participants, update.participants, lambda p: p.participant_id, _merge_participant
        ),
        streams=_merge_keyed(base.streams, update.streams, lambda s: s.stream_id, _merge_stream),
        session_recording_assocs=_merge_keyed(
            base.session_recording_assocs, update.session_recording_assocs, lambda a: a.session_id, _merge_sra
        ),
        participant_session_assocs=_merge_keyed(
            base.participant_session_assocs,
            update.participant_session_assocs,
            lambda a: (a.participant_id, a.session_id),
            _merge_psa,
        ),
        participant_stream_assocs=_merge_keyed(
            base.participant_stream_assocs,
            update.participant_stream_assocs,
            lambda a: a.participant_id,
            _merge_pstra,
        ),
        extensions=update.extensions or base.extensions,
    )


# --------------------------------------------------------------------------
# Caller and called party


def _ordered_streams(md: RecordingMetadata, labels: Sequence[str | None] | None) -> list[Stream]:
    streams = list(md.streams)
    if not labels:
        return streams
    order = {label: i for i, label in reversed(list(enumerate(labels))) if label is not None}
    big = len(order)
    # sorted() is stable: unlabelled or unknown streams keep document order after the others.
    return sorted(streams, key=lambda s: order.get(s.label, big) if s.label is not None else big)


def caller_and_called(
    md: RecordingMetadata, labels: Sequence[str | None] | None = None
) -> tuple[Participant | None, Participant | None]:
    """
    The calling and the called participant, by the rule in the module
    docstring.

    @param md: complete metadata.
    @param labels: the SDP's labels in m-line order, to order the streams
        (optional).
    @return: C{(caller, called)}; either is C{None} when there are not
        enough participants.
    """
    if not md.participants:
        return None, None
    streams = _ordered_streams(md, labels)
    caller: Participant | None = None
    if streams:
        senders = md.senders(streams[0].stream_id)
        if len(senders) == 1:
            caller = senders[0]
    if caller is None:
        caller = md.participants[0]
    called: Participant | None = None
    caller_assoc = md.stream_assoc(caller.participant_id)
    caller_sends = set(caller_assoc.send) if caller_assoc else set()
    for s in streams[1:]:
        if s.stream_id in caller_sends:
            continue
        senders = md.senders(s.stream_id)
        if len(senders) == 1 and senders[0].participant_id != caller.participant_id:
            called = senders[0]
            break
    if called is None:
        for p in md.participants:
            if p.participant_id != caller.participant_id:
                called = p
                break
    return caller, called


# --------------------------------------------------------------------------
# Forwarding


def new_id() -> str:
    """
    A fresh metadata identifier: 128 random bits in base64 (RFC 7865 s6.9
    uses base64-encoded UUIDs).
    """
    return base64.b64encode(secrets.token_bytes(16)).decode("ascii")


# XML Schema Part 2 s3.2.16: base64Binary (white space already removed).
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?\Z")
# XML Schema Part 2 s3.2.7: dateTime.
_DATETIME = re.compile(
    r"-?[0-9]{4,}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])T"
    r"(?:[01][0-9]|2[0-4]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
    r"(?:Z|[+-](?:0[0-9]|1[0-4]):[0-5][0-9])?\Z"
)
# RFC 3261 s25.1: characters allowed unescaped in a user part.
_USER_SAFE = "-_.!~*'()&=+$,;?/"


def replace_aor_user(aor: str, user: str) -> str:
    """
    C{aor} with its user part replaced by C{user} (escaped per RFC 3261
    s25.1): C{sip:alice@example.com} -> C{sip:bob@example.com}; a user part
    is added to a URI without one; the password, if any, is dropped; a
    C{tel:} URI gets C{user} as its number.
    """
    escaped = urllib.parse.quote(user, safe=_USER_SAFE)
    scheme, sep, rest = aor.strip().partition(":")
    if not sep:
        return f"sip:{escaped}@{aor.strip()}" if aor.strip() else f"sip:{escaped}@anonymous.invalid"
    if scheme.lower() == "tel":
        _, semi, params = rest.partition(";")
        return f"{scheme}:{escaped}{semi}{params}"
    at = rest.find("@")
    if at >= 0 and "?" not in rest[:at]:
        return f"{scheme}:{escaped}{rest[at:]}"
    return f"{scheme}:{escaped}@{rest}"


@dataclass(frozen=True, slots=True)
class PartyOverride:
    """
    What a forwarding order changes for one party (SPEC s3: C{caller} /
    C{calledParty}).

    @ivar name: the display name (C{<name>}); replaces every name of the
        participant (C{xml:lang} is dropped, since the language of the new
        name is unknown).
    @ivar user: the AOR user part; replaces it in every AOR.
    @ivar label: the stream label (C{<label>} and the SDP's C{a=label}) of
        the party's stream.
    """

    name: str | None = None
    user: str | None = None
    label: str | None = None


@dataclass(frozen=True, slots=True)
class ForwardedMetadata:
    """
    The result of L{forward_metadata}.

    @ivar metadata: the complete metadata for the outbound session.
    @ivar labels: inbound stream label -> outbound stream label, for every
        labelled stream (the SDP offer to the SRS uses the outbound ones).
    @ivar caller_id: the caller's participant id (outbound), or C{None}.
    @ivar called_id: the called party's participant id (outbound), or
        C{None}.
    """

    metadata: RecordingMetadata
    labels: dict[str, str] = field(default_factory=dict)
    caller_id: str | None = None
    called_id: str | None = None


def _valid_time(value: str | None) -> str | None:
    return value if value is not None and _DATETIME.match(value) else None


def _party_stream(
    md: RecordingMetadata,
    party: Participant,
    streams: list[Stream],
    claimed: set[str],
    fallback: int,
) -> Stream | None:
    assoc = md.stream_assoc(party.participant_id)
    sends = set(assoc.send) if assoc else set()
    for s in streams:
        if s.stream_id in sends and s.stream_id not in claimed:
            return s
    if fallback < len(streams) and streams[fallback].stream_id not in claimed:
        return streams[fallback]
    for s in streams:
        if s.stream_id not in claimed:
            return s
    return None


def forward_metadata(
    inbound: RecordingMetadata,
    *,
    caller: PartyOverride | None = None,
    called: PartyOverride | None = None,
    labels: Sequence[str | None] | None = None,
    id_factory: Callable[[], str] = new_id,
) -> ForwardedMetadata:
    """
    The metadata of an outbound recording session forwarding C{inbound}
    (RFC 7866 s9.1, SPEC s3/s4).

    The participants, streams, associations, groups and extensions are
    kept; then:

        - every session gets a fresh id (references follow);
        - any other id that is not valid C{base64Binary} gets a fresh one,
          consistently (so what we send validates);
        - times that are not valid C{xs:dateTime} are dropped, and a
          participant without an AOR gets L{ANONYMOUS_AOR};
        - the caller's and the called party's overrides are applied (who is
          who: L{caller_and_called}).  A party's stream (the one whose label
          its C{label} replaces) is the first one, in stream order, that it
          sends on and the other party has not taken; failing that the first
          (caller) or second (called) stream, else the first one not taken;
          when every stream is taken (one mixed stream) the called party's
          label is not applied.

    @param inbound: the complete inbound metadata.
    @param caller: the caller's overrides, or C{None} to keep them.
    @param called: the called party's overrides, or C{None}.
    @param labels: the inbound SDP's labels in m-line order (orders the
        streams for the caller/called rule).
    @param id_factory: makes fresh ids (L{new_id}; tests pass their own).
    @return: the new metadata (C{datamode} complete) and the label mapping.
    @raise LocalSipError: when an overridden label would repeat another
        stream's label.
    """
    id_map: dict[str, str] = {}

    def fresh(old: str) -> str:
        if old not in id_map:
            id_map[old] = id_factory()
        return id_map[old]

    def keep(old: str) -> str:
        if old in id_map:
            return id_map[old]
        return old if old and _BASE64.match(old) else fresh(old)

    for s in inbound.sessions:
        fresh(s.session_id)
    for a in inbound.session_recording_assocs:
        fresh(a.session_id)
    for st in inbound.streams:
        if st.session_id is not None:
            fresh(st.session_id)
    for psa in inbound.participant_session_assocs:
        fresh(psa.session_id)

    md = RecordingMetadata(
        datamode=COMPLETE,
        groups=tuple(
            replace(
                g,
                group_id=keep(g.group_id),
                associate_time=_valid_time(g.associate_time),
                disassociate_time=_valid_time(g.disassociate_time),
            )
            for g in inbound.groups
        ),
        sessions=tuple(
            replace(
                s,
                session_id=keep(s.session_id),
                group_ref=keep(s.group_ref) if s.group_ref is not None else None,
                start_time=_valid_time(s.start_time),
                stop_time=_valid_time(s.stop_time),
            )
            for s in inbound.sessions
        ),
        participants=tuple(
            replace(
                p,
                participant_id=keep(p.participant_id),
                name_ids=p.name_ids or (NameID(ANONYMOUS_AOR),),
            )
            for p in inbound.participants
        ),
        streams=tuple(
            replace(
                st,
                stream_id=keep(st.stream_id),
                session_id=keep(st.session_id) if st.session_id is not None else None,
            )
            for st in inbound.streams
        ),
        session_recording_assocs=tuple(
            replace(
                a,
                session_id=keep(a.session_id),
                associate_time=_valid_time(a.associate_time),
                disassociate_time=_valid_time(a.disassociate_time),
            )
            for a in inbound.session_recording_assocs
        ),
        participant_session_assocs=tuple(
            replace(
                a,
                participant_id=keep(a.participant_id),
                session_id=keep(a.session_id),
                associate_time=_valid_time(a.associate_time),
                disassociate_time=_valid_time(a.disassociate_time),
            )
            for a in inbound.participant_session_assocs
        ),
        participant_stream_assocs=tuple(
            replace(
                a,
                participant_id=keep(a.participant_id),
                send=tuple(keep(s) for s in a.send),
                recv=tuple(keep(r) for r in a.recv),
                associate_time=_valid_time(a.associate_time),
                disassociate_time=_valid_time(a.disassociate_time),
            )
            for a in inbound.participant_stream_assocs
        ),
        extensions=inbound.extensions,
    )

    caller_p, called_p = caller_and_called(md, labels)
    streams = _ordered_streams(md, labels)
    claimed: set[str] = set()
    new_labels: dict[str, str] = {}  # stream id -> new label
    participants = {p.participant_id: p for p in md.participants}
    for party, override, fallback in ((caller_p, caller, 0), (called_p, called, 1)):
        if party is None or override is None:
            continue
        p = participants[party.participant_id]
        if override.name is not None:
            p = replace(p, name_ids=tuple(replace(n, name=override.name, lang=None) for n in p.name_ids))
        if override.user is not None:
            p = replace(p, name_ids=tuple(replace(n, aor=replace_aor_user(n.aor, override.user)) for n in p.name_ids))
        participants[p.participant_id] = p
        stream = _party_stream(md, party, streams, claimed, fallback)
        if stream is not None:
            claimed.add(stream.stream_id)
            if override.label is not None:
                new_labels[stream.stream_id] = override.label
    if new_labels:
        final = [new_labels.get(s.stream_id, s.label) for s in md.streams]
        seen: set[str] = set()
        for label in final:
            if label is None:
                continue
            if label in seen:
                raise LocalSipError(f"stream label {label!r} would be used twice")
            seen.add(label)
    md = replace(
        md,
        participants=tuple(participants[p.participant_id] for p in md.participants),
        streams=tuple(
            replace(s, label=new_labels[s.stream_id]) if s.stream_id in new_labels else s for s in md.streams
        ),
    )
    label_map: dict[str, str] = {}
    for old, new in zip(inbound.streams, md.streams):
        if old.label is not None and new.label is not None:
            label_map.setdefault(old.label, new.label)
    return ForwardedMetadata(
        metadata=md,
        labels=label_map,
        caller_id=caller_p.participant_id if caller_p else None,
        called_id=called_p.participant_id if called_p else None,
    )


def metadata_from_labels(
    labels: Sequence[str],
    *,
    caller_aor: str,
    called_aor: str,
    caller_name: str | None = None,
    called_name: str | None = None,
    sip_session_ids: Sequence[str] = (),
    start_time: str | None = None,
    id_factory: Callable[[], str] = new_id,
) -> RecordingMetadata:
    """
    Complete metadata for a session whose SRC sent none (so a forward can
    still send metadata, RFC 7866 s9.1): one session, the caller and the
    called party, one stream per label.  The caller sends on the first
    stream and receives the second, the called party the reverse; with a
    single stream both send and receive on it (a mixed stream, RFC 8068
    s3.3.1); further streams have no association.

    @param labels: the SDP labels in m-line order.
    @param caller_aor: the caller's AOR (the From URI, say).
    @param called_aor: the called party's AOR (the To URI).
    @param caller_name: the caller's display name, if any.
    @param called_name: the called party's display name, if any.
    @param sip_session_ids: the communication session's Session-ID values.
    @param start_time: an C{xs:dateTime}, if known.
    @param id_factory: makes fresh ids.
    """
    session_id = id_factory()
    caller = Participant(id_factory(), (NameID(caller_aor or ANONYMOUS_AOR, caller_name),))
    called = Participant(id_factory(), (NameID(called_aor or ANONYMOUS_AOR, called_name),))
    streams = tuple(Stream(id_factory(), session_id, label) for label in labels)
    ids = [s.stream_id for s in streams]
    if len(ids) >= 2:
        caller_send, called_send = (ids[0],), (ids[1],)
    elif ids:
        caller_send = called_send = (ids[0],)
    else:
        caller_send = called_send = ()
    return RecordingMetadata(
        datamode=COMPLETE,
        sessions=(Session(session_id, tuple(sip_session_ids), start_time=_valid_time(start_time)),),
        participants=(caller, called),
        streams=streams,
        session_recording_assocs=(SessionRecordingAssoc(session_id),),
        participant_session_assocs=(
            ParticipantSessionAssoc(caller.participant_id, session_id),
            ParticipantSessionAssoc(called.participant_id, session_id),
        ),
        participant_stream_assocs=(
            ParticipantStreamAssoc(caller.participant_id, send=caller_send, recv=called_send),
            ParticipantStreamAssoc(called.participant_id, send=called_send, recv=caller_send),
        ),
    )
