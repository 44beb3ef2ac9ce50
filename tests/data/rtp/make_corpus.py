"""
Regenerate the RTP/RTCP packet corpus in this directory (and index.tsv).

    python tests/data/rtp/make_corpus.py

Each C{.bin} file is one datagram.  index.tsv names the expectation:
C{rtp} (parses, and serializes back to the same octets), C{rtcp} (parses as
a compound packet and serializes back), C{bad-rtp} / C{bad-rtcp} (the
parser raises ValueError).  Written by hand from RFC 3550 s5.1, s5.3.1,
s6.4 and s6.5, not captured.
"""

from __future__ import annotations

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def rtp(b0: int, b1: int, seq: int, ts: int, ssrc: int, rest: bytes = b"") -> bytes:
    return struct.pack("!BBHII", b0, b1, seq, ts, ssrc) + rest


def rtcp(b0: int, pt: int, body: bytes) -> bytes:
    return struct.pack("!BBH", b0, pt, len(body) // 4) + body


BLOCK = struct.pack("!IIIIII", 0xCAFEBABE, (25 << 24) | 3, 0x0001FFFF, 40, 0x12345678, 65536)
BLOCK2 = struct.pack("!IIIIII", 0x01020304, (0 << 24) | 0xFFFFFF, 7, 0, 0, 0)
SENDER = struct.pack("!IIIII", 0xE7A1B2C3, 0x80000000, 123456, 50, 8000)
SDES = struct.pack("!I", 0xDECAFBAD) + bytes((1, 8)) + b"rec@host" + bytes(2)
BYE = struct.pack("!I", 0xDECAFBAD)

CASES = [
    ("rtp-minimal.bin", "rtp", "12-octet header, 160 octets PCMU",
     rtp(0x80, 0, 1, 160, 0xDECAFBAD, bytes(range(160)))),
    ("rtp-marker-pcma.bin", "rtp", "marker set, PT 8, sequence 65535",
     rtp(0x80, 0x88, 65535, 0xFFFFFF60, 1, b"\xd5" * 160)),
    ("rtp-empty-payload.bin", "rtp", "header only", rtp(0x80, 0, 7, 7, 7)),
    ("rtp-csrc.bin", "rtp", "two CSRCs",
     rtp(0x82, 0, 2, 320, 0xDECAFBAD, struct.pack("!II", 11, 22) + b"\xff" * 20)),
    ("rtp-extension.bin", "rtp", "header extension, profile 0xBEDE, 2 words",
     rtp(0x90, 0, 3, 480, 0xDECAFBAD, struct.pack("!HH", 0xBEDE, 2) + bytes(range(8)) + b"\x7f" * 20)),
    ("rtp-padding.bin", "rtp", "4 octets of padding",
     rtp(0xA0, 0, 4, 640, 0xDECAFBAD, b"\x55" * 20 + bytes(3) + b"\x04")),
    ("rtp-all.bin", "rtp", "CSRC, extension, padding and marker",
     rtp(0xB1, 0xE5, 5, 800, 0xDECAFBAD,
         struct.pack("!I", 33) + struct.pack("!HH", 0x1000, 1) + b"abcd" + b"\x01\x02" + bytes(1) + b"\x02")),
    ("rtp-telephone-event.bin", "rtp", "RFC 4733 event 5, end bit, PT 101",
     rtp(0x80, 101, 6, 960, 0xDECAFBAD, bytes((5, 0x80 | 10)) + struct.pack("!H", 800))),
    ("bad-empty.bin", "bad-rtp", "empty datagram", b""),
    ("bad-short.bin", "bad-rtp", "11 octets", rtp(0x80, 0, 1, 1, 1)[:11]),
    ("bad-version0.bin", "bad-rtp", "version 0", rtp(0x00, 0, 1, 1, 1, bytes(20))),
    ("bad-version1.bin", "bad-rtp", "version 1", rtp(0x40, 0, 1, 1, 1, bytes(20))),
    ("bad-version3.bin", "bad-rtp", "version 3", rtp(0xC0, 0, 1, 1, 1, bytes(20))),
    ("bad-csrc-truncated.bin", "bad-rtp", "CC=15, 8 octets after the header",
     rtp(0x8F, 0, 1, 1, 1, bytes(8))),
    ("bad-extension-header-truncated.bin", "bad-rtp", "X=1, no room for the extension header",
     rtp(0x90, 0, 1, 1, 1, b"\xbe")),
    ("bad-extension-truncated.bin", "bad-rtp", "X=1, extension of 100 words in 8 octets",
     rtp(0x90, 0, 1, 1, 1, struct.pack("!HH", 0xBEDE, 100) + bytes(4))),
    ("bad-padding-zero.bin", "bad-rtp", "P=1, padding count 0", rtp(0xA0, 0, 1, 1, 1, bytes(20))),
    ("bad-padding-overrun.bin", "bad-rtp", "P=1, padding count 200 in 20 octets",
     rtp(0xA0, 0, 1, 1, 1, bytes(19) + b"\xc8")),
    ("bad-padding-no-payload.bin", "bad-rtp", "P=1, header only", rtp(0xA0, 0, 1, 1, 1)),
    ("bad-garbage.bin", "bad-rtp", "ASCII text", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("rtcp-sr.bin", "rtcp", "SR with one report block, SDES CNAME",
     rtcp(0x81, 200, struct.pack("!I", 0xDECAFBAD) + SENDER + BLOCK) + rtcp(0x81, 202, SDES)),
    ("rtcp-rr.bin", "rtcp", "RR with two report blocks (one with negative loss)",
     rtcp(0x82, 201, struct.pack("!I", 0x11111111) + BLOCK + BLOCK2)),
    ("rtcp-rr-empty.bin", "rtcp", "RR without report blocks", rtcp(0x80, 201, struct.pack("!I", 9))),
    ("rtcp-sr-sdes-bye.bin", "rtcp", "SR, SDES and BYE",
     rtcp(0x80, 200, struct.pack("!I", 0xDECAFBAD) + SENDER) + rtcp(0x81, 202, SDES) + rtcp(0x81, 203, BYE)),
    ("rtcp-app.bin", "rtcp", "RR and APP (subtype 3, name 'TEST')",
     rtcp(0x80, 201, struct.pack("!I", 9)) + rtcp(0x83, 204, struct.pack("!I", 9) + b"TEST" + b"data")),
    ("badrtcp-empty.bin", "bad-rtcp", "empty datagram", b""),
    ("badrtcp-short.bin", "bad-rtcp", "3 octets", b"\x80\xc9\x00"),
    ("badrtcp-version.bin", "bad-rtcp", "version 1", rtcp(0x40, 201, struct.pack("!I", 9))),
    ("badrtcp-length-overrun.bin", "bad-rtcp", "length says 10 words, 1 present",
     struct.pack("!BBH", 0x80, 201, 10) + struct.pack("!I", 9)),
    ("badrtcp-sr-truncated.bin", "bad-rtcp", "SR announcing a report block it lacks",
     rtcp(0x81, 200, struct.pack("!I", 1) + SENDER)),
    ("badrtcp-padding-not-last.bin", "bad-rtcp", "padding bit on the first of two packets",
     rtcp(0xA0, 201, struct.pack("!I", 9) + bytes(3) + b"\x04") + rtcp(0x81, 203, BYE)),
    ("badrtcp-padding-zero.bin", "bad-rtcp", "padding count 0", rtcp(0xA0, 201, struct.pack("!I", 9) + bytes(4))),
    ("badrtcp-trailing.bin", "bad-rtcp", "two stray octets after a packet",
     rtcp(0x80, 201, struct.pack("!I", 9)) + b"\x80\xc9"),
]  # fmt: skip


def main() -> None:
    with open(os.path.join(HERE, "index.tsv"), "w") as index:
        index.write("# file\texpect\tdescription\n")
        for name, expect, description, data in CASES:
            with open(os.path.join(HERE, name), "wb") as f:
                f.write(data)
            index.write(f"{name}\t{expect}\t{description}\n")


if __name__ == "__main__":
    main()
