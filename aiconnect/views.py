# -*- test-case-name: tests.api.test_routes,tests.test_openapi,tests.integration.test_inbound -*-
"""
The JSON shapes of a recording session (SPEC s6 REST API, s1 C{newCall}),
kept apart from the L{aiconnect.call.Call} state machine: the machine
decides, these functions only read its public state and write JSON.

This module imports nothing from Twisted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiconnect import events
from aiconnect.call_facts import LIVE_FORWARD_STATES
from aiconnect.call_outputs import LIVE_OUTPUT_STATES
from aiconnect.text import clean_json

__all__ = [
    "count_live_outputs",
    "describe_forward",
    "describe_output",
    "describe_participants",
    "describe_session",
    "describe_stream",
    "new_call_payload",
    "summarize_session",
]


def describe_stream(info: Any) -> dict[str, Any]:
    """
    One inbound stream (a L{aiconnect.call.StreamInfo}) as JSON for the REST
    API and the C{newCall} callback.
    """
    return {
        "index": info.index,
        "label": info.label,
        "streamId": info.stream_id,
        "codec": info.codec,
        "payloadType": info.payload_type,
        "localPort": info.local_port,
        "remote": None if info.remote is None else "%s:%d" % info.remote,
        "direction": info.direction,
        "srtp": info.srtp,
        "participants": list(info.participants),
    }


def describe_forward(info: Any, stats: dict[str, Any] | None = None) -> dict[str, Any]:
    """
    One forward (a L{aiconnect.call.ForwardInfo}) as JSON for the REST API:
    its id, state, target, the order's fields and the leg's counters.

    @param stats: the forward leg's media counters, when it has a leg.
    """
    out: dict[str, Any] = {
        "forwardId": info.forward_id,
        "state": info.state.value,
        "target": info.target,
    }
    if info.order is not None:
        out.update(info.order.describe())
    if stats is not None:
        out["stats"] = stats
    return out


def describe_output(info: Any, stats: dict[str, Any] | None = None) -> dict[str, Any]:
    """
    One stream or recording (an L{aiconnect.call_outputs.OutputInfo}) as
    JSON for the REST API.

    @param stats: the leg's counters, when it has a leg.
    """
    key = "streamId" if info.kind == "stream" else "recordingId"
    out: dict[str, Any] = {key: info.output_id, "state": info.state.value, "paused": info.paused}
    order = info.order
    if info.kind == "stream":
        out["url"] = info.url
        if order is not None:
            out.update(tracks=order.tracks, format=order.format, sampleRate=order.sample_rate, protocol=order.protocol)
    else:
        out["file"] = info.detail.get("file")
        if order is not None:
            out.update(tracks=order.tracks, encoding=order.encoding)
        if info.result:
            out["result"] = dict(info.result)
        if info.upload is not None:
            out["upload"] = dict(info.upload)
    if info.error is not None or info.reason is not None:
        out["reason"] = info.reason or info.error
    if info.stopped_by is not None:
        out["stoppedBy"] = info.stopped_by
    if stats is not None:
        out["stats"] = stats
    return out


def describe_participants(md: Any) -> list[dict[str, Any]]:
    """
    The metadata's participants as JSON (newCall, REST): id, name, AOR and
    the labels of the streams each sends and receives.
    """
    if md is None:
        return []
    label_of = {s.stream_id: s.label for s in md.streams}
    out = []
    for p in md.participants:
        assoc = md.stream_assoc(p.participant_id)
        out.append(
            {
                "participantId": p.participant_id,
                "name": p.name,
                "aor": p.aor,
                "send": [label_of.get(s, s) for s in (assoc.send if assoc else ())],
                "recv": [label_of.get(s, s) for s in (assoc.recv if assoc else ())],
            }
        )
    return out


def describe_session(session: Any) -> dict[str, Any]:
    """
    JSON for C{GET /{domain}/sessions/{id}}.

    @param session: the L{aiconnect.runner.CallRunner} (its C{call}, and
        the live counters of its media and forward legs).
    """
    call = session.call
    return {
        "sessionId": call.session_id,
        "tenant": call.tenant.domain,
        "callId": call.call_id,
        "from": call.from_header,
        "to": call.to_header,
        "source": call.source,
        "state": call.state.value,
        "created": events.format_timestamp(call.created),
        "started": None if call.started is None else events.format_timestamp(call.started),
        "ended": None if call.ended is None else events.format_timestamp(call.ended),
        "endReason": call.end_reason,
        "streams": [describe_stream(s) for s in call.streams],
        "participants": describe_participants(call.metadata),
        "metadataError": call.metadata_error,
        "forwards": [describe_forward(f, session.forward_stats(f.forward_id)) for f in call.forwards.values()],
        "streamOutputs": [
            describe_output(o, session.output_stats(o.output_id)) for o in call.outputs.values() if o.kind == "stream"
        ],
        "recordings": [
            describe_output(o, session.output_stats(o.output_id)) for o in call.outputs.values() if o.kind == "recording"
        ],
        "paused": call.paused,
        "media": session.media_stats(),
    }


def summarize_session(session: Any) -> dict[str, Any]:
    """
    Short JSON for C{GET /{domain}/sessions}.
    """
    call = session.call
    return {
        "sessionId": call.session_id,
        "callId": call.call_id,
        "state": call.state.value,
        "created": events.format_timestamp(call.created),
        "streams": len(call.streams),
        "forwards": len(call.forwards),
        "outputs": len(call.outputs),
    }


def count_live_outputs(sessions: Iterable[Any]) -> dict[str, dict[str, int]]:
    """
    How many forwards, streams and recordings of C{sessions} are in each
    live state (ordered and not yet stopped or failed; SPEC s12), every
    state present (0 included): the C{live} gauges of C{/metrics}
    (C{aiconnect_live_forwards_active} ...).

    @param sessions: L{aiconnect.runner.CallRunner}s (their C{call}).
    @return: C{{"forwards": {state: n}, "streams": {...}, "recordings": {...}}}.
    """
    counts: dict[str, dict[str, int]] = {
        "forwards": {s.value: 0 for s in sorted(LIVE_FORWARD_STATES, key=lambda s: s.value)},
        "streams": {s.value: 0 for s in sorted(LIVE_OUTPUT_STATES, key=lambda s: s.value)},
        "recordings": {s.value: 0 for s in sorted(LIVE_OUTPUT_STATES, key=lambda s: s.value)},
    }
    for session in sessions:
        call = session.call
        for forward in call.forwards.values():
            if forward.state in LIVE_FORWARD_STATES:
                counts["forwards"][forward.state.value] += 1
        for output in call.outputs.values():
            if output.state in LIVE_OUTPUT_STATES:
                counts[output.kind + "s"][output.state.value] += 1
    return counts


def new_call_payload(call: Any) -> dict[str, Any]:
    """
    The C{newCall} callback's body (SPEC s1).  SIP text was decoded where
    the Call was made; C{clean_json} is the last guard (metadata names and
    labels come from the wire too).

    @param call: the L{aiconnect.call.Call}.
    """
    return clean_json(
        {
            "sessionId": call.session_id,
            "tenant": call.tenant.domain,
            "callId": call.call_id,
            "from": call.from_header,
            "to": call.to_header,
            "source": call.source,
            "participants": describe_participants(call.metadata),
            "streams": [describe_stream(s) for s in call.streams],
            "metadataError": call.metadata_error,
            "xHeaders": {n: v for n, v in call.x_headers},
            "correlation": dict(call.correlation),
        }
    )
