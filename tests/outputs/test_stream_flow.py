# -*- test-case-name: tests.outputs.test_stream_flow -*-
"""
Tests for L{aiconnect.outputs.stream} over time, against a real WebSocket
server on 127.0.0.1: a consumer that stops reading (memory bounded, drops
counted), a connection that drops (reconnection with back-off, C{resumed}
and C{gapMs}), giving up, and pause (silence frames).
"""

from __future__ import annotations

import base64
import struct
from array import array

from aiconnect.config.records import StreamsConfig
from aiconnect.media.pcm import FRAME_SAMPLES, PcmFrame
from aiconnect.outputs.stream import StreamLeg, StreamState
from aiconnect.outputs.wsclient import MAX_INBOUND_MESSAGE
from tests.fakes import pause, wait_until
from tests.outputs.test_stream import STREAM_ID, StreamCase, s16le
from tests.outputs.wsserver import TABLES, FakeMedia, tone_frames

#: The test legs' buffer (test_stream.FAST: 0.2 s), in frames.
MAX_FRAMES = 10


def numbered(first: int, count: int) -> list[PcmFrame]:
    """
    Frames whose every caller sample is the frame's index and every called
    party's sample its negation, so that a received frame names itself.
    """
    return [
        PcmFrame(i, (array("h", [i] * FRAME_SAMPLES), array("h", [-i] * FRAME_SAMPLES)))
        for i in range(first, first + count)
    ]


def indices(binaries: list[bytes]) -> list[int]:
    """
    The index each received L16 C{both} frame carries (after checking that
    its two channels agree: at 8 or 16 kHz, every sample is the index).
    """
    result = []
    for data in binaries:
        samples = s16le(data)
        assert set(samples[0::2]) == {samples[0]} and set(samples[1::2]) == {-samples[0]}, samples[:4]
        result.append(samples[0])
    return result


async def fill(leg: StreamLeg, media: FakeMedia, drops: int = 1, batch: int = 100, buffered: list[int] | None = None) -> int:
    """
    Feed numbered frames, C{batch} per reactor turn, until the leg has
    dropped C{drops} (its consumer does not read); note its buffer's size
    after each batch in C{buffered}.

    @return: how many frames were fed.
    """
    fed = 0
    while leg.stats()["dropped"] < drops:
        assert fed < 200_000, "the transport never pushed back"
        media.feed(numbered(fed, batch))
        fed += batch
        if buffered is not None:
            buffered.append(leg.stats()["buffered"])
        await pause(0)
    return fed


class SlowConsumerTests(StreamCase):
    """
    A consumer that stops reading never blocks the reactor nor grows the
    leg's memory: at most C{max_buffer} seconds wait, older frames are
    dropped and counted.
    """

    async def test_bounded(self) -> None:
        """
        While the server reads nothing, frames fill the socket, then the
        leg's buffer, which never holds more than C{max_buffer} (10
        frames); past that frames are dropped and counted, and no frame is
        written any more.  Once it reads again, what arrives is the frames
        sent, in order, whole, the dropped ones missing.
        """
        self.server.stop_reading = True
        leg, media, observer, connection = await self.running(sample_rate=16000)
        buffered: list[int] = []
        fed = await fill(leg, media, 50, 50, buffered)
        most = max(buffered)
        stats = leg.stats()
        self.assertLessEqual(most, MAX_FRAMES)
        self.assertEqual(stats["buffered"], MAX_FRAMES)
        self.assertEqual(stats["frames"] + stats["dropped"] + stats["buffered"], fed)
        before = stats["frames"]
        for _ in range(40):
            media.feed(numbered(fed, 50))
            fed += 50
            await pause(0.01)
            self.assertLessEqual(leg.stats()["buffered"], MAX_FRAMES)
        stats = leg.stats()
        # The kernel may still take a little as its buffers grow (steps of
        # some 150 kB seen), never most of it.
        self.assertLess(stats["frames"] - before, 500)
        self.assertEqual(stats["frames"] + stats["dropped"] + MAX_FRAMES, fed)
        sent = stats["frames"]

        connection.resume_reading()
        await wait_until(lambda: leg.stats()["frames"] == sent + MAX_FRAMES, 10)
        await wait_until(lambda: len(connection.binaries) == sent + MAX_FRAMES, 10)
        got = indices(connection.binaries)
        self.assertEqual(got, sorted(set(got)))
        self.assertEqual(len(got) + leg.stats()["dropped"], fed)
        self.assertEqual(got[:100], list(range(100)))
        self.assertEqual(got[-MAX_FRAMES:], list(range(fed - MAX_FRAMES, fed)))
        self.assertEqual({len(b) for b in connection.binaries}, {4 * 2 * FRAME_SAMPLES})
        media.feed(numbered(fed, 3))
        await wait_until(lambda: len(connection.binaries) == sent + MAX_FRAMES + 3)
        self.assertEqual(leg.stats()["buffered"], 0)

    async def test_stop_not_reading(self) -> None:
        """
        stop() with a consumer that reads nothing does not wait forever for
        the close: the connection is aborted after C{close_timeout} and
        C{output_stopped} reported with the drops.
        """
        self.server.stop_reading = True
        leg, media, observer, connection = await self.running()
        fed = await fill(leg, media)
        started = self.server.seconds()
        leg.stop("api")
        self.assertEqual(leg.stats()["state"], "closing")
        report = await observer.wait("stopped")
        self.assertLess(self.server.seconds() - started, 0.5 + 0.3)
        stats = report[3]["stats"]
        self.assertGreater(stats["dropped"], 0)
        self.assertEqual(stats["frames"] + stats["dropped"], fed)
        connection.resume_reading()
        await connection.wait_closed()
        self.assertEqual(connection.close_codes, [])

    async def test_big_inbound_message(self) -> None:
        """
        A consumer sending a message larger than the cap has its
        connection cut (and reconnected), never buffered whole.
        """
        leg, media, observer, connection = await self.running()
        assert connection.transport is not None
        connection.transport.sendTextMessage("x" * (16 * MAX_INBOUND_MESSAGE))
        await connection.wait_closed()
        second = await self.server.connection(1)
        await second.wait_messages(1)
        self.assertTrue(second.texts[0]["resumed"])


