"""
Mandatory forwards (SPEC s13) through the real L{SrsService},
L{UserAgent} and L{TransactionLayer} on a L{Clock}
(L{tests.siprec.srs_harness}), with forward legs the test drives
(L{tests.fakes.RecordingLegFactory}): the SRC's 200 OK waits for the
mandatory forward, a failure or C{[limits] mandatory_wait} answers 503
with the SPEC s13 C{Reason} (L{aiconnect.siprec.pending.PendingInvite}),
a CANCEL while waiting ends it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from aiconnect.call import ForwardAnswered, ForwardFailed
from aiconnect.sip.message import Response
from aiconnect.webhooks import NewCallResult
from tests.fakes import FakeLeg, RecordingLegFactory
from tests.integration.scenario import ack_of_failure, cancel_of
from tests.siprec.srs_harness import SrsClockCase
from tests.siprec import test_srs_timers

REASON = 'SIP;cause=503;text="mandatory forward failed"'
MANDATORY = {"uri": "sip:aiforward@customer.example.com", "mandatory": True, "sipRecForwardReferenceId": {"t": 1}}
OPTIONAL = {"uri": "sip:aiforward@customer.example.com"}


class AnswerApp:
    """
    A C{newCall} client whose application answers C{answer} at once (or
    fails with C{error}).
    """

    answer: dict[str, Any] | None = {"startSIPRecForward": [MANDATORY, OPTIONAL]}
    error: str | None = None

    def post_new_call(self, tenant: Any, payload: Any, timeout: float) -> defer.Deferred[NewCallResult]:
        """
        The answer, at once.
        """
        return defer.succeed(NewCallResult(self.answer, self.error, status=200))


class MandatoryCase(SrsClockCase):
    """
    The harness with C{self.legs} as the forward leg factory.
    """

    app_factory = AnswerApp
    in_dialog = test_srs_timers.SessionTimerClockTests.in_dialog

    def setUp(self) -> None:
        """
        Set up the harness and the leg factory.
        """
        super().setUp()
        self.legs = RecordingLegFactory()
        self.srs.forwarder = self.legs

    def finals(self) -> list[Response]:
        """
        The final responses to the INVITE we sent, retransmissions included.
        """
        return [
            m for m, _ in self.transport.sent if isinstance(m, Response) and m.status >= 200 and m.cseq.method == "INVITE"
        ]

    def answered_by_srs(self, leg: FakeLeg) -> None:
        """
        C{leg}'s SRS answered.
        """
        leg.runner.report(ForwardAnswered, forward_id=leg.forward_id, target="127.0.0.1:5080", codec="PCMA", srtp=False)

    def assertRejected(self, invite: bytes) -> None:
        """
        The INVITE got exactly one 503 with the SPEC s13 Reason (no 200),
        retransmitted until the SRC's ACK; the session is over and its
        ports are released.
        """
        [first] = self.finals()
        self.assertEqual((first.status, first.headers.get("Reason")), (503, REASON))
        self.clock.advance(0.5)  # Timer G: the 503 again
        self.assertEqual({r.status for r in self.finals()}, {503})
        self.receive(ack_of_failure(invite, first.headers.get("To")))
        self.clock.advance(64 * 0.5)
        self.assertEqual(self.responses(200, "INVITE"), [])
        self.assertTrue(self.srs.relay.sessions[0].closed)
        self.assertEqual(self.registry.live_count("customer.example.com"), 0)
        self.assertEqual(self.sink.events[-1]["reason"], "mandatoryForwardFailed")
        self.assertNotIn("SESSIONSTARTED", self.sink.names())
        self.assertEqual(self.srs.stats["mandatory_rejected"], 1)


class HeldAnswerTests(MandatoryCase):
    """
    The 200 OK waits for the mandatory forward.
    """

    def test_answer_after_the_srs(self) -> None:
        """
        Only the mandatory forward starts with the INVITE; no final answer
        until its SRS answered, then 200 OK; at the ACK SESSIONSTARTED, its
        SIPRECFORWARDSTARTED, and the other forward starts.
        """
        self.invite()
        [leg] = self.legs.legs
        self.assertTrue(leg.started)
        self.assertTrue(leg.order.mandatory)
        self.clock.advance(10)
        self.assertEqual(self.finals(), [])
        self.assertEqual(self.sink.names(), [])
        self.answered_by_srs(leg)
        [ok] = self.finals()
        self.assertEqual(ok.status, 200)
        self.assertEqual(self.sink.names(), [])
        self.ok = ok
        self.in_dialog("ACK", cseq=ok.cseq.number)
        self.assertEqual(self.sink.names(), ["SESSIONSTARTED", "SIPRECFORWARDSTARTED"])
        self.assertEqual(self.sink.events[1]["sipRecForwardReferenceId"], {"t": 1})
        self.assertEqual(len(self.legs.started), 2)
        self.clock.advance(60)  # the cap was cancelled: nothing more
        self.assertEqual(self.sink.names(), ["SESSIONSTARTED", "SIPRECFORWARDSTARTED"])


class RejectTests(MandatoryCase):
    """
    503 with Reason when the mandatory forward cannot start.
    """

    def test_forward_failed(self) -> None:
        """
        The mandatory forward fails (every target 503): the INVITE gets 503
        with the Reason, SIPRECFORWARDFAILED then SESSIONCOMPLETED
        mandatoryForwardFailed; the other forward never started.
        """
        invite = self.invite()
        [leg] = self.legs.legs
        leg.runner.report(ForwardFailed, forward_id=leg.forward_id, reason="SIP 503", status=503)
        self.assertRejected(invite)
        self.assertEqual(self.sink.names(), ["SIPRECFORWARDFAILED", "SESSIONCOMPLETED"])
        self.assertEqual(len(self.legs.legs), 1)

    def test_wait_capped(self) -> None:
        """
        A mandatory forward that neither answers nor fails (a hung DNS
        lookup): after [limits] mandatory_wait (32 s) it fails with reason
        timeout, its leg is stopped, and the INVITE gets 503.
        """
        invite = self.invite()
        [leg] = self.legs.legs
        self.clock.advance(31.9)
        self.assertEqual((self.finals(), leg.stopped_by), ([], None))
        self.clock.advance(0.2)
        self.assertEqual(leg.stopped_by, "error")
        self.assertRejected(invite)
        self.assertEqual(self.sink.names(), ["SIPRECFORWARDFAILED", "SESSIONCOMPLETED"])
        self.assertEqual(self.sink.events[0]["reason"], "timeout: no answer within [limits] mandatory_wait")

    def test_invalid_mandatory_order(self) -> None:
        """
        A mandatory order naming no trunk: 503 at once, no leg made, and
        SIPRECFORWARDFAILED names the field.
        """
        self.app.answer = {"startSIPRecForward": [OPTIONAL, dict(MANDATORY, uri="sip:nobody@customer.example.com")]}
        invite = self.invite()
        self.assertEqual(self.legs.legs, [])
        self.assertRejected(invite)
        self.assertEqual(self.sink.names(), ["SIPRECFORWARDFAILED", "SESSIONCOMPLETED"])
        self.assertIn("startSIPRecForward[1].uri", self.sink.events[0]["reason"])

    def test_first_of_two_fails_at_once(self) -> None:
        """
        Two mandatory forwards, the first failing while it starts (no RTP
        ports): 503, and the second is never started (its start came after
        the session ended).
        """
        self.app.answer = {"startSIPRecForward": [MANDATORY, MANDATORY]}

        def failing(runner: Any, forward_id: str, order: Any) -> FakeLeg:
            leg = RecordingLegFactory.__call__(self.legs, runner, forward_id, order)
            if len(self.legs.legs) == 1:
                leg.start = lambda: runner.report(ForwardFailed, forward_id=forward_id, reason="no RTP ports left")  # type: ignore[method-assign]
            return leg

        self.srs.forwarder = failing
        invite = self.invite()
        self.assertEqual(len(self.legs.legs), 1)
        self.assertRejected(invite)
        self.assertEqual(self.sink.names(), ["SIPRECFORWARDFAILED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"])


class CancelWhileWaitingTests(MandatoryCase):
    """
    The SRC gives up while the 200 OK is held.
    """

    def test_cancel(self) -> None:
        """
        CANCEL: 487 to the INVITE, the mandatory forward is stopped,
        SESSIONCOMPLETED reason cancel; the cap never fires afterwards.
        """
        invite = self.invite()
        [leg] = self.legs.legs
        self.receive(cancel_of(invite))
        self.assertEqual([r.status for r in self.finals()], [487])
        self.assertEqual(leg.stopped_by, "error")
        self.assertEqual(self.sink.names(), ["SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"])
        self.assertEqual(self.sink.events[-1]["reason"], "cancel")
        self.clock.advance(40)
        self.assertEqual(self.sink.names(), ["SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"])
        self.assertEqual(self.srs.stats["mandatory_rejected"], 0)


class FailedApplicationTests(MandatoryCase):
    """
    Without an answer there is no mandatory order: answered as before.
    """

    def test_new_call_failed(self) -> None:
        """
        The application's newCall failed: 200 OK at once, no forward, the
        answer never held.
        """
        self.app.answer = None
        self.app.error = "HTTP 500"
        self.invite()
        self.assertEqual([r.status for r in self.finals()], [200])
        self.assertEqual(self.legs.legs, [])
        [runner] = self.registry.active("customer.example.com")
        self.assertEqual((runner.call.answer_held, runner.answerer), (False, None))
        self.assertEqual(self.srs.stats["mandatory_rejected"], 0)
