"""Mood plans: which valence and energy each segment of a piece is forced to.

A plan is a list of changes per control, each ``(from_bar, value)`` with bars counted from
1. Values are numbers in [0, 1] (the position among the corpus's segments: 0.9 is the top
fifth), whole-number levels, or for ``mood`` a name from ``MOODS``. A segment takes the
last change at or before its first bar, so a change shows from the next segment on
(segments are ``segment_bars`` bars long: bars 1-4, 5-8, ... with the shipped tokenizer).

The command-line form is ``VALUE[@BAR],VALUE@BAR,...``, for example ``--energy 0.2,0.8@9``
(low energy, then high from bar 9) or ``--mood calm,energetic@17``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cadenza.codecs.music import MOODS
from cadenza.errors import ConfigError


def _changes(value, what: str, names: bool = False) -> list[tuple[int, object]]:
    """A plan from None, a single value, a list of (bar, value) pairs or the text form."""
    if value is None:
        return []
    if isinstance(value, str):
        out = []
        for k, part in enumerate(p.strip() for p in value.split(",")):
            text, _, bar = part.partition("@")
            try:
                b = int(bar) if bar else (1 if k == 0 else None)
            except ValueError:
                b = None
            if b is None or b < 1:
                raise ConfigError(f"--{what} {value!r}: write VALUE or VALUE@BAR with bars from 1, "
                                  f"e.g. 0.2,0.8@9")
            if names:
                v = text.strip()
                if v not in MOODS:
                    raise ConfigError(f"unknown mood {v!r} in --{what}; choose from {', '.join(MOODS)}")
            else:
                try:
                    v = float(text)
                except ValueError:
                    raise ConfigError(f"--{what} {value!r}: {text!r} is not a number between 0 and 1") from None
            out.append((b, v))
        value = out
    elif not isinstance(value, (list, tuple)):
        value = [(1, value)]
    changes = sorted((int(b), v) for b, v in value)
    for b, v in changes:
        if names:
            if v not in MOODS:
                raise ConfigError(f"unknown mood {v!r}; choose one of {', '.join(MOODS)}")
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= (4 if isinstance(v, int) else 1):
            raise ConfigError(f"{what} must be a number between 0 and 1 (or a level 0-4), not {v!r}")
    if len({b for b, _ in changes}) != len(changes):
        raise ConfigError(f"--{what} names the same bar twice")
    return changes


def _at(changes, bar: int):
    cur = None
    for b, v in changes:
        if b <= bar:
            cur = v
    return cur


@dataclass
class MoodPlan:
    valence: list = field(default_factory=list)
    energy: list = field(default_factory=list)
    mood: list = field(default_factory=list)

    @classmethod
    def make(cls, valence=None, energy=None, mood=None) -> "MoodPlan":
        return cls(_changes(valence, "valence"), _changes(energy, "energy"), _changes(mood, "mood", names=True))

    @property
    def empty(self) -> bool:
        return not (self.valence or self.energy or self.mood)

    def levels_at(self, codec, bar: int) -> tuple[int | None, int | None]:
        return codec.control_levels(_at(self.valence, bar), _at(self.energy, bar), _at(self.mood, bar))

    def moods(self, codec):
        """``moods(segment)`` for a ``GrammarPolicy``: allowed Mood ids, None where free."""
        S = codec.config.segment_bars
        cache: dict[int, list | None] = {}

        def allowed(segment: int):
            if segment not in cache:
                v, e = self.levels_at(codec, segment * S + 1)
                cache[segment] = None if v is None and e is None else codec.control_ids(v, e)
            return cache[segment]

        return None if self.empty else allowed

    def to_dict(self) -> dict:
        return {k: [[b, v] for b, v in getattr(self, k)] for k in ("valence", "energy", "mood") if getattr(self, k)}
