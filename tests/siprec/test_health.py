"""
L{aiconnect.siprec.health.TargetHealth} and L{aiconnect.siprec.probe.TrunkProber}
driven by a L{Clock}: states, ordering, expiry, bounds, and OPTIONS probes
through the real UA core and transaction layer over a recording fake
transport.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.config import load_string
from aiconnect.sip.message import Request
from aiconnect.sip.peer import Peer
from aiconnect.siprec.health import HEALTH_TABLE, HealthInput, HealthState, TargetHealth
from aiconnect.siprec.probe import TrunkProber
from tests.sip.uac_stack import UacStack
from tests.siprec.test_forward import CONFIG as FORWARD_CONFIG

A = Peer("udp", "127.0.0.1", 5071)
B = Peer("udp", "127.0.0.1", 5072)
C = Peer("tcp", "127.0.0.1", 5071)


class RegistryTests(SynchronousTestCase):
    """
    The registry's states, order and bounds.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.health = TargetHealth(self.clock)

    def test_unknown_until_reported(self) -> None:
        """
        A target never reported is unknown and tried.
        """
        self.assertIs(self.health.state(A), HealthState.UNKNOWN)
        self.assertEqual(self.health.order([A, B]), [A, B])

    def test_failed_is_down_for_down_for(self) -> None:
        """
        A failed target is skipped for down_for seconds, then tried again (unknown).
        """
        self.health.target_failed(A, "timeout", 30)
        self.assertEqual(self.health.order([A, B]), [B])
        self.clock.advance(29.9)
        self.assertTrue(self.health.is_down(A))
        self.clock.advance(0.1)
        self.assertIs(self.health.state(A), HealthState.UNKNOWN)
        self.assertEqual(self.health.order([A, B]), [A, B])
        self.assertEqual(self.health.describe(A)["lastError"], "timeout")

    def test_all_down_tried_in_order(self) -> None:
        """
        When every target is down, all are tried, in the given order.
        """
        self.health.target_failed(B, "SIP 503", 30)
        self.health.target_failed(A, "SIP 503", 30)
        self.assertEqual(self.health.order([A, B]), [A, B])

    def test_answered_is_up(self) -> None:
        """
        An answer brings a down target up at once.
        """
        self.health.target_failed(A, "timeout", 30)
        self.clock.advance(1)
        self.health.target_answered(A)
        self.assertIs(self.health.state(A), HealthState.UP)
        described = self.health.describe(A)
        self.assertEqual(described["since"], "2023-11-14T22:13:21.000Z")
        self.assertIsNone(described["downUntil"])

    def test_down_for_zero_never_down(self) -> None:
        """
        With down_for 0 a failure is recorded but the target is never skipped.
        """
        self.health.target_failed(A, "transport: refused", 0)
        self.assertFalse(self.health.is_down(A))
        self.assertEqual(self.health.describe(A)["lastError"], "transport: refused")

    def test_keys_include_transport(self) -> None:
        """
        The same host and port over another transport is another target.
        """
        self.health.target_failed(A, "timeout", 30)
        self.assertFalse(self.health.is_down(C))

    def test_bounded(self) -> None:
        """
        At most cap targets are kept, the least recently touched forgotten first.
        """
        health = TargetHealth(self.clock, cap=2)
        health.target_failed(A, "x", 30)
        health.target_failed(B, "x", 30)
        health.target_failed(A, "x", 30)
        health.target_failed(C, "x", 30)
        self.assertEqual(len(health), 2)
        self.assertTrue(health.is_down(A))
        self.assertFalse(health.is_down(B))
        self.assertEqual(health.stats["evicted"], 1)

    def test_describe_shape(self) -> None:
        """
        describe() gives the API's fields, times as ISO-8601.
        """
        self.health.target_failed(A, "SIP 503 Service Unavailable", 30)
        self.health.probed(A, "503 Service Unavailable", 12)
        self.assertEqual(
            self.health.describe(A),
            {
                "target": "127.0.0.1:5071;transport=udp",
                "transport": "udp",
                "host": "127.0.0.1",
                "port": 5071,
                "state": "down",
                "since": "2023-11-14T22:13:20.000Z",
                "downUntil": "2023-11-14T22:13:50.000Z",
                "lastError": "SIP 503 Service Unavailable",
                "lastProbe": "2023-11-14T22:13:20.000Z",
                "probeStatus": "503 Service Unavailable",
                "probeMs": 12,
            },
        )

    def test_table_complete_for_failures_and_answers(self) -> None:
        """
        Every state takes a failure and an answer; only down expires.
        """
        for state in HealthState:
            for what in (HealthInput.FAILED, HealthInput.ANSWERED):
                self.assertIn((state, what), HEALTH_TABLE)
        expiring = [s for (s, i) in HEALTH_TABLE if i is HealthInput.EXPIRED]
        self.assertEqual(expiring, [HealthState.DOWN])


