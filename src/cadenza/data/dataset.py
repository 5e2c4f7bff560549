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


def eval_offsets(n_tokens: int, seq_len: int, max_windows: int) -> np.ndarray:
    """Non-overlapping window starts over a split; an evenly spaced subset if too many."""
    count = (n_tokens - 1) // seq_len
    if count < 1:
        return np.zeros(0, dtype=np.int64)
    starts = np.arange(count, dtype=np.int64) * seq_len
    if max_windows and count > max_windows:
        pick = np.unique(np.linspace(0, count - 1, max_windows).round().astype(np.int64))
        starts = starts[pick]
    return starts


def eval_batches(tokens: np.ndarray, seq_len: int, batch_size: int, max_windows: int,
                 rank: int = 0, world_size: int = 1):
    """Yield this rank's share (windows r, r+W, ...) of the evaluation windows in batches."""
    mine = eval_offsets(len(tokens), seq_len, max_windows)[rank::world_size]
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
