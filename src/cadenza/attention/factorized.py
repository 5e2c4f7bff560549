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
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cadenza.attention.checks import check_qkv
from cadenza.attention.patterns import (
    BlockSummary,
    Dense,
    Local,
    Pattern,
    SameBlock,
    StrideSkip,
)
from cadenza.errors import ConfigError

MIN_LOCAL_BLOCK = 32  # a band narrower than this still runs in blocks of 32 (small matmuls are slow)
_MASK_CHUNK = 1 << 24  # elements per chunk while evaluating masks
_PLAN_CACHE_SIZE = 32

_flash_fwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_flash_bwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


@dataclass(frozen=True)
class Layout:
    kind: str  # "block" | "prev" | "class" | "summary"
    size: int  # block size L or stride s
    c: int = 0  # summary columns (summary layout only)

    def groups(self, n: int) -> int:
        blocks = -(-n // self.size)
        return {"block": blocks, "prev": blocks - 1, "class": self.size, "summary": self.size}[self.kind]

    def positions(self, n: int):
        """Sequence positions of the queries (G, Lq) and keys (G or 1, Lk) in this layout."""
        L = self.size
        nb = -(-n // L)
        if self.kind == "block":
            pos = torch.arange(nb * L).view(nb, L)
            return pos, pos
        if self.kind == "prev":
            pos = torch.arange(nb * L).view(nb, L)
            return pos[1:], pos[:-1]
        if self.kind == "class":
            pos = torch.arange(nb * L).view(nb, L).t()
            return pos, pos
        # summary: group r holds the queries at offset r of every block
        qpos = torch.arange(nb * L).view(nb, L).t()
        kpos = torch.arange(nb * L).view(nb, L)[:, L - self.c:].reshape(1, nb * self.c)
        return qpos, kpos

    # -- moving tensors (BH, n, D) in and out of the layout (BH, G, Lq|Lk, D) ----------
    def _blocks(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        nb = -(-n // self.size)
        if nb * self.size != n:
            x = F.pad(x, (0, 0, 0, nb * self.size - n))
        return x.view(x.shape[0], nb, self.size, x.shape[2])

    def gather_q(self, x: torch.Tensor) -> torch.Tensor:
        b = self._blocks(x)
        if self.kind == "block":
            return b
        if self.kind == "prev":
            return b[:, 1:]
        return b.transpose(1, 2)  # class and summary

    def gather_k(self, x: torch.Tensor) -> torch.Tensor:
        b = self._blocks(x)
        if self.kind == "block":
            return b
        if self.kind == "prev":
            return b[:, :-1]
        if self.kind == "class":
            return b.transpose(1, 2)
        cols = b[:, :, self.size - self.c:].reshape(b.shape[0], 1, -1, b.shape[3])
        return cols.expand(b.shape[0], self.size, cols.shape[2], b.shape[3])

    def scatter_q(self, y: torch.Tensor, n: int, fill: float = 0.0) -> torch.Tensor:
        """Inverse of gather_q for (BH, G, Lq, D) tensors; rows the layout lacks get ``fill``."""
        BH, D = y.shape[0], y.shape[-1]
        if self.kind == "prev":
            y = torch.cat([y.new_full((BH, 1, self.size, D), fill), y], dim=1)
        elif self.kind in ("class", "summary"):
            y = y.transpose(1, 2)
        return y.reshape(BH, -1, D)[:, :n]

    def add_q(self, acc: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None) -> None:
        """acc (BH, n, D) += scatter_q(y) [* w (BH, n, 1)], in place and without a full copy."""
        BH, n, D = acc.shape
        L = self.size
        if self.kind in ("block", "prev"):
            lo = L if self.kind == "prev" else 0
            src = y.reshape(BH, -1, D)[:, :n - lo]
            dst = acc[:, lo:]
            wv = None if w is None else w[:, lo:]
        elif n % L == 0:
            src = y.transpose(1, 2)
            dst = acc.view(BH, n // L, L, D)
            wv = None if w is None else w.view(BH, n // L, L, 1)
        else:
            src, dst, wv = self.scatter_q(y, n), acc, w
        if wv is None:
            dst.add_(src)
        else:
            dst.addcmul_(src, wv)

    def add_k(self, acc: torch.Tensor, y: torch.Tensor) -> None:
        """acc (BH, n, D) += key gradients (BH, G, Lk, D) summed back onto the sequence."""
        BH, n, D = acc.shape
        L = self.size
        if self.kind == "block":
            acc.add_(y.reshape(BH, -1, D)[:, :n])
        elif self.kind == "prev":
            src = y.reshape(BH, -1, D)  # keys of blocks 0 .. nb-2: all real positions
            acc[:, :src.shape[1]].add_(src)
        elif self.kind == "class":
            self.add_q(acc, y)
        else:
            nb = y.shape[2] // self.c
            cols = y.sum(dim=1).view(BH, nb, self.c, D)
            full = acc.new_zeros((BH, nb, L, D))
            full[:, :, L - self.c:] = cols
            acc.add_(full.view(BH, -1, D)[:, :n])


def layouts_for(part: Pattern) -> list[Layout]:
    if isinstance(part, Local):
        L = max(part.width, MIN_LOCAL_BLOCK)
        return [Layout("block", L), Layout("prev", L)]
    if isinstance(part, SameBlock):
        return [Layout("block", part.block)]
    if isinstance(part, StrideSkip):
        return [Layout("class", part.stride)]
    if isinstance(part, BlockSummary):
        return [Layout("block", part.block), Layout("summary", part.block, part.c)]
    raise ConfigError(f"no fast path for pattern {part!r}")


@dataclass
class LayoutPlan:
    layout: Layout
    allowed: torch.Tensor  # bool (Lq, Lk) when uniform over groups, else (G, Lq, Lk)
    row_has_key: torch.Tensor  # bool (Lq,) or (G, Lq)
    _additive: dict

    def additive_mask(self, dtype, device) -> torch.Tensor:
        key = (dtype, str(device))
        if key not in self._additive:
            m = torch.zeros(self.allowed.shape, dtype=dtype, device=device)
            m.masked_fill_(~self.allowed.to(device), float("-inf"))
            self._additive[key] = m if m.dim() == 2 else m.unsqueeze(0)
        return self._additive[key]

    def empty_rows(self, n: int, device) -> torch.Tensor | None:
        """(n,) bool: positions this layout gives no key (None when every position has one)."""
        key = ("empty", str(device))
        if key not in self._additive:
            G = self.layout.groups(n)
            rows = self.row_has_key
            if rows.dim() == 1:
                rows = rows.expand(G, rows.shape[0])
            seq = self.layout.scatter_q(rows.unsqueeze(0).unsqueeze(-1).float(), n, fill=0.0)
            empty = ~seq[0, :, 0].bool()
            self._additive[key] = empty.to(device) if bool(empty.any()) else None
        return self._additive[key]


def _layout_allowed(layout: Layout, part: Pattern, earlier, n: int) -> torch.Tensor:
    qpos, kpos = layout.positions(n)
    G, Lq, Lk = qpos.shape[0], qpos.shape[1], kpos.shape[1]
    step = max(1, _MASK_CHUNK // max(1, Lq * Lk))
    chunks = []
    for g0 in range(0, G, step):
        i = qpos[g0:g0 + step, :, None]
        j = kpos[g0:g0 + step, None, :] if kpos.shape[0] > 1 else kpos[:, None, :]
        m = part.contains(i, j)
        if layout.kind == "summary":  # only earlier blocks: the block layout has the own block
            m &= torch.div(j, layout.size, rounding_mode="floor") < torch.div(i, layout.size, rounding_mode="floor")
        for e in earlier:
            m &= ~e.contains(i, j)
        chunks.append(m.expand(i.shape[0], Lq, Lk))
    allowed = torch.cat(chunks)
    if bool((allowed == allowed[:1]).all()):
        return allowed[0].clone()
    return allowed


def _simplify(pattern: Pattern) -> tuple[Pattern, ...]:
    parts = pattern.parts
    if any(isinstance(p, Dense) for p in parts):
        return (Dense(),)
    return parts


_plan_cache: OrderedDict = OrderedDict()


def plan_for(pattern: Pattern, n: int) -> list[LayoutPlan] | None:
    """The layouts, masks and row coverage for ``pattern`` at length n (cached). None = dense."""
    key = (pattern, n)
    if key in _plan_cache:
        _plan_cache.move_to_end(key)
        return _plan_cache[key]
    parts = _simplify(pattern)
    if parts == (Dense(),):
        plan = None
    else:
        plan = []
        for idx, part in enumerate(parts):
            for layout in layouts_for(part):
                if layout.groups(n) <= 0:
                    continue
                allowed = _layout_allowed(layout, part, parts[:idx], n)
                if not bool(allowed.any()):
                    continue
                plan.append(LayoutPlan(layout, allowed, allowed.any(dim=-1), {}))
    _plan_cache[key] = plan
    while len(_plan_cache) > _PLAN_CACHE_SIZE:
        _plan_cache.popitem(last=False)
    return plan


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


# ---------------------------------------------------------------------------------------
# any device: the same layouts as plain batched matmuls (autograd does the backward)


def _math_sparse(q, k, v, plan, scale):
    n = q.shape[1]
    outs, lses = [], []
    for lp in plan:
        L = lp.layout
        qx, kx, vx = L.gather_q(q).float(), L.gather_k(k).float(), L.gather_k(v).float()
        s = (qx @ kx.transpose(-1, -2)) * scale + lp.additive_mask(torch.float32, q.device)
        # rows without any key get a finite log-sum-exp here (no NaN gradients); their
        # probabilities are exp(-inf) = 0 and _layout_lse marks them -inf for the merge
        lse = torch.logsumexp(s.masked_fill(~lp.row_has_key.unsqueeze(-1), 0.0), dim=-1, keepdim=True)
        p = torch.exp(s - lse)
        outs.append(L.scatter_q(p @ vx, n))
        lses.append(_layout_lse(lp, lse[..., 0], n))
    safe = _total_lse(lses)
    out = sum(o * torch.exp(l - safe).unsqueeze(-1) for o, l in zip(outs, lses))
    return out.to(q.dtype)


def _dense_causal(q, k, v, scale):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)


def sparse_attention(q, k, v, pattern: Pattern, scale: float | None = None, backend: str = "auto"):
    """Causal attention restricted to ``pattern``, without materializing an n x n matrix.

    q, k, v: (batch, heads, n, head_dim), any n >= 1, float32 or bfloat16, CPU or CUDA.
    backend: "auto" (the fused CPU flash kernel where it applies, matmuls elsewhere),
    "flash" or "math". Differentiable. Equals ``reference_attention`` up to rounding.
    """
    check_qkv(q, k, v, pattern)
    if backend not in ("auto", "flash", "math"):
        raise ConfigError(f"backend must be 'auto', 'flash' or 'math', got {backend!r}")
    return _run(q, k, v, pattern, scale, backend)


@torch.compiler.disable
def _run(q, k, v, pattern, scale, backend):
    # Under torch.compile the attention stays eager (a graph break): the flash kernel is
    # already fused, and the cached masks are Python state that graphs cannot hold.
    B, H, n, D = q.shape
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    plan = plan_for(pattern, n)
    if plan is None:
        return _dense_causal(q, k, v, scale)
    flash_ok = q.device.type == "cpu" and q.dtype in (torch.float32, torch.bfloat16, torch.float16)
    if backend == "flash" and not flash_ok:
        raise ConfigError(f"the flash backend runs on CPU in float32/bfloat16, not {q.device.type}/{q.dtype}")
    if not plan:  # no query may attend anything
        return torch.zeros_like(q) + 0 * (q.sum() + k.sum() + v.sum())
    qf, kf, vf = (t.reshape(B * H, n, t.shape[-1]) for t in (q, k, v))
    if backend == "math" or not flash_ok:
        out = _math_sparse(qf, kf, vf, plan, scale)
    else:
        out = _FlashSparse.apply(qf, kf, vf, plan, scale)
    return out.view(B, H, n, D)
