"""
Tests for L{aiconnect.call_mandatory}: mandatory forwards (SPEC s13) in the
pure L{aiconnect.call.Call}, with fixed C{now} values and no reactor.  One
case per row its inputs have in L{CALL_TABLE}, then the sequences: the
SRC's 200 OK held until the mandatory forwards answered, the 503 when one
fails, a CANCEL while waiting, and the SPEC s2 event order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from aiconnect import call_outputs as outputs
from aiconnect import events
from aiconnect.call import (
    CALL_TABLE,
    Call,
    CallState,
    Emit,
    ForwardAnswered,
    ForwardBye,
    ForwardClosed,
    ForwardFailed,
    ForwardOrdered,
    ForwardRejected,
    ForwardState,
    ForwardStopped,
    InboundAcked,
    InboundAnswered,
    InboundEnded,
    MediaClosed,
    Shutdown,
    StartForward,
    StopForward,
    StopOrdered,
)
from aiconnect.call_mandatory import (
    REASON_HEADER,
    WAIT_EXPIRED,
    AnswerInbound,
    MandatoryWaitExpired,
    NewCallDone,
    RejectInbound,
)
from tests.fakes import FakeOrder
from tests.test_call import names, new_call

T0 = 1_700_000_000.0
REJECT = RejectInbound(503, "Service Unavailable", (("Reason", 'SIP;cause=503;text="mandatory forward failed"'),))


@dataclass
class MandatoryOrder(FakeOrder):
    """
    A forward order with C{"mandatory": true}.
    """

    mandatory: bool = True


def ordered(*mandatory: bool) -> Call:
    """
    A negotiating call whose newCall answer ordered one forward per flag
    (C{fwd_0}, C{fwd_1} ...), mandatory where the flag is true, at C{T0}.
    """
    call = new_call()
    for i, flag in enumerate(mandatory):
        order = MandatoryOrder() if flag else FakeOrder()
        call.handle(ForwardOrdered(now=T0, order=order, forward_id="fwd_%d" % i))
    return call


def answered(call: Call, forward_id: str, now: float) -> list[Any]:
    """
    The SRS of C{forward_id} answered at C{now}: the Call's actions.
    """
    return call.handle(ForwardAnswered(now=now, forward_id=forward_id, target="t", codec="PCMA", srtp=False))


def emitted(actions: list[Any]) -> list[tuple[str, float]]:
    """
    The events among C{actions}: (name, timestamp).
    """
    return [(a.event.NAME, a.event.now) for a in actions if isinstance(a, Emit)]


#: (input, expected actions, expected call state) for each row of
#: L{CALL_TABLE} with an input of L{aiconnect.call_mandatory}, from a call
#: with one mandatory forward waiting for its answer.
ROW_CASES: list[tuple[Any, list[str], CallState]] = [
    (NewCallDone(now=T0 + 1), ["StartForward"], CallState.NEGOTIATING),
    (MandatoryWaitExpired(now=T0 + 1), ["SIPRECFORWARDFAILED", "StopForward", "RejectInbound", "CloseMedia"], CallState.TERMINATING),
]


class TableTests(SynchronousTestCase):
    """
    The rows of the mandatory inputs.
    """

    def test_every_row_has_a_case(self) -> None:
        """
        The cases cover exactly the rows of L{CALL_TABLE} whose input is one
        of L{aiconnect.call_mandatory}, all in C{NEGOTIATING}.
        """
        rows = {key for key in CALL_TABLE if key[1].__module__.endswith("call_mandatory")}
        self.assertEqual(rows, {(CallState.NEGOTIATING, type(fact)) for fact, _, _ in ROW_CASES})

    def test_rows(self) -> None:
        """
        Each row returns its actions and moves the call to its state.
        """
        for fact, expected, state in ROW_CASES:
            with self.subTest(input=type(fact).__name__):
                call = ordered(True)
                if isinstance(fact, MandatoryWaitExpired):
                    call.handle(NewCallDone(now=T0))
                self.assertEqual((names(call.handle(fact)), call.state), (expected, state))

    def test_other_states_absorb(self) -> None:
        """
        Once the session is active or ending, both inputs are absorbed: the
        SRC was answered (or the session is over).
        """
        call = ordered(True)
        call.handle(NewCallDone(now=T0))
        answered(call, "fwd_0", T0 + 1)
        call.handle(InboundAnswered(now=T0 + 1))
        call.handle(InboundAcked(now=T0 + 2))
        self.assertEqual(call.handle(NewCallDone(now=T0 + 3)), [])
        self.assertEqual(call.handle(MandatoryWaitExpired(now=T0 + 3)), [])
        self.assertEqual(call.absorbed, [("ACTIVE", "NewCallDone"), ("ACTIVE", "MandatoryWaitExpired")])


class AnswerTests(SynchronousTestCase):
    """
    When the SRC is answered.
    """

    def test_no_mandatory_order(self) -> None:
        """
        Without a mandatory order the SRC is answered as soon as newCall is
        over, and the forwards wait for the ACK as before.
        """
        call = ordered(False)
        self.assertEqual(call.handle(NewCallDone(now=T0 + 1)), [AnswerInbound()])
        self.assertIs(call.forwards["fwd_0"].state, ForwardState.PENDING)
        self.assertFalse(call.answer_held)

    def test_held_until_answered(self) -> None:
        """
        A mandatory forward starts at newCall's end, a non-mandatory one does
        not; the SRC is answered once the SRS answered; SESSIONSTARTED comes
        at the ACK, the forward's SIPRECFORWARDSTARTED (stamped when it
        answered) right after it, then the other forward starts.
        """
        call = ordered(True, False)
        actions = call.handle(NewCallDone(now=T0 + 1))
        self.assertEqual(actions, [StartForward("fwd_0", call.forwards["fwd_0"].order, False)])
        self.assertTrue(call.answer_held)
        self.assertIs(call.forwards["fwd_1"].state, ForwardState.PENDING)
        self.assertEqual(answered(call, "fwd_0", T0 + 2), [AnswerInbound()])
        self.assertFalse(call.answer_held)
        self.assertEqual(call.handle(InboundAnswered(now=T0 + 2)), [])
        actions = call.handle(InboundAcked(now=T0 + 3))
        self.assertEqual(emitted(actions), [("SESSIONSTARTED", T0 + 3), ("SIPRECFORWARDSTARTED", T0 + 2)])
        self.assertEqual(names(actions), ["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "StartForward"])
        self.assertEqual(actions[2].forward_id, "fwd_1")
        self.assertIs(call.state, CallState.ACTIVE)

    def test_waits_for_every_mandatory_forward(self) -> None:
        """
        With two mandatory forwards the SRC is answered after the second
        answer, not the first.
        """
        call = ordered(True, True)
        self.assertEqual(names(call.handle(NewCallDone(now=T0 + 1))), ["StartForward", "StartForward"])
        self.assertEqual(answered(call, "fwd_1", T0 + 2), [])
        self.assertEqual(answered(call, "fwd_0", T0 + 3), [AnswerInbound()])

    def test_withdrawn_by_the_application(self) -> None:
        """
        A mandatory forward the application stops (REST) while the SRC
        waits is no longer waited for: the SRC is answered when the others
        answered, here at once.
        """
        call = ordered(True, True)
        call.handle(NewCallDone(now=T0 + 1))
        answered(call, "fwd_0", T0 + 2)
        self.assertEqual(names(call.handle(StopOrdered(now=T0 + 3, forward_id="fwd_1", stopped_by="api"))), ["StopForward"])
        actions = call.handle(ForwardStopped(now=T0 + 3, forward_id="fwd_1", stopped_by="api"))
        self.assertEqual(actions, [AnswerInbound()])

    def test_withdrawn_before_it_started(self) -> None:
        """
        A mandatory forward the application stopped before its newCall
        answer arrived never starts, and nothing is waited for.
        """
        call = ordered(True)
        call.handle(StopOrdered(now=T0, forward_id="fwd_0", stopped_by="api"))
        self.assertEqual(call.handle(NewCallDone(now=T0 + 1)), [AnswerInbound()])
        self.assertIs(call.forwards["fwd_0"].state, ForwardState.STOPPED)

    def test_event_after_the_answer_held_until_ack(self) -> None:
        """
        An SRS BYE between our 200 OK and the SRC's ACK: the session goes on,
        and SIPRECFORWARDSTOPPED comes after SESSIONSTARTED and
        SIPRECFORWARDSTARTED (SPEC s2).
        """
        call = ordered(True)
        call.handle(NewCallDone(now=T0 + 1))
        answered(call, "fwd_0", T0 + 2)
        call.handle(InboundAnswered(now=T0 + 2))
        self.assertEqual(call.handle(ForwardBye(now=T0 + 2.5, forward_id="fwd_0")), [])
        actions = call.handle(InboundAcked(now=T0 + 3))
        self.assertEqual(
            emitted(actions),
            [("SESSIONSTARTED", T0 + 3), ("SIPRECFORWARDSTARTED", T0 + 2), ("SIPRECFORWARDSTOPPED", T0 + 2.5)],
        )


class RejectTests(SynchronousTestCase):
    """
    When a mandatory forward fails: 503 with the Reason of SPEC s13.
    """

    def assertCompleted(self, call: Call, now: float) -> None:
        """
        The media closes and SESSIONCOMPLETED has reason
        mandatoryForwardFailed; no SESSIONSTARTED was ever emitted.
        """
        actions = call.handle(MediaClosed(now=now))
        self.assertEqual(names(actions), ["SESSIONCOMPLETED", "Finished"])
        self.assertEqual(actions[0].event.reason, events.COMPLETED_MANDATORY_FORWARD_FAILED)
        self.assertIs(call.state, CallState.ENDED)

    def test_reason_header(self) -> None:
        """
        The rejection is 503 with exactly the SPEC s13 Reason header.
        """
        self.assertEqual(REASON_HEADER, ("Reason", 'SIP;cause=503;text="mandatory forward failed"'))

    def test_failed(self) -> None:
        """
        The only mandatory forward fails: SIPRECFORWARDFAILED, 503, and the
        session ends (the non-mandatory forward and the recording never
        started, nothing reports them); no SESSIONSTARTED.
        """
        call = ordered(True, False)
        call.handle(outputs.OutputOrdered(now=T0, kind="recording", output_id="rec_1", order=object()))
        call.handle(NewCallDone(now=T0 + 1))
        actions = call.handle(ForwardFailed(now=T0 + 2, forward_id="fwd_0", reason="SIP 503", status=503))
        self.assertEqual(names(actions), ["SIPRECFORWARDFAILED", "RejectInbound", "CloseMedia"])
        self.assertEqual(actions[1], REJECT)
        self.assertEqual(actions[0].event.status, 503)
        self.assertEqual(call.end_reason, events.COMPLETED_MANDATORY_FORWARD_FAILED)
        self.assertIs(call.forwards["fwd_1"].state, ForwardState.STOPPED)
        self.assertIs(call.outputs["rec_1"].state, outputs.OutputState.STOPPED)
        self.assertFalse(call.answered)
        self.assertCompleted(call, T0 + 3)

    def test_failed_after_another_answered(self) -> None:
        """
        One mandatory forward answered, the other fails: its held
        SIPRECFORWARDSTARTED, then SIPRECFORWARDFAILED, 503, and BYE for the
        answered one; SIPRECFORWARDSTOPPED (error), then SESSIONCOMPLETED
        once the SRS answered the BYE.
        """
        call = ordered(True, True)
        call.handle(NewCallDone(now=T0 + 1))
        self.assertEqual(answered(call, "fwd_0", T0 + 2), [])
        actions = call.handle(ForwardFailed(now=T0 + 3, forward_id="fwd_1", reason="DNS: no such name"))
        self.assertEqual(names(actions), ["SIPRECFORWARDSTARTED", "SIPRECFORWARDFAILED", "RejectInbound", "StopForward"])
        self.assertEqual(emitted(actions), [("SIPRECFORWARDSTARTED", T0 + 2), ("SIPRECFORWARDFAILED", T0 + 3)])
        self.assertEqual(actions[3], StopForward("fwd_0", events.STOPPED_BY_ERROR))
        actions = call.handle(ForwardStopped(now=T0 + 4, forward_id="fwd_0", stopped_by="error", awaiting_bye=True))
        self.assertEqual(names(actions), ["SIPRECFORWARDSTOPPED"])
        self.assertEqual(names(call.handle(ForwardClosed(now=T0 + 5, forward_id="fwd_0"))), ["CloseMedia"])
        self.assertCompleted(call, T0 + 6)

    def test_srs_bye_before_the_answer(self) -> None:
        """
        An answered mandatory forward that the SRS ends while another is
        still awaited is lost: 503.
        """
        call = ordered(True, True)
        call.handle(NewCallDone(now=T0 + 1))
        answered(call, "fwd_0", T0 + 2)
        actions = call.handle(ForwardBye(now=T0 + 3, forward_id="fwd_0"))
        self.assertEqual(
            names(actions), ["SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED", "RejectInbound", "StopForward"]
        )
        self.assertEqual(actions[3].forward_id, "fwd_1")

    def test_invalid_mandatory_order(self) -> None:
        """
        An invalid mandatory order (or one over a limit) fails at newCall's
        end: SIPRECFORWARDFAILED with its reason, 503, and the valid
        mandatory order is never started.
        """
        call = ordered(True)
        raw = {"uri": "sip:nobody@customer.example.com", "mandatory": True}
        call.handle(ForwardRejected(now=T0, forward_id="fwd_bad", reason="invalid order: uri", raw=raw, mandatory=True))
        actions = call.handle(NewCallDone(now=T0 + 1))
        self.assertEqual(names(actions), ["SIPRECFORWARDFAILED", "RejectInbound", "CloseMedia"])
        self.assertEqual((actions[0].event.forward_id, actions[0].event.reason), ("fwd_bad", "invalid order: uri"))
        self.assertIs(call.forwards["fwd_0"].state, ForwardState.STOPPED)
        self.assertCompleted(call, T0 + 2)

    def test_invalid_optional_order(self) -> None:
        """
        An invalid order without mandatory does not hold or reject: the SRC
        is answered, the order reported once the session is active.
        """
        call = new_call()
        call.handle(ForwardRejected(now=T0, forward_id="fwd_bad", reason="invalid order: uri", raw={}))
        self.assertEqual(call.handle(NewCallDone(now=T0 + 1)), [AnswerInbound()])

    def test_wait_expired(self) -> None:
        """
        C{mandatory_wait} is up: the unanswered mandatory forward fails
        (reason timeout) and is CANCELled, the answered one BYEd, 503; what
        the CANCELled leg reports later is absorbed.
        """
        call = ordered(True, True)
        call.handle(NewCallDone(now=T0 + 1))
        answered(call, "fwd_0", T0 + 2)
        actions = call.handle(MandatoryWaitExpired(now=T0 + 33))
        self.assertEqual(
            names(actions), ["SIPRECFORWARDSTARTED", "SIPRECFORWARDFAILED", "StopForward", "RejectInbound", "StopForward"]
        )
        self.assertEqual(actions[1].event.reason, WAIT_EXPIRED)
        self.assertEqual([actions[2].forward_id, actions[4].forward_id], ["fwd_1", "fwd_0"])
        self.assertEqual(call.handle(ForwardStopped(now=T0 + 34, forward_id="fwd_1", stopped_by="error")), [])
        self.assertIs(call.forwards["fwd_1"].state, ForwardState.FAILED)
        call.handle(ForwardStopped(now=T0 + 34, forward_id="fwd_0", stopped_by="error", awaiting_bye=True))
        self.assertEqual(names(call.handle(ForwardClosed(now=T0 + 35, forward_id="fwd_0"))), ["CloseMedia"])
        self.assertCompleted(call, T0 + 36)


class CancelTests(SynchronousTestCase):
    """
    The SRC gives up while the answer is held.
    """

    def test_cancel_while_waiting(self) -> None:
        """
        A CANCEL while the mandatory forward rings: it is CANCELled, no
        answer or rejection is sent (the UA answered 487), and
        SESSIONCOMPLETED has reason cancel after its SIPRECFORWARDSTOPPED.
        """
        call = ordered(True, False)
        call.handle(NewCallDone(now=T0 + 1))
        actions = call.handle(InboundEnded(now=T0 + 2, reason="cancel"))
        self.assertEqual(actions, [StopForward("fwd_0", events.STOPPED_BY_ERROR)])
        actions = call.handle(ForwardStopped(now=T0 + 3, forward_id="fwd_0", stopped_by="error"))
        self.assertEqual(names(actions), ["SIPRECFORWARDSTOPPED", "CloseMedia"])
        actions = call.handle(MediaClosed(now=T0 + 4))
        self.assertEqual(actions[0].event.reason, events.COMPLETED_CANCEL)
        self.assertFalse(call.answer_held)

    def test_cancel_after_the_srs_answered(self) -> None:
        """
        A CANCEL after the mandatory forward answered but before the SRC was
        (another one still rings): the held SIPRECFORWARDSTARTED comes out
        first, then both forwards are stopped.
        """
        call = ordered(True, True)
        call.handle(NewCallDone(now=T0 + 1))
        answered(call, "fwd_0", T0 + 2)
        actions = call.handle(InboundEnded(now=T0 + 3, reason="cancel"))
        self.assertEqual(names(actions), ["SIPRECFORWARDSTARTED", "StopForward", "StopForward"])
        self.assertEqual(call.held_events, [])

    def test_shutdown_while_waiting(self) -> None:
        """
        A drain while the answer is held: the INVITE gets 503 (without the
        mandatory Reason) rather than no answer, the forward is stopped.
        """
        call = ordered(True)
        call.handle(NewCallDone(now=T0 + 1))
        actions = call.handle(Shutdown(now=T0 + 2))
        self.assertEqual(actions, [RejectInbound(503, "Service Unavailable"), StopForward("fwd_0", events.STOPPED_BY_SHUTDOWN)])
        self.assertFalse(call.answer_held)
