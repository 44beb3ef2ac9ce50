"""
The test toolbox: small recording fakes and builders shared by the tests
(STYLE s3 example 8: fakes via Protocols, never C{mock.patch}).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet.task import Clock

from aiconnect.call import Call, CallLimits, ForwardStopped, InboundAcked, InboundAnswered
from aiconnect.runner import CallRunner

# -- Call fakes ---------------------------------------------------------------


class ListSink:
    """
    An L{aiconnect.legs.EventSink} that keeps events in a list.
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, tenant: str, session_id: str, payload: Mapping[str, Any]) -> str:
        """
        Keep the event; return its id.
        """
        self.events.append(dict(payload))
        return str(payload.get("eventId"))

    def names(self) -> list[str]:
        """
        The event names in order.
        """
        return [e["event"] for e in self.events]


@dataclass
class FakeTenant:
    """
    The part of a L{aiconnect.config.TenantConfig} a L{Call} reads.
    """

    domain: str = "customer.example.com"


@dataclass
class FakeOrder:
    """
    The part of a forward order a L{Call} reads.
    """

    uri: str = "sip:aiforward@customer.example.com"
    reference_id: Any = None

    def describe(self) -> dict[str, Any]:
        """
        The order's JSON (as L{aiconnect.siprec.orders.ForwardOrder}).
        """
        return {"uri": self.uri, "sipRecForwardReferenceId": self.reference_id}


class FakeLeg:
    """
    An L{aiconnect.legs.ForwardLeg} that records what it is asked.  It
    stays trying until the test reports a fact for it; asked to stop, it
    reports L{ForwardStopped} at once (with C{awaiting_bye} when the test
    set it: then the SRS's answer to the BYE is the test's to report).
    """

    awaiting_bye = False

    def __init__(self, runner: CallRunner, forward_id: str, order: Any) -> None:
        self.runner = runner
        self.forward_id = forward_id
        self.order = order
        self.started = False
        self.stopped_by: str | None = None
        self.updates: list[tuple[bool, bool]] = []
        self.session: Any = None

    def start(self) -> None:
        self.started = True

    def stop(self, stopped_by: str) -> None:
        self.stopped_by = stopped_by
        self.runner.report(ForwardStopped, forward_id=self.forward_id, stopped_by=stopped_by, awaiting_bye=self.awaiting_bye)

    def inbound_updated(self, media_changed: bool, metadata_changed: bool) -> None:
        self.updates.append((media_changed, metadata_changed))

    def stats(self) -> dict[str, Any] | None:
        return None

    def dialog(self) -> Any:
        return self.session


class RecordingLegFactory:
    """
    An L{aiconnect.legs.LegFactory} making L{FakeLeg}s.

    @ivar legs: the legs made, in order.
    """

    def __init__(self) -> None:
        self.legs: list[FakeLeg] = []

    def __call__(self, runner: CallRunner, forward_id: str, order: Any) -> FakeLeg:
        leg = FakeLeg(runner, forward_id, order)
        self.legs.append(leg)
        return leg

    @property
    def started(self) -> list[str]:
        """
        The forward ids of the legs started, in order.
        """
        return [leg.forward_id for leg in self.legs if leg.started]


def make_runner(
    tenant: Any = None,
    sink: Any = None,
    clock: Any = None,
    leg_factory: Any = None,
    limits: CallLimits | None = None,
    counters: dict[str, int] | None = None,
    acked: bool = False,
    call_id: str = "cid",
    from_header: str = "<sip:a@x>;tag=1",
    to_header: str = "<sip:b@y>",
    source: str = "127.0.0.1",
    session_id: str | None = None,
) -> CallRunner:
    """
    A L{CallRunner} around a new L{Call}, events into a L{ListSink} unless
    C{sink} is given; answered and ACKed when C{acked}.
    """
    clock = clock if clock is not None else Clock()
    call = Call(
        tenant if tenant is not None else FakeTenant(),
        call_id,
        from_header,
        to_header,
        source,
        now=clock.seconds(),
        session_id=session_id,
        limits=limits,
        counters=counters,
    )
    runner = CallRunner(call, clock, sink if sink is not None else ListSink(), leg_factory=leg_factory)
    if acked:
        runner.report(InboundAnswered)
        runner.report(InboundAcked)
    return runner
