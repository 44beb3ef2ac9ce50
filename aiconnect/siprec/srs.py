# -*- test-case-name: tests.integration.test_inbound,tests.integration.test_inbound_admission,tests.integration.test_inbound_reinvite,tests.siprec.test_srs_timers -*-
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

In the dialog: re-INVITE / UPDATE with new media or new metadata are
answered and update the session; BYE, CANCEL and session timers (RFC 4028)
end it through the L{Call}, which owns the policy.
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
    InboundUpdated,
    MediaTimeout,
    OrderRefused,
    SessionTimerExpired,
    StreamInfo,
)
from aiconnect.call_mandatory import NewCallDone
from aiconnect.views import new_call_payload
from aiconnect.errors import RemoteSipError
from aiconnect.media.ports import FileDescriptorsExhausted, PortsExhausted, add_up_to
from aiconnect.media.srtp import SrtpParams
from aiconnect.ratelimit import Admission, InviteRateLimiter, Unconfirmed, UnconfirmedTable
from aiconnect.text import decode_wire
from aiconnect.runner import CallRunner
from aiconnect.sip import sdp as sdp_mod
from aiconnect.sip.session_timer import MIN_SE, SessionTimer, TimerAction, format_session_expires, negotiate_uas
from aiconnect.sip.message import Request, make_response
from aiconnect.sip.uri import SipUri, host_for_socket, is_ip_address
from aiconnect.sip.ua import InviteSession, ServerInvite
from aiconnect.siprec import metadata as md_mod
from aiconnect.siprec.body import split_body
from aiconnect.siprec.correlation import correlation_headers
from aiconnect.siprec.pending import PendingInvite
from aiconnect.outputs.orders import orders_from_answer, parse_recording_order, parse_stream_order
from aiconnect.siprec.orders import OrderError, forward_orders_from_answer, parse_forward_order

#: Codecs we record: G.711 is relayed as it is; G.722 and Opus, answered
#: only when no G.711 is offered, are decoded to PCM (docs/media.md
#: "Codecs").
CODECS = ("PCMU", "PCMA", "G722", "opus")
#: The payload type on which OpenSIPS/rtpengine send DTMF without declaring
#: it: C{telephone-event} unless the offer declares it as something else.
UNDECLARED_DTMF_PT = 101
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


def _payload_map(media: sdp_mod.MediaDescription) -> dict[int, str]:
    # What the relay takes on this stream: G.711 and CN as declared, or the
    # decoded codec we answer when no G.711 is offered; telephone-event at
    # the audio's clock (RFC 4733 s2.1), and on an undeclared 101.
    rtpmap = media.rtpmap
    chosen = sdp_mod.supported_codec(media, CODECS)
    clock = rtpmap[chosen].clock_rate if chosen is not None else 8000
    out: dict[int, str] = {}
    for pt, entry in rtpmap.items():
        enc = entry.encoding.upper()
        if enc in ("PCMU", "PCMA", "CN") and entry.clock_rate == 8000:
            out[pt] = enc
        elif enc == "TELEPHONE-EVENT" and entry.clock_rate in (8000, clock):
            out[pt] = "telephone-event"
    if chosen is not None and rtpmap[chosen].encoding.upper() in ("G722", "OPUS"):
        out[chosen] = "G722" if rtpmap[chosen].encoding.upper() == "G722" else "opus"
    if UNDECLARED_DTMF_PT not in rtpmap:
        out[UNDECLARED_DTMF_PT] = "telephone-event"
    return out


def _remote(media: sdp_mod.MediaDescription) -> tuple[str, int] | None:
    address = media.address
    if address is None or media.port == 0 or not is_ip_address(address):
        return None
    if address in ("0.0.0.0", "::") or media.direction in ("recvonly", "inactive"):
        return None  # RFC 3264 s8.4 hold, or nothing sent to us
    return (host_for_socket(address), media.port)


def _codec(media: sdp_mod.MediaDescription) -> tuple[str | None, int | None]:
    # The codec we answer, named as in CODECS (reported in newCall).
    pt = sdp_mod.supported_codec(media, CODECS)
    if pt is None:
        return None, None
    encoding = media.rtpmap[pt].encoding
    return next(c for c in CODECS if c.lower() == encoding.lower()), pt


