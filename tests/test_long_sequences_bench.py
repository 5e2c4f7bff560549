"""cadenza.bench.long_sequences (benchmarks/long_sequences.py): the search for the longest trainable n, and its step timing."""

from __future__ import annotations

from argparse import Namespace

import pytest


@pytest.fixture(scope="module")
def bench():
    from cadenza.bench import long_sequences

    return long_sequences


@pytest.mark.parametrize("limit", [5000, 20480, 70000, 10 ** 7])
def test_longest_finds_the_boundary(bench, monkeypatch, limit):
    seen = []

    def fake(kind, n, args):
        seen.append(n)
        return {"n": n, "fits": n <= limit, "step_s": n / limit, "peak_rss_mb": 1.0}

    monkeypatch.setattr(bench, "try_length", fake)
    args = Namespace(start_n=4096, max_n=1 << 20, bisect=6)
    res = bench.longest("strided", args)
    assert res["longest_n"] <= limit and res["longest_n"] % 1024 == 0
    if limit < args.max_n:
        assert res["first_failing_n"] > limit and res["first_failing_n"] - res["longest_n"] <= 1024 * 2
    else:
        assert res["reached_max_n"] and res["longest_n"] == args.max_n
    assert sorted(set(seen)) == sorted(seen)   # no length is tried twice


def test_model_config_and_step_timing(bench):
    cfg = bench.model_config("fixed", 1000, 16, 1, 2)
    assert cfg.stride == 32 and cfg.position_shape == (32, 32) and cfg.max_len == 1000
    times = bench.time_steps(cfg, steps=2)
    assert len(times) == 2 and all(t > 0 for t in times)


@pytest.mark.slow
def test_one_try_runs_in_its_own_process(bench):
    args = Namespace(d_model=16, layers=1, heads=2, threads=1, step_budget_s=1000.0, memory_gb=64.0)
    r = bench.try_length("strided", 512, args)
    assert r["fits"] and r["n"] == 512 and r["peak_rss_mb"] > 0 and len(r["times"]) == 2
    tight = Namespace(**{**vars(args), "memory_gb": 1e-6})
    assert not bench.try_length("strided", 512, tight)["fits"]
