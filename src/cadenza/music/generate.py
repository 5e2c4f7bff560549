"""Compose, continue, predict and harmonize with a music model (the Python API of the CLI).

Everything here samples from a ``SparseTransformer`` through ``cadenza.sampling.stream``
(sparse KV cache, ``torch.inference_mode``, a private seeded generator) with a grammar
constraint (``cadenza.music.grammar``) that keeps every sequence a valid REMI stream and
steers the model:

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
- ``predict_next``: the model as a next-note predictor (see its docstring for exactly what
  the probabilities are).
- ``harmonize``: constrained decoding that forces the melody's tokens at its onsets and lets
  the model add up to ``voices`` accompanying notes below it (see its docstring).

The same seed gives the same piece: the only randomness is the seeded generator.
"""

from __future__ import annotations

import bisect
import math
import secrets
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import torch

from cadenza.codecs.music import NOTE_NAMES, PREFIX_SLOTS, load_midi, score_from_bytes
from cadenza.errors import ConfigError, DataError
from cadenza.music.controls import MoodPlan
from cadenza.music.grammar import BAR, DRUM, DUR, EOS, MOOD, PITCH, POS, PROG, TS, VEL, Policy, Remi, RemiState

MAX_BARS = 2000
MAX_SECONDS = 3600.0
DEFAULT_BARS = 16
MAX_NEW_TOKENS = 400_000
PROGRESS_DELAY_S = 0.5   # the progress bar appears only for work that takes longer than this
_REMI_CACHE: dict = {}


def remi_for(codec) -> Remi:
    """The (cached) grammar tables of a codec."""
    key = id(codec)
    hit = _REMI_CACHE.get(key)
    if hit is None or hit[0] is not codec:
        hit = _REMI_CACHE[key] = (codec, Remi(codec))
    return hit[1]


def pitch_name(pitch: int) -> str:
    """MIDI pitch -> scientific name (60 -> C4)."""
    return f"{NOTE_NAMES[int(pitch) % 12]}{int(pitch) // 12 - 1}"


_DURATION_NAMES = {Fraction(6): "dotted whole", Fraction(4): "whole", Fraction(3): "dotted half",
                   Fraction(2): "half", Fraction(3, 2): "dotted quarter", Fraction(1): "quarter",
                   Fraction(4, 3): "half-note triplet", Fraction(3, 4): "dotted eighth", Fraction(1, 2): "eighth",
                   Fraction(2, 3): "quarter triplet", Fraction(1, 3): "eighth triplet",
                   Fraction(3, 8): "dotted sixteenth", Fraction(1, 4): "sixteenth",
                   Fraction(1, 6): "sixteenth triplet", Fraction(1, 8): "thirty-second"}


def duration_name(quarters) -> str:
    """A duration in quarter notes -> 'dotted quarter', 'eighth triplet', or '2 1/2 quarters'."""
    q = Fraction(quarters).limit_denominator(96)
    if q in _DURATION_NAMES:
        return _DURATION_NAMES[q]
    whole, rest = divmod(q, 1)
    text = (f"{int(whole)} " if whole else "") + (f"{rest.numerator}/{rest.denominator}" if rest else "")
    return f"{text.strip()} quarters"


# --------------------------------------------------------------------------- validation
def _check_length(bars, seconds, default_bars=DEFAULT_BARS):
    if bars is not None and seconds is not None:
        raise ConfigError("give a length in bars or in seconds, not both")
    if bars is not None:
        if isinstance(bars, bool) or not isinstance(bars, int) or not 1 <= bars <= MAX_BARS:
            raise ConfigError(f"the number of bars must be a whole number from 1 to {MAX_BARS}, not {bars!r}")
    if seconds is not None:
        if (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds)
                or not 0 < seconds <= MAX_SECONDS):
            raise ConfigError(f"the length in seconds must be more than 0 and at most {MAX_SECONDS:g}, not {seconds!r}")
    if bars is None and seconds is None:
        bars = default_bars
    return bars, seconds


def _check_sampling(temperature, top_k, top_p):
    if (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
            or not math.isfinite(temperature) or not 0 <= temperature <= 10):
        raise ConfigError(f"temperature must be a number from 0 (always the likeliest token) to 10, not {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ConfigError(f"top-k must be a whole number of at least 1, not {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float))
                              or not 0 < top_p <= 1):
        raise ConfigError(f"top-p must be a number above 0 and at most 1, not {top_p!r}")


def _check_seed(seed) -> int:
    if seed is None:
        return secrets.randbelow(2**31)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ConfigError(f"the seed must be a whole number from 0 to 2**63 - 1, not {seed!r}")
    return int(seed)


