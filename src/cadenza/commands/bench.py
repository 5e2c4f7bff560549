"""`cadenza bench attention`: the attention benchmark (see cadenza.bench.attention)."""

from __future__ import annotations


def register(subparsers) -> None:
    from cadenza.bench import attention

    bench = subparsers.add_parser("bench", help="run a benchmark", description="Run one of Cadenza's benchmarks.")
    sub = bench.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    p = sub.add_parser("attention", help="dense vs FlexAttention vs sparse attention, 1k..64k tokens",
                       description=attention.__doc__)
    attention.add_arguments(p)
    p.set_defaults(func=attention.run_cli)
