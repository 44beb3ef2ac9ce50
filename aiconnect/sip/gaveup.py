# -*- test-case-name: tests.sip.test_late_answers,tests.integration.test_trunk_health -*-
"""
The INVITEs a UAC gave up on (CANCELled, timed out, failed), remembered so
that a 2xx which still arrives, also after the INVITE client transaction
ended, is ACKed and BYEd at once (RFC 3261 s13.2.2.4, s15).

Pure bookkeeping: time is a parameter (C{now}).  The record is bounded:
at most C{cap} INVITEs (the oldest forgotten first), each kept for
C{keep} seconds (64*T1 in the UA) after it was last given up on.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from aiconnect.sip.message import Request, Response

__all__ = ["MAX_GIVEN_UP", "MAX_ANSWERS", "GivenUp", "GivenUpInvites"]

#: At most this many given-up INVITEs are remembered.
MAX_GIVEN_UP = 4096

#: At most this many answering forks (To tags) are ACKed per INVITE.
MAX_ANSWERS = 8


@dataclass(slots=True)
class GivenUp:
    """
    One INVITE we gave up on.

    @ivar request: the INVITE as we built it.
    @ivar peer: where it went.
    @ivar contact: our Contact in it.
    @ivar expires: when it is forgotten.
    @ivar sessions: To tag -> the session of that fork's 2xx (its ACK sent again
        when the 2xx is retransmitted; no second BYE).
    """

    request: Request
    peer: Any
    contact: str
    expires: float
    sessions: dict[str, Any] = field(default_factory=dict)


def _key(call_id: str, from_tag: str | None, cseq: int) -> tuple[str, str, int]:
    return (call_id, from_tag or "", cseq)


class GivenUpInvites:
    """
    The bounded record (see the module docstring).
    """

    def __init__(self, keep: float, cap: int = MAX_GIVEN_UP) -> None:
        """
        @param keep: seconds an INVITE is remembered after it was given up.
        @param cap: at most this many are remembered.
        """
        self.keep = keep
        self.cap = cap
        self._entries: OrderedDict[tuple[str, str, int], GivenUp] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, request: Request, peer: Any, contact: str, now: float) -> GivenUp:
        """
        Remember (or remember longer) an INVITE given up at C{now}.

        @return: its entry.
        """
        key = _key(request.call_id, request.from_tag, request.cseq.number)
        entry = self._entries.pop(key, None)
        if entry is None:
            entry = GivenUp(request, peer, contact, now + self.keep)
        entry.expires = now + self.keep
        self._entries[key] = entry
        self._expire(now)
        while len(self._entries) > self.cap:
            self._entries.popitem(last=False)
        return entry

    def match(self, response: Response, now: float) -> GivenUp | None:
        """
        @return: the entry of the given-up INVITE a 2xx answers, or L{None}.
        """
        self._expire(now)
        if response.cseq.method != "INVITE":
            return None
        return self._entries.get(_key(response.call_id, response.from_tag, response.cseq.number))

    def _expire(self, now: float) -> None:
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if entry.expires > now:
                return
            del self._entries[key]