class ReconnectTests(StreamCase):
    """
    A connection lost after the stream started is re-established with
    back-off for C{reconnect_for} seconds.
    """

    async def test_resumed(self) -> None:
        """
        The server drops the connection: the leg reconnects; the new
        start message has C{resumed} and C{gapMs} (the frames dropped
        meanwhile x 20 ms), then the frames buffered meanwhile (the newest
        C{max_buffer}) follow, then live frames.
        """
        leg, media, observer, first = await self.running()
        media.feed(numbered(0, 5))
        await first.wait_messages(6)
        first.drop()
        await wait_until(lambda: leg.state is StreamState.RECONNECTING)
        media.feed(numbered(5, 25))
        self.assertEqual(leg.stats()["buffered"], MAX_FRAMES)
        second = await self.server.connection(1)
        await second.wait_messages(1 + MAX_FRAMES)
        start = second.texts[0]
        self.assertEqual((start["event"], start["resumed"], start["gapMs"]), ("start", True, 15 * 20))
        self.assertEqual(start["streamId"], STREAM_ID)
        media.feed(numbered(30, 2))
        await second.wait_messages(1 + MAX_FRAMES + 2)
        self.assertEqual(indices(first.binaries), list(range(5)))
        self.assertEqual(indices(second.binaries), list(range(20, 32)))
        self.assertEqual(observer.kinds(), ["started"])
        stats = await self.stopped(leg, observer, second)
        self.assertEqual(stats, {"frames": 17, "bytes": 17 * 640, "dropped": 15, "reconnects": 1})
        self.assertNotIn("resumed", first.texts[0])

    async def test_gap_counts_slow_drops(self) -> None:
        """
        C{gapMs} counts every frame dropped since the previous start: those
        dropped while the old connection was not read, and while
        reconnecting.
        """
        self.server.stop_reading = True
        leg, media, observer, first = await self.running()
        fed = await fill(leg, media)
        self.server.stop_reading = False
        first.drop()
        await wait_until(lambda: leg.state is StreamState.RECONNECTING)
        media.feed(numbered(fed, 5))
        dropped = leg.stats()["dropped"]
        second = await self.server.connection(1)
        await second.wait_messages(1 + MAX_FRAMES)
        self.assertEqual(second.texts[0]["gapMs"], dropped * 20)
        self.assertEqual(indices(second.binaries), list(range(fed + 5 - MAX_FRAMES, fed + 5)))

    async def test_twilio_resumed(self) -> None:
        """
        Twilio: the new connection starts over with C{connected} and a
        C{start} carrying C{resumed} and C{gapMs}; its numbering starts
        over, its timestamps go on from the stream's first frame.
        """
        leg, media, observer, first = await self.running(protocol="twilio", tracks="caller")
        media.feed(tone_frames(2))
        await first.wait_messages(4)
        first.drop()
        await wait_until(lambda: leg.state is StreamState.RECONNECTING)
        media.feed(tone_frames(12, first=2))
        second = await self.server.connection(1)
        await second.wait_messages(2 + MAX_FRAMES)
        connected, start, *media_messages = second.texts
        self.assertEqual(connected["event"], "connected")
        self.assertEqual((start["sequenceNumber"], start["start"]["resumed"], start["start"]["gapMs"]), ("1", True, 40))
        self.assertEqual(media_messages[0]["sequenceNumber"], "2")
        self.assertEqual(media_messages[0]["media"]["chunk"], "1")
        self.assertEqual([m["media"]["timestamp"] for m in media_messages], [str(20 * i) for i in range(4, 14)])

    async def test_backoff_and_give_up(self) -> None:
        """
        While the server refuses (503), attempts come 0.5 s after the loss,
        then 1 s later; after C{reconnect_for} (2 s) the leg gives up:
        detached, C{output_stopped} with C{error} and its stats.
        """
        config = StreamsConfig(max_buffer=0.2, reconnect_for=2.0, connect_timeout=1.0)
        leg, media, observer = self.leg(config=config)
        leg.start()
        await observer.wait("started")
        connection = await self.server.connection()
        self.server.refuse = 503
        lost = self.server.seconds()
        connection.drop()
        report = await observer.wait("stopped", timeout=5)
        gave_up = self.server.seconds() - lost
        times = [t - lost for t in self.server.handshake_times[1:]]
        self.assertEqual(len(times), 2, times)
        self.assertTrue(0.5 <= times[0] < 0.7, times)
        self.assertTrue(1.0 <= times[1] - times[0] < 1.2, times)
        self.assertTrue(2.0 <= gave_up < 2.3, gave_up)
        self.assertEqual(report[:3], ("stopped", STREAM_ID, "error"))
        self.assertEqual(report[3], {"stats": {"frames": 0, "bytes": 0, "dropped": 0, "reconnects": 0}})
        self.assertEqual(media.sinks, [])
        self.assertEqual(observer.kinds(), ["started", "stopped"])
        leg.stop("api")
        self.assertEqual(observer.kinds(), ["started", "stopped"])

    async def test_stop_while_reconnecting(self) -> None:
        """
        stop() between attempts reports C{output_stopped} at once and
        makes no more attempts.
        """
        leg, media, observer, connection = await self.running()
        connection.drop()
        await wait_until(lambda: leg.state is StreamState.RECONNECTING)
        leg.stop("inboundBye")
        self.assertEqual(observer.kinds(), ["started", "stopped"])
        self.assertEqual(observer.reports[1][2], "inboundBye")
        self.assertEqual(media.sinks, [])
        await pause(0.8)
        self.assertEqual(len(self.server.handshakes), 1)


