# -*- test-case-name: tests.test_call_limits,tests.integration.test_inbound,tests.integration.test_hardening_admission -*-
"""
The L{Call} aggregate: one recording session, the only owner of call policy
(STYLE s2 "The Call object").

The SIP and media layers report facts (answered, ACKed, BYE, media timeout,
forward answered/failed); the Call decides what follows and emits each event
exactly once. A webhook failure never changes call state.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from twisted.logger import Logger

from aiconnect import events
from aiconnect.config import LimitsConfig
from aiconnect.errors import AiconnectError


class CallState(enum.Enum):
    """
    NEGOTIATING -> ACTIVE -> TERMINATING -> ENDED (STYLE s2).
    """

    NEGOTIATING = "negotiating"
    ACTIVE = "active"
    TERMINATING = "terminating"
    ENDED = "ended"


class EventSink(Protocol):
    """
    Where events go: the durable outbox in production, a list in tests.
    """

    def emit(self, tenant: str, session_id: str, payload: Any) -> Any:
        """
        Store an event for delivery; return at once, never raise.
        """


class SessionJournal(Protocol):
    """
    Keeps what a restarted node needs to end the sessions its previous run
    left open (SPEC s14): the confirmed dialogs of each live session.
    Implemented by L{aiconnect.recovery.DialogJournal}; never raises.
    """

    def session_started(self, call: Call) -> None:
        """
        The inbound dialog is confirmed (ACKed): store it.
        """

    def forward_started(self, call: Call, info: ForwardInfo) -> None:
        """
        A forward's dialog is confirmed (2xx, ACKed): store it.
        """

    def forward_ended(self, call: Call, forward_id: str) -> None:
        """
        A forward ended (SIPRECFORWARDSTOPPED emitted): forget its dialog.
        """

    def session_ended(self, call: Call) -> None:
        """
        The session completed (SESSIONCOMPLETED emitted): forget it.
        """


class ListSink:
    """
    An L{EventSink} that keeps events in a list (tests).
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, tenant: str, session_id: str, payload: Any) -> str:
        self.events.append(dict(payload))
        return str(payload.get("eventId"))

    def names(self) -> list[str]:
        """
        The event names in order.
        """
        return [e["event"] for e in self.events]


def new_session_id() -> str:
    """
    A fresh, unguessable session id.
    """
    return "ses_" + secrets.token_hex(12)


def new_forward_id() -> str:
    """
    A fresh forward id.
    """
    return "fwd_" + secrets.token_hex(8)


#: L{OrderRefused.reason} when the session is ending or ended.
REFUSED_ENDED = "session ended"
#: L{OrderRefused.reason} when a per-call limit is reached (SPEC s12); also
#: the C{reason} of the C{SIPRECFORWARDFAILED} of a newCall order refused so.
REFUSED_LIMIT = "limit"

#: Forward states that hold an output slot: ordered and not yet stopped or
#: failed (SPEC s12). C{stopping} already had its SIPRECFORWARDSTOPPED.
_LIVE_FORWARD_STATES = frozenset(("pending", "trying", "active"))

#: Output kind -> the C{[limits]} key capping that kind alone; every kind
#: also counts towards C{max_outputs_per_call}.
_KIND_LIMITS = {"forward": "max_forwards_per_call"}


class OrderRefused(AiconnectError):
    """
    The L{Call} refuses a new output order: the session is ending or ended,
    or a per-call limit is reached (SPEC s12). The REST API answers 409
    with C{message}; a newCall order is reported as C{SIPRECFORWARDFAILED}
    with C{reason}.

    @ivar reason: L{REFUSED_ENDED} or L{REFUSED_LIMIT}.
    @ivar message: one line for the client, naming the limit.
    @ivar limit: the C{[limits]} key reached, or L{None}.
    """

    def __init__(self, reason: str, message: str, limit: str | None = None) -> None:
        super().__init__(reason, message, limit)
        self.reason = reason
        self.message = message
        self.limit = limit

    def __str__(self) -> str:
        return self.message


