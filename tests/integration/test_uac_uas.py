"""
A UAC and a UAS built from the stack complete INVITE / 200 / ACK / BYE over
real UDP, TCP and TLS sockets on 127.0.0.1, and over UDP with 30 % of the
datagrams dropped.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from aiconnect import tlsutil
from aiconnect.config import TlsConfig
from aiconnect.sip.peer import Peer
from aiconnect.sip.transaction import TimerConfig
from aiconnect.sip.transport import SipTransport
from aiconnect.sip.txlayer import TransactionLayer
from aiconnect.sip.ua import InviteSession, ServerInvite, UaConfig, UserAgent
from tests.integration.helpers import Certificates

OFFER = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0\r\na=sendonly\r\na=label:1\r\n"
)
ANSWER = OFFER.replace(b"sendonly", b"recvonly")
TIMERS = TimerConfig(t1=0.05, t2=0.4, t4=0.5)


class LossyTransport(SipTransport):
    """
    A transport that drops a seeded 30 % of the UDP datagrams it sends.
    """

    def __init__(self, *args: Any, loss: float = 0.3, seed: int = 7, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rng = random.Random(seed)
        self._loss = loss
        self.dropped = 0

    def _send_udp(self, data: bytes, host: str, port: int) -> None:
        if self._rng.random() < self._loss:
            self.dropped += 1
            return
        super()._send_udp(data, host, port)


class AcceptingHandler:
    """
    A UAS application that answers every INVITE with 200 and an SDP answer.
    """

    def __init__(self) -> None:
        self.sessions: list[InviteSession] = []
        self.terminated: defer.Deferred[str] = defer.Deferred()

    def invite_received(self, invite: ServerInvite) -> None:
        invite.provisional(180)
        session = invite.accept(ANSWER, feature_tags=("+sip.srs",))
        session.handler = self
        self.sessions.append(session)

    def session_request(self, session: InviteSession, tx: Any, request: Any) -> bool:
        return False

    def session_terminated(self, session: InviteSession, reason: str) -> None:
        if not self.terminated.called:
            self.terminated.callback(reason)


class Stack:
    """
    Transport + transaction layer + UA core on real loopback sockets.
    """

    def __init__(self, transport_cls: type = SipTransport, handler: Any = None, certs: Certificates | None = None, **kw: Any) -> None:
        server_ctx = creator = None
        if certs is not None:
            tls_cfg = TlsConfig(certificate=str(certs.cert), private_key=str(certs.key), ca_certificates=str(certs.ca))
            server_ctx = tlsutil.server_context_factory(tls_cfg)
            creator = lambda name: tlsutil.client_context_factory(name, tls_cfg)  # noqa: E731
        self.transport = transport_cls(reactor, host="127.0.0.1", public_address="127.0.0.1", tls_server_context=server_ctx, tls_client_creator=creator, **kw)
        self.ua = UserAgent(reactor, self.transport, invite_handler=handler, config=UaConfig(feature_tags=("+sip.srs",), t1=TIMERS.t1, t2=TIMERS.t2))
        self.txlayer = TransactionLayer(reactor, self.transport, self.ua, TIMERS)
        self.ua.txlayer = self.txlayer
        self.transport.receiver = self.txlayer
        self.transport.listen_udp(0)
        self.transport.listen_tcp(0)
        if certs is not None:
            self.transport.listen_tls(0)


class UacUasTests(TestCase):
    """
    INVITE / 200 / ACK / BYE between two stacks.
    """

    timeout = 60

    def _pair(self, transport_cls: type = SipTransport, certs: Certificates | None = None, **kw: Any) -> tuple[Stack, Stack, AcceptingHandler]:
        handler = AcceptingHandler()
        uas = Stack(transport_cls, handler, certs, **kw)
        uac = Stack(transport_cls, None, certs, **kw)
        for stack in (uas, uac):
            self.addCleanup(stack.transport.stop)
            self.addCleanup(stack.txlayer.stop)
            self.addCleanup(stack.ua.stop)
        return uac, uas, handler

    async def _call(self, uac: Stack, uas: Stack, handler: AcceptingHandler, transport: str) -> None:
        port = uas.transport.port(transport)
        assert port is not None
        uri = "sip:recorder@127.0.0.1:%d;transport=%s" % (port, transport)
        ringing: list[int] = []
        inv = uac.ua.invite(uri, Peer(transport, "127.0.0.1", port, server_name="127.0.0.1"), OFFER, headers=[("Require", "siprec")], feature_tags=("+sip.src",))
        inv.on_provisional = lambda r: ringing.append(r.status)
        session = await inv.deferred
        self.assertEqual(session.role, "uac")
        self.assertEqual(len(handler.sessions), 1)
        uas_session = handler.sessions[0]
        ack = await uas_session.ack_deferred
        self.assertEqual(ack.method, "ACK")
        self.assertEqual(session.dialog.call_id, uas_session.dialog.call_id)
        self.assertEqual(session.dialog.remote_tag, uas_session.dialog.local_tag)
        bye = await session.bye()
        self.assertEqual(bye.status, 200)
        reason = await handler.terminated
        self.assertEqual(reason, "bye")
        self.assertEqual(uac.ua.sessions, [])
        self.assertEqual(uas.ua.sessions, [])

    async def test_udp(self) -> None:
        """
        The call completes over UDP.
        """
        uac, uas, handler = self._pair()
        await self._call(uac, uas, handler, "udp")

    async def test_tcp(self) -> None:
        """
        The call completes over TCP, reusing one connection.
        """
        uac, uas, handler = self._pair()
        await self._call(uac, uas, handler, "tcp")
        self.assertEqual(len(uas.transport._all_connections), 1)

    async def test_tls(self) -> None:
        """
        The call completes over TLS with certificates generated by the test,
        the UAC verifying the UAS's certificate against 127.0.0.1.
        """
        uac, uas, handler = self._pair(certs=Certificates())
        await self._call(uac, uas, handler, "tls")

    async def test_tls_wrong_host_fails(self) -> None:
        """
        A certificate that does not name the target makes the INVITE fail
        with 503 (transport failure, RFC 3261 s8.1.3.1).
        """
        from aiconnect.sip.ua import InviteFailed

        uac, uas, handler = self._pair(certs=Certificates(names=("srs.example.org",)))
        port = uas.transport.port("tls")
        inv = uac.ua.invite("sip:r@127.0.0.1:%d;transport=tls" % port, Peer("tls", "127.0.0.1", port, server_name="127.0.0.1"), OFFER)
        with self.assertRaises(InviteFailed) as cm:
            await inv.deferred
        self.assertEqual(cm.exception.status, 503)
        self.assertEqual(handler.sessions, [])

    async def test_udp_with_loss(self) -> None:
        """
        With 30 % of datagrams dropped in both directions, retransmission
        timers still complete INVITE / 200 / ACK / BYE.
        """
        uac, uas, handler = self._pair(LossyTransport)
        await self._call(uac, uas, handler, "udp")
        self.assertGreater(uac.transport.dropped + uas.transport.dropped, 0)
