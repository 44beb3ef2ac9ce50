# -*- test-case-name: tests.integration.test_inbound,tests.integration.test_inbound_admission,tests.integration.test_inbound_reinvite,tests.siprec.test_srs_timers,tests.siprec.test_pending,tests.integration.test_mandatory -*-
"""
The inbound SIPRec user agent: AI Connect as SRS (RFC 7866, SPEC s1).

For each new INVITE: the tenant by Request-URI domain (unknown -> 404), the
allowed source networks (-> 403), the SIPRec checks (C{Require: siprec},
metadata; configurable for non-SIPRec INVITEs and missing metadata), the SDP
offer (-> 488 when nothing is acceptable; at most C{[limits]
max_streams_per_call} streams get ports, the other m-lines port 0), RTP
ports from the relay (-> 503 when exhausted, or when the process is out of
file descriptors), then the C{newCall} callback and, once the application
answered or the callback timed out, 200 OK with C{a=recvonly} per labelled
stream and C{+sip.srs} in Contact. Every exit path releases the ports.
A C{"mandatory": true} forward order holds the 200 OK until that forward
answers, else 503 (SPEC s13; the L{Call} decides, L{PendingInvite} acts).

In the dialog (L{aiconnect.siprec.inbound.InboundSession}): re-INVITE /
UPDATE with new media or new metadata are answered and update the session;
BYE, CANCEL and session timers (RFC 4028) end it through the L{Call}, which
owns the policy.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from aiconnect.call import (
    Call,
    CallLimits,
    CallState,
    InboundAcked,
    InboundAnswered,
    InboundEnded,
    MediaTimeout,
    OrderRefused,
)
from aiconnect.call_mandatory import NewCallDone
from aiconnect.views import new_call_payload
from aiconnect.errors import RemoteSipError
from aiconnect.media.ports import FileDescriptorsExhausted, PortsExhausted
from aiconnect.metrics_recorder import NULL_METRICS, MetricsRecorder
from aiconnect.ratelimit import Admission, InviteRateLimiter, UnconfirmedTable
from aiconnect.text import decode_wire
from aiconnect.runner import CallRunner
from aiconnect.sip import sdp as sdp_mod
from aiconnect.sip.session_timer import MIN_SE
from aiconnect.sip import shed
from aiconnect.sip.message import Request
from aiconnect.sip.uri import SipUri, host_for_socket
from aiconnect.sip.ua import ServerInvite
from aiconnect.siprec.body import split_body
from aiconnect.siprec.correlation import correlation_headers
from aiconnect.siprec.inbound import CODECS, UNDECLARED_DTMF_PT, InboundSession, assign_relay_streams
from aiconnect.siprec.pending import PendingInvite
from aiconnect.outputs.orders import orders_from_answer, parse_recording_order, parse_stream_order
from aiconnect.siprec.orders import OrderError, forward_orders_from_answer, parse_forward_order

# InboundSession, assign_relay_streams, CODECS and UNDECLARED_DTMF_PT live in
# aiconnect.siprec.inbound; they stay importable from here.
__all__ = [
    "CODECS",
    "RATE_RETRY_AFTER",
    "TENANT_FULL_RETRY_AFTER",
    "UNDECLARED_DTMF_PT",
    "InboundSession",
    "SrsService",
    "assign_relay_streams",
    "no_media_error",
    "service_unavailable",
]

#: Retry-After (s) of the 503 to an INVITE over the source's rate (SPEC s12).
RATE_RETRY_AFTER = 10
#: Retry-After (s) of the 503 to an INVITE beyond the tenant's max_sessions.
TENANT_FULL_RETRY_AFTER = 5


def service_unavailable(reason: str, retry_after: int) -> RemoteSipError:
    """
    A 503 with C{Retry-After} (RFC 3261 s21.5.4, s20.33): the SRC may try
    again later, or its next recorder now.
    """
    return RemoteSipError(reason, 503, headers=[("Retry-After", str(retry_after))])


def no_media_error(exc: PortsExhausted) -> RemoteSipError:
    """
    The 503 for an INVITE whose RTP ports could not be set up, with
    C{Retry-After}; the reason phrase names the cause: the port range, or
    the process's file descriptors (the relay logged what to raise).
    """
    if isinstance(exc, FileDescriptorsExhausted):
        return service_unavailable("Out of file descriptors", 5)
    return service_unavailable("No RTP ports left", 5)


class SrsService:
    """
    The L{InviteHandler} of the UA: creates a L{Call} per SIPRec INVITE.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        config: Any,
        registry: Any,
        sink: Any,
        new_call: Any,
        relay: Any,
        forwarder: Any = None,
    ) -> None:
        """
        @param reactor: IReactorTime.
        @param config: the whole L{Config}.
        @param registry: the L{CallRegistry}.
        @param sink: the event sink (the outbox).
        @param new_call: the L{NewCallClient}.
        @param relay: the L{MediaRelay}.
        @param forwarder: starts a forward leg for a call (issue 5), or C{None}.
        """
        self.reactor = reactor
        self.config = config
        self.registry = registry
        self.sink = sink
        self.new_call = new_call
        self.relay = relay
        self.forwarder = forwarder
        #: Makes the legs of streams and recordings
        #: (L{aiconnect.outputs.factory.OutputMaker}), or C{None}.
        self.output_factory: Any = None
        #: The L{aiconnect.call.SessionJournal} given to each call (restart
        #: recovery), or C{None}.
        self.journal: Any = None
        #: Where call setup times and failed forwards are observed
        #: (L{aiconnect.api.metrics.PrometheusMetrics}, from the tap).
        self.metrics: MetricsRecorder = NULL_METRICS
        #: Our Min-SE (RFC 4028 s5): the shortest session interval taken.
        self.min_se = MIN_SE
        self.sdp_address = config.sip.public_address
        self.latch = config.rtp.latch
        self.draining = False
        self.invite_limiter = InviteRateLimiter()
        self.unconfirmed = UnconfirmedTable()
        #: Overload control (L{aiconnect.overload.OverloadService}): its
        #: C{admit()} returns L{None} or the cause of a refusal; L{None}
        #: = none.
        self.overload: Any = None
        #: The last L{screen_invite} refusal, for the request it was about:
        #: (request, the counter of its kind, the 503 to send).
        self._screened: tuple[Request, str, RemoteSipError] | None = None
        #: The stateless answers of L{shed_datagram} (To tags, answers to
        #: retransmissions).
        self.stateless = shed.StatelessAnswers()
        #: The datagram L{shed_datagram} admitted last: its screen is done.
        self._admitted: bytes | None = None
        #: The transaction layer (L{aiconnect.tap}): L{shed_datagram}
        #: leaves the requests of its live transactions to it, and counts
        #: its drops in its C{screened_out}, or L{None}.
        self.txlayer: Any = None
        #: The C{Server} header of our responses (the UA's), for the
        #: stateless ones.
        self.server_header = ""
        self.stats: dict[str, int] = {
            "invites": 0,
            "rejected": 0,
            "answered": 0,
            "cancelled": 0,
            "callback_failures": 0,
            "rate_limited_answered": 0,
            "rate_limited_dropped": 0,
            "tenant_full": 0,
            "unconfirmed_full": 0,
            "forwards_refused_limit": 0,
            "mandatory_rejected": 0,
            "overload_rejected": 0,
            "overload_repeats": 0,
            "overload_acks_absorbed": 0,
        }

    def screen_invite(self, request: Request, source: Any) -> bool:
        """
        The transaction layer's screen (L{TransactionLayer.screen}): asked
        about each new out-of-dialog INVITE before a server transaction
        exists, so before any costly work and before 100 Trying.

        The source's INVITE rate (SPEC s12 C{invite_rate}, like Kamailio's
        C{pike}): within it the INVITE goes on; over it, 503 with
        C{Retry-After: 10} while C{invite_rate_answers} per second allow
        (answered by L{invite_received}, by a server transaction that
        absorbs the retransmissions); beyond that nothing at all is sent
        (C{False}: no transaction, no 100 Trying, no reflection).

        Then overload control (L{aiconnect.overload}): while the node is
        overloaded, an INVITE beyond its admission rate is answered 503
        with C{Retry-After: [limits] overload_retry_after} the same way.

        An INVITE L{shed_datagram} screened before its parse (and
        admitted) is not screened again.

        @return: whether the INVITE gets a server transaction.
        """
        if self._admitted is not None and request.datagram is self._admitted:
            self._admitted = None
            return True
        decision = self._screen(source.host)
        if decision is None:
            return True
        counter, refusal = decision
        if refusal is None:
            # No log line per INVITE of a flood: the counters tell.
            self.stats["invites"] += 1
            self.stats[counter] += 1
            return False
        self._screened = (request, counter, refusal)
        return True

    def _screen(self, host: str) -> tuple[str, RemoteSipError | None] | None:
        """
        The screen's decision on a new INVITE from C{host}: the source's
        INVITE rate, then overload control (L{screen_invite}).

        @return: L{None} to admit it, else the counter of the refusal's
            kind and the 503 to send (L{None}: drop it silently).
        """
        limits = self.config.limits
        verdict = self.invite_limiter.check(host, self.reactor.seconds(), limits.invite_rate, limits.invite_rate_answers)
        if verdict is Admission.DROP:
            return "rate_limited_dropped", None
        if verdict is Admission.ANSWER:
            return "rate_limited_answered", service_unavailable("Service Unavailable (INVITE rate)", RATE_RETRY_AFTER)
        if self.overload is not None and self.overload.admit() is not None:
            # No log line per INVITE: the service logs the overload's
            # start and end, the counters the rest.
            refusal = service_unavailable("Service Unavailable (overload)", limits.overload_retry_after)
            return "overload_rejected", refusal
        return None

    def shed_datagram(self, data: bytes, peer: Any) -> shed.Decision | None:
        """
        The transport's C{shed} hook (L{aiconnect.sip.shed}): while the
        node is overloaded, a new INVITE over UDP is screened before its
        parse, as L{screen_invite} would, and a refused one is answered
        statelessly (no parse, no transaction, counted as
        L{invite_received} counts it); a retransmission of a refused
        INVITE gets the same answer again, the ACK of that answer is
        absorbed. Anything else, and everything while not overloaded, takes
        the full path (L{None}).
        """
        overload = self.overload
        if overload is None or not overload.detector.overloaded:
            return None
        self._admitted = None
        if data.startswith(b"ACK "):
            # Only an ACK naming our marker is read (a dialog's ACK is not).
            ack = shed.scan(data, "ACK") if self.stateless.tag_prefix in data else None
            if ack is None or not self.stateless.acknowledges(ack):
                return None
            self.stats["overload_acks_absorbed"] += 1
            return shed.DROP
        if not data.startswith(b"INVITE ") or len(data) > self.config.sip.max_message_size:
            return None
        head = shed.scan(data, "INVITE")
        if head is None:
            return None
        sent = self.stateless.sent(head, peer.host, peer.port)
        if sent is not None:
            self.stats["overload_repeats"] += 1
            return sent
        txlayer = self.txlayer
        if txlayer is not None and head.server_key() in txlayer.server_transactions:
            return None  # a retransmission of a live INVITE, not octet for octet
        decision = self._screen(peer.host)
        if decision is None:
            self._admitted = data
            return None
        counter, refusal = decision
        self.stats["invites"] += 1
        self.stats[counter] += 1
        if refusal is None:
            if txlayer is not None:
                txlayer.stats["screened_out"] += 1
            return shed.DROP
        headers = refusal.headers + [("Server", self.server_header)] if self.server_header else refusal.headers
        return self.stateless.answer(head, peer.host, peer.port, refusal.status_hint, refusal.reason, headers)

    def _refusal(self, invite: ServerInvite) -> RemoteSipError | None:
        """
        The screen's refusal of C{invite}'s request, if any, counted (the
        service wires the screen, L{aiconnect.tap}).
        """
        screened, self._screened = self._screened, None
        if screened is not None and screened[0] is invite.request:
            self.stats[screened[1]] += 1
            return screened[2]
        return None

    def invite_received(self, invite: ServerInvite) -> None:
        """
        A new INVITE: check, allocate, ask the application, answer.

        Over the source's INVITE rate or while overloaded (see
        L{screen_invite}) it is answered 503 with C{Retry-After} at once.
        Only dialog-creating INVITEs come here: retransmissions are
        absorbed by their server transaction, and in-dialog re-INVITEs go
        to their session.
        """
        request = invite.request
        self.stats["invites"] += 1
        refusal = self._refusal(invite)
        if refusal is not None:
            invite.reject(refusal.status_hint, refusal.reason, headers=refusal.headers)
            return
        try:
            inbound = self._admit(invite)
        except RemoteSipError as e:
            self.stats["rejected"] += 1
            # One line per INVITE (the INVITE rate limit bounds them); a
            # 404 names the domain no tenant has.
            ruri = request.request_uri
            self.log.info(
                "INVITE rejected call_id={call_id} status={status} reason={reason}{domain} from {source}",
                call_id=request.call_id,
                status=e.status_hint,
                reason=e.reason,
                domain=f": unknown tenant domain {getattr(ruri, 'host', ruri)!r}" if e.status_hint == 404 else "",
                source=invite.source.host,
            )
            invite.reject(e.status_hint, e.reason, headers=e.headers)
            return
        self._ask_application(invite, inbound)

    def _admit(self, invite: ServerInvite) -> InboundSession:
        request = invite.request
        if self.draining:
            raise service_unavailable("Shutting down", 30)
        ruri = request.request_uri
        assert isinstance(ruri, SipUri)  # the UA answered 416 otherwise
        tenant = self.config.tenant_for_domain(host_for_socket(ruri.host))
        if tenant is None:
            raise RemoteSipError("Not Found", 404)
        if not tenant.allows_source(invite.source.host):
            raise RemoteSipError("Forbidden", 403)
        cap = self.config.max_sessions_for(tenant)
        if cap and self.registry.live_count(tenant.domain) >= cap:
            self.stats["tenant_full"] += 1
            raise service_unavailable("Service Unavailable (tenant session limit)", TENANT_FULL_RETRY_AFTER)
        if self.unconfirmed.full(invite.source.host, self.config.limits.max_unconfirmed_per_source):
            # Sessions answered but never ACKed (or still waiting for the
            # application) would each hold RTP ports for 64*T1: a source
            # may not pile them up.
            self.stats["unconfirmed_full"] += 1
            raise service_unavailable("Service Unavailable (unconfirmed sessions)", RATE_RETRY_AFTER)
        body = split_body(request)
        siprec = "siprec" in request.headers.tokens("Require") or any(c.has_param("+sip.src") for c in request.contacts)
        if not siprec and body.metadata is None and tenant.non_siprec == "reject":
            raise RemoteSipError("Not Acceptable Here (not a SIPRec session)", 488)
        if siprec and body.metadata is None and tenant.missing_metadata == "reject":
            raise RemoteSipError("Not Acceptable Here (no recording metadata)", 488)
        if body.sdp is None:
            raise RemoteSipError("Not Acceptable Here (an SDP offer is required)", 488)
        offer = sdp_mod.parse_sdp(body.sdp)
        n_accept = sum(1 for m in offer.media if sdp_mod.rejection_reason(m, CODECS) is None)
        if n_accept == 0:
            raise RemoteSipError("Not Acceptable Here (no acceptable audio stream)", 488)
        limits = self.config.limits
        call = Call(
            tenant,
            request.call_id,
            decode_wire(request.headers.get("From") or ""),
            decode_wire(request.headers.get("To") or ""),
            invite.source.host,
            now=self.reactor.seconds(),
            limits=CallLimits(limits.max_forwards_per_call, limits.max_outputs_per_call),
            counters=self.stats,
        )
        call.x_headers = [(n, decode_wire(v)) for n, v in request.headers if n.lower().startswith("x-")]
        call.correlation = correlation_headers((n, decode_wire(v)) for n, v in request.headers)
        runner = CallRunner(
            call,
            self.reactor,
            self.sink,
            leg_factory=self.forwarder,
            journal=self.journal,
            output_factory=self.output_factory,
            metrics=self.metrics,
        )
        try:
            n_alloc = min(n_accept, limits.max_streams_per_call)
            media = self.relay.allocate_session(
                n_alloc, on_timeout=lambda _s: runner.feed(MediaTimeout(now=self.reactor.seconds()))
            )
        except PortsExhausted as exc:
            raise no_media_error(exc) from None
        runner.media = media
        inbound = InboundSession(self, call, media, offer)
        try:
            inbound.apply_metadata(body.metadata, initial=True)
            inbound.apply_offer(offer, initial=True)
            inbound.timer_headers = inbound.negotiate_timer(request)
        except Exception:
            inbound.stop()
            media.close()
            raise
        self.registry.add(runner)
        inbound.unconfirmed = self.unconfirmed.open(invite.source.host)
        inbound.bind(runner)
        # RFC 7866 s6.2: +sip.srs in every Contact of the recording session,
        # the reliable 180 (RFC 3262) included; the UA ends an INVITE whose
        # reliable 180 was never PRACKed (64*T1, RFC 3262 s3).
        invite.feature_tags = ("+sip.srs",)
        invite.on_failed = lambda reason: runner.feed(InboundEnded(now=self.reactor.seconds(), reason="remote-gone"))
        return inbound

    def _ask_application(self, invite: ServerInvite, inbound: InboundSession) -> None:
        call = inbound.call
        runner = inbound.runner
        assert runner is not None
        d = self.new_call.post_new_call(call.tenant, new_call_payload(call), call.tenant.callback_timeout)

        def on_cancel() -> None:
            self.stats["cancelled"] += 1
            d.cancel()
            runner.feed(InboundEnded(now=self.reactor.seconds(), reason="cancel"))

        invite.on_cancel = on_cancel

        def answered(result: Any) -> None:
            if invite.cancelled or invite.answered:
                return
            if not result.ok:
                self.stats["callback_failures"] += 1
                call.new_call_error = result.error
                self.log.warn(
                    "newCall failed session_id={session_id}: {error}; answering anyway",
                    session_id=call.session_id,
                    error=result.error,
                )
            else:
                self._take_orders(runner, result.answer)
            self._answer_when_due(invite, inbound)

        d.addCallback(answered)
        d.addErrback(lambda f: self.log.failure("newCall handling failed", f))

    def _take_orders(self, runner: CallRunner, answer: dict[str, Any]) -> None:
        call = runner.call
        for field, raw in forward_orders_from_answer(answer.get("startSIPRecForward")):
            try:
                order = parse_forward_order(raw, call.tenant, prefix=field)
            except OrderError as e:
                # Never reaches the wire: SIPRECFORWARDFAILED once started;
                # a mandatory one gets the INVITE 503 (SPEC s13).
                mandatory = isinstance(raw, dict) and raw.get("mandatory") is True
                runner.reject_order("invalid order: " + str(e), raw=raw, mandatory=mandatory)
                continue
            try:
                runner.order_forward(order)
            except OrderRefused as refusal:
                # Beyond max_forwards_per_call / max_outputs_per_call:
                # SIPRECFORWARDFAILED reason "limit", no forward (SPEC s12).
                self.log.warn(
                    "forward refused session_id={session_id}: {message}",
                    session_id=call.session_id,
                    message=refusal.message,
                )
                runner.reject_order(refusal.reason, order=order, mandatory=order.mandatory)
        for key, kind, parse in (
            ("startStream", "stream", parse_stream_order),
            ("startRecording", "recording", parse_recording_order),
        ):
            for field, raw in orders_from_answer(answer.get(key), key):
                try:
                    output_order = parse(raw, prefix=field)
                except OrderError as e:
                    runner.reject_output(kind, "invalid order: " + str(e), raw=raw)
                    continue
                try:
                    runner.order_output(kind, output_order)
                except OrderRefused as refusal:
                    self.log.warn(
                        "{kind} refused session_id={session_id}: {message}",
                        kind=kind,
                        session_id=call.session_id,
                        message=refusal.message,
                    )
                    runner.reject_output(kind, refusal.reason, order=output_order)

    def _answer_when_due(self, invite: ServerInvite, inbound: InboundSession) -> None:
        """
        The application's C{newCall} is over: the L{Call} answers the SRC
        now, or once its mandatory forwards answered (SPEC s13), through a
        L{PendingInvite}; at most C{[limits] mandatory_wait} seconds later.
        """
        runner = inbound.runner
        assert runner is not None
        pending = PendingInvite(self.reactor, runner, invite, lambda: self._answer(invite, inbound), self.stats)
        runner.answerer = pending
        runner.finishers.append(pending)
        runner.feed(NewCallDone(now=self.reactor.seconds()))
        if not invite.answered and runner.call.state is CallState.NEGOTIATING:
            pending.hold(self.config.limits.mandatory_wait)

    def _answer(self, invite: ServerInvite, inbound: InboundSession) -> None:
        call = inbound.call
        runner = inbound.runner
        assert runner is not None
        if call.state is not CallState.NEGOTIATING:
            return
        assert inbound.answer is not None
        try:
            session = invite.accept(
                inbound.answer.to_bytes(),
                "application/sdp",
                headers=inbound.timer_headers,
                feature_tags=("+sip.srs",),
            )
        except RemoteSipError as e:
            invite.reject(e.status_hint, e.reason)
            runner.feed(InboundEnded(now=self.reactor.seconds(), reason="local"))
            return
        self.stats["answered"] += 1
        self.metrics.observe_setup(self.reactor.seconds() - call.created, call.tenant.domain, invite.source.transport)
        inbound.session = session
        session.handler = inbound
        runner.inbound = session
        runner.feed(InboundAnswered(now=self.reactor.seconds()))
        session.ack_deferred.addCallback(lambda _ack: runner.feed(InboundAcked(now=self.reactor.seconds())))
        if inbound.unconfirmed is not None:
            session.ack_deferred.addCallback(inbound.unconfirmed.confirm)
        self.log.info(
            "answered session_id={session_id} call_id={call_id} streams={streams}",
            session_id=call.session_id,
            call_id=call.call_id,
            streams=len(call.streams),
        )
