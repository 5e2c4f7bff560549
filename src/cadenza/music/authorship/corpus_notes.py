"""The notes file: a training corpus's notes, compact enough to ship next to a model.

The originality index (``cadenza.music.authorship.originality``) is built from the training pieces'
notes only: per note its pitch, the time since the note before, its duration and its bar,
and where each piece starts. This module keeps exactly that (small integer dtypes) plus the
pieces' manifest rows and the corpus's tokenizer in one zip of ``.npy`` members, e.g.
``models/cadenza-music-v3/originality/notes.npz`` (about 2 MB for the 1.8 M notes of the
music21 corpus, against 47 MB for the index with its suffix arrays). ``index_for`` builds the
index from it on first use into the user's cache, with the same content key (the corpus's
hash) as an index built from the corpus folder itself, and the same results.

``export_notes(data_dir, model_dir)`` (``cadenza check --export-index``) writes the file from
a corpus folder and records its sha256 in the model's ``corpus.json``; the file is
byte-reproducible (fixed zip timestamps), so re-exporting the same corpus gives the same hash.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cadenza.errors import DataError
from cadenza.music.authorship.corpus_key import INDEX_VERSION, CorpusIndexError, corpus_hash, train_rows

NOTES_VERSION = 1
NOTES_FILE = "originality/notes.npz"
_RHYTHM_MAX = (1 << 14) - 1      # the index clips the time since the last note and the duration here
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass
class CorpusNotes:
    """What the originality index of a corpus is built from (stream order, pieces back to back)."""

    key: str                 # the corpus's content hash (``corpus_key.corpus_hash``)
    codec: dict              # the corpus's tokenizer (``MusicCodec.to_dict`` form)
    pitch: np.ndarray        # uint8, per note
    ioi: np.ndarray          # uint16: ticks since the note before in its piece (0 for its first), clipped
    duration: np.ndarray     # uint16: ticks, clipped
    bar: np.ndarray          # uint16: 1-based bar in its piece
    offsets: np.ndarray      # int64, pieces + 1: the first note of each piece (empty pieces included)
    pieces: list             # manifest rows {"id", "title", "licence"}, one per piece
    corpus: str = ""         # where it came from (for messages)

    @property
    def piece(self) -> np.ndarray:
        return np.repeat(np.arange(self.offsets.size - 1, dtype=np.int64), np.diff(self.offsets))


def _fits(name: str, a: np.ndarray, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    if a.size and (int(a.min()) < info.min or int(a.max()) > info.max):
        raise DataError(f"the corpus's note {name} ({int(a.min())} to {int(a.max())}) does not fit the notes "
                        f"file's {np.dtype(dtype).name}")
    return a.astype(dtype)


def from_notes(key: str, codec: dict, notes: dict, n_pieces: int, pieces: list, corpus: str = "") -> CorpusNotes:
    """A ``CorpusNotes`` from ``note_symbols.notes_of_tokens`` output."""
    pc = notes["piece"].astype(np.int64)
    n = pc.size
    if n and int(pc[0]) < 0:
        raise DataError("the corpus's train split has notes before its first piece starts (no BOS token)")
    new = np.ones(n, dtype=bool)
    if n > 1:
        new[1:] = pc[1:] != pc[:-1]
    ioi = np.zeros(n, dtype=np.int64)
    ioi[1:] = notes["onset"][1:] - notes["onset"][:-1]
    ioi = np.where(new, 0, np.clip(ioi, 0, _RHYTHM_MAX))
    offsets = np.searchsorted(pc, np.arange(n_pieces + 1), "left").astype(np.int64)
    return CorpusNotes(key=key, codec=codec, pitch=_fits("pitches", notes["pitch"], np.uint8),
                       ioi=ioi.astype(np.uint16),
                       duration=np.clip(notes["duration"], 0, _RHYTHM_MAX).astype(np.uint16),
                       bar=_fits("bars", notes["bar"], np.uint16), offsets=offsets, pieces=pieces, corpus=corpus)


def corpus_notes(data_dir) -> CorpusNotes:
    """The notes of a music corpus folder's train split."""
    from cadenza.codecs.music import MusicCodec
    from cadenza.data.format import open_split, read_meta
    from cadenza.music.authorship.note_symbols import TokenTables, notes_of_tokens

    d = Path(data_dir)
    meta = read_meta(d)
    if meta.get("modality") != "music":
        raise DataError(f"{d} is not a music corpus (its meta.json says modality {meta.get('modality')!r})")
    tok = d / (meta.get("tokenizer") or "tokenizer.json")
    codec = MusicCodec.load(tok)
    ids = np.asarray(open_split(d, "train"), dtype=np.int64)
    tables = TokenTables(codec)
    n_pieces = int(np.sum(ids == tables.bos))
    return from_notes(corpus_hash(d), json.loads(tok.read_text(encoding="utf-8")), notes_of_tokens(ids, tables),
                      n_pieces, train_rows(d, n_pieces), corpus=str(d))


