"""The model's files: ``model.safetensors`` (the weights) and ``config.json`` (format version,
Cadenza version, the model config), each written atomically, read back with one-sentence
``ModelFileError``s for every way a folder can be wrong. The file names are importable
without torch (``cadenza.music.registry`` lists model folders with them)."""

from __future__ import annotations

import json
from pathlib import Path

from cadenza._version import __version__
from cadenza.errors import ConfigError, ModelFileError
from cadenza.io import atomic_path

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def save_model(model, directory) -> Path:
    """Write model.safetensors and config.json into ``directory`` (each atomically)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "cadenza_version": __version__})
    meta = {
        "format_version": FORMAT_VERSION,
        "cadenza_version": __version__,
        "model": "SparseTransformer",
        "config": model.config.to_dict(),
    }
    with atomic_path(directory / CONFIG_FILE) as tmp:
        Path(tmp).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return directory


def load_model(cls, directory, map_location="cpu"):
    """An instance of ``cls`` (SparseTransformer) from a folder ``save_model`` wrote; ModelFileError
    with one sentence saying what is wrong if it fails."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    if not directory.is_dir():
        raise ModelFileError(f"model directory {directory} does not exist.")
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ModelFileError(f"model directory {directory} has no {path.name}.")
    try:
        meta = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{config_path} is not valid JSON ({exc}).") from None
    if not isinstance(meta, dict) or "config" not in meta or "format_version" not in meta:
        raise ModelFileError(
            f"{config_path} is not a Cadenza model config (no format_version/config).")
    fv = meta["format_version"]
    if isinstance(fv, int) and not isinstance(fv, bool) and fv > FORMAT_VERSION:
        raise ModelFileError(
            f"{config_path} has format_version {fv}, newer than this Cadenza ({__version__}) reads "
            f"(format_version {FORMAT_VERSION}); upgrade Cadenza to use this model.")
    if meta["format_version"] != FORMAT_VERSION:
        raise ModelFileError(
            f"{config_path} has format_version {meta['format_version']!r}; this Cadenza "
            f"({__version__}) reads format_version {FORMAT_VERSION}.")
    try:
        from cadenza.config import ModelConfig

        config = ModelConfig.from_dict(meta["config"])
    except (ConfigError, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ModelFileError(f"{config_path} holds an invalid model config: {exc}") from None
    try:
        state = load_file(str(weights_path), device=str(map_location))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())
        raise ModelFileError(f"{weights_path} is not a readable safetensors file ({reason}); it is damaged or "
                             f"cut short, so copy or export the model again.") from None
    model = cls(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise ModelFileError(
            f"{weights_path} does not match its config: {what} "
            f"({len(missing)} missing, {len(unexpected)} unexpected tensors).")
    for name, tensor in expected.items():
        if state[name].shape != tensor.shape:
            raise ModelFileError(
                f"{weights_path} does not match its config: {name} has shape "
                f"{tuple(state[name].shape)}, the config needs {tuple(tensor.shape)}.")
    model.load_state_dict(state)
    return model.to(map_location)
