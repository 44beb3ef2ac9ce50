"""
Tests of L{aiconnect.api.cluster}: the REST API answers on any node
(SPEC s14, issue 15).

Two nodes (two L{build_service} trees on this reactor, their own SIP and
API ports on 127.0.0.1, one PostgreSQL database of the L{pgserver}
fixture, real HTTP between them); the SIPRec call reaches node B, the
REST requests node A.

RTP ports 62600-62699: node A 62600-62649, node B 62650-62699.
"""

from __future__ import annotations

import json
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import formatEvent, globalLogPublisher
from twisted.web.resource import Resource
from twisted.web.server import Site

from aiconnect.api.cluster import MAX_ANSWER, NODE_HEADER, SIGNATURE_HEADER, TIME_HEADER, sign
from aiconnect.api.openapi import OPENAPI
from tests.cluster_rest.support import CLUSTER_RESPONSES
from tests.fakes import wait_until
from tests.integration.helpers import free_port
from tests.integration.provisioning_support import Caller, srs_peer
from tests.integration.siprec_peer import AppServer
from tests.openapi_support import conform
from tests.storage.pgserver import PostgresTestCase
from tests.storage.test_cluster import SECRET, Node, cluster_config

DOMAIN = "customer.example.com"
TOKEN = "t0ken"
RTP = {"node-a": (62600, 62649), "node-b": (62650, 62699)}


async def rest(
    port: int, method: str, path: str, body: Any = None, token: str | None = TOKEN, headers: dict[str, str] | None = None
) -> tuple[int, Any, Any]:
    """
    One request to the REST API on C{port}.

    @return: The status, the decoded JSON answer and the answer headers.
    """
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = "Bearer " + token
    kw: dict[str, Any] = {"headers": sent, "persistent": False}
    if body is not None:
        kw["data"] = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    resp = await treq.request(method, "http://127.0.0.1:%d%s" % (port, path), **kw)
    text = await resp.content()
    return resp.code, json.loads(text) if text else None, resp.headers


async def exchange(
    case: Any, port: int, method: str, template: str, status: int, body: Any = None, session_id: str = ""
) -> tuple[int, Any, Any]:
    """
    A request to a documented operation, its answer checked against the
    OpenAPI document (L{conform}).
    """
    path = template.replace("{domain}", DOMAIN).replace("{sessionId}", session_id)
    kw: dict[str, Any] = {"headers": {"Authorization": "Bearer " + TOKEN}, "persistent": False}
    if body is not None:
        kw["data"] = json.dumps(body).encode()
    response = await treq.request(method.upper(), "http://127.0.0.1:%d%s" % (port, path), **kw)
    raw = await response.content()
    return response.code, conform(case, method, template, status, response, raw), response.headers


def signed(method: str, path: str, body: bytes = b"", *, node: str = "node-b", when: float | None = None,
           secret: str = SECRET) -> dict[str, str]:
    """
    @return: The node headers another node would send (C{secret} and
        C{when} to forge them).
    """
    timestamp = b"%.3f" % (reactor.seconds() if when is None else when)
    signature = sign(secret, method.encode(), path.encode(), body, timestamp, node.encode())
    return {
        NODE_HEADER.decode(): node,
        TIME_HEADER.decode(): timestamp.decode(),
        SIGNATURE_HEADER.decode(): signature.decode(),
    }


class _Silent(Protocol):
    """
    Accepts a connection and never answers.
    """


class _Huge(Resource):
    """
    Answers every request with a body over L{MAX_ANSWER}.
    """

    isLeaf = True

    def render(self, request: Any) -> bytes:
        return b" " * (MAX_ANSWER + 1)


