# -*- test-case-name: tests.test_registry -*-
"""
Tests for L{aiconnect.registry}: ended sessions are kept for the API by
count and by age, live ones never dropped, and what is kept of an ended
session holds neither its legs nor its relay session (issue 12, memory).
"""

from __future__ import annotations

import gc
import types
import weakref
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.api import ApiServer
from aiconnect.call import ForwardAnswered, InboundEnded, OrderRefused
from aiconnect.config import load_string
from aiconnect.errors import ConfigError
from aiconnect.registry import KEEP_ENDED, KEEP_ENDED_FOR, CallRegistry
from aiconnect.runner import CallRunner
from tests.api.helpers import DOMAIN, ApiClient, make_call, make_config
from tests.fakes import FakeLeg, FakeOrder, FakeTenant, ListSink, make_runner


class Registry:
    """
    A registry on a L{Clock} and the sessions made for it.
    """

    def __init__(self, keep_ended: int = KEEP_ENDED, keep_ended_for: float = KEEP_ENDED_FOR) -> None:
        self.clock = Clock()
        self.registry = CallRegistry(self.clock, keep_ended, keep_ended_for)
        self.made = 0

    def live(self) -> CallRunner:
        """
        A new live (ACKed) session, added.
        """
        self.made += 1
        runner = make_runner(FakeTenant("a.example"), ListSink(), self.clock, acked=True, session_id="ses_%d" % self.made)
        self.registry.add(runner)
        return runner

    def ended(self) -> str:
        """
        A new session, added and ended now.

        @return: its session id.
        """
        runner = self.live()
        runner.report(InboundEnded, reason="bye")
        return runner.session_id

    def kept(self, session_id: str) -> bool:
        """
        Whether the API still finds C{session_id}.
        """
        try:
            self.registry.get("a.example", session_id)
        except KeyError:
            return False
        return True


class RetentionTests(SynchronousTestCase):
    """
    L{CallRegistry} keeps ended sessions for at most C{keep_ended_for}
    seconds and at most C{keep_ended} of them, oldest dropped first.
    """

    def test_count_cap(self) -> None:
        """
        With C{keep_ended} ended sessions kept, one more ending drops the one
        that ended first.
        """
        r = Registry(keep_ended=2)
        first, second, third = r.ended(), r.ended(), r.ended()
        self.assertEqual([r.kept(s) for s in (first, second, third)], [False, True, True])
        self.assertEqual(r.registry.counts()["ended_kept"], 2)

    def test_age_cap(self) -> None:
        """
        An ended session is found until C{keep_ended_for} seconds after it
        ended, not from then on.
        """
        r = Registry(keep_ended_for=60)
        session_id = r.ended()
        r.clock.advance(59.9)
        self.assertTrue(r.kept(session_id))
        r.clock.advance(0.1)
        self.assertFalse(r.kept(session_id))

    def test_oldest_expire_first(self) -> None:
        """
        Sessions expire in the order they ended, each at its own age.
        """
        r = Registry(keep_ended_for=60)
        early = r.ended()
        r.clock.advance(30)
        late = r.ended()
        r.clock.advance(30)
        self.assertEqual((r.kept(early), r.kept(late)), (False, True))
        r.clock.advance(30)
        self.assertEqual((r.kept(early), r.kept(late)), (False, False))

    def test_metrics_read_expires(self) -> None:
        """
        The C{ended_kept} gauge drops the expired sessions when it is read,
        with no session starting or ending in between.
        """
        r = Registry(keep_ended_for=10)
        r.ended()
        r.ended()
        self.assertEqual(r.registry.counts()["ended_kept"], 2)
        r.clock.advance(10)
        self.assertEqual(r.registry.counts()["ended_kept"], 0)

    def test_new_session_expires(self) -> None:
        """
        A session starting drops the expired ones (the check on add).
        """
        r = Registry(keep_ended_for=10)
        r.ended()
        r.clock.advance(11)
        r.live()
        self.assertEqual(len(r.registry._ended), 0)

    def test_live_never_dropped(self) -> None:
        """
        Live sessions are neither counted against C{keep_ended} nor aged,
        however long they last and however many end meanwhile.
        """
        r = Registry(keep_ended=1, keep_ended_for=1)
        live = [r.live() for _ in range(5)]
        for _ in range(5):
            r.ended()
            r.clock.advance(1000)
        self.assertEqual([r.kept(c.session_id) for c in live], [True] * 5)
        self.assertEqual(len(r.registry), 5)
        self.assertEqual(r.registry.live_count("a.example"), 5)

    def test_zero_keeps_none(self) -> None:
        """
        C{keep_ended = 0} or C{keep_ended_for = 0}: an ended session is gone
        at once.
        """
        for keep, keep_for in ((0, 3600.0), (1000, 0.0)):
            r = Registry(keep, keep_for)
            session_id = r.ended()
            self.assertFalse(r.kept(session_id))
            self.assertEqual(r.registry.counts()["ended_kept"], 0)

    def test_no_clock_count_only(self) -> None:
        """
        Without a clock ended sessions are dropped by count only.
        """
        registry = CallRegistry(keep_ended=1)
        clock = Clock()
        runners = [make_runner(FakeTenant("a.example"), ListSink(), clock, acked=True, session_id="ses_%d" % i) for i in range(2)]
        for runner in runners:
            registry.add(runner)
            runner.report(InboundEnded, reason="bye")
            clock.advance(10**6)
        self.assertRaises(KeyError, registry.get, "a.example", "ses_0")
        self.assertIs(registry.get("a.example", "ses_1").call, runners[1].call)


