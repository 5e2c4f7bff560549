"""Authorship: the notes hash and provenance check, the originality index, --max-copy."""

from __future__ import annotations

import json

import numpy as np
import pytest

import music_fixtures as mf
from conftest import require

require("symusic")
from cadenza.cli import main  # noqa: E402
from cadenza.music.authorship import originality as orig  # noqa: E402
from cadenza.music.authorship import provenance as prov  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A tiny corpus: five chorales to train on, the sixth held out."""
    return mf.write_chorale_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def index(corpus, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("CADENZA_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield orig.index_for(corpus[0])
    mp.undo()


def _notes(score):
    return sum(len(t.notes) for t in score.tracks)


def test_training_piece_and_transposed_copy_are_flagged(index, corpus):
    c = mf.codec()
    piece = c.decode(list(corpus[1][2]))
    r = orig.check_score(index, piece)
    assert r.flagged and r.exact_intervals.notes == r.notes and r.exact_rhythm.notes == r.notes
    assert r.exact_intervals.piece == "train piece 3" and r.score == 0.0
    up = piece.copy().shift_pitch(3)
    t = orig.check_score(index, up)
    assert t.flagged and t.exact_intervals.notes == r.notes


def test_one_changed_note_is_still_a_near_copy(index, corpus):
    c = mf.codec()
    piece = c.decode(list(corpus[1][0]))
    ids = list(corpus[1][0])
    # change the pitch of one note in the middle of the stream
    from cadenza.music.inputs import remi_for
    from cadenza.music.grammar import PITCH

    remi = remi_for(c)
    pitch_pos = [i for i, t in enumerate(ids) if remi.kind[t] == PITCH]
    k = pitch_pos[len(pitch_pos) // 2]
    ids[k] = remi.pitch_ids[remi.value[ids[k]] + 1]
    r = orig.check_tokens(index, ids)
    full = orig.check_score(index, piece).notes
    assert r.exact_intervals.notes < 0.75 * full          # the exact run is broken ...
    assert r.near.notes >= full - 2 and r.near.differing >= 1 and r.flagged   # ... the near run is not


def test_held_out_and_random_pieces_are_not_flagged(index, corpus):
    import symusic

    c = mf.codec()
    held = orig.check_score(index, c.decode(list(corpus[1][-1])))
    assert not held.flagged and held.near.notes < 16
    rng = np.random.default_rng(0)
    s = symusic.Score(480)
    tr = symusic.Track(program=0)
    for i in range(120):
        tr.notes.append(symusic.Note(i * 240, 240, int(rng.integers(50, 80)), 80))
    s.tracks.append(tr)
    r = orig.check_score(index, s)
    assert not r.flagged and r.exact_intervals.notes < 8 and r.score == 1.0


def test_suffix_array_matches_sorted_suffixes():
    rng = np.random.default_rng(1)
    s = rng.integers(0, 4, 300)
    sa = orig.suffix_array(s)
    assert [list(s[i:]) for i in sa] == sorted(list(s[i:]) for i in range(s.size))


def test_index_is_cached_by_content(index, corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("CADENZA_CACHE", str(tmp_path))
    a = orig.index_for(corpus[0])
    assert list(tmp_path.glob("originality/*/index.npz"))
    b = orig.index_for(corpus[0])
    assert a.key == b.key == index.key and np.array_equal(a.sa_r, b.sa_r)


def test_max_copy_output_never_exceeds_n(index):
    from cadenza.music.composition import compose

    mm = mf.tiny_model()
    free = orig.check_tokens(index, compose(mm, bars=8, seed=3, temperature=0.3, style="bach").ids)
    n = max(2, free.exact_intervals.notes - 1)
    assert free.exact_intervals.notes > n        # unconstrained, the tiny model copies more than n
    for seed in (3, 4):
        guard = orig.CopyGuard(index, n)
        piece = compose(mm, bars=8, seed=seed, temperature=0.3, style="bach", guard=guard)
        r = orig.check_tokens(index, piece.ids)
        assert r.exact_intervals.notes <= n and guard.refused > 0


def test_written_file_verifies_and_an_edit_is_detected(tmp_path):
    import symusic

    from cadenza.music.composition import continue_piece
    from cadenza.music.output import write_piece

    mm = mf.tiny_model()
    src = mf.write_midi_file(mf.excerpt_score(2), tmp_path / "in.mid")
    piece = continue_piece(mm, src, bars=2, seed=1)
    out = tmp_path / "out.mid"
    write_piece(piece, out, audio=True)
    v = prov.verify(out)
    assert v.status == "unchanged" and v.credit_source == "record"
    rec = json.loads(out.with_suffix(".json").read_text())
    assert rec["schema"] == prov.SCHEMA and rec["notes_sha256"] == v.notes_sha256
    assert rec["credit"]["person"] == _notes(mf.excerpt_score(2)) and rec["credit"]["model"] > 0
    assert 0 < rec["credit"]["human_percent"] < 100 and rec["input"]["sha256"]
    s = symusic.Score.from_file(str(out))
    for t in s.tracks:
        if len(t.notes):
            t.notes[0].pitch = t.notes[0].pitch + 1
            break
    edited = tmp_path / "edited.mid"
    s.dump_midi(str(edited))
    out.with_suffix(".json").replace(edited.with_suffix(".json"))
    e = prov.verify(edited)
    assert e.status == "edited" and len(e.added) == 1 and len(e.removed) == 1 and e.credit["edited"] == 1


def test_no_record_and_cli(tmp_path, capsys, index, corpus, monkeypatch):
    monkeypatch.setenv("CADENZA_CACHE", str(tmp_path / "cache"))
    plain = mf.write_midi_file(mf.excerpt_score(2), tmp_path / "plain.mid")
    assert prov.verify(plain).status == "no record"
    assert main(["provenance", str(plain)]) == 0 and "no record" in capsys.readouterr().out
    copy = mf.write_midi_file(mf.codec().decode(list(corpus[1][1])), tmp_path / "copy.mid")
    assert main(["check", str(copy), "--corpus", str(corpus[0]), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["flagged"] and d["exact_intervals"]["notes"] == d["notes"] and d["exact_intervals"]["piece"]


@pytest.mark.parametrize("case", ["not-midi", "missing-corpus", "no-corpus-given", "bad-flag"])
def test_bad_input_is_one_line_exit_2(case, tmp_path, capsys, corpus, monkeypatch):
    monkeypatch.setenv("CADENZA_CACHE", str(tmp_path / "cache"))
    junk = tmp_path / "x.mid"
    junk.write_text("not a midi file")
    good = mf.write_midi_file(mf.excerpt_score(1), tmp_path / "g.mid")
    empty_model = tmp_path / "model"
    empty_model.mkdir()
    argv = {"not-midi": ["check", str(junk), "--corpus", str(corpus[0])],
            "missing-corpus": ["check", str(good), "--corpus", str(tmp_path / "nowhere")],
            "no-corpus-given": ["check", str(good), "--model", str(empty_model)],
            "bad-flag": ["check", str(good), "--corpus", str(corpus[0]), "--flag-run", "1"]}[case]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cadenza: error:") and "\n" not in err
    if case == "not-midi":
        assert main(["provenance", str(junk)]) == 2


def test_originality_benchmark_script_runs_and_the_guard_holds(corpus, tmp_path, monkeypatch):
    import json as _json

    from cadenza.bench import originality as mod

    monkeypatch.setenv("CADENZA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "res" / "orig"
    assert mod.main(["--model", str(mf.tiny_model_dir()), "--corpus", str(corpus[0]), "--pieces", "3",
                     "--bars", "4", "--max-copy", "6", "--out", str(out)]) == 0
    res = _json.loads(out.with_suffix(".json").read_text())
    assert len(res["unguarded"]["longest_run"]) == len(res["guarded"]["longest_run"]) == 3
    assert max(res["guarded"]["longest_run"]) <= 6
    assert out.with_suffix(".png").stat().st_size > 1000
    assert mod.main(["--model", str(mf.tiny_model_dir()), "--corpus", str(tmp_path / "none")]) == 2
