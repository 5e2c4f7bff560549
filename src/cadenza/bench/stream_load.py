"""The stream benchmark's load generator, a process of its own: ``--listeners`` WebSocket clients
that each play in real time for ``--seconds``, report their playhead every 0.25 s (as the
listening page does), move the mood pad every ``--change-every`` seconds and time when the
change is heard. Writes one JSON object to ``--out``: per listener its first-notes latency,
seconds run dry, smallest lead, mood-change latencies, close; and this process's own CPU use.

    python -m cadenza.bench.stream_load --url ws://127.0.0.1:8000/api/stream --listeners 64 --out load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import time

from cadenza.bench.stream import Player

REPORT_S = 0.25
HEAR_S = 6.0     # no pad move in the last seconds of a run (it could not be heard before the end)


class Listener(Player):
    """A Player that reports every 0.25 s, counts the playback it missed (ran dry) and moves
    the mood pad (energy 0.05 <-> 0.95) every ``change_every`` seconds from a random offset."""

    def __init__(self, url, start, change_every: float, rng: random.Random):
        super().__init__(url, start)
        self.dry_s = 0.0
        self.dry_at: list[float] = []     # seconds after the first notes when each dry spell began
        self.changes: list[tuple[float, int, int]] = []     # (playhead beat, energy level asked, segments seen)
        self.next_change = None
        self.change_every, self.rng = change_every, rng
        self.level = 4

    def advance(self, seconds: float) -> None:
        beat = self.seconds_to_beats(seconds)
        held = self.playhead_seconds_between(self.playhead, beat)
        if seconds - held > 1e-6:
            if not self.dry_at or self.dry_at[-1] < 0:
                self.dry_at.append(round(time.perf_counter() - self.t0 - self.first_notes_s, 2))
        elif self.dry_at and self.dry_at[-1] >= 0:
            self.dry_at.append(-1.0)
        self.dry_s += max(0.0, seconds - held)
        self.playhead = beat

    def playhead_seconds_between(self, a: float, b: float) -> float:
        s = 0.0
        for bar in self.bars:
            lo, hi = max(a, bar["start_beat"]), min(b, bar["end_beat"])
            if hi > lo:
                s += (hi - lo) * 60.0 / bar["tempo"]
        return s

    async def play(self, ws, seconds: float, on_tick=None) -> None:
        last = time.perf_counter()
        end = last + seconds
        self.next_change = last + self.rng.uniform(2.0, 2.0 + self.change_every)
        tick = last
        while True:
            tick += REPORT_S
            try:
                while (left := tick - time.perf_counter()) > 0:
                    self.on_message(json.loads(await asyncio.wait_for(ws.recv(), left)))
            except asyncio.TimeoutError:
                pass
            now = time.perf_counter()
            if now >= end:
                return
            self.advance(now - last)
            self.leads.append(self.lead_s())
            last = now
            await ws.send(json.dumps({"type": "playhead", "beat": self.playhead}))
            if self.change_every > 0 and now >= self.next_change and now < end - HEAR_S:
                self.level = 0 if self.level == 4 else 4
                self.changes.append((self.playhead, self.level, len(self.segments)))
                await ws.send(json.dumps({"type": "control", "energy": 0.05 if self.level == 0 else 0.95}))
                self.next_change = now + self.change_every

    def change_latencies(self) -> list[float]:
        """Playback seconds from each pad move to the start of the first segment with the new energy
        (the playhead must have got there: a change not heard by the end counts as not heard)."""
        out = []
        for beat, level, seen in self.changes:
            seg = next((s for s in self.segments[seen:] if s["controls"]["energy_level"] == level), None)
            if seg is not None and seg["beat"] <= self.playhead:
                out.append(self.playhead_seconds_between(beat, seg["beat"]))
            else:
                out.append(float("inf"))
        return out


async def run(url: str, listeners: int, seconds: float, ramp: float, change_every: float, seed: int) -> list[dict]:
    rng = random.Random(seed)
    people = [Listener(url, {"type": "start", "seed": 100 + i, "energy": 0.95}, change_every,
                       random.Random(rng.random())) for i in range(listeners)]

    async def one(i, p):
        await asyncio.sleep(ramp * i / max(1, listeners))
        await p.run(seconds)

    await asyncio.gather(*(one(i, p) for i, p in enumerate(people)))
    return [{"first_notes_s": p.first_notes_s, "dry_s": round(p.dry_s, 3), "dry_at_s": [x for x in p.dry_at if x >= 0],
             "lead_min_s": round(min(p.leads), 3) if p.leads else None,
             "changes_s": [round(x, 3) if x != float("inf") else None for x in p.change_latencies()],
             "closed": p.closed} for p in people]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--listeners", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--ramp", type=float, default=5.0, help="seconds over which the listeners join")
    ap.add_argument("--change-every", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    wall, cpu = time.perf_counter(), time.process_time()
    rows = asyncio.run(run(args.url, args.listeners, args.seconds, args.ramp, args.change_every, args.seed))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    ru = resource.getrusage(resource.RUSAGE_SELF)
    with open(args.out, "w") as fh:
        json.dump({"listeners": rows, "load_generator": {"cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
                                                        "cpu_share": round(cpu / wall, 3),
                                                        "max_rss_mb": round(ru.ru_maxrss / 1024, 1)}}, fh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
