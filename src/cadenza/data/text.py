"""Byte-level text datasets: every byte of UTF-8 (or any) text is one token (vocab 256).

``build_text_dataset(source, out_dir)`` reads one file or every file under a folder
(sorted, hidden files skipped, ``.gz`` files decompressed, binary-looking files skipped and
listed), joins them with a newline, and writes the shared token format
(:mod:`cadenza.data.format`) with a contiguous held-out tail as the ``val`` split, so no
held-out byte also appears inside a training window.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cadenza.data.format import write_dataset
from cadenza.errors import ConfigError, DataError

VOCAB_SIZE = 256


@dataclass
class TextBuildResult:
    out_dir: Path
    files: list[Path]
    skipped: list[Path] = field(default_factory=list)
    splits: dict = field(default_factory=dict)


def _looks_binary(data: bytes) -> bool:
    return b"\x00" in data[:8192]


def _read(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def _collect(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    if source.is_dir():
        files = []
        for p in sorted(source.rglob("*")):
            rel = p.relative_to(source)
            if any(part.startswith(".") for part in rel.parts):
                continue
            if p.is_file():
                files.append(p)
        return files
    raise DataError(f"{source} does not exist; give a text file or a folder of text files")


def build_text_dataset(source, out_dir, val_fraction: float = 0.05, min_val_bytes: int = 1) -> TextBuildResult:
    """Build a byte-level dataset from ``source`` (a file or a folder) into ``out_dir``."""
    if not (0.0 < float(val_fraction) < 0.5):
        raise ConfigError(f"val_fraction must be between 0 and 0.5, got {val_fraction!r}")
    source = Path(source)
    files = _collect(source)
    chunks, used, skipped = [], [], []
    for path in files:
        data = _read(path)
        if _looks_binary(data):
            skipped.append(path)
            continue
        if not data:
            continue
        if chunks and not chunks[-1].endswith(b"\n"):
            chunks.append(b"\n")
        chunks.append(data)
        used.append(path)
    text = b"".join(chunks)
    if not text:
        what = "has no text files" if source.is_dir() else "is empty or not text"
        raise DataError(f"{source} {what}; nothing to build")
    tokens = np.frombuffer(text, dtype=np.uint8)
    n_val = max(int(len(tokens) * float(val_fraction)), int(min_val_bytes))
    if n_val >= len(tokens):
        raise DataError(f"{source} has only {len(tokens)} bytes, too little to hold out a validation split")
    splits = {"train": tokens[:-n_val], "val": tokens[-n_val:]}
    out = write_dataset(out_dir, splits, vocab_size=VOCAB_SIZE, modality="text",
                        tokenizer="bytes", source=str(source), files=len(used))
    return TextBuildResult(out_dir=out, files=used, skipped=skipped,
                           splits={k: int(len(v)) for k, v in splits.items()})

