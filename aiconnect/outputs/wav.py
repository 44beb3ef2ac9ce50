# -*- test-case-name: tests.outputs.test_wav -*-
"""
RIFF/WAVE files at 8000 Hz written while a call runs (SPEC s9).

L{WavWriter} appends frame bytes and keeps the header valid as it goes: at
least every C{refresh} seconds of audio (and on close) the buffered data is
written, then the header is rewritten with the sizes of the data already
on disk.  The header never counts a byte that is not written, so a process
killed at any moment (C{kill -9}) leaves a file every WAV reader opens,
missing at most the audio since the last refresh.

Encodings: C{L16} (format tag 1, PCM, 16-bit little-endian, 44-byte
header) and G.711 C{PCMU} (tag 7) / C{PCMA} (tag 6): 8-bit, C{fmt } chunk
of 18 bytes (C{cbSize} = 0) and a C{fact} chunk holding the sample count
per channel, as non-PCM WAVs must have (58-byte header).

Plain file I/O, no Twisted: a disk error raises L{WavWriteError} whose
C{reason} (C{disk full}, C{write error: ...}) is what C{RECORDINGFAILED}
reports.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Callable
from typing import BinaryIO

from aiconnect.errors import AiconnectError

__all__ = ["RATE", "WavWriteError", "WavWriter", "create_file", "header", "wav_format"]

#: The sample rate of every recording.
RATE = 8000

#: encoding -> (format tag, bytes per sample).
_FORMATS = {"L16": (1, 2), "PCMU": (7, 1), "PCMA": (6, 1)}

#: RIFF header, C{fmt } chunk of 16 bytes (PCM), C{data} chunk header.
_PCM_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")
#: RIFF header, C{fmt } chunk of 18 bytes (cbSize), C{fact} chunk, C{data}.
_G711_HEADER = struct.Struct("<4sI4s4sIHHIIHHH4sII4sI")

#: errno values reported as a full disk.
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class WavWriteError(AiconnectError):
    """
    The recording's file could not be created or written.

    @ivar reason: A short reason for C{RECORDINGFAILED}: C{disk full},
        C{open failed: ...}, C{write error: ...} (no path).
    """

    def __init__(self, reason: str) -> None:
        """
        @param reason: The short reason.
        """
        super().__init__(reason)
        self.reason = reason


def _reason(error: OSError, what: str) -> str:
    if error.errno in _DISK_FULL:
        return "disk full"
    return "%s: %s" % (what, error.strerror or error.__class__.__name__)


def wav_format(encoding: str) -> tuple[int, int]:
    """
    @param encoding: C{L16}, C{PCMU} or C{PCMA}.
    @return: (WAV format tag, bytes per sample).
    @raise ValueError: For another encoding.
    """
    try:
        return _FORMATS[encoding]
    except KeyError:
        raise ValueError("unknown encoding %r" % (encoding,)) from None


def header(channels: int, encoding: str, data_bytes: int) -> bytes:
    """
    The header of a WAV file holding C{data_bytes} bytes of samples.

    @param channels: 1 or 2.
    @param encoding: C{L16}, C{PCMU} or C{PCMA}.
    @param data_bytes: Size of the C{data} chunk.
    @return: 44 bytes (L16) or 58 bytes (G.711, with C{fact}).
    """
    tag, width = wav_format(encoding)
    block = channels * width
    if tag == 1:
        return _PCM_HEADER.pack(
            b"RIFF", 36 + data_bytes, b"WAVE",
            b"fmt ", 16, tag, channels, RATE, RATE * block, block, 8 * width,
            b"data", data_bytes,
        )  # fmt: skip
    return _G711_HEADER.pack(
        b"RIFF", 50 + data_bytes, b"WAVE",
        b"fmt ", 18, tag, channels, RATE, RATE * block, block, 8 * width, 0,
        b"fact", 4, data_bytes // block,
        b"data", data_bytes,
    )  # fmt: skip


def create_file(path: str) -> BinaryIO:
    """
    Create a new recording file: missing parent directories with mode
    0o750, the file with 0o640 (both less what the umask removes); an
    existing file or a symbolic link at C{path} is refused, never
    overwritten or followed.

    @raise OSError: As the system reports it.
    """
    parent = os.path.dirname(path)
    missing = []
    while parent and not os.path.isdir(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o750)
        except FileExistsError:
            pass
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o640)
    return os.fdopen(fd, "wb")


class WavWriter:
    """
    A WAV file being written.

    @ivar path: Where.
    @ivar channels: 1 or 2.
    @ivar encoding: C{L16}, C{PCMU} or C{PCMA}.
    @ivar data_bytes: Bytes of samples taken so far (written or buffered).
    @ivar refreshes: How many times the header was rewritten.
    """

    def __init__(
        self,
        path: str,
        channels: int,
        encoding: str,
        refresh: float = 0.5,
        opener: Callable[[str], BinaryIO] = create_file,
    ) -> None:
        """
        Create the file and write a header for no data.

        @param path: The file to create.
        @param channels: 1 or 2.
        @param encoding: C{L16}, C{PCMU} or C{PCMA}.
        @param refresh: Seconds of audio between two header refreshes (at
            most 1 for SPEC s9).
        @param opener: Creates the file (L{create_file}; tests inject
            failing files).
        @raise ValueError: A bad channel count or encoding.
        @raise WavWriteError: The file cannot be created or written.
        """
        if channels not in (1, 2):
            raise ValueError("one or two channels")
        _, width = wav_format(encoding)
        self.path = path
        self.channels = channels
        self.encoding = encoding
        self.data_bytes = 0
        self.refreshes = 0
        self._block = channels * width
        self._refresh_bytes = max(self._block, int(refresh * RATE) * self._block)
        self._header_size = len(header(channels, encoding, 0))
        self._written = 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._file: BinaryIO | None = None
        try:
            self._file = opener(path)
            self._file.write(header(channels, encoding, 0))
            self._file.flush()
        except OSError as e:
            self.abort()
            raise WavWriteError(_reason(e, "open failed")) from e

    @property
    def samples(self) -> int:
        """
        Samples per channel taken so far.
        """
        return self.data_bytes // self._block

    @property
    def duration(self) -> float:
        """
        Seconds of audio taken so far.
        """
        return self.samples / RATE

    @property
    def size(self) -> int:
        """
        The file's size once everything taken is written.
        """
        return self._header_size + self.data_bytes

    @property
    def closed(self) -> bool:
        """
        Whether the file is closed (L{close} or L{abort}).
        """
        return self._file is None

    def write(self, data: bytes) -> None:
        """
        Append samples (whole sample frames: C{channels} samples each);
        write them and refresh the header once C{refresh} seconds of audio
        are buffered.

        @raise WavWriteError: The disk refused; the file is left as it was
            at the last refresh (call L{abort}).
        """
        if self._file is None:
            raise WavWriteError("write error: file closed")
        self._pending.append(data)
        self._pending_bytes += len(data)
        self.data_bytes += len(data)
        if self._pending_bytes >= self._refresh_bytes:
            self.refresh()

    def refresh(self) -> None:
        """
        Write the buffered data, then the header counting it, and flush.

        @raise WavWriteError: The disk refused.
        """
        f = self._file
        if f is None:
            raise WavWriteError("write error: file closed")
        try:
            if self._pending:
                f.write(b"".join(self._pending))
                self._pending.clear()
                self._pending_bytes = 0
            f.flush()
            self._written = self.data_bytes
            f.seek(0)
            f.write(header(self.channels, self.encoding, self._written))
            f.seek(self._header_size + self._written)
            f.flush()
        except OSError as e:
            raise WavWriteError(_reason(e, "write error")) from e
        self.refreshes += 1

    def close(self) -> None:
        """
        Write what is buffered and the final header, and close; idempotent.

        @raise WavWriteError: The disk refused (the file is closed anyway).
        """
        if self._file is None:
            return
        try:
            self.refresh()
        except WavWriteError:
            self.abort()
            raise
        f, self._file = self._file, None
        try:
            f.close()
        except OSError as e:
            raise WavWriteError(_reason(e, "write error")) from e

    def abort(self) -> None:
        """
        Close the file without writing what is buffered (after an error);
        never raises.  The file stays valid as of its last refresh.
        """
        f, self._file = self._file, None
        self._pending.clear()
        self._pending_bytes = 0
        if f is None:
            return
        try:
            f.close()
        except OSError:
            # A buffered write failing again on close: nothing more to save.
            pass
