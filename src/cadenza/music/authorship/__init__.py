"""Authorship: who wrote which note, and whether the music copies its training corpus.

- ``provenance``: the record every generated file carries (credit line, notes hash,
  per-note authors) and ``verify`` (``cadenza provenance``);
- ``originality``: ``cadenza check``, the longest runs a piece shares with the corpus;
- ``corpus_index`` (the suffix-array index, built once into the user cache) over
  ``note_symbols`` (notes as interval and rhythm symbols), from the corpus or the
  ``corpus_notes`` file a model ships; both keyed by ``corpus_key`` (the corpus's
  content hash, its manifest rows, the cache folder);
- ``copy_guard``: ``--max-copy``, used while sampling.
"""
