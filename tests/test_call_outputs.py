# -*- test-case-name: tests.test_call_outputs -*-
"""
Tests for L{aiconnect.call_outputs}: the streams, recordings and pause of
the L{aiconnect.call.Call}, pure, with fixed C{now} values.  One case per
output row of L{CALL_TABLE} and per row of L{OUTPUT_TABLE} (a test fails
when a row has none), then the sequences SPEC s2, s8-s10 fix; and the
runner's side (L{aiconnect.runner.CallRunner.order_output}, C{pause} ...)
with recording fakes.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from aiconnect import call_outputs as outputs
from aiconnect.call import (
    CALL_TABLE,
    CallLimits,
    CallState,
    ForwardAnswered,
    ForwardOrdered,
    InboundAcked,
    InboundAnswered,
    InboundEnded,
    MediaClosed,
    OrderRefused,
)
from aiconnect.call_outputs import (
    OUTPUT_TABLE,
    OutputFailed,
    OutputOrdered,
    OutputRejected,
    OutputStarted,
    OutputState,
    OutputStopOrdered,
    OutputStopped,
    OutputUploaded,
    PauseOrdered,
    ResumeOrdered,
    new_recording_id,
)
from aiconnect.outputs.orders import RecordingOrder, StreamOrder
from tests.fakes import FakeOrder, ListSink, RecordingLegFactory, RecordingOutputFactory, make_runner
from tests.test_call import _STATE_MAKERS, T0, active, names, new_call

N = T0 + 10
S = "str_1"
STREAM = StreamOrder(url="wss://u:pw@ai.example.com/x?token=secret", reference_id={"t": 1})
RECORDING = RecordingOrder(encoding="PCMU", reference_id={"case": 17})


def with_output(state: OutputState, kind: str = "stream") -> Any:
    """
    An active call with one output C{S} in C{state}.
    """
    order = STREAM if kind == "stream" else RECORDING
    if state is OutputState.PENDING:
        call = new_call()
        call.handle(OutputOrdered(now=T0, kind=kind, output_id=S, order=order))
        return call
    call = active()
    call.handle(OutputOrdered(now=T0 + 2, kind=kind, output_id=S, order=order))
    if state is OutputState.STARTING:
        return call
    if state is OutputState.FAILED:
        call.handle(OutputFailed(now=T0 + 3, output_id=S, reason="HTTP 403"))
        return call
    call.handle(OutputStarted(now=T0 + 3, output_id=S, detail={"url": "x"}))
    if state is OutputState.ACTIVE:
        return call
    call.handle(OutputStopOrdered(now=T0 + 4, kind=kind, output_id=S, stopped_by="api"))
    if state is OutputState.STOPPED:
        call.handle(OutputStopped(now=T0 + 5, output_id=S, stopped_by="api", detail={"sha256": "ab"}))
    return call


#: (state, input, expected next state, expected actions) per output row of
#: CALL_TABLE.
CALL_CASES: list[tuple[CallState, Any, CallState, list[str]]] = [
    (CallState.NEGOTIATING, OutputOrdered(now=N, kind="stream", output_id="str_9", order=STREAM), CallState.NEGOTIATING, []),
    (CallState.ACTIVE, OutputOrdered(now=N, kind="stream", output_id="str_9", order=STREAM), CallState.ACTIVE, ["StartOutput"]),
    (CallState.TERMINATING, OutputOrdered(now=N, kind="stream", output_id="str_9", order=STREAM), CallState.TERMINATING, ["OrderRefused"]),
    (CallState.ENDED, OutputOrdered(now=N, kind="recording", output_id="r", order=RECORDING), CallState.ENDED, ["OrderRefused"]),
    (CallState.NEGOTIATING, OutputRejected(now=N, kind="stream", output_id="str_9", reason="limit"), CallState.NEGOTIATING, []),
    (CallState.ACTIVE, OutputRejected(now=N, kind="recording", output_id="r", reason="limit"), CallState.ACTIVE, ["RECORDINGFAILED"]),
    (CallState.NEGOTIATING, OutputStopOrdered(now=N, kind="stream", output_id=None, stopped_by="api"), CallState.NEGOTIATING, []),
    (CallState.ACTIVE, OutputStopOrdered(now=N, kind="stream", output_id=None, stopped_by="api"), CallState.ACTIVE, []),
    (CallState.TERMINATING, OutputStopOrdered(now=N, kind="stream", output_id=None, stopped_by="api"), CallState.TERMINATING, []),
    (CallState.ENDED, OutputStopOrdered(now=N, kind="recording", output_id=None, stopped_by="api"), CallState.ENDED, []),
    (CallState.NEGOTIATING, PauseOrdered(now=N), CallState.NEGOTIATING, ["SESSIONPAUSED"]),
    (CallState.ACTIVE, PauseOrdered(now=N), CallState.ACTIVE, ["SESSIONPAUSED"]),
    (CallState.NEGOTIATING, ResumeOrdered(now=N), CallState.NEGOTIATING, ["SESSIONRESUMED"]),
    (CallState.ACTIVE, ResumeOrdered(now=N), CallState.ACTIVE, ["SESSIONRESUMED"]),
    (CallState.TERMINATING, PauseOrdered(now=N), CallState.TERMINATING, ["OrderRefused"]),
    (CallState.ENDED, PauseOrdered(now=N), CallState.ENDED, ["OrderRefused"]),
    (CallState.TERMINATING, ResumeOrdered(now=N), CallState.TERMINATING, ["OrderRefused"]),
    (CallState.ENDED, ResumeOrdered(now=N), CallState.ENDED, ["OrderRefused"]),
]

#: (output state, input, expected output state, expected actions) per
#: OUTPUT_TABLE row.
OUTPUT_CASES: list[tuple[OutputState, Any, OutputState, list[str]]] = [
    (OutputState.STARTING, OutputStarted(now=N, output_id=S), OutputState.ACTIVE, ["STREAMSTARTED"]),
    (OutputState.STARTING, OutputFailed(now=N, output_id=S, reason="timeout"), OutputState.FAILED, ["STREAMFAILED"]),
    (OutputState.ACTIVE, OutputFailed(now=N, output_id=S, reason="x"), OutputState.FAILED, ["STREAMFAILED"]),
    (OutputState.ACTIVE, OutputStopped(now=N, output_id=S, stopped_by="error"), OutputState.STOPPED, ["STREAMSTOPPED"]),
    (OutputState.STOPPING, OutputStopped(now=N, output_id=S, stopped_by="api"), OutputState.STOPPED, ["STREAMSTOPPED"]),
    (OutputState.STOPPING, OutputFailed(now=N, output_id=S, reason="connect: refused"), OutputState.FAILED, ["STREAMFAILED"]),
    (OutputState.STOPPING, OutputStarted(now=N, output_id=S), OutputState.STOPPING, []),
    (OutputState.STOPPED, OutputUploaded(now=N, output_id=S, url="https://h/p", status=200), OutputState.STOPPED, ["RECORDINGUPLOADED"]),
]


def _is_output_row(key: tuple[Any, type]) -> bool:
    return key[1].__module__ == outputs.__name__


class TableTests(SynchronousTestCase):
    """
    Every output transition row does what it says.
    """

    def test_every_row_has_a_case(self) -> None:
        """
        The cases cover exactly the output rows of L{CALL_TABLE} and the
        rows of L{OUTPUT_TABLE}, and every row names its reference.
        """
        self.assertEqual({(s, type(i)) for s, i, _, _ in CALL_CASES}, {k for k in CALL_TABLE if _is_output_row(k)})
        self.assertEqual({(s, type(i)) for s, i, _, _ in OUTPUT_CASES}, set(OUTPUT_TABLE))
        for key, row in OUTPUT_TABLE.items():
            self.assertRegex(row.ref, r"SPEC s\d+|RFC \d+|crossed", key)

    def test_call_rows(self) -> None:
        """
        Each output row of CALL_TABLE keeps the call's state and returns
        its actions (or refuses).
        """
        for state, fact, next_state, expected in CALL_CASES:
            with self.subTest(state=state, input=type(fact).__name__):
                call = _STATE_MAKERS[state]()
                try:
                    got = names(call.handle(fact))
                except OrderRefused:
                    got = ["OrderRefused"]
                self.assertEqual((call.state, got), (next_state, expected))

    def test_output_rows(self) -> None:
        """
        Each OUTPUT_TABLE row moves the output to its state and returns its
        actions.
        """
        for state, fact, next_state, expected in OUTPUT_CASES:
            with self.subTest(state=state, input=type(fact).__name__):
                kind = "recording" if isinstance(fact, OutputUploaded) else "stream"
                call = with_output(state, kind)
                self.assertIs(call.outputs[S].state, state)
                got = names(call.handle(fact))
                self.assertEqual((call.outputs[S].state, got), (next_state, expected))
                self.assertIs(OUTPUT_TABLE[(state, type(fact))].next_state or state, next_state)

    def test_unknown_output(self) -> None:
        """
        A fact about an output the call never had is a KeyError.
        """
        self.assertRaises(KeyError, active().handle, OutputStarted(now=N, output_id="nope"))


class EventTests(SynchronousTestCase):
    """
    The events carry what SPEC s8/s9 list.
    """

    def test_stream_events(self) -> None:
        """
        STREAMSTARTED and STREAMSTOPPED carry the URL without credentials or
        query string, the reference echoed, and the stats.
        """
        call = with_output(OutputState.ACTIVE)
        actions = call.handle(OutputStopOrdered(now=N, kind="stream", output_id=S, stopped_by="api"))
        self.assertEqual(names(actions), ["StopOutput"])
        (emit,) = call.handle(OutputStopped(now=N, output_id=S, stopped_by="api", detail={"stats": {"frames": 50}}))
        body = emit.event.to_json()
        self.assertEqual(
            (body["url"], body["stoppedBy"], body["stats"], body["streamReferenceId"]),
            ("wss://ai.example.com/x", "api", {"frames": 50}, {"t": 1}),
        )
        self.assertNotIn("secret", repr(body))

    def test_recording_events(self) -> None:
        """
        RECORDINGSTARTED names the file, RECORDINGSTOPPED carries the
        adapter's details, RECORDINGUPLOADED comes even after
        SESSIONCOMPLETED.
        """
        call = active()
        call.handle(OutputOrdered(now=N, kind="recording", output_id="r1", order=RECORDING))
        (emit,) = call.handle(OutputStarted(now=N, output_id="r1", detail={"file": "/d/r1.wav"}))
        self.assertEqual(
            {k: emit.event.to_json()[k] for k in ("file", "tracks", "encoding", "recordingReferenceId")},
            {"file": "/d/r1.wav", "tracks": "both", "encoding": "PCMU", "recordingReferenceId": {"case": 17}},
        )
        self.assertEqual(names(call.handle(InboundEnded(now=N + 1, reason="bye"))), ["StopOutput"])
        detail = {"file": "/d/r1.wav", "duration": 1.0, "bytes": 8058, "sha256": "ab", "channels": 2, "encoding": "PCMU", "pauses": []}
        actions = call.handle(OutputStopped(now=N + 2, output_id="r1", stopped_by="inboundBye", detail=detail))
        self.assertEqual(names(actions), ["RECORDINGSTOPPED", "CloseMedia"])
        body = actions[0].event.to_json()
        self.assertEqual({k: body[k] for k in detail}, detail)
        self.assertEqual(body["stoppedBy"], "inboundBye")
        self.assertEqual(names(call.handle(MediaClosed(now=N + 3))), ["SESSIONCOMPLETED", "Finished"])
        (up,) = call.handle(OutputUploaded(now=N + 9, output_id="r1", url="https://b/o", status=200))
        self.assertEqual((up.event.to_json()["url"], up.event.to_json()["status"]), ("https://b/o", 200))

    def test_recording_id_names_the_day(self) -> None:
        """
        A recording id carries the UTC date of its creation.
        """
        self.assertRegex(new_recording_id(1_796_000_000.0), r"\Arec_20261130_[0-9a-f]{16}\Z")


class SequenceTests(SynchronousTestCase):
    """
    The orders SPEC s2, s8-s10 fix.
    """

    def test_bye_stops_forwards_then_streams_then_recordings(self) -> None:
        """
        At the SRC's BYE: the forward's stop and every stream's; the
        recordings only once every stream reported (so the events come
        STREAMSTOPPED, then RECORDINGSTOPPED); SESSIONCOMPLETED only after
        all reported.
        """
        call = active()
        call.handle(ForwardOrdered(now=N, order=FakeOrder(), forward_id="fwd_1"))
        call.handle(ForwardAnswered(now=N, forward_id="fwd_1", target="t", codec="PCMA", srtp=False))
        for kind, oid, order in (("recording", "r1", RECORDING), ("stream", "s1", STREAM), ("stream", "s2", STREAM)):
            call.handle(OutputOrdered(now=N, kind=kind, output_id=oid, order=order))
            call.handle(OutputStarted(now=N, output_id=oid))
        actions = call.handle(InboundEnded(now=N + 1, reason="bye"))
        self.assertEqual(
            [(type(a).__name__, getattr(a, "forward_id", getattr(a, "output_id", None))) for a in actions],
            [("StopForward", "fwd_1"), ("StopOutput", "s1"), ("StopOutput", "s2")],
        )
        self.assertEqual({a.stopped_by for a in actions}, {"inboundBye"})
        self.assertEqual(names(call.handle(OutputStopped(now=N + 2, output_id="s1", stopped_by="inboundBye"))), ["STREAMSTOPPED"])
        last = call.handle(OutputStopped(now=N + 2, output_id="s2", stopped_by="inboundBye"))
        self.assertEqual(names(last), ["STREAMSTOPPED", "StopOutput"])
        self.assertEqual((last[1].output_id, last[1].stopped_by), ("r1", "inboundBye"))
        self.assertEqual(names(call.handle(OutputStopped(now=N + 2, output_id="r1", stopped_by="inboundBye"))), ["RECORDINGSTOPPED"])
        self.assertFalse(call.media_closing)  # the forward still owes its stop

    def test_recordings_stop_at_once_without_streams(self) -> None:
        """
        A session ending with a recording and no stream stops it at once;
        a stream that failed does not hold it.
        """
        call = active()
        call.handle(OutputOrdered(now=N, kind="stream", output_id="s1", order=STREAM))
        call.handle(OutputFailed(now=N, output_id="s1", reason="timeout"))
        call.handle(OutputOrdered(now=N, kind="recording", output_id="r1", order=RECORDING))
        call.handle(OutputStarted(now=N, output_id="r1"))
        self.assertEqual(names(call.handle(InboundEnded(now=N + 1, reason="bye"))), ["StopOutput"])

    def test_pending_outputs_start_once_active(self) -> None:
        """
        Outputs ordered in the newCall answer start after SESSIONSTARTED, a
        rejected one reports its FAILED event then.
        """
        call = new_call()
        call.handle(OutputOrdered(now=T0, kind="stream", output_id="s1", order=STREAM))
        call.handle(OutputRejected(now=T0, kind="stream", output_id="s2", reason="invalid order: url", raw={"url": "ws://h/?k=1"}))
        call.handle(InboundAnswered(now=T0))
        actions = call.handle(InboundAcked(now=T0 + 1))
        self.assertEqual(names(actions), ["SESSIONSTARTED", "StartOutput", "STREAMFAILED"])
        self.assertEqual(actions[2].event.to_json()["url"], "ws://h/")

    def test_limits_count_every_output(self) -> None:
        """
        C{max_outputs_per_call} counts forwards, streams and recordings;
        a failed output frees its slot.
        """
        call = active()
        call.limits = CallLimits(max_forwards_per_call=4, max_outputs_per_call=2)
        call.handle(ForwardOrdered(now=N, order=FakeOrder(), forward_id="fwd_1"))
        call.handle(OutputOrdered(now=N, kind="stream", output_id="s1", order=STREAM))
        self.assertEqual(call.live_outputs(), {"forward": 1, "stream": 1, "recording": 0})
        e = self.assertRaises(OrderRefused, call.handle, OutputOrdered(now=N, kind="recording", output_id="r", order=RECORDING))
        self.assertEqual(e.limit, "max_outputs_per_call")
        call.handle(OutputFailed(now=N, output_id="s1", reason="timeout"))
        call.handle(OutputOrdered(now=N, kind="recording", output_id="r", order=RECORDING))
        self.assertEqual(call.live_outputs()["recording"], 1)


class PauseTests(SynchronousTestCase):
    """
    SPEC s10 on the Call.
    """

    def _call(self) -> Any:
        call = active()
        call.handle(ForwardOrdered(now=N, order=FakeOrder(), forward_id="fwd_1"))
        call.handle(OutputOrdered(now=N, kind="stream", output_id="s1", order=STREAM))
        call.handle(OutputOrdered(now=N, kind="recording", output_id="r1", order=RECORDING))
        return call

    def test_session_pause(self) -> None:
        """
        A pause without ids pauses every output, SESSIONPAUSED lists them,
        and an output ordered meanwhile starts paused; a resume without ids
        resumes them all.
        """
        call = self._call()
        actions = call.handle(PauseOrdered(now=N + 1))
        self.assertEqual(
            [(a.kind, a.output_id, a.paused) for a in actions[:-1]],
            [("forward", "fwd_1", True), ("stream", "s1", True), ("recording", "r1", True)],
        )
        body = actions[-1].event.to_json()
        self.assertEqual(
            (body["event"], body["forwardIds"], body["streamIds"], body["recordingIds"], body["sessionPaused"]),
            ("SESSIONPAUSED", ["fwd_1"], ["s1"], ["r1"], True),
        )
        (start,) = call.handle(OutputOrdered(now=N + 2, kind="stream", output_id="s2", order=STREAM))
        self.assertTrue(start.paused)
        late = call.handle(ForwardOrdered(now=N + 2, order=FakeOrder(), forward_id="fwd_2"))
        self.assertTrue(late[0].paused)
        actions = call.handle(ResumeOrdered(now=N + 3))
        self.assertEqual(len([a for a in actions if isinstance(a, outputs.PauseOutput) and not a.paused]), 5)
        self.assertFalse(call.paused)

    def test_pause_some(self) -> None:
        """
        Ids pause only those outputs; the session is not paused; a second
        pause of the same output changes nothing.
        """
        call = self._call()
        actions = call.handle(PauseOrdered(now=N, targets={"stream": ("s1",)}))
        self.assertEqual([(a.kind, a.output_id) for a in actions[:-1]], [("stream", "s1")])
        self.assertFalse(call.paused)
        self.assertEqual(names(call.handle(PauseOrdered(now=N, targets={"stream": ("s1",)}))), ["SESSIONPAUSED"])
        self.assertFalse(call.outputs["r1"].paused)

    def test_unknown_id(self) -> None:
        """
        An unknown id is a KeyError naming the kind, and nothing changes.
        """
        call = self._call()
        e = self.assertRaises(KeyError, call.handle, PauseOrdered(now=N, targets={"stream": ("s1",), "recording": ("nope",)}))
        self.assertEqual(e.args, (("recording", "nope"),))
        self.assertFalse(call.outputs["s1"].paused)


class RunnerTests(SynchronousTestCase):
    """
    L{aiconnect.runner.CallRunner}'s output side, with recording fakes.
    """

    def test_order_stop_and_observe(self) -> None:
        """
        An ordered stream gets a leg from the factory; the observer methods
        become facts; stop_outputs lists what it stops and refuses unknown
        ids.
        """
        factory = RecordingOutputFactory()
        sink = ListSink()
        runner = make_runner(acked=True, output_factory=factory, sink=sink)
        sid = runner.order_output("stream", STREAM)
        (leg,) = factory.legs
        self.assertEqual((leg.kind, leg.output_id, leg.started), ("stream", sid, True))
        runner.output_started(sid, {"url": "ws"})
        self.assertRaises(KeyError, runner.stop_outputs, "recording", sid, "api")
        self.assertEqual(runner.stop_outputs("stream", None, "api"), [sid])
        self.assertEqual(runner.stop_outputs("stream", None, "api"), [])
        self.assertEqual(
            [e["event"] for e in sink.events][-2:],
            ["STREAMSTARTED", "STREAMSTOPPED"],
        )

    def test_pause_reaches_legs(self) -> None:
        """
        pause/resume reach the forward and output legs and answer what
        changed; an output ordered while paused is paused before it starts.
        """
        factory = RecordingOutputFactory()
        legs = RecordingLegFactory()
        runner = make_runner(acked=True, output_factory=factory, leg_factory=legs)
        fid = runner.order_forward(FakeOrder())
        rid = runner.order_output("recording", RECORDING)
        self.assertEqual(runner.pause(None), {"forward": [fid], "stream": [], "recording": [rid]})
        sid = runner.order_output("stream", STREAM)
        self.assertEqual(factory.legs[1].paused, [True])
        self.assertEqual(legs.legs[0].paused, [True])
        self.assertEqual(runner.resume({"stream": [sid]}), {"forward": [], "stream": [sid], "recording": []})
        self.assertEqual(factory.legs[1].paused, [True, False])
        self.assertRaises(KeyError, runner.pause, {"forward": ["fwd_nope"]})

    def test_factory_failure_is_a_failed_output(self) -> None:
        """
        A leg that cannot be made fails the output (an event), never the
        call.
        """

        def broken(*args: Any) -> Any:
            raise RuntimeError("boom")

        sink = ListSink()
        runner = make_runner(acked=True, output_factory=broken, sink=sink)
        self.flushLoggedErrors(RuntimeError)
        rid = runner.order_output("recording", RECORDING)
        self.flushLoggedErrors(RuntimeError)
        self.assertIs(runner.call.outputs[rid].state, OutputState.FAILED)
        self.assertEqual(sink.events[-1]["reason"], "internal error: RuntimeError")
        self.assertIs(runner.call.state, CallState.ACTIVE)
