# -*- test-case-name: tests.integration.test_forward,tests.siprec.test_forward,tests.siprec.test_forward_failover,tests.integration.test_failover,tests.integration.test_interop -*-
"""
SIPRec forwarding: AI Connect as SRC towards external recorders (RFC 7866,
SPEC s3-s4).

A L{ForwardLeg} is one outbound recording session for one forward order:
it binds RTP ports for the offer, builds the multipart INVITE (SDP with one
C{a=sendonly} stream per inbound stream + RFC 7865 metadata with the order's
overrides), dials the trunk (L{aiconnect.siprec.dialer.Dialer}: RFC 3263,
target after target, digest), connects the relay on 200, and reports facts
to the L{Call}, which owns the policy and the events.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from aiconnect import events
from aiconnect.call import (
    ForwardAnswered,
    ForwardBye,
    ForwardClosed,
    ForwardFailed,
    ForwardReconnecting,
    ForwardResumed,
    ForwardStopped,
    Input,
)
from aiconnect.errors import RemoteSipError
from aiconnect.media.ports import PortsExhausted, add_up_to
from aiconnect.media.srtp import SrtpParams
from aiconnect.sip import sdp as sdp_mod
from aiconnect.sip.message import Request
from aiconnect.sip.multipart import Part, build_multipart, new_boundary
from aiconnect.sip.peer import Peer
from aiconnect.sip.session_timer import SessionTimer, format_session_expires, parse_session_expires
from aiconnect.sip.ua import InviteSession
from aiconnect.sip.uri import host_for_socket, is_ip_address
from aiconnect.siprec import metadata as md_mod
from aiconnect.siprec.body import split_body
from aiconnect.siprec.correlation import copied_headers
from aiconnect.siprec.dialer import DialCancelled, Dialed, DialFailed, Dialer, peer_text, transport_reason
from aiconnect.siprec.forward_rules import RECEIVING, StableIds, answer_directions, held_streams, inbound_sending

SRTP_SUITE = "AES_CM_128_HMAC_SHA1_80"
#: SPEC s13: how many times one forward is re-established after losing its
#: SRS; the next loss fails it.
MAX_RECONNECTS = 10


class Forwarder:
    """
    Makes the L{ForwardLeg}s of calls: the L{aiconnect.legs.LegFactory}
    of every L{aiconnect.runner.CallRunner}.
    """

    log = Logger()

    def __init__(self, reactor: Any, ua: Any, resolver: Any, config: Any, health: Any = None) -> None:
        """
        @param reactor: IReactorTime.
        @param ua: the L{UserAgent}.
        @param resolver: has C{resolve(target, transport) -> Deferred[list[Peer]]}.
        @param config: the whole configuration.
        @param health: the process's L{aiconnect.siprec.health.TargetHealth}
            (SPEC s13: targets that failed are skipped for C{down_for}), or
            L{None}: every target is tried every time.
        """
        self.reactor = reactor
        self.ua = ua
        self.resolver = resolver
        self.config = config
        self.health = health
        self.stats: dict[str, int] = {
            "started": 0,
            "answered": 0,
            "failed": 0,
            "failovers": 0,
            "auth_retries": 0,
            "ring_timeouts": 0,
            "srs_lost": 0,
        }

    def __call__(self, runner: Any, forward_id: str, order: Any) -> ForwardLeg:
        """
        A new leg for one forward of C{runner}'s session; the runner starts
        it.
        """
        self.stats["started"] += 1
        return ForwardLeg(self, runner, forward_id, order)


class ForwardLeg:
    """
    One outbound SIPRec session (see the module docstring).
    """

    log = Logger()

    def __init__(self, forwarder: Forwarder, runner: Any, forward_id: str, order: Any) -> None:
        """
        @param runner: the L{aiconnect.runner.CallRunner} this leg reports
            its facts to; its C{call} is read (streams, metadata, ids) and
            its C{media} gives this leg its ports.
        """
        self.fw = forwarder
        self.runner = runner
        self.call = runner.call
        self.order = order
        self.forward_id = forward_id
        self.media: Any = None
        self.session: InviteSession | None = None
        self.dialer: Dialer | None = None
        self.peer: Peer | None = None
        self.stopping: str | None = None
        self.done = False
        self.keys: list[SrtpParams | None] = []
        self.origin: sdp_mod.Origin | None = None
        self.offer: sdp_mod.SessionDescription | None = None
        self.labels: list[str] = []
        self.inbound_labels: list[str] = []
        self.relay_indices: list[int] = []
        self.body: bytes = b""
        self.content_type = ""
        self.final_stats: dict[str, Any] | None = None
        self._timers: dict[str, Any] = {}
        self._session_timer: SessionTimer | None = None
        #: SPEC s10: the session (or this forward) is paused.
        self.paused = False
        #: Whether the offer the SRS last got said so (a=inactive).
        self.offered_paused = False
        #: SPEC s13: the SRS is lost, a new one is being dialled (why).
        self.lost_reason: str | None = None
        #: How many times this forward was re-established (or tried).
        self.reconnects = 0
        #: Stream index -> whether our last offer carried it (the inbound
        #: stream is there and the SRC sends it, SPEC s13 hold).
        self.active: list[bool] = []
        #: Stream index -> whether the SRS receives it: C{False} once it
        #: made it C{a=inactive} / C{a=sendonly} (SPEC s13).
        self.srs_receives: dict[int, bool] = {}
        #: Our in-dialog requests awaiting their answer (a 408/481 to one
        #: is reported by its own callback, SPEC s13).
        self._requests_out = 0
        #: An inbound update came while re-establishing: re-offer after.
        self._update_pending = False
        #: The metadata ids the SRS knows (kept across offers, SPEC s13).
        self._ids = StableIds(md_mod.new_id)
        #: What L{_apply_sending} last told the media.
        self._held: set[int] = set()
        self._media_paused = False

    # -- set-up ------------------------------------------------------------------

    @property
    def address(self) -> str:
        sip = self.fw.config.sip
        return sip.private_address if self.order.use_private_ip else sip.public_address

    def start(self) -> None:
        """
        Bind ports, build the offer, resolve the trunk and send the INVITE.
        """
        accepted = self._accepted()
        if not accepted:
            self._fail("no inbound stream to forward")
            return
        try:
            self.media = self.runner.media.add_forward(self.forward_id, len(accepted))
        except PortsExhausted:
            self._fail("no RTP ports left")
            return
        except Exception as e:
            self._fail("media: %s" % (e,))
            return
        self.relay_indices = [relay for relay, _ in accepted]
        self.inbound_labels = [label for _, label in accepted]
        try:
            self._build_body(self.inbound_labels)
        except Exception as e:
            self.log.failure("building the forward INVITE failed forward_id={forward_id}", forward_id=self.forward_id)
            self._fail("could not build the INVITE: %s" % (e,))
            return
        d = self._dial()
        d.addCallbacks(self._answered, self._dial_failed)
        d.addErrback(self._bug)

    def _accepted(self) -> list[tuple[int, str]]:
        """
        The inbound streams we accepted, in m-line order: (relay stream
        index, label; the label defaults to the stream's rank from 1).
        """
        streams = [s for s in self.call.streams if s.local_port]
        out = []
        for rank, s in enumerate(streams):
            relay = s.relay_index
            if relay is None:
                relay = self.call.streams.index(s)
            out.append((relay, s.label or str(rank + 1)))
        return out

    def _add_media_streams(self, n: int) -> int:
        """
        Add up to C{n} streams to this forward's media, as many as the port
        range allows (the earlier ones first).

        @return: how many were added.
        """
        try:
            added = add_up_to(self.media.add_streams, n)
        except ValueError:
            return 0  # the forward's media is closed
        if added == n:
            return n
        self.log.warn(
            "no RTP ports to forward {missing} added stream(s) forward_id={forward_id}",
            missing=n - added,
            forward_id=self.forward_id,
        )
        return added

    def _metadata(self, inbound_labels: list[str]) -> md_mod.ForwardedMetadata:
        ids = self._ids.factory()
        inbound = self.call.metadata
        if inbound is None or inbound.is_partial:
            from aiconnect.sip.uri import parse_name_addr

            def aor(header: str) -> str:
                try:
                    return str(parse_name_addr(header).uri)
                except Exception:
                    return md_mod.ANONYMOUS_AOR

            inbound = md_mod.metadata_from_labels(
                inbound_labels, caller_aor=aor(self.call.from_header), called_aor=aor(self.call.to_header), id_factory=ids
            )
        return md_mod.forward_metadata(
            inbound, caller=self.order.caller, called=self.order.called, labels=inbound_labels, id_factory=ids
        )

    def _build_body(self, inbound_labels: list[str], active: list[bool] | None = None) -> None:
        """
        Build the multipart offer: one m-line per forwarded stream, in
        order. A re-offer keeps each stream's SRTP key (a new key only for
        a new stream: packets in flight stay decryptable at the SRS), and a
        stream whose inbound stream is gone is offered C{a=inactive}
        (RFC 7866 s7.1.1.1 pause) until the SRC brings it back.
        """
        fwd_md = self._metadata(inbound_labels)
        self.labels = [fwd_md.labels.get(label, label) for label in inbound_labels]
        streams = []
        old_keys = list(self.keys)
        self.keys = []
        self.offered_paused = self.paused
        self.active = []
        for i, (label, port) in enumerate(zip(self.labels, self.media.local_ports)):
            crypto: tuple[sdp_mod.Crypto, ...] = ()
            key = None
            if self.order.srtp:
                key = old_keys[i] if i < len(old_keys) and old_keys[i] is not None else SrtpParams.generate(SRTP_SUITE)
                crypto = (sdp_mod.Crypto.from_key(1, SRTP_SUITE, key.key),)
            self.keys.append(key)
            self.active.append(active is None or i >= len(active) or active[i])
            direction = "sendonly" if self.active[i] and not self.paused else "inactive"
            streams.append(sdp_mod.OfferStream(label, port, crypto, direction))
        if self.origin is None:
            self.origin = sdp_mod.Origin.new(self.address)
        offer = sdp_mod.build_src_offer(streams, origin=self.origin, address=self.address, codec=self.order.codec)
        if self.offer is not None:
            offer = sdp_mod.next_session_version(self.offer, offer)
        self.origin = offer.origin
        self.offer = offer
        boundary = new_boundary()
        self.body = build_multipart(
            [
                Part((("Content-Type", "application/sdp"),), offer.to_bytes()),
                Part(
                    (
                        ("Content-Type", "application/rs-metadata+xml"),
                        ("Content-Disposition", "recording-session"),
                    ),
                    fwd_md.metadata.to_bytes(),
                ),
            ],
            boundary,
        )
        self.content_type = "multipart/mixed;boundary=" + boundary
        self.metadata = fwd_md.metadata

    def _headers(self) -> list[tuple[str, str]]:
        """
        The extra headers of this forward's INVITEs: siprec, the session
        timer asked for, the order's C{xHeaders} and C{copyHeaders}.
        """
        headers = [("Require", "siprec"), ("Accept", "application/sdp, application/rs-metadata+xml")]
        if self.order.trunk.session_expires:
            # RFC 4028 s7.1: we ask for a session timer and refresh it.
            headers.append(("Session-Expires", format_session_expires(self.order.trunk.session_expires, "uac")))
        return headers + self._order_headers()

    def _order_headers(self) -> list[tuple[str, str]]:
        """
        The order's C{xHeaders} and C{copyHeaders} (SPEC s3, s13): on every
        request of this forward, in the dialog too.
        """
        return list(self.order.x_headers) + copied_headers(self.order.copy_headers, self.call.correlation)

    def _dial(self, avoid: Peer | None = None) -> defer.Deferred[Dialed]:
        """
        Send the INVITE to the trunk's targets, one after the other
        (L{Dialer}); C{avoid} (a lost target) is tried last.
        """
        self.dialer = Dialer(self.fw, self.order.trunk, self.forward_id)
        return self.dialer.dial(
            self.body,
            self.content_type,
            self._headers(),
            from_uri="sip:aiconnect@%s" % (self.call.tenant.domain,),
            private=self.order.use_private_ip,
            avoid=avoid,
        )

    def _dial_failed(self, failure: Failure) -> None:
        if failure.check(DialCancelled):
            self._stopped_before_answer()
            return
        failure.trap(DialFailed)
        e: DialFailed = failure.value
        reason = e.reason if self.lost_reason is None else "SRS lost (%s), no target answered: %s" % (self.lost_reason, e.reason)
        self._fail(reason, status=e.status, target=e.target, targets_tried=e.targets_tried)

    def _answered(self, dialed: Dialed) -> None:
        session = dialed.session
        self.peer = dialed.peer
        self.session = session
        session.handler = self
        session.extra_headers = tuple(self._order_headers())
        self.fw.stats["answered"] += 1
        if self.stopping is not None:
            # Stopped while the INVITE was in flight: BYE at once.
            self._send_bye(self.stopping)
            return
        try:
            self._connect_media(session)
        except Exception as e:
            self.log.failure("forward answer not usable forward_id={forward_id}", forward_id=self.forward_id)
            session.bye()
            self._fail("answer not usable: %s" % (e,))
            return
        assert self.peer is not None
        resumed = self.lost_reason is not None
        self.lost_reason = None
        self._apply_sending()
        if resumed:
            self._report(ForwardResumed, target=dialed.target)
        else:
            self._report(ForwardAnswered, target=dialed.target, codec=self.order.codec, srtp=self.order.srtp)
        self._start_timers(session)
        if self.paused != self.offered_paused or self._update_pending:
            # Paused, resumed or updated while the INVITE was in flight.
            self._update_pending = False
            self._reoffer()

    # -- keep-alive and session timer (SPEC s4, RFC 4028) -------------------------

    def _start_timers(self, session: InviteSession) -> None:
        trunk = self.order.trunk
        if trunk.keepalive:
            self._arm("keepalive", trunk.keepalive, self._keepalive)
        response = session.answer_response
        value = response.headers.get("Session-Expires") if response is not None else None
        if not value:
            return
        try:
            agreed = parse_session_expires(value)
        except RemoteSipError:
            return  # a malformed answer: no session timer, as before
        if agreed.refresher in (None, "uac"):
            # RFC 4028 s7.2: we (the UAC) refresh at half the interval.
            self._session_timer = SessionTimer(agreed.interval, we_refresh=True)
            self._arm("refresh", self._session_timer.delay, self._refresh)

    def _arm(self, name: str, delay: float, fn: Any) -> None:
        old = self._timers.pop(name, None)
        if old is not None and old.active():
            old.cancel()
        self._timers[name] = self.fw.reactor.callLater(delay, fn)

    def _stop_timers(self) -> None:
        for call in self._timers.values():
            if call.active():
                call.cancel()
        self._timers.clear()

    def _in_dialog_probe(self, name: str, method: str, headers: list[tuple[str, str]], again: float) -> None:
        self._timers.pop(name, None)
        if self.done or self.session is None or self.session.terminated:
            return
        session = self.session
        d = self._request(method, headers=headers)

        def answered(response: Any) -> None:
            if self.done or session is not self.session:
                return
            if 200 <= response.status < 300 or (method == "OPTIONS" and response.status not in (408, 481)):
                self._arm(name, again, self._keepalive if name == "keepalive" else self._refresh)
            else:
                self._lost("%s answered %d" % (method, response.status))

        d.addCallbacks(answered, lambda f: self._lost_in(session, "%s: %s" % (method, _failure_text(f))))

    def _request(self, method: str, **kwargs: Any) -> defer.Deferred[Any]:
        """
        Send an in-dialog request, counted while unanswered (see
        L{session_terminated}).
        """
        assert self.session is not None
        self._requests_out += 1

        def answered(result: Any) -> Any:
            self._requests_out -= 1
            return result

        return self.session.request(method, **kwargs).addBoth(answered)

    def _keepalive(self) -> None:
        self._in_dialog_probe("keepalive", "OPTIONS", [], self.order.trunk.keepalive)

    def _refresh(self) -> None:
        timer = self._session_timer
        assert timer is not None
        self._in_dialog_probe(
            "refresh", "UPDATE", [("Session-Expires", format_session_expires(timer.interval, "uac"))], timer.delay
        )

    def _lost_in(self, session: InviteSession | None, reason: str) -> None:
        """
        L{_lost}, when C{session} is still this forward's dialog (a late
        failure of a dialog already given up is not news).
        """
        if session is self.session:
            self._lost(reason)

    def _lost(self, reason: str) -> None:
        """
        SPEC s13: the SRS of this answered forward is lost (transport
        error, 408/481 or timeout to an in-dialog request, keep-alive
        timeout).  No more RTP goes to it; its dialog is ended (BYE, best
        effort) and never used again; the target is marked failed in the
        trunk's health; the trunk's targets are dialled again, the lost
        one last, with the same metadata, labels and m-lines.  One
        re-establishment at a time, at most L{MAX_RECONNECTS}.
        """
        if self.done or self.stopping is not None or self.session is None:
            return
        self.log.warn("forward lost forward_id={forward_id}: {reason}", forward_id=self.forward_id, reason=reason)
        self._stop_timers()
        old, lost_peer = self.session, self.peer
        self.session = None
        self.lost_reason = reason
        self._apply_sending()
        old.handler = None
        if not old.terminated:
            old.bye()
        health = self.fw.health
        if health is not None and lost_peer is not None:
            try:
                health.target_failed(lost_peer, reason, self.order.trunk.down_for)
            except Exception:
                self.log.failure("trunk health failed forward_id={forward_id}", forward_id=self.forward_id)
        self.reconnects += 1
        if self.reconnects > MAX_RECONNECTS:
            self._fail("SRS lost %d times: %s" % (self.reconnects, reason), target=_text(lost_peer))
            return
        self._report(ForwardReconnecting, reason=reason, previous_target=_text(lost_peer))
        if self.done or self.stopping is not None:
            return  # stopped at once (the Call said so)
        self.fw.stats["srs_lost"] += 1
        try:
            self.keys = []  # new SRTP keys for the new SRS
            self._build_body(self.inbound_labels, self._active())
        except Exception as e:
            self.log.failure("building the forward INVITE failed forward_id={forward_id}", forward_id=self.forward_id)
            self._fail("could not build the INVITE: %s" % (e,))
            return
        d = self._dial(avoid=lost_peer)
        d.addCallbacks(self._answered, self._dial_failed)
        d.addErrback(self._bug)

    def _active(self) -> list[bool]:
        """
        Per forwarded stream: whether we send it (L{inbound_sending}).
        """
        return inbound_sending(self.call.streams, self.relay_indices)

    def _apply_sending(self) -> None:
        """
        Send RTP on exactly the streams that should get it: none while the
        SRS is lost; not on a stream the SRS will not receive, nor on one
        offered C{a=inactive} (SPEC s13); the pause on top (SPEC s10).
        Only changes reach the media.
        """
        media = self.media
        if media is None or self.done:
            return
        now = self.fw.reactor.seconds()
        held = held_streams(len(self.relay_indices), self.lost_reason is not None, self.active, self.srs_receives)
        for i in sorted(held ^ self._held):
            media.hold(i, i in held, now)
        self._held = held
        if self.paused != self._media_paused:
            self._media_paused = self.paused
            if self.paused:
                media.pause(now)
            else:
                media.resume(now)

    def _connect_media(self, session: InviteSession) -> None:
        response_body = _sdp_of(session.answer_response) if session.answer_response is not None else None
        answer = sdp_mod.parse_sdp(response_body) if response_body else None
        if answer is None:
            raise ValueError("no SDP answer")
        self._connect_sdp(answer, their_offer=False)

    def _connect_sdp(self, answer: sdp_mod.SessionDescription, their_offer: bool) -> None:
        """
        Connect each stream to the SRS's address and keys in C{answer} (its
        answer, or its own offer), and note whether the SRS receives it:
        its direction, from an offer always, from an answer where we
        offered C{a=sendonly} (an answer to C{a=inactive} is always
        inactive).
        """
        for i, media in enumerate(answer.media):
            if i >= len(self.relay_indices):
                break
            if their_offer or (i < len(self.active) and self.active[i] and not self.offered_paused):
                self.srs_receives[i] = media.direction in RECEIVING
            if media.port == 0 or media.address is None or not is_ip_address(media.address):
                continue
            pt = media.payload_type_for(self.order.codec) or (8 if self.order.codec == "PCMA" else 0)
            srtp_rx = None
            if self.order.srtp:
                offered = sdp_mod.select_crypto(media)
                if offered is None:
                    raise ValueError("SRS answered RTP/AVP to an SRTP offer")
                srtp_rx = SrtpParams.from_key(offered.suite, offered.keys[0])
            self.media.connect(
                i,
                remote=(host_for_socket(media.address), media.port),
                codec=self.order.codec,
                payload_type=pt,
                dtmf_payload_type=media.telephone_event,
                srtp_tx=self.keys[i],
                srtp_rx=srtp_rx,
                source=self.relay_indices[i],
            )

    # -- stopping ----------------------------------------------------------------

    def stop(self, stopped_by: str) -> None:
        """
        Stop the forward: CANCEL before the answer, BYE after
        (SPEC s4), then SIPRECFORWARDSTOPPED.
        """
        if self.done or self.stopping is not None:
            return
        self.stopping = stopped_by
        if self.session is not None:
            self._send_bye(stopped_by)
        elif self.dialer is not None and not self.dialer.deferred.called:
            # CANCEL, or stop resolving: the dial fails with DialCancelled.
            self.dialer.cancel()
        else:
            self._stopped_before_answer()

    def _release_media(self) -> dict[str, Any] | None:
        self._stop_timers()
        if self.final_stats is None and self.media is not None:
            try:
                self.final_stats = self.runner.media.remove_forward(self.forward_id)
            except Exception:
                self.final_stats = None
        return self.final_stats

    def _send_bye(self, stopped_by: str) -> None:
        assert self.session is not None
        stats = self._release_media()
        self.done = True
        d = self.session.bye(headers=())
        self._report(ForwardStopped, stopped_by=stopped_by, stats=stats, awaiting_bye=True)
        d.addBoth(lambda _: self._report(ForwardClosed))

    def _stopped_before_answer(self) -> None:
        if self.done:
            return
        self.done = True
        self._release_media()
        self._report(ForwardStopped, stopped_by=self.stopping or events.STOPPED_BY_API, stats=self.final_stats)

    def _fail(self, reason: str, status: int | None = None, target: str | None = None, targets_tried: tuple[str, ...] = ()) -> None:
        if self.done:
            return
        self.done = True
        self.fw.stats["failed"] += 1
        self._release_media()
        self.log.warn(
            "forward failed forward_id={forward_id} session_id={session_id} reason={reason}",
            forward_id=self.forward_id,
            session_id=self.call.session_id,
            reason=reason,
        )
        self._report(
            ForwardFailed,
            reason=reason,
            status=status,
            target=target,
            targets_tried=targets_tried,
        )

    def _report(self, fact: type[Input], **fields: Any) -> None:
        """
        Tell the runner a fact about this forward (the Call decides).
        """
        self.runner.report(fact, forward_id=self.forward_id, **fields)

    def stats(self) -> dict[str, Any] | None:
        """
        This forward's media counters: live while its ports are bound, the
        final ones after.
        """
        if self.final_stats is not None or self.media is None:
            return self.final_stats
        return self.media.stats()

    def dialog(self) -> InviteSession | None:
        """
        The dialog with the SRS, once answered.
        """
        return self.session

    def _bug(self, failure: Failure) -> None:
        self.log.failure("forward leg bug forward_id={forward_id}", failure, forward_id=self.forward_id)
        if not self.done:
            self._fail("internal error")

    # -- SessionHandler (requests from the SRS) ---------------------------------

    def session_transport_lost(self, session: InviteSession, reason: str) -> None:
        """
        The TCP/TLS connection this forward's dialog uses closed or was
        reset by the SRS's side: the SRS is lost (SPEC s13).
        """
        if session is self.session:
            self._lost(transport_reason(reason))

    def session_request(self, session: InviteSession, tx: Any, request: Request) -> bool:
        """
        re-INVITE (session refresh, or a new offer) and UPDATE from the SRS
        are answered with our current SDP, or, to an offer, with our answer
        (RFC 3264 s6: each stream C{a=sendonly} where the SRS receives it,
        else C{a=inactive}, SPEC s13); OPTIONS and INFO get the UA's 200.
        """
        from aiconnect.sip.message import make_response

        if request.method not in ("INVITE", "UPDATE"):
            return False
        headers = [("Contact", session.contact)]
        body = b""
        their_sdp = _sdp_of(request)
        if their_sdp:
            body = self._answer_offer(sdp_mod.parse_sdp(their_sdp))  # SdpError -> 488 via the UA
            headers.append(("Content-Type", "application/sdp"))
        elif request.method == "INVITE":
            assert self.offer is not None
            body = self.offer.to_bytes()
            headers.append(("Content-Type", "application/sdp"))
        if request.headers.get("Session-Expires"):
            headers.append(("Session-Expires", request.headers.get("Session-Expires") or ""))
        tx.respond(make_response(request, 200, headers=headers, body=body))
        return True

    def session_terminated(self, session: InviteSession, reason: str) -> None:
        """
        The SRS sent BYE: only this forward ends (SPEC s4).  Any other end
        of the dialog (a 408/481 to our request) is a loss (SPEC s13),
        reported by that request's own callback when one is out.
        """
        if self.done or session is not self.session:
            return
        if reason != "bye":
            if not self._requests_out:
                self._lost("dialog ended: %s" % (reason,))
            return
        self.done = True
        stats = self._release_media()
        self._report(ForwardBye, reason=reason, stats=stats)

    # -- inbound changes ------------------------------------------------------------

    def _answer_offer(self, offer: sdp_mod.SessionDescription) -> bytes:
        """
        Take the SRS's own offer (its addresses, keys and directions) and
        build our answer: our last description with each stream's
        direction answered (RFC 3264 s6.1); its RTP follows at once.
        """
        assert self.offer is not None
        self._connect_sdp(offer, their_offer=True)
        ours = answer_directions(self.offer, offer, self.srs_receives, self.active, self.paused)
        answer = sdp_mod.next_session_version(self.offer, ours)
        self.offer = answer
        self._apply_sending()
        return answer.to_bytes()

    def set_paused(self, paused: bool) -> None:
        """
        SPEC s10: no RTP while paused, and the SRS re-INVITEd with
        C{a=inactive} streams (C{a=sendonly} again on resume).  Before the
        answer the offer says so (or a re-INVITE follows the answer).
        """
        if paused == self.paused:
            return
        self.paused = paused
        if self.done or self.session is None or self.stopping is not None:
            return
        self._apply_sending()
        self._reoffer()

    def inbound_updated(self, media_changed: bool, metadata_changed: bool) -> defer.Deferred[Any] | None:
        """
        The inbound session got new metadata or media: re-INVITE the SRS
        with a new offer and the new metadata (SPEC s4).
        """
        return self._reoffer()

    def _reoffer(self) -> defer.Deferred[Any] | None:
        """
        Re-INVITE the SRS with the current streams, metadata and pause.
        """
        if self.done or self.stopping is not None:
            return None
        if self.session is None:
            # Re-establishing (SPEC s13): re-offered once a target answers.
            self._update_pending = self.lost_reason is not None
            return None
        accepted = self._accepted()
        label_of = dict(accepted)
        # The m-lines we offered stay, in order (RFC 3264 s8), each with the
        # label of the inbound stream it carries (kept if that one is gone).
        inbound_labels = [label_of.get(r, old) for r, old in zip(self.relay_indices, self.inbound_labels)]
        new = [(r, label) for r, label in accepted if r not in self.relay_indices]
        if new:
            # The SRC added a recorded stream (RFC 7866 s7.1.1.1): one more
            # sendonly m-line each.  Without ports for one, it is left out
            # of this offer (a later update tries again); the streams
            # already forwarded go on.
            added = self._add_media_streams(len(new))
            for r, label in new[:added]:
                self.relay_indices.append(r)
                inbound_labels.append(label)
        self.inbound_labels = inbound_labels
        try:
            self._build_body(inbound_labels, self._active())
        except Exception:
            self.log.failure("re-offer failed forward_id={forward_id}", forward_id=self.forward_id)
            return None
        self._apply_sending()  # a stream now offered a=inactive gets no RTP
        session = self.session
        d = self._request("INVITE", body=self.body, content_type=self.content_type, headers=[("Require", "siprec")])

        def answered(response: Any) -> Any:
            if session is not self.session or self.done:
                return response
            if response.status in (408, 481):
                self._lost("re-INVITE answered %d" % (response.status,))
            elif 200 <= response.status < 300 and response.body:
                session.answer_response = response
                try:
                    self._connect_media(session)
                except Exception:
                    self.log.failure("re-answer not usable forward_id={forward_id}", forward_id=self.forward_id)
                self._apply_sending()
            return response

        def failed(f: Failure) -> None:
            self.log.warn("re-INVITE to SRS failed: {error}", error=_failure_text(f))
            self._lost_in(session, "re-INVITE: %s" % (_failure_text(f),))

        d.addCallbacks(answered, failed)
        return d


def _text(peer: Peer | None) -> str | None:
    """
    A target as events name it, or L{None}.
    """
    return None if peer is None else peer_text(peer)


def _failure_text(failure: Failure) -> str:
    """
    An in-dialog request's failure, short: C{timeout}, or the transport's
    reason.
    """
    value = failure.value
    reason = getattr(value, "reason", None)
    return reason if isinstance(reason, str) and reason else str(value)


def _sdp_of(response: Any) -> bytes | None:
    """
    The SDP in a response body (bare or in multipart/mixed).
    """
    return split_body(response).sdp
