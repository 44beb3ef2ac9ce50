"""
The trunk routes (SPEC s13) through C{StubTreq}: C{GET
/{domain}/trunks/{match}/health} and C{POST /{domain}/trunks/{match}/test}
over the real registry, tester, UA core and transaction layer on a
L{Clock} and a recording fake SIP transport; every answer is checked
against the OpenAPI document, and every documented answer is produced.
"""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.api import OPENAPI, ApiServer
from aiconnect.api.trunks import MAX_TESTS_PER_TENANT, TrunkRoutes
from aiconnect.sip.message import Request
from aiconnect.sip.peer import Peer
from aiconnect.sip.resolver import ResolveError
from aiconnect.siprec.health import TargetHealth
from aiconnect.siprec.trunktest import TrunkTester
from tests.api.helpers import DOMAIN, OTHER_TOKEN, TOKEN, bearer, make_config
from tests.openapi_support import conform
from tests.sip.uac_stack import UacStack

SRS = Peer("udp", "127.0.0.1", 5070)
TRUNK_PATHS = ("/{domain}/trunks/{match}/health", "/{domain}/trunks/{match}/test")


class Resolver:
    """
    Resolves every trunk to C{SRS}, or fails with C{error}.
    """

    error: str | None = None

    def resolve(self, target: str, transport: str) -> defer.Deferred[list[Peer]]:
        if self.error is not None:
            return defer.fail(ResolveError(self.error))
        return defer.succeed([SRS])


