"""The rule-based baseline of the harmony benchmark: diatonic triads on strong beats
(``triad_baseline``), voiced with the root in the bass and as little motion as possible."""

from __future__ import annotations

import numpy as np

from cadenza.music.eval.harmony import Line, Texture

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_HARMONIC_MINOR = (0, 2, 3, 5, 7, 8, 11)
_PREFERENCE = (0, 4, 3, 5, 1, 2, 6)          # I, V, IV, vi, ii, iii, vii
_BASS = (40, 60)


def strong_beats(tex: Texture) -> np.ndarray:
    """The strong beats: every bar's downbeat, and the middle of bars of 4 beats (or every
    third beat of compound metres with 6, 9 or 12)."""
    lo, hi = tex.span
    out = []
    t, k = 0, 0
    while t < hi:
        while k + 1 < len(tex.sigs) and tex.sigs[k + 1][0] <= t:
            k += 1
        _, num, den = tex.sigs[k]
        step = max(1, tex.tpq * 4 // den)
        every = 3 if num in (6, 9, 12) else 2 if num == 4 else num
        for j in range(0, num, every):
            b = t + j * step
            if lo <= b < hi:
                out.append(b)
        t += num * step
    return np.asarray(out, dtype=np.int64)


def _triads(key) -> list[tuple[int, frozenset]]:
    tonic, mode = key if key is not None else (0, "major")
    scale = [(int(tonic) + s) % 12 for s in (_MAJOR if mode == "major" else _HARMONIC_MINOR)]
    return [(scale[d], frozenset({scale[d], scale[(d + 2) % 7], scale[(d + 4) % 7]})) for d in _PREFERENCE]


def _voicing(chord: frozenset, root: int, top: int, n: int, prev: list | None) -> list[int]:
    """``n`` pitches under ``top`` (lowest first): the root in the bass, the other voices on chord
    tones, the chord as complete as it can be, moving as little as possible from ``prev``."""
    from itertools import combinations

    lo_b, hi_b = _BASS
    basses = [p for p in range(lo_b, min(hi_b, top - 1) + 1) if p % 12 == root]
    if not basses:
        basses = [p for p in range(max(0, top - 24), top) if p % 12 == root][:1] or [top - 12]
    bass = min(basses, key=lambda p: abs(p - (prev[0] if prev else 48)))
    if n == 1:
        return [bass]
    cands = [p for p in range(bass + 1, top) if p % 12 in chord and top - p <= 24]
    best, best_cost = None, None
    for combo in combinations(cands, n - 1):
        pcs = {bass % 12, top % 12, *(p % 12 for p in combo)}
        cost = 12.0 * len(chord - pcs)
        chain = list(combo) + [top]
        cost += 6.0 * sum(b - a > 12 for a, b in zip(chain, chain[1:]))
        if prev and len(prev) == n:
            cost += sum(abs(a - b) for a, b in zip(combo, prev[1:]))
        else:
            cost += sum(abs(top - 4 * (i + 1) - p) for i, p in enumerate(reversed(combo))) * 0.25
        if best_cost is None or cost < best_cost:
            best, best_cost = list(combo), cost
    if best is None:                      # no room under the melody: double the bass an octave up where it fits
        best = [min(bass + 12 * (i + 1), top - 1) for i in range(n - 1)]
    return [bass, *best]


def triad_baseline(tex: Texture, voices: int = 3) -> Line:
    """A rule-based harmonization of ``tex.melody``: on every strong beat a diatonic triad of the
    key (harmonic minor in minor keys) that holds the melody's pitch class, taken in the order
    I, V, IV, vi, ii, iii, vii (the last strong beat prefers I, the one before it V), voiced
    with the root in the bass and ``voices - 1`` chord tones under the melody, moving as little
    as possible; each chord lasts to the next strong beat (under a melody rest, the previous
    chord goes on)."""
    triads = _triads(tex.key)
    sb = [int(b) for b in strong_beats(tex)]
    _, hi = tex.span
    rows, prev = [], None
    for i, b in enumerate(sb):
        mel = tex.melody.sounding(b)
        if not len(mel):
            continue
        top = int(mel.min())
        end = sb[i + 1] if i + 1 < len(sb) else hi
        fits = [(r, c) for r, c in triads if top % 12 in c]
        if i == len(sb) - 1 and any(r == triads[0][0] for r, _ in fits):
            fits = [triads[0]]
        elif i == len(sb) - 2 and any(r == triads[1][0] for r, _ in fits):
            fits = [triads[1]]
        root, chord = fits[0] if fits else triads[0]
        prev = _voicing(chord, root, top, voices, prev)
        rows.extend((b, end, p) for p in prev)
    return Line.of(rows)
