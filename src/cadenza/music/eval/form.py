"""Form: does a piece repeat its bars and phrases, and does it end on its tonic?

Measured on the *top line* of a piece (at each onset the highest pitched note of any
non-drum track), bar by bar, the bars cut by the piece's own time signatures:

- a bar's **pattern** is its rhythm and its intervals: the onsets of its top-line notes
  relative to the bar line, and the steps between consecutive notes. Transposition does not
  change it, so a sequence (the same bar a step higher) counts as a repeat. A bar without a
  note has no pattern and never repeats;
- ``bar_repeats``: the share of bars (with a note) whose pattern occurs in an earlier bar;
- ``phrase_repeats``: the share of 2-bar phrases (bars b, b+1, starting on any bar line, both
  with notes) that repeat an earlier phrase ending before b: both bars' patterns and the step
  between their first notes match, at any transposition;
- ``tonic_ending``: the last top-line note of the whole piece is on the tonic of its key;
- ``patterns_per_bar``: distinct patterns over bars with a note (1.0: nothing repeats).

``similarity`` gives the bar-by-bar matrix (1 where two bars share a pattern) for a picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cadenza.music.eval.control_measures import notes_of

def tonic_of(key: str | None) -> int | None:
    """Pitch class of a key's tonic ("G", "F#m", "Bb minor" -> 7, 6, 10); None if not a key."""
    from cadenza.codecs.music.features import parse_key
    from cadenza.errors import ConfigError

    try:
        return parse_key(key)[0] if key else None
    except ConfigError:
        return None


@dataclass(frozen=True)
class TopLine:
    """The highest note at each onset: pitch, onset and its 0-based bar; ``bar_start`` per bar."""

    pitch: np.ndarray
    onset: np.ndarray
    bar: np.ndarray
    bar_start: np.ndarray
    n_bars: int


def top_line(x, n_bars: int | None = None) -> TopLine:
    """The top line of a symusic score or a ``Piece``; only its first ``n_bars`` bars when given."""
    from cadenza.music.eval.control_measures import bar_starts

    notes = notes_of(x)
    keep = np.ones(len(notes.pitch), dtype=bool)
    if len(notes.onset):  # the highest pitch per onset (notes come sorted by onset, then pitch)
        keep[:-1] = notes.onset[1:] != notes.onset[:-1]
    pitch, onset, bar = notes.pitch[keep], notes.onset[keep], notes.bar[keep]
    total = notes.n_bars if n_bars is None else min(notes.n_bars, int(n_bars))
    if n_bars is not None:
        sel = bar < total
        pitch, onset, bar = pitch[sel], onset[sel], bar[sel]
    score = x.score() if hasattr(x, "ids") and hasattr(x, "score") else x
    starts = bar_starts(score, int(onset.max()) if len(onset) else 0)
    return TopLine(pitch=pitch, onset=onset, bar=bar, bar_start=starts[:max(total, 1)], n_bars=total)


def bar_patterns(line: TopLine) -> list[tuple | None]:
    """Each bar's pattern (onsets from the bar line, steps between its notes), None if empty."""
    out: list[tuple | None] = []
    for b in range(line.n_bars):
        sel = line.bar == b
        if not sel.any():
            out.append(None)
            continue
        on = tuple(int(t) for t in line.onset[sel] - line.bar_start[b])
        steps = tuple(int(s) for s in np.diff(line.pitch[sel]))
        out.append((on, steps))
    return out


def _first_pitch(line: TopLine, b: int) -> int | None:
    sel = np.flatnonzero(line.bar == b)
    return int(line.pitch[sel[0]]) if len(sel) else None


@dataclass(frozen=True)
class Form:
    bars: int                  # bars with a note
    bar_repeats: float         # share of those repeating an earlier bar's pattern
    phrases: int               # 2-bar phrases with notes in both bars
    phrase_repeats: float      # share of those repeating an earlier phrase
    patterns_per_bar: float    # distinct patterns / bars with a note
    tonic_ending: bool | None  # None when the key is unknown or the piece has no notes

    def to_dict(self) -> dict:
        return {"bars": self.bars, "bar_repeats": self.bar_repeats, "phrases": self.phrases,
                "phrase_repeats": self.phrase_repeats, "patterns_per_bar": self.patterns_per_bar,
                "tonic_ending": self.tonic_ending}


def form_of(x, key: str | None, n_bars: int | None = None) -> Form:
    """The form measures of a piece (score or Piece) in ``key``: repeats over its first ``n_bars``
    bars (all where None), the ending where the whole piece ends."""
    line = top_line(x, n_bars)
    whole = line if n_bars is None else top_line(x)
    pats = bar_patterns(line)
    seen: set = set()
    filled = repeats = 0
    for p in pats:
        if p is None:
            continue
        filled += 1
        repeats += p in seen
        seen.add(p)
    phrases = phrase_rep = 0
    earlier: dict = {}   # phrase -> the first bar it starts on
    for b in range(len(pats) - 1):
        a, c = pats[b], pats[b + 1]
        if a is None or c is None:
            continue
        phrase = (a, c, _first_pitch(line, b + 1) - _first_pitch(line, b))
        phrases += 1
        first = earlier.setdefault(phrase, b)
        phrase_rep += first + 2 <= b
    tonic = tonic_of(key) if key else None
    ending = None if tonic is None or not len(whole.pitch) else int(whole.pitch[-1]) % 12 == tonic
    return Form(bars=filled, bar_repeats=repeats / filled if filled else 0.0, phrases=phrases,
                phrase_repeats=phrase_rep / phrases if phrases else 0.0,
                patterns_per_bar=len(seen) / filled if filled else 0.0, tonic_ending=ending)


def similarity(x, n_bars: int | None = None) -> np.ndarray:
    """(bars, bars) matrix: 1 where two bars share a pattern (any transposition), 0 else."""
    pats = bar_patterns(top_line(x, n_bars))
    n = len(pats)
    m = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        for j in range(n):
            m[i, j] = pats[i] is not None and pats[i] == pats[j]
    return m


def summarize(forms: list[Form]) -> dict:
    """Bar and phrase repeats pooled over all bars/phrases, tonic endings over pieces with a key."""
    bars = sum(f.bars for f in forms)
    phrases = sum(f.phrases for f in forms)
    ends = [f.tonic_ending for f in forms if f.tonic_ending is not None]
    return {"pieces": len(forms), "bars": bars,
            "bar_repeats": sum(f.bar_repeats * f.bars for f in forms) / bars if bars else 0.0,
            "phrase_repeats": sum(f.phrase_repeats * f.phrases for f in forms) / phrases if phrases else 0.0,
            "tonic_endings": sum(ends) / len(ends) if ends else 0.0,
            "patterns_per_bar": float(np.mean([f.patterns_per_bar for f in forms])) if forms else 0.0}
