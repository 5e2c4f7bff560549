"""Does the music model follow its controls? The measures, on composed pieces and on the corpus.

The measures read notes (drums left out) from a symusic score or a ``Piece``; a note's bar is
the bar its onset falls in, from the score's time signatures (bars counted from tick 0):

- ``key_share(notes, key)``: the share of notes whose pitch class is in the key's scale,
  counting notes (not durations): the major scale for a major key; for a minor key the
  natural minor plus the raised seventh (``MAJOR_SCALE`` / ``MINOR_SCALE`` of the codec).
- ``bar_counts(notes)``: notes starting in each bar; ``notes_per_bar`` their mean over the
  piece's bars or a range of them (empty bars count as 0), ``segment_notes_per_bar`` per
  segment (bars 1-4, 5-8, ... for 4-bar segments).
- ``major_third_share(notes)``: major thirds / (minor + major thirds), from two pooled counts:

  * harmony: at every onset time, the distinct pitches sounding then (notes with
    onset <= t < end) are measured above the lowest of them (the bass): an interval of
    3 semitones mod 12 is a minor third (also a minor tenth), 4 a major third;
  * melody: the melody line is the highest note starting at each onset; each step between
    consecutive onsets, |p[k+1] - p[k]| mod 12, counts the same way.

  Intervals are taken above the bass rather than between every pair of sounding notes
  because every pair cannot tell a major triad from a minor one (C-E-G and C-Eb-G each hold
  one third of each size); above the bass, a major triad counts one major third, a minor
  triad one minor third. A single line (no two notes sounding together) is measured by its
  melodic steps alone. ``third_counts`` gives the four counts, for inspection.

``corpus_reference`` gives the same measures on real segments of the corpus, by the Mood
level the codec gave them. The checks that use them are in ``controls``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

from cadenza.codecs.music.features import MAJOR_SCALE, MINOR_SCALE, parse_key
from cadenza.errors import ConfigError


# --------------------------------------------------------------------------- notes
@dataclass(frozen=True)
class Notes:
    """The pitched notes of a piece as arrays (ticks), each with the 0-based bar of its onset."""

    onset: np.ndarray
    end: np.ndarray
    pitch: np.ndarray
    bar: np.ndarray
    n_bars: int

    def __len__(self) -> int:
        return len(self.pitch)

    def in_bars(self, bars=None) -> np.ndarray:
        """Mask of the notes starting in ``bars`` = (first, last), 1-based and inclusive (None: all)."""
        if bars is None:
            return np.ones(len(self.pitch), dtype=bool)
        lo, hi = _bar_range(bars)
        return (self.bar >= lo - 1) & (self.bar <= hi - 1)


def _bar_range(bars) -> tuple[int, int]:
    lo, hi = (int(b) for b in bars)
    if not 1 <= lo <= hi:
        raise ConfigError(f"a bar range runs from bar 1 up (first <= last), not {bars!r}")
    return lo, hi


def bar_starts(score, until: int) -> np.ndarray:
    """Start ticks of every bar up to tick ``until`` (at least one bar), from the time signatures."""
    tpq = int(score.ticks_per_quarter)
    sigs = sorted((int(t.time), int(t.numerator), int(t.denominator)) for t in score.time_signatures) or [(0, 4, 4)]
    if sigs[0][0] > 0:
        sigs.insert(0, (0, 4, 4))
    starts = []
    t = 0
    k = 0
    while t <= until or not starts:
        while k + 1 < len(sigs) and sigs[k + 1][0] <= t:
            k += 1
        starts.append(t)
        _, num, den = sigs[k]
        t += max(1, num * tpq * 4 // den)
    return np.asarray(starts, dtype=np.int64)


def notes_of(x, n_bars: int | None = None) -> Notes:
    """The pitched notes of a symusic score (tick time) or a ``Piece`` (its decoded score).

    ``n_bars``: how many bars the piece has (default: a Piece's ``bars``; for a score, up to
    the bar of the last onset), so trailing empty bars count in ``notes_per_bar``."""
    if hasattr(x, "ids") and hasattr(x, "score"):     # a Piece
        if n_bars is None:
            n_bars = int(x.bars)
        x = x.score()
    score = x
    if not str(getattr(score, "ttype", "tick")).lower().endswith("tick"):
        score = score.to("tick")
    on, du, pi = [], [], []
    for t in score.tracks:
        if t.is_drum:
            continue
        for n in t.notes:
            on.append(int(n.time))
            du.append(max(1, int(n.duration)))
            pi.append(int(n.pitch))
    onset = np.asarray(on, dtype=np.int64)
    order = np.lexsort((np.asarray(pi, dtype=np.int64), onset)) if len(onset) else np.zeros(0, dtype=np.int64)
    onset = onset[order]
    end = onset + np.asarray(du, dtype=np.int64)[order]
    pitch = np.asarray(pi, dtype=np.int64)[order]
    starts = bar_starts(score, int(onset.max()) if len(onset) else 0)
    bar = np.searchsorted(starts, onset, side="right") - 1
    if n_bars is None:
        n_bars = int(bar.max()) + 1 if len(bar) else 0
    return Notes(onset=onset, end=end, pitch=pitch, bar=bar.astype(np.int64), n_bars=int(n_bars))


def _as_notes(x) -> Notes:
    return x if isinstance(x, Notes) else notes_of(x)


# --------------------------------------------------------------------------- key
def scale_pitch_classes(key) -> frozenset[int]:
    """Pitch classes of a key ("C", "F#m", "Bb minor" or (tonic, mode)): the major scale, or
    natural minor plus the raised seventh."""
    tonic, mode = parse_key(key) if isinstance(key, str) else key
    steps = MAJOR_SCALE if mode == "major" else MINOR_SCALE
    return frozenset((int(tonic) + s) % 12 for s in steps)


def key_share(x, key, bars=None) -> float | None:
    """Share of notes (starting in ``bars``) whose pitch class is in ``key``'s scale; None without notes."""
    n = _as_notes(x)
    p = n.pitch[n.in_bars(bars)]
    if not len(p):
        return None
    return float(np.isin(p % 12, sorted(scale_pitch_classes(key))).mean())