def _load_score(midi):
    """A path, bytes or symusic score -> a tick score with notes (DataError otherwise)."""
    if isinstance(midi, (str, Path)):
        return load_midi(midi)
    if isinstance(midi, (bytes, bytearray)):
        return score_from_bytes(bytes(midi))
    if not hasattr(midi, "note_num"):
        raise DataError(f"expected a MIDI file path or a symusic score, not {type(midi).__name__}")
    if midi.note_num() == 0:
        raise DataError("the score has no notes")
    return midi if midi.ttype == "Tick" or str(getattr(midi, "ttype", "")).lower().endswith("tick") \
        else midi.to("tick")


def _input_name(midi) -> str | None:
    return str(midi) if isinstance(midi, (str, Path)) else None


# --------------------------------------------------------------------------- the result
@dataclass
class Piece:
    """A generated piece: its tokens and what it took to make them.

    ``ids`` is the whole sequence (BOS, prefix, body and EOS). ``kept`` holds the notes that
    came from the input (continue / harmonize) as (onset, duration, pitch, program) in the
    decoded score's ticks, so ``score()`` can put them on their own, credited tracks.
    """

    kind: str
    ids: list
    codec: object = field(repr=False)
    tempo: float
    seed: int
    conditioning: dict
    settings: dict
    model: dict
    kept: frozenset | None = None
    kept_label: str | None = None
    input_ids: int = 0              # tokens of ids that came from the input
    generated_tokens: int = 0
    elapsed_s: float = 0.0
    first_bar_s: float | None = None
    bars: int = 0
    stopped: str = ""               # "length", "eos" or "tokens"

    def score(self):
        """The piece as a symusic score: input notes and Cadenza's notes on separate, named tracks."""
        import symusic

        s = self.codec.decode(self.ids, tempo=self.tempo)
        tracks = list(s.tracks)
        s.tracks.clear()
        gen_label = {"compose": "Cadenza", "continue": "Cadenza continuation",
                     "harmonize": "Cadenza harmony"}.get(self.kind, "Cadenza")
        for t in tracks:
            prog = -1 if t.is_drum else int(t.program)
            mine, theirs = [], []
            for n in t.notes:
                key = (int(n.time), int(n.duration), int(n.pitch), prog)
                (theirs if self.kept is not None and key in self.kept else mine).append(n)
            for notes, label in ((theirs, self.kept_label or "input"), (mine, gen_label)):
                if not notes:
                    continue
                nt = symusic.Track(name=label, program=int(t.program), is_drum=bool(t.is_drum))
                for n in notes:
                    nt.notes.append(n)
                s.tracks.append(nt)
        return s

    @property
    def seconds(self) -> float:
        """Length of the music in seconds (to the end of the last note)."""
        s = self.codec.decode(self.ids, tempo=self.tempo)
        return float(s.to("second").end()) if s.note_num() else 0.0

    def provenance(self) -> dict:
        from cadenza._version import __version__

        return {"generator": "Cadenza", "cadenza_version": __version__, "kind": self.kind,
                "model": self.model, "seed": self.seed, "settings": self.settings,
                "conditioning": self.conditioning, "tempo_qpm": self.tempo, "bars": self.bars,
                "tokens": len(self.ids), "generated_tokens": self.generated_tokens,
                "input_tokens": self.input_ids, "stopped": self.stopped}


def _readable_prefix(codec, ids) -> dict:
    cond, _ = codec.parse_prefix(ids)
    out = dict(cond)
    if "time_signature" in out:
        n, d = out["time_signature"]
        out["time_signature"] = f"{n}/{d}"
    return out


# --------------------------------------------------------------------------- the loop
class _Target:
    """When to stop: after ``bars`` new bars or at ``seconds`` of new music (from ``origin``)."""

    def __init__(self, remi: Remi, bars=None, seconds=None, qpm=None, origin_ticks=0, bars0=0):
        self.remi, self.bars, self.seconds = remi, bars, seconds
        self.qpm = qpm                      # None: the prefix's tempo, once it is known
        self.origin = origin_ticks
        self.bars0 = bars0
        self.limit = None                   # seconds -> ticks, once the tempo is known

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

    def eos_ok(self, s: RemiState) -> bool:
        if not s.in_body:
            return False
        if self.bars is not None:
            return s.bars - self.bars0 >= self.bars
        if self.seconds is not None:
            lim = self.limit_ticks(s)
            return s.onset >= self.origin + 0.9 * (lim - self.origin)
        return True

    def stops_before(self, tok: int, s: RemiState) -> bool:
        """Would ``tok`` (not yet fed to ``s``) go past the target?"""
        kind = self.remi.kind[tok]
        if kind == BAR and s.in_body:
            if self.bars is not None and s.bars + 1 - self.bars0 > self.bars:
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


class _TargetPolicy(Policy):
    """The plain grammar with EOS allowed only once the target allows it."""

    def __init__(self, remi, target: _Target, **kw):
        super().__init__(remi, **kw)
        self.target = target

    def onset_choices(self, s):
        self.allow_eos = self.target.eos_ok(s)
        return super().onset_choices(s)


class _NoMoreInBar:
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


