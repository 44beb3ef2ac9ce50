# -*- test-case-name: tests.webhooks.test_group_commit -*-
"""
Tests for L{aiconnect.webhooks.outbox.EventOutbox} on a grouped events
database (L{aiconnect.webhooks.database}): one transaction per reactor
turn, readers, a kill before the commit, stop, order, failed commits.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from treq.testing import StubTreq
from twisted.logger import capturedLogs

from aiconnect.webhooks import EventDeliverer, EventDeliveryService, EventOutbox
from aiconnect.webhooks.database import EventDatabase
from aiconnect.webhooks.outbox import STATE_DELAY
from tests.webhooks.dbhelpers import DatabaseTestCase, commits
from tests.webhooks.helpers import DOMAIN, START, Recorder, completed, started, tenant

_ROWS = "SELECT session_id, seq, event_id FROM events ORDER BY id"
_STATE = "SELECT delivered, attempts, last_error FROM events ORDER BY id"


class GroupedOutboxTests(DatabaseTestCase):
    """
    The outbox on a database committing once per turn of a L{Clock}.
    """

    def setUp(self) -> None:
        super().setUp()
        self.database = self.grouped()
        self.outbox = self.open_outbox(self.database)

    def open_outbox(self, database: EventDatabase) -> EventOutbox:
        outbox = EventOutbox(database, clock=self.clock.seconds)
        self.addCleanup(outbox.close)
        return outbox

    def test_emits_of_a_turn_are_one_transaction(self) -> None:
        """
        Events emitted in one turn are one INSERT each in one transaction
        (a session's last sequence number is read once), committed at the
        end of the turn.
        """
        statements = self.trace(self.database)
        a = self.outbox.emit(DOMAIN, "s1", started("s1"))
        b = self.outbox.emit(DOMAIN, "s2", started("s2"))
        c = self.outbox.emit(DOMAIN, "s1", completed("s1"))
        self.assertEqual(self.seen(_ROWS), [])
        self.clock.advance(0)
        self.assertEqual(self.seen(_ROWS), [("s1", 1, a), ("s2", 1, b), ("s1", 2, c)])
        self.assertEqual(commits(statements), 1)
        self.assertEqual(sum(s.startswith("INSERT INTO events") for s in statements), 3)
        self.assertEqual(sum(s.startswith("SELECT") for s in statements), 2)
        self.assertEqual(self.outbox.stats["emitted"], 3)

    def test_readers_see_the_turn(self) -> None:
        """
        C{pending} and C{counts} right after C{emit}, in the same turn, see
        the event.
        """
        event_id = self.outbox.emit(DOMAIN, "s1", started("s1"))
        self.assertEqual([e.event_id for e in self.outbox.pending()], [event_id])
        self.assertEqual(self.outbox.counts(), {"pending": 1, "delivered": 0, "dead": 0})

    def test_kill_before_the_commit(self) -> None:
        """
        A process killed before the end of its turn leaves the committed
        turns only: the next start delivers those, and numbers the
        session's next event after them.
        """
        killed = EventDatabase(self.path, reactor=self.clock)
        outbox = EventOutbox(killed, clock=self.clock.seconds)
        first = outbox.emit(DOMAIN, "s1", started("s1"))
        self.clock.advance(0)
        outbox.emit(DOMAIN, "s1", completed("s1"))
        self.assertEqual(self.seen(_ROWS), [("s1", 1, first)])
        # kill -9: the connection and the process's timers go away, no COMMIT.
        killed.connection().close()
        for call in self.clock.getDelayedCalls():
            call.cancel()
        again = self.open_outbox(self.grouped())
        self.assertEqual([(e.seq, e.event_id) for e in again.pending()], [(1, first)])
        again.emit(DOMAIN, "s1", completed("s1"))
        self.clock.advance(0)
        self.assertEqual([r[1] for r in self.seen(_ROWS)], [1, 2])

    def test_stop_flushes(self) -> None:
        """
        Stopping the C{webhooks} service commits the open turn.
        """
        deliverer = EventDeliverer(self.clock, self.outbox, {DOMAIN: tenant()}, http_client=StubTreq(Recorder()))
        service = EventDeliveryService(deliverer, self.outbox)
        event_id = self.outbox.emit(DOMAIN, "s1", started("s1"))
        self.successResultOf(service.stopService())
        self.assertEqual(self.seen(_ROWS), [("s1", 1, event_id)])

    def test_order_per_session(self) -> None:
        """
        Events of interleaved sessions, over several turns, are numbered
        and delivered in the order emitted, each session on its own.
        """
        recorder = Recorder()
        deliverer = EventDeliverer(
            self.clock, self.outbox, {DOMAIN: tenant()}, http_client=StubTreq(recorder), random=lambda: 0.0
        )
        deliverer.start()
        self.addCleanup(deliverer.stop)
        emitted: dict[str, list[str | None]] = {"s1": [], "s2": []}
        for turn in range(3):
            for session in ("s1", "s2", "s1"):
                emitted[session].append(self.outbox.emit(DOMAIN, session, started(session)))
            self.clock.advance(0)
        for _ in range(100):
            self.clock.advance(0)
        sent: dict[str, list[tuple[int, str]]] = {"s1": [], "s2": []}
        for request in recorder.requests:
            body = json.loads(request.body)
            sent[body["sessionId"]].append((body["sequence"], body["eventId"]))
        for session, ids in emitted.items():
            self.assertEqual(sent[session], list(enumerate(ids, 1)))
        self.assertEqual(self.outbox.counts(), {"pending": 0, "delivered": 9, "dead": 0})

    def test_failed_commit_keeps_events_in_memory(self) -> None:
        """
        A turn whose COMMIT fails: its events stay with the listeners,
        counted and logged as memory-only; the session's numbering goes
        on after them and their row ids are not given again.
        """
        self.add_guard(self.database)
        seen: list[Any] = []
        self.outbox.add_listener(seen.append)
        self.outbox.emit(DOMAIN, "s1", started("s1"))
        self.outbox.emit(DOMAIN, "s1", completed("s1"))
        self.spoil_turn(self.database)
        with capturedLogs() as logged:
            self.clock.advance(0)
        self.assertEqual(self.seen(_ROWS), [])
        self.assertEqual(self.outbox.stats["memory_only"], 2)
        self.assertTrue(any(e["log_level"].name == "error" and e.get("count") == 2 for e in logged))
        third = self.outbox.emit(DOMAIN, "s1", completed("s1"))
        self.clock.advance(0)
        self.assertEqual(self.seen(_ROWS), [("s1", 3, third)])
        self.assertEqual(len({e.row_id for e in seen}), 3)
        self.assertEqual([json.loads(e.body)["sequence"] for e in seen], [1, 2, 3])

    def test_delivery_state_rides_on_a_commit(self) -> None:
        """
        A delivery state is committed with the next turn that commits, or
        after L{STATE_DELAY} seconds; the last state of an event wins;
        C{counts} sees it at once.
        """
        seen: list[Any] = []
        self.outbox.add_listener(seen.append)
        self.outbox.emit(DOMAIN, "s1", started("s1"))
        self.clock.advance(0)
        [first] = seen
        self.outbox.mark_attempt(replace(first, attempts=1, next_attempt=START + 1), "HTTP 500")
        self.outbox.mark_delivered(replace(first, attempts=2), START + 1)
        self.clock.advance(0)
        self.assertEqual(self.seen(_STATE), [(None, 0, None)])
        self.outbox.emit(DOMAIN, "s1", completed("s1"))
        self.clock.advance(0)
        self.assertEqual(self.seen(_STATE), [(START + 1, 2, None), (None, 0, None)])
        self.outbox.mark_delivered(seen[1], START + 2)
        self.assertEqual(self.outbox.counts(), {"pending": 0, "delivered": 2, "dead": 0})
        self.clock.advance(0)
        self.outbox.mark_dead(seen[1], START + 3, "HTTP 400")
        self.clock.advance(STATE_DELAY / 2)
        self.assertEqual(self.seen("SELECT dead, last_error FROM events ORDER BY id")[1], (None, None))
        self.clock.advance(STATE_DELAY / 2)
        self.assertEqual(self.seen("SELECT dead, last_error FROM events ORDER BY id")[1], (START + 3, "HTTP 400"))
