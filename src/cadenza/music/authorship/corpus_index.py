"""The originality index: suffix arrays of the training pieces' note symbols, built once per corpus and cached."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cadenza.errors import CadenzaError
from cadenza.music.authorship.corpus_key import INDEX_VERSION, CorpusIndexError, cache_root, corpus_hash
from cadenza.music.authorship.note_symbols import symbols_from_arrays

MAX_COMPARE = 4096      # notes compared at once in the suffix array search


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
    from cadenza.music.authorship.corpus_notes import corpus_notes

    t0 = time.perf_counter()
    idx = index_from_notes(corpus_notes(data_dir))
    idx.build_seconds = time.perf_counter() - t0
    return idx


def index_from_notes(cn) -> Index:
    """The index of a ``cadenza.music.authorship.corpus_notes.CorpusNotes`` (a corpus folder's notes or
    a shipped notes file: the same notes give the same index)."""
    from cadenza.codecs.music import MusicCodec

    t0 = time.perf_counter()
    piece = cn.piece
    sp, sr = symbols_from_arrays(cn.pitch, cn.ioi, cn.duration, piece)
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
            raise CorpusIndexError(f"{folder} holds an originality index of another version; delete it to rebuild")
        z = np.load(folder / "index.npz")
        arrays = {k: z[k] for k in z.files}
        codec = MusicCodec.load(folder / "tokenizer.json")
    except (OSError, ValueError, KeyError) as exc:
        raise CorpusIndexError(f"{folder} is not a readable originality index ({type(exc).__name__}); "
                          f"delete it to rebuild") from None
    return Index(key=info["key"], codec=codec, pieces=info["pieces"], corpus=info.get("corpus", ""),
                 build_seconds=float(info.get("build_seconds", 0.0)), **arrays)


def index_for(data_dir, progress: bool = False, rebuild: bool = False) -> Index:
    """The index of a corpus folder or of a notes file (``cadenza.music.authorship.corpus_notes``): from
    the cache (keyed by the corpus's content hash, the same for both), else built and cached."""
    from cadenza.music.authorship import corpus_notes as cnotes

    d = Path(data_dir)
    if d.is_file():
        key = cnotes.notes_meta(d)["key"]
        build = lambda: index_from_notes(cnotes.load_notes(d))   # noqa: E731
    elif (d / "meta.json").is_file():
        key = corpus_hash(d)
        build = lambda: build_index(d, progress=progress)   # noqa: E731
    else:
        raise CorpusIndexError(f"{d} is not a corpus folder (no meta.json) or notes file; build one with "
                          f"`cadenza data music21 --out {d}` or pass another --corpus")
    folder = cache_root() / "originality" / key[:24]
    if not rebuild and (folder / "index.json").is_file():
        try:
            idx = load_index(folder)
            idx.corpus = str(d)
            return idx
        except CorpusIndexError:
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
