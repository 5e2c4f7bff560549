"""Harmony under a melody (issue 28): the measures on hand-made chords with known answers,
the rule-based baseline, and the rules of the harmony policy on hand-made token states (no
model)."""

from __future__ import annotations

import pytest
from conftest import require

from cadenza.music.chords import continue_voices, is_chord, is_parallel
from cadenza.music.eval import harmony as hm
from cadenza.music.eval.triads import triad_baseline

Q = 480          # ticks per quarter in the hand-made textures


def tex(melody, added, key=(0, "major"), sigs=((0, 4, 4),)):
    """Notes as (onset, end, pitch) in quarters."""
    def line(rows):
        return hm.Line.of([(int(a * Q), int(b * Q), p) for a, b, p in rows])

    return hm.Texture(line(melody), line(added), Q, tuple(sigs), key)


# --------------------------------------------------------------------------- pitch-class facts
def test_chords_and_parallels():
    assert is_chord([60, 64, 67]) and is_chord([60, 63, 67, 70]) and is_chord([71, 77])      # C, Cm7, B-F (Bdim)
    assert not is_chord([60, 62]) and not is_chord([60, 62, 64]) and not is_chord([60, 61, 67])
    assert is_chord([60, 64, 67, 70]) and not is_chord([60, 64, 67, 70], sevenths=False)
    assert is_parallel(60, 62, 67, 69) and is_parallel(48, 50, 60, 62)          # fifths; octaves
    assert not is_parallel(60, 62, 67, 65) and not is_parallel(60, 60, 67, 69)  # contrary; oblique
    assert not is_parallel(60, 62, 64, 66)                                      # parallel thirds are fine
    assert continue_voices([48, 55, 64], [50, 57, 62]) == [(48, 50), (55, 57), (64, 62)]
    assert continue_voices([48, 64], [62]) == [(64, 62)]
    assert continue_voices([60], [48, 59]) == [(None, 48), (60, 59)]


# --------------------------------------------------------------------------- the measures
def test_consonance_counts_each_added_note_against_the_melody_at_its_onset():
    t = tex([(0, 4, 72)], [(0, 1, 60), (0, 1, 64), (0, 1, 65), (1, 2, 67), (1, 2, 62), (2, 3, 71), (3, 4, 74)])
    c = hm.consonance(t)          # octave, m6, fifth: consonant; fourth; m7 and M7 dissonant; one above
    assert c == {"added": 7, "measured": 7, "consonant": 3, "fourth": 1, "above": 1, "under_rest": 0}
    rest = tex([(0, 1, 72)], [(2, 3, 60)])
    assert hm.consonance(rest)["under_rest"] == 1 and hm.consonance(rest)["measured"] == 0


