# -*- test-case-name: tests.integration.test_inbound_admission -*-
"""
Who gets in, end to end (issue 3): tenant by Request-URI domain, allowed
sources, SIPRec checks, RTP ports; OPTIONS keep-alives; session timer
negotiation (RFC 4028). The harness is L{tests.integration.scenario}.
"""

from __future__ import annotations

from tests.fakes import listen_udp
from tests.integration.scenario import (
    DOMAIN,
    ScenarioCase,
    _plain_invite,
    _status,
    answer_of,
    final,
    parse_response,
    response,
)
from tests.integration.siprec_peer import sdp_offer


class AdmissionTests(ScenarioCase):
    """
    Who gets in: tenant by Request-URI domain, allowed sources, SIPRec
    checks, RTP ports.
    """

    rtp_base = 24000

    async def test_unknown_domain(self) -> None:
        """
        An INVITE for a domain no tenant has is answered 404 and reaches no
        application.
        """
        self.start()
        src = self.src()
        _, port = listen_udp(self)
        resp = await src.invite(sdp_offer([("96", port, 8)]), domain="unknown.example.org")
        self.assertEqual(_status(resp), 404)
        self.assertNotEqual(src.matching(response(100, "INVITE")), [])
        self.assertEqual(src.matching(response(200)), [])
        self.assertEqual(self.app.new_calls, [])
        self.assertEqual(await self.sessions(), [])

    async def test_source_not_allowed(self) -> None:
        """
        A tenant with C{allowed_sources} that does not hold 127.0.0.1 answers
        403.
        """
        self.start(tenant='allowed_sources = ["10.0.0.0/8", "192.0.2.0/24"]\n')
        src = self.src()
        _, port = listen_udp(self)
        resp = await src.invite(sdp_offer([("96", port, 8)]))
        self.assertEqual(_status(resp), 403)
        self.assertEqual(self.app.new_calls, [])
        self.assertEqual(await self.sessions(), [])

    async def test_allowed_source(self) -> None:
        """
        A source inside C{allowed_sources} is answered 200.
        """
        self.start(tenant='allowed_sources = ["10.0.0.0/8", "127.0.0.0/8"]\n')
        src = self.src()
        _, port = listen_udp(self)
        await src.call(sdp_offer([("96", port, 8)]))
        await src.bye()

    async def test_plain_invite_rejected(self) -> None:
        """
        A plain INVITE (no C{Require: siprec}, no C{+sip.src}, no metadata)
        is answered 488 under the default C{non_siprec = "reject"}.
        """
        self.start()
        src = self.src()
        _, port = listen_udp(self)
        resp = await src.invite(sdp_offer([("96", port, 8)]), metadata=None, edit=_plain_invite)
        self.assertEqual(_status(resp), 488)
        self.assertEqual(self.app.new_calls, [])
        # The request really was plain.
        self.assertNotIn(b"siprec", src.invite_raw)
        self.assertIn(b"Content-Type: application/sdp\r\n", src.invite_raw)

    async def test_plain_invite_accepted_when_configured(self) -> None:
        """
        With C{non_siprec = "accept"} a plain INVITE is recorded like a
        SIPRec session without metadata (C{metadataError: "missing"}).
        """
        self.start(tenant='non_siprec = "accept"\n')
        src = self.src()
        _, port = listen_udp(self)
        ok, session_id = await src.call(sdp_offer([("96", port, 8)]), metadata=None, edit=_plain_invite)
        self.assertEqual([m.direction for m in answer_of(ok).media], ["recvonly"])
        self.assertEqual(self.app.new_calls[0]["metadataError"], "missing")
        self.assertEqual(self.app.new_calls[0]["participants"], [])
        await src.bye()

    async def test_ports_exhausted(self) -> None:
        """
        With every RTP port pair taken, an INVITE gets 503 with Retry-After;
        once the first call ended its ports serve a new call.
        """
        self.start(rtp_pairs=2)
        first = self.src()
        _, pa = listen_udp(self)
        _, pb = listen_udp(self)
        ok, first_id = await first.call(sdp_offer([("96", pa, 8), ("98", pb, 8)]))
        first_ports = sorted(m.port for m in answer_of(ok).media)
        self.assertEqual(first_ports, [self.rtp_base, self.rtp_base + 2])

        second = self.src()
        resp = await second.invite(sdp_offer([("96", pa, 8)]))
        self.assertEqual(_status(resp), 503)
        self.assertEqual(parse_response(resp).headers.get("Retry-After"), "5")
        self.assertEqual(len(self.app.new_calls), 1)

        await first.bye()
        self.assertEqual((await self.session(first_id))["state"], "ended")
        third = self.src()
        ok3, third_id = await third.call(sdp_offer([("96", pa, 8), ("98", pb, 8)]))
        self.assertEqual(sorted(m.port for m in answer_of(ok3).media), first_ports)
        await third.bye()


