"""Every check of a training run's inputs, before anything is built: ``prepare`` gives the ``Plan``.

Data, model config (a preset, a config file, ``--init MODEL_DIR``, or the checkpoint a resume
continues), sequence length, batch split, output directory and the checkpoint to resume are
checked on rank 0; a bad one fails with one sentence on every rank before any work.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cadenza.config import ModelConfig
from cadenza.data.dataset import eval_offsets, load_splits
from cadenza.errors import CadenzaError, ConfigError, DataError
from cadenza.model import SparseTransformer
from cadenza.presets import get_preset
from cadenza.train import checkpoint as ckpt_io
from cadenza.train import distributed as dist_util
from cadenza.train.config import TrainConfig, training_settings


@dataclass
class Plan:
    """A checked run: its resolved TrainConfig, the model config, the data's meta and what to resume."""

    cfg: TrainConfig
    model_config: dict
    meta: dict
    seq_len: int
    unit: str
    resume_path: str | None = None


def say(d, msg: str) -> None:
    """Print ``msg`` above the progress bar, on rank 0 only."""
    if d.is_main:
        from tqdm import tqdm

        tqdm.write(msg, file=sys.stderr)


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{time.time_ns()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write to the run directory {out}: {exc.strerror or exc}") from None


def _init_config(cfg: TrainConfig, meta: dict):
    """The config of the model a fine-tune starts from (``--init MODEL_DIR``), checked
    against the data: same vocabulary, and the same tokenizer where both have one."""
    init = Path(cfg.init)
    mc = SparseTransformer.load(init).config
    if mc.vocab_size != meta["vocab_size"]:
        raise DataError(f"{cfg.data} has a vocabulary of {meta['vocab_size']} tokens but {init} was trained with "
                        f"{mc.vocab_size}; build the data with the model's tokenizer "
                        f"(cadenza data midi DIR --tokenizer {init})")
    mine, theirs = Path(cfg.data) / str(meta.get("tokenizer") or ""), init / "tokenizer.json"
    if meta.get("tokenizer") and mine.is_file() and theirs.is_file():
        a, b = json.loads(mine.read_text()), json.loads(theirs.read_text())
        if a.get("vocab_sha256_16") != b.get("vocab_sha256_16") or a.get("config") != b.get("config"):
            raise DataError(f"{cfg.data} was built with another tokenizer than {init}; build it with "
                            f"cadenza data midi DIR --tokenizer {init}")
    return mc


def _model_config_from_args(cfg: TrainConfig, meta: dict):
    """The model config of a new run, and the training settings its config file or ``--set``
    gave in the fields a model config held before training owned them (``training_settings``)."""
    settings = {}
    if cfg.init is not None:
        mc = _init_config(cfg, meta)
    elif cfg.preset is not None:
        mc = get_preset(cfg.preset)
        # A preset is a model shape; its vocabulary (and for images its positions and stride:
        # meta's model_defaults) comes from the data.
        if mc.vocab_size != meta["vocab_size"]:
            mc = mc.replace(vocab_size=int(meta["vocab_size"]))
        if isinstance(meta.get("model_defaults"), dict):
            mc = mc.replace(**meta["model_defaults"])
    elif cfg.model_config is not None:
        raw = cfg.model_config
        if not isinstance(raw, dict):
            path = Path(raw)
            try:
                raw = json.loads(path.read_text())
            except FileNotFoundError:
                raise ConfigError(f"model config file {path} does not exist") from None
            except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(f"model config file {path} is not valid JSON ({exc})") from None
            # Accept a bare ModelConfig, {"model": {...}}, or a saved model's config.json.
            for wrapper in ("model", "config"):
                if isinstance(raw, dict) and isinstance(raw.get(wrapper), dict):
                    raw = raw[wrapper]
        raw, settings = training_settings(raw) if isinstance(raw, dict) else (raw, {})
        mc = ModelConfig.from_dict(raw)
    else:
        raise ConfigError("choose a model with --preset NAME (for example tiny) or --config FILE.json")
    overrides, given = training_settings(cfg.model_overrides)
    if overrides:
        mc = mc.replace(**overrides)
    return mc, {**settings, **given}


def _prepare_main(cfg: TrainConfig, world_size: int, d) -> tuple[Plan, dict | None]:
    """Every check that needs no model, on rank 0. Returns the plan and the checkpoint to resume."""
    meta, train_tokens, val_tokens = load_splits(cfg.data)
    out = Path(cfg.out)
    state = None
    resume_path = None
    if cfg.resume:
        if ckpt_io.checkpoint_dir(out).is_dir():
            ckpt_io.remove_temporaries(out)
        path, state = ckpt_io.latest_checkpoint(out, warn=lambda m: say(d, m))
        if path is None:
            say(d, f"note: no checkpoint in {out}; starting a new run there")
        else:
            resume_path = str(path)
    elif ckpt_io.list_checkpoints(out):
        raise ConfigError(f"{out} already holds a training run; pass --resume to continue it, "
                          "or choose another --out")
    if state is not None:
        # A checkpoint written before training owned them keeps checkpointing and dtype in its
        # model config; what they said there is what the run used.
        model_fields, settings = training_settings(state["model_config"])
        mc = ModelConfig.from_dict(model_fields)
        if cfg.preset or cfg.model_config or cfg.model_overrides:
            say(d, "note: resuming, so the model comes from the checkpoint; --preset/--config/--set are ignored")
        cfg = cfg.resolved({**(state.get("train_config") or {}), **settings})
    else:
        mc, settings = _model_config_from_args(cfg, meta)
        cfg = cfg.resolved(settings)
    if mc.vocab_size != meta["vocab_size"]:
        raise DataError(f"the data in {cfg.data} has a vocabulary of {meta['vocab_size']} tokens but the "
                        f"model config has vocab_size {mc.vocab_size}; they must match")
    seq_len = cfg.seq_len if cfg.seq_len is not None else mc.max_len
    if seq_len > mc.max_len:
        raise ConfigError(f"seq_len {seq_len} is longer than the model's max_len {mc.max_len}")
    if len(train_tokens) < seq_len + 1:
        raise DataError(f"seq_len {seq_len} is larger than the data: the training split has only "
                        f"{len(train_tokens)} tokens (need at least {seq_len + 1}); use a shorter --seq-len")
    if val_tokens is None or len(val_tokens) < seq_len + 1:
        n = 0 if val_tokens is None else len(val_tokens)
        raise DataError(f"seq_len {seq_len} is larger than the held-out split ({n} tokens, need at least "
                        f"{seq_len + 1}); use a shorter --seq-len or hold out more data")
    record_len = meta.get("record_len")
    if record_len and seq_len > record_len - 1:
        raise ConfigError(f"seq_len {seq_len} is longer than one record of {cfg.data} ({record_len - 1} tokens "
                          f"after its start token); use --seq-len {record_len - 1} or less")
    cfg = dataclasses.replace(cfg, seq_len=seq_len)
    if len(eval_offsets(len(val_tokens), seq_len, cfg.eval_windows, record_len)) < world_size:
        raise DataError(f"the held-out split ({len(val_tokens)} tokens) has fewer windows of {seq_len} than "
                        f"there are processes ({world_size}); hold out more data or use a shorter --seq-len")
    per, rem = divmod(cfg.batch_size, world_size * cfg.grad_accum)
    if rem or per < 1:
        raise ConfigError(f"--batch-size {cfg.batch_size} (the global batch) must be a multiple of "
                          f"processes x grad-accum = {world_size} x {cfg.grad_accum}")
    if cfg.fsdp and cfg.precision == "fp16":
        raise ConfigError("--precision fp16 (loss scaling) does not run with --fsdp; use --precision bf16")
    if cfg.fsdp and world_size < 2:
        raise ConfigError("--fsdp shards the model across processes; launch with "
                          "torchrun --nproc_per_node=N (N >= 2), or drop --fsdp")
    _check_out_dir(out)
    text = meta.get("modality") == "text" and meta["vocab_size"] == 256
    unit = meta.get("unit") if isinstance(meta.get("unit"), str) else ("bits/byte" if text else "bits/token")
    plan = Plan(cfg=cfg, model_config=mc.to_dict(), meta=meta, seq_len=seq_len,
                 unit=unit, resume_path=resume_path)
    return plan, state


def prepare(cfg: TrainConfig, d) -> tuple[Plan, dict | None]:
    """Run the checks on rank 0 (and the data checks on every rank); all ranks fail alike."""
    plan, state, error = None, None, None
    try:
        if d.is_main:
            plan, state = _prepare_main(cfg, d.world_size, d)
        else:
            load_splits(cfg.data)
    except CadenzaError as exc:
        error = exc
    errors = dist_util.all_gather_object(d, None if error is None else str(error))
    if error is not None:
        raise error
    for msg in errors:
        if msg is not None:
            raise CadenzaError(msg)
    plan = dist_util.broadcast_object(d, plan)
    return plan, state
