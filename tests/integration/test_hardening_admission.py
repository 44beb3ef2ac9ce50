# -*- test-case-name: tests.integration.test_hardening_admission -*-
"""
Admission limits end to end (SPEC s12), on real loopback sockets: the real
service, raw UDP SIPRec SRCs, a real HTTP application and scripted SRS
peers.

  - C{invite_rate}: a burst of INVITEs from one source beyond its rate gets
    503 with C{Retry-After: 10} (at most C{invite_rate_answers} a second),
    the rest no answer at all; counted in C{/metrics}; another source is
    not affected; a retransmission is not counted again.
  - Tenant C{max_sessions}: an INVITE beyond the tenant's live sessions
    gets 503 with C{Retry-After}; once a session ends, a new one gets in.
  - C{max_forwards_per_call}: REST orders beyond it get 409 naming the
    limit (stopped and failed forwards no longer count); newCall orders
    beyond it get C{SIPRECFORWARDFAILED} with reason C{limit}.

RTP ranges: 27600-27999 and 25300-25399.
"""

from __future__ import annotations

import json
import socket

import treq

from tests.fakes import listen_udp, pause, wait_until
from tests.integration.helpers import status_of
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
from tests.integration.test_forward import ORDER, UDP_TRUNK, ForwardTestBase

#: A two-stream offer; the SRC never sends RTP in these tests.
OFFER = sdp_offer([("96", 40000, 0), ("98", 40002, 0)])


