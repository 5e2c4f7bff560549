"""Training curves: the held-out loss a run logged, against training time, to compare runs at
equal wall-clock time."""

from __future__ import annotations

from pathlib import Path



# --------------------------------------------------------------------------- training runs
def eval_curve(run_dir, split: str = "eval") -> list[dict]:
    """The held-out evaluations (or, with split="train", the training losses) a run logged:
    [{step, time, loss}] by time."""
    from cadenza.train.metrics import read_log

    recs = [r for r in read_log(run_dir) if r.get("split") == split and r.get("loss") is not None
            and r.get("time") is not None]
    return sorted(({"step": int(r["step"]), "time": float(r["time"]), "loss": float(r["loss"])} for r in recs),
                  key=lambda r: r["time"])


def train_time(run_dir) -> float | None:
    """Seconds of training of a run (the last record's ``time``), None without records."""
    from cadenza.train.metrics import read_log

    times = [float(r["time"]) for r in read_log(run_dir) if r.get("time") is not None]
    return max(times) if times else None


def loss_at_time(curve, t: float) -> dict | None:
    """The last evaluation at or before training time ``t`` (None if none)."""
    before = [r for r in curve if r["time"] <= t + 1e-9]
    return before[-1] if before else None


def compare_runs(runs: dict) -> dict:
    """Held-out loss of several runs at equal training time.

    ``runs`` maps labels to run directories. The common time is the shortest run's
    training time; for each run: its final evaluation and its last evaluation at or
    before the common time.
    """
    info = {}
    for label, run_dir in runs.items():
        curve = eval_curve(run_dir)
        info[label] = {"run_dir": str(run_dir), "train_time_s": train_time(run_dir), "curve": curve,
                       "train_curve": eval_curve(run_dir, "train"), "final": curve[-1] if curve else None}
    times = [v["train_time_s"] for v in info.values() if v["train_time_s"] is not None]
    common = min(times) if times else None
    for v in info.values():
        v["at_common_time"] = loss_at_time(v["curve"], common) if common is not None else None
    return {"common_time_s": common, "runs": info}


def model_run_dir(model_dir) -> Path | None:
    """The training run a model directory came from: itself or its parent, whichever holds
    metrics.jsonl (``cadenza train`` exports to RUN_DIR/model)."""
    d = Path(model_dir)
    for cand in (d, d.parent):
        if (cand / "metrics.jsonl").is_file():
            return cand
    return None
