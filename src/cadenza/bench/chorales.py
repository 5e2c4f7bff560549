"""Held-out Bach chorales without building the corpus: the music21 ``bach`` collection read
with the corpus build's own converter, split with its own split logic.

``chorale_splits()`` parses every file of the collection once (``m21_to_score``, as the build
does), takes the melody signatures of each piece as notated (``splits.melody_signature``, as
``pool._piece`` does) and gives each piece the split ``split_groups`` / ``split_of`` give it
in a build (default fractions: 5% val, 5% test). Only the ``bach`` collection is grouped,
so a chorale whose opening matched a piece of another collection would be split on its own;
``shipped_train_ids`` (the training pieces a model's notes file lists) checks the result.
The signatures are cached in ``$CADENZA_CACHE`` (or ``~/.cache/cadenza``) per music21
version, so only the first call parses (about a minute on two cores).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

COLLECTION = "bach"
_CACHE_VERSION = 1


@dataclass(frozen=True)
class Chorale:
    id: str                 # the corpus id: the path under music21's corpus folder, e.g. bach/bwv10.7.mxl
    path: Path
    split: str
    parts: int              # pitched parts (tracks) as converted
    soprano_first: bool     # the first part is named Soprano (S, Sopran, ...)


def _cache_file() -> Path:
    import music21

    from cadenza.data.music.pool import CONVERTER_VERSION
    from cadenza.music.authorship.corpus_index import cache_root

    return cache_root() / "chorales" / f"bach-signatures-v{_CACHE_VERSION}-c{CONVERTER_VERSION}-m21-{music21.__version__}.json"


def _records(progress: bool = True) -> list[dict]:
    """One record per file of the collection: id, melody signatures, parts (cached)."""
    from music21 import converter
    from tqdm import tqdm

    from cadenza.data.music.collections import COLLECTIONS
    from cadenza.data.music.music21 import m21_to_score, music21_sources
    from cadenza.data.music.splits import melody_signature
    from cadenza.io import write_text_atomic

    path = _cache_file()
    if path.is_file():
        return json.loads(path.read_text())
    out = []
    for _, p, rel, _ in tqdm(music21_sources([COLLECTION]), desc="reading chorales", disable=not progress,
                             leave=False):
        rec = {"id": rel, "collection": COLLECTION}
        try:
            m21 = converter.parse(str(p), forceSource=True)
            if hasattr(m21, "scores") and not hasattr(m21, "parts"):
                m21 = m21.scores[0]
            score, _ = m21_to_score(m21, COLLECTIONS[COLLECTION].tempo)
            names = [t.name for t in score.tracks if not t.is_drum and len(t.notes)]
            rec.update(melody=melody_signature(score), melody16=melody_signature(score, 16), parts=len(names),
                       soprano_first=bool(names) and names[0].lower().startswith("s"))
        except Exception as exc:       # as in the build: a piece that does not convert is left out
            rec.update(error=f"{type(exc).__name__}: {exc}"[:200], parts=0, soprano_first=False)
        out.append(rec)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(out, indent=0) + "\n")
    return out


def chorale_splits(val_fraction: float = 0.05, test_fraction: float = 0.05, progress: bool = True) -> list[Chorale]:
    """Every piece of the music21 ``bach`` collection with the split a corpus build gives it."""
    from cadenza.data.music.collections import COLLECTIONS
    from cadenza.data.music.music21 import music21_corpus_dir
    from cadenza.data.music.splits import split_groups, split_of

    recs = [r for r in _records(progress) if "error" not in r]
    groups = split_groups(recs, {c: COLLECTIONS[c].split_by for c in COLLECTIONS})
    root = music21_corpus_dir()
    return [Chorale(id=r["id"], path=root / r["id"], split=split_of(groups[r["id"]], val_fraction, test_fraction),
                    parts=int(r["parts"]), soprano_first=bool(r["soprano_first"])) for r in recs]


def held_out_chorales(split: str = "test", parts: int = 4) -> list[Chorale]:
    """The chorales of ``split`` with exactly ``parts`` parts, the soprano first, by id."""
    return sorted((c for c in chorale_splits() if c.split == split and c.parts == parts and c.soprano_first),
                  key=lambda c: c.id)


def load_chorale(ch: Chorale):
    """(symusic score as notated, ticks) of a chorale, converted as the corpus build does."""
    from music21 import converter

    from cadenza.data.music.collections import COLLECTIONS
    from cadenza.data.music.music21 import m21_to_score

    m21 = converter.parse(str(ch.path), forceSource=True)
    return m21_to_score(m21, COLLECTIONS[COLLECTION].tempo)[0]


def shipped_train_ids(model_dir) -> set[str] | None:
    """Ids of the training pieces listed in a model's shipped notes file (None without one)."""
    from cadenza.music.authorship.corpus_notes import NOTES_FILE, load_notes

    p = Path(model_dir) / NOTES_FILE
    if not p.is_file():
        return None
    return {str(r.get("id")) for r in load_notes(p).pieces}
