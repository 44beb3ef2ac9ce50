# -*- test-case-name: tests.siprec.test_metadata_forward -*-
"""
Who is who in RFC 7865 metadata, and the metadata we send downstream.

Caller and called party: RFC 7865 does not name them.  L{caller_and_called}
applies this rule, which matches what SRCs send (the first stream is the
calling party's, and the caller is listed first):

    1. order the streams by the SDP's labels when they are given (m-line
       order), else by document order;
    2. the caller is the only participant that sends on the first stream;
       when that stream has no single sender (a mixed stream, or no
       association), the caller is the first participant in document order;
    3. the called party is the first participant that is the only sender
       of a later stream (in that order) the caller does not send on;
       failing that, the first other participant in document order.

Participants that have left (a C{disassociate-time}) are not treated
differently.

L{forward_metadata} builds the metadata for an outbound recording session
(RFC 7866 s9.1) from the inbound one with the order's caller / called
overrides (name, AOR user part, stream label), new session ids, and
every identifier and time made valid for the schema;
L{metadata_from_labels} builds it when the SRC sent none.

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

import base64
import re
import secrets
import urllib.parse
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

from aiconnect.errors import LocalSipError
from aiconnect.siprec.metadata_model import (
    COMPLETE,
    NameID,
    Participant,
    ParticipantSessionAssoc,
    ParticipantStreamAssoc,
    RecordingMetadata,
    Session,
    SessionRecordingAssoc,
    Stream,
)

__all__ = [
    "ANONYMOUS_AOR",
    "ForwardedMetadata",
    "PartyOverride",
    "caller_and_called",
    "forward_metadata",
    "metadata_from_labels",
    "new_id",
    "replace_aor_user",
]

#: The AOR given to a participant that has none (RFC 3323 s4.1.1.3
#: convention), since the schema requires one.
ANONYMOUS_AOR = "sip:anonymous@anonymous.invalid"


def _ordered_streams(md: RecordingMetadata, labels: Sequence[str | None] | None) -> list[Stream]:
    streams = list(md.streams)
    if not labels:
        return streams
    order = {label: i for i, label in reversed(list(enumerate(labels))) if label is not None}
    big = len(order)
    # sorted() is stable: unlabelled or unknown streams keep document order after the others.
    return sorted(streams, key=lambda s: order.get(s.label, big) if s.label is not None else big)


def caller_and_called(
    md: RecordingMetadata, labels: Sequence[str | None] | None = None
) -> tuple[Participant | None, Participant | None]:
    """
    The calling and the called participant, by the rule in the module
    docstring.

    @param md: complete metadata.
    @param labels: the SDP's labels in m-line order, to order the streams
        (optional).
    @return: C{(caller, called)}; either is C{None} when there are not
        enough participants.
    """
    if not md.participants:
        return None, None
    streams = _ordered_streams(md, labels)
    caller: Participant | None = None
    if streams:
        senders = md.senders(streams[0].stream_id)
        if len(senders) == 1:
            caller = senders[0]
    if caller is None:
        caller = md.participants[0]
    called: Participant | None = None
    caller_assoc = md.stream_assoc(caller.participant_id)
    caller_sends = set(caller_assoc.send) if caller_assoc else set()
    for s in streams[1:]:
        if s.stream_id in caller_sends:
            continue
        senders = md.senders(s.stream_id)
        if len(senders) == 1 and senders[0].participant_id != caller.participant_id:
            called = senders[0]
            break
    if called is None:
        for p in md.participants:
            if p.participant_id != caller.participant_id:
                called = p
                break
    return caller, called


def new_id() -> str:
    """
    A fresh metadata identifier: 128 random bits in base64 (RFC 7865 s6.9
    uses base64-encoded UUIDs).
    """
    return base64.b64encode(secrets.token_bytes(16)).decode("ascii")


# XML Schema Part 2 s3.2.16: base64Binary (white space already removed).
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?\Z")
# XML Schema Part 2 s3.2.7: dateTime.
_DATETIME = re.compile(
    r"-?[0-9]{4,}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])T"
    r"(?:[01][0-9]|2[0-4]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
    r"(?:Z|[+-](?:0[0-9]|1[0-4]):[0-5][0-9])?\Z"
)
# RFC 3261 s25.1: characters allowed unescaped in a user part.
_USER_SAFE = "-_.!~*'()&=+$,;?/"


def replace_aor_user(aor: str, user: str) -> str:
    """
    C{aor} with its user part replaced by C{user} (escaped per RFC 3261
    s25.1): C{sip:alice@example.com} -> C{sip:bob@example.com}; a user part
    is added to a URI without one; the password, if any, is dropped; a
    C{tel:} URI gets C{user} as its number.
    """
    escaped = urllib.parse.quote(user, safe=_USER_SAFE)
    scheme, sep, rest = aor.strip().partition(":")
    if not sep:
        return f"sip:{escaped}@{aor.strip()}" if aor.strip() else f"sip:{escaped}@anonymous.invalid"
    if scheme.lower() == "tel":
        _, semi, params = rest.partition(";")
        return f"{scheme}:{escaped}{semi}{params}"
    at = rest.find("@")
    if at >= 0 and "?" not in rest[:at]:
        return f"{scheme}:{escaped}{rest[at:]}"
    return f"{scheme}:{escaped}@{rest}"


@dataclass(frozen=True, slots=True)
class PartyOverride:
    """
    What a forwarding order changes for one party (SPEC s3: C{caller} /
    C{calledParty}).

    @ivar name: the display name (C{<name>}); replaces every name of the
        participant (C{xml:lang} is dropped, since the language of the new
        name is unknown).
    @ivar user: the AOR user part; replaces it in every AOR.
    @ivar label: the stream label (C{<label>} and the SDP's C{a=label}) of
        the party's stream.
    """

    name: str | None = None
    user: str | None = None
    label: str | None = None


@dataclass(frozen=True, slots=True)
class ForwardedMetadata:
    """
    The result of L{forward_metadata}.

    @ivar metadata: the complete metadata for the outbound session.
    @ivar labels: inbound stream label -> outbound stream label, for every
        labelled stream (the SDP offer to the SRS uses the outbound ones).
    @ivar caller_id: the caller's participant id (outbound), or C{None}.
    @ivar called_id: the called party's participant id (outbound), or
        C{None}.
    """

    metadata: RecordingMetadata
    labels: dict[str, str] = field(default_factory=dict)
    caller_id: str | None = None
    called_id: str | None = None


def _valid_time(value: str | None) -> str | None:
    return value if value is not None and _DATETIME.match(value) else None


def _party_stream(
    md: RecordingMetadata,
    party: Participant,
    streams: list[Stream],
    claimed: set[str],
    fallback: int,
) -> Stream | None:
    assoc = md.stream_assoc(party.participant_id)
    sends = set(assoc.send) if assoc else set()
    for s in streams:
        if s.stream_id in sends and s.stream_id not in claimed:
            return s
    if fallback < len(streams) and streams[fallback].stream_id not in claimed:
        return streams[fallback]
    for s in streams:
        if s.stream_id not in claimed:
            return s
    return None


def forward_metadata(
    inbound: RecordingMetadata,
    *,
    caller: PartyOverride | None = None,
    called: PartyOverride | None = None,
    labels: Sequence[str | None] | None = None,
    id_factory: Callable[[], str] = new_id,
) -> ForwardedMetadata:
    """
    The metadata of an outbound recording session forwarding C{inbound}
    (RFC 7866 s9.1, SPEC s3/s4).

    The participants, streams, associations, groups and extensions are
    kept; then:

        - every session gets a fresh id (references follow);
        - any other id that is not valid C{base64Binary} gets a fresh one,
          consistently (so what we send validates);
        - times that are not valid C{xs:dateTime} are dropped, and a
          participant without an AOR gets L{ANONYMOUS_AOR};
        - the caller's and the called party's overrides are applied (who is
          who: L{caller_and_called}).  A party's stream (the one whose label
          its C{label} replaces) is the first one, in stream order, that it
          sends on and the other party has not taken; failing that the first
          (caller) or second (called) stream, else the first one not taken;
          when every stream is taken (one mixed stream) the called party's
          label is not applied.

    @param inbound: the complete inbound metadata.
    @param caller: the caller's overrides, or C{None} to keep them.
    @param called: the called party's overrides, or C{None}.
    @param labels: the inbound SDP's labels in m-line order (orders the
        streams for the caller/called rule).
    @param id_factory: makes fresh ids (L{new_id}; tests pass their own).
    @return: the new metadata (C{datamode} complete) and the label mapping.
    @raise LocalSipError: when an overridden label would repeat another
        stream's label.
    """
    id_map: dict[str, str] = {}

    def fresh(old: str) -> str:
        if old not in id_map:
            id_map[old] = id_factory()
        return id_map[old]

    def keep(old: str) -> str:
        if old in id_map:
            return id_map[old]
        return old if old and _BASE64.match(old) else fresh(old)

    for s in inbound.sessions:
        fresh(s.session_id)
    for a in inbound.session_recording_assocs:
        fresh(a.session_id)
    for st in inbound.streams:
        if st.session_id is not None:
            fresh(st.session_id)
    for psa in inbound.participant_session_assocs:
        fresh(psa.session_id)

    md = RecordingMetadata(
        datamode=COMPLETE,
        groups=tuple(
            replace(
                g,
                group_id=keep(g.group_id),
                associate_time=_valid_time(g.associate_time),
                disassociate_time=_valid_time(g.disassociate_time),
            )
            for g in inbound.groups
        ),
        sessions=tuple(
            replace(
                s,
                session_id=keep(s.session_id),
                group_ref=keep(s.group_ref) if s.group_ref is not None else None,
                start_time=_valid_time(s.start_time),
                stop_time=_valid_time(s.stop_time),
            )
            for s in inbound.sessions
        ),
        participants=tuple(
            replace(
                p,
                participant_id=keep(p.participant_id),
                name_ids=p.name_ids or (NameID(ANONYMOUS_AOR),),
            )
            for p in inbound.participants
        ),
        streams=tuple(
            replace(
                st,
                stream_id=keep(st.stream_id),
                session_id=keep(st.session_id) if st.session_id is not None else None,
            )
            for st in inbound.streams
        ),
        session_recording_assocs=tuple(
            replace(
                a,
                session_id=keep(a.session_id),
                associate_time=_valid_time(a.associate_time),
                disassociate_time=_valid_time(a.disassociate_time),
            )
            for a in inbound.session_recording_assocs
        ),
        participant_session_assocs=tuple(
            replace(
                a,
                participant_id=keep(a.participant_id),
                session_id=keep(a.session_id),
                associate_time=_valid_time(a.associate_time),
                disassociate_time=_valid_time(a.disassociate_time),
            )
            for a in inbound.participant_session_assocs
        ),
        participant_stream_assocs=tuple(
            replace(
                a,
                participant_id=keep(a.participant_id),
                send=tuple(keep(s) for s in a.send),
                recv=tuple(keep(r) for r in a.recv),
                associate_time=_valid_time(a.associate_time),
                disassociate_time=_valid_time(a.disassociate_time),
            )
            for a in inbound.participant_stream_assocs
        ),
        extensions=inbound.extensions,
    )

    caller_p, called_p = caller_and_called(md, labels)
    streams = _ordered_streams(md, labels)
    claimed: set[str] = set()
    new_labels: dict[str, str] = {}  # stream id -> new label
    participants = {p.participant_id: p for p in md.participants}
    for party, override, fallback in ((caller_p, caller, 0), (called_p, called, 1)):
        if party is None or override is None:
            continue
        p = participants[party.participant_id]
        if override.name is not None:
            p = replace(p, name_ids=tuple(replace(n, name=override.name, lang=None) for n in p.name_ids))
        if override.user is not None:
            p = replace(p, name_ids=tuple(replace(n, aor=replace_aor_user(n.aor, override.user)) for n in p.name_ids))
        participants[p.participant_id] = p
        stream = _party_stream(md, party, streams, claimed, fallback)
        if stream is not None:
            claimed.add(stream.stream_id)
            if override.label is not None:
                new_labels[stream.stream_id] = override.label
    if new_labels:
        final = [new_labels.get(s.stream_id, s.label) for s in md.streams]
        seen: set[str] = set()
        for label in final:
            if label is None:
                continue
            if label in seen:
                raise LocalSipError(f"stream label {label!r} would be used twice")
            seen.add(label)
    md = replace(
        md,
        participants=tuple(participants[p.participant_id] for p in md.participants),
        streams=tuple(
            replace(s, label=new_labels[s.stream_id]) if s.stream_id in new_labels else s for s in md.streams
        ),
    )
    label_map: dict[str, str] = {}
    for old, new in zip(inbound.streams, md.streams):
        if old.label is not None and new.label is not None:
            label_map.setdefault(old.label, new.label)
    return ForwardedMetadata(
        metadata=md,
        labels=label_map,
        caller_id=caller_p.participant_id if caller_p else None,
        called_id=called_p.participant_id if called_p else None,
    )


def metadata_from_labels(
    labels: Sequence[str],
    *,
    caller_aor: str,
    called_aor: str,
    caller_name: str | None = None,
    called_name: str | None = None,
    sip_session_ids: Sequence[str] = (),
    start_time: str | None = None,
    id_factory: Callable[[], str] = new_id,
) -> RecordingMetadata:
    """
    Complete metadata for a session whose SRC sent none (so a forward can
    still send metadata, RFC 7866 s9.1): one session, the caller and the
    called party, one stream per label.  The caller sends on the first
    stream and receives the second, the called party the reverse; with a
    single stream both send and receive on it (a mixed stream, RFC 8068
    s3.3.1); further streams have no association.

    @param labels: the SDP labels in m-line order.
    @param caller_aor: the caller's AOR (the From URI, say).
    @param called_aor: the called party's AOR (the To URI).
    @param caller_name: the caller's display name, if any.
    @param called_name: the called party's display name, if any.
    @param sip_session_ids: the communication session's Session-ID values.
    @param start_time: an C{xs:dateTime}, if known.
    @param id_factory: makes fresh ids.
    """
    session_id = id_factory()
    caller = Participant(id_factory(), (NameID(caller_aor or ANONYMOUS_AOR, caller_name),))
    called = Participant(id_factory(), (NameID(called_aor or ANONYMOUS_AOR, called_name),))
    streams = tuple(Stream(id_factory(), session_id, label) for label in labels)
    ids = [s.stream_id for s in streams]
    if len(ids) >= 2:
        caller_send, called_send = (ids[0],), (ids[1],)
    elif ids:
        caller_send = called_send = (ids[0],)
    else:
        caller_send = called_send = ()
    return RecordingMetadata(
        datamode=COMPLETE,
        sessions=(Session(session_id, tuple(sip_session_ids), start_time=_valid_time(start_time)),),
        participants=(caller, called),
        streams=streams,
        session_recording_assocs=(SessionRecordingAssoc(session_id),),
        participant_session_assocs=(
            ParticipantSessionAssoc(caller.participant_id, session_id),
            ParticipantSessionAssoc(called.participant_id, session_id),
        ),
        participant_stream_assocs=(
            ParticipantStreamAssoc(caller.participant_id, send=caller_send, recv=called_send),
            ParticipantStreamAssoc(called.participant_id, send=called_send, recv=caller_send),
        ),
    )
