"""
Tests for L{aiconnect.runner.CallRunner}: it carries out the Call's
actions on its collaborators (fakes of the L{aiconnect.legs} seams) and
decides nothing itself.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.call import ForwardAnswered, InboundEnded, MediaTimeout
from tests.fakes import FakeOrder, RecordingLegFactory, make_runner


class FakeInbound:
    """
    The SRC's dialog: counts BYEs, answers them with C{result}.
    """

    terminated = False

    def __init__(self, result: defer.Deferred[Any]) -> None:
        self.result = result
        self.byes = 0

    def bye(self) -> defer.Deferred[Any]:
        self.byes += 1
        return self.result


class FakeMedia:
    """
    A relay session.
    """

    def __init__(self) -> None:
        self.closed = False

    def stats(self) -> dict[str, Any]:
        return {"packets": 7, "closed": self.closed}

    def close(self) -> None:
        self.closed = True


class RecordingJournal:
    """
    Records the journal calls, with the events emitted so far.
    """

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.calls: list[tuple[str, int]] = []

    def session_started(self, runner: Any) -> None:
        self.calls.append(("session_started", len(self.sink.events)))

    def forward_started(self, runner: Any, forward_id: str) -> None:
        self.calls.append(("forward_started", len(self.sink.events)))

    def forward_ended(self, runner: Any, forward_id: str) -> None:
        self.calls.append(("forward_ended", len(self.sink.events)))

    def session_ended(self, runner: Any) -> None:
        self.calls.append(("session_ended", len(self.sink.events)))


class Finisher:
    """
    Records the sessions it was told ended.
    """

    def __init__(self) -> None:
        self.finished: list[Any] = []

    def session_finished(self, runner: Any) -> None:
        self.finished.append(runner)


class RunnerTests(SynchronousTestCase):
    """
    Actions carried out, in order.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(50)
        self.legs = RecordingLegFactory()
        self.runner = make_runner(clock=self.clock, leg_factory=self.legs, acked=True)
        self.media = FakeMedia()
        self.runner.media = self.media
        self.finisher = Finisher()
        self.runner.finishers.append(self.finisher)

    def test_lifecycle(self) -> None:
        """
        An ordered forward gets a started leg; a media timeout BYEs the SRC
        (an unanswered BYE is logged, not an error), stops the leg, closes
        the media after the leg stopped, emits SESSIONCOMPLETED with the
        media's final counters and tells the finishers, with the clock's
        time on every event.
        """
        unanswered: defer.Deferred[Any] = defer.Deferred()
        inbound = FakeInbound(unanswered)
        self.runner.inbound = inbound
        fid = self.runner.order_forward(FakeOrder())
        self.assertEqual(self.legs.started, [fid])
        self.runner.report(ForwardAnswered, forward_id=fid, target="t", codec="PCMU", srtp=False)
        self.clock.advance(10)
        self.runner.report(MediaTimeout)
        self.assertEqual((inbound.byes, self.legs.legs[0].stopped_by), (1, "error"))
        unanswered.errback(RuntimeError("timeout"))
        self.assertEqual(self.runner.sink.names(), ["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"])
        completed = self.runner.sink.events[-1]
        self.assertEqual((completed["stats"], completed["duration"]), ({"packets": 7, "closed": False}, 10.0))
        self.assertTrue(self.media.closed)
        self.assertEqual(self.finisher.finished, [self.runner])
        self.assertEqual(self.runner.media_stats(), {"packets": 7, "closed": False})
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_no_leg_factory(self) -> None:
        """
        Without forwarding the order fails with "not implemented".
        """
        self.runner.leg_factory = None
        self.runner.order_forward(FakeOrder())
        self.assertEqual(self.runner.sink.events[-1]["reason"], "not implemented")

    def test_leg_that_raises(self) -> None:
        """
        A leg failing to start is logged and reported as an internal error;
        the session goes on.
        """

        def broken(runner: Any, forward_id: str, order: Any) -> Any:
            raise ValueError("boom")

        self.runner.leg_factory = broken
        self.runner.order_forward(FakeOrder())
        self.assertEqual(self.runner.sink.events[-1]["reason"], "internal error: ValueError")
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(self.runner.state.value, "active")

    def test_journal_after_each_event(self) -> None:
        """
        The journal hears of each event it tracks after it is emitted.
        """
        runner = make_runner(clock=self.clock, leg_factory=self.legs)
        journal = RecordingJournal(runner.sink)
        runner.journal = journal
        from aiconnect.call import InboundAcked

        runner.report(InboundAcked)
        fid = runner.order_forward(FakeOrder())
        runner.report(ForwardAnswered, forward_id=fid, target="t", codec="PCMU", srtp=False)
        runner.report(InboundEnded, reason="bye")
        self.assertEqual(
            journal.calls,
            [("session_started", 1), ("forward_started", 2), ("forward_ended", 3), ("session_ended", 4)],
        )

    def test_failing_sink_changes_nothing(self) -> None:
        """
        A sink that raises is logged; the call state is the same.
        """

        class Broken:
            def emit(self, *a: Any) -> None:
                raise OSError("disk")

        self.runner.sink = Broken()
        self.runner.report(InboundEnded, reason="bye")
        self.assertEqual(self.runner.state.value, "ended")
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
