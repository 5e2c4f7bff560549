"""The endless soundtrack's tempo on auto: drawn for the mood's energy at each section start,
within the style's range.

Nobody set the tempo (not the listener, not their likes), so the stream chooses it when a
section starts (``Soundtrack._start_section``). The style's range is the model's own: the
tempos it gives the style (and key) after the prefix's first slots, from the 10th to the 90th
percentile of its Tempo-token distribution (``style_range``). The range is split into one
band per energy level, evenly on a log scale (a tempo's ratio is what is heard), and the
section's tempo is drawn inside the band of the energy in force (``tempo_for_level``): the
listener's or the likes' energy, else the level the model played in the last segment heard.
A tempo already in the right band stays, so the tempo moves when the energy does, not at
every section. With no energy to go by (the first section of a fresh start, the model
choosing the mood) or no style yet, the model chooses the tempo as before.
"""

from __future__ import annotations

import math
import weakref

import torch

from cadenza.bounds import LIVE_TEMPO
from cadenza.music.grammar import KEY, TEMPO

_RANGES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()   # network -> {(style, key): (lo, hi)}


def style_range(network, remi, bos: int, style_id: int, key_id: int | None, q: float = 0.1) -> tuple[float, float]:
    """(lo, hi) bpm: the ``q`` and ``1 - q`` quantiles of the model's tempo for the style (and
    key; its likeliest key for the style where none is given), within ``LIVE_TEMPO``."""
    memo = _RANGES.setdefault(network, {})
    hit = memo.get((style_id, key_id))
    if hit is not None:
        return hit
    with torch.inference_mode():
        if key_id is None:
            p = network(torch.tensor([[bos, style_id]]))[0, -1].float()
            keys = remi.masks[KEY].nonzero().flatten()
            key_id = int(keys[int(torch.argmax(p[keys]))])
        p = torch.softmax(network(torch.tensor([[bos, style_id, key_id]]))[0, -1].float(), dim=-1)
    ids = sorted((int(i) for i in remi.masks[TEMPO].nonzero().flatten()), key=lambda i: remi.value[i])
    w = torch.stack([p[i] for i in ids])
    cdf = torch.cumsum(w / w.sum(), 0).tolist()
    lo = remi.value[ids[next(j for j, c in enumerate(cdf) if c >= q)]]
    hi = remi.value[ids[next(j for j, c in enumerate(cdf) if c >= 1 - q)]]
    lo, hi = float(lo), float(hi)
    if hi < lo * 1.2:                   # a style the model plays at one tempo: room to move all the same
        mid = math.sqrt(lo * hi)
        lo, hi = mid / 1.1, mid * 1.1
    out = (max(float(LIVE_TEMPO.lo), lo), min(float(LIVE_TEMPO.hi), hi))
    memo[(style_id, key_id)] = out
    return out


def tempo_for_level(lo: float, hi: float, level: int, levels: int, previous: float | None, rng) -> float:
    """A tempo in energy ``level``'s band of [lo, hi] (bands even on a log scale, the lowest level
    slowest): ``previous`` where it is already in the band, else drawn in it (whole bpm)."""
    edges = [lo * (hi / lo) ** (i / levels) for i in range(levels + 1)]
    a, b = edges[level], edges[level + 1]
    if previous is not None and a <= previous <= b:
        return float(previous)
    return float(round(a * (b / a) ** rng.random()))


def auto_tempo(st, values: dict, previous: dict | None, held: list) -> float | None:
    """The tempo of a section a ``Soundtrack`` ``st`` starts with the tempo on auto (see the
    module docstring); None leaves it to the model. ``previous``: the last section's prefix
    (slot -> token id) where the stream goes on; ``held``: the bars heard before, if it goes on."""
    codec, remi = st.codec, st.remi
    if values["energy"] is not None:
        level = codec.control_level(float(values["energy"]))
    elif held:
        level = held[-1].levels[1]
    else:
        return None
    prev = previous or {}
    style = codec.style_id(values["style"]) if values["style"] is not None else prev.get("style")
    if style is None:
        return None
    key = codec.conditioning(key=values["key"])[1] if values["key"] is not None else prev.get("key")
    lo, hi = style_range(st.mm.network, remi, codec.bos_id, style, key)
    before = held[-1].bar.tempo if held else None
    return tempo_for_level(lo, hi, int(level), codec.config.levels, before, st.rng)
