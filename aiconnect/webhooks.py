# -*- test-case-name: tests.test_webhooks,tests.integration.test_webhooks_http -*-
"""
Application callbacks: the signed C{newCall} request and the durable,
ordered, at-least-once delivery of events (SPEC section 2, STYLE example 10).

Pieces:

    - L{sign} / L{verify}: Standard Webhooks signatures
      (U{https://www.standardwebhooks.com/}): C{webhook-id},
      C{webhook-timestamp} (Unix seconds) and C{webhook-signature} =
      C{v1,} + base64(HMAC-SHA256(key, C{"{id}.{timestamp}.{body}"})), the
      key being the base64 part of the tenant's C{whsec_...} secret.
      L{verify} exists for tests and documentation; AI Connect never
      receives webhooks.
    - L{EventOutbox}: the SQLite outbox.  L{EventOutbox.emit} only INSERTs
      (one short transaction) and returns; it never raises into the session
      code.  If the database fails, the event is still delivered from memory
      while the process lives (logged and counted).
    - L{EventDeliverer}: sends each session's events in order, one at a
      time, to C{{callback_url}/events}: 2xx = delivered; 410 = the
      endpoint is disabled until its C{callback_url} or C{signing_secret}
      changes (events are kept, not sent; the state survives restarts and
      shows as C{endpoints_disabled} in the deliverer's stats); a request
      on a pooled connection the server had closed is sent again at once,
      once; anything else (status, connection failure, timeout)
      = retried with exponential back-off and jitter, honouring
      C{Retry-After}, until C{retry_for} seconds after the event was
      created, then given up (logged at error level and counted; the row is
      kept, marked dead).  On start it loads every undelivered event, so a
      restart (kill -9 included) loses nothing.
    - L{NewCallClient}: the signed C{POST {callback_url}/newCall} whose
      answer decides what to do with a new session; it always fires with a
      L{NewCallResult}, never with an error.
    - L{EventDeliveryService}: the C{webhooks} service of the composition
      root.

All timers go through the injected reactor (tests pass
C{twisted.internet.task.Clock}); request timeouts are ours (C{Deferred.
addTimeout} on that reactor), not treq's.  Signing secrets and request
headers are never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random as _random
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from twisted.application import service
from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectError, ConnectionClosed, DNSLookupError
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol as _StreamProtocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    PotentialDataLoss,
    RequestNotSent,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseNeverReceived,
    _WrapperException,
)

from aiconnect.config import decode_signing_secret
from aiconnect import __version__
from aiconnect.events import new_id
from aiconnect.text import replace_surrogates

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

SCHEMA_VERSION = 2
MEMORY_DATABASE = ":memory:"
SECRET_PREFIX = "whsec_"
JSON_CONTENT_TYPE = "application/json"
USER_AGENT = "aiconnect/" + __version__

# Bodies read from the application: events' answers are discarded, newCall's
# answer is parsed.
_EVENT_REPLY_MAX = 64 * 1024
_NEW_CALL_REPLY_MAX = 1024 * 1024

_SCHEMA: dict[int, tuple[str, ...]] = {
    # version -> the statements taking a database from version - 1 to it.
    1: (
        """
        CREATE TABLE events (
            id           INTEGER PRIMARY KEY AUTOINCREMENT,
            tenant       TEXT    NOT NULL,
            session_id   TEXT    NOT NULL,
            seq          INTEGER NOT NULL,
            event_id     TEXT    NOT NULL UNIQUE,
            event        TEXT    NOT NULL,
            body         TEXT    NOT NULL,
            created      REAL    NOT NULL,
            attempts     INTEGER NOT NULL DEFAULT 0,
            next_attempt REAL    NOT NULL,
            delivered    REAL,
            dead         REAL,
            last_error   TEXT,
            UNIQUE (tenant, session_id, seq)
        )
        """,
        "CREATE INDEX events_pending ON events (id) WHERE delivered IS NULL AND dead IS NULL",
        """
        CREATE TABLE disabled_endpoints (
            tenant       TEXT PRIMARY KEY,
            callback_url TEXT NOT NULL,
            since        REAL NOT NULL
        )
        """,
    ),
    # A changed signing_secret enables a disabled endpoint again: remember a
    # digest of the secret that was in use (never the secret; NULL for rows
    # written by version 1: only the callback_url is compared for those).
    2: ("ALTER TABLE disabled_endpoints ADD COLUMN secret_digest TEXT",),
}


# --- Standard Webhooks signatures ---------------------------------------------


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


def _signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = b"%s.%d." % (msg_id.encode("utf-8"), timestamp) + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")


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
    signature = _signature(decode_secret(secret), msg_id, timestamp, body)
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


def parse_retry_after(value: str | None, now: float) -> float | None:
    """
    Parse a C{Retry-After} header (RFC 9110 s10.2.3).

    @param value: The header: delay seconds or an HTTP date; L{None} if
        absent.
    @param now: The current Unix time, for an HTTP date.
    @return: The delay in seconds (0 for a date in the past), or L{None}
        if absent or unparseable.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, moment.timestamp() - now)


# --- HTTP: one signed POST with our own timeout ---------------------------------


class WebhookTarget(Protocol):
    """
    What the callbacks need of a tenant (L{aiconnect.config.TenantConfig}
    provides it).
    """

    @property
    def callback_url(self) -> str:
        """
        Base URL, no trailing slash.
        """

    @property
    def signing_secret(self) -> str:
        """
        The C{whsec_<base64>} secret.
        """


class _BodyTooLarge(Exception):
    """
    The application's answer exceeded the size we read.
    """


@dataclass(frozen=True, slots=True)
class _Reply:
    """
    An HTTP answer.

    @ivar status: The status code.
    @ivar retry_after: The C{Retry-After} header, if any.
    @ivar body: The body, or L{None} if it could not be read.
    @ivar body_error: Why it could not be read, or L{None}.
    """

    status: int
    retry_after: str | None
    body: bytes | None
    body_error: str | None


