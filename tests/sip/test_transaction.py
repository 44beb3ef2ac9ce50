"""
Tests for L{aiconnect.sip.transaction}: the four RFC 3261 s17 / RFC 6026
state machines driven with fixed C{now} values, the transaction keys, and
the ACK and CANCEL builders.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.errors import LocalSipError
from aiconnect.sip.message import Request, Response, parse
from aiconnect.sip.transaction import (
    BRANCH_MAGIC,
    INVITE_CLIENT_TABLE,
    INVITE_SERVER_TABLE,
    NON_INVITE_CLIENT_TABLE,
    NON_INVITE_SERVER_TABLE,
    Absorbed,
    Arm,
    Input,
    InviteClientMachine,
    InviteServerMachine,
    NonInviteClientMachine,
    NonInviteServerMachine,
    PassAck,
    PassResponse,
    SendAck,
    SendRequest,
    SendResponse,
    State,
    StrayResponse,
    Terminated,
    Timeout,
    Timer,
    TimerConfig,
    TransportError,
    client_key,
    client_machine_for,
    has_magic_branch,
    make_ack,
    make_cancel,
    new_branch,
    server_key,
    server_machine_for,
)

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


def request(data: bytes) -> Request:
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


class TimerConfigTests(SynchronousTestCase):
    """
    Tests for L{TimerConfig}.
    """

    def test_defaults(self) -> None:
        """
        The defaults are RFC 3261's T1 = 500 ms, T2 = 4 s and T4 = 5 s.
        """
        self.assertEqual(TimerConfig(), TimerConfig(t1=0.5, t2=4.0, t4=5.0))

    def test_non_positive_rejected(self) -> None:
        """
        A zero or negative base value is refused.
        """
        self.assertRaises(ValueError, TimerConfig, t1=0)
        self.assertRaises(ValueError, TimerConfig, t4=-1)

    def test_unreliable_values(self) -> None:
        """
        On UDP, A/E/G start at T1, B/F/H/J/L/M are 64*T1, D is 32 s and I/K
        are T4 (RFC 3261 Table 4, RFC 6026).
        """
        c = TimerConfig()
        expected = {
            Timer.A: 0.5, Timer.B: 32.0, Timer.D: 32.0, Timer.E: 0.5, Timer.F: 32.0,
            Timer.G: 0.5, Timer.H: 32.0, Timer.I: 5.0, Timer.J: 32.0, Timer.K: 5.0,
            Timer.L: 32.0, Timer.M: 32.0, Timer.CANCEL: 32.0,
        }
        self.assertEqual({t: c.initial(t, False) for t in Timer}, expected)

    def test_reliable_values(self) -> None:
        """
        On TCP/TLS, A/E/G are unused and D/I/J/K are zero.
        """
        c = TimerConfig()
        expected = {
            Timer.A: None, Timer.B: 32.0, Timer.D: 0.0, Timer.E: None, Timer.F: 32.0,
            Timer.G: None, Timer.H: 32.0, Timer.I: 0.0, Timer.J: 0.0, Timer.K: 0.0,
            Timer.L: 32.0, Timer.M: 32.0, Timer.CANCEL: 32.0,
        }
        self.assertEqual({t: c.initial(t, True) for t in Timer}, expected)

    def test_scaled_t1(self) -> None:
        """
        The 64*T1 timers follow T1, and Timer D never falls below 32 s nor
        below 64*T1.
        """
        self.assertEqual(TimerConfig(t1=0.1).initial(Timer.B, False), 6.4)
        self.assertEqual(TimerConfig(t1=0.1).initial(Timer.D, False), 32.0)
        self.assertEqual(TimerConfig(t1=1.0).initial(Timer.D, False), 64.0)


class TableTests(SynchronousTestCase):
    """
    Consistency checks over the four tables.
    """

    machines = (InviteClientMachine, NonInviteClientMachine, InviteServerMachine, NonInviteServerMachine)

    def test_every_row_cites_an_rfc(self) -> None:
        """
        Each row names the RFC section it implements.
        """
        tables = (INVITE_CLIENT_TABLE, NON_INVITE_CLIENT_TABLE, INVITE_SERVER_TABLE, NON_INVITE_SERVER_TABLE)
        for table in tables:
            for key, row in table.items():
                self.assertRegex(row.rfc, r"^RFC (3261|6026) s\d+(\.\d+)*", key)

    def test_armed_timers_live_in_target_state(self) -> None:
        """
        A row only arms timers that survive in the state it enters.
        """
        for machine in self.machines:
            for key, row in machine.table.items():
                for act in row.actions:
                    if isinstance(act, Arm):
                        self.assertIn(act.timer, machine.live_timers.get(row.target, ()), (machine.name, key))

    def test_no_row_leaves_terminated(self) -> None:
        """
        Terminated is final: no row starts from it.
        """
        for machine in self.machines:
            self.assertFalse([k for k in machine.table if k[0] is State.TERMINATED])

    def test_client_tables_take_every_response_class(self) -> None:
        """
        In every live state of a client machine, 1xx, 2xx and 300-699
        responses and transport errors have a row: none is dropped silently
        or mistaken for our bug.
        """
        for machine in (InviteClientMachine, NonInviteClientMachine):
            states = {k[0] for k in machine.table}
            for state in states:
                for inp in (Input.PROVISIONAL, Input.SUCCESS, Input.FAILURE, Input.TRANSPORT_ERROR):
                    self.assertIn((state, inp), machine.table, (machine.name, state))

    def test_server_tables_take_every_retransmission(self) -> None:
        """
        In every live state of a server machine, a retransmitted request
        (and for INVITE an ACK) has a row.
        """
        for machine, inputs in (
            (InviteServerMachine, (Input.REQUEST, Input.ACK, Input.TRANSPORT_ERROR)),
            (NonInviteServerMachine, (Input.REQUEST,)),
        ):
            for state in {k[0] for k in machine.table}:
                for inp in inputs:
                    self.assertIn((state, inp), machine.table, (machine.name, state))


class InviteClientTests(SynchronousTestCase):
    """
    Tests for L{InviteClientMachine} (RFC 3261 s17.1.1, RFC 6026 s8.4).
    """

    def machine(self, reliable: bool = False) -> InviteClientMachine:
        """
        A fresh machine for the literal request.
        """
        m = InviteClientMachine(request(INVITE), reliable=reliable)
        self.assertEqual(m.state, State.CALLING)
        return m

    def test_start_sends_request(self) -> None:
        """
        Starting sends the INVITE once and arms Timer A at T1.
        """
        m = self.machine()
        actions = m.start(10.0)
        self.assertEqual(actions, [SendRequest(m.request)])
        self.assertEqual(m.next_deadline(), 10.5)

    def test_timer_a_doubles_until_timer_b(self) -> None:
        """
        Timer A fires at 0.5, 1.5, 3.5, 7.5, 15.5 and 31.5 s, each time
        retransmitting; Timer B at 64*T1 reports a timeout and terminates.
        """
        m = self.machine()
        m.start(0.0)
        fired = fire_all(m, 100.0)
        self.assertEqual([t for t, _ in fired], [0.5, 1.5, 3.5, 7.5, 15.5, 31.5, 32.0])
        for _, actions in fired[:-1]:
            self.assertEqual(actions, [SendRequest(m.request, retransmission=True)])
        self.assertEqual(fired[-1][1], [Timeout(Timer.B), Terminated()])
        self.assertEqual(m.state, State.TERMINATED)
        self.assertIsNone(m.next_deadline())

    def test_reliable_has_no_timer_a(self) -> None:
        """
        Over TCP the INVITE is never retransmitted; Timer B still runs.
        """
        m = self.machine(reliable=True)
        m.start(0.0)
        self.assertEqual(m.next_deadline(), 32.0)
        self.assertEqual(m.handle_timer(32.0), [Timeout(Timer.B), Terminated()])

    def test_early_wakeup_does_nothing(self) -> None:
        """
        A timer call before any deadline returns no action.
        """
        m = self.machine()
        m.start(0.0)
        self.assertEqual(m.handle_timer(0.25), [])
        self.assertEqual(m.next_deadline(), 0.5)

    def test_late_wakeup_fires_in_deadline_order(self) -> None:
        """
        A wake-up after several deadlines fires them earliest first.
        """
        m = self.machine()
        m.start(0.0)
        actions = m.handle_timer(40.0)
        self.assertEqual(kinds(actions), ["SendRequest", "Timeout", "Terminated"])

    def test_provisional_stops_retransmissions(self) -> None:
        """
        A 1xx moves to Proceeding, goes to the TU, and cancels Timers A and B.
        """
        m = self.machine()
        m.start(0.0)
        ringing = response("180 Ringing")
        self.assertEqual(m.receive_response(ringing, 0.2), [PassResponse(ringing)])
        self.assertEqual(m.state, State.PROCEEDING)
        self.assertIsNone(m.next_deadline())
        again = response("183 Session Progress")
        self.assertEqual(m.receive_response(again, 0.3), [PassResponse(again)])

    def test_success_enters_accepted(self) -> None:
        """
        A 2xx goes to the TU and enters Accepted with Timer M at 64*T1; no
        ACK is generated by the transaction.
        """
        m = self.machine()
        m.start(0.0)
        ok = response("200 OK")
        self.assertEqual(m.receive_response(ok, 1.0), [PassResponse(ok)])
        self.assertEqual(m.state, State.ACCEPTED)
        self.assertEqual(m.next_deadline(), 33.0)
        self.assertIs(m.final_response, ok)

    def test_accepted_passes_2xx_retransmissions_up(self) -> None:
        """
        In Accepted every 2xx (retransmission or another fork's) goes to the
        TU, while 1xx and 300-699 are absorbed.
        """
        m = self.machine()
        m.start(0.0)
        m.receive_response(response("200 OK"), 1.0)
        again = response("200 OK")
        self.assertEqual(m.receive_response(again, 1.5), [PassResponse(again)])
        other = response("200 OK", to_tag="fork2")
        self.assertEqual(m.receive_response(other, 2.0), [PassResponse(other)])
        self.assertEqual(m.receive_response(response("180 Ringing"), 2.5), [Absorbed(Input.PROVISIONAL)])
        self.assertEqual(m.receive_response(response("486 Busy Here"), 3.0), [Absorbed(Input.FAILURE)])
        self.assertEqual(m.state, State.ACCEPTED)

    def test_timer_m_terminates(self) -> None:
        """
        Timer M ends the Accepted state.
        """
        m = self.machine()
        m.start(0.0)
        m.receive_response(response("200 OK"), 1.0)
        self.assertEqual(m.handle_timer(33.0), [Terminated()])
        self.assertEqual(m.state, State.TERMINATED)

    def test_failure_is_acked(self) -> None:
        """
        A 300-699 goes to the TU, is ACKed by the transaction and enters
        Completed with Timer D at 32 s.
        """
        m = self.machine()
        m.start(0.0)
        m.receive_response(response("100 Trying", to_tag=None), 0.1)
        busy = response("486 Busy Here")
        actions = m.receive_response(busy, 1.0)
        self.assertEqual(kinds(actions), ["PassResponse", "SendAck"])
        self.assertIs(actions[0].response, busy)
        ack = actions[1].ack
        self.assertEqual(ack.method, "ACK")
        self.assertEqual(ack.top_via.branch, "z9hG4bKnashds8")
        self.assertEqual(ack.to_tag, "314159")
        self.assertEqual(m.state, State.COMPLETED)
        self.assertEqual(m.next_deadline(), 33.0)

    def test_failure_retransmission_resends_ack(self) -> None:
        """
        In Completed a retransmitted 300-699 is answered with the same ACK
        and not passed up.
        """
        m = self.machine()
        m.start(0.0)
        first = m.receive_response(response("486 Busy Here"), 1.0)[1]
        again = m.receive_response(response("486 Busy Here"), 2.0)
        self.assertEqual(again, [SendAck(first.ack, retransmission=True)])
        self.assertEqual(m.receive_response(response("180 Ringing"), 2.5), [Absorbed(Input.PROVISIONAL)])

    def test_timer_d_terminates(self) -> None:
        """
        Timer D ends the Completed state.
        """
        m = self.machine()
        m.start(0.0)
        m.receive_response(response("603 Decline"), 1.0)
        self.assertEqual(m.handle_timer(33.0), [Terminated()])

    def test_reliable_failure_terminates_at_once(self) -> None:
        """
        Over TCP Timer D is zero: the ACK is sent and the transaction ends.
        """
        m = self.machine(reliable=True)
        m.start(0.0)
        actions = m.receive_response(response("486 Busy Here"), 1.0)
        self.assertEqual(kinds(actions), ["PassResponse", "SendAck", "Terminated"])
        self.assertEqual(m.state, State.TERMINATED)

    def test_2xx_after_failure_is_stray(self) -> None:
        """
        A 2xx reaching a Completed transaction is handed on as a stray (the
        UA core ACKs it), not passed to the transaction's TU callback.
        """
        m = self.machine()
        m.start(0.0)
        m.receive_response(response("486 Busy Here"), 1.0)
        ok = response("200 OK", to_tag="fork2")
        self.assertEqual(m.receive_response(ok, 2.0), [StrayResponse(ok)])

    def test_transport_error(self) -> None:
        """
        A transport error in Calling reports to the TU and terminates.
        """
        m = self.machine()
        m.start(0.0)
        self.assertEqual(m.transport_error("refused", 0.1), [TransportError("refused"), Terminated()])
        self.assertIsNone(m.next_deadline())

    def test_transport_error_after_final_absorbed(self) -> None:
        """
        A failed ACK send in Completed is absorbed: the TU has its final.
        """
        m = self.machine()
        m.start(0.0)
        m.receive_response(response("486 Busy Here"), 1.0)
        self.assertEqual(m.transport_error("gone", 1.1), [Absorbed(Input.TRANSPORT_ERROR)])
        self.assertEqual(m.state, State.COMPLETED)

    def test_cancel_wait(self) -> None:
        """
        After a CANCEL, no final response within 64*T1 reports a timeout
        (RFC 3261 s9.1).
        """
        m = self.machine()
        m.start(0.0)
        m.receive_response(response("180 Ringing"), 1.0)
        self.assertEqual(m.cancel_sent(5.0), [])
        self.assertEqual(m.next_deadline(), 37.0)
        self.assertEqual(m.handle_timer(37.0), [Timeout(Timer.CANCEL), Terminated()])

    def test_cancel_wait_ends_with_final(self) -> None:
        """
        The 487 that follows a CANCEL replaces the CANCEL wait by Timer D.
        """
        m = self.machine()
        m.start(0.0)
        m.receive_response(response("180 Ringing"), 1.0)
        m.cancel_sent(5.0)
        m.receive_response(response("487 Request Terminated"), 5.1)
        self.assertEqual(m.next_deadline(), 37.1)
        self.assertEqual(m.handle_timer(37.1), [Terminated()])

    def test_cancel_in_calling_refused(self) -> None:
        """
        A CANCEL before any provisional response is our bug (RFC 3261 s9.1).
        """
        m = self.machine()
        m.start(0.0)
        self.assertRaises(LocalSipError, m.cancel_sent, 0.1)

    def test_input_after_termination_raises(self) -> None:
        """
        A terminated machine refuses any further input.
        """
        m = self.machine()
        m.start(0.0)
        m.handle_timer(32.0)
        self.assertRaises(LocalSipError, m.receive_response, response("200 OK"), 33.0)

    def test_start_once(self) -> None:
        """
        Inputs before start, and a second start, are refused.
        """
        m = self.machine()
        self.assertRaises(LocalSipError, m.receive_response, response("200 OK"), 0.0)
        m.start(0.0)
        self.assertRaises(LocalSipError, m.start, 0.0)


class NonInviteClientTests(SynchronousTestCase):
    """
    Tests for L{NonInviteClientMachine} (RFC 3261 s17.1.2).
    """

    def machine(self, reliable: bool = False) -> NonInviteClientMachine:
        """
        A fresh machine for the literal request.
        """
        m = NonInviteClientMachine(request(BYE), reliable=reliable)
        self.assertEqual(m.state, State.TRYING)
        return m

    def test_timer_e_backs_off_to_t2_until_timer_f(self) -> None:
        """
        Timer E doubles from T1 and is capped at T2; Timer F at 64*T1
        reports a timeout.
        """
        m = self.machine()
        self.assertEqual(m.start(0.0), [SendRequest(m.request)])
        fired = fire_all(m, 100.0)
        self.assertEqual(
            [t for t, _ in fired],
            [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5, 32.0],
        )
        for _, actions in fired[:-1]:
            self.assertEqual(actions, [SendRequest(m.request, retransmission=True)])
        self.assertEqual(fired[-1][1], [Timeout(Timer.F), Terminated()])

    def test_proceeding_retransmits_every_t2(self) -> None:
        """
        After a 1xx, Timer E keeps running and is re-armed with T2.
        """
        m = self.machine()
        m.start(0.0)
        trying = response("100 Trying", template=BYE_RESPONSE)
        self.assertEqual(m.receive_response(trying, 0.2), [PassResponse(trying)])
        self.assertEqual(m.state, State.PROCEEDING)
        fired = fire_all(m, 13.0)
        self.assertEqual([t for t, _ in fired], [0.5, 4.5, 8.5, 12.5])

    def test_final_completes_and_timer_k(self) -> None:
        """
        A final response goes to the TU and enters Completed; retransmitted
        responses are absorbed until Timer K (T4).
        """
        m = self.machine()
        m.start(0.0)
        ok = response("200 OK", template=BYE_RESPONSE)
        self.assertEqual(m.receive_response(ok, 1.0), [PassResponse(ok)])
        self.assertEqual(m.state, State.COMPLETED)
        self.assertEqual(m.next_deadline(), 6.0)
        self.assertEqual(m.receive_response(ok, 2.0), [Absorbed(Input.SUCCESS)])
        self.assertEqual(m.handle_timer(6.0), [Terminated()])

    def test_failure_completes(self) -> None:
        """
        A 300-699 final response is handled as a 2xx one.
        """
        m = self.machine()
        m.start(0.0)
        nope = response("481 Call/Transaction Does Not Exist", template=BYE_RESPONSE)
        self.assertEqual(m.receive_response(nope, 1.0), [PassResponse(nope)])
        self.assertEqual(m.state, State.COMPLETED)

    def test_reliable(self) -> None:
        """
        Over TCP, E never fires and K is zero: the final response ends it.
        """
        m = self.machine(reliable=True)
        m.start(0.0)
        self.assertEqual(m.next_deadline(), 32.0)
        actions = m.receive_response(response("200 OK", template=BYE_RESPONSE), 1.0)
        self.assertEqual(kinds(actions), ["PassResponse", "Terminated"])

    def test_transport_error(self) -> None:
        """
        A transport error in Trying or Proceeding reports and terminates.
        """
        m = self.machine()
        m.start(0.0)
        m.receive_response(response("100 Trying", template=BYE_RESPONSE), 0.1)
        self.assertEqual(m.transport_error("reset", 0.2), [TransportError("reset"), Terminated()])


class InviteServerTests(SynchronousTestCase):
    """
    Tests for L{InviteServerMachine} (RFC 3261 s17.2.1, RFC 6026 s7.1, s8.7).
    """

    def machine(self, reliable: bool = False) -> InviteServerMachine:
        """
        A fresh machine for the literal request.
        """
        m = InviteServerMachine(request(INVITE), reliable=reliable)
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
        again = m.receive_request(request(INVITE), 0.5)
        self.assertEqual(again, [SendResponse(ringing, retransmission=True)])

    def test_ack_in_proceeding_absorbed(self) -> None:
        """
        An ACK before any final response is absorbed.
        """
        m = self.machine()
        m.start(0.0)
        self.assertEqual(m.receive_request(request(ACK), 0.5), [Absorbed(Input.ACK)])

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
        self.assertEqual(m.receive_request(request(INVITE), 1.5), [Absorbed(Input.REQUEST)])

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
        ack = request(ACK_2XX)
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
        self.assertEqual(m.receive_request(request(INVITE), 0.2), [SendResponse(busy, retransmission=True)])

    def test_ack_confirms_then_timer_i(self) -> None:
        """
        The ACK enters Confirmed (stopping G and H); further ACKs are
        absorbed until Timer I (T4).
        """
        m = self.machine()
        m.start(0.0)
        m.send_response(response("486 Busy Here"), 0.0)
        self.assertEqual(m.receive_request(request(ACK), 1.0), [])
        self.assertEqual(m.state, State.CONFIRMED)
        self.assertEqual(m.next_deadline(), 6.0)
        self.assertEqual(m.receive_request(request(ACK), 2.0), [Absorbed(Input.ACK)])
        self.assertEqual(m.handle_timer(6.0), [Terminated()])

    def test_reliable(self) -> None:
        """
        Over TCP there is no Timer G, and Timer I is zero.
        """
        m = self.machine(reliable=True)
        m.start(0.0)
        m.send_response(response("486 Busy Here"), 0.0)
        self.assertEqual(m.next_deadline(), 32.0)
        self.assertEqual(m.receive_request(request(ACK), 1.0), [Terminated()])

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
        self.assertEqual(kinds(m.receive_request(request(INVITE), 0.5)), ["SendResponse"])


class NonInviteServerTests(SynchronousTestCase):
    """
    Tests for L{NonInviteServerMachine} (RFC 3261 s17.2.2).
    """

    def machine(self, reliable: bool = False) -> NonInviteServerMachine:
        """
        A fresh machine for the literal request.
        """
        m = NonInviteServerMachine(request(BYE), reliable=reliable)
        self.assertEqual(m.start(0.0), [])
        return m

    def test_trying_absorbs_retransmission(self) -> None:
        """
        A retransmission before any response is absorbed.
        """
        m = self.machine()
        self.assertEqual(m.receive_request(request(BYE), 0.5), [Absorbed(Input.REQUEST)])

    def test_proceeding_resends_provisional(self) -> None:
        """
        After a 1xx, a retransmission gets the last provisional again.
        """
        m = self.machine()
        trying = response("100 Trying", template=BYE_RESPONSE)
        m.send_response(trying, 0.1)
        self.assertEqual(m.state, State.PROCEEDING)
        self.assertEqual(m.receive_request(request(BYE), 0.5), [SendResponse(trying, retransmission=True)])

    def test_final_then_timer_j(self) -> None:
        """
        The final response enters Completed; retransmissions get it again
        until Timer J (64*T1).
        """
        m = self.machine()
        ok = response("200 OK", template=BYE_RESPONSE)
        self.assertEqual(m.send_response(ok, 1.0), [SendResponse(ok)])
        self.assertEqual(m.next_deadline(), 33.0)
        self.assertEqual(m.receive_request(request(BYE), 2.0), [SendResponse(ok, retransmission=True)])
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
        self.assertRaises(LocalSipError, m.receive_request, request(ACK), 0.5)

    def test_transport_error_reported(self) -> None:
        """
        A failed response send is reported and the state kept.
        """
        m = self.machine()
        m.send_response(response("200 OK", template=BYE_RESPONSE), 1.0)
        self.assertEqual(m.transport_error("closed", 1.1), [TransportError("closed")])
        self.assertEqual(m.state, State.COMPLETED)


class FactoryTests(SynchronousTestCase):
    """
    Tests for L{client_machine_for} and L{server_machine_for}.
    """

    def test_by_method(self) -> None:
        """
        INVITE gets the INVITE machines, other methods the non-INVITE ones.
        """
        self.assertIsInstance(client_machine_for(request(INVITE)), InviteClientMachine)
        self.assertIsInstance(client_machine_for(request(BYE)), NonInviteClientMachine)
        self.assertIsInstance(server_machine_for(request(INVITE)), InviteServerMachine)
        self.assertIsInstance(server_machine_for(request(CANCEL)), NonInviteServerMachine)

    def test_ack_refused(self) -> None:
        """
        An ACK makes no transaction.
        """
        self.assertRaises(LocalSipError, client_machine_for, request(ACK))
        self.assertRaises(LocalSipError, server_machine_for, request(ACK))


class KeyTests(SynchronousTestCase):
    """
    Tests for branches and the matching keys (RFC 3261 s17.1.3, s17.2.3).
    """

    def test_new_branch(self) -> None:
        """
        Branches carry the magic cookie and are unique.
        """
        branches = {new_branch() for _ in range(100)}
        self.assertEqual(len(branches), 100)
        for b in branches:
            self.assertTrue(b.startswith(BRANCH_MAGIC))
            self.assertGreaterEqual(len(b), len(BRANCH_MAGIC) + 32)

    def test_has_magic_branch(self) -> None:
        """
        Only a z9hG4bK branch counts as RFC 3261.
        """
        self.assertTrue(has_magic_branch(request(INVITE)))
        self.assertFalse(has_magic_branch(request(INVITE_2543)))

    def test_ack_matches_invite(self) -> None:
        """
        The ACK of a non-2xx final has the INVITE's server key.
        """
        self.assertEqual(server_key(request(ACK)), server_key(request(INVITE)))

    def test_ack_for_2xx_matches_nothing(self) -> None:
        """
        An ACK with a new branch does not match the INVITE.
        """
        self.assertNotEqual(server_key(request(ACK_2XX)), server_key(request(INVITE)))

    def test_cancel_is_separate(self) -> None:
        """
        A CANCEL has its own key, and finds the INVITE through method INVITE.
        """
        cancel = request(CANCEL)
        self.assertNotEqual(server_key(cancel), server_key(request(INVITE)))
        self.assertEqual(server_key(cancel, "INVITE"), server_key(request(INVITE)))

    def test_sent_by_distinguishes(self) -> None:
        """
        The same branch from another sent-by is another transaction.
        """
        other = request(INVITE.replace(b"UDP pc33.atlanta.example.com", b"UDP pc34.atlanta.example.com"))
        self.assertNotEqual(server_key(other), server_key(request(INVITE)))

    def test_rfc2543_matching(self) -> None:
        """
        Without a magic cookie, the INVITE and its ACK still match, and a
        CANCEL finds the INVITE.
        """
        invite = request(INVITE_2543)
        self.assertEqual(server_key(request(ACK_2543)), server_key(invite))
        cancel = request(CANCEL.replace(b";branch=z9hG4bKnashds8", b""))
        self.assertEqual(server_key(cancel, "INVITE"), server_key(invite))
        self.assertNotEqual(server_key(cancel), server_key(invite))

    def test_client_key(self) -> None:
        """
        A response matches the request with the same branch and CSeq method.
        """
        self.assertEqual(client_key(response("180 Ringing")), client_key(request(INVITE)))
        self.assertNotEqual(client_key(response("200 OK", cseq="1 CANCEL")), client_key(request(INVITE)))


class BuilderTests(SynchronousTestCase):
    """
    Tests for L{make_ack} and L{make_cancel}.
    """

    def test_ack(self) -> None:
        """
        The ACK of a non-2xx copies the INVITE's Request-URI, top Via,
        Route, From, Call-ID and CSeq number, and the response's To
        (RFC 3261 s17.1.1.3).
        """
        invite = request(INVITE)
        ack = make_ack(invite, response("486 Busy Here"))
        again = parse(ack.to_bytes())
        self.assertEqual(again.method, "ACK")
        self.assertEqual(again.uri, "sip:bob@biloxi.example.com")
        self.assertEqual(
            again.headers.get_all("Via"), ["SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8"]
        )
        self.assertEqual(again.headers.get_all("Route"), ["<sip:ss1.atlanta.example.com;lr>"])
        self.assertEqual(again.headers.get("To"), "Bob <sip:bob@biloxi.example.com>;tag=314159")
        self.assertEqual(again.headers.get("From"), invite.headers.get("From"))
        self.assertEqual(again.call_id, invite.call_id)
        self.assertEqual(str(again.cseq), "1 ACK")
        self.assertEqual(again.body, b"")
        self.assertEqual(server_key(again), server_key(invite))

    def test_ack_single_via(self) -> None:
        """
        An INVITE with several Via values gives an ACK with only the top one.
        """
        invite = request(
            INVITE.replace(
                b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n",
                b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8, "
                b"SIP/2.0/UDP bigbox3.site3.atlanta.example.com;branch=z9hG4bK77ef4c2312983.1\r\n",
            )
        )
        ack = make_ack(invite, response("404 Not Found"))
        self.assertEqual(len(ack.vias), 1)
        self.assertEqual(ack.top_via.branch, "z9hG4bKnashds8")

    def test_ack_refuses_2xx(self) -> None:
        """
        The transaction never ACKs a 2xx.
        """
        self.assertRaises(LocalSipError, make_ack, request(INVITE), response("200 OK"))

    def test_cancel(self) -> None:
        """
        The CANCEL copies Request-URI, top Via, Route, From, To, Call-ID and
        the CSeq number, with method CANCEL and the extra headers (RFC 3261
        s9.1).
        """
        invite = request(INVITE)
        cancel = make_cancel(invite, [("Reason", 'SIP;cause=487;text="Stopped"')])
        again = parse(cancel.to_bytes())
        self.assertEqual(again.method, "CANCEL")
        self.assertEqual(again.uri, invite.uri)
        self.assertEqual(again.top_via.branch, "z9hG4bKnashds8")
        self.assertEqual(again.headers.get_all("Route"), ["<sip:ss1.atlanta.example.com;lr>"])
        self.assertEqual(again.headers.get("To"), invite.headers.get("To"))
        self.assertEqual(again.headers.get("From"), invite.headers.get("From"))
        self.assertEqual(str(again.cseq), "1 CANCEL")
        self.assertEqual(again.headers.get("Reason"), 'SIP;cause=487;text="Stopped"')
        self.assertEqual(server_key(again, "INVITE"), server_key(invite))

    def test_cancel_refuses_ack_and_cancel(self) -> None:
        """
        An ACK or a CANCEL cannot be cancelled.
        """
        self.assertRaises(LocalSipError, make_cancel, request(ACK))
        self.assertRaises(LocalSipError, make_cancel, request(CANCEL))
