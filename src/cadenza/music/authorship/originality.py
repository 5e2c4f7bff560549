"""Originality against the training corpus: the longest run of notes a piece shares with it.

A piece is read as its notes in stream order (the codec's order: by onset, then shorter and
lower first; drums left out), and each note after the first as a symbol:

- *intervals*: the pitch interval from the note before (so a transposed copy matches);
- *intervals + rhythm*: the interval, the time since the note before and the note's
  duration (in the codec's ticks, so a copy at another tempo matches too).

A run of k consecutive shared notes is k - 1 consecutive equal symbols. The index holds,
for each alphabet, every training piece's symbols in one array (a unique separator before
each piece, so no run crosses pieces) and its suffix array (numpy prefix doubling,
O(n log n)); a check finds, for every note of the piece, the longest run starting there
that occurs in the corpus (binary search in the suffix array, a few dozen comparisons a
note), and where. The *near-copy* run follows the best exact matches along their alignment
and allows one note in ten to differ (a changed note breaks the exact run in two, not the
near run). The originality score is the share of the piece's notes outside every exact
run (intervals) of at least ``SCORE_RUN`` notes shared with a training piece.

The index is built once per corpus (its content hash: meta, tokenizer and train split)
into the user's cache folder (``$CADENZA_CACHE`` or ``$XDG_CACHE_HOME/cadenza`` or
``~/.cache/cadenza``), in seconds for the music21 corpus: from the corpus folder, or where
that is not on the disk from the notes file the model ships (``cadenza.music.authorship.corpus_notes``;
the same notes, the same key, the same index).

``CopyGuard`` uses the same index while sampling (``--max-copy N``, 16 by default where an
index is available): a pitch that would make the last N + 1 notes (in the order they are
generated) a run of a training piece (intervals) is not allowed, so the output never repeats
more than N consecutive notes of a training piece in that order.

The parts: ``cadenza.music.authorship.note_symbols`` (tokens -> notes -> symbols),
``cadenza.music.authorship.corpus_index`` (the suffix arrays, the index's build and cache),
``cadenza.music.authorship.copy_guard`` (``CopyGuard``); this module finds the corpus a model was trained
on and checks a piece against it. Their public names are importable from here too.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cadenza.errors import CadenzaError, ConfigError, DataError
from cadenza.music.authorship.copy_guard import DEFAULT_MAX_COPY, CopyGuard, CopyLimitError
from cadenza.music.authorship.corpus_index import (Index, build_index, index_for, index_from_notes, load_index,
                                                  save_index, suffix_array)
from cadenza.music.authorship.corpus_key import INDEX_VERSION, CorpusIndexError, cache_root, corpus_hash, manifest_sha256
from cadenza.music.authorship.note_symbols import TokenTables, notes_of_tokens, symbols

__all__ = [   # the check's own names and, for its callers, those of the index and the guard
    "DEFAULT_MAX_COPY", "FLAG_RUN", "INDEX_VERSION", "NEAR_TOLERANCE", "SCORE_RUN",
    "CopyGuard", "CopyLimitError", "Index", "CorpusIndexError", "Originality", "Run", "guard_for", "guard_settings", "model_index",
    "build_index", "cache_root", "check_notes", "check_score", "check_tokens", "corpus_hash", "default_corpus",
    "index_for", "index_from_notes", "load_index", "longest_copy", "manifest_sha256", "model_corpus",
    "notes_of_tokens", "query_notes", "save_index", "suffix_array", "symbols", "training_data_of",
]

# Calibrated on 60 held-out pieces of the music21 corpus (folk tunes share many phrases):
# their longest exact run (intervals) had median 12 and 90th percentile 18 notes, their
# near-copy run median 14, 90th percentile 21 (3 of 60 reached 32: variants of training tunes).
SCORE_RUN = 16          # runs of at least this many notes count against the originality score
FLAG_RUN = 32           # a near-copy run this long flags the piece as copying a training piece
NEAR_TOLERANCE = 10     # near-copy: at most one differing note in this many
_CORPUS_RE = re.compile(r"cadenza data music21 --out (\S+)")


# --------------------------------------------------------------------------- which corpus
def model_corpus(model_path) -> dict | None:
    """What a model folder says about its training corpus: ``corpus.json`` ({"data_dir",
    "build", "manifest_sha256", "content_sha256"}), else the `cadenza data music21 --out DIR`
    line of its model card. Relative data_dir paths are from the repository root."""
    if not model_path:
        return None
    m = Path(model_path)
    cj = m / "corpus.json"
    if cj.is_file():
        try:
            d = json.loads(cj.read_text(encoding="utf-8"))
            if isinstance(d, dict):
                return d
        except (ValueError, OSError):
            return None
    card = m / "MODEL_CARD.md"
    if card.is_file():
        for found in _CORPUS_RE.finditer(card.read_text(encoding="utf-8", errors="replace")):
            if found.group(1) != "DATA_DIR":
                return {"data_dir": found.group(1), "build": found.group(0)}
    return None


def corpus_folder(data_dir: str) -> Path:
    """A corpus folder as a model's corpus.json names it: absolute, or relative to the repository."""
    p = Path(data_dir)
    if p.is_absolute():
        return p
    from cadenza.music.registry import models_root

    return models_root().parent / p


