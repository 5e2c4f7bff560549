"""Model-size study at equal wall-clock time: held-out bits/token against training time.

Reads the ``metrics.jsonl`` of several training runs (same data, different model sizes,
started together so they shared the CPU alike), prints each run's held-out loss at a few
common training times and at its end, and plots the curves. Example:

    python benchmarks/size_study.py --run 1.6M=runs/size-s --run 4.6M=runs/size-m \\
        --run 10.7M=runs/size-l --at 600 2000

Writes benchmarks/results/size_study.json and .png (``--out``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from cadenza.io import write_text_atomic
from cadenza.music.eval.curves import compare_runs, loss_at_time
from cadenza.bench.results import RESULTS



def _params(run_dir: Path) -> int | None:
    info = run_dir / "run.json"
    if info.is_file():
        return json.loads(info.read_text()).get("parameters")
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="append", required=True, metavar="LABEL=RUN_DIR")
    p.add_argument("--at", type=float, nargs="*", default=[], metavar="SECONDS",
                   help="training times at which to compare (default: the shortest run's end)")
    p.add_argument("--out", type=Path, default=RESULTS / "size_study")
    args = p.parse_args(argv)
    runs = {}
    for spec in args.run:
        label, _, path = spec.partition("=")
        d = Path(path or label)
        if not (d / "metrics.jsonl").is_file():
            print(f"error: {d} has no metrics.jsonl (is it a training run folder?)", file=sys.stderr)
            return 2
        runs[label if path else d.name] = d
    cmp = compare_runs(runs)
    times = sorted(set(args.at) | {cmp["common_time_s"]})
    rows = {}
    for label, info in cmp["runs"].items():
        rows[label] = {"parameters": _params(runs[label]), "train_time_s": info["train_time_s"],
                       "final": info["final"],
                       "at": {str(round(t)): loss_at_time(info["curve"], t) for t in times},
                       "curve": info["curve"]}
    head = ["run", "parameters"] + [f"at {t / 60:.0f} min" for t in times] + ["final (min, bits)"]
    print(" | ".join(head))
    for label, r in rows.items():
        cells = [label, f"{(r['parameters'] or 0) / 1e6:.2f}M"]
        for t in times:
            x = r["at"][str(round(t))]
            cells.append(f"{x['loss']:.3f} (step {x['step']})" if x else "-")
        f = r["final"]
        cells.append(f"{f['time'] / 60:.0f} min, {f['loss']:.3f}" if f else "-")
        print(" | ".join(cells))
    best = min((r["at"][str(round(cmp["common_time_s"]))] or {"loss": 1e9})["loss"] for r in rows.values())
    winner = [k for k, r in rows.items() if (r["at"][str(round(cmp["common_time_s"]))] or {}).get("loss") == best]
    print(f"best at the common time ({cmp['common_time_s'] / 60:.1f} min): {', '.join(winner)}")
    result = {"command": "python benchmarks/size_study.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
              "common_time_s": cmp["common_time_s"], "times": times, "runs": rows, "best_at_common_time": winner}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out.with_suffix(".json"), json.dumps(result, indent=1))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, r in rows.items():
        c = r["curve"]
        ax.plot([x["time"] / 60 for x in c], [x["loss"] for x in c], marker=".", label=label)
    for t in times:
        ax.axvline(t / 60, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("training time (minutes)")
    ax.set_ylabel("held-out bits / token")
    ax.set_ylim(top=min(8.0, ax.get_ylim()[1]))
    ax.set_title("Model sizes at equal wall-clock time")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=120)
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.png')}")
    return 0
