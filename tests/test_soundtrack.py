"""The endless soundtrack (cadenza.music.soundtrack): bars on one beat timeline, sections
that re-prime the cache without a gap, controls that take effect where they are asked to."""

import pytest

from conftest import require

require("miditok")

from cadenza.errors import ConfigError  # noqa: E402
from cadenza.music.grammar import PITCH  # noqa: E402
from cadenza.music.load import load_model  # noqa: E402
from cadenza.music.soundtrack import Controls, Soundtrack  # noqa: E402


@pytest.fixture(scope="module")
def mm():
    return load_model()          # the shipped model: must be there (no skip)


def _check_timeline(bars):
    for a, b in zip(bars, bars[1:]):
        assert b.bar == a.bar + 1
        assert b.start == pytest.approx(a.end)        # no gap, no overlap in the beat timeline
    for b in bars:
        for n in b.notes:
            assert b.start - 1e-9 <= n["start"] < b.end
            assert n["duration"] > 0 and n["bar"] == b.bar
    seqs = [n["seq"] for b in bars for n in b.notes]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_endless_across_reprimes_keeps_the_timeline(mm):
    # a large headroom makes the stream re-prime every ~150 tokens instead of every ~1,400
    st = Soundtrack(mm, Controls(style="folk"), seed=5, headroom=mm.network.config.max_len - 160)
    bars = [st.next_bar() for _ in range(40)]
    _check_timeline(bars)
    reprimes = [s for s in st.sections[1:]]
    assert len(reprimes) >= 2, st.sections
    for s in reprimes:
        assert s["kept_bars"] > 0 and s["kept_bars"] % 4 == 0      # recent bars, in whole segments
        after = [b for b in bars if s["bar"] <= b.bar < s["bar"] + 4]
        assert after and after[0].segment is not None              # a section opens a segment
        assert sum(len(b.notes) for b in after) > 0                # notes keep coming
    assert st.decoder.cached < mm.network.config.max_len


def test_control_change_takes_effect_at_the_restart_bar(mm):
    st = Soundtrack(mm, Controls(energy=0.95), seed=1)
    bars = [st.next_bar() for _ in range(6)]
    assert bars[0].segment["controls"]["energy_level"] == 4
    assert bars[4].segment["controls"]["energy_level"] == 4
    kept = [b.notes for b in bars[:3]]
    st.set_controls(energy=0.02)
    beat = st.restart(3)
    assert beat == pytest.approx(bars[2].end)
    again = [st.next_bar() for _ in range(5)]
    assert again[0].bar == 3 and again[0].start == pytest.approx(beat)
    seg = again[0].segment
    assert seg["controls"]["energy_level"] == 0 and seg["chosen_by"]["energy"] == "listener"
    assert [r.bar.notes for r in st.records[:3]] == kept                 # bars before the change untouched
    _check_timeline([r.bar for r in st.records])


def test_key_change_transposes_the_kept_bars_and_metre_change_keeps_none(mm):
    st = Soundtrack(mm, Controls(key="C", time_signature="4/4", style="folk"), seed=2)
    for _ in range(8):
        st.next_bar()
    st.set_controls(key="D")
    st.restart()
    b = st.next_bar()
    assert b.segment["controls"]["key"] == "D" and st.sections[-1]["kept_bars"] == 8
    # the kept bars were moved up a tone: the new context's pitches are the old ones + 2
    old = [n["pitch"] for r in st.records[:8] for n in r.bar.notes]
    ctx_pitches = [st.remi.value[i] for i in st.decoder.context[:st.sections[-1]["context_tokens"]]
                   if st.remi.kind[i] == PITCH]
    assert sorted(ctx_pitches) == sorted(p + 2 for p in old)
    st.set_controls(time_signature="3/4")
    st.restart()
    b = st.next_bar()
    assert b.time_signature == "3/4" and st.sections[-1]["kept_bars"] == 0
    assert b.end - b.start == pytest.approx(3.0)


def test_fresh_restart_and_preferences_chooser(mm):
    def chooser(rng, controls):
        return {"style": "bach", "valence": 0.1, "tempo": 70.0}

    st = Soundtrack(mm, Controls(energy=0.5), seed=3, chooser=chooser)
    b = st.next_bar()
    seg = b.segment
    assert seg["controls"]["style"] == "bach" and seg["chosen_by"]["style"] == "preferences"
    assert seg["controls"]["valence_level"] == 0 and seg["chosen_by"]["energy"] == "listener"
    assert b.tempo == 70.0
    st.next_bar()
    st.restart(fresh=True)
    assert st.sections[-1]["kept_bars"] == 0


@pytest.mark.parametrize("bad", [{"valence": 1.5}, {"tempo": 500}, {"style": "techno"}, {"key": "H#"},
                                 {"time_signature": "4"}, {"colour": 1}])
def test_bad_controls_are_refused(mm, bad):
    st = Soundtrack(mm, seed=0)
    with pytest.raises(ConfigError):
        st.set_controls(**bad)
    assert st.controls == Controls()


def test_an_endless_stream_holds_only_its_recent_bars(mm):
    st = Soundtrack(mm, Controls(style="folk", time_signature="4/4"), seed=7, retain_bars=16)
    bars = [st.next_bar() for _ in range(40)]
    _check_timeline(bars)
    assert len(st.records) == 16 and st.dropped == 24 and st.bars_made == 40
    assert [r.bar.bar for r in st.records] == list(range(24, 40))
    beat = st.restart(36)                                   # a recent bar: its 8 bars before are held
    assert beat == pytest.approx(bars[35].end) and st.sections[-1]["kept_bars"] == 8
    again = [st.next_bar() for _ in range(3)]
    assert again[0].bar == 36 and again[0].start == pytest.approx(beat)
    beat = st.restart(2)                                    # long gone: the oldest held bar is used
    assert st.bars_made == 24 and beat == pytest.approx(bars[23].end)
    _check_timeline(bars[:24] + [st.next_bar() for _ in range(3)])
