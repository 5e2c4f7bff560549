"""Small sample corpora made from files that installed packages ship (no network).

- :func:`write_sample_images`: random crops (with flips) of matplotlib's sample photographs
  (``grace_hopper.jpg``, ``Minduka_Present_Blue_Pack.png``), saved as PNG files.
- :func:`write_sample_audio`: public-domain scores from music21's corpus (Bach chorales by
  default) rendered to mono WAV with the project's SoundFont renderer.

For tests, demos and benchmarks; ``cadenza data images|audio`` take any folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cadenza.errors import DataError

SAMPLE_PHOTOS = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")


def _photo(name: str):
    from matplotlib import cbook
    from PIL import Image

    try:
        path = cbook.get_sample_data(name, asfileobj=False)
    except Exception:
        raise DataError(f"matplotlib's sample image {name} is not installed") from None
    with Image.open(path) as im:
        return im.convert("RGB")


def write_sample_images(folder, count: int = 64, size: int = 32, seed: int = 0,
                        photos=SAMPLE_PHOTOS) -> list[Path]:
    """``count`` PNGs of ``size`` x ``size``: random square crops (a fifth to a half of the
    shorter side), flipped left-right half of the time, from the sample photos in turn."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sources = [_photo(p) for p in photos]
    out = []
    for k in range(count):
        im = sources[k % len(sources)]
        w, h = im.size
        side = int(rng.integers(min(w, h) // 5, min(w, h) // 2 + 1))
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        crop = im.crop((x, y, x + side, y + side)).resize((size, size), Image.Resampling.LANCZOS)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        path = folder / f"sample_{k:04d}.png"
        crop.save(path)
        out.append(path)
    return out


def write_sample_audio(folder, count: int = 8, sample_rate: int = 8000, composer: str = "bach",
                       max_seconds: float | None = None) -> list[Path]:
    """Render ``count`` scores of ``composer`` from music21's corpus to mono 16-bit WAV files."""
    import tempfile

    from music21 import converter, corpus

    from cadenza.codecs.audio import write_wav
    from cadenza.render import synthesize

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = sorted(str(p) for p in corpus.getComposer(composer))
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for p in paths:
            if len(out) >= count:
                break
            try:
                midi = Path(tmp) / "piece.mid"
                converter.parse(p).write("midi", fp=str(midi))
                audio = synthesize(midi, sample_rate=sample_rate).mean(axis=1)
            except Exception:   # a score music21 cannot turn into MIDI: take the next one
                continue
            if max_seconds:
                audio = audio[:int(max_seconds * sample_rate)]
            path = folder / f"{Path(p).stem}.wav"
            write_wav(path, audio, sample_rate)
            out.append(path)
    if not out:
        raise DataError(f"no score of {composer!r} in music21's corpus could be rendered")
    return out
