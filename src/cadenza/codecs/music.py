"""Symbolic music codec (version 2): MIDI / symusic scores <-> token ids.

MidiTok's REMI (with ``Program`` tokens in one stream, so several instruments share one
sequence) is made lean and given segment controls (``lean_body`` / ``expand_body``)::

    BOS  Style_<s>  Key_<k>  Tempo_<bpm>  TimeSig_<n/d>                 (the prefix)
    Bar [TimeSig] [Mood_<v>.<e>]  Position [Program] Pitch [Velocity] Duration ...  EOS

A TimeSig, Program or Velocity appears only where it changes (then holds until the next
one), so a note costs about three tokens; a ``Mood`` token opens every ``segment_bars``-th
bar with the valence and energy levels of that segment's own notes
(``cadenza.codecs.segments``), cut at the edges stored in the config (the corpus quintiles).

- Style: the collection or composer family (``STYLES``); ``other`` for anything unknown.
- Key: Krumhansl-Kessler key finding on the duration-weighted pitch-class histogram,
  steered by the file's key signature when it has one (24 keys, ``Key_C`` .. ``Key_Bm``).
- Tempo: the time-weighted tempo of the file, snapped to ``TEMPO_BINS`` (log-nearest).
- TimeSig: MidiTok's own time-signature token for the first bar (*/2 metres are written
  as the same bar length over 4: 2/2 -> 4/4, 3/2 -> 6/4).
- ``describe`` still computes a whole piece's valence and energy (for the manifest).

Ids ``0 .. miditok_vocab-1`` are MidiTok's (PAD=0, BOS=1, EOS=2); the conditioning tokens
follow. The vocabulary is small (about 600 ids). ``MusicCodec.save`` writes a JSON file
from which ``MusicCodec.load`` rebuilds exactly the same tokenizer (checked by a hash of
the whole vocabulary).

Round trip: ``decode(encode(score))`` gives back every note of ``quantize(score)``
(pitch, onset and duration on the grid of ``positions_per_beat``, velocity bin, program).
What quantization loses is documented in ``quantize``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from cadenza.errors import ConfigError, DataError
from cadenza.codecs.keys import key_correlations
from cadenza.codecs.segments import segment_values
from cadenza.io import atomic_path, write_text_atomic

CODEC_NAME = "cadenza.codecs.music"
CODEC_VERSION = 2
FEATURES_VERSION = 5  # bump when describe() or encode() changes: cached corpus tokens are recomputed

STYLES = ("bach", "renaissance", "medieval", "baroque", "classical", "romantic", "modern",
          "popular", "folk", "fiddle", "other")
TEMPO_BINS = (40, 48, 56, 64, 72, 80, 88, 96, 108, 120, 132, 144, 160, 176, 192, 208)
NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
LEVELS = 5
MIN_STYLE_PIECES = 50
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
PREFIX_SLOTS = ("style", "key", "tempo", "time_signature")
CONTROL_SLOTS = ("valence", "energy")   # opened at every segment (``segment_bars`` bars)
DEFAULT_TEMPO = 120.0

_DISSONANT = {1, 2, 6, 10, 11}
_MAJOR_SCALE = [0, 2, 4, 5, 7, 9, 11]
_MINOR_SCALE = [0, 2, 3, 5, 7, 8, 10, 11]  # natural minor plus the raised seventh


# --------------------------------------------------------------------------- config
@dataclass
class MusicCodecConfig:
    """Everything that defines the vocabulary; saved next to every dataset and model."""

    tokenization: str = "REMI"
    positions_per_beat: int = 12          # 12 per beat: sixteenths and eighth triplets exact
    max_duration_beats: int = 12          # longer notes are cut to this
    num_velocities: int = 16
    pitch_range: tuple = (21, 109)
    styles: tuple = STYLES
    tempo_bins: tuple = TEMPO_BINS
    levels: int = LEVELS
    # Every segment of this many bars opens with its controls (cadenza.codecs.segments).
    segment_bars: int = 4
    # Training pieces per style (filled by `cadenza data`); styles with fewer than
    # MIN_STYLE_PIECES are not offered (empty: every style is offered).
    style_pieces: dict = field(default_factory=dict)
    # Raw segment valence / energy (0..1) cut into levels at these edges. `cadenza data`
    # replaces them by the quintiles of the training split's segments (so each level holds
    # a fifth of them) and stores them in tokenizer.json: one source of truth.
    valence_edges: tuple = (0.35, 0.5, 0.62, 0.75)
    energy_edges: tuple = (0.3, 0.4, 0.48, 0.56)
    time_signatures: dict = field(default_factory=lambda: {4: list(range(1, 9)), 8: list(range(2, 13))})

    def __post_init__(self):
        if self.tokenization not in ("REMI", "TSD"):
            raise ConfigError(f"tokenization must be 'REMI' or 'TSD', not {self.tokenization!r}")
        if not 1 <= int(self.positions_per_beat) <= 48:
            raise ConfigError(f"positions_per_beat must be between 1 and 48, not {self.positions_per_beat}")
        if not 4 < int(self.max_duration_beats) <= 64:
            raise ConfigError(f"max_duration_beats must be between 5 and 64, not {self.max_duration_beats}")
        if not 1 <= int(self.num_velocities) <= 127:
            raise ConfigError(f"num_velocities must be between 1 and 127, not {self.num_velocities}")
        lo, hi = self.pitch_range
        if not 0 <= lo < hi <= 128:
            raise ConfigError(f"pitch_range must satisfy 0 <= low < high <= 128, not {self.pitch_range}")
        self.pitch_range = (int(lo), int(hi))
        self.styles = tuple(self.styles)
        if len(set(self.styles)) != len(self.styles) or "other" not in self.styles:
            raise ConfigError("styles must be distinct and include 'other'")
        self.tempo_bins = tuple(int(t) for t in self.tempo_bins)
        if list(self.tempo_bins) != sorted(set(self.tempo_bins)) or self.tempo_bins[0] <= 0:
            raise ConfigError("tempo_bins must be positive and strictly increasing")
        if self.levels < 2:
            raise ConfigError("levels must be at least 2")
        if not isinstance(self.segment_bars, int) or not 1 <= self.segment_bars <= 16:
            raise ConfigError(f"segment_bars must be a whole number from 1 to 16, not {self.segment_bars!r}")
        for name in ("valence_edges", "energy_edges"):
            edges = tuple(float(e) for e in getattr(self, name))
            if len(edges) != self.levels - 1 or list(edges) != sorted(edges) or not all(0 < e < 1 for e in edges):
                raise ConfigError(f"{name} must be {self.levels - 1} increasing numbers between 0 and 1")
            setattr(self, name, edges)
        self.time_signatures = {int(k): sorted(int(n) for n in v) for k, v in self.time_signatures.items()}
        if 4 not in self.time_signatures or 4 not in self.time_signatures[4]:
            raise ConfigError("time_signatures must include 4/4")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["pitch_range"] = list(self.pitch_range)
        d["styles"] = list(self.styles)
        d["tempo_bins"] = list(self.tempo_bins)
        d["valence_edges"] = list(self.valence_edges)
        d["energy_edges"] = list(self.energy_edges)
        d["time_signatures"] = {str(k): v for k, v in self.time_signatures.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MusicCodecConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown music codec settings: {sorted(unknown)}")
        d = dict(d)
        if "pitch_range" in d:
            d["pitch_range"] = tuple(d["pitch_range"])
        return cls(**d)


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
    score = _as_tick(score)
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
    in_key = np.isin((pitch - tonic) % 12, _MAJOR_SCALE if mode == "major" else _MINOR_SCALE)
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


# --------------------------------------------------------------------------- MIDI files
def load_midi(path):
    """Read a MIDI file into a symusic score; bad files raise DataError with one sentence."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p} does not exist")
    if p.is_dir():
        raise DataError(f"{p} is a folder, not a MIDI file")
    data = p.read_bytes()
    return score_from_bytes(data, name=str(p))


