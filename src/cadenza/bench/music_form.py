"""Form (issue 22): do composed pieces repeat bars and phrases and end on the tonic, as real tunes do?

Two rows measured the same way in the same run (``cadenza.music.eval.form``: the top line,
bar patterns of rhythm + intervals at any transposition):

- ``held-out``: the 16-bar openings of the dataset's ``test-nodup`` pieces (no 16-interval
  melody window shared with a train melody), their key from their own prefix;
- ``composed``: pieces composed by the model the way ``cadenza compose --key K --bars 16
  --seed S`` does with its defaults (grammar, top-p 0.95, temperature 1, int8 decoding; the
  copy guard is left out: it bounds copying from the corpus, not within a piece), keys
  ``--keys`` x seeds 1..``--seeds``.

Targets: composed bar repeats >= 0.8x the held-out share, 2-bar phrase repeats >= 0.8x,
tonic endings >= 80%. Prints the table; writes OUT.json (every per-piece figure) and
OUT.png (the shares, and the bar self-similarity matrices of a few pieces of each row).

    python benchmarks/music_form.py --data data/music21 --pieces 150 --seeds 8
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from cadenza.bench.results import RESULTS, exit_code, finite, run_header, write_json_and_plot
from cadenza.errors import ConfigError
from cadenza.music.eval import form as fm

DEFAULT_OUT = RESULTS
KEYS = ("G", "D", "F", "A")
SHOWN = 3   # self-similarity matrices drawn per row


def held_out(data: Path, codec, n_pieces: int, bars: int, seed: int, nodup: bool = True):
    """[(piece index, form, similarity)] of the test split's (nodup) pieces."""
    from cadenza.music.eval.melody import melody_of, nodup_filter
    from cadenza.music.eval.scoring import load_pieces, select_pieces

    test = load_pieces(data, "test")
    idx = list(range(len(test)))
    if nodup:
        train = load_pieces(data, "train")
        keep = set(nodup_filter([melody_of(codec, p) for p in train], [melody_of(codec, p) for p in test]))
        idx = [i for i in idx if i in keep]
    chosen = [idx[j] for j in select_pieces(len(idx), n_pieces or None, seed)]
    out = []
    for i in chosen:
        ids = [int(t) for t in test[i]]
        cond, _ = codec.parse_prefix(ids)
        score = codec.decode(ids)
        out.append((i, fm.form_of(score, cond.get("key"), bars), fm.similarity(score, bars)))
    return out


def composed(mm, keys, seeds: int, bars: int, progress: bool = True):
    """[(label, form, similarity, piece)] of pieces composed as the CLI does by default."""
    from tqdm import tqdm

    from cadenza.music.composition import compose

    jobs = [(k, s) for k in keys for s in range(1, seeds + 1)]
    out = []
    for key, seed in tqdm(jobs, desc="compose", disable=not progress, leave=False):
        piece = compose(mm, key=key, bars=bars, seed=seed)
        out.append((f"{key} seed {seed}", fm.form_of(piece, piece.conditioning.get("key"), bars),
                    fm.similarity(piece, bars), piece))
    return out


def targets(held: dict, comp: dict) -> list[dict]:
    rows = []
    for key, label in (("bar_repeats", "bar repeats"), ("phrase_repeats", "2-bar phrase repeats")):
        need = 0.8 * held[key]
        rows.append({"figure": label, "composed": comp[key], "need": need, "met": comp[key] >= need,
                     "rule": f">= 0.8 x held-out ({held[key]:.1%})"})
    rows.append({"figure": "tonic endings", "composed": comp["tonic_endings"], "need": 0.8,
                 "met": comp["tonic_endings"] >= 0.8, "rule": ">= 80%"})
    return rows


def table(result: dict) -> str:
    lines = [f"{'row':<10} {'pieces':>6} {'bars':>6} {'bar repeats':>12} {'phrase repeats':>15} "
             f"{'tonic endings':>14} {'patterns/bar':>13}"]
    for name, r in result["rows"].items():
        lines.append(f"{name:<10} {r['pieces']:>6} {r['bars']:>6} {r['bar_repeats']:>12.1%} "
                     f"{r['phrase_repeats']:>15.1%} {r['tonic_endings']:>14.1%} {r['patterns_per_bar']:>13.2f}")
    for t in result["targets"]:
        lines.append(f"target: composed {t['figure']} {t['composed']:.1%} {t['rule']}: "
                     f"{'met' if t['met'] else 'NOT met'}")
    return "\n".join(lines)