CONFIG = FORWARD_CONFIG.replace('match = "aiforward"', 'match = "probed"').replace(
    '  transport = "udp"\n', '  transport = "udp"\n  probe_interval = 10\n  down_for = 15\n'
) + '  [[tenant.trunk]]\n  match = "quiet"\n  target = "quiet.test"\n'


class Targets:
    """
    A resolver giving A then B for every trunk, counting its calls.
    """

    def __init__(self) -> None:
        self.calls: list[str] = []

    def resolve(self, target: str, transport: str) -> defer.Deferred[list[Peer]]:
        self.calls.append(target)
        return defer.succeed([A, B])


class ProberTests(SynchronousTestCase):
    """
    OPTIONS probes on a Clock.
    """

    def setUp(self) -> None:
        self.stack = UacStack()
        self.clock, self.transport, self.ua, self.tx = self.stack.clock, self.stack.transport, self.stack.ua, self.stack.tx
        self.cfg = load_string(CONFIG)
        self.health = TargetHealth(self.clock)
        self.resolver = Targets()
        self.prober = TrunkProber(self.clock, self.ua, self.resolver, self.health, lambda: self.cfg.tenants[0].trunks)
        self.prober.startService()
        self.addCleanup(lambda: self.prober.running and self.prober.stopService())

    def options(self, peer: Peer) -> list[Request]:
        return self.stack.sent("OPTIONS", peer)

    def answer(self, request: Request, status: int, reason: str, peer: Peer) -> None:
        self.stack.respond(request, status, reason, peer)

    def test_probes_each_target_of_probed_trunks(self) -> None:
        """
        At start and every probe_interval, each target of a trunk with probing gets one OPTIONS; others none.
        """
        self.assertEqual(self.resolver.calls, ["srs.test"])
        self.assertEqual((len(self.options(A)), len(self.options(B))), (1, 1))
        self.assertTrue(self.options(A)[0].uri.startswith("sip:probed@srs.test"))
        self.answer(self.options(A)[0], 200, "OK", A)
        self.answer(self.options(B)[0], 200, "OK", B)
        self.clock.advance(10)
        self.assertEqual(self.resolver.calls, ["srs.test", "srs.test"])
        self.assertEqual((len(self.options(A)), len(self.options(B))), (2, 2))

    def test_verdicts(self) -> None:
        """
        200 (and 404) mark a target up; 503 marks it down for down_for with the probe's status.
        """
        self.answer(self.options(A)[0], 503, "Service Unavailable", A)
        self.answer(self.options(B)[0], 404, "Not Found", B)
        self.assertTrue(self.health.is_down(A))
        self.assertIs(self.health.state(B), HealthState.UP)
        described = self.health.describe(A)
        self.assertEqual((described["probeStatus"], described["lastError"]), ("503 Service Unavailable", "OPTIONS: 503 Service Unavailable"))
        self.clock.advance(10)
        self.answer(self.options(A)[1], 200, "OK", A)
        self.assertIs(self.health.state(A), HealthState.UP)

    def test_timeout_marks_down_one_probe_in_flight(self) -> None:
        """
        A silent target: no second OPTIONS while the first is in flight; its timeout (Timer F) marks it down.
        """
        self.answer(self.options(B)[0], 200, "OK", B)
        self.clock.advance(10)
        self.assertEqual(len([r for r in self.options(A) if r.headers.get("Via") is not None]), len(self.options(A)))
        self.assertEqual(len({r.call_id for r in self.options(A)}), 1)  # retransmissions only
        self.assertEqual(self.prober.stats["skipped"], 1)
        self.clock.advance(22.5)  # 64*T1 after the first
        self.assertTrue(self.health.is_down(A))
        self.assertEqual(self.health.describe(A)["probeStatus"], "timeout")

    def test_stops_with_the_service(self) -> None:
        """
        After stopService no more probes are sent.
        """
        self.prober.stopService()
        count = len(self.resolver.calls)
        self.clock.advance(100)
        self.assertEqual(len(self.resolver.calls), count)
