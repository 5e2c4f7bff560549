"""Scoring music models on held-out pieces: per-token bits and top-k pitch hits, sliding
context windows, and what long context buys (see ``cadenza.music.eval`` for the definitions)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from cadenza.errors import ConfigError

LN2 = math.log(2.0)
TOP_K = (1, 5)




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


def scores_from(log_probs, targets, pitch_ids, piece, position, context) -> TokenScores:
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
                parts.append(scores_from(lp, torch.cat(tgts), pitch_ids, np.concatenate(piece),
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
                parts.append(scores_from(lp, x[0, 1:], pitch_ids, np.full(n - 1, i), pos, pos))
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
                parts.append(scores_from(lp, torch.cat(tgts), pitch_ids, np.concatenate(piece),
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
