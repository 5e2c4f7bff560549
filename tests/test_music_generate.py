"""The cadenza.music API with a tiny model trained on a few chorales: compose, continue,
harmonize, predict (seeds, conditioning, lengths, kept notes, probabilities)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from conftest import require

require("miditok")
require("music21")
symusic = require("symusic")
torch = require("torch")

import music_fixtures as mf  # noqa: E402

from cadenza.codecs.music import MOODS, note_tuples  # noqa: E402
from cadenza.errors import ConfigError, DataError  # noqa: E402
from cadenza.music.composition import compose, continue_piece  # noqa: E402
from cadenza.music.harmony import harmonize  # noqa: E402
from cadenza.codecs.music.names import duration_name, pitch_name  # noqa: E402
from cadenza.music.inputs import remi_for  # noqa: E402
from cadenza.music.predict import predict_next  # noqa: E402
from cadenza.music.grammar import DUR, TS, RemiState  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def mm():
    return mf.tiny_model()


@pytest.fixture(scope="module")
def melody_file(tmp_path_factory):
    return mf.write_midi_file(mf.melody_score(4), tmp_path_factory.mktemp("in") / "melody.mid")


def _quarters(piece):
    return note_tuples(piece.score())


# --------------------------------------------------------------------------- compose
def test_same_seed_same_piece_different_seed_different_piece(mm):
    a = compose(mm, bars=4, seed=11)
    b = compose(mm, bars=4, seed=11)
    c = compose(mm, bars=4, seed=12)
    assert a.ids == b.ids and note_tuples(a.score()) == note_tuples(b.score())
    assert a.ids != c.ids
    assert a.seed == 11 and a.generated_tokens == len(a.ids) - 2   # BOS in, EOS appended


def _moods(remi, ids):
    return RemiState(remi).feed_all(ids).moods


def test_conditioning_is_forced_and_the_rest_sampled_within_its_slot(mm):
    codec = mm.codec
    p = compose(mm, style="folk", key="Dm", tempo=100, time_signature="3/4", mood="sad", bars=6, seed=3)
    assert p.conditioning == {"style": "folk", "key": "Dm", "tempo": 96, "time_signature": "3/4"}
    assert p.tempo == 100.0                                   # the MIDI gets exactly the tempo asked for
    assert p.score().tempos[0].qpm == pytest.approx(100.0)
    remi = remi_for(codec)
    body_ts = {remi.value[i] for i in p.ids[5:] if remi.kind[i] == TS}
    assert body_ts <= {(3, 4)}                                # the metre holds in every bar
    assert {(ts.numerator, ts.denominator) for ts in p.score().time_signatures} == {(3, 4)}
    moods = _moods(remi, p.ids)
    assert [m[0] for m in moods] == list(range(0, p.bars, remi.segment_bars))   # a Mood per segment
    assert {m[1:] for m in moods} == {MOODS["sad"]}           # each forced to "sad"
    q = compose(mm, valence=0.95, energy=0.05, bars=1, seed=4)
    assert {m[1:] for m in _moods(remi, q.ids)} == {(4, 0)}
    free = compose(mm, bars=1, seed=5)                        # nothing given: the model fills each slot
    assert set(free.conditioning) == {"style", "key", "tempo", "time_signature"}
    for slot, i in zip(("style", "key", "tempo", "time_signature"), free.ids[1:5]):
        assert i in codec.slot_ids(slot)


def test_controls_change_mid_piece_from_the_next_segment(mm):
    remi = remi_for(mm.codec)
    p = compose(mm, energy="0.1,0.9@5", valence=[(1, 0.9), (9, 0.1)], bars=12, seed=8)
    moods = _moods(remi, p.ids)
    assert [(m[0], m[2]) for m in moods][:3] == [(0, 0), (4, 4), (8, 4)][:len(moods)]
    assert [(m[0], m[1]) for m in moods][:3] == [(0, 4), (4, 4), (8, 0)][:len(moods)]
    assert len(moods) == (p.bars + remi.segment_bars - 1) // remi.segment_bars
    with pytest.raises(ConfigError, match="energy"):
        compose(mm, energy="0.1,high@5")
    with pytest.raises(ConfigError, match="BAR"):
        compose(mm, energy="0.1,0.9@0")


@pytest.mark.parametrize("bars", [1, 3])
@pytest.mark.parametrize("ending", [False, True])
def test_length_in_bars(mm, bars, ending):
    from cadenza.bounds import CLOSE_EARLY, CLOSE_LATE

    p = compose(mm, bars=bars, seed=bars, time_signature="4/4", tempo=120, ending=ending)
    remi = remi_for(mm.codec)
    most = bars + (CLOSE_LATE if ending else 0)
    assert sum(1 for i in p.ids if i == remi.bar) == p.bars <= most
    if p.stopped == "length":
        assert p.bars == most
    else:
        assert p.bars >= (max(1, bars - CLOSE_EARLY) if ending else bars)
    end = Fraction(4 * most)
    assert all(n[0] < end for n in _quarters(p))              # nothing starts after the last bar


def test_length_in_seconds(mm):
    bars_seen = []
    p = compose(mm, seconds=6, tempo=120, time_signature="4/4", seed=2, on_bar=lambda n, t: bars_seen.append((n, t)))
    onsets = [n[0] for n in _quarters(p)]
    assert onsets and max(onsets) < 12          # 6 s at 120 bpm = 12 quarter notes
    if p.stopped == "length":
        assert p.bars == 3                      # bar 4 would start at exactly 6 s
    assert [n for n, _ in bars_seen] == list(range(1, len(bars_seen) + 1))
    assert p.first_bar_s == bars_seen[0][1] <= p.elapsed_s
    assert all(t1 <= t2 for (_, t1), (_, t2) in zip(bars_seen, bars_seen[1:]))


@pytest.mark.parametrize("kwargs, words", [
    (dict(bars=0), "bars"), (dict(bars=3, seconds=2), "not both"), (dict(seconds=-1), "seconds"),
    (dict(seconds=1e6), "seconds"), (dict(tempo=5), "tempo"), (dict(tempo=1000), "tempo"),
    (dict(style="jazz-fusion"), "style"), (dict(mood="angry"), "mood"), (dict(key="H#"), "key"),
    (dict(valence=1.5), "valence"), (dict(temperature=-1), "temperature"), (dict(top_p=0), "top-p"),
    (dict(time_signature="7/3"), "time signature"), (dict(seed=-3), "seed"),
])
def test_bad_settings_raise_one_clear_sentence(mm, kwargs, words):
    with pytest.raises(ConfigError) as err:
        compose(mm, **kwargs)
    msg = str(err.value)
    assert words in msg and "\n" not in msg


# --------------------------------------------------------------------------- continue
def test_continue_keeps_the_input_exactly_and_adds_after_it(mm, tmp_path):
    codec = mm.codec
    src = mf.write_midi_file(mf.excerpt_score(3), tmp_path / "in.mid")
    kept = note_tuples(codec.quantize(symusic.Score(str(src))))
    p = continue_piece(mm, src, bars=2, seed=1, ending=False)
    out = note_tuples(p.score())
    last = max(n[0] for n in kept)
    assert [n for n in out if n[0] <= last] == kept           # the first part is the input, unchanged
    new = [n for n in out if n[0] > last]
    assert new, "the continuation added no notes"
    assert {n[4] for n in new} <= {n[4] for n in kept}        # the input's instruments only
    remi = remi_for(codec)
    st = RemiState(remi).feed_all(p.ids[:p.input_tokens])
    assert p.bars - st.bars <= 2                              # at most 2 new bar lines
    tracks = {t.name.split(" (")[0]: len(t.notes) for t in p.score().tracks}
    assert tracks["input: in.mid"] == len(kept) and tracks["Cadenza continuation"] == len(new)


def test_continue_keeps_the_metre_and_slides_past_the_context(mm, tmp_path):
    """A 3/4 input longer than the model's context (512 tokens): it still continues in 3/4."""
    s = mf.corpus_scores()[4].copy()     # bwv227.1: over a thousand tokens
    s.time_signatures.clear()
    s.time_signatures.append(symusic.TimeSignature(0, 3, 4))
    ids = mm.codec.encode(s)
    assert len(ids) > mm.network.config.max_len
    p = continue_piece(mm, s, bars=2, seed=2)
    remi = remi_for(mm.codec)
    assert p.ids[2:p.input_tokens] == [int(i) for i in ids[2:-1]]     # all but the style, which is inferred
    assert mm.codec.token(p.ids[1]) in {f"Style_{st}" for st in mm.codec.offered_styles()}
    new_ts = {remi.value[i] for i in p.ids[p.input_tokens:] if remi.kind[i] == TS}
    assert new_ts <= {(3, 4)} and p.generated_tokens > 0


