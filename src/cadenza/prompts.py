"""Prompts and sampling settings as the decode loop (``cadenza.sampling``) takes them: the
prompt's shape and vocabulary range, and temperature, top-k, top-p and stop tokens, each
refused with one clear sentence."""

from __future__ import annotations

import math

import torch

from cadenza.bounds import TEMPERATURE, TOP_K, TOP_P
from cadenza.errors import ConfigError, ShapeError

MAX_TEMPERATURE = TEMPERATURE.hi   # the highest the commands, the music API and the server take (cadenza.bounds)


def as_batch(prompt, vocab_size: int, device) -> tuple[torch.Tensor, bool]:
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


def check_settings(temperature, top_k=None, top_p=None, max_temperature: float = math.inf) -> None:
    """Temperature (0 = always the likeliest token, up to ``max_temperature``), top-k and
    top-p, each refused with one sentence (ConfigError)."""
    if (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
            or not math.isfinite(temperature) or not TEMPERATURE.lo <= temperature <= max_temperature):
        upto = f"to {max_temperature:g}" if math.isfinite(max_temperature) else "or more"
        raise ConfigError(f"temperature must be a number from {TEMPERATURE.lo} (always the likeliest token) {upto}, "
                          f"not {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < TOP_K.lo):
        raise ConfigError(f"top-k must be a whole number of at least {TOP_K.lo}, not {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float))
                              or not TOP_P.lo < top_p <= TOP_P.hi):
        raise ConfigError(f"top-p must be a number above {TOP_P.lo} and at most {TOP_P.hi}, not {top_p!r}")


def check_args(max_new_tokens, temperature, top_k, top_p, stop_tokens, vocab):
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ConfigError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}.")
    check_settings(temperature, top_k, top_p)
    stops = []
    for t in stop_tokens:
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab:
            raise ConfigError(f"stop token {t!r} is not a token of the vocabulary [0, {vocab}).")
        stops.append(t)
    return stops


def is_single(prompt) -> bool:
    if isinstance(prompt, torch.Tensor):
        return prompt.dim() == 1
    return isinstance(prompt, (list, tuple)) and bool(prompt) and not isinstance(
        prompt[0], (list, tuple))


def batch_size(prompt) -> int:
    if isinstance(prompt, torch.Tensor):
        return 1 if prompt.dim() == 1 else prompt.shape[0]
    return 1 if is_single(prompt) else len(prompt)
