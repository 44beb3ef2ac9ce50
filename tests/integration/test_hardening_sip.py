# -*- test-case-name: tests.integration.test_hardening_sip -*-
"""
The SIP transport's protections over real sockets on 127.0.0.1, against the
service started in-process with small C{[limits]}: no reflection through a
client-written Via (UDP and TCP), C{max_connections}, the TLS handshake,
header and idle timeouts, and malformed input that once escaped as
unhandled exceptions (a 4,301-digit CSeq, a stateless 400 too big for a
datagram, a stray response with an unreadable To).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from aiconnect import config as config_mod
from aiconnect.tap import build_service
from tests.fakes import StreamPeer, connect_stream, listen_udp, pause, status_of, wait_until
from tests.integration.helpers import Certificates, free_port, options_request, write_config
from tests.integration.siprec_peer import sdp_offer, siprec_invite

LIMITS = """
[limits]
max_connections = 3
tls_handshake_timeout = 0.3
header_timeout = 0.5
idle_timeout = 1.0
"""


class _Victim(Protocol):
    """
    A connection to the victim listener: remembered, then closed.
    """

    def connectionMade(self) -> None:
        """
        Count it.
        """
        self.factory.connections += 1  # type: ignore[attr-defined]
        self.transport.loseConnection()  # type: ignore[union-attr]


class _VictimFactory(Factory):
    """
    A TCP listener that must never be contacted.
    """

    protocol = _Victim
    connections = 0


class _Silent(Protocol):
    """
    An HTTP server that never answers (the newCall callback hangs).
    """


#: A SIP TCP listener in a process allowed two more file descriptors than
#: it has open: it prints its port, then runs until an accept failed for
#: lack of descriptors (or 5 s), then prints its counters.
EMFILE_CHILD = """
import os, resource, sys
from twisted.internet import reactor, task
from twisted.logger import globalLogBeginner, textFileLogObserver
from aiconnect.sip.transport import SipTransport

globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)
transport = SipTransport(reactor)
port = transport.listen_tcp(0)
used = max(int(fd) for fd in os.listdir("/proc/self/fd"))
resource.setrlimit(resource.RLIMIT_NOFILE, (used + 3, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
print("PORT %d" % port.getHost().port, flush=True)

def check():
    if transport.stats["accept_fd_exhausted"] or reactor.seconds() > deadline:
        reactor.stop()

deadline = reactor.seconds() + 5
task.LoopingCall(check).start(0.05)
reactor.run()
print("STATS %d" % (transport.stats["accept_fd_exhausted"],), flush=True)
"""


class FileDescriptorTests(SynchronousTestCase):
    """
    C{EMFILE} on C{accept()} in a real process.
    """

    if not os.path.isdir("/proc/self/fd"):
        skip = "needs Linux's /proc/self/fd"

    def test_emfile_reported(self) -> None:
        """
        When the process runs out of file descriptors, accepting a SIP TCP
        connection fails; the log says so at error level, naming
        C{LimitNOFILE}, and C{accept_fd_exhausted} counts it.
        """
        child = subprocess.Popen(
            [sys.executable, "-c", EMFILE_CHILD], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.addCleanup(child.kill)
        assert child.stdout is not None
        seen = []
        while not (seen and seen[-1].startswith("PORT ")):
            line = child.stdout.readline()
            self.assertTrue(line, "".join(seen))
            seen.append(line)
        port = int(seen[-1].split()[1])
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(8)]
        self.addCleanup(lambda: [c.close() for c in clients])
        output, _ = child.communicate(timeout=20)
        output = "".join(seen) + output
        stats = [line for line in output.splitlines() if line.startswith("STATS ")]
        self.assertEqual(len(stats), 1, output)
        self.assertGreaterEqual(int(stats[0].split()[1]), 1, output)
        self.assertIn("out of file descriptors", output)
        self.assertIn("LimitNOFILE", output)
        self.assertEqual(output.count("out of file descriptors"), 1, output)


class HardeningTests(TestCase):
    """
    The service with C{max_connections = 3}, C{tls_handshake_timeout = 0.3},
    C{header_timeout = 0.5} and C{idle_timeout = 1.0}.
    """

    timeout = 30

    def setUp(self) -> None:
        """
        Start the service; a UDP peer; a log observer keeping critical and
        error events.
        """
        self.critical: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_level") in (LogLevel.critical, LogLevel.error):
                self.critical.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        app = reactor.listenTCP(0, Factory.forProtocol(_Silent), interface="127.0.0.1")
        self.addCleanup(app.stopListening)
        directory = Path(tempfile.mkdtemp(prefix="aiconnect-hard-"))
        self.certs = Certificates()
        self.sip, self.tls, api = free_port(), free_port(), free_port()
        path = write_config(
            directory,
            self.certs,
            self.sip,
            self.sip,
            self.tls,
            api,
            extra="callback_timeout = 0.3",
            app_port=app.getHost().port,
            rtp_extra=LIMITS,
        )
        self.cfg = config_mod.load(path)
        self.service = build_service(self.cfg, reactor)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.stats = self.service.getServiceNamed("sip").transport.stats
        self.peer, self.peer_port = listen_udp(self)

    async def options_ok(self) -> None:
        """
        The server still answers an OPTIONS over UDP with 200.
        """
        call_id = "alive-%s" % (secrets.token_hex(4),)
        waiting = defer.ensureDeferred(self.peer.next_final(3.0, call_id))
        self.peer.send(options_request("UDP", self.peer_port, call_id, secrets.token_hex(4)), self.sip)
        self.assertEqual(status_of(await waiting), 200)

    async def closed_within(self, peer: StreamPeer, seconds: float) -> float:
        """
        Wait for the server to close C{peer}'s connection.

        @return: The seconds it took.
        """
        start = time.monotonic()
        await peer.closed.addTimeout(seconds, reactor)
        return time.monotonic() - start

    def no_critical(self) -> None:
        """
        Nothing was logged at error or critical level.
        """
        self.assertEqual([e.get("log_format") for e in self.critical], [])

    # -- item 1: reflection through received/rport ---------------------------

    async def test_udp_received_not_followed(self) -> None:
        """
        A client-written C{received=127.0.0.9} is not where the answer goes:
        the sender gets it, a listener at 127.0.0.9 gets nothing.
        """
        victim, _ = listen_udp(self, "127.0.0.9", self.peer_port)
        data = options_request("UDP", self.peer_port, "refl1", "r1").replace(b";rport", b";received=127.0.0.9")
        waiting = defer.ensureDeferred(self.peer.next_final(3.0, "refl1"))
        self.peer.send(data, self.sip)
        self.assertEqual(status_of(await waiting), 200)
        await pause(0.3)
        self.assertEqual(victim.received, [])

    async def test_udp_rport_value_not_followed(self) -> None:
        """
        An INVITE whose Via names a victim port on 127.0.0.1 (sent-by and
        C{rport=}) is answered, with all its retransmissions, to the
        sender's port only.
        """
        victim, victim_port = listen_udp(self)
        data, ids = siprec_invite("udp", victim_port, "unknown.example.org", sdp_offer([("1", 20000, 0)]), None)
        data = data.replace(b";rport", b";received=127.0.0.1;rport=%d" % (victim_port,))
        waiting = defer.ensureDeferred(self.peer.next_final(3.0, ids["call_id"]))
        self.peer.send(data, self.sip)
        self.assertGreaterEqual(status_of(await waiting), 400)
        await pause(0.5)  # T1 = 0.05: several retransmissions
        self.assertGreater(len(self.peer.received), 1)
        self.assertEqual(victim.received, [])

    async def test_tcp_no_connection_to_via(self) -> None:
        """
        Over TCP, a request whose connection closed before its answer: the
        server opens no connection to the Via's address (a victim listener
        sees none) and counts the dropped response.
        """
        victim = _VictimFactory()
        listener = reactor.listenTCP(0, victim, interface="127.0.0.1")
        self.addCleanup(listener.stopListening)
        victim_port = listener.getHost().port
        data, _ = siprec_invite("tcp", victim_port, "customer.example.com", sdp_offer([("1", 20000, 0)]), None)
        data = data.replace(b";rport", b"")
        peer = await connect_stream(self, self.sip)
        peer.send(data)
        peer.transport.loseConnection()
        await wait_until(lambda: self.stats.get("responses_connection_gone", 0) >= 1 or victim.connections > 0, 10.0)
        await pause(0.3)
        self.assertEqual(victim.connections, 0)
        self.assertEqual(self.stats["responses_connection_gone"], 1)

    # -- item 4: connection limits and timers -------------------------------

    async def test_max_connections(self) -> None:
        """
        With C{max_connections = 3} the 4th TCP connection is closed by the
        server; the first three still work.
        """
        peers = [await connect_stream(self, self.sip) for _ in range(3)]
        fourth = await connect_stream(self, self.sip)
        await self.closed_within(fourth, 2.0)
        self.assertEqual(self.stats["connections_refused"], 1)
        for i, peer in enumerate(peers):
            waiting = peer.next_message(2.0)
            peer.send(options_request("TCP", 5060, "mc%d" % (i,), "mc%d" % (i,)))
            self.assertEqual(status_of(await waiting), 200)
        self.assertFalse(any(p.closed.called for p in peers))

    async def test_tls_handshake_timeout(self) -> None:
        """
        A TCP connection to the TLS port that never sends a ClientHello is
        closed after C{tls_handshake_timeout} (0.3 s).
        """
        peer = await connect_stream(self, self.tls)
        took = await self.closed_within(peer, 3.0)
        self.assertGreaterEqual(took, 0.25)
        self.assertEqual(self.stats["tls_handshake_timeouts"], 1)

    async def test_tls_handshaken_stays(self) -> None:
        """
        A TLS connection that completed its handshake is not closed by that
        timer: it answers OPTIONS after twice C{tls_handshake_timeout}.
        """
        peer = await connect_stream(self, self.tls, ca_pem=self.certs.ca_pem)
        await pause(0.6)
        waiting = peer.next_message(2.0)
        peer.send(options_request("TLS", 5061, "tls-ok", "tlsok"))
        self.assertEqual(status_of(await waiting), 200)
        self.assertEqual(self.stats["tls_handshake_timeouts"], 0)

    async def test_dripped_header_closed(self) -> None:
        """
        A header dripped one octet every 0.1 s that never completes is
        closed after C{header_timeout} (0.5 s), before C{idle_timeout}.
        """
        peer = await connect_stream(self, self.sip)
        data = options_request("TCP", 5060, "drip", "drip")
        start = time.monotonic()
        for i in range(40):
            if peer.closed.called:
                break
            peer.send(data[i : i + 1])
            await pause(0.1)
        self.assertTrue(peer.closed.called)
        self.assertLess(time.monotonic() - start, 1.0)
        self.assertEqual(self.stats["header_timeouts"], 1)

    async def test_pings_do_not_keep_alive(self) -> None:
        """
        A connection sending only CRLFCRLF pings (every 0.2 s) is still
        closed after C{idle_timeout} (1 s).
        """
        peer = await connect_stream(self, self.sip)
        start = time.monotonic()
        while not peer.closed.called and time.monotonic() - start < 4.0:
            peer.send(b"\r\n\r\n")
            await pause(0.2)
        self.assertTrue(peer.closed.called)
        self.assertEqual(self.stats["idle_timeouts"], 1)

    # -- item 12: malformed input -------------------------------------------

    async def test_cseq_4301_digits(self) -> None:
        """
        A CSeq of 4,301 digits (past C{int()}'s limit) gets a stateless 400
        over UDP; nothing is logged as an error; the server still answers.
        """
        data = options_request("UDP", self.peer_port, "bigcseq", "bc").replace(b"CSeq: 1 ", b"CSeq: " + b"9" * 4301 + b" ")
        waiting = defer.ensureDeferred(self.peer.next_final(3.0, "bigcseq"))
        self.peer.send(data, self.sip)
        self.assertEqual(status_of(await waiting), 400)
        await self.options_ok()
        self.no_critical()

    async def test_oversized_stateless_400(self) -> None:
        """
        A malformed request whose 400 (compact headers expanded) would not
        fit a datagram: counted as a send failure, no unhandled error, the
        server still answers.
        """
        line = "v: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK%%04d\r\n" % (self.peer_port,)
        count = 64800 // len(line % 0)
        vias = "".join(line % i for i in range(count))
        data = (
            "OPTIONS sip:customer.example.com SIP/2.0\r\n" + vias + "f: <sip:a@127.0.0.1>;tag=1\r\n"
            "t: <sip:customer.example.com>\r\ni: big400\r\nCSeq: 1 OPTIONS\r\nBad Line\r\nl: 0\r\n\r\n"
        ).encode()
        self.assertLess(len(data), 65507)
        self.assertGreater(len(data) + 2 * count, 65507)  # "v:" -> "Via:"
        self.peer.send(data, self.sip)
        await wait_until(lambda: self.stats["send_failures"] >= 1)
        await self.options_ok()
        self.no_critical()

    async def test_malformed_stray_response(self) -> None:
        """
        A stray 200 to INVITE with an unreadable To is dropped with one
        info line, no traceback at critical level.
        """
        data = (
            "SIP/2.0 200 OK\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKstray1\r\n"
            "To: garbage <<\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nCall-ID: stray1\r\n"
            "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n" % (self.sip,)
        ).encode()
        dropped = self.stats["dropped_responses"]
        self.peer.send(data, self.sip)
        await wait_until(lambda: self.stats["dropped_responses"] > dropped)
        await self.options_ok()
        self.no_critical()
