# -*- test-case-name: tests.siprec.test_metadata,tests.siprec.test_metadata_forward -*-
"""
SIPRec recording metadata (RFC 7865, used as RFC 7866 s9 and RFC 8068
describe): safe parsing, the model, partial updates, building, and the
rewrite for forwarding a session to another SRS.

This module is the public face of four rooms, and re-exports their names:

    - L{aiconnect.siprec.metadata_model}: the model (L{RecordingMetadata}
      and its parts, L{RequestSnapshot}) and partial updates
      (L{apply_update}, RFC 7865 s5.1.2);
    - L{aiconnect.siprec.metadata_writer}: the serializer behind
      C{to_bytes} (elements in the RFC 7865 s9 schema's order);
    - L{aiconnect.siprec.metadata_parser}: safe parsing (L{parse_metadata},
      L{parse_document}: size and depth bounds, no DOCTYPE, no entities)
      and the body's media types (L{is_metadata_content_type});
    - L{aiconnect.siprec.metadata_forward}: who is the caller and the called
      party (L{caller_and_called}) and the metadata we send downstream
      (L{forward_metadata}, L{metadata_from_labels}).

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

from aiconnect.siprec.metadata_forward import (
    ANONYMOUS_AOR,
    ForwardedMetadata,
    PartyOverride,
    caller_and_called,
    forward_metadata,
    metadata_from_labels,
    new_id,
    replace_aor_user,
)
from aiconnect.siprec.metadata_model import (
    COMPLETE,
    PARTIAL,
    Group,
    NameID,
    Participant,
    ParticipantSessionAssoc,
    ParticipantStreamAssoc,
    Reason,
    RecordingMetadata,
    RequestSnapshot,
    Session,
    SessionRecordingAssoc,
    Stream,
    apply_update,
)
from aiconnect.siprec.metadata_parser import (
    CONTENT_TYPES,
    DEFAULT_MAX_SIZE,
    MAX_DEPTH,
    XML_NAMESPACE,
    MetadataError,
    is_metadata_content_type,
    parse_document,
    parse_metadata,
)
from aiconnect.siprec.metadata_writer import NAMESPACE

__all__ = [
    "ANONYMOUS_AOR",
    "COMPLETE",
    "CONTENT_TYPES",
    "DEFAULT_MAX_SIZE",
    "MAX_DEPTH",
    "ForwardedMetadata",
    "Group",
    "MetadataError",
    "NAMESPACE",
    "NameID",
    "PARTIAL",
    "Participant",
    "ParticipantSessionAssoc",
    "ParticipantStreamAssoc",
    "PartyOverride",
    "Reason",
    "RecordingMetadata",
    "RequestSnapshot",
    "Session",
    "SessionRecordingAssoc",
    "Stream",
    "XML_NAMESPACE",
    "apply_update",
    "caller_and_called",
    "forward_metadata",
    "is_metadata_content_type",
    "metadata_from_labels",
    "new_id",
    "parse_document",
    "parse_metadata",
    "replace_aor_user",
]
