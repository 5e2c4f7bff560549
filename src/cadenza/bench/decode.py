"""Decode benchmark: per-token time of the sparse KV cache vs dense attention with a full cache.

One model (d_model 256, 6 layers, 4 heads, vocab 256, stride 128, the ``bench`` preset) with
the same weights is decoded one token at a time at several context lengths, once with its
sparse pattern and sparse cache and once with dense attention and a full KV cache, in the
same process, interleaved round by round so both see the same machine load.

The cache at context n is filled with random keys and values (a step's cost depends on the
shapes, not the values; really encoding 64k tokens with dense attention would take hours on
a CPU). ``--check-prefill`` also times steps after a real prefill at the smallest context,
to show the synthetic state costs the same. Contexts are centred: the timed steps run from
n - s/2 to n + s/2.

    python benchmarks/decode.py            # contexts 1k, 4k, 16k, 64k
    python benchmarks/decode.py --quick    # contexts 1k, 4k; fewer steps
    python benchmarks/decode.py --contexts 16384 --threads 1 2          # thread scaling, same run
    python benchmarks/decode.py --contexts 16384 --model music --decode-weights int8
                                           # the shipped music model's shape, stretched to 16k

``--threads 1 2`` times every context at each thread count, the counts alternating within
each round on the same caches, and prints each one's time and the ratios between them.
``--model music`` uses the shipped music model's configuration (``models/DEFAULT``; random
weights, as a step's cost depends on the shapes) with ``max_len`` stretched to the contexts.

Prints a table, writes benchmarks/results/decode[_quick].json and .png.
Targets (issue 4): at 16k at least 10x faster per token than dense; at 64k the sparse
per-token time at most 2x its 4k value.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time

import torch

from cadenza.io import save_figure
from cadenza.model import SparseTransformer
from cadenza.presets import bench
from cadenza.bench.machine import load_average
from cadenza.bench.results import RESULTS, run_header, write_json_and_plot

FULL_CONTEXTS = [1024, 4096, 16384, 65536]
QUICK_CONTEXTS = [1024, 4096]


def fill_cache(model, cache, n: int, generator: torch.Generator, chunk: int = 8192) -> None:
    """Put n positions of random keys/values into every layer's cache (synthetic context)."""
    hd = model.config.head_dim
    for layer in cache.layers:
        for group in layer:
            for s in range(0, n, chunk):
                m = min(chunk, n - s)
                k = torch.randn(cache.batch_size, group.h1 - group.h0, m, hd, generator=generator)
                v = torch.randn(cache.batch_size, group.h1 - group.h0, m, hd, generator=generator)
                group.cache.append(k, v, s)
    cache.length = n


def time_steps(model, cache, steps: int, generator: torch.Generator) -> list[float]:
    """Seconds per decode step (one token per sequence) for ``steps`` steps."""
    vocab = model.config.vocab_size
    tokens = torch.randint(0, vocab, (steps, cache.batch_size, 1), generator=generator)
    out = []
    gc.disable()  # no collector pauses inside the timed steps
    try:
        with torch.inference_mode():
            for t in range(steps):
                start = time.perf_counter()
                model(tokens[t], cache=cache)
                out.append(time.perf_counter() - start)
    finally:
        gc.enable()
    return out


def keys_per_token(model, cache) -> float:
    """Keys one decode step reads, averaged over layers (head groups summed)."""
    cache.reset_counters()
    with torch.inference_mode():
        model(torch.zeros(cache.batch_size, 1, dtype=torch.long), cache=cache)
    per_layer = cache.keys_read_per_layer()
    return sum(per_layer) / len(per_layer)


