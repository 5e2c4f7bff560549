"""Drawing one token from logits: temperature, top-k, the nucleus (top-p) and a private
generator. ``sample_rows`` draws one token per row of a (batch, vocab) tensor; ``sample_among``
one token of a few allowed ids (a grammar's choices) from one row. ``cadenza.sampling``'s
decode loop is their one caller besides the tests.
"""

from __future__ import annotations

import numpy as np
import torch


def filter_logits(logits: torch.Tensor, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """Set to -inf every logit outside the top ``top_k`` and outside the nucleus ``top_p``.

    The nucleus is the smallest set of most likely tokens whose probability reaches top_p;
    the most likely token is always kept. logits: (batch, vocab).
    """
    if top_k is not None and top_k < logits.shape[-1]:
        top = torch.topk(logits, top_k, dim=-1).indices  # exactly k, even with ties
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, top, True)
        logits = logits.masked_fill(~keep, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs  # probability mass ranked above each token
        drop_sorted = before >= top_p
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


GREEDY_BELOW = 1e-30   # a temperature under this is greedy (in float32 it would round to 0)


def sample_rows(logits, temperature, top_k, top_p, generator):
    """One token per row of (batch, vocab) logits."""
    if temperature < GREEDY_BELOW:
        return torch.argmax(logits, dim=-1)
    logits = filter_logits(logits / temperature, top_k, top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


SURE = 1e-5   # a probability this far above top_p is above it whatever the order of the sums


def _nucleus(x, top_k: int | None, top_p: float | None):
    """Which of the logits ``x`` (a small float32 numpy vector, max 0) survive ``top_k`` and the
    nucleus ``top_p`` (a bool vector): ``filter_logits``' rule on one row, in numpy."""
    keep = np.ones(x.shape[0], dtype=bool)
    if top_k is not None and top_k < x.shape[0]:
        keep[:] = False
        keep[np.argsort(-x, kind="stable")[:top_k]] = True
    if top_p is not None and top_p < 1.0:
        y = np.where(keep, x, np.float32(-np.inf))
        order = np.argsort(-y, kind="stable")
        p = np.exp(y[order] - y[order[0]])
        p /= p.sum(dtype=np.float32)
        drop = np.cumsum(p, dtype=np.float32) - p >= np.float32(top_p)   # mass ranked above each token
        drop[0] = False
        keep[order[drop]] = False
    return keep


def sample_among(logits, allowed, temperature, top_k, top_p, generator) -> int:
    """One token of ``allowed`` (ids) from one row of logits.

    The few dozen allowed logits are weighed in numpy (a torch call per step costs more than
    its arithmetic here, and releases the interpreter lock each time); the draw is
    ``torch.multinomial``'s own for one sample (argmax of p / q, q ~ Exp(1) drawn from
    ``generator`` over every allowed token), so it takes the same random numbers and, but for
    float rounding at a tie, the same token."""
    ids = allowed.cpu().numpy()
    sub = logits.float().cpu().numpy()[ids]       # (no copy on a CPU)
    if temperature < GREEDY_BELOW:
        return int(ids[int(np.argmax(sub))])
    x = (sub - sub.max()) / np.float32(temperature)    # <= 0: a tiny temperature cannot overflow to inf - inf
    if top_k is None and top_p is not None and 1.0 / np.exp(x).sum(dtype=np.float32) >= top_p + SURE:
        _exponentials(x.shape[0], generator)      # the likeliest token alone fills the nucleus: it is
        return int(ids[int(np.argmax(x))])        # the draw (whose random numbers are taken all the same)
    if top_k is not None or top_p is not None:
        x = np.where(_nucleus(x, top_k, top_p), x, np.float32(-np.inf))
    p = np.exp(x - x.max())
    p /= p.sum(dtype=np.float32)
    return int(ids[int(np.argmax(p / _exponentials(p.shape[0], generator)))])


def _exponentials(n: int, generator):
    """``torch.multinomial``'s random numbers for one draw among ``n``: Exp(1) each."""
    return torch.empty(n, device=generator.device).exponential_(1, generator=generator).cpu().numpy()


__all__ = ["GREEDY_BELOW", "filter_logits", "sample_among", "sample_rows"]
