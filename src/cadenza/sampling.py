"""Sampling from a SparseTransformer: temperature, top-k, top-p, seeds, constraints, streaming.

``generate`` returns the new tokens; ``stream`` yields them as they are made. Both decode
with the sparse KV cache (one token costs O(l + n/l)) under ``torch.inference_mode``.

Prompts: a list of ints or a 1-D tensor (one sequence), or a list of equal-length lists or a
(batch, n) tensor (a batch). Results follow the same shape: ``list[int]`` for one sequence,
``list[list[int]]`` for a batch.

Context beyond ``max_len`` (the sliding window): the model only ever conditions on at most
``max_len`` tokens. When the context (prompt + generated) would grow past ``max_len``, the
oldest tokens are dropped so that the most recent ``window_keep(max_len)`` tokens
(``max_len - max_len // 4``) remain; they are re-encoded at positions 0, 1, ... into a fresh
cache, and decoding continues until the window is full again. So one re-encode happens
every ``max_len // 4`` tokens, never a crash. A prompt longer than ``max_len`` is cut the
same way before the first step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch

from cadenza.errors import ConfigError, ShapeError

Constraint = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def window_keep(max_len: int) -> int:
    """How many recent tokens the sliding window keeps when the context exceeds max_len."""
    return max(1, max_len - max(1, max_len // 4))


def filter_logits(logits: torch.Tensor, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """Set to -inf every logit outside the top ``top_k`` and outside the nucleus ``top_p``.

    The nucleus is the smallest set of most likely tokens whose probability reaches top_p;
    the most likely token is always kept. logits: (batch, vocab).
    """
    if top_k is not None and top_k < logits.shape[-1]:
        top = torch.topk(logits, top_k, dim=-1).indices  # exactly k, even with ties
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, top, True)
        logits = logits.masked_fill(~keep, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs  # probability mass ranked above each token
        drop_sorted = before >= top_p
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _apply_constraint(constraint, logits, context, step):
    out = constraint(logits, context)
    if not isinstance(out, torch.Tensor) or out.shape != logits.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(
            f"constraint must return a tensor shaped like the logits {tuple(logits.shape)}, "
            f"got {got}.")
    if out.dtype == torch.bool:
        out = logits.masked_fill(~out, float("-inf"))
    out = out.float()
    dead = torch.isneginf(out).all(dim=-1)
    if bool(dead.any()):
        row = int(dead.nonzero()[0])
        raise ConfigError(f"the constraint allowed no token for sequence {row} at step {step}.")
    return out


def _sample(logits, temperature, top_k, top_p, generator):
    if temperature == 0:
        return torch.argmax(logits, dim=-1)
    logits = filter_logits(logits / temperature, top_k, top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _as_batch(prompt, vocab_size: int, device) -> tuple[torch.Tensor, bool]:
    """(batch, n) LongTensor and whether the caller passed a single sequence."""
    if isinstance(prompt, torch.Tensor):
        if prompt.dim() not in (1, 2):
            raise ShapeError(f"prompt must be 1-D or (batch, n), got shape {tuple(prompt.shape)}.")
        if prompt.is_floating_point() or prompt.is_complex() or prompt.dtype == torch.bool:
            raise ShapeError(f"prompt must hold integer tokens, got {prompt.dtype}.")
        single = prompt.dim() == 1
        tokens = prompt.reshape(1, -1) if single else prompt
        tokens = tokens.to(device=device, dtype=torch.long)
    else:
        if not isinstance(prompt, (list, tuple)) or not prompt:
            raise ShapeError("prompt must be a non-empty list of tokens or a tensor.")
        single = not isinstance(prompt[0], (list, tuple))
        rows = [list(prompt)] if single else [list(r) for r in prompt]
        lengths = {len(r) for r in rows}
        if len(lengths) != 1:
            raise ShapeError(
                f"prompts in a batch must have equal lengths, got {sorted(lengths)}.")
        for r in rows:
            for t in r:
                if isinstance(t, bool) or not isinstance(t, int):
                    raise ShapeError(f"prompt tokens must be integers, got {t!r}.")
        tokens = torch.tensor(rows, dtype=torch.long, device=device)
    if tokens.shape[0] < 1 or tokens.shape[1] < 1:
        raise ShapeError("prompt must hold at least one token.")
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= vocab_size:
        raise ShapeError(
            f"prompt token {lo if lo < 0 else hi} is outside the vocabulary [0, {vocab_size}).")
    return tokens, single


def _check_args(max_new_tokens, temperature, top_k, top_p, constraint, stop_tokens, vocab):
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ConfigError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}.")
    if (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
            or not temperature >= 0 or temperature == float("inf")):
        raise ConfigError(f"temperature must be a finite number >= 0, got {temperature!r}.")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ConfigError(f"top_k must be a positive integer or None, got {top_k!r}.")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float))
                              or not 0.0 < top_p <= 1.0):
        raise ConfigError(f"top_p must be in (0, 1] or None, got {top_p!r}.")
    if constraint is not None and not callable(constraint):
        raise ConfigError(f"constraint must be callable, got {type(constraint).__name__}.")
    stops = []
    for t in stop_tokens:
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab:
            raise ConfigError(f"stop token {t!r} is not a token of the vocabulary [0, {vocab}).")
        stops.append(t)
    return stops


def _decode(model, prompt, max_new_tokens, temperature, top_k, top_p, seed, constraint,
            stop_tokens) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (tokens (B,), active (B,) bool) per step; rows stop after a stop token."""
    config = model.config
    device = model.device
    stops = _check_args(max_new_tokens, temperature, top_k, top_p, constraint, stop_tokens,
                        config.vocab_size)
    tokens, _ = _as_batch(prompt, config.vocab_size, device)
    B, n = tokens.shape
    generator = torch.Generator(device=device)
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()))
    generator.manual_seed(int(seed))
    stop_t = torch.tensor(stops, dtype=torch.long, device=device)
    max_len, keep = config.max_len, window_keep(config.max_len)

    context = torch.empty((B, n + max_new_tokens), dtype=torch.long, device=device)
    context[:, :n] = tokens
    cur = n
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            start = 0 if n <= max_len else n - keep
            cache = model.new_cache(B)
            logits = model(context[:, start:cur], cache=cache)[:, -1]
        active = torch.ones(B, dtype=torch.bool, device=device)
        for step in range(max_new_tokens):
            with torch.inference_mode():
                if constraint is not None:
                    logits = _apply_constraint(constraint, logits, context[:, :cur], step)
                tok = _sample(logits, temperature, top_k, top_p, generator)
                context[:, cur] = tok
                cur += 1
            yield tok.clone(), active.clone()
            if stops:
                active = active & ~torch.isin(tok, stop_t)
                if not bool(active.any()):
                    return
            if step == max_new_tokens - 1:
                return
            with torch.inference_mode():
                if cache.length + 1 > max_len:  # slide the window: re-encode the recent tokens
                    start = cur - keep
                    cache = model.new_cache(B)
                    logits = model(context[:, start:cur], cache=cache)[:, -1]
                else:
                    logits = model(context[:, cur - 1:cur], cache=cache)[:, -1]
    finally:
        model.train(was_training)