def model_config(model: str, attention: str, max_len: int):
    """The benchmark model ("bench" preset) or the shipped music model's shape, at ``max_len``."""
    if model == "bench":
        return bench(attention=attention, max_len=max_len)
    import json

    from cadenza.config import ModelConfig
    from cadenza.music.registry import default_model_dir

    meta = json.loads((default_model_dir() / "config.json").read_text())
    cfg = ModelConfig.from_dict(meta["config"])
    return cfg.replace(max_len=max_len, dropout=0.0, **({} if attention == cfg.attention else {"attention": attention}))


def run(contexts, steps: int, rounds: int, warmup: int, batch: int, attention: str,
        check_prefill: bool, seed: int = 0, weights: str = "float32", threads=(1,), model: str = "bench"):
    threads = tuple(threads)
    total = warmup + (steps * rounds + 1) * len(threads)
    max_len = max(contexts) + total
    sparse_cfg = model_config(model, attention, max_len)
    dense_cfg = sparse_cfg.replace(attention="dense")
    torch.manual_seed(seed)
    sparse = SparseTransformer(sparse_cfg).eval()
    dense = SparseTransformer(dense_cfg).eval()
    dense.load_state_dict(sparse.state_dict())  # the same weights; only attention differs
    for model in (sparse, dense):
        model.set_decode_weights(weights)
    for model in (sparse, dense):  # warm up allocator, caches and lazy state once
        cache = model.new_cache(batch)
        fill_cache(model, cache, 256, torch.Generator().manual_seed(seed))
        time_steps(model, cache, 2 * warmup, torch.Generator().manual_seed(seed))
    rows = []
    for n in contexts:
        g = torch.Generator().manual_seed(seed + n)
        start_len = max(1, n - (steps * rounds * len(threads)) // 2 - warmup)
        caches = {}
        for name, model in (("sparse", sparse), ("dense", dense)):
            cache = model.new_cache(batch)
            fill_cache(model, cache, start_len, g)
            time_steps(model, cache, warmup, g)
            caches[name] = cache
        times = {(name, t): [] for name in ("sparse", "dense") for t in threads}
        for _ in range(rounds):
            for t in threads:
                torch.set_num_threads(t)
                for name, model in (("sparse", sparse), ("dense", dense)):
                    times[name, t] += time_steps(model, caches[name], steps, g)
        for t in threads:
            row = {"context": n, "batch": batch, "threads": t}
            for name, model in (("sparse", sparse), ("dense", dense)):
                ms = statistics.median(times[name, t]) * 1e3
                row[f"{name}_ms_per_step"] = ms
                row[f"{name}_min_ms_per_step"] = min(times[name, t]) * 1e3
                row[f"{name}_tokens_per_s"] = batch * 1e3 / ms
                row[f"{name}_cache_mb"] = caches[name].nbytes() / 2**20
                row[f"{name}_keys_per_token"] = keys_per_token(model, caches[name])
            row["speedup"] = row["dense_ms_per_step"] / row["sparse_ms_per_step"]
            rows.append(row)
            print(f"  context {n:>6}, {t} thread(s): sparse {row['sparse_ms_per_step']:.2f} ms, "
                  f"dense {row['dense_ms_per_step']:.2f} ms, {row['speedup']:.1f}x", flush=True)
        del caches
    prefill = None
    if check_prefill:
        prefill = check_real_prefill(sparse, min(contexts), steps, batch, seed)
    return rows, prefill, sparse_cfg


def check_real_prefill(model, n: int, steps: int, batch: int, seed: int) -> dict:
    """Step time after a real prefill of n tokens vs after a synthetic fill, same model."""
    g = torch.Generator().manual_seed(seed)
    real = model.new_cache(batch)
    with torch.inference_mode():
        model(torch.randint(0, model.config.vocab_size, (batch, n), generator=g), cache=real)
    synthetic = model.new_cache(batch)
    fill_cache(model, synthetic, n, g)
    a, b = [], []
    for _ in range(3):
        a += time_steps(model, real, steps, g)
        b += time_steps(model, synthetic, steps, g)
    return {"context": n, "real_prefill_ms": statistics.median(a) * 1e3,
            "synthetic_fill_ms": statistics.median(b) * 1e3}


def targets(rows) -> list[tuple[str, str, bool | None]]:
    counts = sorted({r.get("threads", 1) for r in rows}) or [1]
    out = []
    for t in counts:
        by_n = {r["context"]: r for r in rows if r.get("threads", 1) == t}
        tag = f" ({t} thread{'s' if t != 1 else ''})" if len(counts) > 1 else ""
        if 16384 in by_n:
            s = by_n[16384]["speedup"]
            out.append((f"at 16k at least 10x faster per token than dense{tag}", f"{s:.1f}x", s >= 10))
        else:
            out.append((f"at 16k at least 10x faster per token than dense{tag}", "not measured", None))
        if 65536 in by_n and 4096 in by_n:
            r = by_n[65536]["sparse_ms_per_step"] / by_n[4096]["sparse_ms_per_step"]
            out.append((f"sparse per-token time at 64k at most 2x its 4k value{tag}", f"{r:.2f}x", r <= 2))
        else:
            out.append((f"sparse per-token time at 64k at most 2x its 4k value{tag}", "not measured", None))
    return out


def scaling(rows) -> list[str]:
    """Per context: each thread count's time over the fewest threads' (same run, same caches)."""
    counts = sorted({r.get("threads", 1) for r in rows})
    lines = []
    for n in dict.fromkeys(r["context"] for r in rows):
        by_t = {r.get("threads", 1): r for r in rows if r["context"] == n}
        base = by_t[counts[0]]
        for t in counts[1:]:
            if t in by_t:
                r = {f"{name}{kind}": base[f"{name}{kind}_ms_per_step"] / by_t[t][f"{name}{kind}_ms_per_step"]
                     for name in ("sparse", "dense") for kind in ("", "_min")}
                lines.append(f"context {n}: {t} threads vs {counts[0]}: sparse {r['sparse']:.2f}x, dense "
                             f"{r['dense']:.2f}x faster (medians); fastest steps: sparse {r['sparse_min']:.2f}x, "
                             f"dense {r['dense_min']:.2f}x")
    return lines


def table(rows) -> str:
    head = (f"{'context':>8} {'thr':>3} {'sparse ms/step':>14} {'dense ms/step':>13} {'speedup':>8} "
            f"{'sparse tok/s':>13} {'dense tok/s':>12} {'sparse keys':>12} {'dense keys':>11} "
            f"{'sparse MB':>10} {'dense MB':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['context']:>8} {r.get('threads', 1):>3} {r['sparse_ms_per_step']:>14.2f} {r['dense_ms_per_step']:>13.2f} "
            f"{r['speedup']:>7.1f}x {r['sparse_tokens_per_s']:>13.1f} "
            f"{r['dense_tokens_per_s']:>12.1f} {r['sparse_keys_per_token']:>12.0f} "
            f"{r['dense_keys_per_token']:>11.0f} {r['sparse_cache_mb']:>10.1f} "
            f"{r['dense_cache_mb']:>9.1f}")
    return "\n".join(lines)


def plot(rows, path, title) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    counts = sorted({r.get("threads", 1) for r in rows})
    for t in counts:
        mine = [r for r in rows if r.get("threads", 1) == t]
        tag = f", {t} thread{'s' if t != 1 else ''}" if len(counts) > 1 else ""
        ns = [r["context"] for r in mine]
        ax.plot(ns, [r["sparse_ms_per_step"] for r in mine], "o-", label=f"sparse cache{tag}")
        ax.plot(ns, [r["dense_ms_per_step"] for r in mine], "s-", label=f"dense, full KV cache{tag}")
    for r in rows:
        ax.annotate(f"{r['speedup']:.1f}x", (r["context"], r["dense_ms_per_step"]),
                    textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("ms per decode step, one token per sequence (median)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="contexts 1k and 4k, fewer steps")
    p.add_argument("--contexts", type=lambda s: [int(x) for x in s.split(",")], default=None,
                   help="comma-separated context lengths (default 1024,4096,16384,65536)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per round (default 16)")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 8)")
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--batch", type=int, default=1, help="sequences decoded together")
    p.add_argument("--attention", default="strided", choices=["strided", "fixed"])
    p.add_argument("--threads", type=int, nargs="+", default=[1],
                   help="torch threads (default 1); several (e.g. 1 2) alternate within each round "
                        "and the ratios are printed")
    p.add_argument("--model", default="bench", choices=["bench", "music"],
                   help="the bench preset (d256, 6 layers) or the shipped music model's shape stretched")
    p.add_argument("--decode-weights", default="float32", choices=["float32", "int8"],
                   help="weights of the one-token steps, for both models (int8: cadenza.quant)")
    p.add_argument("--check-prefill", action="store_true",
                   help="also compare steps after a real prefill with the synthetic fill")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    contexts = args.contexts or (QUICK_CONTEXTS if args.quick else FULL_CONTEXTS)
    steps = args.steps or (12 if args.quick else 16)
    rounds = args.rounds or (3 if args.quick else 8)
    if any(t < 1 for t in args.threads):
        p.error("--threads must be positive")
    torch.set_num_threads(args.threads[0])
    print(f"decode benchmark: {args.attention} vs dense, {args.model} model, batch {args.batch}, "
          f"threads {' and '.join(map(str, args.threads))}, {rounds} rounds x {steps} steps, "
          f"{args.decode_weights} weights", flush=True)
    t0 = time.time()
    load_before = load_average()
    rows, prefill, config = run(contexts, steps, rounds, args.warmup, args.batch, args.attention,
                                args.check_prefill, weights=args.decode_weights, threads=args.threads,
                                model=args.model)
    load_after = load_average()
    print()
    print(table(rows))
    checks = targets(rows)
    print()
    for line in scaling(rows):
        print(f"  scaling: {line}")
    for name, value, ok in checks:
        verdict = "n/a" if ok is None else ("MET" if ok else "MISSED")
        print(f"  target: {name}: {value} ({verdict})")
    if prefill:
        print(f"  real prefill vs synthetic fill at {prefill['context']}: "
              f"{prefill['real_prefill_ms']:.2f} vs {prefill['synthetic_fill_ms']:.2f} ms/step")
    stem = "decode_quick" if args.quick else "decode"
    if args.model != "bench":
        stem += f"_{args.model}"
    if len(args.threads) > 1:
        stem += "_threads"
    if args.batch != 1:
        stem += f"_b{args.batch}"
    if args.decode_weights != "float32":
        stem += f"_{args.decode_weights}"
    payload = {
        **run_header("decode"),
        "threads": args.threads if len(args.threads) > 1 else args.threads[0],
        "decode_weights": args.decode_weights,
        "model_kind": args.model,
        "load_average_before_after": [load_before, load_after],
        "command": "python benchmarks/decode.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": config.to_dict(),
        "steps": steps, "rounds": rounds, "batch": args.batch,
        "seconds": round(time.time() - t0, 1),
        "results": rows,
        "targets": [{"target": n, "value": v, "met": ok} for n, v, ok in checks],
        "prefill_check": prefill,
    }
    title = (f"decode, d_model {config.d_model}, {config.n_layers} layers, {config.n_heads} heads, "
             f"batch {args.batch}, {args.decode_weights} weights, {'/'.join(map(str, args.threads))} thread(s), "
             f"torch {torch.__version__}")
    json_path, png_path = write_json_and_plot(args.out, stem, payload, lambda png: plot(rows, png, title))
    print(f"\nload average before / after: {load_before} / {load_after} on {os.cpu_count()} cores")
    print(f"command: {payload['command']}")
    print(f"wrote {json_path} and {png_path}")
    return 0