class OptionsTests(ScenarioCase):
    """
    OPTIONS keep-alives, in and out of the dialog.
    """

    rtp_base = 24400

    async def test_in_dialog_options(self) -> None:
        """
        An in-dialog OPTIONS is answered 200 and the session goes on.
        """
        self.start()
        src = self.src()
        _, pa = listen_udp(self)
        _, session_id = await src.call(sdp_offer([("96", pa, 8)]))
        resp = await src.in_dialog("OPTIONS")
        self.assertEqual(_status(resp), 200)
        self.assertIn("INVITE", parse_response(resp).headers.get("Allow") or "")
        self.assertEqual((await self.session(session_id))["state"], "active")
        await src.bye()

    async def test_out_of_dialog_options(self) -> None:
        """
        An OPTIONS ping outside any dialog is answered 200.
        """
        self.start()
        src = self.src()
        options = (
            "OPTIONS sip:%s SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKopt1;rport\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:sbc@127.0.0.1>;tag=o1\r\n"
            "To: <sip:%s>\r\n"
            "Call-ID: opt-1@127.0.0.1\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n" % (DOMAIN, src.port, DOMAIN)
        ).encode()
        src.send(options)
        self.assertEqual(_status(await src.take(final("OPTIONS"))), 200)


class SessionTimerTests(ScenarioCase):
    """
    Session timers (RFC 4028) when the SRC asks for them.

    The timers' expiry and refresh are tested with a Clock in
    C{tests.siprec.test_srs_timers} (no real waits).
    """

    rtp_base = 24500

    async def test_negotiated(self) -> None:
        """
        C{Session-Expires: 90;refresher=uac} with C{Supported: timer} is
        answered 200 with the same Session-Expires and C{Require: timer}.
        """
        self.start()
        src = self.src()
        _, pa = listen_udp(self)
        ok, _ = await src.call(sdp_offer([("96", pa, 8)]), extra_headers="Session-Expires: 90;refresher=uac\nSupported: timer")
        resp = parse_response(ok)
        self.assertEqual(resp.headers.get("Session-Expires"), "90;refresher=uac")
        self.assertIn("timer", resp.headers.tokens("Require"))
        await src.bye()

    async def test_too_small(self) -> None:
        """
        A Session-Expires below 90 s is answered 422 with C{Min-SE: 90}.
        """
        self.start()
        src = self.src()
        _, pa = listen_udp(self)
        resp = await src.invite(sdp_offer([("96", pa, 8)]), extra_headers="Session-Expires: 60;refresher=uac\nSupported: timer")
        self.assertEqual(_status(resp), 422)
        self.assertEqual(parse_response(resp).headers.get("Min-SE"), "90")
        self.assertEqual(self.app.new_calls, [])

    async def test_hostile_interval(self) -> None:
        """
        A Session-Expires in superscript digits or of 5,000 digits is
        answered 400 (not a 500 from C{int()}), and the service goes on.
        """
        self.start()
        src = self.src()
        _, pa = listen_udp(self)
        for value in ("\u00b2\u00b3", "9" * 5000):
            resp = await src.invite(
                sdp_offer([("96", pa, 8)]), extra_headers="Session-Expires: %s\nSupported: timer" % (value,)
            )
            self.assertEqual(_status(resp), 400, resp[:200])
        self.assertEqual(self.app.new_calls, [])
        ok, _ = await src.call(sdp_offer([("96", pa, 8)]))
        self.assertEqual(_status(ok), 200)
        await src.bye()