class TrunkRouteTests(SynchronousTestCase):
    """
    The trunk routes, answer by answer.
    """

    def setUp(self) -> None:
        self.stack = UacStack()
        self.clock, self.ua = self.stack.clock, self.stack.ua
        self.config = make_config(self, with_jwt=False)
        self.resolver = Resolver()
        self.health = TargetHealth(self.clock)
        tester = TrunkTester(self.clock, self.ua, self.resolver, tls_creator=lambda host: None)
        routes = TrunkRoutes(self.clock, self.resolver, self.health, tester)
        self.treq = StubTreq(ApiServer(self.config, reactor=self.clock, trunks=routes).app.resource())
        self.bare = StubTreq(ApiServer(self.config, reactor=self.clock).app.resource())
        self.covered: set[tuple[str, str, str]] = set()

    def start(self, method: str, template: str, match: str = "aiforward", token: str | None = TOKEN, client: Any = None) -> defer.Deferred[Any]:
        path = template.replace("{domain}", DOMAIN).replace("{match}", match)
        headers = bearer(token) if token is not None else {}
        return (client or self.treq).request(method.upper(), "http://api.example" + path, headers=headers)

    def finish(self, d: defer.Deferred[Any], method: str, template: str, status: int, client: Any = None) -> Any:
        (client or self.treq).flush()
        response = self.successResultOf(d)
        raw = self.successResultOf((client or self.treq).content(response))
        self.covered.add((template, method, str(status)))
        return conform(self, method, template, status, response, raw)

    def exchange(self, method: str, template: str, status: int, **kw: Any) -> Any:
        client = kw.get("client")
        return self.finish(self.start(method, template, **kw), method, template, status, client)

    def answer_options(self, status: int, reason: str, extra: list[str] | None = None) -> Request:
        sent = self.stack.sent("OPTIONS")[-1]
        self.stack.respond(sent, status, reason, SRS, "t", extra)
        return sent

    def test_health(self) -> None:
        """
        GET health shows the trunk and its resolved targets with their state; a DNS failure is reported.
        """
        answer = self.exchange("get", TRUNK_PATHS[0], 200)
        self.assertEqual(answer["trunk"]["match"], "aiforward")
        self.assertEqual(answer["trunk"]["ringTimeout"], 10.0)
        self.assertEqual([t["state"] for t in answer["targets"]], ["unknown"])
        self.health.target_failed(SRS, "SIP 503 Service Unavailable", 30)
        answer = self.exchange("get", TRUNK_PATHS[0], 200)
        self.assertEqual(answer["targets"][0]["state"], "down")
        self.assertEqual(answer["targets"][0]["lastError"], "SIP 503 Service Unavailable")
        self.resolver.error = "DNS: no such domain srs.example.net"
        answer = self.exchange("get", TRUNK_PATHS[0], 200)
        self.assertEqual((answer["dnsError"], answer["targets"]), ("DNS: no such domain srs.example.net", []))

    def test_test_udp_trunk(self) -> None:
        """
        POST test on a UDP trunk without credentials: dns and options run, the rest is skipped.
        """
        d = self.start("post", TRUNK_PATHS[1])
        self.answer_options(200, "OK")
        answer = self.finish(d, "post", TRUNK_PATHS[1], 200)
        self.assertTrue(answer["ok"])
        self.assertEqual([s["step"] for s in answer["steps"]], ["dns"])
        target = answer["targets"][0]
        self.assertEqual(target["target"], "127.0.0.1:5070;transport=udp")
        self.assertEqual([(s["step"], s["ok"], s.get("skipped", False)) for s in target["steps"]], [
            ("connect", True, True), ("tls", True, True), ("options", True, False), ("digest", True, True),
        ])
        self.assertEqual(target["steps"][2]["detail"], "200 OK")

    def test_test_failing_options(self) -> None:
        """
        An OPTIONS answered 503 fails the options step and the test.
        """
        d = self.start("post", TRUNK_PATHS[1])
        self.answer_options(503, "Service Unavailable")
        answer = self.finish(d, "post", TRUNK_PATHS[1], 200)
        self.assertFalse(answer["ok"])
        options = answer["targets"][0]["steps"][2]
        self.assertEqual((options["ok"], options["detail"]), (False, "503 Service Unavailable"))

    def test_test_options_bounded(self) -> None:
        """
        A silent target: the options step fails after its bound, long before the transaction's own timeout.
        """
        d = self.start("post", TRUNK_PATHS[1])
        self.clock.advance(5)
        answer = self.finish(d, "post", TRUNK_PATHS[1], 200)
        options = answer["targets"][0]["steps"][2]
        self.assertEqual((options["ok"], options["ms"], options["detail"]), (False, 5000, "no result in 5 s"))

    def test_concurrent_tests_capped(self) -> None:
        """
        Beyond the tenant's concurrent tests the answer is 429 with Retry-After; later a test runs again.
        """
        pending = [self.start("post", TRUNK_PATHS[1]) for _ in range(MAX_TESTS_PER_TENANT)]
        answer = self.exchange("post", TRUNK_PATHS[1], 429)
        self.assertFalse(answer["success"])
        self.clock.advance(5)
        for d in pending:
            self.finish(d, "post", TRUNK_PATHS[1], 200)
        d = self.start("post", TRUNK_PATHS[1])
        self.answer_options(200, "OK")
        self.finish(d, "post", TRUNK_PATHS[1], 200)

    def test_refusals(self) -> None:
        """
        Unknown trunk: 404 naming it; no credential: 401, another tenant's: 403; a server without trunk routes: 503.
        """
        for method, template in (("get", TRUNK_PATHS[0]), ("post", TRUNK_PATHS[1])):
            answer = self.exchange(method, template, 404, match="nobody")
            self.assertEqual(answer["field"], "match")
            self.assertIn("'nobody'", answer["error"])
            self.exchange(method, template, 401, token=None)
            self.exchange(method, template, 403, token=OTHER_TOKEN)
            self.exchange(method, template, 503, client=self.bare)

    def test_every_documented_answer(self) -> None:
        """
        Every documented answer of the trunk routes is produced by the tests of this class.
        """
        for name in dir(self):
            if name.startswith("test_") and name != "test_every_documented_answer":
                getattr(self, name)()
                self.setUp_again()
        documented = {
            (path, method, status) for path in TRUNK_PATHS for method in OPENAPI["paths"][path] for status in OPENAPI["paths"][path][method]["responses"]
        }
        self.assertEqual(documented - self.covered, set())

    def setUp_again(self) -> None:
        covered = self.covered
        self.setUp()
        self.covered = covered

    def test_secret_free(self) -> None:
        """
        The trunk description says whether there are credentials, never what they are.
        """
        answer = self.exchange("get", TRUNK_PATHS[0], 200)
        self.assertEqual(answer["trunk"]["credentials"], False)
        self.assertNotIn("password", json.dumps(answer))
