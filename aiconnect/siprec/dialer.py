# -*- test-case-name: tests.integration.test_forward,tests.siprec.test_forward,tests.siprec.test_dialer,tests.siprec.test_forward_failover,tests.integration.test_trunk_health -*-
"""
The L{Dialer}: one INVITE to a trunk, tried target after target until one
answers 2xx (SPEC s4, s13, RFC 3263 s4.3).

It resolves the trunk's target (NAPTR/SRV/A), sends the INVITE to each
target in turn (timeout / 503 / 5xx / transport or TLS failure -> the next
target; 401/407 -> one retry with the trunk's digest credentials; 3xx and
other failures -> failed) and fires its Deferred with the L{Dialed}
answer, or fails with L{DialFailed} (every target failed) or
L{DialCancelled} (L{Dialer.cancel} before the answer).

Each INVITE has the trunk's C{ring_timeout} to be answered (provisional
responses do not stop the clock): then it is CANCELled, counted as
C{ring_timeouts}, and the next target is tried at once (SPEC s13); a 2xx
that still comes is ACKed and BYEd by the UA (RFC 3261 s13.2.2.4).  With a
health registry on the forwarder (L{aiconnect.siprec.health}), the targets
that are down are skipped unless all are, and every outcome is reported
to it.

A L{aiconnect.siprec.forward.ForwardLeg} dials once to start and again to
re-establish a forward whose SRS was lost (SPEC s13).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from aiconnect.errors import AiconnectError
from aiconnect.sip.message import Request
from aiconnect.sip.peer import Peer
from aiconnect.sip.resolver import ResolveError
from aiconnect.sip.ua import InviteFailed, InviteSession
from aiconnect.sip.uri import format_host

__all__ = [
    "FAILOVER",
    "DialCancelled",
    "DialFailed",
    "Dialed",
    "Dialer",
    "authorization",
    "peer_text",
    "request_uri",
    "shows_alive",
]

#: Statuses after which the next target is tried (SPEC s4, RFC 3263 s4.3).
FAILOVER = {408, 500, 502, 503, 504}


def shows_alive(error: InviteFailed) -> bool:
    """
    Whether a failed request still shows its target alive (SPEC s13): any
    response but a 5xx does (3xx, 4xx including 401/407, 6xx); a timeout,
    a 5xx, a transport or TLS failure does not.
    """
    return error.response is not None and not 500 <= error.status < 600


def authorization(response: Any, request: Request, trunk: Any, body: bytes = b"") -> tuple[str, str] | None:
    """
    The credentials header answering a 401/407 to C{request} with the
    trunk's user name and password (RFC 3261 s22.2, s22.3).

    @return: C{(Authorization or Proxy-Authorization, value)}, or L{None}
        when the response carries no challenge.
    @raise Exception: when the challenge cannot be answered (unknown
        algorithm or qop).
    """
    from aiconnect.sip import digest

    header, out = digest.header_names(response.status)
    challenges = response.headers.get_all(header)
    if not challenges:
        return None
    return (out, digest.authorize(challenges, request.method, request.uri, trunk.username, trunk.password, body=body))


def request_uri(trunk: Any, peer: Peer) -> str:
    """
    The Request-URI of a request to a trunk's target: the trunk's match as
    user part at the trunk's host (and explicit port), with C{transport=}
    for TCP and TLS.
    """
    hostport = format_host(trunk.host) + (":%d" % trunk.port if trunk.port else "")
    uri = "sip:%s@%s" % (trunk.match, hostport)
    if peer.transport != "udp":
        uri += ";transport=" + peer.transport
    return uri


def peer_text(peer: Peer) -> str:
    """
    A target as events name it: C{host:port;transport=tcp}.
    """
    return "%s:%d;transport=%s" % (format_host(peer.host), peer.port, peer.transport)


def transport_reason(text: str) -> str:
    """
    A transport failure as reasons name it: C{transport: <text>}, the
    prefix once (the transaction layer's reports already carry it).
    """
    return text if text.startswith("transport: ") else "transport: " + text


@dataclass(frozen=True, slots=True)
class Dialed:
    """
    A target answered 2xx (already ACKed).

    @ivar session: the dialog with the SRS.
    @ivar peer: the target that answered.
    """

    session: InviteSession
    peer: Peer

    @property
    def target(self) -> str:
        """
        The target, as events name it.
        """
        return peer_text(self.peer)


class DialFailed(AiconnectError):
    """
    No target answered.

    @ivar reason: the SIPRECFORWARDFAILED reason (C{SIP 486 Busy Here},
        C{transport: ...}, C{DNS: ...}, C{timeout}).
    @ivar status: the SIP status when there was one (408 for a timeout).
    @ivar target: the last target tried, or L{None}.
    @ivar targets_tried: every target tried, in order.
    """

    def __init__(self, reason: str, status: int | None = None, target: str | None = None, targets_tried: tuple[str, ...] = ()) -> None:
        super().__init__(reason, status, target, targets_tried)
        self.reason = reason
        self.status = status
        self.target = target
        self.targets_tried = targets_tried

    def __str__(self) -> str:
        return self.reason


class DialCancelled(AiconnectError):
    """
    L{Dialer.cancel} ended the dial before an answer.
    """


class Dialer:
    """
    One dial of a trunk (see the module docstring).

    @ivar tried: the targets tried so far, as L{peer_text}.
    @ivar peer: the target of the INVITE in flight (or that answered).
    @ivar invite: the L{aiconnect.sip.ua.ClientInvite} in flight, or
        L{None} after its ring timeout gave it up.
    """

    log = Logger()

    def __init__(self, forwarder: Any, trunk: Any, log_id: str = "") -> None:
        """
        @param forwarder: the L{aiconnect.siprec.forward.Forwarder} (its
            C{ua}, C{resolver}, C{reactor}, C{stats}, and C{health} when it
            has one).
        @param trunk: the L{aiconnect.config.TrunkConfig} dialled.
        @param log_id: names the forward in log lines.
        """
        self.fw = forwarder
        self.trunk = trunk
        self.log_id = log_id
        self.tried: list[str] = []
        self.targets: list[Peer] = []
        self.peer: Peer | None = None
        self.invite: Any = None
        self.cancelled = False
        self.deferred: defer.Deferred[Dialed] = defer.Deferred()
        self._auth_tried = False
        self._body = b""
        self._content_type = ""
        self._headers: list[tuple[str, str]] = []
        self._from_uri = ""
        self._private = False
        self._avoid: Peer | None = None
        self._ring_timer: Any = None

    @property
    def health(self) -> Any:
        """
        The forwarder's L{aiconnect.siprec.health.TargetHealth}, or
        L{None}.
        """
        return self.fw.health

    def dial(
        self,
        body: bytes,
        content_type: str,
        headers: list[tuple[str, str]],
        from_uri: str,
        private: bool = False,
        avoid: Peer | None = None,
    ) -> defer.Deferred[Dialed]:
        """
        Resolve the trunk and try its targets.

        @param body: the INVITE's body (the same to every target).
        @param headers: extra headers of the INVITE (Require, X- ...).
        @param avoid: a target to try last (the one a re-established
            forward lost, SPEC s13).
        @return: L{deferred}.
        """
        self._avoid = avoid
        self._body = body
        self._content_type = content_type
        self._headers = list(headers)
        self._from_uri = from_uri
        self._private = private
        d = self.fw.resolver.resolve(self.trunk.target, self.trunk.transport)
        d.addCallbacks(self._resolved, self._resolve_failed)
        d.addErrback(self._bug)
        return self.deferred

    def cancel(self) -> None:
        """
        Stop before the answer: CANCEL the INVITE in flight (a 2xx that
        crosses it is ACKed and BYEd), or stop resolving.  L{deferred}
        fails with L{DialCancelled}.
        """
        if self.cancelled or self.deferred.called:
            return
        self.cancelled = True
        self._stop_ring_timer()
        if self.invite is not None and not self.invite.deferred.called:
            self.invite.cancel()
        else:
            self._errback(DialCancelled())

    # -- the targets ------------------------------------------------------------

    def _resolve_failed(self, failure: Failure) -> None:
        if self.cancelled:
            self._errback(DialCancelled())
            return
        error = failure.value
        reason = error.reason if isinstance(error, ResolveError) else str(error)
        self._errback(DialFailed("DNS: %s" % (reason,) if not str(reason).startswith("DNS") else str(reason)))

    def _resolved(self, targets: list[Peer]) -> None:
        if self.cancelled:
            self._errback(DialCancelled())
            return
        avoid = self._avoid
        resolved = targets
        if self.health is not None:
            # SPEC s13: targets that failed lately are skipped, unless all did.
            targets = self.health.order(targets)
        self.targets = [t for t in targets if t != avoid]
        if avoid is not None:
            # A forward being re-established (SPEC s13) tries every target
            # before it gives the recording up: those counted down too, and
            # the one it lost last (an SRS that only reset its connection,
            # or came back, may take the recording).
            self.targets += [t for t in resolved if t not in self.targets and t != avoid]
            if avoid in resolved:
                self.targets.append(avoid)
        if not self.targets:
            self._errback(DialFailed("DNS: no target for %s" % (self.trunk.target,)))
            return
        self._next_target()

    def _next_target(
        self,
        call_id: str | None = None,
        cseq: int | None = None,
        from_tag: str | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        if auth is None:
            self.peer = self.targets.pop(0)
            self.tried.append(peer_text(self.peer))
            self._auth_tried = False
        peer = self.peer
        assert peer is not None
        uri = request_uri(self.trunk, peer)
        headers = list(self._headers)
        if auth is not None:
            headers.append(auth)
        self.log.info("forward INVITE forward_id={forward_id} target={target}", forward_id=self.log_id, target=peer_text(peer))
        invite = self.fw.ua.invite(
            uri,
            peer,
            body=self._body,
            content_type=self._content_type,
            from_uri=self._from_uri,
            to_uri=uri,
            headers=headers,
            feature_tags=("+sip.src",),
            private=self._private,
            call_id=call_id,
            cseq=cseq,
            from_tag=from_tag,
        )
        self.invite = invite
        self._start_ring_timer(invite)
        invite.deferred.addCallbacks(self._answered, self._invite_failed, callbackArgs=(invite,), errbackArgs=(invite,))
        invite.deferred.addErrback(self._bug)

    # -- ring timeout (SPEC s13) ---------------------------------------------------

    def _start_ring_timer(self, invite: Any) -> None:
        self._stop_ring_timer()
        timeout = self.trunk.ring_timeout
        if timeout > 0:
            self._ring_timer = self.fw.reactor.callLater(timeout, self._ring_timeout, invite)

    def _stop_ring_timer(self) -> None:
        timer, self._ring_timer = self._ring_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _ring_timeout(self, invite: Any) -> None:
        """
        No final answer within C{ring_timeout}: CANCEL, report the target
        failed, and try the next one at once (SPEC s13).  The given-up
        INVITE's own outcome (487, timeout) is ignored from now on; a 2xx
        it still gets is ACKed and BYEd by the UA.
        """
        self._ring_timer = None
        if invite is not self.invite or invite.deferred.called or self.deferred.called:
            return
        peer = self.peer
        assert peer is not None
        self.invite = None
        invite.cancel()
        self.fw.stats["ring_timeouts"] = self.fw.stats.get("ring_timeouts", 0) + 1
        reason = "ring timeout: no answer in %g s" % (self.trunk.ring_timeout,)
        self._report(peer, reason)
        self.log.info(
            "forward ring timeout forward_id={forward_id} target={target}", forward_id=self.log_id, target=peer_text(peer)
        )
        if self.targets:
            self.fw.stats["failovers"] += 1
            self._next_target()
            return
        self._errback(DialFailed(reason, 408, self.tried[-1] if self.tried else None, tuple(self.tried)))

    def _report(self, peer: Peer, failure: str | None) -> None:
        """
        Tell the health registry (if any) how a target did: C{failure} is
        the reason it failed, or L{None} when it showed itself alive.
        """
        health = self.health
        if health is None:
            return
        if failure is None:
            health.target_answered(peer)
        else:
            health.target_failed(peer, failure, self.trunk.down_for)

    # -- outcomes ----------------------------------------------------------------------

    def _answered(self, session: InviteSession, invite: Any) -> None:
        if invite is not self.invite or self.deferred.called:
            session.bye()
            return
        self._stop_ring_timer()
        assert self.peer is not None
        self._report(self.peer, None)
        self.deferred.callback(Dialed(session, self.peer))

    def _invite_failed(self, failure: Failure, invite: Any) -> None:
        failure.trap(InviteFailed)
        e: InviteFailed = failure.value
        if invite is not self.invite or self.deferred.called:
            # An INVITE we gave up (ring timeout): its 487 or timeout is
            # of no interest any more.
            return
        self._stop_ring_timer()
        if self.cancelled:
            # Our CANCEL ended it: 487 is expected.
            self._errback(DialCancelled())
            return
        assert self.peer is not None
        reason = e.reason if e.response is None else "SIP %d %s" % (e.status, e.reason)
        if e.response is None and e.status == 503:
            reason = transport_reason(e.reason)
        self._report(self.peer, None if shows_alive(e) else reason)
        if e.status in (401, 407) and not self._auth_tried and e.response is not None:
            auth = self._authorization(e.response)
            if auth is not None:
                self._auth_tried = True
                self.fw.stats["auth_retries"] += 1
                req: Request = invite.request
                self._next_target(call_id=req.call_id, cseq=req.cseq.number + 1, from_tag=req.from_tag, auth=auth)
                return
        if e.status in FAILOVER and self.targets:
            self.fw.stats["failovers"] += 1
            self.log.info(
                "forward failover forward_id={forward_id} status={status} reason={reason}",
                forward_id=self.log_id,
                status=e.status,
                reason=e.reason,
            )
            self._next_target()
            return
        status = e.status if e.response is not None or e.status == 408 else None
        self._errback(DialFailed(reason, status, self.tried[-1] if self.tried else None, tuple(self.tried)))

    def _authorization(self, response: Any) -> tuple[str, str] | None:
        trunk = self.trunk
        if not trunk.username:
            return None
        try:
            return authorization(response, self.invite.request, trunk, body=self._body)
        except Exception as e:
            self.log.warn("digest challenge not usable forward_id={forward_id}: {error}", forward_id=self.log_id, error=str(e))
            return None

    def _errback(self, error: Exception) -> None:
        self._stop_ring_timer()
        if not self.deferred.called:
            self.deferred.errback(Failure(error))

    def _bug(self, failure: Failure) -> None:
        self.log.failure("dialer bug forward_id={forward_id}", failure, forward_id=self.log_id)
        self._errback(DialFailed("internal error", None, self.tried[-1] if self.tried else None, tuple(self.tried)))
