"""Infilling bars with a left-to-right model (no retraining), for the studio.

``k`` candidates for the gap are sampled after the left context (under the constraints),
each a ``fork`` of one decoder that read the left context once, and the one under which
the model finds the right context (the bars after the gap) likeliest, in bits per token,
is kept. ``benchmarks/studio.py`` measures what this buys over a random candidate.
``session`` is a ``cadenza.music.studio.StudioSession``.

What stays (``keep``): "person" (the default) keeps the person's notes in the bars and writes
only around them (``kept_notes.KeptNotesPolicy``: they are written where they are, and the
model reads them as it goes); "all" keeps every note there, so the model only adds (a Role
constraint says what: a bass line, chords); "none" rewrites the bars.
"""

from __future__ import annotations

import math

import torch

from cadenza.bounds import INFILL_BARS, INFILL_CANDIDATES
from cadenza.errors import ConfigError
from cadenza.music.constraints import ConstrainedPolicy
from cadenza.music.kept_notes import KeptNotesPolicy
from cadenza.music.grammar import BAR, GrammarConstraint, GrammarPolicy, RemiState
from cadenza.music.studio_notes import MODEL, PERSON, Draft, SNote
from cadenza.sampling import Decoder

KEEP = ("person", "all", "none")


def region_policy(session, constraints, program: int):
    mid = session.codec.config.levels // 2
    mood = [session.codec.mood_id(mid, mid)]
    p = GrammarPolicy(session.remi, programs=[program], ts=session.ts, prefix=dict(zip(
        ("style", "key", "tempo", "time_signature"), session.prefix[1:])), moods=lambda seg: mood)
    return ConstrainedPolicy(p, constraints) if not constraints.empty else p


def infill(session, from_bar, to_bar, constraints, k, seed, keep: str = "person"):
    if not isinstance(from_bar, int) or not isinstance(to_bar, int) or isinstance(from_bar, bool) \
            or not 0 <= from_bar < to_bar or to_bar - from_bar > INFILL_BARS.hi:
        raise ConfigError(f"infill needs from_bar < to_bar (bars counted from 0, at most {INFILL_BARS.hi} of them)")
    if isinstance(k, bool) or not isinstance(k, int) or not INFILL_CANDIDATES.lo <= k <= INFILL_CANDIDATES.hi:
        raise ConfigError(f"k (candidates) must be from {INFILL_CANDIDATES.lo} to {INFILL_CANDIDATES.hi}, not {k!r}")
    if keep not in KEEP:
        raise ConfigError(f"keep must be one of {', '.join(KEEP)}, not {keep!r}")
    a, b = from_bar * session.bar_beats, to_bar * session.bar_beats
    left = [n for n in session.notes.values() if n.start < a - 1e-9]
    right = [n for n in session.notes.values() if n.start >= b - 1e-9]
    inside = [n for n in session.notes.values() if a - 1e-9 <= n.start < b - 1e-9]
    kept = [n for n in inside if keep == "all" or (keep == "person" and n.by == PERSON)]
    programs = [n.program for n in inside] or [n.program for n in session.notes.values()] or [0]
    program = max(set(programs), key=programs.count)
    ctx = open_bar(session, left, from_bar)
    policy = region_policy(session, constraints, program)
    kept_keys = set()
    if kept:
        bars, kept_keys = kept_bars(session, kept, to_bar)
        policy = KeptNotesPolicy(policy, session.remi, bars)
    limit = 96 * (to_bar - from_bar) + 8 * len(kept)
    primed = prime(session, ctx)          # the left context is read once; each candidate forks it
    cands, written = [], []
    for j in range(k):
        state = RemiState(session.remi, record=True).feed_all(ctx)
        before = len(state.notes)
        grammar = GrammarConstraint(policy, state)
        dec = (primed.fork(grammar, seed=seed + j) if primed is not None else
               Decoder(session.mm.network, ctx, constraint=grammar, seed=seed + j, desc="infill"))

        def opens_to_bar(tok, state=state):       # the bar line that would open bar to_bar
            return session.remi.kind[tok] == BAR and state.bars >= to_bar

        with dec:
            while dec.new < limit and dec.step(stop=opens_to_bar) is not None:
                pass
        notes = []
        for onset, dur, pitch, prog, vel in state.notes[before:]:
            start = onset / session.remi.tpq
            if a - 1e-9 <= start < b - 1e-9 and (onset, int(pitch)) not in kept_keys:
                notes.append(SNote(id=0, pitch=int(pitch), start=start, duration=dur / session.remi.tpq,
                                   velocity=int(vel or 80), program=max(0, int(prog)), by=MODEL))
        cands.append(notes)
        written.append(sum(1 for n in state.notes[before:] if (n.onset, int(n.pitch)) in kept_keys))
    scored = [right_score(session, left, c + kept, right, to_bar, primed) for c in cands]
    scores = [bits for bits, _ in scored]
    best = min(range(k), key=lambda j: scores[j])
    info = {"candidates": k, "right_bits_per_token": scores, "chosen": best, "right_tokens": scored[best][1],
            "keep": keep, "kept": len(kept), "kept_written": written[best]}
    kept_ids = {n.id for n in kept}
    return Draft(cands[best], sorted(n.id for n in inside if n.id not in kept_ids), (a, b), info)


