# -*- test-case-name: tests.test_call,tests.test_call_outputs -*-
"""
The vocabulary of the L{aiconnect.call.Call}'s state machines, shared by
L{aiconnect.call} (the session and its forwards) and
L{aiconnect.call_outputs} (its streams and recordings): L{Input} (a fact,
with the C{now} it happened at), L{Action} (what the adapter carries out),
L{Emit} and L{Row} (one transition of a table).  Pure.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from aiconnect import events

__all__ = ["Action", "Emit", "Input", "Row"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Input:
    """
    A fact reported to the Call.

    @ivar now: when it happened (Unix seconds); events it causes carry it.
    """

    now: float


@dataclass(frozen=True, slots=True)
class Action:
    """
    Something the adapter carries out for the Call.
    """


@dataclass(frozen=True, slots=True)
class Emit(Action):
    """
    Put an event in the sink (and the journal, for the events it tracks).
    """

    event: events.Event


@dataclass(frozen=True, slots=True)
class Row:
    """
    One transition: what the handler does, the usual next state, and the
    reference it implements.
    """

    handler: Any
    next_state: enum.Enum | None
    ref: str
