"""Compose and continue with a music model: ``compose`` (a new piece) and ``continue_piece``
(more of an input piece), the Python API of ``cadenza compose`` and ``cadenza continue``.

Both sample from a ``SparseTransformer`` through ``cadenza.sampling.Decoder``, the one decode
loop (sparse KV cache, ``torch.inference_mode``, a private seeded generator), with the grammar
constraint (``cadenza.music.grammar``) that keeps every sequence a valid REMI stream and steers
the model, run to a length target by ``decode.decode_to_target``:

- ``compose``: the prompt is BOS; each conditioning slot (style, key, tempo, metre, valence,
  energy) is either forced to the requested token or, when unspecified, sampled from the
  model restricted to that slot's tokens. The metre of the prefix holds for every bar.
  Generation stops before the first token past the requested bars (counting Bar tokens)
  or seconds (the onset time of each Position/Bar at the piece's tempo); the model may end
  the piece itself (EOS) once it is in the last requested bar or past 90% of the seconds.
- ``continue_piece``: the prompt is the encoded input (its prefix describes the input's
  key, tempo, metre and mood); the input's tokens are kept verbatim, so its quantized notes
  are the output's first notes. New notes start strictly after the input's last onset,
  use only the input's instruments and keep its last metre.

The same seed gives the same piece: the only randomness is the seeded generator.

The rest of the music API lives by job: ``inputs`` (checks, input pieces, styles), ``piece``
(``Piece``), ``policies`` (length target, copy guard), ``harmony`` (``harmonize``, with
``harmony_policy`` and ``textures``) and ``predict`` (``predict_next``); ``cadenza.music``
exports the public names of all of them.
"""

from __future__ import annotations

from pathlib import Path

from cadenza.codecs.music import PREFIX_SLOTS
from cadenza.music.controls import MoodPlan
from cadenza.music.decode import decode_to_target
from cadenza.music.grammar import PROG, RemiState
from cadenza.music.modes import apply_modes, draw_key, mode_of, segment_modes, to_parallel_minor
from cadenza.music.inputs import (check_length, check_sampling, check_seed, check_style, input_name, kept_notes,
                                  load_score, plain, remi_for, styled_input)
from cadenza.music.piece import Piece, finish_ids, readable_prefix
from cadenza.music.policies import LengthPolicy, LengthTarget, NoMoreInBar

__all__ = ["compose", "continue_piece"]