# --------------------------------------------------------------------------- harmonize
def test_harmonize_keeps_every_melody_note_and_adds_voices_below(mm, melody_file):
    codec = mm.codec
    melody = note_tuples(codec.quantize(symusic.Score(str(melody_file))))
    p = harmonize(mm, melody_file, voices=3, seed=5)
    out = note_tuples(p.score())
    assert set(melody) <= set(out)                            # every melody note, unchanged
    added = sorted(set(out) - set(melody))
    assert len(added) >= len(melody)                          # voices were added
    first, end = min(m[0] for m in melody), max(m[0] + m[1] for m in melody)
    for on, dur, pitch, _, _ in added:                        # ... below the melody sounding then
        assert first <= on < end                              # ... while the melody plays
        above = [m[2] for m in melody if m[0] <= on < m[0] + m[1]]
        if above:
            assert pitch < min(above)
    for on, _, pitch, _, _ in melody:                         # a full chord under every melody note
        sounding = [a for a in added if a[0] <= on < a[0] + a[1]]
        assert len(sounding) == 3, f"{len(sounding)} voices under the melody note at {on}"
    tracks = {t.name.split(" (")[0]: note_tuples_of(t) for t in p.score().tracks}
    assert len(tracks["melody: melody.mid"]) == len(melody)
    assert len(tracks["Cadenza harmony"]) == len(added)


