# -*- test-case-name: tests.integration.test_uac_uas,tests.test_recovery,tests.siprec.test_forward -*-
"""
SIP dialogs (RFC 3261 s12): identifiers, tags, CSeq, route set, remote
target, and in-dialog request construction.

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field
from typing import Iterable

from aiconnect.errors import RemoteSipError
from aiconnect.sip.message import Headers, Request, Response
from aiconnect.sip.uri import NameAddr, SipUri, parse_name_addr, parse_name_addr_list


def new_tag() -> str:
    """
    A fresh tag with at least 32 bits of randomness (RFC 3261 s19.3).
    """
    return secrets.token_hex(6)


def new_call_id(host: str) -> str:
    """
    A fresh, globally unique Call-ID (RFC 3261 s8.1.1.4).
    """
    return "%s@%s" % (secrets.token_hex(12), host)


def new_branch() -> str:
    """
    A fresh RFC 3261 branch (magic cookie + CSPRNG, s8.1.1.7).
    """
    return "z9hG4bK" + secrets.token_hex(10)


def initial_cseq() -> int:
    """
    A random starting CSeq below 2**31 (RFC 3261 s8.1.1.5).
    """
    return secrets.randbelow(2**20) + 1


class DialogState(enum.Enum):
    """
    RFC 3261 s12: a dialog is early until a 2xx, then confirmed.
    """

    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class DialogId:
    """
    RFC 3261 s12: Call-ID, local tag and remote tag.
    """

    call_id: str
    local_tag: str
    remote_tag: str


@dataclass(slots=True)
class Dialog:
    """
    The state of one dialog, from one side's point of view.

    @ivar local_header: our From (UAC) / To (UAS) header value, with our tag.
    @ivar remote_header: the peer's header value, with its tag.
    @ivar remote_target: the peer's Contact URI (s12.1.1, s12.1.2).
    @ivar route_set: Route values to put on requests, in order.
    @ivar local_seq: the last CSeq number we used.
    @ivar remote_seq: the last CSeq number the peer used, or C{None}.
    @ivar secure: whether the dialog was set up over sips/TLS.
    """

    call_id: str
    local_tag: str
    remote_tag: str
    local_header: str
    remote_header: str
    remote_target: str
    route_set: list[str] = field(default_factory=list)
    local_seq: int = 0
    remote_seq: int | None = None
    secure: bool = False
    state: DialogState = DialogState.CONFIRMED
    invite_cseq: int = 0

    @property
    def id(self) -> DialogId:
        """
        The dialog identifier.
        """
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def from_uas(cls, request: Request, local_tag: str, contact_required: bool = True) -> Dialog:
        """
        A dialog created by answering C{request} (RFC 3261 s12.1.1).

        @raise RemoteSipError: 400 if the request lacks a usable Contact.
        """
        to_value = request.headers.get("To") or ""
        if request.to.tag is None:
            to_value = to_value + ";tag=" + local_tag
        contacts = request.contacts
        if not contacts and contact_required:
            raise RemoteSipError("Missing Contact", 400)
        target = str(contacts[0].uri) if contacts else request.uri
        route_set: list[str] = []
        for line in request.headers.get_all("Record-Route"):
            route_set.extend(str(na) for na in parse_name_addr_list(line))
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_tag or "",
            local_header=to_value,
            remote_header=request.headers.get("From") or "",
            remote_target=target,
            route_set=route_set,
            local_seq=initial_cseq(),
            remote_seq=request.cseq.number,
            secure=request.uri.lower().startswith("sips:"),
            invite_cseq=request.cseq.number,
        )

    @classmethod
    def from_uac(cls, request: Request, response: Response) -> Dialog:
        """
        A dialog created by a 1xx-with-tag or 2xx to our C{request}
        (RFC 3261 s12.1.2): the route set is Record-Route reversed.
        """
        route_set: list[str] = []
        for line in response.headers.get_all("Record-Route"):
            route_set.extend(str(na) for na in parse_name_addr_list(line))
        route_set.reverse()
        contacts = response.contacts
        target = str(contacts[0].uri) if contacts else request.uri
        state = DialogState.CONFIRMED if 200 <= response.status < 300 else DialogState.EARLY
        return cls(
            call_id=request.call_id,
            local_tag=request.from_tag or "",
            remote_tag=response.to_tag or "",
            local_header=request.headers.get("From") or "",
            remote_header=response.headers.get("To") or "",
            remote_target=target,
            route_set=route_set,
            local_seq=request.cseq.number,
            remote_seq=None,
            secure=request.uri.lower().startswith("sips:"),
            state=state,
            invite_cseq=request.cseq.number,
        )

    def to_record(self) -> dict[str, object]:
        """
        The dialog as JSON-ready values, to be stored while it lasts (a
        restarted node ends the dialogs its previous run left open).
        """
        return {
            "call_id": self.call_id,
            "local_tag": self.local_tag,
            "remote_tag": self.remote_tag,
            "local_header": self.local_header,
            "remote_header": self.remote_header,
            "remote_target": self.remote_target,
            "route_set": list(self.route_set),
            "local_seq": self.local_seq,
            "secure": self.secure,
            "invite_cseq": self.invite_cseq,
        }

    @classmethod
    def from_record(cls, record: dict[str, object], cseq_margin: int = 0) -> Dialog:
        """
        A confirmed dialog rebuilt from L{to_record}'s values.

        @param cseq_margin: added to the stored local CSeq, so a request
            sent after requests the record did not see still has a higher
            CSeq (RFC 3261 s12.2.1.1).
        @raise KeyError: a field is missing.
        @raise ValueError: a field has the wrong type.
        """

        def text(name: str) -> str:
            value = record[name]
            if not isinstance(value, str):
                raise ValueError("dialog record field %s is not a string" % (name,))
            return value

        def number(name: str) -> int:
            value = record[name]
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError("dialog record field %s is not an integer" % (name,))
            return value

        route_set = record.get("route_set", [])
        if not isinstance(route_set, list) or not all(isinstance(r, str) for r in route_set):
            raise ValueError("dialog record field route_set is not a list of strings")
        return cls(
            call_id=text("call_id"),
            local_tag=text("local_tag"),
            remote_tag=text("remote_tag"),
            local_header=text("local_header"),
            remote_header=text("remote_header"),
            remote_target=text("remote_target"),
            route_set=list(route_set),
            local_seq=number("local_seq") + cseq_margin,
            remote_seq=None,
            secure=bool(record.get("secure", False)),
            state=DialogState.CONFIRMED,
            invite_cseq=number("invite_cseq"),
        )

    def matches(self, message: Request | Response, incoming_request: bool) -> bool:
        """
        Whether an in-dialog message belongs to this dialog.
        """
        if message.call_id != self.call_id:
            return False
        if incoming_request:
            return message.to_tag == self.local_tag and (message.from_tag or "") == self.remote_tag
        return message.from_tag == self.local_tag and (message.to_tag or "") == self.remote_tag

    def receive_request(self, request: Request) -> None:
        """
        Account for an in-dialog request (RFC 3261 s12.2.2): CSeq must grow
        (ACK and CANCEL excepted); a target refresh updates the remote target.

        @raise RemoteSipError: 500 for an out-of-order CSeq.
        """
        if request.method in ("ACK", "CANCEL"):
            return
        n = request.cseq.number
        if self.remote_seq is not None and n <= self.remote_seq:
            raise RemoteSipError("CSeq out of order", 500)
        self.remote_seq = n
        if request.method in ("INVITE", "UPDATE"):
            self.refresh_target(request)

    def refresh_target(self, message: Request | Response) -> None:
        """
        Update the remote target from a target-refresh message's Contact.
        """
        contacts = message.contacts
        if contacts:
            self.remote_target = str(contacts[0].uri)

    def next_hop(self) -> str:
        """
        The URI the next request goes to: the first route if any (loose
        routing assumed, s12.2.1.1), else the remote target.
        """
        if self.route_set:
            return str(parse_name_addr(self.route_set[0]).uri)
        return self.remote_target

    def new_request(
        self,
        method: str,
        contact: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        cseq: int | None = None,
    ) -> Request:
        """
        Build an in-dialog request (RFC 3261 s12.2.1.1); the caller (the
        transaction layer) adds Via. ACK reuses the INVITE's CSeq number.
        """
        if cseq is None:
            if method == "ACK":
                cseq = self.invite_cseq
            else:
                self.local_seq += 1
                cseq = self.local_seq
                if method == "INVITE":
                    self.invite_cseq = cseq
        route_set = list(self.route_set)
        uri = self.remote_target
        if route_set:
            first = parse_name_addr(route_set[0]).uri
            if isinstance(first, SipUri) and not first.has_param("lr"):
                # Strict routing (s12.2.1.1): R-URI is the first route.
                uri = str(first)
                route_set = route_set[1:] + ["<%s>" % (self.remote_target,)]
        h = Headers()
        for r in route_set:
            h.add("Route", r)
        h.add("Max-Forwards", "70")
        h.add("From", self.local_header)
        h.add("To", self.remote_header)
        h.add("Call-ID", self.call_id)
        h.add("CSeq", "%d %s" % (cseq, method))
        if contact is not None and method in ("INVITE", "UPDATE"):
            h.add("Contact", contact)
        for n, v in headers:
            h.add(n, v)
        if body and content_type:
            h.add("Content-Type", content_type)
        return Request(method, uri, h, body)


def contact_header(user: str | None, hostport: str, transport: str, feature_tags: Iterable[str] = (), secure: bool = False) -> str:
    """
    Build our Contact value (with C{transport} for TCP/TLS and feature tags
    such as C{+sip.srs} / C{+sip.src}, RFC 7866 s6.1.1).
    """
    scheme = "sips" if secure else "sip"
    uri = "%s:%s%s" % (scheme, (user + "@") if user else "", hostport)
    if transport != "udp" and not secure:
        uri += ";transport=" + transport
    return "<" + uri + ">" + "".join(";" + t for t in feature_tags)


__all__ = [
    "Dialog",
    "DialogId",
    "DialogState",
    "NameAddr",
    "contact_header",
    "initial_cseq",
    "new_branch",
    "new_call_id",
    "new_tag",
]
