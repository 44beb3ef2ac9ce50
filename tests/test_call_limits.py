"""
Tests for the per-call output limits of L{aiconnect.call.Call} (SPEC s12
C{max_forwards_per_call}, C{max_outputs_per_call}): one decision,
L{Call.order_refusal}, for the REST API and the newCall answer.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.call import REFUSED_ENDED, REFUSED_LIMIT, CallLimits, ForwardAnswered, ForwardFailed, InboundAcked, InboundEnded, OrderRefused
from aiconnect.registry import CallRegistry
from aiconnect.runner import CallRunner
from tests.fakes import FakeOrder, FakeTenant, ListSink, RecordingLegFactory, make_runner


class CallLimitsTests(SynchronousTestCase):
    """
    Orders beyond the per-call limits are refused by the L{Call}.
    """

    def make_call(self, forwards: int = 2, outputs: int = 8, acked: bool = True) -> CallRunner:
        """
        An active call with the given limits whose leg factory records the
        forwards it is asked to start.
        """
        self.sink = ListSink()
        self.counters: dict[str, int] = {}
        self.legs = RecordingLegFactory()
        limits = CallLimits(max_forwards_per_call=forwards, max_outputs_per_call=outputs)
        return make_runner(sink=self.sink, leg_factory=self.legs, limits=limits, counters=self.counters, acked=acked)

    @property
    def started(self) -> list[str]:
        """
        The forwards whose legs were started.
        """
        return self.legs.started

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
        self.assertEqual(len(call.call.forwards), 2)
        self.assertEqual(self.counters, {"forwards_refused_limit": 1})
        self.assertEqual(call.call.live_outputs(), {"forward": 2, "stream": 0, "recording": 0})

    def test_output_limit(self) -> None:
        """
        max_outputs_per_call caps forwards too when it is the lower one.
        """
        call = self.make_call(forwards=4, outputs=1)
        call.order_forward(FakeOrder())
        refusal = call.call.order_refusal("forward")
        assert refusal is not None
        self.assertEqual(refusal.limit, "max_outputs_per_call")

    def test_failed_and_stopped_free_slots(self) -> None:
        """
        A failed forward and a stopped one no longer count.
        """
        call = self.make_call(forwards=2)
        first = call.order_forward(FakeOrder())
        second = call.order_forward(FakeOrder())
        self.assertIsNotNone(call.call.order_refusal("forward"))
        call.report(ForwardFailed, forward_id=first, reason="Service Unavailable", status=503)
        self.assertIsNone(call.call.order_refusal("forward"))
        third = call.order_forward(FakeOrder())
        call.report(ForwardAnswered, forward_id=second, target="127.0.0.1:5070;transport=udp", codec="PCMU", srtp=False)
        call.stop_forwards(second, "api")
        self.assertEqual(call.call.live_outputs(), {"forward": 1, "stream": 0, "recording": 0})
        call.report(ForwardAnswered, forward_id=third, target="127.0.0.1:5070;transport=udp", codec="PCMU", srtp=False)
        call.order_forward(FakeOrder())
        self.assertIsNotNone(call.call.order_refusal("forward"))

    def test_ended_session(self) -> None:
        """
        An ending session refuses with reason "session ended" (no limit,
        not counted as a limit breach).
        """
        call = self.make_call()
        call.report(InboundEnded, reason="bye")
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
                call.reject_order(refusal.reason, order=order)
        call.reject_order("invalid order: uri: missing", raw={"uri": 5})
        self.assertEqual(call.call.live_outputs(), {"forward": 2, "stream": 0, "recording": 0})
        self.assertEqual(self.sink.names(), [])
        call.report(InboundAcked)
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
        calls = [make_runner(FakeTenant(domain), sink, call_id="c%d" % i) for i, domain in enumerate(("a.example", "A.example", "b.example"))]
        for call in calls:
            registry.add(call)
        registry.add(calls[0])
        self.assertEqual((registry.live_count("a.EXAMPLE"), registry.live_count("b.example")), (2, 1))
        calls[0].report(InboundEnded, reason="bye")
        calls[0].report(InboundEnded, reason="bye")
        self.assertEqual(registry.live_count("a.example"), 1)
        calls[1].report(InboundEnded, reason="bye")
        self.assertEqual(registry.live_count("a.example"), 0)
        self.assertEqual(len(registry), 1)
