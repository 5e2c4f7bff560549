"""Grammar policies for generation: a length target, the input's last bar kept closed, the
``--max-copy`` guard, and harmony under a melody (``HarmonyPolicy``)."""

from __future__ import annotations

import bisect
import math

import torch

from cadenza.music.inputs import CLOSE_EARLY, CLOSE_LATE
from cadenza.music.grammar import BAR, DRUM, DUR, MOOD, PITCH, POS, PROG, TS, VEL, GrammarPolicy, RemiTables, RemiState


# --------------------------------------------------------------------------- length
class LengthTarget:
    """When to stop: after ``bars`` new bars or at ``seconds`` of new music (from ``origin``).

    ``close``: the piece is given the chance to end rather than being cut. With ``bars`` = N,
    the model may write the end-of-piece token from bar N - 1 on, but only right after a note
    on the tonic of the piece's key (the last note written, the top of its chord), and the
    piece is cut at the bar line after bar N + 2 if the model has not ended it by then. With
    ``seconds``, the end is allowed past 90% of the time, on the tonic, up to the limit.
    Without ``close``: exactly N bars (EOS allowed in the last one), or up to ``seconds``.
    """

    def __init__(self, remi: RemiTables, bars=None, seconds=None, qpm=None, origin_ticks=0, bars0=0,
                 close: bool = False):
        self.remi, self.bars, self.seconds = remi, bars, seconds
        self.qpm = qpm                      # None: the prefix's tempo, once it is known
        self.origin = origin_ticks
        self.bars0 = bars0
        self.close = close
        self.limit = None                   # seconds -> ticks, once the tempo is known
        self._tonic = False                 # the key's tonic pitch class, once the key is known

    def tempo(self, s: RemiState) -> float:
        if self.qpm is None:
            i = s.prefix.get("tempo")
            return float(self.remi.value[i]) if i is not None else 120.0
        return float(self.qpm)

    def limit_ticks(self, s: RemiState):
        if self.seconds is None:
            return None
        if self.limit is None:
            self.limit = self.origin + int(math.ceil(self.seconds * self.tempo(s) / 60.0 * self.remi.tpq - 1e-9))
        return self.limit

    def tonic(self, s: RemiState) -> int | None:
        """Pitch class of the tonic of the piece's key (None where the prefix names none)."""
        if self._tonic is False:
            from cadenza.codecs.music.features import parse_key

            i = s.prefix.get("key")
            self._tonic = parse_key(self.remi.value[i])[0] if i is not None and self.remi.value[i] else None
        return self._tonic

    def on_tonic(self, s: RemiState) -> bool:
        """The last note written is a pitched note on the tonic (True where the key is unknown)."""
        tonic = self.tonic(s)
        note = s.last_note
        if tonic is None:
            return True
        return note is not None and note[3] != -1 and note[2] % 12 == tonic

    def eos_ok(self, s: RemiState) -> bool:
        if not s.in_body:
            return False
        if self.bars is not None:
            done = s.bars - self.bars0
            if not self.close:
                return done >= self.bars
            return done >= self.bars - CLOSE_EARLY and self.on_tonic(s)
        if self.seconds is not None:
            lim = self.limit_ticks(s)
            return s.onset >= self.origin + 0.9 * (lim - self.origin) and (not self.close or self.on_tonic(s))
        return True

    @property
    def most_bars(self) -> int | None:
        """The most new bars a piece may have (N, or N + CLOSE_LATE when closing)."""
        return None if self.bars is None else self.bars + (CLOSE_LATE if self.close else 0)

    def stops_before(self, tok: int, s: RemiState) -> bool:
        """Would ``tok`` (not yet fed to ``s``) go past the target?"""
        kind = self.remi.kind[tok]
        if kind == BAR and s.in_body:
            if self.bars is not None and s.bars + 1 - self.bars0 > self.most_bars:
                return True
            lim = self.limit_ticks(s)
            return lim is not None and s.next_bar_start() >= lim
        if kind == POS and self.seconds is not None:
            return s.position_onset(self.remi.value[tok]) >= self.limit_ticks(s)
        return False

    def progress(self, s: RemiState) -> float:
        if self.bars is not None:
            return max(0, s.bars - self.bars0 - 1) if s.in_body else 0
        lim = self.limit_ticks(s) if s.in_body else None
        if lim is None:
            return 0.0
        return max(0.0, self.remi.seconds(s.onset - self.origin, self.tempo(s)))


class LengthPolicy(GrammarPolicy):
    """The plain grammar with EOS allowed only once the target allows it."""

    def __init__(self, remi, target: LengthTarget, **kw):
        super().__init__(remi, **kw)
        self.target = target

    def onset_choices(self, s):
        self.allow_eos = self.target.eos_ok(s)
        return super().onset_choices(s)


class _NoMoreInBar:
    """A policy whose first choice in the body is the bar line (the input's last bar is complete)."""

    def __init__(self, inner):
        self.inner, self.remi = inner, inner.remi
        self._bars = None

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def allowed(self, s: RemiState) -> torch.Tensor:
        if self._bars is None:
            self._bars = s.bars
        if s.bars == self._bars and s.in_body and s.last in (DUR, MOOD):
            return self.remi.one(self.remi.bar)
        return self.inner.allowed(s)