class _GuardedPolicy:
    """A policy with ``--max-copy``: the pitches a ``CopyGuard`` bans are not allowed. It
    follows the stream's pitched notes (the prompt's, then each new one); where taking the
    banned pitches away would leave nothing (a forced melody note), ``strict`` guards raise
    ``CopyLimitError`` and others let the note through (counted in ``guard.unavoidable``)."""

    def __init__(self, inner, guard, prompt):
        from cadenza.music.originality import _Tables, notes_of_tokens

        self.inner, self.guard, self.remi = inner, guard, inner.remi
        self.pitches = [int(p) for p in notes_of_tokens(list(prompt), _Tables(inner.remi.codec))["pitch"]]
        self._last = None
        self._primed = False
        self.m_pitch = self.remi.masks[PITCH]

    def allowed(self, s: RemiState) -> torch.Tensor:
        from cadenza.music.originality import CopyLimitError

        if not self._primed:             # the prompt's last note is already in self.pitches
            self._primed, self._last = True, s.last_note
        elif s.last_note is not None and s.last_note is not self._last:
            self._last = s.last_note
            if s.last_note[3] != -1:
                self.pitches.append(int(s.last_note[2]))
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


def _sample(model, prompt, policy, state, target: _Target | None, *, seed, temperature, top_k, top_p,
            progress: bool, desc: str, on_bar=None, max_new_tokens: int = MAX_NEW_TOKENS,
            total_bars: int | None = None, guard=None):
    """Sample after ``prompt`` under ``policy`` to ``target``; returns (new ids, stats).

    The loop is ``cadenza.music.decoder.GrammarDecoder``'s; this adds the length target,
    the progress bar and the ``on_bar`` callback. ``guard`` (a
    ``cadenza.music.originality.CopyGuard``) takes away every pitch that would repeat more
    than ``guard.max_copy`` consecutive notes of a training piece.
    """
    from tqdm import tqdm

    from cadenza.music.decoder import GrammarDecoder

    if guard is not None:
        policy = _GuardedPolicy(policy, guard, prompt)
    remi = policy.remi
    state.feed_all(prompt)
    if target is not None:
        target.bars0 = state.bars
    bars0 = state.bars
    new: list[int] = []
    stats = {"first_bar_s": None, "stopped": "tokens"}
    if target is not None and target.bars is not None:
        total, unit = target.bars, "bar"
    elif target is not None and target.seconds is not None:
        total, unit = round(float(target.seconds), 1), "s"
    else:   # no length target (harmonize: the melody sets the length): count finished bars
        total, unit = total_bars, "bar"
    bar = tqdm(total=total, desc=desc, unit=unit, delay=PROGRESS_DELAY_S, disable=not progress, leave=False,
               dynamic_ncols=True, bar_format=None if total else "{desc}: {n:.0f} {unit} [{elapsed}]")
    shown = 0
    done_bars = 0
    t0 = time.perf_counter()

    def accept(tok: int) -> str:
        """Bookkeeping for one chosen token: 'stop' (drop it), 'last' (keep it, then stop) or 'go'."""
        nonlocal done_bars, shown
        kind = remi.kind[tok]
        if target is not None and target.stops_before(tok, state):
            stats["stopped"] = "length"
            return "stop"
        if kind == BAR and state.in_body and state.bars >= 1:   # a bar line ends the bar before it
            now = time.perf_counter() - t0
            done_bars += 1
            if stats["first_bar_s"] is None:
                stats["first_bar_s"] = now
            if on_bar is not None:
                on_bar(done_bars, now)
            if progress and target is None:
                bar.update(1)
        new.append(tok)
        dec.take(tok)
        if progress and kind in (BAR, POS) and target is not None:
            p = target.progress(state)
            p = int(p) if unit == "bar" else round(p, 1)
            if total:
                p = min(p, total)
            if p > shown:
                bar.update(p - shown)
                shown = p
        if kind == EOS:
            stats["stopped"] = "eos"
            return "last"
        return "go"

    dec = None
    try:
        dec = GrammarDecoder(model, prompt, policy, state, seed=seed, temperature=temperature, top_k=top_k,
                             top_p=top_p, desc=desc)
        while len(new) < max_new_tokens:
            tok = dec.choose()
            while True:   # take the token, then any tokens the grammar forces after it
                verdict = accept(tok)
                if verdict != "go" or len(new) >= max_new_tokens:
                    break
                tok = dec.forced()
                if tok is None:
                    break
            if verdict != "go" or len(new) >= max_new_tokens:
                break
            dec.advance()
    finally:
        if dec is not None:
            dec.close()
        bar.close()
    elapsed = time.perf_counter() - t0
    if stats["first_bar_s"] is None:
        stats["first_bar_s"] = elapsed
    stats["elapsed_s"] = elapsed
    stats["bars_done"] = state.bars - bars0
    return new, stats


def _finish_ids(codec, prompt, new) -> list[int]:
    ids = list(prompt) + list(new)
    if not ids or ids[-1] != codec.eos_id:
        ids.append(codec.eos_id)
    return ids


