"""
What docs/events.md and docs/api.md say of forwards and counters, checked
against the real service (real sockets on 127.0.0.1, a real HTTP
application, raw UDP SIPRec): a forward to a TCP trunk nobody listens on
fails with a C{transport: ...} reason (the prefix once) and a target
written as documented, the session API shows that target for the failed
forward, and the counters of the session and of the forward have the keys
of the documented examples.

RTP range: 61640-61679.
"""

from __future__ import annotations

import json
from typing import Any

from tests.integration.helpers import free_port
from tests.integration.scenario import ScenarioCase
from tests.integration.siprec_peer import sdp_offer
from tests.integration.test_forward import ORDER
from tests.test_docs_examples import TARGET, examples

OFFER = sdp_offer([("96", 40000, 0)])


def documented(where: str, test: Any) -> Any:
    """
    The first JSON example of a document for which C{test} holds.
    """
    for example in examples():
        if example.where.startswith(where):
            value = json.loads(example.text)
            if test(value):
                return value
    raise AssertionError("no such example in %s" % (where,))


class DocsAgreeTests(ScenarioCase):
    """
    One call with a forward that fails at the transport.
    """

    rtp_base = 61640
    timeout = 30

    async def failed_forward_call(self) -> tuple[dict[str, Any], dict[str, Any], int]:
        """
        Place a call whose forward fails (TCP to a closed port).

        @return: The SIPRECFORWARDFAILED event, the session as the API
            shows it after the failure, and the dead port.
        """
        dead = free_port()
        trunk = '\n  [[tenant.trunk]]\n  match = "aiforward"\n  target = "127.0.0.1:%d"\n  transport = "tcp"\n' % (dead,)
        app = self.start(tenant=trunk, rtp_pairs=20)
        app.answer = {"startSIPRecForward": ORDER}
        self.caller = self.src()
        _, session_id = await self.caller.call(OFFER)
        await app.wait_for("events", 2)
        [failed] = [e for e in app.events if e["event"] == "SIPRECFORWARDFAILED"]
        return failed, await self.session(session_id), dead

    async def test_failed_forward(self) -> None:
        """
        The reason says "transport: " once; the target is host:port;transport=tcp as documented; the session API shows it for the failed forward.
        """
        failed, session, dead = await self.failed_forward_call()
        self.assertTrue(failed["reason"].startswith("transport: "), failed["reason"])
        self.assertNotIn("transport: transport:", failed["reason"])
        self.assertEqual(failed["target"], "127.0.0.1:%d;transport=tcp" % (dead,))
        self.assertRegex(failed["target"], TARGET)
        self.assertEqual(failed["targetsTried"], [failed["target"]])
        [forward] = session["forwards"]
        self.assertEqual((forward["state"], forward["target"]), ("failed", failed["target"]))

    async def test_counters_as_documented(self) -> None:
        """
        The session's media counters (API and SESSIONCOMPLETED) and a forward's have the keys of the documented examples.
        """
        _, session, _ = await self.failed_forward_call()
        example = documented("api.md", lambda v: "session" in v)["session"]
        self.assertEqual(set(session), set(example))
        self.assertEqual(set(session["media"]), set(example["media"]))
        self.assertEqual(set(session["media"]["streams"][0]), set(example["media"]["streams"][0]))
        self.assertEqual(set(session["media"]["streams"][0]["drops"]), set(example["media"]["streams"][0]["drops"]))
        forward_stats, documented_stats = session["forwards"][0]["stats"], example["forwards"][0]["stats"]
        self.assertEqual(set(forward_stats), set(documented_stats))
        self.assertEqual(set(forward_stats["streams"][0]), set(documented_stats["streams"][0]))
        self.assertEqual(set(forward_stats["drops"]), set(documented_stats["drops"]))
        await self.caller.bye()
        await self.app.wait_for("events", 3)
        completed = self.app.events[-1]
        self.assertEqual(completed["event"], "SESSIONCOMPLETED")
        event_example = documented("events.md", lambda v: v.get("event") == "SESSIONCOMPLETED")
        self.assertEqual(set(completed["stats"]), set(event_example["stats"]))
        self.assertEqual(set(completed["stats"]["streams"][0]), set(event_example["stats"]["streams"][0]))
        stopped_example = documented("events.md", lambda v: v.get("event") == "SIPRECFORWARDSTOPPED")
        self.assertEqual(set(stopped_example["stats"]), set(forward_stats))