def note_tuples_of(track):
    return [(n.time, n.pitch) for n in track.notes]


def test_harmonize_is_reproducible_and_validates(mm, melody_file):
    a = harmonize(mm, melody_file, voices=2, seed=9)
    b = harmonize(mm, melody_file, voices=2, seed=9)
    assert a.ids == b.ids
    with pytest.raises(ConfigError):
        harmonize(mm, melody_file, voices=0)
    drums = symusic.Score(480)
    kit = symusic.Track(program=0, is_drum=True)
    kit.notes.append(symusic.Note(0, 240, 36, 100))
    drums.tracks.append(kit)
    with pytest.raises(DataError, match="drum"):
        harmonize(mm, drums)


# --------------------------------------------------------------------------- predict
def test_predict_probabilities_are_the_models_own(mm, melody_file):
    """The table's numbers equal a brute-force computation with full forward passes (no cache)."""
    codec, model = mm.codec, mm.network
    remi = remi_for(codec)
    pred = predict_next(mm, melody_file, top=128, memory=False)
    mixed = predict_next(mm, melody_file, top=128)             # with the piece memory: still a distribution,
    assert sum(n.probability for n in mixed.notes) == pytest.approx(1.0, abs=1e-4)   # and the network's own kept
    assert {n.pitch: n.network_probability for n in mixed.notes} == pytest.approx(
        {n.pitch: n.probability for n in pred.notes})
    assert [n.pitch for n in mixed.notes] != [n.pitch for n in pred.notes]   # the memory changes the ranking
    probs = [n.probability for n in pred.notes]
    assert probs == sorted(probs, reverse=True)
    assert len(probs) == len(remi.pitch_ids)
    assert sum(probs) == pytest.approx(1.0, abs=1e-4)          # over every pitch: a distribution
    assert 0 < pred.coverage <= 1 and 0 <= pred.p_end <= 1 and 0 <= pred.p_same_onset <= 1

    from cadenza.music.inputs import infer_style

    style = infer_style(mm, symusic.Score(str(melody_file)))
    ids = [int(i) for i in codec.encode(symusic.Score(str(melody_file)), style=style)][:-1]
    st = RemiState(remi).feed_all(ids)

    def full(tokens):
        with torch.no_grad():
            return torch.softmax(model(torch.tensor([tokens]))[0, -1], -1)

    p0 = full(ids)
    npos = remi.bar_positions(st.ts)
    timing = {("same", q): float(p0[remi.pos_ids[q]]) for q in range(st.pos + 1, npos)}
    after_bar = [remi.bar]
    if st.bars % remi.segment_bars == 0:                       # the next bar opens a segment
        pm = full(ids + [remi.bar])
        after_bar.append(max(remi.mood_ids.values(), key=lambda i: float(pm[i])))
    p1 = full(ids + after_bar)
    z = sum(float(p1[remi.pos_ids[q]]) for q in range(npos))
    timing.update({("next", q): float(p0[remi.bar]) * float(p1[remi.pos_ids[q]]) / z for q in range(npos)})
    total = sum(timing.values())
    best = max(timing, key=timing.get)
    assert pred.onsets[0][1] == pytest.approx(timing[best] / total, rel=1e-3)
    prefix = [remi.pos_ids[best[1]]] if best[0] == "same" else after_bar + [remi.pos_ids[best[1]]]
    pp = full(ids + prefix)                                    # the instrument in force needs no Program
    zp = sum(float(pp[i]) for i in remi.pitch_ids.values())
    one = predict_next(mm, melody_file, top=3, max_onsets=1, memory=False)   # then a probability is P(pitch | that onset)
    assert one.coverage == pytest.approx(timing[best] / total, rel=1e-3)
    for n in one.notes:
        assert n.probability == pytest.approx(float(pp[remi.pitch_ids[n.pitch]]) / zp, rel=1e-3)
        assert n.name == pitch_name(n.pitch) and n.duration == duration_name(n.duration_quarters)
    # the most likely duration right after the pitch, also by brute force
    n = one.notes[0]
    pd = full(ids + prefix + [remi.pitch_ids[n.pitch]])
    dur_ids = [i for i in range(remi.vocab_size) if remi.kind[i] == DUR]
    d = max(dur_ids, key=lambda i: float(pd[i]))
    assert n.duration_quarters == remi.duration_quarters(d, st.ts[1])
    assert n.duration_probability == pytest.approx(float(pd[d]) / sum(float(pd[i]) for i in dur_ids), rel=1e-3)
    # the public distribution is the same numbers, over every pitch
    from cadenza.music.predict import next_pitch_distribution

    dist = next_pitch_distribution(mm, melody_file, memory=False)
    assert set(dist) == set(remi.pitch_ids) and sum(dist.values()) == pytest.approx(1.0, abs=1e-6)
    assert [dist[n.pitch] for n in pred.notes[:5]] == pytest.approx([n.probability for n in pred.notes[:5]])
    both = next_pitch_distribution(mm, melody_file)
    assert [both[n.pitch] for n in mixed.notes[:5]] == pytest.approx([n.probability for n in mixed.notes[:5]])


