"""
The example application (C{examples/app.py}) over real HTTP on 127.0.0.1:
it accepts requests signed by AI Connect's own signer
(L{aiconnect.webhooks.signing}) and refuses wrongly signed, unsigned and
stale ones with 401; its newCall answer is an order AI Connect's order
parser accepts; it runs standalone as C{python examples/app.py}.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import treq
from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.server import Site

from aiconnect.config import load
from aiconnect.demo.run import DOMAIN, example_app_module, free_port, write_config
from aiconnect.siprec.orders import parse_forward_order
from aiconnect.webhooks.signing import encode_body, signed_headers

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
FORWARD = "sip:recorder@" + DOMAIN
ROOT = Path(__file__).resolve().parents[2]
EVENT = {
    "event": "SESSIONSTARTED",
    "eventId": "evt_01HX5Z8K3V9Q4M2N7P6R1S0T8W",
    "sessionId": "ses_4f1c2b7e9a0d3c5b8e6f1a2d",
    "tenant": DOMAIN,
    "timestamp": "2024-05-01T12:34:56.789Z",
    "callId": "f81d4fae@192.0.2.10",
    "streams": ["1", "2"],
    "newCallError": None,
    "sequence": 1,
}
NEW_CALL = {"sessionId": "ses_4f1c2b7e9a0d3c5b8e6f1a2d", "tenant": DOMAIN, "callId": "f81d4fae@192.0.2.10"}


def demo_tenant() -> Any:
    """
    The tenant of the demo's configuration (trunk C{recorder}).
    """
    directory = Path(tempfile.mkdtemp(prefix="aiconnect-app-test-"))
    path = write_config(directory, 5070, 5071, 9000, 5072, (61000, 61199), SECRET, "token")
    try:
        return load(path).tenants[0]
    finally:
        for p in sorted(directory.rglob("*"), reverse=True):
            p.unlink()
        directory.rmdir()


class ExampleAppHttpTests(TestCase):
    """
    The app served on a real port, requests through treq.
    """

    timeout = 10

    def start(self, forward: list[str] | None = None) -> Any:
        self.lines: list[str] = []
        app = example_app_module().ExampleApp(SECRET, [FORWARD] if forward is None else forward, say=self.lines.append)
        port = reactor.listenTCP(0, Site(app.app.resource()), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.url = "http://127.0.0.1:%d" % (port.getHost().port,)
        return app

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Any:
        response = await treq.post(self.url + path, body, headers=headers, persistent=False)
        content = await response.content()
        return response.code, content

    async def test_signed_event_accepted(self) -> None:
        """
        An event signed by AI Connect's signer is answered 200, kept and
        printed with its type, session and key fields.
        """
        app = self.start()
        body = encode_body(EVENT)
        code, _ = await self.post("/events", body, signed_headers(SECRET, EVENT["eventId"], int(time.time()), body))
        self.assertEqual(code, 200)
        self.assertEqual(app.events, [EVENT])
        self.assertEqual(app.rejected, 0)
        self.assertEqual(
            self.lines,
            ['event SESSIONSTARTED session=ses_4f1c2b7e9a0d3c5b8e6f1a2d callId=f81d4fae@192.0.2.10 streams=["1","2"] newCallError=null'],
        )

    async def assert_refused(self, path: str, body: bytes, headers: dict[str, str], why: str) -> None:
        app = self.start()
        code, _ = await self.post(path, body, headers)
        self.assertEqual(code, 401)
        self.assertEqual((app.events, app.new_calls, app.rejected), ([], [], 1))
        self.assertEqual(len(self.lines), 1)
        self.assertIn("401 for POST %s: %s" % (path, why), self.lines[0])
        self.assertNotIn(SECRET[6:], self.lines[0])

    async def test_wrong_secret_refused(self) -> None:
        """
        An event signed with another secret gets 401 and a line saying so.
        """
        body = encode_body(EVENT)
        await self.assert_refused("/events", body, signed_headers(OTHER_SECRET, EVENT["eventId"], int(time.time()), body), "bad signature")

    async def test_tampered_body_refused(self) -> None:
        """
        A body changed after signing gets 401.
        """
        body = encode_body(EVENT)
        headers = signed_headers(SECRET, EVENT["eventId"], int(time.time()), body)
        await self.assert_refused("/events", body.replace(b"SESSIONSTARTED", b"SESSIONCOMPLETED"), headers, "bad signature")

    async def test_unsigned_refused(self) -> None:
        """
        A request without the signature headers gets 401.
        """
        await self.assert_refused("/events", encode_body(EVENT), {"Content-Type": "application/json"}, "unsigned")

    async def test_stale_timestamp_refused(self) -> None:
        """
        A correctly signed request whose timestamp is 10 minutes old (a
        replay) gets 401.
        """
        body = encode_body(EVENT)
        await self.assert_refused("/events", body, signed_headers(SECRET, EVENT["eventId"], int(time.time()) - 600, body), "stale")

    async def test_unsigned_new_call_refused(self) -> None:
        """
        newCall is checked as well: unsigned, it gets 401 and no order.
        """
        await self.assert_refused("/newCall", encode_body(NEW_CALL), {}, "unsigned")

    async def test_new_call_answer_is_a_valid_order(self) -> None:
        """
        The answer to a signed newCall is JSON holding a
        C{startSIPRecForward} that AI Connect's order parser accepts for
        the demo tenant, selecting its C{recorder} trunk.
        """
        app = self.start()
        body = encode_body(NEW_CALL)
        code, content = await self.post("/newCall", body, signed_headers(SECRET, "ncl_1", int(time.time()), body))
        self.assertEqual(code, 200)
        answer = json.loads(content)
        self.assertEqual(app.new_calls, [NEW_CALL])
        order = parse_forward_order(answer["startSIPRecForward"], demo_tenant(), prefix="startSIPRecForward")
        self.assertEqual((order.uri, order.trunk.match, order.reference_id), (FORWARD, "recorder", {"ticketId": 1}))

    async def test_several_forwards(self) -> None:
        """
        With two forward URIs the answer holds a list of two orders.
        """
        self.start([FORWARD, FORWARD])
        body = encode_body(NEW_CALL)
        _, content = await self.post("/newCall", body, signed_headers(SECRET, "ncl_2", int(time.time()), body))
        orders = json.loads(content)["startSIPRecForward"]
        self.assertEqual([o["sipRecForwardReferenceId"] for o in orders], [{"ticketId": 1}, {"ticketId": 2}])
        tenant = demo_tenant()
        for i, raw in enumerate(orders):
            parse_forward_order(raw, tenant, prefix="startSIPRecForward[%d]" % i)

    async def test_no_forward_no_order(self) -> None:
        """
        Without a forward URI the answer is an empty object (record nothing).
        """
        self.start([])
        body = encode_body(NEW_CALL)
        _, content = await self.post("/newCall", body, signed_headers(SECRET, "ncl_3", int(time.time()), body))
        self.assertEqual(json.loads(content), {})


class ExampleAppUnitTests(SynchronousTestCase):
    """
    The verifier and the constructor, without HTTP.
    """

    def test_malformed_secret_refused(self) -> None:
        """
        A secret that is not C{whsec_} + base64 is refused at start, and the
        message does not quote it.
        """
        module = example_app_module()
        for secret in ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not*base64"):
            error = self.assertRaises(ValueError, module.ExampleApp, secret)
            self.assertNotIn(secret, str(error))

    def test_any_v1_signature_of_several(self) -> None:
        """
        Several space-separated signatures (a secret being rotated): one
        matching C{v1} is enough; other versions are ignored.
        """
        module = example_app_module()
        key = module.decode_secret(SECRET)
        body = b"{}"
        good = signed_headers(SECRET, "evt_1", 1000, body)
        other = signed_headers(OTHER_SECRET, "evt_1", 1000, body)["webhook-signature"]
        headers = dict(good, **{"webhook-signature": "v2,xyz %s %s" % (other, good["webhook-signature"])})
        self.assertIsNone(module.verify_webhook(key, {k.lower(): v for k, v in headers.items()}, body, now=1000))
        headers["webhook-signature"] = "v2,%s %s" % (good["webhook-signature"][3:], other)
        self.assertEqual(module.verify_webhook(key, {k.lower(): v for k, v in headers.items()}, body, now=1000), "bad signature")


class StandaloneTests(SynchronousTestCase):
    """
    C{python examples/app.py ...} as a customer runs it.
    """

    def test_runs_standalone(self) -> None:
        """
        Started as a script with C{--port}, C{--secret} and C{--forward},
        it says where it listens and answers a signed newCall with the
        forward order.
        """
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("AICONNECT_SIGNING_SECRET", "AICONNECT_FORWARD")}
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "app.py"), "--port", str(port), "--secret", SECRET, "--forward", FORWARD],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
        try:
            ready, _, _ = select.select([process.stdout], [], [], 10)
            self.assertTrue(ready, "no output from examples/app.py within 10 s")
            first = process.stdout.readline()
            self.assertIn("listening on http://127.0.0.1:%d" % (port,), first)
            self.assertNotIn(SECRET[6:], first)
            body = encode_body(NEW_CALL)
            request = urllib.request.Request(
                "http://127.0.0.1:%d/newCall" % (port,), data=body, headers=signed_headers(SECRET, "ncl_1", int(time.time()), body)
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                self.assertEqual(json.loads(response.read()), {"startSIPRecForward": {"uri": FORWARD, "sipRecForwardReferenceId": {"ticketId": 1}}})
        finally:
            process.terminate()
            process.wait(10)
            process.stdout.close()
