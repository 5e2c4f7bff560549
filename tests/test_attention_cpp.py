"""Cadenza's C++ attention kernel (backend="cpp") equals the dense reference, and its
absence falls back to the flash-kernel path with one warning."""

import os
import subprocess
import sys
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cadenza.attention import (
    BlockSummary, Local, SameBlock, StrideSkip, Union, fixed, kernels, reference_attention,
    sparse_attention, strided,
)
from cadenza.attention import cpp
from cadenza.errors import ConfigError


@pytest.fixture(scope="module", autouse=True)
def built_kernel():
    """Compile (first run on a machine: tens of seconds) or load the cached build."""
    kernels.reset()
    if kernels.load() is None:
        pytest.fail(f"the C++ kernel did not build here: {kernels._state.get('error')}")
    yield


def _check(pattern, n, b=1, h=2, d=8, dtype=torch.float32, seed=0, scale=None):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, h, n, d, generator=g).to(dtype).requires_grad_() for _ in range(3))
    dout = torch.randn(b, h, n, d, generator=g).to(dtype)
    out = sparse_attention(q, k, v, pattern, scale=scale, backend="cpp")
    assert out.dtype == dtype
    grads = torch.autograd.grad(out, (q, k, v), dout)
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref = reference_attention(q64, k64, v64, pattern, scale=scale)
    ref_grads = torch.autograd.grad(ref, (q64, k64, v64), dout.double())
    tol = 3e-2 if dtype == torch.bfloat16 else 2e-5
    torch.testing.assert_close(out.double(), ref, atol=tol, rtol=tol)
    for name, a, r in zip("qkv", grads, ref_grads):
        torch.testing.assert_close(a.double(), r, atol=tol * 4, rtol=tol * 4, msg=lambda m: f"d{name}: {m}")


