# -*- test-case-name: tests.integration.test_provisioning -*-
"""
The harness of the provisioning tests (SPEC s11, issue 13): a configuration
with C{[api] admin_tokens}, the tenant and trunk objects of the API, a
client of the API over real HTTP, an application that checks the signatures
of its own tenant's secret, and an SRC (L{Caller}) that also sends RTP.

The tests' RTP ports are 61200-61399 (L{RTP_LOW}); each class of
L{tests.integration.test_provisioning} takes 28 of them.
"""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import Any

import treq
from twisted.trial.unittest import TestCase

from aiconnect.sip.sdp import parse_sdp
from tests.fakes import listen_udp, rtp_packet
from tests.integration.helpers import Certificates, write_config
from tests.integration.scenario import Src, ack_of_failure, parse_response
from tests.integration.siprec_peer import AppServer, sdp_offer, verify_signature
from tests.integration.srs_peer import SrsPeer

__all__ = [
    "ADMIN",
    "RTP_LOW",
    "Caller",
    "TenantApp",
    "api",
    "new_secret",
    "provisioning_config",
    "srs_peer",
    "tenant_object",
    "trunk_object",
]

#: The admin token of every configuration L{provisioning_config} writes.
ADMIN = "adm1n-t0ken"
#: The first RTP port of these tests (61200-61399).
RTP_LOW = 61200


def new_secret() -> str:
    """
    @return: A fresh signing secret in the C{whsec_<base64>} form.
    """
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def provisioning_config(
    directory: Path, sip: int, api_port: int, app_port: int, rtp: tuple[int, int], extra: str = ""
) -> Path:
    """
    L{write_config}'s loopback configuration (the file tenant
    C{customer.example.com}, token C{t0ken}, its application on
    C{app_port}; C{extra} inside its C{[[tenant]]}) with C{[api]
    admin_tokens = [ADMIN]}, SIP on C{sip} (UDP and TCP), no TLS listener.
    """
    path = write_config(
        directory, Certificates(), sip, sip, 0, api_port, extra="callback_timeout = 3.0\n" + extra, app_port=app_port, rtp=rtp
    )
    text = path.read_text()
    assert text.count("\n[api]\n") == 1
    path.write_text(text.replace("\n[api]\n", '\n[api]\nadmin_tokens = ["%s"]\n' % ADMIN))
    return path


def trunk_object(srs: SrsPeer, **more: Any) -> dict[str, Any]:
    """
    @return: A trunk object (SPEC s11) to C{srs} over UDP, without C{match}
        (the path names it).
    """
    return dict({"target": "127.0.0.1:%d" % srs.port.getHost().port, "transport": "udp"}, **more)


def tenant_object(domain: str, app: TenantApp, token: str, trunks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """
    @return: A tenant object (SPEC s11, the keys of SPEC s7) whose
        callbacks go to C{app}, signed with its secret.
    """
    return {
        "domain": domain,
        "callback_url": "http://127.0.0.1:%d" % app.port.getHost().port,
        "callback_timeout": 3.0,
        "api_tokens": [token],
        "signing_secret": app.secret,
        "trunks": trunks or [],
    }


async def api(port: int, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    """
    One request to the REST API on C{port} with a bearer C{token}.

    @return: The status and the decoded JSON answer.
    """
    kw: dict[str, Any] = {"headers": {"Authorization": "Bearer " + token}, "persistent": False}
    if body is not None:
        kw["data"] = json.dumps(body).encode()
        kw["headers"]["Content-Type"] = "application/json"
    resp = await treq.request(method, "http://127.0.0.1:%d%s" % (port, path), **kw)
    text = await resp.content()
    return resp.code, json.loads(text) if text else None


class TenantApp(AppServer):
    """
    A tenant's application (L{AppServer}) that checks every request against
    its own tenant's signing secret, and keeps the requests' signature
    headers and bodies to be checked again by the test.

    @ivar secret: The tenant's C{signing_secret}.
    @ivar signed: C{(headers, body)} of every request received.
    """

    def __init__(self, answer: dict[str, Any] | None = None, secret: str | None = None) -> None:
        super().__init__(answer)
        self.secret = secret or new_secret()
        self.signed: list[tuple[dict[str, str], bytes]] = []

    def render_POST(self, request: Any) -> bytes:
        body = request.content.read()
        headers = {k.decode().lower(): v[0].decode() for k, v in request.requestHeaders.getAllRawHeaders()}
        self.signed.append((headers, body))
        if not verify_signature(self.secret, headers, body):
            self.bad_signatures += 1
            request.setResponseCode(401)
            return b"bad signature"
        return self._record(request.path, json.loads(body), request)

    def _record(self, path: bytes, data: dict[str, Any], request: Any) -> bytes:
        if path == b"/newCall":
            self.new_calls.append(data)
            request.setHeader(b"content-type", b"application/json")
            return json.dumps(self.answer).encode()
        self.events.append(data)
        return b""

    def start(self, case: TestCase) -> TenantApp:
        """
        Listen on a free port until the end of C{case}.
        """
        self.listen()
        case.addCleanup(self.port.stopListening)
        return self


def srs_peer(case: TestCase, mode: str = "200") -> SrsPeer:
    """
    A scripted SRS on UDP, stopped after C{case}.
    """
    peer = SrsPeer(mode)
    peer.listen_udp()
    case.addCleanup(peer.stop)
    return peer


class Caller(Src):
    """
    An SRC call (L{Src}: raw SIP over UDP to C{case.sip_port}) with two
    PCMA streams whose RTP it sends from the ports its offer names.
    """

    def __init__(self, case: Any) -> None:
        super().__init__(case)
        self.media = [listen_udp(case) for _ in range(2)]
        self.seq = 0

    async def start(self, domain: str) -> int:
        """
        Send the INVITE for C{domain}; ACK a 200.

        @return: The status of the final response.
        """
        offer = sdp_offer([("96", self.media[0][1], 8), ("98", self.media[1][1], 8)])
        answer = await self.invite(offer, domain=domain)
        response = parse_response(answer)
        if response.status == 200:
            self.ack(101)
        else:
            self.send(ack_of_failure(self.invite_raw, str(response.headers.get("To"))))
        return response.status

    def answered_ports(self) -> list[int]:
        """
        The port of each stream in the service's answer (0: rejected).
        """
        return [m.port for m in parse_sdp(parse_response(self.ok_raw).body).media]

    def send_rtp(self, count: int = 3) -> None:
        """
        Send C{count} RTP packets on each stream the answer accepted.
        """
        for _ in range(count):
            for (sink, _port), ours in zip(self.media, self.answered_ports()):
                if ours:
                    sink.transport.write(rtp_packet(self.seq, 160 * self.seq, 0x5157, 8), ("127.0.0.1", ours))
            self.seq += 1

    def requests(self) -> list[bytes]:
        """
        Every request the service sent this SRC (BYE, re-INVITE ...).
        """
        return self.matching(lambda m: not m.startswith(b"SIP/2.0 "))
