# -*- test-case-name: tests.sip.test_ua,tests.integration.test_prack -*-
"""
Reliable provisional responses on the UAS side (RFC 3262, C{100rel} and
PRACK), and the retransmission timer they share with 2xx responses (RFC
3261 s13.3.1.4).

L{Retransmission} sends a response again at T1, doubling, until it is
cancelled, and gives up at a deadline; L{ReliableProvisional} is one
reliable provisional response of ours (its C{RSeq}) and tells whether a
PRACK's C{RAck} acknowledges it (RFC 3262 s3, s7.2).  The UA core
(L{aiconnect.sip.ua}) holds one per INVITE and answers the PRACKs.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any, Callable

from aiconnect.errors import RemoteSipError
from aiconnect.sip.dialog import DialogId
from aiconnect.sip.message import Request, make_response

__all__ = [
    "EarlyDialogs",
    "MAX_RSEQ",
    "OPTION_TAG",
    "ReliableProvisional",
    "Retransmission",
    "first_rseq",
    "parse_rack",
    "wants_100rel",
]

#: The option tag of reliable provisional responses (RFC 3262 s8).
OPTION_TAG = "100rel"
#: The largest RSeq (RFC 3262 s3: 1 to 2**31 - 1 for the first).
MAX_RSEQ = 2**32 - 1

#: RFC 3262 s7.2: RAck = "RAck" HCOLON response-num LWS CSeq-num LWS Method;
#: response-num and CSeq-num are 1*DIGIT.
_RACK_RE = re.compile(r"\s*(\d{1,10})\s+(\d{1,10})\s+([A-Za-z0-9.!%*_+`'~\-]+)\s*\Z")


def wants_100rel(request: Request) -> bool:
    """
    Whether the UAC asks for reliable provisional responses: C{100rel} in
    its C{Require} or C{Supported} (RFC 3262 s3: a UAS MAY send them
    reliably when supported, MUST when required).
    """
    headers = request.headers
    return OPTION_TAG in headers.tokens("Require") or OPTION_TAG in headers.tokens("Supported")


def first_rseq() -> int:
    """
    The RSeq of the first reliable provisional response of an INVITE:
    chosen uniformly between 1 and 2**31 - 1 (RFC 3262 s3).
    """
    return secrets.randbelow(2**31 - 1) + 1


def parse_rack(value: str | None) -> tuple[int, int, str]:
    """
    Parse a C{RAck} header (RFC 3262 s7.2).

    @return: (response number, CSeq number, method).
    @raise RemoteSipError: (400) when absent or malformed.
    """
    match = _RACK_RE.match(value or "")
    if match is None:
        raise RemoteSipError("Bad Request (RAck)", 400)
    rseq, cseq, method = int(match.group(1)), int(match.group(2)), match.group(3)
    if rseq > MAX_RSEQ or cseq > MAX_RSEQ:
        raise RemoteSipError("Bad Request (RAck)", 400)
    return rseq, cseq, method


@dataclass(slots=True)
class ReliableProvisional:
    """
    One reliable provisional response we sent (RFC 3262 s3).

    @ivar rseq: its C{RSeq}.
    @ivar cseq: the CSeq number of the INVITE it answers.
    @ivar acknowledged: whether its PRACK arrived.
    @ivar timer: the L{Retransmission} sending it until then.
    """

    rseq: int
    cseq: int
    acknowledged: bool = False
    timer: Retransmission | None = None

    @classmethod
    def after(cls, last: ReliableProvisional | None, cseq: int) -> ReliableProvisional | None:
        """
        The next reliable provisional response of an INVITE: RSeq random
        for the first, one more than the last otherwise; C{None} while the
        last one is unacknowledged (RFC 3262 s3: one at a time).

        @param last: the INVITE's last one, or C{None}.
        @param cseq: the INVITE's CSeq number.
        """
        if last is None:
            return cls(first_rseq(), cseq)
        if not last.acknowledged:
            return None
        return cls(last.rseq + 1, cseq)

    def headers(self, contact: str, allow: str) -> list[tuple[str, str]]:
        """
        The headers that make a provisional response reliable (RFC 3262
        s3): C{Require: 100rel}, C{RSeq}, and the Contact and Allow of the
        early dialog.
        """
        return [("Require", OPTION_TAG), ("RSeq", str(self.rseq)), ("Contact", contact), ("Allow", allow)]

    def acknowledge(self, rack: tuple[int, int, str]) -> bool:
        """
        A PRACK's C{RAck} (L{parse_rack}): whether it acknowledges this
        response, unacknowledged so far (the same RSeq, the INVITE's CSeq
        number and method, RFC 3262 s3, s4); if so it is no longer
        retransmitted.
        """
        rseq, cseq, method = rack
        if self.acknowledged or (rseq, cseq, method) != (self.rseq, self.cseq, "INVITE"):
            return False
        self.acknowledged = True
        self.stop()
        return True

    def stop(self) -> None:
        """
        No more retransmissions (and no expiry).
        """
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Retransmission:
    """
    Send something again and again until cancelled, and give up at a
    deadline: RFC 3261 s13.3.1.4 for 2xx (interval T1 doubling up to T2)
    and RFC 3262 s3 for reliable provisional responses (T1 doubling, no
    cap); C{interval=None} (a reliable transport) sends nothing again and
    only waits for the deadline.
    """

    def __init__(
        self,
        reactor: Any,
        send: Callable[[], None],
        interval: float | None,
        duration: float,
        on_expired: Callable[[], None],
        cap: float | None = None,
    ) -> None:
        """
        @param reactor: provides IReactorTime.
        @param send: sends the message again.
        @param interval: the first interval (T1), or C{None}.
        @param duration: when to give up, from now (64*T1).
        @param on_expired: called once at the deadline.
        @param cap: the largest interval (T2), or C{None} for none.
        """
        self._reactor = reactor
        self._send = send
        self._on_expired = on_expired
        self._cap = cap
        self._deadline = reactor.seconds() + duration
        self._call: Any = None
        self._schedule(interval)

    def _schedule(self, interval: float | None) -> None:
        left = max(0.0, self._deadline - self._reactor.seconds())
        delay = left if interval is None else min(interval, left)
        self._call = self._reactor.callLater(delay, self._fire, interval)

    def _fire(self, interval: float | None) -> None:
        self._call = None
        if self._reactor.seconds() >= self._deadline - 1e-9:
            self._on_expired()
            return
        self._send()
        if interval is not None:
            interval = 2 * interval if self._cap is None else min(2 * interval, self._cap)
        self._schedule(interval)

    def active(self) -> bool:
        """
        Whether it still runs.
        """
        return self._call is not None and self._call.active()

    def cancel(self) -> None:
        """
        Stop: nothing more is sent, C{on_expired} is not called.
        """
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


class EarlyDialogs:
    """
    The UA's INVITEs whose reliable provisional response awaits its PRACK
    (RFC 3262 s3), by early dialog id, each until its PRACK or 64*T1; and
    the answers to PRACKs.
    """

    def __init__(self, ua: Any) -> None:
        """
        @param ua: the L{aiconnect.sip.ua.UserAgent} (its reactor, config,
            transport-facing helpers, stats and log).
        """
        self._ua = ua
        self._invites: dict[DialogId, Any] = {}

    def __len__(self) -> int:
        return len(self._invites)

    @staticmethod
    def _key(invite: Any) -> DialogId:
        request = invite.request
        return DialogId(request.call_id, invite.local_tag, request.from_tag or "")

    def sent(self, invite: Any, response: Any) -> None:
        """
        A reliable provisional response of C{invite} (a
        L{aiconnect.sip.ua.ServerInvite}) went out: send it again at T1,
        doubling, while the INVITE is unanswered and its PRACK has not come
        (over UDP; TCP/TLS carry it reliably); after 64*T1 without PRACK an
        unanswered INVITE is rejected with 5xx (RFC 3262 s3).
        """
        reliable = invite.reliable
        assert reliable is not None
        self._invites[self._key(invite)] = invite
        config = self._ua.config

        def send() -> None:
            if not invite.answered:
                invite.tx.respond(response)

        interval = None if invite.source.reliable else config.t1
        reliable.timer = Retransmission(
            self._ua._reactor, send, interval, 64 * config.t1, lambda: self._expired(invite)
        )

    def ended(self, invite: Any) -> None:
        """
        No PRACK is expected any more for C{invite}: a later one gets 481.
        """
        key = self._key(invite)
        if self._invites.get(key) is invite:
            del self._invites[key]

    def stop(self) -> None:
        """
        Cancel every retransmission (shutdown).
        """
        for invite in self._invites.values():
            invite.reliable.stop()
        self._invites.clear()

    def _expired(self, invite: Any) -> None:
        """
        64*T1 without a PRACK (RFC 3262 s3): an INVITE still unanswered is
        rejected with 5xx and its owner told (C{on_failed}).
        """
        ua = self._ua
        invite.reliable.timer = None
        self.ended(invite)
        ua.stats["prack_timeouts"] += 1
        ua.log.warn("no PRACK for a reliable provisional response call_id={call_id}", call_id=invite.request.call_id)
        if invite.answered:
            return
        invite.reject(500, "Provisional Response Not Acknowledged")
        if invite.on_failed is not None:
            try:
                invite.on_failed("prack-timeout")
            except Exception:
                ua.log.failure("INVITE failure handler failed")

    def prack_received(self, tx: Any, request: Request) -> None:
        """
        A PRACK (RFC 3262 s3, s4): 200 when it acknowledges the
        unacknowledged reliable provisional response of its early dialog,
        481 otherwise, 400 for a malformed RAck.  A retransmitted PRACK
        never comes here: its server transaction answers it again.
        """
        ua = self._ua
        invite = self._invites.get(DialogId(request.call_id, request.to_tag or "", request.from_tag or ""))
        try:
            rack = parse_rack(request.headers.get("RAck"))
        except RemoteSipError as e:
            ua._reject(tx, request, e.status_hint, e.reason)
            return
        acknowledged = invite is not None and invite.reliable.acknowledge(rack)
        if not acknowledged:
            ua._reject(tx, request, 481)
            return
        self.ended(invite)
        ua.stats["pracks"] += 1
        tx.respond(make_response(request, 200, headers=ua._common_headers([])))
