# -*- test-case-name: tests.test_call_failover,tests.integration.test_failover -*-
"""
Mid-call failover of a forward (SPEC s13): the L{aiconnect.call.Call}'s
handlers for L{aiconnect.call_facts.ForwardReconnecting} and
L{aiconnect.call_facts.ForwardResumed}.  Pure, like the Call: each takes the
Call, the forward's L{aiconnect.call_facts.ForwardInfo} and the fact, and
returns the actions; L{aiconnect.call.FORWARD_TABLE} names them (its rows
put the forward in the state they lead to before they run).

An answered forward whose SRS is lost (transport error, 408/481 or timeout
to an in-dialog request, keep-alive timeout) is C{RECONNECTING}: the leg
sends it no more RTP, ends that dialog and dials the trunk's targets
again, the lost one last.  No event is emitted then: the application
hears of it once it is settled, by C{SIPRECFORWARDRESUMED} (a target
answered: its name, the previous one, the reason and the gap in ms),
C{SIPRECFORWARDFAILED} (every target failed, or too many
re-establishments) or C{SIPRECFORWARDSTOPPED} (stopped meanwhile).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiconnect import events
from aiconnect.call_facts import ForwardInfo, ForwardReconnecting, ForwardResumed
from aiconnect.machine import Action, Emit

if TYPE_CHECKING:
    from aiconnect.call import Call

__all__ = ["lost", "resumed"]


def lost(call: Call, info: ForwardInfo, fact: ForwardReconnecting) -> list[Action]:
    """
    The forward's SRS is lost: remember when, why and which target, for
    the C{SIPRECFORWARDRESUMED} to come; nothing to carry out (the leg
    already dials).
    """
    info.lost_at = fact.now
    info.lost_reason = fact.reason
    info.previous_target = fact.previous_target if fact.previous_target is not None else info.target
    info.reconnects += 1
    return []


def resumed(call: Call, info: ForwardInfo, fact: ForwardResumed) -> list[Action]:
    """
    A target answered: C{SIPRECFORWARDRESUMED} with the new target and the
    gap between the loss and this answer.
    """
    lost_at = info.lost_at if info.lost_at is not None else fact.now
    info.target = fact.target
    gap_ms = max(0, int(round((fact.now - lost_at) * 1000)))
    return [
        Emit(
            events.SiprecForwardResumed(
                **call._envelope(fact.now),
                forward_id=info.forward_id,
                uri=info.uri,
                target=fact.target,
                previous_target=info.previous_target,
                reason=info.lost_reason,
                gap_ms=gap_ms,
                reference_id=info.reference_id,
            )
        )
    ]