def training_data_of(model_path) -> dict | None:
    """The training-data part of a provenance record: the corpus's manifest and content
    hashes, when the model names a corpus that is on this disk."""
    info = model_corpus(model_path)
    if not info:
        return None
    out = {k: info.get(k) for k in ("data_dir", "build", "manifest_sha256", "content_sha256") if info.get(k)}
    d = corpus_folder(info["data_dir"]) if info.get("data_dir") else None
    if d is not None and (d / "meta.json").is_file():
        out.setdefault("manifest_sha256", manifest_sha256(d))
    return out or None


def default_corpus(model_path=None, required: bool = True) -> Path | None:
    """What to check the default (or given) model's output against: its training corpus
    folder if it is on this disk (and, where the model ships a notes file, holds the same
    corpus), else the notes file the model ships (``corpus.json``'s ``originality_notes``,
    checked against its sha256). Where there is
    neither: CorpusIndexError saying how to get one, or None if not ``required``."""
    from cadenza.music.authorship.corpus_notes import shipped_notes
    from cadenza.music.registry import default_model_dir

    try:
        m = Path(model_path) if model_path else default_model_dir()
    except CadenzaError:
        m = None
    info = model_corpus(m) if m else None
    if not info or not info.get("data_dir"):
        if not required:
            return None
        raise CorpusIndexError("no corpus to check against: the model names none; pass --corpus DATA_DIR "
                          "(a folder built with `cadenza data music21 --out DATA_DIR`)")
    d = corpus_folder(info["data_dir"])
    shipped = shipped_notes(m, info)
    if (d / "meta.json").is_file():
        key = ((info.get("originality_notes") or {}).get("index_key")) if shipped is not None else None
        if not key or corpus_hash(d) == key:
            return d
        return shipped      # the folder holds another corpus now (rebuilt): the model's own notes
    if shipped is not None:
        return shipped
    if not required:
        return None
    raise CorpusIndexError(f"the model's training corpus {d} is not on this disk and the model ships no notes file; "
                      f"build it with `{info.get('build') or 'cadenza data music21 --out ' + str(info['data_dir'])}` "
                      f"(about 12 minutes on 2 cores the first time) or pass --corpus DATA_DIR")


# --------------------------------------------------------------------------- the check
@dataclass
class Run:
    """A run of consecutive notes shared with a training piece."""

    notes: int                 # consecutive notes in the run
    start_note: int = 0        # first note of the run in the checked piece (0-based)
    bar: int = 0               # its bar in the checked piece (1-based)
    piece: str = ""            # the training piece (manifest id)
    title: str = ""
    piece_bar: int = 0         # the bar of the training piece where the run starts
    differing: int = 0         # notes that differ (near-copy runs only)


@dataclass
class Originality:
    notes: int
    exact_intervals: Run       # longest run of equal pitch intervals (transposition invariant)
    exact_rhythm: Run          # ... with equal rhythm (time since the last note, duration) too
    near: Run                  # near-copy: same alignment, at most one note in ten differs
    score: float               # share of notes outside every exact run of >= SCORE_RUN notes
    flagged: bool              # near.notes >= flag_run
    flag_run: int
    score_run: int
    corpus: str
    index_notes: int
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def query_notes(idx: Index, score) -> dict:
    """The notes of a symusic score as the index reads them (through the corpus's codec)."""
    ids = idx.codec.encode(score, style="other")
    return notes_of_tokens(np.asarray(ids, dtype=np.int64), TokenTables(idx.codec))


