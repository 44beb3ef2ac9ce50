# -*- test-case-name: tests.integration.test_cluster_whole -*-
"""
Helpers of L{tests.integration.test_cluster_whole}: the SPEC s14 cluster
as a whole (real PostgreSQL, real Kamailio, C{twistd} nodes on their own
loopback addresses sharing the database, one application, one SRS).

Reuses L{tests.integration.cluster_nodes} (Kamailio, nodes, the SRC) and
L{tests.storage.pgserver} (the database).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from typing import Any

import treq
from twisted.trial.unittest import TestCase

from aiconnect.sip.message import Request, parse
from tests.fakes import WaitTimeout, status_of
from tests.integration.cluster_nodes import DOMAIN, METADATA, ClusterSrc, Node, start_node
from tests.integration.siprec_peer import in_dialog, sdp_offer, siprec_invite
from tests.integration.srs_peer import SrsPeer

TOKEN = "t0ken"
SECRET = "whole-cluster-secret-0123456789"


class ManySrs(SrsPeer):
    """
    An L{SrsPeer} that keeps one dialog per Call-ID (the plain peer keeps
    one), so that it answers every node's forward INVITE.
    """

    def __init__(self) -> None:
        super().__init__("200")
        self.dialogs: dict[str, dict[str, Any]] = {}

    def received(self, data: bytes) -> None:
        msg = parse(data)
        if isinstance(msg, Request):
            self.dialog = self.dialogs.setdefault(msg.call_id, {})
        super().received(data)

    def byes(self) -> set[str]:
        """
        The Call-IDs of the BYEs received.
        """
        return {r.call_id for r in self.requests if r.method == "BYE"}


@dataclass
class ClusterNode:
    """
    A node of the shared database: L{Node} plus its id and API port.
    """

    id: str
    node: Node
    api_port: int

    @property
    def host(self) -> str:
        return self.node.host


def start_cluster_node(
    test: TestCase, node_id: str, host: str, url: str, app_port: int, srs_port: int, rtp: tuple[int, int], lease: float
) -> ClusterNode:
    """
    A C{twistd} node on C{host} (L{start_node}) on the PostgreSQL database
    C{url}, with a trunk C{aiforward} to the SRS on 127.0.0.1:C{srs_port};
    its API URL is derived from its API address (C{host}).
    """
    extra = (
        "callback_timeout = 3.0\n"
        '[[tenant.trunk]]\nmatch = "aiforward"\ntarget = "127.0.0.1:%d"\ntransport = "udp"\n'
        '\n[database]\nurl = "%s"\n\n[node]\nid = "%s"\n\n[cluster]\nsecret = "%s"\nlease = %s\n'
    ) % (srs_port, url, node_id, SECRET, lease)
    node = start_node(test, host, app_port, rtp, extra=extra)
    api_port = tomllib.loads(node.server.config.read_text())["api"]["port"]
    return ClusterNode(node_id, node, api_port)


async def rest(node: ClusterNode, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """
    One REST request to C{node}'s API, as the tenant's application.

    @return: The status and the decoded JSON answer.
    """
    kw: dict[str, Any] = {"headers": {"Authorization": "Bearer " + TOKEN}, "persistent": False}
    if body is not None:
        kw["data"] = json.dumps(body).encode()
        kw["headers"]["Content-Type"] = "application/json"
    resp = await treq.request(method, "http://%s:%d%s" % (node.host, node.api_port, path), **kw)
    text = await resp.content()
    return resp.code, json.loads(text) if text else None


class HeldCall:
    """
    One SIPRec call placed through Kamailio and held until either side
    ends it (ACK and BYE straight to the node's Contact); the SRC answers
    a node's BYE with 200 (L{ClusterSrc}).
    """

    def __init__(self, test: TestCase, src: ClusterSrc, local: int) -> None:
        self.test = test
        self.src = src
        self.local = local
        self.ok = b""
        self.ids: dict[str, str] = {}
        self.node: tuple[str, int] = ("", 0)

    @classmethod
    async def place(cls, test: TestCase, proxy_port: int) -> "HeldCall":
        """
        INVITE to Kamailio on 127.0.0.1:C{proxy_port}; the test fails
        unless it is answered 200.
        """
        from twisted.internet import reactor

        src = ClusterSrc()
        listening = reactor.listenUDP(0, src, interface="127.0.0.1")
        test.addCleanup(listening.stopListening)
        call = cls(test, src, listening.getHost().port)
        invite, call.ids = siprec_invite("udp", call.local, DOMAIN, sdp_offer([("1", call.local + 2, 8)]), METADATA)
        src.send(invite, proxy_port)
        call.ok = await src.next_final(timeout=15, call_id=call.ids["call_id"])
        test.assertEqual(status_of(call.ok), 200, call.ok)
        contact = parse(call.ok, datagram=False).contacts[0].uri
        call.node = (contact.host, contact.port or 5060)
        src.send(in_dialog("ACK", "udp", call.local, call.ok, call.ids, 101, DOMAIN), call.node[1], call.node[0])
        return call

    @property
    def call_id(self) -> str:
        return self.ids["call_id"]

    async def bye_received(self, timeout: float) -> bytes:
        """
        The node's BYE (answered 200 by the SRC).
        """
        return await self.src.take(lambda m: m.startswith(b"BYE "), timeout=timeout)

    async def hang_up(self) -> int:
        """
        The SRC's BYE to the node.

        @return: The status of its answer.
        """
        self.src.send(in_dialog("BYE", "udp", self.local, self.ok, self.ids, 102, DOMAIN), self.node[1], self.node[0])
        try:
            answer = await self.src.take(lambda m: m.startswith(b"SIP/2.0 ") and b" BYE\r\n" in m, timeout=5)
        except WaitTimeout:
            return 0
        return int(status_of(answer) or 0)


def per_session(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """
    The application's events by session, in the order they arrived.
    """
    sessions: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        sessions.setdefault(str(event["sessionId"]), []).append(event)
    return sessions


__all__ = ["ClusterNode", "HeldCall", "ManySrs", "SECRET", "TOKEN", "per_session", "rest", "start_cluster_node"]
