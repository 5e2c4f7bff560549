"""Recipe study (issue 22): training recipes compared at equal CPU time on the same held-out pieces.

Each ``--run LABEL=RUN_DIR`` is a training run (its ``model/`` and ``metrics.jsonl``). For every
run, on the same pieces:

- bits/token on the validation pieces as *written* (repeat signs kept) and as *played* (repeats
  written out), from two datasets built from the same scores with the same tokenizer and split
  (``cadenza data music21 --as-written`` and without);
- what whole-piece context buys: bits/token at positions >= 512 with the whole piece vs the
  prefix plus the last 256 tokens (``scoring.context_gain``, 95% bootstrap interval), on the
  played validation pieces longer than 512 tokens;
- form of composed pieces (``cadenza.music.eval.form``): keys G D F A x ``--seeds`` seeds, 16 bars,
  the CLI's defaults.

    python benchmarks/recipe_study.py --written data/study-written --played data/study-played \\
        --run v2-recipe=runs/study-a --run rope+played=runs/study-d --pieces 120 --seeds 4

Prints a table; writes OUT.json and OUT.png (``--out``, default benchmarks/results/recipe_study).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cadenza.bench.results import RESULTS, exit_code, finite, run_header, write_json_and_plot
from cadenza.errors import ConfigError

KEYS = ("G", "D", "F", "A")


def _run_info(run: Path) -> dict:
    """Steps, training seconds and the last held-out loss (nats/token, on the run's own
    validation split) a run's metrics.jsonl records."""
    steps = seconds = None
    last_eval = None
    for line in (run / "metrics.jsonl").read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        steps = rec.get("step", steps)
        seconds = rec.get("time", seconds)
        if rec.get("split") == "eval":
            last_eval = rec.get("loss", last_eval)
    return {"steps": steps, "train_seconds": seconds, "last_eval": last_eval}


def _bits(model, pieces, pitch_ids) -> float:
    from cadenza.music.eval.scoring import score_model

    s = score_model(model, pieces, pitch_ids)
    return float(s.bits.mean())


def evaluate(run: Path, written, played, codec, seeds: int, tmp: Path) -> dict:
    from cadenza.bench.next_note import model_folder
    from cadenza.music.eval import form as fm
    from cadenza.music.eval.scoring import context_gain
    from cadenza.music.composition import compose
    from cadenza.music.load import load_model

    folder = model_folder(run, Path(played["dir"]), tmp)
    mm = load_model(folder, cache=False, decode_weights="int8")
    net = mm.network
    pitch_ids = sorted(i for i in range(codec.vocab_size) if codec.token(i).startswith("Pitch_"))
    with torch.inference_mode():
        row = {"run": str(run), **_run_info(run), "positions": net.config.positions,
               "bits_written": _bits(net, written["pieces"], pitch_ids),
               "bits_played": _bits(net, played["pieces"], pitch_ids),
               "context": context_gain(net, played["pieces"], pitch_ids)}
    forms = []
    for key in KEYS:
        for seed in range(1, seeds + 1):
            piece = compose(mm, key=key, bars=16, seed=seed)
            forms.append(fm.form_of(piece, piece.conditioning.get("key"), 16))
    row["form"] = fm.summarize(forms)
    return row


def _pieces(data: Path, n: int, seed: int):
    from cadenza.music.eval.scoring import load_pieces, select_pieces

    val = load_pieces(data, "val")
    return [val[i] for i in select_pieces(len(val), n or None, seed)]


def table(rows: dict) -> str:
    out = [f"{'run':<16} {'steps':>6} {'min':>5} {'bits written':>12} {'bits played':>12} {'ctx gain >=512':>20} "
           f"{'bar rep':>8} {'phrase rep':>10} {'tonic end':>9}"]
    for label, r in rows.items():
        c = r["context"]
        gain = (f"{100 * c['gain']:+.1f}% [{100 * c['gain_ci95'][0]:+.1f},{100 * c['gain_ci95'][1]:+.1f}]"
                if c.get("pieces") else "-")
        f = r["form"]
        minutes = (r["train_seconds"] or 0) / 60
        out.append(f"{label:<16} {r['steps'] or 0:>6} {minutes:>5.0f} {r['bits_written']:>12.3f} "
                   f"{r['bits_played']:>12.3f} {gain:>20} {100 * f['bar_repeats']:>7.1f}% "
                   f"{100 * f['phrase_repeats']:>9.1f}% {100 * f['tonic_endings']:>8.0f}%")
    return "\n".join(out)


