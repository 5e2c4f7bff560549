"""Training precision: the autocast a run's forward passes run under and its loss scaler.

``fp32`` runs plain float32; ``bf16`` runs under bfloat16 autocast; ``fp16`` runs under
float16 autocast on CUDA with loss scaling (``grad_scaler``) and falls back to bfloat16
autocast on the CPU. Weights are always kept in float32, and the model itself holds no
precision: whoever runs it chooses (a model config.json written before training owned this
kept it as ``dtype``; ``cadenza.train.config.training_settings`` reads it from there).
"""

from __future__ import annotations

import contextlib

import torch


def autocast_dtype(precision: str, device_type: str) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on a device type, or None for plain float32."""
    if precision == "fp32":
        return None
    if precision == "fp16" and device_type == "cuda":
        return torch.float16
    return torch.bfloat16  # bf16 everywhere, and fp16 falls back to it on the CPU


def autocast(precision: str, device_type: str):
    """A context manager running the forward passes in ``precision`` on ``device_type``."""
    dtype = autocast_dtype(precision, device_type)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type, dtype=dtype)


def grad_scaler(precision: str, device) -> torch.amp.GradScaler:
    """A GradScaler that is enabled only where it is needed: fp16 on CUDA (elsewhere every call
    on it passes through: ``scale(loss)`` is ``loss`` and ``step(opt)`` is ``opt.step()``)."""
    device_type = torch.device(device).type
    enabled = autocast_dtype(precision, device_type) == torch.float16
    return torch.amp.GradScaler(device_type, enabled=enabled)
