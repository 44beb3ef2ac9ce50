# -*- test-case-name: tests.integration.test_sip_service -*-
"""
The real service (the plugin's service tree on a generated configuration)
over real UDP, TCP and TLS sockets on 127.0.0.1: OPTIONS, the RFC 4475
torture corpus, and the server still answering afterwards.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from aiconnect import config as config_mod
from aiconnect.tap import build_service
from tests.fakes import StreamPeer, connect_stream, listen_udp, raw_call_id, status_of
from tests.integration.helpers import Certificates, free_port, options_request, write_config

DATA = Path(__file__).parent.parent / "data" / "rfc4475"

#: What the running server answers to each RFC 4475 message sent as one
#: datagram: a status code, or None for silence (responses are dropped,
#: RFC 3261 s18.1.2). INVITEs that pass every check reach the SRS, which
#: answers 404: their Request-URI domains are not a tenant of the test
#: configuration.
UDP_TABLE: dict[str, int | None] = {
    "wsinv": 481,  # To already has a tag: no such dialog (s12.2.2)
    "intmeth": 501,
    "esc01": 404,
    "escnull": 405,
    "esc02": 501,
    "lwsdisp": 200,
    "longreq": 404,
    "dblreq": 405,
    "semiuri": 200,
    "transports": 200,
    "mpart01": 405,
    "unreason": None,
    "noreason": None,
    "badinv01": 400,
    "clerr": 400,
    "ncl": 400,
    "scalar02": 400,
    "scalarlg": None,
    "quotbal": 400,
    "ltgtruri": 400,
    "lwsruri": 400,
    "lwsstart": 400,
    "trws": 400,
    "escruri": 400,
    "baddate": 404,
    "regbadct": 400,
    "badaspec": 400,
    "baddn": 400,
    "badvers": 505,
    "mismatch01": 400,
    "mismatch02": 501,
    "bigcode": None,
    "badbranch": 200,
    "insuf": 400,
    "unkscm": 416,
    "novelsc": 416,
    "unksm2": 405,
    "bext01": 420,
    "invut": 415,
    "regaut01": 405,
    "multi01": 400,
    "mcl01": 400,
    "bcast": None,
    "zeromf": 200,
    "cparam01": 405,
    "cparam02": 405,
    "regescrt": 405,
    "sdp01": 406,
    "inv2543": 404,
}

#: Over a stream the framing tests differ: clerr and baddn wait for more
#: octets (no answer); everything else answers as over UDP.
STREAM_SILENT = {"clerr", "baddn"}


class SipServiceTests(TestCase):
    """
    The running service answers OPTIONS and the torture corpus over every
    transport, and keeps answering.
    """

    timeout = 120

    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="aiconnect-svc-"))
        self.certs = Certificates()
        self.udp = free_port()
        self.tls = free_port()
        self.api = free_port()
        path = write_config(self.dir, self.certs, self.udp, self.udp, self.tls, self.api)
        self.cfg = config_mod.load(path)
        self.service = build_service(self.cfg, reactor)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.peer, self.peer_port = listen_udp(self)

    async def _udp_options_ok(self, tag: str) -> None:
        data = options_request("UDP", self.peer_port, "opt-%s@test" % tag, tag)
        waiting = defer.ensureDeferred(self.peer.next_final(3.0, "opt-%s@test" % tag))
        self.peer.send(data, self.udp)
        self.assertEqual(status_of(await waiting), 200)

    async def _connect(self, transport: str) -> StreamPeer:
        if transport == "tcp":
            return await connect_stream(self, self.udp)
        return await connect_stream(self, self.tls, ca_pem=self.certs.ca_pem)

    async def _answered(self, waiting: defer.Deferred[bytes], expected: int | None, name: str) -> None:
        """
        C{waiting} (a final response) fires with status C{expected}, or
        times out when C{expected} is C{None} (silence).
        """
        try:
            got: bytes | None = await waiting
        except defer.TimeoutError:
            got = None
        if expected is None:
            self.assertIsNone(got, name)
        else:
            self.assertIsNotNone(got, name)
            assert got is not None
            self.assertEqual(status_of(got), expected, name)

    async def test_options_over_udp_tcp_tls(self) -> None:
        """
        OPTIONS gets 200 with Allow, Accept and Supported listing siprec over
        UDP, TCP and TLS.
        """
        await self._udp_options_ok("u1")
        for transport in ("tcp", "tls"):
            peer = await self._connect(transport)
            waiting = peer.next_message()
            peer.send(options_request(transport.upper(), 5060, "opt-%s@test" % transport, transport))
            from aiconnect.sip.message import parse

            resp = parse(await waiting, datagram=False)
            self.assertEqual(resp.status, 200)
            self.assertIn("siprec", resp.headers.tokens("Supported"))
            self.assertIn("INVITE", resp.headers.get("Allow") or "")
            self.assertIn("application/sdp", resp.headers.get("Accept") or "")

    async def test_torture_over_udp(self) -> None:
        """
        Every RFC 4475 message as a datagram gets the answer the RFC names
        (or silence), and the server answers OPTIONS after each.
        """
        for name, expected in UDP_TABLE.items():
            data = (DATA / (name + ".sip")).read_bytes()
            call_id = raw_call_id(data)
            waiting = defer.ensureDeferred(self.peer.next_final(0.6 if expected is None else 3.0, call_id))
            self.peer.send(data, self.udp)
            await self._answered(waiting, expected, name)
            # Non-2xx INVITE answers are retransmitted until ACKed; the
            # Call-ID filter above ignores them.
            await self._udp_options_ok("after" + name.replace("-", ""))

    async def test_torture_over_tcp_and_tls(self) -> None:
        """
        Every RFC 4475 message on its own TCP (and a sample over TLS)
        connection gets the same answer; framing errors close the connection.
        """
        for transport, names in (("tcp", list(UDP_TABLE)), ("tls", ["badvers", "bext01", "unkscm", "insuf", "invut"])):
            for name in names:
                expected = None if name in STREAM_SILENT else UDP_TABLE[name]
                peer = await self._connect(transport)
                waiting = defer.ensureDeferred(peer.next_final(0.6 if expected is None else 3.0))
                peer.send((DATA / (name + ".sip")).read_bytes())
                await self._answered(waiting, expected, "%s over %s" % (name, transport))
                if name in ("ncl", "mcl01"):
                    await peer.closed  # framing lost: the server closes
                peer.transport.loseConnection()
        await self._udp_options_ok("final")

    async def test_oversized_and_garbage(self) -> None:
        """
        A 70 KiB request over TCP gets 513 and the connection is closed; a
        60 KiB datagram is within the limit; garbage is dropped; the server
        keeps answering.
        """
        from aiconnect.sip.message import parse

        big = options_request("TCP", 5060, "big@test", "big")
        big = big.replace(b"Content-Length: 0\r\n", b"X-Pad: " + b"a" * 70000 + b"\r\nContent-Length: 0\r\n")
        peer = await self._connect("tcp")
        waiting = peer.next_message()
        peer.send(big)
        self.assertEqual(parse(await waiting, datagram=False).status, 513)
        await peer.closed
        fine = options_request("UDP", self.peer_port, "fine@test", "fine")
        fine = fine.replace(b"Content-Length: 0\r\n", b"X-Pad: " + b"a" * 60000 + b"\r\nContent-Length: 0\r\n")
        waiting = defer.ensureDeferred(self.peer.next_final(3.0, "fine@test"))
        self.peer.send(fine, self.udp)
        self.assertEqual(status_of(await waiting), 200)
        for junk in (b"\x00" * 10, b"\xff\xfe garbage", b"SIP/2.0 200\r\n\r\n", bytes(range(256))):
            self.peer.send(junk, self.udp)
        await self._udp_options_ok("alive")
