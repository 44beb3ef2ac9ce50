# -*- test-case-name: tests.siprec.test_metadata -*-
"""
Safe parsing of RFC 7865 metadata (L{parse_metadata}, L{parse_document}),
and the metadata body's media types (L{CONTENT_TYPES}).

Parsing is safe by construction:

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
in the pre-RFC namespace of the drafts (L{LEGACY_NAMESPACE}) and documents
without any namespace (some SRCs send them); elements in other namespaces
are extensions (RFC 7865 s6.12), kept as serialized XML.

The pre-RFC drafts of RFC 7865 (draft-ietf-siprec-metadata, as Acme
Packet/Oracle, Avaya SBCE, AudioCodes SmartTAP and jambonz still send it)
spell some things differently, and are read into the same model: an C{id}
attribute where the RFC writes C{group_id}, C{session_id},
C{participant_id} or C{stream_id}; C{<participant session="...">} (a
participant-session association) and C{<stream session="...">}; C{<send>}
and C{<recv>} directly inside C{<participant>} (its participant-stream
association).  An AOR written without a URI scheme
(C{aor="2001@192.0.2.1"}) is read as a C{sip:} URI.  Values are
normalized: identifiers lose their white space, times and labels are
stripped, a folded C{sipSessionID} is joined again (C{"a;\\n remote=b"} ->
C{"a;remote=b"}).

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Callable, Iterable
from xml.parsers import expat

from aiconnect.errors import RemoteSipError
from aiconnect.siprec.metadata_model import (
    COMPLETE,
    PARTIAL,
    Group,
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
)
from aiconnect.siprec.metadata_writer import NAMESPACE

__all__ = [
    "CONTENT_TYPES",
    "DEFAULT_MAX_SIZE",
    "LEGACY_NAMESPACE",
    "MAX_DEPTH",
    "MetadataError",
    "XML_NAMESPACE",
    "is_metadata_content_type",
    "parse_document",
    "parse_metadata",
]

XML_NAMESPACE = "http://www.w3.org/XML/1998/namespace"

#: The namespace of the pre-RFC drafts of RFC 7865 (draft-ietf-siprec-metadata
#: before the C{:1} of RFC 7865 s9), still sent by deployed SRCs.
LEGACY_NAMESPACE = "urn:ietf:params:xml:ns:recording"
#: The namespaces read as recording metadata ("" = no namespace).
_READ_NAMESPACES = (NAMESPACE, LEGACY_NAMESPACE, "")
#: A URI scheme (RFC 3986 s3.1) at the start of an AOR.
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
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
        builder.start(_qname(name), {_qname(k): v for k, v in attrs.items()} if attrs else attrs)

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


#: Tag -> what L{_ours} says of it: a document repeats a handful of tags
#: (a call's metadata is read element by element several times).  Bounded:
#: tags a peer invents beyond it are worked out each time, not stored.
_OURS_MEMO: dict[str, str | None] = {}
_OURS_MEMO_MAX = 256


def _ours(elem: ET.Element) -> str | None:
    """
    The local name of a recording-namespace (or no-namespace) element, or
    C{None} for an extension.
    """
    tag = elem.tag
    try:
        return _OURS_MEMO[tag]
    except KeyError:
        pass
    ns, local = _split(tag)
    ours = local if ns in _READ_NAMESPACES else None
    if len(_OURS_MEMO) < _OURS_MEMO_MAX:
        _OURS_MEMO[tag] = ours
    return ours


def _extension(elem: ET.Element) -> str | None:
    ns, _ = _split(elem.tag)
    if ns in _READ_NAMESPACES:
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
    for ns in (NAMESPACE, LEGACY_NAMESPACE):
        if value is None:
            # Tolerate an attribute written in a recording namespace.
            value = elem.get("{%s}%s" % (ns, name))
    return value


def _required_id(elem: ET.Element, name: str, what: str) -> str:
    # The drafts wrote a plain "id" where RFC 7865 writes "<what>_id".
    value = _id(_attr(elem, name)) or _id(_attr(elem, "id"))
    if not value:
        raise MetadataError(f"<{what}> without {name}")
    return value


def _aor(value: str) -> str:
    """
    An AOR as a URI: C{sip:} is put before one written without a scheme
    (C{2001@192.0.2.1}, as AudioCodes writes them).
    """
    value = value.strip()
    if value and _SCHEME_RE.match(value) is None:
        return "sip:" + value
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
    """
    The extension children of C{elem}; those the drafts wrapped in an
    C{<extensiondata>} element of the recording namespace count as its own.
    """
    out: list[str] = []
    for local, child in _children(elem):
        if local == "extensiondata":
            out.extend(_extensions(child))
            continue
        ext = _extension(child)
        if ext is not None:
            out.append(ext)
    return tuple(out)


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
        aor = _aor(_attr(child, "aor") or "")
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
    session_id = _id(_attr(elem, "session_id")) or _id(_attr(elem, "session")) or None
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


def _send_recv(elem: ET.Element) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """
    The stream ids of C{elem}'s C{<send>} and C{<recv>} children.
    """
    send = (_id(c.text) for local, c in _children(elem) if local == "send")
    recv = (_id(c.text) for local, c in _children(elem) if local == "recv")
    return tuple(s for s in send if s), tuple(r for r in recv if r)


def _parse_pstra(elem: ET.Element) -> ParticipantStreamAssoc:
    send, recv = _send_recv(elem)
    return ParticipantStreamAssoc(
        _required_id(elem, "participant_id", "participantstreamassoc"),
        send=send,
        recv=recv,
        extensions=_extensions(elem),
        **_times(elem),
    )


def _draft_assocs(
    elem: ET.Element, participant_id: str
) -> tuple[ParticipantSessionAssoc | None, ParticipantStreamAssoc | None]:
    """
    The associations a pre-RFC C{<participant>} holds itself: its
    C{session} attribute, its C{<send>}/C{<recv>} children.
    """
    session_id = _id(_attr(elem, "session"))
    psa = ParticipantSessionAssoc(participant_id, session_id) if session_id else None
    send, recv = _send_recv(elem)
    pstra = ParticipantStreamAssoc(participant_id, send=send, recv=recv) if send or recv else None
    return psa, pstra


def _with_draft_assocs(lists: dict[str, list], drafts: list[tuple[ET.Element, Participant]]) -> None:
    """
    Add the associations pre-RFC participants hold (L{_draft_assocs}) to
    C{lists}, unless the document states them the RFC 7865 way too.
    """
    for elem, participant in drafts:
        pid = participant.participant_id
        psa, pstra = _draft_assocs(elem, pid)
        if psa is not None and not any(
            a.participant_id == pid and a.session_id == psa.session_id for a in lists["participantsessionassoc"]
        ):
            lists["participantsessionassoc"].append(psa)
        if pstra is not None and not any(a.participant_id == pid for a in lists["participantstreamassoc"]):
            lists["participantstreamassoc"].append(pstra)


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
    drafts: list[tuple[ET.Element, Participant]] = []
    for local, child in _children(root):
        if local is None:
            ext = _extension(child)
            if ext is not None:
                extensions.append(ext)
        elif local == "extensiondata":
            extensions.extend(_extensions(child))
        elif local == "datamode":
            value = _text(child).lower()
            if value not in (COMPLETE, PARTIAL):
                raise MetadataError(f"unknown datamode {value[:20]!r}")
            datamode = value
        elif local in parsers:
            parsed = parsers[local](child)
            lists[local].append(parsed)
            if isinstance(parsed, Participant):
                drafts.append((child, parsed))
        # Unknown elements of our namespace (a later revision) are ignored.
    _with_draft_assocs(lists, drafts)
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
    if ns not in _READ_NAMESPACES:
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