def _run(idx: Index, qnotes: dict, j: int, length: int, g: int, differing: int = 0) -> Run:
    """A run of ``length`` symbols at query position j and corpus position g: notes j-1 ..."""
    if length <= 0 or g < 0:
        return Run(notes=1 if qnotes["pitch"].size else 0)
    qs, cs = max(0, j - 1), max(0, g - 1)
    p = int(idx.piece[cs])
    info = idx.pieces[p] if p < len(idx.pieces) else {"id": str(p), "title": ""}
    return Run(notes=length + 1, start_note=qs, bar=int(qnotes["bar"][qs]), piece=info.get("id", ""),
               title=info.get("title", ""), piece_bar=int(idx.bar[cs]), differing=differing)


def _near(idx: Index, q_pitch: np.ndarray, ms: np.ndarray, loc: np.ndarray, top: int = 24):
    """The longest near-copy run over the alignments of the best exact matches:
    (notes, query start, corpus start, differing notes)."""
    best = (0, 0, -1, 0)
    order = np.argsort(-ms, kind="stable")[:top * 4]
    seen = set()
    for j in order:
        if ms[j] < 2 or len(seen) >= top:
            break
        diag = int(loc[j]) - int(j)
        if diag in seen:
            continue
        seen.add(diag)
        p = int(idx.piece[int(loc[j])])
        lo_c = int(np.searchsorted(idx.piece, p, "left"))
        hi_c = int(np.searchsorted(idx.piece, p, "right"))
        a = max(0, lo_c - diag)
        b = min(q_pitch.size, hi_c - diag)
        if b - a < 2:
            continue
        shift = int(idx.pitch[int(loc[j])]) - int(q_pitch[j])
        mis = (idx.pitch[a + diag:b + diag].astype(np.int64) - q_pitch[a:b] != shift).astype(np.int64)
        # the longest window with mismatches * NEAR_TOLERANCE <= length: prefix sums of
        # (NEAR_TOLERANCE * mismatch - 1), longest [s, e) with P[e] <= P[s]
        P = np.concatenate([[0], np.cumsum(NEAR_TOLERANCE * mis - 1)])
        run_max = np.maximum.accumulate(P)
        cand = np.flatnonzero(np.concatenate([[True], P[1:] > run_max[:-1]]))
        vals = P[cand]
        k = np.searchsorted(vals, P, "left")
        ok = k < cand.size
        lengths = np.where(ok, np.arange(P.size) - cand[np.minimum(k, cand.size - 1)], 0)
        e = int(np.argmax(lengths))
        L = int(lengths[e])
        if L <= 0:
            continue
        s = e - L
        w = mis[s:e]
        nz = np.flatnonzero(w == 0)
        if nz.size == 0:
            continue
        s, e = s + int(nz[0]), s + int(nz[-1]) + 1      # trim differing notes at the ends
        L = e - s
        if L > best[0]:
            best = (L, a + s, a + s + diag, int(mis[s:e].sum()))
    return best


def check_score(idx: Index, score, flag_run: int = FLAG_RUN, score_run: int = SCORE_RUN) -> Originality:
    """How much of a piece (a symusic score) is shared with the index's training pieces."""
    t0 = time.perf_counter()
    return check_notes(idx, query_notes(idx, score), flag_run=flag_run, score_run=score_run, t0=t0)


def check_tokens(idx: Index, ids, flag_run: int = FLAG_RUN, score_run: int = SCORE_RUN) -> Originality:
    """``check_score`` of a token stream of the index's codec (notes in the stream's order)."""
    return check_notes(idx, notes_of_tokens(np.asarray(ids, dtype=np.int64), TokenTables(idx.codec)),
                       flag_run=flag_run, score_run=score_run)