# --------------------------------------------------------------------------- compose
def compose(mm, style=None, mood=None, valence=None, energy=None, bars=None, seconds=None, tempo=None,
            key=None, time_signature=None, seed=None, temperature: float = 1.0, top_k=None,
            top_p: float | None = 0.95, progress: bool = False, on_bar=None, guard=None,
            ending: bool = True, memory: bool = True) -> Piece:
    """Compose a new piece with a loaded music model (``cadenza.music.load_model``).

    Conditioning: ``style`` (a codec style, e.g. "bach", "folk"), ``tempo`` (beats per
    minute; the model is conditioned on the nearest tempo bin and the MIDI gets exactly
    this tempo), ``key`` ("C", "F#m", "Bb minor"), ``time_signature`` ("3/4"). Whatever is
    not given is sampled from the model, restricted to that slot.

    Mood, per segment (``segment_bars`` bars): ``mood`` (calm, happy, sad, tense,
    energetic), ``valence`` / ``energy`` (0..1, the position among the corpus's segments, or
    levels 0..4 as ints); each may also be a plan that changes during the piece, as a list
    of (from_bar, value) pairs or text like "0.2,0.8@9" (see ``cadenza.music.controls``).
    A control not given is chosen by the model at every segment.

    Length: ``bars`` or ``seconds`` (default 16 bars). With ``ending`` (the default) the piece
    ends rather than being cut: from bar N - 1 the model may end it right after a note on the
    tonic, and it is cut after bar N + 2 at the latest (``policies.LengthTarget``); without,
    it has exactly N bars. ``memory`` (the default): sample each pitch from the network mixed
    with the piece memory (``cadenza.music.memory``), so the piece leans on what it has already
    played; False samples the network alone. ``seed``: the same seed gives the same
    piece (None draws one, recorded in the result). ``on_bar(n, seconds_since_start)`` is
    called as each bar is finished. Returns a :class:`Piece`.
    """
    codec = mm.codec
    remi = remi_for(codec)
    bars, seconds = check_length(bars, seconds)
    check_sampling(temperature, top_k, top_p)
    seed = check_seed(seed)
    plan = MoodPlan.make(valence=valence, energy=energy, mood=mood)
    key_from_mood, minor_from_major = None, False
    if key is None and mm.mood_keys is not None:     # the mood chooses the mode (cadenza.music.modes)
        level = plan.levels_at(codec, 1)[0]
        if level is not None and mode_of(codec, level) == "minor":
            # the network, conditioned on a minor key token, drifts to the relative major (the
            # corpus's key tokens rarely mark minor); so it writes in a major key drawn for the
            # mood and the piece is moved to that key's parallel minor (``modes.apply_modes``)
            key = draw_key(mm.mood_keys, level, seed, "major")
            minor_from_major = key is not None
        elif level is not None:
            key = key_from_mood = draw_key(mm.mood_keys, level, seed, "major")
    slots = codec.conditioning(style=check_style(codec, style), key=key, tempo=tempo,
                               time_signature=time_signature)
    if tempo is not None:
        tempo = float(tempo)
    forced = dict(zip(PREFIX_SLOTS, slots))
    target = LengthTarget(remi, bars=bars, seconds=seconds, qpm=tempo, close=ending)
    policy = LengthPolicy(remi, target, prefix=forced, programs=None, moods=plan.moods(codec), keep_metre=True)
    state = RemiState(remi)
    prompt = [codec.bos_id]
    new, stats = decode_to_target(mm.network, prompt, policy, state, target, seed=seed, temperature=temperature,
                         top_k=top_k, top_p=top_p, progress=progress, desc="compose", on_bar=on_bar,
                         guard=guard, memory=memory)
    if minor_from_major:
        # every segment minor but those the plan makes major (the key written in is major)
        ids = to_parallel_minor(remi, apply_modes(remi, finish_ids(codec, prompt, new),
                                                  _mode_plan(mm, plan, target, changes_only=False), default="minor"))
        key_from_mood = readable_prefix(codec, ids).get("key")
    else:
        ids = apply_modes(remi, finish_ids(codec, prompt, new), _mode_plan(mm, plan, target))
    qpm = target.tempo(state)
    settings = {"style": style, "mood": plain(mood), "valence": plain(valence), "energy": plain(energy),
                "bars": bars, "seconds": seconds, "tempo": tempo, "key": None if key_from_mood else key,
                "key_from_mood": key_from_mood, "time_signature": time_signature,
                "temperature": temperature, "top_k": top_k, "top_p": top_p, "ending": ending,
                "memory": memory}
    return Piece(kind="compose", ids=ids, codec=codec, tempo=qpm, seed=seed,
                 conditioning=readable_prefix(codec, ids), settings=settings, model=mm.provenance(),
                 generated_tokens=len(new), elapsed_s=stats.elapsed_s, first_bar_s=stats.first_bar_s,
                 bars=state.bars, stopped=stats.stopped)


