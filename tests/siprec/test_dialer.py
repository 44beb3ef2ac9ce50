"""
L{aiconnect.siprec.dialer.Dialer} driven by a L{Clock}: the ring timeout
(SPEC s13: CANCEL and the next target), the late 2xx of a given-up target,
and the health registry it consults and feeds; the real UA core and
transaction layer over a recording fake transport.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.config import load_string
from aiconnect.sip.message import Request
from aiconnect.sip.peer import Peer
from aiconnect.siprec.dialer import DialFailed, Dialer
from aiconnect.siprec.forward import Forwarder
from aiconnect.siprec.health import HealthState, TargetHealth
from tests.sip.uac_stack import UacStack
from tests.siprec.test_forward import CONFIG as FORWARD_CONFIG

CONFIG = FORWARD_CONFIG.replace('  transport = "udp"\n', '  transport = "udp"\n  ring_timeout = 5\n  down_for = 20\n')

FIRST = Peer("udp", "127.0.0.1", 5071)
SECOND = Peer("udp", "127.0.0.1", 5072)


class Targets:
    """
    A resolver giving C{FIRST} then C{SECOND}.
    """

    def resolve(self, target: str, transport: str) -> defer.Deferred[list[Peer]]:
        return defer.succeed([FIRST, SECOND])


class DialerClockTests(SynchronousTestCase):
    """
    Ring timeout, late 2xx and health through a real UA over a fake
    transport.
    """

    def setUp(self) -> None:
        self.stack = UacStack()
        self.clock, self.transport, self.ua, self.tx = self.stack.clock, self.stack.transport, self.stack.ua, self.stack.tx
        self.cfg = load_string(CONFIG)
        self.trunk = self.cfg.tenants[0].trunks[0]
        self.health = TargetHealth(self.clock)
        self.forwarder = Forwarder(self.clock, self.ua, Targets(), self.cfg, health=self.health)

    def dial(self) -> tuple[Dialer, defer.Deferred[Any]]:
        dialer = Dialer(self.forwarder, self.trunk, "fwd_t")
        d = dialer.dial(b"v=0\r\n", "application/sdp", [], "sip:src@example.com")
        # Dials a test leaves running end (ring timeouts) after it looked.
        self.addCleanup(d.addErrback, lambda f: None)
        return dialer, d

    def invites_to(self, peer: Peer) -> list[Request]:
        return [m for m, p in self.transport.invites() if p == peer]

    def sent(self, method: str, peer: Peer) -> list[Request]:
        return self.stack.sent(method, peer)

    def answer(self, request: Request, status: int, reason: str, peer: Peer, extra: list[str] | None = None) -> None:
        self.stack.respond(request, status, reason, peer, "srs-tag", extra)

    def test_ringing_target_cancelled_next_tried(self) -> None:
        """
        A target that rings (180) and never answers gets CANCEL after
        ring_timeout and the next target the INVITE at once; its 200 wins.
        """
        dialer, d = self.dial()
        first = self.invites_to(FIRST)[0]
        self.answer(first, 180, "Ringing", FIRST)
        self.clock.advance(4.9)
        self.assertEqual(self.sent("CANCEL", FIRST), [])
        self.assertEqual(self.invites_to(SECOND), [])
        self.clock.advance(0.1)
        self.assertEqual(len(self.sent("CANCEL", FIRST)), 1)
        self.assertEqual(len(self.invites_to(SECOND)), 1)
        self.assertEqual(self.forwarder.stats["ring_timeouts"], 1)
        self.assertIs(self.health.state(FIRST), HealthState.DOWN)
        # The given-up INVITE's 487 changes nothing.
        self.answer(first, 487, "Request Terminated", FIRST)
        self.assertNoResult(d)
        second = self.invites_to(SECOND)[0]
        self.answer(second, 200, "OK", SECOND, ["Contact: <sip:srs@127.0.0.1:5072>"])
        dialed = self.successResultOf(d)
        self.assertEqual(dialed.peer, SECOND)
        self.assertIs(self.health.state(SECOND), HealthState.UP)
        self.assertEqual(self.sent("ACK", SECOND)[0].call_id, second.call_id)
        # The ring timer of the answered INVITE is gone.
        self.clock.advance(60)
        self.assertEqual(self.sent("CANCEL", SECOND), [])

    def test_every_target_rings_too_long(self) -> None:
        """
        When the last target's ring timeout expires, the dial fails with a
        ring timeout reason naming both targets.
        """
        _, d = self.dial()
        self.answer(self.invites_to(FIRST)[0], 180, "Ringing", FIRST)
        self.clock.advance(5)
        self.answer(self.invites_to(SECOND)[0], 180, "Ringing", SECOND)
        self.clock.advance(5)
        failure = self.failureResultOf(d, DialFailed)
        self.assertEqual(failure.value.reason, "ring timeout: no answer in 5 s")
        self.assertEqual(failure.value.status, 408)
        self.assertEqual(len(failure.value.targets_tried), 2)
        self.assertEqual(len(self.sent("CANCEL", SECOND)), 1)

    def test_provisionals_do_not_stop_the_timer(self) -> None:
        """
        Provisional responses arriving all along do not restart the ring timeout.
        """
        self.dial()
        first = self.invites_to(FIRST)[0]
        for _ in range(4):
            self.answer(first, 180, "Ringing", FIRST)
            self.clock.advance(1.2)
        self.assertEqual(len(self.sent("CANCEL", FIRST)), 0)
        self.clock.advance(0.2)
        self.assertEqual(len(self.sent("CANCEL", FIRST)), 1)

    def test_late_2xx_after_transaction_ended(self) -> None:
        """
        A 2xx from a given-up target after its INVITE transaction ended is
        ACKed and BYEd; a retransmission of it is ACKed again, not BYEd again.
        """
        _, d = self.dial()
        first = self.invites_to(FIRST)[0]
        self.answer(first, 180, "Ringing", FIRST)
        self.clock.advance(5)  # ring timeout: CANCEL, second target
        self.clock.advance(40)  # no 487: the INVITE transaction times out
        self.assertFalse([t for t in self.tx.client_transactions.values() if t.request.call_id == first.call_id and t.request.method == "INVITE"])
        ok = ["Contact: <sip:srs@127.0.0.1:5071>"]
        self.answer(first, 200, "OK", FIRST, ok)
        acks = self.sent("ACK", FIRST)
        byes = self.sent("BYE", FIRST)
        self.assertEqual((len(acks), len(byes)), (1, 1))
        self.assertEqual(byes[0].call_id, first.call_id)
        self.assertEqual(self.ua.stats["late_answers"], 1)
        self.answer(first, 200, "OK", FIRST, ok)
        self.assertEqual((len(self.sent("ACK", FIRST)), len(self.sent("BYE", FIRST))), (2, 1))
        # The second target rang too long as well: the dial failed.
        self.failureResultOf(d, DialFailed)

    def test_down_target_skipped_then_retried(self) -> None:
        """
        A target that answered 503 is skipped by the next dial while down,
        and tried first again after down_for.
        """
        _, d = self.dial()
        self.answer(self.invites_to(FIRST)[0], 503, "Service Unavailable", FIRST)
        self.answer(self.invites_to(SECOND)[0], 200, "OK", SECOND, ["Contact: <sip:srs@127.0.0.1:5072>"])
        self.successResultOf(d)
        self.transport.requests.clear()
        self.dial()
        self.assertEqual((len(self.invites_to(FIRST)), len(self.invites_to(SECOND))), (0, 1))
        self.clock.advance(20)
        self.transport.requests.clear()
        self.dial()
        self.assertEqual([p for _, p in self.transport.invites()], [FIRST])

    def test_alive_answers_mark_up(self) -> None:
        """
        A 486 shows the target alive (up); a timeout marks it down.
        """
        _, d = self.dial()
        self.answer(self.invites_to(FIRST)[0], 486, "Busy Here", FIRST)
        self.failureResultOf(d, DialFailed)
        self.assertIs(self.health.state(FIRST), HealthState.UP)
        self.assertIs(self.health.state(SECOND), HealthState.UNKNOWN)
        self.trunk = self.cfg.tenants[0].trunks[0].__class__(match="aiforward", target="srs.test", ring_timeout=100)
        _, d = self.dial()
        self.clock.advance(33)  # Timer B on the first target
        self.assertIs(self.health.state(FIRST), HealthState.DOWN)
        self.assertEqual(self.health.describe(FIRST)["lastError"], "timeout")

    def test_no_health_registry(self) -> None:
        """
        A forwarder without a registry tries every target every time.
        """
        self.forwarder.health = None
        _, d = self.dial()
        self.answer(self.invites_to(FIRST)[0], 503, "Service Unavailable", FIRST)
        self.assertEqual(len(self.invites_to(SECOND)), 1)
        self.transport.requests.clear()
        self.dial()
        self.assertEqual([p for _, p in self.transport.invites()], [FIRST])

    def test_reestablishing_tries_down_targets_too(self) -> None:
        """
        A dial with C{avoid} (a forward re-established after its SRS was
        lost, SPEC s13) tries a target counted down before giving up, and
        the lost one last: a new dial would skip the down one.
        """
        self.health.target_failed(FIRST, "timeout", 30.0)
        self.health.target_failed(SECOND, "timeout", 30.0)
        self.health.target_answered(SECOND)
        dialer = Dialer(self.forwarder, self.trunk, "fwd_t")
        d = dialer.dial(b"v=0\r\n", "application/sdp", [], "sip:src@example.com", avoid=SECOND)
        self.addCleanup(d.addErrback, lambda f: None)
        self.assertEqual([p for _, p in self.transport.invites()], [FIRST])
        self.answer(self.invites_to(FIRST)[0], 503, "Service Unavailable", FIRST)
        self.assertEqual([p for _, p in self.transport.invites()], [FIRST, SECOND])
        self.answer(self.invites_to(SECOND)[0], 503, "Service Unavailable", SECOND)
        self.assertEqual(self.failureResultOf(d, DialFailed).value.targets_tried, (dialer.tried[0], dialer.tried[1]))
        self.assertEqual(len(dialer.tried), 2)
