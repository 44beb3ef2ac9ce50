#!/usr/bin/env python3
"""
Abuse benchmark: does AI Connect keep serving legitimate SIPRec traffic
while it is flooded with INVITEs and held open by idle TCP connections?

    .venv/bin/python bench/abuse.py                   # 60 s, the defaults below
    .venv/bin/python bench/abuse.py --duration 10 --flood-rate 100 --idle 200

It starts AI Connect in a subprocess (C{twistd -n aiconnect --config FILE},
a temporary configuration on 127.0.0.1 with the C{[limits]} defaults and one
tenant whose C{callback_url} points at a tiny application server in this
process answering newCall with C{{}}), then, at once and for C{--duration}
seconds:

  - B{flood} (its own process, UDP from 127.0.0.2): C{--flood-rate}
    SIPRec INVITEs/s (2 m-lines + metadata), each with a fresh Call-ID,
    never ACKed, never retransmitted; the responses are counted;
  - B{idle} (its own process, TCP from 127.0.0.3): C{--idle} connections to
    the SIP TCP port, opened at C{--idle-rate}/s and left silent (bounded by
    RLIMIT_NOFILE, which the bench raises to its hard limit); "held" is
    counted both on our side and on the server's (its accepted sockets in
    /proc: a connection still in the listen queue looks open to us only);
  - B{legitimate} (its own process, UDP from 127.0.0.1): C{--call-rate}
    calls/s, each SIPRec INVITE -> 200 -> ACK -> BYE -> 200 with RFC 3261
    retransmissions, within C{--call-timeout} s per transaction; and an
    OPTIONS ping every C{--ping-interval} s, its latency taken from the
    send time to the kernel's receive time stamp (C{SO_TIMESTAMPNS}), so
    the bench's own scheduling does not count; a ping unanswered within
    C{--ping-timeout} s counts as lost (an infinite latency).

Then it prints a table: legitimate calls attempted / answered / completed,
OPTIONS latency p50/p99/max, flood INVITEs sent / answered 503 / other /
unanswered, idle connections held at the end, the server's CPU seconds over
the load window and its RSS.  The goal (SPEC s12 and the issue): every
legitimate call answered and OPTIONS p99 < 50 ms.

Only loopback addresses are used.  Every loop is bounded in count and time,
every wait has a timeout, and the server and the worker processes are killed
if they do not stop: the bench finishes and prints even when the server
misbehaves (a worker that reported nothing shows as C{n/a}).  Exit status:
0 when the goal is met, 1 when it is not, 2 when the server did not start.

Not a test: run it by hand (it takes C{--duration} + about 15 s).
"""

from __future__ import annotations

import argparse
import errno
import multiprocessing as mp
import os
import platform
import re
import resource
import secrets
import select
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

DOMAIN = "customer.example.com"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
LEGIT_SOURCE = "127.0.0.1"
FLOOD_SOURCE = "127.0.0.2"
IDLE_SOURCE = "127.0.0.3"
SERVER = "127.0.0.1"
T1 = 0.5
T2 = 4.0
GOAL_P99_MS = 50.0
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
#: File descriptors kept free for everything but the idle connections.
FD_RESERVE = 128
#: At most this many datagrams are read per loop turn (then the loop goes on).
READ_BATCH = 2000


# -- SIP messages, built with aiconnect's own classes ---------------------------


def siprec_body() -> tuple[bytes, str]:
    """
    A SIPRec offer as an SRC sends it (RFC 7866): SDP with two sendonly
    PCMU m-lines labelled 1 and 2, plus complete recording metadata for a
    caller and a called party.

    @return: The multipart body and its Content-Type.
    """
    from aiconnect.sip.multipart import Part, build_multipart, new_boundary
    from aiconnect.sip.sdp import OfferStream, Origin, build_src_offer
    from aiconnect.siprec.metadata import metadata_from_labels

    offer = build_src_offer(
        [OfferStream("1", 40000), OfferStream("2", 40002)],
        origin=Origin.new(LEGIT_SOURCE),
        address=LEGIT_SOURCE,
        codec="PCMU",
    )
    md = metadata_from_labels(["1", "2"], caller_aor="sip:alice@example.com", called_aor="sip:bob@example.com")
    boundary = new_boundary()
    body = build_multipart(
        [
            Part((("Content-Type", "application/sdp"),), offer.to_bytes()),
            Part(
                (("Content-Type", "application/rs-metadata+xml"), ("Content-Disposition", "recording-session")),
                md.to_bytes(),
            ),
        ],
        boundary,
    )
    return body, "multipart/mixed;boundary=" + boundary


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


