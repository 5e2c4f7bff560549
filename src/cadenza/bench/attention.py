"""Attention benchmark: dense SDPA vs compiled FlexAttention vs Cadenza's factorized path.

"strided" and "fixed" run ``sparse_attention`` as a user gets it (backend "auto": Cadenza's
C++ kernel where it is available); "strided-flash" and "fixed-flash" run the previous path
(PyTorch's flash kernel per layout) for comparison. Fixed methods run once per summary
width c (``--summaries``, default 1 and the paper's 32).

Every (method, n) case runs in its own subprocess, so peak memory is that case's alone and
one case cannot slow the next through allocator state. Within a case: one warm-up call,
then the median of ``repeats`` timed calls, forward only and forward+backward.

Useful FLOPs count only the (i, j) pairs the pattern allows: forward 4*d per pair (q.k and
p.v), forward+backward 3.5x that (the backward recomputes q.k and does four more matmuls).

``--threads 1 2`` runs every case at each thread count and reports the scaling (2 threads vs 1)
as ratios of the same run, by wall time and, where the machine is shared, by the busiest
thread's CPU time (``*_thread_ms``, Linux): with several threads the wall time of a call on an
otherwise idle machine is about that of its busiest thread, whatever else runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from cadenza.bench.machine import load_average, status_mb as _status_mb, thread_cpu_ns, tune_allocator

FULL_NS = [1024, 2048, 4096, 8192, 16384, 32768, 65536]
QUICK_NS = [1024, 2048, 4096]
METHODS = ["dense", "flex-strided", "flex-fixed", "strided", "fixed", "strided-flash", "fixed-flash"]


@dataclass
class Case:
    method: str
    n: int
    c: int = 0  # summary width (fixed methods)
    threads: int = 0  # torch threads the case ran with (0: torch's default)
    fwd_ms: float | None = None
    fwd_bwd_ms: float | None = None
    fwd_cpu_ms: float | None = None  # CPU time of the process per call (median): with one
    fwd_bwd_cpu_ms: float | None = None  # thread, time not lost to other jobs on the machine
    fwd_thread_ms: float | None = None  # CPU time of the busiest thread per call (median, Linux):
    fwd_bwd_thread_ms: float | None = None  # the call's time on an idle machine, about
    peak_mb: float | None = None  # peak resident above the inputs' resident size
    peak_rss_mb: float | None = None  # the process's peak resident size (getrusage)
    useful_gflops: float | None = None
    note: str = ""


def allowed_pairs(kind: str, n: int, l: int, c: int) -> int:
    """Number of (i, j) pairs a pattern allows at length n (closed forms, checked in tests)."""
    i = np.arange(n, dtype=np.int64)
    if kind == "dense":
        return int(n * (n + 1) // 2)
    if kind == "strided":
        return int((np.minimum(i, l) + 1 + i // l - (i >= l)).sum())
    if kind == "fixed":
        return int((i % l + 1 + (i // l) * c).sum())
    raise ValueError(kind)


def _attention_fn(method: str, l: int, c: int, n: int):
    import torch
    import torch.nn.functional as F

    from cadenza.attention import fixed, sparse_attention, strided

    if method == "dense":
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if method.split("-")[0] in ("strided", "fixed"):
        pattern = strided(l) if method.startswith("strided") else fixed(l, c)
        backend = "flash" if method.endswith("-flash") else "auto"
        return lambda q, k, v: sparse_attention(q, k, v, pattern, backend=backend)
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    if method == "flex-strided":
        def mask_mod(b, h, qi, kj):
            return (kj <= qi) & (((qi - kj) <= l) | ((qi - kj) % l == 0))
    else:
        def mask_mod(b, h, qi, kj):
            return (kj <= qi) & (((kj // l) == (qi // l)) | ((kj % l) >= l - c))
    block_mask = create_block_mask(mask_mod, None, None, n, n, device="cpu")
    compiled = torch.compile(flex_attention)
    return lambda q, k, v: compiled(q, k, v, block_mask=block_mask)


def run_case(method: str, n: int, l: int, c: int, repeats: int, heads: int, head_dim: int,
             backward: bool = True, threads: int = 0) -> Case:
    """Measure one case in this process (called in a fresh subprocess by :func:`run`)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    tune_allocator()
    case = Case(method, n, c if "fixed" in method else 0, threads=threads)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, heads, n, head_dim, generator=g) for _ in range(3))
    base_rss = _status_mb("VmRSS")
    try:
        fn = _attention_fn(method, l, c, n)

        def fwd():
            with torch.no_grad():
                fn(q, k, v)

        def fwd_bwd():
            qq, kk, vv = (t.detach().requires_grad_() for t in (q, k, v))
            fn(qq, kk, vv).sum().backward()

        def median_ms(f):
            f()
            times, cpu, busiest = [], [], []
            for _ in range(repeats):
                before = thread_cpu_ns()
                t0, c0 = time.perf_counter(), time.process_time()
                f()
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                after = thread_cpu_ns()
                busiest.append(max((after[t] - before.get(t, 0) for t in after), default=0) / 1e9)
            thread = 1000 * float(np.median(busiest)) if any(busiest) else None
            return 1000 * float(np.median(times)), 1000 * float(np.median(cpu)), thread

        case.fwd_ms, case.fwd_cpu_ms, case.fwd_thread_ms = median_ms(fwd)
        if backward:
            try:
                case.fwd_bwd_ms, case.fwd_bwd_cpu_ms, case.fwd_bwd_thread_ms = median_ms(fwd_bwd)
            except Exception as exc:  # FlexAttention has no CPU backward in some releases
                case.note = f"no backward: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
    except Exception as exc:
        case.note = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
    case.peak_mb = _status_mb("VmHWM") - base_rss
    import resource

    case.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    kind = method.removesuffix("-flash").split("-")[-1]
    pairs = allowed_pairs("dense" if kind == "dense" else kind, n, l, c) * heads
    if case.fwd_bwd_ms:
        case.useful_gflops = 3.5 * 4 * head_dim * pairs / (case.fwd_bwd_ms / 1000) / 1e9
    elif case.fwd_ms:
        case.useful_gflops = 4 * head_dim * pairs / (case.fwd_ms / 1000) / 1e9
    return case


