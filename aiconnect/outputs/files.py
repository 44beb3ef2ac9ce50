# -*- test-case-name: tests.outputs.test_files -*-
"""
Where recordings live, and what the REST API needs to serve and delete
them (SPEC s9: C{GET}/C{DELETE /{domain}/recordings/{recordingId}}).

A recording is C{{directory}/{tenant}/{YYYY-MM-DD}/{recordingId}.wav},
the date taken from the id (L{aiconnect.call_outputs.new_recording_id}:
C{rec_YYYYMMDD_} and 16 lower-case hex digits).  L{recording_path} is the
only way from an outsider's id to a path: anything else than such an id,
or a tenant that is not a plain host name or IP literal, gives L{None}, so
no request can name a file outside its tenant's directory.

Files still being written (or hashed, or uploaded) are registered here by
their leg (L{mark_open} / L{mark_closed}); L{delete_recording} refuses
them with L{RecordingBusy} (the API answers 409).
"""

from __future__ import annotations

import datetime
import os
import re
import stat

from twisted.web import resource, static

from aiconnect.errors import AiconnectError

__all__ = [
    "RecordingBusy",
    "delete_recording",
    "is_open",
    "mark_closed",
    "mark_open",
    "recording_path",
    "recording_resource",
]

_ID = re.compile(r"rec_([0-9]{4})([0-9]{2})([0-9]{2})_[0-9a-f]{16}")
# Lower-case host names and IP literals (IPv6 compressed, no brackets).
_TENANT = re.compile(r"[a-z0-9][a-z0-9.:-]{0,252}")

#: Paths of the recordings their legs still hold (being written, hashed
#: or uploaded).
_OPEN: set[str] = set()


class RecordingBusy(AiconnectError):
    """
    The recording is still being written, hashed or uploaded (REST 409).
    """


def recording_path(directory: str, tenant: str, recording_id: str) -> str | None:
    """
    The file of a recording.

    @param directory: The C{[recording] directory}.
    @param tenant: The tenant's (normalized) domain.
    @param recording_id: C{rec_YYYYMMDD_} and 16 lower-case hex digits.
    @return: C{{directory}/{tenant}/{YYYY-MM-DD}/{recordingId}.wav}, or
        L{None} for an id or tenant of another shape (or an impossible
        date).
    """
    match = _ID.fullmatch(recording_id)
    if match is None or _TENANT.fullmatch(tenant) is None or ".." in tenant:
        return None
    try:
        day = datetime.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None
    return os.path.join(directory, tenant, day.isoformat(), recording_id + ".wav")


def mark_open(path: str) -> None:
    """
    A leg holds C{path}: L{delete_recording} refuses it until
    L{mark_closed}.
    """
    _OPEN.add(path)


def mark_closed(path: str) -> None:
    """
    The leg is done with C{path} (no error if it was not marked).
    """
    _OPEN.discard(path)


def is_open(path: str) -> bool:
    """
    Whether a leg still holds C{path}.
    """
    return path in _OPEN


def _regular_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


class _WavFile(static.File):
    """
    A recording served as C{audio/wav}, with Range requests (RFC 9110
    s14) as L{static.File} implements them; a leaf.
    """

    isLeaf = True
    contentTypes = {".wav": "audio/wav"}


def recording_resource(directory: str, tenant: str, recording_id: str) -> resource.IResource | None:
    """
    The resource serving a recording (C{GET}, C{HEAD}, Range honoured).

    @return: L{None} for a bad id or tenant, or no such regular file (a
        symbolic link is not followed).
    """
    path = recording_path(directory, tenant, recording_id)
    if path is None or not _regular_file(path):
        return None
    return _WavFile(path, defaultType="audio/wav")


def delete_recording(directory: str, tenant: str, recording_id: str) -> bool:
    """
    Remove a recording's file.

    @return: Whether a file was removed (L{False}: bad id or tenant, or no
        such file).
    @raise RecordingBusy: Its leg still holds it.
    @raise OSError: The file exists but cannot be removed.
    """
    path = recording_path(directory, tenant, recording_id)
    if path is None or not _regular_file(path):
        return False
    if is_open(path):
        raise RecordingBusy("recording %s is still being written" % (recording_id,))
    try:
        os.remove(path)
    except FileNotFoundError:
        return False
    return True
