"""What the accompaniment plays on a beat: a chord of the key, voiced for the role, chosen for
how well it will sound with what the player is likely to sound then.

``Outlook``: what the player will be sounding at the beat, as a distribution over sets of
pitches (the model's prediction of the next note, and the notes still held). For every
chord of the key (``key_chords``) the role's voicings are scored by their expected share of
consonant notes under the outlook (``consonance.consonant``, the benchmark's own rule), plus
small terms for the key's usual harmony, for the notes the player has played since the last
chord change, for staying on the same chord and for smooth voice leading. The best wins;
then, for chords, notes likely to clash are left out (at least two stay).

Roles: ``chords`` (a close triad, root position or first inversion, lowest note 48-60),
``bass`` (one chord tone, 33-55, the root preferred), ``counter`` (one chord tone, 50-76,
moving by step where it can, not doubling the player). ``answer`` is played by the model
itself (``live.listener``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cadenza.music.live.consonance import consonant_with_all

MAJOR_CHORDS = ((0, "maj", "I", 1.0), (2, "min", "ii", 0.5), (4, "min", "iii", 0.3), (5, "maj", "IV", 0.8),
                (7, "maj", "V", 0.9), (9, "min", "vi", 0.6), (11, "dim", "vii", 0.1), (10, "maj", "bVII", 0.1),
                (2, "maj", "V/V", 0.1))
MINOR_CHORDS = ((0, "min", "i", 1.0), (2, "dim", "ii", 0.2), (3, "maj", "III", 0.6), (5, "min", "iv", 0.7),
                (7, "maj", "V", 0.8), (7, "min", "v", 0.4), (8, "maj", "VI", 0.6), (10, "maj", "VII", 0.6),
                (5, "maj", "IV", 0.1))
QUALITY = {"maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6)}
RANGES = {"chords": (48, 76), "bass": (33, 55), "counter": (50, 76)}
DROP_BELOW = 0.65     # chords: a voice with less than this chance of sounding consonant is left out
W_PRIOR = 0.1         # weight of how usual a chord is in the key
W_RECENT = 0.3        # weight of the share of the notes since the last chord change that are its tones

# Krumhansl-Kessler key profiles, for a key found from the notes
KK_MAJOR = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
KK_MINOR = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)


@dataclass(frozen=True)
class Chord:
    root: int             # pitch class
    quality: str
    name: str             # the degree, e.g. "V"
    prior: float          # how usual it is in the key (0-1)

    @property
    def pcs(self) -> tuple:
        return tuple((self.root + i) % 12 for i in QUALITY[self.quality])


@dataclass
class Outlook:
    """What the player may be sounding at the beat: [(probability, pitches)], pitches a tuple
    (empty: silence). ``recent``: {pitch class: weight} of what they played since the last
    chord change."""

    scenarios: list
    recent: dict
    _odds: dict = field(default_factory=dict, repr=False)

    def sounding(self):
        return [(p, s) for p, s in self.scenarios if s]


@dataclass(frozen=True)
class Voicing:
    chord: Chord
    pitches: tuple
    score: float
    expected: float       # expected share of consonant notes


def key_chords(tonic: int, mode: str, pcs: set | None = None) -> list[Chord]:
    """The chords of a key; with ``pcs`` (a scale lock), only those whose notes all keep to it."""
    table = MAJOR_CHORDS if mode == "major" else MINOR_CHORDS
    out = [Chord((tonic + r) % 12, q, name, prior) for r, q, name, prior in table]
    if pcs is not None:
        out = [c for c in out if set(c.pcs) <= pcs] or out[:1]
    return out


def estimate_key(weights: dict, default: tuple[int, str]) -> tuple[int, str]:
    """The key whose Krumhansl-Kessler profile best matches the pitch-class ``weights``
    (``default`` until there is enough to go on)."""
    total = sum(weights.values())
    if total < 4:
        return default
    v = [weights.get(i, 0.0) for i in range(12)]
    best, key = -2.0, default
    for mode, prof in (("major", KK_MAJOR), ("minor", KK_MINOR)):
        for t in range(12):
            p = [prof[(i - t) % 12] for i in range(12)]
            r = _corr(v, p) + (0.05 if (t, mode) == default else 0.0)
            if r > best:
                best, key = r, (t, mode)
    return key


def _corr(a, b) -> float:
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    num = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    da = sum((x - ma) ** 2 for x in a) ** 0.5
    db = sum((y - mb) ** 2 for y in b) ** 0.5
    return num / (da * db) if da and db else 0.0


def note_odds(pitch: int, others: tuple, outlook: Outlook) -> float:
    """The chance that ``pitch`` (sounding with the accompaniment's ``others``) is consonant
    with what the player sounds at the beat, given that they sound something."""
    low = min(others) if others else 128
    key = (pitch, low if low < pitch else 128)      # only a lower accompaniment note changes the answer
    hit = outlook._odds.get(key)
    if hit is not None:
        return hit
    tot = good = 0.0
    for p, s in outlook.sounding():
        bass = min(min(s), pitch, low)
        tot += p
        good += p * consonant_with_all(pitch, s, bass)
    odds = outlook._odds[key] = good / tot if tot else 1.0
    return odds


def expected_share(pitches: tuple, outlook: Outlook) -> float:
    if not pitches:
        return 0.0
    return sum(note_odds(a, tuple(b for b in pitches if b != a), outlook) for a in pitches) / len(pitches)


def _above_player(pitches, outlook: Outlook) -> float:
    """P(the accompaniment's top note is above the player's lowest)."""
    tot = above = 0.0
    for p, s in outlook.sounding():
        tot += p
        above += p * (max(pitches) > min(s))
    return above / tot if tot else 0.0


def _fit_recent(chord: Chord, recent: dict) -> float:
    total = sum(recent.values())
    if total <= 0:
        return 0.0
    return sum(w for pc, w in recent.items() if pc in chord.pcs) / total


def _triads(chord: Chord, lo: int, hi: int):
    root_pcs = chord.pcs
    for inversion in (0, 1):
        pcs = root_pcs[inversion:] + root_pcs[:inversion]
        for base in range(lo, lo + 12):
            if base % 12 != pcs[0]:
                continue
            notes = [base]
            for pc in pcs[1:]:
                n = notes[-1] + 1
                while n % 12 != pc:
                    n += 1
                notes.append(n)
            if notes[-1] <= hi:
                yield tuple(notes)


def _movement(a: tuple, b: tuple) -> float:
    if not a or not b:
        return 0.0
    return sum(min(abs(x - y) for y in b) for x in a) / len(a)


def voicings(role: str, chord: Chord, prev: tuple, outlook: Outlook, scale: set | None):
    """(pitches, score) of every voicing of ``chord`` for ``role``."""
    lo, hi = RANGES[role]
    if role == "chords":
        for v in _triads(chord, lo, lo + 12 + 12):
            if v[-1] > hi:
                continue
            e = expected_share(v, outlook)
            yield v, e, e - 0.25 * _above_player(v, outlook) - 0.01 * _movement(v, prev)
        return
    for n in range(lo, hi + 1):
        if n % 12 not in chord.pcs or (scale is not None and n % 12 not in scale):
            continue
        v = (n,)
        e = note_odds(n, (), outlook)
        s = e
        if role == "bass":
            s += 0.15 * (n % 12 == chord.root) - 0.01 * _movement(v, prev)
        else:   # counter: by step where it can, below the player, not doubling them
            step = _movement(v, prev)
            s -= 0.03 * max(0.0, step - 2) + (0.1 if prev and step == 0 else 0.0)
            s -= 0.3 * _above_player(v, outlook) + 0.15 * _doubling(n, outlook)
        yield v, e, s


def _doubling(n: int, outlook: Outlook) -> float:
    tot = same = 0.0
    for p, s in outlook.sounding():
        tot += p
        same += p * any((n - q) % 12 == 0 for q in s)
    return same / tot if tot else 0.0


def choose(role: str, chords: list[Chord], outlook: Outlook, prev_chord: Chord | None, prev: tuple,
           scale: set | None, stay: float = 0.1) -> Voicing:
    """The best chord and voicing for the beat (see the module's docstring)."""
    best = None
    for c in chords:
        harmonic = W_PRIOR * c.prior + W_RECENT * _fit_recent(c, outlook.recent) + (stay if c == prev_chord else 0.0)
        for v, e, s in voicings(role, c, prev, outlook, scale):
            total = s + harmonic
            if best is None or total > best.score:
                best = Voicing(c, v, total, e)
    if best is None:                      # nothing in range (a scale lock that leaves no chord tone)
        return Voicing(chords[0], (), 0.0, 0.0)
    if role == "chords" and outlook.sounding():
        kept = list(best.pitches)
        while len(kept) > 2:
            odds = [note_odds(a, tuple(b for b in kept if b != a), outlook) for a in kept]
            worst = min(range(len(kept)), key=lambda i: odds[i])
            if odds[worst] >= DROP_BELOW:
                break
            kept.pop(worst)
        best = Voicing(best.chord, tuple(kept), best.score, expected_share(tuple(kept), outlook))
    return best
