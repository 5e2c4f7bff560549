"""What a piece of music is like, from its notes: key, tempo, metre, valence, energy.

``describe(score)`` gives the ``MusicFeatures`` the music codec's conditioning prefix is made
from (and the corpus manifest shows): Krumhansl-Kessler key finding steered by the key
signature, the time-weighted tempo, valence (mode, consonance, major triads, diatonic
share) and energy (notes per second, velocity), each with its level among ``LEVELS``.
Named moods (``MOODS``) are cells of the valence x energy grid.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from cadenza.codecs.music.keys import key_correlations
from cadenza.codecs.music.midi import as_tick, normalize_time_signature
from cadenza.errors import ConfigError

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
LEVELS = 5
DEFAULT_TEMPO = 120.0
# Named moods as (valence level, energy level), each 0..4 (levels are corpus quintiles;
# valence 0 is the most chromatic/dissonant minor music, so "sad" is 1 and "tense" 0).
# Every one of these cells holds 450+ pieces of the music21 corpus.
MOODS = {
    "calm": (3, 0),
    "happy": (4, 3),
    "sad": (1, 0),
    "tense": (0, 3),
    "energetic": (3, 4),
}

_DISSONANT = {1, 2, 6, 10, 11}
MAJOR_SCALE = [0, 2, 4, 5, 7, 9, 11]
MINOR_SCALE = [0, 2, 3, 5, 7, 8, 10, 11]  # natural minor plus the raised seventh


# --------------------------------------------------------------------------- features
@dataclass
class MusicFeatures:
    """What the conditioning prefix says about a piece, computed from its notes."""

    key_tonic: int            # pitch class 0..11
    key_mode: str             # "major" | "minor"
    tempo: float              # quarter notes per minute
    time_signature: tuple     # (numerator, denominator) after metre normalisation
    valence: float            # 0..1
    energy: float             # 0..1
    valence_level: int
    energy_level: int
    notes: int
    seconds: float
    notes_per_second: float
    mean_velocity: float
    consonance: float | None  # None for one voice
    major_triads: float | None
    diatonic: float = 1.0     # share of note time in the key's scale

    @property
    def key_name(self) -> str:
        return NOTE_NAMES[self.key_tonic] + ("m" if self.key_mode == "minor" else "")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["key"] = self.key_name
        d["time_signature"] = f"{self.time_signature[0]}/{self.time_signature[1]}"
        return d


def key_name(tonic: int, mode: str) -> str:
    return NOTE_NAMES[tonic % 12] + ("m" if mode == "minor" else "")


def parse_key(text: str) -> tuple[int, str]:
    """'C', 'F#m', 'Bb minor', 'a', 'eb major' -> (tonic pitch class, mode)."""
    s = str(text).strip().replace("♯", "#").replace("♭", "b")
    mode = "major"
    low = s.lower()
    for suffix, m in ((" minor", "minor"), (" major", "major"), ("min", "minor"), ("maj", "major"), ("m", "minor")):
        if low.endswith(suffix) and len(s) > len(suffix):
            s, mode = s[: -len(suffix)].strip(), m
            break
    else:
        if s[:1].islower() and s[:1].isalpha() and len(s) <= 2:  # lower-case name = minor
            mode = "minor"
    letters = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
    if not s or s[0].lower() not in letters or len(s) > 3:
        raise ConfigError(f"unknown key {text!r}; use a note name with optional m, e.g. C, F#m, Bb")
    pc = letters[s[0].lower()]
    for ch in s[1:]:
        if ch == "#":
            pc += 1
        elif ch == "b":
            pc -= 1
        else:
            raise ConfigError(f"unknown key {text!r}; use a note name with optional m, e.g. C, F#m, Bb")
    return pc % 12, mode


def level_of(value: float, edges=(0.2, 0.4, 0.6, 0.8)) -> int:
    """Map a value in [0, 1] to a level: the number of ``edges`` it reaches."""
    if not (isinstance(value, (int, float, np.floating)) and math.isfinite(value)):
        raise ConfigError(f"mood values must be numbers between 0 and 1, not {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"mood values must be between 0 and 1, not {value}")
    return int(np.searchsorted(np.asarray(edges, dtype=float), float(value), side="right"))


def mood_levels(mood: str) -> tuple[int, int]:
    """(valence level, energy level) for a named mood."""
    try:
        return MOODS[mood]
    except KeyError:
        raise ConfigError(f"unknown mood {mood!r}; choose one of {', '.join(MOODS)}") from None


def _note_arrays(score):
    """Onsets, ends (ticks), pitches, velocities of every non-drum note, sorted by onset."""
    rows = [t.notes.numpy() for t in score.tracks if not t.is_drum and len(t.notes)]
    if not rows:
        z = np.zeros(0, dtype=np.int64)
        return z, z, z, z
    time = np.concatenate([r["time"] for r in rows]).astype(np.int64)
    dur = np.concatenate([r["duration"] for r in rows]).astype(np.int64)
    pitch = np.concatenate([r["pitch"] for r in rows]).astype(np.int64)
    vel = np.concatenate([r["velocity"] for r in rows]).astype(np.int64)
    order = np.argsort(time, kind="stable")
    return time[order], (time + np.maximum(dur, 1))[order], pitch[order], vel[order]


def estimate_key(pitches, weights, key_signature: int | None = None) -> tuple[int, str]:
    """Krumhansl-Kessler key finding; a key signature (sharps, -7..7) narrows the choice."""
    scores = key_correlations(pitches, weights)
    if scores.max() <= -1.0:
        return 0, "major"
    best = int(np.argmax(scores))
    if key_signature is not None:
        major = (7 * int(key_signature)) % 12
        cands = [major, 12 + (major + 9) % 12]
        hinted = max(cands, key=lambda i: scores[i])
        if scores[best] - scores[hinted] <= 0.1:  # trust the signature unless clearly wrong
            best = hinted
    return best % 12, ("major" if best < 12 else "minor")


def _harmony(start, end, pitch, max_onsets: int = 4000):
    """Consonance of simultaneous notes and share of major triads (None when one voice)."""
    onsets = np.unique(start)[:max_onsets]
    dis = pairs = 0
    major = minor = 0
    order_end = end
    for t in onsets:
        sounding = pitch[(start <= t) & (order_end > t)]
        if len(sounding) < 2:
            continue
        pcs = sorted(set(int(p) % 12 for p in sounding))
        diffs = np.abs(sounding[:, None] - sounding[None, :])[np.triu_indices(len(sounding), 1)] % 12
        diffs = diffs[diffs != 0]
        dis += int(np.isin(diffs, list(_DISSONANT)).sum())
        pairs += int(diffs.size)
        if len(pcs) >= 3:
            s = set(pcs)
            for r in pcs:
                if (r + 7) % 12 in s:
                    if (r + 4) % 12 in s:
                        major += 1
                        break
                    if (r + 3) % 12 in s:
                        minor += 1
                        break
    consonance = None if pairs == 0 else 1.0 - dis / pairs
    triads = None if major + minor == 0 else major / (major + minor)
    return consonance, triads


def describe(score, valence_edges=(0.2, 0.4, 0.6, 0.8), energy_edges=(0.2, 0.4, 0.6, 0.8),
             tempo_override: float | None = None) -> MusicFeatures:
    """Key, tempo, metre and mood of a (tick-based) symusic score, computed from its notes.

    valence = 0.6 * mode + 0.4 * harmony, where mode = 0.5 + (best major - best minor key
    correlation) / 0.6, clipped to 0..1 (graded: modal tunes sit in between), and harmony
    is the mean of: how diatonic the notes are (share of note time in the key's scale,
    0.8 -> 0 and 1 -> 1), and where notes sound together, their consonance (share of pairs
    that are not seconds, sevenths or tritones, 0.6 -> 0 and 0.95 -> 1) and the share of
    major among the major/minor triads.
    energy = 0.5 * density + 0.25 * tempo + 0.25 * loudness, where density maps 0.5 .. 16
    notes per second to 0 .. 1 on a log scale, tempo 50 .. 200 quarter notes per minute,
    loudness mean velocity 40 .. 120.
    """
    score = as_tick(score)
    start, end, pitch, vel = _note_arrays(score)
    tpq = score.ticks_per_quarter
    # Tempo: time-weighted over the piece (tempo map in quarter notes per minute).
    total_end = int(end.max()) if len(end) else 0
    if tempo_override is not None:
        tempo = float(tempo_override)
    elif len(score.tempos):
        times = [t.time for t in score.tempos] + [max(total_end, score.tempos[-1].time + 1)]
        spans = np.maximum(np.diff(times), 0).astype(float)
        qpms = np.array([t.qpm for t in score.tempos], dtype=float)
        tempo = float((qpms * spans).sum() / spans.sum()) if spans.sum() > 0 else float(qpms[0])
    else:
        tempo = DEFAULT_TEMPO
    ts = normalize_time_signature(score.time_signatures[0].numerator, score.time_signatures[0].denominator) \
        if len(score.time_signatures) else (4, 4)
    ts = ts or (4, 4)
    key_sig = int(score.key_signatures[0].key) if len(score.key_signatures) else None
    tonic, mode = estimate_key(pitch, end - start, key_sig) if len(pitch) else (0, "major")
    corr = key_correlations(pitch, end - start)
    mode_term = float(np.clip(0.5 + (float(corr[:12].max()) - float(corr[12:].max())) / 0.6, 0.0, 1.0))
    w = (end - start).astype(float)
    in_key = np.isin((pitch - tonic) % 12, MAJOR_SCALE if mode == "major" else MINOR_SCALE)
    diatonic = float((w * in_key).sum() / w.sum()) if len(pitch) else 1.0
    seconds = float(score.to("second").end()) if len(pitch) else 0.0
    if seconds <= 0 and len(pitch):
        seconds = total_end / tpq * 60.0 / tempo
    nps = len(pitch) / seconds if seconds > 0 else 0.0
    mean_vel = float(vel.mean()) if len(vel) else 0.0
    consonance, triads = _harmony(start, end, pitch) if len(pitch) else (None, None)
    harmony_terms = [float(np.clip((diatonic - 0.8) / 0.2, 0.0, 1.0))]
    if consonance is not None:
        harmony_terms.append(float(np.clip((consonance - 0.6) / 0.35, 0.0, 1.0)))
    if triads is not None:
        harmony_terms.append(float(triads))
    harmony = float(np.mean(harmony_terms))
    valence = 0.6 * mode_term + 0.4 * harmony
    density = float(np.clip(math.log2(max(nps, 1e-9) / 0.5) / 5.0, 0.0, 1.0))   # 0.5 .. 16 notes/s
    tempo_n = float(np.clip((tempo - 50.0) / 150.0, 0.0, 1.0))                   # 50 .. 200 bpm
    vel_n = float(np.clip((mean_vel - 40.0) / 80.0, 0.0, 1.0))                  # 40 .. 120
    energy = 0.5 * density + 0.25 * tempo_n + 0.25 * vel_n
    return MusicFeatures(
        key_tonic=tonic, key_mode=mode, tempo=tempo, time_signature=tuple(ts),
        valence=float(valence), energy=float(energy),
        valence_level=level_of(float(np.clip(valence, 0, 1)), valence_edges),
        energy_level=level_of(float(np.clip(energy, 0, 1)), energy_edges),
        notes=int(len(pitch)), seconds=seconds, notes_per_second=float(nps), mean_velocity=mean_vel,
        consonance=consonance, major_triads=triads, diatonic=diatonic,
    )
