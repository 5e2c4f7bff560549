"""What one request, generation or stream may cost, and how each breach is answered.

Every limit gives a clear answer, never a 500 or a hang:

| limit | default | breach |
| --- | ---: | --- |
| ``request_bytes``: body of one HTTP request | 2 MB | 413 |
| ``notes``: notes in one request (JSON notes or the MIDI file's) | 4,096 | 422 |
| ``bars`` / ``seconds``: length of one generation | 64 bars / 120 s | 422 |
| ``generations``: HTTP generations running at once | 2 | 503 with Retry-After |
| ``streams``: open soundtrack streams | ``STREAMS_CARRIED`` | WebSocket close 1013 (also while the decoder is strained) |
| ``stream_idle_s``: a stream with no message from its client | 60 s | close 4408 |
| ``send_timeout_s``: a client that does not take a message | 10 s | close 1011, dropped |
| ``message_bytes``: one WebSocket message from a client | 16 KB | close 1009 |
| ``lead_bars`` / ``lead_high_s``: how far a stream runs ahead of the playhead | 2 to 8 bars, at most 10 s | (not a breach) |
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# What this 2-core machine carried with no listener running dry (``python benchmarks/stream.py
# --find ...``, docs/server.md): the default of ``cadenza serve --max-streams``.
STREAMS_CARRIED = 256


@dataclass(frozen=True)
class Limits:
    request_bytes: int = 2_000_000
    notes: int = 4096
    bars: int = 64
    seconds: float = 120.0
    generations: int = 2
    streams: int = STREAMS_CARRIED
    stream_idle_s: float = 60.0
    send_timeout_s: float = 10.0
    message_bytes: int = 16_384
    lead_low_bars: int = 2
    lead_high_bars: int = 8
    lead_high_s: float = 10.0
    workers: int = 2

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        """The limits in words, as ``cadenza serve`` prints them at start."""
        return [f"request body <= {self.request_bytes:,} bytes, <= {self.notes:,} notes per request",
                f"generation <= {self.bars} bars or {self.seconds:g} s, {self.generations} at once",
                f"streams <= {self.streams} open, closed after {self.stream_idle_s:g} s without a message; "
                f"lead {self.lead_low_bars}-{self.lead_high_bars} bars, at most {self.lead_high_s:g} s",
                f"{self.workers} generation worker threads"]
