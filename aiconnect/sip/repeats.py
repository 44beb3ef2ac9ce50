# -*- test-case-name: tests.sip.test_repeats -*-
"""
Retransmitted requests recognised by their octets (RFC 3261 s17.2.1,
s17.2.2; issue 12 overload control).

Over UDP a client retransmits a request byte for byte until it hears a
response (Timer A / E). While the server transaction it created lives, a
datagram identical to the request is that transaction's business and
nothing else's: it is answered with the transaction's last response, or
absorbed, without being parsed again. L{RepeatTable} maps the octets of
each live UDP server transaction's request to the transaction.

The table is bounded: the octets come from outsiders, so at most C{cap}
entries are kept and the oldest is forgotten first (a forgotten
transaction's retransmissions simply take the full path: parse, then
match by RFC 3261 s17.2.3).

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

from typing import Generic, TypeVar

#: Entries kept by default: about 30 s of server transactions (Timer J,
#: L) at 100 calls/s with three UDP requests each.
DEFAULT_CAP = 10000

T = TypeVar("T")


class RepeatTable(Generic[T]):
    """
    The requests of live server transactions, by their octets.

    @ivar cap: the most entries kept.
    @ivar evicted: entries forgotten to stay within C{cap}.
    """

    __slots__ = ("cap", "evicted", "_entries")

    def __init__(self, cap: int = DEFAULT_CAP) -> None:
        """
        @param cap: the most entries kept (0: keep none).
        """
        self.cap = cap
        self.evicted = 0
        self._entries: dict[bytes, T] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, data: bytes, owner: T) -> None:
        """
        Remember that C{data} is the request of C{owner}; an entry for the
        same octets is kept (the first transaction owns them). Beyond
        C{cap} the oldest entry is forgotten.
        """
        entries = self._entries
        if data in entries or self.cap <= 0:
            return
        while len(entries) >= self.cap:
            del entries[next(iter(entries))]
            self.evicted += 1
        entries[data] = owner

    def get(self, data: bytes) -> T | None:
        """
        The owner of a request with exactly these octets, or C{None}.
        """
        return self._entries.get(data)

    def discard(self, data: bytes, owner: T) -> None:
        """
        Forget C{data} if C{owner} owns it (its transaction ended).
        """
        if self._entries.get(data) is owner:
            del self._entries[data]

    def clear(self) -> None:
        """
        Forget every entry.
        """
        self._entries.clear()
