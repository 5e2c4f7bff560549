"""Play along (issue 26): the live engine on held-out melodies played in as timed events.

Each melody (the top line of the first instrument of a test piece in 2/4, 3/4 or 4/4, its
first ``--bars`` bars, at the piece's tempo clamped to 60-180 bpm) is played into a
``LiveEngine`` as note-on/note-off events with every onset moved by up to +-``--jitter-ms``
(uniform), on a simulated clock that advances by the real time each decision takes
(``live.simulate``). The engine knows the starting tempo (as after a count-in) and the
piece's key, follows the tempo, and plays each role in ``--roles``.

- **Timing.** From a player's note-on to the engine's decision for the next beat: median and
  99th percentile (target <= 30 ms and <= 80 ms). How far ahead of its time each
  accompaniment event was made final (the lead; never late), and beats dropped because
  their decision came too late.
- **Fit.** The share of accompaniment notes consonant with the player's notes sounding at
  their onset (``live.consonance``: unison, thirds, fifths, sixths, octaves; fourths not
  against the bass; a player's note starting within 30 ms after the onset counts), against
  three baselines on the same melodies: the offline ``harmonize`` (3 voices, knowing the
  whole melody), random diatonic triads on every beat (close position, root at 48-59), and
  the engine itself with the model's prediction replaced by "the player's last note again"
  (what the prediction buys). Target: live >= 85% and within 5 points of ``harmonize``.
- **Anticipation.** Of the beats where the player starts a note and the accompaniment plays,
  the share whose decision was final before the player's note and was consonant with it.
- **Tempo range.** The chords role with every melody at 60, 120 and 180 bpm: no event late.
- **Load** (``--load``): 4 sessions at once in real time (threads, one process, as a server
  holds them), beside a thread asking a studio session for predictions without pause.

    python benchmarks/play_along.py --data data/music21          # held-out test split
    python benchmarks/play_along.py --data data/music21 --pieces 6 --quick

Writes benchmarks/results/play_along[_quick].json and .png.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

from cadenza.bench.machine import machine
from cadenza.bench.play_along_load import pct
from cadenza.bench.results import RESULTS, exit_code, finite, missing_test_split, run_header, write_json_and_plot
from cadenza.errors import DataError

TARGETS = {"decision_median_ms": 30.0, "decision_p99_ms": 80.0, "consonant_share": 0.85, "vs_harmonize_points": 5.0}
TOL_S = 0.03
COUNT_IN = 2          # beats of count-in: the grid (and a pickup's place in the bar) is known from the start


def held_out_melodies(mm, data: str, n: int, bars: int, seed: int = 0) -> list[dict]:
    """``n`` test pieces' melodies: {notes: [(start beat, beats, pitch)], tempo, key, metre, style}."""
    from cadenza.music.eval.scoring import load_pieces

    codec = mm.codec
    if why := missing_test_split(data):
        raise DataError(why)
    pieces = load_pieces(data, "test")
    order = list(range(len(pieces)))
    random.Random(seed).shuffle(order)
    out = []
    for i in order:
        ids = [int(x) for x in pieces[i]]
        cond, _ = codec.parse_prefix(ids)
        num, den = cond.get("time_signature", (4, 4))
        if den != 4 or num not in (2, 3, 4) or cond.get("style") not in codec.offered_styles():
            continue
        score = codec.decode(ids)
        tracks = [t for t in score.tracks if not t.is_drum and len(t.notes)]
        if not tracks:
            continue
        tpq = score.ticks_per_quarter
        top: dict[int, tuple] = {}
        for x in tracks[0].notes:
            if x.time < bars * num * tpq and (x.time not in top or x.pitch > top[x.time][1]):
                top[x.time] = (x.duration, int(x.pitch))
        times = sorted(top)
        if len(times) < 4 * bars // 2 or times[-1] < (bars - 1) * num * tpq:
            continue
        notes = []
        for k, t in enumerate(times):
            d = top[t][0]
            if k + 1 < len(times):
                d = min(d, times[k + 1] - t)           # one line: a note ends where the next starts
            notes.append((t / tpq, max(d, tpq // 4) / tpq, top[t][1]))
        tempo = min(180.0, max(60.0, float(cond.get("tempo", 100))))
        out.append({"index": i, "notes": notes, "tempo": tempo, "key": cond.get("key", "C"),
                    "metre": f"{num}/{den}", "style": cond.get("style")})
        if len(out) >= n:
            break
    if not out:
        raise DataError(f"no test piece in {data} has a melody of {bars} bars in 2/4, 3/4 or 4/4")
    return out


def _sounds_from_events(events) -> list:
    from cadenza.music.live.consonance import Sound

    open_, out = {}, []
    for e in sorted(events, key=lambda e: (e.time, e.on)):
        if e.on:
            open_[e.pitch] = e.time
        elif e.pitch in open_:
            out.append(Sound(e.pitch, open_.pop(e.pitch), e.time))
    return out


def _player_sounds(events) -> list:
    from cadenza.music.live import NoteOn
    from cadenza.music.live.consonance import Sound

    open_, out = {}, []
    for e in sorted(events, key=lambda e: e.time):
        if isinstance(e, NoteOn):
            open_[e.pitch] = e.time
        elif e.pitch in open_:
            out.append(Sound(e.pitch, open_.pop(e.pitch), e.time))
    return out


def anticipation(engine_events, player_events) -> tuple[int, int, int]:
    """(beats where the player starts a note and the accompaniment plays, of those decided before
    the player's note, of those also consonant with it)."""
    from cadenza.music.live import NoteOn
    from cadenza.music.live.consonance import consonant_with_all

    ons = [e for e in player_events if isinstance(e, NoteOn)]
    by_time: dict[float, list] = {}
    for e in engine_events:
        if e.on:
            by_time.setdefault(e.time, []).append(e)
    both = early = good = 0
    for t, acc in by_time.items():
        mine = [p for p in ons if abs(p.time - t) <= TOL_S]
        if not mine:
            continue
        both += 1
        if max(a.decided for a in acc) < min(p.time for p in mine):
            early += 1
            pitches = tuple(p.pitch for p in mine)
            bass = min(list(pitches) + [a.pitch for a in acc])
            good += all(consonant_with_all(a.pitch, pitches, bass) for a in acc)
    return both, early, good


def live_run(mm, mel: dict, role: str, jitter_ms: float, seed: int, predict=None) -> dict:
    from cadenza.music.live import LiveSettings
    from cadenza.music.live.consonance import consonance_share
    from cadenza.music.live.engine import COUNT_IN_DELAY_S, LiveEngine
    from cadenza.music.live.simulate import SimClock, melody_events, play

    clock = SimClock()
    engine = LiveEngine(mm, LiveSettings(role=role, tempo=mel["tempo"], key=mel["key"], time_signature=mel["metre"],
                                         style=mel["style"], seed=seed, count_in=COUNT_IN), clock=clock)
    if predict is not None:
        predict(engine)
    first = max(engine.lead, COUNT_IN_DELAY_S) + COUNT_IN * 60.0 / mel["tempo"]   # the downbeat after the count-in
    events = melody_events(mel["notes"], mel["tempo"], start=first, jitter_s=jitter_ms / 1000, seed=seed)
    play(engine, events, clock, start=0.0)
    cons = consonance_share(_sounds_from_events(engine.events), _player_sounds(events), TOL_S)
    both, early, good = anticipation(engine.events, events)
    return {"decision_ms": [d.elapsed_s * 1000 for d in engine.decisions if d.cause == "note_on"],
            "beat_decision_ms": [d.elapsed_s * 1000 for d in engine.decisions if d.cause != "note_on"],
            "lead_ms": [e.lead * 1000 for e in engine.events], "missed": engine.missed,
            "late": sum(1 for e in engine.events if e.lead <= 0), "corrections": engine.corrections,
            "consonance": cons.to_dict(), "anticipation": {"beats": both, "decided_before": early, "consonant": good},
            "tempo_error": engine.grid.tempo / mel["tempo"] - 1}


def last_note_prediction(engine) -> None:
    """The ablation: the player's last note again, instead of the model's prediction."""
    line = engine.listener.line
    engine.listener.pitches_at = lambda tick: ({line[-1]: 1.0} if line else {}) if tick > engine.listener.onset else {}


def harmonize_run(mm, mel: dict, seed: int) -> dict:
    import symusic

    from cadenza.music.harmony import harmonize
    from cadenza.music.live.consonance import Sound, consonance_share

    tpq = 480
    s = symusic.Score(tpq)
    s.tempos.append(symusic.Tempo(0, qpm=mel["tempo"]))
    num, den = (int(x) for x in mel["metre"].split("/"))
    s.time_signatures.append(symusic.TimeSignature(0, num, den))
    tr = symusic.Track(name="melody", program=0)
    for b, d, p in mel["notes"]:
        tr.notes.append(symusic.Note(round(b * tpq), max(1, round(d * tpq)), p, 80))
    s.tracks.append(tr)
    piece = harmonize(mm, s, voices=3, style="bach", seed=seed)
    out = piece.score()
    otpq = out.ticks_per_quarter
    kept = {piece.kept_label or "input", "input"}
    acc = [Sound(int(n.pitch), n.time / otpq, (n.time + n.duration) / otpq)
           for t in out.tracks if t.name not in kept for n in t.notes]
    player = [Sound(p, b, b + d) for b, d, p in mel["notes"]]
    return {"consonance": consonance_share(acc, player, 1e-6).to_dict(), "elapsed_s": piece.elapsed_s}


def random_run(mel: dict, seed: int) -> dict:
    from cadenza.codecs.music import parse_key
    from cadenza.music.live.consonance import Sound, consonance_share
    from cadenza.music.live.harmony import key_chords

    rng = random.Random(seed)
    tonic, mode = parse_key(mel["key"])
    chords = key_chords(tonic, mode)[:7 if mode == "major" else 8]        # the diatonic triads
    if mode == "minor":
        chords = [c for c in chords if c.name != "v"]
    end = max(b + d for b, d, _ in mel["notes"])
    acc = []
    for beat in range(1, int(end)):
        c = rng.choice(chords)
        root = 48 + (c.root - 48) % 12
        for i, pc in enumerate(c.pcs):
            p = root + (pc - c.root) % 12
            acc.append(Sound(p, beat, beat + 1))
    player = [Sound(p, b, b + d) for b, d, p in mel["notes"]]
    return {"consonance": consonance_share(acc, player, 1e-6).to_dict()}


def share(rows) -> float:
    c = sum(r["consonance"]["consonant"] for r in rows)
    n = sum(r["consonance"]["checked"] for r in rows)
    return c / n if n else float("nan")


def summarize(live: dict, baselines: dict) -> dict:
    out = {}
    for role, rows in live.items():
        dec = [x for r in rows for x in r["decision_ms"]]
        lead = [x for r in rows for x in r["lead_ms"]]
        ant = [r["anticipation"] for r in rows]
        beats = sum(a["beats"] for a in ant)
        out[role] = {"decision_median_ms": statistics.median(dec), "decision_p99_ms": pct(dec, 99),
                     "decision_max_ms": max(dec), "decisions": len(dec),
                     "beat_decision_p99_ms": pct([x for r in rows for x in r["beat_decision_ms"]], 99),
                     "min_lead_ms": min(lead), "median_lead_ms": statistics.median(lead), "events": len(lead),
                     "late": sum(r["late"] for r in rows), "missed_beats": sum(r["missed"] for r in rows),
                     "corrections": sum(r["corrections"] for r in rows),
                     "consonant_share": share(rows),
                     "checked_notes": sum(r["consonance"]["checked"] for r in rows),
                     "anticipated_share": sum(a["consonant"] for a in ant) / beats if beats else float("nan"),
                     "decided_before_share": sum(a["decided_before"] for a in ant) / beats if beats else float("nan"),
                     "max_tempo_error": max(abs(r["tempo_error"]) for r in rows)}
    for name, rows in baselines.items():
        out[name] = {"consonant_share": share(rows), "checked_notes": sum(r["consonance"]["checked"] for r in rows)}
    return out


def plot(res: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = res["summary"]
    roles = [r for r in res["roles"] if r in s]
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    for role in roles:
        xs = sorted(x for r in res["live"][role] for x in r["decision_ms"])
        ax[0].plot(xs, [i / len(xs) for i in range(len(xs))], label=role)
    ax[0].axvline(TARGETS["decision_median_ms"], color="grey", ls=":", label="median target")
    ax[0].axvline(TARGETS["decision_p99_ms"], color="red", ls="--", label="p99 target")
    ax[0].set(xscale="log", xlabel="ms from a note-on to the next beat's decision", ylabel="share",
              title="decision time (CDF)")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax[0].xaxis.set_major_formatter(ScalarFormatter())
    ax[0].xaxis.set_minor_formatter(NullFormatter())
    ax[0].legend(fontsize=8)
    names = roles + [n for n in ("live, last note as prediction", "harmonize (offline)", "random diatonic")
                     if n in s]
    vals = [s[n]["consonant_share"] * 100 for n in names]
    ax[1].bar(range(len(names)), vals, color=["C0"] * len(roles) + ["C7", "C2", "C3"][:len(names) - len(roles)])
    ax[1].axhline(85, color="red", ls="--", label="target 85%")
    short = {"live, last note as prediction": "live, last\nnote as\nprediction", "harmonize (offline)": "harmonize\n(offline)",
             "random diatonic": "random\ndiatonic"}
    ax[1].set_xticks(range(len(names)), [short.get(n, n) for n in names], fontsize=7)
    ax[1].set(ylabel="% consonant with the player", ylim=(0, 100), title="fit")
    ax[1].legend(fontsize=8)
    for role in roles:
        xs = [x for r in res["live"][role] for x in r["lead_ms"]]
        ax[2].hist(xs, bins=40, histtype="step", label=role)
    ax[2].axvline(0, color="red", ls="--", label="late")
    ax[2].set(xlabel="ms an event was final before its time (lead)", ylabel="events", title="schedule lead")
    ax[2].legend(fontsize=8)
    fig.suptitle(f"play along: {res['pieces']} held-out melodies, {res['bars']} bars, +-{res['jitter_ms']:g} ms; "
                 f"{res['machine']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args) -> int:
    from cadenza.music.load import load_model

    torch.set_num_threads(1)
    mm = load_model(args.model)
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    mels = held_out_melodies(mm, args.data, args.pieces, args.bars, args.seed)
    t0 = time.perf_counter()
    live_run(mm, mels[0], roles[0], args.jitter_ms, 0)              # warm-up, not counted
    live = {role: [live_run(mm, m, role, args.jitter_ms, args.seed + k) for k, m in enumerate(mels)]
            for role in roles}
    baselines = {"live, last note as prediction": [live_run(mm, m, "chords", args.jitter_ms, args.seed + k,
                                                            last_note_prediction) for k, m in enumerate(mels)],
                 "random diatonic": [random_run(m, args.seed + k) for k, m in enumerate(mels)]}
    if not args.no_harmonize:
        baselines["harmonize (offline)"] = [harmonize_run(mm, m, args.seed + k) for k, m in enumerate(mels)]
    sweep = {}
    for bpm in (60.0, 120.0, 180.0):          # the schedule at the ends of the range: every melody at one tempo
        rows = [live_run(mm, {**m, "tempo": bpm}, "chords", args.jitter_ms, args.seed + k) for k, m in enumerate(mels)]
        lead = [x for r in rows for x in r["lead_ms"]]
        dec = [x for r in rows for x in r["decision_ms"]]
        sweep[f"{bpm:g}"] = {"min_lead_ms": min(lead), "late": sum(r["late"] for r in rows),
                             "missed_beats": sum(r["missed"] for r in rows), "events": len(lead),
                             "decision_median_ms": statistics.median(dec), "decision_p99_ms": pct(dec, 99),
                             "consonant_share": share(rows)}
    summary = summarize(live, baselines)
    from cadenza.bench.play_along_load import load_run

    load = load_run(mm, mels, "chords", args.sessions, min(args.bars, 8)) if args.load else None
    res = {**run_header("play_along"), "machine": machine(), "model": mm.version, "data": args.data,
           "pieces": len(mels), "bars": args.bars, "jitter_ms": args.jitter_ms, "roles": roles,
           "tempos": [m["tempo"] for m in mels], "targets": TARGETS, "summary": summary, "tempo_sweep": sweep,
           "load": load,
           "live": live, "baselines": baselines, "elapsed_s": time.perf_counter() - t0,
           "note": "simulated clock that advances by each decision's real time; one torch thread"}
    h = summary.get("harmonize (offline)", {}).get("consonant_share", float("nan"))
    met = {}
    for role in roles:
        r = summary[role]
        met[role] = {"decision_median": r["decision_median_ms"] <= TARGETS["decision_median_ms"],
                     "decision_p99": r["decision_p99_ms"] <= TARGETS["decision_p99_ms"],
                     "never_late": r["late"] == 0,
                     "consonant_85": r["consonant_share"] >= TARGETS["consonant_share"],
                     "within_5_of_harmonize": None if h != h else (h - r["consonant_share"]) * 100 <= TARGETS[
                         "vs_harmonize_points"]}
    res["met"] = met
    name = args.out or str(RESULTS / ("play_along_quick" if args.quick else "play_along"))
    json_path, png_path = write_json_and_plot(str(Path(name).parent), Path(name).name, finite(res),
                                              lambda p: plot(res, p))
    print(f"play along: {len(mels)} held-out melodies from {args.data}, {args.bars} bars, onsets +-{args.jitter_ms:g} ms, "
          f"tempos {min(res['tempos']):g}-{max(res['tempos']):g} bpm; {machine()}")
    rows = [("", "decision median", "p99", "min lead", "late", "missed", "consonant", "anticipated", "corrections")]
    for role in roles:
        r = summary[role]
        rows.append((role, f"{r['decision_median_ms']:.1f} ms", f"{r['decision_p99_ms']:.1f} ms",
                     f"{r['min_lead_ms']:.0f} ms", str(r["late"]), str(r["missed_beats"]),
                     f"{100 * r['consonant_share']:.1f}%", f"{100 * r['anticipated_share']:.1f}%",
                     str(r["corrections"])))
    for n, r in summary.items():
        if n not in roles:
            rows.append((n, "", "", "", "", "", f"{100 * r['consonant_share']:.1f}%", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    print(f"targets: decision <= 30 ms median, <= 80 ms p99; never late; consonant >= 85% and within 5 points of "
          f"harmonize ({100 * h:.1f}%)")
    for role, m in met.items():
        print(f"  {role}: " + ", ".join(f"{k} {'n/a' if v is None else 'met' if v else 'NOT met'}" for k, v in m.items()))
    print("chords at one tempo for every melody: " + "; ".join(
        f"{bpm} bpm: min lead {r['min_lead_ms']:.0f} ms, late {r['late']}, missed {r['missed_beats']}, "
        f"decision p99 {r['decision_p99_ms']:.1f} ms, consonant {100 * r['consonant_share']:.1f}%"
        for bpm, r in sweep.items()))
    if load:
        print(f"load: {load['sessions']} sessions at once in real time beside studio predictions "
              f"({load['other_predictions']} of them): decision median {load['decision_median_ms']:.1f} ms, "
              f"p99 {load['decision_p99_ms']:.1f} ms, min lead {load['min_lead_ms']:.0f} ms, late {load['late']}, "
              f"missed beats {load['missed']}")
    print(f"wrote {json_path} and {png_path}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/music21", help="a music dataset with a test split (default data/music21)")
    ap.add_argument("--model", default=None, help="music model directory (default: the installed default model)")
    ap.add_argument("--pieces", type=int, default=20)
    ap.add_argument("--bars", type=int, default=8)
    ap.add_argument("--roles", default="chords,bass,counter")
    ap.add_argument("--jitter-ms", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--load", action="store_true", help="also run sessions at once in real time (about 20 s)")
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--no-harmonize", action="store_true", help="skip the offline harmonize baseline")
    ap.add_argument("--quick", action="store_true", help="write play_along_quick.json instead")
    ap.add_argument("--out", default=None, help="OUT (writes OUT.json and OUT.png)")
    args = ap.parse_args(argv)
    return exit_code(run, args)


if __name__ == "__main__":
    sys.exit(main())