class AnyNodeTests(PostgresTestCase):
    """
    REST requests for node B's session sent to node A.
    """

    timeout = 60

    def setUp(self) -> None:
        super().setUp()
        self.app = AppServer({})
        app_port = self.app.listen()
        self.addCleanup(self.app.port.stopListening)
        self.srs = srs_peer(self)
        trunk = '[[tenant.trunk]]\nmatch = "aiforward"\ntarget = "127.0.0.1:%d"\ntransport = "udp"\n' % (
            self.srs.port.getHost().port
        )
        self.nodes: dict[str, Node] = {}
        for node_id in ("node-a", "node-b"):
            path, sip, api_port = cluster_config(self.server.url(self.database), node_id, RTP[node_id], app_port)
            text = path.read_text()
            path.write_text(text.replace("\n[database]\n", "\n" + trunk + "\n[database]\n", 1))
            node = self.nodes[node_id] = Node(node_id, path, sip, api_port)
            node.service.startService()
            self.addCleanup(self._stop, node.service)
        self.a, self.b = self.nodes["node-a"], self.nodes["node-b"]
        self.warnings: list[str] = []
        self.logged: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            self.logged.append(event)
            if "node-to-node" in event.get("log_format", "") or "another node" in event.get("log_format", ""):
                self.warnings.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    async def _stop(self, service: Any) -> None:
        if service.running:
            await service.stopService()

    async def call_on_b(self) -> str:
        """
        A SIPRec call to node B, claimed in the directory.

        @return: Its session id.
        """
        self.sip_port = self.b.sip_port
        self.caller = Caller(self)
        self.assertEqual(await self.caller.start(DOMAIN), 200)
        await self.app.wait_for("newCall", 1)
        session_id = str(self.app.new_calls[0]["sessionId"])
        await wait_until(
            lambda: self.query("SELECT node_id FROM session_directory WHERE session_id = %s", (session_id,)) == [("node-b",)],
            5,
            what="the session in the directory",
        )
        await wait_until(
            lambda: sorted(n for n, in self.query("SELECT node_id FROM node_leases WHERE expires > %s", (reactor.seconds(),)))
            == ["node-a", "node-b"],
            5,
            what="both leases live",
        )
        return session_id

    async def both(self, method: str, path: str, body: Any = None) -> tuple[Any, Any]:
        """
        @return: The status and body of the same request to A, then to B.
        """
        on_a = await rest(self.a.api_port, method, path, body)
        on_b = await rest(self.b.api_port, method, path, body)
        for name in (b"content-type", b"cache-control"):
            self.assertEqual(on_a[2].getRawHeaders(name), on_b[2].getRawHeaders(name), name)
        return on_a[:2], on_b[:2]

    async def test_session_routes_on_the_wrong_node(self) -> None:
        """
        GET of B's session, a forward to a trunk SRS, pause, resume and
        stop, all sent to node A, are done by B and answered as B answers.
        """
        session_id = await self.call_on_b()
        on_a, on_b = await self.both("GET", f"/{DOMAIN}/sessions/{session_id}")
        self.assertEqual(on_a, on_b)
        self.assertEqual(on_a[0], 200)
        self.assertEqual(on_a[1]["session"]["sessionId"], session_id)

        order = {"sessionId": session_id, "uri": f"sip:aiforward@{DOMAIN}", "codec": "PCMA"}
        code, body, _ = await rest(self.a.api_port, "POST", f"/{DOMAIN}/startsiprecforward", order)
        self.assertEqual(code, 200, body)
        forward_id = body["forwardId"]
        await self.srs.wait_for("ACK", 1)
        code, body, _ = await rest(self.b.api_port, "GET", f"/{DOMAIN}/sessions/{session_id}")
        self.assertEqual([f["forwardId"] for f in body["session"]["forwards"]], [forward_id])

        for path in ("pause", "resume"):
            code, body, _ = await rest(self.a.api_port, "POST", f"/{DOMAIN}/{path}", {"sessionId": session_id})
            self.assertEqual(code, 200, body)
            self.assertEqual(body[path + "d"]["forwards"], [forward_id])
        # Errors of the owner come back as they are.
        on_a, on_b = await self.both("POST", f"/{DOMAIN}/stopsiprecforward", {"sessionId": session_id, "forwardId": "nope"})
        self.assertEqual(on_a, on_b)
        self.assertEqual(on_a[0], 404)
        code, body, _ = await rest(
            self.a.api_port, "POST", f"/{DOMAIN}/stopsiprecforward", {"sessionId": session_id, "forwardId": forward_id}
        )
        self.assertEqual((code, body), (200, {"success": True, "stopped": [forward_id]}))
        await self.srs.wait_for("BYE", 1)

        # The tenant's credential is checked where the request arrives.
        code, body, headers = await rest(self.a.api_port, "GET", f"/{DOMAIN}/sessions/{session_id}", token="wrong")
        self.assertEqual(code, 401)
        self.assertTrue(headers.getRawHeaders(b"www-authenticate"))
        # A session nobody holds: 404 as on one node.
        on_a, on_b = await self.both("GET", f"/{DOMAIN}/sessions/no-such-session")
        self.assertEqual(on_a, on_b)
        self.assertEqual(on_a[0], 404)
        self.assertEqual(self.b.service.rest_cluster.stats()["forwarded"] + self.a.service.rest_cluster.stats()["forwarded"], 6)
        response = await treq.get("http://127.0.0.1:%d/metrics" % self.a.api_port, persistent=False)
        self.assertIn("aiconnect_cluster_rest_forwarded 6.0\n", (await response.content()).decode())
        await self.caller.bye()

    async def test_list_merged(self) -> None:
        """
        Each node lists the sessions of both, each once; a node whose API
        does not answer is left out and the list says it is incomplete.
        """
        session_id = await self.call_on_b()
        for node in (self.a, self.b):
            code, body, _ = await rest(node.api_port, "GET", f"/{DOMAIN}/sessions")
            self.assertEqual(code, 200, body)
            self.assertEqual([s["sessionId"] for s in body["sessions"]], [session_id])
            self.assertNotIn("incomplete", body)
        # Signed by another node: this node's sessions only.
        path = f"/{DOMAIN}/sessions"
        code, body, _ = await rest(self.a.api_port, "GET", path, headers=signed("GET", path))
        self.assertEqual((code, body), (200, {"success": True, "sessions": []}))

        # Node B's API gone: its listener closed, A's kept connections too.
        await self.b.service.getServiceNamed("api").stopService()
        await self.a.service.pool.closeCachedConnections()
        self.a.service.rest_cluster.timeout = 1.0
        code, body, _ = await rest(self.a.api_port, "GET", path)
        self.assertEqual((code, body), (200, {"success": True, "sessions": [], "incomplete": True}))
        # Owner down: 503, and the secret is in no answer or log line.
        code, body, _ = await rest(self.a.api_port, "GET", f"/{DOMAIN}/sessions/{session_id}")
        self.assertEqual(code, 503, body)
        self.assertEqual(body["field"], "sessionId")
        self.assertTrue(any("did not list its sessions" in line for line in [formatEvent(e) for e in self.logged]))
        self.assertFalse([e for e in self.logged if SECRET in repr(e)])
        await self.caller.bye()

    async def test_owner_silent_or_lost(self) -> None:
        """
        An owner whose API accepts connections and never answers gives 503
        after the timeout; an owner whose API refuses connections gives 503
        at once; an answer over L{MAX_ANSWER} bytes is not read (503).  (An
        owner whose lease expired is a lost node: node-loss recovery ends
        its sessions and releases their directory rows, then 404.)
        """
        silent = reactor.listenTCP(0, Factory.forProtocol(_Silent), interface="127.0.0.1")
        self.addCleanup(silent.stopListening)
        huge = reactor.listenTCP(0, Site(_Huge()), interface="127.0.0.1")
        self.addCleanup(huge.stopListening)
        now = reactor.seconds()
        with self.server.connect(self.database) as connection:
            for node, url, expires in (
                ("node-c", "http://127.0.0.1:%d" % silent.getHost().port, now + 60),
                ("node-d", "http://127.0.0.1:%d" % free_port(), now + 60),
                ("node-e", "http://127.0.0.1:%d" % huge.getHost().port, now + 60),
            ):
                connection.execute(
                    "INSERT INTO node_leases (node_id, api_url, renewed, expires) VALUES (%s, %s, %s, %s)", (node, url, now, expires)
                )
                connection.execute(
                    "INSERT INTO session_directory (session_id, node_id, tenant, started) VALUES (%s, %s, %s, %s)",
                    ("on-" + node, node, DOMAIN, now),
                )
        self.a.service.rest_cluster.timeout = 0.5
        for node in ("node-c", "node-d", "node-e"):
            started = reactor.seconds()
            code, body, _ = await rest(self.a.api_port, "POST", f"/{DOMAIN}/pause", {"sessionId": "on-" + node})
            self.assertEqual((code, body["error"]), (503, "the node holding this session is not reachable"))
            self.assertLess(reactor.seconds() - started, 3)
        code, body, _ = await exchange(self, self.a.api_port, "get", "/{domain}/sessions", 200)
        self.assertEqual(body, {"success": True, "sessions": [], "incomplete": True})
        self.assertEqual(self.a.service.rest_cluster.stats()["forward_failures"], 3)

        # Every documented 503 (tests.test_openapi leaves them to this test).
        schemas = OPENAPI["components"]["schemas"]
        bodies = {
            "startsiprecforward": {"uri": f"sip:aiforward@{DOMAIN}"},
            "startstream": schemas["StartStreamRequest"]["examples"][0],
            "startrecording": schemas["StartRecordingRequest"]["examples"][0],
        }
        for template, method, status in sorted(CLUSTER_RESPONSES):
            body = None
            if method == "post":
                body = dict(bodies.get(template.rsplit("/", 1)[1], {}), sessionId="on-node-d")
            await exchange(self, self.a.api_port, method, template, int(status), body, session_id="on-node-d")
        self.assertEqual(self.a.service.rest_cluster.stats()["forward_failures"], 3 + len(CLUSTER_RESPONSES))

    async def test_node_signatures_checked(self) -> None:
        """
        A request with node headers whose signature is missing, forged,
        signed with another secret, for another body or path, or too old
        is refused 403 and logged without the secret; a good one is
        answered.  A signed request for another node's session is not
        passed on again (the loop guard): 404.
        """
        session_id = await self.call_on_b()
        path = f"/{DOMAIN}/sessions/{session_id}"
        good = signed("GET", path)
        bad = {
            "missing": {NODE_HEADER.decode(): "node-b"},
            "forged": dict(good, **{SIGNATURE_HEADER.decode(): "v1=" + "0" * 64}),
            "other secret": signed("GET", path, secret="another-secret-0123456789"),
            "other path": signed("GET", f"/{DOMAIN}/sessions"),
            "expired": signed("GET", path, when=reactor.seconds() - 31),
            "future": signed("GET", path, when=reactor.seconds() + 31),
        }
        for what, headers in bad.items():
            code, body, _ = await rest(self.b.api_port, "GET", path, headers=headers)
            self.assertEqual(code, 403, what)
            self.assertTrue(body["error"].startswith("node-to-node request refused"), body)
        self.assertEqual(len([w for w in self.warnings if "refused" in w]), len(bad))
        self.assertFalse([e for e in self.logged if SECRET in repr(e)])
        self.assertEqual(self.b.service.rest_cluster.stats()["refused"], len(bad))
        code, body, _ = await rest(self.b.api_port, "GET", path, headers=good)
        self.assertEqual(code, 200, body)

        # A body the signature does not cover is refused too.
        order = {"sessionId": session_id}
        headers = signed("POST", f"/{DOMAIN}/pause", json.dumps({"sessionId": "other"}).encode())
        code, _, _ = await rest(self.b.api_port, "POST", f"/{DOMAIN}/pause", order, headers=headers)
        self.assertEqual(code, 403)

        # Loop guard: node A answers a signed request itself.
        code, body, _ = await rest(self.a.api_port, "GET", path, headers=signed("GET", path))
        self.assertEqual((code, body["error"]), (404, "unknown session"))
        code, _, _ = await rest(self.a.api_port, "GET", path)
        self.assertEqual(code, 200)
        await self.caller.bye()
