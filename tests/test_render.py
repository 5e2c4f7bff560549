"""Offline rendering: WAV through the General MIDI SoundFont, PNG piano rolls, bad input."""

from __future__ import annotations

import wave

import numpy as np
import pytest
from conftest import require

symusic = require("symusic")
require("tinysoundfont")

from cadenza.cli import main
from cadenza.errors import DataError
from cadenza.render import default_soundfont, render_piano_roll, render_wav, synthesize

SR = 22050


def _score(notes, program=0, drum=False, qpm=120):
    """notes: (start_beats, dur_beats, pitch, velocity)."""
    s = symusic.Score(480)
    s.tempos.append(symusic.Tempo(0, qpm=qpm))
    t = symusic.Track(program=program, is_drum=drum)
    for b, d, p, v in notes:
        t.notes.append(symusic.Note(int(b * 480), int(d * 480), p, v))
    s.tracks.append(t)
    return s


def _read_wav(path):
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768
        return data.reshape(-1, w.getnchannels()), w.getframerate()


def _dominant_hz(x, sr):
    """The fundamental: the lowest spectral peak that reaches a fifth of the strongest."""
    x = x * np.hanning(len(x))
    spec = np.abs(np.fft.rfft(x))
    spec[: int(40 * len(x) / sr)] = 0  # ignore DC and rumble
    strong = np.flatnonzero(spec >= 0.2 * spec.max())
    first = strong[0]
    while first + 1 < len(spec) and spec[first + 1] > spec[first]:  # climb to the top of that peak
        first += 1
    return first * sr / len(x)


def test_soundfont_ships_with_the_packages():
    sf = default_soundfont()
    assert sf.is_file() and sf.stat().st_size > 1_000_000
    assert sf.read_bytes()[:4] == b"RIFF"


def test_wav_has_the_right_pitch_timing_and_length(tmp_path):
    # 120 bpm: one beat = 0.5 s. Silence for 2 beats, then A4 (440 Hz) for 2 beats.
    path = render_wav(_score([(2, 2, 69, 100)]), tmp_path / "a.wav", sample_rate=SR)
    audio, sr = _read_wav(path)
    assert sr == SR and audio.shape[1] == 2
    assert len(audio) / sr == pytest.approx(2.0 + 1.5, abs=0.05)  # last note-off + 1.5 s tail
    quiet = np.sqrt((audio[: int(0.9 * sr)] ** 2).mean())
    loud = np.sqrt((audio[int(1.1 * sr): int(1.9 * sr)] ** 2).mean())
    assert quiet < 1e-3 < loud
    assert _dominant_hz(audio[int(1.2 * sr): int(1.8 * sr), 0], sr) == pytest.approx(440, rel=0.03)
    assert np.abs(audio).max() == pytest.approx(0.89, abs=0.01)  # peak-normalised, no clipping


def test_pitch_and_instrument_change_the_sound():
    a = synthesize(_score([(0, 2, 60, 100)]), sample_rate=SR)
    b = synthesize(_score([(0, 2, 72, 100)]), sample_rate=SR)
    c = synthesize(_score([(0, 2, 60, 100)], program=40), sample_rate=SR)  # violin
    seg = slice(int(0.2 * SR), int(0.8 * SR))
    fa, fb = _dominant_hz(a[seg, 0], SR), _dominant_hz(b[seg, 0], SR)
    assert fb / fa == pytest.approx(2.0, rel=0.05)  # an octave up
    assert np.abs(a - c).max() > 0.1                # another timbre
    drums = synthesize(_score([(i * 0.5, 0.25, 36 + 2 * (i % 3), 110) for i in range(8)], drum=True),
                       sample_rate=SR)
    assert np.sqrt((drums ** 2).mean()) > 0.01


def test_piano_roll_png(tmp_path):
    from matplotlib.image import imread

    s = _score([(i, 1, 60 + i, 80) for i in range(8)])
    violin = symusic.Track(name="violin", program=40)
    violin.notes.append(symusic.Note(0, 480 * 8, 84, 100))
    s.tracks.append(violin)
    path = render_piano_roll(s, tmp_path / "roll.png", title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(str(path))[..., :3]
    coloured = (img.max(axis=2) - img.min(axis=2)) > 0.3
    assert coloured.sum() > 500
    # an empty picture (no notes drawn) would have no strongly coloured pixels at all
    blank = render_piano_roll(_score([(0, 0.01, 60, 1)]), tmp_path / "blank.png")
    assert (np.ptp(imread(str(blank))[..., :3], axis=2) > 0.3).sum() < coloured.sum()


@pytest.fixture()
def bad_inputs(tmp_path):
    good = _score([(0, 1, 60, 90)])
    silent = symusic.Score(480)
    silent.tracks.append(symusic.Track(program=0))
    silent.dump_midi(str(tmp_path / "silent.mid"))
    good.dump_midi(str(tmp_path / "good.mid"))
    (tmp_path / "empty.mid").write_bytes(b"")
    (tmp_path / "text.mid").write_text("definitely not MIDI")
    (tmp_path / "cut.mid").write_bytes((tmp_path / "good.mid").read_bytes()[:26])
    return {"missing.mid": "does not exist", "empty.mid": "is empty", "text.mid": "not a MIDI file",
            "cut.mid": "corrupt", "silent.mid": "no notes"}


def test_bad_input_raises_one_sentence(tmp_path, bad_inputs):
    for name, words in bad_inputs.items():
        with pytest.raises(DataError, match=words) as info:
            render_wav(tmp_path / name, tmp_path / "out.wav")
        assert "\n" not in str(info.value)
        with pytest.raises(DataError, match=words):
            render_piano_roll(tmp_path / name, tmp_path / "out.png")
    assert not (tmp_path / "out.wav").exists() and not (tmp_path / "out.png").exists()
    with pytest.raises(DataError, match="SoundFont"):
        render_wav(tmp_path / "good.mid", tmp_path / "out.wav", soundfont=tmp_path / "nope.sf2")
    (tmp_path / "fake.sf2").write_bytes(b"RIFF....not a soundfont")
    with pytest.raises(DataError, match="SoundFont"):
        render_wav(tmp_path / "good.mid", tmp_path / "out.wav", soundfont=tmp_path / "fake.sf2")


def test_cli_render(tmp_path, capsys, bad_inputs):
    wav, png = tmp_path / "o.wav", tmp_path / "o.png"
    assert main(["render", str(tmp_path / "good.mid"), "-o", str(wav), "--png", str(png),
                 "--sample-rate", str(SR)]) == 0
    out = capsys.readouterr().out
    assert str(wav) in out and str(png) in out
    assert _read_wav(wav)[1] == SR and png.read_bytes()[:4] == b"\x89PNG"
    # a failed render leaves an existing output untouched, prints one line, exits 2
    before = wav.read_bytes()
    for name in bad_inputs:
        assert main(["render", str(tmp_path / name), "-o", str(wav)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("cadenza: error:") and err.count("\n") == 1
    assert wav.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files left
    assert main(["render", str(tmp_path / "good.mid"), "-o", str(tmp_path / "o.mp3")]) == 2
    assert main(["render", str(tmp_path / "good.mid")]) == 2
