"""Playing timed events into a ``LiveEngine`` without hardware, as a real-time driver would.

``SimClock``: a clock for the engine that stands at an event's time while the engine works
on it and moves on by the real time the work takes, so a decision's cost shows in when it
is ready (the engine is single-threaded, as in ``cadenza live``). ``play`` feeds the player's
events and the engine's deadlines in time order and returns everything the engine sent.
``melody_events``: a list of (start, duration, pitch) in beats played at a tempo, with
optional human timing jitter.
"""

from __future__ import annotations

import random
import time

from cadenza.music.live.records import NoteOff, NoteOn, OutEvent


class SimClock:
    def __init__(self, start: float = 0.0):
        self.base = float(start)
        self.wall = time.perf_counter()

    def at(self, t: float) -> None:
        """The engine is handed something at ``t`` (never before where it already is)."""
        self.base = max(float(t), self())
        self.wall = time.perf_counter()

    def __call__(self) -> float:
        return self.base + (time.perf_counter() - self.wall)


def melody_events(notes, tempo: float, start: float = 1.0, jitter_s: float = 0.0, seed: int = 0,
                  legato: float = 0.95, velocity: int = 80) -> list:
    """``notes``: (start beat, duration in beats, pitch); NoteOn/NoteOff at ``tempo``, each onset
    moved by up to +-``jitter_s`` seconds (uniform), notes sounding ``legato`` of their length."""
    rng = random.Random(seed)
    spb = 60.0 / tempo
    out = []
    for b, d, p in notes:
        on = start + b * spb + (rng.uniform(-jitter_s, jitter_s) if jitter_s else 0.0)
        off = max(on + 0.02, start + (b + d * legato) * spb)
        out += [NoteOn(on, int(p), velocity), NoteOff(off, int(p))]
    return sorted(out, key=lambda e: (e.time, isinstance(e, NoteOn)))


def play(engine, events, clock: SimClock, start: float | None = None, tail_beats: float = 2.0) -> list[OutEvent]:
    """Feed ``events`` (time order) and poll at every deadline; afterwards run the clock
    ``tail_beats`` on and stop. Returns the events the engine sent (count-in clicks included)."""
    out: list[OutEvent] = []
    events = sorted(events, key=lambda e: e.time)
    t0 = events[0].time if events else 0.0
    clock.at(start if start is not None else t0)
    out += engine.start(clock())
    end = (events[-1].time if events else t0) + tail_beats * engine.grid.period
    i = 0
    while True:
        dl = engine.next_deadline()
        nxt = events[i].time if i < len(events) else None
        if nxt is not None and (dl is None or nxt < dl):
            clock.at(nxt)
            engine.feed(events[i])
            i += 1
        elif dl is not None and (dl <= end or nxt is not None):
            clock.at(dl)
            out += engine.poll(clock())
        else:
            break
    clock.at(end)
    out += engine.stop(clock())
    return out


def play_realtime(engine, events, start: float, tail_beats: float = 2.0) -> list[OutEvent]:
    """Like ``play`` but on the real clock (``time.monotonic``; the engine's clock must be it):
    sleeps until each event or deadline, as ``cadenza live`` does. ``events`` are relative to
    ``start`` (a ``time.monotonic()`` value)."""
    out: list[OutEvent] = []
    events = sorted((type(e)(e.time + start, *[getattr(e, f) for f in e.__dataclass_fields__ if f != "time"])
                     for e in events), key=lambda e: e.time)
    out += engine.start(time.monotonic())
    end = (events[-1].time if events else start) + tail_beats * engine.grid.period
    i = 0
    while True:
        dl = engine.next_deadline()
        nxt = events[i].time if i < len(events) else None
        if nxt is None and (dl is None or dl > end):
            break
        wake = min(x for x in (dl, nxt) if x is not None)
        pause = wake - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        if nxt is not None and (dl is None or nxt < dl):
            engine.feed(events[i])
            i += 1
        else:
            out += engine.poll(time.monotonic())
    out += engine.stop(time.monotonic())
    return out
