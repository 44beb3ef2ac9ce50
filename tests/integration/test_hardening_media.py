# -*- test-case-name: tests.integration.test_hardening_media -*-
"""
Media protection limits end to end (SPEC s12): the real service, a raw UDP
SIPRec SRC (the helpers of L{tests.integration.scenario}),
real RTP sockets on 127.0.0.1.

  - C{[limits] max_streams_per_call} (default 4): an INVITE offering more
    m-lines gets ports for the first 4 and port 0 (RFC 3264 s6) for the
    rest, which book no ports; a re-INVITE never takes the session over
    the cap; every such m-line is counted (C{/metrics}:
    C{aiconnect_rtp_streams_rejected_limit_total}).
  - C{[rtp] media_timeout} per stream: a stream silent that long while
    another carries media is closed and its ports released; a later offer
    naming it gets it fresh ports; the session ends (C{mediaTimeout}) only
    when every stream is silent.
  - Out of file descriptors: the INVITE gets 503 "Out of file descriptors"
    (not "No RTP ports left"), in a service process whose C{RLIMIT_NOFILE}
    was lowered.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import treq
from twisted.internet import defer, reactor, task
from twisted.internet import protocol as protocol_mod
from twisted.trial.unittest import SynchronousTestCase, TestCase

from aiconnect.siprec import srs as srs_mod
from tests.fakes import listen_udp, rtp_packet, wait_until
from tests.integration.helpers import Certificates, write_config
from tests.integration.siprec_peer import sdp_offer
from tests.integration.scenario import (
    ScenarioCase,
    Src,
    _free_ports,
    _status,
    answer_of,
    parse_response,
    request,
)

ROOT = Path(__file__).resolve().parents[2]


def offer_of(n: int, version: int, first_port: int = 41000) -> bytes:
    """
    An SRC offer with C{n} PCMA m-lines labelled C{s0}, C{s1}, ...
    """
    return sdp_offer([("s%d" % i, first_port + 2 * i, 8) for i in range(n)], version=version)


class AssignWithLimitTests(SynchronousTestCase):
    """
    L{srs_mod.assign_relay_streams} with a limit: the pure rule behind
    L{StreamLimitTests}.
    """

    def test_first_offer(self) -> None:
        """
        The first C{limit} acceptable m-lines get relay streams, the rest
        none; unacceptable m-lines never count.
        """
        assign = srs_mod.assign_relay_streams
        self.assertEqual(assign([True] * 6, [], 4, limit=4), [0, 1, 2, 3, None, None])
        self.assertEqual(assign([False, True, True, True], [], 2, limit=2), [None, 0, 1, None])

    def test_reoffer(self) -> None:
        """
        A re-offer keeps its relay streams and reuses those of disabled
        m-lines, but adds none past the limit (nor any when a lowered limit
        is already reached).
        """
        assign = srs_mod.assign_relay_streams
        self.assertEqual(assign([True] * 5, [0, 1, 2], 3, limit=4), [0, 1, 2, 3, None])
        self.assertEqual(assign([True, False, True, True], [0, 1, 2], 3, limit=3), [0, None, 2, 1])
        self.assertEqual(assign([True] * 4, [0, 1, 2], 3, limit=2), [0, 1, 2, None])
        self.assertEqual(assign([True] * 4, [0, 1], 2, limit=None), [0, 1, 2, 3])


class StreamLimitTests(ScenarioCase):
    """
    At most C{max_streams_per_call} streams get ports, first INVITE or
    re-INVITE.
    """

    rtp_base = 26640

    def pairs_in_use(self) -> int:
        stats = self.service.relay.stats()
        return int(stats["port_pairs_total"] - stats["port_pairs_free"])

    async def metric(self, name: str) -> float:
        resp = await treq.get("http://127.0.0.1:%d/metrics" % self.api_port, persistent=False)
        text = (await resp.content()).decode()
        match = re.search(r"(?m)^%s (\S+)$" % name, text)
        self.assertIsNotNone(match, name)
        assert match is not None
        return float(match.group(1))

    async def test_ten_streams_capped(self) -> None:
        """
        10 m-lines: the 200 OK has 4 streams with ports and 6 with port 0,
        the relay holds 4 pairs; re-INVITEs with 12 m-lines keep the 4
        (one disabled m-line's port goes to the first new one), never more;
        the rejections are counted on /metrics.
        """
        self.start(rtp_pairs=20)
        src = self.src()
        ok, session_id = await src.call(offer_of(10, 1))
        ports = [m.port for m in answer_of(ok).media]
        self.assertEqual(len(ports), 10)
        self.assertTrue(all(ports[:4]), ports)
        self.assertEqual(ports[4:], [0] * 6)
        self.assertEqual(len(set(ports[:4])), 4)
        self.assertEqual(self.pairs_in_use(), 4)
        self.assertEqual(self.service.relay.stats()["streams_rejected_limit"], 6)
        body = await self.session(session_id)
        self.assertEqual([s["label"] for s in body["streams"]], ["s0", "s1", "s2", "s3"])
        self.assertEqual(len(body["media"]["streams"]), 4)

        resp = await src.in_dialog("INVITE", offer_of(12, 2), "application/sdp")
        self.assertEqual(_status(resp), 200)
        self.assertEqual([m.port for m in answer_of(resp).media], ports[:4] + [0] * 8)
        self.assertEqual(self.pairs_in_use(), 4)

        # s1 disabled (port 0): its port serves s4, the first m-line over.
        offer = offer_of(12, 3).replace(b"m=audio 41002 ", b"m=audio 0 ")
        resp = await src.in_dialog("INVITE", offer, "application/sdp")
        self.assertEqual(_status(resp), 200)
        self.assertEqual([m.port for m in answer_of(resp).media], [ports[0], 0, ports[2], ports[3], ports[1]] + [0] * 7)
        self.assertEqual(self.pairs_in_use(), 4)
        self.assertEqual(len((await self.session(session_id))["media"]["streams"]), 4)
        self.assertEqual(await self.metric("aiconnect_rtp_streams_rejected_limit_total"), 6 + 8 + 7)
        await src.bye()
        self.assertEqual(self.pairs_in_use(), 0)

    async def test_limit_configured(self) -> None:
        """
        C{[limits] max_streams_per_call = 1}: a 2-stream INVITE gets one
        port; a re-INVITE adding a stream gets port 0 for it.
        """
        self.start(rtp_pairs=20, rtp="\n[limits]\nmax_streams_per_call = 1\n")
        src = self.src()
        ok, _ = await src.call(offer_of(2, 1))
        ports = [m.port for m in answer_of(ok).media]
        self.assertNotEqual(ports[0], 0)
        self.assertEqual(ports[1], 0)
        resp = await src.in_dialog("INVITE", offer_of(3, 2), "application/sdp")
        self.assertEqual([m.port for m in answer_of(resp).media], [ports[0], 0, 0])
        self.assertEqual(self.pairs_in_use(), 1)
        await src.bye()


class PerStreamTimeoutTests(ScenarioCase):
    """
    C{[rtp] media_timeout} applies to each stream the SRC sends on.
    """

    rtp_base = 26760

    async def test_silent_stream_closed(self) -> None:
        """
        With C{media_timeout = 1}, RTP on stream A only: stream B is closed
        (its port released, reported in the session's media stats) while
        the session stays active; a re-INVITE gives B a fresh port that
        relays again; once both are silent the service sends BYE and
        reports C{mediaTimeout}.
        """
        self.start(rtp="media_timeout = 1.0\n")
        src = self.src()
        rtp_a, pa = listen_udp(self)
        rtp_b, pb = listen_udp(self)
        offer = sdp_offer([("96", pa, 8), ("98", pb, 8)])
        ok, session_id = await src.call(offer)
        port_a, port_b = [m.port for m in answer_of(ok).media]
        seq = iter(range(100000))

        def send_a() -> None:
            n = next(seq)
            rtp_a.transport.write(rtp_packet(n, 160 * n, 0xA, 8, b"\xd5" * 160), ("127.0.0.1", port_a))

        sender = task.LoopingCall(send_a)
        sender.start(0.1)
        self.addCleanup(lambda: sender.running and sender.stop())
        relay = self.service.relay

        await wait_until(lambda: relay.pool.in_use() == [port_a], 5, interval=0.05)
        streams = (await self.session(session_id))["media"]["streams"]
        self.assertEqual([s["timed_out"] for s in streams], [False, True])
        self.assertEqual(relay.stats()["streams_timed_out"], 1)
        self.assertEqual((await self.session(session_id))["state"], "active")
        self.assertEqual(src.matching(request("BYE")), [])

        again = offer.replace(b"2890844526 2890844526", b"2890844526 2890844527")
        resp = await src.in_dialog("INVITE", again, "application/sdp")
        self.assertEqual(_status(resp), 200)
        new_a, new_b = [m.port for m in answer_of(resp).media]
        self.assertEqual(new_a, port_a)
        self.assertNotIn(new_b, (0, port_b))
        self.assertEqual(sorted(relay.pool.in_use()), sorted([port_a, new_b]))
        for n in range(3):
            rtp_b.transport.write(rtp_packet(n, 160 * n, 0xB, 8, b"\xd5" * 160), ("127.0.0.1", new_b))

        async def b_counted() -> bool:
            return (await self.session(session_id))["media"]["streams"][1]["packets_in"] == 3

        await wait_until(b_counted, interval=0.05)
        sender.stop()
        bye = await src.take(request("BYE"), timeout=5)
        src.answer(bye)
        events = await self.events_for(session_id, 2)
        self.assertEqual(events[1]["reason"], "mediaTimeout")
        self.assertEqual(relay.pool.in_use(), [])


#: The service in a child process; on SIGUSR1 it lowers its RLIMIT_NOFILE
#: so that one more socket can be created, no more.
_CHILD = """
import os, resource, signal, sys
from twisted.internet import reactor
from twisted.logger import globalLogBeginner, textFileLogObserver
from aiconnect import config
from aiconnect.tap import build_service

globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
service = build_service(config.load(sys.argv[1]), reactor)
service.startService()

def lower():
    n_open = len(os.listdir("/proc/self/fd"))  # counts listdir's own fd
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (n_open, hard))
    print("LOWERED", flush=True)

signal.signal(signal.SIGUSR1, lambda *_: reactor.callFromThread(lower))
reactor.callWhenRunning(reactor.callLater, 0.3, print, "READY", flush=True)
reactor.run()
"""


class _Child(protocol_mod.ProcessProtocol):
    """
    Collects the child's output; fires C{ended} when it exits.
    """

    def __init__(self) -> None:
        self.output = b""
        self.ended: defer.Deferred[None] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


class OutOfDescriptorsTests(TestCase):
    """
    A service process out of file descriptors answers an INVITE with 503
    "Out of file descriptors" and logs what to raise.
    """

    timeout = 30

    async def wait_output(self, child: _Child, marker: bytes, timeout: float = 10.0) -> None:
        """
        Wait until the child printed C{marker}; fail with its output if it
        does not within C{timeout} seconds.
        """

        def seen() -> str:
            return "%r from the service; output:\n%s" % (marker, child.output.decode(errors="replace"))

        await wait_until(lambda: marker in child.output, timeout, interval=0.05, what=seen)

    async def test_rlimit_nofile(self) -> None:
        """
        After the child lowered RLIMIT_NOFILE, a SIPRec INVITE gets 503 "Out
        of file descriptors" with Retry-After (the RTP socket pair could
        not be created), and the log names LimitNOFILE.
        """
        if not os.path.isdir("/proc/self/fd"):
            raise self.skipTest("needs /proc/self/fd")
        directory = Path(tempfile.mkdtemp(prefix="aiconnect-fd-"))
        self.sip_port, tls_port, api_port = _free_ports(3)
        path = write_config(directory, Certificates(), self.sip_port, self.sip_port, tls_port, api_port, rtp=(26880, 26919))
        child = _Child()
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        process = reactor.spawnProcess(child, sys.executable, [sys.executable, "-c", _CHILD, str(path)], env=env, path=str(ROOT))

        async def stop() -> None:
            if not child.ended.called:
                process.signalProcess("KILL")
            await child.ended

        self.addCleanup(stop)
        await self.wait_output(child, b"READY")
        os.kill(process.pid, signal.SIGUSR1)
        await self.wait_output(child, b"LOWERED")
        src = Src(self)  # type: ignore[arg-type]
        resp = await src.invite(sdp_offer([("96", 41000, 8)]))
        self.assertEqual(_status(resp), 503, resp[:200])
        self.assertEqual(parse_response(resp).reason, "Out of file descriptors")
        self.assertEqual(parse_response(resp).headers.get("Retry-After"), "5")
        await self.wait_output(child, b"LimitNOFILE")
