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
that is not on the disk from the notes file the model ships (``cadenza.music.corpus_notes``;
the same notes, the same key, the same index).

``CopyGuard`` uses the same index while sampling (``--max-copy N``, 16 by default where an
index is available): a pitch that would make the last N + 1 notes (in the order they are
generated) a run of a training piece (intervals) is not allowed, so the output never repeats
more than N consecutive notes of a training piece in that order.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cadenza.errors import CadenzaError, ConfigError, DataError

INDEX_VERSION = 1
# Calibrated on 60 held-out pieces of the music21 corpus (folk tunes share many phrases):
# their longest exact run (intervals) had median 12 and 90th percentile 18 notes, their
# near-copy run median 14, 90th percentile 21 (3 of 60 reached 32: variants of training tunes).
SCORE_RUN = 16          # runs of at least this many notes count against the originality score
FLAG_RUN = 32           # a near-copy run this long flags the piece as copying a training piece
NEAR_TOLERANCE = 10     # near-copy: at most one differing note in this many
MAX_COMPARE = 4096      # notes compared at once in the suffix array search
DEFAULT_MAX_COPY = 16
_SEP_BASE = 1 << 40
_CORPUS_RE = re.compile(r"cadenza data music21 --out (\S+)")


class IndexError_(CadenzaError):
    """No originality index or corpus could be found or read."""


class CopyLimitError(CadenzaError):
    """Generation could not avoid copying more than ``--max-copy`` notes of a training piece."""


# --------------------------------------------------------------------------- tokens -> notes
class _Tables:
    """Per-token-id lookup arrays of a codec's vocabulary (numpy, for whole corpora at once)."""

    def __init__(self, codec):
        from cadenza.music.grammar import DUR, POS, PITCH, DRUM, TS
        from cadenza.music.generate import remi_for

        r = remi_for(codec)
        V = r.vocab_size
        self.tpq, self.ppb, self.bos = r.tpq, r.ppb, r.bos
        self.kind = np.array(r.kind, dtype=np.int8)
        self.val = np.full(V, -1, dtype=np.int64)
        self.num = np.ones(V, dtype=np.int64)
        self.den = np.full(V, 4, dtype=np.int64)
        self.beats = np.zeros(V, dtype=np.float64)
        for i in range(V):
            k = r.kind[i]
            if k in (POS, PITCH, DRUM):
                self.val[i] = r.value[i]
            elif k == TS:
                self.num[i], self.den[i] = r.value[i]
            elif k == DUR:
                self.beats[i] = float(r.value[i])
        self.DUR, self.POS, self.PITCH, self.DRUM, self.TS, self.BAR = DUR, POS, PITCH, DRUM, TS, r.kind[r.bar]


def _ffill(mask: np.ndarray) -> np.ndarray:
    idx = np.where(mask, np.arange(mask.size), 0)
    return np.maximum.accumulate(idx) if mask.size else idx


