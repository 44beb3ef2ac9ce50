#!/usr/bin/env python3
# -*- test-case-name: tests.examples.test_app,tests.test_demo -*-
"""
An example application for AI Connect: start your own from this file.

AI Connect POSTs to the tenant's C{callback_url}:

    - C{/newCall} for every new inbound SIPRec session; the JSON answer
      says what to do with it. This app orders a SIPRec forward of every
      call to the C{--forward} URI(s) (C{sip:<trunk match>@<tenant domain>},
      see docs/api.md), or nothing when there is none.
    - C{/events} for each lifecycle event (SESSIONSTARTED,
      SIPRECFORWARDSTARTED, ... SESSIONCOMPLETED; see docs/events.md);
      this app prints them. Any 2xx answer means delivered.

Every request is signed per the Standard Webhooks specification with the
tenant's C{signing_secret}. This app checks every signature before it
reads the body, with the standard library only (L{verify_webhook}): a
request with a wrong, missing or stale signature is answered 401 and a
line says why. The secret is never printed.

    python examples/app.py --port 9000 --secret whsec_... --forward sip:recorder@demo.example.com

and in the AI Connect configuration (etc/aiconnect.toml):

    [[tenant]]
    domain = "demo.example.com"
    callback_url = "http://127.0.0.1:9000"
    signing_secret = "whsec_..."          # the same secret
      [[tenant.trunk]]
      match = "recorder"                  # the user part of --forward
      target = "srs.example.net"

The secret and the forward URIs may also come from the environment
(C{AICONNECT_SIGNING_SECRET}, C{AICONNECT_FORWARD}: URIs separated by
spaces). Needs Twisted and Klein only (both installed with AI Connect);
C{aiconnect-demo} runs this same code.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from klein import Klein

#: Seconds a request's C{webhook-timestamp} may be away from our clock
#: (the Standard Webhooks default: replays older than this are refused).
TOLERANCE = 300

#: The event fields printed for each event type (besides its type and
#: session); an event type not listed here is printed with all its fields.
KEY_FIELDS = {
    "SESSIONSTARTED": ("callId", "streams", "newCallError"),
    "SIPRECFORWARDSTARTED": ("forwardId", "target", "codec", "srtp"),
    "SIPRECFORWARDFAILED": ("forwardId", "reason", "status", "target"),
    "SIPRECFORWARDSTOPPED": ("forwardId", "stoppedBy", "reason"),
    "SIPRECFORWARDRESUMED": ("forwardId", "target", "previousTarget", "reason", "gapMs"),
    "SESSIONCOMPLETED": ("reason", "duration"),
}
#: The fields every event has (not repeated for unknown event types).
COMMON_FIELDS = ("event", "eventId", "sessionId", "tenant", "timestamp", "sequence")


def decode_secret(secret: str) -> bytes:
    """
    The HMAC key of a C{whsec_<base64>} signing secret.

    @raise ValueError: If the secret is not of that form (the message does
        not quote it).
    """
    if not secret.startswith("whsec_"):
        raise ValueError("the signing secret must start with whsec_")
    encoded = secret[len("whsec_") :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the signing secret is not whsec_ followed by base64") from None
    if not key:
        raise ValueError("the signing secret's key is empty")
    return key


def verify_webhook(key: bytes, headers: Mapping[str, str], body: bytes, now: float, tolerance: float = TOLERANCE) -> str | None:
    """
    Check a request's Standard Webhooks signature
    (U{https://www.standardwebhooks.com/}):
    C{webhook-signature} holds one or more space-separated C{v1,<base64>}
    values, each base64(HMAC-SHA256(key, C{"{webhook-id}.{webhook-timestamp}.{body}"})).

    @param key: The decoded signing secret (L{decode_secret}).
    @param headers: The request headers, names in lower case.
    @param body: The exact request body, as received.
    @param now: Our clock, Unix seconds.
    @param tolerance: The largest accepted distance between C{now} and
        C{webhook-timestamp}, in seconds.
    @return: C{None} when the request is authentic, else why not.
    """
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not (msg_id and stamp and signatures):
        return "unsigned: webhook-id, webhook-timestamp or webhook-signature missing"
    if not stamp.isdigit():
        return "webhook-timestamp is not a number"
    if abs(now - int(stamp)) > tolerance:
        return "stale: webhook-timestamp is %d s away from our clock" % abs(now - int(stamp))
    signed = msg_id.encode() + b"." + stamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode("ascii", "replace"), expected):
            return None
    return "bad signature"


def describe_event(event: Mapping[str, Any]) -> str:
    """
    One line for an event: its type, session and key fields.
    """
    kind = str(event.get("event"))
    names = KEY_FIELDS.get(kind) or tuple(n for n in event if n not in COMMON_FIELDS)
    fields = " ".join("%s=%s" % (n, _text(event[n])) for n in names if n in event)
    return ("%s session=%s %s" % (kind, event.get("sessionId"), fields)).rstrip()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _timestamped(text: str) -> None:
    now = time.time()
    print("%s.%03d %s" % (time.strftime("%H:%M:%S", time.localtime(now)), int(now * 1000) % 1000, text), flush=True)


class ExampleApp:
    """
    The application: C{app.resource()} serves C{POST /newCall} and
    C{POST /events}. Change L{new_call} and L{event} to make it yours.

    @ivar forward: The URIs every new call is forwarded to.
    @ivar new_calls: Every accepted newCall request, decoded.
    @ivar events: Every accepted event, in arrival order.
    @ivar rejected: How many requests were refused for their signature.
    """

    app = Klein()

    def __init__(
        self,
        secret: str,
        forward: list[str] | tuple[str, ...] = (),
        say: Callable[[str], None] = _timestamped,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """
        @param secret: The tenant's C{signing_secret} (C{whsec_...}).
        @param forward: The URIs to forward every call to.
        @param say: Where the lines go (default: stdout, with the time).
        @param clock: Unix time (for the timestamp check).
        @raise ValueError: If the secret is malformed.
        """
        self._key = decode_secret(secret)
        self.forward = list(forward)
        self._say = say
        self._clock = clock
        self._tickets = 0
        self.new_calls: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.rejected = 0

    # -- what to change ------------------------------------------------------

    def new_call(self, call: dict[str, Any]) -> dict[str, Any]:
        """
        The answer to a newCall: here, a C{startSIPRecForward} order to each
        C{forward} URI, with a reference of ours that AI Connect echoes in
        the forward's events.
        """
        orders = []
        for uri in self.forward:
            self._tickets += 1
            orders.append({"uri": uri, "sipRecForwardReferenceId": {"ticketId": self._tickets}})
        self._say(
            "newCall session=%s callId=%s -> %s"
            % (call.get("sessionId"), call.get("callId"), "startSIPRecForward " + " ".join(self.forward) if orders else "no order")
        )
        if not orders:
            return {}
        return {"startSIPRecForward": orders[0] if len(orders) == 1 else orders}

    def event(self, event: dict[str, Any]) -> None:
        """
        An event arrived (it may arrive twice: de-duplicate on C{eventId}).
        """
        self._say("event " + describe_event(event))

    # -- HTTP ----------------------------------------------------------------

    def _authentic(self, request: Any) -> Any:
        """
        The request's decoded JSON body, or C{None} after answering 401
        (bad signature) or 400 (not JSON).
        """
        body = request.content.read()
        headers = {k.decode("latin-1").lower(): v[0].decode("latin-1") for k, v in request.requestHeaders.getAllRawHeaders()}
        problem = verify_webhook(self._key, headers, body, self._clock())
        if problem is not None:
            self.rejected += 1
            self._say("401 for POST %s: %s" % (request.path.decode("latin-1"), problem))
            request.setResponseCode(401)
            return None
        try:
            data = json.loads(body)
        except ValueError:
            request.setResponseCode(400)
            return None
        return data

    @app.route("/newCall", methods=["POST"])
    def _post_new_call(self, request: Any) -> bytes:
        call = self._authentic(request)
        if call is None:
            return b""
        self.new_calls.append(call)
        request.setHeader("Content-Type", "application/json")
        return json.dumps(self.new_call(call)).encode()

    @app.route("/events", methods=["POST"])
    def _post_event(self, request: Any) -> bytes:
        event = self._authentic(request)
        if event is None:
            return b""
        self.events.append(event)
        self.event(event)
        return b""


def main(argv: list[str] | None = None) -> int:
    """
    Run the app until interrupted.
    """
    parser = argparse.ArgumentParser(description="AI Connect example application (newCall + events, signed).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9000, help="port to listen on (default 9000)")
    parser.add_argument("--secret", default=os.environ.get("AICONNECT_SIGNING_SECRET"), help="the tenant's signing_secret (whsec_...; default $AICONNECT_SIGNING_SECRET)")
    parser.add_argument(
        "--forward",
        action="append",
        default=None,
        help="forward every call to this URI, sip:<trunk match>@<tenant domain>; repeat for several (default $AICONNECT_FORWARD)",
    )
    args = parser.parse_args(argv)
    if not args.secret:
        parser.error("--secret (or AICONNECT_SIGNING_SECRET) is required")
    forward = args.forward if args.forward is not None else os.environ.get("AICONNECT_FORWARD", "").split()
    try:
        example = ExampleApp(args.secret, forward)
    except ValueError as e:
        parser.error(str(e))
    from twisted.internet import reactor
    from twisted.web.server import Site

    site = Site(example.app.resource())
    site.displayTracebacks = False
    port = reactor.listenTCP(args.port, site, interface=args.host)
    _timestamped("listening on http://%s:%d (POST /newCall, /events); forwarding to %s" % (args.host, port.getHost().port, " ".join(forward) or "nothing"))
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
