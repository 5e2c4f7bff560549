"""``predict_next``: the model as a next-note predictor, marginalised over the grammar."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import torch

from cadenza.bounds import PREDICT_TOP
from cadenza.errors import ConfigError
from cadenza.music.grammar import DUR, PROG, RemiTables, RemiState
from cadenza.sampling import Decoder
from cadenza.codecs.music.names import duration_name, pitch_name
from cadenza.music.inputs import load_score, remi_for, styled_input


# --------------------------------------------------------------------------- predict
@dataclass
class NextNote:
    """One candidate next note (see ``predict_next`` for what the numbers mean)."""

    pitch: int
    name: str
    probability: float          # P(next note has this pitch | it starts at one of the onsets considered)
    onset: str                  # its most likely onset, e.g. "bar 4, beat 3"
    after_quarters: Fraction    # that onset, in quarter notes after the input's last onset
    onset_probability: float    # P(that onset | a later onset is next)
    duration_quarters: Fraction
    duration: str               # its most likely duration, named
    duration_probability: float
    network_probability: float = 0.0   # the network's own probability (``probability`` may add the piece memory)


@dataclass
class Prediction:
    notes: list
    p_end: float                # P(the piece ends after the input)
    p_same_onset: float         # P(another note at the input's last onset)
    coverage: float             # timing probability of the onsets considered
    onsets: list                # [(label, probability)] of the onsets considered
    last_note: str
    program: int
    context_tokens: int
    memory: bool = False        # probabilities mix the network with the piece memory (cadenza.music.memory)


def _beat_label(remi: RemiTables, bar: int, pos: int, ts) -> str:
    whole, frac = divmod(Fraction(pos, remi.ppb), 1)
    text = f"{int(whole) + 1}" + (f" {frac.numerator}/{frac.denominator}" if frac else "")
    return f"bar {bar}, beat {text}"


@dataclass
class _Onset:
    """One onset the next note may start at, and the decoder branch that has read up to it."""

    p: float                    # P(this onset | a later onset is next)
    bar: int
    pos: int
    tick: int
    dec: Decoder                # has read the tokens before this onset's Position
    pitches: dict | None = None  # P(pitch | this onset), once its Position is read


@dataclass
class NextNoteDistribution:
    """What ``next_note_distribution`` finds after the input (see ``predict_next``)."""

    pitches: dict               # {pitch: P(next note has it | one of ``onsets``)}
    p_end: float
    p_same_onset: float
    coverage: float             # the timing probability of ``onsets``
    onsets: list                # the chosen ``_Onset``s, likeliest first
    program: int | None
    context_tokens: int


def next_note_distribution(remi: RemiTables, dec: Decoder, state: RemiState, max_onsets: int,
                           onset_mass: float) -> NextNoteDistribution:
    """Timing branches and the next-pitch distribution after the input (see ``predict_next``).

    ``dec``: a decoder that has read the input (the studio keeps one, so a played note costs
    one cached step); every branch is a ``fork`` of it, so it is not changed."""
    ts, prog = state.ts, state.program
    pitch_ids = remi.drum_ids if prog == -1 else remi.pitch_ids
    pitch_list = list(pitch_ids.items())
    pitch_idx = torch.tensor([i for _, i in pitch_list])
    p0 = dec.probs()
    p_end = float(p0[remi.eos])
    same = remi.masks[PROG].clone()
    if prog is not None and prog in remi.program_ids:
        same[remi.program_ids[prog]] = False
    same[pitch_idx] = True
    p_same = float(p0[same].sum())
    npos = remi.bar_positions(ts)
    onsets = [_Onset(float(p0[remi.pos_ids[q]]), state.bars, q, state.position_onset(q), dec)
              for q in range(state.pos + 1, npos)]
    p_bar = float(p0[remi.bar])
    after_bar = dec.fork()
    after_bar.take(remi.bar)
    p1 = after_bar.probs()
    if (state.bars % remi.segment_bars) == 0:      # the next bar opens a segment: its likeliest mood
        after_bar.take(max(remi.mood_ids.values(), key=lambda i: float(p1[i])))
        p1 = after_bar.probs()
    pos_mass = sum(float(p1[remi.pos_ids[q]]) for q in range(npos)) or 1.0
    next_start = state.next_bar_start()
    onsets += [_Onset(p_bar * float(p1[remi.pos_ids[q]]) / pos_mass, state.bars + 1, q,
                      next_start + q * remi.position_ticks(ts[1]), after_bar) for q in range(npos)]
    total = sum(o.p for o in onsets) or 1.0
    for o in onsets:
        o.p /= total
    onsets.sort(key=lambda o: -o.p)
    chosen, mass = [], 0.0
    for o in onsets:
        if chosen and (mass >= onset_mass or len(chosen) >= max_onsets):
            break
        chosen.append(o)
        mass += o.p
    joint: dict[int, float] = {}
    for o in chosen:
        o.dec = o.dec.fork()
        o.dec.take(remi.pos_ids[o.pos])
        v = o.dec.probs()[pitch_idx]
        v = (v / v.sum().clamp_min(1e-30)).tolist()
        o.pitches = {p: x for (p, _), x in zip(pitch_list, v)}
        for p, x in o.pitches.items():
            joint[p] = joint.get(p, 0.0) + o.p * x
    z = mass or 1.0
    return NextNoteDistribution({p: x / z for p, x in joint.items()}, p_end, p_same, mass, chosen, prog,
                     len(dec.context))


def input_decoder(model, ids: list[int]) -> Decoder:
    """A decoder that has read ``ids`` (the last ``max_len - 8`` of them: room for the branches).
    It only reads, so its seed is fixed: torch's global generator is left as it was."""
    room = model.config.max_len - 8
    return Decoder(model, ids[-room:] if len(ids) > room else ids, seed=0)


