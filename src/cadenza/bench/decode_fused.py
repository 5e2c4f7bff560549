"""Fused decode benchmark: the C++ one-token step vs the Python step, on the shipped music model.

For each decode-weight kind (float32, int8) and context length, the same cache state is
decoded ``--steps`` tokens one at a time with the fused C++ step (``cadenza.attention.kernels``
``decode_step``: every layer in one call) and with the Python step (about 30 op calls per
layer), interleaved round by round (``--rounds``, medians) so both see the same machine load.
The baseline is the Python step measured in the same run; the ratio is printed.

    python benchmarks/decode_fused.py                 # contexts 256, 1024, 1900; 5 rounds
    python benchmarks/decode_fused.py --quick

Writes benchmarks/results/decode_fused.json. Needs the kernel built (this script builds it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from cadenza.bench.results import RESULTS



def time_steps(model, prefix, tokens, fused: bool) -> float:
    model.__dict__["_no_fused"] = not fused
    try:
        with torch.inference_mode():
            cache = model.new_cache(1)
            model(prefix, cache=cache)
            t0 = time.perf_counter()
            for t in range(tokens.shape[1]):
                model(tokens[:, t:t + 1], cache=cache)
            return (time.perf_counter() - t0) / tokens.shape[1] * 1000
    finally:
        model.__dict__["_no_fused"] = False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--contexts", type=int, nargs="+", default=[256, 1024, 1900])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.contexts, args.steps, args.rounds = [256], 50, 3
    from cadenza.attention import kernels
    from cadenza.music.load import load_model

    torch.set_num_threads(args.threads)
    if kernels.load() is None:
        print("benchmarks/decode_fused.py: error: the C++ kernel did not build", file=sys.stderr)
        return 2
    mm = load_model(cache=False)
    model = mm.network
    g = torch.Generator().manual_seed(0)
    rows = []
    for kind in ("float32", "int8"):
        model.set_decode_weights(kind)
        for n in args.contexts:
            x = torch.randint(3, model.config.vocab_size, (1, n + args.steps), generator=g)
            prefix, tokens = x[:, :n], x[:, n:]
            fused, python = [], []
            time_steps(model, prefix, tokens[:, :10], True)      # warm-up
            for _ in range(args.rounds):
                fused.append(time_steps(model, prefix, tokens, True))
                python.append(time_steps(model, prefix, tokens, False))
            f, p = statistics.median(fused), statistics.median(python)
            rows.append({"weights": kind, "context": n, "fused_ms": round(f, 3), "python_ms": round(p, 3),
                         "speedup": round(p / f, 2)})
            print(f"{kind:8s} context {n:5d}: fused {f:.3f} ms/token, python {p:.3f} ms/token, {p / f:.2f}x",
                  flush=True)
    model.set_decode_weights("int8")
    res = {"command": "python benchmarks/decode_fused.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "model": mm.version, "threads": args.threads, "rows": rows,
           "note": "2-core CPU; medians of interleaved rounds; the baseline is the Python step in the same run"}
    RESULTS.mkdir(exist_ok=True)
    name = "decode_fused_quick" if args.quick else "decode_fused"
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {RESULTS / (name + '.json')}")
    return 0
