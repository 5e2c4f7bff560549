"""The shipped notes file (the originality index without the corpus) and --max-copy by default."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict

import numpy as np
import pytest

import music_fixtures as mf
from conftest import require

require("symusic")
from cadenza.cli import main  # noqa: E402
from cadenza.music.authorship import corpus_notes as cn  # noqa: E402
from cadenza.music.authorship import originality as orig  # noqa: E402

ARRAYS = ("seq_p", "sa_p", "seq_r", "sa_r", "uniq_p", "uniq_r", "pitch", "piece", "bar")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A tiny corpus: five chorales to train on, the sixth held out."""
    return mf.write_chorale_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CADENZA_CACHE", str(tmp_path / "cache"))


def _result(r) -> dict:
    d = asdict(r)
    d.pop("seconds"), d.pop("corpus")
    return d


def _queries(seqs):
    c = mf.codec()
    pieces = [c.decode(list(s)) for s in seqs]
    return [*pieces, pieces[1].copy().shift_pitch(-2), mf.excerpt_score(2)]


def test_notes_file_round_trip_gives_the_full_index(corpus, tmp_path):
    full = orig.build_index(corpus[0])
    p = tmp_path / "notes.npz"
    digest = cn.save_notes(cn.corpus_notes(corpus[0]), p)
    assert cn.save_notes(cn.corpus_notes(corpus[0]), tmp_path / "again.npz") == digest == cn.file_sha256(p)
    shipped = orig.index_for(p)          # built from the notes file alone
    assert shipped.key == full.key and shipped.pieces == full.pieces and shipped.corpus == str(p)
    for k in ARRAYS:
        a, b = getattr(shipped, k), getattr(full, k)
        assert a.dtype == b.dtype and np.array_equal(a, b), k
    # and both equal an index computed here straight from the tokens, as the queries are read
    from cadenza.data.format import open_split

    ids = np.asarray(open_split(corpus[0], "train"), dtype=np.int64)
    notes = orig.notes_of_tokens(ids, orig.TokenTables(mf.codec()))
    for raw, uniq, seq in zip(orig.symbols(notes), ("uniq_p", "uniq_r"), ("seq_p", "seq_r")):
        u, s = np.unique(raw, return_inverse=True)
        assert np.array_equal(getattr(shipped, uniq), u) and np.array_equal(getattr(shipped, seq), s.ravel())
    for k in ("pitch", "piece", "bar"):
        assert np.array_equal(getattr(shipped, k), notes[k]), k
    for q in _queries(corpus[1]):
        assert _result(orig.check_score(shipped, q)) == _result(orig.check_score(full, q))
    assert orig.check_score(shipped, _queries(corpus[1])[1]).flagged
    # the same key: a corpus folder and its notes file share one cache entry
    assert list((tmp_path / "cache" / "originality").iterdir()) == [tmp_path / "cache" / "originality" / full.key[:24]]