class _BodyReader(_StreamProtocol):
    """
    Collect a response body up to a size limit; cancelling (our timeout)
    aborts the connection.
    """

    def __init__(self, limit: int) -> None:
        """
        @param limit: Most bytes accepted.
        """
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self._done = False
        self.finished: Deferred[bytes] = Deferred(self._cancel)

    def dataReceived(self, data: bytes) -> None:
        if self._done:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._done = True
            self._abort()
            self.finished.errback(_BodyTooLarge("body larger than %d bytes" % (self._limit,)))
            return
        self._parts.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._done:
            return
        self._done = True
        if reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(b"".join(self._parts))
        else:
            self.finished.errback(reason)

    def _cancel(self, d: Deferred[bytes]) -> None:
        if not self._done:
            self._done = True
            self._abort()

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()


def _read_reply(response: Any, limit: int) -> Deferred[_Reply]:
    status = int(response.code)
    values = response.headers.getRawHeaders(b"retry-after") or []
    retry_after = values[0].decode("latin-1") if values else None
    reader = _BodyReader(limit)
    response.deliverBody(reader)

    def read(body: bytes) -> _Reply:
        return _Reply(status, retry_after, body, None)

    def unreadable(failure: Failure) -> _Reply | Failure:
        if failure.check(CancelledError):
            return failure  # our timeout: let addTimeout turn it into TimeoutError
        return _Reply(status, retry_after, None, _describe(failure))

    return reader.finished.addCallbacks(read, unreadable)


def _stale_connection(failure: Failure) -> bool:
    """
    Whether a request failed because its pooled connection had been closed
    by the server (an HTTP/1.0 receiver closes after every answer, racing
    our reuse of the connection): not sent at all, or the connection was
    closed before any byte of an answer, and not by our own cancellation.
    """
    if failure.check(RequestNotSent):
        return True
    if not failure.check(ResponseNeverReceived, RequestTransmissionFailed):
        return False
    reasons = getattr(failure.value, "reasons", None) or []
    return bool(reasons) and all(
        isinstance(r, Failure) and r.check(ConnectionClosed) is not None and r.check(CancelledError) is None
        for r in reasons
    )


def _post(
    reactor: IReactorTime,
    http_client: Any,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,
    limit: int,
    stats: dict[str, int] | None = None,
) -> Deferred[_Reply]:
    """
    POST C{body}, read the answer, all within C{timeout} seconds on
    C{reactor}.  Redirects are not followed (a 3xx is an answer).  A request
    that fails because its pooled connection turned out closed (see
    L{_stale_connection}) is sent again at once, once, within the same
    timeout: that is no failure of the application.

    @param stats: Where C{stale_connection_retries} is counted, if given.
    @return: A L{Deferred} firing with the L{_Reply}, or failing with the
        connection error or L{defer.TimeoutError}.
    """

    def attempt() -> Deferred[Any]:
        return defer.maybeDeferred(
            http_client.post,
            url,
            data=body,
            headers=dict(headers),
            allow_redirects=False,
        )

    def again(failure: Failure) -> Deferred[Any] | Failure:
        if not _stale_connection(failure):
            return failure
        if stats is not None:
            stats["stale_connection_retries"] = stats.get("stale_connection_retries", 0) + 1
        return attempt()

    d = attempt()
    d.addErrback(again)
    d.addCallback(_read_reply, limit)
    d.addTimeout(timeout, reactor, onTimeoutCancel=_timed_out)
    return d


def _timed_out(result: Any, timeout: float) -> Any:
    """
    Whatever a cancelled request failed with (the agent wraps the
    cancellation in C{ResponseNeverReceived}), a timeout is a timeout.
    """
    if isinstance(result, Failure):
        return Failure(defer.TimeoutError("no answer within %g s" % (timeout,)))
    return result


def _describe(failure: Failure, timeout: float | None = None) -> str:
    """
    A short, secret-free description of a request failure.
    """
    if failure.check(defer.TimeoutError):
        return "timeout after %g s" % (timeout,) if timeout is not None else "timeout"
    if failure.check(CancelledError):
        return "cancelled"
    if failure.check(_BodyTooLarge):
        return str(failure.value)
    if failure.check(_WrapperException):
        reasons = getattr(failure.value, "reasons", None) or []
        if reasons and isinstance(reasons[0], Failure):
            return _describe(reasons[0], timeout)
    if failure.check(DNSLookupError):
        return "DNS lookup failed: " + failure.getErrorMessage()
    if failure.check(ConnectError):
        return "connection failed: " + failure.getErrorMessage()
    return "%s: %s" % (failure.type.__name__, failure.getErrorMessage())


