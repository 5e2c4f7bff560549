"""Listener preferences: likes and skips, and the controls they make likelier.

A ``PrefsStore`` holds one row per like or skip with the controls in force where it happened
(style, valence, energy, tempo, key): an SQLite file by default (``prefs.sqlite3`` in the
user's data directory, from platformdirs: ``prefs_sqlite``), or a PostgreSQL database that
many server processes share (``--prefs postgresql://...``: ``prefs_postgres``). Both keep a
schema version and migrate older schemas forward; ``copy_events`` moves the rows from one
store to another (``cadenza prefs migrate``). ``learned(listener)`` sums them per region:
each style, each of the five valence and energy levels, tempo in 20-bpm bands. A region's
score is likes minus skips. ``taste`` keeps the regions whose score is not zero: they are
what the page's preferences line lists ("more", "less"), and the controls among them
(``steers``) are the only ones the likes choose. ``choose`` sets those controls when the
listener has not: a liked region (weights ``exp(score / 2)``; a liked tempo band gives the
mean of the liked tempos in it), except that every ``EXPLORE_EVERY``-th choice of a control
in a stream draws over all its regions (the same weights), so liked regions come most
often, skipped ones least, and nothing is ever ruled out. A control whose likes and skips
cancel out stays with the model.

A database that cannot be opened or used (corrupt, locked, unwritable, unreachable) raises
``PrefsError`` with one sentence; the server then runs with preferences off and says so.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

from cadenza.bounds import LIVE_TEMPO
from cadenza.server.prefs_store import SCHEMA_VERSION, PrefsError, PrefsStore  # noqa: F401  (re-exported)

LEVELS = 5
VALENCE_WORDS = ("dark", "sad", "neutral", "warm", "bright")
ENERGY_WORDS = ("calm", "gentle", "moderate", "lively", "energetic")
TEMPO_BAND = 20
EXPLORE_EVERY = 5   # every fifth choice of a control draws over all its regions, not only the liked ones
LISTENER_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def default_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("cadenza", appauthor=False)) / "prefs.sqlite3"


def check_listener(listener: str) -> str:
    if not isinstance(listener, str) or not LISTENER_RE.match(listener):
        raise ValueError("a listener id is 1 to 64 letters, digits, '.', '_' or '-'")
    return listener


def level(x: float) -> int:
    return min(LEVELS - 1, max(0, int(float(x) * LEVELS)))


def tempo_band(bpm: float) -> int:
    """The lower edge of the 20-bpm band holding ``bpm`` (90 -> 90 for bands 90-110)."""
    return int((float(bpm) - 10) // TEMPO_BAND) * TEMPO_BAND + 10


TEMPO_BANDS = range(tempo_band(LIVE_TEMPO.lo), tempo_band(LIVE_TEMPO.hi) + 1, TEMPO_BAND)   # the bands a tempo is chosen from


def is_postgres_url(where) -> bool:
    return isinstance(where, str) and where.split("://", 1)[0].lower() in ("postgresql", "postgres")


def check_where(where) -> None:
    """Refuse a URL of another database (``mysql://...``): it would be taken for a file name."""
    if isinstance(where, str) and not is_postgres_url(where) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", where):
        raise PrefsError(f"--prefs takes an SQLite file or a postgresql:// URL, not {where.split('://')[0]}://...")


def open_store(where=None, timeout: float = 2.0) -> PrefsStore:
    """The store at ``where``: a ``postgresql://`` URL, else an SQLite file (default: ``default_path()``)."""
    if is_postgres_url(where):
        from cadenza.server.prefs_postgres import PostgresStore

        return PostgresStore(where, timeout=timeout)
    check_where(where)
    from cadenza.server.prefs_sqlite import SQLiteStore

    return SQLiteStore(Path(where) if where is not None else default_path(), timeout=timeout)


class Preferences:
    """Likes and skips kept in a ``PrefsStore`` (``where``: an SQLite file, a
    ``postgresql://`` URL, or a store), and what they make likelier."""

    def __init__(self, where=None, timeout: float = 2.0):
        self.store: PrefsStore = open_store(where, timeout) if where is None or isinstance(where, (str, Path)) \
            else where
        self.where = self.store.where

    def close(self) -> None:
        self.store.close()

    def record(self, listener: str, kind: str, controls: dict) -> int:
        """Store a like or a skip with the controls in force; returns its row id."""
        check_listener(listener)
        if kind not in ("like", "skip"):
            raise ValueError("kind is 'like' or 'skip'")
        c = controls or {}
        return self.store.add((listener, kind, c.get("style"), c.get("valence"), c.get("energy"), c.get("tempo"),
                               c.get("key"), time.time()))

    def _tally(self, listener: str) -> tuple[dict, int, int, dict]:
        """(scores per control and region, likes, skips, mean liked tempo per tempo band)."""
        scores: dict[str, dict] = {"style": {}, "valence": {}, "energy": {}, "tempo": {}}
        likes = skips = 0
        liked_tempos: dict[str, list] = {}
        for kind, style, valence, energy, tempo in self.store.rows(listener):
            d = 1 if kind == "like" else -1
            likes += d > 0
            skips += d < 0
            for name, value in (("style", style), ("valence", None if valence is None else level(valence)),
                                ("energy", None if energy is None else level(energy)),
                                ("tempo", None if tempo is None else tempo_band(tempo))):
                if value is not None:
                    scores[name][str(value)] = scores[name].get(str(value), 0) + d
            if d > 0 and tempo is not None:
                liked_tempos.setdefault(str(tempo_band(tempo)), []).append(float(tempo))
        return scores, likes, skips, {b: sum(t) / len(t) for b, t in liked_tempos.items()}

    def learned(self, listener: str) -> dict:
        """Scores per region, the regions in words ("more": liked, "less": skipped) and the
        controls the likes choose (``steers``): all from ``taste``, as the chooser."""
        check_listener(listener)
        scores, likes, skips, _ = self._tally(listener)
        t = taste(scores)
        more, less = [], []
        for name in ("energy", "valence", "style", "tempo"):
            for region, s in sorted(t.get(name, {}).items(), key=lambda kv: -abs(kv[1])):
                (more if s > 0 else less).append(_words(name, region))
        summary = "; ".join(p for p in (f"more: {', '.join(more)}" if more else "",
                                        f"less: {', '.join(less)}" if less else "") if p) or "nothing yet"
        return {"listener": listener, "likes": likes, "skips": skips, "more": more, "less": less,
                "summary": summary, "steers": [k for k in ("style", "valence", "energy", "tempo") if k in t],
                "scores": scores}

    def chooser(self, listener: str, styles: list[str]):
        """``choose(rng, controls) -> dict`` for ``Soundtrack``: values for the controls the
        likes steer (``taste``); the stream keeps only those the listener has not set.
        One chooser per stream: it counts each control's choices for ``EXPLORE_EVERY``."""
        picks = {"style": 0, "valence": 0, "energy": 0, "tempo": 0}

        def pick(rng, name: str, scores: dict):
            picks[name] += 1
            return _pick(rng, scores, explore=picks[name] % EXPLORE_EVERY == 0)

        def choose(rng, controls) -> dict:
            try:
                scores, _, _, liked_tempo = self._tally(listener)
            except PrefsError:
                return {}
            t = taste(scores)
            out = {}
            if "style" in t:
                out["style"] = pick(rng, "style", {s: scores["style"].get(s, 0) for s in styles})
            for name in ("valence", "energy"):
                if name in t:
                    lv = pick(rng, name, {str(i): scores[name].get(str(i), 0) for i in range(LEVELS)})
                    out[name] = (int(lv) + 0.5) / LEVELS
            if "tempo" in t:
                band = pick(rng, "tempo", {str(b): scores["tempo"].get(str(b), 0) for b in TEMPO_BANDS})
                centre = min(LIVE_TEMPO.hi, max(LIVE_TEMPO.lo, int(band) + TEMPO_BAND / 2))
                out["tempo"] = round(liked_tempo.get(band, centre), 1)
            return out

        return choose


def copy_events(src: PrefsStore, dst: PrefsStore) -> int:
    """Copy every event of ``src`` into ``dst``, which must hold none (a second run would
    count every like twice): all in one transaction, so ``dst`` gets every event or none."""
    held = dst.count()
    if held:
        raise PrefsError(f"{dst.where} already holds {held} likes and skips; migrate into an empty database "
                         f"(nothing was copied)")
    return dst.add_all(src.events())


def taste(scores: dict) -> dict:
    """Per control, the regions whose score (likes minus skips) is not zero; a control with
    none is left out. The one place the preferences line and the chooser both read."""
    out = {}
    for name, regions in scores.items():
        kept = {r: s for r, s in regions.items() if s}
        if kept:
            out[name] = kept
    return out


def _pick(rng, scores: dict, explore: bool):
    """A liked region, or (``explore``, or none is liked) any region."""
    liked = {k: s for k, s in scores.items() if s > 0}
    return _draw(rng, liked if liked and not explore else scores)


def _draw(rng, scores: dict):
    keys = list(scores)
    weights = [math.exp(scores[k] / 2) for k in keys]
    return rng.choices(keys, weights=weights, k=1)[0]


def _words(name: str, region) -> str:
    if name == "valence":
        return VALENCE_WORDS[int(region)]
    if name == "energy":
        return ENERGY_WORDS[int(region)]
    if name == "tempo":
        b = int(region)
        return f"{b}-{b + TEMPO_BAND} bpm"
    return str(region)
