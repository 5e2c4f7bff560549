"""The corpus build's worker pool: each source file read and encoded in a worker process, the results cached per file."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import pickle
import re
import signal
import sys
from pathlib import Path

from cadenza.errors import DataError
from cadenza.io import write_bytes_atomic
from cadenza.data.music.collections import COLLECTIONS
from cadenza.data.music.music21 import (ParseTimeout, alarm, cancel_alarm, clean_reason, one_line, read_score_text,
                                        split_abc, m21_to_score)
from cadenza.data.music.splits import melody_signature

CONVERTER_VERSION = 3  # bump when the conversion changes: invalidates the per-file caches (2: repeats expanded,
#                        3: a section's end repeat without a start repeats that section, implausible expansions kept as written)
ABC_CONVERTER_VERSION = 3   # the parse cache of ABC files (where the section rule applies)
OTHER_CONVERTER_VERSION = 2  # ... and of other files: their parses did not change
MAX_PLAYED_RATIO = 2.5      # an expansion to more than this many times the written notes is a misread repeat


def converter_version(path) -> int:
    """The parse cache's version for one source file."""
    return ABC_CONVERTER_VERSION if str(path).lower().endswith(".abc") else OTHER_CONVERTER_VERSION


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


def _piece(codec, score, base: dict, style: str, tempo_source: str, written=None):
    """Encode one score; returns (record, ids or None).

    ``written`` is the score as notated (repeats not expanded) where expanding them changed
    it: the split's melody signatures come from it, so a tune groups with its other
    versions whether or not they notate their repeats, and the record counts what the
    expansion added (``written_notes``, ``written_tokens``)."""
    rec = dict(base)
    n = score.note_num()
    if n == 0:
        rec.update(status="skipped", reason="no notes")
        return rec, None
    feats = codec.describe(score)
    ids, where, raw = codec.encode_parts(score, style=style, features=feats)
    cond, _ = codec.parse_prefix(ids)
    notated = score if written is None else written
    if written is not None:
        rec.update(written_notes=int(written.note_num()),
                   written_tokens=int(len(codec.encode_parts(written, style=style)[0])))
    rec.update(status="ok", notes=int(n), melody=melody_signature(notated), melody16=melody_signature(notated, 16),
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
        header, tunes = split_abc(read_score_text(path))
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
            rec["title"] = one_line(t.group(1)) if t else ""
        seen.add(rec["id"])
        try:
            alarm(timeout)
            if tune is not None:
                m21 = converter.parse(header + tune, format="abc")
            else:
                m21 = converter.parse(str(path), forceSource=True)
            if hasattr(m21, "scores") and not hasattr(m21, "parts"):  # an Opus inside one file
                m21 = m21.scores[0]
            md = getattr(m21, "metadata", None)
            if md is not None:
                if md.composer:
                    rec["composer"] = one_line(md.composer)
                if not rec["title"]:
                    rec["title"] = one_line(md.title or md.movementName or "")
            score, tempo_source = m21_to_score(m21, coll.tempo)
            played, rec["repeats"] = _as_played(m21, coll.tempo, score)
            rec["tempo_source"] = tempo_source
            written = None
            if played is not None:
                written, score = score, played
            out.append((rec, pickle.dumps((score, written), protocol=pickle.HIGHEST_PROTOCOL)))
        except Exception as exc:  # a bad piece is skipped and listed, never fatal
            out.append((dict(rec, status="skipped", reason=clean_reason(exc)), None))
        except ParseTimeout as exc:
            out.append((dict(rec, status="skipped", reason=clean_reason(exc)), None))
        finally:
            cancel_alarm()
    return out


def _section_starts(m21) -> int:
    """Add the start repeat a section leaves implicit: folk notation writes ``A :| B :|``, where
    the second end repeat repeats B (it follows the previous end repeat and any second-ending
    bars after it), but music21 repeats an end without a start from the top (A A A B A B).
    Returns how many starts were added."""
    from music21 import bar, spanner, stream

    added = 0
    for part in (m21.parts if hasattr(m21, "parts") and len(m21.parts) else [m21]):
        measures = list(part.getElementsByClass(stream.Measure))
        in_bracket = {id(m) for b in part.spannerBundle.getByClass(spanner.RepeatBracket)
                      for m in b.getSpannedElements()}

        def is_end(m):
            return isinstance(m.rightBarline, bar.Repeat) and m.rightBarline.direction == "end"

        def is_start(m):
            return isinstance(m.leftBarline, bar.Repeat) and m.leftBarline.direction == "start"

        for i, m in enumerate(measures):
            if not is_end(m):
                continue
            k = i + 1
            while k < len(measures) and id(measures[k]) in in_bracket and not is_start(measures[k]):
                k += 1
            if k >= len(measures) or is_start(measures[k]):
                continue
            later = next((j for j in range(k, len(measures)) if is_end(measures[j]) or is_start(measures[j])), None)
            if later is not None and is_end(measures[later]) and not is_start(measures[later]):
                measures[k].leftBarline = bar.Repeat(direction="start")
                added += 1
    return added


def _as_played(m21, tempo: float, written):
    """The score as played: repeats (``|: :|``, first and second endings, D.C./D.S.) expanded
    with music21's ``expandRepeats``, a section's implicit start added first (``_section_starts``).
    Returns (symusic score or None when nothing changed, what happened: "expanded", "none" or
    "failed: reason" where music21 could not expand or the expansion is implausible)."""
    try:
        _section_starts(m21)
        expanded = m21.expandRepeats()
        played, _ = m21_to_score(expanded, tempo)
    except Exception as exc:  # a malformed repeat structure: keep the piece as written
        return None, f"failed: {clean_reason(exc)}"[:120]
    if played.note_num() <= written.note_num():
        return None, "none"
    if played.note_num() > MAX_PLAYED_RATIO * written.note_num():
        return None, f"failed: implausible expansion ({played.note_num() / written.note_num():.1f}x the notes)"
    return played, "expanded"


def process_music21_file(job):
    """Worker: every piece of one corpus file -> (task id, [(record, ids or None), ...]).

    The music21 parse (the slow part) is cached on its own, so a changed tokenizer or
    feature formula re-tokenizes from the cached scores without parsing again."""
    task_id, (coll_name, path, rel, max_pieces, timeout, convert_cache, as_written) = job
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
            score, written = pickle.loads(blob)
            if written is not None and score.note_num() > MAX_PLAYED_RATIO * written.note_num():
                rec = dict(rec, repeats=f"failed: implausible expansion "
                                        f"({score.note_num() / written.note_num():.1f}x the notes)")
                score, written = written, None
            if as_written and written is not None:
                score, written, rec = written, None, dict(rec, repeats="kept as written (--as-written)")
            out.append(_piece(_CODEC, score, rec, style, rec.get("tempo_source", ""), written))
        except Exception as exc:
            out.append((dict(rec, status="skipped", reason=clean_reason(exc)), None))
    return task_id, out


def process_midi_file(job):
    """Worker: one user MIDI file -> (task id, [(record, ids or None)])."""
    task_id, (path, rel, collection, style, licence, composer, timeout) = job
    from cadenza.codecs.music import load_midi

    rec = {"id": rel, "source": rel, "number": "", "collection": collection, "composer": composer,
           "title": Path(rel).stem, "licence": licence, "style": style}
    try:
        alarm(timeout)
        score = load_midi(path)
        tempo_source = "marked" if len(score.tempos) else "default"
        result = _piece(_CODEC, score, rec, style, tempo_source)
    except DataError as exc:  # the file's own problem, already one sentence
        result = (dict(rec, status="skipped", reason=str(exc)), None)
    except Exception as exc:
        result = (dict(rec, status="skipped", reason=clean_reason(exc)), None)
    except ParseTimeout as exc:
        result = (dict(rec, status="skipped", reason=clean_reason(exc)), None)
    finally:
        cancel_alarm()
    return task_id, [result]


# --------------------------------------------------------------------------- the pool and its cache
def _cache_key(codec, task_id: str, path: Path, extra: str = "") -> str:
    """Key of a file's token cache: the file, the tokenizer (minus the mood level edges,
    applied at the end) and the feature formulas."""
    from cadenza.codecs.music import FEATURES_VERSION

    st = path.stat()
    cfg = {k: v for k, v in codec.config.to_dict().items() if k not in ("valence_edges", "energy_edges")}
    cfg_hash = hashlib.sha1((json.dumps(cfg, sort_keys=True) + codec.vocab_hash()).encode()).hexdigest()
    raw = f"{CONVERTER_VERSION}|{FEATURES_VERSION}|{cfg_hash}|{task_id}|{st.st_size}|{int(st.st_mtime)}|{extra}"
    return hashlib.sha1(raw.encode()).hexdigest()


def run_tasks(tasks, func, codec, out_dir: Path, workers: int, desc: str, progress: bool, use_cache: bool):
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