class _GuardedPolicy:
    """A policy with ``--max-copy``: the pitches a ``CopyGuard`` bans are not allowed. It
    follows the stream's pitched notes (the prompt's, then each new one); where taking the
    banned pitches away would leave nothing (a forced melody note), ``strict`` guards raise
    ``CopyLimitError`` and others let the note through (counted in ``guard.unavoidable``)."""

    def __init__(self, inner, guard, prompt):
        from cadenza.music.authorship.note_symbols import _Tables, notes_of_tokens

        self.inner, self.guard, self.remi = inner, guard, inner.remi
        self.pitches = [int(p) for p in notes_of_tokens(list(prompt), _Tables(inner.remi.codec))["pitch"]]
        self._last = None
        self._primed = False
        self.m_pitch = self.remi.masks[PITCH]

    def allowed(self, s: RemiState) -> torch.Tensor:
        from cadenza.music.authorship.copy_guard import CopyLimitError

        if not self._primed:             # the prompt's last note is already in self.pitches
            self._primed, self._last = True, s.last_note
        elif s.last_note is not None and s.last_note is not self._last:
            self._last = s.last_note
            if s.last_note[3] != -1:
                self.pitches.append(int(s.last_note[2]))
        m = self.inner.allowed(s)
        if not bool((m & self.m_pitch).any()):
            return m
        banned = self.guard.banned_pitches(self.pitches)
        ids = [self.remi.pitch_ids[p] for p in banned if p in self.remi.pitch_ids]
        if not ids:
            return m
        m2 = m.clone()
        m2[torch.tensor(ids, dtype=torch.long)] = False
        if bool(m2.any()):
            self.guard.refused += int((m & ~m2).sum())
            return m2
        if self.guard.strict:
            raise CopyLimitError(f"every possible next note would repeat more than {self.guard.max_copy} "
                                 f"consecutive notes of a training piece; raise --max-copy or change the input")
        self.guard.unavoidable += 1
        return m


# --------------------------------------------------------------------------- harmonize
class _MelodyBar:
    __slots__ = ("ts", "onsets")

    def __init__(self):
        self.ts = None
        self.onsets: dict[int, list[tuple[int, int, int, int]]] = {}   # pos -> [(prog, pitch, vel_id, dur_id)]


