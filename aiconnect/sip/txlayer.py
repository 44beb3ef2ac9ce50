# -*- test-case-name: tests.sip.test_txlayer,tests.sip.test_txlayer_server,tests.sip.test_txlayer_wire -*-
"""
The SIP transaction layer (RFC 3261 s17): the Twisted adapter around the
pure machines of L{aiconnect.sip.transaction}.

L{TransactionLayer} sits between the transport (which calls
L{TransactionLayer.message_received}) and the transaction user, the UA core
above it (which it calls through L{TransactionUser}). It keeps the client and
server transaction tables, matches messages to them (s17.1.3, s17.2.3),
carries out the machines' actions, answers CANCEL itself (s9.2), and drives
the timers with one re-armed C{IDelayedCall} per transaction on the injected
reactor.

Server side, the TU sees each new request once, through
C{request_received(server_tx, request)}, and answers with
L{ServerTransaction.respond}; retransmissions are absorbed. Client side, the
TU calls L{TransactionLayer.send_request} and gets responses and errors
through the callbacks it passes.

Callbacks into the TU are never re-entered with an error from inside
L{TransactionLayer.send_request}: a send that fails is reported on a later
reactor turn.
"""

from __future__ import annotations

import secrets
from types import MappingProxyType
from typing import Callable, Iterable, Mapping, Protocol, Union

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from aiconnect.errors import LocalSipError, RemoteSipError
from aiconnect.sip import trace
from aiconnect.timers import rearm
from aiconnect.sip.message import Message, Request, Response, make_response
from aiconnect.sip.peer import Peer, SipTransportLike
from aiconnect.sip.repeats import DEFAULT_CAP, RepeatTable
from aiconnect.sip.transaction import (
    Absorbed,
    Action,
    InviteClientMachine,
    InviteServerMachine,
    NonInviteClientMachine,
    NonInviteServerMachine,
    PassAck,
    PassResponse,
    SendAck,
    SendRequest,
    SendResponse,
    State,
    StrayResponse,
    Terminated,
    Timeout,
    TimerConfig,
    TransportError,
    client_key,
    client_machine_for,
    has_magic_branch,
    make_cancel,
    new_branch,
    server_key,
    server_machine_for,
)

__all__ = [
    "STAT_NAMES",
    "TransactionUser",
    "TransactionLayer",
    "ServerTransaction",
    "ClientTransaction",
]

ClientMachine = Union[InviteClientMachine, NonInviteClientMachine]
ServerMachine = Union[InviteServerMachine, NonInviteServerMachine]

#: A transaction key, from L{client_key} or L{server_key}.
TxKey = tuple[object, ...]

#: Names of the counters in L{TransactionLayer.stats}.
STAT_NAMES = (
    "client_transactions",  # client transactions created
    "server_transactions",  # server transactions created
    "retransmissions",  # requests, ACKs and responses sent again
    "absorbed",  # inputs absorbed by a transaction (retransmissions, late messages)
    "repeats_unparsed",  # UDP retransmissions recognised by their octets, not parsed
    "timeouts",  # Timer B/F/H (or the CANCEL wait) fired
    "transport_errors",  # sends that failed
    "stray_responses",  # 2xx to INVITE matching no transaction, given to the TU
    "dropped_responses",  # other responses matching no transaction
    "acks_to_tu",  # ACKs given to the TU (for a 2xx)
    "screened_out",  # new INVITEs the screen dropped before any transaction (flood)
    "cancels_matched",  # CANCELs answered 200
    "cancels_unmatched",  # CANCELs answered 481
    "cancels_sent",  # CANCELs we sent
    "cancels_too_late",  # cancel() after a final response: nothing sent
    "late_2xx_sent",  # 2xx retransmissions sent after Timer L, statelessly
    "tu_errors",  # exceptions raised by the TU's callbacks
)


