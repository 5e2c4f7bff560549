"""Mood decides the mode: the key drawn given the mood, and a valence change heard as a change of mode.

The codec's prefix names the key before any Mood token, so a network left to choose the key
cannot let "sad" choose a minor one. Two things fix that at decode time, with what the corpus
says:

- **The mode of a valence level** (``mode_of``): valence measures how much better a segment's
  notes fit a major key than a minor one, so the levels below the scale's middle are minor
  ("sad" and "tense"), the others major. (The corpus's key tokens come from key signatures,
  which often leave a minor tune's mode unsaid: only 28% of the pieces opening at the "sad"
  level carry a minor key token, so the tokens cannot say the mode; the notes can.)
- **The key table** (``mood_keys.json`` in a model folder, ``key_table``): for every valence
  level, how many training pieces open their first segment at that level in each key. When
  the key is left to the model and the first segment's valence is set, the key is drawn
  from that level's keys of its mode, weighted by the corpus counts, with the piece's seed
  (``draw_key``). For a minor level the network writes in a major key drawn that way and the
  piece is moved to its parallel minor (``apply_modes`` on every segment, the key token
  relabelled): conditioned on a minor key token directly, its notes were heard (music21) as
  the relative major in 60% of "sad" pieces, since the corpus's key tokens rarely mark minor.
- **Mode per segment** (``apply_modes``): where a later segment's valence level belongs to
  the other mode than the piece's key, its notes move to the parallel key (same tonic, other
  mode: G major's B and E become B-flat and E-flat), so a valence switched at bar 9 is heard
  from the segment that starts there. (Only masking the other mode's notes was tried first:
  the network, still reading G major, then avoided the third altogether and music21 heard
  G major in every seed.)
"""

from __future__ import annotations

import numpy as np


_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10, 11)     # natural minor plus the raised seventh


def is_minor(key: str) -> bool:
    from cadenza.codecs.music.features import parse_key

    return parse_key(key)[1] == "minor"


def mode_of(codec, level: int | None) -> str | None:
    """"minor" or "major": the mode of a valence level. Valence is how much better a segment's
    notes fit their best major key than their best minor one (0.5: equally well;
    ``cadenza.codecs.music.segments``), so a level whose range lies mostly below 0.5 is minor."""
    if level is None:
        return None
    edges = [0.0, *codec.config.valence_edges, 1.0]
    level = int(level)
    if not 0 <= level < len(edges) - 1:
        return None
    return "minor" if (edges[level] + edges[level + 1]) / 2 < 0.5 else "major"


def draw_key(table: dict, level: int, seed: int, mode: str) -> str | None:
    """A key in ``mode`` for a piece whose first segment has valence ``level``: one of the keys
    of that mode the corpus's pieces open in at that level (at any level where that one has
    none), drawn with their counts as weights; the same seed gives the same key."""
    rows = [table["counts"].get(str(int(level))) or {}] + list(table["counts"].values())
    for row in rows:
        keys = sorted(k for k in row if (mode == "minor") == is_minor(k))
        if keys:
            break
    else:
        return None
    w = np.array([row[k] for k in keys], dtype=float)
    rng = np.random.default_rng([int(seed) % (2 ** 63), 0x6B6579])
    return keys[int(rng.choice(len(keys), p=w / w.sum()))]


# --------------------------------------------------------------------------- mode per segment
def scale_of(tonic: int, mode: str) -> frozenset[int]:
    return frozenset((tonic + s) % 12 for s in (_MINOR if mode == "minor" else _MAJOR))


def segment_modes(plan, codec, segments: int) -> dict[int, str]:
    """{segment: mode} for the segments whose valence the plan sets."""
    if plan is None or plan.empty:
        return {}
    S = codec.config.segment_bars
    out = {}
    for seg in range(segments):
        mode = mode_of(codec, plan.levels_at(codec, seg * S + 1)[0])
        if mode is not None:
            out[seg] = mode
    return out


# the parallel key's notes: which pitch class (from the tonic) of one mode becomes which of the other
TO_MINOR = {4: 3, 9: 8}            # the major third and sixth lowered (the leading tone stays)
TO_MAJOR = {3: 4, 8: 9, 10: 11}    # the minor third, sixth and seventh raised


def apply_modes(remi, ids: list[int], modes: dict[int, str], start: int = 0, default: str | None = None) -> list[int]:
    """``ids`` with the pitches of every segment in ``modes`` whose mode differs from the key's
    moved to the parallel key (G major's B and E become B-flat and E-flat in G minor), from
    token ``start`` on (the tokens before it, a prompt, stay). The network writes in the key of
    the prefix; this turns its notes into the other mode where the mood asks for it, keeping
    its rhythm and contour. ``default``: the mode of every segment ``modes`` does not name."""
    from cadenza.codecs.music.features import parse_key
    from cadenza.music.grammar import PITCH, RemiState

    if not modes and default is None:
        return list(ids)
    st = RemiState(remi)
    out = []
    for n, tok in enumerate(ids):
        st.feed(tok)
        if n >= start and remi.kind[tok] == PITCH and st.in_body:
            mode = modes.get(st.segment, default)
            k = st.prefix.get("key")
            if mode is not None and k is not None:
                tonic, key_mode = parse_key(remi.value[k])
                if key_mode != mode:
                    move = TO_MINOR if mode == "minor" else TO_MAJOR
                    p = remi.value[tok]
                    q = p + move.get((p - tonic) % 12, (p - tonic) % 12) - (p - tonic) % 12
                    tok = remi.pitch_ids.get(q, tok)
        out.append(tok)
    return out


def to_parallel_minor(remi, ids: list[int]) -> list[int]:
    """``ids`` with its (major) key token replaced by the parallel minor's: the label of a piece
    whose notes ``apply_modes`` moved to that key."""
    from cadenza.codecs.music.features import parse_key
    from cadenza.music.grammar import KEY

    out = list(ids)
    for n, tok in enumerate(out):
        if remi.kind[tok] == KEY:
            tonic, mode = parse_key(remi.value[tok])
            if mode == "major":
                out[n] = remi.codec.key_id((tonic, "minor"))
            break
    return out
