# -*- test-case-name: tests.api.test_metrics_recorder -*-
"""
The seam through which the code where a thing happens reports what
C{/metrics} shows as histograms and labelled counters: the SRS the call
setup time, the webhook clients their round trips and the age of each
delivered event, the runner each failed forward.

The observing modules take a L{MetricsRecorder} (L{NULL_METRICS} until the
composition root, L{aiconnect.tap}, injects
L{aiconnect.api.metrics.PrometheusMetrics}), so none of them imports
C{prometheus_client}; this module imports nothing but the standard
library.  Label values are whatever the observer has (a tenant domain, a
transport, a failure text): the recorder bounds them
(L{forward_failure_cause} turns a C{SIPRECFORWARDFAILED} reason into one of
L{FORWARD_FAILURE_CAUSES}).
"""

from __future__ import annotations

from typing import Protocol

__all__ = [
    "FORWARD_FAILURE_CAUSES",
    "NULL_METRICS",
    "WEBHOOK_EVENT",
    "WEBHOOK_NEW_CALL",
    "MetricsRecorder",
    "NullMetrics",
    "forward_failure_cause",
]

#: The C{kind} of a webhook round trip: the C{newCall} request, or one
#: event POST.
WEBHOOK_NEW_CALL = "newCall"
WEBHOOK_EVENT = "event"

#: Every value L{forward_failure_cause} returns.
FORWARD_FAILURE_CAUSES = (
    "sip_3xx",
    "sip_4xx",
    "sip_5xx",
    "sip_6xx",
    "timeout",
    "ring_timeout",
    "transport",
    "dns",
    "tls",
    "srs_lost",
    "limit",
    "invalid_order",
    "media",
    "other",
)

# Prefixes of SIPRECFORWARDFAILED reasons (aiconnect.siprec.dialer and
# forward, aiconnect.call, aiconnect.siprec.srs), in the order they are
# tried, with their cause.
_PREFIXES = (
    ("invalid order", "invalid_order"),
    ("limit", "limit"),
    ("srs lost", "srs_lost"),
    ("dns", "dns"),
    ("tls", "tls"),
    ("transport", "transport"),
    ("ring timeout", "ring_timeout"),
    ("timeout", "timeout"),
    ("no rtp ports", "media"),
    ("media", "media"),
    ("no inbound stream", "media"),
)


def forward_failure_cause(reason: str, status: int | None) -> str:
    """
    The cause of a failed forward, one of L{FORWARD_FAILURE_CAUSES}: the
    class of its final SIP status when it has one (C{sip_4xx} ...), else
    the kind of failure its reason text starts with (C{dns}, C{tls},
    C{transport}, C{ring_timeout}, C{timeout}, C{limit} ...), else
    C{other}.  An order refused before any target (C{invalid order: ...},
    C{limit}) and a lost SRS keep that cause whatever the status.

    @param reason: The C{SIPRECFORWARDFAILED} reason.
    @param status: Its SIP status, or L{None}.
    @return: The cause.
    """
    text = reason.strip().lower()
    for prefix, cause in _PREFIXES[:3]:
        if text.startswith(prefix):
            return cause
    if status is not None and 300 <= status <= 699:
        return "sip_%dxx" % (status // 100,)
    for prefix, cause in _PREFIXES[3:]:
        if text.startswith(prefix):
            return cause
    return "other"


class MetricsRecorder(Protocol):
    """
    What the observing code tells the metrics (each call is quick and never
    raises).
    """

    def observe_setup(self, seconds: float, tenant: str, transport: str) -> None:
        """
        An inbound INVITE was answered 200: C{seconds} from its arrival to
        the 200 (the application's C{newCall} answer and any mandatory
        forward included).

        @param tenant: The tenant's domain.
        @param transport: C{udp}, C{tcp} or C{tls}.
        """

    def observe_webhook(self, seconds: float, kind: str, tenant: str) -> None:
        """
        A webhook request ended (answered with any status, failed or timed
        out; not when cancelled): its round trip.

        @param kind: L{WEBHOOK_NEW_CALL} or L{WEBHOOK_EVENT}.
        @param tenant: The tenant's domain.
        """

    def observe_event_age(self, seconds: float, tenant: str) -> None:
        """
        An event was delivered (2xx), C{seconds} after it was emitted.

        @param tenant: The tenant's domain.
        """

    def count_forward_failure(self, reason: str, status: int | None, tenant: str) -> None:
        """
        A forward failed (C{SIPRECFORWARDFAILED}).

        @param reason: Its reason text (see L{forward_failure_cause}).
        @param status: Its SIP status, or L{None}.
        @param tenant: The tenant's domain.
        """


class NullMetrics:
    """
    A L{MetricsRecorder} that records nothing: the default of every
    observer until one is injected.
    """

    def observe_setup(self, seconds: float, tenant: str, transport: str) -> None:
        """
        Nothing.
        """

    def observe_webhook(self, seconds: float, kind: str, tenant: str) -> None:
        """
        Nothing.
        """

    def observe_event_age(self, seconds: float, tenant: str) -> None:
        """
        Nothing.
        """

    def count_forward_failure(self, reason: str, status: int | None, tenant: str) -> None:
        """
        Nothing.
        """


#: The shared L{NullMetrics}.
NULL_METRICS: MetricsRecorder = NullMetrics()
