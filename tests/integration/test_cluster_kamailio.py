# -*- test-case-name: tests.integration.test_cluster_kamailio -*-
"""
Several AI Connect nodes behind Kamailio without shared state (SPEC s14;
docs/cluster.md): Kamailio on 127.0.0.1 with C{etc/kamailio/kamailio.cfg}
spreads SIPRec INVITEs over three real C{twistd} nodes on 127.0.0.2-4
(each its own SQLite database and RTP range, one application for all);
a node that drains (SIGTERM) or dies (SIGKILL) loses no new call.

Skipped where the C{kamailio} package is not installed.
"""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.fakes import listen_udp, pause, wait_until
from tests.integration.cluster_nodes import (
    DOMAIN,
    KAMAILIO_CFG,
    METADATA,
    CallResult,
    Kamailio,
    Node,
    bindable,
    find_binary,
    siprec_call,
    start_kamailio,
    start_node,
    wait_states,
)
from tests.integration.scenario import _raw_header, _status, ack_of_failure, cancel_of, final, response
from tests.integration.siprec_peer import sdp_offer, siprec_invite
from tests.integration.test_inbound_cancel import _HoldingApp

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
#: The nodes' RTP ranges (this module's share: 65000-65299).
RTP = ((65000, 65099), (65100, 65199), (65200, 65299))


class ConfigurationTests(SynchronousTestCase):
    """
    The shipped Kamailio configuration as an operator starts it.
    """

    def test_defaults_check(self) -> None:
        """
        C{kamailio -c} accepts etc/kamailio/kamailio.cfg with no define
        given (its defaults: 127.0.0.1:5060, /etc/kamailio/dispatcher.list)
        and listens where they say.
        """
        binary = find_binary("kamailio")
        if binary is None:
            self.skipTest("kamailio is not installed (Debian: apt-get install kamailio)")
        done = subprocess.run([binary, "-c", "-f", str(KAMAILIO_CFG)], capture_output=True, text=True, timeout=30)
        out = done.stdout + done.stderr
        self.assertEqual(done.returncode, 0, out)
        self.assertIn("config file ok", out)
        self.assertIn("udp: 127.0.0.1 [127.0.0.1]:5060", out)
        self.assertIn("tcp: 127.0.0.1 [127.0.0.1]:5060", out)


