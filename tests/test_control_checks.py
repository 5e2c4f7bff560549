"""The control checks: measures on hand-built scores, and run_checks on the tiny model."""

from __future__ import annotations

import pytest
from conftest import require

symusic = require("symusic")

import music_fixtures as mf  # noqa: E402

from cadenza.errors import CadenzaError  # noqa: E402
from cadenza.music.eval import control_measures as cm  # noqa: E402
from cadenza.music.eval import controls as cc  # noqa: E402

TPQ = 480
BAR = 4 * TPQ


def score(notes, ts=(4, 4), drums=()):
    """A one-track score from (onset quarters, duration quarters, pitch)."""
    s = symusic.Score(TPQ)
    s.time_signatures.append(symusic.TimeSignature(0, *ts))
    t = symusic.Track(name="t", program=0)
    for on, du, p in notes:
        t.notes.append(symusic.Note(int(on * TPQ), int(du * TPQ), int(p), 80))
    s.tracks.append(t)
    if drums:
        d = symusic.Track(name="d", program=0, is_drum=True)
        for on, du, p in drums:
            d.notes.append(symusic.Note(int(on * TPQ), int(du * TPQ), int(p), 80))
        s.tracks.append(d)
    return s


C_MAJOR = [60, 62, 64, 65, 67, 69, 71, 72]


def test_key_share_of_scales():
    c = score([(i, 1, p) for i, p in enumerate(C_MAJOR)])
    assert cm.key_share(c, "C") == 1.0
    assert cm.key_share(c, "Am") == 1.0            # the relative minor's natural scale
    assert cm.key_share(c, "F#") == pytest.approx(2 / 8)   # F# major holds F (E#) and B
    harmonic_a = score([(i, 1, p) for i, p in enumerate([57, 59, 60, 62, 64, 65, 68, 69])])
    assert cm.key_share(harmonic_a, "Am") == 1.0   # G# is the raised seventh
    assert cm.key_share(harmonic_a, "C") == pytest.approx(7 / 8)
    # drums are not notes of the key
    assert cm.key_share(score([(0, 1, 60)], drums=[(0, 1, 37), (1, 1, 39)]), "C") == 1.0
    assert cm.key_share(score([]), "C") is None


def test_scale_pitch_classes():
    assert cm.scale_pitch_classes("G") == {7, 9, 11, 0, 2, 4, 6}
    assert cm.scale_pitch_classes("Dm") == {2, 4, 5, 7, 9, 10, 0, 1}
    with pytest.raises(CadenzaError):
        cm.scale_pitch_classes("H#q")


def test_notes_per_bar_ratio_and_segments():
    dense = score([(b * 4 + k * 0.5, 0.5, 60 + k) for b in range(4) for k in range(8)])
    sparse = score([(b * 4 + k * 2, 2, 60) for b in range(4) for k in range(2)])
    assert cm.notes_per_bar(dense) == 8.0
    assert cm.notes_per_bar(sparse) == 2.0
    assert cm.notes_per_bar(dense) / cm.notes_per_bar(sparse) == 4.0
    # 8 bars: dense then sparse; bars by onset, segments of 4 bars
    mixed = score([(b * 4 + k * 0.5, 0.5, 60) for b in range(4) for k in range(8)]
                  + [(16 + b * 4 + k * 2, 2, 60) for b in range(4) for k in range(2)])
    assert cm.bar_counts(mixed).tolist() == [8] * 4 + [2] * 4
    assert cm.segment_notes_per_bar(mixed, 4) == [8.0, 2.0]
    assert cm.notes_per_bar(mixed, (1, 4)) == 8.0 and cm.notes_per_bar(mixed, (5, 8)) == 2.0
    # empty trailing bars count when the piece says it has them
    assert cm.notes_per_bar(cm.notes_of(sparse, n_bars=8)) == 1.0


def test_bars_follow_the_time_signature():
    s = score([(0, 1, 60), (3, 1, 60), (6, 1, 60)], ts=(3, 4))
    assert cm.bar_counts(s).tolist() == [1, 1, 1]
    s.time_signatures.append(symusic.TimeSignature(6 * TPQ, 2, 4))
    s.tracks[0].notes.append(symusic.Note(8 * TPQ, TPQ, 60, 80))
    assert cm.bar_counts(s).tolist() == [1, 1, 1, 1]


