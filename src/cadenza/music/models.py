"""Music model directories: find them, load them (weights + tokenizer), list them with metrics.

A music model directory holds::

    model.safetensors   the weights          (SparseTransformer.save)
    config.json         the model config     (SparseTransformer.save)
    tokenizer.json      the MusicCodec       (MusicCodec.save)
    MODEL_CARD.md       data, licences, training command, metrics, limits (optional)
    metrics.json        held-out metrics as JSON (optional; `cadenza models` shows them)

The shipped models live in ``models/<name>/`` of the repository (found relative to this
package's source, so an editable install finds them; ``$CADENZA_MODELS`` names another
folder). The default model is ``$CADENZA_MODEL`` if set, else the one named in
``models/DEFAULT`` (a one-line text file), else ``models/default/``, else the first model in
name order (``models/`` itself counts when it is a model directory).

Every problem with a model directory raises ``ModelFileError`` with one sentence.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cadenza.errors import CadenzaError, ModelFileError
from cadenza.model_files import CONFIG_FILE, WEIGHTS_FILE  # the model's own file names

if TYPE_CHECKING:   # typing only: importing them pulls in torch and MidiTok
    from cadenza.codecs.music import MusicCodec
    from cadenza.model import SparseTransformer

TOKENIZER_FILE = "tokenizer.json"
CARD_FILE = "MODEL_CARD.md"
METRICS_FILE = "metrics.json"


def repo_root() -> Path:
    """The repository that holds this package's source (src/cadenza/music/models.py -> repo)."""
    return Path(__file__).resolve().parents[3]


def models_root() -> Path:
    """Where installed music models live: $CADENZA_MODELS or ``<repository>/models``."""
    env = os.environ.get("CADENZA_MODELS")
    return Path(env) if env else repo_root() / "models"


def is_model_dir(path) -> bool:
    p = Path(path)
    return (p / CONFIG_FILE).is_file() and (p / WEIGHTS_FILE).is_file()


def find_models(root=None) -> list[Path]:
    """Model directories under ``root`` (default: ``models_root()``): root itself if it is one,
    and its sub-folders that are, in name order."""
    root = Path(root) if root is not None else models_root()
    found = []
    if is_model_dir(root):
        found.append(root)
    if root.is_dir():
        found += [p for p in sorted(root.iterdir()) if p.is_dir() and is_model_dir(p)]
    return found


def default_model_dir(root=None) -> Path:
    """The model `cadenza compose` uses without ``--model`` (see the module docstring)."""
    env = os.environ.get("CADENZA_MODEL")
    if env and root is None:
        return Path(env)
    root = Path(root) if root is not None else models_root()
    pointer = root / "DEFAULT"
    if pointer.is_file():
        name = pointer.read_text(encoding="utf-8", errors="replace").strip()
        if name and is_model_dir(root / name):
            return root / name
    if is_model_dir(root / "default"):
        return root / "default"
    models = find_models(root)
    if not models:
        raise ModelFileError(
            f"no music model is installed in {root}; pass --model DIR (a folder with model.safetensors, "
            f"config.json and tokenizer.json) or train one with `cadenza train`")
    return models[0]


def weights_digest(path) -> str:
    """First 12 hex digits of the SHA-256 of a model's weights file (its version fingerprint)."""
    p = Path(path)
    p = p / WEIGHTS_FILE if p.is_dir() else p
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


