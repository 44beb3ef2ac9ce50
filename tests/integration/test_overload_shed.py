# -*- test-case-name: tests.integration.test_overload_shed -*-
"""
Stateless refusals while overloaded (issue 12, docs/overload.md), on real
loopback sockets with the real service: a new INVITE refused by overload
control (or by its source's INVITE rate) is answered 503 before its parse,
without a server transaction; its retransmission gets the same octets, its
ACK is absorbed; in-dialog requests, OPTIONS and admitted INVITEs take the
full path, screened once.

The overload is forced: the SRS is given an L{OverloadService} on a
L{Clock} driven into overload by lag samples, whose admission bucket only
refills when the test advances that clock.

RTP range: 64750-64789.
"""

from __future__ import annotations

import uuid

from twisted.internet.task import Clock

from aiconnect.overload import OverloadService
from aiconnect.sip.message import Response
from tests.integration.helpers import options_request, status_of
from tests.integration.scenario import (
    DOMAIN,
    METADATA,
    ScenarioCase,
    Src,
    _raw_header,
    _status,
    ack_of_failure,
    final,
    parse_response,
)
from tests.integration.siprec_peer import sdp_offer, siprec_invite

#: A one-stream offer; the SRC never sends RTP in these tests.
OFFER = sdp_offer([("96", 40000, 0)])
#: Retry-After of the overload 503s here (not the default 2).
LIMITS = "\n[limits]\noverload_retry_after = 3\n"


