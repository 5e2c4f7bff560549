"""Loss-curve PNGs from a run's metrics.jsonl (train and eval, against steps and time)."""

from __future__ import annotations

import json
from pathlib import Path

from cadenza.errors import DataError
from cadenza.io import atomic_path
from cadenza.train.metrics import LOG_FILE, read_log


def _unit(run_dir: Path) -> str:
    try:
        return json.loads((run_dir / "run.json").read_text()).get("unit", "bits/token")
    except (OSError, json.JSONDecodeError):
        return "bits/token"


def plot_run(run_dir, out_dir=None) -> list[Path]:
    """Write ``loss_vs_step.png`` and ``loss_vs_time.png`` (default: RUN_DIR/plots); return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"run directory {run_dir} does not exist")
    records = [r for r in read_log(run_dir) if isinstance(r.get("loss"), (int, float))]
    if not records:
        raise DataError(f"{run_dir / LOG_FILE} has no loss records to plot; train first")
    unit = _unit(run_dir)
    out_dir = Path(out_dir) if out_dir else run_dir / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    series = {split: [r for r in records if r["split"] == split] for split in ("train", "eval")}
    written = []
    for axis, label, name in (("step", "step", "loss_vs_step.png"), ("time", "training time (s)", "loss_vs_time.png")):
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
        for split, style in (("train", dict(alpha=0.8, lw=1.0)), ("eval", dict(marker="o", ms=3, lw=1.5))):
            pts = [(r[axis], r["loss"]) for r in series[split] if isinstance(r.get(axis), (int, float))]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, label=f"{split} ({'held-out' if split == 'eval' else 'batch'})", **style)
        ax.set_xlabel(label)
        ax.set_ylabel(f"loss ({unit})")
        ax.set_title(f"{run_dir.name}: loss against {axis}")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out_dir / name
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
        written.append(path)
    return written
