# -*- test-case-name: tests.outputs.test_recording -*-
"""
Tests for L{aiconnect.outputs.recording}: a L{RecordingLeg} fed frames by
hand (a fake media session), on a L{Clock}; files read back with C{wave}
or the chunk reader of L{tests.outputs.test_wav}.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import wave
from array import array
from collections.abc import Mapping
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.config.records import RecordingConfig
from aiconnect.media.pcm import FRAME_SAMPLES, PcmFrame
from aiconnect.outputs import files
from aiconnect.outputs.audio import Parties
from aiconnect.outputs.context import OutputContext
from aiconnect.outputs.orders import RecordingOrder
from aiconnect.outputs.recording import RecordingLeg, hash_file
from tests.outputs.test_wav import G711, full_disk_opener, ramp, read_chunks

RID = "rec_20261202_00112233445566ff"
TENANT = "acme.example.com"


class FakeMedia:
    """
    A media session's PCM tap: records attached sinks.
    """

    def __init__(self) -> None:
        self.sinks: list[Any] = []
        self.calls: list[str] = []

    def attach_pcm(self, sink: Any) -> None:
        self.calls.append("attach")
        self.sinks.append(sink)

    def detach_pcm(self, sink: Any) -> None:
        self.calls.append("detach")
        if sink in self.sinks:
            self.sinks.remove(sink)

    def feed(self, frame: PcmFrame) -> None:
        for sink in list(self.sinks):
            sink.pcm_frame(frame)


class FakeObserver:
    """
    Records what an output reports, in order.
    """

    def __init__(self) -> None:
        self.reports: list[tuple[Any, ...]] = []

    def output_started(self, output_id: str, detail: Mapping[str, Any]) -> None:
        self.reports.append(("started", output_id, dict(detail)))

    def output_failed(self, output_id: str, reason: str) -> None:
        self.reports.append(("failed", output_id, reason))

    def output_stopped(self, output_id: str, stopped_by: str, detail: Mapping[str, Any]) -> None:
        self.reports.append(("stopped", output_id, stopped_by, dict(detail)))

    def output_uploaded(self, output_id: str, url: str, status: int | str) -> None:
        self.reports.append(("uploaded", output_id, url, status))

    def kinds(self) -> list[str]:
        return [r[0] for r in self.reports]


def frames(count: int, first: int = 0) -> list[PcmFrame]:
    """
    C{count} frames of two relay streams with distinct ramps.
    """
    out = []
    for k in range(first, first + count):
        out.append(PcmFrame(k, (ramp(FRAME_SAMPLES, k * 160, 17), ramp(FRAME_SAMPLES, k * 160 + 3, -29))))
    return out


def read_l16(path: str) -> tuple[int, array[int]]:
    with wave.open(path) as r:
        channels = r.getnchannels()
        samples = array("h", r.readframes(r.getnframes()))
    if sys.byteorder == "big":
        samples.byteswap()
    return channels, samples


class Harness:
    """
    A leg with its fakes.
    """

    def __init__(self, test: SynchronousTestCase, order: RecordingOrder, **kwargs: Any) -> None:
        self.directory = tempfile.mkdtemp()
        self.clock = Clock()
        self.media = FakeMedia()
        self.observer = FakeObserver()
        self.config = RecordingConfig(directory=self.directory)
        self.leg = RecordingLeg(
            self.clock,
            self.observer,
            kwargs.pop("recording_id", RID),
            order,
            OutputContext("sess-1", kwargs.pop("tenant", TENANT), parties=kwargs.pop("parties", Parties())),
            self.media,  # type: ignore[arg-type]
            self.config,
            None,
            **kwargs,
        )
        if self.leg.path is not None:
            test.addCleanup(files.mark_closed, self.leg.path)

    def finish(self, stopped_by: str = "api") -> None:
        self.leg.stop(stopped_by)
        for _ in range(1000):
            if not self.clock.getDelayedCalls():
                break
            self.clock.advance(0)


class RecordingTests(SynchronousTestCase):
    """
    A recording writes the session's frames and reports its file.
    """

    def test_stereo_caller_left(self) -> None:
        """
        C{both}: the left channel is the caller's relay stream (here stream
        1), the right the called party's; every sample as fed; the
        stopped report matches the file (duration, bytes, sha256).
        """
        h = Harness(self, RecordingOrder(tracks="both"), parties=Parties(caller=1, callee=0))
        h.leg.start()
        path = h.leg.path
        self.assertEqual(h.observer.reports, [("started", RID, {"file": path})])
        self.assertEqual(
            path, os.path.join(h.directory, TENANT, "2026-12-02", RID + ".wav")
        )
        fed = frames(120)
        for f in fed:
            h.media.feed(f)
        self.assertEqual(h.leg.stats(), {"frames": 120, "bytes": 44 + 120 * 640, "paused": False, "file": path})
        h.finish("inboundBye")
        self.assertEqual(h.media.calls, ["attach", "detach"])
        channels, samples = read_l16(path)
        self.assertEqual(channels, 2)
        self.assertEqual(samples[0::2], _cat(f.streams[1] for f in fed))
        self.assertEqual(samples[1::2], _cat(f.streams[0] for f in fed))
        with open(path, "rb") as fh:
            data = fh.read()
        kind, rid, stopped_by, detail = h.observer.reports[-1]
        self.assertEqual((kind, rid, stopped_by), ("stopped", RID, "inboundBye"))
        self.assertEqual(
            detail,
            {
                "file": path,
                "duration": 2.4,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "channels": 2,
                "encoding": "L16",
                "pauses": [],
            },
        )
        self.assertEqual(h.observer.kinds(), ["started", "stopped"])
        self.assertFalse(files.is_open(path))

    def test_pcmu_mono_caller(self) -> None:
        """
        C{caller} in PCMU: one channel of µ-law codes decoding (reference
        table) to the caller's samples.
        """
        h = Harness(self, RecordingOrder(tracks="caller", encoding="PCMU"))
        h.leg.start()
        fed = [PcmFrame(k, (array("h", G711["ulaw2linear16"][k * 10 : k * 10 + 160]), array("h", [7] * 160))) for k in range(10)]
        for f in fed:
            h.media.feed(f)
        h.finish()
        with open(h.leg.path, "rb") as fh:  # type: ignore[arg-type]
            parsed = read_chunks(fh.read())
        self.assertEqual((parsed["fmt"]["tag"], parsed["fmt"]["channels"], parsed["fact"]), (7, 1, 1600))
        self.assertEqual([G711["ulaw2linear16"][c] for c in parsed["data"]], list(_cat(f.streams[0] for f in fed)))
        self.assertEqual(h.observer.reports[-1][3]["encoding"], "PCMU")
        self.assertEqual(h.observer.reports[-1][3]["channels"], 1)

    def test_pauses(self) -> None:
        """
        Paused frames are silence; the intervals are listed in seconds of
        recording (frames), the last one closed at stop.
        """
        h = Harness(self, RecordingOrder(tracks="mixed"))
        h.leg.start()
        fed = frames(150)
        for k, f in enumerate(fed):
            if k == 50:
                h.leg.set_paused(True)
                h.leg.set_paused(True)
            if k == 75:
                h.leg.set_paused(False)
            if k == 125:
                h.leg.set_paused(True)
            h.media.feed(f)
        self.assertTrue(h.leg.stats()["paused"])
        h.finish()
        detail = h.observer.reports[-1][3]
        self.assertEqual(detail["pauses"], [{"start": 1.0, "end": 1.5}, {"start": 2.5, "end": 3.0}])
        _, samples = read_l16(h.leg.path)  # type: ignore[arg-type]
        expected = array("h")
        for k, f in enumerate(fed):
            if 50 <= k < 75 or k >= 125:
                expected.extend([0] * 160)
            else:
                expected.extend(array("h", [max(-32768, min(32767, a + b)) for a, b in zip(f.streams[0], f.streams[1])]))
        self.assertEqual(samples, expected)

    def test_starts_paused(self) -> None:
        """
        A recording paused before it starts writes silence from its first
        frame, and lists the pause from 0.
        """
        h = Harness(self, RecordingOrder(tracks="callee"))
        h.leg.set_paused(True)
        h.leg.start()
        for f in frames(10):
            h.media.feed(f)
        h.leg.set_paused(False)
        for f in frames(5, 10):
            h.media.feed(f)
        h.finish()
        self.assertEqual(h.observer.reports[-1][3]["pauses"], [{"start": 0.0, "end": 0.2}])
        _, samples = read_l16(h.leg.path)  # type: ignore[arg-type]
        self.assertEqual(set(samples[: 10 * 160]), {0})
        self.assertEqual(samples[10 * 160 :], _cat(f.streams[1] for f in frames(5, 10)))

    def test_stop_idempotent(self) -> None:
        """
        A second stop reports nothing more; a leg stopped before it started
        reports nothing at all and never starts.
        """
        h = Harness(self, RecordingOrder())
        h.leg.start()
        h.finish()
        h.finish("api")
        self.assertEqual(h.observer.kinds(), ["started", "stopped"])
        other = Harness(self, RecordingOrder())
        other.leg.stop("api")
        other.leg.start()
        self.assertEqual(other.observer.reports, [])
        self.assertEqual(other.media.calls, [])

    def test_busy_until_done(self) -> None:
        """
        While the recording runs (and until it is hashed), DELETE is
        refused; afterwards it removes the file.
        """
        h = Harness(self, RecordingOrder())
        h.leg.start()
        self.assertRaises(files.RecordingBusy, files.delete_recording, h.directory, TENANT, RID)
        h.leg.stop("api")
        self.assertRaises(files.RecordingBusy, files.delete_recording, h.directory, TENANT, RID)
        h.finish()
        self.assertTrue(files.delete_recording(h.directory, TENANT, RID))

    def test_upload_without_uploader(self) -> None:
        """
        An C{uploadUrl} with no uploader configured is reported as not
        uploaded (query string stripped), and the file stays.
        """
        h = Harness(self, RecordingOrder(upload_url="https://b.example.com/r.wav?X-Amz-Signature=s3cr3t"))
        h.leg.start()
        h.finish()
        self.assertEqual(h.observer.reports[-1], ("uploaded", RID, "https://b.example.com/r.wav", "no uploader configured"))
        self.assertTrue(os.path.exists(h.leg.path))  # type: ignore[arg-type]


class FailureTests(SynchronousTestCase):
    """
    Disk errors fail the recording once; nothing else breaks.
    """

    def test_disk_full(self) -> None:
        """
        ENOSPC mid-recording: C{output_failed(..., "disk full")} once, the
        leg detaches, later frames and stop do nothing, and the file is
        valid up to its last refresh.
        """
        h = Harness(self, RecordingOrder(tracks="caller"), opener=full_disk_opener(44 + 3 * 8000 + 100))
        h.leg.start()
        fed = frames(200)
        for f in fed[:150]:
            h.media.feed(f)
        self.assertEqual(h.observer.kinds(), ["started", "failed"])
        self.assertEqual(h.observer.reports[-1], ("failed", RID, "disk full"))
        self.assertEqual(h.media.calls, ["attach", "detach"])
        h.leg.pcm_frame(fed[160])
        h.leg.set_paused(True)
        h.finish()
        self.assertEqual(h.observer.kinds(), ["started", "failed"])
        self.assertFalse(files.is_open(h.leg.path))  # type: ignore[arg-type]
        _, samples = read_l16(h.leg.path)  # type: ignore[arg-type]
        self.assertEqual(len(samples), 3 * 4000)
        self.assertEqual(samples, _cat(f.streams[0] for f in fed[:75]))

    def test_open_fails(self) -> None:
        """
        A directory that cannot be created: C{output_failed} at start, no
        attach.
        """
        h = Harness(self, RecordingOrder())
        with open(os.path.join(h.directory, TENANT), "w"):
            pass
        h.leg.start()
        self.assertEqual(len(h.observer.reports), 1)
        self.assertEqual(h.observer.reports[0][0], "failed")
        self.assertTrue(h.observer.reports[0][2].startswith("open failed: "))
        self.assertEqual(h.media.calls, [])

    def test_bad_tenant(self) -> None:
        """
        A tenant that is no plain domain never reaches the disk.
        """
        h = Harness(self, RecordingOrder(), tenant="../etc")
        h.leg.start()
        self.assertEqual(h.observer.reports, [("failed", RID, "bad recording id or tenant")])
        self.assertEqual(os.listdir(h.directory), [])


class _CountingClock(Clock):
    """
    A clock that records the delay of every call scheduled.
    """

    def __init__(self) -> None:
        super().__init__()
        self.scheduled: list[float] = []

    def callLater(self, delay: float, callable: Any, *args: Any, **kw: Any) -> Any:
        self.scheduled.append(delay)
        return super().callLater(delay, callable, *args, **kw)


class HashTests(SynchronousTestCase):
    """
    L{hash_file} hashes in chunks, one per reactor turn.
    """

    def test_chunked(self) -> None:
        """
        A 1 MB file in 64 KiB chunks is read one chunk per reactor call
        (16 calls, none at once); the digest is hashlib's of the whole
        file.
        """
        data = os.urandom(1 << 20)
        path = os.path.join(tempfile.mkdtemp(), "f")
        with open(path, "wb") as f:
            f.write(data)
        clock = _CountingClock()
        d = hash_file(clock, path, 64 * 1024)
        self.assertNoResult(d)
        clock.advance(0)
        self.assertEqual(clock.scheduled, [0] * 16)
        self.assertEqual(self.successResultOf(d), hashlib.sha256(data).hexdigest())

    def test_missing(self) -> None:
        """
        A missing file fails with its C{OSError}.
        """
        self.failureResultOf(hash_file(Clock(), "/nonexistent/f"), FileNotFoundError)


def _cat(parts: Any) -> array[int]:
    out = array("h")
    for p in parts:
        out.extend(p)
    return out
