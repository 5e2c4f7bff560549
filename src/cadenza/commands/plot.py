"""`cadenza plot RUN_DIR`: loss-curve PNGs of a training run."""

from __future__ import annotations


def _run(args) -> int:
    from cadenza.train.plot import plot_run

    for path in plot_run(args.run_dir, args.out):
        print(f"wrote {path}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("plot", help="plot a training run's loss curves",
                              description="Write loss_vs_step.png and loss_vs_time.png (train and held-out "
                                          "loss) from RUN_DIR/metrics.jsonl.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", metavar="DIR", help="folder for the PNGs (default RUN_DIR/plots)")
    p.set_defaults(func=_run)
