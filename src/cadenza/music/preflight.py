"""What can be checked before any work: inputs, outputs and audio, each with one sentence.

The music commands call these before loading a model or generating anything, so a bad
option costs no time and writes nothing:

- inputs: the MIDI file exists, can be read, is at most ``MAX_INPUT_BYTES`` and holds at
  most ``MAX_INPUT_NOTES`` notes (longer inputs are refused rather than tokenized for
  minutes), and has notes in the model's pitch range;
- outputs: the output folder exists and a file can really be created in it (permission
  bits alone do not tell: root, read-only mounts), and no output name is a folder;
- audio: the SoundFont is readable and really a SoundFont, the requested length fits the
  render limit (``cadenza.render.MAX_SECONDS``) and the disk has room for the WAV.

The writes themselves go through :class:`cadenza.io.FileTransaction` (all files or none).
"""

from __future__ import annotations

import errno
from pathlib import Path

from cadenza.bounds import BARS, CLOSE_LATE, SECONDS, TEMPO, VOICES
from cadenza.errors import ConfigError, DataError, WriteError

MAX_INPUT_NOTES = 50_000           # a long orchestral movement has about 20,000
MAX_INPUT_BYTES = 16 * 1024 * 1024
MAX_VOICES = VOICES.hi             # accompanying voices harmonize adds (the bound: cadenza.bounds.VOICES)
SPARE_BYTES = 4 * 1024 * 1024      # MIDI, PNG and JSON next to the WAV, with room to spare
SLOWEST_TEMPO = 40.0               # when the model chooses the tempo: its slowest tempo token


# --------------------------------------------------------------------------- inputs
def read_input(path, what: str = "input"):
    """Read and check an input MIDI file; returns its symusic score (tick time)."""
    from cadenza.codecs.music import load_midi
    from cadenza.io import os_error_sentence

    p = Path(path)
    try:
        size = p.stat().st_size if p.is_file() else None
    except OSError as exc:
        raise DataError(os_error_sentence(exc, p, doing="read")) from None
    if size is not None and size > MAX_INPUT_BYTES:
        raise DataError(f"{p} is {size / 2**20:.1f} MB; Cadenza reads MIDI files of at most "
                        f"{MAX_INPUT_BYTES // 2**20} MB (and {MAX_INPUT_NOTES:,} notes)")
    try:
        score = load_midi(p)   # DataError: missing, a folder, empty, not MIDI, corrupt, no notes
    except OSError as exc:
        raise DataError(os_error_sentence(exc, p, doing="read")) from None
    n = int(score.note_num())
    if n > MAX_INPUT_NOTES:
        raise DataError(f"{p} has {n:,} notes; Cadenza reads at most {MAX_INPUT_NOTES:,} notes from one {what} "
                        f"file (cut it to the part you want to use)")
    return score


def check_pitch_range(score, codec, path, what: str = "input") -> None:
    """Refuse an input whose only notes lie outside the model's pitch range (drums aside)."""
    rng = getattr(getattr(codec, "config", None), "pitch_range", None)
    if not rng:
        return
    lo, hi = int(rng[0]), int(rng[1])
    pitches = []
    for t in score.tracks:
        if t.is_drum:
            return   # drum notes have their own range; the codec decides
        pitches += [int(n.pitch) for n in t.notes]
    if pitches and not any(lo <= p < hi for p in pitches):
        raise DataError(f"{path} has no notes the model can read: its pitches are {min(pitches)} to "
                        f"{max(pitches)}, the model's range is {lo} to {hi - 1}; transpose the {what} into it")


def score_seconds(score) -> float:
    return float(score.to("second").end()) if score.note_num() else 0.0


def _last_tempo(score, default: float = 120.0) -> float:
    tempos = list(score.tempos)
    return float(tempos[-1].qpm) if tempos else default


def _quarters_per_bar(num: int, den: int) -> float:
    return num * 4.0 / den


def _last_bar_quarters(score) -> float:
    ts = list(score.time_signatures)
    return _quarters_per_bar(int(ts[-1].numerator), int(ts[-1].denominator)) if ts else 4.0


def _parse_ts(text):
    try:
        num, den = (int(x) for x in str(text).split("/"))
        return _quarters_per_bar(num, den) if num > 0 and den > 0 else None
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- lengths
def _limits() -> tuple:
    """The generator's own length limits (bars, seconds)."""
    return BARS.hi, SECONDS.hi


def _valid_length(bars, seconds, max_bars: int, max_seconds: float) -> bool:
    """Only judge lengths the generator itself accepts (it reports the others in its words)."""
    if bars is not None and seconds is not None:
        return False
    if bars is not None:
        return isinstance(bars, int) and not isinstance(bars, bool) and BARS.lo <= bars <= max_bars
    if seconds is not None:
        return isinstance(seconds, (int, float)) and SECONDS.lo < seconds <= max_seconds
    return True