def pitch_distribution_after(model, remi: RemiTables, ids: list[int], state: RemiState, max_onsets: int = 4,
                             onset_mass: float = 0.9) -> dict[int, float]:
    """P(the next note has pitch p) after the tokens ``ids`` (which ``state`` has seen), as
    ``predict_next`` defines the next note. A dict {MIDI pitch: probability}."""
    return next_note_distribution(remi, input_decoder(model, ids), state, max_onsets, onset_mass).pitches


def with_memory(remi: RemiTables, pitches: dict[int, float], state: RemiState) -> dict[int, float]:
    """The network's next-pitch distribution mixed with the piece memory of the melody so far
    (``state`` must have recorded its notes); drums are left as they are."""
    from cadenza.music.memory import PieceMemory, melody_before

    if state.program == -1:
        return dict(pitches)
    return PieceMemory(sorted(remi.pitch_ids)).mix(pitches, melody_before(state.notes, state.program))


def next_pitch_distribution(mm, midi, max_onsets: int = 4, onset_mass: float = 0.9,
                            memory: bool = True) -> dict[int, float]:
    """P(the next note has pitch p) for every pitch p of the vocabulary, as ``predict_next``
    defines the next note (the first note after the input's last onset, marginalised over
    its likeliest onsets). A dict {MIDI pitch: probability} summing to 1. ``memory``: mixed
    with the piece memory (``cadenza.music.memory``); False gives the network alone."""
    codec = mm.codec
    remi = remi_for(codec)
    score = load_score(midi)
    ids, _, _ = styled_input(mm, score, None, "input")
    state = RemiState(remi, record=memory).feed_all(ids)
    with torch.inference_mode(), mm.network.decoding_with("float32"):
        dist = pitch_distribution_after(mm.network, remi, ids, state, max_onsets, onset_mass)
    return with_memory(remi, dist, state) if memory else dist