class InboundSession:
    """
    The SRS side of one recording session: SDP state and session timer,
    bound to its L{Call}.
    """

    log = Logger()

    def __init__(self, srs: SrsService, call: Call, media: Any, offer: sdp_mod.SessionDescription) -> None:
        """
        @param call: the session's L{Call}; the L{CallRunner} is bound by
            L{bind} once the session is admitted.
        @param media: the relay's L{MediaSession} of the call.
        """
        self.srs = srs
        self.call = call
        self.media = media
        self.runner: CallRunner | None = None
        self.offer = offer
        self.answer: sdp_mod.SessionDescription | None = None
        self.origin = sdp_mod.Origin.new(srs.sdp_address)
        self.stream_map: list[int | None] = []  # m-line index -> relay stream index
        self.ports: list[int] = []
        self.crypto: list[sdp_mod.Crypto | None] = []
        self.session: InviteSession | None = None
        self.timer: SessionTimer | None = None
        self.timer_headers: list[tuple[str, str]] = []
        #: Counts this session as its source's unconfirmed one until ACK.
        self.unconfirmed: Unconfirmed | None = None
        self._timer: Any = None
        self._media_paused = False
        self._media_timeout = 0.0

    def bind(self, runner: CallRunner) -> None:
        """
        The session was admitted: facts go to C{runner} from now on, and
        this session lets go of its timers and its unconfirmed slot when
        the runner says the session ended.
        """
        self.runner = runner
        runner.finishers.append(self)

    def session_finished(self, runner: CallRunner) -> None:
        """
        The session ended: stop the timers, free the unconfirmed slot.
        """
        self.stop()
        if self.unconfirmed is not None:
            self.unconfirmed.confirm()

    def _feed(self, fact: Any) -> None:
        if self.runner is not None:
            self.runner.feed(fact)

    # -- media -------------------------------------------------------------

    def apply_offer(self, offer: sdp_mod.SessionDescription, initial: bool) -> None:
        """
        Configure the relay for an offer and build our answer (first INVITE
        or re-offer). An m-line a re-offer adds takes the port of a stream
        the same offer disables (port 0), else a relay stream added to the
        session for it (RFC 7866 s7.1.1.1, L{assign_relay_streams}); when
        the port range is exhausted that m-line alone is rejected (port 0),
        the re-INVITE still succeeds.

        A session never has more than C{[limits] max_streams_per_call}
        relay streams: acceptable m-lines beyond it, in the first offer or
        added by a re-offer, are answered with port 0 (RFC 3264 s6) and
        get no ports (counted as C{streams_rejected_limit}). A stream that
        timed out alone (silent for C{[rtp] media_timeout}, its ports
        released) gets fresh ports when an offer names it again.
        """
        relay_session = self.media
        n_alloc = len(relay_session.streams) if relay_session is not None else 0
        ports: list[int] = []
        crypto: list[sdp_mod.Crypto | None] = []
        stream_map: list[int | None] = []
        infos: list[StreamInfo] = []
        accepted = [sdp_mod.rejection_reason(m, CODECS) is None for m in offer.media]
        assignment = assign_relay_streams(
            accepted,
            [] if initial else self.stream_map,
            n_alloc,
            limit=self.srs.config.limits.max_streams_per_call,
        )
        limited = sum(1 for ok, i in zip(accepted, assignment) if ok and i is None)
        if limited:
            self.srs.relay.count_rejected_streams(limited)
            self.log.warn(
                "{limited} offered stream(s) over [limits] max_streams_per_call={cap} answered with port 0 session_id={session_id}",
                limited=limited,
                cap=self.srs.config.limits.max_streams_per_call,
                session_id=self.call.session_id,
            )
        wanted = max((i + 1 for i in assignment if i is not None), default=0) - n_alloc
        if wanted > 0 and relay_session is not None:
            n_alloc += self._add_relay_streams(wanted)
        if relay_session is not None:
            relay_session.on_stream_timeout = self._stream_timed_out
        sending = False
        expected: set[int] = set()
        for index, media in enumerate(offer.media):
            relay_index = assignment[index]
            if relay_index is not None and relay_index < n_alloc and not self._reopen(relay_index):
                relay_index = None
            if relay_index is None or relay_index >= n_alloc:
                ports.append(0)
                crypto.append(None)
                stream_map.append(None)
                continue
            stream = relay_session.streams[relay_index]
            srtp_in = None
            our_crypto = None
            if media.is_secure:
                offered = sdp_mod.select_crypto(media)
                assert offered is not None  # rejection_reason checked it
                srtp_in = SrtpParams.from_key(offered.suite, offered.keys[0])
                if index < len(self.crypto) and self.crypto[index] is not None and self.crypto[index].suite == offered.suite and self.crypto[index].tag == offered.tag:
                    our_crypto = self.crypto[index]
                else:
                    ours = SrtpParams.generate(offered.suite)
                    our_crypto = sdp_mod.Crypto.from_key(offered.tag, offered.suite, ours.key)
            remote = _remote(media)
            latch = self.call.source if self.srs.latch else None
            relay_session.set_inbound(
                relay_index,
                remote=None if latch else remote,
                latch_host=latch,
                payload_map=_payload_map(media),
                srtp=srtp_in,
            )
            codec, pt = _codec(media)
            label = media.label
            info = StreamInfo(
                index=index,
                label=label,
                codec=codec,
                payload_type=pt,
                local_port=stream.rtp_port,
                remote=remote,
                direction=media.direction,
                srtp=media.is_secure,
                relay_index=relay_index,
            )
            infos.append(info)
            if media.direction in ("sendonly", "sendrecv") and (remote is not None or latch is not None):
                sending = True
                expected.add(relay_index)
            ports.append(stream.rtp_port)
            crypto.append(our_crypto)
            stream_map.append(relay_index)
        if not any(ports):
            raise RemoteSipError("no acceptable media stream", 488)
        for relay_index in range(n_alloc):
            # Per-stream media timeout only where the SRC sends.
            relay_session.set_expect_media(relay_index, relay_index in expected)
        answer = sdp_mod.build_srs_answer(
            offer,
            origin=self.origin,
            address=self.srs.sdp_address,
            ports=ports,
            codecs=CODECS,
            crypto=crypto,
        )
        if self.answer is not None:
            answer = sdp_mod.next_session_version(self.answer, answer)
        self.origin = answer.origin
        self.answer = answer
        self.offer = offer
        self.ports = ports
        self.crypto = crypto
        self.stream_map = stream_map
        self.call.streams = infos
        self.pause_media_timeout(not sending)
        self.bind_metadata()

    def _reopen(self, relay_index: int) -> bool:
        """
        Make sure a relay stream an offer names has ports: one that timed
        out alone gets fresh ones (L{MediaSession.reopen_stream}).

        @return: C{False} when that failed (the m-line gets port 0).
        """
        media = self.media
        if not media.streams[relay_index].ended:
            return True
        try:
            media.reopen_stream(relay_index)
        except PortsExhausted as e:
            self.log.warn(
                "no RTP ports to reopen stream {index} session_id={session_id}: {error}",
                index=relay_index,
                session_id=self.call.session_id,
                error=e,
            )
            return False
        return True

    def _stream_timed_out(self, media: Any, stream: Any) -> None:
        """
        The relay closed one stream that was silent for the media timeout
        while others still carry media (its ports are free now).
        """
        self.log.info(
            "RTP stream {index} silent for {timeout}s: closed, port {port} released session_id={session_id}",
            index=stream.index,
            timeout=media.media_timeout,
            port=stream.rtp_port,
            session_id=self.call.session_id,
        )

    def _add_relay_streams(self, n: int) -> int:
        """
        Add up to C{n} relay streams for m-lines a re-offer added; as many
        as the port range allows.

        @return: how many were added.
        """
        added = add_up_to(self.media.add_streams, n)
        if added == n:
            return n
        self.log.warn(
            "no RTP ports for {missing} added stream(s) session_id={session_id}",
            missing=n - added,
            session_id=self.call.session_id,
        )
        return added

    def pause_media_timeout(self, paused: bool) -> None:
        """
        Turn the media timeout off while the SRC sends nothing (every
        stream C{a=inactive}/C{a=recvonly} or C{c=0.0.0.0}: hold, RFC 3264
        s8.4, or a paused recording, RFC 7866 s7.1.1.1), and back on, with
        the silence counted afresh, when it resumes.

        Without this a hold longer than C{[rtp] media_timeout} ended the
        recording with BYE ("mediaTimeout"), and on resuming after a long
        hold the silence of the hold counted at the next relay tick.
        """
        media = self.media
        if media is None or paused == self._media_paused:
            return
        self._media_paused = paused
        if paused:
            self._media_timeout = media.media_timeout
            media.set_media_timeout(0)
            return
        media.resume_media_timeout(self._media_timeout)

    def bind_metadata(self) -> None:
        """
        Associate metadata streams and participants with the SDP labels.
        """
        md = self.call.metadata
        if md is None:
            return
        for info in self.call.streams:
            if info.label is None:
                continue
            stream = md.stream_by_label(info.label)
            if stream is None:
                continue
            info.stream_id = stream.stream_id
            info.participants = [p.name or p.aor or p.participant_id for p in md.senders(stream.stream_id)]

    def apply_metadata(self, data: bytes | None, initial: bool) -> None:
        """
        Parse a metadata document (complete snapshot or partial update,
        RFC 7865 s8) into the call; a bad document is reported, not fatal.
        """
        if data is None:
            if initial:
                self.call.metadata_error = "missing"
            return
        try:
            doc = md_mod.parse_metadata(data)
        except RemoteSipError as e:
            self.call.metadata_error = e.reason
            self.log.warn(
                "bad recording metadata session_id={session_id}: {reason}",
                session_id=self.call.session_id,
                reason=e.reason,
            )
            return
        self.call.metadata = md_mod.apply_update(self.call.metadata, doc)
        self.call.metadata_error = None
        self.bind_metadata()

    # -- session timer (RFC 4028) ---------------------------------------------

    def negotiate_timer(self, request: Request) -> list[tuple[str, str]]:
        """
        Headers of our 2xx for the session timer the SRC asked for (RFC
        4028 s9, L{negotiate_uas}); (re-)arms ours.

        @raise RemoteSipError: 400 for a bad C{Session-Expires}, 422 when
            the interval is below our Min-SE.
        """
        uac_supports = "timer" in request.headers.tokens("Supported") or "timer" in request.headers.tokens("Require")
        agreed = negotiate_uas(request.headers.get("Session-Expires"), uac_supports, self.srs.min_se)
        if agreed is None:
            self.timer = None
            self._cancel_timer()
            return []
        # RFC 4028 s10: as refresher (uas) we refresh at half the interval
        # with UPDATE; else we BYE before the interval ends.
        self.timer = SessionTimer(agreed.interval, we_refresh=agreed.refresher == "uas")
        self._arm_timer()
        return list(agreed.headers)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _arm_timer(self) -> None:
        self._cancel_timer()
        if self.timer is None:
            return
        self._timer = self.srs.reactor.callLater(self.timer.delay, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        timer = self.timer
        if timer is None:
            return
        if timer.action is TimerAction.EXPIRE:
            self.log.warn("session timer expired session_id={session_id}", session_id=self.call.session_id)
            self._feed(SessionTimerExpired(now=self.srs.reactor.seconds()))
            return
        session = self.session
        if session is None or session.terminated:
            return
        d = session.request(
            "UPDATE",
            headers=[("Session-Expires", format_session_expires(timer.interval, "uas")), ("Supported", "timer")],
        )

        def done(response: Any) -> None:
            if 200 <= response.status < 300:
                self._arm_timer()
            else:
                self._feed(SessionTimerExpired(now=self.srs.reactor.seconds()))

        d.addCallbacks(done, lambda f: self._feed(SessionTimerExpired(now=self.srs.reactor.seconds())))

    def stop(self) -> None:
        """
        Stop timers (the call ended).
        """
        self._cancel_timer()

    # -- SessionHandler ----------------------------------------------------------

    def session_request(self, session: InviteSession, tx: Any, request: Request) -> bool:
        """
        In-dialog re-INVITE / UPDATE: new media and/or new metadata.
        """
        if request.method not in ("INVITE", "UPDATE"):
            return False
        body = split_body(request)
        if body.metadata is not None:
            self.apply_metadata(body.metadata, initial=False)
        headers: list[tuple[str, str]] = [("Contact", session.contact)]
        try:
            headers.extend(self.negotiate_timer(request))
        except RemoteSipError as e:
            extra = e.headers
            tx.respond(make_response(request, e.status_hint, e.reason, headers=extra))
            return True
        answer_body = b""
        if body.sdp is not None:
            offer = sdp_mod.parse_sdp(body.sdp)  # SdpError -> 488 via the UA
            self.apply_offer(offer, initial=False)
            assert self.answer is not None
            answer_body = self.answer.to_bytes()
        elif request.method == "INVITE" and self.answer is not None:
            # An offerless re-INVITE (or metadata-only): our 2xx carries an
            # offer, the same session version (RFC 3264 s8).
            answer_body = self.answer.to_bytes()
        if answer_body:
            headers.append(("Content-Type", "application/sdp"))
        tx.respond(make_response(request, 200, headers=headers + [("Supported", "siprec, timer")], body=answer_body))
        if body.sdp is not None or body.metadata is not None:
            self._feed(
                InboundUpdated(
                    now=self.srs.reactor.seconds(),
                    media_changed=body.sdp is not None,
                    metadata_changed=body.metadata is not None,
                )
            )
        self.log.info(
            "session updated session_id={session_id} method={method} media={media} metadata={metadata}",
            session_id=self.call.session_id,
            method=request.method,
            media=body.sdp is not None,
            metadata=body.metadata is not None,
        )
        return True

    def session_terminated(self, session: InviteSession, reason: str) -> None:
        """
        The inbound dialog ended.
        """
        self.stop()
        self._feed(InboundEnded(now=self.srs.reactor.seconds(), reason=reason))


def assign_relay_streams(
    accepted: list[bool], old_map: list[int | None], n_alloc: int, limit: int | None = None
) -> list[int | None]:
    """
    The relay stream (our port) of each m-line of an offer.

    An accepted m-line keeps the relay stream it had (C{old_map}, by m-line
    index; empty for the first offer); the other accepted m-lines take, in
    order, the lowest relay streams no m-line keeps, including those of
    m-lines this offer disables (RFC 7866 s7.1.1.1: a stream is removed
    with port 0 and another added in the same offer). Accepted m-lines
    left over get the indices C{n_alloc}, C{n_alloc + 1}, ... in order:
    relay streams the caller adds to the session, or rejects (port 0) when
    the port range cannot hold them. With C{limit}, no index reaches it:
    accepted m-lines left over then get C{None} (port 0: the per-session
    stream limit, SPEC s12).

    (This replaces a one-pass search that counted the relay streams of the
    m-lines the offer disables as still in use, so the added stream was
    rejected although its port was free.)

    @param accepted: per offered m-line, whether we would accept it.
    @param old_map: m-line index -> relay stream index, from the last offer.
    @param n_alloc: the number of relay streams of the session.
    @param limit: the most relay streams a session may have, or C{None}.
    """
    out: list[int | None] = [None] * len(accepted)
    for index, ok in enumerate(accepted):
        if ok and index < len(old_map) and old_map[index] is not None:
            out[index] = old_map[index]
    used = {i for i in out if i is not None}
    free = [i for i in range(n_alloc) if i not in used]
    extra = n_alloc
    for index, ok in enumerate(accepted):
        if ok and out[index] is None:
            if free:
                out[index] = free.pop(0)
            elif limit is None or extra < limit:
                out[index] = extra
                extra += 1
    return out


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
        #: Our Min-SE (RFC 4028 s5): the shortest session interval taken.
        self.min_se = MIN_SE
        self.sdp_address = config.sip.public_address
        self.latch = config.rtp.latch
        self.draining = False
        self.invite_limiter = InviteRateLimiter()
        self.unconfirmed = UnconfirmedTable()
        #: The last L{screen_invite} verdict, for the request it was about.
        self._screened: tuple[Request, Admission] | None = None
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

        @return: whether the INVITE gets a server transaction.
        """
        limits = self.config.limits
        verdict = self.invite_limiter.check(
            source.host, self.reactor.seconds(), limits.invite_rate, limits.invite_rate_answers
        )
        if verdict is Admission.DROP:
            # No log line per INVITE of a flood: the counters tell.
            self.stats["invites"] += 1
            self.stats["rate_limited_dropped"] += 1
            return False
        self._screened = (request, verdict)
        return True

    def _verdict(self, invite: ServerInvite) -> Admission:
        """
        The screen's verdict on C{invite}'s request; L{Admission.ACCEPT}
        when no screen ran (the service wires it, L{aiconnect.tap}).
        """
        screened, self._screened = self._screened, None
        if screened is not None and screened[0] is invite.request:
            return screened[1]
        return Admission.ACCEPT

    def invite_received(self, invite: ServerInvite) -> None:
        """
        A new INVITE: check, allocate, ask the application, answer.

        Over the source's INVITE rate (see L{screen_invite}) it is
        answered 503 with C{Retry-After: 10}. Only dialog-creating INVITEs
        come here: retransmissions are absorbed by their server
        transaction, and in-dialog re-INVITEs go to their session.
        """
        request = invite.request
        self.stats["invites"] += 1
        if self._verdict(invite) is Admission.ANSWER:
            self.stats["rate_limited_answered"] += 1
            invite.reject(503, "Service Unavailable (INVITE rate)", headers=[("Retry-After", str(RATE_RETRY_AFTER))])
            return
        try:
            inbound = self._admit(invite)
        except RemoteSipError as e:
            self.stats["rejected"] += 1
            self.log.info(
                "INVITE rejected call_id={call_id} status={status} reason={reason}",
                call_id=request.call_id,
                status=e.status_hint,
                reason=e.reason,
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
