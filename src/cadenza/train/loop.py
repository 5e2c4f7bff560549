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
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cadenza._version import __version__
from cadenza.data.dataset import IGNORE, load_splits
from cadenza.config import ModelConfig
from cadenza.errors import CadenzaError
from cadenza.io import write_text_atomic
from cadenza.model import SparseTransformer
from cadenza.train import checkpoint as ckpt_io
from cadenza.train import distributed as dist_util
from cadenza.train import precision
from cadenza.train.build import init_weights, param_groups, sampler_for
from cadenza.train.config import TrainConfig
from cadenza.train.evaluate import LN2, held_out_batches, held_out_loss
from cadenza.train.metrics import RunLogger
from cadenza.train.prepare import Plan, prepare, say
from cadenza.train.schedule import WarmupCosine
from cadenza.train.stop import StopRequest

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


# --------------------------------------------------------------------------- one step
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




@dataclass
class StepReport:
    """What one optimizer step did, the same on every rank but ``tokens`` and ``dt``."""
    lr: float
    loss: float           # mean over ranks, nats per token
    grad_norm: float
    tokens: int           # target tokens in the step, all ranks together
    dt: float             # seconds
    skipped: bool         # the loss or the gradient was not finite: parameters left as they were
    stop: bool            # some rank was asked to stop

    @property
    def bits(self) -> float:
        return self.loss / LN2


# --------------------------------------------------------------------------- the run
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
        # Resume bookkeeping travels from rank 0 to every rank.
        info = None
        if d.is_main and state is not None:
            info = {k: state.get(k) for k in ("step", "best_eval", "elapsed", "tokens", "schedule", "scaler", "rng")}
        info = dist_util.broadcast_object(d, info)
        start_step = int(info["step"]) if info else 0
        if start_step >= plan.cfg.steps:
            out = Path(plan.cfg.out)
            say(d, f"{out} is already at step {start_step} of {plan.cfg.steps}; nothing to do "
                   "(raise --steps to train longer)")
            return TrainResult(run_dir=out, step=start_step, steps=plan.cfg.steps, reason="already_done",
                               best_eval_loss=info.get("best_eval"),
                               checkpoint=Path(plan.resume_path) if plan.resume_path else None,
                               elapsed_s=float(info.get("elapsed") or 0.0), unit=plan.unit)
        trainer = Trainer(plan, d, info, state)
        del state   # free the loaded tensors
        return trainer.run()
    finally:
        dist_util.teardown(d)


