"""Held-out evaluation of music models: prediction scores, context, baselines, MusPy metrics.

What is measured (``benchmarks/music_eval.py`` puts it all in one table):

Scoring (``score_model`` for a SparseTransformer, ``score_ngram`` for the n-gram baseline).
Every piece is a token sequence ``BOS prefix body EOS``. BOS is given; every later token
(conditioning prefix, body, EOS) is a *target*, predicted from tokens of the same piece
only. For each target we keep

- its bits, ``-log2 p(target | context)`` under the full distribution over the vocabulary;
- for a Pitch target (a note): whether it is among the top 1 / top 5 *pitch* tokens of the
  predicted distribution (restricted to Pitch tokens and ranked). Ties are broken at
  random and counted as the expected hit, so a uniform model scores exactly k / #pitches.

``TokenScores.summary`` gives bits per token (total bits / targets), bits per note (the
same total bits / Pitch targets) and mean top-1 / top-5 pitch accuracy over Pitch targets.

Context (``context_windows``). A piece that fits in ``context`` tokens is scored in one
pass from its BOS: target j sees all j tokens before it. A longer piece is scored by a
sliding window: windows of ``context`` tokens, each starting ``stride`` (default
``context // 2``) after the previous one (the last is moved back to end at the piece's
end); the first window scores all its targets, every later one only those not yet scored,
which lie in its last ``stride`` positions. So every target is scored exactly once and sees
``min(j, c)`` preceding tokens with ``context - stride <= c <= context - 1``. Windows are
fed at model positions 0.. (as ``cadenza.sampling`` re-encodes its sliding window), so a
window starting inside a piece does not see the piece's BOS and conditioning prefix.

Baseline n-gram (``KneserNey``): interpolated modified Kneser-Ney (Chen & Goodman 1998)
over token ids, written with numpy because nltk's ``KneserNeyInterpolated`` is pure Python
(minutes to fit a few hundred thousand tokens, and it needs one ``score`` call per
vocabulary entry for a ranking). Each piece is padded on the left with ``order - 1`` start
symbols (an extra id, never predicted), so contexts never cross piece boundaries.

MusPy metrics (``muspy_metrics``): pitch-class entropy, scale consistency, polyphony,
groove consistency (measure length from the piece's first time signature) and empty-beat
rate, computed by the ``muspy`` package itself on decoded scores (``to_muspy``).

Training curves (``eval_curve``, ``compare_runs``): the held-out loss that the training
loop logs in ``metrics.jsonl`` (bits/token on fixed windows of the validation split) against
training time, to compare runs at equal wall-clock time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cadenza.errors import ConfigError, DataError

LN2 = math.log(2.0)
TOP_K = (1, 5)
MUSPY_METRICS = ("pitch_class_entropy", "scale_consistency", "polyphony",
                 "groove_consistency", "empty_beat_rate")


# --------------------------------------------------------------------------- data
def split_pieces(stream, bos_id: int = 1, eos_id: int = 2) -> list[np.ndarray]:
    """Cut a token stream ``BOS ... EOS BOS ... EOS`` into pieces (each from BOS to EOS).

    A piece without EOS runs up to the next BOS (or the end of the stream).
    """
    stream = np.asarray(stream)
    starts = np.flatnonzero(stream == bos_id)
    ends = np.flatnonzero(stream == eos_id)
    pieces = []
    for i, s in enumerate(starts):
        nxt = starts[i + 1] if i + 1 < len(starts) else len(stream)
        j = np.searchsorted(ends, s)
        e = ends[j] + 1 if j < len(ends) and ends[j] < nxt else nxt
        pieces.append(np.asarray(stream[s:e], dtype=np.int64))
    return pieces


def load_pieces(data_dir, split: str = "test") -> list[np.ndarray]:
    """The pieces of one split of a music dataset directory (see ``cadenza.data.format``)."""
    from cadenza.data.format import open_split, read_meta

    meta = read_meta(data_dir)
    sep = meta.get("separator", {})
    return split_pieces(open_split(data_dir, split), int(sep.get("bos", 1)), int(sep.get("eos", 2)))


def select_pieces(n_pieces: int, n: int | None, seed: int = 0) -> list[int]:
    """Indices of ``n`` pieces drawn without replacement (sorted), or all when n is None."""
    if n is None or n >= n_pieces:
        return list(range(n_pieces))
    if n < 1:
        raise ConfigError(f"the number of pieces must be at least 1, not {n}")
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n_pieces, size=n, replace=False))


# --------------------------------------------------------------------------- per-token scores
@dataclass
class TokenScores:
    """One row per scored target token."""

    piece: np.ndarray      # index of the piece in the list that was scored
    position: np.ndarray   # position of the target in its piece (1 .. len - 1)
    context: np.ndarray    # how many tokens before the target the predictor saw
    bits: np.ndarray       # -log2 p(target)
    is_note: np.ndarray    # the target is a Pitch token
    top1: np.ndarray       # expected top-1 pitch hit (NaN where not a note)
    top5: np.ndarray       # expected top-5 pitch hit (NaN where not a note)

    def __len__(self) -> int:
        return len(self.bits)

    @classmethod
    def empty(cls) -> "TokenScores":
        return cls(*(np.zeros(0, dtype=d) for d in
                     (np.int64, np.int64, np.int64, np.float64, bool, np.float64, np.float64)))

    @classmethod
    def concat(cls, parts) -> "TokenScores":
        parts = list(parts)
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    def select(self, mask) -> "TokenScores":
        mask = np.asarray(mask)
        return TokenScores(*(getattr(self, f.name)[mask] for f in fields(self)))

    def summary(self) -> dict:
        """tokens, notes, pieces, bits_per_token, bits_per_note, top1, top5, mean_context."""
        n, notes = len(self.bits), int(self.is_note.sum())
        total = float(self.bits.sum())
        return {
            "tokens": n,
            "notes": notes,
            "pieces": int(len(np.unique(self.piece))),
            "bits_per_token": total / n if n else math.nan,
            "bits_per_note": total / notes if notes else math.nan,
            "top1": float(self.top1[self.is_note].mean()) if notes else math.nan,
            "top5": float(self.top5[self.is_note].mean()) if notes else math.nan,
            "mean_context": float(self.context.mean()) if n else math.nan,
        }


def pitch_mask(vocab_size: int, pitch_ids) -> torch.Tensor:
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    mask[torch.as_tensor(list(pitch_ids), dtype=torch.long)] = True
    return mask


def target_stats(log_probs: torch.Tensor, targets: torch.Tensor, pitch_ids,
                 ks=TOP_K) -> tuple[np.ndarray, np.ndarray, dict]:
    """Bits, is-note flags and expected top-k pitch hits for rows of log-probabilities.

    ``log_probs`` (B, vocab): natural-log probabilities (normalised over the vocabulary);
    ``targets`` (B,); ``pitch_ids``: the Pitch token ids. The top-k hit of a note whose
    log-probability is beaten by ``g`` pitch tokens and tied with ``e`` others is
    ``clip((k - g) / (e + 1), 0, 1)``: the chance it lands in the top k when ties are
    ordered at random. Non-note rows get NaN.
    """
    if log_probs.dim() != 2 or targets.shape != log_probs.shape[:1]:
        raise ConfigError("target_stats needs log_probs (B, vocab) and targets (B,)")
    targets = targets.to(torch.long)
    pid = torch.as_tensor(list(pitch_ids), dtype=torch.long)
    tgt = log_probs.gather(1, targets[:, None])[:, 0]
    bits = (-tgt.double() / LN2).cpu().numpy()
    is_note = pitch_mask(log_probs.shape[1], pid)[targets.cpu()].numpy()
    pl = log_probs[:, pid]
    greater = (pl > tgt[:, None]).sum(1).double()
    equal = (pl == tgt[:, None]).sum(1).double() - torch.from_numpy(is_note).double()
    hits = {}
    for k in ks:
        h = ((k - greater) / (equal + 1)).clamp(0, 1).cpu().numpy()
        h[~is_note] = np.nan
        hits[k] = h
    return bits, is_note, hits


def _scores_from(log_probs, targets, pitch_ids, piece, position, context) -> TokenScores:
    bits, is_note, hits = target_stats(log_probs, targets, pitch_ids)
    return TokenScores(np.asarray(piece, dtype=np.int64), np.asarray(position, dtype=np.int64),
                       np.asarray(context, dtype=np.int64), bits, is_note, hits[1], hits[5])


# --------------------------------------------------------------------------- the transformer
def context_windows(n: int, context: int, stride: int | None = None) -> list[tuple[int, int, int]]:
    """``(start, end, first_target)`` windows that score targets 1 .. n-1 of an n-token piece.

    The window ``tokens[start:end]`` (at most ``context`` long) scores targets
    ``first_target .. end - 1``; see the module docstring for the guarantees.
    """
    if context < 2:
        raise ConfigError(f"context must be at least 2 tokens, not {context}")
    stride = context // 2 if stride is None else int(stride)
    if not 1 <= stride <= context - 1:
        raise ConfigError(f"stride must be between 1 and context - 1 = {context - 1}, not {stride}")
    if n < 2:
        return []
    end = min(n, context)
    windows = [(0, end, 1)]
    covered = end - 1                       # the last target scored so far
    while covered < n - 1:
        start = min(covered + 1 - (context - stride), n - context)
        end = start + context
        windows.append((start, end, covered + 1))
        covered = end - 1
    return windows


def _batches(jobs, batch_tokens: int):
    """Group jobs (sorted longest first) so batch size x longest length <= batch_tokens."""
    batch, longest = [], 0
    for job in jobs:
        length = job[2] - job[1]
        if batch and (len(batch) + 1) * max(longest, length) > batch_tokens:
            yield batch
            batch, longest = [], 0
        batch.append(job)
        longest = max(longest, length)
    if batch:
        yield batch


def score_model(model, pieces, pitch_ids, context: int | None = None, stride: int | None = None,
                batch_tokens: int = 16384, progress: bool = False, desc: str = "score") -> TokenScores:
    """Score every target of every piece with ``model`` seeing at most ``context`` tokens.

    ``model(idx) -> logits (batch, n, vocab)`` with ``model.config.max_len``; ``context``
    defaults to ``max_len``. Windows of similar length are batched (padded on the right,
    which a causal model cannot see). The model is put in eval mode for the call.
    """
    max_len = int(model.config.max_len)
    context = max_len if context is None else int(context)
    if not 2 <= context <= max_len:
        raise ConfigError(f"context must be between 2 and the model's max_len {max_len}, not {context}")
    jobs = []
    for i, p in enumerate(pieces):
        for start, end, first in context_windows(len(p), context, stride):
            jobs.append((i, start, end, first))
    jobs.sort(key=lambda j: (j[1] - j[2], j[0], j[1]))   # longest first, then stable
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    parts = []
    was_training = model.training
    model.eval()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=sum(j[2] - j[3] for j in jobs), unit="tok", desc=desc, leave=False)
    try:
        with torch.inference_mode():
            for batch in _batches(jobs, batch_tokens):
                longest = max(e - s for _, s, e, _ in batch)
                x = torch.zeros((len(batch), longest), dtype=torch.long)
                for b, (i, s, e, _) in enumerate(batch):
                    x[b, :e - s] = torch.as_tensor(pieces[i][s:e], dtype=torch.long)
                logits = model(x.to(device))
                rows, tgts, piece, pos, ctx = [], [], [], [], []
                for b, (i, s, e, f) in enumerate(batch):
                    rows.append(logits[b, f - 1 - s:e - 1 - s])
                    tgts.append(x[b, f - s:e - s])
                    piece.append(np.full(e - f, i))
                    pos.append(np.arange(f, e))
                    ctx.append(np.arange(f, e) - s)
                lp = F.log_softmax(torch.cat(rows).float(), dim=-1).cpu()
                parts.append(_scores_from(lp, torch.cat(tgts), pitch_ids, np.concatenate(piece),
                                          np.concatenate(pos), np.concatenate(ctx)))
                if bar is not None:
                    bar.update(sum(e - f for _, _, e, f in batch))
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    return _sorted(TokenScores.concat(parts))


def score_decoding(model, pieces, pitch_ids, weights: str = "float32", progress: bool = False) -> TokenScores:
    """Score pieces token by token through the sparse KV cache, as generation runs.

    Each piece (its first ``max_len`` tokens) is fed one token at a time; the logits of
    every one-token step score the next token. ``weights`` ("float32" or "int8") picks the
    decode weights (``SparseTransformer.set_decode_weights``), so the two can be compared
    on the same targets: what int8 decoding costs in bits.
    """
    max_len = int(model.config.max_len)
    parts = []
    was_training = model.training
    model.eval()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=sum(min(len(p), max_len) - 1 for p in pieces), unit="tok", desc=f"decode {weights}",
                   leave=False)
    try:
        with torch.inference_mode(), model.decoding_with(weights):
            for i, p in enumerate(pieces):
                x = torch.as_tensor(np.asarray(p[:max_len]), dtype=torch.long)[None]
                n = x.shape[1]
                if n < 2:
                    continue
                cache = model.new_cache(1)
                rows = [model(x[:, :1], cache=cache)[0, -1]]
                rows += [model(x[:, t:t + 1], cache=cache)[0, -1] for t in range(1, n - 1)]
                lp = F.log_softmax(torch.stack(rows).float(), dim=-1)
                pos = np.arange(1, n)
                parts.append(_scores_from(lp, x[0, 1:], pitch_ids, np.full(n - 1, i), pos, pos))
                if bar is not None:
                    bar.update(n - 1)
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    return _sorted(TokenScores.concat(parts))


def _sorted(scores: TokenScores) -> TokenScores:
    order = np.lexsort((scores.position, scores.piece))
    return scores.select(order)


# --------------------------------------------------------------------------- n-gram baseline
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
        parts.append(_scores_from(lp, torch.from_numpy(tgts[sl]), pitch_ids, piece[sl], pos[sl], ctx[sl]))
    return TokenScores.concat(parts)


# --------------------------------------------------------------------------- generation + MusPy
def sample_transformer(model, prompts, max_new_tokens: int, eos_id: int, seed: int = 0,
                       temperature: float = 1.0, top_k: int | None = None,
                       top_p: float | None = None) -> list[list[int]]:
    """New tokens after each prompt, sampled with ``cadenza.sampling.generate`` (stop at EOS).

    Prompts of equal length are sampled as one batch.
    """
    from cadenza.sampling import generate

    prompts = [[int(t) for t in p] for p in prompts]
    out: list[list[int] | None] = [None] * len(prompts)
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    for n, idx in sorted(by_len.items()):
        rows = generate(model, [prompts[i] for i in idx], max_new_tokens, temperature=temperature,
                        top_k=top_k, top_p=top_p, seed=seed + n, stop_tokens=[eos_id])
        for i, r in zip(idx, rows):
            out[i] = list(r)
    return out


def to_muspy(score):
    """A symusic score (any time unit) as a ``muspy.Music`` in ticks (resolution = tpq)."""
    import muspy

    score = score if type(score).__name__ == "ScoreTick" else score.to("tick")
    tracks = []
    for t in score.tracks:
        arr = t.notes.numpy()
        notes = [muspy.Note(time=int(a), pitch=int(b), duration=int(c), velocity=int(d))
                 for a, b, c, d in zip(arr["time"], arr["pitch"], arr["duration"], arr["velocity"])]
        tracks.append(muspy.Track(program=int(t.program), is_drum=bool(t.is_drum), notes=notes))
    return muspy.Music(resolution=int(score.ticks_per_quarter), tracks=tracks)


def measure_ticks(score) -> int:
    """Ticks per measure from the first time signature (4/4 when there is none)."""
    score = score if type(score).__name__ == "ScoreTick" else score.to("tick")
    num, den = (4, 4)
    if len(score.time_signatures):
        ts = score.time_signatures[0]
        num, den = int(ts.numerator), int(ts.denominator)
    return max(1, int(round(score.ticks_per_quarter * 4 * num / den)))


def muspy_metrics(score) -> dict:
    """The five MusPy metrics of one symusic score; NaN where MusPy gives none (no notes,
    or groove consistency of a piece shorter than two measures)."""
    import muspy

    music = to_muspy(score)
    if sum(len(t.notes) for t in music.tracks) == 0:
        return {m: math.nan for m in MUSPY_METRICS}
    return {
        "pitch_class_entropy": float(muspy.pitch_class_entropy(music)),
        "scale_consistency": float(muspy.scale_consistency(music)),
        "polyphony": float(muspy.polyphony(music)),
        "groove_consistency": float(muspy.groove_consistency(music, measure_ticks(score))),
        "empty_beat_rate": float(muspy.empty_beat_rate(music)),
    }


def metric_stats(rows) -> dict:
    """{metric: {mean, std, n}} over per-piece metric dicts (NaNs left out)."""
    out = {}
    for m in MUSPY_METRICS:
        vals = np.array([r[m] for r in rows], dtype=float)
        vals = vals[np.isfinite(vals)]
        out[m] = {"mean": float(vals.mean()) if len(vals) else math.nan,
                  "std": float(vals.std()) if len(vals) else math.nan,
                  "n": int(len(vals))}
    return out


# --------------------------------------------------------------------------- training runs
def eval_curve(run_dir, split: str = "eval") -> list[dict]:
    """The held-out evaluations (or, with split="train", the training losses) a run logged:
    [{step, time, loss}] by time."""
    from cadenza.train.metrics import read_metrics

    recs = [r for r in read_metrics(run_dir) if r.get("split") == split and r.get("loss") is not None
            and r.get("time") is not None]
    return sorted(({"step": int(r["step"]), "time": float(r["time"]), "loss": float(r["loss"])} for r in recs),
                  key=lambda r: r["time"])


def train_time(run_dir) -> float | None:
    """Seconds of training of a run (the last record's ``time``), None without records."""
    from cadenza.train.metrics import read_metrics

    times = [float(r["time"]) for r in read_metrics(run_dir) if r.get("time") is not None]
    return max(times) if times else None


def loss_at_time(curve, t: float) -> dict | None:
    """The last evaluation at or before training time ``t`` (None if none)."""
    before = [r for r in curve if r["time"] <= t + 1e-9]
    return before[-1] if before else None


def compare_runs(runs: dict) -> dict:
    """Held-out loss of several runs at equal training time.

    ``runs`` maps labels to run directories. The common time is the shortest run's
    training time; for each run: its final evaluation and its last evaluation at or
    before the common time.
    """
    info = {}
    for label, run_dir in runs.items():
        curve = eval_curve(run_dir)
        info[label] = {"run_dir": str(run_dir), "train_time_s": train_time(run_dir), "curve": curve,
                       "train_curve": eval_curve(run_dir, "train"), "final": curve[-1] if curve else None}
    times = [v["train_time_s"] for v in info.values() if v["train_time_s"] is not None]
    common = min(times) if times else None
    for v in info.values():
        v["at_common_time"] = loss_at_time(v["curve"], common) if common is not None else None
    return {"common_time_s": common, "runs": info}


def model_run_dir(model_dir) -> Path | None:
    """The training run a model directory came from: itself or its parent, whichever holds
    metrics.jsonl (``cadenza train`` exports to RUN_DIR/model)."""
    d = Path(model_dir)
    for cand in (d, d.parent):
        if (cand / "metrics.jsonl").is_file():
            return cand
    return None


__all__ = [
    "split_pieces", "load_pieces", "select_pieces", "TokenScores", "target_stats", "context_windows",
    "score_model", "KneserNey", "score_ngram", "sample_transformer", "to_muspy", "muspy_metrics",
    "metric_stats", "eval_curve", "train_time", "loss_at_time", "compare_runs", "model_run_dir",
    "MUSPY_METRICS",
]


# --------------------------------------------------------------------------- what context buys
def score_recent(model, pieces, pitch_ids, window: int = 256, prefix_len: int = 5, stride: int = 32,
                 min_pos: int = 0, batch_tokens: int = 16384) -> TokenScores:
    """Score targets at positions >= ``min_pos`` seeing only the piece's conditioning prefix
    (its first ``prefix_len`` tokens) plus the most recent tokens, ``window`` tokens in all.

    Windows ``prefix + tokens[a:b]`` (``b - a = window - prefix_len``) slide by ``stride``;
    each scores its last ``stride`` targets, so every target sees between
    ``window - stride`` and ``window`` tokens (``context`` in the result).
    """
    body = window - prefix_len
    if not 1 <= stride < body:
        raise ConfigError(f"stride must be between 1 and {body - 1}, not {stride}")
    jobs = []
    for i, p in enumerate(pieces):
        n = len(p)
        first = max(min_pos, prefix_len + 1)
        t = first
        while t < n:
            last = min(n - 1, t + stride - 1)        # targets t .. last
            a = max(prefix_len, last - body + 1)
            jobs.append((i, a, last + 1, t))
            t = last + 1
    max_len = int(model.config.max_len)
    if window > max_len:
        raise ConfigError(f"window {window} is longer than the model's max_len {max_len}")
    parts = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in _batches(sorted(jobs, key=lambda j: j[1] - j[2]), batch_tokens):
                longest = max(prefix_len + e - a for _, a, e, _ in batch)
                x = torch.zeros((len(batch), longest), dtype=torch.long)
                for b, (i, a, e, _) in enumerate(batch):
                    seq = np.concatenate([pieces[i][:prefix_len], pieces[i][a:e]])
                    x[b, :len(seq)] = torch.as_tensor(seq, dtype=torch.long)
                logits = model(x)
                rows, tgts, piece, pos, ctx = [], [], [], [], []
                for b, (i, a, e, t) in enumerate(batch):
                    off = prefix_len - a            # window index of piece position q is q + off
                    rows.append(logits[b, t - 1 + off:e - 1 + off])
                    tgts.append(x[b, t + off:e + off])
                    piece.append(np.full(e - t, i))
                    pos.append(np.arange(t, e))
                    ctx.append(np.arange(t, e) + off)
                lp = F.log_softmax(torch.cat(rows).float(), dim=-1)
                parts.append(_scores_from(lp, torch.cat(tgts), pitch_ids, np.concatenate(piece),
                                          np.concatenate(pos), np.concatenate(ctx)))
    finally:
        model.train(was_training)
    return _sorted(TokenScores.concat(parts))


def context_gain(model, pieces, pitch_ids, window: int = 256, min_pos: int = 512, stride: int | None = None,
                 n_boot: int = 2000, seed: int = 0) -> dict:
    """Bits/token of the targets at positions >= ``min_pos`` with the whole piece as context
    (up to the model's max_len) vs the prefix plus the last ``window`` tokens, on the pieces
    longer than ``min_pos``; the relative gain with a 95% bootstrap interval over pieces."""
    max_len = int(model.config.max_len)
    stride = stride or max(1, min(32, window // 8))
    long = [np.asarray(p[:max_len]) for p in pieces if len(p) > min_pos + 1]
    if not long:
        return {"pieces": 0}
    whole = score_model(model, long, pitch_ids, context=max_len)
    recent = score_recent(model, long, pitch_ids, window=window, stride=stride, min_pos=min_pos)
    whole = whole.select(whole.position >= min_pos)
    recent = recent.select(recent.position >= min_pos)
    k = len(long)
    w_bits = np.bincount(whole.piece, weights=whole.bits, minlength=k)
    r_bits = np.bincount(recent.piece, weights=recent.bits, minlength=k)
    counts = np.bincount(whole.piece, minlength=k).astype(float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, k, size=(n_boot, k))
    gains = 1.0 - w_bits[idx].sum(1) / r_bits[idx].sum(1)
    return {"pieces": k, "targets": int(counts.sum()), "min_pos": min_pos, "window": window, "stride": stride,
            "bits_whole": float(w_bits.sum() / counts.sum()), "bits_recent": float(r_bits.sum() / counts.sum()),
            "gain": float(1.0 - w_bits.sum() / r_bits.sum()),
            "gain_ci95": [float(np.quantile(gains, 0.025)), float(np.quantile(gains, 0.975))],
            "pieces_where_whole_is_better": int((w_bits < r_bits).sum())}
