"""The held-out evaluation step: a run's held-out batches and their loss in bits per token.

Every rank runs the same number of forward passes over its share of the held-out split (whole
pieces for music data made of pieces, fixed windows otherwise); the sums are all-reduced, so
every rank gets the same loss.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from cadenza.data.dataset import IGNORE, eval_batches, eval_offsets, piece_eval_batches
from cadenza.train import distributed as dist_util
from cadenza.train import precision

LN2 = math.log(2.0)


def held_out_batches(cfg, meta: dict, val_tokens, piece_spans, micro_batch: int, d):
    """A function giving this rank's held-out (x, y) batches afresh at each call: over
    ``piece_spans`` (whole pieces) when there are any, else over windows of ``cfg.seq_len``."""
    if piece_spans is not None:
        piece_spans = piece_spans[:len(piece_spans) - len(piece_spans) % d.world_size]
        pad = meta["separator"]["pad"]

        def batches():
            return piece_eval_batches(val_tokens, piece_spans, cfg.seq_len, micro_batch, pad, d.rank, d.world_size)
        return batches
    record_len = meta.get("record_len")
    n_eval = len(eval_offsets(len(val_tokens), cfg.seq_len, cfg.eval_windows, record_len))
    n_eval -= n_eval % d.world_size  # every rank runs the same number of forward passes

    def batches():
        return eval_batches(val_tokens, cfg.seq_len, micro_batch, n_eval, d.rank, d.world_size, record_len)
    return batches


def held_out_loss(net, batches, precision_name: str, d) -> tuple[float, float, float]:
    """(bits per token, tokens scored, seconds) of ``net`` over ``batches()``, summed over ranks;
    ``net`` runs in eval mode under the run's precision and is put back in train mode."""
    net.eval()
    t0 = time.perf_counter()
    total, count = 0.0, 0
    with torch.no_grad(), precision.autocast(precision_name, d.device.type):
        for x, y in batches():
            x, y = x.to(d.device), y.to(d.device)
            logits = net(x)
            total += float(F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1),
                                           reduction="sum"))
            count += int((y != IGNORE).sum())
    total, count = dist_util.all_reduce_sum(d, [total, float(count)])
    net.train()
    return total / count / LN2, count, time.perf_counter() - t0
