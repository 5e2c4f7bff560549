"""Pitch-class facts shared by the harmony policy and the harmony measures: which intervals
are consonant, which pitch-class sets form a triad or a seventh chord, and parallel motion."""

from __future__ import annotations

# Interval classes (semitones mod 12) of a lower voice against the melody.
CONSONANT = frozenset({0, 3, 4, 7, 8, 9})        # unison/octave, thirds, perfect fifth, sixths
FOURTH = 5                                        # consonant between upper voices, not above the bass
PERFECT = frozenset({0, 7})                       # the intervals that may not move in parallel
TRIADS = ((0, 4, 7), (0, 3, 7), (0, 3, 6), (0, 4, 8))                           # major, minor, dim, aug
SEVENTHS = ((0, 4, 7, 10), (0, 4, 7, 11), (0, 3, 7, 10), (0, 3, 6, 10), (0, 3, 6, 9))
_TRIAD_SETS = tuple(frozenset((r + i) % 12 for i in c) for r in range(12) for c in TRIADS)
_SEVENTH_SETS = tuple(frozenset((r + i) % 12 for i in c) for r in range(12) for c in SEVENTHS)
_CHORD_CACHE: dict = {}


def interval_class(a: int, b: int) -> int:
    """The interval between two pitches in semitones mod 12 (0 to 11)."""
    return abs(int(a) - int(b)) % 12


def is_chord(pcs, sevenths: bool = True) -> bool:
    """Do these pitch classes form a chord: all in one triad (major, minor, diminished,
    augmented), or, with three or more of them and ``sevenths``, all in one seventh chord
    (dominant, major, minor, half-diminished, diminished)? One pitch class counts; two count
    only inside a triad, since every pair fits some seventh chord."""
    s = frozenset(int(p) % 12 for p in pcs)
    key = (s, sevenths)
    hit = _CHORD_CACHE.get(key)
    if hit is None:
        hit = len(s) <= 1 or any(s <= c for c in _TRIAD_SETS) or (
            sevenths and len(s) >= 3 and any(s <= c for c in _SEVENTH_SETS))
        _CHORD_CACHE[key] = hit
    return hit


def is_parallel(a1: int, a2: int, b1: int, b2: int) -> bool:
    """Two voices moving a1 -> a2 and b1 -> b2 (both moving, the same way) from a perfect fifth
    to a perfect fifth or from an octave/unison to an octave/unison (mod 12)."""
    if a1 == a2 or b1 == b2 or (a2 > a1) != (b2 > b1):
        return False
    c1, c2 = interval_class(a1, b1), interval_class(a2, b2)
    return c1 == c2 and c1 in PERFECT


def tonic_triad(tonic: int) -> frozenset:
    """The pitch classes a final tonic chord may hold: root, either third (a Picardy third
    counts), fifth."""
    t = int(tonic) % 12
    return frozenset({t, (t + 3) % 12, (t + 4) % 12, (t + 7) % 12})


def continue_voices(prev, new) -> list[tuple[int | None, int]]:
    """Which previous pitch each new pitch continues, as (previous or None, new) pairs: both
    sorted, matched in order (voices do not cross) to the subset of the larger side that
    moves least in total (ties: the lower subset)."""
    from itertools import combinations

    prev, new = sorted(int(p) for p in prev), sorted(int(p) for p in new)
    if not prev or not new:
        return [(None, q) for q in new]
    if len(prev) >= len(new):
        best = min(combinations(prev, len(new)), key=lambda c: sum(abs(a - b) for a, b in zip(c, new)))
        return list(zip(best, new))
    best = min(combinations(range(len(new)), len(prev)),
               key=lambda c: sum(abs(prev[i] - new[j]) for i, j in enumerate(c)))
    pair = dict(zip(best, prev))
    return [(pair.get(j), q) for j, q in enumerate(new)]