def _signed_headers(tenant: WebhookTarget, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    headers = {"Content-Type": JSON_CONTENT_TYPE, "User-Agent": USER_AGENT}
    headers.update(sign(tenant.signing_secret, msg_id, timestamp, body))
    return headers


def _encode(payload: Mapping[str, Any]) -> bytes:
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


# --- the outbox ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """
    One stored event and its delivery state.

    @ivar row_id: The database row, or L{None} for an event the database
        could not store (kept in memory only).
    @ivar tenant: The tenant's domain.
    @ivar session_id: The session.
    @ivar seq: Its place in the session, from 1.
    @ivar event_id: The C{eventId} (and C{webhook-id}).
    @ivar event: The event name (for logs).
    @ivar body: The exact JSON body sent.
    @ivar created: When it was emitted (Unix seconds); C{retry_for} counts
        from here.
    @ivar attempts: Delivery attempts so far.
    @ivar next_attempt: Not sent before this time (Unix seconds).
    """

    row_id: int | None
    tenant: str
    session_id: str
    seq: int
    event_id: str
    event: str
    body: bytes = field(repr=False)
    created: float
    attempts: int = 0
    next_attempt: float = 0.0

    @property
    def key(self) -> tuple[str, str]:
        """
        The ordering key: C{(tenant, session_id)}.
        """
        return (self.tenant, self.session_id)


class EventOutbox:
    """
    The durable outbox: one SQLite database (WAL journal).

    Durability: every L{emit} is one committed transaction.  With the default
    C{synchronous=NORMAL} in WAL mode a committed event survives the process
    being killed (kill -9: the WAL is in the operating system's hands); only
    an operating-system crash or power loss may lose the last transactions.
    C{synchronous="FULL"} survives those too, at the price of an fsync per
    event on the reactor thread.

    @ivar stats: Counters: C{emitted} (stored), C{memory_only} (the database
        failed; delivered from memory while the process lives),
        C{rejected} (not JSON, or our bug: not delivered at all) and
        C{db_errors} (failed state updates).
    """

    log = Logger()

    def __init__(
        self,
        path: str,
        *,
        clock: Callable[[], float] = time.time,
        synchronous: str = "NORMAL",
        busy_timeout: float = 0.5,
    ) -> None:
        """
        Open (or create) the database, its parent directories and schema.

        @param path: The database file, or C{":memory:"} (tests only).
        @param clock: Returns the current Unix time (C{reactor.seconds}).
        @param synchronous: SQLite C{synchronous} mode, C{"NORMAL"} or
            C{"FULL"}.
        @param busy_timeout: Seconds an insert waits for a lock held by
            another connection before falling back to memory.
        @raise sqlite3.Error: If the database cannot be opened or has a
            newer schema than this code knows.
        @raise OSError: If the parent directory cannot be created.
        """
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be NORMAL or FULL")
        if path != MEMORY_DATABASE:
            parent = os.path.dirname(os.path.abspath(path))
            os.makedirs(parent, exist_ok=True)
        self.path = path
        self._clock = clock
        self._db: sqlite3.Connection | None = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=" + synchronous)
        self._migrate()
        self._listeners: list[Callable[[OutboxEvent], None]] = []
        self._memory_seq: dict[tuple[str, str], int] = {}
        self.stats = {"emitted": 0, "memory_only": 0, "rejected": 0, "db_errors": 0}

    def _migrate(self) -> None:
        assert self._db is not None
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            self._db.close()
            self._db = None
            raise sqlite3.DatabaseError(
                "event outbox %s has schema version %d; this AI Connect knows up to %d"
                % (self.path, version, SCHEMA_VERSION)
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA[target]:
                    self._db.execute(statement)
                self._db.execute("PRAGMA user_version=%d" % (target,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        """
        The database's schema version (C{PRAGMA user_version}).
        """
        return int(self._conn().execute("PRAGMA user_version").fetchone()[0])

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.ProgrammingError("the event outbox is closed")
        return self._db

    def add_listener(self, listener: Callable[[OutboxEvent], None]) -> None:
        """
        Be told of every event emitted from now on (the deliverer).

        @param listener: Called synchronously inside L{emit}; must not raise
            and must not block (schedule work instead).
        """
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[OutboxEvent], None]) -> None:
        """
        Undo L{add_listener}; unknown listeners are ignored.
        """
        if listener in self._listeners:
            self._listeners.remove(listener)

    def emit(self, tenant: str, session_id: str, payload: Mapping[str, Any]) -> str | None:
        """
        Store an event for delivery; return at once, never raise.

        The stored body is C{payload} with C{sessionId} and C{eventId} filled
        in when missing and C{sequence} (1, 2, ... per session) added.

        @param tenant: The tenant's domain (the key of the deliverer's
            tenants).
        @param session_id: The session; its events are delivered in this
            order.
        @param payload: The event object (L{aiconnect.events} builders).
        @return: The C{eventId}; L{None} if the payload is not JSON (logged
            at error level and counted as C{rejected}).
        """
        try:
            return self._emit(tenant, session_id, payload)
        except Exception:
            self.log.failure(
                "Event outbox bug; event of session {session_id} not stored",
                tenant=tenant,
                session_id=session_id,
            )
            self.stats["rejected"] += 1
            return None

    def _emit(self, tenant: str, session_id: str, payload: Mapping[str, Any]) -> str | None:
        now = self._clock()
        data = dict(payload)
        data.setdefault("sessionId", session_id)
        event_id = data.get("eventId")
        if not isinstance(event_id, str) or not event_id:
            event_id = new_id("evt_", now)
            data["eventId"] = event_id
        name = str(data.get("event", ""))
        try:
            _encode(data)
        except (TypeError, ValueError) as e:
            self.log.error(
                "Event {event_id} ({event}) of session {session_id} is not JSON, not stored: {reason}",
                tenant=tenant,
                session_id=session_id,
                event_id=event_id,
                event=name,
                reason=str(e),
            )
            self.stats["rejected"] += 1
            return None
        key = (tenant, session_id)
        row_id: int | None
        try:
            row_id, seq, body = self._insert(tenant, session_id, event_id, name, data, now)
            self.stats["emitted"] += 1
        except sqlite3.IntegrityError:
            # The same eventId emitted twice: the first one is delivered.
            self.log.warn(
                "Event {event_id} of session {session_id} emitted twice; ignored",
                tenant=tenant,
                session_id=session_id,
                event_id=event_id,
            )
            return event_id
        except sqlite3.Error as e:
            seq = self._fallback_seq(key)
            data["sequence"] = seq
            body = _encode(data)
            row_id = None
            self.stats["memory_only"] += 1
            self.log.error(
                "Event outbox write failed ({reason}); event {event_id} ({event}) of session "
                "{session_id} is kept in memory only and lost if the process stops before delivery",
                tenant=tenant,
                session_id=session_id,
                event_id=event_id,
                event=name,
                reason=str(e),
            )
        event = OutboxEvent(
            row_id=row_id,
            tenant=tenant,
            session_id=session_id,
            seq=seq,
            event_id=event_id,
            event=name,
            body=body,
            created=now,
            attempts=0,
            next_attempt=now,
        )
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                self.log.failure("Event outbox listener failed", event_id=event_id)
        return event_id

    def _insert(
        self, tenant: str, session_id: str, event_id: str, name: str, data: dict[str, Any], now: float
    ) -> tuple[int, int, bytes]:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE tenant = ? AND session_id = ?",
                (tenant, session_id),
            ).fetchone()
            seq = max(int(row[0]), self._memory_seq.get((tenant, session_id), 0)) + 1
            data["sequence"] = seq
            body = _encode(data)
            cursor = db.execute(
                "INSERT INTO events (tenant, session_id, seq, event_id, event, body, created, next_attempt)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (tenant, session_id, seq, event_id, name, body.decode("utf-8"), now, now),
            )
            db.execute("COMMIT")
        except BaseException:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        if (tenant, session_id) in self._memory_seq:
            self._memory_seq[(tenant, session_id)] = seq
        assert cursor.lastrowid is not None
        return cursor.lastrowid, seq, body

    def _fallback_seq(self, key: tuple[str, str]) -> int:
        last = self._memory_seq.get(key)
        if last is None:
            last = 0
            try:
                row = self._conn().execute(
                    "SELECT COALESCE(MAX(seq), 0) FROM events WHERE tenant = ? AND session_id = ?", key
                ).fetchone()
                last = int(row[0])
            except sqlite3.Error:
                pass
        self._memory_seq[key] = last + 1
        return last + 1

    def pending(self) -> list[OutboxEvent]:
        """
        Every stored event neither delivered nor given up, oldest first.

        @return: The events; empty (and logged) if the database fails.
        """
        try:
            rows = self._conn().execute(
                "SELECT id, tenant, session_id, seq, event_id, event, body, created, attempts, next_attempt"
                " FROM events WHERE delivered IS NULL AND dead IS NULL ORDER BY id"
            ).fetchall()
        except sqlite3.Error:
            self.log.failure("Event outbox: cannot read pending events")
            self.stats["db_errors"] += 1
            return []
        return [
            OutboxEvent(
                row_id=r[0],
                tenant=r[1],
                session_id=r[2],
                seq=r[3],
                event_id=r[4],
                event=r[5],
                body=r[6].encode("utf-8"),
                created=r[7],
                attempts=r[8],
                next_attempt=r[9],
            )
            for r in rows
        ]

    def _write(self, sql: str, args: tuple[Any, ...]) -> int:
        try:
            return self._conn().execute(sql, args).rowcount
        except sqlite3.Error as e:
            self.stats["db_errors"] += 1
            self.log.error("Event outbox update failed: {reason}", reason=str(e))
            return 0

    def mark_delivered(self, event: OutboxEvent, now: float) -> None:
        """
        Record a delivery.

        @param event: The event.
        @param now: When (Unix seconds).
        """
        if event.row_id is not None:
            self._write(
                "UPDATE events SET delivered = ?, attempts = ?, last_error = NULL WHERE id = ?",
                (now, event.attempts, event.row_id),
            )

    def mark_attempt(self, event: OutboxEvent, error: str) -> None:
        """
        Record a failed attempt and when the next one is due.

        @param event: The event, with its new C{attempts} and
            C{next_attempt}.
        @param error: What went wrong.
        """
        if event.row_id is not None:
            self._write(
                "UPDATE events SET attempts = ?, next_attempt = ?, last_error = ? WHERE id = ?",
                (event.attempts, event.next_attempt, error, event.row_id),
            )

    def mark_dead(self, event: OutboxEvent, now: float, error: str) -> None:
        """
        Record that an event was given up (kept in the database).

        @param event: The event.
        @param now: When (Unix seconds).
        @param error: The last failure.
        """
        if event.row_id is not None:
            self._write(
                "UPDATE events SET dead = ?, attempts = ?, last_error = ? WHERE id = ?",
                (now, event.attempts, error, event.row_id),
            )

    def disabled_endpoints(self) -> dict[str, tuple[str, str | None]]:
        """
        @return: Tenant domain -> (the C{callback_url} that answered 410,
            the L{secret_digest} of the signing secret then in use, or
            L{None} if not recorded).
        """
        try:
            rows = self._conn().execute(
                "SELECT tenant, callback_url, secret_digest FROM disabled_endpoints"
            ).fetchall()
        except sqlite3.Error:
            self.log.failure("Event outbox: cannot read disabled endpoints")
            self.stats["db_errors"] += 1
            return {}
        return {tenant: (url, digest) for tenant, url, digest in rows}

    def set_disabled(self, tenant: str, callback_url: str, now: float, secret_digest: str | None = None) -> None:
        """
        Remember that a tenant's endpoint answered 410.

        @param tenant: The tenant's domain.
        @param callback_url: Its C{callback_url} then.
        @param now: When (Unix seconds).
        @param secret_digest: The L{secret_digest} of its signing secret
            then.
        """
        self._write(
            "INSERT OR REPLACE INTO disabled_endpoints (tenant, callback_url, since, secret_digest)"
            " VALUES (?, ?, ?, ?)",
            (tenant, callback_url, now, secret_digest),
        )

    def clear_disabled(self, tenant: str) -> None:
        """
        Forget that a tenant's endpoint was disabled.
        """
        self._write("DELETE FROM disabled_endpoints WHERE tenant = ?", (tenant,))

    def purge(self, delivered_before: float, dead_before: float) -> int:
        """
        Delete delivered and given-up events older than the given times.

        @return: The number of rows deleted.
        """
        return self._write(
            "DELETE FROM events WHERE (delivered IS NOT NULL AND delivered < ?) OR (dead IS NOT NULL AND dead < ?)",
            (delivered_before, dead_before),
        )

    def counts(self) -> dict[str, int]:
        """
        @return: Stored events by state: C{pending}, C{delivered}, C{dead}
            (zeros if the database fails).
        """
        try:
            row = self._conn().execute(
                "SELECT SUM(delivered IS NULL AND dead IS NULL), SUM(delivered IS NOT NULL),"
                " SUM(dead IS NOT NULL) FROM events"
            ).fetchone()
        except sqlite3.Error:
            self.stats["db_errors"] += 1
            return {"pending": 0, "delivered": 0, "dead": 0}
        return {"pending": row[0] or 0, "delivered": row[1] or 0, "dead": row[2] or 0}

    def close(self) -> None:
        """
        Close the database; later calls to L{emit} keep events in memory.
        """
        if self._db is not None:
            self._db.close()
            self._db = None


# --- the deliverer -------------------------------------------------------------


@dataclass(slots=True)
class _Lane:
    """
    The queue of one session.

    @ivar events: Undelivered events, in order; the first is the one being
        (or next to be) sent.
    @ivar timer: The scheduled next look at this lane.
    @ivar request: The request in flight.
    """

    events: deque[OutboxEvent] = field(default_factory=deque)
    timer: IDelayedCall | None = None
    request: Deferred[Any] | None = None


class EventDeliverer:
    """
    Deliver the outbox's events: per session in order and serially (an event
    is sent only once the previous one of its session was delivered or given
    up); sessions independently, at most C{max_in_flight} requests at once.

    Back-off after a failed attempt n (1, 2, ...) is C{min(backoff_max,
    backoff_base * 2 ** (n - 1))}, reduced by up to C{backoff_jitter}
    (a fraction, random); a C{Retry-After} answer replaces it exactly.
    The last retry is moved to the C{retry_for} deadline; a failure at or
    after it gives the event up, as does a C{Retry-After} beyond it.  An
    event loaded after a restart gets at least one attempt, however old.

    @ivar stats: Counters: C{attempts}, C{delivered}, C{retried} (failed
        attempts followed by a retry), C{dead} (given up), C{disabled}
        (410 answers), C{stale_connection_retries} (attempts repeated at
        once because a pooled connection turned out closed); and the gauge
        C{endpoints_disabled}: tenants whose endpoint is disabled now,
        including a disabled state restored at start.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        outbox: EventOutbox,
        tenants: Mapping[str, WebhookTarget],
        *,
        http_client: Any = None,
        retry_for: float = 86400.0,
        backoff_base: float = 1.0,
        backoff_max: float = 300.0,
        backoff_jitter: float = 0.25,
        request_timeout: float = 10.0,
        max_in_flight: int = 32,
        random: Callable[[], float] = _random.random,
        keep_delivered: float = 86400.0,
        keep_dead: float = 30 * 86400.0,
        purge_interval: float = 3600.0,
    ) -> None:
        """
        @param reactor: For every timer and timeout.
        @param outbox: The outbox to deliver from.
        @param tenants: Tenant domain -> its callback settings.
        @param http_client: treq-shaped (C{post(url, data=, headers=,
            allow_redirects=)}); the C{treq} module when L{None}.
        @param retry_for: Seconds after its creation an event is retried.
        @param backoff_base: First retry delay, seconds.
        @param backoff_max: Largest retry delay, seconds.
        @param backoff_jitter: Fraction (0..1) by which a delay is randomly
            shortened.
        @param request_timeout: Seconds for one attempt (connect, send,
            answer).
        @param max_in_flight: Most concurrent requests.
        @param random: Returns a float in [0, 1) (tests fix it).
        @param keep_delivered: Seconds delivered events stay in the
            database.
        @param keep_dead: Seconds given-up events stay in the database.
        @param purge_interval: Seconds between purges.
        """
        if http_client is None:
            import treq as http_client
        self._reactor = reactor
        self._outbox = outbox
        self._tenants: dict[str, WebhookTarget] = dict(tenants)
        self._http = http_client
        self._retry_for = retry_for
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._backoff_jitter = backoff_jitter
        self._request_timeout = request_timeout
        self._max_in_flight = max(1, max_in_flight)
        self._random = random
        self._keep_delivered = keep_delivered
        self._keep_dead = keep_dead
        self._purge_interval = purge_interval
        self._running = False
        self._generation = 0
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._ready: deque[tuple[str, str]] = deque()
        self._in_flight = 0
        # Tenant domain -> (callback_url, secret digest or None) of a 410.
        self._disabled: dict[str, tuple[str, str | None]] = {}
        self._warned_unknown: set[str] = set()
        self._idle_waiters: list[tuple[Deferred[bool], IDelayedCall]] = []
        self._purge_timer: IDelayedCall | None = None
        self.stats = {
            "attempts": 0,
            "delivered": 0,
            "retried": 0,
            "dead": 0,
            "disabled": 0,
            "stale_connection_retries": 0,
            "endpoints_disabled": 0,
        }

    # -- control --

    @property
    def running(self) -> bool:
        """
        Whether L{start} was called and L{stop} was not.
        """
        return self._running

    @property
    def pending(self) -> int:
        """
        Events queued in this process (undelivered, not given up).
        """
        return sum(len(lane.events) for lane in self._lanes.values())

    def disabled(self) -> dict[str, str]:
        """
        @return: Tenant domain -> the C{callback_url} disabled by a 410.
        """
        return {domain: url for domain, (url, _) in self._disabled.items()}

    def start(self) -> None:
        """
        Load every undelivered event from the outbox and deliver; from now on
        deliver every event emitted.
        """
        if self._running:
            return
        self._running = True
        self._restore_disabled()
        loaded = self._outbox.pending()
        for event in loaded:
            self._lane(event.key).events.append(event)
        if loaded:
            self.log.info(
                "Event outbox: {count} undelivered event(s) of {sessions} session(s) to deliver",
                count=len(loaded),
                sessions=len(self._lanes),
            )
        self._outbox.add_listener(self._on_emit)
        for key in list(self._lanes):
            self._schedule(key, 0.0)
        self._purge_timer = self._reactor.callLater(0, self._purge)

    def stop(self) -> None:
        """
        Cancel every timer and request in flight (their events stay in the
        outbox for the next start) and stop taking new events.
        """
        if not self._running:
            return
        self._running = False
        self._generation += 1
        self._outbox.remove_listener(self._on_emit)
        if self._purge_timer is not None and self._purge_timer.active():
            self._purge_timer.cancel()
        self._purge_timer = None
        lanes, self._lanes = self._lanes, {}
        for lane in lanes.values():
            if lane.timer is not None and lane.timer.active():
                lane.timer.cancel()
            lane.timer = None
            if lane.request is not None:
                request, lane.request = lane.request, None
                request.cancel()
        self._ready.clear()
        self._in_flight = 0
        waiters, self._idle_waiters = self._idle_waiters, []
        for d, timer in waiters:
            if timer.active():
                timer.cancel()
            d.callback(False)

    def drain(self, timeout: float) -> Deferred[bool]:
        """
        Wait until nothing is left to send (every queue empty, or held
        because its endpoint is disabled or its tenant unknown).

        @param timeout: Most seconds to wait.
        @return: Fires with C{True} when idle, C{False} on timeout or
            L{stop}.
        """
        if not self._running or self._is_idle():
            return defer.succeed(self._running)
        d: Deferred[bool] = Deferred()

        def expired() -> None:
            self._idle_waiters[:] = [(w, t) for (w, t) in self._idle_waiters if w is not d]
            d.callback(False)

        timer = self._reactor.callLater(timeout, expired)
        self._idle_waiters.append((d, timer))
        return d

    def update_tenants(self, tenants: Mapping[str, WebhookTarget]) -> None:
        """
        Take new tenant settings (a configuration reload): an endpoint
        disabled by a 410 is enabled again if its C{callback_url} or
        C{signing_secret} changed, and held events are looked at again.

        @param tenants: Tenant domain -> its callback settings.
        """
        self._tenants = dict(tenants)
        self._warned_unknown.clear()
        for domain, (url, digest) in list(self._disabled.items()):
            if self._configuration_changed(domain, url, digest):
                self._enable(domain)
        if self._running:
            for key, lane in list(self._lanes.items()):
                if lane.timer is None and lane.request is None:
                    self._schedule(key, 0.0)

    # -- internals --

    def _configuration_changed(self, domain: str, url: str, digest: str | None) -> bool:
        """
        Whether a tenant's callback settings differ from those of its 410
        (a tenant no longer configured counts as changed).
        """
        tenant = self._tenants.get(domain)
        if tenant is None or tenant.callback_url != url:
            return True
        return digest is not None and digest != secret_digest(tenant.signing_secret)

    def _enable(self, domain: str) -> None:
        self._disabled.pop(domain, None)
        self.stats["endpoints_disabled"] = len(self._disabled)
        self._outbox.clear_disabled(domain)
        self.log.info(
            "Event endpoint of tenant {tenant} enabled again (callback_url or signing_secret changed "
            "since its 410); held events are sent",
            tenant=domain,
        )

    def _restore_disabled(self) -> None:
        for domain, (url, digest) in self._outbox.disabled_endpoints().items():
            if self._configuration_changed(domain, url, digest):
                self._enable(domain)
                continue
            self._disabled[domain] = (url, digest)
            self.log.warn(
                "Event endpoint {url} of tenant {tenant} is disabled (it answered 410); "
                "events are kept until its callback_url or signing_secret changes",
                tenant=domain,
                url=url + "/events",
            )
        self.stats["endpoints_disabled"] = len(self._disabled)

    def _lane(self, key: tuple[str, str]) -> _Lane:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        return lane

    def _on_emit(self, event: OutboxEvent) -> None:
        if not self._running:
            return
        lane = self._lane(event.key)
        lane.events.append(event)
        if lane.timer is None and lane.request is None:
            self._schedule(event.key, 0.0)

    def _schedule(self, key: tuple[str, str], delay: float) -> None:
        lane = self._lanes[key]
        if lane.timer is not None and lane.timer.active():
            lane.timer.cancel()
        lane.timer = self._reactor.callLater(max(0.0, delay), self._fire, key)

    def _fire(self, key: tuple[str, str]) -> None:
        lane = self._lanes.get(key)
        if lane is None:
            return
        lane.timer = None
        try:
            self._kick(key, lane)
        except Exception:
            self.log.failure("Event deliverer bug", session_id=key[1], tenant=key[0])

    def _held(self, tenant: str) -> bool:
        return tenant in self._disabled or tenant not in self._tenants

    def _kick(self, key: tuple[str, str], lane: _Lane) -> None:
        if not self._running or lane.request is not None or lane.timer is not None:
            return
        if not lane.events:
            del self._lanes[key]
            self._check_idle()
            return
        event = lane.events[0]
        tenant = self._tenants.get(event.tenant)
        if tenant is None:
            if event.tenant not in self._warned_unknown:
                self._warned_unknown.add(event.tenant)
                self.log.warn(
                    "Events of unknown tenant {tenant} are kept, not sent (no such tenant configured)",
                    tenant=event.tenant,
                )
            self._check_idle()
            return
        if event.tenant in self._disabled:
            self._check_idle()
            return
        now = self._reactor.seconds()
        if event.next_attempt > now:
            self._schedule(key, event.next_attempt - now)
            return
        if self._in_flight >= self._max_in_flight:
            if key not in self._ready:
                self._ready.append(key)
            return
        self._send(key, lane, event, tenant, now)

    def _send(self, key: tuple[str, str], lane: _Lane, event: OutboxEvent, tenant: WebhookTarget, now: float) -> None:
        event = replace(event, attempts=event.attempts + 1)
        lane.events[0] = event
        self._in_flight += 1
        self.stats["attempts"] += 1
        generation = self._generation
        url = tenant.callback_url + "/events"
        try:
            headers = _signed_headers(tenant, event.event_id, int(now), event.body)
            d = _post(
                self._reactor, self._http, url, event.body, headers, self._request_timeout, _EVENT_REPLY_MAX, self.stats
            )
        except Exception:
            self.log.failure("Event deliverer bug while sending", event_id=event.event_id)
            d = defer.fail(RuntimeError("internal error"))
        lane.request = d
        d.addCallbacks(
            self._on_reply,
            self._on_failure,
            callbackArgs=(key, lane, generation, url),
            errbackArgs=(key, lane, generation, url),
        )
        d.addErrback(self._bug, event.event_id)

    def _bug(self, failure: Failure, event_id: str) -> None:
        self.log.failure("Event deliverer bug", failure, event_id=event_id)

    def _finish_request(self, lane: _Lane, generation: int) -> bool:
        """
        Account for a finished request.

        @return: Whether its outcome is still wanted (no L{stop} since).
        """
        if generation != self._generation:
            return False
        lane.request = None
        self._in_flight -= 1
        while self._ready and self._in_flight < self._max_in_flight:
            other = self._ready.popleft()
            waiting = self._lanes.get(other)
            if waiting is not None and waiting.timer is None and waiting.request is None:
                self._schedule(other, 0.0)
        return True

    def _on_reply(self, reply: _Reply, key: tuple[str, str], lane: _Lane, generation: int, url: str) -> None:
        if not self._finish_request(lane, generation):
            return
        event = lane.events[0]
        now = self._reactor.seconds()
        if 200 <= reply.status < 300:
            self._outbox.mark_delivered(event, now)
            lane.events.popleft()
            self.stats["delivered"] += 1
            self.log.debug(
                "Event {event_id} ({event}) of session {session_id} delivered (attempt {attempts})",
                tenant=event.tenant,
                session_id=event.session_id,
                event_id=event.event_id,
                event=event.event,
                attempts=event.attempts,
            )
            self._schedule(key, 0.0)
        elif reply.status == 410:
            tenant = self._tenants.get(event.tenant)
            callback_url = tenant.callback_url if tenant is not None else url[: -len("/events")]
            digest = secret_digest(tenant.signing_secret) if tenant is not None else None
            self._disabled[event.tenant] = (callback_url, digest)
            self.stats["endpoints_disabled"] = len(self._disabled)
            self._outbox.set_disabled(event.tenant, callback_url, now, digest)
            event = replace(event, next_attempt=now)
            lane.events[0] = event
            self._outbox.mark_attempt(event, "HTTP 410")
            self.stats["disabled"] += 1
            self.log.warn(
                "Event endpoint {url} of tenant {tenant} answered 410 Gone: disabled until its "
                "callback_url changes; events are kept, not sent",
                tenant=event.tenant,
                url=url,
                session_id=event.session_id,
                event_id=event.event_id,
                status=410,
            )
            self._check_idle()
        else:
            retry_after = parse_retry_after(reply.retry_after, now)
            self._failed(key, lane, now, "HTTP %d" % (reply.status,), retry_after, reply.status)

    def _on_failure(self, failure: Failure, key: tuple[str, str], lane: _Lane, generation: int, url: str) -> None:
        if not self._finish_request(lane, generation):
            return
        self._failed(key, lane, self._reactor.seconds(), _describe(failure, self._request_timeout), None, None)

    def _backoff(self, attempts: int) -> float:
        exponent = min(max(attempts - 1, 0), 60)
        delay = min(self._backoff_max, self._backoff_base * (2.0**exponent))
        return delay * (1.0 - self._backoff_jitter * self._random())

    def _failed(
        self,
        key: tuple[str, str],
        lane: _Lane,
        now: float,
        reason: str,
        retry_after: float | None,
        status: int | None,
    ) -> None:
        event = lane.events[0]
        deadline = event.created + self._retry_for
        if now >= deadline:
            self._give_up(key, lane, now, reason)
            return
        delay = retry_after if retry_after is not None else self._backoff(event.attempts)
        next_attempt = now + delay
        if next_attempt > deadline:
            if retry_after is not None:
                self._give_up(key, lane, now, reason + "; Retry-After %g s is beyond retry_for" % (retry_after,))
                return
            next_attempt = deadline
        event = replace(event, next_attempt=next_attempt)
        lane.events[0] = event
        self._outbox.mark_attempt(event, reason)
        self.stats["retried"] += 1
        self.log.info(
            "Event {event_id} ({event}) of session {session_id} not delivered ({reason}); "
            "attempt {attempts}, next in {delay:.3f} s",
            tenant=event.tenant,
            session_id=event.session_id,
            event_id=event.event_id,
            event=event.event,
            attempts=event.attempts,
            reason=reason,
            status=status,
            delay=next_attempt - now,
        )
        self._schedule(key, next_attempt - now)

    def _give_up(self, key: tuple[str, str], lane: _Lane, now: float, reason: str) -> None:
        event = lane.events.popleft()
        self._outbox.mark_dead(event, now, reason)
        self.stats["dead"] += 1
        self.log.error(
            "Event {event_id} ({event}) of session {session_id} given up after {attempts} attempt(s) "
            "over {age:.0f} s (retry_for {retry_for:g} s): {reason}",
            tenant=event.tenant,
            session_id=event.session_id,
            event_id=event.event_id,
            event=event.event,
            attempts=event.attempts,
            age=now - event.created,
            retry_for=self._retry_for,
            reason=reason,
        )
        self._schedule(key, 0.0)

    def _is_idle(self) -> bool:
        for lane in self._lanes.values():
            if lane.request is not None:
                return False
            if lane.events and not self._held(lane.events[0].tenant):
                return False
        return True

    def _check_idle(self) -> None:
        if self._idle_waiters and self._is_idle():
            waiters, self._idle_waiters = self._idle_waiters, []
            for d, timer in waiters:
                if timer.active():
                    timer.cancel()
                d.callback(True)

    def _purge(self) -> None:
        self._purge_timer = None
        now = self._reactor.seconds()
        deleted = self._outbox.purge(now - self._keep_delivered, now - self._keep_dead)
        if deleted:
            self.log.info("Event outbox: purged {count} old delivered/given-up event(s)", count=deleted)
        if self._running:
            self._purge_timer = self._reactor.callLater(self._purge_interval, self._purge)


