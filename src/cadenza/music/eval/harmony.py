"""Harmony under a melody: do the added voices fit the melody, lead well and cadence?

The measures read a ``Texture``: the melody (one line, the top voice) and the added lower
voices, as note arrays in ticks (``texture_of`` takes them from a symusic score: the first
track is the melody, the others are the added voices). The same code measures Bach's own
lower voices under his soprano, ``cadenza harmonize``'s voices and a rule-based baseline, so
the rows of ``benchmarks/harmony.py`` are comparable.

- ``consonance``: each added note against the melody note sounding at its onset (the lowest
  melody pitch sounding then; notes under a melody rest are left out). The interval mod 12
  is consonant for a unison/octave (0), third (3, 4), perfect fifth (7) or sixth (8, 9); a
  perfect fourth (5) is counted separately, since it is consonant between upper voices.
  An added note above the melody counts in ``above`` (and its interval is measured upward).
- ``chord_fit``: at every beat (the metre's denominator; bars from the time signatures,
  from the first melody onset to the end of the last melody note) with at least two notes
  sounding, do the sounding pitch classes form a chord: all of them in one triad (major,
  minor, diminished, augmented), or, with three or more pitch classes, all in one seventh
  chord (dominant, major, minor, half-diminished, diminished)? Two pitch classes count only
  inside a triad, since every pair fits some seventh chord.
- ``voices``: the added notes are followed as ``n`` voices: at each onset, held notes keep
  their voice; the free voices that have sounded continue, in pitch order, to the new notes
  that move least from their last pitches (``chords.continue_voices``), and the other new
  notes take the unused voices, lowest first (more new notes than free voices: the extra
  ones are ``extra``). From them:
  per voice its lowest, highest and median pitch; ``crossings``: new notes that land above
  a sounding note of a higher voice (the melody included) or below one of a lower voice;
  ``spacing``: onsets where adjacent upper voices (melody-top voice, and between the added
  voices other than the lowest) are more than an octave apart.
- ``parallels``: between any two voices (the melody and the added ones), both moving at the
  same onset straight from their previous note (it ends where the new one starts) in the
  same direction, from a perfect fifth to a perfect fifth or from an octave/unison to an
  octave/unison (mod 12). Reported per 100 beats.
- ``final_chord``: the notes sounding at the piece's last onset are a tonic triad of the key
  (root, third of either size, so a Picardy third counts, fifth; at least the root) with
  the root in the bass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cadenza.music.chords import (CONSONANT, FOURTH, continue_voices, interval_class, is_chord, is_parallel,
                                  tonic_triad)

# The usual ranges of chorale voices (MIDI pitches), lowest voice first: bass, tenor, alto.
USUAL_RANGES = ((40, 62), (48, 69), (55, 76))


@dataclass(frozen=True)
class Line:
    """Notes as arrays in ticks, sorted by onset then pitch."""

    onset: np.ndarray
    end: np.ndarray
    pitch: np.ndarray

    @staticmethod
    def of(rows) -> "Line":
        rows = sorted((int(a), int(b), int(p)) for a, b, p in rows)
        arr = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
        return Line(arr[:, 0], np.maximum(arr[:, 1], arr[:, 0] + 1), arr[:, 2])

    def __len__(self) -> int:
        return len(self.pitch)

    def sounding(self, t: int) -> np.ndarray:
        """Pitches sounding at tick t (onset <= t < end)."""
        return self.pitch[(self.onset <= t) & (self.end > t)]


@dataclass(frozen=True)
class Texture:
    """A melody and the voices added under it, in ticks (``tpq`` per quarter), with the
    time signatures as (tick, numerator, denominator)."""

    melody: Line
    added: Line
    tpq: int
    sigs: tuple = ((0, 4, 4),)
    key: tuple | None = None          # (tonic pitch class, "major" | "minor")

    @property
    def span(self) -> tuple[int, int]:
        if not len(self.melody):
            return 0, 0
        return int(self.melody.onset.min()), int(self.melody.end.max())


def texture_of(score, key=None, melody_track: int = 0) -> Texture:
    """The ``Texture`` of a symusic score (tick time): track ``melody_track`` is the melody, the
    other pitched tracks the added voices. ``key``: "G", "F#m" or (tonic, mode)."""
    from cadenza.codecs.music.features import parse_key

    if not str(getattr(score, "ttype", "tick")).lower().endswith("tick"):
        score = score.to("tick")
    tracks = [t for t in score.tracks if not t.is_drum]
    mel, add = [], []
    for i, t in enumerate(tracks):
        rows = [(n.time, n.time + max(1, n.duration), n.pitch) for n in t.notes]
        (mel if i == melody_track else add).extend(rows)
    sigs = sorted((int(s.time), int(s.numerator), int(s.denominator)) for s in score.time_signatures)
    if not sigs or sigs[0][0] > 0:
        sigs.insert(0, (0, 4, 4))
    if isinstance(key, str):
        key = parse_key(key)
    return Texture(Line.of(mel), Line.of(add), int(score.ticks_per_quarter), tuple(sigs), key)


# --------------------------------------------------------------------------- beats
def beats(tex: Texture) -> np.ndarray:
    """Beat ticks (the metre's denominator) from the first melody onset to the last melody end."""
    lo, hi = tex.span
    out = []
    t, k = 0, 0
    sigs = list(tex.sigs)
    while t < hi:
        while k + 1 < len(sigs) and sigs[k + 1][0] <= t:
            k += 1
        _, num, den = sigs[k]
        step = max(1, tex.tpq * 4 // den)
        for j in range(num):
            b = t + j * step
            if lo <= b < hi:
                out.append(b)
        t += num * step
    return np.asarray(out, dtype=np.int64)


# --------------------------------------------------------------------------- the measures
def consonance(tex: Texture) -> dict:
    """Counts of added notes by their interval with the melody at their onset."""
    out = {"added": 0, "measured": 0, "consonant": 0, "fourth": 0, "above": 0, "under_rest": 0}
    for t, p in zip(tex.added.onset, tex.added.pitch):
        out["added"] += 1
        mel = tex.melody.sounding(int(t))
        if not len(mel):
            out["under_rest"] += 1
            continue
        m = int(mel.min())
        out["measured"] += 1
        out["above"] += int(p) > m
        ic = interval_class(int(p), m)
        out["consonant"] += ic in CONSONANT
        out["fourth"] += ic == FOURTH
    return out


def chord_fit(tex: Texture) -> dict:
    """Beats with at least two notes sounding, and how many of them form a chord."""
    counted = fit = 0
    for b in beats(tex):
        sounding = np.concatenate([tex.melody.sounding(int(b)), tex.added.sounding(int(b))])
        if len(sounding) < 2:
            continue
        counted += 1
        fit += is_chord(sounding)
    return {"beats": counted, "fit": fit}


@dataclass
class Voices:
    """The added notes followed as voices (see the module doc)."""

    n: int
    notes: list = field(default_factory=list)      # per voice: [(onset, end, pitch)]
    extra: int = 0
    crossings: int = 0
    spacing: int = 0
    onsets: int = 0


def _assign(free: list[int], current: list, new: list) -> list:
    """The free voice each new note (sorted by pitch) goes to, or None: voices that have sounded
    continue to the new notes that move least (``continue_voices``), the rest take the unused
    voices lowest first."""
    used = sorted((current[k][2], k) for k in free if current[k] is not None)
    fresh = [k for k in free if current[k] is None]
    by_prev: dict[int, list[int]] = {}
    for p, k in used:
        by_prev.setdefault(p, []).append(k)
    out, left = [], []
    for prev, q in continue_voices([p for p, _ in used], [x[2] for x in new]):
        if prev is None:
            out.append(None)
            left.append(len(out) - 1)
        else:
            out.append(by_prev[prev].pop(0))
    spare = fresh + [k for ks in by_prev.values() for k in ks]
    for i, k in zip(left, sorted(spare)):
        out[i] = k
    return out


def follow_voices(tex: Texture, n: int) -> Voices:
    v = Voices(n, [[] for _ in range(n)])
    current: list = [None] * n                  # the note each voice sounds (or last sounded)
    order = np.lexsort((tex.added.pitch, tex.added.onset))
    on, en, pi = tex.added.onset[order], tex.added.end[order], tex.added.pitch[order]
    times = np.unique(np.concatenate([on, tex.melody.onset]))
    j = 0
    for t in times:
        t = int(t)
        new = []
        while j < len(on) and on[j] == t:
            new.append((t, int(en[j]), int(pi[j])))
            j += 1
        free = [k for k in range(n) if current[k] is None or current[k][1] <= t]
        for note, k in zip(new, _assign(free, current, new)):
            if k is None:
                v.extra += 1
                continue
            current[k] = note
            v.notes[k].append(note)
        sounding = [(k, c[2]) for k, c in enumerate(current) if c is not None and c[0] <= t < c[1]]
        mel = tex.melody.sounding(t)
        top = int(mel.min()) if len(mel) else None
        for k, c in enumerate(current):
            if c is None or c[0] != t:
                continue
            higher = [p for kk, p in sounding if kk > k] + ([top] if top is not None else [])
            lower = [p for kk, p in sounding if kk < k]
            v.crossings += any(c[2] > p for p in higher) or any(c[2] < p for p in lower)
        if len(sounding) >= 2 or (sounding and top is not None):
            v.onsets += 1
            upper = [p for _, p in sorted(sounding)][1:]          # the added voices above the lowest
            chain = upper + ([top] if top is not None else [])
            v.spacing += any(b - a > 12 for a, b in zip(chain, chain[1:]))
    return v


def voice_ranges(v: Voices) -> list[dict]:
    """Per voice (lowest first): notes, lowest, highest and median pitch, and the share of its
    notes outside the usual chorale range (bass, tenor, alto; for three voices)."""
    out = []
    for k, notes in enumerate(v.notes):
        p = np.asarray([x[2] for x in notes], dtype=np.int64)
        row = {"notes": int(len(p)), "low": int(p.min()) if len(p) else None,
               "high": int(p.max()) if len(p) else None, "median": float(np.median(p)) if len(p) else None}
        if v.n == len(USUAL_RANGES) and len(p):
            lo, hi = USUAL_RANGES[k]
            row["outside_usual"] = float(((p < lo) | (p > hi)).mean())
        out.append(row)
    return out


def parallels(tex: Texture, v: Voices) -> dict:
    """Parallel fifths and octaves between any two voices (the melody's and the added ones)."""
    lines = [list(zip(tex.melody.onset.tolist(), tex.melody.end.tolist(), tex.melody.pitch.tolist()))]
    lines += [sorted(x) for x in v.notes]
    moves = []      # per voice: {onset: (previous pitch, new pitch)} where it moves straight on
    for line in lines:
        m = {}
        for a, b in zip(line, line[1:]):
            if a[1] == b[0] and a[2] != b[2]:
                m[b[0]] = (a[2], b[2])
        moves.append(m)
    fifths = octaves = 0
    for i in range(len(moves)):
        for j in range(i + 1, len(moves)):
            for t in moves[i].keys() & moves[j].keys():
                (a1, a2), (b1, b2) = moves[i][t], moves[j][t]
                if is_parallel(a1, a2, b1, b2):
                    fifths += interval_class(a2, b2) == 7
                    octaves += interval_class(a2, b2) == 0
    return {"fifths": fifths, "octaves": octaves}


def final_chord(tex: Texture) -> dict:
    """The chord at the last onset: its pitches, whether it is the tonic triad with the root in
    the bass (None without a key)."""
    if not len(tex.melody) and not len(tex.added):
        return {"pitches": [], "tonic": None}
    last = int(max(tex.melody.onset.max(initial=0), tex.added.onset.max(initial=0)))
    pitches = sorted(np.concatenate([tex.melody.sounding(last), tex.added.sounding(last)]).tolist())
    if tex.key is None or not pitches:
        return {"pitches": pitches, "tonic": None}
    tonic = int(tex.key[0])
    allowed = tonic_triad(tonic)
    pcs = {p % 12 for p in pitches}
    ok = pcs <= allowed and tonic in pcs and pitches[0] % 12 == tonic and not {(tonic + 3) % 12,
                                                                               (tonic + 4) % 12} <= pcs
    return {"pitches": pitches, "tonic": bool(ok)}


@dataclass
class HarmonyMeasures:
    """Every measure of one harmonized melody (counts, so pieces pool by summing)."""

    consonance: dict
    chord_fit: dict
    parallels: dict
    beats: int
    ranges: list
    crossings: int
    spacing: int
    onsets: int
    extra: int
    final: dict

    def to_dict(self) -> dict:
        return {"consonance": self.consonance, "chord_fit": self.chord_fit, "parallels": self.parallels,
                "beats": self.beats, "ranges": self.ranges, "crossings": self.crossings, "spacing": self.spacing,
                "onsets": self.onsets, "extra": self.extra, "final": self.final}


def measure(tex: Texture, voices: int = 3) -> HarmonyMeasures:
    v = follow_voices(tex, voices)
    return HarmonyMeasures(consonance=consonance(tex), chord_fit=chord_fit(tex), parallels=parallels(tex, v),
                           beats=int(len(beats(tex))), ranges=voice_ranges(v), crossings=v.crossings,
                           spacing=v.spacing, onsets=v.onsets, extra=v.extra, final=final_chord(tex))


def summarize(rows: list[HarmonyMeasures]) -> dict:
    """The measures pooled over pieces: shares of the summed counts."""
    def total(get):
        return sum(get(r) for r in rows)

    measured = total(lambda r: r.consonance["measured"])
    beats_ = total(lambda r: r.beats)
    fit_beats = total(lambda r: r.chord_fit["beats"])
    onsets = total(lambda r: r.onsets)
    ends = [r.final["tonic"] for r in rows if r.final["tonic"] is not None]
    added = total(lambda r: r.consonance["added"])
    out = {
        "pieces": len(rows), "added_notes": added, "beats": beats_,
        "consonant": total(lambda r: r.consonance["consonant"]) / measured if measured else None,
        "consonant_or_fourth": total(lambda r: r.consonance["consonant"] + r.consonance["fourth"]) / measured
        if measured else None,
        "above_melody": total(lambda r: r.consonance["above"]),
        "chord_fit": total(lambda r: r.chord_fit["fit"]) / fit_beats if fit_beats else None,
        "parallel_fifths_per_100_beats": 100 * total(lambda r: r.parallels["fifths"]) / beats_ if beats_ else None,
        "parallel_octaves_per_100_beats": 100 * total(lambda r: r.parallels["octaves"]) / beats_ if beats_ else None,
        "crossings_per_100_notes": 100 * total(lambda r: r.crossings) / added if added else None,
        "spacing_share": total(lambda r: r.spacing) / onsets if onsets else None,
        "tonic_endings": sum(ends) / len(ends) if ends else None,
    }
    out["parallels_per_100_beats"] = (None if beats_ == 0 else
                                      out["parallel_fifths_per_100_beats"] + out["parallel_octaves_per_100_beats"])
    n_voices = max((len(r.ranges) for r in rows), default=0)
    out["ranges"] = []
    for k in range(n_voices):
        lows = [r.ranges[k]["low"] for r in rows if k < len(r.ranges) and r.ranges[k]["low"] is not None]
        highs = [r.ranges[k]["high"] for r in rows if k < len(r.ranges) and r.ranges[k]["high"] is not None]
        meds = [r.ranges[k]["median"] for r in rows if k < len(r.ranges) and r.ranges[k]["median"] is not None]
        outs = [(r.ranges[k]["outside_usual"], r.ranges[k]["notes"]) for r in rows
                if k < len(r.ranges) and "outside_usual" in r.ranges[k]]
        n_out = sum(n for _, n in outs)
        out["ranges"].append({"low": min(lows) if lows else None, "high": max(highs) if highs else None,
                              "median": float(np.median(meds)) if meds else None,
                              "outside_usual": sum(s * n for s, n in outs) / n_out if n_out else None})
    return out