def test_predict_reads_the_context(mm, tmp_path):
    """Different inputs give different predictions (the model is conditioned on the notes)."""
    a = mf.write_midi_file(mf.melody_score(2), tmp_path / "a.mid")
    b = mf.write_midi_file(mf.excerpt_score(2), tmp_path / "b.mid")
    pa, pb = predict_next(mm, a, top=5), predict_next(mm, b, top=5)
    assert [n.probability for n in pa.notes] != [n.probability for n in pb.notes]
    with pytest.raises(ConfigError):
        predict_next(mm, a, top=0)


def test_names():
    assert pitch_name(60) == "C4" and pitch_name(69) == "A4" and pitch_name(61) == "C#4"
    assert duration_name(Fraction(3, 2)) == "dotted quarter" and duration_name(Fraction(1, 3)) == "eighth triplet"
    assert duration_name(Fraction(5, 2)) == "2 1/2 quarters"


def test_continue_for_seconds(mm, tmp_path):
    src = mf.write_midi_file(mf.excerpt_score(2), tmp_path / "in.mid")
    kept = note_tuples(mm.codec.quantize(symusic.Score(str(src))))
    last = max(n[0] for n in kept)
    p = continue_piece(mm, src, seconds=3, seed=4)
    limit = last + Fraction(3 * p.tempo / 60).limit_denominator(1000)     # 3 s at the input's tempo, in quarters
    new = [n for n in note_tuples(p.score()) if n[0] > last]
    assert new and all(n[0] < limit for n in new)


