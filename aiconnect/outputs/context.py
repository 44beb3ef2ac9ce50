# -*- test-case-name: tests.outputs.test_audio -*-
"""
L{OutputContext}: what a stream or recording knows of its session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiconnect.outputs.audio import Parties

__all__ = ["OutputContext"]


@dataclass(frozen=True, slots=True)
class OutputContext:
    """
    The session an output belongs to, as the runner saw it when the output
    started.

    @ivar session_id: the session id.
    @ivar tenant: the tenant's domain.
    @ivar call_id: the inbound Call-ID.
    @ivar participants: the session's participants as JSON objects (the
        REST API's C{participants}: C{participantId}, C{name}, C{aor},
        C{role} ...).
    @ivar parties: which relay streams carry the caller and the called
        party.
    """

    session_id: str
    tenant: str
    call_id: str = ""
    participants: tuple[dict[str, Any], ...] = ()
    parties: Parties = field(default_factory=Parties)
