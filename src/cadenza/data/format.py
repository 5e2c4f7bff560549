"""The on-disk token dataset format shared by every modality.

A dataset directory holds one flat token stream per split (``train.bin``, ``val.bin``, ...)
as raw little-endian uint8 (vocab <= 256) or uint16 (vocab <= 65536), plus ``meta.json``::

    {"format_version": 1, "modality": "text", "vocab_size": 256, "dtype": "uint8",
     "splits": {"train": 123456, "val": 6789}, ...extra keys per modality...}

Documents (pieces, files) are concatenated; a modality that needs separators puts its own
separator token between documents. Training reads random windows of the stream.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cadenza.errors import DataError
from cadenza.io import atomic_path, write_text_atomic

FORMAT_VERSION = 1


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    if vocab_size <= 256:
        return np.dtype(np.uint8)
    if vocab_size <= 65536:
        return np.dtype(np.uint16)
    raise DataError(f"vocab_size {vocab_size} is too large for the token format (max 65536)")


def write_dataset(out_dir, splits: dict, vocab_size: int, modality: str, **extra) -> Path:
    """Write every split atomically, then meta.json last (its presence marks a complete dataset)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dtype = dtype_for_vocab(vocab_size)
    sizes = {}
    for name, tokens in splits.items():
        arr = np.asarray(tokens)
        if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
            raise DataError(f"split {name!r} has tokens outside the vocabulary of {vocab_size}")
        with atomic_path(out / f"{name}.bin") as tmp:
            arr.astype(dtype).tofile(tmp)
        sizes[name] = int(arr.size)
    meta = {"format_version": FORMAT_VERSION, "modality": modality, "vocab_size": int(vocab_size),
            "dtype": dtype.name, "splits": sizes, **extra}
    write_text_atomic(out / "meta.json", json.dumps(meta, indent=2))
    return out


def read_meta(data_dir) -> dict:
    d = Path(data_dir)
    if not d.is_dir():
        raise DataError(f"data directory {d} does not exist; build one with `cadenza data ...`")
    try:
        meta = json.loads((d / "meta.json").read_text())
    except FileNotFoundError:
        raise DataError(f"{d} has no meta.json; it is not a Cadenza dataset (build one with `cadenza data ...`)") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataError(f"{d / 'meta.json'} is corrupt (not valid JSON); rebuild the dataset") from None
    for key in ("format_version", "vocab_size", "dtype", "splits"):
        if key not in meta:
            raise DataError(f"{d / 'meta.json'} lacks {key!r}; rebuild the dataset")
    if meta["format_version"] != FORMAT_VERSION:
        raise DataError(f"{d} has dataset format {meta['format_version']}, this Cadenza reads {FORMAT_VERSION}")
    return meta


def open_split(data_dir, split: str) -> np.memmap:
    """Memory-map one split, checking its size against meta.json."""
    meta = read_meta(data_dir)
    if split not in meta["splits"]:
        raise DataError(f"{data_dir} has no {split!r} split (has {sorted(meta['splits'])})")
    path = Path(data_dir) / f"{split}.bin"
    dtype = np.dtype(meta["dtype"])
    expected = meta["splits"][split]
    if not path.exists():
        raise DataError(f"{path} is missing; rebuild the dataset")
    if path.stat().st_size != expected * dtype.itemsize:
        raise DataError(f"{path} has {path.stat().st_size} bytes, meta.json says {expected} tokens of {dtype}; rebuild the dataset")
    if expected == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(expected,))
