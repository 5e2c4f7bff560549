"""Layouts: reshapes that make the keys each query may attend contiguous.

    block(L)      queries and keys in blocks of L; a query sees its own block
    prev(L)       queries of block g, keys of block g - 1
    class(s)      the (n/s, s) layout transposed: one group per residue class i mod s
    summary(L,c)  queries grouped by offset within their block; keys are the last c
                  columns of every block (the BlockSummary columns), shared by all groups

A layout views a (BH, n, D) tensor as (BH, G, Lq|Lk, D): G groups of small dense
attentions. ``plan_for`` picks the layouts of a pattern and computes, once per (pattern, n),
the mask of (i, j) pairs each layout counts: those its part allows and no earlier part of
the union already counted, so every pair is counted exactly once.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cadenza.attention.patterns import BlockSummary, Dense, Local, Pattern, SameBlock, StrideSkip
from cadenza.errors import ConfigError

MIN_LOCAL_BLOCK = 32  # a band narrower than this still runs in blocks of 32 (small matmuls are slow)
_MASK_CHUNK = 1 << 24  # elements per chunk while evaluating masks
_PLAN_CACHE_SIZE = 32

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
    def padded_len(self, n: int) -> int:
        return -(-n // self.size) * self.size

    def _blocks(self, x: torch.Tensor, n: int | None = None) -> torch.Tensor:
        """(BH, >=n, D) -> (BH, nb, size, D) over the first n positions, zero-padded (a view when x is long enough)."""
        need = self.padded_len(x.shape[1] if n is None else n)
        if x.shape[1] < need:
            x = F.pad(x, (0, 0, 0, need - x.shape[1]))
        elif x.shape[1] > need:
            x = x[:, :need]
        return x.view(x.shape[0], need // self.size, self.size, x.shape[2])

    def gather_q(self, x: torch.Tensor, n: int | None = None) -> torch.Tensor:
        b = self._blocks(x, n)
        if self.kind == "block":
            return b
        if self.kind == "prev":
            return b[:, 1:]
        return b.transpose(1, 2)  # class and summary

    def gather_k(self, x: torch.Tensor, n: int | None = None) -> torch.Tensor:
        b = self._blocks(x, n)
        if self.kind == "block":
            return b
        if self.kind == "prev":
            return b[:, :-1]
        if self.kind == "class":
            return b.transpose(1, 2)
        cols = b[:, :, self.size - self.c:].reshape(b.shape[0], 1, -1, b.shape[3])
        return cols.expand(b.shape[0], self.size, cols.shape[2], b.shape[3])

    def summary_cols(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """(BH, nb, c, D) view of the summary columns of a padded (BH, >=n, D) tensor."""
        return self._blocks(x, n)[:, :, self.size - self.c:]


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
    causal_shift: int | None  # r when ``allowed`` is exactly tril(-r): a causal kernel, no mask
    _additive: dict

    def additive_mask(self, dtype, device) -> torch.Tensor:
        key = (dtype, str(device))
        if key not in self._additive:
            m = torch.zeros(self.allowed.shape, dtype=dtype, device=device)
            m.masked_fill_(~self.allowed.to(device), float("-inf"))
            self._additive[key] = m if m.dim() == 2 else m.unsqueeze(0)
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


def _causal_shift(allowed: torch.Tensor) -> int | None:
    """r if the (uniform) mask is j <= i - r exactly, so rows r.. against keys ..Lk-r are causal."""
    if allowed.dim() != 2 or not bool(allowed.any()):
        return None
    r = int(allowed.any(dim=-1).to(torch.int8).argmax())
    expected = torch.ones(allowed.shape, dtype=torch.bool).tril(-r)
    return r if torch.equal(allowed, expected) else None


def padded_len(plan: list[LayoutPlan], n: int) -> int:
    """A length every layout of the plan can view without copying (its blocks fit)."""
    return max(lp.layout.padded_len(n) for lp in plan)


def pad_to(x: torch.Tensor, length: int) -> torch.Tensor:
    return x if x.shape[1] == length else F.pad(x, (0, 0, 0, length - x.shape[1]))


def add_key_grads(layout: Layout, acc: torch.Tensor, g: torch.Tensor, n: int) -> None:
    """acc (BH, P, D) += key gradients g (BH, G, Lk', D) for the first Lk' keys of each group."""
    if layout.kind != "summary":
        layout.gather_k(acc, n)[:, :, :g.shape[2]].add_(g)
        return
    cols = layout.summary_cols(acc, n)  # keys are shared by all groups: sum over groups
    total = g.sum(dim=1)
    full = cols.shape[1] * cols.shape[2]
    if total.shape[1] < full:
        total = F.pad(total, (0, 0, 0, full - total.shape[1]))
    cols.add_(total.view(cols.shape))


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
                plan.append(LayoutPlan(layout, allowed, allowed.any(dim=-1), _causal_shift(allowed), {}))
    _plan_cache[key] = plan
    while len(_plan_cache) > _PLAN_CACHE_SIZE:
        _plan_cache.popitem(last=False)
    return plan
