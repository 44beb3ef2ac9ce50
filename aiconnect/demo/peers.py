# -*- test-case-name: tests.test_demo -*-
"""
The demo's SIP peers, on 127.0.0.1 over UDP: an SRC (a PBX or SBC that
records one call: SIPRec INVITE with SDP and RFC 7865 metadata, ACK, a
few seconds of G.711 RTP on two streams, BYE) and an SRS (a recorder
that answers the forwarded SIPRec INVITE 180 then 200 with one
C{a=recvonly} stream per offered label, takes the ACK, counts the RTP it
gets and answers BYE).

Both are one C{DatagramProtocol} each, build their messages as plain
text (what a SIPRec call looks like on the wire), print every message they
send or receive on the L{Ladder}, and retransmit over UDP per RFC 3261
s17 (T1 doubling up to T2) so that one lost datagram does not fail the
demo. They parse what they receive with AI Connect's own parser.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from typing import Any

from twisted.internet.protocol import DatagramProtocol

from aiconnect.media.rtp import RTP_HEADER
from aiconnect.sip.message import Message, Request, Response, SipParseError, parse
from aiconnect.sip.sdp import parse_sdp

__all__ = ["HOST", "SERVER", "Ladder", "Src", "Srs"]

HOST = "127.0.0.1"
#: The name of AI Connect on the ladder.
SERVER = "AI Connect"
#: RFC 3261 s17.1.1.1 timers (seconds) and how often a message is sent at
#: most (the first time and six retransmissions: about 20 s).
T1 = 0.5
T2 = 4.0
MAX_SENDS = 7
#: 20 ms of G.711 (8000 Hz): the RTP packet interval, samples and bytes.
PTIME = 0.02
SAMPLES = 160
#: A tone's worth of mu-law bytes would do as well; silence is 0xFF.
SILENCE = b"\xff" * SAMPLES
#: The SRC's streams: (label, participant name, AOR user).
PARTIES = (("1", "Alice Andersson", "alice"), ("2", "Bob Berg", "bob"))


class Ladder:
    """
    The demo's output: one line per SIP message (time since start, sender
    -> receiver, method or status, the Call-ID's start) and free lines
    (the application's, the demo's), all with the same time column.
    """

    def __init__(self, clock: Callable[[], float], write: Callable[[str], None]) -> None:
        """
        @param clock: Seconds (the reactor's C{seconds}).
        @param write: Writes one line.
        """
        self._clock = clock
        self._write = write
        self.start = clock()

    def elapsed(self) -> float:
        """
        Seconds since the ladder was made.
        """
        return self._clock() - self.start

    def line(self, text: str) -> None:
        """
        Write C{text} after the time column.
        """
        self._write("%7.3f  %s" % (self.elapsed(), text))

    def message(self, sender: str, receiver: str, msg: Message, note: str = "") -> None:
        """
        Write the line of one SIP message.
        """
        if isinstance(msg, Request):
            what = msg.method + (" " + str(msg.request_uri) if msg.method == "INVITE" else "")
        else:
            what = "%d %s (%s)" % (msg.status, msg.reason, msg.cseq.method)
        self.line("%-10s -> %-10s  %-38s Call-ID %s%s" % (sender, receiver, what, msg.call_id[:8], note))


class _Repeater:
    """
    Sends a message at once, then again after T1, 2*T1 ... (at most T2
    apart) until stopped, C{MAX_SENDS} times in all (RFC 3261 s17.1.1.2,
    s17.1.2.2 and s13.3.1.4 for a 2xx).
    """

    def __init__(self, reactor: Any, send: Callable[[bool], None]) -> None:
        self._reactor = reactor
        self._send = send
        self._sends = 0
        self._call: Any = None

    def start(self) -> None:
        self._fire(T1 / 2)

    def _fire(self, interval: float) -> None:
        self._send(self._sends > 0)
        self._sends += 1
        self._call = None
        if self._sends < MAX_SENDS:
            interval = min(interval * 2, T2)
            self._call = self._reactor.callLater(interval, self._fire, interval)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


def _message(lines: list[str], body: bytes = b"", content_type: str = "application/sdp") -> bytes:
    if body:
        lines = lines + ["Content-Type: " + content_type]
    lines = lines + ["Content-Length: %d" % len(body)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def response(request: Request, status: int, reason: str, to_tag: str | None = None, headers: tuple[str, ...] = (), body: bytes = b"") -> bytes:
    """
    A response to C{request} (RFC 3261 s8.2.6.2): its Via, From, Call-ID
    and CSeq, its To with our tag added when it has none.
    """
    to = request.headers.get("To") or ""
    if to_tag is not None and request.to_tag is None:
        to += ";tag=" + to_tag
    lines = ["SIP/2.0 %d %s" % (status, reason)]
    lines += ["Via: " + via for via in request.headers.get_all("Via")]
    lines += ["From: " + (request.headers.get("From") or ""), "To: " + to, "Call-ID: " + request.call_id, "CSeq: " + (request.headers.get("CSeq") or "")]
    return _message(lines + list(headers), body)


class _SipPeer(DatagramProtocol):
    """
    What both peers share: the socket, the ladder, retransmissions, and
    the RTP sockets they open.

    @ivar changed: Called whenever the peer's state changed.
    """

    name = "peer"
    noisy = False

    def __init__(self, reactor: Any, ladder: Ladder, changed: Callable[[], None]) -> None:
        self._reactor = reactor
        self._ladder = ladder
        self.changed = changed
        self._port: Any = None
        self._rtp_ports: list[Any] = []
        self._repeaters: list[_Repeater] = []
        self._timers: list[Any] = []

    def listen(self) -> int:
        """
        Listen on a free UDP port of 127.0.0.1; return it.
        """
        self._port = self._reactor.listenUDP(0, self, interface=HOST)
        return self._port.getHost().port

    @property
    def port(self) -> int:
        return self._port.getHost().port

    def open_rtp(self, protocol: DatagramProtocol) -> int:
        """
        Open an RTP socket on a free port for C{protocol}; return the port.
        """
        port = self._reactor.listenUDP(0, protocol, interface=HOST)
        self._rtp_ports.append(port)
        return port.getHost().port

    def send(self, data: bytes, address: tuple[str, int], again: bool = False) -> None:
        """
        Send one SIP message and print it.
        """
        self.transport.write(data, address)
        self._ladder.message(self.name, SERVER, parse(data), "  (retransmission)" if again else "")

    def repeat(self, data: bytes, address: tuple[str, int]) -> _Repeater:
        """
        Send C{data} now and retransmit it until the repeater is stopped.
        """
        repeater = _Repeater(self._reactor, lambda again: self.send(data, address, again))
        self._repeaters.append(repeater)
        repeater.start()
        return repeater

    def later(self, delay: float, f: Callable[..., Any], *args: Any) -> None:
        self._timers.append(self._reactor.callLater(delay, f, *args))

    def datagramReceived(self, data: bytes, address: Any) -> None:
        try:
            msg = parse(data)
        except SipParseError as e:
            self._ladder.line("%s: unparsable datagram from %s:%d (%s)" % (self.name, address[0], address[1], e))
            return
        self._ladder.message(SERVER, self.name, msg)
        if isinstance(msg, Request):
            self.request_received(msg, address)
        else:
            self.response_received(msg, address)
        self.changed()

    def request_received(self, request: Request, address: tuple[str, int]) -> None:
        raise NotImplementedError()

    def response_received(self, resp: Response, address: tuple[str, int]) -> None:
        pass

    def stop(self) -> Any:
        """
        Stop every timer and close every socket.

        @return: A Deferred firing when the SIP socket is closed.
        """
        for repeater in self._repeaters:
            repeater.stop()
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        for port in self._rtp_ports:
            port.stopListening()
        self._rtp_ports = []
        if self._port is None:
            return None
        port, self._port = self._port, None
        return port.stopListening()


def _sdp(session: str, lines: list[str]) -> bytes:
    head = ["v=0", "o=%s 1 1 IN IP4 %s" % (session, HOST), "s=-", "c=IN IP4 " + HOST, "t=0 0"]
    return ("\r\n".join(head + lines) + "\r\n").encode()


def metadata(domain: str, labels: list[str]) -> bytes:
    """
    An RFC 7865 complete metadata snapshot: one communication session,
    the two parties of L{PARTIES}, each sending the stream of its label
    and receiving the other one.
    """
    ident = lambda: base64.b64encode(secrets.token_bytes(16)).decode()  # noqa: E731
    session, parties, streams = ident(), [ident() for _ in PARTIES], [ident() for _ in PARTIES]
    xml = ["<?xml version='1.0' encoding='UTF-8'?>", "<recording xmlns='urn:ietf:params:xml:ns:recording:1'>", "<datamode>complete</datamode>"]
    xml.append("<session session_id='%s'></session>" % session)
    for pid, (_label, name, user) in zip(parties, PARTIES):
        xml.append("<participant participant_id='%s'><nameID aor='sip:%s@%s'><name>%s</name></nameID></participant>" % (pid, user, domain, name))
    for sid, label in zip(streams, labels):
        xml.append("<stream stream_id='%s' session_id='%s'><label>%s</label></stream>" % (sid, session, label))
    for pid in parties:
        xml.append("<participantsessionassoc participant_id='%s' session_id='%s'></participantsessionassoc>" % (pid, session))
    for i, pid in enumerate(parties):
        xml.append("<participantstreamassoc participant_id='%s'><send>%s</send><recv>%s</recv></participantstreamassoc>" % (pid, streams[i], streams[1 - i]))
    xml.append("</recording>")
    return ("\r\n".join(xml) + "\r\n").encode()


class _RtpSource(DatagramProtocol):
    """
    The SRC's socket of one stream (it only sends).
    """

    noisy = False


class Src(_SipPeer):
    """
    The SIPRec client: one call to AI Connect's C{recorder@<domain>},
    recorded for C{duration} seconds.

    @ivar status: The final status AI Connect answered the INVITE with, or
        C{None} yet.
    @ivar bye_status: The status of the answer to our BYE, or C{None} yet.
    @ivar rtp_sent: RTP packets sent, all streams.
    @ivar failure: Why the call could not be placed, or C{None}.
    """

    name = "SRC"

    def __init__(self, reactor: Any, ladder: Ladder, changed: Callable[[], None], server: tuple[str, int], domain: str, duration: float) -> None:
        super().__init__(reactor, ladder, changed)
        self._server = server
        self._domain = domain
        self._duration = duration
        self.call_id = secrets.token_hex(8) + "@" + HOST
        self._from_tag = secrets.token_hex(4)
        self._to = ""
        self._remote: tuple[str, int] = server
        self._invite_uri = "sip:recorder@" + domain
        self._remote_uri = self._invite_uri
        self._invite: _Repeater | None = None
        self._bye: _Repeater | None = None
        self._rtp: list[tuple[Any, tuple[str, int], int, int]] = []
        self._rtp_loop: Any = None
        self._sockets: list[_RtpSource] = []
        self.status: int | None = None
        self.bye_status: int | None = None
        self.rtp_sent = 0
        self._ticks = 0
        self.failure: str | None = None

    def _headers(self, method: str, uri: str, cseq: int) -> list[str]:
        return [
            "%s %s SIP/2.0" % (method, uri),
            "Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK%s;rport" % (HOST, self.port, secrets.token_hex(8)),
            "Max-Forwards: 70",
            'From: "%s" <sip:%s@pbx.%s>;tag=%s' % (PARTIES[0][1], PARTIES[0][2], self._domain, self._from_tag),
            "To: " + (self._to or "<sip:recorder@%s>" % self._domain),
            "Call-ID: " + self.call_id,
            "CSeq: %d %s" % (cseq, method),
        ]

    def call(self) -> None:
        """
        Send the SIPRec INVITE (RFC 7866 s8.1.1): C{multipart/mixed} with
        the SDP offer (one C{a=sendonly} PCMU stream per party, with its
        C{a=label}) and the RFC 7865 metadata.
        """
        media = []
        labels = []
        for label, _name, _user in PARTIES:
            source = _RtpSource()
            self._sockets.append(source)
            media += ["m=audio %d RTP/AVP 0" % self.open_rtp(source), "a=rtpmap:0 PCMU/8000", "a=sendonly", "a=label:" + label]
            labels.append(label)
        boundary = "demo" + secrets.token_hex(6)
        body = b"".join(
            [
                b"--%s\r\nContent-Type: application/sdp\r\n\r\n" % boundary.encode(),
                _sdp("src", media),
                b"\r\n--%s\r\nContent-Type: application/rs-metadata+xml\r\nContent-Disposition: recording-session\r\n\r\n" % boundary.encode(),
                metadata(self._domain, labels),
                b"\r\n--%s--\r\n" % boundary.encode(),
            ]
        )
        headers = self._headers("INVITE", self._invite_uri, 1) + [
            "Contact: <sip:src@%s:%d>;+sip.src" % (HOST, self.port),
            "Require: siprec",
            "Accept: application/sdp, application/rs-metadata+xml",
        ]
        self._invite = self.repeat(_message(headers, body, "multipart/mixed;boundary=" + boundary), self._server)

    def _in_dialog(self, method: str, cseq: int) -> bytes:
        return _message(self._headers(method, self._remote_uri, cseq))

    def response_received(self, resp: Response, address: tuple[str, int]) -> None:
        if resp.cseq.method == "INVITE":
            self._invite_answered(resp)
        elif resp.cseq.method == "BYE" and resp.status >= 200 and self.bye_status is None:
            if self._bye is not None:
                self._bye.stop()
            self.bye_status = resp.status

    def _invite_answered(self, resp: Response) -> None:
        if self._invite is not None:
            # A provisional answer ends the INVITE's retransmissions
            # (RFC 3261 s17.1.1.2).
            self._invite.stop()
        if resp.status < 200:
            return
        self._to = resp.headers.get("To") or ""
        if resp.status >= 300:
            if self.status is None:
                self.status = resp.status
                self.failure = "AI Connect answered the SIPRec INVITE %d %s" % (resp.status, resp.reason)
            # The ACK of a non-2xx is part of the INVITE transaction
            # (RFC 3261 s17.1.1.3): same branch, the INVITE's URI.
            self._ack_error(resp)
            return
        contact = resp.contacts[0].uri if resp.contacts else None
        if contact is not None:
            self._remote_uri = str(contact)
            self._remote = (getattr(contact, "host", HOST), getattr(contact, "port", None) or 5060)
        # The ACK of a 2xx is a new transaction (RFC 3261 s13.2.2.4),
        # sent again for each retransmitted 2xx.
        self.send(self._in_dialog("ACK", 1), self._remote)
        if self.status is not None:
            return
        self.status = resp.status
        self._start_rtp(resp)

    def _ack_error(self, resp: Response) -> None:
        via = resp.headers.get_all("Via")[0]
        lines = [
            "ACK %s SIP/2.0" % self._invite_uri,
            "Via: " + via,
            "Max-Forwards: 70",
            "From: " + (resp.headers.get("From") or ""),
            "To: " + self._to,
            "Call-ID: " + self.call_id,
            "CSeq: 1 ACK",
        ]
        self.send(_message(lines), self._server)

    def _start_rtp(self, resp: Response) -> None:
        answer = parse_sdp(resp.body) if resp.content_type == "application/sdp" else None
        if answer is None:
            self.failure = "AI Connect's 200 OK has no SDP answer"
            return
        for source, media in zip(self._sockets, answer.media):
            if media.port:
                self._rtp.append((source, (media.address or HOST, media.port), secrets.randbits(32), secrets.randbits(16)))
        self._ladder.line(
            "%-10s -> %-10s  RTP: %d streams PCMU, one packet per %d ms each, for %.1f s"
            % (self.name, SERVER, len(self._rtp), PTIME * 1000, self._duration)
        )
        from twisted.internet import task

        self._rtp_loop = task.LoopingCall(self._send_rtp)
        self._rtp_loop.clock = self._reactor
        self._rtp_loop.start(PTIME)
        self.later(self._duration, self.hang_up)

    def _send_rtp(self) -> None:
        sequence = self._ticks
        self._ticks += 1
        for source, address, ssrc, first_seq in self._rtp:
            header = RTP_HEADER.pack(0x80, 0, (first_seq + sequence) & 0xFFFF, (sequence * SAMPLES) & 0xFFFFFFFF, ssrc)
            source.transport.write(header + SILENCE, address)
            self.rtp_sent += 1

    def _stop_rtp(self) -> None:
        if self._rtp_loop is not None and self._rtp_loop.running:
            self._rtp_loop.stop()

    def hang_up(self) -> None:
        """
        Stop the RTP and send BYE (RFC 3261 s15.1.1).
        """
        self._stop_rtp()
        if self.bye_status is None and self._bye is None:
            self._bye = self.repeat(self._in_dialog("BYE", 2), self._remote)

    def request_received(self, request: Request, address: tuple[str, int]) -> None:
        # AI Connect's own BYE (it is stopping) or an OPTIONS: 200.
        if request.method == "ACK":
            return
        self.send(response(request, 200, "OK"), address)
        if request.method == "BYE":
            self._stop_rtp()
            if self.bye_status is None:
                self.failure = "AI Connect ended the call with BYE"

    def stop(self) -> Any:
        self._stop_rtp()
        return super().stop()


class _RtpSink(DatagramProtocol):
    """
    The SRS's socket of one answered stream: counts packets per payload
    type.
    """

    noisy = False

    def __init__(self, counts: dict[int, int]) -> None:
        self._counts = counts

    def datagramReceived(self, data: bytes, address: Any) -> None:
        if len(data) >= 12 and data[0] >> 6 == 2:
            pt = data[1] & 0x7F
            if not 72 <= pt <= 76:  # RTCP (RFC 5761 s4) is not counted
                self._counts[pt] = self._counts.get(pt, 0) + 1


class Srs(_SipPeer):
    """
    The SIPRec server the call is forwarded to (the C{recorder} trunk).

    @ivar invites: The dialog-creating INVITEs received (retransmissions
        not counted).
    @ivar byes: The BYEs received.
    @ivar acked: Whether our 200 was ACKed.
    @ivar rtp: RTP packets received, by payload type.
    """

    name = "SRS"

    def __init__(self, reactor: Any, ladder: Ladder, changed: Callable[[], None]) -> None:
        super().__init__(reactor, ladder, changed)
        self.invites: list[Request] = []
        self.byes: list[Request] = []
        self.acked = False
        self.rtp: dict[int, int] = {}
        self._tag = secrets.token_hex(4)
        #: Our 200s being retransmitted until their ACK, by (Call-ID, CSeq).
        self._answers: dict[tuple[str, int], _Repeater] = {}

    def request_received(self, request: Request, address: tuple[str, int]) -> None:
        key = (request.call_id, request.cseq.number)
        if request.method == "ACK":
            if key in self._answers:
                self._answers[key].stop()
            self.acked = True
            return
        if request.method == "INVITE":
            if key not in self._answers:  # else a retransmission: the 200 is repeated
                self._answer_invite(request, address)
            return
        if request.method == "BYE":
            self.byes.append(request)
        self.send(response(request, 200, "OK"), address)

    def _answer_invite(self, request: Request, address: tuple[str, int]) -> None:
        """
        Answer like RFC 7866 figure 6: one C{a=recvonly} stream per offered
        m-line, same label, same codecs, on our own RTP socket.
        """
        if request.to_tag is None:
            self.invites.append(request)
            self.send(response(request, 180, "Ringing", self._tag), address)
        offer = None
        if request.content_type == "multipart/mixed":
            from aiconnect.sip.multipart import parse_multipart

            for part in parse_multipart(request.body, request.content_type_param("boundary") or ""):
                if part.content_type == "application/sdp":
                    offer = parse_sdp(part.body)
        elif request.content_type == "application/sdp":
            offer = parse_sdp(request.body)
        lines = []
        for media in offer.media if offer is not None else ():
            port = self.open_rtp(_RtpSink(self.rtp)) if media.port else 0
            lines.append("m=audio %d %s %s" % (port, media.proto, " ".join(media.formats)))
            lines += ["a=rtpmap:%d %s/%d" % (pt, m.encoding, m.clock_rate) for pt, m in media.rtpmap.items()]
            lines += ["a=recvonly", "a=label:%s" % media.label]
        contact = "Contact: <sip:recorder@%s:%d>;+sip.srs" % (HOST, self.port)
        answer = response(request, 200, "OK", self._tag, (contact,), _sdp("srs", lines))
        self._answers[(request.call_id, request.cseq.number)] = self.repeat(answer, address)
