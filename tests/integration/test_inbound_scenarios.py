"""
Inbound SIPRec behaviours and real-world quirks, proved end to end (issue 3,
deliverable 3): the real service built from a generated configuration, a
real HTTP application on 127.0.0.1 and an SRC speaking raw UDP bytes built
from the RFC 7866 figure 12 template.

Each test class has its own RTP port range (24000 + 100 * n) so the classes
never collide with each other or with the other integration tests.

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
from typing import Any, Callable

import treq
from twisted.internet import defer, reactor, task
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import server

from aiconnect import config as config_mod
from aiconnect.sip.message import Response, parse
from aiconnect.sip.sdp import SessionDescription, parse_sdp
from aiconnect.siprec import srs as srs_mod
from aiconnect.tap import build_service
from tests.integration.helpers import Certificates, UdpPeer, free_port, write_config
from tests.integration.siprec_peer import DATA, AppServer, in_dialog, rtp_packet, sdp_offer, siprec_invite

DOMAIN = "customer.example.com"
TOKEN = "t0ken"
#: RFC 8068 s3.2.1: Alice sends on the streams labelled 96/97, Bob on 98/99.
METADATA = (DATA / "rfc8068-s3.2.1-1-metadata.xml").read_bytes()
#: The first and last RTP port any class of this module uses.
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


class Src:
    """
    The SRC: a UDP socket on 127.0.0.1 that sends raw SIP and keeps every
    message it receives, read through predicates.
    """

    def __init__(self, test: ScenarioCase) -> None:
        self.test = test
        self.peer = UdpPeer()
        self.port_obj = reactor.listenUDP(0, self.peer, interface="127.0.0.1")
        test.addCleanup(self.port_obj.stopListening)
        self.port = self.port_obj.getHost().port
        self.taken: set[int] = set()
        self.invite_raw = b""
        self.ids: dict[str, str] = {}
        self.ok_raw = b""
        self.cseq = 101

    def send(self, data: bytes) -> None:
        self.peer.send(data, self.test.sip_port)

    def all(self, predicate: Callable[[bytes], bool]) -> list[bytes]:
        """
        Every message received so far that matches, taken or not.
        """
        return [m for m in self.peer.received if predicate(m)]

    async def wait(self, predicate: Callable[[bytes], bool], timeout: float = 5.0) -> bytes:
        """
        The first message not yet taken that matches C{predicate}.
        """
        for _ in range(int(timeout / 0.01)):
            for i, m in enumerate(self.peer.received):
                if i not in self.taken and predicate(m):
                    self.taken.add(i)
                    return m
            await task.deferLater(reactor, 0.01, lambda: None)
        raise AssertionError("no matching message in %.1f s; got %r" % (timeout, [m[:40] for m in self.peer.received]))

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
        final_response = await self.wait(final("INVITE"))
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
        resp = await self.wait(lambda m: final(method)(m) and _raw_header(m, "CSeq") == "%d %s" % (cseq, method))
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
    ) -> AppServer:
        """
        Start the application (an L{AppServer} by default) and the service,
        with extra C{[[tenant]]} and C{[rtp]} lines.
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
        self.cfg = config_mod.load(path)
        self.service = build_service(self.cfg, reactor)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        return self.app

    def src(self) -> Src:
        return Src(self)

    def rtp_socket(self) -> tuple[UdpPeer, int]:
        peer = UdpPeer()
        port = reactor.listenUDP(0, peer, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return peer, port.getHost().port

    async def session_for(self, call_id: str) -> str:
        """
        The session id the application was given in newCall for C{call_id}.
        """
        for _ in range(200):
            for nc in self.app.new_calls:
                if nc["callId"] == call_id:
                    return str(nc["sessionId"])
            await task.deferLater(reactor, 0.02, lambda: None)
        raise AssertionError("no newCall for %s" % call_id)

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

    async def poll(self, check: Callable[[], Any], timeout: float = 5.0) -> None:
        """
        Wait until C{check()} (possibly async) is true.
        """
        for _ in range(int(timeout / 0.05)):
            result = check()
            if isinstance(result, defer.Deferred) or hasattr(result, "__await__"):
                result = await result
            if result:
                return
            await task.deferLater(reactor, 0.05, lambda: None)
        self.fail("condition not met in %.1f s" % timeout)

    async def events_for(self, session_id: str, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """
        The first C{n} events of a session, once they arrived.
        """
        await self.poll(lambda: len([e for e in self.app.events if e["sessionId"] == session_id]) >= n, timeout)
        return [e for e in self.app.events if e["sessionId"] == session_id]

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


class AdmissionTests(ScenarioCase):
    """
    Who gets in: tenant by Request-URI domain, allowed sources, SIPRec
    checks, RTP ports.
    """

    rtp_base = 24000

    async def test_unknown_domain(self) -> None:
        """
        An INVITE for a domain no tenant has is answered 404 and reaches no
        application.
        """
        self.start()
        src = self.src()
        _, port = self.rtp_socket()
        resp = await src.invite(sdp_offer([("96", port, 8)]), domain="unknown.example.org")
        self.assertEqual(_status(resp), 404)
        self.assertNotEqual(src.all(response(100, "INVITE")), [])
        self.assertEqual(src.all(response(200)), [])
        self.assertEqual(self.app.new_calls, [])
        self.assertEqual(await self.sessions(), [])

    async def test_source_not_allowed(self) -> None:
        """
        A tenant with C{allowed_sources} that does not hold 127.0.0.1 answers
        403.
        """
        self.start(tenant='allowed_sources = ["10.0.0.0/8", "192.0.2.0/24"]\n')
        src = self.src()
        _, port = self.rtp_socket()
        resp = await src.invite(sdp_offer([("96", port, 8)]))
        self.assertEqual(_status(resp), 403)
        self.assertEqual(self.app.new_calls, [])
        self.assertEqual(await self.sessions(), [])

    async def test_allowed_source(self) -> None:
        """
        A source inside C{allowed_sources} is answered 200.
        """
        self.start(tenant='allowed_sources = ["10.0.0.0/8", "127.0.0.0/8"]\n')
        src = self.src()
        _, port = self.rtp_socket()
        await src.call(sdp_offer([("96", port, 8)]))
        await src.bye()

    async def test_plain_invite_rejected(self) -> None:
        """
        A plain INVITE (no C{Require: siprec}, no C{+sip.src}, no metadata)
        is answered 488 under the default C{non_siprec = "reject"}.
        """
        self.start()
        src = self.src()
        _, port = self.rtp_socket()
        resp = await src.invite(sdp_offer([("96", port, 8)]), metadata=None, edit=_plain_invite)
        self.assertEqual(_status(resp), 488)
        self.assertEqual(self.app.new_calls, [])
        # The request really was plain.
        self.assertNotIn(b"siprec", src.invite_raw)
        self.assertIn(b"Content-Type: application/sdp\r\n", src.invite_raw)

    async def test_plain_invite_accepted_when_configured(self) -> None:
        """
        With C{non_siprec = "accept"} a plain INVITE is recorded like a
        SIPRec session without metadata (C{metadataError: "missing"}).
        """
        self.start(tenant='non_siprec = "accept"\n')
        src = self.src()
        _, port = self.rtp_socket()
        ok, session_id = await src.call(sdp_offer([("96", port, 8)]), metadata=None, edit=_plain_invite)
        self.assertEqual([m.direction for m in answer_of(ok).media], ["recvonly"])
        self.assertEqual(self.app.new_calls[0]["metadataError"], "missing")
        self.assertEqual(self.app.new_calls[0]["participants"], [])
        await src.bye()

    async def test_ports_exhausted(self) -> None:
        """
        With every RTP port pair taken, an INVITE gets 503 with Retry-After;
        once the first call ended its ports serve a new call.
        """
        self.start(rtp_pairs=2)
        first = self.src()
        _, pa = self.rtp_socket()
        _, pb = self.rtp_socket()
        ok, first_id = await first.call(sdp_offer([("96", pa, 8), ("98", pb, 8)]))
        first_ports = sorted(m.port for m in answer_of(ok).media)
        self.assertEqual(first_ports, [self.rtp_base, self.rtp_base + 2])

        second = self.src()
        resp = await second.invite(sdp_offer([("96", pa, 8)]))
        self.assertEqual(_status(resp), 503)
        self.assertEqual(parse_response(resp).headers.get("Retry-After"), "5")
        self.assertEqual(len(self.app.new_calls), 1)

        await first.bye()
        self.assertEqual((await self.session(first_id))["state"], "ended")
        third = self.src()
        ok3, third_id = await third.call(sdp_offer([("96", pa, 8), ("98", pb, 8)]))
        self.assertEqual(sorted(m.port for m in answer_of(ok3).media), first_ports)
        await third.bye()


class _HoldingApp(AppServer):
    """
    An application that holds each newCall request open (no answer) while
    C{hold} is true, and notes when the service abandons one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.hold = True
        self.held: list[Any] = []
        self.abandoned = 0

    def render_POST(self, request: Any) -> Any:
        if request.path != b"/newCall" or not self.hold:
            return super().render_POST(request)
        super().render_POST(request)  # records it, checks the signature
        self.held.append(request)

        def gone(_: Any) -> None:
            self.abandoned += 1

        request.notifyFinish().addErrback(gone)
        return server.NOT_DONE_YET


class CancelTests(ScenarioCase):
    """
    CANCEL before the answer (RFC 3261 s9.2).
    """

    rtp_base = 24100

    async def test_cancel_before_answer(self) -> None:
        """
        A CANCEL while newCall is pending gets 200, the INVITE 487 (which the
        SRC ACKs), never a 200; the ports are released, the newCall request
        is abandoned, and the application gets only SESSIONCOMPLETED
        "cancel".
        """
        app = _HoldingApp()
        self.start(app, rtp_pairs=1, callback_timeout=10.0)
        src = self.src()
        _, port = self.rtp_socket()
        invite, src.ids = siprec_invite("udp", src.port, DOMAIN, sdp_offer([("96", port, 8)]), METADATA)
        src.send(invite)
        await src.wait(response(100, "INVITE"))
        session_id = await self.session_for(src.ids["call_id"])
        self.assertEqual((await self.session(session_id))["state"], "negotiating")

        # RFC 3261 s9.1: same Request-URI, Via (branch), From, To, Call-ID
        # and CSeq number as the INVITE.
        head = invite.partition(b"\r\n\r\n")[0].split(b"\r\n")
        keep = [h for h in head[1:] if h.split(b":")[0].lower() in (b"via", b"from", b"to", b"call-id", b"max-forwards")]
        cancel = b"\r\n".join(
            [head[0].replace(b"INVITE ", b"CANCEL ", 1)] + keep + [b"CSeq: 101 CANCEL", b"Content-Length: 0"]
        ) + b"\r\n\r\n"
        src.send(cancel)
        self.assertEqual(_status(await src.wait(final("CANCEL"))), 200)
        resp487 = await src.wait(final("INVITE"))
        self.assertEqual(_status(resp487), 487)
        # RFC 3261 s17.1.1.3: the ACK for a non-2xx reuses the INVITE's
        # branch, and the To of the response.
        to = _raw_header(resp487, "To")
        ack_head = [head[0].replace(b"INVITE ", b"ACK ", 1)] + [
            (b"To: " + to.encode()) if h.lower().startswith(b"to:") else h
            for h in keep
        ] + [b"CSeq: 101 ACK", b"Content-Length: 0"]
        src.send(b"\r\n".join(ack_head) + b"\r\n\r\n")

        events = await self.events_for(session_id, 1)
        self.assertEqual([e["event"] for e in events], ["SESSIONCOMPLETED"])
        self.assertEqual(events[0]["reason"], "cancel")
        await self.poll(lambda: app.abandoned == 1)
        body = await self.session(session_id)
        self.assertEqual((body["state"], body["endReason"]), ("ended", "cancel"))

        # No 200 ever, and the 487 is no longer retransmitted once ACKed.
        await task.deferLater(reactor, 0.5, lambda: None)
        n487 = len(src.all(response(487, "INVITE")))
        await task.deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(len(src.all(response(487, "INVITE"))), n487)
        self.assertEqual(src.all(response(200, "INVITE")), [])
        self.assertEqual([e["event"] for e in self.app.events if e["sessionId"] == session_id], ["SESSIONCOMPLETED"])

        # The only port pair is free again: a new call is answered.
        app.hold = False
        other = self.src()
        ok, _ = await other.call(sdp_offer([("96", port, 8)]))
        self.assertEqual([m.port for m in answer_of(ok).media], [self.rtp_base])
        await other.bye()


def _origin_version(sdp: SessionDescription) -> int:
    return int(sdp.origin.sess_version)


class ReInviteTests(ScenarioCase):
    """
    re-INVITEs from the SRC: new media, codec change, a new stream, hold.
    """

    rtp_base = 24200

    async def test_new_media_and_codec(self) -> None:
        """
        A re-INVITE moving stream 1 to another remote port with PCMU instead
        of PCMA is answered 200 recvonly on the same local ports with the
        o= version incremented; RTP from the new port is counted and from
        the old port dropped as foreign.
        """
        self.start()
        src = self.src()
        old_a, port_a = self.rtp_socket()
        _, port_b = self.rtp_socket()
        new_a, port_a2 = self.rtp_socket()
        ok, session_id = await src.call(sdp_offer([("96", port_a, 8), ("98", port_b, 8)]))
        first = answer_of(ok)
        ports = [m.port for m in first.media]
        for i in range(3):
            old_a.transport.write(rtp_packet(10 + i, 160 * i, 0xA, 8, b"\xd5" * 160), ("127.0.0.1", ports[0]))
        await self.poll(lambda: self._packets_are(session_id, [(3, 0), (0, 0)]))

        offer2 = sdp_offer([("96", port_a2, 0), ("98", port_b, 8)], version=2890844527)
        resp = await src.in_dialog("INVITE", multipart(("application/sdp", offer2)), "multipart/mixed;boundary=foobar")
        self.assertEqual(_status(resp), 200)
        second = parse_response(resp)
        self.assertTrue(second.contacts[0].has_param("+sip.srs"))
        answer2 = parse_sdp(second.body)
        self.assertEqual([m.port for m in answer2.media], ports)
        self.assertEqual([m.direction for m in answer2.media], ["recvonly", "recvonly"])
        self.assertEqual([m.label for m in answer2.media], ["96", "98"])
        self.assertEqual(answer2.media[0].rtpmap[0].encoding, "PCMU")
        self.assertEqual(_origin_version(answer2), _origin_version(first) + 1)
        self.assertEqual(answer2.origin.sess_id, first.origin.sess_id)
        body = await self.session(session_id)
        self.assertEqual((body["streams"][0]["codec"], body["streams"][0]["remote"]), ("PCMU", "127.0.0.1:%d" % port_a2))

        for i in range(4):
            new_a.transport.write(rtp_packet(20 + i, 160 * i, 0xB, 0, b"\xff" * 160), ("127.0.0.1", ports[0]))
        for i in range(2):
            old_a.transport.write(rtp_packet(30 + i, 160 * i, 0xA, 8, b"\xd5" * 160), ("127.0.0.1", ports[0]))
        await self.poll(lambda: self._packets_are(session_id, [(7, 2), (0, 0)]))

        # The same offer again: same answer, same version (RFC 3264 s8).
        resp = await src.in_dialog("INVITE", offer2, "application/sdp")
        self.assertEqual(_origin_version(answer_of(resp)), _origin_version(answer2))
        await src.bye()

    async def _packets_are(self, session_id: str, expected: list[tuple[int, int]]) -> bool:
        return await self.packets(session_id) == expected

    async def test_new_stream_beyond_first_offer(self) -> None:
        """
        A re-INVITE adding a third stream (RFC 7866 s7.1.1.1) gets it its own
        even port, after the first two, the two others unchanged; RTP sent
        to it is counted in the session's media stats.  An m-line added
        while another is disabled (port 0) in the same offer takes the
        disabled one's port.
        """
        self.start()
        src = self.src()
        _, pa = self.rtp_socket()
        _, pb = self.rtp_socket()
        rtp_c, pc = self.rtp_socket()
        _, pd = self.rtp_socket()
        ok, session_id = await src.call(sdp_offer([("96", pa, 8), ("98", pb, 8)]))
        ports = [m.port for m in answer_of(ok).media]

        offer = sdp_offer([("96", pa, 8), ("98", pb, 8), ("99", pc, 8)], version=2890844527)
        resp = await src.in_dialog("INVITE", multipart(("application/sdp", offer)), "multipart/mixed;boundary=foobar")
        self.assertEqual(_status(resp), 200)
        answer = answer_of(resp)
        third = answer.media[2].port
        self.assertEqual([m.port for m in answer.media], ports + [ports[1] + 2])
        self.assertEqual(third % 2, 0)
        self.assertEqual([m.label for m in answer.media], ["96", "98", "99"])
        self.assertEqual([m.direction for m in answer.media], ["recvonly"] * 3)
        for i in range(3):
            rtp_c.transport.write(rtp_packet(i, 160 * i, 0xC, 8, b"\xd5" * 160), ("127.0.0.1", third))
        await self.poll(lambda: self._packets_are(session_id, [(0, 0), (0, 0), (3, 0)]))
        body = await self.session(session_id)
        self.assertEqual(
            [(s["label"], s["localPort"]) for s in body["streams"]],
            [("96", ports[0]), ("98", ports[1]), ("99", third)],
        )

        # RFC 7866 s7.1.1.1: stream 98 removed (port 0), 100 added.
        offer = sdp_offer([("96", pa, 8), ("98", pb, 8), ("99", pc, 8), ("100", pd, 8)], version=2890844528)
        offer = offer.replace(b"m=audio %d " % pb, b"m=audio 0 ")
        resp = await src.in_dialog("INVITE", offer, "application/sdp")
        self.assertEqual(_status(resp), 200)
        answer = answer_of(resp)
        self.assertEqual([m.port for m in answer.media], [ports[0], 0, third, ports[1]])
        self.assertEqual([m.label for m in answer.media], ["96", "98", "99", "100"])
        body = await self.session(session_id)
        self.assertEqual(
            [(s["label"], s["localPort"]) for s in body["streams"]],
            [("96", ports[0]), ("99", third), ("100", ports[1])],
        )
        await src.bye()

    async def test_new_stream_ports_exhausted(self) -> None:
        """
        When the port range cannot hold every stream a re-INVITE adds, the
        first added streams get ports while they last, the rest port 0, and
        the re-INVITE still succeeds with the other streams unchanged.
        """
        self.start(rtp_pairs=3)
        src = self.src()
        socks = [self.rtp_socket() for _ in range(4)]
        ok, session_id = await src.call(sdp_offer([("96", socks[0][1], 8), ("98", socks[1][1], 8)]))
        ports = [m.port for m in answer_of(ok).media]

        offer = sdp_offer([(label, sock[1], 8) for label, sock in zip(("96", "98", "99", "100"), socks)], version=2890844527)
        resp = await src.in_dialog("INVITE", offer, "application/sdp")
        self.assertEqual(_status(resp), 200)
        answer = answer_of(resp)
        self.assertEqual([m.port for m in answer.media], ports + [self.rtp_base + 4, 0])
        self.assertEqual([m.label for m in answer.media], ["96", "98", "99", "100"])

        # The range is full now: a fifth stream gets port 0 as well.
        offer = sdp_offer(
            [(label, sock[1], 8) for label, sock in zip(("96", "98", "99", "100"), socks)] + [("101", socks[3][1], 8)],
            version=2890844528,
        )
        resp = await src.in_dialog("INVITE", offer, "application/sdp")
        self.assertEqual(_status(resp), 200)
        self.assertEqual([m.port for m in answer_of(resp).media], ports + [self.rtp_base + 4, 0, 0])
        body = await self.session(session_id)
        self.assertEqual([s["label"] for s in body["streams"]], ["96", "98", "99"])
        self.assertEqual(len(body["media"]["streams"]), 3)
        await src.bye()

    async def test_hold(self) -> None:
        """
        A re-INVITE putting the streams on hold (C{a=inactive}, with and
        without C{c=0.0.0.0}) is answered C{a=inactive}; resuming with
        C{a=sendonly} is answered C{a=recvonly} again.
        """
        self.start()
        src = self.src()
        _, pa = self.rtp_socket()
        _, pb = self.rtp_socket()
        offer = sdp_offer([("96", pa, 8), ("98", pb, 8)])
        ok, session_id = await src.call(offer)
        ports = [m.port for m in answer_of(ok).media]
        version = _origin_version(answer_of(ok))

        held = offer.replace(b"a=sendonly", b"a=inactive").replace(b"2890844526 2890844526", b"2890844526 2890844527")
        resp = await src.in_dialog("INVITE", held, "application/sdp")
        self.assertEqual(_status(resp), 200)
        answer = answer_of(resp)
        self.assertEqual([m.direction for m in answer.media], ["inactive", "inactive"])
        self.assertEqual([m.port for m in answer.media], ports)
        self.assertEqual(_origin_version(answer), version + 1)

        old_style = held.replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 0.0.0.0").replace(b"2890844527", b"2890844528")
        resp = await src.in_dialog("INVITE", old_style, "application/sdp")
        self.assertEqual(_status(resp), 200)
        self.assertEqual([m.direction for m in answer_of(resp).media], ["inactive", "inactive"])
        body = await self.session(session_id)
        self.assertEqual([s["direction"] for s in body["streams"]], ["inactive", "inactive"])
        self.assertEqual([s["remote"] for s in body["streams"]], [None, None])
        self.assertEqual(body["state"], "active")

        resumed = offer.replace(b"2890844526 2890844526", b"2890844526 2890844529")
        resp = await src.in_dialog("INVITE", resumed, "application/sdp")
        self.assertEqual([m.direction for m in answer_of(resp).media], ["recvonly", "recvonly"])
        body = await self.session(session_id)
        self.assertEqual([s["remote"] for s in body["streams"]], ["127.0.0.1:%d" % pa, "127.0.0.1:%d" % pb])
        await src.bye()

    async def test_metadata_in_reinvite(self) -> None:
        """
        A re-INVITE carrying SDP and an RFC 8068 partial metadata update
        (Carol replaces Alice) updates the session's participants.
        """
        self.start()
        src = self.src()
        _, pa = self.rtp_socket()
        _, pb = self.rtp_socket()
        offer = sdp_offer([("96", pa, 8), ("98", pb, 8)])
        _, session_id = await src.call(offer)
        update = (DATA / "rfc8068-s3.2.3-1-metadata.xml").read_bytes()
        body = multipart(("application/sdp", offer), ("application/rs-metadata", update))
        resp = await src.in_dialog("INVITE", body, "multipart/mixed;boundary=foobar")
        self.assertEqual(_status(resp), 200)
        names = [p["name"] for p in (await self.session(session_id))["participants"]]
        self.assertEqual(names, ["Alice", "Bob", "Carol"])
        await src.bye()


class HoldMediaTimeoutTests(ScenarioCase):
    """
    A held session is not ended by the media timeout; a silent one is.
    """

    rtp_base = 24800

    async def test_hold_pauses_media_timeout(self) -> None:
        """
        With C{media_timeout = 1}, a session on hold (C{a=inactive}) for 2.5 s
        stays up; after it resumes and the SRC stays silent, the service
        sends BYE and reports SESSIONCOMPLETED "mediaTimeout".
        """
        self.start(rtp="media_timeout = 1.0\n")
        src = self.src()
        rtp_a, pa = self.rtp_socket()
        offer = sdp_offer([("96", pa, 8)])
        ok, session_id = await src.call(offer)
        port = answer_of(ok).media[0].port
        held = offer.replace(b"a=sendonly", b"a=inactive").replace(b"2890844526 2890844526", b"2890844526 2890844527")
        resp = await src.in_dialog("INVITE", held, "application/sdp")
        self.assertEqual([m.direction for m in answer_of(resp).media], ["inactive"])
        await task.deferLater(reactor, 2.5, lambda: None)
        self.assertEqual((await self.session(session_id))["state"], "active")
        self.assertEqual(src.all(request("BYE")), [])

        resumed = offer.replace(b"2890844526 2890844526", b"2890844526 2890844528")
        resp = await src.in_dialog("INVITE", resumed, "application/sdp")
        self.assertEqual([m.direction for m in answer_of(resp).media], ["recvonly"])
        rtp_a.transport.write(rtp_packet(1, 0, 0xC, 8, b"\xd5" * 160), ("127.0.0.1", port))
        self.assertEqual((await self.session(session_id))["state"], "active")
        bye = await src.wait(request("BYE"), timeout=5)
        src.answer(bye)
        events = await self.events_for(session_id, 2)
        self.assertEqual([e["event"] for e in events], ["SESSIONSTARTED", "SESSIONCOMPLETED"])
        self.assertEqual(events[1]["reason"], "mediaTimeout")


class UpdateTests(ScenarioCase):
    """
    Metadata-only UPDATEs (RFC 7866 s9.1, RFC 3311).
    """

    rtp_base = 24300

    async def _participants(self, session_id: str) -> list[tuple[str, str | None]]:
        return [(p["name"], p["aor"]) for p in (await self.session(session_id))["participants"]]

    async def test_lone_metadata_update(self) -> None:
        """
        An UPDATE whose only body is C{application/rs-metadata} (the RFC 7865
        s8.2 partial update) is answered 200 without SDP and renames the
        participant in C{GET /sessions/{id}}.
        """
        self.start()
        src = self.src()
        _, pa = self.rtp_socket()
        _, pb = self.rtp_socket()
        _, session_id = await src.call(sdp_offer([("96", pa, 8), ("98", pb, 8)]))
        self.assertEqual(
            await self._participants(session_id),
            [("Alice", "sip:alice@atlanta.com"), ("Bob", "sip:bob@biloxy.com")],
        )
        partial = (DATA / "rfc7865-s8.2-partial-update.xml").read_bytes()
        resp = await src.in_dialog("UPDATE", partial, "application/rs-metadata", extra="Content-Disposition: recording-session")
        self.assertEqual(_status(resp), 200)
        self.assertEqual(parse_response(resp).body, b"")
        self.assertEqual(
            await self._participants(session_id),
            [("Bob", "sip:bob@biloxi.com"), ("Bob", "sip:bob@biloxy.com")],
        )
        body = await self.session(session_id)
        self.assertIsNone(body["metadataError"])
        await src.bye()

    async def test_multipart_metadata_update(self) -> None:
        """
        An UPDATE with a C{multipart/mixed} body holding only the metadata
        part (RFC 8068 s3.2.3 transfer: Carol joins, Alice leaves) is
        answered 200 and the session gains Carol.
        """
        self.start()
        src = self.src()
        _, pa = self.rtp_socket()
        _, pb = self.rtp_socket()
        _, session_id = await src.call(sdp_offer([("96", pa, 8), ("98", pb, 8)]))
        update = (DATA / "rfc8068-s3.2.3-1-metadata.xml").read_bytes()
        resp = await src.in_dialog("UPDATE", multipart(("application/rs-metadata+xml", update)), "multipart/mixed;boundary=foobar")
        self.assertEqual(_status(resp), 200)
        participants = (await self.session(session_id))["participants"]
        self.assertEqual([p["name"] for p in participants], ["Alice", "Bob", "Carol"])
        carol = participants[2]
        self.assertEqual(carol["aor"], "sip:carol@example.com")
        bob = participants[1]
        self.assertEqual(bob["send"], ["98", "99"])
        await src.bye()

    async def test_bad_metadata_update(self) -> None:
        """
        An UPDATE with metadata that does not parse is still answered 200;
        the session keeps its participants and reports the error.
        """
        self.start()
        src = self.src()
        _, pa = self.rtp_socket()
        _, session_id = await src.call(sdp_offer([("96", pa, 8)]))
        resp = await src.in_dialog("UPDATE", b"<recording><oops", "application/rs-metadata")
        self.assertEqual(_status(resp), 200)
        body = await self.session(session_id)
        self.assertEqual(len(body["participants"]), 2)
        self.assertIsNotNone(body["metadataError"])
        await src.bye()


class OptionsTests(ScenarioCase):
    """
    OPTIONS keep-alives, in and out of the dialog.
    """

    rtp_base = 24400

    async def test_in_dialog_options(self) -> None:
        """
        An in-dialog OPTIONS is answered 200 and the session goes on.
        """
        self.start()
        src = self.src()
        _, pa = self.rtp_socket()
        _, session_id = await src.call(sdp_offer([("96", pa, 8)]))
        resp = await src.in_dialog("OPTIONS")
        self.assertEqual(_status(resp), 200)
        self.assertIn("INVITE", parse_response(resp).headers.get("Allow") or "")
        self.assertEqual((await self.session(session_id))["state"], "active")
        await src.bye()

    async def test_out_of_dialog_options(self) -> None:
        """
        An OPTIONS ping outside any dialog is answered 200.
        """
        self.start()
        src = self.src()
        options = (
            "OPTIONS sip:%s SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKopt1;rport\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:sbc@127.0.0.1>;tag=o1\r\n"
            "To: <sip:%s>\r\n"
            "Call-ID: opt-1@127.0.0.1\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n" % (DOMAIN, src.port, DOMAIN)
        ).encode()
        src.send(options)
        self.assertEqual(_status(await src.wait(final("OPTIONS"))), 200)


class SessionTimerTests(ScenarioCase):
    """
    Session timers (RFC 4028) when the SRC asks for them.

    The timers' expiry and refresh are tested with a Clock in
    C{tests.siprec.test_srs_timers} (no real waits).
    """

    rtp_base = 24500

    async def test_negotiated(self) -> None:
        """
        C{Session-Expires: 90;refresher=uac} with C{Supported: timer} is
        answered 200 with the same Session-Expires and C{Require: timer}.
        """
        self.start()
        src = self.src()
        _, pa = self.rtp_socket()
        ok, _ = await src.call(sdp_offer([("96", pa, 8)]), extra_headers="Session-Expires: 90;refresher=uac\nSupported: timer")
        resp = parse_response(ok)
        self.assertEqual(resp.headers.get("Session-Expires"), "90;refresher=uac")
        self.assertIn("timer", resp.headers.tokens("Require"))
        await src.bye()

    async def test_too_small(self) -> None:
        """
        A Session-Expires below 90 s is answered 422 with C{Min-SE: 90}.
        """
        self.start()
        src = self.src()
        _, pa = self.rtp_socket()
        resp = await src.invite(sdp_offer([("96", pa, 8)]), extra_headers="Session-Expires: 60;refresher=uac\nSupported: timer")
        self.assertEqual(_status(resp), 422)
        self.assertEqual(parse_response(resp).headers.get("Min-SE"), "90")
        self.assertEqual(self.app.new_calls, [])

    async def test_hostile_interval(self) -> None:
        """
        A Session-Expires in superscript digits or of 5,000 digits is
        answered 400 (not a 500 from C{int()}), and the service goes on.
        """
        self.start()
        src = self.src()
        _, pa = self.rtp_socket()
        for value in ("\u00b2\u00b3", "9" * 5000):
            resp = await src.invite(
                sdp_offer([("96", pa, 8)]), extra_headers="Session-Expires: %s\nSupported: timer" % (value,)
            )
            self.assertEqual(_status(resp), 400, resp[:200])
        self.assertEqual(self.app.new_calls, [])
        ok, _ = await src.call(sdp_offer([("96", pa, 8)]))
        self.assertEqual(_status(ok), 200)
        await src.bye()


class QuirkTests(ScenarioCase):
    """
    What real SRCs send.
    """

    rtp_base = 24600

    async def _answered(self, offer: bytes, labels: list[str], **kw: Any) -> tuple[bytes, str, Src]:
        src = self.src()
        ok, session_id = await src.call(offer, **kw)
        answer = answer_of(ok)
        self.assertEqual([m.label for m in answer.media], labels)
        self.assertTrue(parse_response(ok).contacts[0].has_param("+sip.srs"))
        return ok, session_id, src

    async def test_part_headers_without_space(self) -> None:
        """
        MIME part headers written C{Content-Type:application/SDP} (no space
        after the colon, upper-case subtype as in RFC 8068's examples) are
        understood: SDP answered, metadata parsed.
        """
        self.start()
        _, pa = self.rtp_socket()
        _, pb = self.rtp_socket()

        def squeeze(invite: bytes) -> bytes:
            head, _, body = invite.partition(b"\r\n\r\n")
            body = body.replace(b"Content-Type: ", b"Content-Type:").replace(b"Content-Disposition: ", b"Content-Disposition:")
            body = body.replace(b"Content-Type:application/sdp", b"Content-Type:application/SDP")
            assert b"Content-Type:application/SDP\r\n" in body and b": " not in body.split(b"<?xml")[0]
            return head + b"\r\n\r\n" + body

        ok, session_id, src = await self._answered(sdp_offer([("96", pa, 8), ("98", pb, 0)]), ["96", "98"], edit=squeeze)
        self.assertEqual([m.direction for m in answer_of(ok).media], ["recvonly", "recvonly"])
        self.assertEqual(sorted(p["name"] for p in self.app.new_calls[0]["participants"]), ["Alice", "Bob"])
        self.assertIsNone(self.app.new_calls[0]["metadataError"])
        await src.bye()

    async def test_inactive_first_invite(self) -> None:
        """
        An initial offer with C{a=inactive} is answered C{a=inactive} (RFC 3264
        s6.1) and the session is created.
        """
        self.start()
        _, pa = self.rtp_socket()
        _, pb = self.rtp_socket()
        offer = sdp_offer([("96", pa, 8), ("98", pb, 8)]).replace(b"a=sendonly", b"a=inactive")
        ok, session_id, src = await self._answered(offer, ["96", "98"])
        self.assertEqual([m.direction for m in answer_of(ok).media], ["inactive", "inactive"])
        body = await self.session(session_id)
        self.assertEqual(body["state"], "active")
        self.assertEqual([s["direction"] for s in body["streams"]], ["inactive", "inactive"])
        await src.bye()

    async def test_one_stream(self) -> None:
        """
        A single mixed stream is answered and its RTP counted.
        """
        self.start()
        rtp, pa = self.rtp_socket()
        ok, session_id, src = await self._answered(sdp_offer([("96", pa, 0)]), ["96"])
        port = answer_of(ok).media[0].port
        for i in range(3):
            rtp.transport.write(rtp_packet(i, 160 * i, 0x1, 0, b"\xff" * 160), ("127.0.0.1", port))
        await self.poll(lambda: self._counted(session_id, [3]))
        await src.bye()

    async def _counted(self, session_id: str, expected: list[int]) -> bool:
        return [p for p, _ in await self.packets(session_id)] == expected

    async def test_three_streams(self) -> None:
        """
        Three streams get three distinct even ports, each recvonly, each
        counting its own RTP.
        """
        self.start()
        socks = [self.rtp_socket() for _ in range(3)]
        offer = sdp_offer([("96", socks[0][1], 8), ("97", socks[1][1], 8), ("98", socks[2][1], 0)])
        ok, session_id, src = await self._answered(offer, ["96", "97", "98"])
        answer = answer_of(ok)
        ports = [m.port for m in answer.media]
        self.assertEqual(len(set(ports)), 3)
        self.assertTrue(all(p % 2 == 0 for p in ports))
        self.assertEqual([m.direction for m in answer.media], ["recvonly"] * 3)
        for n, ((sock, _), port, pt) in enumerate(zip(socks, ports, (8, 8, 0))):
            for i in range(n + 1):
                sock.transport.write(rtp_packet(i, 160 * i, 0x10 + n, pt, b"\xd5" * 160), ("127.0.0.1", port))
        await self.poll(lambda: self._counted(session_id, [1, 2, 3]))
        await src.bye()

    async def test_labels_other_than_numbers(self) -> None:
        """
        Labels "leg-a" and "42" are kept in the answer and bound to the
        metadata streams of the same labels.
        """
        self.start()
        _, pa = self.rtp_socket()
        _, pb = self.rtp_socket()
        metadata = relabel(METADATA, {"96": "leg-a", "98": "42"})
        ok, session_id, src = await self._answered(sdp_offer([("leg-a", pa, 8), ("42", pb, 8)]), ["leg-a", "42"], metadata=metadata)
        nc = self.app.new_calls[0]
        self.assertEqual([s["label"] for s in nc["streams"]], ["leg-a", "42"])
        self.assertEqual([s["participants"] for s in nc["streams"]], [["Alice"], ["Bob"]])
        alice = [p for p in nc["participants"] if p["name"] == "Alice"][0]
        self.assertIn("leg-a", alice["send"])
        await src.bye()

    async def test_missing_metadata(self) -> None:
        """
        A SIPRec INVITE without metadata is answered (tenant default
        C{missing_metadata = "accept"}) and newCall reports
        C{metadataError: "missing"}.
        """
        self.start()
        _, pa = self.rtp_socket()
        ok, session_id, src = await self._answered(sdp_offer([("96", pa, 8)]), ["96"], metadata=None)
        self.assertEqual(self.app.new_calls[0]["metadataError"], "missing")
        self.assertEqual(self.app.new_calls[0]["participants"], [])
        self.assertEqual((await self.session(session_id))["metadataError"], "missing")
        await src.bye()

    async def test_missing_metadata_rejected_when_configured(self) -> None:
        """
        With C{missing_metadata = "reject"} the same INVITE gets 488.
        """
        self.start(tenant='missing_metadata = "reject"\n')
        src = self.src()
        _, pa = self.rtp_socket()
        resp = await src.invite(sdp_offer([("96", pa, 8)]), metadata=None)
        self.assertEqual(_status(resp), 488)

    async def test_lf_only_sdp(self) -> None:
        """
        An SDP part with bare LF line ends inside the multipart is answered.
        """
        self.start()
        _, pa = self.rtp_socket()
        _, pb = self.rtp_socket()
        offer = sdp_offer([("96", pa, 8), ("98", pb, 8)]).replace(b"\r\n", b"\n")
        ok, session_id, src = await self._answered(offer, ["96", "98"])
        body = await self.session(session_id)
        self.assertEqual([s["remote"] for s in body["streams"]], ["127.0.0.1:%d" % pa, "127.0.0.1:%d" % pb])
        self.assertEqual(len(body["participants"]), 2)
        await src.bye()


class RetransmissionTests(ScenarioCase):
    """
    2xx retransmission until the ACK (RFC 3261 s13.3.1.4).
    """

    rtp_base = 24700

    async def test_unacked_2xx(self) -> None:
        """
        A 200 never ACKed is retransmitted (at least twice in the first
        second with T1 = 0.05 s); after 64*T1 the service sends BYE and
        reports SESSIONCOMPLETED "error", with no SESSIONSTARTED.
        """
        self.start()
        src = self.src()
        _, pa = self.rtp_socket()
        await src.invite(sdp_offer([("96", pa, 8)]))
        session_id = await self.session_for(src.ids["call_id"])
        await task.deferLater(reactor, 1.0, lambda: None)
        oks = src.all(response(200, "INVITE"))
        self.assertGreaterEqual(len(oks), 3)
        self.assertEqual(len(set(oks)), 1)
        self.assertEqual(src.all(request("BYE")), [])
        bye = await src.wait(request("BYE"), timeout=4)
        src.answer(bye)
        events = await self.events_for(session_id, 1)
        await task.deferLater(reactor, 0.5, lambda: None)
        events = [e for e in self.app.events if e["sessionId"] == session_id]
        self.assertEqual([e["event"] for e in events], ["SESSIONCOMPLETED"])
        self.assertEqual(events[0]["reason"], "error")
        n = len(src.all(response(200, "INVITE")))
        await task.deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(len(src.all(response(200, "INVITE"))), n)


class AssignRelayStreamsTests(SynchronousTestCase):
    """
    L{srs_mod.assign_relay_streams}: which of our ports each m-line of an
    offer gets (the pure rule behind L{ReInviteTests}).
    """

    def test_first_offer(self) -> None:
        """
        A first offer takes the relay streams in order, rejected m-lines none.
        """
        self.assertEqual(srs_mod.assign_relay_streams([True, False, True], [], 2), [0, None, 1])

    def test_kept(self) -> None:
        """
        A re-offer keeps each m-line on its relay stream; new m-lines beyond
        them get the next indices, relay streams the caller adds.
        """
        self.assertEqual(srs_mod.assign_relay_streams([True, True, True], [0, 1], 2), [0, 1, 2])
        self.assertEqual(srs_mod.assign_relay_streams([True, False, True, True], [0, 1], 2), [0, None, 1, 2])

    def test_disabled_stream_frees_its_port(self) -> None:
        """
        An m-line disabled in the same offer frees its relay stream for an
        added m-line, even when the added one comes first.
        """
        self.assertEqual(srs_mod.assign_relay_streams([True, False, True], [0, 1], 2), [0, None, 1])
        self.assertEqual(srs_mod.assign_relay_streams([False, True, True], [None, 0, 1], 3), [None, 0, 1])
        self.assertEqual(srs_mod.assign_relay_streams([True, True, False], [None, 0, 1], 2), [1, 0, None])
        self.assertEqual(srs_mod.assign_relay_streams([True, False, True, True], [0, 1, 2], 3), [0, None, 2, 1])
