# -*- test-case-name: tests.webhooks -*-
"""
Application callbacks: the signed C{newCall} request and the durable,
ordered, at-least-once delivery of events (SPEC section 2, STYLE example 10).

One room per module, imports pointing down the list:

    - L{aiconnect.webhooks.signing}: Standard Webhooks signatures
      (L{sign}, L{verify}), the C{whsec_...} secret (L{decode_secret},
      L{secret_digest}) and the exact JSON body bytes.  Pure.
    - L{aiconnect.webhooks.http}: one POST through the injected
      treq-shaped client, its answer read up to a limit, within our own
      timeout on the injected reactor; a request on a pooled connection
      the server had closed is sent again at once, once;
      L{parse_retry_after}.
    - L{aiconnect.webhooks.outbox}: L{EventOutbox}, the SQLite outbox.
      L{EventOutbox.emit} only INSERTs (into the reactor turn's
      transaction, L{aiconnect.webhooks.database}) and
      returns; it never raises into the session code.  If the database
      fails, the event is still delivered from memory while the process
      lives (logged and counted).
    - L{aiconnect.webhooks.delivery}: L{EventDeliverer} sends each
      session's events in order, one at a time, to
      C{{callback_url}/events}, retrying with back-off until C{retry_for};
      a 410 disables the endpoint until its settings change;
      L{EventDeliveryService} is the C{webhooks} service of the
      composition root.
    - L{aiconnect.webhooks.newcall}: L{NewCallClient}, the signed C{POST
      {callback_url}/newCall} whose answer decides what to do with a new
      session; it always fires with a L{NewCallResult}, never with an
      error.

All timers go through the injected reactor (tests pass
C{twisted.internet.task.Clock}).  Signing secrets and request headers are
never logged.  This package re-exports the names other code imports, so
C{from aiconnect.webhooks import EventOutbox} keeps working.
"""

from __future__ import annotations

# JSON_CONTENT_TYPE, SECRET_PREFIX, USER_AGENT and MEMORY_DATABASE were
# public names of the former single module: still importable from here.
from aiconnect.webhooks.signing import (
    JSON_CONTENT_TYPE,
    SECRET_PREFIX,
    USER_AGENT,
    decode_secret,
    secret_digest,
    sign,
    verify,
)
from aiconnect.webhooks.http import WebhookTarget, parse_retry_after
from aiconnect.webhooks.outbox import MEMORY_DATABASE, SCHEMA_VERSION, EventOutbox, OutboxEvent
from aiconnect.webhooks.delivery import EventDeliverer, EventDeliveryService, tenants_by_domain
from aiconnect.webhooks.newcall import NewCallClient, NewCallResult

__all__ = [
    "SCHEMA_VERSION",
    "EventDeliverer",
    "EventDeliveryService",
    "EventOutbox",
    "NewCallClient",
    "NewCallResult",
    "OutboxEvent",
    "WebhookTarget",
    "decode_secret",
    "parse_retry_after",
    "secret_digest",
    "sign",
    "tenants_by_domain",
    "verify",
]
