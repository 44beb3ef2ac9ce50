# -*- test-case-name: tests.sip.test_shed,tests.integration.test_overload_shed -*-
"""
Stateless answers before the parse (issue 12 overload control; Kamailio's
C{sl_send_reply}).

While the node is overloaded, most new INVITEs are refused. Parsing one,
creating its server transaction and answering through it costs more than
half a millisecond of CPU, which at twice the capacity eats the capacity
being protected. Instead the transport (L{aiconnect.sip.transport}) asks
its C{shed} hook about each UDP datagram first; the hook (the SRS, while
overloaded) reads only what a response needs from the raw header section
(L{scan}) and answers the refused INVITE statelessly (L{answer}), as a
proxy answers statelessly (RFC 3261 s8.2.6, s16.7).

The answer is the one L{aiconnect.sip.message.make_response} and the
transport would send: the Via lines copied in order with the top one
stamped (L{stamp_via}, RFC 3261 s18.2.1, RFC 3581 s4), From, To with a
tag, Call-ID, CSeq, the extra headers, C{Content-Length: 0}. The To tag
(L{StatelessAnswers.tag}) is a per-process marker and a keyed hash of the
Call-ID and branch, so that the ACK of the answer (RFC 3261 s17.1.1.3:
the INVITE's branch, the response's To) is recognised and absorbed
without a transaction. A retransmission of a refused INVITE gets the
same answer again, from a bounded table, without a new decision.

Anything this scan does not recognise plainly (a malformed request, a
missing or repeated header, an INVITE with a To tag, an RFC 2543 branch)
is left to the full path, which parses and answers it.

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from typing import Iterable, Union

from aiconnect.sip.branches import BRANCH_MAGIC, rfc3261_key
from aiconnect.sip.headers import HeaderSectionError, canonical_name, header_lines, split_head
from aiconnect.sip.message import REASONS, SipParseError, parse_cseq
from aiconnect.sip.repeats import RepeatTable
from aiconnect.sip.uri import UriError, Via, parse_name_addr, parse_via, split_list

#: Refused INVITEs whose answer is remembered for their retransmissions:
#: about 16 s of refusals at 250/s (an SRC retransmits for 32 s, Timer B,
#: but stops at the first answer it hears).
DEFAULT_CAP = 4096

#: The headers a stateless answer copies (RFC 3261 s8.2.6.2), by the
#: lower case of their long and compact names.
_COPIED = {name: canonical_name(name) for name in ("via", "v", "from", "f", "to", "t", "call-id", "i", "cseq")}


def stamp_via(via: Via, host: str, port: int) -> Via:
    """
    The top Via of a request received from C{host:port}, stamped: RFC 3261
    s18.2.1 C{received} (always the packet's source, a value the client
    wrote is replaced, never trusted: it would aim our responses at a third
    party) and RFC 3581 s4 C{rport} (the source port, when present).
    """
    top = via.with_param("received", host)
    if top.has_param("rport"):
        top = top.with_param("rport", str(port))
    return top


@dataclass(frozen=True, slots=True)
class Head:
    """
    What a stateless answer needs of a request, read from its header
    section (values as received, continuation lines unfolded).

    @ivar method: The method of the Request-Line (and the CSeq).
    @ivar vias: Every Via line, topmost first.
    @ivar top: The topmost Via value, parsed.
    @ivar from_: The From value.
    @ivar to: The To value.
    @ivar to_tag: The To header's C{tag} parameter, or L{None}.
    @ivar call_id: The Call-ID.
    @ivar cseq: The CSeq value.
    @ivar cseq_number: The CSeq number.
    """

    method: str
    vias: tuple[str, ...]
    top: Via
    from_: str
    to: str
    to_tag: str | None
    call_id: str
    cseq: str
    cseq_number: int

    @property
    def branch(self) -> str:
        """
        The top Via's branch (C{""} when it has none).
        """
        return self.top.branch or ""

    def server_key(self) -> tuple[str | int | None, ...]:
        """
        The key of the server transaction this request belongs to, as
        L{aiconnect.sip.branches.server_key} makes it for an RFC 3261
        branch (s17.2.3; an ACK counts as INVITE).
        """
        method = "INVITE" if self.method == "ACK" else self.method
        return rfc3261_key(self.branch, self.top.sent_by, method, self.call_id, self.cseq_number)


def scan(data: bytes, method: str) -> Head | None:
    """
    Read a C{method} request's Via, From, To, Call-ID and CSeq from the raw
    datagram, without parsing the rest (header names matched
    case-insensitively, compact forms included, continuation lines
    unfolded, CRLF or bare LF line ends).

    @return: L{None} unless the datagram is plainly a C{method} request
        with an RFC 3261 branch: SIP/2.0, at least one Via, exactly one
        From, To, Call-ID and CSeq, the top Via, the To and the CSeq well
        formed, the CSeq's method C{method}; and for an INVITE, a new one
        (no To tag: an in-dialog re-INVITE is never answered here).
    """
    if not data.startswith(method.encode("ascii") + b" "):
        return None
    split = split_head(data, True)
    if split is None:
        return None
    try:
        start, items = header_lines(split[0])
    except HeaderSectionError:
        return None
    parts = start.split(" ")
    if len(parts) != 3 or not parts[1] or parts[2] != "SIP/2.0":
        return None
    found: dict[str, list[str]] = {}
    for name, value in items:
        copied = _COPIED.get(name.lower())
        if copied is not None:
            found.setdefault(copied, []).append(value)
    vias = found.get("Via")
    singles = [found.get(name) or () for name in ("From", "To", "Call-ID", "CSeq")]
    if not vias or any(len(values) != 1 for values in singles):
        return None
    from_, to, call_id, cseq = (values[0] for values in singles)
    if not call_id or " " in call_id or "\t" in call_id:
        return None
    try:
        parsed = parse_cseq(cseq)
        top = parse_via(split_list(vias[0])[0])
        to_tag = parse_name_addr(to).tag
    except (SipParseError, UriError, ValueError):
        return None
    branch = top.branch
    if parsed.method != method or branch is None or not branch.startswith(BRANCH_MAGIC):
        return None
    if method == "INVITE" and to_tag is not None:
        return None
    return Head(method, tuple(vias), top, from_, to, to_tag, call_id, cseq, parsed.number)


@dataclass(frozen=True, slots=True)
class Answer:
    """
    A response to send statelessly.

    @ivar data: Its octets.
    @ivar via: Its top Via (stamped): the transport sends it where RFC 3261
        s18.2.2 and RFC 3581 s4 say for that Via and the request's source.
    """

    data: bytes
    via: Via


class Drop(enum.Enum):
    """
    The datagram is handled: nothing to send.
    """

    DROP = "drop"


#: Drop the datagram silently (a flood beyond its answers, the ACK of a
#: stateless answer).
DROP = Drop.DROP

#: What a C{shed} hook returns for a datagram it handled.
Decision = Union[Answer, Drop]


def answer(
    head: Head, host: str, port: int, status: int, reason: str, tag: str, headers: Iterable[tuple[str, str]] = ()
) -> Answer:
    """
    The response to a request received from C{host:port}, as
    L{aiconnect.sip.message.make_response} builds it once the transport
    stamped the request's top Via: the Via lines in order, the first one's
    top value stamped (L{stamp_via}), From, To with C{tag} (a new INVITE's
    To has none: L{scan}), Call-ID, CSeq, then C{headers},
    C{Content-Length: 0}.

    @param reason: The reason phrase (the status's usual one when empty).
    """
    top = stamp_via(head.top, host, port)
    first = split_list(head.vias[0])
    lines = [
        "SIP/2.0 %d %s" % (status, reason or REASONS.get(status, "")),
        "Via: " + ", ".join([str(top)] + first[1:]),
    ]
    lines.extend("Via: " + line for line in head.vias[1:])
    lines += [
        "From: " + head.from_,
        "To: %s;tag=%s" % (head.to, tag),
        "Call-ID: " + head.call_id,
        "CSeq: " + head.cseq,
    ]
    lines.extend("%s: %s" % (name, value) for name, value in headers)
    lines.append("Content-Length: 0")
    return Answer(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape"), top)


class StatelessAnswers:
    """
    The stateless answers of one process: their To tags, and the answers
    sent to recently refused INVITEs, by Call-ID, branch and source
    (bounded, oldest forgotten first).

    @ivar marker: The start of every To tag of ours.
    @ivar tag_prefix: C{tag=} and the marker, in octets: what a request
        naming one of our tags contains.
    """

    def __init__(self, cap: int = DEFAULT_CAP, marker: str | None = None) -> None:
        """
        @param cap: The most refused INVITEs remembered.
        @param marker: The To tag marker (random by default).
        """
        self.marker = marker if marker is not None else secrets.token_hex(4)
        self._key = self.marker.encode("ascii")
        self.tag_prefix = b"tag=" + self._key
        self._sent: RepeatTable[Answer] = RepeatTable(cap)

    def tag(self, head: Head) -> str:
        """
        The To tag of our answer to C{head}'s INVITE: the marker and a hash
        of its Call-ID and branch (an ACK for it carries both, RFC 3261
        s17.1.1.3).
        """
        text = head.call_id + "\x00" + head.branch
        digest = hashlib.blake2s(text.encode("utf-8", "surrogateescape"), digest_size=4, key=self._key)
        return self.marker + digest.hexdigest()

    def acknowledges(self, ack: Head) -> bool:
        """
        Whether C{ack} is the ACK of one of our stateless answers.
        """
        return ack.to_tag is not None and ack.to_tag.startswith(self.marker) and ack.to_tag == self.tag(ack)

    def answer(
        self, head: Head, host: str, port: int, status: int, reason: str, headers: Iterable[tuple[str, str]] = ()
    ) -> Answer:
        """
        Answer C{head}'s INVITE from C{host:port} (L{answer}, with our
        L{tag}), and remember the answer for its retransmissions.
        """
        sent = answer(head, host, port, status, reason, self.tag(head), headers)
        self._sent.add(self._sent_key(head, host, port), sent)
        return sent

    def sent(self, head: Head, host: str, port: int) -> Answer | None:
        """
        The answer already sent to this INVITE from this source, if it is
        remembered.
        """
        return self._sent.get(self._sent_key(head, host, port))

    def __len__(self) -> int:
        return len(self._sent)

    @staticmethod
    def _sent_key(head: Head, host: str, port: int) -> bytes:
        return ("%s\x00%s\x00%s\x00%d" % (head.call_id, head.branch, host, port)).encode("utf-8", "surrogateescape")


__all__ = ["DEFAULT_CAP", "DROP", "Answer", "Decision", "Drop", "Head", "StatelessAnswers", "answer", "scan", "stamp_via"]