@dataclass
class StreamInfo:
    """
    One inbound media stream as negotiated.

    @ivar index: the m-line index in the offer.
    @ivar label: the C{a=label} (RFC 4574), or C{None}.
    @ivar stream_id: the metadata stream id bound to the label, or C{None}.
    @ivar codec: the codec name the SRC sends (PCMU, PCMA), or C{None}.
    @ivar payload_type: its payload type.
    @ivar local_port: our RTP port, 0 for a rejected stream.
    @ivar remote: the SRC's (address, port) from the SDP, or C{None}.
    @ivar direction: the SRC's direction attribute.
    @ivar srtp: whether the stream is SRTP.
    @ivar participants: the metadata participants sending on this stream.
    @ivar relay_index: the relay stream (L{MediaSession.streams} index)
        carrying it, or C{None} when unknown (then its position among the
        accepted streams is assumed).
    """

    index: int
    label: str | None
    codec: str | None
    payload_type: int | None
    local_port: int
    remote: tuple[str, int] | None
    direction: str
    srtp: bool = False
    stream_id: str | None = None
    participants: list[str] = field(default_factory=list)
    relay_index: int | None = None


@dataclass
class ForwardInfo:
    """
    What the Call knows of one forward.
    """

    forward_id: str
    order: Any
    state: str = "pending"  # pending, trying, active, stopping, stopped, failed
    target: str | None = None
    leg: Any = None
    stopped_by: str | None = None
    #: the SIPRECFORWARDFAILED reason of an order refused before it started
    #: (invalid, or over a limit), reported once the session is active.
    error: str | None = None
    raw: Any = None

    @property
    def holds_slot(self) -> bool:
        """
        Whether this forward counts towards the per-call limits: ordered
        (and accepted) and not yet stopped or failed (SPEC s12).
        """
        return self.error is None and self.state in _LIVE_FORWARD_STATES


