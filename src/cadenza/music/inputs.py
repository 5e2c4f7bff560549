"""What the music functions check and read before any sampling: lengths, sampling settings,
seeds, input pieces (a path, MIDI bytes or a score), styles (given, or inferred as the one the
model finds likeliest). (The names of pitches and durations: ``cadenza.codecs.music.names``.)"""

from __future__ import annotations

import math
import secrets
from pathlib import Path

import torch

from cadenza.bounds import BARS, SECONDS, SEED, TEMPERATURE
from cadenza.codecs.music import load_midi, score_from_bytes
from cadenza.errors import ConfigError, DataError
from cadenza.music.grammar import DRUM, PITCH, RemiTables
from cadenza.prompts import check_settings


MAX_BARS = BARS.hi          # the bounds are set in cadenza.bounds; these names stay for their importers
MAX_SECONDS = SECONDS.hi
DEFAULT_BARS = 16
_REMI_CACHE: dict = {}


def remi_for(codec) -> RemiTables:
    """The (cached) grammar tables of a codec."""
    key = id(codec)
    hit = _REMI_CACHE.get(key)
    if hit is None or hit[0] is not codec:
        hit = _REMI_CACHE[key] = (codec, RemiTables(codec))
    return hit[1]


# --------------------------------------------------------------------------- validation
def check_length(bars, seconds, default_bars=DEFAULT_BARS):
    """(bars, seconds) of a length given in one of the two (``default_bars`` when neither)."""
    if bars is not None and seconds is not None:
        raise ConfigError("give a length in bars or in seconds, not both")
    if bars is not None:
        if isinstance(bars, bool) or not isinstance(bars, int) or not BARS.lo <= bars <= BARS.hi:
            raise ConfigError(f"the number of bars must be a whole number from {BARS.lo} to {BARS.hi}, not {bars!r}")
    if seconds is not None:
        if (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds)
                or not SECONDS.lo < seconds <= SECONDS.hi):
            raise ConfigError(f"the length in seconds must be more than {SECONDS.lo} and at most {SECONDS.hi:g}, "
                              f"not {seconds!r}")
    if bars is None and seconds is None:
        bars = default_bars
    return bars, seconds


def check_sampling(temperature, top_k, top_p):
    """Temperature (at most ``bounds.TEMPERATURE.hi``), top-k and top-p, or ConfigError."""
    check_settings(temperature, top_k, top_p, max_temperature=TEMPERATURE.hi)


def check_seed(seed) -> int:
    """The seed to use: ``seed`` checked, or a fresh one when None."""
    if seed is None:
        return secrets.randbelow(2**31)
    if isinstance(seed, bool) or not isinstance(seed, int) or not SEED.lo <= seed <= SEED.hi:
        raise ConfigError(f"the seed must be a whole number from {SEED.lo} to 2**63 - 1, not {seed!r}")
    return int(seed)


def load_score(midi):
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


def input_name(midi) -> str | None:
    """The path of an input given as a path (for the provenance record), else None."""
    return str(midi) if isinstance(midi, (str, Path)) else None


def plain(x):
    """A setting as JSON would have it (plans as lists)."""
    if isinstance(x, (list, tuple)):
        return [list(p) if isinstance(p, (list, tuple)) else p for p in x]
    return x


def check_style(codec, style):
    """``style`` if the model offers it (None stays None), else ConfigError naming those it offers."""
    if style is None:
        return None
    offered = codec.offered_styles()
    if style not in offered:
        raise ConfigError(f"unknown style {style!r}; this model offers {', '.join(offered)}")
    return style


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


def likeliest_style(mm, ids: list[int] | None = None, start: int = 0, max_tokens: int = 512) -> str:
    """The offered style under which the model finds the encoded piece ``ids`` (prefix up to
    ``start``) most likely: its first ``max_tokens`` tokens scored once per style, in one batch.
    With no piece (``ids`` None): the style the model itself most likely writes first, after BOS."""
    codec = mm.codec
    offered = codec.offered_styles()
    if ids is None:
        with torch.inference_mode():
            logits = mm.network(torch.tensor([[codec.bos_id]]))[0, -1]
        return offered[int(torch.argmax(logits[[codec.style_id(s) for s in offered]]))]
    if len(offered) == 1 or len(ids) <= start + 1:
        return offered[0]
    x = ids[:max_tokens]
    rows = torch.tensor([[x[0], codec.style_id(st), *x[2:]] for st in offered], dtype=torch.long)
    with torch.inference_mode():
        was = mm.network.training
        mm.network.eval()
        try:
            logp = torch.log_softmax(mm.network(rows[:, :-1]).float(), dim=-1)
        finally:
            mm.network.train(was)
    tgt = rows[:, 1:]
    ll = logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)[:, start - 1:].sum(dim=1)
    return offered[int(torch.argmax(ll))]


def infer_style(mm, score, max_tokens: int = 512) -> str:
    """The offered style under which the model finds the piece most likely."""
    ids, start = _encode_input(mm.codec, score, "other", "input")
    return likeliest_style(mm, ids, start, max_tokens)


def styled_input(mm, score, style, what: str):
    """(ids, start, style) of an input piece: encoded once, with ``style`` (checked) or,
    when None, the style the model finds likeliest for it in the style slot."""
    codec = mm.codec
    style = check_style(codec, style)
    ids, start = _encode_input(codec, score, "other", what)
    style = style or likeliest_style(mm, ids, start)
    ids[1] = codec.style_id(style)           # the prefix is BOS, Style, ...
    return ids, start, style


def kept_notes(codec, ids, tempo) -> frozenset:
    """The notes of ``ids`` as (tick, duration, pitch, program) facts: what the input contributes."""
    s = codec.decode(ids, tempo=tempo)
    out = set()
    for t in s.tracks:
        prog = -1 if t.is_drum else int(t.program)
        for n in t.notes:
            out.add((int(n.time), int(n.duration), int(n.pitch), prog))
    return frozenset(out)
