"""Building a music corpus folder: a worker pool over source files, a per-file cache, the
splits, the manifest and the build log."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing as mp
import pickle
import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cadenza.errors import ConfigError, DataError
from cadenza.io import write_bytes_atomic, write_text_atomic
from cadenza.data.music.collections import COLLECTIONS, use_of
from cadenza.data.music.music21 import (_Timeout, _alarm, _cancel_alarm, _clean_reason, _one_line, _read_text,
                                        _split_abc, m21_to_score, music21_sources)
from cadenza.data.music.splits import melody_signature, split_groups, split_of

CONVERTER_VERSION = 1  # bump when the conversion changes: invalidates the per-file cache
MANIFEST_FIELDS = ["id", "source", "number", "collection", "composer", "title", "licence", "use", "style",
                   "split", "status", "reason", "notes", "tokens", "key", "tempo", "tempo_source",
                   "time_signature", "valence", "energy", "seconds",
                   "split_key"]


# --------------------------------------------------------------------------- workers
_CODEC = None


def _init_worker(codec_dict):
    global _CODEC
    import warnings

    warnings.filterwarnings("ignore")
    from cadenza.codecs.music import MusicCodec

    _CODEC = MusicCodec.from_dict(codec_dict)
    if hasattr(signal, "SIGINT"):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C


def _piece(codec, score, base: dict, style: str, tempo_source: str):
    """Encode one score; returns (record, ids or None)."""
    rec = dict(base)
    n = score.note_num()
    if n == 0:
        rec.update(status="skipped", reason="no notes")
        return rec, None
    feats = codec.describe(score)
    ids, where, raw = codec.encode_parts(score, style=style, features=feats)
    cond, _ = codec.parse_prefix(ids)
    rec.update(status="ok", notes=int(n), melody=melody_signature(score), melody16=melody_signature(score, 16),
               _controls=where, _raw=raw, tokens=int(len(ids)), key=cond.get("key", ""),
               tempo=round(feats.tempo, 1), tempo_source=tempo_source,
               time_signature="/".join(map(str, cond.get("time_signature", ("", "")))),
               valence=round(feats.valence, 3), energy=round(feats.energy, 3), seconds=round(feats.seconds, 1))
    return rec, ids


def _convert_music21_file(coll_name: str, path: Path, rel: str, max_pieces, timeout: int) -> list:
    """Parse one corpus file with music21: [(record, pickled symusic score or None), ...]."""
    from music21 import converter

    coll = COLLECTIONS[coll_name]
    out = []
    base = {"source": rel, "collection": coll_name, "composer": coll.composer, "licence": coll.licence,
            "style": coll.style}
    header = ""
    if path.suffix.lower() == ".abc":
        header, tunes = _split_abc(_read_text(path))
        units = [(i, t) for i, t in enumerate(tunes)]
    else:
        units = [(0, None)]
    seen = set()
    for idx, tune in units:
        if max_pieces is not None and len(out) >= max_pieces:
            break
        rec = dict(base, id=rel, number="", title="")
        if tune is not None:
            m = re.match(r"X:\s*(\S*)", tune)
            num = (m.group(1) if m else "") or str(idx + 1)
            pid = f"{rel}#{num}"
            if pid in seen:
                pid = f"{rel}#{num}.{idx + 1}"
            rec.update(id=pid, number=num)
            t = re.search(r"(?m)^T:\s*(.+)$", tune)
            rec["title"] = _one_line(t.group(1)) if t else ""
        seen.add(rec["id"])
        try:
            _alarm(timeout)
            if tune is not None:
                m21 = converter.parse(header + tune, format="abc")
            else:
                m21 = converter.parse(str(path), forceSource=True)
            if hasattr(m21, "scores") and not hasattr(m21, "parts"):  # an Opus inside one file
                m21 = m21.scores[0]
            md = getattr(m21, "metadata", None)
            if md is not None:
                if md.composer:
                    rec["composer"] = _one_line(md.composer)
                if not rec["title"]:
                    rec["title"] = _one_line(md.title or md.movementName or "")
            score, tempo_source = m21_to_score(m21, coll.tempo)
            rec["tempo_source"] = tempo_source
            out.append((rec, pickle.dumps(score, protocol=pickle.HIGHEST_PROTOCOL)))
        except Exception as exc:  # a bad piece is skipped and listed, never fatal
            out.append((dict(rec, status="skipped", reason=_clean_reason(exc)), None))
        except _Timeout as exc:
            out.append((dict(rec, status="skipped", reason=_clean_reason(exc)), None))
        finally:
            _cancel_alarm()
    return out


def _process_music21_file(job):
    """Worker: every piece of one corpus file -> (task id, [(record, ids or None), ...]).

    The music21 parse (the slow part) is cached on its own, so a changed tokenizer or
    feature formula re-tokenizes from the cached scores without parsing again."""
    task_id, (coll_name, path, rel, max_pieces, timeout, convert_cache) = job
    converted = None
    if convert_cache and Path(convert_cache).exists():
        try:
            converted = pickle.loads(Path(convert_cache).read_bytes())
        except Exception:
            converted = None
    if converted is None:
        converted = _convert_music21_file(coll_name, Path(path), rel, max_pieces, timeout)
        if convert_cache:
            Path(convert_cache).parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(convert_cache, pickle.dumps(converted, protocol=pickle.HIGHEST_PROTOCOL))
    style = COLLECTIONS[coll_name].style
    out = []
    for rec, blob in converted:
        if blob is None:
            out.append((rec, None))
            continue
        try:
            out.append(_piece(_CODEC, pickle.loads(blob), rec, style, rec.get("tempo_source", "")))
        except Exception as exc:
            out.append((dict(rec, status="skipped", reason=_clean_reason(exc)), None))
    return task_id, out


def _process_midi_file(job):
    """Worker: one user MIDI file -> (task id, [(record, ids or None)])."""
    task_id, (path, rel, collection, style, licence, composer, timeout) = job
    from cadenza.codecs.music import load_midi

    rec = {"id": rel, "source": rel, "number": "", "collection": collection, "composer": composer,
           "title": Path(rel).stem, "licence": licence, "style": style}
    try:
        _alarm(timeout)
        score = load_midi(path)
        tempo_source = "marked" if len(score.tempos) else "default"
        result = _piece(_CODEC, score, rec, style, tempo_source)
    except DataError as exc:  # the file's own problem, already one sentence
        result = (dict(rec, status="skipped", reason=str(exc)), None)
    except Exception as exc:
        result = (dict(rec, status="skipped", reason=_clean_reason(exc)), None)
    except _Timeout as exc:
        result = (dict(rec, status="skipped", reason=_clean_reason(exc)), None)
    finally:
        _cancel_alarm()
    return task_id, [result]


# --------------------------------------------------------------------------- the build
@dataclass
class BuildSummary:
    out_dir: Path
    pieces_ok: int
    pieces_skipped: int
    pieces_duplicate: int
    tokens: dict
    pieces_per_split: dict
    seconds: float
    vocab_size: int
    tokens_per_note: float = 0.0

    def lines(self) -> list[str]:
        tok = ", ".join(f"{k} {v:,}" for k, v in self.tokens.items())
        per = ", ".join(f"{k} {v}" for k, v in self.pieces_per_split.items())
        return [f"wrote {self.out_dir}: {self.pieces_ok} pieces ({per}), {self.pieces_skipped} skipped, "
                f"{self.pieces_duplicate} duplicates dropped",
                f"tokens: {tok}; {self.tokens_per_note:.2f} tokens per note; vocabulary {self.vocab_size}; "
                f"{self.seconds:.1f} s"]


def _cache_key(codec, task_id: str, path: Path, extra: str = "") -> str:
    """Key of a file's token cache: the file, the tokenizer (minus the mood level edges,
    applied at the end) and the feature formulas."""
    from cadenza.codecs.music import FEATURES_VERSION

    st = path.stat()
    cfg = {k: v for k, v in codec.config.to_dict().items() if k not in ("valence_edges", "energy_edges")}
    cfg_hash = hashlib.sha1((json.dumps(cfg, sort_keys=True) + codec.vocab_hash()).encode()).hexdigest()
    raw = f"{CONVERTER_VERSION}|{FEATURES_VERSION}|{cfg_hash}|{task_id}|{st.st_size}|{int(st.st_mtime)}|{extra}"
    return hashlib.sha1(raw.encode()).hexdigest()


def _run_tasks(tasks, func, codec, out_dir: Path, workers: int, desc: str, progress: bool, use_cache: bool):
    """Run tasks (each with its own cache entry) in a process pool; returns {task_id: results}."""
    from tqdm import tqdm

    cache_dir = out_dir / ".cache"
    results: dict[str, list] = {}
    todo = []
    for task_id, path, extra, task in tasks:
        key = _cache_key(codec, task_id, Path(path), extra)
        cached = cache_dir / f"{key}.pkl"
        if use_cache and cached.exists():
            try:
                results[task_id] = pickle.loads(cached.read_bytes())
                continue
            except Exception:
                pass
        todo.append((task_id, key, Path(path).stat().st_size, task))
    todo.sort(key=lambda t: -t[2])  # big files first: better load balance
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc=desc, unit="file",
               disable=not progress, dynamic_ncols=True, file=sys.stderr)
    counts = {"ok": 0, "skipped": 0}

    def done(task_id, key, res):
        results[task_id] = res
        if use_cache:
            cache_dir.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(cache_dir / f"{key}.pkl", pickle.dumps(res, protocol=pickle.HIGHEST_PROTOCOL))
        for rec, _ in res:
            counts["ok" if rec["status"] == "ok" else "skipped"] += 1
        bar.set_postfix(pieces=counts["ok"], skipped=counts["skipped"], refresh=False)
        bar.update(1)

    codec_dict = codec.to_dict()
    keys = {t[0]: t[1] for t in todo}
    jobs = [(t[0], t[3]) for t in todo]
    try:
        if workers <= 1 or len(jobs) <= 1:
            _init_worker(codec_dict)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for job in jobs:
                task_id, res = func(job)
                done(task_id, keys[task_id], res)
        else:
            _run_pool(jobs, func, codec_dict, workers, lambda tid, res: done(tid, keys[tid], res))
    finally:
        bar.close()
    return results


def _run_pool(jobs, func, codec_dict, workers: int, done, retries: int = 2):
    """Run jobs in worker processes; a crashed worker (say, a segfault in a C library on a
    bad file) costs only the jobs in flight: the rest are retried in a fresh pool, and what
    still fails is reported as skipped."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    # fork where the platform has it: children inherit the imported libraries and do not
    # re-run the caller's __main__ module (spawn would, in scripts without a main guard).
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    pending = dict(jobs)
    for attempt in range(retries + 1):
        if not pending:
            return
        try:
            with ProcessPoolExecutor(min(workers, len(pending)), mp_context=mp.get_context(method),
                                     initializer=_init_worker, initargs=(codec_dict,)) as pool:
                futures = [pool.submit(func, (tid, payload)) for tid, payload in pending.items()]
                for fut in as_completed(futures):
                    tid, res = fut.result()
                    pending.pop(tid, None)
                    done(tid, res)
        except BrokenProcessPool:
            continue
    for tid, payload in list(pending.items()):
        done(tid, [({"id": tid, "source": tid, "collection": "", "composer": "", "licence": "", "style": "",
                     "status": "skipped", "reason": "a worker process crashed on this file"}, None)])


