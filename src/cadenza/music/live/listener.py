"""The model's ear: the player's line as tokens, read by a kept decoder, and what it predicts.

The player's notes (with the answer role, the model's own answers too: one line) become the
version-2 stream as they arrive, the way the studio encodes a piece: Bar and the segment's
middle Mood where a bar begins, Position, Program 0 once, Pitch, Velocity where it changes,
Duration. Onsets and durations are on the 16th grid. A note's Duration is not known at its
note-on, so the decoder reads Position and Pitch at once and the Duration at the note-off,
or at the next note-on (the time between the two onsets: legato), whichever comes first;
two notes at one onset take the Duration the model finds likeliest. Every token is one cached
step of the kept decoder (``cadenza.sampling.Decoder``).

``pitches_at(tick)``: P(pitch of the player's note at ``tick`` | a note starts there), read
from a fork of the decoder given the held note's Duration up to ``tick``, the bar lines to it
and its Position, mixed with the piece memory (``cadenza.music.memory``) of the line so far.
``answer(bar)``: a bar of the model's own line, sampled from a fork under the grammar and the
constraints (the ``answer`` role).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from cadenza.errors import ConfigError
from cadenza.music.grammar import BAR, DUR, GrammarConstraint, GrammarPolicy, RemiState
from cadenza.music.inputs import remi_for
from cadenza.music.memory import PieceMemory
from cadenza.music.predict import input_decoder

GRID = 4               # onsets and durations on 16ths (4 per quarter-note beat)
MOOD = (2, 2)          # the middle valence and energy level, as the studio writes them
MAX_ANSWER_TOKENS = 64


class HeldNote(NamedTuple):
    """A played note still sounding, waiting for its Duration: where it started, its pitch."""
    tick: int
    pitch: int


class Listener:
    def __init__(self, mm, tempo: float, metre: tuple[int, int], key: str, style: str, seed: int = 0):
        self.mm, self.codec = mm, mm.codec
        self.remi = r = remi_for(self.codec)
        self.ts = tuple(metre)
        try:
            ts_id = self.codec.time_signature_id(*self.ts)
        except ConfigError:
            raise ConfigError(f"the model has no {self.ts[0]}/{self.ts[1]} metre") from None
        if self.remi.value[ts_id] != self.ts:
            raise ConfigError(f"the model writes {self.ts[0]}/{self.ts[1]} as {self.remi.value[ts_id]}; "
                              "choose the metre it writes")
        self.prefix = [self.codec.bos_id] + self.codec.conditioning(style=style, key=key, tempo=tempo,
                                                                    time_signature=self.ts)
        self.tpb = r.ticks_per_beat(self.ts[1])        # ticks per beat of the metre
        self.bar_ticks = r.bar_ticks(self.ts)
        self.pos_ticks = r.position_ticks(self.ts[1])
        self.q = max(self.pos_ticks, r.ticks_per_beat(4) // GRID)
        self.mood = self.codec.mood_id(*MOOD)
        self.durations = sorted((r.duration_ticks(i, self.ts[1]), i) for i in range(r.vocab_size) if r.kind[i] == DUR)
        self.velocities = sorted(r.vel_ids)
        self.memory = PieceMemory(sorted(r.pitch_ids))
        self.seed = int(seed)
        with torch.inference_mode():
            self.dec = input_decoder(mm.network, list(self.prefix))
        self.state = RemiState(r).feed_all(self.prefix)
        self.bars = 0                  # Bar tokens read
        self.onset = -1                # tick of the last Position read
        self.vel = None
        self.program = False
        self.pending: HeldNote | None = None          # a note waiting for its Duration
        self.line: list[int] = []      # the line's pitches so far (for the piece memory)
        self.tokens_read = 0
        self._stm = (None, None)       # (the line it was made for, the piece memory's distribution)

    # ---- time on the token grid ------------------------------------------------------------
    def tick(self, beat: float) -> int:
        """A beat as ticks, on the 16th grid."""
        return max(0, round(beat * self.tpb / self.q) * self.q)

    def _dur_id(self, ticks: int) -> int:
        ticks = max(self.q, ticks)
        return min(self.durations, key=lambda d: (abs(d[0] - ticks), d[0]))[1]

    # ---- reading --------------------------------------------------------------------------
    def _take(self, dec, state, tok: int) -> None:
        dec.take(tok)
        if state is not None:
            state.feed(tok)

    def _bars_to(self, dec, state, tick: int, bars: int) -> int:
        """Bar lines (and Moods) up to the bar holding ``tick``; returns the bars read."""
        while bars <= tick // self.bar_ticks:
            self._take(dec, state, self.remi.bar)
            if bars % self.remi.segment_bars == 0:
                self._take(dec, state, self.mood)
            bars += 1
        return bars

    def _finish_pending(self, dec, state, end_tick: int | None) -> None:
        tick = self.pending.tick
        if end_tick is None or end_tick <= tick:     # a chord: the likeliest Duration
            with torch.inference_mode():
                p = dec.probs()
            tok = max((i for _, i in self.durations), key=lambda i: float(p[i]))
        else:
            tok = self._dur_id(end_tick - tick)
        self._take(dec, state, tok)

    def note_on(self, tick: int, pitch: int, velocity: int) -> int:
        """Read a note's start; returns the tick it was placed at (never before the last one)."""
        r = self.remi
        if pitch not in r.pitch_ids:
            return -1
        tick = max(tick, self.onset, 0)
        with torch.inference_mode():
            if self.pending is not None:
                self._finish_pending(self.dec, self.state, tick)
                self.pending = None
            self.bars = self._bars_to(self.dec, self.state, tick, self.bars)
            if tick != self.onset:
                self._take(self.dec, self.state, r.pos_ids[(tick % self.bar_ticks) // self.pos_ticks])
                self.onset = tick
            if not self.program:
                self._take(self.dec, self.state, r.program_ids[0])
                self.program = True
            self._take(self.dec, self.state, r.pitch_ids[pitch])
            vel = min(self.velocities, key=lambda v: abs(v - velocity))
            if vel != self.vel:
                self._take(self.dec, self.state, r.vel_ids[vel])
                self.vel = vel
        self.pending = HeldNote(tick, pitch)
        self.line.append(pitch)
        del self.line[:-256]
        return tick

    def note_off(self, tick: int, pitch: int) -> None:
        """A note's end: its Duration, if it is the note waiting for one."""
        if self.pending is not None and self.pending.pitch == pitch:
            with torch.inference_mode():
                self._finish_pending(self.dec, self.state, max(tick, self.pending.tick + self.q))
            self.pending = None

    def add_note(self, tick: int, pitch: int, velocity: int, duration: int) -> None:
        """A whole note of the line (the model's answer, once it is sent)."""
        if self.note_on(tick, pitch, velocity) >= 0:
            self.note_off(tick + duration, pitch)

    def maintain(self) -> bool:
        """Near the model's window: read the prefix and the recent bars again (between beats,
        where there is time). True when it did."""
        room = self.mm.network.config.max_len
        ctx = self.dec.context
        if len(ctx) < room - 96:
            return False
        tail = ctx[-(room // 2):]
        bars = [i for i, t in enumerate(tail) if self.remi.kind[t] == BAR]
        tail = tail[bars[0]:] if bars else tail
        with torch.inference_mode():
            self.dec = input_decoder(self.mm.network, list(self.prefix) + tail)
        return True

    # ---- predicting ---------------------------------------------------------------------
    def _fork_to(self, tick: int):
        """A fork of the decoder that has read up to the Bar tokens before ``tick`` (the held
        note given a Duration up to ``tick``), and the number of bars it read."""
        f = self.dec.fork()
        if self.pending is not None:
            self._finish_pending(f, None, tick)
        return f, self._bars_to(f, None, tick, self.bars)

    def holds_past(self, tick: int, now_tick: int) -> float:
        """P(the note the player is holding is still sounding at ``tick`` | it has lasted to
        ``now_tick``), from the model's distribution over its Duration (0 when none is held)."""
        if self.pending is None:
            return 0.0
        start = self.pending.tick
        with torch.inference_mode():
            p = self.dec.probs()
        past = lasted = 0.0
        for ticks, i in self.durations:
            x = float(p[i])
            if ticks > now_tick - start:
                lasted += x
                if ticks > tick - start:
                    past += x
        return past / lasted if lasted > 0 else 0.0

    def pitches_at(self, tick: int) -> dict[int, float]:
        """P(pitch | the line's next note starts at ``tick``), with the piece memory."""
        r = self.remi
        if tick <= self.onset:
            return {}
        with torch.inference_mode():
            f, _ = self._fork_to(tick)
            f.take(r.pos_ids[(tick % self.bar_ticks) // self.pos_ticks])
            p = f.probs()
        ids = list(r.pitch_ids.items())
        v = p[torch.tensor([i for _, i in ids])]
        v = (v / v.sum().clamp_min(1e-30)).tolist()
        dist = {pitch: x for (pitch, _), x in zip(ids, v)}
        key = (len(self.line), tuple(self.line[-8:]))
        if self._stm[0] != key:          # the memory's own distribution changes only with the line
            self._stm = (key, self.memory.next_pitch(self.line))
        return self.memory.mix(dist, self.line, stm=self._stm[1])

    def answer(self, bar: int, policy_constraints, temperature: float = 0.9) -> list[tuple[int, int, int]]:
        """A bar of the model's own line: [(tick, pitch, duration ticks)], sampled from a fork
        under the grammar (Program 0, this metre) and ``policy_constraints``."""
        from cadenza.music.constraints import ConstrainedPolicy

        r = self.remi
        start = bar * self.bar_ticks
        if start < self.onset:
            return []
        with torch.inference_mode():
            f, _ = self._fork_to(start)
            policy = ConstrainedPolicy(GrammarPolicy(r, programs=[0], ts=self.ts), policy_constraints)
            state = RemiState(r)
            f = f.fork(constraint=GrammarConstraint(policy, state), seed=self.seed + bar)
            f.temperature, f.top_p = temperature, 0.95
            notes, n = [], 0
            while n < MAX_ANSWER_TOKENS:
                taken = f.step(stop=lambda t: r.kind[t] == BAR or t == r.eos, limit=MAX_ANSWER_TOKENS - n)
                if not taken:
                    break
                n += len(taken)
                if any(r.kind[t] == DUR for t in taken):
                    onset, dur, pitch, _, _ = state.last_note
                    notes.append((start + onset - state.bar_start, pitch, dur))
        return notes