def test_major_vs_minor_triads():
    major = score([(0, 2, 60), (0, 2, 64), (0, 2, 67)])
    minor = score([(0, 2, 60), (0, 2, 63), (0, 2, 67)])
    assert cm.major_third_share(major) == 1.0
    assert cm.major_third_share(minor) == 0.0
    # inversions count above the bass: first-inversion C major (E-G-C) has a minor third
    # above the bass (E-G), a second-inversion one (G-C-E) a major sixth and a fourth
    assert cm.major_third_share(score([(0, 2, 64), (0, 2, 67), (0, 2, 72)])) == 0.0
    assert cm.major_third_share(score([(0, 2, 60), (0, 2, 67)])) is None
    # held notes sound at later onsets: a C held under E then Eb gives one of each
    held = score([(0, 4, 48), (0, 2, 64), (2, 2, 63)])
    assert cm.third_counts(held)["harmonic_major"] == 1 and cm.third_counts(held)["harmonic_minor"] == 1


def test_melodic_thirds():
    up_major = score([(0, 1, 60), (1, 1, 64), (2, 1, 60)])      # C E C: two major thirds
    minor_tenth = score([(0, 1, 60), (1, 1, 75)])                # 15 semitones = 3 mod 12
    assert cm.third_counts(up_major) == {"harmonic_minor": 0, "harmonic_major": 0,
                                         "melodic_minor": 0, "melodic_major": 2}
    assert cm.major_third_share(up_major) == 1.0
    assert cm.major_third_share(minor_tenth) == 0.0
    # the melody line is the top note at each onset
    chords = score([(0, 1, 48), (0, 1, 72), (1, 1, 50), (1, 1, 76)])
    assert cm.third_counts(chords)["melodic_major"] == 1


def test_measures_over_bar_ranges():
    s = score([(0, 1, 60), (1, 1, 64), (16, 1, 60), (17, 1, 63)])
    assert cm.major_third_share(s, (1, 4)) == 1.0
    assert cm.major_third_share(s, (5, 8)) == 0.0
    assert cm.key_share(s, "C", (5, 8)) == 0.5
    with pytest.raises(CadenzaError):
        cm.notes_per_bar(s, (3, 2))


def test_switch_bar():
    assert cc.switch_bar(16, 4) == 9
    assert cc.switch_bar(8, 4) == 5
    assert cc.switch_bar(12, 4) == 9


def test_expected_moods_follow_the_plan():
    codec = mf.codec()
    exp = cc.expected_moods(codec, 16, energy="0.1,0.9@9")
    assert [(b, e) for b, _, e in exp] == [(0, 0), (4, 0), (8, 4), (12, 4)]
    assert all(v is None for _, v, _ in exp)
    assert cc.moods_follow([(0, 3, 0), (4, 1, 0), (8, 2, 4), (12, 0, 4)], exp)
    assert not cc.moods_follow([(0, 3, 0), (4, 1, 1), (8, 2, 4), (12, 0, 4)], exp)
    assert not cc.moods_follow([(0, 3, 0), (4, 1, 0), (8, 2, 4)], exp)


def test_corpus_reference_measures_real_segments_by_level():
    c = mf.codec()
    pieces = [c.encode(s, style="bach") for s in mf.corpus_scores()[:2]]
    ref = cm.corpus_reference(c, pieces)
    moods = sum(1 for ids in pieces for i in ids if c.token(int(i)).startswith("Mood_"))
    assert ref["segments"] == moods > 0
    assert sum(ref["energy_segments"].values()) == moods
    assert all(0 <= k < c.config.levels for k in ref["energy"]) and all(v > 0 for v in ref["energy"].values())
    assert all(0 <= v <= 1 for v in ref["valence"].values())   # four-voice chorales: thirds everywhere


@pytest.fixture(scope="module")
def checks():
    mm = mf.tiny_model()
    return mm, cc.run_checks(mm, seeds=[0, 1], bars=8, progress=False)


