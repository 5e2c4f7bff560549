"""Grammar policies for generation: a length target, the input's last bar kept closed and the
``--max-copy`` guard (harmony under a melody: ``harmony_policy``)."""

from __future__ import annotations

import math

import torch

from cadenza.bounds import CLOSE_EARLY, CLOSE_LATE
from cadenza.music.grammar import BAR, DUR, MOOD, PITCH, POS, GrammarPolicy, RemiTables, RemiState


# --------------------------------------------------------------------------- length
class LengthTarget:
    """When to stop: after ``bars`` new bars or at ``seconds`` of new music (from ``origin``).

    ``close``: the piece is given the chance to end rather than being cut. With ``bars`` = N,
    the model may write the end-of-piece token from bar N - 1 on, but only right after a note
    on the tonic of the piece's key (the highest note of the onset just written), and the
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
        """The highest note written at the current onset is on the tonic (True where the key is
        unknown): ending here ends on the tonic in the top line."""
        tonic = self.tonic(s)
        if tonic is None:
            return True
        return s.top_here >= 0 and s.top_here % 12 == tonic

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


class NoMoreInBar:
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


class GuardedPolicy:
    """A policy with ``--max-copy``: the pitches a ``CopyGuard`` bans are not allowed. It
    follows the stream's pitched notes (the prompt's, then each new one); where taking the
    banned pitches away would leave nothing (a forced melody note), ``strict`` guards raise
    ``CopyLimitError`` and others let the note through (counted in ``guard.unavoidable``)."""

    def __init__(self, inner, guard, prompt):
        from cadenza.music.authorship.note_symbols import TokenTables, notes_of_tokens

        self.inner, self.guard, self.remi = inner, guard, inner.remi
        self.pitches = [int(p) for p in notes_of_tokens(list(prompt), TokenTables(inner.remi.codec))["pitch"]]
        self._last = None
        self._primed = False
        self.m_pitch = self.remi.masks[PITCH]

    def allowed(self, s: RemiState) -> torch.Tensor:
        from cadenza.music.authorship.copy_guard import CopyLimitError

        if not self._primed:             # the prompt's last note is already in self.pitches
            self._primed, self._last = True, s.last_note
        elif s.last_note is not None and s.last_note is not self._last:
            self._last = s.last_note
            if s.last_note.program != -1:
                self.pitches.append(int(s.last_note.pitch))
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
