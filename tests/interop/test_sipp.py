"""
Interoperability with SIPp, the standard SIP traffic generator: SIPp as the
SRC sends SIPRec INVITEs (multipart SDP + RFC 7865 metadata) to the running
service, which forwards each session to SIPp as the SRS. Skipped when the
C{sipp} binary is not installed (Debian package C{sip-tester}).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from twisted.internet import reactor, utils
from twisted.trial.unittest import SkipTest

from tests.integration.helpers import free_port
from tests.integration.test_forward import ORDER, UDP_TRUNK, ForwardTestBase

HERE = Path(__file__).parent
CALLS = 5


class SippTests(ForwardTestBase):
    """
    SIPp SRC -> AI Connect -> SIPp SRS.
    """

    timeout = 90

    async def test_sipp_src_to_sipp_srs(self) -> None:
        """
        Five SIPRec calls from SIPp over UDP complete (INVITE/100/200/ACK/
        BYE) with no failed call on either SIPp, and each gives the four
        events.
        """
        await self._run_calls([], 26000)

    async def test_sipp_src_over_tcp(self) -> None:
        """
        The same with the SRC on TCP (one connection, SIPp -t t1).
        """
        await self._run_calls(["-t", "t1"], 26200)

    async def _run_calls(self, src_transport: list[str], rtp_base: int) -> None:
        sipp = shutil.which("sipp")
        if sipp is None:
            raise SkipTest("sipp is not installed (apt-get install sip-tester)")
        srs_port = free_port()
        trunk = UDP_TRUNK.replace('target = "srs.test"', 'target = "127.0.0.1:%d"' % srs_port)
        self.setup_service(trunk, {"startSIPRecForward": dict(ORDER, codec="PCMA")}, None, rtp_base)
        common = ["-i", "127.0.0.1", "-m", str(CALLS), "-nostdin", "-timeout", "40s", "-timeout_error", "-max_recv_loops", "1000"]
        srs = utils.getProcessOutputAndValue(
            sipp,
            ["-sf", str(HERE / "siprec_srs.xml"), "-p", str(srs_port), "-mp", str(free_port()), *common],
            reactor=reactor,
        )
        src = utils.getProcessOutputAndValue(
            sipp,
            [
                "127.0.0.1:%d" % self.sip_port,
                "-sf", str(HERE / "siprec_src.xml"),
                "-p", str(free_port()),
                "-mp", str(free_port()),
                "-key", "domain", "customer.example.com",
                "-r", "5",
                *src_transport,
                *common,
            ],
            reactor=reactor,
        )
        out, err, code = await src
        self.assertEqual(code, 0, (out[-2000:], err[-2000:]))
        out2, err2, code2 = await srs
        self.assertEqual(code2, 0, (out2[-2000:], err2[-2000:]))
        await self.app.wait_for("events", 4 * CALLS, timeout=20)
        by_session: dict[str, list[str]] = {}
        for e in self.app.events:
            by_session.setdefault(e["sessionId"], []).append(e["event"])
        self.assertEqual(len(by_session), CALLS)
        for names in by_session.values():
            self.assertEqual(names, ["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"])
