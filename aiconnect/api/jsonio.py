# -*- test-case-name: tests.api.test_forwards,tests.api.test_routes,tests.test_openapi -*-
"""
JSON in and out of the REST API: request bodies read as one JSON object
(size-limited, strict about duplicate keys, C{NaN} and lone surrogates),
answers written as compact UTF-8 JSON, and L{ApiRequestError}, the refusal
every handler raises (answered as C{{"success": false, "error": ...,
"field": ...}}).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from twisted.web.iweb import IRequest

from aiconnect.errors import AiconnectError
from aiconnect.text import clean_json, json_problem, replace_surrogates

JSON_CONTENT_TYPE = b"application/json; charset=utf-8"

#: Largest request body accepted, in bytes; larger ones are answered 413.
MAX_BODY = 64 * 1024

#: Longest C{sessionId} accepted in a request body.
MAX_SESSION_ID = 256


class ApiRequestError(AiconnectError):
    """
    A request the API refuses: answered with C{status} and a JSON error
    naming the C{field} at fault (SPEC s6: "Malformed input -> 400 with a JSON
    error naming the field").

    @ivar status: The HTTP status (400, 401, 403, 404, 409 ...).
    @ivar message: What is wrong, for the client.
    @ivar field: The JSON field (dotted for nested ones) at fault, or
        L{None}.
    @ivar headers: Extra response headers (C{WWW-Authenticate} of a 401).
    """

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """
        @param status: The HTTP status.
        @param message: What is wrong.
        @param field: The field at fault, if any.
        @param headers: Extra response headers, if any.
        """
        super().__init__(status, message, field)
        self.status = status
        self.message = message
        self.field = field
        self.headers = dict(headers or {})

    def __str__(self) -> str:
        """
        @return: C{"<status> [<field>: ]<message>"}.
        """
        where = f"{self.field}: " if self.field else ""
        return f"{self.status} {where}{self.message}"


class _DuplicateKey(ValueError):
    """
    A JSON object of a request body has the same key twice.

    @ivar key: The key.
    """

    def __init__(self, key: str) -> None:
        """
        @param key: The duplicated key.
        """
        super().__init__(key)
        self.key = key


def json_answer(request: IRequest, status: int, payload: Mapping[str, Any]) -> bytes:
    """
    Set the status and content type of a JSON answer.

    @param request: The request being answered.
    @param status: The HTTP status.
    @param payload: The JSON object.
    @return: The encoded body.
    """
    request.setResponseCode(status)
    request.setHeader(b"content-type", JSON_CONTENT_TYPE)
    request.setHeader(b"cache-control", b"no-store")
    try:
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate that slipped past the boundary must not turn an
        # answer into a 500 (the values are decoded where they enter).
        return json.dumps(clean_json(payload), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def error_answer(request: IRequest, status: int, message: str, field: str | None = None) -> bytes:
    """
    @return: The encoded JSON error body, with the status set.
    """
    payload: dict[str, Any] = {"success": False, "error": message}
    if field is not None:
        payload["field"] = field
    return json_answer(request, status, payload)


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """
    C{object_pairs_hook} refusing duplicate keys (RFC 8259 s4: their meaning
    is unpredictable, so we do not guess).

    @param pairs: The members of one JSON object.
    @return: The object.
    @raise _DuplicateKey: If a key appears twice.
    """
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    """
    C{parse_constant} refusing C{NaN} and C{Infinity} (not JSON, RFC 8259 s6).

    @raise ValueError: Always.
    """
    raise ValueError(f"{name} is not a JSON value")


def read_json_object(request: IRequest) -> dict[str, Any]:
    """
    Read a request body that must be a JSON object of at most L{MAX_BODY}
    bytes.  The C{Content-Type} is not checked (clients that send JSON as
    C{text/plain} or C{application/x-www-form-urlencoded} work too).

    @param request: The request.
    @return: The object.
    @raise ApiRequestError: 413 for a body over L{MAX_BODY}; 400 (field
        C{body}, the duplicated key, or the path of the string) for an
        empty body, a body that is not UTF-8 JSON, has a duplicate key, is
        not an object, or holds a C{"\ud800"}-style escape that is not
        valid Unicode (a lone surrogate: it could never be echoed as
        JSON).
    """
    too_large = ApiRequestError(413, f"request body larger than {MAX_BODY} bytes", "body")
    length = request.getHeader(b"content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            declared = 0
        if declared > MAX_BODY:
            raise too_large
    content = request.content
    if content is None:
        data = b""
    else:
        content.seek(0)
        data = content.read(MAX_BODY + 1)
    if len(data) > MAX_BODY:
        raise too_large
    if not data.strip():
        raise ApiRequestError(400, "required: a JSON object", "body")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApiRequestError(400, "not UTF-8", "body") from None
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_constant=_no_constant)
    except _DuplicateKey as e:
        raise ApiRequestError(400, f"duplicate key {e.key!r}", replace_surrogates(e.key)) from None
    except RecursionError:
        raise ApiRequestError(400, "not valid JSON: nested too deeply", "body") from None
    except ValueError as e:
        raise ApiRequestError(400, f"not valid JSON: {e}", "body") from None
    if not isinstance(value, dict):
        raise ApiRequestError(400, "must be a JSON object", "body")
    problem = json_problem(value)
    if problem is not None:
        raise ApiRequestError(400, problem[1], problem[0])
    return value


def read_session_id(body: Mapping[str, Any]) -> str:
    """
    @param body: A request body.
    @return: Its C{sessionId}.
    @raise ApiRequestError: 400 (field C{sessionId}) if it is missing or
        not a non-empty string of at most L{MAX_SESSION_ID} characters.
    """
    value = body.get("sessionId")
    if value is None:
        raise ApiRequestError(400, "required", "sessionId")
    if not isinstance(value, str) or not value or len(value) > MAX_SESSION_ID:
        raise ApiRequestError(
            400, f"must be a non-empty string of at most {MAX_SESSION_ID} characters", "sessionId"
        )
    return value
