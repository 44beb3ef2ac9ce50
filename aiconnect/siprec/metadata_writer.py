# -*- test-case-name: tests.siprec.test_metadata -*-
"""
Writing RFC 7865 metadata documents: XML 1.0 escaping and the serializer of
L{RecordingMetadata<aiconnect.siprec.metadata_model.RecordingMetadata>} and
L{RequestSnapshot<aiconnect.siprec.metadata_model.RequestSnapshot>} (their
C{to_bytes} call it), which writes the elements in the order of the RFC 7865
s9 schema with C{xmlns="urn:ietf:params:xml:ns:recording:1"} on the root
(RFC 7865 s5.1), so what we build validates against it.

It reads the model's attributes only, so it sits below the model and needs
its types for annotations only.

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from aiconnect.siprec.metadata_model import RecordingMetadata, RequestSnapshot

__all__ = ["NAMESPACE", "write_recording", "write_request_snapshot"]

#: The RFC 7865 namespace (s5.1, s11.1).
NAMESPACE = "urn:ietf:params:xml:ns:recording:1"


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


def write_recording(md: RecordingMetadata) -> str:
    """
    A C{<recording>} document (RFC 7865 s6.1) as text, elements in the
    order of the RFC 7865 s9 schema, C{xmlns} on the root (RFC 7865 s5.1).
    """
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


def write_request_snapshot(snapshot: RequestSnapshot) -> str:
    """
    A C{<requestsnapshot>} document (RFC 7865 s7) as text.
    """
    out = ['<?xml version="1.0" encoding="UTF-8"?>', f'<requestsnapshot xmlns="{NAMESPACE}">']
    if snapshot.reason is not None:
        out.append("  " + _text_element("requestreason", snapshot.reason, snapshot.lang))
    out.extend("  " + x for x in snapshot.extensions)
    out.append("</requestsnapshot>")
    return "\n".join(out) + "\n"
