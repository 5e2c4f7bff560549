"""Constraints a person puts on the model's suggestions: key/scale lock, role, density.

``Constraints`` says what is wanted; ``ConstrainedPolicy(policy, constraints)`` wraps any
grammar policy so that decoding can only write notes that obey them (the grammar's own
rules still hold). ``check(notes, constraints, key)`` says which notes of a suggestion break
them, for tests and benchmarks.

- ``scale``: a key ("D", "F#m"): only pitches of its scale (major, or natural + harmonic
  minor, so a leading tone is allowed);
- ``role``: "melody" (one note at a time, pitches 55-96), "bass" (one note at a time,
  pitches 28-55) or "chords" (2 to 4 notes at each onset, pitches 40-84); None: anything;
- ``density``: "sparse" (onsets on beats only), "medium" (on eighth notes) or "dense"
  (any position); None: anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from cadenza.codecs.music import parse_key
from cadenza.errors import ConfigError
from cadenza.music.grammar import DUR, PITCH, POS, PROG, RemiState

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10, 11)        # natural minor plus the raised seventh
ROLES = {"melody": (55, 96, 1, 1), "bass": (28, 55, 1, 1), "chords": (40, 84, 2, 4)}
DENSITIES = {"sparse": 1, "medium": 2, "dense": None}    # onsets per beat (None: any position)


@dataclass(frozen=True)
class Constraints:
    scale: str | None = None
    role: str | None = None
    density: str | None = None

    def __post_init__(self):
        if self.scale is not None:
            parse_key(self.scale)          # ConfigError on a bad key
        if self.role is not None and self.role not in ROLES:
            raise ConfigError(f"unknown role {self.role!r}; choose one of {', '.join(ROLES)}")
        if self.density is not None and self.density not in DENSITIES:
            raise ConfigError(f"unknown density {self.density!r}; choose one of {', '.join(DENSITIES)}")

    @property
    def empty(self) -> bool:
        return self.scale is None and self.role is None and self.density is None

    def pitch_classes(self) -> set[int] | None:
        if self.scale is None:
            return None
        tonic, mode = parse_key(self.scale)
        return {(tonic + i) % 12 for i in (MAJOR if mode == "major" else MINOR)}

    def pitch_ok(self, pitch: int) -> bool:
        pcs = self.pitch_classes()
        if pcs is not None and pitch % 12 not in pcs:
            return False
        if self.role is not None:
            lo, hi, _, _ = ROLES[self.role]
            return lo <= pitch <= hi
        return True

    def to_dict(self) -> dict:
        return asdict(self)


class ConstrainedPolicy:
    """``policy`` with ``constraints`` applied to what it allows (same interface as a GrammarPolicy)."""

    def __init__(self, policy, constraints: Constraints):
        self.inner, self.c, self.remi = policy, constraints, policy.remi
        r = self.remi
        bad = [i for p, i in r.pitch_ids.items() if not constraints.pitch_ok(p)]
        self.m_bad_pitch = r.mask_of(bad)
        self.m_pitch = r.masks[PITCH]
        self.m_prog = r.masks[PROG]
        self.m_pos = r.masks[POS]
        role = ROLES.get(constraints.role)
        self.min_notes, self.max_notes = (role[2], role[3]) if role else (1, None)
        self.per_beat = DENSITIES.get(constraints.density)

    def __getattr__(self, name):          # the wrapped policy's other attributes (target, prefix, ...)
        return getattr(self.inner, name)

    def _positions_off_grid(self, s: RemiState) -> torch.Tensor:
        r = self.remi
        step = max(1, r.ppb // self.per_beat)
        off = [i for q, i in r.pos_ids.items() if q % step]
        return r.mask_of(off)

    def allowed(self, s: RemiState) -> torch.Tensor:
        m = self.inner.allowed(s).clone()
        if not bool(m.any()):
            return m
        m &= ~self.m_bad_pitch
        if s.in_body and s.last == DUR:
            if self.max_notes is not None and s.notes_here >= self.max_notes:
                m &= ~(self.m_pitch | self.m_prog)          # this onset is full
            elif s.notes_here < self.min_notes and bool((m & self.m_pitch).any()):
                m &= self.m_pitch | self.m_prog             # a chord needs more notes here
        if self.per_beat is not None:
            m &= ~self._positions_off_grid(s)
        if not bool(m.any()):                               # never leave nothing: the grammar wins
            return self.inner.allowed(s)
        return m


def check(notes, constraints: Constraints, ppb: int) -> list:
    """The notes (dicts with pitch, start in beats) that break ``constraints``."""
    bad = []
    onsets: dict[float, int] = {}
    for n in notes:
        onsets[round(n["start"], 6)] = onsets.get(round(n["start"], 6), 0) + 1
    per_beat = DENSITIES.get(constraints.density)
    role = ROLES.get(constraints.role)
    for n in notes:
        ok = constraints.pitch_ok(int(n["pitch"]))
        if per_beat is not None:
            x = n["start"] * per_beat
            ok = ok and abs(x - round(x)) < 1e-6
        if role is not None and role[3] == 1:
            ok = ok and onsets[round(n["start"], 6)] == 1
        if not ok:
            bad.append(n)
    return bad
