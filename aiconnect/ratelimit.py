# -*- test-case-name: tests.test_ratelimit -*-
"""
Per-source INVITE rate limiting (SPEC s12 C{invite_rate}), in the manner of
Kamailio's C{pike} module: each source IP address has a token bucket of new
dialog-creating INVITEs; above the rate an INVITE is answered C{503} with
C{Retry-After} while a second bucket (C{invite_rate_answers} per second)
allows it, and dropped silently beyond that, so that a flood is never
reflected.

The table of sources is bounded: a source idle long enough for both its
buckets to be full again is indistinguishable from a new one and is
forgotten, and at most L{MAX_SOURCES} sources are tracked (the least
recently seen is forgotten first).

Pure module: no Twisted, no sockets, no clock; time is passed in as C{now}
(seconds, on any monotonic-enough clock: a clock stepping back refills
nothing).
"""

from __future__ import annotations

import enum
from collections import OrderedDict

#: Sources tracked at most (about 100 bytes each).
MAX_SOURCES = 65536
#: Seconds of burst of each bucket: a bucket holds C{rate * BURST} tokens
#: (at least one).
BURST = 1.0
#: Slack when comparing tokens to one: C{0.2 * 5} is C{0.9999...} in floats,
#: and an INVITE arriving exactly at the rate must pass.
EPSILON = 1e-9


class Admission(enum.Enum):
    """
    What to do with a new INVITE.

    @cvar ACCEPT: within the rate: process it.
    @cvar ANSWER: over the rate: answer 503 with C{Retry-After}.
    @cvar DROP: over the rate and over the answers allowance: send nothing.
    """

    ACCEPT = "accept"
    ANSWER = "answer"
    DROP = "drop"


def refill(tokens: float, stamp: float, now: float, rate: float) -> float:
    """
    The tokens of a bucket at C{now}.

    @param tokens: the tokens at C{stamp}.
    @param stamp: when C{tokens} was computed.
    @param now: the current time.
    @param rate: tokens per second; the bucket holds C{max(1, rate * BURST)}.
    @return: the tokens now, capped at the bucket's size.
    """
    size = max(1.0, rate * BURST)
    return min(size, tokens + max(0.0, now - stamp) * rate)


class _Source:
    """
    The two buckets of one source address.

    @ivar invites: INVITE tokens at C{stamp}.
    @ivar answers: 503 tokens at C{stamp}.
    @ivar stamp: when the source was last seen.
    """

    __slots__ = ("invites", "answers", "stamp")

    def __init__(self, invites: float, answers: float, stamp: float) -> None:
        self.invites = invites
        self.answers = answers
        self.stamp = stamp


class InviteRateLimiter:
    """
    Token buckets per source address (SPEC s12).

    The rates are passed to each L{check}, so a configuration reload applies
    to the next INVITE.
    """

    def __init__(self, max_sources: int = MAX_SOURCES) -> None:
        """
        @param max_sources: how many sources to track at most (at least 1).
        """
        self._max = max(1, max_sources)
        #: Least recently seen first.
        self._sources: OrderedDict[str, _Source] = OrderedDict()

    def __len__(self) -> int:
        """
        @return: the number of sources tracked.
        """
        return len(self._sources)

    def check(self, source: str, now: float, rate: float, answers: int) -> Admission:
        """
        Count a new dialog-creating INVITE from C{source} and say what to do
        with it. Retransmissions and in-dialog requests must not be passed
        here.

        @param source: the source IP address.
        @param now: the current time in seconds.
        @param rate: INVITEs per second allowed (burst of L{BURST} s); 0 or
            less: no limit (nothing is tracked).
        @param answers: 503 answers per second allowed over the rate; 0: all
            over the rate are dropped.
        @return: the L{Admission}.
        """
        if rate <= 0:
            return Admission.ACCEPT
        entry = self._sources.pop(source, None)
        self._evict(now, rate, answers)
        if entry is None:
            # A new (or forgotten) source starts with full buckets.
            entry = _Source(max(1.0, rate * BURST), max(1.0, answers * BURST), now)
        else:
            entry.invites = refill(entry.invites, entry.stamp, now, rate)
            entry.answers = refill(entry.answers, entry.stamp, now, answers)
            entry.stamp = max(entry.stamp, now)
        self._sources[source] = entry  # now the most recently seen
        if entry.invites >= 1.0 - EPSILON:
            entry.invites -= 1.0
            return Admission.ACCEPT
        if answers > 0 and entry.answers >= 1.0 - EPSILON:
            entry.answers -= 1.0
            return Admission.ANSWER
        return Admission.DROP

    def _evict(self, now: float, rate: float, answers: int) -> None:
        """
        Forget the sources whose buckets are full again (idle for the time
        the slower bucket needs to refill from empty), oldest first, then
        the least recently seen beyond the cap, leaving room for the source
        being checked (taken out of the table by the caller).
        """
        idle = max(BURST, 1.0 / rate, 1.0 / answers if answers > 0 else 0.0)
        sources = self._sources
        while sources:
            oldest = next(iter(sources.values()))
            if now - oldest.stamp < idle and len(sources) < self._max:
                break
            sources.popitem(last=False)


class UnconfirmedTable:
    """
    Sessions each source holds that are not confirmed yet (SPEC s12
    C{max_unconfirmed_per_source}): admitted, then waiting for the
    application's answer or for the SRC's ACK. A legitimate SRC confirms
    within a round trip (plus the application's answer time); a flood of
    INVITEs that are never ACKed would otherwise keep RTP ports booked for
    64*T1 each (RFC 3261 Timer H / RFC 6026 Timer L) at the full
    C{invite_rate}, and starve every other source.

    The table holds only sources with at least one unconfirmed session, so
    it is bounded by the live sessions.
    """

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def count(self, source: str) -> int:
        """
        @return: the unconfirmed sessions of C{source}.
        """
        return self._counts.get(source, 0)

    def full(self, source: str, limit: int) -> bool:
        """
        @param limit: the cap; 0 = no cap.
        @return: whether C{source} may not open another session now.
        """
        return limit > 0 and self._counts.get(source, 0) >= limit

    def open(self, source: str) -> "Unconfirmed":
        """
        Count a new session of C{source}.

        @return: its handle; L{Unconfirmed.confirm} (idempotent) when it is
            ACKed or ends.
        """
        self._counts[source] = self._counts.get(source, 0) + 1
        return Unconfirmed(self, source)

    def _close(self, source: str) -> None:
        n = self._counts.get(source, 0) - 1
        if n > 0:
            self._counts[source] = n
        else:
            self._counts.pop(source, None)


class Unconfirmed:
    """
    One session counted in an L{UnconfirmedTable}.
    """

    def __init__(self, table: UnconfirmedTable, source: str) -> None:
        self._table: UnconfirmedTable | None = table
        self._source = source

    def confirm(self, *_ignored: object) -> None:
        """
        The session is confirmed (ACKed) or over: it no longer counts.
        Idempotent; extra arguments are ignored (a callback).
        """
        if self._table is not None:
            self._table._close(self._source)
            self._table = None
