"""A grammar policy that writes given notes where they are and lets the model write around them.

``KeptNotesPolicy(inner, remi, bars)`` wraps any grammar policy (the studio's infill region
policy, with or without ``Constraints``). ``bars`` are the kept notes by bar and Position, as
``harmony_policy.parse_melody`` reads them from tokens. At a kept note's onset the note is
written first, token by token (its Program where the instrument changes, Pitch, Velocity where
the loudness changes, Duration); the model may then add notes there and wherever ``inner``
allows, but it cannot move past a kept onset or bar line before the kept notes are written,
and it never writes a pitch a kept note is sounding, or one already written at the onset, on the
same instrument (no doubled unison). This is the studio's "keep my notes" infill: the person's notes stay, the model
fills in around them, reading them as it goes.
"""

from __future__ import annotations

import torch

from cadenza.music.grammar import DUR, PITCH, POS, PROG, VEL, RemiState


class KeptNotesPolicy:
    def __init__(self, inner, remi, bars: list):
        self.inner, self.remi, self.bars = inner, remi, bars
        r = remi
        # every kept note as (start tick, end tick, program, pitch): what sounds when
        self._spans = []
        t = 0
        for b, bar in enumerate(bars):
            step = r.position_ticks(bar.ts[1])
            for pos, notes in bar.onsets.items():
                for prog, pitch, _, dur in notes:
                    start = t + pos * step
                    self._spans.append((start, start + r.duration_ticks(dur, bar.ts[1]),
                                        r.value[prog] if prog is not None else None, r.value[pitch]))
            t += r.bar_ticks(bar.ts)
        self.m_pos = torch.zeros(r.vocab_size, dtype=torch.bool)
        for i in r.pos_ids.values():
            self.m_pos[i] = True

    def __getattr__(self, name):          # the wrapped policy's other attributes
        return getattr(self.inner, name)

    # ---- where the kept notes are ----------------------------------------------------------
    def _bar(self, s: RemiState):
        return self.bars[s.bars - 1] if 1 <= s.bars <= len(self.bars) else None

    def pending(self, s: RemiState) -> list[tuple]:
        """The kept notes at the current onset not yet written: (prog id, pitch id, vel id, dur id)."""
        bar = self._bar(s)
        if bar is None or s.pos < 0:
            return []
        want = bar.onsets.get(s.pos) or []
        if not want:
            return []
        done = [(n.pitch, n.program) for n in s.notes[len(s.notes) - s.notes_here:]] if s.notes_here else []
        out = []
        for w in want:
            key = (self.remi.value[w[1]], self.remi.value[w[0]] if w[0] is not None else s.program)
            if key in done:
                done.remove(key)
            else:
                out.append(w)
        return out

    def _writing(self, s: RemiState):
        """The kept note being written now (its Pitch taken), or None."""
        for w in self.pending(s):
            if self.remi.value[w[1]] == s.pitch and (w[0] is None or self.remi.value[w[0]] == s.program):
                return w
        return None

    def _sounding(self, s: RemiState) -> set[int]:
        t = s.onset
        return {p for a, b, prog, p in self._spans if a <= t < b and prog == s.program}

    # ---- the policy ----------------------------------------------------------------------
    def _start(self, w, s: RemiState) -> torch.Tensor:
        r = self.remi
        return r.one(w[1] if w[0] is None or r.value[w[0]] == s.program else w[0])

    def allowed(self, s: RemiState) -> torch.Tensor:
        r = self.remi
        if not s.in_body:
            return self.inner.allowed(s)
        last = s.last
        pend = self.pending(s) if last in (POS, PROG, PITCH, VEL, DUR) else []
        if last in (POS, DUR) and pend:
            return self._start(pend[0], s)
        if last == PROG and pend and any(w[0] is not None and r.value[w[0]] == s.program for w in pend):
            w = next(w for w in pend if w[0] is not None and r.value[w[0]] == s.program)
            return r.one(w[1])
        if last in (PITCH, VEL):
            w = self._writing(s)
            if w is not None:
                if last == PITCH and w[2] is not None and r.value[w[2]] != s.vel:
                    return r.one(w[2])
                return r.one(w[3])
        m = self._inner_allowed(s).clone()
        if last in (POS, PROG, DUR):        # the model's own notes: not on a pitch a kept note sounds
            here = s.notes[len(s.notes) - s.notes_here:] if s.notes_here else []
            for p in self._sounding(s) | {n.pitch for n in here if n.program == s.program}:
                i = r.pitch_ids.get(p)
                if i is not None:
                    m[i] = False
        onset_choice = bool((m & self.m_pos).any()) or bool(m[r.bar])
        if onset_choice:                    # it cannot move past a kept onset still to come
            bar = self._bar(s)
            later = [q for q in (bar.onsets if bar is not None else ()) if q > s.pos]
            if later:
                nxt = min(later)
                for q, i in r.pos_ids.items():
                    if q > nxt:
                        m[i] = False
                m[r.pos_ids[nxt]] = True
                m[r.bar] = m[r.eos] = False
        if not bool(m.any()):
            return self._inner_allowed(s)
        return m

    def _inner_allowed(self, s: RemiState) -> torch.Tensor:
        """``inner``'s choices with the kept notes at this onset not counted (a role's notes per
        onset are the model's: a bass note may join a kept melody note)."""
        here = s.notes[len(s.notes) - s.notes_here:] if s.notes_here else []
        bar = self._bar(s)
        want = {(self.remi.value[w[1]]) for w in (bar.onsets.get(s.pos) or [])} if bar is not None else set()
        kept_here = sum(1 for n in here if n.pitch in want)
        if not kept_here:
            return self.inner.allowed(s)
        saved = s.notes_here
        s.notes_here = saved - kept_here
        try:
            return self.inner.allowed(s)
        finally:
            s.notes_here = saved