class Call:
    """
    One recording session.

    @ivar session_id: our id, used by the API and events.
    @ivar tenant: the L{TenantConfig}.
    @ivar call_id: the inbound Call-ID.
    @ivar state: the L{CallState}.
    @ivar streams: the inbound L{StreamInfo}s.
    @ivar metadata: the current RFC 7865 metadata (or C{None}).
    @ivar media: the relay's session handle (or C{None}).
    @ivar inbound: the inbound L{InviteSession}, once answered.
    @ivar forwards: forward id -> L{ForwardInfo}.
    @ivar journal: the L{SessionJournal}, or C{None} (nothing stored).
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        tenant: Any,
        sink: EventSink,
        call_id: str,
        from_header: str,
        to_header: str,
        source: str,
        session_id: str | None = None,
        limits: LimitsConfig | None = None,
        counters: dict[str, int] | None = None,
    ) -> None:
        """
        @param limits: the per-call limits (C{[limits]}); the defaults when
            L{None}.
        @param counters: process-wide counters (the SRS's C{stats}, shown in
            C{/metrics}) this call adds its limit breaches to:
            C{forwards_refused_limit}.
        """
        self._reactor = reactor
        self.limits = limits if limits is not None else LimitsConfig()
        self._counters = counters if counters is not None else {}
        self.session_id = session_id or new_session_id()
        self.tenant = tenant
        self.sink = sink
        self.call_id = call_id
        self.from_header = from_header
        self.to_header = to_header
        self.source = source
        self.state = CallState.NEGOTIATING
        self.created = reactor.seconds()
        self.started: float | None = None
        self.ended: float | None = None
        self.end_reason: str | None = None
        self.streams: list[StreamInfo] = []
        self.metadata: Any = None
        self.metadata_error: str | None = None
        self.media: Any = None
        self.inbound: Any = None
        self.forwards: dict[str, ForwardInfo] = {}
        self.x_headers: list[tuple[str, str]] = []
        self.new_call_error: str | None = None
        self.orders: dict[str, Any] = {}
        self.forwarder: Callable[[Call, ForwardInfo], None] | None = None
        self.on_ended: list[Callable[[Call], None]] = []
        #: Called with (media_changed, metadata_changed) after an inbound
        #: re-INVITE / UPDATE (forward legs re-INVITE their SRS).
        self.on_inbound_update: list[Callable[[bool, bool], Any]] = []
        self.journal: SessionJournal | None = None
        self._final_stats: dict[str, Any] | None = None

    # -- facts from the SIP and media layers -------------------------------

    def answered(self, inbound: Any) -> None:
        """
        We sent 200 OK to the SRC.
        """
        self.inbound = inbound

    def acked(self) -> None:
        """
        The SRC ACKed our 200 OK: the session is up; SESSIONSTARTED, then
        the forwards ordered by the application start (SPEC s2 sequence).
        """
        if self.state is not CallState.NEGOTIATING:
            return
        self.state = CallState.ACTIVE
        self.started = self._reactor.seconds()
        self.log.info("session started session_id={session_id} call_id={call_id}", session_id=self.session_id, call_id=self.call_id)
        self._emit(
            events.session_started(
                self.session_id,
                tenant=self.tenant.domain,
                call_id=self.call_id,
                from_uri=self.from_header,
                to_uri=self.to_header,
                streams=[s.label or str(s.index) for s in self.streams],
                new_call_error=self.new_call_error,
            )
        )
        self._journal("session_started", self)
        for info in list(self.forwards.values()):
            if info.state == "pending":
                self._launch(info)

    def media_timeout(self) -> None:
        """
        The relay saw no RTP on any inbound stream for too long.
        """
        self.terminate(events.COMPLETED_MEDIA_TIMEOUT, send_bye=True)

    def inbound_ended(self, reason: str) -> None:
        """
        The inbound dialog ended (BYE from the SRC, CANCEL, ACK timeout...).
        """
        mapping = {
            "bye": events.COMPLETED_INBOUND_BYE,
            "cancel": events.COMPLETED_CANCEL,
            "ack-timeout": events.COMPLETED_ERROR,
            "remote-gone": events.COMPLETED_ERROR,
            "local": events.COMPLETED_ERROR,
        }
        self.terminate(mapping.get(reason, reason), send_bye=False)

    def inbound_updated(self, media_changed: bool, metadata_changed: bool) -> None:
        """
        The SRC sent new media and/or metadata in the dialog.
        """
        if self.state is not CallState.ACTIVE:
            return
        for cb in list(self.on_inbound_update):
            try:
                cb(media_changed, metadata_changed)
            except Exception:
                self.log.failure("inbound update hook failed")

    # -- orders from the application ---------------------------------------

    def live_outputs(self) -> dict[str, int]:
        """
        The outputs of this session that are ordered and not yet stopped or
        failed, by kind: the one count behind C{max_forwards_per_call} and
        C{max_outputs_per_call} (SPEC s12). Streams and recordings add
        their kinds here.
        """
        return {"forward": sum(1 for info in self.forwards.values() if info.holds_slot)}

    def order_refusal(self, kind: str) -> OrderRefused | None:
        """
        Whether a new output of C{kind} may be ordered now: the one place
        deciding it, for the REST API and the newCall answer alike.

        @param kind: C{"forward"} (later C{"stream"}, C{"recording"}).
        @return: L{None} when allowed, else the L{OrderRefused} to report.
        """
        if self.state in (CallState.TERMINATING, CallState.ENDED):
            return OrderRefused(REFUSED_ENDED, "session is %s: no new %s" % (self.state.value, kind))
        live = self.live_outputs()
        checks = [("max_outputs_per_call", sum(live.values()))]
        kind_key = _KIND_LIMITS.get(kind)
        if kind_key is not None:
            checks.insert(0, (kind_key, live.get(kind, 0)))
        for key, count in checks:
            cap = getattr(self.limits, key)
            if count >= cap:
                return OrderRefused(REFUSED_LIMIT, "%s (%d) reached: no new %s" % (key, cap, kind), key)
        return None

    def order_forward(self, order: Any) -> str:
        """
        The application ordered a forward (newCall answer or REST); it starts
        once the session is ACTIVE.

        @return: the forward id.
        @raise OrderRefused: the session is ending or ended, or a per-call
            limit is reached (L{order_refusal}); nothing was ordered.
        """
        refusal = self.order_refusal("forward")
        if refusal is not None:
            if refusal.reason == REFUSED_LIMIT:
                self._counters["forwards_refused_limit"] = self._counters.get("forwards_refused_limit", 0) + 1
            raise refusal
        info = ForwardInfo(new_forward_id(), order)
        self.forwards[info.forward_id] = info
        if self.state is CallState.ACTIVE:
            self._launch(info)
        return info.forward_id

    def order_invalid(self, reason: str, raw: Any) -> str:
        """
        The application's newCall answer held an invalid order: it is
        reported as SIPRECFORWARDFAILED once the session has started, and
        never reaches the wire.

        @return: the forward id given to it.
        """
        return self._order_failed(ForwardInfo(new_forward_id(), None, error="invalid order: " + reason, raw=raw))

    def order_refused(self, order: Any, refusal: OrderRefused) -> str:
        """
        The application's newCall answer held an order the Call refused
        (L{order_refusal}): it is reported as SIPRECFORWARDFAILED with the
        refusal's reason (C{limit}) once the session has started, and no
        forward starts.

        @return: the forward id given to it.
        """
        self.log.warn(
            "forward refused session_id={session_id}: {message}", session_id=self.session_id, message=refusal.message
        )
        return self._order_failed(ForwardInfo(new_forward_id(), order, error=refusal.reason))

    def _order_failed(self, info: ForwardInfo) -> str:
        # Reported once the session is active (L{acked} launches it), never
        # outside SESSIONSTARTED ... SESSIONCOMPLETED.
        self.forwards[info.forward_id] = info
        if self.state is CallState.ACTIVE:
            self._launch(info)
        return info.forward_id

    def _launch(self, info: ForwardInfo) -> None:
        if info.error is not None:
            raw = info.raw if isinstance(info.raw, dict) else {}
            uri = raw.get("uri") if isinstance(raw.get("uri"), str) else ""
            ref = raw.get("sipRecForwardReferenceId") if isinstance(raw.get("sipRecForwardReferenceId"), dict) else None
            self.forward_failed(info.forward_id, info.error, uri=uri, reference_id=ref)
            return
        info.state = "trying"
        if self.forwarder is None:
            self.forward_failed(info.forward_id, "not implemented")
            return
        try:
            self.forwarder(self, info)
        except Exception as e:
            self.log.failure("forward start failed session_id={session_id}", session_id=self.session_id)
            self.forward_failed(info.forward_id, "internal error: %s" % (type(e).__name__,))

    def stop_forwards(self, forward_id: str | None, stopped_by: str) -> list[str]:
        """
        Stop one forward or all (REST C{stopsiprecforward}).

        @return: the ids being stopped.
        @raise KeyError: for an unknown forward id.
        """
        if forward_id is not None:
            targets = [self.forwards[forward_id]]
        else:
            targets = list(self.forwards.values())
        stopped = []
        for info in targets:
            if info.state in ("pending", "trying", "active"):
                stopped.append(info.forward_id)
                self._stop_forward(info, stopped_by)
        return stopped

    def _stop_forward(self, info: ForwardInfo, stopped_by: str) -> None:
        if info.leg is not None and hasattr(info.leg, "stop"):
            info.leg.stop(stopped_by)
            return
        was_active = info.state == "active"
        info.state = "stopped"
        info.stopped_by = stopped_by
        if was_active:
            self.forward_stopped(info.forward_id, stopped_by)

    # -- facts from forward legs -------------------------------------------

    def forward_started(self, forward_id: str, target: str, codec: str, srtp: bool) -> None:
        """
        The SRS answered 200 and we ACKed: SIPRECFORWARDSTARTED.
        """
        info = self.forwards[forward_id]
        info.state = "active"
        info.target = target
        self._emit(
            events.siprec_forward_started(
                self.session_id,
                tenant=self.tenant.domain,
                forward_id=forward_id,
                uri=getattr(info.order, "uri", ""),
                target=target,
                codec=codec,
                srtp=srtp,
                reference_id=getattr(info.order, "reference_id", None),
            )
        )
        self._journal("forward_started", self, info)

    def forward_failed(
        self,
        forward_id: str,
        reason: str,
        status: int | None = None,
        target: str | None = None,
        targets_tried: tuple[str, ...] | list[str] = (),
        uri: str | None = None,
        reference_id: Any = None,
    ) -> None:
        """
        A forward could not be set up: SIPRECFORWARDFAILED. The session and
        the other forwards go on.
        """
        info = self.forwards.get(forward_id)
        if info is not None:
            if info.state in ("failed", "stopped"):
                return
            info.state = "failed"
            uri = uri or getattr(info.order, "uri", "")
            reference_id = reference_id if reference_id is not None else getattr(info.order, "reference_id", None)
        self._emit(
            events.siprec_forward_failed(
                self.session_id,
                tenant=self.tenant.domain,
                forward_id=forward_id,
                uri=uri or "",
                reason=reason,
                status=status,
                target=target,
                targets_tried=tuple(targets_tried),
                reference_id=reference_id,
            )
        )

    def forward_stopped(
        self, forward_id: str, stopped_by: str, stats: dict[str, Any] | None = None, awaiting_bye: bool = False
    ) -> None:
        """
        An active forward ended: SIPRECFORWARDSTOPPED. With C{awaiting_bye}
        our BYE to the SRS is still unanswered: the session completes only
        after L{forward_closed} (SPEC s2: ... BYE to SRS ->
        SIPRECFORWARDSTOPPED -> SRS 200 OK -> SESSIONCOMPLETED).
        """
        info = self.forwards[forward_id]
        info.state = "stopping" if awaiting_bye else "stopped"
        info.stopped_by = stopped_by
        self._emit(
            events.siprec_forward_stopped(
                self.session_id,
                tenant=self.tenant.domain,
                forward_id=forward_id,
                uri=getattr(info.order, "uri", ""),
                target=info.target or "",
                stopped_by=stopped_by,
                reason=stopped_by,
                stats=stats,
                reference_id=getattr(info.order, "reference_id", None),
            )
        )
        self._journal("forward_ended", self, forward_id)
        self._maybe_complete()

    def forward_closed(self, forward_id: str) -> None:
        """
        The SRS answered our BYE (or it timed out).
        """
        info = self.forwards.get(forward_id)
        if info is not None and info.state == "stopping":
            info.state = "stopped"
        self._maybe_complete()

    # -- ending --------------------------------------------------------------

    def terminate(self, reason: str, send_bye: bool = True) -> None:
        """
        End the session (idempotent): BYE the SRC if asked, stop every
        forward (their BYEs and events first), free the ports, then
        SESSIONCOMPLETED once every forward has stopped (SPEC s2 order).
        """
        if self.state in (CallState.TERMINATING, CallState.ENDED):
            return
        self.state = CallState.TERMINATING
        self.end_reason = reason
        self.log.info(
            "session ending session_id={session_id} call_id={call_id} reason={reason}",
            session_id=self.session_id,
            call_id=self.call_id,
            reason=reason,
        )
        if send_bye and self.inbound is not None and not getattr(self.inbound, "terminated", True):
            try:
                d = self.inbound.bye()
            except Exception:
                self.log.failure("BYE to SRC failed")
            else:
                # The SRC may be gone (that is often why we end the call): a
                # BYE that times out is expected, not an unhandled error in
                # a Deferred nobody holds.
                if d is not None and hasattr(d, "addErrback"):
                    d.addErrback(self._bye_unanswered)
        stopped_by = events.STOPPED_BY_INBOUND_BYE if reason == events.COMPLETED_INBOUND_BYE else (
            events.STOPPED_BY_SHUTDOWN if reason == events.COMPLETED_SHUTDOWN else events.STOPPED_BY_ERROR
        )
        for info in list(self.forwards.values()):
            if info.state in ("pending", "trying", "active"):
                self._stop_forward(info, stopped_by)
        self._maybe_complete()

    def _bye_unanswered(self, failure: Any) -> None:
        self.log.warn(
            "BYE to SRC unanswered session_id={session_id}: {reason}",
            session_id=self.session_id,
            reason=failure.getErrorMessage(),
        )

    def _maybe_complete(self) -> None:
        if self.state is not CallState.TERMINATING:
            return
        if any(info.state in ("trying", "active", "stopping") for info in self.forwards.values()):
            return
        self.state = CallState.ENDED
        self.ended = self._reactor.seconds()
        if self.media is not None:
            try:
                self._final_stats = self.media.stats()
                self.media.close()
            except Exception:
                self.log.failure("closing media failed")
        self._emit(
            events.session_completed(
                self.session_id,
                tenant=self.tenant.domain,
                reason=self.end_reason or events.COMPLETED_ERROR,
                duration=round(self.ended - (self.started or self.created), 3),
                stats=self._final_stats,
            )
        )
        self._journal("session_ended", self)
        for cb in self.on_ended:
            try:
                cb(self)
            except Exception:
                self.log.failure("on_ended callback failed")

    def _journal(self, hook: str, *args: Any) -> None:
        # After the event it matches is emitted: a node killed in between
        # sends that event again on restart (at-least-once), never none.
        if self.journal is None:
            return
        try:
            getattr(self.journal, hook)(*args)
        except Exception:
            self.log.failure("session journal failed session_id={session_id}", session_id=self.session_id)

    def _emit(self, payload: dict[str, Any]) -> None:
        try:
            self.sink.emit(self.tenant.domain, self.session_id, payload)
        except Exception:
            self.log.failure("event sink failed session_id={session_id}", session_id=self.session_id)

    # -- views -----------------------------------------------------------------

    def media_stats(self) -> dict[str, Any] | None:
        """
        The relay's counters (live, or final once ended).
        """
        if self._final_stats is not None:
            return self._final_stats
        if self.media is None:
            return None
        try:
            return self.media.stats()
        except Exception:
            return None
