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

The analysis the prefix is made from (key, tempo, valence, energy: ``describe``) lives in
``cadenza.codecs.features``, MIDI reading/writing and note clean-up in
``cadenza.codecs.midi_files``; their names are importable from here too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cadenza.codecs.features import (DEFAULT_TEMPO, LEVELS, MOODS, NOTE_NAMES, MusicFeatures, _MAJOR_SCALE, _MINOR_SCALE,  # noqa: F401
                                     describe, estimate_key, key_name, level_of, mood_levels, parse_key)
from cadenza.codecs.midi_files import (_as_tick, _sort_notes, load_midi, merge_tracks_by_program,  # noqa: F401
                                       normalize_time_signature, note_tuples, score_from_bytes,
                                       split_overlapping_notes, write_midi)
from cadenza.codecs.segments import segment_values
from cadenza.errors import ConfigError, DataError
from cadenza.io import write_text_atomic

CODEC_NAME = "cadenza.codecs.music"
CODEC_VERSION = 2
FEATURES_VERSION = 5  # bump when describe() or encode() changes: cached corpus tokens are recomputed

STYLES = ("bach", "renaissance", "medieval", "baroque", "classical", "romantic", "modern",
          "popular", "folk", "fiddle", "other")
TEMPO_BINS = (40, 48, 56, 64, 72, 80, 88, 96, 108, 120, 132, 144, 160, 176, 192, 208)
MIN_STYLE_PIECES = 50
PREFIX_SLOTS = ("style", "key", "tempo", "time_signature")
CONTROL_SLOTS = ("valence", "energy")   # opened at every segment (``segment_bars`` bars)



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
