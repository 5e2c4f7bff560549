"""Endless-soundtrack benchmark: a real `cadenza serve` process, and WebSocket clients on loopback
in another process (the load generator, ``cadenza.bench.stream_load``, which reports its own CPU
use).

1. first note, one stream alone: seconds from ``start`` to the first ``notes`` message, a new
   connection each time (median of ``--first-trials``; target <= 0.1 s);
2. control latency, one stream alone: the playback time from a mood-pad move to the first
   segment with the new energy (median; target <= 2 s);
3. load: ``--listeners`` clients (default 256, joining over ``--ramp`` s) play in real time for
   ``--seconds`` (default 60), report their playhead every 0.25 s and move the mood pad every
   30 s (from a random moment; none in a run's last 6 s). Targets: every one gets its first notes within 3 s; none runs dry (the playhead never
   passes the end of the music received); a mood change is heard within 2 s (median) and 3 s
   (95th percentile) of playback;
4. ``--find 64,128,...``: the same load at each count in turn (``--find-seconds`` each) until one
   has a listener run dry or refused: prints the most listeners carried with none running dry;
5. speed: 4 clients that always ask for more; each stream's music seconds per wall second.

    python benchmarks/stream.py                                   # 1-3 and 5 (about 2.5 minutes)
    python benchmarks/stream.py --find 128,192,256,320,384,448,512  # and the most listeners carried
    python benchmarks/stream.py --quick                           # 16 listeners for 15 s, fewer trials

Writes benchmarks/results/stream[_quick].json and .png. The server and the load generator share
the machine's cores: say so with any figure.
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

TARGET_FIRST_S = 0.1
TARGET_CONTROL_S = 2.0
TARGET_SPEED = 5.0
TARGET_LOAD_FIRST_S = 3.0
TARGET_HEARD_MEDIAN_S, TARGET_HEARD_P95_S = 2.0, 3.0
TARGET_LISTENERS = 256


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, prefs: Path, streams: int, processes: int | None = None) -> subprocess.Popen:
    import httpx

    env = dict(os.environ, OMP_NUM_THREADS="1")
    more = [] if processes is None else ["--stream-processes", str(processes)]
    proc = subprocess.Popen([sys.executable, "-m", "cadenza.cli", "serve", "--port", str(port), "--prefs", str(prefs),
                             "--max-streams", str(max(16, streams)), *more],
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
    steps = res["find"] or [res["load"]]
    ax[1].plot([r["listeners"] for r in steps], [r["ran_dry"] for r in steps], "o-", label="ran dry")
    ax[1].plot([r["listeners"] for r in steps], [r["heard_p95_s"] or 0 for r in steps], "s--", label="heard p95 (s)")
    ax[1].set(title="listeners carried", xlabel="listeners")
    ax[1].legend()
    sp = res["speed"]["x_real_time"]
    ax[2].bar(range(len(sp)), sp, color="#55a868")
    ax[2].axhline(TARGET_SPEED, color="red", ls="--", label="target")
    ax[2].set(title="4 greedy streams: x real time", xlabel="stream")
    ax[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live children so far (Linux /proc: the
    server and its stream engines)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        kids = [int(k) for t in Path(f"/proc/{pid}/task").iterdir()
                for k in (t / "children").read_text().split()]
    except OSError:          # it has just ended
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") + sum(cpu_seconds(k) for k in kids)


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))
    return xs[k]


def load_run(url: str, listeners: int, seconds: float, ramp: float, server_pid: int, tmp: Path) -> dict:
    """``listeners`` clients in the load-generator process; the summary of what they heard."""
    out = tmp / f"load_{listeners}.json"
    cpu0, t0 = cpu_seconds(server_pid), time.perf_counter()
    subprocess.run([sys.executable, "-m", "cadenza.bench.stream_load", "--url", url, "--listeners", str(listeners),
                    "--seconds", str(seconds), "--ramp", str(ramp), "--out", str(out)], check=True)
    server_cpu = (cpu_seconds(server_pid) - cpu0) / (time.perf_counter() - t0)
    raw = json.loads(out.read_text())
    rows = raw["listeners"]
    played = [r for r in rows if r["first_notes_s"] is not None and not (r["closed"] or "").startswith("1013")]
    first = [r["first_notes_s"] for r in played]
    heard = [x if x is not None else float("inf") for r in played for x in r["changes_s"]]
    return {"listeners": listeners, "seconds": seconds, "ramp_s": ramp,
            "refused": sum(1 for r in rows if (r["closed"] or "").startswith("1013")),
            "closed": [r["closed"] for r in rows if r["closed"]],
            "first_notes_max_s": round(max(first), 3) if first else None,
            "first_notes_median_s": round(statistics.median(first), 3) if first else None,
            "late_first_notes": sum(1 for x in first if x > TARGET_LOAD_FIRST_S),
            "ran_dry": sum(1 for r in played if r["dry_s"] > 0), "dry_s_max": max((r["dry_s"] for r in played), default=0),
            "lead_min_s": min((r["lead_min_s"] for r in played if r["lead_min_s"] is not None), default=None),
            "changes": len(heard), "not_heard": sum(1 for x in heard if x == float("inf")),
            "heard_median_s": round(statistics.median(heard), 3) if heard else None,
            "heard_p95_s": round(percentile(heard, 95), 3) if heard else None,
            "server_cpu_share": round(server_cpu, 3), "load_generator": raw["load_generator"]}


def engines_study(counts: list[int], tmp: Path, streams: int = 64, seconds: float = 15.0, rounds: int = 2) -> dict:
    """Seconds of music a second that ``streams`` greedy clients get from a server with each
    count of stream processes (0: a thread of the web process), the counts alternated ``rounds``
    times (a fresh server each)."""
    out: dict = {str(n): [] for n in counts}
    for _ in range(rounds):
        for n in counts:
            port = free_port()
            proc = start_server(port, tmp / f"prefs_{port}.sqlite3", streams, processes=n)
            try:
                players = asyncio.run(load(f"ws://127.0.0.1:{port}/api/stream", streams, seconds, greedy=True))
            finally:
                proc.terminate()
                proc.wait(10)
            out[str(n)].append(round(sum(music_seconds(p) for p in players) / seconds, 1))
            print(f"  {n} stream processes: {out[str(n)][-1]:.0f} s of music a second ({streams} greedy streams)",
                  flush=True)
    return out


def load_met(r: dict) -> bool:
    return (r["refused"] == 0 and not r["closed"] and r["ran_dry"] == 0
            and r["late_first_notes"] == 0 and r["heard_median_s"] is not None
            and r["heard_median_s"] <= TARGET_HEARD_MEDIAN_S and r["heard_p95_s"] <= TARGET_HEARD_P95_S)


def describe(r: dict) -> str:
    lg = r["load_generator"]
    return (f"{r['listeners']} listeners x {r['seconds']:g} s: refused {r['refused']}, ran dry {r['ran_dry']} "
            f"(most {r['dry_s_max']:.2f} s), first notes median {r['first_notes_median_s']} s / max "
            f"{r['first_notes_max_s']} s, mood change heard median {r['heard_median_s']} s / p95 {r['heard_p95_s']} s "
            f"({r['changes']} changes, {r['not_heard']} not heard), lead min {r['lead_min_s']} s; CPU: server and its engines "
            f"{r['server_cpu_share'] * 100:.0f}%, load generator {lg['cpu_share'] * 100:.0f}% of a core")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listeners", type=int, default=TARGET_LISTENERS)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--ramp", type=float, default=5.0, help="seconds over which the listeners join (default 5)")
    ap.add_argument("--find", default="", help="listener counts to step through, e.g. 128,192,256,320")
    ap.add_argument("--find-seconds", type=float, default=60.0)
    ap.add_argument("--first-trials", type=int, default=10)
    ap.add_argument("--changes", type=int, default=10)
    ap.add_argument("--speed-seconds", type=float, default=20.0)
    ap.add_argument("--engines", default="", help="stream process counts to compare with greedy streams "
                    "instead (e.g. 0,1,2; writes stream_engines.json)")
    ap.add_argument("--quick", action="store_true", help="16 listeners for 15 s, 5 trials, 4 changes, 8 s of speed")
    args = ap.parse_args(argv)
    if args.quick:
        args.listeners, args.seconds, args.first_trials, args.changes, args.speed_seconds = 16, 15.0, 5, 4, 8.0
    counts = [int(x) for x in args.find.split(",") if x.strip()]
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="cadenza-stream-bench-"))
    if args.engines:
        counts = [int(x) for x in args.engines.split(",") if x.strip()]
        study = {"command": f"python benchmarks/stream.py --engines {args.engines}", "greedy_streams": 64,
                 "seconds": 15.0, "music_seconds_per_second": engines_study(counts, tmp)}
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "stream_engines.json").write_text(json.dumps(study, indent=2) + "\n")
        print(f"wrote {RESULTS / 'stream_engines.json'}")
        return 0
    port = free_port()
    proc = start_server(port, tmp / "prefs.sqlite3", max([args.listeners] + counts))
    url = f"ws://127.0.0.1:{port}/api/stream"
    steps = []
    try:
        first = asyncio.run(first_note(url, args.first_trials))
        ctrl = asyncio.run(control_latency(url, args.changes))
        fast = asyncio.run(load(url, 4, args.speed_seconds, greedy=True))
        main_load = load_run(url, args.listeners, args.seconds, args.ramp, proc.pid, tmp)
        print(describe(main_load), flush=True)
        for n in counts:
            r = load_run(url, n, args.find_seconds, args.ramp, proc.pid, tmp)
            steps.append(r)
            print("  find: " + describe(r), flush=True)
            if r["ran_dry"] or r["refused"] or r["closed"]:
                break
    finally:
        proc.terminate()
        proc.wait(10)
    speed = [music_seconds(p) / args.speed_seconds for p in fast]
    carried = max((r["listeners"] for r in steps if not (r["ran_dry"] or r["refused"] or r["closed"])), default=None)
    cmd = "python benchmarks/stream.py" + (" --quick" if args.quick else "") + (f" --find {args.find}" if counts else "")
    res = {
        "command": cmd,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared: the server and "
                   f"the load generator on one machine)",
        "first_note_s": first, "first_note_median_s": statistics.median(first),
        "control_latency_s": ctrl, "control_latency_median_s": statistics.median(ctrl),
        "load": main_load, "find": steps, "most_listeners_carried": carried,
        "speed": {"streams": 4, "seconds": args.speed_seconds, "x_real_time": [round(s, 2) for s in speed]},
        "targets": {"first_note_s": TARGET_FIRST_S, "control_s": TARGET_CONTROL_S, "x_real_time": TARGET_SPEED,
                    "listeners": TARGET_LISTENERS, "load_first_notes_s": TARGET_LOAD_FIRST_S,
                    "heard_median_s": TARGET_HEARD_MEDIAN_S, "heard_p95_s": TARGET_HEARD_P95_S},
    }
    res["met"] = {"first_note": res["first_note_median_s"] <= TARGET_FIRST_S,
                  "control": res["control_latency_median_s"] <= TARGET_CONTROL_S,
                  "load": load_met(main_load) and args.listeners >= TARGET_LISTENERS,
                  "speed": min(speed) >= TARGET_SPEED}
    RESULTS.mkdir(exist_ok=True)
    name = "stream_quick" if args.quick else "stream"
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
    plot(res, RESULTS / f"{name}.png")
    print(f"first note      median {res['first_note_median_s'] * 1000:.0f} ms, one stream (target <= "
          f"{TARGET_FIRST_S * 1000:.0f})  {'met' if res['met']['first_note'] else 'NOT met'}")
    print(f"control change  median {res['control_latency_median_s']:.2f} s of playback, one stream (target <= "
          f"{TARGET_CONTROL_S:g})  {'met' if res['met']['control'] else 'NOT met'}   all: {[round(x, 2) for x in ctrl]}")
    print(f"load            {describe(main_load)}  {'met' if res['met']['load'] else 'NOT met'} (targets: "
          f"{TARGET_LISTENERS} listeners, none refused or dry, first notes <= {TARGET_LOAD_FIRST_S:g} s, heard median "
          f"<= {TARGET_HEARD_MEDIAN_S:g} s / p95 <= {TARGET_HEARD_P95_S:g} s)")
    if counts:
        print(f"most listeners carried with none running dry: {carried} (stepped {', '.join(str(r['listeners']) for r in steps)})")
    print(f"speed           4 greedy streams: {', '.join(f'{s:.1f}x' for s in speed)} real time "
          f"(target >= {TARGET_SPEED:g}x each)  {'met' if res['met']['speed'] else 'NOT met'}")
    print(f"wrote {RESULTS / (name + '.json')} and .png")
    return 0
