"""Interpolated modified Kneser-Ney n-gram model over token ids (numpy): the n-gram baseline of the
evaluation and the short-term model of a piece (``cadenza.music.memory``)."""

from __future__ import annotations

import numpy as np

from cadenza.errors import ConfigError, DataError


class KneserNey:
    """Interpolated modified Kneser-Ney n-gram model over token ids 0 .. vocab_size-1.

    ``fit(pieces)`` counts n-grams of every order up to ``order`` inside each piece (the
    first token of a piece is given, like BOS for the transformer); ``probs(histories)``
    returns full next-token distributions. The highest order uses raw counts, lower orders
    continuation counts (how many distinct tokens precede the n-gram); each order
    interpolates with the next lower one with discounts D1, D2, D3+ estimated from its
    counts of counts (clipped to [0.1, r - 0.1] for count r); the unigram level
    interpolates with the uniform distribution, so no token has probability 0.

    An n-gram is stored as one int64 key, ``(context code << token bits) | token``. The
    context code is exact (the context's tokens as digits in base vocab_size + 1) while it
    fits in the bits left (up to 5 context tokens for a vocabulary of about 600); longer
    contexts get a 64-bit multiplicative hash cut to those bits (53 for 600 tokens), where
    two of ~10 million distinct contexts collide with a chance of about 1%, which would merge
    their counts. ``hashing=True`` hashes every order (for tests).
    """

    MAX_ORDER = 32

    def __init__(self, vocab_size: int, order: int = 5, hashing: bool | None = None):
        if vocab_size < 2:
            raise ConfigError("an n-gram model needs a vocabulary of at least 2 tokens")
        if not 1 <= order <= self.MAX_ORDER:
            raise ConfigError(f"n-gram order must be between 1 and {self.MAX_ORDER}, not {order}")
        self.vocab_size = int(vocab_size)
        self.order = int(order)
        self.base = self.vocab_size + 1
        self.start = self.vocab_size            # padding symbol before each piece
        self.wbits = int(self.vocab_size).bit_length()
        self.cbits = 63 - self.wbits
        if self.cbits < 16:
            raise ConfigError(f"a vocabulary of {vocab_size} tokens is too large for the n-gram model")
        self.exact = [hashing is not True and self.base ** (k - 1) < 2 ** self.cbits
                      for k in range(0, self.order + 1)]
        rng = np.random.default_rng(0x5EED)
        self._mult = (rng.integers(1, 2 ** 63, size=self.MAX_ORDER, dtype=np.uint64) * np.uint64(2)
                      + np.uint64(1))       # odd 64-bit multipliers, one per distance back
        self.tables: list[dict] = []
        self.fitted_tokens = 0

    # ---- context codes
    def _codes(self, column, n: int):
        """Yield the context codes of orders 1 .. ``self.order`` for ``n`` contexts, where
        ``column(d)`` gives the tokens ``d`` places back (1 = the most recent)."""
        exact = np.zeros(n, dtype=np.int64)
        hashed = np.zeros(n, dtype=np.uint64)
        yield exact
        for j in range(self.order - 1):         # j = distance back - 1
            c = np.asarray(column(j + 1), dtype=np.int64)
            k = j + 2
            hashed = hashed + (c.astype(np.uint64) + np.uint64(1)) * self._mult[j]
            if self.exact[k]:
                exact = exact + c * self.base ** j
                yield exact
            else:
                yield (hashed >> np.uint64(64 - self.cbits)).astype(np.int64)

    # ---- counting
    def fit(self, pieces) -> "KneserNey":
        n = self.order
        chunks, targets = [], []
        offset = 0
        for p in pieces:
            p = np.asarray(p, dtype=np.int64)
            if len(p) < 2:
                continue
            if p.min() < 0 or p.max() >= self.vocab_size:
                raise DataError("a piece holds a token outside the n-gram vocabulary")
            chunks.append(np.full(n - 1, self.start, dtype=np.int64))
            chunks.append(p)
            targets.append(np.arange(offset + n, offset + n - 1 + len(p)))
            offset += n - 1 + len(p)
        if not chunks:
            raise DataError("no piece with at least two tokens to fit the n-gram model on")
        tok = np.concatenate(chunks)
        idx = np.concatenate(targets)
        self.fitted_tokens = int(len(idx))
        w = tok[idx]
        tables, prev = [], None
        for k, code in enumerate(self._codes(lambda d: tok[idx - d], len(idx)), start=1):
            key = (code << self.wbits) | w
            if prev is not None:
                # order k - 1: continuation counts = distinct k-gram types per (k-1)-gram
                _, first = np.unique(key, return_index=True)
                keys, counts = np.unique(prev[first], return_counts=True)
                tables.append(self._table(keys, counts))
            prev = key
        keys, counts = np.unique(prev, return_counts=True)        # the highest order: raw counts
        tables.append(self._table(keys, counts))
        self.tables = tables
        return self

    def _table(self, keys, counts) -> dict:
        counts = counts.astype(np.int64)
        disc = self._discounts(counts)
        ctx = keys >> self.wbits
        uctx, first = np.unique(ctx, return_index=True)
        return {"keys": keys, "counts": counts.astype(np.int32), "discounts": disc, "ctx": uctx,
                "total": np.add.reduceat(counts, first).astype(np.float64),
                "gamma": np.add.reduceat(disc[np.minimum(counts, 3)], first)}

    @staticmethod
    def _discounts(counts) -> np.ndarray:
        """[0, D1, D2, D3+] from counts of counts (Chen & Goodman), clipped to [0.1, r - 0.1]."""
        nr = [int((counts == r).sum()) for r in (1, 2, 3, 4)]
        default = np.array([0.5, 1.0, 1.5])
        if nr[0] > 0 and nr[1] > 0:
            y = nr[0] / (nr[0] + 2 * nr[1])
            d = np.array([1 - 2 * y * nr[1] / nr[0],
                          2 - 3 * y * nr[2] / nr[1],
                          3 - 4 * y * nr[3] / nr[2] if nr[2] > 0 else default[2]])
        else:
            d = default
        d = np.clip(d, [0.1, 0.1, 0.1], [0.9, 1.9, 2.9])
        return np.concatenate([[0.0], d])

    # ---- probabilities
    def probs(self, histories) -> np.ndarray:
        """Next-token distributions (B, vocab_size), float64, for histories (B, order - 1).

        Histories hold token ids or ``self.start`` for positions before a piece's first token.
        """
        if not self.tables:
            raise ConfigError("the n-gram model is not fitted; call fit() first")
        h = np.asarray(histories, dtype=np.int64)
        if h.ndim != 2 or h.shape[1] != self.order - 1:
            raise ConfigError(f"histories must be (batch, order - 1 = {self.order - 1}) token ids")
        V, B = self.vocab_size, h.shape[0]
        mask = (1 << self.wbits) - 1
        codes = list(self._codes(lambda d: h[:, h.shape[1] - d], B))
        t1 = self.tables[0]
        c1 = np.zeros(V)
        c1[t1["keys"]] = t1["counts"]
        disc = t1["discounts"]
        p1 = (np.maximum(c1 - disc[np.minimum(c1, 3).astype(np.int64)], 0) + t1["gamma"][0] / V) / t1["total"][0]
        p = np.broadcast_to(p1, (B, V)).copy()
        for k in range(2, self.order + 1):
            t = self.tables[k - 1]
            ctx = codes[k - 1]
            ci = np.searchsorted(t["ctx"], ctx)
            found = ci < len(t["ctx"])
            found[found] = t["ctx"][ci[found]] == ctx[found]
            if not found.any():
                continue
            rows = np.flatnonzero(found)
            lo = np.searchsorted(t["keys"], ctx[rows] << self.wbits)
            hi = np.searchsorted(t["keys"], (ctx[rows] << self.wbits) | mask, side="right")
            lengths = hi - lo
            r = np.repeat(np.arange(len(rows)), lengths)
            within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            ent = np.repeat(lo, lengths) + within
            counts = np.zeros((len(rows), V))
            counts[r, t["keys"][ent] & mask] = t["counts"][ent]
            d = t["discounts"][np.minimum(counts, 3).astype(np.int64)]
            total = t["total"][ci[rows]][:, None]
            gamma = t["gamma"][ci[rows]][:, None]
            p[rows] = (np.maximum(counts - d, 0) + gamma * p[rows]) / total
        return p

    def histories(self, piece) -> np.ndarray:
        """(len - 1, order - 1): the history of every target 1 .. len-1 of a piece."""
        p = np.asarray(piece, dtype=np.int64)
        padded = np.concatenate([np.full(self.order - 1, self.start, dtype=np.int64), p])
        if self.order == 1:
            return np.zeros((len(p) - 1, 0), dtype=np.int64)
        win = np.lib.stride_tricks.sliding_window_view(padded, self.order - 1)
        return win[1:len(p)]

    def sample(self, prompts, max_new_tokens: int, seed: int = 0, temperature: float = 1.0,
               stop_tokens=()) -> list[list[int]]:
        """Sample continuations of each prompt (a list of token lists); returns the new tokens."""
        rng = np.random.default_rng(seed)
        seqs = [[int(t) for t in p] for p in prompts]
        out = [[] for _ in seqs]
        alive = list(range(len(seqs)))
        stops = set(int(t) for t in stop_tokens)
        for _ in range(max_new_tokens):
            if not alive:
                break
            hist = np.array([([self.start] * self.order + seqs[i])[len(seqs[i]) + 1:] for i in alive],
                            dtype=np.int64).reshape(len(alive), self.order - 1)
            p = self.probs(hist)
            if temperature != 1.0:
                p = p ** (1.0 / temperature)
                p /= p.sum(1, keepdims=True)
            u = rng.random(len(alive))
            toks = np.minimum((np.cumsum(p, 1) < u[:, None]).sum(1), self.vocab_size - 1)
            still = []
            for i, t in zip(alive, toks.tolist()):
                seqs[i].append(t)
                out[i].append(t)
                if t not in stops:
                    still.append(i)
            alive = still
        return out
