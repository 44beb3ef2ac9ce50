"""
The abuse benchmark's attackers, each run in its own process: an INVITE
flood over UDP from 127.0.0.2 (L{flood_main}) and silent TCP connections
from 127.0.0.3 (L{idle_main}).  Each reports one dict on its pipe
(C{{"error": ...}} when it failed), after C{"ready"}; every loop is
bounded in count and time.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import selectors
import socket
import time
from collections import Counter
from multiprocessing.connection import Connection

from abuse_sip import FLOOD_SOURCE, IDLE_SOURCE, READ_BATCH, SERVER, siprec_body, siprec_invite
from common import raise_nofile, sleep_until, wait_readable


# -- flood worker (127.0.0.2, UDP) -------------------------------------------------

STATUS_RE = re.compile(rb"^SIP/2\.0 (\d{3}) ")
CALL_ID_RE = re.compile(rb"\r\n(?:call-id|i)[ \t]*:[ \t]*([^\r\n]+)", re.IGNORECASE)


def flood_main(conn: Connection, sip_port: int, rate: float, t0: float, duration: float, drain: float) -> None:
    """
    Send C{rate} INVITEs/s from 127.0.0.2 for C{duration} s (never ACKed,
    never retransmitted), read the responses until C{drain} s after, and
    report per-Call-ID outcomes.
    """
    try:
        raise_nofile()
        body, content_type = siprec_body()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind((FLOOD_SOURCE, 0))
        sock.setblocking(False)
        local = sock.getsockname()
        prefix = "flood-%s-" % secrets.token_hex(4)
        total = int(rate * duration)
        final: dict[str, int] = {}
        provisional: set[str] = set()
        sent = errors = requests = 0
        target = (SERVER, sip_port)
        conn.send("ready")
        sleep_until(t0)
        end = t0 + duration
        stop = end + drain
        while True:
            now = time.monotonic()
            if now >= stop:
                break
            # Paced; nothing is sent after the window (a lagging sender shows as sent < rate x duration).
            due = min(total, int((now - t0) * rate) + 1) if now < end else sent
            while sent < due:
                call_id = "%s%d" % (prefix, sent)
                data = siprec_invite(local, call_id, secrets.token_hex(4), body, content_type).to_bytes()
                sent += 1
                try:
                    sock.sendto(data, target)
                except OSError:
                    errors += 1
            for _ in range(READ_BATCH):
                try:
                    data = sock.recv(65535)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    continue
                m = STATUS_RE.match(data)
                if m is None:
                    requests += 1  # e.g. a BYE from the server: ignored, like a hostile peer would
                    continue
                c = CALL_ID_RE.search(data)
                if c is None:
                    continue
                call_id = c.group(1).strip().decode("ascii", "replace")
                status = int(m.group(1))
                if status < 200:
                    provisional.add(call_id)
                elif call_id not in final:
                    final[call_id] = status
            next_send = t0 + sent / rate if sent < total and now < end else stop
            wait = min(max(next_send - time.monotonic(), 0.0), 0.005, max(stop - time.monotonic(), 0.0))
            wait_readable(sock, wait)
        sock.close()
        classes = Counter("503" if s == 503 else "2xx" if s < 300 else "other" for s in final.values())
        conn.send(
            {
                "sent": sent,
                "send_errors": errors,
                "answered_503": classes["503"],
                "answered_2xx": classes["2xx"],
                "answered_other": classes["other"],
                "other_statuses": dict(Counter(s for s in final.values() if s != 503 and s >= 300)),
                "provisional_only": len(provisional - set(final)),
                "unanswered": sent - len(final),
                "requests_received": requests,
            }
        )
    except Exception as e:  # report, never hang the controller
        conn.send({"error": "%s: %s" % (e.__class__.__name__, e)})


# -- idle connections worker (127.0.0.3, TCP) ---------------------------------------


def idle_main(conn: Connection, sip_port: int, count: int, rate: float, t0: float, duration: float) -> None:
    """
    Open C{count} TCP connections from 127.0.0.3 to the SIP TCP port from
    C{t0}, C{rate} per second (non-blocking, at most 10 s to connect after
    the last), send nothing, and report how many the server closed and how
    many are still open at C{t0 + duration}; keep them open until the
    controller says "done" (at most 30 s more).
    """
    socks: list[socket.socket] = []
    try:
        raise_nofile()
        conn.send("ready")
        sleep_until(t0)
        end = t0 + duration
        sel = selectors.DefaultSelector()
        open_errors: Counter[str] = Counter()
        for i in range(count):
            # Paced: a burst beyond the listen backlog would leave most
            # connections "connected" on our side only, in the queue.
            sleep_until(t0 + i / rate)
            if time.monotonic() >= end:
                break
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            except OSError as e:
                open_errors[e.__class__.__name__] += 1
                break
            s.setblocking(False)
            try:
                s.bind((IDLE_SOURCE, 0))
                err = s.connect_ex((SERVER, sip_port))
            except OSError as e:
                open_errors[e.__class__.__name__] += 1
                s.close()
                continue
            if err not in (0, errno.EINPROGRESS):
                open_errors[os.strerror(err)] += 1
                s.close()
                continue
            socks.append(s)
            sel.register(s, selectors.EVENT_WRITE)
        # Connect phase: bounded by 10 s (or the run) whatever the server does.
        pending = set(socks)
        connected: list[socket.socket] = []
        connect_deadline = min(end, time.monotonic() + 10.0)
        while pending and time.monotonic() < connect_deadline:
            for key, _ in sel.select(max(0.0, min(0.2, connect_deadline - time.monotonic()))):
                s = key.fileobj  # type: ignore[assignment]
                if s not in pending:
                    continue
                pending.discard(s)
                sel.unregister(s)
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    open_errors[os.strerror(err)] += 1
                else:
                    connected.append(s)
        for s in pending:
            sel.unregister(s)
            open_errors["connect timeout"] += 1
        connected_at = time.monotonic() - t0
        # Hold phase: silent; note the connections the server closes.
        for s in connected:
            sel.register(s, selectors.EVENT_READ)
        closed: list[float] = []
        data_received = 0
        while time.monotonic() < end and len(closed) < len(connected):
            for key, _ in sel.select(max(0.0, min(0.5, end - time.monotonic()))):
                s = key.fileobj  # type: ignore[assignment]
                try:
                    data = s.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    data_received += len(data)
                    continue
                sel.unregister(s)
                closed.append(time.monotonic() - t0)
        sel.close()
        conn.send(
            {
                "requested": count,
                "connected": len(connected),
                "open_errors": dict(open_errors),
                "connected_after_s": connected_at,
                "closed_by_server": len(closed),
                "first_close_s": min(closed) if closed else None,
                "held_at_end": len(connected) - len(closed),
                "bytes_received": data_received,
            }
        )
        # Keep the connections until the controller has counted them on the
        # server's side (bounded).
        conn.poll(30.0)
    except Exception as e:
        conn.send({"error": "%s: %s" % (e.__class__.__name__, e)})
    finally:
        for s in socks:
            s.close()
