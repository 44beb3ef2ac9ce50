# -*- test-case-name: tests.test_runner,tests.test_call,tests.integration.test_inbound,tests.siprec.test_pending -*-
"""
The L{CallRunner}: the thin adapter around one L{aiconnect.call.Call}.

Facts from the SIP and media layers come in through L{CallRunner.feed}
(stamped with the injected clock's C{now}); the Call decides and returns
actions; the runner carries each out on its collaborators (the seams of
L{aiconnect.legs}): the inbound dialog (and, before it exists, the SRC's
pending INVITE: L{InboundAnswerer}), the forward legs, the relay session,
the event sink and the journal.  It decides nothing itself.

A leg may report a fact while an action is being carried out (a forward
whose DNS lookup fails at once, a stop that needs no BYE): the runner feeds
it at once, depth-first, as the Call already changed state for the action
before returning it.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.logger import Logger

from aiconnect import call_mandatory
from aiconnect import call_outputs as outputs
from aiconnect import events
from aiconnect.call import (
    LIVE_FORWARD_STATES,
    Action,
    ByeInbound,
    Call,
    CallState,
    CloseMedia,
    Emit,
    Finished,
    ForwardFailed,
    ForwardOrdered,
    ForwardRejected,
    ForwardState,
    ForwardStopped,
    Input,
    MediaClosed,
    StartForward,
    StopForward,
    StopOrdered,
    UpdateForward,
    new_forward_id,
)
from aiconnect.legs import (
    EventSink,
    ForwardLeg,
    InboundLeg,
    LegFactory,
    MediaSession,
    OutputFactory,
    OutputLeg,
    SessionJournal,
)
from aiconnect.metrics_recorder import NULL_METRICS, MetricsRecorder

__all__ = ["EVENT_LINES", "CallRunner"]

_FORWARD = "forward_id={forward_id} target={target}"
#: The info line of each event that changes a session's or a forward's
#: state: C{session_id}, C{call_id}, C{tenant}, C{src} (the SRC's
#: address) and C{target} (or the order's URI before one was chosen) are
#: known for every event, the others are the event's own fields.
EVENT_LINES: dict[type[events.Event], str] = {
    events.SessionStarted: "session started session_id={session_id} tenant={tenant} src={src} call_id={call_id}",
    events.SessionCompleted: (
        "session ended session_id={session_id} reason={reason} duration={duration:.1f}s call_id={call_id}"
    ),
    events.SiprecForwardStarted: "forward started " + _FORWARD + " session_id={session_id}",
    events.SiprecForwardFailed: (
        "forward failed " + _FORWARD + " status={status} reason={reason} session_id={session_id}"
    ),
    events.SiprecForwardStopped: (
        "forward stopped " + _FORWARD + " stopped_by={stopped_by} reason={reason} session_id={session_id}"
    ),
    events.SiprecForwardResumed: (
        "forward resumed " + _FORWARD + " previous_target={previous_target} reason={reason} gap_ms={gap_ms} "
        "session_id={session_id}"
    ),
}
#: The event fields L{EVENT_LINES} may name.
_EVENT_FIELDS = ("forward_id", "status", "reason", "stopped_by", "previous_target", "gap_ms", "duration")


class Clock(Protocol):
    """
    What the runner needs of the reactor: the time (C{IReactorTime.seconds}).
    """

    def seconds(self) -> float:
        """
        Now, in Unix seconds.
        """


class InboundAnswerer(Protocol):
    """
    The SRC's INVITE while it awaits our final answer
    (L{aiconnect.siprec.pending.PendingInvite}): the Call decides when
    and how it is answered (SPEC s2, s13).
    """

    def answer(self) -> None:
        """
        Send 200 OK (our SDP answer); the dialog's facts follow
        (C{InboundAnswered}, C{InboundAcked}).
        """

    def reject(self, status: int, reason: str, headers: tuple[tuple[str, str], ...]) -> None:
        """
        Send a final non-2xx response with C{headers}.
        """


class Finisher(Protocol):
    """
    Something that holds a session until it ends: the registry, the SRS's
    inbound session (its timers, its unconfirmed slot).
    """

    def session_finished(self, runner: CallRunner) -> None:
        """
        The session ended (SESSIONCOMPLETED emitted): let go of it.
        """


class CallRunner:
    """
    One recording session at run time: the L{Call} and its collaborators.

    @ivar call: the L{Call} (its state is read by the API views).
    @ivar inbound: the SRC's dialog, once answered.
    @ivar answerer: the SRC's INVITE until it is answered, or L{None}.
    @ivar media: the relay session, or L{None}.
    @ivar legs: forward id -> L{ForwardLeg}.
    @ivar output_legs: stream / recording id -> L{OutputLeg}.
    @ivar finishers: told once, in order, when the session ended.
    @ivar metrics: where failed forwards are counted.
    """

    log = Logger()

    def __init__(
        self,
        call: Call,
        clock: Clock,
        sink: EventSink,
        media: MediaSession | None = None,
        leg_factory: LegFactory | None = None,
        journal: SessionJournal | None = None,
        output_factory: OutputFactory | None = None,
        metrics: MetricsRecorder = NULL_METRICS,
    ) -> None:
        self.call = call
        self.metrics = metrics
        self.clock = clock
        self.sink = sink
        self.media = media
        self.leg_factory = leg_factory
        self.journal = journal
        self.inbound: InboundLeg | None = None
        self.answerer: InboundAnswerer | None = None
        self.legs: dict[str, ForwardLeg] = {}
        self.output_factory = output_factory
        self.output_legs: dict[str, OutputLeg] = {}
        self.finishers: list[Finisher] = []

    # -- what the registry and the API read -------------------------------------

    @property
    def session_id(self) -> str:
        """
        The session id.
        """
        return self.call.session_id

    @property
    def tenant(self) -> Any:
        """
        The tenant's configuration.
        """
        return self.call.tenant

    @property
    def state(self) -> CallState:
        """
        The Call's state.
        """
        return self.call.state

    def media_stats(self) -> dict[str, Any] | None:
        """
        The relay's counters: live, or the final ones once closed.
        """
        if self.call.final_stats is not None:
            return self.call.final_stats
        if self.media is None or self.call.media_closing:
            return None
        try:
            return self.media.stats()
        except Exception:
            return None

    def forward_stats(self, forward_id: str) -> dict[str, Any] | None:
        """
        A forward's media counters, or L{None} when it has no leg.
        """
        leg = self.legs.get(forward_id)
        return None if leg is None else leg.stats()

    # -- input ---------------------------------------------------------------------

    def now(self) -> float:
        """
        The clock's time, for the facts adapters build.
        """
        return self.clock.seconds()

    def feed(self, fact: Input) -> None:
        """
        Give the Call one fact and carry out what it decides.

        @raise OrderRefused: see L{Call.handle}.
        @raise KeyError: see L{Call.handle}.
        """
        before = self.call.state
        absorbed = self.call.absorbed_total
        actions = self.call.handle(fact)
        if self.call.absorbed_total > absorbed:
            self.log.debug(
                "{fact} absorbed in state {state} session_id={session_id}",
                fact=type(fact).__name__,
                state=before.name,
                session_id=self.call.session_id,
            )
        if before is not self.call.state and self.call.state is CallState.TERMINATING:
            # The info line is the session's end, once complete (_log_event).
            self.log.debug(
                "session ending session_id={session_id} call_id={call_id} reason={reason}",
                session_id=self.call.session_id,
                call_id=self.call.call_id,
                reason=self.call.end_reason,
            )
        self.perform(actions)

    def report(self, fact: type[Input], **fields: Any) -> None:
        """
        Feed a fact stamped now: C{report(ForwardFailed, forward_id=...,
        reason=...)}.
        """
        self.feed(fact(now=self.now(), **fields))

    def order_forward(self, order: Any) -> str:
        """
        The application ordered a forward (REST or newCall).

        @return: the forward id.
        @raise OrderRefused: the Call refused it (ending, or over a limit).
        """
        forward_id = new_forward_id()
        self.feed(ForwardOrdered(now=self.now(), order=order, forward_id=forward_id))
        return forward_id

    def reject_order(self, reason: str, order: Any = None, raw: Any = None, mandatory: bool = False) -> str:
        """
        A newCall order that will not start (invalid, or refused): reported
        as SIPRECFORWARDFAILED once the session is active; a C{mandatory}
        one rejects the SRC's INVITE (SPEC s13).

        @return: the forward id given to it.
        """
        forward_id = new_forward_id()
        self.feed(ForwardRejected(now=self.now(), forward_id=forward_id, reason=reason, order=order, raw=raw, mandatory=mandatory))
        return forward_id

    def stop_forwards(self, forward_id: str | None, stopped_by: str) -> list[str]:
        """
        Stop one forward or all (REST C{stopsiprecforward}).

        @return: the ids being stopped (live ones only: stopping is
            idempotent).
        @raise KeyError: for an unknown forward id.
        """
        if forward_id is not None and forward_id not in self.call.forwards:
            raise KeyError(forward_id)
        targets = [forward_id] if forward_id is not None else list(self.call.forwards)
        live = [f for f in targets if self.call.forwards[f].state in LIVE_FORWARD_STATES]
        self.feed(StopOrdered(now=self.now(), forward_id=forward_id, stopped_by=stopped_by))
        return live

    def order_output(self, kind: str, order: Any) -> str:
        """
        The application ordered a stream or recording (REST or newCall).

        @param kind: C{"stream"} or C{"recording"}.
        @return: its id.
        @raise OrderRefused: the Call refused it (ending, or over a limit).
        """
        output_id = outputs.new_output_id(kind, self.now())
        self.feed(outputs.OutputOrdered(now=self.now(), kind=kind, output_id=output_id, order=order))
        return output_id

    def reject_output(self, kind: str, reason: str, order: Any = None, raw: Any = None) -> str:
        """
        A newCall stream or recording order that will not start: its FAILED
        event once the session is active.

        @return: the id given to it.
        """
        output_id = outputs.new_output_id(kind, self.now())
        self.feed(outputs.OutputRejected(now=self.now(), kind=kind, output_id=output_id, reason=reason, order=order, raw=raw))
        return output_id

    def stop_outputs(self, kind: str, output_id: str | None, stopped_by: str) -> list[str]:
        """
        Stop one stream or recording, or all of a kind (REST).

        @return: the ids being stopped (idempotent: stopped ones are not
            listed).
        @raise KeyError: for an id this session has no output of C{kind}
            for.
        """
        mine = {k: v for k, v in self.call.outputs.items() if v.kind == kind}
        if output_id is not None and output_id not in mine:
            raise KeyError(output_id)
        targets = [output_id] if output_id is not None else list(mine)
        live = [o for o in targets if mine[o].holds_slot]
        self.feed(outputs.OutputStopOrdered(now=self.now(), kind=kind, output_id=output_id, stopped_by=stopped_by))
        return live

    def pause(self, targets: dict[str, list[str]] | None) -> dict[str, list[str]]:
        """
        SPEC s10: pause the session (C{targets} L{None}) or the outputs
        named (kind -> ids, kinds C{forward}, C{stream}, C{recording}).

        @return: kind -> the ids that were paused by this call.
        @raise KeyError: C{(kind, id)} for an id the session does not have.
        @raise OrderRefused: the session is ending or ended.
        """
        return self._pause_or_resume(outputs.PauseOrdered, targets)

    def resume(self, targets: dict[str, list[str]] | None) -> dict[str, list[str]]:
        """
        SPEC s10: resume; see L{pause}.

        @return: kind -> the ids that were resumed by this call.
        """
        return self._pause_or_resume(outputs.ResumeOrdered, targets)

    def _pause_or_resume(self, fact: type[Input], targets: dict[str, list[str]] | None) -> dict[str, list[str]]:
        def flags() -> dict[tuple[str, str], bool]:
            found = {("forward", k): v.paused for k, v in self.call.forwards.items()}
            found.update({(v.kind, k): v.paused for k, v in self.call.outputs.items()})
            return found

        before = flags()
        frozen = None if targets is None else {k: tuple(v) for k, v in targets.items()}
        self.feed(fact(now=self.now(), targets=frozen))
        changed: dict[str, list[str]] = {kind: [] for kind in outputs.PAUSE_KINDS}
        for (kind, output_id), paused in flags().items():
            if before.get((kind, output_id)) is not None and before[(kind, output_id)] != paused:
                changed[kind].append(output_id)
        return changed

    def output_stats(self, output_id: str) -> dict[str, Any] | None:
        """
        A stream's or recording's counters, or L{None} without a leg.
        """
        leg = self.output_legs.get(output_id)
        if leg is None:
            return None
        try:
            return leg.stats()
        except Exception:
            return None

    # -- what output legs report (aiconnect.legs.OutputObserver) ---------------------

    def output_started(self, output_id: str, detail: Any) -> None:
        """
        See L{aiconnect.legs.OutputObserver.output_started}.
        """
        self.report(outputs.OutputStarted, output_id=output_id, detail=dict(detail))

    def output_failed(self, output_id: str, reason: str) -> None:
        """
        See L{aiconnect.legs.OutputObserver.output_failed}.
        """
        self.report(outputs.OutputFailed, output_id=output_id, reason=reason)

    def output_stopped(self, output_id: str, stopped_by: str, detail: Any) -> None:
        """
        See L{aiconnect.legs.OutputObserver.output_stopped}.
        """
        self.report(outputs.OutputStopped, output_id=output_id, stopped_by=stopped_by, detail=dict(detail))

    def output_uploaded(self, output_id: str, url: str, status: Any) -> None:
        """
        See L{aiconnect.legs.OutputObserver.output_uploaded}.
        """
        self.report(outputs.OutputUploaded, output_id=output_id, url=url, status=status)

    # -- output ----------------------------------------------------------------------

    def perform(self, actions: list[Action]) -> None:
        """
        Carry out the Call's actions in order.
        """
        for action in actions:
            if isinstance(action, Emit):
                self._emit(action.event)
            elif isinstance(action, StartForward):
                self._start_forward(action)
            elif isinstance(action, StopForward):
                self._stop_forward(action)
            elif isinstance(action, UpdateForward):
                self._update_forward(action)
            elif isinstance(action, ByeInbound):
                self._bye_inbound()
            elif isinstance(action, (call_mandatory.AnswerInbound, call_mandatory.RejectInbound)):
                self._answer_inbound(action)
            elif isinstance(action, CloseMedia):
                self._close_media()
            elif isinstance(action, Finished):
                self._finished()
            elif isinstance(action, outputs.StartOutput):
                self._start_output(action)
            elif isinstance(action, outputs.StopOutput):
                self._stop_output(action)
            elif isinstance(action, outputs.PauseOutput):
                self._pause_output(action)
            else:  # pragma: no cover - a new action without a branch here
                raise TypeError("unknown action %r" % (action,))

    def _emit(self, event: events.Event) -> None:
        try:
            self.sink.emit(event.tenant, event.session_id, event.to_json())
        except Exception:
            self.log.failure("event sink failed session_id={session_id}", session_id=self.call.session_id)
        if isinstance(event, events.SiprecForwardFailed):
            self.metrics.count_forward_failure(event.reason, event.status, event.tenant)
        self._log_event(event)
        journal = self.journal
        if journal is None:
            return
        # After the event it matches is emitted: a node killed in between
        # sends that event again on restart (at-least-once), never none.
        try:
            if isinstance(event, events.SessionStarted):
                journal.session_started(self)
            elif isinstance(event, (events.SiprecForwardStarted, events.SiprecForwardResumed)):
                # SPEC s13: a re-established forward's new dialog replaces
                # the lost one.
                journal.forward_started(self, event.forward_id)
            elif isinstance(event, (events.SiprecForwardStopped, events.SiprecForwardFailed)):
                # A forward that fails re-establishing had a dialog stored.
                journal.forward_ended(self, event.forward_id)
            elif isinstance(event, events.SessionCompleted):
                journal.session_ended(self)
        except Exception:
            self.log.failure("session journal failed session_id={session_id}", session_id=self.call.session_id)

    def _log_event(self, event: events.Event) -> None:
        """
        One info line per change of the call's state an operator follows
        (L{EVENT_LINES}; docs/operations.md "Logs"), and one per stream's
        or recording's; the fields are also structured (JSON log lines).
        """
        call = self.call
        line = EVENT_LINES.get(type(event))
        if line is not None:
            fields = {
                "session_id": call.session_id,
                "call_id": call.call_id,
                "tenant": event.tenant,
                "src": call.source,
                "target": getattr(event, "target", None) or getattr(event, "uri", None),
            }
            fields.update((name, getattr(event, name, None)) for name in _EVENT_FIELDS)
            self.log.info(
                line, **{k: v for k, v in fields.items() if v is not None or "{" + k in line}
            )
        elif isinstance(event, (events.StreamEvent, events.RecordingEvent)):
            fields = event.fields()
            self.log.info(
                "{event} {output_id} {detail}session_id={session_id}",
                event=event.NAME.lower(),
                output_id=getattr(event, "stream_id", None) or getattr(event, "recording_id", None),
                # A stream's url has no query or credentials; a recording's
                # upload URL may be signed: not logged.
                detail="".join(
                    f"{key}={fields[key]} "
                    for key in ("url", "reason", "stoppedBy")
                    if fields.get(key) is not None and (key != "url" or isinstance(event, events.StreamEvent))
                ),
                session_id=call.session_id,
            )

    def _start_forward(self, action: StartForward) -> None:
        info = self.call.forwards.get(action.forward_id)
        if info is None or info.state is not ForwardState.TRYING:
            # Stale: a fact fed while an earlier action of the same list was
            # carried out ended the session (a mandatory forward failing at
            # once, SPEC s13) and the Call already stopped this forward.
            return
        if self.leg_factory is None:
            self.feed(ForwardFailed(now=self.now(), forward_id=action.forward_id, reason="not implemented"))
            return
        try:
            leg = self.leg_factory(self, action.forward_id, action.order)
            self.legs[action.forward_id] = leg
            if action.paused:
                leg.set_paused(True)
            leg.start()
        except Exception as e:
            self.log.failure("forward start failed session_id={session_id}", session_id=self.call.session_id)
            self.feed(ForwardFailed(now=self.now(), forward_id=action.forward_id, reason="internal error: %s" % (type(e).__name__,)))

    def _start_output(self, action: outputs.StartOutput) -> None:
        if self.output_factory is None:
            self.feed(outputs.OutputFailed(now=self.now(), output_id=action.output_id, reason="not implemented"))
            return
        try:
            leg = self.output_factory(self, action.kind, action.output_id, action.order)
            self.output_legs[action.output_id] = leg
            if action.paused:
                leg.set_paused(True)
            leg.start()
        except Exception as e:
            self.log.failure("{kind} start failed session_id={session_id}", kind=action.kind, session_id=self.call.session_id)
            self.feed(outputs.OutputFailed(now=self.now(), output_id=action.output_id, reason="internal error: %s" % (type(e).__name__,)))

    def _stop_output(self, action: outputs.StopOutput) -> None:
        leg = self.output_legs.get(action.output_id)
        if leg is None:
            self.feed(outputs.OutputStopped(now=self.now(), output_id=action.output_id, stopped_by=action.stopped_by))
            return
        try:
            leg.stop(action.stopped_by)
        except Exception:
            self.log.failure("{kind} stop failed session_id={session_id}", kind=action.kind, session_id=self.call.session_id)
            self.feed(outputs.OutputStopped(now=self.now(), output_id=action.output_id, stopped_by=action.stopped_by))

    def _pause_output(self, action: outputs.PauseOutput) -> None:
        leg: Any = self.legs.get(action.output_id) if action.kind == outputs.FORWARD else self.output_legs.get(action.output_id)
        if leg is None:
            return
        try:
            leg.set_paused(action.paused)
        except Exception:
            self.log.failure("pause failed {kind} {output_id}", kind=action.kind, output_id=action.output_id)

    def _stop_forward(self, action: StopForward) -> None:
        leg = self.legs.get(action.forward_id)
        if leg is None:
            # No leg was made (cannot happen for a TRYING forward): stopped.
            self.feed(ForwardStopped(now=self.now(), forward_id=action.forward_id, stopped_by=action.stopped_by))
            return
        leg.stop(action.stopped_by)

    def _update_forward(self, action: UpdateForward) -> None:
        leg = self.legs.get(action.forward_id)
        if leg is None:
            return
        try:
            leg.inbound_updated(action.media_changed, action.metadata_changed)
        except Exception:
            self.log.failure("forward update failed forward_id={forward_id}", forward_id=action.forward_id)

    def _answer_inbound(self, action: call_mandatory.AnswerInbound | call_mandatory.RejectInbound) -> None:
        answerer = self.answerer
        if answerer is None:
            self.log.warn("no pending INVITE to answer session_id={session_id}", session_id=self.call.session_id)
            return
        self.answerer = None
        try:
            if isinstance(action, call_mandatory.RejectInbound):
                answerer.reject(action.status, action.reason, action.headers)
            else:
                answerer.answer()
        except Exception:
            self.log.failure("answering the SRC failed session_id={session_id}", session_id=self.call.session_id)

    def _bye_inbound(self) -> None:
        inbound = self.inbound
        if inbound is None or inbound.terminated:
            return
        try:
            d = inbound.bye()
        except Exception:
            self.log.failure("BYE to SRC failed")
            return
        # The SRC may be gone (that is often why we end the call): a BYE
        # that times out is expected, not an unhandled error in a Deferred
        # nobody holds.
        if d is not None:
            d.addErrback(self._bye_unanswered)

    def _bye_unanswered(self, failure: Any) -> None:
        self.log.warn(
            "BYE to SRC unanswered session_id={session_id}: {reason}",
            session_id=self.call.session_id,
            reason=failure.getErrorMessage(),
        )

    def _close_media(self) -> None:
        stats = None
        if self.media is not None:
            try:
                stats = self.media.stats()
                self.media.close()
            except Exception:
                self.log.failure("closing media failed")
        self.feed(MediaClosed(now=self.now(), stats=stats))

    def _finished(self) -> None:
        for finisher in self.finishers:
            try:
                finisher.session_finished(self)
            except Exception:
                self.log.failure("session end hook failed session_id={session_id}", session_id=self.call.session_id)
        self._release()

    def _release(self) -> None:
        """
        The session is over and its finishers (the registry's kept copy
        among them) have read it: let go of the collaborators.  Each of
        them points back at this runner, so without this the whole call
        (dialogs, SDP, metadata, media streams) would be freed only by the
        cyclic garbage collector, whose passes over thousands of such calls
        stalled the reactor for hundreds of milliseconds (issue 12).
        """
        self.finishers = []
        self.legs = {}
        self.output_legs = {}
        self.inbound = None
        self.answerer = None
        self.media = None
        self.leg_factory = None
        self.output_factory = None
