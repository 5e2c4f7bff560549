"""The attention benchmark's bookkeeping: pair counts, targets, a real tiny case."""

import json

import pytest

from cadenza.attention import Dense, fixed, strided
from cadenza.bench import attention as bench


@pytest.mark.parametrize("n,l,c", [(1, 4, 1), (100, 8, 1), (257, 16, 3), (1000, 128, 8)])
def test_allowed_pairs_closed_forms_match_masks(n, l, c):
    assert bench.allowed_pairs("dense", n, l, c) == int(Dense().mask(n).sum())
    assert bench.allowed_pairs("strided", n, l, c) == int(strided(l).mask(n).sum())
    assert bench.allowed_pairs("fixed", n, l, c) == int(fixed(l, c).mask(n).sum())


def test_targets_read_the_measured_cases():
    cases = [bench.Case("dense", 16384, 900.0, 4000.0), bench.Case("strided", 16384, 40.0, 250.0),
             bench.Case("fixed", 16384, 40.0, 300.0), bench.Case("strided", 65536, 200.0, 2000.0),
             bench.Case("flex-strided", 16384, 1000.0)]
    got = {t: (m, ok) for t, m, ok in bench.targets(cases)}
    assert got["strided fwd+bwd at 16k >= 20x faster than dense SDPA"] == ("16.0x", False)
    assert got["fixed within 1.5x of strided at every n (fwd+bwd)"] == ("worst 1.20x", True)
    assert got["strided 64k fwd+bwd completes, growth 16k->64k <= 9.2x"] == ("8.00x", True)
    assert got["fixed 64k fwd+bwd completes, growth 16k->64k <= 9.2x"][1] is None
    assert got["strided fwd at 16k >= 20x faster than compiled FlexAttention"] == ("25.0x", True)


def test_real_tiny_case_and_outputs(tmp_path):
    cases = [bench.run_case(m, 256, 16, 1, repeats=1, heads=2, head_dim=16) for m in ("dense", "strided")]
    for c in cases:
        assert c.fwd_ms > 0 and c.fwd_bwd_ms > 0 and c.useful_gflops > 0, c
    text = bench.table(cases)
    assert "strided" in text and "1.0x" in text
    json_path, png_path = bench.save(cases, {"test": True}, tmp_path)
    data = json.loads(open(json_path).read())
    assert [c["method"] for c in data["cases"]] == ["dense", "strided"]
    assert open(png_path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
