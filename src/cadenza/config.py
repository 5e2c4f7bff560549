"""ModelConfig: every hyperparameter of a SparseTransformer, validated, and its attention layout.

The attention layout follows Child et al. (2019):

- ``attention``: "strided" (band of width l + every l-th earlier key), "fixed" (own block of
  size l + the last ``summary`` columns of every block) or "dense" (all earlier keys).
- ``integration`` (paper section 4.3), how the two parts of a sparse pattern are combined:
  "interleaved" (layer k uses part k mod 2), "merged" (every head attends the union) or
  "split" (the first half of the heads use part 0, the second half part 1). It has no
  effect on dense attention.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from cadenza.attention import Dense, Pattern, Union, fixed, strided
from cadenza.errors import ConfigError

ATTENTION_KINDS = ("strided", "fixed", "dense")
INTEGRATIONS = ("interleaved", "merged", "split")
POSITION_KINDS = ("learned", "factorized", "rope")
# Training settings a config.json held before training owned them (``activation_checkpointing``
# and ``precision`` of cadenza.train.config.TrainConfig): read and ignored here.
TRAINING_FIELDS = ("checkpointing", "dtype")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class ModelConfig:
    """Hyperparameters of a :class:`cadenza.model.SparseTransformer`.

    ``stride`` (l) defaults to about sqrt(max_len); ``summary`` (c, fixed pattern only) defaults
    to min(8, stride). ``position_shape`` (e.g. (rows, cols, channels) for images) is required
    for factorized positions: position p is split into mixed-radix coordinates and gets the sum
    of one learned embedding per axis. ``positions="rope"`` rotates queries and keys instead
    (``cadenza.rotary``; ``rope_base`` sets the angles), so attention sees relative positions
    and the model has no position table. The model's shape only: how it is run (precision,
    activation checkpointing) is the training run's (``cadenza.train.config.TrainConfig``).
    """

    vocab_size: int = 256
    d_model: int = 256
    n_layers: int = 6
    n_heads: int = 4
    max_len: int = 4096
    attention: str = "strided"
    stride: int | None = None
    summary: int | None = None
    integration: str = "merged"
    positions: str = "learned"
    position_shape: tuple[int, ...] | None = None
    rope_base: float = 10000.0
    mlp_ratio: int = 4
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "max_len", "mlp_ratio"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}).")
        if self.attention not in ATTENTION_KINDS:
            raise ConfigError(
                f"attention must be one of {', '.join(ATTENTION_KINDS)}, got {self.attention!r}.")
        if self.integration not in INTEGRATIONS:
            raise ConfigError(
                f"integration must be one of {', '.join(INTEGRATIONS)}, got {self.integration!r}.")
        if self.stride is None:
            self.stride = max(1, round(math.sqrt(self.max_len)))
        if not _is_int(self.stride) or self.stride < 1:
            raise ConfigError(f"stride must be a positive integer, got {self.stride!r}.")
        if self.summary is None:
            self.summary = min(8, self.stride)
        if not _is_int(self.summary) or self.summary < 1:
            raise ConfigError(f"summary must be a positive integer, got {self.summary!r}.")
        if self.summary > self.stride:
            raise ConfigError(
                f"summary ({self.summary}) must not exceed stride ({self.stride}).")
        if (self.attention != "dense" and self.integration == "split"
                and self.n_heads % 2):
            raise ConfigError(
                f"split integration needs an even number of heads, got n_heads={self.n_heads}.")
        if self.positions not in POSITION_KINDS:
            raise ConfigError(
                f"positions must be one of {', '.join(POSITION_KINDS)}, got {self.positions!r}.")
        if self.positions == "factorized":
            shape = self.position_shape
            if (not isinstance(shape, (tuple, list)) or not shape
                    or not all(_is_int(s) and s >= 1 for s in shape)):
                raise ConfigError(
                    "factorized positions need position_shape, a tuple of positive integers "
                    f"such as (rows, cols, channels), got {shape!r}.")
            self.position_shape = tuple(shape)
            if math.prod(self.position_shape) < self.max_len:
                raise ConfigError(
                    f"position_shape {self.position_shape} covers {math.prod(self.position_shape)} "
                    f"positions, fewer than max_len ({self.max_len}).")
        elif self.positions == "rope" and self.head_dim % 2:
            raise ConfigError(f"rotary positions need an even head_dim, got {self.head_dim} "
                              f"(d_model {self.d_model} / n_heads {self.n_heads}).")
        elif self.position_shape is not None:
            if not isinstance(self.position_shape, (tuple, list)):
                raise ConfigError(
                    f"position_shape must be a tuple of integers, got {self.position_shape!r}.")
            self.position_shape = tuple(self.position_shape)
        if (isinstance(self.rope_base, bool) or not isinstance(self.rope_base, (int, float))
                or not self.rope_base > 1.0):
            raise ConfigError(f"rope_base must be a number above 1, got {self.rope_base!r}.")
        self.rope_base = float(self.rope_base)
        if (isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float))
                or not 0.0 <= self.dropout < 1.0):
            raise ConfigError(f"dropout must be a number in [0, 1), got {self.dropout!r}.")
        self.dropout = float(self.dropout)

    # ------------------------------------------------------------------ attention layout
    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def pattern(self) -> Pattern:
        """The whole pattern: strided(l), fixed(l, c) or Dense()."""
        if self.attention == "strided":
            return strided(self.stride)
        if self.attention == "fixed":
            return fixed(self.stride, self.summary)
        return Dense()

    def head_groups(self, layer_idx: int) -> list[tuple[int, int, Pattern]]:
        """[(first_head, stop_head, pattern)] for one layer; the groups cover every head once."""
        if not _is_int(layer_idx) or not 0 <= layer_idx < self.n_layers:
            raise ConfigError(
                f"layer index must be in [0, {self.n_layers}), got {layer_idx!r}.")
        whole = self.pattern()
        if self.attention == "dense" or self.integration == "merged":
            return [(0, self.n_heads, whole)]
        parts = whole.parts
        if self.integration == "interleaved":
            return [(0, self.n_heads, parts[layer_idx % len(parts)])]
        half = self.n_heads // 2
        return [(0, half, parts[0]), (half, self.n_heads, parts[1 % len(parts)])]

    def pattern_for_layer(self, layer_idx: int) -> Pattern:
        """The keys a layer can see: its one pattern, or for split the union over its heads."""
        groups = self.head_groups(layer_idx)
        if len(groups) == 1:
            return groups[0][2]
        return Union(*(p for _, _, p in groups))

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["position_shape"] is not None:
            d["position_shape"] = list(d["position_shape"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"a model config must be a JSON object, got {type(d).__name__}.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known - set(TRAINING_FIELDS))
        if unknown:
            raise ConfigError(f"unknown model config fields: {', '.join(unknown)}.")
        d = {k: v for k, v in d.items() if k in known}
        if isinstance(d.get("position_shape"), list):
            d["position_shape"] = tuple(d["position_shape"])
        return cls(**d)

    def replace(self, **changes) -> "ModelConfig":
        """A copy with some fields changed (validated again)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"unknown model config fields: {', '.join(unknown)}.")
        return dataclasses.replace(self, **changes)