def score_from_bytes(data: bytes, name: str = "input"):
    import symusic

    if len(data) == 0:
        raise DataError(f"{name} is empty")
    if data[:4] == b"RIFF" and data[8:12] == b"RMID":  # RIFF-wrapped MIDI
        idx = data.find(b"MThd")
        data = data[idx:] if idx >= 0 else data
    if data[:4] != b"MThd":
        raise DataError(f"{name} is not a MIDI file (it does not start with a MIDI header)")
    try:
        score = symusic.Score.from_midi(data)
    except Exception as exc:  # symusic raises plain RuntimeError/ValueError on bad bytes
        raise DataError(f"{name} is a corrupt MIDI file ({str(exc).strip().splitlines()[0][:120]})") from None
    if score.note_num() == 0:
        raise DataError(f"{name} has no notes")
    return score


def write_midi(score, path) -> Path:
    """Write a symusic score as a MIDI file atomically.

    Notes of one pitch that overlap on one track cannot be told apart in a MIDI file (its
    note-offs name only the pitch), so such a track is first split into as many tracks of
    the same program as needed; reading the file back gives exactly the same notes.
    """
    path = Path(path)
    score = split_overlapping_notes(_as_tick(score))
    with atomic_path(path) as tmp:
        score.dump_midi(str(tmp))
    return path


