# -*- test-case-name: tests.sip.test_transaction,tests.sip.test_transaction_client,tests.sip.test_transaction_server,tests.sip.test_txlayer,tests.sip.test_txlayer_server,tests.sip.test_txlayer_wire -*-
"""
What the tests of L{aiconnect.sip.transaction} share: literal messages
(RFC 3261 s24.2 F1 and its relatives), parsers for them, and helpers to
read and drive a machine's actions and timers.
"""

from __future__ import annotations

from aiconnect.sip.message import Request, Response, parse

# RFC 3261 s24.2, F1: Alice's INVITE (here with a Route, as a UA behind an
# outbound proxy sends it).
INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n"
    b"Route: <sip:ss1.atlanta.example.com;lr>\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:alice@client.atlanta.example.com;transport=tcp>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

# RFC 3261 s24.2, F13/F15-style responses to it; %(status)s and %(to)s are
# filled in.
RESPONSE = (
    b"SIP/2.0 %(status)s\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8;received=192.0.2.101\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>%(to)s\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    b"CSeq: %(cseq)s\r\n"
    b"Contact: <sip:bob@client.biloxi.example.com>\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

# RFC 3261 s24.2, F18: Bob's BYE (a non-INVITE request).
BYE = (
    b"BYE sip:alice@client.atlanta.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP client.biloxi.example.com:5060;branch=z9hG4bKnashds7\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: Bob <sip:bob@biloxi.example.com>;tag=8321234356\r\n"
    b"To: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    b"CSeq: 1 BYE\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

BYE_RESPONSE = (
    b"SIP/2.0 %(status)s\r\n"
    b"Via: SIP/2.0/TCP client.biloxi.example.com:5060;branch=z9hG4bKnashds7;received=192.0.2.201\r\n"
    b"From: Bob <sip:bob@biloxi.example.com>;tag=8321234356\r\n"
    b"To: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    b"CSeq: 1 BYE\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

# The ACK Alice's transaction sends for a 486 (RFC 3261 s17.1.1.3), as a peer
# would send it to our server transaction.
ACK = (
    b"ACK sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n"
    b"Route: <sip:ss1.atlanta.example.com;lr>\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>;tag=314159\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    b"CSeq: 1 ACK\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

# An ACK for a 2xx: same dialog, new branch (RFC 3261 s13.2.2.4).
ACK_2XX = ACK.replace(b"z9hG4bKnashds8", b"z9hG4bKnashds9")

# The CANCEL of the INVITE (RFC 3261 s9.1: same branch, CSeq method CANCEL).
CANCEL = (
    b"CANCEL sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    b"CSeq: 1 CANCEL\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

# RFC 2543-style INVITE and ACK: a Via without a magic-cookie branch.
INVITE_2543 = INVITE.replace(b";branch=z9hG4bKnashds8", b"")
ACK_2543 = ACK.replace(b";branch=z9hG4bKnashds8", b"")


def parse_request(data: bytes) -> Request:
    """
    Parse literal request text.
    """
    message = parse(data)
    assert isinstance(message, Request)
    return message


def response(
    status: str, to_tag: str | None = "314159", cseq: str = "1 INVITE", template: bytes = RESPONSE
) -> Response:
    """
    Parse a literal response to L{INVITE} (or, with L{BYE_RESPONSE}, to L{BYE}).
    """
    to = b"" if to_tag is None else b";tag=" + to_tag.encode()
    data = template.replace(b"%(status)s", status.encode()).replace(b"%(to)s", to)
    data = data.replace(b"%(cseq)s", cseq.encode())
    message = parse(data)
    assert isinstance(message, Response)
    return message


def kinds(actions: list) -> list[str]:
    """
    The class names of a list of actions, for compact assertions.
    """
    return [type(a).__name__ for a in actions]


def fire_all(machine, until: float) -> list[tuple[float, list]]:
    """
    Fire a machine's timers one deadline at a time up to C{until}; return
    (time, actions) pairs.
    """
    fired = []
    while True:
        deadline = machine.next_deadline()
        if deadline is None or deadline > until:
            return fired
        fired.append((deadline, machine.handle_timer(deadline)))
