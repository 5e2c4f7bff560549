"""Paper-style text reproduction (Child et al. 2019, Table 2) at this machine's scale.

The paper's enwik8 result: sparse attention reaches dense attention's bits per byte at a
fraction of the time per step. Here: byte-level English text (the King James Bible from
Debian's ``bible-kjv-text`` package, or any file given with ``--text``), context n = 4096,
one model size, and the same wall-clock training budget for dense, strided and fixed
attention. The three runs are interleaved in rounds (each resumes from its checkpoint), so
a change in machine load during the benchmark hits all three alike.

Reports, per attention kind: held-out bits per byte (the whole held-out split at the end),
time per step and tokens/s, plus held-out bpb against training time (plot). Target:
strided or fixed reaches dense's final bpb in at most half of dense's training time.

    python benchmarks/reproduce_text.py --budget-s 330 --threads 1     # about 25 minutes
    python benchmarks/reproduce_text.py --quick                        # a 2-minute smoke run

Writes benchmarks/results/reproduce_text[_quick].json and .png; run directories (with
metrics.jsonl and checkpoints) go under runs/reproduce_text[_quick]/.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cadenza.config import ModelConfig
from cadenza.data.dataset import eval_offsets
from cadenza.data.format import open_split
from cadenza.data.text import build_text_dataset
from cadenza.model import SparseTransformer
from cadenza.train import TrainConfig, train
from cadenza.train.metrics import read_log
from cadenza.bench.results import ROOT, RESULTS

KINDS = ("dense", "strided", "fixed")
INSTALL_HELP = ("The King James Bible text comes from Debian's bible-kjv-text package (read with the bible "
                "program from bible-kjv). Install both with\n    sudo apt-get update && sudo apt-get install "
                "bible-kjv-text bible-kjv\nor pass any English text of a few MB with --text FILE "
                "(for example enwik8 from http://mattmahoney.net/dc/enwik8.zip, unzipped).")


def kjv_text(dest: Path) -> Path:
    """Extract the KJV text with Debian's `bible` program, installing the package if needed."""
    bible, data = shutil.which("bible"), Path("/usr/lib/bible.data")
    if not (bible and data.exists()):
        if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
            print("installing bible-kjv-text with apt-get ...", flush=True)
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
            subprocess.run(["apt-get", "install", "-y", "-qq", "bible-kjv-text", "bible-kjv"], env=env, check=False)
            bible = shutil.which("bible")
        if not (bible and data.exists()):
            raise SystemExit(f"reproduce_text: the bible-kjv-text package is not installed.\n{INSTALL_HELP}")
    raw = subprocess.run([bible, "-f", "gen1:1-rev22:21"], stdin=subprocess.DEVNULL, capture_output=True,
                         check=True).stdout
    text = re.sub(rb"(?m)^[1-3]?[A-Za-z]+\d+:\d+ ", b"", raw)  # drop the "Ge1:1 " verse references
    if len(text) < 1_000_000:
        raise SystemExit(f"reproduce_text: `bible` printed only {len(text)} bytes.\n{INSTALL_HELP}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(text)
    return dest


def heldout_bpb(model_dir: Path, data_dir: Path, seq_len: int, max_windows: int = 0) -> tuple[float, int]:
    """Bits per byte of the final model over non-overlapping windows of the whole held-out split."""
    model = SparseTransformer.load(model_dir).eval()
    val = open_split(data_dir, "val")
    total, count = 0.0, 0
    with torch.no_grad():
        for o in eval_offsets(len(val), seq_len, max_windows):
            w = torch.from_numpy(np.asarray(val[o:o + seq_len + 1]).astype(np.int64))[None]
            logits = model(w[:, :-1])
            total += float(torch.nn.functional.cross_entropy(logits[0], w[0, 1:], reduction="sum"))
            count += seq_len
    return total / count / math.log(2), count


def step_time(mc: ModelConfig, data_dir: Path, work: Path, args) -> float:
    """Seconds per optimizer step of the real training loop (median of steps 2-4), to size each run."""
    out = work / "calibrate" / mc.attention
    shutil.rmtree(out, ignore_errors=True)
    train(TrainConfig(data=str(data_dir), out=str(out), model_config=mc.to_dict(), steps=4,
                      batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr, eval_every=0, eval_windows=1,
                      save_every=0, progress=False, tensorboard=False))
    recs = [r for r in read_log(out) if r["split"] == "train"]
    return float(np.median([args.batch_size * args.seq_len / r["tokens_per_s"] for r in recs[1:]]))


def reach_time(curve: list[tuple[float, float]], target: float) -> float | None:
    """First training time at which an eval curve is at or below ``target`` (linear interpolation)."""
    prev = None
    for t, b in curve:
        if b <= target:
            if prev is None or prev[1] == b:
                return t
            (t0, b0) = prev
            return t0 + (t - t0) * (b0 - target) / (b0 - b)
        prev = (t, b)
    return None


def plot(results: dict, budget: float, dense_final: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    for kind, res in results.items():
        if res["curve"]:
            ts, bs = zip(*res["curve"])
            ax.plot(ts, bs, marker="o", ms=3, label=f"{kind} ({res['time_per_step_s']:.2f} s/step, {res['steps']} steps "
                                                 f"in {res['train_time_s']:.0f} s)")
    ax.axhline(dense_final, color="gray", ls="--", lw=1, label=f"dense final {dense_final:.3f}")
    half = results["dense"]["train_time_s"] / 2
    ax.axvline(half, color="gray", ls=":", lw=1, label=f"half of dense's time ({half:.0f} s)")
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("held-out bits per byte")
    ax.set_title(title)
    values = [b for r in results.values() for _, b in r["curve"]]
    lo, hi = min(values), max(values)
    ax.set_ylim(lo - 0.05 * (hi - lo) - 0.02, min(hi, lo + 3.0) + 0.05 * (hi - lo) + 0.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--text", type=Path, help="a text file to use instead of the KJV Bible")
    p.add_argument("--budget-s", type=float, default=330.0, help="training seconds per attention kind")
    p.add_argument("--rounds", type=int, default=3, help="interleave the three runs in this many rounds")
    p.add_argument("--seq-len", type=int, default=4096)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--stride", type=int, default=None, help="l (default sqrt(seq_len))")
    p.add_argument("--summary", type=int, default=8, help="c for the fixed pattern")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--eval-points", type=int, default=9, help="held-out evaluations per run")
    p.add_argument("--eval-windows", type=int, default=8, help="held-out windows per evaluation")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--quick", action="store_true", help="a small smoke run (n=512, tiny model, 20 s each)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted benchmark")
    p.add_argument("--work-dir", type=Path, default=None)
    p.add_argument("--replot", type=Path, metavar="JSON", help="only redraw the plot of an earlier result file")
    args = p.parse_args(argv)
    if args.replot:
        summary = json.loads(args.replot.read_text())
        m = summary["model"]
        plot(summary["results"], summary["budget_s"], summary["target"]["dense_final_bpb_on_eval_subset"],
             args.replot.with_suffix(".png"), f"byte-level text, n={summary['seq_len']}, d={m['d_model']}, "
             f"{m['n_layers']} layers, at most {summary['budget_s']:.0f} s each")
        print(f"wrote {args.replot.with_suffix('.png')}")
        return 0
    if args.quick:
        args.seq_len, args.d_model, args.layers, args.heads = 512, 64, 2, 2
        args.budget_s, args.rounds, args.eval_windows, args.eval_points = 20.0, 1, 4, 4
    if args.threads:
        torch.set_num_threads(args.threads)
    suffix = "_quick" if args.quick else ""
    work = args.work_dir or ROOT / "runs" / f"reproduce_text{suffix}"
    results_dir = RESULTS
    results_dir.mkdir(parents=True, exist_ok=True)
    if work.exists() and not args.resume:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)

    source = args.text if args.text else kjv_text(work / "kjv.txt")
    if not Path(source).is_file():
        raise SystemExit(f"reproduce_text: {source} is not a file")
    data_dir = work / "data"
    if args.quick:  # a 600 KB slice keeps the smoke run small
        sliced = work / "slice.txt"
        sliced.write_bytes(Path(source).read_bytes()[:600_000])
        build_text_dataset(sliced, data_dir, val_fraction=0.05)
    elif not (data_dir / "meta.json").exists():
        build_text_dataset(source, data_dir, val_fraction=0.05)
    meta = json.loads((data_dir / "meta.json").read_text())
    print(f"text: {source} -> train {meta['splits']['train']:,} bytes, held-out {meta['splits']['val']:,} bytes",
          flush=True)

    stride = args.stride or round(math.sqrt(args.seq_len))
    base = dict(vocab_size=256, d_model=args.d_model, n_layers=args.layers, n_heads=args.heads,
                max_len=args.seq_len, stride=stride, summary=min(args.summary, stride), integration="merged",
                dropout=0.0)
    configs = {k: ModelConfig(**base, attention=k) for k in KINDS}

    plan_file = work / "plan.json"
    if args.resume and plan_file.exists():
        plan = json.loads(plan_file.read_text())
    else:
        plan = {}
        for kind in KINDS:
            t = step_time(configs[kind], data_dir, work, args)
            steps = max(4, int(args.budget_s / t))
            plan[kind] = {"calibrated_step_s": t, "steps": steps,
                          "eval_every": max(1, steps // args.eval_points), "warmup": max(2, steps // 20)}
            print(f"{kind}: {t:.2f} s/step measured -> {steps} steps in {args.budget_s:.0f} s", flush=True)
        plan_file.write_text(json.dumps(plan, indent=2))

    for r in range(1, args.rounds + 1):
        for kind in KINDS:
            limit = args.budget_s * r / args.rounds
            print(f"round {r}/{args.rounds}: {kind} up to {limit:.0f} s of training", flush=True)
            train(TrainConfig(
                data=str(data_dir), out=str(work / kind), model_config=configs[kind].to_dict(), resume=True,
                steps=plan[kind]["steps"], batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr,
                warmup_steps=plan[kind]["warmup"], min_lr_ratio=0.1, eval_every=plan[kind]["eval_every"],
                eval_windows=args.eval_windows, save_every=10 ** 9, keep_last=1, seed=0,
                max_time_s=limit, progress=True, tensorboard=False))

    results = {}
    for kind in KINDS:
        recs = read_log(work / kind)
        train_recs = [x for x in recs if x["split"] == "train" and x.get("loss") is not None]
        evals = [x for x in recs if x["split"] == "eval"]
        steps_done = train_recs[-1]["step"]
        train_time = train_recs[-1]["time"]
        t0 = time.perf_counter()
        bpb, n_bytes = heldout_bpb(work / kind / "model", data_dir, args.seq_len)
        results[kind] = {
            "steps": steps_done, "train_time_s": train_time, "time_per_step_s": train_time / steps_done,
            "tokens_per_s": train_recs[-1]["tokens"] / train_time, "heldout_bpb": bpb,
            "heldout_bytes": n_bytes, "final_eval_subset_bpb": evals[-1]["loss"],
            "curve": [(x["time"], x["loss"]) for x in evals], "eval_seconds": time.perf_counter() - t0,
        }
        print(f"{kind}: held-out {bpb:.4f} bpb over {n_bytes:,} bytes", flush=True)

    dense = results["dense"]
    dense_final, dense_time = dense["final_eval_subset_bpb"], dense["train_time_s"]
    for kind in ("strided", "fixed"):
        t = reach_time(results[kind]["curve"], dense_final)
        results[kind]["reaches_dense_final_at_s"] = t
        results[kind]["fraction_of_dense_time"] = None if t is None else t / dense_time
    fractions = [results[k]["fraction_of_dense_time"] for k in ("strided", "fixed")
                 if results[k]["fraction_of_dense_time"] is not None]
    met = bool(fractions) and min(fractions) <= 0.5

    command = "python benchmarks/reproduce_text.py " + " ".join(sys.argv[1:] if argv is None else argv)
    summary = {
        "command": command.strip(), "quick": args.quick, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "platform": platform.platform(), "load_avg_at_end": os.getloadavg()},
        "text": {"source": str(source), "train_bytes": meta["splits"]["train"], "heldout_bytes": meta["splits"]["val"]},
        "model": base, "seq_len": args.seq_len, "batch_size": args.batch_size, "budget_s": args.budget_s,
        "rounds": args.rounds, "plan": plan, "results": results,
        "target": {"dense_final_bpb_on_eval_subset": dense_final, "dense_time_s": dense_time,
                   "best_fraction": min(fractions) if fractions else None, "met": met},
    }
    out_json = results_dir / f"reproduce_text{suffix}.json"
    out_png = results_dir / f"reproduce_text{suffix}.png"
    out_json.write_text(json.dumps(summary, indent=2))
    plot(results, args.budget_s, dense_final, out_png,
         f"byte-level text, n={args.seq_len}, d={args.d_model}, {args.layers} layers, at most {args.budget_s:.0f} s each")

    print()
    print("| attention | steps | time/step (s) | tokens/s | held-out bpb | reaches dense's final bpb at |")
    print("|---|---|---|---|---|---|")
    for kind, res in results.items():
        frac = res.get("fraction_of_dense_time")
        reach = "-" if kind == "dense" else ("never" if frac is None else
                                             f"{res['reaches_dense_final_at_s']:.0f} s ({frac:.0%} of dense)")
        print(f"| {kind} | {res['steps']} | {res['time_per_step_s']:.2f} | {res['tokens_per_s']:,.0f} | "
              f"{res['heldout_bpb']:.4f} | {reach} |")
    print(f"\ntarget (strided or fixed reaches dense's final bpb in <= 50% of its time): "
          f"{'MET' if met else 'NOT MET'}")
    print(f"wrote {out_json} and {out_png}")
    return 0
