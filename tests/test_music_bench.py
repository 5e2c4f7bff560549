"""benchmarks/music.py runs end to end on a tiny model and writes its table, JSON and plot."""

from __future__ import annotations

import json
import statistics

import pytest
from conftest import require

require("miditok")
require("music21")
torch = require("torch")

import music_fixtures as mf  # noqa: E402

torch.set_num_threads(1)


def test_music_benchmark_writes_results(tmp_path, capsys):
    from cadenza.bench import music as bench

    rc = bench.main(["--model", str(mf.tiny_model_dir()), "--seconds", "4", "--runs", "2", "--cases", "any style",
                     "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "target: any style: 60 s of music in at most 2 s" in out and "first bar within 0.15 s" in out
    data = json.loads((tmp_path / "music.json").read_text())
    res = data["results"]["any style"]
    assert len(res["runs"]) == 2 and len(res["baseline"]) == 2
    for r, b in zip(res["runs"], res["baseline"]):
        assert 0 < r["first_bar_s"] <= r["compose_s"] <= r["total_s"]
        assert r["music_s"] <= 4 + 4 * 60 / 120    # at most one bar past the limit at 120 bpm
        assert b["tokens"] == r["tokens"]          # the baseline samples as many tokens
    assert res["summary"]["total_s"] == pytest.approx(statistics.median(r["total_s"] for r in res["runs"]))
    assert (tmp_path / "music.png").read_bytes()[:4] == b"\x89PNG"