def _finish(out_dir: Path, codec, all_results: list, t0: float, val_fraction: float, test_fraction: float,
            source_info: dict, split_by: dict, progress: bool, fixed_tokenizer: bool = False,
            commercial_ok: bool = False, allow_unknown_licence: bool = False) -> BuildSummary:
    from cadenza.data.format import write_dataset

    from cadenza.codecs.music import level_of
    from cadenza.codecs.music import quantile_edges

    all_results.sort(key=lambda r: r[0]["id"])
    kept = []
    for rec, ids in all_results:   # --commercial-ok: leave out what the licences do not allow
        rec["use"] = use_of(rec.get("licence", ""))
        if ids is not None and commercial_ok and (rec["use"] == "non-commercial" or (
                rec["use"] == "unknown" and not allow_unknown_licence)):
            rec = dict(rec, status="excluded", reason=f"licence: {rec['use']} (--commercial-ok)")
            ids = None
        kept.append((rec, ids))
    all_results = kept
    splits = {"train": [], "val": [], "test": []}
    seen_bodies: dict[str, str] = {}
    records = []
    groups = split_groups([r for r, _ in all_results], split_by)
    for rec, _ in all_results:
        rec["split_key"] = groups[rec["id"]]
        rec["split"] = split_of(rec["split_key"], val_fraction, test_fraction)
    # Control levels: the quintiles of the training split's raw segment values, stored in
    # the tokenizer (the per-file cache keeps raw values, so this is cheap to redo).
    train_raw = [v for rec, ids in all_results if ids is not None and rec["split"] == "train" for v in rec["_raw"]]
    if train_raw and not fixed_tokenizer:
        cfg = codec.config
        cfg.valence_edges = quantile_edges([v for v, _ in train_raw], cfg.levels)
        cfg.energy_edges = quantile_edges([e for _, e in train_raw], cfg.levels)
    counts: dict[str, int] = {}
    for rec, ids in all_results:
        if ids is not None and rec["split"] == "train":
            counts[rec["style"]] = counts.get(rec["style"], 0) + 1
    if not fixed_tokenizer:
        codec.config.style_pieces = dict(sorted(counts.items()))
    notes_total = tokens_total = 0
    for rec, ids in all_results:
        rec = dict(rec)
        where, raw = rec.pop("_controls", None), rec.pop("_raw", None)
        if ids is not None:
            ids = np.array(ids, dtype=np.int32)
            for w, (v, e) in zip(where, raw):
                ids[w] = codec.mood_id(level_of(float(np.clip(v, 0, 1)), codec.config.valence_edges),
                                       level_of(float(np.clip(e, 0, 1)), codec.config.energy_edges))
            if raw:
                rec.update(valence=round(float(np.mean([v for v, _ in raw])), 3),
                           energy=round(float(np.mean([e for _, e in raw])), 3))
            body_hash = hashlib.sha1(np.asarray(ids[5:], dtype=np.int32).tobytes()).hexdigest()
            if body_hash in seen_bodies:
                rec.update(status="duplicate", reason=f"same notes as {seen_bodies[body_hash]}")
                ids = None
            else:
                seen_bodies[body_hash] = rec["id"]
                notes_total += int(rec.get("notes", 0))
                tokens_total += len(ids)
        if ids is not None:
            splits[rec["split"]].append(np.asarray(ids, dtype=np.int64))
        records.append(rec)
    arrays = {k: (np.concatenate(v) if v else np.zeros(0, dtype=np.int64)) for k, v in splits.items()}

    ok = [r for r in records if r["status"] == "ok"]
    skipped = [r for r in records if r["status"] == "skipped"]
    dups = [r for r in records if r["status"] == "duplicate"]
    per_coll: dict[str, dict] = {}
    for r in records:
        d = per_coll.setdefault(r["collection"], {"ok": 0, "skipped": 0, "duplicate": 0, "excluded": 0,
                                                  "licence": r["licence"]})
        d[r["status"]] += 1
    seconds = time.time() - t0
    pieces_per_split = {k: sum(1 for r in ok if r["split"] == k) for k in splits}

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in records:
        w.writerow({k: r.get(k, "") for k in MANIFEST_FIELDS})
    write_text_atomic(out_dir / "manifest.csv", buf.getvalue())
    codec.save(out_dir / "tokenizer.json")
    summary = BuildSummary(out_dir, len(ok), len(skipped), len(dups), {k: int(v.size) for k, v in arrays.items()},
                           pieces_per_split, seconds, codec.vocab_size,
                           round(tokens_total / max(notes_total, 1), 3))
    log = [f"{r['id']}: {r['status']}: {r['reason']}" for r in skipped + dups] + summary.lines()
    write_text_atomic(out_dir / "build.log", "\n".join(log) + "\n")
    write_dataset(out_dir, arrays, codec.vocab_size, modality="music",
                  tokenizer="tokenizer.json", manifest="manifest.csv",
                  separator={"bos": codec.bos_id, "eos": codec.eos_id, "pad": codec.pad_id},
                  prefix=["BOS", "style", "key", "tempo", "time_signature"],
                  controls={"slots": ["valence", "energy"], "segment_bars": codec.config.segment_bars,
                            "valence_edges": list(codec.config.valence_edges),
                            "energy_edges": list(codec.config.energy_edges)},
                  tokens_per_note=round(tokens_total / max(notes_total, 1), 3),
                  pieces={"ok": len(ok), "skipped": len(skipped), "duplicate": len(dups),
                          "excluded": sum(1 for r in records if r["status"] == "excluded"), **{
                      f"{k}": v for k, v in pieces_per_split.items()}},
                  collections=per_coll, split_fractions={"val": val_fraction, "test": test_fraction},
                  build_seconds=round(seconds, 1), **source_info)
    return summary