class TransactionUser(Protocol):
    """
    What the transaction layer calls on the layer above (the UA core).
    """

    def request_received(self, server_tx: ServerTransaction, request: Request) -> None:
        """
        A new request (not an ACK or CANCEL) arrived; answer it with
        C{server_tx.respond(...)}. Raising L{RemoteSipError} answers it with
        the error's status hint.
        """

    def cancel_received(self, invite_server_tx: ServerTransaction, cancel: Request) -> None:
        """
        A CANCEL matched an INVITE that has no final response yet; the layer
        already answered the CANCEL with 200 (RFC 3261 s9.2). The TU should
        answer the INVITE with 487.
        """

    def ack_received(self, ack: Request, source: Peer) -> None:
        """
        An ACK for a 2xx arrived (it matched no transaction, or an INVITE
        server transaction in the Accepted state; RFC 6026 s7.1).
        """

    def stray_response(self, response: Response, source: Peer) -> None:
        """
        A 2xx to an INVITE matched no client transaction (a retransmission
        after Timer M, or another fork's answer): the UA core ACKs it
        (RFC 3261 s13.2.2.4) and may end the dialog.
        """


class _Transaction:
    """
    What client and server transactions share: the machine, the key, the
    peer and the one delayed call.
    """

    def __init__(
        self,
        layer: TransactionLayer,
        machine: ClientMachine | ServerMachine,
        key: TxKey,
        peer: Peer,
    ) -> None:
        self._layer = layer
        self._machine = machine
        self.key = key
        self._peer = peer
        self._delayed: IDelayedCall | None = None
        self._live = True
        #: The octets of the request as received, while in the layer's
        #: L{RepeatTable} (UDP server transactions).
        self._datagram: bytes | None = None

    @property
    def request(self) -> Request:
        """
        The request of this transaction (for a client: as sent, with our Via).
        """
        return self._machine.request

    @property
    def state(self) -> State:
        """
        The machine's current L{State}.
        """
        return self._machine.state

    @property
    def final_response(self) -> Response | None:
        """
        The first final response received (client) or sent (server).
        """
        return self._machine.final_response

    @property
    def final_status(self) -> int | None:
        """
        The status of the final response, or C{None} before one.
        """
        r = self._machine.final_response
        return None if r is None else r.status

    @property
    def is_invite(self) -> bool:
        """
        Whether this is an INVITE transaction.
        """
        return self._machine.request.method == "INVITE"

    def _report_error(self, reason: str) -> None:
        raise NotImplementedError


class ServerTransaction(_Transaction):
    """
    A server transaction: one request received, the TU's responses sent back.

    @ivar on_error: called once with C{"timeout"} (Timer H: no ACK for a
        non-2xx final) or C{"transport: <text>"} when a response could not be
        sent (RFC 3261 s17.2.4); C{None} means the error is only logged and
        counted. The TU may set it.
    """

    _machine: ServerMachine

    def __init__(self, layer: TransactionLayer, machine: ServerMachine, key: TxKey, source: Peer) -> None:
        super().__init__(layer, machine, key, source)
        self.on_error: Callable[[str], None] | None = None

    def __repr__(self) -> str:
        return "<ServerTransaction %s %s from %s>" % (self.request.method, self.state.value, self._peer)

    @property
    def source(self) -> Peer:
        """
        Where the request came from; responses go back through it.
        """
        return self._peer

    def respond(self, response: Response) -> None:
        """
        Send a response (RFC 3261 s17.2.1, s17.2.2).

        A 2xx to an INVITE may be sent again (the UA core's s13.3.1.4
        retransmissions): through the transaction while it is Accepted, and
        straight to the transport once Timer L has ended it.

        @raise LocalSipError: if the transaction cannot take it (a second
            final response, a 1xx after the final ...).
        """
        layer = self._layer
        if (
            self.state is State.TERMINATED
            and self.is_invite
            and 200 <= response.status < 300
            and self.final_status is not None
            and 200 <= self.final_status < 300
        ):
            layer.stats["late_2xx_sent"] += 1
            layer._send_response(self, response)
            return
        layer._run(self, self._machine.send_response(response, layer._now()))

    def _report_error(self, reason: str) -> None:
        self._layer.log.warn(
            "server transaction failed: {reason} ({method} call_id={call_id})",
            reason=reason,
            method=self.request.method,
            call_id=self.request.call_id,
        )
        if self.on_error is not None:
            self._layer._call_tu(self.on_error, reason)


