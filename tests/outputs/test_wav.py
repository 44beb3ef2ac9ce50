# -*- test-case-name: tests.outputs.test_wav -*-
"""
Tests for L{aiconnect.outputs.wav}: WAV files read back with the standard
C{wave} module (L16) or a small RIFF chunk reader (G.711, checked against
the reference tables in C{tests/data/g711}), headers valid at every
refresh and after C{kill -9}, disk errors.
"""

from __future__ import annotations

import errno
import io
import json
import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import wave
from array import array
from typing import Any, BinaryIO

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.outputs.audio import encode
from aiconnect.outputs.wav import RATE, WavWriteError, WavWriter, create_file, header

_TABLES = os.path.join(os.path.dirname(__file__), os.pardir, "data", "g711", "g711-tables.json")
with open(_TABLES) as _f:
    G711 = json.load(_f)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read_chunks(data: bytes) -> dict[str, Any]:
    """
    Parse a RIFF/WAVE file by hand (independently of the writer): the
    C{fmt } fields, the C{fact} count if any, and the C{data} bytes (as
    many as its header declares).
    """
    riff, size, wave_id = struct.unpack_from("<4sI4s", data, 0)
    assert riff == b"RIFF" and wave_id == b"WAVE", (riff, wave_id)
    assert size + 8 <= len(data), (size, len(data))
    out: dict[str, Any] = {"riff_size": size, "order": []}
    pos = 12
    while pos + 8 <= len(data):
        name, length = struct.unpack_from("<4sI", data, pos)
        body = data[pos + 8 : pos + 8 + length]
        out["order"].append(name.decode())
        if name == b"fmt ":
            tag, channels, rate, avg, block, bits = struct.unpack_from("<HHIIHH", body)
            out["fmt"] = {"tag": tag, "channels": channels, "rate": rate, "avg": avg, "block": block, "bits": bits}
            if length >= 18:
                out["fmt"]["cb_size"] = struct.unpack_from("<H", body, 16)[0]
        elif name == b"fact":
            out["fact"] = struct.unpack_from("<I", body)[0]
        elif name == b"data":
            assert len(body) == length, "data chunk declares more than the file holds"
            out["data"] = body
            break
        pos += 8 + length + (length & 1)
    return out


def ramp(n: int, start: int = 0, step: int = 37) -> array[int]:
    """
    C{n} distinct-enough signed 16-bit samples.
    """
    return array("h", [((start + i * step + 32768) % 65536) - 32768 for i in range(n)])


class WavL16Tests(SynchronousTestCase):
    """
    L16 files are PCM WAVs the C{wave} module reads back exactly.
    """

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp()

    def test_mono_round_trip(self) -> None:
        """
        Mono samples come back sample by sample, at 8000 Hz, 16 bits.
        """
        path = os.path.join(self.dir, "mono.wav")
        writer = WavWriter(path, 1, "L16")
        fed = array("h")
        for k in range(120):
            chunk = ramp(160, k * 160)
            fed.extend(chunk)
            writer.write(encode([chunk], "L16"))
        writer.close()
        with wave.open(path) as r:
            self.assertEqual((r.getnchannels(), r.getsampwidth(), r.getframerate()), (1, 2, RATE))
            got = array("h", r.readframes(r.getnframes()))
        if sys.byteorder == "big":
            got.byteswap()
        self.assertEqual(got, fed)
        self.assertEqual(writer.samples, len(fed))
        self.assertEqual(os.path.getsize(path), 44 + 2 * len(fed))
        self.assertEqual(writer.size, os.path.getsize(path))

    def test_stereo_interleaved(self) -> None:
        """
        Two channels interleave, channel 0 (the caller) first: the left
        channel read back is what was fed as channel 0.
        """
        path = os.path.join(self.dir, "stereo.wav")
        writer = WavWriter(path, 2, "L16")
        left, right = ramp(800, 0, 11), ramp(800, 5, -23)
        for k in range(0, 800, 160):
            writer.write(encode([left[k : k + 160], right[k : k + 160]], "L16"))
        writer.close()
        with wave.open(path) as r:
            self.assertEqual(r.getnchannels(), 2)
            got = array("h", r.readframes(r.getnframes()))
        if sys.byteorder == "big":
            got.byteswap()
        self.assertEqual(got[0::2], left)
        self.assertEqual(got[1::2], right)
        self.assertAlmostEqual(writer.duration, 0.1)

    def test_bad_arguments(self) -> None:
        """
        Three channels or an unknown encoding are refused before any file
        is created.
        """
        path = os.path.join(self.dir, "bad.wav")
        self.assertRaises(ValueError, WavWriter, path, 3, "L16")
        self.assertRaises(ValueError, WavWriter, path, 1, "G722")
        self.assertFalse(os.path.exists(path))