# --------------------------------------------------------------------------- the file
def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def _json_bytes(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8"), dtype=np.uint8)


def notes_bytes(cn: CorpusNotes, data_dir_name: str = "") -> bytes:
    """The notes file's bytes (a zip of .npy members, deflated, fixed timestamps)."""
    meta = {"version": NOTES_VERSION, "index_version": INDEX_VERSION, "key": cn.key,
            "corpus": data_dir_name or cn.corpus, "notes": int(cn.pitch.size), "pieces": int(cn.offsets.size - 1),
            "codec": cn.codec}
    members = {"meta": _json_bytes(meta), "pieces": _json_bytes(cn.pieces), "pitch": cn.pitch, "ioi": cn.ioi,
               "duration": cn.duration, "bar": cn.bar, "offsets": cn.offsets}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, a in members.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, _npy(a), compresslevel=9)
    return buf.getvalue()


def save_notes(cn: CorpusNotes, path, data_dir_name: str = "") -> str:
    """Write a notes file (one transaction); returns its sha256."""
    from cadenza.io import FileTransaction

    data = notes_bytes(cn, data_dir_name)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileTransaction() as txn:
        txn.write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def _bad(path, why: str):
    return CorpusIndexError(f"{path} is not a readable originality notes file ({why}); re-export it with "
                       f"`cadenza check --export-index`")


def notes_meta(path) -> dict:
    """The notes file's small ``meta`` member (key, versions, counts, tokenizer)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode("utf-8"))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise _bad(path, type(exc).__name__) from None
    if not isinstance(meta, dict) or meta.get("version") != NOTES_VERSION or meta.get("index_version") != INDEX_VERSION:
        raise _bad(path, "another version")
    return meta


def load_notes(path) -> CorpusNotes:
    meta = notes_meta(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in ("pitch", "ioi", "duration", "bar", "offsets")}
            pieces = json.loads(z["pieces"].tobytes().decode("utf-8"))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise _bad(path, type(exc).__name__) from None
    n = a["pitch"].size
    off = a["offsets"]
    if (any(a[k].size != n for k in ("ioi", "duration", "bar")) or off.size < 1 or int(off[0]) != 0
            or int(off[-1]) != n or (off.size > 1 and bool(np.any(np.diff(off) < 0)))
            or len(pieces) != off.size - 1 or meta.get("notes") != n):
        raise _bad(path, "inconsistent arrays")
    return CorpusNotes(key=meta["key"], codec=meta["codec"], pieces=pieces, corpus=str(path),
                       offsets=off.astype(np.int64), **{k: a[k] for k in ("pitch", "ioi", "duration", "bar")})


def file_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------- the model's copy
def shipped_notes(model_dir, info: dict | None) -> Path | None:
    """The notes file a model folder ships (named in its corpus.json), checked against the
    sha256 recorded there; None if it ships none."""
    entry = (info or {}).get("originality_notes")
    if not model_dir or not isinstance(entry, dict) or not entry.get("path"):
        return None
    p = Path(model_dir) / entry["path"]
    if not p.is_file():
        return None
    if entry.get("sha256") and file_sha256(p) != entry["sha256"]:
        raise CorpusIndexError(f"{p} does not match the sha256 recorded in {Path(model_dir) / 'corpus.json'}; "
                          f"restore it (git checkout) or re-export it with `cadenza check --export-index`")
    return p


def export_notes(data_dir, model_dir, data_dir_name: str = "") -> dict:
    """Write ``MODEL/originality/notes.npz`` from a corpus folder and record it in
    ``MODEL/corpus.json`` (created if missing); returns the corpus.json entry."""
    from cadenza.io import FileTransaction

    m = Path(model_dir)
    if not m.is_dir():
        raise DataError(f"{m} is not a model folder")
    cn = corpus_notes(data_dir)
    out = m / NOTES_FILE
    digest = save_notes(cn, out, data_dir_name)
    cj = m / "corpus.json"
    info = {}
    if cj.is_file():
        try:
            info = json.loads(cj.read_text(encoding="utf-8"))
        except ValueError:
            raise DataError(f"{cj} is not valid JSON; fix or remove it") from None
    entry = {"path": NOTES_FILE, "sha256": digest, "bytes": out.stat().st_size, "notes": int(cn.pitch.size),
             "pieces": int(cn.offsets.size - 1), "index_key": cn.key,
             "made_with": f"cadenza check --export-index --corpus {data_dir_name or data_dir} --model {model_dir}"}
    info.setdefault("data_dir", data_dir_name or str(data_dir))
    info.setdefault("content_sha256", cn.key)
    info["originality_notes"] = entry
    with FileTransaction() as txn:
        txn.write_text(cj, json.dumps(info, indent=1) + "\n")
    return entry
