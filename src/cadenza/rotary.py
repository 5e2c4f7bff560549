"""Rotary position embeddings (RoPE, Su et al. 2021) for queries and keys.

A head's vector is split in halves (x1, x2); pair j is turned by the angle ``p * base^(-2j/d)``
at position p. The dot product of a query at i with a key at j then depends on i - j only, so a
model trained on short pieces reads long ones, and the attention kernels need no change: q and
k are rotated *before* any kernel, cache or fused step sees them. The cache stores rotated keys,
so a cached step rotates only the new token at its own position.
"""

from __future__ import annotations

import torch

DEFAULT_BASE = 10000.0


def inverse_frequencies(head_dim: int, base: float = DEFAULT_BASE) -> torch.Tensor:
    """(head_dim / 2,) angles per position, float32."""
    return base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)


class Rotary(torch.nn.Module):
    """The rotation tables of one model (no weights: nothing in the state dict)."""

    def __init__(self, head_dim: int, base: float = DEFAULT_BASE):
        super().__init__()
        self.head_dim = head_dim
        self.register_buffer("inv_freq", inverse_frequencies(head_dim, base).float(), persistent=False)

    def tables(self, start: int, n: int) -> torch.Tensor:
        """(2, n, head_dim / 2): cos and sin of positions start .. start + n - 1 (float32)."""
        pos = torch.arange(start, start + n, device=self.inv_freq.device, dtype=torch.float64)
        angle = (pos[:, None] * self.inv_freq.double()[None, :]).float()
        return torch.stack((angle.cos(), angle.sin()))

    def at(self, p: int) -> torch.Tensor:
        """(2, head_dim / 2): cos and sin of the single position p (the fused decode step's input)."""
        return self.tables(p, 1)[:, 0]


def rotate(x: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """``x`` (..., n, head_dim) turned by ``tables`` (2, n, head_dim / 2) from ``Rotary.tables``."""
    half = x.shape[-1] // 2
    cos, sin = tables[0].to(x.dtype), tables[1].to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
