#!/usr/bin/env python3
"""
SIP stack CPU per message (issue 12): microseconds per parse and per
serialisation of the messages of a forwarded SIPRec call, and per full
round trip through the transport and transaction layers.

    .venv/bin/python bench/sipparse.py               # the table
    .venv/bin/python bench/sipparse.py --rounds 5    # more repeats (best is kept)
    PYTHONPATH=/tmp/base .venv/bin/python bench/sipparse.py --root /tmp/base
                                                     # another checkout's code

Rows:

  - C{parse X}: L{aiconnect.sip.message.parse} of the datagram, then
    the reads every received message gets from the stack (top Via
    branch, CSeq, Call-ID, From and To tags);
  - C{serialise X}: C{to_bytes()} of the parsed message, and of the same
    message sent again (a retransmission);
  - C{UAS call}: an inbound SIPRec call through L{SipTransport} (a fake
    UDP socket: no syscalls) and L{TransactionLayer} (on a
    L{task.Clock}): INVITE in, 100 and 200 out, ACK in, BYE in, 200 out;
    per call and per message (6);
  - C{UAC call}: the forward leg: INVITE out, 100 and 200 in, ACK out,
    BYE out, 200 in;
  - C{INVITE retransmission}: the same INVITE datagram again while its
    transaction is Accepted (answered with the 200 again).

Log events go to an observer filtering at C{info}, as C{twistd} runs
with the default C{[log] level}, and L{aiconnect.sip.trace} is told the
level (when the code has it).  The best of C{--rounds} repeats is
printed: on a shared machine the minimum is the least noisy figure.
Not a test: run it by hand, before and after a change, at the same time.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from typing import Any, Callable

from common import ROOT, use_repository

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--rounds", type=int, default=3, help="repeats of each measure (best kept)")
parser.add_argument("--number", type=int, default=2000, help="iterations per repeat")
parser.add_argument("--root", default=None, help="import aiconnect from this checkout instead")
parser.add_argument(
    "--debug-lines", action="store_true",
    help="keep building the per-message debug lines (aiconnect.sip.trace not told the level)",
)
parser.add_argument(
    "--profile", type=int, default=0, metavar="N",
    help="instead: cProfile 100 UAS + UAC calls, print the N functions called most (calls per call)",
)
ARGS = parser.parse_args()

if ARGS.root:
    sys.path.insert(0, ARGS.root)
else:
    use_repository()

from twisted.internet import task  # noqa: E402
from twisted.logger import globalLogBeginner  # noqa: E402

from aiconnect.logsetup import make_observer  # noqa: E402
from aiconnect.sip.message import Request, make_response, parse  # noqa: E402
from aiconnect.sip.peer import Peer  # noqa: E402
from aiconnect.sip.transport import SipTransport, _SipDatagramProtocol  # noqa: E402
from aiconnect.sip.txlayer import ServerTransaction, TransactionLayer  # noqa: E402

SDP = (
    "v=0\r\no=SRS 2890844526 2890844526 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 8 0\r\na=sendonly\r\na=label:1\r\n"
    "m=audio 6002 RTP/AVP 8 0\r\na=sendonly\r\na=label:2\r\n"
)
METADATA = (
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n"
    "<recording xmlns='urn:ietf:params:xml:ns:recording:1'>\r\n"
    "  <datamode>complete</datamode>\r\n"
    "  <session session_id=\"hVpd7YQgRW2nD22h7q60JQ==\">\r\n"
    "    <sipSessionID>ab30317f1a784dc48ff824d0d3715d86;remote=47755a9de7794ba387653f2099600ef2</sipSessionID>\r\n"
    "  </session>\r\n"
    "  <participant participant_id=\"srfBElmCRp2QB23b7Mpk0w==\">\r\n"
    "    <nameID aor=\"sip:alice@atlanta.com\"><name xml:lang=\"it\">Alice</name></nameID>\r\n"
    "  </participant>\r\n"
    "  <participant participant_id=\"zSfPoSvdSDCmU3A3TRDxAw==\">\r\n"
    "    <nameID aor=\"sip:bob@biloxy.com\"><name xml:lang=\"it\">Bob</name></nameID>\r\n"
    "  </participant>\r\n"
    "  <stream stream_id=\"UAAMm5GRQKSCMVvLyl4rFw==\" session_id=\"hVpd7YQgRW2nD22h7q60JQ==\"><label>1</label></stream>\r\n"
    "  <stream stream_id=\"i1Pz3to5hGk8fuXl+PbwCw==\" session_id=\"hVpd7YQgRW2nD22h7q60JQ==\"><label>2</label></stream>\r\n"
    "</recording>\r\n"
)
MULTIPART = (
    "--foobar\r\nContent-Type: application/sdp\r\n\r\n" + SDP + "\r\n"
    "--foobar\r\nContent-Type: application/rs-metadata\r\nContent-Disposition: recording-session\r\n\r\n"
    + METADATA + "\r\n--foobar--\r\n"
).encode()

SRC = Peer("udp", "127.0.0.1", 5070)
DIALOG = (
    "From: <sip:2000@example.com>;tag=1234SIPpTag001\r\n"
    "Call-ID: 1-1234@127.0.0.1\r\n"
)


def request(method: str, branch: str, cseq: int, to_tag: str, extra: str = "", body: bytes = b"") -> bytes:
    """
    A request as SIPp's SRC sends it.
    """
    head = (
        "%s sip:recorder@127.0.0.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-%s\r\n"
        "%s"
        "To: <sip:recorder@127.0.0.1>%s\r\n"
        "CSeq: %d %s\r\n"
        "Max-Forwards: 70\r\n"
        "%s"
        "Contact: <sip:2000@127.0.0.1:5070>;+sip.src\r\n"
        "Content-Length: %d\r\n\r\n"
    ) % (method, branch, DIALOG, to_tag, cseq, method, extra, len(body))
    return head.encode() + body


INVITE = request(
    "INVITE", "1-0", 101, "",
    "Require: siprec\r\nAccept: application/sdp, application/rs-metadata\r\n"
    "Content-Type: multipart/mixed;boundary=foobar\r\n",
    MULTIPART,
)
ACK = request("ACK", "1-5", 101, ";tag=ourtag")
BYE = request("BYE", "1-7", 102, ";tag=ourtag")
OK_INVITE = make_response(
    parse(INVITE), 200, to_tag="ourtag",
    headers=[("Contact", "<sip:recorder@127.0.0.1:5060>"), ("Content-Type", "application/sdp")],
    body=SDP.encode(),
).to_bytes()
OK_BYE = make_response(parse(BYE), 200).to_bytes()


def best(fn: Callable[[], Any], number: int) -> float:
    """
    Microseconds per call of C{fn}, the best of L{ARGS.rounds} repeats.
    """
    out = float("inf")
    for _ in range(ARGS.rounds):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        out = min(out, (time.perf_counter() - t0) / number * 1e6)
    return out


def reads(data: bytes) -> Callable[[], Any]:
    """
    Parse, then the reads every received message gets.
    """

    def run() -> Any:
        m = parse(data)
        return (m.top_via.branch, m.cseq, m.call_id, m.from_tag, m.to_tag)

    return run


class _Socket:
    """
    A UDP transport that keeps the last datagrams written.
    """

    def __init__(self) -> None:
        self.written: list[tuple[bytes, Any]] = []

    def write(self, data: bytes, addr: Any) -> None:
        self.written.append((data, addr))
        if len(self.written) > 64:
            del self.written[:32]


class _Uas:
    """
    A transaction user answering INVITE with 200 + SDP and BYE with 200.
    """

    def request_received(self, tx: ServerTransaction, req: Request) -> None:
        if req.method == "INVITE":
            tx.respond(make_response(
                req, 200, to_tag="ourtag",
                headers=[("Contact", "<sip:recorder@127.0.0.1:5060>"), ("Content-Type", "application/sdp")],
                body=SDP.encode(),
            ))
        else:
            tx.respond(make_response(req, 200))

    def cancel_received(self, tx: Any, cancel: Request) -> None:
        pass

    def ack_received(self, ack: Request, source: Peer) -> None:
        pass

    def stray_response(self, response: Any, source: Peer) -> None:
        pass


def stack() -> tuple[SipTransport, TransactionLayer, task.Clock, _Socket]:
    """
    A transport on a fake UDP socket under a transaction layer on a clock.
    """
    clock = task.Clock()
    transport = SipTransport(clock)
    proto = _SipDatagramProtocol(transport)
    sock = _Socket()
    proto.transport = sock
    transport._udp = proto
    layer = TransactionLayer(clock, transport, _Uas())
    transport.receiver = layer
    return transport, layer, clock, sock


def uas_call() -> Callable[[], Any]:
    """
    One inbound call per run, each with its own Call-ID and branches.
    """
    transport, layer, clock, sock = stack()
    n = [0]

    def run() -> Any:
        n[0] += 1
        tag = b"-%d-" % (n[0],)
        for data in (INVITE, ACK, BYE):
            transport.datagram_received(transport._udp, data.replace(b"-1-", tag), ("127.0.0.1", 5070))
        clock.advance(40)  # Timers J and L end the transactions
        return layer

    return run


def uac_call() -> Callable[[], Any]:
    """
    One forward leg per run: our INVITE, its 100 and 200, ACK, BYE, 200.
    """
    transport, layer, clock, sock = stack()
    srs = Peer("udp", "127.0.0.1", 5080)
    invite = parse(INVITE)
    invite.headers.remove("Via")
    bye = parse(BYE)
    bye.headers.remove("Via")
    trying_t = make_response(parse(INVITE), 100).to_bytes().replace(b"127.0.0.1:5070", b"127.0.0.1:5060")
    ok_t = OK_INVITE.replace(b"127.0.0.1:5070", b"127.0.0.1:5060")
    ok_bye_t = OK_BYE.replace(b"127.0.0.1:5070", b"127.0.0.1:5060")

    def answered(tx: Any, *templates: bytes) -> None:
        branch = tx.request.top_via.branch.encode()
        for t in templates:
            data = t.replace(b"z9hG4bK-1-0", branch).replace(b"z9hG4bK-1-7", branch)
            transport.datagram_received(transport._udp, data, ("127.0.0.1", 5080))

    def run() -> Any:
        tx = layer.send_request(invite, srs, lambda r: None, lambda e: None)
        answered(tx, trying_t, ok_t)
        ack = Request("ACK", invite.uri, [(n, v) for n, v in invite.headers if n != "Via"])
        ack.headers.set("CSeq", "101 ACK")
        layer.send_ack(ack, srs)
        tx = layer.send_request(bye, srs, lambda r: None, lambda e: None)
        answered(tx, ok_bye_t)
        clock.advance(40)
        return layer

    return run


def retransmission() -> Callable[[], Any]:
    """
    The INVITE again while its transaction is Accepted.
    """
    transport, layer, clock, sock = stack()
    transport.datagram_received(transport._udp, INVITE, ("127.0.0.1", 5070))

    def run() -> Any:
        transport.datagram_received(transport._udp, INVITE, ("127.0.0.1", 5070))

    return run


def profile(top: int) -> None:
    """
    Print the C{top} functions called most per forwarded call's SIP work
    (one UAS call plus one UAC call), from cProfile's exact call counts.
    """
    import cProfile
    import pstats

    uas, uac = uas_call(), uac_call()
    calls = 100
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        uas()
        uac()
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    rows = sorted(((v[1], k) for k, v in stats.items()), reverse=True)[:top]
    total = sum(v[1] for v in stats.values())
    print("function calls per UAS+UAC call: %d" % (total / calls,))
    named = ("parse_via", "canonical_name", "_name", "parse_name_addr", "parse_uri", "emit", "to_bytes", "parse")
    for want in named:
        n = sum(v[1] for (path, _, name), v in stats.items() if name == want and ("aiconnect" in path or want == "emit"))
        print("%9.1f  %s" % (n / calls, want))
    print("%9s  %s" % ("calls", "most called"))
    for ncalls, (path, line, name) in rows:
        print("%9.1f  %s:%d(%s)" % (ncalls / calls, path.replace(ARGS.root or ROOT, "."), line, name))


def main() -> None:
    globalLogBeginner.beginLoggingTo([make_observer("text", "info", io.StringIO())], redirectStandardIO=False)
    try:
        from aiconnect.sip import trace
    except ImportError:
        pass  # older code: no guard on the per-message debug lines
    else:
        trace.set_level("debug" if ARGS.debug_lines else "info")
    if ARGS.profile:
        profile(ARGS.profile)
        return
    number = ARGS.number
    rows: list[tuple[str, float]] = []
    for name, data in (("INVITE (multipart)", INVITE), ("200 INVITE (SDP)", OK_INVITE), ("ACK", ACK),
                       ("BYE", BYE), ("200 BYE", OK_BYE)):
        rows.append(("parse " + name, best(reads(data), number)))
        msg = parse(data)
        rows.append(("serialise " + name, best(msg.to_bytes, number)))
    per_call = best(uas_call(), number // 4)
    rows.append(("UAS call (6 messages)", per_call))
    rows.append(("UAS call, per message", per_call / 6))
    per_call = best(uac_call(), number // 4)
    rows.append(("UAC call (6 messages)", per_call))
    rows.append(("UAC call, per message", per_call / 6))
    rows.append(("INVITE retransmission absorbed", best(retransmission(), number)))
    print("%-34s %9s" % ("step", "µs"))
    for name, us in rows:
        print("%-34s %9.1f" % (name, us))


if __name__ == "__main__":
    main()
