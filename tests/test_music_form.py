"""Form measures, the piece memory, pieces that end, and the mood that decides the mode."""

from __future__ import annotations

import numpy as np
import pytest
import symusic
import torch

import music_fixtures as mf
from cadenza.music.eval import form as fm
from cadenza.music.memory import PieceMemory, melody_before, short_term_dists

TPQ = 480


def _score(bars, key_pitches=None):
    """A one-track 4/4 score: ``bars`` is a list of bars, each a list of (beat, pitch)."""
    s = symusic.Score(TPQ)
    s.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    t = symusic.Track(name="melody", program=0)
    for b, notes in enumerate(bars):
        for beat, pitch in notes:
            t.notes.append(symusic.Note(b * 4 * TPQ + int(beat * TPQ), TPQ // 2, pitch, 80))
    s.tracks.append(t)
    return s


A = [(0, 60), (1, 62), (2, 64), (3, 60)]
B = [(0, 67), (2, 65)]
C = [(0, 64), (1.5, 62), (3, 60)]


def _up(bar, k):
    return [(beat, p + k) for beat, p in bar]


def test_bar_and_phrase_repeats_count_transposed_copies_and_nothing_else():
    s = _score([A, B, _up(A, 2), C, A, B, A, C])
    f = fm.form_of(s, "C")
    # bars 3 (A a tone up: a sequence), 5, 6, 7 and 8 repeat an earlier bar; 1, 2 and 4 are new
    assert f.bars == 8 and f.bar_repeats == pytest.approx(5 / 8)
    # phrases (1-2),(2-3),...: (5-6) repeats (1-2) with the same step between bars; (7-8) repeats (3-4)
    # only as bar patterns with a different step, so it does not count; (4-5) is new
    assert f.phrases == 7 and f.phrase_repeats == pytest.approx(1 / 7)
    assert f.tonic_ending is True and fm.form_of(s, "G").tonic_ending is False
    assert f.patterns_per_bar == pytest.approx(3 / 8)
    m = fm.similarity(s)
    assert m.shape == (8, 8) and (m == m.T).all() and m[0, 2] == 1 and m[0, 1] == 0


def test_form_counts_only_the_first_bars_asked_for_but_the_real_ending():
    s = _score([A, B, A, B, C])
    f = fm.form_of(s, "C", n_bars=2)
    assert f.bars == 2 and f.bar_repeats == 0 and f.tonic_ending is True   # C ends on C (bar 5)
    top = fm.top_line(_score([[(0, 60), (0, 67), (1, 64)]]))
    assert top.pitch.tolist() == [67, 64]                                   # the highest note per onset


def test_the_piece_memory_is_the_short_term_model_and_favours_what_the_piece_did():
    mel = [60, 62, 64, 65, 67, 65, 64, 62, 60, 62, 64, 65, 67, 65, 64]
    mem = PieceMemory(range(36, 97))
    stm = mem.next_pitch(mel)
    ref = short_term_dists(mel + [0], 6, 24, range(36, 97))[-1]
    np.testing.assert_allclose(stm, ref)
    flat = {p: 1 / 61 for p in range(36, 97)}
    mixed = mem.mix(flat, mel)
    assert max(mixed, key=mixed.get) == 62                       # the phrase goes on as before
    assert mem.mix(flat, mel[:2]) == flat                        # too short a melody: the network alone
    notes = [(0, 1, 60, 0, 80), (0, 1, 67, 0, 80), (480, 1, 40, 32, 80), (480, 1, 62, 0, 80), (960, 1, 36, -1, 80)]
    assert melody_before(notes, 0) == [67, 62]


@pytest.fixture(scope="module")
def mm():
    torch.set_num_threads(1)
    return mf.tiny_model()


def test_a_piece_that_ends_closes_near_its_length_on_the_tonic(mm):
    from cadenza.music.composition import compose
    from cadenza.bounds import CLOSE_EARLY, CLOSE_LATE

    for seed in range(1, 5):
        p = compose(mm, key="C", bars=4, seed=seed)
        assert 4 - CLOSE_EARLY <= p.bars <= 4 + CLOSE_LATE
        if p.stopped in ("eos", "tonic"):  # ended by the model, or on its last tonic: on the tonic
            assert fm.form_of(p.score(), "C").tonic_ending
        exact = compose(mm, key="C", bars=4, seed=seed, ending=False)
        assert exact.bars == 4 and exact.stopped in ("length", "eos")


def test_mood_draws_the_key_and_a_valence_switch_changes_the_mode(mm):
    from cadenza.codecs.music.key_table import key_table
    from cadenza.music.composition import compose
    from cadenza.music.modes import draw_key, is_minor, mode_of

    codec = mm.codec
    # a corpus where the darkest valence opens in minor keys and the brightest in major ones
    sad, happy = codec.mood_id(0, 2), codec.mood_id(4, 2)
    pieces = ([[codec.bos_id, codec.style_id("folk"), codec.key_id("Am"), 1, 1, codec.bar_ids()[0], sad]] * 3
              + [[codec.bos_id, codec.style_id("folk"), codec.key_id("G"), 1, 1, codec.bar_ids()[0], happy]] * 3)
    table = key_table(pieces, codec)
    assert table["counts"]["0"] == {"Am": 3}
    assert [mode_of(codec, lv) for lv in range(5)][::4] == ["minor", "major"]
    assert draw_key(table, 0, 5, "minor") == "Am" and draw_key(table, 4, 5, "major") == "G"
    assert draw_key(table, 4, 5, "minor") == "Am"      # no minor piece at that level: any level's
    mm.mood_keys = table
    try:
        p = compose(mm, valence=0.05, bars=4, seed=3)
        assert is_minor(p.conditioning["key"]) and p.settings["key_from_mood"] == p.conditioning["key"]
        # bright first, dark from bar 5 (the second segment): G major's third and sixth (B, E) become
        # B-flat and E-flat there, and only there
        q = compose(mm, key="G", valence="0.95,0.05@5", bars=8, seed=3, ending=False)
        nq = fm.notes_of(q.score())
        late = nq.pitch[nq.bar >= 4] % 12
        assert len(late) and not ({4, 11} & set(late.tolist()))
    finally:
        mm.mood_keys = None


def test_apply_modes_moves_only_the_other_modes_segments(mm):
    from cadenza.music.grammar import DUR, PITCH
    from cadenza.music.inputs import remi_for
    from cadenza.music.modes import apply_modes

    codec, remi = mm.codec, remi_for(mm.codec)
    bar, pos, dur = codec.bar_ids()[0], remi.pos_ids[0], next(i for i in range(remi.vocab_size) if remi.kind[i] == DUR)
    head = [codec.bos_id, codec.style_id("folk"), codec.key_id("G"), codec.tempo_id(96),
            codec.time_signature_id(4, 4)]
    body = []
    for b in range(8):          # one note per bar: B, E, F#, G (pitch classes 11, 4, 6, 7) in turn
        body += [bar] + ([codec.mood_id(2, 2)] if b % 4 == 0 else []) + [pos, remi.pitch_ids[(71, 64, 66, 67)[b % 4]],
                                                                           dur]
    ids = head + body
    out = apply_modes(remi, ids, {1: "minor"})      # the second segment (bars 5-8) in G minor
    pitches = [remi.value[t] for t in out if remi.kind[t] == PITCH]
    assert pitches == [71, 64, 66, 67, 70, 63, 66, 67]  # B->Bb, E->Eb from bar 5; F# (leading tone) stays
    assert apply_modes(remi, ids, {1: "major"}) == ids and apply_modes(remi, ids, {}) == ids