def plot(result: dict, matrices: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(12, 6.5))
    grid = fig.add_gridspec(2, SHOWN + 1, width_ratios=[1.6] + [1] * SHOWN)
    ax = fig.add_subplot(grid[:, 0])
    names = tuple(result["rows"])
    keys = (("bar_repeats", "bars\nrepeated"), ("phrase_repeats", "2-bar phrases\nrepeated"),
            ("tonic_endings", "ends on\nthe tonic"))
    x = np.arange(len(keys))
    for j, name in enumerate(names):
        vals = [100 * result["rows"][name][k] for k, _ in keys]
        ax.bar(x + (j - 0.5) * 0.38, vals, 0.38, label=name, color=f"C{j}")
    ax.set_xticks(x, [lab for _, lab in keys])
    ax.set_ylabel("%")
    ax.set_title("form: held-out tunes vs composed")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    for row, name in enumerate(names):
        for col, (label, m) in enumerate(matrices[name][:SHOWN]):
            a = fig.add_subplot(grid[row, col + 1])
            a.imshow(m, cmap="Greys", vmin=0, vmax=1, origin="upper")
            a.set_title(f"{name}: {label}", fontsize=8)
            a.set_xlabel("bar", fontsize=7)
            a.tick_params(labelsize=6)
    fig.suptitle(f"bar self-similarity (black: same rhythm and intervals); model {result['model']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args) -> int:
    from cadenza.music.load import load_model
    import torch

    if args.seeds < 1 or args.bars < 2:
        raise ConfigError("--seeds must be at least 1 and --bars at least 2")
    torch.set_num_threads(args.threads)
    mm = load_model(args.model, decode_weights="float32" if args.exact else "int8")
    t0 = time.time()
    held = held_out(Path(args.data), mm.codec, args.pieces, args.bars, args.seed) if args.data else []
    comp = composed(mm, args.keys, args.seeds, args.bars, progress=not args.no_progress)
    rows = {"held-out": fm.summarize([f for _, f, _ in held])} if held else {}
    rows["composed"] = fm.summarize([f for _, f, _, _ in comp])
    result = {**run_header("music_form"), "model": mm.provenance().get("name", str(args.model)),
              "data": str(args.data), "bars": args.bars, "keys": list(args.keys), "seeds": args.seeds,
              "rows": rows, "targets": targets(rows["held-out"], rows["composed"]) if held else [],
              "seconds": round(time.time() - t0, 1),
              "pieces": {"held-out": [{"test_index": i, **f.to_dict()} for i, f, _ in held],
                         "composed": [{"piece": lab, "key": p.conditioning.get("key"), "stopped": p.stopped,
                                       **f.to_dict()} for lab, f, _, p in comp]}}
    print(table(result))
    matrices = {"held-out": [(f"test #{i}", m) for i, _, m in held], "composed": [(lab, m) for lab, _, m, _ in comp]}
    json_path, png_path = write_json_and_plot(args.out, args.name, finite(result),
                                              lambda p: plot(result, matrices, p))
    print(f"wrote {json_path} and {png_path}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="model folder (default: the default model)")
    p.add_argument("--data", type=Path, help="music dataset folder for the held-out row (its test split)")
    p.add_argument("--pieces", type=int, default=150, help="held-out test-nodup pieces (0 = all; default 150)")
    p.add_argument("--keys", nargs="+", default=list(KEYS), help="keys to compose in (default G D F A)")
    p.add_argument("--seeds", type=int, default=8, help="seeds 1..N per key (default 8)")
    p.add_argument("--bars", type=int, default=16, help="bars per piece and per opening (default 16)")
    p.add_argument("--seed", type=int, default=0, help="draws the held-out pieces")
    p.add_argument("--exact", action="store_true", help="float32 decoding instead of the CLI's int8 default")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="folder for NAME.json and NAME.png")
    p.add_argument("--name", default="music_form", help="file stem (default music_form)")
    args = p.parse_args(argv)
    return exit_code(run, args)
