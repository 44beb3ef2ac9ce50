# -*- test-case-name: tests.integration.test_mandatory -*-
"""
Peers for the mandatory-forward tests (SPEC s13): an SRS that holds its
answer to a new INVITE until the test releases it (200 or an error), and
an SRC signalling socket, both writing what they send and receive into
one shared L{WireLog} so that a test can check the order of events on
the wire (the SRS's 200 before the SRC's).
"""

from __future__ import annotations

from typing import Any

from aiconnect.sip.message import Request, parse
from tests.fakes import UdpPeer
from tests.integration.srs_peer import SrsPeer, _response_lines


class WireLog(list[str]):
    """
    C{"<who> got <method or status>"} and C{"<who> sent <status>"}, in the
    order they happened.
    """

    def position(self, entry: str) -> int:
        """
        Where C{entry} first happened.

        @raise ValueError: it never did (the message lists the log).
        """
        if entry not in self:
            raise ValueError("%r not in the wire log %r" % (entry, list(self)))
        return self.index(entry)


def _first(data: bytes) -> str:
    line = data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
    return line.split(" ")[1] if line.startswith("SIP/2.0 ") else line.split(" ")[0]


class GatedSrsPeer(SrsPeer):
    """
    An L{SrsPeer} logging to a L{WireLog}; in mode C{"ringing"} it answers
    a new INVITE 100 and 180 only, and L{release} sends its final answer.
    """

    def __init__(self, mode: str, wire: WireLog, name: str = "srs") -> None:
        super().__init__(mode)
        self.wire = wire
        self.name = name

    def received(self, data: bytes) -> None:
        """
        Log, then answer as an L{SrsPeer} does.
        """
        self.wire.append("%s got %s" % (self.name, _first(data)))
        super().received(data)

    def release(self, status: int) -> None:
        """
        Answer the held INVITE: 200 (SDP answer, as an L{SrsPeer}) or
        C{status} (an error).
        """
        held: Request = self.dialog.pop("ringing")
        self.wire.append("%s sent %d" % (self.name, status))
        if status == 200:
            self._send_ok(held)
        else:
            self._send(_response_lines(held, status, "Service Unavailable", self.to_tag))


class LoggedUdpPeer(UdpPeer):
    """
    The SRC's signalling socket: a L{UdpPeer} logging what arrives as
    C{"src got <method or status>"}.
    """

    def __init__(self, wire: WireLog) -> None:
        super().__init__()
        self.wire = wire

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        """
        Log, then keep C{data}.
        """
        self.wire.append("src got %s" % (_first(data),))
        super().datagramReceived(data, addr)

    def finals(self) -> list[Any]:
        """
        The final responses received so far, parsed.
        """
        return [parse(m) for m in self.received if m.startswith(b"SIP/2.0 ") and not m.startswith(b"SIP/2.0 1")]
