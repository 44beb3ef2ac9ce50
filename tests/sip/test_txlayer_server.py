"""
Tests for the server side of L{aiconnect.sip.txlayer}: requests received
by a layer on a L{task.Clock}, with a recording fake transport and
transaction user.
"""

from __future__ import annotations



from aiconnect.errors import LocalSipError, RemoteSipError
from aiconnect.sip.message import Message, Request, make_response, parse
from aiconnect.sip.peer import Peer
from aiconnect.sip.transaction import State
from aiconnect.sip.txlayer import ServerTransaction
from tests.sip.txlayer_helpers import (
    ACK_2XX_IN,
    ACK_IN,
    BYE_IN,
    CANCEL_IN,
    INVITE_IN,
    UAC_PEER,
    LayerTestCase,
    parse_request,
)


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
