"""Train/val/test splits by tune: versions of one tune (same normalised title, or same opening
intervals) share a split."""

from __future__ import annotations

import hashlib
import re
import unicodedata

import numpy as np


# --------------------------------------------------------------------------- splits
_TITLE_SUFFIX = re.compile(r"\s*(--|-|:|\(|\[).*$")
_TUNE_TYPES = ("jig", "reel", "hornpipe", "polka", "slide", "march", "waltz", "air", "strathspey", "set dance",
               "slip jig", "double jig", "single jig", "song", "the")


def normalise_title(title: str) -> str:
    """A title reduced to what names the tune: lower case ASCII, no punctuation, no
    leading or trailing article (", The"), no " -- Jig" / "(reel)" kind of suffix."""
    t = unicodedata.normalize("NFKD", title or "").encode("ascii", "ignore").decode().lower()
    t = _TITLE_SUFFIX.sub("", t) or t
    t = re.sub(r"[^a-z0-9 ]+", " ", t)
    t = re.sub(r"\s+", " ", t).strip()
    t = re.sub(r"^(the|a|an) ", "", t)
    t = re.sub(r" (the|a|an)$", "", t)
    for suffix in _TUNE_TYPES:
        if t.endswith(" " + suffix):
            t = t[: -len(suffix) - 1]
    return t.strip()


def split_groups(records: list[dict], split_by: dict) -> dict[str, str]:
    """Every record's split key: versions of one tune share a key, so they share a split.

    Two pieces are versions of one tune when their normalised titles agree (in collections
    split by title, across collections) or their opening 16 melodic intervals agree
    (transposition-invariant, in every collection); the key is that of the group's first id.
    """
    parent: dict[str, str] = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a, b):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    owner: dict[str, str] = {}
    for rec in records:
        rid = rec["id"]
        find(rid)
        names = []
        if split_by.get(rec.get("collection"), "id") == "title":
            title = normalise_title(rec.get("title", ""))
            if len(title) >= 3:
                names.append("title|" + title)
        for field in ("melody16", "melody"):
            if rec.get(field):
                names.append(f"{field}|{rec[field]}")
        for name in names:
            if name in owner:
                union(rid, owner[name])
            else:
                owner[name] = rid
    return {rec["id"]: f"group|{find(rec['id'])}" for rec in records}


def melody_signature(score, length: int = 32) -> str:
    """Transposition-free fingerprint of the first track's opening melody (top note per onset)."""
    tracks = [t for t in score.tracks if len(t.notes) and not t.is_drum]
    if not tracks:
        return ""
    arr = tracks[0].notes.numpy()
    order = np.lexsort((-arr["pitch"], arr["time"]))
    times, pitches = arr["time"][order], arr["pitch"][order]
    first = np.concatenate([[True], times[1:] != times[:-1]])
    top = pitches[first][: length + 1].astype(int)
    if len(top) < 8:
        return ""
    return hashlib.sha1(",".join(map(str, np.diff(top))).encode()).hexdigest()[:12]


def split_of(key: str, val_fraction: float = 0.05, test_fraction: float = 0.05) -> str:
    """Deterministic split of a piece from its split key: same key, same split, always."""
    h = int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") / 2.0 ** 64
    if h < test_fraction:
        return "test"
    if h < test_fraction + val_fraction:
        return "val"
    return "train"
