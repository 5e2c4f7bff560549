"""Factorized sparse attention (Child et al. 2019): patterns, the dense reference, the fast path."""

from cadenza.attention.factorized import sparse_attention
from cadenza.attention.patterns import (
    BlockSummary,
    Dense,
    Local,
    Pattern,
    SameBlock,
    StrideSkip,
    Union,
    fixed,
    strided,
)
from cadenza.attention.reference import reference_attention
from cadenza.attention import kernels  # noqa: E402  (the C++ kernel loader; builds lazily)

__all__ = [
    "BlockSummary", "Dense", "Local", "Pattern", "SameBlock", "StrideSkip", "Union",
    "fixed", "strided", "sparse_attention", "reference_attention", "kernels",
]
