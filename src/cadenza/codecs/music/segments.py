"""Segment controls of the music codec (version 2): the mood of each group of bars.

Every ``segment_bars`` bars the token stream opens a segment with two control tokens,
``Valence_<level> Energy_<level>``, computed from that segment's own notes, so a model
learns what each level sounds like and generation can change mood from the next segment
on. The raw values are numbers in [0, 1]; levels cut them at corpus quantiles stored in the
tokenizer (``MusicCodecConfig.valence_edges`` / ``energy_edges``).

- energy = 0.7 * density + 0.15 * register + 0.15 * loudness: density maps 0.5 .. 16 notes
  per second (log scale) to 0 .. 1, register a mean pitch of 48 .. 84, loudness a mean
  velocity of 40 .. 120. An empty segment has energy 0.
- valence = 0.5 + (best major-key correlation - best minor-key correlation) / 0.6 of the
  segment's duration-weighted pitch-class histogram (Krumhansl-Kessler profiles), clipped
  to 0 .. 1. An empty segment has valence 0.5.
"""

from __future__ import annotations

import math

import numpy as np

from cadenza.codecs.music.keys import key_correlations

def segment_energy(pitches, velocities, n_notes: int, seconds: float) -> float:
    if n_notes == 0 or seconds <= 0:
        return 0.0
    nps = n_notes / seconds
    density = float(np.clip(math.log2(max(nps, 1e-9) / 0.5) / 5.0, 0.0, 1.0))
    register = float(np.clip((float(np.mean(pitches)) - 48.0) / 36.0, 0.0, 1.0))
    loud = float(np.clip((float(np.mean(velocities)) - 40.0) / 80.0, 0.0, 1.0))
    return 0.7 * density + 0.15 * register + 0.15 * loud


def segment_valence(pitches, weights) -> float:
    if len(pitches) == 0:
        return 0.5
    corr = key_correlations(pitches, weights)
    return float(np.clip(0.5 + (float(corr[:12].max()) - float(corr[12:].max())) / 0.6, 0.0, 1.0))


def segment_values(notes, seconds: float) -> tuple[float, float]:
    """(valence, energy) of one segment; ``notes`` are (pitch, duration in quarters, velocity)."""
    if not notes:
        return 0.5, 0.0
    a = np.asarray(notes, dtype=float)
    return segment_valence(a[:, 0], np.maximum(a[:, 1], 1e-3)), segment_energy(a[:, 0], a[:, 2], len(a), seconds)


def quantile_edges(values, levels: int) -> tuple[float, ...]:
    """``levels - 1`` increasing cut points that split ``values`` into equal shares."""
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        return tuple((i + 1) / levels for i in range(levels - 1))
    qs = np.quantile(v, [(i + 1) / levels for i in range(levels - 1)])
    out, last = [], 0.0
    for q in qs:   # strictly increasing and inside (0, 1), even where many values tie
        q = float(np.clip(q, 1e-4, 1 - 1e-4))
        q = max(q, last + 1e-4)
        out.append(round(q, 5))
        last = out[-1]
    return tuple(out)
