# -*- test-case-name: tests.outputs.test_stream_receiver -*-
"""
Tests for the example consumer C{examples/ws_receiver.py} (docs/streams.md),
with a real L{aiconnect.outputs.stream.StreamLeg} streaming to it: the WAV
files it writes, read back with C{wave}, hold exactly the fed samples.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import struct
import tempfile
import wave
from types import ModuleType
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from aiconnect.outputs.orders import StreamOrder
from aiconnect.outputs.stream import StreamLeg
from tests.fakes import wait_until
from tests.outputs.test_stream import CONTEXT, FAST, STREAM_ID, no_tls, callee_of, caller_of
from tests.outputs.wsserver import TABLES, FakeMedia, ObserverLog, tone_frames

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples", "ws_receiver.py")


def load_example() -> ModuleType:
    """
    The example script as a module.
    """
    spec = importlib.util.spec_from_file_location("ws_receiver", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_wav(path: str) -> tuple[int, int, list[int]]:
    """
    A WAV file's channels, rate and samples (interleaved).
    """
    with wave.open(path, "rb") as wav:
        data = wav.readframes(wav.getnframes())
        return wav.getnchannels(), wav.getframerate(), list(struct.unpack("<%dh" % (len(data) // 2), data))


class DecodeTests(SynchronousTestCase):
    """
    The example's G.711 decoding is the reference tables'.
    """

    def test_tables(self) -> None:
        """
        All 256 codes of both laws decode as the reference tables say.
        """
        example = load_example()
        self.assertEqual(example.DECODE["PCMU"], TABLES["ulaw2linear16"])
        self.assertEqual(example.DECODE["PCMA"], TABLES["alaw2linear16"])


class ReceiverTests(TestCase):
    """
    A stream written to WAV by the example receiver.
    """

    timeout = 30

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="aiconnect-ws-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.receiver, port = load_example().listen(0, self.directory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.url = "ws://127.0.0.1:%d/stream" % (port.getHost().port,)

    async def stream(self, frames: int, **order: Any) -> tuple[list[Any], str]:
        """
        Stream C{frames} tone frames and stop; return them and the WAV
        file's path once the receiver closed it.
        """
        media, observer = FakeMedia(), ObserverLog()
        leg = StreamLeg(reactor, observer, STREAM_ID, StreamOrder(url=self.url, **order), CONTEXT, media, FAST, no_tls)
        leg.start()
        await observer.wait("started")
        fed = tone_frames(frames, callee="ulaw2linear16")
        media.feed(fed)
        leg.stop("api")
        await observer.wait("stopped")
        path = os.path.join(self.directory, STREAM_ID + ".wav")
        await wait_until(lambda: STREAM_ID not in self.receiver.files and os.path.exists(path))
        return fed, path

    async def test_raw_l16_both(self) -> None:
        """
        Raw L16 C{both}: a stereo 8 kHz WAV, caller left.
        """
        fed, path = await self.stream(20)
        channels, rate, samples = read_wav(path)
        self.assertEqual((channels, rate), (2, 8000))
        self.assertEqual(samples[0::2], caller_of(fed))
        self.assertEqual(samples[1::2], callee_of(fed))

    async def test_raw_pcmu_callee(self) -> None:
        """
        Raw PCMU C{callee}: a mono WAV of the called party's samples.
        """
        fed, path = await self.stream(7, tracks="callee", format="PCMU")
        self.assertEqual(read_wav(path), (1, 8000, callee_of(fed)))

    async def test_twilio_both(self) -> None:
        """
        Twilio C{both}: a stereo WAV, C{inbound} (caller) left.
        """
        fed, path = await self.stream(9, protocol="twilio")
        channels, rate, samples = read_wav(path)
        self.assertEqual((channels, rate), (2, 8000))
        self.assertEqual(samples[0::2], caller_of(fed))
        self.assertEqual(samples[1::2], callee_of(fed))
