"""TrainConfig: every option of a training run, validated, with defaults.

Fields left as ``None`` are "not given": a fresh run fills them from :data:`DEFAULTS`; a
resumed run first takes them from the run it continues (so ``--resume`` alone repeats the
original settings), then from the defaults.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from cadenza.errors import ConfigError

DEFAULTS = {
    "steps": 1000,
    "batch_size": 8,
    "seq_len": None,            # None: the model's max_len
    "grad_accum": 1,
    "lr": 6e-4,
    "min_lr_ratio": 0.1,
    "warmup_steps": None,       # None: min(100, steps // 10)
    "weight_decay": 0.01,
    "grad_clip": 1.0,
    "beta1": 0.9,
    "beta2": 0.95,
    "eval_every": 100,
    "eval_windows": 64,
    "save_every": 100,
    "keep_last": 3,
    "seed": 0,
    "precision": "fp32",
    "activation_checkpointing": False,
    "fsdp": False,
    "log_every": 1,
    "max_bad_steps": 5,
    "piece_windows": True,      # music data: each window holds one piece (from its BOS where it fits)
    "transpose": 6,             # music data: random transposition in -6..+5 semitones (0: none)
}

PRECISIONS = ("fp32", "bf16", "fp16")   # see cadenza.train.precision
# The precision a model config's legacy ``dtype`` field meant (float32 leaves the run's own).
_LEGACY_DTYPES = {"float32": None, "bfloat16": "bf16", "float16": "fp16"}

_INT_FIELDS = ("steps", "batch_size", "grad_accum", "keep_last", "log_every", "max_bad_steps")
_NONNEG_INT_FIELDS = ("warmup_steps", "eval_every", "eval_windows", "save_every", "seed")


@dataclass
class TrainConfig:
    """Options of :func:`cadenza.train.train` (and of ``cadenza train``)."""

    data: str = ""
    out: str = ""
    preset: str | None = None
    model_config: str | dict | None = None   # a JSON file path or a dict of ModelConfig fields
    model_overrides: dict = field(default_factory=dict)
    resume: bool = False
    steps: int | None = None
    batch_size: int | None = None             # the global batch: windows per optimizer step
    seq_len: int | None = None
    grad_accum: int | None = None
    lr: float | None = None
    min_lr_ratio: float | None = None
    warmup_steps: int | None = None
    weight_decay: float | None = None
    grad_clip: float | None = None
    beta1: float | None = None
    beta2: float | None = None
    eval_every: int | None = None             # 0: evaluate only at the end
    eval_windows: int | None = None           # held-out windows per evaluation (0: all)
    save_every: int | None = None             # 0: save only at the end
    keep_last: int | None = None
    seed: int | None = None
    precision: str | None = None
    activation_checkpointing: bool | None = None
    fsdp: bool | None = None
    log_every: int | None = None
    max_bad_steps: int | None = None
    piece_windows: bool | None = None
    transpose: int | None = None
    init: str | None = None                   # a model folder whose weights (and shape) a new run starts from
    # Per-session limits (never taken from a resumed run):
    stop_after: int | None = None             # stop (and save) after this many steps in this session
    max_time_s: float | None = None           # stop (and save) once total training time reaches this
    device: str = "auto"
    progress: bool = True
    tensorboard: bool = True

    def __post_init__(self):
        if not self.data:
            raise ConfigError("a data directory is required (--data DATA_DIR)")
        if not self.out:
            raise ConfigError("an output run directory is required (--out RUN_DIR)")
        if self.preset is not None and self.model_config is not None:
            raise ConfigError("give either a preset or a model config file, not both")
        if self.init is not None and (self.preset is not None or self.model_config is not None):
            raise ConfigError("--init takes the model's shape from MODEL_DIR; drop --preset/--config")
        if not isinstance(self.model_overrides, dict):
            raise ConfigError("model_overrides must be a dict of ModelConfig fields")
        for name in _INT_FIELDS + ("stop_after",):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        for name in _NONNEG_INT_FIELDS:
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ConfigError(f"{name} must be a non-negative integer, got {v!r}")
        if self.seq_len is not None and (isinstance(self.seq_len, bool) or not isinstance(self.seq_len, int)
                                         or self.seq_len < 1):
            raise ConfigError(f"seq_len must be a positive integer, got {self.seq_len!r}")
        for name, lo, hi in (("lr", 0.0, math.inf), ("min_lr_ratio", 0.0, 1.0), ("weight_decay", 0.0, math.inf),
                             ("grad_clip", 0.0, math.inf), ("beta1", 0.0, 1.0), ("beta2", 0.0, 1.0)):
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
                raise ConfigError(f"{name} must be a number in [{lo}, {hi}], got {v!r}")
            if name == "lr" and v <= 0:
                raise ConfigError(f"lr must be positive, got {v!r}")
        if self.transpose is not None and (isinstance(self.transpose, bool) or not isinstance(self.transpose, int)
                                           or not 0 <= self.transpose <= 12):
            raise ConfigError(f"transpose must be a whole number of semitones from 0 to 12, got {self.transpose!r}")
        if self.max_time_s is not None and (not isinstance(self.max_time_s, (int, float)) or self.max_time_s <= 0):
            raise ConfigError(f"max_time_s must be a positive number of seconds, got {self.max_time_s!r}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.activation_checkpointing is not None and not isinstance(self.activation_checkpointing, bool):
            raise ConfigError(f"activation_checkpointing must be true or false, got {self.activation_checkpointing!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")

    def resolved(self, saved: dict | None = None) -> "TrainConfig":
        """A copy with every ``None`` option filled from ``saved`` (a resumed run) then DEFAULTS."""
        changes = {}
        for name, default in DEFAULTS.items():
            if getattr(self, name) is None:
                if saved and saved.get(name) is not None:
                    changes[name] = saved[name]
                else:
                    changes[name] = default
        cfg = dataclasses.replace(self, **changes)
        if cfg.warmup_steps is None:
            cfg.warmup_steps = min(100, cfg.steps // 10)
        return cfg

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def training_settings(model_fields: dict) -> tuple[dict, dict]:
    """(model fields, training settings) of a dict of ModelConfig fields that may still hold the
    training settings a model config kept before training owned them: ``checkpointing`` (now
    ``activation_checkpointing``) and ``dtype`` (now ``precision``: bfloat16 is bf16, float16 is
    fp16, float32 says nothing). Old checkpoints, config.json files and ``--set`` use them."""
    model_fields, settings = dict(model_fields), {}
    if "checkpointing" in model_fields:
        on = model_fields.pop("checkpointing")
        if not isinstance(on, bool):
            raise ConfigError(f"checkpointing must be true or false, got {on!r}")
        settings["activation_checkpointing"] = on
    if "dtype" in model_fields:
        dtype = model_fields.pop("dtype")
        if not isinstance(dtype, str) or dtype not in _LEGACY_DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(_LEGACY_DTYPES)}, got {dtype!r}")
        if _LEGACY_DTYPES[dtype] is not None:
            settings["precision"] = _LEGACY_DTYPES[dtype]
    return model_fields, settings
