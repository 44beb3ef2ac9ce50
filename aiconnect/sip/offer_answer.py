# -*- test-case-name: tests.sip.test_offer_answer,tests.sip.test_offer_answer_codecs -*-
"""
The offer/answer model (RFC 3264) as SIPRec uses it (RFC 7866 s7): what AI
Connect accepts and what it sends.

    - L{rejection_reason}: whether we can accept an offered stream,
      L{supported_codec}, the codec we answer (G.711 first, then G.722 or
      Opus, which the relay decodes), and L{select_crypto}, the offered
      C{a=crypto} line we answer (RFC 4568 s7.1);
    - L{build_srs_answer}: our answer as SRS to an SRC's offer (RFC 3264 s6,
      RFC 7866 s7.2): every offered m-line in order, rejected ones with port
      0, C{a=recvonly} on the accepted ones, C{a=label} echoed, one codec
      plus C{telephone-event} with the offer's payload types, and our own
      SDES key with the offer's tag and suite on RTP/SAVP streams;
    - L{build_src_offer}: our offer as SRC to a downstream SRS (RFC 7866
      s7.1.1): one C{a=sendonly} m-line per L{OfferStream} with its
      C{a=label};
    - L{next_session_version}: the origin version rule of a re-offer or
      re-answer (RFC 3264 s8).

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Iterable, Sequence

from aiconnect.errors import LocalSipError
from aiconnect.sip.sdes import SUPPORTED_SUITES, Crypto
from aiconnect.sip.sdp_fields import DIRECTIONS, Attribute, Connection, Origin, RtpMap, SdpError
from aiconnect.sip.sdp_model import MediaDescription, SessionDescription

__all__ = [
    "ACCEPTED_PROTOS",
    "OfferStream",
    "build_src_offer",
    "build_srs_answer",
    "next_session_version",
    "rejection_reason",
    "select_crypto",
    "supported_codec",
]

#: The static payload type of each codec we offer (RFC 3551 Table 4).
_CODEC_PT = {"PCMU": 0, "PCMA": 8}
#: The RTP clock rate of each codec we accept: G.722 is sampled at 16 kHz
#: but its RTP clock is 8000 (RFC 3551 s4.5.2); Opus is always
#: C{opus/48000/2} (RFC 7587 s7).
_CLOCK_RATE = {"pcmu": 8000, "pcma": 8000, "g722": 8000, "opus": 48000}
#: Codecs the relay decodes: chosen only when no other accepted codec is
#: offered (relaying G.711 needs no decoding).
_DECODED = frozenset({"g722", "opus"})
#: Our C{a=fmtp} for Opus (RFC 7587 s6.1): we decode to 8 kHz mono, so
#: the sender need not spend bits above that.
_OPUS_FMTP = "maxplaybackrate=8000;stereo=0"

#: The transport protocols we answer (RFC 3551, RFC 3711, RFC 4585, RFC
#: 5124); RFC 7866 s8.1.2 recommends the feedback profiles and requires the
#: plain ones to work.
ACCEPTED_PROTOS = ("RTP/AVP", "RTP/SAVP", "RTP/AVPF", "RTP/SAVPF")

# An a=label value we write (RFC 4574: a token).
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+\Z")


def supported_codec(media: MediaDescription, codecs: Sequence[str]) -> int | None:
    """
    The payload type we answer: the first of the offer (offerer's
    preference, RFC 3264 s6.1) whose encoding is one of C{codecs} at its
    RTP clock rate (8000 Hz; 48000 for Opus), G.711 before the decoded
    codecs (G.722, Opus): a stream offering PCMA and G.722 is answered
    PCMA whatever the order, so its audio is relayed without decoding.
    """
    wanted = {c.lower() for c in codecs}
    rtpmap = media.rtpmap
    decoded = None
    for pt in media.payload_types:
        entry = rtpmap.get(pt)
        if entry is None:
            continue
        encoding = entry.encoding.lower()
        if encoding not in wanted or entry.clock_rate != _CLOCK_RATE.get(encoding, 8000):
            continue
        if encoding not in _DECODED:
            return pt
        if decoded is None:
            decoded = pt
    return decoded


def select_crypto(media: MediaDescription, suites: Sequence[str] = SUPPORTED_SUITES) -> Crypto | None:
    """
    The offered C{a=crypto} line we answer (RFC 4568 s7.1.1): the first, in
    the offerer's order, that is L{Crypto.usable} and whose suite is in
    C{suites}; C{None} if there is none.

    The SRS makes a key of that line's suite and answers with
    C{Crypto.from_key(offered.tag, offered.suite, key)}.
    """
    allowed = set(suites)
    for c in media.crypto:
        if c.usable and c.suite in allowed:
            return c
    return None


def rejection_reason(
    media: MediaDescription,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    suites: Sequence[str] = SUPPORTED_SUITES,
) -> str | None:
    """
    Why we would reject an offered stream, or C{None} if we can accept it.

    A stream is accepted when it is enabled (port not 0), C{audio}, over
    one of L{ACCEPTED_PROTOS}, offers one of C{codecs} at 8000 Hz, and, for
    an SRTP profile, offers a usable C{a=crypto} line (L{select_crypto}).
    Callers allocate ports only for accepted streams.
    """
    if media.port == 0:
        return "disabled in the offer"
    if media.media.lower() != "audio":
        return f"media {media.media} not supported"
    if media.proto.upper() not in ACCEPTED_PROTOS:
        return f"transport {media.proto} not supported"
    if supported_codec(media, codecs) is None:
        return "no supported codec"
    if media.is_secure and select_crypto(media, suites) is None:
        return "no supported crypto suite"
    return None


# RFC 3264 s6.1: the answer's direction for each offered direction, for an
# answerer that only receives.
_ANSWER_DIRECTION = {
    "sendonly": "recvonly",
    "sendrecv": "recvonly",
    "recvonly": "inactive",
    "inactive": "inactive",
}


def _rejected(offered: MediaDescription) -> MediaDescription:
    # RFC 3264 s6: port 0, same media and transport, at least one format.
    attrs = (Attribute("label", offered.label),) if offered.label is not None else ()
    return MediaDescription(
        media=offered.media,
        port=0,
        proto=offered.proto,
        formats=offered.formats or ("0",),
        attributes=attrs,
    )


def build_srs_answer(
    offer: SessionDescription,
    *,
    origin: Origin,
    address: str,
    ports: Sequence[int],
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    crypto: Sequence[Crypto | None] = (),
    suites: Sequence[str] = SUPPORTED_SUITES,
    inactive: bool = False,
) -> SessionDescription:
    """
    Our answer, as SRS, to an SRC's offer (RFC 3264 s6, RFC 7866 s7.2).

    The answer has one media section per offered one, in order (RFC 3264
    s6).  A stream is rejected (port 0, label kept) when C{ports} gives it
    0 or L{rejection_reason} finds a reason.  An accepted stream gets:

        - our port and, at session level, C{c=} with C{address};
        - the codec chosen by L{supported_codec} (the offer's first
          payload type among C{codecs}, G.711 before G.722 and Opus) with
          its C{a=rtpmap} (C{opus/48000/2}) and C{a=fmtp} (the offer's for
          G.711 and G.722; ours for Opus: 8 kHz mono is all we decode to),
          and C{telephone-event/8000} (or at Opus's 48000) when
          offered, both with the offer's payload types and C{a=rtpmap},
          the offer's C{a=fmtp} for telephone-event (C{0-15} if none) and
          its C{a=ptime};
        - the direction: C{recvonly} for an offered C{sendonly} or
          C{sendrecv}, C{inactive} for C{recvonly} or C{inactive} (RFC 3264
          s6.1), or C{inactive} for all when C{inactive} is true (an SRS not
          ready yet, RFC 7866 s7.2);
        - the offer's C{a=label} (RFC 7866 s7.1.1);
        - on an SRTP profile, C{crypto[i]}: our key with the tag and suite
          of one of the offered lines (L{select_crypto}).

    @param offer: the SRC's offer.
    @param origin: our C{o=} line (L{Origin.new} for the first answer; the
        previous one for a re-answer, see L{next_session_version}).
    @param address: the address of our RTP ports.
    @param ports: one port per offered media section (0 = reject).
    @param codecs: encodings we accept, any order (the offer's order wins).
    @param crypto: our key per offered media section (C{None} for RTP/AVP
        or rejected ones); may be shorter than the offer when no stream is
        secure.
    @param suites: the crypto suites we accept.
    @param inactive: answer every accepted stream C{a=inactive}.
    @return: the answer.
    @raise LocalSipError: when C{ports} does not match the offer, or an
        accepted SRTP stream has no key, or a key does not answer an
        offered tag and suite (our bug, not the peer's).
    @raise SdpError: (488) when the offer has no media section at all.
    """
    if not offer.media:
        raise SdpError("offer has no media stream")
    if len(ports) != len(offer.media):
        raise LocalSipError(f"{len(ports)} ports for {len(offer.media)} offered streams")
    if len(crypto) > len(offer.media):
        raise LocalSipError("more keys than offered streams")
    out: list[MediaDescription] = []
    for index, offered in enumerate(offer.media):
        port = ports[index]
        if port == 0 or rejection_reason(offered, codecs, suites) is not None:
            out.append(_rejected(offered))
            continue
        if not 0 < port < 65536:
            raise LocalSipError(f"bad port {port}")
        pt = supported_codec(offered, codecs)
        assert pt is not None
        rtpmap = offered.rtpmap
        formats = [str(pt)]
        attrs = [_codec_rtpmap(pt, rtpmap[pt])]
        fmtp = _OPUS_FMTP if rtpmap[pt].encoding.lower() == "opus" else offered.fmtp.get(pt)
        if fmtp:
            attrs.append(Attribute("fmtp", f"{pt} {fmtp}"))
        te = offered.telephone_event
        if te is None and rtpmap[pt].clock_rate != 8000:  # RFC 4733 s2.1: the audio's clock
            te = offered.payload_type_for("telephone-event", rtpmap[pt].clock_rate)
        if te is not None:
            formats.append(str(te))
            attrs.append(Attribute("rtpmap", f"{te} {rtpmap[te].encoding}/{rtpmap[te].clock_rate}"))
            attrs.append(Attribute("fmtp", f"{te} {offered.fmtp.get(te) or '0-15'}"))
        if offered.ptime is not None:
            attrs.append(Attribute("ptime", str(offered.ptime)))
        direction = "inactive" if inactive else _ANSWER_DIRECTION[offered.direction]
        attrs.append(Attribute(direction))
        if offered.label is not None:
            attrs.append(Attribute("label", offered.label))
        if offered.is_secure:
            ours = crypto[index] if index < len(crypto) else None
            if ours is None:
                raise LocalSipError(f"no SRTP key for offered stream {index}")
            if not any(c.tag == ours.tag and c.suite == ours.suite for c in offered.crypto):
                raise LocalSipError(f"key for stream {index} answers no offered crypto tag and suite")
            attrs.append(ours.attribute())
        out.append(
            MediaDescription(
                media=offered.media,
                port=port,
                proto=offered.proto,
                formats=tuple(formats),
                attributes=tuple(attrs),
            )
        )
    return SessionDescription(
        origin=origin,
        connection=Connection.for_address(address),
        media=tuple(out),
    )


def _codec_rtpmap(pt: int, entry: RtpMap) -> Attribute:
    # The answered codec's a=rtpmap: Opus always with its two channels
    # (RFC 7587 s7), the others with none (one is the default).
    suffix = "/2" if entry.encoding.lower() == "opus" else ""
    return Attribute("rtpmap", f"{pt} {entry.encoding}/{entry.clock_rate}{suffix}")


@dataclass(frozen=True, slots=True)
class OfferStream:
    """
    One stream of an offer we make as SRC (RFC 7866 s7.1.1).

    @ivar label: the C{a=label} value, which the metadata's stream label
        repeats (RFC 7866 s7.1.1).
    @ivar port: our RTP port; 0 removes the stream (RFC 7866 s7.1.1.1).
    @ivar crypto: our keys, one C{a=crypto} line each; the stream is
        RTP/SAVP when there is at least one, RTP/AVP otherwise.
    @ivar direction: C{sendonly}, or C{inactive} to pause (RFC 7866
        s7.1.1.1).
    """

    label: str
    port: int
    crypto: tuple[Crypto, ...] = ()
    direction: str = "sendonly"


def build_src_offer(
    streams: Iterable[OfferStream],
    *,
    origin: Origin,
    address: str,
    codec: str = "PCMA",
    telephone_event: int | None = 101,
    ptime: int | None = 20,
) -> SessionDescription:
    """
    Our offer, as SRC, to a downstream SRS (RFC 7866 s7.1.1): one
    C{m=audio} section per stream, in order, each with the codec's static
    payload type, C{telephone-event/8000} (RFC 4733, events C{0-15}) when
    C{telephone_event} is not C{None}, C{a=ptime}, the stream's direction,
    its C{a=label}, and its C{a=crypto} lines on RTP/SAVP.

    @param streams: the streams, in m-line order.
    @param origin: our C{o=} line; for a re-offer, see
        L{next_session_version}.
    @param address: the address of our RTP ports (session-level C{c=}).
    @param codec: C{PCMA} or C{PCMU}.
    @param telephone_event: the dynamic payload type for telephone-event.
    @param ptime: the packet time to advertise, or C{None}.
    @raise LocalSipError: for an unknown codec, a bad port, direction or
        label, or a repeated label.
    """
    pt = _CODEC_PT.get(codec.upper())
    if pt is None:
        raise LocalSipError(f"unsupported codec {codec!r}")
    out: list[MediaDescription] = []
    seen: set[str] = set()
    for stream in streams:
        if not 0 <= stream.port < 65536:
            raise LocalSipError(f"bad port {stream.port}")
        if stream.direction not in DIRECTIONS:
            raise LocalSipError(f"unknown SDP direction {stream.direction!r}")
        if not stream.label or not _TOKEN.match(stream.label):
            raise LocalSipError(f"bad stream label {stream.label!r}")
        if stream.label in seen:
            raise LocalSipError(f"repeated stream label {stream.label!r}")
        seen.add(stream.label)
        formats = [str(pt)]
        attrs = [Attribute("rtpmap", f"{pt} {codec.upper()}/8000")]
        if telephone_event is not None:
            formats.append(str(telephone_event))
            attrs.append(Attribute("rtpmap", f"{telephone_event} telephone-event/8000"))
            attrs.append(Attribute("fmtp", f"{telephone_event} 0-15"))
        if ptime is not None:
            attrs.append(Attribute("ptime", str(ptime)))
        attrs.append(Attribute(stream.direction))
        attrs.append(Attribute("label", stream.label))
        attrs.extend(c.attribute() for c in stream.crypto)
        out.append(
            MediaDescription(
                media="audio",
                port=stream.port,
                proto="RTP/SAVP" if stream.crypto else "RTP/AVP",
                formats=tuple(formats),
                attributes=tuple(attrs),
            )
        )
    return SessionDescription(
        origin=origin,
        connection=Connection.for_address(address),
        media=tuple(out),
    )


def next_session_version(previous: SessionDescription, new: SessionDescription) -> SessionDescription:
    """
    C{new}, carrying C{previous}'s origin: unchanged when C{new} describes
    the same session, with the version incremented when anything differs
    (RFC 3264 s8: "the version in the origin field MUST increment by one
    from the previous SDP" for a modified description, and stay the same
    for an identical one).

    @param previous: the last description we sent in this session.
    @param new: the next one, whatever its origin.
    """
    same = replace(new, origin=previous.origin)
    if same.to_bytes() == previous.to_bytes():
        return same
    return replace(new, origin=previous.origin.next_version())
