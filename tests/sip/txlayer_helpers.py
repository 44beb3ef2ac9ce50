# -*- test-case-name: tests.sip.test_txlayer,tests.sip.test_txlayer_server,tests.sip.test_txlayer_wire -*-
"""
What the tests of L{aiconnect.sip.txlayer} share: literal messages (RFC
3261 s24.2), builders for what a TU hands the layer and for the answers
to what it sent, a recording transaction user, and L{LayerTestCase} (a
layer on a L{task.Clock} with a L{FakeSipTransport} and a L{RecordingTU});
L{parse_request} comes from L{tests.sip.transaction_helpers}.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet import task
from twisted.internet.interfaces import IDelayedCall
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.sip.message import Request, Response, parse
from aiconnect.sip.peer import Peer
from aiconnect.sip.txlayer import ClientTransaction, ServerTransaction, TransactionLayer
from tests.fakes import FakeSipTransport
from tests.sip.transaction_helpers import CANCEL, parse_request

UAS_PEER = Peer("udp", "192.0.2.2", 5060)
UAC_PEER = Peer("udp", "192.0.2.1", 5060)

# RFC 3261 s24.2 F1, as the TU hands it to the layer: no Via yet.
INVITE_NO_VIA = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP placeholder.invalid;branch=z9hG4bKplaceholder\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:alice@192.0.2.1>\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

# Responses to our INVITE; {via} is the INVITE's top Via as sent.
RESPONSE_TEMPLATE = (
    "SIP/2.0 {status}\r\n"
    "Via: {via};received=192.0.2.1;rport=5060\r\n"
    "To: Bob <sip:bob@biloxi.example.com>{to}\r\n"
    "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    "Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    "CSeq: {cseq}\r\n"
    "Contact: <sip:bob@192.0.2.2>\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
)

# An INVITE arriving at our UAS: L{INVITE_NO_VIA} to our address, with the
# Via the UAC added (a fixed branch).
INVITE_IN = INVITE_NO_VIA.replace(b"sip:bob@biloxi.example.com SIP/2.0", b"sip:bob@192.0.2.2 SIP/2.0").replace(
    b"placeholder.invalid;branch=z9hG4bKplaceholder", b"192.0.2.1:5060;branch=z9hG4bK74bf9;rport"
)

# Its CANCEL (RFC 3261 s9.1: same branch, To without tag): L{CANCEL} of the
# transaction tests, sent to our address over that Via.
CANCEL_IN = CANCEL.replace(b"sip:bob@biloxi.example.com SIP/2.0", b"sip:bob@192.0.2.2 SIP/2.0").replace(
    b"pc33.atlanta.example.com;branch=z9hG4bKnashds8", b"192.0.2.1:5060;branch=z9hG4bK74bf9;rport"
)

# The ACK of a non-2xx final (same branch as the INVITE).
ACK_IN = (
    b"ACK sip:bob@192.0.2.2 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    b"CSeq: 1 ACK\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

# The ACK of a 2xx: a new branch (RFC 3261 s13.2.2.4).
ACK_2XX_IN = ACK_IN.replace(b"z9hG4bK74bf9", b"z9hG4bK74bfa")

# A BYE arriving at our UAS.
BYE_IN = (
    b"BYE sip:bob@192.0.2.2 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bfb;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    b"CSeq: 2 BYE\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

# An OPTIONS ping (RFC 3261 s11), as the TU hands it to the layer.
OPTIONS_OUT = (
    b"OPTIONS sip:bob@192.0.2.2 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP placeholder.invalid;branch=z9hG4bKplaceholder\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:bob@192.0.2.2>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@192.0.2.1\r\n"
    b"CSeq: 63104 OPTIONS\r\n"
    b"Accept: application/sdp\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def outgoing(data: bytes) -> Request:
    """
    Parse literal request text and drop its placeholder Via, as a TU would
    hand a request to the layer.
    """
    r = parse_request(data)
    r.headers.remove("Via")
    return r


def reply(sent: Request, status: str, to_tag: str | None = "a6c85cf", cseq: str | None = None) -> Response:
    """
    A literal response to a request the layer sent, echoing its top Via.
    """
    text = RESPONSE_TEMPLATE.format(
        status=status,
        via=sent.headers.get("Via"),
        to="" if to_tag is None else ";tag=" + to_tag,
        cseq=cseq or str(sent.cseq),
    )
    message = parse(text.encode())
    assert isinstance(message, Response)
    return message


class RecordingTU:
    """
    A recording transaction user; C{on_request} may answer new requests.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[ServerTransaction, Request]] = []
        self.cancels: list[tuple[ServerTransaction, Request]] = []
        self.acks: list[tuple[Request, Peer]] = []
        self.strays: list[tuple[Response, Peer]] = []
        self.on_request: Callable[[ServerTransaction, Request], None] | None = None

    def request_received(self, server_tx: ServerTransaction, request: Request) -> None:
        self.requests.append((server_tx, request))
        if self.on_request is not None:
            self.on_request(server_tx, request)

    def cancel_received(self, invite_server_tx: ServerTransaction, cancel: Request) -> None:
        self.cancels.append((invite_server_tx, cancel))

    def ack_received(self, ack: Request, source: Peer) -> None:
        self.acks.append((ack, source))

    def stray_response(self, response: Response, source: Peer) -> None:
        self.strays.append((response, source))


class LayerTestCase(SynchronousTestCase):
    """
    A layer on a clock, with a fake transport and a recording TU.
    """

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.transport = FakeSipTransport()
        self.tu = RecordingTU()
        self.layer = TransactionLayer(self.clock, self.transport, self.tu)
        self.responses: list[Response] = []
        self.errors: list[str] = []

    def send(self, data: bytes = INVITE_NO_VIA, peer: Peer = UAS_PEER) -> ClientTransaction:
        """
        Send a literal request through the layer, recording its callbacks.
        """
        return self.layer.send_request(outgoing(data), peer, self.responses.append, self.errors.append)

    def advance_to(self, t: float, step: float = 0.1) -> None:
        """
        Move the clock forward to C{t} in small steps.
        """
        while self.clock.seconds() + step <= t + 1e-9:
            self.clock.advance(step)
        if self.clock.seconds() < t:
            self.clock.advance(t - self.clock.seconds())

    def pending_calls(self) -> list[IDelayedCall]:
        """
        The clock's pending delayed calls.
        """
        return self.clock.getDelayedCalls()
