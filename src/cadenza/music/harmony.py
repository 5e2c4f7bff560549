"""``harmonize``: voices under a melody by constrained decoding (``harmony_policy.HarmonyPolicy``),
and ``harmony_bits``: the model's bits on given voices under a melody, scored the same way."""

from __future__ import annotations

import math
from pathlib import Path

from cadenza.bounds import VOICES
from cadenza.codecs.music.features import parse_key
from cadenza.errors import ConfigError, DataError
from cadenza.music.decode import decode_to_target
from cadenza.music.grammar import RemiState
from cadenza.music.harmony_policy import HarmonyPolicy, parse_melody
from cadenza.music.inputs import (check_sampling, check_seed, input_name, kept_notes, load_score, remi_for,
                                  styled_input)
from cadenza.music.piece import Piece, finish_ids, readable_prefix
from cadenza.music.textures import TEXTURES, texture_for


def split_melody(score):
    """(melody, lower voices or None): with several pitched tracks, the melody is the track with
    the highest mean pitch (drum tracks stay with it) and the other pitched tracks are the
    lower voices; with one, the whole score is the melody."""
    pitched = [i for i, t in enumerate(score.tracks) if not t.is_drum and len(t.notes)]
    if len(pitched) <= 1:
        return score, None
    means = {i: float(score.tracks[i].notes.numpy()["pitch"].mean()) for i in pitched}
    top = max(pitched, key=lambda i: (means[i], -i))
    mel, low = score.copy(), score.copy()
    mel.tracks.clear()
    low.tracks.clear()
    for i, t in enumerate(score.tracks):
        (low if i in pitched and i != top else mel).tracks.append(t.copy())
    return mel, low


def _merged(a, b):
    out = a.copy()
    for t in b.tracks:
        out.tracks.append(t.copy())
    return out


def _check_voices(voices) -> int:
    if isinstance(voices, bool) or not isinstance(voices, int) or not VOICES.lo <= voices <= VOICES.hi:
        raise ConfigError(f"the number of accompanying voices must be from {VOICES.lo} to {VOICES.hi}, "
                          f"not {voices!r}")
    return voices


class _Setup:
    """What ``harmonize`` and ``harmony_bits`` share: the input read as the given notes
    (melody, and the kept lower voices), its prefix, and the policy."""

    def __init__(self, mm, melody, voices: int, style, keep: bool, texture):
        codec = self.codec = mm.codec
        remi = self.remi = remi_for(codec)
        self.score = load_score(melody)
        top, lower = split_melody(self.score)
        self.dropped = 0 if lower is None or keep else int(lower.note_num())
        given = _merged(top, lower) if keep and lower is not None else top
        self.given = given
        ids, start, self.style = styled_input(mm, given, style, "melody")
        self.ids, self.prefix, body = ids, ids[:start], ids[start:]
        state = RemiState(remi, record=True).feed_all(ids)
        bars = parse_melody(remi, body, remi.value[state.prefix["time_signature"]])
        notes = list(state.notes)
        if keep and lower is not None:
            top_ids = codec.encode(top, style="other")
            top_keys = {n.key for n in RemiState(remi, record=True).feed_all(
                [int(i) for i in top_ids]).notes}
            melody_notes = [n for n in notes if n.key in top_keys or n.program == -1]
            kept = [n for n in notes if n.key not in top_keys and n.program != -1]
        else:
            melody_notes, kept = notes, []
        programs = [n.program for n in melody_notes if n.program != -1]
        if not programs:
            raise DataError("the melody has only drum notes; give a melody with pitched notes")
        self.program = max(set(programs), key=programs.count)
        if texture is not None and texture not in TEXTURES:
            raise ConfigError(f"unknown texture {texture!r}; choose from {', '.join(TEXTURES)}")
        self.texture = TEXTURES[texture] if texture is not None else texture_for(self.style)
        key = remi.value[state.prefix["key"]] if "key" in state.prefix else None
        tonic, mode = parse_key(key) if key else (None, "major")
        self.bars = bars
        self.policy = HarmonyPolicy(remi, bars, melody_notes, voices, self.program, texture=self.texture,
                                    kept_notes=kept, tonic=tonic, minor=mode == "minor")


