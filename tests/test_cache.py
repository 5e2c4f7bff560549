"""Sparse KV cache: cached decoding equals the full forward; memory and reads follow the pattern."""

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cadenza.cache import GroupCache, HeadGroup, KVCache, expected_keys_per_token
from cadenza.config import ModelConfig
from cadenza.errors import ConfigError, ShapeError
from cadenza.model import SparseTransformer
from cadenza.train.precision import autocast

L, C = 4, 2  # stride / block and summary width of the tiny models
N = 45  # sequence length: not a multiple of L, many blocks



def make_model(attention, integration, seed=0, **kw):
    torch.manual_seed(seed)
    base = dict(vocab_size=11, d_model=16, n_layers=2, n_heads=2, max_len=64,
                attention=attention, stride=L, summary=C, integration=integration)
    base.update(kw)
    return SparseTransformer(ModelConfig(**base)).eval()


def decode_in_chunks(model, x, prompt_len, chunk, max_chunk=None):
    cache = model.new_cache(x.shape[0])
    if max_chunk is not None:
        cache.max_chunk = max_chunk
    outs = [model(x[:, :prompt_len], cache=cache)]
    for s in range(prompt_len, x.shape[1], chunk):
        outs.append(model(x[:, s:s + chunk], cache=cache))
    assert cache.length == x.shape[1]
    return torch.cat(outs, dim=1), cache


@pytest.mark.parametrize("attention,integration", list(itertools.product(
    ["strided", "fixed", "dense"], ["interleaved", "merged", "split"])))
