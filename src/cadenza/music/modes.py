"""Mood decides the mode: the key drawn given the mood, and a valence change heard as a change of mode.

The codec's prefix names the key before any Mood token, so a network left to choose the key
cannot let "sad" choose a minor one. Two things fix that at decode time, with what the corpus
says:

- **The key table** (``mood_keys.json`` in a model folder, ``key_table``): for every valence
  level, how many training pieces open their first segment at that level in each key. A
  level's *mode* is the mode most of its pieces are in; when the key is left to the model
  and the first segment's valence is set, the key is drawn from that level's keys of its
  mode, weighted by the corpus counts, with the piece's seed (``draw_key``).
- **Mode per segment** (``ModePolicy``): where a later segment's valence level belongs to
  the other mode than the piece's key, its pitches keep to the scale of the parallel key
  (same tonic, other mode: G major becomes G minor), so a valence switched at bar 9 is heard
  from the segment that starts there.
"""

from __future__ import annotations

import numpy as np

from cadenza.codecs.music.key_table import MOOD_KEYS_FILE, key_table, read_table, write_table  # noqa: F401

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10, 11)     # natural minor plus the raised seventh


def is_minor(key: str) -> bool:
    from cadenza.codecs.music.features import parse_key

    return parse_key(key)[1] == "minor"


def minor_share(table: dict, level: int) -> float | None:
    row = table["counts"].get(str(int(level))) or {}
    total = sum(row.values())
    return sum(n for k, n in row.items() if is_minor(k)) / total if total else None


def mode_of(table: dict | None, level: int | None) -> str | None:
    """"minor" or "major": the mode most corpus pieces opening at this valence level are in."""
    if table is None or level is None:
        return None
    share = minor_share(table, level)
    return None if share is None else ("minor" if share > 0.5 else "major")


def draw_key(table: dict, level: int, seed: int) -> str | None:
    """A key for a piece whose first segment has valence ``level``: one of that level's keys in
    its mode, drawn with the corpus counts as weights (the same seed gives the same key)."""
    mode = mode_of(table, level)
    row = table["counts"].get(str(int(level))) or {}
    keys = sorted(k for k in row if (mode == "minor") == is_minor(k))
    if not keys:
        return None
    w = np.array([row[k] for k in keys], dtype=float)
    rng = np.random.default_rng([int(seed) % (2 ** 63), 0x6B6579])
    return keys[int(rng.choice(len(keys), p=w / w.sum()))]


# --------------------------------------------------------------------------- mode per segment
def scale_of(tonic: int, mode: str) -> frozenset[int]:
    return frozenset((tonic + s) % 12 for s in (_MINOR if mode == "minor" else _MAJOR))


def segment_modes(plan, codec, table: dict | None, segments: int) -> dict[int, str]:
    """{segment: mode} for the segments whose valence the plan sets (none without a table)."""
    if table is None or plan is None or plan.empty:
        return {}
    S = codec.config.segment_bars
    out = {}
    for seg in range(segments):
        mode = mode_of(table, plan.levels_at(codec, seg * S + 1)[0])
        if mode is not None:
            out[seg] = mode
    return out


class ModePolicy:
    """``policy`` with the pitches of every segment whose mode (``modes``) is not the key's kept to
    the parallel key's scale (same interface as a GrammarPolicy)."""

    def __init__(self, policy, modes: dict[int, str]):
        self.inner, self.remi, self.modes = policy, policy.remi, dict(modes)
        self._masks: dict = {}

    def __getattr__(self, name):          # the wrapped policy's other attributes
        return getattr(self.inner, name)

    def _bad_pitches(self, s):
        from cadenza.codecs.music.features import parse_key
        from cadenza.music.grammar import PITCH

        mode = self.modes.get(s.segment)
        i = s.prefix.get("key")
        if mode is None or i is None:
            return None
        tonic, key_mode = parse_key(self.remi.value[i])
        if key_mode == mode:
            return None
        key = (tonic, mode)
        if key not in self._masks:
            scale = scale_of(tonic, mode)
            self._masks[key] = self.remi.mask_of(i for p, i in self.remi.pitch_ids.items() if p % 12 not in scale) \
                & self.remi.masks[PITCH]
        return self._masks[key]

    def allowed(self, s):
        m = self.inner.allowed(s)
        bad = self._bad_pitches(s) if s.in_body else None
        if bad is None:
            return m
        kept = m & ~bad
        return kept if bool(kept.any()) else m      # never leave nothing: the grammar wins
