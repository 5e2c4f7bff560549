"""Argument checks shared by the attention entry points."""

from __future__ import annotations

import torch

from cadenza.attention.patterns import Pattern
from cadenza.errors import ConfigError, ShapeError

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def check_qkv(q, k, v, pattern) -> None:
    if not isinstance(pattern, Pattern):
        raise ConfigError(f"pattern must be a cadenza.attention Pattern, got {type(pattern).__name__}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ShapeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ShapeError(f"{name} must have shape (batch, heads, n, head_dim), got {tuple(t.shape)}")
    if not (q.shape == k.shape == v.shape):
        raise ShapeError(
            f"q, k, v shapes do not fit: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ShapeError(f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.dtype not in SUPPORTED_DTYPES:
        raise ShapeError(f"unsupported dtype {q.dtype}; use float32 or bfloat16")
    if not (q.device == k.device == v.device):
        raise ShapeError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    if q.shape[-2] < 1:
        raise ShapeError("sequence length must be at least 1")