class PauseTests(StreamCase):
    """
    SPEC s10: a paused stream sends silence frames, same count and size.
    """

    async def test_raw(self) -> None:
        """
        L16: frames fed while paused arrive as zeros of the same size; after
        resume, the audio again.
        """
        leg, media, observer, connection = await self.running()
        frames = tone_frames(6)
        media.feed(frames[:2])
        leg.set_paused(True)
        self.assertTrue(leg.stats()["paused"])
        media.feed(frames[2:4])
        leg.set_paused(False)
        media.feed(frames[4:])
        await connection.wait_messages(7)
        binaries = connection.binaries
        self.assertEqual({len(b) for b in binaries}, {640})
        self.assertEqual(binaries[2:4], [bytes(640)] * 2)
        for frame, data in zip(frames[:2] + frames[4:], binaries[:2] + binaries[4:]):
            self.assertEqual(s16le(data)[0::2], list(frame.streams[0]))
        self.assertFalse(leg.stats()["paused"])

    async def test_pcma(self) -> None:
        """
        PCMA: silence is the A-law code of zero, which decodes to the
        smallest step.
        """
        leg, media, observer, connection = await self.running(tracks="caller", format="PCMA")
        leg.set_paused(True)
        media.feed(tone_frames(2))
        await connection.wait_messages(3)
        for data in connection.binaries:
            self.assertEqual(len(data), FRAME_SAMPLES)
            self.assertEqual({TABLES["alaw2linear16"][c] for c in data}, {8})

    async def test_twilio(self) -> None:
        """
        Twilio C{both}: two C{media} messages per frame, mu-law silence.
        """
        leg, media, observer, connection = await self.running(protocol="twilio")
        leg.set_paused(True)
        media.feed(tone_frames(3))
        await connection.wait_messages(8)
        media_messages = connection.texts[2:]
        self.assertEqual([m["media"]["track"] for m in media_messages], ["inbound", "outbound"] * 3)
        for message in media_messages:
            payload = base64.b64decode(message["media"]["payload"])
            self.assertEqual(len(payload), FRAME_SAMPLES)
            self.assertEqual({TABLES["ulaw2linear16"][c] for c in payload}, {0})

    async def test_paused_before_start(self) -> None:
        """
        An output started while the session is paused starts paused.
        """
        leg, media, observer = self.leg()
        leg.set_paused(True)
        leg.start()
        await observer.wait("started")
        connection = await self.server.connection()
        media.feed(tone_frames(1))
        await connection.wait_messages(2)
        self.assertEqual(connection.binaries, [bytes(640)])
        self.assertEqual(struct.unpack("<2h", connection.binaries[0][:4]), (0, 0))
