"""The one grammar-constrained decoding loop, as an object that can be stepped.

``compose``, ``continue_piece`` and ``harmonize`` run it to a length target; the endless
soundtrack (``cadenza.music.soundtrack``) steps it bar by bar and keeps it between requests.

The same decoding as ``cadenza.sampling.stream`` with a constraint (sparse KV cache,
inference mode, a private seeded generator, the same sliding window past ``max_len``),
with two shortcuts the grammar allows: a token the grammar forces (a metre after a bar
line, a melody note in ``harmonize``) is taken without sampling, and sampling looks only
at the allowed tokens (a few dozen, not the whole vocabulary) for temperature, top-k and
top-p. Forced tokens still go through the model one at a time: the cache's one-token step
is 3-5x cheaper than a two-token chunk on a CPU.
"""

from __future__ import annotations

import torch

from cadenza.errors import ConfigError
from cadenza.sampling import filter_logits, window_keep


class GrammarDecoder:
    """Sampling after ``context`` under ``policy`` (a grammar ``Policy``), one token at a time.

    ``state`` (a ``RemiState``) must already have seen ``context``. The loop is::

        tok = dec.choose()                 # sampled, or the one token the grammar allows
        dec.take(tok)                      # the state and context move on
        while (forced := dec.forced()) is not None:
            dec.take(forced)               # tokens the grammar forces after it
        dec.advance()                      # the model reads the taken tokens (cache step)

    ``primed=(cache, logits)``: a cache that has already read ``context`` and the logits after it
    (for example a ``KVCache.fork()`` of one shared by several candidates), used instead of
    reading the context again. ``reprime(context, state)`` starts a fresh cache from a new context (used by the stream
    to begin a section or to stay under ``max_len``). The model is put in eval mode while
    the decoder lives; ``close()`` restores its mode.
    """

    def __init__(self, model, context, policy, state, *, seed: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, desc: str = "generate", primed=None):
        self.model, self.policy, self.state = model, policy, state
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.desc = desc
        self.generator = torch.Generator()
        self.generator.manual_seed(int(seed))
        self.max_len = model.config.max_len
        self.keep = window_keep(self.max_len)
        self.context: list[int] = [int(t) for t in context]
        self.new = 0                  # tokens taken since the start
        self._pending: list[int] = []
        self._was_training = model.training
        model.eval()
        if primed is not None:      # (cache, logits) that have already read ``context`` (the caller's to give)
            self.cache, self.logits = primed
            self.allowed = self.policy.allowed(self.state).nonzero().squeeze(1)
        else:
            self._prime(self.context)

    # ---- the model --------------------------------------------------------------------
    def _prime(self, context: list[int]) -> None:
        first = context if len(context) <= self.max_len else context[-self.keep:]
        with torch.inference_mode():
            self.cache = self.model.new_cache(1)
            self.logits = self.model(torch.tensor([first]), cache=self.cache)[0, -1]
        self.allowed = self.policy.allowed(self.state).nonzero().squeeze(1)

    def reprime(self, context, state) -> None:
        """Forget the cache and start again from ``context`` (which ``state`` has seen)."""
        self.context = [int(t) for t in context]
        self.state = state
        self._pending = []
        self._prime(self.context)

    @property
    def cached(self) -> int:
        """Tokens the cache holds (after ``advance``)."""
        return int(self.cache.length)

    def advance(self) -> None:
        """Let the model read the tokens taken since the last call (sliding past ``max_len``)."""
        pending, self._pending = self._pending, []
        with torch.inference_mode():
            if self.cache.length + len(pending) > self.max_len:   # slide the window: re-encode recent tokens
                self.cache = self.model.new_cache(1)
                self.logits = self.model(torch.tensor([self.context[-self.keep:]]), cache=self.cache)[0, -1]
            else:
                for t in pending:
                    self.logits = self.model(torch.tensor([[t]]), cache=self.cache)[0, -1]

    # ---- choosing ---------------------------------------------------------------------
    def choose(self) -> int:
        """The next token: the only one allowed, the likeliest (temperature 0), or a sample."""
        allowed = self.allowed
        if allowed.numel() == 0:
            raise ConfigError(f"the {self.desc} constraints left no possible token after {self.new} tokens")
        if allowed.numel() == 1:
            return int(allowed)
        with torch.inference_mode():
            if self.temperature == 0:
                return int(allowed[int(torch.argmax(self.logits.index_select(0, allowed)))])
            sub = self.logits.index_select(0, allowed).float()
            sub = (sub - sub.max()) / self.temperature    # <= 0: a tiny temperature cannot overflow to inf - inf
            if self.top_k is not None or self.top_p is not None:
                sub = filter_logits(sub.unsqueeze(0), self.top_k, self.top_p).squeeze(0)
            k = torch.multinomial(torch.softmax(sub, dim=-1), 1, generator=self.generator)
        return int(allowed[int(k)])

    def take(self, tok: int) -> None:
        """Append ``tok``: the grammar state and the context move on; the model reads it at
        the next ``advance``."""
        tok = int(tok)
        self.context.append(tok)
        self.state.feed(tok)
        self._pending.append(tok)
        self.new += 1

    def forced(self) -> int | None:
        """The grammar's allowed set after the last ``take``; its one token if it forces one."""
        self.allowed = self.policy.allowed(self.state).nonzero().squeeze(1)
        return int(self.allowed) if self.allowed.numel() == 1 else None

    def step(self, stop=None) -> list[int] | None:
        """The loop of the class docstring once: a chosen token and the tokens the grammar forces
        after it, taken and read by the model; returns them. ``stop(tok)``: a token for which it
        is true is not taken and ends the step there (None when it is the chosen token itself)."""
        tok = self.choose()
        if stop is not None and stop(tok):
            return None
        self.take(tok)
        taken = [tok]
        while (tok := self.forced()) is not None and not (stop is not None and stop(tok)):
            self.take(tok)
            taken.append(tok)
        self.advance()
        return taken

    def close(self) -> None:
        self.model.train(self._was_training)
