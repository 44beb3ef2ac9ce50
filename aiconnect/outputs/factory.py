# -*- test-case-name: tests.outputs.test_factory -*-
"""
L{OutputMaker}: the L{aiconnect.legs.OutputFactory} of the service.  It
makes a L{aiconnect.outputs.stream.StreamLeg} or a
L{aiconnect.outputs.recording.RecordingLeg} for an order, with the
session's L{OutputContext}: its participants and which relay streams carry
the caller and the called party (L{parties_of}, the rule forwarding uses).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aiconnect.config import Config
from aiconnect.legs import OutputLeg, StreamInfo
from aiconnect.outputs.audio import Parties
from aiconnect.outputs.context import OutputContext
from aiconnect.siprec.metadata import caller_and_called
from aiconnect.views import describe_participants

__all__ = ["OutputMaker", "context_of", "parties_of"]


def _relay_index(streams: Sequence[StreamInfo], info: StreamInfo) -> int:
    return info.relay_index if info.relay_index is not None else list(streams).index(info)


def parties_of(streams: Sequence[StreamInfo], metadata: Any) -> Parties:
    """
    Which relay streams carry the caller and the called party: the streams
    each sends on per the RFC 7865 metadata (caller and called party as
    forwarding identifies them: L{caller_and_called}); without usable
    metadata, the first accepted stream is the caller's and the second the
    called party's.

    @param streams: the session's inbound streams (L{StreamInfo}).
    @param metadata: the session's L{RecordingMetadata}, or L{None}.
    """
    accepted = [s for s in streams if s.local_port]
    ordered = [_relay_index(streams, s) for s in accepted]
    fallback = Parties(
        caller=ordered[0] if ordered else None,
        callee=ordered[1] if len(ordered) > 1 else None,
    )
    if metadata is None or getattr(metadata, "is_partial", False):
        return fallback
    caller, called = caller_and_called(metadata, [s.label for s in accepted])

    def sent_by(participant: Any) -> int | None:
        if participant is None:
            return None
        assoc = metadata.stream_assoc(participant.participant_id)
        sends = set(assoc.send) if assoc else set()
        for s in accepted:
            if s.stream_id is not None and s.stream_id in sends:
                return _relay_index(streams, s)
        return None

    found = Parties(caller=sent_by(caller), callee=sent_by(called))
    if found.caller is None and found.callee is None:
        return fallback
    return found


def context_of(call: Any) -> OutputContext:
    """
    The L{OutputContext} of a L{aiconnect.call.Call} now.
    """
    return OutputContext(
        session_id=call.session_id,
        tenant=call.tenant.domain,
        call_id=call.call_id,
        participants=tuple(describe_participants(call.metadata)),
        parties=parties_of(call.streams, call.metadata),
    )


class OutputMaker:
    """
    Makes the legs of streams and recordings (L{aiconnect.legs.OutputFactory}).
    """

    def __init__(self, reactor: Any, config: Config, tls_creator: Callable[[str], Any], uploader: Any = None) -> None:
        """
        @param reactor: the reactor (TCP, TLS, time, threads).
        @param config: the configuration (C{[streams]}, C{[recording]}).
        @param tls_creator: host name -> verified TLS client creator (the
            one trunks use).
        @param uploader: the L{aiconnect.outputs.upload.Uploader} of
            recordings with an C{uploadUrl}, or L{None}.
        """
        self.reactor = reactor
        self.config = config
        self.tls_creator = tls_creator
        self.uploader = uploader
        #: Legs made, by kind (published on C{/metrics} as
        #: C{aiconnect_outputs_streams} / C{_recordings}).
        self.stats: dict[str, int] = {"streams": 0, "recordings": 0}

    def __call__(self, runner: Any, kind: str, output_id: str, order: Any) -> OutputLeg:
        """
        A new, unstarted leg of C{kind} reporting to C{runner}.

        @raise ValueError: for an unknown kind.
        """
        context = context_of(runner.call)
        media = runner.media
        if kind == "stream":
            from aiconnect.outputs.stream import StreamLeg

            self.stats["streams"] += 1
            return StreamLeg(
                self.reactor, runner, output_id, order, context, media, self.config.streams, self.tls_creator
            )
        if kind == "recording":
            from aiconnect.outputs.recording import RecordingLeg

            self.stats["recordings"] += 1
            return RecordingLeg(
                self.reactor, runner, output_id, order, context, media, self.config.recording, self.uploader
            )
        raise ValueError("unknown output kind %r" % (kind,))