class StatsLeg(FakeLeg):
    """
    A forward leg with final media counters.
    """

    def stats(self) -> dict[str, Any] | None:
        return {"packetsSent": 3, "forwardId": self.forward_id}


class FakeMedia:
    """
    A relay session with counters.
    """

    def stats(self) -> dict[str, Any]:
        return {"packetsReceived": 5}

    def close(self) -> None:
        pass


class EndedRunnerTests(SynchronousTestCase):
    """
    What the registry keeps of an ended session: its Call and the final
    counters, not the legs or the relay session.
    """

    def ended_forwarded(self) -> tuple[CallRegistry, list[Any], str, str]:
        """
        A session with a media session and one answered forward, ended:
        the registry, the runner, its leg and media session, the forward
        id and the session id.
        """
        clock = Clock()
        registry = CallRegistry(clock)
        legs: list[FakeLeg] = []

        def leg_factory(runner: CallRunner, forward_id: str, order: Any) -> FakeLeg:
            legs.append(StatsLeg(runner, forward_id, order))
            return legs[-1]

        runner = make_runner(FakeTenant("a.example"), ListSink(), clock, leg_factory=leg_factory, acked=True, session_id="ses_f")
        media = runner.media = FakeMedia()  # type: ignore[assignment]
        registry.add(runner)
        forward_id = runner.order_forward(FakeOrder())
        runner.report(ForwardAnswered, forward_id=forward_id, target="t", codec="PCMU", srtp=False)
        runner.report(InboundEnded, reason="bye")
        return registry, [runner, legs[0], media], forward_id, runner.session_id

    def test_legs_and_media_not_kept(self) -> None:
        """
        Nothing the registry holds leads to the ended session's runner,
        forward leg or media session: once nothing else holds them they
        are freed, although the registry still keeps the session.
        """
        registry, held, _forward_id, session_id = self.ended_forwarded()
        self.assertEqual(registry.get("a.example", session_id).state.value, "ended")
        seen: set[int] = set()
        todo: list[Any] = [registry]
        while todo:
            obj = todo.pop()
            if id(obj) in seen or isinstance(obj, (type, types.ModuleType)):
                continue
            if isinstance(obj, dict) and "__builtins__" in obj:
                continue  # a module's namespace: global, not the session's
            seen.add(id(obj))
            todo.extend(gc.get_referents(obj))
        self.assertEqual([id(obj) in seen for obj in held], [False, False, False])

    def test_ended_call_freed_without_the_collector(self) -> None:
        """
        Once the session ended, its runner lets go of its leg and media
        session (each of which points back at the runner): with the cyclic
        garbage collector off, dropping the last outside reference frees
        them by reference counting alone.
        """
        registry, held, _forward_id, _session_id = self.ended_forwarded()
        runner, leg, media = held
        self.assertEqual((runner.legs, runner.media, runner.inbound, runner.finishers), ({}, None, None, []))
        self.assertIs(leg.runner, runner)  # the leg still points back: the cycle is broken on the runner's side
        # (The runner itself is still held here by the log events Twisted
        # buffers before logging begins: log_source.)
        refs = [weakref.ref(leg), weakref.ref(media)]
        del held, runner, leg, media
        gc.disable()
        self.addCleanup(gc.enable)
        self.assertEqual([r() is None for r in refs], [True, True])

    def test_final_counters_kept(self) -> None:
        """
        The kept session answers the forward's and the media's final
        counters as the runner did.
        """
        registry, _refs, forward_id, session_id = self.ended_forwarded()
        kept = registry.get("a.example", session_id)
        self.assertEqual(kept.forward_stats(forward_id), {"packetsSent": 3, "forwardId": forward_id})
        self.assertEqual(kept.media_stats(), {"packetsReceived": 5})
        self.assertIsNone(kept.forward_stats("fwd_unknown"))
        self.assertEqual((kept.legs, kept.output_legs, kept.media, kept.inbound), ({}, {}, None, None))

    def test_orders_refused(self) -> None:
        """
        The kept session refuses new forwards and outputs and stops nothing,
        as an ended session does.
        """
        registry, _refs, forward_id, session_id = self.ended_forwarded()
        kept = registry.get("a.example", session_id)
        self.assertRaises(OrderRefused, kept.order_forward, FakeOrder())
        self.assertRaises(OrderRefused, kept.order_output, "stream", FakeOrder())
        self.assertEqual(kept.stop_forwards(forward_id, "api"), [])
        self.assertRaises(KeyError, kept.stop_forwards, "fwd_unknown", "api")


