"""Music model folders: find them, pick the default, list them with their metrics (no loading).

A music model directory holds::

    model.safetensors   the weights          (SparseTransformer.save)
    config.json         the model config     (SparseTransformer.save)
    tokenizer.json      the MusicCodec       (MusicCodec.save)
    MODEL_CARD.md       data, licences, training command, metrics, limits (optional)
    metrics.json        held-out metrics as JSON (optional; `cadenza models` shows them;
                        its format: ``cadenza.music.eval.report``)

Where the installed models are (``models_root``): ``$CADENZA_MODELS`` if set; else the
``models/`` folder of the current directory when it holds a model; else the ``models/``
folder of the source checkout this package runs from (found by walking up from the
package, ``cadenza.checkout``; an editable install and ``make demo`` find it); else
``./models``. The default model is ``$CADENZA_MODEL`` if set, else the one named in
``models/DEFAULT`` (a one-line text file), else ``models/default/``, else the first model in
name order (``models/`` itself counts when it is a model directory).

Loading a model folder: ``cadenza.music.load``. Every problem raises ``ModelFileError``
with one sentence.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from cadenza.checkout import checkout_root
from cadenza.errors import CadenzaError, ModelFileError
from cadenza.model_files import CONFIG_FILE, WEIGHTS_FILE  # the model's own file names
from cadenza.music.eval.report import CARD_FILE, read_metrics

TOKENIZER_FILE = "tokenizer.json"


def repo_root() -> Path | None:
    """The source checkout this package runs from (the folder above it holding ``models/``
    and ``pyproject.toml``), or None for an installed copy outside any checkout."""
    return checkout_root("models")


def models_root() -> Path:
    """Where installed music models live (see the module docstring for the order)."""
    env = os.environ.get("CADENZA_MODELS")
    if env:
        return Path(env)
    here = Path.cwd() / "models"
    if find_models(here) or (here / "DEFAULT").is_file():
        return here
    root = repo_root()
    return root / "models" if root is not None else here


def is_model_dir(path) -> bool:
    p = Path(path)
    return (p / CONFIG_FILE).is_file() and (p / WEIGHTS_FILE).is_file()


def find_models(root=None) -> list[Path]:
    """Model directories under ``root`` (default: ``models_root()``): root itself if it is one,
    and its sub-folders that are, in name order."""
    root = Path(root) if root is not None else models_root()
    found = []
    if is_model_dir(root):
        found.append(root)
    if root.is_dir():
        found += [p for p in sorted(root.iterdir()) if p.is_dir() and is_model_dir(p)]
    return found


def default_model_dir(root=None) -> Path:
    """The model `cadenza compose` uses without ``--model`` (see the module docstring)."""
    env = os.environ.get("CADENZA_MODEL")
    if env and root is None:
        return Path(env)
    root = Path(root) if root is not None else models_root()
    pointer = root / "DEFAULT"
    if pointer.is_file():
        name = pointer.read_text(encoding="utf-8", errors="replace").strip()
        if name and is_model_dir(root / name):
            return root / name
    if is_model_dir(root / "default"):
        return root / "default"
    models = find_models(root)
    if not models:
        raise ModelFileError(
            f"no music model is installed in {root}; pass --model DIR (a folder with model.safetensors, "
            f"config.json and tokenizer.json) or train one with `cadenza train`")
    return models[0]


def weights_digest(path) -> str:
    """First 12 hex digits of the SHA-256 of a model's weights file (its version fingerprint)."""
    p = Path(path)
    p = p / WEIGHTS_FILE if p.is_dir() else p
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


def count_parameters(weights_path) -> int | None:
    """Parameters in a safetensors file, from its header alone (None if unreadable)."""
    try:
        with open(weights_path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > 100_000_000:
                return None
            header = json.loads(fh.read(n))
    except (OSError, ValueError, struct.error):
        return None
    total = 0
    for name, info in header.items():
        if name == "__metadata__" or not isinstance(info, dict):
            continue
        size = 1
        for s in info.get("shape", []):
            size *= int(s)
        total += size
    return total


def card_title(directory) -> str | None:
    """The first heading (or first non-empty line) of MODEL_CARD.md."""
    p = Path(directory) / CARD_FILE
    if not p.is_file():
        return None
    try:
        for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if line:
                return line.lstrip("#").strip() or None
    except OSError:
        return None
    return None


@dataclass
class ModelInfo:
    """What `cadenza models` shows about one model directory (read without loading it)."""

    name: str
    path: Path
    parameters: int | None
    config: dict
    cadenza_version: str | None
    size_mb: float
    title: str | None
    metrics: dict
    has_tokenizer: bool
    is_default: bool = False
    problem: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "path": str(self.path), "default": self.is_default,
                "parameters": self.parameters, "size_mb": round(self.size_mb, 2), "title": self.title,
                "cadenza_version": self.cadenza_version, "tokenizer": self.has_tokenizer,
                "config": self.config, "metrics": self.metrics, "problem": self.problem}


def model_info(directory, is_default: bool = False) -> ModelInfo:
    d = Path(directory)
    problem = None
    meta: dict = {}
    try:
        meta = json.loads((d / CONFIG_FILE).read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError
    except (OSError, UnicodeDecodeError, ValueError):
        problem = f"{CONFIG_FILE} is not valid JSON"
        meta = {}
    has_tok = (d / TOKENIZER_FILE).is_file()
    if problem is None and not has_tok:
        problem = f"no {TOKENIZER_FILE}"
    weights = d / WEIGHTS_FILE
    size = weights.stat().st_size / 1e6 if weights.is_file() else 0.0
    params = count_parameters(weights)
    if params is None and problem is None:
        problem = f"{WEIGHTS_FILE} is not a readable safetensors file"
    config = meta.get("config", {}) if isinstance(meta.get("config"), dict) else {}
    return ModelInfo(name=d.name, path=d, parameters=params, config=config,
                     cadenza_version=meta.get("cadenza_version"), size_mb=size, title=card_title(d),
                     metrics=read_metrics(d), has_tokenizer=has_tok, is_default=is_default, problem=problem)


def list_models(root=None) -> list[ModelInfo]:
    """Every installed model (``find_models``) with its metrics; the default one marked."""
    dirs = find_models(root)
    try:
        default = default_model_dir(root).resolve()
    except CadenzaError:
        default = None
    return [model_info(d, is_default=(default is not None and d.resolve() == default)) for d in dirs]
