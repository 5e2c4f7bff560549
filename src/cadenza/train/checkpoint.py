"""Training checkpoints: atomic files under ``RUN_DIR/checkpoints``.

Each checkpoint is one ``torch.save`` file, written to a temporary file in the same folder,
fsynced and renamed over its final name (:func:`cadenza.io.atomic_path`), so a process killed
at any moment -- even in the middle of a save -- leaves every earlier checkpoint whole. The
newest ``step_*.pt`` is written before older ones are pruned, and ``best.pt`` is a hard link
(or an atomic copy) of the checkpoint with the best held-out loss.

A checkpoint holds the model and optimizer state (full, unsharded, keyed by parameter
name), the schedule, the loss scaler's state (fp16 on CUDA; empty otherwise), the RNG states of every rank, the data position, the model and
training configs, the best eval loss so far and the elapsed training time.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from cadenza.errors import ModelFileError
from cadenza.io import atomic_path

FORMAT = "cadenza-train-checkpoint"
VERSION = 1
_STEP_RE = re.compile(r"^step_(\d+)\.pt$")


class CheckpointError(ModelFileError):
    """A training checkpoint is missing, corrupt or from an incompatible run."""


def checkpoint_dir(run_dir) -> Path:
    return Path(run_dir) / "checkpoints"


def step_path(run_dir, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"step_{step:08d}.pt"


def best_path(run_dir) -> Path:
    return checkpoint_dir(run_dir) / "best.pt"


def list_checkpoints(run_dir) -> list[tuple[int, Path]]:
    """(step, path) of every step checkpoint, oldest first."""
    d = checkpoint_dir(run_dir)
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = _STEP_RE.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def _write(state: dict, path: Path) -> None:
    torch.save(state, path)


def save_checkpoint(path, state: dict) -> Path:
    """Write ``state`` to ``path`` atomically."""
    state = {"format": FORMAT, "version": VERSION, **state}
    with atomic_path(path) as tmp:
        _write(state, tmp)
    return Path(path)


def load_checkpoint(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a Cadenza training checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {state.get('version')}, this Cadenza reads {VERSION}")
    return state


def latest_checkpoint(run_dir, warn=print) -> tuple[Path | None, dict | None]:
    """The newest checkpoint that loads, skipping (and reporting) any that do not."""
    for step, path in reversed(list_checkpoints(run_dir)):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as exc:
            warn(f"warning: {exc}; trying an older one")
    return None, None


def mark_best(run_dir, path) -> Path:
    """Make ``best.pt`` the same file as ``path`` (hard link, atomically replaced)."""
    dest = best_path(run_dir)
    with atomic_path(dest) as tmp:
        os.unlink(tmp)
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copyfile(path, tmp)
    return dest


def prune(run_dir, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` step checkpoints (best.pt is a separate link)."""
    ckpts = list_checkpoints(run_dir)
    for _, path in ckpts[:-max(1, keep_last)]:
        path.unlink(missing_ok=True)


def remove_temporaries(run_dir) -> list[Path]:
    """Remove half-written temporary files left by a process killed during a save."""
    d = checkpoint_dir(run_dir)
    removed = []
    if d.is_dir():
        for p in d.iterdir():
            if p.name.startswith(".") and p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def rng_state() -> dict:
    """This process's RNG states, in a form ``torch.load(weights_only=True)`` accepts."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