class ClientTransaction(_Transaction):
    """
    A client transaction: our request, and the responses to it.
    """

    _machine: ClientMachine

    def __init__(
        self,
        layer: TransactionLayer,
        machine: ClientMachine,
        key: TxKey,
        peer: Peer,
        on_response: Callable[[Response], None],
        on_error: Callable[[str], None],
    ) -> None:
        super().__init__(layer, machine, key, peer)
        self._on_response = on_response
        self._on_error = on_error
        self._cancel_pending: tuple[tuple[str, str], ...] | None = None
        self._cancel_tx: ClientTransaction | None = None

    def __repr__(self) -> str:
        return "<ClientTransaction %s %s to %s>" % (self.request.method, self.state.value, self._peer)

    @property
    def peer(self) -> Peer:
        """
        Where the request is sent.
        """
        return self._peer

    @property
    def cancel_transaction(self) -> ClientTransaction | None:
        """
        The CANCEL's own client transaction, once sent.
        """
        return self._cancel_tx

    def cancel(self, extra_headers: Iterable[tuple[str, str]] = ()) -> None:
        """
        Cancel this INVITE (RFC 3261 s9.1).

        The CANCEL goes out once a provisional response has arrived (at once
        if one has); if a final response arrives first, nothing is sent.
        Calling it again, or after the final response, does nothing (the
        latter is counted as C{cancels_too_late}). If no final response
        follows the CANCEL within 64*T1, C{on_error("timeout")} is called.

        @param extra_headers: added to the CANCEL, e.g. a C{Reason} (RFC 3326).
        @raise LocalSipError: for a non-INVITE transaction (s9: CANCEL is for
            INVITE).
        """
        if not self.is_invite:
            raise LocalSipError("only an INVITE is cancelled (RFC 3261 s9)")
        if self._cancel_tx is not None or self._cancel_pending is not None:
            return
        if self.final_status is not None or self.state is State.TERMINATED:
            self._layer.stats["cancels_too_late"] += 1
            return
        self._cancel_pending = tuple(extra_headers)
        if self.state is State.PROCEEDING:
            self._send_cancel()

    def _send_cancel(self) -> None:
        headers = self._cancel_pending or ()
        self._cancel_pending = None
        layer = self._layer
        layer.stats["cancels_sent"] += 1
        cancel = make_cancel(self.request, headers)
        assert isinstance(self._machine, InviteClientMachine)
        layer._run(self, self._machine.cancel_sent(layer._now()))
        self._cancel_tx = layer.send_request(cancel, self._peer, self._cancel_response, self._cancel_error)

    def _cancel_response(self, response: Response) -> None:
        if trace.debug:
            self._layer.log.debug(
                "CANCEL answered {status} call_id={call_id}", status=response.status, call_id=response.call_id
            )

    def _cancel_error(self, reason: str) -> None:
        self._layer.log.info(
            "CANCEL failed: {reason} call_id={call_id}", reason=reason, call_id=self.request.call_id
        )

    def _passed_up(self, response: Response) -> None:
        if self._cancel_pending is None:
            return
        if response.status < 200 and self.state is State.PROCEEDING:
            self._send_cancel()
        elif response.status >= 200:
            # s9.1: a final response arrived first; the CANCEL is not sent.
            self._cancel_pending = None

    def _report_error(self, reason: str) -> None:
        self._cancel_pending = None
        self._layer._call_tu(self._on_error, reason)


