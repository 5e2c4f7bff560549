"""Raw-audio datasets: every WAV file under a folder as 8-bit mu-law samples (vocab 256).

``build_audio_dataset(folder, out_dir, sample_rate=8000)`` reads every ``.wav`` file
(sorted; hidden files skipped), mixes it to mono, resamples it to 8 or 16 kHz and
mu-law-encodes it (:mod:`cadenza.codecs.audio`); files that are not readable PCM WAV
(wrong sample width, empty, corrupt) are skipped and listed. The files are laid end to end
and the last ``val_fraction`` of the samples is held out as one contiguous tail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cadenza.codecs.audio import AudioCodec
from cadenza.data.files import read_each
from cadenza.data.format import write_dataset
from cadenza.errors import ConfigError, DataError
from cadenza.io import write_text_atomic

TOKENIZER_FILE = "tokenizer.json"


@dataclass
class AudioBuildResult:
    out_dir: Path
    files: int
    skipped: list = field(default_factory=list)     # [(path, why)]
    splits: dict = field(default_factory=dict)      # split -> samples
    sample_rate: int = 8000


def build_audio_dataset(source, out_dir, sample_rate: int = 8000, val_fraction: float = 0.05,
                        min_val_samples: int = 1) -> AudioBuildResult:
    if not (0.0 < float(val_fraction) < 0.5):
        raise ConfigError(f"--val-fraction must be between 0 and 0.5, got {val_fraction!r}")
    codec = AudioCodec(sample_rate)
    parts, skipped = read_each(source, (".wav",), "WAV", lambda path: codec.encode(codec.load_file(path)))
    tokens = np.concatenate(parts)
    n_val = max(int(len(tokens) * float(val_fraction)), int(min_val_samples))
    if n_val >= len(tokens):
        raise DataError(f"{source} holds only {len(tokens)} samples, too few to hold out a validation split")
    splits = {"train": tokens[:-n_val], "val": tokens[-n_val:]}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / TOKENIZER_FILE, json.dumps(codec.to_dict(), indent=2))
    write_dataset(out, splits, vocab_size=codec.vocab_size, modality="audio", tokenizer=TOKENIZER_FILE,
                  unit="bits/sample", sample_rate=sample_rate, seconds=round(len(tokens) / sample_rate, 3),
                  source=str(source), files=len(parts), skipped=len(skipped))
    return AudioBuildResult(out_dir=out, files=len(parts), skipped=skipped,
                            splits={k: int(len(v)) for k, v in splits.items()}, sample_rate=sample_rate)
