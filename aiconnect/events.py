# -*- test-case-name: tests.webhooks.test_events,tests.webhooks.test_outbox -*-
"""
The lifecycle events AI Connect reports to the application (SPEC section 2).

Each event is a JSON object POSTed to C{{callback_url}/events}.  The builders
here return that object as a plain C{dict}, ready for
L{aiconnect.legs.EventSink.emit} (in production the durable
L{aiconnect.webhooks.EventOutbox}); the reference for receivers, with an
example of every event, is C{docs/events.md}.

Every event carries:

    - C{event}: one of L{EVENT_NAMES};
    - C{eventId}: a unique, time-sortable id (L{new_id}); it is also the
      C{webhook-id} header of every delivery attempt, so receivers
      de-duplicate on it (delivery is at-least-once);
    - C{sessionId}: the inbound SIPRec session;
    - C{tenant}: the tenant's domain;
    - C{timestamp}: when the event happened, ISO-8601 UTC with milliseconds
      (C{2024-05-01T12:34:56.789Z});
    - C{sequence}: added by the outbox, 1, 2, 3 ... per session, in the
      order the events were emitted (and are delivered).

Every string of an event is made valid Unicode (L{aiconnect.text.decode_wire}:
SIP text that was not UTF-8 is read as Windows-1252), so that every event can
be sent as JSON.  A C{sipRecForwardReferenceId} that could not be echoed
(see L{reportable_reference}) is reported as C{null}.

This module imports nothing but the standard library and L{aiconnect.text}.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime, timezone
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from aiconnect.text import clean_json, json_problem

__all__ = [
    "EVENT_NAMES",
    "SESSIONCOMPLETED",
    "SESSIONSTARTED",
    "RECORDINGFAILED",
    "RECORDINGSTARTED",
    "RECORDINGSTOPPED",
    "RECORDINGUPLOADED",
    "SESSIONPAUSED",
    "SESSIONRESUMED",
    "STREAMFAILED",
    "STREAMSTARTED",
    "STREAMSTOPPED",
    "PauseEvent",
    "RecordingEvent",
    "RecordingFailed",
    "RecordingStarted",
    "RecordingStopped",
    "RecordingUploaded",
    "SessionPaused",
    "SessionResumed",
    "StreamEvent",
    "StreamFailed",
    "StreamStarted",
    "StreamStopped",
    "SIPRECFORWARDFAILED",
    "SIPRECFORWARDSTARTED",
    "SIPRECFORWARDSTOPPED",
    "Event",
    "SessionCompleted",
    "SessionStarted",
    "SiprecForwardFailed",
    "SiprecForwardStarted",
    "SiprecForwardStopped",
    "build_event",
    "format_timestamp",
    "new_id",
    "reportable_reference",
    "session_completed",
    "session_started",
    "siprec_forward_failed",
    "siprec_forward_started",
    "siprec_forward_stopped",
]

SESSIONSTARTED = "SESSIONSTARTED"
SIPRECFORWARDSTARTED = "SIPRECFORWARDSTARTED"
SIPRECFORWARDFAILED = "SIPRECFORWARDFAILED"
SIPRECFORWARDSTOPPED = "SIPRECFORWARDSTOPPED"
SESSIONCOMPLETED = "SESSIONCOMPLETED"
STREAMSTARTED = "STREAMSTARTED"
STREAMFAILED = "STREAMFAILED"
STREAMSTOPPED = "STREAMSTOPPED"
RECORDINGSTARTED = "RECORDINGSTARTED"
RECORDINGSTOPPED = "RECORDINGSTOPPED"
RECORDINGFAILED = "RECORDINGFAILED"
RECORDINGUPLOADED = "RECORDINGUPLOADED"
SESSIONPAUSED = "SESSIONPAUSED"
SESSIONRESUMED = "SESSIONRESUMED"
SIPRECFORWARDRESUMED = "SIPRECFORWARDRESUMED"

EVENT_NAMES = (
    SESSIONSTARTED,
    SIPRECFORWARDSTARTED,
    SIPRECFORWARDFAILED,
    SIPRECFORWARDSTOPPED,
    SESSIONCOMPLETED,
    STREAMSTARTED,
    STREAMFAILED,
    STREAMSTOPPED,
    RECORDINGSTARTED,
    RECORDINGSTOPPED,
    RECORDINGFAILED,
    RECORDINGUPLOADED,
    SESSIONPAUSED,
    SESSIONRESUMED,
    SIPRECFORWARDRESUMED,
)

# Who stopped a forward: SIPRECFORWARDSTOPPED.stoppedBy (SPEC section 2).
STOPPED_BY_API = "api"
STOPPED_BY_INBOUND_BYE = "inboundBye"
STOPPED_BY_SRS_BYE = "srsBye"
STOPPED_BY_ERROR = "error"
STOPPED_BY_SHUTDOWN = "shutdown"
STOPPED_BY_RESTART = "restart"
#: SPEC s14: the node was lost; a surviving node of the cluster ended it.
STOPPED_BY_NODE_LOST = "nodeLost"

# Why a session ended: SESSIONCOMPLETED.reason.
COMPLETED_INBOUND_BYE = "inboundBye"
COMPLETED_CANCEL = "cancel"
COMPLETED_MEDIA_TIMEOUT = "mediaTimeout"
COMPLETED_SESSION_TIMER = "sessionTimer"
COMPLETED_SHUTDOWN = "shutdown"
COMPLETED_RESTART = "restart"
#: SPEC s14: the node was lost (killed, crashed, cut off); a surviving node
#: of the cluster sent BYE to the SRC and the SRSs.
COMPLETED_NODE_LOST = "nodeLost"
COMPLETED_ERROR = "error"
#: SPEC s13: a mandatory forward failed, the inbound INVITE got 503.
COMPLETED_MANDATORY_FORWARD_FAILED = "mandatoryForwardFailed"

#: The deepest and largest C{sipRecForwardReferenceId} accepted (and echoed):
#: nested objects/arrays, and bytes of its compact UTF-8 JSON.
MAX_REFERENCE_DEPTH = 32
MAX_REFERENCE_BYTES = 4096

# Crockford's base32, as in ULIDs: sortable, no I/L/O/U.
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(prefix: str, now: float) -> str:
    """
    A unique id that sorts by creation time: C{prefix} and 26 characters of
    Crockford base32 holding 48 bits of Unix milliseconds and 80 random bits
    (the ULID layout).

    @param prefix: Text before the id (C{"evt_"} for events, C{"msg_"} for
        other signed requests).
    @param now: Unix time in seconds (the caller's clock: nothing here
        reads one).
    @return: The id, e.g. C{evt_01HXYZ...}.
    """
    ms = int(now * 1000) & ((1 << 48) - 1)
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return prefix + "".join(reversed(chars))


def format_timestamp(now: float) -> str:
    """
    ISO-8601 UTC with milliseconds and a C{Z}.

    @param now: Unix time in seconds.
    @return: E.g. C{2024-05-01T12:34:56.789Z}.
    """
    ms_total = int(round(now * 1000))
    seconds, ms = divmod(ms_total, 1000)
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (ms,)


def reportable_reference(value: Any) -> Any:
    """
    A C{sipRecForwardReferenceId} as echoed in events: unchanged if it can
    be (valid Unicode, at most L{MAX_REFERENCE_DEPTH} levels and
    L{MAX_REFERENCE_BYTES} bytes: what order validation accepts), else
    L{None} (an order with such a reference is refused and its
    C{SIPRECFORWARDFAILED} reason names the field).

    @param value: The reference as given, or L{None}.
    @return: C{value} or L{None}.
    """
    if value is None:
        return None
    if json_problem(value, max_depth=MAX_REFERENCE_DEPTH, max_bytes=MAX_REFERENCE_BYTES) is not None:
        return None
    return value


def build_event(
    name: str,
    session_id: str,
    tenant: str,
    fields: Mapping[str, Any] | None = None,
    *,
    now: float,
    event_id: str | None = None,
) -> dict[str, Any]:
    """
    Build the JSON object of an event: the common keys, then C{fields}.

    @param name: One of L{EVENT_NAMES}.
    @param session_id: The session id.
    @param tenant: The tenant's domain.
    @param fields: The event-specific keys (JSON values; copied, every
        string made valid Unicode by L{aiconnect.text.decode_wire}).
    @param now: When the event happened (Unix seconds).
    @param event_id: The id; a fresh L{new_id} when L{None}.
    @return: The event object.
    @raise ValueError: If C{name} is not a known event (a programming error).
    """
    if name not in EVENT_NAMES:
        raise ValueError("unknown event name %r" % (name,))
    moment = now
    payload: dict[str, Any] = {
        "event": name,
        "eventId": event_id if event_id is not None else new_id("evt_", moment),
        "sessionId": session_id,
        "tenant": tenant,
        "timestamp": format_timestamp(moment),
    }
    for key, value in (fields or {}).items():
        if key in payload:
            raise ValueError("field %r is one of the common keys" % (key,))
        payload[key] = clean_json(value)
    return payload


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """
    The envelope every event shares: the session, the tenant and the moment
    it happened (the C{now} of the L{aiconnect.call.Call} input that caused
    it; nothing here reads a clock).  Subclasses add their fields and name.

    @cvar NAME: the C{event} value, one of L{EVENT_NAMES}.
    """

    NAME: ClassVar[str] = ""

    session_id: str
    tenant: str
    now: float

    def fields(self) -> dict[str, Any]:
        """
        The event-specific keys of the JSON object.
        """
        raise NotImplementedError

    def to_json(self, event_id: str | None = None) -> dict[str, Any]:
        """
        The JSON object posted to C{{callback_url}/events} (L{build_event}).

        @param event_id: The id; a fresh L{new_id} when L{None}.
        """
        return build_event(self.NAME, self.session_id, self.tenant, self.fields(), now=self.now, event_id=event_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStarted(Event):
    """
    C{SESSIONSTARTED}: the inbound session is answered and ACKed.

    @ivar call_id: The inbound Call-ID.
    @ivar from_uri: The inbound From URI.
    @ivar to_uri: The inbound To URI.
    @ivar streams: The labels of the answered streams, in SDP order.
    @ivar new_call_error: Why the C{newCall} callback gave no usable answer
        (the call was answered anyway), or L{None} if it answered.
    """

    NAME: ClassVar[str] = SESSIONSTARTED

    call_id: str
    from_uri: str
    to_uri: str
    streams: tuple[str, ...] = ()
    new_call_error: str | None = None

    def fields(self) -> dict[str, Any]:
        return {
            "callId": self.call_id,
            "from": self.from_uri,
            "to": self.to_uri,
            "streams": list(self.streams),
            "newCallError": self.new_call_error,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardEvent(Event):
    """
    The fields every forward event shares.

    @ivar forward_id: The forward's id (as answered by the API).
    @ivar uri: The C{startSIPRecForward.uri} as given.
    @ivar reference_id: C{sipRecForwardReferenceId}, echoed unchanged (see
        L{reportable_reference}: L{None}, or one it refuses, becomes
        C{null}).
    """

    forward_id: str
    uri: str
    reference_id: Any = None

    def fields(self) -> dict[str, Any]:
        return {
            "forwardId": self.forward_id,
            "uri": self.uri,
            **self.more(),
            "sipRecForwardReferenceId": reportable_reference(self.reference_id),
        }

    def more(self) -> dict[str, Any]:
        """
        The fields of this event beyond the shared ones.
        """
        return {}


@dataclass(frozen=True, slots=True, kw_only=True)
class SiprecForwardStarted(ForwardEvent):
    """
    C{SIPRECFORWARDSTARTED}: the SRS answered 200 and was ACKed.

    @ivar target: The target actually used, C{host:port;transport=x}
        (L{aiconnect.siprec.dialer.peer_text}).
    @ivar codec: C{PCMA} or C{PCMU}.
    @ivar srtp: Whether media towards the SRS is SRTP.
    """

    NAME: ClassVar[str] = SIPRECFORWARDSTARTED

    target: str
    codec: str
    srtp: bool

    def more(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "codec": self.codec,
            "srtp": bool(self.srtp),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SiprecForwardFailed(ForwardEvent):
    """
    C{SIPRECFORWARDFAILED}: the forward could not be established.

    @ivar reason: Human-readable cause: the SIP reason phrase, or the
        transport / DNS / TLS failure (C{"DNS: no SRV or A record"},
        C{"TLS: certificate verify failed"}, C{"timeout"}, C{"limit"} ...).
    @ivar status: The final SIP status of the last target, or L{None} if
        no SIP response was received.
    @ivar target: The last target tried, or L{None} if none was reached.
    @ivar targets_tried: Every target tried, in order.
    """

    NAME: ClassVar[str] = SIPRECFORWARDFAILED

    reason: str
    status: int | None = None
    target: str | None = None
    targets_tried: tuple[str, ...] = ()

    def more(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "status": self.status,
            "target": self.target,
            "targetsTried": list(self.targets_tried),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SiprecForwardStopped(ForwardEvent):
    """
    C{SIPRECFORWARDSTOPPED}: an established forward ended.

    @ivar target: The target that was used.
    @ivar stopped_by: Who stopped it: C{STOPPED_BY_API},
        C{STOPPED_BY_INBOUND_BYE}, C{STOPPED_BY_SRS_BYE},
        C{STOPPED_BY_ERROR}, C{STOPPED_BY_SHUTDOWN}, C{STOPPED_BY_RESTART}
        (the node restarted and ended the sessions its previous run left)
        or C{STOPPED_BY_NODE_LOST} (another node ended a lost node's).
    @ivar reason: Details (the error for C{ERROR}), or L{None}.
    @ivar stats: Counters of the forward (packets, bytes, duration ...).
    """

    NAME: ClassVar[str] = SIPRECFORWARDSTOPPED

    target: str | None
    stopped_by: str
    reason: str | None = None
    stats: Mapping[str, Any] | None = None

    def more(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "stoppedBy": self.stopped_by,
            "reason": self.reason,
            "stats": dict(self.stats or {}),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SiprecForwardResumed(ForwardEvent):
    """
    C{SIPRECFORWARDRESUMED} (SPEC s13): an answered forward lost its SRS
    and was re-established to another target, with the same metadata and
    labels; the RTP towards the new target continues the old sequence.

    @ivar target: The new target, C{host:port;transport=x}.
    @ivar previous_target: The target that was lost.
    @ivar reason: Why the previous target counts as lost.
    @ivar gap_ms: Milliseconds between the loss and the new answer.
    """

    NAME: ClassVar[str] = SIPRECFORWARDRESUMED

    target: str
    previous_target: str | None
    reason: str
    gap_ms: int

    def more(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "previousTarget": self.previous_target,
            "reason": self.reason,
            "gapMs": int(self.gap_ms),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionCompleted(Event):
    """
    C{SESSIONCOMPLETED}: the inbound session and all its forwards ended; the
    last event of a session.

    @ivar reason: Why: C{COMPLETED_INBOUND_BYE}, C{COMPLETED_CANCEL},
        C{COMPLETED_MEDIA_TIMEOUT}, C{COMPLETED_SESSION_TIMER},
        C{COMPLETED_SHUTDOWN}, C{COMPLETED_RESTART}, C{COMPLETED_NODE_LOST}
        or C{COMPLETED_ERROR}.
    @ivar duration: Seconds from the answer to the end.
    @ivar stats: Counters of the session (packets per stream, drops ...).
    """

    NAME: ClassVar[str] = SESSIONCOMPLETED

    reason: str
    duration: float
    stats: Mapping[str, Any] | None = None

    def fields(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "duration": round(float(self.duration), 3),
            "stats": dict(self.stats or {}),
        }


# -- streams, recordings, pause (SPEC s8-s10) ----------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEvent(Event):
    """
    The fields every stream event shares.

    @ivar stream_id: the stream's id.
    @ivar url: the WebSocket URL without its query string or credentials.
    @ivar reference_id: C{streamReferenceId}, echoed unchanged (see
        L{reportable_reference}).
    """

    stream_id: str
    url: str
    reference_id: Any = None

    def fields(self) -> dict[str, Any]:
        return {
            "streamId": self.stream_id,
            "url": self.url,
            **self.more(),
            "streamReferenceId": reportable_reference(self.reference_id),
        }

    def more(self) -> dict[str, Any]:
        """
        The fields of this event beyond the shared ones.
        """
        return {}


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamStarted(StreamEvent):
    """
    C{STREAMSTARTED}: the WebSocket handshake is done, audio flows.
    """

    NAME: ClassVar[str] = STREAMSTARTED


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamFailed(StreamEvent):
    """
    C{STREAMFAILED}: the stream could not start.

    @ivar reason: C{HTTP 403}, C{TLS: ...}, C{connect: ...}, C{timeout},
        C{limit}, C{invalid order: ...}.
    """

    NAME: ClassVar[str] = STREAMFAILED

    reason: str = ""

    def more(self) -> dict[str, Any]:
        return {"reason": self.reason}


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamStopped(StreamEvent):
    """
    C{STREAMSTOPPED}: a started stream ended.

    @ivar stopped_by: C{api}, C{inboundBye}, C{error}, C{shutdown}.
    @ivar stats: frames, bytes, dropped, reconnects.
    """

    NAME: ClassVar[str] = STREAMSTOPPED

    stopped_by: str = STOPPED_BY_ERROR
    stats: Mapping[str, Any] | None = None

    def more(self) -> dict[str, Any]:
        return {"stoppedBy": self.stopped_by, "stats": dict(self.stats or {})}


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingEvent(Event):
    """
    The fields every recording event shares.

    @ivar recording_id: the recording's id.
    @ivar details: the event's own fields (JSON keys), in order.
    @ivar reference_id: C{recordingReferenceId}, echoed unchanged.
    """

    recording_id: str
    details: Mapping[str, Any] | None = None
    reference_id: Any = None

    def fields(self) -> dict[str, Any]:
        return {
            "recordingId": self.recording_id,
            **dict(self.details or {}),
            "recordingReferenceId": reportable_reference(self.reference_id),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingStarted(RecordingEvent):
    """
    C{RECORDINGSTARTED}: the file is open (C{file}, C{tracks}, C{encoding}).
    """

    NAME: ClassVar[str] = RECORDINGSTARTED


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingStopped(RecordingEvent):
    """
    C{RECORDINGSTOPPED}: the file is complete (C{stoppedBy}, C{file},
    C{duration}, C{bytes}, C{sha256}, C{channels}, C{encoding}, C{pauses}).
    """

    NAME: ClassVar[str] = RECORDINGSTOPPED


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingFailed(RecordingEvent):
    """
    C{RECORDINGFAILED}: the recording could not start or stopped writing
    (C{reason}: C{disk full} ...); the call and its other outputs go on.
    """

    NAME: ClassVar[str] = RECORDINGFAILED


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingUploaded(RecordingEvent):
    """
    C{RECORDINGUPLOADED}: the upload ended (C{url} without its query
    string, C{status}: the last HTTP status, or a reason).  It may come
    after C{SESSIONCOMPLETED}: uploads start when the recording ends.
    """

    NAME: ClassVar[str] = RECORDINGUPLOADED


@dataclass(frozen=True, slots=True, kw_only=True)
class PauseEvent(Event):
    """
    C{SESSIONPAUSED} / C{SESSIONRESUMED} (SPEC s10): which outputs.

    @ivar forward_ids: the forwards paused (resumed).
    @ivar stream_ids: the streams.
    @ivar recording_ids: the recordings.
    @ivar session: whether the whole session is paused (new outputs start
        paused) after this.
    """

    forward_ids: tuple[str, ...] = ()
    stream_ids: tuple[str, ...] = ()
    recording_ids: tuple[str, ...] = ()
    session: bool = False

    def fields(self) -> dict[str, Any]:
        return {
            "forwardIds": list(self.forward_ids),
            "streamIds": list(self.stream_ids),
            "recordingIds": list(self.recording_ids),
            "sessionPaused": self.session,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionPaused(PauseEvent):
    """
    C{SESSIONPAUSED}.
    """

    NAME: ClassVar[str] = SESSIONPAUSED


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionResumed(PauseEvent):
    """
    C{SESSIONRESUMED}.
    """

    NAME: ClassVar[str] = SESSIONRESUMED


# -- builders: one event object as JSON, for tools and tests -----------------


def _builder(event_class: type[Event], name: str) -> Callable[..., dict[str, Any]]:
    """
    A function building C{event_class} as JSON from keyword fields (the
    dataclass's), for tools and tests: the Call emits the dataclasses.
    """

    def build(session_id: str, *, now: float, event_id: str | None = None, **fields: Any) -> dict[str, Any]:
        for name in ("streams", "targets_tried", "forward_ids", "stream_ids", "recording_ids"):
            if name in fields:
                fields[name] = tuple(fields[name])
        return event_class(session_id=session_id, now=now, **fields).to_json(event_id)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = "L{%s} as JSON: C{%s(session_id, *, now, event_id=None, **fields)}." % (event_class.__name__, name)
    return build


session_started = _builder(SessionStarted, "session_started")
siprec_forward_started = _builder(SiprecForwardStarted, "siprec_forward_started")
siprec_forward_failed = _builder(SiprecForwardFailed, "siprec_forward_failed")
siprec_forward_stopped = _builder(SiprecForwardStopped, "siprec_forward_stopped")
session_completed = _builder(SessionCompleted, "session_completed")
