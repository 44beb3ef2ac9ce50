# -*- test-case-name: tests.integration.test_failover -*-
"""
A scripted SRS that fails the ways SPEC s13 names, for the mid-call
failover tests: it listens on TCP too and resets its connection on demand
(C{abortConnection}); it goes silent (dies) on demand; it answers 481 to
re-INVITEs; it answers chosen streams C{a=inactive}; and it sends its own
re-INVITE with chosen directions.  Built on L{tests.integration.srs_peer}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol

from aiconnect.sip.message import Request, StreamFramer
from tests.integration.srs_peer import SrsPeer, _response_lines

#: Every SDP direction line the peer writes has this length, so one can
#: replace another without touching Content-Length.
_DIRECTIONS = (b"a=recvonly", b"a=sendonly", b"a=inactive", b"a=sendrecv")


class FailingSrs(SrsPeer):
    """
    An L{SrsPeer} that can fail mid-call.

    @ivar answer_directions: the direction of each m-line of its answers
        (C{"recvonly"}, C{"inactive"} ...), or L{None} for C{recvonly}.
    @ivar reinvite_status: a status to answer every re-INVITE with
        (481), or L{None} for 200.
    @ivar dead: when set, nothing received is answered (the host died).
    @ivar streams: the TCP connections it accepted.
    """

    def __init__(self, mode: str = "200", transport: str = "udp") -> None:
        super().__init__(mode, transport)
        self.answer_directions: list[str] | None = None
        self.reinvite_status: int | None = None
        self.dead = False
        self.streams: list[Any] = []
        self.reinvites_sent: list[int] = []

    def listen_tcp(self) -> int:
        """
        Listen for SIP over TCP on 127.0.0.1; return the port.
        """
        peer = self

        class Proto(Protocol):
            def connectionMade(self) -> None:
                self.framer = StreamFramer()
                peer._stream = self
                peer.streams.append(self)

            def dataReceived(self, data: bytes) -> None:
                for frame in self.framer.feed(data):
                    if frame.strip():
                        peer._send = self.transport.write
                        peer.received(frame)

        self.port = reactor.listenTCP(0, Factory.forProtocol(Proto), interface="127.0.0.1")
        return int(self.port.getHost().port)

    def reset(self) -> None:
        """
        Reset every TCP connection (RST: C{abortConnection}).
        """
        for stream in self.streams:
            stream.transport.abortConnection()

    def received(self, data: bytes) -> None:
        if self.dead:
            return
        super().received(data)

    def _answer(self, req: Request) -> None:
        if req.method == "INVITE" and req.to_tag is not None and self.reinvite_status is not None:
            self._send(_response_lines(req, self.reinvite_status, "Call/Transaction Does Not Exist", None))
            return
        super()._answer(req)

    def _send_ok(self, req: Request) -> None:
        send = self._send

        def rewritten(data: bytes) -> None:
            send(_with_directions(data, self.answer_directions))

        self._send = rewritten
        try:
            super()._send_ok(req)
        finally:
            self._send = send

    def reinvite(self, directions: list[str], version: int) -> int:
        """
        Send the SRS's own re-INVITE: its last answer's streams with
        C{directions}, SDP version C{version}; return its CSeq.
        """
        offer = self.offer_of(self.dialog["invite"])
        lines = ["v=0", "o=SRS 0 %d IN IP4 127.0.0.1" % (version,), "s=-", "c=IN IP4 127.0.0.1", "t=0 0"]
        for media, port, direction in zip(offer.media, self.rtp_ports, directions):
            pts = media.payload_types
            lines.append("m=audio %d %s %s" % (port.getHost().port, media.proto, " ".join(str(p) for p in pts)))
            for pt, entry in media.rtpmap.items():
                lines.append("a=rtpmap:%d %s/%d" % (pt, entry.encoding, entry.clock_rate))
            lines.append("a=" + direction)
            lines.append("a=label:%s" % media.label)
        cseq = self.send_in_dialog("INVITE", ("\r\n".join(lines) + "\r\n").encode())
        self.reinvites_sent.append(cseq)
        return cseq

    async def ack_reinvite(self, cseq: int, n_ok: int) -> Any:
        """
        Wait for the C{n_ok}th 200 the peer got, ACK its re-INVITE C{cseq},
        and return our answer (the 200's SDP, parsed).
        """
        await self.wait_for("200", n_ok)
        ok = [r for r in self.responses if r.status == 200][n_ok - 1]
        self.send_in_dialog("ACK", cseq=cseq)
        return self.offer_of(ok)


def _with_directions(data: bytes, directions: list[str] | None) -> bytes:
    """
    C{data} (an SDP answer) with its direction lines, in order, replaced
    by C{directions} (each as long as the one it replaces).
    """
    if not directions:
        return data
    out = data
    start = 0
    for direction in directions:
        found = [(out.find(d, start), d) for d in _DIRECTIONS if out.find(d, start) >= 0]
        if not found:
            break
        at, old = min(found)
        new = b"a=" + direction.encode()
        assert len(new) == len(old)
        out = out[:at] + new + out[at + len(old):]
        start = at + len(new)
    return out