class StatelessRefusalTests(ScenarioCase):
    """
    While overloaded, new INVITEs are refused before their parse.
    """

    rtp_base = 64750
    timeout = 30

    def start_overloaded(self, limits: str = LIMITS, overloaded: bool = True) -> Clock:
        """
        Start the service, then give its SRS an overload service on a
        L{Clock}: overloaded with an empty admission bucket (C{overloaded}),
        or not.

        @return: The clock; advancing it refills the bucket.
        """
        self.start(tenant=limits, rtp_pairs=20)
        clock = Clock()
        self.overload = OverloadService(clock, lag=0.1, cpu=0)
        detector = self.overload.detector
        for _ in range(40):
            if detector.overloaded or not overloaded:
                break
            clock.advance(0.25)
            detector.lag_sample(1.0)
            detector.tick(clock.seconds(), 0.0, 0)
        self.assertEqual(detector.overloaded, overloaded)
        self.srs = self.service.srs
        self.srs.overload = self.overload
        self.txlayer = self.service.sip.txlayer
        return clock

    async def barrier(self, src: Src) -> None:
        """
        An OPTIONS from C{src}, answered 200: what the service did with
        the datagrams sent before it is done (UDP on loopback keeps their
        order, the service handles them in turn).
        """
        src.send(options_request("UDP", src.port, uuid.uuid4().hex, uuid.uuid4().hex))
        self.assertEqual(status_of(await src.take(final("OPTIONS"))), 200)

    def assert_answers(self, resp: Response, invite: bytes, src: Src, ids: dict[str, str]) -> None:
        """
        C{resp} answers C{invite} from C{src}: its top Via stamped with
        the source, From, Call-ID and CSeq copied, our To tag.
        """
        top = resp.top_via
        self.assertEqual((top.host, top.port, top.branch), ("127.0.0.1", src.port, ids["branch"]))
        self.assertEqual((top.param("received"), top.rport), ("127.0.0.1", src.port))
        self.assertEqual(resp.from_tag, ids["from_tag"])
        self.assertEqual(resp.call_id, ids["call_id"])
        self.assertEqual(resp.headers.get("CSeq"), _raw_header(invite, "CSeq"))
        self.assertEqual(str(resp.to.uri), "sip:recorder@%s" % (DOMAIN,))
        self.assertTrue(resp.to_tag.startswith(self.srs.stateless.marker), resp.to_tag)

    async def test_refused_repeated_acknowledged(self) -> None:
        """
        A new INVITE while overloaded, with no admission left, gets 503
        "Service Unavailable (overload)" with Retry-After: 3 answering it,
        counted as the full path counts it, with no server transaction and
        no newCall; its retransmission gets the same octets without a new
        decision; its ACK is absorbed (not given to the UA); an OPTIONS is
        still answered 200.
        """
        self.start_overloaded()
        before = dict(self.txlayer.stats)
        src = self.src()
        invite, ids = siprec_invite("udp", src.port, DOMAIN, OFFER, METADATA)
        src.send(invite)
        raw = await src.take(final("INVITE"))
        resp = parse_response(raw)
        self.assertEqual((resp.status, resp.reason), (503, "Service Unavailable (overload)"))
        self.assertEqual(resp.headers.get("Retry-After"), "3")
        self.assert_answers(resp, invite, src, ids)
        self.assertEqual(self.txlayer.stats["server_transactions"], before["server_transactions"])
        self.assertEqual(
            (self.srs.stats["invites"], self.srs.stats["overload_rejected"], self.overload.detector.stats["rejected_lag"]),
            (1, 1, 1),
        )

        src.send(invite)
        self.assertEqual(await src.take(final("INVITE")), raw)
        self.assertEqual(self.srs.stats["overload_repeats"], 1)
        src.send(ack_of_failure(invite, str(resp.headers.get("To"))))
        await self.barrier(src)
        self.assertEqual(self.srs.stats["overload_acks_absorbed"], 1)
        self.assertEqual(self.txlayer.stats["acks_to_tu"], before["acks_to_tu"])
        # The OPTIONS' transaction only.
        self.assertEqual(self.txlayer.stats["server_transactions"], before["server_transactions"] + 1)
        self.assertEqual(
            (self.srs.stats["invites"], self.srs.stats["overload_rejected"], self.overload.detector.stats["rejected_lag"]),
            (1, 1, 1),
        )
        self.assertEqual(self.app.new_calls, [])

    async def test_same_answer_as_the_full_path(self) -> None:
        """
        The stateless 503 has the same status line and header fields, in
        the same order, with the same Server, as the full path's 503 (the
        service without its shed hook).
        """
        self.start_overloaded()
        transport = self.service.sip.transport
        hook, transport.shed = transport.shed, None
        full, stateless = self.src(), self.src()
        full.send(siprec_invite("udp", full.port, DOMAIN, OFFER, METADATA)[0])
        full_raw = await full.take(final("INVITE"))
        transport.shed = hook
        stateless.send(siprec_invite("udp", stateless.port, DOMAIN, OFFER, METADATA)[0])
        stateless_raw = await stateless.take(final("INVITE"))
        self.assertEqual(stateless_raw.split(b"\r\n", 1)[0], full_raw.split(b"\r\n", 1)[0])
        full_resp, stateless_resp = parse_response(full_raw), parse_response(stateless_raw)
        self.assertEqual([n for n, _v in stateless_resp.headers], [n for n, _v in full_resp.headers])
        for name in ("Server", "Retry-After", "Content-Length"):
            self.assertEqual(stateless_resp.headers.get(name), full_resp.headers.get(name))
        self.assertFalse(full_resp.to_tag.startswith(self.srs.stateless.marker))
        self.assertTrue(stateless_resp.to_tag.startswith(self.srs.stateless.marker))
        self.assertEqual(self.srs.stats["overload_rejected"], 2)
        self.assertEqual(self.overload.detector.stats["rejected_lag"], 2)
        self.assertEqual(self.srs.stats["overload_repeats"], 0)

    async def test_dialog_and_options_served(self) -> None:
        """
        While overloaded, a re-INVITE and a BYE in an established dialog
        and an OPTIONS get their normal 200s; nothing is refused.
        """
        clock = self.start_overloaded(overloaded=False)
        established = self.src()
        await established.call(OFFER)
        detector = self.overload.detector
        while not detector.overloaded:
            clock.advance(0.25)
            detector.lag_sample(1.0)
            detector.tick(clock.seconds(), 0.0, 0)
        resp = await established.in_dialog("INVITE", OFFER, "application/sdp")
        self.assertEqual(_status(resp), 200, resp[:200])
        await self.barrier(self.src())
        await established.bye()
        self.assertEqual(self.srs.stats["overload_rejected"], 0)
        self.assertEqual(detector.stats["rejected_lag"], 0)

    async def test_not_overloaded_unchanged(self) -> None:
        """
        Not overloaded, a new INVITE takes the full path: a server
        transaction, newCall, 200; nothing is answered statelessly.
        """
        self.start_overloaded(overloaded=False)
        before = self.txlayer.stats["server_transactions"]
        src = self.src()
        await src.call(OFFER)
        self.assertEqual(self.txlayer.stats["server_transactions"], before + 1)
        self.assertEqual(len(self.app.new_calls), 1)
        self.assertEqual(len(self.srs.stateless), 0)
        self.assertEqual(self.overload.detector.stats["admitted"], 1)
        await src.bye()

    async def test_admitted_screened_once(self) -> None:
        """
        With invite_rate = 0.2 (one INVITE per 5 s per source) and one
        admission in the bucket: an INVITE is admitted (200) and counted
        once by the source's rate and by overload control, though screened
        before its parse; its retransmission with other octets takes the
        full path (its transaction), not a 503. The next INVITE from the
        same address gets the stateless "INVITE rate" 503 (Retry-After:
        10), the one after is dropped, both counted as the screen counts
        them.
        """
        clock = self.start_overloaded(LIMITS + "invite_rate = 0.2\ninvite_rate_answers = 1\n")
        before = dict(self.txlayer.stats)
        detector = self.overload.detector
        admitted_before = detector.stats["admitted"]
        clock.advance(1.0)
        src = self.src()
        ok = await src.invite(OFFER)
        self.assertEqual(_status(ok), 200, ok[:200])
        self.assertEqual(detector.stats["admitted"], admitted_before + 1)
        self.assertEqual((self.srs.stats["invites"], self.srs.stats["rate_limited_answered"]), (1, 0))
        src.send(src.invite_raw.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 69\r\n"))
        await self.barrier(src)
        self.assertEqual({_status(m) for m in src.matching(final("INVITE"))}, {200})
        src.ack(101)

        rated, dropped = self.src(), self.src()
        invite, ids = siprec_invite("udp", rated.port, DOMAIN, OFFER, METADATA)
        rated.send(invite)
        dropped.send(siprec_invite("udp", dropped.port, DOMAIN, OFFER, METADATA)[0])
        resp = parse_response(await rated.take(final("INVITE")))
        self.assertEqual((resp.status, resp.reason), (503, "Service Unavailable (INVITE rate)"))
        self.assertEqual(resp.headers.get("Retry-After"), "10")
        self.assert_answers(resp, invite, rated, ids)
        await self.barrier(dropped)
        self.assertEqual(dropped.matching(final("INVITE")), [])
        self.assertEqual(
            [self.srs.stats[k] for k in ("invites", "rate_limited_answered", "rate_limited_dropped", "overload_rejected")],
            [3, 1, 1, 0],
        )
        self.assertEqual(self.txlayer.stats["screened_out"], before["screened_out"] + 1)
        # The admitted INVITE's and the two OPTIONS' transactions only.
        self.assertEqual(self.txlayer.stats["server_transactions"], before["server_transactions"] + 3)
        self.assertEqual(detector.stats["admitted"], admitted_before + 1)
        self.assertEqual(len(self.app.new_calls), 1)
        await src.bye()
