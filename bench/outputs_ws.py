"""
The WebSocket consumer of C{bench/outputs.py}: a minimal reader on raw
sockets (it must not be the bottleneck, so neither Twisted nor wsproto),
run as a process of its own pinned to the load CPU.

It accepts the stream legs' connections, answers their handshake (RFC 6455
s4.2.2: C{101} with C{Sec-WebSocket-Accept}; no extension, no
subprotocol), then reads frames without unmasking them: it only needs to
know where each binary message ends and when it arrived.  The arrival time
is the kernel's (C{SO_TIMESTAMPNS} on TCP: the time of the last segment a
C{recvmsg} read), so the reader's own scheduling (it shares its CPU with
the generator and the RTP sink) does not count.  A Close frame is answered
with a Close (1000) and the socket closed.

Frame lateness (L{frame_stats}): the relay hands a session's frame C{k} to
its stream at a due time C{start + (k + 1) * 20 ms + playout delay}, on a
per-session grid; so for each connection the offset of the grid is the
least C{arrival(k) - k * 20 ms} seen, and the lateness of frame C{k} is its
arrival minus C{offset + k * 20 ms}: the jitter of frame delivery, 0 for
the best-delivered frame.  A frame the relay skipped or a stream dropped
shifts the numbering, so every later frame of that connection counts 20 ms
later (besides being counted as lost).

Debugging aid: C{BENCH_WS_DUMP=file} writes the window and every arrival
time (per connection) as JSON.

Not a test and not part of the server.
"""

from __future__ import annotations

import base64
import os
import hashlib
import select
import socket
import time
from multiprocessing.connection import Connection

from common import SO_TIMESTAMPNS, kernel_time_ns, percentile, raise_nofile

__all__ = ["FRAME_NS", "frame_stats", "ws_server_main"]

#: Nanoseconds per frame.
FRAME_NS = 20_000_000
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_CLOSE_1000 = b"\x88\x02\x03\xe8"
_MAX_HANDSHAKE = 16384
_RECV = 262144


def _accept_key(request: bytes) -> bytes | None:
    """
    The C{Sec-WebSocket-Accept} value for a handshake request, or C{None}
    when it has no key.
    """
    for line in request.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            return base64.b64encode(hashlib.sha1(value.strip() + _GUID).digest())
    return None