class WavG711Tests(SynchronousTestCase):
    """
    G.711 files carry format tag 7 (PCMU) or 6 (PCMA), an 18-byte C{fmt }
    chunk and a C{fact} chunk.
    """

    def _check(self, encoding: str, tag: int, table: str) -> None:
        path = os.path.join(tempfile.mkdtemp(), "g711.wav")
        writer = WavWriter(path, 2, encoding)
        left = array("h", G711[table][:160] + G711[table][96:256])
        right = array("h", G711[table][::-1][:160] * 2)
        for k in (0, 160):
            writer.write(encode([left[k : k + 160], right[k : k + 160]], encoding))
        writer.close()
        with open(path, "rb") as f:
            parsed = read_chunks(f.read())
        self.assertEqual(parsed["order"], ["fmt ", "fact", "data"])
        self.assertEqual(
            parsed["fmt"],
            {"tag": tag, "channels": 2, "rate": 8000, "avg": 16000, "block": 2, "bits": 8, "cb_size": 0},
        )
        self.assertEqual(parsed["fact"], 320)
        self.assertEqual(parsed["riff_size"], os.path.getsize(path) - 8)
        data = parsed["data"]
        self.assertEqual(data, encode([left, right], encoding))
        # Each code decodes (reference table) to the sample that was fed:
        # the inputs are exactly representable values of the law.
        decoded = [G711[table][code] for code in data]
        self.assertEqual(decoded[0::2], list(left))
        self.assertEqual(decoded[1::2], list(right))

    def test_pcmu(self) -> None:
        """
        PCMU: tag 7, codes decoding to the samples fed.
        """
        self._check("PCMU", 7, "ulaw2linear16")

    def test_pcma(self) -> None:
        """
        PCMA: tag 6, codes decoding to the samples fed.
        """
        self._check("PCMA", 6, "alaw2linear16")

    def test_header_sizes(self) -> None:
        """
        An empty file's header is 44 bytes for L16 and 58 for G.711.
        """
        self.assertEqual(len(header(1, "L16", 0)), 44)
        self.assertEqual(len(header(1, "PCMA", 0)), 58)
        self.assertEqual(read_chunks(header(1, "PCMU", 0))["fact"], 0)