def sip_request(
    method: str,
    uri: str,
    local: tuple[str, int],
    call_id: str,
    from_tag: str,
    cseq: int,
    to: str = "<sip:recorder@%s>" % DOMAIN,
    branch: str | None = None,
    body: bytes = b"",
    content_type: str | None = None,
    extra: tuple[tuple[str, str], ...] = (),
) -> Any:
    """
    An out-of-dialog or in-dialog request from C{local} over UDP
    (L{aiconnect.sip.message.Request}).
    """
    from aiconnect.sip.message import Request

    host, port = local
    headers = [
        ("Via", "SIP/2.0/UDP %s:%d;branch=%s;rport" % (host, port, branch or new_branch())),
        ("Max-Forwards", "70"),
        ("From", "<sip:src@%s>;tag=%s" % (host, from_tag)),
        ("To", to),
        ("Call-ID", call_id),
        ("CSeq", "%d %s" % (cseq, method)),
        ("Contact", "<sip:src@%s:%d>;+sip.src" % (host, port)),
        *extra,
    ]
    if body:
        headers.append(("Content-Type", content_type or "application/sdp"))
    return Request(method, uri, headers, body)


def siprec_invite(local: tuple[str, int], call_id: str, from_tag: str, body: bytes, content_type: str) -> Any:
    """
    A SIPRec INVITE (Require: siprec, +sip.src, multipart body).
    """
    return sip_request(
        "INVITE",
        "sip:recorder@%s" % DOMAIN,
        local,
        call_id,
        from_tag,
        1,
        body=body,
        content_type=content_type,
        extra=(("Require", "siprec"), ("Accept", "application/sdp, application/rs-metadata+xml")),
    )


def response_to(request: Any, status: int) -> bytes:
    """
    A response to a request the server sent us (a BYE, say), with the
    request's Via, From, To, Call-ID and CSeq.
    """
    from aiconnect.sip.message import Response

    headers = [(n, v) for n, v in request.headers if n in ("Via", "From", "To", "Call-ID", "CSeq")]
    return Response(status, headers=headers).to_bytes()


# -- small helpers ----------------------------------------------------------------


