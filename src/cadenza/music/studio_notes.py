"""The studio's records: a note with its author, a draft and the suggestion the model made of
it, and a played note as the API takes it (checked, one sentence when it is wrong)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import NamedTuple

from cadenza.errors import ConfigError

PERSON, MODEL = "person", "model"


@dataclass
class SNote:
    """A note of the piece, in quarter-note beats."""

    id: int
    pitch: int
    start: float
    duration: float
    velocity: int = 80
    program: int = 0
    by: str = PERSON

    def to_dict(self) -> dict:
        return asdict(self)

    def key(self) -> tuple:
        return (round(self.start, 6), self.pitch, round(self.duration, 6), self.program)


class Draft(NamedTuple):
    """What a suggestion kind writes (``infill``, ``StudioSession._extend``), before it is
    numbered and kept as a ``Suggestion``."""
    notes: list[SNote]
    replaces: list[int]                 # ids of the piece's notes that accepting removes
    region: tuple[float, float]         # beats the suggestion may change
    info: dict                          # how it was chosen (infill: the candidates' scores)


@dataclass
class Suggestion:
    id: int
    kind: str
    notes: list[SNote]
    replaces: list[int]                 # ids of the piece's notes that accepting removes
    region: tuple[float, float]         # beats the suggestion may change
    request: dict
    elapsed_s: float = 0.0
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "notes": [n.to_dict() for n in self.notes],
                "replaces": list(self.replaces), "region": list(self.region), "request": self.request,
                "elapsed_s": self.elapsed_s, "info": self.info}


def check_note(n: dict) -> dict:
    """A played note as a dict, validated (ConfigError with one sentence)."""
    out = {}
    for k, lo, hi, kind in (("pitch", 0, 127, int), ("start", 0, 100_000, float), ("duration", 1e-3, 64, float),
                            ("velocity", 1, 127, int), ("program", 0, 127, int)):
        v = n.get(k, {"velocity": 80, "program": 0}.get(k))
        if v is None:
            raise ConfigError(f"a note needs {k}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and int(v) != v):
            raise ConfigError(f"note {k} must be a {'whole ' if kind is int else ''}number, not {v!r}")
        if not lo <= v <= hi:
            raise ConfigError(f"note {k} must be from {lo:g} to {hi:g}, not {v!r}")
        out[k] = kind(v)
    return out