@pytest.mark.parametrize("chunk", [1, 3, 17])
def test_cached_logits_equal_full_sequence_logits(attention, integration, chunk):
    model = make_model(attention, integration)
    x = torch.randint(0, 11, (2, N), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(x)
        # prompt lengths: 1 token, inside the first block, crossing several block boundaries
        for prompt_len in (1, 6, 13):
            got, _ = decode_in_chunks(model, x, prompt_len, chunk)
            assert torch.allclose(got, full, atol=1e-5, rtol=1e-4), (prompt_len, chunk)


@pytest.mark.parametrize("attention,integration", [
    ("strided", "merged"), ("strided", "interleaved"), ("fixed", "split"), ("fixed", "interleaved"),
])
def test_long_chunks_split_into_pieces_and_factorized_positions(attention, integration):
    model = make_model(attention, integration, n_layers=3, n_heads=4, positions="factorized",
                       position_shape=(4, 4, 4))
    x = torch.randint(0, 11, (1, 61), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(x)
        got, _ = decode_in_chunks(model, x, prompt_len=9, chunk=40, max_chunk=7)
    assert torch.allclose(got, full, atol=1e-5, rtol=1e-4)


@settings(max_examples=12, deadline=None)
@given(attention=st.sampled_from(["strided", "fixed"]),
       integration=st.sampled_from(["interleaved", "merged", "split"]),
       stride=st.integers(1, 6), summary=st.integers(1, 6),
       chunks=st.lists(st.integers(1, 9), min_size=1, max_size=8))
def test_any_chunk_schedule_matches_full_forward(attention, integration, stride, summary, chunks):
    model = make_model(attention, integration, stride=stride, summary=min(summary, stride))
    n = sum(chunks)
    x = torch.randint(0, 11, (1, n), generator=torch.Generator().manual_seed(n))
    cache = model.new_cache(1)
    with torch.no_grad():
        full = model(x)
        outs, s = [], 0
        for c in chunks:
            outs.append(model(x[:, s:s + c], cache=cache))
            s += c
    assert torch.allclose(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-4)


def test_bfloat16_cached_decoding_stays_close():
    model = make_model("strided", "merged")
    x = torch.randint(0, 11, (1, 30))
    with torch.no_grad(), autocast("bf16", "cpu"):
        full = model(x)
        got, _ = decode_in_chunks(model, x, 5, 1)
    assert torch.isfinite(got).all() and (got - full).abs().max() < 0.1


# ---------------------------------------------------------------------------- memory and reads
def test_fixed_cache_holds_O_l_plus_c_n_over_l_positions():
    l, c = 8, 2
    model = make_model("fixed", "merged", stride=l, summary=c, max_len=400, n_layers=1)
    x = torch.randint(0, 11, (1, 397))
    cache = model.new_cache(1)
    with torch.no_grad():
        model(x[:, :10], cache=cache)
        for t in range(10, 397):
            model(x[:, t:t + 1], cache=cache)
            n = t + 1
            held = cache.positions_held()[0]
            assert held <= l + c * math.ceil(n / l), (n, held)
    assert cache.positions_held()[0] < 120 < 397  # far below the n a dense cache holds
    dense = make_model("dense", "merged", max_len=400, n_layers=1)
    dcache = dense.new_cache(1)
    with torch.no_grad():
        dense(x, cache=dcache)
    assert dcache.positions_held() == [397]


@pytest.mark.parametrize("integration", ["merged", "interleaved", "split"])
def test_strided_decode_step_reads_O_l_plus_n_over_l_keys(integration):
    l = 8
    model = make_model("strided", integration, stride=l, max_len=300, n_layers=2, n_heads=2)
    x = torch.randint(0, 11, (1, 300))
    cache = model.new_cache(1)
    with torch.no_grad():
        model(x[:, :20], cache=cache)
        for i in range(20, 300):
            cache.reset_counters()
            model(x[:, i:i + 1], cache=cache)
            for layer in cache.layers:
                for _, _, group in layer:
                    needed = expected_keys_per_token(group.pattern, i)
                    # a strided step reads exactly the keys its pattern allows: band + one class
                    assert group.keys_read == needed, (i, group.pattern, group.keys_read, needed)
            for read in cache.keys_read_per_layer():
                assert read <= (l + 1) + (i // l + 1)
    assert max(cache.keys_read_per_layer()) < 60 < 300


def test_dense_decode_step_reads_every_key():
    model = make_model("dense", "merged")
    x = torch.randint(0, 11, (1, 30))
    cache = model.new_cache(1)
    with torch.no_grad():
        model(x[:, :29], cache=cache)
        cache.reset_counters()
        model(x[:, 29:], cache=cache)
    assert cache.keys_read_per_layer() == [30, 30]


@pytest.mark.parametrize("integration", ["merged", "interleaved", "split"])
def test_fixed_decode_step_reads_its_block_and_the_summaries(integration):
    l, c = 8, 2
    model = make_model("fixed", integration, stride=l, summary=c, max_len=200, n_layers=2)
    x = torch.randint(0, 11, (1, 200))
    cache = model.new_cache(1)
    with torch.no_grad():
        model(x[:, :20], cache=cache)
        for i in range(20, 200):
            cache.reset_counters()
            model(x[:, i:i + 1], cache=cache)
            for layer in cache.layers:
                for _, _, group in layer:
                    assert group.keys_read == expected_keys_per_token(group.pattern, i)
            for read in cache.keys_read_per_layer():
                assert read <= l + c * (i // l + 1)


# ---------------------------------------------------------------------------- errors
def test_cache_errors():
    model = make_model("strided", "merged", max_len=20)
    other = make_model("fixed", "merged", max_len=20)
    cache = model.new_cache(2)
    with pytest.raises(ShapeError, match="batch size 2"):
        model(torch.zeros(1, 3, dtype=torch.long), cache=cache)
    with pytest.raises(ConfigError):
        other(torch.zeros(2, 3, dtype=torch.long), cache=cache)
    model(torch.zeros(2, 18, dtype=torch.long), cache=cache)
    with pytest.raises(ShapeError, match="exceed max_len"):
        model(torch.zeros(2, 3, dtype=torch.long), cache=cache)
    with pytest.raises(ConfigError):
        model.new_cache(0)
    assert isinstance(cache, KVCache) and cache.length == 18 and cache.nbytes() > 0


def test_head_groups_are_records_that_still_read_by_index():
    """A layer's head groups are ``HeadGroup(h0, h1, cache)``; index reads (``group[2]``,
    unpacking), which model.py and decode_step.py still use, give the same objects."""
    model = make_model("strided", "split")
    cache = model.new_cache(1)
    for i, layer in enumerate(cache.layers):
        assert [(g.h0, g.h1, g.cache.pattern) for g in layer] == model.config.head_groups(i)
        for g in layer:
            assert isinstance(g, HeadGroup) and isinstance(g.cache, GroupCache)
            h0, h1, gc = g
            assert (h0, h1) == (g.h0, g.h1) and gc is g.cache is g[2]
    fork = cache.fork()
    for mine, theirs in zip(cache.layers, fork.layers):
        assert all(isinstance(t, HeadGroup) and t.cache is not m.cache and (t.h0, t.h1) == (m.h0, m.h1)
                   for m, t in zip(mine, theirs))


@pytest.mark.parametrize("attention", ["strided", "fixed", "dense"])
@pytest.mark.parametrize("prompt", [1, L, L + 1, N])
def test_fork_branches_like_a_deep_copy_and_leaves_the_original(attention, prompt):
    import copy

    model = make_model(attention, "interleaved")
    x = torch.randint(0, 11, (1, prompt))
    cache = model.new_cache(1)
    with torch.no_grad():
        model(x, cache=cache)
        a, b = cache.fork(), copy.deepcopy(cache)
        assert a.nbytes() <= b.nbytes()
        nxt = torch.randint(0, 11, (1, 12))
        for t in range(nxt.shape[1]):
            assert torch.equal(model(nxt[:, t:t + 1], cache=a), model(nxt[:, t:t + 1], cache=b))
        assert cache.length == prompt                       # the original did not move
        full = model(torch.cat([x, nxt[:, :1]], dim=1))[:, -1]
        assert torch.allclose(model(nxt[:, :1], cache=cache)[:, -1], full, atol=1e-5)
