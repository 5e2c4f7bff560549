"""Music corpus builders: music21 corpus and MIDI folders -> shared token format + manifest."""

from __future__ import annotations

import csv
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
from conftest import require

symusic = require("symusic")
require("miditok")
require("music21")

from cadenza.cli import main
from cadenza.codecs.music import MusicCodec, note_tuples
from cadenza.data.format import open_split, read_meta
from cadenza.data.music import (TPQ, build_midi, build_music21, m21_to_score, music21_sources, normalise_title, split_groups,
                                split_of)
from cadenza.errors import ConfigError, DataError


def _manifest(d):
    with open(d / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _pieces(stream, codec):
    """Split a token stream at BOS into pieces."""
    starts = np.flatnonzero(np.asarray(stream) == codec.bos_id)
    return [np.asarray(stream[a:b]) for a, b in zip(starts, list(starts[1:]) + [len(stream)])]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("m21") / "data"
    summary = build_music21(out, collections=["bach", "essenFolksong", "oneills1850"], limit=3, workers=2,
                            progress=False)
    return out, summary


def test_music21_build_writes_the_shared_format(corpus_dir):
    out, summary = corpus_dir
    meta = read_meta(out)
    assert meta["modality"] == "music"
    codec = MusicCodec.load(out)
    assert meta["vocab_size"] == codec.vocab_size and meta["tokenizer"] == "tokenizer.json"
    rows = _manifest(out)
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(rows) == 9 and Counter(r["collection"] for r in rows) == {"bach": 3, "essenFolksong": 3,
                                                                         "oneills1850": 3}
    assert summary.pieces_ok == len(ok) == meta["pieces"]["ok"]
    for split in ("train", "val", "test"):
        stream = open_split(out, split)
        assert len(stream) == meta["splits"][split]
        mine = [r for r in ok if r["split"] == split]
        assert sum(int(r["tokens"]) for r in mine) == len(stream)
        pieces = _pieces(stream, codec)
        assert len(pieces) == len(mine)
        for p, r in zip(pieces, sorted(mine, key=lambda r: r["id"])):
            assert p[-1] == codec.eos_id and len(p) == int(r["tokens"])
            cond, _ = codec.parse_prefix(p)
            assert cond["key"] == r["key"] and cond["style"] == r["style"]
            kinds = [codec.token_type(i) for i in p]
            assert kinds.count("Mood") == -(-kinds.count("Bar") // codec.config.segment_bars)
            assert codec.decode(p).note_num() == int(r["notes"])
    for r in rows:
        assert r["licence"] and r["composer"] and r["split"] in ("train", "val", "test")
    assert {r["style"] for r in ok} == {"bach", "folk", "fiddle"}
    assert any("Essen" in r["licence"] and "non-commercial" in r["licence"] for r in ok)


def test_music21_build_is_deterministic_and_resumes_from_cache(corpus_dir, tmp_path):
    out, _ = corpus_dir
    assert list((out / ".cache").glob("*.pkl"))
    again = tmp_path / "again"
    build_music21(again, collections=["bach", "essenFolksong", "oneills1850"], limit=3, workers=1,
                  progress=False, use_cache=False)
    for name in ("train.bin", "val.bin", "test.bin", "manifest.csv", "tokenizer.json"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    # a second build into the same folder reads every file from the cache (no worker runs)
    import cadenza.data.music.build as dm

    def no_parsing(job):
        raise AssertionError("parsed although cached")

    orig = dm.process_music21_file
    dm.process_music21_file = no_parsing
    try:
        build_music21(out, collections=["bach", "essenFolksong", "oneills1850"], limit=3, workers=1,
                      progress=False)
    finally:
        dm.process_music21_file = orig


def test_limit_takes_the_first_pieces_per_collection():
    src = music21_sources(["essenFolksong", "bach"], limit=5)
    assert [s[0] for s in src].count("bach") == 5           # one chorale per file
    essen = [s for s in src if s[0] == "essenFolksong"]
    assert len(essen) == 1 and essen[0][3] == 5             # one ABC book holds many songs
    with pytest.raises(ConfigError, match="excluded"):
        music21_sources(["demos"])
    with pytest.raises(ConfigError, match="unknown"):
        music21_sources(["nope"])


def test_splits_are_by_piece_and_deterministic():
    keys = [f"id|piece{i}" for i in range(20000)]
    splits = Counter(split_of(k) for k in keys)
    assert abs(splits["val"] / 20000 - 0.05) < 0.01 and abs(splits["test"] / 20000 - 0.05) < 0.01
    assert [split_of(k) for k in keys[:50]] == [split_of(k) for k in keys[:50]]
    # versions of one tune share a group: titles normalised across collections, and openings
    recs = [
        {"id": "oneills/a#1", "title": "The Humours of Glynn", "collection": "oneills1850", "melody16": "x1"},
        {"id": "ryans/b#2", "title": "Humours of Glynn.", "collection": "ryansMammoth", "melody16": "x2"},
        {"id": "oneills/c#3", "title": "Farewell, Sweet Nora -- Jig", "collection": "oneills1850", "melody16": "x3"},
        {"id": "airds/d#4", "title": "Farewell Sweet Nora.", "collection": "airdsAirs", "melody16": "x4"},
        {"id": "essen/e#5", "title": "HEIL DIR IM SIEGERKRANZ", "collection": "essenFolksong", "melody16": "god"},
        {"id": "misc/f#6", "title": "God Save the King", "collection": "misc", "melody16": "god"},
        {"id": "essen/g#7", "title": "HEIL DIR IM SIEGERKRANZ", "collection": "essenFolksong", "melody16": "zz"},
        {"id": "bach/h", "title": "", "collection": "bach", "melody16": "yy"},
    ]
    by = {"oneills1850": "title", "ryansMammoth": "title", "airdsAirs": "title"}
    g = split_groups(recs, by)
    assert g["oneills/a#1"] == g["ryans/b#2"] != g["oneills/c#3"]
    assert g["oneills/c#3"] == g["airds/d#4"]
    assert g["essen/e#5"] == g["misc/f#6"]                   # same opening, other title
    assert g["essen/g#7"] != g["essen/e#5"]                  # Essen titles are not used (many are generic)
    assert len(set(g.values())) == 5
    assert normalise_title("Humours of Glynn, The -- Reel") == normalise_title("humours of glynn")


def test_m21_conversion_ties_pickups_chord_symbols_and_dynamics():
    from music21 import converter

    abc = "X:1\nT:t\nM:3/4\nL:1/4\nQ:1/4=90\nK:G\n\"G\"D | !f!G2 A- | A B c |]\n"
    score, tempo_source = m21_to_score(converter.parse(abc, format="abc"))
    notes = note_tuples(score)
    assert tempo_source == "marked" and score.tempos[0].qpm == pytest.approx(90)
    assert [n[2] for n in notes] == [62, 67, 69, 71, 72]      # the "G" chord symbol is not a note
    assert notes[0][0] == 2                                     # pickup on beat 3 of bar 0
    assert notes[2][:2] == (Fraction(5), Fraction(2))         # A tied over the bar: one 2-beat note
    assert (score.time_signatures[0].numerator, score.time_signatures[0].denominator) == (3, 4)
    assert score.ticks_per_quarter == TPQ


def test_m21_conversion_dynamics_chords_and_instruments():
    from music21 import chord, dynamics, instrument, note, stream

    part = stream.Part()
    part.insert(0, instrument.Violin())
    part.append(note.Note("C4", quarterLength=1))
    part.append(dynamics.Dynamic("ff"))
    part.append(chord.Chord(["E4", "G4"], quarterLength=2))
    part.append(dynamics.Dynamic("pp"))
    part.append(note.Note("C5", quarterLength=0.5))
    score, tempo_source = m21_to_score(stream.Score([part]), default_tempo=77)
    assert tempo_source == "default" and score.tempos[0].qpm == pytest.approx(77)
    notes = note_tuples(score)
    assert [(n[0], n[2]) for n in notes] == [(0, 60), (1, 64), (1, 67), (3, 72)]
    assert notes[0][3] == 90 and notes[1][3] == notes[2][3] > 100 and notes[3][3] < 60
    assert {n[4] for n in notes} == {40}  # the violin's General MIDI program


def _write_midi(path, pitches, program=0, tempo=120):
    s = symusic.Score(480)
    s.tempos.append(symusic.Tempo(0, qpm=tempo))
    t = symusic.Track(program=program)
    for i, p in enumerate(pitches):
        t.notes.append(symusic.Note(i * 240, 240, p, 90))
    s.tracks.append(t)
    path.parent.mkdir(parents=True, exist_ok=True)
    s.dump_midi(str(path))


def test_midi_folder_build_skips_bad_files_and_duplicates(tmp_path):
    src = tmp_path / "songs"
    _write_midi(src / "a.mid", [60, 62, 64, 65, 67, 69, 71, 72])
    _write_midi(src / "sub" / "b.MIDI", [57, 60, 64, 57, 60, 64, 69], program=40, tempo=90)
    (src / "copy.mid").write_bytes((src / "a.mid").read_bytes())
    (src / "empty.mid").write_bytes(b"")
    (src / "text.mid").write_text("not midi")
    (src / "cut.mid").write_bytes((src / "a.mid").read_bytes()[:25])
    (src / "notes.txt").write_text("ignored: not a .mid file")
    out = tmp_path / "data"
    summary = build_midi(src, out, style="folk", licence="CC0", workers=2, progress=False)
    rows = {r["id"]: r for r in _manifest(out)}
    assert set(rows) == {"a.mid", "sub/b.MIDI", "copy.mid", "empty.mid", "text.mid", "cut.mid"}
    assert rows["a.mid"]["status"] == "ok" and rows["sub/b.MIDI"]["status"] == "ok"
    assert rows["copy.mid"]["status"] == "duplicate" and "a.mid" in rows["copy.mid"]["reason"]
    assert "empty" in rows["empty.mid"]["reason"] and "not a MIDI file" in rows["text.mid"]["reason"]
    assert "corrupt" in rows["cut.mid"]["reason"]
    assert summary.pieces_ok == 2 and summary.pieces_skipped == 3 and summary.pieces_duplicate == 1
    assert rows["a.mid"]["licence"] == "CC0" and rows["a.mid"]["style"] == "folk"
    log = (out / "build.log").read_text()
    assert "cut.mid" in log and "empty.mid" in log
    codec = MusicCodec.load(out)
    total = sum(read_meta(out)["splits"].values())
    assert total == int(rows["a.mid"]["tokens"]) + int(rows["sub/b.MIDI"]["tokens"])
    assert rows["sub/b.MIDI"]["key"] == "Am" and rows["a.mid"]["key"] == "C"
    with pytest.raises(DataError, match="no .mid"):
        build_midi(tmp_path / "data", tmp_path / "x", progress=False)
    with pytest.raises(DataError, match="not a folder"):
        build_midi(tmp_path / "missing", tmp_path / "x", progress=False)
    with pytest.raises(ConfigError, match="unknown style"):
        build_midi(src, tmp_path / "x", style="polka", progress=False)
    assert codec.vocab_size == read_meta(out)["vocab_size"]


def test_cli_data_midi_and_music21(tmp_path, capsys):
    src = tmp_path / "songs"
    _write_midi(src / "a.mid", [60, 64, 67, 72, 67, 64, 60])
    rc = main(["data", "midi", str(src), "--out", str(tmp_path / "d"), "--workers", "1", "--no-progress"])
    assert rc == 0
    assert "1 pieces" in capsys.readouterr().out
    assert main(["data", "midi", str(tmp_path / "nowhere"), "--out", str(tmp_path / "e"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "not a folder" in err and err.count("\n") == 1
    assert main(["data", "music21", "--out", str(tmp_path / "f"), "--collections", "demos", "--no-progress"]) == 2
    assert main(["data", "music21", "--out", str(tmp_path / "f"), "--limit", "0", "--no-progress"]) == 2
    assert not (tmp_path / "f" / "meta.json").exists()


def test_commercial_ok_leaves_out_non_commercial_encodings(tmp_path):
    out = tmp_path / "ok"
    build_music21(out, collections=["bach", "essenFolksong"], limit=2, workers=1, progress=False,
                  commercial_ok=True)
    rows = _manifest(out)
    essen = [r for r in rows if r["collection"] == "essenFolksong"]
    assert essen and all(r["status"] == "excluded" and r["use"] == "non-commercial" for r in essen)
    assert all(r["status"] == "ok" and r["use"] == "any" for r in rows if r["collection"] == "bach")
    assert read_meta(out)["pieces"]["excluded"] == len(essen) and read_meta(out)["commercial_ok"] is True
    from cadenza.data.music import use_of

    assert use_of("unknown (your own files)") == "unknown" and use_of("") == "unknown"


ABC_WITH_REPEATS = """X: 1
T: Repeats
M: 4/4
L: 1/4
K: G
|: G A B c | d2 B2 |1 A B c d :|2 G4 |]
"""


def test_repeats_are_played_and_as_written_keeps_them(tmp_path):
    from cadenza.codecs.music import MusicCodec
    from cadenza.data.music import pool

    path = tmp_path / "tune.abc"
    path.write_text(ABC_WITH_REPEATS)
    job = ("oneills1850", str(path), "tune.abc", None, 60, str(tmp_path / "cache.pkl"))
    pool._init_worker(MusicCodec().to_dict())
    (_, [(played, ids)]) = pool.process_music21_file(("t", job + (False,)))
    (_, [(written, wids)]) = pool.process_music21_file(("t", job + (True,)))  # from the parse cache
    # |: 6 notes + first ending (4) :| then the 6 again + second ending (1): 17 notes, 11 as written
    assert played["repeats"] == "expanded" and played["notes"] == 17
    assert played["written_notes"] == 11 and played["written_tokens"] == len(wids) < len(ids)
    assert written["notes"] == 11 and "as written" in written["repeats"]
    assert played["melody"] == written["melody"]   # the split sees the tune as notated either way
