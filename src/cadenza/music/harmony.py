"""``harmonize``: voices under a melody by constrained decoding (``policies.HarmonyPolicy``)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from cadenza.errors import ConfigError, DataError
from cadenza.music.decode import decode_to_target
from cadenza.music.grammar import RemiState
from cadenza.music.inputs import (_check_sampling, _check_seed, _input_name, _kept_notes, _load_score, _styled_input,
                                  remi_for)
from cadenza.music.piece import Piece, _finish_ids, _readable_prefix
from cadenza.music.policies import HarmonyPolicy, _parse_melody


def harmonize(mm, melody, voices: int = 3, style: str | None = "bach", seed=None, temperature: float = 1.0,
              top_k=None, top_p: float | None = 0.95, progress: bool = False, guard=None) -> Piece:
    """Add ``voices`` accompanying voices below a melody (a MIDI path, bytes or symusic score).

    How (constrained decoding over the REMI stream, no special training): the melody is
    encoded with its own prefix (key, tempo, metre, mood; ``style`` defaults to "bach" for
    chorale-style harmony) and decoding starts after that prefix. The melody's bar lines,
    metres, onsets and notes are forced token by token; around them the model writes
    accompaniment notes under the rules of :class:`HarmonyPolicy` (below the melody, at
    most ``voices`` sounding, a full chord under every melody note). Every quantized melody
    note appears in the output unchanged; the new notes are on their own track.
    """

    codec = mm.codec
    remi = remi_for(codec)
    if isinstance(voices, bool) or not isinstance(voices, int) or not 1 <= voices <= 6:
        raise ConfigError(f"the number of accompanying voices must be from 1 to 6, not {voices!r}")
    _check_sampling(temperature, top_k, top_p)
    seed = _check_seed(seed)
    score = _load_score(melody)
    ids, start, _ = _styled_input(mm, score, style, "melody")
    prefix, body = ids[:start], ids[start:]
    qpm = float(codec.describe(score).tempo)
    mel_state = RemiState(remi, record=True).feed_all(ids)
    bars = _parse_melody(remi, body, remi.value[mel_state.prefix["time_signature"]])
    programs = [n[3] for n in mel_state.notes if n[3] != -1]
    if not programs:
        raise DataError("the melody has only drum notes; give a melody with pitched notes")
    program = max(set(programs), key=programs.count)
    policy = HarmonyPolicy(remi, bars, [n[:4] for n in mel_state.notes], voices, program)
    state = RemiState(remi, record=True)
    new, stats = decode_to_target(mm.network, prefix, policy, state, None, seed=seed, temperature=temperature,
                         top_k=top_k, top_p=top_p, progress=progress, desc="harmonize", total_bars=len(bars),
                         guard=guard)
    if stats["stopped"] != "eos":
        raise DataError("the melody is too long to harmonize in one go")
    out = _finish_ids(codec, prefix, new)
    name = _input_name(melody)
    settings = {"input": name, "voices": voices, "style": style, "temperature": temperature, "top_k": top_k,
                "top_p": top_p}
    return Piece(kind="harmonize", ids=out, codec=codec, tempo=qpm, seed=seed,
                 conditioning=_readable_prefix(codec, out), settings=settings, model=mm.provenance(),
                 kept=_kept_notes(codec, ids, qpm), kept_label=f"melody: {Path(name).name}" if name else "melody",
                 input_ids=len(ids), generated_tokens=len(new), elapsed_s=stats["elapsed_s"],
                 first_bar_s=stats["first_bar_s"], bars=state.bars, stopped=stats["stopped"])


# --------------------------------------------------------------------------- scoring
def _on_program(score, program: int):
    """A copy of ``score`` with every pitched track on ``program`` (the codec merges them)."""
    out = score.copy()
    for t in out.tracks:
        if not t.is_drum:
            t.program = int(program)
    return out


def harmony_bits(mm, melody, full, voices: int = 3, style: str | None = "bach") -> dict:
    """The model's bits on a harmonization of ``melody``, scored through the path ``harmonize``
    samples it on: ``full`` (the melody with lower voices; every track is put on the melody's
    instrument, as ``harmonize`` writes them) after the prefix ``harmonize`` builds from the
    melody, one cached decoder step per token (the same weights), each token's probability
    taken among the tokens ``HarmonyPolicy`` allows there (temperature 1, no top-p).

    Returns ``bits`` (the total), ``notes`` (lower-voice notes), ``bits_per_note``,
    ``plain_bits_per_note`` (the same tokens under the model's whole distribution, without
    the policy; tokens the policy forces are left out of both, as they cost nothing in
    ``harmonize``), ``tokens``, ``forced`` and ``outside`` (tokens the policy would not have
    allowed, e.g. a voice crossing above the melody: scored among the allowed tokens and
    that one).
    """
    from cadenza.sampling import Decoder

    codec = mm.codec
    remi = remi_for(codec)
    score = _load_score(melody)
    ids, start, _ = _styled_input(mm, score, style, "melody")
    prefix, body = ids[:start], ids[start:]
    mel_state = RemiState(remi, record=True).feed_all(ids)
    bars = _parse_melody(remi, body, remi.value[mel_state.prefix["time_signature"]])
    programs = [n[3] for n in mel_state.notes if n[3] != -1]
    program = max(set(programs), key=programs.count)
    policy = HarmonyPolicy(remi, bars, [n[:4] for n in mel_state.notes], voices, program)
    whole = [int(i) for i in codec.encode(_on_program(_load_score(full), program), style=style or "other")]
    _, fstart = codec.parse_prefix(whole)
    target = whole[fstart:]
    state = RemiState(remi, record=True).feed_all(prefix)
    total = plain = 0.0
    forced = outside = 0
    with Decoder(mm.network, prefix, seed=0, desc="harmony bits") as dec:
        for tok in target:
            mask = policy.allowed(state)
            if not bool(mask[tok]):
                outside += 1
                mask = mask.clone()
                mask[tok] = True
            if int(mask.sum()) == 1:
                forced += 1
            else:
                p = dec.probs().double()
                total -= math.log2(max(float(p[tok] / p[mask].sum()), 1e-300))
                plain -= math.log2(max(float(p[tok]), 1e-300))
            dec.take(tok)
            state.feed(tok)
    keys = policy.mel_keys
    notes = sum(1 for n in state.notes if (n[0], n[2], n[3]) not in keys)
    return {"bits": total, "notes": notes, "bits_per_note": total / notes if notes else None,
            "plain_bits_per_note": plain / notes if notes else None, "tokens": len(target), "forced": forced,
            "outside": outside}
