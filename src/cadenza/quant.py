"""Int8 weight-only linear layers for one-token decoding on a CPU.

Decoding one token multiplies a single activation row by every weight matrix of the model,
so a step costs about the time to stream the weights from memory (6.1M float32 parameters:
~24 MB per token). Storing the matrices as int8 with one float scale per output row cuts
that traffic 4x. ``pack(w)`` quantizes a weight symmetrically per row
(``w ~= q * scale``, ``q`` in [-127, 127]); ``linear(x, packed)`` multiplies with PyTorch's
int8-weight kernel (``torch._weight_int8pack_mm``, which wants bfloat16 activations). The
output's dtype is the bias's: float32 for layers feeding the residual stream or attention
(which stay float32), bfloat16 for the MLP's hidden layer, whose GELU then runs in bfloat16
and feeds the next int8 layer without a conversion.

The kernel is a private PyTorch operator; ``available()`` probes it once, and callers fall
back to float32 weights when it is missing on a build or device.
"""

from __future__ import annotations

import functools

import torch

QMAX = 127


class PackedLinear:
    """An int8 weight (out, in), its per-row bfloat16 scale and the bias (zeros if none)."""

    __slots__ = ("q", "scale", "bias")

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
        self.q, self.scale, self.bias = q, scale, bias

    def dequantize(self) -> torch.Tensor:
        """The float32 weight this stands for (what the kernel multiplies by)."""
        return self.q.float() * self.scale.float()[:, None]

    @property
    def nbytes(self) -> int:
        return self.q.numel() + self.scale.numel() * self.scale.element_size()


def pack(weight: torch.Tensor, bias: torch.Tensor | None = None,
         out_dtype: torch.dtype = torch.float32) -> PackedLinear:
    """Quantize a (out, in) weight to int8 with one scale per output row.

    ``out_dtype`` (float32 or bfloat16) is the dtype ``linear`` returns.
    """
    w = weight.detach().float()
    amax = w.abs().amax(dim=1).clamp_min(1e-12)
    scale = amax / QMAX
    q = torch.clamp(torch.round(w / scale[:, None]), -QMAX, QMAX).to(torch.int8).contiguous()
    b = torch.zeros(w.shape[0], device=w.device) if bias is None else bias.detach()
    return PackedLinear(q, scale.to(torch.bfloat16), b.to(out_dtype))


def linear(x: torch.Tensor, p: PackedLinear) -> torch.Tensor:
    """``x @ W.T + b`` for ``x`` (rows, in) with the packed int8 weight, in the bias's dtype."""
    if x.dtype != torch.bfloat16:
        x = x.to(torch.bfloat16)
    return torch._weight_int8pack_mm(x, p.q, p.scale) + p.bias   # bf16 + f32 bias -> f32


@functools.lru_cache(maxsize=None)
def available(device_type: str = "cpu") -> bool:
    """Whether the int8-weight kernel runs (and is right) on this PyTorch build and device."""
    try:
        g = torch.Generator().manual_seed(0)
        w = torch.randn(16, 32, generator=g)
        x = torch.randn(2, 32, generator=g)
        p = pack(w.to(device_type))
        y = linear(x.to(device_type), p).cpu()
        ref = x @ p.dequantize().cpu().T
        return bool(torch.allclose(y, ref, rtol=0.05, atol=0.05 * float(ref.abs().max())))
    except (RuntimeError, AttributeError, NotImplementedError):
        return False