# --------------------------------------------------------------------------- compose
def compose(mm, style=None, mood=None, valence=None, energy=None, bars=None, seconds=None, tempo=None,
            key=None, time_signature=None, seed=None, temperature: float = 1.0, top_k=None,
            top_p: float | None = 0.95, progress: bool = False, on_bar=None, guard=None) -> Piece:
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

    Length: ``bars`` or ``seconds`` (default 16 bars). ``seed``: the same seed gives the same
    piece (None draws one, recorded in the result). ``on_bar(n, seconds_since_start)`` is
    called as each bar is finished. Returns a :class:`Piece`.
    """
    codec = mm.codec
    remi = remi_for(codec)
    bars, seconds = _check_length(bars, seconds)
    _check_sampling(temperature, top_k, top_p)
    seed = _check_seed(seed)
    slots = codec.conditioning(style=_check_style(codec, style), key=key, tempo=tempo,
                               time_signature=time_signature)
    plan = MoodPlan.make(valence=valence, energy=energy, mood=mood)
    if tempo is not None:
        tempo = float(tempo)
    forced = dict(zip(PREFIX_SLOTS, slots))
    target = _Target(remi, bars=bars, seconds=seconds, qpm=tempo)
    policy = _TargetPolicy(remi, target, prefix=forced, programs=None, moods=plan.moods(codec), keep_metre=True)
    state = RemiState(remi)
    prompt = [codec.bos_id]
    new, stats = _sample(mm.model, prompt, policy, state, target, seed=seed, temperature=temperature,
                         top_k=top_k, top_p=top_p, progress=progress, desc="compose", on_bar=on_bar,
                         guard=guard)
    ids = _finish_ids(codec, prompt, new)
    qpm = target.tempo(state)
    settings = {"style": style, "mood": _plain(mood), "valence": _plain(valence), "energy": _plain(energy),
                "bars": bars, "seconds": seconds, "tempo": tempo, "key": key, "time_signature": time_signature,
                "temperature": temperature, "top_k": top_k, "top_p": top_p}
    return Piece(kind="compose", ids=ids, codec=codec, tempo=qpm, seed=seed,
                 conditioning=_readable_prefix(codec, ids), settings=settings, model=mm.provenance(),
                 generated_tokens=len(new), elapsed_s=stats["elapsed_s"], first_bar_s=stats["first_bar_s"],
                 bars=state.bars, stopped=stats["stopped"])


def _plain(x):
    """A setting as JSON would have it (plans as lists)."""
    if isinstance(x, (list, tuple)):
        return [list(p) if isinstance(p, (list, tuple)) else p for p in x]
    return x


def _check_style(codec, style):
    if style is None:
        return None
    offered = codec.offered_styles()
    if style not in offered:
        raise ConfigError(f"unknown style {style!r}; this model offers {', '.join(offered)}")
    return style


# --------------------------------------------------------------------------- continue
def _encode_input(codec, score, style, what: str):
    ids = [int(i) for i in codec.encode(score, style=style)]
    if ids and ids[-1] == codec.eos_id:
        ids = ids[:-1]
    _, start = codec.parse_prefix(ids)
    remi = remi_for(codec)
    if not any(remi.kind[i] in (PITCH, DRUM) for i in ids[start:]):
        lo, hi = codec.config.pitch_range
        raise DataError(f"the {what} has no notes the model can read (pitches {lo} to {hi - 1})")
    return ids, start


def _best_style(mm, ids: list[int], start: int, max_tokens: int = 512) -> str:
    """The offered style under which the model finds the encoded piece ``ids`` (prefix up to
    ``start``) most likely: its first ``max_tokens`` tokens scored once per style, in one batch."""
    codec = mm.codec
    offered = codec.offered_styles()
    if len(offered) == 1 or len(ids) <= start + 1:
        return offered[0]
    x = ids[:max_tokens]
    rows = torch.tensor([[x[0], codec.style_id(st), *x[2:]] for st in offered], dtype=torch.long)
    with torch.inference_mode():
        was = mm.model.training
        mm.model.eval()
        try:
            logp = torch.log_softmax(mm.model(rows[:, :-1]).float(), dim=-1)
        finally:
            mm.model.train(was)
    tgt = rows[:, 1:]
    ll = logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)[:, start - 1:].sum(dim=1)
    return offered[int(torch.argmax(ll))]


def infer_style(mm, score, max_tokens: int = 512) -> str:
    """The offered style under which the model finds the piece most likely."""
    ids, start = _encode_input(mm.codec, score, "other", "input")
    return _best_style(mm, ids, start, max_tokens)


def _styled_input(mm, score, style, what: str):
    """(ids, start, style) of an input piece: encoded once, with ``style`` (checked) or,
    when None, the style the model finds likeliest for it in the style slot."""
    codec = mm.codec
    style = _check_style(codec, style)
    ids, start = _encode_input(codec, score, "other", what)
    style = style or _best_style(mm, ids, start)
    ids[1] = codec.style_id(style)           # the prefix is BOS, Style, ...
    return ids, start, style


def _kept_notes(codec, ids, tempo) -> frozenset:
    s = codec.decode(ids, tempo=tempo)
    out = set()
    for t in s.tracks:
        prog = -1 if t.is_drum else int(t.program)
        for n in t.notes:
            out.add((int(n.time), int(n.duration), int(n.pitch), prog))
    return frozenset(out)


def continue_piece(mm, midi, bars=None, seconds=None, style=None, seed=None, temperature: float = 1.0,
                   top_k=None, top_p: float | None = 0.95, progress: bool = False, on_bar=None,
                   mood=None, valence=None, energy=None, guard=None, constraints=None,
                   from_next_bar: bool = False) -> Piece:
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
    phrase), not right after the input's last onset.
    """
    codec = mm.codec
    remi = remi_for(codec)
    bars, seconds = _check_length(bars, seconds, default_bars=8)
    _check_sampling(temperature, top_k, top_p)
    seed = _check_seed(seed)
    plan = MoodPlan.make(valence=valence, energy=energy, mood=mood)
    score = _load_score(midi)
    ids, start, style = _styled_input(mm, score, style, "input")
    qpm = float(codec.describe(score).tempo)
    state = RemiState(remi).feed_all(ids)
    programs = sorted({remi.value[i] for i in ids[start:] if remi.kind[i] == PROG})
    target = _Target(remi, bars=bars, seconds=seconds, qpm=qpm, origin_ticks=state.onset)
    freeze = state.next_bar_start() - 1 if from_next_bar else state.onset
    policy = _TargetPolicy(remi, target, programs=programs, ts=state.ts, freeze_onset=freeze,
                           moods=plan.moods(codec))
    if from_next_bar:     # nothing more in the input's last bar: its next token is the bar line
        policy = _NoMoreInBar(policy)
    if constraints is not None and not constraints.empty:
        from cadenza.music.constraints import ConstrainedPolicy

        policy = ConstrainedPolicy(policy, constraints)
    state = RemiState(remi)
    new, stats = _sample(mm.model, ids, policy, state, target, seed=seed, temperature=temperature,
                         top_k=top_k, top_p=top_p, progress=progress, desc="continue", on_bar=on_bar,
                         guard=guard)
    out = _finish_ids(codec, ids, new)
    name = _input_name(midi)
    settings = {"input": name, "bars": bars, "seconds": seconds, "style": style, "temperature": temperature,
                "top_k": top_k, "top_p": top_p, "mood": _plain(mood), "valence": _plain(valence),
                "energy": _plain(energy)}
    return Piece(kind="continue", ids=out, codec=codec, tempo=qpm, seed=seed,
                 conditioning=_readable_prefix(codec, out), settings=settings, model=mm.provenance(),
                 kept=_kept_notes(codec, ids, qpm),
                 kept_label=f"input: {Path(name).name}" if name else "input",
                 input_ids=len(ids), generated_tokens=len(new), elapsed_s=stats["elapsed_s"],
                 first_bar_s=stats["first_bar_s"], bars=state.bars, stopped=stats["stopped"])


