"""The REMI grammar tracker and policies agree with the codec on real and synthetic pieces."""

from __future__ import annotations

from fractions import Fraction

import pytest
from conftest import require

require("miditok")
require("music21")
symusic = require("symusic")
torch = require("torch")

import music_fixtures as mf  # noqa: E402

from cadenza.codecs.music import note_tuples  # noqa: E402
from cadenza.music.grammar import (BAR, DUR, MOOD, VEL, GrammarConstraint, GrammarPolicy, RemiTables,  # noqa: E402
                                   RemiState)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def remi():
    return RemiTables(mf.codec())


def _metre_piece(num, den):
    s = symusic.Score(480)
    s.time_signatures.append(symusic.TimeSignature(0, num, den))
    s.tempos.append(symusic.Tempo(0, qpm=90))
    t = symusic.Track(program=40)
    steps = [480, 240, 160, 160, 160, 720, 240, 960]
    time = 0
    for i in range(24):
        d = steps[i % len(steps)]
        t.notes.append(symusic.Note(time, d, 60 + i % 12, 80))
        time += d
    s.tracks.append(t)
    return s


def _state_notes(remi, ids):
    st = RemiState(remi, record=True).feed_all(ids)
    return sorted((Fraction(on, remi.tpq), Fraction(d, remi.tpq), p, prog) for on, d, p, prog, _ in st.notes), st


@pytest.mark.parametrize("which", ["chorale", "3/4", "6/8", "5/8"])
def test_state_times_match_the_decoded_notes(remi, which):
    c = mf.codec()
    score = mf.corpus_scores()[0] if which == "chorale" else _metre_piece(*map(int, which.split("/")))
    ids = [int(i) for i in c.encode(score)]
    got, st = _state_notes(remi, ids)
    decoded = sorted((n[0], n[1], n[2], n[4]) for n in note_tuples(c.decode(ids)))
    assert got == decoded
    assert st.bars == sum(1 for i in ids if i == remi.bar)
    assert st.ended


def test_notes_and_moods_are_named_records(remi):
    """A recorded note says what each number is (onset, duration, pitch, program, velocity)
    and a segment's Mood token its bar, valence and energy: the 3/4 piece's first note is
    C4 on the viola (program 40) at tick 0, a quarter long."""
    c = mf.codec()
    ids = [int(i) for i in c.encode(_metre_piece(3, 4))]
    st = RemiState(remi, record=True).feed_all(ids)
    first = st.notes[0]
    assert (first.onset, first.duration, first.pitch, first.program) == (0, remi.tpq, 60, 40)
    assert first.velocity == remi.value[next(i for i in ids if remi.kind[i] == VEL)]
    assert first.key == (0, 60, 40) and st.last_note.pitch == 60 + 23 % 12
    assert [m.bar for m in st.moods] == list(range(0, st.bars, remi.segment_bars))
    assert all(remi.value[i] == (m.valence, m.energy)
               for m, i in zip(st.moods, (i for i in ids if remi.kind[i] == MOOD)))


def test_the_grammar_accepts_real_pieces(remi):
    """Every token of real chorales is allowed by the plain grammar at its place."""
    c = mf.codec()
    for score in mf.corpus_scores()[:3]:
        ids = [int(i) for i in c.encode(score, style="bach")]
        policy = GrammarPolicy(remi, allow_eos=True)
        st = RemiState(remi)
        st.feed(ids[0])
        for k, tok in enumerate(ids[1:], 1):
            allowed = policy.allowed(st)
            assert bool(allowed[tok]), f"token {k} ({c.token(tok)}) refused after {c.token(ids[k - 1])}"
            st.feed(tok)


def test_the_grammar_refuses_what_cannot_decode(remi):
    c = mf.codec()
    ids = [int(i) for i in c.encode(mf.corpus_scores()[0])]
    policy = GrammarPolicy(remi, programs=[0])
    st = RemiState(remi).feed_all(ids[:ids.index(remi.bar) + 3])   # ... Bar Mood Position
    m = policy.allowed(st)
    assert m.sum() == 1 and bool(m[remi.program_ids[0]])          # only the allowed instrument
    st.feed(remi.program_ids[0])
    assert set(m.nonzero().flatten().tolist()).isdisjoint(remi.pitch_ids.values())
    m = policy.allowed(st)
    assert set(m.nonzero().flatten().tolist()) == set(remi.pitch_ids.values())
    # after a note: no earlier or equal position, none past the bar, no EOS unless allowed
    for t in (remi.pitch_ids[60], remi.vel_ids[87]):
        st.feed(t)
    st.feed(next(i for i in range(remi.vocab_size) if remi.kind[i] == DUR))
    m = policy.allowed(st)
    pos_allowed = sorted(q for q, i in remi.pos_ids.items() if m[i])
    assert pos_allowed[0] == st.pos + 1 and pos_allowed[-1] == remi.bar_positions(st.ts) - 1
    assert bool(m[remi.bar]) and not bool(m[remi.eos])


