# -*- test-case-name: tests.webhooks.test_delivery,tests.integration.test_webhooks_http -*-
"""
Delivery of the outbox's events to C{{callback_url}/events} (SPEC section
2, STYLE example 10): ordered, serial per session, signed, retried.

This module owns when and whether an event is sent: a lane per session
(an event is sent only once the previous one of its session was delivered
or given up), the limit of requests in flight, the exponential back-off
with jitter on the injected reactor (a C{Retry-After} answer replaces it),
the C{retry_for} deadline after which an event is given up (logged at
error level and counted; the row is kept, marked dead), and the endpoints
disabled by a 410 (events kept, not sent, until the tenant's
C{callback_url} or C{signing_secret} changes; the state survives restarts
and shows as C{endpoints_disabled}).  A request on a pooled connection the
server had closed is sent again at once, once
(L{aiconnect.webhooks.http.post}).  On start it loads every undelivered event, so a restart (kill -9
included) loses nothing.

What is stored belongs to L{aiconnect.webhooks.outbox}; this module
changes it only through L{EventOutbox}'s methods.  L{EventDeliveryService}
is the C{webhooks} service of the composition root.
"""

from __future__ import annotations

import random as _random
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from aiconnect.metrics_recorder import NULL_METRICS, WEBHOOK_EVENT, MetricsRecorder
from aiconnect.webhooks.agent import MAX_IN_FLIGHT
from aiconnect.webhooks.http import Reply, WebhookTarget, backoff, describe_failure, parse_retry_after, post
from aiconnect.webhooks.outbox import EventOutbox, OutboxEvent
from aiconnect.webhooks.signing import secret_digest, signed_headers

__all__ = [
    "EventDeliverer",
    "EventDeliveryService",
    "tenants_by_domain",
]

# The application's answers to events are read (up to this size) and
# discarded.
_EVENT_REPLY_MAX = 64 * 1024


@dataclass(slots=True)
class _Lane:
    """
    The queue of one session.

    @ivar events: Undelivered events, in order; the first is the one being
        (or next to be) sent.
    @ivar timer: The scheduled next look at this lane.
    @ivar request: The request in flight.
    @ivar queued: Whether the lane waits in the deliverer's ready queue.
    """

    events: deque[OutboxEvent] = field(default_factory=deque)
    timer: IDelayedCall | None = None
    request: Deferred[Any] | None = None
    queued: bool = False


