"""The endless soundtrack's mood reaches tempo and key (issue 23, item 2), on the shipped model:
with the tempo on auto, each section's tempo is drawn for the energy in force within the style's
range (low energy slower); a tempo someone set is left alone; a large valence move turns the key
to its parallel minor or major at the next section."""

import random

import pytest

from cadenza.codecs.music import parse_key
from cadenza.music.load import load_model
from cadenza.music.soundtrack import Controls, Soundtrack


@pytest.fixture(scope="module")
def mm():
    return load_model()


def test_each_energy_level_has_its_band_and_a_tempo_in_it_stays():
    from cadenza.music.tempo import tempo_for_level

    rng = random.Random(0)
    draws = [[tempo_for_level(80, 140, lev, 5, None, rng) for _ in range(20)] for lev in range(5)]
    for lev in range(4):
        assert max(draws[lev]) <= min(draws[lev + 1]), "a higher energy is never slower"
    assert 80 <= min(draws[0]) and max(draws[4]) <= 140
    assert tempo_for_level(80, 140, 2, 5, 104.0, rng) == 104.0          # already in the band: kept
    assert tempo_for_level(80, 140, 4, 5, 104.0, rng) > 125              # not in it: drawn there


def first_bar(st):
    b = st.next_bar()
    assert b.segment is not None, "a section opens a segment"
    return b


def test_auto_tempo_follows_the_energy_within_the_style_range(mm):
    tempos = {}
    for energy in (0.05, 0.95):
        got = []
        for seed in (1, 2, 3):
            st = Soundtrack(mm, Controls(style="fiddle", energy=energy), seed=seed)
            b = first_bar(st)
            assert b.segment["chosen_by"]["tempo"] == "model"
            got.append(b.tempo)
        tempos[energy] = got
    assert max(tempos[0.05]) < min(tempos[0.95]), tempos
    # a pad move mid-stream: the next section is drawn for the new energy
    st = Soundtrack(mm, Controls(style="fiddle", energy=0.05), seed=4)
    slow = first_bar(st).tempo
    st.set_controls(energy=0.95)
    st.restart()
    fast = first_bar(st).tempo
    assert fast > slow * 1.15, (slow, fast)
    from cadenza.music.tempo import style_range

    lo, hi = style_range(mm.network, st.remi, mm.codec.bos_id, mm.codec.style_id("fiddle"), None)
    assert lo <= slow < fast <= hi
    st.set_controls(tempo=100)           # set by the listener: exactly that
    st.restart()
    b = first_bar(st)
    assert b.tempo == 100 and b.segment["chosen_by"]["tempo"] == "listener"


def test_a_large_valence_move_turns_the_key_to_its_parallel(mm):
    st = Soundtrack(mm, Controls(style="folk", valence=0.95), seed=5)
    key0 = first_bar(st).segment["controls"]["key"]
    tonic, mode = parse_key(key0)
    assert mode == "major", key0
    st.set_controls(valence=0.05)
    st.restart()
    seg = first_bar(st).segment
    assert parse_key(seg["controls"]["key"]) == (tonic, "minor"), (key0, seg["controls"]["key"])
    assert seg["chosen_by"]["key"] == "model" and seg["chosen_by"]["valence"] == "listener"
    st.set_controls(valence=0.95)
    st.restart()
    assert parse_key(first_bar(st).segment["controls"]["key"]) == (tonic, "major")
