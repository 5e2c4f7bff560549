"""Image codec: an RGB image <-> 8-bit channel tokens in raster order (Child et al. 2019).

An H x W x C image (uint8) is the token sequence of its channel values, row by row, pixel
by pixel, channel by channel: token ``r*W*C + c*C + ch`` is channel ``ch`` of pixel
``(r, c)``. Values are tokens 0..255; token 256 (:data:`START`) opens every image in a
dataset, so a model predicts all H*W*C values, the first one included, from the start
token: input ``[START, v0, ..., v(N-2)]``, targets ``[v0, ..., v(N-1)]``. The target at
model position k is value k, so factorized positions of shape (H, W, C) give each position
the row, column and channel it predicts; strided attention with stride W*C (one row) makes
the every-l-th part look straight up the same column and channel.

The round trip is exact: ``decode(encode(img)) == img``. :func:`load_image` reads a PNG or
JPEG (any mode), crops the centre square and resizes it to ``size`` x ``size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cadenza.errors import DataError

CODEC_NAME = "image"
CODEC_VERSION = 1
START = 256
VOCAB_SIZE = 257
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MAX_PIXELS = 50_000_000


@dataclass(frozen=True)
class ImageCodec:
    height: int = 32
    width: int = 32
    channels: int = 3

    def __post_init__(self):
        for name in ("height", "width"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 256:
                raise DataError(f"image {name} must be a whole number from 1 to 256, got {v!r}")
        if self.channels not in (1, 3):
            raise DataError(f"images have 1 (grey) or 3 (RGB) channels, got {self.channels!r}")

    # ---- shape ----------------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        """Values per image (3,072 for 32 x 32 RGB)."""
        return self.height * self.width * self.channels

    @property
    def vocab_size(self) -> int:
        return VOCAB_SIZE

    @property
    def row_tokens(self) -> int:
        """Tokens per image row: the stride of the paper's strided image model."""
        return self.width * self.channels

    @property
    def position_shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    # ---- tokens ---------------------------------------------------------------
    def encode(self, image: np.ndarray) -> np.ndarray:
        """(H, W, C) or (H, W) uint8 -> (H*W*C,) int64 tokens in raster order."""
        arr = np.asarray(image)
        if arr.ndim == 2 and self.channels == 1:
            arr = arr[:, :, None]
        if arr.shape != self.position_shape:
            raise DataError(f"the image is {arr.shape}, this codec takes {self.position_shape} (H, W, C)")
        if arr.dtype != np.uint8:
            raise DataError(f"image values must be uint8 (0..255), got {arr.dtype}")
        return arr.reshape(-1).astype(np.int64)

    def record(self, image: np.ndarray) -> np.ndarray:
        """START followed by the image's tokens: one image as a dataset stores it."""
        return np.concatenate([[START], self.encode(image)])

    def decode(self, tokens) -> np.ndarray:
        """Tokens (a leading START is dropped) -> (H, W, C) uint8; exactly N values needed."""
        t = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if t.size and t[0] == START:
            t = t[1:]
        if t.size != self.n_tokens:
            raise DataError(f"an image of {self.position_shape} needs {self.n_tokens} values, got {t.size}")
        if t.size and (t.min() < 0 or t.max() > 255):
            raise DataError("image tokens must be channel values 0..255")
        return t.astype(np.uint8).reshape(self.position_shape)

    # ---- files ----------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"codec": CODEC_NAME, "codec_version": CODEC_VERSION, "height": self.height,
                "width": self.width, "channels": self.channels, "vocab_size": VOCAB_SIZE, "start": START}

    @classmethod
    def from_dict(cls, d: dict) -> "ImageCodec":
        if not isinstance(d, dict) or d.get("codec") != CODEC_NAME:
            raise DataError("not an image codec description (tokenizer.json without \"codec\": \"image\")")
        if d.get("codec_version") != CODEC_VERSION:
            raise DataError(f"image codec version {d.get('codec_version')!r}; this Cadenza reads {CODEC_VERSION}")
        return cls(int(d["height"]), int(d["width"]), int(d["channels"]))

    def load_file(self, path) -> np.ndarray:
        """A PNG/JPEG file -> (H, W, C) uint8, centre-cropped to a square and resized."""
        return load_image(path, self.height, self.width, self.channels)


def load_image(path, height: int = 32, width: int | None = None, channels: int = 3) -> np.ndarray:
    """Read an image file (any size and mode), crop its centre to the target aspect, resize."""
    from PIL import Image, UnidentifiedImageError

    width = height if width is None else width
    path = Path(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise DataError(f"{path} is {w} x {h} pixels, more than {MAX_PIXELS:,}; shrink it first")
            im.draft("RGB", (max(width, 1) * 2, max(height, 1) * 2))  # JPEG: decode at a smaller scale
            im = im.convert("RGB" if channels == 3 else "L")
            w, h = im.size
            target = width / height
            if w / h > target:
                cw, ch = round(h * target), h
            else:
                cw, ch = w, round(w / target)
            left, top = (w - cw) // 2, (h - ch) // 2
            im = im.crop((left, top, left + max(cw, 1), top + max(ch, 1)))
            im = im.resize((width, height), Image.Resampling.LANCZOS if hasattr(Image, "Resampling") else Image.LANCZOS)
            arr = np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder, not an image file") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        if isinstance(exc, PermissionError):
            raise DataError(f"cannot read {path}: permission denied") from None
        raise DataError(f"{path} is not a readable image ({' '.join(str(exc).split()) or type(exc).__name__})") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr


def write_png(image: np.ndarray, path) -> None:
    """Write (H, W, C) uint8 as a PNG at ``path`` (not atomic: give a temporary path)."""
    from PIL import Image

    arr = np.asarray(image, dtype=np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    Image.fromarray(arr).save(path, format="PNG")


def tile(images, columns: int | None = None, gap: int = 2, scale: int = 1) -> np.ndarray:
    """A grid of equal-size (H, W, C) images with white gaps, optionally scaled up."""
    images = [np.asarray(i, dtype=np.uint8) for i in images]
    if not images:
        raise DataError("no images to tile")
    h, w, c = images[0].shape
    cols = columns or int(np.ceil(np.sqrt(len(images))))
    rows = -(-len(images) // cols)
    H, W = h * scale, w * scale
    grid = np.full((rows * H + (rows + 1) * gap, cols * W + (cols + 1) * gap, c), 255, dtype=np.uint8)
    for k, img in enumerate(images):
        r, q = divmod(k, cols)
        big = img.repeat(scale, axis=0).repeat(scale, axis=1)
        y, x = gap + r * (H + gap), gap + q * (W + gap)
        grid[y:y + H, x:x + W] = big
    return grid
