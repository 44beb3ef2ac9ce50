# -*- test-case-name: tests.sip.test_transaction,tests.sip.test_txlayer,tests.sip.test_txlayer_server -*-
"""
Branches and transaction keys (RFC 3261 s8.1.1.7, s17.1.3, s17.2.3), and
the ACK and CANCEL a client transaction builds from its request (s17.1.1.3,
s9.1).

Re-exported by L{aiconnect.sip.transaction}, where these lived first.

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

import secrets
from typing import Iterable

from aiconnect.errors import LocalSipError
from aiconnect.sip.message import Headers, Request, Response
from aiconnect.sip.uri import split_list

#: RFC 3261 s8.1.1.7: every branch we generate starts with this cookie.
BRANCH_MAGIC = "z9hG4bK"


def new_branch() -> str:
    """
    A fresh branch parameter: the RFC 3261 s8.1.1.7 magic cookie and 128
    bits from the operating system's CSPRNG.
    """
    return BRANCH_MAGIC + secrets.token_hex(16)


def has_magic_branch(message: Request | Response) -> bool:
    """
    Whether the top Via carries an RFC 3261 branch (s8.1.1.7).
    """
    branch = message.top_via.branch
    return branch is not None and branch.startswith(BRANCH_MAGIC)


def client_key(message: Request | Response) -> tuple[str | None, str]:
    """
    The key matching a response to a client transaction (RFC 3261 s17.1.3):
    the top Via branch and the CSeq method.

    For a request we send, the same function gives the key it will be found
    under.

    @raise SipParseError: if the message has no Via or CSeq.
    """
    return (message.top_via.branch, message.cseq.method)


def rfc3261_key(branch: str, sent_by: str, method: str, call_id: str, cseq_number: int) -> tuple[str | int | None, ...]:
    """
    The server transaction key of a request with an RFC 3261 branch (see
    L{server_key}); also built from a raw datagram's headers by
    L{aiconnect.sip.shed}.
    """
    return ("3261", branch, sent_by.lower(), method, call_id, cseq_number)


def server_key(request: Request, method: str | None = None) -> tuple[str | int | None, ...]:
    """
    The key matching a request to a server transaction (RFC 3261 s17.2.3).

    With an RFC 3261 branch: the branch, the sent-by of the top Via and the
    method, an ACK counting as INVITE, plus Call-ID and CSeq number. Otherwise (RFC 2543 peers): the
    Request-URI, From tag, Call-ID, CSeq number, method and top Via; the To
    tag is left out so the ACK of a non-2xx final still matches.

    @param request: the request.
    @param method: the method to match instead of the request's own: a
        CANCEL looks up the transaction it cancels with C{"INVITE"} (s9.2).
    @raise SipParseError: if the request has no Via or CSeq.
    """
    if method is None:
        method = "INVITE" if request.method == "ACK" else request.method
    via = request.top_via
    branch = via.branch
    if branch is not None and branch.startswith(BRANCH_MAGIC):
        # RFC 3261 s17.2.3 matches on branch, sent-by and method. We also
        # require the same Call-ID and CSeq number, which every true
        # retransmission, its CANCEL and its ACK share: a broken peer that
        # reuses a branch for a new request (RFC 4475's corpus does, e.g.
        # unkscm and novelsc) then gets a new transaction, not a replay of
        # another request's response.
        return rfc3261_key(branch, via.sent_by, method, request.call_id, request.cseq.number)
    return (
        "2543",
        request.uri,
        request.from_tag,
        request.call_id,
        request.cseq.number,
        method,
        via.sent_by.lower(),
        branch,
    )


def _top_via_text(request: Request) -> str:
    first = request.headers.get("Via")
    if not first:
        raise LocalSipError("request has no Via")
    return split_list(first)[0]


def make_ack(request: Request, response: Response) -> Request:
    """
    Build the ACK for a non-2xx final response (RFC 3261 s17.1.1.3).

    Request-URI, Call-ID, From and the CSeq number come from the request, To
    from the response (with its tag), the single Via is the request's top
    Via, and the request's Route header fields are copied.

    @param request: the INVITE as sent (with our Via).
    @param response: the 300-699 response.
    @raise LocalSipError: for a non-INVITE request or a non-final response.
    """
    if request.method != "INVITE" or response.status < 300:
        raise LocalSipError("the transaction ACKs only non-2xx finals to INVITE (RFC 3261 s17.1.1.3)")
    return _same_branch(request, "ACK", response.headers.get("To") or "", ())


def make_cancel(request: Request, extra_headers: Iterable[tuple[str, str]] = ()) -> Request:
    """
    Build a CANCEL for a request (RFC 3261 s9.1).

    Request-URI, Call-ID, To, From and the CSeq number are the request's, the
    single Via is the request's top Via (so the CANCEL has the same branch),
    and its Route header fields are copied.

    @param request: the request as sent (with our Via), normally an INVITE.
    @param extra_headers: more header fields, e.g. C{("Reason", ...)}
        (RFC 3326).
    @raise LocalSipError: for an ACK or a CANCEL.
    """
    if request.method in ("ACK", "CANCEL"):
        raise LocalSipError("%s cannot be cancelled (RFC 3261 s9.1)" % (request.method,))
    return _same_branch(request, "CANCEL", request.headers.get("To") or "", extra_headers)


def _same_branch(request: Request, method: str, to: str, extra_headers: Iterable[tuple[str, str]]) -> Request:
    """
    A request in C{request}'s transaction (its ACK or CANCEL): the same
    Request-URI, top Via, Routes, From, Call-ID and CSeq number, with
    C{method}, the To header C{to} and C{extra_headers} after the rest.
    """
    h = Headers()
    h.add("Via", _top_via_text(request))
    for route in request.headers.get_all("Route"):
        h.add("Route", route)
    h.add("Max-Forwards", "70")
    h.add("From", request.headers.get("From") or "")
    h.add("To", to)
    h.add("Call-ID", request.call_id)
    h.add("CSeq", "%d %s" % (request.cseq.number, method))
    for name, value in extra_headers:
        h.add(name, value)
    return Request(method, request.uri, h)