def test_run_checks_on_the_tiny_model(checks):
    mm, res = checks
    pieces = res["pieces"]
    assert set(pieces) == {"key", "free", "energy_low", "energy_high", "valence_low", "valence_high",
                           "switch_energy_up", "switch_energy_down", "switch_valence_up"}
    assert all(len(rows) == 2 for rows in pieces.values())
    assert [r["key"] for r in pieces["key"]] == ["C", "G"]
    assert [r["key"] for r in pieces["free"]] == ["C", "G"]          # the baseline, measured in the same keys
    assert all(m[1:] == [None, None] for r in pieces["free"] for m in r["expected_moods"])
    assert res["settings"]["switch_bar"] == 5
    for rows in pieces.values():
        for r in rows:
            assert r["bars"] == 8 and len(r["bar_counts"]) == 8
    names = [t["target"] for t in res["targets"]]
    assert len(names) == 7 and all(isinstance(t["met"], bool) for t in res["targets"])
    assert res["summary"]["key_share_mean"] is not None
    # the same seed gives the same prefix for the low and the high version of a control
    for lo, hi in zip(pieces["energy_low"], pieces["energy_high"]):
        assert lo["conditioning"] == hi["conditioning"]


def test_run_checks_pieces_hold_the_forced_moods(checks):
    mm, res = checks
    levels = mm.codec.control_levels
    lo_v, lo_e = levels(cc.LOW, cc.LOW)
    hi_v, hi_e = levels(cc.HIGH, cc.HIGH)
    assert (lo_e, hi_e) == (0, 4)
    pieces = res["pieces"]
    for r in pieces["energy_low"]:
        assert [m[0] for m in r["moods"]] == [0, 4] and all(m[2] == lo_e for m in r["moods"])
    for r in pieces["energy_high"]:
        assert all(m[2] == hi_e for m in r["moods"])
    for r in pieces["valence_low"]:
        assert all(m[1] == lo_v for m in r["moods"])
    for r in pieces["valence_high"]:
        assert all(m[1] == hi_v for m in r["moods"])
    # the switch at bar 5 changes the level from the second segment (bar index 4) on
    for r in pieces["switch_energy_up"]:
        assert [(m[0], m[2]) for m in r["moods"]] == [(0, lo_e), (4, hi_e)]
    for r in pieces["switch_energy_down"]:
        assert [(m[0], m[2]) for m in r["moods"]] == [(0, hi_e), (4, lo_e)]
    for r in pieces["switch_valence_up"]:
        assert [(m[0], m[1]) for m in r["moods"]] == [(0, lo_v), (4, hi_v)]
    assert res["moods_follow"]
    assert all(r["moods_follow"] for rows in pieces.values() for r in rows)


def test_run_checks_rejects_short_pieces():
    mm = mf.tiny_model()
    with pytest.raises(CadenzaError):
        cc.run_checks(mm, seeds=[0], bars=4, progress=False)
    with pytest.raises(CadenzaError):
        cc.run_checks(mm, seeds=[], bars=8, progress=False)


def _bench():
    from cadenza.bench import music_controls

    return music_controls


def test_benchmark_writes_table_json_and_plot(tmp_path, capsys):
    import json
    import shutil

    # a run folder whose model/ has no tokenizer: --tokenizer supplies it
    run = tmp_path / "run"
    shutil.copytree(mf.tiny_model_dir(), run / "model")
    tok = tmp_path / "tokenizer.json"
    (run / "model" / "tokenizer.json").rename(tok)
    bench = _bench()
    out = tmp_path / "res" / "controls"
    assert bench.main(["--model", str(run), "--seeds", "1", "--bars", "8", "--out", str(out)]) == 2
    assert "--tokenizer" in capsys.readouterr().err
    assert bench.main(["--model", str(run), "--tokenizer", str(tok), "--seeds", "1", "--bars", "8",
                       "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "target: forced key: >= 90% of notes in its scale" in text and "met)" in text
    data = json.loads(out.with_suffix(".json").read_text())
    mm = mf.tiny_model()
    assert data["model"]["digest"] == mm.digest
    assert "--seeds 1 --bars 8" in data["command"]
    assert len(data["pieces"]["energy_high"]) == 1 and data["moods_follow"] is True
    assert len(data["targets"]) == 7
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
