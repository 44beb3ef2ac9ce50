"""
Tests for L{aiconnect.sip.transaction} outside the machines' own
transitions: the timer configuration, the transition tables, the machine
factories, the transaction keys, and the ACK and CANCEL builders. The
client machines are tested in L{tests.sip.test_transaction_client}, the
server machines in L{tests.sip.test_transaction_server}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.errors import LocalSipError
from aiconnect.sip.message import parse
from aiconnect.sip.transaction import (
    BRANCH_MAGIC,
    INVITE_CLIENT_TABLE,
    INVITE_SERVER_TABLE,
    NON_INVITE_CLIENT_TABLE,
    NON_INVITE_SERVER_TABLE,
    Arm,
    Input,
    InviteClientMachine,
    InviteServerMachine,
    NonInviteClientMachine,
    NonInviteServerMachine,
    State,
    Timer,
    TimerConfig,
    client_key,
    client_machine_for,
    has_magic_branch,
    make_ack,
    make_cancel,
    new_branch,
    server_key,
    server_machine_for,
)
from tests.sip.transaction_helpers import (
    ACK,
    ACK_2543,
    ACK_2XX,
    BYE,
    CANCEL,
    INVITE,
    INVITE_2543,
    parse_request,
    response,
)


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


class FactoryTests(SynchronousTestCase):
    """
    Tests for L{client_machine_for} and L{server_machine_for}.
    """

    def test_by_method(self) -> None:
        """
        INVITE gets the INVITE machines, other methods the non-INVITE ones.
        """
        self.assertIsInstance(client_machine_for(parse_request(INVITE)), InviteClientMachine)
        self.assertIsInstance(client_machine_for(parse_request(BYE)), NonInviteClientMachine)
        self.assertIsInstance(server_machine_for(parse_request(INVITE)), InviteServerMachine)
        self.assertIsInstance(server_machine_for(parse_request(CANCEL)), NonInviteServerMachine)

    def test_ack_refused(self) -> None:
        """
        An ACK makes no transaction.
        """
        self.assertRaises(LocalSipError, client_machine_for, parse_request(ACK))
        self.assertRaises(LocalSipError, server_machine_for, parse_request(ACK))


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
        self.assertTrue(has_magic_branch(parse_request(INVITE)))
        self.assertFalse(has_magic_branch(parse_request(INVITE_2543)))

    def test_ack_matches_invite(self) -> None:
        """
        The ACK of a non-2xx final has the INVITE's server key.
        """
        self.assertEqual(server_key(parse_request(ACK)), server_key(parse_request(INVITE)))

    def test_ack_for_2xx_matches_nothing(self) -> None:
        """
        An ACK with a new branch does not match the INVITE.
        """
        self.assertNotEqual(server_key(parse_request(ACK_2XX)), server_key(parse_request(INVITE)))

    def test_cancel_is_separate(self) -> None:
        """
        A CANCEL has its own key, and finds the INVITE through method INVITE.
        """
        cancel = parse_request(CANCEL)
        self.assertNotEqual(server_key(cancel), server_key(parse_request(INVITE)))
        self.assertEqual(server_key(cancel, "INVITE"), server_key(parse_request(INVITE)))

    def test_sent_by_distinguishes(self) -> None:
        """
        The same branch from another sent-by is another transaction.
        """
        other = parse_request(INVITE.replace(b"UDP pc33.atlanta.example.com", b"UDP pc34.atlanta.example.com"))
        self.assertNotEqual(server_key(other), server_key(parse_request(INVITE)))

    def test_rfc2543_matching(self) -> None:
        """
        Without a magic cookie, the INVITE and its ACK still match, and a
        CANCEL finds the INVITE.
        """
        invite = parse_request(INVITE_2543)
        self.assertEqual(server_key(parse_request(ACK_2543)), server_key(invite))
        cancel = parse_request(CANCEL.replace(b";branch=z9hG4bKnashds8", b""))
        self.assertEqual(server_key(cancel, "INVITE"), server_key(invite))
        self.assertNotEqual(server_key(cancel), server_key(invite))

    def test_client_key(self) -> None:
        """
        A response matches the request with the same branch and CSeq method.
        """
        self.assertEqual(client_key(response("180 Ringing")), client_key(parse_request(INVITE)))
        self.assertNotEqual(client_key(response("200 OK", cseq="1 CANCEL")), client_key(parse_request(INVITE)))


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
        invite = parse_request(INVITE)
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
        invite = parse_request(
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
        self.assertRaises(LocalSipError, make_ack, parse_request(INVITE), response("200 OK"))

    def test_cancel(self) -> None:
        """
        The CANCEL copies Request-URI, top Via, Route, From, To, Call-ID and
        the CSeq number, with method CANCEL and the extra headers (RFC 3261
        s9.1).
        """
        invite = parse_request(INVITE)
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
        self.assertRaises(LocalSipError, make_cancel, parse_request(ACK))
        self.assertRaises(LocalSipError, make_cancel, parse_request(CANCEL))
