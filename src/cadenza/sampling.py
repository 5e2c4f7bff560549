"""The one decode loop: sampling from a SparseTransformer with temperature, top-k, top-p,
seeds, constraints and streaming.

``Decoder`` is the loop as an object that can be stepped: it holds the sparse KV cache (one
token costs O(l + n/l)) and the context, and decodes under ``torch.inference_mode``. Every
caller runs it: ``generate`` (returns the new tokens) and ``stream`` (yields them as they
are made) for any model, and the music code (compose, continue, harmonize, the endless
soundtrack, the studio's infill) with the grammar as a ``TokenSet`` constraint.

Constraints come in two kinds:

- a callable ``constraint(logits, context)`` returning a bool tensor of allowed tokens or
  new logits (-inf = forbidden); sampling is over the whole vocabulary, for any batch;
- a ``TokenSet`` (one sequence) that names the tokens allowed next. A set of one forces
  its token: it is taken without sampling, and the tokens forced after it are taken in the
  same ``step``; sampling looks only at the allowed tokens (a few dozen, not the whole
  vocabulary). Forced tokens still go through the model one at a time (the cache's
  one-token step is 3-5x cheaper than a two-token chunk on a CPU).

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

import copy
from collections.abc import Callable, Container, Iterable, Iterator

import torch

from cadenza.draw import filter_logits, sample_among, sample_rows
from cadenza.errors import ConfigError
from cadenza.prompts import as_batch, batch_size, check_args, check_settings, is_single

Constraint = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]   # or a TokenSet


def window_keep(max_len: int) -> int:
    """How many recent tokens the sliding window keeps when the context exceeds max_len."""
    return max(1, max_len - max(1, max_len // 4))


class TokenSet:
    """A constraint that names the tokens allowed next in one sequence (see the module
    docstring). The decoder calls ``start(context)`` with the context it starts (or
    restarts) from, ``allowed()`` before choosing each token, and ``feed(tok)`` for every
    token taken."""

    def start(self, context: list[int]) -> None:
        """Catch up with ``context`` (the tokens before the first new one)."""

    def allowed(self) -> torch.Tensor:
        """The ids allowed next, a 1-D LongTensor; one id forces it."""
        raise NotImplementedError

    def feed(self, tok: int) -> None:
        """``tok`` was taken."""

    def adjust(self, logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """The logits (vocab,) to sample ``allowed`` from: unchanged by default; a set may
        reweigh its tokens (the music grammar mixes in the piece memory)."""
        return logits


def _check_constraint(constraint) -> None:
    if constraint is not None and not callable(constraint) and not isinstance(constraint, TokenSet):
        raise ConfigError(f"constraint must be callable, got {type(constraint).__name__}.")


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


class Decoder:
    """The decode loop after ``context``, one step at a time.

    ``context``: a prompt as ``generate`` takes it (one sequence or a batch). ``constraint``:
    a callable or a ``TokenSet`` (one sequence only; see the module docstring). ``seed``:
    a private generator (None draws one from torch's global RNG). The loop is::

        dec = Decoder(model, prompt, constraint=..., seed=1)
        while ...:
            taken = dec.step()     # the chosen token and the tokens forced after it
        dec.close()                # (or ``with Decoder(...) as dec:``)

    or, spelled out, ``choose()`` (the next token: sampled, or the one a TokenSet allows),
    ``take(tok)`` (the context and the constraint move on), ``forced()`` (the token the
    constraint now forces, if any). The model reads taken tokens when the next choice needs
    its logits, one cached step each; past ``max_len`` the window slides (the module
    docstring). ``primed=(cache, logits)``: a cache that has already read ``context`` and the
    logits after it (for example a ``KVCache.fork()`` shared by several candidates), used
    instead of reading it again. ``restart(context, constraint)`` starts a fresh cache from
    a new context, keeping the generator. The model is in eval mode while the decoder lives;
    ``close()`` restores its mode.
    """

    def __init__(self, model, context, *, constraint=None, seed: int | None = None,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 primed=None, desc: str = "generate", reader=None):
        check_settings(temperature, top_k, top_p)
        _check_constraint(constraint)
        self.model = model
        self.temperature, self.top_k, self.top_p, self.desc = temperature, top_k, top_p, desc
        self.max_len = model.config.max_len
        self.keep = window_keep(self.max_len)
        self.generator = torch.Generator(device=model.device)
        if seed is None:
            seed = int(torch.randint(0, 2**62, ()))
        self.generator.manual_seed(int(seed))
        self._was_training, self.reader = model.training, reader   # reader(tokens, caches): reads for the model
        model.eval()
        try:
            self.restart(context, constraint, primed=primed)
        except BaseException:         # a bad prompt leaves the model as it was
            model.train(self._was_training)
            raise

    def restart(self, context, constraint=None, primed=None) -> None:
        """Forget the cache and go on from ``context`` under ``constraint``."""
        tokens, self.single = as_batch(context, self.model.config.vocab_size, self.model.device)
        self._begin(tokens.tolist(), constraint, primed)

    def _begin(self, ids: list[list[int]], constraint, primed) -> None:
        """``restart`` from checked ``ids`` (one list per sequence)."""
        self.rows = len(ids)
        self.ids = ids
        self.constraint = constraint
        self._set = isinstance(constraint, TokenSet)
        if self._set:
            if self.rows != 1:
                raise ConfigError("a TokenSet constraint decodes one sequence, not a batch.")
            constraint.start(self.ids[0])
            self._allowed = constraint.allowed()
        self._buffer, self._buffer_n = None, 0   # the context as a tensor, for callable constraints
        self._pending = 0             # tokens taken that the model has not read yet
        self.new = 0                  # tokens taken (per sequence) since the last (re)start
        if primed is not None:
            self.cache, logits = primed
            self.logits = logits.reshape(self.rows, -1)
        else:
            self.cache = None
            n = len(self.ids[0])
            self._read([row[-self.keep:] for row in self.ids] if n > self.max_len else self.ids)

    @property
    def context(self):
        """The context so far: a list of ids (one sequence) or one list per sequence."""
        return self.ids[0] if self.single else self.ids

    @property
    def cached(self) -> int:
        """Tokens the cache holds once it has read everything taken."""
        if self.cache is None:
            return 0
        n = int(self.cache.length) + self._pending
        return self.keep if n > self.max_len else n

    # ---- the model ------------------------------------------------------------------------
    def _read(self, window) -> None:
        with torch.inference_mode():
            self.cache = self.model.new_cache(self.rows)
            one = self.reader is not None and self.rows == 1 and len(window[0]) == 1   # one token: a step
            self.logits = (self.reader(window[0], [self.cache]) if one else
                           self.model(torch.tensor(window, device=self.model.device), cache=self.cache)[:, -1])

    def _catch_up(self) -> None:
        """The model reads the tokens taken since it last did (sliding past ``max_len``)."""
        pending, self._pending = self._pending, 0
        if not pending:
            return
        if self.cache.length + pending > self.max_len:   # slide the window: re-encode recent tokens
            self._read([row[-self.keep:] for row in self.ids])
            return
        with torch.inference_mode():
            for j in range(pending, 0, -1):
                one = self.reader is not None and self.rows == 1
                self.logits = (self.reader([self.ids[0][-j]], [self.cache]) if one else self.model(
                    torch.tensor([[row[-j]] for row in self.ids], device=self.model.device), cache=self.cache)[:, -1])

    def _context_tensor(self) -> torch.Tensor:
        """The context as a (batch, n) tensor, kept in a buffer that grows by doubling."""
        n, done = len(self.ids[0]), self._buffer_n
        if self._buffer is None or self._buffer.shape[1] < n:
            self._buffer = torch.empty((self.rows, 2 * n), dtype=torch.long, device=self.model.device)
            done = 0
        if done < n:
            self._buffer[:, done:n] = torch.tensor([row[done:] for row in self.ids], device=self.model.device)
            self._buffer_n = n
        return self._buffer[:, :n]

    # ---- reads done from outside (``cadenza.batching``): ``read(logits)`` once it is in the cache
    def unread(self) -> int | None:
        """The next token the model has yet to read (one sequence), or None (past max_len: slid)."""
        if self._pending and self.cache.length + self._pending > self.max_len:
            self._catch_up()
        return self.ids[0][-self._pending] if self._pending else None

    def read(self, logits: torch.Tensor) -> None:
        self.logits, self._pending = logits.reshape(1, -1), self._pending - 1

    # ---- choosing -------------------------------------------------------------------------
    def choose(self) -> list[int]:
        """The next token of every sequence: the only one allowed, the likeliest (temperature
        0), or a sample."""
        self._catch_up()
        with torch.inference_mode():
            if self._set:
                allowed = self._allowed
                if allowed.numel() == 0:
                    raise ConfigError(
                        f"the {self.desc} constraints left no possible token after {self.new} tokens")
                if allowed.numel() == 1:
                    return [int(allowed)]
                logits = self.constraint.adjust(self.logits[0], allowed)
                return [sample_among(logits, allowed, self.temperature, self.top_k, self.top_p,
                                      self.generator)]
            logits = self.logits
            if self.constraint is not None:
                logits = _apply_constraint(self.constraint, logits, self._context_tensor(), self.new)
            return sample_rows(logits, self.temperature, self.top_k, self.top_p, self.generator).tolist()

    def take(self, tok) -> None:
        """Append ``tok`` (one sequence; a list with one per sequence for a batch)."""
        toks = [int(tok)] if isinstance(tok, int) else [int(t) for t in tok]
        for row, t in zip(self.ids, toks):
            row.append(t)
        if self._set:
            self.constraint.feed(toks[0])
        self._pending += 1
        self.new += 1

    def forced(self) -> int | None:
        """The token the constraint forces after the last ``take``, if it forces one."""
        if not self._set:
            return None
        self._allowed = self.constraint.allowed()
        return int(self._allowed) if self._allowed.numel() == 1 else None

    def step(self, stop=None, limit: int | None = None, until: Container[int] = ()):
        """Choose a token, take it and the tokens forced after it; returns those taken (one
        sequence: a list of ids; a batch: one list per sequence).

        ``stop(tok)``: a token for which it is true is not taken and ends the step (None
        when it is the chosen token itself). ``limit``: take at most this many. ``until``:
        tokens that end the step once taken."""
        taken = self._steps(stop, limit, until)
        if taken is None:
            return None
        rows = [list(col) for col in zip(*taken)]
        return rows[0] if self.single else rows

    def _steps(self, stop, limit, until) -> list[list[int]] | None:
        """``step``'s tokens in the order taken, each a list with one token per sequence."""
        toks = self.choose()
        if stop is not None and stop(toks[0]):
            return None
        self.take(toks)
        taken = [toks]
        while toks[0] not in until and (limit is None or len(taken) < limit):
            tok = self.forced()
            if tok is None or (stop is not None and stop(tok)):
                break
            toks = [tok]
            self.take(toks)
            taken.append(toks)
        return taken

    def probs(self) -> torch.Tensor:
        """P(next token) for the first sequence after everything taken (float32, before any
        constraint)."""
        self._catch_up()
        return torch.softmax(self.logits[0].float(), dim=-1)

    def fork(self, constraint=None, seed: int | None = None) -> "Decoder":
        """A branch that has read the same context (``KVCache.fork``) and decodes on by itself
        under ``constraint``, with its own generator (``seed``; None: a copy of this one's)."""
        _check_constraint(constraint)
        self._catch_up()
        branch = copy.copy(self)          # the settings, the model and its mode to restore
        branch.generator = torch.Generator(device=self.model.device)
        if seed is None:
            branch.generator.set_state(self.generator.get_state())
        else:
            branch.generator.manual_seed(int(seed))
        branch._begin([list(row) for row in self.ids], constraint, (self.cache.fork(), self.logits))
        return branch

    def close(self) -> None:
        self.model.train(self._was_training)

    def __enter__(self) -> "Decoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _decode(model, prompt, max_new_tokens, temperature, top_k, top_p, seed, constraint,
            stop_tokens) -> Iterator[tuple[list[int], list[bool]]]:
    """Yield (tokens, active flags), one per sequence, per new token; a sequence stops after
    a stop token (the others go on)."""
    stops = check_args(max_new_tokens, temperature, top_k, top_p, stop_tokens, model.config.vocab_size)
    _check_constraint(constraint)
    if max_new_tokens == 0:
        as_batch(prompt, model.config.vocab_size, model.device)
        return
    with Decoder(model, prompt, constraint=constraint, seed=seed, temperature=temperature,
                 top_k=top_k, top_p=top_p) as dec:
        active = [True] * dec.rows
        made = 0
        while made < max_new_tokens:
            for toks in dec._steps(None, max_new_tokens - made, stops):
                yield toks, list(active)
                made += 1
                active = [a and t not in stops for a, t in zip(active, toks)]
            if not any(active):
                return


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
    check_args(max_new_tokens, temperature, top_k, top_p, stop_tokens, model.config.vocab_size)
    _check_constraint(constraint)
    as_batch(prompt, model.config.vocab_size, model.device)
    steps = _decode(model, prompt, max_new_tokens, temperature, top_k, top_p, seed,
                    constraint, stop_tokens)
    return _stream_values(steps, is_single(prompt))


def _stream_values(steps, single: bool):
    for values, active in steps:
        if single:
            yield values[0]
        else:
            yield [v if a else None for v, a in zip(values, active)]


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
      sequence, ConfigError. Or a ``TokenSet`` (one sequence; its forced tokens are taken
      without sampling).
    - ``stop_tokens``: a sequence ends after emitting one of them (it is included).
    - Context longer than ``max_len`` slides (see the module docstring); it never crashes.

    Returns ``list[int]`` for one prompt, ``list[list[int]]`` for a batch (rows may differ
    in length when they stop at different steps).
    """
    single = is_single(prompt)
    rows: list[list[int]] | None = None
    for values, flags in _decode(model, prompt, max_new_tokens, temperature, top_k, top_p,
                                 seed, constraint, tuple(stop_tokens)):
        if rows is None:
            rows = [[] for _ in values]
        for r, (v, a) in enumerate(zip(values, flags)):
            if a:
                rows[r].append(v)
    if rows is None:
        rows = [[] for _ in range(batch_size(prompt))]
    return rows[0] if single else rows


__all__ = ["Decoder", "TokenSet", "generate", "stream", "filter_logits", "window_keep"]
