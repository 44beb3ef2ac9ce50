"""
A UAC's SIP stack for Clock tests (trunk health, SPEC s13): the real UA
core and transaction layer over a recording L{tests.fakes.FakeSipTransport},
and the peer's side: answering what was sent.
"""

from __future__ import annotations

from twisted.internet.task import Clock

from aiconnect.sip.message import Request, parse
from aiconnect.sip.peer import Peer
from aiconnect.sip.transaction import TimerConfig
from aiconnect.sip.txlayer import TransactionLayer
from aiconnect.sip.ua import UaConfig, UserAgent
from tests.fakes import FakeSipTransport
from tests.integration.srs_peer import _response_lines

__all__ = ["UacStack"]


class UacStack:
    """
    @ivar clock: the L{Clock} driving every timer.
    @ivar transport: the recording transport (C{127.0.0.1:5060}).
    @ivar ua: the UA core.
    @ivar tx: the transaction layer.
    """

    def __init__(self) -> None:
        self.clock = Clock()
        self.transport = FakeSipTransport("127.0.0.1:5060")
        self.ua = UserAgent(self.clock, self.transport, config=UaConfig())
        self.tx = TransactionLayer(self.clock, self.transport, self.ua, TimerConfig())
        self.ua.txlayer = self.tx

    def sent(self, method: str, peer: Peer | None = None) -> list[Request]:
        """
        @return: the requests of C{method} sent (to C{peer} when given).
        """
        return [m for m, p in self.transport.requests if m.method == method and (peer is None or p == peer)]

    def respond(self, request: Request, status: int, reason: str, peer: Peer, tag: str = "t", extra: list[str] | None = None) -> None:
        """
        Let C{peer} answer a request we sent.
        """
        self.tx.message_received(parse(_response_lines(request, status, reason, tag, extra)), peer)
