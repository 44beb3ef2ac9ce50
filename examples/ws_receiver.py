#!/usr/bin/env python3
# -*- test-case-name: tests.outputs.test_stream_receiver -*-
"""
A minimal consumer of AI Connect streams (docs/streams.md): a WebSocket
server that writes each stream it receives to C{<streamId>.wav}.

It understands both protocols: C{raw} (L16 8/16 kHz, PCMU, PCMA; one or two
channels) and C{twilio} (base64 mu-law; track C{inbound} left, C{outbound}
right).  A stream that reconnects (C{"resumed": true}) goes on in the same
file, with C{gapMs} of silence where audio was lost.

    python examples/ws_receiver.py --port 8765 --directory /tmp/streams

and order C{"startStream": {"url": "ws://<this host>:8765/"}}.  Needs only
Twisted with its C{websocket} extra (C{pip install "twisted[websocket]"}).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import struct
import sys
import wave
from typing import Any

from twisted.internet import reactor
from twisted.web.server import Site
from twisted.web.websocket import WebSocketResource


def _ulaw(code: int) -> int:
    code = ~code & 0xFF
    magnitude = (((code & 0x0F) << 3) + 0x84) << ((code & 0x70) >> 4)
    return 0x84 - magnitude if code & 0x80 else magnitude - 0x84


def _alaw(code: int) -> int:
    code ^= 0x55
    magnitude = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    magnitude = magnitude + 8 if segment == 0 else (magnitude + 0x108) << (segment - 1)
    return magnitude if code & 0x80 else -magnitude


#: G.711 code -> linear sample, for the two laws.
DECODE = {"PCMU": [_ulaw(c) for c in range(256)], "PCMA": [_alaw(c) for c in range(256)]}


def to_l16(data: bytes, encoding: str) -> bytes:
    """
    Little-endian 16-bit samples from C{data} in C{encoding}.
    """
    if encoding == "L16":
        return data
    table = DECODE[encoding]
    return struct.pack("<%dh" % len(data), *(table[c] for c in data))


class Receiver:
    """
    The open WAV files, by stream id (a resumed stream goes on in its file).
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.files: dict[str, wave.Wave_write] = {}

    def open(self, stream_id: str, channels: int, rate: int) -> wave.Wave_write:
        """
        The WAV file of C{stream_id}, opened if new.
        """
        if stream_id not in self.files:
            name = re.sub(r"[^A-Za-z0-9_-]", "_", stream_id)[:64] or "stream"
            wav = wave.open(os.path.join(self.directory, name + ".wav"), "wb")
            wav.setnchannels(channels)
            wav.setsampwidth(2)
            wav.setframerate(rate)
            self.files[stream_id] = wav
        return self.files[stream_id]

    def close(self, stream_id: str) -> None:
        """
        Finish the WAV file of C{stream_id}.
        """
        wav = self.files.pop(stream_id, None)
        if wav is not None:
            wav.close()

    def close_all(self) -> None:
        """
        Finish every file (at shutdown).
        """
        for stream_id in list(self.files):
            self.close(stream_id)

    def buildProtocol(self, request: Any) -> StreamConnection:
        """
        One connection (Twisted's C{WebSocketServerFactory}).
        """
        return StreamConnection(self)


class StreamConnection:
    """
    One WebSocket connection of a stream.
    """

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.stream_id = ""
        self.wav: wave.Wave_write | None = None
        self.encoding = "L16"
        self.tracks: list[str] = []
        self.pending: dict[str, dict[str, bytes]] = {}

    def negotiationStarted(self, transport: Any) -> None:
        pass

    def negotiationFinished(self) -> None:
        pass

    def pongReceived(self, payload: bytes) -> None:
        pass

    def connectionLost(self, reason: Any) -> None:
        pass

    def _start(self, stream_id: str, channels: int, rate: int, gap_ms: int) -> None:
        self.stream_id = stream_id
        self.wav = self.receiver.open(stream_id, channels, rate)
        # Silence where audio was lost while the stream reconnected.
        self.wav.writeframes(bytes(2 * channels * rate * gap_ms // 1000))

    def textMessageReceived(self, text: str) -> None:
        message = json.loads(text)
        event = message.get("event")
        if event == "start" and "start" in message:  # twilio
            start = message["start"]
            self.tracks = start["tracks"]
            self._start(start["streamSid"], len(self.tracks), 8000, start.get("gapMs", 0))
        elif event == "start":  # raw
            self.encoding = message["format"]
            self._start(message["streamId"], message["channels"], message["sampleRate"], message.get("gapMs", 0))
        elif event == "media" and self.wav is not None:
            media = message["media"]
            chunks = self.pending.setdefault(media["timestamp"], {})
            chunks[media["track"]] = to_l16(base64.b64decode(media["payload"]), "PCMU")
            if len(chunks) == len(self.tracks):
                del self.pending[media["timestamp"]]
                self._write_tracks([chunks[t] for t in self.tracks])
        elif event == "stop":
            self.receiver.close(self.stream_id)
            self.wav = None

    def _write_tracks(self, tracks: list[bytes]) -> None:
        assert self.wav is not None
        if len(tracks) == 1:
            self.wav.writeframes(tracks[0])
            return
        left, right = (struct.unpack("<%dh" % (len(t) // 2), t) for t in tracks)
        samples = [s for pair in zip(left, right) for s in pair]
        self.wav.writeframes(struct.pack("<%dh" % len(samples), *samples))

    def bytesMessageReceived(self, data: bytes) -> None:
        if self.wav is not None:
            self.wav.writeframes(to_l16(bytes(data), self.encoding))


def listen(port: int, directory: str, interface: str = "") -> tuple[Receiver, Any]:
    """
    Serve streams on C{port} (0: any free one), writing to C{directory}.

    @return: the receiver and the listening port.
    """
    receiver = Receiver(directory)
    resource = WebSocketResource(receiver)
    resource.isLeaf = True  # any path
    return receiver, reactor.listenTCP(port, Site(resource), interface=interface)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--directory", default=".")
    args = parser.parse_args(argv)
    receiver, port = listen(args.port, args.directory)
    reactor.addSystemEventTrigger("before", "shutdown", receiver.close_all)
    print("listening on ws://0.0.0.0:%d/, writing to %s" % (port.getHost().port, args.directory))
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
