"""``WS /api/stream``: one endless soundtrack per WebSocket, kept between a low and a high mark.

Protocol (JSON objects with a ``type``; docs/server.md has the full table):

- client: ``start`` {style, valence, energy, tempo, key, time_signature, seed} (each
  optional), ``control`` (the same fields; a field given as null frees it), ``like``,
  ``skip``, ``playhead`` {beat}, ``stop``;
- server: ``ready`` (styles, moods, limits), ``segment`` (the controls in force from a
  bar, with who chose each), ``notes`` (one bar's note events), ``cut`` {beat, bar}
  (drop every scheduled note from that beat: new music for it follows), ``liked`` /
  ``skipped``, ``error`` {reason} (the socket stays open), then a close code with a reason
  for what ends a stream (1000 stop, 1008 too many messages, 1009 message too big, 1011 client
  too slow, 1013 server full (the reason ends with a Retry-After hint in seconds), 4401 token, 4408 idle).

The client owns the clock. It reports its playhead in beats; between reports the server
extrapolates it at the tempo in force (for at most ``EXTRAPOLATE_S`` seconds, so a client
that stops reporting stops the stream from running ahead). The producer makes bars while
the new bar keeps at most ``lead_high_bars`` bars ahead of the playhead (and while less than
``lead_high_s`` seconds of music are ahead: what a control change throws away stays short), and
waits otherwise. Bars are
made by the server's one stream decoder (``server.batcher``): every stream's bar is a job in one
batch, due when its listener would run dry, and the nearest deadline is served first (a new
stream's first bar is due ``FIRST_BAR_S`` from its start, so listeners about to run dry go first).

A client may send at most ``RATE`` messages a second (``BURST`` at once); one that floods is
closed (1008), and a control change restarts the music at most every ``RESTART_GAP_S``
seconds (later changes within the gap are merged into the next restart), so one client cannot
take the decoder from the others.

A control change or a skip takes effect at the first bar that starts at least
``CHANGE_MARGIN_S`` seconds after the playhead: the bars from there on are dropped
(``cut``) and made again under the new controls, so the change is heard within about a bar.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time

from cadenza.errors import CadenzaError
from cadenza.music.soundtrack import CONTROL_FIELDS
from cadenza.server.stream_messages import Control, Playhead, Start, Stop, parse_message

EXTRAPOLATE_S = 10.0
CHANGE_MARGIN_S = 0.5
RATE, BURST = 20.0, 40.0  # messages a second a client may send, sustained / at once
RESTART_GAP_S = 0.25      # restarts of one stream at most this often
FIRST_BAR_S = 1.0         # a new stream's first bar is due as if it had this much music (listeners first)
SETTLED_S = 6.0           # a stream with this much music ahead is settled: its bar coming due is a sign of strain
RETAIN_BARS = 64          # bars of the sent timeline kept (the lead is at most 8; an endless stream stays bounded)


_SIDS = itertools.count(1)


class Closed(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


class StreamSession:
    """One client's stream: messages in, bars out."""

    def __init__(self, hub, ws, listener: str | None):
        self.hub, self.ws, self.listener = hub, ws, listener
        self.limits = hub.limits
        self.tracks, self.sid = hub.soundtracks, next(_SIDS)   # the soundtrack: server.streams (or its engine)
        self.sent_bars: list = []             # the last RETAIN_BARS Bar objects sent (the client's timeline)
        self.playhead = 0.0
        self.playhead_at = time.monotonic()
        self.wake = asyncio.Event()
        self.pending_cut: int | None = None   # bar to restart at
        self.pending_fresh = False
        self.started = asyncio.Event()
        self.last_restart = 0.0
        self.just_cut = False
        self.allowance, self.allowance_at = BURST, time.monotonic()

    # ---- clock ---------------------------------------------------------------------------
    def tempo_at(self, beat: float) -> float:
        for b in reversed(self.sent_bars):
            if b.start <= beat:
                return b.tempo
        return self.sent_bars[0].tempo if self.sent_bars else 120.0

    def playhead_now(self) -> float:
        dt = min(time.monotonic() - self.playhead_at, EXTRAPOLATE_S)
        return self.playhead + dt * self.tempo_at(self.playhead) / 60.0

    def lead_bars(self) -> float:
        """Bars made but not yet reached by the playhead (the current one in part)."""
        ph = self.playhead_now()
        lead = 0.0
        for b in reversed(self.sent_bars):
            if b.end <= ph:
                break
            lead += 1.0 if b.start >= ph else (b.end - ph) / (b.end - b.start)
        return lead

    def lead_seconds(self) -> float:
        """Seconds of music made but not yet played."""
        return self.seconds_before(float("inf"))

    def seconds_before(self, bar: float) -> float:
        """Seconds of music the listener holds before bar ``bar`` (when the playhead reaches it)."""
        ph = self.playhead_now()
        return sum((b.end - max(b.start, ph)) * 60.0 / b.tempo for b in self.sent_bars if b.end > ph and b.bar < bar)

    def change_bar(self) -> int:
        """The first made bar that starts at least CHANGE_MARGIN_S after the playhead (or the next to make)."""
        ph = self.playhead_now()
        margin = CHANGE_MARGIN_S * self.tempo_at(ph) / 60.0
        for b in self.sent_bars:
            if b.start >= ph + margin:
                return b.bar
        return self.sent_bars[-1].bar + 1 if self.sent_bars else 0

    # ---- sending -------------------------------------------------------------------------
    async def send(self, msg: dict) -> None:
        try:
            await asyncio.wait_for(self.ws.send_text(json.dumps(msg)), self.limits.send_timeout_s)
        except asyncio.TimeoutError:
            raise Closed(1011, f"the client took no message for {self.limits.send_timeout_s:g} s; stream dropped") from None

    async def error(self, reason: str) -> None:
        await self.send({"type": "error", "reason": reason})

    async def send_bar(self, bar) -> None:
        if bar.segment is not None:
            await self.send({"type": "segment", "bar": bar.bar, "beat": bar.start, "section": bar.section, **bar.segment})
        await self.send({"type": "notes", "bar": bar.bar, "start_beat": bar.start, "end_beat": bar.end,
                         "tempo": bar.tempo, "time_signature": bar.time_signature, "notes": bar.notes})

    # ---- the producer --------------------------------------------------------------------
    async def produce(self) -> None:
        await self.started.wait()
        while True:
            if self.pending_cut is not None:
                gap = self.last_restart + RESTART_GAP_S - time.monotonic()
                if gap > 0:
                    await asyncio.sleep(gap)       # later changes within the gap join this restart
                at, fresh = self.pending_cut, self.pending_fresh
                self.pending_cut, self.pending_fresh = None, False
                self.last_restart = time.monotonic()
                beat = await self.tracks.restart(self.sid, at, fresh, time.monotonic() + self.seconds_before(at))
                self.just_cut = True                 # the bar after a cut is due soon by design: no sign of strain
                self.sent_bars = [b for b in self.sent_bars if b.bar < at]
                await self.send({"type": "cut", "bar": at, "beat": beat})
            if (self.lead_bars() + 1 <= self.limits.lead_high_bars     # the new bar keeps the lead <= high
                    and self.lead_seconds() < self.limits.lead_high_s):
                lead = self.lead_seconds()
                first = not self.sent_bars           # a new stream's first bar waits behind those about to run dry
                settled = lead >= SETTLED_S and not self.just_cut   # a full lead: its bar coming due is strain
                bar = await self.tracks.bar(self.sid, time.monotonic() + (FIRST_BAR_S if first else lead), settled)
                self.just_cut = False
                if self.pending_cut is not None and bar.bar >= self.pending_cut:
                    continue                       # made under the old controls: dropped unsent
                self.sent_bars.append(bar)
                del self.sent_bars[:-RETAIN_BARS]
                await self.send_bar(bar)
                continue
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), 0.25)
            except asyncio.TimeoutError:
                pass

    # ---- messages ------------------------------------------------------------------------
    async def handle(self, msg) -> None:
        m = parse_message(msg)
        if isinstance(m, Stop):
            raise Closed(1000, "stopped by the client")
        if isinstance(m, Start):
            if self.started.is_set():
                raise ValueError("the stream has already started; send 'control' to change it")
            await self.tracks.open(self.sid, self.listener, m.changes(), m.seed)
            self.playhead, self.playhead_at = 0.0, time.monotonic()
            self.started.set()
            return
        if isinstance(m, Playhead):
            self.playhead, self.playhead_at = float(m.beat), time.monotonic()
            self.wake.set()
            return
        if not self.started.is_set():
            raise ValueError(f"send 'start' before '{m.type}'")
        if isinstance(m, Control):
            changes = m.changes()
            if not changes:
                raise ValueError("a control message names at least one of " + ", ".join(CONTROL_FIELDS))
            await self.tracks.set_controls(self.sid, changes)
            self._cut(fresh=False)
            return
        kind = m.type                   # like or skip
        controls = self.controls_heard()
        saved = await self.hub.run(self.hub.remember, self.listener, kind, controls)   # off the event loop
        if kind == "skip":
            self._cut(fresh=True)
        await self.send({"type": "liked" if kind == "like" else "skipped", "controls": controls, **saved})

    def _cut(self, fresh: bool) -> None:
        at = self.change_bar()
        self.pending_cut = at if self.pending_cut is None else min(at, self.pending_cut)
        self.pending_fresh = self.pending_fresh or fresh
        self.wake.set()

    def controls_heard(self) -> dict:
        """The segment controls in force at the playhead."""
        ph = self.playhead_now()
        seg = None
        for b in self.sent_bars:
            if b.start > ph:
                break
            if b.segment is not None:
                seg = b.segment["controls"]
        if seg is None and self.sent_bars and self.sent_bars[0].segment is not None:
            seg = self.sent_bars[0].segment["controls"]
        return {k: seg.get(k) for k in ("style", "valence", "energy", "tempo", "key")} if seg else {}

    async def receive(self) -> None:
        while True:
            try:
                raw = await asyncio.wait_for(self.ws.receive(), self.limits.stream_idle_s)
            except asyncio.TimeoutError:
                raise Closed(4408, f"no message for {self.limits.stream_idle_s:g} s; stream closed") from None
            if raw.get("type") == "websocket.disconnect":
                raise Closed(1000, "client left")
            text = raw.get("text")
            if text is None and raw.get("bytes") is not None:
                text = raw["bytes"].decode("utf-8", "replace")
            if text is None:
                continue
            if len(text.encode("utf-8", "replace")) > self.limits.message_bytes:
                raise Closed(1009, f"a message is at most {self.limits.message_bytes:,} bytes")
            now = time.monotonic()
            self.allowance = min(BURST, self.allowance + (now - self.allowance_at) * RATE)
            self.allowance_at = now
            if self.allowance < 1.0:
                raise Closed(1008, f"more than {RATE:g} messages a second; stream closed")
            self.allowance -= 1.0
            try:
                msg = json.loads(text)
            except ValueError:
                await self.error("not JSON: a message is a JSON object with a 'type'")
                continue
            try:
                await self.handle(msg)
            except (ValueError, TypeError, CadenzaError) as exc:
                await self.error(" ".join(str(exc).split()))

    async def run(self) -> tuple[int, str]:
        """Serve the socket until it ends; returns the close (code, reason)."""
        prod = asyncio.create_task(self.produce())
        recv = asyncio.create_task(self.receive())
        try:
            done, _ = await asyncio.wait({prod, recv}, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                exc = t.exception()
                if isinstance(exc, Closed):
                    return exc.code, exc.reason
                if exc is not None:
                    raise exc
            return 1000, "done"
        finally:
            for t in (prod, recv):
                t.cancel()
            for t in (prod, recv):
                try:
                    await t
                except BaseException:
                    pass
            self.tracks.forget(self.sid)
