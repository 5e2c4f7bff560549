"""Images and raw audio from a trained model: sample an image grid, complete an image's
bottom half, continue an audio clip.

A model folder written by ``cadenza train`` on ``cadenza data images|audio`` data holds
the codec as ``tokenizer.json`` (copied from the dataset); :func:`load_media_model` reads
it and checks that it fits the model. Everything samples through
:func:`cadenza.sampling.generate` with the sparse KV cache.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cadenza.codecs.audio import AudioCodec
from cadenza.codecs.image import START, ImageCodec
from cadenza.errors import ConfigError, DataError, ModelFileError
from cadenza.bounds import TEMPERATURE
from cadenza.prompts import check_settings
from cadenza.sampling import generate

TOKENIZER_FILE = "tokenizer.json"


@dataclass
class MediaModel:
    network: object        # SparseTransformer
    codec: object          # ImageCodec | AudioCodec
    kind: str              # "image" | "audio"


def load_media_model(directory) -> MediaModel:
    from cadenza.model import SparseTransformer

    d = Path(directory)
    if not d.is_dir():
        raise ModelFileError(f"model folder {d} does not exist; train one with `cadenza train`")
    tok = d / TOKENIZER_FILE
    try:
        spec = json.loads(tok.read_text())
    except FileNotFoundError:
        raise ModelFileError(f"{d} has no {TOKENIZER_FILE}, so it is not an image or audio model "
                             "(music models: use cadenza compose)") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelFileError(f"{tok} is corrupt (not valid JSON)") from None
    kind = spec.get("codec") if isinstance(spec, dict) else None
    if kind == "image":
        codec = ImageCodec.from_dict(spec)
    elif kind == "audio":
        codec = AudioCodec.from_dict(spec)
    else:
        raise ModelFileError(f"{d} is a {kind or 'unknown'} model, not an image or audio model "
                             "(music models: use cadenza compose)")
    model = SparseTransformer.load(d)
    if model.config.vocab_size != codec.vocab_size:
        raise ModelFileError(f"{d}: the model has {model.config.vocab_size} tokens but its {kind} codec "
                             f"{codec.vocab_size}; the folder is inconsistent")
    if kind == "image" and model.config.max_len < codec.n_tokens:
        raise ModelFileError(f"{d}: the model's context ({model.config.max_len}) is shorter than one image "
                             f"({codec.n_tokens} values)")
    model.eval()
    return MediaModel(model, codec, kind)


def _no_start(logits, context):
    allowed = torch.ones_like(logits, dtype=torch.bool)
    allowed[:, START] = False
    return allowed


def sample_images(mm: MediaModel, n: int, seed: int = 0, temperature: float = 1.0, top_p: float | None = None,
                  prompt_rows: np.ndarray | None = None) -> list[np.ndarray]:
    """``n`` images sampled from scratch (or continuing ``prompt_rows``: an (n, k) token array
    of each image's first k values)."""
    if mm.kind != "image":
        raise ConfigError("this is an audio model; give --prime CLIP.wav instead")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 256:
        raise ConfigError(f"--n must be a whole number of images from 1 to 256, got {n!r}")
    check_settings(temperature, None, top_p, max_temperature=TEMPERATURE.hi)
    codec = mm.codec
    k = 0 if prompt_rows is None else prompt_rows.shape[1]
    prompt = [[START] + ([] if prompt_rows is None else [int(t) for t in prompt_rows[i]]) for i in range(n)]
    new = generate(mm.network, prompt, codec.n_tokens - k, temperature=temperature, top_p=top_p, seed=seed,
                   constraint=_no_start)
    return [codec.decode(prompt[i][1:] + new[i]) for i in range(n)]


def complete_image(mm: MediaModel, image: np.ndarray, n: int = 1, seed: int = 0, temperature: float = 1.0,
                   top_p: float | None = None) -> list[np.ndarray]:
    """``n`` completions of ``image`` (H, W, C uint8 at the codec's size): its top half
    (the first H // 2 rows) is kept exactly, the rest is sampled."""
    codec = mm.codec
    tokens = codec.encode(image)
    top = tokens[:(codec.height // 2) * codec.row_tokens]
    return sample_images(mm, n, seed, temperature, top_p, prompt_rows=np.tile(top, (n, 1)))


def continue_audio(mm: MediaModel, prime: np.ndarray | None, seconds: float, seed: int = 0,
                   temperature: float = 1.0, top_p: float | None = None) -> np.ndarray:
    """The prime (float samples at the codec's rate; None: one silent sample) followed by
    ``seconds`` of sampled continuation, as float32 samples."""
    if mm.kind != "audio":
        raise ConfigError("this is an image model; use --n N or --complete IMG instead")
    if not isinstance(seconds, (int, float)) or not 0 < seconds <= 60:
        raise ConfigError(f"--seconds must be more than 0 and at most 60, got {seconds!r}")
    check_settings(temperature, None, top_p, max_temperature=TEMPERATURE.hi)
    codec = mm.codec
    codes = [codec.silence()] if prime is None or len(prime) == 0 else codec.encode(prime).tolist()
    new = generate(mm.network, codes, int(round(seconds * codec.sample_rate)), temperature=temperature,
                   top_p=top_p, seed=seed)
    return codec.decode(codes + new)


def read_prime(mm: MediaModel, path, max_seconds: float = 60.0) -> np.ndarray:
    samples = mm.codec.load_file(path)
    if len(samples) > max_seconds * mm.codec.sample_rate:
        raise DataError(f"{path} lasts {len(samples) / mm.codec.sample_rate:.0f} s; give a prime of at most "
                        f"{max_seconds:.0f} s (the model sees only its last {mm.network.config.max_len} samples)")
    return samples
