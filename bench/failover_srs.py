"""
The failover benchmark's SRS: one process per recorder, killed with
SIGKILL and started again by C{bench/failover.py}.

    python bench/failover_srs.py PORT REPORT_FILE

It listens for SIP over TCP on 127.0.0.1:PORT and answers like a plain
SIPRec recorder (RFC 7866): INVITE -> 200 with one C{a=recvonly} m-line per
offered one, each on its own UDP socket; re-INVITE -> 200 with the same
ports; ACK ignored; BYE, OPTIONS, UPDATE -> 200.  Every RTP packet is
noted per SSRC (first and last arrival, in Unix seconds, count, first and
last sequence number), and every 100 ms the whole table is written to
REPORT_FILE (a temporary file renamed over it): a SIGKILL loses at most
the last 100 ms.  Bounded: at most C{MAX_CALLS} dialogs and one socket per
m-line; it stops by itself after C{--lifetime} seconds.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time
from typing import Any

from common import use_repository

use_repository()

MAX_CALLS = 2000


def main(argv: list[str]) -> int:
    from twisted.internet import reactor, task
    from twisted.internet.protocol import DatagramProtocol, Factory, Protocol

    from aiconnect.sip.message import Request, StreamFramer, parse
    from aiconnect.siprec.body import split_body
    from aiconnect.sip.sdp import parse_sdp

    port_number, report = int(argv[1]), argv[2]
    lifetime = float(argv[3]) if len(argv) > 3 else 600.0
    ssrcs: dict[int, list[Any]] = {}
    dialogs: dict[str, list[int]] = {}
    name = "srs-%d" % port_number

    class Rtp(DatagramProtocol):
        def datagramReceived(self, data: bytes, addr: Any) -> None:
            if len(data) < 12:
                return
            seq, _ts, ssrc = struct.unpack("!HII", data[2:12])
            now = time.time()
            entry = ssrcs.get(ssrc)
            if entry is None:
                if len(ssrcs) >= 4 * MAX_CALLS:
                    return
                ssrcs[ssrc] = [now, now, 1, seq, seq]
            else:
                entry[1] = now
                entry[2] += 1
                entry[4] = seq

    def respond(req: Request, status: int, reason: str, extra: list[str], body: bytes = b"") -> bytes:
        lines = ["SIP/2.0 %d %s" % (status, reason)]
        lines += ["Via: " + v for v in req.headers.get_all("Via")]
        to = req.headers.get("To") or ""
        if status > 100 and ";tag=" not in to:
            to += ";tag=" + name
        lines += ["From: " + (req.headers.get("From") or ""), "To: " + to, "Call-ID: " + req.call_id, "CSeq: " + (req.headers.get("CSeq") or "")]
        lines += extra
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append("Content-Length: %d" % len(body))
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def answer(req: Request) -> bytes:
        sdp = split_body(req).sdp
        offer = parse_sdp(sdp or b"")
        ports = dialogs.get(req.call_id)
        if ports is None:
            if len(dialogs) >= MAX_CALLS:
                return respond(req, 486, "Busy Here", [])
            ports = dialogs[req.call_id] = []
        while len(ports) < min(len(offer.media), 8):
            ports.append(reactor.listenUDP(0, Rtp(), interface="127.0.0.1").getHost().port)
        lines = ["v=0", "o=SRS 0 0 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0"]
        for media, rtp_port in zip(offer.media, ports):
            lines.append("m=audio %d RTP/AVP %s" % (rtp_port, " ".join(str(p) for p in media.payload_types)))
            lines.append("a=recvonly")
            if media.label:
                lines.append("a=label:%s" % media.label)
        body = ("\r\n".join(lines) + "\r\n").encode()
        contact = "Contact: <sip:srs@127.0.0.1:%d;transport=tcp>;+sip.srs" % port_number
        return respond(req, 200, "OK", [contact], body)

    class Sip(Protocol):
        def connectionMade(self) -> None:
            self.framer = StreamFramer()

        def dataReceived(self, data: bytes) -> None:
            for frame in self.framer.feed(data):
                if not frame.strip():
                    continue
                try:
                    msg = parse(frame, datagram=False)
                except Exception:
                    continue
                if not isinstance(msg, Request) or msg.method == "ACK":
                    continue
                if msg.method == "INVITE":
                    self.transport.write(answer(msg))
                else:
                    self.transport.write(respond(msg, 200, "OK", []))

    def write_report() -> None:
        tmp = report + ".tmp"
        with open(tmp, "w") as f:
            json.dump({str(k): v for k, v in ssrcs.items()}, f)
        os.replace(tmp, report)

    reactor.listenTCP(port_number, Factory.forProtocol(Sip), interface="127.0.0.1")
    task.LoopingCall(write_report).start(0.1)
    reactor.callLater(lifetime, reactor.stop)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
