"""``WS /api/studio/sessions/{sid}/live``: the studio's "Play along" (thin over
``cadenza.music.live``).

One socket per play-along take. The page's clock is ``performance.now()`` (milliseconds);
the server maps it onto its own monotonic clock once, from the ``start`` message (on
loopback the transit time is well under a millisecond), and runs a ``LiveEngine`` on it.

Protocol (JSON objects with a ``type``):

- client: ``start`` {now, role, density, count_in, scale, key, tempo, time_signature, lead_ms}
  (``now``: the page's clock when sent; the rest as ``LiveSettings``, each optional), ``on``
  {pitch, velocity, t}, ``off`` {pitch, t} (``t``: the event's time on the page's clock, e.g. a
  Web MIDI time stamp), ``stop``, ``keep`` (put the take into the piece: the person's notes and
  Cadenza's, with their authors, from the bar line after the piece) ;
- server: ``ready`` {origin (page clock ms of beat 0, null until the first note without a
  count-in), tempo, settings}, ``events`` {events: [{t, beat, pitch, velocity, on, role,
  decided, correction}], tempo} (``t`` and ``decided`` on the page's clock: every event is
  sent as soon as it is final, ``lead_ms`` or more before its time), ``stopped`` {notes},
  ``kept`` {ids, offset}, ``error`` {reason} (the socket stays open); close 1000 when done,
  4401 without the token, 4404 for an unknown session, 1009 for a message over 4 KB.

Model work runs on a thread of its own per socket (not the generation pool: a long
generation must not make a beat late).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from fastapi import WebSocket

from cadenza.errors import CadenzaError
from cadenza.server.errors import client_went_away

MESSAGE_BYTES = 4096
SETTINGS = ("role", "density", "count_in", "scale", "key", "tempo", "time_signature", "lead_ms")


class LiveSocket:
    def __init__(self, hub, ws, session):
        self.hub, self.ws, self.s = hub, ws, session
        self.engine = None
        self.offset = 0.0            # server clock (s) = page clock (ms) / 1000 + offset
        self.loop = asyncio.get_running_loop()
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cadenza-live")

    def page_ms(self, t: float) -> float:
        return (t - self.offset) * 1000.0

    def server_s(self, ms) -> float:
        return float(ms) / 1000.0 + self.offset

    async def work(self, fn, *args):
        return await self.loop.run_in_executor(self.pool, fn, *args)

    async def send(self, obj) -> None:
        await self.ws.send_text(json.dumps(obj))

    def wire(self, events) -> list[dict]:
        return [{"t": self.page_ms(e.time), "beat": e.beat, "pitch": e.pitch, "velocity": e.velocity, "on": e.on,
                 "role": e.role, "decided": self.page_ms(e.decided), "correction": e.correction} for e in events]

    async def emit(self, events) -> None:
        if events:
            await self.send({"type": "events", "events": self.wire(events), "tempo": self.engine.grid.tempo})

    async def run(self) -> tuple[int, str]:
        inbox: asyncio.Queue = asyncio.Queue()

        async def receive():
            try:
                while True:
                    text = await self.ws.receive_text()
                    await inbox.put(text)
            except Exception:
                await inbox.put(None)

        reader = asyncio.create_task(receive())
        try:
            while True:
                timeout = None
                if self.engine is not None:
                    dl = self.engine.next_deadline()
                    if dl is not None:
                        timeout = max(0.0, dl - time.monotonic())
                try:
                    text = await asyncio.wait_for(inbox.get(), timeout) if timeout is not None else await inbox.get()
                except asyncio.TimeoutError:
                    await self.emit(await self.work(self.engine.poll, time.monotonic()))
                    continue
                if text is None:
                    return 1000, "the page went away"
                if len(text) > MESSAGE_BYTES:
                    return 1009, f"a message over {MESSAGE_BYTES} bytes"
                done = await self.handle(text)
                if done:
                    return 1000, "done"
        finally:
            reader.cancel()
            if self.engine is not None and self.engine.started:
                self.engine.stop(time.monotonic())
            self.pool.shutdown(wait=False)

    async def handle(self, text: str) -> bool:
        from cadenza.music.live import LiveSettings, NoteOff, NoteOn
        from cadenza.music.live.engine import LiveEngine

        try:
            msg = json.loads(text)
            kind = msg.get("type") if isinstance(msg, dict) else None
        except ValueError:
            kind = None
        try:
            if kind == "start":
                self.offset = time.monotonic() - float(msg.get("now", 0.0)) / 1000.0
                opts = {k: msg[k] for k in SETTINGS if msg.get(k) is not None}
                opts.setdefault("key", self.s.key)
                opts.setdefault("tempo", self.s.tempo)
                opts.setdefault("time_signature", f"{self.s.ts[0]}/{self.s.ts[1]}")
                opts["style"] = self.s.style or "folk"
                settings = LiveSettings(**opts)
                self.engine = await self.work(lambda: LiveEngine(self.hub.mm, settings))
                clicks = await self.work(self.engine.start, time.monotonic())
                origin = self.page_ms(self.engine.grid.origin) if self.engine.grid.started else None
                await self.send({"type": "ready", "origin": origin, "tempo": settings.tempo,
                                 "settings": {k: getattr(settings, k) for k in SETTINGS}})
                await self.emit(clicks)
            elif kind in ("on", "off"):
                if self.engine is None:
                    raise CadenzaError("send start first")
                pitch, t = int(msg["pitch"]), self.server_s(msg.get("t", self.page_ms(time.monotonic())))
                if not 0 <= pitch <= 127:
                    raise CadenzaError(f"pitch must be from 0 to 127, not {pitch}")
                t = min(t, time.monotonic())                          # never from the future
                dl = self.engine.next_deadline()
                if dl is not None and dl <= time.monotonic():
                    await self.emit(await self.work(self.engine.poll, time.monotonic()))
                first = not self.engine.grid.started
                ev = NoteOn(t, pitch, int(msg.get("velocity", 80))) if kind == "on" else NoteOff(t, pitch)
                await self.work(self.engine.feed, ev)
                if first and self.engine.grid.started:
                    await self.send({"type": "ready", "origin": self.page_ms(self.engine.grid.origin),
                                     "tempo": self.engine.grid.tempo})
            elif kind == "stop":
                if self.engine is not None and self.engine.started:
                    await self.emit(self.engine.stop(time.monotonic()))
                await self.send({"type": "stopped", "notes": len(self.engine.take()) if self.engine else 0})
            elif kind == "keep":
                if self.engine is None:
                    raise CadenzaError("nothing to keep: play along first")
                if self.engine.started:
                    await self.emit(self.engine.stop(time.monotonic()))
                take = [n.to_dict() for n in self.engine.take()]
                if not take:
                    raise CadenzaError("nothing to keep: the take has no notes")

                def keep():
                    with self.s.lock:
                        end = max((n.start + n.duration for n in self.s.notes.values()), default=0.0)
                        bar = self.s.bar_beats
                        first = min(n["start"] for n in take)
                        pickup = -(-max(0.0, -first - 0.1) // bar) * bar        # bars before beat 0 (a pickup)
                        offset = -(-end // bar) * bar + pickup
                        return self.s.keep(take, offset=offset), offset

                ids, offset = await self.work(keep)
                await self.send({"type": "kept", "ids": ids, "offset": offset})
                return True
            else:
                raise CadenzaError(f"unknown message type {kind!r}; send start, on, off, stop or keep")
        except CadenzaError as exc:
            await self.send({"type": "error", "reason": " ".join(str(exc).split())})
        except (KeyError, TypeError, ValueError) as exc:
            await self.send({"type": "error", "reason": f"a malformed {kind or 'message'}: {exc}"})
        return False


async def play_along(ws: WebSocket, hub, sid: str) -> None:
    """One play-along socket on the studio session ``sid`` (the route: ``server/routes/studio.py``)."""
    await ws.accept()
    if not hub.carries_token(ws):
        await ws.close(4401, "play along needs the server's access token: connect with ?token=TOKEN")
        return
    hub.studio.expire()
    s = hub.studio.items.get(sid)
    if s is None:
        await ws.close(4404, "no such studio session (it expired, or never existed)")
        return
    s.touched = time.monotonic()
    code, reason = 1000, "done"
    try:
        code, reason = await LiveSocket(hub, ws, s).run()
    except Exception as exc:
        if not client_went_away(exc):
            logging.getLogger("cadenza.server").exception("play along failed")
            code, reason = 1011, "play along failed on the server (see its log)"
    s.touched = time.monotonic()
    try:
        await ws.close(code, reason[:120])
    except Exception:
        pass
