"""The n-gram baseline: interpolated modified Kneser-Ney over token ids (numpy), and its scores."""

from __future__ import annotations


import numpy as np
import torch

from cadenza.music.eval.scoring import TokenScores, scores_from

from cadenza.music.kneser_ney import KneserNey  # noqa: F401  (the model itself lives in the music layer)


# --------------------------------------------------------------------------- n-gram baseline scores
def score_ngram(lm: KneserNey, pieces, pitch_ids, batch: int = 4096) -> TokenScores:
    """Score every target of every piece with the n-gram model (see ``score_model``)."""
    hist, tgts, piece, pos = [], [], [], []
    for i, p in enumerate(pieces):
        if len(p) < 2:
            continue
        hist.append(lm.histories(p))
        tgts.append(np.asarray(p[1:], dtype=np.int64))
        piece.append(np.full(len(p) - 1, i))
        pos.append(np.arange(1, len(p)))
    if not hist:
        return TokenScores.empty()
    hist, tgts = np.concatenate(hist), np.concatenate(tgts)
    piece, pos = np.concatenate(piece), np.concatenate(pos)
    ctx = np.minimum(pos, lm.order - 1)
    parts = []
    for s in range(0, len(tgts), batch):
        sl = slice(s, s + batch)
        lp = torch.from_numpy(np.log(lm.probs(hist[sl])))
        parts.append(scores_from(lp, torch.from_numpy(tgts[sl]), pitch_ids, piece[sl], pos[sl], ctx[sl]))
    return TokenScores.concat(parts)