def merge_tracks_by_program(score):
    """One track per (program, drums), notes sorted, tracks ordered by program, drums last."""
    import symusic

    groups: dict[tuple[bool, int], list] = {}
    for t in score.tracks:
        if len(t.notes):
            groups.setdefault((bool(t.is_drum), int(t.program)), []).append(t)
    if all(len(v) == 1 for v in groups.values()) and list(groups) == sorted(groups) \
            and len(groups) == len(score.tracks):
        for t in score.tracks:
            t.notes.sort()
        return score
    tracks = []
    for key in sorted(groups):
        ts = groups[key]
        arrs = [t.notes.numpy() for t in ts]
        merged = symusic.Track(name=ts[0].name, program=key[1], is_drum=key[0])
        merged.notes = symusic.Note.from_numpy(*(np.concatenate([a[f] for a in arrs])
                                                 for f in ("time", "duration", "pitch", "velocity")))
        merged.notes.sort()
        for t in ts:  # keep whatever else the tracks carry
            for name in ("controls", "pitch_bends", "pedals", "lyrics"):
                if hasattr(t, name) and len(getattr(t, name)):
                    getattr(merged, name).extend(getattr(t, name))
        tracks.append(merged)
    score.tracks.clear()
    for t in tracks:
        score.tracks.append(t)
    return score


def _sort_notes(track) -> None:
    """Sort a track's notes by (onset, pitch, duration, velocity), in place."""
    import symusic

    if len(track.notes) < 2:
        return
    a = track.notes.numpy()
    order = np.lexsort((a["velocity"], a["duration"], a["pitch"], a["time"]))
    if np.all(order[1:] > order[:-1]):
        return
    track.notes = symusic.Note.from_numpy(*(a[f][order] for f in ("time", "duration", "pitch", "velocity")))


def split_overlapping_notes(score):
    """A copy where no track holds two overlapping notes of the same pitch (see write_midi)."""
    import symusic

    if not any(_has_unison_overlap(t) for t in score.tracks):
        return score
    score = score.copy()
    tracks = list(score.tracks)
    score.tracks.clear()
    for t in tracks:
        if not _has_unison_overlap(t):
            score.tracks.append(t)
            continue
        lanes: list[list] = []      # notes per new track
        busy: list[dict] = []       # pitch -> end tick, per new track
        for n in sorted(t.notes, key=lambda n: (n.time, n.pitch, n.duration)):
            for lane, ends in zip(lanes, busy):
                if ends.get(n.pitch, -1) <= n.time:
                    break
            else:
                lanes.append([])
                busy.append({})
                lane, ends = lanes[-1], busy[-1]
            lane.append(n)
            ends[n.pitch] = n.time + n.duration
        for k, lane in enumerate(lanes):
            nt = t.copy() if k == 0 else symusic.Track(name=t.name, program=t.program, is_drum=t.is_drum)
            nt.notes.clear()
            for n in lane:
                nt.notes.append(n)
            score.tracks.append(nt)
    return score


def _has_unison_overlap(track) -> bool:
    if len(track.notes) < 2:
        return False
    a = track.notes.numpy()
    order = np.lexsort((a["time"], a["pitch"]))
    p, t, d = a["pitch"][order], a["time"][order], a["duration"][order]
    same = p[1:] == p[:-1]
    return bool(np.any(same & (t[1:] < t[:-1] + d[:-1])))


def _as_tick(score):
    import symusic.core

    return score if isinstance(score, symusic.core.ScoreTick) else score.to("tick")


def normalize_time_signature(num: int, den: int, supported: dict | None = None):
    """Write a metre with a supported denominator and the same bar length, or None.

    2/2 -> 4/4, 3/2 -> 6/4, 6/16 -> 3/8. ``supported`` maps denominators to numerators.
    """
    supported = supported or {4: list(range(1, 9)), 8: list(range(2, 13))}
    num, den = int(num), int(den)
    if den in supported and num in supported[den]:
        return num, den
    for d in sorted(supported):
        n = Fraction(num * d, den)
        if n.denominator == 1 and int(n) in supported[d]:
            return int(n), d
    return None


