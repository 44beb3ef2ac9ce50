# -*- test-case-name: tests.integration.test_inbound_reinvite,tests.integration.test_inbound_update,tests.integration.test_hardening_media,tests.siprec.test_srs_timers,tests.siprec.test_srs_codecs -*-
"""
The SRS side of one admitted recording session (RFC 7866, SPEC s1): its
SDP state and session timer, bound to its L{Call}.

L{aiconnect.siprec.srs.SrsService} admits the INVITE and creates an
L{InboundSession}; from then on the session configures the relay for each
offer (first INVITE and re-offers, L{assign_relay_streams}) and builds our
answer, parses the metadata, runs the session timer (RFC 4028), and answers
the in-dialog re-INVITE / UPDATE; BYE, CANCEL and an expired timer end it
through the L{Call}, which owns the policy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from aiconnect.call import (
    Call,
    InboundEnded,
    InboundUpdated,
    SessionTimerExpired,
    StreamInfo,
)
from aiconnect.errors import RemoteSipError
from aiconnect.media.ports import PortsExhausted, add_up_to
from aiconnect.media.srtp import SrtpParams
from aiconnect.ratelimit import Unconfirmed
from aiconnect.runner import CallRunner
from aiconnect.sip import sdp as sdp_mod
from aiconnect.sip.session_timer import SessionTimer, TimerAction, format_session_expires, negotiate_uas
from aiconnect.sip.message import Request, make_response
from aiconnect.sip.uri import host_for_socket, is_ip_address
from aiconnect.sip.ua import InviteSession
from aiconnect.siprec import metadata as md_mod
from aiconnect.siprec.body import split_body

if TYPE_CHECKING:
    from aiconnect.siprec.srs import SrsService

#: Codecs we record: G.711 is relayed as it is; G.722 and Opus, answered
#: only when no G.711 is offered, are decoded to PCM (docs/media.md
#: "Codecs").
CODECS = ("PCMU", "PCMA", "G722", "opus")
#: The payload type on which OpenSIPS/rtpengine send DTMF without declaring
#: it: C{telephone-event} unless the offer declares it as something else.
UNDECLARED_DTMF_PT = 101


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
        # A session-timer refresh repeats the offer: logged at debug only.
        changed = body.metadata is not None
        if body.sdp is not None:
            offer = sdp_mod.parse_sdp(body.sdp)  # SdpError -> 488 via the UA
            changed |= offer.media != self.offer.media
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
        (self.log.info if changed else self.log.debug)(
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
