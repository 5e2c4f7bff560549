"""Render MIDI offline: audio through a General MIDI SoundFont, and a piano-roll picture.

Audio uses tinysoundfont (a small C SoundFont synthesizer, no audio device needed) with the
TimGM6mb General MIDI SoundFont that ships inside the pretty_midi package, so nothing is
downloaded. Another SoundFont can be named with ``soundfont=`` or the environment variable
``CADENZA_SOUNDFONT`` (for example Debian's /usr/share/sounds/sf2/FluidR3_GM.sf2).

Every file is written atomically; bad input raises ``DataError`` with one sentence.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cadenza.codecs.audio import write_wav
from cadenza.codecs.music.midi import as_tick, load_midi
from cadenza.errors import ConfigError, DataError
from cadenza.io import atomic_path

SAMPLE_RATE = 44100
MAX_SECONDS = 3600.0      # the longest audio rendered (music plus the tail after the last note)
TAIL_SECONDS = 1.5        # silence rendered after the last note so it can ring out
WAV_BYTES_PER_SECOND = SAMPLE_RATE * 2 * 2   # 16-bit stereo at the default rate
_SYSTEM_SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2",
                      "/usr/share/sounds/sf3/MuseScore_General.sf3")


def default_soundfont() -> Path:
    """The SoundFont to use: $CADENZA_SOUNDFONT, pretty_midi's TimGM6mb, or a system one."""
    env = os.environ.get("CADENZA_SOUNDFONT")
    if env:
        p = Path(env)
        if not p.is_file():
            raise DataError(f"CADENZA_SOUNDFONT names {p}, which does not exist")
        return p
    try:
        import pretty_midi

        p = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
        if p.is_file():
            return p
    except ImportError:
        pass
    for s in _SYSTEM_SOUNDFONTS:
        if Path(s).is_file():
            return Path(s)
    raise DataError("no General MIDI SoundFont found; install pretty_midi or set CADENZA_SOUNDFONT to an .sf2 file")


def check_soundfont(soundfont=None) -> Path:
    """The SoundFont to render with, checked before any work: it exists, can be read, starts
    like a SoundFont (a RIFF file of form 'sfbk', as .sf2 and .sf3 files do) and is as long
    as its header says. Raises ``DataError`` with one sentence otherwise."""
    from cadenza.io import os_error_sentence

    p = Path(soundfont) if soundfont else default_soundfont()
    if not p.exists():
        raise DataError(f"SoundFont {p} does not exist; pass a General MIDI .sf2 file with --soundfont")
    if p.is_dir():
        raise DataError(f"SoundFont {p} is a folder; pass a General MIDI .sf2 file with --soundfont")
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            head = fh.read(12)
    except OSError as exc:
        raise DataError(f"SoundFont: {os_error_sentence(exc, p, doing='read')}") from None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise DataError(f"{p} is not a SoundFont (an .sf2 or .sf3 file starts with a RIFF 'sfbk' header); "
                        f"pass a General MIDI SoundFont with --soundfont")
    declared = int.from_bytes(head[4:8], "little") + 8
    if size < declared:
        raise DataError(f"SoundFont {p} is cut short ({size:,} of {declared:,} bytes); copy it again")
    return p


def wav_bytes(seconds: float, sample_rate: int = SAMPLE_RATE, channels: int = 2) -> int:
    """Size of the 16-bit WAV file for ``seconds`` of audio (header included)."""
    return int(round(max(seconds, 0.0) * sample_rate)) * channels * 2 + 44


def _score(midi):
    """A tick-based symusic score from a path or a score (validated: it must have notes)."""
    if isinstance(midi, (str, os.PathLike)):
        return load_midi(midi)
    if midi.note_num() == 0:
        raise DataError("the score has no notes")
    return as_tick(midi)


def _events(score):
    """(seconds, order, kind, channel, a, b) for every synth event, in playing order.

    Tracks share a channel when they share a program; drums use channel 9. Within one
    instant, program changes and controllers come first, then note-offs, then note-ons.
    """
    sec = score.to("second")
    channels: dict[tuple[int, bool], int] = {}
    free = [c for c in range(16) if c != 9]
    events = []
    for track in sec.tracks:
        if not len(track.notes):
            continue
        key = (-1 if track.is_drum else int(track.program), bool(track.is_drum))
        if key not in channels:
            if track.is_drum:
                channels[key] = 9
            else:
                channels[key] = free[len([k for k in channels if not k[1]]) % len(free)]
            events.append((0.0, 0, "program", channels[key], key[0], track.is_drum))
        ch = channels[key]
        for cc in track.controls:
            events.append((float(cc.time), 1, "cc", ch, int(cc.number), int(cc.value)))
        for pb in track.pitch_bends:
            events.append((float(pb.time), 1, "bend", ch, int(pb.value) + 8192, 0))
        arr = track.notes.numpy()
        for t, d, p, v in zip(arr["time"].tolist(), arr["duration"].tolist(), arr["pitch"].tolist(),
                              arr["velocity"].tolist()):
            if v <= 0:
                continue
            events.append((float(t), 3, "on", ch, int(p), int(v)))
            events.append((float(t) + max(float(d), 0.02), 2, "off", ch, int(p), 0))
    events.sort(key=lambda e: (e[0], e[1]))
    return events


