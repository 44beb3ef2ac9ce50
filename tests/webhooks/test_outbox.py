# -*- test-case-name: tests.webhooks.test_outbox -*-
"""
Tests for L{aiconnect.webhooks.outbox}: the durable SQLite store of
events, their sequence numbers and its failure modes.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from twisted.logger import capturedLogs

from aiconnect.webhooks import SCHEMA_VERSION, EventOutbox
from tests.webhooks.helpers import DOMAIN, WebhooksTestCase, completed, started


class OutboxTests(WebhooksTestCase):
    """
    L{EventOutbox}: the durable SQLite store.
    """

    def rows(self) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(self.path)
        self.addCleanup(db.close)
        return db.execute("SELECT tenant, session_id, seq, event_id, body, attempts FROM events ORDER BY id").fetchall()

    def test_emit_stores(self) -> None:
        """
        C{emit} commits one row per event, numbering each session's events
        1, 2, ... and adding C{sequence} to the stored body.
        """
        a = self.outbox.emit(DOMAIN, "s1", started("s1"))
        b = self.outbox.emit(DOMAIN, "s2", started("s2"))
        c = self.outbox.emit(DOMAIN, "s1", completed("s1"))
        rows = self.rows()
        self.assertEqual([(r[1], r[2], r[3]) for r in rows], [("s1", 1, a), ("s2", 1, b), ("s1", 2, c)])
        body = json.loads(rows[2][4])
        self.assertEqual(body["sequence"], 2)
        self.assertEqual(body["event"], "SESSIONCOMPLETED")
        self.assertEqual(self.outbox.stats["emitted"], 3)
        self.assertEqual(self.outbox.counts(), {"pending": 3, "delivered": 0, "dead": 0})

    def test_database_settings(self) -> None:
        """
        The parent directory is created; the journal is WAL; the schema is
        versioned with C{user_version}.
        """
        self.assertTrue(Path(self.path).exists())
        db = sqlite3.connect(self.path)
        self.addCleanup(db.close)
        self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        self.assertEqual(db.execute("PRAGMA user_version").fetchone()[0], SCHEMA_VERSION)
        self.assertEqual(self.outbox.schema_version, SCHEMA_VERSION)

    def test_newer_schema_refused(self) -> None:
        """
        A database written by a newer version is not touched.
        """
        self.outbox.close()
        db = sqlite3.connect(self.path)
        db.execute("PRAGMA user_version=%d" % (SCHEMA_VERSION + 1))
        db.close()
        self.assertRaises(sqlite3.DatabaseError, EventOutbox, self.path)

    def test_missing_ids_filled(self) -> None:
        """
        A payload without C{eventId} or C{sessionId} gets them.
        """
        event_id = self.outbox.emit(DOMAIN, "s9", {"event": "SESSIONSTARTED"})
        self.assertIsNotNone(event_id)
        body = json.loads(self.rows()[0][4])
        self.assertEqual((body["eventId"], body["sessionId"]), (event_id, "s9"))

    def test_not_json_rejected(self) -> None:
        """
        A payload that is not JSON is logged and counted, and C{emit}
        returns L{None} instead of raising.
        """
        with capturedLogs() as logged:
            result = self.outbox.emit(DOMAIN, "s1", {"event": "SESSIONSTARTED", "bad": object()})
        self.assertIsNone(result)
        self.assertEqual(self.outbox.stats["rejected"], 1)
        self.assertEqual(self.rows(), [])
        self.assertTrue(any(e.get("session_id") == "s1" and e["log_level"].name == "error" for e in logged))

    def test_lone_surrogate_never_drops(self) -> None:
        """
        An event payload still holding a lone surrogate (built without the
        builders) is stored and sent with U+FFFD instead: valid UTF-8 JSON.
        """
        event_id = self.outbox.emit(DOMAIN, "s1", {"event": "SESSIONSTARTED", "from": "Jos\udce9", "x": "\ud800"})
        self.assertIsNotNone(event_id)
        self.assertEqual(self.outbox.stats["rejected"], 0)
        [event] = self.outbox.pending()
        body = json.loads(event.body.decode("utf-8"))
        self.assertEqual((body["from"], body["x"]), ("Jos\ufffd", "\ufffd"))

    def test_duplicate_event_id(self) -> None:
        """
        The same event emitted twice is stored once.
        """
        payload = started()
        self.assertEqual(self.outbox.emit(DOMAIN, "s1", payload), payload["eventId"])
        self.assertEqual(self.outbox.emit(DOMAIN, "s1", payload), payload["eventId"])
        self.assertEqual(len(self.rows()), 1)

    def test_database_failure_never_raises(self) -> None:
        """
        When the database fails, C{emit} still returns the id, logs and
        counts it, and hands the event on in memory with the next sequence.
        """
        seen: list[Any] = []
        self.outbox.add_listener(seen.append)
        self.outbox.emit(DOMAIN, "s1", started())
        self.outbox.close()
        with capturedLogs() as logged:
            event_id = self.outbox.emit(DOMAIN, "s1", completed())
        self.assertIsNotNone(event_id)
        self.assertEqual(self.outbox.stats["memory_only"], 1)
        self.assertEqual([e.row_id is None for e in seen], [False, True])
        self.assertEqual(json.loads(seen[1].body)["sequence"], 1)
        self.assertTrue(any(e.get("event_id") == event_id for e in logged))

    def test_sequence_continues_after_reopen(self) -> None:
        """
        Sequence numbers continue across a reopen of the database.
        """
        self.outbox.emit(DOMAIN, "s1", started())
        self.outbox.close()
        again = self.open_outbox()
        again.emit(DOMAIN, "s1", completed())
        self.assertEqual([r[2] for r in self.rows()], [1, 2])

    def test_listener_errors_contained(self) -> None:
        """
        A failing listener does not make C{emit} raise.
        """

        def broken(event: Any) -> None:
            raise RuntimeError("listener")

        self.outbox.add_listener(broken)
        with capturedLogs():
            self.assertIsNotNone(self.outbox.emit(DOMAIN, "s1", started()))
        self.flushLoggedErrors(RuntimeError)
