"""Transposition of music token windows (training augmentation).

``Transposer(codec)(ids, shift)`` moves every Pitch token and every Key token by ``shift``
semitones. Where a window's pitches would leave the vocabulary's pitch range, the shift is
pulled towards 0 until they fit (0 always fits), so a window is never clipped or distorted.
Drum pitches, timing and controls are left alone.
"""

from __future__ import annotations

import numpy as np


class Transposer:
    def __init__(self, codec):
        V = codec.vocab_size
        self.pitch_of = np.full(V, -1, dtype=np.int64)
        self.id_of_pitch = {}
        for i, p in codec.pitch_ids().items():
            self.pitch_of[i] = p
            self.id_of_pitch[p] = i
        lo, hi = codec.config.pitch_range
        self.lo, self.hi = lo, hi - 1
        self.pitch_lut = np.zeros((V,), dtype=np.int64)
        first = min(self.id_of_pitch.values())
        self.contiguous = all(self.id_of_pitch[p] == first + p - lo for p in range(lo, hi))
        self.first = first
        self.key_ids = {}
        from cadenza.codecs.music import key_name

        for mode in ("major", "minor"):
            for pc in range(12):
                self.key_ids[(pc, mode)] = codec.id(f"Key_{key_name(pc, mode)}")
        self.key_of = {i: k for k, i in self.key_ids.items()}

    def feasible(self, ids: np.ndarray, shift: int) -> int:
        """The shift nearest ``shift`` (towards 0) that keeps every pitch in range."""
        p = self.pitch_of[ids]
        p = p[p >= 0]
        if p.size == 0 or shift == 0:
            return 0 if p.size == 0 else shift
        top, bottom = int(p.max()), int(p.min())
        if shift > 0:
            return max(0, min(shift, self.hi - top))
        return min(0, max(shift, self.lo - bottom))

    def __call__(self, ids: np.ndarray, shift: int) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        shift = self.feasible(ids, int(shift))
        if shift == 0:
            return ids
        out = ids.copy()
        is_pitch = self.pitch_of[ids] >= 0
        if self.contiguous:
            out[is_pitch] = ids[is_pitch] + shift
        else:
            out[is_pitch] = [self.id_of_pitch[int(p) + shift] for p in self.pitch_of[ids[is_pitch]]]
        for k in np.flatnonzero(np.isin(ids, list(self.key_of))):
            pc, mode = self.key_of[int(ids[k])]
            out[k] = self.key_ids[((pc + shift) % 12, mode)]
        return out
