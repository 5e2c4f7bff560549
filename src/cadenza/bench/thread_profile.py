"""Where strided attention's time goes at 1 and 2 threads, on a machine other jobs share.

Times the C++ kernel's forward alone, its backward alone and the whole forward + backward as
``sparse_attention`` runs it (the autograd Function, ``.sum()``, the gradient of the sum),
strided(l), batch 1, 4 heads, head_dim 64, float32, alternating 1 and 2 threads in one process
(each round, each part, a warm-up call then ``--calls`` timed ones). Besides wall time it reads
every thread's CPU time per call (``/proc/self/task/*/schedstat``): on a shared machine wall time
at 2 threads mostly says how often the OS kept a thread off a core, while the busiest thread's
CPU time is about the call's wall time on an idle machine. Run it with OMP_WAIT_POLICY=PASSIVE so
a thread waiting at a barrier sleeps instead of spinning (a spinning wait is CPU time too).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/thread_profile.py --n 16384 --rounds 5

The estimate "2 vs 1" is the 1-thread CPU time over the 2-thread busiest thread's. The rest of
the call (full minus forward minus backward) is what runs outside the kernel.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from cadenza.bench.machine import load_average, thread_cpu_ns


def measure(f) -> tuple[float, float, float]:
    """(wall ms, busiest thread's CPU ms, all threads' CPU ms) of one call."""
    before = thread_cpu_ns()
    t0 = time.perf_counter()
    f()
    wall = time.perf_counter() - t0
    after = thread_cpu_ns()
    per = [(after[t] - before.get(t, 0)) / 1e6 for t in after] or [0.0]
    return 1000 * wall, max(per), sum(per)


def run(n: int = 16384, l: int = 128, rounds: int = 5, calls: int = 3, threads=(1, 2)) -> dict:
    import torch

    from cadenza.attention import kernels, sparse_attention, strided
    from cadenza.attention.cpp import BAND_TILE, CLASS_TILE

    ext = kernels.load()
    if ext is None:
        raise SystemExit("the C++ kernel is unavailable here")
    H, D = 4, 64
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, H, n, D, generator=g) for _ in range(3))
    qf, kf, vf = (t.reshape(H, n, D) for t in (q, k, v))
    dout = torch.randn(H, n, D, generator=g)
    scale = D ** -0.5
    out, lse = ext.strided_forward(qf, kf, vf, l, l, scale, BAND_TILE, CLASS_TILE)
    pattern = strided(l)

    def full():
        qq, kk, vv = (t.detach().requires_grad_() for t in (q, k, v))
        sparse_attention(qq, kk, vv, pattern).sum().backward()

    parts = {
        "forward (kernel)": lambda: ext.strided_forward(qf, kf, vf, l, l, scale, BAND_TILE, CLASS_TILE),
        "backward (kernel)": lambda: ext.strided_backward(dout, qf, kf, vf, out, lse, l, l, scale, BAND_TILE, CLASS_TILE),
        "forward + backward (sparse_attention)": full,
    }
    got = {}
    for _ in range(rounds):
        for t in threads:
            torch.set_num_threads(t)
            for name, f in parts.items():
                f()
                got.setdefault((name, t), []).extend(measure(f) for _ in range(calls))
    med = {key: tuple(statistics.median(x[i] for x in vals) for i in range(3)) for key, vals in got.items()}
    return {"n": n, "l": l, "threads": list(threads), "parts": list(parts), "median": med}


def report(res: dict) -> str:
    t1, t2 = res["threads"][0], res["threads"][-1]
    lines = [f"{'part':<40} {f'{t1}t wall':>9} {f'{t1}t cpu':>9} {f'{t2}t wall':>9} {f'{t2}t busiest':>11} "
             f"{f'{t2}t all':>9} {f'{t2} vs {t1} (cpu est.)':>19}"]
    for name in res["parts"]:
        a, b = res["median"][name, t1], res["median"][name, t2]
        lines.append(f"{name:<40} {a[0]:9.1f} {a[2]:9.1f} {b[0]:9.1f} {b[1]:11.1f} {b[2]:9.1f} {a[2] / b[1]:18.2f}x")
    fw, bw, fu = (res["median"][p, t1][2] for p in res["parts"])
    fw2, bw2, fu2 = (res["median"][p, t2][1] for p in res["parts"])
    lines.append(f"outside the kernel (full - fwd - bwd): {fu - fw - bw:.1f} ms CPU at {t1} thread(s), "
                 f"{fu2 - fw2 - bw2:.1f} ms on the busiest thread at {t2}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=16384)
    p.add_argument("--stride", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=3, help="timed calls per part per round")
    args = p.parse_args(argv)
    if args.n < 1 or args.stride < 1 or args.rounds < 1 or args.calls < 1:
        print("--n, --stride, --rounds and --calls must be positive", file=sys.stderr)
        return 2
    before = load_average()
    res = run(args.n, args.stride, args.rounds, args.calls)
    print(f"strided({args.stride}), n = {args.n}, B1 H4 D64, float32; medians of {args.rounds} x {args.calls} calls; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    print(report(res))
    print(f"load average before / after: {before} / {load_average()} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
