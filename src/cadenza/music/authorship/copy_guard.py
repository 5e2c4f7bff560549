"""``CopyGuard``: while sampling, take away the pitches that would copy more than ``--max-copy`` notes of a training piece."""

from __future__ import annotations

import numpy as np

from cadenza.errors import CadenzaError, ConfigError
from cadenza.music.authorship.corpus_index import Index
from cadenza.music.authorship.note_symbols import SEP_BASE

DEFAULT_MAX_COPY = 16


class CopyLimitError(CadenzaError):
    """Generation could not avoid copying more than ``--max-copy`` notes of a training piece."""


class CopyGuard:
    """Keeps generated notes from repeating more than ``max_copy`` consecutive notes of a
    training piece (pitch intervals, transposition invariant): ``banned_pitches(history)``
    gives the pitches that would make the last max_copy + 1 notes a run of the corpus."""

    def __init__(self, idx: Index, max_copy: int, strict: bool = True):
        if isinstance(max_copy, bool) or not isinstance(max_copy, int) or max_copy < 1:
            raise ConfigError(f"--max-copy must be a whole number of at least 1, not {max_copy!r}")
        self.idx, self.max_copy, self.strict = idx, max_copy, strict
        self.search = idx.searcher(False)
        self.refused = 0      # times a pitch was taken away
        self.unavoidable = 0  # times nothing could be taken away (a forced note)

    def banned_pitches(self, pitches) -> set[int]:
        """``pitches``: the stream's pitched notes so far (all of them, in order)."""
        need = self.max_copy          # intervals already there: max_copy - 1, plus the new one
        if len(pitches) < need:
            return set()
        last = np.asarray(pitches[-need:], dtype=np.int64)
        raw = np.diff(last) + 256
        q = self.idx.encode_query(raw, False)
        if q.size and q.min() < 0:
            return set()
        if q.size == 0:      # max_copy = 1: any interval that occurs anywhere
            nxt = np.unique(self.idx.seq_p)
        else:
            lo, hi = self.search.range_of(q)
            if hi <= lo:
                return set()
            pos = self.search.sa[lo:hi].astype(np.int64) + q.size
            pos = pos[pos < self.search.n]
            nxt = np.unique(self.search.seq[pos])
        ivs = self.idx.uniq_p[nxt[nxt < self.idx.uniq_p.size]]
        ivs = ivs[ivs < SEP_BASE] - 256
        return {int(last[-1] + v) for v in ivs}
