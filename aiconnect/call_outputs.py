# -*- test-case-name: tests.test_call_outputs -*-
"""
The streams (SPEC s8) and recordings (SPEC s9) of a L{aiconnect.call.Call}:
their states, inputs, actions and transition table.  Pure, like the Call.
"""

from __future__ import annotations

import datetime
import secrets

__all__ = ["new_recording_id", "new_stream_id"]


def new_stream_id() -> str:
    """
    A fresh stream id: C{str_} and 16 hex digits.
    """
    return "str_" + secrets.token_hex(8)


def new_recording_id(now: float) -> str:
    """
    A fresh recording id: C{rec_}, the UTC date of C{now} as C{YYYYMMDD},
    C{_} and 16 hex digits (C{rec_20261202_0123456789abcdef}); the date
    names the recording's directory (SPEC s9).
    """

    day = datetime.datetime.fromtimestamp(now, tz=datetime.timezone.utc).strftime("%Y%m%d")
    return "rec_%s_%s" % (day, secrets.token_hex(8))