def _run_subprocess(method, n, c, threads, args) -> Case:
    cmd = [sys.executable, "-m", "cadenza.bench.attention", "--worker", method, str(n),
           str(args["l"]), str(c), str(args["repeats"]), str(args["heads"]), str(args["head_dim"]),
           str(threads)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args["case_timeout"])
    except subprocess.TimeoutExpired:
        return Case(method, n, c, threads, note=f"timed out after {args['case_timeout']} s")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return Case(**json.loads(line))
    err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return Case(method, n, c, threads, note=f"crashed: {err[:100]}")


def merge_rounds(rounds: list[list[Case]]) -> list[Case]:
    """One case per (method, n, c, threads): the median over rounds of each measured figure."""
    out = []
    for same in zip(*rounds):
        merged = Case(same[0].method, same[0].n, same[0].c, same[0].threads)
        for f in Case.__dataclass_fields__:
            if f in ("method", "n", "c", "threads"):
                continue
            vals = [getattr(c, f) for c in same if getattr(c, f) is not None]
            if f == "note":
                merged.note = "; ".join(dict.fromkeys(v for v in vals if v))
            elif vals:
                setattr(merged, f, float(np.median(vals)))
        out.append(merged)
    return out


def run(ns, methods, l=128, c=(1,), repeats=3, heads=4, head_dim=64, flex_max_n=16384,
        dense_max_n=65536, case_timeout=900, progress=True, threads=0, flash_max_n=65536,
        rounds=1) -> list[Case]:
    """Every case in its own process; ``threads`` is one count or several (each case at each).
    ``rounds`` > 1 runs the whole list that many times, one case after another (so a change in
    the machine's load hits every case alike), and reports each figure's median over rounds."""
    from tqdm import tqdm

    summaries = (c,) if isinstance(c, int) else tuple(c)
    counts = (threads,) if isinstance(threads, int) else tuple(threads)
    args = dict(l=l, repeats=repeats, heads=heads, head_dim=head_dim, case_timeout=case_timeout)
    todo = []
    for n in ns:
        for m in methods:
            if m.startswith("flex") and n > flex_max_n:
                continue
            if m == "dense" and n > dense_max_n:
                continue
            if m.endswith("-flash") and n > flash_max_n:
                continue
            for cc in (summaries if "fixed" in m else (0,)):
                for t in counts:
                    todo.append((m, n, cc, t))
    done = [[] for _ in range(rounds)]
    bar = tqdm(total=len(todo) * rounds, desc="attention bench", unit="case", disable=not progress, file=sys.stderr)
    for r in range(rounds):
        for m, n, cc, t in todo:
            bar.set_postfix_str(f"{m} n={n}" + (f" c={cc}" if cc else "") + (f" {t} threads" if t else "")
                                + (f" round {r + 1}/{rounds}" if rounds > 1 else ""))
            done[r].append(_run_subprocess(m, n, cc, t, args))
            bar.update()
    bar.close()
    return done[0] if rounds == 1 else merge_rounds(done)


