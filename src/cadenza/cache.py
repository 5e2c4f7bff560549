"""Sparse KV cache: keeps, per layer and head group, only the keys its pattern can attend.

A decode step for the token at position i reads (the patterns: ``cadenza.attention.patterns``;
the cache in words: docs/library.md, "The model, KV-cache decoding and sampling"):

- the *near* keys: a ring buffer (position p in slot p % size) of the last l + 1 positions
  for ``Local(l)`` (the band is then the whole ring) or of the last l for ``SameBlock(l)``
  (the current block is then a prefix of the ring); no ring for patterns with neither;
- the *far* keys, older than the near ones, from one store shaped by the pattern:

  * ``StrideSkip(l)``: every key, laid out by residue class as ``(l, batch, heads, n/l, d)``
    so that the keys i - l, i - 2l, ... are one contiguous slice ``store[i % l, :, :, :t]``
    (keys and values share one tensor, ``(l, batch, 2, heads, n/l, d)``, as do the ring and
    the summary store: a step writes one slot and gathers near + far keys and values with
    one copy);
  * ``BlockSummary(l, c)``: only the c summary columns of each block, appended in order, so
    the far keys are a prefix of the store and memory is O(l + c n / l);
  * ``Dense()``: every key in order (the baseline full KV cache).

A token therefore costs O(l + n/l) key reads for the strided and fixed patterns, O(n) for
dense, and each read is a contiguous slice (``GroupCache.step``). Chunks of several
tokens (``GroupCache.attend``) use the same stores with an exact mask built from
``pattern.contains`` over (ring keys + chunk keys), and a per-query gather of the residue
classes. Near and far key sets never overlap, so every (query, key) pair counts once, as in
the union of pattern parts.

``keys_read`` counts the (query, key) scores each call computes (padding excluded); for a
one-token step that is the number of keys the token read.

One module on purpose: ``GroupCache`` is the whole job (its stores, the one-token ``step``, the
chunk ``attend`` and ``_attend_blocks`` share one layout and each reads what the others
write); ``KVCache`` is only the list of a model's groups with their counters. Split, either
half could not be read or changed without the other.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
import torch.nn.functional as F

from cadenza.attention import BlockSummary, Dense, Local, Pattern, SameBlock, StrideSkip
from cadenza.errors import ConfigError, ShapeError


def _grow(t: torch.Tensor | None, dim: int, needed: int, limit: int, shape, like: torch.Tensor):
    """Return ``t`` with size >= needed along ``dim`` (doubling, capped at ``limit``)."""
    old = 0 if t is None else t.shape[dim]
    if old >= needed:
        return t
    new = max(needed, min(limit, max(16, 2 * old)))
    shape = list(shape)
    shape[dim] = new
    out = torch.zeros(shape, dtype=like.dtype, device=like.device)
    if t is not None and old:
        out.narrow(dim, 0, old).copy_(t)
    return out


def _summary_count(x: int, block: int, c: int) -> int:
    """How many positions j < x have j % block >= block - c."""
    if x <= 0:
        return 0
    return (x // block) * c + max(0, x % block - (block - c))


class GroupCache:
    """Keys and values for one head group of one layer, kept as ``pattern`` needs them.

    The pattern may hold at most one *near* part (``Local`` or ``SameBlock``, kept in a ring
    buffer of ``ring`` slots, position p in slot p % ring) and at most one *far* part
    (``StrideSkip`` or ``BlockSummary``), or be ``Dense`` (every key, in order).
    """

    def __init__(self, pattern: Pattern, max_len: int):
        self.pattern = pattern
        self.max_len = max_len
        parts = pattern.parts
        self.dense = any(isinstance(p, Dense) for p in parts)
        self.local: Local | None = None
        self.block: SameBlock | None = None
        self.skip: StrideSkip | None = None
        self.summary: BlockSummary | None = None
        if not self.dense:
            for p in parts:
                if isinstance(p, (Local, SameBlock)) and (self.local or self.block):
                    raise ConfigError(
                        f"the KV cache supports one Local or SameBlock part per pattern, got {pattern!r}.")
                if isinstance(p, (StrideSkip, BlockSummary)) and (self.skip or self.summary):
                    raise ConfigError(
                        f"the KV cache supports one StrideSkip or BlockSummary part per pattern, "
                        f"got {pattern!r}.")
                if isinstance(p, Local):
                    self.local = p
                elif isinstance(p, SameBlock):
                    self.block = p
                elif isinstance(p, StrideSkip):
                    self.skip = p
                elif isinstance(p, BlockSummary):
                    self.summary = p
                else:
                    raise ConfigError(f"the KV cache does not support the pattern part {p!r}.")
        # Ring size: the band [i - w, i] is w + 1 keys; the current block at most `block` keys.
        self.ring = (self.local.width + 1 if self.local is not None
                     else self.block.block if self.block is not None else 0)
        # Can a query see no key at all? Only a lone BlockSummary (a non-summary column of the
        # first block); such rows output zeros, as in the dense reference.
        self.may_be_empty = not self.dense and self.ring == 0 and self.skip is None
        self.length = 0
        self.keys_read = 0
        # Keys and values share one tensor (k = [:, 0], v = [:, 1] are views), so a one-token
        # step writes and gathers both with one op each.
        self.ring_kv = None  # (B, 2, H, ring, d)
        self.store_k = self.store_v = None  # dense: (B, H, cap, d)
        self.sum_kv = None  # fixed's summary columns: (B, 2, H, cap, d)
        self.count = 0
        self.res_kv = None  # strided residue classes: (l, B, 2, H, cap, d)

    # Views made on each use (a view kept across in-place writes that start tracking
    # gradients would go stale for autograd). The dense store keeps k and v apart: its steps
    # read them directly, with no gather to save.
    @property
    def ring_k(self):   # (B, H, ring, d)
        return None if self.ring_kv is None else self.ring_kv[:, 0]

    @property
    def ring_v(self):
        return None if self.ring_kv is None else self.ring_kv[:, 1]

    @property
    def sum_k(self):    # (B, H, cap, d)
        return None if self.sum_kv is None else self.sum_kv[:, 0]

    @property
    def sum_v(self):
        return None if self.sum_kv is None else self.sum_kv[:, 1]

    @property
    def res_k(self):    # (l, B, H, cap, d)
        return None if self.res_kv is None else self.res_kv[:, :, 0]

    @property
    def res_v(self):
        return None if self.res_kv is None else self.res_kv[:, :, 1]

    # ---------------------------------------------------------------- bookkeeping
    def positions_held(self) -> int:
        """Key positions stored (ring + far store)."""
        held = min(self.length, self.ring)
        if self.dense or self.skip is not None:
            held += self.length
        elif self.summary is not None:
            held += self.count
        return held

    def nbytes(self) -> int:
        tensors = (self.ring_kv, self.store_k, self.store_v, self.sum_kv, self.res_kv)
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)

    def _ring_positions(self, device) -> torch.Tensor:
        """Position held by each ring slot (-1 = empty), from the length alone."""
        slots = torch.arange(self.ring, device=device)
        last = self.length - 1
        pos = last - ((last - slots) % self.ring)
        return torch.where(pos >= 0, pos, torch.full_like(pos, -1))

    def fork(self) -> "GroupCache":
        """An independent copy holding the same positions: only the filled part of each store
        is copied (a deep copy would copy the preallocated capacity too)."""
        g = copy.copy(self)
        g.ring_kv = None if self.ring_kv is None else self.ring_kv.clone()
        if self.store_k is not None:
            g.store_k = self.store_k.narrow(2, 0, self.length).clone()
            g.store_v = self.store_v.narrow(2, 0, self.length).clone()
        if self.res_kv is not None:
            need = max(1, -(-self.length // self.skip.stride))
            g.res_kv = self.res_kv.narrow(4, 0, min(need, self.res_kv.shape[4])).clone()
        if self.sum_kv is not None:
            g.sum_kv = self.sum_kv.narrow(3, 0, max(1, self.count)).clone()
        return g

    def _room(self, B: int, H: int, d: int, like: torch.Tensor, end: int) -> None:
        """The ring, and the residue-class store grown for positions below ``end``."""
        if end > self.max_len:
            raise ShapeError(f"the cache is full: {end} positions exceed max_len {self.max_len}.")
        if self.ring and self.ring_kv is None:
            self.ring_kv = like.new_zeros((B, 2, H, self.ring, d))
        if self.skip is not None:
            l = self.skip.stride
            self.res_kv = _grow(self.res_kv, 4, -(-end // l), -(-self.max_len // l), (l, B, 2, H, 0, d), like)

    def _class_below(self, i: int, lo: int) -> int:
        """How many members of position i's residue class lie below ``lo`` (the far keys it reads)."""
        if lo <= 0:
            return 0
        l = self.skip.stride
        return max(0, (lo - i % l + l - 1) // l)

    def _is_summary(self, i: int) -> bool:
        return self.summary is not None and i % self.summary.block >= self.summary.block - self.summary.c

    def reserve(self, B: int, H: int, d: int, like: torch.Tensor) -> None:
        """Make room for position ``length`` in the ring and the far store (for a caller that
        writes it itself, as the C++ decode step does; then ``advance_one``)."""
        i = self.length
        self._room(B, H, d, like, i + 1)
        if self._is_summary(i):
            limit = _summary_count(self.max_len, self.summary.block, self.summary.c)
            self.sum_kv = _grow(self.sum_kv, 3, self.count + 1, limit, (B, 2, H, 0, d), like)

    def near_far(self, i: int) -> tuple[int, int, int]:
        """(lo, near, far) of a one-token step at position i, its keys written: the near keys
        [lo, i] are the first ``near`` ring slots, the far keys the first ``far`` of the token's
        residue class or of the summary columns (the C++ decode step computes the same)."""
        if self.local is not None:
            lo, near = i - self.local.width, min(i + 1, self.ring)
        elif self.block is not None:
            near = i % self.block.block + 1
            lo = i + 1 - near
        else:
            lo, near = i + 1, 0
        far = 0
        if lo > 0 and self.skip is not None:
            far = self._class_below(i, lo)       # class members r, r + l, ... below lo
        elif lo > 0 and self.summary is not None:
            far = _summary_count(lo, self.summary.block, self.summary.c)
        return lo, near, far

    def advance_one(self) -> None:
        """Count the position a caller wrote after ``reserve`` (and the keys its step read)."""
        i = self.length
        _, near, far = self.near_far(i)
        self.keys_read += near + far
        if self._is_summary(i):
            self.count += 1
        self.length = i + 1

    # ---------------------------------------------------------------- writing
    def append(self, k: torch.Tensor, v: torch.Tensor, start: int, kv: torch.Tensor | None = None) -> None:
        """Store the keys/values of positions start .. start + m - 1 (k, v: (B, H, m, d)).

        ``kv`` (B, 2, H, 1, d), optional for one token: the same k and v stacked, written in
        one copy where the cache keeps them together.
        """
        if start != self.length:
            raise ShapeError(f"cache holds {self.length} positions, cannot append at {start}.")
        B, H, m, d = k.shape
        end = start + m
        self._room(B, H, d, k, end)
        if self.dense:
            self.store_k = _grow(self.store_k, 2, end, self.max_len, (B, H, 0, d), k)
            self.store_v = _grow(self.store_v, 2, end, self.max_len, (B, H, 0, d), v)
            self.store_k[:, :, start:end] = k
            self.store_v[:, :, start:end] = v
            self.count = self.length = end
            return
        if self.ring:
            if m == 1:   # narrow().copy_() costs less Python than indexed assignment
                slot = start % self.ring
                if kv is not None:
                    self.ring_kv.narrow(3, slot, 1).copy_(kv)
                else:
                    self.ring_k.narrow(2, slot, 1).copy_(k)
                    self.ring_v.narrow(2, slot, 1).copy_(v)
            else:
                t = min(m, self.ring)
                slots = torch.arange(end - t, end, device=k.device) % self.ring
                self.ring_k[:, :, slots] = k[:, :, m - t:]
                self.ring_v[:, :, slots] = v[:, :, m - t:]
        if self.skip is not None:
            l = self.skip.stride
            if m == 1:
                if kv is not None:
                    self.res_kv[start % l].narrow(3, start // l, 1).copy_(kv)
                else:
                    self.res_k[start % l].narrow(2, start // l, 1).copy_(k)
                    self.res_v[start % l].narrow(2, start // l, 1).copy_(v)
            else:
                pos = torch.arange(start, end, device=k.device)
                self.res_k[pos % l, :, :, pos // l] = k.permute(2, 0, 1, 3)
                self.res_v[pos % l, :, :, pos // l] = v.permute(2, 0, 1, 3)
        elif self.summary is not None:
            l, c = self.summary.block, self.summary.c
            limit = _summary_count(self.max_len, l, c)
            if m == 1:
                keep = None if start % l >= l - c else False
            else:
                pos = torch.arange(start, end, device=k.device)
                keep = (pos % l >= l - c).nonzero().flatten()
            t = 1 if keep is None else (0 if keep is False else keep.numel())
            if t:
                self.sum_kv = _grow(self.sum_kv, 3, self.count + t, limit, (B, 2, H, 0, d), k)
                if keep is None and kv is not None:
                    self.sum_kv.narrow(3, self.count, 1).copy_(kv)
                elif keep is None:
                    self.sum_k.narrow(2, self.count, 1).copy_(k)
                    self.sum_v.narrow(2, self.count, 1).copy_(v)
                else:
                    self.sum_k[:, :, self.count:self.count + t] = k[:, :, keep]
                    self.sum_v[:, :, self.count:self.count + t] = v[:, :, keep]
                self.count += t
        self.length = end

    # ---------------------------------------------------------------- one token
    def step(self, q, k, v, scale: float, kv: torch.Tensor | None = None) -> torch.Tensor:
        """Attention output (B, H, 1, d) of the next token; appends its k, v first.

        Reads one contiguous ring slice (the band, or the current block) and one contiguous
        far slice (the token's residue class, or the summary columns of finished blocks).
        ``kv`` (B, 2, H, 1, d): k and v stacked, if the caller has them so (saves copies).
        """
        i = self.length
        self.append(k, v, i, kv)
        if self.dense:
            self.keys_read += i + 1
            return F.scaled_dot_product_attention(
                q, self.store_k[:, :, :i + 1], self.store_v[:, :, :i + 1], scale=scale)
        parts = []   # (B, 2, H, K, d) slices: keys and values together
        # near keys [lo, i]: the band (the whole filled ring) or the current block (a prefix);
        # far keys: positions < lo
        lo, near, far = self.near_far(i)
        if near:
            parts.append(self.ring_kv[:, :, :, :near])
        if far and self.skip is not None:
            parts.append(self.res_kv[i % self.skip.stride, :, :, :, :far])
        elif far:
            parts.append(self.sum_kv[:, :, :, :far])
        self.keys_read += near + far
        if not parts:  # no allowed key (lone BlockSummary): zeros, like the reference
            return torch.zeros_like(q)
        # one fused kernel over both key sets: copying <= l + n/l keys is cheaper than the
        # half-dozen small ops of a split softmax
        kvs = parts[0] if len(parts) == 1 else torch.cat(parts, dim=3)
        return F.scaled_dot_product_attention(q, kvs[:, 0], kvs[:, 1], scale=scale)

    # ---------------------------------------------------------------- a chunk
    def attend(self, q, k, v, start: int, scale: float) -> torch.Tensor:
        """Attention of the chunk's queries (positions start ..) over cached + chunk keys.

        q, k, v: (B, H, m, d) for the chunk. Appends k, v to the cache and returns (B, H, m, d).
        The ring holds positions [start - ring, start) and the far stores serve positions
        below that, so the two key sets are disjoint; exact masks come from the pattern.
        """
        if start != self.length:
            raise ShapeError(f"cache holds {self.length} positions, the chunk starts at {start}.")
        m = q.shape[2]
        if m == 1:
            return self.step(q, k, v, scale)
        if self.dense:
            return self._attend_dense(q, k, v, start, scale)
        device = q.device
        far_limit = start - self.ring  # positions < far_limit come from the far store
        blocks = []  # (keys, values, mask or None, per_query)
        read = 0
        qpos = torch.arange(start, start + m, device=device)
        if self.ring and start > 0:
            rp = self._ring_positions(device)
            mask = self.pattern.contains(qpos[:, None], rp[None, :]) & (rp >= 0)[None, :]
            blocks.append((self.ring_k, self.ring_v, mask, False))
            read += min(start, self.ring) * m
        blocks.append((k, v, self.pattern.contains(qpos[:, None], qpos[None, :]), False))
        read += m * m
        if far_limit > 0 and self.skip is not None:
            l = self.skip.stride
            r = qpos % l
            t_each = torch.clamp((far_limit - r + l - 1) // l, min=0)
            t = int(t_each.max())
            if t:
                fk = self.res_k[r, :, :, :t]  # (m, B, H, t, d): each query's residue class
                fv = self.res_v[r, :, :, :t]
                fmask = torch.arange(t, device=device)[None, :] < t_each[:, None]
                blocks.append((fk, fv, fmask, True))
                read += int(t_each.sum())
        elif far_limit > 0 and self.summary is not None:
            f = _summary_count(far_limit, self.summary.block, self.summary.c)
            if f:
                blocks.append((self.sum_k[:, :, :f], self.sum_v[:, :, :f], None, False))
                read += f * m
        self.keys_read += read
        out = _attend_blocks(q, blocks, scale)
        self.append(k, v, start)
        return out

    def _attend_dense(self, q, k, v, start, scale):
        m = q.shape[2]
        self.append(k, v, start)
        end = start + m
        keys, values = self.store_k[:, :, :end], self.store_v[:, :, :end]
        self.keys_read += end * m - (m * (m - 1)) // 2
        qpos = torch.arange(start, end, device=q.device)
        mask = torch.arange(end, device=q.device)[None, :] <= qpos[:, None]
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=scale)


def _attend_blocks(q, blocks, scale: float) -> torch.Tensor:
    """softmax over the concatenated scores of several key blocks, then the weighted values.

    blocks: (k, v, mask, per_query); k is (B, H, K, d) shared by all queries, or
    (m, B, H, K, d) when ``per_query``; mask is None or bool broadcastable to (m, K).
    Rows with no allowed key give zeros (as in the dense reference).
    """
    out_dtype = q.dtype
    qf = q.float()
    scores = []
    for k, v, mask, per_query in blocks:
        kf = k.float()
        if per_query:
            s = torch.einsum("bhmd,mbhkd->bhmk", qf, kf)
        else:
            s = torch.matmul(qf, kf.transpose(-1, -2))
        if mask is not None:
            s = s.masked_fill(~mask, float("-inf"))
        scores.append(s)
    s = scores[0] if len(scores) == 1 else torch.cat(scores, dim=-1)
    s = s * scale
    mx = s.amax(dim=-1, keepdim=True).clamp_min(-1e30)  # rows with no key: all -inf
    p = torch.exp(s - mx)
    p = p / p.sum(dim=-1, keepdim=True).clamp_min(1e-30)
    out = None
    offset = 0
    for (k, v, mask, per_query), sc in zip(blocks, scores):
        w = p[..., offset:offset + sc.shape[-1]]
        offset += sc.shape[-1]
        vf = v.float()
        o = torch.einsum("bhmk,mbhkd->bhmd", w, vf) if per_query else torch.matmul(w, vf)
        out = o if out is None else out + o
    return out.to(out_dtype)


class HeadGroup(NamedTuple):
    """The heads ``h0:h1`` of one layer that share a pattern, and their cache.

    A named tuple so ``model.py`` and ``decode_step.py``, which still read it by index
    (``group[2]``, ``h0, h1, g = group``), work unchanged; new code reads ``.cache``."""

    h0: int
    h1: int
    cache: GroupCache


class KVCache:
    """Per-layer, per-head-group sparse caches for incremental decoding of one model.

    Make one with ``model.new_cache(batch_size)``; ``model(chunk, cache=cache)`` appends.
    ``length`` is the number of positions seen. ``max_chunk`` bounds how many tokens one
    cached step processes at once (longer chunks are split; a chunk given to an empty cache
    goes through the full-sequence attention instead).
    """

    def __init__(self, config, batch_size: int):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}.")
        self.config = config
        self.batch_size = batch_size
        self.length = 0
        self.max_chunk = max(64, config.stride)
        self.layers: list[list[HeadGroup]] = [
            [HeadGroup(h0, h1, GroupCache(p, config.max_len)) for h0, h1, p in config.head_groups(i)]
            for i in range(config.n_layers)
        ]

    def fork(self) -> "KVCache":
        """An independent copy (branching a decode: each branch appends its own tokens)."""
        c = copy.copy(self)
        c.layers = [[g._replace(cache=g.cache.fork()) for g in layer] for layer in self.layers]
        return c

    def groups(self):
        for layer in self.layers:
            for g in layer:
                yield g.cache

    @property
    def keys_read(self) -> int:
        """(query, key) scores computed by cached steps since the last ``reset_counters``."""
        return sum(g.keys_read for g in self.groups())

    def keys_read_per_layer(self) -> list[int]:
        return [sum(g.cache.keys_read for g in layer) for layer in self.layers]

    def reset_counters(self) -> None:
        for g in self.groups():
            g.keys_read = 0

    def positions_held(self) -> list[int]:
        """Key positions stored per layer (summed over head groups)."""
        return [sum(g.cache.positions_held() for g in layer) for layer in self.layers]

    def nbytes(self) -> int:
        return sum(g.nbytes() for g in self.groups())

    def __repr__(self):
        return (f"KVCache(batch_size={self.batch_size}, length={self.length}, "
                f"max_len={self.config.max_len})")


def expected_keys_per_token(pattern: Pattern, i: int) -> int:
    """Keys the dense mask allows for query i (for tests and documentation)."""
    j = torch.arange(i + 1)
    return int(pattern.contains(torch.tensor(i), j).sum())


__all__ = ["KVCache", "GroupCache", "HeadGroup", "expected_keys_per_token"]