class ApiExpiryTests(SynchronousTestCase):
    """
    C{GET /{domain}/sessions/{id}} of an expired session answers as for an
    unknown one.
    """

    def test_expired_is_404(self) -> None:
        """
        An ended session is readable until it expires, then 404 with the
        same answer as a session that never existed.
        """
        config = make_config(self, with_jwt=False)
        clock = Clock()
        registry = CallRegistry(clock, keep_ended_for=60)
        call = make_call(config)
        registry.add(call)
        call.report(InboundEnded, reason="bye")
        client = ApiClient(self, ApiServer(config, registry, reactor=clock))
        code, body, _ = client.call("GET", f"/{DOMAIN}/sessions/ses_test1")
        self.assertEqual((code, body["session"]["state"]), (200, "ended"))
        clock.advance(60)
        expired = client.call("GET", f"/{DOMAIN}/sessions/ses_test1")[:2]
        unknown = client.call("GET", f"/{DOMAIN}/sessions/ses_never")[:2]
        self.assertEqual(expired, unknown)
        self.assertEqual(expired[0], 404)

    def test_kept_description_unchanged(self) -> None:
        """
        The description of an ended session is the same read from the kept
        copy as from the session itself.
        """
        config = make_config(self, with_jwt=False)
        clock = Clock()
        registry = CallRegistry(clock)
        call = make_call(config)
        registry.add(call)
        call.report(InboundEnded, reason="bye")
        from aiconnect.views import describe_session

        self.assertEqual(describe_session(registry.get(DOMAIN, "ses_test1")), describe_session(call))


class ConfigTests(SynchronousTestCase):
    """
    C{[api] keep_ended} and C{keep_ended_for}.
    """

    BASE = """
[events]
database = ":memory:"
[[tenant]]
domain = "a.example"
callback_url = "http://127.0.0.1:9000"
api_tokens = ["t"]
signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"""

    def test_defaults(self) -> None:
        """
        By default 1000 ended sessions are kept, for an hour.
        """
        api = load_string(self.BASE).api
        self.assertEqual((api.keep_ended, api.keep_ended_for), (KEEP_ENDED, KEEP_ENDED_FOR))
        self.assertEqual((KEEP_ENDED, KEEP_ENDED_FOR), (1000, 3600.0))

    def test_values(self) -> None:
        """
        Both keys are read from C{[api]}; 0 is allowed.
        """
        api = load_string("[api]\nkeep_ended = 0\nkeep_ended_for = 90\n" + self.BASE).api
        self.assertEqual((api.keep_ended, api.keep_ended_for), (0, 90.0))

    def test_invalid(self) -> None:
        """
        A negative or non-numeric value is an error naming the key.
        """
        for line, key in (
            ("keep_ended = -1", "api.keep_ended"),
            ("keep_ended = 1.5", "api.keep_ended"),
            ("keep_ended_for = -1", "api.keep_ended_for"),
            ("keep_ended_for = \"1h\"", "api.keep_ended_for"),
        ):
            error = self.assertRaises(ConfigError, load_string, "[api]\n%s\n%s" % (line, self.BASE))
            self.assertIn(key, str(error))
