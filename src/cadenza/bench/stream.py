"""Endless-soundtrack benchmark: a real `cadenza serve` process and WebSocket clients on loopback.

Four measurements, each against its target (issue 13):

1. first note: seconds from the ``start`` message to the first ``notes`` message, a new
   connection each time (median of ``--first-trials``; target <= 0.3 s);
2. control latency: a client plays in real time (reports its playhead every 0.1 s at the
   tempo of the bars it holds), moves the mood pad (energy 0.05 <-> 0.95), and measures the
   playback time from the message to the start of the first segment whose controls show the
   new energy (median; target <= 2 s);
3. load: ``--streams`` clients (default 16) playing in real time for ``--seconds`` (default
   60); every playhead report records the client's lead (seconds of music received but not
   yet played). None may be dropped, none may starve (lead > 0 throughout); prints lead
   min / median per client;
4. speed: 4 clients that always ask for more (their playhead is the end of what they hold,
   so the server makes bars as fast as it can); each stream's music seconds per wall second
   (target >= 5x real time each). The baseline is real time itself (1x).

    python benchmarks/stream.py                  # the full run (about 2.5 minutes)
    python benchmarks/stream.py --quick          # 4 streams for 10 s, fewer trials

Writes benchmarks/results/stream[_quick].json and .png. Run it on a quiet machine: the
server shares the CPU with the clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from cadenza.bench.results import RESULTS

TARGET_FIRST_S = 0.3
TARGET_CONTROL_S = 2.0
TARGET_SPEED = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, prefs: Path, streams: int) -> subprocess.Popen:
    import httpx

    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "cadenza.cli", "serve", "--port", str(port), "--prefs", str(prefs),
                             "--max-streams", str(max(16, streams))],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    t = time.monotonic()
    while time.monotonic() - t < 60:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start: " + (proc.stdout.read() if proc.stdout else ""))


class Player:
    """A client that plays what it receives in real time (or as fast as it can: ``greedy``)."""

    def __init__(self, url: str, start: dict, greedy: bool = False):
        self.url, self.start_msg, self.greedy = url, start, greedy
        self.bars: list[dict] = []
        self.segments: list[dict] = []
        self.leads: list[float] = []
        self.closed: str | None = None
        self.t0 = None
        self.first_notes_s = None
        self.playhead = 0.0

    def seconds_to_beats(self, seconds: float) -> float:
        """Advance the playhead by ``seconds`` of playback at the tempo of the bars held."""
        beat, left = self.playhead, seconds
        for b in self.bars:
            if b["end_beat"] <= beat:
                continue
            spb = 60.0 / b["tempo"]
            room = (b["end_beat"] - beat) * spb
            if left <= room:
                return beat + left / spb
            beat, left = b["end_beat"], left - room
        return beat            # nothing more to play: the playhead stops (a starving client)

    def lead_s(self) -> float:
        s = 0.0
        for b in self.bars:
            if b["end_beat"] > self.playhead:
                s += (b["end_beat"] - max(b["start_beat"], self.playhead)) * 60.0 / b["tempo"]
        return s

    def on_message(self, m: dict) -> None:
        if m["type"] == "notes":
            if self.first_notes_s is None:
                self.first_notes_s = time.perf_counter() - self.t0
            self.bars.append(m)
        elif m["type"] == "segment":
            self.segments.append(dict(m, received_at_beat=self.playhead))
        elif m["type"] == "cut":
            self.bars = [b for b in self.bars if b["start_beat"] < m["beat"] - 1e-9]

    async def play(self, ws, seconds: float, on_tick=None) -> None:
        last = time.perf_counter()
        end = last + seconds
        while time.perf_counter() < end:
            try:
                while True:
                    self.on_message(json.loads(await asyncio.wait_for(ws.recv(), 0.1)))
            except asyncio.TimeoutError:
                pass
            now = time.perf_counter()
            if self.bars:
                if self.greedy:
                    self.playhead = self.bars[-1]["end_beat"]
                else:
                    self.playhead = self.seconds_to_beats(now - last)
                    self.leads.append(self.lead_s())
            last = now
            await ws.send(json.dumps({"type": "playhead", "beat": self.playhead}))
            if on_tick is not None:
                await on_tick(self, ws, now)

    async def run(self, seconds: float, on_tick=None) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        try:
            async with connect(self.url, max_size=2**22) as ws:
                json.loads(await ws.recv())                       # ready
                self.t0 = time.perf_counter()
                await ws.send(json.dumps(self.start_msg))
                while self.first_notes_s is None:
                    self.on_message(json.loads(await ws.recv()))
                await self.play(ws, seconds, on_tick)
        except ConnectionClosed as exc:
            self.closed = f"{exc.rcvd.code if exc.rcvd else '?'} {exc.rcvd.reason if exc.rcvd else ''}"


async def first_note(url: str, trials: int) -> list[float]:
    out = []
    for i in range(trials):
        p = Player(url, {"type": "start", "seed": i})
        await p.run(0.0)
        out.append(p.first_notes_s)
    return out


async def control_latency(url: str, changes: int) -> list[float]:
    """Playback seconds from each pad move to the first segment with the new energy."""
    state = {"sent": [], "next_at": None, "level": 4}
    p = Player(url, {"type": "start", "seed": 11, "energy": 0.95, "tempo": 120, "time_signature": "4/4"})

    async def tick(player, ws, now):
        if state["next_at"] is None:
            state["next_at"] = now + 2.0
        if now >= state["next_at"] and len(state["sent"]) < changes:
            state["level"] = 0 if state["level"] == 4 else 4
            state["sent"].append((player.playhead, state["level"], len(player.segments)))
            await ws.send(json.dumps({"type": "control", "energy": 0.05 if state["level"] == 0 else 0.95}))
            state["next_at"] = now + 3.0

    await p.run(3.0 * changes + 4.0, tick)
    out = []
    for beat, level, seen in state["sent"]:
        seg = next((s for s in p.segments[seen:] if s["controls"]["energy_level"] == level), None)
        if seg is None:
            out.append(float("inf"))
            continue
        out.append((seg["beat"] - beat) * 60.0 / seg["controls"]["tempo"])
    return out


async def load(url: str, streams: int, seconds: float, greedy: bool) -> list[Player]:
    players = [Player(url, {"type": "start", "seed": 100 + i}, greedy=greedy) for i in range(streams)]
    await asyncio.gather(*(pl.run(seconds) for pl in players))
    return players


def music_seconds(p: Player) -> float:
    return sum((b["end_beat"] - b["start_beat"]) * 60.0 / b["tempo"] for b in p.bars)


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].bar(range(len(res["first_note_s"])), res["first_note_s"], color="#4c72b0")
    ax[0].axhline(TARGET_FIRST_S, color="red", ls="--", label="target")
    ax[0].set(title="first note after start (s)", xlabel="trial")
    ax[0].legend()
    leads = res["load"]["leads_s"]
    ax[1].boxplot(leads, showfliers=False)
    ax[1].set(title=f"lead per client, {res['load']['streams']} streams (s)", xlabel="client")
    sp = res["speed"]["x_real_time"]
    ax[2].bar(range(len(sp)), sp, color="#55a868")
    ax[2].axhline(TARGET_SPEED, color="red", ls="--", label="target")
    ax[2].set(title="4 greedy streams: x real time", xlabel="stream")
    ax[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--first-trials", type=int, default=10)
    ap.add_argument("--changes", type=int, default=10)
    ap.add_argument("--speed-seconds", type=float, default=20.0)
    ap.add_argument("--quick", action="store_true", help="4 streams for 10 s, 5 trials, 4 changes, 8 s of speed")
    args = ap.parse_args(argv)
    if args.quick:
        args.streams, args.seconds, args.first_trials, args.changes, args.speed_seconds = 4, 10.0, 5, 4, 8.0
    import tempfile

    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="cadenza-stream-bench-"))
    proc = start_server(port, tmp / "prefs.sqlite3", args.streams)
    url = f"ws://127.0.0.1:{port}/api/stream"
    try:
        first = asyncio.run(first_note(url, args.first_trials))
        ctrl = asyncio.run(control_latency(url, args.changes))
        players = asyncio.run(load(url, args.streams, args.seconds, greedy=False))
        fast = asyncio.run(load(url, 4, args.speed_seconds, greedy=True))
    finally:
        proc.terminate()
        proc.wait(10)
    leads = [pl.leads for pl in players]
    dropped = [pl.closed for pl in players if pl.closed]
    starving = sum(1 for ls in leads if ls and min(ls) <= 0)
    speed = [music_seconds(p) / args.speed_seconds for p in fast]
    res = {
        "command": "python benchmarks/stream.py" + (" --quick" if args.quick else ""),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared; server and clients "
                   f"on one machine)",
        "first_note_s": first, "first_note_median_s": statistics.median(first),
        "control_latency_s": ctrl, "control_latency_median_s": statistics.median(ctrl),
        "load": {"streams": args.streams, "seconds": args.seconds, "dropped": dropped, "starving": starving,
                 "lead_min_s": [round(min(ls), 3) for ls in leads if ls],
                 "lead_median_s": [round(statistics.median(ls), 3) for ls in leads if ls],
                 "leads_s": [[round(x, 3) for x in ls] for ls in leads]},
        "speed": {"streams": 4, "seconds": args.speed_seconds, "x_real_time": [round(s, 2) for s in speed]},
        "targets": {"first_note_s": TARGET_FIRST_S, "control_s": TARGET_CONTROL_S, "x_real_time": TARGET_SPEED},
    }
    res["met"] = {"first_note": res["first_note_median_s"] <= TARGET_FIRST_S,
                  "control": res["control_latency_median_s"] <= TARGET_CONTROL_S,
                  "load": not dropped and starving == 0,
                  "speed": min(speed) >= TARGET_SPEED}
    RESULTS.mkdir(exist_ok=True)
    name = "stream_quick" if args.quick else "stream"
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
    plot(res, RESULTS / f"{name}.png")
    allmin = min((min(ls) for ls in leads if ls), default=float("nan"))
    print(f"first note      median {res['first_note_median_s'] * 1000:.0f} ms (target <= {TARGET_FIRST_S * 1000:.0f})"
          f"  {'met' if res['met']['first_note'] else 'NOT met'}")
    print(f"control change  median {res['control_latency_median_s']:.2f} s of playback (target <= {TARGET_CONTROL_S:g})"
          f"  {'met' if res['met']['control'] else 'NOT met'}   all: {[round(x, 2) for x in ctrl]}")
    print(f"load            {args.streams} streams x {args.seconds:g} s: dropped {len(dropped)}, starving {starving}, "
          f"lead min {allmin:.2f} s, median of medians "
          f"{statistics.median(res['load']['lead_median_s']) if leads and all(leads) else float('nan'):.2f} s"
          f"  {'met' if res['met']['load'] else 'NOT met'}")
    print(f"speed           4 greedy streams: {', '.join(f'{s:.1f}x' for s in speed)} real time "
          f"(target >= {TARGET_SPEED:g}x each)  {'met' if res['met']['speed'] else 'NOT met'}")
    print(f"wrote {RESULTS / (name + '.json')} and .png")
    return 0
