# -*- test-case-name: tests.siprec.test_metadata -*-
"""
The RFC 7865 metadata model and its partial updates.

The model (L{RecordingMetadata} and its parts, L{RequestSnapshot}) is made
of frozen value objects; C{to_bytes} writes them through
L{aiconnect.siprec.metadata_writer}.

Partial updates (RFC 7865 s5.1.2, RFC 8068 examples) are applied onto a
complete snapshot by L{apply_update} (L{RecordingMetadata.apply}); see there
for the merge rules.

Parsing lives in L{aiconnect.siprec.metadata_parser}, the metadata we
forward in L{aiconnect.siprec.metadata_forward}; L{aiconnect.siprec.metadata}
is the public face.

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

from aiconnect.siprec.metadata_writer import write_recording, write_request_snapshot

__all__ = [
    "COMPLETE",
    "Group",
    "NameID",
    "PARTIAL",
    "Participant",
    "ParticipantSessionAssoc",
    "ParticipantStreamAssoc",
    "Reason",
    "RecordingMetadata",
    "RequestSnapshot",
    "Session",
    "SessionRecordingAssoc",
    "Stream",
    "apply_update",
]

#: C{<datamode>} values (RFC 7865 s5.1.2).
COMPLETE = "complete"
PARTIAL = "partial"


# --------------------------------------------------------------------------
# The model


@dataclass(frozen=True, slots=True)
class Group:
    """
    C{<group>} (RFC 7865 s6.2): related communication sessions.

    @ivar extensions: child elements of other namespaces, as XML text.
    """

    group_id: str
    associate_time: str | None = None
    disassociate_time: str | None = None
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Reason:
    """
    C{<reason>} of a session (RFC 7865 s6.3): why it ended.

    @ivar cause: the protocol's cause code (an C{xs:short}).
    @ivar protocol: C{SIP} by default.
    """

    text: str
    cause: int
    protocol: str | None = None


@dataclass(frozen=True, slots=True)
class Session:
    """
    C{<session>} (RFC 7865 s6.3): one communication session.

    @ivar sip_session_ids: the C{<sipSessionID>} values (RFC 7989
        Session-ID), white space removed around C{;}.
    @ivar group_ref: the C{group_id} of its group, or C{None}.
    """

    session_id: str
    sip_session_ids: tuple[str, ...] = ()
    reasons: tuple[Reason, ...] = ()
    group_ref: str | None = None
    start_time: str | None = None
    stop_time: str | None = None
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NameID:
    """
    C{<nameID>} (RFC 7865 s6.5): an address of record and its display name.

    @ivar aor: the AOR URI.
    @ivar name: the display name, or C{None}.
    @ivar lang: the name's C{xml:lang}, or C{None}.
    """

    aor: str
    name: str | None = None
    lang: str | None = None


@dataclass(frozen=True, slots=True)
class Participant:
    """
    C{<participant>} (RFC 7865 s6.5).

    @ivar name_ids: its AORs with their names (the schema requires one).
    """

    participant_id: str
    name_ids: tuple[NameID, ...] = ()
    extensions: tuple[str, ...] = ()

    @property
    def aors(self) -> tuple[str, ...]:
        """
        Every AOR, in order.
        """
        return tuple(n.aor for n in self.name_ids)

    @property
    def aor(self) -> str | None:
        """
        The first AOR, or C{None}.
        """
        return self.name_ids[0].aor if self.name_ids else None

    @property
    def names(self) -> tuple[tuple[str, str | None], ...]:
        """
        Every display name with its language, in order.
        """
        return tuple((n.name, n.lang) for n in self.name_ids if n.name is not None)

    @property
    def name(self) -> str | None:
        """
        The first display name, or C{None}.
        """
        for n in self.name_ids:
            if n.name is not None:
                return n.name
        return None


@dataclass(frozen=True, slots=True)
class Stream:
    """
    C{<stream>} (RFC 7865 s6.6): one media stream of a session.

    @ivar session_id: the session it belongs to, or C{None}.
    @ivar label: the SDP C{a=label} of the recording session's stream (RFC
        7866 s7.1.1), or C{None}.
    """

    stream_id: str
    session_id: str | None = None
    label: str | None = None
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionRecordingAssoc:
    """
    C{<sessionrecordingassoc>} (RFC 7865 s6.4): a session being recorded.
    """

    session_id: str
    associate_time: str | None = None
    disassociate_time: str | None = None
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ParticipantSessionAssoc:
    """
    C{<participantsessionassoc>} (RFC 7865 s6.7): a participant joining or
    leaving a session.

    @ivar params: the C{<param pname pval>} pairs.
    """

    participant_id: str
    session_id: str
    associate_time: str | None = None
    disassociate_time: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ParticipantStreamAssoc:
    """
    C{<participantstreamassoc>} (RFC 7865 s6.8): the streams a participant
    sends and receives.

    @ivar send: the stream ids it sends on.
    @ivar recv: the stream ids it receives.
    """

    participant_id: str
    send: tuple[str, ...] = ()
    recv: tuple[str, ...] = ()
    associate_time: str | None = None
    disassociate_time: str | None = None
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RecordingMetadata:
    """
    One C{<recording>} document (RFC 7865 s6.1).

    @ivar datamode: L{COMPLETE} or L{PARTIAL} (a document without
        C{<datamode>} is taken as complete).
    @ivar extensions: root-level children of other namespaces, as XML text.
    """

    datamode: str = COMPLETE
    groups: tuple[Group, ...] = ()
    sessions: tuple[Session, ...] = ()
    participants: tuple[Participant, ...] = ()
    streams: tuple[Stream, ...] = ()
    session_recording_assocs: tuple[SessionRecordingAssoc, ...] = ()
    participant_session_assocs: tuple[ParticipantSessionAssoc, ...] = ()
    participant_stream_assocs: tuple[ParticipantStreamAssoc, ...] = ()
    extensions: tuple[str, ...] = ()

    @property
    def is_partial(self) -> bool:
        """
        Whether this is a partial update (RFC 7865 s5.1.2).
        """
        return self.datamode == PARTIAL

    def participant(self, participant_id: str) -> Participant | None:
        """
        The participant with this id, or C{None}.
        """
        for p in self.participants:
            if p.participant_id == participant_id:
                return p
        return None

    def session(self, session_id: str) -> Session | None:
        """
        The session with this id, or C{None}.
        """
        for s in self.sessions:
            if s.session_id == session_id:
                return s
        return None

    def stream(self, stream_id: str) -> Stream | None:
        """
        The stream with this id, or C{None}.
        """
        for s in self.streams:
            if s.stream_id == stream_id:
                return s
        return None

    def stream_by_label(self, label: str) -> Stream | None:
        """
        The first stream labelled C{label}, or C{None}.
        """
        for s in self.streams:
            if s.label == label:
                return s
        return None

    def stream_assoc(self, participant_id: str) -> ParticipantStreamAssoc | None:
        """
        The participant's C{<participantstreamassoc>}, or C{None}.
        """
        for a in self.participant_stream_assocs:
            if a.participant_id == participant_id:
                return a
        return None

    def senders(self, stream_id: str) -> tuple[Participant, ...]:
        """
        The participants sending on a stream, in document order.
        """
        ids = {a.participant_id for a in self.participant_stream_assocs if stream_id in a.send}
        return tuple(p for p in self.participants if p.participant_id in ids)

    def apply(self, update: RecordingMetadata) -> RecordingMetadata:
        """
        This snapshot with C{update} applied; see L{apply_update}.
        """
        return apply_update(self, update)

    def to_bytes(self) -> bytes:
        """
        The document, UTF-8, elements in the schema's order (RFC 7865 s9).
        """
        return write_recording(self).encode("utf-8")


@dataclass(frozen=True, slots=True)
class RequestSnapshot:
    """
    C{<requestsnapshot>} (RFC 7865 s7, RFC 7866 s9.2): an SRS asking the
    SRC for a complete snapshot.

    @ivar reason: the C{<requestreason>} text, or C{None}.
    @ivar lang: its C{xml:lang}, or C{None}.
    """

    reason: str | None = None
    lang: str | None = None
    extensions: tuple[str, ...] = ()

    def to_bytes(self) -> bytes:
        """
        The document, UTF-8.
        """
        return write_request_snapshot(self).encode("utf-8")


# --------------------------------------------------------------------------
# Partial updates


def _merge_keyed(old: Sequence, new: Sequence, key: Callable, merge: Callable) -> tuple:
    out = list(old)
    index = {key(x): i for i, x in enumerate(out)}
    for item in new:
        k = key(item)
        if k in index:
            out[index[k]] = merge(out[index[k]], item)
        else:
            index[k] = len(out)
            out.append(item)
    return tuple(out)


def _pick(new: object, old: object) -> object:
    return new if new is not None else old


def _merge_times(old, new) -> dict:
    return {
        "associate_time": _pick(new.associate_time, old.associate_time),
        "disassociate_time": _pick(new.disassociate_time, old.disassociate_time),
        "extensions": new.extensions or old.extensions,
    }


def _merge_group(old: Group, new: Group) -> Group:
    return replace(old, **_merge_times(old, new))


def _merge_session(old: Session, new: Session) -> Session:
    return replace(
        old,
        sip_session_ids=new.sip_session_ids or old.sip_session_ids,
        reasons=new.reasons or old.reasons,
        group_ref=_pick(new.group_ref, old.group_ref),
        start_time=_pick(new.start_time, old.start_time),
        stop_time=_pick(new.stop_time, old.stop_time),
        extensions=new.extensions or old.extensions,
    )


def _merge_participant(old: Participant, new: Participant) -> Participant:
    return replace(
        old,
        name_ids=new.name_ids or old.name_ids,
        extensions=new.extensions or old.extensions,
    )


def _merge_stream(old: Stream, new: Stream) -> Stream:
    return replace(
        old,
        session_id=_pick(new.session_id, old.session_id),
        label=_pick(new.label, old.label),
        extensions=new.extensions or old.extensions,
    )


def _merge_sra(old: SessionRecordingAssoc, new: SessionRecordingAssoc) -> SessionRecordingAssoc:
    return replace(old, **_merge_times(old, new))


def _merge_psa(old: ParticipantSessionAssoc, new: ParticipantSessionAssoc) -> ParticipantSessionAssoc:
    return replace(old, params=new.params or old.params, **_merge_times(old, new))


def _merge_pstra(old: ParticipantStreamAssoc, new: ParticipantStreamAssoc) -> ParticipantStreamAssoc:
    lists = {"send": new.send, "recv": new.recv} if (new.send or new.recv) else {}
    return replace(old, **lists, **_merge_times(old, new))


def apply_update(snapshot: RecordingMetadata | None, update: RecordingMetadata) -> RecordingMetadata:
    """
    The complete metadata after C{update} (RFC 7865 s5.1.2, RFC 7866 s9.1).

    A complete C{update} replaces the snapshot.  A partial one is merged
    element by element, matched by id (C{participantsessionassoc} by
    participant and session, C{participantstreamassoc} by participant):

        - an element with an unknown id is added at the end of its list;
        - a known element takes every child value the update carries and
          keeps the others (a session's C{<stop-time>} alone sets the stop
          time; C{<sipSessionID>}s, C{<reason>}s, a participant's
          C{<nameID>}s, extensions: when present, they replace the old
          list);
        - a C{participantstreamassoc} that carries any C{<send>} or
          C{<recv>} replaces both lists (RFC 8068 s3.2.2: a participant on
          hold is sent with C{<recv>} only and stops sending);
        - nothing is ever removed: RFC 7865 ends associations with
          C{disassociate-time} and sessions with C{stop-time}.

    A partial update without a snapshot (one that RFC 7866 s9.1 forbids) is
    applied onto an empty document.

    @return: the merged metadata, with C{datamode} complete.
    """
    if not update.is_partial:
        return update
    base = snapshot if snapshot is not None else RecordingMetadata()
    return RecordingMetadata(
        datamode=COMPLETE,
        groups=_merge_keyed(base.groups, update.groups, lambda g: g.group_id, _merge_group),
        sessions=_merge_keyed(base.sessions, update.sessions, lambda s: s.session_id, _merge_session),
        participants=_merge_keyed(
            base.participants, update.participants, lambda p: p.participant_id, _merge_participant
        ),
        streams=_merge_keyed(base.streams, update.streams, lambda s: s.stream_id, _merge_stream),
        session_recording_assocs=_merge_keyed(
            base.session_recording_assocs, update.session_recording_assocs, lambda a: a.session_id, _merge_sra
        ),
        participant_session_assocs=_merge_keyed(
            base.participant_session_assocs,
            update.participant_session_assocs,
            lambda a: (a.participant_id, a.session_id),
            _merge_psa,
        ),
        participant_stream_assocs=_merge_keyed(
            base.participant_stream_assocs,
            update.participant_stream_assocs,
            lambda a: a.participant_id,
            _merge_pstra,
        ),
        extensions=update.extensions or base.extensions,
    )