class EventDeliverer:
    """
    Deliver the outbox's events: per session in order and serially (an event
    is sent only once the previous one of its session was delivered or given
    up); sessions independently, at most C{max_in_flight} requests at once.

    Sessions with an event to send now wait in one first-in first-out
    queue; a finished request frees one slot and starts the first waiting
    session (its own next event queues behind those already waiting), so a
    request costs no timer and wakes no session that cannot send.

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
        max_in_flight: int = MAX_IN_FLIGHT,
        random: Callable[[], float] = _random.random,
        keep_delivered: float = 86400.0,
        keep_dead: float = 30 * 86400.0,
        purge_interval: float = 3600.0,
    ) -> None:
        """
        @param reactor: For every timer and timeout.
        @param outbox: The outbox to deliver from.
        @param tenants: Tenant domain -> its callback settings.
        @param http_client: A L{aiconnect.webhooks.agent.CallbackClient},
            or treq-shaped (C{post(url, data=, headers=,
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
        # Sessions whose first event is due, waiting for a free slot.
        #: The sessions with an event ready to send, waiting for a request
        #: slot, with the time each was queued.
        self._ready: deque[tuple[tuple[str, str], float]] = deque()
        self._pumping = False
        self._pump_call: IDelayedCall | None = None
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
        #: Where round trips and the age of delivered events are observed
        #: (injected by the tap).
        self.metrics: MetricsRecorder = NULL_METRICS

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

    def ready_wait(self) -> float:
        """
        How long the session first in the ready queue has waited for a
        request slot, seconds (0 when none waits): events that are due
        but not sent because every slot is busy (overload control reads
        it, L{aiconnect.overload}; events waiting for a retry are not
        counted).
        """
        if not self._ready:
            return 0.0
        return max(0.0, self._reactor.seconds() - self._ready[0][1])

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
        for key, lane in self._lanes.items():
            self._enqueue(key, lane)
        self._pump_soon()
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
        if self._pump_call is not None and self._pump_call.active():
            self._pump_call.cancel()
        self._pump_call = None
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
            for key, lane in self._lanes.items():
                if lane.timer is None and lane.request is None:
                    self._enqueue(key, lane)
            self._pump_soon()

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
        # Never sends synchronously: the emitter is a session's code.  One
        # timer per reactor turn, however many events are emitted in it.
        if not self._running:
            return
        lane = self._lane(event.key)
        lane.events.append(event)
        if lane.timer is None and lane.request is None:
            self._enqueue(event.key, lane)
            self._pump_soon()

    def _enqueue(self, key: tuple[str, str], lane: _Lane) -> None:
        """
        Put a session at the end of the ready queue (if not already in it).
        """
        if not lane.queued:
            lane.queued = True
            self._ready.append((key, self._reactor.seconds()))

    def _pump_soon(self) -> None:
        """
        Run L{_pump} in the next reactor turn (once, however often asked).
        """
        if self._pump_call is None and self._in_flight < self._max_in_flight:
            self._pump_call = self._reactor.callLater(0, self._pump_now)

    def _pump_now(self) -> None:
        self._pump_call = None
        self._pump()

    def _pump(self) -> None:
        """
        Start the waiting sessions, first in first out, while a request slot
        is free.  Not reentrant: a request whose outcome fires synchronously
        frees its slot and queues its session, and this loop goes on.
        """
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._ready and self._in_flight < self._max_in_flight and self._running:
                key, _ = self._ready.popleft()
                lane = self._lanes.get(key)
                if lane is None:
                    continue
                lane.queued = False
                try:
                    self._kick(key, lane)
                except Exception:
                    self.log.failure("Event deliverer bug", session_id=key[1], tenant=key[0])
        finally:
            self._pumping = False

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
        self._enqueue(key, lane)
        self._pump()

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
        self._send(key, lane, event, tenant, now)

    def _send(self, key: tuple[str, str], lane: _Lane, event: OutboxEvent, tenant: WebhookTarget, now: float) -> None:
        event = replace(event, attempts=event.attempts + 1)
        lane.events[0] = event
        self._in_flight += 1
        self.stats["attempts"] += 1
        generation = self._generation
        url = tenant.callback_url + "/events"
        try:
            headers = signed_headers(tenant.signing_secret, event.event_id, int(now), event.body)
            d = post(
                self._reactor, self._http, url, event.body, headers, self._request_timeout, _EVENT_REPLY_MAX, self.stats
            )
        except Exception:
            self.log.failure("Event deliverer bug while sending", event_id=event.event_id)
            d = defer.fail(RuntimeError("internal error"))
        d.addBoth(self._observe_round_trip, event.tenant, now)
        lane.request = d
        d.addCallbacks(
            self._on_reply,
            self._on_failure,
            callbackArgs=(key, lane, generation, url),
            errbackArgs=(key, lane, generation, url),
        )
        d.addErrback(self._bug, event.event_id)

    def _observe_round_trip(self, result: Any, tenant: str, sent: float) -> Any:
        if not (isinstance(result, Failure) and describe_failure(result) == "cancelled"):
            self.metrics.observe_webhook(self._reactor.seconds() - sent, WEBHOOK_EVENT, tenant)
        return result

    def _bug(self, failure: Failure, event_id: str) -> None:
        self.log.failure("Event deliverer bug", failure, event_id=event_id)

    def _finish_request(self, lane: _Lane, generation: int) -> bool:
        """
        Account for a finished request (its caller then runs L{_pump} to use
        the freed slot).

        @return: Whether its outcome is still wanted (no L{stop} since).
        """
        if generation != self._generation:
            return False
        lane.request = None
        self._in_flight -= 1
        return True

    def _on_reply(self, reply: Reply, key: tuple[str, str], lane: _Lane, generation: int, url: str) -> None:
        if not self._finish_request(lane, generation):
            return
        try:
            self._answered(reply, key, lane, url)
        finally:
            self._pump()

    def _answered(self, reply: Reply, key: tuple[str, str], lane: _Lane, url: str) -> None:
        event = lane.events[0]
        now = self._reactor.seconds()
        if 200 <= reply.status < 300:
            self._outbox.mark_delivered(event, now)
            lane.events.popleft()
            self.stats["delivered"] += 1
            self.metrics.observe_event_age(now - event.created, event.tenant)
            self.log.debug(
                "Event {event_id} ({event}) of session {session_id} delivered (attempt {attempts})",
                tenant=event.tenant,
                session_id=event.session_id,
                event_id=event.event_id,
                event=event.event,
                attempts=event.attempts,
            )
            self._enqueue(key, lane)
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
        try:
            self._failed(key, lane, self._reactor.seconds(), describe_failure(failure, self._request_timeout), None, None)
        finally:
            self._pump()

    def _backoff(self, attempts: int) -> float:
        delay = backoff(attempts, self._backoff_base, self._backoff_max)
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
        self._enqueue(key, lane)

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




def tenants_by_domain(tenants: Iterable[Any]) -> dict[str, Any]:
    """
    Index tenants for L{EventDeliverer}.

    @param tenants: Objects with C{domain}, C{callback_url} and
        C{signing_secret} (L{aiconnect.config.TenantConfig}).
    @return: Domain -> tenant.
    """
    return {t.domain: t for t in tenants}
