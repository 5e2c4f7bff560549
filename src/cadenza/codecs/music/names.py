"""Names musicians read: a MIDI pitch as "C#4", a duration in quarter notes as "dotted quarter"."""

from __future__ import annotations

from fractions import Fraction

from cadenza.codecs.music.features import NOTE_NAMES


def pitch_name(pitch: int) -> str:
    """MIDI pitch -> scientific name (60 -> C4)."""
    return f"{NOTE_NAMES[int(pitch) % 12]}{int(pitch) // 12 - 1}"


_DURATION_NAMES = {Fraction(6): "dotted whole", Fraction(4): "whole", Fraction(3): "dotted half",
                   Fraction(2): "half", Fraction(3, 2): "dotted quarter", Fraction(1): "quarter",
                   Fraction(4, 3): "half-note triplet", Fraction(3, 4): "dotted eighth", Fraction(1, 2): "eighth",
                   Fraction(2, 3): "quarter triplet", Fraction(1, 3): "eighth triplet",
                   Fraction(3, 8): "dotted sixteenth", Fraction(1, 4): "sixteenth",
                   Fraction(1, 6): "sixteenth triplet", Fraction(1, 8): "thirty-second"}


def duration_name(quarters) -> str:
    """A duration in quarter notes -> 'dotted quarter', 'eighth triplet', or '2 1/2 quarters'."""
    q = Fraction(quarters).limit_denominator(96)
    if q in _DURATION_NAMES:
        return _DURATION_NAMES[q]
    whole, rest = divmod(q, 1)
    text = (f"{int(whole)} " if whole else "") + (f"{rest.numerator}/{rest.denominator}" if rest else "")
    return f"{text.strip()} quarters"
