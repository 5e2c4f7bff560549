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


def line(notes: list, top: bool = True) -> list:
    """The top (or bottom) line of ``notes``: at each onset the highest (lowest) note starting
    there, unless a line note still sounding is higher (lower): a skyline."""
    by_onset: dict[float, list] = {}
    for n in notes:
        by_onset.setdefault(round(n.start, 6), []).append(n)
    out: list = []
    for t in sorted(by_onset):
        n = (max if top else min)(by_onset[t], key=lambda x: (x.pitch, -x.id) if top else (x.pitch, x.id))
        held = [m for m in out if m.start + m.duration > t + 1e-6]
        if any((m.pitch > n.pitch) if top else (m.pitch < n.pitch) for m in held):
            continue
        out.append(n)
    return out


def followed_voice(notes: list) -> list:
    """The voice the person is playing, which the studio's predictions continue: on the
    instrument of the person's last note, the top line where that note is the highest sounding
    (a melody, with or without the model's voices under it), the bottom line of the person's
    notes there where it is the lowest (a bass), else the top line of the person's notes; the
    top line of the piece when the person has played nothing."""
    person = [n for n in notes if n.by == PERSON]
    if not person:
        return line(notes)
    last = max(person, key=lambda n: (n.start, n.id))
    same = [n for n in notes if n.program == last.program]
    sounding = [n for n in same if n.start <= last.start + 1e-6 < n.start + n.duration]
    if all(n.pitch <= last.pitch for n in sounding):
        return line(same, top=True)
    mine = [n for n in same if n.by == PERSON]
    if all(n.pitch >= last.pitch for n in sounding):
        return line(mine, top=False)
    return line(mine)
