"""The C++ backend: strided and fixed attention through Cadenza's own CPU kernel.

``spec_for(pattern)`` says whether the kernel computes a pattern: a band with an optional
every-s-th part (``Local(w)``, ``StrideSkip(s)``, ``strided(l)``) or a block with an
optional summary part (``SameBlock(b)``, ``fixed(b, c)``). The kernel works in float32;
bfloat16 and float16 inputs are computed in float32 and the results cast back.
"""

from __future__ import annotations

import torch

from cadenza.attention import kernels
from cadenza.attention.patterns import BlockSummary, Local, Pattern, SameBlock, StrideSkip

BAND_TILE = 64     # query rows per band tile (strided pass 1)
CLASS_TILE = 64    # query rows per residue-class tile (strided pass 2)
BLOCK_TILE = 64    # query rows per tile of a fixed block


def spec_for(pattern: Pattern):
    """("strided", w, s) | ("fixed", b, c) | None where the kernel does not cover the pattern."""
    parts = pattern.parts
    kinds = {type(p): p for p in parts}
    if len(kinds) != len(parts):
        return None
    if set(kinds) <= {Local, StrideSkip}:
        w = kinds[Local].width if Local in kinds else 0
        s = kinds[StrideSkip].stride if StrideSkip in kinds else 0
        return ("strided", w, s)
    if set(kinds) in ({SameBlock}, {SameBlock, BlockSummary}):
        b = kinds[SameBlock].block
        if BlockSummary in kinds:
            if kinds[BlockSummary].block != b:
                return None
            return ("fixed", b, kinds[BlockSummary].c)
        return ("fixed", b, 0)
    return None


def supports(q: torch.Tensor, pattern: Pattern) -> bool:
    return q.device.type == "cpu" and q.dtype in (torch.float32, torch.bfloat16, torch.float16) \
        and spec_for(pattern) is not None


def _forward(ext, spec, q, k, v, scale):
    kind, a, b = spec
    if kind == "strided":
        return ext.strided_forward(q, k, v, a, b, scale, BAND_TILE, CLASS_TILE)
    return ext.fixed_forward(q, k, v, a, b, scale, BLOCK_TILE)


def _backward(ext, spec, dout, q, k, v, out, lse, scale):
    kind, a, b = spec
    if kind == "strided":
        return ext.strided_backward(dout, q, k, v, out, lse, a, b, scale, BAND_TILE, CLASS_TILE)
    return ext.fixed_backward(dout, q, k, v, out, lse, a, b, scale, BLOCK_TILE)


class CppSparse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, spec, scale, ext):
        dtype = q.dtype
        qf, kf, vf = (t.detach().float().contiguous() for t in (q, k, v))
        out, lse = _forward(ext, spec, qf, kf, vf, scale)
        ctx.save_for_backward(qf, kf, vf, out, lse)
        ctx.spec, ctx.scale, ctx.ext, ctx.dtype = spec, scale, ext, dtype
        return out.to(dtype)

    @staticmethod
    def backward(ctx, dout):
        qf, kf, vf, out, lse = ctx.saved_tensors
        dq, dk, dv = _backward(ctx.ext, ctx.spec, dout.float().contiguous(), qf, kf, vf, out, lse, ctx.scale)
        return dq.to(ctx.dtype), dk.to(ctx.dtype), dv.to(ctx.dtype), None, None, None


def cpp_attention(q, k, v, pattern: Pattern, scale: float, ext) -> torch.Tensor:
    """q, k, v (B, H, n, D) -> (B, H, n, D) through the kernel ``ext`` (from ``kernels.load``)."""
    B, H, n, D = q.shape
    spec = spec_for(pattern)
    out = CppSparse.apply(*(t.reshape(B * H, n, D) for t in (q, k, v)), spec, scale, ext)
    return out.view(B, H, n, D)


BUILD_WORTH_N = 8192   # "auto" builds the kernel for training or sequences this long, not for a prompt


def worth_it(q) -> bool:
    """Whether "auto" should use (and if need be build) the kernel for this call: always once it
    is built; otherwise only for work where the build pays (gradients, or ``BUILD_WORTH_N`` and
    longer), so a CLI call that reads a short prompt never waits tens of seconds for a compile."""
    return kernels.ready() or q.requires_grad or q.shape[-2] >= BUILD_WORTH_N


def extension():
    """The loaded kernel module, or None (after one warning)."""
    return kernels.load()
