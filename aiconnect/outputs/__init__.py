"""
The PCM outputs of a session: WebSocket streams to AI engines (SPEC s8) and
WAV recordings (SPEC s9), fed by the relay's L{aiconnect.media.pcm} tap and
driven by the L{aiconnect.call.Call} through the runner.

  - L{aiconnect.outputs.audio}: channel selection (C{tracks}) and sample
    formats (L16 8/16 kHz, PCMU, PCMA), shared by streams and recordings.
  - L{aiconnect.outputs.orders}: the C{startStream} / C{startRecording}
    objects, validated.
"""