# --------------------------------------------------------------------------- codec
class MusicCodec:
    """MidiTok tokenizer plus Cadenza's conditioning tokens. Build with ``MusicCodec()``."""

    def __init__(self, config: MusicCodecConfig | None = None):
        import miditok

        self.config = config or MusicCodecConfig()
        c = self.config
        tok_cfg = miditok.TokenizerConfig(
            pitch_range=c.pitch_range,
            beat_res={(0, 4): c.positions_per_beat, (4, c.max_duration_beats): 4},
            num_velocities=c.num_velocities,
            special_tokens=["PAD", "BOS", "EOS"],
            use_programs=True,
            one_token_stream_for_programs=True,
            use_time_signatures=True,
            time_signature_range={k: list(v) for k, v in c.time_signatures.items()},
            use_tempos=False, use_chords=False, use_rests=False,
            use_sustain_pedals=False, use_pitch_bends=False,
        )
        self.tokenizer = getattr(miditok, c.tokenization)(tok_cfg)
        base = list(self.tokenizer.vocab.items())
        self.base_vocab_size = len(self.tokenizer)
        if sorted(i for _, i in base) != list(range(self.base_vocab_size)):
            raise DataError("MidiTok vocabulary is not contiguous; this MidiTok version is not supported")
        self._id_to_token = [None] * self.base_vocab_size
        for tok, i in base:
            self._id_to_token[i] = tok
        extra = [f"Style_{s}" for s in c.styles]
        extra += [f"Key_{key_name(pc, m)}" for m in ("major", "minor") for pc in range(12)]
        extra += [f"Tempo_{t}" for t in c.tempo_bins]
        extra += [f"Mood_{v}.{e}" for v in range(c.levels) for e in range(c.levels)]
        self._id_to_token += extra
        self._token_to_id = {t: i for i, t in enumerate(self._id_to_token)}
        self.pad_id = self._token_to_id["PAD_None"]
        self.bos_id = self._token_to_id["BOS_None"]
        self.eos_id = self._token_to_id["EOS_None"]
        self._ids_by_type: dict[str, list[int]] = {}
        for i, t in enumerate(self._id_to_token):
            self._ids_by_type.setdefault(t.split("_", 1)[0], []).append(i)
        self._ts_supported = {k: list(v) for k, v in c.time_signatures.items()}

    # ---- vocabulary ---------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self._id_to_token)

    def __len__(self) -> int:
        return self.vocab_size

    def token(self, i: int) -> str:
        return self._id_to_token[int(i)]

    def id(self, token: str) -> int:
        try:
            return self._token_to_id[token]
        except KeyError:
            raise ConfigError(f"{token!r} is not in the music vocabulary") from None

    def tokens(self, ids) -> list[str]:
        return [self.token(i) for i in ids]

    def ids_of_type(self, kind: str) -> list[int]:
        """Ids of one token type: Pitch, Velocity, Duration, Position, Bar, Program, TimeSig,
        TimeShift (TSD), Style, Key, Tempo, Mood (segment controls), PAD, BOS, EOS."""
        return list(self._ids_by_type.get(kind, []))

    def token_type(self, i: int) -> str:
        return self._id_to_token[int(i)].split("_", 1)[0]

    def pitch_ids(self) -> dict[int, int]:
        """Token id -> MIDI pitch for every pitch token (drum pitches excluded)."""
        return {i: int(self.token(i).split("_")[1]) for i in self.ids_of_type("Pitch")}

    def program_ids(self) -> dict[int, int]:
        """Token id -> MIDI program (-1 = drums)."""
        return {i: int(self.token(i).split("_")[1]) for i in self.ids_of_type("Program")}

    def bar_ids(self) -> list[int]:
        """Ids that start a bar (REMI's Bar token; empty for TSD)."""
        return self.ids_of_type("Bar")

    def time_signature_id(self, num: int, den: int) -> int:
        ts = normalize_time_signature(num, den, self._ts_supported)
        if ts is None:
            raise ConfigError(f"time signature {num}/{den} is not supported")
        return self.id(f"TimeSig_{ts[0]}/{ts[1]}")

    def offered_styles(self) -> list[str]:
        """Styles backed by enough training pieces (all styles before a corpus is built)."""
        counts = self.config.style_pieces
        if not counts:
            return list(self.config.styles)
        return [s for s in self.config.styles if counts.get(s, 0) >= MIN_STYLE_PIECES]

    def style_id(self, style: str) -> int:
        if style not in self.config.styles:
            raise ConfigError(f"unknown style {style!r}; choose one of {', '.join(self.config.styles)}")
        return self.id(f"Style_{style}")

    def key_id(self, key) -> int:
        tonic, mode = parse_key(key) if isinstance(key, str) else key
        return self.id(f"Key_{key_name(tonic, mode)}")

    def tempo_bin(self, bpm: float) -> int:
        if not (isinstance(bpm, (int, float)) and math.isfinite(bpm) and 10 <= bpm <= 400):
            raise ConfigError(f"tempo must be between 10 and 400 beats per minute, not {bpm}")
        bins = np.array(self.config.tempo_bins, dtype=float)
        return int(bins[np.argmin(np.abs(np.log(bins) - math.log(bpm)))])

    def tempo_id(self, bpm: float) -> int:
        return self.id(f"Tempo_{self.tempo_bin(bpm)}")

    def mood_id(self, valence: int, energy: int) -> int:
        """The segment control token for (valence level, energy level)."""
        self._check_level(valence)
        self._check_level(energy)
        return self.id(f"Mood_{int(valence)}.{int(energy)}")

    def mood_levels_of(self, i: int) -> tuple[int, int]:
        v, e = self.token(i).split("_")[1].split(".")
        return int(v), int(e)

    def _check_level(self, level):
        if not isinstance(level, (int, np.integer)) or not 0 <= level < self.config.levels:
            raise ConfigError(f"mood levels are whole numbers from 0 to {self.config.levels - 1}, not {level!r}")

    def slot_ids(self, slot: str) -> list[int]:
        """All ids allowed in one prefix slot (for constrained sampling of that slot)."""
        kinds = {"style": "Style", "key": "Key", "tempo": "Tempo", "time_signature": "TimeSig",
                 }
        if slot not in kinds:
            raise ConfigError(f"unknown prefix slot {slot!r}; slots are {', '.join(PREFIX_SLOTS)}")
        return self.ids_of_type(kinds[slot])

    def conditioning(self, style=None, key=None, tempo=None, time_signature=None) -> list[int | None]:
        """Ids of the four prefix slots (None where unspecified, for the model to choose)."""
        return [
            None if style is None else self.style_id(style),
            None if key is None else self.key_id(key),
            None if tempo is None else self.tempo_id(tempo),
            None if time_signature is None else self.time_signature_id(*_ts_tuple(time_signature)),
        ]

    def control_level(self, x) -> int | None:
        """A control given as a level (int) or as a value in [0, 1] (float), read as the
        position among the corpus's segments: levels are quantiles, so 0.95 is the top level
        and 0.1 the bottom one."""
        if x is None or isinstance(x, (int, np.integer)) and not isinstance(x, bool):
            if x is not None:
                self._check_level(x)
            return x
        n = self.config.levels
        return level_of(x, tuple((i + 1) / n for i in range(n - 1)))

    def control_levels(self, valence=None, energy=None, mood=None) -> tuple[int | None, int | None]:
        """(valence level, energy level) of a segment; None where the model chooses.
        ``mood`` is a name from ``MOODS`` and fills whichever of the two was not given."""
        if mood is not None:
            v, e = mood_levels(mood)
            valence = v if valence is None else valence
            energy = e if energy is None else energy
        return self.control_level(valence), self.control_level(energy)

    def control_ids(self, valence=None, energy=None, mood=None) -> list[int]:
        """The segment control tokens (Mood_v.e) that agree with what is given: one token
        when both are given, a row or column of the 5 x 5 grid when one is, all when none."""
        v, e = self.control_levels(valence, energy, mood)
        n = self.config.levels
        return [self.mood_id(a, b) for a in range(n) for b in range(n)
                if (v is None or a == v) and (e is None or b == e)]

    def prefix(self, features: MusicFeatures, style: str = "other") -> list[int]:
        """BOS plus the four conditioning ids describing ``features``."""
        ids = self.conditioning(style=style, key=(features.key_tonic, features.key_mode),
                                tempo=features.tempo, time_signature=features.time_signature)
        return [self.bos_id] + ids

    def parse_prefix(self, ids) -> tuple[dict, int]:
        """Read the conditioning prefix: ({slot: value}, index where the body starts)."""
        ids = [int(i) for i in ids]
        out: dict = {}
        i = 1 if ids and ids[0] == self.bos_id else 0
        kinds = {"Style": "style", "Key": "key", "Tempo": "tempo", "TimeSig": "time_signature"}
        for slot in PREFIX_SLOTS:
            if i >= len(ids) or not 0 <= ids[i] < self.vocab_size:
                break
            kind, _, value = self.token(ids[i]).partition("_")
            if kinds.get(kind) != slot:
                break
            if slot == "tempo":
                out[slot] = int(value)
            elif slot == "time_signature":
                n, d = value.split("/")
                out[slot] = (int(n), int(d))
            else:
                out[slot] = value
            i += 1
        return out, i

    # ---- encode / decode -----------------------------------------------------------
    def normalize(self, score):
        """A copy of ``score`` in ticks, its metres written in supported form, and one track
        per instrument (tracks of one program merged, ordered by program, drums last), so
        the tokens depend only on the notes, not on how they were split into tracks."""
        import symusic

        if isinstance(score, (str, Path)):
            score = load_midi(score)
        score = merge_tracks_by_program(_as_tick(score).copy())
        new = []
        for ts in score.time_signatures:
            norm = normalize_time_signature(ts.numerator, ts.denominator, self._ts_supported)
            if norm is None:
                continue
            new.append(symusic.TimeSignature(ts.time, norm[0], norm[1]))
        score.time_signatures.clear()
        for ts in new:
            score.time_signatures.append(ts)
        return score

    def describe(self, score, tempo: float | None = None) -> MusicFeatures:
        """``describe`` with this codec's metres and mood level edges."""
        return describe(self.normalize(score), self.config.valence_edges, self.config.energy_edges,
                        tempo_override=tempo)

    def quantize(self, score):
        """The score as the tokens see it: MidiTok's preprocessing of ``normalize(score)``.

        Onsets and durations snap to 1/positions_per_beat of a beat (beat = the metre's
        denominator), durations are capped at ``max_duration_beats`` beats, velocities snap
        to ``num_velocities`` bins, pitches outside ``pitch_range`` and duplicate notes
        (same onset, pitch and program) are dropped, tracks of one program are merged.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = self.tokenizer.preprocess_score(self.normalize(score))
        for t in q.tracks:  # canonical order of simultaneous notes: by pitch, on quantized values
            _sort_notes(t)
        return q

    def remi_ids(self, score) -> list[int]:
        """MidiTok's REMI ids of the notes (every Bar with its TimeSig, every note with its
        Program and Velocity); ``encode_body`` makes the lean stream from them."""
        q = self.quantize(score)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seq = self.tokenizer.encode(q, no_preprocess_score=True)
        if isinstance(seq, list):  # not expected with one_token_stream, but be safe
            seq = seq[0]
        return [int(i) for i in seq.ids]

    def _ts_value(self, i: int) -> tuple[int, int]:
        n, d = self.token(i).split("_")[1].split("/")
        return int(n), int(d)

    def _duration_quarters(self, i: int, den: int) -> float:
        a, b, r = (int(x) for x in self.token(i).split("_")[1].split("."))
        return (a + b / r) * 4.0 / den

    def segment_raw_values(self, ids, qpm: float, ts0=(4, 4)) -> list[tuple[float, float]]:
        """(valence, energy) in [0, 1] of every segment of a REMI or lean body, from its notes."""
        S = self.config.segment_bars
        seg_notes: list[list] = []
        seg_quarters: list[float] = []
        ts = tuple(ts0)
        bar = -1
        pitch, vel = 0, 64
        for i in ids:
            kind = self.token_type(i)
            if kind == "Bar":
                bar += 1
                if bar % S == 0:
                    seg_notes.append([])
                    seg_quarters.append(0.0)
                seg_quarters[-1] += ts[0] * 4.0 / ts[1]
            elif kind == "TimeSig":
                new_ts = self._ts_value(i)
                if bar >= 0 and new_ts != ts:
                    seg_quarters[-1] += (new_ts[0] / new_ts[1] - ts[0] / ts[1]) * 4.0
                ts = new_ts
            elif kind in ("Pitch", "PitchDrum"):
                pitch = int(self.token(i).split("_")[1]) if kind == "Pitch" else -1
            elif kind == "Velocity":
                vel = int(self.token(i).split("_")[1])
            elif kind == "Duration" and bar >= 0 and pitch >= 0:
                seg_notes[-1].append((pitch, self._duration_quarters(i, ts[1]), vel))
        spq = 60.0 / float(qpm)
        return [segment_values(n, q * spq) for n, q in zip(seg_notes, seg_quarters)]

    def lean_body(self, remi, ts0, levels=None) -> tuple[list[int], list[int]]:
        """The version-2 stream from REMI ids: a TimeSig only where the metre changes, a
        Program only where the instrument changes, a Velocity only where it changes, and
        every ``segment_bars`` bars the segment's control token (``levels``: (valence,
        energy) level per segment; 0 where not given). Returns (ids, index of each segment's
        control token)."""
        S = self.config.segment_bars
        cur_ts, cur_prog, cur_vel = self.time_signature_id(*ts0), None, None
        out: list[int] = []
        where: list[int] = []
        bar = -1
        pending = False

        def controls():
            k = len(where)
            v, e = levels[k] if levels is not None and k < len(levels) else (0, 0)
            where.append(len(out))
            out.append(self.mood_id(int(v), int(e)))

        for i in remi:
            kind = self.token_type(i)
            if kind == "Bar":
                if pending:
                    controls()
                bar += 1
                out.append(i)
                pending = bar % S == 0
                continue
            if kind == "TimeSig":
                if i != cur_ts:
                    out.append(i)
                    cur_ts = i
                continue
            if pending:
                controls()
                pending = False
            if kind == "Program":
                if i != cur_prog:
                    out.append(i)
                    cur_prog = i
            elif kind == "Velocity":
                if i != cur_vel:
                    out.append(i)
                    cur_vel = i
            else:
                out.append(i)
        if pending:
            controls()
        return out, where

    def expand_body(self, lean, ts0, program: int | None = None, velocity: int | None = None) -> list[int]:
        """MidiTok REMI ids from a version-2 body (the inverse of ``lean_body``). ``program``
        and ``velocity`` (token ids) are the ones in force where ``lean`` starts, for a body
        cut from the middle of a stream (default: Program_0 and the middle velocity)."""
        cur_ts = self.time_signature_id(*ts0)
        cur_prog = self.id("Program_0") if program is None else int(program)
        vels = self.ids_of_type("Velocity")
        cur_vel = vels[len(vels) // 2] if velocity is None else int(velocity)
        out: list[int] = []
        need_ts = need_vel = False
        prev = None
        for i in lean:
            kind = self.token_type(i)
            if kind == "Mood":
                continue
            if need_ts:
                if kind == "TimeSig":
                    cur_ts = i
                out.append(cur_ts)
                need_ts = False
                if kind == "TimeSig":
                    prev = kind
                    continue
            if kind == "TimeSig":   # a metre change not right after a bar line: keep as MidiTok would
                cur_ts = i
            if kind == "Bar":
                need_ts = True
            elif kind == "Program":
                cur_prog = i
            elif kind in ("Pitch", "PitchDrum"):
                if prev != "Program":
                    out.append(cur_prog)
                need_vel = True
            elif kind == "Velocity":
                cur_vel = i
                need_vel = False
            elif kind == "Duration" and need_vel:
                out.append(cur_vel)
                need_vel = False
            out.append(i)
            prev = kind
        if need_ts:
            out.append(cur_ts)
        return out

    def encode_parts(self, score, style: str = "other", features: MusicFeatures | None = None,
                     tempo: float | None = None) -> tuple[np.ndarray, list[int], list[tuple[float, float]]]:
        """(ids, index of every segment's control token, raw (valence, energy) per segment).

        The levels in ``ids`` use this codec's edges; ``cadenza data`` re-cuts them at the
        corpus quantiles from the raw values."""
        if isinstance(score, (str, Path)):
            score = load_midi(score)
        self.style_id(style)
        score = _as_tick(score)
        remi = self.remi_ids(score)
        if features is None:
            features = self.describe(score, tempo=tempo)
        ts_ids = set(self.ids_of_type("TimeSig"))
        first_ts = next((i for i in remi if i in ts_ids), None)
        if first_ts is not None:
            features = dataclasses.replace(features, time_signature=self._ts_value(first_ts))
        prefix = self.prefix(features, style)
        qpm = self.tempo_bin(features.tempo)
        raw = self.segment_raw_values(remi, qpm, features.time_signature)
        levels = [(level_of(v, self.config.valence_edges), level_of(e, self.config.energy_edges)) for v, e in raw]
        body, where = self.lean_body(remi, features.time_signature, levels)
        ids = prefix + body + [self.eos_id]
        return np.asarray(ids, dtype=np.int32), [w + len(prefix) for w in where], raw

    def encode(self, score, style: str = "other", features: MusicFeatures | None = None,
               tempo: float | None = None) -> np.ndarray:
        """BOS, conditioning prefix, lean body with segment controls, EOS as an int32 array.

        ``score`` may be a symusic score or a MIDI path. ``tempo`` overrides the file's
        tempo (for sources whose tempo is unknown).
        """
        return self.encode_parts(score, style, features, tempo)[0]

    def split_sequence(self, ids) -> tuple[dict, list[int]]:
        """(prefix values, MidiTok REMI body ids): strips BOS, prefix, controls, EOS and
        anything after it, and re-inserts what the lean stream leaves out."""
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        cond, start = self.parse_prefix(ids)
        body = []
        for i in ids[start:]:
            if i == self.eos_id:
                break
            if 0 <= i < self.vocab_size and i not in (self.pad_id, self.bos_id):
                body.append(i)
        return cond, self.expand_body(body, cond.get("time_signature", (4, 4)))

    def decode(self, ids, tempo: float | None = None):
        """Token ids -> symusic score (ticks). The tempo comes from the prefix unless given."""
        import symusic

        cond, body = self.split_sequence(ids)
        body = [i for i in body if i < self.base_vocab_size]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score = self.tokenizer.decode(body) if body else symusic.Score(self.tokenizer.time_division)
        qpm = float(tempo if tempo is not None else cond.get("tempo", DEFAULT_TEMPO))
        score.tempos.clear()
        score.tempos.append(symusic.Tempo(0, qpm=qpm))
        if "key" in cond:
            tonic, mode = parse_key(cond["key"])
            sharps = _sharps_for(tonic, mode)
            score.key_signatures.clear()
            score.key_signatures.append(symusic.KeySignature(0, sharps, 1 if mode == "minor" else 0))
        if len(score.time_signatures) == 0:
            n, d = cond.get("time_signature", (4, 4))
            score.time_signatures.append(symusic.TimeSignature(0, n, d))
        return score

    def decode_to_midi(self, ids, path, tempo: float | None = None) -> Path:
        """Decode and write a MIDI file atomically; returns the path."""
        return write_midi(self.decode(ids, tempo=tempo), path)

    # ---- persistence ----------------------------------------------------------------
    def vocab_hash(self) -> str:
        return hashlib.sha256("\n".join(self._id_to_token).encode()).hexdigest()[:16]

    def config_hash(self) -> str:
        """Changes whenever tokens or their meaning (config, vocabulary) change."""
        raw = json.dumps(self.config.to_dict(), sort_keys=True) + self.vocab_hash()
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {"codec": CODEC_NAME, "codec_version": CODEC_VERSION, "config": self.config.to_dict(),
                "vocab_size": self.vocab_size, "miditok_vocab_size": self.base_vocab_size,
                "vocab_sha256_16": self.vocab_hash(), "prefix": ["BOS", *PREFIX_SLOTS],
                "controls": list(CONTROL_SLOTS),
                "miditok": self.tokenizer.to_dict()}

    def save(self, path) -> Path:
        path = Path(path)
        write_text_atomic(path, json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def from_dict(cls, d: dict) -> "MusicCodec":
        if not isinstance(d, dict) or d.get("codec") != CODEC_NAME:
            raise DataError("the tokenizer file is not a Cadenza music tokenizer")
        if d.get("codec_version") != CODEC_VERSION:
            raise DataError(f"music tokenizer version {d.get('codec_version')} is not {CODEC_VERSION}: this model "
                            "or dataset was made by another Cadenza version; rebuild the dataset with "
                            "`cadenza data` and retrain, or use the Cadenza version that made it")
        codec = cls(MusicCodecConfig.from_dict(d["config"]))
        if codec.vocab_hash() != d.get("vocab_sha256_16") or codec.vocab_size != d.get("vocab_size"):
            raise DataError("the installed MidiTok builds a different vocabulary than the saved tokenizer; "
                            "install the MidiTok version named in the tokenizer file")
        return codec

    @classmethod
    def load(cls, path) -> "MusicCodec":
        p = Path(path)
        if p.is_dir():
            p = p / "tokenizer.json"
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError:
            raise DataError(f"{p} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise DataError(f"{p} is corrupt (not valid JSON)") from None
        return cls.from_dict(d)


def _ts_tuple(ts) -> tuple[int, int]:
    if isinstance(ts, str):
        try:
            n, d = ts.split("/")
            return int(n), int(d)
        except ValueError:
            raise ConfigError(f"time signature must look like 3/4, not {ts!r}") from None
    return int(ts[0]), int(ts[1])


def _sharps_for(tonic: int, mode: str) -> int:
    major = tonic if mode == "major" else (tonic + 3) % 12
    sharps = (major * 7) % 12  # circle of fifths position
    return sharps - 12 if sharps > 6 else sharps


def note_tuples(score) -> list[tuple]:
    """Every note as (onset, duration, pitch, velocity, program) with times in quarter notes
    (exact fractions), sorted; drums have program -1. For comparing scores of any tpq."""
    score = _as_tick(score)
    tpq = score.ticks_per_quarter
    out = []
    for t in score.tracks:
        prog = -1 if t.is_drum else int(t.program)
        for n in t.notes:
            out.append((Fraction(int(n.time), tpq), Fraction(int(n.duration), tpq), int(n.pitch), int(n.velocity), prog))
    out.sort()
    return out
