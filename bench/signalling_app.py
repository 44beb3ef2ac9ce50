#!/usr/bin/env python3
"""
The signalling benchmark's application (L{bench/signalling.py}), its own
process so that its CPU is not the server's:

    python bench/signalling_app.py PORT

C{POST /fwd/newCall} answers one C{startSIPRecForward} to
C{sip:srs@fwd.bench.test}; C{POST /in/newCall} answers C{{}} (inbound
only).  C{POST /*/events} notes, per event, its name and its delay: the
time it arrived here minus its C{timestamp} (both read on this machine's
clock).  C{GET /stats?since=N} returns the events from the Nth on as JSON
(C{[name, delay_s], ...}) and the newCall count, so the controller reads
each step's own share.  Every list is bounded (C{MAX_RECORDS}).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from typing import Any

from twisted.internet import reactor
from twisted.web import resource, server

ORDER = json.dumps({"startSIPRecForward": [{"uri": "sip:srs@fwd.bench.test"}]}).encode()
#: At most this many events are kept (a bench run is far below it).
MAX_RECORDS = 2_000_000


def delay_of(timestamp: str, now: float) -> float:
    """
    Seconds between the ISO-8601 UTC C{timestamp} and C{now}.
    """
    return now - datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


class App(resource.Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, float]] = []
        self.new_calls = 0

    def render_POST(self, request: Any) -> bytes:
        body = request.content.read()
        request.setHeader(b"content-type", b"application/json")
        if request.path.endswith(b"/newCall"):
            self.new_calls += 1
            return ORDER if request.path.startswith(b"/fwd/") else b"{}"
        now = time.time()
        event = json.loads(body)
        if len(self.events) < MAX_RECORDS:
            self.events.append((event["event"], round(delay_of(event["timestamp"], now), 4)))
        return b"{}"

    def render_GET(self, request: Any) -> bytes:
        since = int(request.args.get(b"since", [b"0"])[0])
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"newCalls": self.new_calls, "events": self.events[since:], "total": len(self.events)}).encode()


def main() -> None:
    reactor.listenTCP(int(sys.argv[1]), server.Site(App()), interface="127.0.0.1", backlog=1024)
    reactor.run()


if __name__ == "__main__":
    main()
