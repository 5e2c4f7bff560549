"""Cadenza Studio benchmark: speed of the studio's answers, and what infilling's choice buys.

Speed (server side, on held-out melodies played note by note into a ``StudioSession``):

- predictions after a played note (median ms; target <= 100 ms);
- continue 4 bars (median s; target <= 1 s);
- infill 2 bars with K = 8 candidates (median s; target <= 3 s);
- the same three with 4 sessions working at once: 4 client threads whose requests run on a
  pool of 2 workers, as ``cadenza serve`` runs them (the times include waiting for a free
  worker); the targets are to hold there too.

Infilling (``--pieces`` held-out test pieces, default 30): bars 4-5 are removed and
refilled with K = 8 candidates under a scale lock in the piece's key. Figures: the chosen
fill's right-context bits/token (bars 6 on) against a random candidate's (the same 8, one
drawn at random: the baseline, measured in the same run), the original bars' for
reference, and the share of fill notes that keep the constraint.

    python benchmarks/studio.py                   # needs data/music21 (cadenza data music21)
    python benchmarks/studio.py --pieces 10 --quick

Writes benchmarks/results/studio[_quick].json and .png.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

from cadenza.bench.results import RESULTS, missing_test_split

TARGETS = {"predict_ms": 100.0, "continue_s": 1.0, "infill_s": 3.0}


def held_out(mm, data: str, n: int, seed: int = 0):
    """(session settings, notes) of ``n`` test pieces with at least 8 bars, first 12 bars."""
    from cadenza.music.eval.scoring import load_pieces, select_pieces

    codec = mm.codec
    pieces = load_pieces(data, "test")
    out = []
    for i in select_pieces(len(pieces), None):
        ids = [int(x) for x in pieces[i]]
        cond, _ = codec.parse_prefix(ids)
        if cond.get("style") not in codec.offered_styles():
            continue
        score = codec.decode(ids)
        tpq = score.ticks_per_quarter
        num, den = cond.get("time_signature", (4, 4))
        bar = num * 4 / den
        notes = [{"pitch": int(x.pitch), "start": x.time / tpq, "duration": max(x.duration / tpq, 1 / 8),
                  "velocity": int(x.velocity), "program": 0 if t.is_drum else int(t.program)}
                 for t in score.tracks for x in t.notes if x.time / tpq < 12 * bar]
        if not notes or max(n["start"] for n in notes) < 8 * bar:
            continue
        out.append(({"tempo": float(cond.get("tempo", 100)), "time_signature": f"{num}/{den}",
                     "key": cond.get("key", "C"), "style": cond.get("style")}, sorted(notes, key=lambda n: n["start"])))
    random.Random(seed).shuffle(out)
    return out[:n]


def speed_run(mm, pieces, notes_per_piece: int, results: dict, pool=None) -> None:
    """Play each piece note by note (timing the predictions), then time continue and infill.
    With ``pool`` every request runs on it, as ``cadenza serve`` runs them on its worker pool,
    and the time includes waiting for a free worker."""
    from cadenza.music.constraints import Constraints
    from cadenza.music.studio import StudioSession

    def timed(fn, *a, **kw):
        t = time.perf_counter()
        pool.submit(fn, *a, **kw).result() if pool is not None else fn(*a, **kw)
        return time.perf_counter() - t

    for settings, notes in pieces:
        s = StudioSession(mm, **settings)
        for n in notes[:notes_per_piece]:
            s.play([n])
            results["predict_ms"].append(timed(s.predictions) * 1000)
        results["continue_s"].append(timed(s.suggest, "continue", bars=4, seed=1))
        results["infill_s"].append(timed(s.suggest, "infill", from_bar=1, to_bar=3, k=8,
                                         constraints=Constraints(scale=settings["key"]), seed=1))


def infill_quality(mm, pieces, k: int, seed: int = 0) -> dict:
    from cadenza.music.constraints import Constraints, check
    from cadenza.music.infill import right_bits
    from cadenza.music.studio import StudioSession

    rng = random.Random(seed)
    chosen, rand, original, kept, total = [], [], [], 0, 0
    for settings, notes in pieces:
        s = StudioSession(mm, **settings)
        s.play(notes)
        c = Constraints(scale=settings["key"])
        sg = s.suggest("infill", from_bar=4, to_bar=6, k=k, constraints=c, seed=seed)
        bits = sg.info["right_bits_per_token"]
        chosen.append(bits[sg.info["chosen"]])
        rand.append(bits[rng.randrange(k)])
        a, b = 4 * s.bar_beats, 6 * s.bar_beats
        left = [n for n in s.notes.values() if n.start < a]
        inside = [n for n in s.notes.values() if a <= n.start < b]
        right = [n for n in s.notes.values() if n.start >= b]
        original.append(right_bits(s, left, inside, right, 6))
        total += len(sg.notes)
        kept += len(sg.notes) - len(check([n.to_dict() for n in sg.notes], c, s.remi.ppb))
    return {"pieces": len(pieces), "k": k, "chosen_bits": chosen, "random_bits": rand, "original_bits": original,
            "chosen_mean": statistics.mean(chosen), "random_mean": statistics.mean(rand),
            "original_mean": statistics.mean(original),
            "chosen_better_share": sum(c < r for c, r in zip(chosen, rand)) / len(chosen),
            "fill_notes": total, "constraint_kept_share": kept / total if total else 1.0}


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    names = ["predict_ms", "continue_s", "infill_s"]
    for j, (label, key) in enumerate((("1 session", "one"), ("4 sessions", "four"))):
        vals = [median(res[key][n]) / TARGETS[n] for n in names]
        ax[0].bar([i + 0.38 * j for i in range(3)], vals, width=0.36, label=label)
    ax[0].axhline(1.0, color="red", ls="--", label="target")
    ax[0].set_xticks([i + 0.19 for i in range(3)], ["predict", "continue 4 bars", "infill 2 bars K=8"])
    ax[0].set(title="median time / target (below 1: met)")
    ax[0].legend()
    q = res["infill"]
    ax[1].scatter(q["random_bits"], q["chosen_bits"], s=14)
    lo = min(q["random_bits"] + q["chosen_bits"])
    hi = max(q["random_bits"] + q["chosen_bits"])
    ax[1].plot([lo, hi], [lo, hi], color="grey", ls=":")
    ax[1].set(xlabel="random candidate: right-context bits/token", ylabel="chosen fill",
              title=f"infill over {q['pieces']} held-out pieces")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/music21")
    ap.add_argument("--model", default=None)
    ap.add_argument("--pieces", type=int, default=30)
    ap.add_argument("--speed-pieces", type=int, default=6)
    ap.add_argument("--notes", type=int, default=24, help="notes played per piece for the prediction timing")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    from cadenza.music.load import load_model

    torch.set_num_threads(1)
    mm = load_model(args.model)
    if why := missing_test_split(args.data):
        print(f"benchmarks/studio.py: error: {why}", file=sys.stderr)
        return 2
    pieces = held_out(mm, args.data, max(args.pieces, args.speed_pieces * 4))
    speed_pieces = pieces[:args.speed_pieces]
    warm = {"predict_ms": [], "continue_s": [], "infill_s": []}
    speed_run(mm, speed_pieces[:1], 4, warm)
    one = {"predict_ms": [], "continue_s": [], "infill_s": []}
    speed_run(mm, speed_pieces, args.notes, one)
    four = {"predict_ms": [], "continue_s": [], "infill_s": []}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:      # the server's default --workers 2
        threads = [threading.Thread(target=speed_run, args=(mm, pieces[i * args.speed_pieces:(i + 1) * args.speed_pieces],
                                                            args.notes, four, pool)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    quality = infill_quality(mm, pieces[:args.pieces], args.k)
    res = {"command": "python benchmarks/studio.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "model": mm.version, "one": one, "four": four, "infill": quality, "targets": TARGETS,
           "medians": {"one": {k: median(v) for k, v in one.items()}, "four": {k: median(v) for k, v in four.items()}},
           "note": "2-core CPU; 4 sessions = 4 client threads over a pool of 2 workers (the server's default), one torch thread each"}
    res["met"] = {f"{who}_{k}": res["medians"][who][k] <= TARGETS[k] for who in ("one", "four") for k in TARGETS}
    RESULTS.mkdir(exist_ok=True)
    name = "studio_quick" if args.quick else "studio"
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
    plot(res, RESULTS / f"{name}.png")
    for who, label in (("one", "1 session "), ("four", "4 sessions")):
        m = res["medians"][who]
        print(f"{label}: predict {m['predict_ms']:.0f} ms (target 100), continue 4 bars {m['continue_s']:.2f} s "
              f"(target 1), infill 2 bars K={args.k} {m['infill_s']:.2f} s (target 3)  "
              + ", ".join(f"{k}: {'met' if res['met'][f'{who}_{k}'] else 'NOT met'}" for k in TARGETS))
    q = quality
    print(f"infill over {q['pieces']} held-out pieces: right-context bits/token chosen {q['chosen_mean']:.3f} vs random "
          f"candidate {q['random_mean']:.3f} (original bars {q['original_mean']:.3f}); chosen better in "
          f"{q['chosen_better_share'] * 100:.0f}%; {q['constraint_kept_share'] * 100:.1f}% of {q['fill_notes']} fill "
          f"notes keep the scale lock")
    print(f"wrote {RESULTS / (name + '.json')} and .png")
    return 0