def kept_bars(session, kept, to_bar: int) -> tuple[list, set]:
    """(the kept notes by bar and Position, their (onset tick, pitch)), as the session's
    tokens write them (quantized)."""
    from cadenza.music.harmony_policy import parse_melody

    ids = session.tokens(kept, bars=to_bar + 1)
    body = ids[len(session.prefix):]
    keys = {(n.onset, int(n.pitch)) for n in RemiState(session.remi, record=True).feed_all(ids).notes}
    return parse_melody(session.remi, body, session.ts), keys


def open_bar(session, left, bar: int) -> list[int]:
    """Tokens of the notes before ``bar``, up to and including the Bar (and Mood) that opens it."""
    ids = session.tokens(left, bars=bar + 1)
    i = split_at_bar(session, ids, bar)
    if i == len(ids):
        raise AssertionError("padding made too few bars")
    out = ids[:i + 1]
    if i + 1 < len(ids) and session.codec.token_type(ids[i + 1]) == "Mood":
        out.append(ids[i + 1])
    return out


def split_at_bar(session, ids, bar: int) -> int:
    seen = 0
    for i, t in enumerate(ids):
        if session.remi.kind[t] == BAR:
            seen += 1
            if seen == bar + 1:
                return i
    return len(ids)


def prime(session, ctx):
    """A decoder that has read ``ctx`` once (the infill candidates fork it), or None when
    it is too long to keep."""
    if len(ctx) >= session.mm.network.config.max_len - 8:
        return None
    return Decoder(session.mm.network, ctx, seed=0, desc="infill")


def right_bits(session, left, cand, right, to_bar, primed=None) -> float:
    """Bits per token of everything from bar ``to_bar`` on, with ``cand`` in the gap (the
    candidate's own bits per token where nothing follows the gap). ``primed`` (from
    ``prime``): the left context already read, so only the gap and what follows are."""
    return right_score(session, left, cand, right, to_bar, primed)[0]


def right_score(session, left, cand, right, to_bar, primed=None) -> tuple[float, int]:
    """(``right_bits``, the number of tokens from bar ``to_bar`` on)."""
    ids = session.tokens(left + cand + right, bars=to_bar + 1)
    model = session.mm.network
    cut = split_at_bar(session, ids, to_bar)
    right_tokens = len(ids) - cut
    if len(ids) - cut < 2 or not right:
        cut = max(1, split_at_bar(session, ids, max(0, to_bar - 1)))
    if primed is not None:
        cache0, logits0, ctx = primed.cache, primed.logits[0], primed.context
        n0 = len(ctx)
        if ids[:n0] == ctx and n0 <= cut < len(ids) <= model.config.max_len:
            with torch.inference_mode():
                rows = [logits0.float().unsqueeze(0)]
                if len(ids) - 1 > n0:
                    rows.append(model(torch.tensor([ids[n0:-1]]), cache=cache0.fork())[0].float())
                logp = torch.log_softmax(torch.cat(rows), dim=-1)       # predicts ids[n0:]
            tgt = torch.tensor(ids[n0:])
            ll = logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)[cut - n0:]
            return float(-ll.mean() / math.log(2)), right_tokens
    lo = max(0, len(ids) - model.config.max_len)
    x = torch.tensor([ids[lo:]])
    with torch.inference_mode():
        logp = torch.log_softmax(model(x[:, :-1]).float(), dim=-1)[0]
    tgt = x[0, 1:]
    ll = logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    start = max(0, cut - lo - 1)
    part = ll[start:]
    return (float(-part.mean() / math.log(2)) if part.numel() else 0.0), right_tokens
