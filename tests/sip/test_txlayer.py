"""
Tests for the client side of L{aiconnect.sip.txlayer}: the transaction
layer on a L{task.Clock}, with a recording fake transport and transaction
user (L{tests.sip.txlayer_helpers}); the server side is in
L{tests.sip.test_txlayer_server}, two layers back to back in
L{tests.sip.test_txlayer_wire}.
"""

from __future__ import annotations



from aiconnect.errors import LocalSipError
from aiconnect.sip.message import Response
from aiconnect.sip.peer import Peer
from aiconnect.sip.transaction import BRANCH_MAGIC, State, make_cancel
from tests.sip.txlayer_helpers import (
    ACK_2XX_IN,
    ACK_IN,
    CANCEL_IN,
    INVITE_NO_VIA,
    OPTIONS_OUT,
    UAS_PEER,
    LayerTestCase,
    outgoing,
    reply,
)


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