class RefreshTests(SynchronousTestCase):
    """
    The header is rewritten at least every second of audio and is valid
    whenever the file is read.
    """

    def test_valid_at_every_point(self) -> None:
        """
        A copy of the file taken after every frame opens with C{wave}, holds
        a prefix of what was fed, and misses less than the refresh
        interval (0.5 s here; at most 1 s is the contract).
        """
        path = os.path.join(tempfile.mkdtemp(), "live.wav")
        writer = WavWriter(path, 1, "L16", refresh=0.5)
        fed = array("h")
        lags = []
        for k in range(150):
            chunk = ramp(160, k * 160, 101)
            fed.extend(chunk)
            writer.write(encode([chunk], "L16"))
            with open(path, "rb") as f:
                copy = f.read()
            with wave.open(io.BytesIO(copy)) as r:
                n = r.getnframes()
                got = array("h", r.readframes(n))
            if sys.byteorder == "big":
                got.byteswap()
            self.assertEqual(got, fed[:n])
            lags.append(len(fed) - n)
        self.assertLess(max(lags), RATE // 2)
        self.assertEqual(min(lags), 0)
        self.assertEqual(writer.refreshes, 6)
        writer.close()
        self.assertEqual(writer.refreshes, 7)


_CHILD = r"""
import sys, time
sys.path.insert(0, sys.argv[3])
from array import array
from aiconnect.outputs.audio import encode
from aiconnect.outputs.wav import WavWriter
writer = WavWriter(sys.argv[1], 2, "L16", refresh=1.0)
frames = int(sys.argv[2])
for k in range(frames):
    value = (k * 7) % 3000
    writer.write(encode([array("h", [value] * 160), array("h", [-value] * 160)], "L16"))
print(frames, flush=True)
time.sleep(60)
"""


class KillTests(SynchronousTestCase):
    """
    A process killed with SIGKILL mid-recording leaves a playable file.
    """

    def test_sigkill(self) -> None:
        """
        After 3.3 s of audio written and a C{kill -9}, C{wave} opens the
        file; it holds the first samples exactly and misses at most 1 s.
        """
        path = os.path.join(tempfile.mkdtemp(), "killed.wav")
        frames = 165
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, path, str(frames), ROOT],
            stdout=subprocess.PIPE,
        )
        self.addCleanup(child.wait)
        self.addCleanup(lambda: child.poll() is None and child.kill())
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], 30)
        self.assertTrue(ready, "the child did not write in time")
        self.assertEqual(child.stdout.readline().strip(), str(frames).encode())
        os.kill(child.pid, signal.SIGKILL)
        self.assertEqual(child.wait(), -signal.SIGKILL)
        child.stdout.close()
        with wave.open(path) as r:
            n = r.getnframes()
            got = array("h", r.readframes(n))
        if sys.byteorder == "big":
            got.byteswap()
        self.assertGreaterEqual(n, frames * 160 - RATE)
        self.assertLess(n, frames * 160)
        self.assertEqual(n % 160, 0)
        for k in range(n // 160):
            value = (k * 7) % 3000
            self.assertEqual(set(got[2 * 160 * k : 2 * 160 * (k + 1) : 2]), {value})
            self.assertEqual(set(got[2 * 160 * k + 1 : 2 * 160 * (k + 1) : 2]), {-value})


class _FullDisk(io.RawIOBase):
    """
    A file on a disk that fills up after C{room} bytes (ENOSPC), at the
    boundary, like a real one (a short write, then the error).
    """

    def __init__(self, path: str, room: int) -> None:
        self._real = open(path, "r+b" if os.path.exists(path) else "w+b", buffering=0)
        self._room = room

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._real.seek(offset, whence)

    def tell(self) -> int:
        return self._real.tell()

    def write(self, data: Any) -> int:
        end = self._real.tell() + len(data)
        if end > self._room:
            fits = max(0, self._room - self._real.tell())
            if fits:
                return self._real.write(bytes(data)[:fits])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._real.write(bytes(data))

    def close(self) -> None:
        self._real.close()
        super().close()


def full_disk_opener(room: int) -> Any:
    """
    An opener for L{WavWriter} whose disk takes C{room} bytes.
    """

    def opener(path: str) -> BinaryIO:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return io.BufferedWriter(_FullDisk(path, room))  # type: ignore[return-value]

    return opener


class DiskErrorTests(SynchronousTestCase):
    """
    Disk errors raise L{WavWriteError} with a short reason, and the file
    stays valid as of its last refresh.
    """

    def test_disk_full_mid_recording(self) -> None:
        """
        ENOSPC while writing raises C{disk full}; the file still opens with
        C{wave} and holds the audio of the last refresh.
        """
        path = os.path.join(tempfile.mkdtemp(), "full.wav")
        writer = WavWriter(path, 1, "L16", refresh=0.5, opener=full_disk_opener(44 + 20000))
        fed = array("h")
        with self.assertRaises(WavWriteError) as caught:
            for k in range(200):
                chunk = ramp(160, k * 160)
                fed.extend(chunk)
                writer.write(encode([chunk], "L16"))
        self.assertEqual(caught.exception.reason, "disk full")
        writer.abort()
        writer.abort()
        self.assertTrue(writer.closed)
        with wave.open(path) as r:
            n = r.getnframes()
            got = array("h", r.readframes(n))
        if sys.byteorder == "big":
            got.byteswap()
        self.assertEqual(n, 8000)
        self.assertEqual(got, fed[:n])
        self.assertRaises(WavWriteError, writer.write, b"\0\0")

    def test_dev_full_at_open(self) -> None:
        """
        A file on C{/dev/full} fails at once: its first header does not fit.
        """
        if not os.path.exists("/dev/full"):
            raise self.skipTest("no /dev/full")  # type: ignore[misc]
        with self.assertRaises(WavWriteError) as caught:
            WavWriter("/dev/full", 1, "PCMU", opener=lambda p: open(p, "wb"))
        self.assertEqual(caught.exception.reason, "disk full")

    def test_open_failure(self) -> None:
        """
        A directory that cannot be created gives C{open failed: ...}.
        """
        base = tempfile.mkdtemp()
        blocker = os.path.join(base, "file")
        with open(blocker, "w"):
            pass
        with self.assertRaises(WavWriteError) as caught:
            WavWriter(os.path.join(blocker, "x", "r.wav"), 1, "L16")
        self.assertTrue(caught.exception.reason.startswith("open failed: "), caught.exception.reason)


class CreateFileTests(SynchronousTestCase):
    """
    L{create_file} makes directories 0o750 and files 0o640, and never
    overwrites or follows a link.
    """

    def test_modes(self) -> None:
        """
        Every directory it creates is 0o750, the file 0o640 (umask 027).
        """
        base = tempfile.mkdtemp()
        old = os.umask(0o027)
        try:
            create_file(os.path.join(base, "a", "b", "r.wav")).close()
        finally:
            os.umask(old)
        self.assertEqual(os.stat(os.path.join(base, "a")).st_mode & 0o777, 0o750)
        self.assertEqual(os.stat(os.path.join(base, "a", "b")).st_mode & 0o777, 0o750)
        self.assertEqual(os.stat(os.path.join(base, "a", "b", "r.wav")).st_mode & 0o777, 0o640)

    def test_refuses_existing_and_links(self) -> None:
        """
        An existing file is not overwritten, a symbolic link not followed.
        """
        base = tempfile.mkdtemp()
        existing = os.path.join(base, "r.wav")
        with open(existing, "wb") as f:
            f.write(b"keep")
        self.assertRaises(FileExistsError, create_file, existing)
        target = os.path.join(base, "target")
        os.symlink(target, os.path.join(base, "link.wav"))
        self.assertRaises(OSError, create_file, os.path.join(base, "link.wav"))
        self.assertFalse(os.path.exists(target))
        with open(existing, "rb") as f:
            self.assertEqual(f.read(), b"keep")
