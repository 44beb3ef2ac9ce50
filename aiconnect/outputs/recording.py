# -*- test-case-name: tests.outputs.test_recording,tests.outputs.test_recording_upload -*-
"""
A recording of a session (SPEC s9): the L{aiconnect.legs.OutputLeg} that
writes the session's PCM frames to a WAV file while the call runs.

L{RecordingLeg.start} creates
C{{[recording] directory}/{tenant}/{YYYY-MM-DD}/{recordingId}.wav}
(L{aiconnect.outputs.files.recording_path}) and attaches to the session's
PCM tap; each 20 ms frame is selected (C{tracks}), encoded (C{encoding})
and appended by L{aiconnect.outputs.wav.WavWriter}, whose header stays
valid at least every second.  A disk error detaches and reports
C{output_failed} (C{disk full}, C{write error: ...}): the call and its
other outputs go on.  While paused (SPEC s10) silence is written and the
interval listed in C{pauses}, in seconds from the recording's start
counted in frames, not wall-clock time.

L{RecordingLeg.stop} writes the final header, hashes the file (SHA-256)
in chunks on the reactor without blocking it, reports C{output_stopped},
then PUTs the file to the order's C{uploadUrl} (L{Uploader}) and reports
C{output_uploaded}; the file is removed after a successful upload when
C{[recording] keep_after_upload} is false.  Until all that is done the
file is marked open (L{aiconnect.outputs.files.mark_open}), so a REST
C{DELETE} answers 409.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any, BinaryIO

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from aiconnect.config.records import RecordingConfig
from aiconnect.legs import MediaSession, OutputObserver
from aiconnect.media.pcm import FRAME_SECONDS, PcmFrame
from aiconnect.outputs import files
from aiconnect.outputs.audio import SILENCE, channel_count, encode, select
from aiconnect.outputs.context import OutputContext
from aiconnect.outputs.orders import RecordingOrder
from aiconnect.outputs.upload import Uploader
from aiconnect.text import public_url
from aiconnect.outputs.wav import WavWriteError, WavWriter, create_file

__all__ = ["HASH_CHUNK", "RecordingLeg", "hash_file"]

#: Bytes hashed per reactor turn.
HASH_CHUNK = 256 * 1024


def hash_file(reactor: IReactorTime, path: str, chunk: int = HASH_CHUNK) -> Deferred[str]:
    """
    The SHA-256 of a file, read and hashed C{chunk} bytes per reactor turn
    so that a large file never blocks the reactor for long.

    @return: A Deferred firing with the hex digest, or failing with the
        C{OSError} of the file.
    """
    result: Deferred[str] = Deferred()
    digest = hashlib.sha256()
    try:
        f: BinaryIO = open(path, "rb")
    except OSError as e:
        result.errback(e)
        return result

    def step() -> None:
        try:
            data = f.read(chunk)
        except OSError as e:
            f.close()
            result.errback(e)
            return
        if data:
            digest.update(data)
            reactor.callLater(0, step)
            return
        f.close()
        result.callback(digest.hexdigest())

    step()
    return result


class RecordingLeg:
    """
    One recording of a session; an L{aiconnect.legs.OutputLeg} and an
    L{aiconnect.media.pcm.PcmSink}.

    @ivar path: The file, or L{None} (a bad id or tenant).
    @ivar pauses: The pause intervals so far, C{{"start": s, "end": s}}
        (the last one without C{end} while paused).
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        observer: OutputObserver,
        recording_id: str,
        order: RecordingOrder,
        context: OutputContext,
        media: MediaSession,
        config: RecordingConfig,
        uploader: Uploader | None,
        refresh: float = 0.5,
        opener: Callable[[str], BinaryIO] = create_file,
    ) -> None:
        """
        @param reactor: For hashing and uploads.
        @param observer: Gets the outcome (the runner).
        @param recording_id: The recording's id (names the file).
        @param order: The C{startRecording} object.
        @param context: The session (its tenant names the directory).
        @param media: The session's relay media (its PCM tap).
        @param config: C{[recording]}.
        @param uploader: PUTs the file to C{order.upload_url}, if any.
        @param refresh: Seconds of audio between two header refreshes.
        @param opener: Creates the file (tests inject failing disks).
        """
        self._reactor = reactor
        self._observer = observer
        self._id = recording_id
        self._order = order
        self._context = context
        self._media = media
        self._config = config
        self._uploader = uploader
        self._refresh = refresh
        self._opener = opener
        self._channels = channel_count(order.tracks)
        self._silence = encode([SILENCE] * self._channels, order.encoding)
        self.path = files.recording_path(config.directory, context.tenant, recording_id)
        self.pauses: list[dict[str, float]] = []
        self._writer: WavWriter | None = None
        self._state = "new"
        self._paused = False
        self._frames = 0

    # -- OutputLeg --

    def start(self) -> None:
        """
        Create the file and attach to the PCM tap; report C{output_started}
        or C{output_failed}.
        """
        if self._state != "new":
            return
        if self.path is None:
            self._state = "failed"
            self._observer.output_failed(self._id, "bad recording id or tenant")
            return
        try:
            self._writer = WavWriter(self.path, self._channels, self._order.encoding, self._refresh, self._opener)
        except WavWriteError as e:
            self._state = "failed"
            self.log.warn(
                "Recording {recording_id} of session {session_id} could not start: {reason}",
                recording_id=self._id,
                session_id=self._context.session_id,
                reason=e.reason,
            )
            self._observer.output_failed(self._id, e.reason)
            return
        self._state = "recording"
        files.mark_open(self.path)
        self._media.attach_pcm(self)
        self._observer.output_started(self._id, {"file": self.path})

    def set_paused(self, paused: bool) -> None:
        """
        Write silence from the next frame on (and open a C{pauses}
        interval), or the session's audio again (and close it).
        """
        if paused == self._paused or self._state in ("stopped", "failed"):
            return
        self._paused = paused
        at = round(self._frames * FRAME_SECONDS, 3)
        if paused:
            self.pauses.append({"start": at})
        elif self.pauses:
            self.pauses[-1]["end"] = at

    def stop(self, stopped_by: str) -> None:
        """
        Detach, write the final header, hash, report C{output_stopped},
        then upload; idempotent (nothing is reported for a recording that
        never started or already failed).
        """
        if self._state != "recording":
            if self._state == "new":
                self._state = "stopped"
            return
        self._state = "stopped"
        self._media.detach_pcm(self)
        writer = self._writer
        assert writer is not None and self.path is not None
        if self._paused and self.pauses:
            self.pauses[-1]["end"] = round(self._frames * FRAME_SECONDS, 3)
        try:
            writer.close()
        except WavWriteError as e:
            self._failed(e.reason)
            return
        d = hash_file(self._reactor, self.path)
        d.addCallbacks(self._hashed, self._unreadable, callbackArgs=(stopped_by, writer))
        d.addErrback(self._bug)

    def stats(self) -> dict[str, Any]:
        """
        Frames and bytes written, whether paused, the file.
        """
        writer = self._writer
        return {
            "frames": self._frames,
            "bytes": writer.size if writer is not None else 0,
            "paused": self._paused,
            "file": self.path,
        }

    # -- PcmSink --

    def pcm_frame(self, frame: PcmFrame) -> None:
        """
        Append one frame (silence while paused); a disk error fails the
        recording, never the caller.
        """
        writer = self._writer
        if self._state != "recording" or writer is None:
            return
        try:
            if self._paused:
                data = self._silence
            else:
                data = encode(select(frame, self._context.parties, self._order.tracks), self._order.encoding)
            writer.write(data)
        except WavWriteError as e:
            reason = e.reason
        except Exception:
            self.log.failure("Recording {recording_id}: bug while writing a frame", recording_id=self._id)
            reason = "write error: internal error"
        else:
            self._frames += 1
            return
        self._state = "failed"
        self._media.detach_pcm(self)
        self._failed(reason)

    # -- internals --

    def _failed(self, reason: str) -> None:
        self._state = "failed"
        if self._writer is not None:
            self._writer.abort()
        self.log.error(
            "Recording {recording_id} of session {session_id} failed: {reason}; the call goes on",
            recording_id=self._id,
            session_id=self._context.session_id,
            reason=reason,
        )
        if self.path is not None:
            files.mark_closed(self.path)
        self._observer.output_failed(self._id, reason)

    def _hashed(self, sha256: str, stopped_by: str, writer: WavWriter) -> None:
        assert self.path is not None
        detail = {
            "file": self.path,
            "duration": round(writer.duration, 3),
            "bytes": writer.size,
            "sha256": sha256,
            "channels": self._channels,
            "encoding": self._order.encoding,
            "pauses": [dict(p) for p in self.pauses],
        }
        self._observer.output_stopped(self._id, stopped_by, detail)
        url = self._order.upload_url
        if not url:
            files.mark_closed(self.path)
            return
        if self._uploader is None:
            files.mark_closed(self.path)
            self._observer.output_uploaded(self._id, public_url(url), "no uploader configured")
            return
        d = self._uploader.upload(self.path, url)
        d.addCallback(self._uploaded, url)
        d.addErrback(self._bug)

    def _unreadable(self, failure: Any) -> None:
        # The file vanished or became unreadable between close and hash.
        assert self.path is not None
        reason = "write error: %s" % (getattr(failure.value, "strerror", None) or failure.getErrorMessage(),)
        files.mark_closed(self.path)
        self.log.error("Recording {recording_id} cannot be hashed: {reason}", recording_id=self._id, reason=reason)
        self._observer.output_failed(self._id, reason)

    def _uploaded(self, status: int | str, url: str) -> None:
        assert self.path is not None
        files.mark_closed(self.path)
        done = isinstance(status, int) and 200 <= status < 300
        if done and not self._config.keep_after_upload:
            try:
                os.remove(self.path)
            except OSError as e:
                self.log.warn(
                    "Recording {recording_id} uploaded, but its file could not be removed: {reason}",
                    recording_id=self._id,
                    reason=e.strerror,
                )
        self._observer.output_uploaded(self._id, public_url(url), status)

    def _bug(self, failure: Any) -> None:
        self.log.failure("Recording {recording_id}: bug", failure, recording_id=self._id)
