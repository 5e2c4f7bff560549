"""The attention benchmark's bookkeeping: pair counts, targets, a real tiny case."""

import json
import os

import pytest

from cadenza.attention import Dense, fixed, strided
from cadenza.bench import attention as bench


@pytest.mark.parametrize("n,l,c", [(1, 4, 1), (100, 8, 1), (257, 16, 3), (1000, 128, 8)])
def test_allowed_pairs_closed_forms_match_masks(n, l, c):
    assert bench.allowed_pairs("dense", n, l, c) == int(Dense().mask(n).sum())
    assert bench.allowed_pairs("strided", n, l, c) == int(strided(l).mask(n).sum())
    assert bench.allowed_pairs("fixed", n, l, c) == int(fixed(l, c).mask(n).sum())


def test_targets_read_the_measured_cases():
    C = bench.Case
    cases = [C("dense", 16384, fwd_ms=900.0, fwd_bwd_ms=4000.0), C("strided", 16384, fwd_ms=40.0, fwd_bwd_ms=250.0),
             C("strided-flash", 16384, fwd_ms=80.0, fwd_bwd_ms=500.0),
             C("fixed", 4096, 32, fwd_ms=10.0, fwd_bwd_ms=90.0), C("strided", 4096, fwd_ms=10.0, fwd_bwd_ms=50.0),
             C("fixed", 16384, 1, fwd_ms=40.0, fwd_bwd_ms=300.0),
             C("fixed", 16384, 32, fwd_ms=40.0, fwd_bwd_ms=450.0),
             C("strided", 65536, fwd_ms=200.0, fwd_bwd_ms=2000.0, peak_rss_mb=2000.0),
             C("flex-strided", 16384, fwd_ms=1000.0)]
    cases[0].fwd_bwd_cpu_ms, cases[1].fwd_bwd_cpu_ms = 4200.0, 200.0
    got = {t: (m, ok) for t, m, ok in bench.targets(cases, threads=1)}
    assert got["strided fwd+bwd at 16k >= 20x faster than dense SDPA (1 threads)"] == ("16.0x", False)
    assert got["strided fwd+bwd at 16k >= 20x faster than dense SDPA, CPU time (1 thread)"] == ("21.0x", True)
    assert got["strided fwd+bwd at 16k: the C++ kernel vs the flash-kernel path"] == ("2.00x faster", None)
    assert got["fixed c=32 within 2x of strided at every n from 4k to 64k (fwd+bwd)"] == ("4k 1.80x, 16k 1.80x", True)
    assert got["strided 64k fwd+bwd completes, growth 16k->64k <= 9.2x"] == ("8.00x", True)
    assert got["strided 64k fwd+bwd peak resident < 3 GB (own process)"] == ("2,000 MB", True)
    assert got["fixed c=1 64k fwd+bwd completes, growth 16k->64k <= 9.2x"][1] is None
    assert got["strided fwd at 16k >= 20x faster than compiled FlexAttention"] == ("25.0x", True)
    two = {t: ok for t, m, ok in bench.targets(cases, threads=2)}
    assert two["strided fwd+bwd at 16k >= 20x faster than dense SDPA (2 threads)"] is False


def test_thread_scaling_targets():
    """Cases at 1 and 2 threads: each count's targets, then 2 threads vs 1 by wall time and by
    the busiest thread's CPU time."""
    C = bench.Case
    cases = [C("dense", 16384, threads=1, fwd_ms=1400.0, fwd_bwd_ms=6600.0),
             C("strided", 16384, threads=1, fwd_ms=80.0, fwd_bwd_ms=280.0, fwd_bwd_cpu_ms=270.0),
             C("dense", 16384, threads=2, fwd_ms=800.0, fwd_bwd_ms=3700.0),
             C("strided", 16384, threads=2, fwd_ms=45.0, fwd_bwd_ms=180.0, fwd_bwd_thread_ms=150.0)]
    got = {t: (m, ok) for t, m, ok in bench.targets(cases, threads=[1, 2])}
    assert got["[1 threads] strided fwd+bwd at 16k >= 20x faster than dense SDPA (1 threads)"] == ("23.6x", True)
    assert got["[2 threads] strided fwd+bwd at 16k >= 20x faster than dense SDPA (2 threads)"] == ("20.6x", True)
    assert got["strided fwd+bwd at 16384: 2 threads vs 1 >= 1.7x"] == ("1.56x wall, 1.80x by busiest-thread CPU", False)
    assert got["dense fwd+bwd at 16384: 2 threads vs 1"] == ("1.78x wall", None)
    text = bench.table(cases)
    assert "150.0" in text and text.count("1.0x") == 4     # each dense row against its own thread count


def test_real_tiny_case_and_outputs(tmp_path):
    cases = [bench.run_case(m, 256, 16, 4, repeats=1, heads=2, head_dim=16)
             for m in ("dense", "strided", "fixed", "fixed-flash")]
    for c in cases:
        assert c.fwd_ms > 0 and c.fwd_bwd_ms > 0 and c.fwd_bwd_cpu_ms > 0 and c.useful_gflops > 0 and c.peak_rss_mb > 0, c
    assert [c.c for c in cases] == [0, 0, 4, 4]
    if os.path.isdir("/proc/self/task"):
        assert all(c.fwd_bwd_thread_ms > 0 for c in cases)
    text = bench.table(cases)
    assert "strided" in text and "1.0x" in text
    json_path, png_path = bench.save(cases, {"test": True}, tmp_path)
    data = json.loads(open(json_path).read())
    assert [c["method"] for c in data["cases"]] == ["dense", "strided", "fixed", "fixed-flash"]
    assert open(png_path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_rounds_merge_to_medians():
    """--rounds: every figure is its median over rounds, case by case (not the first round's)."""
    from cadenza.bench.attention import Case, merge_rounds

    rounds = [[Case("strided", 16384, threads=t, fwd_bwd_ms=x * t, note=note)]
              for x, t, note in ((100.0, 1, ""), (300.0, 1, "slow"), (200.0, 1, ""))]
    (merged,) = merge_rounds(rounds)
    assert merged.fwd_bwd_ms == 200.0 and merged.fwd_ms is None and merged.note == "slow"
    two = merge_rounds([[Case("dense", 1, threads=1, fwd_ms=1.0), Case("dense", 1, threads=2, fwd_ms=4.0)],
                        [Case("dense", 1, threads=1, fwd_ms=3.0), Case("dense", 1, threads=2, fwd_ms=2.0)]])
    assert [(c.threads, c.fwd_ms) for c in two] == [(1, 2.0), (2, 3.0)]


def test_thread_profile_report_estimates_scaling_from_cpu_times():
    """2 vs 1 is the 1-thread CPU time over the 2-thread busiest thread's, and the part outside
    the kernel is the full call less forward and backward."""
    from cadenza.bench.thread_profile import report

    parts = ["fwd", "bwd", "full"]
    med = {("fwd", 1): (90.0, 80.0, 80.0), ("fwd", 2): (70.0, 40.0, 81.0),
           ("bwd", 1): (200.0, 190.0, 190.0), ("bwd", 2): (150.0, 100.0, 195.0),
           ("full", 1): (300.0, 280.0, 280.0), ("full", 2): (200.0, 146.0, 290.0)}
    text = report({"threads": [1, 2], "parts": parts, "median": med})
    assert "2.00x" in text and "1.90x" in text and "1.92x" in text
    assert "10.0 ms CPU at 1 thread(s), 6.0 ms on the busiest thread at 2" in text