class Trainer:
    """One training run: the model, optimizer, schedule, data and counters, and its jobs as
    methods (torchtitan's shape): :meth:`step`, :meth:`evaluate`, :meth:`save`, :meth:`resume`,
    :meth:`export_model`; :meth:`run` steps until a reason to stop."""

    def __init__(self, plan: Plan, d, info: dict | None = None, state: dict | None = None):
        cfg = self.cfg = plan.cfg
        self.plan, self.d, self.out = plan, d, Path(cfg.out)
        self.mc = ModelConfig.from_dict(plan.model_config)
        _, train_tokens, val_tokens = load_splits(cfg.data)
        torch.manual_seed(cfg.seed)
        model = SparseTransformer(self.mc)
        model.activation_checkpointing = cfg.activation_checkpointing
        if info is None and cfg.init:
            say(d, f"starting from the weights of {cfg.init}" + init_weights(model, SparseTransformer.load(cfg.init)))
        self.model = dist_util.wrap(model.to(d.device), d, cfg.fsdp)
        self.optimizer = torch.optim.AdamW(param_groups(self.model, cfg.weight_decay), lr=cfg.lr,
                                           betas=(cfg.beta1, cfg.beta2))
        self.schedule = WarmupCosine(self.optimizer, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)
        self.scaler = precision.grad_scaler(cfg.precision, d.device)
        # the counters a checkpoint carries (resume() sets them) and the last figures
        self.start_step = self.global_step = 0
        self.best_eval, self.elapsed, self.tokens = None, 0.0, 0
        self.last_ckpt = Path(plan.resume_path) if plan.resume_path else None
        self.train_loss = self.eval_loss = None
        self.bad_run = 0                                 # non-finite steps in a row
        self.window = self._fresh_window()               # training figures since the last log line
        if info is not None:
            self.resume(info, state)
        self.sampler, piece_spans = sampler_for(cfg, plan.meta, train_tokens, val_tokens, d)
        self.held_out = held_out_batches(cfg, plan.meta, val_tokens, piece_spans, self.sampler.micro_batch, d)
        self.logger = RunLogger(self.out, enabled=d.is_main, tensorboard=cfg.tensorboard,
                                resume_step=self.start_step if info is not None else None)
        if d.is_main:
            self._write_run_info()

    @staticmethod
    def _fresh_window() -> dict:
        return {"loss": 0.0, "n": 0, "tokens": 0, "time": 0.0}

    def _write_run_info(self):
        cfg, plan, d = self.cfg, self.plan, self.d
        run_info = {"cadenza_version": __version__, "torch_version": torch.__version__,
                    "world_size": d.world_size, "device": str(d.device), "unit": plan.unit,
                    "train_config": cfg.to_dict(), "model_config": plan.model_config, "data_meta": plan.meta,
                    "parameters": sum(p.numel() for p in self.model.parameters()) if not cfg.fsdp else None}
        write_text_atomic(self.out / RUN_FILE, json.dumps(run_info, indent=2, default=str))

    # ------------------------------------------------------------------ state
    def resume(self, info: dict, state: dict | None):
        """Load a checkpoint: ``info`` (its counters, on every rank) and ``state`` (its tensors,
        read on rank 0 only)."""
        d, schedule = self.d, self.schedule
        dist_util.load_full_state(self.model, self.optimizer,
                                  state["model"] if d.is_main else None,
                                  state["optimizer"] if d.is_main else None, d)
        schedule.load_state_dict(info.get("schedule") or {})
        if info.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(info["scaler"])
        rngs = info.get("rng") or []
        if d.rank < len(rngs) and rngs[d.rank] is not None:
            ckpt_io.set_rng_state(rngs[d.rank])
        old = info.get("schedule") or {}
        if old and (old.get("total"), old.get("warmup"), old.get("peak")) != (schedule.total, schedule.warmup, schedule.peak):
            say(d, f"note: the learning-rate schedule changed on resume (steps {old.get('total')} -> {schedule.total}, "
                    f"warm-up {old.get('warmup')} -> {schedule.warmup}, peak {old.get('peak')} -> {schedule.peak})")
        say(d, f"resuming {self.out} from step {int(info['step'])} ({self.plan.resume_path})")
        self.start_step = self.global_step = int(info["step"])
        self.best_eval = info.get("best_eval")
        self.elapsed = float(info.get("elapsed") or 0.0)
        self.tokens = int(info.get("tokens") or 0)

    def save(self, best: bool = False) -> Path:
        """A checkpoint of the current step (refused when the parameters are not finite)."""
        d, cfg, step = self.d, self.cfg, self.global_step
        finite = all(bool(torch.isfinite(p.to_local() if hasattr(p, "to_local") else p).all())
                     for p in self.model.parameters())
        bad = dist_util.all_reduce_sum(d, [0.0 if finite else 1.0])[0]
        if bad:
            raise TrainingDiverged(f"the parameters became NaN or infinite at step {step}; not saving them. "
                                   f"The last good checkpoint is {self.last_ckpt or 'none'}")
        msd, osd = dist_util.full_state(self.model, self.optimizer, d)
        rngs = dist_util.all_gather_object(d, ckpt_io.rng_state())
        path = ckpt_io.step_path(self.out, step)
        if d.is_main:
            ckpt_io.save_checkpoint(path, {
                "step": step, "model": msd, "optimizer": osd, "schedule": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": rngs, "data": {"seed": cfg.seed, "next_step": step, "global_batch": cfg.batch_size,
                                      "seq_len": cfg.seq_len},
                "model_config": self.plan.model_config, "train_config": cfg.to_dict(),
                "best_eval": self.best_eval, "elapsed": self.elapsed, "tokens": self.tokens,
                "world_size": d.world_size, "cadenza_version": __version__,
            })
            if best:
                ckpt_io.mark_best(self.out, path)
            ckpt_io.prune(self.out, cfg.keep_last)
        dist_util.barrier(d)
        self.last_ckpt = path
        return path

    def export_model(self) -> Path:
        """The final weights as a model directory (model.safetensors + config.json, and the
        data's tokenizer.json when it has one)."""
        cfg, d = self.cfg, self.d
        msd, _ = dist_util.full_state(self.model, None, d) if cfg.fsdp else (None, None)
        path = self.out / MODEL_DIR
        if d.is_main:
            if cfg.fsdp:
                fresh = SparseTransformer(self.mc)
                fresh.load_state_dict(msd)
                fresh.save(path)
            else:
                dist_util.unwrap(self.model).save(path)
            tok = self.plan.meta.get("tokenizer")
            if tok and (Path(cfg.data) / tok).is_file():   # a music model folder is complete with it
                write_text_atomic(path / "tokenizer.json", (Path(cfg.data) / tok).read_text())
        dist_util.barrier(d)
        return path

    # ------------------------------------------------------------------ jobs
    def step(self, stop: StopRequest | None = None) -> StepReport:
        """One optimizer step over ``grad_accum`` micro-batches (skipped when the loss or the
        gradient is not finite); counts it and its time and tokens. ``stop``: a Ctrl-C on any
        rank, shared with the others."""
        cfg, d, model, scaler = self.cfg, self.d, self.model, self.scaler
        t0 = time.perf_counter()
        lr = self.schedule.apply(self.global_step)
        _seed_step(cfg.seed, self.global_step, d.rank)
        loss_sum, tokens = 0.0, 0
        for a, (x, y) in enumerate(self.sampler.micro_batches(self.global_step)):
            tokens += int((y != IGNORE).sum()) * d.world_size
            x, y = x.to(d.device), y.to(d.device)
            with _grad_sync(model, a == cfg.grad_accum - 1, cfg.fsdp), \
                    precision.autocast(cfg.precision, d.device.type):
                loss = loss_fn(model(x), y)
                scaler.scale(loss / cfg.grad_accum).backward()
            loss_sum += float(loss.detach())
        local_loss = loss_sum / cfg.grad_accum
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        scaler.unscale_(self.optimizer)
        grad_norm = _as_float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
        loss_g, bad_g, stop_g = dist_util.all_reduce_sum(
            d, [local_loss, 0.0 if math.isfinite(local_loss) else 1.0,
                1.0 if stop is not None and stop.requested else 0.0])
        mean_loss = loss_g / d.world_size
        skipped = bool(bad_g) or not math.isfinite(grad_norm) or not math.isfinite(mean_loss)
        if skipped:
            self.bad_run += 1
        else:
            scaler.step(self.optimizer)
            self.bad_run = 0
        scaler.update()   # fp16: a skipped step lowers the loss scale
        self.optimizer.zero_grad(set_to_none=True)
        self.global_step += 1
        dt = time.perf_counter() - t0
        self.elapsed += dt
        self.tokens += tokens
        return StepReport(lr=lr, loss=mean_loss, grad_norm=grad_norm, tokens=tokens, dt=dt, skipped=skipped,
                          stop=bool(stop_g))

    def record(self, s: StepReport):
        """Log a step (every ``log_every`` steps, a mean over them); warn of a skipped one, and
        stop with :class:`TrainingDiverged` after ``max_bad_steps`` of them in a row."""
        cfg, step = self.cfg, self.global_step
        if s.skipped:
            say(self.d, f"warning: step {step}: the loss or gradient is not finite (loss {s.loss}, grad norm "
                        f"{s.grad_norm}); step skipped ({self.bad_run} in a row, stopping at {cfg.max_bad_steps})")
            self.logger.log({"step": step, "split": "train", "loss": None, "tokens_per_s": s.tokens / s.dt,
                             "time": self.elapsed, "lr": s.lr, "grad_norm": None, "tokens": self.tokens,
                             "skipped": True})
            if self.bad_run >= cfg.max_bad_steps:
                raise TrainingDiverged(
                    f"the loss was NaN or infinite for {self.bad_run} steps in a row (up to step {step}); stopped. "
                    f"The last good checkpoint is {self.last_ckpt or 'none (no checkpoint was saved yet)'}; "
                    "lower --lr or check the data, then continue with --resume")
            return
        w = self.window
        w["loss"] += s.bits
        w["n"] += 1
        w["tokens"] += s.tokens
        w["time"] += s.dt
        self.train_loss = s.bits
        if step % cfg.log_every == 0 or step == cfg.steps:
            self.logger.log({"step": step, "split": "train", "loss": w["loss"] / w["n"],
                             "tokens_per_s": w["tokens"] / max(w["time"], 1e-9), "time": self.elapsed,
                             "lr": s.lr, "grad_norm": s.grad_norm, "tokens": self.tokens})
            self.window = self._fresh_window()

    def evaluate(self) -> bool:
        """Held-out loss at the current step; True when it is the best so far."""
        cfg = self.cfg
        bits, count, dt = held_out_loss(self.model if cfg.fsdp else dist_util.unwrap(self.model), self.held_out,
                                        cfg.precision, self.d)
        self.logger.log({"step": self.global_step, "split": "eval", "loss": bits,
                         "tokens_per_s": count / max(dt, 1e-9), "time": self.elapsed, "tokens": self.tokens})
        self.eval_loss = bits
        improved = math.isfinite(bits) and (self.best_eval is None or bits < self.best_eval)
        if improved:
            self.best_eval = bits
        return improved

    def stop_reason(self, s: StepReport, stop: StopRequest) -> str | None:
        """Why stop after this step, if at all (the same decision on every rank)."""
        cfg, d, step = self.cfg, self.d, self.global_step
        if s.stop or stop.requested and d.world_size == 1:
            return "interrupted"
        if step >= cfg.steps:
            return "completed"
        if cfg.stop_after and step - self.start_step >= cfg.stop_after:
            return "stop_after"
        if cfg.max_time_s:
            over = self.elapsed >= cfg.max_time_s if d.is_main else False
            if dist_util.all_reduce_sum(d, [1.0 if over else 0.0])[0]:
                return "time_budget"
        return None

    def run(self) -> TrainResult:
        """Step until completion, Ctrl-C or a budget; evaluate and save when due; export the
        model unless interrupted."""
        from tqdm import tqdm

        cfg, d = self.cfg, self.d
        stop = StopRequest(allow_force=not (d.enabled or "TORCHELASTIC_RUN_ID" in os.environ)).install()
        bar = tqdm(total=cfg.steps, initial=self.start_step, unit="step", desc="train", dynamic_ncols=True,
                   mininterval=0.5 if sys.stderr.isatty() else 30.0, file=sys.stderr,
                   disable=not (d.is_main and cfg.progress))
        reason = None
        self.model.train()
        try:
            while reason is None:
                s = self.step(stop)
                self.record(s)
                bar.update(1)
                bar.set_postfix_str(f"loss {s.bits:.3f} {self.plan.unit}"
                                    + (f" eval {self.eval_loss:.3f}" if self.eval_loss else "")
                                    + f" {s.tokens / s.dt:,.0f} tok/s", refresh=False)
                reason = self.stop_reason(s, stop)
                step, best = self.global_step, False
                due_eval = (cfg.eval_every and step % cfg.eval_every == 0) or (reason and reason != "interrupted")
                if due_eval and not s.skipped:
                    best = self.evaluate()
                if (cfg.save_every and step % cfg.save_every == 0) or best or reason is not None:
                    self.save(best)  # skipped steps leave parameters and optimizer untouched, so saving is safe
                self.logger.flush()
        finally:
            bar.close()
            stop.restore()
            self.logger.close()
        model_dir = None
        if reason != "interrupted":
            model_dir = self.export_model()
        else:
            say(d, f"interrupted at step {self.global_step}; saved {self.last_ckpt}. Continue with --resume")
        return TrainResult(run_dir=self.out, step=self.global_step, steps=cfg.steps, reason=reason,
                           train_loss=self.train_loss, eval_loss=self.eval_loss, best_eval_loss=self.best_eval,
                           checkpoint=self.last_ckpt, model_dir=model_dir, elapsed_s=self.elapsed,
                           unit=self.plan.unit)