# --------------------------------------------------------------------------- harmonize
class _MelodyBar:
    __slots__ = ("ts", "onsets")

    def __init__(self):
        self.ts = None
        self.onsets: dict[int, list[tuple[int, int, int, int]]] = {}   # pos -> [(prog, pitch, vel_id, dur_id)]


class HarmonyPolicy(Policy):
    """Constrained decoding for ``harmonize``: the melody is forced, the model adds voices below.

    Bar lines and metres are the melody's. At each melody onset the melody's notes must be
    written (Program, Pitch, Velocity and Duration forced to the melody's tokens); besides
    them the model may write accompaniment notes on ``program``:

    - strictly below the melody (below the lowest melody note sounding or starting at that
      time, or the latest melody note when the melody rests) and at most ``span`` semitones
      under it, never doubling an accompaniment pitch that is still sounding;
    - at most ``voices`` accompaniment notes sounding at once, all starting between the
      melody's first onset and the end of its last note;
    - at every melody onset the position cannot be left until ``voices`` accompaniment notes
      sound (or no allowed pitch is left), so each melody note is harmonized;
    - between melody onsets the model may add notes (passing notes, moving inner voices)
      within the same limits; it cannot skip past a melody onset or a bar line it must write.

    The model chooses the pitches, velocities, durations and rhythms of the new voices and
    the order of notes at an onset; the piece ends (EOS) only after the melody's last onset.
    """

    def __init__(self, remi: Remi, bars: list, melody_notes: list, voices: int, program: int, span: int = 36):
        super().__init__(remi, programs=None)
        self.bars_info = bars
        self.voices = voices
        self.acc_program = program
        self.span = span
        self.mel_keys = {(n[0], n[2], n[3]) for n in melody_notes}       # every forced note, drums too
        self.melody = sorted(n for n in melody_notes if n[3] != -1)      # pitched: (onset, duration, pitch, program)
        self.starts = [n[0] for n in self.melody]
        self.max_dur = max([n[1] for n in self.melody] + [remi.tpq * 16])
        self.m_acc_prog = remi.one(remi.program_ids[program])
        lo, hi = remi.codec.config.pitch_range
        self.pitch_lo = lo
        # Accompaniment notes start within the melody: from its first onset to its last note's end.
        self.first_onset = self.starts[0] if self.starts else 0
        self.last_end = max((n[0] + n[1] for n in self.melody), default=0)

    # ---- what sounds ---------------------------------------------------------------
    def _melody_ceiling(self, t: int) -> int | None:
        """Lowest melody pitch sounding or starting at t; else the latest melody pitch before t."""
        i = bisect.bisect_right(self.starts, t)
        sounding = [n[2] for n in self.melody[max(0, i - 64):i] if n[0] + n[1] > t or n[0] == t]
        if sounding:
            return min(sounding)
        if i > 0:
            return self.melody[i - 1][2]
        return self.melody[0][2] if self.melody else None

    def _acc_recent(self, s: RemiState) -> list[tuple]:
        """Accompaniment notes that started recently enough to be sounding now."""
        t = s.onset
        out = []
        for n in reversed(s.notes[-256:]):
            if n[0] < t - self.max_dur:
                break
            if (n[0], n[2], n[3]) not in self.mel_keys:
                out.append(n)
        return out

    def _acc_sounding(self, s: RemiState) -> list[int]:
        t = s.onset
        return [n[2] for n in self._acc_recent(s) if n[0] <= t < n[0] + n[1]]

    def _acc_pitches(self, s: RemiState) -> list[int]:
        """Accompaniment pitches allowed now ([] when no voice is free)."""
        if not self.first_onset <= s.onset < self.last_end:
            return []
        sounding = self._acc_sounding(s)
        if len(sounding) >= self.voices:
            return []
        ceiling = self._melody_ceiling(s.onset)
        if ceiling is None:
            return []
        lo = max(self.pitch_lo, ceiling - self.span)
        taken = set(sounding)
        return [p for p in range(lo, ceiling) if p not in taken and p in self.remi.pitch_ids]

    def _pending(self, s: RemiState) -> list[tuple]:
        """Melody notes at the current onset not yet written."""
        if s.pos < 0 or s.bars < 1 or s.bars > len(self.bars_info):
            return []
        want = self.bars_info[s.bars - 1].onsets.get(s.pos)
        if not want:
            return []
        done = {(n[2], n[3]) for n in s.notes[len(s.notes) - s.notes_here:]} if s.notes_here else set()
        return [w for w in want if (self.remi.value[w[1]], self.remi.value[w[0]]) not in done]

    # ---- the policy --------------------------------------------------------------------
    def _note_start(self, s: RemiState, pending, acc_ok: bool) -> torch.Tensor:
        """A note may begin: a pending melody note or an accompaniment note, each written
        as a Pitch on the instrument in force or as a change of Program."""
        r = self.remi
        m = torch.zeros(r.vocab_size, dtype=torch.bool)
        for w in pending:
            m[w[1] if r.value[w[0]] == s.program else w[0]] = True
        if acc_ok:
            if s.program == self.acc_program:
                m |= r.mask_of(r.pitch_ids[p] for p in self._acc_pitches(s))
            else:
                m |= self.m_acc_prog
        return m

    def allowed(self, s: RemiState) -> torch.Tensor:
        r = self.remi
        if not s.in_body:
            return self.m_bar if s.prefix_done else super().allowed(s)
        last = s.last
        if last == BAR:
            ts = self.bars_info[s.bars - 1].ts
            if ts != s.ts:
                return r.one(r.ts_ids[ts])
            return self.m_mood if s.mood_due else self._onset_choices(s)
        if last == TS:
            return self.m_mood if s.mood_due else self._onset_choices(s)
        if last == POS:
            return self._note_start(s, self._pending(s), bool(self._acc_pitches(s)))
        if last == PROG:
            m = r.mask_of(w[1] for w in self._pending(s) if r.value[w[0]] == s.program)
            if s.program == self.acc_program:
                acc = self._acc_pitches(s)
                if acc:
                    m |= r.mask_of(r.pitch_ids[p] for p in acc)
            return m
        if last in (PITCH, DRUM):
            w = self._current_melody_note(s)
            if w is not None:
                return r.one(w[3]) if r.value[w[2]] == s.vel else r.one(w[2])
            return super().allowed(s)
        if last == VEL:
            w = self._current_melody_note(s)
            return r.one(w[3]) if w is not None else self.m_dur
        if last in (MOOD, DUR):
            return self._onset_choices(s)
        return self.m_eos

    def _current_melody_note(self, s: RemiState):
        for w in self._pending(s):
            if self.remi.value[w[0]] == s.program and self.remi.value[w[1]] == s.pitch:
                return w
        return None

    def _onset_choices(self, s: RemiState) -> torch.Tensor:
        r = self.remi
        pending = self._pending(s) if s.last == DUR else []
        can_add = s.last == DUR and s.notes_here < self.max_notes_per_onset and bool(self._acc_pitches(s))
        if pending:
            return self._note_start(s, pending, can_add)
        info = self.bars_info[s.bars - 1]
        at_melody_onset = s.last == DUR and s.pos in info.onsets
        if at_melody_onset and can_add:
            return self._note_start(s, [], True)      # harmonize this melody note first
        m = self._note_start(s, [], True) if can_add else torch.zeros(r.vocab_size, dtype=torch.bool)
        later = [q for q in info.onsets if q > s.pos]
        nxt = min(later) if later else None
        # Positions before the next melody onset only where a new accompaniment note fits.
        ends = sorted(n[0] + n[1] for n in self._acc_recent(s) if n[0] + n[1] > s.onset)
        step = r.position_ticks(s.ts[1])
        hi = nxt if nxt is not None else r.bar_positions(s.ts)
        for q in range(s.pos + 1, hi):
            t = s.bar_start + q * step
            busy = len(ends) - bisect.bisect_right(ends, t)
            ceiling = self._melody_ceiling(t)
            if (busy < self.voices and ceiling is not None and ceiling - 1 >= self.pitch_lo
                    and self.first_onset <= t < self.last_end):
                m[r.pos_ids[q]] = True
        if nxt is not None:
            m[r.pos_ids[nxt]] = True
        else:
            m[r.bar if s.bars < len(self.bars_info) else r.eos] = True
        return m


