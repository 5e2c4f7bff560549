"""Learning rate: linear warm-up to the peak, then cosine decay to ``min_ratio * peak``."""

from __future__ import annotations

import math


def lr_at(step: int, peak: float, warmup: int, total: int, min_ratio: float) -> float:
    """The learning rate for optimizer step ``step`` (0-based)."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, max(0.0, (step - warmup) / span))
    floor = peak * min_ratio
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine:
    """Sets the learning rate of every parameter group of ``optimizer`` for a given step.

    The rate is a pure function of the step, so the state is just the schedule's shape;
    it is saved in checkpoints so a resumed run can say when the shape changed.
    """

    def __init__(self, optimizer, peak: float, warmup: int, total: int, min_ratio: float):
        self.optimizer = optimizer
        self.peak, self.warmup, self.total, self.min_ratio = float(peak), int(warmup), int(total), float(min_ratio)
        self.step = 0

    def lr(self, step: int | None = None) -> float:
        return lr_at(self.step if step is None else step, self.peak, self.warmup, self.total, self.min_ratio)

    def apply(self, step: int) -> float:
        self.step = int(step)
        lr = self.lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict:
        return {"peak": self.peak, "warmup": self.warmup, "total": self.total,
                "min_ratio": self.min_ratio, "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state.get("step", 0))
