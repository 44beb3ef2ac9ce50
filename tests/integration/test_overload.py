# -*- test-case-name: tests.integration.test_overload -*-
"""
Overload control end to end (issue 12, docs/overload.md), on real loopback
sockets: the real service, a raw UDP SIPRec SRC and a real HTTP
application. The reactor is made to lag by blocking calls scheduled on it
(what a saturated process looks like from inside); while it is
overloaded, new INVITEs get 503 with C{Retry-After} and reach no
application, while the established call's in-dialog requests, an OPTIONS
keep-alive and its events go on; once the lag is gone, new INVITEs are
admitted again.

RTP range: 64300-64399.
"""

from __future__ import annotations

import time
import uuid

import treq
from twisted.internet import reactor
from twisted.internet.task import LoopingCall

from tests.fakes import wait_until
from tests.integration.helpers import options_request, status_of
from tests.integration.scenario import (
    DOMAIN,
    METADATA,
    ScenarioCase,
    _raw_header,
    _status,
    ack_of_failure,
    final,
    response,
)
from tests.integration.siprec_peer import in_dialog, sdp_offer, siprec_invite

#: A one-stream offer; the SRC never sends RTP in these tests.
OFFER = sdp_offer([("96", 40000, 0)])
#: Seconds each blocking call holds the reactor (over overload_lag).
BLOCK = 0.15


class OverloadTests(ScenarioCase):
    """
    C{[limits] overload_lag}: a lagging reactor sheds new INVITEs only.
    """

    rtp_base = 64300
    timeout = 60

    async def metrics(self) -> str:
        """
        The text of C{GET /metrics}.
        """
        resp = await treq.get("http://127.0.0.1:%d/metrics" % (self.api_port,), persistent=False)
        return (await resp.content()).decode()

    def lag_reactor(self) -> LoopingCall:
        """
        Hold the reactor for L{BLOCK} seconds every turn until stopped.
        """
        blocker = LoopingCall(time.sleep, BLOCK)
        blocker.clock = reactor
        blocker.start(0.01, now=False)
        self.addCleanup(lambda: blocker.running and blocker.stop())
        return blocker

    async def test_lag_sheds_new_invites_only(self) -> None:
        """
        overload_lag = 0.1 s: with the reactor held 0.15 s per turn the
        service is overloaded; a burst of new INVITEs gets 503 "Service
        Unavailable (overload)" with Retry-After: 2 (all but the one or two
        the admission rate lets in), counted, and no refused one reaches
        newCall; the established call's re-INVITE and BYE are answered 200,
        an OPTIONS keep-alive too, and its SESSIONCOMPLETED arrives. Once
        the lag is gone the overload ends and a new INVITE is answered 200.
        """
        self.start(tenant="\n[limits]\noverload_lag = 0.1\noverload_cpu = 0\noverload_retry_after = 2\n")
        srs = self.service.srs
        detector = self.service.overload.detector
        established = self.src()
        _ok, session_id = await established.call(OFFER)

        blocker = self.lag_reactor()
        await wait_until(lambda: detector.overloaded, 10.0, what="an overload")
        new_calls_before = len(self.app.new_calls)
        burst = self.src()
        invites = [siprec_invite("udp", burst.port, DOMAIN, OFFER, METADATA) for _ in range(8)]
        for raw, _ids in invites:
            burst.send(raw)
        await wait_until(lambda: len({_raw_header(m, "Call-ID") for m in burst.matching(final("INVITE"))}) == 8, 20.0)
        blocker.stop()
        firsts: dict[str, bytes] = {}
        for m in burst.matching(final("INVITE")):
            firsts.setdefault(str(_raw_header(m, "Call-ID")), m)
        refused = [m for m in firsts.values() if _status(m) == 503]
        admitted = [m for m in firsts.values() if _status(m) == 200]
        self.assertEqual(len(refused) + len(admitted), 8, [_status(m) for m in firsts.values()])
        self.assertGreaterEqual(len(refused), 6)
        self.assertEqual({m.split(b"\r\n", 1)[0] for m in refused}, {b"SIP/2.0 503 Service Unavailable (overload)"})
        self.assertEqual({_raw_header(m, "Retry-After") for m in refused}, {"2"})
        self.assertEqual(srs.stats["overload_rejected"], len(refused))
        self.assertEqual(detector.stats["rejected_lag"], len(refused))
        metrics = await self.metrics()
        self.assertIn('aiconnect_invites_refused_total{cause="overload_lag"} %d.0' % (len(refused),), metrics)
        self.assertIn("aiconnect_overload_overloaded 1.0", metrics)
        self.assertIn("aiconnect_srs_overload_rejected_total %d.0" % (len(refused),), metrics)
        # The third signal is wired: the deliverer's wait, as a gauge, and
        # its cause as a counter (0 here: the lag made this overload).
        self.assertIn("aiconnect_overload_events_wait_seconds 0.0", metrics)
        self.assertIn('aiconnect_invites_refused_total{cause="overload_events"} 0.0', metrics)
        self.assertEqual(self.service.overload._events_wait, self.service.deliverer.ready_wait)
        # Only the admitted ones reached the application.
        refused_ids = {_raw_header(m, "Call-ID") for m in refused}
        self.assertEqual(len(self.app.new_calls) - new_calls_before, len(admitted))
        self.assertEqual([nc for nc in self.app.new_calls if nc["callId"] in refused_ids], [])

        # The established call is served while overloaded.
        self.assertTrue(detector.overloaded)
        resp = await established.in_dialog("INVITE", OFFER, "application/sdp")
        self.assertEqual(_status(resp), 200, resp[:200])
        keepalive = self.src()
        keepalive.send(options_request("UDP", keepalive.port, uuid.uuid4().hex, uuid.uuid4().hex))
        self.assertEqual(status_of(await keepalive.take(final("OPTIONS"))), 200)
        await established.bye()
        events = await self.events_for(session_id, 2)
        self.assertEqual([e["event"] for e in events], ["SESSIONSTARTED", "SESSIONCOMPLETED"])

        # Acknowledge the 503s, end the admitted calls.
        sent = {ids["call_id"]: raw for raw, ids in invites}
        for m in refused:
            burst.send(ack_of_failure(sent[str(_raw_header(m, "Call-ID"))], str(_raw_header(m, "To"))))
        ids_of = {ids["call_id"]: ids for _raw, ids in invites}
        for m in admitted:
            ids = ids_of[str(_raw_header(m, "Call-ID"))]
            burst.send(in_dialog("ACK", "udp", burst.port, m, ids, 101, DOMAIN))
            burst.send(in_dialog("BYE", "udp", burst.port, m, ids, 102, DOMAIN))
        await wait_until(lambda: len(burst.matching(response(200, "BYE"))) >= len(admitted))

        # The lag is gone: the overload ends, a new INVITE is admitted.
        await wait_until(lambda: not detector.overloaded, 20.0, what="the end of the overload")
        after = self.src()
        ok = await after.invite(OFFER)
        self.assertEqual(_status(ok), 200, ok[:200])
        after.ack(101)
        await after.bye()
        self.assertEqual(srs.stats["overload_rejected"], len(refused))
        self.assertIn("aiconnect_overload_overloaded 0.0", await self.metrics())