def predict_next(mm, midi, top: int = 5, max_onsets: int = 4, onset_mass: float = 0.9,
                 memory: bool = True) -> Prediction:
    """The model as a next-note predictor: the ``top`` most likely pitches of the next note.

    The stream writes a note as Position (when), an optional Program (a change of
    instrument), Pitch, an optional Velocity and Duration, so "the next note" is
    marginalised over the grammar like this:

    1. Timing: after the input, the model's distribution over the next event is split into
       another note at the same onset (``p_same_onset``), the end of the piece (``p_end``)
       and a later onset: a Position later in the bar, or a bar line followed by a
       Position in the next bar (P(Bar) x P(Position | Bar), with the next segment's
       likeliest Mood token in between when that bar opens a segment). The later onsets
       are renormalised to sum to 1: the timing distribution *given that a later note comes*.
    2. Onsets are taken most likely first until they hold ``onset_mass`` of it (at most
       ``max_onsets``); ``coverage`` is the mass they hold.
    3. For each such onset the model is given its Position, and its distribution over the
       pitches of the instrument in force is read (renormalised over those pitches).
    4. ``probability`` of a pitch = sum over those onsets of P(onset) x P(pitch | onset),
       divided by ``coverage``: the probability that the next note has this pitch, given
       that it starts at one of the onsets considered. With several notes at one onset this
       is the note the model writes first there (shorter, then lower, notes come first).
    5. For each listed pitch, its most likely onset is shown, and its most likely duration
       with P(duration | onset, pitch) over the duration tokens.

    6. With ``memory`` (the default) the pitch probabilities of step 4 are mixed with the piece
       memory, a short-term model of the melody so far (``cadenza.music.memory``), and ranked by
       the mix; ``network_probability`` keeps the network's own figure for every note.

    ``next_pitch_distribution`` gives the whole distribution of step 4.
    """
    codec = mm.codec
    model = mm.network
    remi = remi_for(codec)
    if isinstance(top, bool) or not isinstance(top, int) or not PREDICT_TOP.lo <= top <= PREDICT_TOP.hi:
        raise ConfigError(f"--top must be a whole number from {PREDICT_TOP.lo} to {PREDICT_TOP.hi}, not {top!r}")
    score = load_score(midi)
    ids, start, _ = styled_input(mm, score, None, "input")
    state = RemiState(remi, record=True).feed_all(ids)
    ts = state.ts
    # exact float32 weights: these probabilities are printed, and speed does not matter here
    with torch.inference_mode(), model.decoding_with("float32"):
        found = next_note_distribution(remi, input_decoder(model, ids), state, max_onsets, onset_mass)
        prog = found.program
        pitch_ids = remi.drum_ids if prog == -1 else remi.pitch_ids
        mixed = with_memory(remi, found.pitches, state) if memory else found.pitches
        ranked = sorted(mixed.items(), key=lambda kv: -kv[1])[:top]
        notes = []
        dur_ids = [i for i in range(remi.vocab_size) if remi.kind[i] == DUR]
        last_onset = state.onset
        for p, pj in ranked:
            o = max(found.onsets, key=lambda b: b.p * b.pitches[p])
            after_pitch = o.dec.fork()
            after_pitch.take(pitch_ids[p])
            pd = after_pitch.probs()
            zd = sum(float(pd[i]) for i in dur_ids) or 1.0
            d_id = max(dur_ids, key=lambda i: float(pd[i]))
            dq = remi.duration_quarters(d_id, ts[1])
            notes.append(NextNote(
                pitch=p, name=pitch_name(p) if prog != -1 else f"drum {p}", probability=pj,
                onset=_beat_label(remi, o.bar, o.pos, ts),
                after_quarters=Fraction(o.tick - last_onset, remi.tpq), onset_probability=o.p,
                duration_quarters=dq, duration=duration_name(dq), duration_probability=float(pd[d_id]) / zd,
                network_probability=found.pitches.get(p, 0.0)))
    ln = state.last_note
    last = (f"{pitch_name(ln.pitch)} at {_beat_label(remi, state.bars, state.pos, ts)}" if ln else "none")
    return Prediction(notes=notes, p_end=found.p_end, p_same_onset=found.p_same_onset, coverage=found.coverage,
                      onsets=[(_beat_label(remi, o.bar, o.pos, ts), o.p) for o in found.onsets], last_note=last,
                      program=prog, context_tokens=found.context_tokens, memory=memory)
