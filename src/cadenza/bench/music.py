"""Music speed benchmark: compose 60 seconds of music, MIDI file included, on the CPU.

For each case (by default "any style": the model chooses style, key, metre and mood; and
"bach": four-voice chorale texture, the densest music in the corpus) and each seed, it times
``cadenza.music.compose(seconds=60, tempo=120)`` plus writing the MIDI file (no audio
rendering), and the time until the first bar is finished. The model is loaded once before
timing (loading is a one-off cost per process, reported separately). A warm-up piece is
composed first and not counted.

Pieces are composed the way the CLI does by default: one-token decoding steps with int8
weights (``cadenza.quant``). Baselines, measured in the same run on the same model and seeds:
the same ``compose`` with the exact float32 weights (``--exact`` in the CLI; its pieces differ
slightly because the probabilities do), ``cadenza.sampling.generate`` asked for the same
number of tokens with float32 weights and no grammar (the plain library sampler, which the
music layer would be without its constraint and shortcuts), and real time (60 s).

    python benchmarks/music.py                    # the default model in models/
    python benchmarks/music.py --model DIR        # any music model directory
    python benchmarks/music.py --quick            # 2 seeds, 20 s; trains a throwaway tiny model
                                                  # when no model is installed

Prints a table, writes benchmarks/results/music[_quick].json and .png.
Targets (issue 10): 60 s of music in at most 2 s including MIDI writing; the first bar
within 0.15 s (medians).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from cadenza import __version__
from cadenza.io import atomic_path, write_text_atomic
from cadenza.bench.results import RESULTS

TARGET_TOTAL_S = 2.0   # issue 10 (was 3 s in issue 6)
TARGET_FIRST_BAR_S = 0.15   # issue 10 (was 0.5 s)
CASES = {"any style": {}, "bach": {"style": "bach"}}


def throwaway_model(workdir: Path) -> Path:
    """Train a tiny music model for a few seconds on a few Bach chorales (for --quick)."""
    import numpy as np
    from music21 import converter

    from cadenza.codecs.music import MusicCodec
    from cadenza.data.format import write_dataset
    from cadenza.data.music import m21_to_score, music21_corpus_dir
    from cadenza.train import train

    codec = MusicCodec()
    root = music21_corpus_dir()
    seqs = [np.asarray(codec.encode(m21_to_score(converter.parse(str(root / rel), forceSource=True))[0],
                                    style="bach"), dtype=np.int64)
            for rel in ("bach/bwv2.6.mxl", "bach/bwv20.11.mxl", "bach/bwv226.2.mxl", "bach/bwv66.6.mxl")]
    data = workdir / "data"
    write_dataset(data, {"train": np.concatenate(seqs[:-1]), "val": seqs[-1]}, codec.vocab_size, modality="music")
    train(data=str(data), out=str(workdir / "run"), preset="tiny", model_overrides={"max_len": 1024, "stride": 32},
          seq_len=256, batch_size=8, steps=40, lr=3e-3, warmup_steps=4, eval_every=0, eval_windows=2,
          save_every=0, keep_last=1, progress=False, tensorboard=False)
    model_dir = workdir / "throwaway-tiny"
    shutil.copytree(workdir / "run" / "model", model_dir)
    codec.save(model_dir / "tokenizer.json")
    return model_dir


def one_run(mm, settings: dict, seconds: float, seed: int, out_dir: Path, weights: str = "int8") -> dict:
    from cadenza.music.composition import compose
    from cadenza.music.output import write_piece

    mm.network.set_decode_weights(weights)
    bars = []
    t0 = time.perf_counter()
    piece = compose(mm, seconds=seconds, seed=seed, on_bar=lambda n, t: bars.append(t), **settings)
    write_piece(piece, out_dir / f"run{seed}.mid", audio=False, command="benchmarks/music.py")
    total = time.perf_counter() - t0
    music_s = piece.seconds
    ts = tuple(int(x) for x in piece.conditioning["time_signature"].split("/"))
    bar_s = ts[0] * 4 / ts[1] * 60.0 / piece.tempo
    return {"seed": seed, "tokens": piece.generated_tokens, "music_s": round(music_s, 2), "total_s": total,
            "compose_s": piece.elapsed_s, "write_s": total - piece.elapsed_s,
            "first_bar_s": piece.first_bar_s, "ms_per_token": 1e3 * piece.elapsed_s / max(1, piece.generated_tokens),
            "realtime_x": music_s / total if total else None, "bars": piece.bars, "stopped": piece.stopped,
            "conditioning": piece.conditioning, "bar_times_s": [round(t, 4) for t in bars],
            "bar_seconds": bar_s}


def baseline_run(mm, tokens: int, seed: int) -> dict:
    from cadenza.sampling import generate

    mm.network.set_decode_weights("float32")
    t0 = time.perf_counter()
    out = generate(mm.network, [mm.codec.bos_id], tokens, temperature=1.0, top_p=0.95, seed=seed)
    dt = time.perf_counter() - t0
    return {"seed": seed, "tokens": len(out), "total_s": dt, "ms_per_token": 1e3 * dt / max(1, len(out))}


def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def table(results: dict, seconds: float) -> str:
    lines = [f"{'case':<10} {'seed':>4} {'tokens':>6} {'music s':>7} {'total s':>7} {'1st bar s':>9} "
             f"{'ms/token':>8} {'x real time':>11} {'f32 ms/token':>12} {'plain generate s':>16} {'stop':>6}"]
    for case, res in results.items():
        for r, e, b in zip(res["runs"], res["exact"], res["baseline"]):
            lines.append(f"{case:<10} {r['seed']:>4} {r['tokens']:>6} {r['music_s']:>7.1f} {r['total_s']:>7.2f} "
                         f"{r['first_bar_s']:>9.3f} {r['ms_per_token']:>8.2f} {r['realtime_x']:>10.1f}x "
                         f"{e['ms_per_token']:>12.2f} {b['total_s']:>16.2f} {r['stopped']:>6}")
        s = res["summary"]
        lines.append(f"{case:<10} {'med':>4} {s['tokens']:>6.0f} {s['music_s']:>7.1f} {s['total_s']:>7.2f} "
                     f"{s['first_bar_s']:>9.3f} {s['ms_per_token']:>8.2f} {s['realtime_x']:>10.1f}x "
                     f"{s['exact_ms_per_token']:>12.2f} {s['baseline_total_s']:>16.2f}")
        lines.append(f"{'':<10} int8 / float32 decoding, ms per token (median of per-seed ratios): "
                     f"{s['int8_over_float32']:.2f}")
    return "\n".join(lines)


def plot(results: dict, seconds: float, path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    for k, (case, res) in enumerate(results.items()):
        for j, r in enumerate(res["runs"]):
            ts = [0.0] + r["bar_times_s"]
            music = [min(i * r["bar_seconds"], r["music_s"]) for i in range(len(ts))]
            ts.append(r["total_s"])
            music.append(r["music_s"])
            ax.plot(ts, music, "-", color=f"C{k}", alpha=0.7, label=case if j == 0 else None)
    ax.axline((0, 0), slope=seconds / TARGET_TOTAL_S, color="k", ls="--", lw=1,
              label=f"target: {seconds / TARGET_TOTAL_S:.0f}x real time")
    ax.plot([TARGET_FIRST_BAR_S], [0], "k|", ms=12)
    ax.set_xlabel("wall-clock seconds (compose + MIDI file)")
    ax.set_ylabel("seconds of music finished")
    ax.set_xlim(left=0)
    ax.set_ylim(0, seconds * 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1]
    names = list(results)
    x = range(len(names))
    tot = [results[c]["summary"]["total_s"] for c in names]
    base = [results[c]["summary"]["baseline_total_s"] for c in names]
    first = [results[c]["summary"]["first_bar_s"] for c in names]
    exact = [results[c]["summary"]["exact_total_s"] for c in names]
    w = 0.2
    ax.bar([i - 1.5 * w for i in x], tot, w, label="compose 60 s + MIDI, int8 decoding (median)")
    ax.bar([i - 0.5 * w for i in x], exact, w, label="the same with float32 weights (--exact)")
    ax.bar([i + 0.5 * w for i in x], base, w, label="plain generate(), same tokens, float32")
    ax.bar([i + 1.5 * w for i in x], first, w, label="first bar (median)")
    ax.axhline(TARGET_TOTAL_S, color="k", ls="--", lw=1, label=f"target {TARGET_TOTAL_S:g} s")
    ax.axhline(TARGET_FIRST_BAR_S, color="grey", ls=":", lw=1, label=f"first-bar target {TARGET_FIRST_BAR_S:g} s")
    ax.set_xticks(list(x))
    ax.set_xticklabels(names)
    ax.set_ylabel("seconds")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="music model directory (default: the default model in models/)")
    p.add_argument("--quick", action="store_true",
                   help="2 seeds of 20 s; trains a throwaway tiny model if no model is installed or given")
    p.add_argument("--seconds", type=float, default=None, help="seconds of music per piece (default 60)")
    p.add_argument("--runs", type=int, default=None, help="seeds per case (default 5)")
    p.add_argument("--tempo", type=float, default=120.0, help="tempo of every piece (default 120 bpm)")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated cases from {', '.join(CASES)}")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the CLI)")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    seconds = args.seconds or (20.0 if args.quick else 60.0)
    runs = args.runs or (2 if args.quick else 5)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for c in cases:
        if c not in CASES:
            p.error(f"unknown case {c!r}; choose from {', '.join(CASES)}")
    torch.set_num_threads(args.threads)

    from cadenza.errors import CadenzaError
    from cadenza.music.load import load_model
    from cadenza.music.registry import default_model_dir

    work = Path(tempfile.mkdtemp(prefix="cadenza-music-bench-"))
    try:
        model_dir = Path(args.model) if args.model else None
        if model_dir is None:
            try:
                model_dir = default_model_dir()
            except CadenzaError:
                if not args.quick:
                    print("no music model installed: pass --model DIR, or --quick to time a throwaway tiny model",
                          file=sys.stderr)
                    return 2
                print("no music model installed; training a throwaway tiny model for --quick ...", flush=True)
                model_dir = throwaway_model(work)
        t0 = time.perf_counter()
        mm = load_model(model_dir)
        load_s = time.perf_counter() - t0
        cfg = mm.network.config
        print(f"music benchmark: model {mm.name}@{mm.digest} ({mm.network.num_params() / 1e6:.2f}M parameters, "
              f"d_model {cfg.d_model}, {cfg.n_layers} layers, {cfg.attention}, context {cfg.max_len}); loaded in "
              f"{load_s:.2f} s; {seconds:g} s of music at {args.tempo:g} bpm, {runs} seeds per case, "
              f"{args.threads} thread(s); load average {os.getloadavg()[0]:.1f}", flush=True)
        from cadenza.music.composition import compose

        for weights in ("float32", "int8"):   # warm-up, not counted
            mm.network.set_decode_weights(weights)
            compose(mm, seconds=4, seed=12345, tempo=args.tempo)
        results = {}
        for case in cases:
            settings = dict(CASES[case], tempo=args.tempo)
            rows, exact, base = [], [], []
            for seed in range(runs):
                r = one_run(mm, settings, seconds, seed, work)
                e = one_run(mm, settings, seconds, seed, work, weights="float32")
                b = baseline_run(mm, r["tokens"], seed)
                rows.append(r)
                exact.append(e)
                base.append(b)
                print(f"  {case}, seed {seed}: {r['tokens']} tokens, {r['music_s']:.1f} s of music in "
                      f"{r['total_s']:.2f} s (first bar {r['first_bar_s']:.3f} s); float32 weights "
                      f"{e['ms_per_token']:.2f} ms/token vs int8 {r['ms_per_token']:.2f}; plain generate "
                      f"{b['total_s']:.2f} s", flush=True)
            summary = {k: med(rows, k) for k in ("tokens", "music_s", "total_s", "compose_s", "write_s",
                                                  "first_bar_s", "ms_per_token", "realtime_x")}
            summary["exact_total_s"] = med(exact, "total_s")
            summary["exact_ms_per_token"] = med(exact, "ms_per_token")
            summary["int8_over_float32"] = statistics.median(
                r["ms_per_token"] / e["ms_per_token"] for r, e in zip(rows, exact))
            summary["baseline_total_s"] = med(base, "total_s")
            summary["baseline_ms_per_token"] = med(base, "ms_per_token")
            results[case] = {"settings": settings, "runs": rows, "exact": exact, "baseline": base,
                             "summary": summary}
        print()
        print(table(results, seconds))
        checks = []
        for case, res in results.items():
            s = res["summary"]
            per60 = s["total_s"] * 60.0 / seconds
            checks.append((f"{case}: 60 s of music in at most {TARGET_TOTAL_S:g} s",
                           f"{per60:.2f} s" + ("" if seconds == 60 else f" (scaled from {seconds:g} s)"),
                           per60 <= TARGET_TOTAL_S))
            checks.append((f"{case}: first bar within {TARGET_FIRST_BAR_S:g} s", f"{s['first_bar_s']:.3f} s",
                           s["first_bar_s"] <= TARGET_FIRST_BAR_S))
        print()
        for name, value, ok in checks:
            print(f"  target: {name}: {value} ({'MET' if ok else 'MISSED'})")
        stem = "music_quick" if args.quick else "music"
        payload = {
            "benchmark": "music", "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
            "cadenza_version": __version__, "torch": torch.__version__, "host": platform.node(),
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(), "threads": args.threads,
            "model": {"name": mm.name, "digest": mm.digest, "path": str(model_dir), "parameters": mm.network.num_params(),
                      "config": cfg.to_dict()},
            "load_s": load_s, "seconds_of_music": seconds, "tempo": args.tempo, "runs": runs,
            "results": results,
            "targets": [{"target": n, "value": v, "met": ok} for n, v, ok in checks],
        }
        os.makedirs(args.out, exist_ok=True)
        json_path = os.path.join(args.out, f"{stem}.json")
        png_path = os.path.join(args.out, f"{stem}.png")
        write_text_atomic(json_path, json.dumps(payload, indent=2, default=str) + "\n")
        plot(results, seconds, png_path,
             f"compose {seconds:g} s of music at {args.tempo:g} bpm + MIDI; model {mm.name} "
             f"({mm.network.num_params() / 1e6:.1f}M params), {args.threads} thread(s), torch {torch.__version__}")
        print(f"\nwrote {json_path} and {png_path}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
