# -*- test-case-name: tests.sip.test_late_answers,tests.integration.test_uac_uas,tests.sip.test_transport_lost,tests.siprec.test_forward -*-
"""
The UA core as a client (RFC 3261 s8.1, s12.2.1, s13.2): the requests
L{aiconnect.sip.ua.UserAgent} sends.

It sends INVITEs (L{ClientInvite}) and other requests (OPTIONS probes)
outside any dialog, sends in-dialog requests and routes them (the
dialog's connection, or its next hop), ACKs 2xx responses (again for
each retransmission), and ACKs then BYEs a 2xx to an INVITE it gave up
on (CANCELled, timed out, failed; s13.2.2.4), also after the INVITE
client transaction ended (the record: L{aiconnect.sip.gaveup}).

L{UserAgentClient} is mixed into L{aiconnect.sip.ua.UserAgent}, whose
state it uses; this module does not import L{aiconnect.sip.ua} at run
time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable

from twisted.internet import defer
from twisted.python.failure import Failure

from aiconnect.errors import AiconnectError, RemoteSipError
from aiconnect.sip.dialog import (
    Dialog,
    DialogId,
    contact_header,
    initial_cseq,
    new_branch,
    new_call_id,
    new_tag,
)
from aiconnect.sip.gaveup import MAX_ANSWERS, GivenUp, GivenUpInvites
from aiconnect.sip.message import Headers, Request, Response
from aiconnect.sip.peer import DEFAULT_PORTS, Peer
from aiconnect.sip.uri import SipUri, UriError, host_for_socket, is_ip_address, parse_uri

if TYPE_CHECKING:
    from aiconnect.sip.ua import InviteSession, UaConfig, UserAgent

#: Methods we implement as a UA (PRACK: RFC 3262, as a UAS); the UAS side,
#: L{aiconnect.sip.ua}, uses these constants too.
ALLOWED = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "UPDATE", "INFO", "PRACK")
#: Option tags we support (Supported, and accepted in Require).
SUPPORTED = ("siprec", "timer")
#: Option tags we list in Supported (RFC 7866 s6.1.1).
SUPPORTED_HEADER = ", ".join(SUPPORTED)
ALLOW_HEADER = ", ".join(ALLOWED)


class InviteFailed(AiconnectError):
    """
    An INVITE we sent got a final non-2xx response, timed out, or could not
    be sent.

    @ivar status: the SIP status (408 for a timeout, 503 for a transport
        failure, RFC 3261 s8.1.3.1).
    @ivar reason: a short text.
    @ivar response: the response, when there was one.
    """

    def __init__(self, status: int, reason: str, response: Response | None = None) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        self.response = response


class ClientInvite:
    """
    An INVITE we sent (UAC side, RFC 3261 s13.2).

    @ivar deferred: fires with the L{InviteSession} on 2xx (already ACKed),
        fails with L{InviteFailed} otherwise.
    @ivar on_provisional: called with each provisional response.
    """

    def __init__(self, ua: UserAgent, request: Request, peer: Peer, contact: str) -> None:
        self.ua = ua
        self.request = request
        self.peer = peer
        self.contact = contact
        self.deferred: defer.Deferred[InviteSession] = defer.Deferred()
        self.on_provisional: Callable[[Response], None] | None = None
        self.tx: Any = None
        self.session: InviteSession | None = None
        self.cancel_requested = False

    def cancel(self) -> None:
        """
        Cancel the INVITE (RFC 3261 s9.1): the transaction sends CANCEL once
        a provisional response has arrived; a 2xx that crosses it is ACKed
        and then BYEd.
        """
        if self.cancel_requested or self.deferred.called:
            return
        self.cancel_requested = True
        self.tx.cancel(_x_headers(self.request))
        self.ua._gave_up(self)

    def _response(self, response: Response) -> None:
        status = response.status
        if status < 200:
            if self.on_provisional is not None:
                self.on_provisional(response)
            return
        if 200 <= status < 300:
            if self.session is not None:
                # 2xx retransmission in Accepted state: ACK it again.
                self.ua._resend_ack(self.session, response)
                return
            if self.cancel_requested or self.deferred.called:
                # RFC 3261 s9.1, s13.2.2.4, s15: a 2xx that crossed our
                # CANCEL is ACKed and BYEd; the caller learns it was
                # cancelled.
                self.session = self.ua._late_answer(self.ua._gave_up(self), response)
                if not self.deferred.called:
                    self.deferred.errback(Failure(InviteFailed(487, "Request Terminated (answer crossed CANCEL)")))
                return
            dialog = Dialog.from_uac(self.request, response)
            session = self.ua._new_session(dialog, self.peer, "uac", self.contact)
            session.answer_response = response
            session.extra_headers = _x_headers(self.request)
            self.session = session
            self.ua._register(session)
            self.ua._send_ack(session, response)
            self.deferred.callback(session)
            return
        if not self.deferred.called:
            self.ua._gave_up(self)
            self.deferred.errback(Failure(InviteFailed(status, response.reason, response)))

    def _error(self, reason: str) -> None:
        if self.deferred.called:
            return
        self.ua._gave_up(self)
        self.deferred.errback(Failure(_not_sent(reason)))


def _not_sent(reason: str) -> InviteFailed:
    """
    The failure of a request that timed out (408) or could not be sent
    (503), RFC 3261 s8.1.3.1.
    """
    return InviteFailed(408 if reason == "timeout" else 503, reason)


def _x_headers(request: Request) -> tuple[tuple[str, str], ...]:
    """
    The C{X-} headers of an INVITE, carried by every request of its dialog.
    """
    return tuple((n, v) for n, v in request.headers if n.lower().startswith("x-"))


class UserAgentClient:
    """
    The UAC half of L{aiconnect.sip.ua.UserAgent} (a mixin): out-of-dialog
    requests, in-dialog sending and routing, ACKs, and the late 2xx of
    INVITEs we gave up on.

    It uses the UserAgent's state and helpers: C{_reactor}, C{transport},
    C{txlayer}, C{config}, C{stats}, C{log}, C{_sessions}, C{_given_up},
    L{advertised <aiconnect.sip.ua.UserAgent.advertised>}, C{_register} and
    C{_new_session}.
    """

    _reactor: Any
    transport: Any
    txlayer: Any
    config: UaConfig
    stats: dict[str, int]
    log: Any
    _sessions: dict[DialogId, InviteSession]
    _given_up: GivenUpInvites

    def stray_response(self, response: Response, source: Peer) -> None:
        """
        A 2xx after the INVITE client transaction ended (RFC 3261
        s13.2.2.4): a retransmission is ACKed again; the 2xx of an INVITE
        we gave up on (CANCELled, timed out, failed) is ACKed and BYEd.
        """
        key = DialogId(response.call_id, response.from_tag or "", response.to_tag or "")
        session = self._sessions.get(key)
        if session is not None and session.role == "uac":
            self._resend_ack(session, response)
            return
        entry = self._given_up.match(response, self._reactor.seconds())
        if entry is not None:
            self._late_answer(entry, response)

    def _gave_up(self, invite: ClientInvite) -> GivenUp:
        """
        Remember an INVITE we gave up on for 64*T1 from now, so that its
        late 2xx is ACKed and BYEd.
        """
        return self._given_up.add(invite.request, invite.peer, invite.contact, self._reactor.seconds())

    def _late_answer(self, entry: GivenUp, response: Response) -> InviteSession | None:
        """
        ACK, then BYE, the 2xx of an INVITE we gave up on (RFC 3261
        s13.2.2.4, s15); its retransmissions are only ACKed again.  At
        most L{MAX_ANSWERS} forks per INVITE.

        @return: the session, terminated by its BYE, or L{None}.
        """
        tag = response.to_tag or ""
        session = entry.sessions.get(tag)
        if session is not None:
            self._resend_ack(session, response)
            return session
        if len(entry.sessions) >= MAX_ANSWERS:
            return None
        try:
            dialog = Dialog.from_uac(entry.request, response)
        except RemoteSipError as e:
            self.log.warn("late 2xx unusable call_id={call_id}: {reason}", call_id=response.call_id, reason=e.reason)
            return None
        session = self._new_session(dialog, entry.peer, "uac", entry.contact)
        session.answer_response = response
        session.extra_headers = _x_headers(entry.request)
        entry.sessions[tag] = session
        self.stats["late_answers"] += 1
        self.log.info("late 2xx ACKed and BYEd call_id={call_id}", call_id=response.call_id)
        self._register(session)
        self._send_ack(session, response)
        session.bye()
        return session

    def invite(
        self,
        uri: str,
        peer: Peer,
        body: bytes = b"",
        content_type: str = "application/sdp",
        from_uri: str | None = None,
        to_uri: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        feature_tags: Iterable[str] = (),
        private: bool = False,
        from_display: str | None = None,
        call_id: str | None = None,
        from_tag: str | None = None,
        cseq: int | None = None,
    ) -> ClientInvite:
        """
        Send an INVITE outside any dialog (RFC 3261 s8.1.1, s13.2.1).

        @param uri: the Request-URI.
        @param peer: the resolved next hop.
        @param call_id: reuse a Call-ID (a retry with credentials, RFC 3261
            s22.2, keeps Call-ID and From tag and increments CSeq).
        @return: the L{ClientInvite}; its C{deferred} fires with the session.
        """
        common = (("Allow", ALLOW_HEADER), ("Supported", SUPPORTED_HEADER))
        typed = (("Content-Type", content_type),) if body else ()
        request, contact = self._out_of_dialog(
            "INVITE", uri, peer, from_uri, to_uri, common + tuple(headers) + typed,
            feature_tags, private, from_display, call_id, from_tag, cseq,
        )
        request.body = body
        inv = ClientInvite(self, request, peer, contact)
        inv.tx = self.txlayer.send_request(request, peer, inv._response, inv._error)
        return inv

    def _out_of_dialog(
        self,
        method: str,
        uri: str,
        peer: Peer,
        from_uri: str | None,
        to_uri: str | None,
        headers: Iterable[tuple[str, str]],
        feature_tags: Iterable[str] = (),
        private: bool = False,
        from_display: str | None = None,
        call_id: str | None = None,
        from_tag: str | None = None,
        cseq: int | None = None,
    ) -> tuple[Request, str]:
        """
        A request outside any dialog (RFC 3261 s8.1.1), without body.

        @return: the request and our Contact in it.
        """
        local = self.advertised(peer.transport, private)
        contact = contact_header(None, local, peer.transport, feature_tags)
        from_uri = from_uri or "sip:%s" % (local,)
        h = Headers()
        h.add("Max-Forwards", "70")
        display = ('"%s" ' % from_display.replace('"', "")) if from_display else ""
        h.add("From", "%s<%s>;tag=%s" % (display, from_uri, from_tag or new_tag()))
        h.add("To", "<%s>" % (to_uri or uri,))
        h.add("Call-ID", call_id or new_call_id(host_for_socket(local.rsplit(":", 1)[0])))
        h.add("CSeq", "%d %s" % (cseq or initial_cseq(), method))
        h.add("Contact", contact)
        h.add("User-Agent", self.config.user_agent)
        for n, v in headers:
            h.add(n, v)
        return Request(method, uri, h, b""), contact

    def request(
        self,
        method: str,
        uri: str,
        peer: Peer,
        headers: Iterable[tuple[str, str]] = (),
        call_id: str | None = None,
        from_tag: str | None = None,
        cseq: int | None = None,
    ) -> tuple[Request, defer.Deferred[Response]]:
        """
        Send a non-INVITE request outside any dialog (RFC 3261 s8.1.1), e.g.
        an OPTIONS probe (s11); a retry with credentials keeps the Call-ID
        and From tag and increments the CSeq (s22.2).

        @param uri: the Request-URI (also the To URI).
        @param peer: the resolved next hop.
        @return: the request, and a Deferred firing with the final response
            (any status), or failing with L{InviteFailed} (408 on a
            timeout, 503 on a transport or TLS failure).
        """
        request, _ = self._out_of_dialog(method, uri, peer, None, None, headers, call_id=call_id, from_tag=from_tag, cseq=cseq)
        d: defer.Deferred[Response] = defer.Deferred()

        def on_response(response: Response) -> None:
            if response.status >= 200 and not d.called:
                d.callback(response)

        def on_error(reason: str) -> None:
            if not d.called:
                d.errback(Failure(_not_sent(reason)))

        self.txlayer.send_request(request, peer, on_response, on_error)
        return request, d

    def _send_ack(self, session: InviteSession, response: Response) -> None:
        ack = session.dialog.new_request("ACK", headers=session.extra_headers, cseq=session.dialog.invite_cseq)
        self._send_stateless(session, ack)
        session._last_ack = ack

    def _resend_ack(self, session: InviteSession, response: Response) -> None:
        if session._last_ack is not None:
            self.transport.send_request(session._last_ack, self._next_peer(session)).addErrback(lambda f: None)

    def _send_stateless(self, session: InviteSession, request: Request) -> None:
        peer = self._next_peer(session)
        proto, sent_by = self.transport.local_via(peer)
        request.headers.add_first("Via", "SIP/2.0/%s %s;rport;branch=%s" % (proto, sent_by, new_branch()))
        self.transport.send_request(request, peer).addErrback(lambda f: None)

    def _send_in_dialog(self, session: InviteSession, request: Request) -> defer.Deferred[Response]:
        d: defer.Deferred[Response] = defer.Deferred()

        def on_response(response: Response) -> None:
            if response.status < 200:
                return
            if request.method == "INVITE" and 200 <= response.status < 300:
                session.dialog.refresh_target(response)
                ack = session.dialog.new_request("ACK", headers=session.extra_headers, cseq=request.cseq.number)
                self._send_stateless(session, ack)
                session._last_ack = ack
            if response.status in (408, 481) and request.method != "BYE":
                # RFC 3261 s12.2.1.2: the dialog is gone.
                session._terminate("remote-gone")
            if not d.called:
                d.callback(response)

        def on_error(reason: str) -> None:
            if not d.called:
                d.errback(Failure(_not_sent(reason)))

        self.txlayer.send_request(request, self._next_peer(session), on_response, on_error)
        return d

    def _next_peer(self, session: InviteSession) -> Peer:
        """
        Where an in-dialog request goes.

        The dialog's connection while it is open (TCP/TLS); over UDP, the
        address the dialog was set up with (for a UAS, where the INVITE came
        from: the SBC-facing, NAT-safe choice, as with C{force_rport});
        after a TCP/TLS connection closed, the route set's first hop or the
        remote target when it is an address literal (RFC 3261 s12.2.1.1).
        """
        peer = session.peer
        conn = peer.connection
        if not peer.reliable:
            return peer
        if conn is not None and conn.transport is not None and conn.transport.connected:
            return peer
        resolved = resolve_literal(session.dialog.next_hop(), peer)
        result: list[Peer] = []
        resolved.addCallbacks(result.append, lambda f: None)
        if result and result[0].transport == peer.transport:
            return Peer(peer.transport, result[0].host, result[0].port, server_name=peer.server_name)
        return Peer(peer.transport, peer.host, peer.port, server_name=peer.server_name)


def resolve_literal(uri: str, current: Peer | None) -> defer.Deferred[Peer]:
    """
    Resolve a URI whose host is an IP literal or C{localhost} (no DNS).
    """
    try:
        parsed = parse_uri(uri)
    except UriError as e:
        return defer.fail(e)
    if not isinstance(parsed, SipUri):
        return defer.fail(ValueError("not a SIP URI: %s" % (uri,)))
    transport = parsed.transport or ("tls" if parsed.secure else "udp")
    host = host_for_socket(parsed.host)
    if host == "localhost":
        host = "127.0.0.1"
    if not is_ip_address(host):
        return defer.fail(ValueError("needs DNS: %s" % (uri,)))
    port = parsed.port or DEFAULT_PORTS.get(transport, 5060)
    return defer.succeed(Peer(transport, host, port, server_name=host_for_socket(parsed.host)))


__all__ = [
    "ALLOWED",
    "ALLOW_HEADER",
    "ClientInvite",
    "InviteFailed",
    "SUPPORTED",
    "SUPPORTED_HEADER",
    "UserAgentClient",
    "resolve_literal",
]
