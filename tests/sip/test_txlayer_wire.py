"""
Tests for L{aiconnect.sip.txlayer} end to end: a UAC layer and a UAS
layer wired back to back over a lossy fake wire, on a L{task.Clock}.
"""

from __future__ import annotations

import random
from typing import Callable

from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.sip.message import Headers, Request, Response, make_response, parse
from aiconnect.sip.peer import Peer
from aiconnect.sip.transaction import TimerConfig
from aiconnect.sip.txlayer import ServerTransaction, TransactionLayer
from tests.sip.txlayer_helpers import INVITE_IN, OPTIONS_OUT, UAC_PEER, UAS_PEER, RecordingTU, outgoing


class LossyWire:
    """
    Carries serialized messages between two layers after 10 ms, dropping a
    fraction of them with a seeded generator.
    """

    def __init__(self, clock: task.Clock, seed: int, loss: float = 0.3) -> None:
        self.clock = clock
        self.random = random.Random(seed)
        self.loss = loss
        self.sent = 0
        self.dropped = 0

    def carry(self, data: bytes, to: TransactionLayer, source: Peer) -> None:
        self.sent += 1
        if self.random.random() < self.loss:
            self.dropped += 1
            return
        self.clock.callLater(0.01, to.message_received, parse(data), source)


class WireTransport:
    """
    One end of a L{LossyWire}: a L{SipTransportLike} for one layer.
    """

    def __init__(self, wire: LossyWire, me: Peer) -> None:
        self.wire = wire
        self.me = me
        self.other: TransactionLayer | None = None

    def send_request(self, request: Request, peer: Peer) -> Deferred[None]:
        assert self.other is not None
        self.wire.carry(request.to_bytes(), self.other, self.me)
        return defer.succeed(None)

    def send_response(self, response: Response, source: Peer) -> Deferred[None]:
        assert self.other is not None
        self.wire.carry(response.to_bytes(), self.other, self.me)
        return defer.succeed(None)

    def local_via(self, peer: Peer) -> tuple[str, str]:
        return peer.via_transport, "%s:%d" % (self.me.host, self.me.port)


class UserAgentServer(RecordingTU):
    """
    A minimal UAS core: answers INVITE with 180 and 200, retransmitting the
    200 until the ACK (RFC 3261 s13.3.1.4), and any other request with 200.
    """

    def __init__(self, clock: task.Clock, timers: TimerConfig) -> None:
        super().__init__()
        self.clock = clock
        self.timers = timers
        self.on_request = self.answer
        self._retransmit: IDelayedCall | None = None

    def answer(self, tx: ServerTransaction, request: Request) -> None:
        if request.method != "INVITE":
            tx.respond(make_response(request, 200))
            return
        tx.respond(make_response(request, 180, to_tag="uas1"))
        ok = make_response(request, 200, to_tag="uas1", headers=[("Contact", "<sip:bob@192.0.2.2>")])
        tx.respond(ok)
        self._schedule(tx, ok, self.timers.t1, self.clock.seconds() + 64 * self.timers.t1)

    def _schedule(self, tx: ServerTransaction, ok: Response, interval: float, give_up: float) -> None:
        def again() -> None:
            if self.clock.seconds() >= give_up:
                return
            tx.respond(ok)
            self._schedule(tx, ok, min(2 * interval, self.timers.t2), give_up)

        self._retransmit = self.clock.callLater(interval, again)

    def ack_received(self, ack: Request, source: Peer) -> None:
        super().ack_received(ack, source)
        if self._retransmit is not None and self._retransmit.active():
            self._retransmit.cancel()


