"""Windows of a token stream for training and evaluation.

Training windows are random, but a pure function of ``(seed, step)``: step ``s`` always
draws the same ``global_batch`` window offsets, whatever the number of processes. Rank
``r`` of ``W`` takes its own contiguous slice of them (so ranks never overlap), then cuts
that slice into gradient-accumulation micro-batches. The "data position" of a run is
therefore just its step number, which makes resuming exact and lets a 2-process run see
exactly the windows a 1-process run with the same global batch sees.

Evaluation windows tile the held-out split without overlap (an evenly spaced subset when
there are more than ``max_windows``), so every evaluation scores the same tokens.
"""

from __future__ import annotations

import numpy as np
import torch

from cadenza.data.format import open_split, read_meta
from cadenza.errors import ConfigError, DataError


def _windows(tokens: np.ndarray, offsets, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = np.stack([np.asarray(tokens[o:o + seq_len + 1]) for o in offsets]).astype(np.int64)
    t = torch.from_numpy(rows)
    return t[:, :-1], t[:, 1:]


class WindowSampler:
    """Random training windows of ``seq_len`` (+1 for the targets), deterministic per step."""

    def __init__(self, tokens: np.ndarray, seq_len: int, global_batch: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1, grad_accum: int = 1):
        if seq_len < 1:
            raise ConfigError(f"seq_len must be positive, got {seq_len}")
        if len(tokens) < seq_len + 1:
            raise DataError(f"the training split has {len(tokens)} tokens, fewer than seq_len + 1 = {seq_len + 1}")
        per_rank, rem = divmod(global_batch, world_size * grad_accum)
        if rem or per_rank < 1:
            raise ConfigError(
                f"batch size {global_batch} must be a positive multiple of processes x grad_accum "
                f"= {world_size} x {grad_accum} = {world_size * grad_accum}")
        self.tokens = tokens
        self.seq_len = seq_len
        self.global_batch = global_batch
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.grad_accum = grad_accum
        self.micro_batch = per_rank

    def offsets(self, step: int) -> np.ndarray:
        """The global batch of window start offsets for ``step`` (same on every rank)."""
        rng = np.random.default_rng([self.seed, int(step)])
        return rng.integers(0, len(self.tokens) - self.seq_len, size=self.global_batch)

    def rank_offsets(self, step: int) -> np.ndarray:
        per_rank = self.global_batch // self.world_size
        return self.offsets(step)[self.rank * per_rank:(self.rank + 1) * per_rank]

    def micro_batches(self, step: int):
        """Yield ``grad_accum`` (inputs, targets) pairs of shape (micro_batch, seq_len) for this rank."""
        mine = self.rank_offsets(step)
        for a in range(self.grad_accum):
            yield _windows(self.tokens, mine[a * self.micro_batch:(a + 1) * self.micro_batch], self.seq_len)


class RecordSampler(WindowSampler):
    """Training windows that start at a record start (every ``record_len`` tokens: one image
    each), drawn per step like WindowSampler, so position 0 of a window is always a record's
    first token (what factorized image positions assume)."""

    def __init__(self, tokens: np.ndarray, seq_len: int, global_batch: int, record_len: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1, grad_accum: int = 1):
        super().__init__(tokens, seq_len, global_batch, seed, rank, world_size, grad_accum)
        if seq_len > record_len - 1:
            raise ConfigError(f"seq_len {seq_len} is longer than one record of {record_len} tokens minus one")
        self.record_len = int(record_len)
        self.records = len(tokens) // self.record_len
        if self.records < 1:
            raise DataError(f"the training split holds no whole record of {record_len} tokens")

    def offsets(self, step: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, int(step)])
        return rng.integers(0, self.records, size=self.global_batch) * self.record_len


def eval_offsets(n_tokens: int, seq_len: int, max_windows: int, record_len: int | None = None) -> np.ndarray:
    """Non-overlapping window starts over a split (record starts, for data made of records of
    ``record_len`` tokens); an evenly spaced subset if too many."""
    if record_len:
        count = n_tokens // record_len if seq_len < record_len else 0
        step = record_len
    else:
        count, step = (n_tokens - 1) // seq_len, seq_len
    if count < 1:
        return np.zeros(0, dtype=np.int64)
    starts = np.arange(count, dtype=np.int64) * step
    if max_windows and count > max_windows:
        pick = np.unique(np.linspace(0, count - 1, max_windows).round().astype(np.int64))
        starts = starts[pick]
    return starts


def eval_batches(tokens: np.ndarray, seq_len: int, batch_size: int, max_windows: int,
                 rank: int = 0, world_size: int = 1, record_len: int | None = None):
    """Yield this rank's share (windows r, r+W, ...) of the evaluation windows in batches."""
    mine = eval_offsets(len(tokens), seq_len, max_windows, record_len)[rank::world_size]
    for i in range(0, len(mine), batch_size):
        yield _windows(tokens, mine[i:i + batch_size], seq_len)


def load_splits(data_dir, need_val: bool = True) -> tuple[dict, np.ndarray, np.ndarray | None]:
    """Open a dataset directory: (meta, train tokens, val tokens or None), with clear errors."""
    meta = read_meta(data_dir)
    train = open_split(data_dir, "train")
    val = None
    if "val" in meta["splits"]:
        val = open_split(data_dir, "val")
    elif need_val:
        raise DataError(f"{data_dir} has no 'val' split to evaluate on (has {sorted(meta['splits'])}); "
                        "rebuild it or turn evaluation off")
    return meta, train, val