class EventDeliveryService(service.Service):
    """
    The C{webhooks} service: starts the deliverer; on stop, waits up to
    C{drain_timeout} seconds for queued events, then stops it and closes the
    outbox (anything left is delivered after the next start).
    """

    def __init__(self, deliverer: EventDeliverer, outbox: EventOutbox, drain_timeout: float = 5.0) -> None:
        """
        @param deliverer: The deliverer.
        @param outbox: Its outbox, closed on stop.
        @param drain_timeout: Seconds to wait for delivery on stop.
        """
        self.name = "webhooks"
        self.deliverer = deliverer
        self.outbox = outbox
        self._drain_timeout = drain_timeout

    def startService(self) -> None:
        service.Service.startService(self)
        self.deliverer.start()

    def stopService(self) -> Deferred[None]:
        service.Service.stopService(self)

        def stop(_: object) -> None:
            self.deliverer.stop()
            self.outbox.close()

        return self.deliverer.drain(self._drain_timeout).addBoth(stop)


# --- newCall --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewCallResult:
    """
    The outcome of a C{newCall} request.

    @ivar answer: The JSON object the application answered (C{{}} for an
        empty 2xx body), or L{None} on any failure.
    @ivar error: Why there is no answer (C{"timeout after 5 s"},
        C{"HTTP 500"}, C{"connection failed: ..."}, C{"body is not JSON"},
        C{"body is not a JSON object"} ...), or L{None}.
    @ivar status: The HTTP status, or L{None} if none was received.
    """

    answer: dict[str, Any] | None
    error: str | None = None
    status: int | None = None

    @property
    def ok(self) -> bool:
        """
        Whether the application answered with a usable object.
        """
        return self.error is None and self.answer is not None


