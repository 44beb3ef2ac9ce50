# -*- test-case-name: tests.sip.test_sdp,tests.sip.test_sdes,tests.sip.test_offer_answer -*-
"""
Session descriptions: SDP (RFC 4566) with the offer/answer model (RFC
3264), SDES keys (C{a=crypto}, RFC 4568), stream labels (C{a=label}, RFC
4574) and the direction attributes, as SIPRec uses them (RFC 7866 s7).

This module is the public face of four rooms, and re-exports their names:

    - L{aiconnect.sip.sdp_fields}: the line-level values (C{o=}, C{c=},
      C{t=}, C{a=}, C{a=rtpmap}), the direction attributes, the static
      payload types and L{SdpError};
    - L{aiconnect.sip.sdes}: SDES keys (L{Crypto}, L{KeyParam},
      L{SUPPORTED_SUITES});
    - L{aiconnect.sip.sdp_model}: media and session sections, the
      serializer and the parser (L{parse_sdp});
    - L{aiconnect.sip.offer_answer}: what we accept (L{rejection_reason},
      L{select_crypto}, L{supported_codec}) and what we send (L{build_srs_answer},
      L{build_src_offer}, L{next_session_version}).

Parsing is tolerant of what real SRCs send: bare LF line ends, trailing
white space, blank lines, unknown line types and attributes (all kept and
written back), IPv6 connection addresses, port-0 and C{a=inactive} streams,
static payload types without C{a=rtpmap}.  Only what cannot be understood at
all (no C{v=0}, a malformed C{o=}, C{c=}, C{t=} or C{m=} line, a line that is
not C{<type>=<value>}) raises L{SdpError}, a L{RemoteSipError} whose status
hint is 488 (RFC 3261 s21.4.26).

Keys are never generated here: the SRTP module makes them and hands them in
as L{Crypto} values (L{Crypto.from_key}).  A key never appears in a C{repr}.

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

from aiconnect.sip.offer_answer import (
    ACCEPTED_PROTOS,
    OfferStream,
    build_src_offer,
    build_srs_answer,
    next_session_version,
    rejection_reason,
    select_crypto,
    supported_codec,
)
from aiconnect.sip.sdes import SUPPORTED_SUITES, Crypto, KeyParam
from aiconnect.sip.sdp_fields import (
    DIRECTIONS,
    STATIC_PAYLOAD_TYPES,
    Attribute,
    Connection,
    Origin,
    RtpMap,
    SdpError,
    Timing,
)
from aiconnect.sip.sdp_model import MediaDescription, SessionDescription, parse_sdp

__all__ = [
    "ACCEPTED_PROTOS",
    "Attribute",
    "Connection",
    "Crypto",
    "DIRECTIONS",
    "KeyParam",
    "MediaDescription",
    "OfferStream",
    "Origin",
    "RtpMap",
    "STATIC_PAYLOAD_TYPES",
    "SUPPORTED_SUITES",
    "SdpError",
    "SessionDescription",
    "Timing",
    "build_srs_answer",
    "build_src_offer",
    "next_session_version",
    "parse_sdp",
    "rejection_reason",
    "select_crypto",
    "supported_codec",
]
