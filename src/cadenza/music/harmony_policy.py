"""The grammar policy of ``harmonize``: the melody forced, voices added below it under a
texture's rules (``HarmonyPolicy``; the textures are in ``textures``), and the melody's bars
parsed from tokens.

The rules only ever take pitches or durations away from what the model may write, and each
is dropped where it would leave nothing (so a piece always decodes): the model still chooses
among what is left. Measured by ``benchmarks/harmony.py`` (``docs/music.md``).
"""

from __future__ import annotations

import bisect
from typing import NamedTuple

import torch

from cadenza.music.chords import (CONSONANT, FOURTH, continue_voices, interval_class, is_chord, is_parallel,
                                  tonic_triad)
from cadenza.music.grammar import (BAR, DRUM, DUR, MOOD, PITCH, POS, PROG, TS, VEL, GrammarPolicy, Note,
                                   RemiState, RemiTables)
from cadenza.music.textures import TEXTURES, Texture


class NoteTokens(NamedTuple):
    """A given note as the token ids that write it (the Program and Velocity in force)."""
    program: int
    pitch: int
    velocity: int
    duration: int


class _MelodyBar:
    __slots__ = ("ts", "onsets")

    def __init__(self):
        self.ts = None
        self.onsets: dict[int, list[NoteTokens]] = {}   # Position -> the given notes there


