"""Dense masked attention: slow, obviously correct. It defines what the fast path must match."""

from __future__ import annotations

import math

import torch

from cadenza.attention.checks import check_qkv
from cadenza.attention.patterns import Pattern


def reference_attention(q, k, v, pattern: Pattern, scale: float | None = None) -> torch.Tensor:
    """softmax(q k^T * scale, masked by ``pattern.mask``) v, computed in float32.

    A query with no allowed key outputs zeros (and gets zero gradients).
    """
    check_qkv(q, k, v, pattern)
    n, d = q.shape[-2], q.shape[-1]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    mask = pattern.mask(n, device=q.device)
    scores = (q.float() @ k.float().transpose(-1, -2)) * scale
    scores = scores.masked_fill(~mask, float("-inf"))
    row_has_key = mask.any(dim=-1, keepdim=True)
    scores = scores.masked_fill(~row_has_key, 0.0)  # avoid NaN for empty rows
    probs = torch.softmax(scores, dim=-1) * row_has_key
    return (probs @ v.float()).to(q.dtype)
