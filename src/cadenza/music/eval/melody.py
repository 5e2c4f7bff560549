"""Next-pitch evaluation on melodies: the music model against an IDyOM-style baseline.

Everything is scored on the same notes: the melody line of each piece, one pitch per onset.

Melody (``melody_of``). The notes of a piece's first (non-drum) instrument, grouped by
onset; at an onset with several such notes the highest one. For each melody note k,
``ends[k]`` is where "the tokens before this note" end: ``ids[:ends[k]]`` holds every note
of every earlier onset and stops right after the last Duration token before this note's
onset, before the Bar / TimeSig / Mood / Position tokens that lead to it. That is the input
``cadenza predict`` sees when the next note is this one. A piece is ``monophonic`` when no
onset holds two notes (of any instrument): only there is "the next note" of ``predict``
(the first note written at the next onset) the melody note itself.

Duplicates (``nodup_filter``). ``test-nodup`` leaves out every test melody any of whose
``window``-interval windows (pitch intervals, so transposition does not matter) also
occurs in a train melody; a melody shorter than the window is left out when its whole
interval sequence occurs in one. Windows are compared by 64-bit hashes (with ~10^5 test and
~2 x 10^6 train windows, the chance of even one false match is about 10^-8).

Baseline (after IDyOM, Pearce 2005). ``IntervalModel``: interpolated modified Kneser-Ney
(``cadenza.music.eval.ngram.KneserNey``) over melodic intervals clipped to +-``max_interval``
semitones, larger leaps sharing one escape symbol, each melody opened by a begin symbol.
P(next pitch = p | previous pitch q) = P(interval p - q); an escape's probability is spread
evenly over the pitches more than ``max_interval`` away, and the distribution is
renormalised over the model's pitch range. A melody's first note gets the pitch unigram of
the training melodies (add-one). The long-term model (LTM) is fitted on the train melodies;
the short-term model (STM, ``short_term_dists``) is the same model refitted, note by note,
on the piece so far. ``combine`` mixes distributions with entropy-based weights
w_m = (H(p_m) / log2 |pitches|) ^ -bias: geometric p ~ prod p_m ^ (w_m / sum w) (Pearce's
preferred scheme) or arithmetic p = sum w_m p_m / sum w. On the music21 corpus's val-nodup
melodies (131 monophonic pieces, order 6) geometric with bias 1 or 2 does best (top-1 45.5%,
top-5 87.5%, 2.54 / 2.53 bits per note, against 36.7%, 84.5%, 2.79 for the LTM alone).

Scores (``score_next_pitch``): top-1 / top-5 (ties counted as the expected hit when they are
ordered at random; a pitch of probability 0 is never a hit) and bits per note,
-log2 P(true pitch) with P floored at 1e-12.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from cadenza.errors import ConfigError
from cadenza.music.grammar import BAR, DRUM, DUR, PITCH, POS, PROG

FLOOR = 1e-12
TOP_K = (1, 5)


# --------------------------------------------------------------------------- melodies
class Melody(NamedTuple):
    pitches: list[int]     # MIDI pitch of each melody note, in onset order
    ends: list[int]        # ids[:ends[k]] is the context before note k
    monophonic: bool       # no onset of the piece holds two notes


def melody_of(codec, ids) -> Melody:
    """The melody line of a token sequence (see the module docstring)."""
    from cadenza.music.inputs import remi_for

    remi = remi_for(codec)
    kind, value = remi.kind, remi.value
    groups: list[tuple[int, list]] = []     # (context end, [(pitch, program), ...]) per onset
    last_dur_end = None                     # 1 + index of the last Duration token so far
    first_bar = None
    program = None
    pitch = None
    for t, i in enumerate(np.asarray(ids).tolist()):
        k = kind[i]
        if k == BAR and first_bar is None:
            first_bar = t
        elif k == POS:
            groups.append((last_dur_end if last_dur_end is not None else (first_bar or t), []))
        elif k == PROG:
            program = value[i]
        elif k in (PITCH, DRUM):
            pitch = value[i] if k == PITCH else None
        elif k == DUR and groups:
            groups[-1][1].append((pitch, program))
            last_dur_end = t + 1
    melodic = next((prog for _, notes in groups for p, prog in notes if p is not None), None)
    pitches, ends = [], []
    for end, notes in groups:
        mine = [p for p, prog in notes if p is not None and prog == melodic]
        if mine:
            pitches.append(max(mine))
            ends.append(end)
    return Melody(pitches, ends, all(len(notes) <= 1 for _, notes in groups))


def _pitches(m) -> np.ndarray:
    return np.asarray(getattr(m, "pitches", m), dtype=np.int64)


# --------------------------------------------------------------------------- test-nodup
_MULT = (np.random.default_rng(0xD0B).integers(1, 2 ** 63, size=256, dtype=np.uint64) * np.uint64(2)
         + np.uint64(1))


def _window_hashes(iv: np.ndarray, n: int) -> np.ndarray:
    """64-bit hashes of every n-interval window of one interval sequence."""
    if len(iv) < n:
        return np.zeros(0, dtype=np.uint64)
    win = np.lib.stride_tricks.sliding_window_view(iv, n).astype(np.uint64) + np.uint64(1024)
    with np.errstate(over="ignore"):
        h = (win * _MULT[:n]).sum(axis=1, dtype=np.uint64)
        return h ^ (h >> np.uint64(29))


def _contains(sorted_keys: np.ndarray, x: np.ndarray) -> np.ndarray:
    i = np.minimum(np.searchsorted(sorted_keys, x), max(len(sorted_keys) - 1, 0))
    return (sorted_keys[i] == x) if len(sorted_keys) else np.zeros(len(x), dtype=bool)


def nodup_filter(train_melodies, test_melodies, window: int = 16) -> list[int]:
    """Indices of the test melodies that are kept in ``test-nodup``: those none of whose
    ``window``-interval windows (transposition-invariant) occurs in any train melody."""
    if not 1 <= window <= len(_MULT):
        raise ConfigError(f"the duplicate window must be 1 to {len(_MULT)} intervals, not {window}")
    train_iv = [np.diff(_pitches(m)) for m in train_melodies]
    test_iv = [np.diff(_pitches(m)) for m in test_melodies]
    sizes = {min(window, len(iv)) for iv in test_iv} - {0}
    seen = {n: np.unique(np.concatenate([_window_hashes(iv, n) for iv in train_iv] + [np.zeros(0, np.uint64)]))
            for n in sizes}
    keep = []
    for j, iv in enumerate(test_iv):
        n = min(window, len(iv))
        if n == 0 or not _contains(seen[n], _window_hashes(iv, n)).any():
            keep.append(j)
    return keep


# --------------------------------------------------------------------------- interval n-gram
# The interval model, the short-term model and the combination live in the music layer
# (``cadenza.music.memory``), where prediction uses them as the piece memory.
from cadenza.music.memory import IntervalModel, combine, entropy_bits, short_term_dists  # noqa: E402,F401


def idyom_dists(ltm: IntervalModel, pitches, bias: float = 1.0, method: str = "geometric") -> tuple:
    """(LTM, STM, LTM+STM) distributions (each (n, P)) for every note of one melody."""
    long_term = ltm.dists(pitches)
    short = short_term_dists(pitches, ltm.order, ltm.M, ltm.pitches)
    return long_term, short, combine([long_term, short], bias, method)


# --------------------------------------------------------------------------- the music model
def model_dists(mm, ids, ends, max_onsets: int = 4, onset_mass: float = 0.9, pitches=None) -> np.ndarray:
    """(len(ends), P): the model's next-pitch distribution after each ``ids[:end]``, exactly
    as ``cadenza predict`` defines the next note (``pitch_distribution_after``, float32 weights).

    ``mm`` is a loaded music model (``cadenza.music.load.load_model``); ``pitches``
    defaults to the model's pitch range.
    """
    import torch

    from cadenza.music.inputs import remi_for
    from cadenza.music.predict import pitch_distribution_after
    from cadenza.music.grammar import RemiState

    remi = remi_for(mm.codec)
    pitches = sorted(remi.pitch_ids) if pitches is None else list(pitches)
    col = {p: j for j, p in enumerate(pitches)}
    ids = [int(i) for i in np.asarray(ids).tolist()]
    out = np.zeros((len(ends), len(pitches)))
    with torch.inference_mode(), mm.network.decoding_with("float32"):
        for r, end in enumerate(ends):
            ctx = ids[:end]
            dist = pitch_distribution_after(mm.network, remi, ctx, RemiState(remi).feed_all(ctx), max_onsets, onset_mass)
            for p, x in dist.items():
                if p in col:
                    out[r, col[p]] = x
    return out


# --------------------------------------------------------------------------- scores
def note_scores(dists, targets, pitches=None) -> dict:
    """Per-note arrays: ``bits`` and ``top1`` / ``top5`` (expected hits).

    ``dists`` is a list of {pitch: probability} dicts, or with ``pitches`` an (N, P) array
    over those pitches. A target outside a distribution, or with probability 0, is a miss.
    """
    targets = np.asarray(targets, dtype=np.int64)
    if pitches is None:
        pitches = sorted({int(p) for d in dists for p in d})
        col = {p: j for j, p in enumerate(pitches)}
        arr = np.zeros((len(dists), len(pitches)))
        for r, d in enumerate(dists):
            for p, x in d.items():
                arr[r, col[int(p)]] = x
    else:
        arr = np.asarray(dists, dtype=np.float64)
    pitches = np.asarray(list(pitches), dtype=np.int64)
    if arr.ndim != 2 or arr.shape != (len(targets), len(pitches)):
        raise ConfigError(f"need one distribution over {len(pitches)} pitches per target, got {arr.shape} "
                          f"for {len(targets)} targets")
    j = np.searchsorted(pitches, targets)
    inside = (j < len(pitches)) & (pitches[np.minimum(j, len(pitches) - 1)] == targets)
    pt = np.where(inside, arr[np.arange(len(targets)), np.minimum(j, len(pitches) - 1)], 0.0)
    greater = (arr > pt[:, None]).sum(1)
    equal = (arr == pt[:, None]).sum(1) - inside
    out = {"bits": -np.log2(np.maximum(pt, FLOOR))}
    for k in TOP_K:
        out[f"top{k}"] = np.where(pt > 0, np.clip((k - greater) / (equal + 1), 0, 1), 0.0)
    return out


def score_next_pitch(dists, targets, pitches=None) -> dict:
    """{top1, top5, bits_per_note, notes} over every target (see ``note_scores``)."""
    s = note_scores(dists, targets, pitches)
    n = len(s["bits"])
    mean = (lambda a: float(a.mean())) if n else (lambda a: math.nan)
    return {"top1": mean(s["top1"]), "top5": mean(s["top5"]), "bits_per_note": mean(s["bits"]), "notes": n}


__all__ = ["Melody", "melody_of", "nodup_filter", "IntervalModel", "short_term_dists", "entropy_bits",
           "combine", "idyom_dists", "model_dists", "note_scores", "score_next_pitch", "FLOOR"]
