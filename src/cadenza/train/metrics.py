"""Run metrics: ``RUN_DIR/metrics.jsonl`` (one JSON object per line) and TensorBoard.

Every record has ``step``, ``split`` ("train" or "eval"), ``loss`` in bits per token (bits
per byte for byte-level text; ``null`` for a skipped non-finite step), ``tokens_per_s`` and
``time`` (seconds of training so far, evaluation and checkpointing excluded, summed over
resumed sessions). Train records add ``lr``, ``grad_norm`` and ``tokens``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from cadenza.io import write_text_atomic

LOG_FILE = "metrics.jsonl"
TB_DIR = "tensorboard"


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_log(run_dir) -> list[dict]:
    """Every well-formed record of a run (a line cut short by a kill is ignored)."""
    path = Path(run_dir) / LOG_FILE
    records = []
    if not path.exists():
        return records
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "step" in rec and "split" in rec:
            records.append(rec)
    return records


class RunLogger:
    """Appends metric records; does nothing on ranks other than 0 (``enabled=False``)."""

    def __init__(self, run_dir, enabled: bool = True, tensorboard: bool = True, resume_step: int | None = None):
        self.enabled = enabled
        self.path = Path(run_dir) / LOG_FILE
        self._fh = None
        self._tb = None
        if not enabled:
            return
        if resume_step is not None and self.path.exists():
            # Drop records written after the checkpoint we resume from (a killed session's
            # tail), so the file describes one continuous run.
            keep = [r for r in read_log(run_dir) if r["step"] <= resume_step]
            write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in keep))
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        self._fh = open(self.path, "a", buffering=1)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is a dependency, but keep training without it
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tb = SummaryWriter(log_dir=str(Path(run_dir) / TB_DIR),
                                         purge_step=(resume_step + 1) if resume_step is not None else None)

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        record = {k: _clean(v) for k, v in record.items()}
        self._fh.write(json.dumps(record) + "\n")
        if self._tb is not None:
            split, step = record["split"], record["step"]
            for key, value in record.items():
                if key in ("step", "split") or not isinstance(value, (int, float)) or isinstance(value, bool):
                    continue
                self._tb.add_scalar(f"{split}/{key}", value, step)

    def flush(self) -> None:
        if self._fh:
            self._fh.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._fh:
            self._fh.close()
            self._fh = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