class ClusterTests(TestCase):
    """
    Three nodes, one Kamailio, one application.
    """

    timeout = 60

    async def setUp(self) -> None:
        for host in HOSTS:
            if not bindable(host):
                self.skipTest("%s cannot be bound here" % (host,))
        # Answers newCall at once ({}: no order), unless told to hold it.
        self.app = _HoldingApp()
        self.app.hold = False
        app_port = self.app.listen()
        self.addCleanup(self.app.port.stopListening)
        self.nodes = [start_node(self, host, app_port, rtp) for host, rtp in zip(HOSTS, RTP)]
        self.kam: Kamailio = start_kamailio(self, [(n.host, n.sip_port) for n in self.nodes])
        # Every node in the list starts inactive: "AP" means it answered
        # Kamailio's OPTIONS probe with 200.
        await wait_states(self, self.kam, {n.uri: "AP" for n in self.nodes}, timeout=40)

    async def calls(self, count: int, spacing: float, hold: float) -> list[CallResult]:
        """
        C{count} calls through Kamailio, one started every C{spacing} s.
        """
        started: list[defer.Deferred[CallResult]] = []
        for _ in range(count):
            started.append(defer.ensureDeferred(siprec_call(self, self.kam.port, hold)))
            await pause(spacing)
        return list(await defer.gatherResults(started))

    async def assert_completed(self, results: list[CallResult]) -> None:
        """
        Every call was answered 200 (none failed at the SRC), and the
        application got one newCall and one SESSIONCOMPLETED per call.
        """
        self.assertEqual([r.status for r in results], [200] * len(results), self.kam.output()[-3000:])
        await self.app.wait_for("newCall", len(results))
        completed: list[dict[str, Any]] = []

        def done() -> int:
            completed[:] = [e for e in self.app.events if e["event"] == "SESSIONCOMPLETED"]
            return len(completed)

        await self.app.wait_for("events", 2 * len(results), timeout=20)
        done()
        self.assertEqual(len(self.app.new_calls), len(results))
        self.assertEqual(
            sorted(e["sessionId"] for e in completed),
            sorted(c["sessionId"] for c in self.app.new_calls),
            self.app.event_names(),
        )
        self.assertEqual(self.app.bad_signatures, 0)

    async def test_calls_spread_over_the_nodes(self) -> None:
        """
        Nine SIPRec calls sent to Kamailio land on every node (round
        robin: at least two each) and complete: ACK and BYE go straight to the node that
        answered (its own address in Contact).
        """
        results = await self.calls(9, 0.05, 0.3)
        await self.assert_completed(results)
        spread = Counter(r.node for r in results)
        self.assertEqual(set(spread), set(HOSTS), spread)
        self.assertGreaterEqual(min(spread.values()), 2, spread)

    async def test_sigterm_drains_one_node_without_failed_calls(self) -> None:
        """
        SIGTERM on one node while calls arrive: that node drains (503 to
        new INVITEs while it ends its calls, then its SIP closes) and
        Kamailio sends those calls to the others. No call fails at the SRC;
        every call completes (those the draining node held end with its
        BYE); the node exits cleanly.

        Three held calls whose SRC never answers BYE keep the draining node
        in its drain (its BYE retransmitted) until Kamailio, through which
        the node sends it, answers 408 (fr_timer, 2 s), so that both
        failover paths are taken: 503 while it drains, no answer once its
        SIP is closed.
        """
        draining = self.nodes[1]
        held = [defer.ensureDeferred(siprec_call(self, self.kam.port, 5, answer_bye=False)) for _ in range(3)]
        await self.app.wait_for("events", 3)  # their SESSIONSTARTED: one call per node
        when: dict[str, float] = {}

        async def sigterm_later() -> None:
            await pause(0.5)
            when["sigterm"] = reactor.seconds()
            draining.server.signal(signal.SIGTERM)

        killer = defer.ensureDeferred(sigterm_later())
        sent: list[tuple[float, defer.Deferred[CallResult]]] = []
        for _ in range(40):
            sent.append((reactor.seconds(), defer.ensureDeferred(siprec_call(self, self.kam.port, 0.3))))
            await pause(0.15)
        await killer
        results = list(await defer.gatherResults([d for _, d in sent]))
        held_results = list(await defer.gatherResults(held))
        self.assertIn(draining.host, {r.node for r in held_results})
        await self.assert_completed(held_results + results)
        rc = await draining.server.wait_exit(15)
        self.assertIn(rc, (0, -signal.SIGTERM), draining.server.output())
        before = [r for (t, _), r in zip(sent, results) if t < when["sigterm"]]
        # The node turns to draining as soon as its reactor runs the signal
        # handler: well within a second even on a loaded machine.
        after = [r for (t, _), r in zip(sent, results) if t > when["sigterm"] + 1.0]
        self.assertIn(draining.host, {r.node for r in before})
        self.assertNotIn(draining.host, {r.node for r in after})
        self.assertEqual({r.node for r in after}, {self.nodes[0].host, self.nodes[2].host})
        log = self.kam.output()
        self.assertIn("to sip:", log)
        self.assertIn(" after 503", log)
        self.assertIn(" after 408", log)

    async def test_killed_node_is_probed_down(self) -> None:
        """
        A node killed with SIGKILL stops answering OPTIONS: Kamailio marks
        it inactive after three unanswered probes (1 s apart, 2 s timeout
        each), and the new calls go to
        the survivors and complete. (Its own sessions are not recovered
        here: that needs the shared database.)
        """
        dead: Node = self.nodes[2]
        dead.server.kill()
        await wait_states(self, self.kam, {dead.uri: "IP"}, timeout=10)
        results = await self.calls(6, 0.05, 0.2)
        await self.assert_completed(results)
        self.assertEqual({r.node for r in results}, {self.nodes[0].host, self.nodes[1].host})

    async def test_cancel_reaches_the_node(self) -> None:
        """
        A CANCEL sent to Kamailio while the node waits for newCall gets
        200 there and reaches the node (same transaction), whose 487 comes
        back to the SRC; the SRC's ACK of the 487 ends the transaction.
        The application gets only SESSIONCOMPLETED "cancel".
        """
        self.app.hold = True
        src, local = listen_udp(self)
        invite, _ids = siprec_invite("udp", local, DOMAIN, sdp_offer([("1", local + 2, 8)]), METADATA)
        src.send(invite, self.kam.port)
        await self.app.wait_for("newCall", 1)
        src.send(cancel_of(invite), self.kam.port)
        self.assertEqual(_status(await src.take(final("CANCEL"))), 200)
        answer = await src.take(final("INVITE"), timeout=5)
        self.assertEqual(_status(answer), 487, answer)
        to = _raw_header(answer, "To")
        assert to is not None
        src.send(ack_of_failure(invite, to), self.kam.port)
        # The ACK ends Kamailio's transaction: the 487 is no longer
        # retransmitted (a retransmission is due within T1 = 0.5 s, then 1 s).
        await pause(0.3)
        seen = len(src.matching(response(487, "INVITE")))
        await pause(1.2)
        self.assertEqual(len(src.matching(response(487, "INVITE"))), seen)
        await self.app.wait_for("events", 1)
        self.assertEqual(self.app.event_names(), ["SESSIONCOMPLETED"])
        self.assertEqual(self.app.events[0]["reason"], "cancel")
        await wait_until(lambda: self.app.abandoned == 1)