def raise_nofile() -> int:
    """
    Raise the soft RLIMIT_NOFILE to the hard one where allowed.

    @return: The soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def free_port() -> int:
    """
    A port free for both UDP and TCP on 127.0.0.1 right now.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind((SERVER, 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((SERVER, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port on 127.0.0.1")


def proc_status(pid: int) -> dict[str, int]:
    """
    CPU ticks (user + system) and VmRSS/VmHWM (KiB) of a process, from
    /proc; empty when it is gone.
    """
    out: dict[str, int] = {}
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        out["ticks"] = int(fields[11]) + int(fields[12])
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1])
    except (OSError, IndexError, ValueError):
        return {}
    return out


def server_connections(pid: int, port: int, source: str) -> int | None:
    """
    How many TCP connections from C{source} to C{port} the process C{pid}
    holds (accepted, so an open file descriptor), from /proc: what the
    server sees, unlike the client, which also counts connections still in
    the listen queue.  L{None} when /proc cannot tell.
    """
    try:
        inodes = set()
        for fd in os.listdir("/proc/%d/fd" % pid)[:100_000]:
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        local_end = ":%04X" % port
        remote = "%08X" % struct.unpack("<I", socket.inet_aton(source))[0]
        held = 0
        with open("/proc/net/tcp") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 9 and fields[3] == "01" and fields[1].endswith(local_end) and fields[2].startswith(remote + ":") and fields[9] in inodes:
                    held += 1
        return held
    except (OSError, ValueError, struct.error):
        return None


def percentile(values: list[float], q: float) -> float:
    """
    The C{q} quantile (nearest rank) of sorted C{values}; NaN when empty.
    """
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def kernel_time_ns(ancillary: list[tuple[int, int, bytes]]) -> int:
    """
    The SO_TIMESTAMPNS receive time (CLOCK_REALTIME ns), or now.
    """
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return sec * 1_000_000_000 + nsec
    return time.time_ns()


def sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


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


def wait_readable(sock: socket.socket, timeout: float) -> None:
    """
    Wait at most C{timeout} s for C{sock} to be readable.
    """
    if timeout > 0:
        select.select([sock], [], [], timeout)


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


# -- legitimate traffic worker (127.0.0.1, UDP) ---------------------------------------


class LegitCall:
    """
    One legitimate SIPRec call as a UDP SRC: INVITE (timer A), ACK, BYE
    (timer E), each transaction within C{timeout} s.
    """

    def __init__(self, invite: Any, now: float, timeout: float, hold: float) -> None:
        self.invite = invite
        self.data = invite.to_bytes()
        self.started = now
        self.timeout = timeout
        self.hold = hold
        self.state = "inviting"  # proceeding, confirmed, byeing, done, failed
        self.next_tx = now + T1
        self.interval = T1
        self.deadline = now + timeout
        self.ack: bytes | None = None
        self.bye = b""
        self.answered = False
        self.completed = False
        self.setup_s: float | None = None
        self.outcome = ""

    def on_response(self, response: Any, now: float, local: tuple[str, int], send: Any) -> None:
        method = response.cseq.method
        status = response.status
        if method == "INVITE":
            if status < 200:
                if self.state == "inviting":
                    self.state = "proceeding"
            elif status < 300:
                if self.ack is None:
                    # Requests in the dialog go to the 200's Contact (no Record-Route here).
                    target = str(response.contacts[0].uri) if response.contacts else self.invite.uri
                    to = response.headers.get("To")
                    self.ack = sip_request("ACK", target, local, self.invite.call_id, self.invite.from_tag, 1, to=to).to_bytes()
                    self.bye = sip_request("BYE", target, local, self.invite.call_id, self.invite.from_tag, 2, to=to).to_bytes()
                    if self.state in ("inviting", "proceeding"):
                        self.answered = True
                        self.setup_s = now - self.started
                        self.state = "confirmed"
                        self.next_tx = now + self.hold
                    else:
                        send(self.bye)  # too late (counted as failed): end the dialog once, untracked
                send(self.ack)  # also for a retransmitted 200 (our ACK was lost)
            else:
                if self.state in ("inviting", "proceeding"):
                    self.state = "failed"
                    self.outcome = "INVITE %d" % status
                # Hop-by-hop ACK of a non-2xx final (RFC 3261 s17.1.1.3).
                top_via = self.invite.headers.get("Via")
                send(
                    sip_request(
                        "ACK", self.invite.uri, local, self.invite.call_id, self.invite.from_tag, 1,
                        to=response.headers.get("To"), branch=top_via.split("branch=")[1].split(";")[0],
                    ).to_bytes()  # fmt: skip
                )
        elif method == "BYE" and status >= 200 and self.state == "byeing":
            if status < 300:
                self.completed = True
                self.state = "done"
                self.outcome = "completed"
            else:
                self.state = "failed"
                self.outcome = "BYE %d" % status

    def on_timer(self, now: float, send: Any) -> None:
        if self.state in ("done", "failed"):
            return
        if now >= self.deadline:
            self.outcome = "timeout (%s)" % self.state
            self.state = "failed"
            return
        if now < self.next_tx:
            return
        if self.state == "inviting":
            send(self.data)
            self.interval *= 2  # timer A doubles (RFC 3261 s17.1.1.2)
            self.next_tx = now + self.interval
        elif self.state == "confirmed":
            send(self.bye)
            self.state = "byeing"
            self.interval = T1
            self.next_tx = now + T1
            self.deadline = now + self.timeout
        elif self.state == "byeing":
            send(self.bye)
            self.interval = min(2 * self.interval, T2)  # timer E
            self.next_tx = now + self.interval
        else:  # proceeding: timer B only
            self.next_tx = self.deadline


def legit_main(
    conn: Connection,
    sip_port: int,
    t0: float,
    duration: float,
    call_rate: float,
    ping_interval: float,
    call_timeout: float,
    hold: float,
    ping_timeout: float,
) -> None:
    """
    Legitimate calls and OPTIONS pings from 127.0.0.1 for C{duration} s,
    then finish the calls in progress (bounded); report outcomes and ping
    latencies.
    """
    try:
        from aiconnect.sip.message import Request, parse

        body, content_type = siprec_body()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind((LEGIT_SOURCE, 0))
        sock.setblocking(False)
        local = sock.getsockname()
        target = (SERVER, sip_port)
        send_errors = [0]

        def send(data: bytes) -> None:
            try:
                sock.sendto(data, target)
            except OSError:
                send_errors[0] += 1

        calls: dict[str, LegitCall] = {}
        pings: dict[str, int] = {}  # call_id -> send time (CLOCK_REALTIME ns)
        ping_sent_at: dict[str, float] = {}
        latencies_ms: list[float] = []
        ping_statuses: Counter[int] = Counter()
        late = 0
        n_calls = max(0, int(duration * call_rate)) if call_rate > 0 else 0
        n_pings = max(0, int(duration / ping_interval)) if ping_interval > 0 else 0
        conn.send("ready")
        sleep_until(t0)
        end = t0 + duration
        stop = end + hold + 2 * call_timeout + 1.0
        next_call, next_ping = t0, t0
        made = pinged = 0
        while True:
            now = time.monotonic()
            if now >= stop:
                break
            if made < n_calls and now >= next_call:
                call_id = "legit-%d-%s" % (made, secrets.token_hex(4))
                call = LegitCall(siprec_invite(local, call_id, secrets.token_hex(4), body, content_type), now, call_timeout, hold)
                calls[call_id] = call
                send(call.data)
                made += 1
                next_call = t0 + made / call_rate
            if pinged < n_pings and now >= next_ping:
                call_id = "ping-%d-%s" % (pinged, secrets.token_hex(4))
                data = sip_request("OPTIONS", "sip:%s" % DOMAIN, local, call_id, secrets.token_hex(4), 1, to="<sip:%s>" % DOMAIN).to_bytes()
                pings[call_id] = time.time_ns()
                ping_sent_at[call_id] = now
                send(data)
                pinged += 1
                next_ping = t0 + pinged * ping_interval
            for call in calls.values():
                call.on_timer(now, send)
            for _ in range(READ_BATCH):
                try:
                    data, anc, _flags, _addr = sock.recvmsg(65535, 64)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    continue
                rx_ns = kernel_time_ns(anc)
                try:
                    msg = parse(data)
                    call_id = msg.call_id
                except Exception:
                    continue
                if isinstance(msg, Request):
                    if msg.method != "ACK":
                        send(response_to(msg, 200))
                    continue
                if call_id in pings:
                    if msg.status >= 200:
                        tx_ns = pings.pop(call_id)
                        sent_at = ping_sent_at.pop(call_id)
                        ping_statuses[msg.status] += 1
                        if time.monotonic() - sent_at > ping_timeout:
                            late += 1
                            latencies_ms.append(float("inf"))
                        else:
                            latencies_ms.append((rx_ns - tx_ns) / 1e6)
                    continue
                call = calls.get(call_id)
                if call is not None:
                    call.on_response(msg, time.monotonic(), local, send)
            # Pings past their timeout are lost.
            for call_id in [c for c, t in ping_sent_at.items() if now - t > ping_timeout]:
                del ping_sent_at[call_id], pings[call_id]
                latencies_ms.append(float("inf"))
            if made >= n_calls and pinged >= n_pings and not ping_sent_at and all(c.state in ("done", "failed") for c in calls.values()):
                break
            waits = [0.01]
            if made < n_calls:
                waits.append(next_call - now)
            if pinged < n_pings:
                waits.append(next_ping - now)
            wait_readable(sock, max(0.0, min(waits)))
        for call in calls.values():
            if call.state not in ("done", "failed"):
                call.outcome = "unfinished (%s)" % call.state
        sock.close()
        latencies_ms.sort()
        setups = sorted(c.setup_s * 1e3 for c in calls.values() if c.setup_s is not None)
        conn.send(
            {
                "calls": len(calls),
                "answered": sum(c.answered for c in calls.values()),
                "completed": sum(c.completed for c in calls.values()),
                "failures": dict(Counter(c.outcome for c in calls.values() if not c.completed)),
                "setup_p50_ms": percentile(setups, 0.5),
                "setup_max_ms": setups[-1] if setups else float("nan"),
                "pings": pinged,
                "ping_answered": sum(ping_statuses.values()) - late,
                "ping_statuses": dict(ping_statuses),
                "ping_lost": sum(1 for v in latencies_ms if v == float("inf")),
                "p50": percentile(latencies_ms, 0.5),
                "p99": percentile(latencies_ms, 0.99),
                "max": latencies_ms[-1] if latencies_ms else float("nan"),
                "send_errors": send_errors[0],
            }
        )
    except Exception as e:
        conn.send({"error": "%s: %s" % (e.__class__.__name__, e)})


# -- the application server (in this process, on a reactor thread) --------------------


class AppServer:
    """
    The customer's application: C{POST /newCall} -> C{{}}, C{POST /events}
    -> 200; counts both.  Runs Twisted's reactor on a daemon thread.
    """

    def __init__(self) -> None:
        from twisted.internet import reactor
        from twisted.web import resource, server

        self.counts: Counter[str] = Counter()
        counts = self.counts

        class App(resource.Resource):
            isLeaf = True

            def render_POST(self, request: Any) -> bytes:
                request.content.read()
                if request.path.endswith(b"/newCall"):
                    counts["newCall"] += 1
                    request.setHeader(b"content-type", b"application/json")
                    return b"{}"
                counts["events"] += 1
                return b""

        self._reactor = reactor
        self._port = reactor.listenTCP(0, server.Site(App()), interface=SERVER)
        self.port = self._port.getHost().port
        self._thread = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._reactor.callFromThread(self._reactor.stop)
        self._thread.join(5)


# -- the controller --------------------------------------------------------------------


def write_config(directory: Path, sip_port: int, app_port: int, rtp: tuple[int, int], log_level: str) -> Path:
    """
    A loopback configuration: SIP UDP+TCP on C{sip_port}, no TLS, no REST
    API, C{[limits]} at their defaults, one tenant calling back C{app_port}.
    """
    path = directory / "aiconnect.toml"
    path.write_text(
        f"""
[sip]
host = "{SERVER}"
public_address = "{SERVER}"
private_address = "{SERVER}"
udp_port = {sip_port}
tcp_port = {sip_port}
tls_port = 0

[tls]
certificate = "{directory / 'tls.crt'}"
private_key = "{directory / 'tls.key'}"

[rtp]
host = "{SERVER}"
port_min = {rtp[0]}
port_max = {rtp[1]}

[api]
host = "{SERVER}"
port = 0

[events]
database = "{directory / 'events.sqlite3'}"

[log]
level = "{log_level}"

[limits]

[[tenant]]
domain = "{DOMAIN}"
callback_url = "http://{SERVER}:{app_port}"
callback_timeout = 5.0
api_tokens = ["abuse-bench"]
signing_secret = "{SECRET}"
"""
    )
    return path


def start_server(directory: Path, config: Path, reactor_name: str) -> subprocess.Popen[bytes]:
    """
    C{twistd -n aiconnect --config FILE} in C{directory}, its output in
    C{server.log} there.  The repository is put first on C{PYTHONPATH} so
    that twistd finds the plugin even with an editable install.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    argv = [
        sys.executable,
        "-c",
        "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()",
        "--pidfile=",
        "--logger=aiconnect.logsetup.observer",
    ]
    if reactor_name != "default":
        argv.append("--reactor=" + reactor_name)
    argv += ["-n", "aiconnect", "--config", str(config)]
    log = open(directory / "server.log", "wb")
    try:
        return subprocess.Popen(argv, cwd=str(directory), env=env, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


def wait_ready(proc: subprocess.Popen[bytes], sip_port: int, timeout: float) -> bool:
    """
    Whether the server answers OPTIONS over UDP and accepts TCP within
    C{timeout} s.
    """
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LEGIT_SOURCE, 0))
        s.settimeout(0.5)
        local = s.getsockname()
        msg = sip_request("OPTIONS", "sip:%s" % DOMAIN, local, "ready-" + secrets.token_hex(4), "r", 1, to="<sip:%s>" % DOMAIN).to_bytes()
        while time.monotonic() < deadline and proc.poll() is None:
            s.sendto(msg, (SERVER, sip_port))
            try:
                if s.recv(65535).startswith(b"SIP/2.0 200"):
                    break
            except OSError:
                continue
        else:
            return False
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection((SERVER, sip_port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


def stop_process(proc: subprocess.Popen[bytes], grace: float) -> int | None:
    """
    SIGTERM, then SIGKILL after C{grace} s; the exit status (None if it
    would not die).
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                return None
    return proc.returncode


def receive(conns: dict[str, Connection], deadline: float, kind: type) -> dict[str, Any]:
    """
    The first message of type C{kind} from each worker (others are
    skipped), waiting at most until C{deadline} in all.
    """
    out: dict[str, Any] = {}
    for name, c in conns.items():
        for _ in range(10):
            try:
                if not c.poll(max(0.0, deadline - time.monotonic())):
                    break
                message = c.recv()
            except (EOFError, OSError):
                break
            if isinstance(message, kind):
                out[name] = message
                break
    return out


#: The server's log line for a rejected INVITE (aiconnect.siprec.srs).
REJECTED_RE = re.compile(r"INVITE rejected .*?status=(\d+) reason=([^\n]*)")


def run(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    """
    The whole run; returns the results and the exit status.
    """
    results: dict[str, Any] = {"nofile": raise_nofile()}
    idle = min(args.idle, max(0, results["nofile"] - FD_RESERVE))
    results["idle_requested"] = idle
    directory = Path(tempfile.mkdtemp(prefix="aiconnect-abuse-"))
    results["directory"] = str(directory)
    app = AppServer()
    proc: subprocess.Popen[bytes] | None = None
    workers: list[Any] = []
    status = 0
    try:
        sip_port = free_port()
        lo, _, hi = args.rtp_ports.partition("-")
        config = write_config(directory, sip_port, app.port, (int(lo), int(hi)), args.log_level)
        proc = start_server(directory, config, args.reactor)
        if not wait_ready(proc, sip_port, args.startup_timeout):
            code = proc.poll()
            if code is None:
                results["server_error"] = "did not answer OPTIONS and TCP within %.0f s" % (args.startup_timeout,)
            else:
                results["server_error"] = "exited with status %s before answering" % (code,)
            return results, 2
        ctx = mp.get_context("spawn")
        conns: dict[str, Connection] = {}
        t0 = time.monotonic() + 5.0  # the workers start in 1-2 s; all begin together at t0
        drain = 3.0
        specs = {
            "flood": (flood_main, (sip_port, args.flood_rate, t0, args.duration, drain)),
            "idle": (idle_main, (sip_port, idle, args.idle_rate, t0, args.duration)),
            "legit": (
                legit_main,
                (sip_port, t0, args.duration, args.call_rate, args.ping_interval, args.call_timeout, args.hold, args.ping_timeout),
            ),
        }
        for name, (target, wargs) in specs.items():
            parent, child = ctx.Pipe()
            p = ctx.Process(target=target, args=(child, *wargs), daemon=True)
            p.start()
            workers.append(p)
            conns[name] = parent
        ready = receive(conns, t0, str)
        results["not_ready"] = sorted(set(conns) - set(ready))
        sleep_until(t0)
        before = proc_status(proc.pid)
        sleep_until(t0 + args.duration)
        after = proc_status(proc.pid)
        hz = os.sysconf("SC_CLK_TCK")
        if before and after:
            results["cpu_s"] = (after["ticks"] - before["ticks"]) / hz
            results["rss_kib"] = after.get("VmRSS", 0)
            results["hwm_kib"] = after.get("VmHWM", 0)
        results["server_alive"] = proc.poll() is None
        if results["server_alive"]:
            results["server_idle_held"] = server_connections(proc.pid, sip_port, IDLE_SOURCE)
        finish = t0 + args.duration + drain + args.hold + 2 * args.call_timeout + 10.0
        results.update(receive(conns, finish, dict))
        for c in conns.values():
            try:
                c.send("done")  # the idle worker may now close its connections
            except OSError:
                pass
        results["app"] = dict(app.counts)
    finally:
        for p in workers:
            if p.is_alive():
                p.kill()
            p.join(5)
        if proc is not None:
            results["server_exit"] = stop_process(proc, 15.0)
        app.stop()
        log = directory / "server.log"
        if log.exists():
            text = log.read_text(errors="replace")
            results["log_tracebacks"] = text.count("Traceback (most recent call last)")
            results["log_rejections"] = Counter((st, why.strip()) for st, why in REJECTED_RE.findall(text))
            results["log_shut_down"] = "Server Shut Down" in text
            results["log_tail"] = text.splitlines()[-5:]
            results["log_lines"] = text.count("\n")
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    legit = results.get("legit", {})
    ok = bool(legit) and "error" not in legit and legit["calls"] > 0 and legit["answered"] == legit["calls"]
    ok = ok and legit["p99"] < GOAL_P99_MS
    if status == 0 and not ok:
        status = 1
    return results, status


# -- the table -------------------------------------------------------------------------


def _ms(v: float) -> str:
    if v != v:
        return "n/a"
    return "lost" if v == float("inf") else "%.1f" % v


def _pct(part: int, whole: int) -> str:
    return "%.1f %%" % (100.0 * part / whole) if whole else "n/a"


def print_table(args: argparse.Namespace, r: dict[str, Any], status: int) -> None:
    """
    The results as a Markdown table, then the notes.
    """
    rows: list[tuple[str, str, str]] = []
    na = "n/a"
    legit = r.get("legit", {})
    if "error" in legit or not legit:
        rows.append(("legitimate calls", "n/a (%s)" % legit.get("error", "no report"), "100 % answered"))
    else:
        rows.append(
            (
                "legitimate calls attempted / answered / completed (BYE 200)",
                "%d / %d / %d (%s answered)" % (legit["calls"], legit["answered"], legit["completed"], _pct(legit["answered"], legit["calls"])),
                "100 % answered",
            )
        )
        rows.append(("legitimate call setup (INVITE -> 200) p50 / max ms", "%s / %s" % (_ms(legit["setup_p50_ms"]), _ms(legit["setup_max_ms"])), ""))
        if legit["failures"]:
            rows.append(("legitimate call failures", ", ".join("%s x%d" % kv for kv in sorted(legit["failures"].items())), "none"))
        others = {k: v for k, v in legit["ping_statuses"].items() if k != 200}
        rows.append(
            (
                "OPTIONS sent / answered in time / lost",
                "%d / %d / %d%s" % (legit["pings"], legit["ping_answered"], legit["ping_lost"], " (non-200: %s)" % others if others else ""),
                "",
            )
        )
        rows.append(("OPTIONS latency p50 / p99 / max ms", "%s / %s / %s" % (_ms(legit["p50"]), _ms(legit["p99"]), _ms(legit["max"])), "p99 < %.0f" % GOAL_P99_MS))
    flood = r.get("flood", {})
    if "error" in flood or not flood:
        rows.append(("flood INVITEs", "n/a (%s)" % flood.get("error", "no report"), ""))
    else:
        rows.append(
            (
                "flood INVITEs sent / answered 503 / answered 2xx / other final / unanswered",
                "%d / %d / %d / %d / %d" % (flood["sent"], flood["answered_503"], flood["answered_2xx"], flood["answered_other"], flood["unanswered"]),
                "",
            )
        )
        if flood["other_statuses"] or flood["provisional_only"] or flood["send_errors"]:
            rows.append(
                (
                    "flood details",
                    "other finals %s; 1xx only %d; send errors %d"
                    % (flood["other_statuses"] or "{}", flood["provisional_only"], flood["send_errors"]),
                    "",
                )
            )
    idle = r.get("idle", {})
    if "error" in idle or not idle:
        rows.append(("idle TCP connections", "n/a (%s)" % idle.get("error", "no report"), ""))
    else:
        held = r.get("server_idle_held")
        rows.append(
            (
                "idle TCP connections requested / connected / held at end (client view; accepted by server)",
                "%d / %d / %d; %s" % (idle["requested"], idle["connected"], idle["held_at_end"], na if held is None else held),
                "",
            )
        )
        if idle["closed_by_server"] or idle["open_errors"]:
            first = idle["first_close_s"]
            rows.append(
                (
                    "idle TCP: closed by server (first at s) / open errors",
                    "%d (%s) / %s" % (idle["closed_by_server"], "%.1f" % first if first is not None else na, idle["open_errors"] or "{}"),
                    "",
                )
            )
    if "cpu_s" in r and r.get("rss_kib"):
        rows.append(("server CPU s over the %g s load / RSS MiB at end / peak" % args.duration,
                     "%.1f (%.0f %%) / %.0f / %.0f" % (r["cpu_s"], 100 * r["cpu_s"] / args.duration, r["rss_kib"] / 1024, r["hwm_kib"] / 1024), ""))  # fmt: skip
    elif "cpu_s" in r:
        rows.append(("server CPU s until it died / RSS", "%.1f / n/a" % r["cpu_s"], ""))
    else:
        rows.append(("server CPU / RSS", na, ""))
    app = r.get("app", {})
    rows.append(("app server newCall / events received", "%d / %d" % (app.get("newCall", 0), app.get("events", 0)), ""))
    rejections = r.get("log_rejections") or {}
    if rejections:
        top = sorted(rejections.items(), key=lambda kv: -kv[1])[:4]
        rows.append(("server log: INVITEs rejected (status, reason)", ", ".join("%s %s x%d" % (st, why, n) for (st, why), n in top), ""))
    code = r.get("server_exit", na)
    if code == -signal.SIGTERM and r.get("log_shut_down"):
        code = "stopped by SIGTERM, clean"  # twistd re-raises the signal after a clean stop
    rows.append(("server alive at end / exit / log tracebacks", "%s / %s / %s" % (r.get("server_alive", na), code, r.get("log_tracebacks", na)), ""))
    print()
    print("| measure | value | goal |")
    print("|---|---|---|")
    for name, value, goal in rows:
        print("| %s | %s | %s |" % (name, value, goal))
    print()
    if r.get("server_error"):
        print("server error: %s" % r["server_error"])
        for line in r.get("log_tail", []):
            print("  log: %s" % line)
    if r.get("not_ready"):
        print("workers not ready in time: %s" % ", ".join(r["not_ready"]))
    print("goal (100 %% of legitimate calls answered, OPTIONS p99 < %.0f ms): %s"
          % (GOAL_P99_MS, {0: "MET", 1: "NOT MET", 2: "not measured"}[status]))  # fmt: skip
    if args.keep:
        print("kept: %s (server.log, aiconnect.toml)" % r.get("directory"))


def machine() -> str:
    return "%d CPUs, %s %s, Python %s" % (os.cpu_count() or 0, platform.system(), platform.release(), platform.python_version())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--flood-rate", type=float, default=200.0, help="flood INVITEs per second from 127.0.0.2")
    parser.add_argument("--idle", type=int, default=500, help="idle TCP connections from 127.0.0.3 (bounded by RLIMIT_NOFILE)")
    parser.add_argument("--idle-rate", type=float, default=1000.0, help="idle connections opened per second")
    parser.add_argument("--call-rate", type=float, default=1.0, help="legitimate calls per second from 127.0.0.1")
    parser.add_argument("--ping-interval", type=float, default=0.1, help="seconds between OPTIONS pings")
    parser.add_argument("--call-timeout", type=float, default=5.0, help="seconds a legitimate INVITE or BYE may take")
    parser.add_argument("--hold", type=float, default=0.5, help="seconds between a legitimate call's ACK and its BYE")
    parser.add_argument("--ping-timeout", type=float, default=2.0, help="seconds after which a ping counts as lost")
    parser.add_argument("--rtp-ports", default="28000-32767", help="the server's RTP port range (outside the tests' 20000-27999)")
    parser.add_argument("--reactor", default="aiconnect-epoll", help="twistd --reactor ('default': twistd's own)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warn", "error"), help="the server's [log] level")
    parser.add_argument("--startup-timeout", type=float, default=30.0, help="seconds for the server to answer")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (config, server.log)")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 600:
        parser.error("--duration must be within 1..600 s")
    if args.flood_rate < 0 or args.flood_rate > 5000 or args.call_rate < 0 or args.call_rate > 50:
        parser.error("--flood-rate must be within 0..5000 and --call-rate within 0..50")
    if not 1 <= args.idle_rate <= 10000:
        parser.error("--idle-rate must be within 1..10000")
    if args.idle < 0 or args.ping_interval < 0.01 and args.ping_interval != 0:
        parser.error("--idle must be >= 0 and --ping-interval >= 0.01 s (0 = no pings)")
    lo, sep, hi = args.rtp_ports.partition("-")
    if not (sep and lo.isdigit() and hi.isdigit() and 1024 <= int(lo) < int(hi) <= 65535):
        parser.error("--rtp-ports must look like 28000-32767")
    print("# %s UTC, %s" % (datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"), machine()))
    print("# %g s: flood %g INVITE/s from %s, %d idle TCP from %s, %g call/s + OPTIONS every %g s from %s; [limits] defaults"
          % (args.duration, args.flood_rate, FLOOD_SOURCE, args.idle, IDLE_SOURCE, args.call_rate, args.ping_interval, LEGIT_SOURCE))  # fmt: skip
    sys.stdout.flush()
    results, status = run(args)
    if results.get("idle_requested", args.idle) < args.idle:
        print("# idle connections capped at %d by RLIMIT_NOFILE %d" % (results["idle_requested"], results["nofile"]))
    print_table(args, results, status)
    return status


if __name__ == "__main__":
    sys.exit(main())