def _check_fractions(val_fraction, test_fraction):
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError("val and test fractions must be between 0 and 1 and sum to less than 1")


def build_music21(out_dir, collections=None, limit: int | None = None, workers: int = 2,
                  codec=None, val_fraction: float = 0.05, test_fraction: float = 0.05,
                  progress: bool = True, use_cache: bool = True, timeout: int = 300,
                  commercial_ok: bool = False, allow_unknown_licence: bool = False) -> BuildSummary:
    """Build a token dataset from the music21 corpus bundled with the music21 package.

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
        raw = f"{CONVERTER_VERSION}|{music21.__version__}|{rel}|{st.st_size}|{int(st.st_mtime)}|{take}"
        return str(out / ".cache" / "scores" / (hashlib.sha1(raw.encode()).hexdigest() + ".pkl"))

    tasks = [(rel, p, f"take={take}", (coll, str(p), rel, take, timeout, convert_cache(p, rel, take)))
             for coll, p, rel, take in sources]
    results = _run_tasks(tasks, _process_music21_file, codec, out, workers, "music21 corpus", progress, use_cache)
    all_results = [r for _, _, rel, _ in sources for r in results[rel]]
    info = {"source": "music21 corpus", "music21_version": str(music21.__version__),
            "limit_per_collection": limit}
    split_by = {c: COLLECTIONS[c].split_by for c in COLLECTIONS}
    info["commercial_ok"] = bool(commercial_ok)
    return _finish(out, codec, all_results, t0, val_fraction, test_fraction, info, split_by, progress,
                   commercial_ok=commercial_ok, allow_unknown_licence=allow_unknown_licence)


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
    results = _run_tasks(tasks, _process_midi_file, codec, out, workers, "MIDI files", progress, use_cache)
    all_results = [r for rel in sorted(results) for r in results[rel]]
    info = {"source": "midi folder", "source_dir": str(src.resolve())}
    return _finish(out, codec, all_results, t0, val_fraction, test_fraction, info, {}, progress,
                   fixed_tokenizer=fixed_tokenizer, commercial_ok=commercial_ok,
                   allow_unknown_licence=allow_unknown_licence)
