"""What names a training corpus: its content hash (the key of its originality index and of
its notes file), its training pieces' manifest rows, and where the indexes are cached.

Both ``corpus_notes`` (the notes file) and ``corpus_index`` (the suffix arrays) read this;
neither imports the other for it.
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

from cadenza.errors import CadenzaError, DataError

INDEX_VERSION = 1


class CorpusIndexError(CadenzaError):
    """No originality index or corpus could be found or read."""


def cache_root() -> Path:
    env = os.environ.get("CADENZA_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "cadenza"


def corpus_hash(data_dir) -> str:
    """The content hash of a corpus: its meta.json, tokenizer.json and train split."""
    from cadenza.data.format import read_meta

    d = Path(data_dir)
    meta = read_meta(d)
    h = hashlib.sha256(f"cadenza-originality/{INDEX_VERSION}\n".encode())
    for name in ("meta.json", meta.get("tokenizer") or "tokenizer.json", "train.bin"):
        p = d / name
        if not p.is_file():
            raise DataError(f"{d} is not a music corpus: {name} is missing")
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def manifest_sha256(data_dir) -> str | None:
    p = Path(data_dir) / "manifest.csv"
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None


def train_rows(data_dir, count: int) -> list[dict]:
    """The manifest rows of the training pieces, in the order of train.bin (the builder
    writes the kept pieces of each split sorted by id, as the manifest lists them)."""
    p = Path(data_dir) / "manifest.csv"
    rows = []
    if p.is_file():
        with open(p, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("split") == "train" and r.get("status", "ok") == "ok"]
    if len(rows) != count:
        return [{"id": f"train piece {i + 1}", "title": "", "licence": ""} for i in range(count)]
    return [{"id": r.get("id", ""), "title": r.get("title", ""), "licence": r.get("licence", "")} for r in rows]
