"""The token grammar of ``MusicCodec`` (version 2): where a stream is, and what may come next.

A Cadenza music sequence is::

    BOS  Style Key Tempo TimeSig                     (the conditioning prefix)
    Bar [TimeSig] [Mood]  Position [Program] Pitch [Velocity] Duration  [[Program] Pitch ...]
                          Position ...  Bar ...  EOS

A TimeSig only where the metre changes, a Program only where the instrument changes and
a Velocity only where the loudness changes (each is then in force until the next one); a
Mood token (the segment's valence and energy levels) after the bar line of every
``segment_bars``-th bar, starting with the first.

``RemiState`` follows such a stream one token at a time and knows the bar, the metre, the
current onset in ticks and the notes written so far. ``GrammarPolicy`` subclasses turn a state
into the set of tokens allowed next (a bool tensor over the vocabulary); ``GrammarConstraint``
makes a policy the ``TokenSet`` constraint of ``cadenza.sampling.Decoder``, the one decode
loop (a token the grammar alone allows is taken without sampling). Sampling under the
grammar keeps every generated sequence decodable however little the model has learned,
and it is how the music layer steers the model: forced prefix slots, a fixed metre, the
instruments of an input, a melody that must appear (see ``cadenza.music.composition``).

Time: ``tpq`` ticks per quarter note, chosen so that every Position and Duration of the
vocabulary is a whole number of ticks (a Position is 1/positions_per_beat of a beat and a
beat is the metre's denominator: a quarter in 3/4, an eighth in 6/8).
"""

from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple

import torch

from cadenza.codecs.music import PREFIX_SLOTS
from cadenza.errors import ConfigError
from cadenza.sampling import TokenSet

# Token kinds (small ints for speed).
PAD, BOS, EOS, BAR, TS, POS, PROG, PITCH, DRUM, VEL, DUR, STYLE, KEY, TEMPO, MOOD, OTHER = range(16)
_KINDS = {"PAD": PAD, "BOS": BOS, "EOS": EOS, "Bar": BAR, "TimeSig": TS, "Position": POS, "Program": PROG,
          "Pitch": PITCH, "PitchDrum": DRUM, "Velocity": VEL, "Duration": DUR, "Style": STYLE, "Key": KEY,
          "Tempo": TEMPO, "Mood": MOOD}
_SLOT_KIND = {"style": STYLE, "key": KEY, "tempo": TEMPO, "time_signature": TS}


class Note(NamedTuple):
    """A note as a token stream writes it (``RemiState.notes``): times in ticks."""
    onset: int
    duration: int
    pitch: int
    program: int          # -1: drums
    velocity: int         # the Velocity in force (0 before the first)

    @property
    def key(self) -> tuple[int, int, int]:
        """(onset, pitch, program): the same note whatever its length and loudness."""
        return self.onset, self.pitch, self.program


class MoodMark(NamedTuple):
    """A segment's Mood token (``RemiState.moods``): the segment's first bar (0-based) and
    its valence and energy levels."""
    bar: int
    valence: int
    energy: int


