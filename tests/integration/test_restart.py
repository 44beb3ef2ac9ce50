# -*- test-case-name: tests.integration.test_restart -*-
"""
kill -9 and restart (SPEC s14 last bullet: "A node that restarts does the
same for its own sessions (reason restart): no session is left open at a
peer or at the application").

The real server runs as C{twistd -n aiconnect} in a subprocess; the test
process holds the SRC (raw UDP), the SRS (L{SrsPeer}) and the application
(a real HTTP server answering newCall with a startSIPRecForward). A call is
set up with its forward, the server is killed with SIGKILL, and started
again on the same configuration and database.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import tempfile
from pathlib import Path

from twisted.trial.unittest import TestCase

from aiconnect.sip.message import Request, Response, parse
from tests.fakes import wait_until
from tests.integration.helpers import Certificates, free_port, status_of, write_config
from tests.integration.siprec_peer import DATA, AppServer, answered_call, in_dialog
from tests.integration.srs_peer import SrsPeer
from tests.integration.twistd import start_twistd, wait_ready

DOMAIN = "customer.example.com"
METADATA = (DATA / "rfc8068-s3.2.1-1-metadata.xml").read_bytes()
ORDER = {
    "uri": "sip:aiforward@customer.example.com",
    "codec": "PCMA",
    "xHeaders": {"X-Correlation-Id": "a3b47c1e"},
    "sipRecForwardReferenceId": {"ticketId": 98765},
}
#: This module's RTP range (inside the integration tests' reserved range).
RTP = (27600, 27699)


def answer(raw: bytes, status: int = 200, reason: str = "OK") -> bytes:
    """
    A response to a request we received as raw bytes (RFC 3261 s8.2.6).
    """
    request = parse(raw)
    assert isinstance(request, Request)
    lines = ["SIP/2.0 %d %s" % (status, reason)]
    lines += ["Via: " + v for v in request.headers.get_all("Via")]
    for name in ("From", "To", "Call-ID", "CSeq"):
        lines.append("%s: %s" % (name, request.headers.get(name)))
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class RestartTests(TestCase):
    """
    A restarted server ends the sessions its killed predecessor left open.
    """

    timeout = 90

    async def test_kill_9_then_restart(self) -> None:
        """
        After kill -9 and a restart on the same database: the SRC and the
        SRS each get a BYE in their dialog (CSeq above the one the dialog
        used), the SRC's own BYE crossing ours gets 200 (not 481), and the
        application gets SIPRECFORWARDSTOPPED and SESSIONCOMPLETED with
        reason restart, signed, in sequence after the events of the first
        run.
        """
        directory = Path(tempfile.mkdtemp(prefix="aiconnect-restart-"))
        srs = SrsPeer("200")
        srs_port = srs.listen_udp()
        self.addCleanup(srs.stop)
        app = AppServer({"startSIPRecForward": ORDER})
        app_port = app.listen()
        self.addCleanup(app.port.stopListening)
        trunk = '\n  [[tenant.trunk]]\n  match = "aiforward"\n  target = "127.0.0.1:%d"\n  transport = "udp"\n' % srs_port
        sip, api = free_port(), free_port()
        path = write_config(
            directory, Certificates(), sip, sip, 0, api, extra="callback_timeout = 3.0\n" + trunk, app_port=app_port, rtp=RTP
        )
        server = start_twistd(self, path)
        await wait_ready(self, server, sip)

        # The call: SRC INVITE, newCall orders the forward, 200, ACK; the
        # SRS answers; both events delivered.
        src, local, ok, ids = await answered_call(self, sip, DOMAIN, METADATA)
        await app.wait_for("events", 2, timeout=20)
        await srs.wait_for("ACK")
        self.assertEqual(app.event_names(), ["SESSIONSTARTED", "SIPRECFORWARDSTARTED"], server.output())
        session_id = app.new_calls[0]["sessionId"]
        forward_id = app.events[1]["forwardId"]
        srs_invite = srs.dialog["invite"]

        server.kill()
        self.assertEqual(srs.count("BYE"), 0)
        server.start()

        # The SRC: our BYE in its dialog; its own BYE crossing ours is
        # answered 200; then it answers ours.
        bye_raw = await src.take(lambda m: m.startswith(b"BYE "), 15)
        bye = parse(bye_raw)
        ok_response = parse(ok)
        assert isinstance(bye, Request) and isinstance(ok_response, Response)
        self.assertEqual(bye.call_id, ids["call_id"])
        self.assertEqual(bye.from_tag, ok_response.to_tag)
        self.assertEqual(bye.to_tag, ids["from_tag"])
        src.send(in_dialog("BYE", "udp", local, ok, ids, 102, DOMAIN), sip)
        data = await src.take(lambda m: m.startswith(b"SIP/2.0") and parse(m).cseq.method == "BYE", 10)
        self.assertEqual(status_of(data), 200, data)
        src.send(answer(bye_raw), sip)

        # The SRS: a BYE in the forward's dialog, with the order's X- headers.
        await srs.wait_for("BYE", timeout=15)
        srs_bye = [r for r in srs.requests if r.method == "BYE"][0]
        self.assertEqual(srs_bye.call_id, srs_invite.call_id)
        self.assertEqual((srs_bye.from_tag, srs_bye.to_tag), (srs_invite.from_tag, srs.to_tag))
        self.assertGreater(srs_bye.cseq.number, srs_invite.cseq.number)
        self.assertEqual(srs_bye.headers.get("X-Correlation-Id"), "a3b47c1e")

        # The application: both events, reason restart, in sequence. An
        # event the killed run sent but had not marked delivered comes
        # again (at-least-once, same eventId): receivers de-duplicate.
        await wait_until(lambda: "SESSIONCOMPLETED" in app.event_names(), 20, interval=0.05)
        events = list({e["eventId"]: e for e in app.events}.values())
        self.assertEqual(
            [e["event"] for e in events], ["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"]
        )
        stopped, completed = events[2], events[3]
        self.assertEqual({e["sessionId"] for e in events}, {session_id})
        self.assertEqual([e["sequence"] for e in events], [1, 2, 3, 4])
        self.assertEqual(
            (stopped["forwardId"], stopped["stoppedBy"], stopped["reason"], stopped["sipRecForwardReferenceId"]),
            (forward_id, "restart", "restart", {"ticketId": 98765}),
        )
        self.assertEqual(stopped["uri"], ORDER["uri"])
        self.assertEqual(completed["reason"], "restart")
        self.assertEqual(app.bad_signatures, 0)

        # Nothing is left for a third start, and the second run stops cleanly.
        rc = await server.stop()
        out = server.output()
        self.assertIn(rc, (0, -signal.SIGTERM), out)
        self.assertNotIn("Traceback", out)
        self.assertIn("ended 1 session(s) left open by the previous run", out)
        db = sqlite3.connect(str(directory / "events.sqlite3"))
        self.addCleanup(db.close)
        self.assertEqual(db.execute("SELECT COUNT(*) FROM live_dialogs").fetchone()[0], 0)
        self.assertEqual(
            [json.loads(b)["event"] for (b,) in db.execute("SELECT body FROM events WHERE delivered IS NULL")], []
        )
