"""The music vocabulary: MidiTok's REMI ids plus Cadenza's prefix (Style, Key, Tempo) and Mood tokens."""

from __future__ import annotations

import math

import numpy as np

from cadenza.bounds import TEMPO
from cadenza.codecs.music.config import MIN_STYLE_PIECES, PREFIX_SLOTS, MusicCodecConfig
from cadenza.codecs.music.features import MusicFeatures, key_name, level_of, mood_levels, parse_key
from cadenza.codecs.music.midi import normalize_time_signature
from cadenza.errors import ConfigError, DataError


INT_VALUED = ("Pitch", "PitchDrum", "Position", "Program", "Velocity", "Tempo")


def token_value(token: str):
    """A token's value, read from its name (the one parser of token names): an int for
    Pitch, PitchDrum, Position, Program, Velocity and Tempo; (numerator, denominator) for a
    TimeSig; (beats, part, resolution) for a Duration (beats + part / resolution of the
    metre's denominator); (valence, energy) levels for a Mood; the name for a Style or Key;
    None for the rest (Bar, PAD, BOS, EOS)."""
    kind, _, v = token.partition("_")
    if kind in INT_VALUED:
        return int(v)
    if kind == "TimeSig":
        n, d = v.split("/")
        return int(n), int(d)
    if kind == "Duration":
        a, b, r = (int(x) for x in v.split("."))
        return a, b, r
    if kind == "Mood":
        va, e = v.split(".")
        return int(va), int(e)
    if kind in ("Style", "Key"):
        return v
    return None


class MusicVocab:
    """The token table: MidiTok's ids, then the Style, Key, Tempo and Mood tokens; ids by type,
    the prefix and the segment control ids. ``MusicCodec`` adds scores <-> tokens."""

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

    def value(self, i: int):
        """Token ``i``'s value (``token_value``)."""
        return token_value(self._id_to_token[int(i)])

    def pitch_ids(self) -> dict[int, int]:
        """Token id -> MIDI pitch for every pitch token (drum pitches excluded)."""
        return {i: self.value(i) for i in self.ids_of_type("Pitch")}

    def program_ids(self) -> dict[int, int]:
        """Token id -> MIDI program (-1 = drums)."""
        return {i: self.value(i) for i in self.ids_of_type("Program")}

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
        if not (isinstance(bpm, (int, float)) and math.isfinite(bpm) and TEMPO.lo <= bpm <= TEMPO.hi):
            raise ConfigError(f"tempo must be between {TEMPO.lo} and {TEMPO.hi} beats per minute, not {bpm}")
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
        return self.value(i)

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


def _ts_tuple(ts) -> tuple[int, int]:
    if isinstance(ts, str):
        try:
            n, d = ts.split("/")
            return int(n), int(d)
        except ValueError:
            raise ConfigError(f"time signature must look like 3/4, not {ts!r}") from None
    return int(ts[0]), int(ts[1])
