"""When an accompaniment note is consonant with the player, and the share of such notes.

The rule (issue 26): an accompaniment note is consonant when, against every note the player
is sounding at its onset, the interval is a unison, third, fifth, sixth or octave (0, 3, 4,
7, 8 or 9 semitones, modulo the octave), or a fourth (5) whose lower note is not the bass
(the lowest note sounding then, the player's and the accompaniment's together).
``consonance_share`` scores a whole take; the engine's voicing (``live.harmony``) uses
``consonant`` to weigh its choices against the player's likely next notes.
"""

from __future__ import annotations

from dataclasses import dataclass

INTERVALS = frozenset({0, 3, 4, 7, 8, 9})
FOURTH = 5


def consonant(a: int, p: int, bass: int) -> bool:
    """Accompaniment pitch ``a`` against a player's pitch ``p``, ``bass`` the lowest sounding."""
    i = abs(a - p) % 12
    return i in INTERVALS or (i == FOURTH and min(a, p) != bass)


def consonant_with_all(a: int, player: tuple, bass: int) -> bool:
    return all(consonant(a, p, bass) for p in player)


@dataclass(frozen=True)
class Sound:
    """A note as it sounded: pitch, start and end (seconds or beats; one unit per take)."""

    pitch: int
    start: float
    end: float


@dataclass(frozen=True)
class Consonance:
    notes: int            # accompaniment notes
    checked: int          # ... with a player's note sounding at their onset
    consonant: int

    @property
    def share(self) -> float:
        return self.consonant / self.checked if self.checked else float("nan")

    def to_dict(self) -> dict:
        return {"notes": self.notes, "checked": self.checked, "consonant": self.consonant, "share": self.share}


def player_sounding(player, t: float, tol: float) -> tuple:
    """The player's pitches sounding at ``t``: started by ``t + tol`` (a note played a little
    late for the beat counts as on it) and not ended by ``t + tol``."""
    return tuple(n.pitch for n in player if n.start <= t + tol and n.end > t + tol)


def consonance_share(accompaniment, player, tol: float = 0.0) -> Consonance:
    """How many accompaniment notes (``Sound``s) are consonant with the player's sounding notes
    at their onset; notes with no player's note sounding are not checked."""
    checked = good = 0
    for a in accompaniment:
        ps = player_sounding(player, a.start, tol)
        if not ps:
            continue
        acc = [b.pitch for b in accompaniment if b.start <= a.start + 1e-9 and b.end > a.start + 1e-9]
        bass = min(list(ps) + acc + [a.pitch])
        checked += 1
        good += consonant_with_all(a.pitch, ps, bass)
    return Consonance(len(accompaniment), checked, good)
