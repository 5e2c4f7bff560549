"""Named model sizes: small functions that return a ModelConfig.

``get_preset(name, **overrides)`` returns the preset with some fields changed, e.g.
``get_preset("small", vocab_size=codec.vocab_size)``.
"""

from __future__ import annotations

from typing import Callable

from cadenza.config import ModelConfig
from cadenza.errors import ConfigError


def tiny(**overrides) -> ModelConfig:
    """Trains in seconds on a CPU: for tests and smoke runs (about 60k parameters)."""
    base = dict(vocab_size=256, d_model=64, n_layers=2, n_heads=2, max_len=256,
                attention="strided", stride=16, summary=4, integration="merged")
    return ModelConfig(**{**base, **overrides})


def small(**overrides) -> ModelConfig:
    """A few million parameters: the benchmark size (d_model 256, 6 layers, 4 heads)."""
    base = dict(vocab_size=512, d_model=256, n_layers=6, n_heads=4, max_len=4096,
                attention="strided", stride=64, summary=8, integration="merged", dropout=0.1)
    return ModelConfig(**{**base, **overrides})


def medium(**overrides) -> ModelConfig:
    """About 25M parameters, long context: a music model trained for hours on a CPU."""
    base = dict(vocab_size=512, d_model=512, n_layers=8, n_heads=8, max_len=8192,
                attention="strided", stride=128, summary=16, integration="merged",
                dropout=0.1)
    return ModelConfig(**{**base, **overrides})


def bench(**overrides) -> ModelConfig:
    """The decode/throughput benchmark model: d_model 256, 6 layers, 4 heads, 64k context."""
    base = dict(vocab_size=256, d_model=256, n_layers=6, n_heads=4, max_len=65536,
                attention="strided", stride=128, summary=8, integration="merged")
    return ModelConfig(**{**base, **overrides})


PRESETS: dict[str, Callable[..., ModelConfig]] = {
    "tiny": tiny,
    "small": small,
    "medium": medium,
    "bench": bench,
}


def get_preset(name: str, **overrides) -> ModelConfig:
    """The named preset's ModelConfig, with ``overrides`` applied (and validated)."""
    if name not in PRESETS:
        raise ConfigError(
            f"unknown model preset {name!r}; known presets: {', '.join(sorted(PRESETS))}.")
    known = set(ModelConfig.__dataclass_fields__)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown model config fields: {', '.join(unknown)}.")
    return PRESETS[name](**overrides)


__all__ = ["PRESETS", "get_preset", "tiny", "small", "medium", "bench"]