def test_a_broken_notes_file_is_one_line_exit_2(corpus, tmp_path, capsys):
    good = mf.write_midi_file(mf.excerpt_score(1), tmp_path / "g.mid")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK not really a zip")
    assert main(["check", str(good), "--corpus", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cadenza: error:") and "notes file" in err and "\n" not in err


def _model_with_notes(corpus, tmp_path):
    """A copy of the tiny model whose corpus.json names a corpus copy, exported with
    `cadenza check --export-index`; returns (model, corpus copy)."""
    model = tmp_path / "model"
    shutil.copytree(mf.tiny_model_dir(), model)
    data = tmp_path / "corpus"
    shutil.copytree(corpus[0], data)
    assert main(["check", "--export-index", "--model", str(model), "--corpus", str(data)]) == 0
    info = json.loads((model / "corpus.json").read_text())
    assert info["data_dir"] == str(data) and info["originality_notes"]["sha256"] == cn.file_sha256(
        model / cn.NOTES_FILE)
    return model, data


def test_check_without_corpus_uses_the_models_notes_file(corpus, tmp_path, capsys):
    model, data = _model_with_notes(corpus, tmp_path)
    capsys.readouterr()
    copy = mf.write_midi_file(mf.codec().decode(list(corpus[1][1])), tmp_path / "copy.mid")
    assert main(["check", str(copy), "--corpus", str(data), "--json"]) == 0
    from_corpus = json.loads(capsys.readouterr().out)
    assert orig.default_corpus(model) == data               # the corpus folder, while it is there
    from cadenza.data.format import write_dataset

    write_dataset(data, {"train": np.concatenate(corpus[1][:2]), "val": corpus[1][-1]}, mf.codec().vocab_size,
                  modality="music")                         # rebuilt as another corpus: not the model's
    assert orig.default_corpus(model) == model / cn.NOTES_FILE
    shutil.rmtree(data)                                     # the corpus is gone: the notes file remains
    assert orig.default_corpus(model) == model / cn.NOTES_FILE
    assert main(["check", str(copy), "--model", str(model), "--json"]) == 0
    from_notes = json.loads(capsys.readouterr().out)
    assert from_notes["corpus"].endswith("notes.npz") and from_notes["flagged"]
    for d in (from_corpus, from_notes):
        d.pop("seconds"), d.pop("corpus")
    assert from_notes == from_corpus
    # an edited notes file no longer matches corpus.json's sha256: one line, exit 2
    p = model / cn.NOTES_FILE
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0xFF
    p.write_bytes(bytes(b))
    assert main(["check", str(copy), "--model", str(model)]) == 2
    err = capsys.readouterr().err.strip()
    assert "sha256" in err and "\n" not in err


def test_the_shipped_model_ships_its_notes_file(monkeypatch):
    """Without data/music21 on disk, the shipped model's check falls back to its notes file."""
    from cadenza.music.registry import default_model_dir

    monkeypatch.delenv("CADENZA_MODEL", raising=False)
    monkeypatch.delenv("CADENZA_MODELS", raising=False)
    m = default_model_dir()
    info = orig.model_corpus(m)
    monkeypatch.setattr(orig, "corpus_folder", lambda d: m / "no-such-corpus")
    p = orig.default_corpus()
    assert p == m / info["originality_notes"]["path"] and p.stat().st_size <= 6e6
    meta = cn.notes_meta(p)
    assert meta["key"] == info["content_sha256"] and meta["notes"] == info["originality_notes"]["notes"] > 10 ** 6


def _notes(path) -> list:
    import symusic

    return sorted((t.program, n.time, n.duration, n.pitch) for t in symusic.Score(str(path)).tracks for n in t.notes)


def _marker(path) -> str:
    import mido

    return " ".join(m.text for t in mido.MidiFile(str(path)).tracks for m in t if m.type == "marker")


def test_max_copy_is_on_by_default_for_a_model_with_an_index(corpus, tmp_path, monkeypatch):
    from cadenza.music import output

    model, data = _model_with_notes(corpus, tmp_path)
    shutil.rmtree(data)                                     # guard with the shipped notes file only
    idx = orig.index_for(model / cn.NOTES_FILE)
    written = {}
    real_write = output.write_piece

    def keep(piece, out, **kw):                             # the generated stream, in the guard's order
        written[str(out)] = piece
        return real_write(piece, out, **kw)

    monkeypatch.setattr(output, "write_piece", keep)
    base = ["compose", "--model", str(model), "--style", "bach", "--bars", "8", "--temperature", "0.3",
            "--no-audio", "--no-progress"]

    def longest(path) -> int:
        return orig.check_tokens(idx, written[str(path)].ids).exact_intervals.notes

    for seed in (1, 3):
        off, on, again = (tmp_path / f"{k}{seed}.mid" for k in ("off", "on", "again"))
        assert main([*base, "--seed", str(seed), "--max-copy", "0", "-o", str(off)]) == 0
        # a default small enough to bite: the tiny model copies only a few notes unguarded
        n = max(2, longest(off) - 1)
        monkeypatch.setattr(orig, "DEFAULT_MAX_COPY", n)
        assert main([*base, "--seed", str(seed), "-o", str(on)]) == 0
        assert main([*base, "--seed", str(seed), "-o", str(again)]) == 0
        assert longest(off) > n                             # unguarded, the tiny model copies more ...
        assert longest(on) <= n                             # ... and by default it may not
        assert written[str(on)].settings["copy_guard"]["pitches_refused"] > 0
        assert f"--max-copy {n} " in _marker(on) and "--max-copy 0 " in _marker(off)
        assert _notes(on) == _notes(again) != _notes(off)   # same seed, same piece


def test_no_corpus_no_guard_and_no_error(tmp_path, monkeypatch):
    """The tiny test model names no corpus: compose runs unguarded (as before) without a word."""
    monkeypatch.setattr(orig, "CopyGuard", None)             # any attempt to guard would fail loudly
    out = tmp_path / "x.mid"
    assert main(["compose", "--model", str(mf.tiny_model_dir()), "--bars", "2", "--seed", "1", "--no-audio",
                 "-o", str(out)]) == 0
    assert "--max-copy" not in _marker(out)
    assert main(["compose", "--model", str(mf.tiny_model_dir()), "--bars", "2", "--seed", "1", "--no-audio",
                 "--max-copy", "0", "-o", str(tmp_path / "y.mid")]) == 0


@pytest.mark.parametrize("case", ["no-input", "export-no-corpus", "export-missing-corpus"])
def test_export_and_check_bad_input_is_one_line_exit_2(case, tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    argv = {"no-input": ["check"],
            "export-no-corpus": ["check", "--export-index", "--model", str(model)],
            "export-missing-corpus": ["check", "--export-index", "--model", str(model), "--corpus",
                                      str(tmp_path / "nowhere")]}[case]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cadenza: error:") and "\n" not in err
    assert not (model / cn.NOTES_FILE).exists() and not (model / "corpus.json").exists()


def test_the_server_guards_like_the_cli(corpus, tmp_path, monkeypatch):
    """POST /api/compose applies the same --max-copy default as `cadenza compose` (the model's
    shipped notes), records it in the provenance, and `max_copy: 0` turns it off."""
    import base64

    from fastapi.testclient import TestClient

    from cadenza.codecs.music import score_from_bytes
    from cadenza.music import composition as gen
    from cadenza.music.load import load_model
    from cadenza.server.app import create_app

    model, data = _model_with_notes(corpus, tmp_path)
    shutil.rmtree(data)                                     # guard with the shipped notes file only
    idx = orig.index_for(model / cn.NOTES_FILE)
    app = TestClient(create_app(mm=load_model(model, cache=False), prefs_path=tmp_path / "prefs.sqlite3"),
                     base_url="http://127.0.0.1")
    body = {"style": "bach", "bars": 8, "temperature": 0.3, "seed": 3}

    made = []                                               # the generated stream, in the guard's order
    real = gen.compose
    monkeypatch.setattr(gen, "compose", lambda *a, **k: made.append(real(*a, **k)) or made[-1])

    def longest(r) -> int:
        assert r.status_code == 200, r.text
        assert score_from_bytes(base64.b64decode(r.json()["midi_base64"])).note_num() == len(r.json()["notes"])
        return orig.check_tokens(idx, made[-1].ids).exact_intervals.notes

    off = app.post("/api/compose", json={**body, "max_copy": 0})
    n = max(2, longest(off) - 1)
    assert longest(off) > n and off.json()["provenance"]["settings"]["max_copy"] == 0
    monkeypatch.setattr(orig, "DEFAULT_MAX_COPY", n)        # a default small enough to bite
    on = app.post("/api/compose", json=body)
    assert longest(on) <= n
    settings = on.json()["provenance"]["settings"]
    assert settings["max_copy"] == n and settings["copy_guard"]["pitches_refused"] > 0
    again = app.post("/api/compose", json=body)
    assert again.json()["notes"] == on.json()["notes"] != off.json()["notes"]
    assert app.post("/api/compose", json={**body, "max_copy": -1}).status_code == 422
