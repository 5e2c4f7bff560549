"""Raw-audio codec: mono samples <-> 8-bit mu-law tokens (vocab 256), as in the paper.

``encode(x)`` maps float samples in [-1, 1] through mu-law companding (mu = 255),
``F(x) = sign(x) ln(1 + mu |x|) / ln(1 + mu)``, to 256 evenly spaced levels of F; ``decode``
maps a level back to the centre of its bin. The round trip is within the quantization error:
|decode(encode(x)) - x| is at most half the width of x's bin (fine near silence, coarse
near full scale). Sample rates are 8 or 16 kHz. :func:`read_wav` reads 8/16/24/32-bit PCM
WAV files (mono or several channels, mixed to mono) and resamples them to the codec's rate.
"""

from __future__ import annotations

import math
import wave
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from cadenza.errors import DataError
from cadenza.io import atomic_path

CODEC_NAME = "audio"
CODEC_VERSION = 1
VOCAB_SIZE = 256
SAMPLE_RATES = (8000, 16000)
MU = 255
MAX_SECONDS = 3600


@dataclass(frozen=True)
class AudioCodec:
    sample_rate: int = 8000

    def __post_init__(self):
        if self.sample_rate not in SAMPLE_RATES:
            raise DataError(f"the audio sample rate must be 8000 or 16000 Hz, got {self.sample_rate!r}")

    @property
    def vocab_size(self) -> int:
        return VOCAB_SIZE

    def encode(self, samples) -> np.ndarray:
        """Float samples in [-1, 1] (clipped) -> int64 mu-law levels 0..255."""
        x = np.clip(np.asarray(samples, dtype=np.float64).reshape(-1), -1.0, 1.0)
        f = np.sign(x) * np.log1p(MU * np.abs(x)) / math.log1p(MU)
        return np.clip(np.round((f + 1.0) / 2.0 * (VOCAB_SIZE - 1)), 0, VOCAB_SIZE - 1).astype(np.int64)

    def decode(self, tokens) -> np.ndarray:
        """Levels 0..255 -> float32 samples in [-1, 1]."""
        t = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if t.size and (t.min() < 0 or t.max() >= VOCAB_SIZE):
            raise DataError("audio tokens must be mu-law levels 0..255")
        f = t.astype(np.float64) / (VOCAB_SIZE - 1) * 2.0 - 1.0
        return (np.sign(f) * np.expm1(np.abs(f) * math.log1p(MU)) / MU).astype(np.float32)

    def silence(self) -> int:
        """The level of a zero sample."""
        return int(self.encode([0.0])[0])

    def to_dict(self) -> dict:
        return {"codec": CODEC_NAME, "codec_version": CODEC_VERSION, "sample_rate": self.sample_rate,
                "mu": MU, "vocab_size": VOCAB_SIZE}

    @classmethod
    def from_dict(cls, d: dict) -> "AudioCodec":
        if not isinstance(d, dict) or d.get("codec") != CODEC_NAME:
            raise DataError("not an audio codec description (tokenizer.json without \"codec\": \"audio\")")
        if d.get("codec_version") != CODEC_VERSION:
            raise DataError(f"audio codec version {d.get('codec_version')!r}; this Cadenza reads {CODEC_VERSION}")
        return cls(int(d["sample_rate"]))

    def load_file(self, path) -> np.ndarray:
        """A WAV file -> float32 mono samples at this codec's rate."""
        samples, rate = read_wav(path)
        return resample(samples, rate, self.sample_rate)


def read_wav(path) -> tuple[np.ndarray, int]:
    """(float32 mono samples in [-1, 1], sample rate) of a PCM WAV file; DataError if not one."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            if width not in (1, 2, 3, 4):
                raise DataError(f"{path} has {8 * width}-bit samples; give 8, 16, 24 or 32-bit PCM WAV")
            if rate < 1000 or rate > 384000:
                raise DataError(f"{path} says its sample rate is {rate} Hz, which is not a real audio rate")
            if frames > MAX_SECONDS * rate:
                raise DataError(f"{path} lasts {frames / rate / 60:.0f} minutes; give files of at most "
                                f"{MAX_SECONDS // 60} minutes")
            raw = w.readframes(frames)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder, not a WAV file") from None
    except PermissionError:
        raise DataError(f"cannot read {path}: permission denied") from None
    except (wave.Error, EOFError, OSError) as exc:
        why = " ".join(str(exc).split()) or type(exc).__name__
        if "unknown format: 3" in why:
            why = "32-bit float samples; give PCM (integer) samples, e.g. convert with sox -e signed"
        raise DataError(f"{path} is not a readable PCM WAV file ({why})") from None
    usable = len(raw) // (width * channels) * width * channels
    if usable == 0:
        raise DataError(f"{path} holds no audio samples (an empty WAV)")
    raw = raw[:usable]
    if width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / float(1 << 23)
    else:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float32) / float(1 << 31)
    return x.reshape(-1, channels).mean(axis=1).astype(np.float32), rate


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling (scipy) from ``rate`` to ``target`` Hz."""
    if rate == target:
        return np.asarray(samples, dtype=np.float32)
    from scipy.signal import resample_poly

    frac = Fraction(int(target), int(rate)).limit_denominator(1000)
    return resample_poly(np.asarray(samples, dtype=np.float64), frac.numerator, frac.denominator).astype(np.float32)


def write_wav(path, audio, sample_rate: int) -> Path:
    """Write float audio, mono (samples,) or (samples, channels), as 16-bit PCM WAV, atomically."""
    path = Path(path)
    pcm = (np.clip(np.asarray(audio, dtype=np.float64), -1.0, 1.0) * 32767.0).round().astype("<i2")
    with atomic_path(path) as tmp:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(pcm.shape[1] if pcm.ndim == 2 else 1)
            w.setsampwidth(2)
            w.setframerate(int(sample_rate))
            w.writeframes(pcm.tobytes())
    return path
