# -*- test-case-name: tests.outputs.test_recording_upload -*-
"""
Tests for the upload of a L{aiconnect.outputs.recording.RecordingLeg}: the
finished file PUT to a real twisted.web server on 127.0.0.1 that fails
once, then takes it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from aiconnect.config.records import RecordingConfig
from aiconnect.outputs.audio import Parties
from aiconnect.outputs.context import OutputContext
from aiconnect.outputs.orders import RecordingOrder
from aiconnect.outputs.recording import RecordingLeg
from aiconnect.outputs.upload import Uploader
from tests.fakes import wait_until
from tests.outputs.test_recording import RID, TENANT, FakeMedia, FakeObserver, frames
from tests.outputs.test_upload import SECRET, _Bucket, _client


class UploadTests(TestCase):
    """
    After C{output_stopped}, the file goes to C{uploadUrl}.
    """

    timeout = 30

    def _record(self, keep: bool, script: list[tuple[int, str | None]]) -> Any:
        bucket = _Bucket(script, reactor)
        port = reactor.listenTCP(0, Site(bucket), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        url = "http://127.0.0.1:%d/bucket/%s.wav?%s" % (port.getHost().port, RID, SECRET)
        media, observer = FakeMedia(), FakeObserver()
        uploader = Uploader(reactor, _client(), retry_initial=0.05, retry_max=0.2, retry_for=20.0, timeout=10.0)
        leg = RecordingLeg(
            reactor,
            observer,
            RID,
            RecordingOrder(tracks="both", upload_url=url),
            OutputContext("sess-1", TENANT, parties=Parties()),
            media,  # type: ignore[arg-type]
            RecordingConfig(directory=tempfile.mkdtemp(), keep_after_upload=keep),
            uploader,
        )
        leg.start()
        for f in frames(100):
            media.feed(f)
        leg.stop("api")
        return bucket, leg, observer, url

    async def test_fails_once_then_uploaded_and_removed(self) -> None:
        """
        A 503 with C{Retry-After: 1}, then 200: the stored bytes are the
        file's (sha256 of the stopped report), the uploaded report has the
        URL without query string and status 200, and the file is removed
        (C{keep_after_upload = false}).
        """
        bucket, leg, observer, url = self._record(False, [(503, "1")])
        with open(leg.path, "rb") as f:
            data = f.read()
        await wait_until(lambda: "uploaded" in observer.kinds(), 15)
        self.assertEqual(observer.kinds(), ["started", "stopped", "uploaded"])
        self.assertEqual(bucket.stored, data)
        self.assertEqual(len(bucket.requests), 2)
        self.assertGreaterEqual(bucket.requests[1]["at"] - bucket.requests[0]["at"], 1.0)
        self.assertEqual(observer.reports[-1], ("uploaded", RID, url.split("?")[0], 200))
        self.assertNotIn("deadbeef", repr(observer.reports))
        self.assertEqual(observer.reports[1][3]["sha256"], hashlib.sha256(data).hexdigest())
        self.assertFalse(os.path.exists(leg.path))

    async def test_kept(self) -> None:
        """
        With C{keep_after_upload = true} the file stays after the upload.
        """
        bucket, leg, observer, _ = self._record(True, [])
        await wait_until(lambda: "uploaded" in observer.kinds(), 15)
        self.assertEqual(observer.reports[-1][3], 200)
        with open(leg.path, "rb") as f:
            self.assertEqual(f.read(), bucket.stored)

    async def test_refused_keeps_file(self) -> None:
        """
        A final refusal (410) is reported with its status and the file
        stays, whatever C{keep_after_upload} says.
        """
        bucket, leg, observer, _ = self._record(False, [(410, None)])
        await wait_until(lambda: "uploaded" in observer.kinds(), 15)
        self.assertEqual(observer.reports[-1][3], 410)
        self.assertTrue(os.path.exists(leg.path))