def _fmt(x, spec=".1f"):
    return "-" if x is None else format(x, spec)


def table(cases: list[Case]) -> str:
    dense = {(c.n, c.threads): c for c in cases if c.method == "dense"}
    rows = [f"{'n':>6} {'method':<18} {'thr':>3} {'fwd ms':>9} {'fwd+bwd ms':>11} {'peak MB':>8} {'peak RSS':>8} "
            f"{'useful GF/s':>11} {'vs dense fwd':>12} {'vs dense f+b':>12} {'f+b cpu ms':>10} {'vs dense cpu':>12} "
            f"{'f+b busiest':>11}  note"]
    for c in cases:
        d = dense.get((c.n, c.threads))
        sf = d.fwd_ms / c.fwd_ms if d and d.fwd_ms and c.fwd_ms else None
        sb = d.fwd_bwd_ms / c.fwd_bwd_ms if d and d.fwd_bwd_ms and c.fwd_bwd_ms else None
        sc = d.fwd_bwd_cpu_ms / c.fwd_bwd_cpu_ms if d and d.fwd_bwd_cpu_ms and c.fwd_bwd_cpu_ms else None
        rows.append(f"{c.n:>6} {label(c):<18} {c.threads or '-':>3} {_fmt(c.fwd_ms):>9} {_fmt(c.fwd_bwd_ms):>11} "
                    f"{_fmt(c.peak_mb, '.0f'):>8} {_fmt(c.peak_rss_mb, '.0f'):>8} {_fmt(c.useful_gflops):>11} "
                    f"{_fmt(sf, '.1f') + 'x' if sf else '-':>12} {_fmt(sb, '.1f') + 'x' if sb else '-':>12} "
                    f"{_fmt(c.fwd_bwd_cpu_ms):>10} {_fmt(sc, '.1f') + 'x' if sc else '-':>12} "
                    f"{_fmt(c.fwd_bwd_thread_ms):>11}  {c.note}")
    return "\n".join(rows)


def label(c: Case) -> str:
    return f"{c.method} c={c.c}" if c.c else c.method


def targets(cases: list[Case], threads=0) -> list[tuple[str, str, bool | None]]:
    """The issues' targets: (description, measured, met?) with None where not measured. Cases at
    several thread counts: each count's targets (prefixed "[t threads]"), then the scaling."""
    counts = sorted({c.threads for c in cases})
    if len(counts) <= 1:
        return _targets(cases, counts[0] if counts and counts[0] else (threads if isinstance(threads, int) else 0))
    out = []
    for t in counts:
        out += [(f"[{t or 'default'} threads] {d}", m, ok)
                for d, m, ok in _targets([c for c in cases if c.threads == t], t)]
    return out + scaling(cases)


SCALING_TARGET = 1.7   # strided fwd+bwd at 16k, 2 threads vs 1 (issue 24)


def scaling(cases: list[Case]) -> list[tuple[str, str, bool | None]]:
    """Thread scaling per (method, n): the fewest threads' time over each larger count's, by wall
    time and by the busiest thread's CPU time (the estimate that holds on a shared machine)."""
    by = {(label(c), c.n, c.threads): c for c in cases}
    counts = sorted({c.threads for c in cases if c.threads})
    out = []
    if len(counts) < 2:
        return out
    base = counts[0]
    for m in dict.fromkeys(label(c) for c in cases):
        for n in sorted({c.n for c in cases if label(c) == m}):
            one = by.get((m, n, base))
            for t in counts[1:]:
                more = by.get((m, n, t))
                if not (one and more and one.fwd_bwd_ms and more.fwd_bwd_ms):
                    continue
                wall = one.fwd_bwd_ms / more.fwd_bwd_ms
                est = (one.fwd_bwd_cpu_ms / more.fwd_bwd_thread_ms
                       if one.fwd_bwd_cpu_ms and more.fwd_bwd_thread_ms else None)
                text = f"{wall:.2f}x wall" + (f", {est:.2f}x by busiest-thread CPU" if est else "")
                want = m == "strided" and n == 16384 and (base, t) == (1, 2)
                out.append((f"{m} fwd+bwd at {n}: {t} threads vs {base}"
                            + (f" >= {SCALING_TARGET}x" if want else ""), text,
                            (wall >= SCALING_TARGET) if want else None))
    return out


