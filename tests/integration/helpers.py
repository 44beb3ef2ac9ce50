# -*- test-case-name: tests.integration.test_sip_service,tests.integration.test_inbound,tests.test_tap -*-
"""
Shared pieces of the integration tests: free loopback ports, generated TLS
certificates and configuration files, and an OPTIONS as an SBC sends it.

The raw SIP peers (L{UdpPeer}, L{StreamPeer}, ...) live in L{tests.fakes}
and are re-exported here for the modules that import them from here.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

from aiconnect import tlsutil
from tests.fakes import StreamPeer, StreamPeerFactory, UdpPeer, raw_call_id, status_of

#: Port numbers the integration tests use for RTP ranges: below Linux's
#: ephemeral range (32768-60999), so that no socket a test binds to port 0
#: can take a port a relay under test expects to be free.
RESERVED_RTP = (20000, 27999)


#: The ports L{free_port} handed out lately: never the same twice in a row
#: (the kernel may offer a port again as soon as its probe socket closed,
#: and a test asking for three ports then got one twice).
_RECENT: list[int] = []


def free_port(both: bool = True) -> int:
    """
    A port number free for UDP and TCP on 127.0.0.1 right now, and not one
    of the last 64 it returned.
    """
    for _ in range(500):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        if RESERVED_RTP[0] <= port <= RESERVED_RTP[1]:
            # The integration tests' RTP ranges live here: never hand one
            # of their ports to a SIP/API listener (config refuses overlap).
            t.close()
            continue
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            u.close()
            t.close()
        if port in _RECENT:
            continue
        _RECENT.append(port)
        del _RECENT[:-64]
        return port
    raise RuntimeError("no free port")


class Certificates:
    """
    A test CA and a server certificate for 127.0.0.1/localhost, written to a
    temporary directory.
    """

    def __init__(self, names: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="aiconnect-tls-"))
        ca = tlsutil.generate_ca("aiconnect test CA")
        leaf = tlsutil.generate_certificate(ca, list(names))
        self.ca_pem = ca.certificate
        self.ca = self.dir / "ca.pem"
        self.cert = self.dir / "server.crt"
        self.key = self.dir / "server.key"
        self.ca.write_bytes(ca.certificate)
        self.cert.write_bytes(leaf.certificate)
        self.key.write_bytes(leaf.private_key)
        self.authority = ca


def write_config(
    directory: Path,
    certs: Certificates,
    udp: int,
    tcp: int,
    tls: int,
    api: int,
    extra: str = "",
    app_port: int = 9,
    rtp: tuple[int, int] = (20000, 20999),
    rtp_extra: str = "",
) -> Path:
    """
    Write a loopback configuration using the given ports: the tenant's
    callback goes to C{app_port}, RTP uses the range C{rtp}, C{extra} is
    appended inside the C{[[tenant]]} table (trunks may follow), events
    are retried quickly (0.2 s doubling to 0.5 s), recordings are written
    under C{directory/recordings}, streams give up within seconds.
    """
    path = directory / "aiconnect.toml"
    path.write_text(
        f"""
[sip]
host = "127.0.0.1"
public_address = "127.0.0.1"
private_address = "127.0.0.1"
udp_port = {udp}
tcp_port = {tcp}
tls_port = {tls}

[sip.timers]
t1 = 0.05
t2 = 0.4
t4 = 0.5

[tls]
certificate = "{certs.cert}"
private_key = "{certs.key}"
ca_certificates = "{certs.ca}"
verify_peer = true

[rtp]
host = "127.0.0.1"
port_min = {rtp[0]}
port_max = {rtp[1]}
{rtp_extra}

[api]
host = "127.0.0.1"
port = {api}

[events]
database = "{directory / 'events.sqlite3'}"
retry_initial = 0.2
retry_max = 0.5

[streams]
connect_timeout = 3.0
reconnect_for = 2.0

[recording]
directory = "{directory / 'recordings'}"

[[tenant]]
domain = "customer.example.com"
callback_url = "http://127.0.0.1:{app_port}"
api_tokens = ["t0ken"]
signing_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
{extra}
"""
    )
    return path


def options_request(transport: str, port: int, call_id: str, branch: str) -> bytes:
    """
    An OPTIONS keep-alive as an SBC sends it (RFC 3261 s11.1 shape).
    """
    return (
        f"OPTIONS sip:customer.example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:{port};branch=z9hG4bK{branch};rport\r\n"
        f"Max-Forwards: 70\r\n"
        f"To: <sip:customer.example.com>\r\n"
        f"From: <sip:sbc@127.0.0.1>;tag=opt{branch}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 OPTIONS\r\n"
        f"Accept: application/sdp\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


__all__ = [
    "RESERVED_RTP",
    "Certificates",
    "StreamPeer",
    "StreamPeerFactory",
    "UdpPeer",
    "free_port",
    "options_request",
    "raw_call_id",
    "status_of",
    "write_config",
]
