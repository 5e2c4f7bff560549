"""The fast path: factorized sparse attention without any n x n tensor.

Each primitive pattern is computed through one or two *layouts*: reshapes of the sequence
that make the keys a query may attend contiguous, so that small dense attentions (batched
over groups) do the work:

    block(L)      queries and keys in blocks of L; a query sees its own block
    prev(L)       queries of block g, keys of block g - 1
    class(s)      the (n/s, s) layout transposed: one group per residue class i mod s
    summary(L,c)  queries grouped by offset within their block; keys are the last c
                  columns of every block (the BlockSummary columns), shared by all groups

    Local(w)        -> block(L) + prev(L) with L = max(w, MIN_LOCAL_BLOCK)
    SameBlock(b)    -> block(b)
    StrideSkip(s)   -> class(s)
    BlockSummary(b) -> block(b) + summary(b, c)
    Dense           -> one causal attention

Inside a layout a small additive mask says exactly which (i, j) pairs count: those the
part allows and no earlier part of the union already counted, so every pair is counted
once. Masks depend only on the pattern and n; they are computed once and cached. When a
mask is the same for every group it is a single (Lq, Lk) matrix broadcast over groups.

Each layout yields an output and its log-sum-exp; outputs merge by log-sum-exp into the
exact softmax over the union. On CPU every layout runs PyTorch's fused flash-attention
kernel (``_scaled_dot_product_flash_attention_for_cpu``), which returns the log-sum-exp;
a custom autograd Function runs its backward per layout with the *merged* output and
log-sum-exp, which gives the exact gradient of the union softmax. Elsewhere (CUDA, float64,
or ``backend="math"``) the same layouts run as plain batched matmuls under autograd.
"""

from __future__ import annotations

import math
import sys

import torch
import torch.nn.functional as F

from cadenza.attention import chunked, cpp
from cadenza.attention.chunked import merge_into
from cadenza.attention.checks import check_qkv
from cadenza.attention.layouts import LayoutPlan, add_key_grads, pad_to, padded_len, plan_for
from cadenza.attention.patterns import Pattern
from cadenza.errors import ConfigError

_flash_fwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_flash_bwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


# ---------------------------------------------------------------------------------------
# CPU: PyTorch's fused flash kernel per layout, custom backward


def _kernel_args(lp: LayoutPlan, qv, kv, vv):
    """The kernel's q, k, v views, is_causal flag and mask (rows r.. vs keys ..Lk-r when causal)."""
    r = lp.causal_shift
    if r is None:
        return qv, kv, vv, False, lp.additive_mask(qv.dtype, qv.device), 0
    keep = kv.shape[2] - r
    return qv[:, :, r:], kv[:, :, :keep], vv[:, :, :keep], True, None, r


class _FlashSparse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, plan, scale):
        BH, n, D = q.shape
        P = padded_len(plan, n)
        qp, kp, vp = (pad_to(t, P) for t in (q, k, v))
        acc = torch.zeros((BH, P, D), dtype=torch.float32)
        run = torch.full((BH, P, 1), float("-inf"), dtype=torch.float32)
        for lp in plan:
            L = lp.layout
            qx, kx, vx, causal, mask, r = _kernel_args(lp, L.gather_q(qp, n), L.gather_k(kp, n), L.gather_k(vp, n))
            o, lse = _flash_fwd(qx, kx, vx, 0.0, causal, attn_mask=mask, scale=scale)
            lse = lse.unsqueeze(-1)
            if not causal and not bool(lp.row_has_key.all()):  # the kernel gives lse 0 for keyless rows
                lse = lse.masked_fill(~lp.row_has_key.unsqueeze(-1), float("-inf"))
            merge_into(L.gather_q(acc, n)[:, :, r:], L.gather_q(run, n)[:, :, r:], o, lse)
        out = acc[:, :n].to(q.dtype)
        lse = run[:, :n, 0]
        ctx.save_for_backward(q, k, v, out, torch.where(torch.isinf(lse), torch.zeros_like(lse), lse))
        ctx.plan, ctx.scale = plan, scale
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        BH, n, D = q.shape
        P = padded_len(ctx.plan, n)
        qp, kp, vp, op, dp = (pad_to(t, P) for t in (q, k, v, out, dout.to(q.dtype)))
        lsep = pad_to(lse.unsqueeze(-1), P)
        grads = [torch.zeros((BH, P, D), dtype=torch.float32) for _ in range(3)]
        for lp in ctx.plan:
            L = lp.layout
            qx, kx, vx, causal, mask, r = _kernel_args(lp, L.gather_q(qp, n), L.gather_k(kp, n), L.gather_k(vp, n))
            gq, gk, gv = _flash_bwd(
                L.gather_q(dp, n)[:, :, r:], qx, kx, vx, L.gather_q(op, n)[:, :, r:],
                L.gather_q(lsep, n)[:, :, r:, 0].contiguous(), 0.0, causal, attn_mask=mask, scale=ctx.scale)
            L.gather_q(grads[0], n)[:, :, r:].add_(gq)
            add_key_grads(L, grads[1], gk, n)
            add_key_grads(L, grads[2], gv, n)
        return tuple(g[:, :n].to(t.dtype) for g, t in zip(grads, (q, k, v))) + (None, None)


