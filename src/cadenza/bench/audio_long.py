"""A raw-audio model trained at n = 65,536 on this CPU, scored against n-gram baselines.

Bach chorales from music21's corpus rendered to 8 kHz mono with the project's SoundFont
(``cadenza.data.samples.write_sample_audio``), 8-bit mu-law (``cadenza data audio``),
and the model of ``benchmarks/configs/audio_65k.json`` (d_model 64, 3 layers, 2 heads,
strided l = 256, factorized (256, 256) positions) trained with ``cadenza.train`` under a
training-time cap (resumable: run it again to continue). Then the held-out split is
scored in non-overlapping windows of n, and the same targets are scored by add-k
unigram, bigram and trigram count models fitted on the training split (the baselines,
measured in the same run).

    python benchmarks/audio_long.py --max-time 1080 --threads 1     # about 20 minutes
    python benchmarks/audio_long.py --quick                         # n = 4,096, 30 s

Writes benchmarks/results/audio_long[_quick].json and .png; the run goes under
runs/audio_long[_quick]/ (or --run-dir).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cadenza.data.audio import build_audio_dataset
from cadenza.data.dataset import eval_offsets
from cadenza.data.format import open_split
from cadenza.data.samples import write_sample_audio
from cadenza.model import SparseTransformer
from cadenza.train import TrainConfig, train
from cadenza.train.metrics import read_log
from cadenza.bench.results import ROOT, RESULTS

CONFIG = ROOT / "benchmarks" / "configs" / "audio_65k.json"


def model_bits(model_dir: Path, val: np.ndarray, n: int) -> tuple[float, list[int]]:
    model = SparseTransformer.load(model_dir).eval()
    total, count, starts = 0.0, 0, [int(s) for s in eval_offsets(len(val), n, 0)]
    with torch.no_grad():
        for o in starts:
            w = torch.from_numpy(np.asarray(val[o:o + n + 1]).astype(np.int64))[None]
            total += float(torch.nn.functional.cross_entropy(model(w[:, :-1])[0], w[0, 1:], reduction="sum"))
            count += n
    return total / count / math.log(2), starts


def ngram_bits(train_tokens: np.ndarray, val: np.ndarray, starts: list[int], n: int, order: int, k: float) -> float:
    """Add-k n-gram bits/sample on the targets the model scored (each window's own history)."""
    t = np.asarray(train_tokens, dtype=np.int64)
    ctx = order - 1
    key_tr = np.zeros(len(t) - ctx, dtype=np.int64)
    for a in range(ctx):
        key_tr = key_tr * 256 + t[a:len(t) - ctx + a]
    counts = np.zeros((256 ** ctx, 256))
    np.add.at(counts, (key_tr, t[ctx:]), 1.0)
    counts += k
    logp = np.log2(counts / counts.sum(axis=1, keepdims=True))
    total, count = 0.0, 0
    for o in starts:
        w = np.asarray(val[o:o + n + 1], dtype=np.int64)
        targets = np.arange(1, n + 1)
        keep = targets >= ctx            # the first targets lack a full history inside the window:
        targets = targets[keep]          # they are scored by the model but skipped here
        key = np.zeros(len(targets), dtype=np.int64)
        for a in range(ctx, 0, -1):
            key = key * 256 + w[targets - a]
        total -= float(logp[key, w[targets]].sum())
        count += len(targets)
    return total / count


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-time", type=float, default=1080.0, help="training seconds (cap)")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--files", type=int, default=40, help="chorales to render")
    p.add_argument("--threads", type=int)
    p.add_argument("--run-dir", type=Path)
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    suffix = "_quick" if args.quick else ""
    work = ROOT / "runs" / f"audio_long{suffix}"
    data = args.data_dir or work / "data"
    run = args.run_dir or work / "run"
    config = json.loads(CONFIG.read_text())
    if args.quick:
        config.update(max_len=4096, stride=64, position_shape=[64, 64])
        args.files, args.max_time, args.steps = 2, 30.0, 40
    if not (data / "meta.json").exists():
        write_sample_audio(work / "wavs", count=args.files, sample_rate=8000)
        build_audio_dataset(work / "wavs", data, sample_rate=8000, val_fraction=0.05)
    n = config["max_len"]
    t0 = time.perf_counter()
    result = train(TrainConfig(data=str(data), out=str(run), model_config=config, resume=True, steps=args.steps,
                               batch_size=1, lr=args.lr, warmup_steps=10, eval_every=50, eval_windows=4,
                               save_every=25, max_time_s=args.max_time, progress=False, tensorboard=False))
    wall = time.perf_counter() - t0
    train_tokens, val = open_split(data, "train"), open_split(data, "val")
    bits, starts = model_bits(run / "model", val, n)
    baselines = {f"{o}-gram": ngram_bits(train_tokens, val, starts, n, o, k)
                 for o, k in ((1, 1.0), (2, 0.1), (3, 0.05))}
    recs = read_log(run)
    tr = [r for r in recs if r["split"] == "train" and r.get("loss") is not None]
    ev = [r for r in recs if r["split"] == "eval"]
    summary = {
        "command": "python benchmarks/audio_long.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "n": n, "model_config": config, "parameters": sum(p.numel() for p in SparseTransformer.load(run / "model").parameters()),
        "steps": tr[-1]["step"], "train_time_s": tr[-1]["time"], "samples_seen": tr[-1]["tokens"],
        "train_samples": len(train_tokens), "heldout_windows": len(starts), "heldout_samples": len(starts) * n,
        "heldout_bits_per_sample": bits, "baselines_bits_per_sample": baselines, "reason": result.reason,
        "curve": [(r["time"], r["loss"]) for r in ev], "wall_s_this_session": wall,
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "platform": platform.platform(), "load_avg_at_end": os.getloadavg(),
                    "note": "a shared 2-core VM: other jobs were running"},
    }
    results = RESULTS
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"audio_long{suffix}.json"
    out.write_text(json.dumps(summary, indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    ax.plot([r["time"] for r in tr], [r["loss"] for r in tr], lw=0.8, alpha=0.6, label="train (one window)")
    if ev:
        ax.plot(*zip(*summary["curve"]), marker="o", label="held-out (4 windows)")
    for name, b in baselines.items():
        ax.axhline(b, ls="--", lw=1, color={"1-gram": "gray", "2-gram": "tab:red", "3-gram": "tab:purple"}[name],
                   label=f"{name}: {b:.3f}")
    ax.axhline(bits, color="black", lw=1, label=f"model, all held-out windows: {bits:.3f}")
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("bits per sample")
    ax.set_title(f"8 kHz mu-law audio, n = {n:,}, strided l = {config['stride']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"))
    plt.close(fig)
    print(f"n = {n:,}: {summary['steps']} steps, {summary['train_time_s']:.0f} s of training, "
          f"{summary['samples_seen']:,} samples seen")
    print(f"held-out bits/sample over {len(starts)} windows ({len(starts) * n:,} samples): model {bits:.4f}; "
          + ", ".join(f"{k} {v:.4f}" for k, v in baselines.items()))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0
