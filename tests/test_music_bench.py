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


def test_harmony_benchmark_rows_table_and_plot(tmp_path):
    """benchmarks/harmony.py's pieces on a tiny model and one chorale (the held-out pool itself
    needs the whole bach collection parsed once, which is too slow for a test)."""
    from cadenza.bench import harmony as hb
    from cadenza.music.eval import harmony as hm

    mm = mf.tiny_model()
    full = mf.corpus_scores()[-1]
    r = hb.chorale_rows(mm, full, [1, 2], 3, "bach", bits=True)
    assert len(r["cadenza"]) == 2 and len(r["bach"]) == len(r["rules"]) == 1 and r["bits"]["notes"] > 0
    bach = r["bach"][0]
    assert bach.consonance["added"] == sum(len(t.notes) for t in full.tracks[1:])
    rows = {n: hm.summarize(r[n]) for n in hb.ROWS}
    assert rows["cadenza"]["above_melody"] == 0 and rows["cadenza"]["consonant"] > 0.75
    tunes = hb.tune_rows(mm, 2, "bach", seeds=(1,))
    assert set(tunes["tunes"]) == {"old-hundredth", "ode-to-joy", "greensleeves"}
    assert tunes["tunes"]["ode-to-joy"]["bars"] == 16
    result = {"rows": rows, "bits": r["bits"], "speed": {"median_s_per_bar": 0.01, "s_per_16_bars": 0.16},
              "tunes": tunes, "model": "tiny", "targets": hb.targets(rows, 0.16, tunes)}
    text = hb.table(result)
    assert "target: consonance with the melody" in text and "three tunes" in text
    roll = {"id": "bwv66.6", "textures": [("Bach", hm.texture_of(full)),
                                          ("Cadenza", hm.texture_of(r["pieces"][0].score()))]}
    hb.plot(result, roll, str(tmp_path / "h.png"))
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"


def test_form_benchmark_rows_targets_and_plot(tmp_path, capsys):
    """benchmarks/music_form.py: held-out openings and composed pieces measured the same way."""
    import numpy as np

    from cadenza.bench import music_form
    from cadenza.data.format import write_dataset

    c = mf.codec()
    seqs = [np.asarray(c.encode(s, style="bach"), dtype=np.int64) for s in mf.corpus_scores()]
    data = tmp_path / "data"
    write_dataset(data, {"train": np.concatenate(seqs[:4]), "val": seqs[4], "test": np.concatenate(seqs[4:])},
                  c.vocab_size, modality="music")
    c.save(data / "tokenizer.json")
    rc = music_form.main(["--model", str(mf.tiny_model_dir()), "--data", str(data), "--pieces", "0", "--keys", "G",
                          "--seeds", "2", "--bars", "4", "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "held-out" in out and "composed" in out and "target: composed tonic endings" in out
    res = json.loads((tmp_path / "music_form.json").read_text())
    assert res["rows"]["composed"]["pieces"] == 2 and len(res["pieces"]["composed"]) == 2
    assert 1 <= res["rows"]["held-out"]["pieces"] <= 2            # test-nodup: chorales sharing no melody
    assert all(0 <= p["bar_repeats"] <= 1 for p in res["pieces"]["held-out"])
    assert (tmp_path / "music_form.png").read_bytes()[:4] == b"\x89PNG"


def test_mood_benchmark_judges_the_mode_from_the_notes(tmp_path, capsys):
    import symusic

    from cadenza.bench import music_mood

    s = symusic.Score(480)
    t = symusic.Track(program=0)
    for k, p in enumerate([57, 60, 64, 69, 64, 60, 57, 52, 57, 60, 64, 57] * 2):   # A minor arpeggios
        t.notes.append(symusic.Note(k * 480, 480, p, 80))
    s.tracks.append(t)
    assert music_mood.analysed_key(s) == ("A", "minor")
    rc = music_mood.main(["--model", str(mf.tiny_model_dir()), "--seeds", "1", "--bars", "8",
                          "--out", str(tmp_path / "mood"), "--no-progress"])
    assert rc == 0
    res = json.loads((tmp_path / "mood.json").read_text())
    assert len(res["targets"]) == 6 and all(len(r) == 1 for r in res["rows"].values())
    assert "sad pieces analysed minor" in capsys.readouterr().out
