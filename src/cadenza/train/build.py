"""What a run is built from: its model's starting weights (``--init``), AdamW's parameter
groups and the sampler of training windows with its held-out spans."""

from __future__ import annotations

from pathlib import Path

from cadenza.data.dataset import PieceSampler, RecordSampler, WindowSampler, piece_eval_spans
from cadenza.errors import ConfigError
from cadenza.train.config import TrainConfig


def sampler_for(cfg: TrainConfig, meta: dict, train_tokens, val_tokens, d):
    """Training windows and held-out spans: whole pieces (and transposition) for music data
    made of pieces, plain random windows otherwise. Returns (sampler, held-out spans or None)."""
    sep = meta.get("separator") or {}
    if cfg.piece_windows and meta.get("modality") == "music" and "bos" in sep and "pad" in sep:
        transform = None
        if cfg.transpose and meta.get("tokenizer"):
            from cadenza.codecs.music import MusicCodec
            from cadenza.data.transpose import Transposer

            transform = Transposer(MusicCodec.load(Path(cfg.data) / meta["tokenizer"]))
        sampler = PieceSampler(train_tokens, cfg.seq_len, cfg.batch_size, sep["bos"], sep["pad"], seed=cfg.seed,
                               rank=d.rank, world_size=d.world_size, grad_accum=cfg.grad_accum,
                               transform=transform, transpose=cfg.transpose if transform else 0)
        return sampler, piece_eval_spans(val_tokens, sep["bos"], cfg.eval_windows)
    if meta.get("record_len"):
        return RecordSampler(train_tokens, cfg.seq_len, cfg.batch_size, int(meta["record_len"]), seed=cfg.seed,
                             rank=d.rank, world_size=d.world_size, grad_accum=cfg.grad_accum), None
    return WindowSampler(train_tokens, cfg.seq_len, cfg.batch_size, seed=cfg.seed, rank=d.rank,
                         world_size=d.world_size, grad_accum=cfg.grad_accum), None


def init_weights(model, source) -> str:
    """Copy ``source``'s weights into ``model`` (a fine-tune's start). Where the two differ only in
    how they encode positions (``--init`` with ``--set positions=rope``), the position table is
    left out and every other weight is copied; returns what was left out, for the log."""
    theirs = source.state_dict()
    mine = model.state_dict()
    dropped = sorted(k for k in theirs if k not in mine)
    missing = sorted(k for k in mine if k not in theirs)
    reshaped = sorted(k for k in mine if k in theirs and mine[k].shape != theirs[k].shape)
    if reshaped or any(not k.startswith("pos_emb.") for k in dropped + missing):
        raise ConfigError(f"the model to start from has other weights than this one ({', '.join((dropped + missing)[:4])}); "
                          "--init changes only how positions are encoded (--set positions=...), not the shape")
    model.load_state_dict({k: v for k, v in theirs.items() if k in mine}, strict=not missing)
    if not dropped and not missing:
        return ""
    return f" (positions now {model.config.positions}: " + (
        f"its {', '.join(dropped)} left out)" if dropped else f"{', '.join(missing)} start fresh)")


def param_groups(model, weight_decay: float):
    """AdamW's groups: weight decay on matrices, none on biases and norms."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]
