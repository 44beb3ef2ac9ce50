"""
Mutation fuzzing of the SIP parser and stream framer, bounded in count:
whatever the bytes, the result is a message or a SipParseError, never
another exception (a parser bug must not reach the reactor).
"""

from __future__ import annotations

import random
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.sip.message import Request, SipParseError, StreamFramer, parse
from aiconnect.sip.multipart import MultipartError, parse_multipart
from aiconnect.sip.uri import UriError

DATA = Path(__file__).parent.parent / "data"
SEEDS = sorted((DATA / "rfc4475").glob("*.sip")) + sorted((DATA / "rfc5118").glob("*.sip"))
ROUNDS = 40  # mutations per seed message: ~2,500 inputs, well under a second or two

TOKENS = [b"\r\n", b"\r\n\r\n", b":", b";", b",", b"<", b">", b"\"", b"\\", b"%", b"[", b"]", b" ", b"\t", b"\x00", b"\xff", b"SIP/2.0", b"Content-Length: 99999999999", b"Content-Length: -1", b"Via: ", b"l: 5\r\n", b"sip:", b"sips:[::1]"]


def mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(5)
        pos = rng.randrange(len(out) + 1)
        if op == 0 and out:
            del out[pos : pos + rng.randint(1, 20)]
        elif op == 1:
            out[pos:pos] = rng.choice(TOKENS)
        elif op == 2 and out:
            out[min(pos, len(out) - 1)] = rng.randrange(256)
        elif op == 3:
            cut = rng.randrange(len(out) + 1)
            out = out[:cut]
        else:
            a = rng.randrange(len(out) + 1)
            out[pos:pos] = out[a : a + rng.randint(1, 40)]
    return bytes(out)


class FuzzTests(SynchronousTestCase):
    """
    The parser survives mutated torture messages.
    """

    def test_parse_never_raises_other_exceptions(self) -> None:
        """
        Mutated messages parse or raise SipParseError, as datagrams and as
        stream frames; accessors of parsed requests raise only SIP errors.
        """
        rng = random.Random(4475)
        parsed = rejected = 0
        for seed in SEEDS:
            original = seed.read_bytes()
            for _ in range(ROUNDS):
                data = mutate(original, rng)
                for datagram in (True, False):
                    try:
                        msg = parse(data, datagram=datagram)
                    except SipParseError:
                        rejected += 1
                        continue
                    parsed += 1
                    msg.to_bytes()
                    for accessor in ("call_id", "cseq", "vias", "from_", "to", "contacts", "content_type"):
                        try:
                            getattr(msg, accessor)
                        except (SipParseError, UriError):
                            pass
                    if isinstance(msg, Request):
                        try:
                            msg.request_uri
                        except UriError:
                            pass
                    boundary = msg.content_type_param("boundary")
                    if boundary:
                        try:
                            parse_multipart(msg.body, boundary)
                        except MultipartError:
                            pass
                framer = StreamFramer(max_size=4096)
                try:
                    for i in range(0, len(data), 7):
                        framer.feed(data[i : i + 7])
                except SipParseError:
                    pass
        # Both outcomes occur: the mutations are neither all fatal nor all harmless.
        self.assertGreater(parsed, 100)
        self.assertGreater(rejected, 100)


class BodyFuzzTests(SynchronousTestCase):
    """
    The SDP and recording-metadata parsers survive mutated RFC examples.
    """

    def test_sdp_and_metadata(self) -> None:
        """
        Mutated SDP raises only SdpError and mutated RFC 7865 metadata only
        MetadataError (both RemoteSipError, answered 488/400 or reported).
        """
        from aiconnect.errors import RemoteSipError
        from aiconnect.sip.sdp import parse_sdp, rejection_reason
        from aiconnect.siprec.metadata import parse_metadata

        rng = random.Random(7866)
        sdps = [p.read_bytes() for p in sorted((DATA / "siprec").glob("*.sdp"))] + [p.read_bytes() for p in sorted((DATA / "sdp").glob("*.sdp"))]
        xmls = [p.read_bytes() for p in sorted((DATA / "siprec").glob("*.xml"))]
        ok = bad = 0
        for original in sdps:
            for _ in range(60):
                try:
                    sdp = parse_sdp(mutate(original, rng))
                    sdp.to_bytes()
                    for m in sdp.media:
                        rejection_reason(m)
                        m.rtpmap, m.crypto, m.direction, m.label
                    ok += 1
                except RemoteSipError:
                    bad += 1
        for original in xmls:
            for _ in range(30):
                try:
                    parse_metadata(mutate(original, rng))
                    ok += 1
                except RemoteSipError:
                    bad += 1
        self.assertGreater(ok, 50)
        self.assertGreater(bad, 50)
