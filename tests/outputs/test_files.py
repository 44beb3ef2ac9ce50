# -*- test-case-name: tests.outputs.test_files -*-
"""
Tests for L{aiconnect.outputs.files}: recording paths (no traversal),
serving with Range over a real HTTP server, deletion, busy files.
"""

from __future__ import annotations

import os
import tempfile

import treq
from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from aiconnect.outputs import files
from aiconnect.outputs.files import RecordingBusy, delete_recording, recording_path, recording_resource

GOOD = "rec_20261202_0123456789abcdef"


def _store(directory: str, tenant: str, recording_id: str, data: bytes) -> str:
    path = recording_path(directory, tenant, recording_id)
    assert path is not None
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


class RecordingPathTests(SynchronousTestCase):
    """
    L{recording_path} maps only well-formed ids and tenants to a path.
    """

    def test_layout(self) -> None:
        """
        C{{directory}/{tenant}/{YYYY-MM-DD}/{recordingId}.wav}, the date
        from the id.
        """
        self.assertEqual(
            recording_path("/var/rec", "acme.example.com", GOOD),
            "/var/rec/acme.example.com/2026-12-02/" + GOOD + ".wav",
        )
        self.assertEqual(
            recording_path("/r", "2001:db8::1", GOOD),
            "/r/2001:db8::1/2026-12-02/" + GOOD + ".wav",
        )

    def test_bad_ids(self) -> None:
        """
        Anything but C{rec_YYYYMMDD_} and 16 lower-case hex digits, or an
        impossible date, gives L{None}.
        """
        for bad in (
            "",
            "rec_20261202_0123456789abcde",
            "rec_20261202_0123456789abcdef0",
            "rec_20261202_0123456789ABCDEF",
            "rec_20261302_0123456789abcdef",
            "rec_20260230_0123456789abcdef",
            "rec_2026120_20123456789abcdef",
            "../rec_20261202_0123456789abcdef",
            "rec_20261202_0123456789abcdef/../x",
            "rec_20261202_0123456789abcdef\n",
            "rec_20261202_0123456789abcde\0",
            "str_0123456789abcdef",
            "rec_２0261202_0123456789abcdef",
        ):
            self.assertIsNone(recording_path("/r", "acme.example.com", bad), bad)

    def test_bad_tenants(self) -> None:
        """
        Tenants with a slash, C{..}, NUL, upper case, a leading dot or
        nothing give L{None}.
        """
        for bad in ("", "..", ".", "a/b", "../etc", "a..b", "a\0b", "Acme.com", ".hidden", "a b", "[::1]", "x" * 300):
            self.assertIsNone(recording_path("/r", bad, GOOD), bad)


class DeleteTests(SynchronousTestCase):
    """
    L{delete_recording} removes finished files only.
    """

    def test_delete(self) -> None:
        """
        A finished recording is removed once; then it is gone.
        """
        directory = tempfile.mkdtemp()
        path = _store(directory, "acme.example.com", GOOD, b"RIFF")
        self.assertTrue(delete_recording(directory, "acme.example.com", GOOD))
        self.assertFalse(os.path.exists(path))
        self.assertFalse(delete_recording(directory, "acme.example.com", GOOD))
        self.assertFalse(delete_recording(directory, "acme.example.com", "../../etc/passwd"))

    def test_other_tenant(self) -> None:
        """
        Another tenant's recording of the same id is not found.
        """
        directory = tempfile.mkdtemp()
        path = _store(directory, "acme.example.com", GOOD, b"RIFF")
        self.assertFalse(delete_recording(directory, "other.example.com", GOOD))
        self.assertIsNone(recording_resource(directory, "other.example.com", GOOD))
        self.assertTrue(os.path.exists(path))

    def test_busy(self) -> None:
        """
        A recording its leg still holds is refused with L{RecordingBusy}
        (REST 409), and removable once released.
        """
        directory = tempfile.mkdtemp()
        path = _store(directory, "acme.example.com", GOOD, b"RIFF")
        files.mark_open(path)
        self.addCleanup(files.mark_closed, path)
        self.assertTrue(files.is_open(path))
        self.assertRaises(RecordingBusy, delete_recording, directory, "acme.example.com", GOOD)
        self.assertTrue(os.path.exists(path))
        files.mark_closed(path)
        self.assertFalse(files.is_open(path))
        self.assertTrue(delete_recording(directory, "acme.example.com", GOOD))

    def test_links_not_followed(self) -> None:
        """
        A symbolic link in a recording's place is neither served nor
        deleted (nor its target).
        """
        directory = tempfile.mkdtemp()
        target = os.path.join(directory, "secret")
        with open(target, "wb") as f:
            f.write(b"secret")
        path = recording_path(directory, "acme.example.com", GOOD)
        assert path is not None
        os.makedirs(os.path.dirname(path))
        os.symlink(target, path)
        self.assertIsNone(recording_resource(directory, "acme.example.com", GOOD))
        self.assertFalse(delete_recording(directory, "acme.example.com", GOOD))
        self.assertTrue(os.path.exists(target))


class ServeTests(TestCase):
    """
    L{recording_resource} serves the file as C{audio/wav} with Range, over
    a real HTTP server on 127.0.0.1.
    """

    timeout = 20

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp()
        self.data = bytes((i * 7) % 256 for i in range(5000))
        _store(self.directory, "acme.example.com", GOOD, self.data)
        served = recording_resource(self.directory, "acme.example.com", GOOD)
        self.assertIsNotNone(served)
        root = Resource()
        root.putChild(b"rec.wav", served)  # type: ignore[arg-type]
        self.port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(self.port.stopListening)
        self.url = "http://127.0.0.1:%d/rec.wav" % (self.port.getHost().port,)

    async def test_whole(self) -> None:
        """
        A plain GET returns the whole file as C{audio/wav}, announcing
        byte ranges.
        """
        response = await treq.get(self.url, persistent=False)
        body = await response.content()
        self.assertEqual(response.code, 200)
        self.assertEqual(body, self.data)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"audio/wav"])
        self.assertEqual(response.headers.getRawHeaders(b"accept-ranges"), [b"bytes"])

    async def test_range(self) -> None:
        """
        C{Range: bytes=100-1099} returns 206 with exactly those bytes; an
        open-ended range returns the tail.
        """
        response = await treq.get(self.url, headers={"Range": "bytes=100-1099"}, persistent=False)
        body = await response.content()
        self.assertEqual(response.code, 206)
        self.assertEqual(body, self.data[100:1100])
        self.assertEqual(response.headers.getRawHeaders(b"content-range"), [b"bytes 100-1099/5000"])
        response = await treq.get(self.url, headers={"Range": "bytes=-16"}, persistent=False)
        self.assertEqual(response.code, 206)
        self.assertEqual(await response.content(), self.data[-16:])

    async def test_unsatisfiable(self) -> None:
        """
        A range beyond the file gets 416.
        """
        response = await treq.get(self.url, headers={"Range": "bytes=9000-9100"}, persistent=False)
        await response.content()
        self.assertEqual(response.code, 416)