class _Reader:
    """
    One accepted connection: its handshake, then the arrival time of each
    binary message (C{times}, CLOCK_REALTIME ns).
    """

    __slots__ = ("sock", "buf", "open", "times", "closed", "bytes")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.open = False
        self.closed = False
        self.times: list[int] = []
        self.bytes = 0

    def received(self, data: bytes, stamp: int) -> None:
        """
        Take what one C{recvmsg} read, received at C{stamp}.
        """
        buf = self.buf
        buf += data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HANDSHAKE:
                    self.closed = True
                return
            key = _accept_key(bytes(buf[:end]))
            if key is None:
                self.closed = True
                return
            try:
                self.sock.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Accept: " + key + b"\r\n\r\n"
                )
            except OSError:
                self.closed = True
                return
            self.open = True
            del buf[: end + 4]
        self._frames(stamp)

    def _frames(self, stamp: int) -> None:
        # Walk the complete frames in the buffer: header, extended length,
        # mask, payload (left masked: only its end matters).
        buf = self.buf
        size = len(buf)
        i = 0
        while size - i >= 2:
            b0, b1 = buf[i], buf[i + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if size - i < 4:
                    break
                length = (buf[i + 2] << 8) | buf[i + 3]
                head = 4
            elif length == 127:
                if size - i < 10:
                    break
                length = int.from_bytes(buf[i + 2 : i + 10], "big")
                head = 10
            if b1 & 0x80:
                head += 4
            if size - i < head + length:
                break
            opcode = b0 & 0x0F
            if opcode == 2 and b0 & 0x80:
                self.times.append(stamp)
                self.bytes += length
            elif opcode == 8:
                try:
                    self.sock.sendall(_CLOSE_1000)
                except OSError:
                    pass
                self.closed = True
            i += head + length
        if i:
            del buf[:i]


def frame_stats(times: list[list[int]], window: tuple[int, int]) -> dict:
    """
    Frames received per connection and their lateness (see the module's
    docstring) over C{window} (CLOCK_REALTIME ns, a multiple of 20 ms
    long): frame C{k} of a connection counts if its due time lies in it.

    @return: C{received} frames, C{lateness} p50 / p99 / max in ms.
    """
    w0, w1 = window
    late: list[int] = []
    for arrivals in times:
        if not arrivals:
            continue
        offset = min(t - k * FRAME_NS for k, t in enumerate(arrivals))
        for k, t in enumerate(arrivals):
            due = offset + k * FRAME_NS
            if w0 <= due < w1:
                late.append(t - due)
    late.sort()
    return {
        "received": len(late),
        "f50": percentile(late, 0.50) / 1e6,
        "f99": percentile(late, 0.99) / 1e6,
        "fmax": percentile(late, 1.0) / 1e6,
    }


def ws_server_main(conn: Connection, pin: object, spin: bool = True) -> None:
    """
    The consumer process: listen on 127.0.0.1 (port sent on C{conn}), take
    the setup (C{{"real_window": (t0, t1), "end": monotonic ns}}), read
    until C{end}, send L{frame_stats} plus C{connections}, C{bytes}; then
    keep answering (Close frames) until C{conn} says anything or 60 s.

    @param pin: called first (pins the process to its CPU).
    @param spin: poll the sockets in a sleep loop (as the RTP sink does,
        so the relay's sends need not wake it), else sleep in epoll.
    """
    pin()  # type: ignore[operator]
    raise_nofile()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    listener.setblocking(False)
    conn.send(listener.getsockname()[1])
    setup: dict | None = None  # comes once the relay's streams are open
    poller = select.epoll()
    poller.register(listener.fileno(), select.EPOLLIN)
    readers: dict[int, _Reader] = {}
    ended: list[_Reader] = []
    result: dict | None = None
    quit_at = time.monotonic_ns() + 60_000_000_000
    idle_sleep = 0.0003 if spin else 0.0
    while time.monotonic_ns() < quit_at:
        if setup is None:
            if conn.poll():
                setup = conn.recv()
        elif result is None and time.monotonic_ns() >= setup["end"]:
            every = [r.times for r in list(readers.values()) + ended]
            result = frame_stats(every, setup["real_window"])
            if os.environ.get("BENCH_WS_DUMP"):
                import json
                with open(os.environ["BENCH_WS_DUMP"], "w") as f:
                    json.dump({"window": setup["real_window"], "times": every}, f)
            result.update(connections=len(every), bytes=sum(r.bytes for r in list(readers.values()) + ended))
            conn.send(result)
        if result is not None and conn.poll():
            break
        events = poller.poll(0 if spin else 0.02)
        for fd, _ in events:
            if fd == listener.fileno():
                while True:
                    try:
                        sock, _ = listener.accept()
                    except BlockingIOError:
                        break
                    sock.setblocking(False)
                    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                    readers[sock.fileno()] = _Reader(sock)
                    poller.register(sock.fileno(), select.EPOLLIN)
                continue
            reader = readers[fd]
            while True:
                try:
                    data, anc, _flags, _addr = reader.sock.recvmsg(_RECV, 64)
                except BlockingIOError:
                    break
                except OSError:
                    data = b""
                if not data:
                    reader.closed = True
                    break
                reader.received(data, kernel_time_ns(anc))
                if reader.closed:
                    break
            if reader.closed:
                poller.unregister(fd)
                reader.sock.close()
                ended.append(readers.pop(fd))
        if spin and not events:
            time.sleep(idle_sleep)
    for reader in readers.values():
        reader.sock.close()
    listener.close()