def test_chord_fit_per_beat():
    t = tex([(0, 1, 72), (1, 2, 74), (2, 3, 76), (3, 4, 72)],
            [(0, 1, 64), (0, 1, 55), (1, 2, 60), (1, 2, 64), (2, 3, 64), (3, 4, 58), (3, 4, 64)])
    # beat 1: C E G (triad); beat 2: D C E (cluster); beat 3: E alone twice (one pitch class);
    # beat 4: C Bb E (C7 without its fifth)
    assert hm.chord_fit(t) == {"beats": 4, "fit": 3}
    assert hm.beats(t).tolist() == [0, Q, 2 * Q, 3 * Q]
    assert hm.beats(tex([(0, 3, 72)], [], sigs=((0, 6, 8),))).tolist() == [j * Q // 2 for j in range(6)]


def test_parallels_between_any_two_voices():
    # the melody C5 -> D5 over F4 -> G4 (fifths) and C3 -> D3 (octaves, two octaves down)
    t = tex([(0, 1, 72), (1, 2, 74)], [(0, 1, 65), (1, 2, 67), (0, 1, 48), (1, 2, 50)])
    v = hm.follow_voices(t, 2)
    assert hm.parallels(t, v) == {"fifths": 1, "octaves": 1}
    # contrary motion in the bass, and a voice that rests before moving, are not parallels
    ok = tex([(0, 1, 72), (1, 2, 74)], [(0, 1, 65), (1, 2, 62), (0, 0.5, 48), (1, 2, 50)])
    assert hm.parallels(ok, hm.follow_voices(ok, 2)) == {"fifths": 0, "octaves": 0}


def test_voices_crossings_spacing_and_ranges():
    # a bass held under the melody; the upper voice moves from G4 to C3, below the held bass
    t = tex([(0, 2, 72)], [(0, 2, 52), (0, 1, 67), (1, 2, 48)])
    v = hm.follow_voices(t, 2)
    assert v.crossings == 1 and [len(x) for x in v.notes] == [1, 2]
    wide = tex([(0, 1, 84)], [(0, 1, 48), (0, 1, 55)])         # the upper voice 29 semitones under the melody
    assert hm.follow_voices(wide, 2).spacing == 1
    r = hm.voice_ranges(hm.follow_voices(tex([(0, 2, 72)], [(0, 1, 36), (1, 2, 43), (0, 2, 55), (0, 2, 64)]), 3))
    assert r[0]["low"] == 36 and r[0]["high"] == 43 and r[0]["outside_usual"] == 0.5


@pytest.mark.parametrize("added, key, want", [
    ([(0, 1, 48), (0, 1, 64), (0, 1, 67)], (0, "major"), True),       # C E G under C: root in the bass
    ([(0, 1, 52), (0, 1, 55), (0, 1, 60)], (0, "major"), False),      # first inversion
    ([(0, 1, 45), (0, 1, 61), (0, 1, 64)], (9, "minor"), True),       # A major ending in A minor (Picardy)
    ([(0, 1, 43), (0, 1, 59), (0, 1, 62)], (0, "major"), False),      # ends on the dominant
])
def test_final_chord_is_the_tonic_with_its_root_in_the_bass(added, key, want):
    melody = [(0, 1, 72)] if key[0] == 0 else [(0, 1, 69)]
    assert hm.final_chord(tex(melody, added, key))["tonic"] is want


def test_measures_pool_by_summing():
    a = hm.measure(tex([(0, 1, 72), (1, 2, 74)], [(0, 1, 65), (1, 2, 67)]), 1)
    b = hm.measure(tex([(0, 1, 72)], [(0, 1, 60), (0, 1, 64)]), 2)
    s = hm.summarize([a, b])
    assert s["added_notes"] == 4 and s["consonant"] == 1.0 and s["parallel_fifths_per_100_beats"] == 100 / 3


def test_triad_baseline_puts_diatonic_triads_with_the_root_in_the_bass_on_strong_beats():
    melody = [(0, 1, 72), (1, 2, 71), (2, 3, 69), (3, 4, 67), (4, 6, 65), (6, 8, 72)]
    t = tex(melody, [])
    added = triad_baseline(t, voices=3)
    assert sorted(set(added.onset.tolist())) == [0, 2 * Q, 4 * Q, 6 * Q]
    for on in set(added.onset.tolist()):
        chord = sorted(p for o, p in zip(added.onset.tolist(), added.pitch.tolist()) if o == on)
        top = int(t.melody.sounding(on).min())
        assert len(chord) == 3 and all(p < top for p in chord)
        assert is_chord([*chord, top], sevenths=False)
    final = hm.final_chord(hm.Texture(t.melody, added, Q, t.sigs, (0, "major")))
    assert final["tonic"] is True


# --------------------------------------------------------------------------- the policy's rules
require("miditok")
symusic = require("symusic")
require("torch")


@pytest.fixture(scope="module")
def setting():
    """A 4/4 bar C5 D5 E5 C5 (quarters) encoded; (remi, prefix, body, melody notes)."""
    import music_fixtures as mf

    from cadenza.music.grammar import RemiState
    from cadenza.music.inputs import remi_for

    codec = mf.codec()
    s = symusic.Score(Q)
    s.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    s.tempos.append(symusic.Tempo(0, qpm=100))
    tr = symusic.Track(program=0)
    for i, p in enumerate((72, 74, 76, 72)):
        tr.notes.append(symusic.Note(i * Q, Q, p, 80))
    s.tracks.append(tr)
    ids = [int(i) for i in codec.encode(s, style="bach")][:-1]
    _, start = codec.parse_prefix(ids)
    remi = remi_for(codec)
    notes = RemiState(remi, record=True).feed_all(ids).notes
    return codec, remi, ids[:start], ids[start:], notes


def _policy(setting, texture):
    from cadenza.music.harmony_policy import HarmonyPolicy, parse_melody
    from cadenza.music.textures import TEXTURES

    codec, remi, prefix, body, notes = setting
    bars = parse_melody(remi, body, (4, 4))
    return HarmonyPolicy(remi, bars, notes, 3, 0, texture=TEXTURES[texture], tonic=0)


def _state_after(setting, policy, plan):
    """Feed the prefix, then follow the policy, taking at each choice the token ``plan`` picks
    (a function of the state and the allowed ids) until it returns None."""
    from cadenza.music.grammar import RemiState

    codec, remi, prefix, body, notes = setting
    st = RemiState(remi, record=True).feed_all(prefix)
    for _ in range(200):
        allowed = [int(i) for i in policy.allowed(st).nonzero().flatten()]
        tok = allowed[0] if len(allowed) == 1 else plan(st, allowed)
        if tok is None:
            return st
        st.feed(tok)
    raise AssertionError("the plan never stopped")


def _plan(remi, acc: dict, stop_at: int):
    """Acc notes {onset ticks: [(pitch, duration ticks)]}: write them, then the melody; stop after
    the Position of onset ``stop_at`` (ticks)."""
    from cadenza.music.grammar import DUR, PITCH, POS, VEL

    def plan(st, allowed):
        kinds = {remi.kind[i] for i in allowed}
        if st.last == POS and st.onset == stop_at:
            return None
        if PITCH in kinds and st.last in (POS, DUR):
            done = {n[2] for n in st.notes if n[0] == st.onset}
            for p, _ in acc.get(st.onset, []):
                if p not in done and remi.pitch_ids[p] in allowed:
                    return remi.pitch_ids[p]
            mel = [i for i in allowed if remi.kind[i] == PITCH and remi.value[i] >= 72]
            if mel:
                return mel[0]
        if DUR in kinds and st.last in (PITCH, VEL):
            want = dict(acc.get(st.onset, [])).get(st.pitch, 0)       # other notes: the shortest
            durs = [i for i in allowed if remi.kind[i] == DUR]
            return min(durs, key=lambda i: abs(remi.duration_ticks(i, 4) - want))
        if VEL in kinds and st.last == PITCH:
            return next(i for i in allowed if remi.kind[i] == VEL)
        pos = [i for i in allowed if remi.kind[i] == POS]
        later = [i for i in pos if st.bar_start + remi.value[i] * remi.position_ticks(4) in acc or
                 st.bar_start + remi.value[i] * remi.position_ticks(4) == stop_at]
        return (later or pos or allowed)[0]
    return plan


def test_chorale_rules_take_away_parallels_bare_fourths_and_dissonances(setting):
    codec, remi, *_ = setting
    T = remi.tpq
    for texture, strict in (("chorale", True), ("free", False)):
        pol = _policy(setting, texture)
        # F4 under C5 on beat 1 (a fifth); stop at beat 2, where the melody moves to D5
        st = _state_after(setting, pol, _plan(remi, {0: [(65, T)]}, stop_at=T))
        allowed = set(pol._acc_pitches(st))
        assert 65 in allowed                                   # F under D: a sixth, D minor
        assert (67 in allowed) is not strict                   # G: parallel fifths with F-C -> G-D
        assert (69 in allowed) is not strict                   # A: a fourth under D with nothing below it
        assert (64 in allowed) is not strict                   # E: a seventh under D
        assert all(p < 74 for p in allowed)                    # always below the melody


def test_chorale_rules_keep_a_held_note_from_clashing_with_the_next_melody_note(setting):
    from cadenza.music.grammar import DUR, PITCH, VEL

    codec, remi, *_ = setting
    T = remi.tpq

    def plan(st, allowed):          # write C4 under C5, stop where its duration is chosen
        if st.pitch == 60 and st.last in (PITCH, VEL) and any(remi.kind[i] == DUR for i in allowed):
            return None
        if st.last == PITCH:
            return next(i for i in allowed if remi.kind[i] == VEL)
        return remi.pitch_ids[60] if remi.pitch_ids[60] in allowed else allowed[0]

    for texture, strict in (("chorale", True), ("free", False)):
        pol = _policy(setting, texture)
        st = _state_after(setting, pol, plan)
        durs = [int(i) for i in pol.allowed(st).nonzero().flatten() if remi.kind[int(i)] == DUR]
        longest = max(remi.duration_ticks(i, 4) for i in durs)   # held into beat 2: a ninth under D5
        assert (longest <= T) is strict


def test_the_cadence_ends_on_the_tonic_with_its_root_in_the_bass(setting):
    codec, remi, *_ = setting
    T = remi.tpq
    pol = _policy(setting, "chorale")
    st = _state_after(setting, pol, _plan(remi, {0: [(60, T)], T: [(65, T)], 2 * T: [(55, T)]}, stop_at=3 * T))
    allowed = set(pol._acc_pitches(st))
    assert allowed and all(p % 12 == 0 for p in allowed)     # nothing sounds yet: the tonic C goes in the bass


def test_final_root_follows_the_key_unless_the_melody_ends_outside_its_tonic_triad():
    from cadenza.music.harmony_policy import final_root

    assert final_root(0, False, 72) == 0 and final_root(0, False, 76) == 0 and final_root(0, False, 67) == 0
    assert final_root(2, True, 67) == 7          # D minor estimated, the melody ends on G: G
    assert final_root(4, True, 67) == 7          # E minor estimated, the melody ends on G: G major
    assert final_root(4, False, 68) == 4         # E major ending on its third
