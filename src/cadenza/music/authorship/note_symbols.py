"""A token stream's notes in stream order and their symbols (pitch intervals, with rhythm): what the originality index compares."""

from __future__ import annotations

import numpy as np

SEP_BASE = 1 << 40    # index symbols at and above this are piece separators


# --------------------------------------------------------------------------- tokens -> notes
class TokenTables:
    """Per-token-id lookup arrays of a codec's vocabulary (numpy, for whole corpora at once)."""

    def __init__(self, codec):
        from cadenza.music.grammar import DUR, POS, PITCH, DRUM, TS
        from cadenza.music.inputs import remi_for

        r = remi_for(codec)
        V = r.vocab_size
        self.tpq, self.ppb, self.bos = r.tpq, r.ppb, r.bos
        self.kind = np.array(r.kind, dtype=np.int8)
        self.val = np.full(V, -1, dtype=np.int64)
        self.num = np.ones(V, dtype=np.int64)
        self.den = np.full(V, 4, dtype=np.int64)
        self.beats = np.zeros(V, dtype=np.float64)
        for i in range(V):
            k = r.kind[i]
            if k in (POS, PITCH, DRUM):
                self.val[i] = r.value[i]
            elif k == TS:
                self.num[i], self.den[i] = r.value[i]
            elif k == DUR:
                self.beats[i] = float(r.value[i])
        self.DUR, self.POS, self.PITCH, self.DRUM, self.TS, self.BAR = DUR, POS, PITCH, DRUM, TS, r.kind[r.bar]


def _ffill(mask: np.ndarray) -> np.ndarray:
    idx = np.where(mask, np.arange(mask.size), 0)
    return np.maximum.accumulate(idx) if mask.size else idx


def notes_of_tokens(ids, tables: TokenTables) -> dict:
    """The pitched notes of one or more token streams (``BOS ... EOS`` pieces back to back),
    in stream order: {"piece", "bar" (1-based, in its piece), "onset", "duration", "pitch"}."""
    ids = np.asarray(ids, dtype=np.int64)
    t = tables
    k = t.kind[ids]
    ts_i = ids[_ffill(k == t.TS)]
    num, den = t.num[ts_i], t.den[ts_i]
    beat_ticks = t.tpq * 4 // den
    is_bar = k == t.BAR
    barno = np.cumsum(is_bar)
    bar_tok = np.flatnonzero(is_bar)
    ends = np.append(bar_tok[1:] - 1, ids.size - 1) if bar_tok.size else bar_tok
    bar_len = num[ends] * beat_ticks[ends]
    bar_start = np.concatenate([[0], np.cumsum(bar_len)[:-1]]) if bar_tok.size else np.zeros(0, np.int64)
    pos = t.val[ids[_ffill(k == t.POS)]]
    pitch_tok = ids[_ffill((k == t.PITCH) | (k == t.DRUM))]
    piece = np.cumsum(ids == t.bos) - 1
    d = np.flatnonzero((k == t.DUR) & (t.kind[pitch_tok] == t.PITCH) & (barno > 0))
    if d.size == 0:
        z = np.zeros(0, dtype=np.int64)
        return {"piece": z, "bar": z, "onset": z, "duration": z, "pitch": z}
    onset = bar_start[barno[d] - 1] + pos[d] * (beat_ticks[d] // t.ppb)
    dur = np.maximum(1, np.rint(t.beats[ids[d]] * beat_ticks[d]).astype(np.int64))
    starts = np.flatnonzero(ids == t.bos)
    first_bar = barno[starts][piece[d]] if starts.size else np.zeros(d.size, np.int64)
    return {"piece": piece[d].astype(np.int64), "bar": (barno[d] - first_bar).astype(np.int64),
            "onset": onset.astype(np.int64), "duration": dur, "pitch": t.val[pitch_tok[d]]}


def symbols(notes: dict, first=None) -> tuple[np.ndarray, np.ndarray]:
    """(intervals, intervals + rhythm) symbols, one per note; a piece's first note gets
    ``first(piece)`` (the index: a unique separator) or -1 (a query: matches nothing)."""
    on, pc = notes["onset"], notes["piece"]
    ioi = np.zeros(on.size, dtype=np.int64)
    ioi[1:] = on[1:] - on[:-1]
    return symbols_from_arrays(notes["pitch"], ioi, notes["duration"], pc, first)


def symbols_from_arrays(p, ioi, du, pc, first=None) -> tuple[np.ndarray, np.ndarray]:
    """``symbols`` from per-note pitch, ticks since the note before, duration and piece."""
    p, pc = np.asarray(p, dtype=np.int64), np.asarray(pc, dtype=np.int64)
    n = p.size
    new = np.ones(n, dtype=bool)
    if n > 1:
        new[1:] = pc[1:] != pc[:-1]
    iv = np.zeros(n, dtype=np.int64)
    iv[1:] = p[1:] - p[:-1]
    sp = iv + 256
    ioi = np.clip(np.asarray(ioi, dtype=np.int64), 0, (1 << 14) - 1)
    sr = (sp << 28) | (ioi << 14) | np.clip(np.asarray(du, dtype=np.int64), 0, (1 << 14) - 1)
    sep = (SEP_BASE + pc) if first is None else first(pc)
    sp = np.where(new, sep, sp)
    sr = np.where(new, sep, sr)
    return sp, sr