def stream(model, prompt, max_new_tokens: int, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
           constraint: Constraint | None = None, stop_tokens: Iterable[int] = ()):
    """Yield new tokens as they are made (see :func:`generate` for the arguments).

    For one sequence it yields ints; for a batch it yields one list per step, with None for
    sequences that have already stopped. A sequence stops after emitting a stop token (the
    stop token is yielded); the stream ends when every sequence stopped or after
    ``max_new_tokens`` steps.
    """
    stop_tokens = tuple(stop_tokens)
    # Check the arguments now, not at the first next().
    _check_args(max_new_tokens, temperature, top_k, top_p, constraint, stop_tokens,
                model.config.vocab_size)
    _as_batch(prompt, model.config.vocab_size, model.device)
    steps = _decode(model, prompt, max_new_tokens, temperature, top_k, top_p, seed,
                    constraint, stop_tokens)
    return _stream_values(steps, _is_single(prompt))


def _stream_values(steps, single: bool):
    for tok, active in steps:
        values = tok.tolist()
        if single:
            yield values[0]
        else:
            yield [v if a else None for v, a in zip(values, active.tolist())]


def generate(model, prompt, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
             constraint: Constraint | None = None, stop_tokens: Iterable[int] = ()):
    """Sample up to ``max_new_tokens`` tokens after ``prompt`` and return them.

    - ``temperature``: divides the logits; 0 means greedy (argmax).
    - ``top_k`` / ``top_p``: keep the k most likely tokens / the nucleus of mass p.
    - ``seed``: the same seed gives the same tokens (a private torch.Generator; without a
      seed one is drawn from torch's global RNG, so ``torch.manual_seed`` also fixes it).
    - ``constraint(logits, context)``: called before sampling with the (batch, vocab) float
      logits and the (batch, n) context so far (prompt + generated); returns either a bool
      tensor of allowed tokens or new logits (-inf = forbidden). If it allows nothing for a
      sequence, ConfigError.
    - ``stop_tokens``: a sequence ends after emitting one of them (it is included).
    - Context longer than ``max_len`` slides (see the module docstring); it never crashes.

    Returns ``list[int]`` for one prompt, ``list[list[int]]`` for a batch (rows may differ
    in length when they stop at different steps).
    """
    single = _is_single(prompt)
    rows: list[list[int]] | None = None
    for tok, active in _decode(model, prompt, max_new_tokens, temperature, top_k, top_p,
                               seed, constraint, tuple(stop_tokens)):
        values, flags = tok.tolist(), active.tolist()
        if rows is None:
            rows = [[] for _ in values]
        for r, (v, a) in enumerate(zip(values, flags)):
            if a:
                rows[r].append(v)
    if rows is None:
        rows = [[] for _ in range(_batch_size(prompt))]
    return rows[0] if single else rows


def _is_single(prompt) -> bool:
    if isinstance(prompt, torch.Tensor):
        return prompt.dim() == 1
    return isinstance(prompt, (list, tuple)) and bool(prompt) and not isinstance(
        prompt[0], (list, tuple))


def _batch_size(prompt) -> int:
    if isinstance(prompt, torch.Tensor):
        return 1 if prompt.dim() == 1 else prompt.shape[0]
    return 1 if _is_single(prompt) else len(prompt)


__all__ = ["generate", "stream", "filter_logits", "window_keep"]