def _parse_melody(remi: Remi, body: list[int], ts0) -> list[_MelodyBar]:
    """Bars of a lean body: each bar's metre and its notes by Position as
    (program id, pitch id, velocity id, duration id), with the Program and Velocity in force."""
    bars: list[_MelodyBar] = []
    pos = -1
    ts = tuple(ts0)
    prog = vel = pitch = None
    for i in body:
        k = remi.kind[i]
        if k == BAR:
            bars.append(_MelodyBar())
            bars[-1].ts = ts
            pos = -1
        elif k == TS:
            ts = remi.value[i]
            bars[-1].ts = ts
        elif k == POS:
            pos = remi.value[i]
        elif k == PROG:
            prog = i
        elif k in (PITCH, DRUM):
            pitch = i
        elif k == VEL:
            vel = i
        elif k == DUR:
            bars[-1].onsets.setdefault(pos, []).append((prog, pitch, vel, i))
    return bars


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
    new, stats = _sample(mm.model, prefix, policy, state, None, seed=seed, temperature=temperature,
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


def _beat_label(remi: Remi, bar: int, pos: int, ts) -> str:
    whole, frac = divmod(Fraction(pos, remi.ppb), 1)
    text = f"{int(whole) + 1}" + (f" {frac.numerator}/{frac.denominator}" if frac else "")
    return f"bar {bar}, beat {text}"


def _fork(cache):
    """A branch of a decode cache (``KVCache.fork``; a deep copy for caches without one)."""
    fork = getattr(cache, "fork", None)
    if fork is not None:
        return fork()
    import copy

    return copy.deepcopy(cache)


def _next_note_core(model, remi: Remi, ids: list[int], state: RemiState, max_onsets: int, onset_mass: float,
                    base=None, p0=None):
    """Timing branches and the next-pitch distribution after ``ids`` (see ``predict_next``).

    ``base``/``p0``: a cache that has already read ``ids`` and the next-token distribution
    after them (the studio keeps both, so a played note costs one cached step); ``base`` is
    not changed. Returns (pitch distribution {pitch: p}, p_end, p_same_onset, coverage,
    chosen onsets as [p, tokens, bar, pos, onset tick, cache after the Position, pitch
    dist], program, context tokens)."""
    ts, prog = state.ts, state.program
    max_len = model.config.max_len
    ctx = ids[-(max_len - 8):] if len(ids) > max_len - 8 else ids

    def run(cache, tokens):
        x = torch.tensor([tokens], dtype=torch.long)
        return torch.softmax(model(x, cache=cache)[0, -1].float(), dim=-1)

    pitch_ids = remi.drum_ids if prog == -1 else remi.pitch_ids
    pitch_list = list(pitch_ids.items())
    pitch_idx = torch.tensor([i for _, i in pitch_list])
    if base is None:
        base = model.new_cache(1)
        p0 = run(base, ctx)
    p_end = float(p0[remi.eos])
    same = remi.masks[PROG].clone()
    if prog is not None and prog in remi.program_ids:
        same[remi.program_ids[prog]] = False
    same[pitch_idx] = True
    p_same = float(p0[same].sum())
    onsets = []   # [prob, bar number, pos, onset tick, source cache]
    npos = remi.bar_positions(ts)
    for q in range(state.pos + 1, npos):
        onsets.append([float(p0[remi.pos_ids[q]]), state.bars, q, state.position_onset(q), base])
    p_bar = float(p0[remi.bar])
    bar_cache = _fork(base)
    p1 = run(bar_cache, [remi.bar])
    if (state.bars % remi.segment_bars) == 0:      # the next bar opens a segment: its likeliest mood
        mood = max(remi.mood_ids.values(), key=lambda i: float(p1[i]))
        p1 = run(bar_cache, [mood])
    pos_mass = sum(float(p1[remi.pos_ids[q]]) for q in range(npos)) or 1.0
    next_start = state.next_bar_start()
    for q in range(npos):
        onsets.append([p_bar * float(p1[remi.pos_ids[q]]) / pos_mass, state.bars + 1, q,
                       next_start + q * remi.position_ticks(ts[1]), bar_cache])
    total = sum(o[0] for o in onsets) or 1.0
    for o in onsets:
        o[0] /= total
    onsets.sort(key=lambda o: -o[0])
    chosen, mass = [], 0.0
    for o in onsets:
        if chosen and (mass >= onset_mass or len(chosen) >= max_onsets):
            break
        chosen.append(o)
        mass += o[0]
    joint: dict[int, float] = {}
    for o in chosen:
        c = _fork(o[4])
        pp = run(c, [remi.pos_ids[o[2]]])
        v = pp[pitch_idx]
        v = (v / v.sum().clamp_min(1e-30)).tolist()
        dist = {p: x for (p, _), x in zip(pitch_list, v)}
        o[4] = c
        o.append(dist)
        for p, x in dist.items():
            joint[p] = joint.get(p, 0.0) + o[0] * x
    z = mass or 1.0
    return {p: x / z for p, x in joint.items()}, p_end, p_same, mass, chosen, prog, len(ctx)


def next_pitch_distribution(mm, midi, max_onsets: int = 4, onset_mass: float = 0.9) -> dict[int, float]:
    """P(the next note has pitch p) for every pitch p of the vocabulary, as ``predict_next``
    defines the next note (the first note after the input's last onset, marginalised over
    its likeliest onsets). A dict {MIDI pitch: probability} summing to 1."""
    codec = mm.codec
    remi = remi_for(codec)
    score = _load_score(midi)
    ids, _, _ = _styled_input(mm, score, None, "input")
    state = RemiState(remi).feed_all(ids)
    with torch.inference_mode(), mm.model.decoding_with("float32"):
        return _next_note_core(mm.model, remi, ids, state, max_onsets, onset_mass)[0]


def predict_next(mm, midi, top: int = 5, max_onsets: int = 4, onset_mass: float = 0.9) -> Prediction:
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

    ``next_pitch_distribution`` gives the whole distribution of step 4.
    """
    codec = mm.codec
    model = mm.model
    remi = remi_for(codec)
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= 128:
        raise ConfigError(f"--top must be a whole number from 1 to 128, not {top!r}")
    score = _load_score(midi)
    ids, start, _ = _styled_input(mm, score, None, "input")
    state = RemiState(remi, record=True).feed_all(ids)
    ts = state.ts
    # exact float32 weights: these probabilities are printed, and speed does not matter here
    with torch.inference_mode(), model.decoding_with("float32"):
        joint, p_end, p_same, mass, chosen, prog, n_ctx = _next_note_core(
            model, remi, ids, state, max_onsets, onset_mass)
        pitch_ids = remi.drum_ids if prog == -1 else remi.pitch_ids
        ranked = sorted(joint.items(), key=lambda kv: -kv[1])[:top]
        notes = []
        dur_ids = [i for i in range(remi.vocab_size) if remi.kind[i] == DUR]
        last_onset = state.onset
        for p, pj in ranked:
            o = max(chosen, key=lambda b: b[0] * b[5][p])
            c2 = _fork(o[4])
            pd = torch.softmax(model(torch.tensor([[pitch_ids[p]]]), cache=c2)[0, -1].float(), dim=-1)
            zd = sum(float(pd[i]) for i in dur_ids) or 1.0
            d_id = max(dur_ids, key=lambda i: float(pd[i]))
            dq = remi.duration_quarters(d_id, ts[1])
            notes.append(NextNote(
                pitch=p, name=pitch_name(p) if prog != -1 else f"drum {p}", probability=pj,
                onset=_beat_label(remi, o[1], o[2], ts),
                after_quarters=Fraction(o[3] - last_onset, remi.tpq), onset_probability=o[0],
                duration_quarters=dq, duration=duration_name(dq), duration_probability=float(pd[d_id]) / zd))
    ln = state.last_note
    last = (f"{pitch_name(ln[2])} at {_beat_label(remi, state.bars, state.pos, ts)}" if ln else "none")
    return Prediction(notes=notes, p_end=p_end, p_same_onset=p_same, coverage=mass,
                      onsets=[(_beat_label(remi, o[1], o[2], ts), o[0]) for o in chosen], last_note=last,
                      program=prog, context_tokens=n_ctx)
