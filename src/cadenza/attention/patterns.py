"""Attention patterns: which earlier keys each query may attend.

Every pattern is causal. ``contains(i, j)`` is the elementwise rule on (broadcast) index
tensors; ``mask(n)`` evaluates it on the full n x n grid and is the specification that the
fast path (``factorized.py``) and the dense reference (``reference.py``) both follow.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cadenza.errors import ConfigError


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


class Pattern:
    """Base class. Subclasses define ``contains``; ``parts`` lists the primitive patterns."""

    def contains(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def mask(self, n: int, device=None) -> torch.Tensor:
        """Boolean [n, n] tensor: True where query i may attend key j."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"sequence length must be a non-negative integer, got {n!r}")
        idx = torch.arange(n, device=device)
        return self.contains(idx[:, None], idx[None, :])

    @property
    def parts(self) -> tuple["Pattern", ...]:
        return (self,)

    def keys_per_query(self, n: int) -> torch.Tensor:
        """Number of attended keys for every query position (for counting tests and docs)."""
        return self.mask(n).sum(dim=1)

    def __or__(self, other: "Pattern") -> "Union":
        return Union(self, other)


@dataclass(frozen=True)
class Local(Pattern):
    """The band: j in [i - width, i]."""

    width: int

    def __post_init__(self):
        if isinstance(self.width, bool) or not isinstance(self.width, int) or self.width < 0:
            raise ConfigError(f"Local width must be a non-negative integer, got {self.width!r}")

    def contains(self, i, j):
        return (j <= i) & (j >= i - self.width)


@dataclass(frozen=True)
class StrideSkip(Pattern):
    """Every stride-th earlier key: j <= i and (i - j) % stride == 0."""

    stride: int

    def __post_init__(self):
        _positive_int("StrideSkip stride", self.stride)

    def contains(self, i, j):
        return (j <= i) & ((i - j) % self.stride == 0)


@dataclass(frozen=True)
class SameBlock(Pattern):
    """Earlier keys of the same block: j <= i and j // block == i // block."""

    block: int

    def __post_init__(self):
        _positive_int("SameBlock block", self.block)

    def contains(self, i, j):
        return (j <= i) & (torch.div(j, self.block, rounding_mode="floor")
                           == torch.div(i, self.block, rounding_mode="floor"))


@dataclass(frozen=True)
class BlockSummary(Pattern):
    """The last c columns of every block: j <= i and j % block >= block - c."""

    block: int
    c: int

    def __post_init__(self):
        _positive_int("BlockSummary block", self.block)
        _positive_int("BlockSummary c", self.c)
        if self.c > self.block:
            raise ConfigError(
                f"BlockSummary c ({self.c}) must not exceed the block size ({self.block})")

    def contains(self, i, j):
        return (j <= i) & (j % self.block >= self.block - self.c)


@dataclass(frozen=True)
class Dense(Pattern):
    """Every earlier key: j <= i."""

    def contains(self, i, j):
        return j <= i


class Union(Pattern):
    """A query may attend a key when any of the patterns allows it."""

    def __init__(self, *patterns: Pattern):
        if not patterns:
            raise ConfigError("Union needs at least one pattern")
        flat: list[Pattern] = []
        for p in patterns:
            if not isinstance(p, Pattern):
                raise ConfigError(f"Union takes Pattern objects, got {type(p).__name__}")
            for part in p.parts:
                if part not in flat:
                    flat.append(part)
        self._parts = tuple(flat)

    @property
    def parts(self):
        return self._parts

    def contains(self, i, j):
        out = self._parts[0].contains(i, j)
        for p in self._parts[1:]:
            out = out | p.contains(i, j)
        return out

    def __eq__(self, other):
        return isinstance(other, Union) and self._parts == other._parts

    def __hash__(self):
        return hash(self._parts)

    def __repr__(self):
        return f"Union({', '.join(map(repr, self._parts))})"


def strided(l: int) -> Union:
    """The paper's strided pattern: local band of width l plus every l-th earlier key."""
    _positive_int("stride", l)
    return Union(Local(l), StrideSkip(l))


def fixed(l: int, c: int) -> Union:
    """The paper's fixed pattern: own block of size l plus the last c columns of each block."""
    _positive_int("block", l)
    return Union(SameBlock(l), BlockSummary(l, c))
