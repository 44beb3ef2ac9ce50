"""
Events delivered once per failure domain, end to end (SPEC s14): node A
(the real server, C{twistd -n aiconnect} in a subprocess) and node B (a
L{build_service} tree in this process) on one PostgreSQL database.  A
SIPRec call on A emits its events while the application answers 503; A
is killed (SIGKILL: no drain, no release, its lease left to expire); the
application comes back, and B takes A's undelivered events over and
delivers them, signed, once each, in order.

RTP ports 62700-62799: node A 62700-62749, node B 62750-62799.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor

from aiconnect import config as config_mod
from aiconnect.tap import build_service
from tests.fakes import pause, wait_until

from tests.integration.siprec_peer import DATA, AppServer, answered_call, in_dialog
from tests.integration.twistd import start_twistd, wait_ready
from tests.storage.pgserver import PostgresTestCase
from tests.storage.test_cluster import cluster_config

DOMAIN = "customer.example.com"
METADATA = (DATA / "rfc8068-s3.2.1-1-metadata.xml").read_bytes()
LEASE = 3.0


class HoldingApp(AppServer):
    """
    The application (L{AppServer}), answering events 503 while C{holding}.
    """

    holding = True
    refused = 0

    def render_POST(self, request: Any) -> bytes:
        if request.path == b"/events" and self.holding:
            self.refused += 1
            request.setResponseCode(503)
            return b""
        return super().render_POST(request)


class KilledNodeTests(PostgresTestCase):
    """
    A node killed with undelivered events; a survivor delivers them.
    """

    timeout = 90

    async def test_kill_9_survivor_delivers(self) -> None:
        """
        SESSIONSTARTED and SESSIONCOMPLETED of a call on A, stored in
        PostgreSQL by A and refused by the application, reach it from B
        after A's SIGKILL: in order, once each, and the rows are B's,
        delivered.
        """
        url = self.server.url(self.database)
        app = HoldingApp({})
        app_port = app.listen()
        self.addCleanup(app.port.stopListening)
        path_a, sip_a, _ = cluster_config(url, "node-a", (62700, 62749), app_port, lease=LEASE)
        node_a = start_twistd(self, path_a)
        await wait_ready(self, node_a, sip_a)
        path_b, _, _ = cluster_config(url, "node-b", (62750, 62799), app_port, lease=LEASE)
        node_b = build_service(config_mod.load(path_b), reactor)
        node_b.startService()
        self.addCleanup(lambda: node_b.stopService() if node_b.running else None)

        src, local, ok, ids = await answered_call(self, sip_a, DOMAIN, METADATA)
        src.send(in_dialog("BYE", "udp", local, ok, ids, 102, DOMAIN), sip_a)

        def stored() -> list[tuple[Any, ...]]:
            return self.query("SELECT owner_node, seq, event, delivered IS NOT NULL FROM events ORDER BY seq")

        await wait_until(lambda: [r[2] for r in stored()] == ["SESSIONSTARTED", "SESSIONCOMPLETED"], 15,
                         what=lambda: f"events {stored()}")
        await wait_until(lambda: app.refused > 0, 10, what="an event refused")
        node_a.kill()
        self.assertEqual([r[0] for r in stored()], ["node-a", "node-a"])
        app.holding = False
        await wait_until(lambda: len(app.events) == 2, 5 * LEASE, what=lambda: f"events {app.events}")
        session_id = app.new_calls[0]["sessionId"]
        self.assertEqual([(e["event"], e["sequence"], e["sessionId"]) for e in app.events],
                         [("SESSIONSTARTED", 1, session_id), ("SESSIONCOMPLETED", 2, session_id)])
        self.assertEqual(app.bad_signatures, 0)
        await wait_until(lambda: stored() == [("node-b", 1, "SESSIONSTARTED", True), ("node-b", 2, "SESSIONCOMPLETED", True)], 5,
                         what=lambda: f"events {stored()}")
        await pause(LEASE / 3 + 0.2)
        self.assertEqual(len(app.events), 2)