def plot(rows: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(rows)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    x = np.arange(len(labels))
    axes[0].bar(x - 0.2, [rows[k]["bits_written"] for k in labels], 0.4, label="as written")
    axes[0].bar(x + 0.2, [rows[k]["bits_played"] for k in labels], 0.4, label="as played")
    lows = [min(rows[k]["bits_written"], rows[k]["bits_played"]) for k in labels]
    axes[0].set_ylim(0.95 * min(lows), 1.02 * max(max(rows[k]["bits_written"], rows[k]["bits_played"])
                                                   for k in labels))
    axes[0].set_title("held-out bits/token (lower is better)")
    axes[0].legend(fontsize=8)
    g = [100 * rows[k]["context"].get("gain", 0) for k in labels]
    lo = [g[i] - 100 * rows[k]["context"].get("gain_ci95", [0, 0])[0] for i, k in enumerate(labels)]
    hi = [100 * rows[k]["context"].get("gain_ci95", [0, 0])[1] - g[i] for i, k in enumerate(labels)]
    axes[1].bar(x, g, 0.6, yerr=[np.maximum(lo, 0), np.maximum(hi, 0)], capsize=3, color="C2")
    axes[1].axhline(0, color="k", lw=0.8)
    axes[1].set_title("whole piece vs last 256 tokens, positions >= 512 (%)")
    for j, (key, name) in enumerate((("bar_repeats", "bars repeated"), ("phrase_repeats", "phrases repeated"),
                                     ("tonic_endings", "tonic endings"))):
        axes[2].bar(x + (j - 1) * 0.27, [100 * rows[k]["form"][key] for k in labels], 0.27, label=name)
    axes[2].set_title("composed pieces (%)")
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.set_xticks(x, labels, rotation=20, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args) -> int:
    from cadenza.codecs.music import MusicCodec

    torch.set_num_threads(args.threads)
    codec = MusicCodec.load(Path(args.played) / "tokenizer.json")
    if MusicCodec.load(Path(args.written) / "tokenizer.json").vocab_hash() != codec.vocab_hash():
        raise ConfigError("--written and --played were built with different tokenizers")
    written = {"dir": str(args.written), "pieces": _pieces(Path(args.written), args.pieces, args.seed)}
    played = {"dir": str(args.played), "pieces": _pieces(Path(args.played), args.pieces, args.seed)}
    rows = {}
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="cadenza-study-") as tmp:
        for spec in args.run:
            label, _, path = spec.partition("=")
            run_dir = Path(path or label)
            if not (run_dir / "metrics.jsonl").is_file():
                raise ConfigError(f"{run_dir} has no metrics.jsonl: is it a training run folder?")
            sub = Path(tmp) / label
            sub.mkdir()
            rows[label] = evaluate(run_dir, written, played, codec, args.seeds, sub)
            print(f"{label}: done ({time.time() - t0:.0f} s)", flush=True)
    result = {**run_header("recipe_study"), "written": args.written, "played": args.played,
              "pieces": len(played["pieces"]), "seeds": args.seeds, "rows": rows}
    print(table(rows))
    j, p = write_json_and_plot(Path(args.out).parent, Path(args.out).name, finite(result), lambda q: plot(rows, q))
    print(f"wrote {j} and {p}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="append", required=True, metavar="LABEL=RUN_DIR")
    p.add_argument("--written", required=True, help="dataset built with --as-written")
    p.add_argument("--played", required=True, help="the same scores with repeats written out")
    p.add_argument("--pieces", type=int, default=120, help="validation pieces scored (0 = all)")
    p.add_argument("--seeds", type=int, default=4, help="composed pieces per key (keys G D F A)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(RESULTS / "recipe_study"))
    return exit_code(run, p.parse_args(argv))