paper = st.one_of(
    st.integers(1, 64).map(strided),
    st.integers(1, 64).flatmap(lambda l: st.integers(1, max(1, l // 2)).map(lambda c: fixed(l, c))),
    st.integers(1, 64).flatmap(lambda l: st.integers(1, l).map(lambda c: fixed(l, c))),
)
covered = st.one_of(
    paper,
    st.builds(Local, st.integers(0, 80)),
    st.builds(StrideSkip, st.integers(1, 64)),
    st.builds(SameBlock, st.integers(1, 64)),
    st.builds(lambda w, s: Union(Local(w), StrideSkip(s)), st.integers(0, 80), st.integers(1, 64)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=covered, n=st.integers(1, 700), b=st.integers(1, 2), h=st.integers(1, 3),
       d=st.sampled_from([4, 8, 16, 24]), seed=st.integers(0, 2**16))
def test_cpp_matches_reference_float32(pattern, n, b, h, d, seed):
    _check(pattern, n, b, h, d, seed=seed)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=paper, n=st.integers(1, 300), seed=st.integers(0, 2**16))
def test_cpp_matches_reference_bfloat16(pattern, n, seed):
    _check(pattern, n, dtype=torch.bfloat16, seed=seed)


@pytest.mark.parametrize("pattern", [strided(16), fixed(16, 1), fixed(16, 8), fixed(16, 16)])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 33, 255, 256, 257])
def test_cpp_edge_lengths(pattern, n):
    _check(pattern, n, b=1, h=2, d=16, scale=0.3)


@pytest.mark.parametrize("tiles", [(1, 1, 1), (5, 3, 7), (256, 256, 256)])
def test_cpp_tile_sizes_do_not_change_the_result(monkeypatch, tiles):
    """Tiles smaller than, unaligned with and larger than the stride/block."""
    monkeypatch.setattr(cpp, "BAND_TILE", tiles[0])
    monkeypatch.setattr(cpp, "CLASS_TILE", tiles[1])
    monkeypatch.setattr(cpp, "BLOCK_TILE", tiles[2])
    for pattern in (strided(12), fixed(12, 5), Union(Local(20), StrideSkip(7))):
        _check(pattern, 203, b=2, h=1, d=8)


def test_the_kernel_runs_on_every_intra_op_thread():
    """Built with OpenMP (else ATen's parallel_for is a plain loop), sharing torch's thread count."""
    import sys

    if not (sys.platform.startswith("linux") and torch.backends.openmp.is_available()):
        pytest.skip("the kernel is threaded where torch uses OpenMP on Linux")
    ext = kernels.load()
    assert ext.threaded()
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            assert ext.threads_used(64) == threads
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("pattern", [strided(32), fixed(32, 8), fixed(32, 1), SameBlock(32), Local(40),
                                     Union(Local(20), StrideSkip(7))], ids=str)
@pytest.mark.parametrize("shape", [(1, 1, 1500, 16), (2, 3, 700, 16)], ids=str)
def test_cpp_threads_give_the_reference_and_the_same_bits(pattern, shape):
    """At 1, 2 and 3 threads: values and gradients equal the dense reference, and equal each
    other bit for bit (the backward's band colouring and the fixed pattern's summary-gradient
    parts do not depend on the thread count)."""
    g = torch.Generator().manual_seed(3)
    q, k, v, dout = (torch.randn(*shape, generator=g) for _ in range(4))
    q64, k64, v64 = (t.double().requires_grad_() for t in (q, k, v))
    ref = reference_attention(q64, k64, v64, pattern)
    ref = (ref, *torch.autograd.grad(ref, (q64, k64, v64), dout.double()))
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            qs, ks, vs = (t.clone().requires_grad_() for t in (q, k, v))
            out = sparse_attention(qs, ks, vs, pattern, backend="cpp")
            results.append((out.detach(), *torch.autograd.grad(out, (qs, ks, vs), dout)))
    finally:
        torch.set_num_threads(before)
    for got in results:
        for name, a, r in zip(["out", "dq", "dk", "dv"], got, ref):
            torch.testing.assert_close(a.double(), r, atol=1e-4, rtol=1e-4, msg=lambda m: f"{name}: {m}")
    for got in results[1:]:
        for a, b in zip(results[0], got):
            assert torch.equal(a, b)


def test_spec_for_covers_exactly_the_kernel_patterns():
    assert cpp.spec_for(strided(8)) == ("strided", 8, 8)
    assert cpp.spec_for(Local(5)) == ("strided", 5, 0)
    assert cpp.spec_for(StrideSkip(4)) == ("strided", 0, 4)
    assert cpp.spec_for(fixed(8, 3)) == ("fixed", 8, 3)
    assert cpp.spec_for(SameBlock(6)) == ("fixed", 6, 0)
    for other in (BlockSummary(8, 2), Union(SameBlock(8), BlockSummary(4, 2)),
                  Union(Local(3), BlockSummary(5, 2)), Union(Local(3), Local(5))):
        assert cpp.spec_for(other) is None
    with pytest.raises(ConfigError, match="cpp backend"):
        sparse_attention(*(torch.randn(1, 1, 9, 4),) * 3, BlockSummary(4, 2), backend="cpp")
    with pytest.raises(ConfigError, match="cpp backend"):
        sparse_attention(*(torch.randn(1, 1, 9, 4).double(),) * 3, strided(4), backend="cpp")


def test_auto_uses_the_kernel_for_covered_patterns(monkeypatch):
    calls = []
    real = cpp.cpp_attention
    monkeypatch.setattr(cpp, "cpp_attention", lambda *a: calls.append(a[3]) or real(*a))
    q = torch.randn(1, 2, 50, 8)
    sparse_attention(q, q, q, strided(8))
    sparse_attention(q, q, q, Union(Local(3), BlockSummary(5, 2)))  # not covered: flash
    sparse_attention(q.double(), q.double(), q.double(), fixed(8, 2))  # float64: chunked
    assert calls == [strided(8)]


def test_saves_no_n_by_n_tensor_for_fixed_with_wide_summary():
    n, l, c = 4096, 64, 32
    q, k, v = (torch.randn(1, 1, n, 16, requires_grad=True) for _ in range(3))
    seen = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: seen.append(t.numel()) or t, lambda t: t):
        out = sparse_attention(q, k, v, fixed(l, c), backend="cpp")
    out.sum().backward()
    assert max(seen) <= n * 16  # q, k, v, out (n x d) and the log-sum-exp


