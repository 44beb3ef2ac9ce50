# -*- test-case-name: tests.integration.test_trunk_health -*-
"""
Scripted SRS peers for the trunk health tests (SPEC s13), built on
L{tests.integration.srs_peer.SrsPeer}: each request is timestamped; modes
added here:

- C{"late"}: answers an INVITE 100 and 180, answers a CANCEL 200 but never
  487, and sends 200 OK to the INVITE C{late_after} seconds after the
  CANCEL (after our INVITE transaction gave up);
- OPTIONS answered with C{options_status} (503 marks the target down);
- C{options_auth}: an out-of-dialog OPTIONS without valid digest
  credentials gets 401 (checked with this module's own RFC 2617 code).
"""

from __future__ import annotations

import hashlib
from typing import Any

from twisted.internet import reactor

from aiconnect.sip.message import Request
from tests.integration.srs_peer import NONCE, REALM, SrsPeer, _response_lines

__all__ = ["HealthPeer"]


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


class HealthPeer(SrsPeer):
    """
    An L{SrsPeer} with the behaviours of the module docstring.

    @ivar times: C{(method, reactor time)} of every request received.
    @ivar options_status: the status of out-of-dialog OPTIONS answers.
    @ivar options_auth: whether OPTIONS must carry valid credentials.
    @ivar late_after: seconds between the CANCEL and the late 200 (mode
        C{"late"}).
    """

    def __init__(self, mode: str = "200", transport: str = "udp", **kw: Any) -> None:
        super().__init__(mode, transport, **kw)
        self.times: list[tuple[str, float]] = []
        self.options_status = 200
        self.options_auth = False
        self.options_auth_ok = False
        self.late_after = 1.0
        self._late: Any = None

    def stop(self) -> Any:
        if self._late is not None and self._late.active():
            self._late.cancel()
        return super().stop()

    def first(self, method: str) -> float:
        """
        @return: when the first request of C{method} arrived.
        """
        return next(t for m, t in self.times if m == method)

    def received(self, data: bytes) -> None:
        before = len(self.requests)
        super().received(data)
        if len(self.requests) > before:
            self.times.append((self.requests[-1].method, reactor.seconds()))

    def _answer(self, req: Request) -> None:
        if req.method == "OPTIONS" and req.to_tag is None:
            self._answer_options(req)
            return
        if self.mode == "late" and req.method == "INVITE" and req.to_tag is None:
            if "invite" not in self.dialog:
                self.dialog["invite"] = req
                self._send(_response_lines(req, 100, "Trying", None))
                self._send(_response_lines(req, 180, "Ringing", self.to_tag))
            return
        if self.mode == "late" and req.method == "CANCEL":
            self._send(_response_lines(req, 200, "OK", None))
            invite = self.dialog["invite"]
            self._late = reactor.callLater(self.late_after, self._send_ok, invite)
            return
        super()._answer(req)

    def _answer_options(self, req: Request) -> None:
        if self.options_auth and not self._options_credentials(req):
            challenge = 'Digest realm="%s", nonce="%s", algorithm=MD5, qop="auth"' % (REALM, NONCE)
            self._send(_response_lines(req, 401, "Unauthorized", self.to_tag, ["WWW-Authenticate: " + challenge]))
            return
        reason = {200: "OK", 503: "Service Unavailable"}.get(self.options_status, "Whatever")
        self._send(_response_lines(req, self.options_status, reason, self.to_tag))

    def _options_credentials(self, req: Request) -> bool:
        value = req.headers.get("Authorization") or ""
        if not value.startswith("Digest "):
            return False
        params = {}
        for part in value[7:].split(","):
            k, _, v = part.strip().partition("=")
            params[k.strip()] = v.strip().strip('"')
        ha1 = _md5("%s:%s:%s" % (self.username, REALM, self.password))
        ha2 = _md5("OPTIONS:%s" % params.get("uri", ""))
        expected = _md5(":".join([ha1, NONCE, params.get("nc", ""), params.get("cnonce", ""), "auth", ha2]))
        self.options_auth_ok = params.get("response") == expected and params.get("username") == self.username
        return self.options_auth_ok