class NewCallClient:
    """
    Ask the application what to do with a new session: a signed C{POST
    {callback_url}/newCall}.

    @ivar stats: Counters: C{answered}, C{timeout}, C{failed},
        C{stale_connection_retries} (requests repeated at once because a
        pooled connection turned out closed).
    """

    log = Logger()

    def __init__(self, reactor: IReactorTime, http_client: Any = None, *, max_body: int = _NEW_CALL_REPLY_MAX) -> None:
        """
        @param reactor: For the timeout.
        @param http_client: treq-shaped; the C{treq} module when L{None}.
        @param max_body: Largest answer read, in bytes.
        """
        if http_client is None:
            import treq as http_client
        self._reactor = reactor
        self._http = http_client
        self._max_body = max_body
        self.stats = {"answered": 0, "timeout": 0, "failed": 0, "stale_connection_retries": 0}

    def post_new_call(self, tenant: WebhookTarget, payload: Mapping[str, Any], timeout: float) -> Deferred[NewCallResult]:
        """
        POST C{payload} (JSON) to C{{callback_url}/newCall}, signed
        (C{webhook-id} is a fresh C{msg_...} id).

        @param tenant: The tenant (C{callback_url}, C{signing_secret}).
        @param payload: The request object.
        @param timeout: Seconds for the whole exchange; the request is
            cancelled when it expires.
        @return: Fires with a L{NewCallResult}, never fails.  Cancelling it
            cancels the request (result: error C{"cancelled"}).
        """
        session_id = payload.get("sessionId") if isinstance(payload, Mapping) else None
        url = getattr(tenant, "callback_url", "?") + "/newCall"
        try:
            body = _encode(payload)
            now = self._reactor.seconds()
            headers = _signed_headers(tenant, new_id("msg_", now), int(now), body)
            d = _post(self._reactor, self._http, url, body, headers, timeout, self._max_body, self.stats)
        except Exception as e:
            self.log.failure("newCall request could not be built", session_id=session_id)
            return defer.succeed(self._result(url, session_id, NewCallResult(None, "internal error: %s" % (type(e).__name__,))))

        def answered(reply: _Reply) -> NewCallResult:
            return self._result(url, session_id, self._parse(reply))

        def failed(failure: Failure) -> NewCallResult:
            return self._result(url, session_id, NewCallResult(None, _describe(failure, timeout)), failure)

        def bug(failure: Failure) -> NewCallResult:
            self.log.failure("newCall handling bug", failure, session_id=session_id)
            return NewCallResult(None, "internal error")

        return d.addCallbacks(answered, failed).addErrback(bug)

    def _parse(self, reply: _Reply) -> NewCallResult:
        if not 200 <= reply.status < 300:
            return NewCallResult(None, "HTTP %d" % (reply.status,), reply.status)
        if reply.body is None:
            return NewCallResult(None, "body unreadable: %s" % (reply.body_error,), reply.status)
        if not reply.body.strip():
            return NewCallResult({}, None, reply.status)
        try:
            answer = json.loads(reply.body)
        except (ValueError, UnicodeDecodeError):
            return NewCallResult(None, "body is not JSON", reply.status)
        except RecursionError:
            return NewCallResult(None, "body is not JSON: nested too deeply", reply.status)
        if not isinstance(answer, dict):
            return NewCallResult(None, "body is not a JSON object", reply.status)
        return NewCallResult(answer, None, reply.status)

    def _result(self, url: str, session_id: Any, result: NewCallResult, failure: Failure | None = None) -> NewCallResult:
        if result.error is None:
            self.stats["answered"] += 1
            self.log.debug("newCall answered for session {session_id}", session_id=session_id, status=result.status)
        else:
            if failure is not None and failure.check(defer.TimeoutError):
                self.stats["timeout"] += 1
            else:
                self.stats["failed"] += 1
            self.log.warn(
                "newCall to {url} for session {session_id} failed: {reason}",
                url=url,
                session_id=session_id,
                reason=result.error,
                status=result.status,
            )
        return result


def tenants_by_domain(tenants: Iterable[Any]) -> dict[str, Any]:
    """
    Index tenants for L{EventDeliverer}.

    @param tenants: Objects with C{domain}, C{callback_url} and
        C{signing_secret} (L{aiconnect.config.TenantConfig}).
    @return: Domain -> tenant.
    """
    return {t.domain: t for t in tenants}