def test_predict_leaves_torchs_global_generator_alone(mm, melody_file):
    """Predicting only reads: a caller's torch.manual_seed still decides what comes after it."""
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    predict_next(mm, melody_file, top=3)
    assert torch.equal(torch.rand(3), expected)


# --------------------------------------------------------------------------- harmonize: textures, --keep, bits
def _two_voices(n_bars: int = 3):
    """Soprano and bass of a chorale (two tracks), the first n_bars bars."""
    return mf.chorale_voices(n_bars, [(0, "soprano"), (3, "bass")])


def test_harmonize_takes_one_to_four_voices(mm, melody_file):
    from cadenza.music.preflight import MAX_VOICES

    assert MAX_VOICES == 4
    for bad in (0, 5, 2.0, True):
        with pytest.raises(ConfigError, match="from 1 to 4"):
            harmonize(mm, melody_file, voices=bad)
    p = harmonize(mm, melody_file, voices=1, seed=3)
    melody = note_tuples(mm.codec.quantize(symusic.Score(str(melody_file))))
    added = sorted(set(note_tuples(p.score())) - set(melody))
    assert added and all(sum(a[0] <= on < a[0] + a[1] for a in added) <= 1 for on, *_ in added)


def test_harmonize_chorale_rules_hold_on_the_melody_onsets(mm, melody_file):
    """The chorale texture (style bach): at every melody onset but the cadence's two, each new
    note is consonant with the melody (a fourth counts); the last chord has the tonic in the bass."""
    from cadenza.codecs.music.features import parse_key
    from cadenza.music.chords import CONSONANT, interval_class
    from cadenza.music.harmony_policy import final_root

    melody = note_tuples(mm.codec.quantize(symusic.Score(str(melody_file))))
    onsets = sorted({m[0] for m in melody})
    shares = {}
    for texture in ("chorale", "free"):
        ok = total = 0
        for seed in (1, 2):
            p = harmonize(mm, melody_file, voices=3, seed=seed, texture=texture)
            assert p.settings["texture"] == texture
            added = sorted(set(note_tuples(p.score())) - set(melody))
            for on, _, pitch, _, _ in added:
                if on in onsets[:-2]:
                    top = min(m[2] for m in melody if m[0] == on)
                    total += 1
                    ok += interval_class(pitch, top) in CONSONANT | {5}
            if texture == "chorale":
                tonic, mode = parse_key(p.conditioning["key"])
                root = final_root(tonic, mode == "minor", max(melody)[2])
                end = max(a[0] for a in added)
                bass = min(a[2] for a in added if a[0] <= end < a[0] + a[1])
                assert bass % 12 == root
        shares[texture] = ok / total
    assert shares["chorale"] == 1.0 and shares["free"] < 1.0


