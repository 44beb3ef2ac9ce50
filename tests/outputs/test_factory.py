# -*- test-case-name: tests.outputs.test_factory -*-
"""
Tests for L{aiconnect.outputs.factory}: which relay streams carry the
caller and the called party, and the context an output gets.
"""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.legs import StreamInfo
from aiconnect.outputs.audio import Parties
from aiconnect.outputs.factory import OutputMaker, parties_of
from aiconnect.siprec.metadata import parse_metadata

DATA = Path(__file__).resolve().parent.parent / "data" / "siprec"


def _stream(index: int, label: str | None, stream_id: str | None = None, relay: int | None = None, port: int = 20000) -> StreamInfo:
    return StreamInfo(index, label, "PCMU", 0, port, None, "sendonly", stream_id=stream_id, relay_index=relay)


class PartiesTests(SynchronousTestCase):
    """
    L{parties_of} follows the metadata, else the stream order.
    """

    def test_without_metadata(self) -> None:
        """
        No metadata: the first accepted stream is the caller's, the second
        the called party's; a rejected stream (port 0) does not count.
        """
        streams = [_stream(0, "a", port=0), _stream(1, "b", relay=0), _stream(2, "c", relay=1)]
        self.assertEqual(parties_of(streams, None), Parties(caller=0, callee=1))
        self.assertEqual(parties_of([_stream(0, "a")], None), Parties(caller=0, callee=None))

    def test_metadata_decides(self) -> None:
        """
        With RFC 7865 metadata, each party's relay stream is the one it
        sends on (RFC 7865 s8.1: one participant sends on streams 96 and 97,
        the other on 98 and 99; the caller sends on the first m-line), also
        when the relay streams are in another order than the m-lines.
        """
        md = parse_metadata((DATA / "rfc7865-s8.1-complete-metadata.xml").read_bytes())
        ids = {s.label: s.stream_id for s in md.streams}
        streams = [_stream(0, "96", ids["96"], relay=1), _stream(1, "98", ids["98"], relay=0)]
        self.assertEqual(parties_of(streams, md), Parties(caller=1, callee=0))
        swapped = [_stream(0, "98", ids["98"], relay=1), _stream(1, "96", ids["96"], relay=0)]
        self.assertEqual(parties_of(swapped, md), Parties(caller=1, callee=0))

    def test_unknown_kind(self) -> None:
        """
        The maker refuses an unknown kind.
        """

        class Runner:
            class call:  # noqa: N801 - a stand-in object
                session_id = "ses"
                call_id = "cid"
                streams: list[StreamInfo] = []
                metadata = None

                class tenant:  # noqa: N801
                    domain = "t.example"

            media = None

        maker = OutputMaker(None, None, lambda host: None)  # type: ignore[arg-type]
        self.assertRaises(ValueError, maker, Runner(), "fax", "x", None)
