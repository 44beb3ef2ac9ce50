"""
Tests for the per-call output limits of L{aiconnect.call.Call} (SPEC s12
C{max_forwards_per_call}, C{max_outputs_per_call}): one decision,
L{Call.order_refusal}, for the REST API and the newCall answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.call import REFUSED_ENDED, REFUSED_LIMIT, Call, ForwardInfo, ListSink, OrderRefused
from aiconnect.config import LimitsConfig
from aiconnect.registry import CallRegistry


@dataclass
class FakeTenant:
    """
    The part of a L{TenantConfig} a L{Call} reads.
    """

    domain: str = "customer.example.com"


@dataclass
class FakeOrder:
    """
    The part of a forward order a L{Call} reads.
    """

    uri: str = "sip:aiforward@customer.example.com"
    reference_id: Any = None


class CallLimitsTests(SynchronousTestCase):
    """
    Orders beyond the per-call limits are refused by the L{Call}.
    """

    def make_call(self, forwards: int = 2, outputs: int = 8, acked: bool = True) -> Call:
        """
        An active call with the given limits whose forwarder records the
        forwards it is asked to start.
        """
        self.sink = ListSink()
        self.counters: dict[str, int] = {}
        self.started: list[str] = []
        limits = LimitsConfig(max_forwards_per_call=forwards, max_outputs_per_call=outputs)
        call = Call(Clock(), FakeTenant(), self.sink, "cid", "<sip:a@x>;tag=1", "<sip:b@y>", "127.0.0.1", limits=limits, counters=self.counters)

        def forwarder(c: Call, info: ForwardInfo) -> None:
            self.started.append(info.forward_id)

        call.forwarder = forwarder
        if acked:
            call.acked()
        return call

    def test_forward_limit(self) -> None:
        """
        A forward beyond max_forwards_per_call raises L{OrderRefused}
        naming the limit, starts nothing and is counted.
        """
        call = self.make_call(forwards=2)
        call.order_forward(FakeOrder())
        call.order_forward(FakeOrder())
        with self.assertRaises(OrderRefused) as caught:
            call.order_forward(FakeOrder())
        self.assertEqual((caught.exception.reason, caught.exception.limit), (REFUSED_LIMIT, "max_forwards_per_call"))
        self.assertIn("max_forwards_per_call (2)", caught.exception.message)
        self.assertEqual(len(self.started), 2)
        self.assertEqual(len(call.forwards), 2)
        self.assertEqual(self.counters, {"forwards_refused_limit": 1})
        self.assertEqual(call.live_outputs(), {"forward": 2})

    def test_output_limit(self) -> None:
        """
        max_outputs_per_call caps forwards too when it is the lower one.
        """
        call = self.make_call(forwards=4, outputs=1)
        call.order_forward(FakeOrder())
        refusal = call.order_refusal("forward")
        assert refusal is not None
        self.assertEqual(refusal.limit, "max_outputs_per_call")

    def test_failed_and_stopped_free_slots(self) -> None:
        """
        A failed forward and a stopped one no longer count.
        """
        call = self.make_call(forwards=2)
        first = call.order_forward(FakeOrder())
        second = call.order_forward(FakeOrder())
        self.assertIsNotNone(call.order_refusal("forward"))
        call.forward_failed(first, "Service Unavailable", status=503)
        self.assertIsNone(call.order_refusal("forward"))
        third = call.order_forward(FakeOrder())
        call.forward_started(second, "127.0.0.1:5070;transport=udp", "PCMU", False)
        call.stop_forwards(second, "api")
        self.assertEqual(call.live_outputs(), {"forward": 1})
        call.forward_started(third, "127.0.0.1:5070;transport=udp", "PCMU", False)
        call.order_forward(FakeOrder())
        self.assertIsNotNone(call.order_refusal("forward"))

    def test_ended_session(self) -> None:
        """
        An ending session refuses with reason "session ended" (no limit,
        not counted as a limit breach).
        """
        call = self.make_call()
        call.terminate("inboundBye", send_bye=False)
        with self.assertRaises(OrderRefused) as caught:
            call.order_forward(FakeOrder())
        self.assertEqual((caught.exception.reason, caught.exception.limit), (REFUSED_ENDED, None))
        self.assertEqual(self.counters, {})

    def test_new_call_orders_reported_once_active(self) -> None:
        """
        Orders refused while negotiating (newCall answer) hold no slot and
        are reported as SIPRECFORWARDFAILED with reason "limit" after
        SESSIONSTARTED; the accepted ones start.
        """
        call = self.make_call(forwards=2, acked=False)
        for n in range(3):
            order = FakeOrder(reference_id={"n": n})
            try:
                call.order_forward(order)
            except OrderRefused as refusal:
                call.order_refused(order, refusal)
        call.order_invalid("uri: missing", {"uri": 5})
        self.assertEqual(call.live_outputs(), {"forward": 2})
        self.assertEqual(self.sink.names(), [])
        call.acked()
        self.assertEqual(self.sink.names(), ["SESSIONSTARTED", "SIPRECFORWARDFAILED", "SIPRECFORWARDFAILED"])
        limit, invalid = self.sink.events[1], self.sink.events[2]
        self.assertEqual((limit["reason"], limit["sipRecForwardReferenceId"], limit["uri"]), ("limit", {"n": 2}, FakeOrder.uri))
        self.assertEqual(invalid["reason"], "invalid order: uri: missing")
        self.assertEqual(len(self.started), 2)


class RegistryLiveCountTests(SynchronousTestCase):
    """
    L{CallRegistry.live_count}: the live calls of a tenant, behind
    C{max_sessions}.
    """

    def test_counts_live_calls_per_tenant(self) -> None:
        """
        A call counts from L{CallRegistry.add} until it ends, per tenant
        (any case), once even if added twice.
        """
        registry = CallRegistry()
        sink = ListSink()
        calls = [Call(Clock(), FakeTenant(domain), sink, "c%d" % i, "", "", "127.0.0.1") for i, domain in enumerate(("a.example", "A.example", "b.example"))]
        for call in calls:
            registry.add(call)
        registry.add(calls[0])
        self.assertEqual((registry.live_count("a.EXAMPLE"), registry.live_count("b.example")), (2, 1))
        calls[0].terminate("inboundBye", send_bye=False)
        calls[0].terminate("inboundBye", send_bye=False)
        self.assertEqual(registry.live_count("a.example"), 1)
        calls[1].terminate("inboundBye", send_bye=False)
        self.assertEqual(registry.live_count("a.example"), 0)
        self.assertEqual(len(registry), 1)
