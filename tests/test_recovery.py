"""
Restart recovery (SPEC s14): the dialog store, the journal the calls keep
it with, and the recovery that ends a previous run's sessions, on a
L{Clock} with a recording transport (the subprocess test with kill -9 is
tests/integration/test_restart.py).
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aiconnect import events
from aiconnect.call import ForwardAnswered, InboundAcked, InboundAnswered, InboundEnded
from aiconnect.recovery import CSEQ_MARGIN, DialogJournal, DialogStore, SessionRecovery, session_record
from aiconnect.sip.dialog import Dialog
from aiconnect.sip.message import Request, parse
from aiconnect.sip.peer import Peer
from aiconnect.sip.transaction import TimerConfig
from aiconnect.sip.txlayer import TransactionLayer
from aiconnect.sip.ua import UserAgent
from tests.fakes import FakeLeg, FakeSipTransport, ListSink, make_runner

TIMERS = TimerConfig(t1=0.5, t2=4.0, t4=5.0)
SRC = Peer("udp", "192.0.2.10", 5060)
SRS = Peer("udp", "198.51.100.7", 5080)


def _dialog(call_id: str, local: str, remote: str, seq: int, target: str) -> Dialog:
    return Dialog(
        call_id=call_id,
        local_tag=local,
        remote_tag=remote,
        local_header="<sip:recorder@customer.example.com>;tag=" + local,
        remote_header="<sip:2000@example.com>;tag=" + remote,
        remote_target=target,
        route_set=["<sip:proxy.example.com;lr>"] if call_id == "in-1" else [],
        local_seq=seq,
        invite_cseq=101,
    )


class Tenant:
    domain = "customer.example.com"


class Order:
    uri = "sip:aiforward@customer.example.com"
    reference_id = {"ticketId": 98765}


class Stack:
    """
    A UA and transaction layer on a Clock with a recording transport.
    """

    def __init__(self) -> None:
        self.clock = Clock()
        self.transport = FakeSipTransport()
        self.ua = UserAgent(self.clock, self.transport)
        self.txlayer = TransactionLayer(self.clock, self.transport, self.ua, TIMERS)
        self.ua.txlayer = self.txlayer

    def sent(self, method: str) -> list[tuple[Request, Peer]]:
        return [(r, p) for r, p in self.transport.requests if r.method == method]

    def receive(self, text: str, source: Peer) -> None:
        message = parse(text.replace("\n", "\r\n").encode())
        self.txlayer.message_received(message, source)


def _store(test: SynchronousTestCase, clock: Clock) -> DialogStore:
    path = Path(tempfile.mkdtemp(prefix="aiconnect-recovery-")) / "events.sqlite3"
    store = DialogStore(str(path), clock=clock.seconds)
    test.addCleanup(store.close)
    return store


class DialogRecordTests(SynchronousTestCase):
    """
    A dialog survives a trip through its stored record.
    """

    def test_round_trip_with_margin(self) -> None:
        """
        from_record(to_record()) gives the same dialog, confirmed, with the
        local CSeq raised by the margin and no remote CSeq (any the peer
        sends next is accepted).
        """
        d = _dialog("in-1", "aaa", "bbb", 7, "sip:2000@192.0.2.10:5060")
        d.remote_seq = 105
        back = Dialog.from_record(d.to_record(), cseq_margin=100)
        self.assertEqual(back.id, d.id)
        self.assertEqual(back.route_set, d.route_set)
        self.assertEqual((back.local_seq, back.invite_cseq, back.remote_seq), (107, 101, None))
        self.assertEqual((back.local_header, back.remote_header, back.remote_target), (d.local_header, d.remote_header, d.remote_target))

    def test_bad_record(self) -> None:
        """
        A record with a missing or mistyped field is refused with a clear
        error, not turned into a half dialog.
        """
        record = _dialog("in-1", "aaa", "bbb", 7, "sip:x@192.0.2.10").to_record()
        self.assertRaises(ValueError, Dialog.from_record, dict(record, local_seq="7"))
        del record["call_id"]
        self.assertRaises(KeyError, Dialog.from_record, record)


class DialogStoreTests(SynchronousTestCase):
    """
    The live_dialogs table.
    """

    def test_put_load_delete(self) -> None:
        """
        Rows are grouped by session (inbound and forwards), replaced by a
        second put, and deleted one leg or a whole session at a time; a
        second connection (the restarted process) sees them.
        """
        clock = Clock()
        store = _store(self, clock)
        store.put("ses_1", "", "customer.example.com", {"n": 1, "started": 5.0})
        store.put("ses_1", "fwd_b", "customer.example.com", {"n": 2})
        store.put("ses_1", "fwd_a", "customer.example.com", {"n": 3})
        store.put("ses_1", "", "customer.example.com", {"n": 4, "started": 5.0})
        store.put("ses_2", "", "customer.example.com", {"n": 5})
        again = DialogStore(store.path, clock=clock.seconds)
        self.addCleanup(again.close)
        sessions = {s.session_id: s for s in again.load()}
        self.assertEqual(sorted(sessions), ["ses_1", "ses_2"])
        one = sessions["ses_1"]
        assert one.inbound is not None
        self.assertEqual(one.inbound.record["n"], 4)
        self.assertEqual(one.started, 5.0)
        self.assertEqual([f.leg for f in one.forwards], ["fwd_a", "fwd_b"])
        store.delete("ses_1", "fwd_a")
        self.assertEqual(store.count(), 3)
        store.delete("ses_1")
        self.assertEqual([s.session_id for s in store.load()], ["ses_2"])

    def test_garbage_row(self) -> None:
        """
        A row that is not JSON still names its session (which is then
        ended without a BYE) instead of stopping the load.
        """
        clock = Clock()
        store = _store(self, clock)
        db = sqlite3.connect(store.path)
        db.execute("INSERT INTO live_dialogs VALUES ('ses_x', '', 't.example', 'not json', 0)")
        db.commit()
        db.close()
        [stored] = store.load()
        assert stored.inbound is not None
        self.assertEqual((stored.session_id, stored.tenant, stored.inbound.record), ("ses_x", "t.example", {}))


class JournalTests(SynchronousTestCase):
    """
    The calls keep the store current through the journal.
    """

    def setUp(self) -> None:
        self.stack = Stack()
        self.store = _store(self, self.stack.clock)
        self.journal = DialogJournal(self.store)
        self.sink = ListSink()
        self.call = make_runner(Tenant(), self.sink, self.stack.clock, call_id="in-1", from_header="<sip:2000@example.com>;tag=bbb", to_header="<sip:r@x>", source="192.0.2.10")
        self.call.journal = self.journal
        self.inbound = self.stack.ua.restore_session(_dialog("in-1", "aaa", "bbb", 7, "sip:2000@192.0.2.10"), SRC, "uas", "<sip:127.0.0.1:5060>")
        self.out = self.stack.ua.restore_session(
            _dialog("out-1", "ccc", "ddd", 300, "sip:srs@198.51.100.7:5080"), SRS, "uac", "<sip:127.0.0.1:5060>;+sip.src", [("X-Tenant", "acme")]
        )

        def forwarder(runner: Any, forward_id: str, order: Any) -> FakeLeg:
            leg = FakeLeg(runner, forward_id, order)
            leg.session = self.out
            return leg

        self.call.leg_factory = forwarder
        self.forward_id = self.call.order_forward(Order())

    def test_nothing_before_ack(self) -> None:
        """
        A session that never started (no ACK) stores nothing.
        """
        self.call.inbound = self.inbound
        self.call.report(InboundAnswered)
        self.call.report(InboundEnded, reason="cancel")
        self.assertEqual(self.store.count(), 0)

    def test_lifecycle(self) -> None:
        """
        ACK stores the inbound dialog, the forward's 2xx its dialog (with
        id, uri, target, reference id and X- headers), a request sent
        updates the stored CSeq, SIPRECFORWARDSTOPPED removes the forward
        and SESSIONCOMPLETED the session; a change after that stores
        nothing again.
        """
        self.call.inbound = self.inbound
        self.call.report(InboundAnswered)
        self.stack.clock.advance(3)
        self.call.report(InboundAcked)
        self.call.report(ForwardAnswered, forward_id=self.forward_id, target="198.51.100.7:5080;transport=udp", codec="PCMU", srtp=False)
        [stored] = self.store.load()
        assert stored.inbound is not None
        self.assertEqual(stored.inbound.record["dialog"]["call_id"], "in-1")
        self.assertEqual(stored.inbound.record["started"], 3.0)
        self.assertEqual((stored.inbound.record["host"], stored.inbound.record["port"]), ("192.0.2.10", 5060))
        [fwd] = stored.forwards
        self.assertEqual(fwd.leg, self.forward_id)
        self.assertEqual(fwd.record["uri"], Order.uri)
        self.assertEqual(fwd.record["reference_id"], {"ticketId": 98765})
        self.assertEqual(fwd.record["target"], "198.51.100.7:5080;transport=udp")
        self.assertEqual(fwd.record["extra_headers"], [["X-Tenant", "acme"]])
        self.assertEqual(fwd.record["dialog"]["local_seq"], 300)
        self.out.request("OPTIONS")
        [stored] = self.store.load()
        self.assertEqual(stored.forwards[0].record["dialog"]["local_seq"], 301)
        self.call.stop_forwards(self.forward_id, events.STOPPED_BY_API)
        [stored] = self.store.load()
        self.assertEqual(stored.forwards, [])
        self.call.report(InboundEnded, reason="bye")
        self.assertEqual(self.store.count(), 0)
        self.inbound.request("INFO")
        self.out.request("OPTIONS")
        self.assertEqual(self.store.count(), 0)
        self.assertEqual(self.journal.stats, {"stored": 2, "updated": 1, "removed": 2, "errors": 0})

    def test_store_failure_never_reaches_the_call(self) -> None:
        """
        A failing database is logged and counted; the call goes on and
        emits its events.
        """
        self.store.close()
        self.call.inbound = self.inbound
        self.call.report(InboundAnswered)
        self.call.report(InboundAcked)
        self.call.report(InboundEnded, reason="bye")
        self.assertEqual(self.sink.names(), ["SESSIONSTARTED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"])
        self.assertEqual(self.journal.stats["errors"], 2)
        self.flushLoggedErrors()


class RecoveryTests(SynchronousTestCase):
    """
    SessionRecovery ends what the previous run left.
    """

    def setUp(self) -> None:
        self.stack = Stack()
        self.stack.clock.advance(1000)
        self.store = _store(self, self.stack.clock)
        self.sink = ListSink()
        self.recovery = SessionRecovery(self.stack.clock, self.store, self.stack.ua, self.sink)
        # What the previous run stored for its two dialogs.
        previous = Stack().ua
        inbound = dict(
            session_record(previous.restore_session(_dialog("in-1", "aaa", "bbb", 7, "sip:2000@192.0.2.10:5062"), SRC, "uas", "<sip:127.0.0.1:5060>;+sip.srs")),
            started=940.0,
        )
        out = previous.restore_session(
            _dialog("out-1", "ccc", "ddd", 300, "sip:srs@198.51.100.7:5080"), SRS, "uac", "<sip:127.0.0.1:5060>;+sip.src", [("X-Tenant", "acme")]
        )
        forward = dict(
            session_record(out),
            started=940.0,
            forward_id="fwd_1",
            uri="sip:aiforward@customer.example.com",
            target="198.51.100.7:5080;transport=udp",
            reference_id={"ticketId": 98765},
        )
        self.store.put("ses_1", "", "customer.example.com", inbound)
        self.store.put("ses_1", "fwd_1", "customer.example.com", forward)

    def test_byes_and_events(self) -> None:
        """
        One BYE to the SRC and one to the SRS, in their dialogs (Call-ID,
        tags, route set, CSeq above the stored one by the margin, the
        forward's X- headers); SIPRECFORWARDSTOPPED then SESSIONCOMPLETED,
        reason restart, with the forward's id, uri, target and reference
        id; the store is empty afterwards.
        """
        self.assertEqual(self.recovery.recover(), 1)
        byes = self.stack.sent("BYE")
        self.assertEqual([p for _, p in byes], [SRC, SRS])
        to_src, to_srs = byes[0][0], byes[1][0]
        self.assertEqual((to_src.call_id, to_src.from_tag, to_src.to_tag), ("in-1", "aaa", "bbb"))
        self.assertEqual(to_src.cseq.number, 7 + CSEQ_MARGIN + 1)
        self.assertEqual(to_src.headers.get("Route"), "<sip:proxy.example.com;lr>")
        self.assertEqual(to_src.uri, "sip:2000@192.0.2.10:5062")
        self.assertEqual((to_srs.call_id, to_srs.from_tag, to_srs.to_tag), ("out-1", "ccc", "ddd"))
        self.assertEqual(to_srs.cseq.number, 300 + CSEQ_MARGIN + 1)
        self.assertEqual(to_srs.headers.get("X-Tenant"), "acme")
        self.assertEqual(self.sink.names(), ["SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"])
        stopped, completed = self.sink.events
        self.assertEqual(
            {k: stopped[k] for k in ("sessionId", "forwardId", "uri", "target", "stoppedBy", "reason", "sipRecForwardReferenceId")},
            {
                "sessionId": "ses_1",
                "forwardId": "fwd_1",
                "uri": "sip:aiforward@customer.example.com",
                "target": "198.51.100.7:5080;transport=udp",
                "stoppedBy": "restart",
                "reason": "restart",
                "sipRecForwardReferenceId": {"ticketId": 98765},
            },
        )
        self.assertEqual((completed["reason"], completed["duration"]), ("restart", 60.0))
        self.assertEqual(self.store.count(), 0)
        self.assertEqual(self.recovery.stats, {"sessions": 1, "byes": 2, "bad_records": 0, "errors": 0})
        self.assertEqual(self.recovery.recover(), 0)

    def test_bye_retransmitted(self) -> None:
        """
        The BYEs go through the transaction layer: unanswered over UDP they
        are retransmitted (Timer E), and nobody waits for them.
        """
        self.recovery.recover()
        self.stack.clock.advance(TIMERS.t1)
        self.stack.clock.advance(2 * TIMERS.t1)
        self.assertEqual(len(self.stack.sent("BYE")), 6)

    def test_crossing_bye_answered(self) -> None:
        """
        The SRC's own BYE arriving while ours is unanswered gets 200, not
        481; once ours is over, a BYE gets 481.
        """
        self.recovery.recover()
        bye = (
            "BYE sip:127.0.0.1:5060 SIP/2.0\n"
            "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{b}\n"
            "Max-Forwards: 70\nFrom: <sip:2000@example.com>;tag=bbb\n"
            "To: <sip:recorder@customer.example.com>;tag=aaa\nCall-ID: in-1\n"
            "CSeq: 102 BYE\nContent-Length: 0\n\n"
        )
        self.stack.receive(bye.format(b="x1"), SRC)
        self.assertEqual(self.stack.transport.statuses(), [200])
        self.stack.clock.advance(64 * TIMERS.t1 + 1)
        self.stack.receive(bye.format(b="x2"), SRC)
        self.assertEqual(self.stack.transport.statuses(), [200, 481])

    def test_bad_record_still_ends_the_session(self) -> None:
        """
        A dialog that cannot be rebuilt gets no BYE (logged, counted), and
        the application still gets its events.
        """
        self.store.put("ses_1", "", "customer.example.com", {"role": "uas"})
        self.recovery.recover()
        self.assertEqual([p for _, p in self.stack.sent("BYE")], [SRS])
        self.assertEqual(self.sink.names(), ["SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"])
        self.assertEqual(self.recovery.stats["bad_records"], 1)
