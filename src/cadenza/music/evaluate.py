"""Held-out evaluation of music models: prediction scores, context, baselines, MusPy metrics.

What is measured (``benchmarks/music_eval.py`` puts it all in one table):

Scoring (``score_model`` for a SparseTransformer, ``score_ngram`` for the n-gram baseline).
Every piece is a token sequence ``BOS prefix body EOS``. BOS is given; every later token
(conditioning prefix, body, EOS) is a *target*, predicted from tokens of the same piece
only. For each target we keep

- its bits, ``-log2 p(target | context)`` under the full distribution over the vocabulary;
- for a Pitch target (a note): whether it is among the top 1 / top 5 *pitch* tokens of the
  predicted distribution (restricted to Pitch tokens and ranked). Ties are broken at
  random and counted as the expected hit, so a uniform model scores exactly k / #pitches.

``TokenScores.summary`` gives bits per token (total bits / targets), bits per note (the
same total bits / Pitch targets) and mean top-1 / top-5 pitch accuracy over Pitch targets.

Context (``context_windows``). A piece that fits in ``context`` tokens is scored in one
pass from its BOS: target j sees all j tokens before it. A longer piece is scored by a
sliding window: windows of ``context`` tokens, each starting ``stride`` (default
``context // 2``) after the previous one (the last is moved back to end at the piece's
end); the first window scores all its targets, every later one only those not yet scored,
which lie in its last ``stride`` positions. So every target is scored exactly once and sees
``min(j, c)`` preceding tokens with ``context - stride <= c <= context - 1``. Windows are
fed at model positions 0.. (as ``cadenza.sampling`` re-encodes its sliding window), so a
window starting inside a piece does not see the piece's BOS and conditioning prefix.

Baseline n-gram (``KneserNey``): interpolated modified Kneser-Ney (Chen & Goodman 1998)
over token ids, written with numpy because nltk's ``KneserNeyInterpolated`` is pure Python
(minutes to fit a few hundred thousand tokens, and it needs one ``score`` call per
vocabulary entry for a ranking). Each piece is padded on the left with ``order - 1`` start
symbols (an extra id, never predicted), so contexts never cross piece boundaries.

MusPy metrics (``muspy_metrics``): pitch-class entropy, scale consistency, polyphony,
groove consistency (measure length from the piece's first time signature) and empty-beat
rate, computed by the ``muspy`` package itself on decoded scores (``to_muspy``).

Training curves (``eval_curve``, ``compare_runs``): the held-out loss that the training
loop logs in ``metrics.jsonl`` (bits/token on fixed windows of the validation split) against
training time, to compare runs at equal wall-clock time.

Modules: ``eval_scoring`` (pieces, per-token scores, context windows, what context buys),
``eval_ngram`` (Kneser-Ney), ``eval_musical`` (sampling and MusPy), ``eval_curves``
(training runs). Every name is importable from here.
"""

from __future__ import annotations

from cadenza.music.eval_scoring import LN2, TOP_K, TokenScores, _batches, _scores_from, _sorted, context_gain, context_windows, load_pieces, pitch_mask, score_decoding, score_model, score_recent, select_pieces, split_pieces, target_stats  # noqa: F401
from cadenza.music.eval_ngram import KneserNey, score_ngram  # noqa: F401
from cadenza.music.eval_musical import MUSPY_METRICS, measure_ticks, metric_stats, muspy_metrics, sample_transformer, to_muspy  # noqa: F401
from cadenza.music.eval_curves import compare_runs, eval_curve, loss_at_time, model_run_dir, train_time  # noqa: F401

__all__ = [
    "split_pieces", "load_pieces", "select_pieces", "TokenScores", "target_stats", "context_windows",
    "score_model", "KneserNey", "score_ngram", "sample_transformer", "to_muspy", "muspy_metrics",
    "metric_stats", "eval_curve", "train_time", "loss_at_time", "compare_runs", "model_run_dir",
    "MUSPY_METRICS", "context_gain", "score_recent",
]
