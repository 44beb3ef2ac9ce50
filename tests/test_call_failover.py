"""
Tests for L{aiconnect.call_failover}: mid-call failover of a forward
(SPEC s13) in the pure L{aiconnect.call.Call}, with fixed C{now} values.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aiconnect import events
from aiconnect.call import (
    LIVE_FORWARD_STATES,
    Emit,
    ForwardFailed,
    ForwardReconnecting,
    ForwardResumed,
    ForwardState,
    ForwardStopped,
    InboundEnded,
    InboundUpdated,
    StopForward,
    UpdateForward,
)
from aiconnect.call_outputs import PauseOrdered, PauseOutput
from tests.test_call import T0, names, with_forward

LOST = "sip:127.0.0.1:5070;transport=tcp"
NEW = "sip:127.0.0.1:5072;transport=tcp"


def reconnecting() -> tuple[object, str]:
    """
    An active call whose forward (answered by C{LOST}) lost its SRS at
    C{T0 + 10}.
    """
    call, fid = with_forward(ForwardState.ACTIVE)
    call.forwards[fid].target = LOST
    actions = call.handle(ForwardReconnecting(now=T0 + 10, forward_id=fid, reason="transport: connection lost"))
    assert actions == []
    return call, fid


class FailoverTests(SynchronousTestCase):
    """
    SPEC s13: an answered forward whose SRS is lost is re-established, and
    the application hears of it once it is settled.
    """

    def test_lost_then_resumed(self) -> None:
        """
        A loss emits nothing; the answer of another target emits
        SIPRECFORWARDRESUMED naming it, the lost target, the reason and the
        gap from the loss to the answer in ms; the forward is active again.
        """
        call, fid = reconnecting()
        info = call.forwards[fid]
        self.assertIs(info.state, ForwardState.RECONNECTING)
        actions = call.handle(ForwardResumed(now=T0 + 10.4125, forward_id=fid, target=NEW))
        self.assertIs(info.state, ForwardState.ACTIVE)
        self.assertEqual(info.target, NEW)
        [emit] = actions
        assert isinstance(emit, Emit)
        payload = emit.event.to_json()
        self.assertEqual(
            {k: payload[k] for k in ("event", "forwardId", "target", "previousTarget", "reason", "gapMs")},
            {
                "event": events.SIPRECFORWARDRESUMED,
                "forwardId": fid,
                "target": NEW,
                "previousTarget": LOST,
                "reason": "transport: connection lost",
                "gapMs": 412,
            },
        )

    def test_second_loss_names_the_new_previous_target(self) -> None:
        """
        A forward lost again after a resume reports the target of that
        resume as the previous one, and the new gap.
        """
        call, fid = reconnecting()
        call.handle(ForwardResumed(now=T0 + 11, forward_id=fid, target=NEW))
        call.handle(ForwardReconnecting(now=T0 + 20, forward_id=fid, reason="OPTIONS: timeout"))
        [emit] = call.handle(ForwardResumed(now=T0 + 20.05, forward_id=fid, target=LOST))
        payload = emit.event.to_json()  # type: ignore[attr-defined]
        self.assertEqual((payload["previousTarget"], payload["reason"], payload["gapMs"]), (NEW, "OPTIONS: timeout", 50))
        self.assertEqual(call.forwards[fid].reconnects, 2)

    def test_every_target_failed(self) -> None:
        """
        When every target fails the forward is failed with
        SIPRECFORWARDFAILED, and the session goes on.
        """
        call, fid = reconnecting()
        actions = call.handle(
            ForwardFailed(now=T0 + 12, forward_id=fid, reason="timeout", targets_tried=(NEW, LOST), target=LOST)
        )
        self.assertEqual(names(actions), [events.SIPRECFORWARDFAILED])
        self.assertIs(call.forwards[fid].state, ForwardState.FAILED)
        self.assertTrue(call.is_active)

    def test_reconnecting_holds_its_slot_and_the_session_end(self) -> None:
        """
        A re-establishing forward is live (it counts towards the limits);
        the SRC's BYE stops it (the dial is cancelled) and the session
        completes only once it reported its stop.
        """
        call, fid = reconnecting()
        self.assertIn(ForwardState.RECONNECTING, LIVE_FORWARD_STATES)
        actions = call.handle(InboundEnded(now=T0 + 12, reason="bye"))
        self.assertIn(StopForward(fid, events.STOPPED_BY_INBOUND_BYE), actions)
        self.assertNotIn("CloseMedia", names(actions))
        actions = call.handle(ForwardStopped(now=T0 + 12.1, forward_id=fid, stopped_by=events.STOPPED_BY_INBOUND_BYE))
        self.assertEqual(names(actions), [events.SIPRECFORWARDSTOPPED, "CloseMedia"])

    def test_second_loss_while_reconnecting_is_absorbed(self) -> None:
        """
        One re-establishment at a time: a loss reported while one is in
        flight changes nothing.
        """
        call, fid = reconnecting()
        self.assertEqual(call.handle(ForwardReconnecting(now=T0 + 11, forward_id=fid, reason="x")), [])
        self.assertEqual(call.forwards[fid].lost_at, T0 + 10)
        self.assertEqual(call.forwards[fid].reconnects, 1)

    def test_pause_and_update_reach_a_reconnecting_leg(self) -> None:
        """
        A pause and an inbound update are passed to the re-establishing leg
        (it applies them on the answer).
        """
        call, fid = reconnecting()
        self.assertIn(PauseOutput("forward", fid, True), call.handle(PauseOrdered(now=T0 + 11, targets=None)))
        self.assertEqual(
            call.handle(InboundUpdated(now=T0 + 11, media_changed=True, metadata_changed=False)),
            [UpdateForward(fid, True, False)],
        )
