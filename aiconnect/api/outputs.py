# -*- test-case-name: tests.api.test_outputs,tests.test_openapi,tests.test_openapi_outputs -*-
"""
What the output routes of the REST API (streams SPEC s8, recordings SPEC
s9, pause and resume SPEC s10) read from request bodies and how they name
outputs: the two output kinds and their JSON names (L{OutputKind}), the
id lists of C{/pause} and C{/resume} (L{read_targets}), and the answer's
C{paused} / C{resumed} object (L{describe_affected}).

Every count and size the client controls is bounded here: ids are
non-empty strings of at most L{MAX_OUTPUT_ID} characters, at most
L{MAX_TARGET_IDS} per list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiconnect.api.jsonio import ApiRequestError
from aiconnect.outputs.orders import parse_recording_order, parse_stream_order

__all__ = [
    "KINDS",
    "MAX_OUTPUT_ID",
    "MAX_TARGET_IDS",
    "OutputKind",
    "TARGET_FIELDS",
    "check_fields",
    "describe_affected",
    "read_output_id",
    "read_targets",
    "target_field",
]

#: Longest output id (C{forwardId}, C{streamId}, C{recordingId}) accepted
#: in a request body.
MAX_OUTPUT_ID = 128

#: Most ids in one list of a C{/pause} or C{/resume} body.
MAX_TARGET_IDS = 32


#: The runner's output kinds and the body field listing the ids of each in
#: C{/pause} and C{/resume}, in the order of the answer.
TARGET_FIELDS: tuple[tuple[str, str, str], ...] = (
    # (kind, request field, answer field)
    ("forward", "forwardIds", "forwards"),
    ("stream", "streamIds", "streams"),
    ("recording", "recordingIds", "recordings"),
)


@dataclass(frozen=True, slots=True)
class OutputKind:
    """
    One kind of output the REST API starts and stops by itself (streams and
    recordings; forwards have their own routes).

    @ivar kind: The runner's name of the kind (C{stream}, C{recording}).
    @ivar id_field: The JSON name of its ids (C{streamId}, C{recordingId}).
    @ivar parse: The order parser, C{(obj, prefix) -> order}.
    """

    kind: str
    id_field: str
    parse: Callable[[Any, str], Any]


#: The kinds, by runner name.
KINDS: Mapping[str, OutputKind] = {
    "stream": OutputKind("stream", "streamId", parse_stream_order),
    "recording": OutputKind("recording", "recordingId", parse_recording_order),
}


def check_fields(body: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    """
    @param body: A request body.
    @param allowed: Its allowed keys.
    @raise ApiRequestError: 400 naming the first unknown key.
    """
    for key in sorted(body):
        if key not in allowed:
            raise ApiRequestError(400, "unknown field", key)


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_OUTPUT_ID


def read_output_id(body: Mapping[str, Any], field: str) -> str | None:
    """
    The optional id of a stop request.

    @param body: The request body.
    @param field: C{forwardId}, C{streamId} or C{recordingId}.
    @return: The id, or L{None} when absent or null (all of the kind).
    @raise ApiRequestError: 400 naming C{field} if it is not a non-empty
        string of at most L{MAX_OUTPUT_ID} characters.
    """
    value = body.get(field)
    if value is None:
        return None
    if not _valid_id(value):
        raise ApiRequestError(
            400, f"must be a non-empty string of at most {MAX_OUTPUT_ID} characters (or absent: all)", field
        )
    return str(value)


def read_targets(body: Mapping[str, Any]) -> dict[str, list[str]] | None:
    """
    The outputs a C{/pause} or C{/resume} body names.

    @param body: The request body (its C{sessionId} already read).
    @return: L{None} when it names none of C{forwardIds}, C{streamIds},
        C{recordingIds} (all of the session's outputs); else kind -> ids,
        a kind whose list is absent (or null) mapped to C{[]}.
    @raise ApiRequestError: 400 naming the field: an unknown key, a list
        that is not a list of at most L{MAX_TARGET_IDS} distinct non-empty
        strings of at most L{MAX_OUTPUT_ID} characters.
    """
    check_fields(body, ("sessionId",) + tuple(field for _, field, _ in TARGET_FIELDS))
    targets: dict[str, list[str]] = {}
    given = False
    for kind, field, _ in TARGET_FIELDS:
        value = body.get(field)
        targets[kind] = []
        if value is None:
            continue
        given = True
        if not isinstance(value, list) or len(value) > MAX_TARGET_IDS:
            raise ApiRequestError(400, f"must be a list of at most {MAX_TARGET_IDS} ids", field)
        for index, item in enumerate(value):
            if not _valid_id(item):
                raise ApiRequestError(
                    400, f"must be a non-empty string of at most {MAX_OUTPUT_ID} characters", f"{field}[{index}]"
                )
            if item in targets[kind]:
                raise ApiRequestError(400, "listed twice", f"{field}[{index}]")
            targets[kind].append(item)
    return targets if given else None


def target_field(kind: Any) -> str | None:
    """
    @param kind: A runner output kind (C{forward}, C{stream}, C{recording}).
    @return: The body field listing its ids (C{forwardIds} ...), or
        L{None} for anything else.
    """
    for name, field, _ in TARGET_FIELDS:
        if name == kind:
            return field
    return None


def describe_affected(affected: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """
    The C{paused} / C{resumed} object of an answer.

    @param affected: What the runner returned: kind -> ids.
    @return: C{{"forwards": [...], "streams": [...], "recordings": [...]}},
        every key present.
    """
    return {answer: list(affected.get(kind, ())) for kind, _, answer in TARGET_FIELDS}
