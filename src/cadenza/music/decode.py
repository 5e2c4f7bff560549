"""The decode loop under the grammar, run to a length target: what compose, continue and
harmonize share (the loop itself is ``cadenza.sampling.Decoder``; this adds the target,
the copy guard, the progress bar and the per-bar callback)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from cadenza.music.grammar import BAR, GrammarConstraint
from cadenza.music.policies import LengthTarget, GuardedPolicy
from cadenza.sampling import Decoder


MAX_NEW_TOKENS = 400_000   # no decode runs longer than this many tokens
PROGRESS_DELAY_S = 0.5     # the progress bar appears only for work that takes longer than this
ENDING_TRIES = 8   # fresh draws of a closing piece's last bars when it was cut, not ended


@dataclass(slots=True)
class DecodeStats:
    """How a decode to a length target went."""
    stopped: str = "tokens"          # eos: the model ended it; tonic: ended on its last tonic; length; tokens
    ending_tries: int = 0            # draws of the closing bars (0: the target does not close the piece)
    first_bar_s: float | None = None  # seconds to the first finished bar
    elapsed_s: float = 0.0
    bars_done: int = 0               # bars written after the prompt


def decode_to_target(model, prompt, policy, state, target: LengthTarget | None, *, seed, temperature, top_k,
                     top_p, progress: bool, desc: str, on_bar=None, max_new_tokens: int = MAX_NEW_TOKENS,
                     total_bars: int | None = None, guard=None, memory: bool = False):
    """Sample after ``prompt`` under ``policy`` to ``target``; returns (new ids, ``DecodeStats``).

    The loop is ``cadenza.sampling.Decoder``'s with the grammar as its constraint; this adds
    the length target (a token past it ends the piece and is not taken), the progress bar
    and the ``on_bar`` callback. ``guard`` (a ``cadenza.music.authorship.originality.CopyGuard``) takes
    away every pitch that would repeat more than ``guard.max_copy`` consecutive notes of a
    training piece. ``memory``: pitches are sampled from the network mixed with the piece memory
    (``cadenza.music.memory``), a short-term model of the melody so far.

    A target that closes the piece (``LengthTarget.close`` with bars) and was cut rather than
    ended by the model is given up to ``ENDING_TRIES`` fresh draws of its closing bars (from
    the bar where an ending is first allowed, each with its own seed derived from ``seed``);
    the first that the model ends on the tonic is kept; where none does, the first draw ends
    right after its last tonic note in the closing bars (``_last_tonic``), and only a draw with
    none there is cut. The stats say how the piece stopped ("eos": the model ended it,
    "tonic": ended on its last tonic, "length", "tokens") and how many draws the ending took.
    """
    from tqdm import tqdm

    inner = policy
    remember = None
    if memory:
        from cadenza.music.memory import PieceMemory

        remember = PieceMemory(sorted(policy.remi.pitch_ids))
        state.record = True
    if guard is not None:
        policy = GuardedPolicy(inner, guard, prompt)
    remi = policy.remi
    state.feed_all(prompt)
    if target is not None:
        target.bars0 = state.bars
    bars0 = state.bars
    stats = DecodeStats()
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

    def run(context, st, pol, run_seed, limit, report=True):
        """One decode from ``context`` with state ``st``: (tokens taken, how it stopped); ``report``:
        count finished bars for ``on_bar`` and the progress bar (not for an ending drawn again)."""
        nonlocal shown
        taken_all: list[int] = []
        stopped = "tokens"

        def past_target(tok: int) -> bool:
            """True for a token past the length target (not taken); else the bar bookkeeping."""
            nonlocal done_bars, stopped
            if target is not None and target.stops_before(tok, st):
                stopped = "length"
                return True
            if report and remi.kind[tok] == BAR and st.in_body and st.bars >= 1:   # a bar line ends the bar before it
                now = time.perf_counter() - t0
                done_bars += 1
                if stats.first_bar_s is None:
                    stats.first_bar_s = now
                if on_bar is not None:
                    on_bar(done_bars, now)
                if progress and target is None:
                    bar.update(1)
            return False

        with Decoder(model, context, constraint=GrammarConstraint(pol, st, memory=remember), seed=run_seed,
                     temperature=temperature, top_k=top_k, top_p=top_p, desc=desc) as dec:
            while len(taken_all) < limit and stopped == "tokens":
                taken = dec.step(stop=past_target, limit=limit - len(taken_all), until=(remi.eos,))
                taken_all += taken or []
                if taken and taken[-1] == remi.eos:
                    stopped = "eos"
                if report and progress and target is not None and taken:
                    p = target.progress(st)
                    p = int(p) if unit == "bar" else round(p, 1)
                    if total:
                        p = min(p, total)
                    if p > shown:
                        bar.update(p - shown)
                        shown = p
        return taken_all, stopped

    try:
        new, stats.stopped = run(list(prompt), state, policy, seed, max_new_tokens)
        stats.ending_tries = 1 if target is not None and target.close else 0
        cut = _closing_start(new, remi, target, bars0) if stats.stopped == "length" else None
        for k in range(1, ENDING_TRIES if cut is not None else 0):
            context = list(prompt) + new[:cut]
            st = type(state)(state.remi, record=state.record)
            pol = GuardedPolicy(inner, guard, context) if guard is not None else policy
            tail, how = run(context, st, pol, _derived_seed(seed, k), max_new_tokens - cut, report=False)
            stats.ending_tries = k + 1
            if how == "eos":
                new = new[:cut] + tail
                stats.stopped = how
                state.__dict__.update(st.__dict__)
                break
        if stats.stopped == "length" and cut is not None:   # no draw ended it: end on its last tonic
            end = _last_tonic(prompt, new, state, target, bars0)
            if end is not None:
                st = type(state)(state.remi, record=state.record).feed_all(list(prompt) + new[:end])
                new = new[:end]              # the caller closes it with EOS, as a cut piece
                stats.stopped = "tonic"
                state.__dict__.update(st.__dict__)
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0
    if stats.first_bar_s is None:
        stats.first_bar_s = elapsed
    stats.elapsed_s = elapsed
    stats.bars_done = state.bars - bars0
    return new, stats


def _closing_start(new: list[int], remi, target: LengthTarget | None, bars0: int) -> int | None:
    """Index in ``new`` of the Bar token that opens the first bar where a closing piece may end
    (bar N - CLOSE_EARLY), or None when there is nothing to draw again."""
    from cadenza.bounds import CLOSE_EARLY

    if target is None or not target.close or target.bars is None:
        return None
    want = max(1, target.bars - CLOSE_EARLY)     # new bars counted as the state counts them
    seen = bars0
    for i, tok in enumerate(new):
        if remi.kind[tok] == BAR:
            seen += 1
            if seen - bars0 == want:
                return i
    return None


def _last_tonic(prompt, new: list[int], state, target: LengthTarget, bars0: int) -> int | None:
    """Where a closing piece that no draw ended may stop: right after its last note on the tonic
    (the top note of its onset) written in the closing bars (from bar N - CLOSE_EARLY), as an
    index into ``new``; None if it wrote none there."""
    from cadenza.music.grammar import DRUM, DUR, PITCH, PROG
    from cadenza.bounds import CLOSE_EARLY

    remi = state.remi
    st = type(state)(remi)
    st.feed_all(prompt)
    best = None
    for i, tok in enumerate(new):
        st.feed(tok)
        if remi.kind[tok] != DUR or st.bars - bars0 < target.bars - CLOSE_EARLY:
            continue
        nxt = remi.kind[new[i + 1]] if i + 1 < len(new) else None
        if nxt not in (PITCH, PROG, DRUM) and target.on_tonic(st) and target.tonic(st) is not None:
            best = i + 1
    return best


def _derived_seed(seed, k: int) -> int:
    """The seed of the k-th fresh draw of an ending: a fixed function of the piece's seed."""
    return (int(seed) * 1_000_003 + 7919 * k) % (2 ** 62) if seed is not None else None


