"""An endless soundtrack: music made bar by bar, whose controls can change while it plays.

``Soundtrack(mm, controls)`` keeps one ``cadenza.sampling.Decoder`` under the grammar (and so
one sparse KV cache) for
the whole stream; ``next_bar()`` samples one more bar and returns it as note events on one
continuous beat timeline (beats are quarter notes from the stream's beat 0).

Sections. The conditioning prefix (style, key, tempo, metre) comes once, at the start of a
piece, so a stream is a chain of sections: each starts a fresh cache from a new prefix plus
the last bars heard, re-encoded (``_context_for``): whole 4-bar groups, as many as fit in
``keep_tokens`` tokens (and at most ``keep_bars`` bars), so the model continues the music
it was playing, and the section's first bar opens a new segment whose Mood token follows
the controls now in force. A key change transposes the kept bars to the new key; a metre
change keeps none (the bars could not be re-read in the new metre). A section starts:

- when ``restart(bar)`` is called: a control change or a skip, at a bar the listener has
  not heard yet (the bars from there on are dropped and made again; the caller tells the
  client to drop them too);
- when the cache nears the model's context (``max_len`` minus ``headroom`` tokens): this is
  what makes the stream endless. The new section begins at the next bar, the beat timeline
  runs on without a gap;
- every ``section_bars`` bars when a ``chooser`` (listener preferences) picks the controls
  the listener has not set, so the liked regions come back.

Memory stays bounded however long it plays: only the last ``retain_bars`` bars are held (what
a re-prime keeps, plus the bars a caller may still restart at).

Segment controls (valence, energy) in force: the listener's, else the chooser's, else the
model's own choice (its sampled Mood token). ``Bar.segment`` reports them for each bar that
opens a segment, with who chose each.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

from cadenza.codecs.music import PREFIX_SLOTS, parse_key
from cadenza.batching import need_reads
from cadenza.errors import ConfigError
from cadenza.music.grammar import BAR, MOOD, GrammarPolicy, RemiState
from cadenza.music.stream_controls import CONTROL_FIELDS, Controls, check_controls, mood_name  # noqa: F401

@dataclass
class Bar:
    """One bar of the stream: its notes as events, and the segment it opens (if it does)."""

    bar: int                      # 0-based on the stream's timeline
    start: float                  # beat where it starts
    end: float                    # beat where the next bar starts
    tempo: float                  # quarter notes per minute
    time_signature: str
    notes: list[dict] = field(default_factory=list)
    segment: dict | None = None   # {"controls": {...}, "chosen_by": {...}} when a segment starts here
    section: int = 0


@dataclass
class _Record:
    """What a re-prime needs of a bar already made."""

    bar: Bar
    full_ids: list[int]           # MidiTok REMI ids of the bar (Bar, TimeSig, every note's Program/Velocity)
    ts: tuple
    levels: tuple                 # (valence level, energy level) of the segment it is in
    prefix: dict                  # slot -> token id of its section


class Soundtrack:
    """An endless stream of bars from a loaded music model (see the module docstring).

    ``chooser(rng, controls) -> dict`` may suggest values for controls the listener left
    unset (the server passes the listener's preferences); it is asked at every section start.
    ``next_bar`` and ``restart`` must not run at the same time (the server calls them from
    one task per stream); ``set_controls`` may be called from anywhere (it takes effect at
    the next ``restart``).
    """

    def __init__(self, mm, controls: Controls | None = None, seed: int | None = None, chooser=None,
                 temperature: float = 1.0, top_p: float | None = 0.95, keep_bars: int = 8,
                 keep_tokens: int = 512, headroom: int = 640, section_bars: int = 16, retain_bars: int = 64):
        from cadenza.music.inputs import check_sampling, check_seed, remi_for

        self.mm, self.codec = mm, mm.codec
        self.remi = remi_for(self.codec)
        self.S = self.remi.segment_bars
        check_sampling(temperature, None, top_p)
        self.seed = check_seed(seed)
        self.rng = random.Random(self.seed)
        self.temperature, self.top_p = temperature, top_p
        self.keep_bars, self.keep_tokens = keep_bars, keep_tokens
        self.headroom = min(headroom, mm.network.config.max_len - 128)
        self.section_bars = section_bars
        self.chooser = chooser
        self._lock = threading.Lock()
        self.controls = check_controls(self.codec, controls or Controls())
        # The most recent bars only (an endless stream must not grow without bound): records[j]
        # is bar ``dropped + j``. ``retain_bars`` covers the kept bars of a re-prime plus any
        # bar a caller may still restart at (the server's lead is 8 bars).
        self.retain_bars = max(int(retain_bars), keep_bars + 8)
        self.records: list[_Record] = []
        self.dropped = 0              # bars no longer held
        self._dropped_end = 0.0       # the beat where the last of them ended
        self.beat = 0.0               # where the next bar starts
        self.seq = 0                  # note events sent
        self.section = -1
        self.sections: list[dict] = []
        self.decoder = None
        self._voices: dict[int, int] = {}
        self._transposer = None       # made on the first key change (_transpose)
        # the section in force (set by _start_section)
        self._values: dict = {}       # each control's value ...
        self._by: dict = {}           # ... and who chose it
        self._first_bar = 0           # the section's first bar
        self._tempo_exact = None      # the tempo as asked (the prefix holds only its bin)
        self._bar_open = 0            # bars of the context already complete
        self._opened = False          # the first bar of the section is open
        # the bar being made (set by _mark_open, read by _finish_bar)
        self._bar_from = 0            # its first token in the decoder
        self._notes_from = 0          # its first note in the grammar's record
        self._carry = (None, None)    # the Program and Velocity ids in force at its start
        self._bar_ts = None           # its metre
        self._bar_tick = 0            # its first tick
        self._bar_local = 0           # its number within the section (1-based once open)
        self._start_section(at_bar=0)

    # ---- controls ------------------------------------------------------------------------
    def set_controls(self, **changes) -> Controls:
        """Change the listener's controls (validated now; heard from the next ``restart``)."""
        with self._lock:
            new = check_controls(self.codec, self.controls.changed(**changes))
            self.controls = new
            return new

    @property
    def bars_made(self) -> int:
        return self.dropped + len(self.records)

    def _held(self, at_bar: int) -> list:
        """The records of the held bars before bar ``at_bar``."""
        return self.records[:max(0, at_bar - self.dropped)]

    def _effective(self) -> tuple[dict, dict]:
        """(value, chosen_by) of every control for a new section."""
        with self._lock:
            mine = self.controls.to_dict()
        suggested = {}
        if self.chooser is not None:
            suggested = {k: v for k, v in (self.chooser(self.rng, self.controls) or {}).items()
                         if k in CONTROL_FIELDS and mine.get(k) is None and v is not None}
            try:
                check_controls(self.codec, Controls(**suggested))
            except ConfigError:
                suggested = {}
        values, by = {}, {}
        for k in CONTROL_FIELDS:
            if mine[k] is not None:
                values[k], by[k] = mine[k], "listener"
            elif k in suggested:
                values[k], by[k] = suggested[k], "preferences"
            else:
                values[k], by[k] = None, "model"
        return values, by

    # ---- sections ------------------------------------------------------------------------
    def _prefix_for(self, values: dict, previous: dict | None) -> dict:
        """slot -> token id for a new section (None where the model is to choose)."""
        c = self.codec
        ids = dict(zip(PREFIX_SLOTS, c.conditioning(style=values["style"], key=values["key"],
                                                    tempo=values["tempo"],
                                                    time_signature=values["time_signature"])))
        if values["key"] is None:
            ids["key"] = self._key_for_mood(values, previous)
        for slot in PREFIX_SLOTS:
            if ids[slot] is None and previous is not None:
                ids[slot] = previous.get(slot)
        return ids

    def _key_for_mood(self, values: dict, previous: dict | None) -> int | None:
        """The key token of a section whose key nobody set, as the mood decides (``music.modes``):
        the previous section's key where its mode fits the valence in force, its parallel key
        (same tonic, other mode) where not, a key drawn for the valence at the first section;
        None (the model chooses, or the previous key stays) without a valence or a key table."""
        from cadenza.music.modes import draw_key, mode_of

        table = getattr(self.mm, "mood_keys", None)
        level = self.codec.control_levels(values["valence"], None, None)[0] if table else None
        mode = mode_of(self.codec, level)
        if mode is None:
            return None
        prev = previous.get("key") if previous else None
        if prev is not None:
            tonic, prev_mode = parse_key(self.remi.value[prev])
            return prev if prev_mode == mode else self.codec.key_id((tonic, mode))
        key = draw_key(table, level, self.rng.randrange(2 ** 31), mode)
        return self.codec.key_id(key) if key else None

    def _context_for(self, prefix: dict, at_bar: int) -> tuple[list[int], int]:
        """(tokens, kept bars): the prefix, then the last whole 4-bar groups before ``at_bar``
        re-encoded under it (transposed to its key, none if its metre differs)."""
        c, r = self.codec, self.remi
        if any(prefix[s] is None for s in PREFIX_SLOTS):   # the policy forces the given slots, samples the rest
            return [c.bos_id], 0
        ts = r.value[prefix["time_signature"]]
        before = self._held(at_bar)
        groups = min(len(before), self.keep_bars) // self.S
        kept = []
        while groups > 0:
            kept = before[len(before) - groups * self.S:]
            if all(k.ts == ts for k in kept) and sum(len(k.full_ids) for k in kept) <= self.keep_tokens:
                break
            groups -= 1
            kept = []
        if not kept:
            return [c.bos_id] + [prefix[s] for s in PREFIX_SLOTS], 0
        full = [i for k in kept for i in k.full_ids]
        old_key, new_key = kept[-1].prefix.get("key"), prefix["key"]
        if old_key is not None and old_key != new_key:
            full = self._transpose(full, r.value[old_key], r.value[new_key])
        levels = [kept[g * self.S].levels for g in range(groups)]
        body, _ = c.lean_body(full, ts, levels)
        return [c.bos_id] + [prefix[s] for s in PREFIX_SLOTS] + body, len(kept)

    def _transpose(self, ids, old_key: str, new_key: str):
        import numpy as np

        from cadenza.data.transpose import Transposer

        shift = (parse_key(new_key)[0] - parse_key(old_key)[0]) % 12
        shift = shift - 12 if shift > 6 else shift
        if self._transposer is None:
            self._transposer = Transposer(self.codec)
        return [int(i) for i in self._transposer(np.asarray(ids), shift)]

    def _start_section(self, at_bar: int, fresh: bool = False) -> None:
        """A new section from bar ``at_bar``; ``fresh``: a new start (the model chooses every
        control nobody set again, and no bars are kept), as a skip asks."""
        from cadenza.batching import reader
        from cadenza.music.grammar import GrammarConstraint
        from cadenza.music.tempo import auto_tempo
        from cadenza.sampling import Decoder

        held = self._held(at_bar)
        previous = held[-1].prefix if held and not fresh else None
        values, by = self._effective()
        if values["tempo"] is None:       # the tempo on auto: drawn for the mood's energy (music/tempo.py)
            values["tempo"] = auto_tempo(self, values, previous, [] if fresh else held)
        prefix = self._prefix_for(values, previous)
        context, kept = self._context_for(prefix, at_bar if not fresh else 0)
        self.section += 1
        self._values, self._by = values, by
        self._first_bar = at_bar
        self._tempo_exact = float(values["tempo"]) if values["tempo"] is not None else None
        state = RemiState(self.remi, record=True).feed_all(context)
        self._bar_open = state.bars            # the kept bars are already complete
        moods = self._moods_callable()
        policy = GrammarPolicy(self.remi, prefix={s: prefix[s] for s in PREFIX_SLOTS}, moods=moods, keep_metre=True)
        grammar = GrammarConstraint(policy, state)
        if self.decoder is None:
            self.decoder = Decoder(self.mm.network, context, constraint=grammar, seed=self.seed,
                                   temperature=self.temperature, top_p=self.top_p, desc="stream",
                                   reader=reader(self.mm.network))   # alone or batched: the same logits
        else:
            self.decoder.restart(context, grammar)
        self._opened = False          # the section's first bar is opened by the next bar_steps()
        self.sections.append({"section": self.section, "bar": at_bar, "kept_bars": kept,
                              "context_tokens": len(context)})
        del self.sections[:-self.retain_bars]

    def _moods_callable(self):
        """The segment moods the policy allows: from the section's valence/energy values."""
        v, e = self._values["valence"], self._values["energy"]
        if v is None and e is None:
            return None
        ids = self.codec.control_ids(None if v is None else float(v), None if e is None else float(e))
        return lambda segment: ids

    # ---- bars ----------------------------------------------------------------------------
    def _step(self):
        """One decoder step, after the model has read what it needs (a job: ``cadenza.batching``)."""
        yield from need_reads(self.decoder)
        self.decoder.step()

    def _open_bar_steps(self):
        """Sample until the stream is inside the section's first new bar (prefix, Bar, Mood)."""
        s = self.decoder.constraint.state
        while not (s.in_body and s.bars > self._bar_open):
            yield from self._step()
            s = self.decoder.constraint.state
        self._bar_from = len(self.decoder.context) - self._tokens_since_bar()
        self._mark_open(s)
        self._opened = True

    def _tokens_since_bar(self) -> int:
        ctx = self.decoder.context
        for k in range(len(ctx) - 1, -1, -1):
            if self.remi.kind[ctx[k]] == BAR:
                return len(ctx) - k
        return 0

    def next_bar(self) -> Bar:
        """Make the next bar (restarting the section first where the context is nearly full
        or the preferences are due to choose again)."""
        from cadenza.batching import drive

        return drive(self.mm.network, self.bar_steps())

    def bar_steps(self):
        """``next_bar`` as a job for ``cadenza.batching``: yields the decoder whenever the model
        must read a token, returns the Bar. A batch of streams steps many such jobs at once."""
        dec = self.decoder
        bar_no = self.bars_made
        if bar_no > self._first_bar and (
                dec.cached > dec.max_len - self.headroom
                or (self.chooser is not None and (bar_no - self._first_bar) % self.section_bars == 0)):
            self._start_section(bar_no)
            dec = self.decoder
        if not self._opened:
            yield from self._open_bar_steps()
        s = dec.constraint.state
        target = s.bars
        while s.bars == target:            # the bar is done when the next Bar token comes
            yield from self._step()
            s = dec.constraint.state
        return self._finish_bar(bar_no)

    def _finish_bar(self, bar_no: int) -> Bar:
        c, r = self.codec, self.remi
        dec, s = self.decoder, self.decoder.constraint.state
        ctx = dec.context
        next_bar_at = len(ctx) - self._tokens_since_bar()
        lean = ctx[self._bar_from:next_bar_at]
        notes = s.notes[self._notes_from:]
        # the bar just finished: its metre, start tick and segment are those before the new Bar
        ts = self._bar_ts
        prog, vel = self._carry
        full = c.expand_body([i for i in lean if r.kind[i] != MOOD], ts, prog, vel)
        bar_ticks = r.bar_ticks(ts)
        start_tick = self._bar_tick
        tempo = self._tempo_exact or float(r.value[s.prefix["tempo"]])
        events = []
        for onset, dur, pitch, program, velocity in notes:
            voice = self._voices.setdefault(program, len(self._voices))
            events.append({"pitch": int(pitch), "velocity": int(velocity), "start": self.beat + (onset - start_tick) / r.tpq,
                           "duration": dur / r.tpq, "bar": bar_no, "voice": voice, "program": int(program),
                           "drum": program == -1, "seq": self.seq})
            self.seq += 1
        length = bar_ticks / r.tpq
        segment = None
        local = self._bar_local                     # 1-based bar number within the section
        levels = self._segment_levels(s, local)
        if (local - 1) % self.S == 0:
            segment = self._segment_info(s, levels)
        bar = Bar(bar=bar_no, start=self.beat, end=self.beat + length, tempo=tempo,
                  time_signature=f"{ts[0]}/{ts[1]}", notes=events, segment=segment, section=self.section)
        prefix = dict(s.prefix)
        self.records.append(_Record(bar=bar, full_ids=full, ts=ts, levels=levels, prefix=prefix))
        if len(self.records) > self.retain_bars:
            self._dropped_end = self.records.pop(0).bar.end
            self.dropped += 1
        self.beat += length
        self._bar_from = next_bar_at       # the bar now open
        self._mark_open(s)
        return bar

    def _segment_levels(self, s: RemiState, local: int) -> tuple:
        seg_start = ((local - 1) // self.S) * self.S
        for b, v, e in reversed(s.moods):
            if b <= seg_start:
                return (v, e)
        return (self.codec.config.levels // 2, self.codec.config.levels // 2)

    def _segment_info(self, s: RemiState, levels: tuple) -> dict:
        r, n = self.remi, self.codec.config.levels
        p = s.prefix
        controls = {"style": r.value[p["style"]], "key": r.value[p["key"]],
                    "tempo": self._tempo_exact or float(r.value[p["tempo"]]),
                    "time_signature": "{}/{}".format(*r.value[p["time_signature"]]),
                    "valence": round((levels[0] + 0.5) / n, 3), "energy": round((levels[1] + 0.5) / n, 3),
                    "valence_level": int(levels[0]), "energy_level": int(levels[1]), "mood": mood_name(levels)}
        return {"controls": controls, "chosen_by": dict(self._by)}

    def _mark_open(self, s: RemiState) -> None:
        """Note where the bar just opened starts: its metre, first tick, number in the
        section, its first note event and the instrument and velocity in force (the grammar
        stops a forced chain before any note, so none of the bar's notes is in yet)."""
        r = self.remi
        self._notes_from = len(s.notes)
        self._carry = (r.program_ids.get(s.program) if s.program is not None else None,
                       r.vel_ids.get(s.vel) if s.vel is not None else None)
        self._bar_ts = s.ts
        self._bar_tick = s.bar_start
        self._bar_local = s.bars

    # ---- restarts ------------------------------------------------------------------------
    def restart(self, at_bar: int | None = None, fresh: bool = False) -> float:
        """Start a new section at ``at_bar`` (default: the next bar to make), dropping the
        bars made from there on (``fresh``: see ``_start_section``); a bar no longer held
        (older than ``retain_bars``) cannot be restarted at: the oldest held one is used.
        Returns the beat where the new music starts."""
        n = self.bars_made
        at_bar = n if at_bar is None else max(self.dropped, min(int(at_bar), n))
        del self.records[at_bar - self.dropped:]
        self.beat = self.records[-1].bar.end if self.records else self._dropped_end
        self._start_section(at_bar, fresh)
        return self.beat


__all__ = ["Soundtrack", "Controls", "Bar", "mood_name", "CONTROL_FIELDS"]
