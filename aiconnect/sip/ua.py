# -*- test-case-name: tests.sip.test_ua,tests.sip.test_late_answers,tests.integration.test_uac_uas,tests.integration.test_sip_service,tests.siprec.test_forward -*-
"""
The UA core (RFC 3261 s8, s12-s15): the transaction user above the
transaction layer.

It checks incoming requests the way RFC 3261 s8.2 orders (method, URI scheme,
Require, Content-Type/Encoding, Accept), answers OPTIONS, matches in-dialog
requests to their dialog, retransmits 2xx until ACK (s13.3.1.4, RFC 6026),
and hands INVITEs to an L{InviteHandler} (the SIPRec SRS in production, a
test double in the tests).  Its UAC side (L{aiconnect.sip.uac}, mixed into
L{UserAgent}) sends INVITEs and out-of-dialog requests (OPTIONS probes),
ACKs 2xx, and ACKs then BYEs a 2xx to an INVITE it gave up on (s13.2.2.4,
also after the transaction ended); L{ClientInvite} and L{InviteFailed} are
importable from here too.

As a UAS it supports RFC 3262 (C{100rel}, PRACK): when an INVITE requires
or supports C{100rel}, its provisional response (C{180 Ringing}, sent once
the handler took the INVITE) is sent reliably (L{aiconnect.sip.reliable}).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from aiconnect.errors import RemoteSipError
from aiconnect.sip.dialog import Dialog, DialogId, DialogState, contact_header, new_tag
from aiconnect.sip.gaveup import GivenUpInvites
from aiconnect.sip.message import KNOWN_METHODS, Request, Response, make_response
from aiconnect.sip.peer import Peer
from aiconnect.sip.reliable import OPTION_TAG, EarlyDialogs, ReliableProvisional, Retransmission, wants_100rel
from aiconnect.sip.uac import (
    ALLOW_HEADER,
    ALLOWED,
    SUPPORTED,
    ClientInvite,
    InviteFailed,
    UserAgentClient,
    resolve_literal,
)
from aiconnect.sip.uri import SipUri, UriError, format_host

#: Body types we accept (RFC 7866 s6.1, s9).
ACCEPTED_TYPES = (
    "application/sdp",
    "multipart/mixed",
    "application/rs-metadata+xml",
    "application/rs-metadata",
)
#: Option tags we support as a UAS, who also sends reliable provisional
#: responses (RFC 3262): accepted in Require, listed in Supported of our
#: responses.  (Our INVITEs do not offer 100rel: the UAC sends no PRACK.)
UAS_SUPPORTED = SUPPORTED + (OPTION_TAG,)
UAS_SUPPORTED_HEADER = ", ".join(UAS_SUPPORTED)
ACCEPT_HEADER = ", ".join(ACCEPTED_TYPES)


class SessionHandler(Protocol):
    """
    Receives the in-dialog events of one L{InviteSession}.
    """

    def session_request(self, session: InviteSession, tx: Any, request: Request) -> bool:
        """
        An in-dialog request other than ACK/BYE arrived (re-INVITE, UPDATE,
        INFO, OPTIONS). Return C{True} if the handler answered C{tx}; else the
        UA answers 200 (OPTIONS, INFO) or 488 (an offer it cannot judge).
        """

    def session_terminated(self, session: InviteSession, reason: str) -> None:
        """
        The dialog ended (C{"bye"}, C{"local"}, C{"ack-timeout"}, C{"cancel"}...).
        """


class InviteHandler(Protocol):
    """
    Receives new INVITEs (outside any dialog).
    """

    def invite_received(self, invite: ServerInvite) -> None:
        """
        A new INVITE passed the RFC 3261 s8.2 checks; answer it through
        C{invite}.
        """


class RejectingInviteHandler:
    """
    The default: no service behind the UA yet; every INVITE gets 480.
    """

    def invite_received(self, invite: ServerInvite) -> None:
        invite.reject(480, "No Service")


@dataclass
class UaConfig:
    """
    UA core settings.

    @ivar user_agent: the User-Agent / Server header value.
    @ivar feature_tags: Contact feature tags (C{+sip.srs}).
    @ivar t1: RFC 3261 T1, for 2xx retransmission.
    @ivar t2: RFC 3261 T2.
    """

    user_agent: str = "aiconnect"
    feature_tags: tuple[str, ...] = ()
    t1: float = 0.5
    t2: float = 4.0


class InviteSession:
    """
    One INVITE dialog, either role.

    @ivar dialog: the dialog state.
    @ivar peer: where in-dialog requests go (the connection is reused for
        TCP/TLS).
    @ivar handler: the L{SessionHandler}, set by whoever owns the session.
    @ivar role: C{"uas"} or C{"uac"}.
    @ivar on_dialog_change: called with the session after its dialog state
        changed (a request sent with a new CSeq, a target refresh
        received); the owner keeps its stored copy current with it.
    """

    log = Logger()

    def __init__(self, ua: UserAgent, dialog: Dialog, peer: Peer, role: str, contact: str) -> None:
        self.ua = ua
        self.dialog = dialog
        self.peer = peer
        self.role = role
        self.contact = contact
        self.handler: SessionHandler | None = None
        self.terminated = False
        self.extra_headers: tuple[tuple[str, str], ...] = ()
        self.ack_deferred: defer.Deferred[Request] = defer.Deferred()
        self._last_ack: Request | None = None
        #: The 2xx that created the dialog (UAC side).
        self.answer_response: Response | None = None
        self.on_dialog_change: Callable[[InviteSession], None] | None = None

    def _dialog_changed(self) -> None:
        if self.on_dialog_change is not None:
            try:
                self.on_dialog_change(self)
            except Exception:
                self.log.failure("dialog change hook failed call_id={call_id}", call_id=self.dialog.call_id)

    def request(
        self,
        method: str,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> defer.Deferred[Response]:
        """
        Send an in-dialog request (BYE, re-INVITE, UPDATE, INFO, OPTIONS).

        @return: fires with the final response (a 2xx re-INVITE is ACKed
            here); fails with L{InviteFailed} on a timeout or transport error.
        """
        req = self.dialog.new_request(
            method,
            contact=self.contact,
            headers=tuple(headers) + self.extra_headers,
            body=body,
            content_type=content_type,
        )
        self._dialog_changed()
        return self.ua._send_in_dialog(self, req)

    def bye(self, headers: Iterable[tuple[str, str]] = ()) -> defer.Deferred[Response]:
        """
        End the dialog with BYE (RFC 3261 s15.1.1); the session is
        terminated at once, whatever the answer.

        @return: fires with the final response, or C{None} when the BYE
            timed out or could not be sent (logged); never fails.
        """
        d = self.request("BYE", headers=headers)
        self.ua._closing_started(self, d)
        self._terminate("local")

        def failed(f: Failure) -> None:
            # The dialog is over either way (RFC 3261 s15.1.1): a BYE that
            # times out or cannot be sent is logged, never left unhandled.
            self.log.warn(
                "BYE not answered call_id={call_id}: {error}", call_id=self.dialog.call_id, error=str(f.value)
            )
            return None

        d.addErrback(failed)
        return d

    def _terminate(self, reason: str) -> None:
        if self.terminated:
            return
        self.terminated = True
        self.dialog.state = DialogState.TERMINATED
        self.ua._forget(self)
        handler, self.handler, self.on_dialog_change = self.handler, None, None
        # Dropped: a finished INVITE transaction keeps this session (for
        # its ACK) up to 64*T1; it must not keep the whole call alive too.
        if handler is not None:
            try:
                handler.session_terminated(self, reason)
            except Exception:
                self.log.failure("session handler failed on termination")


class ServerInvite:
    """
    A new INVITE awaiting our answer (UAS side, RFC 3261 s13.3).

    @ivar request: the INVITE.
    @ivar tx: its server transaction.
    @ivar local_tag: the To tag our responses carry.
    @ivar cancelled: whether a CANCEL arrived before our final answer.
    @ivar on_cancel: called (with no argument) when a CANCEL arrives first.
    @ivar on_failed: called with a reason when the UA itself ended the
        INVITE before the owner answered it (RFC 3262 s3: no PRACK).
    @ivar feature_tags: the Contact feature tags of our reliable
        provisional responses (C{None}: the UA's).
    @ivar reliable: the reliable provisional response sent last (RFC 3262),
        or C{None}.
    """

    log = Logger()

    def __init__(self, ua: UserAgent, tx: Any, request: Request) -> None:
        self.ua = ua
        self.tx = tx
        self.request = request
        self.local_tag = new_tag()
        self.cancelled = False
        self.answered = False
        self.on_cancel: Callable[[], None] | None = None
        self.on_failed: Callable[[str], None] | None = None
        self.session: InviteSession | None = None
        self.feature_tags: tuple[str, ...] | None = None
        self.reliable: ReliableProvisional | None = None

    @property
    def source(self) -> Peer:
        """
        Where the INVITE came from.
        """
        return self.tx.source

    def provisional(self, status: int = 180, headers: Iterable[tuple[str, str]] = ()) -> None:
        """
        Send a provisional response (with our To tag, except 100).

        When the INVITE asked for C{100rel} it goes reliably (RFC 3262 s3):
        with C{Require: 100rel}, an C{RSeq} and a Contact, retransmitted
        until its PRACK; while one is unacknowledged, no other is sent (s3:
        one at a time).
        """
        if self.answered:
            return
        extra = list(headers)
        reliable = None
        if status > 100 and wants_100rel(self.request):
            reliable = ReliableProvisional.after(self.reliable, self.request.cseq.number)
            if reliable is None:
                self.ua.stats["provisionals_withheld"] += 1
                return
            extra += reliable.headers(self._contact(self.feature_tags), ALLOW_HEADER)
        resp = make_response(self.request, status, to_tag=self.local_tag, headers=self.ua._common_headers(extra))
        self.tx.respond(resp)
        if reliable is not None:
            self.reliable = reliable
            self.ua.early.sent(self, resp)

    def _finished(self) -> None:
        """
        Our final response is out: the reliable provisional response is
        no longer retransmitted (RFC 3262 s3); after a non-2xx the early
        dialog is gone, so a later PRACK gets 481.
        """
        self.answered = True
        self.ua.invite_answered(self)
        reliable = self.reliable
        if reliable is not None and not reliable.acknowledged and self.session is None:
            reliable.stop()
            self.ua.early.ended(self)

    def _contact(self, feature_tags: Iterable[str] | None) -> str:
        """
        Our Contact for this INVITE's dialog.
        """
        transport = self.source.transport
        secure = self.request.uri.lower().startswith("sips:")
        tags = self.ua.config.feature_tags if feature_tags is None else tuple(feature_tags)
        return contact_header(None, self.ua.advertised(transport), transport, tags, secure)

    def reject(self, status: int, reason: str = "", headers: Iterable[tuple[str, str]] = ()) -> None:
        """
        Send a final non-2xx response.
        """
        if self.answered:
            return
        self._finished()
        resp = make_response(self.request, status, reason, to_tag=self.local_tag, headers=self.ua._common_headers(headers))
        self.tx.respond(resp)

    def accept(
        self,
        body: bytes = b"",
        content_type: str = "application/sdp",
        headers: Iterable[tuple[str, str]] = (),
        feature_tags: Iterable[str] | None = None,
    ) -> InviteSession:
        """
        Send 200 OK, create the dialog, and retransmit the 2xx until the ACK
        arrives (RFC 3261 s13.3.1.4, RFC 6026 s7.1).

        @raise RemoteSipError: if the INVITE cannot create a dialog.
        """
        if self.answered:
            raise RuntimeError("INVITE already answered")
        dialog = Dialog.from_uas(self.request, self.local_tag)
        source = self.source
        contact = self._contact(feature_tags)
        extra = [("Contact", contact), ("Allow", ALLOW_HEADER), ("Supported", UAS_SUPPORTED_HEADER)]
        for rr in self.request.headers.get_all("Record-Route"):
            extra.append(("Record-Route", rr))
        extra.extend(headers)
        if body:
            extra.append(("Content-Type", content_type))
        resp = make_response(self.request, 200, to_tag=self.local_tag, headers=self.ua._common_headers(extra), body=body)
        session = InviteSession(self.ua, dialog, source, "uas", contact)
        self.session = session
        # RFC 3262 s3: our provisional responses carry no SDP, so the 2xx
        # need not wait for their PRACK; one that arrives later is still
        # answered (until 64*T1).
        self._finished()
        self.ua._register(session)
        self.tx.respond(resp)
        self.ua._start_2xx_retransmit(session, resp)
        return session


class UserAgent(UserAgentClient):
    """
    The transaction user: RFC 3261 s8.2 checks, dialogs, INVITE sessions;
    the requests it sends come from L{UserAgentClient}.

    @ivar stats: counters of rejected requests by status and of dialogs.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        transport: Any,
        txlayer: Any = None,
        invite_handler: InviteHandler | None = None,
        config: UaConfig | None = None,
        resolve: Callable[[str, Peer | None], defer.Deferred[Peer]] | None = None,
    ) -> None:
        """
        @param reactor: provides IReactorTime.
        @param transport: the L{SipTransport} (for advertised addresses and
            for sending ACKs for 2xx, which bypass transactions).
        @param txlayer: the transaction layer (settable later).
        @param invite_handler: receives new INVITEs.
        @param config: UA settings.
        @param resolve: turns a next-hop URI into a L{Peer}; the default
            handles IP literals and C{localhost}.
        """
        self._reactor = reactor
        self.transport = transport
        self.txlayer = txlayer
        self.invite_handler: InviteHandler = invite_handler or RejectingInviteHandler()
        self.config = config or UaConfig()
        self._resolve = resolve or resolve_literal
        self._sessions: dict[DialogId, InviteSession] = {}
        self._pending_invites: dict[int, ServerInvite] = {}
        #: (dialog id, INVITE CSeq) -> the 2xx retransmission timer.
        self._retransmits: dict[tuple[DialogId, int], Retransmission] = {}
        #: The INVITEs whose reliable provisional response awaits its PRACK.
        self.early = EarlyDialogs(self)
        #: Dialogs we sent BYE in, until that BYE is answered or times out.
        self._closing: dict[DialogId, InviteSession] = {}
        self.stats: dict[str, int] = {
            "rejected": 0,
            "dialogs": 0,
            "stray_acks": 0,
            "pracks": 0,
            "prack_timeouts": 0,
            "provisionals_withheld": 0,
            "late_answers": 0,
        }
        watchers = getattr(transport, "on_connection_lost", None)
        if watchers is not None:
            watchers.append(self.connection_lost)
        #: INVITEs we gave up on, for their late 2xx (RFC 3261 s13.2.2.4).
        self._given_up = GivenUpInvites(64 * self.config.t1)

    # -- helpers ---------------------------------------------------------

    def stop(self) -> None:
        """
        Cancel every timer (2xx and reliable 1xx retransmissions) on
        shutdown.
        """
        for call in self._retransmits.values():
            call.cancel()
        self._retransmits.clear()
        self.early.stop()

    def advertised(self, transport: str, private: bool = False) -> str:
        """
        Our C{host:port} for Contact on a transport.
        """
        return self.transport.advertised(transport, private)

    def _common_headers(self, headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        out = list(headers)
        out.append(("Server", self.config.user_agent))
        return out

    def _new_session(self, dialog: Dialog, peer: Peer, role: str, contact: str) -> InviteSession:
        """
        A new L{InviteSession} of this UA, not registered yet (the UAC side,
        L{aiconnect.sip.uac}, makes its sessions here).
        """
        return InviteSession(self, dialog, peer, role, contact)

    def _register(self, session: InviteSession) -> None:
        self._sessions[session.dialog.id] = session
        self.stats["dialogs"] += 1

    def _closing_started(self, session: InviteSession, bye: defer.Deferred[Response]) -> None:
        """
        Our BYE is out: until it is answered, a BYE the peer sends in the
        same dialog (the two crossed) is answered 200, not 481.
        """
        key = session.dialog.id
        self._closing[key] = session

        def done(result: Any) -> Any:
            if self._closing.get(key) is session:
                del self._closing[key]
            return result

        bye.addBoth(done)

    def restore_session(
        self,
        dialog: Dialog,
        peer: Peer,
        role: str,
        contact: str,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> InviteSession:
        """
        Register a confirmed dialog rebuilt from storage (a dialog our
        previous run left open), so that requests can be sent in it and the
        peer's requests match it.

        @param dialog: the dialog, with a local CSeq above any it used.
        @param peer: where in-dialog requests go.
        @param role: C{"uas"} or C{"uac"}.
        @param contact: our Contact in that dialog.
        @param extra_headers: headers every request of the dialog carries.
        @return: the registered session (no handler).
        """
        session = InviteSession(self, dialog, peer, role, contact)
        session.extra_headers = tuple(extra_headers)
        self._register(session)
        return session

    def reject_pending(self, status: int, reason: str = "", headers: Iterable[tuple[str, str]] = ()) -> int:
        """
        Answer every INVITE still waiting for its final response with
        C{status} (at shutdown: 503).

        @return: how many were answered.
        """
        pending = list(self._pending_invites.values())
        for invite in pending:
            invite.reject(status, reason, headers)
        return len(pending)

    def invite_answered(self, invite: ServerInvite) -> None:
        """
        A pending INVITE got its final answer: it no longer waits for one
        (neither a CANCEL nor L{reject_pending} touches it again).

        @param invite: the INVITE, answered by L{ServerInvite.accept} or
            L{ServerInvite.reject}.
        """
        self._pending_invites.pop(id(invite.tx), None)

    def connection_lost(self, peer: Peer, reason: str) -> None:
        """
        The transport's TCP/TLS connection to C{peer} closed on the peer's
        side: each dialog whose requests go over it is told, through its
        handler's optional C{session_transport_lost(session, reason)}
        (a forward then re-establishes elsewhere, SPEC s13).
        """
        for session in list(self._sessions.values()):
            p = session.peer
            if not p.reliable or (p.transport, p.host, p.port) != (peer.transport, peer.host, peer.port):
                continue
            tell = getattr(session.handler, "session_transport_lost", None)
            if tell is None:
                continue
            try:
                tell(session, reason)
            except Exception:
                self.log.failure("session handler failed on transport loss call_id={call_id}", call_id=session.dialog.call_id)

    def _forget(self, session: InviteSession) -> None:
        dialog_id = session.dialog.id
        self._sessions.pop(dialog_id, None)
        for key in [k for k in self._retransmits if k[0] == dialog_id]:
            self._retransmits.pop(key).cancel()

    @property
    def sessions(self) -> list[InviteSession]:
        """
        The live INVITE sessions.
        """
        return list(self._sessions.values())

    def _reject(self, tx: Any, request: Request, status: int, reason: str = "", headers: Iterable[tuple[str, str]] = ()) -> None:
        self.stats["rejected"] += 1
        resp = make_response(request, status, reason, to_tag=new_tag(), headers=self._common_headers(headers))
        tx.respond(resp)

    # -- TU interface (called by the transaction layer) -----------------

    def request_received(self, tx: Any, request: Request) -> None:
        """
        A new server transaction: check per RFC 3261 s8.2, then dispatch.
        """
        method = request.method
        # s8.2.1: method inspection.
        if method not in ALLOWED:
            status = 405 if method in KNOWN_METHODS else 501
            self._reject(tx, request, status, headers=[("Allow", ALLOW_HEADER)])
            return
        # s8.2.2.1: Request-URI scheme.
        try:
            ruri = request.request_uri
        except UriError:
            self._reject(tx, request, 400, "Bad Request-URI")
            return
        if not isinstance(ruri, SipUri):
            self._reject(tx, request, 416)
            return
        # s8.2.2.3: Require.
        if method not in ("ACK", "CANCEL"):
            unsupported = [t for t in request.headers.tokens("Require") if t not in UAS_SUPPORTED]
            if unsupported:
                self._reject(tx, request, 420, headers=[("Unsupported", ", ".join(unsupported))])
                return
        # s8.2.3: content processing.
        if request.body and method in ("INVITE", "UPDATE"):
            ctype = request.content_type
            if ctype not in ACCEPTED_TYPES:
                self._reject(tx, request, 415, headers=[("Accept", ACCEPT_HEADER)])
                return
            enc = [e for e in request.headers.tokens("Content-Encoding") if e != "identity"]
            if enc:
                self._reject(tx, request, 415, headers=[("Accept-Encoding", "identity"), ("Accept", ACCEPT_HEADER)])
                return
        # s8.2.4 / s21.4.7: we answer INVITE/UPDATE with SDP.
        if method in ("INVITE", "UPDATE"):
            accept = request.headers.values("Accept") if "Accept" in request.headers else []
            if accept and not any(
                a.split(";")[0].strip().lower() in ("application/sdp", "application/*", "*/*") for a in accept
            ):
                self._reject(
                    tx,
                    request,
                    406,
                    headers=[("Accept", ACCEPT_HEADER), ("Warning", '399 %s "application/sdp required"' % (self.config.user_agent,))],
                )
                return
        if method == "PRACK":
            self.early.prack_received(tx, request)
            return
        if request.to_tag is not None:
            self._in_dialog(tx, request)
            return
        if method == "OPTIONS":
            self._reject_ok_options(tx, request)
            return
        if method == "INVITE":
            invite = ServerInvite(self, tx, request)
            self._pending_invites[id(tx)] = invite
            try:
                self.invite_handler.invite_received(invite)
            except RemoteSipError as e:
                invite.reject(e.status_hint, e.reason)
            except Exception:
                self.log.failure("INVITE handler failed call_id={call_id}", call_id=request.call_id)
                invite.reject(500)
            if not invite.answered and invite.reliable is None and wants_100rel(request):
                # RFC 3262 s3: the UAC asked for 100rel; a reliable 180
                # tells it we took the INVITE.
                invite.provisional(180)
            return
        # BYE, UPDATE, INFO outside a dialog (s12.2.2, s15.1.2).
        self._reject(tx, request, 481)

    def _reject_ok_options(self, tx: Any, request: Request) -> None:
        # s11.2: OPTIONS answered as an INVITE would be, with capabilities.
        resp = make_response(
            request,
            200,
            to_tag=new_tag(),
            headers=self._common_headers(
                [
                    ("Allow", ALLOW_HEADER),
                    ("Accept", ACCEPT_HEADER),
                    ("Accept-Encoding", "identity"),
                    ("Accept-Language", "en"),
                    ("Supported", UAS_SUPPORTED_HEADER),
                ]
            ),
        )
        tx.respond(resp)

    def _find_session(self, request: Request) -> InviteSession | None:
        key = DialogId(request.call_id, request.to_tag or "", request.from_tag or "")
        return self._sessions.get(key)

    def _in_dialog(self, tx: Any, request: Request) -> None:
        session = self._find_session(request)
        if session is None:
            key = DialogId(request.call_id, request.to_tag or "", request.from_tag or "")
            if request.method == "BYE" and key in self._closing:
                # Our BYE and the peer's crossed: the dialog is ending
                # either way (RFC 3261 s15.1.2).
                tx.respond(make_response(request, 200, headers=self._common_headers([])))
                return
            self._reject(tx, request, 481)
            return
        try:
            session.dialog.receive_request(request)
        except RemoteSipError as e:
            self._reject(tx, request, e.status_hint, e.reason)
            return
        if request.method in ("INVITE", "UPDATE"):
            session._dialog_changed()
        if request.method == "BYE":
            tx.respond(make_response(request, 200, headers=self._common_headers([])))
            session._terminate("bye")
            return
        handled = False
        if session.handler is not None:
            try:
                handled = session.handler.session_request(session, tx, request)
            except RemoteSipError as e:
                self._reject(tx, request, e.status_hint, e.reason)
                return
            except Exception:
                self.log.failure("session handler failed call_id={call_id}", call_id=request.call_id)
                self._reject(tx, request, 500)
                return
        if handled:
            self._after_in_dialog_answer(session, tx, request)
            return
        if request.method in ("OPTIONS", "INFO"):
            extra = [("Allow", ALLOW_HEADER), ("Supported", UAS_SUPPORTED_HEADER)]
            tx.respond(make_response(request, 200, headers=self._common_headers(extra)))
        elif request.method in ("INVITE", "UPDATE") and not request.body:
            # RFC 4028 session refresh without an offer: nothing changes.
            tx.respond(
                make_response(
                    request, 200, headers=self._common_headers([("Contact", session.contact), ("Allow", ALLOW_HEADER)])
                )
            )
            self._after_in_dialog_answer(session, tx, request)
        else:
            self._reject(tx, request, 488)

    def _after_in_dialog_answer(self, session: InviteSession, tx: Any, request: Request) -> None:
        """
        A 2xx to a re-INVITE is retransmitted until its ACK, like the first
        one (RFC 3261 s13.3.1.4).
        """
        final = getattr(tx, "final_response", None)
        if request.method == "INVITE" and final is not None and 200 <= final.status < 300:
            self._start_2xx_retransmit(session, final)

    def cancel_received(self, invite_tx: Any, cancel: Request) -> None:
        """
        A CANCEL matched a pending INVITE (the layer already answered 200):
        answer the INVITE 487 (RFC 3261 s9.2) and tell its owner.
        """
        invite = self._pending_invites.pop(id(invite_tx), None)
        if invite is None or invite.answered:
            return
        invite.cancelled = True
        invite.reject(487)
        if invite.on_cancel is not None:
            try:
                invite.on_cancel()
            except Exception:
                self.log.failure("cancel handler failed")

    def ack_received(self, request: Request, source: Peer) -> None:
        """
        An ACK for a 2xx: stop retransmitting the 2xx (RFC 3261 s13.3.1.4).
        """
        session = self._find_session(request)
        if session is None:
            self.stats["stray_acks"] += 1
            return
        call = self._retransmits.pop((session.dialog.id, request.cseq.number), None)
        if call is not None and call.active():
            call.cancel()
        if not session.ack_deferred.called:
            session.ack_deferred.callback(request)

    # -- UAS: 2xx retransmission ------------------------------------------

    def _start_2xx_retransmit(self, session: InviteSession, response: Response) -> None:
        """
        Retransmit a 2xx to an INVITE (initial or re-INVITE) until its ACK
        (RFC 3261 s13.3.1.4, RFC 6026 s7.1): T1 doubling to T2 over UDP; on
        any transport, without an ACK after 64*T1 the dialog is ended with
        BYE.
        """
        key = (session.dialog.id, response.cseq.number)

        def send() -> None:
            if not session.terminated:
                self.transport.send_response(response, session.peer)

        def expired() -> None:
            self._retransmits.pop(key, None)
            if session.terminated:
                return
            self.log.warn("no ACK for 2xx call_id={call_id}", call_id=session.dialog.call_id)
            session.bye().addErrback(lambda f: self.log.warn("BYE after ACK timeout failed: {error}", error=str(f.value)))

        interval = None if session.peer.reliable else self.config.t1
        self._retransmits[key] = Retransmission(
            self._reactor, send, interval, 64 * self.config.t1, expired, cap=self.config.t2
        )


__all__ = [
    "ClientInvite",
    "InviteFailed",
    "InviteHandler",
    "InviteSession",
    "ServerInvite",
    "SessionHandler",
    "UaConfig",
    "UserAgent",
    "format_host",
]
