# -*- test-case-name: tests.integration.test_forward -*-
"""
A scripted external SRS for the forwarding tests: it speaks raw SIP bytes
over UDP or TLS on 127.0.0.1, answers an INVITE the way it is told (503,
401 then 200, 200, or never), answers like RFC 7866 figure 6 (one
C{a=recvonly} stream per offered label, on its own RTP sockets), records
every request, and checks digest credentials with its own RFC 2617 code.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol

from aiconnect.sip.message import Request, StreamFramer, parse
from aiconnect.sip.multipart import parse_multipart
from aiconnect.sip.sdp import parse_sdp
from tests.fakes import UdpPeer, wait_until

REALM = "srs.test"
NONCE = "dcd98b7102dd2f0e8b11d0f600bfb0c093"


def _response_lines(request: Request, status: int, reason: str, to_tag: str | None, extra: list[str] | None = None, body: bytes = b"", ctype: str | None = None) -> bytes:
    lines = ["SIP/2.0 %d %s" % (status, reason)]
    for v in request.headers.get_all("Via"):
        lines.append("Via: " + v)
    to = request.headers.get("To") or ""
    if to_tag and ";tag=" not in to:
        to += ";tag=" + to_tag
    lines += ["From: " + (request.headers.get("From") or ""), "To: " + to, "Call-ID: " + request.call_id, "CSeq: " + (request.headers.get("CSeq") or "")]
    lines += extra or []
    if body:
        lines.append("Content-Type: " + (ctype or "application/sdp"))
    lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class SrsPeer:
    """
    One scripted SRS.

    @ivar mode: C{"200"}, C{"503"}, C{"auth"} (401 then 200 with valid
        credentials), C{"silent"}.
    @ivar requests: every request received, parsed, in order.
    @ivar rtp: one L{UdpPeer} per answered stream, receiving our RTP (kept
        across re-INVITEs; more for a re-offer with more m-lines).
    """

    def __init__(self, mode: str = "200", transport: str = "udp", username: str = "rec", password: str = "s3cret") -> None:
        self.mode = mode
        self.transport_name = transport
        self.username = username
        self.password = password
        self.requests: list[Request] = []
        self.raw_invites: list[bytes] = []
        self.rtp: list[UdpPeer] = []
        self.rtp_ports: list[Any] = []
        self.to_tag = secrets.token_hex(4)
        self.srtp_keys: list[bytes] = []
        self.dialog: dict[str, Any] = {}
        self.auth_ok = False
        self.responses: list[Any] = []
        self._cseq = 1
        self.port: Any = None
        self._send: Any = None
        self._stream: Any = None

    # -- listening -----------------------------------------------------------

    def listen_udp(self) -> int:
        peer = self

        class Proto(DatagramProtocol):
            def datagramReceived(self, data: bytes, addr: Any) -> None:
                peer._send = lambda out: self.transport.write(out, addr)
                peer.received(data)

        self.port = reactor.listenUDP(0, Proto(), interface="127.0.0.1")
        return self.port.getHost().port

    def listen_tls(self, context: Any) -> int:
        peer = self

        class Proto(Protocol):
            def connectionMade(self) -> None:
                self.framer = StreamFramer()
                peer._stream = self

            def dataReceived(self, data: bytes) -> None:
                for frame in self.framer.feed(data):
                    if frame.strip():
                        peer._send = self.transport.write
                        peer.received(frame)

        f = Factory.forProtocol(Proto)
        self.port = reactor.listenSSL(0, f, context, interface="127.0.0.1")
        return self.port.getHost().port

    def stop(self) -> Any:
        for p in self.rtp_ports:
            p.stopListening()
        if self._stream is not None:
            self._stream.transport.loseConnection()
        return self.port.stopListening()

    # -- waiting ---------------------------------------------------------------

    def count(self, method: str) -> int:
        """
        How many requests of C{method} arrived, or responses of status
        C{method} when it is digits (C{"200"}).
        """
        if method.isdigit():
            return sum(1 for r in self.responses if r.status == int(method))
        return sum(1 for r in self.requests if r.method == method)

    def wait_for(self, method: str, n: int = 1, timeout: float = 10.0) -> defer.Deferred[None]:
        """
        Fire when C{n} requests of C{method} (or responses of that status,
        see L{count}) have arrived.

        @raise tests.fakes.WaitTimeout: (in the Deferred) not within
            C{timeout} seconds; the message lists what did arrive.
        """

        def got() -> str:
            return "%d %s at the SRS; got %r" % (n, method, [r.method for r in self.requests] + [r.status for r in self.responses])

        async def arrived() -> None:
            await wait_until(lambda: self.count(method) >= n, timeout, what=got)

        return defer.ensureDeferred(arrived())

    # -- behaviour ---------------------------------------------------------------

    def received(self, data: bytes) -> None:
        msg = parse(data, datagram=self.transport_name == "udp")
        if not isinstance(msg, Request):
            self.responses.append(msg)
            return
        if msg.method == "INVITE" and msg.to_tag is None:
            self.raw_invites.append(data)
        self.requests.append(msg)
        self._answer(msg)

    def _answer(self, req: Request) -> None:
        if req.method == "INVITE" and req.to_tag is None:
            if self.mode == "silent":
                return
            if req.cseq.number in self.dialog.get("answered", set()):
                return  # a retransmission; our answer is retransmitted by nobody (test peer)
            self._send(_response_lines(req, 100, "Trying", None))
            if self.mode == "ringing":
                self.dialog["ringing"] = req
                self._send(_response_lines(req, 180, "Ringing", self.to_tag))
                return
            if self.mode == "503":
                self._send(_response_lines(req, 503, "Service Unavailable", self.to_tag))
                return
            if self.mode == "auth" and not self._check_auth(req):
                challenge = 'Digest realm="%s", nonce="%s", algorithm=MD5, qop="auth"' % (REALM, NONCE)
                self._send(_response_lines(req, 401, "Unauthorized", self.to_tag, ["WWW-Authenticate: " + challenge]))
                return
            self._send(_response_lines(req, 180, "Ringing", self.to_tag))
            self._send_ok(req)
        elif req.method == "ACK":
            pass
        elif req.method in ("BYE", "OPTIONS", "INFO", "UPDATE"):
            self._send(_response_lines(req, 200, "OK", None))
        elif req.method == "CANCEL":
            self._send(_response_lines(req, 200, "OK", None))
            pending = self.dialog.get("ringing")
            if pending is not None:
                # RFC 3261 s9.2: the INVITE is answered 487.
                self._send(_response_lines(pending, 487, "Request Terminated", self.to_tag))
        elif req.method == "INVITE":  # re-INVITE
            self._send_ok(req)

    def _check_auth(self, req: Request) -> bool:
        value = req.headers.get("Authorization")
        if not value or not value.startswith("Digest "):
            return False
        params = {}
        for part in value[7:].split(","):
            k, _, v = part.strip().partition("=")
            params[k.strip()] = v.strip().strip('"')
        md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
        ha1 = md5("%s:%s:%s" % (self.username, REALM, self.password))
        ha2 = md5("INVITE:%s" % params.get("uri", ""))
        expected = md5(":".join([ha1, NONCE, params.get("nc", ""), params.get("cnonce", ""), "auth", ha2]))
        self.auth_ok = params.get("response") == expected and params.get("username") == self.username
        return self.auth_ok

    def offer_of(self, req: Request) -> Any:
        boundary = req.content_type_param("boundary")
        if req.content_type == "multipart/mixed" and boundary:
            for part in parse_multipart(req.body, boundary):
                if part.content_type == "application/sdp":
                    return parse_sdp(part.body)
        return parse_sdp(req.body)

    def metadata_of(self, req: Request) -> bytes | None:
        boundary = req.content_type_param("boundary")
        for part in parse_multipart(req.body, boundary or ""):
            if part.content_type.startswith("application/rs-metadata"):
                return part.body
        return None

    def _send_ok(self, req: Request) -> None:
        offer = self.offer_of(req)
        # The RTP sockets of the m-lines answered before are kept; a
        # re-offer with more m-lines (an added stream) gets more.
        while len(self.rtp) < len(offer.media):
            sink = UdpPeer()
            port = reactor.listenUDP(0, sink, interface="127.0.0.1")
            self.rtp.append(sink)
            self.rtp_ports.append(port)
        lines = ["v=0", "o=SRS 0 0 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0"]
        self.srtp_keys = []
        for media, port in zip(offer.media, self.rtp_ports):
            pts = media.payload_types
            lines.append("m=audio %d %s %s" % (port.getHost().port, media.proto, " ".join(str(p) for p in pts)))
            for pt, entry in media.rtpmap.items():
                lines.append("a=rtpmap:%d %s/%d" % (pt, entry.encoding, entry.clock_rate))
            lines.append("a=recvonly")
            lines.append("a=label:%s" % media.label)
            if media.is_secure:
                key = secrets.token_bytes(30)
                self.srtp_keys.append(key)
                tag = media.crypto[0].tag
                lines.append("a=crypto:%d AES_CM_128_HMAC_SHA1_80 inline:%s" % (tag, base64.b64encode(key).decode()))
        body = ("\r\n".join(lines) + "\r\n").encode()
        contact = "<sip:srs@127.0.0.1:%d;transport=%s>;+sip.srs" % (self.port.getHost().port, self.transport_name)
        self.dialog.setdefault("answered", set()).add(req.cseq.number)
        self.dialog["invite"] = req
        self._send(_response_lines(req, 200, "OK", self.to_tag, ["Contact: " + contact], body))

    def send_bye(self) -> None:
        """
        End the recording session from the SRS side (RFC 3261 s15.1.1).
        """
        self.send_in_dialog("BYE")

    def send_in_dialog(self, method: str, body: bytes = b"", ctype: str = "application/sdp", extra: list[str] | None = None, cseq: int | None = None) -> int:
        """
        Send an in-dialog request of the SRS's own (OPTIONS, INFO, UPDATE,
        re-INVITE, ACK, BYE) to our Contact; return its CSeq number.
        """
        inv: Request = self.dialog["invite"]
        contact = inv.contacts[0].uri
        if cseq is None:
            self._cseq += 1
            cseq = self._cseq
        via = "SIP/2.0/%s 127.0.0.1:%d;branch=z9hG4bK%s" % (self.transport_name.upper(), self.port.getHost().port, secrets.token_hex(5))
        lines = [
            "%s %s SIP/2.0" % (method, contact),
            "Via: " + via,
            "Max-Forwards: 70",
            "From: %s;tag=%s" % (inv.headers.get("To"), self.to_tag),
            "To: " + (inv.headers.get("From") or ""),
            "Call-ID: " + inv.call_id,
            "CSeq: %d %s" % (cseq, method),
            "Contact: <sip:srs@127.0.0.1:%d>;+sip.srs" % self.port.getHost().port,
        ]
        lines += extra or []
        if body:
            lines.append("Content-Type: " + ctype)
        lines.append("Content-Length: %d" % len(body))
        self._send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return cseq
