"""The piece memory: a short-term model of the piece so far, mixed with the network's next pitch.

After IDyOM (Pearce 2005): an interval n-gram (``IntervalModel``, interpolated modified
Kneser-Ney over melodic intervals clipped to +-``max_interval`` semitones, larger leaps sharing
one escape symbol) refitted on the melody of the piece so far (the short-term model, STM)
predicts the next pitch by what this piece has done; ``combine`` mixes it with another
distribution by entropy weights, w_m = (H(p_m) / log2 |pitches|) ^ -bias, as a weighted
geometric mean: the surer model counts more. ``PieceMemory.mix`` applies it to the network's
{pitch: probability} for ``predict``, ``next_pitch_distribution`` and the studio. The network's
own distribution is always kept and reported beside the mixed one.
"""

from __future__ import annotations

import math

import numpy as np

from cadenza.errors import ConfigError, DataError
from cadenza.music.kneser_ney import KneserNey

MEMORY_ORDER = 6      # interval n-gram order of the short-term model
MEMORY_BIAS = 1.0     # entropy-weight exponent of the combination
MIN_NOTES = 3         # the memory speaks once the piece has this many melody notes (two intervals)


def _pitches(m) -> np.ndarray:
    return np.asarray(getattr(m, "pitches", m), dtype=np.int64)


class IntervalModel:
    """Kneser-Ney n-gram over melodic intervals, read as a next-pitch distribution.

    ``pitches``: the pitches a distribution covers (the model's pitch range, sorted);
    every distribution is an array over them.
    """

    def __init__(self, order: int = 6, max_interval: int = 24, pitches=range(128)):
        if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= KneserNey.MAX_ORDER:
            raise ConfigError(f"the interval n-gram order must be 1 to {KneserNey.MAX_ORDER}, not {order!r}")
        if not 1 <= int(max_interval) <= 127:
            raise ConfigError(f"max_interval must be 1 to 127 semitones, not {max_interval}")
        self.order = order
        self.M = int(max_interval)
        self.escape = 2 * self.M + 1
        self.begin = self.escape + 1
        self.pitches = np.asarray(sorted(int(p) for p in pitches), dtype=np.int64)
        if len(self.pitches) < 2:
            raise ConfigError("a pitch distribution needs at least two pitches")
        self.lm = KneserNey(self.begin + 1, order)
        self.unigram = np.full(len(self.pitches), 1.0 / len(self.pitches))
        self.fitted = False

    def symbols(self, pitches) -> np.ndarray:
        """[begin, interval symbol 1, ...] of one melody."""
        iv = np.diff(_pitches(pitches))
        sym = np.where(np.abs(iv) <= self.M, iv + self.M, self.escape)
        return np.concatenate([[self.begin], sym]).astype(np.int64)

    def fit(self, melodies) -> "IntervalModel":
        seqs = [self.symbols(m) for m in melodies if len(_pitches(m)) >= 2]
        if not seqs:
            raise DataError("no melody with at least two notes to fit the interval model on")
        self.lm.fit(seqs)
        counts = np.ones(len(self.pitches))
        allp = np.concatenate([_pitches(m) for m in melodies])
        idx = np.searchsorted(self.pitches, allp)
        ok = (idx < len(self.pitches)) & (self.pitches[np.minimum(idx, len(self.pitches) - 1)] == allp)
        np.add.at(counts, idx[ok], 1)
        self.unigram = counts / counts.sum()
        self.fitted = True
        return self

    def to_pitch(self, q: np.ndarray, prev: np.ndarray) -> np.ndarray:
        """Interval distributions q (B, symbols) after previous pitches ``prev`` (B,) as
        pitch distributions (B, len(pitches)), renormalised over the pitch range."""
        d = self.pitches[None, :] - np.asarray(prev, dtype=np.int64)[:, None]
        near = np.abs(d) <= self.M
        far = (~near).sum(1, keepdims=True)
        rows = np.arange(len(d))[:, None]
        out = np.where(near, q[rows, np.clip(d + self.M, 0, 2 * self.M)],
                       q[:, self.escape][:, None] / np.maximum(far, 1))
        return out / out.sum(1, keepdims=True)

    def dists(self, pitches) -> np.ndarray:
        """(n, len(pitches)): row k is P(note k | notes 0 .. k-1) of an n-note melody
        (row 0: the pitch unigram)."""
        if not self.fitted:
            raise ConfigError("the interval model is not fitted; call fit() first")
        p = _pitches(pitches)
        out = np.empty((len(p), len(self.pitches)))
        if len(p):
            out[0] = self.unigram
        if len(p) >= 2:
            q = self.lm.probs(self.lm.histories(self.symbols(p)))
            out[1:] = self.to_pitch(q, p[:-1])
        return out


def short_term_dists(pitches, order: int = 6, max_interval: int = 24, model_pitches=range(128)) -> np.ndarray:
    """(n, len(model_pitches)): row k from an interval model fitted on notes 0 .. k-1 of this
    melody only; NaN rows where the piece so far has no interval yet (k < 2)."""
    p = _pitches(pitches)
    stm = IntervalModel(order, max_interval, model_pitches)
    out = np.full((len(p), len(stm.pitches)), np.nan)
    sym = stm.symbols(p)
    hist = stm.lm.histories(sym) if len(p) >= 2 else None
    for k in range(2, len(p)):
        lm = KneserNey(stm.begin + 1, order).fit([sym[:k]])     # begin + the k - 1 intervals so far
        q = lm.probs(hist[k - 1:k])
        out[k] = stm.to_pitch(q, p[k - 1:k])[0]
    return out


