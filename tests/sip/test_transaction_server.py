"""
Tests for the server machines of L{aiconnect.sip.transaction}
(RFC 3261 s17.2, RFC 6026), driven with fixed C{now} values.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.errors import LocalSipError
from aiconnect.sip.transaction import (
    Absorbed,
    Input,
    InviteServerMachine,
    NonInviteServerMachine,
    PassAck,
    SendResponse,
    State,
    Terminated,
    Timeout,
    Timer,
    TransportError,
)
from tests.sip.transaction_helpers import (
    ACK,
    ACK_2XX,
    BYE,
    BYE_RESPONSE,
    INVITE,
    fire_all,
    kinds,
    parse_request,
    response,
)


class InviteServerTests(SynchronousTestCase):
    """
    Tests for L{InviteServerMachine} (RFC 3261 s17.2.1, RFC 6026 s7.1, s8.7).
    """

    def machine(self, reliable: bool = False) -> InviteServerMachine:
        """
        A fresh machine for the literal request.
        """
        m = InviteServerMachine(parse_request(INVITE), reliable=reliable)
        self.assertEqual(m.state, State.PROCEEDING)
        return m

    def test_start_sends_trying(self) -> None:
        """
        The transaction answers 100 Trying at once, without a To tag.
        """
        m = self.machine()
        actions = m.start(0.0)
        self.assertEqual(kinds(actions), ["SendResponse"])
        trying = actions[0].response
        self.assertEqual(trying.status, 100)
        self.assertIsNone(trying.to_tag)
        self.assertEqual(str(trying.cseq), "1 INVITE")
        self.assertIsNone(m.next_deadline())

    def test_retransmission_resends_last_provisional(self) -> None:
        """
        A retransmitted INVITE in Proceeding re-sends the last provisional
        response.
        """
        m = self.machine()
        m.start(0.0)
        ringing = response("180 Ringing")
        self.assertEqual(m.send_response(ringing, 0.1), [SendResponse(ringing)])
        again = m.receive_request(parse_request(INVITE), 0.5)
        self.assertEqual(again, [SendResponse(ringing, retransmission=True)])

    def test_ack_in_proceeding_absorbed(self) -> None:
        """
        An ACK before any final response is absorbed.
        """
        m = self.machine()
        m.start(0.0)
        self.assertEqual(m.receive_request(parse_request(ACK), 0.5), [Absorbed(Input.ACK)])

    def test_success_enters_accepted(self) -> None:
        """
        A 2xx from the TU is sent and enters Accepted with Timer L.
        """
        m = self.machine()
        m.start(0.0)
        ok = response("200 OK")
        self.assertEqual(m.send_response(ok, 1.0), [SendResponse(ok)])
        self.assertEqual(m.state, State.ACCEPTED)
        self.assertEqual(m.next_deadline(), 33.0)

    def test_accepted_absorbs_invite_retransmission(self) -> None:
        """
        In Accepted a retransmitted INVITE is absorbed (the UA core, not the
        transaction, retransmits the 2xx).
        """
        m = self.machine()
        m.start(0.0)
        m.send_response(response("200 OK"), 1.0)
        self.assertEqual(m.receive_request(parse_request(INVITE), 1.5), [Absorbed(Input.REQUEST)])

    def test_accepted_sends_2xx_retransmissions_and_passes_ack(self) -> None:
        """
        In Accepted the TU's 2xx retransmissions are sent and an ACK goes
        to the TU; Timer L then terminates.
        """
        m = self.machine()
        m.start(0.0)
        ok = response("200 OK")
        m.send_response(ok, 1.0)
        self.assertEqual(m.send_response(ok, 1.5), [SendResponse(ok)])
        ack = parse_request(ACK_2XX)
        self.assertEqual(m.receive_request(ack, 2.0), [PassAck(ack)])
        self.assertEqual(m.handle_timer(33.0), [Terminated()])

    def test_accepted_refuses_other_responses(self) -> None:
        """
        A 1xx or 300-699 after a 2xx is our bug.
        """
        m = self.machine()
        m.start(0.0)
        m.send_response(response("200 OK"), 1.0)
        self.assertRaises(LocalSipError, m.send_response, response("486 Busy Here"), 2.0)
        self.assertRaises(LocalSipError, m.send_response, response("180 Ringing"), 2.0)

    def test_failure_retransmitted_by_timer_g_until_timer_h(self) -> None:
        """
        A 300-699 is retransmitted by Timer G (doubling, capped at T2) until
        Timer H reports that no ACK came.
        """
        m = self.machine()
        m.start(0.0)
        busy = response("486 Busy Here")
        self.assertEqual(m.send_response(busy, 0.0), [SendResponse(busy)])
        self.assertEqual(m.state, State.COMPLETED)
        fired = fire_all(m, 100.0)
        self.assertEqual(
            [t for t, _ in fired],
            [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5, 32.0],
        )
        for _, actions in fired[:-1]:
            self.assertEqual(actions, [SendResponse(busy, retransmission=True)])
        self.assertEqual(fired[-1][1], [Timeout(Timer.H), Terminated()])

    def test_completed_resends_final_on_retransmission(self) -> None:
        """
        A retransmitted INVITE in Completed gets the final response again.
        """
        m = self.machine()
        m.start(0.0)
        busy = response("486 Busy Here")
        m.send_response(busy, 0.0)
        self.assertEqual(m.receive_request(parse_request(INVITE), 0.2), [SendResponse(busy, retransmission=True)])

    def test_ack_confirms_then_timer_i(self) -> None:
        """
        The ACK enters Confirmed (stopping G and H); further ACKs are
        absorbed until Timer I (T4).
        """
        m = self.machine()
        m.start(0.0)
        m.send_response(response("486 Busy Here"), 0.0)
        self.assertEqual(m.receive_request(parse_request(ACK), 1.0), [])
        self.assertEqual(m.state, State.CONFIRMED)
        self.assertEqual(m.next_deadline(), 6.0)
        self.assertEqual(m.receive_request(parse_request(ACK), 2.0), [Absorbed(Input.ACK)])
        self.assertEqual(m.handle_timer(6.0), [Terminated()])

    def test_reliable(self) -> None:
        """
        Over TCP there is no Timer G, and Timer I is zero.
        """
        m = self.machine(reliable=True)
        m.start(0.0)
        m.send_response(response("486 Busy Here"), 0.0)
        self.assertEqual(m.next_deadline(), 32.0)
        self.assertEqual(m.receive_request(parse_request(ACK), 1.0), [Terminated()])

    def test_second_final_refused(self) -> None:
        """
        A second final response is our bug.
        """
        m = self.machine()
        m.start(0.0)
        m.send_response(response("486 Busy Here"), 0.0)
        self.assertRaises(LocalSipError, m.send_response, response("500 Server Internal Error"), 0.1)

    def test_transport_error_keeps_state(self) -> None:
        """
        A transport error is reported but the transaction stays, so
        retransmitted INVITEs are still absorbed (RFC 6026 s8.8).
        """
        m = self.machine()
        m.start(0.0)
        self.assertEqual(m.transport_error("no route", 0.1), [TransportError("no route")])
        self.assertEqual(m.state, State.PROCEEDING)
        self.assertEqual(kinds(m.receive_request(parse_request(INVITE), 0.5)), ["SendResponse"])


class NonInviteServerTests(SynchronousTestCase):
    """
    Tests for L{NonInviteServerMachine} (RFC 3261 s17.2.2).
    """

    def machine(self, reliable: bool = False) -> NonInviteServerMachine:
        """
        A fresh machine for the literal request.
        """
        m = NonInviteServerMachine(parse_request(BYE), reliable=reliable)
        self.assertEqual(m.start(0.0), [])
        return m

    def test_trying_absorbs_retransmission(self) -> None:
        """
        A retransmission before any response is absorbed.
        """
        m = self.machine()
        self.assertEqual(m.receive_request(parse_request(BYE), 0.5), [Absorbed(Input.REQUEST)])

    def test_proceeding_resends_provisional(self) -> None:
        """
        After a 1xx, a retransmission gets the last provisional again.
        """
        m = self.machine()
        trying = response("100 Trying", template=BYE_RESPONSE)
        m.send_response(trying, 0.1)
        self.assertEqual(m.state, State.PROCEEDING)
        self.assertEqual(m.receive_request(parse_request(BYE), 0.5), [SendResponse(trying, retransmission=True)])

    def test_final_then_timer_j(self) -> None:
        """
        The final response enters Completed; retransmissions get it again
        until Timer J (64*T1).
        """
        m = self.machine()
        ok = response("200 OK", template=BYE_RESPONSE)
        self.assertEqual(m.send_response(ok, 1.0), [SendResponse(ok)])
        self.assertEqual(m.next_deadline(), 33.0)
        self.assertEqual(m.receive_request(parse_request(BYE), 2.0), [SendResponse(ok, retransmission=True)])
        self.assertEqual(m.handle_timer(33.0), [Terminated()])

    def test_reliable_final_terminates(self) -> None:
        """
        Over TCP Timer J is zero.
        """
        m = self.machine(reliable=True)
        actions = m.send_response(response("200 OK", template=BYE_RESPONSE), 1.0)
        self.assertEqual(kinds(actions), ["SendResponse", "Terminated"])

    def test_second_final_refused(self) -> None:
        """
        A second final response is our bug, not silently discarded.
        """
        m = self.machine()
        m.send_response(response("200 OK", template=BYE_RESPONSE), 1.0)
        self.assertRaises(LocalSipError, m.send_response, response("500 Oops", template=BYE_RESPONSE), 1.1)

    def test_foreign_method_refused(self) -> None:
        """
        A request of another method cannot belong to the transaction.
        """
        m = self.machine()
        self.assertRaises(LocalSipError, m.receive_request, parse_request(ACK), 0.5)

    def test_transport_error_reported(self) -> None:
        """
        A failed response send is reported and the state kept.
        """
        m = self.machine()
        m.send_response(response("200 OK", template=BYE_RESPONSE), 1.0)
        self.assertEqual(m.transport_error("closed", 1.1), [TransportError("closed")])
        self.assertEqual(m.state, State.COMPLETED)