def test_forced_prefix_metre_and_moods(remi):
    c = mf.codec()
    forced = dict(zip(("style", "key", "tempo", "time_signature"),
                      c.conditioning(style="folk", key="Dm", tempo=100, time_signature="6/8")))
    forced["key"] = None   # the model chooses this one
    plan = {0: c.control_ids(mood="sad"), 1: c.control_ids(energy=4)}
    policy = GrammarPolicy(remi, prefix=forced, ts=(6, 8), moods=lambda seg: plan.get(seg))
    st = RemiState(remi)
    st.feed(c.bos_id)
    m = policy.allowed(st)
    assert m.sum() == 1 and bool(m[c.style_id("folk")])
    st.feed(c.style_id("folk"))
    m = policy.allowed(st)
    assert set(m.nonzero().flatten().tolist()) == set(c.slot_ids("key"))
    for slot in ("key", "tempo", "time_signature"):
        tok = forced[slot] if forced[slot] is not None else c.key_id("A")
        assert bool(policy.allowed(st)[tok])
        st.feed(tok)
    assert policy.allowed(st).nonzero().flatten().tolist() == [remi.bar]
    st.feed(remi.bar)
    # the metre is the prefix's, so no TimeSig: the first segment's mood, forced to "sad"
    assert policy.allowed(st).nonzero().flatten().tolist() == c.control_ids(mood="sad")
    st.feed(c.control_ids(mood="sad")[0])
    st.feed(remi.pos_ids[0])
    for _ in range(remi.segment_bars - 1):   # bars 2..4 have no Mood token
        st.feed(remi.program_ids[0])
        st.feed(remi.pitch_ids[62])
        st.feed(remi.vel_ids[87])
        st.feed(next(i for i in range(remi.vocab_size) if remi.kind[i] == DUR))
        assert bool(policy.allowed(st)[remi.bar])
        st.feed(remi.bar)
        assert not policy.allowed(st)[list(remi.mood_ids.values())].any()
        st.feed(remi.pos_ids[0])
        # the instrument and velocity in force need not be repeated
        m = policy.allowed(st)
        assert bool(m[remi.pitch_ids[60]]) and not bool(m[remi.program_ids[0]])
        st.feed(remi.pitch_ids[60])
        m = policy.allowed(st)
        assert not bool(m[remi.vel_ids[87]]) and bool(m[remi.vel_ids[max(remi.vel_ids)]])
        st.feed(next(i for i in range(remi.vocab_size) if remi.kind[i] == DUR))
        st.feed(remi.pos_ids[remi.bar_positions(st.ts) - 1])
        break
    while st.bars < remi.segment_bars:
        st.feed(remi.bar)
        st.feed(remi.pos_ids[0])
        st.feed(remi.pitch_ids[60])
        st.feed(next(i for i in range(remi.vocab_size) if remi.kind[i] == DUR))
    st.feed(remi.bar)   # bar 5 opens segment 1: energy forced to 4, valence free
    assert set(policy.allowed(st).nonzero().flatten().tolist()) == set(c.control_ids(energy=4))
    assert st.segment == 1


def test_grammar_constraint_works_with_sampling_stream(remi):
    """The policy also plugs into cadenza.sampling as a constraint: every sample is valid."""
    from cadenza.sampling import generate

    mm = mf.tiny_model()
    policy = GrammarPolicy(remi, allow_eos=True)
    st = RemiState(remi)
    out = generate(mm.network, [remi.bos], 120, seed=3, constraint=GrammarConstraint(policy, st),
                   stop_tokens=[remi.eos])
    ids = [remi.bos] + out
    check = RemiState(remi)
    for k, tok in enumerate(ids):
        if k:
            assert bool(policy.allowed(check)[tok])
        check.feed(tok)
    assert sum(1 for t in ids if remi.kind[t] == BAR) >= 1
    mf.codec().decode(ids)   # decodes