def synthesize(midi, soundfont=None, sample_rate: int = SAMPLE_RATE, tail: float = TAIL_SECONDS) -> np.ndarray:
    """Render to a float32 array of shape (samples, 2) in [-1, 1] (peak-normalised)."""
    try:
        import tinysoundfont
    except ImportError:
        raise DataError("audio rendering needs the tinysoundfont package; "
                        "install it with `pip install --no-deps tinysoundfont`") from None
    if not 8000 <= int(sample_rate) <= 192000:
        raise ConfigError(f"sample rate must be between 8000 and 192000 Hz, not {sample_rate}")
    score = _score(midi)
    events = _events(score)
    end = max(e[0] for e in events) + tail
    if end > MAX_SECONDS:
        raise DataError(f"the piece lasts {end / 60:.0f} minutes; audio rendering stops at {MAX_SECONDS / 60:.0f} "
                        f"minutes (write it without audio, or a shorter piece)")
    sf_path = check_soundfont(soundfont)
    synth = tinysoundfont.Synth(samplerate=int(sample_rate))
    try:
        sfid = synth.sfload(str(sf_path))
    except Exception:
        raise DataError(f"{sf_path} is not a readable SoundFont") from None
    total = int(round(end * sample_rate))
    out = np.zeros(total * 2, dtype=np.float32)
    pos = 0

    def advance(to_sample: int):
        nonlocal pos
        to_sample = min(to_sample, total)
        if to_sample > pos:
            buf = memoryview(out[pos * 2: to_sample * 2]).cast("B")
            synth.generate_simple(to_sample - pos, buffer=buf)
            pos = to_sample

    for t, _, kind, ch, a, b in events:
        advance(int(round(t * sample_rate)))
        if kind == "program":
            try:
                synth.program_select(ch, sfid, 128 if b else 0, 0 if b else a, is_drums=bool(b))
            except Exception:  # a SoundFont without that preset: fall back to piano
                synth.program_select(ch, sfid, 0, 0)
        elif kind == "on":
            synth.noteon(ch, a, b)
        elif kind == "off":
            synth.noteoff(ch, a)
        elif kind == "cc":
            synth.control_change(ch, a, b)
        elif kind == "bend":
            synth.pitchbend(ch, a)
    advance(total)
    audio = out.reshape(-1, 2)
    peak = float(np.abs(audio).max())
    if peak > 0:
        audio *= 0.89 / peak  # about -1 dBFS
    return audio


def render_wav(midi, out_path, soundfont=None, sample_rate: int = SAMPLE_RATE) -> Path:
    """MIDI file or score -> WAV file (stereo, 16-bit). Returns the path written."""
    audio = synthesize(midi, soundfont=soundfont, sample_rate=sample_rate)
    return write_wav(out_path, audio, sample_rate)


_GM_FAMILIES = ("piano", "chromatic percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass",
                "reed", "pipe", "synth lead", "synth pad", "synth effects", "ethnic", "percussive", "sound effects")


def render_piano_roll(midi, out_path, title: str | None = None, dpi: int = 110) -> Path:
    """MIDI file or score -> PNG piano roll (time in seconds across, pitch up), one colour per track."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    score = _score(midi).to("second")
    tracks = [t for t in score.tracks if len(t.notes)]
    lo = min(int(t.notes.numpy()["pitch"].min()) for t in tracks)
    hi = max(int(t.notes.numpy()["pitch"].max()) for t in tracks)
    end = max(float((t.notes.numpy()["time"] + t.notes.numpy()["duration"]).max()) for t in tracks)
    width = float(np.clip(4 + end / 6.0, 8, 24))
    fig = Figure(figsize=(width, 4.8), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    colours = [f"C{i % 10}" for i in range(len(tracks))]
    handles = []
    for i, (t, colour) in enumerate(zip(tracks, colours)):
        arr = t.notes.numpy()
        bars = list(zip(arr["time"].astype(float), np.maximum(arr["duration"].astype(float), 0.01)))
        for (x, w), p, v in zip(bars, arr["pitch"], arr["velocity"]):
            ax.add_patch(_rect(x, int(p), w, colour, 0.35 + 0.65 * float(v) / 127.0))
        family = "drums" if t.is_drum else f"{_GM_FAMILIES[int(t.program) // 8]} (program {int(t.program)})"
        label = f"{t.name or 'track ' + str(i + 1)}: {family}" if t.name else family
        handles.append(Patch(color=colour, label=label))
    ax.set_xlim(0, max(end, 1e-3))
    ax.set_ylim(lo - 1.5, hi + 1.5)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("pitch")
    ticks = [p for p in range(lo - lo % 12, hi + 2, 12) if lo - 1 <= p <= hi + 1] or [lo]
    ax.set_yticks(ticks)
    ax.set_yticklabels([f"C{p // 12 - 1}" if p % 12 == 0 else str(p) for p in ticks])
    ax.grid(axis="y", alpha=0.25)
    n = sum(len(t.notes) for t in tracks)
    ax.set_title(title or f"{n} notes, {end:.1f} s")
    if len(handles) <= 12:
        ax.legend(handles=handles, loc="upper right", fontsize="small", framealpha=0.8)
    fig.tight_layout()
    path = Path(out_path)
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), format="png")
    return path


def _rect(x, pitch, w, colour, alpha):
    from matplotlib.patches import Rectangle

    return Rectangle((x, pitch - 0.4), w, 0.8, facecolor=colour, edgecolor="none", alpha=alpha)
