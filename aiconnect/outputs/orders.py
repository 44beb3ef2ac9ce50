# -*- test-case-name: tests.outputs.test_orders -*-
"""
The C{startStream} (SPEC s8) and C{startRecording} (SPEC s9) objects: what
the application wrote, validated into frozen orders.  A bad field raises
L{aiconnect.siprec.orders.OrderError} naming it, as for forwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["RecordingOrder", "StreamOrder"]


@dataclass(frozen=True, slots=True)
class StreamOrder:
    """
    One C{startStream} object.

    @ivar url: the C{ws://} or C{wss://} URL (with its query string).
    @ivar tracks: C{both}, C{mixed}, C{caller} or C{callee}.
    @ivar format: C{L16}, C{PCMU} or C{PCMA}.
    @ivar sample_rate: 8000 or 16000 (L16 only).
    @ivar protocol: C{raw} or C{twilio}.
    @ivar headers: extra handshake headers, (name, value) pairs.
    @ivar metadata: the application's JSON object, sent in the start message.
    @ivar reference_id: C{streamReferenceId}, echoed in events, or C{None}.
    """

    url: str
    tracks: str = "both"
    format: str = "L16"
    sample_rate: int = 8000
    protocol: str = "raw"
    headers: tuple[tuple[str, str], ...] = ()
    metadata: Any = None
    reference_id: Any = None


@dataclass(frozen=True, slots=True)
class RecordingOrder:
    """
    One C{startRecording} object.

    @ivar tracks: C{both} (stereo, caller left), C{mixed}, C{caller} or
        C{callee}.
    @ivar encoding: C{L16}, C{PCMU} or C{PCMA}.
    @ivar upload_url: where to PUT the file after the recording ends, or
        C{None}.
    @ivar reference_id: C{recordingReferenceId}, echoed in events, or
        C{None}.
    """

    tracks: str = "both"
    encoding: str = "L16"
    upload_url: str | None = None
    reference_id: Any = None