def _targets(cases: list[Case], threads: int = 0) -> list[tuple[str, str, bool | None]]:
    by = {(label(c), c.n): c for c in cases}
    summaries = sorted({c.c for c in cases if c.c})

    def get(m, n, field):
        c = by.get((m, n))
        return getattr(c, field) if c else None

    out = []
    want = 20
    d, s = get("dense", 16384, "fwd_bwd_ms"), get("strided", 16384, "fwd_bwd_ms")
    r = d / s if d and s else None
    out.append((f"strided fwd+bwd at 16k >= {want}x faster than dense SDPA ({threads or 'default'} threads)",
                f"{r:.1f}x" if r else "not measured", (r >= want) if r else None))
    if threads == 1:  # one thread: CPU time is the time the case ran, whatever else ran too
        d, s = get("dense", 16384, "fwd_bwd_cpu_ms"), get("strided", 16384, "fwd_bwd_cpu_ms")
        r = d / s if d and s else None
        out.append((f"strided fwd+bwd at 16k >= {want}x faster than dense SDPA, CPU time (1 thread)",
                    f"{r:.1f}x" if r else "not measured", (r >= want) if r else None))
    f, s = get("strided-flash", 16384, "fwd_bwd_ms"), get("strided", 16384, "fwd_bwd_ms")
    if f and s:
        out.append(("strided fwd+bwd at 16k: the C++ kernel vs the flash-kernel path", f"{f / s:.2f}x faster", None))
    wide = max(summaries) if summaries else None
    ns = [n for n in sorted({c.n for c in cases}) if 4096 <= n <= 65536]
    ratios = [(n, get(f"fixed c={wide}", n, "fwd_bwd_ms") / get("strided", n, "fwd_bwd_ms"))
              for n in ns if get(f"fixed c={wide}", n, "fwd_bwd_ms") and get("strided", n, "fwd_bwd_ms")]
    if wide:
        out.append((f"fixed c={wide} within 2x of strided at every n from 4k to 64k (fwd+bwd)",
                    ", ".join(f"{n // 1024}k {r:.2f}x" for n, r in ratios) if ratios else "not measured",
                    all(r <= 2 for _, r in ratios) if ratios else None))
    for m in ["strided"] + [f"fixed c={cc}" for cc in summaries]:
        a, b = get(m, 16384, "fwd_bwd_ms"), get(m, 65536, "fwd_bwd_ms")
        g = b / a if a and b else None
        out.append((f"{m} 64k fwd+bwd completes, growth 16k->64k <= 9.2x",
                    f"{g:.2f}x" if g else "not measured", (g <= 9.2) if g else None))
        rss = get(m, 65536, "peak_rss_mb")
        out.append((f"{m} 64k fwd+bwd peak resident < 3 GB (own process)",
                    f"{rss:,.0f} MB" if rss else "not measured", (rss < 3072) if rss else None))
    f, s = get("flex-strided", 16384, "fwd_ms"), get("strided", 16384, "fwd_ms")
    r = f / s if f and s else None
    out.append(("strided fwd at 16k >= 20x faster than compiled FlexAttention",
                f"{r:.1f}x" if r else "not measured", (r >= 20) if r else None))
    return out


