#!/usr/bin/env python3
"""
The signalling benchmark's own SIP peers, for machines without SIPp
(L{bench/signalling.py} uses them when C{sipp} is not on PATH): an SRC and
an SRS over UDP on 127.0.0.1, one process each, written from RFC 3261
with their own small parser (they do not use aiconnect's).

    python bench/signalling_peers.py srs PORT SECONDS
    python bench/signalling_peers.py src SERVER_PORT DOMAIN RATE CALLS HOLD_MS REPORT.json

The SRC places C{CALLS} SIPRec calls (multipart SDP + RFC 7865 metadata,
no RTP) at C{RATE} calls/s: INVITE (retransmitted at T1 doubling until a
response, given up after 64*T1), ACK, C{HOLD_MS} later BYE (retransmitted
until its 200).  A 503 (or any other final answer) is ACKed and counted.
It writes C{REPORT.json}: successful, failed (otherwise than by a 503),
rejected (503s), retransmissions
and every successful call's setup time (INVITE -> 200, ms), like SIPp's
C{-trace_stat}/C{-trace_rtt}.  The SRS answers each INVITE 200 with
recvonly streams carrying the offer's labels, takes the ACK (retransmits
its 200 until then) and answers BYE (and anything else) 200.

Both are bounded: the SRC stops at the latest 64*T1 + hold after its last
INVITE, the SRS after C{SECONDS}; every table is bounded by the call count.
"""

from __future__ import annotations

import heapq
import json
import re
import secrets
import select
import socket
import sys
import time
from typing import Any

HOST = "127.0.0.1"
T1 = 0.5
#: Datagrams read per loop turn at most.
READ_BATCH = 256

_HEADER = re.compile(rb"^([A-Za-z-]+)[ \t]*:[ \t]*(.*)$", re.M)
_LABEL = re.compile(rb"a=label:([^\r\n]*)")