def compose_seconds(bars, seconds, tempo=None, time_signature=None, default_bars: int = 16,
                    slowest_tempo: float = SLOWEST_TEMPO) -> float | None:
    """The longest a composed piece can last (None when the options are invalid anyway).

    With ``bars`` the bound takes ``tempo`` if given, else the slowest tempo the model can
    choose, and ``time_signature`` if given, else 4/4."""
    if not _valid_length(bars, seconds, *_limits()):
        return None
    if seconds is not None:
        return float(seconds)
    if tempo is not None and not (isinstance(tempo, (int, float)) and TEMPO.lo <= tempo <= TEMPO.hi):
        return None
    qpb = _parse_ts(time_signature) if time_signature else 4.0
    if qpb is None:
        return None
    return ((bars or default_bars) + CLOSE_LATE) * qpb * 60.0 / float(tempo or slowest_tempo)


def continue_seconds(score, bars, seconds, default_bars: int = 8) -> float | None:
    """How long input plus continuation lasts: the input, then ``bars`` more of its last metre
    at its last tempo (one more bar for the rest of the last one), or ``seconds`` more."""
    if not _valid_length(bars, seconds, *_limits()):
        return None
    start = score_seconds(score)
    if seconds is not None:
        return start + float(seconds)
    bar_s = _last_bar_quarters(score) * 60.0 / _last_tempo(score)
    return start + ((bars or default_bars) + 1 + CLOSE_LATE) * bar_s


# --------------------------------------------------------------------------- outputs
def check_output_folder(folder) -> Path:
    """The folder exists and a file can be created in it (tried for real)."""
    from cadenza.io import check_writable_folder, os_error_sentence

    folder = Path(folder) if str(folder) else Path(".")
    try:
        return check_writable_folder(folder)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            msg = f"the output folder {folder} does not exist; create it first or choose another output path"
        elif exc.errno == errno.ENOTDIR:
            msg = f"{folder} is a file, not a folder; choose an output path inside a folder"
        elif exc.errno in (errno.EACCES, errno.EPERM):
            msg = (f"cannot create files in the output folder {folder} (permission denied); "
                   f"choose another folder or change its permissions")
        elif exc.errno == errno.EROFS:
            msg = f"the output folder {folder} is on a read-only file system; choose another folder"
        else:
            msg = os_error_sentence(exc, folder, doing="write in")
        raise WriteError(msg, path=folder, cause=exc) from None


def check_free_space(folder, needed: int, what) -> None:
    """Refuse when the disk of ``folder`` has less than ``needed`` bytes free."""
    import shutil

    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return   # cannot tell here; the write itself will say
    if needed > free:
        raise WriteError(f"{what} needs about {needed / 1e6:,.1f} MB but only {free / 1e6:,.1f} MB are free "
                         f"on its disk; free some space, write somewhere else, or add --no-audio",
                         path=what, cause=OSError(errno.ENOSPC, "no space left"))


_TOO_LONG_HINT = "ask for fewer bars or seconds, or add --no-audio"
COMPOSE_TOO_LONG_HINT = ("ask for fewer bars or seconds, or give --tempo (without it a length in bars is judged at "
                         f"{SLOWEST_TEMPO:g} bpm, the slowest tempo the model may choose), or add --no-audio")


def check_outputs(paths, audio_seconds: float | None = None, soundfont=None, audio: bool = False,
                  too_long_hint: str = _TOO_LONG_HINT) -> None:
    """Every output can be written: none is a folder, their folders take new files; with
    ``audio``, the SoundFont is good, ``audio_seconds`` (if known) fits the render limit and
    the disk has room for the WAV."""
    from cadenza.render import MAX_SECONDS, TAIL_SECONDS, check_soundfont, wav_bytes

    paths = [Path(p) for p in paths]
    for p in paths:
        if p.is_dir():
            raise ConfigError(f"{p} is a folder; it is where an output file would go, so move it or choose "
                              f"another output name")
    for folder in dict.fromkeys(p.parent for p in paths):
        check_output_folder(folder)
    if not audio:
        return
    check_soundfont(soundfont)
    if audio_seconds is None:
        return
    total = audio_seconds + TAIL_SECONDS
    if total > MAX_SECONDS:
        raise ConfigError(f"this piece can last up to {_duration(audio_seconds)} ({total:,.1f} s of audio with the "
                          f"{TAIL_SECONDS:g} s after the last note), and audio rendering stops at {MAX_SECONDS:,.0f} s "
                          f"({MAX_SECONDS / 60:.0f} minutes); {too_long_hint}")
    wav = [p for p in paths if p.suffix.lower() == ".wav"]
    if wav:
        check_free_space(wav[0].parent, wav_bytes(total) + SPARE_BYTES, wav[0])


def _duration(seconds: float) -> str:
    return f"{seconds / 60:,.0f} minutes" if seconds >= 120 else f"{seconds:,.0f} seconds"
