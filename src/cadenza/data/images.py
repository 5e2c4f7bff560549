"""Image datasets: every PNG/JPEG under a folder, resized to size x size, as channel tokens.

``build_image_dataset(folder, out_dir, size=32)`` reads every image file (sorted; hidden
files skipped), centre-crops and resizes it (:func:`cadenza.codecs.image.load_image`),
and stores each image as one record ``[START, v0, ..., v(N-1)]`` of ``N + 1`` tokens
(uint16, vocab 257). Files that are not readable images are skipped and listed. The images
are shuffled with ``seed`` and the last ``val_fraction`` of them (at least one) is held out.
``meta.json`` carries ``record_len`` (N + 1), so training windows start at image starts,
``unit`` "bits/dim", ``tokenizer`` "tokenizer.json" (the codec, copied into the model) and
``model_defaults`` (max_len N, factorized (H, W, C) positions, stride W*C: one row), which
``cadenza train --preset`` applies on top of the preset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cadenza.codecs.image import EXTENSIONS, ImageCodec
from cadenza.data.files import read_each
from cadenza.data.format import write_dataset
from cadenza.errors import ConfigError, DataError
from cadenza.io import write_text_atomic

TOKENIZER_FILE = "tokenizer.json"


@dataclass
class ImageBuildResult:
    out_dir: Path
    images: int
    skipped: list = field(default_factory=list)     # [(path, why)]
    splits: dict = field(default_factory=dict)      # split -> number of images


def build_image_dataset(source, out_dir, size: int = 32, val_fraction: float = 0.1, seed: int = 0,
                        channels: int = 3) -> ImageBuildResult:
    if not (0.0 < float(val_fraction) < 1.0):
        raise ConfigError(f"--val-fraction must be between 0 and 1, got {val_fraction!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 256:
        raise ConfigError(f"--size must be a whole number of pixels from 1 to 256, got {size!r}")
    codec = ImageCodec(size, size, channels)
    records, skipped = read_each(source, EXTENSIONS, "image (PNG/JPEG)",
                                 lambda path: codec.record(codec.load_file(path)))
    if len(records) < 2:
        raise DataError(f"{source} has only one readable image; at least two are needed (one is held out)")
    order = np.random.default_rng(seed).permutation(len(records))
    n_val = min(len(records) - 1, max(1, int(round(len(records) * float(val_fraction)))))
    train_idx, val_idx = order[:-n_val], order[-n_val:]
    splits = {"train": np.concatenate([records[i] for i in train_idx]),
              "val": np.concatenate([records[i] for i in val_idx])}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / TOKENIZER_FILE, json.dumps(codec.to_dict(), indent=2))
    write_dataset(out, splits, vocab_size=codec.vocab_size, modality="image", tokenizer=TOKENIZER_FILE,
                  record_len=codec.n_tokens + 1, unit="bits/dim", image_shape=list(codec.position_shape),
                  model_defaults={"max_len": codec.n_tokens, "positions": "factorized",
                                  "position_shape": list(codec.position_shape), "stride": codec.row_tokens},
                  source=str(source), files=len(records), skipped=len(skipped))
    return ImageBuildResult(out_dir=out, images=len(records), skipped=skipped,
                            splits={"train": len(train_idx), "val": len(val_idx)})