def test_missing_kernel_falls_back_with_one_warning(monkeypatch):
    def no_compiler():
        raise RuntimeError("no C++ compiler")
    kernels.reset()
    monkeypatch.setattr(kernels, "_load", no_compiler)
    try:
        q, k, v = (torch.randn(1, 2, 100, 8, requires_grad=True) for _ in range(3))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            outs = [sparse_attention(q, k, v, p) for p in (strided(8), fixed(8, 2), strided(8))]
        relevant = [w for w in caught if "C++ attention kernel" in str(w.message)]
        assert len(relevant) == 1 and "no C++ compiler" in str(relevant[0].message)
        for out, p in zip(outs, (strided(8), fixed(8, 2))):
            torch.testing.assert_close(out, reference_attention(q, k, v, p), atol=1e-5, rtol=1e-5)
        outs[0].sum().backward()
        assert torch.isfinite(q.grad).all()
        with pytest.raises(ConfigError, match="unavailable"):
            sparse_attention(q, k, v, strided(8), backend="cpp")
    finally:
        kernels.reset()


def test_no_kernels_environment_variable_in_a_fresh_process():
    code = ("import warnings, torch\n"
            "from cadenza.attention import sparse_attention, reference_attention, strided\n"
            "q = torch.randn(1, 2, 64, 8)\n"
            "out = sparse_attention(q, q, q, strided(8))\n"
            "print(float((out - reference_attention(q, q, q, strided(8))).abs().max()))\n")
    env = dict(os.environ, CADENZA_NO_KERNELS="1")
    res = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, env=env, check=True)
    assert float(res.stdout.strip()) < 1e-5
    assert res.stderr.count("C++ attention kernel is unavailable") == 1


