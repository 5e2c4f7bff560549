"""The paper's long-sequence claims at this machine's scale (Child et al. 2019, sections 7.2-7.4).

Two measurements, each comparing dense, strided and fixed attention in the same run:

1. ``--part images`` / ``--part audio``: held-out bits per dim (32 x 32 RGB images, 3,072
   tokens, factorized row/column/channel positions, stride = one row = 96) and bits per
   sample (8 kHz mu-law audio, n = 8,192 by default) after the same wall-clock training
   budget for each attention kind, the same model otherwise. The three runs are interleaved
   in rounds (each resumes from its checkpoint), so changes in machine load hit all alike.
   Data: crops and flips of matplotlib's sample photographs, and Bach chorales from music21's
   corpus rendered with the project's SoundFont (``cadenza.data.samples``).
2. ``--part longest``: the longest sequence each attention kind trains within an equal
   step-time budget (forward + backward + AdamW step, batch 1, the same model with
   l = sqrt(n)) and within a memory limit: n doubles from 4,096 until a step exceeds the
   budget, then two bisection steps; each try runs in its own process (its peak RSS is
   read from the OS). Prints the ratio longest sparse / longest dense (the paper: 30x,
   on GPUs, where dense attention's memory is what runs out).

    python benchmarks/long_sequences.py --threads 1                  # everything, about 30 minutes
    python benchmarks/long_sequences.py --part longest --threads 1
    python benchmarks/long_sequences.py --quick                      # a 2-minute smoke run

Writes benchmarks/results/long_sequences[_quick].json and .png; run directories go under
runs/long_sequences[_quick]/ (never committed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cadenza.config import ModelConfig
from cadenza.data.audio import build_audio_dataset
from cadenza.data.dataset import eval_offsets
from cadenza.data.format import open_split, read_meta
from cadenza.data.images import build_image_dataset
from cadenza.data.samples import write_sample_audio, write_sample_images
from cadenza.model import SparseTransformer
from cadenza.train import TrainConfig, train
from cadenza.train.metrics import read_log
from cadenza.bench.results import ROOT, RESULTS

KINDS = ("dense", "strided", "fixed")
LN2 = math.log(2.0)


# --------------------------------------------------------------------------- step timing
def model_config(kind: str, n: int, d_model: int, layers: int, heads: int, vocab: int = 256,
                 stride: int | None = None, position_shape=None) -> ModelConfig:
    l = stride or max(1, round(math.sqrt(n)))
    shape = position_shape or (math.ceil(n / l), l)
    return ModelConfig(vocab_size=vocab, d_model=d_model, n_layers=layers, n_heads=heads, max_len=n,
                       attention=kind, stride=l, summary=min(8, l), integration="merged",
                       positions="factorized", position_shape=tuple(shape))


def time_steps(cfg: ModelConfig, steps: int = 2, give_up_s: float | None = None) -> list[float]:
    """Seconds of each of ``steps`` training steps (forward, backward, AdamW) on random tokens."""
    torch.manual_seed(0)
    model = SparseTransformer(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, cfg.vocab_size, (1, cfg.max_len + 1))
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        logits = model(x[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab_size), x[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        if give_up_s is not None and times[-1] > give_up_s:
            break
    return times


def _child_step(argv) -> int:
    """Child process for one --part longest try: prints JSON with step times and peak RSS."""
    p = argparse.ArgumentParser()
    p.add_argument("--kind")
    p.add_argument("--n", type=int)
    p.add_argument("--d-model", type=int)
    p.add_argument("--layers", type=int)
    p.add_argument("--heads", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--give-up-s", type=float)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = model_config(a.kind, a.n, a.d_model, a.layers, a.heads)
    times = time_steps(cfg, steps=2, give_up_s=a.give_up_s)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"times": times, "peak_rss_mb": rss_mb, "stride": cfg.stride}))
    return 0


def try_length(kind: str, n: int, args) -> dict:
    cmd = [sys.executable, "-m", "cadenza.bench.long_sequences",   # the child runs this module's _child_step
           "--child-step", "--kind", kind, "--n", str(n), "--d-model", str(args.d_model),
           "--layers", str(args.layers), "--heads", str(args.heads), "--threads", str(args.threads or 0),
           "--give-up-s", str(3 * args.step_budget_s)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:   # killed for memory, or failed: does not fit
        return {"n": n, "fits": False, "error": (proc.stderr.strip().splitlines() or ["?"])[-1][:200],
                "wall_s": time.perf_counter() - t0}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    step_s = res["times"][-1]
    fits = step_s <= args.step_budget_s and res["peak_rss_mb"] <= args.memory_gb * 1024
    return {"n": n, "fits": bool(fits), "step_s": step_s, "times": res["times"], "peak_rss_mb": res["peak_rss_mb"],
            "stride": res["stride"], "wall_s": time.perf_counter() - t0}


def longest(kind: str, args) -> dict:
    """Doubling from args.start_n, then bisection (to a multiple of 1,024)."""
    tries, good, bad = [], None, None
    n = args.start_n
    while n <= args.max_n:
        r = try_length(kind, n, args)
        tries.append(r)
        print(f"  {kind} n={n:,}: " + (f"{r['step_s']:.2f} s/step, {r['peak_rss_mb']:.0f} MB" if "step_s" in r
                                      else r["error"]) + (" fits" if r["fits"] else " does not fit"), flush=True)
        if not r["fits"]:
            bad = n
            break
        good = n
        n *= 2
    for _ in range(args.bisect):
        if good is None or bad is None:
            break
        mid = (good + bad) // 2 // 1024 * 1024
        if mid in (good, bad):
            break
        r = try_length(kind, mid, args)
        tries.append(r)
        print(f"  {kind} n={mid:,}: " + (f"{r['step_s']:.2f} s/step" if "step_s" in r else r["error"])
              + (" fits" if r["fits"] else " does not fit"), flush=True)
        if r["fits"]:
            good = mid
        else:
            bad = mid
    return {"longest_n": good, "first_failing_n": bad, "reached_max_n": bad is None, "tries": tries}


# --------------------------------------------------------------------------- training comparison
def heldout_bits(model_dir: Path, data_dir: Path, seq_len: int, max_windows: int) -> tuple[float, int]:
    """Bits per token of the final model over the held-out split (record starts for images)."""
    meta = read_meta(data_dir)
    model = SparseTransformer.load(model_dir).eval()
    val = open_split(data_dir, "val")
    total, count = 0.0, 0
    with torch.no_grad():
        for o in eval_offsets(len(val), seq_len, max_windows, meta.get("record_len")):
            w = torch.from_numpy(np.asarray(val[o:o + seq_len + 1]).astype(np.int64))[None]
            logits = model(w[:, :-1])
            total += float(torch.nn.functional.cross_entropy(logits[0], w[0, 1:], reduction="sum"))
            count += seq_len
    return total / count / LN2, count


def compare(name: str, data_dir: Path, configs: dict, seq_len: int, work: Path, args) -> dict:
    """Train each config for args.budget_s seconds (interleaved rounds), then score held-out data."""
    plan = {}
    for kind, mc in configs.items():
        t = float(np.median(time_steps(mc, steps=3)[1:])) * args.batch_size
        # Plan more steps than the calibration predicts, so the time cap (not the step count,
        # which a noisy calibration gets wrong) ends every run: equal wall-clock for all kinds.
        steps = max(4, int(args.plan_factor * args.budget_s / t))
        plan[kind] = {"calibrated_step_s": t, "steps": steps, "plan_factor": args.plan_factor, "eval_every": max(1, steps // args.eval_points),
                      "warmup": max(2, steps // 20)}
        print(f"{name} {kind}: about {t:.2f} s/step -> {steps} steps in {args.budget_s:.0f} s", flush=True)
    for r in range(1, args.rounds + 1):
        for kind, mc in configs.items():
            limit = args.budget_s * r / args.rounds
            print(f"{name} round {r}/{args.rounds}: {kind} up to {limit:.0f} s of training", flush=True)
            train(TrainConfig(
                data=str(data_dir), out=str(work / name / kind), model_config=mc.to_dict(), resume=True,
                steps=plan[kind]["steps"], batch_size=args.batch_size, seq_len=seq_len, lr=args.lr,
                warmup_steps=plan[kind]["warmup"], min_lr_ratio=0.1, eval_every=plan[kind]["eval_every"],
                eval_windows=args.eval_windows, save_every=10 ** 9, keep_last=1, seed=0, max_time_s=limit,
                progress=False, tensorboard=False))
    results = {}
    for kind in configs:
        recs = read_log(work / name / kind)
        tr = [x for x in recs if x["split"] == "train" and x.get("loss") is not None]
        ev = [x for x in recs if x["split"] == "eval"]
        bits, count = heldout_bits(work / name / kind / "model", data_dir, seq_len, args.final_windows)
        results[kind] = {"steps": tr[-1]["step"], "train_time_s": tr[-1]["time"],
                         "time_per_step_s": tr[-1]["time"] / tr[-1]["step"], "heldout_bits": bits,
                         "heldout_tokens": count, "curve": [(x["time"], x["loss"]) for x in ev]}
        print(f"{name} {kind}: held-out {bits:.4f} over {count:,} tokens after {tr[-1]['step']} steps "
              f"in {tr[-1]['time']:.0f} s", flush=True)
    return {"plan": plan, "results": results, "seq_len": seq_len,
            "model": {k: v for k, v in configs["strided"].to_dict().items() if k != "attention"}}


def images_part(work: Path, args) -> dict:
    folder, data = work / "image_files", work / "image_data"
    if not (data / "meta.json").exists():
        write_sample_images(folder, count=args.images, size=64, seed=0)
        build_image_dataset(folder, data, size=args.image_size, val_fraction=0.1)
    meta = read_meta(data)
    n = meta["record_len"] - 1
    shape = tuple(meta["image_shape"])
    configs = {k: model_config(k, n, args.d_model, args.layers, args.heads, vocab=meta["vocab_size"],
                               stride=shape[1] * shape[2], position_shape=shape) for k in KINDS}
    out = compare("images", data, configs, n, work, args)
    out["data"] = {"images": meta["files"], "train_images": meta["splits"]["train"] // meta["record_len"],
                   "val_images": meta["splits"]["val"] // meta["record_len"], "shape": list(shape)}
    out["unit"] = "bits/dim"
    return out


def audio_part(work: Path, args) -> dict:
    folder, data = work / "audio_files", work / "audio_data"
    if not (data / "meta.json").exists():
        write_sample_audio(folder, count=args.audio_files, sample_rate=8000)
        build_audio_dataset(folder, data, sample_rate=8000, val_fraction=0.05)
    meta = read_meta(data)
    n = args.audio_n
    configs = {k: model_config(k, n, args.d_model, args.layers, args.heads) for k in KINDS}
    out = compare("audio", data, configs, n, work, args)
    out["data"] = {"files": meta["files"], "train_samples": meta["splits"]["train"],
                   "val_samples": meta["splits"]["val"], "sample_rate": 8000}
    out["unit"] = "bits/sample"
    return out


# --------------------------------------------------------------------------- report
def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("images", "audio", "longest") if k in summary]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.4), dpi=110, squeeze=False)
    for ax, name in zip(axes[0], panels):
        part = summary[name]
        if name == "longest":
            for kind, res in part["kinds"].items():
                ok = [(t["n"], t["step_s"]) for t in res["tries"] if "step_s" in t]
                if ok:
                    ns, ts = zip(*sorted(ok))
                    ax.plot(ns, ts, marker="o", label=f"{kind}: longest {res['longest_n'] or 0:,}")
            ax.axhline(part["step_budget_s"], color="gray", ls="--", lw=1, label=f"budget {part['step_budget_s']:g} s")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("sequence length n")
            ax.set_ylabel("s per training step (batch 1)")
            ax.set_title(f"longest trainable sequence (sparse/dense {part['ratio_best_sparse_to_dense'] or 0:.1f}x)")
        else:
            for kind, res in part["results"].items():
                if res["curve"]:
                    ts, bs = zip(*res["curve"])
                    ax.plot(ts, bs, marker="o", ms=3, label=f"{kind}: {res['heldout_bits']:.3f} "
                                                         f"({res['steps']} steps)")
            ax.set_xlabel("training time (s)")
            ax.set_ylabel(f"held-out {part['unit']}")
            ax.set_title(f"{name}, n = {part['seq_len']:,}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child-step":
        return _child_step(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=["all", "images", "audio", "longest"], default="all")
    p.add_argument("--budget-s", type=float, default=150.0, help="training seconds per attention kind and modality")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--plan-factor", type=float, default=1.5,
                   help="planned steps = factor x budget / calibrated step time (default 1.5: the time cap ends runs)")
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--images", type=int, default=800, help="sample images to make (10%% held out)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--audio-files", type=int, default=20, help="chorales to render")
    p.add_argument("--audio-n", type=int, default=8192, help="audio training context")
    p.add_argument("--eval-points", type=int, default=6)
    p.add_argument("--eval-windows", type=int, default=8)
    p.add_argument("--final-windows", type=int, default=64, help="held-out windows scored at the end")
    p.add_argument("--step-budget-s", type=float, default=10.0)
    p.add_argument("--memory-gb", type=float, default=8.0)
    p.add_argument("--start-n", type=int, default=4096)
    p.add_argument("--max-n", type=int, default=1 << 20)
    p.add_argument("--bisect", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="smoke run: 16 x 16 images, n = 1024 audio, 15 s budgets")
    args = p.parse_args(argv)
    if args.quick:
        args.budget_s, args.rounds, args.images, args.image_size = 15.0, 1, 60, 16
        args.audio_files, args.audio_n, args.eval_points, args.final_windows = 2, 1024, 3, 8
        args.step_budget_s, args.start_n, args.max_n, args.bisect = 0.5, 1024, 1 << 15, 0
        args.d_model, args.layers = 32, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    suffix = "_quick" if args.quick else ""
    work = ROOT / "runs" / f"long_sequences{suffix}"
    results_dir = RESULTS
    results_dir.mkdir(parents=True, exist_ok=True)
    out_json = results_dir / f"long_sequences{suffix}.json"
    summary = json.loads(out_json.read_text()) if out_json.exists() and args.part != "all" else {}
    for name in ("images", "audio"):
        if args.part in ("all", name):
            shutil.rmtree(work / name, ignore_errors=True)
            summary[name] = (images_part if name == "images" else audio_part)(work, args)
            summary[name]["command"] = "python benchmarks/long_sequences.py " + " ".join(argv)
    if args.part in ("all", "longest"):
        kinds = {}
        for kind in KINDS:
            print(f"longest sequence for {kind} within {args.step_budget_s:g} s per step:", flush=True)
            kinds[kind] = longest(kind, args)
        dense = kinds["dense"]["longest_n"]
        best = max((kinds[k]["longest_n"] or 0) for k in ("strided", "fixed"))
        summary["longest"] = {"kinds": kinds, "step_budget_s": args.step_budget_s, "memory_gb": args.memory_gb,
                              "model": {"d_model": args.d_model, "n_layers": args.layers, "n_heads": args.heads,
                                        "stride": "round(sqrt(n))", "batch": 1},
                              "ratio_best_sparse_to_dense": best / dense if dense else None,
                              "ratios": {k: (kinds[k]["longest_n"] or 0) / dense if dense else None
                                         for k in ("strided", "fixed")},
                              "command": "python benchmarks/long_sequences.py " + " ".join(argv)}
    summary["machine"] = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                          "platform": platform.platform(), "load_avg_at_end": os.getloadavg(),
                          "note": "a shared 2-core VM: other jobs were running"}
    summary["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
    out_json.write_text(json.dumps(summary, indent=2))
    out_png = out_json.with_suffix(".png")
    plot(summary, out_png)

    for name in ("images", "audio"):
        if name not in summary:
            continue
        part = summary[name]
        dense = part["results"]["dense"]
        print(f"\n{name} (n = {part['seq_len']:,}, {args.budget_s:.0f} s each): held-out {part['unit']}")
        print(f"| attention | steps | train s | s/step | held-out {part['unit']} | vs dense |")
        print("|---|---:|---:|---:|---:|---:|")
        for kind, res in part["results"].items():
            print(f"| {kind} | {res['steps']} | {res['train_time_s']:.0f} | {res['time_per_step_s']:.2f} | "
                  f"{res['heldout_bits']:.4f} | "
                  f"{res['heldout_bits'] - dense['heldout_bits']:+.4f} |")
    if "longest" in summary:
        part = summary["longest"]
        print(f"\nlongest trainable n within {part['step_budget_s']:g} s per step and {part['memory_gb']:.0f} GB:")
        for kind, res in part["kinds"].items():
            more = " (the search's upper limit)" if res["reached_max_n"] else f" (first failing {res['first_failing_n']:,})"
            print(f"  {kind}: {res['longest_n'] or 0:,}{more}")
        r = part["ratio_best_sparse_to_dense"]
        print(f"ratio longest sparse / longest dense: {r:.1f}x (the paper: about 30x)" if r else "no ratio")
    print(f"wrote {out_json} and {out_png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
