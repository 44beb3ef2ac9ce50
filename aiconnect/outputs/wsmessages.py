# -*- test-case-name: tests.outputs.test_wsmessages,tests.outputs.test_stream -*-
"""
The messages of a WebSocket stream (SPEC s8), one class per C{protocol}:

  - L{RawMessages} (C{"raw"}): a text C{start} message, one binary message
    per 20 ms frame holding its samples (channels interleaved, in the
    order's C{format} and C{sampleRate}), a text C{stop} message;
  - L{TwilioMessages} (C{"twilio"}): the messages of Twilio Media Streams
    (C{connected}, C{start}, C{media}, C{stop}), so that engines written
    for Twilio work unchanged: base64 mu-law at 8 kHz, one C{media} message
    per track per frame, track C{inbound} = the caller, C{outbound} = the
    called party.

Both implement L{StreamMessages}: L{StreamMessages.encode} turns a frame
into the payloads one frame sends (done once, when the frame arrives, so
that a frame buffered for a slow consumer holds only its bytes), and
L{StreamMessages.media} wraps them into the messages, when they are sent.
A message is C{str} for a text message, C{bytes} for a binary one.

Pure: no Twisted, no clock.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from aiconnect.media.pcm import FRAME_SECONDS, PcmFrame
from aiconnect.outputs.audio import SILENCE, channel_count, encode, select
from aiconnect.outputs.context import OutputContext
from aiconnect.outputs.orders import StreamOrder

__all__ = [
    "masked_binary_frame",
    "FRAME_MS",
    "RawMessages",
    "StreamMessages",
    "TwilioMessages",
    "messages_for",
]

#: Milliseconds per frame (C{frameMs}).
FRAME_MS = round(FRAME_SECONDS * 1000)

#: What Twilio Media Streams carry: mu-law, 8 kHz, one channel per message.
TWILIO_MEDIA_FORMAT = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}

#: The Twilio track of each party.
_TWILIO_TRACKS = {"both": ("inbound", "outbound"), "mixed": ("inbound",), "caller": ("inbound",), "callee": ("outbound",)}


def masked_binary_frame(payload: bytes, key: bytes) -> bytes:
    """
    One complete client-to-server binary frame (RFC 6455 s5.2: FIN,
    opcode 2, the MASK bit and the 7, 16 or 64 bit length, then the 4-octet
    masking key and the masked payload, s5.3): what wsproto would send for
    the message, built in a few big-integer operations instead of a loop
    over the octets (the stream's hot path: one frame per 20 ms per stream).

    @param key: the masking key, 4 octets, fresh and unpredictable per
        frame (s10.3).
    """
    n = len(payload)
    if n < 126:
        head = bytes((0x82, 0x80 | n))
    elif n < 65536:
        head = bytes((0x82, 0xFE)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x82, 0xFF)) + n.to_bytes(8, "big")
    if not n:
        return head + key
    mask = int.from_bytes((key * (n // 4 + 1))[:n], "little")
    return head + key + (int.from_bytes(payload, "little") ^ mask).to_bytes(n, "little")


def _json(value: Mapping[str, Any]) -> str:
    """
    Compact JSON text (UTF-8 safe: non-ASCII characters are escaped).
    """
    return json.dumps(value, separators=(",", ":"))


def _metadata(order: StreamOrder) -> Any:
    """
    The order's C{metadata}, C{{}} when it has none.
    """
    return {} if order.metadata is None else order.metadata


class StreamMessages(Protocol):
    """
    What one stream sends, whatever its C{protocol}.
    """

    def encode(self, frame: PcmFrame) -> tuple[bytes, ...]:
        """
        The payloads of one frame (what L{media} wraps).
        """

    def silence(self) -> tuple[bytes, ...]:
        """
        The payloads of a silent frame (SPEC s10: a paused stream), of the
        same count and sizes as L{encode}'s.
        """

    def opening(self, resumed: bool = False, gap_ms: int = 0) -> list[str]:
        """
        The messages that open a connection, before any frame.

        @param resumed: a reconnection: the start message carries
            C{"resumed": true} and C{"gapMs"}.
        @param gap_ms: the milliseconds of audio dropped since the last
            frame the previous connection took.
        """

    def media(self, position_ms: int, payloads: Sequence[bytes]) -> list[str | bytes]:
        """
        The messages of one frame.

        @param position_ms: where the frame starts, in milliseconds since
            the stream's first frame.
        @param payloads: what L{encode} (or L{silence}) gave for it.
        """

    def closing(self, reason: str) -> list[str]:
        """
        The messages that end the stream, before the close (code 1000).

        @param reason: who stopped it (C{api}, C{inboundBye}, C{shutdown} ...).
        """


class _Messages:
    """
    What both protocols keep: the stream's id, its order, its session, and
    the payloads of a silent frame.
    """

    def __init__(self, stream_id: str, order: StreamOrder, context: OutputContext) -> None:
        """
        @param stream_id: the stream's id.
        @param order: the C{startStream} order.
        @param context: the session.
        """
        self._stream_id = stream_id
        self._order = order
        self._context = context
        self._silence = self._silent_payloads()

    def _silent_payloads(self) -> tuple[bytes, ...]:
        raise NotImplementedError

    def silence(self) -> tuple[bytes, ...]:
        """
        The payloads of a silent frame.
        """
        return self._silence


class RawMessages(_Messages):
    """
    C{protocol: "raw"} (SPEC s8).
    """

    def _silent_payloads(self) -> tuple[bytes, ...]:
        order = self._order
        return (encode([SILENCE] * channel_count(order.tracks), order.format, order.sample_rate),)

    def encode(self, frame: PcmFrame) -> tuple[bytes, ...]:
        """
        One binary payload: the selected channels, interleaved, encoded.
        """
        order = self._order
        return (encode(select(frame, self._context.parties, order.tracks), order.format, order.sample_rate),)

    def opening(self, resumed: bool = False, gap_ms: int = 0) -> list[str]:
        """
        The C{start} message.
        """
        order, context = self._order, self._context
        start: dict[str, Any] = {
            "event": "start",
            "sessionId": context.session_id,
            "streamId": self._stream_id,
            "tenant": context.tenant,
            "tracks": order.tracks,
            "channels": channel_count(order.tracks),
            "format": order.format,
            "sampleRate": order.sample_rate,
            "frameMs": FRAME_MS,
            "participants": list(context.participants),
            "metadata": _metadata(order),
        }
        if resumed:
            start["resumed"] = True
            start["gapMs"] = gap_ms
        return [_json(start)]

    def media(self, position_ms: int, payloads: Sequence[bytes]) -> list[str | bytes]:
        """
        One binary message.
        """
        return [payloads[0]]

    def closing(self, reason: str) -> list[str]:
        """
        The C{stop} message.
        """
        return [_json({"event": "stop", "reason": reason})]


class TwilioMessages(_Messages):
    """
    C{protocol: "twilio"}: Twilio Media Streams messages.  C{streamSid} is
    the stream id, C{callSid} the session id, C{accountSid} the tenant,
    C{customParameters} the order's C{metadata}.  The order's C{format} and
    C{sampleRate} do not apply: Twilio streams are mu-law at 8 kHz.

    Each connection is a Twilio stream of its own: C{sequenceNumber} and
    each track's C{chunk} start at 1 again after a reconnection, while
    C{timestamp} counts from the first frame of the whole stream, so a
    consumer sees where the gap was.
    """

    def __init__(self, stream_id: str, order: StreamOrder, context: OutputContext) -> None:
        """
        @param stream_id: the stream's id (C{streamSid}).
        @param order: the C{startStream} order.
        @param context: the session.
        """
        self._tracks = _TWILIO_TRACKS[order.tracks]
        super().__init__(stream_id, order, context)
        self._sequence = 0
        self._chunks = [0] * len(self._tracks)

    def _silent_payloads(self) -> tuple[bytes, ...]:
        return tuple(encode([SILENCE], "PCMU") for _ in self._tracks)

    def encode(self, frame: PcmFrame) -> tuple[bytes, ...]:
        """
        One mu-law payload per track (C{both}: the caller's, then the called
        party's).
        """
        return tuple(encode([c], "PCMU") for c in select(frame, self._context.parties, self._order.tracks))

    def _next(self) -> str:
        self._sequence += 1
        return str(self._sequence)

    def opening(self, resumed: bool = False, gap_ms: int = 0) -> list[str]:
        """
        C{connected}, then C{start}; numbering starts over.
        """
        self._sequence = 0
        self._chunks = [0] * len(self._tracks)
        start: dict[str, Any] = {
            "streamSid": self._stream_id,
            "accountSid": self._context.tenant,
            "callSid": self._context.session_id,
            "tracks": list(self._tracks),
            "customParameters": _metadata(self._order),
            "mediaFormat": dict(TWILIO_MEDIA_FORMAT),
        }
        if resumed:
            start["resumed"] = True
            start["gapMs"] = gap_ms
        return [
            _json({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
            _json({"event": "start", "sequenceNumber": self._next(), "start": start, "streamSid": self._stream_id}),
        ]

    def media(self, position_ms: int, payloads: Sequence[bytes]) -> list[str | bytes]:
        """
        One C{media} message per track.
        """
        messages: list[str | bytes] = []
        for i, (track, payload) in enumerate(zip(self._tracks, payloads)):
            self._chunks[i] += 1
            media = {
                "track": track,
                "chunk": str(self._chunks[i]),
                "timestamp": str(position_ms),
                "payload": base64.b64encode(payload).decode("ascii"),
            }
            messages.append(
                _json({"event": "media", "sequenceNumber": self._next(), "media": media, "streamSid": self._stream_id})
            )
        return messages

    def closing(self, reason: str) -> list[str]:
        """
        The C{stop} message (Twilio's shape: no reason).
        """
        stop = {"accountSid": self._context.tenant, "callSid": self._context.session_id}
        return [_json({"event": "stop", "sequenceNumber": self._next(), "stop": stop, "streamSid": self._stream_id})]


def messages_for(stream_id: str, order: StreamOrder, context: OutputContext) -> StreamMessages:
    """
    The messages of C{order.protocol}.

    @raise ValueError: for another protocol.
    """
    if order.protocol == "raw":
        return RawMessages(stream_id, order, context)
    if order.protocol == "twilio":
        return TwilioMessages(stream_id, order, context)
    raise ValueError("unknown stream protocol %r" % (order.protocol,))