def count_parameters(weights_path) -> int | None:
    """Parameters in a safetensors file, from its header alone (None if unreadable)."""
    try:
        with open(weights_path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > 100_000_000:
                return None
            header = json.loads(fh.read(n))
    except (OSError, ValueError, struct.error):
        return None
    total = 0
    for name, info in header.items():
        if name == "__metadata__" or not isinstance(info, dict):
            continue
        size = 1
        for s in info.get("shape", []):
            size *= int(s)
        total += size
    return total


def read_metrics(directory) -> dict:
    """Held-out metrics of a model: metrics.json if present, else a "metrics" entry of
    config.json, else what the model card states as metrics (see ``card_metrics``), else {}."""
    d = Path(directory)
    for path, key in ((d / METRICS_FILE, None), (d / CONFIG_FILE, "metrics")):
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if key is not None:
            data = data.get(key) if isinstance(data, dict) else None
        if isinstance(data, dict) and data:
            return data
    card = d / CARD_FILE
    if card.is_file():
        try:
            return card_metrics(card.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            return {}
    return {}


_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*(%|bits?\S*|s|ms)?$")


def card_metrics(text: str) -> dict:
    """Metrics a model card states in a section whose heading mentions metrics, evaluation
    or results: two-column table rows ``| name | number |`` and list items ``- name: number``."""
    out: dict = {}
    in_section = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            in_section = any(w in stripped.lower() for w in ("metric", "evaluation", "result"))
            continue
        if not in_section:
            continue
        if stripped.startswith("|"):
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            if len(cells) == 2 and cells[0] and _NUMBER.match(cells[1].replace(",", "")):
                out[cells[0].strip("*_ ")] = cells[1]
        elif stripped.startswith(("- ", "* ")) and ":" in stripped:
            name, _, value = stripped[2:].partition(":")
            if name.strip() and _NUMBER.match(value.strip().replace(",", "")):
                out[name.strip("*_ ")] = value.strip()
    return out


def card_title(directory) -> str | None:
    """The first heading (or first non-empty line) of MODEL_CARD.md."""
    p = Path(directory) / CARD_FILE
    if not p.is_file():
        return None
    try:
        for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if line:
                return line.lstrip("#").strip() or None
    except OSError:
        return None
    return None


@dataclass
class ModelInfo:
    """What `cadenza models` shows about one model directory (read without loading it)."""

    name: str
    path: Path
    parameters: int | None
    config: dict
    cadenza_version: str | None
    size_mb: float
    title: str | None
    metrics: dict
    has_tokenizer: bool
    is_default: bool = False
    problem: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "path": str(self.path), "default": self.is_default,
                "parameters": self.parameters, "size_mb": round(self.size_mb, 2), "title": self.title,
                "cadenza_version": self.cadenza_version, "tokenizer": self.has_tokenizer,
                "config": self.config, "metrics": self.metrics, "problem": self.problem}


def model_info(directory, is_default: bool = False) -> ModelInfo:
    d = Path(directory)
    problem = None
    meta: dict = {}
    try:
        meta = json.loads((d / CONFIG_FILE).read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError
    except (OSError, UnicodeDecodeError, ValueError):
        problem = f"{CONFIG_FILE} is not valid JSON"
        meta = {}
    has_tok = (d / TOKENIZER_FILE).is_file()
    if problem is None and not has_tok:
        problem = f"no {TOKENIZER_FILE}"
    weights = d / WEIGHTS_FILE
    size = weights.stat().st_size / 1e6 if weights.is_file() else 0.0
    params = count_parameters(weights)
    if params is None and problem is None:
        problem = f"{WEIGHTS_FILE} is not a readable safetensors file"
    config = meta.get("config", {}) if isinstance(meta.get("config"), dict) else {}
    return ModelInfo(name=d.name, path=d, parameters=params, config=config,
                     cadenza_version=meta.get("cadenza_version"), size_mb=size, title=card_title(d),
                     metrics=read_metrics(d), has_tokenizer=has_tok, is_default=is_default, problem=problem)


def list_models(root=None) -> list[ModelInfo]:
    """Every installed model (``find_models``) with its metrics; the default one marked."""
    dirs = find_models(root)
    try:
        default = default_model_dir(root).resolve()
    except CadenzaError:
        default = None
    return [model_info(d, is_default=(default is not None and d.resolve() == default)) for d in dirs]


# --------------------------------------------------------------------------- loading
@dataclass
class MusicModel:
    """A loaded music model: the network, its tokenizer and where they came from."""

    model: "SparseTransformer"   # the network (eval mode)
    codec: "MusicCodec"
    path: Path
    name: str
    digest: str              # weights_digest: changes whenever the weights change
    meta: dict = field(default_factory=dict)   # config.json contents
    metrics: dict = field(default_factory=dict)

    @property
    def version(self) -> str:
        """``name@digest`` (plus the Cadenza version that saved it, when known)."""
        v = self.meta.get("cadenza_version")
        return f"{self.name}@{self.digest}" + (f" (cadenza {v})" if v else "")

    def provenance(self) -> dict:
        return {"name": self.name, "path": str(self.path), "weights_sha256_12": self.digest,
                "cadenza_version": self.meta.get("cadenza_version"),
                "parameters": self.model.num_params(), "max_len": self.model.config.max_len,
                "decode_weights": self.model.decode_weights}


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
            hit.model.set_decode_weights(decode_weights)
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
    mm = MusicModel(model=model, codec=codec, path=d, name=name, digest=digest, meta=meta,
                    metrics=read_metrics(d))
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
        write_text_atomic(d / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    return d
