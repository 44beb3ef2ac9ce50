# -*- test-case-name: tests.media.test_ports -*-
"""
The RTP port pool: even RTP ports, each with its RTCP port at +1 (RFC 3550
s11), from a configured range.

Pure: it only books numbers; binding sockets is the relay's job.

A request for C{n} pairs gets consecutive pairs (P, P+2, P+4, ...) when the
range has such a run free (some SRC test tools assume it), otherwise any
free pairs.  Allocation starts after the last pair handed out, round-robin,
so a just-released port is not reused at once (late packets of the old call
would land in the new one).
"""

from __future__ import annotations

from typing import Callable

from aiconnect.errors import AiconnectError

__all__ = ["FileDescriptorsExhausted", "PortPool", "PortsExhausted", "add_up_to"]


class PortsExhausted(AiconnectError):
    """
    Not enough free RTP/RTCP port pairs for a request.

    The inbound INVITE gets 503, a forward fails with C{SIPRECFORWARDFAILED}.
    """


class FileDescriptorsExhausted(PortsExhausted):
    """
    The ports were free but their sockets could not be created: the process
    (C{EMFILE}) or the system (C{ENFILE}) is out of file descriptors.  A
    L{PortsExhausted}, so every caller still fails cleanly; the inbound
    INVITE's 503 names the cause.
    """


class PortPool:
    """
    Books even RTP ports in C{[port_min, port_max]}; RTCP uses port + 1,
    which must also be in the range.

    @ivar port_min: the lowest usable RTP port (rounded up to even).
    @ivar port_max: the highest port of the range (an RTCP port may use it).
    """

    def __init__(self, port_min: int, port_max: int) -> None:
        """
        @raise ValueError: when the range holds no even/odd pair or is
            outside 1..65535.
        """
        if port_min < 1 or port_max > 65535:
            raise ValueError("port range must lie within 1..65535")
        first = port_min + (port_min & 1)
        count = (port_max - first + 1) // 2
        if count < 1:
            raise ValueError(f"port range {port_min}-{port_max} holds no RTP/RTCP pair")
        self.port_min = first
        self.port_max = port_max
        self._count = count
        # One flag per pair: 1 = free.
        self._free = bytearray(b"\x01") * count
        self._n_free = count
        self._cursor = 0

    @property
    def capacity(self) -> int:
        """
        The number of pairs in the range.
        """
        return self._count

    @property
    def available(self) -> int:
        """
        The number of free pairs.
        """
        return self._n_free

    def in_use(self) -> list[int]:
        """
        The RTP ports currently allocated, ascending.
        """
        return [self.port_min + 2 * i for i, f in enumerate(self._free) if not f]

    def allocate(self, n: int, after: int | None = None) -> list[int]:
        """
        Book C{n} pairs.

        @param after: an RTP port already held (the last of a session's
            streams): when the C{n} pairs right after it are free they are
            booked, so streams added later continue the run.
        @return: the C{n} RTP ports (even; RTCP is each + 1), consecutive
            pairs when the range allows.
        @raise PortsExhausted: when fewer than C{n} pairs are free; nothing
            is booked then.
        @raise ValueError: when C{n} < 1.
        """
        if n < 1:
            raise ValueError("allocate at least one pair")
        if n > self._n_free:
            raise PortsExhausted(f"{n} RTP port pairs wanted, {self._n_free} free")
        indices = self._find_after(after, n) if after is not None else None
        if indices is None:
            indices = self._find_run(n)
        if indices is None:
            indices = self._find_any(n)
        free = self._free
        for i in indices:
            free[i] = 0
        self._n_free -= n
        self._cursor = (indices[-1] + 1) % self._count
        return [self.port_min + 2 * i for i in indices]

    def release(self, ports: list[int] | tuple[int, ...]) -> None:
        """
        Return RTP ports to the pool.  Releasing a free or foreign port is
        ignored, so every exit path may release what it holds.
        """
        for port in ports:
            offset = port - self.port_min
            if offset < 0 or offset & 1:
                continue
            i = offset // 2
            if i < self._count and not self._free[i]:
                self._free[i] = 1
                self._n_free += 1

    def _find_after(self, port: int, n: int) -> list[int] | None:
        # The n pairs right after RTP port `port`, when all are free.
        offset = port - self.port_min
        if offset < 0 or offset & 1:
            return None
        start = offset // 2 + 1
        if start + n > self._count or self._free[start : start + n] != b"\x01" * n:
            return None
        return list(range(start, start + n))

    def _find_run(self, n: int) -> list[int] | None:
        # A run of n free pairs, searching round-robin from the cursor; a run
        # never wraps past the end of the range (ports must ascend).
        free = self._free
        needle = b"\x01" * n
        start = free.find(needle, self._cursor)
        if start < 0:
            start = free.find(needle, 0, self._cursor + n - 1)
        if start < 0:
            return None
        return list(range(start, start + n))

    def _find_any(self, n: int) -> list[int]:
        free = self._free
        order = list(range(self._cursor, self._count)) + list(range(self._cursor))
        return sorted([i for i in order if free[i]][:n])


def add_up_to(add: Callable[[int], object], n: int) -> int:
    """
    Add up to C{n} streams with C{add(count)}, as many as the port range
    allows: all at once, else one by one (the earlier m-lines get the
    ports that are left).  The one home of this retry, for the inbound
    session's and the forwards' added streams.

    @param add: books and binds C{count} streams, or raises
        L{PortsExhausted} keeping none.
    @param n: how many are wanted.
    @return: how many were added.
    """
    try:
        add(n)
        return n
    except PortsExhausted:
        pass
    added = 0
    if n > 1:
        while added < n:
            try:
                add(1)
            except PortsExhausted:
                break
            added += 1
    return added
