# -*- test-case-name: tests.integration.test_inbound,tests.integration.test_forward -*-
"""
Test peers for inbound SIPRec: an SRC that builds its INVITE from the
RFC 7866 figure 12 template with RFC 8068 metadata, and an application
server (real HTTP on 127.0.0.1) that answers newCall and receives events,
checking every signature with its own Standard Webhooks verifier.

L{rtp_packet} lives in L{tests.fakes}; it is re-exported here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.web import resource, server

from tests.fakes import listen_udp, rtp_packet, status_of, wait_until

DATA = Path(__file__).parent.parent / "data" / "siprec"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def verify_signature(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """
    An independent Standard Webhooks verifier, written from the
    specification: v1 = base64(HMAC-SHA256(base64decode(secret minus
    'whsec_'), "{id}.{timestamp}.{body}")).
    """
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = headers["webhook-id"].encode() + b"." + headers["webhook-timestamp"].encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        sig.startswith("v1,") and hmac.compare_digest(sig[3:], expected)
        for sig in headers["webhook-signature"].split(" ")
    )


class AppServer(resource.Resource):
    """
    The customer's application: records newCall requests and events.
    """

    isLeaf = True

    def __init__(self, answer: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.answer = answer if answer is not None else {}
        self.new_calls: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.port: Any = None

    def render_POST(self, request: Any) -> bytes:
        body = request.content.read()
        headers = {k.decode().lower(): v[0].decode() for k, v in request.requestHeaders.getAllRawHeaders()}
        if not verify_signature(SECRET, headers, body):
            self.bad_signatures += 1
            request.setResponseCode(401)
            return b"bad signature"
        data = json.loads(body)
        if request.path == b"/newCall":
            self.new_calls.append(data)
            request.setHeader(b"content-type", b"application/json")
            return json.dumps(self.answer).encode()
        if request.path == b"/events":
            self.events.append(data)
            return b""
        request.setResponseCode(404)
        return b""

    def count(self, kind: str) -> int:
        """
        How many C{"newCall"} requests or C{"events"} have arrived.
        """
        return len(self.new_calls) if kind == "newCall" else len(self.events)

    def wait_for(self, kind: str, n: int, timeout: float = 10.0) -> defer.Deferred[None]:
        """
        Fire when C{n} newCall requests or events (C{kind}) have arrived.

        @raise tests.fakes.WaitTimeout: (in the Deferred) not within
            C{timeout} seconds; the message shows what did arrive.
        """

        def got() -> str:
            return "%d %s at the application; got %r" % (n, kind, self.new_calls if kind == "newCall" else self.event_names())

        async def arrived() -> None:
            await wait_until(lambda: self.count(kind) >= n, timeout, what=got)

        return defer.ensureDeferred(arrived())

    def event_names(self) -> list[str]:
        """
        The C{event} field of each event, in arrival order.
        """
        return [e["event"] for e in self.events]

    def listen(self, port: int = 0) -> int:
        self.port = reactor.listenTCP(port, server.Site(self), interface="127.0.0.1")
        return self.port.getHost().port


def sdp_offer(streams: list[tuple[str, int, int]], version: int = 2890844526) -> bytes:
    """
    The SRC's offer in the shape of RFC 7866 figure 5 on loopback:
    C{streams} is (label, RTP port, payload type) per m-line.
    """
    lines = [
        "v=0",
        "o=SRS %d %d IN IP4 127.0.0.1" % (version, version),
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
    ]
    for label, port, pt in streams:
        name = {0: "PCMU", 8: "PCMA"}[pt]
        lines += ["m=audio %d RTP/AVP %d 101" % (port, pt), "a=rtpmap:%d %s/8000" % (pt, name), "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15", "a=sendonly", "a=label:%s" % label]
    return ("\r\n".join(lines) + "\r\n").encode()


def siprec_invite(
    transport: str,
    local_port: int,
    domain: str,
    sdp: bytes,
    metadata: bytes | None,
    call_id: str | None = None,
    extra_headers: str = "",
) -> tuple[bytes, dict[str, str]]:
    """
    The RFC 7866 figure 12 INVITE, with its Via/Contact on loopback, the
    Request-URI in C{domain}, our SDP and the metadata document.

    @return: the bytes and the identifiers (call_id, from_tag, branch).
    """
    template = (DATA / "rfc7866-fig12-invite.sip.tmpl").read_bytes().decode()
    ids = {
        "call_id": call_id or "d253c800-b0d1ea39-%s" % secrets.token_hex(4),
        "branch": "z9hG4bK" + secrets.token_hex(6),
        "from_tag": "35e195d2-947d-4585-946f-09839247",
    }
    text = template.replace("\r\n", "\n")
    head, _, rest = text.partition("\n\n")
    head = head.replace("INVITE sip:recorder@example.com", "INVITE sip:recorder@%s" % domain)
    head = head.replace("To: <sip:recorder@example.com>", "To: <sip:recorder@%s>" % domain)
    head = head.replace("Via: SIP/2.0/TCP src.example.com;branch=z9hG4bKdf6b622b648d9", "Via: SIP/2.0/%s 127.0.0.1:%d;branch=%s;rport" % (transport.upper(), local_port, ids["branch"]))
    head = head.replace("Call-ID: d253c800-b0d1ea39-4a7dd-3f0e20a", "Call-ID: " + ids["call_id"])
    head = head.replace("Contact: <sip:2000@src.example.com>;+sip.src", "Contact: <sip:2000@127.0.0.1:%d;transport=%s>;+sip.src" % (local_port, transport))
    if extra_headers:
        head = head.replace("Max-Forwards: 70", "Max-Forwards: 70\n" + extra_headers.rstrip("\n"))
    # The template's body: two parts; keep its part headers, fill in ours.
    sdp_part_header = "--foobar\nContent-Type: application/sdp\n\n"
    md_part_header = "--foobar\nContent-Type: application/rs-metadata\nContent-Disposition: recording-session\n\n"
    assert rest.startswith(sdp_part_header) and md_part_header in rest
    body = sdp_part_header.replace("\n", "\r\n").encode() + sdp + b"\r\n"
    if metadata is not None:
        body += md_part_header.replace("\n", "\r\n").encode() + metadata + b"\r\n"
    body += b"--foobar--\r\n"
    head = head.replace("Content-Length: [length]", "Content-Length: %d" % len(body))
    return head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body, ids


def in_dialog(
    method: str,
    transport: str,
    local_port: int,
    response: bytes,
    ids: dict[str, str],
    cseq: int,
    domain: str,
    body: bytes = b"",
    content_type: str | None = None,
    extra: str = "",
) -> bytes:
    """
    ACK/BYE/re-INVITE/UPDATE in the dialog set up by C{response} (our
    raw 200 OK), per RFC 3261 s12.2.1.1 (ACK for a 2xx gets a new branch).
    """
    from aiconnect.sip.message import parse

    resp = parse(response, datagram=False)
    contact = resp.contacts[0].uri
    lines = [
        "%s %s SIP/2.0" % (method, contact),
        "Via: SIP/2.0/%s 127.0.0.1:%d;branch=z9hG4bK%s;rport" % (transport.upper(), local_port, secrets.token_hex(6)),
        "Max-Forwards: 70",
        "From: <sip:2000@example.com>;tag=%s" % ids["from_tag"],
        "To: %s" % resp.headers.get("To"),
        "Call-ID: %s" % ids["call_id"],
        "CSeq: %d %s" % (cseq, method),
        "Contact: <sip:2000@127.0.0.1:%d;transport=%s>;+sip.src" % (local_port, transport),
    ]
    if extra:
        lines.append(extra)
    if body:
        lines.append("Content-Type: %s" % content_type)
    lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


__all__ = [
    "DATA",
    "SECRET",
    "AppServer",
    "in_dialog",
    "rtp_packet",
    "sdp_offer",
    "siprec_invite",
    "verify_signature",
]


async def answered_call(test: Any, sip_port: int, domain: str, metadata: bytes) -> tuple[Any, int, bytes, dict[str, str]]:
    """
    A SIPRec call from a new SRC over UDP: the INVITE (two PCMA streams
    labelled 96 and 98, C{metadata}), its 200 (asserted) and the ACK.

    @return: (the SRC's L{UdpPeer}, its port, the 200, the call's ids).
    """
    src, local = listen_udp(test)
    invite, ids = siprec_invite("udp", local, domain, sdp_offer([("96", local + 2, 8), ("98", local + 4, 8)]), metadata)
    src.send(invite, sip_port)
    ok = await src.next_final(timeout=10, call_id=ids["call_id"])
    test.assertEqual(status_of(ok), 200, ok)
    src.send(in_dialog("ACK", "udp", local, ok, ids, 101, domain), sip_port)
    return src, local, ok, ids