class RemiTables:
    """Static facts about one codec's vocabulary: token kinds, values, ticks, masks."""

    def __init__(self, codec):
        if codec.config.tokenization != "REMI":
            raise ConfigError("the music commands need a REMI tokenizer; this model uses "
                              f"{codec.config.tokenization}")
        self.codec = codec
        V = self.vocab_size = codec.vocab_size
        self.ppb = int(codec.config.positions_per_beat)
        dens = sorted(int(d) for d in codec.config.time_signatures)
        self.tpq = self.ppb * max(1, max(dens) // 4)
        self.kind = [OTHER] * V
        self.value: list = [None] * V
        for i in range(V):
            kind = self.kind[i] = _KINDS.get(codec.token_type(i), OTHER)
            v = codec.value(i)
            if kind in (POS, PROG, PITCH, DRUM, VEL, TEMPO, MOOD, TS, STYLE, KEY):
                self.value[i] = v
            elif kind == DUR:
                a, b, r = v
                self.value[i] = Fraction(a) + Fraction(b, r)   # beats of the metre's denominator
        self.bos, self.eos, self.pad = codec.bos_id, codec.eos_id, codec.pad_id
        self.bar = codec.bar_ids()[0]
        self.pos_ids = {self.value[i]: i for i in range(V) if self.kind[i] == POS}
        self.max_positions = max(self.pos_ids) + 1
        self.program_ids = {self.value[i]: i for i in range(V) if self.kind[i] == PROG}
        self.pitch_ids = {self.value[i]: i for i in range(V) if self.kind[i] == PITCH}
        self.drum_ids = {self.value[i]: i for i in range(V) if self.kind[i] == DRUM}
        self.vel_ids = {self.value[i]: i for i in range(V) if self.kind[i] == VEL}
        self.ts_ids = {self.value[i]: i for i in range(V) if self.kind[i] == TS}
        self.mood_ids = {self.value[i]: i for i in range(V) if self.kind[i] == MOOD}
        self.segment_bars = int(codec.config.segment_bars)
        # Position ids are contiguous in MidiTok's vocabulary: a range of positions is a slice.
        first = self.pos_ids[0]
        self._pos_contiguous = all(self.pos_ids[q] == first + q for q in range(self.max_positions))
        self._pos_first = first
        self.masks = {k: self.mask_of(i for i in range(V) if self.kind[i] == k) for k in set(self.kind)}
        self._dur_ticks_cache: dict = {}

    # ---- helpers --------------------------------------------------------------------
    def mask_of(self, ids) -> torch.Tensor:
        m = torch.zeros(self.vocab_size, dtype=torch.bool)
        ids = list(ids)
        if ids:
            m[torch.tensor(ids, dtype=torch.long)] = True
        return m

    def one(self, i: int) -> torch.Tensor:
        m = torch.zeros(self.vocab_size, dtype=torch.bool)
        m[int(i)] = True
        return m

    def add_positions(self, mask: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """Allow Positions lo .. hi - 1 in ``mask`` (in place)."""
        lo, hi = max(0, lo), min(hi, self.max_positions)
        if hi > lo:
            if self._pos_contiguous:
                mask[self._pos_first + lo: self._pos_first + hi] = True
            else:
                mask[torch.tensor([self.pos_ids[q] for q in range(lo, hi)])] = True
        return mask

    def ticks_per_beat(self, den: int) -> int:
        return self.tpq * 4 // int(den)

    def position_ticks(self, den: int) -> int:
        return self.ticks_per_beat(den) // self.ppb

    def bar_ticks(self, ts) -> int:
        return int(ts[0]) * self.ticks_per_beat(ts[1])

    def bar_positions(self, ts) -> int:
        return min(int(ts[0]) * self.ppb, self.max_positions)

    def duration_ticks(self, dur_id: int, den: int) -> int:
        key = (dur_id, den)
        t = self._dur_ticks_cache.get(key)
        if t is None:
            t = self._dur_ticks_cache[key] = max(1, round(self.value[dur_id] * self.ticks_per_beat(den)))
        return t

    def duration_quarters(self, dur_id: int, den: int) -> Fraction:
        return self.value[dur_id] * Fraction(4, int(den))

    def seconds(self, ticks: int, qpm: float) -> float:
        return ticks / self.tpq * 60.0 / float(qpm)


class RemiState:
    """Where a stream is, updated token by token with ``feed``.

    ``bars``: Bar tokens seen; ``ts``: the current metre; ``bar_start``: the current bar's
    start in ticks; ``pos``: the current Position in the bar (-1 before the first);
    ``onset``: the current onset in ticks; ``notes_here``: notes written at this onset;
    ``program`` / ``vel``: the instrument and velocity in force (None before the first);
    ``mood_due``: the bar opens a segment whose control token is not written yet;
    ``moods``: a ``MoodMark`` for every segment so far; ``notes``: every ``Note`` written,
    when ``record`` is true; ``last_note``: the latest one (recorded or not). ``prefix``: the conditioning prefix {slot: token id}.
    """

    def __init__(self, remi: RemiTables, record: bool = False):
        self.remi = remi
        self.record = record
        self.n = 0
        self.prefix: dict[str, int] = {}
        self.in_body = False
        self.last = None
        self.bars = 0
        self.ts = (4, 4)
        self.bar_start = 0
        self.pos = -1
        self.onset = 0
        self.program = None
        self.pitch = 0
        self.vel = None
        self.notes_here = 0
        self.top_here = -1          # the highest pitched note written at this onset so far
        self.ended = False
        self.last_note = None
        self.mood_due = False
        self.moods: list[MoodMark] = []
        self.notes: list[Note] = []

    @property
    def prefix_done(self) -> bool:
        return len(self.prefix) >= len(PREFIX_SLOTS)

    @property
    def bar_ticks(self) -> int:
        return self.remi.bar_ticks(self.ts)

    @property
    def segment(self) -> int:
        """Index of the current segment (0 in the first ``segment_bars`` bars)."""
        return max(0, self.bars - 1) // self.remi.segment_bars

    def next_bar_start(self) -> int:
        """Where a Bar token now would start its bar."""
        return self.bar_start + self.bar_ticks if self.bars > 0 else 0

    def position_onset(self, q: int) -> int:
        return self.bar_start + q * self.remi.position_ticks(self.ts[1])

    def feed(self, i: int) -> None:
        r = self.remi
        i = int(i)
        self.n += 1
        kind = r.kind[i]
        if not self.in_body:
            if kind == BAR:
                self.in_body = True
            elif kind in (STYLE, KEY, TEMPO, TS) and len(self.prefix) < len(PREFIX_SLOTS):
                slot = PREFIX_SLOTS[len(self.prefix)]
                self.prefix[slot] = i
                if kind == TS:
                    self.ts = r.value[i]
                self.last = kind
                return
            else:
                self.last = kind
                if kind == EOS:
                    self.ended = True
                return
        if kind == BAR:
            self.bar_start = self.next_bar_start()
            self.bars += 1
            self.pos = -1
            self.onset = self.bar_start
            self.notes_here = 0
            self.top_here = -1
            self.mood_due = (self.bars - 1) % r.segment_bars == 0
        elif kind == TS:
            self.ts = r.value[i]
        elif kind == MOOD:
            self.mood_due = False
            self.moods.append(MoodMark(self.bars - 1, *r.value[i]))
        elif kind == POS:
            self.pos = r.value[i]
            self.onset = self.bar_start + self.pos * r.position_ticks(self.ts[1])
            self.notes_here = 0
            self.top_here = -1
        elif kind == PROG:
            self.program = r.value[i]
        elif kind in (PITCH, DRUM):
            self.pitch = r.value[i]
        elif kind == VEL:
            self.vel = r.value[i]
        elif kind == DUR:
            note = Note(self.onset, r.duration_ticks(i, self.ts[1]), self.pitch, self.program,
                        self.vel if self.vel is not None else 0)
            self.notes_here += 1
            if self.program != -1:
                self.top_here = max(self.top_here, self.pitch)
            self.last_note = note
            if self.record:
                self.notes.append(note)
        elif kind == EOS:
            self.ended = True
        self.last = kind

    def feed_all(self, ids) -> "RemiState":
        for i in ids:
            self.feed(i)
        return self


# --------------------------------------------------------------------------- policies
class GrammarPolicy:
    """The tokens the grammar allows next from a ``RemiState`` (``allowed``: a bool mask over the
    vocabulary). Subclasses override ``allowed``; the helpers give the plain grammar.

    ``programs``: the instruments new notes may use (None: any); ``ts``: a metre every bar
    keeps (None: the model may change it at a bar line); ``freeze_onset``: no new note at or
    before this tick (continue); ``prefix``: slot -> forced token id (None: the model
    chooses); ``moods(segment) -> list of allowed Mood ids or None`` (None: any level);
    ``keep_metre``: every bar keeps the prefix's metre (when ``ts`` is None).
    """

    max_notes_per_onset = 12

    def __init__(self, remi: RemiTables, programs=None, ts=None, freeze_onset: int | None = None,
                 allow_eos: bool = False, prefix: dict | None = None, moods=None, keep_metre: bool = False):
        self.remi = remi
        r = remi
        progs = list(r.program_ids) if programs is None else list(programs)
        for p in progs:
            if p not in r.program_ids:
                raise ConfigError(f"program {p} is not in the vocabulary")
        self.programs = progs
        self.m_prog = r.mask_of(r.program_ids[p] for p in progs)
        self.ts = None if ts is None else tuple(ts)
        self.freeze_onset = freeze_onset
        self.allow_eos = allow_eos
        self.prefix = dict(prefix or {})        # slot -> forced token id (None: the model chooses)
        self.moods = moods
        self.keep_metre = keep_metre
        self._slot_masks = {s: r.masks.get(_SLOT_KIND[s], r.mask_of([])) for s in PREFIX_SLOTS}
        self.m_pitch = r.masks[PITCH]
        self.m_drum = r.masks.get(DRUM, r.mask_of([]))
        self.m_vel = r.masks[VEL]
        self.m_dur = r.masks[DUR]
        self.m_ts = r.masks[TS]
        self.m_mood = r.masks[MOOD]
        self.m_bar = r.one(r.bar)
        self.m_eos = r.one(r.eos)
        self.m_bar_eos = self.m_bar | self.m_eos
        self._mood_cache: dict = {}

    def allowed(self, s: RemiState) -> torch.Tensor:
        r = self.remi
        if not s.in_body:
            if not s.prefix_done:
                slot = PREFIX_SLOTS[len(s.prefix)]
                forced = self.prefix.get(slot)
                return r.one(forced) if forced is not None else self._slot_masks[slot]
            return self.m_bar
        last = s.last
        if last == BAR:
            m = self.after_bar(s)
            ts = self.ts or (self._prefix_ts(s) if self.keep_metre else None)
            if ts is None:
                m = m | self.m_ts
                m[r.ts_ids[s.ts]] = False       # a TimeSig token marks a change
            elif ts != s.ts:
                return r.one(r.ts_ids[ts])
            return m
        if last == TS:
            return self.after_bar(s)
        if last == POS:
            return self.note_start(s)
        if last == PROG:
            return self.m_drum if s.program == -1 else self.m_pitch
        if last in (PITCH, DRUM):
            if s.vel is None:
                return self.m_vel
            m = self.m_vel | self.m_dur
            m[r.vel_ids[s.vel]] = False
            return m
        if last == VEL:
            return self.m_dur
        if last in (MOOD, DUR):
            return self.onset_choices(s)
        if last == EOS:
            return self.m_eos
        return self.m_bar

    def after_bar(self, s: RemiState) -> torch.Tensor:
        """After a bar line (and its metre change): the segment's Mood, or the bar's onsets."""
        if s.mood_due:
            return self.mood_choices(s)
        return self.onset_choices(s)

    def mood_choices(self, s: RemiState) -> torch.Tensor:
        ids = self.moods(s.segment) if self.moods is not None else None
        if ids is None:
            return self.m_mood
        key = tuple(ids)
        m = self._mood_cache.get(key)
        if m is None:
            m = self._mood_cache[key] = self.remi.mask_of(ids)
        return m

    def note_start(self, s: RemiState) -> torch.Tensor:
        """Where a note begins (after a Position, or after a Duration at the same onset): a
        change of instrument, or a pitch on the instrument in force."""
        r = self.remi
        m = self.m_prog.clone()
        if s.program is not None:
            pid = r.program_ids.get(s.program)
            if pid is not None and m[pid]:
                m[pid] = False
                m |= self.m_drum if s.program == -1 else self.m_pitch
        return m

    def _prefix_ts(self, s: RemiState):
        i = s.prefix.get("time_signature")
        return self.remi.value[i] if i is not None else None

    def onset_choices(self, s: RemiState) -> torch.Tensor:
        """After a Mood or a Duration: another note here, a later Position, a Bar or EOS."""
        r = self.remi
        m = (self.m_bar_eos if self.allow_eos else self.m_bar).clone()
        if s.last == DUR and s.notes_here < self.max_notes_per_onset and (
                self.freeze_onset is None or s.onset > self.freeze_onset):
            m |= self.note_start(s)
        return r.add_positions(m, s.pos + 1, r.bar_positions(s.ts))


class GrammarConstraint(TokenSet):
    """A ``GrammarPolicy`` as the constraint of ``cadenza.sampling``'s decode loop: the tokens
    allowed next are the policy's (a token it alone allows is forced), and every token taken
    moves ``state`` on. ``state`` may already have seen part of the context; ``start``
    feeds it the rest."""

    def __init__(self, policy: GrammarPolicy, state: RemiState, memory=None):
        self.policy = policy
        self.state = state
        self.memory = memory       # a ``music.memory.PieceMemory``: pitches mixed with it (state must record)

    def start(self, context) -> None:
        for t in context[self.state.n:]:
            self.state.feed(t)

    def allowed(self) -> torch.Tensor:
        return self.policy.allowed(self.state).nonzero().squeeze(1)

    def feed(self, tok: int) -> None:
        self.state.feed(tok)

    def adjust(self, logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """With a piece memory, a choice among pitches samples the network's pitch distribution
        mixed with the memory of the melody so far (``PieceMemory.mix_logits``)."""
        if self.memory is None or self.state.last not in (POS, PROG, DUR) or self.state.program == -1:
            return logits
        return self.memory.mix_logits(logits, allowed, self.state)
