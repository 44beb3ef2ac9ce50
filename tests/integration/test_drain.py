# -*- test-case-name: tests.integration.test_drain -*-
"""
The SIGTERM drain in-process (SPEC s7, README): the SIP listeners and the
transaction layer stay up while the sessions end, so an unanswered BYE to
the SRC is retransmitted and a new INVITE gets 503, until every
transaction is done or the drain timeout passes.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from aiconnect import config as config_mod
from aiconnect.sip.message import parse
from aiconnect.tap import build_service
from tests.fakes import UdpPeer, listen_udp, pause, wait_until
from tests.integration.helpers import Certificates, free_port, status_of, write_config
from tests.integration.siprec_peer import DATA, AppServer, in_dialog, sdp_offer, siprec_invite

DOMAIN = "customer.example.com"
METADATA = (DATA / "rfc8068-s3.2.1-1-metadata.xml").read_bytes()
#: This module's RTP range (inside the integration tests' reserved range).
RTP = (27700, 27799)


class DrainTests(TestCase):
    """
    stopService on the real service tree, with an SRC that never answers
    our BYE.
    """

    timeout = 30

    async def setUp(self) -> None:
        self.app = AppServer({})
        app_port = self.app.listen()
        self.addCleanup(self.app.port.stopListening)
        directory = Path(tempfile.mkdtemp(prefix="aiconnect-drain-"))
        self.sip = free_port()
        path = write_config(
            directory, Certificates(), self.sip, self.sip, 0, free_port(), extra="callback_timeout = 3.0\n", app_port=app_port, rtp=RTP
        )
        cfg = config_mod.load(path)
        self.database = cfg.events.database
        self.service = build_service(cfg, reactor)
        # Long enough for several BYE retransmissions (T1 = 50 ms).
        self.service.drain_timeout = 1.0
        self.service.startService()
        self.addCleanup(self._stop_if_running)

    async def _stop_if_running(self) -> None:
        if self.service.running:
            await self.service.stopService()

    async def call(self) -> tuple[UdpPeer, int]:
        """
        An answered and ACKed call from an SRC that then swallows requests.
        """
        src, local = listen_udp(self)
        invite, ids = siprec_invite("udp", local, DOMAIN, sdp_offer([("96", local + 2, 8)]), METADATA)
        src.send(invite, self.sip)
        ok = await src.next_final(timeout=10, call_id=ids["call_id"])
        self.assertEqual(status_of(ok), 200, ok)
        src.send(in_dialog("ACK", "udp", local, ok, ids, 101, DOMAIN), self.sip)
        await self.app.wait_for("events", 1)
        src.skip_all()
        return src, local

    async def test_unanswered_bye_is_retransmitted(self) -> None:
        """
        The BYE to an SRC that does not answer is retransmitted (same
        transaction, Timer E) before the service finishes stopping.
        """
        src, _ = await self.call()
        await self.service.stopService()
        byes = [parse(m) for m in src.received if m.startswith(b"BYE ")]
        self.assertGreaterEqual(len(byes), 2, [m[:60] for m in src.received])
        self.assertEqual(len({b.headers.get("Via") for b in byes}), 1)
        # A clean stop leaves no dialog for the next start to end.
        db = sqlite3.connect(self.database)
        self.addCleanup(db.close)
        self.assertEqual(db.execute("SELECT COUNT(*) FROM live_dialogs").fetchone()[0], 0)

    async def test_new_invite_during_drain_gets_503(self) -> None:
        """
        An INVITE arriving while the service drains is answered 503 with
        Retry-After (not left unanswered), and the drain still ends.
        """
        await self.call()
        stopping = self.service.stopService()
        await pause(0.1)
        late, local = listen_udp(self)
        invite, ids = siprec_invite("udp", local, DOMAIN, sdp_offer([("96", local + 2, 8)]), METADATA)
        late.send(invite, self.sip)
        final: Any = await late.next_final(timeout=5, call_id=ids["call_id"])
        response = parse(final)
        self.assertEqual(response.status, 503)
        self.assertTrue(response.headers.get("Retry-After"))
        await stopping


class HangingApp(Resource):
    """
    An application that never answers newCall (events are taken).

    @ivar held: The newCall requests received.
    @ivar gone: How many of them their client gave up.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.held: list[Any] = []
        self.gone = 0

    def render_POST(self, request: Any) -> Any:
        if request.path == b"/newCall":
            self.held.append(request)
            request.notifyFinish().addBoth(lambda _: setattr(self, "gone", self.gone + 1))
            return NOT_DONE_YET
        return b""


class DrainPendingInviteTests(TestCase):
    """
    An INVITE still waiting for the application when the drain starts.
    """

    timeout = 30

    async def test_pending_invite_gets_503(self) -> None:
        """
        The SRC gets 503 with Retry-After at once (it can try another
        recorder), not silence until its own timeout.
        """
        hanging = HangingApp()
        app = reactor.listenTCP(0, Site(hanging), interface="127.0.0.1")
        self.addCleanup(app.stopListening)
        directory = Path(tempfile.mkdtemp(prefix="aiconnect-drain-"))
        sip = free_port()
        path = write_config(
            directory, Certificates(), sip, sip, 0, free_port(), extra="callback_timeout = 0.6\n",
            app_port=app.getHost().port, rtp=RTP,
        )
        service = build_service(config_mod.load(path), reactor)
        service.drain_timeout = 1.0
        service.startService()
        src, local = listen_udp(self)
        invite, ids = siprec_invite("udp", local, DOMAIN, sdp_offer([("96", local + 2, 8)]), METADATA)
        src.send(invite, sip)
        trying = await src.next_message(5)
        self.assertEqual(status_of(trying), 100)
        await wait_until(lambda: hanging.held)
        stopping = service.stopService()
        final = parse(await src.next_final(timeout=5, call_id=ids["call_id"]))
        self.assertEqual(final.status, 503)
        self.assertTrue(final.headers.get("Retry-After"))
        await stopping
        # The abandoned newCall request times out on its own.
        await wait_until(lambda: hanging.gone == 1)
