"""SparseTransformer: a decoder-only Transformer with factorized sparse attention.

Read top to bottom: token + position embeddings, ``n_layers`` pre-norm residual blocks
(sparse self-attention, GELU MLP), a final LayerNorm and the output head. Paper details
(Child et al. 2019): output projections of each block start scaled by 1/sqrt(2 n_layers);
dropout only at the end of each residual branch; activation checkpointing when whoever
trains it sets ``model.activation_checkpointing`` (the model holds no precision either: the
trainer runs it under autocast, ``cadenza.train.precision``).

``model(idx)`` gives logits for a whole sequence. ``cache = model.new_cache(batch)`` and then
``model(chunk, cache=cache)`` decode incrementally; see ``cadenza.cache`` for why a token then
costs O(l + n/l) rather than O(n).
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from cadenza import decode_step
from cadenza.attention import Dense, Pattern, sparse_attention
from cadenza.cache import KVCache
from cadenza.config import ModelConfig
from cadenza.errors import ConfigError, ShapeError
from cadenza.rotary import Rotary, rotate


def full_attention(q, k, v, pattern: Pattern, scale: float | None = None) -> torch.Tensor:
    """Causal attention of a whole sequence under ``pattern`` (dense: PyTorch's fused SDPA)."""
    if isinstance(pattern, Dense):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    return sparse_attention(q, k, v, pattern, scale=scale)


class SelfAttention(nn.Module):
    def __init__(self, config: ModelConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_heads = config.n_heads
        self.head_dim = config.head_dim
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.groups = config.head_groups(layer_idx)
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, cache: KVCache | None = None, start: int = 0, rope: torch.Tensor | None = None):
        B, n, d = x.shape
        q, k, v = self.qkv(x).view(B, n, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if rope is not None:  # rotary positions: q and k turned before any kernel or cache sees them
            q, k = rotate(q, rope), rotate(k, rope)
        layer_cache = None if cache is None else cache.layers[self.layer_idx]
        outs = []
        for g, (h0, h1, pattern) in enumerate(self.groups):
            if len(self.groups) == 1:
                qg, kg, vg = q, k, v
            else:
                qg, kg, vg = q[:, h0:h1], k[:, h0:h1], v[:, h0:h1]
            if layer_cache is None:
                outs.append(full_attention(qg, kg, vg, pattern, self.scale))
            elif start == 0:  # empty cache: whole-chunk attention, then keep the keys
                outs.append(full_attention(qg, kg, vg, pattern, self.scale))
                layer_cache[g][2].append(kg, vg, 0)
            else:
                outs.append(layer_cache[g][2].attend(qg, kg, vg, start, self.scale))
        y = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
        y = y.transpose(1, 2).reshape(B, n, d)
        return self.dropout(self.proj(y))


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(config.d_model, config.mlp_ratio * config.d_model)
        self.proj = nn.Linear(config.mlp_ratio * config.d_model, config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm residual block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: ModelConfig, layer_idx: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.d_model)
        self.attn = SelfAttention(config, layer_idx)
        self.ln2 = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)

    def forward(self, x, cache: KVCache | None = None, start: int = 0, rope: torch.Tensor | None = None):
        x = x + self.attn(self.ln1(x), cache, start, rope)
        return x + self.mlp(self.ln2(x))


class PositionEmbedding(nn.Module):
    """Learned embedding per position, or a sum of per-axis embeddings (factorized)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.kind = config.positions
        if self.kind == "learned":
            self.table = nn.Embedding(config.max_len, config.d_model)
        else:
            shape = config.position_shape
            self.axes = nn.ModuleList(nn.Embedding(s, config.d_model) for s in shape)
            radix = [math.prod(shape[a + 1:]) for a in range(len(shape))]
            self.radix_list = radix
            self.register_buffer("radix", torch.tensor(radix, dtype=torch.long), persistent=False)
            self.register_buffer("sizes", torch.tensor(shape, dtype=torch.long), persistent=False)

    def at(self, p: int) -> torch.Tensor:
        """The embedding of the single position p, shape (d_model,)."""
        if self.kind == "learned":
            return self.table.weight[p]
        out = None
        for axis, emb in enumerate(self.axes):
            coord = (p // self.radix_list[axis]) % emb.num_embeddings
            out = emb.weight[coord] if out is None else out + emb.weight[coord]
        return out

    def forward(self, pos: torch.Tensor) -> torch.Tensor:
        if self.kind == "learned":
            return self.table(pos)
        coords = torch.div(pos[:, None], self.radix, rounding_mode="floor") % self.sizes
        out = self.axes[0](coords[:, 0])
        for a in range(1, len(self.axes)):
            out = out + self.axes[a](coords[:, a])
        return out


class SparseTransformer(nn.Module):
    """The Sparse Transformer. ``forward(idx, cache=None) -> logits (batch, n, vocab)``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise ConfigError(
                f"SparseTransformer needs a ModelConfig, got {type(config).__name__}.")
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        # absolute positions added to the tokens, or rotary ones applied to q and k in every layer
        self.pos_emb = PositionEmbedding(config) if config.positions != "rope" else None
        self.rotary = Rotary(config.head_dim, config.rope_base) if config.positions == "rope" else None
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.activation_checkpointing = False   # recompute each block in backward (a training setting)
        self._init_weights()

    def _init_weights(self):
        std = 0.02
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=std)
        # Residual-branch output projections scaled by 1/sqrt(2 * n_layers) (the paper).
        scaled = std / math.sqrt(2 * self.config.n_layers)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=scaled)
            nn.init.normal_(block.mlp.proj.weight, mean=0.0, std=scaled)

    def embed_one(self, idx: torch.Tensor, p: int) -> torch.Tensor:
        """The block input of one token per row at position p (B,) -> (B, d_model): its embedding,
        plus the position's where positions are absolute (rotary ones act inside attention)."""
        x = F.embedding(idx, self.tok_emb.weight)
        return x if self.pos_emb is None else x + self.pos_emb.at(p)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    # ---------------------------------------------------------------- forward
    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits (batch, n, vocab) in float32 for tokens ``idx`` (batch, n).

        With ``cache`` the tokens are appended after the ``cache.length`` already seen and
        only their logits are returned.
        """
        self._check_idx(idx)
        B, n = idx.shape
        if cache is None:
            if n > self.config.max_len:
                raise ShapeError(
                    f"sequence length {n} exceeds max_len {self.config.max_len}.")
            return self._run(idx, None, 0)
        if not isinstance(cache, KVCache) or cache.config != self.config:
            raise ConfigError("cache was not made by this model's new_cache().")
        if B != cache.batch_size:
            raise ShapeError(f"the cache was made for batch size {cache.batch_size}, got {B}.")
        if cache.length + n > self.config.max_len:
            raise ShapeError(
                f"the cache holds {cache.length} tokens and {n} more would exceed max_len "
                f"{self.config.max_len}; start a new cache (generate() slides the window).")
        if n == 1 and cache.length > 0 and not (self.training and self.config.dropout > 0):
            return decode_step.decode_one(self, idx, cache)
        if cache.length == 0 or n <= cache.max_chunk:
            out = self._run(idx, cache, cache.length)
            cache.length += n
            return out
        pieces = []
        for s in range(0, n, cache.max_chunk):
            chunk = idx[:, s:s + cache.max_chunk]
            pieces.append(self._run(chunk, cache, cache.length))
            cache.length += chunk.shape[1]
        return torch.cat(pieces, dim=1)

    def _check_idx(self, idx):
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2:
            shape = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
            raise ShapeError(f"tokens must be a (batch, n) tensor, got {shape}.")
        if idx.dtype not in (torch.long, torch.int32, torch.int64, torch.int16, torch.uint8):
            raise ShapeError(f"tokens must be an integer tensor, got {idx.dtype}.")
        if idx.shape[1] < 1:
            raise ShapeError("tokens must hold at least one position.")
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= self.config.vocab_size:
            bad = lo if lo < 0 else hi
            raise ShapeError(f"token {bad} is outside the vocabulary [0, {self.config.vocab_size}).")

    def _run(self, idx, cache, start):
        n = idx.shape[1]
        x = self.tok_emb(idx)
        rope = None
        if self.rotary is not None:
            rope = self.rotary.tables(start, n)
        else:
            x = x + self.pos_emb(torch.arange(start, start + n, device=idx.device))
        use_ckpt = (self.activation_checkpointing and self.training and cache is None
                    and torch.is_grad_enabled())
        for block in self.blocks:
            if use_ckpt:
                x = checkpoint(block, x, None, 0, rope, use_reentrant=False)
            else:
                x = block(x, cache, start, rope)
        logits = self.head(self.ln_f(x))
        return logits.float()

    # ---------------------------------------------------------------- one-token decoding (cadenza.decode_step)
    def set_decode_weights(self, kind: str = "float32") -> str:
        """Weights used by one-token cached steps: "float32" (exact) or "int8".

        "int8" keeps every linear layer's weight as int8 with a per-row scale
        (``cadenza.quant``): a decoding step then streams 4x fewer bytes, at a small
        change in the logits. Full-sequence calls and multi-token chunks always use the
        float32 weights. Falls back to "float32" (with a warning) where the int8 kernel
        does not run; returns the kind in use.
        """
        kind = decode_step.decode_kind(kind, self.device.type)
        self.__dict__["_decode_kind"] = kind
        return kind

    @contextlib.contextmanager
    def decoding_with(self, kind: str):
        """``with model.decoding_with("float32"): ...`` and the previous decode weights after."""
        before = self.decode_weights
        self.set_decode_weights(kind)
        try:
            yield self
        finally:
            self.set_decode_weights(before)

    @property
    def decode_weights(self) -> str:
        return self.__dict__.get("_decode_kind", "float32")

    def _apply(self, *args, **kwargs):  # .to(), .cuda(), .float(), ...: decode_step regathers the weights
        self.__dict__.pop("_fast", None)
        return super()._apply(*args, **kwargs)

    def load_state_dict(self, *args, **kwargs):
        self.__dict__.pop("_fast", None)
        return super().load_state_dict(*args, **kwargs)

    def loss(self, idx: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100):
        """Mean next-token cross-entropy of ``model(idx)`` against ``targets`` (batch, n)."""
        logits = self(idx)
        if targets.shape != idx.shape:
            raise ShapeError(
                f"targets shape {tuple(targets.shape)} differs from tokens {tuple(idx.shape)}.")
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=ignore_index)

    def new_cache(self, batch_size: int = 1) -> KVCache:
        """An empty sparse KV cache for incremental decoding of ``batch_size`` sequences."""
        return KVCache(self.config, batch_size)

    # ---------------------------------------------------------------- files
    def save(self, directory) -> Path:
        """Write model.safetensors and config.json into ``directory`` (``cadenza.model_files``)."""
        from cadenza.model_files import save_model

        return save_model(self, directory)

    @classmethod
    def load(cls, directory, map_location="cpu") -> "SparseTransformer":
        """Load a model written by :meth:`save`; ModelFileError says what is wrong if it fails."""
        from cadenza.model_files import load_model

        return load_model(cls, directory, map_location)


__all__ = ["ModelConfig", "SparseTransformer", "KVCache"]
