"""``LiveEngine``: Cadenza plays along with a person, in time.

Fed the player's note-ons and note-offs (``feed``), it keeps a beat grid (``clock.BeatClock``:
a fixed tempo, or the player's, followed once 4 beats are heard) and decides each beat's
accompaniment before the beat:

- after every note-on and note-off, and right after the previous beat is sent, it decides
  the next beat again, from the notes so far and the model's prediction of the player's
  note on that beat (``listener.Listener``: the kept decoder, a few cached steps per note);
- ``poll(now)`` makes the next beat's decision final ``lead_ms`` before the beat and returns
  its events (``OutEvent``: note-ons and note-offs at their times on the grid). An event
  whose time has passed is never sent (``missed`` counts the beats it happens to);
- if the player went somewhere the sounding accompaniment clashes with, the next beat
  changes it (``OutEvent.correction``).

Roles (``LiveSettings.role``): ``chords``, ``bass`` and ``counter`` are chosen by
``live.harmony`` against the predicted note; ``answer`` lets the model itself play a bar of
the line in the bars the person leaves silent (sampled from the kept decoder under the
grammar and the constraints), and stops at the next beat when the person comes back in.
Density: ``sparse`` (a new chord or note each half bar, or when the player's note clashes),
``medium`` (each beat; the default), ``dense`` (each eighth). Scale lock
(``LiveSettings.scale``): every accompaniment pitch keeps to the key's scale. When the
player rests for a bar, the accompaniment rests too (except ``answer``).

The clock is the caller's (``clock``: a function returning seconds; event times are on it).
Nothing here waits or sleeps: a driver (the ``cadenza live`` command, the studio, or
``live.simulate`` in tests and the benchmark) calls ``feed`` and ``poll`` in time order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from cadenza.codecs.music import parse_key
from cadenza.music.constraints import Constraints
from cadenza.music.live import harmony
from cadenza.music.live.clock import BeatClock
from cadenza.music.live.listener import Listener
from cadenza.music.live.records import Decision, LiveSettings, NoteOff, NoteOn, OutEvent, TakeNote

TOP_MASS = 0.95         # the predicted pitches considered: the likeliest holding this much
TOP_MAX = 12
CLICK = (76, 77)        # count-in clicks (General MIDI drum notes: high and low wood block)
COUNT_IN_DELAY_S = 0.3  # the first click comes this long after start (time for it to reach a page or a port)


@dataclass
class Planned:
    """One note of a beat's plan: ``offset`` beats after the beat, ``length`` beats (None:
    held until a later beat releases it)."""

    offset: float
    pitch: int
    velocity: int
    length: float | None = None


@dataclass
class BeatPlan:
    beat: int
    starts: list = field(default_factory=list)
    release: bool = True            # end the notes sounding at the beat
    chord: harmony.Chord | None = None
    expected: float = float("nan")  # expected share of consonant notes (the model's view)
    correction: bool = False

    def offset0_pitches(self) -> tuple:
        return tuple(sorted(n.pitch for n in self.starts if n.offset == 0))


class LiveEngine:
    def __init__(self, mm, settings: LiveSettings | None = None, clock=time.monotonic, **kw):
        self.s = s = settings if settings is not None else LiveSettings(**kw)
        self.clock = clock
        self.metre = s.metre
        self.bar_beats = self.metre[0]
        self.half_bar = self.bar_beats // 2 if self.bar_beats % 2 == 0 and self.bar_beats >= 4 else self.bar_beats
        self.density = s.density or "medium"
        self.grid = BeatClock(s.tempo, follow=s.follow, follow_after=s.follow_after)
        self.lead = s.lead_ms / 1000.0
        self.scale_pcs = Constraints(scale=s.scale).pitch_classes() if s.scale else None
        self.fixed_key = parse_key(s.scale) if s.scale else None        # a scale lock fixes the key
        self.key_prior = parse_key(s.key) if s.key else (0, "major")     # else the notes refine it
        self.listener = Listener(mm, s.tempo, self.metre, s.scale or s.key or "C", s.style, s.seed)
        self.next_beat = 0
        self.plan: BeatPlan | None = None
        self.sounding: dict[int, tuple[float, int]] = {}      # accompaniment pitch -> (start beat, velocity)
        self.held: dict[int, tuple[float, int, float]] = {}   # player's pitch -> (time, velocity, beat)
        self.onsets: list[tuple[float, float, int]] = []      # player's (time, beat, pitch), recent
        self.velocities: list[int] = []
        self.pc_weights: dict[int, float] = {}
        self.recent: dict[int, float] = {}                    # pitch classes since the chord changed
        self.prev_chord: harmony.Chord | None = None
        self.prev_pitches: tuple = ()
        self.last_beat_pitches: tuple = ()                    # what the last committed onset played
        self.answer: dict | None = None
        self.events: list[OutEvent] = []
        self.decisions: list[Decision] = []
        self.person: list[TakeNote] = []
        self.model: list[TakeNote] = []
        self.missed = 0
        self.corrections = 0
        self.started = False

    # ---- starting and stopping -------------------------------------------------------------
    def start(self, now: float | None = None) -> list[OutEvent]:
        """Start the session. With a count-in, the grid starts now (the first downbeat
        ``count_in`` beats after the lead) and the clicks are returned; without, it starts at
        the player's first note-on, which is the first downbeat."""
        now = self.clock() if now is None else now
        self.started = True
        clicks = []
        if self.s.count_in:
            origin = now + max(self.lead, COUNT_IN_DELAY_S) + self.s.count_in * self.grid.period
            self.grid.start(origin)
            for k in range(self.s.count_in):
                b = k - self.s.count_in
                t = self.grid.time(b)
                pitch = CLICK[1] if k == 0 else CLICK[0]
                clicks += [OutEvent(t, b, pitch, 90, True, "click", now),
                           OutEvent(t + 0.05, b, pitch, 0, False, "click", now)]
            self.plan = self._decide(0, "beat")
        return clicks

    def stop(self, now: float | None = None) -> list[OutEvent]:
        """Note-offs for every accompaniment note still sounding, now or right after the last
        event already scheduled (not counted as scheduled: their lead is 0)."""
        now = self.clock() if now is None else now
        if self.events:
            last = max(e.time for e in self.events[-16:])
            now = now if now > last else last + 0.001
        beat = self.grid.beat(now) if self.grid.started else 0.0
        out = [OutEvent(now, beat, p, 0, False, self.s.role, now) for p in sorted(self.sounding)]
        for p, (b0, v) in self.sounding.items():
            self.model.append(TakeNote(p, b0, max(beat - b0, 1 / 16), v, "model"))
        self.sounding.clear()
        for p, (t0, v, b0) in self.held.items():
            self.person.append(TakeNote(p, b0, max(beat - b0, 1 / 16), v, "person"))
        self.held.clear()
        self.plan = None
        self.started = False
        return out

    # ---- the player ------------------------------------------------------------------------
    def feed(self, event) -> None:
        """A player's ``NoteOn`` or ``NoteOff`` (in time order; call ``poll`` first for the
        beats whose deadline came before it)."""
        t0 = time.perf_counter()
        if isinstance(event, NoteOn) and event.velocity > 0:
            self._note_on(event)
            cause = "note_on"
        elif isinstance(event, (NoteOn, NoteOff)):
            if not self._note_off(event.time, event.pitch):
                return
            cause = "note_off"
        else:
            raise TypeError(f"feed takes NoteOn or NoteOff, not {type(event).__name__}")
        if not self.grid.started:
            return
        self.plan = self._decide(self.next_beat, cause)
        self.decisions.append(Decision(self.next_beat, cause, time.perf_counter() - t0, self.clock()))

    def _note_on(self, e: NoteOn) -> None:
        self.started = True
        if not self.grid.started:
            self.grid.start(e.time)
            self.next_beat = 1            # beat 0 is this note: it could not be foreseen
        if e.pitch in self.held:
            self._note_off(e.time, e.pitch)
        self.grid.onset(e.time)
        beat = self.grid.beat(e.time)
        self.held[e.pitch] = (e.time, e.velocity, beat)
        self.onsets.append((e.time, beat, e.pitch))
        del self.onsets[:-64]
        self.velocities.append(e.velocity)
        del self.velocities[:-8]
        pc = e.pitch % 12
        self.pc_weights[pc] = self.pc_weights.get(pc, 0.0) + 1.0
        self.recent[pc] = self.recent.get(pc, 0.0) + 1.0
        self.listener.note_on(self.listener.tick(beat), e.pitch, e.velocity)

    def _note_off(self, t: float, pitch: int) -> bool:
        held = self.held.pop(pitch, None)
        if held is None:
            return False
        beat = self.grid.beat(t)
        self.person.append(TakeNote(pitch, held[2], max(beat - held[2], 1 / 16), held[1], "person"))
        self.listener.note_off(self.listener.tick(beat), pitch)
        return True

    # ---- the beat clock --------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """When ``poll`` should next be called (None before the grid has started)."""
        if not self.grid.started or not self.started:
            return None
        return self.grid.time(self.next_beat) - self.lead

    def poll(self, now: float | None = None) -> list[OutEvent]:
        """Make final every beat whose deadline has come; their events, in time order."""
        out: list[OutEvent] = []
        while self.started and self.grid.started:
            now = self.clock() if now is None else max(now, self.clock())
            b = self.next_beat
            if now < self.grid.time(b) - self.lead:
                break
            plan = self.plan if self.plan is not None and self.plan.beat == b else self._decide(b, "late")
            decided = self.clock()
            if decided >= self.grid.time(b):
                self.missed += 1          # too late for this beat: nothing of it is sent
                self._drop(plan)
            else:
                out += self._commit(plan, decided)
            self.grid.commit(b)
            self.next_beat = b + 1
            self.listener.maintain()
            t0 = time.perf_counter()
            self.plan = self._decide(self.next_beat, "beat")
            self.decisions.append(Decision(self.next_beat, "beat", time.perf_counter() - t0, self.clock()))
            now = None
        return out

    def _drop(self, plan: BeatPlan) -> None:
        if self.answer is not None:
            self.answer = None

    def _commit(self, plan: BeatPlan, decided: float) -> list[OutEvent]:
        b, g, role = plan.beat, self.grid, self.s.role
        t = g.time(b)
        out = []
        if plan.release or plan.starts:
            restart = {n.pitch for n in plan.starts if n.offset == 0}
            for p in sorted(self.sounding):
                if plan.release or p in restart:
                    b0, v = self.sounding.pop(p)
                    out.append(OutEvent(t, b, p, 0, False, role, decided, plan.correction))
                    self.model.append(TakeNote(p, b0, b - b0, v, "model"))
        for n in plan.starts:
            on_t = g.time(b + n.offset)
            if on_t <= decided:
                continue
            out.append(OutEvent(on_t, b + n.offset, n.pitch, n.velocity, True, role, decided, plan.correction))
            if n.length is None:
                self.sounding[n.pitch] = (b + n.offset, n.velocity)
            else:
                out.append(OutEvent(g.time(b + n.offset + n.length), b + n.offset + n.length, n.pitch, 0, False,
                                    role, decided, plan.correction))
                self.model.append(TakeNote(n.pitch, b + n.offset, n.length, n.velocity, "model"))
                if role == "answer":
                    tpb = self.listener.tpb
                    self.listener.add_note(round((b + n.offset) * tpb), n.pitch, n.velocity, round(n.length * tpb))
        if plan.starts and plan.offset0_pitches():
            self.last_beat_pitches = plan.offset0_pitches()
        if plan.correction:
            self.corrections += 1
        if plan.chord is not None and plan.chord != self.prev_chord:
            self.recent = {}
        if plan.chord is not None:
            self.prev_chord = plan.chord
        if plan.starts:
            self.prev_pitches = plan.offset0_pitches() or self.prev_pitches
        out.sort(key=lambda e: (e.time, e.on))
        self.events += out
        return out

    # ---- deciding a beat ------------------------------------------------------------------
    def _key(self) -> tuple[int, str]:
        if self.fixed_key is not None:
            return self.fixed_key
        return harmony.estimate_key(self.pc_weights, self.key_prior)

    def _velocity(self, extra: int = 0) -> int:
        v = sum(self.velocities) / len(self.velocities) if self.velocities else 80
        return int(min(110, max(30, round(0.8 * v) + extra)))

    def _player_resting(self, b: int) -> bool:
        """No note held and none started in the bar before beat ``b``."""
        if self.held:
            return False
        if not self.onsets:           # after a count-in the player comes in on beat 0: the first bar plays
            return not (self.s.count_in and b < self.bar_beats)
        return self.onsets[-1][0] < self.grid.time(b - self.bar_beats)

    def _onset_rate(self) -> float:
        """The share of recent beats on which the player started a note (0.8 to begin with)."""
        if len(self.onsets) < 4:
            return 0.8
        beats = {round(b) for _, b, _ in self.onsets if abs(b - round(b)) < 0.25}
        last = int(self.onsets[-1][1])
        span = range(max(0, last - 7), last + 1)
        return min(0.95, max(0.3, sum(1 for k in span if k in beats) / len(span)))

    def _outlook(self, b: int) -> harmony.Outlook:
        tick = self.listener.tick(b)
        held = tuple(sorted(self.held))
        dist = self.listener.pitches_at(tick)
        if not dist:                                  # the beat's note is already here
            return harmony.Outlook([(1.0, held)] if held else [], dict(self.recent))
        top, mass = [], 0.0
        for p, x in sorted(dist.items(), key=lambda kv: -kv[1]):
            top.append((x, (p,)))
            mass += x
            if mass >= TOP_MASS or len(top) >= TOP_MAX:
                break
        top = [(x / mass, s) for x, s in top]
        if held:     # the held note lasts past the beat, or a new one starts on it
            now = self.listener.tick(self.grid.beat(self.clock()))
            stay = self.listener.holds_past(tick, now) if self.listener.pending else 1 - self._onset_rate()
            top = [((1 - stay) * x, s) for x, s in top] + [(stay, held)]
        return harmony.Outlook(top, dict(self.recent))

    def _clashed(self, b: int) -> bool:
        """Did the player's note on the beat before ``b`` clash with what was played there?"""
        from cadenza.music.live.consonance import consonant_with_all

        if not self.last_beat_pitches:
            return False
        mine = [p for _, x, p in self.onsets if abs(x - (b - 1)) < 0.25]
        if not mine:
            return False
        bass = min(mine + list(self.last_beat_pitches))
        return not all(consonant_with_all(a, tuple(mine), bass) for a in self.last_beat_pitches)

    def _decide(self, b: int, cause: str) -> BeatPlan:
        if self.s.role == "answer":
            return self._decide_answer(b)
        if self._player_resting(b):
            return BeatPlan(b, release=True)
        role = self.s.role
        tonic, mode = self._key()
        chords = harmony.key_chords(tonic, mode, self.scale_pcs)
        outlook = self._outlook(b)
        onset_beat = self.density != "sparse" or b % self.half_bar == 0
        stay = 0.25 if (b % self.half_bar) else 0.05
        v = harmony.choose(role, chords, outlook, self.prev_chord, self.prev_pitches, self.scale_pcs, stay=stay)
        clashed = self._clashed(b)
        sounding = tuple(sorted(self.sounding))
        changed = tuple(sorted(v.pitches)) != sounding
        if not onset_beat and sounding and not (clashed and changed):
            return BeatPlan(b, release=False, chord=self.prev_chord,
                            expected=harmony.expected_share(sounding, outlook))
        correction = clashed and changed
        vel = self._velocity({"bass": 8, "chords": -4}.get(role, 0))
        starts = self._pattern(role, v, outlook, vel)
        return BeatPlan(b, starts, True, v.chord, v.expected, correction)

    def _pattern(self, role: str, v: harmony.Voicing, outlook: harmony.Outlook, vel: int) -> list[Planned]:
        if self.density != "dense":
            return [Planned(0.0, p, vel) for p in v.pitches]
        first = [Planned(0.0, p, vel, 0.5) for p in v.pitches]
        if role == "chords":
            return first + [Planned(0.5, p, vel - 10, 0.5) for p in v.pitches]
        lo, hi = harmony.RANGES[role]
        p0 = v.pitches[0] if v.pitches else None
        if p0 is None:
            return []
        cands = [n for n in range(lo, hi + 1) if n % 12 in v.chord.pcs and n != p0 and abs(n - p0) <= 12
                 and (self.scale_pcs is None or n % 12 in self.scale_pcs)]
        if not cands:
            return first
        second = max(cands, key=lambda n: harmony.note_odds(n, (), outlook) - 0.02 * abs(n - p0))
        return first + [Planned(0.5, second, vel - 8, 0.5)]

    def _decide_answer(self, b: int) -> BeatPlan:
        bar, first = divmod(b, self.bar_beats)
        a = self.answer
        if a is not None:
            if self.onsets and self.onsets[-1][0] >= a["since"]:      # the person came back in
                self.answer = None
                return BeatPlan(b, release=True, correction=True)
            if a["bar"] == bar:
                return BeatPlan(b, a["notes"].get(b, []), release=False)
            self.answer = None
        if first != 0 or len(self.onsets) < 3:
            return BeatPlan(b, release=False)
        last = self.onsets[-1][0]
        if last >= self.grid.time(b - 1) - 0.05 or last < self.grid.time(b - 2 * self.bar_beats):
            return BeatPlan(b, release=False)
        c = Constraints(scale=self.s.scale, role="melody", density=self.s.density)
        notes = self.listener.answer(bar, c)
        tpb = self.listener.tpb
        by_beat: dict[int, list] = {}
        vel = self._velocity(10)
        end = (bar + 1) * self.bar_beats
        for tick, pitch, dur in notes:
            x = tick / tpb
            length = min(dur / tpb, end - x)
            if length <= 0:
                continue
            by_beat.setdefault(int(x), []).append(Planned(x - int(x), pitch, vel, length))
        self.answer = {"bar": bar, "notes": by_beat, "since": self.clock()}
        return BeatPlan(b, by_beat.get(b, []), release=False)

    # ---- the take ---------------------------------------------------------------------------
    def take(self) -> list[TakeNote]:
        """Every finished note of the session, the person's and the model's, by start."""
        return sorted(self.person + self.model, key=lambda n: (n.start, n.by, n.pitch))

