"""
Tests for L{aiconnect.sip.txlayer}: the transaction layer on a
L{task.Clock}, with a recording fake transport and transaction user, and a
UAC layer and a UAS layer wired back to back over a lossy fake wire.
"""

from __future__ import annotations

import random
from typing import Callable

from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.errors import LocalSipError, RemoteSipError
from aiconnect.sip.message import Headers, Message, Request, Response, make_response, parse
from aiconnect.sip.peer import Peer
from aiconnect.sip.transaction import BRANCH_MAGIC, State, TimerConfig, make_cancel
from aiconnect.sip.txlayer import ClientTransaction, ServerTransaction, TransactionLayer

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

# An INVITE arriving at our UAS (RFC 3261 s24.2 F1 with a fixed branch).
INVITE_IN = (
    b"INVITE sip:bob@192.0.2.2 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:alice@192.0.2.1>\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

# Its CANCEL (RFC 3261 s9.1: same branch, To without tag).
CANCEL_IN = (
    b"CANCEL sip:bob@192.0.2.2 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    b"CSeq: 1 CANCEL\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
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


def parse_request(data: bytes) -> Request:
    """
    Parse literal request text.
    """
    message = parse(data)
    assert isinstance(message, Request)
    return message


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


class FakeTransport:
    """
    A recording L{SipTransportLike}: each send is recorded, then succeeds
    or fails with C{failure}.
    """

    def __init__(self, sent_by: str = "192.0.2.1:5060") -> None:
        self.sent_by = sent_by
        self.requests: list[tuple[Request, Peer]] = []
        self.responses: list[tuple[Response, Peer]] = []
        self.failure: Exception | None = None

    def _result(self) -> Deferred[None]:
        if self.failure is not None:
            return defer.fail(self.failure)
        return defer.succeed(None)

    def send_request(self, request: Request, peer: Peer) -> Deferred[None]:
        self.requests.append((request, peer))
        return self._result()

    def send_response(self, response: Response, source: Peer) -> Deferred[None]:
        self.responses.append((response, source))
        return self._result()

    def local_via(self, peer: Peer) -> tuple[str, str]:
        return peer.via_transport, self.sent_by

    def methods(self) -> list[str]:
        return [r.method for r, _ in self.requests]

    def statuses(self) -> list[int]:
        return [r.status for r, _ in self.responses]


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
        self.transport = FakeTransport()
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


class ClientTests(LayerTestCase):
    """
    Tests for the client side: L{TransactionLayer.send_request} and
    L{ClientTransaction}.
    """

    def test_via_added(self) -> None:
        """
        The layer sends a copy with a top Via naming our transport and
        sent-by, C{rport}, and a fresh magic-cookie branch.
        """
        original = outgoing(INVITE_NO_VIA)
        tx = self.layer.send_request(original, UAS_PEER, self.responses.append, self.errors.append)
        self.assertNotIn("Via", original.headers)
        sent, peer = self.transport.requests[0]
        self.assertIs(sent, tx.request)
        self.assertEqual(peer, UAS_PEER)
        via = sent.top_via
        self.assertEqual((via.transport, via.sent_by), ("UDP", "192.0.2.1:5060"))
        self.assertTrue(via.has_param("rport"))
        self.assertTrue(via.branch.startswith(BRANCH_MAGIC))
        self.assertEqual(len(sent.vias), 1)
        other = self.send(OPTIONS_OUT)
        self.assertNotEqual(other.request.top_via.branch, via.branch)

    def test_retransmission_after_t1(self) -> None:
        """
        Advancing 0.5 s retransmits the INVITE once.
        """
        self.send()
        self.assertEqual(len(self.transport.requests), 1)
        self.clock.advance(0.5)
        self.assertEqual(len(self.transport.requests), 2)
        self.assertIs(self.transport.requests[1][0], self.transport.requests[0][0])
        self.assertEqual(self.layer.stats["retransmissions"], 1)

    def test_timeout_reaches_tu(self) -> None:
        """
        Past 64*T1 without an answer, Timer B reports C{"timeout"} to the TU
        once and the transaction is forgotten.
        """
        tx = self.send()
        self.advance_to(31.9)
        self.assertEqual(self.errors, [])
        self.assertEqual(len(self.transport.requests), 7)
        self.advance_to(32.1)
        self.assertEqual(self.errors, ["timeout"])
        self.assertEqual(tx.state, State.TERMINATED)
        self.assertEqual(dict(self.layer.client_transactions), {})
        self.assertEqual(self.pending_calls(), [])
        self.assertEqual(self.layer.stats["timeouts"], 1)
        self.advance_to(100)
        self.assertEqual(self.errors, ["timeout"])

    def test_non_invite_timeout(self) -> None:
        """
        A non-INVITE request is retransmitted up to T2 apart and times out
        with Timer F.
        """
        self.send(OPTIONS_OUT)
        self.advance_to(32.1)
        self.assertEqual(len(self.transport.requests), 11)
        self.assertEqual(self.errors, ["timeout"])

    def test_one_delayed_call_per_transaction(self) -> None:
        """
        Each transaction keeps exactly one pending delayed call, re-armed.
        """
        self.send()
        self.send(OPTIONS_OUT)
        self.assertEqual(len(self.pending_calls()), 2)
        self.advance_to(10)
        self.assertEqual(len(self.pending_calls()), 2)

    def test_reliable_no_retransmission(self) -> None:
        """
        Over TCP the request is sent once; Timer B still times it out.
        """
        self.send(peer=Peer("tcp", "192.0.2.2", 5060))
        self.assertEqual(self.transport.requests[0][0].top_via.transport, "TCP")
        self.advance_to(31.9, step=1.0)
        self.assertEqual(len(self.transport.requests), 1)
        self.advance_to(32.0)
        self.assertEqual(self.errors, ["timeout"])

    def test_provisional_then_final(self) -> None:
        """
        Provisional and final responses reach C{on_response}; a 1xx stops
        the retransmissions.
        """
        tx = self.send()
        trying = reply(tx.request, "100 Trying", to_tag=None)
        self.layer.message_received(trying, UAS_PEER)
        self.advance_to(5)
        self.assertEqual(len(self.transport.requests), 1)
        ringing = reply(tx.request, "180 Ringing")
        ok = reply(tx.request, "200 OK")
        self.layer.message_received(ringing, UAS_PEER)
        self.layer.message_received(ok, UAS_PEER)
        self.assertEqual(self.responses, [trying, ringing, ok])
        self.assertEqual(tx.state, State.ACCEPTED)
        self.assertEqual(tx.final_status, 200)

    def test_2xx_retransmissions_passed_up(self) -> None:
        """
        In Accepted each 2xx retransmission reaches C{on_response}, and the
        layer never ACKs a 2xx itself.
        """
        tx = self.send()
        ok = reply(tx.request, "200 OK")
        for _ in range(3):
            self.layer.message_received(ok, UAS_PEER)
        self.assertEqual(self.responses, [ok, ok, ok])
        self.assertEqual(self.transport.methods(), ["INVITE"])

    def test_stray_2xx_after_timer_m(self) -> None:
        """
        After Timer M a 2xx retransmission matches nothing and goes to the
        TU's C{stray_response}; other stray responses are dropped and
        counted.
        """
        tx = self.send()
        ok = reply(tx.request, "200 OK")
        self.layer.message_received(ok, UAS_PEER)
        self.advance_to(33, step=1.0)
        self.assertEqual(dict(self.layer.client_transactions), {})
        self.layer.message_received(ok, UAS_PEER)
        self.assertEqual(self.tu.strays, [(ok, UAS_PEER)])
        self.assertEqual(self.responses, [ok])
        self.layer.message_received(reply(tx.request, "486 Busy Here"), UAS_PEER)
        self.assertEqual(self.layer.stats["stray_responses"], 1)
        self.assertEqual(self.layer.stats["dropped_responses"], 1)

    def test_non_2xx_acked_by_layer(self) -> None:
        """
        A 300-699 to an INVITE is ACKed by the layer with the INVITE's
        branch, and retransmissions of it are ACKed again without reaching
        the TU.
        """
        tx = self.send()
        busy = reply(tx.request, "486 Busy Here")
        self.layer.message_received(busy, UAS_PEER)
        self.assertEqual(self.transport.methods(), ["INVITE", "ACK"])
        ack, peer = self.transport.requests[1]
        self.assertEqual(peer, UAS_PEER)
        self.assertEqual(ack.top_via.branch, tx.request.top_via.branch)
        self.assertEqual(ack.to_tag, "a6c85cf")
        self.layer.message_received(busy, UAS_PEER)
        self.assertEqual(self.transport.methods(), ["INVITE", "ACK", "ACK"])
        self.assertEqual(self.responses, [busy])
        self.advance_to(32.5, step=1.0)
        self.assertEqual(dict(self.layer.client_transactions), {})
        self.assertEqual(self.errors, [])

    def test_transport_failure(self) -> None:
        """
        A failing send reports C{"transport: <text>"} once, on a later turn,
        and ends the transaction.
        """
        self.transport.failure = ConnectionRefusedError("connection refused")
        tx = self.send()
        self.assertEqual(self.errors, [])
        self.clock.advance(0)
        self.assertEqual(len(self.errors), 1)
        self.assertTrue(self.errors[0].startswith("transport: "), self.errors)
        self.assertIn("refused", self.errors[0])
        self.assertEqual(tx.state, State.TERMINATED)
        self.assertEqual(self.pending_calls(), [])
        self.assertEqual(self.layer.stats["transport_errors"], 1)

    def test_ack_refused_by_send_request(self) -> None:
        """
        An ACK makes no transaction: C{send_request} refuses it.
        """
        ack = outgoing(ACK_IN)
        self.assertRaises(
            LocalSipError, self.layer.send_request, ack, UAS_PEER, self.responses.append, self.errors.append
        )

    def test_send_ack(self) -> None:
        """
        C{send_ack} adds a Via with a fresh branch once; the returned ACK is
        re-sent unchanged.
        """
        ack = outgoing(ACK_2XX_IN)
        sent = self.layer.send_ack(ack, UAS_PEER)
        self.assertNotIn("Via", ack.headers)
        self.assertTrue(sent.top_via.branch.startswith(BRANCH_MAGIC))
        again = self.layer.send_ack(sent, UAS_PEER)
        self.assertIs(again, sent)
        self.assertEqual([r for r, _ in self.transport.requests], [sent, sent])
        self.assertEqual(dict(self.layer.client_transactions), {})

    def test_send_ack_failure_counted(self) -> None:
        """
        A failed ACK send is counted and logged, not left as an unhandled
        failure.
        """
        self.transport.failure = OSError("host unreachable")
        self.layer.send_ack(outgoing(ACK_2XX_IN), UAS_PEER)
        self.assertEqual(self.layer.stats["transport_errors"], 1)

    def test_tu_callback_error_contained(self) -> None:
        """
        An exception in C{on_response} is logged and counted; the
        transaction goes on.
        """

        def explode(response: Response) -> None:
            raise ValueError("TU bug")

        tx = self.layer.send_request(outgoing(INVITE_NO_VIA), UAS_PEER, explode, self.errors.append)
        self.layer.message_received(reply(tx.request, "486 Busy Here"), UAS_PEER)
        self.assertEqual(self.transport.methods(), ["INVITE", "ACK"])
        self.assertEqual(self.layer.stats["tu_errors"], 1)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_response_without_branch_dropped(self) -> None:
        """
        A response whose Via has no branch matches nothing and is dropped.
        """
        tx = self.send(OPTIONS_OUT)
        response = reply(tx.request, "200 OK")
        response.headers.set("Via", "SIP/2.0/UDP 192.0.2.1:5060")
        self.layer.message_received(response, UAS_PEER)
        self.assertEqual(self.responses, [])
        self.assertEqual(self.layer.stats["dropped_responses"], 1)

    def test_cancel_needs_invite_via(self) -> None:
        """
        A CANCEL the TU sends itself must carry its INVITE's Via; built with
        L{make_cancel} it runs in its own transaction.
        """
        bare = outgoing(CANCEL_IN)
        self.assertRaises(
            LocalSipError, self.layer.send_request, bare, UAS_PEER, self.responses.append, self.errors.append
        )
        invite_tx = self.send()
        cancel_tx = self.layer.send_request(
            make_cancel(invite_tx.request), UAS_PEER, self.responses.append, self.errors.append
        )
        self.assertEqual(cancel_tx.request.top_via.branch, invite_tx.request.top_via.branch)
        self.assertEqual(len(self.layer.client_transactions), 2)


class CancelClientTests(LayerTestCase):
    """
    Tests for L{ClientTransaction.cancel} (RFC 3261 s9.1).
    """

    def test_cancel_after_provisional(self) -> None:
        """
        After a 1xx the CANCEL goes out at once with the INVITE's branch,
        and the 487 that follows is ACKed.
        """
        tx = self.send()
        self.layer.message_received(reply(tx.request, "180 Ringing"), UAS_PEER)
        tx.cancel([("Reason", 'SIP;cause=487;text="Recording stopped"')])
        self.assertEqual(self.transport.methods(), ["INVITE", "CANCEL"])
        cancel = self.transport.requests[1][0]
        self.assertEqual(cancel.top_via.branch, tx.request.top_via.branch)
        self.assertEqual(len(cancel.vias), 1)
        self.assertEqual(str(cancel.cseq), "1 CANCEL")
        self.assertIn("Recording stopped", cancel.headers.get("Reason"))
        self.layer.message_received(reply(cancel, "200 OK", to_tag=None), UAS_PEER)
        self.assertEqual(tx.cancel_transaction.state, State.COMPLETED)
        terminated = reply(tx.request, "487 Request Terminated")
        self.layer.message_received(terminated, UAS_PEER)
        self.assertEqual(self.transport.methods(), ["INVITE", "CANCEL", "ACK"])
        self.assertEqual([r.status for r in self.responses], [180, 487])
        self.assertEqual(self.layer.stats["cancels_sent"], 1)

    def test_cancel_waits_for_provisional(self) -> None:
        """
        Before any 1xx the CANCEL is held, and sent when one arrives.
        """
        tx = self.send()
        tx.cancel()
        tx.cancel()
        self.assertEqual(self.transport.methods(), ["INVITE"])
        self.layer.message_received(reply(tx.request, "100 Trying", to_tag=None), UAS_PEER)
        self.assertEqual(self.transport.methods(), ["INVITE", "CANCEL"])

    def test_held_cancel_dropped_by_final(self) -> None:
        """
        A held CANCEL is never sent if a final response comes first.
        """
        tx = self.send()
        tx.cancel()
        self.layer.message_received(reply(tx.request, "200 OK"), UAS_PEER)
        self.layer.message_received(reply(tx.request, "180 Ringing"), UAS_PEER)
        self.assertEqual(self.transport.methods(), ["INVITE"])

    def test_cancel_after_final_does_nothing(self) -> None:
        """
        Cancelling after the final response sends nothing and is counted.
        """
        tx = self.send()
        self.layer.message_received(reply(tx.request, "200 OK"), UAS_PEER)
        tx.cancel()
        self.assertEqual(self.transport.methods(), ["INVITE"])
        self.assertEqual(self.layer.stats["cancels_too_late"], 1)

    def test_cancel_without_final_times_out(self) -> None:
        """
        No final response 64*T1 after the CANCEL reports C{"timeout"}.
        """
        tx = self.send()
        self.layer.message_received(reply(tx.request, "180 Ringing"), UAS_PEER)
        tx.cancel()
        self.advance_to(31.9, step=1.0)
        self.assertEqual(self.errors, [])
        self.advance_to(32.0)
        self.assertEqual(self.errors, ["timeout"])
        self.assertEqual(tx.state, State.TERMINATED)

    def test_cancel_non_invite_refused(self) -> None:
        """
        Only an INVITE can be cancelled.
        """
        tx = self.send(OPTIONS_OUT)
        self.assertRaises(LocalSipError, tx.cancel)


class ServerTests(LayerTestCase):
    """
    Tests for the server side: L{TransactionLayer.message_received} with
    requests, and L{ServerTransaction}.
    """

    def receive(self, data: bytes, source: Peer = UAC_PEER) -> Message:
        """
        Parse literal text and hand it to the layer as received.
        """
        message = parse(data)
        self.layer.message_received(message, source)
        return message

    def test_new_invite(self) -> None:
        """
        A new INVITE reaches the TU once with its server transaction, and
        100 Trying goes back to its source.
        """
        invite = self.receive(INVITE_IN)
        self.assertEqual(len(self.tu.requests), 1)
        tx, request = self.tu.requests[0]
        self.assertIs(request, invite)
        self.assertIs(tx.request, invite)
        self.assertEqual(tx.source, UAC_PEER)
        self.assertEqual(tx.state, State.PROCEEDING)
        self.assertIsNone(tx.final_status)
        self.assertEqual(self.transport.statuses(), [100])
        self.assertEqual(self.transport.responses[0][1], UAC_PEER)

    def test_screen_drops_new_invite(self) -> None:
        """
        A screen that refuses a new INVITE leaves no transaction and sends
        nothing, not even 100 Trying (flood protection, SPEC s12); an
        accepted one goes on as usual, and the screen sees its source.
        """
        seen: list[tuple[str, Peer]] = []
        verdicts = [False, True]

        def screen(request: Request, source: Peer) -> bool:
            seen.append((request.call_id, source))
            return verdicts.pop(0)

        self.layer.screen = screen
        self.receive(INVITE_IN)
        self.assertEqual((self.tu.requests, self.transport.responses), ([], []))
        self.assertEqual(dict(self.layer.server_transactions), {})
        self.assertEqual(self.layer.stats["screened_out"], 1)
        self.receive(INVITE_IN)
        self.assertEqual(len(self.tu.requests), 1)
        self.assertEqual(self.transport.statuses(), [100])
        self.assertEqual([source for _cid, source in seen], [UAC_PEER, UAC_PEER])

    def test_screen_skips_in_dialog_and_other_methods(self) -> None:
        """
        The screen is asked only about out-of-dialog INVITEs: an in-dialog
        re-INVITE (To tag) and other methods never reach it.
        """
        self.layer.screen = lambda request, source: self.fail("screened %s" % (request.method,))
        to_line = [line for line in INVITE_IN.split(b"\r\n") if line.startswith(b"To:")][0]
        self.receive(INVITE_IN.replace(to_line, to_line + b";tag=abc", 1))
        self.receive(BYE_IN)
        self.assertEqual([r.method for _tx, r in self.tu.requests], ["INVITE", "BYE"])

    def test_retransmitted_invite_absorbed(self) -> None:
        """
        A retransmitted INVITE does not reach the TU; the last provisional
        response is sent again.
        """
        self.receive(INVITE_IN)
        tx = self.tu.requests[0][0]
        tx.respond(make_response(tx.request, 180, to_tag="a6c85cf"))
        self.receive(INVITE_IN)
        self.assertEqual(len(self.tu.requests), 1)
        self.assertEqual(self.transport.statuses(), [100, 180, 180])
        self.assertEqual(self.layer.stats["retransmissions"], 1)

    def test_non_2xx_retransmitted_then_timer_h(self) -> None:
        """
        A 486 is retransmitted after 0.5 s, and with no ACK Timer H reports
        C{"timeout"} through C{on_error}.
        """
        self.receive(INVITE_IN)
        tx = self.tu.requests[0][0]
        errors: list[str] = []
        tx.on_error = errors.append
        tx.respond(make_response(tx.request, 486, to_tag="a6c85cf"))
        self.clock.advance(0.5)
        self.assertEqual(self.transport.statuses(), [100, 486, 486])
        self.advance_to(32.1)
        self.assertEqual(errors, ["timeout"])
        self.assertEqual(dict(self.layer.server_transactions), {})
        self.assertEqual(self.pending_calls(), [])

    def test_ack_for_non_2xx_absorbed(self) -> None:
        """
        The ACK of a 486 is absorbed by its transaction, which stops
        retransmitting and ends after Timer I.
        """
        self.receive(INVITE_IN)
        tx = self.tu.requests[0][0]
        tx.respond(make_response(tx.request, 486, to_tag="a6c85cf"))
        self.receive(ACK_IN)
        self.assertEqual(tx.state, State.CONFIRMED)
        self.assertEqual(self.tu.acks, [])
        self.receive(ACK_IN)
        self.advance_to(5.0)
        self.assertEqual(self.transport.statuses(), [100, 486])
        self.assertEqual(tx.state, State.TERMINATED)
        self.assertEqual(self.layer.stats["absorbed"], 1)

    def test_ack_for_2xx_to_tu(self) -> None:
        """
        The ACK of a 2xx (a new branch) goes to the TU with its source.
        """
        self.receive(INVITE_IN)
        tx = self.tu.requests[0][0]
        tx.respond(make_response(tx.request, 200, to_tag="a6c85cf"))
        ack = self.receive(ACK_2XX_IN)
        self.assertEqual(self.tu.acks, [(ack, UAC_PEER)])
        self.assertEqual(tx.state, State.ACCEPTED)

    def test_ack_same_branch_in_accepted_to_tu(self) -> None:
        """
        An ACK matching an INVITE transaction in Accepted is passed to the
        TU, not absorbed (RFC 6026 s7.1).
        """
        self.receive(INVITE_IN)
        tx = self.tu.requests[0][0]
        tx.respond(make_response(tx.request, 200, to_tag="a6c85cf"))
        ack = self.receive(ACK_IN)
        self.assertEqual(self.tu.acks, [(ack, UAC_PEER)])

    def test_accepted_absorbs_invite_and_2xx_goes_out_again(self) -> None:
        """
        In Accepted a retransmitted INVITE is absorbed; the TU's 2xx
        retransmissions are sent, also after Timer L ended the transaction.
        """
        self.receive(INVITE_IN)
        tx = self.tu.requests[0][0]
        ok = make_response(tx.request, 200, to_tag="a6c85cf")
        tx.respond(ok)
        self.receive(INVITE_IN)
        self.assertEqual(self.transport.statuses(), [100, 200])
        tx.respond(ok)
        self.advance_to(33.0, step=1.0)
        self.assertEqual(tx.state, State.TERMINATED)
        tx.respond(ok)
        self.assertEqual(self.transport.statuses(), [100, 200, 200, 200])
        self.assertEqual(self.layer.stats["late_2xx_sent"], 1)
        self.assertRaises(LocalSipError, tx.respond, make_response(tx.request, 486, to_tag="a6c85cf"))

    def test_cancel_matching_invite(self) -> None:
        """
        A CANCEL matching a pending INVITE is answered 200 by the layer and
        reported to the TU, which answers the INVITE 487.
        """
        self.receive(INVITE_IN)
        invite_tx = self.tu.requests[0][0]
        invite_tx.respond(make_response(invite_tx.request, 180, to_tag="a6c85cf"))
        cancel = self.receive(CANCEL_IN)
        self.assertEqual(self.tu.cancels, [(invite_tx, cancel)])
        answer = self.transport.responses[-1][0]
        self.assertEqual((answer.status, str(answer.cseq)), (200, "1 CANCEL"))
        self.assertEqual(answer.to_tag, "a6c85cf")
        invite_tx.respond(make_response(invite_tx.request, 487, to_tag="a6c85cf"))
        self.receive(ACK_IN)
        self.assertEqual(invite_tx.state, State.CONFIRMED)
        self.assertEqual(self.transport.statuses(), [100, 180, 200, 487])
        self.assertEqual(len(self.tu.requests), 1)
        self.assertEqual(self.layer.stats["cancels_matched"], 1)

    def test_cancel_retransmission_absorbed(self) -> None:
        """
        A retransmitted CANCEL gets its 200 again and is not reported twice.
        """
        self.receive(INVITE_IN)
        self.receive(CANCEL_IN)
        self.receive(CANCEL_IN)
        self.assertEqual(len(self.tu.cancels), 1)
        self.assertEqual(self.transport.statuses(), [100, 200, 200])

    def test_cancel_unmatched(self) -> None:
        """
        A CANCEL matching nothing is answered 481 and never reaches the TU.
        """
        self.receive(CANCEL_IN)
        self.assertEqual(self.transport.statuses(), [481])
        self.assertEqual(self.tu.cancels, [])
        self.assertEqual(self.tu.requests, [])
        self.assertEqual(self.layer.stats["cancels_unmatched"], 1)

    def test_cancel_after_final(self) -> None:
        """
        A CANCEL after the INVITE's final response is answered 200 but has
        no effect (RFC 3261 s9.2).
        """
        self.receive(INVITE_IN)
        tx = self.tu.requests[0][0]
        tx.respond(make_response(tx.request, 200, to_tag="a6c85cf"))
        self.receive(CANCEL_IN)
        self.assertEqual(self.transport.statuses(), [100, 200, 200])
        self.assertEqual(self.tu.cancels, [])

    def test_non_invite(self) -> None:
        """
        A BYE reaches the TU; its retransmission gets the final response
        again; Timer J ends the transaction.
        """
        self.receive(BYE_IN)
        tx = self.tu.requests[0][0]
        self.assertEqual(self.transport.statuses(), [])
        tx.respond(make_response(tx.request, 200))
        self.receive(BYE_IN)
        self.assertEqual(self.transport.statuses(), [200, 200])
        self.assertEqual(len(self.tu.requests), 1)
        self.advance_to(32.0, step=1.0)
        self.assertEqual(dict(self.layer.server_transactions), {})

    def test_remote_error_answered(self) -> None:
        """
        A TU raising L{RemoteSipError} gets the request answered with the
        status hint and a To tag.
        """

        def refuse(tx: ServerTransaction, request: Request) -> None:
            raise RemoteSipError("Not Acceptable Here", 488)

        self.tu.on_request = refuse
        self.receive(INVITE_IN)
        answer = self.transport.responses[-1][0]
        self.assertEqual(answer.status, 488)
        self.assertIsNotNone(answer.to_tag)

    def test_tu_bug_answered_500(self) -> None:
        """
        A TU crashing on a request gets it answered 500, logged and counted.
        """

        def crash(tx: ServerTransaction, request: Request) -> None:
            raise ZeroDivisionError()

        self.tu.on_request = crash
        self.receive(BYE_IN)
        self.assertEqual(self.transport.statuses(), [500])
        self.assertEqual(self.layer.stats["tu_errors"], 1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_transport_error_reported(self) -> None:
        """
        A response that cannot be sent is reported through C{on_error}; the
        transaction stays to absorb retransmissions.
        """
        self.receive(BYE_IN)
        tx = self.tu.requests[0][0]
        errors: list[str] = []
        tx.on_error = errors.append
        self.transport.failure = OSError("network unreachable")
        tx.respond(make_response(tx.request, 200))
        self.clock.advance(0)
        self.assertEqual(len(errors), 1)
        self.assertTrue(errors[0].startswith("transport: "))
        self.assertEqual(tx.state, State.COMPLETED)

    def test_reliable_server(self) -> None:
        """
        Over TCP a non-INVITE transaction ends with its final response.
        """
        tcp = Peer("tcp", "192.0.2.1", 50123)
        self.receive(BYE_IN.replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"), tcp)
        tx = self.tu.requests[0][0]
        tx.respond(make_response(tx.request, 200))
        self.assertEqual(tx.state, State.TERMINATED)
        self.assertEqual(dict(self.layer.server_transactions), {})
        self.assertEqual(self.transport.responses[0][1], tcp)

    def test_stop(self) -> None:
        """
        C{stop} forgets every transaction and cancels every delayed call.
        """
        self.receive(INVITE_IN)
        self.tu.requests[0][0].respond(make_response(parse_request(INVITE_IN), 486, to_tag="x"))
        self.send()
        self.assertEqual(len(self.pending_calls()), 2)
        self.layer.stop()
        self.assertEqual(self.pending_calls(), [])
        self.assertEqual(dict(self.layer.client_transactions), {})


# ---------------------------------------------------------------------------
# Back to back over a lossy wire


class LossyWire:
    """
    Carries serialized messages between two layers after 10 ms, dropping a
    fraction of them with a seeded generator.
    """

    def __init__(self, clock: task.Clock, seed: int, loss: float = 0.3) -> None:
        self.clock = clock
        self.random = random.Random(seed)
        self.loss = loss
        self.sent = 0
        self.dropped = 0

    def carry(self, data: bytes, to: TransactionLayer, source: Peer) -> None:
        self.sent += 1
        if self.random.random() < self.loss:
            self.dropped += 1
            return
        self.clock.callLater(0.01, to.message_received, parse(data), source)


class WireTransport:
    """
    One end of a L{LossyWire}: a L{SipTransportLike} for one layer.
    """

    def __init__(self, wire: LossyWire, me: Peer) -> None:
        self.wire = wire
        self.me = me
        self.other: TransactionLayer | None = None

    def send_request(self, request: Request, peer: Peer) -> Deferred[None]:
        assert self.other is not None
        self.wire.carry(request.to_bytes(), self.other, self.me)
        return defer.succeed(None)

    def send_response(self, response: Response, source: Peer) -> Deferred[None]:
        assert self.other is not None
        self.wire.carry(response.to_bytes(), self.other, self.me)
        return defer.succeed(None)

    def local_via(self, peer: Peer) -> tuple[str, str]:
        return peer.via_transport, "%s:%d" % (self.me.host, self.me.port)


class UserAgentServer(RecordingTU):
    """
    A minimal UAS core: answers INVITE with 180 and 200, retransmitting the
    200 until the ACK (RFC 3261 s13.3.1.4), and any other request with 200.
    """

    def __init__(self, clock: task.Clock, timers: TimerConfig) -> None:
        super().__init__()
        self.clock = clock
        self.timers = timers
        self.on_request = self.answer
        self._retransmit: IDelayedCall | None = None

    def answer(self, tx: ServerTransaction, request: Request) -> None:
        if request.method != "INVITE":
            tx.respond(make_response(request, 200))
            return
        tx.respond(make_response(request, 180, to_tag="uas1"))
        ok = make_response(request, 200, to_tag="uas1", headers=[("Contact", "<sip:bob@192.0.2.2>")])
        tx.respond(ok)
        self._schedule(tx, ok, self.timers.t1, self.clock.seconds() + 64 * self.timers.t1)

    def _schedule(self, tx: ServerTransaction, ok: Response, interval: float, give_up: float) -> None:
        def again() -> None:
            if self.clock.seconds() >= give_up:
                return
            tx.respond(ok)
            self._schedule(tx, ok, min(2 * interval, self.timers.t2), give_up)

        self._retransmit = self.clock.callLater(interval, again)

    def ack_received(self, ack: Request, source: Peer) -> None:
        super().ack_received(ack, source)
        if self._retransmit is not None and self._retransmit.active():
            self._retransmit.cancel()


class UserAgentClient:
    """
    A minimal UAC core: ACKs every 2xx with the same ACK (RFC 3261
    s13.2.2.4), through the transaction's callback or as a stray.
    """

    def __init__(self, layer_ref: Callable[[], TransactionLayer]) -> None:
        self.layer_ref = layer_ref
        self.responses: list[Response] = []
        self.errors: list[str] = []
        self.ack: Request | None = None

    def on_response(self, response: Response) -> None:
        self.responses.append(response)
        if response.cseq.method == "INVITE" and 200 <= response.status < 300:
            self._ack(response)

    def _ack(self, response: Response) -> None:
        if self.ack is None:
            h = Headers()
            h.add("Max-Forwards", "70")
            for name in ("From", "To", "Call-ID"):
                h.add(name, response.headers.get(name) or "")
            h.add("CSeq", "%d ACK" % (response.cseq.number,))
            self.ack = Request("ACK", str(response.contacts[0].uri), h)
        self.ack = self.layer_ref().send_ack(self.ack, UAS_PEER)

    # The TransactionUser side of the UAC layer.
    def request_received(self, server_tx: ServerTransaction, request: Request) -> None:
        raise AssertionError("the UAC receives no request")

    def cancel_received(self, invite_server_tx: ServerTransaction, cancel: Request) -> None:
        raise AssertionError("the UAC receives no CANCEL")

    def ack_received(self, ack: Request, source: Peer) -> None:
        raise AssertionError("the UAC receives no ACK")

    def stray_response(self, response: Response, source: Peer) -> None:
        self._ack(response)


class BackToBackTests(SynchronousTestCase):
    """
    A UAC layer and a UAS layer complete transactions over a wire losing
    30 % of the messages, thanks to retransmissions.
    """

    def run_call(
        self, seed: int
    ) -> tuple[LossyWire, TransactionLayer, TransactionLayer, UserAgentClient, UserAgentServer]:
        clock = task.Clock()
        timers = TimerConfig()
        wire = LossyWire(clock, seed)
        uac_transport = WireTransport(wire, UAC_PEER)
        uas_transport = WireTransport(wire, UAS_PEER)
        uac_tu = UserAgentClient(lambda: uac)
        uas_tu = UserAgentServer(clock, timers)
        uac = TransactionLayer(clock, uac_transport, uac_tu, timers)
        uas = TransactionLayer(clock, uas_transport, uas_tu, timers)
        uac_transport.other = uas
        uas_transport.other = uac

        invite = outgoing(INVITE_IN)
        uac.send_request(invite, UAS_PEER, uac_tu.on_response, uac_tu.errors.append)
        for _ in range(4000):
            clock.advance(0.01)
            if uas_tu.acks and any(r.status == 200 for r in uac_tu.responses):
                break
        options = outgoing(OPTIONS_OUT)
        options_responses: list[Response] = []
        uac.send_request(options, UAS_PEER, options_responses.append, uac_tu.errors.append)
        for _ in range(4000):
            clock.advance(0.01)
            if options_responses:
                break
        uac_tu.responses.extend(options_responses)
        # Let every transaction run out.
        clock.advance(64.0)
        clock.advance(64.0)
        return wire, uac, uas, uac_tu, uas_tu

    def test_lossy_wire(self) -> None:
        """
        INVITE/200/ACK and an OPTIONS transaction complete over a wire
        dropping 30 % of messages, for several seeds.
        """
        total_dropped = 0
        for seed in range(10):
            wire, uac, uas, uac_tu, uas_tu = self.run_call(seed)
            total_dropped += wire.dropped
            self.assertEqual(uac_tu.errors, [], seed)
            self.assertIn(200, [r.status for r in uac_tu.responses if r.cseq.method == "INVITE"], seed)
            self.assertTrue(uas_tu.acks, seed)
            self.assertEqual([r.status for r in uac_tu.responses if r.cseq.method == "OPTIONS"], [200], seed)
            self.assertEqual([r.method for _, r in uas_tu.requests], ["INVITE", "OPTIONS"], seed)
            self.assertEqual(dict(uac.client_transactions), {}, seed)
            self.assertEqual(dict(uas.server_transactions), {}, seed)
        self.assertGreater(total_dropped, 0)

    def test_lossy_wire_needs_retransmissions(self) -> None:
        """
        With a seed that loses the first INVITE, the call still completes
        because Timer A retransmits it.
        """
        for seed in range(100):
            if random.Random(seed).random() < 0.3:
                break
        wire, uac, uas, uac_tu, uas_tu = self.run_call(seed)
        self.assertGreater(uac.stats["retransmissions"], 0)
        self.assertTrue(uas_tu.acks)
        self.assertEqual(len([r for _, r in uas_tu.requests if r.method == "INVITE"]), 1)