class TransactionLayer:
    """
    The transaction layer: matches messages to transactions, runs them, and
    talks to the transport below and the TU above.

    @ivar stats: counters, named in L{STAT_NAMES}.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        transport: SipTransportLike,
        tu: TransactionUser,
        timers: TimerConfig = TimerConfig(),
        repeat_cap: int = DEFAULT_CAP,
    ) -> None:
        """
        @param reactor: the clock every timer runs on.
        @param transport: sends messages and names our Via.
        @param tu: the transaction user.
        @param timers: T1, T2 and T4.
        @param repeat_cap: the most UDP requests remembered by their octets
            (L{absorb_repeat}).
        """
        self._reactor = reactor
        self._transport = transport
        self._tu = tu
        self._timers = timers
        self._clients: dict[TxKey, ClientTransaction] = {}
        self._servers: dict[TxKey, ServerTransaction] = {}
        #: The live UDP server transactions by their request's octets.
        self.repeats: RepeatTable[ServerTransaction] = RepeatTable(repeat_cap)
        self.stats: dict[str, int] = {name: 0 for name in STAT_NAMES}
        #: Asked about each new out-of-dialog INVITE before a server
        #: transaction exists (so before 100 Trying): C{False} drops it
        #: silently (flood protection, SPEC s12); L{None} = accept all.
        self.screen: Callable[[Request, Peer], bool] | None = None

    @property
    def timers(self) -> TimerConfig:
        """
        The timer configuration.
        """
        return self._timers

    @property
    def client_transactions(self) -> Mapping[TxKey, ClientTransaction]:
        """
        The live client transactions by key (read-only).
        """
        return MappingProxyType(self._clients)

    @property
    def server_transactions(self) -> Mapping[TxKey, ServerTransaction]:
        """
        The live server transactions by key (read-only).
        """
        return MappingProxyType(self._servers)

    def stop(self) -> None:
        """
        Forget every transaction and cancel their timers (at shutdown).
        """
        for tx in list(self._clients.values()) + list(self._servers.values()):
            tx._live = False
            self._cancel_timer(tx)
        self._clients.clear()
        self._servers.clear()
        self.repeats.clear()

    # -- from the transport -------------------------------------------------

    def absorb_repeat(self, data: bytes, source: Peer) -> bool:
        """
        A UDP datagram, before it is parsed: if its octets are exactly the
        request of a live server transaction, from the same source, it is
        a retransmission (RFC 3261 s17.2.1, s17.2.2), handled here as the
        parsed request would be (the last response sent again, or
        absorbed) without parsing it again.

        @return: whether it was handled; if not, the transport parses it.
        """
        tx = self.repeats.get(data)
        if tx is None or not tx._live or source != tx._peer:
            return False
        self.stats["repeats_unparsed"] += 1
        self._run(tx, tx._machine.receive_request(tx._machine.request, self._now()))
        return True

    def message_received(self, message: Message, source: Peer) -> None:
        """
        A parsed message arrived from the transport.

        @param message: the request or response.
        @param source: where it came from.
        """
        if trace.debug:
            self.log.debug(
                "received {kind} {what} call_id={call_id} from {source}",
                kind="request" if isinstance(message, Request) else "response",
                what=message.method if isinstance(message, Request) else message.status,
                call_id=message.call_id,
                source=str(source),
            )
        try:
            if isinstance(message, Response):
                self._response_received(message, source)
            elif message.method == "ACK":
                self._ack_received(message, source)
            elif message.method == "CANCEL":
                self._cancel_received(message, source)
            else:
                self._request_received(message, source)
        except RemoteSipError as e:
            # A Via or CSeq we cannot read: the transport should have
            # refused the message; there is nothing to match it to.
            self.log.warn("unmatchable message dropped: {reason}", reason=e.reason)
        except LocalSipError:
            self.log.failure(
                "transaction layer bug on a received message call_id={call_id}", call_id=message.call_id
            )

    def _response_received(self, response: Response, source: Peer) -> None:
        # RFC 3261 s17.1.3: top Via branch + CSeq method.
        tx = self._clients.get(client_key(response))
        if tx is not None:
            self._run(tx, tx._machine.receive_response(response, self._now()), source)
            return
        self._stray(response, source)

    def _stray(self, response: Response, source: Peer) -> None:
        if 200 <= response.status < 300 and response.cseq.method == "INVITE":
            # RFC 3261 s18.1.2, s13.2.2.4: the UA core ACKs a stray 2xx.
            self.stats["stray_responses"] += 1
            self._call_tu(self._tu.stray_response, response, source)
        else:
            self.stats["dropped_responses"] += 1
            if trace.debug:
                self.log.debug(
                    "dropped response {status} matching no transaction call_id={call_id}",
                    status=response.status,
                    call_id=response.call_id,
                )

    def _ack_received(self, ack: Request, source: Peer) -> None:
        # RFC 3261 s17.2.3: an ACK matches the INVITE it acknowledges; an
        # ACK for a 2xx carries a new branch and matches nothing.
        tx = self._servers.get(server_key(ack))
        if tx is None or not tx.is_invite:
            self.stats["acks_to_tu"] += 1
            self._call_tu(self._tu.ack_received, ack, source)
            return
        self._run(tx, tx._machine.receive_request(ack, self._now()))

    def _cancel_received(self, cancel: Request, source: Peer) -> None:
        existing = self._servers.get(server_key(cancel))
        if existing is not None:
            # A retransmitted CANCEL: its transaction answers it again.
            self._run(existing, existing._machine.receive_request(cancel, self._now()))
            return
        invite_tx = self._servers.get(server_key(cancel, "INVITE"))
        cancel_tx = self._new_server(cancel, source)
        if invite_tx is None:
            # RFC 3261 s9.2: no matching transaction.
            self.stats["cancels_unmatched"] += 1
            cancel_tx.respond(make_response(cancel, 481))
            return
        # RFC 3261 s9.2: the CANCEL is answered 200 whatever the INVITE's
        # state, with the To tag of the INVITE's responses when it has one.
        self.stats["cancels_matched"] += 1
        last = invite_tx._machine.last_response
        to_tag = last.to_tag if last is not None else None
        cancel_tx.respond(make_response(cancel, 200, to_tag=to_tag))
        if invite_tx.final_status is None:
            self._call_tu(self._tu.cancel_received, invite_tx, cancel)

    def _request_received(self, request: Request, source: Peer) -> None:
        key = server_key(request)
        tx = self._servers.get(key)
        if tx is not None:
            if source.connection is not tx._peer.connection or source != tx._peer:
                # A retransmission over another connection (the first one
                # closed, RFC 3261 s18.2.2): answer where it came from.
                tx._peer = source
            self._run(tx, tx._machine.receive_request(request, self._now()))
            return
        if (
            self.screen is not None
            and request.method == "INVITE"
            and request.to_tag is None
            and not self.screen(request, source)
        ):
            self.stats["screened_out"] += 1
            return
        tx = self._new_server(request, source)
        try:
            self._tu.request_received(tx, request)
        except RemoteSipError as e:
            self.log.warn(
                "request refused: {status} {reason} call_id={call_id}",
                status=e.status_hint,
                reason=e.reason,
                call_id=request.call_id,
            )
            self._answer_error(tx, e.status_hint, e.reason)
        except Exception:
            self.stats["tu_errors"] += 1
            self.log.failure(
                "TU failed on {method} call_id={call_id}", method=request.method, call_id=request.call_id
            )
            self._answer_error(tx, 500, "")

    def _answer_error(self, tx: ServerTransaction, status: int, reason: str) -> None:
        if tx.final_status is not None or tx.state is State.TERMINATED:
            return
        tx.respond(make_response(tx.request, status, reason, to_tag=secrets.token_hex(8)))

    def _new_server(self, request: Request, source: Peer) -> ServerTransaction:
        machine = server_machine_for(request, source.reliable, self._timers)
        tx = ServerTransaction(self, machine, server_key(request), source)
        self._servers[tx.key] = tx
        if request.datagram is not None:
            # Kept by the transaction (and the table) only while it lives.
            tx._datagram, request.datagram = request.datagram, None
            self.repeats.add(tx._datagram, tx)
        self.stats["server_transactions"] += 1
        self._run(tx, machine.start(self._now()))
        return tx

    # -- from the TU -----------------------------------------------------------

    def send_request(
        self,
        request: Request,
        peer: Peer,
        on_response: Callable[[Response], None],
        on_error: Callable[[str], None],
    ) -> ClientTransaction:
        """
        Send a request in a new client transaction (RFC 3261 s17.1).

        The layer sends a copy with a new top Via (C{;rport}, a fresh branch,
        transport and sent-by from C{transport.local_via(peer)}), except for
        a CANCEL, which must already carry its INVITE's Via (s9.1): build it
        with L{aiconnect.sip.transaction.make_cancel} from C{invite_tx.request},
        or simply call
        L{ClientTransaction.cancel}.

        @param request: the request, without our Via.
        @param peer: where to send it.
        @param on_response: called with every response passed up: each 1xx,
            the final, and for an INVITE each 2xx retransmission while the
            transaction is Accepted (RFC 6026 s8.4). The layer ACKs non-2xx
            finals itself; the TU ACKs 2xx (see L{send_ack}).
        @param on_error: called once, and then nothing else, with
            C{"timeout"} (Timer B/F, or no final 64*T1 after a CANCEL) or
            C{"transport: <text>"} when a send failed; never from inside
            this call.
        @return: the transaction.
        @raise LocalSipError: for an ACK (use L{send_ack}), a CANCEL without
            its INVITE's Via, or if a transaction with the same key exists.
        """
        if request.method == "ACK":
            raise LocalSipError("an ACK makes no transaction: use send_ack()")
        request = request.copy()
        if request.method == "CANCEL":
            if "Via" not in request.headers or not has_magic_branch(request):
                raise LocalSipError("a CANCEL needs its INVITE's Via (RFC 3261 s9.1): use make_cancel()")
        else:
            request.headers.add_first("Via", self._via(peer))
        key = client_key(request)
        if key in self._clients:
            raise LocalSipError("a client transaction with key %r exists" % (key,))
        machine = client_machine_for(request, peer.reliable, self._timers)
        tx = ClientTransaction(self, machine, key, peer, on_response, on_error)
        self._clients[key] = tx
        self.stats["client_transactions"] += 1
        self._run(tx, machine.start(self._now()))
        return tx

    def send_ack(self, ack: Request, peer: Peer) -> Request:
        """
        Send an ACK for a 2xx, outside any transaction (RFC 3261 s13.2.2.4,
        s17.1.1.3).

        An ACK without a Via gets one with a fresh branch; an ACK that has
        one (the same ACK sent again for a retransmitted 2xx) is sent as it
        is. A failed send is logged and counted: the next 2xx retransmission
        brings another chance.

        @return: the ACK as sent; pass it back here to send it again.
        """
        if ack.method != "ACK":
            raise LocalSipError("send_ack() sends ACKs only, not %s" % (ack.method,))
        if "Via" not in ack.headers:
            ack = ack.copy()
            ack.headers.add_first("Via", self._via(peer))
        d = defer.maybeDeferred(self._transport.send_request, ack, peer)
        d.addErrback(self._ack_failed, ack)
        return ack

    def _ack_failed(self, failure: Failure, ack: Request) -> None:
        self.stats["transport_errors"] += 1
        self.log.warn(
            "ACK not sent: {reason} call_id={call_id}", reason=failure.getErrorMessage(), call_id=ack.call_id
        )

    def _via(self, peer: Peer) -> str:
        token, sent_by = self._transport.local_via(peer)
        return "SIP/2.0/%s %s;rport;branch=%s" % (token, sent_by, new_branch())

    # -- running the machines -------------------------------------------------

    def _now(self) -> float:
        return self._reactor.seconds()

    def _run(self, tx: _Transaction, actions: list[Action], source: Peer | None = None) -> None:
        """
        Carry out a machine's actions, then re-arm the transaction's timer.
        """
        for action in actions:
            if isinstance(action, SendRequest):
                if action.retransmission:
                    self.stats["retransmissions"] += 1
                self._send_request(tx, action.request)
            elif isinstance(action, SendAck):
                if action.retransmission:
                    self.stats["retransmissions"] += 1
                self._send_request(tx, action.ack)
            elif isinstance(action, SendResponse):
                if action.retransmission:
                    self.stats["retransmissions"] += 1
                self._send_response(tx, action.response)
            elif isinstance(action, PassResponse):
                assert isinstance(tx, ClientTransaction)
                self._call_tu(tx._on_response, action.response)
                tx._passed_up(action.response)
            elif isinstance(action, PassAck):
                self.stats["acks_to_tu"] += 1
                self._call_tu(self._tu.ack_received, action.ack, tx._peer)
            elif isinstance(action, StrayResponse):
                self._stray(action.response, source if source is not None else tx._peer)
            elif isinstance(action, Timeout):
                self.stats["timeouts"] += 1
                tx._report_error("timeout")
            elif isinstance(action, TransportError):
                tx._report_error("transport: " + action.reason)
            elif isinstance(action, Absorbed):
                self.stats["absorbed"] += 1
            elif isinstance(action, Terminated):
                self._forget(tx)
        self._rearm(tx)

    def _forget(self, tx: _Transaction) -> None:
        tx._live = False
        if isinstance(tx, ClientTransaction):
            if self._clients.get(tx.key) is tx:
                del self._clients[tx.key]
        elif isinstance(tx, ServerTransaction):
            if self._servers.get(tx.key) is tx:
                del self._servers[tx.key]
            if tx._datagram is not None:
                self.repeats.discard(tx._datagram, tx)
                tx._datagram = None
        self._cancel_timer(tx)

    def _send_request(self, tx: _Transaction, request: Request) -> None:
        d = defer.maybeDeferred(self._transport.send_request, request, tx._peer)
        d.addErrback(self._send_failed, tx)

    def _send_response(self, tx: _Transaction, response: Response) -> None:
        d = defer.maybeDeferred(self._transport.send_response, response, tx._peer)
        d.addErrback(self._send_failed, tx)

    def _send_failed(self, failure: Failure, tx: _Transaction) -> None:
        self.stats["transport_errors"] += 1
        reason = failure.getErrorMessage()
        # Report on a later turn, so no TU callback runs inside the call
        # that sent (send_request, respond ...).
        self._reactor.callLater(0, self._transport_error, tx, reason)

    def _transport_error(self, tx: _Transaction, reason: str) -> None:
        if not tx._live:
            return
        self._run(tx, tx._machine.transport_error(reason, self._now()))

    def _rearm(self, tx: _Transaction) -> None:
        deadline = tx._machine.next_deadline()
        if deadline is None or not tx._live:
            self._cancel_timer(tx)
            return
        delay = max(0.0, deadline - self._now())
        tx._delayed = rearm(self._reactor, tx._delayed, delay, self._timer_fired, tx)

    def _cancel_timer(self, tx: _Transaction) -> None:
        call = tx._delayed
        tx._delayed = None
        if call is not None and call.active():
            call.cancel()

    def _timer_fired(self, tx: _Transaction) -> None:
        tx._delayed = None
        self._run(tx, tx._machine.handle_timer(self._now()))

    def _call_tu(self, fn: Callable[..., object], *args: object) -> None:
        """
        Call the TU; its exceptions are logged and counted, never propagated
        into the layer's bookkeeping.
        """
        try:
            fn(*args)
        except Exception:
            self.stats["tu_errors"] += 1
            self.log.failure("transaction user callback {fn!r} failed", fn=fn)