def parse(data: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """
    The start line, the headers (lower-case name -> first value) and the
    body of a SIP message.
    """
    head, _, body = data.partition(b"\r\n\r\n")
    start, _, rest = head.partition(b"\r\n")
    headers: dict[bytes, bytes] = {}
    for name, value in _HEADER.findall(rest):
        headers.setdefault(name.lower(), value.strip())
    return start, headers, body


def message(start: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    lines = [start] + ["%s: %s" % h for h in headers] + ["Content-Length: %d" % len(body), "", ""]
    return "\r\n".join(lines).encode() + body


def offer(port: int, domain: str) -> tuple[bytes, str]:
    sdp = (
        "v=0\r\no=src 1 1 IN IP4 {h}\r\ns=-\r\nc=IN IP4 {h}\r\nt=0 0\r\n"
        "m=audio {p} RTP/AVP 8 0\r\na=sendonly\r\na=label:1\r\n"
        "m=audio {q} RTP/AVP 8 0\r\na=sendonly\r\na=label:2\r\n"
    ).format(h=HOST, p=port, q=port + 2)
    md = (
        "<?xml version='1.0' encoding='UTF-8'?>\r\n"
        "<recording xmlns='urn:ietf:params:xml:ns:recording:1'><datamode>complete</datamode>"
        "<session session_id='hVpd7YQgRW2nD22h7q60JQ=='/>"
        "<participant participant_id='srfBElmCRp2QB23b7Mpk0w=='><nameID aor='sip:alice@{d}'/></participant>"
        "<participant participant_id='zSfPoSvdSDCmU3A3TRDxAw=='><nameID aor='sip:bob@{d}'/></participant>"
        "<stream stream_id='UAAMm5GRQKSCMVvLyl4rFw==' session_id='hVpd7YQgRW2nD22h7q60JQ=='><label>1</label></stream>"
        "<stream stream_id='i1Pz3to5hGk8fuXl+PbwCw==' session_id='hVpd7YQgRW2nD22h7q60JQ=='><label>2</label></stream>"
        "<participantstreamassoc participant_id='srfBElmCRp2QB23b7Mpk0w=='><send>UAAMm5GRQKSCMVvLyl4rFw==</send></participantstreamassoc>"
        "<participantstreamassoc participant_id='zSfPoSvdSDCmU3A3TRDxAw=='><send>i1Pz3to5hGk8fuXl+PbwCw==</send></participantstreamassoc>"
        "</recording>\r\n"
    ).format(d=domain)
    boundary = "bench" + secrets.token_hex(6)
    body = (
        "--{b}\r\nContent-Type: application/sdp\r\n\r\n{s}\r\n"
        "--{b}\r\nContent-Type: application/rs-metadata+xml\r\nContent-Disposition: recording-session\r\n\r\n{m}\r\n--{b}--\r\n"
    ).format(b=boundary, s=sdp, m=md)
    return body.encode(), "multipart/mixed;boundary=" + boundary


class Call:
    __slots__ = ("call_id", "branch", "started", "to", "state", "sent", "interval", "due")

    def __init__(self, call_id: str, started: float) -> None:
        self.call_id = call_id
        self.branch = "z9hG4bK" + secrets.token_hex(8)
        self.started = started
        self.to = b""
        self.state = "inviting"
        self.sent = b""
        self.interval = T1
        self.due = started + T1


class Src:
    def __init__(self, server: tuple[str, int], domain: str) -> None:
        self.server = server
        self.domain = domain
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.setblocking(False)
        self.local = self.sock.getsockname()
        self.body, self.content_type = offer(40000, domain)
        self.calls: dict[str, Call] = {}
        self.timers: list[tuple[float, str, str]] = []
        self.report: dict[str, Any] = {"successful": 0, "failed": 0, "rejected": 0, "retransmissions": 0, "setup_ms": []}

    def common(self, call: Call, method: str, cseq: int, branch: str) -> list[tuple[str, str]]:
        h, p = self.local
        return [
            ("Via", "SIP/2.0/UDP %s:%d;branch=%s;rport" % (h, p, branch)),
            ("Max-Forwards", "70"),
            ("From", "<sip:src@%s>;tag=src%s" % (h, call.call_id[:8])),
            ("To", call.to.decode() if call.to else "<sip:recorder@%s>" % self.domain),
            ("Call-ID", call.call_id),
            ("CSeq", "%d %s" % (cseq, method)),
        ]

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendto(data, self.server)
        except BlockingIOError:
            pass

    def invite(self, now: float) -> None:
        call = Call(secrets.token_hex(10), now)
        self.calls[call.call_id] = call
        h, p = self.local
        headers = self.common(call, "INVITE", 1, call.branch) + [
            ("Contact", "<sip:src@%s:%d>;+sip.src" % (h, p)),
            ("Require", "siprec"),
            ("Content-Type", self.content_type),
        ]
        call.sent = message("INVITE sip:recorder@%s SIP/2.0" % self.domain, headers, self.body)
        self.send(call.sent)
        heapq.heappush(self.timers, (call.due, call.call_id, "retransmit"))

    def ack(self, call: Call, branch: str) -> None:
        self.send(message("ACK sip:recorder@%s SIP/2.0" % self.domain, self.common(call, "ACK", 1, branch)))

    def bye(self, call: Call, now: float) -> None:
        call.state = "bye"
        call.branch = "z9hG4bK" + secrets.token_hex(8)
        call.sent = message("BYE sip:recorder@%s SIP/2.0" % self.domain, self.common(call, "BYE", 2, call.branch))
        call.interval, call.due = T1, now + T1
        self.send(call.sent)
        heapq.heappush(self.timers, (call.due, call.call_id, "retransmit"))

    def received(self, data: bytes, now: float, hold: float) -> None:
        start, headers, _body = parse(data)
        if not start.startswith(b"SIP/2.0 "):
            return
        call = self.calls.get(headers.get(b"call-id", b"").decode())
        if call is None:
            return
        status = int(start[8:11])
        method = headers.get(b"cseq", b"").split()[-1:]
        if method == [b"INVITE"]:
            if status < 200:
                if call.state == "inviting":
                    call.state = "proceeding"
                return
            if call.state not in ("inviting", "proceeding"):
                if status < 300 and call.state in ("confirmed", "bye"):
                    self.ack(call, "z9hG4bK" + secrets.token_hex(8))  # a retransmitted 200
                return
            call.to = headers.get(b"to", b"")
            if status < 300:
                self.report["setup_ms"].append(round(1000 * (now - call.started), 2))
                call.state = "confirmed"
                self.ack(call, "z9hG4bK" + secrets.token_hex(8))
                heapq.heappush(self.timers, (now + hold, call.call_id, "bye"))
            else:
                self.ack(call, call.branch)
                self.report["rejected" if status == 503 else "failed"] += 1
                del self.calls[call.call_id]
        elif method == [b"BYE"] and call.state == "bye" and status >= 200:
            self.report["successful" if status < 300 else "failed"] += 1
            del self.calls[call.call_id]

    def timer(self, call_id: str, kind: str, now: float) -> None:
        call = self.calls.get(call_id)
        if call is None:
            return
        if kind == "bye":
            self.bye(call, now)
            return
        if call.state not in ("inviting", "bye") or now < call.due:
            return
        if call.interval >= 32 * T1:
            self.report["failed"] += 1
            del self.calls[call_id]
            return
        self.send(call.sent)
        self.report["retransmissions"] += 1
        call.interval = min(call.interval * 2, 4.0) if call.state == "bye" else call.interval * 2
        call.due = now + call.interval
        heapq.heappush(self.timers, (call.due, call_id, "retransmit"))

    def run(self, rate: float, calls: int, hold: float) -> dict[str, Any]:
        begin = time.monotonic()
        placed = 0
        deadline = begin + calls / rate + hold + 64 * T1 + 5
        while time.monotonic() < deadline and (placed < calls or self.calls):
            now = time.monotonic()
            while placed < calls and begin + placed / rate <= now:
                self.invite(now)
                placed += 1
            while self.timers and self.timers[0][0] <= now:
                _due, call_id, kind = heapq.heappop(self.timers)
                self.timer(call_id, kind, now)
            wake = min([self.timers[0][0] if self.timers else now + 0.05, begin + placed / rate if placed < calls else now + 0.05])
            select.select([self.sock], [], [], max(0.0, min(wake - now, 0.05)))
            for _ in range(READ_BATCH):
                try:
                    data = self.sock.recv(65535)
                except BlockingIOError:
                    break
                self.received(data, time.monotonic(), hold)
        self.report["failed"] += len(self.calls)
        return self.report


def srs(port: int, seconds: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, port))
    answers: dict[bytes, tuple[bytes, tuple[str, int], float, float]] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = time.monotonic()
        for call_id, (answer, peer, due, interval) in list(answers.items()):
            if due <= now:
                if interval > 32 * T1:
                    del answers[call_id]
                    continue
                sock.sendto(answer, peer)
                answers[call_id] = (answer, peer, now + interval * 2, interval * 2)
        if not select.select([sock], [], [], 0.05)[0]:
            continue
        data, peer = sock.recvfrom(65535)
        start, headers, body = parse(data)
        if start.startswith(b"SIP/2.0"):
            continue
        method = start.split(b" ", 1)[0]
        call_id = headers.get(b"call-id", b"")
        if method == b"ACK":
            answers.pop(call_id, None)
            continue
        echo = [(n, headers.get(n.lower().encode(), b"").decode()) for n in ("Via", "From", "To", "Call-ID", "CSeq")]
        if method == b"INVITE":
            if call_id in answers:
                sock.sendto(answers[call_id][0], peer)
                continue
            echo[2] = ("To", echo[2][1] + ";tag=srs" + secrets.token_hex(4))
            media = "".join(
                "m=audio %d RTP/AVP 8 0\r\na=recvonly\r\na=label:%s\r\n" % (41000 + 2 * i, label.decode())
                for i, label in enumerate(_LABEL.findall(body)[:16])
            )
            sdp = ("v=0\r\no=srs 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n" % (HOST, HOST) + media).encode()
            answer = message("SIP/2.0 200 OK", echo + [("Contact", "<sip:srs@%s:%d>;+sip.srs" % (HOST, port)), ("Content-Type", "application/sdp")], sdp)
            if len(answers) < 100_000:
                answers[call_id] = (answer, peer, now + T1, T1)
            sock.sendto(answer, peer)
        else:
            sock.sendto(message("SIP/2.0 200 OK", echo), peer)


def main() -> int:
    if sys.argv[1] == "srs":
        srs(int(sys.argv[2]), float(sys.argv[3]))
        return 0
    _, _, server_port, domain, rate, calls, hold_ms, report = sys.argv
    result = Src((HOST, int(server_port)), domain).run(float(rate), int(calls), int(hold_ms) / 1000)
    with open(report, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
