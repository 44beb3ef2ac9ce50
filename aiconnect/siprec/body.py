# -*- test-case-name: tests.integration.test_inbound,tests.siprec.test_forward -*-
"""
The parts of a SIPRec message body (RFC 7866 s9): the SDP and the RFC 7865
recording metadata, bare or in C{multipart/mixed}.  Used by both legs: the
SRC's INVITE/UPDATE (L{aiconnect.siprec.srs}) and the SRS's answers
(L{aiconnect.siprec.forward}).  Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiconnect.errors import RemoteSipError
from aiconnect.sip.multipart import MultipartError, parse_multipart
from aiconnect.siprec import metadata as md_mod

__all__ = ["SiprecBody", "split_body"]


@dataclass(frozen=True, slots=True)
class SiprecBody:
    """
    The parts of a body that matter to SIPRec.

    @ivar sdp: the C{application/sdp} part, or C{None}.
    @ivar metadata: the recording metadata part, or C{None}.
    """

    sdp: bytes | None
    metadata: bytes | None


def split_body(message: Any) -> SiprecBody:
    """
    Find the SDP and the metadata in a request or response body (RFC 7866
    s9: a C{multipart/mixed} body, or a lone SDP or metadata part).

    @param message: a L{aiconnect.sip.message.Request} or C{Response}.
    @raise RemoteSipError: 400 for a multipart body that cannot be split.
    """
    ctype = message.content_type
    if not message.body or ctype is None:
        return SiprecBody(None, None)
    if ctype == "application/sdp":
        return SiprecBody(message.body, None)
    if md_mod.is_metadata_content_type(ctype):
        return SiprecBody(None, message.body)
    if ctype != "multipart/mixed":
        return SiprecBody(None, None)
    boundary = message.content_type_param("boundary")
    if not boundary:
        raise RemoteSipError("multipart body without boundary", 400)
    try:
        parts = parse_multipart(message.body, boundary)
    except MultipartError as e:
        raise RemoteSipError(e.reason, 400)
    sdp = meta = None
    for part in parts:
        if part.content_type == "application/sdp" and sdp is None:
            sdp = part.body
        elif (md_mod.is_metadata_content_type(part.content_type) or part.disposition == "recording-session") and meta is None:
            meta = part.body
    return SiprecBody(sdp, meta)
