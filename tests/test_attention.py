"""The fast path equals the dense reference (values and gradients) for every pattern."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cadenza.attention import (
    BlockSummary, Dense, Local, SameBlock, StrideSkip, Union, fixed, reference_attention,
    sparse_attention, strided,
)
from cadenza.attention.layouts import plan_for
from cadenza.errors import CadenzaError, ConfigError, ShapeError


def _check(pattern, n, b=1, h=2, d=8, dtype=torch.float32, backend="auto", seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, h, n, d, generator=g).to(dtype).requires_grad_() for _ in range(3))
    dout = torch.randn(b, h, n, d, generator=g).to(dtype)
    out = sparse_attention(q, k, v, pattern, backend=backend)
    grads = torch.autograd.grad(out, (q, k, v), dout)
    # the reference runs in float64 so that it is the more exact of the two
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref = reference_attention(q64, k64, v64, pattern)
    ref_grads = torch.autograd.grad(ref, (q64, k64, v64), dout.double())
    tol = 3e-2 if dtype == torch.bfloat16 else 1e-5  # float64 inputs are computed in float32
    torch.testing.assert_close(out.double(), ref, atol=tol, rtol=tol)
    for name, a, r in zip("qkv", grads, ref_grads):
        torch.testing.assert_close(a.double(), r, atol=tol * 4, rtol=tol * 4, msg=lambda m: f"d{name}: {m}")


primitive = st.one_of(
    st.builds(Local, st.integers(0, 64)),
    st.builds(StrideSkip, st.integers(1, 64)),
    st.builds(SameBlock, st.integers(1, 64)),
    st.integers(1, 64).flatmap(lambda b: st.builds(BlockSummary, st.just(b), st.integers(1, b))),
)
composite = st.one_of(
    st.integers(1, 64).map(strided),
    st.integers(1, 64).flatmap(lambda l: st.integers(1, l).map(lambda c: fixed(l, c))),
    st.lists(primitive, min_size=1, max_size=3).map(lambda ps: Union(*ps)),
    primitive,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=composite, n=st.integers(1, 700), b=st.integers(1, 2), h=st.integers(1, 3),
       d=st.sampled_from([4, 8, 16]), seed=st.integers(0, 2**16))
def test_fast_path_matches_reference_float32(pattern, n, b, h, d, seed):
    _check(pattern, n, b, h, d, seed=seed)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=composite, n=st.integers(1, 300), seed=st.integers(0, 2**16))
def test_fast_path_matches_reference_bfloat16(pattern, n, seed):
    _check(pattern, n, dtype=torch.bfloat16, seed=seed)


@pytest.mark.parametrize("backend", ["flash", "chunked"])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=composite, n=st.integers(1, 300), seed=st.integers(0, 2**16))
def test_other_backends_match_reference(backend, pattern, n, seed):
    _check(pattern, n, backend=backend, seed=seed)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=composite, n=st.integers(1, 300), seed=st.integers(0, 2**16))
def test_chunked_backend_bfloat16(pattern, n, seed):
    _check(pattern, n, dtype=torch.bfloat16, backend="chunked", seed=seed)


def test_chunked_backend_float64_and_small_chunks(monkeypatch):
    from cadenza.attention import chunked

    monkeypatch.setattr(chunked, "CHUNK_ELEMENTS", 64)  # many chunks per layout
    for pattern in (strided(8), fixed(8, 2), Union(Local(3), BlockSummary(5, 2))):
        _check(pattern, 77, b=2, h=2, d=8, dtype=torch.float64, backend="chunked")


@pytest.mark.parametrize("pattern", [strided(16), fixed(16, 4), Dense(), Local(7), BlockSummary(9, 3)])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 100, 257])
def test_known_patterns_and_edge_lengths(pattern, n):
    _check(pattern, n, b=2, h=2, d=16)


def test_rows_without_keys_give_zero_output_and_zero_gradient():
    pattern = BlockSummary(8, 2)  # positions 0..5 see no key at all
    q, k, v = (torch.randn(1, 1, 20, 4, requires_grad=True) for _ in range(3))
    out = sparse_attention(q, k, v, pattern)
    assert torch.all(out[0, 0, :6] == 0)
    assert torch.all(out[0, 0, 6:].abs().sum(-1) > 0)
    out.sum().backward()
    assert torch.all(q.grad[0, 0, :6] == 0)
    assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()


def test_no_layout_is_n_by_n():
    n, l = 4096, 64
    for pattern in (strided(l), fixed(l, 4)):
        for lp in plan_for(pattern, n):
            assert lp.allowed.numel() <= 2 * n * l, (lp.layout, tuple(lp.allowed.shape))
            assert lp.allowed.dim() == 2  # one mask shared by every group


def test_fast_path_uses_no_n_by_n_memory():
    """Peak extra memory of forward+backward stays far below one n x n float matrix."""
    n, l = 8192, 64
    q, k, v = (torch.randn(1, 1, n, 32, requires_grad=True) for _ in range(3))
    seen = []

    def pack(t):
        seen.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = sparse_attention(q, k, v, strided(l))
    out.sum().backward()
    assert max(seen) < n * n // 16


def test_bad_arguments_raise_clear_errors():
    q = torch.randn(1, 2, 10, 8)
    with pytest.raises(ConfigError, match="stride"):
        strided(0)
    with pytest.raises(ConfigError, match="must not exceed"):
        fixed(4, 5)
    with pytest.raises(ConfigError):
        StrideSkip(-3)
    with pytest.raises(ShapeError, match="shapes"):
        sparse_attention(q, torch.randn(1, 2, 11, 8), q, strided(4))
    with pytest.raises(ShapeError, match="dtype"):
        sparse_attention(q, q.double(), q, strided(4))
    with pytest.raises(ShapeError, match="batch, heads, n, head_dim"):
        sparse_attention(q[0], q[0], q[0], strided(4))
    with pytest.raises(ConfigError, match="Pattern"):
        sparse_attention(q, q, q, "strided")
    with pytest.raises(ConfigError, match="backend"):
        sparse_attention(q, q, q, strided(4), backend="gpu")
    with pytest.raises(ConfigError, match="flash backend"):
        sparse_attention(q.double(), q.double(), q.double(), strided(4), backend="flash")
    assert issubclass(ShapeError, CadenzaError)


def test_compiled_path_matches_eager():
    torch._dynamo.reset()
    pattern = strided(8)
    q, k, v = (torch.randn(1, 2, 50, 8, requires_grad=True) for _ in range(3))
    compiled = torch.compile(lambda a, b, c: sparse_attention(a, b, c, pattern))
    out = compiled(q, k, v)
    out.sum().backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    ref = sparse_attention(q, k, v, pattern)
    ref.sum().backward()
    torch.testing.assert_close(out, ref)
    for a, t in zip(grads, (q, k, v)):
        torch.testing.assert_close(a, t.grad)


def test_the_library_does_not_load_torch_dynamo_until_something_compiles():
    """Start-up: torch._dynamo costs seconds to import; only torch.compile needs it."""
    import subprocess
    import sys

    code = ("import sys, torch, cadenza.model, cadenza.music.composition\n"
            "from cadenza.attention import sparse_attention, strided\n"
            "q = torch.randn(1, 2, 40, 8)\n"
            "sparse_attention(q, q, q, strided(8))\n"
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