# --------------------------------------------------------------------------- whole pieces
IGNORE = -100   # target id that the loss skips (F.cross_entropy's default ignore_index)


def piece_bounds(tokens: np.ndarray, bos: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) of every piece in a stream of pieces that each begin with ``bos``."""
    starts = np.flatnonzero(np.asarray(tokens) == bos).astype(np.int64)
    if len(starts) == 0 or starts[0] != 0:
        starts = np.concatenate([[0], starts])
    ends = np.concatenate([starts[1:], [len(tokens)]])
    return starts, ends


def _piece_windows(tokens, spans, seq_len: int, pad: int, transform=None, shifts=None):
    """Windows [start, start + seq_len] inside one piece each, padded to the batch's longest;
    padded targets are IGNORE, so no window attends or predicts across a piece boundary."""
    rows = [np.asarray(tokens[a:min(b, a + seq_len + 1)], dtype=np.int64) for a, b in spans]
    if transform is not None:
        rows = [transform(r, int(s)) for r, s in zip(rows, shifts)]
    width = max(2, max(len(r) for r in rows))
    x = np.full((len(rows), width - 1), pad, dtype=np.int64)
    y = np.full((len(rows), width - 1), IGNORE, dtype=np.int64)
    for k, r in enumerate(rows):
        n = len(r) - 1
        if n > 0:
            x[k, :n] = r[:-1]
            y[k, :n] = r[1:]
    return torch.from_numpy(x), torch.from_numpy(y)


class PieceSampler(WindowSampler):
    """Training windows that each hold one piece: deterministic per step, like WindowSampler.

    Step ``s`` draws ``global_batch`` pieces of similar length (neighbours in length order
    around a random one, so little of a batch is padding). A piece that fits is taken whole
    from its BOS; a longer one starts at its BOS with probability ``bos_share`` and at a
    random offset inside it otherwise. Each window gets a transposition in
    ``-transpose .. transpose - 1`` semitones (through ``transform(ids, shift)``), drawn with
    the same per-step generator, so resuming and any number of processes stay exact.
    """

    def __init__(self, tokens: np.ndarray, seq_len: int, global_batch: int, bos: int, pad: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1, grad_accum: int = 1, transform=None, transpose: int = 0,
                 bos_share: float = 0.5):
        super().__init__(tokens, seq_len, global_batch, seed, rank, world_size, grad_accum)
        self.starts, self.ends = piece_bounds(tokens, bos)
        keep = (self.ends - self.starts) >= 2
        self.starts, self.ends = self.starts[keep], self.ends[keep]
        if len(self.starts) == 0:
            raise DataError("the training split holds no pieces")
        self.by_length = np.argsort(self.ends - self.starts, kind="stable")
        self.pad, self.transform, self.transpose, self.bos_share = pad, transform, int(transpose), float(bos_share)

    def plan(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(window spans (start, end) for the global batch, transpositions) of ``step``."""
        rng = np.random.default_rng([self.seed, int(step), 1])
        n, B = len(self.by_length), self.global_batch
        anchor = int(rng.integers(0, n))
        lo = min(max(0, anchor - B // 2), max(0, n - B))
        pick = self.by_length[(lo + np.arange(B)) % n]
        rng.shuffle(pick)
        spans = np.zeros((B, 2), dtype=np.int64)
        for k, p in enumerate(pick):
            a, b = int(self.starts[p]), int(self.ends[p])
            if b - a > self.seq_len + 1 and rng.random() >= self.bos_share:
                a = int(rng.integers(a, b - self.seq_len))
            spans[k] = (a, b)
        shifts = rng.integers(-self.transpose, self.transpose, size=B) if self.transpose else np.zeros(B, np.int64)
        return spans, shifts

    def micro_batches(self, step: int):
        spans, shifts = self.plan(step)
        per_rank = self.global_batch // self.world_size
        mine = slice(self.rank * per_rank, (self.rank + 1) * per_rank)
        spans, shifts = spans[mine], shifts[mine]
        for a in range(self.grad_accum):
            part = slice(a * self.micro_batch, (a + 1) * self.micro_batch)
            yield _piece_windows(self.tokens, spans[part], self.seq_len, self.pad, self.transform, shifts[part])


def piece_eval_spans(tokens: np.ndarray, bos: int, max_windows: int) -> np.ndarray:
    """Held-out pieces scored from their BOS (an evenly spaced subset when there are more)."""
    starts, ends = piece_bounds(tokens, bos)
    spans = np.stack([starts, ends], axis=1)
    if max_windows and len(spans) > max_windows:
        spans = spans[np.unique(np.linspace(0, len(spans) - 1, max_windows).round().astype(np.int64))]
    return spans


def piece_eval_batches(tokens: np.ndarray, spans: np.ndarray, seq_len: int, batch_size: int, pad: int,
                       rank: int = 0, world_size: int = 1):
    mine = spans[rank::world_size]
    for i in range(0, len(mine), batch_size):
        yield _piece_windows(tokens, mine[i:i + batch_size], seq_len, pad)
