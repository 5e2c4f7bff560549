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

Modules (import them directly; this package imports nothing, so reading a model's
``metrics.json`` through ``report`` stays free of torch):

- ``scoring``: pieces, per-token scores, context windows, what context buys;
- ``ngram``: the Kneser-Ney baseline;
- ``musical``: sampling and MusPy;
- ``curves``: training runs against time;
- ``report``: the ``metrics.json`` of a model folder (reading and writing) and ``EVAL.md``;
- ``melody``: next-pitch evaluation on melody lines against an IDyOM-style baseline;
- ``control_measures`` and ``controls``: does a model follow its controls (key, energy,
  valence), measured on composed pieces and on the corpus.
"""
