# -*- test-case-name: tests.test_recovery_group_commit -*-
"""
The dialog store of restart recovery (L{aiconnect.recovery}) on a grouped
events database: changes coalesced per turn, committed with the turn's
events, written again after a failed turn; the journal's behaviour
unchanged (L{tests.test_recovery}'s journal tests run again on it).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.logger import capturedLogs

import tests.test_recovery as base
from aiconnect.recovery import DialogJournal, DialogStore, SessionRecovery
from aiconnect.webhooks import EventOutbox
from aiconnect.webhooks.database import EventDatabase
from tests.webhooks.dbhelpers import DatabaseTestCase, commits

TENANT = "customer.example.com"
_DIALOGS = "SELECT session_id, leg, data FROM live_dialogs ORDER BY session_id, leg"


class GroupedStoreTests(DatabaseTestCase):
    """
    L{DialogStore} on a database committing once per turn of a L{Clock}.
    """

    def setUp(self) -> None:
        super().setUp()
        self.database = self.grouped()
        self.store = DialogStore(self.database, clock=self.clock.seconds)
        self.addCleanup(self.store.close)

    def dialogs(self) -> list[tuple[str, str, Any]]:
        return [(s, leg, json.loads(data)["n"]) for s, leg, data in self.seen(_DIALOGS)]

    def test_last_change_per_dialog(self) -> None:
        """
        A dialog stored, rewritten and another stored then deleted in one
        turn: nothing is written before the end of the turn, then one
        transaction holds the last row per dialog and the delete.
        """
        statements = self.trace(self.database)
        self.store.put("ses_1", "", TENANT, {"n": 1})
        self.store.put("ses_1", "", TENANT, {"n": 2})
        self.store.put("ses_1", "fwd_1", TENANT, {"n": 3})
        self.store.delete("ses_1", "fwd_1")
        self.assertEqual(statements, [])
        self.clock.advance(0)
        self.assertEqual(self.dialogs(), [("ses_1", "", 2)])
        self.assertEqual(sum(s.startswith("INSERT") for s in statements), 1)
        self.assertEqual(sum(s.startswith("DELETE") for s in statements), 1)
        self.assertEqual(commits(statements), 1)

    def test_session_end_is_one_delete(self) -> None:
        """
        A forward's CSeq rewrite, its removal and the session's end in one
        turn (a BYE) write one DELETE.
        """
        self.store.put("ses_1", "", TENANT, {"n": 1})
        self.store.put("ses_1", "fwd_1", TENANT, {"n": 2})
        self.clock.advance(0)
        statements = self.trace(self.database)
        self.store.put("ses_1", "fwd_1", TENANT, {"n": 3})
        self.store.delete("ses_1", "fwd_1")
        self.store.delete("ses_1")
        self.clock.advance(0)
        self.assertEqual([s for s in statements if s not in ("BEGIN IMMEDIATE", "COMMIT")], ["DELETE FROM live_dialogs WHERE session_id = 'ses_1'"])
        self.assertEqual(self.dialogs(), [])

    def test_reads_see_the_turn(self) -> None:
        """
        C{load} and C{count} see the changes of the open turn; another
        connection does not before its end.
        """
        self.store.put("ses_1", "", TENANT, {"n": 1, "started": 5.0})
        self.assertEqual(self.store.count(), 1)
        [stored] = self.store.load()
        self.assertEqual(stored.started, 5.0)
        self.assertEqual(self.dialogs(), [])
        self.clock.advance(0)
        self.assertEqual(self.dialogs(), [("ses_1", "", 1)])

    def test_event_and_dialog_change_commit_together(self) -> None:
        """
        The session's last event and the removal of its dialogs are one
        transaction: a kill before it leaves both (the session is ended at
        the next start), after it neither.
        """
        outbox = EventOutbox(self.database, clock=self.clock.seconds)
        self.addCleanup(outbox.close)
        self.store.put("ses_1", "", TENANT, {"n": 1})
        self.clock.advance(0)
        statements = self.trace(self.database)
        outbox.emit(TENANT, "ses_1", {"event": "SESSIONCOMPLETED"})
        self.store.delete("ses_1")
        self.assertEqual((self.dialogs(), self.seen("SELECT event FROM events")), ([("ses_1", "", 1)], []))
        self.clock.advance(0)
        self.assertEqual((self.dialogs(), self.seen("SELECT event FROM events")), ([], [("SESSIONCOMPLETED",)]))
        self.assertEqual(commits(statements), 1)

    def test_failed_turn_written_again(self) -> None:
        """
        The changes of a turn whose commit fails are counted by the journal
        and written with the next turn, under any newer change of the same
        dialog.
        """
        journal = DialogJournal(self.store)
        self.add_guard(self.database)
        self.store.put("ses_1", "", TENANT, {"n": 1})
        self.store.put("ses_2", "", TENANT, {"n": 2})
        self.spoil_turn(self.database)
        with capturedLogs():
            self.clock.advance(0)
        self.assertEqual(self.dialogs(), [])
        self.assertEqual(journal.stats["errors"], 1)
        self.store.put("ses_2", "", TENANT, {"n": 3})
        self.clock.advance(0)
        self.assertEqual(self.dialogs(), [("ses_1", "", 1), ("ses_2", "", 3)])

    def test_recovery_commits_at_once(self) -> None:
        """
        The events and the deletes of the sessions a restart ends are
        committed before C{recover} returns (the reactor may not run yet).
        """
        self.store.put("ses_1", "", TENANT, {"n": 1})
        self.clock.advance(0)
        outbox = EventOutbox(self.database, clock=self.clock.seconds)
        self.addCleanup(outbox.close)
        with capturedLogs():
            self.assertEqual(SessionRecovery(self.clock, self.store, None, outbox).recover(), 1)
        self.assertEqual(self.dialogs(), [])
        self.assertEqual(self.seen("SELECT event FROM events"), [("SESSIONCOMPLETED",)])


class GroupedJournalTests(base.JournalTests):
    """
    The journal tests of L{tests.test_recovery}, on a grouped store.
    """

    def setUp(self) -> None:
        super().setUp()
        database = EventDatabase(self.store.path, reactor=self.stack.clock)
        self.store = DialogStore(database, clock=self.stack.clock.seconds)
        self.addCleanup(self.store.close)
        self.journal = DialogJournal(self.store)
        self.call.journal = self.journal
