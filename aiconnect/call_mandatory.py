# -*- test-case-name: tests.test_call_mandatory,tests.test_call,tests.integration.test_mandatory -*-
"""
Mandatory forwards (SPEC s13, "record or reject"): the part of the
L{aiconnect.call.Call} that decides when the SRC's INVITE is answered.
Pure, like the Call: the handlers here take the Call and change it.

Without a mandatory order the SRC is answered as soon as the application's
C{newCall} is over (L{NewCallDone}: answered, failed or timed out), as
before.  With C{"mandatory": true} in a newCall order, that forward starts
at once, while the session is still C{NEGOTIATING}, and the 200 OK waits
(L{Call.answer_held}) until every mandatory forward is answered; the other
orders still start after the SRC's ACK.  A mandatory forward that fails
(every target failed, DNS, no ports, an invalid order, a limit, the SRS
ended it, or no answer within C{[limits] mandatory_wait}:
L{MandatoryWaitExpired}) rejects the INVITE with 503 and L{REASON_HEADER}
(the SBC then tries its next recorder), stops whatever started, and ends
the session with C{SESSIONCOMPLETED} reason C{mandatoryForwardFailed}.

SPEC s2 keeps the event order: the events of a forward running before the
session is answered are held (L{Call.held_events}) and emitted right after
C{SESSIONSTARTED}, or, for a session that never starts, before
C{SESSIONCOMPLETED} (L{release_held}).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiconnect import events
from aiconnect.call_facts import ForwardInfo
from aiconnect.machine import Action, Emit, Input

if TYPE_CHECKING:
    from aiconnect.call import Call

__all__ = [
    "REASON_HEADER",
    "AnswerInbound",
    "MandatoryWaitExpired",
    "NewCallDone",
    "RejectInbound",
    "check_wait",
    "early_forward_fact",
    "ending",
    "new_call_done",
    "release_held",
    "wait_expired",
]

#: The status and phrase of the answer to the SRC's INVITE when a mandatory
#: forward failed (RFC 3261 s21.5.4: the SBC tries its next recorder).
REJECT_STATUS = 503
REJECT_PHRASE = "Service Unavailable"
#: RFC 3326 s2: why, on the 503 (SPEC s13).
REASON_HEADER = ("Reason", 'SIP;cause=503;text="mandatory forward failed"')
#: The C{SIPRECFORWARDFAILED} reason of a mandatory forward still unanswered
#: when C{[limits] mandatory_wait} is up.
WAIT_EXPIRED = "timeout: no answer within [limits] mandatory_wait"


# -- inputs ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NewCallDone(Input):
    """
    The C{newCall} callback is over (answered and its orders taken, failed
    or timed out): the SRC may be answered now, unless a mandatory forward
    must answer first.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class MandatoryWaitExpired(Input):
    """
    C{[limits] mandatory_wait} seconds passed since L{NewCallDone} and the
    SRC's INVITE is still unanswered.
    """


# -- actions ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnswerInbound(Action):
    """
    Send 200 OK to the SRC's INVITE now (SPEC s2).
    """


@dataclass(frozen=True, slots=True)
class RejectInbound(Action):
    """
    Answer the SRC's INVITE with a final non-2xx response (SPEC s13).
    """

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


# -- the handlers ----------------------------------------------------------------


def _awaited(call: Call) -> list[ForwardInfo]:
    return [info for info in call.forwards.values() if info.mandatory]


def new_call_done(call: Call, fact: NewCallDone) -> list[Action]:
    """
    CALL_TABLE handler: answer the SRC now, or start the mandatory forwards
    and hold the answer; an invalid or refused mandatory order rejects the
    INVITE at once (its C{SIPRECFORWARDFAILED} first).
    """
    awaited = _awaited(call)
    if not awaited:
        return [AnswerInbound()]
    call.answer_held = True
    actions: list[Action] = []
    refused = [info for info in awaited if info.error is not None]
    if refused:
        for info in refused:
            actions += call._launch(info, fact.now)  # its SIPRECFORWARDFAILED
        return _reject(call, fact.now, actions)
    for info in awaited:
        if info.holds_slot and not info.running:  # not stopped by the API yet
            actions += call._launch(info, fact.now)  # StartForward (SPEC s4)
    return actions + check_wait(call, fact.now)


def wait_expired(call: Call, fact: MandatoryWaitExpired) -> list[Action]:
    """
    CALL_TABLE handler: the hard cap on the wait is up; each mandatory
    forward still unanswered fails (and its leg is stopped: CANCEL), the
    INVITE is rejected.
    """
    if not call.answer_held:
        return []
    failures: list[Action] = []
    for info in _awaited(call):
        if info.running and not info.answered:
            failures += call._give_up_forward(info, WAIT_EXPIRED, fact.now)
    return _reject(call, fact.now, failures)


def early_forward_fact(call: Call, actions: list[Action], now: float) -> list[Action]:
    """
    After a forward fact while the session is C{NEGOTIATING} (a mandatory
    forward, the only kind running then): hold its events (SPEC s2: none
    before C{SESSIONSTARTED}), then see whether the wait is over
    (L{check_wait}).
    """
    call.held_events.extend(a for a in actions if isinstance(a, Emit))
    return [a for a in actions if not isinstance(a, Emit)] + check_wait(call, now)


def check_wait(call: Call, now: float) -> list[Action]:
    """
    While the answer is held: reject the INVITE when a mandatory forward is
    lost (failed, refused, ended by the SRS or by an error), answer it when
    each is answered or was withdrawn by the application (REST
    C{stopsiprecforward}), else keep waiting.
    """
    if not call.answer_held:
        return []
    awaited = _awaited(call)
    if any(not info.holds_slot and info.stopped_by != events.STOPPED_BY_API for info in awaited):
        return _reject(call, now, [])
    if all(info.answered or not info.holds_slot for info in awaited):
        call.answer_held = False
        return [AnswerInbound()]
    return []


def _reject(call: Call, now: float, failures: list[Action]) -> list[Action]:
    """
    503 to the SRC with the SPEC s13 C{Reason}, then end the session: what
    started is stopped (CANCEL / BYE), C{SESSIONCOMPLETED} reason
    C{mandatoryForwardFailed} once it has (no C{SESSIONSTARTED}: the session
    was never answered).
    """
    call.answer_held = False
    reject = RejectInbound(REJECT_STATUS, REJECT_PHRASE, (REASON_HEADER,))
    return release_held(call) + failures + [reject] + call._terminate(events.COMPLETED_MANDATORY_FORWARD_FAILED, now, bye=False)


def ending(call: Call) -> list[Action]:
    """
    The session ends (CANCEL, a 503, a shutdown ...): the held events come
    out first (L{release_held}); an answer still held for other reasons
    than a mandatory forward (a drain, SPEC s7) becomes a 503, so that the
    INVITE is not left unanswered (after a CANCEL the UA already sent 487).
    """
    actions = release_held(call)
    if call.answer_held and call.end_reason != events.COMPLETED_CANCEL:
        actions.append(RejectInbound(REJECT_STATUS, REJECT_PHRASE))
    call.answer_held = False
    return actions


def release_held(call: Call) -> list[Action]:
    """
    The forward events held while the session was not answered, in the
    order they happened (emptied): after C{SESSIONSTARTED}, or before the
    end of a session that never started.
    """
    held, call.held_events = call.held_events, []
    return list(held)
