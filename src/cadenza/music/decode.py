"""The decode loop under the grammar, run to a length target: what compose, continue and
harmonize share (the loop itself is ``cadenza.sampling.Decoder``; this adds the target,
the copy guard, the progress bar and the per-bar callback)."""

from __future__ import annotations

import time

from cadenza.music.grammar import BAR, GrammarConstraint
from cadenza.music.inputs import MAX_NEW_TOKENS, PROGRESS_DELAY_S
from cadenza.music.policies import LengthTarget, _GuardedPolicy
from cadenza.sampling import Decoder


def decode_to_target(model, prompt, policy, state, target: LengthTarget | None, *, seed, temperature, top_k,
                     top_p, progress: bool, desc: str, on_bar=None, max_new_tokens: int = MAX_NEW_TOKENS,
                     total_bars: int | None = None, guard=None):
    """Sample after ``prompt`` under ``policy`` to ``target``; returns (new ids, stats).

    The loop is ``cadenza.sampling.Decoder``'s with the grammar as its constraint; this adds
    the length target (a token past it ends the piece and is not taken), the progress bar
    and the ``on_bar`` callback. ``guard`` (a ``cadenza.music.authorship.originality.CopyGuard``) takes
    away every pitch that would repeat more than ``guard.max_copy`` consecutive notes of a
    training piece.
    """
    from tqdm import tqdm

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

    def past_target(tok: int) -> bool:
        """True for a token past the length target (not taken); else the bar bookkeeping."""
        nonlocal done_bars
        if target is not None and target.stops_before(tok, state):
            stats["stopped"] = "length"
            return True
        if remi.kind[tok] == BAR and state.in_body and state.bars >= 1:   # a bar line ends the bar before it
            now = time.perf_counter() - t0
            done_bars += 1
            if stats["first_bar_s"] is None:
                stats["first_bar_s"] = now
            if on_bar is not None:
                on_bar(done_bars, now)
            if progress and target is None:
                bar.update(1)
        return False

    try:
        with Decoder(model, prompt, constraint=GrammarConstraint(policy, state), seed=seed,
                     temperature=temperature, top_k=top_k, top_p=top_p, desc=desc) as dec:
            while len(new) < max_new_tokens and stats["stopped"] == "tokens":
                taken = dec.step(stop=past_target, limit=max_new_tokens - len(new), until=(remi.eos,))
                new += taken or []
                if taken and taken[-1] == remi.eos:
                    stats["stopped"] = "eos"
                if progress and target is not None and taken:
                    p = target.progress(state)
                    p = int(p) if unit == "bar" else round(p, 1)
                    if total:
                        p = min(p, total)
                    if p > shown:
                        bar.update(p - shown)
                        shown = p
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0
    if stats["first_bar_s"] is None:
        stats["first_bar_s"] = elapsed
    stats["elapsed_s"] = elapsed
    stats["bars_done"] = state.bars - bars0
    return new, stats