def _dense_causal(q, k, v, scale):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)


BACKENDS = ("auto", "cpp", "flash", "chunked")


def sparse_attention(q, k, v, pattern: Pattern, scale: float | None = None, backend: str = "auto"):
    """Causal attention restricted to ``pattern``, without materializing an n x n matrix.

    q, k, v: (batch, heads, n, head_dim), any n >= 1, float32 or bfloat16, CPU or CUDA.
    Differentiable. Equals ``reference_attention`` up to rounding. backend: "cpp" runs
    Cadenza's own C++ kernel (CPU; strided/fixed-style patterns, see ``cpp.spec_for``;
    computed in float32; compiled and cached on first use); "flash" runs PyTorch's fused
    CPU flash kernel per layout (CPU, float32/bfloat16); "chunked" runs chunked batched
    matmuls into views of sequence-shaped accumulators (any device and dtype); "auto" picks
    cpp where it applies and the kernel is available (else, after one warning, flash),
    flash for the other patterns on the CPU, chunked elsewhere.
    """
    check_qkv(q, k, v, pattern)
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if "torch._dynamo" in sys.modules:      # torch.compile may be tracing: stay eager
        return _eager_run()(q, k, v, pattern, scale, backend)
    return _run(q, k, v, pattern, scale, backend)


_EAGER = None


def _eager_run():
    """``_run`` behind ``torch.compiler.disable``, made on first need: under torch.compile the
    attention stays eager (a graph break), since its kernels are already fused and its cached
    masks are Python state that graphs cannot hold. Made lazily because the decorator
    imports torch._dynamo (seconds of start-up), which a process that never compiles (every
    CLI command) does not need: without torch._dynamo loaded nothing can be compiling."""
    global _EAGER
    if _EAGER is None:
        _EAGER = torch.compiler.disable(_run)
    return _EAGER


def _run(q, k, v, pattern, scale, backend):
    B, H, n, D = q.shape
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    if backend == "cpp" or (backend == "auto" and cpp.supports(q, pattern) and cpp.worth_it(q)):
        if not cpp.supports(q, pattern):
            raise ConfigError(f"the cpp backend runs strided/fixed-style patterns on the CPU, not {pattern!r} "
                              f"on {q.device.type}/{q.dtype}")
        ext = cpp.extension()
        if ext is not None:
            return cpp.cpp_attention(q, k, v, pattern, scale, ext)
        if backend == "cpp":
            raise ConfigError("the cpp backend is unavailable here (its kernel did not build); use backend='auto'")
    plan = plan_for(pattern, n)
    if plan is None:
        return _dense_causal(q, k, v, scale)
    if not plan:  # no query may attend anything
        return torch.zeros_like(q) + 0 * (q.sum() + k.sum() + v.sum())
    flash_ok = q.device.type == "cpu" and q.dtype in (torch.float32, torch.bfloat16)
    if backend == "flash" and not flash_ok:
        raise ConfigError(f"the flash backend runs on CPU in float32/bfloat16, not {q.device.type}/{q.dtype}")
    qf, kf, vf = (t.reshape(B * H, n, D) for t in (q, k, v))
    if backend == "flash" or (backend == "auto" and flash_ok):
        out = _FlashSparse.apply(qf, kf, vf, plan, scale)
    else:
        out = chunked.ChunkedSparse.apply(qf, kf, vf, plan, scale)
    return out.view(B, H, n, D)
