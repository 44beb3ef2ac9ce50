# -*- test-case-name: tests.siprec.test_forward_rules,tests.integration.test_failover -*-
"""
The pure decisions of a forward leg (L{aiconnect.siprec.forward}) that
SPEC s13 adds: which streams get RTP (the SRS lost, its C{a=inactive}, an
inbound hold), our answer to the SRS's own offer (RFC 3264 s6.1), and the
metadata ids that stay the same across the forward's offers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from aiconnect.sip.sdp import SessionDescription

__all__ = ["RECEIVING", "SENDING", "StableIds", "answer_directions", "held_streams", "inbound_sending"]

#: The directions in which the SRS receives what we send (RFC 3264 s5.1,
#: from its side): its answer or offer says so.
RECEIVING = frozenset(("recvonly", "sendrecv"))
#: The directions in which the SRC sends us a stream (from its side).
SENDING = frozenset(("sendonly", "sendrecv"))


def inbound_sending(streams: Sequence[Any], relay_indices: Sequence[int]) -> list[bool]:
    """
    Per forwarded stream (by relay stream index): whether its inbound
    stream is there (has a port) and the SRC sends it; an inbound hold
    (C{a=inactive}, C{a=recvonly}) is mirrored to the SRS (SPEC s13).

    @param streams: the Call's L{aiconnect.legs.StreamInfo}s.
    @param relay_indices: the relay stream of each forwarded stream.
    """
    sends = {
        (s.relay_index if s.relay_index is not None else position): s.direction in SENDING
        for position, s in enumerate(streams)
        if s.local_port
    }
    return [sends.get(r, False) for r in relay_indices]


def held_streams(n: int, lost: bool, active: Sequence[bool], srs_receives: dict[int, bool]) -> set[int]:
    """
    The streams that get no RTP (the pause aside): all of them while the
    SRS is lost; else those offered C{a=inactive} (C{active} false) and
    those the SRS will not receive.
    """
    return {
        i
        for i in range(n)
        if lost or not (active[i] if i < len(active) else True) or not srs_receives.get(i, True)
    }


def answer_directions(
    ours: SessionDescription,
    theirs: SessionDescription,
    srs_receives: dict[int, bool],
    active: Sequence[bool],
    paused: bool,
) -> SessionDescription:
    """
    Our answer to the SRS's own offer (RFC 3264 s6.1): our description
    with each stream C{a=sendonly} where we send and the SRS receives, else
    C{a=inactive}.

    @param ours: the last description we sent.
    @param theirs: the SRS's offer.
    @param srs_receives: per stream, whether the SRS receives it (from
        C{theirs}).
    @param active: per stream, whether we send it (the inbound stream is
        there and sent).
    @param paused: the forward is paused (SPEC s10).
    """
    media = list(ours.media)
    for i, m in enumerate(media):
        sending = (
            i < len(theirs.media)
            and srs_receives.get(i, True)
            and (active[i] if i < len(active) else True)
            and not paused
        )
        media[i] = m.with_direction("sendonly" if sending else "inactive")
    return replace(ours, media=tuple(media))


class StableIds:
    """
    The metadata ids of one forward: the n-th id a build asks for is the
    n-th of the first build, so every offer of the forward (re-INVITE,
    re-establishment: SPEC s13) keeps the ids its SRS knows; fresh ones
    only for what is new.  Bounded by what the builds ask for.
    """

    def __init__(self, new_id: Callable[[], str]) -> None:
        """
        @param new_id: makes a fresh id.
        """
        self._new_id = new_id
        self._ids: list[str] = []

    def factory(self) -> Callable[[], str]:
        """
        The C{id_factory} for one build.
        """
        given = 0

        def next_id() -> str:
            nonlocal given
            if given == len(self._ids):
                self._ids.append(self._new_id())
            given += 1
            return self._ids[given - 1]

        return next_id
