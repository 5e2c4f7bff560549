"""Loading a music model folder: the typed ``MusicModel`` (network, tokenizer, identity),
with one clear sentence (``ModelFileError``) for every problem; and writing one
(``save_model``). Finding and listing model folders: ``cadenza.music.registry``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cadenza.errors import CadenzaError, ModelFileError
from cadenza.model_files import CONFIG_FILE, WEIGHTS_FILE  # the model's own file names
from cadenza.music.eval.report import CARD_FILE, read_metrics, write_metrics
from cadenza.music.registry import TOKENIZER_FILE, default_model_dir, weights_digest

if TYPE_CHECKING:   # typing only: importing them pulls in torch and MidiTok
    from cadenza.codecs.music import MusicCodec
    from cadenza.model import SparseTransformer


@dataclass
class MusicModel:
    """A loaded music model: the network, its tokenizer and where they came from."""

    network: "SparseTransformer"   # the network (eval mode)
    codec: "MusicCodec"
    path: Path
    name: str
    digest: str              # weights_digest: changes whenever the weights change
    meta: dict = field(default_factory=dict)   # config.json contents
    metrics: dict = field(default_factory=dict)
    mood_keys: dict | None = None   # keys per valence level from the corpus (cadenza.music.modes)

    @property
    def version(self) -> str:
        """``name@digest`` (plus the Cadenza version that saved it, when known)."""
        v = self.meta.get("cadenza_version")
        return f"{self.name}@{self.digest}" + (f" (cadenza {v})" if v else "")

    def provenance(self) -> dict:
        return {"name": self.name, "path": str(self.path), "weights_sha256_12": self.digest,
                "cadenza_version": self.meta.get("cadenza_version"),
                "parameters": self.network.num_params(), "max_len": self.network.config.max_len,
                "decode_weights": self.network.decode_weights}


_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()


def _stamp(d: Path) -> tuple:
    out = []
    for name in (WEIGHTS_FILE, CONFIG_FILE, TOKENIZER_FILE):
        try:
            st = (d / name).stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def load_model(path=None, cache: bool = True, decode_weights: str = "int8") -> MusicModel:
    """Load a music model directory (``None``: the default model).

    ``decode_weights`` is what one-token decoding steps multiply by: "int8" (default;
    ``cadenza.quant``, about 1.6x faster per token on a CPU, the logits move by a few
    hundredths) or "float32" (exact).

    The weights load with ``SparseTransformer.load`` and the tokenizer with
    ``MusicCodec.load``; both must agree on the vocabulary. Loaded models are kept per
    process (keyed by the files' sizes and times), so a second call is instant.
    """
    from cadenza.codecs.music import MusicCodec
    from cadenza.model import SparseTransformer

    d = Path(path) if path is not None else default_model_dir()
    if not d.exists():
        raise ModelFileError(f"model directory {d} does not exist")
    if not d.is_dir():
        raise ModelFileError(f"{d} is a file, not a model directory (a folder with model.safetensors, "
                             f"config.json and tokenizer.json)")
    key = (str(d.resolve()), _stamp(d))
    if cache:
        with _CACHE_LOCK:
            hit = _CACHE.get(key)
        if hit is not None:
            hit.network.set_decode_weights(decode_weights)
            return hit
    if not (d / TOKENIZER_FILE).is_file() and (d / CONFIG_FILE).is_file() and (d / WEIGHTS_FILE).is_file():
        raise ModelFileError(f"model directory {d} has no {TOKENIZER_FILE}; a music model needs the tokenizer "
                             f"it was trained with (the dataset's tokenizer.json)")
    for name in (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE):
        _check_model_file(d, name)
    meta = _read_json(d / CONFIG_FILE, "model config")
    tok = _read_json(d / TOKENIZER_FILE, "tokenizer")
    _check_tokenizer_dict(d / TOKENIZER_FILE, tok, meta)
    model = SparseTransformer.load(d)   # ModelFileError for missing/corrupt weights or config
    codec = _codec_from_dict(MusicCodec, d / TOKENIZER_FILE, tok)
    if codec.vocab_size != model.config.vocab_size:
        raise ModelFileError(f"{d / TOKENIZER_FILE} builds {codec.vocab_size} tokens but the model in {d} was built "
                             f"for {model.config.vocab_size} ({CONFIG_FILE}); they do not belong together")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    model.set_decode_weights(decode_weights)
    name = d.resolve().name
    try:
        digest = weights_digest(d)
    except OSError as exc:
        raise ModelFileError(_os_sentence(d / WEIGHTS_FILE, exc)) from None
    from cadenza.codecs.music.key_table import read_table

    mm = MusicModel(network=model, codec=codec, path=d, name=name, digest=digest, meta=meta,
                    metrics=read_metrics(d), mood_keys=read_table(d))
    if cache:
        with _CACHE_LOCK:
            _CACHE.clear()  # keep one model per process: they can be large
            _CACHE[key] = mm
    return mm


# --------------------------------------------------------------------------- validating a model folder
_JSON_TYPES = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
               list: "a list", dict: "an object", type(None): "null"}


def _json_kind(value) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _os_sentence(path: Path, exc: OSError) -> str:
    from cadenza.io import os_error_sentence

    return os_error_sentence(exc, path, doing="read")


def _check_model_file(d: Path, name: str) -> None:
    """The file is there, is a file, and is not empty (a copy or download that stopped)."""
    p = d / name
    if not p.exists():
        raise ModelFileError(f"model directory {d} has no {name}; a music model folder needs {WEIGHTS_FILE}, "
                             f"{CONFIG_FILE} and {TOKENIZER_FILE} (export or copy it again)")
    if p.is_dir():
        raise ModelFileError(f"{p} is a folder, not the model's {name}")
    try:
        size = p.stat().st_size
        with open(p, "rb"):
            pass
    except OSError as exc:
        raise ModelFileError(_os_sentence(p, exc)) from None
    if size == 0:
        raise ModelFileError(f"{p} is empty (0 bytes); the model folder is incomplete, export or copy it again")


def _read_json(p: Path, what: str) -> dict:
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelFileError(_os_sentence(p, exc)) from None
    except UnicodeDecodeError:
        raise ModelFileError(f"{p} is not a {what} (not UTF-8 text); the file is damaged, copy it again") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        cut = " (it looks cut short)" if exc.pos >= len(text.rstrip()) else ""
        raise ModelFileError(f"{p} is not valid JSON{cut}: {exc.msg} at line {exc.lineno}, column {exc.colno}; "
                             f"the file is damaged, copy or export it again") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{p} is not a {what}: it holds {_json_kind(data)}, not a JSON object")
    return data


def _supported_codec_version() -> int | None:
    try:
        from cadenza.codecs.music import CODEC_VERSION

        return int(CODEC_VERSION)
    except (ImportError, AttributeError, TypeError, ValueError):
        return None


def _config_defaults() -> dict:
    """The saved form of a default tokenizer config (field -> JSON value), for type checks."""
    try:
        from cadenza.codecs.music import MusicCodecConfig

        return MusicCodecConfig().to_dict()
    except Exception:   # noqa: BLE001 - only a help for clearer messages; from_dict still decides
        return {}


def _check_tokenizer_dict(p: Path, tok: dict, meta: dict) -> None:
    """The checks that name what is wrong in tokenizer.json, before the codec is built."""
    from cadenza._version import __version__

    if "codec" not in tok:
        raise ModelFileError(f"{p} is not a Cadenza music tokenizer (it has no \"codec\" entry)")
    version = tok.get("codec_version")
    supported = _supported_codec_version()
    if version is None:
        raise ModelFileError(f"{p} lacks \"codec_version\"; it is not a complete Cadenza music tokenizer")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ModelFileError(f"{p}: \"codec_version\" must be a whole number, not {_json_kind(version)}")
    if supported is not None and version > supported:
        raise ModelFileError(f"{p} has music codec version {version}, newer than this Cadenza ({__version__}) "
                             f"reads (version {supported}); upgrade Cadenza to use this model")
    if "config" not in tok:
        raise ModelFileError(f"{p} lacks \"config\" (the tokenizer settings); it is not a complete Cadenza "
                             f"music tokenizer")
    cfg = tok["config"]
    if not isinstance(cfg, dict):
        raise ModelFileError(f"{p}: \"config\" must be an object of tokenizer settings, not {_json_kind(cfg)}")
    for key, default in _config_defaults().items():
        if key not in cfg or default is None:
            continue
        value = cfg[key]
        ok = (isinstance(value, type(default)) and not (isinstance(value, bool) and not isinstance(default, bool))
              or (isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)))
        if not ok:
            raise ModelFileError(f"{p}: the tokenizer setting \"{key}\" must be {_json_kind(default)}, not "
                                 f"{_json_kind(value)} ({json.dumps(value)[:40]})")
    n = tok.get("vocab_size")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int)):
        raise ModelFileError(f"{p}: \"vocab_size\" must be a whole number, not {_json_kind(n)}")
    model_cfg = meta.get("config")
    m = model_cfg.get("vocab_size") if isinstance(model_cfg, dict) else None
    if isinstance(n, int) and isinstance(m, int) and not isinstance(m, bool) and n != m:
        raise ModelFileError(f"{p} has a vocabulary of {n} tokens but {p.parent / CONFIG_FILE} says the model was "
                             f"built for {m}; the tokenizer and the weights do not belong together")


def _codec_from_dict(codec_cls, p: Path, tok: dict):
    try:
        return codec_cls.from_dict(tok)
    except CadenzaError as exc:
        raise ModelFileError(f"{p}: {exc}") from None
    except KeyError as exc:
        key = exc.args[0] if exc.args else "?"
        raise ModelFileError(f"{p} lacks the entry {key!r}; it is not a complete Cadenza music tokenizer") from None
    except (TypeError, ValueError, AttributeError, IndexError) as exc:
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise ModelFileError(f"{p} holds a setting of the wrong type or value ({reason}); export the model "
                             f"again or restore the tokenizer.json it was trained with") from None


def save_model(model, codec, directory, card: str | None = None, metrics: dict | None = None) -> Path:
    """Write a complete music model directory: weights, config, tokenizer, card, metrics."""
    from cadenza.io import write_text_atomic

    d = Path(directory)
    model.save(d)
    codec.save(d / TOKENIZER_FILE)
    if card is not None:
        write_text_atomic(d / CARD_FILE, card)
    if metrics is not None:
        write_metrics(d, metrics)
    return d