def _second_loopback_usable() -> bool:
    """
    Whether a UDP socket can be bound on 127.0.0.2 (Linux routes all of
    127.0.0.0/8 to loopback; some systems do not).
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.2", 0))
    except OSError:
        return False
    finally:
        s.close()
    return True


class InviteRateTests(ScenarioCase):
    """
    Per-source INVITE rate (C{invite_rate}, C{invite_rate_answers}).
    """

    rtp_base = 27600

    async def metric(self, name: str) -> float:
        """
        The value of one gauge of C{GET /metrics}.
        """
        resp = await treq.get("http://127.0.0.1:%d/metrics" % (self.api_port,), persistent=False)
        text = (await resp.content()).decode()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError("no metric %s" % (name,))

    async def test_burst_limited_other_source_served(self) -> None:
        """
        With invite_rate = 5, a burst of 20 INVITEs (distinct Call-IDs) from
        one socket: 5 are served, the next ones get 503 with Retry-After:
        10 (at most 10 of them), the rest no final answer at all; all
        counted in /metrics. A retransmission of a refused INVITE is
        answered again by its transaction and not counted. A call from
        another source (127.0.0.2) right after the burst gets 200.
        """
        if not _second_loopback_usable():
            self.skipTest("127.0.0.2 cannot be bound here")
        self.start(tenant="\n[limits]\ninvite_rate = 5.0\ninvite_rate_answers = 10\n")
        srs = self.service.srs
        src = self.src()
        invites = [siprec_invite("udp", src.port, DOMAIN, OFFER, METADATA) for _ in range(20)]
        for raw, _ids in invites:
            src.send(raw)

        def first_finals() -> dict[str, tuple[int, bytes]]:
            # Call-ID -> first final answer (200 and 503 are retransmitted
            # until ACKed: count each INVITE once).
            out: dict[str, tuple[int, bytes]] = {}
            for m in src.matching(final("INVITE")):
                out.setdefault(str(_raw_header(m, "Call-ID")), (_status(m) or 0, m))
            return out

        # 5 served + 10 refused; then give any late answer time to come.
        await wait_until(lambda: len(first_finals()) >= 15)
        await pause(0.5)
        answers = first_finals()
        statuses = [status for status, _m in answers.values()]
        refused = [m for status, m in answers.values() if status == 503]
        served = statuses.count(200)
        # Tokens refill while the burst is read (5/s and 10/s): slack
        # upwards for a slow machine.
        self.assertGreaterEqual(served, 5)
        self.assertLessEqual(served, 7)
        self.assertGreaterEqual(len(refused), 10)
        self.assertLessEqual(len(refused), 14)
        self.assertEqual(sorted(set(statuses)), [200, 503])
        dropped = 20 - len(statuses)
        self.assertGreaterEqual(dropped, 1)
        self.assertEqual({_raw_header(m, "Retry-After") for m in refused}, {"10"})
        # A dropped INVITE got no answer at all (not even 100 Trying: it
        # is screened out before a server transaction exists), and left no
        # server transaction behind.
        dropped_ids = {ids["call_id"] for _r, ids in invites} - set(answers)
        self.assertEqual(len(dropped_ids), dropped)
        self.assertEqual([m for m in src.peer.received if _raw_header(m, "Call-ID") in dropped_ids], [])
        self.assertEqual(self.service.sip.txlayer.stats["screened_out"], dropped)
        live = {tx.request.call_id for tx in self.service.sip.txlayer.server_transactions.values()}
        self.assertEqual(live & dropped_ids, set())
        self.assertEqual(srs.stats["rate_limited_answered"], len(refused))
        self.assertEqual(srs.stats["rate_limited_dropped"], dropped)
        self.assertEqual(len(self.app.new_calls), served)
        self.assertEqual(await self.metric("aiconnect_srs_rate_limited_answered_total"), len(refused))
        self.assertEqual(await self.metric("aiconnect_srs_rate_limited_dropped_total"), dropped)

        # A retransmission (same branch) of a refused INVITE is absorbed by
        # its transaction, not counted as a new INVITE.
        refused_call_id = _raw_header(refused[0], "Call-ID")
        src.send(next(r for r, ids in invites if ids["call_id"] == refused_call_id))
        await pause(0.3)
        self.assertEqual(srs.stats["invites"], 20)
        self.assertEqual(srs.stats["rate_limited_answered"], len(refused))

        # Another source is served at once.
        await other_source_answered(self)

        # Nothing left for stopping the service to wait for: each answer
        # ACKed, each call ended.
        sent = {ids["call_id"]: (raw, ids) for raw, ids in invites}
        for call_id, (status, m) in answers.items():
            raw, ids = sent[call_id]
            if status == 200:
                src.send(in_dialog("ACK", "udp", src.port, m, ids, 101, DOMAIN))
                src.send(in_dialog("BYE", "udp", src.port, m, ids, 102, DOMAIN))
            else:
                src.send(ack_of_failure(raw, str(_raw_header(m, "To"))))
        await wait_until(lambda: len(src.matching(response(200, "BYE"))) == served)

    async def test_reinvite_not_counted(self) -> None:
        """
        In-dialog re-INVITEs do not count towards the rate: with
        invite_rate = 1, a call's re-INVITEs are all answered 200.
        """
        self.start(tenant="\n[limits]\ninvite_rate = 1.0\ninvite_rate_answers = 1\n")
        src = self.src()
        await src.call(OFFER)
        for _ in range(3):
            resp = await src.in_dialog("INVITE", OFFER, "application/sdp")
            self.assertEqual(_status(resp), 200, resp[:200])
        self.assertEqual(self.service.srs.stats.get("rate_limited_answered", 0), 0)
        self.assertEqual(self.service.srs.stats.get("rate_limited_dropped", 0), 0)
        await src.bye()


async def other_source_answered(case: ScenarioCase) -> None:
    """
    A SIPRec INVITE from 127.0.0.2 is answered 200 (a limit on one source
    does not touch another).
    """
    other, port = listen_udp(case, host="127.0.0.2")
    raw, ids = siprec_invite("udp", port, DOMAIN, OFFER, METADATA)
    other.send(raw, case.sip_port)
    ok = await other.next_final(call_id=ids["call_id"])
    case.assertEqual(status_of(ok), 200, ok[:200])
    # Ended, so that stopping the service need not wait for it.
    other.send(in_dialog("ACK", "udp", port, ok, ids, 101, DOMAIN), case.sip_port)
    other.send(in_dialog("BYE", "udp", port, ok, ids, 102, DOMAIN), case.sip_port)
    case.assertEqual(status_of(await other.take(final("BYE"))), 200)


class UnconfirmedSessionsTests(ScenarioCase):
    """
    C{max_unconfirmed_per_source}: INVITEs answered and never ACKed cannot
    pile up from one source.
    """

    rtp_base = 25300

    async def test_unacked_sessions_capped_per_source(self) -> None:
        """
        max_unconfirmed_per_source = 2: two INVITEs answered 200 and not
        ACKed; a third from the same address gets 503 with Retry-After: 10
        and reaches no application; once one is ACKed, the next is
        accepted again. Another source is not affected.
        """
        self.start(tenant="\n[limits]\nmax_unconfirmed_per_source = 2\n")
        srs = self.service.srs
        first, second, third = self.src(), self.src(), self.src()
        for peer in (first, second):
            resp = await peer.invite(OFFER)
            self.assertEqual(_status(resp), 200, resp[:200])
        resp = await third.invite(OFFER)
        self.assertEqual(_status(resp), 503, resp[:200])
        self.assertEqual(_raw_header(resp, "Retry-After"), "10")
        self.assertEqual(srs.stats["unconfirmed_full"], 1)
        self.assertEqual(len(self.app.new_calls), 2)
        if _second_loopback_usable():
            await other_source_answered(self)
        first.ack(101)
        await wait_until(lambda: srs.unconfirmed.count("127.0.0.1") == 1)
        fourth = self.src()
        await fourth.call(OFFER)
        self.assertEqual(srs.stats["unconfirmed_full"], 1)
        await first.bye()
        await fourth.bye()
        # Nothing left for the drain to wait for: the 503 ACKed, the
        # second call ACKed and ended.
        to = _raw_header(resp, "To")
        assert to is not None
        third.send(ack_of_failure(third.invite_raw, to))
        second.ack(101)
        await second.bye()


class TenantSessionsTests(ScenarioCase):
    """
    Per-tenant C{max_sessions}.
    """

    rtp_base = 27700

    async def test_second_call_refused_until_first_ends(self) -> None:
        """
        max_sessions = 1: a second concurrent call gets 503 with
        Retry-After and reaches no application; once the first ends, a new
        call is accepted.
        """
        self.start(tenant="max_sessions = 1\n")
        first = self.src()
        await first.call(OFFER)
        second = self.src()
        resp = await second.invite(OFFER)
        self.assertEqual(_status(resp), 503, resp[:200])
        self.assertEqual(_raw_header(resp, "Retry-After"), "5")
        self.assertEqual(self.service.srs.stats["tenant_full"], 1)
        self.assertEqual(len(self.app.new_calls), 1)
        await first.bye()
        third = self.src()
        await third.call(OFFER)
        self.assertEqual(len(self.app.new_calls), 2)
        await third.bye()


LIMITS = "\n[limits]\nmax_forwards_per_call = 2\n"


class ForwardLimitTests(ForwardTestBase):
    """
    C{max_forwards_per_call} through REST and newCall.
    """

    async def test_rest_409_and_slots_freed(self) -> None:
        """
        max_forwards_per_call = 2: a third REST order is 409 naming the
        limit, with no field; a stopped forward and a failed forward no
        longer count, so new orders are accepted again up to the limit.
        """
        ok = self.srs("200")
        bad = self.srs("503")
        trunks = UDP_TRUNK.replace('target = "srs.test"', 'target = "127.0.0.1:%d"' % ok.port.getHost().port) + UDP_TRUNK.replace(
            'match = "aiforward"', 'match = "failing"'
        ).replace('target = "srs.test"', 'target = "127.0.0.1:%d"' % bad.port.getHost().port)
        self.setup_service(trunks + LIMITS, {}, None, 27800)
        call = await self.start_call()
        await self.events(["SESSIONSTARTED"], settle=False)
        path = "/%s/startsiprecforward" % DOMAIN
        order = dict(ORDER, sessionId=call["session_id"])
        ids = []
        for _ in range(2):
            code, body = await self.api_post(path, order)
            self.assertEqual(code, 200, body)
            ids.append(body["forwardId"])
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTARTED"], settle=False)
        code, body = await self.api_post(path, order)
        self.assertEqual(code, 409, body)
        self.assertIn("max_forwards_per_call", body["error"])
        self.assertNotIn("field", body)
        self.assertEqual(self.service.srs.stats["forwards_refused_limit"], 1)
        # A stopped forward frees its slot ...
        code, body = await self.api_post("/%s/stopsiprecforward" % DOMAIN, {"sessionId": call["session_id"], "forwardId": ids[1]})
        self.assertEqual(code, 200, body)
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED"], settle=False)
        # ... and so does a failed one.
        code, body = await self.api_post(path, dict(order, uri="sip:failing@customer.example.com"))
        self.assertEqual(code, 200, body)
        await self.events(["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED", "SIPRECFORWARDFAILED"])
        code, body = await self.api_post(path, order)
        self.assertEqual(code, 200, body)
        code, body = await self.api_post(path, order)
        self.assertEqual(code, 409, body)
        await self.bye(call)

    async def test_new_call_orders_beyond_limit(self) -> None:
        """
        max_forwards_per_call = 2 and a newCall answer with 3 orders: two
        forwards start, the third is SIPRECFORWARDFAILED with reason
        "limit" (and its reference id), and never reaches an SRS.
        """
        srs = self.srs("200")
        trunk = UDP_TRUNK.replace('target = "srs.test"', 'target = "127.0.0.1:%d"' % srs.port.getHost().port)
        orders = [dict(ORDER, sipRecForwardReferenceId={"n": n}) for n in range(3)]
        self.setup_service(trunk + LIMITS, {"startSIPRecForward": orders}, None, 27900)
        call = await self.start_call()
        await self.app.wait_for("events", 4, timeout=15)
        await pause(0.2)
        names = self.app.event_names()
        self.assertEqual(names[0], "SESSIONSTARTED")
        self.assertEqual(sorted(names[1:]), ["SIPRECFORWARDFAILED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTARTED"])
        failed = [e for e in self.app.events if e["event"] == "SIPRECFORWARDFAILED"][0]
        self.assertEqual(failed["reason"], "limit")
        self.assertEqual(failed["sipRecForwardReferenceId"], {"n": 2})
        self.assertEqual(failed["uri"], ORDER["uri"])
        self.assertEqual(len([r for r in srs.requests if r.method == "INVITE"]), 2)
        self.assertEqual(self.service.srs.stats["forwards_refused_limit"], 1)
        session = json.loads(
            await (
                await treq.get(
                    "http://127.0.0.1:%d/%s/sessions/%s" % (self.api_port, DOMAIN, call["session_id"]),
                    headers={"Authorization": "Bearer t0ken"},
                    persistent=False,
                )
            ).content()
        )["session"]
        self.assertEqual(sorted(f["state"] for f in session["forwards"]), ["active", "active", "failed"])
        await self.bye(call)
