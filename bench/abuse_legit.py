"""
The abuse benchmark's legitimate traffic, run in its own process from
127.0.0.1 over UDP: SIPRec calls as an SRC makes them (L{LegitCall}:
INVITE -> 200 -> ACK -> BYE -> 200 with RFC 3261 retransmissions) and
OPTIONS pings timed by the kernel's receive time stamp (L{legit_main}).
"""

from __future__ import annotations

import secrets
import socket
import time
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any

from abuse_sip import DOMAIN, LEGIT_SOURCE, READ_BATCH, SERVER, T1, T2, response_to, sip_request, siprec_body, siprec_invite
from common import SO_TIMESTAMPNS, kernel_time_ns, percentile, sleep_until, wait_readable


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
        """
        A response to the INVITE or the BYE: ACK a 200 (each copy of it)
        and schedule the BYE, ACK a failure, end on the BYE's final.
        """
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
        """
        Retransmit (timers A and E), send the BYE after the hold, or fail
        the call at its deadline.
        """
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
