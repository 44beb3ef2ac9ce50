# -*- test-case-name: tests.webhooks.test_scheduling -*-
"""
Tests for the scheduling of L{aiconnect.webhooks.delivery.EventDeliverer}
on a L{Clock}: a finished request starts exactly one waiting session (no
herd of timers), sessions take turns first in first out, and an answer
that arrives synchronously neither recurses nor costs a timer.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers

from tests.webhooks.helpers import DOMAIN, WebhooksTestCase, completed, started


class _Response:
    """
    Enough of an L{twisted.web.iweb.IResponse} for
    L{aiconnect.webhooks.http.post}: a status and an empty body.
    """

    def __init__(self, code: int) -> None:
        self.code = code
        self.headers = Headers()

    def deliverBody(self, protocol: Any) -> None:
        protocol.connectionLost(Failure(ResponseDone()))


class HeldClient:
    """
    A treq-shaped client whose requests wait until the test answers them.

    @ivar posts: The session and event of each request, in the order sent.
    """

    def __init__(self) -> None:
        self.posts: list[str] = []
        self.waiting: list[Deferred[Any]] = []

    def post(self, url: str, *, data: bytes, **kwargs: Any) -> Deferred[Any]:
        body = json.loads(data)
        self.posts.append(body["event"] + ":" + body["sessionId"])
        d: Deferred[Any] = Deferred()
        self.waiting.append(d)
        return d

    def answer(self, status: int = 200) -> None:
        """
        Answer the oldest waiting request.
        """
        self.waiting.pop(0).callback(_Response(status))


class SchedulingTests(WebhooksTestCase):
    """
    How L{EventDeliverer} shares its C{max_in_flight} request slots.
    """

    def count_timers(self) -> list[int]:
        """
        Count the timers scheduled on the clock from now on.

        @return: A one-item list holding the count.
        """
        counter = [0]
        schedule = self.clock.callLater

        def counting(*args: Any, **kwargs: Any) -> Any:
            counter[0] += 1
            return schedule(*args, **kwargs)

        self.clock.callLater = counting  # type: ignore[method-assign]
        return counter

    def test_finished_request_wakes_one_session(self) -> None:
        """
        With 3 slots and 60 sessions waiting, each answered request starts
        exactly one more request, in the order the sessions' events were
        emitted, and schedules no timer but that request's own timeout (no
        wake-up of sessions that cannot send).
        """
        client = HeldClient()
        d = self.deliverer(http_client=client, max_in_flight=3)
        d.start()
        sessions = ["s%02d" % (i,) for i in range(60)]
        for session in sessions:
            self.outbox.emit(DOMAIN, session, started(session))
        self.pump()
        self.assertEqual(len(client.posts), 3)
        timers = self.count_timers()
        for answered in range(1, 58):
            client.answer()
            self.assertEqual((len(client.posts), len(client.waiting)), (3 + answered, 3))
        self.assertEqual(timers[0], 57, "one timeout per request started, nothing else")
        self.pump()
        self.assertEqual(timers[0], 57)
        for _ in range(3):
            client.answer()
        self.assertEqual(client.posts, ["SESSIONSTARTED:" + s for s in sessions])
        self.assertEqual(d.stats["delivered"], 60)
        self.assertEqual(self.successResultOf(d.drain(1)), True)

    def test_sessions_take_turns(self) -> None:
        """
        A session whose event was delivered queues its next event behind the
        sessions already waiting: with one slot, a session with three events
        and three sessions with one go A1, B, C, D, A2, A3.
        """
        client = HeldClient()
        d = self.deliverer(http_client=client, max_in_flight=1)
        d.start()
        self.outbox.emit(DOMAIN, "a", started("a"))
        self.outbox.emit(DOMAIN, "a", completed("a"))
        for session in ("b", "c", "d"):
            self.outbox.emit(DOMAIN, session, started(session))
        self.outbox.emit(DOMAIN, "a", completed("a"))
        self.pump()
        while client.waiting:
            client.answer()
        self.assertEqual(
            client.posts,
            [
                "SESSIONSTARTED:a",
                "SESSIONSTARTED:b",
                "SESSIONSTARTED:c",
                "SESSIONSTARTED:d",
                "SESSIONCOMPLETED:a",
                "SESSIONCOMPLETED:a",
            ],
        )
        self.assertEqual(d.stats["delivered"], 6)

    def test_failed_session_waits_others_go(self) -> None:
        """
        With one slot, a session whose request failed waits for its back-off
        while the next session is sent at once.
        """
        client = HeldClient()
        d = self.deliverer(http_client=client, max_in_flight=1)
        d.start()
        self.outbox.emit(DOMAIN, "a", started("a"))
        self.outbox.emit(DOMAIN, "b", started("b"))
        self.pump()
        client.answer(503)
        self.assertEqual(client.posts, ["SESSIONSTARTED:a", "SESSIONSTARTED:b"])
        client.answer()
        self.advance_to(1)
        client.answer()
        self.assertEqual(client.posts, ["SESSIONSTARTED:a", "SESSIONSTARTED:b", "SESSIONSTARTED:a"])
        self.assertEqual((d.stats["delivered"], d.stats["retried"]), (2, 1))

    def test_synchronous_answers(self) -> None:
        """
        Two thousand events of one session emitted in one turn, answered
        synchronously (the application behind L{StubTreq}), are delivered
        in order in one turn: no recursion, one timer to start and one
        timeout per request.
        """
        d = self.deliverer()
        d.start()
        timers = self.count_timers()
        for i in range(2000):
            self.outbox.emit(DOMAIN, "s1", completed("s1"))
        self.clock.advance(0)
        self.assertEqual(d.stats["delivered"], 2000)
        self.assertEqual([r.json["sequence"] for r in self.recorder.requests], list(range(1, 2001)))
        self.assertEqual(timers[0], 1 + 2000)

    def test_synchronous_failures(self) -> None:
        """
        Requests that fail synchronously (a client raising at once) for many
        sessions neither recurse nor stop the others: each session is
        retried on its back-off; the timers are one to start, and per request
        its timeout and its back-off.
        """

        class Refusing:
            def post(self, url: str, **kwargs: Any) -> Deferred[Any]:
                return defer.fail(ConnectionError("refused"))

        d = self.deliverer(http_client=Refusing(), max_in_flight=2)
        d.start()
        timers = self.count_timers()
        with capturedLogs():
            for i in range(1500):
                self.outbox.emit(DOMAIN, "s%d" % (i,), started("s%d" % (i,)))
            self.clock.advance(0)
        self.assertEqual((d.stats["attempts"], d.stats["retried"]), (1500, 1500))
        self.assertEqual(timers[0], 1 + 1500 + 1500)