def entropy_bits(p: np.ndarray) -> np.ndarray:
    """Shannon entropy (bits) of each row."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log2(p), 0.0).sum(-1)


def combine(dists, bias: float = 1.0, method: str = "geometric") -> np.ndarray:
    """Entropy-weighted combination of several (n, P) distribution arrays, row by row.

    A NaN row means "this model has nothing to say here" and is left out of that row.
    w_m = (H(p_m) / log2 P) ^ -bias; the result is a distribution in every row.
    """
    if method not in ("geometric", "arithmetic"):
        raise ConfigError(f"the combination is 'geometric' or 'arithmetic', not {method!r}")
    if not math.isfinite(bias) or bias < 0:
        raise ConfigError(f"the combination bias must be a number >= 0, not {bias}")
    ps = np.stack([np.asarray(d, dtype=np.float64) for d in dists])        # (m, n, P)
    present = ~np.isnan(ps).any(-1)                                         # (m, n)
    if not present.any(0).all():
        raise ConfigError("every row needs at least one model's distribution")
    ps = np.where(present[..., None], ps, 1.0)
    h_rel = np.clip(entropy_bits(ps) / math.log2(ps.shape[-1]), 1e-6, None)
    w = np.where(present, h_rel ** -bias, 0.0)
    w = w / w.sum(0, keepdims=True)
    if method == "arithmetic":
        out = (w[..., None] * ps).sum(0)
    else:
        logp = (w[..., None] * np.log(np.maximum(ps, 1e-300))).sum(0)
        out = np.exp(logp - logp.max(-1, keepdims=True))
    return out / out.sum(-1, keepdims=True)



def melody_before(notes, program) -> list[int]:
    """The melody so far from a stream's notes ((onset, duration, pitch, program, velocity), as
    ``RemiState(record=True)`` keeps them): the highest pitch at each onset of ``program`` (the
    instrument the next note is on; all pitched notes where None), oldest first."""
    top: dict[int, int] = {}
    for onset, _, pitch, prog, _ in notes:
        if prog == -1 or (program is not None and prog != program):
            continue
        top[onset] = max(top.get(onset, -1), int(pitch))
    return [top[t] for t in sorted(top)]


class PieceMemory:
    """The short-term model over a pitch range, and its mix with the network's distribution."""

    def __init__(self, pitches, order: int = MEMORY_ORDER, max_interval: int = 24, bias: float = MEMORY_BIAS):
        self.model = IntervalModel(order, max_interval, pitches)
        self.bias = bias

    def next_pitch(self, melody) -> np.ndarray | None:
        """P(next pitch) over ``self.model.pitches`` from this melody alone; None before MIN_NOTES."""
        p = _pitches(melody)
        if len(p) < MIN_NOTES:
            return None
        m = self.model
        sym = m.symbols(p)
        lm = KneserNey(m.begin + 1, m.order).fit([sym])
        q = lm.probs(lm.histories(np.concatenate([sym, [0]]))[-1:])   # the history after the last interval
        return m.to_pitch(q, p[-1:])[0]

    def mix_logits(self, logits, allowed, state):
        """Generation with the memory: the allowed pitch tokens' share of the logits
        redistributed as the network's distribution over them mixed with the memory's
        (``mix``); other tokens, and a melody too short to remember, are left as they are.
        ``state`` is the grammar's ``RemiState`` (recording its notes); the melody is the
        instrument in force."""
        import torch

        from cadenza.music.grammar import PITCH

        remi = state.remi
        pitched = [i for i in allowed.tolist() if remi.kind[i] == PITCH]
        if len(pitched) < 2:
            return logits
        melody = melody_before(state.notes, state.program)
        if len(melody) < MIN_NOTES:
            return logits
        idx = torch.tensor(pitched)
        group = logits[idx].float()
        net = torch.softmax(group, -1).tolist()
        both = self.mix({remi.value[i]: x for i, x in zip(pitched, net)}, melody)
        out = logits.clone()      # the pitches keep their total share against the other tokens
        out[idx] = (torch.logsumexp(group, 0) + torch.log(torch.tensor(
            [max(both.get(remi.value[i], 0.0), 1e-12) for i in pitched]))).to(out.dtype)
        return out

    def mix(self, network: dict[int, float], melody, stm=False) -> dict[int, float]:
        """The network's {pitch: probability} combined with the memory of ``melody`` (the melody so
        far, oldest first); the network's own where the memory has nothing to say yet. ``stm``:
        ``next_pitch(melody)`` when the caller already has it (the live engine keeps it per note)."""
        stm = self.next_pitch(melody) if stm is False else stm
        if stm is None or not network:
            return dict(network)
        pitches = self.model.pitches
        net = np.array([network.get(int(p), 0.0) for p in pitches], dtype=np.float64)
        if net.sum() <= 0:
            return dict(network)
        both = combine([net[None, :] / net.sum(), stm[None, :]], self.bias)[0]
        return {int(p): float(x) for p, x in zip(pitches, both)}
