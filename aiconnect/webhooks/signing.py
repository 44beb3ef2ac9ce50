# -*- test-case-name: tests.webhooks.test_signing,tests.webhooks.test_delivery,tests.webhooks.test_newcall -*-
"""
What a receiver checks: the exact body bytes of a callback and their
Standard Webhooks signature (U{https://www.standardwebhooks.com/}).

This module owns the signing secret: its C{whsec_<base64>} form
(L{decode_secret}), the digest that tells a changed secret without keeping
it (L{secret_digest}), the C{webhook-id}, C{webhook-timestamp} (Unix
seconds) and C{webhook-signature} = C{v1,} + base64(HMAC-SHA256(key,
C{"{id}.{timestamp}.{body}"})) headers (L{sign}, L{signed_headers}), and
the compact UTF-8 JSON every body is sent as (L{encode_body}).  L{verify}
exists for tests and documentation; AI Connect never receives webhooks.

Signing secrets are never logged nor put into an exception message.

Pure module: standard library and L{aiconnect} value helpers only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from aiconnect import __version__
from aiconnect.text import replace_surrogates

__all__ = [
    "JSON_CONTENT_TYPE",
    "SECRET_PREFIX",
    "USER_AGENT",
    "decode_secret",
    "decode_signing_secret",
    "encode_body",
    "secret_digest",
    "sign",
    "signed_headers",
    "verify",
]

SECRET_PREFIX = "whsec_"
JSON_CONTENT_TYPE = "application/json"
USER_AGENT = "aiconnect/" + __version__


def decode_signing_secret(secret: str) -> bytes:
    """
    The HMAC key of a Standard Webhooks secret (C{whsec_} + base64,
    padding optional); the one implementation, used by the config check
    and by the webhook signer.

    @return: The key of a C{whsec_<base64>} secret.
    @raise ValueError: If it is not of that form (never quoting the secret).
    """
    prefix = SECRET_PREFIX
    if not secret.startswith(prefix):
        raise ValueError("must be of the form whsec_<base64>")
    encoded = secret[len(prefix) :]
    encoded += "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the part after whsec_ is not valid base64") from None
    if not key:
        raise ValueError("the key after whsec_ is empty")
    return key



def decode_secret(secret: str) -> bytes:
    """
    The HMAC key of a Standard Webhooks secret.

    @param secret: C{whsec_} followed by base64 (padding optional).
    @return: The decoded key.
    @raise ValueError: If the secret is not of that form (the message never
        contains the secret).
    """
    try:
        return decode_signing_secret(secret)
    except ValueError as e:
        raise ValueError("signing secret: %s" % (e,)) from None


def secret_digest(secret: str) -> str:
    """
    A digest that tells whether a signing secret changed, without keeping
    the secret (stored with a disabled endpoint).

    @param secret: The C{whsec_...} secret.
    @return: C{sha256:} and the hex SHA-256 of a fixed label and the secret.
    """
    return "sha256:" + hashlib.sha256(b"aiconnect disabled endpoint\0" + secret.encode("utf-8")).hexdigest()


def _signature(key: bytes | hmac.HMAC, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = key.copy() if isinstance(key, hmac.HMAC) else hmac.new(key, digestmod=hashlib.sha256)
    mac.update(b"%s.%d." % (msg_id.encode("utf-8"), timestamp))
    mac.update(body)
    return base64.b64encode(mac.digest()).decode("ascii")


@lru_cache(maxsize=256)
def _keyed(secret: str) -> hmac.HMAC:
    """
    The HMAC-SHA256 of a secret's key, keyed once (the key's pads hashed)
    and copied for each message; kept for the few configured secrets.

    @raise ValueError: If the secret is malformed (not kept).
    """
    return hmac.new(decode_secret(secret), digestmod=hashlib.sha256)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """
    The Standard Webhooks headers of one request.

    @param secret: The tenant's C{whsec_<base64>} secret.
    @param msg_id: The message id (an event's C{eventId}); the same on every
        attempt of one message.
    @param timestamp: The attempt's time, Unix seconds.
    @param body: The exact request body.
    @return: C{webhook-id}, C{webhook-timestamp} and C{webhook-signature}.
    @raise ValueError: If the secret is malformed.
    """
    signature = _signature(_keyed(secret), msg_id, timestamp, body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": "v1," + signature,
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance: float = 300.0,
) -> bool:
    """
    Check a Standard Webhooks signature, as a receiver does (for tests and
    the documentation).

    @param secret: The C{whsec_<base64>} secret.
    @param headers: The request headers (names in any case).
    @param body: The exact request body.
    @param now: The receiver's clock, Unix seconds.
    @param tolerance: Largest accepted distance between C{now} and
        C{webhook-timestamp}, in seconds.
    @return: Whether one of the C{v1} signatures (space-separated) matches
        and the timestamp is within the tolerance.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp", "")
    signatures = lowered.get("webhook-signature", "")
    if not msg_id or not stamp.isdigit():
        return False
    timestamp = int(stamp)
    if abs(now - timestamp) > tolerance:
        return False
    try:
        expected = _signature(decode_secret(secret), msg_id, timestamp, body)
    except ValueError:
        return False
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode("ascii", "replace"), expected.encode("ascii")):
            return True
    return False


def signed_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """
    Every header of one callback request: C{Content-Type}, C{User-Agent}
    and the L{sign} headers.

    @param secret: The tenant's C{whsec_<base64>} secret.
    @param msg_id: The message id (see L{sign}).
    @param timestamp: The attempt's time, Unix seconds.
    @param body: The exact request body.
    @return: The headers.
    @raise ValueError: If the secret is malformed.
    """
    headers = {"Content-Type": JSON_CONTENT_TYPE, "User-Agent": USER_AGENT}
    headers.update(sign(secret, msg_id, timestamp, body))
    return headers


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """
    The compact UTF-8 JSON of a callback or event body.

    A lone surrogate left in a string (SIP text is decoded with
    C{surrogateescape}; the builders decode it with
    L{aiconnect.text.decode_wire}, this is the safety net) is replaced by
    U+FFFD instead of failing: no event is lost to an undecodable byte.

    @param payload: The object.
    @return: The body.
    @raise TypeError: If C{payload} holds a value that is not JSON.
    @raise ValueError: If it holds a reference cycle.
    """
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return replace_surrogates(text).encode("utf-8")