def harmonize(mm, melody, voices: int = 3, style: str | None = "bach", seed=None, temperature: float = 1.0,
              top_k=None, top_p: float | None = 0.95, progress: bool = False, guard=None, keep: bool = False,
              texture: str | None = None) -> Piece:
    """Add ``voices`` accompanying voices (``cadenza.bounds.VOICES``) below a melody (a MIDI path,
    bytes or symusic score).

    How (constrained decoding over the REMI stream, no special training): the melody is
    encoded with its own prefix (key, tempo, metre, mood; ``style`` defaults to "bach" for
    chorale-style harmony; None infers it) and decoding starts after that prefix. The
    melody's bar lines, metres, onsets and notes are forced token by token; around them the
    model writes accompaniment notes under the rules of :class:`HarmonyPolicy` (below the
    melody, at most ``voices`` sounding) and of the texture: ``texture`` names one of
    ``TEXTURES`` (default: the style's, ``texture_for``: bach a chorale with a full chord
    under every melody note, renaissance polyphony, folk block chords on strong beats; "free"
    is the plain policy without rules). Every quantized melody note appears in the output
    unchanged; the new notes are on their own track.

    An input with several pitched tracks: the melody is the highest track (``split_melody``);
    its other tracks are left out, or with ``keep`` kept unchanged as lower voices (they count
    among the ``voices`` and the model fills in the rest).
    """
    codec = mm.codec
    _check_voices(voices)
    check_sampling(temperature, top_k, top_p)
    seed = check_seed(seed)
    setup = _Setup(mm, melody, voices, style, keep, texture)
    prefix = setup.prefix
    qpm = float(codec.describe(setup.score).tempo)
    state = RemiState(setup.remi, record=True)
    new, stats = decode_to_target(mm.network, prefix, setup.policy, state, None, seed=seed, temperature=temperature,
                                  top_k=top_k, top_p=top_p, progress=progress, desc="harmonize",
                                  total_bars=len(setup.bars), guard=guard)
    if stats.stopped != "eos":
        raise DataError("the melody is too long to harmonize in one go")
    out = finish_ids(codec, prefix, new)
    name = input_name(melody)
    label = "melody and kept voices" if setup.policy.kept else "melody"
    settings = {"input": name, "voices": voices, "style": style, "texture": setup.texture.name, "keep": keep,
                "dropped_notes": setup.dropped, "temperature": temperature, "top_k": top_k, "top_p": top_p}
    return Piece(kind="harmonize", ids=out, codec=codec, tempo=qpm, seed=seed,
                 conditioning=readable_prefix(codec, out), settings=settings, model=mm.provenance(),
                 kept=kept_notes(codec, setup.ids, qpm),
                 kept_label=f"{label}: {Path(name).name}" if name else label,
                 input_tokens=len(setup.ids), generated_tokens=len(new), elapsed_s=stats.elapsed_s,
                 first_bar_s=stats.first_bar_s, bars=state.bars, stopped=stats.stopped)


# --------------------------------------------------------------------------- scoring
def _on_program(score, program: int):
    """A copy of ``score`` with every pitched track on ``program`` (the codec merges them)."""
    out = score.copy()
    for t in out.tracks:
        if not t.is_drum:
            t.program = int(program)
    return out


def harmony_bits(mm, melody, full, voices: int = 3, style: str | None = "bach", texture: str | None = None) -> dict:
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
    setup = _Setup(mm, melody, _check_voices(voices), style, False, texture)
    policy, program, prefix, remi = setup.policy, setup.program, setup.prefix, setup.remi
    whole = [int(i) for i in codec.encode(_on_program(load_score(full), program), style=setup.style or "other")]
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
    notes = sum(1 for n in state.notes if n.key not in keys)
    return {"bits": total, "notes": notes, "bits_per_note": total / notes if notes else None,
            "plain_bits_per_note": plain / notes if notes else None, "tokens": len(target), "forced": forced,
            "outside": outside}
