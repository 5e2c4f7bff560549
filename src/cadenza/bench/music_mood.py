"""Mood decides the mode (issue 22): is "sad" minor and "happy" major, judged from the notes?

Over ``--seeds`` seeds, with the key left to the model, pieces of ``--bars`` bars composed as
``cadenza compose`` does by default (int8 decoding, top-p 0.95, an ending):

- ``--mood sad`` vs ``--mood happy``: the share of pieces whose written notes music21's key
  analysis (``analyze("key")``, Krumhansl-Schmuckler on duration-weighted pitch classes)
  calls minor;
- a valence switch at bar 9 (``--valence 0.9,0.1@9`` and ``0.1,0.9@9``): the share whose bars
  9-16 are in the new mode;
- energy switches (``--energy 0.1,0.9@9`` and back): notes per bar in bars 9-16 over bars 1-8.

Targets: sad minor in >= 80% of seeds, happy in <= 20%; after a valence switch bars 9-16 in
the new mode in >= 60% of seeds each way; energy switches >= 1.5x both ways.

    python benchmarks/music_mood.py --seeds 20

Prints the table; writes OUT.json (every piece: key token, analysed keys) and OUT.png.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from cadenza.bench.results import RESULTS, exit_code, finite, run_header, write_json_and_plot
from cadenza.errors import ConfigError

CASES = {
    "sad": {"mood": "sad"},
    "happy": {"mood": "happy"},
    "valence up": {"valence": "0.1,0.9@9"},
    "valence down": {"valence": "0.9,0.1@9"},
    "energy up": {"energy": "0.1,0.9@9"},
    "energy down": {"energy": "0.9,0.1@9"},
}


def analysed_key(score, bars=None) -> tuple[str, str] | None:
    """(tonic name, mode) music21 finds in the notes of ``bars`` (1-based, inclusive), or None."""
    from music21 import note, stream

    from cadenza.music.eval.control_measures import notes_of

    n = notes_of(score)
    sel = n.in_bars(bars)
    if not sel.any():
        return None
    tpq = score.ticks_per_quarter
    s = stream.Stream()
    for on, end, p in zip(n.onset[sel], n.end[sel], n.pitch[sel]):
        x = note.Note(int(p))
        x.quarterLength = max(0.25, (int(end) - int(on)) / tpq)
        s.insert(float(on) / tpq, x)
    k = s.analyze("key")
    return k.tonic.name, k.mode


def run_cases(mm, seeds: int, bars: int, progress: bool = True) -> dict:
    from tqdm import tqdm

    from cadenza.music.eval.control_measures import notes_per_bar
    from cadenza.music.composition import compose

    half = bars // 2
    rows = {name: [] for name in CASES}
    jobs = [(name, seed) for name in CASES for seed in range(1, seeds + 1)]
    for name, seed in tqdm(jobs, desc="compose", disable=not progress, leave=False):
        piece = compose(mm, bars=bars, seed=seed, **CASES[name])
        score = piece.score()
        row = {"seed": seed, "key_token": piece.conditioning.get("key"), "stopped": piece.stopped,
               "bars": piece.bars}
        if name in ("sad", "happy"):
            row["analysed"] = analysed_key(score)
        elif name.startswith("valence"):
            row["analysed_first"] = analysed_key(score, (1, half))
            row["analysed_second"] = analysed_key(score, (half + 1, bars))
        else:
            row["notes_per_bar_first"] = notes_per_bar(piece, (1, half))
            row["notes_per_bar_second"] = notes_per_bar(piece, (half + 1, bars))
        rows[name].append(row)
    return rows


def _share(rows, key, mode) -> float:
    got = [r[key] for r in rows if r.get(key)]
    return sum(k[1] == mode for k in got) / len(got) if got else float("nan")


def summary(rows: dict) -> dict:
    def ratio(r):
        a = np.mean([x["notes_per_bar_second"] or 0 for x in r])
        b = np.mean([x["notes_per_bar_first"] or 0 for x in r])
        return float(a / b) if b else float("nan")

    return {
        "sad_minor": _share(rows["sad"], "analysed", "minor"),
        "happy_minor": _share(rows["happy"], "analysed", "minor"),
        "sad_minor_key_token": float(np.mean([str(r["key_token"]).endswith("m") for r in rows["sad"]])),
        "happy_minor_key_token": float(np.mean([str(r["key_token"]).endswith("m") for r in rows["happy"]])),
        "valence_up_major_after": _share(rows["valence up"], "analysed_second", "major"),
        "valence_down_minor_after": _share(rows["valence down"], "analysed_second", "minor"),
        "valence_up_major_before": _share(rows["valence up"], "analysed_first", "major"),
        "valence_down_minor_before": _share(rows["valence down"], "analysed_first", "minor"),
        "energy_up_ratio": ratio(rows["energy up"]),
        "energy_down_ratio": 1.0 / ratio(rows["energy down"]) if ratio(rows["energy down"]) else float("nan"),
    }


def targets(s: dict) -> list[dict]:
    rules = [("sad pieces analysed minor", s["sad_minor"], ">=", 0.8),
             ("happy pieces analysed minor", s["happy_minor"], "<=", 0.2),
             ("bars 9-16 major after valence up", s["valence_up_major_after"], ">=", 0.6),
             ("bars 9-16 minor after valence down", s["valence_down_minor_after"], ">=", 0.6),
             ("energy up: notes per bar, after / before", s["energy_up_ratio"], ">=", 1.5),
             ("energy down: notes per bar, before / after", s["energy_down_ratio"], ">=", 1.5)]
    return [{"figure": f, "value": v, "rule": f"{op} {need:g}",
             "met": bool(v >= need if op == ">=" else v <= need)} for f, v, op, need in rules]


def table(result: dict) -> str:
    lines = []
    for t in result["targets"]:
        v = t["value"]
        shown = f"{v:.2f}x" if "energy" in t["figure"] else f"{100 * v:.0f}%"
        lines.append(f"{t['figure']:<44} {shown:>7}  target {t['rule']}: {'met' if t['met'] else 'NOT met'}")
    s = result["summary"]
    lines.append(f"(key tokens: sad {100 * s['sad_minor_key_token']:.0f}% minor, "
                 f"happy {100 * s['happy_minor_key_token']:.0f}% minor)")
    return "\n".join(lines)


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = result["targets"]
    fig, ax = plt.subplots(figsize=(9, 3.6))
    vals = [100 * t["value"] if "energy" not in t["figure"] else 50 * t["value"] for t in ts]
    ax.barh(range(len(ts)), vals, color=["C2" if t["met"] else "C3" for t in ts])
    ax.set_yticks(range(len(ts)), [t["figure"] + ("  (x50)" if "energy" in t["figure"] else "") for t in ts],
                  fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("% of seeds (energy rows: ratio x 50)")
    ax.set_title(f"mood decides the mode: {result['model']} ({result['seeds']} seeds, green = target met)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args) -> int:
    from cadenza.music.load import load_model

    if args.seeds < 1 or args.bars < 4:
        raise ConfigError("--seeds must be at least 1 and --bars at least 4")
    torch.set_num_threads(args.threads)
    mm = load_model(args.model, decode_weights="int8")
    t0 = time.time()
    rows = run_cases(mm, args.seeds, args.bars, progress=not args.no_progress)
    s = summary(rows)
    result = {**run_header("music_mood"), "model": mm.provenance().get("name"), "seeds": args.seeds,
              "bars": args.bars, "key_table": mm.mood_keys is not None, "summary": s, "targets": targets(s),
              "rows": rows, "seconds": round(time.time() - t0, 1)}
    print(table(result))
    j, p = write_json_and_plot(Path(args.out).parent, Path(args.out).name, finite(result), lambda q: plot(result, q))
    print(f"wrote {j} and {p}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model folder (default: the default model)")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--bars", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", default=str(RESULTS / "music_mood"))
    return exit_code(run, p.parse_args(argv))