def _mode_plan(mm, plan: MoodPlan, target: LengthTarget, bars0: int = 0, changes_only: bool = True) -> dict:
    """{segment: mode} of the segments whose mood asks for a mode (``modes.apply_modes`` moves
    their notes where it is not the key's). ``changes_only`` (compose, where the first segment's
    mood chose the key, or the user did): only segments whose mode differs from the first
    planned segment's; else (continue, in the input's key) every planned segment."""
    S = mm.codec.config.segment_bars
    most = target.most_bars if target.bars is not None else 64
    modes = segment_modes(plan, mm.codec, (bars0 + most) // S + 2)
    if modes and changes_only:
        first = modes[min(modes)]
        modes = {seg: m for seg, m in modes.items() if m != first}
    return modes


# --------------------------------------------------------------------------- continue


def continue_piece(mm, midi, bars=None, seconds=None, style=None, seed=None, temperature: float = 1.0,
                   top_k=None, top_p: float | None = 0.95, progress: bool = False, on_bar=None,
                   mood=None, valence=None, energy=None, guard=None, constraints=None,
                   from_next_bar: bool = False, ending: bool = True, memory: bool = True) -> Piece:
    """Continue a piece (a MIDI path, MIDI bytes or a symusic score).

    The input is encoded with its own conditioning prefix (key, tempo, metre; ``style``, or
    the style the model finds likeliest for it, see ``infer_style``) and its own segment
    moods, and kept token for token, so the output starts with exactly the input's quantized
    notes (``codec.quantize``). New notes start after the input's last onset, on the input's
    instruments, in its last metre. ``bars`` counts new bar lines (default 8: the rest of
    the input's last bar and 8 more); ``seconds`` counts from the input's last onset.
    ``mood`` / ``valence`` / ``energy`` (as in ``compose``; bars count from the input's first
    bar) force the moods of the new segments; not given, the model chooses them.
    ``constraints`` (``cadenza.music.constraints.Constraints``): scale, role, density of the
    new notes. ``from_next_bar``: the new notes start at the next bar line (an answer to a
    phrase), not right after the input's last onset. ``ending``: the continuation ends the piece
    near its length, on the tonic, as in ``compose`` (the studio, which suggests passages mid-piece,
    turns it off). ``memory``: pitches mixed with the piece memory, as in ``compose``.
    """
    codec = mm.codec
    remi = remi_for(codec)
    bars, seconds = check_length(bars, seconds, default_bars=8)
    check_sampling(temperature, top_k, top_p)
    seed = check_seed(seed)
    plan = MoodPlan.make(valence=valence, energy=energy, mood=mood)
    score = load_score(midi)
    ids, start, style = styled_input(mm, score, style, "input")
    qpm = float(codec.describe(score).tempo)
    state = RemiState(remi).feed_all(ids)
    programs = sorted({remi.value[i] for i in ids[start:] if remi.kind[i] == PROG})
    target = LengthTarget(remi, bars=bars, seconds=seconds, qpm=qpm, origin_ticks=state.onset, close=ending)
    freeze = state.next_bar_start() - 1 if from_next_bar else state.onset
    modes = _mode_plan(mm, plan, target, bars0=state.bars, changes_only=False)
    policy = LengthPolicy(remi, target, programs=programs, ts=state.ts, freeze_onset=freeze, moods=plan.moods(codec))
    if from_next_bar:     # nothing more in the input's last bar: its next token is the bar line
        policy = NoMoreInBar(policy)
    if constraints is not None and not constraints.empty:
        from cadenza.music.constraints import ConstrainedPolicy

        policy = ConstrainedPolicy(policy, constraints)
    state = RemiState(remi)
    new, stats = decode_to_target(mm.network, ids, policy, state, target, seed=seed, temperature=temperature,
                         top_k=top_k, top_p=top_p, progress=progress, desc="continue", on_bar=on_bar,
                         guard=guard, memory=memory)
    out = apply_modes(remi, finish_ids(codec, ids, new), modes, start=len(ids))
    name = input_name(midi)
    settings = {"input": name, "bars": bars, "seconds": seconds, "style": style, "temperature": temperature,
                "top_k": top_k, "top_p": top_p, "mood": plain(mood), "valence": plain(valence),
                "energy": plain(energy), "ending": ending, "memory": memory}
    return Piece(kind="continue", ids=out, codec=codec, tempo=qpm, seed=seed,
                 conditioning=readable_prefix(codec, out), settings=settings, model=mm.provenance(),
                 kept=kept_notes(codec, ids, qpm),
                 kept_label=f"input: {Path(name).name}" if name else "input",
                 input_tokens=len(ids), generated_tokens=len(new), elapsed_s=stats.elapsed_s,
                 first_bar_s=stats.first_bar_s, bars=state.bars, stopped=stats.stopped)
