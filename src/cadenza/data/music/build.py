"""Building a music corpus folder: the music21 corpus or a folder of MIDI files, through the
worker pool (``pool``) to the manifest and token files (``manifest``)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from cadenza.errors import ConfigError, DataError
from cadenza.data.music.collections import COLLECTIONS
from cadenza.data.music.manifest import BuildSummary, finish_build
from cadenza.data.music.music21 import music21_sources
from cadenza.data.music.pool import converter_version, process_midi_file, process_music21_file, run_tasks


def _check_fractions(val_fraction, test_fraction):
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError("val and test fractions must be between 0 and 1 and sum to less than 1")


def build_music21(out_dir, collections=None, limit: int | None = None, workers: int = 2,
                  codec=None, val_fraction: float = 0.05, test_fraction: float = 0.05,
                  progress: bool = True, use_cache: bool = True, timeout: int = 300,
                  commercial_ok: bool = False, allow_unknown_licence: bool = False,
                  as_written: bool = False, fixed_tokenizer: bool = False) -> BuildSummary:
    """Build a token dataset from the music21 corpus bundled with the music21 package.

    Pieces are written out as played (repeats expanded, ``pool._as_played``) unless
    ``as_written``; the manifest's ``repeats`` column says what expansion did to each piece.
    ``codec`` with ``fixed_tokenizer=True`` keeps that tokenizer exactly (its mood level edges
    too), so a model trained with it can be fine-tuned on the result (``--tokenizer MODEL_DIR``).

    ``limit`` keeps at most that many pieces per collection (the first ones in file order).
    ``commercial_ok`` leaves out pieces whose licence is for non-commercial use (the Essen
    encodings) and, unless ``allow_unknown_licence``, those whose licence is unknown; the
    manifest's ``use`` column says what each piece's licence allows.
    """
    from cadenza.codecs.music import MusicCodec

    _check_fractions(val_fraction, test_fraction)
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1, not {limit}")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {workers}")
    codec = codec or MusicCodec()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    sources = music21_sources(collections, limit)
    if not sources:
        raise DataError("the chosen music21 collections have no score files")
    import music21

    def convert_cache(p: Path, rel: str, take) -> str | None:
        if not use_cache:
            return None
        st = p.stat()
        raw = f"{converter_version(p)}|{music21.__version__}|{rel}|{st.st_size}|{int(st.st_mtime)}|{take}"
        return str(out / ".cache" / "scores" / (hashlib.sha1(raw.encode()).hexdigest() + ".pkl"))

    extra = "|as-written" if as_written else ""
    tasks = [(rel, p, f"take={take}{extra}", (coll, str(p), rel, take, timeout, convert_cache(p, rel, take),
                                              as_written))
             for coll, p, rel, take in sources]
    results = run_tasks(tasks, process_music21_file, codec, out, workers, "music21 corpus", progress, use_cache)
    all_results = [r for _, _, rel, _ in sources for r in results[rel]]
    info = {"source": "music21 corpus", "music21_version": str(music21.__version__),
            "limit_per_collection": limit, "repeats": "as written" if as_written else "expanded"}
    split_by = {c: COLLECTIONS[c].split_by for c in COLLECTIONS}
    info["commercial_ok"] = bool(commercial_ok)
    return finish_build(out, codec, all_results, t0, val_fraction, test_fraction, info, split_by, progress,
                        fixed_tokenizer=fixed_tokenizer, commercial_ok=commercial_ok,
                        allow_unknown_licence=allow_unknown_licence)


def build_midi(in_dir, out_dir, style: str = "other", licence: str = "unknown (your own files)",
               composer: str = "unknown", workers: int = 2, codec=None, val_fraction: float = 0.05,
               test_fraction: float = 0.05, progress: bool = True, use_cache: bool = True,
               timeout: int = 120, fixed_tokenizer: bool = False, commercial_ok: bool = False,
               allow_unknown_licence: bool = False) -> BuildSummary:
    """Build a token dataset from every .mid/.midi file under ``in_dir`` (recursively).

    ``codec`` with ``fixed_tokenizer=True`` (``cadenza data midi --tokenizer MODEL_DIR``)
    keeps that tokenizer exactly, mood level edges included, so a model that uses it can be
    fine-tuned on the result; otherwise the levels are cut at this data's quantiles."""
    from cadenza.codecs.music import MusicCodec

    _check_fractions(val_fraction, test_fraction)
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {workers}")
    codec = codec or MusicCodec()
    codec.style_id(style)
    src = Path(in_dir)
    if not src.is_dir():
        raise DataError(f"{src} is not a folder of MIDI files")
    files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in (".mid", ".midi"))
    if not files:
        raise DataError(f"{src} has no .mid or .midi files")
    out = Path(out_dir)
    if out.resolve() == src.resolve():
        raise ConfigError("--out must not be the MIDI folder itself")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    collection = src.resolve().name or "midi"
    tasks = []
    for p in files:
        rel = p.relative_to(src).as_posix()
        tasks.append((rel, p, f"{style}|{licence}|{composer}",
                      (str(p), rel, collection, style, licence, composer, timeout)))
    results = run_tasks(tasks, process_midi_file, codec, out, workers, "MIDI files", progress, use_cache)
    all_results = [r for rel in sorted(results) for r in results[rel]]
    info = {"source": "midi folder", "source_dir": str(src.resolve())}
    return finish_build(out, codec, all_results, t0, val_fraction, test_fraction, info, {}, progress,
                        fixed_tokenizer=fixed_tokenizer, commercial_ok=commercial_ok,
                        allow_unknown_licence=allow_unknown_licence)