def notes_of_tokens(ids, tables: _Tables) -> dict:
    """The pitched notes of one or more token streams (``BOS ... EOS`` pieces back to back),
    in stream order: {"piece", "bar" (1-based, in its piece), "onset", "duration", "pitch"}."""
    ids = np.asarray(ids, dtype=np.int64)
    t = tables
    k = t.kind[ids]
    ts_i = ids[_ffill(k == t.TS)]
    num, den = t.num[ts_i], t.den[ts_i]
    beat_ticks = t.tpq * 4 // den
    is_bar = k == t.BAR
    barno = np.cumsum(is_bar)
    bar_tok = np.flatnonzero(is_bar)
    ends = np.append(bar_tok[1:] - 1, ids.size - 1) if bar_tok.size else bar_tok
    bar_len = num[ends] * beat_ticks[ends]
    bar_start = np.concatenate([[0], np.cumsum(bar_len)[:-1]]) if bar_tok.size else np.zeros(0, np.int64)
    pos = t.val[ids[_ffill(k == t.POS)]]
    pitch_tok = ids[_ffill((k == t.PITCH) | (k == t.DRUM))]
    piece = np.cumsum(ids == t.bos) - 1
    d = np.flatnonzero((k == t.DUR) & (t.kind[pitch_tok] == t.PITCH) & (barno > 0))
    if d.size == 0:
        z = np.zeros(0, dtype=np.int64)
        return {"piece": z, "bar": z, "onset": z, "duration": z, "pitch": z}
    onset = bar_start[barno[d] - 1] + pos[d] * (beat_ticks[d] // t.ppb)
    dur = np.maximum(1, np.rint(t.beats[ids[d]] * beat_ticks[d]).astype(np.int64))
    starts = np.flatnonzero(ids == t.bos)
    first_bar = barno[starts][piece[d]] if starts.size else np.zeros(d.size, np.int64)
    return {"piece": piece[d].astype(np.int64), "bar": (barno[d] - first_bar).astype(np.int64),
            "onset": onset.astype(np.int64), "duration": dur, "pitch": t.val[pitch_tok[d]]}


def symbols(notes: dict, first=None) -> tuple[np.ndarray, np.ndarray]:
    """(intervals, intervals + rhythm) symbols, one per note; a piece's first note gets
    ``first(piece)`` (the index: a unique separator) or -1 (a query: matches nothing)."""
    on, pc = notes["onset"], notes["piece"]
    ioi = np.zeros(on.size, dtype=np.int64)
    ioi[1:] = on[1:] - on[:-1]
    return _symbols(notes["pitch"], ioi, notes["duration"], pc, first)


def _symbols(p, ioi, du, pc, first=None) -> tuple[np.ndarray, np.ndarray]:
    """``symbols`` from per-note pitch, ticks since the note before, duration and piece."""
    p, pc = np.asarray(p, dtype=np.int64), np.asarray(pc, dtype=np.int64)
    n = p.size
    new = np.ones(n, dtype=bool)
    if n > 1:
        new[1:] = pc[1:] != pc[:-1]
    iv = np.zeros(n, dtype=np.int64)
    iv[1:] = p[1:] - p[:-1]
    sp = iv + 256
    ioi = np.clip(np.asarray(ioi, dtype=np.int64), 0, (1 << 14) - 1)
    sr = (sp << 28) | (ioi << 14) | np.clip(np.asarray(du, dtype=np.int64), 0, (1 << 14) - 1)
    sep = (_SEP_BASE + pc) if first is None else first(pc)
    sp = np.where(new, sep, sp)
    sr = np.where(new, sep, sr)
    return sp, sr


# --------------------------------------------------------------------------- suffix arrays
def suffix_array(s: np.ndarray) -> np.ndarray:
    """The suffix array of an integer sequence (prefix doubling with numpy sorts)."""
    n = s.size
    if n == 0:
        return np.zeros(0, dtype=np.int32)
    _, rank = np.unique(s, return_inverse=True)
    rank = rank.astype(np.int64).ravel()
    k = 1
    while True:
        second = np.zeros(n, dtype=np.int64)
        if k < n:
            second[:n - k] = rank[k:] + 1
        key = rank * (n + 1) + second
        sa = np.argsort(key, kind="stable")
        sk = key[sa]
        new = np.empty(n, dtype=np.int64)
        new[sa] = np.concatenate([[0], np.cumsum(sk[1:] != sk[:-1])])
        rank = new
        if rank[sa[-1]] == n - 1 or k >= n:
            return sa.astype(np.int32)
        k *= 2


class _Searcher:
    """Longest-match queries against one symbol sequence and its suffix array."""

    def __init__(self, seq: np.ndarray, sa: np.ndarray):
        self.seq, self.sa, self.n = seq, sa, seq.size

    def _cmp(self, q: np.ndarray, j: int, s: int) -> tuple[int, bool]:
        """(common prefix length of q[j:] and seq[s:], q[j:] sorts before seq[s:])."""
        L = min(q.size - j, self.n - s, MAX_COMPARE)
        a = self.seq[s:s + L]
        b = q[j:j + L]
        d = np.flatnonzero(a != b)
        if d.size:
            i = int(d[0])
            return i, bool(b[i] < a[i])
        return L, True

    def longest(self, q: np.ndarray, j: int) -> tuple[int, int]:
        """(length, corpus position) of the longest prefix of q[j:] found in the sequence."""
        lo, hi = 0, self.n
        sa = self.sa
        while lo < hi:
            mid = (lo + hi) // 2
            _, less = self._cmp(q, j, int(sa[mid]))
            if less:
                hi = mid
            else:
                lo = mid + 1
        best, where = 0, -1
        for c in (lo - 1, lo):
            if 0 <= c < self.n:
                L, _ = self._cmp(q, j, int(sa[c]))
                if L > best:
                    best, where = L, int(sa[c])
        return best, where

    def range_of(self, q: np.ndarray) -> tuple[int, int]:
        """Suffix-array rows [lo, hi) of the suffixes that start with all of q."""
        sa, m = self.sa, q.size

        def bound(upper: bool) -> int:
            lo, hi = 0, self.n
            while lo < hi:
                mid = (lo + hi) // 2
                s = int(sa[mid])
                L = min(m, self.n - s)
                a = self.seq[s:s + L]
                d = np.flatnonzero(a != q[:L])
                if d.size:
                    go_right = a[d[0]] < q[d[0]]
                else:
                    go_right = upper if L == m else True
                if go_right:
                    lo = mid + 1
                else:
                    hi = mid
            return lo
        return bound(False), bound(True)

    def matching(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ms = np.zeros(q.size, dtype=np.int64)
        loc = np.full(q.size, -1, dtype=np.int64)
        for j in range(q.size):
            if q[j] < 0:
                continue
            ms[j], loc[j] = self.longest(q, j)
        return ms, loc


# --------------------------------------------------------------------------- the index
def cache_root() -> Path:
    env = os.environ.get("CADENZA_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "cadenza"


def corpus_hash(data_dir) -> str:
    """The content hash of a corpus: its meta.json, tokenizer.json and train split."""
    from cadenza.data.format import read_meta

    d = Path(data_dir)
    meta = read_meta(d)
    h = hashlib.sha256(f"cadenza-originality/{INDEX_VERSION}\n".encode())
    for name in ("meta.json", meta.get("tokenizer") or "tokenizer.json", "train.bin"):
        p = d / name
        if not p.is_file():
            raise DataError(f"{d} is not a music corpus: {name} is missing")
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def manifest_sha256(data_dir) -> str | None:
    p = Path(data_dir) / "manifest.csv"
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None


def _train_rows(data_dir, count: int) -> list[dict]:
    """The manifest rows of the training pieces, in the order of train.bin (the builder
    writes the kept pieces of each split sorted by id, as the manifest lists them)."""
    p = Path(data_dir) / "manifest.csv"
    rows = []
    if p.is_file():
        with open(p, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("split") == "train" and r.get("status", "ok") == "ok"]
    if len(rows) != count:
        return [{"id": f"train piece {i + 1}", "title": "", "licence": ""} for i in range(count)]
    return [{"id": r.get("id", ""), "title": r.get("title", ""), "licence": r.get("licence", "")} for r in rows]


@dataclass
class Index:
    """Suffix arrays of the training pieces' note symbols, and where each note is."""

    key: str
    codec: object
    seq_p: np.ndarray
    sa_p: np.ndarray
    seq_r: np.ndarray
    sa_r: np.ndarray
    uniq_p: np.ndarray
    uniq_r: np.ndarray
    pitch: np.ndarray
    piece: np.ndarray
    bar: np.ndarray
    pieces: list
    corpus: str = ""
    build_seconds: float = 0.0

    @property
    def notes(self) -> int:
        return int(self.seq_p.size)

    def searcher(self, rhythm: bool) -> _Searcher:
        attr = "_s_r" if rhythm else "_s_p"
        s = self.__dict__.get(attr)
        if s is None:
            s = self.__dict__[attr] = _Searcher(self.seq_r if rhythm else self.seq_p,
                                                self.sa_r if rhythm else self.sa_p)
        return s

    def encode_query(self, raw: np.ndarray, rhythm: bool) -> np.ndarray:
        """Raw query symbols -> the index's dense codes (-1: not in the corpus)."""
        uniq = self.uniq_r if rhythm else self.uniq_p
        i = np.searchsorted(uniq, raw)
        i = np.clip(i, 0, uniq.size - 1)
        ok = (raw >= 0) & (uniq[i] == raw) if uniq.size else np.zeros(raw.size, bool)
        return np.where(ok, i, -1).astype(np.int64)


def build_index(data_dir, progress: bool = False) -> Index:
    """Build the originality index of a music corpus directory (its train split)."""
    from cadenza.music.corpus_notes import corpus_notes

    t0 = time.perf_counter()
    idx = index_from_notes(corpus_notes(data_dir))
    idx.build_seconds = time.perf_counter() - t0
    return idx


def index_from_notes(cn) -> Index:
    """The index of a ``cadenza.music.corpus_notes.CorpusNotes`` (a corpus folder's notes or
    a shipped notes file: the same notes give the same index)."""
    from cadenza.codecs.music import MusicCodec

    t0 = time.perf_counter()
    piece = cn.piece
    sp, sr = _symbols(cn.pitch, cn.ioi, cn.duration, piece)
    uniq_p, seq_p = np.unique(sp, return_inverse=True)
    uniq_r, seq_r = np.unique(sr, return_inverse=True)
    seq_p, seq_r = seq_p.astype(np.int32).ravel(), seq_r.astype(np.int32).ravel()
    idx = Index(key=cn.key, codec=MusicCodec.from_dict(cn.codec), seq_p=seq_p, sa_p=suffix_array(seq_p),
                seq_r=seq_r, sa_r=suffix_array(seq_r), uniq_p=uniq_p, uniq_r=uniq_r,
                pitch=cn.pitch.astype(np.int16), piece=piece.astype(np.int32), bar=cn.bar.astype(np.int32),
                pieces=list(cn.pieces), corpus=cn.corpus)
    idx.build_seconds = time.perf_counter() - t0
    return idx


def save_index(idx: Index, folder) -> Path:
    """Write an index folder (index.npz + index.json + tokenizer.json) as one transaction."""
    import io

    from cadenza.io import FileTransaction

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, seq_p=idx.seq_p, sa_p=idx.sa_p, seq_r=idx.seq_r, sa_r=idx.sa_r, uniq_p=idx.uniq_p,
             uniq_r=idx.uniq_r, pitch=idx.pitch, piece=idx.piece, bar=idx.bar)
    info = {"version": INDEX_VERSION, "key": idx.key, "corpus": idx.corpus, "notes": idx.notes,
            "build_seconds": round(idx.build_seconds, 2), "pieces": idx.pieces}
    with FileTransaction() as txn:
        txn.write_bytes(folder / "index.npz", buf.getvalue())
        txn.write_text(folder / "tokenizer.json", _codec_text(idx.codec))
        txn.write_text(folder / "index.json", json.dumps(info) + "\n")
    return folder


def _codec_text(codec) -> str:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "tokenizer.json"
        codec.save(p)
        return p.read_text()


def load_index(folder) -> Index:
    from cadenza.codecs.music import MusicCodec

    folder = Path(folder)
    try:
        info = json.loads((folder / "index.json").read_text(encoding="utf-8"))
        if info.get("version") != INDEX_VERSION:
            raise IndexError_(f"{folder} holds an originality index of another version; delete it to rebuild")
        z = np.load(folder / "index.npz")
        arrays = {k: z[k] for k in z.files}
        codec = MusicCodec.load(folder / "tokenizer.json")
    except (OSError, ValueError, KeyError) as exc:
        raise IndexError_(f"{folder} is not a readable originality index ({type(exc).__name__}); "
                          f"delete it to rebuild") from None
    return Index(key=info["key"], codec=codec, pieces=info["pieces"], corpus=info.get("corpus", ""),
                 build_seconds=float(info.get("build_seconds", 0.0)), **arrays)


def index_for(data_dir, progress: bool = False, rebuild: bool = False) -> Index:
    """The index of a corpus folder or of a notes file (``cadenza.music.corpus_notes``): from
    the cache (keyed by the corpus's content hash, the same for both), else built and cached."""
    from cadenza.music import corpus_notes as cnotes

    d = Path(data_dir)
    if d.is_file():
        key = cnotes.notes_meta(d)["key"]
        build = lambda: index_from_notes(cnotes.load_notes(d))   # noqa: E731
    elif (d / "meta.json").is_file():
        key = corpus_hash(d)
        build = lambda: build_index(d, progress=progress)   # noqa: E731
    else:
        raise IndexError_(f"{d} is not a corpus folder (no meta.json) or notes file; build one with "
                          f"`cadenza data music21 --out {d}` or pass another --corpus")
    folder = cache_root() / "originality" / key[:24]
    if not rebuild and (folder / "index.json").is_file():
        try:
            idx = load_index(folder)
            idx.corpus = str(d)
            return idx
        except IndexError_:
            pass
    if progress:
        import sys

        print(f"building the originality index of {d} (once per corpus, seconds) into {folder} ...",
              file=sys.stderr, flush=True)
    idx = build()
    try:
        save_index(idx, folder)
    except (OSError, CadenzaError):
        pass   # a read-only cache only costs the next check a rebuild
    return idx


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


def _resolve(data_dir: str) -> Path:
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
    d = _resolve(info["data_dir"]) if info.get("data_dir") else None
    if d is not None and (d / "meta.json").is_file():
        out.setdefault("manifest_sha256", manifest_sha256(d))
    return out or None


def default_corpus(model_path=None, required: bool = True) -> Path | None:
    """What to check the default (or given) model's output against: its training corpus
    folder if it is on this disk (and, where the model ships a notes file, holds the same
    corpus), else the notes file the model ships (``corpus.json``'s ``originality_notes``,
    checked against its sha256). Where there is
    neither: IndexError_ saying how to get one, or None if not ``required``."""
    from cadenza.music.corpus_notes import shipped_notes
    from cadenza.music.registry import default_model_dir

    try:
        m = Path(model_path) if model_path else default_model_dir()
    except CadenzaError:
        m = None
    info = model_corpus(m) if m else None
    if not info or not info.get("data_dir"):
        if not required:
            return None
        raise IndexError_("no corpus to check against: the model names none; pass --corpus DATA_DIR "
                          "(a folder built with `cadenza data music21 --out DATA_DIR`)")
    d = _resolve(info["data_dir"])
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
    raise IndexError_(f"the model's training corpus {d} is not on this disk and the model ships no notes file; "
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
    return notes_of_tokens(np.asarray(ids, dtype=np.int64), _Tables(idx.codec))


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
    return check_notes(idx, notes_of_tokens(np.asarray(ids, dtype=np.int64), _Tables(idx.codec)),
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


def longest_copy(idx: Index, score) -> int:
    """The longest run of consecutive notes (intervals) a score shares with the index."""
    return check_score(idx, score).exact_intervals.notes


# --------------------------------------------------------------------------- while sampling
class CopyGuard:
    """Keeps generated notes from repeating more than ``max_copy`` consecutive notes of a
    training piece (pitch intervals, transposition invariant): ``banned_pitches(history)``
    gives the pitches that would make the last max_copy + 1 notes a run of the corpus."""

    def __init__(self, idx: Index, max_copy: int, strict: bool = True):
        if isinstance(max_copy, bool) or not isinstance(max_copy, int) or max_copy < 1:
            raise ConfigError(f"--max-copy must be a whole number of at least 1, not {max_copy!r}")
        self.idx, self.max_copy, self.strict = idx, max_copy, strict
        self.search = idx.searcher(False)
        self.refused = 0      # times a pitch was taken away
        self.unavoidable = 0  # times nothing could be taken away (a forced note)

    def banned_pitches(self, pitches) -> set[int]:
        """``pitches``: the stream's pitched notes so far (all of them, in order)."""
        need = self.max_copy          # intervals already there: max_copy - 1, plus the new one
        if len(pitches) < need:
            return set()
        last = np.asarray(pitches[-need:], dtype=np.int64)
        raw = np.diff(last) + 256
        q = self.idx.encode_query(raw, False)
        if q.size and q.min() < 0:
            return set()
        if q.size == 0:      # max_copy = 1: any interval that occurs anywhere
            nxt = np.unique(self.idx.seq_p)
        else:
            lo, hi = self.search.range_of(q)
            if hi <= lo:
                return set()
            pos = self.search.sa[lo:hi].astype(np.int64) + q.size
            pos = pos[pos < self.search.n]
            nxt = np.unique(self.search.seq[pos])
        ivs = self.idx.uniq_p[nxt[nxt < self.idx.uniq_p.size]]
        ivs = ivs[ivs < _SEP_BASE] - 256
        return {int(last[-1] + v) for v in ivs}
