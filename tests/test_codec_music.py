"""Music codec: round trips on real corpus pieces, the conditioning prefix, features, files."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import require

symusic = require("symusic")
require("miditok")
music21 = require("music21")

from cadenza.codecs.music import (MOODS, MusicCodec, MusicCodecConfig, describe, estimate_key, level_of,
                                  load_midi, note_tuples, parse_key)
from cadenza.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def codec():
    return MusicCodec()


def _abc_tunes(rel: str, count: int):
    from music21 import converter

    from cadenza.data.music import m21_to_score, music21_corpus_dir, read_score_text, split_abc

    header, tunes = split_abc(read_score_text(music21_corpus_dir() / rel))
    return [m21_to_score(converter.parse(header + t, format="abc"))[0] for t in tunes[:count]]


@pytest.fixture(scope="module")
def corpus_pieces():
    """A handful of real corpus pieces: a 4-voice chorale, a 4/2 mass movement, two-instrument
    trecento, folk and fiddle tunes (ABC with triplets, pickups and ties)."""
    from music21 import converter

    from cadenza.data.music import m21_to_score, music21_corpus_dir

    root = music21_corpus_dir()
    pieces = {}
    for rel in ("bach/bwv66.6.mxl", "palestrina/Agnus_01.krn", "trecento/Fava_Dicant_nunc_iudei.xml"):
        pieces[rel] = m21_to_score(converter.parse(str(root / rel), forceSource=True))[0]
    for rel, n in (("essenFolksong/altdeu10.abc", 4), ("oneills1850/0001-0050.abc", 4), ("airdsAirs/book1.abc", 3)):
        for i, s in enumerate(_abc_tunes(rel, n)):
            pieces[f"{rel}#{i}"] = s
    return pieces


def _synthetic(programs=(0, 40), drums=True):
    """Several instruments, varied velocities, triplets, overlapping notes, a drum track."""
    tpq = 480
    s = symusic.Score(tpq)
    s.time_signatures.append(symusic.TimeSignature(0, 3, 4))
    s.tempos.append(symusic.Tempo(0, qpm=132))
    rng = np.random.default_rng(7)
    for k, prog in enumerate(programs):
        t = symusic.Track(name=f"p{prog}", program=prog, is_drum=False)
        time = 0
        for i in range(40):
            step = [tpq // 3, tpq // 2, tpq, tpq // 4][i % 4]
            t.notes.append(symusic.Note(time, int(step * (1 + i % 3)), 48 + 12 * k + int(rng.integers(0, 12)),
                                        int(rng.integers(20, 127))))
            time += step
        s.tracks.append(t)
    if drums:
        d = symusic.Track(name="kit", program=0, is_drum=True)
        for i in range(24):
            d.notes.append(symusic.Note(i * tpq // 2, tpq // 4, 36 + (i % 3) * 2, 100))
        s.tracks.append(d)
    return s


# --------------------------------------------------------------------------- round trips
def test_round_trip_keeps_every_quantized_note_on_corpus_pieces(codec, corpus_pieces):
    for name, score in corpus_pieces.items():
        q = codec.quantize(score)
        expected = note_tuples(q)
        got = note_tuples(codec.decode(codec.encode(score)))
        assert len(expected) > 10, name
        assert got == expected, f"{name}: {len(set(expected) ^ set(got))} notes differ"
        # and on these pieces the quantization itself loses nothing: same number of notes,
        # onsets within half a grid step of the original
        orig = note_tuples(score)
        assert len(orig) == len(expected), name
        grid = Fraction(1, codec.config.positions_per_beat)
        for a, b in zip(sorted(o[:3] for o in orig), sorted(e[:3] for e in expected)):
            assert abs(a[0] - b[0]) <= grid and a[2] == b[2], name


def test_round_trip_through_a_midi_file(codec, corpus_pieces, tmp_path):
    score = corpus_pieces["bach/bwv66.6.mxl"]
    ids = codec.encode(score, style="bach")
    out = codec.decode_to_midi(ids, tmp_path / "out.mid")
    back = load_midi(out)
    assert note_tuples(back) == note_tuples(codec.quantize(score))
    assert back.tempos[0].qpm == pytest.approx(96, abs=0.5)  # the tempo bin written back
    # and encoding the written file again gives the same body
    assert list(codec.encode(back, style="bach")[7:]) == list(ids[7:])


def test_round_trip_several_instruments_drums_and_velocity_bins(codec):
    score = _synthetic()
    got = note_tuples(codec.decode(codec.encode(score)))
    assert got == note_tuples(codec.quantize(score))
    assert {n[4] for n in got} == {0, 40, -1}
    vels = {n[3] for n in got if n[4] != -1}
    assert len(vels) <= codec.config.num_velocities < len({n.velocity for t in score.tracks for n in t.notes})
    orig = note_tuples(score)
    assert len(got) == len(orig)
    # each velocity lands in a bin near its original value
    for a, b in zip(sorted(orig), sorted(got)):
        assert abs(a[3] - b[3]) <= 127 / codec.config.num_velocities


def test_tokens_depend_on_the_notes_not_on_the_track_split(codec, corpus_pieces):
    chorale = corpus_pieces["bach/bwv66.6.mxl"]          # four tracks, all program 0
    assert len(chorale.tracks) == 4
    one = chorale.copy()
    notes = [n for t in one.tracks for n in t.notes]
    one.tracks.clear()
    track = symusic.Track(program=0)
    for n in sorted(notes, key=lambda n: (-n.pitch, n.time)):  # any order
        track.notes.append(n)
    one.tracks.append(track)
    assert list(codec.encode(one)) == list(codec.encode(chorale))
    # and decoding, writing, reading and encoding again gives the same tokens
    ids = codec.encode(chorale)
    assert list(codec.encode(codec.decode(ids))[7:]) == list(ids[7:])


def test_midi_files_keep_overlapping_unison_notes(codec, tmp_path):
    """Two voices on one pitch overlap (as in chorales): a plain MIDI file would pair the
    note-offs wrongly; write_midi splits them so the file reads back exactly."""
    s = symusic.Score(480)
    t = symusic.Track(program=0)
    for n in [(0, 720, 55, 87), (240, 240, 55, 87), (480, 480, 60, 87), (480, 960, 67, 87), (720, 120, 67, 87)]:
        t.notes.append(symusic.Note(*n))
    s.tracks.append(t)
    ids = codec.encode(s)
    codec.decode_to_midi(ids, tmp_path / "u.mid")
    back = load_midi(tmp_path / "u.mid")
    assert note_tuples(back) == note_tuples(codec.decode(ids)) == note_tuples(codec.quantize(s))
    assert list(codec.encode(back)[7:]) == list(ids[7:])
    assert len(back.tracks) == 2  # one extra lane for the overlapping unisons


@pytest.mark.parametrize("kind", ["TSD"])
def test_tsd_round_trip(corpus_pieces, kind):
    c = MusicCodec(MusicCodecConfig(tokenization=kind))
    for name in ("bach/bwv66.6.mxl", "oneills1850/0001-0050.abc#0"):
        score = corpus_pieces[name]
        assert note_tuples(c.decode(c.encode(score))) == note_tuples(c.quantize(score)), name
    assert c.bar_ids() == [] and c.ids_of_type("TimeShift")


def test_quantization_is_what_the_grid_says(codec):
    s = symusic.Score(480)
    t = symusic.Track(program=0)
    t.notes.append(symusic.Note(45, 480, 60, 64))   # 45/480 of a beat snaps to the nearest 1/12
    t.notes.append(symusic.Note(480, 480 * 20, 62, 64))  # 20 beats: capped at max_duration_beats
    s.tracks.append(t)
    got = note_tuples(codec.decode(codec.encode(s)))
    assert got[0][0] == Fraction(1, 12)
    assert got[1][1] == codec.config.max_duration_beats


# --------------------------------------------------------------------------- prefix
def test_prefix_layout_and_values(codec, corpus_pieces):
    ids = codec.encode(corpus_pieces["bach/bwv66.6.mxl"], style="bach")
    kinds = [codec.token_type(i) for i in ids[:8]]
    assert kinds == ["BOS", "Style", "Key", "Tempo", "TimeSig", "Bar", "Mood", "Position"]
    assert ids[-1] == codec.eos_id and codec.eos_id not in ids[:-1]
    cond, start = codec.parse_prefix(ids)
    assert start == 5
    assert cond["style"] == "bach"
    assert cond["key"] == "F#m"           # BWV 66.6 is in F sharp minor
    assert cond["tempo"] == 96            # its MusicXML tempo mark
    assert cond["time_signature"] == (4, 4)
    palestrina = codec.parse_prefix(codec.encode(corpus_pieces["palestrina/Agnus_01.krn"]))[0]
    assert palestrina["time_signature"] == (8, 4)  # 4/2 is written as the same bar over 4
    assert palestrina["style"] == "other"


def test_lean_stream_leaves_out_what_does_not_change(codec, corpus_pieces):
    for name, score in corpus_pieces.items():
        ids = [int(i) for i in codec.encode(score)]
        remi = codec.remi_ids(score)
        kinds = [codec.token_type(i) for i in ids]
        # no repeated Program / Velocity / TimeSig: each one marks a change
        for kind in ("Program", "Velocity", "TimeSig"):
            seen = [i for i, k in zip(ids[5:], kinds[5:]) if k == kind]
            assert all(a != b for a, b in zip(seen, seen[1:])), (name, kind)
        assert len(ids) < len(remi)      # leaner than REMI (which has all three per note / bar)
        # controls open every segment: right after the bar line (and its metre change, if any)
        bars = [k for k, kind in enumerate(kinds) if kind == "Bar"]
        starts = bars[::codec.config.segment_bars]
        for b in starts:
            j = b + 1 + (kinds[b + 1] == "TimeSig")
            assert kinds[j] == "Mood", name
        assert kinds.count("Mood") == len(starts)
        # and the round trip keeps every quantized note
        assert note_tuples(codec.decode(ids)) == note_tuples(codec.quantize(score)), name


def test_tokens_per_note_on_the_corpus_sample(codec, corpus_pieces):
    tokens = sum(len(codec.encode(s)) for s in corpus_pieces.values())
    notes = sum(len(note_tuples(codec.quantize(s))) for s in corpus_pieces.values())
    assert tokens / notes <= 3.3


def test_segment_controls_follow_density_and_mode(codec):
    def piece(notes_per_bar, chord_pcs, bars=8):
        s = symusic.Score(480)
        t = symusic.Track(program=0)
        step = 1920 // notes_per_bar
        for b in range(bars):
            for k in range(notes_per_bar):
                t.notes.append(symusic.Note(b * 1920 + k * step, step, 60 + chord_pcs[k % len(chord_pcs)], 80))
        s.tracks.append(t)
        return s

    major, minor = [0, 4, 7, 12, 7, 4], [0, 3, 7, 12, 7, 3]
    raw_sparse = codec.segment_raw_values(codec.remi_ids(piece(2, major)), 120)
    raw_dense = codec.segment_raw_values(codec.remi_ids(piece(12, major)), 120)
    raw_minor = codec.segment_raw_values(codec.remi_ids(piece(6, minor)), 120)
    raw_major = codec.segment_raw_values(codec.remi_ids(piece(6, major)), 120)
    assert len(raw_sparse) == 2           # 8 bars in segments of 4
    assert raw_dense[0][1] > raw_sparse[0][1] + 0.2
    assert raw_major[0][0] > raw_minor[0][0] + 0.2


def test_conditioning_and_control_helpers(codec):
    ids = codec.conditioning(style="folk", key="Bb", tempo=100, time_signature="6/8")
    assert codec.tokens(ids) == ["Style_folk", "Key_Bb", "Tempo_96", "TimeSig_6/8"]
    assert codec.conditioning() == [None] * 4
    assert codec.tokens(codec.control_ids(mood="sad")) == ["Mood_{}.{}".format(*MOODS["sad"])]
    assert len(codec.control_ids()) == 25
    assert codec.control_ids(valence=0.99, energy=0.0) == [codec.mood_id(4, 0)]
    assert codec.control_ids(valence=0.3, energy=0.5) == [codec.mood_id(1, 2)]
    assert codec.control_ids(valence=3) == [codec.mood_id(3, e) for e in range(5)]
    for slot in ("style", "key", "tempo", "time_signature"):
        allowed = codec.slot_ids(slot)
        assert allowed and len(set(allowed)) == len(allowed)
    assert len(codec.slot_ids("key")) == 24
    # a sequence built from the helpers parses back to the same values
    body, _ = codec.lean_body(codec.remi_ids(_synthetic(drums=False)), (6, 8))
    seq = [codec.bos_id] + ids + body + [codec.eos_id]
    cond, start = codec.parse_prefix(seq)
    assert start == 5 and cond["key"] == "Bb" and cond["time_signature"] == (6, 8)
    assert codec.decode(seq).tempos[0].qpm == pytest.approx(96)
    with pytest.raises(ConfigError, match="unknown style"):
        codec.style_id("polka")
    with pytest.raises(ConfigError, match="unknown mood"):
        codec.control_ids(mood="grumpy")
    with pytest.raises(ConfigError, match="unknown key"):
        codec.key_id("H#")
    with pytest.raises(ConfigError, match="tempo"):
        codec.tempo_id(5)
    with pytest.raises(ConfigError):
        codec.mood_id(7, 0)
    with pytest.raises(ConfigError):
        codec.control_ids(energy=1.5)


def test_transposer_moves_pitches_and_key_and_never_leaves_the_range(codec, corpus_pieces):
    from cadenza.data.transpose import Transposer

    tr = Transposer(codec)
    ids = np.asarray(codec.encode(corpus_pieces["bach/bwv66.6.mxl"], style="bach"))
    up = tr(ids, 2)
    assert codec.parse_prefix(up)[0]["key"] == "Abm"
    a, b = note_tuples(codec.decode(ids)), note_tuples(codec.decode(up))
    assert [n[2] + 2 for n in a] == [n[2] for n in b] and [n[:2] for n in a] == [n[:2] for n in b]
    lo, hi = codec.config.pitch_range
    high = ids.copy()
    pitch_of = codec.pitch_ids()
    top = max(pitch_of[int(i)] for i in ids if int(i) in pitch_of)
    assert tr.feasible(ids, 200) == hi - 1 - top
    assert all(lo <= n[2] < hi for n in note_tuples(codec.decode(tr(high, 12 if hi - 1 - top < 12 else 5))))
    assert list(tr(ids, 0)) == list(ids)


def test_vocabulary_is_compact_and_typed(codec):
    assert 300 < codec.vocab_size < 1000
    pitches = codec.pitch_ids()
    assert sorted(pitches.values()) == list(range(21, 110))
    assert all(codec.token(i) == f"Pitch_{p}" for i, p in pitches.items())
    programs = codec.program_ids()
    assert set(programs.values()) == set(range(-1, 128))
    assert len(codec.bar_ids()) == 1 and codec.token(codec.bar_ids()[0]) == "Bar_None"
    types = [codec.token_type(i) for i in range(codec.vocab_size)]
    assert types[codec.pad_id] == "PAD" and types[codec.bos_id] == "BOS" and types[codec.eos_id] == "EOS"
    assert len({codec.token(i) for i in range(codec.vocab_size)}) == codec.vocab_size


def test_decode_survives_any_token_soup(codec):
    rng = np.random.default_rng(0)
    for _ in range(10):
        score = codec.decode(rng.integers(0, codec.vocab_size, size=400))
        assert score.ticks_per_quarter > 0  # no exception, some (possibly empty) score


# --------------------------------------------------------------------------- features
def _scale(tonic: int, minor: bool):
    steps = [0, 2, 3, 5, 7, 8, 11, 12] if minor else [0, 2, 4, 5, 7, 9, 11, 12]
    seq = steps + steps[::-1] + [0, 7 if not minor else 7, 4 if not minor else 3, 0]
    return [60 + tonic + s for s in seq]


@pytest.mark.parametrize("tonic,minor,name", [(0, False, "C"), (9, True, "Am"), (2, False, "D"),
                                             (7, True, "Gm"), (10, False, "Bb")])
def test_key_estimation(tonic, minor, name):
    pitches = _scale(tonic, minor)
    weights = [2 if p % 12 == tonic else 1 for p in pitches]  # tonic a little longer
    assert "".join([["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"][estimate_key(
        pitches, weights)[0]], "m" if estimate_key(pitches, weights)[1] == "minor" else ""]) == name
    assert parse_key(name) == estimate_key(pitches, weights)


def _chords(chords, step, vel, qpm):
    s = symusic.Score(480)
    s.tempos.append(symusic.Tempo(0, qpm=qpm))
    t = symusic.Track(program=0)
    for i, chord in enumerate(chords):
        for p in chord:
            t.notes.append(symusic.Note(i * step, step, p, vel))
    s.tracks.append(t)
    return s


def test_mood_features_follow_mode_harmony_density_tempo_velocity():
    major = [(60, 64, 67), (65, 69, 72), (67, 71, 74), (60, 64, 67)] * 4
    minor_dissonant = [(60, 63, 67, 66), (65, 68, 72, 71), (67, 70, 74, 73), (60, 63, 67, 61)] * 4
    calm = describe(_chords(major, 960, 45, 60))
    tense = describe(_chords(minor_dissonant, 120, 115, 180))
    assert calm.key_mode == "major" and calm.key_name == "C"
    assert calm.valence > tense.valence + 0.3
    assert tense.energy > calm.energy + 0.3
    assert calm.major_triads == 1.0 and tense.consonance < calm.consonance
    # a single voice: harmony is neutral, valence still follows the mode
    mono_major = describe(_chords([(p,) for p in _scale(0, False)], 480, 80, 100))
    mono_minor = describe(_chords([(p,) for p in _scale(9, True)], 480, 80, 100))
    assert mono_major.consonance is None and mono_major.valence > mono_minor.valence


def test_level_of_uses_edges():
    assert [level_of(v) for v in (0.0, 0.19, 0.2, 0.5, 0.99, 1.0)] == [0, 0, 1, 2, 4, 4]
    assert level_of(0.5, (0.1, 0.2, 0.3, 0.6)) == 3
    with pytest.raises(ConfigError):
        level_of(1.5)


# --------------------------------------------------------------------------- files
def test_save_and_load_rebuild_the_same_tokenizer(codec, tmp_path, corpus_pieces):
    path = codec.save(tmp_path / "tokenizer.json")
    again = MusicCodec.load(tmp_path)
    assert again.vocab_size == codec.vocab_size and again.vocab_hash() == codec.vocab_hash()
    score = corpus_pieces["oneills1850/0001-0050.abc#1"]
    assert list(again.encode(score, style="fiddle")) == list(codec.encode(score, style="fiddle"))
    d = json.loads(path.read_text())
    d["vocab_sha256_16"] = "0" * 16
    (tmp_path / "bad.json").write_text(json.dumps(d))
    with pytest.raises(DataError, match="different vocabulary"):
        MusicCodec.load(tmp_path / "bad.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(DataError, match="corrupt"):
        MusicCodec.load(tmp_path / "junk.json")
    with pytest.raises(DataError, match="does not exist"):
        MusicCodec.load(tmp_path / "nothing.json")
    other = MusicCodec(MusicCodecConfig(positions_per_beat=8))
    assert other.vocab_hash() != codec.vocab_hash()


def test_config_validation():
    with pytest.raises(ConfigError):
        MusicCodecConfig(tokenization="CPWord")
    with pytest.raises(ConfigError):
        MusicCodecConfig(valence_edges=(0.5, 0.4, 0.6, 0.8))
    with pytest.raises(ConfigError):
        MusicCodecConfig.from_dict({"nonsense": 1})


def test_load_midi_refuses_bad_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_midi(tmp_path / "missing.mid")
    (tmp_path / "empty.mid").write_bytes(b"")
    with pytest.raises(DataError, match="is empty"):
        load_midi(tmp_path / "empty.mid")
    (tmp_path / "text.mid").write_text("hello, I am not music")
    with pytest.raises(DataError, match="not a MIDI file"):
        load_midi(tmp_path / "text.mid")
    good = _synthetic(drums=False)
    good.dump_midi(str(tmp_path / "good.mid"))
    data = (tmp_path / "good.mid").read_bytes()
    (tmp_path / "cut.mid").write_bytes(data[:30])
    with pytest.raises(DataError, match="corrupt"):
        load_midi(tmp_path / "cut.mid")
    silent = symusic.Score(480)
    silent.tracks.append(symusic.Track(program=0))
    silent.dump_midi(str(tmp_path / "silent.mid"))
    with pytest.raises(DataError, match="no notes"):
        load_midi(tmp_path / "silent.mid")
    assert load_midi(tmp_path / "good.mid").note_num() == 80
    with pytest.raises(DataError, match="folder"):
        load_midi(tmp_path)


def test_decode_to_midi_is_atomic(codec, tmp_path, monkeypatch):
    out = tmp_path / "piece.mid"
    out.write_bytes(b"old")
    ids = codec.encode(_synthetic(drums=False))

    def boom(self, path):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(symusic.core.ScoreTick, "dump_midi", boom)
    with pytest.raises(RuntimeError):
        codec.decode_to_midi(ids, out)
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["piece.mid"]


def test_every_token_name_is_read_by_one_parser(codec):
    """``token_value`` reads every token's name; the ids made from values come back to them."""
    from cadenza.codecs.music.vocab import token_value

    assert token_value("Pitch_61") == 61 and token_value("TimeSig_6/8") == (6, 8)
    assert token_value("Duration_1.2.8") == (1, 2, 8) and token_value("Mood_3.0") == (3, 0)
    assert token_value("Key_F#m") == "F#m" and token_value("Bar_None") is None
    for i in range(codec.vocab_size):
        kind, v = codec.token_type(i), codec.value(i)
        assert (v is None) == (kind in ("Bar", "PAD", "BOS", "EOS")), codec.token(i)
    assert all(codec.id(f"Pitch_{p}") == i for i, p in codec.pitch_ids().items())
    assert all(codec.mood_id(*codec.mood_levels_of(i)) == i for i in codec.ids_of_type("Mood"))
    assert all(codec.time_signature_id(*codec.value(i)) == i for i in codec.ids_of_type("TimeSig"))
