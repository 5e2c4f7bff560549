"""How often the model copies its training corpus: composed pieces checked against it.

Composes ``--pieces`` pieces with ``cadenza compose``'s defaults (the model chooses style,
key, tempo, metre and moods; int8 decoding, top-p 0.95), seeds 0..N-1, once without and
once with ``--max-copy`` (the copy guard), and checks each with the corpus index of
``cadenza check``: the longest run of consecutive notes (pitch intervals, any
transposition) shared with a training piece. Prints the share of pieces whose longest run
exceeds 8, 12 and 16 notes for both, writes JSON and a PNG histogram. Example:

    python benchmarks/originality.py --pieces 200 --threads 1
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cadenza.errors import CadenzaError
from cadenza.io import write_text_atomic
from cadenza.bench.results import RESULTS

THRESHOLDS = (8, 12, 16)


def run(mm, idx, seeds, bars: int, guard) -> list[int]:
    from tqdm import tqdm

    from cadenza.music.composition import compose
    from cadenza.music.authorship.originality import check_score

    longest = []
    for seed in tqdm(seeds, desc="with --max-copy" if guard else "unguarded", unit="piece", leave=False):
        piece = compose(mm, bars=bars, seed=int(seed), guard=guard)
        longest.append(int(check_score(idx, piece.score()).exact_intervals.notes))
    return longest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="music model folder (default: the default model)")
    p.add_argument("--corpus", help="the model's training data folder (cadenza data music21 --out) or notes "
                                    "file (default: the model's, as `cadenza check` finds it)")
    p.add_argument("--pieces", type=int, default=200)
    p.add_argument("--bars", type=int, default=16)
    p.add_argument("--max-copy", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS / "originality")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        from cadenza.music.load import load_model
        from cadenza.music.authorship.originality import CopyGuard, default_corpus, index_for

        mm = load_model(args.model)
        corpus = args.corpus or default_corpus(mm.path)
        idx = index_for(corpus, progress=True)
        seeds = list(range(args.pieces))
        t0 = time.perf_counter()
        free = run(mm, idx, seeds, args.bars, None)
        t1 = time.perf_counter()
        guarded = run(mm, idx, seeds, args.bars, CopyGuard(idx, args.max_copy))
        t2 = time.perf_counter()
    except CadenzaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def shares(x):
        a = np.asarray(x)
        return {str(t): float((a > t).mean()) for t in THRESHOLDS}

    result = {"command": "python benchmarks/originality.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
              "model": mm.version, "corpus": str(corpus), "pieces": args.pieces, "bars": args.bars,
              "max_copy": args.max_copy,
              "unguarded": {"longest_run": free, "share_longer_than": shares(free),
                            "median": float(np.median(free)), "seconds": t1 - t0},
              "guarded": {"longest_run": guarded, "share_longer_than": shares(guarded),
                          "median": float(np.median(guarded)), "seconds": t2 - t1}}
    print(f"{args.pieces} pieces of {args.bars} bars from {mm.version}, checked against {corpus}")
    print("                     " + "  ".join(f"> {t:>2} notes" for t in THRESHOLDS) + "   median longest run")
    for label, key in (("unguarded", "unguarded"), (f"--max-copy {args.max_copy}", "guarded")):
        r = result[key]
        print(f"{label:<20} " + "  ".join(f"{100 * r['share_longer_than'][str(t)]:>9.1f}%" for t in THRESHOLDS)
              + f"   {r['median']:.0f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out.with_suffix(".json"), json.dumps(result, indent=1))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.8))
    top = max(free + guarded + [20])
    bins = np.arange(0, top + 2)
    ax.hist(free, bins=bins, alpha=0.6, label="unguarded")
    ax.hist(guarded, bins=bins, alpha=0.6, label=f"--max-copy {args.max_copy}")
    for t in THRESHOLDS:
        ax.axvline(t + 0.5, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("longest run of notes shared with a training piece (intervals, any transposition)")
    ax.set_ylabel("pieces")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=120)
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.png')}")
    return 0