class UserAgentClient:
    """
    A minimal UAC core: ACKs every 2xx with the same ACK (RFC 3261
    s13.2.2.4), through the transaction's callback or as a stray.
    """

    def __init__(self, layer_ref: Callable[[], TransactionLayer]) -> None:
        self.layer_ref = layer_ref
        self.responses: list[Response] = []
        self.errors: list[str] = []
        self.ack: Request | None = None

    def on_response(self, response: Response) -> None:
        self.responses.append(response)
        if response.cseq.method == "INVITE" and 200 <= response.status < 300:
            self._ack(response)

    def _ack(self, response: Response) -> None:
        if self.ack is None:
            h = Headers()
            h.add("Max-Forwards", "70")
            for name in ("From", "To", "Call-ID"):
                h.add(name, response.headers.get(name) or "")
            h.add("CSeq", "%d ACK" % (response.cseq.number,))
            self.ack = Request("ACK", str(response.contacts[0].uri), h)
        self.ack = self.layer_ref().send_ack(self.ack, UAS_PEER)

    # The TransactionUser side of the UAC layer.
    def request_received(self, server_tx: ServerTransaction, request: Request) -> None:
        raise AssertionError("the UAC receives no request")

    def cancel_received(self, invite_server_tx: ServerTransaction, cancel: Request) -> None:
        raise AssertionError("the UAC receives no CANCEL")

    def ack_received(self, ack: Request, source: Peer) -> None:
        raise AssertionError("the UAC receives no ACK")

    def stray_response(self, response: Response, source: Peer) -> None:
        self._ack(response)


class BackToBackTests(SynchronousTestCase):
    """
    A UAC layer and a UAS layer complete transactions over a wire losing
    30 % of the messages, thanks to retransmissions.
    """

    def run_call(
        self, seed: int
    ) -> tuple[LossyWire, TransactionLayer, TransactionLayer, UserAgentClient, UserAgentServer]:
        clock = task.Clock()
        timers = TimerConfig()
        wire = LossyWire(clock, seed)
        uac_transport = WireTransport(wire, UAC_PEER)
        uas_transport = WireTransport(wire, UAS_PEER)
        uac_tu = UserAgentClient(lambda: uac)
        uas_tu = UserAgentServer(clock, timers)
        uac = TransactionLayer(clock, uac_transport, uac_tu, timers)
        uas = TransactionLayer(clock, uas_transport, uas_tu, timers)
        uac_transport.other = uas
        uas_transport.other = uac

        invite = outgoing(INVITE_IN)
        uac.send_request(invite, UAS_PEER, uac_tu.on_response, uac_tu.errors.append)
        for _ in range(4000):
            clock.advance(0.01)
            if uas_tu.acks and any(r.status == 200 for r in uac_tu.responses):
                break
        options = outgoing(OPTIONS_OUT)
        options_responses: list[Response] = []
        uac.send_request(options, UAS_PEER, options_responses.append, uac_tu.errors.append)
        for _ in range(4000):
            clock.advance(0.01)
            if options_responses:
                break
        uac_tu.responses.extend(options_responses)
        # Let every transaction run out.
        clock.advance(64.0)
        clock.advance(64.0)
        return wire, uac, uas, uac_tu, uas_tu

    def test_lossy_wire(self) -> None:
        """
        INVITE/200/ACK and an OPTIONS transaction complete over a wire
        dropping 30 % of messages, for several seeds.
        """
        total_dropped = 0
        for seed in range(10):
            wire, uac, uas, uac_tu, uas_tu = self.run_call(seed)
            total_dropped += wire.dropped
            self.assertEqual(uac_tu.errors, [], seed)
            self.assertIn(200, [r.status for r in uac_tu.responses if r.cseq.method == "INVITE"], seed)
            self.assertTrue(uas_tu.acks, seed)
            self.assertEqual([r.status for r in uac_tu.responses if r.cseq.method == "OPTIONS"], [200], seed)
            self.assertEqual([r.method for _, r in uas_tu.requests], ["INVITE", "OPTIONS"], seed)
            self.assertEqual(dict(uac.client_transactions), {}, seed)
            self.assertEqual(dict(uas.server_transactions), {}, seed)
        self.assertGreater(total_dropped, 0)

    def test_lossy_wire_needs_retransmissions(self) -> None:
        """
        With a seed that loses the first INVITE, the call still completes
        because Timer A retransmits it.
        """
        for seed in range(100):
            if random.Random(seed).random() < 0.3:
                break
        wire, uac, uas, uac_tu, uas_tu = self.run_call(seed)
        self.assertGreater(uac.stats["retransmissions"], 0)
        self.assertTrue(uas_tu.acks)
        self.assertEqual(len([r for _, r in uas_tu.requests if r.method == "INVITE"]), 1)
