"""The training loop: one function, :func:`train`, used by ``cadenza train`` and by Python.

Order of work: check every input and fail with one sentence before anything is built
(``cadenza.train.prepare``); then build the model from the seed, wrap it (DDP / FSDP2),
create AdamW and the run's precision (``cadenza.train.precision``); then step:

    lr(step) -> micro-batches (forward, backward; gradients synced on the last one)
    -> all-reduce loss and flags -> clip -> AdamW step (or skip a non-finite step)
    -> log -> evaluate (``cadenza.train.evaluate``) / save when due -> stop on completion,
    Ctrl-C, step or time budget.

The data position is the step number and dropout is seeded from (seed, step, rank), so a
resumed run repeats exactly what an uninterrupted one would have done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cadenza._version import __version__
from cadenza.data.dataset import IGNORE, PieceSampler, RecordSampler, WindowSampler, load_splits, piece_eval_spans
from cadenza.config import ModelConfig
from cadenza.errors import CadenzaError, ConfigError
from cadenza.io import write_text_atomic
from cadenza.model import SparseTransformer
from cadenza.train import checkpoint as ckpt_io
from cadenza.train import distributed as dist_util
from cadenza.train import precision
from cadenza.train.config import TrainConfig
from cadenza.train.evaluate import LN2, held_out_batches, held_out_loss
from cadenza.train.metrics import RunLogger
from cadenza.train.prepare import Plan, prepare, say
from cadenza.train.schedule import WarmupCosine

RUN_FILE = "run.json"
MODEL_DIR = "model"


class TrainingDiverged(CadenzaError):
    """The loss stayed NaN or infinite for too many steps in a row."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int                        # optimizer steps completed
    steps: int                       # the run's target
    reason: str                      # completed | interrupted | stop_after | time_budget | already_done
    train_loss: float | None = None  # bits per token, last logged
    eval_loss: float | None = None   # bits per token on the held-out split, last evaluation
    best_eval_loss: float | None = None
    checkpoint: Path | None = None
    model_dir: Path | None = None
    elapsed_s: float = 0.0
    unit: str = "bits/token"

    @property
    def interrupted(self) -> bool:
        return self.reason == "interrupted"