def test_cached_build_loads_without_the_build_machinery():
    """Once built, a fresh process imports the cached module directly (fast start-up)."""
    code = ("import sys\n"
            "from cadenza.attention import kernels\n"
            "m = kernels.load()\n"
            "print(m is not None, 'torch.utils.cpp_extension' in sys.modules, 'torch._dynamo' in sys.modules)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.split() == ["True", "False", "False"]


def test_build_key_changes_with_the_source(monkeypatch, tmp_path):
    key = kernels.build_key()
    changed = tmp_path / "sparse_attn.cpp"
    changed.write_text(kernels.SOURCE.read_text() + "\n// changed\n")
    monkeypatch.setattr(kernels, "SOURCE", changed)
    assert kernels.build_key() != key
    monkeypatch.setenv("CADENZA_CACHE", str(tmp_path / "cache"))
    assert kernels.build_dir().is_relative_to(tmp_path / "cache")


def test_a_short_prompt_never_waits_for_a_build(tmp_path):
    """With no cached build, "auto" on a short sequence without gradients (a CLI prompt) takes
    the flash path at once instead of compiling the kernel (tens of seconds)."""
    import os
    import subprocess
    import sys

    code = ("import torch\nfrom cadenza.attention import sparse_attention, strided, reference_attention\n"
            "q = torch.randn(1, 2, 64, 16)\n"
            "print(float((sparse_attention(q, q, q, strided(8)) - reference_attention(q, q, q, strided(8))).abs().max()))\n")
    env = dict(os.environ, CADENZA_CACHE=str(tmp_path), OMP_NUM_THREADS="1")
    env.pop("CADENZA_NO_KERNELS", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) < 1e-5
    assert not (tmp_path / "kernels").exists()          # nothing was built


@pytest.mark.parametrize("weights", ["float32", "int8"])
def test_the_fused_decode_step_equals_the_python_step_and_the_full_forward(weights):
    """The C++ one-token step (every layer in one call) gives the Python step's logits and keys
    read, and both equal the full forward (float32 exactly up to rounding; int8 as the Python
    int8 step does)."""
    from cadenza import decode_step
    from cadenza.config import ModelConfig
    from cadenza.model import SparseTransformer

    if kernels.load() is None:
        pytest.fail("the C++ kernel did not build")
    torch.manual_seed(0)
    model = SparseTransformer(ModelConfig(vocab_size=37, d_model=32, n_layers=3, n_heads=4, max_len=256,
                                          attention="strided", stride=8, integration="merged")).eval()
    model.set_decode_weights(weights)
    x = torch.randint(0, 37, (2, 90))
    outs = {}
    with torch.inference_mode():
        for fused in (True, False):
            model.__dict__["_no_fused"] = not fused
            cache = model.new_cache(2)
            steps = [model(x[:, :20], cache=cache)[:, -1:]]
            steps += [model(x[:, t:t + 1], cache=cache) for t in range(20, 90)]
            outs[fused] = (torch.cat(steps, 1), cache.keys_read)
        model.__dict__["_no_fused"] = False
        full = model(x)[:, 19:]
    assert decode_step.fused_step(model, decode_step.fast_weights(model), model.new_cache(2)) is not None  # fused ran
    assert torch.allclose(outs[True][0], outs[False][0], atol=1e-5) and outs[True][1] == outs[False][1]
    tol = 1e-4 if weights == "float32" else 0.5
    assert float((outs[True][0] - full).abs().max()) < tol


MODES = [(a, i) for a in ("strided", "fixed") for i in ("merged", "interleaved", "split")]


@pytest.mark.parametrize("attention,integration", MODES, ids=lambda v: str(v))
@pytest.mark.parametrize("weights,batch,positions", [("float32", 1, "learned"), ("float32", 3, "rope"),
                                                     ("int8", 2, "learned")], ids=str)
def test_the_fused_step_covers_every_mode_and_pattern(attention, integration, weights, batch, positions):
    """Every integration mode of both patterns, batched, with learned or rotary positions: the fused
    step runs (not the Python fallback), gives the Python step's logits and keys read, both equal
    the full forward, and its logits are the same bits at 1 and 2 threads."""
    _fused_against_python(attention, integration, weights, batch, positions)


@pytest.mark.parametrize("attention,integration", [("strided", "merged"), ("fixed", "split")])
def test_the_fused_step_with_a_large_batch(attention, integration):
    """More rows than the GEMV path takes (8): the linear layers go through the BLAS per row slice."""
    _fused_against_python(attention, integration, "float32", 12, "learned")


def _fused_against_python(attention, integration, weights, batch, positions):
    from cadenza import decode_step
    from cadenza.config import ModelConfig
    from cadenza.model import SparseTransformer

    torch.manual_seed(0)
    model = SparseTransformer(ModelConfig(vocab_size=37, d_model=32, n_layers=3, n_heads=4, max_len=256,
                                          attention=attention, stride=8, summary=3, integration=integration,
                                          positions=positions)).eval()
    model.set_decode_weights(weights)
    x = torch.randint(0, 37, (batch, 70))
    outs = {}
    before = torch.get_num_threads()
    try:
        with torch.inference_mode():
            for fused, threads in ((True, 1), (True, 2), (False, 1)):
                model.__dict__["_no_fused"] = not fused
                cache = model.new_cache(batch)
                torch.set_num_threads(1)         # the prefill's own ops round by thread count
                steps = [model(x[:, :11], cache=cache)[:, -1:]]
                torch.set_num_threads(threads)
                small = kernels.load().set_share_min_work(0 if threads > 1 else 1 << 16)  # share every loop
                try:
                    steps += [model(x[:, t:t + 1], cache=cache) for t in range(11, 70)]
                finally:
                    kernels.load().set_share_min_work(small)
                outs[fused, threads] = (torch.cat(steps, 1), cache.keys_read, cache.positions_held())
            model.__dict__["_no_fused"] = False
            full = model(x)[:, 10:]
    finally:
        torch.set_num_threads(before)
    assert decode_step.fused_step(model, decode_step.fast_weights(model), model.new_cache(batch)) is not None
    fused, python = outs[True, 1], outs[False, 1]
    assert fused[1:] == python[1:]
    assert torch.equal(fused[0], outs[True, 2][0])
    tol = 1e-4 if weights == "float32" else 0.5
    assert float((fused[0] - python[0]).abs().max()) < (1e-5 if weights == "float32" else 1e-2)
    assert float((fused[0] - full).abs().max()) < tol


def test_the_decode_steps_loops_run_on_helper_threads():
    """The fused step's loops are shared with helper threads (not OpenMP regions, whose end waits
    for every thread of the team however long the OS keeps one off a core): at 2 and 3 threads a
    helper joins in, at 1 thread none runs."""
    ext = kernels.load()
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 3, 2, 1):
            torch.set_num_threads(threads)
            assert ext.share_helped(16) == (threads > 1)
    finally:
        torch.set_num_threads(before)