class HarmonyPolicy(GrammarPolicy):
    """Constrained decoding for ``harmonize``: the melody is forced, the model adds voices below.

    Bar lines and metres are the melody's. At each melody onset the melody's notes must be
    written (Program, Pitch, Velocity and Duration forced to the melody's tokens); besides
    them the model may write accompaniment notes on ``program``:

    - strictly below the melody (below the lowest melody note sounding or starting at that
      time, or the latest melody note when the melody rests) and at most ``span`` semitones
      under it, never doubling an accompaniment pitch that is still sounding;
    - at most ``voices`` accompaniment notes sounding at once, all starting between the
      melody's first onset and the end of its last note;
    - at every melody onset the position cannot be left until ``voices`` accompaniment notes
      sound (or no allowed pitch is left), so each melody note is harmonized;
    - between melody onsets the model may add notes (passing notes, moving inner voices)
      within the same limits; it cannot skip past a melody onset or a bar line it must write.

    The model chooses the pitches, velocities, durations and rhythms of the new voices and
    the order of notes at an onset; the piece ends (EOS) only after the melody's last onset.
    """

    def __init__(self, remi: RemiTables, bars: list, melody_notes: list, voices: int, program: int, span: int = 36):
        super().__init__(remi, programs=None)
        self.bars_info = bars
        self.voices = voices
        self.acc_program = program
        self.span = span
        self.mel_keys = {(n[0], n[2], n[3]) for n in melody_notes}       # every forced note, drums too
        self.melody = sorted(n for n in melody_notes if n[3] != -1)      # pitched: (onset, duration, pitch, program)
        self.starts = [n[0] for n in self.melody]
        self.max_dur = max([n[1] for n in self.melody] + [remi.tpq * 16])
        self.m_acc_prog = remi.one(remi.program_ids[program])
        lo, hi = remi.codec.config.pitch_range
        self.pitch_lo = lo
        # Accompaniment notes start within the melody: from its first onset to its last note's end.
        self.first_onset = self.starts[0] if self.starts else 0
        self.last_end = max((n[0] + n[1] for n in self.melody), default=0)

    # ---- what sounds ---------------------------------------------------------------
    def _melody_ceiling(self, t: int) -> int | None:
        """Lowest melody pitch sounding or starting at t; else the latest melody pitch before t."""
        i = bisect.bisect_right(self.starts, t)
        sounding = [n[2] for n in self.melody[max(0, i - 64):i] if n[0] + n[1] > t or n[0] == t]
        if sounding:
            return min(sounding)
        if i > 0:
            return self.melody[i - 1][2]
        return self.melody[0][2] if self.melody else None

    def _acc_recent(self, s: RemiState) -> list[tuple]:
        """Accompaniment notes that started recently enough to be sounding now."""
        t = s.onset
        out = []
        for n in reversed(s.notes[-256:]):
            if n[0] < t - self.max_dur:
                break
            if (n[0], n[2], n[3]) not in self.mel_keys:
                out.append(n)
        return out

    def _acc_sounding(self, s: RemiState) -> list[int]:
        t = s.onset
        return [n[2] for n in self._acc_recent(s) if n[0] <= t < n[0] + n[1]]

    def _acc_pitches(self, s: RemiState) -> list[int]:
        """Accompaniment pitches allowed now ([] when no voice is free)."""
        if not self.first_onset <= s.onset < self.last_end:
            return []
        sounding = self._acc_sounding(s)
        if len(sounding) >= self.voices:
            return []
        ceiling = self._melody_ceiling(s.onset)
        if ceiling is None:
            return []
        lo = max(self.pitch_lo, ceiling - self.span)
        taken = set(sounding)
        return [p for p in range(lo, ceiling) if p not in taken and p in self.remi.pitch_ids]

    def _pending(self, s: RemiState) -> list[tuple]:
        """Melody notes at the current onset not yet written."""
        if s.pos < 0 or s.bars < 1 or s.bars > len(self.bars_info):
            return []
        want = self.bars_info[s.bars - 1].onsets.get(s.pos)
        if not want:
            return []
        done = {(n[2], n[3]) for n in s.notes[len(s.notes) - s.notes_here:]} if s.notes_here else set()
        return [w for w in want if (self.remi.value[w[1]], self.remi.value[w[0]]) not in done]

    # ---- the policy --------------------------------------------------------------------
    def _note_start(self, s: RemiState, pending, acc_ok: bool) -> torch.Tensor:
        """A note may begin: a pending melody note or an accompaniment note, each written
        as a Pitch on the instrument in force or as a change of Program."""
        r = self.remi
        m = torch.zeros(r.vocab_size, dtype=torch.bool)
        for w in pending:
            m[w[1] if r.value[w[0]] == s.program else w[0]] = True
        if acc_ok:
            if s.program == self.acc_program:
                m |= r.mask_of(r.pitch_ids[p] for p in self._acc_pitches(s))
            else:
                m |= self.m_acc_prog
        return m

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
            m = r.mask_of(w[1] for w in self._pending(s) if r.value[w[0]] == s.program)
            if s.program == self.acc_program:
                acc = self._acc_pitches(s)
                if acc:
                    m |= r.mask_of(r.pitch_ids[p] for p in acc)
            return m
        if last in (PITCH, DRUM):
            w = self._current_melody_note(s)
            if w is not None:
                return r.one(w[3]) if r.value[w[2]] == s.vel else r.one(w[2])
            return super().allowed(s)
        if last == VEL:
            w = self._current_melody_note(s)
            return r.one(w[3]) if w is not None else self.m_dur
        if last in (MOOD, DUR):
            return self._onset_choices(s)
        return self.m_eos

    def _current_melody_note(self, s: RemiState):
        for w in self._pending(s):
            if self.remi.value[w[0]] == s.program and self.remi.value[w[1]] == s.pitch:
                return w
        return None

    def _onset_choices(self, s: RemiState) -> torch.Tensor:
        r = self.remi
        pending = self._pending(s) if s.last == DUR else []
        can_add = s.last == DUR and s.notes_here < self.max_notes_per_onset and bool(self._acc_pitches(s))
        if pending:
            return self._note_start(s, pending, can_add)
        info = self.bars_info[s.bars - 1]
        at_melody_onset = s.last == DUR and s.pos in info.onsets
        if at_melody_onset and can_add:
            return self._note_start(s, [], True)      # harmonize this melody note first
        m = self._note_start(s, [], True) if can_add else torch.zeros(r.vocab_size, dtype=torch.bool)
        later = [q for q in info.onsets if q > s.pos]
        nxt = min(later) if later else None
        # Positions before the next melody onset only where a new accompaniment note fits.
        ends = sorted(n[0] + n[1] for n in self._acc_recent(s) if n[0] + n[1] > s.onset)
        step = r.position_ticks(s.ts[1])
        hi = nxt if nxt is not None else r.bar_positions(s.ts)
        for q in range(s.pos + 1, hi):
            t = s.bar_start + q * step
            busy = len(ends) - bisect.bisect_right(ends, t)
            ceiling = self._melody_ceiling(t)
            if (busy < self.voices and ceiling is not None and ceiling - 1 >= self.pitch_lo
                    and self.first_onset <= t < self.last_end):
                m[r.pos_ids[q]] = True
        if nxt is not None:
            m[r.pos_ids[nxt]] = True
        else:
            m[r.bar if s.bars < len(self.bars_info) else r.eos] = True
        return m


def _parse_melody(remi: RemiTables, body: list[int], ts0) -> list[_MelodyBar]:
    """Bars of a lean body: each bar's metre and its notes by Position as
    (program id, pitch id, velocity id, duration id), with the Program and Velocity in force."""
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
            bars[-1].onsets.setdefault(pos, []).append((prog, pitch, vel, i))
    return bars