# --------------------------------------------------------------------------- density
def bar_counts(x) -> np.ndarray:
    """Notes starting in each bar of the piece (length ``n_bars``)."""
    n = _as_notes(x)
    return np.bincount(n.bar[n.bar < n.n_bars], minlength=n.n_bars)[: n.n_bars] if n.n_bars else np.zeros(0, int)


def notes_per_bar(x, bars=None) -> float | None:
    """Mean notes starting per bar over the piece's bars, or over ``bars`` = (first, last)
    (1-based, inclusive; only bars the piece has). None for a piece of no bars."""
    n = _as_notes(x)
    counts = bar_counts(n)
    if bars is not None:
        lo, hi = _bar_range(bars)
        counts = counts[lo - 1: hi]
    return float(counts.mean()) if len(counts) else None


def segment_notes_per_bar(x, segment_bars: int = 4) -> list[float]:
    """``notes_per_bar`` of each segment: bars 1..S, S+1..2S, ... (the last may be shorter)."""
    counts = bar_counts(_as_notes(x))
    return [float(counts[i: i + segment_bars].mean()) for i in range(0, len(counts), segment_bars)]


# --------------------------------------------------------------------------- thirds
def third_counts(x, bars=None) -> dict[str, int]:
    """Minor (3 semitones mod 12) and major (4) thirds, harmonic (above the bass at every onset)
    and melodic (steps of the top line), for onsets in ``bars``; see the module docstring."""
    n = _as_notes(x)
    sel = n.in_bars(bars)
    out = {"harmonic_minor": 0, "harmonic_major": 0, "melodic_minor": 0, "melodic_major": 0}
    if not sel.any():
        return out
    times = np.unique(n.onset[sel])
    # Harmony: pitches sounding at each onset time, above the lowest one.
    for t in times:
        sounding = np.unique(n.pitch[(n.onset <= t) & (n.end > t)])
        if len(sounding) > 1:
            iv = (sounding[1:] - sounding[0]) % 12
            out["harmonic_minor"] += int((iv == 3).sum())
            out["harmonic_major"] += int((iv == 4).sum())
    # Melody: the highest note starting at each onset, step by step.
    on, pi = n.onset[sel], n.pitch[sel]
    top = np.array([pi[on == t].max() for t in times], dtype=np.int64)
    steps = np.abs(np.diff(top)) % 12
    out["melodic_minor"] = int((steps == 3).sum())
    out["melodic_major"] = int((steps == 4).sum())
    return out


def major_third_share(x, bars=None) -> float | None:
    """Major thirds / (minor + major thirds), harmonic and melodic pooled (see the module
    docstring); None where the notes hold no third."""
    c = third_counts(x, bars)
    minor = c["harmonic_minor"] + c["melodic_minor"]
    major = c["harmonic_major"] + c["melodic_major"]
    return major / (minor + major) if minor + major else None


# --------------------------------------------------------------------------- means over pieces
def mean_or_none(xs):
    """The mean of the values that are not None; None if there are none."""
    xs = [x for x in xs if x is not None]
    return float(statistics.fmean(xs)) if xs else None


def median_or_none(xs):
    """The median of the values that are not None; None if there are none."""
    xs = [x for x in xs if x is not None]
    return float(statistics.median(xs)) if xs else None


def ratio_or_none(a, b):
    """a / b (inf when only b is 0); None when either is None or both are 0."""
    if a is None or b is None:
        return None
    return float(a / b) if b else (float("inf") if a else None)


# --------------------------------------------------------------------------- the corpus as reference
def corpus_reference(codec, pieces, tempo: float = 120.0) -> dict:
    """What the same measures give on real segments, by the Mood level the codec gave them:
    {"energy": {level: mean notes per bar}, "valence": {level: mean major-third share},
    "segments": n}. ``pieces`` are token sequences of the codec (e.g. a dataset's test split,
    ``cadenza.music.eval.scoring.load_pieces``). Shows what a model that follows the corpus
    would reach (level 0 is what 0.1 forces, the top level what 0.9 forces)."""
    from cadenza.music.grammar import RemiTables, RemiState

    remi = RemiTables(codec)
    S = int(codec.config.segment_bars)
    npb: dict[int, list] = {}
    thirds: dict[int, list] = {}
    n_seg = 0
    for ids in pieces:
        ids = [int(i) for i in ids]
        st = RemiState(remi).feed_all(ids)
        if not st.bars:
            continue
        n = notes_of(codec.decode(ids, tempo=tempo), n_bars=st.bars)
        for b, v, e in st.moods:
            rng = (b + 1, min(b + S, st.bars))
            n_seg += 1
            npb.setdefault(int(e), []).append(notes_per_bar(n, rng))
            share = major_third_share(n, rng)
            if share is not None:
                thirds.setdefault(int(v), []).append(share)
    return {"energy": {k: mean_or_none(v) for k, v in sorted(npb.items())},
            "valence": {k: mean_or_none(v) for k, v in sorted(thirds.items())},
            "energy_segments": {k: len(v) for k, v in sorted(npb.items())},
            "valence_segments": {k: len(v) for k, v in sorted(thirds.items())}, "segments": n_seg}
