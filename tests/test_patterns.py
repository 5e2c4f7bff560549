"""Masks follow the definitions; strided and fixed reach every earlier position in two hops."""

import pytest
import torch

from cadenza.attention import (
    BlockSummary, Dense, Local, SameBlock, StrideSkip, Union, fixed, strided,
)


def brute(n, rule):
    return torch.tensor([[rule(i, j) for j in range(n)] for i in range(n)])


@pytest.mark.parametrize("n", [1, 13, 40])
@pytest.mark.parametrize("p", [1, 3, 8])
def test_masks_match_definitions(n, p):
    assert torch.equal(Local(p).mask(n), brute(n, lambda i, j: i - p <= j <= i))
    assert torch.equal(StrideSkip(p).mask(n), brute(n, lambda i, j: j <= i and (i - j) % p == 0))
    assert torch.equal(SameBlock(p).mask(n), brute(n, lambda i, j: j <= i and j // p == i // p))
    c = max(1, p // 2)
    assert torch.equal(BlockSummary(p, c).mask(n), brute(n, lambda i, j: j <= i and j % p >= p - c))
    assert torch.equal(Dense().mask(n), brute(n, lambda i, j: j <= i))
    assert torch.equal(strided(p).mask(n), Local(p).mask(n) | StrideSkip(p).mask(n))
    assert torch.equal(fixed(p, c).mask(n), SameBlock(p).mask(n) | BlockSummary(p, c).mask(n))


def test_parts_and_union_flattening():
    assert strided(4).parts == (Local(4), StrideSkip(4))
    assert fixed(4, 2).parts == (SameBlock(4), BlockSummary(4, 2))
    u = Union(strided(4), Local(4), Dense())
    assert u.parts == (Local(4), StrideSkip(4), Dense())
    assert (Local(2) | StrideSkip(3)).parts == (Local(2), StrideSkip(3))


def _two_hop(mask):
    m = mask.float()
    return ((m @ m) > 0) | mask


@pytest.mark.parametrize("n,l", [(64, 8), (100, 10), (97, 7), (128, 11)])
def test_two_hops_reach_every_earlier_position(n, l):
    causal = Dense().mask(n)
    assert torch.equal(_two_hop(strided(l).mask(n)), causal)
    assert torch.equal(_two_hop(fixed(l, 1).mask(n)), causal)
    # a single part alone does not connect everything
    assert not torch.equal(_two_hop(Local(l).mask(n)), causal)


@pytest.mark.parametrize("n,l", [(256, 16), (1024, 32), (4096, 64)])
def test_keys_per_row_grow_as_l_plus_n_over_l(n, l):
    for pattern, c in ((strided(l), 1), (fixed(l, 2), 2)):
        most = int(pattern.keys_per_query(n).max())
        assert most <= l + 1 + c * (n // l) + 1
        assert most < n // 4  # far from dense
