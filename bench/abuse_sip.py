"""
The abuse benchmark's addresses and SIP messages, built with aiconnect's
own classes: the SIPRec offer (SDP with two labelled m-lines plus
recording metadata), requests from a UDP SRC, and responses to the
requests the server sends us.
"""

from __future__ import annotations

import secrets
from typing import Any

DOMAIN = "customer.example.com"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
LEGIT_SOURCE = "127.0.0.1"
FLOOD_SOURCE = "127.0.0.2"
IDLE_SOURCE = "127.0.0.3"
SERVER = "127.0.0.1"
T1 = 0.5
T2 = 4.0
#: At most this many datagrams are read per loop turn (then the loop goes on).
READ_BATCH = 2000


def siprec_body() -> tuple[bytes, str]:
    """
    A SIPRec offer as an SRC sends it (RFC 7866): SDP with two sendonly
    PCMU m-lines labelled 1 and 2, plus complete recording metadata for a
    caller and a called party.

    @return: The multipart body and its Content-Type.
    """
    from aiconnect.sip.multipart import Part, build_multipart, new_boundary
    from aiconnect.sip.sdp import OfferStream, Origin, build_src_offer
    from aiconnect.siprec.metadata import metadata_from_labels

    offer = build_src_offer(
        [OfferStream("1", 40000), OfferStream("2", 40002)],
        origin=Origin.new(LEGIT_SOURCE),
        address=LEGIT_SOURCE,
        codec="PCMU",
    )
    md = metadata_from_labels(["1", "2"], caller_aor="sip:alice@example.com", called_aor="sip:bob@example.com")
    boundary = new_boundary()
    body = build_multipart(
        [
            Part((("Content-Type", "application/sdp"),), offer.to_bytes()),
            Part(
                (("Content-Type", "application/rs-metadata+xml"), ("Content-Disposition", "recording-session")),
                md.to_bytes(),
            ),
        ],
        boundary,
    )
    return body, "multipart/mixed;boundary=" + boundary


def new_branch() -> str:
    """
    A fresh RFC 3261 Via branch (magic cookie + 16 hex digits).
    """
    return "z9hG4bK" + secrets.token_hex(8)


def sip_request(
    method: str,
    uri: str,
    local: tuple[str, int],
    call_id: str,
    from_tag: str,
    cseq: int,
    to: str = "<sip:recorder@%s>" % DOMAIN,
    branch: str | None = None,
    body: bytes = b"",
    content_type: str | None = None,
    extra: tuple[tuple[str, str], ...] = (),
) -> Any:
    """
    An out-of-dialog or in-dialog request from C{local} over UDP
    (L{aiconnect.sip.message.Request}).
    """
    from aiconnect.sip.message import Request

    host, port = local
    headers = [
        ("Via", "SIP/2.0/UDP %s:%d;branch=%s;rport" % (host, port, branch or new_branch())),
        ("Max-Forwards", "70"),
        ("From", "<sip:src@%s>;tag=%s" % (host, from_tag)),
        ("To", to),
        ("Call-ID", call_id),
        ("CSeq", "%d %s" % (cseq, method)),
        ("Contact", "<sip:src@%s:%d>;+sip.src" % (host, port)),
        *extra,
    ]
    if body:
        headers.append(("Content-Type", content_type or "application/sdp"))
    return Request(method, uri, headers, body)


def siprec_invite(local: tuple[str, int], call_id: str, from_tag: str, body: bytes, content_type: str) -> Any:
    """
    A SIPRec INVITE (Require: siprec, +sip.src, multipart body).
    """
    return sip_request(
        "INVITE",
        "sip:recorder@%s" % DOMAIN,
        local,
        call_id,
        from_tag,
        1,
        body=body,
        content_type=content_type,
        extra=(("Require", "siprec"), ("Accept", "application/sdp, application/rs-metadata+xml")),
    )


def response_to(request: Any, status: int) -> bytes:
    """
    A response to a request the server sent us (a BYE, say), with the
    request's Via, From, To, Call-ID and CSeq.
    """
    from aiconnect.sip.message import Response

    headers = [(n, v) for n, v in request.headers if n in ("Via", "From", "To", "Call-ID", "CSeq")]
    return Response(status, headers=headers).to_bytes()