class HarmonyPolicy(GrammarPolicy):
    """Constrained decoding for ``harmonize``: the given notes are forced, the model adds voices.

    Bar lines and metres are the input's. At each onset of a given note (the melody's, and
    with ``--keep`` the kept lower voices') that note must be written (Program, Pitch,
    Velocity and Duration forced); besides them the model may write notes on ``program``:

    - strictly below the melody (below the lowest melody note sounding or starting at that
      time, or the latest melody note when the melody rests) and at most ``span`` semitones
      under it, never doubling a sounding accompaniment pitch;
    - at most ``voices`` accompaniment notes sounding at once (kept notes count), all
      starting between the melody's first onset and the end of its last note;
    - where the texture wants a full chord (every melody onset for a chorale) the position
      cannot be left until ``voices`` accompaniment notes sound (or no pitch is left);
    - elsewhere the model may add notes (passing notes, moving inner voices) within the same
      limits, where the texture lets voices start; it cannot skip a forced onset or bar line.

    With the texture's rules (``_rule_pitches``, ``_rule_durations``): a note starting at a
    melody onset or on a beat is consonant with the melody (a fourth only above another
    voice) and forms a triad or seventh chord with what sounds; off the beat it is consonant
    or a step from a voice that just ended (``passing``); no two voices move in parallel
    fifths or octaves; the cadence: from the melody's onset before its last the voices sound
    the dominant (seventh) chord with its root in the bass, where the melody fits it, and
    from the last onset on the final tonic chord (``final_root``: the key's tonic, or the
    melody's last note when that is not in the tonic triad) with its root in the bass; a held
    note is not dissonant with a later melody note on a beat, nor held into the final chord.
    """

    def __init__(self, remi: RemiTables, bars: list, melody_notes: list[Note], voices: int, program: int,
                 span: int = 36, texture: Texture | None = None, kept_notes: list[Note] = (), tonic: int | None = None,
                 minor: bool = False):
        super().__init__(remi, programs=None)
        self.bars_info = bars
        self.voices = voices
        self.acc_program = program
        self.span = span
        self.texture = texture or TEXTURES["free"]
        kept = sorted(n for n in kept_notes if n.program != -1)
        self.kept = kept                                                  # forced lower voices (--keep)
        self.mel_keys = {n.key for n in list(melody_notes) + kept}   # every forced note
        self.melody = sorted(n for n in melody_notes if n.program != -1)   # the pitched Notes
        self.starts = [n.onset for n in self.melody]
        self.start_set = set(self.starts)
        self.kept_starts = [n.onset for n in kept]
        self.max_dur = max([n.duration for n in self.melody + kept] + [remi.tpq * 16])
        self.m_acc_prog = remi.one(remi.program_ids[program])
        lo, hi = remi.codec.config.pitch_range
        self.pitch_lo = lo
        # Accompaniment notes start within the melody: from its first onset to its last note's end.
        self.first_onset = self.starts[0] if self.starts else 0
        self.last_end = max((n.onset + n.duration for n in self.melody), default=0)
        self.last_onset = self.starts[-1] if self.starts else 0
        self.bar_starts, t = [], 0
        for b in bars:
            self.bar_starts.append(t)
            t += remi.bar_ticks(b.ts)
        self._recent_key = self._memo_key = (None, -1)       # per-state memos (a state and its token count)
        self._recent: list = []
        self._memo: list = []
        self.final = None
        self.penultimate = self.starts[-2] if len(self.starts) > 1 else self.last_onset
        if self.melody and tonic is not None:
            self.final = final_root(tonic, minor, self.melody[-1].pitch)

    # ---- time ----------------------------------------------------------------------
    def _beat(self, t: int) -> tuple[bool, bool]:
        """(on a beat, on a strong beat): the downbeat, the middle of 4-beat bars, every third
        beat of 6, 9 and 12."""
        b = bisect.bisect_right(self.bar_starts, t) - 1
        if b < 0:
            return False, False
        num, den = self.bars_info[b].ts
        step = self.remi.ticks_per_beat(den)
        off = t - self.bar_starts[b]
        if off % step:
            return False, False
        every = 3 if num in (6, 9, 12) else 2 if num == 4 else num
        return True, (off // step) % every == 0

    def _complete_here(self, t: int) -> bool:
        """Must the chord be complete at t (a melody onset the texture harmonizes in full)?"""
        if t not in self.start_set:
            return False
        return self.texture.complete == "melody" or t == self.first_onset or self._beat(t)[1]

    # ---- what sounds ---------------------------------------------------------------
    def _melody_ceiling(self, t: int) -> int | None:
        """Lowest melody pitch sounding or starting at t; else the latest melody pitch before t."""
        i = bisect.bisect_right(self.starts, t)
        sounding = [n.pitch for n in self.melody[max(0, i - 64):i] if n.onset + n.duration > t or n.onset == t]
        if sounding:
            return min(sounding)
        if i > 0:
            return self.melody[i - 1].pitch
        return self.melody[0].pitch if self.melody else None

    def _melody_sounding(self, t: int) -> list[tuple]:
        i = bisect.bisect_right(self.starts, t)
        return [n for n in self.melody[max(0, i - 64):i] if n.onset + n.duration > t]

    def _acc_recent(self, s: RemiState) -> list[tuple]:
        """Generated accompaniment notes that started recently enough to be sounding now."""
        if self._recent_key[0] is s and self._recent_key[1] == s.n:
            return self._recent
        t = s.onset
        out = []
        self._recent_key, self._recent = (s, s.n), out
        for n in reversed(s.notes[-256:]):
            if n.onset < t - self.max_dur:
                break
            if n.key not in self.mel_keys:
                out.append(n)
        return out

    def _kept_sounding(self, t: int) -> list[int]:
        i = bisect.bisect_right(self.kept_starts, t)
        return [n.pitch for n in self.kept[max(0, i - 64):i] if n.onset + n.duration > t]

    def _acc_sounding(self, s: RemiState) -> list[int]:
        t = s.onset
        return [n.pitch for n in self._acc_recent(s)
                if n.onset <= t < n.onset + n.duration] + self._kept_sounding(t)

    def _acc_pitches(self, s: RemiState) -> list[int]:
        """Accompaniment pitches allowed now ([] when no voice is free)."""
        t = s.onset
        if not self.first_onset <= t < self.last_end:
            return []
        if self.texture.starts == "complete" and not self._complete_here(t):
            return []
        sounding = self._acc_sounding(s)
        if len(sounding) >= self.voices:
            return []
        ceiling = self._melody_ceiling(t)
        if ceiling is None:
            return []
        lo = max(self.pitch_lo, ceiling - self.span)
        taken = set(sounding)
        pitches = [p for p in range(lo, ceiling) if p not in taken and p in self.remi.pitch_ids]
        if self.texture.rules and pitches:
            if not (self._memo_key[0] is s and self._memo_key[1] == s.n):
                self._memo_key, self._memo = (s, s.n), self._rule_pitches(s, pitches, sounding, ceiling)
            return self._memo
        return pitches

    # ---- the texture's rules ---------------------------------------------------------
    def _rule_pitches(self, s: RemiState, pitches: list[int], sounding: list[int], melody: int) -> list[int]:
        tex, t = self.texture, s.onset
        recent = self._acc_recent(s)
        ended = [n.pitch for n in recent if n.onset + n.duration == t]     # voices that just moved on
        moved = [n.pitch for n in recent if n.onset == t]                  # notes already written here
        on_beat = self._beat(t)[0] or t in self.start_set
        low = min(sounding, default=None)
        mel_now = [n.pitch for n in self._melody_sounding(t)] or [melody]

        def fits_melody(p):
            ic = interval_class(p, melody)
            return ic in CONSONANT or (ic == FOURTH and low is not None and low < p)

        def step_from_voice(p):
            return any(0 < abs(p - e) <= 2 for e in ended)

        def chord(p):
            return is_chord([*mel_now, *sounding, p], tex.sevenths)

        mel_prev = self._melody_before(t)
        mel_moves = mel_prev is not None and mel_prev != melody

        def no_parallels(p):
            if not ended:
                return True
            pairs = [(a, b) for a, b in continue_voices(ended, [*moved, p]) if a is not None and a != b]
            if mel_moves:
                pairs.append((mel_prev, melody))
            return not any(is_parallel(*pairs[i], *pairs[j]) for i in range(len(pairs))
                           for j in range(i + 1, len(pairs)))

        held = [n.pitch for n in recent if n.onset < t < n.onset + n.duration] + self._kept_sounding(t)

        def no_crossing(p):
            a = next((a for a, b in continue_voices(ended, [*moved, p]) if b == p), None) if ended else None
            return a is None or all((a < h) == (p < h) for h in held if h != a)

        rules = []
        cadence = self._cadence(t)
        if cadence is not None:
            root, tones = cadence
            rules.append(lambda p: p % 12 in tones and (p % 12 == root or (low is not None and low < p)))
        if on_beat or not tex.passing:
            rules.append(fits_melody)
            rules.append(chord)
        else:
            rules.append(lambda p: fits_melody(p) or step_from_voice(p))
        rules.append(no_crossing)
        rules.append(no_parallels)
        for rule in rules:
            kept = [p for p in pitches if rule(p)]
            if kept:
                pitches = kept
        return pitches

    def _cadence(self, t: int) -> tuple[int, frozenset] | None:
        """(root, pitch classes) of the chord the cadence wants at t: the tonic triad from the
        melody's last onset on, the dominant (seventh) from the onset before it, where the
        melody's notes fit them; None elsewhere."""
        if self.final is None or t < self.penultimate:
            return None
        if t >= self.last_onset:
            return self.final, tonic_triad(self.final)
        dom = (self.final + 7) % 12
        tones = frozenset({dom, (dom + 4) % 12, (dom + 7) % 12, (dom + 10) % 12})
        if any(n.pitch % 12 not in tones for n in self._melody_sounding(t)):
            return None
        return dom, tones

    def _melody_before(self, t: int) -> int | None:
        """The melody pitch that ends at t where a melody note starts at t (None otherwise)."""
        i = bisect.bisect_left(self.starts, t)
        if i == 0 or i >= len(self.starts) or self.starts[i] != t:
            return None
        prev = self.melody[i - 1]
        return prev.pitch if prev.onset + prev.duration == t else None

    def _rule_durations(self, s: RemiState) -> torch.Tensor:
        """Durations that do not hold the note into a later melody note on a beat it is dissonant with,
        nor into the final chord."""
        r, t, p = self.remi, s.onset, s.pitch
        m = self.m_dur.clone()
        i = bisect.bisect_right(self.starts, t)
        later = [n for n in self.melody[i:i + 64] if n.onset < t + self.max_dur and self._beat(n.onset)[0]]
        bad = [n.onset for n in later
               if interval_class(p, n.pitch) not in CONSONANT and interval_class(p, n.pitch) != FOURTH]
        if t < self.last_onset and self.final is not None:
            bad.append(self.last_onset)             # every voice moves to the final chord together
        if not bad:
            return m
        limit = min(bad) - t
        ok = [d for d in self._dur_ids if r.duration_ticks(d, s.ts[1]) <= limit]
        if not ok:
            return m
        return r.mask_of(ok)

    # ---- the policy --------------------------------------------------------------------
    def _pending(self, s: RemiState) -> list[tuple]:
        """Given notes at the current onset not yet written."""
        if s.pos < 0 or s.bars < 1 or s.bars > len(self.bars_info):
            return []
        want = self.bars_info[s.bars - 1].onsets.get(s.pos)
        if not want:
            return []
        done = {(n.pitch, n.program) for n in s.notes[len(s.notes) - s.notes_here:]} if s.notes_here else set()
        return [w for w in want if (self.remi.value[w.pitch], self.remi.value[w.program]) not in done]

    def _note_start(self, s: RemiState, pending, acc_ok: bool) -> torch.Tensor:
        """A note may begin: a pending given note or an accompaniment note, each written
        as a Pitch on the instrument in force or as a change of Program."""
        r = self.remi
        m = torch.zeros(r.vocab_size, dtype=torch.bool)
        for w in pending:
            m[w.pitch if r.value[w.program] == s.program else w.program] = True
        if acc_ok:
            if s.program == self.acc_program:
                m |= r.mask_of(r.pitch_ids[p] for p in self._acc_pitches(s))
            else:
                m |= self.m_acc_prog
        return m

    @property
    def _dur_ids(self) -> list[int]:
        ids = getattr(self, "_dur_list", None)
        if ids is None:
            ids = self._dur_list = [int(i) for i in self.m_dur.nonzero().flatten()]
        return ids

    def _acc_duration(self, s: RemiState) -> torch.Tensor:
        return self._rule_durations(s) if self.texture.rules else self.m_dur

    def allowed(self, s: RemiState) -> torch.Tensor:
        r = self.remi
        if not s.in_body:
            return self.m_bar if s.prefix_done else super().allowed(s)
        last = s.last
        if last == BAR:
            ts = self.bars_info[s.bars - 1].ts
            if ts != s.ts:
                return r.one(r.ts_ids[ts])
            return self.m_mood if s.mood_due else self._onset_choices(s)
        if last == TS:
            return self.m_mood if s.mood_due else self._onset_choices(s)
        if last == POS:
            return self._note_start(s, self._pending(s), bool(self._acc_pitches(s)))
        if last == PROG:
            m = r.mask_of(w.pitch for w in self._pending(s) if r.value[w.program] == s.program)
            if s.program == self.acc_program:
                acc = self._acc_pitches(s)
                if acc:
                    m |= r.mask_of(r.pitch_ids[p] for p in acc)
            return m
        if last in (PITCH, DRUM):
            w = self._current_given_note(s)
            if w is not None:
                return r.one(w.duration) if r.value[w.velocity] == s.vel else r.one(w.velocity)
            if s.vel is None:
                return self.m_vel
            m = self.m_vel | self._acc_duration(s)
            m[r.vel_ids[s.vel]] = False
            return m
        if last == VEL:
            w = self._current_given_note(s)
            return r.one(w.duration) if w is not None else self._acc_duration(s)
        if last in (MOOD, DUR):
            return self._onset_choices(s)
        return self.m_eos

    def _current_given_note(self, s: RemiState):
        for w in self._pending(s):
            if self.remi.value[w.program] == s.program and self.remi.value[w.pitch] == s.pitch:
                return w
        return None

    def _onset_choices(self, s: RemiState) -> torch.Tensor:
        r = self.remi
        pending = self._pending(s) if s.last == DUR else []
        can_add = s.last == DUR and s.notes_here < self.max_notes_per_onset and bool(self._acc_pitches(s))
        if pending:
            return self._note_start(s, pending, can_add)
        info = self.bars_info[s.bars - 1]
        if s.last == DUR and s.pos in info.onsets and can_add and self._complete_here(s.onset):
            return self._note_start(s, [], True)      # harmonize this melody note first
        m = self._note_start(s, [], True) if can_add else torch.zeros(r.vocab_size, dtype=torch.bool)
        later = [q for q in info.onsets if q > s.pos]
        nxt = min(later) if later else None
        # Positions before the next given onset only where a new accompaniment note may start.
        ends = sorted(n.onset + n.duration for n in self._acc_recent(s) if n.onset + n.duration > s.onset)
        step = r.position_ticks(s.ts[1])
        hi = nxt if nxt is not None else r.bar_positions(s.ts)
        blocks = self.texture.starts == "complete"
        for q in range(s.pos + 1, hi):
            t = s.bar_start + q * step
            busy = len(ends) - bisect.bisect_right(ends, t) + len(self._kept_sounding(t))
            ceiling = self._melody_ceiling(t)
            if (busy < self.voices and ceiling is not None and ceiling - 1 >= self.pitch_lo
                    and self.first_onset <= t < self.last_end and not blocks):
                m[r.pos_ids[q]] = True
        if nxt is not None:
            m[r.pos_ids[nxt]] = True
        else:
            m[r.bar if s.bars < len(self.bars_info) else r.eos] = True
        return m


def final_root(tonic: int, minor: bool, last_pitch: int) -> int:
    """The root of the final chord under a melody ending on ``last_pitch`` in a key: the tonic
    where the last note is in the tonic triad, else the last note itself (a modal or
    mis-estimated key); a minor key's melody ending on its relative major's tonic ends there.
    On Bach's chorales (the melody's own key estimate) this is his final bass 93% of the time."""
    last, tonic = int(last_pitch) % 12, int(tonic) % 12
    if minor and last == (tonic + 3) % 12:
        return last
    return tonic if last in tonic_triad(tonic) else last


def parse_melody(remi: RemiTables, body: list[int], ts0) -> list[_MelodyBar]:
    """Bars of a lean body: each bar's metre and its notes by Position as
    ``NoteTokens``, with the Program and Velocity in force."""
    bars: list[_MelodyBar] = []
    pos = -1
    ts = tuple(ts0)
    prog = vel = pitch = None
    for i in body:
        k = remi.kind[i]
        if k == BAR:
            bars.append(_MelodyBar())
            bars[-1].ts = ts
            pos = -1
        elif k == TS:
            ts = remi.value[i]
            bars[-1].ts = ts
        elif k == POS:
            pos = remi.value[i]
        elif k == PROG:
            prog = i
        elif k in (PITCH, DRUM):
            pitch = i
        elif k == VEL:
            vel = i
        elif k == DUR:
            bars[-1].onsets.setdefault(pos, []).append(NoteTokens(prog, pitch, vel, i))
    return bars