def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy in nats (computed in float32)."""
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))


# --------------------------------------------------------------------------- signals
class _StopRequest:
    """Ctrl-C / SIGTERM: finish the current step, save, exit. A second Ctrl-C quits at once."""

    def __init__(self, allow_force: bool = True):
        self.requested = False
        self.allow_force = allow_force  # False under torchrun: its agent forwards the same Ctrl-C again
        self._old = {}

    def install(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT and self.allow_force:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old.clear()


# --------------------------------------------------------------------------- the loop
def _sampler(cfg: TrainConfig, meta: dict, train_tokens, val_tokens, d):
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


def _param_groups(model, weight_decay: float):
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def _seed_step(seed: int, step: int, rank: int) -> None:
    torch.manual_seed(int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0]))


def _grad_sync(model, last: bool, fsdp: bool):
    if fsdp:
        model.set_requires_gradient_sync(last)
        return contextlib.nullcontext()
    if not last and hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()


def _as_float(x) -> float:
    if hasattr(x, "full_tensor"):
        x = x.full_tensor()
    return float(x)


def train(config: TrainConfig | None = None, **options) -> TrainResult:
    """Train a SparseTransformer; see :class:`TrainConfig` for the options.

    ``train(data="data/", out="runs/a", preset="tiny", steps=100)`` or
    ``train(TrainConfig(...))``. Launched under ``torchrun`` it runs data-parallel.
    Returns a :class:`TrainResult`; bad input raises a ``CadenzaError`` before any work.
    """
    if config is None:
        config = TrainConfig(**options)
    elif options:
        config = dataclasses.replace(config, **options)
    d = dist_util.setup(config.device)
    try:
        plan, state = prepare(config, d)
        return _train(plan, state, d)
    finally:
        dist_util.teardown(d)


def _train(plan: Plan, state: dict | None, d) -> TrainResult:
    from tqdm import tqdm

    cfg, out = plan.cfg, Path(plan.cfg.out)
    mc = ModelConfig.from_dict(plan.model_config)
    _, train_tokens, val_tokens = load_splits(cfg.data)

    # Resume bookkeeping travels from rank 0 to every rank.
    info = None
    if d.is_main and state is not None:
        info = {k: state.get(k) for k in ("step", "best_eval", "elapsed", "tokens", "schedule", "scaler")}
        info["rng"] = state.get("rng")
    info = dist_util.broadcast_object(d, info)
    start_step = int(info["step"]) if info else 0

    if start_step >= cfg.steps:
        say(d, f"{out} is already at step {start_step} of {cfg.steps}; nothing to do (raise --steps to train longer)")
        return TrainResult(run_dir=out, step=start_step, steps=cfg.steps, reason="already_done",
                           best_eval_loss=info.get("best_eval"), checkpoint=Path(plan.resume_path) if plan.resume_path else None,
                           elapsed_s=float(info.get("elapsed") or 0.0), unit=plan.unit)

    torch.manual_seed(cfg.seed)
    model = SparseTransformer(mc)
    model.activation_checkpointing = cfg.activation_checkpointing
    if info is None and cfg.init:
        say(d, f"starting from the weights of {cfg.init}" + init_weights(model, SparseTransformer.load(cfg.init)))
    model = model.to(d.device)
    model = dist_util.wrap(model, d, cfg.fsdp)
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr,
                                  betas=(cfg.beta1, cfg.beta2))
    schedule = WarmupCosine(optimizer, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)
    scaler = precision.grad_scaler(cfg.precision, d.device)
    if info is not None:
        dist_util.load_full_state(model, optimizer,
                                  state["model"] if d.is_main else None,
                                  state["optimizer"] if d.is_main else None, d)
        schedule.load_state_dict(info.get("schedule") or {})
        if info.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(info["scaler"])
        rngs = info.get("rng") or []
        if d.rank < len(rngs) and rngs[d.rank] is not None:
            ckpt_io.set_rng_state(rngs[d.rank])
        old = info.get("schedule") or {}
        if old and (old.get("total"), old.get("warmup"), old.get("peak")) != (schedule.total, schedule.warmup, schedule.peak):
            say(d, f"note: the learning-rate schedule changed on resume (steps {old.get('total')} -> {schedule.total}, "
                    f"warm-up {old.get('warmup')} -> {schedule.warmup}, peak {old.get('peak')} -> {schedule.peak})")
        say(d, f"resuming {out} from step {start_step} ({plan.resume_path})")
    state = None  # free the loaded tensors

    sampler, piece_spans = _sampler(cfg, plan.meta, train_tokens, val_tokens, d)
    held_out = held_out_batches(cfg, plan.meta, val_tokens, piece_spans, sampler.micro_batch, d)

    logger = RunLogger(out, enabled=d.is_main, tensorboard=cfg.tensorboard,
                       resume_step=start_step if info is not None else None)
    if d.is_main:
        run_info = {"cadenza_version": __version__, "torch_version": torch.__version__,
                    "world_size": d.world_size, "device": str(d.device), "unit": plan.unit,
                    "train_config": cfg.to_dict(), "model_config": plan.model_config, "data_meta": plan.meta,
                    "parameters": sum(p.numel() for p in model.parameters()) if not cfg.fsdp else None}
        write_text_atomic(out / RUN_FILE, json.dumps(run_info, indent=2, default=str))

    best_eval = info.get("best_eval") if info else None
    elapsed = float(info.get("elapsed") or 0.0) if info else 0.0
    tokens = int(info.get("tokens") or 0) if info else 0
    last_ckpt = Path(plan.resume_path) if plan.resume_path else None
    result_train, result_eval = None, None

    def evaluate(step: int) -> bool:
        """Held-out loss; True when it is the best so far."""
        nonlocal best_eval, result_eval
        bits, count, dt = held_out_loss(model if cfg.fsdp else dist_util.unwrap(model), held_out, cfg.precision, d)
        logger.log({"step": step, "split": "eval", "loss": bits, "tokens_per_s": count / max(dt, 1e-9),
                    "time": elapsed, "tokens": tokens})
        result_eval = bits
        improved = math.isfinite(bits) and (best_eval is None or bits < best_eval)
        if improved:
            best_eval = bits
        return improved

    def save(step: int, best: bool) -> Path:
        nonlocal last_ckpt
        finite = all(bool(torch.isfinite(p.to_local() if hasattr(p, "to_local") else p).all())
                     for p in model.parameters())
        bad = dist_util.all_reduce_sum(d, [0.0 if finite else 1.0])[0]
        if bad:
            raise TrainingDiverged(f"the parameters became NaN or infinite at step {step}; not saving them. "
                                   f"The last good checkpoint is {last_ckpt or 'none'}")
        msd, osd = dist_util.full_state(model, optimizer, d)
        rngs = dist_util.all_gather_object(d, ckpt_io.rng_state())
        path = ckpt_io.step_path(out, step)
        if d.is_main:
            ckpt_io.save_checkpoint(path, {
                "step": step, "model": msd, "optimizer": osd, "schedule": schedule.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": rngs, "data": {"seed": cfg.seed, "next_step": step, "global_batch": cfg.batch_size,
                                      "seq_len": cfg.seq_len},
                "model_config": plan.model_config, "train_config": cfg.to_dict(),
                "best_eval": best_eval, "elapsed": elapsed, "tokens": tokens,
                "world_size": d.world_size, "cadenza_version": __version__,
            })
            if best:
                ckpt_io.mark_best(out, path)
            ckpt_io.prune(out, cfg.keep_last)
        dist_util.barrier(d)
        last_ckpt = path
        return path

    def export_model() -> Path | None:
        """The final weights as a model directory (model.safetensors + config.json, and the
        data's tokenizer.json when it has one)."""
        msd, _ = dist_util.full_state(model, None, d) if cfg.fsdp else (None, None)
        path = out / MODEL_DIR
        if d.is_main:
            if cfg.fsdp:
                fresh = SparseTransformer(mc)
                fresh.load_state_dict(msd)
                fresh.save(path)
            else:
                dist_util.unwrap(model).save(path)
            tok = plan.meta.get("tokenizer")
            if tok and (Path(cfg.data) / tok).is_file():   # a music model folder is complete with it
                write_text_atomic(path / "tokenizer.json", (Path(cfg.data) / tok).read_text())
        dist_util.barrier(d)
        return path

    under_torchrun = d.enabled or "TORCHELASTIC_RUN_ID" in os.environ
    stop = _StopRequest(allow_force=not under_torchrun).install()
    interactive = sys.stderr.isatty()
    bar = tqdm(total=cfg.steps, initial=start_step, unit="step", desc="train", dynamic_ncols=True,
               mininterval=0.5 if interactive else 30.0, file=sys.stderr,
               disable=not (d.is_main and cfg.progress))
    step = start_step
    bad_run = 0
    reason = None
    window = {"loss": 0.0, "n": 0, "tokens": 0, "time": 0.0}
    model.train()
    try:
        while reason is None:
            t0 = time.perf_counter()
            lr = schedule.apply(step)
            _seed_step(cfg.seed, step, d.rank)
            loss_sum = 0.0
            tokens_per_step = 0
            for a, (x, y) in enumerate(sampler.micro_batches(step)):
                tokens_per_step += int((y != IGNORE).sum()) * d.world_size
                x, y = x.to(d.device), y.to(d.device)
                with _grad_sync(model, a == cfg.grad_accum - 1, cfg.fsdp), \
                        precision.autocast(cfg.precision, d.device.type):
                    loss = loss_fn(model(x), y)
                    scaler.scale(loss / cfg.grad_accum).backward()
                loss_sum += float(loss.detach())
            local_loss = loss_sum / cfg.grad_accum
            max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
            scaler.unscale_(optimizer)
            grad_norm = _as_float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
            loss_g, bad_g, stop_g = dist_util.all_reduce_sum(
                d, [local_loss, 0.0 if math.isfinite(local_loss) else 1.0, 1.0 if stop.requested else 0.0])
            mean_loss = loss_g / d.world_size
            skipped = bool(bad_g) or not math.isfinite(grad_norm) or not math.isfinite(mean_loss)
            if skipped:
                bad_run += 1
            else:
                scaler.step(optimizer)
                bad_run = 0
            scaler.update()   # fp16: a skipped step lowers the loss scale
            optimizer.zero_grad(set_to_none=True)
            step += 1
            dt = time.perf_counter() - t0
            elapsed += dt
            tokens += tokens_per_step
            bits = mean_loss / LN2

            if skipped:
                say(d, f"warning: step {step}: the loss or gradient is not finite (loss {mean_loss}, grad norm "
                        f"{grad_norm}); step skipped ({bad_run} in a row, stopping at {cfg.max_bad_steps})")
                logger.log({"step": step, "split": "train", "loss": None, "tokens_per_s": tokens_per_step / dt,
                            "time": elapsed, "lr": lr, "grad_norm": None, "tokens": tokens, "skipped": True})
                if bad_run >= cfg.max_bad_steps:
                    raise TrainingDiverged(
                        f"the loss was NaN or infinite for {bad_run} steps in a row (up to step {step}); stopped. "
                        f"The last good checkpoint is {last_ckpt or 'none (no checkpoint was saved yet)'}; "
                        "lower --lr or check the data, then continue with --resume")
            else:
                window["loss"] += bits
                window["n"] += 1
                window["tokens"] += tokens_per_step
                window["time"] += dt
                result_train = bits
                if step % cfg.log_every == 0 or step == cfg.steps:
                    logger.log({"step": step, "split": "train", "loss": window["loss"] / window["n"],
                                "tokens_per_s": window["tokens"] / max(window["time"], 1e-9), "time": elapsed,
                                "lr": lr, "grad_norm": grad_norm, "tokens": tokens})
                    window = {"loss": 0.0, "n": 0, "tokens": 0, "time": 0.0}
            bar.update(1)
            bar.set_postfix_str(f"loss {bits:.3f} {plan.unit}" + (f" eval {result_eval:.3f}" if result_eval else "")
                                + f" {tokens_per_step / dt:,.0f} tok/s", refresh=False)

            # Why stop here, if at all (the same decision on every rank).
            if stop_g or stop.requested and d.world_size == 1:
                reason = "interrupted"
            elif step >= cfg.steps:
                reason = "completed"
            elif cfg.stop_after and step - start_step >= cfg.stop_after:
                reason = "stop_after"
            elif cfg.max_time_s:
                over = elapsed >= cfg.max_time_s if d.is_main else False
                if dist_util.all_reduce_sum(d, [1.0 if over else 0.0])[0]:
                    reason = "time_budget"

            best = False
            due_eval = (cfg.eval_every and step % cfg.eval_every == 0) or (reason and reason != "interrupted")
            if due_eval and not skipped:
                best = evaluate(step)
            due_save = (cfg.save_every and step % cfg.save_every == 0) or best or reason is not None
            if due_save:  # skipped steps leave parameters and optimizer untouched, so saving is safe
                save(step, best)
            logger.flush()
    finally:
        bar.close()
        stop.restore()
        logger.close()

    model_dir = None
    if reason != "interrupted":
        model_dir = export_model()
    if reason == "interrupted":
        say(d, f"interrupted at step {step}; saved {last_ckpt}. Continue with --resume")
    return TrainResult(run_dir=out, step=step, steps=cfg.steps, reason=reason, train_loss=result_train,
                       eval_loss=result_eval, best_eval_loss=best_eval, checkpoint=last_ckpt,
                       model_dir=model_dir, elapsed_s=elapsed, unit=plan.unit)