def check_notes(idx: Index, qn: dict, flag_run: int = FLAG_RUN, score_run: int = SCORE_RUN,
                t0: float | None = None) -> Originality:
    t0 = time.perf_counter() if t0 is None else t0
    if isinstance(flag_run, bool) or not isinstance(flag_run, int) or flag_run < 2:
        raise ConfigError(f"the flag run must be a whole number of at least 2 notes, not {flag_run!r}")
    n = int(qn["pitch"].size)
    if n == 0:
        lo, hi = idx.codec.config.pitch_range
        raise DataError(f"the piece has no pitched notes the corpus's codec can read (pitches {lo} to {hi - 1})")
    rp, rr = symbols(qn, first=lambda pc: np.full(pc.size, -1, dtype=np.int64))
    qp, qr = idx.encode_query(rp, False), idx.encode_query(rr, True)
    ms_p, loc_p = idx.searcher(False).matching(qp)
    ms_r, loc_r = idx.searcher(True).matching(qr)
    jp, jr = int(np.argmax(ms_p)), int(np.argmax(ms_r))
    exact_p = _run(idx, qn, jp, int(ms_p[jp]), int(loc_p[jp]))
    exact_r = _run(idx, qn, jr, int(ms_r[jr]), int(loc_r[jr]))
    L, qs, cs, diff = _near(idx, qn["pitch"].astype(np.int64), ms_p, loc_p)
    if L > exact_p.notes:
        info = idx.pieces[int(idx.piece[cs])]
        near = Run(notes=L, start_note=qs, bar=int(qn["bar"][qs]), piece=info.get("id", ""),
                   title=info.get("title", ""), piece_bar=int(idx.bar[cs]), differing=diff)
    else:
        near = Run(**asdict(exact_p))
    covered = np.zeros(n + 1, dtype=np.int64)
    for j in np.flatnonzero(ms_p >= score_run - 1):
        covered[j - 1] += 1
        covered[j + ms_p[j]] -= 1
    share = float(np.count_nonzero(np.cumsum(covered)[:n])) / n
    return Originality(notes=n, exact_intervals=exact_p, exact_rhythm=exact_r, near=near,
                       score=round(1.0 - share, 4), flagged=near.notes >= flag_run, flag_run=flag_run,
                       score_run=score_run, corpus=idx.corpus, index_notes=idx.notes,
                       seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------- the guard's policy
def guard_for(model_path, max_copy: int | None = None, corpus=None, progress: bool = False,
              strict: bool = True, index: Index | None = None) -> CopyGuard | None:
    """The copy guard a generation runs under (``--max-copy``; the CLI and the server both ask
    here). ``max_copy`` None: ``DEFAULT_MAX_COPY`` where there is a corpus index to guard with
    (``index`` or ``corpus``, else the model's training corpus or the notes file it ships),
    else no guard without a word (a model that names no corpus). 0: no guard. ``strict``: a
    copy the grammar forces (nothing can be taken away) raises ``CopyLimitError``. ``index``:
    the model's index, already loaded (a server finds it once, not on every request)."""
    if max_copy is None:
        if index is None and corpus is None:
            corpus = default_corpus(model_path, required=False)
            if corpus is None:
                return None
        max_copy = DEFAULT_MAX_COPY
    if isinstance(max_copy, bool) or not isinstance(max_copy, int) or max_copy < 0:
        raise ConfigError(f"--max-copy must be 0 (off) or a whole number of notes, not {max_copy}")
    if max_copy == 0:
        return None
    if index is None:
        index = index_for(corpus if corpus is not None else default_corpus(model_path), progress=progress)
    return CopyGuard(index, max_copy, strict=strict)


def model_index(model_path) -> Index | None:
    """The index of the corpus ``guard_for`` would guard a model with by default, or None."""
    corpus = default_corpus(model_path, required=False)
    return index_for(corpus) if corpus is not None else None


def guard_settings(guard: CopyGuard | None, max_copy: int | None) -> dict:
    """What a piece's provenance settings say about its guard (nothing when none was asked for)."""
    if guard is not None:
        return {"max_copy": guard.max_copy,
                "copy_guard": {"corpus": guard.idx.corpus, "index_key": guard.idx.key[:24],
                               "pitches_refused": guard.refused, "unavoidable": guard.unavoidable}}
    return {"max_copy": 0} if max_copy == 0 else {}


def longest_copy(idx: Index, score) -> int:
    """The longest run of consecutive notes (intervals) a score shares with the index."""
    return check_score(idx, score).exact_intervals.notes