def test_harmonize_folk_writes_block_chords_on_strong_beats(mm, melody_file):
    p = harmonize(mm, melody_file, voices=3, style="folk", seed=4)
    assert p.settings["texture"] == "chords"
    melody = note_tuples(mm.codec.quantize(symusic.Score(str(melody_file))))
    added = sorted(set(note_tuples(p.score())) - set(melody))
    first = min(m[0] for m in melody)                   # note_tuples: quarters
    assert added and all(on == first or on % 2 == 0 for on, *_ in added)      # beats 1 and 3 of 4/4
    assert any(m[0] % 2 for m in melody if m[0] != first)                    # the melody moves between them


def test_harmonize_keeps_lower_voices_with_keep_and_drops_them_without(mm):
    score = _two_voices()
    given = note_tuples(mm.codec.quantize(score))
    only_bass = score.copy()
    del only_bass.tracks[0]
    bass = note_tuples(mm.codec.quantize(only_bass))
    p = harmonize(mm, score, voices=3, seed=6, keep=True)
    out = note_tuples(p.score())
    assert set(given) <= set(out) and p.settings["keep"] and p.settings["dropped_notes"] == 0
    added = sorted(set(out) - set(given))
    assert added
    soprano = [n for n in given if n not in bass]
    for on, *_ in soprano:         # kept and added voices together: at most 3 under the soprano
        assert sum(n[0] <= on < n[0] + n[1] for n in bass + added) <= 3
    names = [t.name for t in p.score().tracks]
    assert "melody and kept voices" in names and "Cadenza harmony" in names
    q = harmonize(mm, score, voices=3, seed=6)
    assert q.settings["dropped_notes"] == len(score.tracks[1].notes)
    assert not set(bass) <= set(note_tuples(q.score()))


def test_harmony_bits_are_the_models_own_under_the_policy(mm):
    """Bits on given voices: the plain figure equals a full forward pass over the same tokens,
    and renormalizing over what the policy allows only ever makes a token likelier."""
    import math

    from cadenza.music.harmony import harmony_bits
    from cadenza.music.load import load_model

    exact = load_model(mf.tiny_model_dir(), decode_weights="float32")
    full = _two_voices(2)
    melody = full.copy()
    melody.tracks.clear()
    melody.tracks.append(full.tracks[0].copy())
    b = harmony_bits(exact, melody, full, voices=3)
    assert b["notes"] == len(full.tracks[1].notes) and b["tokens"] > b["forced"] > 0
    assert 0 < b["bits_per_note"] <= b["plain_bits_per_note"]
    # the plain bits again, from one forward pass over prefix + body (no cache, no policy)
    from cadenza.music.harmony import _Setup, _on_program

    setup = _Setup(exact, melody, 3, "bach", False, None)
    whole = [int(i) for i in exact.codec.encode(_on_program(full, setup.program), style="bach")]
    _, start = exact.codec.parse_prefix(whole)
    ids = setup.prefix + whole[start:]
    with torch.inference_mode():
        logp = torch.log_softmax(exact.network(torch.tensor([ids[:-1]])).float(), dim=-1)[0]
    state = RemiState(remi_for(exact.codec), record=True).feed_all(setup.prefix)
    plain = 0.0
    for j in range(len(setup.prefix), len(ids)):
        if int(setup.policy.allowed(state).sum()) > 1 or not bool(setup.policy.allowed(state)[ids[j]]):
            plain -= float(logp[j - 1, ids[j]]) / math.log(2)
        state.feed(ids[j])
    assert b["plain_bits_per_note"] == pytest.approx(plain / b["notes"], rel=1e-3)
