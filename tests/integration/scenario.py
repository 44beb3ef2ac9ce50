# -*- test-case-name: tests.integration.test_inbound_admission,tests.integration.test_inbound_cancel,tests.integration.test_inbound_reinvite,tests.integration.test_inbound_update,tests.integration.test_inbound_quirks,tests.integration.test_hardening_admission,tests.integration.test_hardening_media,tests.integration.test_inbound,tests.integration.test_forward -*-
"""
The harness of the inbound scenario tests (issue 3, deliverable 3): the
real service built from a generated configuration, a real HTTP application
on 127.0.0.1 and an SRC speaking raw UDP bytes built from the RFC 7866
figure 12 template.

Each test class has its own RTP port range (24000 + 100 * n, below) so the
classes never collide with each other or with the other integration tests:

  - 24000 L{tests.integration.test_inbound_admission.AdmissionTests}
  - 24100 L{tests.integration.test_inbound_cancel.CancelTests}
  - 24200 L{tests.integration.test_inbound_reinvite.ReInviteTests}
  - 24300 L{tests.integration.test_inbound_update.UpdateTests}
  - 24400 L{tests.integration.test_inbound_admission.OptionsTests}
  - 24500 L{tests.integration.test_inbound_admission.SessionTimerTests}
  - 24600 L{tests.integration.test_inbound_quirks.QuirkTests}
  - 24700 L{tests.integration.test_inbound_cancel.RetransmissionTests}
  - 24800 L{tests.integration.test_inbound_reinvite.HoldMediaTimeoutTests}

What the service emits where the RFCs leave it open (and these tests pin):

  - CANCEL before the answer: 200 to the CANCEL, 487 to the INVITE, the
    newCall request is abandoned, and the application gets one event,
    C{SESSIONCOMPLETED} with reason C{"cancel"} (no C{SESSIONSTARTED}: the
    session never started, but the application saw its id in newCall).
  - A 2xx never ACKed: the 200 is retransmitted (T1, 2*T1, ... capped at
    T2) for 64*T1, then the service sends BYE; the application gets only
    C{SESSIONCOMPLETED} with reason C{"error"}.
  - A re-INVITE adding a stream beyond those of the first offer: the new
    m-line is answered with port 0 (RFC 3264 s6), since the RTP ports are
    allocated once, at the first INVITE; a stream the same offer disables
    (port 0) frees its port for a new m-line (RFC 7866 s7.1.1.1).
  - Hold (C{a=inactive}, with or without C{c=0.0.0.0}) is answered
    C{a=inactive} and pauses the media timeout until the SRC resumes.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any, Awaitable, Callable

import treq
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from aiconnect import config as config_mod
from aiconnect.sip.message import Response, parse
from aiconnect.sip.sdp import SessionDescription, parse_sdp
from aiconnect.tap import build_service
from tests.fakes import listen_udp, wait_until
from tests.integration.helpers import Certificates, free_port, write_config
from tests.integration.siprec_peer import DATA, AppServer, in_dialog, siprec_invite

DOMAIN = "customer.example.com"
TOKEN = "t0ken"
#: RFC 8068 s3.2.1: Alice sends on the streams labelled 96/97, Bob on 98/99.
METADATA = (DATA / "rfc8068-s3.2.1-1-metadata.xml").read_bytes()
#: The first and last RTP port any class of these modules uses.
RANGE_LOW, RANGE_HIGH = 24000, 24999


def _free_ports(n: int) -> list[int]:
    """
    C{n} distinct free loopback ports outside this module's RTP ranges (the
    service refuses a SIP port inside its RTP range).
    """
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if not RANGE_LOW <= port <= RANGE_HIGH and port not in ports:
            ports.append(port)
    return ports


def _set_content_length(message: bytes) -> bytes:
    """
    Rewrite the Content-Length of a hand-edited message to its body's size.
    """
    head, _, body = message.partition(b"\r\n\r\n")
    head = re.sub(rb"(?im)^Content-Length:[ \t]*\d+", b"Content-Length: %d" % len(body), head)
    return head + b"\r\n\r\n" + body


def _replace_body(message: bytes, content_type: str, body: bytes) -> bytes:
    """
    A copy of C{message} with another body and Content-Type.
    """
    head = message.partition(b"\r\n\r\n")[0]
    head = re.sub(rb"(?im)^Content-Type:[^\r\n]*", b"Content-Type: " + content_type.encode(), head)
    return _set_content_length(head + b"\r\n\r\n" + body)


def _raw_header(message: bytes, name: str) -> str | None:
    """
    The first value of a header, read from the raw bytes (long form).
    """
    for line in message.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        n, _, v = line.partition(b":")
        if n.strip().lower() == name.lower().encode():
            return v.strip().decode()
    return None


def _status(message: bytes) -> int | None:
    if not message.startswith(b"SIP/2.0 "):
        return None
    return int(message.split(b" ", 2)[1])


def _cseq_method(message: bytes) -> str | None:
    value = _raw_header(message, "CSeq")
    return value.split()[1] if value else None


def _method(message: bytes) -> str | None:
    if message.startswith(b"SIP/2.0 "):
        return None
    return message.split(b" ", 1)[0].decode()


def response(status: int, method: str | None = None) -> Callable[[bytes], bool]:
    """
    A predicate: a response with C{status} (to C{method} when given).
    """
    return lambda m: _status(m) == status and (method is None or _cseq_method(m) == method)


def final(method: str) -> Callable[[bytes], bool]:
    """
    A predicate: any final response to C{method}.
    """
    return lambda m: (_status(m) or 0) >= 200 and _cseq_method(m) == method


def request(method: str) -> Callable[[bytes], bool]:
    """
    A predicate: a request of C{method}.
    """
    return lambda m: _method(m) == method


def multipart(*parts: tuple[str, bytes], disposition: bool = True) -> bytes:
    """
    A C{multipart/mixed;boundary=foobar} body as in RFC 7866 figure 12.
    """
    out = b""
    for ctype, body in parts:
        out += b"--foobar\r\nContent-Type: " + ctype.encode() + b"\r\n"
        if ctype.startswith("application/rs-metadata") and disposition:
            out += b"Content-Disposition: recording-session\r\n"
        out += b"\r\n" + body + b"\r\n"
    return out + b"--foobar--\r\n"


def relabel(metadata: bytes, labels: dict[str, str]) -> bytes:
    """
    The metadata with its stream labels renamed.
    """
    for old, new in labels.items():
        metadata = metadata.replace(b"<label>%s</label>" % old.encode(), b"<label>%s</label>" % new.encode())
    return metadata


def set_t1(path: Path, t1: float) -> None:
    """
    Set T1 (RFC 3261 s17.1.1.1) to C{t1} seconds in a configuration file
    L{write_config} wrote (with its T1 of 0.05 s).
    """
    text = path.read_text()
    assert "\nt1 = 0.05\n" in text
    path.write_text(text.replace("\nt1 = 0.05\n", "\nt1 = %s\n" % (t1,)))


def start_service(case: TestCase, path: Path, t1: float | None = None) -> tuple[config_mod.Config, Any]:
    """
    Load the configuration at C{path}, build the service and start it;
    stopped after C{case}.

    @param t1: When given, T1 in seconds instead of the file's (L{set_t1}).
    @return: The configuration and the service.
    """
    if t1 is not None:
        set_t1(path, t1)
    cfg = config_mod.load(path)
    service = build_service(cfg, reactor)
    service.startService()
    case.addCleanup(service.stopService)
    return cfg, service


def cancel_of(invite: bytes) -> bytes:
    """
    The CANCEL of C{invite}: RFC 3261 s9.1, the same Request-URI, Via
    (branch), From, To, Call-ID and CSeq number as the INVITE.
    """
    head = invite.partition(b"\r\n\r\n")[0].split(b"\r\n")
    return b"\r\n".join(
        [head[0].replace(b"INVITE ", b"CANCEL ", 1)] + _cancel_headers(head) + [b"CSeq: 101 CANCEL", b"Content-Length: 0"]
    ) + b"\r\n\r\n"


def ack_of_failure(invite: bytes, to: str) -> bytes:
    """
    The ACK of a non-2xx final response to C{invite}: RFC 3261 s17.1.1.3,
    the INVITE's branch, and the To of the response (C{to}).
    """
    head = invite.partition(b"\r\n\r\n")[0].split(b"\r\n")
    headers = [(b"To: " + to.encode()) if h.lower().startswith(b"to:") else h for h in _cancel_headers(head)]
    return b"\r\n".join([head[0].replace(b"INVITE ", b"ACK ", 1)] + headers + [b"CSeq: 101 ACK", b"Content-Length: 0"]) + b"\r\n\r\n"


def _cancel_headers(head: list[bytes]) -> list[bytes]:
    """
    The header lines of an INVITE's C{head} a CANCEL or an ACK for a
    non-2xx copies: Via, From, To, Call-ID, Max-Forwards.
    """
    return [h for h in head[1:] if h.split(b":")[0].lower() in (b"via", b"from", b"to", b"call-id", b"max-forwards")]


class Src:
    """
    The SRC: a UDP peer on 127.0.0.1 (L{listen_udp}) that sends raw SIP to
    the service and keeps every message it receives, read through
    predicates (L{take}, L{matching}).
    """

    def __init__(self, test: ScenarioCase) -> None:
        self.test = test
        self.peer, self.port = listen_udp(test)
        self.invite_raw = b""
        self.ids: dict[str, str] = {}
        self.ok_raw = b""
        self.cseq = 101

    def send(self, data: bytes) -> None:
        """
        Send C{data} to the service's SIP port.
        """
        self.peer.send(data, self.test.sip_port)

    def matching(self, predicate: Callable[[bytes], bool]) -> list[bytes]:
        """
        Every message received so far that matches, taken or not
        (L{UdpPeer.matching}).
        """
        return self.peer.matching(predicate)

    def take(self, predicate: Callable[[bytes], bool], timeout: float = 5.0) -> Awaitable[bytes]:
        """
        The first message not yet taken that matches C{predicate}, now or
        when it comes (L{UdpPeer.take}).
        """
        return self.peer.take(predicate, timeout)

    async def invite(
        self,
        offer: bytes,
        metadata: bytes | None = METADATA,
        domain: str = DOMAIN,
        edit: Callable[[bytes], bytes] | None = None,
        extra_headers: str = "",
    ) -> bytes:
        """
        Send the RFC 7866 INVITE (optionally edited) and return the final
        response.
        """
        invite, self.ids = siprec_invite("udp", self.port, domain, offer, metadata, extra_headers=extra_headers)
        if edit is not None:
            invite = _set_content_length(edit(invite))
        self.invite_raw = invite
        self.send(invite)
        final_response = await self.take(final("INVITE"))
        if _status(final_response) == 200:
            self.ok_raw = final_response
        return final_response

    async def call(self, offer: bytes, **kw: Any) -> tuple[bytes, str]:
        """
        INVITE, 200, ACK: the answer and the session id (from newCall).
        """
        ok = await self.invite(offer, **kw)
        self.test.assertEqual(_status(ok), 200, ok[:200])
        self.ack(101)
        session_id = await self.test.session_for(self.ids["call_id"])
        return ok, session_id

    def ack(self, cseq: int) -> None:
        self.send(in_dialog("ACK", "udp", self.port, self.ok_raw, self.ids, cseq, DOMAIN))

    async def in_dialog(self, method: str, body: bytes = b"", content_type: str | None = None, extra: str = "") -> bytes:
        """
        Send an in-dialog request with the next CSeq; return its final
        response (a 2xx to a re-INVITE is ACKed).
        """
        self.cseq += 1
        cseq = self.cseq
        self.send(in_dialog(method, "udp", self.port, self.ok_raw, self.ids, cseq, DOMAIN, body, content_type, extra))
        resp = await self.take(lambda m: final(method)(m) and _raw_header(m, "CSeq") == "%d %s" % (cseq, method))
        if method == "INVITE" and _status(resp) == 200:
            self.ack(cseq)
        return resp

    def answer(self, req: bytes, status: int = 200, reason: str = "OK") -> None:
        """
        Answer a request the service sent us.
        """
        lines = ["SIP/2.0 %d %s" % (status, reason)]
        for name in ("Via", "From", "To", "Call-ID", "CSeq"):
            for line in req.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
                n, _, v = line.decode().partition(":")
                if n.strip().lower() == name.lower():
                    lines.append("%s: %s" % (name, v.strip()))
        lines.append("Content-Length: 0")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode())

    async def bye(self) -> None:
        """
        End the call from the SRC.
        """
        resp = await self.in_dialog("BYE")
        self.test.assertEqual(_status(resp), 200)


def parse_response(raw: bytes) -> Response:
    """
    Parse a response (headers read by name below).
    """
    resp = parse(raw, datagram=False)
    assert isinstance(resp, Response)
    return resp


def answer_of(raw: bytes) -> SessionDescription:
    """
    The SDP answer of a response.
    """
    return parse_sdp(parse_response(raw).body)


class ScenarioCase(TestCase):
    """
    Starts the real service for one test.
    """

    timeout = 30
    rtp_base = RANGE_LOW

    def start(
        self,
        app: AppServer | None = None,
        *,
        tenant: str = "",
        rtp: str = "",
        rtp_pairs: int = 50,
        callback_timeout: float = 3.0,
        t1: float | None = None,
    ) -> AppServer:
        """
        Start the application (an L{AppServer} by default) and the service,
        with extra C{[[tenant]]} and C{[rtp]} lines.

        @param t1: The service's T1 (RFC 3261 s17.1.1.1) in seconds, when
            not L{write_config}'s 0.05.
        """
        self.app = app if app is not None else AppServer()
        app_port = self.app.listen()
        self.addCleanup(self.app.port.stopListening)
        directory = Path(tempfile.mkdtemp(prefix="aiconnect-scn-"))
        certs = Certificates()
        self.sip_port, tls_port, self.api_port = _free_ports(3)
        extra = "callback_timeout = %s\n%s" % (callback_timeout, tenant)
        path = write_config(
            directory, certs, self.sip_port, self.sip_port, tls_port, self.api_port,
            extra=extra, app_port=app_port, rtp=(self.rtp_base, self.rtp_base + 2 * rtp_pairs - 1), rtp_extra=rtp,
        )
        self.cfg, self.service = start_service(self, path, t1)
        return self.app

    def src(self) -> Src:
        """
        A new SRC peer.
        """
        return Src(self)

    async def session_for(self, call_id: str) -> str:
        """
        The session id the application was given in newCall for C{call_id}.
        """

        def found() -> str | None:
            for nc in self.app.new_calls:
                if nc["callId"] == call_id:
                    return str(nc["sessionId"])
            return None

        return await wait_until(found, what="a newCall for %s" % (call_id,))

    async def session(self, session_id: str) -> dict[str, Any]:
        """
        C{GET /{domain}/sessions/{id}} with the tenant's token.
        """
        resp = await treq.get(
            "http://127.0.0.1:%d/%s/sessions/%s" % (self.api_port, DOMAIN, session_id),
            headers={"Authorization": "Bearer " + TOKEN},
            persistent=False,
        )
        body = await resp.content()
        self.assertEqual(resp.code, 200, body)
        return json.loads(body)["session"]

    async def sessions(self) -> list[dict[str, Any]]:
        """
        C{GET /{domain}/sessions}.
        """
        resp = await treq.get(
            "http://127.0.0.1:%d/%s/sessions" % (self.api_port, DOMAIN),
            headers={"Authorization": "Bearer " + TOKEN},
            persistent=False,
        )
        body = await resp.content()
        self.assertEqual(resp.code, 200, body)
        return list(json.loads(body)["sessions"])

    def events_of(self, session_id: str) -> list[dict[str, Any]]:
        """
        The events of a session that arrived so far.
        """
        return [e for e in self.app.events if e["sessionId"] == session_id]

    async def events_for(self, session_id: str, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """
        The first C{n} events of a session, once they arrived.
        """
        await wait_until(lambda: len(self.events_of(session_id)) >= n, timeout, interval=0.05)
        return self.events_of(session_id)

    async def packets(self, session_id: str) -> list[tuple[int, int]]:
        """
        (packets_in, foreign_source drops) per inbound stream.
        """
        body = await self.session(session_id)
        return [(s["packets_in"], s["drops"]["foreign_source"]) for s in body["media"]["streams"]]


def _plain_invite(invite: bytes) -> bytes:
    """
    A plain (non-SIPRec) INVITE from the SIPRec one: no C{Require: siprec},
    no C{+sip.src}, a lone SDP body.
    """
    head, _, body = invite.partition(b"\r\n\r\n")
    head = head.replace(b"Require: siprec\r\n", b"").replace(b";+sip.src", b"")
    sdp = body.split(b"Content-Type: application/sdp\r\n\r\n", 1)[1].split(b"\r\n--foobar", 1)[0]
    return _replace_body(head + b"\r\n\r\n", "application/sdp", sdp)
