"""
Tests for L{aiconnect.call}: the recording session's state machine, pure,
with fixed C{now} values and no reactor.  One case per row of
L{CALL_TABLE} and L{FORWARD_TABLE} (a test fails when a row has none),
then the sequences SPEC s2 fixes.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.trial.unittest import SynchronousTestCase

from aiconnect import events
from aiconnect.call import (
    CALL_TABLE,
    FORWARD_TABLE,
    ByeInbound,
    Call,
    CallState,
    CloseMedia,
    DrainExpired,
    Emit,
    Finished,
    ForwardAnswered,
    ForwardBye,
    ForwardClosed,
    ForwardFailed,
    ForwardLost,
    ForwardReconnecting,
    ForwardResumed,
    ForwardOrdered,
    ForwardRejected,
    ForwardState,
    ForwardStopped,
    InboundAcked,
    InboundAnswered,
    InboundEnded,
    InboundUpdated,
    MediaClosed,
    MediaTimeout,
    OrderRefused,
    SessionTimerExpired,
    Shutdown,
    StartForward,
    StopForward,
    StopOrdered,
    UpdateForward,
)
from tests.fakes import FakeOrder, FakeTenant

T0 = 1_700_000_000.0


def names(actions: list[Any]) -> list[str]:
    """
    The actions as short names: the class, and the event of an Emit.
    """
    return [a.event.NAME if isinstance(a, Emit) else type(a).__name__ for a in actions]


def new_call() -> Call:
    """
    A negotiating call created at C{T0}.
    """
    return Call(FakeTenant(), "cid", "<sip:a@x>;tag=1", "<sip:b@y>", "192.0.2.1", now=T0, session_id="ses_1")


def active(answered: bool = True) -> Call:
    """
    A call the SRC ACKed at C{T0 + 1}.
    """
    call = new_call()
    if answered:
        call.handle(InboundAnswered(now=T0 + 0.5))
    call.handle(InboundAcked(now=T0 + 1))
    return call


def with_forward(state: ForwardState) -> tuple[Call, str]:
    """
    An active call with one forward in C{state}.
    """
    call = active()
    if state is ForwardState.PENDING:
        call = new_call()
        call.handle(ForwardOrdered(now=T0, order=FakeOrder(), forward_id="fwd_1"))
        return call, "fwd_1"
    call.handle(ForwardOrdered(now=T0 + 2, order=FakeOrder(), forward_id="fwd_1"))
    if state is ForwardState.TRYING:
        return call, "fwd_1"
    call.handle(ForwardAnswered(now=T0 + 3, forward_id="fwd_1", target="t", codec="PCMU", srtp=False))
    if state is ForwardState.ACTIVE:
        return call, "fwd_1"
    if state is ForwardState.STOPPING:
        call.handle(ForwardStopped(now=T0 + 4, forward_id="fwd_1", stopped_by="api", awaiting_bye=True))
    elif state is ForwardState.STOPPED:
        call.handle(ForwardBye(now=T0 + 4, forward_id="fwd_1"))
    elif state is ForwardState.FAILED:
        call.handle(ForwardFailed(now=T0 + 4, forward_id="fwd_1", reason="x"))
    elif state is ForwardState.RECONNECTING:
        call.handle(ForwardReconnecting(now=T0 + 4, forward_id="fwd_1", reason="transport: connection lost"))
    return call, "fwd_1"


def terminating() -> Call:
    """
    A call ending, waiting for its forward's BYE to be answered.
    """
    call, _ = with_forward(ForwardState.ACTIVE)
    call.handle(InboundEnded(now=T0 + 5, reason="bye"))
    call.handle(ForwardStopped(now=T0 + 5, forward_id="fwd_1", stopped_by="inboundBye", awaiting_bye=True))
    return call


def ended() -> Call:
    """
    A call that completed.
    """
    call = active()
    call.handle(InboundEnded(now=T0 + 5, reason="bye"))
    call.handle(MediaClosed(now=T0 + 6))
    return call


_STATE_MAKERS: dict[CallState, Callable[[], Call]] = {
    CallState.NEGOTIATING: new_call,
    CallState.ACTIVE: active,
    CallState.TERMINATING: terminating,
    CallState.ENDED: ended,
}

F = "fwd_1"
N = T0 + 10

#: (state, input, expected next state, expected actions) per CALL_TABLE row.
CALL_CASES: list[tuple[CallState, Any, CallState, list[str]]] = [
    (CallState.NEGOTIATING, InboundAnswered(now=N), CallState.NEGOTIATING, []),
    (CallState.NEGOTIATING, InboundAcked(now=N), CallState.ACTIVE, ["SESSIONSTARTED"]),
    (CallState.NEGOTIATING, InboundEnded(now=N, reason="cancel"), CallState.TERMINATING, ["CloseMedia"]),
    (CallState.ACTIVE, InboundEnded(now=N, reason="bye"), CallState.TERMINATING, ["CloseMedia"]),
    (CallState.ACTIVE, InboundUpdated(now=N, media_changed=True, metadata_changed=False), CallState.ACTIVE, []),
    (CallState.NEGOTIATING, MediaTimeout(now=N), CallState.TERMINATING, ["CloseMedia"]),
    (CallState.ACTIVE, MediaTimeout(now=N), CallState.TERMINATING, ["ByeInbound", "CloseMedia"]),
    (CallState.NEGOTIATING, SessionTimerExpired(now=N), CallState.TERMINATING, ["CloseMedia"]),
    (CallState.ACTIVE, SessionTimerExpired(now=N), CallState.TERMINATING, ["ByeInbound", "CloseMedia"]),
    (CallState.NEGOTIATING, Shutdown(now=N), CallState.TERMINATING, ["CloseMedia"]),
    (CallState.ACTIVE, Shutdown(now=N), CallState.TERMINATING, ["ByeInbound", "CloseMedia"]),
    (CallState.NEGOTIATING, ForwardOrdered(now=N, order=FakeOrder(), forward_id="fwd_9"), CallState.NEGOTIATING, []),
    (CallState.ACTIVE, ForwardOrdered(now=N, order=FakeOrder(), forward_id="fwd_9"), CallState.ACTIVE, ["StartForward"]),
    (CallState.TERMINATING, ForwardOrdered(now=N, order=FakeOrder(), forward_id="fwd_9"), CallState.TERMINATING, ["OrderRefused"]),
    (CallState.ENDED, ForwardOrdered(now=N, order=FakeOrder(), forward_id="fwd_9"), CallState.ENDED, ["OrderRefused"]),
    (CallState.NEGOTIATING, ForwardRejected(now=N, forward_id="fwd_9", reason="limit"), CallState.NEGOTIATING, []),
    (CallState.ACTIVE, ForwardRejected(now=N, forward_id="fwd_9", reason="limit"), CallState.ACTIVE, ["SIPRECFORWARDFAILED"]),
    (CallState.NEGOTIATING, StopOrdered(now=N, forward_id=None, stopped_by="api"), CallState.NEGOTIATING, []),
    (CallState.ACTIVE, StopOrdered(now=N, forward_id=None, stopped_by="api"), CallState.ACTIVE, []),
    (CallState.TERMINATING, StopOrdered(now=N, forward_id=None, stopped_by="api"), CallState.TERMINATING, []),
    (CallState.ENDED, StopOrdered(now=N, forward_id=None, stopped_by="api"), CallState.ENDED, []),
    (CallState.TERMINATING, MediaClosed(now=N), CallState.ENDED, ["SESSIONCOMPLETED", "Finished"]),
    (CallState.TERMINATING, DrainExpired(now=N), CallState.TERMINATING, ["CloseMedia"]),
]

#: (forward state, input, expected forward state, expected actions) per
#: FORWARD_TABLE row (the call is active; completion is tested apart).
FORWARD_CASES: list[tuple[ForwardState, Any, ForwardState, list[str]]] = [
    (ForwardState.TRYING, ForwardAnswered(now=N, forward_id=F, target="t", codec="PCMA", srtp=True), ForwardState.ACTIVE, ["SIPRECFORWARDSTARTED"]),
    (ForwardState.TRYING, ForwardFailed(now=N, forward_id=F, reason="SIP 503"), ForwardState.FAILED, ["SIPRECFORWARDFAILED"]),
    (ForwardState.ACTIVE, ForwardFailed(now=N, forward_id=F, reason="answer not usable"), ForwardState.FAILED, ["SIPRECFORWARDFAILED"]),
    (ForwardState.ACTIVE, ForwardBye(now=N, forward_id=F), ForwardState.STOPPED, ["SIPRECFORWARDSTOPPED"]),
    (ForwardState.ACTIVE, ForwardLost(now=N, forward_id=F), ForwardState.STOPPED, ["SIPRECFORWARDSTOPPED"]),
    (ForwardState.TRYING, ForwardStopped(now=N, forward_id=F, stopped_by="api"), ForwardState.STOPPED, ["SIPRECFORWARDSTOPPED"]),
    (ForwardState.ACTIVE, ForwardStopped(now=N, forward_id=F, stopped_by="api", awaiting_bye=True), ForwardState.STOPPING, ["SIPRECFORWARDSTOPPED"]),
    (ForwardState.STOPPING, ForwardClosed(now=N, forward_id=F), ForwardState.STOPPED, []),
    (ForwardState.STOPPING, ForwardBye(now=N, forward_id=F), ForwardState.STOPPING, []),
    (ForwardState.STOPPED, ForwardClosed(now=N, forward_id=F), ForwardState.STOPPED, []),
    (ForwardState.FAILED, ForwardClosed(now=N, forward_id=F), ForwardState.FAILED, []),
    # SPEC s13 mid-call failover (tests.test_call_failover has the details).
    (ForwardState.ACTIVE, ForwardReconnecting(now=N, forward_id=F, reason="OPTIONS: timeout"), ForwardState.RECONNECTING, []),
    (ForwardState.RECONNECTING, ForwardResumed(now=N, forward_id=F, target="t2"), ForwardState.ACTIVE, ["SIPRECFORWARDRESUMED"]),
    (ForwardState.RECONNECTING, ForwardFailed(now=N, forward_id=F, reason="timeout"), ForwardState.FAILED, ["SIPRECFORWARDFAILED"]),
    (ForwardState.RECONNECTING, ForwardStopped(now=N, forward_id=F, stopped_by="api"), ForwardState.STOPPED, ["SIPRECFORWARDSTOPPED"]),
]


class TableTests(SynchronousTestCase):
    """
    Every transition row does what it says.
    """

    def test_every_row_has_a_case(self) -> None:
        """
        The cases cover exactly the rows of both tables (the output rows of
        L{CALL_TABLE} are covered in C{tests.test_call_outputs}, the
        mandatory-forward rows in C{tests.test_call_mandatory}).
        """
        session_rows = {key for key in CALL_TABLE if not key[1].__module__.endswith(("call_outputs", "call_mandatory"))}
        self.assertEqual({(s, type(i)) for s, i, _, _ in CALL_CASES}, session_rows)
        self.assertEqual({(s, type(i)) for s, i, _, _ in FORWARD_CASES}, set(FORWARD_TABLE))

    def test_every_row_cites_its_reference(self) -> None:
        """
        Each row names the SPEC or RFC section it implements.
        """
        for key, row in list(CALL_TABLE.items()) + list(FORWARD_TABLE.items()):
            self.assertRegex(row.ref, r"(SPEC s\d+|RFC \d+)", key)

    def test_call_rows(self) -> None:
        """
        Each CALL_TABLE row moves to its state and returns its actions.
        """
        for state, fact, next_state, expected in CALL_CASES:
            with self.subTest(state=state, input=type(fact).__name__):
                call = _STATE_MAKERS[state]()
                self.assertIs(call.state, state)
                try:
                    got = names(call.handle(fact))
                except OrderRefused:
                    got = ["OrderRefused"]
                self.assertEqual((call.state, got), (next_state, expected))
                row = CALL_TABLE[(state, type(fact))]
                if row.next_state is not None:
                    self.assertIs(call.state, row.next_state)

    def test_forward_rows(self) -> None:
        """
        Each FORWARD_TABLE row moves the forward to its state and returns
        its actions.
        """
        for state, fact, next_state, expected in FORWARD_CASES:
            with self.subTest(state=state, input=type(fact).__name__):
                call, fid = with_forward(state)
                self.assertIs(call.forwards[fid].state, state)
                got = names(call.handle(fact))
                self.assertEqual((call.forwards[fid].state, got), (next_state, expected))
                self.assertIs(FORWARD_TABLE[(state, type(fact))].next_state or state, next_state)

    def test_unlisted_pairs_are_absorbed(self) -> None:
        """
        A fact with no row for the state (a late BYE, a second ACK) changes
        nothing, returns no action and is recorded.
        """
        call = ended()
        self.assertEqual(call.handle(InboundEnded(now=N, reason="bye")), [])
        self.assertEqual(call.handle(InboundAcked(now=N)), [])
        self.assertIs(call.state, CallState.ENDED)
        self.assertEqual(call.absorbed, [("ENDED", "InboundEnded"), ("ENDED", "InboundAcked")])

    def test_unknown_forward(self) -> None:
        """
        A fact about a forward the call never had is a KeyError (our bug),
        as is a stop naming one.
        """
        call = active()
        self.assertRaises(KeyError, call.handle, ForwardClosed(now=N, forward_id="fwd_x"))
        self.assertRaises(KeyError, call.handle, StopOrdered(now=N, forward_id="fwd_x", stopped_by="api"))


class SequenceTests(SynchronousTestCase):
    """
    The event orders of SPEC s2, each event stamped with its input's now.
    """

    def test_started_then_forwards(self) -> None:
        """
        Forwards ordered while negotiating start after SESSIONSTARTED, in
        order; a rejected newCall order is reported there too.
        """
        call = new_call()
        call.handle(ForwardOrdered(now=T0, order=FakeOrder(), forward_id="a"))
        call.handle(ForwardRejected(now=T0, reason="invalid order: uri", raw={"uri": "sip:x@y"}, forward_id="b"))
        call.handle(ForwardOrdered(now=T0, order=FakeOrder(), forward_id="c"))
        actions = call.handle(InboundAcked(now=T0 + 1))
        self.assertEqual(names(actions), ["SESSIONSTARTED", "StartForward", "SIPRECFORWARDFAILED", "StartForward"])
        self.assertEqual([a.forward_id for a in actions if isinstance(a, StartForward)], ["a", "c"])
        started = actions[0].event.to_json("evt_1")
        self.assertEqual((started["timestamp"], started["callId"]), (events.format_timestamp(T0 + 1), "cid"))
        self.assertEqual(actions[2].event.uri, "sip:x@y")

    def test_inbound_bye_waits_for_the_srs(self) -> None:
        """
        Inbound BYE: StopForward (inboundBye); SIPRECFORWARDSTOPPED when the
        leg sent its BYE; close media and SESSIONCOMPLETED only once the SRS
        answered; duration from the ACK to the media closing.
        """
        call, fid = with_forward(ForwardState.ACTIVE)
        self.assertEqual(call.handle(InboundEnded(now=T0 + 10, reason="bye")), [StopForward(fid, "inboundBye")])
        stopped = call.handle(ForwardStopped(now=T0 + 10, forward_id=fid, stopped_by="inboundBye", awaiting_bye=True))
        self.assertEqual(names(stopped), ["SIPRECFORWARDSTOPPED"])
        self.assertEqual(names(call.handle(ForwardClosed(now=T0 + 11, forward_id=fid))), ["CloseMedia"])
        done = call.handle(MediaClosed(now=T0 + 11.25, stats={"packets": 3}))
        self.assertEqual(names(done), ["SESSIONCOMPLETED", "Finished"])
        completed = done[0].event
        self.assertEqual((completed.reason, completed.duration, dict(completed.stats or {})), ("inboundBye", 10.25, {"packets": 3}))
        self.assertEqual((call.state, call.ended, call.final_stats), (CallState.ENDED, T0 + 11.25, {"packets": 3}))

    def test_srs_bye_while_on_hold(self) -> None:
        """
        The SRS's BYE ends that forward only (stoppedBy srsBye): the call
        stays active (a hold is media-level; the Call does not change).
        """
        call, fid = with_forward(ForwardState.ACTIVE)
        call.handle(InboundUpdated(now=N, media_changed=True, metadata_changed=False))  # hold re-INVITE
        actions = call.handle(ForwardBye(now=N + 1, forward_id=fid))
        self.assertEqual(actions[0].event.stopped_by, "srsBye")
        self.assertIs(call.state, CallState.ACTIVE)

    def test_update_only_answered_forwards(self) -> None:
        """
        A re-INVITE from the SRC re-offers to answered forwards only.
        """
        call, fid = with_forward(ForwardState.ACTIVE)
        call.handle(ForwardOrdered(now=N, order=FakeOrder(), forward_id="fwd_2"))
        self.assertEqual(
            call.handle(InboundUpdated(now=N, media_changed=False, metadata_changed=True)), [UpdateForward(fid, False, True)]
        )

    def test_media_timeout_stops_forwards_with_error(self) -> None:
        """
        A media timeout BYEs the SRC and stops forwards with stoppedBy
        error; shutdown with shutdown.
        """
        call, fid = with_forward(ForwardState.ACTIVE)
        self.assertEqual(call.handle(MediaTimeout(now=N)), [ByeInbound(), StopForward(fid, "error")])
        self.assertEqual(call.end_reason, "mediaTimeout")
        call, fid = with_forward(ForwardState.TRYING)
        self.assertEqual(call.handle(Shutdown(now=N)), [ByeInbound(), StopForward(fid, "shutdown")])

    def test_no_bye_before_answer(self) -> None:
        """
        Ending a session never answered sends no BYE to the SRC.
        """
        call = new_call()
        self.assertEqual(call.handle(Shutdown(now=N)), [CloseMedia()])

    def test_pending_forward_stops_silently(self) -> None:
        """
        A forward ordered but never started stops without an event.
        """
        call, fid = with_forward(ForwardState.PENDING)
        self.assertEqual(call.handle(InboundEnded(now=N, reason="cancel")), [CloseMedia()])
        self.assertIs(call.forwards[fid].state, ForwardState.STOPPED)
        self.assertEqual(call.end_reason, "cancel")

    def test_drain_expired_completes(self) -> None:
        """
        The drain's end counts unanswered BYEs to SRSs as answered.
        """
        call = terminating()
        self.assertEqual(call.handle(DrainExpired(now=N)), [CloseMedia()])
        self.assertEqual(call.handle(DrainExpired(now=N)), [])
        self.assertEqual(names(call.handle(MediaClosed(now=N))), ["SESSIONCOMPLETED", "Finished"])

    def test_close_media_once(self) -> None:
        """
        CloseMedia is asked for once even if more facts arrive while the
        adapter closes the media.
        """
        call = active()
        self.assertEqual(call.handle(InboundEnded(now=N, reason="bye")), [CloseMedia()])
        self.assertEqual(call.handle(StopOrdered(now=N, forward_id=None, stopped_by="api")), [])

    def test_failed_reference_from_the_order(self) -> None:
        """
        SIPRECFORWARDFAILED echoes the order's uri and reference id unless
        the fact names others.
        """
        call, fid = with_forward(ForwardState.TRYING)
        call.forwards[fid].order = FakeOrder(reference_id={"t": 1})
        [emit] = call.handle(ForwardFailed(now=N, forward_id=fid, reason="DNS", targets_tried=("a", "b")))
        payload = emit.event.to_json("evt_x")
        self.assertEqual((payload["uri"], payload["sipRecForwardReferenceId"], payload["targetsTried"]), (FakeOrder.uri, {"t": 1}, ["a", "b"]))

    def test_finished_after_completed(self) -> None:
        """
        Finished is the last action, after SESSIONCOMPLETED.
        """
        call = active()
        call.handle(InboundEnded(now=N, reason="bye"))
        self.assertIsInstance(call.handle(MediaClosed(now=N))[-1], Finished)