def plot(cases: list[Case], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, field, title in ((axes[0], "fwd_ms", "forward"), (axes[1], "fwd_bwd_ms", "forward + backward")):
        for m in dict.fromkeys(label(c) for c in cases):
            pts = [(c.n, getattr(c, field)) for c in cases if label(c) == m and getattr(c, field)]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=m)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length n")
        ax.set_ylabel("time per call (ms, median)")
        ax.set_title(f"attention {title}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    from cadenza.io import save_figure

    save_figure(fig, path)


def save(cases, config, out_dir, stem="attention", threads=0):
    from cadenza.io import write_text_atomic

    os.makedirs(out_dir, exist_ok=True)
    payload = {"config": config, "cases": [asdict(c) for c in cases],
               "targets": [{"target": t, "measured": m, "met": ok} for t, m, ok in targets(cases, threads)]}
    json_path = os.path.join(out_dir, f"{stem}.json")
    write_text_atomic(json_path, json.dumps(payload, indent=2))
    png_path = os.path.join(out_dir, f"{stem}.png")
    plot(cases, png_path)
    return json_path, png_path


def main(argv=None) -> int:
    import argparse
    import platform

    p = argparse.ArgumentParser(
        prog="cadenza bench attention",
        description="Time dense SDPA, compiled FlexAttention and Cadenza's sparse attention "
                    "(batch 1, 4 heads, head_dim 64, float32) over sequence lengths; print a table, "
                    "write JSON and a log-log PNG.")
    add_arguments(p)
    return run_cli(p.parse_args(argv), platform.node())


def add_arguments(p) -> None:
    p.add_argument("--quick", action="store_true", help="n = 1k, 2k, 4k only, no FlexAttention (about a minute)")
    p.add_argument("--ns", type=int, nargs="+", help="sequence lengths (default 1k .. 64k)")
    p.add_argument("--methods", nargs="+", choices=METHODS, help="methods to run (default all)")
    p.add_argument("--stride", type=int, default=128, help="l, the stride / block size (default 128)")
    p.add_argument("--summaries", type=int, nargs="+", default=[1, 32],
                   help="c, summary columns of the fixed pattern; one row per value (default 1 32)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per case; the median is reported (default 3)")
    p.add_argument("--flex-max-n", type=int, default=16384, help="skip FlexAttention above this n (compiles per n)")
    p.add_argument("--dense-max-n", type=int, default=65536, help="skip dense SDPA above this n")
    p.add_argument("--flash-max-n", type=int, default=65536, help="skip the *-flash rows above this n")
    p.add_argument("--threads", type=int, nargs="+", default=[0],
                   help="torch threads per case; several (e.g. 1 2) run every case at each and report "
                        "the scaling (default: torch's default, one per core)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run every case this many times, interleaved, and report medians over rounds (default 1)")
    p.add_argument("--out", default="benchmarks/results", help="folder for JSON and PNG (default benchmarks/results)")


def run_cli(args, host="") -> int:
    from cadenza.errors import ConfigError

    ns = args.ns or (QUICK_NS if args.quick else FULL_NS)
    methods = args.methods or ([m for m in METHODS if not m.startswith("flex")] if args.quick else METHODS)
    if (any(n < 1 for n in ns) or args.stride < 1 or not all(1 <= c <= args.stride for c in args.summaries)
            or args.repeats < 1 or args.rounds < 1 or any(t < 0 for t in args.threads)):
        raise ConfigError("lengths, --stride, --repeats and --rounds must be positive, --threads not negative, "
                          "and 1 <= --summaries <= --stride")
    threads = args.threads[0] if len(args.threads) == 1 else args.threads
    load_before = load_average()
    cases = run(ns, methods, l=args.stride, c=args.summaries, repeats=args.repeats,
                flex_max_n=args.flex_max_n, dense_max_n=args.dense_max_n, threads=threads,
                flash_max_n=args.flash_max_n, rounds=args.rounds)
    print(table(cases))
    print()
    for t, m, ok in targets(cases, threads):
        status = "not measured" if ok is None else ("MET" if ok else "NOT MET")
        print(f"  {status:<12} {t}: {m}")
    from cadenza.attention import kernels

    load_after = load_average()
    config = {"stride": args.stride, "summaries": args.summaries, "repeats": args.repeats, "rounds": args.rounds, "heads": 4,
              "head_dim": 64, "dtype": "float32", "batch": 1, "host": host, "cores": os.cpu_count(),
              "threads": threads or "default", "load_average_before_after": [load_before, load_after],
              "kernel_threaded": kernels.threaded(), "path": "strided/fixed: backend auto (" + ("C++ kernel" if kernels.available() else
                                                       "C++ kernel unavailable: flash kernel per layout") + "); *-flash: flash kernel per layout",
              "command": " ".join(sys.argv)}
    stem = "attention_quick" if args.quick else "attention"
    json_path, png_path = save(cases, config, args.out, stem, threads)
    print(f"\nload average before / after: {load_before} / {load_after} on {os.cpu_count()} cores")
    print(f"command: {config['command']}")
    print(f"wrote {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        m, n, l, c, r, h, d, t = sys.argv[2:10]
        case = run_case(m, int(n), int(l), int(c), int(r), int(h), int(d), threads=int(t))
        print(json.dumps(asdict(case)))
    else:
        sys.exit(main())
