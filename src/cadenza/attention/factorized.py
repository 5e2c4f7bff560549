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

import torch
import torch.nn.functional as F

from cadenza.attention import chunked
from cadenza.attention.checks import check_qkv
from cadenza.attention.layouts import LayoutPlan, plan_for
from cadenza.attention.patterns import Pattern
from cadenza.errors import ConfigError

_flash_fwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_flash_bwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


# ---------------------------------------------------------------------------------------
# merging partial results by log-sum-exp


def _layout_lse(lp: LayoutPlan, lse: torch.Tensor, n: int) -> torch.Tensor:
    """Per-layout log-sum-exp (BH, G, Lq) -> (BH, n) with -inf where the layout has no key."""
    seq = lp.layout.scatter_q(lse.unsqueeze(-1), n, fill=float("-inf"))[..., 0]
    empty = lp.empty_rows(n, lse.device)
    return seq if empty is None else seq.masked_fill(empty, float("-inf"))


def _total_lse(lses):
    """Merged log-sum-exp; rows with no key anywhere get 0 (their weights are all exp(-inf))."""
    stacked = torch.stack(lses)
    none = torch.isinf(stacked).all(dim=0)
    return torch.logsumexp(stacked.masked_fill(none, 0.0), dim=0).masked_fill(none, 0.0)


# ---------------------------------------------------------------------------------------
# CPU: fused flash kernel per layout, custom backward


class _FlashSparse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, plan, scale):
        BH, n, D = q.shape
        results = []
        for lp in plan:
            L = lp.layout
            o, lse = _flash_fwd(L.gather_q(q), L.gather_k(k), L.gather_k(v), 0.0, False,
                                attn_mask=lp.additive_mask(q.dtype, q.device), scale=scale)
            results.append((o, _layout_lse(lp, lse, n)))
        safe = _total_lse([r[1] for r in results])
        acc = torch.zeros((BH, n, D), dtype=torch.float32, device=q.device)
        for lp, (o, l) in zip(plan, results):
            lp.layout.add_q(acc, o, torch.exp(l - safe).unsqueeze(-1))
        out = acc.to(q.dtype)
        ctx.save_for_backward(q, k, v, out, safe)
        ctx.plan, ctx.scale = plan, scale
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        dout = dout.to(q.dtype).contiguous()
        lse = lse.unsqueeze(-1)
        grads = [torch.zeros(t.shape, dtype=torch.float32, device=t.device) for t in (q, k, v)]
        for lp in ctx.plan:
            L = lp.layout
            gq, gk, gv = _flash_bwd(
                L.gather_q(dout), L.gather_q(q), L.gather_k(k), L.gather_k(v),
                L.gather_q(out), L.gather_q(lse)[..., 0], 0.0, False,
                attn_mask=lp.additive_mask(q.dtype, q.device), scale=ctx.scale)
            L.add_q(grads[0], gq)
            L.add_k(grads[1], gk)
            L.add_k(grads[2], gv)
        return grads[0].to(q.dtype), grads[1].to(k.dtype), grads[2].to(v.dtype), None, None


def _dense_causal(q, k, v, scale):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)


BACKENDS = ("auto", "flash", "chunked")


def sparse_attention(q, k, v, pattern: Pattern, scale: float | None = None, backend: str = "auto"):
    """Causal attention restricted to ``pattern``, without materializing an n x n matrix.

    q, k, v: (batch, heads, n, head_dim), any n >= 1, float32 or bfloat16, CPU or CUDA.
    Differentiable. Equals ``reference_attention`` up to rounding. backend: "flash" runs
    PyTorch's fused CPU flash kernel per layout (CPU, float32/bfloat16; the fastest there);
    "chunked" runs chunked batched matmuls into views of sequence-shaped accumulators
    (any device and dtype); "auto" picks flash where it applies, chunked elsewhere.
    """
    check_qkv(q, k, v, pattern)
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    return _run(q, k, v, pattern, scale, backend)


@torch.compiler.disable
def _run(q, k, v, pattern, scale, backend):
    # Under torch.compile the attention stays eager (a graph break): its kernels are
    # already fused, and the cached masks are Python state that graphs cannot hold.
    B, H, n, D = q.shape
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
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
