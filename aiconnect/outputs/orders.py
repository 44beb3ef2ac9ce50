# -*- test-case-name: tests.outputs.test_orders,tests.api.test_outputs,tests.test_openapi,tests.test_openapi_outputs -*-
"""
The C{startStream} (SPEC s8) and C{startRecording} (SPEC s9) objects: what
the application wrote, validated into frozen orders.  A bad field raises
L{aiconnect.siprec.orders.OrderError} naming it, as for forwards; the same
parsers serve the newCall answer (L{orders_from_answer}) and the REST API.

Everything outsiders control is bounded: URL lengths, the number and size
of handshake headers, the size and depth of C{metadata} and reference ids
(those of C{sipRecForwardReferenceId}).  URLs carry no credentials (user
information): a stream's credentials go in C{headers}, an upload's in the
pre-signed query string, which events never show.

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiconnect.outputs.audio import ENCODINGS, TRACKS
from aiconnect.sip.uri import is_hostname, is_ip_literal
from aiconnect.siprec.orders import CONTROL_RE, OrderError, orders_from_answer, reference_object

__all__ = [
    "FORMATS",
    "HEADER_NAME_RE",
    "MAX_HEADERS",
    "MAX_HEADER_VALUE",
    "MAX_STREAM_URL",
    "MAX_UPLOAD_URL",
    "PROTOCOLS",
    "RECORDING_FORMATS",
    "RESERVED_HEADERS",
    "RecordingOrder",
    "SAMPLE_RATES",
    "StreamOrder",
    "orders_from_answer",
    "parse_recording_order",
    "parse_stream_order",
]

#: Longest C{url} of a stream, in characters.
MAX_STREAM_URL = 2048
#: Longest C{uploadUrl} of a recording (pre-signed URLs are long).
MAX_UPLOAD_URL = 4096
#: Most handshake C{headers} of a stream.
MAX_HEADERS = 16
#: Longest handshake header value, in UTF-8 bytes.
MAX_HEADER_VALUE = 1024
#: The C{protocol} values of a stream.
PROTOCOLS = ("raw", "twilio")
#: The C{sampleRate} values of a stream (16000 with L16 only).
SAMPLE_RATES = (8000, 16000)
#: The C{format} values of a recording.
RECORDING_FORMATS = ("wav",)
#: The C{format} values of a stream (its sample formats).
FORMATS = ENCODINGS
#: RFC 7230 s3.2.6 C{token} (C{1*tchar}): a header field name.
HEADER_NAME_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
#: Handshake headers the WebSocket client sets itself (lower case);
#: C{sec-websocket-} names are all refused too.
RESERVED_HEADERS = ("host", "upgrade", "connection", "content-length", "transfer-encoding")
_RESERVED_PREFIX = "sec-websocket-"

_STREAM_KEYS = frozenset(
    ("url", "tracks", "format", "sampleRate", "protocol", "headers", "metadata", "streamReferenceId")
)
_RECORDING_KEYS = frozenset(("tracks", "format", "encoding", "uploadUrl", "recordingReferenceId"))


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


def _join(prefix: str, name: str) -> str:
    return prefix + "." + name if prefix else name


def _check_object(obj: Any, prefix: str, keys: frozenset[str]) -> dict[str, Any]:
    """
    @return: C{obj}, a JSON object with none but C{keys}.
    @raise OrderError: Naming C{prefix} or the first unknown key.
    """
    if not isinstance(obj, dict):
        raise OrderError(prefix, "must be an object")
    unknown = sorted(set(obj) - keys)
    if unknown:
        raise OrderError(_join(prefix, unknown[0]), "unknown field")
    return obj


def _choice(obj: dict[str, Any], key: str, prefix: str, allowed: tuple[str, ...], upper: bool = False) -> str | None:
    """
    @return: The value of C{key}, one of C{allowed} (compared and returned
        upper-case when C{upper}), or L{None} if absent or null.
    @raise OrderError: Naming the field if it is anything else.
    """
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        if upper:
            value = value.upper()
        if value in allowed:
            return value
    raise OrderError(_join(prefix, key), "must be one of " + ", ".join(allowed))


def _url(value: Any, field: str, schemes: tuple[str, ...], max_length: int, required: bool) -> str | None:
    """
    Validate a URL: one of C{schemes}, a valid host (name or IP address),
    a port from 1 to 65535 if any, no credentials, fragment, white space or
    control characters, at most C{max_length} characters.

    @return: The URL as given, or L{None} if absent and not C{required}.
    @raise OrderError: Naming C{field}; the message never quotes the URL
        (its query string may hold a secret).
    """
    wanted = " or ".join(scheme + "://" for scheme in schemes)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise OrderError(field, "required, a %s URL" % (wanted,))
    if len(value) > max_length:
        raise OrderError(field, "longer than %d characters" % (max_length,))
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise OrderError(field, "must not contain white space or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise OrderError(field, "not a valid URL") from None
    if parts.scheme.lower() not in schemes:
        raise OrderError(field, "must be a %s URL" % (wanted,))
    host = parts.hostname or ""
    if not (is_ip_literal(host) or is_hostname(host)):
        raise OrderError(field, "needs a valid host")
    if port == 0:
        raise OrderError(field, "port 0 is not a port")
    if parts.username is not None or parts.password is not None:
        raise OrderError(field, "credentials in the URL are not supported")
    if parts.fragment or value.endswith("#"):
        raise OrderError(field, "must not have a fragment")
    return value


def _headers(value: Any, field: str) -> tuple[tuple[str, str], ...]:
    """
    Validate a stream's handshake C{headers}.

    @return: (name, value) pairs in the given order.
    @raise OrderError: Naming the field or the header at fault.
    """
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise OrderError(field, "must be an object of header name to value")
    if len(value) > MAX_HEADERS:
        raise OrderError(field, "at most %d headers" % (MAX_HEADERS,))
    out = []
    seen = set()
    for name, text in value.items():
        where = _join(field, name)
        if not HEADER_NAME_RE.match(name):
            raise OrderError(where, "header name must be a token (RFC 7230)")
        lower = name.lower()
        if lower in RESERVED_HEADERS or lower.startswith(_RESERVED_PREFIX):
            raise OrderError(where, "set by the WebSocket client itself")
        if lower in seen:
            raise OrderError(where, "duplicate header name")
        seen.add(lower)
        if not isinstance(text, str):
            raise OrderError(where, "value must be a string")
        if CONTROL_RE.search(text):
            raise OrderError(where, "value must not contain CR, LF or control characters")
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise OrderError(where, "value is not valid Unicode (lone surrogate)") from None
        if size > MAX_HEADER_VALUE:
            raise OrderError(where, "value longer than %d bytes" % (MAX_HEADER_VALUE,))
        out.append((name, text.strip()))
    return tuple(out)


def _sample_rate(obj: dict[str, Any], prefix: str) -> int | None:
    value = obj.get("sampleRate")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value not in SAMPLE_RATES:
        raise OrderError(_join(prefix, "sampleRate"), "must be 8000 or 16000")
    return value


def parse_stream_order(obj: Any, prefix: str = "") -> StreamOrder:
    """
    Validate one C{startStream} object (SPEC s8).

    A C{twilio} stream is mu-law at 8 kHz: its C{format} defaults to
    C{PCMU}, and any other C{format} or C{sampleRate} is refused.  16 kHz
    is for C{L16} only.

    @param obj: The decoded JSON value.
    @param prefix: The field path of C{obj} (for error messages), e.g.
        C{startStream[1]}.
    @return: The order.
    @raise OrderError: Naming the first invalid field.
    """
    obj = _check_object(obj, prefix, _STREAM_KEYS)
    url = _url(obj.get("url"), _join(prefix, "url"), ("ws", "wss"), MAX_STREAM_URL, required=True)
    assert url is not None
    tracks = _choice(obj, "tracks", prefix, TRACKS) or "both"
    protocol = _choice(obj, "protocol", prefix, PROTOCOLS) or "raw"
    given_format = _choice(obj, "format", prefix, FORMATS, upper=True)
    rate = _sample_rate(obj, prefix)
    if protocol == "twilio":
        if given_format not in (None, "PCMU"):
            raise OrderError(_join(prefix, "format"), "the twilio protocol carries PCMU only")
        if rate not in (None, 8000):
            raise OrderError(_join(prefix, "sampleRate"), "the twilio protocol carries 8000 Hz only")
    sample_format = given_format or ("PCMU" if protocol == "twilio" else "L16")
    if rate == 16000 and sample_format != "L16":
        raise OrderError(_join(prefix, "sampleRate"), "16000 is for format L16 only")
    headers = _headers(obj.get("headers"), _join(prefix, "headers"))
    metadata = reference_object(obj.get("metadata"), _join(prefix, "metadata"))
    reference = reference_object(obj.get("streamReferenceId"), _join(prefix, "streamReferenceId"))
    return StreamOrder(
        url=url,
        tracks=tracks,
        format=sample_format,
        sample_rate=rate or 8000,
        protocol=protocol,
        headers=headers,
        metadata=metadata,
        reference_id=reference,
    )


def parse_recording_order(obj: Any, prefix: str = "") -> RecordingOrder:
    """
    Validate one C{startRecording} object (SPEC s9).

    @param obj: The decoded JSON value.
    @param prefix: The field path of C{obj} (for error messages), e.g.
        C{startRecording}.
    @return: The order.
    @raise OrderError: Naming the first invalid field.
    """
    obj = _check_object(obj, prefix, _RECORDING_KEYS)
    tracks = _choice(obj, "tracks", prefix, TRACKS) or "both"
    _choice(obj, "format", prefix, RECORDING_FORMATS)
    encoding = _choice(obj, "encoding", prefix, ENCODINGS, upper=True) or "L16"
    upload_url = _url(obj.get("uploadUrl"), _join(prefix, "uploadUrl"), ("http", "https"), MAX_UPLOAD_URL, required=False)
    reference = reference_object(obj.get("recordingReferenceId"), _join(prefix, "recordingReferenceId"))
    return RecordingOrder(tracks=tracks, encoding=encoding, upload_url=upload_url, reference_id=reference)
