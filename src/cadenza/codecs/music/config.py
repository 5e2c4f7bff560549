"""What defines the music vocabulary: the codec's constants and ``MusicCodecConfig`` (saved in tokenizer.json)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from cadenza.codecs.music.features import LEVELS
from cadenza.errors import ConfigError

CODEC_NAME = "cadenza.codecs.music"   # the name tokenizer.json carries (kept as is: shipped files hold it)
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
    # Every segment of this many bars opens with its controls (cadenza.codecs.music.segments).
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
