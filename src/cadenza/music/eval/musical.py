"""Sampling pieces and measuring them with MusPy (pitch-class entropy, scale consistency,
polyphony, groove consistency, empty beats)."""

from __future__ import annotations

import math

import numpy as np

MUSPY_METRICS = ("pitch_class_entropy", "scale_consistency", "polyphony",
                 "groove_consistency", "empty_beat_rate")



# --------------------------------------------------------------------------- generation + MusPy
def sample_transformer(model, prompts, max_new_tokens: int, eos_id: int, seed: int = 0,
                       temperature: float = 1.0, top_k: int | None = None,
                       top_p: float | None = None) -> list[list[int]]:
    """New tokens after each prompt, sampled with ``cadenza.sampling.generate`` (stop at EOS).

    Prompts of equal length are sampled as one batch.
    """
    from cadenza.sampling import generate

    prompts = [[int(t) for t in p] for p in prompts]
    out: list[list[int] | None] = [None] * len(prompts)
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    for n, idx in sorted(by_len.items()):
        rows = generate(model, [prompts[i] for i in idx], max_new_tokens, temperature=temperature,
                        top_k=top_k, top_p=top_p, seed=seed + n, stop_tokens=[eos_id])
        for i, r in zip(idx, rows):
            out[i] = list(r)
    return out


def to_muspy(score):
    """A symusic score (any time unit) as a ``muspy.Music`` in ticks (resolution = tpq)."""
    import muspy

    score = score if type(score).__name__ == "ScoreTick" else score.to("tick")
    tracks = []
    for t in score.tracks:
        arr = t.notes.numpy()
        notes = [muspy.Note(time=int(a), pitch=int(b), duration=int(c), velocity=int(d))
                 for a, b, c, d in zip(arr["time"], arr["pitch"], arr["duration"], arr["velocity"])]
        tracks.append(muspy.Track(program=int(t.program), is_drum=bool(t.is_drum), notes=notes))
    return muspy.Music(resolution=int(score.ticks_per_quarter), tracks=tracks)


def measure_ticks(score) -> int:
    """Ticks per measure from the first time signature (4/4 when there is none)."""
    score = score if type(score).__name__ == "ScoreTick" else score.to("tick")
    num, den = (4, 4)
    if len(score.time_signatures):
        ts = score.time_signatures[0]
        num, den = int(ts.numerator), int(ts.denominator)
    return max(1, int(round(score.ticks_per_quarter * 4 * num / den)))


def muspy_metrics(score) -> dict:
    """The five MusPy metrics of one symusic score; NaN where MusPy gives none (no notes,
    or groove consistency of a piece shorter than two measures)."""
    import muspy

    music = to_muspy(score)
    if sum(len(t.notes) for t in music.tracks) == 0:
        return {m: math.nan for m in MUSPY_METRICS}
    return {
        "pitch_class_entropy": float(muspy.pitch_class_entropy(music)),
        "scale_consistency": float(muspy.scale_consistency(music)),
        "polyphony": float(muspy.polyphony(music)),
        "groove_consistency": float(muspy.groove_consistency(music, measure_ticks(score))),
        "empty_beat_rate": float(muspy.empty_beat_rate(music)),
    }


def metric_stats(rows) -> dict:
    """{metric: {mean, std, n}} over per-piece metric dicts (NaNs left out)."""
    out = {}
    for m in MUSPY_METRICS:
        vals = np.array([r[m] for r in rows], dtype=float)
        vals = vals[np.isfinite(vals)]
        out[m] = {"mean": float(vals.mean()) if len(vals) else math.nan,
                  "std": float(vals.std()) if len(vals) else math.nan,
                  "n": int(len(vals))}
    return out
