"""Every bound a user meets, in one table: the library's checks, the command line's help and
the server's request schemas (and through them the pages' number boxes) all read it here.

Change a bound here and nowhere else; ``tests/test_layout.py`` fails if a literal bound
reappears in a module that reads this table. Torch-free and import-free, so the codecs, the
CLI's help and the server's schemas can read it without loading anything.

| bound | range | who reads it |
| --- | --- | --- |
| ``TEMPO`` | 10 to 400 quarter notes per minute | a piece's tempo: the codec's tempo tokens, compose (library and CLI), the corpus reader |
| ``LIVE_TEMPO`` | 30 to 240 | every tempo the server and its pages take, the studio, the soundtrack |
| ``BARS`` | 1 to 2000 | compose and continue (library, CLI, preflight) |
| ``SECONDS`` | more than 0, at most 3600 | compose and continue in seconds |
| ``STUDIO_BARS`` | 1 to 32 | one studio suggestion |
| ``INFILL_BARS`` | 1 to 16 | the gap a studio infill fills |
| ``INFILL_CANDIDATES`` | 1 to 32 | the candidates an infill chooses from |
| ``VOICES`` | 1 to 4 | harmonize's accompanying voices (library, CLI, API, studio) |
| ``TEMPERATURE`` | 0 to 10 | the music functions, the commands, the API |
| ``TOP_K`` | at least 1 | every sampler |
| ``TOP_P`` | more than 0, at most 1 | every sampler |
| ``SEED`` | 0 to 2**63 - 1 | the music functions, the API |
| ``PREDICT_TOP`` | 1 to 128 | how many next notes ``predict`` lists (library, CLI, API) |

``CLOSE_EARLY`` and ``CLOSE_LATE`` say how far a piece given an ending may stray from its
``--bars`` (``policies.LengthTarget``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Bound:
    """An inclusive range ``lo`` to ``hi`` (``lo`` itself excluded when ``above``)."""

    lo: int | float
    hi: int | float = math.inf
    integer: bool = False
    above: bool = False        # more than ``lo``, not equal to it

    def pydantic(self) -> dict:
        """The range as pydantic ``Field`` arguments (``ge``/``gt`` and ``le``)."""
        low = {"gt" if self.above else "ge": self.lo}
        return low if math.isinf(self.hi) else {**low, "le": self.hi}


TEMPO = Bound(10, 400)                  # quarter notes per minute
LIVE_TEMPO = Bound(30, 240)             # quarter notes per minute
BARS = Bound(1, 2000, integer=True)
SECONDS = Bound(0, 3600.0, above=True)
STUDIO_BARS = Bound(1, 32, integer=True)
INFILL_BARS = Bound(1, 16, integer=True)
INFILL_CANDIDATES = Bound(1, 32, integer=True)
VOICES = Bound(1, 4, integer=True)
TEMPERATURE = Bound(0, 10)
TOP_K = Bound(1, integer=True)
TOP_P = Bound(0, 1, above=True)
SEED = Bound(0, 2**63 - 1, integer=True)
PREDICT_TOP = Bound(1, 128, integer=True)

CLOSE_EARLY = 1   # a piece given an ending may end from this many bars before its --bars ...
CLOSE_LATE = 2    # ... and runs at most this many bars past it (policies.LengthTarget)
